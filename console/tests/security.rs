//! The gateway's door against a real stack: tokens (missing, expired, forged, wrong scope,
//! wrong organization) are refused with the right codes and nothing reaches Kafka; limits hold
//! in total across two gateway processes sharing Redis; with Redis stopped, ingestion and reads
//! go on with the limiter in memory.
//! The tests share one stack and run one at a time (some count what reached Kafka, one stops
//! Redis).

// The lock serializes whole tests, each on its own runtime, across their awaits on purpose.
#![allow(clippy::await_holding_lock)]

mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use logctl_contracts::metric;
use logctl_core::auth::{mint_claims, Claims};
use logctl_core::config::Secret;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{eventually, logctl_bin, metric_with, scrape, serial, TestStack};
use uuid::Uuid;

fn secret(stack: &TestStack) -> Secret {
    let layout = logctl::stack::layout::Layout::open(&stack.dir).expect("state dir");
    logctl::token::secret(&layout).expect("the stack's JWT secret")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn token(secret: &Secret, org: &str, scope: &str, exp: u64) -> String {
    mint_claims(
        secret,
        &Claims {
            sub: "security-test".into(),
            org: org.into(),
            exp,
            iat: now(),
            scope: scope.into(),
        },
    )
    .expect("mint")
}

async fn published(stack: &TestStack) -> f64 {
    metric_with(
        &scrape(stack.port("producer-port")).await,
        metric::PRODUCER_EVENTS_PUBLISHED,
        &[],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_with_the_right_code_and_nothing_is_published() {
    let _serial = serial();
    let stack = TestStack::shared();
    let client = reqwest::Client::new();
    let key = secret(stack);
    let org = "door";
    let event =
        json!({"organizationId": org, "level": "INFO", "message": "m", "source": "security"});
    let url = format!("{}/api/logs", stack.gateway());
    let before = published(stack).await;

    let forged_key = Secret::new("not-the-stack-secret-not-the-stack-secret");
    let cases: Vec<(&str, Option<String>, u16, &str)> = vec![
        ("no token", None, 401, "missing"),
        ("not a JWT", Some("Bearer hello".into()), 401, "malformed"),
        (
            "basic auth",
            Some("Basic dXNlcjpwdw==".into()),
            401,
            "malformed",
        ),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                token(&key, org, "logs:write", now() - 600)
            )),
            401,
            "expired",
        ),
        (
            "forged signature",
            Some(format!(
                "Bearer {}",
                token(&forged_key, org, "logs:write", now() + 600)
            )),
            401,
            "bad_signature",
        ),
        (
            "read scope only",
            Some(format!(
                "Bearer {}",
                token(&key, org, "logs:read", now() + 600)
            )),
            403,
            "wrong_scope",
        ),
        (
            "another organization's token",
            Some(format!(
                "Bearer {}",
                token(&key, "other-org", "logs:write", now() + 600)
            )),
            403,
            "wrong_org",
        ),
    ];
    let metrics_before = scrape(stack.port("gateway-port")).await;
    for (what, header, status, reason) in &cases {
        let mut req = client.post(&url).json(&event);
        if let Some(h) = header {
            req = req.header("authorization", h);
        }
        let r = req.send().await.expect("post");
        assert_eq!(r.status().as_u16(), *status, "{what}");
        if *status == 401 {
            let challenge = r.headers()["www-authenticate"].to_str().expect("ascii");
            assert!(challenge.starts_with("Bearer"), "{what}: {challenge}");
        }
        let body: Value = r.json().await.expect("json");
        let field = if *reason == "wrong_org" {
            "organizationId"
        } else {
            "Authorization"
        };
        assert_eq!(body["field"], field, "{what}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    // Each refusal is counted under its reason.
    let metrics_after = scrape(stack.port("gateway-port")).await;
    for (what, _, _, reason) in &cases {
        let grew = metric_with(&metrics_after, metric::AUTH_FAILURES, &[("reason", reason)])
            - metric_with(
                &metrics_before,
                metric::AUTH_FAILURES,
                &[("reason", reason)],
            );
        assert!(
            grew >= 1.0,
            "{what}: auth failures with reason {reason} did not grow"
        );
    }

    // A batch with one event of another organization is refused whole.
    let mine = stack.token(org);
    let batch = json!([
        {"organizationId": org, "level": "INFO", "message": "mine", "source": "security"},
        {"organizationId": "someone-else", "level": "INFO", "message": "theirs", "source": "security"},
    ]);
    let r = client
        .post(format!("{}/api/logs/batch", stack.gateway()))
        .bearer_auth(&mine)
        .json(&batch)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["field"], "organizationId", "{body}");

    assert_eq!(
        published(stack).await,
        before,
        "a refused request published something to Kafka"
    );
    // The same token and event are fine when they agree.
    let r = client
        .post(&url)
        .bearer_auth(&mine)
        .json(&event)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(published(stack).await, before + 1.0);
}

/// A gateway process beside the stack's, with its own config; killed when dropped.
struct ExtraGateway {
    child: Child,
    url: String,
}

impl ExtraGateway {
    fn start(stack: &TestStack, name: &str, config: &str) -> ExtraGateway {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let file = stack.dir.join(format!("{name}.toml"));
        std::fs::write(&file, config).expect("config");
        let binary = logctl_bin().with_file_name("logctl-gateway");
        let log =
            std::fs::File::create(stack.dir.join("logs").join(format!("{name}.log"))).expect("log");
        let child = Command::new(binary)
            .env("LOGCTL_CONFIG", &file)
            .env("LOGCTL_GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "LOGCTL_GATEWAY_PRODUCER_URL",
                format!("http://127.0.0.1:{}", stack.port("producer-port")),
            )
            .env(
                "LOGCTL_GATEWAY_QUERY_URL",
                format!("http://127.0.0.1:{}", stack.port("consumer-port")),
            )
            .env("LOGCTL_GATEWAY_AUTH__HS256_SECRET", secret(stack).expose())
            .env(
                "LOGCTL_GATEWAY_REDIS__URL",
                format!("redis://127.0.0.1:{}", stack.port("redis-port")),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start a second gateway");
        ExtraGateway {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn ready(&self) {
        let url = format!("{}/health/live", self.url);
        eventually("the extra gateway is up", Duration::from_secs(30), || {
            let url = url.clone();
            async move {
                reqwest::get(url)
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
            }
        })
        .await;
    }
}

impl Drop for ExtraGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const LIMITED: &str = "
[rate_limit]
replicas = 2
[rate_limit.orgs.bursty]
per_second = 20.0
burst = 40
[rate_limit.orgs.batcher]
per_second = 1.0
burst = 50
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_holds_in_total_across_two_gateways_sharing_redis() {
    let _serial = serial();
    let stack = TestStack::shared();
    let a = ExtraGateway::start(stack, "gateway-a", LIMITED);
    let b = ExtraGateway::start(stack, "gateway-b", LIMITED);
    a.ready().await;
    b.ready().await;
    let client = reqwest::Client::new();
    let token = stack.token("bursty");
    let event =
        json!({"organizationId": "bursty", "level": "INFO", "message": "m", "source": "burst"});

    // 200 events as fast as 16 connections go, alternating between the two gateways.
    let started = Instant::now();
    let answers: Vec<(u16, reqwest::header::HeaderMap)> =
        futures::future::join_all((0..200).map(|i| {
            let (client, token, event) = (client.clone(), token.clone(), event.clone());
            let url = format!("{}/api/logs", if i % 2 == 0 { &a.url } else { &b.url });
            async move {
                let r = client
                    .post(url)
                    .bearer_auth(token)
                    .json(&event)
                    .send()
                    .await
                    .expect("post");
                (r.status().as_u16(), r.headers().clone())
            }
        }))
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let accepted = answers.iter().filter(|(s, _)| *s == 202).count();
    let limited: Vec<_> = answers.iter().filter(|(s, _)| *s == 429).collect();
    assert_eq!(
        accepted + limited.len(),
        200,
        "only 202 or 429: {:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    // One shared bucket: the burst plus what the rate refilled meanwhile, not twice that.
    let allowance = 40.0 + 20.0 * elapsed;
    eprintln!("{accepted} of 200 accepted in {elapsed:.3} s (allowance {allowance:.1})");
    assert!(accepted >= 40, "the burst passes: {accepted} accepted");
    assert!(
        (accepted as f64) <= allowance + 1.0,
        "{accepted} accepted in {elapsed:.2} s; one limit of {allowance:.0} across both gateways"
    );
    for (_, headers) in &limited {
        let retry: u64 = headers["retry-after"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("secs");
        assert!(retry >= 1);
        assert_eq!(headers["x-ratelimit-limit"], "40");
        assert_eq!(headers["x-ratelimit-remaining"], "0");
        assert!(headers.contains_key("x-ratelimit-reset"));
    }
    let (_, ok_headers) = answers.iter().find(|(s, _)| *s == 202).expect("a 202");
    assert!(ok_headers.contains_key("x-ratelimit-remaining"));

    // A batch spends its size: 30 of 50 pass, the next 30 do not fit.
    let token = stack.token("batcher");
    let batch: Vec<Value> = (0..30)
        .map(|i| json!({"organizationId": "batcher", "level": "INFO", "message": format!("b{i}"), "source": "burst"}))
        .collect();
    let post = |url: String| {
        let (client, token, batch) = (client.clone(), token.clone(), batch.clone());
        async move {
            client
                .post(format!("{url}/api/logs/batch"))
                .bearer_auth(token)
                .json(&batch)
                .send()
                .await
                .expect("post")
        }
    };
    let first = post(a.url.clone()).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    assert_eq!(first.headers()["x-ratelimit-remaining"], "20");
    let second = post(b.url.clone()).await;
    assert_eq!(
        second.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the other gateway sees the same bucket"
    );
    let body: Value = second.json().await.expect("json");
    assert_eq!(body["error"], "rate_limited", "{body}");

    let metrics = scrape(
        a.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port"),
    )
    .await;
    assert!(
        metric_with(
            &metrics,
            metric::RATE_LIMIT_DECISIONS,
            &[("decision", "limited"), ("backend", "redis")]
        ) >= 1.0,
        "limited decisions are counted"
    );
}

/// A slow refill and a large burst: blocks can grow well past what one test posts.
const LEASED: &str = "
[rate_limit.orgs.leased]
per_second = 1.0
burst = 1000
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_organization_leases_tokens_in_blocks_and_gives_back_what_it_did_not_spend() {
    let _serial = serial();
    let stack = TestStack::shared();
    let gateway = ExtraGateway::start(stack, "gateway-lease", LEASED);
    let other = ExtraGateway::start(stack, "gateway-lease-other", LEASED);
    gateway.ready().await;
    other.ready().await;
    let port: u16 = gateway
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let round_trips = |text: &str| {
        metric_with(
            text,
            "logctl_rate_limit_check_seconds_count",
            &[("backend", "redis")],
        )
    };
    let before = round_trips(&scrape(port).await);
    let client = reqwest::Client::new();
    let token = stack.token("leased");
    let post_to = |base: &str| {
        let (client, token) = (client.clone(), token.clone());
        let url = format!("{base}/api/logs");
        async move {
            let r = client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"organizationId": "leased", "level": "INFO", "message": "m", "source": "lease"}))
                .send()
                .await
                .expect("post");
            (r.status(), r.headers().clone())
        }
    };
    let started = Instant::now();
    let answers: Vec<_> = futures::stream::iter((0..300).map(|_| post_to(&gateway.url)))
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(
        answers.iter().all(|(s, _)| *s == StatusCode::ACCEPTED),
        "300 of a burst of 1000 pass"
    );
    let metrics = scrape(port).await;
    let trips = round_trips(&metrics) - before;
    assert!(
        trips < 60.0,
        "{trips} round trips to Redis for 300 requests: tokens are leased in blocks"
    );
    assert_eq!(
        metric_with(&metrics, metric::RATE_LIMIT_FALLBACK, &[]),
        0.0,
        "nothing decided in memory with Redis up"
    );
    // Once the lease's time to live (1 s) has passed, what the first gateway leased and did not
    // spend is back in the shared bucket: the other gateway's answer says the burst less the
    // 300 spent and itself, plus what the rate refilled meanwhile, not less whatever the first
    // one's last block held unspent.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (status, headers) = post_to(&other.url).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let remaining: f64 = headers["x-ratelimit-remaining"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("number");
    let refilled = started.elapsed().as_secs_f64().ceil();
    assert!(
        (699.0..=699.0 + refilled).contains(&remaining),
        "remaining {remaining}: 1000 - 301 spent (+ up to {refilled} refilled)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_stopped_ingestion_and_reads_go_on_and_limits_are_kept_locally() {
    let _serial = serial();
    let stack = TestStack::shared();
    let client = reqwest::Client::new();
    let org = format!("redis-out-{}", &Uuid::new_v4().simple().to_string()[..6]);
    let token = stack.token(&org);
    let gateway_port = stack.port("gateway-port");
    let post = |i: usize| {
        let (client, token, org) = (client.clone(), token.clone(), org.clone());
        let url = format!("{}/api/logs", stack.gateway());
        async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"organizationId": org, "level": "WARN", "message": format!("r{i}"), "source": "redis-outage"}))
                .send()
                .await
                .expect("post")
                .status()
        }
    };
    let stats = || {
        let (client, token) = (client.clone(), token.clone());
        let url = format!("{}/api/stats", stack.gateway());
        async move {
            let r = client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("get");
            (r.status(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    for i in 0..5 {
        assert_eq!(post(i).await, StatusCode::ACCEPTED);
    }
    eventually("5 events counted", Duration::from_secs(30), || async {
        let (s, body) = stats().await;
        (s == StatusCode::OK && body["total"] == 5).then_some(())
    })
    .await;

    let out = stack.logctl(&["fault", "stop", "redis"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    struct Restart<'a>(&'a TestStack);
    impl Drop for Restart<'_> {
        fn drop(&mut self) {
            let _ = self.0.logctl(&["fault", "start", "redis"]);
        }
    }
    let _restart = Restart(stack);

    let started = Instant::now();
    for i in 5..25 {
        assert_eq!(
            post(i).await,
            StatusCode::ACCEPTED,
            "ingestion goes on without Redis"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "20 posts took {:?} without Redis",
        started.elapsed()
    );
    let ready: Value = reqwest::get(format!("http://127.0.0.1:{gateway_port}/health/ready"))
        .await
        .expect("ready")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["checks"]["redis"]["status"], "DEGRADED", "{ready}");
    let metrics = scrape(gateway_port).await;
    assert_eq!(metric_with(&metrics, metric::RATE_LIMIT_LOCAL, &[]), 1.0);
    assert!(
        metric_with(
            &metrics,
            metric::RATE_LIMIT_DECISIONS,
            &[("decision", "allowed"), ("backend", "local")]
        ) >= 1.0
    );
    // Reads come from PostgreSQL alone, still right.
    eventually(
        "25 events counted without Redis",
        Duration::from_secs(30),
        || async {
            let (s, body) = stats().await;
            (s == StatusCode::OK && body["total"] == 25).then_some(())
        },
    )
    .await;
    let r = client
        .get(format!("{}/api/logs?limit=3", stack.gateway()))
        .bearer_auth(&token)
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), StatusCode::OK);

    let out = stack.logctl(&["fault", "start", "redis"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(
        "the limiter back on Redis",
        Duration::from_secs(30),
        || async {
            assert_eq!(post(99).await, StatusCode::ACCEPTED);
            let m = scrape(gateway_port).await;
            (metric_with(&m, metric::RATE_LIMIT_LOCAL, &[]) == 0.0).then_some(())
        },
    )
    .await;
}
