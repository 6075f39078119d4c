//! Per-organization rate limiting with GCRA (the generic cell rate algorithm): each bucket is
//! one number, its "theoretical arrival time", so a check is one atomic Lua call in Redis and
//! every gateway replica sharing that Redis enforces one limit in total.
//!
//! Redis down (or slow): the limiter keeps deciding with the same algorithm in memory, each
//! replica taking `1/replicas` of every limit, says so in a gauge and in readiness, and goes
//! back to Redis when its breaker lets a trial call through. No request fails for Redis.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use logctl_contracts::metric;
use logctl_core::kv::Kv;
use logctl_core::{OrganizationId, Quota};
use serde::{Deserialize, Serialize};

/// One organization's allowance: a sustained rate and the burst it may spend at once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limit {
    pub per_second: f64,
    pub burst: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitSettings {
    pub enabled: bool,
    /// For every organization not listed in `orgs`.
    pub default: Limit,
    pub orgs: BTreeMap<String, Limit>,
    /// Gateway replicas sharing the Redis limit; each takes this share when on its own.
    pub replicas: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            // Generous: a default that never throttles a healthy client on one machine's
            // ceiling (about 100k events/s); set tighter limits per organization.
            default: Limit {
                per_second: 50_000.0,
                burst: 100_000,
            },
            orgs: BTreeMap::new(),
            replicas: 1,
        }
    }
}

/// Writes and reads draw on separate buckets: a reader must not starve its own ingestion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    Write,
    Read,
}

impl Bucket {
    fn tag(self) -> &'static str {
        match self {
            Bucket::Write => "w",
            Bucket::Read => "r",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub quota: Quota,
    /// When refused: seconds until `cost` events would pass.
    pub retry_after_secs: u64,
}

/// The outcome of one GCRA step in microseconds: the bucket's backlog after the call and, when
/// refused, how long until the cost would fit.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Step {
    allowed: bool,
    backlog_us: f64,
    retry_us: f64,
}

/// GCRA, the same arithmetic as [`SCRIPT`]: `tat` is when the bucket would be empty again.
fn gcra(tat: f64, now: f64, period_us: f64, burst: u64, cost: u64) -> (Step, f64) {
    let tat = tat.max(now);
    let tolerance = period_us * burst as f64;
    let new_tat = tat + period_us * cost as f64;
    let allow_at = new_tat - tolerance;
    if allow_at > now {
        let step = Step {
            allowed: false,
            backlog_us: tat - now,
            retry_us: allow_at - now,
        };
        (step, tat)
    } else {
        let step = Step {
            allowed: true,
            backlog_us: new_tat - now,
            retry_us: 0.0,
        };
        (step, new_tat)
    }
}

/// KEYS[1]: the bucket. ARGV: period in µs, burst, cost. Redis's own clock, so replicas with
/// skewed clocks still agree. Returns {allowed, backlog µs, retry µs}.
const SCRIPT: &str = r"
local period = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + period * cost
local allow_at = new_tat - period * burst
if allow_at > now then
  return {0, math.floor(tat - now), math.ceil(allow_at - now)}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, math.floor(new_tat - now), 0}
";

/// Buckets kept in memory for the fallback before stale ones are swept.
const LOCAL_SWEEP_AT: usize = 100_000;

#[derive(Clone)]
pub struct RateLimiter {
    settings: Arc<RateLimitSettings>,
    kv: Kv,
    script: Arc<redis::Script>,
    local: Arc<Mutex<HashMap<(String, Bucket), f64>>>,
    epoch: Instant,
}

impl RateLimiter {
    pub fn new(settings: RateLimitSettings, kv: Kv) -> Self {
        Self {
            settings: Arc::new(settings),
            kv,
            script: Arc::new(redis::Script::new(SCRIPT)),
            local: Arc::new(Mutex::new(HashMap::new())),
            epoch: Instant::now(),
        }
    }

    pub fn limit_for(&self, org: &OrganizationId) -> Limit {
        self.settings
            .orgs
            .get(org.as_str())
            .copied()
            .unwrap_or(self.settings.default)
    }

    /// Is the limiter deciding on its own (Redis unavailable)?
    pub fn is_local(&self) -> bool {
        !self.kv.available()
    }

