//! Per-organization rate limiting with GCRA (the generic cell rate algorithm, [`gcra`]): each
//! bucket is one number in Redis, so every gateway replica sharing that Redis enforces one limit
//! in total.
//!
//! A gateway does not ask Redis per request: it leases blocks of tokens ([`lease`]) sized to
//! the rate it sees for the organization, spends them in memory, and gives back what it did not
//! spend. At a few thousand events/s a round trip per request was much of the gateway's cost
//! per event and, on a saturated machine, enough slow answers to keep the Redis breaker
//! flapping (the limit silently per replica for much of the time); leases make it a few round
//! trips a second per organization.
//!
//! Redis down (or slow): the limiter decides with the same algorithm in memory, each replica
//! taking `1/replicas` of every limit, counts each such decision
//! (`logctl_gateway_rate_limit_fallback_total`), says so in a gauge and in readiness, and goes
//! back to Redis when its breaker lets a call through. No request fails for Redis.

mod gcra;
mod lease;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use logctl_contracts::metric;
use logctl_core::kv::Kv;
use logctl_core::{OrganizationId, Quota};
use metrics::{Counter, Gauge, Histogram};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use gcra::{Ask, Step};
use lease::{Lease, Sizing};

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
    /// Gateway replicas sharing the Redis limit; each takes this share when on its own, and
    /// leases at most a quarter of it at a time.
    pub replicas: u32,
    /// A lease holds about this long of the rate the gateway sees for an organization.
    #[serde(deserialize_with = "logctl_contracts::duration::millis")]
    pub lease_ms: u64,
    /// Leased tokens not spent within this long go back to the shared bucket.
    #[serde(deserialize_with = "logctl_contracts::duration::millis")]
    pub lease_ttl_ms: u64,
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
            // Ten round trips a second for a busy organization; a tenth of a second of its
            // rate is what another replica may find missing from the bucket meanwhile.
            lease_ms: 100,
            lease_ttl_ms: 1_000,
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

/// Buckets kept in memory for the fallback before stale ones are swept.
const LOCAL_SWEEP_AT: usize = 100_000;

/// A decision made in memory shows in the `local` gauge for this long (µs).
const LOCAL_SHOWN_FOR_US: f64 = 1e6;

/// A lease with no tokens and no use for this long is forgotten.
const LEASE_IDLE: Duration = Duration::from_secs(60);

