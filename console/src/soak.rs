//! `logctl soak`: a long run at a fixed rate that shows the stack holds a steady state: memory
//! that stops growing, lag that stays bounded, a p99 that does not creep up, and disk that
//! retention keeps in check.
//!
//! The load is the `logctl load` engine with its realistic mix, in the background; every
//! sample (10 s by default) reads what the console reads (the services' metrics, lag from
//! Kafka, each process's RSS), each component's CPU from /proc, the events table's bytes from
//! PostgreSQL's catalog and the brokers' log folders from disk. The verdict is computed from
//! the samples after the warm-up only, each check saying what it compared, so a failed soak
//! names its reason; a check the run was too short to judge says so instead of passing.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::PgPool;

use logctl_contracts::schema::partitions::{self, Policy};
use logctl_loadgen::engine;

use crate::bench::procstat;
use crate::signals::{Collector, Signals};
use crate::stack::kafka;
use crate::stack::layout::{Layout, StackConfig};

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Options {
    pub rate: f64,
    pub duration: Duration,
    pub warmup: Duration,
    pub sample_every: Duration,
}

/// One reading.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sample {
    pub t_secs: f64,
    pub accepted_per_sec: f64,
    pub stored_per_sec: f64,
    pub lag: i64,
    pub gateway_p99_ms: Option<f64>,
    pub end_to_end_p99_ms: Option<f64>,
    /// Resident memory per service and broker (MiB).
    pub rss_mib: BTreeMap<String, f64>,
    /// Cores used since the last sample, per component (its child processes included).
    pub cores: BTreeMap<String, f64>,
    pub table_bytes: i64,
    pub partitions: usize,
    pub kafka_bytes: u64,
    pub errors_per_sec: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    /// None: not judged (the run was too short for it), with the reason in `detail`.
    pub passed: Option<bool>,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub options: Options,
    pub retention_secs: i64,
    pub partition_interval_secs: i64,
    pub kafka_retention_secs: u64,
    pub samples: Vec<Sample>,
    pub checks: Vec<Check>,
    pub passed: bool,
}

/// Components whose memory is judged: the services and the brokers.
fn judged(name: &str) -> bool {
    ["gateway", "producer", "consumer", "kafka"]
        .iter()
        .any(|s| name == *s || name.starts_with(&format!("{s}-")))
}

pub async fn run(
    layout: &Layout,
    config: &StackConfig,
    pool: &PgPool,
    opts: Options,
) -> anyhow::Result<Report> {
    let policy = Policy::try_from(&config.storage.postgres)
        .map_err(|e| anyhow::anyhow!("stack.toml's storage settings: {e}"))?;
    let collector = Collector::new(layout, config);
    let options = engine::Options {
        orgs: 20,
        org_prefix: "soak".into(),
        collect_ids: false,
        ..engine::Options::default()
    };
    let load = crate::load::background(
        layout,
        &collector.gateway(),
        opts.rate,
        Some(opts.duration),
        options,
        |_| {},
    )?;
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut before = collector.snapshot().await;
    let mut cpu_before = procstat::cpu_by_tree(&pids(&Signals::between(&before, &before)));
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + opts.sample_every,
        opts.sample_every,
    );
    while started.elapsed() < opts.duration {
        tick.tick().await;
        let now = collector.snapshot().await;
        let signals = Signals::between(&before, &now);
        let roots: Vec<(String, u32)> = signals
            .processes
            .iter()
            .map(|(name, (pid, _))| (name.clone(), *pid))
            .collect();
        let cpu_now = procstat::cpu_by_tree(&roots.iter().map(|(_, p)| *p).collect::<Vec<_>>());
        let parts = partitions::list(pool, false).await.unwrap_or_default();
        let sample = Sample {
            t_secs: started.elapsed().as_secs_f64(),
            accepted_per_sec: signals.accepted_per_sec,
            stored_per_sec: signals.stored_per_sec,
            lag: signals.lag_total.unwrap_or(0),
            gateway_p99_ms: signals.gateway_p99_ms,
            end_to_end_p99_ms: signals.end_to_end_p99_ms,
            rss_mib: signals
                .processes
                .iter()
                .filter_map(|(name, (_, rss))| rss.map(|r| (name.clone(), r)))
                .collect(),
            cores: procstat::cores(&roots, &cpu_before, &cpu_now, signals.seconds),
            table_bytes: parts.iter().map(|p| p.bytes).sum(),
            partitions: parts.iter().filter(|p| p.range.is_some()).count(),
            kafka_bytes: (0..config.brokers.max(1))
                .map(|i| du(&layout.component_dir(&kafka::name(i))))
                .sum(),
            errors_per_sec: signals.server_errors_per_sec,
        };
        eprintln!("{}", line(&sample));
        samples.push(sample);
        before = now;
        cpu_before = cpu_now;
    }
    load.stop.cancel();
    let _ = load.handle.await;
    let checks = judge(
        &samples,
        &opts,
        &policy,
        config.storage.kafka.retention_secs,
    );
    let passed = checks.iter().all(|c| c.passed != Some(false));
    Ok(Report {
        options: opts,
        retention_secs: policy.retention().num_seconds(),
        partition_interval_secs: policy.interval().num_seconds(),
        kafka_retention_secs: config.storage.kafka.retention_secs,
        samples,
        checks,
        passed,
    })
}

