//! The benchmark's figures as data: `bench/RESULTS.json` beside the markdown, an HTML page
//! with each search's latency against the offered rate (`--html`), and a comparison with an
//! earlier run (`--compare old.json`) for CI.
//!
//! Machines of this kind differ threefold in speed from day to day, so runs are compared by
//! their ratios to the baselines each measured in its own run (gateway knee / wrk ceiling,
//! drain / COPY …), never by absolute rates: a slower machine moves both sides of a ratio.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::{drain, Results, Search};
use crate::report::compare::{Comparison, Row};
use crate::report::html::{document, escape, sections};
use crate::report::plot::{Plot, Series, XAxis};
use crate::units::thousands;

/// One figure of the results table: ours against its baseline of the same run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Figure {
    pub name: String,
    pub ours: Option<f64>,
    pub baseline_name: String,
    pub baseline: Option<f64>,
    /// ours / baseline.
    pub ratio: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    pub rate: f64,
    pub accepted_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub passed: bool,
    /// Cores per component over the step.
    pub cores: BTreeMap<String, f64>,
    /// Through the gateway: accepted → stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_to_end_p50_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_to_end_p99_ms: Option<f64>,
    /// Through the gateway: the rate limiter's round trips to Redis and decisions in memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_round_trips: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_fallbacks: Option<f64>,
    /// The machine's CPU the hypervisor took: over the step, and in its worst 200 ms.
    #[serde(default)]
    pub cpu_stolen: f64,
    #[serde(default)]
    pub cpu_stolen_worst: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SearchRecord {
    pub name: String,
    pub p99_limit_ms: f64,
    pub steps: Vec<StepRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BenchRecord {
    pub machine: String,
    pub started: String,
    pub quick: bool,
    pub debug_build: bool,
    pub figures: Vec<Figure>,
    pub searches: Vec<SearchRecord>,
}

fn figure(name: &str, ours: Option<f64>, baseline_name: &str, baseline: Option<f64>) -> Figure {
    Figure {
        name: name.into(),
        ours,
        baseline_name: baseline_name.into(),
        baseline,
        ratio: ours
            .zip(baseline)
            .filter(|(_, b)| *b > 0.0)
            .map(|(o, b)| o / b),
    }
}

fn stored(st: &super::Step) -> Option<&logctl_loadgen::report::Verification> {
    st.gateway.as_ref()?.stored.as_ref()
}

fn search(s: &Search) -> SearchRecord {
    SearchRecord {
        name: s.name.clone(),
        p99_limit_ms: s.p99_limit_ms,
        steps: s
            .steps
            .iter()
            .map(|st| StepRecord {
                rate: st.rate,
                accepted_per_sec: st.report.accepted_rate(),
                p50_ms: st.report.latency_ms.p50,
                p99_ms: st.report.latency_ms.p99,
                max_ms: st.report.latency_ms.max,
                passed: st.passed,
                cores: st.cores.clone(),
                end_to_end_p50_ms: stored(st).map(|v| v.end_to_end_ms.p50),
                end_to_end_p99_ms: stored(st).map(|v| v.end_to_end_ms.p99),
                redis_round_trips: st.gateway.as_ref().map(|g| g.limiter.redis_round_trips),
                rate_limit_fallbacks: st.gateway.as_ref().map(|g| g.limiter.fallback_decisions),
                cpu_stolen: st.stolen.share,
                cpu_stolen_worst: st.stolen.worst,
            })
            .collect(),
    }
}

impl BenchRecord {
    pub fn of(r: &Results) -> Self {
        let (gw, pr, b100, b1000) = (r.knee(0), r.knee(1), r.knee(2), r.knee(3));
        let drain_rate = r.drain.as_ref().map(drain::Drained::rate);
        let kafka = "Kafka ProducerPerformance (records/s)";
        Self {
            machine: r.machine.clone(),
            started: r.started.clone(),
            quick: r.options.quick,
            debug_build: cfg!(debug_assertions),
            figures: vec![
                figure(
                    "single events through the gateway (events/s)",
                    gw,
                    "HTTP ceiling, wrk on /health (req/s)",
                    r.http_ceiling(),
                ),
                figure(
                    "single events straight to the producer (events/s)",
                    pr,
                    kafka,
                    r.kafka_perf,
                ),
                Figure {
                    // Judged pair by pair (Results::hop_ratio), not as the knees' quotient.
                    ratio: r.hop_ratio(),
                    ..figure(
                        "gateway knee (events/s)",
                        gw,
                        "producer-direct knee (events/s)",
                        pr,
                    )
                },
                figure("batches of 100 (events/s)", b100, kafka, r.kafka_perf),
                figure("batches of 1000 (events/s)", b1000, kafka, r.kafka_perf),
                figure(
                    "consumer drain (rows/s)",
                    drain_rate,
                    "PostgreSQL COPY (rows/s)",
                    r.copy,
                ),
            ],
            searches: r.every_search().map(search).collect(),
        }
    }
}

/// Each figure's ratio to its baseline, this run against the old one; a ratio more than
/// `max_regression` (0.10 is 10%) below the old one's is a regression.
pub fn compare(old: &BenchRecord, new: &BenchRecord, max_regression: f64) -> Comparison {
    let mut rows = Vec::new();
    let mut regressions = Vec::new();
    for f in &new.figures {
        let Some(before) = old.figures.iter().find(|o| o.name == f.name) else {
            continue;
        };
        let shown = |r: Option<f64>| r.map_or_else(|| "–".into(), |r| format!("{r:.3}"));
        let change = f
            .ratio
            .zip(before.ratio)
            .filter(|(_, b)| *b > 0.0)
            .map(|(n, b)| n / b);
        rows.push(Row {
            figure: format!("{} / {}", f.name, f.baseline_name),
            baseline: shown(before.ratio),
            run: shown(f.ratio),
            ratio: change,
        });
        if before.ratio.is_some() && f.ratio.is_none() {
            regressions.push(format!(
                "{}: was {} of its baseline, now not measured (no step passed, or the stage did not run)",
                f.name,
                shown(before.ratio)
            ));
        } else if change.is_some_and(|c| c < 1.0 - max_regression) {
            regressions.push(format!(
                "{}: {} of its baseline, was {} ({:.0}% lower; at most {:.0}% allowed)",
                f.name,
                shown(f.ratio),
                shown(before.ratio),
                100.0 * (1.0 - change.unwrap_or(1.0)),
                100.0 * max_regression
            ));
        }
    }
    let warnings = (old.quick || new.quick)
        .then(|| {
            "a --quick run steps through two rates only: its knees are too coarse to compare".into()
        })
        .into_iter()
        .collect();
    Comparison {
        rows,
        regressions,
        warnings,
    }
}

/// The page: the figures with their baselines, the comparison, and each search's latency
/// against the rate it was offered.
pub fn html(record: &BenchRecord, comparison: Option<&Comparison>) -> String {
    let mut body = String::from(
        "<h2>Figures against this run's baselines</h2><table><tr><th>figure</th><th>ours</th><th>baseline</th><th>ours / baseline</th></tr>",
    );
    let cell = |v: Option<f64>| v.map_or_else(|| "–".into(), thousands);
    for f in &record.figures {
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=\"num\">{}</td><td>{} {}</td><td class=\"num\">{}</td></tr>",
            escape(&f.name),
            cell(f.ours),
            escape(&f.baseline_name),
            cell(f.baseline),
            f.ratio.map_or_else(|| "–".into(), |r| format!("{r:.3}"))
        );
    }
    body.push_str("</table>");
    if let Some(c) = comparison {
        body.push_str(&crate::report::html::comparison_table(c));
    }
    let plots: Vec<Plot> = record
        .searches
        .iter()
        .map(|s| {
            // In the order of rate: a refined knee's steps came after the higher rate that failed.
            let mut by_rate: Vec<&StepRecord> = s.steps.iter().collect();
            by_rate.sort_by(|a, b| a.rate.total_cmp(&b.rate));
            let line = |name: &str, f: fn(&StepRecord) -> f64| {
                Series::new(name, by_rate.iter().map(|st| (st.rate, f(st))).collect())
            };
            let mut series = vec![
                line("p50", |st| st.p50_ms),
                line("p99", |st| st.p99_ms),
                line("max", |st| st.max_ms),
            ];
            let end_to_end: Vec<(f64, f64)> = by_rate
                .iter()
                .filter_map(|st| Some((st.rate, st.end_to_end_p99_ms?)))
                .collect();
            if !end_to_end.is_empty() {
                series.push(Series::new("accepted → stored p99", end_to_end));
            }
            Plot {
                title: format!("{} (p99 limit {} ms)", s.name, s.p99_limit_ms),
                y_label: "ms".into(),
                x: XAxis::Rate,
                series,
                marks: Vec::new(),
            }
        })
        .collect();
    body.push_str(&sections(&plots));
    document(
        "logctl benchmark",
        &format!(
            "{} on {}{}{}",
            record.started,
            record.machine,
            if record.quick { ", --quick" } else { "" },
            if record.debug_build {
                ", debug build (figures not representative)"
            } else {
                ""
            }
        ),
        &body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(gw: f64, ceiling: f64, drain: f64, copy: f64) -> BenchRecord {
        BenchRecord {
            machine: "2 cores".into(),
            started: "today".into(),
            quick: true,
            debug_build: true,
            figures: vec![
                figure("gateway (events/s)", Some(gw), "wrk (req/s)", Some(ceiling)),
                figure("drain (rows/s)", Some(drain), "COPY (rows/s)", Some(copy)),
            ],
            searches: vec![SearchRecord {
                name: "single events through the gateway".into(),
                p99_limit_ms: 50.0,
                steps: vec![
                    StepRecord {
                        rate: 1_000.0,
                        accepted_per_sec: 1_000.0,
                        p50_ms: 2.0,
                        p99_ms: 9.0,
                        max_ms: 20.0,
                        passed: true,
                        cores: BTreeMap::new(),
                        end_to_end_p50_ms: Some(30.0),
                        end_to_end_p99_ms: Some(90.0),
                        redis_round_trips: Some(25.0),
                        rate_limit_fallbacks: Some(0.0),
                        cpu_stolen: 0.0,
                        cpu_stolen_worst: 0.0,
                    },
                    StepRecord {
                        rate: 3_000.0,
                        accepted_per_sec: 2_900.0,
                        p50_ms: 5.0,
                        p99_ms: 80.0,
                        max_ms: 200.0,
                        passed: false,
                        cores: BTreeMap::new(),
                        end_to_end_p50_ms: None,
                        end_to_end_p99_ms: None,
                        redis_round_trips: None,
                        rate_limit_fallbacks: None,
                        cpu_stolen: 0.004,
                        cpu_stolen_worst: 0.2,
                    },
                ],
            }],
        }
    }

    #[test]
    fn runs_compare_by_their_ratios_to_baselines_not_absolute_rates() {
        // The same build on a machine three times slower: every figure and baseline a third.
        let fast = record(12_000.0, 90_000.0, 60_000.0, 100_000.0);
        let slow = record(4_000.0, 30_000.0, 20_000.0, 33_333.3);
        let c = compare(&fast, &slow, 0.10);
        assert!(c.regressions.is_empty(), "{c:?}");
        // The drain lost a quarter of its share of COPY: a regression, named.
        let worse = record(12_000.0, 90_000.0, 45_000.0, 100_000.0);
        let c = compare(&fast, &worse, 0.10);
        assert_eq!(c.regressions.len(), 1, "{c:?}");
        assert!(
            c.regressions[0].starts_with("drain (rows/s): 0.450"),
            "{:?}",
            c.regressions
        );
    }

    #[test]
    fn the_record_round_trips_and_its_page_plots_each_search() {
        let r = record(12_000.0, 90_000.0, 60_000.0, 100_000.0);
        let back: BenchRecord =
            serde_json::from_str(&serde_json::to_string(&r).expect("json")).expect("read");
        assert_eq!(back, r);
        let page = html(&r, Some(&compare(&r, &r, 0.10)));
        assert_eq!(page.matches("<svg class=\"plot\"").count(), 1);
        assert!(page.contains("offered events/s") && page.contains("no regression"));
    }
}