/// The lease of one (organization, bucket), and the lock that lets one request at a time go
/// to Redis for it: the others wait for that block instead of each asking for their own.
#[derive(Default)]
struct Slot {
    lease: Mutex<Lease>,
    refill: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Slots {
    write: Slot,
    read: Slot,
}

impl Slots {
    fn get(&self, bucket: Bucket) -> &Slot {
        match bucket {
            Bucket::Write => &self.write,
            Bucket::Read => &self.read,
        }
    }
}

/// Metric handles resolved once: a lookup per request by name and labels was measurable.
struct Meters {
    allowed_redis: Counter,
    limited_redis: Counter,
    allowed_local: Counter,
    limited_local: Counter,
    fallback: Counter,
    round_trip: Histogram,
    local: Gauge,
}

impl Meters {
    fn new() -> Self {
        let decision = |decision: &'static str, backend: &'static str| metrics::counter!(metric::RATE_LIMIT_DECISIONS, "decision" => decision, "backend" => backend);
        Self {
            allowed_redis: decision("allowed", "redis"),
            limited_redis: decision("limited", "redis"),
            allowed_local: decision("allowed", "local"),
            limited_local: decision("limited", "local"),
            fallback: metrics::counter!(metric::RATE_LIMIT_FALLBACK),
            round_trip: metrics::histogram!(metric::RATE_LIMIT_CHECK, "backend" => "redis"),
            local: metrics::gauge!(metric::RATE_LIMIT_LOCAL),
        }
    }
}

#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    settings: RateLimitSettings,
    kv: Kv,
    script: redis::Script,
    leases: Mutex<HashMap<String, Arc<Slots>>>,
    local: Mutex<HashMap<(String, Bucket), f64>>,
    meters: Meters,
    epoch: Instant,
    /// When the last decision was made in memory (µs on `epoch`'s clock; 0: never).
    last_fallback_us: AtomicU64,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RateLimiter {
    /// Call once the metrics recorder is installed: the limiter keeps its metric handles.
    pub fn new(settings: RateLimitSettings, kv: Kv) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                kv,
                script: redis::Script::new(gcra::SCRIPT),
                leases: Mutex::new(HashMap::new()),
                local: Mutex::new(HashMap::new()),
                meters: Meters::new(),
                epoch: Instant::now(),
                last_fallback_us: AtomicU64::new(0),
            }),
        }
    }

    pub fn limit_for(&self, org: &OrganizationId) -> Limit {
        self.limit_of(org.as_str())
    }

    fn limit_of(&self, org: &str) -> Limit {
        let settings = &self.inner.settings;
        settings.orgs.get(org).copied().unwrap_or(settings.default)
    }

    /// Spends `cost` from the organization's bucket, or says when it could.
    pub async fn check(&self, org: &OrganizationId, bucket: Bucket, cost: u64) -> Option<Decision> {
        let inner = &self.inner;
        if !inner.settings.enabled {
            return None;
        }
        let limit = self.limit_for(org);
        let period = gcra::period_us(limit.per_second);
        let slots = self.slots(org);
        let slot = slots.get(bucket);
        if let Some(decision) = self.pay_from_lease(slot, cost, period, limit.burst) {
            return Some(decision);
        }
        let asked = self.now();
        let _refill = slot.refill.lock().await;
        // Whoever held the lock may have brought enough for this request too.
        if let Some(decision) = self.pay_from_lease(slot, cost, period, limit.burst) {
            return Some(decision);
        }
        let now = self.now();
        let ask = {
            let mut lease = locked(&slot.lease);
            (!lease.failing(now, self.retry_us(), asked))
                .then(|| lease.ask(cost, now, self.sizing(limit)))
        };
        if let Some(ask) = ask {
            if let Some(step) = self.round_trip(org.as_str(), bucket, limit, ask).await {
                let now = self.now();
                let mut lease = locked(&slot.lease);
                return Some(if lease.granted(&step, cost, now) {
                    inner.meters.allowed_redis.increment(1);
                    Decision {
                        allowed: true,
                        quota: lease.quota(now, period, limit.burst),
                        retry_after_secs: 0,
                    }
                } else {
                    inner.meters.limited_redis.increment(1);
                    Decision {
                        allowed: false,
                        quota: lease.refused_quota(&step, period, limit.burst),
                        retry_after_secs: ((step.retry_us / 1e6).ceil() as u64).max(1),
                    }
                });
            }
            locked(&slot.lease).failed(self.now());
        }
        Some(self.fallback(org, bucket, cost, limit))
    }

    /// Returns leased tokens nobody spent within the lease's time to live, and forgets idle
    /// leases, until `shutdown`; then returns every unspent token.
    pub async fn keep_leases(&self, shutdown: CancellationToken) {
        let ttl = Duration::from_millis(self.inner.settings.lease_ttl_ms.max(1));
        let mut tick = tokio::time::interval(ttl / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let last = tokio::select! {
                _ = shutdown.cancelled() => true,
                _ = tick.tick() => false,
            };
            let ttl_us = if last { 0.0 } else { ttl.as_secs_f64() * 1e6 };
            self.give_back(ttl_us).await;
            self.show_local();
            if last {
                return;
            }
        }
    }

    /// The `local` gauge: 1 while Redis's breaker is open or a decision was made in memory
    /// within the last second. Set here too, not only by requests: an idle gateway must not
    /// keep reporting the state of its last request (a fallback under load, say) for ever.
    fn show_local(&self) {
        let inner = &self.inner;
        let last = inner.last_fallback_us.load(Ordering::Relaxed);
        let recent = last > 0 && self.now() - (last as f64) < LOCAL_SHOWN_FOR_US;
        let local = recent || !inner.kv.available();
        inner.meters.local.set(if local { 1.0 } else { 0.0 });
    }

    async fn give_back(&self, ttl_us: f64) {
        let now = self.now();
        let all: Vec<(String, Arc<Slots>)> = {
            let mut leases = locked(&self.inner.leases);
            let idle = LEASE_IDLE.as_secs_f64() * 1e6;
            leases.retain(|_, s| {
                Arc::strong_count(s) > 1
                    || !(locked(&s.write.lease).idle(now, idle)
                        && locked(&s.read.lease).idle(now, idle))
            });
            leases.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        for (org, slots) in all {
            for bucket in [Bucket::Write, Bucket::Read] {
                let slot = slots.get(bucket);
                // A request refilling this lease is using it: not expired.
                let Ok(_refill) = slot.refill.try_lock() else {
                    continue;
                };
                let unspent = locked(&slot.lease).expire(now, ttl_us);
                if unspent > 0 {
                    let ask = Ask {
                        need: 0,
                        want: 0,
                        refund: unspent,
                    };
                    // If Redis does not take them back, they stay spent: stricter, never looser.
                    let _ = self
                        .round_trip(&org, bucket, self.limit_of(&org), ask)
                        .await;
                }
            }
        }
    }

    fn slots(&self, org: &OrganizationId) -> Arc<Slots> {
        let mut leases = locked(&self.inner.leases);
        if let Some(slots) = leases.get(org.as_str()) {
            return slots.clone();
        }
        leases.entry(org.as_str().to_owned()).or_default().clone()
    }

    fn pay_from_lease(&self, slot: &Slot, cost: u64, period: f64, burst: u64) -> Option<Decision> {
        let mut lease = locked(&slot.lease);
        if !lease.spend(cost) {
            return None;
        }
        self.inner.meters.allowed_redis.increment(1);
        Some(Decision {
            allowed: true,
            quota: lease.quota(self.now(), period, burst),
            retry_after_secs: 0,
        })
    }

    fn sizing(&self, limit: Limit) -> Sizing {
        let settings = &self.inner.settings;
        Sizing {
            horizon_secs: settings.lease_ms as f64 / 1e3,
            max_block: limit.burst / (4 * u64::from(settings.replicas.max(1))),
        }
    }

    /// After a failed round trip, how long requests decide locally before one tries again.
    fn retry_us(&self) -> f64 {
        self.inner.settings.lease_ms.max(1) as f64 * 1e3
    }

    fn now(&self) -> f64 {
        self.inner.epoch.elapsed().as_secs_f64() * 1e6
    }

    /// One GCRA step in Redis; `None` when Redis could not be asked.
    async fn round_trip(&self, org: &str, bucket: Bucket, limit: Limit, ask: Ask) -> Option<Step> {
        let inner = &self.inner;
        let key = format!("logctl:rl:{org}:{}", bucket.tag());
        let period = gcra::period_us(limit.per_second);
        let started = Instant::now();
        let reply: Result<(i64, i64, i64), _> = inner
            .kv
            .run(|mut conn| async move {
                inner
                    .script
                    .key(key)
                    .arg(period)
                    .arg(limit.burst)
                    .arg(ask.need)
                    .arg(ask.want)
                    .arg(ask.refund)
                    .invoke_async(&mut conn)
                    .await
            })
            .await;
        match reply {
            Ok((granted, backlog, retry)) => {
                inner
                    .meters
                    .round_trip
                    .record(started.elapsed().as_secs_f64());
                inner.meters.local.set(0.0);
                Some(Step {
                    allowed: retry == 0,
                    granted: granted.max(0) as u64,
                    backlog_us: backlog as f64,
                    retry_us: retry as f64,
                })
            }
            Err(e) => {
                tracing::debug!(error = %e, "rate limiting locally");
                inner.meters.local.set(1.0);
                None
            }
        }
    }

    /// Decides in memory, on this replica's share of the limit.
    fn fallback(&self, org: &OrganizationId, bucket: Bucket, cost: u64, limit: Limit) -> Decision {
        let inner = &self.inner;
        let share = f64::from(inner.settings.replicas.max(1));
        let burst = ((limit.burst as f64 / share).floor() as u64).max(1);
        let period = gcra::period_us(limit.per_second / share);
        let now = self.now();
        let step = {
            let mut map = locked(&inner.local);
            if map.len() >= LOCAL_SWEEP_AT {
                map.retain(|_, tat| *tat > now);
            }
            let tat = map.entry((org.as_str().to_string(), bucket)).or_insert(now);
            let ask = Ask {
                need: cost,
                want: cost,
                refund: 0,
            };
            let (step, new_tat) = gcra::take(*tat, now, period, burst, ask);
            *tat = new_tat;
            step
        };
        inner.meters.fallback.increment(1);
        inner
            .last_fallback_us
            .store(now.max(1.0) as u64, Ordering::Relaxed);
        inner.meters.local.set(1.0);
        if step.allowed {
            inner.meters.allowed_local.increment(1);
        } else {
            inner.meters.limited_local.increment(1);
        }
        Decision {
            allowed: step.allowed,
            quota: Quota {
                limit: burst,
                remaining: gcra::room(step.backlog_us, period, burst),
                reset_secs: (step.backlog_us / 1e6).ceil() as u64,
            },
            retry_after_secs: ((step.retry_us / 1e6).ceil() as u64).max(u64::from(!step.allowed)),
        }
    }
}
