//! Time partitions of `log_events`: made ahead of time, dropped for retention.
//!
//! A log store that kept every row would fill its disk, and deleting old rows from one big
//! table is the slow way out (every row written again to the WAL, then vacuumed). So the table
//! is range-partitioned on `event_time` into aligned ranges of one interval (a day by default,
//! counted from the Unix epoch, so a day starts at midnight UTC), and retention drops whole
//! partitions: instant, and the space comes back at once.
//!
//! One maintenance pass ([`maintain`]; the consumer runs one a minute, `logctl up` one before
//! the consumers start):
//! - makes the partitions from the retention's horizon to `ahead` intervals past the current
//!   one; rows the default partition holds for a new partition's range move into it (PostgreSQL
//!   would refuse the new partition otherwise);
//! - drops the partitions wholly older than the horizon;
//! - and when the default partition holds rows older than the horizon (events that came with
//!   old timestamps), replaces it by a new default holding the rest and drops the old one.
//!
//! Nothing is ever deleted row by row for retention. A pass holds a session advisory lock, so
//! of several consumers one works at a time, and its DDL waits at most [`LOCK_TIMEOUT`] for a
//! table lock: a long read makes the pass fail and retry later rather than queue every insert
//! behind it.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};

/// The partition that catches whatever no range covers: nothing is refused for its time.
pub const DEFAULT_PARTITION: &str = "log_events_default";

/// Every range partition is named this and its start in UTC: `log_events_p20261204_0000`.
const NAME_PREFIX: &str = "log_events_p";

/// The advisory lock key of a maintenance pass ("logctl" and 1).
const LOCK_KEY: i64 = 0x006c_6f67_6374_6c01;

/// How long one statement of a pass may wait for a table lock.
pub const LOCK_TIMEOUT: &str = "3s";

/// The most partitions a policy may keep (the retention over the interval, plus those ahead):
/// beyond it, planning a query over them costs more than it saves.
const MAX_PARTITIONS: i64 = 1_000;

/// The retention settings as written (consumer config, `stack.toml`, env); [`Policy`] is the
/// checked form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetentionSettings {
    /// The width of one partition, in whole minutes: `1d`, `6h`, `2m` (for a soak).
    #[serde(deserialize_with = "crate::duration::seconds")]
    pub partition_interval_secs: u64,
    /// How long events are kept, by their event time: `7d`. A partition is dropped once its
    /// newest possible event is older than this.
    #[serde(deserialize_with = "crate::duration::seconds")]
    pub retention_secs: u64,
    /// Partitions made ahead of the current one.
    pub partitions_ahead: u32,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            partition_interval_secs: 86_400,
            retention_secs: 7 * 86_400,
            partitions_ahead: 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("partition_interval must be a whole number of minutes, at least one (got {0} s)")]
    Interval(u64),
    #[error("retention must be at least one partition interval ({interval} s), got {retention} s")]
    Retention { interval: u64, retention: u64 },
    #[error("partitions_ahead must be at least 1")]
    Ahead,
    #[error(
        "the retention over the partition interval plus partitions_ahead makes {0} partitions; \
         keep it under {MAX_PARTITIONS} with a wider interval"
    )]
    TooMany(i64),
}

/// A checked retention policy: partitions of a whole number of minutes, a retention of at
/// least one of them, at least one made ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    interval: TimeDelta,
    retention: TimeDelta,
    ahead: u32,
}

impl TryFrom<&RetentionSettings> for Policy {
    type Error = PolicyError;

    fn try_from(s: &RetentionSettings) -> Result<Self, PolicyError> {
        let interval = s.partition_interval_secs;
        if interval < 60 || !interval.is_multiple_of(60) || interval > 366 * 86_400 {
            return Err(PolicyError::Interval(interval));
        }
        let retention = s.retention_secs;
        if retention < interval || retention > 100 * 366 * 86_400 {
            return Err(PolicyError::Retention {
                interval,
                retention,
            });
        }
        if s.partitions_ahead == 0 {
            return Err(PolicyError::Ahead);
        }
        let count = (retention / interval) as i64 + i64::from(s.partitions_ahead) + 2;
        if count > MAX_PARTITIONS {
            return Err(PolicyError::TooMany(count));
        }
        Ok(Self {
            interval: TimeDelta::seconds(interval as i64),
            retention: TimeDelta::seconds(retention as i64),
            ahead: s.partitions_ahead,
        })
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self::try_from(&RetentionSettings::default()).expect("the defaults are valid")
    }
}

