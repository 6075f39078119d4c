//! The control API, in Toxiproxy's spirit: list the links, set, add and clear their faults.
//! Every refusal is the stack's JSON error naming the field.
//!
//! - `GET /proxies`: each link with its faults and counters
//! - `PUT /proxies/{name}/faults`: replace its faults with the JSON array given
//! - `POST /proxies/{name}/faults`: add one fault
//! - `DELETE /proxies/{name}/faults`, `DELETE /faults`: clear one link, or all

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use logctl_contracts::event::FieldError;
use logctl_core::api_error::ApiError;
use serde::{Deserialize, Serialize};

use crate::fault::{Fault, FaultError};
use crate::proxy::Proxy;

pub type Links = Arc<BTreeMap<String, Arc<Proxy>>>;

/// One link as the API shows it; `logctl status` reads it back.
#[derive(Debug, Serialize, Deserialize)]
pub struct LinkView {
    pub name: String,
    pub listen: String,
    pub upstream: String,
    pub faults: Vec<Fault>,
    pub connections: u64,
    pub open: u64,
    pub bytes_upstream: u64,
    pub bytes_downstream: u64,
    pub resets: u64,
}

fn view(p: &Proxy) -> LinkView {
    let c = p.counters();
    LinkView {
        name: p.name().to_owned(),
        listen: p.listen_addr().to_string(),
        upstream: p.upstream().to_string(),
        faults: p.faults(),
        connections: c.connections.load(Ordering::Relaxed),
        open: c.open.load(Ordering::Relaxed),
        bytes_upstream: c.bytes_upstream.load(Ordering::Relaxed),
        bytes_downstream: c.bytes_downstream.load(Ordering::Relaxed),
        resets: c.resets.load(Ordering::Relaxed),
    }
}

pub fn router(links: Links) -> Router<()> {
    Router::new()
        .route("/proxies", get(list))
        .route(
            "/proxies/{name}/faults",
            get(faults).put(replace).post(add).delete(clear),
        )
        .route("/faults", delete(clear_all))
        .route("/health/ready", get(|| async { "ok" }))
        .route("/health/live", get(|| async { "ok" }))
        .with_state(links)
}

fn link(links: &Links, name: &str) -> Result<Arc<Proxy>, ApiError> {
    links
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("proxy {name:?}")))
}

fn invalid(e: FaultError) -> ApiError {
    ApiError::InvalidField(FieldError::new(e.field(), e.to_string()))
}

async fn list(State(links): State<Links>) -> Json<Vec<LinkView>> {
    Json(links.values().map(|p| view(p)).collect())
}

async fn faults(
    State(links): State<Links>,
    Path(name): Path<String>,
) -> Result<Json<Vec<Fault>>, ApiError> {
    Ok(Json(link(&links, &name)?.faults()))
}

async fn replace(
    State(links): State<Links>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<LinkView>, ApiError> {
    let p = link(&links, &name)?;
    let items: Vec<serde_json::Value> = serde_json::from_slice(&body)
        .map_err(|e| ApiError::MalformedJson(format!("expected an array of faults: {e}")))?;
    let parsed = items
        .into_iter()
        .map(|v| Fault::from_value(v).map_err(invalid))
        .collect::<Result<Vec<_>, _>>()?;
    p.set(parsed);
    Ok(Json(view(&p)))
}

async fn add(
    State(links): State<Links>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<LinkView>), ApiError> {
    let p = link(&links, &name)?;
    p.add(Fault::from_json(&body).map_err(invalid)?);
    Ok((StatusCode::CREATED, Json(view(&p))))
}

async fn clear(
    State(links): State<Links>,
    Path(name): Path<String>,
) -> Result<Json<LinkView>, ApiError> {
    let p = link(&links, &name)?;
    p.clear();
    Ok(Json(view(&p)))
}

async fn clear_all(State(links): State<Links>) -> Json<Vec<LinkView>> {
    for p in links.values() {
        p.clear();
    }
    Json(links.values().map(|p| view(p)).collect())
}
