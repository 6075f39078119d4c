//! GCRA (the generic cell rate algorithm) with leases: a bucket is one number, its
//! "theoretical arrival time" (`tat`, when it would be full again), so a step is a few lines
//! of arithmetic that run the same in Redis ([`SCRIPT`]) and in memory ([`take`]).
//!
//! A step can take more than it needs: a gateway asks for a block (`want`) of which at least
//! `need` must fit, and gets as much of the block as the bucket holds. Tokens a gateway took
//! and did not spend go back (`refund`) so the limit stays the limit, not the limit minus
//! whatever sat unspent in some replica's lease.

/// One step's outcome, in microseconds of the bucket's clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub allowed: bool,
    /// Tokens taken: `need <= granted <= want` when allowed, 0 when refused.
    pub granted: u64,
    /// How far the bucket is from full after the step.
    pub backlog_us: f64,
    /// When refused: how long until `need` would fit.
    pub retry_us: f64,
}

/// What one step asks of a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    /// Refused unless this many fit.
    pub need: u64,
    /// As many as fit up to this (at least `need`).
    pub want: u64,
    /// Tokens taken earlier and not spent, given back first.
    pub refund: u64,
}

/// Floating-point slack when counting whole tokens: `tat` is in microseconds since the epoch,
/// so the division that counts them is off by far less than this.
const SLACK: f64 = 1e-6;

/// One step on a bucket of `burst` tokens refilling one per `period_us`; returns the step and
/// the bucket's new `tat`. The same arithmetic as [`SCRIPT`].
pub fn take(tat: f64, now: f64, period_us: f64, burst: u64, ask: Ask) -> (Step, f64) {
    let tat = (tat - period_us * ask.refund as f64).max(now);
    let room = ((now + period_us * burst as f64 - tat) / period_us + SLACK).floor();
    let room = room.max(0.0) as u64;
    let want = ask.want.max(ask.need);
    if room < ask.need {
        let step = Step {
            allowed: false,
            granted: 0,
            backlog_us: tat - now,
            retry_us: tat + period_us * (ask.need as f64 - burst as f64) - now,
        };
        return (step, tat);
    }
    let granted = want.min(room);
    let new_tat = tat + period_us * granted as f64;
    let step = Step {
        allowed: true,
        granted,
        backlog_us: new_tat - now,
        retry_us: 0.0,
    };
    (step, new_tat)
}

/// Tokens a bucket holds `backlog_us` from full.
pub fn room(backlog_us: f64, period_us: f64, burst: u64) -> u64 {
    ((period_us * burst as f64 - backlog_us) / period_us + SLACK)
        .floor()
        .clamp(0.0, burst as f64) as u64
}

pub fn period_us(per_second: f64) -> f64 {
    1e6 / per_second.max(1e-6)
}

/// KEYS[1]: the bucket. ARGV: period in µs, burst, need, want, refund. Redis's own clock, so
/// replicas with skewed clocks still agree. Returns {granted, backlog µs, retry µs}.
pub const SCRIPT: &str = r"
local period = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local need = tonumber(ARGV[3])
local want = math.max(tonumber(ARGV[4]), need)
local refund = tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') - period * refund
if tat < now then tat = now end
local room = math.floor((now + period * burst - tat) / period + 1e-6)
if room < 0 then room = 0 end
local granted = 0
if room >= need then
  granted = math.min(want, room)
  tat = tat + period * granted
end
if tat > now then
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
else
  redis.call('DEL', KEYS[1])
end
if room < need then
  return {0, math.floor(tat - now), math.ceil(tat + period * (need - burst) - now)}
end
return {granted, math.floor(tat - now), 0}
";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(need: u64) -> Ask {
        Ask {
            need,
            want: need,
            refund: 0,
        }
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let period = period_us(10.0); // 10/s
        let (mut tat, now) = (0.0, 1_000_000.0);
        let mut passed = 0;
        for _ in 0..30 {
            let (step, t) = take(tat, now, period, 5, one(1));
            tat = t;
            passed += step.granted;
        }
        assert_eq!(passed, 5, "the burst, no more, at one instant");
        let (step, _) = take(tat, now, period, 5, one(1));
        assert!(!step.allowed);
        assert!(
            (step.retry_us - period).abs() < 1.0,
            "one period until the next event"
        );
        let (step, _) = take(tat, now + period, period, 5, one(1));
        assert!(step.allowed, "one period later one event fits");
    }

    #[test]
    fn a_batch_spends_its_size() {
        let period = period_us(100.0);
        let (step, tat) = take(0.0, 0.0, period, 100, one(60));
        assert!(step.allowed);
        let (step, _) = take(tat, 0.0, period, 100, one(60));
        assert!(!step.allowed, "60 + 60 exceeds a burst of 100");
        let (step, _) = take(tat, 0.0, period, 100, one(40));
        assert!(step.allowed, "60 + 40 fits exactly");
    }

    #[test]
    fn a_lease_takes_what_fits_and_a_refund_puts_it_back() {
        let period = period_us(100.0);
        let block = Ask {
            need: 1,
            want: 80,
            refund: 0,
        };
        let (step, tat) = take(0.0, 0.0, period, 100, block);
        assert_eq!(step.granted, 80);
        assert_eq!(room(step.backlog_us, period, 100), 20);
        let (step, tat) = take(tat, 0.0, period, 100, block);
        assert_eq!(step.granted, 20, "the rest of the bucket, not refused");
        let (step, _) = take(tat, 0.0, period, 100, block);
        assert_eq!((step.granted, step.allowed), (0, false));
        // 30 unspent come back: the next ask finds them.
        let back = Ask {
            need: 0,
            want: 0,
            refund: 30,
        };
        let (step, tat) = take(tat, 0.0, period, 100, back);
        assert_eq!(room(step.backlog_us, period, 100), 30);
        let (step, _) = take(tat, 0.0, period, 100, one(30));
        assert!(step.allowed);
        // A refund never fills a bucket past full.
        let (step, _) = take(0.0, 5e6, period, 100, back);
        assert_eq!(room(step.backlog_us, period, 100), 100);
    }

    proptest! {
        /// Over any sequence of leases and refunds, what is granted minus what came back
        /// never exceeds burst + rate × elapsed.
        #[test]
        fn never_more_than_burst_plus_rate(
            gaps in proptest::collection::vec(0.0f64..50_000.0, 1..200),
            asks in proptest::collection::vec((1u64..20, 0u64..40, 0u64..5), 1..200),
            per_second in 1.0f64..1000.0,
            burst in 1u64..100,
        ) {
            let period = period_us(per_second);
            let (mut tat, mut now, mut held) = (0.0, 0.0, 0u64);
            let mut kept = 0u64;
            for (gap, (need, extra, refund)) in gaps.iter().zip(asks.iter()) {
                now += gap;
                let refund = (*refund).min(held);
                held -= refund;
                let ask = Ask { need: *need, want: need + extra, refund };
                let (step, t) = take(tat, now, period, burst, ask);
                tat = t;
                held += step.granted;
                // Spend what a request needs; the rest stays held (a lease).
                if step.allowed {
                    held -= need;
                    kept += need;
                }
                let allowance = burst as f64 + now / period;
                prop_assert!((kept + held) as f64 <= allowance + 1e-3, "{kept}+{held} > {allowance}");
            }
        }
    }
}