fn pids(s: &Signals) -> Vec<u32> {
    s.processes.values().map(|(pid, _)| *pid).collect()
}

/// Bytes on disk of the files under `dir`, as `du` counts them: allocated blocks, since
/// Kafka preallocates its index files sparse (10 MiB each by length, a few KiB on disk).
fn du(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => du(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.blocks() * 512).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// Least-squares slope of `points` (per second).
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if n < 3.0 {
        return None;
    }
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// The steady-state checks over the samples after the warm-up.
pub fn judge(
    samples: &[Sample],
    opts: &Options,
    policy: &Policy,
    kafka_retention_secs: u64,
) -> Vec<Check> {
    let warm: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.t_secs >= opts.warmup.as_secs_f64())
        .collect();
    let mut checks = Vec::new();
    if warm.len() < 6 {
        checks.push(Check {
            name: "samples".into(),
            passed: Some(false),
            detail: format!(
                "{} samples after the warm-up: too few to judge (run longer or sample more often)",
                warm.len()
            ),
        });
        return checks;
    }
    let third = warm.len() / 3;
    let (first, last) = (&warm[..third], &warm[warm.len() - third..]);

    // Memory: the last third's median RSS within 10% of the first third's, per component.
    let names: std::collections::BTreeSet<&String> = warm
        .iter()
        .flat_map(|s| s.rss_mib.keys())
        .filter(|n| judged(n))
        .collect();
    for name in names {
        let of = |part: &[&Sample]| {
            median(
                part.iter()
                    .filter_map(|s| s.rss_mib.get(name).copied())
                    .collect(),
            )
        };
        if let (Some(a), Some(b)) = (of(first), of(last)) {
            let growth = (b - a) / a.max(1.0);
            checks.push(Check {
                name: format!("rss {name}"),
                passed: Some(growth < 0.10),
                detail: format!(
                    "{a:.1} MiB → {b:.1} MiB ({:+.1}%, limit +10%)",
                    growth * 100.0
                ),
            });
        }
    }

    // Lag: bounded, not growing: the last third's peak within 1.5x the first third's (or a
    // few seconds of the rate, for a pipeline that keeps lag near zero).
    let peak = |part: &[&Sample]| part.iter().map(|s| s.lag).max().unwrap_or(0) as f64;
    let floor = opts.rate * 5.0;
    let (a, b) = (peak(first), peak(last));
    checks.push(Check {
        name: "lag bounded".into(),
        passed: Some(b <= (1.5 * a).max(floor)),
        detail: format!(
            "peak {a:.0} in the first third, {b:.0} in the last (limit max(1.5 x first, 5 s of the rate = {floor:.0}))"
        ),
    });

    // p99: no upward trend: its least-squares rise over the run under a quarter of its median
    // (plus 5 ms, below which a rise is noise).
    let p99: Vec<(f64, f64)> = warm
        .iter()
        .filter_map(|s| s.gateway_p99_ms.map(|p| (s.t_secs, p)))
        .collect();
    let span = warm.last().map_or(0.0, |s| s.t_secs) - warm[0].t_secs;
    match (slope(&p99), median(p99.iter().map(|p| p.1).collect())) {
        (Some(k), Some(m)) => {
            let rise = k * span;
            checks.push(Check {
                name: "p99 trend".into(),
                passed: Some(rise < 0.25 * m + 5.0),
                detail: format!(
                    "gateway p99 median {m:.1} ms, trend {rise:+.1} ms over {:.0} s (limit {:.1} ms)",
                    span,
                    0.25 * m + 5.0
                ),
            });
        }
        _ => checks.push(Check {
            name: "p99 trend".into(),
            passed: None,
            detail: "no gateway p99 readings".into(),
        }),
    }

    // Disk: once retention has had time to drop (its horizon plus two intervals and a
    // maintenance pass), the table stops growing: the last third's peak within 15% of the
    // middle third's.
    let settle = (policy.retention() + policy.interval() * 2).num_seconds() as f64 + 60.0;
    disk_check(&mut checks, "postgres table", &warm, settle, |s| {
        s.table_bytes as f64
    });
    // Kafka deletes whole segments (rolled at a fifth of the retention) on its 5-minute check.
    let kafka_settle = kafka_retention_secs as f64 * 1.2 + 600.0;
    disk_check(&mut checks, "kafka log", &warm, kafka_settle, |s| {
        s.kafka_bytes as f64
    });
    checks
}

