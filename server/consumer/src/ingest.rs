//! Kafka → PostgreSQL, at least once from Kafka and exactly once in the table.
//!
//! Records are gathered into a batch (up to `max_rows`, or `max_wait_ms` after its first
//! record), inserted in one statement, and only then are their offsets stored for commit.
//! A crash before the store replays the batch; the primary key turns the replay into a no-op.
//!
//! Failures are of two kinds, handled apart:
//! - **The database is down or failing** (any error but a refused row): the batch is retried
//!   with backoff (1 s, 2 s, 4 s ... capped) behind the PostgreSQL circuit breaker; once it
//!   opens, the partitions are paused (the poll loop goes on, so the group keeps us) until a
//!   trial insert succeeds. Nothing is skipped and nothing is dead-lettered for an outage.
//! - **A record can never be stored** (undecodable, invalid, too large, or refused by
//!   PostgreSQL on every attempt, found by splitting the batch): it goes to the dead-letter
//!   topic and the pipeline moves on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use logctl_contracts::metric;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use logctl_core::breaker::{Breaker, State};
use logctl_core::lag::LagBoard;
use logctl_core::otlp::{Exporter, Span, SpanKind};
use logctl_core::{EventLimits, LogEvent, TraceContext};

use crate::dead_letter::{DeadLetter, DeadLetters, Kind};
use crate::query::cache::Cache;
use crate::settings::{BatchSettings, RetrySettings, Settings};
use crate::storage::{NewRow, Storage, StorageError};

/// Logs group membership changes, which explain most "why did my lag jump" questions.
pub struct GroupContext;

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        tracing::info!(rebalance = ?describe(rebalance), "partitions being rebalanced");
    }

    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        metrics::counter!(metric::CONSUMER_REBALANCES).increment(1);
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

/// One record of a batch, decoded, or why it never can be.
#[derive(Debug, Clone)]
enum Decoded {
    Row(NewRow),
    Dead(DeadLetter),
}

impl Decoded {
    fn position(&self) -> (i32, i64) {
        match self {
            Decoded::Row(r) => (r.partition, r.offset),
            Decoded::Dead(d) => (d.partition, d.offset),
        }
    }
}

/// Shutdown was requested before the batch in hand was stored: nothing of it is committed.
struct Interrupted;

/// Why [`Ingest::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Shutdown,
    /// Lag on our partitions but no record for `stall_timeout_secs`: recreate the client.
    Stalled,
}

/// Is a consumer that has received nothing for `quiet` stalled? Only if it is not paused on
/// purpose and Kafka holds records for its partitions that it has not read.
pub fn is_stalled(paused: bool, quiet: Duration, stall_after: Duration, own_lag: i64) -> bool {
    !paused && quiet >= stall_after && own_lag > 0
}

/// Is a quiet consumer left without partitions while the group has lag? After a broker
/// restart a client can fail to rejoin and sit with an empty assignment: its own lag is then
/// zero, so [`is_stalled`] cannot see it. Confirmed against the group's size before acting (an
/// instance beyond the partition count is idle on purpose).
pub fn is_orphaned(
    paused: bool,
    quiet: Duration,
    stall_after: Duration,
    assigned: usize,
    group_lag: i64,
) -> bool {
    !paused && quiet >= stall_after && assigned == 0 && group_lag > 0
}

/// Is an orphaned consumer (see [`is_orphaned`]) to be recreated? When the group has fewer
/// members than partitions, yes. When the group's size cannot be read at all, the client may
/// be wedged (seen after a broker restart on a loaded machine: its coordinator requests sit in
/// the out-queue for good), so past three stall periods, yes too: a new client joining is
/// harmless, and an idle spare instance only rejoins.
pub fn orphan_confirmed(
    fewer_members: Option<bool>,
    quiet: Duration,
    stall_after: Duration,
) -> bool {
    fewer_members.unwrap_or(quiet >= stall_after * 3)
}

/// Lag as this instance sees it: on its own partitions, and over the whole group.
struct LagView {
    own: i64,
    assigned: usize,
    group: i64,
    partitions: usize,
}

enum Next {
    Batch(Vec<Decoded>),
    Shutdown,
    Stalled,
}

