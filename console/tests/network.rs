//! Network faults on a stack with the fault proxy (`logctl up --with-proxies`): set from the
//! command line, shown by `status`, cleared again, under the test's own steady load, with
//! PostgreSQL judging that nothing acknowledged was lost or stored twice.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::load::{verify_exactly_once, Load};
use support::TestStack;

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn fault(stack: &TestStack, args: &[&str]) -> String {
    let mut all = vec!["fault"];
    all.extend_from_slice(args);
    let out = stack.logctl(&all);
    assert!(out.status.success(), "logctl {all:?}:\n{}", text(&out));
    text(&out)
}

/// Each link's faults as `status --json` lists them.
fn link_faults(stack: &TestStack) -> Vec<(String, Vec<String>)> {
    let status = stack.status_json();
    status["links"]
        .as_array()
        .unwrap_or_else(|| panic!("status lists no links: {status}"))
        .iter()
        .map(|l| {
            let faults = l["faults"]
                .as_array()
                .map(|fs| {
                    fs.iter()
                        .map(|f| f["type"].as_str().unwrap_or("?").to_owned())
                })
                .into_iter()
                .flatten()
                .collect();
            (l["name"].as_str().unwrap_or_default().to_owned(), faults)
        })
        .collect()
}

fn faults_on(links: &[(String, Vec<String>)], name: &str) -> Vec<String> {
    links
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, f)| f.clone())
        .unwrap_or_else(|| panic!("no link {name} in {links:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowed_black_holed_and_cut_links_lose_nothing_and_give_no_5xx() {
    let stack = TestStack::start_with_proxies("network");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&stack.database_url())
        .await
        .expect("connect to the stack's PostgreSQL directly");
    let tag = format!("network-{}", uuid::Uuid::new_v4().simple());
    let load = Load::start(&stack, 200, tag.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Redis answers nothing: the limiter falls back to memory.
    fault(&stack, &["blackhole", "redis"]);
    let links = link_faults(&stack);
    assert_eq!(faults_on(&links, "redis"), ["blackhole"]);
    assert!(faults_on(&links, "postgres").is_empty());
    tokio::time::sleep(Duration::from_secs(4)).await;
    fault(&stack, &["clear", "redis"]);

    // Every answer from Kafka 200 ms late; a second latency replaces the first.
    fault(&stack, &["latency", "kafka", "100ms"]);
    let out = fault(&stack, &["latency", "kafka", "200ms", "--jitter", "20ms"]);
    assert!(out.contains("latency 200ms ±20ms"), "{out}");
    assert_eq!(faults_on(&link_faults(&stack), "kafka"), ["latency"]);
    tokio::time::sleep(Duration::from_secs(4)).await;
    fault(&stack, &["clear"]);
    assert!(link_faults(&stack).iter().all(|(_, f)| f.is_empty()));

    // The gateway cut from its producer: 503s with Retry-After, then 202s again.
    fault(&stack, &["blackhole", "producer"]);
    tokio::time::sleep(Duration::from_secs(8)).await;
    fault(&stack, &["clear", "producer"]);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let report = load.stop().await;

    assert_eq!(report.server_errors(), 0, "{:?}", report.statuses);
    assert_eq!(report.transport_errors, 0, "{:?}", report.statuses);
    assert!(
        report.count(503) > 0,
        "the cut was never felt: {:?}",
        report.statuses
    );
    assert_eq!(report.unavailable_without_retry_after, 0);
    // 202s came back after the link did.
    let last = report.timeline.iter().rev().take(50);
    assert!(
        last.clone().all(|(_, s)| *s == 202),
        "{:?}",
        last.collect::<Vec<_>>()
    );
    verify_exactly_once(&stack, &pool, &tag, &report, Duration::from_secs(60)).await;

    let status: Value = stack.status_json();
    assert_eq!(status["allUp"], true, "{status}");
}

#[test]
fn network_faults_are_refused_with_the_reason() {
    // No stack needed: each is refused before anything is sent.
    let stack = TestStack::new("network-refusals", 1);
    let refused = |args: &[&str], why: &str| {
        let mut all = vec!["fault"];
        all.extend_from_slice(args);
        let out = stack.logctl(&all);
        assert!(!out.status.success(), "{all:?} was accepted");
        assert!(text(&out).contains(why), "{all:?}: {}", text(&out));
    };
    refused(&["latency", "kafka"], "needs an amount");
    refused(&["latency", "kafka", "soon"], "duration");
    refused(&["bandwidth", "postgres", "1 lightyear"], "rate");
    refused(&["blackhole", "consumer"], "has no link");
    refused(&["latency", "kafka", "200ms"], "no fault proxy");
}
