//! Admission control: at most `max_in_flight` API requests are worked on at once. Beyond that
//! the gateway answers a fast 503 with `Retry-After` instead of queueing: under overload a queue
//! only adds latency and memory (each waiting request holds its body), and clients that back off
//! recover sooner than ones stuck behind a backlog.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use logctl_core::ApiError;
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct Admission {
    slots: Arc<Semaphore>,
    max: usize,
}

impl Admission {
    pub fn new(max_in_flight: usize) -> Self {
        let max = max_in_flight.max(1);
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }
}

pub async fn admit(State(admission): State<Admission>, request: Request, next: Next) -> Response {
    let Ok(_slot) = admission.slots.clone().try_acquire_owned() else {
        metrics::counter!("logctl_gateway_shed_total").increment(1);
        return ApiError::Unavailable {
            what: "gateway".into(),
            reason: format!("{} requests already in flight", admission.max),
            retry_after_secs: 1,
        }
        .into_response();
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
                Admission::new(1),
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
}
