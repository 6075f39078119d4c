//! Consumer-group lag computed from Kafka itself: each partition's log-end offset minus the
//! group's committed offset, as Burrow and `kafka-consumer-groups` compute it.
//!
//! It reads committed offsets without joining the group, so any service can run it. Both the
//! producer and the consumer export it: when every consumer is down, the producer still shows
//! the lag growing (query it as `max by (partition) (logctl_consumer_lag)`).

use std::time::Duration;

use logctl_contracts::metric;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::kafka::KafkaSettings;

/// One partition's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLag {
    pub partition: i32,
    pub log_end: i64,
    /// `None` when the group has committed nothing for this partition yet.
    pub committed: Option<i64>,
    pub lag: i64,
}

pub struct LagReader {
    client: BaseConsumer,
    topic: String,
}

impl LagReader {
    pub fn new(kafka: &KafkaSettings, group: &str) -> Result<Self, KafkaError> {
        let client: BaseConsumer = kafka
            .client_config()
            .set("group.id", group)
            .set("client.id", "logctl-lag-reader")
            .set("enable.auto.commit", "false")
            .create()?;
        Ok(Self {
            client,
            topic: kafka.topic.clone(),
        })
    }

    /// Reads every partition's lag (blocking: call from a blocking thread).
    pub fn read(&self, timeout: Duration) -> Result<Vec<PartitionLag>, KafkaError> {
        let metadata = self
            .client
            .fetch_metadata(Some(&self.topic), Timeout::After(timeout))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition(&self.topic, *p);
        }
        let committed = self
            .client
            .committed_offsets(tpl, Timeout::After(timeout))?;
        partitions
            .into_iter()
            .map(|partition| {
                let (low, high) = self.client.fetch_watermarks(
                    &self.topic,
                    partition,
                    Timeout::After(timeout),
                )?;
                let committed = committed
                    .find_partition(&self.topic, partition)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    });
                let lag = (high - committed.unwrap_or(low)).max(0);
                Ok(PartitionLag {
                    partition,
                    log_end: high,
                    committed,
                    lag,
                })
            })
            .collect()
    }
}

/// How often the services read lag from Kafka: often enough for an alert or a stall check,
/// cheap enough (one offset fetch and a watermark per partition) to run in every instance.
pub const EXPORT_EVERY: Duration = Duration::from_secs(2);

/// The latest lag per partition, for a consumer to judge whether it is stalled.
pub type LagBoard = std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<i32, i64>>>;

/// Exports `logctl_consumer_lag{partition}` every `every` until `shutdown`, and keeps `board`
/// (if given) up to date.
pub async fn export(
    reader: LagReader,
    every: Duration,
    shutdown: CancellationToken,
    board: Option<LagBoard>,
) {
    let reader = std::sync::Arc::new(reader);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let r = reader.clone();
        match tokio::task::spawn_blocking(move || r.read(Duration::from_secs(3))).await {
            Ok(Ok(lags)) => {
                if let Some(board) = &board {
                    let mut b = board
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    b.clear();
                    b.extend(lags.iter().map(|l| (l.partition, l.lag)));
                }
                for l in lags {
                    metrics::gauge!(metric::CONSUMER_LAG, "partition" => l.partition.to_string())
                        .set(l.lag as f64);
                }
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "cannot read consumer lag"),
            Err(e) => tracing::debug!(error = %e, "lag reader task failed"),
        }
    }
}
