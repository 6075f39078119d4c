//! One circuit breaker for every dependency call: gateway → producer, gateway → query,
//! producer → Kafka, consumer → PostgreSQL.
//!
//! Closed, it lets calls through and remembers the last `window` outcomes (and, with
//! `window_ms`, only those of the last `window_ms`); it opens when the share of failures (or of
//! slow calls) in the window crosses its threshold once `minimum_calls` are in, or after
//! `consecutive_failures` failures in a row, whichever comes first. A time window is what a
//! dependency called thousands of times a second needs: there a count window of a few dozen
//! calls spans a few milliseconds, and one hiccup of a busy but healthy machine fills it with
//! failures. Open, it
//! refuses calls at once (the caller answers 503 with `Retry-After` instead of waiting on a dead
//! dependency). After `open_ms` it lets `half_open_calls` trial calls through: all must succeed
//! to close, and one failure opens it again. The defaults trip within a few calls, because at a
//! few hundred events per second a Resilience4j-style "100 calls" window would never fill.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Read from tokio's clock, which is the system's in service and the paused one in tests
/// that pause time: a breaker inside code under such a test opens and closes on that clock.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

use logctl_contracts::metric;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BreakerSettings {
    /// Outcomes remembered (a count-based sliding window).
    pub window: usize,
    /// When above 0, outcomes older than this are forgotten too (a time-based window, capped
    /// at `window` outcomes).
    #[serde(deserialize_with = "logctl_contracts::duration::millis")]
    pub window_ms: u64,
    /// Fewest outcomes in the window before its rates are judged.
    pub minimum_calls: usize,
    /// Opens when at least this share of the window failed (0.0 ..= 1.0).
    pub failure_rate: f64,
    /// Opens after this many failures in a row, whatever the window says.
    pub consecutive_failures: u32,
    /// A call slower than this counts as slow.
    #[serde(deserialize_with = "logctl_contracts::duration::millis")]
    pub slow_call_ms: u64,
    /// Opens when at least this share of the window was slow.
    pub slow_call_rate: f64,
    /// How long it stays open before trial calls.
    #[serde(deserialize_with = "logctl_contracts::duration::millis")]
    pub open_ms: u64,
    /// Trial calls in half-open; all must succeed to close.
    pub half_open_calls: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            window: 20,
            window_ms: 0,
            minimum_calls: 10,
            failure_rate: 0.5,
            consecutive_failures: 5,
            slow_call_ms: 5_000,
            slow_call_rate: 0.8,
            open_ms: 5_000,
            half_open_calls: 3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    /// The value of the `logctl_breaker_state` gauge.
    pub fn gauge(self) -> f64 {
        match self {
            State::Closed => 0.0,
            State::HalfOpen => 1.0,
            State::Open => 2.0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

/// The call was refused because the breaker is open (or half-open with its trials taken).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker open; retry after {retry_after:?}")]
pub struct Rejected {
    pub retry_after: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Outcome {
    at: Instant,
    failed: bool,
    slow: bool,
}

/// The outcomes in the window with running counts, so judging it costs the same at 10 calls
/// as at 10,000.
#[derive(Debug, Default)]
struct Window {
    outcomes: VecDeque<Outcome>,
    failed: usize,
    slow: usize,
}

impl Window {
    fn push(&mut self, o: Outcome, cap: usize, max_age: Option<Duration>) {
        self.failed += usize::from(o.failed);
        self.slow += usize::from(o.slow);
        self.outcomes.push_back(o);
        while self.outcomes.len() > cap.max(1)
            || max_age.is_some_and(|age| {
                self.outcomes
                    .front()
                    .is_some_and(|f| o.at.saturating_duration_since(f.at) > age)
            })
        {
            let Some(old) = self.outcomes.pop_front() else {
                break;
            };
            self.failed -= usize::from(old.failed);
            self.slow -= usize::from(old.slow);
        }
    }

    fn clear(&mut self) {
        *self = Window::default();
    }
}

#[derive(Debug)]
struct Inner {
    state: State,
    /// Bumped on every transition, so a late answer from an earlier state is not counted.
    generation: u64,
    open_until: Instant,
    window: Window,
    consecutive_failures: u32,
    trials_in_flight: u32,
    trials_succeeded: u32,
}

#[derive(Debug)]
struct Shared {
    name: String,
    settings: BreakerSettings,
    inner: Mutex<Inner>,
}

/// A named breaker; clones share one state.
#[derive(Debug, Clone)]
pub struct Breaker {
    shared: Arc<Shared>,
}

impl Breaker {
    pub fn new(name: impl Into<String>, settings: BreakerSettings) -> Self {
        let name = name.into();
        metrics::gauge!(metric::BREAKER_STATE, "name" => name.clone()).set(State::Closed.gauge());
        Self {
            shared: Arc::new(Shared {
                name,
                settings,
                inner: Mutex::new(Inner {
                    state: State::Closed,
                    generation: 0,
                    open_until: now(),
                    window: Window::default(),
                    consecutive_failures: 0,
                    trials_in_flight: 0,
                    trials_succeeded: 0,
                }),
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn state(&self) -> State {
        self.lock().state
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves consistent counters behind; keep going.
        self.shared
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Asks to make a call now.
    pub fn acquire(&self) -> Result<Permit, Rejected> {
        self.acquire_at(now())
    }

    /// How long until a call may be tried, if the breaker refuses calls now.
    pub fn retry_after(&self) -> Option<Duration> {
        let inner = self.lock();
        (inner.state == State::Open).then(|| inner.open_until.saturating_duration_since(now()))
    }

    pub fn acquire_at(&self, now: Instant) -> Result<Permit, Rejected> {
        let s = &self.shared.settings;
        let mut inner = self.lock();
        if inner.state == State::Open {
            if now < inner.open_until {
                metrics::counter!(metric::BREAKER_REJECTED, "name" => self.shared.name.clone())
                    .increment(1);
                return Err(Rejected {
                    retry_after: inner.open_until - now,
                });
            }
            self.transition(&mut inner, State::HalfOpen, now);
        }
        let trial = inner.state == State::HalfOpen;
        if trial {
            if inner.trials_in_flight + inner.trials_succeeded >= s.half_open_calls.max(1) {
                metrics::counter!(metric::BREAKER_REJECTED, "name" => self.shared.name.clone())
                    .increment(1);
                return Err(Rejected {
                    retry_after: Duration::from_millis(s.open_ms.min(1_000)),
                });
            }
            inner.trials_in_flight += 1;
        }
        Ok(Permit {
            breaker: self.clone(),
            generation: inner.generation,
            started: now,
            trial,
            done: false,
        })
    }

    fn record(&self, permit: &Permit, outcome: Option<bool>, now: Instant) {
        let s = &self.shared.settings;
        let mut inner = self.lock();
        if permit.generation != inner.generation {
            return;
        }
        if permit.trial {
            inner.trials_in_flight = inner.trials_in_flight.saturating_sub(1);
        }
        let Some(ok) = outcome else {
            return;
        };
        let slow =
            now.saturating_duration_since(permit.started) >= Duration::from_millis(s.slow_call_ms);
        let failed = !ok;
        match inner.state {
            State::Closed => {
                let max_age = (s.window_ms > 0).then(|| Duration::from_millis(s.window_ms));
                inner.window.push(
                    Outcome {
                        at: now,
                        failed,
                        slow,
                    },
                    s.window,
                    max_age,
                );
                inner.consecutive_failures = if failed {
                    inner.consecutive_failures + 1
                } else {
                    0
                };
                if self.should_open(&inner) {
                    self.transition(&mut inner, State::Open, now);
                }
            }
            State::HalfOpen => {
                if failed || slow {
                    self.transition(&mut inner, State::Open, now);
                } else {
                    inner.trials_succeeded += 1;
                    if inner.trials_succeeded >= s.half_open_calls.max(1) {
                        self.transition(&mut inner, State::Closed, now);
                    }
                }
            }
            State::Open => {}
        }
    }

    fn should_open(&self, inner: &Inner) -> bool {
        let s = &self.shared.settings;
        if s.consecutive_failures > 0 && inner.consecutive_failures >= s.consecutive_failures {
            return true;
        }
        let w = &inner.window;
        let n = w.outcomes.len();
        if n < s.minimum_calls.max(1) {
            return false;
        }
        w.failed as f64 / n as f64 >= s.failure_rate || w.slow as f64 / n as f64 >= s.slow_call_rate
    }

    fn transition(&self, inner: &mut Inner, to: State, now: Instant) {
        let from = inner.state;
        inner.state = to;
        inner.generation += 1;
        inner.window.clear();
        inner.consecutive_failures = 0;
        inner.trials_in_flight = 0;
        inner.trials_succeeded = 0;
        if to == State::Open {
            inner.open_until = now + Duration::from_millis(self.shared.settings.open_ms);
        }
        let name = self.shared.name.clone();
        metrics::gauge!(metric::BREAKER_STATE, "name" => name.clone()).set(to.gauge());
        metrics::counter!(metric::BREAKER_TRANSITIONS,
            "name" => name.clone(), "from" => from.as_str(), "to" => to.as_str())
        .increment(1);
        tracing::warn!(breaker = %name, from = from.as_str(), to = to.as_str(), "circuit breaker changed state");
    }
}

/// Leave to make one call; report how it went. Dropped unreported, it counts for nothing (a
/// cancelled call says nothing about the dependency).
#[derive(Debug)]
pub struct Permit {
    breaker: Breaker,
    generation: u64,
    started: Instant,
    trial: bool,
    done: bool,
}

impl Permit {
    pub fn success(mut self) {
        self.finish(Some(true), now());
    }

    pub fn failure(mut self) {
        self.finish(Some(false), now());
    }

    /// Reports the outcome at a given time (tests drive the clock with this).
    pub fn finish_at(mut self, ok: bool, now: Instant) {
        self.finish(Some(ok), now);
    }

    fn finish(&mut self, outcome: Option<bool>, now: Instant) {
        if !self.done {
            self.done = true;
            let breaker = self.breaker.clone();
            breaker.record(self, outcome, now);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.finish(None, now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            window: 10,
            window_ms: 0,
            minimum_calls: 4,
            failure_rate: 0.5,
            consecutive_failures: 3,
            slow_call_ms: 100,
            slow_call_rate: 0.5,
            open_ms: 1_000,
            half_open_calls: 2,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn opens_after_consecutive_failures_then_half_opens_then_closes() {
        let b = Breaker::new("t1", settings());
        let t0 = Instant::now();
        for _ in 0..3 {
            b.acquire_at(t0).expect("closed").finish_at(false, t0);
        }
        assert_eq!(b.state(), State::Open);
        let rejected = b.acquire_at(t0 + ms(400)).expect_err("open");
        assert_eq!(rejected.retry_after, ms(600));
        let t1 = t0 + ms(1_000);
        let p1 = b.acquire_at(t1).expect("first trial");
        assert_eq!(b.state(), State::HalfOpen);
        let p2 = b.acquire_at(t1).expect("second trial");
        assert!(b.acquire_at(t1).is_err(), "only two trials at once");
        p1.finish_at(true, t1 + ms(10));
        p2.finish_at(true, t1 + ms(10));
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn a_time_window_rides_out_a_burst_among_many_calls_and_opens_on_a_lasting_fault() {
        let s = BreakerSettings {
            window: 100_000,
            window_ms: 2_000,
            minimum_calls: 20,
            consecutive_failures: 0,
            ..settings()
        };
        let b = Breaker::new("t-time", s);
        let t0 = Instant::now();
        // 5,000 calls a second: a 100 ms hiccup fails 500 calls in a row, yet the window
        // holds 2 s of calls, most of them fine.
        for i in 0..10_000u64 {
            let at = t0 + Duration::from_micros(i * 200);
            let hiccup = (5_000..5_500).contains(&i);
            b.acquire_at(at).expect("closed").finish_at(!hiccup, at);
        }
        assert_eq!(b.state(), State::Closed, "a burst is not an outage");
        // Failures age out: 2 s later a lone failure meets only recent successes.
        let t1 = t0 + ms(6_000);
        for i in 0..19u64 {
            b.acquire_at(t1 + ms(i))
                .expect("closed")
                .finish_at(true, t1 + ms(i));
        }
        b.acquire_at(t1 + ms(19))
            .expect("closed")
            .finish_at(false, t1 + ms(19));
        assert_eq!(b.state(), State::Closed);
        // A dependency that keeps failing for a second opens it.
        let t2 = t1 + ms(3_000);
        for i in 0..1_000u64 {
            let at = t2 + ms(i);
            if let Ok(p) = b.acquire_at(at) {
                p.finish_at(false, at);
            }
        }
        assert_eq!(b.state(), State::Open);
    }

    #[test]
    fn a_failed_trial_opens_again() {
        let b = Breaker::new("t2", settings());
        let t0 = Instant::now();
        for _ in 0..3 {
            b.acquire_at(t0).expect("closed").finish_at(false, t0);
        }
        let t1 = t0 + ms(1_000);
        b.acquire_at(t1).expect("trial").finish_at(false, t1);
        assert_eq!(b.state(), State::Open);
        assert!(b.acquire_at(t1 + ms(999)).is_err());
        assert!(b.acquire_at(t1 + ms(1_000)).is_ok());
    }

    #[test]
    fn opens_on_failure_rate_once_the_window_has_enough_calls() {
        let b = Breaker::new("t3", settings());
        let t0 = Instant::now();
        // Alternating: never 3 in a row, but 50% of the window once 4 calls are in.
        b.acquire_at(t0).expect("closed").finish_at(false, t0);
        b.acquire_at(t0).expect("closed").finish_at(true, t0);
        b.acquire_at(t0).expect("closed").finish_at(false, t0);
        assert_eq!(b.state(), State::Closed, "below minimum calls");
        b.acquire_at(t0).expect("closed").finish_at(true, t0);
        assert_eq!(b.state(), State::Open);
    }

    #[test]
    fn opens_on_slow_calls_that_succeed() {
        let b = Breaker::new("t4", settings());
        let t0 = Instant::now();
        for _ in 0..4 {
            b.acquire_at(t0)
                .expect("closed")
                .finish_at(true, t0 + ms(150));
        }
        assert_eq!(b.state(), State::Open);
    }

    #[test]
    fn a_dropped_trial_frees_its_slot() {
        let b = Breaker::new("t5", settings());
        let t0 = Instant::now();
        for _ in 0..3 {
            b.acquire_at(t0).expect("closed").finish_at(false, t0);
        }
        let t1 = t0 + ms(1_000);
        let p1 = b.acquire_at(t1).expect("trial");
        let _p2 = b.acquire_at(t1).expect("trial");
        drop(p1);
        assert!(
            b.acquire_at(t1).is_ok(),
            "the cancelled trial's slot is free again"
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Call { ok: bool, took_ms: u64 },
        Start,
        FinishOldest { ok: bool },
        Wait { ms: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (any::<bool>(), 0u64..200).prop_map(|(ok, took_ms)| Op::Call { ok, took_ms }),
            Just(Op::Start),
            any::<bool>().prop_map(|ok| Op::FinishOldest { ok }),
            (0u64..1_500).prop_map(|ms| Op::Wait { ms }),
        ]
    }

    proptest! {
        /// Whatever happens: an open breaker refuses every call until its wait is over, half-open
        /// never has more trials out than allowed, and `consecutive_failures` failures of
        /// calls admitted while closed always open it.
        #[test]
        fn state_machine_invariants(ops in proptest::collection::vec(op(), 1..200)) {
            let s = settings();
            let b = Breaker::new("prop", s.clone());
            let mut now = Instant::now();
            let mut held: VecDeque<Permit> = VecDeque::new();
            let mut closed_failures_in_a_row = 0u32;
            for op in ops {
                let state_before = b.state();
                match op {
                    Op::Call { ok, took_ms } => match b.acquire_at(now) {
                        Ok(p) => {
                            let admitted_closed = b.state() == State::Closed && !p.trial;
                            p.finish_at(ok, now + ms(took_ms));
                            if admitted_closed && b.state() != State::Open {
                                closed_failures_in_a_row = if ok { 0 } else { closed_failures_in_a_row + 1 };
                            } else {
                                closed_failures_in_a_row = 0;
                            }
                            prop_assert!(closed_failures_in_a_row < s.consecutive_failures);
                        }
                        Err(r) => {
                            prop_assert!(state_before != State::Closed, "a closed breaker never refuses");
                            prop_assert!(r.retry_after > Duration::ZERO);
                        }
                    },
                    Op::Start => {
                        // Outstanding calls interleave with the counted ones: count afresh.
                        closed_failures_in_a_row = 0;
                        if let Ok(p) = b.acquire_at(now) {
                            held.push_back(p);
                        }
                    }
                    Op::FinishOldest { ok } => {
                        closed_failures_in_a_row = 0;
                        if let Some(p) = held.pop_front() {
                            p.finish_at(ok, now);
                        }
                    }
                    Op::Wait { ms: d } => now += ms(d),
                }
                let inner = b.lock();
                prop_assert!(inner.trials_in_flight + inner.trials_succeeded <= s.half_open_calls);
                if inner.state == State::Open {
                    let until = inner.open_until;
                    drop(inner);
                    if now < until {
                        prop_assert!(b.acquire_at(now).is_err());
                    }
                }
            }
        }
    }
}
