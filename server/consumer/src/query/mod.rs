//! The read API the gateway proxies to: one event, pages of events, per-level/source stats,
//! always within the organization the gateway took from the caller's token (`org=`).
//! Reads go through the Redis cache ([`cache`]) and fall back to PostgreSQL alone.

pub mod cache;

use std::future::Future;
use std::time::{Duration, Instant};

use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use logctl_contracts::metric;
use logctl_contracts::read_api::{
    split_internal, LogQuery, Page, Stats, StatsQuery, LOGS_PATH, STATS_PATH,
};
use logctl_core::{parse_id, ApiError};

use crate::storage::{Storage, StorageError, StoredEvent};
use cache::{Cache, Kind};

/// A read that takes longer is answered 503: the gateway's breaker then sees it.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct QueryState {
    pub storage: Storage,
    pub cache: Cache,
}

pub fn router(state: QueryState) -> Router {
    Router::new()
        .route(LOGS_PATH, get(list_events))
        .route(&format!("{LOGS_PATH}/{{id}}"), get(get_event))
        .route(STATS_PATH, get(stats))
        .with_state(state)
}

async fn list_events(
    State(state): State<QueryState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Page<StoredEvent>>, ApiError> {
    let (org, rest) = split_internal(raw.as_deref())?;
    let query = LogQuery::parse(Some(&rest))?;
    let key = query.canonical();
    let storage = state.storage.clone();
    timed("logs", async {
        state
            .cache
            .get_or_load(Kind::Page, &org, &key, || async {
                storage.page(&org, &query).await
            })
            .await
    })
    .await
    .map(Json)
}

async fn get_event(
    State(state): State<QueryState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<StoredEvent>, ApiError> {
    let (org, _) = split_internal(raw.as_deref())?;
    let id = parse_id(&id)?;
    let storage = state.storage.clone();
    // Absent is not cached: the event may be stored a moment later.
    let found: Option<StoredEvent> = timed("event", async {
        state
            .cache
            .get_or_load(Kind::Event, &org, &id.to_string(), || async {
                match storage.get(&org, id).await {
                    Ok(Some(e)) => Ok(e),
                    Ok(None) => Err(None),
                    Err(e) => Err(Some(e)),
                }
            })
            .await
            .map(Some)
            .or_else(|e| match e {
                None => Ok(None),
                Some(e) => Err(e),
            })
    })
    .await?;
    found
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("event {id}")))
}

async fn stats(
    State(state): State<QueryState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Stats>, ApiError> {
    let (org, rest) = split_internal(raw.as_deref())?;
    let query = StatsQuery::parse(Some(&rest))?;
    let key = query.canonical();
    let storage = state.storage.clone();
    timed("stats", async {
        state
            .cache
            .get_or_load(Kind::Stats, &org, &key, || async {
                storage.stats(&org, query.since).await
            })
            .await
    })
    .await
    .map(Json)
}

/// Bounds a read, records its latency, and turns a database failure into a 503.
async fn timed<T>(
    endpoint: &'static str,
    read: impl Future<Output = Result<T, StorageError>>,
) -> Result<T, ApiError> {
    let started = Instant::now();
    let outcome = tokio::time::timeout(READ_TIMEOUT, read)
        .await
        .unwrap_or(Err(StorageError::TimedOut(READ_TIMEOUT)));
    metrics::histogram!(metric::QUERY_DURATION, "endpoint" => endpoint)
        .record(started.elapsed().as_secs_f64());
    outcome.map_err(|e| ApiError::Unavailable {
        what: "database".into(),
        reason: e.to_string(),
        retry_after_secs: 1,
    })
}
