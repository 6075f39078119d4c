//! A drill as an HTML page (`logctl scenario run --html-dir D`): its verdict, each step with
//! its time and outcome, and the signals the runner sampled every second (rates, latencies,
//! lag in records and in time) over the drill, with its faults and failed steps marked where
//! they happened. Built from the drill's JSON report, which stays the machine's record.

use std::fmt::Write;

use super::html::{document, escape, sections};
use super::plot::{Plot, Series};
use crate::scenario::condition::Observed;
use crate::scenario::runner::{ScenarioReport, StepReport};

/// A numeric signal over the drill.
fn series(report: &ScenarioReport, name: &str, signal: &str) -> Series {
    Series::new(
        name,
        report
            .timeline
            .iter()
            .filter_map(|p| match p.reading.get(signal) {
                Some(Observed::Number(v)) => Some((p.t, *v)),
                _ => None,
            })
            .collect(),
    )
}

/// Where faults, scale and load changes happened, and where a step failed.
fn marks(report: &ScenarioReport) -> Vec<(f64, String)> {
    report
        .steps
        .iter()
        .filter(|s| !s.passed || ["fault", "scale", "load"].contains(&s.kind.as_str()))
        .map(|s| {
            let failed = if s.passed { "" } else { " ✗" };
            (s.at_secs, format!("{}. {}{failed}", s.index, s.description))
        })
        .collect()
}

fn plots(report: &ScenarioReport) -> Vec<Plot> {
    let marks = marks(report);
    let plot = |title: &str, y: &str, series| Plot::over_time(title, y, series, &marks);
    vec![
        plot(
            "Throughput",
            "events/s",
            vec![
                series(report, "accepted", "accepted_rate"),
                series(report, "stored", "stored_rate"),
            ],
        ),
        plot(
            "Latency",
            "ms",
            vec![
                series(report, "gateway p99", "gateway_p99_ms"),
                series(report, "accepted → stored p99", "end_to_end_p99_ms"),
            ],
        ),
        plot(
            "Consumer lag (records)",
            "records",
            vec![series(report, "lag", "lag")],
        ),
        plot(
            "Consumer lag in time (the oldest unconsumed record's age)",
            "seconds",
            vec![series(report, "lag", "lag_seconds")],
        ),
    ]
    .into_iter()
    .filter(|p| !p.is_empty())
    .collect()
}

fn step_row(out: &mut String, s: &StepReport, label: &str) {
    let (class, mark) = if s.passed {
        ("pass", "✓")
    } else {
        ("fail", "✗")
    };
    let detail = if s.passed {
        s.detail.clone()
    } else {
        s.failure()
    };
    let _ = write!(
        out,
        "<tr><td class=\"num\">{:.1}s</td><td><span class=\"verdict {class}\">{mark}</span></td><td>{}</td><td>{}</td></tr>",
        s.at_secs,
        escape(label),
        escape(&detail)
    );
}

/// The drill's page.
pub fn page(report: &ScenarioReport) -> String {
    let mut body = String::new();
    let (class, verdict) = match (&report.failure, report.interrupted) {
        (_, true) => ("fail", "INTERRUPTED".to_owned()),
        (Some(why), _) => ("fail", format!("FAILED: {why}")),
        (None, _) => ("pass", "PASSED".to_owned()),
    };
    let _ = write!(
        body,
        "<p class=\"verdict {class}\">{}</p><p>{}</p><p class=\"sub\">{} · {:.1} s · {}</p>",
        escape(&verdict),
        escape(&report.description),
        escape(&report.file),
        report.duration_secs,
        escape(
            &report
                .load
                .offered_and_held()
                .unwrap_or_else(|| "no load".into())
        )
    );
    body.push_str(
        "<h2>Steps</h2><table><tr><th>at</th><th></th><th>step</th><th>what happened</th></tr>",
    );
    if let Some(s) = &report.steady_state_before {
        step_row(&mut body, s, "steady state before");
    }
    for s in &report.steps {
        step_row(&mut body, s, &format!("{}. {}", s.index, s.description));
    }
    if let Some(s) = &report.steady_state_after {
        step_row(&mut body, s, "steady state after");
    }
    body.push_str("</table>");
    if report.skipped > 0 {
        let _ = write!(body, "<p>{} steps not run.</p>", report.skipped);
    }
    body.push_str(&sections(&plots(report)));
    document(
        &format!("Drill {}", report.name),
        &format!("started {}", report.started_at),
        &body,
    )
}
