//! What the console screen shows, kept apart from drawing: the last minutes of signals and a
//! log of state changes (a breaker opening, a component going down, lag crossing its alert).

use std::collections::{BTreeMap, VecDeque};

use crate::scenario::runner::RunEvent;
use crate::signals::Signals;

/// Readings kept for the charts (one a second: two minutes).
pub const HISTORY: usize = 120;
const EVENTS: usize = 50;
/// Same threshold as the Prometheus alert.
pub const LAG_ALERT: i64 = 1_000;

#[derive(Debug, Default)]
pub struct Model {
    pub history: VecDeque<Signals>,
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

    /// Follows a drill's progress; its notes and step outcomes go to the event log too.
    pub fn drill_event(&mut self, elapsed: f64, ev: RunEvent) {
        let Some(drill) = self.drill.as_mut() else {
            return;
        };
        let mut note = None;
        match ev {
            RunEvent::Step { index, .. } => {
                if let Some(s) = drill.steps.get_mut(index.saturating_sub(1)) {
                    s.state = StepState::Running;
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
        self.history.back()
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
                .history
                .back()
                .is_none_or(|prev| prev.breakers.get(name) != Some(state));
            if changed || !self.breaker_since.contains_key(name) {
                self.breaker_since.insert(name.clone(), elapsed);
            }
        }
        if let Some(prev) = self.history.back() {
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
            for c in changes {
                self.note(elapsed, c);
            }
        }
        self.history.push_back(s);
        if self.history.len() > HISTORY {
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
            .filter_map(|s| s.lag_total)
            .collect();
        match (lags.first(), lags.last()) {
            (Some(now), Some(then)) if now > then => "↑",
            (Some(now), Some(then)) if now < then => "↓",
            _ => "→",
        }
    }

    /// ok / lagging / stalled, as Burrow would say: stalled when lag grows while nothing is stored.
    pub fn lag_status(&self) -> &'static str {
        let Some(last) = self.last() else {
            return "unknown";
        };
        match last.lag_total {
            None => "unknown",
            Some(0) => "ok",
            Some(_) if last.stored_per_sec == 0.0 && self.lag_trend() == "↑" => "stalled",
            Some(l) if l > LAG_ALERT => "lagging",
            Some(_) => "ok",
        }
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
        Signals {
            lag_total: Some(lag),
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
                "lag above 1000: 5000"
            ]
        );
        assert_eq!(m.lag_status(), "stalled");
        assert_eq!(m.breaker_age("postgres"), "0s");
        m.push(signals(6_000, "open", "down", 0.0), 15.0);
        assert_eq!(m.breaker_age("postgres"), "12s", "open since 3 s");
        m.push(signals(0, "closed", "up", 900.0), 16.0);
        assert_eq!(m.events.len(), 6);
        assert_eq!(m.breaker_age("postgres"), "0s");
        assert_eq!(m.lag_status(), "ok");
    }
}
