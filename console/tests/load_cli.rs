//! `logctl load` against a real stack: it sends what it planned, PostgreSQL confirms every
//! acknowledged event once, thresholds fail the run with a message, a generator that cannot
//! keep its schedule says so, its HTML report draws in headless Chromium, and `--compare`
//! passes a run against itself and fails one with a 1 s gateway pause.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::{logctl_bin, TestStack};

fn load(stack: &TestStack, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["load"];
    all.extend_from_slice(args);
    let out = stack.logctl(&all);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_verified_run_reports_every_event_stored_once() {
    let stack = TestStack::shared();
    let dir = stack.dir.join("load-run");
    std::fs::create_dir_all(&dir).expect("dir");
    let (report, hdr) = (dir.join("report.json"), dir.join("latency.hlog"));
    let (code, stdout, stderr) = load(
        stack,
        &[
            "--rate",
            "400",
            "--duration",
            "3s",
            "--batch",
            "4",
            "--orgs",
            "5",
            "--seed",
            "9",
            "--verify",
            "--max-error-rate",
            "0.1%",
            "--max-p99",
            "5s",
            "--output",
            report.to_str().expect("utf8"),
            "--hdr-log",
            hdr.to_str().expect("utf8"),
        ],
    );
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("PASSED"), "{stdout}");
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    assert_eq!(r["eventsSent"], 1200, "{r}");
    assert_eq!(r["requests"], 300, "{r}");
    assert_eq!(r["statuses"]["202"], 300, "{r}");
    assert_eq!(r["eventsAccepted"], 1200, "{r}");
    assert_eq!(r["verify"]["acknowledged"], 1200, "{r}");
    assert_eq!(r["verify"]["stored"], 1200, "{r}");
    assert_eq!(r["verify"]["lost"], 0, "{r}");
    assert_eq!(r["verify"]["duplicated"], 0, "{r}");
    assert!(r["latencyMs"]["p99"].as_f64().expect("p99") > 0.0);
    assert!(r["verify"]["endToEndMs"]["p50"].as_f64().expect("e2e") > 0.0);
    // Falling behind is the machine's limit, not the system's: reported, and not a failure.
    if r["fellBehind"] == true {
        eprintln!(
            "the generator fell behind on this machine: {} of {} planned events/s",
            r["achievedRate"], r["plannedRate"]
        );
        assert!(stdout.contains("this machine's limit"), "{stdout}");
    }
    let log = std::fs::read_to_string(&hdr).expect("hdr log");
    assert!(log.contains("#[BaseTime:"), "{log}");
    assert!(
        log.lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with('"'))
            .count()
            >= 2,
        "{log}"
    );
}

