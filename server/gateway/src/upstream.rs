//! Calls from the gateway to the services behind it: publish to the producer, read from the
//! consumer. Every call has a deadline and goes through that service's circuit breaker, so a
//! dead service costs a client one fast 503 with `Retry-After`, not a timeout; a failure is
//! "unavailable", never a 500.
//!
//! Publishing goes through a [`Coalescer`]: requests waiting for the producer share calls, so
//! the gateway holds a handful of connections to it however many clients wait.

use logctl_core::breaker::{Breaker, Permit, Rejected};
use logctl_core::internal_api::{PublishOutcome, PublishRequest, PublishResponse, PUBLISH_PATH};
use logctl_core::trace::{self, TraceContext};
use logctl_core::{ApiError, FieldError, LogEvent};
use reqwest::StatusCode;
use serde_json::Value;

use crate::coalesce::{Answer, Coalescer};
use crate::settings::Settings;

#[derive(Clone)]
pub struct Upstream {
    http: reqwest::Client,
    publisher: Coalescer,
    query: Breaker,
    query_url: String,
    producer_ready_url: String,
    query_ready_url: String,
}

impl Upstream {
    /// Starts the publish dispatcher, so it needs a Tokio runtime.
    pub fn new(settings: &Settings) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(settings.upstream_timeout())
            .connect_timeout(std::time::Duration::from_secs(2))
            .build()?;
        let producer = settings.producer_url.trim_end_matches('/');
        let query = settings.query_url.trim_end_matches('/');
        let call = PublishCall {
            http: http.clone(),
            breaker: Breaker::new("producer", settings.breaker.clone()),
            url: format!("{producer}{PUBLISH_PATH}"),
        };
        let publisher = Coalescer::start(settings.publish_coalescing.clone(), move |request| {
            let call = call.clone();
            async move { call.send(request).await }
        });
        Ok(Self {
            http,
            publisher,
            query: Breaker::new("query", settings.breaker.clone()),
            query_url: query.to_owned(),
            producer_ready_url: format!("{producer}/health/ready"),
            query_ready_url: format!("{query}/health/ready"),
        })
    }

    /// Publishes validated events; one outcome per event, in order.
    pub async fn publish(
        &self,
        events: Vec<LogEvent>,
        trace: &TraceContext,
    ) -> Result<Vec<PublishOutcome>, ApiError> {
        self.publisher.publish(events, trace).await
    }

    /// A read from the query service: `path_and_query` already carries the caller's
    /// organization (`org=` from its token). The service's own 4xx pass through as they are.
    pub async fn read(
        &self,
        path_and_query: &str,
        trace: &TraceContext,
    ) -> Result<Value, ApiError> {
        let permit = self
            .query
            .acquire()
            .map_err(|r| breaker_open("query service", r))?;
        let sent = self
            .http
            .get(format!("{}{path_and_query}", self.query_url))
            .header(trace::HEADER, trace.to_string())
            .send()
            .await;
        let response = judge(permit, sent).map_err(|e| unavailable("query service", e))?;
        let status = response.status();
        let body: Result<Value, _> = response.json().await;
        match (status, body) {
            (StatusCode::OK, Ok(v)) => Ok(v),
            (StatusCode::NOT_FOUND, _) => Err(ApiError::NotFound("event".into())),
            (s, Ok(v)) if s.is_client_error() => Err(ApiError::InvalidField(FieldError::new(
                v["field"].as_str().unwrap_or("query"),
                v["message"]
                    .as_str()
                    .unwrap_or("refused by the query service"),
            ))),
            (s, _) => Err(unavailable("query service", format!("answered {s}"))),
        }
    }

    pub async fn producer_ready(&self) -> Result<(), String> {
        self.ready(&self.producer_ready_url).await
    }

    pub async fn query_ready(&self) -> Result<(), String> {
        self.ready(&self.query_ready_url).await
    }

    async fn ready(&self, url: &str) -> Result<(), String> {
        match self.http.get(url).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("answered {}", r.status())),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// One call to the producer carrying one or more requests' events.
#[derive(Clone)]
struct PublishCall {
    http: reqwest::Client,
    breaker: Breaker,
    url: String,
}

impl PublishCall {
    async fn send(&self, request: PublishRequest) -> Answer {
        let permit = self
            .breaker
            .acquire()
            .map_err(|r| breaker_open("producer", r))?;
        let sent = self.http.post(&self.url).json(&request).send().await;
        let response = judge(permit, sent).map_err(|e| unavailable("producer", e))?;
        if !response.status().is_success() {
            return Err(unavailable(
                "producer",
                format!("answered {}", response.status()),
            ));
        }
        let body: PublishResponse = response
            .json()
            .await
            .map_err(|e| unavailable("producer", e))?;
        // The coalescer checks the outcomes against the events, request by request.
        Ok(body.results)
    }
}

/// Reports a call's outcome to its breaker: no answer or a 5xx is the dependency's failure;
/// any other answer, even a 4xx, shows it alive.
fn judge(
    permit: Permit,
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<reqwest::Response, String> {
    match sent {
        Ok(r) if !r.status().is_server_error() => {
            permit.success();
            Ok(r)
        }
        Ok(r) => {
            permit.failure();
            Ok(r)
        }
        Err(e) => {
            permit.failure();
            Err(e.to_string())
        }
    }
}

fn breaker_open(what: &str, r: Rejected) -> ApiError {
    ApiError::Unavailable {
        what: what.into(),
        reason: "circuit breaker open after repeated failures".into(),
        retry_after_secs: r.retry_after.as_secs_f64().ceil() as u64,
    }
}

pub fn unavailable(what: &str, reason: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable {
        what: what.into(),
        reason: reason.to_string(),
        retry_after_secs: 1,
    }
}
