//! The Redis link shared by the gateway's rate limiter and the query service's cache.
//!
//! Redis is an accelerator here, never a dependency a request may fail on: every call has a
//! short deadline and goes through the `redis` circuit breaker, so while Redis is down callers
//! learn it at once (and fall back) instead of each waiting out a timeout.

use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};

use crate::breaker::{Breaker, BreakerSettings};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisSettings {
    pub url: String,
    /// Deadline of one command (or pipeline), connection included.
    #[serde(deserialize_with = "logctl_contracts::duration::millis")]
    pub timeout_ms: u64,
    pub breaker: BreakerSettings,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            // Redis on a busy machine (every component on two cores, thousands of calls a
            // second) answers in well under a millisecond most of the time and in tens of
            // milliseconds now and then: the deadline and the breaker ride that out and open
            // only on a fault that lasts. A stopped Redis refuses connections at once, so the
            // breaker still opens within a few calls' time; a silent one within the deadline.
            timeout_ms: 500,
            breaker: BreakerSettings {
                window: 20_000,
                window_ms: 2_000,
                minimum_calls: 20,
                failure_rate: 0.5,
                // Low traffic never fills `minimum_calls` in 2 s: there a run of failures opens it.
                consecutive_failures: 50,
                slow_call_ms: 250,
                slow_call_rate: 0.8,
                open_ms: 1_000,
                half_open_calls: 1,
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("redis is unavailable (breaker open)")]
    BreakerOpen,
    #[error("redis did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// A cheap-to-clone handle: one multiplexed connection, re-established in the background.
#[derive(Clone)]
pub struct Kv {
    conn: ConnectionManager,
    breaker: Breaker,
    timeout: Duration,
}

impl Kv {
    /// Does not connect: the first command does, so a service starts while Redis is down.
    pub fn new(settings: &RedisSettings) -> Result<Self, KvError> {
        let client = redis::Client::open(settings.url.as_str())?;
        let timeout = Duration::from_millis(settings.timeout_ms.max(1));
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            conn,
            breaker: Breaker::new("redis", settings.breaker.clone()),
            timeout,
        })
    }

    /// Runs one Redis exchange behind the breaker and the deadline.
    pub async fn run<T, F, Fut>(&self, f: F) -> Result<T, KvError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let permit = self.breaker.acquire().map_err(|_| KvError::BreakerOpen)?;
        let outcome = match tokio::time::timeout(self.timeout, f(self.conn.clone())).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(KvError::Redis(e)),
            Err(_) => Err(KvError::TimedOut(self.timeout)),
        };
        // A script or type error is Redis answering: it is up.
        let up = match &outcome {
            Ok(_) => true,
            Err(KvError::Redis(e)) => {
                !(e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout())
            }
            Err(_) => false,
        };
        if up {
            permit.success();
        } else {
            permit.failure();
        }
        outcome
    }

    /// Is Redis in use right now (breaker not open)?
    pub fn available(&self) -> bool {
        self.breaker.state() != crate::breaker::State::Open
    }

    /// A round trip, for readiness.
    pub async fn ping(&self) -> Result<(), KvError> {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<()>(&mut c).await })
            .await
    }
}