#[test]
fn a_broken_threshold_fails_the_run_and_says_which() {
    let stack = TestStack::shared();
    let (code, stdout, stderr) = load(
        stack,
        &["--rate", "100", "--duration", "1s", "--max-p99", "1us"],
    );
    assert_eq!(code, Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("FAILED") && stdout.contains("p99 latency"),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );

    let (code, _, stderr) = load(stack, &["--rate", "0"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--rate"), "{stderr}");
    let (code, _, stderr) = load(stack, &["--duration", "soon"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--duration"), "{stderr}");
}

#[test]
fn a_generator_that_cannot_keep_up_says_so() {
    let stack = TestStack::shared();
    // One request at a time cannot carry 1000 requests/s through a round trip to Kafka.
    let (code, stdout, stderr) = load(
        stack,
        &[
            "--rate",
            "1000",
            "--duration",
            "1s",
            "--max-in-flight",
            "1",
            "--json",
        ],
    );
    assert_eq!(
        code,
        Some(0),
        "no thresholds: it reports; stderr:\n{stderr}"
    );
    let r: Value = serde_json::from_str(&stdout).expect("json report");
    assert_eq!(r["fellBehind"], true, "{r}");
    assert!(
        r["lateness"]["waitedForSlot"].as_u64().expect("waited") > 0,
        "{r}"
    );
    // Latency from the planned send time exposes the queueing the server time hides.
    let latency = r["latencyMs"]["p99"].as_f64().expect("p99");
    let service = r["serviceTimeMs"]["p99"].as_f64().expect("service p99");
    assert!(
        latency > 10.0 * service,
        "latency {latency} ms vs service {service} ms"
    );
}

/// Renders `page` in headless Chromium: the DOM after its script ran, and a screenshot.
fn chromium(page: &Path, out: &Path) -> (String, Vec<u8>) {
    let shot = out.join("report.png");
    let url = format!("file://{}", page.display());
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--window-size=1000,2200",
    ];
    let dom = Command::new("chromium")
        .args(common)
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("chromium (scripts/bootstrap installs it)");
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let screenshot = Command::new("chromium")
        .args(common)
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .expect("chromium");
    assert!(
        screenshot.status.success(),
        "{}",
        String::from_utf8_lossy(&screenshot.stderr)
    );
    (
        String::from_utf8_lossy(&dom.stdout).into_owned(),
        std::fs::read(&shot).expect("the screenshot"),
    )
}

/// Pixels of a PNG that are clearly coloured (the plots' lines; text and grid are grey).
fn coloured_pixels(png: &[u8]) -> usize {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().expect("a png");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let channels = info.color_type.samples();
    buf[..info.buffer_size()]
        .chunks(channels)
        .filter(|px| {
            let (r, g, b) = (i32::from(px[0]), i32::from(px[1]), i32::from(px[2]));
            r.max(g).max(b) - r.min(g).min(b) > 60
        })
        .count()
}

#[test]
fn a_report_draws_in_chromium_and_compare_catches_a_gateway_pause() {
    let stack = TestStack::shared();
    let dir = stack.dir.join("reports");
    std::fs::create_dir_all(&dir).expect("dir");
    let path = |name: &str| dir.join(name).to_str().expect("utf8").to_owned();
    let (code, stdout, stderr) = load(
        stack,
        &[
            "--rate",
            "200",
            "--duration",
            "6s",
            "--output",
            &path("base.json"),
            "--report",
            &path("base.html"),
        ],
    );
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");

    // The page: every plot drawn, its script ran to the end, nothing fetched from anywhere.
    let (dom, shot) = chromium(&dir.join("base.html"), &dir);
    assert!(
        dom.contains("data-plots=\"4\""),
        "four plots with lines: {dom:.2000}"
    );
    let coloured = coloured_pixels(&shot);
    assert!(
        coloured > 3_000,
        "{coloured} coloured pixels: the plots look empty"
    );

    // `logctl report` renders the saved run again, and a run against itself holds.
    let out = stack.logctl(&[
        "report",
        &path("base.json"),
        "--html",
        &path("again.html"),
        "--compare",
        &path("base.json"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("no regression") && text.contains("1.00×"),
        "{text}"
    );
    let again = std::fs::read_to_string(dir.join("again.html")).expect("page");
    assert!(again.contains("no regression"), "the verdict on the page");

    // The same load with the gateway paused for a second: p99 regresses, exit 1.
    let pause = std::thread::spawn({
        let dir = stack.dir.clone();
        move || {
            std::thread::sleep(Duration::from_secs(2));
            let fault = |action: &str| {
                Command::new(logctl_bin())
                    .arg("--state-dir")
                    .arg(&dir)
                    .args(["fault", action, "gateway"])
                    .status()
                    .expect("logctl fault")
            };
            assert!(fault("pause").success());
            std::thread::sleep(Duration::from_secs(1));
            assert!(fault("resume").success());
        }
    });
    let run = Command::new(logctl_bin())
        .arg("--state-dir")
        .arg(&stack.dir)
        .args(["load", "--rate", "200", "--duration", "6s", "--compare"])
        .arg(path("base.json"))
        .args(["--report", &path("paused.html")])
        .output();
    let out = run.expect("logctl load");
    pause.join().expect("the pause");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("REGRESSION  p99"), "{text}");
    assert!(std::fs::read_to_string(dir.join("paused.html"))
        .expect("page")
        .contains("REGRESSION"));
}
