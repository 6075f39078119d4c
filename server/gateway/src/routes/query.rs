//! `GET /api/logs/{id}`: one stored event, read from the consumer's query endpoint.

use axum::extract::{Path, State};
use axum::Json;
use logctl_core::{ApiError, FieldError};
use serde_json::Value;
use uuid::Uuid;

use super::AppState;

pub async fn get_event(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id =
        Uuid::parse_str(&id).map_err(|e| FieldError::new("id", format!("not a UUID ({e})")))?;
    state.upstream.stored_event(id).await.map(Json)
}
