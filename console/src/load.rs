//! `logctl load`: runs the open-loop engine of `logctl-loadgen` against a gateway, shows
//! progress, checks the database with `--verify`, judges CI thresholds, and writes reports.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;
use logctl_core::auth::Scope;
use logctl_loadgen::engine::{self, Intervals, Outcome, Progress};
use logctl_loadgen::report::{
    micros, new_histogram, Percentiles, Report, Verification, LATE_AFTER,
};
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

use crate::stack::layout::Layout;

/// Pass/fail limits for CI.
#[derive(Debug, Clone, Default)]
pub struct Thresholds {
    pub max_p99: Option<Duration>,
    /// A fraction (0.001 is 0.1%).
    pub max_error_rate: Option<f64>,
    /// Fail when the generator fell behind its schedule. Off by default: falling behind is
    /// the machine's limit (the generator short of CPU, or every slot waiting on the server),
    /// reported with its figures, while latency from the planned send times already shows
    /// what a slow server did to its clients.
    pub strict_schedule: bool,
}

/// Reads `0.1%` or `0.001`.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let (n, scale) = match s.strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (s, 1.0),
    };
    n.trim()
        .parse::<f64>()
        .ok()
        .map(|v| v / scale)
        .filter(|v| (0.0..=1.0).contains(v))
        .ok_or_else(|| format!("{s:?} is not a rate: use e.g. 0.1% or 0.001"))
}

/// Each threshold broken, in words; empty when all hold.
pub fn judge(report: &Report, t: &Thresholds) -> Vec<String> {
    let mut broken = Vec::new();
    if let Some(max) = t.max_p99 {
        let limit = max.as_secs_f64() * 1000.0;
        if report.latency_ms.p99 > limit {
            broken.push(format!(
                "p99 latency {:.2} ms is above --max-p99 {limit} ms",
                report.latency_ms.p99
            ));
        }
    }
    if let Some(max) = t.max_error_rate {
        if report.error_rate() > max {
            broken.push(format!(
                "error rate {:.3}% is above --max-error-rate {:.3}%",
                report.error_rate() * 100.0,
                max * 100.0
            ));
        }
    }
    if let Some(v) = &report.verify {
        if !v.passed() {
            broken.push(format!(
                "verification: {} acknowledged events lost, {} stored twice",
                v.lost, v.duplicated
            ));
        }
    }
    if report.fell_behind && t.strict_schedule {
        broken.push(format!(
            "the generator fell behind its schedule (--strict-schedule): {:.0} of {:.0} planned events/s offered",
            report.achieved_rate, report.planned_rate
        ));
    }
    broken
}

/// Tokens for the organizations the generator invents, signed with the stack's key.
pub fn token_source(layout: &Layout) -> logctl_loadgen::http::TokenSource {
    let layout = layout.clone();
    Arc::new(move |org: &str| {
        crate::token::mint(
            &layout,
            org,
            &Scope::ALL,
            Duration::from_secs(6 * 3600),
            "logctl-load",
        )
        .ok()
    })
}

/// Load running in the background until stopped (or for its duration): the console's `l`
/// key and the drills' `load` steps.
pub struct Background {
    pub stop: tokio_util::sync::CancellationToken,
    pub handle: tokio::task::JoinHandle<Outcome>,
}

/// Starts `rate` events/s at `gateway` for `duration` (a day when None) on the current
/// runtime, with tokens from the stack's key.
pub fn background(
    layout: &Layout,
    gateway: &str,
    rate: f64,
    duration: Option<Duration>,
    options: engine::Options,
    mut progress: impl FnMut(&Progress) + Send + 'static,
) -> anyhow::Result<Background> {
    let plan = logctl_loadgen::plan::Plan::new(
        rate,
        Some(duration.unwrap_or(Duration::from_secs(24 * 3600))),
        None,
        Duration::ZERO,
    )?;
    let target = Arc::new(logctl_loadgen::http::Gateway::new(
        gateway,
        token_source(layout),
        options.request_timeout,
    )?);
    let stop = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn({
        let stop = stop.clone();
        async move { engine::run(&plan, target, &options, stop, |p| progress(p)).await }
    });
    Ok(Background { stop, handle })
}

