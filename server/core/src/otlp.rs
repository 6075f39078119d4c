//! Optional export of sampled spans to an OpenTelemetry collector (OTLP over HTTP, JSON
//! encoding), off unless an endpoint is configured.
//!
//! Spans carry the same W3C ids that travel in `traceparent` headers and Kafka records, so a
//! collector (Jaeger, Tempo, the OpenTelemetry Collector) joins the gateway's, the producer's
//! and the consumer's spans into one trace. Export never slows a request: spans go into a
//! bounded queue that a background task sends in batches; when the queue is full, spans are
//! dropped and counted (`logctl_otlp_spans_dropped_total`). At shutdown the service calls
//! [`Exporter::finish`]: what is still queued is sent, within the shutdown deadline.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use logctl_contracts::metric;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::trace::TraceContext;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OtlpSettings {
    /// Collector base URL, e.g. `http://127.0.0.1:4318`; spans go to `{endpoint}/v1/traces`.
    /// Unset: no export.
    pub endpoint: Option<String>,
}

/// One finished span.
#[derive(Debug, Clone)]
pub struct Span {
    pub context: TraceContext,
    pub name: String,
    /// SERVER for an inbound request, PRODUCER for events handed to Kafka, CONSUMER for a
    /// stored record.
    pub kind: SpanKind,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<(&'static str, String)>,
    pub error: bool,
}

#[derive(Debug, Clone, Copy)]
pub enum SpanKind {
    Server,
    Producer,
    Consumer,
}

#[derive(Clone)]
pub struct Exporter {
    tx: mpsc::Sender<Span>,
    closing: CancellationToken,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

const QUEUE: usize = 4096;
const BATCH: usize = 512;

impl Exporter {
    /// Starts the sending task; `None` when no endpoint is configured.
    pub fn start(settings: &OtlpSettings, service: &'static str) -> Option<Exporter> {
        let endpoint = settings.endpoint.as_ref()?.trim_end_matches('/').to_owned();
        let url = format!("{endpoint}/v1/traces");
        let (tx, mut rx) = mpsc::channel::<Span>(QUEUE);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .ok()?;
        let closing = CancellationToken::new();
        let task = tokio::spawn({
            let closing = closing.clone();
            async move {
                let mut batch = Vec::with_capacity(BATCH);
                loop {
                    let first = tokio::select! {
                        biased;
                        span = rx.recv() => span,
                        _ = closing.cancelled() => None,
                    };
                    let Some(first) = first else { break };
                    batch.push(first);
                    // Gather what arrives within a second (or a full batch) into one request.
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
                    while batch.len() < BATCH && !closing.is_cancelled() {
                        tokio::select! {
                            span = tokio::time::timeout_at(deadline, rx.recv()) => match span {
                                Ok(Some(span)) => batch.push(span),
                                _ => break,
                            },
                            _ = closing.cancelled() => break,
                        }
                    }
                    send(&http, &url, service, &mut batch).await;
                }
                // Shutting down (or every sender gone): what is queued still goes out.
                while let Ok(span) = rx.try_recv() {
                    batch.push(span);
                    if batch.len() == BATCH {
                        send(&http, &url, service, &mut batch).await;
                    }
                }
                send(&http, &url, service, &mut batch).await;
            }
        });
        tracing::info!(%endpoint, "exporting sampled spans over OTLP");
        Some(Exporter {
            tx,
            closing,
            task: Arc::new(Mutex::new(Some(task))),
        })
    }

    /// Sends what is still queued and stops the exporter, waiting at most `within`; spans
    /// queued after this are dropped (and counted).
    pub async fn finish(&self, within: Duration) {
        self.closing.cancel();
        let task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            if tokio::time::timeout(within, task).await.is_err() {
                tracing::warn!("spans still queued at shutdown were not exported in time");
            }
        }
    }

