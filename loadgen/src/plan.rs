//! When each request is meant to leave: the arrival schedule of an open-loop test.
//!
//! The schedule is fixed before the run and never waits for answers (as wrk2 and k6's
//! constant-arrival-rate executor do), so a slow server cannot slow the load down and hide its
//! own latency: every latency is measured from the intended send time.

use std::time::Duration;

/// One stretch of constant rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    /// Events per second.
    pub rate: f64,
    pub duration: Duration,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("{flag}: {message}")]
    Invalid { flag: &'static str, message: String },
}

fn invalid(flag: &'static str, message: impl Into<String>) -> PlanError {
    PlanError::Invalid {
        flag,
        message: message.into(),
    }
}

/// The whole run: an optional linear ramp up to the first stage's rate, then the stages in
/// order; `count` stops it early after that many events.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub ramp: Duration,
    pub stages: Vec<Stage>,
    pub count: Option<u64>,
}

/// Rates above this are refused: a typo (`--rate 1e9`) should not melt the machine.
pub const MAX_RATE: f64 = 10_000_000.0;

impl Plan {
    /// `rate` events/s for `duration` (or until `count` events when `duration` is None).
    pub fn new(
        rate: f64,
        duration: Option<Duration>,
        count: Option<u64>,
        ramp: Duration,
    ) -> Result<Plan, PlanError> {
        if !(rate.is_finite() && rate > 0.0 && rate <= MAX_RATE) {
            return Err(invalid(
                "--rate",
                format!("must be above 0 and at most {MAX_RATE}"),
            ));
        }
        if count == Some(0) {
            return Err(invalid("--count", "must be at least 1"));
        }
        let duration = match (duration, count) {
            (Some(d), _) if d.is_zero() => {
                return Err(invalid("--duration", "must be longer than 0"))
            }
            (Some(d), _) => d,
            // Long enough for `count` at this rate, after the ramp (which sends half as many).
            (None, Some(n)) => Duration::from_secs_f64(n as f64 / rate) + ramp,
            (None, None) => return Err(invalid("--duration", "give --duration or --count")),
        };
        Ok(Plan {
            ramp,
            stages: vec![Stage { rate, duration }],
            count,
        })
    }

    /// Reads stepped rates: `1000:10s,2000:10s,5000:30s`.
    pub fn stepped(steps: &str, ramp: Duration, count: Option<u64>) -> Result<Plan, PlanError> {
        let mut stages = Vec::new();
        for part in steps.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (rate, duration) = part.split_once(':').ok_or_else(|| {
                invalid(
                    "--steps",
                    format!("{part:?}: expected RATE:DURATION, e.g. 1000:10s"),
                )
            })?;
            let rate: f64 = rate
                .trim()
                .parse()
                .ok()
                .filter(|r: &f64| r.is_finite() && *r > 0.0 && *r <= MAX_RATE)
                .ok_or_else(|| {
                    invalid(
                        "--steps",
                        format!("{part:?}: the rate must be a number above 0"),
                    )
                })?;
            let duration = logctl_contracts::duration::parse(duration)
                .map_err(|m| invalid("--steps", format!("{part:?}: {m}")))?;
            stages.push(Stage { rate, duration });
        }
        if stages.is_empty() {
            return Err(invalid("--steps", "no steps given"));
        }
        Ok(Plan {
            ramp,
            stages,
            count,
        })
    }

    /// Total planned time, ramp included.
    pub fn duration(&self) -> Duration {
        self.ramp + self.stages.iter().map(|s| s.duration).sum::<Duration>()
    }

    /// The planned rate (events/s) at `t` since the start.
    pub fn rate_at(&self, t: Duration) -> f64 {
        let first = self.stages.first().map_or(0.0, |s| s.rate);
        if t < self.ramp {
            // From a tenth of the rate, so the first request is not an eternity away.
            let share = t.as_secs_f64() / self.ramp.as_secs_f64();
            return first * (0.1 + 0.9 * share);
        }
        let mut end = self.ramp;
        for s in &self.stages {
            end += s.duration;
            if t < end {
                return s.rate;
            }
        }
        0.0
    }

    /// Intended send offsets of successive requests, each carrying `per_request` events.
    pub fn schedule(&self, per_request: usize) -> Schedule<'_> {
        Schedule {
            plan: self,
            per_request: per_request.max(1) as f64,
            ramp_next: Duration::ZERO,
            stage: 0,
            stage_start: self.ramp,
            in_stage: 0,
            events: 0,
        }
    }
}

