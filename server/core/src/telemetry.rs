//! Logs and metrics, set up the same way in every service.
//!
//! Logs are JSON lines when stdout is not a terminal (what `logctl up` and CI collect) and
//! human-readable otherwise. Metrics go to one process-wide Prometheus recorder whose histogram
//! buckets resolve 1 ms to 10 s; every metric is named `logctl_*`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use logctl_contracts::metric;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::trace;

/// Seconds-based latency buckets: 1 ms .. 10 s, roughly 1-2.5-5 per decade.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Counts (batch sizes and the like): 1 .. 10,000.
pub const SIZE_BUCKETS: &[f64] = &[
    1.0, 5.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// Starts logging for `service`; `RUST_LOG` overrides the default `info` filter.
pub fn init_tracing(service: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = if std::io::stdout().is_terminal() {
        builder.try_init()
    } else {
        builder.json().flatten_event(true).try_init()
    };
    if result.is_ok() {
        tracing::info!(service, version = env!("CARGO_PKG_VERSION"), "starting");
    }
}

/// The process's Prometheus recorder, installed on first use. Tests that run several services
/// in one process share it, which is why this is a once-cell rather than an install call.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_size".into()), SIZE_BUCKETS)
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Histograms keep raw samples until drained; unscraped, 10,000 requests/s piled up
            // megabytes of them. Draining each second bounds that to one second's worth.
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    upkeep.run_upkeep();
                });
            // Fails only if another recorder was installed first; its handle is then unused.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Tower middleware of every service: request count and latency by route template, method and
/// status, around the trace context ([`trace::propagate`]) for a service that takes part in
/// traces. One layer for both, not one each: a `from_fn` layer clones the service inside it and
/// boxes a future for every request, and the glue of the gateway's layers was a tenth of its CPU
/// per single event (`logctl bench --profile`).
pub async fn track_http(
    State(tracing): State<Option<Arc<trace::Tracing>>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    // A shared string: cloning it copies no bytes.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let in_flight = in_flight();
    in_flight.increment(1.0);
    let response = match tracing.as_deref() {
        Some(setup) => trace::propagate(setup, request, next).await,
        None => next.run(request).await,
    };
    in_flight.decrement(1.0);
    let (requests, duration) = http_series(
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        &method,
        response.status().as_u16(),
    );
    requests.increment(1);
    duration.record(started.elapsed().as_secs_f64());
    response
}

fn in_flight() -> &'static metrics::Gauge {
    static GAUGE: OnceLock<metrics::Gauge> = OnceLock::new();
    GAUGE.get_or_init(|| metrics::gauge!(metric::HTTP_REQUESTS_IN_FLIGHT))
}

type HttpSeries = (metrics::Counter, metrics::Histogram);

/// The request counter and latency histogram of one route, method and status, resolved once:
/// building their labels and finding them in the registry took four allocations and two map
/// lookups per request (the gateway's requests are a few hundred bytes each). The services
/// install the recorder before they serve, so no handle is resolved before it exists.
fn http_series(route: &str, method: &axum::http::Method, status: u16) -> HttpSeries {
    type ByRoute = HashMap<Box<str>, HashMap<(axum::http::Method, u16), HttpSeries>>;
    static SERIES: OnceLock<RwLock<ByRoute>> = OnceLock::new();
    let series = SERIES.get_or_init(Default::default);
    let key = (method.clone(), status);
    if let Some(found) = series
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(route)
        .and_then(|m| m.get(&key))
    {
        return found.clone();
    }
    let labels = [
        ("route", route.to_owned()),
        ("method", method.as_str().to_owned()),
        ("status", status.to_string()),
    ];
    let resolved = (
        metrics::counter!(metric::HTTP_REQUESTS, &labels),
        metrics::histogram!(metric::HTTP_REQUEST_DURATION, &labels),
    );
    series
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(route.into())
        .or_default()
        .insert(key, resolved.clone());
    resolved
}
