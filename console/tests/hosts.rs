//! `logctl up --brokers 3 --hosts --with-proxies`: every broker, PostgreSQL, Redis and each
//! service on a network namespace of its own, joined by the stack's own bridge. The test's own
//! client posts through the public port while the leading broker is cut off from everyone (its
//! process running), then while 200 ms is added to Kafka, and PostgreSQL judges that every
//! acknowledged event is stored exactly once; a partition between two brokers shows in
//! `status` and heals; the library's `broker-partition` drill passes headless; `down` leaves
//! no namespace or link behind. A `--hosts` without root is refused and makes nothing.
//! Namespaces need root: CI runs as root; elsewhere the tests say they were skipped.

// One test at a time (they count the machine's namespaces), each on its own runtime, on purpose.
#![allow(clippy::await_holding_lock)]

mod support;

use std::time::Duration;

use serde_json::Value;
use support::load::{verify_exactly_once, Load};
use support::TestStack;

fn netns() -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn logctl_ok(stack: &TestStack, args: &[&str]) -> String {
    let out = stack.logctl(args);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "logctl {args:?}:\n{text}");
    text
}

fn host<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["hosts"]
        .as_array()
        .and_then(|hs| hs.iter().find(|h| h["name"] == name))
        .unwrap_or_else(|| panic!("no host {name} in {status}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_on_hosts_loses_nothing_while_the_leading_broker_is_cut_off() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: network namespaces need root (CI runs this as root)");
        return;
    }
    // One at a time: the other test counts the namespaces.
    let _serial = support::serial();
    let stack = TestStack::start_on_hosts("hosts", 3);
    let status = stack.status_json();
    let prefix = host(&status, "kafka")["namespace"]
        .as_str()
        .and_then(|ns| ns.strip_suffix("-kafka"))
        .expect("namespace")
        .to_owned();
    let listed = netns();
    for name in [
        "net", "kafka", "kafka-2", "kafka-3", "postgres", "redis", "producer", "consumer",
        "gateway",
    ] {
        assert!(
            listed.contains(&format!("{prefix}-{name}")),
            "{prefix}-{name} missing:\n{listed}"
        );
    }
    assert_eq!(
        stack.component_status("haproxy"),
        "up",
        "the edge on the machine"
    );

    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&stack.database_url())
        .await
        .expect("PostgreSQL on its host, through the stack's link");
    let tag = format!("hosts-{}", uuid::Uuid::new_v4().simple());
    let load = Load::start(&stack, 200, tag.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;

    let isolated = logctl_ok(&stack, &["fault", "isolate", "kafka-leader", "--json"]);
    let leader: Value = serde_json::from_str(&isolated).expect("outcome JSON");
    let leader = leader["component"].as_str().expect("the broker").to_owned();
    assert_eq!(host(&stack.status_json(), &leader)["link"], "isolated");
    tokio::time::sleep(Duration::from_secs(20)).await;
    logctl_ok(&stack, &["fault", "heal", "kafka-leader"]);
    assert_eq!(host(&stack.status_json(), &leader)["link"], "up");
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Then 200 ms on every answer from the brokers: the proxy on the machine, its links on
    // the hosts' uplink.
    logctl_ok(&stack, &["fault", "latency", "kafka", "200ms"]);
    tokio::time::sleep(Duration::from_secs(10)).await;
    logctl_ok(&stack, &["fault", "clear"]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let report = load.stop().await;

    assert_eq!(report.server_errors(), 0, "{:?}", report.statuses);
    assert_eq!(report.transport_errors, 0, "{:?}", report.statuses);
    verify_exactly_once(&stack, &pool, &tag, &report, Duration::from_secs(120)).await;

    // The library's drill, headless, on the same stack: the leader cut off for 30 s.
    let drill =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/broker-partition.yaml");
    let out = stack.logctl(&[
        "scenario",
        "run",
        "--headless",
        drill.to_str().expect("path"),
    ]);
    assert!(
        out.status.success(),
        "broker-partition failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );

    logctl_ok(&stack, &["fault", "partition", "kafka-2", "kafka-3"]);
    let status = stack.status_json();
    assert_eq!(
        host(&status, "kafka-2")["cutFrom"],
        serde_json::json!(["kafka-3"]),
        "{status}"
    );
    assert_eq!(
        host(&status, "kafka-3")["cutFrom"],
        serde_json::json!(["kafka-2"]),
        "{status}"
    );
    logctl_ok(&stack, &["fault", "heal", "kafka-2", "kafka-3"]);
    assert_eq!(
        host(&stack.status_json(), "kafka-2")["cutFrom"],
        serde_json::json!([])
    );

    logctl_ok(&stack, &["down"]);
    let left = netns();
    assert!(
        !left.contains(&format!("{prefix}-")),
        "left behind:\n{left}"
    );
    let uplink = std::process::Command::new("ip")
        .args(["link", "show", &format!("{prefix}up")])
        .output()
        .expect("ip link");
    assert!(!uplink.status.success(), "the uplink was left behind");
}

#[test]
fn without_root_hosts_are_refused_with_what_to_run_and_nothing_is_made() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to run logctl as another user");
        return;
    }
    let _serial = support::serial();
    let dir = support::scratch_dir("hosts-unprivileged");
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("open the state dir to nobody");
    // A copy nobody can run: the build's own folder is under root's closed home.
    let bin = dir.join("logctl");
    std::fs::copy(support::logctl_bin(), &bin).expect("copy logctl");
    let before = netns();
    let out = std::process::Command::new("runuser")
        .args(["-u", "nobody", "--"])
        .arg(&bin)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["up", "--hosts", "--free-ports"])
        .output()
        .expect("runuser");
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "an unprivileged --hosts was accepted"
    );
    assert!(
        text.contains("needs root") && text.contains("--with-proxies"),
        "{text}"
    );
    assert_eq!(netns(), before, "namespaces were made");
    assert!(
        !dir.join("state/stack.toml").exists(),
        "the refused shape was saved"
    );
    std::fs::remove_dir_all(&dir).ok();
}
