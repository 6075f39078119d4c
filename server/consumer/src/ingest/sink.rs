//! The PostgreSQL side of ingestion: a batch is handled when each record is either a stored row
//! or an acknowledged dead letter; only then does the source store its offsets.
//!
//! Failures are of two kinds, handled apart:
//! - **The database is down or failing** (any error but a refused row): the insert is retried
//!   with backoff behind the PostgreSQL circuit breaker; once it opens, the source pauses its
//!   partitions (polling on, so the group keeps us) until a trial insert succeeds. Nothing is
//!   skipped and nothing is dead-lettered for an outage.
//! - **A record can never be stored** (decoded as such, or refused by PostgreSQL on every try,
//!   found by splitting the batch): it goes to the dead-letter topic and the pipeline moves on.
//!
//! Every wait goes through the source's [`Hold`]: the sink never sleeps on its own.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Instant, SystemTime};

use chrono::Utc;
use rdkafka::error::KafkaError;
use tokio_util::sync::CancellationToken;

use logctl_contracts::metric;
use logctl_core::breaker::{Breaker, State};
use logctl_core::otlp::{Exporter, Span, SpanKind};
use logctl_core::{OrganizationId, TraceContext};

use super::decode::Decoded;
use super::retry::RetryPolicy;
use super::{Hold, Interrupted};
use crate::dead_letter::{DeadLetter, DeadLetters, Kind};
use crate::storage::{NewRow, Storage, StorageError};

/// Where rows go: the events table in service.
pub trait Rows: Send + Sync {
    /// Inserts the rows not stored yet; returns how many were new.
    fn insert(&self, rows: &[NewRow]) -> impl Future<Output = Result<u64, StorageError>> + Send;
}

impl Rows for Storage {
    async fn insert(&self, rows: &[NewRow]) -> Result<u64, StorageError> {
        self.insert_batch(rows).await
    }
}

/// Where records that can never be stored go: the dead-letter topic in service.
pub trait Letters: Send + Sync {
    /// Returns once Kafka acknowledged every letter.
    fn send(&self, letters: &[DeadLetter]) -> impl Future<Output = Result<(), KafkaError>> + Send;
}

impl Letters for DeadLetters {
    async fn send(&self, letters: &[DeadLetter]) -> Result<(), KafkaError> {
        DeadLetters::send(self, letters).await
    }
}

/// Told which organizations got new rows, so whatever was read of them before goes stale.
/// The read path's cache implements it; the write path knows nothing more of it.
pub trait Invalidate: Send + Sync {
    fn invalidate(&self, orgs: &BTreeSet<OrganizationId>) -> impl Future<Output = ()> + Send;
}

pub struct StorageSink<R, L, I> {
    pub rows: R,
    pub letters: L,
    pub invalidate: I,
    pub breaker: Breaker,
    pub retry: RetryPolicy,
    /// Spans of sampled traces, with the topic they were read from.
    pub spans: Option<(Exporter, String)>,
}

impl<R: Rows, L: Letters, I: Invalidate> StorageSink<R, L, I> {
    /// Dead-letters what can never be stored, inserts the rest; returns once all of the batch
    /// is handled (or shutdown interrupts a wait).
    pub async fn store(
        &self,
        batch: Vec<Decoded>,
        hold: &mut impl Hold,
        shutdown: &CancellationToken,
    ) -> Result<(), Interrupted> {
        // Taken apart, not copied: a deep copy of every row was a tenth of the drain's CPU.
        let (mut dead, mut rows) = (Vec::new(), Vec::with_capacity(batch.len()));
        for d in batch {
            match d {
                Decoded::Dead(l) => dead.push(l),
                Decoded::Row(r) => rows.push(r),
            }
        }
        self.dead_letter(&dead, hold, shutdown).await?;
        if !rows.is_empty() {
            // Each organization once, copied once (not once per row).
            let mut orgs = BTreeSet::new();
            for r in &rows {
                if !orgs.contains(&r.event.organization_id) {
                    orgs.insert(r.event.organization_id.clone());
                }
            }
            self.insert_isolating(rows, hold, shutdown).await?;
            self.invalidate.invalidate(&orgs).await;
        }
        Ok(())
    }

