//! The gateway: the public HTTP entry of the pipeline.
//!
//! It validates every event at the edge (so nothing invalid reaches Kafka), gives it an id and
//! a receive time, and answers only after the producer reports Kafka's acknowledgement.

pub mod admission;
pub mod coalesce;
pub mod producers;
pub mod rate_limit;
pub mod routes;
pub mod settings;
pub mod upstream;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use futures::FutureExt;
use logctl_core::auth::Verifier;
use logctl_core::kv::Kv;
use logctl_core::ops::{self, Check, ReadinessProbe};
use logctl_core::otlp::Exporter;
use logctl_core::{telemetry, trace};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use rate_limit::RateLimiter;
pub use settings::Settings;
use upstream::Upstream;

/// The gateway's router, built apart from serving so tests can drive it in-process; its
/// background work (trying Redis again) stops on `shutdown`.
pub fn app(settings: Settings, shutdown: &CancellationToken) -> anyhow::Result<Router> {
    Ok(build(settings, shutdown)?.0)
}

/// The router and the span exporter it records to (flushed at shutdown).
fn build(
    settings: Settings,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Router, Option<Exporter>)> {
    let metrics = telemetry::metrics_handle();
    // Every series from the first scrape, so rules and panels see zeros, not gaps.
    logctl_contracts::metric::register(logctl_contracts::metric::Service::Gateway);
    let upstream = Upstream::new(&settings)?;
    let verifier = Verifier::new(&settings.auth)?;
    let kv = Kv::new(&settings.redis)?;
    // Back to Redis as soon as it answers, whether or not requests come meanwhile.
    tokio::spawn({
        let (kv, shutdown) = (kv.clone(), shutdown.clone());
        async move { kv.keep_trying(KV_TRIAL_EVERY, shutdown).await }
    });
    let limiter = RateLimiter::new(settings.rate_limit.clone(), kv.clone());
    // Leased tokens nobody spent go back to the shared bucket (all of them at shutdown).
    tokio::spawn({
        let (limiter, shutdown) = (limiter.clone(), shutdown.clone());
        async move { limiter.keep_leases(shutdown).await }
    });
    let exporter = Exporter::start(&settings.otlp, "gateway");
    let tracing_setup = trace::Tracing {
        sample_ratio: settings.trace_sample_ratio.clamp(0.0, 1.0),
        exporter: exporter.clone(),
    };
    let state = Arc::new(routes::App {
        settings: settings.clone(),
        upstream: upstream.clone(),
        verifier,
        limiter,
    });
    let router = Router::new()
        .route(
            "/api/logs",
            post(routes::ingest::post_one).get(routes::query::list_events),
        )
        .route("/api/logs/batch", post(routes::ingest::post_batch))
        .route("/api/logs/{id}", get(routes::query::get_event))
        .route("/api/stats", get(routes::query::stats))
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            admission::Admission::new(settings.max_in_flight, settings.max_in_flight_bytes),
            admission::admit,
        ))
        .with_state(state)
        .merge(ops::router("gateway", metrics, readiness(upstream, kv)))
        .layer(axum::middleware::from_fn_with_state(
            Some(Arc::new(tracing_setup)),
            telemetry::track_http,
        ));
    Ok((router, exporter))
}

/// How often an open Redis breaker is tried with no traffic to do it.
const KV_TRIAL_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Serves until `shutdown`, then stops accepting and lets in-flight requests finish.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let deadline = settings.shutdown_timeout();
    let (app, exporter) = build(settings, &shutdown)?;
    tracing::info!(addr = %listener.local_addr()?, "gateway listening");
    logctl_core::shutdown::serve(listener, app, shutdown, deadline).await?;
    if let Some(exporter) = &exporter {
        exporter.finish(deadline).await;
    }
    tracing::info!("gateway stopped");
    Ok(())
}

/// Ready while it can take events: a load balancer routes by this, so only a gateway that
/// cannot publish is taken out. The read path (the consumers' query API) and Redis are
/// reported but only degrade it: with the consumers away events still queue in Kafka, and
/// without Redis limits are kept per replica in memory.
fn readiness(upstream: Upstream, kv: Kv) -> ReadinessProbe {
    Arc::new(move || {
        let (upstream, kv) = (upstream.clone(), kv.clone());
        async move {
            let (producer, query, redis) =
                tokio::join!(upstream.producer_ready(), upstream.query_ready(), kv.ping());
            let query = match query {
                Ok(()) => Check::up(),
                Err(e) => Check::degraded(format!("reads unavailable, writes go on: {e}")),
            };
            let redis = match redis {
                Ok(()) => Check::up(),
                Err(e) => Check::degraded(format!("rate limiting per replica in memory: {e}")),
            };
            BTreeMap::from([
                ("producer", Check::from_result(producer)),
                ("query", query),
                ("redis", redis),
            ])
        }
        .boxed()
    })
}
