//! One gateway's lease on one organization's bucket: a block of tokens taken from the shared
//! bucket in Redis in one round trip and spent here, request by request, without asking again.
//!
//! The block is sized to the rate this gateway sees for the bucket (about `horizon` of it, at
//! most twice the last block, at most `max_block`), so Redis hears from a gateway a few times a
//! second per busy organization however many events pass, and a quiet organization takes
//! one token at a time, exactly as before. Tokens not spent within the lease's time to live go
//! back to the shared bucket: the limit across replicas stays the configured one.
//!
//! Times are microseconds on the limiter's monotonic clock; the shared bucket's state between
//! round trips is what Redis said at the last one, refilled by the time since.

use logctl_core::Quota;

use super::gcra::{self, Ask, Step};

/// How blocks are sized.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sizing {
    /// A block holds about this many seconds of the rate seen.
    pub horizon_secs: f64,
    /// Never more than this in one block (a share of the burst, so replicas leave each other
    /// room).
    pub max_block: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Lease {
    /// Taken from the shared bucket and not yet spent here.
    tokens: u64,
    /// Tokens set aside for the request refilling the lease: counted toward its cost when it
    /// asked Redis for the rest, so no request paying from the lease meanwhile may spend them.
    /// Settled by [`Lease::granted`] or [`Lease::failed`], or by the next ask if that request
    /// was dropped while it waited.
    reserved: u64,
    /// When the last block came, and the shared bucket's distance from full that Redis reported
    /// then (the lease's own tokens included): the `X-RateLimit-*` headers between round trips.
    taken_at: f64,
    backlog_us: f64,
    /// The last block's size: the next grows at most twofold.
    block: u64,
    /// Spent here since the last block.
    spent: u64,
    /// The rate seen (events/s), smoothed over blocks; `None` before the first block.
    rate: Option<f64>,
    /// The last failed round trip: while recent, requests decide locally without trying again.
    failed_at: Option<f64>,
}

impl Lease {
    /// Spends `cost` from the lease, if it holds that many.
    pub fn spend(&mut self, cost: u64) -> bool {
        if self.tokens < cost {
            return false;
        }
        self.tokens -= cost;
        self.spent += cost;
        true
    }

    /// What to ask Redis for when the lease cannot pay `cost`: what is missing, and a block
    /// sized to the rate seen since the last one. The tokens held count toward `cost` and are
    /// set aside until the answer: had a cheaper request spent them meanwhile, the grant of
    /// what was missing would fall short, and a request Redis allowed would be refused.
    pub fn ask(&mut self, cost: u64, now: f64, sizing: Sizing) -> Ask {
        self.take_back_reserved();
        self.reserved = self.tokens.min(cost);
        self.tokens -= self.reserved;
        let need = cost - self.reserved;
        let elapsed = (now - self.taken_at) / 1e6;
        if self.block > 0 && elapsed > 0.0 {
            // Events between the last block and this request, over the time between.
            let seen = self.spent as f64 / elapsed;
            self.rate = Some(match self.rate {
                Some(rate) => 0.5 * rate + 0.5 * seen,
                None => seen,
            });
        }
        let by_rate = self
            .rate
            .map_or(1.0, |rate| (rate * sizing.horizon_secs).ceil());
        let cap = sizing
            .max_block
            .max(1)
            .min(self.block.saturating_mul(2).max(1));
        let block = (by_rate as u64).clamp(1, cap);
        Ask {
            need,
            want: need.max(block),
            refund: 0,
        }
    }

    /// Takes what Redis granted; spends `cost` from it if the step allowed it.
    pub fn granted(&mut self, step: &Step, cost: u64, now: f64) -> bool {
        self.failed_at = None;
        self.take_back_reserved();
        if !step.allowed {
            return false;
        }
        self.tokens += step.granted;
        self.block = step.granted.max(1);
        self.taken_at = now;
        self.backlog_us = step.backlog_us;
        self.spent = 0;
        self.spend(cost)
    }

    /// The tokens set aside for a refill, back in the lease.
    fn take_back_reserved(&mut self) {
        self.tokens += std::mem::take(&mut self.reserved);
    }

