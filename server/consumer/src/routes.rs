//! The consumer's read endpoint: one stored event by id (the gateway proxies
//! `GET /api/logs/{id}` here).

use axum::extract::{Path, State};
use axum::Json;
use logctl_core::{ApiError, FieldError};
use uuid::Uuid;

use crate::storage::{Storage, StorageError, StoredEvent};

pub async fn stored_event(
    State(storage): State<Storage>,
    Path(id): Path<String>,
) -> Result<Json<StoredEvent>, ApiError> {
    let id =
        Uuid::parse_str(&id).map_err(|e| FieldError::new("id", format!("not a UUID ({e})")))?;
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), storage.get(id))
        .await
        .unwrap_or_else(|_| Err(StorageError::TimedOut(std::time::Duration::from_secs(5))));
    match read {
        Ok(Some(event)) => Ok(Json(event)),
        Ok(None) => Err(ApiError::NotFound(format!("event {id}"))),
        Err(e) => Err(ApiError::Unavailable {
            what: "database".into(),
            reason: e.to_string(),
            retry_after_secs: 1,
        }),
    }
}
