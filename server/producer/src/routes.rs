//! The producer's one business endpoint: `POST /internal/events`, answered with one outcome
//! per event once Kafka has acknowledged (or refused) each.
//!
//! The body is a plain array of events, or the gateway's coalesced form (several callers'
//! segments, each with its own `traceparent`; see `logctl_core::internal_api`). Every event
//! carries its caller's trace into Kafka, so the consumer's span continues the right trace.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Extension;
use axum::Json;
use logctl_core::internal_api::{PublishRequest, PublishResponse, PUBLISH_PATH};
use logctl_core::otlp::{Span, SpanKind};
use logctl_core::trace::Tracing;
use logctl_core::{ApiError, FieldError, LogEvent, TraceContext};

use crate::publisher::{Outgoing, Publisher};

#[derive(Clone)]
pub struct AppState {
    pub publisher: Arc<Publisher>,
    pub max_body_bytes: usize,
    pub tracing: Tracing,
}

/// One caller's events and the trace context they are published under.
struct Part {
    context: TraceContext,
    events: Vec<LogEvent>,
    /// A segment of a coalesced call gets a span of its own (the call's span belongs to no
    /// single caller); a plain array is covered by the request's span.
    own_span: bool,
}

pub async fn publish(
    State(state): State<AppState>,
    Extension(trace): Extension<TraceContext>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PublishResponse>, ApiError> {
    let body = body.map_err(|r| ApiError::from_body_rejection(r, state.max_body_bytes))?;
    let started = SystemTime::now();
    let parts = parse(&body, trace, state.tracing.sample_ratio)?;
    // What each part's span needs once its events are handed over: context, own span, size.
    let mut spans = Vec::with_capacity(parts.len());
    let mut outgoing = Vec::new();
    for part in parts {
        let traceparent = part.context.to_string();
        spans.push((part.context, part.own_span, part.events.len()));
        outgoing.extend(part.events.into_iter().map(|event| Outgoing {
            event,
            traceparent: traceparent.clone(),
        }));
    }
    let results = state.publisher.publish(&outgoing).await;

    if let Some(exporter) = &state.tracing.exporter {
        let ended = SystemTime::now();
        let mut rest = results.as_slice();
        for (context, own_span, size) in spans {
            let (mine, others) = rest.split_at(size.min(rest.len()));
            rest = others;
            if own_span {
                exporter.record(Span {
                    context,
                    name: format!("publish {PUBLISH_PATH}"),
                    kind: SpanKind::Producer,
                    start: started,
                    end: ended,
                    attributes: vec![
                        ("messaging.system", "kafka".to_owned()),
                        ("messaging.batch.message_count", size.to_string()),
                    ],
                    error: mine.iter().any(|o| !o.is_acknowledged()),
                });
            }
        }
    }
    Ok(Json(PublishResponse { results }))
}

fn parse(body: &[u8], request: TraceContext, sample_ratio: f64) -> Result<Vec<Part>, FieldError> {
    let coalesced = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if !coalesced {
        let events: Vec<LogEvent> = serde_json::from_slice(body)
            .map_err(|e| FieldError::new("body", format!("expected an array of events: {e}")))?;
        return Ok(vec![Part {
            context: request,
            events,
            own_span: false,
        }]);
    }
    let request: PublishRequest = serde_json::from_slice(body).map_err(|e| {
        FieldError::new(
            "body",
            format!("expected {{\"segments\": [{{\"traceparent\", \"events\"}}]}}: {e}"),
        )
    })?;
    request
        .segments
        .into_iter()
        .enumerate()
        .map(|(i, segment)| {
            let context = match segment.traceparent.as_deref() {
                None => TraceContext::root(sample_ratio),
                Some(value) => TraceContext::parse(value)
                    .ok_or_else(|| {
                        FieldError::new(
                            format!("segments[{i}].traceparent"),
                            "not a W3C traceparent",
                        )
                    })?
                    .child(),
            };
            Ok(Part {
                context,
                events: segment.events,
                own_span: true,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn event_json(org: &str) -> serde_json::Value {
        serde_json::json!({
            "id": "0190f5e2-7c1a-7000-8000-000000000001", "organizationId": org, "level": "INFO",
            "message": "m", "source": "s",
            "timestamp": "2026-11-24T00:00:00Z", "receivedAt": "2026-11-24T00:00:00Z"
        })
    }

    #[test]
    fn a_plain_array_is_published_under_the_calls_trace() {
        let request = TraceContext::root(1.0);
        let body = serde_json::to_vec(&vec![event_json("a"), event_json("b")]).expect("test data");
        let parts = parse(&body, request, 0.0).expect("valid");
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].events.len(), 2);
        assert_eq!(parts[0].context, request);
        assert!(!parts[0].own_span);
    }

    #[test]
    fn each_segment_continues_its_callers_trace() {
        let body = serde_json::to_vec(&serde_json::json!({"segments": [
            {"traceparent": PARENT, "events": [event_json("a")]},
            {"events": [event_json("b"), event_json("c")]},
        ]}))
        .expect("test data");
        let parts = parse(&body, TraceContext::root(0.0), 0.0).expect("valid");
        assert_eq!(parts.len(), 2);
        let parent = TraceContext::parse(PARENT).expect("test data");
        assert_eq!(parts[0].context.trace_id(), parent.trace_id());
        assert_eq!(
            parts[0].context.parent_span_id().as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert_eq!(parts[1].events.len(), 2);
        assert_ne!(parts[1].context.trace_id(), parent.trace_id());
        assert!(parts.iter().all(|p| p.own_span));
    }

    #[test]
    fn a_bad_segment_is_refused_by_name() {
        let body = serde_json::to_vec(&serde_json::json!({"segments": [
            {"traceparent": PARENT, "events": []},
            {"traceparent": "nope", "events": []},
        ]}))
        .expect("test data");
        let err = parse(&body, TraceContext::root(0.0), 0.0)
            .err()
            .expect("refused");
        assert_eq!(err.field, "segments[1].traceparent");
        let err = parse(b"{\"segmnts\": []}", TraceContext::root(0.0), 0.0)
            .err()
            .expect("refused");
        assert!(err.message.contains("segmnts"), "{}", err.message);
    }
}