    pub fn failed(&mut self, now: f64) {
        self.failed_at = Some(now);
        self.take_back_reserved();
    }

    /// Did a round trip fail within `within_us`, or after `since`?
    pub fn failing(&self, now: f64, within_us: f64, since: f64) -> bool {
        self.failed_at
            .is_some_and(|at| now - at < within_us || at >= since)
    }

    /// The unspent tokens of a lease older than `ttl_us`, taken out to go back to Redis.
    /// Called with no refill under way: anything still set aside is a dropped request's.
    pub fn expire(&mut self, now: f64, ttl_us: f64) -> u64 {
        self.take_back_reserved();
        if self.tokens == 0 || now - self.taken_at < ttl_us {
            return 0;
        }
        self.backlog_us = (self.backlog_us - (now - self.taken_at)).max(0.0);
        self.taken_at = now;
        std::mem::take(&mut self.tokens)
    }

    /// Nothing held and nothing asked for `idle_us`: the lease can be forgotten.
    pub fn idle(&self, now: f64, idle_us: f64) -> bool {
        self.tokens == 0 && self.reserved == 0 && now - self.taken_at > idle_us
    }

    /// The headers of a request paid from the lease: the shared bucket as Redis last saw it,
    /// refilled since, plus what this lease still holds.
    pub fn quota(&self, now: f64, period_us: f64, burst: u64) -> Quota {
        let backlog = (self.backlog_us - (now - self.taken_at)).max(0.0);
        Quota {
            limit: burst,
            remaining: (gcra::room(backlog, period_us, burst) + self.tokens).min(burst),
            reset_secs: (backlog / 1e6).ceil() as u64,
        }
    }