fn disk_check(
    checks: &mut Vec<Check>,
    what: &str,
    warm: &[&Sample],
    settle_secs: f64,
    bytes: impl Fn(&Sample) -> f64,
) {
    let settled: Vec<&&Sample> = warm.iter().filter(|s| s.t_secs >= settle_secs).collect();
    let name = format!("{what} bytes bounded");
    if settled.len() < 6 {
        checks.push(Check {
            name,
            passed: None,
            detail: format!(
                "not judged: retention first drops after {settle_secs:.0} s and the run has {} \
                 samples past it (shorten the retention, or run longer)",
                settled.len()
            ),
        });
        return;
    }
    let half = settled.len() / 2;
    let peak = |part: &[&&Sample]| part.iter().map(|s| bytes(s)).fold(0.0, f64::max);
    let (a, b) = (peak(&settled[..half]), peak(&settled[half..]));
    checks.push(Check {
        name,
        passed: Some(b <= a * 1.15),
        detail: format!(
            "peak {:.1} MiB then {:.1} MiB once retention drops (limit +15%)",
            a / 1048576.0,
            b / 1048576.0
        ),
    });
}

/// One sample as a line of the live log and of the table.
pub fn line(s: &Sample) -> String {
    let rss = |name: &str| {
        s.rss_mib
            .get(name)
            .map_or("-".into(), |v| format!("{v:.0}"))
    };
    format!(
        "{:>6.0}s  in {:>7.0}/s  stored {:>7.0}/s  lag {:>7}  p99 {:>7}  rss gw {:>4} pr {:>4} co {:>4} kafka {:>5} MiB  pg {:>7.1} MiB ({} parts)  kafka {:>7.1} MiB",
        s.t_secs,
        s.accepted_per_sec,
        s.stored_per_sec,
        s.lag,
        s.gateway_p99_ms.map_or("-".into(), |p| format!("{p:.1}ms")),
        rss("gateway"),
        rss("producer"),
        rss("consumer"),
        rss("kafka"),
        s.table_bytes as f64 / 1048576.0,
        s.partitions,
        s.kafka_bytes as f64 / 1048576.0,
    )
}

pub fn render(r: &Report) -> String {
    let mut out = format!(
        "soak: {:.0} events/s for {:.0} s (warm-up {:.0} s); PostgreSQL keeps {} s in partitions of {} s, Kafka {} s\n",
        r.options.rate,
        r.options.duration.as_secs_f64(),
        r.options.warmup.as_secs_f64(),
        r.retention_secs,
        r.partition_interval_secs,
        r.kafka_retention_secs
    );
    // A row a minute (every sample when there are few).
    let every = (60.0 / r.options.sample_every.as_secs_f64().max(1.0))
        .round()
        .max(1.0) as usize;
    for s in r.samples.iter().step_by(every) {
        out.push_str(&line(s));
        out.push('\n');
    }
    for c in &r.checks {
        let verdict = match c.passed {
            Some(true) => "ok  ",
            Some(false) => "FAIL",
            None => "n/a ",
        };
        out.push_str(&format!("{verdict} {:<28} {}\n", c.name, c.detail));
    }
    out.push_str(if r.passed {
        "PASSED: the stack held a steady state\n"
    } else {
        "FAILED: see the checks above\n"
    });
    out
}

