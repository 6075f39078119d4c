//! What the console screen shows, kept apart from drawing: the last minutes of signals and a
//! log of state changes (a breaker opening, a component going down, lag crossing its alert).

use std::collections::{BTreeMap, VecDeque};

use crate::scenario::runner::RunEvent;
use crate::signals::Signals;

/// Readings kept for the charts: the widest window, 15 minutes, whatever the refresh (and at
/// most this many, at a refresh of 100 ms).
pub const HISTORY_SECS: f64 = 900.0;
const HISTORY: usize = 9_000;
const EVENTS: usize = 50;
/// Faults marked on the charts' time axis.
const MARKS: usize = 50;
/// Same threshold as the Prometheus alert.
pub const LAG_ALERT: i64 = 1_000;

/// A cumulative latency histogram: (`le` in seconds, count).
pub type Buckets = [(f64, f64)];

/// How much time the charts span; `w` cycles through them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Window {
    #[default]
    OneMinute,
    FiveMinutes,
    FifteenMinutes,
}

impl Window {
    pub fn seconds(self) -> f64 {
        match self {
            Window::OneMinute => 60.0,
            Window::FiveMinutes => 300.0,
            Window::FifteenMinutes => 900.0,
        }
    }

    pub fn next(self) -> Window {
        match self {
            Window::OneMinute => Window::FiveMinutes,
            Window::FiveMinutes => Window::FifteenMinutes,
            Window::FifteenMinutes => Window::OneMinute,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Window::OneMinute => "1m",
            Window::FiveMinutes => "5m",
            Window::FifteenMinutes => "15m",
        }
    }
}

#[derive(Debug, Default)]
pub struct Model {
    /// (seconds since start, the reading then), oldest first.
    pub history: VecDeque<(f64, Signals)>,
    pub window: Window,
    /// (seconds since start, what was done): faults and drill fault steps, drawn as lines on
    /// the charts.
    pub marks: VecDeque<(f64, String)>,
    /// (seconds since start, what changed)
    pub events: VecDeque<(f64, String)>,
    pub paused: bool,
    pub elapsed: f64,
    /// Background load: running, and its rate (events/s).
    pub loading: bool,
    pub rate: f64,
    pub help: bool,
    /// The drill started from the console, if any (the last one stays shown).
    pub drill: Option<Drill>,
    /// Breaker name → when (seconds since start) it entered its current state.
    pub breaker_since: std::collections::BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    Pending,
    Running,
    Passed,
    Failed,
}

#[derive(Debug, Clone)]
pub struct DrillStep {
    pub description: String,
    pub state: StepState,
    pub detail: String,
}

/// A drill as the console shows it: each step's state, then the verdict.
#[derive(Debug, Clone)]
pub struct Drill {
    pub name: String,
    pub steps: Vec<DrillStep>,
    /// None while it runs; then "PASSED" or "FAILED: why" (or "INTERRUPTED").
    pub verdict: Option<String>,
}

impl Drill {
    pub fn new(name: &str, steps: Vec<String>) -> Drill {
        Drill {
            name: name.to_owned(),
            steps: steps
                .into_iter()
                .map(|description| DrillStep {
                    description,
                    state: StepState::Pending,
                    detail: String::new(),
                })
                .collect(),
            verdict: None,
        }
    }

    /// Where it is: "step 3/9" while running.
    pub fn progress(&self) -> String {
        match &self.verdict {
            Some(v) => v.clone(),
            None => {
                let at = self
                    .steps
                    .iter()
                    .position(|s| s.state == StepState::Running)
                    .map_or(0, |i| i + 1);
                format!("step {at}/{}", self.steps.len())
            }
        }
    }
}

impl Model {
    /// Logs something the operator did or a background action reported.
    pub fn note(&mut self, elapsed: f64, what: String) {
        self.events.push_back((elapsed, what));
        if self.events.len() > EVENTS {
            self.events.pop_front();
        }
    }

