//! `logctl storage`: how the stack keeps events, read from PostgreSQL's catalog and Kafka's
//! topic configs, and retention by hand (`prune`). The partition work itself is the one the
//! consumers run (`logctl_contracts::schema::partitions`), so by hand and by schedule it is
//! the same code under the same lock.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use logctl_contracts::schema::partitions::{self, PartitionInfo, Pass, Policy, DEFAULT_PARTITION};
use logctl_core::kafka::{KafkaSettings, TopicRetentionView};

use crate::units::thousands;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub retention_secs: i64,
    pub partition_interval_secs: i64,
    /// Oldest first, the default partition first of all.
    pub partitions: Vec<PartitionInfo>,
    pub rows: i64,
    pub bytes: i64,
    /// Whether `rows` are exact counts or PostgreSQL's estimates.
    pub exact: bool,
    /// The start of the oldest partition: no event older than this is kept (but in the default
    /// partition).
    pub oldest_kept: Option<DateTime<Utc>>,
    /// The next partition to go, and when.
    pub next_drop: Option<NextDrop>,
    /// The topics' retention, or why it could not be read.
    pub kafka: Result<Vec<TopicRetentionView>, String>,
    /// On a stack with an events volume (`up --postgres-disk`): its size and free bytes.
    pub volume: Option<Volume>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Volume {
    pub bytes: u64,
    pub free: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NextDrop {
    pub partition: String,
    pub at: DateTime<Utc>,
}

pub async fn report(
    pool: &PgPool,
    policy: &Policy,
    kafka: &KafkaSettings,
    exact: bool,
) -> anyhow::Result<Report> {
    let parts = partitions::list(pool, exact).await?;
    let oldest = parts
        .iter()
        .find_map(|p| p.range.map(|r| (p.name.clone(), r)));
    let kafka = kafka
        .topic_retention(Duration::from_secs(10))
        .await
        .map_err(|e| format!("cannot read the topics' configs: {e}"));
    Ok(Report {
        retention_secs: policy.retention().num_seconds(),
        partition_interval_secs: policy.interval().num_seconds(),
        rows: parts.iter().map(|p| p.rows).sum(),
        bytes: parts.iter().map(|p| p.bytes).sum(),
        exact,
        oldest_kept: oldest.as_ref().map(|(_, r)| r.from),
        next_drop: oldest.map(|(partition, r)| NextDrop {
            partition,
            at: policy.drop_at(r),
        }),
        partitions: parts,
        kafka,
        volume: None,
    })
}

pub fn render(r: &Report) -> String {
    let mut out = format!(
        "PostgreSQL log_events: {} partitions of {}, kept {} (by event time); {} rows{}, {}\n\n",
        r.partitions.iter().filter(|p| p.range.is_some()).count(),
        span(r.partition_interval_secs),
        span(r.retention_secs),
        thousands(r.rows as f64),
        if r.exact { "" } else { " (estimated)" },
        bytes(r.bytes),
    );
    out.push_str(&format!(
        "{:<28} {:<17} {:<17} {:>12} {:>10}\n",
        "partition", "from (UTC)", "to", "rows", "size"
    ));
    let when = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M").to_string();
    for p in &r.partitions {
        let (from, to) = match p.range {
            Some(range) => (when(range.from), when(range.to)),
            None => ("(anything else)".to_owned(), String::new()),
        };
        out.push_str(&format!(
            "{:<28} {:<17} {:<17} {:>12} {:>10}\n",
            p.name,
            from,
            to,
            thousands(p.rows as f64),
            bytes(p.bytes)
        ));
    }
    out.push('\n');
    if let Some(t) = r.oldest_kept {
        out.push_str(&format!("oldest kept: events from {} UTC\n", when(t)));
    }
    if let Some(d) = &r.next_drop {
        out.push_str(&format!(
            "next drop:   {} at {} UTC (a consumer's next pass after it)\n",
            d.partition,
            when(d.at)
        ));
    }
    match &r.kafka {
        Ok(topics) => {
            for t in topics {
                out.push_str(&format!(
                    "Kafka {:<16} retention.ms {} ({}), retention.bytes {}\n",
                    t.topic,
                    t.retention_ms.map_or("?".to_owned(), |ms| ms.to_string()),
                    t.retention_ms.map_or("?".to_owned(), |ms| span(ms / 1000)),
                    match t.retention_bytes {
                        Some(b) if b >= 0 => bytes(b),
                        Some(_) => "none".to_owned(),
                        None => "?".to_owned(),
                    }
                ));
            }
        }
        Err(e) => out.push_str(&format!("Kafka: {e}\n")),
    }
    if let Some(v) = r.volume {
        out.push_str(&format!(
            "events volume: {} free of {}\n",
            bytes(v.free as i64),
            bytes(v.bytes as i64)
        ));
    }
    out
}

/// What a prune dropped, or with `--dry-run` would drop.
#[derive(Debug, Clone, Serialize)]
pub struct Pruned {
    pub horizon: DateTime<Utc>,
    pub dry_run: bool,
    pub partitions: Vec<String>,
    pub rows: i64,
    pub bytes: i64,
    /// Rows of the default partition older than the horizon.
    pub from_default: u64,
}

pub async fn prune(pool: &PgPool, older_than: Duration, dry_run: bool) -> anyhow::Result<Pruned> {
    let horizon = Utc::now() - chrono::TimeDelta::from_std(older_than)?;
    let before = partitions::list(pool, false).await?;
    let going: Vec<&PartitionInfo> = before
        .iter()
        .filter(|p| p.range.is_some_and(|r| r.to <= horizon))
        .collect();
    let mut pruned = Pruned {
        horizon,
        dry_run,
        partitions: going.iter().map(|p| p.name.clone()).collect(),
        rows: going.iter().map(|p| p.rows).sum(),
        bytes: going.iter().map(|p| p.bytes).sum(),
        from_default: 0,
    };
    if dry_run {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {DEFAULT_PARTITION} WHERE event_time < $1"
        ))
        .bind(horizon)
        .fetch_one(pool)
        .await?;
        pruned.from_default = n.max(0) as u64;
        return Ok(pruned);
    }
    let pass: Pass = locked_prune(pool, horizon).await?;
    pruned.partitions = pass.dropped;
    pruned.from_default = pass.expired_from_default;
    Ok(pruned)
}

