//! The drill's eyes: the TUI's collector read every second in the background, turned into a
//! [`Reading`] (rates over the last couple of seconds, latencies, lag, states, and counts
//! since the drill started) that conditions are checked against.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::condition::{Observed, Reading};
use crate::signals::{Collector, Signals, Snapshot};

/// Counters since the drill started, summed interval by interval so a restarted service
/// (whose counters start again from zero) does not make them jump back.
#[derive(Debug, Clone, Default)]
struct Totals {
    accepted: f64,
    published: f64,
    stored: f64,
    http_4xx: f64,
    http_5xx: f64,
    rate_limited: f64,
    dead_lettered: f64,
}

impl Totals {
    fn add(&mut self, s: &Signals, dead_before: f64) {
        let n = |per_sec: f64| per_sec * s.seconds;
        self.accepted += n(s.accepted_per_sec);
        self.published += n(s.published_per_sec);
        self.stored += n(s.stored_per_sec);
        self.http_4xx += n(s.client_errors_per_sec);
        self.http_5xx += n(s.server_errors_per_sec);
        self.rate_limited += n(s.rate_limited_per_sec);
        let dead = s.dead_lettered_total;
        self.dead_lettered += if dead >= dead_before {
            dead - dead_before
        } else {
            dead
        };
    }
}

/// One point of the drill's timeline (kept in the JSON report).
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub t: f64,
    pub reading: Reading,
}

/// The latest reading, bumped once per sample.
#[derive(Debug, Clone, Default)]
pub struct Latest {
    pub seq: u64,
    pub reading: Reading,
}

pub struct Observer {
    pub latest: watch::Receiver<Latest>,
    timeline: Arc<Mutex<Vec<Point>>>,
    stop: CancellationToken,
}

/// Rates are taken over this many sampling intervals, so one slow scrape does not swing them.
const WINDOW: usize = 2;

impl Observer {
    /// Starts sampling every `every` until dropped or [`Observer::finish`].
    pub fn start(collector: Collector, every: Duration, started: Instant) -> Observer {
        let (tx, latest) = watch::channel(Latest::default());
        let timeline = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (points, token) = (timeline.clone(), stop.clone());
        let collector = collector.with_own_lag_history();
        tokio::spawn(async move {
            let mut ring: VecDeque<Snapshot> = VecDeque::new();
            let mut totals = Totals::default();
            let mut seq = 0;
            loop {
                let snap = collector.snapshot().await;
                if let Some(last) = ring.back() {
                    let step = Signals::between(last, &snap);
                    let dead_before = last.dead_lettered();
                    totals.add(&step, dead_before);
                }
                ring.push_back(snap);
                if ring.len() > WINDOW + 1 {
                    ring.pop_front();
                }
                if let (Some(first), Some(last)) = (ring.front(), ring.back()) {
                    if ring.len() >= 2 {
                        let reading = build(&Signals::between(first, last), &totals);
                        seq += 1;
                        points
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(Point {
                                t: started.elapsed().as_secs_f64(),
                                reading: reading.clone(),
                            });
                        let _ = tx.send(Latest { seq, reading });
                    }
                }
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        });
        Observer {
            latest,
            timeline,
            stop,
        }
    }

    /// A reading taken after now (so it reflects what a step just did).
    pub async fn fresh(&mut self) -> Reading {
        let seen = self.latest.borrow_and_update().seq;
        loop {
            if self.latest.changed().await.is_err() {
                return self.latest.borrow().reading.clone();
            }
            let l = self.latest.borrow_and_update();
            if l.seq > seen {
                return l.reading.clone();
            }
        }
    }

    pub fn finish(self) -> Vec<Point> {
        self.stop.cancel();
        std::mem::take(
            &mut *self
                .timeline
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Every stack signal by its condition name.
fn build(s: &Signals, t: &Totals) -> Reading {
    let mut r = Reading::new();
    let mut num = |k: &str, v: f64| {
        r.insert(k.to_owned(), Observed::Number(v));
    };
    num("accepted_rate", s.accepted_per_sec);
    num("published_rate", s.published_per_sec);
    num("stored_rate", s.stored_per_sec);
    num("http_4xx_rate", s.client_errors_per_sec);
    num("http_5xx_rate", s.server_errors_per_sec);
    num("rate_limited_rate", s.rate_limited_per_sec);
    num("shed_rate", s.shed_per_sec);
    num("rate_limit_fallback_rate", s.rate_limit_fallback_per_sec);
    num("spool_records", s.spool_records);
    num("consumers_paused", s.consumers_paused);
    num("accepted", t.accepted.round());
    num("published", t.published.round());
    num("stored", t.stored.round());
    num("http_4xx", t.http_4xx.round());
    num("http_5xx", t.http_5xx.round());
    num("rate_limited", t.rate_limited.round());
    num("dead_lettered", t.dead_lettered.round());
    for (k, v) in [
        ("gateway_p50_ms", s.gateway_p50_ms),
        ("gateway_p99_ms", s.gateway_p99_ms),
        ("end_to_end_p99_ms", s.end_to_end_p99_ms),
        ("rate_limit_local", s.rate_limit_local),
        ("brokers_up", s.brokers_up),
        ("under_replicated", s.under_replicated),
        ("under_min_isr", s.under_min_isr),
        ("lag", s.lag_total.map(|l| l as f64)),
        ("lag_seconds", s.lag_seconds),
    ] {
        if let Some(v) = v {
            num(k, v);
        }
    }
    if s.lag_total.is_some() {
        for (p, l) in &s.lag_by_partition {
            num(&format!("lag.{p}"), *l as f64);
        }
    }
    for (p, (secs, _)) in &s.partition_health {
        if let Some(secs) = secs {
            num(&format!("lag_seconds.{p}"), *secs);
        }
    }
    if let Some(status) = &s.consumer_status {
        r.insert("consumer_status".into(), Observed::Word(status.clone()));
    }
    for (name, state) in &s.breakers {
        r.insert(format!("breaker.{name}"), Observed::Word(state.clone()));
    }
    for (name, state) in &s.components {
        r.insert(format!("component.{name}"), Observed::Word(state.clone()));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_survive_a_restarted_counter() {
        let mut t = Totals::default();
        let s = |accepted_per_sec: f64, dead: f64| Signals {
            seconds: 1.0,
            accepted_per_sec,
            dead_lettered_total: dead,
            ..Signals::default()
        };
        t.add(&s(100.0, 2.0), 0.0);
        t.add(&s(50.0, 1.0), 2.0); // the consumer restarted: its counter is 1 again
        assert_eq!(t.accepted, 150.0);
        assert_eq!(t.dead_lettered, 3.0);
        let r = build(&s(10.0, 0.0), &t);
        assert_eq!(r["accepted"], Observed::Number(150.0));
        assert!(!r.contains_key("lag"), "unknown lag is absent, not 0");
    }
}
