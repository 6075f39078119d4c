//! Realistic client events, reproducible from a seed.
//!
//! Organizations are Zipf-skewed (a few tenants send most events, as in real multi-tenant
//! traffic), levels follow a production-like mix (mostly INFO/DEBUG, rare FATAL), and message
//! sizes vary around a configurable mean, so compression and batching see realistic input.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// Level weights: TRACE, DEBUG, INFO, WARN, ERROR, FATAL.
const LEVELS: [(&str, u32); 6] = [
    ("TRACE", 5),
    ("DEBUG", 20),
    ("INFO", 55),
    ("WARN", 12),
    ("ERROR", 7),
    ("FATAL", 1),
];

const SOURCES: [&str; 8] = [
    "auth-service",
    "billing-api",
    "checkout",
    "search",
    "gateway-edge",
    "inventory",
    "mailer",
    "scheduler",
];

const WORDS: [&str; 16] = [
    "request",
    "user",
    "completed",
    "timeout",
    "retry",
    "cache",
    "miss",
    "order",
    "payment",
    "session",
    "token",
    "queue",
    "latency",
    "db",
    "connection",
    "ok",
];

#[derive(Debug, Clone)]
pub struct EventMix {
    rng: StdRng,
    /// Cumulative Zipf weights over organizations.
    org_cdf: Vec<f64>,
    mean_message_bytes: usize,
    org_prefix: String,
}

impl EventMix {
    /// `orgs` organizations named `{org_prefix}-{n}`, Zipf exponent 1.1.
    pub fn new(seed: u64, orgs: usize, mean_message_bytes: usize, org_prefix: &str) -> Self {
        let orgs = orgs.max(1);
        let weights: Vec<f64> = (1..=orgs).map(|k| 1.0 / (k as f64).powf(1.1)).collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let org_cdf = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        Self {
            rng: StdRng::seed_from_u64(seed),
            org_cdf,
            mean_message_bytes: mean_message_bytes.max(8),
            org_prefix: org_prefix.to_owned(),
        }
    }

    pub fn organization(&mut self) -> String {
        let u: f64 = self.rng.random();
        let k = self
            .org_cdf
            .partition_point(|c| *c < u)
            .min(self.org_cdf.len() - 1);
        format!("{}-{}", self.org_prefix, k + 1)
    }

    pub fn level(&mut self) -> &'static str {
        let total: u32 = LEVELS.iter().map(|(_, w)| w).sum();
        let mut pick = self.rng.random_range(0..total);
        for (level, w) in LEVELS {
            if pick < w {
                return level;
            }
            pick -= w;
        }
        "INFO"
    }

    fn message(&mut self) -> String {
        let target = self
            .rng
            .random_range(self.mean_message_bytes / 2..=self.mean_message_bytes * 3 / 2);
        let mut m = String::with_capacity(target + 12);
        while m.len() < target {
            if !m.is_empty() {
                m.push(' ');
            }
            m.push_str(WORDS[self.rng.random_range(0..WORDS.len())]);
        }
        m
    }

    /// One client event as JSON, without an id (the gateway assigns one).
    pub fn next_event(&mut self) -> Value {
        let organization = self.organization();
        self.event_for(&organization)
    }

    /// One event of the given organization (a batch is one organization's, as tokens are).
    pub fn event_for(&mut self, organization: &str) -> Value {
        let level = self.level();
        let source = SOURCES[self.rng.random_range(0..SOURCES.len())];
        json!({
            "organizationId": organization,
            "level": level,
            "message": self.message(),
            "source": source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_events() {
        let mut a = EventMix::new(7, 20, 120, "org");
        let mut b = EventMix::new(7, 20, 120, "org");
        for _ in 0..100 {
            assert_eq!(a.next_event(), b.next_event());
        }
    }

    #[test]
    fn organizations_are_skewed_towards_the_first() {
        let mut mix = EventMix::new(1, 50, 64, "org");
        let n = 20_000;
        let first = (0..n).filter(|_| mix.organization() == "org-1").count();
        // Zipf(1.1) over 50 gives the first organization about a fifth of all events.
        assert!(first > n / 8 && first < n / 3, "org-1 had {first} of {n}");
    }

    #[test]
    fn messages_are_near_the_mean_size() {
        let mut mix = EventMix::new(3, 5, 200, "org");
        for _ in 0..200 {
            let e = mix.next_event();
            let len = e["message"].as_str().map_or(0, str::len);
            assert!((100..=320).contains(&len), "message of {len} bytes");
        }
    }
}