/// The samples as one SVG: a plot per signal, time on the x axis, the warm-up's end marked.
pub fn svg(r: &Report) -> String {
    use crate::report::plot::{stacked_svg, Plot, Series};
    let line = |name: &str, f: &dyn Fn(&Sample) -> Option<f64>| {
        Series::new(
            name,
            r.samples
                .iter()
                .filter_map(|s| f(s).map(|v| (s.t_secs, v)))
                .collect(),
        )
    };
    let marks = [(r.options.warmup.as_secs_f64(), "warm-up ends".to_owned())];
    let plot = |title: &str, y: &str, series| Plot::over_time(title, y, series, &marks);
    let mib = |bytes: f64| bytes / 1_048_576.0;
    stacked_svg(&[
        plot(
            "Resident memory",
            "MiB",
            ["gateway", "producer", "consumer", "kafka"]
                .into_iter()
                .map(|n| line(n, &|s: &Sample| s.rss_mib.get(n).copied()))
                .collect(),
        ),
        plot(
            "Consumer lag",
            "events",
            vec![line("lag", &|s: &Sample| Some(s.lag as f64))],
        ),
        plot(
            "Gateway p99",
            "ms",
            vec![line("p99", &|s: &Sample| s.gateway_p99_ms)],
        ),
        plot(
            "Disk",
            "MiB",
            vec![
                line("postgres table", &|s: &Sample| {
                    Some(mib(s.table_bytes as f64))
                }),
                line("kafka logs", &|s: &Sample| Some(mib(s.kafka_bytes as f64))),
            ],
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: f64, rss: f64, lag: i64, p99: f64, table: i64) -> Sample {
        Sample {
            t_secs: t,
            lag,
            gateway_p99_ms: Some(p99),
            rss_mib: BTreeMap::from([("gateway".to_owned(), rss)]),
            table_bytes: table,
            ..Sample::default()
        }
    }

    fn opts() -> Options {
        Options {
            rate: 100.0,
            duration: Duration::from_secs(1200),
            warmup: Duration::from_secs(60),
            sample_every: Duration::from_secs(10),
        }
    }

    fn verdict(checks: &[Check], name: &str) -> Option<bool> {
        checks
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.passed)
    }

    #[test]
    fn the_svg_has_a_plot_per_signal_and_the_warm_up_marked() {
        let report = Report {
            options: opts(),
            retention_secs: 180,
            partition_interval_secs: 60,
            kafka_retention_secs: 180,
            samples: (0..10)
                .map(|i| sample(f64::from(i) * 10.0, 50.0, 100, 12.0, 1 << 20))
                .collect(),
            checks: Vec::new(),
            passed: true,
        };
        let svg = svg(&report);
        assert!(svg.starts_with("<svg xmlns") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<svg x=\"0\"").count(), 4, "{svg:.500}");
        assert_eq!(svg.matches(">warm-up ends</text>").count(), 4);
        assert!(svg.contains("data-series=\"postgres table\""));
    }

    #[test]
    fn a_steady_run_passes_and_a_leak_or_a_creeping_p99_fails() {
        let policy = Policy::try_from(&logctl_contracts::schema::partitions::RetentionSettings {
            partition_interval_secs: 60,
            retention_secs: 180,
            partitions_ahead: 1,
        })
        .expect("policy");
        // Disk climbs until retention drops (after 180 + 120 + 60 s), then holds.
        let steady: Vec<Sample> = (0..120)
            .map(|i| {
                let t = i as f64 * 10.0;
                sample(
                    t,
                    50.0 + (i % 3) as f64,
                    100 + i % 7,
                    10.0 + (i % 4) as f64,
                    (t.min(360.0) * 1000.0) as i64,
                )
            })
            .collect();
        let checks = judge(&steady, &opts(), &policy, 7 * 86_400);
        assert_eq!(verdict(&checks, "rss gateway"), Some(true), "{checks:?}");
        assert_eq!(verdict(&checks, "lag bounded"), Some(true), "{checks:?}");
        assert_eq!(verdict(&checks, "p99 trend"), Some(true), "{checks:?}");
        assert_eq!(
            verdict(&checks, "postgres table bytes bounded"),
            Some(true),
            "{checks:?}"
        );
        assert_eq!(
            verdict(&checks, "kafka log bytes bounded"),
            None,
            "a week's retention is not judged in 20 minutes"
        );

        let leaking: Vec<Sample> = steady
            .iter()
            .map(|s| Sample {
                rss_mib: BTreeMap::from([("gateway".to_owned(), 50.0 + s.t_secs / 10.0)]),
                gateway_p99_ms: Some(10.0 + s.t_secs / 20.0),
                table_bytes: (s.t_secs * 1000.0) as i64,
                lag: (s.t_secs * 10.0) as i64,
                ..s.clone()
            })
            .collect();
        let checks = judge(&leaking, &opts(), &policy, 7 * 86_400);
        for name in [
            "rss gateway",
            "lag bounded",
            "p99 trend",
            "postgres table bytes bounded",
        ] {
            assert_eq!(verdict(&checks, name), Some(false), "{name}: {checks:?}");
        }
    }

    #[test]
    fn too_short_a_run_is_not_judged_a_pass() {
        let few: Vec<Sample> = (0..8)
            .map(|i| sample(i as f64 * 10.0, 50.0, 0, 5.0, 0))
            .collect();
        let checks = judge(&few, &opts(), &Policy::default(), 7 * 86_400);
        assert_eq!(verdict(&checks, "samples"), Some(false));
    }
}
