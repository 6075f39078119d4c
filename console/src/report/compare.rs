//! A run against a baseline run: each figure side by side with its ratio, and a verdict for CI.
//!
//! Percentiles come from the two runs' full histograms where the records have them (not from
//! the rounded figures), and the tail is judged twice: the p99 ratio, and the share of this
//! run's requests slower than the baseline's p99 (1% when nothing changed). A p99 must also
//! grow by at least [`Limits::p99_floor_ms`] to count: at a p99 of 2 ms a 10% swing is noise
//! between two runs on one machine, not a regression.

use hdrhistogram::Histogram;

use super::record::LoadRecord;
use crate::units::thousands;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// A p99 this much higher (0.10 is 10%) is a regression.
    pub max_p99_regression: f64,
    /// Accepted events/s this much lower is a regression.
    pub max_throughput_regression: f64,
    /// A p99 growing by less than this is never a regression.
    pub p99_floor_ms: f64,
    /// An error rate growing by more than this (a fraction of requests) is a regression.
    pub max_error_rate_increase: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_p99_regression: 0.10,
            max_throughput_regression: 0.05,
            p99_floor_ms: 1.0,
            max_error_rate_increase: 0.001,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub figure: String,
    pub baseline: String,
    pub run: String,
    /// run / baseline, when both are numbers and the baseline is not zero.
    pub ratio: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub rows: Vec<Row>,
    /// Each limit broken, in words; empty when the run holds up.
    pub regressions: Vec<String>,
    /// Differences between the runs' plans that make the figures less comparable.
    pub warnings: Vec<String>,
}

/// (p50, p90, p99, p99.9, max) in ms: from the histogram when the record has one.
fn percentiles(r: &LoadRecord) -> [f64; 5] {
    match r.latency() {
        Some(h) => {
            let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
            [
                ms(0.5),
                ms(0.9),
                ms(0.99),
                ms(0.999),
                h.max() as f64 / 1000.0,
            ]
        }
        None => {
            let p = &r.report.latency_ms;
            [p.p50, p.p90, p.p99, p.p999, p.max]
        }
    }
}

/// The share of `h`'s requests slower than `ms`.
fn share_above(h: &Histogram<u64>, ms: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    let us = (ms * 1000.0) as u64;
    let at_or_below: u64 = h
        .iter_recorded()
        .filter(|v| v.value_iterated_to() <= us)
        .map(|v| v.count_at_value())
        .sum();
    1.0 - at_or_below as f64 / h.len() as f64
}

fn ratio(run: f64, base: f64) -> Option<f64> {
    (base > 0.0).then(|| run / base)
}

/// What the two runs planned differently (rate, events per request, duration).
fn unlike(b: &logctl_loadgen::report::Report, r: &logctl_loadgen::report::Report) -> Vec<String> {
    let per_request =
        |x: &logctl_loadgen::report::Report| x.events_sent as f64 / x.requests.max(1) as f64;
    let differs = |a: f64, b: f64| (a - b).abs() > 0.05 * a.abs().max(b.abs());
    let mut out = Vec::new();
    if differs(b.planned_rate, r.planned_rate) {
        out.push(format!(
            "planned {} events/s against the baseline's {}",
            thousands(r.planned_rate),
            thousands(b.planned_rate)
        ));
    }
    if differs(per_request(b), per_request(r)) {
        out.push(format!(
            "{:.0} events per request against the baseline's {:.0}",
            per_request(r),
            per_request(b)
        ));
    }
    if differs(b.duration_secs, r.duration_secs) {
        out.push(format!(
            "{:.0} s against the baseline's {:.0} s",
            r.duration_secs, b.duration_secs
        ));
    }
    out
}