    /// Spends `cost` from the organization's bucket, or says when it could.
    pub async fn check(&self, org: &OrganizationId, bucket: Bucket, cost: u64) -> Option<Decision> {
        if !self.settings.enabled {
            return None;
        }
        let limit = self.limit_for(org);
        let started = Instant::now();
        let (backend, step, burst, period_us) =
            match self.check_redis(org, bucket, cost, limit).await {
                Some(step) => ("redis", step, limit.burst, period_us(limit.per_second)),
                None => {
                    let share = f64::from(self.settings.replicas.max(1));
                    let burst = ((limit.burst as f64 / share).floor() as u64).max(1);
                    let period = period_us(limit.per_second / share);
                    (
                        "local",
                        self.check_local(org, bucket, cost, period, burst),
                        burst,
                        period,
                    )
                }
            };
        metrics::histogram!(metric::RATE_LIMIT_CHECK, "backend" => backend)
            .record(started.elapsed().as_secs_f64());
        metrics::gauge!(metric::RATE_LIMIT_LOCAL).set(if backend == "local" { 1.0 } else { 0.0 });
        metrics::counter!(
            metric::RATE_LIMIT_DECISIONS,
            "decision" => if step.allowed { "allowed" } else { "limited" },
            "backend" => backend
        )
        .increment(1);
        let remaining = ((period_us * burst as f64 - step.backlog_us) / period_us)
            .floor()
            .clamp(0.0, burst as f64) as u64;
        Some(Decision {
            allowed: step.allowed,
            quota: Quota {
                limit: burst,
                remaining,
                reset_secs: (step.backlog_us / 1e6).ceil() as u64,
            },
            retry_after_secs: ((step.retry_us / 1e6).ceil() as u64).max(u64::from(!step.allowed)),
        })
    }

    async fn check_redis(
        &self,
        org: &OrganizationId,
        bucket: Bucket,
        cost: u64,
        limit: Limit,
    ) -> Option<Step> {
        let key = format!("logctl:rl:{}:{}", org.as_str(), bucket.tag());
        let script = self.script.clone();
        let period = period_us(limit.per_second);
        let reply: Result<(i64, i64, i64), _> = self
            .kv
            .run(|mut conn| async move {
                script
                    .key(key)
                    .arg(period)
                    .arg(limit.burst)
                    .arg(cost)
                    .invoke_async(&mut conn)
                    .await
            })
            .await;
        match reply {
            Ok((allowed, backlog, retry)) => Some(Step {
                allowed: allowed == 1,
                backlog_us: backlog as f64,
                retry_us: retry as f64,
            }),
            Err(e) => {
                tracing::debug!(error = %e, "rate limiting locally");
                None
            }
        }
    }

    fn check_local(
        &self,
        org: &OrganizationId,
        bucket: Bucket,
        cost: u64,
        period: f64,
        burst: u64,
    ) -> Step {
        let now = self.epoch.elapsed().as_secs_f64() * 1e6;
        let mut map = self
            .local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= LOCAL_SWEEP_AT {
            map.retain(|_, tat| *tat > now);
        }
        let tat = map.entry((org.as_str().to_string(), bucket)).or_insert(now);
        let (step, new_tat) = gcra(*tat, now, period, burst, cost);
        *tat = new_tat;
        step
    }
}

fn period_us(per_second: f64) -> f64 {
    1e6 / per_second.max(1e-6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let period = period_us(10.0); // 10/s
        let (mut tat, now) = (0.0, 1_000_000.0);
        let mut passed = 0;
        for _ in 0..30 {
            let (step, t) = gcra(tat, now, period, 5, 1);
            tat = t;
            passed += usize::from(step.allowed);
        }
        assert_eq!(passed, 5, "the burst, no more, at one instant");
        let (step, _) = gcra(tat, now, period, 5, 1);
        assert!(!step.allowed);
        assert!(
            (step.retry_us - period).abs() < 1.0,
            "one period until the next event"
        );
        let (step, _) = gcra(tat, now + period, period, 5, 1);
        assert!(step.allowed, "one period later one event fits");
    }

    #[test]
    fn a_batch_spends_its_size() {
        let period = period_us(100.0);
        let (step, tat) = gcra(0.0, 0.0, period, 100, 60);
        assert!(step.allowed);
        let (step, _) = gcra(tat, 0.0, period, 100, 60);
        assert!(!step.allowed, "60 + 60 exceeds a burst of 100");
        let (step, _) = gcra(tat, 0.0, period, 100, 40);
        assert!(step.allowed, "60 + 40 fits exactly");
    }

    proptest! {
        /// Over any sequence of calls, what passes never exceeds burst + rate × elapsed.
        #[test]
        fn never_more_than_burst_plus_rate(
            gaps in proptest::collection::vec(0.0f64..50_000.0, 1..200),
            costs in proptest::collection::vec(1u64..20, 1..200),
            per_second in 1.0f64..1000.0,
            burst in 1u64..100,
        ) {
            let period = period_us(per_second);
            let (mut tat, mut now, mut passed) = (0.0, 0.0, 0u64);
            for (gap, cost) in gaps.iter().zip(costs.iter()) {
                now += gap;
                let (step, t) = gcra(tat, now, period, burst, *cost);
                tat = t;
                if step.allowed { passed += cost; }
            }
            let allowance = burst as f64 + now / period;
            prop_assert!(passed as f64 <= allowance + 1e-6, "{passed} > {allowance}");
        }
    }
}
