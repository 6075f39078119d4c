//! The pieces every logctl service needs exactly once: the log event and its validation
//! ([`event`]), the circuit breaker ([`breaker`]), layered configuration ([`config`]), logs and metrics ([`telemetry`]), trace
//! context propagation ([`trace`]), the health/metrics endpoints ([`ops`]), Kafka client
//! settings ([`kafka`]) and consumer lag ([`lag`]), the JSON error shape ([`api_error`]), the
//! gateway/producer contract ([`internal_api`]) and the one shutdown signal ([`shutdown`]).

pub mod api_error;
pub mod auth;
pub mod breaker;
pub mod config;
pub mod event;
pub mod internal_api;
pub mod kafka;
pub mod kv;
pub mod lag;
pub mod ops;
pub mod otlp;
pub mod query;
pub mod shutdown;
pub mod telemetry;
pub mod trace;

pub use api_error::{ApiError, Quota};
pub use event::{parse_id, EventLimits, FieldError, Level, LogEvent, OrganizationId};
pub use trace::TraceContext;
