//! `logctl bench --profile`: where a service's CPU goes at a stage's peak, as a flame graph and
//! as a table of parts with their cost per event.
//!
//! After a stage's search, its peak rate is held once more with Linux `perf` sampling the
//! service that takes the requests (the gateway, or the producer when it is loaded directly).
//! The search's own figures are never taken with `perf` attached: copying stacks for DWARF
//! unwinding costs the profiled process CPU of its own. The samples are folded into stacks (inferno, the Rust port
//! of Brendan Gregg's tools) and each is charged to one part (see [`PARTS`]); with the step's
//! CPU per event this gives microseconds per event per part.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;
use inferno::collapse::perf::{Folder, Options as FoldOptions};
use inferno::collapse::Collapse;

use crate::units::thousands as num;

/// The parts a sample can be charged to, in the order they are looked for: a sample goes to
/// the first part any frame of its stack names. The jobs come first, the wrappers last: the
/// handler runs inside hyper, axum and tokio frames, so a sample with `serde_json` anywhere on
/// its stack is JSON, and HTTP serving is what hyper and axum do on their own (reading, parsing
/// and writing requests, the sockets below them). Middleware that wraps every request
/// (`track_http`, `trace::propagate`, admission) is left out: its frames are on every stack.
/// Patterns are substrings of demangled names.
const PARTS: [(&str, &[&str]); 11] = [
    (
        "the call to the producer",
        &[
            "logctl_gateway::producers",
            "logctl_gateway::coalesce",
            "logctl_gateway::upstream",
            "reqwest::",
            "hyper_util::client",
            "hyper::client",
        ],
    ),
    (
        "Kafka client (librdkafka and its threads)",
        &["rdkafka", "rd_kafka", "rdk:", "logctl_producer::publisher"],
    ),
    ("token verification", &["logctl_core::auth", "jsonwebtoken"]),
    ("rate limiting", &["logctl_gateway::rate_limit", "redis::"]),
    (
        "JSON and validation",
        &["serde_json", "logctl_contracts::event", "serde::de"],
    ),
    (
        "metrics",
        &[
            "metrics::",
            "metrics_exporter",
            "metrics_util",
            "http_series",
        ],
    ),
    (
        "tracing",
        &[
            "TraceContext",
            "tracing::",
            "tracing_core",
            "tracing_subscriber",
        ],
    ),
    (
        "the handlers' own code",
        &["logctl_gateway::routes", "logctl_producer::routes"],
    ),
    (
        "HTTP serving (hyper, axum, sockets)",
        &[
            "hyper::",
            "hyper_util::server",
            "axum::",
            "tower::",
            "axum_core",
        ],
    ),
    ("runtime (tokio scheduling, wake-ups)", &["tokio::"]),
    (
        "allocator",
        &["mi_malloc", "mi_free", "_mi_", "_int_malloc", "_int_free"],
    ),
];

/// Where the flame graphs go, beside the markdown report.
pub const DIR: &str = "profiles";

/// Samples neither of ours nor of a library named above (mostly the kernel with no user frame).
pub const OTHER: &str = "other (kernel without a user frame, libc)";

/// One stage's profile.
#[derive(Debug, Clone)]
pub struct Profile {
    pub stage: String,
    /// The component sampled.
    pub service: String,
    pub rate: f64,
    /// CPU time sampled, in nanoseconds (each sample weighs its CPU-clock period).
    pub sampled_ns: u64,
    /// Sampled nanoseconds per part, largest first.
    pub parts: Vec<(String, u64)>,
    /// The service's CPU per event over the profiled step.
    pub cpu_us_per_event: Option<f64>,
    pub flame_graph: PathBuf,
}

impl Profile {
    /// Each part's share and its microseconds per event.
    pub fn rows(&self) -> Vec<(String, f64, Option<f64>)> {
        let total = self.sampled_ns.max(1) as f64;
        self.parts
            .iter()
            .map(|(part, n)| {
                let share = *n as f64 / total;
                (
                    part.clone(),
                    share,
                    self.cpu_us_per_event.map(|us| us * share),
                )
            })
            .collect()
    }
}

