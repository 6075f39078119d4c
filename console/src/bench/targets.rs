//! The producer as a load target (`POST /internal/events`), to measure the pipeline without
//! the gateway hop: the same events, converted to the form the gateway would send.

use std::time::Duration;

use chrono::Utc;
use futures::future::BoxFuture;
use logctl_core::internal_api::{PublishResponse, PUBLISH_PATH};
use logctl_core::{EventLimits, LogEvent};
use logctl_loadgen::engine::{Answer, Request, Target};
use serde_json::Value;

pub struct Producer {
    client: reqwest::Client,
    url: String,
    limits: EventLimits,
}

impl Producer {
    pub fn new(base: &str, max_in_flight: usize) -> Result<Self, reqwest::Error> {
        Ok(Self {
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(max_in_flight)
                .tcp_nodelay(true)
                .timeout(Duration::from_secs(30))
                .build()?,
            url: format!("{}{PUBLISH_PATH}", base.trim_end_matches('/')),
            limits: EventLimits::default(),
        })
    }

    /// The client JSON (one event or an array) as the validated events the gateway forwards.
    fn events(&self, body: &[u8]) -> Vec<LogEvent> {
        let now = Utc::now();
        let items = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Array(items)) => items,
            Ok(one) => vec![one],
            Err(_) => Vec::new(),
        };
        items
            .iter()
            .filter_map(|v| LogEvent::from_json(v, &self.limits, now).ok())
            .collect()
    }
}

impl Target for Producer {
    fn send(&self, request: Request) -> BoxFuture<'static, Answer> {
        let events = self.events(&request.body);
        let sent = self.client.post(&self.url).json(&events).send();
        Box::pin(async move {
            let Ok(response) = sent.await else {
                return Answer::default();
            };
            let status = response.status().as_u16();
            let accepted = match response.json::<PublishResponse>().await {
                Ok(body) if status == 200 => body
                    .results
                    .into_iter()
                    .filter(|o| o.is_acknowledged())
                    .map(|o| o.id)
                    .collect(),
                _ => Vec::new(),
            };
            Answer {
                status: Some(status),
                accepted,
            }
        })
    }

    fn describe(&self) -> String {
        self.url.clone()
    }
}