/// A partition's range of event times: from inclusive, to exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Range {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Policy {
    pub fn interval(&self) -> TimeDelta {
        self.interval
    }

    pub fn retention(&self) -> TimeDelta {
        self.retention
    }

    /// Events older than this are due to go.
    pub fn horizon(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - self.retention
    }

    /// The start of the interval `t` falls in.
    pub fn align(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let step = self.interval.num_seconds();
        let secs = t.timestamp().div_euclid(step) * step;
        DateTime::from_timestamp(secs, 0).unwrap_or(t)
    }

    /// The partitions that should exist at `now`: from the one holding the horizon to `ahead`
    /// past the current one.
    pub fn wanted(&self, now: DateTime<Utc>) -> Vec<Range> {
        let first = self.align(self.horizon(now));
        let end = self.align(now) + self.interval * (self.ahead as i32 + 1);
        let mut ranges = Vec::new();
        let mut from = first;
        while from < end {
            ranges.push(Range {
                from,
                to: from + self.interval,
            });
            from += self.interval;
        }
        ranges
    }

    /// When the partition `range` is dropped: once its newest event is past the retention.
    pub fn drop_at(&self, range: Range) -> DateTime<Utc> {
        range.to + self.retention
    }
}

/// The parts of `wanted` that no `existing` range covers (an interval changed between runs
/// leaves ranges of the old width: new partitions fill around them, never overlap them).
pub fn gaps(wanted: &[Range], existing: &[Range]) -> Vec<Range> {
    let mut existing = existing.to_vec();
    existing.sort();
    let mut out = Vec::new();
    for w in wanted {
        let mut from = w.from;
        for e in existing.iter().filter(|e| e.from < w.to && e.to > w.from) {
            if e.from > from {
                out.push(Range { from, to: e.from });
            }
            from = from.max(e.to);
        }
        if from < w.to {
            out.push(Range { from, to: w.to });
        }
    }
    out
}

/// The partition starting at `from`.
pub fn name(from: DateTime<Utc>) -> String {
    format!("{NAME_PREFIX}{}", from.format("%Y%m%d_%H%M"))
}

/// One partition as `logctl storage` and the metrics show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionInfo {
    pub name: String,
    /// None for the default partition.
    pub range: Option<Range>,
    /// PostgreSQL's live-row estimate, or an exact count when asked for.
    pub rows: i64,
    /// With indexes and TOAST.
    pub bytes: i64,
}

/// Every partition, oldest first, the default one first of all.
pub async fn list(pool: &PgPool, exact: bool) -> Result<Vec<PartitionInfo>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let mut parts = catalog(&mut conn).await?;
    if exact {
        for p in &mut parts {
            p.rows = sqlx::query_scalar(&format!("SELECT count(*) FROM {}", ident(&p.name)))
                .fetch_one(&mut *conn)
                .await?;
        }
    }
    Ok(parts)
}

async fn catalog(conn: &mut PgConnection) -> Result<Vec<PartitionInfo>, sqlx::Error> {
    // The bounds come back as text in the session's time zone; casting them in the same
    // session reads them back exactly.
    type Row = (
        String,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
        i64,
        i64,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT c.relname::text, b[1]::timestamptz, b[2]::timestamptz, \
                    coalesce(s.n_live_tup, 0)::bigint, pg_total_relation_size(c.oid)::bigint \
             FROM pg_inherits i \
             JOIN pg_class c ON c.oid = i.inhrelid \
             LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid \
             CROSS JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid), \
                 'FROM \\(''([^'']*)''\\) TO \\(''([^'']*)''\\)') AS b \
             WHERE i.inhparent = 'log_events'::regclass \
             ORDER BY b[1]::timestamptz NULLS FIRST",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(name, from, to, rows, bytes)| PartitionInfo {
            name,
            range: from.zip(to).map(|(from, to)| Range { from, to }),
            rows,
            bytes,
        })
        .collect())
}

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Pass {
    pub created: Vec<String>,
    /// Rows moved from the default partition into partitions made for their range.
    pub moved: u64,
    pub dropped: Vec<String>,
    /// Rows older than the horizon that the default partition held, gone with it.
    pub expired_from_default: u64,
}

