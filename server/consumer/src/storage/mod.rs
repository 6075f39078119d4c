//! PostgreSQL storage of events.
//!
//! A batch is stored per part (see [`Storage::with_parts`]) in two steps: one query looks up
//! the part's ids in the few partitions its time span, widened by the dedup window, covers;
//! the rows with no stored copy then go in by binary [`copy`], PostgreSQL's bulk-load path. A
//! redelivered record has a stored copy: its event time was fixed at the gateway and travels
//! with it, so the same key is found. So does a copy of an id with another event time within
//! the window (a client that posted the same id again without its `timestamp`). The primary
//! key `(id, event_time)` still has the last word: a copy committed by another consumer after
//! the lookup is a unique violation, which aborts the whole `COPY`, and the part runs again as
//! one statement with `ON CONFLICT DO NOTHING`.

pub mod copy;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgPool, PgPoolCopyExt, PgPoolOptions};
use sqlx::{Postgres, QueryBuilder, Row};
use uuid::Uuid;

use logctl_contracts::read_api::{Cursor, LogQuery, Page, Stats};
use logctl_core::{LogEvent, OrganizationId};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("no answer from the database within {0:?}")]
    TimedOut(std::time::Duration),
}

impl StorageError {
    /// PostgreSQL refused the data itself (a bad value, a violated constraint, a row beyond a
    /// limit): retrying cannot help, unlike an outage, which any other error may be.
    pub fn is_row_rejection(&self) -> bool {
        let StorageError::Database(sqlx::Error::Database(e)) = self else {
            return false;
        };
        let code = e.code().unwrap_or_default();
        code.starts_with("22") || code.starts_with("23") || code.starts_with("54")
    }
}

/// An event with where it came from in Kafka, ready to insert.
#[derive(Debug, Clone)]
pub struct NewRow {
    pub event: LogEvent,
    pub trace_id: Option<String>,
    /// The record's `traceparent`, to continue its trace in an exported span.
    pub traceparent: Option<String>,
    pub partition: i32,
    pub offset: i64,
}

/// A stored event as the read API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredEvent {
    pub id: Uuid,
    pub organization_id: String,
    pub level: String,
    pub message: String,
    pub source: String,
    pub timestamp: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub stored_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
}

/// A part's rows that are not stored yet, in one statement, for a part whose `COPY` met a
/// copy committed after its lookup: stored copies are looked up by id within the part's time
/// span widened by the dedup window ($11), so only the partitions that span ($12..$13) covers
/// are read, and the primary key skips whatever was committed since. A correlated `NOT EXISTS`
/// per row let the planner hash the whole table instead (a sequential scan of every stored
/// row: the drain slowed as the table grew).
const INSERT_NEW_RACING: &str = concat!(
    "WITH u AS MATERIALIZED ( \
        SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], \
                             $6::timestamptz[], $7::timestamptz[], $8::text[], $9::int[], \
                             $10::bigint[]) \
            AS u(",
    logctl_contracts::written_columns!(),
    ")), \
    stored AS MATERIALIZED ( \
        SELECT id, event_time FROM log_events \
        WHERE id = ANY($1::uuid[]) AND event_time BETWEEN $12 AND $13) \
    INSERT INTO log_events (",
    logctl_contracts::written_columns!(),
    ") \
    SELECT u.* FROM u \
    WHERE NOT EXISTS (SELECT 1 FROM stored s WHERE s.id = u.id \
        AND s.event_time >= u.event_time - $11::interval \
        AND s.event_time <= u.event_time + $11::interval) \
    ON CONFLICT (id, event_time) DO NOTHING"
);

/// Stored copies of any of $1's ids with an event time in $2..$3.
const STORED_COPIES: &str =
    "SELECT id, event_time FROM log_events WHERE id = ANY($1) AND event_time BETWEEN $2 AND $3";

#[derive(Clone)]
pub struct Storage {
    pool: PgPool,
    /// How far apart in event time two copies of an id are still the same event.
    dedup_window: chrono::TimeDelta,
    /// Statements one batch is split into, run at once on their own connections.
    parts: usize,
}

impl Storage {
    /// A pool that connects lazily, so the service starts (and reports not-ready) while the
    /// database is still down.
    pub fn connect_lazy(url: &str, pool_size: u32) -> Result<Self, StorageError> {
        let pool = PgPoolOptions::new()
            .max_connections(pool_size)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy(url)?;
        Ok(Self {
            pool,
            dedup_window: logctl_contracts::schema::partitions::Policy::default().interval(),
            parts: 1,
        })
    }

