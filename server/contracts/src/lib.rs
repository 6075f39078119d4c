//! The contracts between logctl's processes, each named once, so a service, the console, the
//! tests and the dashboards cannot drift apart: the log event and its validation ([`event`]),
//! the gateway → producer publish API ([`internal_api`]), the read API's parameters and pages
//! ([`read_api`]), Kafka topic and group names
//! ([`topics`]), how instances are named ([`instance`]), the dead-letter headers and reasons ([`dead_letter`]), metric names
//! ([`metric`]), how durations are written ([`duration`]) and, with the `schema` feature, the database schema and its one migrator
//! ([`schema`]).
//!
//! Nothing here does I/O except the migrator: infrastructure (HTTP, Kafka and Redis clients,
//! JWT) lives in `logctl-core` and the services.

pub mod dead_letter;
pub mod duration;
pub mod event;
pub mod instance;
pub mod internal_api;
pub mod metric;
pub mod read_api;
#[cfg(feature = "schema")]
pub mod schema;
pub mod topics;

pub use event::{parse_id, EventLimits, FieldError, Level, LogEvent, OrganizationId};
