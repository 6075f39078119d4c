//! Admission control: at most `max_in_flight` API requests, and at most `max_in_flight_bytes`
//! of their declared bodies, are worked on at once. Beyond either the gateway answers a fast
//! 503 with `Retry-After` instead of queueing: under overload a queue only adds latency and
//! memory, and clients that back off recover sooner than ones stuck behind a backlog. The byte
//! budget is what bounds memory under batch overload: 4096 batches of 1000 events are
//! gigabytes once parsed, 4096 single events are not.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use logctl_contracts::metric;
use logctl_core::ApiError;
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct Admission {
    slots: Arc<Semaphore>,
    max: usize,
    /// Body bytes in flight, counted in KiB (a semaphore's permits are u32).
    kib: Arc<Semaphore>,
    max_kib: u32,
}

/// What a body without `Content-Length` (chunked) is charged: the body limit still caps it.
const UNDECLARED_BODY_KIB: u32 = 1024;

impl Admission {
    pub fn new(max_in_flight: usize, max_in_flight_bytes: usize) -> Self {
        let max = max_in_flight.max(1);
        let max_kib = u32::try_from(max_in_flight_bytes / 1024)
            .unwrap_or(u32::MAX)
            .max(1);
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
            kib: Arc::new(Semaphore::new(max_kib as usize)),
            max_kib,
        }
    }
}

/// Most of a refused request's body read and dropped, and for how long at most.
const DISCARD_LIMIT: usize = 1024 * 1024;
const DISCARD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads what the client is still sending of a refused request's body, and drops it chunk by
/// chunk. Answered while its body was still in flight, the connection is closed with unread
/// data and the client sees a reset instead of the 503 and its `Retry-After`. Bounded in
/// bytes and time, so a refusal stays cheap; past either, the reset is what the client gets.
async fn discard_body(request: Request) {
    let mut chunks = request.into_body().into_data_stream();
    let mut left = DISCARD_LIMIT;
    let _ = tokio::time::timeout(DISCARD_TIMEOUT, async {
        while let Some(Ok(chunk)) = chunks.next().await {
            left = left.saturating_sub(chunk.len());
            if left == 0 {
                break;
            }
        }
    })
    .await;
}

fn shed(reason: String) -> Response {
    metrics::counter!(metric::GATEWAY_SHED).increment(1);
    ApiError::Unavailable {
        what: "gateway".into(),
        reason,
        retry_after_secs: 1,
    }
    .into_response()
}

pub async fn admit(State(admission): State<Admission>, request: Request, next: Next) -> Response {
    let Ok(_slot) = admission.slots.clone().try_acquire_owned() else {
        discard_body(request).await;
        return shed(format!("{} requests already in flight", admission.max));
    };
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let kib = match declared {
        Some(bytes) => u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX),
        None if request.method() == axum::http::Method::GET => 0,
        None => UNDECLARED_BODY_KIB,
    }
    // A body larger than the whole budget is the body limit's to refuse (413), not ours.
    .min(admission.max_kib);
    let Ok(_bytes) = admission.kib.clone().try_acquire_many_owned(kib) else {
        discard_body(request).await;
        return shed(format!(
            "{} MiB of request bodies already in flight",
            admission.max_kib / 1024
        ));
    };
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    #[tokio::test]
    async fn beyond_the_limit_requests_are_refused_at_once_with_retry_after() {
        let gate = Arc::new(tokio::sync::Notify::new());
        let app = Router::new()
            .route(
                "/slow",
                get({
                    let gate = gate.clone();
                    move || async move {
                        gate.notified().await;
                        "done"
                    }
                }),
            )
            .layer(axum::middleware::from_fn_with_state(
                Admission::new(1, 1 << 20),
                admit,
            ));
        let first = tokio::spawn(
            app.clone()
                .oneshot(Request::get("/slow").body(Body::empty()).expect("request")),
        );
        // Let the first request take the only slot.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let second = app
            .clone()
            .oneshot(Request::get("/slow").body(Body::empty()).expect("request"))
            .await
            .expect("answer");
        assert_eq!(second.status(), 503);
        assert_eq!(second.headers()["retry-after"], "1");
        gate.notify_one();
        let first = first.await.expect("join").expect("answer");
        assert_eq!(first.status(), 200);
        // The slot is free again.
        let third =
            tokio::spawn(app.oneshot(Request::get("/slow").body(Body::empty()).expect("request")));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        gate.notify_one();
        assert_eq!(third.await.expect("join").expect("answer").status(), 200);
    }

    #[tokio::test]
    async fn beyond_the_byte_budget_large_bodies_are_refused_small_ones_pass() {
        let gate = Arc::new(tokio::sync::Notify::new());
        let app = Router::new()
            .route(
                "/slow",
                axum::routing::post({
                    let gate = gate.clone();
                    move || async move {
                        gate.notified().await;
                        "done"
                    }
                }),
            )
            .layer(axum::middleware::from_fn_with_state(
                // 100 requests, but 64 KiB of bodies.
                Admission::new(100, 64 * 1024),
                admit,
            ));
        let post = |bytes: usize| {
            Request::post("/slow")
                .header("content-length", bytes.to_string())
                .body(Body::from(vec![b'x'; bytes]))
                .expect("request")
        };
        let big = tokio::spawn(app.clone().oneshot(post(60 * 1024)));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let refused = app.clone().oneshot(post(8 * 1024)).await.expect("answer");
        assert_eq!(
            refused.status(),
            503,
            "60 + 8 KiB is over the 64 KiB budget"
        );
        let small = tokio::spawn(app.clone().oneshot(post(2 * 1024)));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        gate.notify_waiters();
        assert_eq!(big.await.expect("join").expect("answer").status(), 200);
        assert_eq!(small.await.expect("join").expect("answer").status(), 200);
    }
}
