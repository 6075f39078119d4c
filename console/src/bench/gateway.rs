//! What a step through the gateway shows beyond its ingest latency: how long its events took to
//! be stored (accepted → row committed, from PostgreSQL, which also checks none was lost or
//! stored twice), and what the rate limiter did meanwhile (round trips to Redis, decisions made
//! in memory because Redis could not be asked, transitions of the Redis breaker).

use std::time::Duration;

use logctl_contracts::metric;
use logctl_loadgen::report::Verification;
use uuid::Uuid;

use crate::signals::exposition::{self, Scrape};

#[derive(Debug, Clone, Default)]
pub struct GatewayStep {
    /// None when the database could not be asked.
    pub stored: Option<Verification>,
    pub limiter: Limiter,
}

/// The rate limiter's counters over a step (differences of the gateway's own counters).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limiter {
    pub redis_round_trips: f64,
    pub fallback_decisions: f64,
    pub breaker_transitions: f64,
}

impl Limiter {
    fn read(s: &Scrape) -> Self {
        Self {
            redis_round_trips: s
                .sum(&format!("{}_count", metric::RATE_LIMIT_CHECK), &[])
                .unwrap_or(0.0),
            fallback_decisions: s.sum(metric::RATE_LIMIT_FALLBACK, &[]).unwrap_or(0.0),
            breaker_transitions: s
                .sum(metric::BREAKER_TRANSITIONS, &[("name", "redis")])
                .unwrap_or(0.0),
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            redis_round_trips: (self.redis_round_trips - before.redis_round_trips).max(0.0),
            fallback_decisions: (self.fallback_decisions - before.fallback_decisions).max(0.0),
            breaker_transitions: (self.breaker_transitions - before.breaker_transitions).max(0.0),
        }
    }
}

/// The gateway's counters now; zeros when it does not answer (a step that broke it says so
/// in its errors).
pub async fn counters(gateway: &str) -> Limiter {
    exposition::fetch(&reqwest::Client::new(), gateway, Duration::from_secs(5))
        .await
        .map_or_else(Limiter::default, |s| Limiter::read(&s))
}

/// After a step: its limiter counters, and its events found in PostgreSQL (waiting up to
/// `within` for the last of them).
pub async fn observe(
    gateway: &str,
    before: Limiter,
    database_url: &str,
    acked: &[Uuid],
    within: Duration,
) -> GatewayStep {
    let limiter = counters(gateway).await.since(before);
    let stored = match crate::load::verify(database_url, acked, within).await {
        Ok(v) => Some(v),
        Err(e) => {
            eprintln!("bench: could not read the step's events back: {e:#}");
            None
        }
    };
    GatewayStep { stored, limiter }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_counters_are_read_and_differenced() {
        let at = |checks: f64, fallback: f64, flips: f64| {
            Limiter::read(&Scrape::parse(&format!(
                "logctl_rate_limit_check_seconds_count{{backend=\"redis\"}} {checks}\n\
                 logctl_gateway_rate_limit_fallback_total {fallback}\n\
                 logctl_breaker_transitions_total{{name=\"redis\",from=\"closed\",to=\"open\"}} {flips}\n\
                 logctl_breaker_transitions_total{{name=\"producer-0\",from=\"closed\",to=\"open\"}} 7\n"
            )))
        };
        let step = at(130.0, 4.0, 2.0).since(at(100.0, 4.0, 0.0));
        assert_eq!(
            step,
            Limiter {
                redis_round_trips: 30.0,
                fallback_decisions: 0.0,
                breaker_transitions: 2.0,
            }
        );
    }
}
