//! The Redis link shared by the gateway's rate limiter and the query service's cache.
//!
//! Redis is an accelerator here, never a dependency a request may fail on: every call has a
//! short deadline and goes through the `redis` circuit breaker, so while Redis is down callers
//! learn it at once (and fall back) instead of each waiting out a timeout.

use std::future::Future;
use std::sync::{Arc, RwLock};
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
    link: Arc<Link>,
    breaker: Breaker,
    timeout: Duration,
}

/// The connection now, and how to make the next one. A command that times out leaves its
/// slot in the multiplexed connection's queue of answers awaited: if Redis never got it (a
/// black-holed link, a hung server), every later answer would be matched to an earlier,
/// abandoned command and the link would never recover, though Redis is back. So a timeout
/// retires the connection; the manager only replaces one that errors.
struct Link {
    client: redis::Client,
    config: ConnectionManagerConfig,
    /// The connection and its generation, so a burst of timeouts retires it once.
    current: RwLock<(u64, ConnectionManager)>,
}

impl Link {
    fn current(&self) -> (u64, ConnectionManager) {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Puts a fresh (lazy) connection in place of generation `retired`, if it is still the
    /// current one.
    fn retire(&self, retired: u64) {
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.0 != retired {
            return;
        }
        match ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone()) {
            Ok(fresh) => *current = (retired + 1, fresh),
            Err(e) => tracing::warn!(error = %e, "cannot make a new Redis connection"),
        }
    }
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
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?;
        Ok(Self {
            link: Arc::new(Link {
                client,
                config,
                current: RwLock::new((0, conn)),
            }),
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
        let (generation, conn) = self.link.current();
        let outcome = match tokio::time::timeout(self.timeout, f(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(KvError::Redis(e)),
            Err(_) => Err(KvError::TimedOut(self.timeout)),
        };
        let timed_out = match &outcome {
            Err(KvError::TimedOut(_)) => true,
            Err(KvError::Redis(e)) => e.is_timeout(),
            _ => false,
        };
        if timed_out {
            self.link.retire(generation);
        }
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

    /// While the breaker is not closed, a `PING` every `every` as its trial call, until
    /// `shutdown`. A breaker only moves on calls: without this, one that opened under the last
    /// burst of traffic would stay open (and its alert firing, and the rate limit local) on an
    /// idle service until the next request, long after Redis was fine again.
    pub async fn keep_trying(
        &self,
        every: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if self.breaker.state() != crate::breaker::State::Closed {
                // Refused while the breaker waits out its open time: nothing is sent then.
                let _ = self.ping().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Whole commands (RESP arrays of bulk strings) at the start of `buf`, and the bytes they take.
    fn commands(buf: &[u8]) -> (usize, usize) {
        let (mut count, mut at) = (0, 0);
        let line = |from: usize| -> Option<(i64, usize)> {
            let end = buf[from..].windows(2).position(|w| w == b"\r\n")? + from;
            let n = std::str::from_utf8(&buf[from + 1..end])
                .ok()?
                .parse()
                .ok()?;
            Some((n, end + 2))
        };
        'outer: while at < buf.len() {
            let Some((args, mut next)) = line(at) else {
                break;
            };
            for _ in 0..args {
                let Some((len, data)) = line(next) else {
                    break 'outer;
                };
                next = data + len as usize + 2;
                if next > buf.len() {
                    break 'outer;
                }
            }
            count += 1;
            at = next;
        }
        (count, at)
    }

    /// A server that answers each command with `+OK`, until `silent` is set: from then on
    /// the connections open at that moment swallow what they get (a black-holed link, a hung
    /// server), while new ones are answered.
    async fn server(silent: Arc<std::sync::atomic::AtomicBool>) -> std::net::SocketAddr {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                // Connections made once the fault is on are the "new" ones and answer.
                let opened_silent = silent.load(Ordering::SeqCst);
                let silent = silent.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while let Ok(n) = conn.read(&mut chunk).await {
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let (count, used) = commands(&buf);
                        buf.drain(..used);
                        if silent.load(Ordering::SeqCst) && !opened_silent {
                            continue;
                        }
                        for _ in 0..count {
                            if conn.write_all(b"+OK\r\n").await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_connection_that_stopped_answering_is_replaced() {
        let silent = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let addr = server(silent.clone()).await;
        let kv = Kv::new(&RedisSettings {
            url: format!("redis://{addr}"),
            timeout_ms: 100,
            breaker: BreakerSettings {
                consecutive_failures: 1_000,
                minimum_calls: 1_000,
                ..BreakerSettings::default()
            },
        })
        .expect("client");
        kv.ping().await.expect("answered while the link is fine");
        silent.store(true, std::sync::atomic::Ordering::SeqCst);
        let lost = kv.ping().await;
        let timed_out = match &lost {
            Err(KvError::TimedOut(_)) => true,
            Err(KvError::Redis(e)) => e.is_timeout(),
            _ => false,
        };
        assert!(timed_out, "{lost:?}");
        // Kept, the connection would swallow every later command too.
        kv.ping()
            .await
            .expect("answered on a new connection after the timeout");
    }

    #[tokio::test]
    async fn an_open_breaker_closes_with_no_traffic_once_redis_answers() {
        use crate::breaker::State;
        let silent = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let addr = server(silent.clone()).await;
        let kv = Kv::new(&RedisSettings {
            url: format!("redis://{addr}"),
            timeout_ms: 100,
            breaker: BreakerSettings {
                consecutive_failures: 1,
                open_ms: 50,
                half_open_calls: 1,
                ..BreakerSettings::default()
            },
        })
        .expect("client");
        kv.ping().await.expect("answered");
        silent.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(kv.ping().await.is_err());
        assert_eq!(kv.breaker.state(), State::Open);
        silent.store(false, std::sync::atomic::Ordering::SeqCst);
        // Nothing else calls Redis from here on.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            kv.breaker.state(),
            State::Open,
            "a breaker moves only on calls"
        );
        let shutdown = tokio_util::sync::CancellationToken::new();
        let trying = tokio::spawn({
            let (kv, shutdown) = (kv.clone(), shutdown.clone());
            async move { kv.keep_trying(Duration::from_millis(20), shutdown).await }
        });
        let mut closed = false;
        for _ in 0..100 {
            if kv.breaker.state() == State::Closed {
                closed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.cancel();
        trying.await.expect("stops on shutdown");
        assert!(closed, "the trial PING closed it");
    }

    #[test]
    fn commands_are_counted_whole() {
        let ping = b"*1\r\n$4\r\nPING\r\n";
        assert_eq!(commands(ping), (1, ping.len()));
        let two = [&ping[..], &ping[..]].concat();
        assert_eq!(commands(&two), (2, two.len()));
        assert_eq!(commands(&ping[..9]), (0, 0));
    }
}
