//! The consumer service: Kafka → PostgreSQL, plus the read endpoint for stored events.
//!
//! Guarantee: offsets are committed only after the rows are durable, and the event's id with
//! its event time (fixed at the gateway, carried in the record) is the primary key, so every
//! acknowledged event is stored exactly once even across crashes, redeliveries and rebalances.
//! Each instance also keeps the table's time partitions ([`retention`]).

pub mod dead_letter;
pub mod ingest;
pub mod query;
pub mod retention;
pub mod settings;
pub mod storage;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use logctl_contracts::metric;
use logctl_contracts::schema::partitions::Policy;
use logctl_core::breaker::Breaker;
use logctl_core::kv::Kv;
use logctl_core::lag::{self, LagBoard, LagReader};
use logctl_core::ops::{self, Check, ReadinessProbe};
use logctl_core::telemetry;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::util::Timeout;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::dead_letter::DeadLetters;
use crate::ingest::decode::Decoder;
use crate::ingest::retry::RetryPolicy;
use crate::ingest::sink::StorageSink;
use crate::ingest::source::{BatchSource, KafkaFeed};
use crate::ingest::{Ended, EventConsumer, GroupContext};
use crate::query::cache::Cache;
use crate::query::QueryState;
pub use settings::Settings;
pub use storage::Storage;

/// Consumes and serves until `shutdown`, then finishes and commits the batch in hand.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Installed before any task records a metric, or those values would go nowhere.
    let metrics = telemetry::metrics_handle();
    // Every series from the first scrape, so rules and panels see zeros, not gaps.
    logctl_contracts::metric::register(logctl_contracts::metric::Service::Consumer);
    let policy = Policy::try_from(&settings.storage.retention)
        .map_err(|e| anyhow::anyhow!("storage settings: {e}"))?;
    let storage =
        Storage::connect_lazy(settings.database_url.expose(), settings.database_pool_size)?
            .with_dedup_window(policy.interval())
            .with_parts(
                settings
                    .batch
                    .parts
                    .min(settings.database_pool_size.saturating_sub(1).max(1) as usize),
            );
    // Readiness asks Kafka for metadata through a client of its own, so it keeps working
    // while the group consumer is being recreated.
    let metadata: Arc<BaseConsumer> = Arc::new(settings.kafka.client_config().create()?);
    let lag_board = LagBoard::default();

    let lag_task = tokio::spawn(lag::export(
        LagReader::new(&settings.kafka, &settings.tuning.group_id)?,
        lag::EXPORT_EVERY,
        shutdown.clone(),
        Some(lag_board.clone()),
    ));
    let pool_task = tokio::spawn(report_pool(
        storage.clone(),
        settings.database_pool_size,
        shutdown.clone(),
    ));
    metrics::gauge!(metric::STORAGE_BUDGET).set(settings.storage.budget_bytes as f64);
    let retention_task = tokio::spawn(retention::run(
        storage.clone(),
        policy,
        Duration::from_secs(settings.storage.maintain_every_secs.max(1)),
        shutdown.clone(),
    ));
    let dead_letters = DeadLetters::new(&settings.kafka)?;
    let kv = Kv::new(&settings.redis)?;
    // The cache's breaker closes once Redis answers, also with no reads to try it.
    tokio::spawn({
        let (kv, shutdown) = (kv.clone(), shutdown.clone());
        async move { kv.keep_trying(Duration::from_millis(500), shutdown).await }
    });
    let cache = Cache::new(kv, settings.cache.clone());
    let ingest = tokio::spawn({
        let storage = storage.clone();
        let shutdown = shutdown.clone();
        let settings = settings.clone();
        let cache = cache.clone();
        async move {
            if settings.migrate_on_start
                && !migrate_until_done(&storage, &RetryPolicy::from(&settings.retry), &shutdown)
                    .await
            {
                return Ok(());
            }
            // Partitions for today before the first insert; if this fails, inserts still land
            // (in the default partition) and the next pass sorts them.
            if let Err(e) = retention::pass(&storage, &policy).await {
                tracing::warn!(error = %e, "first partition maintenance failed; inserting anyway");
            }
            let exporter = logctl_core::otlp::Exporter::start(&settings.otlp, "consumer");
            // One sink for the life of the service: its breaker remembers an outage across a
            // recreated Kafka client.
            let sink = StorageSink {
                rows: storage.clone(),
                letters: dead_letters,
                invalidate: cache.clone(),
                breaker: Breaker::new("postgres", settings.breaker.clone()),
                retry: RetryPolicy::from(&settings.retry),
                spans: exporter.clone().map(|e| (e, settings.kafka.topic.clone())),
            };
            loop {
                let consumer: Arc<EventConsumer> = Arc::new(
                    settings
                        .kafka
                        .consumer_config(&settings.tuning)
                        .create_with_context(GroupContext)?,
                );
                consumer.subscribe(&[&settings.kafka.topic])?;
                let source = BatchSource::new(
                    KafkaFeed {
                        consumer: consumer.clone(),
                        topic: settings.kafka.topic.clone(),
                        group_id: settings.tuning.group_id.clone(),
                        decoder: Decoder {
                            limits: settings.limits,
                            max_record_bytes: settings.retry.max_record_bytes,
                        },
                    },
                    settings.batch.clone(),
                    Duration::from_secs(settings.retry.stall_timeout_secs),
                    lag_board.clone(),
                );
                let ended = ingest::run(source, &sink, shutdown.clone()).await;
                if ended == Ended::Shutdown {
                    if let Some(exporter) = &exporter {
                        exporter.finish(settings.shutdown_timeout()).await;
                    }
                    return Ok::<(), rdkafka::error::KafkaError>(());
                }
                metrics::counter!(metric::CONSUMER_CLIENT_RESTARTS).increment(1);
                tracing::error!(
                    "the group lags but this consumer read nothing for {} s: recreating the Kafka consumer",
                    settings.retry.stall_timeout_secs
                );
                // Closing a client leaves its group through the coordinator, and blocks until
                // it has; a wedged client (its coordinator requests never sent, as seen after
                // a broker restart on a loaded machine) would block this task for good. Close
                // it on a thread of its own and go on with a new one.
                let stalled = consumer;
                std::thread::spawn(move || drop(stalled));
            }
        }
    });

    let app = query::router(QueryState {
        storage: storage.clone(),
        cache,
    })
    .merge(ops::router(
        "consumer",
        metrics,
        readiness(storage, metadata, settings.kafka.topic.clone()),
    ))
    .layer(axum::middleware::from_fn_with_state(
        None,
        telemetry::track_http,
    ));
    tracing::info!(addr = %listener.local_addr()?, "consumer listening");
    let mut ingest = ingest;
    let server =
        logctl_core::shutdown::serve(listener, app, shutdown.clone(), settings.shutdown_timeout());
    tokio::pin!(server);
    let ingest_ended = tokio::select! {
        served = &mut server => {
            served?;
            false
        }
        ended = &mut ingest => {
            if !shutdown.is_cancelled() {
                // The loop ends by itself only on a fault (a panic, a failed subscription):
                // exit with an error rather than answer health checks while consuming nothing.
                shutdown.cancel();
                lag_task.abort();
                pool_task.abort();
                retention_task.abort();
                tracing::error!(outcome = ?ended, "the Kafka to PostgreSQL loop stopped unexpectedly");
                anyhow::bail!("the Kafka to PostgreSQL loop stopped unexpectedly: {ended:?}");
            }
            (&mut server).await?;
            true
        }
    };
    if !ingest_ended
        && tokio::time::timeout(settings.shutdown_timeout(), ingest)
            .await
            .is_err()
    {
        tracing::warn!("the current batch did not finish before the shutdown deadline");
    }
    lag_task.abort();
    pool_task.abort();
    retention_task.abort();
    tracing::info!("consumer stopped");
    Ok(())
}