    /// Inserts `rows`; when PostgreSQL refuses the data itself, splits the batch to find the
    /// refused rows, tries each alone up to the policy's attempts, then dead-letters it.
    async fn insert_isolating(
        &self,
        rows: Vec<NewRow>,
        hold: &mut impl Hold,
        shutdown: &CancellationToken,
    ) -> Result<(), Interrupted> {
        let mut pending = vec![rows];
        while let Some(rows) = pending.pop() {
            let Err(refusal) = self.insert(&rows, hold, shutdown).await? else {
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
            let mut last = Some(refusal);
            while attempts < self.retry.refused_attempts && last.is_some() {
                attempts += 1;
                hold.hold(self.retry.refused_pause, shutdown).await?;
                last = self.insert(&rows, hold, shutdown).await?.err();
            }
            if let Some(last) = last {
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
                self.dead_letter(&[letter], hold, shutdown).await?;
            }
        }
        Ok(())
    }

    /// One insert, retried through outages until it succeeds, PostgreSQL refuses the rows
    /// (`Ok(Err(_))`), or shutdown interrupts.
    async fn insert(
        &self,
        rows: &[NewRow],
        hold: &mut impl Hold,
        shutdown: &CancellationToken,
    ) -> Result<Result<(), StorageError>, Interrupted> {
        let mut attempt: u32 = 0;
        loop {
            let permit = match self.breaker.acquire() {
                Ok(p) => p,
                Err(open) => {
                    hold.pause();
                    hold.hold(open.retry_after, shutdown).await?;
                    continue;
                }
            };
            let started = Instant::now();
            let started_at = SystemTime::now();
            let deadline = self.retry.insert_timeout;
            // The next batch is read meanwhile; reading ahead never ends first.
            let inserted = tokio::select! {
                biased;
                inserted = tokio::time::timeout(deadline, self.rows.insert(rows)) => inserted,
                never = async {
                    hold.read_ahead().await;
                    std::future::pending().await
                } => never,
            }
            .unwrap_or_else(|_| Err(StorageError::TimedOut(deadline)));
            match inserted {
                Ok(inserted) => {
                    permit.success();
                    hold.resume();
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
                        hold.pause();
                    }
                    attempt += 1;
                    metrics::counter!(metric::CONSUMER_INSERT_RETRIES).increment(1);
                    let wait = self.retry.backoff(attempt);
                    tracing::warn!(error = %e, attempt, ?wait, rows = rows.len(), "insert failed; retrying");
                    hold.hold(wait, shutdown).await?;
                }
            }
        }
    }

    /// Publishes dead letters, retrying while Kafka refuses them (their offsets wait).
    async fn dead_letter(
        &self,
        letters: &[DeadLetter],
        hold: &mut impl Hold,
        shutdown: &CancellationToken,
    ) -> Result<(), Interrupted> {
        if letters.is_empty() {
            return Ok(());
        }
        let mut attempt = 0;
        loop {
            match self.letters.send(letters).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "cannot publish dead letters; retrying");
                    hold.hold(self.retry.backoff(attempt), shutdown).await?;
                }
            }
        }
    }

    /// One span per stored event of a sampled trace: the last hop of the client's request.
    fn export_spans(&self, rows: &[NewRow], started: SystemTime) {
        let Some((exporter, topic)) = &self.spans else {
            return;
        };
        let end = SystemTime::now();
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
                    ("messaging.destination.name", topic.clone()),
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
}

