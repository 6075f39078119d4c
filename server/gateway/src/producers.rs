//! The producer instances the gateway publishes through, each behind its own breaker.
//!
//! Calls go round the instances in turn; one whose breaker is open is skipped, and a call that
//! got no answer (or a 5xx) is sent again to the next instance. The retry is safe because every
//! event carries its id: should the first instance have published it after all, the copy is
//! stored once (the table's primary key). A dead producer then costs its callers one retry's
//! latency, not an error; only when every instance fails does the caller get a 503.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use logctl_core::breaker::{Breaker, BreakerSettings, State};
use logctl_core::internal_api::{PublishRequest, PublishResponse, PUBLISH_PATH};
use logctl_core::ApiError;

use crate::coalesce::Answer;
use crate::upstream::{breaker_open, judge, unavailable};

/// The breaker name of instance `i`, as its component is named (`producer`, `producer-2`...).
pub fn instance_name(i: usize) -> String {
    logctl_contracts::instance::name("producer", u16::try_from(i).unwrap_or(u16::MAX))
}

/// The instances' base URLs, from one URL or several separated by commas.
pub fn parse_urls(list: &str) -> Vec<String> {
    list.split(',')
        .map(|u| u.trim().trim_end_matches('/').to_owned())
        .filter(|u| !u.is_empty())
        .collect()
}

struct Instance {
    base: String,
    breaker: Breaker,
}

#[derive(Clone)]
pub struct Producers {
    http: reqwest::Client,
    attempt_timeout: Duration,
    instances: Arc<Vec<Instance>>,
    next: Arc<AtomicUsize>,
}

impl Producers {
    pub fn new(
        http: reqwest::Client,
        urls: &[String],
        breaker: &BreakerSettings,
        attempt_timeout: Duration,
    ) -> Self {
        let instances = urls
            .iter()
            .enumerate()
            .map(|(i, base)| Instance {
                base: base.clone(),
                breaker: Breaker::new(instance_name(i), breaker.clone()),
            })
            .collect();
        Self {
            http,
            attempt_timeout,
            instances: Arc::new(instances),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The order this call tries the instances in: each call starts one further along.
    fn order(&self) -> impl Iterator<Item = usize> + '_ {
        let n = self.instances.len().max(1);
        let first = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..self.instances.len()).map(move |k| (first + k) % n)
    }

    /// Publishes through the first instance that answers; the last failure when none does.
    pub async fn send(&self, request: PublishRequest) -> Answer {
        let mut last: Option<ApiError> = None;
        let mut soonest_retry: Option<Duration> = None;
        for i in self.order() {
            let instance = &self.instances[i];
            let permit = match instance.breaker.acquire() {
                Ok(p) => p,
                Err(open) => {
                    soonest_retry =
                        Some(soonest_retry.map_or(open.retry_after, |s| s.min(open.retry_after)));
                    continue;
                }
            };
            let sent = self
                .http
                .post(format!("{}{PUBLISH_PATH}", instance.base))
                .timeout(self.attempt_timeout)
                .json(&request)
                .send()
                .await;
            let response = match judge(permit, sent) {
                Ok(r) if r.status().is_success() => r,
                Ok(r) => {
                    last = Some(unavailable("producer", format!("answered {}", r.status())));
                    continue;
                }
                Err(e) => {
                    tracing::debug!(instance = %instance_name(i), error = %e, "producer call failed; trying the next instance");
                    last = Some(unavailable("producer", e));
                    continue;
                }
            };
            match response.json::<PublishResponse>().await {
                // The coalescer checks the outcomes against the events, request by request.
                Ok(body) => return Ok(body.results),
                Err(e) => last = Some(unavailable("producer", e)),
            }
        }
        Err(last.unwrap_or_else(|| {
            breaker_open("producer", soonest_retry.unwrap_or(Duration::from_secs(1)))
        }))
    }

    /// Whether no instance's breaker is closed (each open, or on trial): every producer has
    /// been failing, and only a probe should wait on them.
    pub fn none_closed(&self) -> bool {
        self.instances
            .iter()
            .all(|i| i.breaker.state() != State::Closed)
    }

