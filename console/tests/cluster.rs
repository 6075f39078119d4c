//! A three-broker cluster made by `logctl up --brokers 3`: Kafka's own tool sees every partition
//! on three brokers, and a broker SIGKILLed under steady load costs clients nothing (min ISR 2
//! of 3 still takes acks=all writes), with PostgreSQL as the judge once it is back in sync.

mod support;

use std::time::Duration;

use support::load::{verify_exactly_once, Load};
use support::{eventually, TestStack};

fn kafka_tool(stack: &TestStack, args: &[&str]) -> String {
    let mut all = vec!["kafka"];
    all.extend_from_slice(args);
    let out = stack.logctl(&all);
    assert!(
        out.status.success(),
        "logctl {}: {}",
        all.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Partitions of our topics Kafka's tool lists as under-replicated.
fn under_replicated(stack: &TestStack) -> usize {
    kafka_tool(
        stack,
        &["topics", "--describe", "--under-replicated-partitions"],
    )
    .lines()
    .filter(|l| l.contains("Partition:"))
    .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_under_load_costs_clients_nothing_and_loses_nothing() {
    let stack = TestStack::start_cluster("cluster", 3, 1);

    let describe = kafka_tool(&stack, &["topics", "--describe", "--topic", "log-events"]);
    assert!(describe.contains("ReplicationFactor: 3"), "{describe}");
    let replicated = describe
        .lines()
        .filter(|l| l.contains("Partition:"))
        .filter(|l| {
            l.split("Isr:").nth(1).is_some_and(|isr| {
                isr.split_whitespace()
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .count()
                    == 3
            })
        })
        .count();
    assert_eq!(
        replicated, 6,
        "every partition in sync on three brokers:\n{describe}"
    );

    let status = stack.status_json();
    for broker in ["kafka", "kafka-2", "kafka-3"] {
        assert_eq!(stack.component_status(broker), "up", "{status}");
    }

    let tag = format!(
        "cluster-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let load = Load::start(&stack, 200, tag.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let out = stack.logctl(&["fault", "kill", "kafka-2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(
        "partitions under-replicated with kafka-2 dead",
        Duration::from_secs(60),
        || async { (under_replicated(&stack) > 0).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let out = stack.logctl(&["fault", "start", "kafka-2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(
        "every partition back in sync",
        Duration::from_secs(120),
        || async { (under_replicated(&stack) == 0).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.stop().await;

    // Two of three brokers met min ISR throughout: every request was accepted.
    assert_eq!(
        report.statuses.keys().copied().collect::<Vec<_>>(),
        [202],
        "{:?}",
        report.statuses
    );
    assert_eq!(report.transport_errors, 0);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&stack.database_url())
        .await
        .expect("connect to PostgreSQL");
    verify_exactly_once(&stack, &pool, &tag, &report, Duration::from_secs(120)).await;
}
