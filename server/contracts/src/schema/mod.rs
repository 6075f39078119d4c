//! The database schema: its migrations (in `migrations/` beside this crate), the one migrator
//! that applies them, the table's time partitions and their retention ([`partitions`]), and
//! the few queries outside the consumer that read the table (the load generator's
//! verification, the benchmark), so the table's shape is written down once.
//!
//! The migrator runs from one place: `logctl up` applies it once the database is up, and a
//! consumer started on its own (`migrate_on_start`, for a compose stack) runs the same one;
//! sqlx's migration table and lock make a second run a no-op.

pub mod partitions;

use sqlx::PgPool;
use uuid::Uuid;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The events table.
pub const TABLE: &str = "log_events";

/// The columns a stored event is written with, in the order `COPY` and the consumer's insert
/// write them (`stored_at` is PostgreSQL's to fill). A macro, not only a constant, so that
/// statements are built from it with `concat!`, which takes literals only.
#[macro_export]
macro_rules! written_columns {
    () => {
        "id, organization_id, level, message, source, event_time, received_at, trace_id, \
         kafka_partition, kafka_offset"
    };
}

/// [`written_columns!`] as a constant.
pub const COLUMNS: &str = written_columns!();

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// Rows stored under these ids, and how many distinct ids they are (the difference is
/// duplicates).
pub async fn count_ids(pool: &PgPool, ids: &[Uuid]) -> Result<(u64, u64), sqlx::Error> {
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT id) FROM log_events WHERE id = ANY($1)")
            .bind(ids)
            .fetch_one(pool)
            .await?;
    Ok((rows.max(0) as u64, distinct.max(0) as u64))
}

/// Microseconds from the gateway's acceptance to the row's commit, for each of these ids.
pub async fn end_to_end_micros(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT (extract(epoch FROM (stored_at - received_at)) * 1000000)::bigint \
         FROM log_events WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await
}

/// Rows stored for these organizations.
pub async fn count_orgs(pool: &PgPool, orgs: &[String]) -> Result<u64, sqlx::Error> {
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM log_events WHERE organization_id = ANY($1)")
            .bind(orgs)
            .fetch_one(pool)
            .await?;
    Ok(n.max(0) as u64)
}

/// Bytes written to the WAL since the cluster was made, and the events table's size with its
/// indexes and TOAST: two readings around a run give what storing it cost on disk. The size is
/// its partitions' sum: a partitioned table's own relation holds no rows, and reading only it
/// put 0 table bytes per event in the bench's capacity model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Footprint {
    pub wal_bytes: f64,
    pub table_bytes: f64,
}

pub async fn footprint(pool: &PgPool) -> Result<Footprint, sqlx::Error> {
    let (wal_bytes, table_bytes): (f64, f64) = sqlx::query_as(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8, \
         coalesce(sum(pg_total_relation_size(relid)), 0)::float8 \
         FROM pg_partition_tree('log_events')",
    )
    .fetch_one(pool)
    .await?;
    Ok(Footprint {
        wal_bytes,
        table_bytes,
    })
}
