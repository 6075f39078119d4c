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

use std::sync::OnceLock;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use chrono::Utc;
use logctl_contracts::metric;
use logctl_core::internal_api::PublishOutcome;
use logctl_core::{ApiError, FieldError, LogEvent, TraceContext};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use uuid::Uuid;

use super::access::{same_org, spend, with_quota, Caller, Write};
use super::AppState;
use crate::rate_limit::Bucket;
use crate::upstream::unavailable;

pub async fn post_one(
    State(state): State<AppState>,
    Extension(trace): Extension<TraceContext>,
    caller: Caller<Write>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|r| ApiError::from_body_rejection(r, state.settings.max_body_bytes))?;
    let (limits, now) = (&state.settings.limits, Utc::now());
    let event = match LogEvent::from_json_bytes(&body, limits, now) {
        Some(event) => event?,
        None => LogEvent::from_json(&ApiError::parse_json(&body)?, limits, now)?,
    };
    same_org(&caller, &event.organization_id)?;
    let quota = spend(&state, &caller.org, Bucket::Write, 1).await?;
    let id = event.id;
    let outcome = state
        .upstream
        .publish(vec![event], &trace)
        .await?
        .pop()
        .ok_or_else(|| ApiError::Internal("producer answered no outcome".into()))?;
    match outcome.error {
        None => {
            accepted_counter().increment(1);
            let response = (StatusCode::ACCEPTED, Json(Accepted { id })).into_response();
            Ok(with_quota(response, quota))
        }
        Some(reason) => Err(unavailable("Kafka", reason)),
    }
}

pub async fn post_batch(
    State(state): State<AppState>,
    Extension(trace): Extension<TraceContext>,
    caller: Caller<Write>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|r| ApiError::from_body_rejection(r, state.settings.max_body_bytes))?;
    let batch = parse_batch(&state, &body)?;
    for event in &batch.valid {
        same_org(&caller, &event.organization_id)?;
    }
    let (total, invalid) = (batch.total, batch.invalid);
    let (outcomes, quota) = if batch.valid.is_empty() {
        (None, None)
    } else {
        let cost = batch.valid.len() as u64;
        let quota = spend(&state, &caller.org, Bucket::Write, cost).await?;
        (
            Some(state.upstream.publish(batch.valid, &trace).await?),
            quota,
        )
    };
    let (status, answer) = answer(total, invalid, outcomes);
    accepted_counter().increment(answer.accepted as u64);
    Ok(with_quota((status, Json(answer)).into_response(), quota))
}

/// The accepted-events counter, found in the registry once rather than for every request.
fn accepted_counter() -> &'static metrics::Counter {
    static COUNTER: OnceLock<metrics::Counter> = OnceLock::new();
    COUNTER.get_or_init(|| metrics::counter!(metric::GATEWAY_EVENTS_ACCEPTED))
}

/// A batch read and validated item by item: the valid events in order, and the others with why.
struct Batch {
    total: usize,
    valid: Vec<LogEvent>,
    invalid: Vec<(usize, FieldError)>,
}

fn parse_batch(state: &AppState, body: &Bytes) -> Result<Batch, ApiError> {
    let items = batch_items(body)?;
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
    // Each item is parsed and validated on its own, so only one item's JSON tree exists at a
    // time: the whole batch as one tree took several times the body's size, for every batch
    // in flight (most of the gateway's memory under batched load).
    let (limits, now) = (&state.settings.limits, Utc::now());
    let mut valid = Vec::with_capacity(items.len());
    let mut invalid: Vec<(usize, FieldError)> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let event =
            LogEvent::from_json_bytes(item.get().as_bytes(), limits, now).unwrap_or_else(|| {
                serde_json::from_str::<Value>(item.get())
                    .map_err(|e| FieldError::new("body", e.to_string()))
                    .and_then(|v| LogEvent::from_json(&v, limits, now))
            });
        match event {
            Ok(event) => valid.push(event),
            Err(e) => invalid.push((index, e)),
        }
    }
    Ok(Batch {
        total: items.len(),
        valid,
        invalid,
    })
}

