//! A consumer's health per partition, judged the way Burrow judges it: not from one lag figure
//! but from a window of readings of the committed offset and the log end, because a lag of
//! 5,000 is fine while it shrinks and alarming while the committed offset stands still.
//!
//! The rules, first match wins (Burrow's, with its group-level ERR kept per partition):
//! - **ERR**: the committed offset moved backwards, or points below the log's start (records
//!   were deleted by retention before they were consumed: they are lost to the consumer).
//! - **OK**: the lag was zero at some reading in the window.
//! - **STOP**: no live member of the group holds the partition (every consumer is gone).
//! - **STALL**: a member holds it, the lag is above zero, and the committed offset has not
//!   moved for [`Rules::stall_after`] (the consumer is alive but not storing: a database
//!   outage, a poison record, a wedged client).
//! - **WARN**: over a full window the offset moves but the lag never shrinks and ends higher
//!   (the consumer is falling behind).
//! - **OK** otherwise.
//!
//! Readings are timed by whoever takes them, so the judgement needs no commit timestamps
//! (which Kafka's offset API does not return).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

/// Worst last: `max()` over partitions is the group's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Ok,
    Warn,
    Stall,
    Stop,
    Err,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Ok,
        Status::Warn,
        Status::Stall,
        Status::Stop,
        Status::Err,
    ];

    /// The gauge value `logctl_consumer_status` exports (0 OK … 4 ERR).
    pub fn code(self) -> f64 {
        self as u8 as f64
    }

    pub fn from_code(v: f64) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.code() == v.round())
    }

    /// Lower case, as scenario conditions write it (`consumer_status == stall`).
    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Stall => "stall",
            Status::Stop => "stop",
            Status::Err => "err",
        }
    }

    /// One line for the console's help.
    pub fn meaning(self) -> &'static str {
        match self {
            Status::Ok => "lag reached zero in the window, or shrinks",
            Status::Warn => "offsets move but lag grew at every reading of the window",
            Status::Stall => "lag above zero and the committed offset still for a while",
            Status::Stop => "no live consumer holds the partition",
            Status::Err => "offset went back, or unconsumed records were deleted",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.word().to_uppercase())
    }
}

/// What one reading saw of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// The log's first offset still kept.
    pub low: i64,
    pub log_end: i64,
    /// `None` when the group has committed nothing for it.
    pub committed: Option<i64>,
    pub lag: i64,
    /// Whether a live member of the group holds the partition; `None` when unknown.
    pub owned: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// How far back the readings are judged (Burrow's window).
    pub window: Duration,
    /// How long a held partition's offset may stand still with lag before it is STALL. Above the
    /// consumer's commit interval (1 s) with room for a slow batch.
    pub stall_after: Duration,
    /// How long lag must have grown at every reading, with offsets moving, to be WARN: less
    /// could be one commit interval of an idle-looking partition.
    pub warn_after: Duration,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(15),
            stall_after: Duration::from_secs(6),
            warn_after: Duration::from_secs(10),
        }
    }
}

/// The recent readings of every partition, and the status each earns.
#[derive(Debug, Default)]
pub struct Tracker {
    rules: Rules,
    readings: BTreeMap<i32, VecDeque<(Instant, Observation)>>,
}

impl Tracker {
    pub fn new(rules: Rules) -> Self {
        Self {
            rules,
            readings: BTreeMap::new(),
        }
    }

    /// Adds one reading of every partition and returns each one's status.
    pub fn observe(
        &mut self,
        at: Instant,
        partitions: impl IntoIterator<Item = (i32, Observation)>,
    ) -> BTreeMap<i32, Status> {
        let mut seen = Vec::new();
        for (p, o) in partitions {
            seen.push(p);
            let window = self.readings.entry(p).or_default();
            // A reading that finished after a newer one (two readers sharing this tracker)
            // would look like the offset going back: it is dropped.
            if window.back().is_some_and(|(t, _)| *t > at) {
                continue;
            }
            window.push_back((at, o));
            // Keep one reading older than the window, so "still for stall_after" can be told
            // from the span between readings.
            while window.len() > 2
                && window
                    .get(1)
                    .is_some_and(|(t, _)| at.duration_since(*t) > self.rules.window)
            {
                window.pop_front();
            }
        }
        self.readings.retain(|p, _| seen.contains(p));
        self.readings
            .iter()
            .map(|(p, w)| (*p, judge(&self.rules, at, w)))
            .collect()
    }
}