pub struct Schedule<'a> {
    plan: &'a Plan,
    per_request: f64,
    /// Next send time while ramping (the rate changes with every request).
    ramp_next: Duration,
    stage: usize,
    stage_start: Duration,
    /// Requests sent in the current stage: times are computed from its start, not summed, so
    /// rounding never adds or loses a request at a stage's end.
    in_stage: u64,
    events: u64,
}

impl Schedule<'_> {
    fn next_offset(&mut self) -> Option<Duration> {
        if self.ramp_next < self.plan.ramp {
            let at = self.ramp_next;
            let rate = self.plan.rate_at(at).max(1e-3);
            self.ramp_next = at + Duration::from_secs_f64(self.per_request / rate);
            return Some(at);
        }
        loop {
            let stage = self.plan.stages.get(self.stage)?;
            let at = self.stage_start
                + Duration::from_secs_f64(self.in_stage as f64 * self.per_request / stage.rate);
            if at < self.stage_start + stage.duration {
                self.in_stage += 1;
                return Some(at);
            }
            self.stage_start += stage.duration;
            self.stage += 1;
            self.in_stage = 0;
        }
    }
}

impl Iterator for Schedule<'_> {
    /// (intended offset from the start, events in this request)
    type Item = (Duration, usize);

    fn next(&mut self) -> Option<Self::Item> {
        let mut events = self.per_request as u64;
        if let Some(count) = self.plan.count {
            if self.events >= count {
                return None;
            }
            events = events.min(count - self.events);
        }
        let at = self.next_offset()?;
        self.events += events;
        Some((at, events as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_rate_spaces_requests_evenly() {
        let plan =
            Plan::new(1000.0, Some(Duration::from_secs(2)), None, Duration::ZERO).expect("plan");
        let times: Vec<_> = plan.schedule(1).collect();
        assert_eq!(times.len(), 2000);
        assert_eq!(times[1].0 - times[0].0, Duration::from_millis(1));
        let batched: Vec<_> = plan.schedule(100).collect();
        assert_eq!(batched.len(), 20, "1000 events/s in batches of 100");
        assert!(batched.iter().all(|(_, n)| *n == 100));
    }

    #[test]
    fn count_stops_early_and_trims_the_last_batch() {
        let plan = Plan::new(100.0, None, Some(250), Duration::ZERO).expect("plan");
        let reqs: Vec<_> = plan.schedule(100).collect();
        assert_eq!(
            reqs.iter().map(|r| r.1).collect::<Vec<_>>(),
            vec![100, 100, 50]
        );
    }

    #[test]
    fn a_ramp_sends_fewer_then_reaches_the_rate() {
        let plan = Plan::new(
            1000.0,
            Some(Duration::from_secs(1)),
            None,
            Duration::from_secs(1),
        )
        .expect("plan");
        let n_ramp = plan
            .schedule(1)
            .filter(|(t, _)| *t < Duration::from_secs(1))
            .count();
        assert!(
            (500..=600).contains(&n_ramp),
            "{n_ramp} in the ramp (about 550 expected)"
        );
        let n_full = plan
            .schedule(1)
            .filter(|(t, _)| *t >= Duration::from_secs(1))
            .count();
        assert!((999..=1001).contains(&n_full), "{n_full}");
    }

    #[test]
    fn steps_follow_each_other() {
        let plan = Plan::stepped("100:1s, 300:2s", Duration::ZERO, None).expect("plan");
        assert_eq!(plan.duration(), Duration::from_secs(3));
        assert_eq!(plan.schedule(1).count(), 100 + 600);
        assert!(Plan::stepped("100", Duration::ZERO, None).is_err());
        assert!(Plan::stepped("x:1s", Duration::ZERO, None).is_err());
        assert!(Plan::stepped("100:soon", Duration::ZERO, None).is_err());
    }

    #[test]
    fn bad_plans_name_their_flag() {
        let flag = |r: Result<Plan, PlanError>| match r {
            Err(PlanError::Invalid { flag, .. }) => flag,
            Ok(_) => "accepted",
        };
        assert_eq!(
            flag(Plan::new(
                0.0,
                Some(Duration::from_secs(1)),
                None,
                Duration::ZERO
            )),
            "--rate"
        );
        assert_eq!(
            flag(Plan::new(
                f64::NAN,
                Some(Duration::from_secs(1)),
                None,
                Duration::ZERO
            )),
            "--rate"
        );
        assert_eq!(
            flag(Plan::new(10.0, None, None, Duration::ZERO)),
            "--duration"
        );
        assert_eq!(
            flag(Plan::new(10.0, None, Some(0), Duration::ZERO)),
            "--count"
        );
    }
}