pub struct Ingest {
    consumer: Arc<EventConsumer>,
    storage: Storage,
    batch: BatchSettings,
    retry: RetrySettings,
    limits: EventLimits,
    topic: String,
    breaker: Breaker,
    dead_letters: DeadLetters,
    exporter: Option<Exporter>,
    /// Records read while a batch was waiting on the database; they start the next batch.
    carry: Vec<Decoded>,
    paused: bool,
    lag: LagBoard,
    last_record: Instant,
    /// Told which organizations got new rows, so their cached pages and stats go stale.
    cache: Cache,
    group_id: String,
}

impl Ingest {
    pub fn new(
        consumer: Arc<EventConsumer>,
        storage: Storage,
        settings: &Settings,
        dead_letters: DeadLetters,
        exporter: Option<Exporter>,
        lag: LagBoard,
        cache: Cache,
    ) -> Self {
        Self {
            consumer,
            storage,
            batch: settings.batch.clone(),
            retry: settings.retry.clone(),
            limits: settings.limits,
            topic: settings.kafka.topic.clone(),
            breaker: Breaker::new("postgres", settings.breaker.clone()),
            dead_letters,
            exporter,
            carry: Vec::new(),
            paused: false,
            lag,
            last_record: Instant::now(),
            cache,
            group_id: settings.tuning.group_id.clone(),
        }
    }

    /// Runs until `shutdown` (finishing the batch in hand and committing) or until its Kafka
    /// client looks stalled.
    pub async fn run(mut self, shutdown: CancellationToken) -> Ended {
        // Offsets stored so far (next offset to read, per partition), for the final commit.
        let mut stored: BTreeMap<i32, i64> = BTreeMap::new();
        let ended = loop {
            let batch = match self.next_batch(&shutdown).await {
                Next::Batch(b) => b,
                Next::Shutdown => break Ended::Shutdown,
                Next::Stalled => break Ended::Stalled,
            };
            if self.store(&batch, &shutdown).await.is_err() {
                break Ended::Shutdown;
            }
            self.store_offsets(&batch, &mut stored);
        };
        self.final_commit(&stored);
        ended
    }

    /// What the stall watchdog looks at, from one read of the assignment and of the lag board
    /// (as last read from Kafka).
    fn lag_view(&self) -> LagView {
        let assigned = self
            .consumer
            .assignment()
            .map(|a| partitions(&a))
            .unwrap_or_default();
        let board = self
            .lag
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        LagView {
            own: assigned.iter().filter_map(|p| board.get(p)).sum(),
            assigned: assigned.len(),
            group: board.values().sum(),
            partitions: board.len(),
        }
    }

    /// Asks Kafka whether the group has fewer members than partitions; `None` when it cannot
    /// tell (the group's coordinator does not answer this client).
    async fn group_has_fewer_members_than(&self, partitions: usize) -> Option<bool> {
        let consumer = self.consumer.clone();
        let group = self.group_id.clone();
        tokio::task::spawn_blocking(move || {
            consumer
                .fetch_group_list(Some(&group), Duration::from_secs(2))
                .ok()
                .map(|list| {
                    let members = list.groups().first().map_or(0, |g| g.members().len());
                    members < partitions
                })
        })
        .await
        .ok()
        .flatten()
    }