    /// The headers of a request Redis refused: its figures, plus what this lease still holds.
    pub fn refused_quota(&self, step: &Step, period_us: f64, burst: u64) -> Quota {
        Quota {
            limit: burst,
            remaining: (gcra::room(step.backlog_us, period_us, burst) + self.tokens).min(burst),
            reset_secs: (step.backlog_us / 1e6).ceil() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_limit::gcra::{period_us, take};

    const SIZING: Sizing = Sizing {
        horizon_secs: 0.1,
        max_block: 2_000,
    };

    /// A gateway at a steady `rate` against one bucket: how many round trips `seconds` of it
    /// take, and whether every event was paid for.
    fn round_trips(rate: f64, seconds: f64, per_second: f64, burst: u64) -> (u64, u64) {
        let period = period_us(per_second);
        let (mut lease, mut tat, mut trips, mut paid) = (Lease::default(), 0.0, 0, 0);
        let gap = 1e6 / rate;
        let mut now = 1e6;
        while now < 1e6 + seconds * 1e6 {
            if lease.spend(1) {
                paid += 1;
            } else {
                let ask = lease.ask(1, now, SIZING);
                let (step, t) = take(tat, now, period, burst, ask);
                tat = t;
                trips += 1;
                paid += u64::from(lease.granted(&step, 1, now));
            }
            now += gap;
        }
        (trips, paid)
    }

    #[test]
    fn a_busy_bucket_costs_a_few_round_trips_a_second() {
        let (trips, paid) = round_trips(5_000.0, 10.0, 50_000.0, 100_000);
        assert_eq!(paid, 50_000, "every event under the limit passes");
        // About ten blocks a second once the rate is learnt, and a few to learn it.
        assert!(trips < 150, "{trips} round trips for 50,000 events");
        let (trips, paid) = round_trips(2.0, 10.0, 50_000.0, 100_000);
        assert_eq!(
            (trips, paid),
            (20, 20),
            "a quiet bucket: one token at a time"
        );
    }

    #[test]
    fn blocks_grow_at_most_twofold_and_stop_at_the_cap() {
        let mut lease = Lease::default();
        let mut sizes = Vec::new();
        let mut now = 0.0;
        for _ in 0..20 {
            let ask = lease.ask(1, now, SIZING);
            sizes.push(ask.want);
            let step = Step {
                allowed: true,
                granted: ask.want,
                backlog_us: 0.0,
                retry_us: 0.0,
            };
            assert!(lease.granted(&step, 1, now));
            // Spend the whole block in a microsecond: an absurd rate.
            while lease.spend(1) {}
            now += 1.0;
        }
        assert_eq!(&sizes[..5], &[1, 2, 4, 8, 16]);
        assert_eq!(*sizes.last().expect("sizes"), 2_000);
    }

    #[test]
    fn a_request_larger_than_the_lease_asks_for_what_is_missing() {
        let mut lease = Lease::default();
        let step = Step {
            allowed: true,
            granted: 10,
            backlog_us: 0.0,
            retry_us: 0.0,
        };
        assert!(lease.granted(&step, 4, 0.0));
        assert!(!lease.spend(30));
        let ask = lease.ask(30, 1e5, SIZING);
        assert_eq!(ask.need, 24, "the 6 held count toward it");
        assert!(ask.want >= 24);
    }

    #[test]
    fn tokens_counted_toward_a_refill_are_not_spent_by_others_meanwhile() {
        let mut lease = Lease::default();
        let grant = |granted| Step {
            allowed: true,
            granted,
            backlog_us: 0.0,
            retry_us: 0.0,
        };
        assert!(lease.granted(&grant(7), 4, 0.0));
        // 3 held; a batch of 4 asks Redis for the 1 missing, and while it waits a single
        // event arrives: it must not take one of the 3 the batch counted on.
        let ask = lease.ask(4, 1e5, SIZING);
        assert_eq!(ask.need, 1);
        assert!(!lease.spend(1), "the held tokens are set aside");
        // The bucket has exactly the one missing token left.
        assert!(
            lease.granted(&grant(1), 4, 1e5),
            "allowed by Redis, so allowed"
        );
        assert_eq!(lease.tokens, 0);

        // Refused or failed, the tokens set aside come back to the lease.
        assert!(lease.granted(&grant(3), 0, 2e5));
        let _ = lease.ask(4, 3e5, SIZING);
        let refused = Step {
            allowed: false,
            granted: 0,
            backlog_us: 1e6,
            retry_us: 1e4,
        };
        assert!(!lease.granted(&refused, 4, 3e5));
        assert!(lease.spend(3));
        assert!(lease.granted(&grant(2), 0, 4e5));
        let _ = lease.ask(4, 5e5, SIZING);
        lease.failed(5e5);
        assert!(lease.spend(2));
        // A request dropped while it waited: the next ask, or the expiry, takes them back.
        assert!(lease.granted(&grant(2), 0, 6e5));
        let _ = lease.ask(4, 7e5, SIZING);
        assert_eq!(lease.expire(3e6, 1e6), 2);
    }

    #[test]
    fn unspent_tokens_expire_once_and_the_headers_follow_the_shared_bucket() {
        let period = period_us(100.0);
        let mut lease = Lease::default();
        // 50 taken, the shared bucket then 60 from full (10 others hold), 1 spent.
        let step = Step {
            allowed: true,
            granted: 50,
            backlog_us: 60.0 * period,
            retry_us: 0.0,
        };
        assert!(lease.granted(&step, 1, 0.0));
        let q = lease.quota(0.0, period, 100);
        assert_eq!((q.limit, q.remaining, q.reset_secs), (100, 40 + 49, 1));
        // Half a second refills 50 of the 60.
        let q = lease.quota(0.5e6, period, 100);
        assert_eq!(q.remaining, 100, "never more than the burst");
        assert_eq!(lease.expire(0.5e6, 1e6), 0, "not yet");
        assert_eq!(lease.expire(1.5e6, 1e6), 49);
        assert_eq!(lease.expire(3.0e6, 1e6), 0, "given back once");
        assert!(lease.idle(70e6, 60e6));
    }

    #[test]
    fn a_failed_round_trip_holds_off_the_next_ones_for_a_while() {
        let mut lease = Lease::default();
        lease.failed(1e6);
        assert!(lease.failing(1.05e6, 1e5, f64::MAX), "within the interval");
        assert!(
            !lease.failing(1.2e6, 1e5, 1.1e6),
            "an old failure, asked after it"
        );
        assert!(
            lease.failing(1.2e6, 1e5, 0.9e6),
            "it failed while this request waited"
        );
    }
}
