//! The deployment files agree with the local stack: docker-compose.yml runs the same
//! components on the same ports with the same settings and topics as `logctl up`; the
//! Prometheus configs and rules pass `promtool`; the Grafana dashboard is well formed.
//! No Docker engine runs here, so these checks read the files.

use std::collections::{BTreeMap, BTreeSet};
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

/// docker-compose.yml as compose reads it with these variables set: `${NAME:-default}`,
/// `${NAME:?error}` and `${NAME}` replaced by the value, else the default (or nothing).
fn compose_with(vars: &BTreeMap<String, String>) -> Value {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).expect("compose file");
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closed ${") + start;
        let inner = &rest[start + 2..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, d),
            None => (inner.split(":?").next().unwrap_or(inner), ""),
        };
        out.push_str(vars.get(name).map_or(default, String::as_str));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    serde_saphyr::from_str(&out).unwrap_or_else(|e| panic!("docker-compose.yml: {e}"))
}

fn compose_service(name: &str) -> Value {
    compose_with(&BTreeMap::new())["services"][name].clone()
}

/// The variables of a compose env file in the repo (`docker compose --env-file PATH`).
fn env_file(path: &str) -> BTreeMap<String, String> {
    std::fs::read_to_string(repo().join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The services compose starts with these profiles active (those without profiles always).
fn active_services(compose: &Value, profiles: &[&str]) -> BTreeSet<String> {
    compose["services"]
        .as_object()
        .expect("services")
        .iter()
        .filter(|(_, s)| {
            let own = strings(&s["profiles"]);
            own.is_empty() || own.iter().any(|p| profiles.contains(&p.as_str()))
        })
        .map(|(name, _)| name.clone())
        .collect()
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
        ("faultproxy", ports.fault_proxy),
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
            Component::Gateway(0),
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
    assert!(out.contains("12 rules found"), "{out}");

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

/// The cluster profile, with its env file, is `logctl up --brokers 3 --producers 2 --gateways 2
/// --consumers 3`: the same instances under the same names on the same host ports, the same
/// quorum and replication settings, every service given every broker and the gateways every
/// producer, and HAProxy with the settings the local balancer takes from the same file.
#[test]
fn compose_cluster_profile_is_the_shape_of_a_local_cluster() {
    let local = StackConfig {
        brokers: 3,
        producers: 2,
        gateways: 2,
        consumers: 3,
        ..StackConfig::default()
    };
    let env = env_file("deploy/compose-cluster.env");
    let profiles: Vec<&str> = env["COMPOSE_PROFILES"].split(',').collect();
    let compose = compose_with(&env);
    let service = |name: &str| compose["services"][name].clone();

    let active = active_services(&compose, &profiles);
    let mut expected: BTreeSet<String> = Component::all(&local)
        .into_iter()
        .map(Component::name)
        .collect();
    expected.extend(["kafka-init", "prometheus", "grafana"].map(String::from));
    assert_eq!(active, expected, "services of the cluster profile");
    let single = active_services(&compose, &[]);
    let mut expected_single: BTreeSet<String> = Component::all(&StackConfig::default())
        .into_iter()
        .map(Component::name)
        .collect();
    expected_single.extend(["kafka-init", "prometheus", "grafana"].map(String::from));
    assert_eq!(single, expected_single, "services without a profile");

    for c in Component::all(&local) {
        let host_port = c.port(&local);
        let published = strings(&service(&c.name())["ports"]);
        assert!(
            published
                .iter()
                .any(|p| p.starts_with(&format!("127.0.0.1:{host_port}:"))),
            "{} should publish host port {host_port}, has {published:?}",
            c.name()
        );
    }

    let brokers: Vec<String> = (0..local.brokers)
        .map(|i| Component::Kafka(i).name())
        .collect();
    for (i, name) in brokers.iter().enumerate() {
        let e = &service(name)["environment"];
        assert_eq!(e["KAFKA_NODE_ID"].as_u64(), Some(i as u64 + 1), "{name}");
        let voters = e["KAFKA_CONTROLLER_QUORUM_VOTERS"]
            .as_str()
            .unwrap_or_default();
        assert_eq!(voters.split(',').count(), brokers.len(), "{name}: {voters}");
        for (key, want) in [
            (
                "KAFKA_DEFAULT_REPLICATION_FACTOR",
                local.replication_factor(),
            ),
            (
                "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
                local.replication_factor(),
            ),
            (
                "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                local.replication_factor(),
            ),
            ("KAFKA_MIN_INSYNC_REPLICAS", local.min_insync_replicas()),
            (
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
                local.min_insync_replicas(),
            ),
        ] {
            assert_eq!(
                e[key]
                    .as_u64()
                    .or_else(|| e[key].as_str()?.parse().ok())
                    .map(|v| v as u16),
                Some(want),
                "{name} {key}"
            );
        }
        assert_eq!(e["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"], "false", "{name}");
        assert_eq!(
            e["CLUSTER_ID"],
            service("kafka")["environment"]["CLUSTER_ID"]
        );
    }
    let init = strings(&service("kafka-init")["command"]).join(" ");
    assert!(
        init.contains(&format!(
            "--replication-factor {}",
            local.replication_factor()
        )),
        "{init}"
    );

    let count = |list: &Value| list.as_str().unwrap_or_default().split(',').count();
    for c in Component::all(&local)
        .into_iter()
        .filter(|c| c.is_service())
    {
        let e = &service(&c.name())["environment"];
        let prefix = services::binary_name(c)
            .trim_start_matches("logctl-")
            .to_uppercase();
        if let Some(bootstrap) = e.get(format!("LOGCTL_{prefix}_KAFKA__BOOTSTRAP_SERVERS")) {
            assert_eq!(count(bootstrap), brokers.len(), "{} bootstrap", c.name());
        }
        if let Some(producers) = e.get("LOGCTL_GATEWAY_PRODUCER_URL") {
            assert_eq!(
                count(producers),
                usize::from(local.producers),
                "{}",
                c.name()
            );
        }
        // Inside its container an instance listens where the first does.
        let listen = e[format!("LOGCTL_{prefix}_LISTEN").as_str()]
            .as_str()
            .unwrap_or_default();
        let first = match c {
            Component::Producer(_) => Component::Producer(0),
            Component::Consumer(_) => Component::Consumer(0),
            _ => Component::Gateway(0),
        };
        assert_eq!(
            listen.rsplit(':').next(),
            Some(first.port(&local).to_string().as_str()),
            "{} listens on {listen}",
            c.name()
        );
    }

    let haproxy = service("haproxy");
    let mounts = strings(&haproxy["volumes"]).join(" ");
    assert!(mounts.contains("./deploy/haproxy/haproxy.cfg:"), "{mounts}");
    let cfg = std::fs::read_to_string(repo().join("deploy/haproxy/haproxy.cfg")).expect("cfg");
    let servers: Vec<String> = cfg
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("server "))
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect();
    let wanted: Vec<String> = (0..local.gateways)
        .map(|i| {
            let g = Component::Gateway(i).name();
            format!("{g} {g}:{}", Component::Gateway(0).port(&local))
        })
        .collect();
    assert_eq!(
        servers, wanted,
        "HAProxy's servers are the gateway services"
    );
    // The file, and the copy `logctl up` writes from it, are valid for HAProxy itself.
    let dir = std::env::temp_dir().join(format!("logctl-haproxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let local_cfg = dir.join("haproxy.cfg");
    std::fs::write(&local_cfg, logctl::stack::balancer::config(&local)).expect("write");
    for path in [repo().join("deploy/haproxy/haproxy.cfg"), local_cfg] {
        let out = Command::new("haproxy")
            .arg("-c")
            .arg("-f")
            .arg(&path)
            .output()
            .expect("haproxy (installed by scripts/bootstrap)");
        assert!(
            out.status.success(),
            "haproxy -c {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn compose_faults_profile_proxies_the_links_logctl_up_proxies() {
    let text = std::fs::read_to_string(repo().join("deploy/faultproxy/compose.toml"))
        .expect("the compose fault proxy's config");
    let settings: logctl_faultproxy::Settings = toml::from_str(&text).expect("proxy settings");
    let local: Vec<String> = logctl::stack::faultproxy::links(&StackConfig {
        proxies: true,
        ..StackConfig::default()
    })
    .into_iter()
    .map(|l| l.name)
    .collect();
    for link in &settings.proxies {
        assert!(
            local.contains(&link.name),
            "{} is no link of logctl up",
            link.name
        );
        assert_eq!(
            settings.control.port(),
            StackConfig::default().ports.fault_proxy
        );
    }
    // The env file points each service through the proxy's links, and the profile runs it.
    let compose = compose_with(&env_file("deploy/compose-faults.env"));
    assert!(active_services(&compose, &["faults"]).contains("faultproxy"));
    let consumer = &compose["services"]["consumer"]["environment"];
    let gateway = &compose["services"]["gateway"]["environment"];
    let through = |v: &Value| v.as_str().unwrap_or_default().contains("faultproxy:");
    assert!(
        through(&consumer["LOGCTL_CONSUMER_DATABASE_URL"]),
        "{consumer}"
    );
    assert!(
        through(&consumer["LOGCTL_CONSUMER_REDIS__URL"]),
        "{consumer}"
    );
    assert!(through(&gateway["LOGCTL_GATEWAY_REDIS__URL"]), "{gateway}");
    assert!(
        through(&gateway["LOGCTL_GATEWAY_PRODUCER_URL"]),
        "{gateway}"
    );
    let listens: Vec<String> = settings
        .proxies
        .iter()
        .map(|l| l.listen.port().to_string())
        .collect();
    for url in ["LOGCTL_CONSUMER_DATABASE_URL", "LOGCTL_CONSUMER_REDIS__URL"] {
        let value = consumer[url].as_str().unwrap_or_default();
        assert!(
            listens
                .iter()
                .any(|p| value.contains(&format!("faultproxy:{p}"))),
            "{url}: {value}"
        );
    }
}

#[test]
fn compose_topics_keep_events_as_long_as_logctl_up_does() {
    let command = strings(&compose_service("kafka-init")["command"]).join(" ");
    let [events, dead_letters] = logctl_core::kafka::TopicRetention::default().configs();
    for (topic, configs) in [("log-events", events), ("log-events-dlq", dead_letters)] {
        let created = command
            .split("&&")
            .find(|c| c.contains(&format!("--topic {topic} ")))
            .unwrap_or_else(|| panic!("{topic} is created: {command}"));
        for (key, value) in &configs {
            assert!(
                created.contains(&format!("--config {key}={value}")),
                "{topic}: {created}"
            );
        }
    }
}
