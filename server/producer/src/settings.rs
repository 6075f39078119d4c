//! The producer's configuration: defaults fit `logctl up`; override with a TOML file given by
//! `--config`/`LOGCTL_CONFIG` or `LOGCTL_PRODUCER_*` env vars (`LOGCTL_PRODUCER_KAFKA__BOOTSTRAP_SERVERS`).

use std::net::SocketAddr;
use std::time::Duration;

use logctl_core::breaker::BreakerSettings;
use logctl_core::kafka::{KafkaSettings, ProducerTuning};
use logctl_core::otlp::OtlpSettings;
use serde::{Deserialize, Serialize};

use crate::spool::SpoolSettings;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub listen: SocketAddr,
    pub kafka: KafkaSettings,
    pub tuning: ProducerTuning,
    /// Largest request body from the gateway (a full batch of large events).
    pub max_body_bytes: usize,
    /// Runtime worker threads (0: one per core; see `logctl_core::runtime` for when fewer).
    pub worker_threads: usize,
    /// How long shutdown may take to flush what Kafka has not yet acknowledged.
    #[serde(deserialize_with = "logctl_contracts::duration::seconds")]
    pub shutdown_timeout_secs: u64,
    /// Share of traces started here (calls without `traceparent`) marked sampled.
    pub trace_sample_ratio: f64,
    /// The consumer group whose lag this service exports (it outlives consumer outages).
    pub lag_group: String,
    /// The breaker around Kafka: open, events are refused at once instead of waiting out
    /// `tuning.message_timeout_ms`.
    pub breaker: BreakerSettings,
    /// Where accepted events wait, fsynced, while Kafka is unreachable.
    pub spool: SpoolSettings,
    pub spool_enabled: bool,
    /// Export sampled spans over OTLP (off unless an endpoint is set).
    pub otlp: OtlpSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            kafka: KafkaSettings::default(),
            tuning: ProducerTuning::default(),
            max_body_bytes: 64 * 1024 * 1024,
            worker_threads: 0,
            shutdown_timeout_secs: 10,
            trace_sample_ratio: 0.1,
            lag_group: logctl_contracts::topics::CONSUMER_GROUP.into(),
            breaker: BreakerSettings::default(),
            spool: SpoolSettings::default(),
            spool_enabled: true,
            otlp: OtlpSettings::default(),
        }
    }
}

impl Settings {
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, logctl_core::config::ConfigError> {
        logctl_core::config::load("LOGCTL_PRODUCER_", file)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }
}