/// One line of live progress for a terminal.
pub fn progress_line(p: &Progress) -> String {
    let classes: Vec<String> = p.by_class.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!(
        "[{:>4.0}s/{:.0}s] {:>8.0} ev/s  sent {:>9}  {}  p50 {:.2} ms  p99 {:.2} ms{}",
        p.elapsed.as_secs_f64(),
        p.planned.as_secs_f64(),
        p.rate,
        p.events_sent,
        classes.join("  "),
        p.latency.p50,
        p.latency.p99,
        if p.late_requests > 0 {
            format!("  late {}", p.late_requests)
        } else {
            String::new()
        }
    )
}

pub fn print_progress(p: &Progress) {
    if std::io::stderr().is_terminal() {
        eprint!("\r\x1b[2K{}", progress_line(p));
        let _ = std::io::stderr().flush();
    }
}

/// Waits until every acknowledged id is in PostgreSQL (or `within` passes), then reports what
/// is missing and the end-to-end latencies of what arrived.
pub async fn verify(
    database_url: &str,
    acked: &[Uuid],
    within: Duration,
) -> anyhow::Result<Verification> {
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(database_url)
        .await?;
    let started = Instant::now();
    let mut stored = 0u64;
    let mut rows = 0u64;
    while started.elapsed() < within {
        (stored, rows) = (0, 0);
        for chunk in acked.chunks(20_000) {
            let (n, distinct) = logctl_contracts::schema::count_ids(&pool, chunk).await?;
            rows += n;
            stored += distinct;
        }
        if stored as usize >= acked.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let drain = started.elapsed();
    let mut e2e = new_histogram();
    for chunk in acked.chunks(20_000) {
        let lat = logctl_contracts::schema::end_to_end_micros(&pool, chunk).await?;
        for us in lat {
            let _ = e2e.record(micros(Duration::from_micros(us.max(0) as u64)));
        }
    }
    Ok(Verification {
        acknowledged: acked.len() as u64,
        stored,
        lost: acked.len() as u64 - stored.min(acked.len() as u64),
        duplicated: rows - stored,
        end_to_end_ms: Percentiles::of(&e2e),
        drain_secs: drain.as_secs_f64(),
    })
}

/// Writes the per-second latency histograms as an HdrHistogram interval log (the format
/// HdrHistogram's plotters and `HistogramLogProcessor` read).
pub fn write_hdr_log(path: &Path, intervals: &Intervals) -> anyhow::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut serializer = V2DeflateSerializer::new();
    let now = std::time::SystemTime::now();
    let mut log = IntervalLogWriterBuilder::new()
        .add_comment("logctl load: latency from the intended send time, microseconds")
        .with_base_time(now)
        .with_start_time(now)
        .with_max_value_divisor(1000.0)
        .begin_log_with(&mut file, &mut serializer)?;
    for (start, duration, h) in intervals {
        log.write_histogram(h, *start, *duration, None)
            .map_err(|e| anyhow::anyhow!("cannot write the histogram log: {e:?}"))?;
    }
    drop(log);
    file.flush()?;
    Ok(())
}

fn row(name: &str, value: String) -> String {
    format!("{name:<12}{value}\n")
}

fn percentiles(p: &Percentiles) -> String {
    format!(
        "p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2} ms",
        p.p50, p.p90, p.p99, p.p999, p.max
    )
}

