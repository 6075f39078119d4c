//! The events table's upkeep: partitions made ahead of time and dropped past the retention
//! (the work itself is in `logctl_contracts::schema::partitions`, shared with `logctl storage`),
//! and the storage gauges every consumer exports after each pass.
//!
//! Every instance runs the loop; the pass's advisory lock lets one of them work at a time,
//! and the others only read the catalog for their gauges. A failed pass (the database down, a
//! lock not granted in time) is logged, counted, and tried again at the next tick: inserts
//! never wait on it, since an event no partition covers lands in the default partition.

use chrono::Utc;
use logctl_contracts::metric;
use logctl_contracts::schema::partitions::{self, Pass, Policy, DEFAULT_PARTITION};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::Storage;

/// Runs a pass every `every` until shutdown (the ingest loop runs the first, before it
/// consumes).
pub async fn run(storage: Storage, policy: Policy, every: Duration, shutdown: CancellationToken) {
    metrics::gauge!(metric::STORAGE_RETENTION).set(policy.retention().num_seconds() as f64);
    metrics::gauge!(metric::STORAGE_PARTITION_INTERVAL).set(policy.interval().num_seconds() as f64);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = pass(&storage, &policy).await {
            metrics::counter!(metric::STORAGE_MAINTENANCE_FAILURES).increment(1);
            tracing::warn!(error = %e, "partition maintenance failed; trying again at the next pass");
        }
    }
}

/// One pass and the gauges after it.
pub async fn pass(storage: &Storage, policy: &Policy) -> Result<Option<Pass>, sqlx::Error> {
    let now = Utc::now();
    let done = partitions::maintain(storage.pool(), policy, now).await?;
    if let Some(pass) = &done {
        report(pass);
    }
    export_gauges(storage, now).await?;
    Ok(done)
}

fn report(pass: &Pass) {
    metrics::counter!(metric::STORAGE_PARTITIONS_CREATED).increment(pass.created.len() as u64);
    metrics::counter!(metric::STORAGE_PARTITIONS_DROPPED).increment(pass.dropped.len() as u64);
    if !pass.created.is_empty() {
        tracing::info!(partitions = ?pass.created, moved_from_default = pass.moved, "partitions created");
    }
    if !pass.dropped.is_empty() || pass.expired_from_default > 0 {
        tracing::info!(
            partitions = ?pass.dropped,
            expired_from_default = pass.expired_from_default,
            "partitions past the retention dropped"
        );
    }
}

async fn export_gauges(storage: &Storage, now: chrono::DateTime<Utc>) -> Result<(), sqlx::Error> {
    let parts = partitions::list(storage.pool(), false).await?;
    let ranged = parts.iter().filter(|p| p.range.is_some()).count();
    let bytes: i64 = parts.iter().map(|p| p.bytes).sum();
    let oldest = parts.iter().filter_map(|p| p.range).map(|r| r.from).min();
    let default_rows = parts
        .iter()
        .find(|p| p.name == DEFAULT_PARTITION)
        .map_or(0, |p| p.rows);
    metrics::gauge!(metric::STORAGE_PARTITIONS).set(ranged as f64);
    metrics::gauge!(metric::STORAGE_TABLE_BYTES).set(bytes as f64);
    metrics::gauge!(metric::STORAGE_OLDEST_PARTITION_AGE)
        .set(oldest.map_or(0.0, |from| (now - from).num_seconds().max(0) as f64));
    metrics::gauge!(metric::STORAGE_DEFAULT_PARTITION_ROWS).set(default_rows as f64);
    Ok(())
}
