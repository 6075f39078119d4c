//! What a run measured: latency from each request's intended send time (the number a user
//! waiting on the service would see) and service time from its actual send, both in
//! HdrHistograms; answers by status; and whether the generator kept its schedule.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies are recorded in microseconds, 1 µs to 10 minutes, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |v: u64| v as f64 / 1000.0;
        Self {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// How far the generator itself was from its schedule.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Lateness {
    /// Requests sent more than [`LATE_AFTER`] after their intended time.
    pub late_requests: u64,
    pub max_ms: f64,
    /// Times a request waited for a free slot (all `max_in_flight` in use).
    pub waited_for_slot: u64,
}

/// A send this much behind schedule means the generator could not keep up.
pub const LATE_AFTER: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub target: String,
    pub planned_rate: f64,
    pub planned_events: u64,
    pub requests: u64,
    pub events_sent: u64,
    pub events_accepted: u64,
    /// HTTP status → requests.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no HTTP answer (refused, reset, timed out).
    pub transport_errors: u64,
    pub duration_secs: f64,
    /// Events per second actually sent over the run.
    pub achieved_rate: f64,
    /// From intended send time to answer (coordinated-omission free).
    pub latency_ms: Percentiles,
    /// From actual send to answer.
    pub service_time_ms: Percentiles,
    pub lateness: Lateness,
    /// True when the planned load was not offered: fewer events than planned, a rate below 95%
    /// of the plan, or more than 5% of requests sent over 10 ms late (all slots busy waiting on
    /// a slow server, or the generator short of CPU). Latencies stay honest (measured from the
    /// planned times), but the server saw less load than asked.
    pub fell_behind: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<Verification>,
}

impl Report {
    /// Events per second the target accepted (answered 2xx) over the run.
    pub fn accepted_rate(&self) -> f64 {
        self.events_accepted as f64 / self.duration_secs.max(1e-9)
    }

    /// Requests answered other than 2xx, or not at all, over all requests.
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            return 0.0;
        }
        let ok: u64 = self
            .statuses
            .iter()
            .filter(|(s, _)| (200..300).contains(*s))
            .map(|(_, n)| n)
            .sum();
        (self.requests - ok) as f64 / self.requests as f64
    }

    /// Requests by status class, for a one-line summary.
    pub fn by_class(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (s, n) in &self.statuses {
            *out.entry(format!("{}xx", s / 100)).or_default() += n;
        }
        if self.transport_errors > 0 {
            out.insert("no answer".into(), self.transport_errors);
        }
        out
    }
}

/// What `--verify` found in PostgreSQL once the pipeline drained.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub acknowledged: u64,
    pub stored: u64,
    /// Acknowledged but not stored.
    pub lost: u64,
    /// Stored more than once (impossible by the primary key; counted all the same).
    pub duplicated: u64,
    /// Accepted by the gateway → row committed.
    pub end_to_end_ms: Percentiles,
    pub drain_secs: f64,
}

impl Verification {
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.duplicated == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_out_in_milliseconds() {
        let mut h = new_histogram();
        for ms in 1..=100u64 {
            h.record(ms * 1000).expect("record");
        }
        let p = Percentiles::of(&h);
        assert!((p.p50 - 50.0).abs() < 0.1, "{p:?}");
        assert!((p.p99 - 99.0).abs() < 0.1, "{p:?}");
        assert!((p.max - 100.0).abs() < 0.1, "{p:?}");
        assert_eq!(Percentiles::of(&new_histogram()), Percentiles::default());
    }
}