    /// How long until the first open breaker lets a trial call through.
    pub fn soonest_retry(&self) -> Duration {
        self.instances
            .iter()
            .filter_map(|i| i.breaker.retry_after())
            .min()
            .unwrap_or(Duration::from_secs(1))
    }

    /// Ready when any instance is: one is enough to publish.
    pub async fn ready(&self) -> Result<(), String> {
        let mut why = Vec::new();
        for (i, instance) in self.instances.iter().enumerate() {
            match self
                .http
                .get(format!("{}/health/ready", instance.base))
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => why.push(format!("{} answered {}", instance_name(i), r.status())),
                Err(e) => why.push(format!("{}: {e}", instance_name(i))),
            }
        }
        Err(why.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_one_or_a_comma_separated_list() {
        assert_eq!(parse_urls("http://a:1/"), ["http://a:1"]);
        assert_eq!(
            parse_urls(" http://a:1 , http://b:2/,"),
            ["http://a:1", "http://b:2"]
        );
        assert_eq!(instance_name(0), "producer");
        assert_eq!(instance_name(1), "producer-2");
    }

    const ATTEMPT: Duration = Duration::from_secs(4);

    async fn live_producer() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let live = listener.local_addr().expect("addr");
        let app = axum::Router::new()
            .route(
                PUBLISH_PATH,
                axum::routing::post(|| async { axum::Json(serde_json::json!({"results": []})) }),
            )
            .route("/health/ready", axum::routing::get(|| async { "ok" }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        live
    }

    #[tokio::test]
    async fn an_instance_that_never_answers_is_given_up_for_the_next() {
        // Accepts connections and reads nothing back: a black-holed link.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let silent_addr = silent.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = silent.accept().await {
                held.push(conn);
            }
        });
        let live = live_producer().await;
        let urls = vec![format!("http://{silent_addr}"), format!("http://{live}")];
        let breaker = BreakerSettings {
            consecutive_failures: 2,
            ..BreakerSettings::default()
        };
        let p = Producers::new(
            reqwest::Client::new(),
            &urls,
            &breaker,
            Duration::from_millis(200),
        );
        for call in 0..6 {
            let answer = p.send(PublishRequest { segments: vec![] }).await;
            assert!(answer.is_ok(), "call {call}: {answer:?}");
        }
        // After its failures the silent one's breaker is open: calls skip it.
        assert!(p.instances[0].breaker.acquire().is_err());
    }

    #[test]
    fn each_call_starts_one_instance_further_and_tries_them_all() {
        let urls = parse_urls("http://a,http://b,http://c");
        let p = Producers::new(
            reqwest::Client::new(),
            &urls,
            &BreakerSettings::default(),
            ATTEMPT,
        );
        let orders: Vec<Vec<usize>> = (0..4).map(|_| p.order().collect()).collect();
        assert_eq!(
            orders,
            [[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 1, 2]].map(|o| o.to_vec())
        );
    }

    #[tokio::test]
    async fn a_dead_instance_costs_a_retry_on_the_next_not_an_error() {
        let live = live_producer().await;
        // A port nothing listens on any more.
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let urls = vec![format!("http://127.0.0.1:{dead}"), format!("http://{live}")];
        let p = Producers::new(
            reqwest::Client::new(),
            &urls,
            &BreakerSettings::default(),
            ATTEMPT,
        );
        for call in 0..4 {
            let answer = p.send(PublishRequest { segments: vec![] }).await;
            assert!(answer.is_ok(), "call {call}: {answer:?}");
        }
        assert!(p.ready().await.is_ok(), "one live instance is enough");

        let none = Producers::new(
            reqwest::Client::new(),
            &urls[..1],
            &BreakerSettings::default(),
            ATTEMPT,
        );
        let answer = none.send(PublishRequest { segments: vec![] }).await;
        assert!(
            matches!(answer, Err(ApiError::Unavailable { .. })),
            "{answer:?}"
        );
        assert!(none.ready().await.is_err());
    }
}
