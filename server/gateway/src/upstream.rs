//! Calls from the gateway to the services behind it: publish to the producer, read from the
//! consumer. Every call has a deadline and goes through that service's circuit breaker, so a
//! dead service costs a client one fast 503 with `Retry-After`, not a timeout; a failure is
//! "unavailable", never a 500.
//!
//! Publishing goes through a [`Coalescer`]: requests waiting for the producer share calls, so
//! the gateway holds a handful of connections to it however many clients wait; the calls go
//! round the producer instances ([`Producers`]).

use std::time::Duration;

use logctl_core::breaker::{Breaker, Permit};
use logctl_core::internal_api::PublishOutcome;
use logctl_core::trace::{self, TraceContext};
use logctl_core::{ApiError, FieldError, LogEvent};
use reqwest::StatusCode;
use serde_json::Value;

use crate::coalesce::Coalescer;
use crate::producers::{parse_urls, Producers};
use crate::settings::Settings;

#[derive(Clone)]
pub struct Upstream {
    http: reqwest::Client,
    publisher: Coalescer,
    publish_deadline: Duration,
    /// Held by the one request let through while no producer's breaker is closed.
    probe: std::sync::Arc<tokio::sync::Semaphore>,
    query: Breaker,
    query_url: String,
    producers: Producers,
    query_ready_url: String,
}

impl Upstream {
    /// Starts the publish dispatcher, so it needs a Tokio runtime.
    pub fn new(settings: &Settings) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(settings.upstream_timeout())
            .connect_timeout(std::time::Duration::from_secs(2))
            .build()?;
        let query = settings.query_url.trim_end_matches('/');
        let urls = parse_urls(&settings.producer_url);
        let producers = Producers::new(
            http.clone(),
            &urls,
            &settings.breaker,
            settings.publish_attempt_timeout(),
        );
        let publisher = Coalescer::start(settings.publish_coalescing.clone(), urls.len(), {
            let producers = producers.clone();
            move |request| {
                let producers = producers.clone();
                async move { producers.send(request).await }
            }
        });
        Ok(Self {
            http,
            publisher,
            publish_deadline: settings.publish_deadline(),
            probe: std::sync::Arc::new(tokio::sync::Semaphore::new(1)),
            query: Breaker::new("query", settings.breaker.clone()),
            query_url: query.to_owned(),
            producers,
            query_ready_url: format!("{query}/health/ready"),
        })
    }

    /// Publishes validated events; one outcome per event, in order.
    pub async fn publish(
        &self,
        events: Vec<LogEvent>,
        trace: &TraceContext,
    ) -> Result<Vec<PublishOutcome>, ApiError> {
        // While every producer is failing, the requests a trial call would gather would all
        // wait out its timeout: one request at a time probes, the rest get a fast 503.
        let _probe = if self.producers.none_closed() {
            match self.probe.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => return Err(breaker_open("producer", self.producers.soonest_retry())),
            }
        } else {
            None
        };
        // A bound on the whole wait (queue, calls, failover): a producer that accepts
        // connections and never answers must cost a client a 503, not its own timeout.
        tokio::time::timeout(self.publish_deadline, self.publisher.publish(events, trace))
            .await
            .unwrap_or_else(|_| {
                Err(ApiError::Unavailable {
                    what: "producer".into(),
                    reason: format!("no answer within {} ms", self.publish_deadline.as_millis()),
                    retry_after_secs: 1,
                })
            })
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
            .map_err(|r| breaker_open("query service", r.retry_after))?;
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
        self.producers.ready().await
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

/// Reports a call's outcome to its breaker: no answer or a 5xx is the dependency's failure;
/// any other answer, even a 4xx, shows it alive.
pub(crate) fn judge(
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

pub(crate) fn breaker_open(what: &str, retry_after: Duration) -> ApiError {
    ApiError::Unavailable {
        what: what.into(),
        reason: "circuit breaker open after repeated failures".into(),
        retry_after_secs: retry_after.as_secs_f64().ceil() as u64,
    }
}

pub fn unavailable(what: &str, reason: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable {
        what: what.into(),
        reason: reason.to_string(),
        retry_after_secs: 1,
    }
}
