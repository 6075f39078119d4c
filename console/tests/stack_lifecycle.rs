//! `logctl up | status | down` against real processes: readiness, idempotent `up`, several
//! consumers in one group, data kept across `down`/`up`, and clear refusals.

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{eventually, TestStack};

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

const COMPONENTS: [&str; 7] = [
    "postgres",
    "redis",
    "kafka",
    "producer",
    "consumer",
    "consumer-2",
    "gateway",
];

/// The components `status --json` lists, in its order.
fn names(status: &Value) -> Vec<&str> {
    status["components"]
        .as_array()
        .expect("components")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_down_up_keeps_the_data_and_two_consumers_share_the_group() {
    let stack = TestStack::start("lifecycle", 2);

    let status = stack.status_json();
    assert_eq!(status["allUp"], true, "{status:#}");
    let components = status["components"].as_array().expect("components");
    assert_eq!(names(&status), COMPONENTS);
    for c in components {
        assert!(c["pid"].as_u64().is_some_and(|p| p > 1), "{c}");
        assert_eq!(c["status"], "up", "{c}");
    }
    // PostgreSQL and its backends run below the services' CPU priority (`postgres_nice`).
    let nice = |name: &str| {
        let pid = components
            .iter()
            .find(|c| c["name"] == name)
            .and_then(|c| c["pid"].as_u64())
            .expect("a pid");
        logctl_core::procfs::stat(pid as u32).map(|s| s.nice)
    };
    assert_eq!(nice("postgres"), Some(10), "{status:#}");
    assert_eq!(nice("gateway"), Some(0), "{status:#}");
    assert_eq!(components[6]["port"], stack.port("gateway-port"));
    assert_eq!(
        components[5]["port"],
        stack.port("consumer-port") + logctl::stack::layout::INSTANCE_PORT_STRIDE
    );

    // Both consumer instances own partitions of the one group.
    eventually(
        "two members in log-consumer-group",
        Duration::from_secs(60),
        || async { (stack.kafka_group_members() == 2).then_some(()) },
    )
    .await;

    // Scaling onto a taken port is refused, and the stack keeps the shape it had.
    let third = stack.port("consumer-port") + 2 * logctl::stack::layout::INSTANCE_PORT_STRIDE;
    let squatter = std::net::TcpListener::bind(("127.0.0.1", third)).expect("bind");
    let refused = stack.logctl(&["up", "--consumers", "3"]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains(&format!("port {third}")),
        "{}",
        text(&refused)
    );
    let status = stack.status_json();
    assert_eq!(
        names(&status),
        COMPONENTS,
        "still two consumers: {status:#}"
    );
    drop(squatter);

    // A second `up` finds everything running and starts nothing.
    let again = stack.up();
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(
        text(&again).matches("already running").count(),
        7,
        "{}",
        text(&again)
    );

    let client = reqwest::Client::new();
    let event = json!({"organizationId": "keep", "level": "ERROR", "message": "survives restarts", "source": "lifecycle"});
    let id = stack.post_event(&client, &event).await;
    let token = stack.token("keep");
    let get = |client: reqwest::Client, url: String| {
        let token = token.clone();
        async move {
            let r = client.get(url).bearer_auth(token).send().await.ok()?;
            (r.status() == StatusCode::OK).then_some(r.json::<Value>().await.ok()?)
        }
    };
    let url = format!("{}/api/logs/{id}", stack.gateway());
    eventually("the event stored", Duration::from_secs(30), || {
        get(client.clone(), url.clone())
    })
    .await;

    let down = stack.logctl(&["down"]);
    assert!(down.status.success(), "{}", text(&down));
    let status = stack.logctl(&["status", "--json"]);
    assert_eq!(
        status.status.code(),
        Some(3),
        "status exits 3 when components are down"
    );
    let doc: Value = serde_json::from_slice(&status.stdout).expect("json");
    for c in doc["components"].as_array().expect("components") {
        assert_eq!(c["status"], "down", "{c}");
    }

    let started = Instant::now();
    let up = stack.up();
    assert!(up.status.success(), "{}", text(&up));
    assert_eq!(text(&up).matches("started").count(), 7, "{}", text(&up));
    eprintln!("second up took {:?}", started.elapsed());
    let stored = eventually(
        "the event still there after down/up",
        Duration::from_secs(30),
        || get(client.clone(), url.clone()),
    )
    .await;
    assert_eq!(stored["message"], "survives restarts");

    // The pipeline works after the restart too.
    let id2 = stack.post_event(&client, &event).await;
    let url2 = format!("{}/api/logs/{id2}", stack.gateway());
    eventually(
        "a new event stored after restart",
        Duration::from_secs(60),
        || get(client.clone(), url2.clone()),
    )
    .await;

    let down = stack.logctl(&["down"]);
    assert!(down.status.success(), "{}", text(&down));
}

#[test]
fn a_taken_port_is_refused_before_anything_starts() {
    let stack = TestStack::new("port-taken", 1);
    let _squatter =
        std::net::TcpListener::bind(("127.0.0.1", stack.port("gateway-port"))).expect("bind");
    let out = stack.up();
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(
        msg.contains(&format!("port {}", stack.port("gateway-port"))),
        "{msg}"
    );
    assert!(msg.contains("--gateway-port"), "{msg}");
    let status: Value =
        serde_json::from_slice(&stack.logctl(&["status", "--json"]).stdout).expect("json");
    for c in status["components"].as_array().expect("components") {
        assert_eq!(c["status"], "down", "nothing may start: {c}");
    }
}

#[test]
fn a_missing_binary_is_named_with_how_to_get_it() {
    let stack = TestStack::new("missing-binary", 1);
    let out = stack.up_with_env(&[("LOGCTL_BIN_DIR", "/nonexistent/bin")]);
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(
        msg.contains("logctl-producer") && msg.contains("not found"),
        "{msg}"
    );
    assert!(msg.contains("cargo build"), "{msg}");
    let status: Value =
        serde_json::from_slice(&stack.logctl(&["status", "--json"]).stdout).expect("json");
    assert_eq!(status["allUp"], false);
    for c in status["components"].as_array().expect("components") {
        assert_eq!(c["status"], "down", "nothing may start: {c}");
    }
}