fn record_stored(rows: &[NewRow], inserted: u64, took: std::time::Duration) {
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
    use std::borrow::Cow;
    use std::collections::{BTreeMap, HashMap};
    use std::sync::Mutex;
    use std::time::Duration;

    use logctl_core::breaker::BreakerSettings;
    use logctl_core::LogEvent;
    use rdkafka::types::RDKafkaErrorCode;
    use tokio::time::Instant;
    use uuid::Uuid;

    use super::*;

    /// A check-constraint violation as PostgreSQL reports it (SQLSTATE 23514).
    #[derive(Debug)]
    struct Refused;

    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("new row violates check constraint")
        }
    }

    impl std::error::Error for Refused {}

    impl sqlx::error::DatabaseError for Refused {
        fn message(&self) -> &str {
            "new row violates check constraint"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed("23514"))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::CheckViolation
        }
    }

    /// A table that can be down, hang, or refuse chosen rows a number of times.
    #[derive(Default)]
    struct Table {
        outage: Mutex<usize>,
        hang_once: Mutex<bool>,
        refuse: Mutex<HashMap<Uuid, usize>>,
        stored: Mutex<BTreeMap<Uuid, usize>>,
    }

    impl Rows for Table {
        async fn insert(&self, rows: &[NewRow]) -> Result<u64, StorageError> {
            if std::mem::take(&mut *self.hang_once.lock().expect("lock")) {
                std::future::pending::<()>().await;
            }
            {
                let mut outage = self.outage.lock().expect("lock");
                if *outage > 0 {
                    *outage -= 1;
                    return Err(StorageError::Database(sqlx::Error::PoolTimedOut));
                }
            }
            {
                let mut refuse = self.refuse.lock().expect("lock");
                let refused = rows
                    .iter()
                    .map(|r| r.event.id)
                    .find(|id| refuse.get(id).is_some_and(|n| *n > 0));
                if let Some(id) = refused {
                    if let Some(left) = refuse.get_mut(&id) {
                        *left -= 1;
                    }
                    return Err(StorageError::Database(sqlx::Error::Database(Box::new(
                        Refused,
                    ))));
                }
            }
            let mut stored = self.stored.lock().expect("lock");
            let mut new = 0;
            for r in rows {
                let n = stored.entry(r.event.id).or_default();
                new += u64::from(*n == 0);
                *n += 1;
            }
            Ok(new)
        }
    }

    #[derive(Default)]
    struct Topic {
        refusals: Mutex<usize>,
        sent: Mutex<Vec<DeadLetter>>,
    }

    impl Letters for Topic {
        async fn send(&self, letters: &[DeadLetter]) -> Result<(), KafkaError> {
            let mut refusals = self.refusals.lock().expect("lock");
            if *refusals > 0 {
                *refusals -= 1;
                return Err(KafkaError::MessageProduction(
                    RDKafkaErrorCode::BrokerTransportFailure,
                ));
            }
            self.sent.lock().expect("lock").extend_from_slice(letters);
            Ok(())
        }
    }

    #[derive(Default)]
    struct Told(Mutex<Vec<BTreeSet<OrganizationId>>>);

    impl Invalidate for Told {
        async fn invalidate(&self, orgs: &BTreeSet<OrganizationId>) {
            self.0.lock().expect("lock").push(orgs.clone());
        }
    }

    /// What the sink asked of the source.
    #[derive(Default)]
    struct Waits {
        held: Vec<Duration>,
        paused: bool,
        pauses: usize,
        resumes: usize,
    }

    impl Hold for Waits {
        async fn hold(
            &mut self,
            how_long: Duration,
            shutdown: &CancellationToken,
        ) -> Result<(), Interrupted> {
            self.held.push(how_long);
            tokio::select! {
                _ = shutdown.cancelled() => Err(Interrupted),
                _ = tokio::time::sleep(how_long) => Ok(()),
            }
        }
        fn pause(&mut self) {
            self.pauses += 1;
            self.paused = true;
        }
        fn resume(&mut self) {
            if std::mem::take(&mut self.paused) {
                self.resumes += 1;
            }
        }
    }

    fn sink() -> StorageSink<Table, Topic, Told> {
        StorageSink {
            rows: Table::default(),
            letters: Topic::default(),
            invalidate: Told::default(),
            breaker: Breaker::new(
                "postgres",
                BreakerSettings {
                    consecutive_failures: 3,
                    open_ms: 5_000,
                    ..BreakerSettings::default()
                },
            ),
            retry: RetryPolicy {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(8),
                insert_timeout: Duration::from_secs(2),
                refused_attempts: 3,
                refused_pause: Duration::from_millis(100),
            },
            spans: None,
        }
    }

    fn rows(n: usize) -> Vec<Decoded> {
        (0..n)
            .map(|i| {
                let at = Utc::now();
                Decoded::Row(NewRow {
                    event: LogEvent {
                        id: Uuid::now_v7(),
                        organization_id: OrganizationId::parse(format!("org-{}", i % 2))
                            .expect("org"),
                        level: logctl_core::event::Level::Info,
                        message: format!("event {i}"),
                        source: "test".into(),
                        timestamp: at,
                        received_at: at,
                    },
                    trace_id: None,
                    traceparent: None,
                    partition: 0,
                    offset: i as i64,
                })
            })
            .collect()
    }

    /// Stores `batch` with no shutdown in sight.
    async fn store(
        sink: &StorageSink<Table, Topic, Told>,
        batch: &[Decoded],
        waits: &mut Waits,
    ) -> Result<(), Interrupted> {
        sink.store(batch.to_vec(), waits, &CancellationToken::new())
            .await
    }

    fn id(d: &Decoded) -> Uuid {
        match d {
            Decoded::Row(r) => r.event.id,
            Decoded::Dead(_) => panic!("not a row"),
        }
    }

    fn stored_once(sink: &StorageSink<Table, Topic, Told>, batch: &[Decoded]) -> bool {
        let stored = sink.rows.stored.lock().expect("lock");
        batch
            .iter()
            .filter(|d| matches!(d, Decoded::Row(_)))
            .all(|d| stored.get(&id(d)) == Some(&1))
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_is_waited_out_with_backoff_and_every_row_stored_once() {
        let sink = sink();
        *sink.rows.outage.lock().expect("lock") = 2;
        let batch = rows(10);
        let mut waits = Waits::default();
        assert!(store(&sink, &batch, &mut waits).await.is_ok());
        assert!(stored_once(&sink, &batch));
        assert_eq!(waits.held.len(), 2, "{:?}", waits.held);
        let (first, second) = (waits.held[0], waits.held[1]);
        assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1));
        assert!(second >= Duration::from_secs(1) && second <= Duration::from_secs(2));
        assert_eq!(waits.pauses, 0, "two failures do not open the breaker");
        assert!(sink.letters.sent.lock().expect("lock").is_empty());
        let told = sink.invalidate.0.lock().expect("lock");
        assert_eq!(told.len(), 1);
        assert_eq!(told[0].len(), 2, "both organizations go stale");
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_breaker_pauses_the_source_until_a_trial_insert_succeeds() {
        let sink = sink();
        *sink.rows.outage.lock().expect("lock") = 5;
        let batch = rows(4);
        let mut waits = Waits::default();
        let t0 = Instant::now();
        assert!(store(&sink, &batch, &mut waits).await.is_ok());
        assert!(stored_once(&sink, &batch));
        assert!(waits.pauses >= 1, "the open breaker pauses fetching");
        assert_eq!(waits.resumes, 1, "and the first success resumes it");
        assert!(!waits.paused);
        assert!(
            t0.elapsed() >= Duration::from_secs(5),
            "waited out the open period: {:?}",
            t0.elapsed()
        );
        assert!(sink.letters.sent.lock().expect("lock").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_insert_fails_at_its_deadline_and_is_retried() {
        let sink = sink();
        *sink.rows.hang_once.lock().expect("lock") = true;
        let batch = rows(3);
        let mut waits = Waits::default();
        let t0 = Instant::now();
        assert!(store(&sink, &batch, &mut waits).await.is_ok());
        assert!(stored_once(&sink, &batch));
        assert!(t0.elapsed() >= Duration::from_secs(2), "{:?}", t0.elapsed());
        assert_eq!(waits.held.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_row_is_isolated_by_splitting_and_dead_lettered_alone() {
        let sink = sink();
        let batch = rows(8);
        let poison = id(&batch[5]);
        sink.rows
            .refuse
            .lock()
            .expect("lock")
            .insert(poison, usize::MAX);
        let mut waits = Waits::default();
        assert!(store(&sink, &batch, &mut waits).await.is_ok());
        let stored = sink.rows.stored.lock().expect("lock");
        assert_eq!(stored.len(), 7);
        assert!(!stored.contains_key(&poison));
        assert!(stored.values().all(|n| *n == 1), "{stored:?}");
        let sent = sink.letters.sent.lock().expect("lock");
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].kind, Kind::Rejected);
        assert_eq!((sent[0].offset, sent[0].attempts), (5, 3));
        assert!(
            sent[0].error.contains("check constraint"),
            "{}",
            sent[0].error
        );
        assert_eq!(
            waits.held,
            [Duration::from_millis(100); 2],
            "two more tries"
        );
        assert_eq!(waits.pauses, 0, "a refusal is not an outage");
    }

    #[tokio::test(start_paused = true)]
    async fn a_row_taken_on_its_last_try_is_stored_not_dead_lettered() {
        let sink = sink();
        let batch = rows(1);
        sink.rows
            .refuse
            .lock()
            .expect("lock")
            .insert(id(&batch[0]), 2);
        let mut waits = Waits::default();
        assert!(store(&sink, &batch, &mut waits).await.is_ok());
        assert!(stored_once(&sink, &batch));
        assert!(sink.letters.sent.lock().expect("lock").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn dead_letters_are_retried_until_kafka_takes_them_before_any_row() {
        let sink = sink();
        *sink.letters.refusals.lock().expect("lock") = 2;
        let mut batch = rows(2);
        batch.push(Decoded::Dead(DeadLetter {
            key: None,
            payload: Some(b"{oops".to_vec()),
            traceparent: None,
            kind: Kind::Undecodable,
            error: "expected value".into(),
            partition: 0,
            offset: 2,
            attempts: 1,
        }));
        let mut waits = Waits::default();
        assert!(store(&sink, &batch, &mut waits).await.is_ok());
        assert_eq!(sink.letters.sent.lock().expect("lock").len(), 1);
        assert_eq!(waits.held.len(), 2);
        assert!(stored_once(&sink, &batch));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_during_an_outage_stores_nothing_and_says_so() {
        let sink = sink();
        *sink.rows.outage.lock().expect("lock") = usize::MAX;
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            stop.cancel();
        });
        let mut waits = Waits::default();
        let done = sink.store(rows(3), &mut waits, &shutdown).await;
        assert!(done.is_err());
        assert!(sink.rows.stored.lock().expect("lock").is_empty());
        assert!(sink.invalidate.0.lock().expect("lock").is_empty());
    }
}
