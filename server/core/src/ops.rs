//! The operations endpoints every service exposes, unauthenticated and loopback-bound by
//! default: `/health` (the process is alive), `/health/ready` (its real dependencies answer),
//! `/metrics` (Prometheus text), and the seed's Spring paths `/actuator/health` and
//! `/actuator/prometheus` so existing scrapers and probes keep working.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use futures::future::BoxFuture;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;

/// One dependency's answer to a readiness probe.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Check {
    pub fn up() -> Self {
        Self {
            status: "UP",
            detail: None,
        }
    }

    pub fn down(detail: impl Into<String>) -> Self {
        Self {
            status: "DOWN",
            detail: Some(detail.into()),
        }
    }

    /// Not working, but the service still does its job another way (the producer spooling
    /// while Kafka is away): reported, yet the service stays ready.
    pub fn degraded(detail: impl Into<String>) -> Self {
        Self {
            status: "DEGRADED",
            detail: Some(detail.into()),
        }
    }

    pub fn from_result<E: std::fmt::Display>(r: Result<(), E>) -> Self {
        match r {
            Ok(()) => Self::up(),
            Err(e) => Self::down(e.to_string()),
        }
    }

    fn is_up(&self) -> bool {
        self.status != "DOWN"
    }
}

/// Probes a service's dependencies; each entry names one (`kafka`, `postgres`, `producer`...).
pub type ReadinessProbe =
    Arc<dyn Fn() -> BoxFuture<'static, BTreeMap<&'static str, Check>> + Send + Sync>;

#[derive(Clone)]
struct OpsState {
    service: &'static str,
    metrics: PrometheusHandle,
    readiness: ReadinessProbe,
}

/// The ops routes, to be merged into a service's router.
pub fn router(
    service: &'static str,
    metrics: PrometheusHandle,
    readiness: ReadinessProbe,
) -> Router {
    let state = OpsState {
        service,
        metrics,
        readiness,
    };
    Router::new()
        .route("/health", get(live))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/actuator/health", get(ready))
        .route("/metrics", get(prometheus))
        .route("/actuator/prometheus", get(prometheus))
        .with_state(state)
}

#[derive(Serialize)]
struct Health<'a> {
    status: &'static str,
    service: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    checks: BTreeMap<&'static str, Check>,
}

async fn live(State(s): State<OpsState>) -> impl IntoResponse {
    Json(Health {
        status: "UP",
        service: s.service,
        checks: BTreeMap::new(),
    })
}

async fn ready(State(s): State<OpsState>) -> impl IntoResponse {
    let checks = (s.readiness)().await;
    let up = checks.values().all(Check::is_up);
    let status = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Health {
            status: if up { "UP" } else { "DOWN" },
            service: s.service,
            checks,
        }),
    )
}

async fn prometheus(State(s): State<OpsState>) -> impl IntoResponse {
    let mut text = s.metrics.render();
    text.push_str(&process_metrics());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// RSS and CPU time of this process, read at scrape time under the names Prometheus client
/// libraries use, so standard dashboards work unchanged.
fn process_metrics() -> String {
    let mut out = String::new();
    let me = std::process::id();
    if let Some(rss_kib) = crate::procfs::status_kib(me, "VmRSS") {
        out.push_str("# TYPE process_resident_memory_bytes gauge\n");
        out.push_str(&format!(
            "process_resident_memory_bytes {}\n",
            rss_kib * 1024
        ));
    }
    if let Some(st) = crate::procfs::stat(me) {
        out.push_str("# TYPE process_cpu_seconds_total counter\n");
        out.push_str(&format!("process_cpu_seconds_total {}\n", st.cpu_seconds));
    }
    out
}
