//! Kafka → PostgreSQL, at least once from Kafka and exactly once in the table.
//!
//! Records are gathered into a batch (up to `max_rows`, or `max_wait_ms` after its first
//! record), inserted in one statement, and only then are their offsets stored for commit.
//! A crash before the store replays the batch; the primary key turns the replay into a no-op.
//! A database error never skips a batch: it is retried with capped, jittered backoff.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use logctl_core::LogEvent;

use crate::settings::BatchSettings;
use crate::storage::{NewRow, Storage};

/// Logs group membership changes, which explain most "why did my lag jump" questions.
pub struct GroupContext;

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        tracing::info!(rebalance = ?describe(rebalance), "partitions being rebalanced");
    }

    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        metrics::counter!("logctl_consumer_rebalances_total").increment(1);
        tracing::info!(rebalance = ?describe(rebalance), "partitions rebalanced");
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::debug!(error = %e, "offset commit did not go through");
        }
    }
}

fn describe(rebalance: &Rebalance<'_>) -> String {
    match rebalance {
        Rebalance::Assign(tpl) => format!("assign {:?}", partitions(tpl)),
        Rebalance::Revoke(tpl) => format!("revoke {:?}", partitions(tpl)),
        Rebalance::Error(e) => format!("error {e}"),
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

pub type EventConsumer = StreamConsumer<GroupContext>;

/// One record of a batch, decoded, or why it could not be.
enum Decoded {
    Row(NewRow),
    Poison {
        partition: i32,
        offset: i64,
        reason: String,
    },
}

impl Decoded {
    fn position(&self) -> (i32, i64) {
        match self {
            Decoded::Row(r) => (r.partition, r.offset),
            Decoded::Poison {
                partition, offset, ..
            } => (*partition, *offset),
        }
    }
}

pub struct Ingest {
    pub consumer: Arc<EventConsumer>,
    pub storage: Storage,
    pub batch: BatchSettings,
    pub topic: String,
}

impl Ingest {
    /// Runs until `shutdown`: finishes the batch in hand, commits, and returns.
    pub async fn run(self, shutdown: CancellationToken) {
        // Offsets stored so far (next offset to read, per partition), for the final commit.
        let mut stored: BTreeMap<i32, i64> = BTreeMap::new();
        while let Some(batch) = self.next_batch(&shutdown).await {
            if self.store(&batch, &shutdown).await {
                self.store_offsets(&batch, &mut stored);
            } else {
                break;
            }
        }
        self.final_commit(&stored);
    }

    /// Waits for a first record, then gathers more until the batch is full or its time is up.
    /// `None` once shutdown is requested and nothing is in hand.
    async fn next_batch(&self, shutdown: &CancellationToken) -> Option<Vec<Decoded>> {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return None,
            m = self.consumer.recv() => m,
        };
        let mut batch = Vec::with_capacity(self.batch.max_rows.min(1024));
        match first {
            Ok(m) => batch.push(decode(&m)),
            Err(e) => {
                tracing::warn!(error = %e, "Kafka consumer error");
                tokio::time::sleep(Duration::from_millis(200)).await;
                return Some(batch);
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.batch.max_wait_ms);
        while batch.len() < self.batch.max_rows {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(m)) => batch.push(decode(&m)),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "Kafka consumer error");
                    break;
                }
                Err(_) => break,
            }
        }
        Some(batch)
    }

    /// Inserts the batch's good rows, retrying database errors until they succeed or shutdown
    /// is requested (then `false`: nothing is stored, so the records will be read again).
    async fn store(&self, batch: &[Decoded], shutdown: &CancellationToken) -> bool {
        let rows: Vec<NewRow> = batch
            .iter()
            .filter_map(|d| match d {
                Decoded::Row(r) => Some(r.clone()),
                Decoded::Poison {
                    partition,
                    offset,
                    reason,
                } => {
                    metrics::counter!("logctl_consumer_poison_records_total").increment(1);
                    tracing::warn!(partition, offset, %reason, "skipping undecodable record");
                    None
                }
            })
            .collect();
        if rows.is_empty() {
            return true;
        }
        let mut attempt: u32 = 0;
        loop {
            let started = Instant::now();
            match self.storage.insert_batch(&rows).await {
                Ok(inserted) => {
                    record_stored(&rows, inserted, started.elapsed());
                    return true;
                }
                Err(e) => {
                    attempt += 1;
                    metrics::counter!("logctl_consumer_insert_retries_total").increment(1);
                    let wait = backoff(attempt);
                    tracing::warn!(error = %e, attempt, ?wait, rows = rows.len(), "insert failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// Marks the batch's records as done: the next auto-commit (or the final one) sends them.
    fn store_offsets(&self, batch: &[Decoded], stored: &mut BTreeMap<i32, i64>) {
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for (partition, offset) in batch.iter().map(Decoded::position) {
            let e = next.entry(partition).or_insert(offset + 1);
            *e = (*e).max(offset + 1);
        }
        for (partition, offset) in next {
            let mut tpl = TopicPartitionList::new();
            if tpl
                .add_partition_offset(&self.topic, partition, Offset::Offset(offset))
                .is_err()
            {
                continue;
            }
            match self.consumer.store_offsets(&tpl) {
                Ok(()) => {
                    stored.insert(partition, offset);
                }
                // The partition was revoked meanwhile: its new owner re-reads these records,
                // and the primary key makes that harmless.
                Err(e) => tracing::debug!(partition, error = %e, "offset not stored"),
            }
        }
    }

    fn final_commit(&self, stored: &BTreeMap<i32, i64>) {
        let assigned: Vec<i32> = self
            .consumer
            .assignment()
            .map(|a| partitions(&a))
            .unwrap_or_default();
        let mut tpl = TopicPartitionList::new();
        for (partition, offset) in stored.iter().filter(|(p, _)| assigned.contains(p)) {
            let _ = tpl.add_partition_offset(&self.topic, *partition, Offset::Offset(*offset));
        }
        if tpl.count() > 0 {
            match self.consumer.commit(&tpl, CommitMode::Sync) {
                Ok(()) => tracing::info!(partitions = tpl.count(), "final offsets committed"),
                Err(e) => {
                    tracing::warn!(error = %e, "final commit failed; records will be re-read")
                }
            }
        }
    }
}

fn decode(m: &BorrowedMessage<'_>) -> Decoded {
    let (partition, offset) = (m.partition(), m.offset());
    let event = match m.payload() {
        None => Err("record has no payload".to_owned()),
        Some(bytes) => serde_json::from_slice::<LogEvent>(bytes).map_err(|e| e.to_string()),
    };
    match event {
        Ok(event) => Decoded::Row(NewRow {
            event,
            trace_id: trace_id(m),
            partition,
            offset,
        }),
        Err(reason) => Decoded::Poison {
            partition,
            offset,
            reason,
        },
    }
}

/// The W3C trace id (second field of `traceparent`) when the record carries one.
fn trace_id(m: &BorrowedMessage<'_>) -> Option<String> {
    let headers = m.headers()?;
    headers
        .iter()
        .find(|h| h.key == "traceparent")
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|tp| tp.split('-').nth(1))
        .map(str::to_owned)
}

fn record_stored(rows: &[NewRow], inserted: u64, took: Duration) {
    metrics::counter!("logctl_consumer_events_stored_total").increment(inserted);
    metrics::counter!("logctl_consumer_duplicates_skipped_total")
        .increment(rows.len() as u64 - inserted);
    metrics::histogram!("logctl_consumer_batch_size").record(rows.len() as f64);
    metrics::histogram!("logctl_consumer_insert_duration_seconds").record(took.as_secs_f64());
    let now = Utc::now();
    let e2e = metrics::histogram!("logctl_consumer_end_to_end_latency_seconds");
    for r in rows {
        let ms = (now - r.event.received_at).num_milliseconds().max(0);
        e2e.record(ms as f64 / 1000.0);
    }
}

/// Exponential backoff with jitter: a random wait in [c/2, c] where c = min(cap, base * 2^attempt),
/// so instances that failed together do not retry together, yet never retry at once.
pub fn backoff(attempt: u32) -> Duration {
    const BASE_MS: u64 = 500;
    const CAP_MS: u64 = 10_000;
    let ceiling = BASE_MS.saturating_mul(1u64 << attempt.min(16)).min(CAP_MS);
    Duration::from_millis(rand::random_range(ceiling / 2..=ceiling))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..30 {
            let d = backoff(attempt).as_millis() as u64;
            let ceiling = (500u64 << attempt.min(16)).min(10_000);
            assert!(
                d <= ceiling && d >= ceiling / 2,
                "attempt {attempt}: {d} ms"
            );
        }
        assert!(backoff(1) <= Duration::from_millis(1_000));
    }
}
