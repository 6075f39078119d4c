//! The producer's one business endpoint: `POST /internal/events` with an array of validated
//! events, answered with one outcome per event once Kafka has acknowledged (or refused) each.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Extension;
use axum::Json;
use logctl_core::internal_api::PublishResponse;
use logctl_core::{ApiError, FieldError, LogEvent, TraceContext};

use crate::publisher::Publisher;

#[derive(Clone)]
pub struct AppState {
    pub publisher: Arc<Publisher>,
    pub max_body_bytes: usize,
}

pub async fn publish(
    State(state): State<AppState>,
    Extension(trace): Extension<TraceContext>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PublishResponse>, ApiError> {
    let body = body.map_err(|r| ApiError::from_body_rejection(r, state.max_body_bytes))?;
    let events: Vec<LogEvent> = serde_json::from_slice(&body)
        .map_err(|e| FieldError::new("body", format!("expected an array of events: {e}")))?;
    let results = state.publisher.publish(&events, &trace).await;
    Ok(Json(PublishResponse { results }))
}
