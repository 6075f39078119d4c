//! Load targets of the bench's own: the producer (`POST /internal/events`), to measure the
//! pipeline without the gateway hop (the same events, converted to the form the gateway would
//! send), and a service's `GET /health`, to measure what its bare HTTP exchange costs.

use std::time::Duration;

use chrono::Utc;
use futures::future::BoxFuture;
use logctl_core::internal_api::{PublishResponse, PUBLISH_PATH};
use logctl_core::{EventLimits, LogEvent};
use logctl_loadgen::engine::{Answer, Request, Target};
use logctl_loadgen::http1;
use serde_json::Value;

pub struct Producer {
    client: http1::Client,
    base: String,
    limits: EventLimits,
}

/// A client for the service at `base`, and `base` without its trailing slash (what the targets
/// describe themselves by).
fn client(base: &str) -> Result<(http1::Client, String), http1::Error> {
    let base = base.trim_end_matches('/').to_owned();
    Ok((http1::Client::new(&base, Duration::from_secs(30))?, base))
}

impl Producer {
    pub fn new(base: &str) -> Result<Self, http1::Error> {
        let (client, base) = client(base)?;
        Ok(Self {
            client,
            base,
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
        let body = serde_json::to_vec(&self.events(&request.body)).unwrap_or_default();
        let client = self.client.clone();
        Box::pin(async move {
            let Ok(response) = client
                .post(PUBLISH_PATH, "Content-Type: application/json\r\n", &body)
                .await
            else {
                return Answer::default();
            };
            let accepted = match serde_json::from_slice::<PublishResponse>(&response.body) {
                Ok(body) if response.status == 200 => body
                    .results
                    .into_iter()
                    .filter(|o| o.is_acknowledged())
                    .map(|o| o.id)
                    .collect(),
                _ => Vec::new(),
            };
            Answer {
                status: Some(response.status),
                accepted,
            }
        })
    }

    fn describe(&self) -> String {
        format!("{}{PUBLISH_PATH}", self.base)
    }
}

/// `GET /health` once for each event the plan would send: the service's HTTP exchange with
/// nothing behind it (no token, no body, no call onward), at the rate and over the connections
/// the generator keeps for the real requests. What a service spends on that is the least any
/// request to it can cost, so its CPU per request is the floor under its CPU per event. An
/// answered `200` counts the request's events accepted.
pub struct Health {
    client: http1::Client,
    base: String,
}

impl Health {
    pub fn new(base: &str) -> Result<Self, http1::Error> {
        let (client, base) = client(base)?;
        Ok(Self { client, base })
    }
}

impl Target for Health {
    fn send(&self, request: Request) -> BoxFuture<'static, Answer> {
        let client = self.client.clone();
        Box::pin(async move {
            match client.get("/health", "").await {
                Ok(response) => Answer {
                    status: Some(response.status),
                    accepted: if response.status == 200 {
                        request.ids
                    } else {
                        Vec::new()
                    },
                },
                Err(_) => Answer::default(),
            }
        })
    }

    fn describe(&self) -> String {
        format!("{}/health", self.base)
    }
}
