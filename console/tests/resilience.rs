//! Faults under steady load against the real stack, with PostgreSQL as the judge: every event
//! answered 2xx is stored exactly once, nothing else is stored, and no answer is a 500.
//! The tests share one stack and run one at a time (each breaks part of it).
//!
//! The outages a drill already proves in every CI run (PostgreSQL, Kafka and Redis stopped,
//! the consumer and the producer killed: `scenarios/*.yaml`, run by `scripts/test`) are not
//! repeated here; these are the faults no drill covers: a rebalance, poison records, rolling
//! SIGTERM restarts, an old producer's spool, and events Kafka took late that the spool sent
//! again.

// The lock serializes whole tests, each on its own runtime, across their awaits on purpose.
#![allow(clippy::await_holding_lock)]

mod support;

use std::time::Duration;

use logctl_contracts::metric;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use support::load::{verify_exactly_once, Load, LoadReport};
use support::{eventually, metric_with, scrape, serial, stored_from, TestStack};
use uuid::Uuid;

fn tag(test: &str) -> String {
    format!("{test}-{}", &Uuid::new_v4().simple().to_string()[..8])
}

async fn db(stack: &TestStack) -> sqlx::PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .connect(&stack.database_url())
        .await
        .expect("connect to PostgreSQL")
}

fn fault(stack: &TestStack, action: &str, component: &str) {
    let out = stack.logctl(&["fault", action, component]);
    assert!(
        out.status.success(),
        "logctl fault {action} {component}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `component` again when dropped, so a failing drill does not leave the shared stack
/// broken for the next one.
struct Restore<'a> {
    stack: &'a TestStack,
    component: &'static str,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        let _ = self.stack.logctl(&["fault", "start", self.component]);
    }
}

/// Injects a fault that takes `component` down and returns the guard that brings it back.
fn break_component<'a>(stack: &'a TestStack, action: &str, component: &'static str) -> Restore<'a> {
    fault(stack, action, component);
    Restore { stack, component }
}

fn assert_clean(report: &LoadReport, allowed: &[u16]) {
    for (status, n) in &report.statuses {
        assert!(
            allowed.contains(status),
            "{n} answers with status {status}: {:?}",
            report.statuses
        );
    }
    assert_eq!(report.server_errors(), 0, "{:?}", report.statuses);
    assert_eq!(report.transport_errors, 0, "requests without an answer");
    assert_eq!(
        report.unavailable_without_retry_after, 0,
        "a 503 without Retry-After"
    );
}

/// Stops the load and lets PostgreSQL judge: only `allowed` statuses, every acknowledged event
/// stored exactly once, nothing else stored, and the lag back to zero.
async fn judge(stack: &TestStack, tag: &str, load: Load, allowed: &[u16]) -> LoadReport {
    let report = load.stop().await;
    assert_clean(&report, allowed);
    verify_exactly_once(
        stack,
        &db(stack).await,
        tag,
        &report,
        Duration::from_secs(120),
    )
    .await;
    lag_is_zero(stack).await;
    report
}