/// One maintenance pass at `now`; `None` when another one holds the lock.
pub async fn maintain(
    pool: &PgPool,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<Option<Pass>, sqlx::Error> {
    let policy = *policy;
    locked(pool, move |conn| {
        Box::pin(async move {
            let mut pass = Pass::default();
            let existing: Vec<Range> = catalog(conn)
                .await?
                .iter()
                .filter_map(|p| p.range)
                .collect();
            for range in gaps(&policy.wanted(now), &existing) {
                pass.moved += create(conn, range).await?;
                pass.created.push(name(range.from));
            }
            drop_older(conn, policy.horizon(now), &mut pass).await?;
            Ok(pass)
        })
    })
    .await
}

/// Retention by hand: drops every partition wholly older than `horizon` and the default
/// partition's rows older than it; `None` when a pass holds the lock.
pub async fn prune(pool: &PgPool, horizon: DateTime<Utc>) -> Result<Option<Pass>, sqlx::Error> {
    locked(pool, move |conn| {
        Box::pin(async move {
            let mut pass = Pass::default();
            drop_older(conn, horizon, &mut pass).await?;
            Ok(pass)
        })
    })
    .await
}

type Work<'c> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Pass, sqlx::Error>> + Send + 'c>>;

/// Runs `work` holding the maintenance lock on one connection.
async fn locked<F>(pool: &PgPool, work: F) -> Result<Option<Pass>, sqlx::Error>
where
    F: for<'c> FnOnce(&'c mut PgConnection) -> Work<'c>,
{
    let mut conn: PoolConnection<Postgres> = pool.acquire().await?;
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LOCK_KEY)
        .fetch_one(&mut *conn)
        .await?;
    if !got {
        return Ok(None);
    }
    let done = work(&mut conn).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *conn)
        .await;
    if unlocked.is_err() {
        // A session lock lives as long as its connection: never hand this one back.
        conn.close_on_drop();
    }
    done.map(Some)
}

