//! W3C Trace Context (`traceparent`) across the pipeline.
//!
//! The gateway accepts a client's `traceparent` or starts a trace, echoes it in the response,
//! and passes a child context to the producer, which puts it in the Kafka record's headers; the
//! consumer stores the trace id in the row. So one id ties a client's request to its log lines
//! in every service and to the stored event. Sampling only decides the `sampled` flag (what an
//! exporter records); the id is always propagated and stored.

use std::fmt;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::otlp::{Exporter, Span, SpanKind};

pub const HEADER: &str = "traceparent";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: u128,
    span_id: u64,
    /// The caller's span, when this context continues one (exported as the parent).
    parent_span_id: Option<u64>,
    sampled: bool,
}

impl TraceContext {
    /// Parses a `traceparent` header value. Unknown future versions are read by their version-00
    /// prefix, as the spec asks; version `ff`, all-zero ids and malformed values are refused.
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let mut parts = value.splitn(5, '-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        let rest = parts.next();
        if version.len() != 2 || !is_lower_hex(version) || version == "ff" {
            return None;
        }
        if version == "00" && rest.is_some() {
            return None;
        }
        if trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
            return None;
        }
        if !is_lower_hex(trace) || !is_lower_hex(span) || !is_lower_hex(flags) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        if trace_id == 0 || span_id == 0 {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            parent_span_id: None,
            sampled: flags & 1 == 1,
        })
    }

    /// A new trace, sampled with probability `ratio` (0.0 ..= 1.0).
    pub fn root(ratio: f64) -> Self {
        Self {
            trace_id: nonzero_u128(),
            span_id: nonzero_u64(),
            parent_span_id: None,
            sampled: rand::random::<f64>() < ratio,
        }
    }

    /// The context of a new span in the same trace, whose parent is this one.
    pub fn child(&self) -> Self {
        Self {
            span_id: nonzero_u64(),
            parent_span_id: Some(self.span_id),
            ..*self
        }
    }

    pub fn trace_id(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    pub fn span_id(&self) -> String {
        format!("{:016x}", self.span_id)
    }

    pub fn parent_span_id(&self) -> Option<String> {
        self.parent_span_id.map(|p| format!("{p:016x}"))
    }

    pub fn is_sampled(&self) -> bool {
        self.sampled
    }
}

/// A `traceparent` value's length: `00-`, 32 hex digits, `-`, 16, `-`, 2.
const TRACEPARENT_LEN: usize = 55;

impl TraceContext {
    /// The `traceparent` value, written digit by digit: through `fmt` with widths, the two ids
    /// cost the gateway about 1 µs per single event (`logctl bench --profile`), and every event
    /// needs the value twice (its answer's header and the producer call).
    pub fn encode(&self) -> [u8; TRACEPARENT_LEN] {
        let mut out = [b'-'; TRACEPARENT_LEN];
        out[..2].copy_from_slice(b"00");
        hex_into(&mut out[3..35], self.trace_id);
        hex_into(&mut out[36..52], u128::from(self.span_id));
        hex_into(&mut out[53..], u128::from(self.sampled));
        out
    }

    /// The `traceparent` header value (lower-case hex digits and dashes: always a valid one).
    pub fn header_value(&self) -> Option<HeaderValue> {
        HeaderValue::from_bytes(&self.encode()).ok()
    }
}

/// Fills `out` with the low `out.len()` hex digits of `value`, most significant first.
fn hex_into(out: &mut [u8], mut value: u128) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(value & 0xf) as usize];
        value >>= 4;
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // ASCII by construction.
        f.write_str(std::str::from_utf8(&self.encode()).map_err(|_| fmt::Error)?)
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn nonzero_u128() -> u128 {
    loop {
        let v: u128 = rand::random();
        if v != 0 {
            return v;
        }
    }
}

fn nonzero_u64() -> u64 {
    loop {
        let v: u64 = rand::random();
        if v != 0 {
            return v;
        }
    }
}

/// How a service takes part in traces.
#[derive(Clone)]
pub struct Tracing {
    /// Share of traces started here that are marked sampled.
    pub sample_ratio: f64,
    /// Where sampled spans go, if anywhere.
    pub exporter: Option<Exporter>,
}