/// The final report for a person.
pub fn render(report: &Report, describe: &str) -> String {
    let mut out = String::new();
    out += &row("target", format!("{} ({describe})", report.target));
    out += &row(
        "planned",
        format!(
            "{:.0} events/s, {} events",
            report.planned_rate, report.planned_events
        ),
    );
    out += &row(
        "sent",
        format!(
            "{} events in {} requests over {:.1} s: {:.0} events/s",
            report.events_sent, report.requests, report.duration_secs, report.achieved_rate
        ),
    );
    let statuses: Vec<String> = report
        .statuses
        .iter()
        .map(|(s, n)| format!("{s}: {n}"))
        .chain(
            (report.transport_errors > 0)
                .then(|| format!("no answer: {}", report.transport_errors)),
        )
        .collect();
    out += &row(
        "answers",
        format!(
            "{}  ({} events accepted, error rate {:.3}%)",
            statuses.join(", "),
            report.events_accepted,
            report.error_rate() * 100.0
        ),
    );
    out += &row(
        "latency",
        format!(
            "{}  (from the planned send time)",
            percentiles(&report.latency_ms)
        ),
    );
    out += &row("service", percentiles(&report.service_time_ms));
    let l = &report.lateness;
    out += &row(
        "generator",
        if report.fell_behind {
            format!(
                "FELL BEHIND: {:.0} of {:.0} planned events/s offered ({:.0}%), {} requests sent over {} ms late (max {:.0} ms), {} waited for a free connection slot: this machine's limit, not the system's (latencies still count from the planned send times)",
                report.achieved_rate,
                report.planned_rate,
                100.0 * report.achieved_rate / report.planned_rate.max(1e-9),
                l.late_requests,
                LATE_AFTER.as_millis(),
                l.max_ms,
                l.waited_for_slot
            )
        } else {
            format!(
                "kept its schedule (latest send {:.1} ms after its planned time)",
                l.max_ms
            )
        },
    );
    if let Some(v) = &report.verify {
        out += &row(
            "verify",
            format!(
                "{} acknowledged, {} stored, {} lost, {} duplicated; drained in {:.1} s",
                v.acknowledged, v.stored, v.lost, v.duplicated, v.drain_secs
            ),
        );
        out += &row(
            "end-to-end",
            format!("{}  (accepted → stored)", percentiles(&v.end_to_end_ms)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn report(p99: f64, statuses: &[(u16, u64)]) -> Report {
        Report {
            target: "t".into(),
            planned_rate: 100.0,
            planned_events: 100,
            requests: statuses.iter().map(|s| s.1).sum(),
            events_sent: 100,
            events_accepted: 100,
            statuses: statuses.iter().copied().collect::<BTreeMap<_, _>>(),
            transport_errors: 0,
            duration_secs: 1.0,
            achieved_rate: 100.0,
            latency_ms: Percentiles {
                p99,
                ..Percentiles::default()
            },
            service_time_ms: Percentiles::default(),
            lateness: Default::default(),
            fell_behind: false,
            verify: None,
        }
    }

    #[test]
    fn thresholds_name_what_they_caught() {
        let t = Thresholds {
            max_p99: Some(Duration::from_millis(50)),
            max_error_rate: Some(0.001),
            strict_schedule: false,
        };
        assert!(judge(&report(12.0, &[(202, 1000)]), &t).is_empty());
        let behind = Report {
            fell_behind: true,
            achieved_rate: 60.0,
            ..report(12.0, &[(202, 1000)])
        };
        assert!(
            judge(&behind, &t).is_empty(),
            "the machine's limit, reported"
        );
        let strict = Thresholds {
            strict_schedule: true,
            ..t.clone()
        };
        let broken = judge(&behind, &strict);
        assert!(broken[0].contains("60 of 100"), "{broken:?}");
        let slow = judge(&report(80.0, &[(202, 1000)]), &t);
        assert_eq!(slow.len(), 1);
        assert!(slow[0].contains("p99"), "{slow:?}");
        let failing = judge(&report(12.0, &[(202, 990), (503, 10)]), &t);
        assert!(failing[0].contains("error rate 1.000%"), "{failing:?}");
    }

    #[test]
    fn rates_read_as_percent_or_fraction() {
        assert_eq!(parse_rate("0.1%"), Ok(0.001));
        assert_eq!(parse_rate("0.05"), Ok(0.05));
        assert!(parse_rate("150%").is_err());
        assert!(parse_rate("lots").is_err());
    }
}
