//! The write path end to end against the real stack: gateway → producer → Kafka → consumer →
//! PostgreSQL, plus the read-back, bad input and ops endpoints.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::stream::{self, StreamExt};
use logctl_contracts::metric;
use logctl_loadgen::events::EventMix;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::Row;
use support::{eventually, stored_from, TestStack};
use uuid::Uuid;

async fn db(stack: &TestStack) -> sqlx::PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .connect(&stack.database_url())
        .await
        .expect("connect to the stack's PostgreSQL")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// A source value unique to one test, so tests sharing the stack count only their own rows.
fn run_tag(test: &str) -> String {
    format!("{test}-{}", &Uuid::new_v4().simple().to_string()[..8])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_with_duplicate_ids_are_stored_exactly_once() {
    let stack = TestStack::shared();
    let client = http();
    let tag = run_tag("exactly-once");
    let mut mix = EventMix::new(42, 25, 160, "tenant");

    // 10,000 posts: 9,500 distinct client ids, then 500 re-posts of earlier ids (a client
    // retrying after a lost answer). Half go one by one, half in batches of 100.
    let mut events: Vec<Value> = (0..9_500)
        .map(|_| {
            let mut e = mix.next_event();
            e["id"] = json!(Uuid::now_v7());
            e["source"] = json!(tag);
            e
        })
        .collect();
    let repeats: Vec<Value> = events.iter().step_by(19).take(500).cloned().collect();
    events.extend(repeats);
    assert_eq!(events.len(), 10_000);
    let distinct: HashSet<String> = events
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(distinct.len(), 9_500);

    let (singles, batched) = events.split_at(5_000);
    let gateway = stack.gateway();
    let single_results: Vec<(StatusCode, Value)> = stream::iter(singles.iter().cloned())
        .map(|e| {
            let client = client.clone();
            let url = format!("{gateway}/api/logs");
            let token = stack.token(e["organizationId"].as_str().expect("org"));
            async move {
                let r = client
                    .post(url)
                    .bearer_auth(token)
                    .json(&e)
                    .send()
                    .await
                    .expect("post");
                (r.status(), r.json::<Value>().await.expect("json answer"))
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for (status, body) in &single_results {
        assert_eq!(*status, StatusCode::ACCEPTED, "{body}");
    }
    // A token is for one organization, so batches are too.
    let mut by_org: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for e in batched {
        let org = e["organizationId"].as_str().expect("org").to_owned();
        by_org.entry(org).or_default().push(e.clone());
    }
    for (org, events) in &by_org {
        for chunk in events.chunks(100) {
            let r = client
                .post(format!("{gateway}/api/logs/batch"))
                .bearer_auth(stack.token(org))
                .json(&chunk)
                .send()
                .await
                .expect("post batch");
            assert_eq!(r.status(), StatusCode::ACCEPTED);
            let body: Value = r.json().await.expect("json");
            assert_eq!(body["accepted"], chunk.len());
        }
    }

    let pool = db(stack).await;
    let stored = stored_from(&pool, &tag, 9_500, Duration::from_secs(60)).await;
    assert_eq!(stored, 9_500, "every distinct event exactly once");
    let ids: HashSet<String> =
        sqlx::query("SELECT id::text AS id FROM log_events WHERE source = $1")
            .bind(&tag)
            .fetch_all(&pool)
            .await
            .expect("ids")
            .iter()
            .map(|r| r.get::<String, _>("id"))
            .collect();
    assert_eq!(ids, distinct, "the stored ids are exactly the posted ones");

    // The wait is the check: it fails unless Kafka's own tools come to report zero lag.
    eventually(
        "Kafka's tools to show zero lag",
        Duration::from_secs(60),
        || async { stack.kafka_reported_lag().filter(|lag| *lag == 0) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_organizations_events_keep_their_order_within_a_partition() {
    let stack = TestStack::shared();
    let client = http();
    let tag = run_tag("ordering");
    let org = format!("ordered-{}", &Uuid::new_v4().simple().to_string()[..6]);
    let mut sent = Vec::new();
    for i in 0..60 {
        let event = json!({"organizationId": org, "level": "INFO", "message": format!("step {i}"), "source": tag});
        stack.post_event(&client, &event).await;
        sent.push(format!("step {i}"));
    }
    let batch: Vec<Value> = (60..160)
        .map(|i| json!({"organizationId": org, "level": "DEBUG", "message": format!("step {i}"), "source": tag}))
        .collect();
    sent.extend((60..160).map(|i| format!("step {i}")));
    let r = client
        .post(format!("{}/api/logs/batch", stack.gateway()))
        .bearer_auth(stack.token(&org))
        .json(&batch)
        .send()
        .await
        .expect("batch");
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    let pool = db(stack).await;
    let rows = eventually(
        "the organization's events stored",
        Duration::from_secs(60),
        || {
            let pool = pool.clone();
            let org = org.clone();
            async move {
                let rows = sqlx::query(
                    "SELECT message, kafka_partition, kafka_offset FROM log_events \
                 WHERE organization_id = $1 ORDER BY kafka_offset",
                )
                .bind(&org)
                .fetch_all(&pool)
                .await
                .ok()?;
                (rows.len() == 160).then_some(rows)
            }
        },
    )
    .await;
    let partitions: HashSet<i32> = rows.iter().map(|r| r.get("kafka_partition")).collect();
    assert_eq!(partitions.len(), 1, "one organization, one partition");
    let stored: Vec<String> = rows.iter().map(|r| r.get("message")).collect();
    assert_eq!(
        stored, sent,
        "offsets follow the order the events were accepted in"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_event_reads_back_by_id() {
    let stack = TestStack::shared();
    let client = http();
    // Yesterday: inside the retention, so no pass drops it meanwhile.
    let timestamp = format!(
        "{}T01:02:03Z",
        (chrono::Utc::now() - chrono::TimeDelta::days(1)).format("%Y-%m-%d")
    );
    let event = json!({"organizationId": "acme", "level": "warn", "message": "disk 91% full",
                       "source": run_tag("read-back"), "timestamp": timestamp});
    let id = stack.post_event(&client, &event).await;
    assert_eq!(Uuid::parse_str(&id).expect("uuid").get_version_num(), 7);

    let stored: Value = eventually("the event readable by id", Duration::from_secs(30), || {
        let client = client.clone();
        let url = format!("{}/api/logs/{id}", stack.gateway());
        let token = stack.token("acme");
        async move {
            let r = client.get(url).bearer_auth(token).send().await.ok()?;
            (r.status() == StatusCode::OK).then_some(r.json::<Value>().await.ok()?)
        }
    })
    .await;
    assert_eq!(stored["id"], id);
    assert_eq!(stored["level"], "WARN");
    assert_eq!(stored["timestamp"], timestamp.as_str());
    assert!(
        stored["kafkaOffset"].is_i64() && stored["storedAt"].is_string(),
        "{stored}"
    );

    let missing = client
        .get(format!("{}/api/logs/{}", stack.gateway(), Uuid::now_v7()))
        .bearer_auth(stack.token("acme"))
        .send()
        .await
        .expect("get");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_4xx_naming_the_field_and_publishes_nothing() {
    let stack = TestStack::shared();
    let client = http();
    let tag = run_tag("bad-input");
    let ok = |m: Value| {
        let mut e =
            json!({"organizationId": "acme", "level": "INFO", "message": "m", "source": tag});
        for (k, v) in m.as_object().cloned().unwrap_or_default() {
            e[k] = v;
        }
        e.to_string()
    };
    let without = |field: &str| {
        let mut e =
            json!({"organizationId": "acme", "level": "INFO", "message": "m", "source": tag});
        e.as_object_mut().map(|o| o.remove(field));
        e.to_string()
    };
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "malformed JSON",
            "{\"organizationId\": ".into(),
            400,
            "body",
        ),
        ("not an object", "[1,2]".into(), 400, "body"),
        (
            "missing organizationId",
            without("organizationId"),
            400,
            "organizationId",
        ),
        (
            "organizationId of wrong type",
            ok(json!({"organizationId": 12})),
            400,
            "organizationId",
        ),
        ("unknown level", ok(json!({"level": "LOUD"})), 400, "level"),
        (
            "level of wrong type",
            ok(json!({"level": true})),
            400,
            "level",
        ),
        ("empty message", ok(json!({"message": ""})), 400, "message"),
        (
            "oversized message",
            ok(json!({"message": "x".repeat(64 * 1024 + 1)})),
            400,
            "message",
        ),
        (
            "bad timestamp",
            ok(json!({"timestamp": "last tuesday"})),
            400,
            "timestamp",
        ),
        ("bad id", ok(json!({"id": "not-a-uuid"})), 400, "id"),
        (
            "unknown field",
            ok(json!({"severity": "high"})),
            400,
            "severity",
        ),
        (
            "oversized body",
            format!("{{\"message\": \"{}\"}}", "y".repeat(17 * 1024 * 1024)),
            413,
            "body",
        ),
    ];
    for (what, body, status, field) in cases {
        let r = client
            .post(format!("{}/api/logs", stack.gateway()))
            .bearer_auth(stack.token("acme"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status().as_u16(), status, "{what}");
        let answer: Value = r
            .json()
            .await
            .unwrap_or_else(|e| panic!("{what}: answer is not JSON: {e}"));
        assert_eq!(answer["field"], field, "{what}: {answer}");
        assert!(
            answer["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {answer}"
        );
    }

    // A batch: too many items, not an array, and per-item errors beside accepted items.
    let too_many: Vec<Value> = (0..1_001)
        .map(|_| serde_json::from_str(&ok(json!({}))).expect("json"))
        .collect();
    let r = client
        .post(format!("{}/api/logs/batch", stack.gateway()))
        .bearer_auth(stack.token("acme"))
        .json(&too_many)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = client
        .post(format!("{}/api/logs/batch", stack.gateway()))
        .bearer_auth(stack.token("acme"))
        .json(&json!({"a": 1}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let mixed = json!([
        serde_json::from_str::<Value>(&ok(json!({"message": "good one"}))).expect("json"),
        serde_json::from_str::<Value>(&ok(json!({"level": "NOPE"}))).expect("json"),
    ]);
    let r = client
        .post(format!("{}/api/logs/batch", stack.gateway()))
        .bearer_auth(stack.token("acme"))
        .json(&mixed)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::MULTI_STATUS);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["results"][0]["status"], 202);
    assert_eq!(body["results"][1]["status"], 400);
    assert_eq!(body["results"][1]["error"]["field"], "level");

    // Only the one good event of this test reached the table: the refused ones were answered
    // before anything was published, so once the good one is stored the count is final.
    let pool = db(stack).await;
    let n = stored_from(&pool, &tag, 1, Duration::from_secs(60)).await;
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_traceparent_comes_back_and_is_stored_with_the_event() {
    let stack = TestStack::shared();
    let client = http();
    let trace_id = format!("{:032x}", Uuid::new_v4().as_u128());
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let event = json!({"organizationId": "acme", "level": "INFO", "message": "traced", "source": run_tag("trace")});
    let r = client
        .post(format!("{}/api/logs", stack.gateway()))
        .bearer_auth(stack.token("acme"))
        .header("traceparent", &traceparent)
        .json(&event)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let echoed = r.headers()["traceparent"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(echoed.starts_with(&format!("00-{trace_id}-")), "{echoed}");
    assert_ne!(
        echoed, traceparent,
        "the gateway answers with its own span id"
    );
    let id = r.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let pool = db(stack).await;
    let stored: String = eventually("the traced event stored", Duration::from_secs(30), || {
        let pool = pool.clone();
        let id = id.clone();
        async move {
            sqlx::query_scalar("SELECT trace_id FROM log_events WHERE id = $1::uuid")
                .bind(&id)
                .fetch_optional(&pool)
                .await
                .ok()
                .flatten()
        }
    })
    .await;
    assert_eq!(stored, trace_id);

    // Without a traceparent the gateway starts a trace, and it is stored too.
    let r = client
        .post(format!("{}/api/logs", stack.gateway()))
        .bearer_auth(stack.token("acme"))
        .json(&event)
        .send()
        .await
        .expect("post");
    let started = r.headers()["traceparent"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let new_trace = started.split('-').nth(1).expect("trace id").to_owned();
    let id = r.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let url = format!("{}/api/logs/{id}", stack.gateway());
    let stored: Value = eventually("the second event readable", Duration::from_secs(30), || {
        let client = client.clone();
        let url = url.clone();
        let token = stack.token("acme");
        async move {
            let r = client.get(url).bearer_auth(token).send().await.ok()?;
            (r.status() == StatusCode::OK).then_some(r.json::<Value>().await.ok()?)
        }
    })
    .await;
    assert_eq!(stored["traceId"], new_trace);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_answers_health_readiness_and_metrics() {
    let stack = TestStack::shared();
    let client = http();
    let services: HashMap<&str, u16> = HashMap::from([
        ("gateway", stack.port("gateway-port")),
        ("producer", stack.port("producer-port")),
        ("consumer", stack.port("consumer-port")),
    ]);
    for (name, port) in services {
        for path in ["/health", "/health/ready", "/actuator/health"] {
            let r = client
                .get(format!("http://127.0.0.1:{port}{path}"))
                .send()
                .await
                .expect("get");
            assert_eq!(r.status(), StatusCode::OK, "{name}{path}");
            let body: Value = r.json().await.expect("json");
            assert_eq!(body["status"], "UP", "{name}{path}: {body}");
        }
        for path in ["/metrics", "/actuator/prometheus"] {
            let r = client
                .get(format!("http://127.0.0.1:{port}{path}"))
                .send()
                .await
                .expect("get");
            assert_eq!(r.status(), StatusCode::OK);
            let text = r.text().await.expect("text");
            assert!(
                text.contains(metric::HTTP_REQUESTS),
                "{name}{path}:\n{text}"
            );
        }
    }
    let ready: Value = client
        .get(format!(
            "http://127.0.0.1:{}/health/ready",
            stack.port("consumer-port")
        ))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["checks"]["postgres"]["status"], "UP");
    assert_eq!(ready["checks"]["kafka"]["status"], "UP");
}