async fn lag_is_zero(stack: &TestStack) {
    eventually(
        "consumer lag back to 0 (Kafka's own tool)",
        Duration::from_secs(90),
        || async { stack.kafka_reported_lag().filter(|l| *l == 0) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_consumer_joining_then_leaving_under_load_loses_and_duplicates_nothing() {
    let _serial = serial();
    let stack = TestStack::shared();
    let tag = tag("rebalance");
    let load = Load::start(stack, 300, tag.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let out = stack.logctl(&["up", "--consumers", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(
        "two members in the group",
        Duration::from_secs(60),
        || async { (stack.kafka_group_members() == 2).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    fault(stack, "stop", "consumer-2");
    eventually(
        "one member in the group",
        Duration::from_secs(60),
        || async { (stack.kafka_group_members() == 1).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    judge(stack, &tag, load, &[202]).await;
    let out = stack.logctl(&["up", "--consumers", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_go_to_the_dead_letter_topic_and_the_pipeline_moves_on() {
    let _serial = serial();
    let stack = TestStack::shared();
    let tag = tag("poison");
    let pool = db(stack).await;
    let producer: FutureProducer = ClientConfig::new()
        .set(
            "bootstrap.servers",
            format!("127.0.0.1:{}", stack.port("kafka-port")),
        )
        .create()
        .expect("producer");
    let undecodable = format!("{tag} this is not JSON");
    let bad_level =
        json!({"id": Uuid::now_v7(), "organizationId": "acme", "level": "LOUD", "message": tag,
        "source": tag, "timestamp": "2026-11-24T00:00:00Z", "receivedAt": "2026-11-24T00:00:00Z"})
        .to_string();
    let empty_message =
        json!({"id": Uuid::now_v7(), "organizationId": "acme", "level": "INFO", "message": "",
        "source": tag, "timestamp": "2026-11-24T00:00:00Z", "receivedAt": "2026-11-24T00:00:00Z"})
        .to_string();
    for payload in [&undecodable, &bad_level, &empty_message] {
        producer
            .send(
                FutureRecord::to("log-events")
                    .key("acme")
                    .payload(payload.as_bytes()),
                Duration::from_secs(10),
            )
            .await
            .expect("poison record written to log-events");
    }

    // A row PostgreSQL itself refuses: a constraint added for this test only.
    let refused = format!("{tag} refused by the database");
    let constraint = format!("refuse_{}", tag.replace('-', "_"));
    sqlx::query(&format!("ALTER TABLE log_events ADD CONSTRAINT {constraint} CHECK (message <> '{refused}') NOT VALID"))
        .execute(&pool)
        .await
        .expect("add constraint");
    let client = reqwest::Client::new();
    let mut good = Vec::new();
    let mut refused_id = String::new();
    for i in 0..20 {
        let message = if i == 10 {
            refused.clone()
        } else {
            format!("{tag} good {i}")
        };
        let event =
            json!({"organizationId": "acme", "level": "INFO", "message": message, "source": tag});
        let id = stack.post_event(&client, &event).await;
        if i == 10 {
            refused_id = id
        } else {
            good.push(id)
        }
    }

    let letters: Vec<Value> = eventually("four dead letters", Duration::from_secs(60), || async {
        let out = stack.logctl(&["dlq", "list", "--json"]);
        let all: Vec<Value> = serde_json::from_slice(&out.stdout).ok()?;
        let mine: Vec<Value> = all
            .into_iter()
            .filter(|l| l["payload"].as_str().is_some_and(|p| p.contains(&tag)))
            .collect();
        (mine.len() >= 4).then_some(mine)
    })
    .await;
    assert_eq!(letters.len(), 4, "{letters:#?}");
    let kind_of = |needle: &str| {
        letters
            .iter()
            .find(|l| l["payload"].as_str().is_some_and(|p| p.contains(needle)))
            .unwrap_or_else(|| panic!("no dead letter for {needle}"))
    };
    assert_eq!(
        kind_of("not JSON")["headers"]["x-logctl-error-kind"],
        "undecodable"
    );
    assert_eq!(
        kind_of("LOUD")["headers"]["x-logctl-error-kind"],
        "undecodable"
    );
    assert_eq!(
        kind_of("\"message\":\"\"")["headers"]["x-logctl-error-kind"],
        "invalid"
    );
    let rejected = kind_of("refused by the database");
    assert_eq!(
        rejected["headers"]["x-logctl-error-kind"],
        "rejected_by_database"
    );
    assert_eq!(rejected["headers"]["x-logctl-attempts"], "3");
    for l in &letters {
        for h in [
            "x-logctl-error",
            "x-logctl-source-partition",
            "x-logctl-source-offset",
        ] {
            assert!(
                l["headers"][h].as_str().is_some_and(|v| !v.is_empty()),
                "{h} missing in {l}"
            );
        }
    }

    // The pipeline moved on: the good events are stored and the lag is back to zero.
    let stored = stored_from(&pool, &tag, 19, Duration::from_secs(60)).await;
    assert_eq!(stored, 19);
    lag_is_zero(stack).await;

    // Fix the cause, replay the refused row: now it is stored.
    sqlx::query(&format!(
        "ALTER TABLE log_events DROP CONSTRAINT {constraint}"
    ))
    .execute(&pool)
    .await
    .expect("drop constraint");
    let offset = rejected["offset"].as_i64().expect("offset").to_string();
    let out = stack.logctl(&["dlq", "replay", "--offset", &offset]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(
        "the replayed event stored",
        Duration::from_secs(60),
        || async {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM log_events WHERE id = $1::uuid")
                .bind(&refused_id)
                .fetch_one(&pool)
                .await
                .ok()?;
            (n == 1).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_restarts_of_every_service_under_load_lose_nothing() {
    let _serial = serial();
    let stack = TestStack::shared();
    let tag = tag("rolling-restart");
    let load = Load::start(stack, 200, tag.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    // SIGTERM: each drains what it holds (answers in-flight requests, flushes the Kafka queue,
    // commits the stored batch) before it exits.
    for service in ["producer", "consumer", "gateway"] {
        fault(stack, "stop", service);
        fault(stack, "start", service);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let report = load.stop().await;
    // While a service restarts, the gateway answers 503 with Retry-After (or, for the gateway
    // itself, nobody answers); never a 500.
    for status in report.statuses.keys() {
        assert!([202, 503].contains(status), "{:?}", report.statuses);
    }
    assert_eq!(report.unavailable_without_retry_after, 0);
    verify_exactly_once(
        stack,
        &db(stack).await,
        &tag,
        &report,
        Duration::from_secs(120),
    )
    .await;
    lag_is_zero(stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_left_by_an_older_producer_replays_and_its_unreadable_record_is_dead_lettered() {
    let _serial = serial();
    let stack = TestStack::shared();
    // A segment as a producer wrote it before records carried a format version: three events,
    // then a record no version reads (server/producer/tests/fixtures/README.md).
    let fixture = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../server/producer/tests/fixtures/spool-v0.seg"
    ))
    .expect("fixture segment");
    let spool = stack.dir.join("producer/spool");
    {
        let _back = break_component(stack, "stop", "producer");
        std::fs::create_dir_all(&spool).expect("spool dir");
        // After whatever the spool holds, so it replays as the oldest sealed segment or next.
        let last = std::fs::read_dir(&spool)
            .expect("read spool")
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".seg")?
                    .parse::<u64>()
                    .ok()
            })
            .max()
            .unwrap_or(0);
        std::fs::write(spool.join(format!("{:020}.seg", last + 1)), &fixture)
            .expect("place the segment");
    }
    let pool = db(stack).await;
    let stored: i64 = eventually(
        "the old segment's three events stored",
        Duration::from_secs(60),
        || async {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM log_events WHERE organization_id = 'spool-fixture'",
            )
            .fetch_one(&pool)
            .await
            .ok()?;
            (n >= 3).then_some(n)
        },
    )
    .await;
    assert_eq!(stored, 3);
    let letter: Value = eventually(
        "the unreadable record in the dead-letter topic",
        Duration::from_secs(60),
        || async {
            let out = stack.logctl(&["dlq", "list", "--json"]);
            let all: Vec<Value> = serde_json::from_slice(&out.stdout).ok()?;
            all.into_iter()
                .find(|l| l["headers"]["x-logctl-error-kind"] == "spool_undecodable")
        },
    )
    .await;
    assert_eq!(
        letter["payload"], r#"{"v":99,"note":"a record from a producer newer than this one"}"#,
        "the bytes as spooled: {letter:#}"
    );
    let h = &letter["headers"];
    assert_eq!(h["x-logctl-source-topic"], "producer-spool");
    assert_eq!(h["x-logctl-source-offset"], "3", "{letter:#}");
    assert!(
        h["x-logctl-error"]
            .as_str()
            .is_some_and(|e| e.contains("format 99 is newer")),
        "{letter:#}"
    );
    let producer = stack.port("producer-port");
    eventually(
        "the unreadable record counted",
        Duration::from_secs(10),
        || async {
            let n = metric_with(
                &scrape(producer).await,
                metric::PRODUCER_SPOOL_UNDECODABLE,
                &[],
            );
            (n == 1.0).then_some(())
        },
    )
    .await;
    eventually("the spool emptied", Duration::from_secs(30), || async {
        let n = metric_with(&scrape(producer).await, metric::PRODUCER_SPOOL_RECORDS, &[]);
        (n == 0.0).then_some(())
    })
    .await;
}

/// The "possibly persisted" case: Kafka frozen (SIGSTOP) for longer than the producer waits for
/// an acknowledgement (`ack_patience`, 2 s) but shorter than librdkafka's `message.timeout.ms`
/// (8 s). The producer answers from its spool, librdkafka still holds the records in flight
/// and delivers them once Kafka thaws, and the spool then replays the same events: Kafka holds
/// two copies of each. PostgreSQL must store each once; the consumer's skipped-duplicate count
/// shows the second copies did arrive (else this would prove nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_kafka_took_late_and_the_spool_sent_again_are_stored_once() {
    let _serial = serial();
    let stack = TestStack::shared();
    let producer = stack.port("producer-port");
    let consumer = stack.port("consumer-port");
    let count =
        |port: u16, name: &'static str| async move { metric_with(&scrape(port).await, name, &[]) };
    let replayed_before = count(producer, metric::PRODUCER_SPOOL_REPLAYED).await;
    let skipped_before = count(consumer, metric::CONSUMER_DUPLICATES_SKIPPED).await;

    let tag = tag("possibly-persisted");
    let load = Load::start(stack, 200, tag.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    {
        let _thaw = ThawOnDrop(stack);
        fault(stack, "pause", "kafka");
        tokio::time::sleep(Duration::from_secs(4)).await;
        fault(stack, "resume", "kafka");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    judge(stack, &tag, load, &[202]).await;

    let replayed = count(producer, metric::PRODUCER_SPOOL_REPLAYED).await - replayed_before;
    assert!(
        replayed > 0.0,
        "the spool replayed nothing: the fault did not bite"
    );
    let skipped = eventually(
        "the consumer skipped the second copies",
        Duration::from_secs(30),
        || async {
            let n = count(consumer, metric::CONSUMER_DUPLICATES_SKIPPED).await - skipped_before;
            (n > 0.0).then_some(n)
        },
    )
    .await;
    println!("replayed from the spool: {replayed}; second copies skipped: {skipped}");
}

/// Resumes Kafka if a panic leaves it frozen.
struct ThawOnDrop<'a>(&'a TestStack);

impl Drop for ThawOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.logctl(&["fault", "resume", "kafka"]);
    }
}
