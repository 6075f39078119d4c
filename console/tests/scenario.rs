//! `logctl scenario run` against a real stack: a false assertion fails naming the step, the
//! condition, expected and observed; a typo is refused before anything runs; Ctrl-C during
//! the PostgreSQL outage drill leaves PostgreSQL running.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{logctl_bin, scratch_dir, serial, TestStack};

fn drill(dir: &std::path::Path, name: &str, yaml: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).expect("write drill");
    path
}

#[test]
fn a_false_assertion_fails_naming_step_condition_expected_and_observed() {
    let _serial = serial();
    let stack = TestStack::shared();
    let dir = scratch_dir("scenario-false");
    let file = drill(
        &dir,
        "false-assert",
        // The scale-down that would follow the failed step never runs: the runner puts the
        // stack's shape back itself.
        "name: false-assert\nsteps:\n  - load: {rate: 200}\n  - scale: {consumers: 2}\n  - wait: {until: stored_rate > 50, timeout: 60s}\n  - assert: [http_5xx == 0, lag > 1000000]\n  - scale: {consumers: 1}\n",
    );
    let report = dir.join("report.json");
    let junit = dir.join("junit.xml");
    let out = stack.logctl(&[
        "scenario".as_ref(),
        "run".as_ref(),
        "--headless".as_ref(),
        "--report".as_ref(),
        report.as_os_str(),
        "--html-dir".as_ref(),
        dir.as_os_str(),
        "--junit".as_ref(),
        junit.as_os_str(),
        file.as_os_str(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("step 4 (assert http_5xx == 0, lag > 1000000)"),
        "names the step: {stdout}"
    );
    assert!(
        stdout.contains("expected `lag > 1000000`, observed "),
        "names the condition and what was seen: {stdout}"
    );
    assert!(
        !stdout.contains("expected `http_5xx == 0`"),
        "only what failed: {stdout}"
    );
    assert!(stdout.contains("scenarios: 0 passed, 1 failed"), "{stdout}");

    let json: Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
    let s = &json["scenarios"][0];
    assert_eq!(json["passed"], false);
    assert_eq!(s["skipped"], 1, "the step after the failure is not run");
    let failed = &s["steps"][3];
    assert_eq!(failed["passed"], false);
    assert_eq!(failed["conditions"][1]["condition"], "lag > 1000000");
    assert_eq!(failed["conditions"][1]["passed"], false);
    let observed: f64 = failed["conditions"][1]["observed"]
        .as_str()
        .and_then(|o| o.parse().ok())
        .expect("an observed lag");
    assert!(observed < 1_000_000.0);
    assert!(s["load"]["eventsAcked"].as_u64().unwrap_or(0) > 0, "{s}");
    assert!(s["timeline"].as_array().is_some_and(|t| !t.is_empty()));
    assert!(
        s["restored"][0]
            .as_str()
            .is_some_and(|r| r.starts_with("load stopped")),
        "{}",
        s["restored"]
    );
    assert!(
        s["restored"][1].as_str().is_some_and(
            |r| r.starts_with("scaled back to 1 consumers, 1 producers: stopped consumer-2")
        ),
        "{}",
        s["restored"]
    );
    assert!(
        !stack.dir.join("run/consumer-2.pid").exists(),
        "the drill's second consumer is stopped"
    );
    let status = stack.logctl(&["status", "--json"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("\"consumer\"") && !status.contains("consumer-2"),
        "the stack's saved shape is one consumer again: {status}"
    );
    let xml = std::fs::read_to_string(&junit).expect("junit");
    assert!(
        xml.contains("<testsuite name=\"false-assert\" tests=\"5\" failures=\"1\" skipped=\"1\""),
        "{xml}"
    );
    assert!(xml.contains("expected `lag &gt; 1000000`"), "{xml}");
    // The drill's page: the verdict, the failed step marked on the plots' time axis.
    let page = std::fs::read_to_string(dir.join("false-assert.html")).expect("html page");
    assert!(page.contains("FAILED: step 4"), "{page:.3000}");
    assert!(
        page.contains("class=\"title\">Throughput</text>")
            && page.contains("class=\"title\">Consumer lag (records)</text>")
    );
    assert!(page.contains("class=\"mark-label\">4. assert http_5xx == 0, lag &gt; 1000000 ✗"));
    assert!(page.contains("class=\"mark-label\">1. load 200 events/s"));
}

#[test]
fn a_drill_with_a_typo_is_refused_before_it_starts() {
    let _serial = serial();
    let stack = TestStack::shared();
    let dir = scratch_dir("scenario-typo");
    // The first step would stop PostgreSQL; the typo is in the last one.
    let file = drill(
        &dir,
        "typo",
        "name: typo\nsteps:\n  - fault: stop postgres\n  - wait: 1s\n  - assert: breaker.postgres == opne\n",
    );
    let good = drill(&dir, "good", "name: good\nsteps:\n  - wait: 1s\n");
    let out = stack.logctl(&[
        "scenario".as_ref(),
        "run".as_ref(),
        "--headless".as_ref(),
        good.as_os_str(),
        file.as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("typo.yaml:5:") && stderr.contains("did you mean `open`?"),
        "file, line and hint: {stderr}"
    );
    assert!(stderr.contains("nothing was run"), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).is_empty(),
        "no drill started"
    );
    assert_eq!(stack.component_status("postgres"), "up");
}

#[test]
fn ctrl_c_during_the_postgres_outage_leaves_postgres_running() {
    let _serial = serial();
    let stack = TestStack::shared();
    let dir = scratch_dir("scenario-interrupt");
    let report = dir.join("interrupted.json");
    let drill =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/postgres-outage.yaml");
    let mut child = Command::new(logctl_bin())
        .arg("--state-dir")
        .arg(&stack.dir)
        .args(["scenario", "run", "--headless", "--report"])
        .arg(&report)
        .arg(&drill)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("logctl scenario run");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let started = Instant::now();
    let mut seen = Vec::new();
    // Interrupt once PostgreSQL has been stopped.
    loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("drill ended early: {seen:#?}"))
            .expect("line");
        seen.push(line.clone());
        if line.contains("fault stop postgres") {
            assert!(line.contains(" ok "), "{line}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{seen:#?}");
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        stack.component_status("postgres"),
        "down",
        "the drill stopped it"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().expect("exit");
    assert_eq!(status.code(), Some(130), "{rest:#?}");
    assert_eq!(stack.component_status("postgres"), "up", "{rest:#?}");
    let json: Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
    let s = &json["scenarios"][0];
    assert_eq!(s["interrupted"], true);
    let restored: Vec<&str> = s["restored"]
        .as_array()
        .expect("restored")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        restored
            .iter()
            .any(|r| r.starts_with("start postgres: running as pid")),
        "{restored:?}"
    );
    // And the stack works again: a short drill passes.
    let again = drill_file(&dir);
    let out = stack.logctl(&[
        "scenario".as_ref(),
        "run".as_ref(),
        "--headless".as_ref(),
        again.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn drill_file(dir: &std::path::Path) -> std::path::PathBuf {
    drill(
        dir,
        "after",
        "name: after\nsteady_state:\n  within: 90s\n  conditions: [breaker.postgres == closed, lag < 1000]\nsteps:\n  - load: {rate: 200}\n  - wait: {until: stored_rate > 100, timeout: 60s}\n  - verify: {timeout: 60s}\n",
    )
}