/// Whether `perf` can be run here; the error says how to get it.
pub fn check_perf() -> anyhow::Result<()> {
    let ok = Command::new("perf")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    anyhow::ensure!(
        ok,
        "--profile needs Linux perf (Debian: apt install linux-perf; Ubuntu: linux-tools-generic)"
    );
    Ok(())
}

/// Starts sampling `pid` for `secs` into `data`; wait on the child for the end. What perf
/// says goes to `data` with `.log` added.
pub fn start(pid: u32, secs: u64, data: &Path) -> anyhow::Result<std::process::Child> {
    Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-F", SAMPLE_HZ])
        .args(["--call-graph", "dwarf,16384", "-p"])
        .arg(pid.to_string())
        .arg("-o")
        .arg(data)
        .args(["--", "sleep"])
        .arg(secs.to_string())
        .stdout(Stdio::null())
        .stderr(log(data, "record")?)
        .spawn()
        .context("cannot start perf record")
}

fn log(data: &Path, what: &str) -> anyhow::Result<std::fs::File> {
    let mut name = data.as_os_str().to_owned();
    name.push(format!(".{what}.log"));
    Ok(std::fs::File::create(PathBuf::from(name))?)
}

/// Samples per second per thread: a few thousand samples over a 10 s step, enough for shares
/// to a percent, and DWARF stacks (16 KiB copied per sample) at a rate the profiled process
/// hardly notices.
const SAMPLE_HZ: &str = "199";

/// The folded stacks (`frame;frame;... count`, outermost first) of a `perf record` file.
pub fn fold(data: &Path) -> anyhow::Result<Vec<String>> {
    let script = Command::new("perf")
        .arg("script")
        .arg("-i")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(log(data, "script")?)
        .spawn()
        .context("cannot start perf script")?;
    let stdout = script.stdout.context("perf script has no stdout")?;
    let mut folded = Vec::new();
    Folder::from(FoldOptions::default()).collapse(BufReader::new(stdout), &mut folded)?;
    let folded: Vec<String> = String::from_utf8_lossy(&folded)
        .lines()
        .map(str::to_owned)
        .collect();
    anyhow::ensure!(
        !folded.is_empty(),
        "perf recorded no stacks (see {}.record.log)",
        data.display()
    );
    Ok(folded)
}

/// The weight of all folded stacks (with `-e cpu-clock`, nanoseconds of CPU) and of each part,
/// largest first.
pub fn parts(folded: &[String]) -> (u64, Vec<(String, u64)>) {
    let mut by_part: BTreeMap<&str, u64> = BTreeMap::new();
    let mut total = 0;
    for line in folded {
        let Some((stack, count)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(count) = count.parse::<u64>() else {
            continue;
        };
        total += count;
        *by_part.entry(part_of(stack)).or_default() += count;
    }
    let mut parts: Vec<(String, u64)> = by_part
        .into_iter()
        .map(|(p, n)| (p.to_owned(), n))
        .collect();
    parts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    (total, parts)
}

/// The part a folded stack is charged to.
fn part_of(stack: &str) -> &'static str {
    let frames: Vec<String> = stack.split(';').map(without_type_arguments).collect();
    PARTS
        .iter()
        .find(|(_, patterns)| {
            frames
                .iter()
                .any(|frame| patterns.iter().any(|p| frame.contains(p)))
        })
        .map_or(OTHER, |(part, _)| part)
}