    /// Marks a fault on the charts' time axis (and logs it).
    pub fn mark(&mut self, elapsed: f64, what: String) {
        self.marks.push_back((elapsed, what.clone()));
        if self.marks.len() > MARKS {
            self.marks.pop_front();
        }
        self.note(elapsed, what);
    }

    /// The readings inside the charts' window, oldest first, timed relative to the latest (so
    /// the newest is at 0 and the oldest near `-window`).
    pub fn in_window(&self) -> impl Iterator<Item = (f64, &Signals)> {
        let now = self.history.back().map_or(0.0, |(t, _)| *t);
        let from = now - self.window.seconds();
        self.history
            .iter()
            .filter(move |(t, _)| *t >= from)
            .map(move |(t, s)| (t - now, s))
    }

    /// The marks inside the charts' window, timed as [`Model::in_window`] times readings.
    pub fn marks_in_window(&self) -> Vec<(f64, &str)> {
        let now = self.history.back().map_or(self.elapsed, |(t, _)| *t);
        let from = now - self.window.seconds();
        self.marks
            .iter()
            .filter(|(t, _)| *t >= from && *t <= now)
            .map(|(t, what)| (t - now, what.as_str()))
            .collect()
    }

    /// The gateway's cumulative latency buckets at the window's first reading and now, for the
    /// window's percentile spectrum.
    pub fn window_buckets(&self) -> Option<(&Buckets, &Buckets)> {
        let (_, first) = self.in_window().next()?;
        let last = self.last()?;
        Some((&first.gateway_buckets, &last.gateway_buckets))
    }

    /// Follows a drill's progress; its notes and step outcomes go to the event log too.
    pub fn drill_event(&mut self, elapsed: f64, ev: RunEvent) {
        let Some(drill) = self.drill.as_mut() else {
            return;
        };
        let mut note = None;
        match ev {
            RunEvent::Step {
                index, description, ..
            } => {
                if let Some(s) = drill.steps.get_mut(index.saturating_sub(1)) {
                    s.state = StepState::Running;
                }
                if description.starts_with("fault") {
                    self.marks.push_back((elapsed, description));
                    if self.marks.len() > MARKS {
                        self.marks.pop_front();
                    }
                }
            }
            RunEvent::StepDone(r) if r.index == 0 => {
                note = Some(format!(
                    "{}: {}",
                    r.kind,
                    if r.passed {
                        "holds".into()
                    } else {
                        r.failure()
                    }
                ));
            }
            RunEvent::StepDone(r) => {
                if let Some(s) = drill.steps.get_mut(r.index - 1) {
                    s.state = if r.passed {
                        StepState::Passed
                    } else {
                        StepState::Failed
                    };
                    s.detail = if r.passed {
                        r.detail.clone()
                    } else {
                        r.failure()
                    };
                }
                if !r.passed {
                    note = Some(r.failure());
                }
            }
            RunEvent::Note(n) => note = Some(n),
            RunEvent::Started { .. } | RunEvent::Reading(_) => {}
        }
        if let Some(n) = note {
            self.note(elapsed, n);
        }
    }

    pub fn last(&self) -> Option<&Signals> {
        self.history.back().map(|(_, s)| s)
    }

    /// How long a breaker has been in its state, as "12s" / "3m".
    pub fn breaker_age(&self, name: &str) -> String {
        let Some(since) = self.breaker_since.get(name) else {
            return String::new();
        };
        let secs = (self.elapsed - since).max(0.0);
        if secs < 120.0 {
            format!("{secs:.0}s")
        } else if secs < 7200.0 {
            format!("{:.0}m", secs / 60.0)
        } else {
            format!("{:.0}h", secs / 3600.0)
        }
    }

