//! The consumer's configuration: defaults fit `logctl up`; override with a TOML file given by
//! `LOGCTL_CONFIG` or `LOGCTL_CONSUMER_*` env vars (`LOGCTL_CONSUMER_DATABASE_URL`,
//! `LOGCTL_CONSUMER_BATCH__MAX_ROWS`).

use std::net::SocketAddr;
use std::time::Duration;

use logctl_contracts::schema::partitions::RetentionSettings;
use logctl_core::breaker::BreakerSettings;
use logctl_core::config::Secret;
use logctl_core::kafka::{ConsumerTuning, KafkaSettings};
use logctl_core::kv::RedisSettings;
use logctl_core::EventLimits;
use serde::{Deserialize, Serialize};

use crate::query::cache::CacheSettings;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub listen: SocketAddr,
    pub kafka: KafkaSettings,
    pub tuning: ConsumerTuning,
    pub database_url: Secret,
    pub database_pool_size: u32,
    pub batch: BatchSettings,
    pub retry: RetrySettings,
    /// The breaker around PostgreSQL: open, partitions are paused until a trial insert works.
    pub breaker: BreakerSettings,
    /// The rules a stored event must keep (a record that breaks them is dead-lettered).
    pub limits: EventLimits,
    /// Export sampled spans over OTLP (off unless an endpoint is set).
    pub otlp: logctl_core::otlp::OtlpSettings,
    /// Apply pending migrations at start (they take an advisory lock, so several instances may).
    pub migrate_on_start: bool,
    /// Runtime worker threads (0: one per core; see `logctl_core::runtime` for when fewer).
    pub worker_threads: usize,
    /// How long shutdown may take to finish and commit the current batch.
    #[serde(deserialize_with = "logctl_contracts::duration::seconds")]
    pub shutdown_timeout_secs: u64,
    /// The read API's cache (and where ingest invalidates it).
    pub redis: RedisSettings,
    pub cache: CacheSettings,
    /// Time partitions and retention (`LOGCTL_CONSUMER_STORAGE__RETENTION_SECS=7d`).
    pub storage: StorageSettings,
}

/// The events table's partitions: their width, how long they are kept, how often a consumer
/// checks (one consumer of several works at a time).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageSettings {
    #[serde(flatten)]
    pub retention: RetentionSettings,
    #[serde(deserialize_with = "logctl_contracts::duration::seconds")]
    pub maintain_every_secs: u64,
    /// Bytes the events table may take (0: no budget), exported for the over-budget alert.
    pub budget_bytes: u64,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            retention: RetentionSettings::default(),
            maintain_every_secs: 60,
            budget_bytes: 0,
        }
    }
}

/// How rows are grouped into one batch stored at once: whichever limit is reached first closes
/// it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BatchSettings {
    pub max_rows: usize,
    /// Counted from the batch's first record, so a quiet topic still stores within this delay.
    #[serde(deserialize_with = "logctl_contracts::duration::millis")]
    pub max_wait_ms: u64,
    /// A large batch is stored as this many parts at once, each on its own connection
    /// (at most `database_pool_size - 1`, leaving one to reads).
    pub parts: usize,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            max_rows: 5_000,
            max_wait_ms: 50,
            parts: 2,
        }
    }
}

/// Retries of database outages, and when a record is given up on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RetrySettings {
    /// First retry after about this long; each next one waits twice as long...
    #[serde(deserialize_with = "logctl_contracts::duration::millis")]
    pub base_ms: u64,
    /// ...up to this.
    #[serde(deserialize_with = "logctl_contracts::duration::millis")]
    pub cap_ms: u64,
    /// Tries of a row PostgreSQL refuses before it goes to the dead-letter topic.
    pub dead_letter_attempts: u32,
    /// Larger records go to the dead-letter topic unread.
    pub max_record_bytes: usize,
    /// With lag on its own partitions yet no record for this long (and not paused), the
    /// consumer recreates its Kafka client: a stalled client must not stall the pipeline.
    #[serde(deserialize_with = "logctl_contracts::duration::seconds")]
    pub stall_timeout_secs: u64,
    /// Deadline of one insert: a hung database (paused, partitioned) counts as a failure
    /// instead of stalling the consumer. The insert may still commit later; the retry is then
    /// a no-op thanks to the primary key.
    #[serde(deserialize_with = "logctl_contracts::duration::millis")]
    pub insert_timeout_ms: u64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            base_ms: 1_000,
            cap_ms: 30_000,
            dead_letter_attempts: 3,
            max_record_bytes: 1024 * 1024,
            insert_timeout_ms: 30_000,
            stall_timeout_secs: 20,
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
            retry: RetrySettings::default(),
            breaker: BreakerSettings {
                consecutive_failures: 3,
                slow_call_ms: 10_000,
                ..BreakerSettings::default()
            },
            limits: EventLimits::default(),
            otlp: Default::default(),
            migrate_on_start: true,
            worker_threads: 0,
            shutdown_timeout_secs: 15,
            redis: RedisSettings::default(),
            cache: CacheSettings::default(),
            storage: StorageSettings::default(),
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