fn judge(rules: &Rules, now: Instant, readings: &VecDeque<(Instant, Observation)>) -> Status {
    let Some((_, last)) = readings.back() else {
        return Status::Ok;
    };
    // The one reading kept from before the window only dates a standing offset (STALL); the
    // other rules judge what the window saw.
    let window: Vec<(Instant, Observation)> = readings
        .iter()
        .filter(|(t, _)| now.duration_since(*t) <= rules.window)
        .copied()
        .collect();
    let committed: Vec<i64> = window.iter().filter_map(|(_, o)| o.committed).collect();
    if committed.windows(2).any(|w| w[1] < w[0]) || last.committed.is_some_and(|c| c < last.low) {
        return Status::Err;
    }
    if last.lag == 0 || window.iter().any(|(_, o)| o.lag == 0) {
        return Status::Ok;
    }
    if last.owned == Some(false) {
        return Status::Stop;
    }
    // Since when the committed offset has been what it is now.
    let still_since = readings
        .iter()
        .rev()
        .take_while(|(_, o)| o.committed == last.committed && o.lag > 0)
        .last()
        .map(|(t, _)| *t);
    if still_since.is_some_and(|t| now.duration_since(t) >= rules.stall_after) {
        return Status::Stall;
    }
    let lags: Vec<i64> = window.iter().map(|(_, o)| o.lag).collect();
    let spans_long_enough = window
        .first()
        .is_some_and(|(t, _)| now.duration_since(*t) >= rules.warn_after);
    let offsets_move = committed.first() < committed.last();
    if spans_long_enough
        && offsets_move
        && lags.windows(2).all(|w| w[1] >= w[0])
        && lags.last() > lags.first()
    {
        return Status::Warn;
    }
    Status::Ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(committed: i64, log_end: i64, owned: bool) -> Observation {
        Observation {
            low: 0,
            log_end,
            committed: Some(committed),
            lag: log_end - committed,
            owned: Some(owned),
        }
    }

    /// Feeds one partition a reading a second and returns the last status.
    fn run(readings: &[Observation]) -> Status {
        let t0 = Instant::now();
        let mut t = Tracker::new(Rules::default());
        let mut last = Status::Ok;
        for (i, o) in readings.iter().enumerate() {
            last = t.observe(t0 + Duration::from_secs(i as u64), [(0, *o)])[&0];
        }
        last
    }

    #[test]
    fn a_consumer_keeping_up_is_ok_even_with_lag() {
        // Lag moves up and down around a few hundred: never zero, but not growing either.
        let lags = [300, 250, 320, 280, 310, 260, 300, 270];
        let readings: Vec<_> = lags
            .iter()
            .enumerate()
            .map(|(i, l)| obs(1_000 * i as i64, 1_000 * i as i64 + l, true))
            .collect();
        assert_eq!(run(&readings), Status::Ok);
    }

    #[test]
    fn lag_growing_at_every_reading_while_offsets_move_is_warn() {
        let readings: Vec<_> = (0..12)
            .map(|i| obs(1_000 * i, 1_000 * i + 100 * (i + 1), true))
            .collect();
        assert_eq!(run(&readings), Status::Warn);
        assert_eq!(
            run(&readings[..6]),
            Status::Ok,
            "5 s of growth is too short to say"
        );
    }

    #[test]
    fn a_reading_older_than_the_last_is_dropped_not_taken_for_a_rewind() {
        let t0 = Instant::now();
        let mut t = Tracker::new(Rules::default());
        t.observe(t0 + Duration::from_secs(2), [(0, obs(900, 1_000, true))]);
        // Read before the one above, finished after it.
        let s = t.observe(t0 + Duration::from_secs(1), [(0, obs(800, 1_000, true))]);
        assert_eq!(s[&0], Status::Ok);
    }

    #[test]
    fn an_offset_standing_still_with_lag_is_stall_after_a_while() {
        let readings: Vec<_> = (0..8).map(|i| obs(500, 600 + 100 * i, true)).collect();
        assert_eq!(run(&readings[..3]), Status::Ok, "2 s still is a slow batch");
        assert_eq!(run(&readings), Status::Stall);
    }

    #[test]
    fn nobody_holding_the_partition_is_stop_at_once() {
        assert_eq!(
            run(&[obs(500, 600, true), obs(500, 700, false)]),
            Status::Stop
        );
        // With no lag it is fine that nobody holds it.
        assert_eq!(run(&[obs(700, 700, false)]), Status::Ok);
    }

    #[test]
    fn going_back_or_losing_records_to_retention_is_err() {
        assert_eq!(
            run(&[obs(500, 600, true), obs(400, 600, true)]),
            Status::Err
        );
        let deleted = Observation {
            low: 550,
            ..obs(500, 600, true)
        };
        assert_eq!(run(&[deleted]), Status::Err);
    }

    #[test]
    fn lag_back_to_zero_clears_at_once_and_old_readings_leave_the_window() {
        let mut readings: Vec<_> = (0..8).map(|i| obs(500, 600 + 100 * i, true)).collect();
        readings.push(obs(1_300, 1_300, true));
        assert_eq!(run(&readings), Status::Ok);
        // A zero lag 20 s ago no longer vouches for a partition standing still now.
        let mut readings = vec![obs(500, 500, true)];
        readings.extend((0..20).map(|i| obs(500, 600 + i, true)));
        assert_eq!(run(&readings), Status::Stall);
    }

    #[test]
    fn statuses_order_worst_last_and_round_trip_their_codes() {
        assert_eq!(
            [Status::Ok, Status::Stop, Status::Warn].into_iter().max(),
            Some(Status::Stop)
        );
        for s in Status::ALL {
            assert_eq!(Status::from_code(s.code()), Some(s));
        }
        assert_eq!(Status::Stall.to_string(), "STALL");
    }
}
