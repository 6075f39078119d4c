//! The deployment files agree with the local stack: docker-compose.yml runs the same
//! components on the same ports with the same settings and topics as `logctl up`; the
//! Prometheus configs and rules pass `promtool`; the Grafana dashboard is well formed.
//! No Docker engine runs here, so these checks read the files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use logctl::stack::layout::StackConfig;
use logctl::stack::{prometheus, services, Component};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(repo().join(path)).expect("read file");
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path} is not valid YAML: {e}"))
}

fn compose_service(name: &str) -> Value {
    yaml("docker-compose.yml")["services"][name].clone()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn compose_runs_every_component_on_the_local_stacks_ports() {
    let ports = StackConfig::default().ports;
    for (service, port) in [
        ("kafka", ports.kafka),
        ("postgres", ports.postgres),
        ("redis", ports.redis),
        ("producer", ports.producer),
        ("consumer", ports.consumer),
        ("gateway", ports.gateway),
        ("prometheus", ports.prometheus),
    ] {
        let published = strings(&compose_service(service)["ports"]);
        assert!(
            published.contains(&format!("127.0.0.1:{port}:{port}")),
            "{service} should publish 127.0.0.1:{port}:{port}, has {published:?}"
        );
    }
    assert!(
        compose_service("grafana").is_object(),
        "grafana is provisioned"
    );
}

/// The consumer's default settings, from its own binary (the console does not link the
/// consumer: what they share is in logctl-contracts).
fn consumer_defaults() -> Result<serde_json::Value, serde_json::Error> {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_logctl")).with_file_name("logctl-consumer");
    let out = std::process::Command::new(&bin)
        .arg("--print-defaults")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (build it with cargo build --workspace)",
                bin.display()
            )
        });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
}

/// Does `key` (after the service prefix, `__` for nesting) name a field of the settings?
fn names_a_setting(settings: &serde_json::Value, key: &str) -> bool {
    key.to_lowercase()
        .split("__")
        .try_fold(settings, |node, part| node.get(part))
        .is_some()
}

#[test]
fn compose_gives_each_service_the_settings_logctl_up_gives_it() {
    let defaults = [
        (
            Component::Gateway,
            "LOGCTL_GATEWAY_",
            serde_json::to_value(logctl_gateway::Settings::default()),
        ),
        (
            Component::Producer(0),
            "LOGCTL_PRODUCER_",
            serde_json::to_value(logctl_producer::Settings::default()),
        ),
        (
            Component::Consumer(0),
            "LOGCTL_CONSUMER_",
            consumer_defaults(),
        ),
    ];
    for (component, prefix, settings) in defaults {
        let settings = settings.expect("settings serialize");
        let local = services::env(
            component,
            &StackConfig::default(),
            Path::new("/state"),
            "secret",
            "jwt-secret",
        )
        .expect("env");
        let local_keys: BTreeSet<String> = local.iter().map(|(k, _)| k.to_string()).collect();
        let env = compose_service(&component.name())["environment"].clone();
        let compose_keys: BTreeSet<String> = env
            .as_object()
            .expect("environment is a mapping")
            .keys()
            .filter(|k| k.starts_with("LOGCTL_"))
            .cloned()
            .collect();
        assert_eq!(
            compose_keys,
            local_keys,
            "{} settings differ",
            component.name()
        );
        for key in &compose_keys {
            let field = key
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("{key} lacks {prefix}"));
            assert!(
                names_a_setting(&settings, field),
                "{key} names no setting of {}",
                component.name()
            );
        }
        // Same listening port inside the container as on the local stack.
        let listen_key = format!("{prefix}LISTEN");
        let local_listen = &local
            .iter()
            .find(|(k, _)| *k == listen_key)
            .expect("listen")
            .1;
        let compose_listen = env[listen_key.as_str()].as_str().expect("listen set");
        assert_eq!(
            local_listen.rsplit(':').next(),
            compose_listen.rsplit(':').next(),
            "{} listens on another port",
            component.name()
        );
    }
}

#[test]
fn compose_creates_the_same_topics() {
    let init = compose_service("kafka-init");
    let command = strings(&init["command"]).join(" ");
    let events = format!(
        "--topic {} --partitions {}",
        logctl_contracts::topics::EVENTS,
        logctl_contracts::topics::EVENTS_PARTITIONS
    );
    assert!(command.contains(&events), "{command}");
    assert!(
        command.contains(&format!(
            "--topic {} ",
            logctl_contracts::topics::DEAD_LETTERS
        )),
        "{command}"
    );
    let kafka = compose_service("kafka");
    assert_eq!(
        kafka["environment"]["KAFKA_PROCESS_ROLES"], "broker,controller",
        "KRaft, one node"
    );
    let image = kafka["image"].as_str().unwrap_or_default();
    let pom = std::fs::read_to_string(repo().join("deploy/kafka/pom.xml")).expect("pom");
    let version = image.rsplit(':').next().unwrap_or_default();
    assert!(
        pom.contains(&format!("<kafka.version>{version}</kafka.version>")),
        "compose runs Kafka {version}, the pom pins another"
    );
}

