//! The gateway as a load target: `POST /api/logs` (single) or `/api/logs/batch`, each with a
//! bearer token for the request's organization.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde_json::Value;
use uuid::Uuid;

use crate::engine::{Answer, Request, Target};

/// Mints a token for an organization (the console signs them with the stack's key).
pub type TokenSource = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

pub struct Gateway {
    client: reqwest::Client,
    base: String,
    tokens: TokenSource,
    cache: Mutex<HashMap<String, HeaderValue>>,
}

impl Gateway {
    pub fn new(
        base: &str,
        tokens: TokenSource,
        max_in_flight: usize,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(max_in_flight)
            .tcp_nodelay(true)
            .timeout(timeout)
            .build()?;
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
            tokens,
            cache: Mutex::new(HashMap::new()),
        })
    }

    fn authorization(&self, org: &str) -> Option<HeaderValue> {
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(v) = cache.get(org) {
            return Some(v.clone());
        }
        let token = (self.tokens)(org)?;
        let value = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
        cache.insert(org.to_owned(), value.clone());
        Some(value)
    }
}

/// The ids a `207` batch answer accepted (its per-item results with status 202).
fn accepted_in(body: &Value, ids: &[Uuid]) -> Vec<Uuid> {
    body["results"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|r| r["status"] == 202)
                .filter_map(|r| {
                    r["index"]
                        .as_u64()
                        .and_then(|i| ids.get(i as usize))
                        .copied()
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Target for Gateway {
    fn send(&self, request: Request) -> BoxFuture<'static, Answer> {
        let path = if request.batch {
            "/api/logs/batch"
        } else {
            "/api/logs"
        };
        let mut builder = self
            .client
            .post(format!("{}{path}", self.base))
            .header(CONTENT_TYPE, "application/json")
            .body(request.body);
        if let Some(auth) = self.authorization(&request.org) {
            builder = builder.header(AUTHORIZATION, auth);
        }
        let ids = request.ids;
        Box::pin(async move {
            let Ok(response) = builder.send().await else {
                return Answer::default();
            };
            let status = response.status().as_u16();
            let accepted = match status {
                202 => ids,
                207 => response
                    .json::<Value>()
                    .await
                    .map(|b| accepted_in(&b, &ids))
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            Answer {
                status: Some(status),
                accepted,
            }
        })
    }

    fn describe(&self) -> String {
        self.base.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_mixed_batch_answer_yields_only_its_accepted_ids() {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let body = json!({"results": [
            {"index": 0, "status": 202}, {"index": 1, "status": 400}, {"index": 2, "status": 202}
        ]});
        assert_eq!(accepted_in(&body, &ids), vec![ids[0], ids[2]]);
        assert!(accepted_in(&json!({}), &ids).is_empty());
    }
}
