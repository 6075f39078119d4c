//! The one JSON error shape every service answers with, so a client sees the same
//! `{"error": code, "field": ..., "message": ...}` whichever hop refused it.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use logctl_contracts::metric;
use serde::Serialize;
use serde_json::Value;

use crate::auth::AuthError;
use crate::event::FieldError;

/// A caller's rate-limit standing, sent as `X-RateLimit-*` on answers the limiter saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Events the caller may send in one burst.
    pub limit: u64,
    /// Events it may send right now.
    pub remaining: u64,
    /// Seconds until its full burst is available again.
    pub reset_secs: u64,
}

/// The names made once: a `&str` name is parsed and checked again on every insert.
const LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

impl Quota {
    pub fn write_headers(&self, headers: &mut axum::http::HeaderMap) {
        headers.insert(LIMIT, HeaderValue::from(self.limit));
        headers.insert(REMAINING, HeaderValue::from(self.remaining));
        headers.insert(RESET, HeaderValue::from(self.reset_secs));
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidField(#[from] FieldError),
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("could not read the request body: {0}")]
    BadBody(String),
    #[error("{0} not found")]
    NotFound(String),
    /// A dependency is down or overloaded: the client should retry after the given delay.
    #[error("{what} is unavailable: {reason}")]
    Unavailable {
        what: String,
        reason: String,
        retry_after_secs: u64,
    },
    /// No valid token (401), or a valid one that does not allow this (403).
    #[error("{0}")]
    Auth(#[from] AuthError),
    /// The organization sent more than its limit: retry after the given delay.
    #[error("rate limit of {} events exceeded; retry in {retry_after_secs} s", quota.limit)]
    RateLimited { quota: Quota, retry_after_secs: u64 },
    /// A fault of ours, never of the input: logged, and answered without internals.
    #[error("internal error: {0}")]
    Internal(String),
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    message: String,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidField(_) | ApiError::MalformedJson(_) | ApiError::BadBody(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Auth(e) if e.is_forbidden() => StatusCode::FORBIDDEN,
            ApiError::Auth(_) => StatusCode::UNAUTHORIZED,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidField(_) => "invalid_field",
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::BadBody(_) => "bad_body",
            ApiError::NotFound(_) => "not_found",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Auth(e) if e.is_forbidden() => "forbidden",
            ApiError::Auth(_) => "unauthorized",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Internal(_) => "internal",
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            ApiError::InvalidField(e) => Some(&e.field),
            ApiError::MalformedJson(_)
            | ApiError::PayloadTooLarge { .. }
            | ApiError::BadBody(_) => Some("body"),
            ApiError::Auth(AuthError::WrongOrg { .. }) => Some("organizationId"),
            ApiError::Auth(_) => Some("Authorization"),
            _ => None,
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::InvalidField(e) => e.message.clone(),
            ApiError::Internal(_) => "internal error; see the service log".into(),
            other => other.to_string(),
        }
    }

    /// The JSON body alone, for per-item results inside a batch answer.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(Body {
            error: self.code(),
            field: self.field(),
            message: self.message(),
        })
        .unwrap_or(Value::Null)
    }

    /// Turns axum's body-reading failure into our shape, keeping "too large" a 413.
    pub fn from_body_rejection(rejection: BytesRejection, limit: usize) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit }
        } else {
            ApiError::BadBody(rejection.body_text())
        }
    }

    /// Reads a JSON document from a body, naming the position of a syntax error.
    pub fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
        serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        metrics::counter!(metric::HTTP_ERRORS, "kind" => self.code()).increment(1);
        let status = self.status();
        let mut response = (status, axum::Json(self.to_json())).into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::Unavailable {
                retry_after_secs, ..
            } => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs.max(1)),
                );
            }
            ApiError::RateLimited {
                quota,
                retry_after_secs,
            } => {
                quota.write_headers(headers);
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs.max(1)),
                );
            }
            ApiError::Auth(e) => {
                metrics::counter!(metric::AUTH_FAILURES, "reason" => e.reason()).increment(1);
                if !e.is_forbidden() {
                    // RFC 6750: say which scheme, and why the token was not taken.
                    let error = if matches!(e, AuthError::Missing) {
                        ""
                    } else {
                        ", error=\"invalid_token\""
                    };
                    let value = format!("Bearer realm=\"logctl\"{error}");
                    if let Ok(v) = HeaderValue::from_str(&value) {
                        headers.insert(header::WWW_AUTHENTICATE, v);
                    }
                }
            }
            _ => {}
        }
        response
    }
}
