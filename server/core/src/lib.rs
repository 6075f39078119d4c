//! The pieces every logctl service needs exactly once: the log event and its validation
//! ([`event`]), the circuit breaker ([`breaker`]), layered configuration ([`config`]), logs and metrics ([`telemetry`]), trace
//! context propagation ([`trace`]), the health/metrics endpoints ([`ops`]), Kafka client
//! settings ([`kafka`]) and consumer lag ([`lag`]), the JSON error shape ([`api_error`]) and the
//! one shutdown signal ([`shutdown`]). Clients each service may not need are features: `kafka`
//! (Kafka settings and lag, rdkafka), `redis` (the [`kv`] client), `jwt` (signing and verifying
//! the [`auth`] tokens); each service turns on what it talks to. What crosses process boundaries (the event, the
//! gateway/producer API, topics, metric names, the schema) is in `logctl-contracts`.

mod allocator;
pub mod api_error;
pub mod auth;
pub mod breaker;
pub mod config;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "redis")]
pub mod kv;
#[cfg(feature = "kafka")]
pub mod lag;
pub mod ops;
pub mod otlp;
pub mod procfs;
pub mod runtime;
pub mod shutdown;
pub mod telemetry;
pub mod trace;

pub use api_error::{ApiError, Quota};
// The event and the publish API are contracts between processes: they live in
// `logctl-contracts`, and are named here too so each service keeps one import path.
pub use logctl_contracts::{event, internal_api, metric};
pub use logctl_contracts::{parse_id, EventLimits, FieldError, Level, LogEvent, OrganizationId};
pub use trace::TraceContext;
