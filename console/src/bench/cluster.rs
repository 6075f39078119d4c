//! The cluster stage of `logctl bench --brokers N`: the same ingest searches against a stack of
//! N brokers (RF 3, min ISR 2) made for the bench (`scratch`) after the one-broker one, Kafka's
//! `ProducerPerformance` against that cluster as its baseline, and the drain with more and more
//! consumers in the group. The cluster has one gateway and one producer, as the one-broker
//! stack has, so the ratio of the two runs is what replication costs.

use super::drain::{self, Drained};
use super::scratch::ScratchStack;
use super::Search;

/// The group sizes the drain is measured with (the topic has 6 partitions).
pub const DRAIN_CONSUMERS: [u16; 4] = [1, 2, 3, 6];

pub struct ClusterResults {
    pub brokers: u16,
    pub replication_factor: u16,
    pub min_insync_replicas: u16,
    pub searches: Vec<Search>,
    /// Kafka's cores (all brokers) at each warm-up step.
    pub warmup: Vec<f64>,
    pub kafka_perf: Option<f64>,
    pub drains: Vec<Drained>,
}

/// The drains, one per group size, each of `events` pre-filled events.
pub async fn drains(cluster: &ScratchStack, events: u64) -> anyhow::Result<Vec<Drained>> {
    let largest = DRAIN_CONSUMERS.iter().copied().max().unwrap_or(1);
    let config = cluster.consumers(largest)?;
    let pool = super::pool(&cluster.layout, &config).await?;
    let mut out = Vec::new();
    for n in DRAIN_CONSUMERS {
        super::settle(&config).await;
        eprintln!("bench: cluster: drain of {events} pre-filled events with {n} consumer(s)");
        out.push(drain::measure(&cluster.layout, &config, &pool, n, events).await?);
    }
    Ok(out)
}