/// One result per item, in order (the producer's outcomes fill the valid items' places), and
/// the batch's status: 202 all accepted, 400 none valid, 503 none published, 207 mixed.
/// `outcomes` is None when no item was valid (nothing was published).
fn answer(
    total: usize,
    invalid: Vec<(usize, FieldError)>,
    outcomes: Option<Vec<PublishOutcome>>,
) -> (StatusCode, BatchAnswer) {
    let none_valid = outcomes.is_none();
    let mut outcomes = outcomes.unwrap_or_default().into_iter();
    let mut invalid = invalid.into_iter().peekable();
    let mut accepted = 0usize;
    let mut results = Vec::with_capacity(total);
    for index in 0..total {
        let result = match invalid.next_if(|(i, _)| *i == index) {
            Some((_, e)) => ItemResult::refused(index, 400, None, ApiError::from(e)),
            None => match outcomes.next() {
                Some(PublishOutcome {
                    id, error: None, ..
                }) => {
                    accepted += 1;
                    ItemResult {
                        index,
                        status: 202,
                        id: Some(id),
                        error: None,
                    }
                }
                Some(PublishOutcome {
                    id,
                    error: Some(reason),
                    ..
                }) => ItemResult::refused(index, 503, Some(id), unavailable("Kafka", reason)),
                None => ItemResult {
                    index,
                    status: 500,
                    id: None,
                    error: None,
                },
            },
        };
        results.push(result);
    }
    let rejected = results.len() - accepted;
    let status = match (accepted, rejected) {
        (_, 0) => StatusCode::ACCEPTED,
        (0, _) if none_valid => StatusCode::BAD_REQUEST,
        (0, _) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::MULTI_STATUS,
    };
    (
        status,
        BatchAnswer {
            accepted,
            rejected,
            results,
        },
    )
}

/// The batch's items, each still unparsed. On failure, says what is wrong as the whole-body
/// parse would: malformed JSON, or JSON that is not an array.
fn batch_items(body: &Bytes) -> Result<Vec<&RawValue>, ApiError> {
    match serde_json::from_slice::<Vec<&RawValue>>(body) {
        Ok(items) => Ok(items),
        Err(e) => {
            let value = ApiError::parse_json(body)?;
            if value.is_array() {
                Err(ApiError::MalformedJson(e.to_string()))
            } else {
                Err(FieldError::new("body", "expected a JSON array of events").into())
            }
        }
    }
}

/// A single event's answer (a struct: `json!` built a map for it).
#[derive(Serialize)]
struct Accepted {
    id: Uuid,
}

#[derive(Serialize)]
struct BatchAnswer {
    accepted: usize,
    rejected: usize,
    results: Vec<ItemResult>,
}

#[derive(Serialize)]
struct ItemResult {
    index: usize,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
}

impl ItemResult {
    fn refused(index: usize, status: u16, id: Option<Uuid>, error: ApiError) -> Self {
        Self {
            index,
            status,
            id,
            error: Some(error.to_json()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(error: Option<&str>) -> PublishOutcome {
        PublishOutcome {
            id: Uuid::now_v7(),
            partition: error.is_none().then_some(0),
            offset: error.is_none().then_some(7),
            error: error.map(str::to_owned),
            spooled: false,
        }
    }

    #[test]
    fn results_keep_the_items_order_and_the_status_says_how_it_went() {
        let bad = || FieldError::new("level", "unknown level");
        // Items 0 and 2 invalid; 1 and 3 published, 3 refused by Kafka.
        let (status, a) = answer(
            4,
            vec![(0, bad()), (2, bad())],
            Some(vec![outcome(None), outcome(Some("Kafka is down"))]),
        );
        assert_eq!(status, StatusCode::MULTI_STATUS);
        assert_eq!((a.accepted, a.rejected), (1, 3));
        let statuses: Vec<u16> = a.results.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [400, 202, 400, 503]);
        assert!(a.results.iter().enumerate().all(|(i, r)| r.index == i));

        let (status, _) = answer(2, vec![], Some(vec![outcome(None), outcome(None)]));
        assert_eq!(status, StatusCode::ACCEPTED);
        let (status, a) = answer(1, vec![(0, bad())], None);
        assert_eq!((status, a.accepted), (StatusCode::BAD_REQUEST, 0));
        let (status, _) = answer(1, vec![], Some(vec![outcome(Some("down"))]));
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
}