/// A frame's name without the type arguments after its path segments: a handler's future is
/// named after every type it takes (`{async_block#0}<fn(State<App>, Extension<TraceContext>)
/// -> Response>`), and would be charged to whatever part one of them names. A qualified self
/// type (`<TraceContext as Display>::fmt`) is the frame's own and stays.
fn without_type_arguments(frame: &str) -> String {
    let mut out = String::with_capacity(frame.len());
    let mut depth = 0usize;
    let mut previous = ' ';
    for c in frame.chars() {
        if depth > 0 {
            match c {
                '<' => depth += 1,
                // `->` in a function type closes nothing.
                '>' if previous != '-' => depth -= 1,
                _ => {}
            }
        } else if c == '<' && (previous.is_alphanumeric() || matches!(previous, '_' | '}' | ')')) {
            depth = 1;
        } else {
            out.push(c);
        }
        previous = c;
    }
    out
}

/// Writes the flame graph of `folded` as an SVG.
pub fn flame_graph(folded: &[String], title: &str, svg: &Path) -> anyhow::Result<()> {
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_owned();
    options.count_name = "ns".into();
    let file =
        std::fs::File::create(svg).with_context(|| format!("cannot write {}", svg.display()))?;
    inferno::flamegraph::from_lines(
        &mut options,
        folded.iter().map(String::as_str),
        std::io::BufWriter::new(file),
    )?;
    Ok(())
}

