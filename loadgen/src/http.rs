//! The gateway as a load target: `POST /api/logs` (single) or `/api/logs/batch`, each with a
//! bearer token for the request's organization.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;
use uuid::Uuid;

use crate::engine::{Answer, Request, Target};
use crate::http1;

/// Mints a token for an organization (the console signs them with the stack's key).
pub type TokenSource = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

pub struct Gateway {
    client: http1::Client,
    base: String,
    tokens: TokenSource,
    /// Each organization's request headers, its token among them.
    headers: Mutex<HashMap<String, Arc<str>>>,
}

impl Gateway {
    pub fn new(base: &str, tokens: TokenSource, timeout: Duration) -> Result<Self, http1::Error> {
        let base = base.trim_end_matches('/').to_owned();
        Ok(Self {
            client: http1::Client::new(&base, timeout)?,
            base,
            tokens,
            headers: Mutex::new(HashMap::new()),
        })
    }

    fn headers(&self, org: &str) -> Arc<str> {
        let mut cache = self
            .headers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(h) = cache.get(org) {
            return h.clone();
        }
        let mut h = String::from("Content-Type: application/json\r\n");
        // No token (none could be minted): the request goes without and is refused, as a
        // client's would be.
        if let Some(token) = (self.tokens)(org) {
            h.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        let h: Arc<str> = h.into();
        cache.insert(org.to_owned(), h.clone());
        h
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
        let headers = self.headers(&request.org);
        let client = self.client.clone();
        Box::pin(async move {
            let Ok(response) = client.post(path, &headers, &request.body).await else {
                return Answer::default();
            };
            let accepted = match response.status {
                202 => request.ids,
                207 => serde_json::from_slice::<Value>(&response.body)
                    .map(|b| accepted_in(&b, &request.ids))
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            Answer {
                status: Some(response.status),
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
