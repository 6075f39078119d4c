//! How the sink retries: a value built once from the settings, so the rules are read in one
//! place and a test can pick its own.

use std::time::Duration;

use crate::settings::RetrySettings;

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// First wait after a failure; each next one doubles...
    pub base: Duration,
    /// ...up to this.
    pub cap: Duration,
    /// Deadline of one insert: a hung database counts as failing instead of stalling us.
    pub insert_timeout: Duration,
    /// Tries of one row PostgreSQL refuses before it is dead-lettered.
    pub refused_attempts: u32,
    /// Wait between those tries (a refusal may be a passing conflict, not an outage).
    pub refused_pause: Duration,
}

impl From<&RetrySettings> for RetryPolicy {
    fn from(s: &RetrySettings) -> Self {
        Self {
            base: Duration::from_millis(s.base_ms),
            cap: Duration::from_millis(s.cap_ms),
            insert_timeout: Duration::from_millis(s.insert_timeout_ms),
            refused_attempts: s.dead_letter_attempts.max(1),
            refused_pause: Duration::from_millis(100),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with jitter: attempt n waits a random time in [c/2, c] with
    /// c = min(cap, base * 2^(n-1)), so instances that failed together do not retry together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.cap)
            .max(Duration::from_millis(1));
        let ms = ceiling.as_millis() as u64;
        Duration::from_millis(rand::random_range(ms / 2..=ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_up_to_the_cap() {
        let r = RetryPolicy::from(&RetrySettings::default());
        for (attempt, ceiling) in [
            (1, 1_000),
            (2, 2_000),
            (3, 4_000),
            (4, 8_000),
            (6, 30_000),
            (40, 30_000),
        ] {
            for _ in 0..50 {
                let d = r.backoff(attempt).as_millis() as u64;
                assert!(
                    d >= ceiling / 2 && d <= ceiling,
                    "attempt {attempt}: {d} ms"
                );
            }
        }
    }
}