/// Retries migrations while the database is unreachable; `false` if shutdown came first.
async fn migrate_until_done(
    storage: &Storage,
    retry: &RetryPolicy,
    shutdown: &CancellationToken,
) -> bool {
    let mut attempt = 0;
    loop {
        match storage.migrate().await {
            Ok(()) => return true,
            Err(e) => {
                attempt += 1;
                tracing::warn!(error = %e, attempt, "migrations not applied yet; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    _ = tokio::time::sleep(retry.backoff(attempt)) => {}
                }
            }
        }
    }
}

fn readiness(storage: Storage, consumer: Arc<BaseConsumer>, topic: String) -> ReadinessProbe {
    Arc::new(move || {
        let storage = storage.clone();
        let consumer = consumer.clone();
        let topic = topic.clone();
        async move {
            let postgres = tokio::time::timeout(Duration::from_secs(2), storage.ping())
                .await
                .map_err(|_| "timed out".to_owned())
                .and_then(|r| r.map_err(|e| e.to_string()));
            let kafka = tokio::task::spawn_blocking(move || {
                consumer
                    .client()
                    .fetch_metadata(Some(&topic), Timeout::After(Duration::from_secs(2)))
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
            BTreeMap::from([
                ("postgres", Check::from_result(postgres)),
                ("kafka", Check::from_result(kafka)),
            ])
        }
        .boxed()
    })
}

/// Database connections in use and the pool's bound, for the "pool > 80%" alert.
async fn report_pool(storage: Storage, max: u32, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    metrics::gauge!(metric::CONSUMER_DB_POOL_MAX).set(f64::from(max));
    while !shutdown.is_cancelled() {
        tick.tick().await;
        let pool = storage.pool();
        let in_use = pool.size().saturating_sub(pool.num_idle() as u32);
        metrics::gauge!(metric::CONSUMER_DB_POOL_IN_USE).set(f64::from(in_use));
    }
}