/// Waits up to 30 s for a consumer's pass to finish with the lock.
async fn locked_prune(pool: &PgPool, horizon: DateTime<Utc>) -> anyhow::Result<Pass> {
    for _ in 0..60 {
        if let Some(pass) = partitions::prune(pool, horizon).await? {
            return Ok(pass);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    anyhow::bail!("a consumer's maintenance pass held the partitions' lock for 30 s; try again")
}

pub fn render_prune(p: &Pruned) -> String {
    let verb = if p.dry_run { "would drop" } else { "dropped" };
    let mut out = format!(
        "events older than {} UTC: {verb} {} partition(s), {} rows, {}",
        p.horizon.format("%Y-%m-%d %H:%M:%S"),
        p.partitions.len(),
        thousands(p.rows as f64),
        bytes(p.bytes)
    );
    if p.from_default > 0 {
        out.push_str(&format!(
            ", and {} row(s) of the default partition",
            thousands(p.from_default as f64)
        ));
    }
    out.push('\n');
    for name in &p.partitions {
        out.push_str(&format!("  {name}\n"));
    }
    out
}

/// `7d`, `6h`, `2m`, `90s`.
fn span(secs: i64) -> String {
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs >= size && secs % size == 0 {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

fn bytes(b: i64) -> String {
    let b = b as f64;
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if b >= size as f64 {
            return format!("{:.1} {unit}", b / size as f64);
        }
    }
    format!("{b} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_sizes_read_plainly() {
        assert_eq!(span(7 * 86_400), "7d");
        assert_eq!(span(6 * 3_600), "6h");
        assert_eq!(span(120), "2m");
        assert_eq!(span(90), "90s");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
    }
}
