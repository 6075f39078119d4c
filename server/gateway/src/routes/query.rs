//! The read API: `GET /api/logs` (filtered, newest first, keyset pages), `GET /api/logs/{id}`
//! and `GET /api/stats`. Parameters are checked here (400 naming the parameter) and the
//! canonical query goes to the query service with the token's organization, so a caller can
//! only ever read its own organization's events, whatever it asks.

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use logctl_contracts::read_api::{internal_query, LogQuery, StatsQuery, LOGS_PATH, STATS_PATH};
use logctl_core::auth::Principal;
use logctl_core::{parse_id, ApiError, TraceContext};

use super::access::{spend, with_quota, Caller, Read};
use super::AppState;
use crate::rate_limit::Bucket;

/// Spends one read from the caller's allowance and relays `path?org=...&canonical` from the
/// query service.
async fn relay(
    state: &AppState,
    trace: &TraceContext,
    caller: &Principal,
    path: &str,
    canonical: &str,
) -> Result<Response, ApiError> {
    let quota = spend(state, &caller.org, Bucket::Read, 1).await?;
    let target = format!("{path}?{}", internal_query(&caller.org, canonical));
    let body = state.upstream.read(&target, trace).await?;
    Ok(with_quota(Json(body).into_response(), quota))
}

pub async fn list_events(
    State(state): State<AppState>,
    Extension(trace): Extension<TraceContext>,
    caller: Caller<Read>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query = LogQuery::parse(raw.as_deref())?;
    relay(&state, &trace, &caller, LOGS_PATH, &query.canonical()).await
}

pub async fn get_event(
    State(state): State<AppState>,
    Extension(trace): Extension<TraceContext>,
    caller: Caller<Read>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    relay(&state, &trace, &caller, &format!("{LOGS_PATH}/{id}"), "").await
}

pub async fn stats(
    State(state): State<AppState>,
    Extension(trace): Extension<TraceContext>,
    caller: Caller<Read>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query = StatsQuery::parse(raw.as_deref())?;
    relay(&state, &trace, &caller, STATS_PATH, &query.canonical()).await
}