pub fn compare(baseline: &LoadRecord, run: &LoadRecord, limits: &Limits) -> Comparison {
    let mut rows = Vec::new();
    let mut regressions = Vec::new();
    let (b, r) = (&baseline.report, &run.report);
    let warnings = unlike(b, r);
    let (b_rate, r_rate) = (b.accepted_rate(), r.accepted_rate());
    rows.push(Row {
        figure: "accepted events/s".into(),
        baseline: thousands(b_rate),
        run: thousands(r_rate),
        ratio: ratio(r_rate, b_rate),
    });
    if ratio(r_rate, b_rate).is_some_and(|x| x < 1.0 - limits.max_throughput_regression) {
        regressions.push(format!(
            "accepted {} events/s against {} ({:.1}% lower; at most {:.0}% allowed)",
            thousands(r_rate),
            thousands(b_rate),
            100.0 * (1.0 - r_rate / b_rate),
            100.0 * limits.max_throughput_regression
        ));
    }
    let (bp, rp) = (percentiles(baseline), percentiles(run));
    for (i, name) in ["p50", "p90", "p99", "p99.9", "max"].iter().enumerate() {
        rows.push(Row {
            figure: format!("latency {name} (ms)"),
            baseline: format!("{:.2}", bp[i]),
            run: format!("{:.2}", rp[i]),
            ratio: ratio(rp[i], bp[i]),
        });
    }
    let (b99, r99) = (bp[2], rp[2]);
    if r99 > b99 * (1.0 + limits.max_p99_regression) && r99 - b99 >= limits.p99_floor_ms {
        regressions.push(format!(
            "p99 {r99:.2} ms against {b99:.2} ms ({:+.0}%; at most +{:.0}% allowed)",
            100.0 * (r99 / b99.max(1e-9) - 1.0),
            100.0 * limits.max_p99_regression
        ));
    }
    if let Some(h) = run.latency() {
        let share = share_above(&h, b99);
        rows.push(Row {
            figure: "requests slower than the baseline's p99".into(),
            baseline: "1.00%".into(),
            run: format!("{:.2}%", 100.0 * share),
            ratio: Some(share / 0.01),
        });
    }
    let (b_err, r_err) = (b.error_rate(), r.error_rate());
    rows.push(Row {
        figure: "requests not answered 2xx".into(),
        baseline: format!("{:.3}%", 100.0 * b_err),
        run: format!("{:.3}%", 100.0 * r_err),
        ratio: ratio(r_err, b_err),
    });
    if r_err - b_err > limits.max_error_rate_increase {
        regressions.push(format!(
            "{:.3}% of requests not answered 2xx against {:.3}%",
            100.0 * r_err,
            100.0 * b_err
        ));
    }
    Comparison {
        rows,
        regressions,
        warnings,
    }
}

/// The comparison as a table for a terminal, then the verdict.
pub fn render(c: &Comparison) -> String {
    let width = c
        .rows
        .iter()
        .map(|r| r.figure.chars().count() + 2)
        .max()
        .unwrap_or(0)
        .max(12);
    let mut out = format!(
        "{:<width$}{:>12}{:>12}{:>9}\n",
        "", "baseline", "this run", "ratio"
    );
    for row in &c.rows {
        out += &format!(
            "{:<width$}{:>12}{:>12}{:>9}\n",
            row.figure,
            row.baseline,
            row.run,
            row.ratio.map_or_else(|| "–".into(), |r| format!("{r:.2}×"))
        );
    }
    for w in &c.warnings {
        out += &format!("warning     the runs differ: {w}\n");
    }
    if c.regressions.is_empty() {
        out += "verdict     no regression\n";
    } else {
        for r in &c.regressions {
            out += &format!("REGRESSION  {r}\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::record::tests::sample_report;
    use logctl_loadgen::report::new_histogram;
    use std::time::Duration;

    /// 1,000 requests at about `ms`, and `slow` of them at 1 s (a pause).
    fn run(ms: u64, slow: u64) -> LoadRecord {
        let mut h = new_histogram();
        for i in 0..1_000u64 {
            h.record(if i < slow { 1_000_000 } else { ms * 1000 + i })
                .expect("record");
        }
        LoadRecord::new(
            sample_report(),
            &vec![(Duration::ZERO, Duration::from_secs(10), h)],
        )
    }

    #[test]
    fn a_run_against_itself_holds() {
        let r = run(5, 0);
        let c = compare(&r, &r, &Limits::default());
        assert!(c.regressions.is_empty(), "{c:?}");
        let p99 = c.rows.iter().find(|r| r.figure == "latency p99 (ms)");
        assert_eq!(p99.and_then(|r| r.ratio), Some(1.0));
        assert!(render(&c).contains("no regression"));
    }

    #[test]
    fn a_pause_fails_on_p99_and_says_by_how_much() {
        let c = compare(&run(5, 0), &run(5, 50), &Limits::default());
        assert_eq!(c.regressions.len(), 1, "{c:?}");
        assert!(
            c.regressions[0].starts_with("p99 1000"),
            "{:?}",
            c.regressions
        );
        // The 50 paused requests, and the few just over the baseline's p99 as before.
        let share = c
            .rows
            .iter()
            .find(|r| r.figure.starts_with("requests slower"))
            .and_then(|r| r.ratio);
        assert!(share.is_some_and(|x| (5.0..7.0).contains(&x)), "{share:?}");
        assert!(render(&c).contains("REGRESSION  p99"));
    }

    /// 1,000 requests all at `us` microseconds.
    fn flat(us: u64) -> LoadRecord {
        let mut h = new_histogram();
        h.record_n(us, 1_000).expect("record");
        LoadRecord::new(
            sample_report(),
            &vec![(Duration::ZERO, Duration::from_secs(10), h)],
        )
    }

    #[test]
    fn small_swings_of_a_fast_p99_are_not_regressions() {
        // 2.5 ms against 2.0 ms is +25%, but half a millisecond is under the floor.
        let (base, run) = (flat(2_000), flat(2_500));
        assert!(compare(&base, &run, &Limits::default())
            .regressions
            .is_empty());
        let no_floor = Limits {
            p99_floor_ms: 0.0,
            ..Limits::default()
        };
        assert_eq!(compare(&base, &run, &no_floor).regressions.len(), 1);
    }
}
