//! The collector behind the console's screens, against a real stack: rates move with load,
//! breakers read closed, and lag read from Kafka rises while the consumer is down and falls
//! back to zero once it returns.

mod support;

use std::time::Duration;

use logctl::signals::{Collector, Signals};
use logctl::stack::layout::Layout;
use serde_json::{json, Value};
use support::{eventually, TestStack};

async fn post(stack: &TestStack, n: usize, tag: &str) {
    let events: Vec<Value> = (0..n)
        .map(|i| json!({"organizationId": "signals", "level": "INFO", "message": format!("{tag} {i}"), "source": tag}))
        .collect();
    let r = reqwest::Client::new()
        .post(format!("{}/api/logs/batch", stack.gateway()))
        .bearer_auth(stack.token("signals"))
        .json(&events)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_follow_the_stack() {
    let stack = TestStack::shared();
    let layout = Layout::open(&stack.dir).expect("layout");
    let config = layout.load_config().expect("config");
    let collector = Collector::new(&layout, &config);

    let first = collector.snapshot().await;
    post(stack, 500, "signals-a").await;
    let stored = eventually(
        "the events stored and lag at 0",
        Duration::from_secs(60),
        || async {
            let now = collector.snapshot().await;
            let s = Signals::between(&first, &now);
            (s.stored_per_sec > 0.0 && s.lag_total == Some(0)).then_some(s)
        },
    )
    .await;
    assert!(stored.accepted_per_sec > 0.0, "{stored:?}");
    assert!(stored.published_per_sec > 0.0, "{stored:?}");
    assert!(
        stored.gateway_p99_ms.is_some_and(|ms| ms > 0.0),
        "{stored:?}"
    );
    assert!(stored.end_to_end_p99_ms.is_some(), "{stored:?}");
    assert_eq!(stored.components.len(), 6, "{stored:?}");
    assert!(stored.components.values().all(|s| s == "up"), "{stored:?}");
    assert!(!stored.breakers.is_empty());
    assert!(
        stored.breakers.values().all(|s| s == "closed"),
        "{stored:?}"
    );

    // Consumer down: Kafka's own numbers show the lag.
    let out = stack.logctl(&["fault", "stop", "consumer"]);
    assert!(out.status.success());
    post(stack, 300, "signals-b").await;
    let down = eventually(
        "lag seen with the consumer down",
        Duration::from_secs(30),
        || async {
            let a = collector.snapshot().await;
            let s = Signals::between(&first, &a);
            (s.lag_total.is_some_and(|l| l >= 300)).then_some(s)
        },
    )
    .await;
    assert_eq!(down.components["consumer"], "down");
    let out = stack.logctl(&["fault", "start", "consumer"]);
    assert!(out.status.success());
    eventually("lag back to 0", Duration::from_secs(60), || async {
        let a = collector.snapshot().await;
        (a.lag.as_ref().map(|l| l.values().sum::<i64>()) == Some(0)).then_some(())
    })
    .await;

    // What collecting costs is measured by `logctl bench` and the README (no timed
    // assertions in tests); here the reading after recovery must show the consumer back.
    let after = Signals::between(&first, &collector.snapshot().await);
    assert_eq!(after.components["consumer"], "up");
}
