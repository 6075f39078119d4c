//! Cache-aside in Redis for the read API.
//!
//! Keys are namespaced by organization. Pages and stats change when new events arrive, so their
//! keys carry the organization's *version*, a counter the ingest loop increments after each
//! batch it stores for that organization: new events make the old entries unreachable at once
//! (they then expire by TTL), with no scan or delete. A single event never changes once stored,
//! so its key has no version.
//!
//! Ordering keeps it correct: a reader takes the version *before* reading PostgreSQL, and the
//! writer bumps it *after* committing, so an entry can only be stored under a version that is
//! older than or as new as the data in it. If a bump cannot reach Redis it is retried with the
//! next batch; until then entries are at most `ttl_secs` stale. Redis down: reads go straight to
//! PostgreSQL, still correct.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

use logctl_contracts::metric;
use logctl_core::kv::Kv;
use logctl_core::OrganizationId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheSettings {
    pub enabled: bool,
    /// Upper bound on an entry's life, and so on staleness if a version bump was lost.
    #[serde(deserialize_with = "logctl_contracts::duration::seconds")]
    pub ttl_secs: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            ttl_secs: 60,
        }
    }
}

/// What is cached; the label of the hit/miss metrics.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Event,
    Page,
    Stats,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Event => "event",
            Kind::Page => "page",
            Kind::Stats => "stats",
        }
    }

    fn versioned(self) -> bool {
        !matches!(self, Kind::Event)
    }
}

/// Orgs whose version bump did not reach Redis are remembered up to this many.
const MAX_PENDING_BUMPS: usize = 10_000;

#[derive(Clone)]
pub struct Cache {
    kv: Kv,
    settings: CacheSettings,
    pending_bumps: Arc<Mutex<BTreeSet<String>>>,
}

fn version_key(org: &OrganizationId) -> String {
    format!("logctl:{}:version", org.as_str())
}

impl Cache {
    pub fn new(kv: Kv, settings: CacheSettings) -> Self {
        Self {
            kv,
            settings,
            pending_bumps: Arc::default(),
        }
    }

    /// The cached value under `key` for the organization, or `load`'s, stored for next time.
    /// Only `Ok` values are cached; a Redis failure is a miss, never an error.
    pub async fn get_or_load<T, E, F, Fut>(
        &self,
        kind: Kind,
        org: &OrganizationId,
        key: &str,
        load: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if !self.settings.enabled {
            return load().await;
        }
        let full_key = match self.key(kind, org, key).await {
            Some(k) => k,
            None => {
                count(kind, "error");
                return load().await;
            }
        };
        let cached: Result<Option<String>, _> = {
            let k = full_key.clone();
            self.kv
                .run(|mut c| async move { redis::cmd("GET").arg(k).query_async(&mut c).await })
                .await
        };
        match cached {
            Ok(Some(text)) => {
                if let Ok(v) = serde_json::from_str(&text) {
                    count(kind, "hit");
                    return Ok(v);
                }
                count(kind, "miss");
            }
            Ok(None) => count(kind, "miss"),
            Err(_) => {
                count(kind, "error");
                return load().await;
            }
        }
        let value = load().await?;
        if let Ok(text) = serde_json::to_string(&value) {
            let ttl = self.settings.ttl_secs.max(1);
            let _ = self
                .kv
                .run(|mut c| async move {
                    redis::cmd("SET")
                        .arg(full_key)
                        .arg(text)
                        .arg("EX")
                        .arg(ttl)
                        .query_async::<()>(&mut c)
                        .await
                })
                .await;
        }
        Ok(value)
    }

    async fn key(&self, kind: Kind, org: &OrganizationId, key: &str) -> Option<String> {
        let prefix = format!("logctl:{}:{}", org.as_str(), kind.as_str());
        if !kind.versioned() {
            return Some(format!("{prefix}:{key}"));
        }
        let vkey = version_key(org);
        let version: Option<u64> = self
            .kv
            .run(|mut c| async move { redis::cmd("GET").arg(vkey).query_async(&mut c).await })
            .await
            .ok()?;
        Some(format!("{prefix}:v{}:{key}", version.unwrap_or(0)))
    }

    /// Makes the organizations' cached pages and stats unreachable: called after their new
    /// events are committed. One pipelined round trip for the whole batch.
    pub async fn invalidate<'a>(&self, orgs: impl IntoIterator<Item = &'a OrganizationId>) {
        if !self.settings.enabled {
            return;
        }
        let mut todo: BTreeSet<String> = std::mem::take(
            &mut *self
                .pending_bumps
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        todo.extend(orgs.into_iter().map(|o| o.as_str().to_string()));
        if todo.is_empty() {
            return;
        }
        let keys: Vec<String> = todo.iter().map(|o| format!("logctl:{o}:version")).collect();
        let outcome = self
            .kv
            .run(|mut c| async move {
                let mut pipe = redis::pipe();
                for k in &keys {
                    pipe.cmd("INCR").arg(k).ignore();
                }
                pipe.query_async::<()>(&mut c).await
            })
            .await;
        if outcome.is_err() {
            metrics::counter!(metric::CACHE_INVALIDATIONS_DEFERRED).increment(1);
            let mut pending = self
                .pending_bumps
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for org in todo {
                if pending.len() >= MAX_PENDING_BUMPS {
                    break;
                }
                pending.insert(org);
            }
        }
    }
}

fn count(kind: Kind, result: &'static str) {
    metrics::counter!(metric::CACHE_REQUESTS, "cache" => kind.as_str(), "result" => result)
        .increment(1);
}
/// The write path tells the cache which organizations got rows through this narrow interface;
/// it never sees the cache itself.
impl crate::ingest::sink::Invalidate for Cache {
    async fn invalidate(&self, orgs: &BTreeSet<OrganizationId>) {
        Cache::invalidate(self, orgs).await;
    }
}
