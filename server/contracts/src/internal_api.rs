//! The wire contract between the gateway and the producer: the gateway posts validated events
//! (the [`LogEvent`](crate::LogEvent) JSON form) to [`PUBLISH_PATH`] and gets one outcome per
//! event, in order, each saying whether Kafka acknowledged it.
//!
//! The body is either a plain array of events (all under the call's own `traceparent`), or a
//! [`PublishRequest`]: the gateway coalesces the events of requests that arrive together into
//! one call, so it needs few connections to the producer however many clients wait, and each
//! caller's segment keeps that caller's trace.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::LogEvent;

pub const PUBLISH_PATH: &str = "/internal/events";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishOutcome {
    pub id: Uuid,
    /// Where Kafka stored it; absent when it was not acknowledged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// Why it is not safe; the client may retry it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Safe in the producer's disk spool (Kafka was unreachable); it reaches Kafka later.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub spooled: bool,
}

impl PublishOutcome {
    pub fn failed(id: Uuid, error: impl Into<String>) -> Self {
        Self {
            id,
            partition: None,
            offset: None,
            error: Some(error.into()),
            spooled: false,
        }
    }

    /// Acknowledged by Kafka or fsynced in the spool: safe to answer 2xx for.
    pub fn is_acknowledged(&self) -> bool {
        self.error.is_none()
    }
}

/// Several callers' events in one call; outcomes come back flat, segment after segment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    /// The caller's trace (W3C `traceparent`); the producer continues it for these events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    pub events: Vec<LogEvent>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishResponse {
    pub results: Vec<PublishOutcome>,
}