    /// Splits each batch into `parts` statements run at once on as many connections. One
    /// statement keeps one PostgreSQL backend, and so one core, busy at most: a backlog drained
    /// at about half the rate of a `COPY` while the machine's other core waited. Each part is
    /// its own transaction; the batch is stored once all are, and a retry of the whole batch
    /// after one part failed finds the others' rows already there (the dedup makes it a no-op
    /// for them), so the exactly-once guarantee is unchanged. A batch's copies of one id are
    /// removed before the split, so no two parts race for one event.
    pub fn with_parts(mut self, parts: usize) -> Self {
        self.parts = parts.max(1);
        self
    }

    /// Copies of an id this far apart in event time are stored once (at least one partition
    /// interval, so a re-post a partition later is still caught).
    pub fn with_dedup_window(mut self, window: chrono::TimeDelta) -> Self {
        self.dedup_window = window;
        self
    }

    pub async fn migrate(&self) -> Result<(), StorageError> {
        logctl_contracts::schema::migrate(&self.pool).await?;
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Inserts the rows (in [`Storage::with_parts`] statements at once); returns how many were
    /// new (the rest were duplicates).
    pub async fn insert_batch(&self, rows: &[NewRow]) -> Result<u64, StorageError> {
        let rows = first_copies(rows, self.dedup_window);
        // Parts below this many rows cost more in round trips than they gain.
        const MIN_PART: usize = 500;
        let parts = self.parts.min(rows.len().div_ceil(MIN_PART)).max(1);
        let size = rows.len().div_ceil(parts).max(1);
        let inserted =
            futures::future::try_join_all(rows.chunks(size).map(|part| self.insert_part(part)))
                .await?;
        Ok(inserted.into_iter().sum())
    }

    /// One part: its stored copies looked up, the rest copied in.
    async fn insert_part(&self, rows: &[&NewRow]) -> Result<u64, StorageError> {
        let Some((earliest, latest)) = span(rows) else {
            return Ok(0);
        };
        let ids: Vec<Uuid> = rows.iter().map(|r| r.event.id).collect();
        let stored: Vec<(Uuid, DateTime<Utc>)> = sqlx::query_as(STORED_COPIES)
            .bind(&ids)
            .bind(earliest - self.dedup_window)
            .bind(latest + self.dedup_window)
            .fetch_all(&self.pool)
            .await?;
        let fresh = not_stored(rows, &stored, self.dedup_window);
        if fresh.is_empty() {
            return Ok(0);
        }
        let copied = async {
            let mut copy = self.pool.copy_in_raw(copy::STATEMENT).await?;
            copy.send(copy::encode(&fresh)).await?;
            copy.finish().await
        };
        // A refusal may come back while sending or at the end.
        match copied.await {
            Ok(n) => Ok(n),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                self.insert_racing(&fresh).await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `rows` in one statement that skips stored copies, those committed meanwhile included.
    async fn insert_racing(&self, rows: &[&NewRow]) -> Result<u64, StorageError> {
        let Some((earliest, latest)) = span(rows) else {
            return Ok(0);
        };
        let n = rows.len();
        let mut ids = Vec::with_capacity(n);
        let mut orgs = Vec::with_capacity(n);
        let mut levels = Vec::with_capacity(n);
        let mut messages = Vec::with_capacity(n);
        let mut sources = Vec::with_capacity(n);
        let mut event_times = Vec::with_capacity(n);
        let mut received = Vec::with_capacity(n);
        let mut traces = Vec::with_capacity(n);
        let mut partitions = Vec::with_capacity(n);
        let mut offsets = Vec::with_capacity(n);
        for r in rows {
            ids.push(r.event.id);
            orgs.push(r.event.organization_id.as_str());
            levels.push(r.event.level.as_str());
            messages.push(r.event.message.as_str());
            sources.push(r.event.source.as_str());
            event_times.push(r.event.timestamp);
            received.push(r.event.received_at);
            traces.push(r.trace_id.as_deref());
            partitions.push(r.partition);
            offsets.push(r.offset);
        }
        let result = sqlx::query(INSERT_NEW_RACING)
            .bind(&ids)
            .bind(&orgs)
            .bind(&levels)
            .bind(&messages)
            .bind(&sources)
            .bind(&event_times)
            .bind(&received)
            .bind(&traces)
            .bind(&partitions)
            .bind(&offsets)
            .bind(self.dedup_window)
            .bind(earliest - self.dedup_window)
            .bind(latest + self.dedup_window)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }

    /// One event, only if it belongs to `org`: another organization's id reads as absent.
    pub async fn get(
        &self,
        org: &OrganizationId,
        id: Uuid,
    ) -> Result<Option<StoredEvent>, StorageError> {
        let row = sqlx::query(&format!(
            "SELECT {READ_COLUMNS} FROM log_events WHERE id = $1 AND organization_id = $2"
        ))
        .bind(id)
        .bind(org.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(stored_event).transpose()
    }

    /// One page of the organization's events, newest first, after the cursor if any.
    pub async fn page(
        &self,
        org: &OrganizationId,
        q: &LogQuery,
    ) -> Result<Page<StoredEvent>, StorageError> {
        let rows = page_query("", org, q).build().fetch_all(&self.pool).await?;
        let mut items = rows
            .iter()
            .map(stored_event)
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if items.len() > q.limit as usize {
            items.truncate(q.limit as usize);
            items.last().map(|last| {
                Cursor {
                    event_time: last.timestamp,
                    id: last.id,
                }
                .encode()
            })
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// PostgreSQL's plan for a page: which partitions it reads.
    pub async fn explain_page(
        &self,
        org: &OrganizationId,
        q: &LogQuery,
    ) -> Result<String, StorageError> {
        let lines: Vec<String> = page_query("EXPLAIN ", org, q)
            .build_query_scalar()
            .fetch_all(&self.pool)
            .await?;
        Ok(lines.join("\n"))
    }

    /// Counts of the organization's events per level and per source.
    pub async fn stats(
        &self,
        org: &OrganizationId,
        since: Option<DateTime<Utc>>,
    ) -> Result<Stats, StorageError> {
        let mut query = QueryBuilder::new(
            "SELECT level, source, count(*) AS n FROM log_events WHERE organization_id = ",
        );
        query.push_bind(org.as_str());
        if let Some(since) = since {
            query.push(" AND event_time >= ").push_bind(since);
        }
        query.push(" GROUP BY level, source");
        let rows = query.build().fetch_all(&self.pool).await?;
        let mut stats = Stats {
            organization_id: org.to_string(),
            since,
            ..Stats::default()
        };
        for r in &rows {
            let level: String = r.try_get("level")?;
            let source: String = r.try_get("source")?;
            let n: i64 = r.try_get("n")?;
            stats.total += n;
            *stats.by_level.entry(level).or_default() += n;
            *stats.by_source.entry(source).or_default() += n;
        }
        Ok(stats)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// The rows of a batch but later copies of an id within `window` of an earlier one: the
/// insert statement cannot see its own rows, so two such copies would both pass its check.
fn first_copies(rows: &[NewRow], window: chrono::TimeDelta) -> Vec<&NewRow> {
    let mut seen: HashMap<Uuid, Vec<DateTime<Utc>>> = HashMap::with_capacity(rows.len());
    rows.iter()
        .filter(|r| {
            let times = seen.entry(r.event.id).or_default();
            let t = r.event.timestamp;
            let copy = times.iter().any(|k| (t - *k).abs() <= window);
            if !copy {
                times.push(t);
            }
            !copy
        })
        .collect()
}

/// The earliest and latest event time of `rows`.
fn span(rows: &[&NewRow]) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let times = rows.iter().map(|r| r.event.timestamp);
    Some((times.clone().min()?, times.max()?))
}

/// The rows with no copy among `stored` within `window` of their event time.
fn not_stored<'r>(
    rows: &[&'r NewRow],
    stored: &[(Uuid, DateTime<Utc>)],
    window: chrono::TimeDelta,
) -> Vec<&'r NewRow> {
    let mut by_id: HashMap<Uuid, Vec<DateTime<Utc>>> = HashMap::with_capacity(stored.len());
    for (id, at) in stored {
        by_id.entry(*id).or_default().push(*at);
    }
    rows.iter()
        .filter(|r| {
            by_id.get(&r.event.id).is_none_or(|times| {
                times
                    .iter()
                    .all(|t| (r.event.timestamp - *t).abs() > window)
            })
        })
        .copied()
        .collect()
}

/// A page's statement (after `prefix`, e.g. `EXPLAIN `): only the filters given, so that
/// PostgreSQL prunes the partitions that `since` and `until` leave out (a filter written
/// `($1 IS NULL OR event_time >= $1)` would not prune in a generic plan). One more row than
/// asked tells whether a next page exists.
fn page_query<'q>(
    prefix: &str,
    org: &'q OrganizationId,
    q: &'q LogQuery,
) -> QueryBuilder<'q, Postgres> {
    let mut query = QueryBuilder::new(format!(
        "{prefix}SELECT {READ_COLUMNS} FROM log_events WHERE organization_id = "
    ));
    query.push_bind(org.as_str());
    if let Some(level) = q.level {
        query.push(" AND level = ").push_bind(level.as_str());
    }
    if let Some(source) = &q.source {
        query.push(" AND source = ").push_bind(source.as_str());
    }
    if let Some(since) = q.since {
        query.push(" AND event_time >= ").push_bind(since);
    }
    if let Some(until) = q.until {
        query.push(" AND event_time < ").push_bind(until);
    }
    if let Some(c) = q.cursor {
        query
            .push(" AND (event_time, id) < (")
            .push_bind(c.event_time)
            .push(", ")
            .push_bind(c.id)
            .push(")");
    }
    query
        .push(" ORDER BY event_time DESC, id DESC LIMIT ")
        .push_bind(i64::from(q.limit) + 1);
    query
}

/// The columns a stored event is read back with: those written and `stored_at` (rows are read
/// by column name, so the order does not matter).
const READ_COLUMNS: &str = concat!(logctl_contracts::written_columns!(), ", stored_at");

fn stored_event(r: &sqlx::postgres::PgRow) -> Result<StoredEvent, StorageError> {
    Ok(StoredEvent {
        id: r.try_get("id")?,
        organization_id: r.try_get("organization_id")?,
        level: r.try_get("level")?,
        message: r.try_get("message")?,
        source: r.try_get("source")?,
        timestamp: r.try_get("event_time")?,
        received_at: r.try_get("received_at")?,
        stored_at: r.try_get("stored_at")?,
        trace_id: r.try_get("trace_id")?,
        kafka_partition: r.try_get("kafka_partition")?,
        kafka_offset: r.try_get("kafka_offset")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;
    use logctl_core::EventLimits;

    fn row(id: Uuid, at: DateTime<Utc>) -> NewRow {
        let event = LogEvent::from_json(
            &serde_json::json!({"organizationId": "o", "level": "INFO", "message": "m",
                                "source": "s", "id": id, "timestamp": at.to_rfc3339()}),
            &EventLimits::default(),
            at,
        )
        .expect("valid");
        NewRow {
            event,
            trace_id: None,
            traceparent: None,
            partition: 0,
            offset: 0,
        }
    }

    #[test]
    fn a_batch_keeps_one_copy_of_an_id_within_the_window() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let t = Utc::now();
        let rows = [
            row(a, t),
            row(a, t + TimeDelta::hours(3)),
            row(b, t),
            row(a, t + TimeDelta::days(2)),
            row(b, t),
        ];
        let kept: Vec<(Uuid, DateTime<Utc>)> = first_copies(&rows, TimeDelta::days(1))
            .iter()
            .map(|r| (r.event.id, r.event.timestamp))
            .collect();
        assert_eq!(kept, [(a, t), (b, t), (a, t + TimeDelta::days(2))]);
    }

    #[test]
    fn a_row_is_left_out_when_a_stored_copy_is_within_the_window() {
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let t = Utc::now();
        let rows = [row(a, t), row(b, t), row(c, t)];
        let refs: Vec<&NewRow> = rows.iter().collect();
        // a: stored an hour off; b: stored two days off (another event); c: not stored.
        let stored = [
            (b, t - TimeDelta::days(2)),
            (a, t + TimeDelta::hours(1)),
            (b, t + TimeDelta::days(2)),
        ];
        let fresh: Vec<Uuid> = not_stored(&refs, &stored, TimeDelta::days(1))
            .iter()
            .map(|r| r.event.id)
            .collect();
        assert_eq!(fresh, [b, c]);
    }
}