    /// Queues a span if its trace is sampled; never waits.
    pub fn record(&self, span: Span) {
        if !span.context.is_sampled() {
            return;
        }
        if self.tx.try_send(span).is_err() {
            metrics::counter!(metric::OTLP_SPANS_DROPPED).increment(1);
        }
    }
}

/// One request with `batch` (emptied), counted as exported or dropped.
async fn send(http: &reqwest::Client, url: &str, service: &str, batch: &mut Vec<Span>) {
    if batch.is_empty() {
        return;
    }
    let body = encode(service, batch);
    let sent = batch.len() as u64;
    batch.clear();
    match http.post(url).json(&body).send().await {
        Ok(r) if r.status().is_success() => {
            metrics::counter!(metric::OTLP_SPANS_EXPORTED).increment(sent);
        }
        Ok(r) => {
            metrics::counter!(metric::OTLP_SPANS_DROPPED).increment(sent);
            tracing::debug!(status = %r.status(), "OTLP collector refused spans");
        }
        Err(e) => {
            metrics::counter!(metric::OTLP_SPANS_DROPPED).increment(sent);
            tracing::debug!(error = %e, "cannot reach the OTLP collector");
        }
    }
}

fn nanos(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
        .to_string()
}

/// The OTLP/JSON `ExportTraceServiceRequest` for `spans` (ids in hex, times as strings).
pub fn encode(service: &str, spans: &[Span]) -> Value {
    let spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            let mut span = json!({
                "traceId": s.context.trace_id(),
                "spanId": s.context.span_id(),
                "name": s.name,
                "kind": match s.kind { SpanKind::Server => 2, SpanKind::Producer => 4, SpanKind::Consumer => 5 },
                "startTimeUnixNano": nanos(s.start),
                "endTimeUnixNano": nanos(s.end),
                "attributes": s.attributes.iter().map(|(k, v)| json!({"key": k, "value": {"stringValue": v}})).collect::<Vec<_>>(),
                "status": {"code": if s.error { 2 } else { 1 }},
            });
            if let Some(parent) = s.context.parent_span_id() {
                span["parentSpanId"] = json!(parent);
            }
            span
        })
        .collect();
    json!({
        "resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": format!("logctl-{service}")}}]},
            "scopeSpans": [{"scope": {"name": "logctl", "version": env!("CARGO_PKG_VERSION")}, "spans": spans}],
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_ids_in_hex_with_the_parent() {
        let parent = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .expect("valid");
        let span = Span {
            context: parent.child(),
            name: "POST /api/logs".into(),
            kind: SpanKind::Server,
            start: UNIX_EPOCH + Duration::from_millis(1),
            end: UNIX_EPOCH + Duration::from_millis(3),
            attributes: vec![("http.response.status_code", "202".into())],
            error: false,
        };
        let body = encode("gateway", &[span]);
        let s = &body["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(s["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(s["parentSpanId"], "00f067aa0ba902b7");
        assert_eq!(s["spanId"].as_str().map(str::len), Some(16));
        assert_eq!(s["startTimeUnixNano"], "1000000");
        assert_eq!(s["kind"], 2);
        assert_eq!(
            body["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
            "logctl-gateway"
        );
    }

    /// A collector on a random port: what it received, and an exporter pointed at it.
    async fn collector() -> (Arc<Mutex<Vec<Value>>>, Exporter) {
        let received: Arc<Mutex<Vec<Value>>> = Arc::default();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post({
                let received = received.clone();
                move |axum::Json(body): axum::Json<Value>| async move {
                    received.lock().expect("lock").push(body);
                    "{}"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let settings = OtlpSettings {
            endpoint: Some(format!("http://{addr}")),
        };
        let exporter = Exporter::start(&settings, "test").expect("configured");
        (received, exporter)
    }

    /// Spans in every request the collector received.
    fn spans(received: &Mutex<Vec<Value>>) -> usize {
        received
            .lock()
            .expect("lock")
            .iter()
            .map(|b| {
                b["resourceSpans"][0]["scopeSpans"][0]["spans"]
                    .as_array()
                    .map_or(0, Vec::len)
            })
            .sum()
    }

    #[tokio::test]
    async fn sends_sampled_spans_to_the_collector_and_skips_the_rest() {
        let (received, exporter) = collector().await;
        let span = |sampled: bool| Span {
            context: TraceContext::root(if sampled { 1.0 } else { 0.0 }),
            name: "work".into(),
            kind: SpanKind::Consumer,
            start: SystemTime::now(),
            end: SystemTime::now(),
            attributes: vec![],
            error: false,
        };
        exporter.record(span(true));
        exporter.record(span(false));
        exporter.record(span(true));
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let got = spans(&received);
            if got >= 2 {
                assert_eq!(got, 2, "only sampled spans are sent");
                return;
            }
        }
        panic!("the collector received no spans");
    }

    #[tokio::test]
    async fn finish_sends_what_is_queued_before_it_returns() {
        let (received, exporter) = collector().await;
        for _ in 0..(BATCH + 3) {
            exporter.record(Span {
                context: TraceContext::root(1.0),
                name: "work".into(),
                kind: SpanKind::Server,
                start: SystemTime::now(),
                end: SystemTime::now(),
                attributes: vec![],
                error: false,
            });
        }
        // No waiting for the exporter's one-second gathering: shutdown sends at once.
        exporter.finish(Duration::from_secs(10)).await;
        assert_eq!(spans(&received), BATCH + 3);
    }

    #[test]
    fn no_endpoint_no_exporter() {
        assert!(Exporter::start(&OtlpSettings::default(), "x").is_none());
    }
}
