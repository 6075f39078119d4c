//! The record of a load run: the JSON `logctl load --output` writes and `logctl report` and
//! `--compare` read back. It is the report a person reads (its fields at the top level, as
//! before) plus what plots and comparisons need: latency and answers per second, the whole
//! run's latency histogram at full resolution, what the stack did meanwhile, and marks.
//!
//! The histogram is kept as `[microseconds, count]` pairs of its recorded values, so a
//! comparison works on the distribution, not on four rounded numbers, and the file stays
//! readable by anything that reads JSON.

use std::path::Path;

use hdrhistogram::Histogram;
use logctl_loadgen::engine::Intervals;
use logctl_loadgen::report::{new_histogram, Report};
use serde::{Deserialize, Serialize};

/// One second of the run, from that interval's histogram.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Second {
    /// Seconds since the run started, at the interval's end.
    pub t: f64,
    pub answers_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The stack's own signals at one moment of the run (local stack only).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StackPoint {
    pub t: f64,
    pub accepted_per_sec: f64,
    pub stored_per_sec: f64,
    pub lag: Option<f64>,
    pub lag_seconds: Option<f64>,
}

/// Something that happened at a moment of the run (a fault, a step).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Mark {
    pub t: f64,
    pub label: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadRecord {
    #[serde(flatten)]
    pub report: Report,
    pub seconds: Vec<Second>,
    /// Latency from the intended send time, `[µs, count]` per recorded value.
    pub histogram: Vec<(u64, u64)>,
    pub stack: Vec<StackPoint>,
    pub marks: Vec<Mark>,
}

/// What a record holds beside the report; all of it absent from a report written before.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Extras {
    #[serde(default)]
    seconds: Vec<Second>,
    #[serde(default)]
    histogram: Vec<(u64, u64)>,
    #[serde(default)]
    stack: Vec<StackPoint>,
    #[serde(default)]
    marks: Vec<Mark>,
}

/// Read in two passes over one JSON value: serde's `flatten` would hand the report's
/// `statuses` keys over as strings, which its `u16` keys refuse.
impl<'de> Deserialize<'de> for LoadRecord {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = serde_json::Value::deserialize(d)?;
        let report = Report::deserialize(&v).map_err(D::Error::custom)?;
        let e = Extras::deserialize(&v).map_err(D::Error::custom)?;
        Ok(Self {
            report,
            seconds: e.seconds,
            histogram: e.histogram,
            stack: e.stack,
            marks: e.marks,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a logctl load record (write one with `logctl load --output FILE`): {source}"
    )]
    Parse {
        path: String,
        source: serde_json::Error,
    },
}

impl LoadRecord {
    /// A record of the engine's outcome: `intervals` are its per-second histograms.
    pub fn new(report: Report, intervals: &Intervals) -> Self {
        let mut whole = new_histogram();
        let seconds = intervals
            .iter()
            .map(|(start, duration, h)| {
                let _ = whole.add(h);
                let ms = |v: u64| v as f64 / 1000.0;
                Second {
                    t: (*start + *duration).as_secs_f64(),
                    answers_per_sec: h.len() as f64 / duration.as_secs_f64().max(1e-3),
                    p50_ms: ms(h.value_at_quantile(0.5)),
                    p99_ms: ms(h.value_at_quantile(0.99)),
                    max_ms: ms(h.max()),
                }
            })
            .collect();
        Self {
            report,
            seconds,
            histogram: pairs(&whole),
            stack: Vec::new(),
            marks: Vec::new(),
        }
    }

    /// The run's latency histogram; `None` for a record written before histograms were kept.
    pub fn latency(&self) -> Option<Histogram<u64>> {
        if self.histogram.is_empty() {
            return None;
        }
        let mut h = new_histogram();
        for (us, n) in &self.histogram {
            h.record_n(*us, *n).ok()?;
        }
        Some(h)
    }

    pub fn read(path: &Path) -> Result<Self, RecordError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| RecordError::Read {
            path: name.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| RecordError::Parse { path: name, source })
    }
}

fn pairs(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    pub fn sample_report() -> Report {
        serde_json::from_value(serde_json::json!({
            "target": "http://127.0.0.1:8080", "plannedRate": 100.0, "plannedEvents": 300,
            "requests": 300, "eventsSent": 300, "eventsAccepted": 300,
            "statuses": {"202": 300}, "transportErrors": 0, "durationSecs": 3.0,
            "achievedRate": 100.0,
            "latencyMs": {"p50": 1.0, "p90": 2.0, "p99": 3.0, "p999": 4.0, "max": 5.0, "mean": 1.2},
            "serviceTimeMs": {"p50": 1.0, "p90": 2.0, "p99": 3.0, "p999": 4.0, "max": 5.0, "mean": 1.2},
            "lateness": {"lateRequests": 0, "maxMs": 0.5, "waitedForSlot": 0},
            "fellBehind": false
        }))
        .expect("a report as `logctl load --json` printed it before records")
    }

    #[test]
    fn a_record_keeps_the_histogram_and_reads_old_reports() {
        let mut intervals = Vec::new();
        for s in 0..3u64 {
            let mut h = new_histogram();
            for i in 1..=100u64 {
                h.record(i * 100 * (s + 1)).expect("record");
            }
            intervals.push((Duration::from_secs(s), Duration::from_secs(1), h));
        }
        let record = LoadRecord::new(sample_report(), &intervals);
        assert_eq!(record.seconds.len(), 3);
        assert_eq!(record.seconds[2].t, 3.0);
        assert_eq!(record.seconds[0].answers_per_sec, 100.0);
        let text = serde_json::to_string(&record).expect("json");
        assert!(
            text.contains("\"plannedRate\":100.0"),
            "fields stay at the top"
        );
        let back: LoadRecord = serde_json::from_str(&text).expect("read back");
        let h = back.latency().expect("histogram");
        assert_eq!(h.len(), 300);
        assert_eq!(h.max(), record.latency().expect("h").max());
        // A report from before records: no histogram, no series, still read.
        let old = serde_json::to_string(&sample_report()).expect("json");
        let old: LoadRecord = serde_json::from_str(&old).expect("old report");
        assert!(old.latency().is_none() && old.seconds.is_empty());
    }
}
