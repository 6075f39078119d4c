//! The read API against a real stack: pages newest first with keyset cursors, filters, stats
//! served from the Redis cache and still right after new events, one organization never seeing
//! another's events, and bad parameters refused with a 400 naming them.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use logctl_contracts::metric;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{eventually, metric_with, scrape, TestStack};
use uuid::Uuid;

fn org(name: &str) -> String {
    format!("{name}-{}", &Uuid::new_v4().simple().to_string()[..6])
}

async fn get(stack: &TestStack, org: &str, path_and_query: &str) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .get(format!("{}{path_and_query}", stack.gateway()))
        .bearer_auth(stack.token(org))
        .send()
        .await
        .expect("get");
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

/// Posts the events as one batch for their organization and waits until all are stored.
async fn store(stack: &TestStack, org: &str, events: &[Value]) {
    let r = reqwest::Client::new()
        .post(format!("{}/api/logs/batch", stack.gateway()))
        .bearer_auth(stack.token(org))
        .json(events)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

async fn wait_total(stack: &TestStack, org: &str, total: usize) {
    eventually(
        &format!("{total} events of {org} stored"),
        Duration::from_secs(60),
        || async move {
            let (s, page) = get(stack, org, "/api/logs?limit=1000").await;
            (s == StatusCode::OK && page["items"].as_array().map(Vec::len) == Some(total))
                .then_some(())
        },
    )
    .await;
}

/// The events' day: recent enough to be well inside the retention (a week by default), so
/// their partition exists and no retention pass drops them during the test.
fn yesterday() -> String {
    (chrono::Utc::now() - chrono::TimeDelta::days(1))
        .format("%Y-%m-%d")
        .to_string()
}

fn event(org: &str, i: usize, level: &str, source: &str) -> Value {
    // One event per minute, so the expected order is known.
    let minute = i % 60;
    let hour = 10 + i / 60;
    json!({"organizationId": org, "level": level, "message": format!("e{i}"), "source": source,
           "timestamp": format!("{}T{hour:02}:{minute:02}:00Z", yesterday())})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_filters_and_isolation() {
    let stack = TestStack::shared();
    let (a, b) = (org("alpha"), org("beta"));
    let levels = ["INFO", "WARN", "ERROR"];
    let a_events: Vec<Value> = (0..25)
        .map(|i| event(&a, i, levels[i % 3], if i < 10 { "api" } else { "worker" }))
        .collect();
    let b_events: Vec<Value> = (0..5).map(|i| event(&b, i, "ERROR", "api")).collect();
    store(stack, &a, &a_events).await;
    store(stack, &b, &b_events).await;
    wait_total(stack, &a, 25).await;
    wait_total(stack, &b, 5).await;

    // Pages of 10, newest first, cursors to the end, nothing twice.
    let mut seen = Vec::new();
    let mut next = "/api/logs?limit=10".to_owned();
    let mut pages = 0;
    loop {
        let (s, page) = get(stack, &a, &next).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        pages += 1;
        for item in page["items"].as_array().expect("items") {
            assert_eq!(item["organizationId"], a.as_str());
            seen.push(item["message"].as_str().expect("message").to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(c) => next = format!("/api/logs?limit=10&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25).rev().map(|i| format!("e{i}")).collect();
    assert_eq!(seen, expected, "newest first, every event once");

    // Filters.
    let (_, errors) = get(stack, &a, "/api/logs?level=error").await;
    let errors = errors["items"].as_array().expect("items").clone();
    assert_eq!(errors.len(), (0..25).filter(|i| i % 3 == 2).count());
    assert!(errors.iter().all(|e| e["level"] == "ERROR"));
    let (_, api) = get(stack, &a, "/api/logs?source=api&limit=100").await;
    assert_eq!(api["items"].as_array().expect("items").len(), 10);
    let (_, window) = get(
        stack,
        &a,
        &format!(
            "/api/logs?since={d}T10:05:00Z&until={d}T10:10:00Z",
            d = yesterday()
        ),
    )
    .await;
    let window: Vec<&str> = window["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["message"].as_str().expect("m"))
        .collect();
    assert_eq!(window, ["e9", "e8", "e7", "e6", "e5"]);

    // Isolation: B sees only its own, and not A's event by id, whatever it asks.
    let (_, b_page) = get(stack, &b, "/api/logs?limit=100").await;
    let b_orgs: HashSet<&str> = b_page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["organizationId"].as_str().expect("org"))
        .collect();
    assert_eq!(b_orgs, HashSet::from([b.as_str()]));
    let (_, a_page) = get(stack, &a, "/api/logs?limit=1").await;
    let a_id = a_page["items"][0]["id"].as_str().expect("id").to_owned();
    let (s, _) = get(stack, &a, &format!("/api/logs/{a_id}")).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = get(stack, &b, &format!("/api/logs/{a_id}")).await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "another organization's event reads as absent"
    );
    let (s, body) = get(stack, &b, &format!("/api/logs?org={a}")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "org");
    let (_, b_stats) = get(stack, &b, "/api/stats").await;
    assert_eq!(b_stats["total"], 5);
    assert_eq!(b_stats["organizationId"], b.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_are_cached_and_stay_right_after_new_events() {
    let stack = TestStack::shared();
    let consumer = stack.port("consumer-port");
    let o = org("stats");
    let events: Vec<Value> = (0..12)
        .map(|i| event(&o, i, if i < 4 { "ERROR" } else { "INFO" }, "svc"))
        .collect();
    store(stack, &o, &events).await;
    wait_total(stack, &o, 12).await;

    let hits = |m: &str| {
        metric_with(
            m,
            metric::CACHE_REQUESTS,
            &[("cache", "stats"), ("result", "hit")],
        )
    };
    let before = hits(&scrape(consumer).await);
    let (s, first) = get(stack, &o, "/api/stats").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(first["total"], 12);
    assert_eq!(first["byLevel"], json!({"ERROR": 4, "INFO": 8}));
    assert_eq!(first["bySource"], json!({"svc": 12}));
    for _ in 0..5 {
        let (_, again) = get(stack, &o, "/api/stats").await;
        assert_eq!(again, first);
    }
    let after = hits(&scrape(consumer).await);
    assert!(
        after - before >= 5.0,
        "repeated stats reads hit the cache ({before} -> {after})"
    );

    // New events make the cached stats stale at once, not after the TTL.
    let more: Vec<Value> = (12..15).map(|i| event(&o, i, "WARN", "svc")).collect();
    store(stack, &o, &more).await;
    let fresh = eventually(
        "stats count the new events",
        Duration::from_secs(30),
        || async {
            let (_, s) = get(stack, &o, "/api/stats").await;
            (s["total"] == 15).then_some(s)
        },
    )
    .await;
    let by_level: BTreeMap<String, i64> =
        serde_json::from_value(fresh["byLevel"].clone()).expect("levels");
    assert_eq!(
        by_level,
        BTreeMap::from([("ERROR".into(), 4), ("INFO".into(), 8), ("WARN".into(), 3)])
    );
    let (_, since) = get(
        stack,
        &o,
        &format!("/api/stats?since={}T10:12:00Z", yesterday()),
    )
    .await;
    assert_eq!(since["total"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_query_parameters_are_a_400_naming_the_parameter() {
    let stack = TestStack::shared();
    let o = org("params");
    let cases = [
        ("/api/logs?level=LOUD", "level"),
        ("/api/logs?since=yesterday", "since"),
        ("/api/logs?until=2026-02-30T00:00:00Z", "until"),
        ("/api/logs?limit=0", "limit"),
        ("/api/logs?limit=100000", "limit"),
        ("/api/logs?limit=-1", "limit"),
        ("/api/logs?cursor=not-a-cursor", "cursor"),
        ("/api/logs?color=blue", "color"),
        ("/api/logs?level=INFO&level=WARN", "level"),
        ("/api/stats?since=2026", "since"),
        ("/api/logs/not-a-uuid", "id"),
    ];
    for (path, field) in cases {
        let (s, body) = get(stack, &o, path).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["field"], field, "{path}: {body}");
    }
    // Reads need the read scope.
    let write_only = logctl::token::mint(
        &logctl::stack::layout::Layout::open(&stack.dir).expect("state dir"),
        &o,
        &[logctl_core::auth::Scope::Write],
        Duration::from_secs(60),
        "t",
    )
    .expect("mint");
    let r = reqwest::Client::new()
        .get(format!("{}/api/stats", stack.gateway()))
        .bearer_auth(write_only)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = reqwest::Client::new()
        .get(format!("{}/api/logs", stack.gateway()))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
