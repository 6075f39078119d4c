//! Scenario drills: YAML files of load, faults, waits and assertions run against a stack
//! (`logctl scenario run`), headless in CI or watched on a terminal.
//!
//! - [`spec`]: the file format, checked completely (with file:line and hints) before a drill
//!   touches anything;
//! - [`condition`]: `<signal> <op> <value>` and the catalogue of signals;
//! - [`observe`]: the TUI's collector sampled in the background into readings;
//! - [`load`]: the drill's background load (the `logctl load` engine, in segments);
//! - [`runner`]: steps in order, steady state before and after, and the restore that always
//!   runs; [`junit`]: the XML report.

pub mod condition;
pub mod junit;
pub mod load;
pub mod observe;
pub mod runner;
pub mod spec;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use runner::{Context, RunEvent, ScenarioReport};
use spec::Scenario;

/// Where reports go.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    pub report: Option<PathBuf>,
    pub report_dir: Option<PathBuf>,
    /// A page with plots per drill.
    pub html_dir: Option<PathBuf>,
    pub junit: Option<PathBuf>,
}

/// Reads every file first: one bad file and nothing runs.
pub fn load_all(files: &[PathBuf]) -> Result<Vec<(String, Scenario)>, Vec<spec::SpecError>> {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for f in files {
        match spec::load(f) {
            Ok(s) => ok.push((f.display().to_string(), s)),
            Err(e) => bad.push(e),
        }
    }
    match bad.is_empty() {
        true => Ok(ok),
        false => Err(bad),
    }
}

/// Prints what the runner reports: one line per step, and on a terminal (unless headless) a
/// live line with the current step and the main signals.
fn printer(mut rx: mpsc::UnboundedReceiver<RunEvent>, live: bool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut current = String::new();
        let clear = |live: bool| {
            if live {
                eprint!("\r\x1b[2K");
            }
        };
        while let Some(ev) = rx.recv().await {
            match ev {
                RunEvent::Started { name, steps } => {
                    clear(live);
                    println!("drill {name} ({steps} steps)");
                }
                RunEvent::Step {
                    index,
                    total,
                    description,
                } => current = format!("{index}/{total} {description}"),
                RunEvent::StepDone(s) => {
                    clear(live);
                    println!(
                        "  [{:>6.1}s] {:<4} {}{}",
                        s.at_secs + s.duration_secs,
                        if s.passed { "ok" } else { "FAIL" },
                        match s.index {
                            0 => format!("{}: {}", s.kind, s.description),
                            i => format!("{i:>2}. {}", s.description),
                        },
                        match (s.passed, s.detail.is_empty()) {
                            (false, _) => format!("\n           {}", s.failure()),
                            (true, true) => String::new(),
                            (true, false) => format!(" — {}", s.detail),
                        }
                    );
                }
                RunEvent::Note(n) => {
                    clear(live);
                    println!("           · {n}");
                }
                RunEvent::Reading(r) if live => {
                    let num = |k: &str| match r.get(k) {
                        Some(condition::Observed::Number(v)) => format!("{v:.0}"),
                        _ => "-".into(),
                    };
                    let open: Vec<&str> = r
                        .iter()
                        .filter(|(k, v)| {
                            k.starts_with("breaker.")
                                && **v != condition::Observed::Word("closed".into())
                        })
                        .map(|(k, _)| &k["breaker.".len()..])
                        .collect();
                    eprint!(
                        "\r\x1b[2K  … {current} | accepted {}/s stored {}/s lag {} p99 {} ms{}",
                        num("accepted_rate"),
                        num("stored_rate"),
                        num("lag"),
                        num("gateway_p99_ms"),
                        if open.is_empty() {
                            String::new()
                        } else {
                            format!(" | breakers not closed: {}", open.join(","))
                        }
                    );
                    let _ = std::io::stderr().flush();
                }
                RunEvent::Reading(_) => {}
            }
        }
        clear(live);
    })
}

/// Runs the drills one after another (each restores what it broke), writes the reports, and
/// says whether all passed. Ctrl-C or SIGTERM ends the current drill (after its restore) and
/// skips the rest.
pub async fn run_all(
    drills: &[(String, Scenario)],
    ctx: &Context,
    outputs: &Outputs,
    headless: bool,
) -> anyhow::Result<(Vec<ScenarioReport>, bool)> {
    let interrupt = CancellationToken::new();
    tokio::spawn({
        let interrupt = interrupt.clone();
        async move {
            crate::interrupt::requested().await;
            eprintln!("\ninterrupted: stopping the drill and restoring the stack...");
            interrupt.cancel();
        }
    });
    let live = !headless && std::io::stderr().is_terminal();
    let mut reports = Vec::new();
    for (file, scenario) in drills {
        if interrupt.is_cancelled() {
            break;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let print = printer(rx, live);
        let report = runner::run(scenario, file, ctx, interrupt.clone(), tx).await;
        let _ = print.await;
        println!(
            "  {} {} in {:.1} s{}{}{}\n",
            if report.passed { "PASSED" } else { "FAILED" },
            report.name,
            report.duration_secs,
            report
                .failure
                .as_ref()
                .map(|f| format!(": {f}"))
                .unwrap_or_default(),
            report
                .load
                .offered_and_held()
                .map(|l| format!("\n  {l}"))
                .unwrap_or_default(),
            if report.restored.is_empty() {
                String::new()
            } else {
                format!("\n  restored: {}", report.restored.join("; "))
            }
        );
        if let Some(dir) = &outputs.report_dir {
            std::fs::create_dir_all(dir)?;
            std::fs::write(
                dir.join(format!("{}.json", report.name)),
                serde_json::to_string_pretty(&report)?,
            )?;
        }
        if let Some(dir) = &outputs.html_dir {
            std::fs::create_dir_all(dir)?;
            std::fs::write(
                dir.join(format!("{}.html", report.name)),
                crate::report::drill::page(&report),
            )?;
        }
        reports.push(report);
    }
    let passed = reports.len() == drills.len() && reports.iter().all(|r| r.passed);
    if let Some(path) = &outputs.report {
        write_file(
            path,
            &serde_json::to_string_pretty(&serde_json::json!({
                "passed": passed,
                "scenarios": reports,
            }))?,
        )?;
    }
    if let Some(path) = &outputs.junit {
        let with_steps: Vec<(ScenarioReport, Vec<String>)> = reports
            .iter()
            .zip(drills)
            .map(|(r, (_, s))| {
                (
                    r.clone(),
                    s.steps.iter().map(spec::Step::describe).collect(),
                )
            })
            .collect();
        write_file(path, &junit::render(&with_steps))?;
    }
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| !r.passed)
        .map(|r| r.name.as_str())
        .collect();
    // Again at the end, where a CI log's tail shows it: which step of a failed drill, and why.
    for report in reports.iter().filter(|r| !r.passed) {
        println!(
            "FAILED {}: {}",
            report.name,
            report.failure.as_deref().unwrap_or("no reason given")
        );
    }
    println!(
        "scenarios: {} passed, {} failed, {} not run{}",
        reports.len() - failed.len(),
        failed.len(),
        drills.len() - reports.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(" (failed: {})", failed.join(", "))
        }
    );
    Ok((reports, passed && !interrupt.is_cancelled()))
}

fn write_file(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)?;
    Ok(())
}
