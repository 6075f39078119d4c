//! The Kafka side of ingestion: records gathered into batches, offsets stored once a batch is
//! handled, and the waits the sink asks for spent polling (see [`Hold`]).
//!
//! A batch closes at `max_rows` records or `max_wait_ms` after its first record. Records read
//! while the sink waits are carried into the next batch, up to twice a batch, after which the
//! partitions are paused until the database takes rows again: memory stays bounded through any
//! outage while the group keeps this member.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use logctl_contracts::metric;
use logctl_core::lag::LagBoard;

use super::decode::{Decoded, Decoder, Record};
use super::group::{partitions, EventConsumer};
use super::watchdog::{is_orphaned, is_stalled, orphan_confirmed};
use super::{Hold, Interrupted};
use crate::settings::BatchSettings;

/// The offset to read next in each partition once `batch` is handled: one past its highest.
pub fn next_offsets(batch: &[Decoded]) -> BTreeMap<i32, i64> {
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for (partition, offset) in batch.iter().map(Decoded::position) {
        let e = next.entry(partition).or_insert(offset + 1);
        *e = (*e).max(offset + 1);
    }
    next
}

/// What the source needs of Kafka: the group consumer in service, a channel in unit tests.
pub trait Feed: Send + Sync {
    /// The next record of an assigned partition, decoded.
    fn recv(&self) -> impl Future<Output = Result<Decoded, KafkaError>> + Send;
    /// Partitions assigned to this member now.
    fn assigned(&self) -> Vec<i32>;
    /// Stops fetching every assigned partition; returns them (none: nothing was assigned).
    fn pause(&self) -> Result<Vec<i32>, KafkaError>;
    fn resume(&self) -> Result<(), KafkaError>;
    /// Marks `partition` as read up to `next` (exclusive), for the next commit.
    fn store_offset(&self, partition: i32, next: i64) -> Result<(), KafkaError>;
    /// Commits these offsets now and waits for the answer.
    fn commit(&self, next: &BTreeMap<i32, i64>) -> Result<(), KafkaError>;
    /// Whether the group has fewer members than `partitions`; `None` when it cannot tell.
    fn group_has_fewer_members_than(
        &self,
        partitions: usize,
    ) -> impl Future<Output = Option<bool>> + Send;
}

/// The events topic through the group consumer.
pub struct KafkaFeed {
    pub consumer: Arc<EventConsumer>,
    pub topic: String,
    pub group_id: String,
    pub decoder: Decoder,
}

impl Feed for KafkaFeed {
    async fn recv(&self) -> Result<Decoded, KafkaError> {
        let m = self.consumer.recv().await?;
        Ok(self.decoder.decode(Record {
            key: m.key(),
            payload: m.payload(),
            traceparent: header(&m, logctl_core::trace::HEADER),
            partition: m.partition(),
            offset: m.offset(),
        }))
    }

    fn assigned(&self) -> Vec<i32> {
        self.consumer
            .assignment()
            .map(|a| partitions(&a))
            .unwrap_or_default()
    }

    fn pause(&self) -> Result<Vec<i32>, KafkaError> {
        let assigned = self.consumer.assignment()?;
        if assigned.count() > 0 {
            self.consumer.pause(&assigned)?;
        }
        Ok(partitions(&assigned))
    }

    fn resume(&self) -> Result<(), KafkaError> {
        self.consumer.resume(&self.consumer.assignment()?)
    }

    fn store_offset(&self, partition: i32, next: i64) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition, Offset::Offset(next))?;
        self.consumer.store_offsets(&tpl)
    }

    fn commit(&self, next: &BTreeMap<i32, i64>) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for (partition, offset) in next {
            tpl.add_partition_offset(&self.topic, *partition, Offset::Offset(*offset))?;
        }
        self.consumer.commit(&tpl, CommitMode::Sync)
    }

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
}

