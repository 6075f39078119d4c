//! PostgreSQL storage of events.
//!
//! A batch is one `INSERT ... SELECT FROM UNNEST(...)` statement (one array per column, so no
//! bind-parameter limit and one round trip per batch) with `ON CONFLICT (id) DO NOTHING`, which
//! makes a redelivered record harmless: an event is stored once whatever Kafka replays.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Row;
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

#[derive(Clone)]
pub struct Storage {
    pool: PgPool,
}

impl Storage {
    /// A pool that connects lazily, so the service starts (and reports not-ready) while the
    /// database is still down.
    pub fn connect_lazy(url: &str, pool_size: u32) -> Result<Self, StorageError> {
        let pool = PgPoolOptions::new()
            .max_connections(pool_size)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy(url)?;
        Ok(Self { pool })
    }

    pub async fn migrate(&self) -> Result<(), StorageError> {
        logctl_contracts::schema::migrate(&self.pool).await?;
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Inserts the rows in one statement; returns how many were new (the rest were duplicates).
    pub async fn insert_batch(&self, rows: &[NewRow]) -> Result<u64, StorageError> {
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
        let result = sqlx::query(
            "INSERT INTO log_events (id, organization_id, level, message, source, event_time, \
                                     received_at, trace_id, kafka_partition, kafka_offset) \
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], \
                                  $6::timestamptz[], $7::timestamptz[], $8::text[], $9::int[], $10::bigint[]) \
             ON CONFLICT (id) DO NOTHING",
        )
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
            "SELECT {COLUMNS} FROM log_events WHERE id = $1 AND organization_id = $2"
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
        let limit = i64::from(q.limit);
        // One more row than asked tells whether a next page exists.
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM log_events \
             WHERE organization_id = $1 \
               AND ($2::text IS NULL OR level = $2) \
               AND ($3::text IS NULL OR source = $3) \
               AND ($4::timestamptz IS NULL OR event_time >= $4) \
               AND ($5::timestamptz IS NULL OR event_time < $5) \
               AND ($6::timestamptz IS NULL OR (event_time, id) < ($6, $7)) \
             ORDER BY event_time DESC, id DESC LIMIT $8"
        ))
        .bind(org.as_str())
        .bind(q.level.map(|l| l.as_str()))
        .bind(q.source.as_deref())
        .bind(q.since)
        .bind(q.until)
        .bind(q.cursor.map(|c| c.event_time))
        .bind(q.cursor.map(|c| c.id))
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut items = rows
            .iter()
            .map(stored_event)
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if items.len() as i64 > limit {
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

    /// Counts of the organization's events per level and per source.
    pub async fn stats(
        &self,
        org: &OrganizationId,
        since: Option<DateTime<Utc>>,
    ) -> Result<Stats, StorageError> {
        let rows = sqlx::query(
            "SELECT level, source, count(*) AS n FROM log_events \
             WHERE organization_id = $1 AND ($2::timestamptz IS NULL OR event_time >= $2) \
             GROUP BY level, source",
        )
        .bind(org.as_str())
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
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

const COLUMNS: &str = "id, organization_id, level, message, source, event_time, received_at, \
                       stored_at, trace_id, kafka_partition, kafka_offset";

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
