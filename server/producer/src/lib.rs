//! The producer service: HTTP ingest from the gateway → Kafka.
//!
//! It answers for an event only after Kafka acknowledged it (acks=all, idempotent), so an
//! answer of "acknowledged" means the event is in the log and will reach the consumer.

pub mod publisher;
pub mod routes;
pub mod settings;
pub mod spool;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use axum::Router;
use futures::FutureExt;
use logctl_contracts::metric;
use logctl_core::internal_api::PUBLISH_PATH;
use logctl_core::lag::{self, LagReader};
use logctl_core::ops::{self, Check, ReadinessProbe};
use logctl_core::otlp::Exporter;
use logctl_core::{telemetry, trace};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use publisher::Publisher;
pub use settings::Settings;

/// Serves until `shutdown` is cancelled, then stops accepting, lets in-flight requests finish
/// and flushes what Kafka has not yet acknowledged.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Installed before any task records a metric, or those values would go nowhere.
    let metrics = telemetry::metrics_handle();
    // Every series from the first scrape, so rules and panels see zeros, not gaps.
    logctl_contracts::metric::register(logctl_contracts::metric::Service::Producer);
    let spool = if settings.spool_enabled {
        Some(spool::Spool::open(&settings.spool)?)
    } else {
        None
    };
    let publisher = Arc::new(Publisher::new(
        &settings.kafka,
        &settings.tuning,
        settings.breaker.clone(),
        spool,
    )?);
    let exporter = Exporter::start(&settings.otlp, "producer");
    let tracing_setup = trace::Tracing {
        sample_ratio: settings.trace_sample_ratio.clamp(0.0, 1.0),
        exporter: exporter.clone(),
    };
    let lag_reader = LagReader::new(&settings.kafka, &settings.lag_group)?;
    let state = routes::AppState {
        publisher: publisher.clone(),
        max_body_bytes: settings.max_body_bytes,
        tracing: tracing_setup.clone(),
    };
    let app = Router::new()
        .route(PUBLISH_PATH, post(routes::publish))
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .with_state(state)
        .merge(ops::router(
            "producer",
            metrics,
            readiness(publisher.clone()),
        ))
        .layer(axum::middleware::from_fn_with_state(
            Some(Arc::new(tracing_setup)),
            telemetry::track_http,
        ));

    tracing::info!(addr = %listener.local_addr()?, "producer listening");
    let gauge_task = tokio::spawn(report_in_flight(publisher.clone(), shutdown.clone()));
    let lag_task = tokio::spawn(lag::export(
        lag_reader,
        lag::EXPORT_EVERY,
        shutdown.clone(),
        None,
    ));
    let replay_task = tokio::spawn({
        let (publisher, shutdown) = (publisher.clone(), shutdown.clone());
        async move { publisher.replay_spool(shutdown).await }
    });
    logctl_core::shutdown::serve(listener, app, shutdown.clone(), settings.shutdown_timeout())
        .await?;
    gauge_task.abort();
    lag_task.abort();
    let _ = replay_task.await;
    if let Err(e) = publisher.flush(settings.shutdown_timeout()).await {
        tracing::warn!(error = %e, "not every record was acknowledged before shutdown");
    }
    if let Some(exporter) = &exporter {
        exporter.finish(settings.shutdown_timeout()).await;
    }
    tracing::info!("producer stopped");
    Ok(())
}

fn readiness(publisher: Arc<Publisher>) -> ReadinessProbe {
    Arc::new(move || {
        let publisher = publisher.clone();
        async move {
            let kafka = match (
                publisher.check_kafka(Duration::from_secs(2)).await,
                publisher.spool(),
            ) {
                (Ok(()), _) => Check::up(),
                (Err(e), Some(spool)) => Check::degraded(format!(
                    "{e}; accepting into the spool ({} events waiting)",
                    spool.records()
                )),
                (Err(e), None) => Check::down(e),
            };
            BTreeMap::from([("kafka", kafka)])
        }
        .boxed()
    })
}

async fn report_in_flight(publisher: Arc<Publisher>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while !shutdown.is_cancelled() {
        tick.tick().await;
        metrics::gauge!(metric::PRODUCER_KAFKA_IN_FLIGHT).set(publisher.in_flight() as f64);
    }
}
