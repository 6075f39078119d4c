//! A three-broker cluster made by `logctl up --brokers 3 --producers 2 --gateways 2`: Kafka's own
//! tool sees every partition on three brokers, `logctl status` names each broker with its role
//! and every instance, the broker count cannot be changed under a made stack, and the library's
//! `broker-kill`, `producer-kill` and `gateway-kill` drills pass on it (the leading broker, one
//! of two producers, then one of two gateways behind HAProxy SIGKILLed under load: no error
//! beyond the killed gateway's requests in flight, PostgreSQL holds every event once). The other cluster drills are longer and run with
//! `logctl scenario run` (scenarios/README.md).

mod support;

use std::process::{Command, Stdio};

use support::{logctl_bin, TestStack};

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

/// The number of brokers in a `describe` line's `Isr:` column.
fn isr_size(line: &str) -> usize {
    line.split("Isr:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map_or(0, |isr| isr.split(',').count())
}

#[test]
fn a_cluster_survives_losing_the_leading_broker_a_producer_and_a_gateway() {
    let stack = TestStack::start_cluster("cluster", 3, 2, 2, 1);

    let describe = kafka_tool(&stack, &["topics", "--describe", "--topic", "log-events"]);
    assert!(describe.contains("ReplicationFactor: 3"), "{describe}");
    let in_sync = describe
        .lines()
        .filter(|l| l.contains("Partition:") && isr_size(l) == 3)
        .count();
    assert_eq!(
        in_sync, 6,
        "every partition in sync on three brokers:\n{describe}"
    );

    let status = stack.status_json();
    for instance in ["producer", "producer-2", "gateway", "gateway-2", "haproxy"] {
        assert_eq!(stack.component_status(instance), "up", "{status}");
    }
    let brokers = status["kafka"]["brokers"].as_array().expect("brokers");
    let names: Vec<&str> = brokers.iter().filter_map(|b| b["name"].as_str()).collect();
    assert_eq!(names, ["kafka", "kafka-2", "kafka-3"], "{status}");
    assert!(
        brokers
            .iter()
            .all(|b| b["status"] == "up" && b["inCluster"] == true),
        "{status}"
    );
    let controllers = brokers.iter().filter(|b| b["controller"] == true).count();
    assert_eq!(controllers, 1, "one active controller: {status}");
    let led: u64 = brokers
        .iter()
        .filter_map(|b| b["partitionsLed"].as_u64())
        .sum();
    assert_eq!(led, 6, "every log-events partition has a leader: {status}");
    assert_eq!(status["kafka"]["underReplicated"], 0, "{status}");
    assert_eq!(status["kafka"]["minInsyncReplicas"], 2, "{status}");

    let again = stack.logctl(&["up", "--brokers", "1"]);
    assert!(!again.status.success(), "a made cluster cannot shrink");
    let told = String::from_utf8_lossy(&again.stderr);
    assert!(
        told.contains("made with 3 Kafka broker") && told.contains("down --purge"),
        "{told}"
    );

    let drills = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let out = Command::new(logctl_bin())
        .arg("--state-dir")
        .arg(&stack.dir)
        .args(["scenario", "run", "--headless"])
        .arg(drills.join("broker-kill.yaml"))
        .arg(drills.join("producer-kill.yaml"))
        .arg(drills.join("gateway-kill.yaml"))
        .stdin(Stdio::null())
        .output()
        .expect("logctl scenario run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && text.contains("PASSED broker-kill")
            && text.contains("PASSED producer-kill")
            && text.contains("PASSED gateway-kill"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("kill kafka-leader"), "{text}");
}