/// Runs a request in its trace (for [`crate::telemetry::track_http`], the one middleware around
/// every request): continues the caller's trace (or starts one, sampled at `sample_ratio`),
/// makes the context available to handlers as a request extension, runs a sampled request
/// inside a span carrying the trace id (so its log lines name it), echoes `traceparent`, and
/// exports the request's span when the trace is sampled and an exporter is set.
pub async fn propagate(tracing_setup: &Tracing, mut request: Request, next: Next) -> Response {
    let ratio = tracing_setup.sample_ratio;
    let started = std::time::SystemTime::now();
    let context = request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse)
        .map(|parent| parent.child())
        .unwrap_or_else(|| TraceContext::root(ratio));
    request.extensions_mut().insert(context);
    // Only a sampled request gets a span (and its log lines the trace id): making one, with
    // its fields formatted, and entering it at every poll was a measurable part of the
    // gateway's cost per event, for traces nobody keeps.
    let exported = match (&tracing_setup.exporter, context.is_sampled()) {
        (Some(exporter), true) => {
            let route = request
                .extensions()
                .get::<axum::extract::MatchedPath>()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| request.uri().path().to_owned());
            Some((exporter, route, request.method().as_str().to_owned()))
        }
        _ => None,
    };
    let mut response = if context.is_sampled() {
        let span = tracing::info_span!(
            "request",
            trace_id = %context.trace_id(),
            method = %request.method(),
            path = %request.uri().path(),
        );
        next.run(request).instrument(span).await
    } else {
        next.run(request).await
    };
    if let Some(v) = context.header_value() {
        response.headers_mut().insert(HEADER, v);
    }
    if let Some((exporter, route, method)) = exported {
        let status = response.status();
        exporter.record(Span {
            context,
            name: format!("{method} {route}"),
            kind: SpanKind::Server,
            start: started,
            end: std::time::SystemTime::now(),
            attributes: vec![
                ("http.request.method", method),
                ("http.route", route),
                ("http.response.status_code", status.as_u16().to_string()),
            ],
            error: status.is_server_error(),
        });
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_prints_the_spec_example() {
        let c = TraceContext::parse(EXAMPLE).expect("valid");
        assert_eq!(c.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(c.is_sampled());
        assert_eq!(c.to_string(), EXAMPLE);
    }

    #[test]
    fn a_child_keeps_the_trace_and_changes_the_span() {
        let c = TraceContext::parse(EXAMPLE).expect("valid");
        let child = c.child();
        assert_eq!(child.trace_id(), c.trace_id());
        assert_ne!(child.to_string(), c.to_string());
        assert_eq!(child.is_sampled(), c.is_sampled());
    }

    #[test]
    fn refuses_invalid_values() {
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(TraceContext::parse(bad).is_none(), "{bad:?}");
        }
        assert!(TraceContext::parse(&format!("cc-{}-what-comes", &EXAMPLE[3..])).is_some());
    }

    #[test]
    fn sampling_follows_the_ratio() {
        assert!((0..100).all(|_| TraceContext::root(1.0).is_sampled()));
        assert!((0..100).all(|_| !TraceContext::root(0.0).is_sampled()));
    }

    proptest! {
        #[test]
        fn never_panics_and_round_trips(s in ".{0,80}") {
            if let Some(c) = TraceContext::parse(&s) {
                prop_assert_eq!(TraceContext::parse(&c.to_string()), Some(c));
            }
        }

        #[test]
        fn the_digit_by_digit_value_is_the_formatted_one(t: u128, sp: u64, sampled: bool) {
            let c = TraceContext { trace_id: t, span_id: sp, parent_span_id: None, sampled };
            let formatted = format!("00-{t:032x}-{sp:016x}-{:02x}", u8::from(sampled));
            prop_assert_eq!(c.to_string(), formatted.clone());
            let value = c.header_value();
            prop_assert_eq!(value.as_ref().and_then(|v| v.to_str().ok()), Some(formatted.as_str()));
        }

        #[test]
        fn any_valid_context_round_trips(t in 1u128.., sp in 1u64.., sampled: bool) {
            let c = TraceContext { trace_id: t, span_id: sp, parent_span_id: None, sampled };
            prop_assert_eq!(TraceContext::parse(&c.to_string()), Some(c));
        }
    }
}