    /// Adds a reading and logs what changed since the previous one.
    pub fn push(&mut self, s: Signals, elapsed: f64) {
        self.elapsed = elapsed;
        for (name, state) in &s.breakers {
            let changed = self
                .last()
                .is_none_or(|prev| prev.breakers.get(name) != Some(state));
            if changed || !self.breaker_since.contains_key(name) {
                self.breaker_since.insert(name.clone(), elapsed);
            }
        }
        if let Some(prev) = self.last() {
            let mut changes = Vec::new();
            for (name, state) in &s.breakers {
                if prev.breakers.get(name) != Some(state) {
                    changes.push(format!("breaker {name} {state}"));
                }
            }
            for (name, state) in &s.components {
                if prev.components.get(name).is_some_and(|p| p != state) {
                    changes.push(format!("{name} {state}"));
                }
            }
            changes.extend(isr_changes(&prev.isr, &s.isr));
            let was = prev.lag_total.unwrap_or(0) > LAG_ALERT;
            let is = s.lag_total.unwrap_or(0) > LAG_ALERT;
            if is && !was {
                changes.push(format!(
                    "lag above {LAG_ALERT}: {}",
                    s.lag_total.unwrap_or(0)
                ));
            } else if was && !is {
                changes.push("lag back under the alert".into());
            }
            if s.consumer_status != prev.consumer_status {
                if let Some(status) = &s.consumer_status {
                    changes.push(format!("consumer status {}", status.to_uppercase()));
                }
            }
            for c in changes {
                self.note(elapsed, c);
            }
        }
        self.history.push_back((elapsed, s));
        while self.history.len() > HISTORY
            || self
                .history
                .front()
                .is_some_and(|(t, _)| *t < elapsed - HISTORY_SECS)
        {
            self.history.pop_front();
        }
    }

    /// Lag's direction over the last ten readings.
    pub fn lag_trend(&self) -> &'static str {
        let lags: Vec<i64> = self
            .history
            .iter()
            .rev()
            .take(10)
            .filter_map(|(_, s)| s.lag_total)
            .collect();
        match (lags.first(), lags.last()) {
            (Some(now), Some(then)) if now > then => "↑",
            (Some(now), Some(then)) if now < then => "↓",
            _ => "→",
        }
    }

    /// The group's worst partition status by Burrow's rules (ok, warn, stall, stop, err), as
    /// the collector judged it; "unknown" before Kafka answered.
    pub fn lag_status(&self) -> &str {
        self.last()
            .and_then(|s| s.consumer_status.as_deref())
            .unwrap_or("unknown")
    }
}

/// The broker a node id is, by the name `logctl` gives it (`kafka-2`).
pub fn broker_name(node: i32) -> String {
    crate::stack::cluster::broker_of(node).map_or_else(|| format!("node {node}"), |c| c.name())
}