#[test]
fn compose_services_have_health_checks_and_start_in_order() {
    // Every component the console drives has a compose service (the compose fault driver
    // names them so).
    for service in logctl::stack::Component::NAMES {
        assert!(
            compose_service(service)["healthcheck"]["test"].is_array(),
            "{service} has no health check"
        );
    }
    let condition = |s: &str, dep: &str| {
        compose_service(s)["depends_on"][dep]["condition"]
            .as_str()
            .map(str::to_owned)
    };
    assert_eq!(
        condition("gateway", "producer").as_deref(),
        Some("service_healthy")
    );
    assert_eq!(
        condition("gateway", "consumer").as_deref(),
        Some("service_healthy")
    );
    assert_eq!(
        condition("consumer", "postgres").as_deref(),
        Some("service_healthy")
    );
    assert_eq!(
        condition("producer", "kafka-init").as_deref(),
        Some("service_completed_successfully")
    );
    let dockerfile = std::fs::read_to_string(repo().join("deploy/Dockerfile")).expect("Dockerfile");
    assert!(
        dockerfile.matches("\nFROM ").count() + usize::from(dockerfile.starts_with("FROM")) >= 2,
        "multi-stage"
    );
    for bin in ["logctl-gateway", "logctl-producer", "logctl-consumer"] {
        assert!(dockerfile.contains(bin), "the image carries {bin}");
    }
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool (installed by scripts/bootstrap with Debian's prometheus package)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

fn job_names(config: &Value) -> Vec<String> {
    config["scrape_configs"]
        .as_array()
        .expect("scrape_configs")
        .iter()
        .filter_map(|j| j["job_name"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn prometheus_configs_and_rules_pass_promtool_and_agree() {
    let rules = repo().join("deploy/prometheus/rules.yml");
    let out = promtool(&["check", "rules", rules.to_str().expect("utf8")]);
    assert!(out.contains("8 rules found"), "{out}");

    let compose_config = repo().join("deploy/prometheus/prometheus.yml");
    promtool(&[
        "check",
        "config",
        "--syntax-only",
        compose_config.to_str().expect("utf8"),
    ]);

    // The config `logctl up --with-prometheus` writes, checked in full (rule files included).
    let dir = std::env::temp_dir().join(format!("logctl-promtool-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let local_rules = dir.join("rules.yml");
    std::fs::write(&local_rules, prometheus::RULES).expect("rules");
    let local = prometheus::config(&StackConfig::default(), &local_rules);
    let local_path = dir.join("prometheus.yml");
    std::fs::write(&local_path, &local).expect("config");
    promtool(&["check", "config", local_path.to_str().expect("utf8")]);

    let local: Value = serde_saphyr::from_str(&local).expect("yaml");
    let compose = yaml("deploy/prometheus/prometheus.yml");
    assert_eq!(job_names(&local), job_names(&compose));
    assert_eq!(local["global"], compose["global"], "same intervals");
    let mounts = strings(&compose_service("prometheus")["volumes"]).join(" ");
    assert!(
        mounts.contains("deploy/prometheus/rules.yml")
            && mounts.contains("deploy/prometheus/prometheus.yml"),
        "{mounts}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_grafana_dashboard_is_provisioned_and_queries_logctl_metrics() {
    let text = std::fs::read_to_string(repo().join("deploy/grafana/dashboards/logctl.json"))
        .expect("dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let datasource = yaml("deploy/grafana/provisioning/datasources/prometheus.yml");
    let uid = datasource["datasources"][0]["uid"].as_str().expect("uid");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8);
    for p in panels {
        assert_eq!(
            p["datasource"]["uid"], uid,
            "panel {} uses the provisioned source",
            p["title"]
        );
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty());
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(
                expr.contains("logctl_") || expr.contains("process_") || expr.contains("up{"),
                "{expr}"
            );
        }
    }
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for wanted in ["Throughput", "Latency", "Consumer lag", "Errors"] {
        assert!(
            titles.iter().any(|t| t.starts_with(wanted)),
            "no {wanted} panel in {titles:?}"
        );
    }
}
