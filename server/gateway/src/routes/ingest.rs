//! `POST /api/logs` (one event) and `POST /api/logs/batch` (an array): validate, publish
//! through the producer, and answer only once Kafka acknowledged each event.
//!
//! A single event is answered `202 {"id"}`. A batch is answered with one result per item, in
//! order: `202` when every item was accepted, `400` when none was valid, `207` when mixed, and
//! `503` when the producer could not be reached at all (nothing was published).
//!
//! Both need a token with `logs:write` for the events' organization (one event for another
//! organization refuses the whole request: 403, nothing published), and spend one unit of the
//! organization's rate limit per valid event.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use chrono::Utc;
use logctl_core::auth::Scope;
use logctl_core::internal_api::PublishOutcome;
use logctl_core::{ApiError, FieldError, LogEvent, TraceContext};
use serde_json::{json, Value};

use super::access::{authorize, same_org, spend, with_quota};
use super::AppState;
use crate::rate_limit::Bucket;
use crate::upstream::unavailable;

pub async fn post_one(
    State(state): State<AppState>,
    Extension(trace): Extension<TraceContext>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let caller = authorize(&state, &headers, Scope::Write)?;
    let body = body.map_err(|r| ApiError::from_body_rejection(r, state.settings.max_body_bytes))?;
    let value = ApiError::parse_json(&body)?;
    let event = LogEvent::from_json(&value, &state.settings.limits, Utc::now())?;
    same_org(&caller, &event.organization_id)?;
    let quota = spend(&state, &caller.org, Bucket::Write, 1).await?;
    let outcome = state
        .upstream
        .publish(vec![event.clone()], &trace)
        .await?
        .pop()
        .ok_or_else(|| ApiError::Internal("producer answered no outcome".into()))?;
    match outcome.error {
        None => {
            metrics::counter!("logctl_gateway_events_accepted_total").increment(1);
            let response = (StatusCode::ACCEPTED, Json(json!({ "id": event.id }))).into_response();
            Ok(with_quota(response, quota))
        }
        Some(reason) => Err(unavailable("Kafka", reason)),
    }
}

pub async fn post_batch(
    State(state): State<AppState>,
    Extension(trace): Extension<TraceContext>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let caller = authorize(&state, &headers, Scope::Write)?;
    let body = body.map_err(|r| ApiError::from_body_rejection(r, state.settings.max_body_bytes))?;
    let value = ApiError::parse_json(&body)?;
    let items = value
        .as_array()
        .ok_or_else(|| FieldError::new("body", "expected a JSON array of events"))?;
    if items.is_empty() {
        return Err(FieldError::new("body", "the batch is empty").into());
    }
    if items.len() > state.settings.max_batch {
        return Err(FieldError::new(
            "body",
            format!(
                "the batch has {} events; at most {} are allowed",
                items.len(),
                state.settings.max_batch
            ),
        )
        .into());
    }

    let now = Utc::now();
    let parsed: Vec<Result<LogEvent, FieldError>> = items
        .iter()
        .map(|item| LogEvent::from_json(item, &state.settings.limits, now))
        .collect();
    let valid: Vec<LogEvent> = parsed
        .iter()
        .filter_map(|p| p.as_ref().ok().cloned())
        .collect();
    for event in &valid {
        same_org(&caller, &event.organization_id)?;
    }
    let none_valid = valid.is_empty();
    let (mut outcomes, quota) = if none_valid {
        (Vec::new(), None)
    } else {
        let quota = spend(&state, &caller.org, Bucket::Write, valid.len() as u64).await?;
        (state.upstream.publish(valid, &trace).await?, quota)
    };
    let mut outcomes = outcomes.drain(..);

    let mut accepted = 0usize;
    let results: Vec<Value> = parsed
        .into_iter()
        .enumerate()
        .map(|(index, p)| match p {
            Err(e) => json!({"index": index, "status": 400, "error": ApiError::from(e).to_json()}),
            Ok(_) => match outcomes.next() {
                Some(PublishOutcome {
                    id, error: None, ..
                }) => {
                    accepted += 1;
                    json!({"index": index, "status": 202, "id": id})
                }
                Some(PublishOutcome {
                    id,
                    error: Some(reason),
                    ..
                }) => json!({
                    "index": index, "status": 503, "id": id,
                    "error": unavailable("Kafka", reason).to_json()
                }),
                None => json!({"index": index, "status": 500}),
            },
        })
        .collect();
    metrics::counter!("logctl_gateway_events_accepted_total").increment(accepted as u64);

    let rejected = results.len() - accepted;
    let status = match (accepted, rejected) {
        (_, 0) => StatusCode::ACCEPTED,
        (0, _) if none_valid => StatusCode::BAD_REQUEST,
        (0, _) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::MULTI_STATUS,
    };
    let body = json!({"accepted": accepted, "rejected": rejected, "results": results});
    Ok(with_quota((status, Json(body)).into_response(), quota))
}
