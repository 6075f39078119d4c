//! The consumer's configuration: defaults fit `logctl up`; override with a TOML file given by
//! `LOGCTL_CONFIG` or `LOGCTL_CONSUMER_*` env vars (`LOGCTL_CONSUMER_DATABASE_URL`,
//! `LOGCTL_CONSUMER_BATCH__MAX_ROWS`).

use std::net::SocketAddr;
use std::time::Duration;

use logctl_core::config::Secret;
use logctl_core::kafka::{ConsumerTuning, KafkaSettings};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub listen: SocketAddr,
    pub kafka: KafkaSettings,
    pub tuning: ConsumerTuning,
    pub database_url: Secret,
    pub database_pool_size: u32,
    pub batch: BatchSettings,
    /// Apply pending migrations at start (they take an advisory lock, so several instances may).
    pub migrate_on_start: bool,
    /// How long shutdown may take to finish and commit the current batch.
    pub shutdown_timeout_secs: u64,
}

/// How rows are grouped into one INSERT: whichever limit is reached first closes the batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BatchSettings {
    pub max_rows: usize,
    /// Counted from the batch's first record, so a quiet topic still stores within this delay.
    pub max_wait_ms: u64,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            max_rows: 5_000,
            max_wait_ms: 50,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8082)),
            kafka: KafkaSettings::default(),
            tuning: ConsumerTuning::default(),
            database_url: Secret::new("postgres://loguser@127.0.0.1:5432/logprocessor"),
            database_pool_size: 4,
            batch: BatchSettings::default(),
            migrate_on_start: true,
            shutdown_timeout_secs: 15,
        }
    }
}

impl Settings {
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, logctl_core::config::ConfigError> {
        logctl_core::config::load("LOGCTL_CONSUMER_", file)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }
}