/// A file name from a stage's name: `single-events-through-the-gateway`.
pub fn slug(stage: &str) -> String {
    let mut out = String::new();
    for c in stage.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

/// With `--profile`: each stage's parts at its peak, with their cost per event.
pub fn render(md: &mut String, profiles: &[Profile]) {
    if profiles.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "## Where the time goes at each peak (`--profile`)\n\n\
         Each stage's peak rate held once more with Linux `perf` sampling the service that takes \
         the requests (CPU clock, {SAMPLE_HZ} samples/s per thread, DWARF stacks). A sample goes to the \
         first part any frame of its stack names, jobs before the HTTP serving and runtime \
         frames around them (`console/src/bench/profile.rs`); µs per event is the part's share \
         of the service's CPU per event in the search's peak step (without `perf`). The flame graphs are in `profiles/` beside this file.\n"
    );
    for p in profiles {
        let _ = writeln!(
            md,
            "### {}: {} at {} events/s ({:.2} s of its CPU sampled{}, [flame graph]({}))\n",
            p.stage,
            p.service,
            num(p.rate),
            p.sampled_ns as f64 / 1e9,
            p.cpu_us_per_event
                .map_or_else(String::new, |us| format!(", {us:.1} µs of CPU per event")),
            p.flame_graph
                .file_name()
                .map_or_else(String::new, |f| format!("{}/{}", DIR, f.to_string_lossy()))
        );
        let _ = writeln!(md, "| part | share of its CPU | µs per event |");
        let _ = writeln!(md, "|---|---|---|");
        for (part, share, us) in p.rows() {
            let _ = writeln!(
                md,
                "| {part} | {:.1}% | {} |",
                share * 100.0,
                us.map_or_else(|| "–".into(), |us| format!("{us:.1}"))
            );
        }
        let _ = writeln!(md);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(stack: &str, n: u64) -> String {
        format!("{stack} {n}")
    }

    #[test]
    fn a_sample_is_charged_to_the_job_on_its_stack_not_to_the_wrappers_around_it() {
        let folded = vec![
            // JSON parsing inside the handler inside hyper: JSON.
            line(
                "tokio-rt-worker;tokio::runtime::task::raw::poll;hyper::proto::h1::dispatch::Dispatcher::poll;logctl_gateway::routes::ingest::post_one;serde_json::de::from_slice",
                30,
            ),
            // hyper writing a response down into the kernel: HTTP serving.
            line(
                "tokio-rt-worker;tokio::runtime::task::raw::poll;hyper::proto::h1::io::Buffered::poll_flush;[unknown];tcp_sendmsg",
                50,
            ),
            // An allocation for the coalescer: the producer call, not the allocator.
            line(
                "tokio-rt-worker;logctl_gateway::coalesce::dispatch;mi_malloc_aligned",
                15,
            ),
            line("tokio-rt-worker;tokio::runtime::scheduler::multi_thread::worker::Context::park", 4),
            line("swapper;[unknown];finish_task_switch", 1),
            "not a folded line".to_owned(),
        ];
        let (total, parts) = parts(&folded);
        assert_eq!(total, 100);
        assert_eq!(
            parts,
            vec![
                ("HTTP serving (hyper, axum, sockets)".to_owned(), 50),
                ("JSON and validation".to_owned(), 30),
                ("the call to the producer".to_owned(), 15),
                ("runtime (tokio scheduling, wake-ups)".to_owned(), 4),
                (OTHER.to_owned(), 1),
            ]
        );
        let profile = Profile {
            stage: "s".into(),
            service: "gateway".into(),
            rate: 1000.0,
            sampled_ns: total,
            parts,
            cpu_us_per_event: Some(40.0),
            flame_graph: PathBuf::from("x.svg"),
        };
        let rows = profile.rows();
        assert_eq!(rows[0].1, 0.5);
        assert_eq!(rows[0].2, Some(20.0));
    }

    #[test]
    fn the_types_a_frame_is_generic_over_do_not_name_its_part() {
        assert_eq!(
            without_type_arguments(
                "{async_block#0}<fn(axum::extract::state::State<Arc<App>>, Extension<logctl_core::trace::TraceContext>) -> Response>"
            ),
            "{async_block#0}"
        );
        assert_eq!(
            without_type_arguments("hyper::proto::h1::dispatch::Dispatcher<D,Bs,I,T>::poll_catch"),
            "hyper::proto::h1::dispatch::Dispatcher::poll_catch"
        );
        let own = "<logctl_core::trace::TraceContext as core::fmt::Display>::fmt";
        assert_eq!(without_type_arguments(own), own);
        // A handler generic over the trace context is the handler's; formatting the context
        // is tracing.
        let handler = "tokio-rt-worker;hyper::proto::h1::dispatch::Dispatcher<D,Bs,I,T>::poll;\
                       {async_block#0}<fn(Extension<logctl_core::trace::TraceContext>) -> Response>";
        assert_eq!(part_of(handler), "HTTP serving (hyper, axum, sockets)");
        assert_eq!(part_of(&format!("{handler};{own}")), "tracing");
    }

    #[test]
    fn perf_script_text_folds_into_stacks_and_renders_a_flame_graph() {
        // Two samples as `perf script` prints them, innermost frame first.
        let script = "\
logctl-gateway 101/102 [000] 1.000001: 5025125 cpu-clock:pppH:
\t    55aa serde_json::de::from_slice (/bin/gw)
\t    55bb logctl_gateway::routes::ingest::post_one (/bin/gw)
\t    55cc hyper::proto::h1::dispatch::Dispatcher::poll (/bin/gw)

logctl-gateway 101/102 [000] 1.005001: 5025125 cpu-clock:pppH:
\t    66aa tcp_sendmsg ([kernel.kallsyms])
\t    66bb hyper::proto::h1::io::Buffered::poll_flush (/bin/gw)

";
        let mut folded = Vec::new();
        Folder::from(FoldOptions::default())
            .collapse(script.as_bytes(), &mut folded)
            .expect("folds");
        let folded: Vec<String> = String::from_utf8(folded)
            .expect("utf-8")
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(folded.len(), 2, "{folded:?}");
        // Each sample weighs its CPU-clock period: 5,025,125 ns.
        let (total, parts) = parts(&folded);
        assert_eq!(total, 2 * 5_025_125);
        assert!(
            parts.contains(&("JSON and validation".to_owned(), 5_025_125)),
            "{parts:?}"
        );
        let svg = std::env::temp_dir().join(format!("logctl-flame-{}.svg", std::process::id()));
        flame_graph(&folded, "gateway", &svg).expect("renders");
        let text = std::fs::read_to_string(&svg).expect("svg");
        let _ = std::fs::remove_file(&svg);
        assert!(text.contains("<svg") && text.contains("post_one"), "{text}");
        assert_eq!(
            slug("single events through the gateway, 3 brokers"),
            "single-events-through-the-gateway-3-brokers"
        );
    }
}