/// ISR shrinks and expansions between two readings, one line per broker that left or joined
/// the in-sync copies (of how many partitions): a broker lost shows as one line, not seven.
/// Readings without metadata (no broker answered) are not compared.
fn isr_changes(
    before: &BTreeMap<String, Vec<i32>>,
    now: &BTreeMap<String, Vec<i32>>,
) -> Vec<String> {
    if before.is_empty() || now.is_empty() {
        return Vec::new();
    }
    let mut left: BTreeMap<i32, usize> = BTreeMap::new();
    let mut joined: BTreeMap<i32, usize> = BTreeMap::new();
    for (partition, isr) in now {
        let Some(was) = before.get(partition) else {
            continue;
        };
        for node in was.iter().filter(|n| !isr.contains(n)) {
            *left.entry(*node).or_insert(0) += 1;
        }
        for node in isr.iter().filter(|n| !was.contains(n)) {
            *joined.entry(*node).or_insert(0) += 1;
        }
    }
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    left.into_iter()
        .map(|(node, n)| {
            format!(
                "ISR shrank: {} out of {n} partition{}",
                broker_name(node),
                plural(n)
            )
        })
        .chain(joined.into_iter().map(|(node, n)| {
            format!(
                "ISR expanded: {} back in {n} partition{}",
                broker_name(node),
                plural(n)
            )
        }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn signals(lag: i64, breaker: &str, consumer: &str, stored: f64) -> Signals {
        let status = if lag > 0 && stored == 0.0 {
            "stall"
        } else {
            "ok"
        };
        Signals {
            lag_total: Some(lag),
            consumer_status: Some(status.into()),
            stored_per_sec: stored,
            breakers: BTreeMap::from([("postgres".into(), breaker.into())]),
            components: BTreeMap::from([("consumer".into(), consumer.into())]),
            ..Signals::default()
        }
    }

    #[test]
    fn isr_shrinks_and_expansions_are_logged_per_broker() {
        let isr = |sets: &[&[i32]]| -> BTreeMap<String, Vec<i32>> {
            sets.iter()
                .enumerate()
                .map(|(i, s)| (format!("log-events/{i}"), s.to_vec()))
                .collect()
        };
        let reading = |isr| Signals {
            isr,
            ..Signals::default()
        };
        let mut m = Model::default();
        m.push(reading(isr(&[&[1, 2, 3], &[2, 3, 1], &[3, 1, 2]])), 1.0);
        m.push(reading(isr(&[&[1, 3], &[3, 1], &[3, 1]])), 2.0);
        // No metadata this time (no broker answered): nothing is concluded from it.
        m.push(reading(BTreeMap::new()), 3.0);
        m.push(reading(isr(&[&[1, 3], &[3, 1], &[3, 1]])), 4.0);
        m.push(reading(isr(&[&[1, 3, 2], &[3, 1], &[3, 1, 2]])), 5.0);
        let logged: Vec<&str> = m.events.iter().map(|(_, e)| e.as_str()).collect();
        assert_eq!(
            logged,
            [
                "ISR shrank: kafka-2 out of 3 partitions",
                "ISR expanded: kafka-2 back in 2 partitions"
            ]
        );
    }

    #[test]
    fn state_changes_are_logged_once() {
        let mut m = Model::default();
        m.push(signals(0, "closed", "up", 100.0), 1.0);
        m.push(signals(0, "closed", "up", 100.0), 2.0);
        assert!(m.events.is_empty());
        m.push(signals(5_000, "open", "down", 0.0), 3.0);
        let logged: Vec<&str> = m.events.iter().map(|(_, e)| e.as_str()).collect();
        assert_eq!(
            logged,
            [
                "breaker postgres open",
                "consumer down",
                "lag above 1000: 5000",
                "consumer status STALL"
            ]
        );
        assert_eq!(m.lag_status(), "stall");
        assert_eq!(m.breaker_age("postgres"), "0s");
        m.push(signals(6_000, "open", "down", 0.0), 15.0);
        assert_eq!(m.breaker_age("postgres"), "12s", "open since 3 s");
        m.push(signals(0, "closed", "up", 900.0), 16.0);
        assert_eq!(m.events.len(), 8);
        assert_eq!(m.breaker_age("postgres"), "0s");
        assert_eq!(m.lag_status(), "ok");
    }

    #[test]
    fn the_window_and_its_marks_follow_the_latest_reading() {
        let mut m = Model::default();
        for t in 0..200 {
            m.push(Signals::default(), f64::from(t));
        }
        m.mark(30.0, "fault stop postgres".into());
        m.mark(170.0, "fault start postgres".into());
        let times: Vec<f64> = m.in_window().map(|(t, _)| t).collect();
        assert_eq!((times.first(), times.last()), (Some(&-60.0), Some(&0.0)));
        assert_eq!(m.marks_in_window(), [(-29.0, "fault start postgres")]);
        m.window = m.window.next();
        assert_eq!(m.in_window().count(), 200, "5 minutes hold all 200 s");
        assert_eq!(m.marks_in_window().len(), 2);
        assert_eq!(m.window.next().next(), Window::OneMinute);
    }
}
