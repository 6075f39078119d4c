//! The gateway's configuration: defaults fit `logctl up`; override with a TOML file given by
//! `LOGCTL_CONFIG` or `LOGCTL_GATEWAY_*` env vars (`LOGCTL_GATEWAY_MAX_BATCH=500`).

use std::net::SocketAddr;
use std::time::Duration;

use logctl_core::auth::AuthSettings;
use logctl_core::breaker::BreakerSettings;
use logctl_core::kv::RedisSettings;
use logctl_core::otlp::OtlpSettings;
use logctl_core::EventLimits;
use serde::{Deserialize, Serialize};

use crate::coalesce::CoalesceSettings;
use crate::rate_limit::RateLimitSettings;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub listen: SocketAddr,
    /// The producer service, which publishes to Kafka: one base URL, or several instances'
    /// separated by commas (calls go round them and fail over).
    pub producer_url: String,
    /// The consumer service, which serves stored events.
    pub query_url: String,
    pub limits: EventLimits,
    /// Most events one `POST /api/logs/batch` may carry.
    pub max_batch: usize,
    /// Largest request body; above it the answer is 413 before the body is parsed.
    pub max_body_bytes: usize,
    /// API requests worked on at once; beyond it a fast 503 with `Retry-After` (no queue).
    /// Enough for a stall of about 200 ms at the knee's rate: at 1024, about 60 ms of single
    /// events at 17,500/s, a hiccup the answers recover from within their p99 was refused
    /// instead (the step that set the gateway's knee in `logctl bench` failed on 0.9% shed with
    /// p99 at 44.9 ms). One bench run each: the gateway's knee was 0.77 x the producer-direct
    /// knee of the same run at 1024 (16,875 / 21,875 events/s), 0.94 x at 4096 (19,375 /
    /// 20,625). The byte budget below still bounds memory.
    pub max_in_flight: usize,
    /// Request body bytes (as declared by `Content-Length`) worked on at once; beyond it a
    /// fast 503. Parsed and published, events take several times their JSON size, so this is
    /// what bounds the gateway's memory under overload: 8 MiB held it near 60 MiB RSS at twice
    /// the batched target rate, where 32 MiB let it reach 450 MiB. It still passes 100,000
    /// events/s (a single request larger than the budget is admitted alone).
    pub max_in_flight_bytes: usize,
    /// Deadline for one call to the query service.
    #[serde(deserialize_with = "logctl_contracts::duration::millis")]
    pub upstream_timeout_ms: u64,
    /// Deadline for one publish call to one producer instance. Above the producer's own ack
    /// patience (2 s, after which it spools and answers), so a call that takes longer means
    /// the instance or the link to it is not answering: its breaker counts a failure and the
    /// call moves on to the next instance.
    #[serde(deserialize_with = "logctl_contracts::duration::millis")]
    pub publish_attempt_timeout_ms: u64,
    /// The longest a client waits for a publish answer, queueing and failover included: past
    /// it, a 503 with `Retry-After`. Events of such a request may still be stored; their ids
    /// make the client's retry harmless.
    #[serde(deserialize_with = "logctl_contracts::duration::millis")]
    pub publish_deadline_ms: u64,
    /// How requests waiting for the producer share calls to it.
    pub publish_coalescing: CoalesceSettings,
    /// Share of new traces marked sampled (for an exporter); ids are propagated regardless.
    pub trace_sample_ratio: f64,
    /// The breakers around the producer and the query service.
    pub breaker: BreakerSettings,
    /// Export sampled spans over OTLP (off unless an endpoint is set).
    pub otlp: OtlpSettings,
    /// Runtime worker threads (0: one per core; see `logctl_core::runtime` for when fewer).
    pub worker_threads: usize,
    /// How long a stopping gateway lets in-flight requests finish.
    #[serde(deserialize_with = "logctl_contracts::duration::seconds")]
    pub shutdown_timeout_secs: u64,
    /// Bearer-token checks; the HS256 secret must be set (`logctl up` generates one).
    pub auth: AuthSettings,
    /// Per-organization limits, kept in Redis and shared by every replica.
    pub rate_limit: RateLimitSettings,
    pub redis: RedisSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            producer_url: "http://127.0.0.1:8081".into(),
            query_url: "http://127.0.0.1:8082".into(),
            limits: EventLimits::default(),
            max_batch: 1_000,
            max_body_bytes: 16 * 1024 * 1024,
            max_in_flight: 4096,
            max_in_flight_bytes: 8 * 1024 * 1024,
            upstream_timeout_ms: 10_000,
            publish_attempt_timeout_ms: 4_000,
            publish_deadline_ms: 6_000,
            publish_coalescing: CoalesceSettings::default(),
            trace_sample_ratio: 0.1,
            breaker: BreakerSettings::default(),
            worker_threads: 0,
            shutdown_timeout_secs: 15,
            otlp: OtlpSettings::default(),
            auth: AuthSettings::default(),
            rate_limit: RateLimitSettings::default(),
            redis: RedisSettings::default(),
        }
    }
}

impl Settings {
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, logctl_core::config::ConfigError> {
        logctl_core::config::load("LOGCTL_GATEWAY_", file)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }

    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_timeout_ms)
    }

    pub fn publish_attempt_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_attempt_timeout_ms)
    }

    pub fn publish_deadline(&self) -> Duration {
        Duration::from_millis(self.publish_deadline_ms)
    }
}