    /// Takes carried records first, then waits for more until the batch is full or its time is
    /// up; stops waiting on shutdown, or when the client looks stalled.
    async fn next_batch(&mut self, shutdown: &CancellationToken) -> Next {
        let take = self.carry.len().min(self.batch.max_rows);
        let mut batch: Vec<Decoded> = self.carry.drain(..take).collect();
        if batch.is_empty() {
            // Re-poll at least every second: a missed wake-up from the client's queue must not
            // stall the loop (the queue only signals when it turns non-empty).
            let first = loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return Next::Shutdown,
                    m = tokio::time::timeout(Duration::from_secs(1), self.consumer.recv()) => {
                        if let Ok(m) = m {
                            break m;
                        }
                    }
                }
                let stall_after = Duration::from_secs(self.retry.stall_timeout_secs);
                let quiet = self.last_record.elapsed();
                let lag = self.lag_view();
                if is_stalled(self.paused, quiet, stall_after, lag.own) {
                    return Next::Stalled;
                }
                if is_orphaned(self.paused, quiet, stall_after, lag.assigned, lag.group) {
                    let fewer = self.group_has_fewer_members_than(lag.partitions).await;
                    if orphan_confirmed(fewer, quiet, stall_after) {
                        tracing::warn!(
                            group_lag = lag.group,
                            "no partitions assigned while the group has lag"
                        );
                        return Next::Stalled;
                    }
                }
            };
            match first {
                Ok(m) => {
                    self.last_record = Instant::now();
                    batch.push(self.decode(&m));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Kafka consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    return Next::Batch(batch);
                }
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.batch.max_wait_ms);
        while batch.len() < self.batch.max_rows {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(m)) => {
                    self.last_record = Instant::now();
                    batch.push(self.decode(&m));
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "Kafka consumer error");
                    break;
                }
                Err(_) => break,
            }
        }
        Next::Batch(batch)
    }

    /// Dead-letters what can never be stored, inserts the rest; returns once all of the batch
    /// is handled (or shutdown interrupts the wait for the database).
    async fn store(
        &mut self,
        batch: &[Decoded],
        shutdown: &CancellationToken,
    ) -> Result<(), Interrupted> {
        let dead: Vec<DeadLetter> = batch
            .iter()
            .filter_map(|d| match d {
                Decoded::Dead(l) => Some(l.clone()),
                Decoded::Row(_) => None,
            })
            .collect();
        self.dead_letter(&dead, shutdown).await?;
        let rows: Vec<NewRow> = batch
            .iter()
            .filter_map(|d| match d {
                Decoded::Row(r) => Some(r.clone()),
                Decoded::Dead(_) => None,
            })
            .collect();
        if !rows.is_empty() {
            let orgs: std::collections::BTreeSet<_> = rows
                .iter()
                .map(|r| r.event.organization_id.clone())
                .collect();
            self.insert_isolating(rows, shutdown).await?;
            self.cache.invalidate(&orgs).await;
        }
        Ok(())
    }

    /// Inserts `rows`; when PostgreSQL refuses the data itself, splits the batch to find the
    /// refused rows, retries each alone up to the configured attempts, then dead-letters it.
    async fn insert_isolating(
        &mut self,
        rows: Vec<NewRow>,
        shutdown: &CancellationToken,
    ) -> Result<(), Interrupted> {
        let mut pending = vec![rows];
        while let Some(rows) = pending.pop() {
            let Err(refusal) = self.insert(&rows, shutdown).await? else {
                continue;
            };
            if rows.len() > 1 {
                let mut left = rows;
                let right = left.split_off(left.len() / 2);
                pending.push(right);
                pending.push(left);
                continue;
            }
            let mut attempts = 1;
            let mut last = refusal;
            while attempts < self.retry.dead_letter_attempts {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                match self.insert(&rows, shutdown).await? {
                    Ok(()) => break,
                    Err(e) => last = e,
                }
            }
            if attempts >= self.retry.dead_letter_attempts {
                let row = &rows[0];
                let letter = DeadLetter {
                    key: Some(row.event.organization_id.as_str().as_bytes().to_vec()),
                    payload: serde_json::to_vec(&row.event).ok(),
                    traceparent: row.traceparent.clone(),
                    kind: Kind::Rejected,
                    error: last.to_string(),
                    partition: row.partition,
                    offset: row.offset,
                    attempts,
                };
                self.dead_letter(&[letter], shutdown).await?;
            }
        }
        Ok(())
    }

    /// One insert, retried through outages until it succeeds, PostgreSQL refuses the rows
    /// (`Ok(Err(_))`), or shutdown interrupts.
    async fn insert(
        &mut self,
        rows: &[NewRow],
        shutdown: &CancellationToken,
    ) -> Result<Result<(), StorageError>, Interrupted> {
        let mut attempt: u32 = 0;
        loop {
            let permit = match self.breaker.acquire() {
                Ok(p) => p,
                Err(open) => {
                    self.pause();
                    self.idle(open.retry_after, shutdown).await?;
                    continue;
                }
            };
            let started = Instant::now();
            let started_at = std::time::SystemTime::now();
            let deadline = Duration::from_millis(self.retry.insert_timeout_ms);
            let inserted = tokio::time::timeout(deadline, self.storage.insert_batch(rows))
                .await
                .unwrap_or_else(|_| Err(StorageError::TimedOut(deadline)));
            match inserted {
                Ok(inserted) => {
                    permit.success();
                    self.resume();
                    record_stored(rows, inserted, started.elapsed());
                    self.export_spans(rows, started_at);
                    return Ok(Ok(()));
                }
                Err(e) if e.is_row_rejection() => {
                    permit.success();
                    return Ok(Err(e));
                }
                Err(e) => {
                    permit.failure();
                    if self.breaker.state() == State::Open {
                        self.pause();
                    }
                    attempt += 1;
                    metrics::counter!(metric::CONSUMER_INSERT_RETRIES).increment(1);
                    let wait = self.retry.backoff(attempt);
                    tracing::warn!(error = %e, attempt, ?wait, rows = rows.len(), "insert failed; retrying");
                    self.idle(wait, shutdown).await?;
                }
            }
        }
    }

    /// Publishes dead letters, retrying while Kafka refuses them (their offsets wait).
    async fn dead_letter(
        &mut self,
        letters: &[DeadLetter],
        shutdown: &CancellationToken,
    ) -> Result<(), Interrupted> {
        if letters.is_empty() {
            return Ok(());
        }
        let mut attempt = 0;
        loop {
            match self.dead_letters.send(letters).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "cannot publish dead letters; retrying");
                    let wait = self.retry.backoff(attempt);
                    self.idle(wait, shutdown).await?;
                }
            }
        }
    }

    /// Waits `how_long` while still polling Kafka (so the group keeps this member and
    /// rebalances are served); records that arrive meanwhile are kept for the next batch.
    async fn idle(
        &mut self,
        how_long: Duration,
        shutdown: &CancellationToken,
    ) -> Result<(), Interrupted> {
        let deadline = tokio::time::Instant::now() + how_long;
        loop {
            if self.carry.len() >= self.batch.max_rows * 2 {
                // Bounded: stop fetching until the database takes rows again.
                self.pause();
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Err(Interrupted),
                _ = tokio::time::sleep_until(deadline) => return Ok(()),
                m = self.consumer.recv() => match m {
                    Ok(m) => {
                        self.last_record = Instant::now();
                        let d = self.decode(&m);
                        self.carry.push(d);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "Kafka consumer error while waiting");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    }

    /// One span per stored event of a sampled trace: the last hop of the client's request.
    fn export_spans(&self, rows: &[NewRow], started: std::time::SystemTime) {
        let Some(exporter) = &self.exporter else {
            return;
        };
        let end = std::time::SystemTime::now();
        for row in rows {
            let Some(parent) = row.traceparent.as_deref().and_then(TraceContext::parse) else {
                continue;
            };
            exporter.record(Span {
                context: parent.child(),
                name: "store log event".into(),
                kind: SpanKind::Consumer,
                start: started,
                end,
                attributes: vec![
                    ("messaging.destination.name", self.topic.clone()),
                    (
                        "messaging.destination.partition.id",
                        row.partition.to_string(),
                    ),
                    ("messaging.kafka.offset", row.offset.to_string()),
                    ("log.event.id", row.event.id.to_string()),
                ],
                error: false,
            });
        }
    }

    fn pause(&mut self) {
        match self.consumer.assignment() {
            Ok(assigned) if assigned.count() > 0 => {
                if let Err(e) = self.consumer.pause(&assigned) {
                    tracing::warn!(error = %e, "cannot pause partitions");
                    return;
                }
                if !self.paused {
                    tracing::warn!(partitions = ?partitions(&assigned), "database unavailable: partitions paused");
                    metrics::gauge!(metric::CONSUMER_PAUSED).set(1.0);
                }
                self.paused = true;
            }
            _ => {}
        }
    }

    fn resume(&mut self) {
        if !self.paused {
            return;
        }
        if let Ok(assigned) = self.consumer.assignment() {
            if let Err(e) = self.consumer.resume(&assigned) {
                tracing::warn!(error = %e, "cannot resume partitions");
                return;
            }
        }
        self.paused = false;
        metrics::gauge!(metric::CONSUMER_PAUSED).set(0.0);
        tracing::info!("database back: partitions resumed");
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

    fn decode(&self, m: &BorrowedMessage<'_>) -> Decoded {
        let (partition, offset) = (m.partition(), m.offset());
        let traceparent = header(m, logctl_core::trace::HEADER);
        let dead = |kind: Kind, error: String| {
            Decoded::Dead(DeadLetter {
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec),
                traceparent: traceparent.clone(),
                kind,
                error,
                partition,
                offset,
                attempts: 1,
            })
        };
        let Some(bytes) = m.payload() else {
            return dead(Kind::Undecodable, "record has no payload".into());
        };
        if bytes.len() > self.retry.max_record_bytes {
            return dead(
                Kind::TooLarge,
                format!(
                    "{} bytes, above the limit of {}",
                    bytes.len(),
                    self.retry.max_record_bytes
                ),
            );
        }
        let event = match serde_json::from_slice::<LogEvent>(bytes) {
            Ok(e) => e,
            Err(e) => return dead(Kind::Undecodable, e.to_string()),
        };
        if let Err(e) = event.check(&self.limits) {
            return dead(Kind::Invalid, e.to_string());
        }
        Decoded::Row(NewRow {
            trace_id: traceparent
                .as_deref()
                .and_then(|tp| tp.split('-').nth(1))
                .map(str::to_owned),
            traceparent,
            event,
            partition,
            offset,
        })
    }
}

fn header(m: &BorrowedMessage<'_>, name: &str) -> Option<String> {
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_owned)
}

fn record_stored(rows: &[NewRow], inserted: u64, took: Duration) {
    metrics::counter!(metric::CONSUMER_EVENTS_STORED).increment(inserted);
    metrics::counter!(metric::CONSUMER_DUPLICATES_SKIPPED).increment(rows.len() as u64 - inserted);
    metrics::histogram!(metric::CONSUMER_BATCH_SIZE).record(rows.len() as f64);
    metrics::histogram!(metric::CONSUMER_INSERT_DURATION).record(took.as_secs_f64());
    let now = Utc::now();
    let e2e = metrics::histogram!(metric::CONSUMER_END_TO_END_LATENCY);
    for r in rows {
        let ms = (now - r.event.received_at).num_milliseconds().max(0);
        e2e.record(ms as f64 / 1000.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalled_only_when_quiet_with_own_lag_and_not_paused() {
        let after = Duration::from_secs(20);
        assert!(is_stalled(false, Duration::from_secs(21), after, 5));
        assert!(
            !is_stalled(false, Duration::from_secs(21), after, 0),
            "nothing to read"
        );
        assert!(
            !is_stalled(true, Duration::from_secs(21), after, 5),
            "paused on purpose"
        );
        assert!(
            !is_stalled(false, Duration::from_secs(19), after, 5),
            "not quiet long enough"
        );
    }

    #[test]
    fn an_orphan_is_recreated_when_the_group_is_short_or_cannot_be_asked_for_long() {
        let after = Duration::from_secs(20);
        let quiet = Duration::from_secs(25);
        assert!(orphan_confirmed(Some(true), quiet, after));
        assert!(
            !orphan_confirmed(Some(false), Duration::from_secs(600), after),
            "a spare instance"
        );
        assert!(
            !orphan_confirmed(None, quiet, after),
            "not yet: the coordinator may be busy"
        );
        assert!(orphan_confirmed(None, Duration::from_secs(60), after));
    }

    #[test]
    fn orphaned_only_without_partitions_while_the_group_lags() {
        let after = Duration::from_secs(20);
        let quiet = Duration::from_secs(25);
        assert!(is_orphaned(false, quiet, after, 0, 7));
        assert!(!is_orphaned(false, quiet, after, 2, 7), "has partitions");
        assert!(
            !is_orphaned(false, quiet, after, 0, 0),
            "nothing to read anywhere"
        );
        assert!(!is_orphaned(true, quiet, after, 0, 7), "paused on purpose");
        assert!(
            !is_orphaned(false, Duration::from_secs(5), after, 0, 7),
            "not quiet long enough"
        );
    }
}