/// A transaction whose statements wait at most [`LOCK_TIMEOUT`] for a table lock.
async fn begin_ddl(
    conn: &mut PgConnection,
) -> Result<sqlx::Transaction<'_, Postgres>, sqlx::Error> {
    let mut tx = sqlx::Connection::begin(conn).await?;
    sqlx::query(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Makes the partition for `range`, moving in what the default partition holds of it;
/// returns how many rows moved.
async fn create(conn: &mut PgConnection, range: Range) -> Result<u64, sqlx::Error> {
    let table = ident(&name(range.from));
    let bounds = format!(
        "FOR VALUES FROM ('{}') TO ('{}')",
        range.from.to_rfc3339(),
        range.to.to_rfc3339()
    );
    let mut tx = begin_ddl(conn).await?;
    let strays: bool = sqlx::query_scalar(&format!(
        "SELECT EXISTS (SELECT 1 FROM {DEFAULT_PARTITION} WHERE event_time >= $1 AND event_time < $2)"
    ))
    .bind(range.from)
    .bind(range.to)
    .fetch_one(&mut *tx)
    .await?;
    let mut moved = 0;
    if strays {
        // Where the partitioned table says its partitions go (a table made apart does not
        // know it by itself).
        let tablespace: Option<String> = sqlx::query_scalar(
            "SELECT t.spcname::text FROM pg_class c JOIN pg_tablespace t ON t.oid = c.reltablespace \
             WHERE c.oid = 'log_events'::regclass",
        )
        .fetch_optional(&mut *tx)
        .await?;
        let tablespace = tablespace
            .map(|t| format!(" TABLESPACE {}", ident(&t)))
            .unwrap_or_default();
        sqlx::query(&format!(
            "CREATE TABLE {table} (LIKE log_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS){tablespace}"
        ))
        .execute(&mut *tx)
        .await?;
        moved = sqlx::query(&format!(
            "WITH moved AS (DELETE FROM {DEFAULT_PARTITION} \
                            WHERE event_time >= $1 AND event_time < $2 RETURNING *) \
             INSERT INTO {table} SELECT * FROM moved"
        ))
        .bind(range.from)
        .bind(range.to)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(&format!(
            "ALTER TABLE log_events ATTACH PARTITION {table} {bounds}"
        ))
        .execute(&mut *tx)
        .await?;
    } else {
        sqlx::query(&format!(
            "CREATE TABLE {table} PARTITION OF log_events {bounds}"
        ))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(moved)
}

/// Drops the partitions wholly older than `horizon`, then the default partition's rows older
/// than it (by replacing the default partition, never by `DELETE`).
async fn drop_older(
    conn: &mut PgConnection,
    horizon: DateTime<Utc>,
    pass: &mut Pass,
) -> Result<(), sqlx::Error> {
    let old: Vec<String> = catalog(conn)
        .await?
        .into_iter()
        .filter(|p| p.range.is_some_and(|r| r.to <= horizon))
        .map(|p| p.name)
        .collect();
    for table in old {
        let mut tx = begin_ddl(conn).await?;
        sqlx::query(&format!("DROP TABLE {}", ident(&table)))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        pass.dropped.push(table);
    }
    let expired: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {DEFAULT_PARTITION} WHERE event_time < $1"
    ))
    .bind(horizon)
    .fetch_one(&mut *conn)
    .await?;
    if expired > 0 {
        let mut tx = begin_ddl(conn).await?;
        sqlx::query(&format!(
            "CREATE TEMPORARY TABLE logctl_default_kept ON COMMIT DROP AS \
             SELECT * FROM {DEFAULT_PARTITION} WHERE event_time >= $1"
        ))
        .bind(horizon)
        .execute(&mut *tx)
        .await?;
        for statement in [
            format!("DROP TABLE {DEFAULT_PARTITION}"),
            format!("CREATE TABLE {DEFAULT_PARTITION} PARTITION OF log_events DEFAULT"),
            "INSERT INTO log_events SELECT * FROM logctl_default_kept".to_owned(),
        ] {
            sqlx::query(&statement).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        pass.expired_from_default = expired as u64;
    }
    Ok(())
}

/// A partition's name as a quoted SQL identifier (names come from the catalog or [`name`]).
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("a time").to_utc()
    }

    fn policy(interval: u64, retention: u64, ahead: u32) -> Result<Policy, PolicyError> {
        Policy::try_from(&RetentionSettings {
            partition_interval_secs: interval,
            retention_secs: retention,
            partitions_ahead: ahead,
        })
    }

    #[test]
    fn settings_are_checked() {
        assert_eq!(policy(90, 600, 1), Err(PolicyError::Interval(90)));
        assert_eq!(policy(0, 600, 1), Err(PolicyError::Interval(0)));
        assert_eq!(
            policy(3600, 60, 1),
            Err(PolicyError::Retention {
                interval: 3600,
                retention: 60
            })
        );
        assert_eq!(policy(60, 600, 0), Err(PolicyError::Ahead));
        assert!(matches!(
            policy(60, 30 * 86_400, 1),
            Err(PolicyError::TooMany(_))
        ));
        assert!(policy(120, 600, 2).is_ok());
    }

    #[test]
    fn days_start_at_midnight_utc_and_run_from_the_horizon_to_ahead() {
        let p = Policy::default();
        let now = at("2026-12-04T15:30:00Z");
        assert_eq!(p.align(now), at("2026-12-04T00:00:00Z"));
        let wanted = p.wanted(now);
        // The horizon (Nov 27 15:30) falls in Nov 27's partition; three after Dec 4's.
        assert_eq!(
            wanted.first().map(|r| r.from),
            Some(at("2026-11-27T00:00:00Z"))
        );
        assert_eq!(
            wanted.last().map(|r| r.to),
            Some(at("2026-12-08T00:00:00Z"))
        );
        assert_eq!(wanted.len(), 11);
        assert_eq!(name(wanted[0].from), "log_events_p20261127_0000");
        assert_eq!(
            p.drop_at(wanted[0]),
            at("2026-12-05T00:00:00Z"),
            "dropped once its last event is a week old"
        );
    }

    #[test]
    fn minutes_long_partitions_for_a_soak() {
        let p = policy(120, 600, 2).expect("valid");
        let now = at("2026-12-04T10:03:10Z");
        let wanted = p.wanted(now);
        assert_eq!(wanted[0].from, at("2026-12-04T09:52:00Z"));
        assert_eq!(
            wanted.last().map(|r| r.to),
            Some(at("2026-12-04T10:08:00Z"))
        );
        assert!(wanted.windows(2).all(|w| w[0].to == w[1].from));
    }

    #[test]
    fn gaps_fill_around_partitions_of_another_width() {
        let r = |a: &str, b: &str| Range {
            from: at(a),
            to: at(b),
        };
        let wanted = [
            r("2026-12-04T00:00:00Z", "2026-12-05T00:00:00Z"),
            r("2026-12-05T00:00:00Z", "2026-12-06T00:00:00Z"),
        ];
        let existing = [
            r("2026-12-04T06:00:00Z", "2026-12-04T12:00:00Z"),
            r("2026-12-05T00:00:00Z", "2026-12-06T00:00:00Z"),
        ];
        assert_eq!(
            gaps(&wanted, &existing),
            vec![
                r("2026-12-04T00:00:00Z", "2026-12-04T06:00:00Z"),
                r("2026-12-04T12:00:00Z", "2026-12-05T00:00:00Z"),
            ]
        );
        assert_eq!(gaps(&wanted, &[]), wanted.to_vec());
        assert!(gaps(&wanted, &wanted).is_empty());
    }

    #[test]
    fn names_are_quoted_as_identifiers() {
        assert_eq!(
            ident("log_events_p20261204_0000"),
            "\"log_events_p20261204_0000\""
        );
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }
}