fn header<'a>(m: &'a BorrowedMessage<'_>, name: &str) -> Option<&'a str> {
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// What [`BatchSource::next_batch`] came back with.
pub enum Next {
    Batch(Vec<Decoded>),
    Shutdown,
    /// Lag to read but nothing read for the stall timeout: the client is to be recreated.
    Stalled,
}

/// Lag as this instance sees it: on its own partitions, and over the whole group.
struct LagView {
    own: i64,
    assigned: usize,
    group: i64,
    partitions: usize,
}

pub struct BatchSource<F> {
    feed: F,
    batch: BatchSettings,
    stall_after: Duration,
    /// Lag per partition as last read from Kafka, for the stall watchdog.
    lag: LagBoard,
    /// Records read while a batch was waiting on the database; they start the next batch.
    carry: Vec<Decoded>,
    paused: bool,
    last_record: Instant,
    /// Next offset to read per partition, as stored so far, for the final commit.
    stored: BTreeMap<i32, i64>,
}

impl<F: Feed> BatchSource<F> {
    pub fn new(feed: F, batch: BatchSettings, stall_after: Duration, lag: LagBoard) -> Self {
        Self {
            feed,
            batch,
            stall_after,
            lag,
            carry: Vec::new(),
            paused: false,
            last_record: Instant::now(),
            stored: BTreeMap::new(),
        }
    }

    /// Takes carried records first, then waits for more until the batch is full or its time is
    /// up; stops waiting on shutdown, or when the client looks stalled.
    pub async fn next_batch(&mut self, shutdown: &CancellationToken) -> Next {
        let take = self.carry.len().min(self.batch.max_rows);
        let mut batch: Vec<Decoded> = self.carry.drain(..take).collect();
        if batch.is_empty() {
            // Re-poll at least every second: a missed wake-up from the client's queue must not
            // stall the loop (the queue only signals when it turns non-empty).
            let first = loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return Next::Shutdown,
                    m = tokio::time::timeout(Duration::from_secs(1), self.feed.recv()) => {
                        if let Ok(m) = m {
                            break m;
                        }
                    }
                }
                if self.looks_stalled().await {
                    return Next::Stalled;
                }
            };
            match first {
                Ok(d) => {
                    self.last_record = Instant::now();
                    batch.push(d);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Kafka consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    return Next::Batch(batch);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_millis(self.batch.max_wait_ms);
        while batch.len() < self.batch.max_rows {
            match tokio::time::timeout_at(deadline, self.feed.recv()).await {
                Ok(Ok(d)) => {
                    self.last_record = Instant::now();
                    batch.push(d);
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

    /// A record read while the database is busy goes to the next batch; an error waits a
    /// little before the next read.
    async fn carry_one(&mut self, received: Result<Decoded, KafkaError>) {
        match received {
            Ok(d) => {
                self.last_record = Instant::now();
                self.carry.push(d);
            }
            Err(e) => {
                tracing::debug!(error = %e, "Kafka consumer error while the database works");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    async fn looks_stalled(&self) -> bool {
        let quiet = self.last_record.elapsed();
        let lag = self.lag_view();
        if is_stalled(self.paused, quiet, self.stall_after, lag.own) {
            return true;
        }
        if is_orphaned(
            self.paused,
            quiet,
            self.stall_after,
            lag.assigned,
            lag.group,
        ) {
            let fewer = self.feed.group_has_fewer_members_than(lag.partitions).await;
            if orphan_confirmed(fewer, quiet, self.stall_after) {
                tracing::warn!(
                    group_lag = lag.group,
                    "no partitions assigned while the group has lag"
                );
                return true;
            }
        }
        false
    }

    /// From one read of the assignment and of the lag board.
    fn lag_view(&self) -> LagView {
        let assigned = self.feed.assigned();
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

    /// Marks a handled batch's records as read (its [`next_offsets`]): the next auto-commit
    /// (or the final one) sends them.
    pub fn done(&mut self, next: BTreeMap<i32, i64>) {
        for (partition, offset) in next {
            match self.feed.store_offset(partition, offset) {
                Ok(()) => {
                    self.stored.insert(partition, offset);
                }
                // The partition was revoked meanwhile: its new owner re-reads these records,
                // and the primary key makes that harmless.
                Err(e) => tracing::debug!(partition, error = %e, "offset not stored"),
            }
        }
    }

    /// Commits what was stored for the partitions still ours, before the client goes.
    pub fn finish(&self) {
        let assigned = self.feed.assigned();
        let ours: BTreeMap<i32, i64> = self
            .stored
            .iter()
            .filter(|(p, _)| assigned.contains(p))
            .map(|(p, o)| (*p, *o))
            .collect();
        if ours.is_empty() {
            return;
        }
        match self.feed.commit(&ours) {
            Ok(()) => tracing::info!(partitions = ours.len(), "final offsets committed"),
            Err(e) => tracing::warn!(error = %e, "final commit failed; records will be re-read"),
        }
    }
}

impl<F: Feed> Hold for BatchSource<F> {
    /// Polls on while waiting, so the group keeps this member and rebalances are served;
    /// records that arrive meanwhile are kept for the next batch.
    async fn hold(
        &mut self,
        how_long: Duration,
        shutdown: &CancellationToken,
    ) -> Result<(), Interrupted> {
        let deadline = Instant::now() + how_long;
        loop {
            if self.carry.len() >= self.batch.max_rows * 2 {
                // Bounded: stop fetching until the database takes rows again.
                self.pause();
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Err(Interrupted),
                _ = tokio::time::sleep_until(deadline) => return Ok(()),
                m = self.feed.recv() => self.carry_one(m).await,
            }
        }
    }

    /// Up to one batch, never pausing: decoding the next batch overlaps the insert of this
    /// one (the drain had PostgreSQL and the decoding take turns). Dropping it loses nothing:
    /// each record goes to the carry as it arrives.
    async fn read_ahead(&mut self) {
        while self.carry.len() < self.batch.max_rows {
            let received = self.feed.recv().await;
            self.carry_one(received).await;
            // It shares a task with the insert: a batch decoded in one poll held back the
            // insert's I/O for as long (the database sat idle a quarter of the time).
            if self.carry.len().is_multiple_of(32) {
                tokio::task::yield_now().await;
            }
        }
        std::future::pending().await
    }

    fn pause(&mut self) {
        match self.feed.pause() {
            Ok(paused) if !paused.is_empty() => {
                if !self.paused {
                    tracing::warn!(partitions = ?paused, "database unavailable: partitions paused");
                    metrics::gauge!(metric::CONSUMER_PAUSED).set(1.0);
                }
                self.paused = true;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot pause partitions"),
        }
    }

    fn resume(&mut self) {
        if !self.paused {
            return;
        }
        if let Err(e) = self.feed.resume() {
            tracing::warn!(error = %e, "cannot resume partitions");
            return;
        }
        self.paused = false;
        metrics::gauge!(metric::CONSUMER_PAUSED).set(0.0);
        tracing::info!("database back: partitions resumed");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    use tokio::sync::mpsc;

    use super::*;
    use crate::dead_letter::{DeadLetter, Kind};

    /// Records from a channel; an empty channel waits, as a quiet topic does.
    struct ChannelFeed {
        records: tokio::sync::Mutex<mpsc::UnboundedReceiver<Decoded>>,
        assigned: Vec<i32>,
        paused: AtomicBool,
        stored: Mutex<BTreeMap<i32, i64>>,
        committed: Mutex<Option<BTreeMap<i32, i64>>>,
    }

    impl Feed for Arc<ChannelFeed> {
        async fn recv(&self) -> Result<Decoded, KafkaError> {
            match self.records.lock().await.recv().await {
                Some(d) => Ok(d),
                None => std::future::pending().await,
            }
        }
        fn assigned(&self) -> Vec<i32> {
            self.assigned.clone()
        }
        fn pause(&self) -> Result<Vec<i32>, KafkaError> {
            self.paused.store(true, Ordering::SeqCst);
            Ok(self.assigned.clone())
        }
        fn resume(&self) -> Result<(), KafkaError> {
            self.paused.store(false, Ordering::SeqCst);
            Ok(())
        }
        fn store_offset(&self, partition: i32, next: i64) -> Result<(), KafkaError> {
            self.stored.lock().expect("lock").insert(partition, next);
            Ok(())
        }
        fn commit(&self, next: &BTreeMap<i32, i64>) -> Result<(), KafkaError> {
            *self.committed.lock().expect("lock") = Some(next.clone());
            Ok(())
        }
        async fn group_has_fewer_members_than(&self, _: usize) -> Option<bool> {
            Some(false)
        }
    }

    fn record(partition: i32, offset: i64) -> Decoded {
        Decoded::Dead(DeadLetter {
            key: None,
            payload: None,
            traceparent: None,
            kind: Kind::Undecodable,
            error: String::new(),
            partition,
            offset,
            attempts: 1,
        })
    }

    fn source(
        max_rows: usize,
        assigned: Vec<i32>,
    ) -> (
        BatchSource<Arc<ChannelFeed>>,
        Arc<ChannelFeed>,
        mpsc::UnboundedSender<Decoded>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let feed = Arc::new(ChannelFeed {
            records: tokio::sync::Mutex::new(rx),
            assigned,
            paused: AtomicBool::new(false),
            stored: Mutex::new(BTreeMap::new()),
            committed: Mutex::new(None),
        });
        let batch = BatchSettings {
            max_rows,
            max_wait_ms: 50,
            ..BatchSettings::default()
        };
        let source = BatchSource::new(
            feed.clone(),
            batch,
            Duration::from_secs(20),
            LagBoard::default(),
        );
        (source, feed, tx)
    }

    fn positions(next: Next) -> Vec<(i32, i64)> {
        match next {
            Next::Batch(b) => b.iter().map(Decoded::position).collect(),
            Next::Shutdown => panic!("shutdown"),
            Next::Stalled => panic!("stalled"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_closes_when_full_or_when_its_wait_is_up() {
        let (mut source, _, tx) = source(3, vec![0]);
        let none = CancellationToken::new();
        for offset in 0..5 {
            tx.send(record(0, offset)).expect("send");
        }
        let t0 = Instant::now();
        assert_eq!(
            positions(source.next_batch(&none).await),
            [(0, 0), (0, 1), (0, 2)]
        );
        assert_eq!(t0.elapsed(), Duration::ZERO, "a full batch does not wait");
        assert_eq!(positions(source.next_batch(&none).await), [(0, 3), (0, 4)]);
        assert_eq!(
            t0.elapsed(),
            Duration::from_millis(50),
            "a short batch waits max_wait after its first record"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_reads_into_the_next_batch_and_pauses_at_twice_a_batch() {
        let (mut source, feed, tx) = source(2, vec![0, 1]);
        let none = CancellationToken::new();
        for offset in 0..6 {
            tx.send(record(1, offset)).expect("send");
        }
        let t0 = Instant::now();
        assert!(source.hold(Duration::from_secs(3), &none).await.is_ok());
        assert_eq!(
            t0.elapsed(),
            Duration::from_secs(3),
            "holds as long as asked"
        );
        assert!(
            feed.paused.load(Ordering::SeqCst),
            "four carried records (twice a batch) pause fetching"
        );
        assert_eq!(positions(source.next_batch(&none).await), [(1, 0), (1, 1)]);
        Hold::resume(&mut source);
        assert!(!feed.paused.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn reading_ahead_fills_the_next_batch_without_pausing_and_loses_nothing_when_dropped() {
        let (mut source, feed, tx) = source(3, vec![0]);
        let none = CancellationToken::new();
        for offset in 0..5 {
            tx.send(record(0, offset)).expect("send");
        }
        // Beside a 10 ms "insert": the read-ahead stops at one batch and is dropped meanwhile.
        let insert = tokio::time::sleep(Duration::from_millis(10));
        tokio::select! {
            _ = insert => {}
            _ = source.read_ahead() => unreachable!("reading ahead never ends on its own"),
        }
        assert!(
            !feed.paused.load(Ordering::SeqCst),
            "reading ahead never pauses"
        );
        let t0 = Instant::now();
        assert_eq!(
            positions(source.next_batch(&none).await),
            [(0, 0), (0, 1), (0, 2)]
        );
        assert_eq!(
            t0.elapsed(),
            Duration::ZERO,
            "the batch read ahead is ready"
        );
        assert_eq!(positions(source.next_batch(&none).await), [(0, 3), (0, 4)]);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_interrupts_a_hold() {
        let (mut source, _, _tx) = source(2, vec![0]);
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            stop.cancel();
        });
        let t0 = Instant::now();
        assert!(source
            .hold(Duration::from_secs(60), &shutdown)
            .await
            .is_err());
        assert_eq!(t0.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn offsets_are_stored_one_past_the_highest_and_committed_for_partitions_still_ours() {
        let (mut source, feed, _tx) = source(10, vec![0]);
        source.done(next_offsets(&[
            record(0, 5),
            record(0, 7),
            record(1, 2),
            record(0, 6),
        ]));
        assert_eq!(
            *feed.stored.lock().expect("lock"),
            BTreeMap::from([(0, 8), (1, 3)])
        );
        source.finish();
        assert_eq!(
            *feed.committed.lock().expect("lock"),
            Some(BTreeMap::from([(0, 8)])),
            "partition 1 is no longer assigned: its new owner commits it"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_client_with_lag_on_its_partitions_is_stalled_after_the_timeout() {
        let (mut source, _, _tx) = source(10, vec![0]);
        source.lag.lock().expect("lock").insert(0, 5);
        let t0 = Instant::now();
        assert!(matches!(
            source.next_batch(&CancellationToken::new()).await,
            Next::Stalled
        ));
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_secs(20) && waited <= Duration::from_secs(21),
            "{waited:?}"
        );
    }
}
