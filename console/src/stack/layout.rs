//! Where a local stack lives on disk, and the settings it was started with.
//!
//! Everything of one stack is under its state dir (default `.logctl/`): data, logs, pid files,
//! generated configs and secrets. `stack.toml` keeps the ports and instance count of the last
//! `up`, so `down`, `status` and a later `up` find the same stack without repeating flags.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::StackError;

/// The file under `secrets/` with the HS256 key the gateway checks tokens with and
/// `logctl token` signs them with.
pub const JWT_SECRET: &str = "jwt-secret";

/// Ports of every component: on 127.0.0.1, or on each component's own host (`--hosts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ports {
    /// The first broker's client port; broker `i` listens on `kafka + BROKER_PORT_STRIDE * i`.
    pub kafka: u16,
    /// The first broker's controller port, with the same stride.
    pub kafka_controller: u16,
    pub postgres: u16,
    pub redis: u16,
    /// The public port: the gateway's own with one gateway, the balancer's with several.
    pub gateway: u16,
    /// With several gateways, the first one's (internal) port; instance `i` listens on
    /// `gateway_backend + INSTANCE_PORT_STRIDE * i`, behind the balancer on `gateway`.
    pub gateway_backend: u16,
    /// The first producer; instance `i` listens on `producer + INSTANCE_PORT_STRIDE * i`.
    pub producer: u16,
    /// The first consumer; instance `i` listens on `consumer + INSTANCE_PORT_STRIDE * i`.
    pub consumer: u16,
    pub prometheus: u16,
    /// The fault proxy's control API (`logctl up --with-proxies`); its links listen on the
    /// ports right after it, one per proxied component (see `Component::link_slot`).
    pub fault_proxy: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Self {
            kafka: 9092,
            kafka_controller: 9093,
            postgres: 5432,
            redis: 6379,
            gateway: 8080,
            gateway_backend: 8083,
            producer: 8081,
            consumer: 8082,
            prometheus: 9090,
            fault_proxy: 8474,
        }
    }
}

/// Broker `i`'s ports are the first broker's plus `i` strides: with the defaults, 9092/9093,
/// 9094/9095, 9096/9097 (client/controller), so a cluster needs no more flags than one broker.
pub const BROKER_PORT_STRIDE: u16 = 2;

/// Instance `i` of a service listens on its first instance's port + `i` strides: with the
/// defaults the first instances are on 808x (8081 producer, 8082 consumer, 8083 gateway behind
/// the balancer), the second ones on 809x, the third on 810x, so no two runs ever overlap.
pub const INSTANCE_PORT_STRIDE: u16 = 10;

/// Most brokers `up --brokers` makes: a quorum of up to five controllers (Kafka's advice for
/// KRaft), and more JVMs than that do not fit beside everything else on a small machine.
pub const MAX_BROKERS: u16 = 5;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StackConfig {
    pub ports: Ports,
    /// Kafka nodes, each broker and controller. Fixed when the stack is made: their storage is
    /// formatted for this quorum.
    pub brokers: u16,
    /// Producer instances; the gateway spreads its calls over them. Instance `i` listens on
    /// the producer port + `i`.
    pub producers: u16,
    /// Consumer instances in the one group (they share the topic's partitions).
    pub consumers: u16,
    /// Gateway instances; with more than one, HAProxy takes the public port and spreads
    /// requests over them.
    pub gateways: u16,
    /// Also run Prometheus, scraping the services with the alert rules.
    pub prometheus: bool,
    /// Put the fault proxy on every link to PostgreSQL, Redis, each broker and each producer,
    /// so `logctl fault latency|bandwidth|blackhole|reset` can act on the network between
    /// them. Fixed while the stack runs: each broker advertises its proxy's address.
    pub proxies: bool,
    /// When each component runs on a host of its own (`logctl up --hosts`): the third octet
    /// of the hosts' network, `198.18.<octet>.0/24`, picked when the stack is made.
    pub hosts: Option<u8>,
    /// How long events are kept, in PostgreSQL and in Kafka. Remembered by later `up`s.
    pub storage: StorageConfig,
    /// The events table on a filesystem of its own of this many bytes (`up --postgres-disk`,
    /// root), for the disk-full drill. Fixed when the stack is made.
    pub postgres_disk: Option<u64>,
    /// PostgreSQL's CPU niceness (0 to 19; its backends inherit it). On a machine it shares
    /// with the ingest path its bursts of work (batch inserts, checkpoints, the WAL writer) take
    /// the CPU from the gateway and the clients, whose answers wait; storing can wait instead,
    /// as Kafka holds what is not stored yet. Measured in 20 alternated pairs of 15 s runs at
    /// 13,000-16,500 single events/s on 2 shared cores: the p99 was lower at 10 than at 0 in
    /// 14 (e.g. 97 against 146 ms, 56 against 72), higher in 6; the machine's own noise is as
    /// large as the effect, which is why it is a setting.
    pub postgres_nice: u8,
}

/// Retention of the stack's events: PostgreSQL's time partitions (passed to every consumer,
/// which does the upkeep) and the Kafka topics' (set by `up`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageConfig {
    pub postgres: logctl_contracts::schema::partitions::RetentionSettings,
    pub kafka: logctl_core::kafka::TopicRetention,
}

impl Default for StackConfig {
    fn default() -> Self {
        Self {
            ports: Ports::default(),
            brokers: 1,
            producers: 1,
            consumers: 1,
            gateways: 1,
            prometheus: false,
            proxies: false,
            hosts: None,
            storage: StorageConfig::default(),
            postgres_disk: None,
            postgres_nice: 10,
        }
    }
}

impl Ports {
    /// Broker `i`'s client port.
    pub fn broker(&self, i: u16) -> u16 {
        self.kafka + BROKER_PORT_STRIDE * i
    }

    /// Broker `i`'s controller port.
    pub fn controller(&self, i: u16) -> u16 {
        self.kafka_controller + BROKER_PORT_STRIDE * i
    }

    /// Instance `i` of a service whose first instance listens on `first`.
    pub fn instance(first: u16, i: u16) -> u16 {
        first + INSTANCE_PORT_STRIDE * i
    }
}

impl StackConfig {
    /// Whether HAProxy takes the public port: in front of several gateways, or as the edge
    /// of a stack on hosts (the public port stays on the machine's loopback).
    pub fn balanced(&self) -> bool {
        self.gateways > 1 || self.hosts.is_some()
    }

    /// The hosts' network, when the stack runs on hosts.
    pub fn net(&self) -> Option<super::hosts::Net> {
        self.hosts.map(|octet| super::hosts::Net { octet })
    }

    /// Every broker's address, for clients: one down broker then costs a client nothing.
    /// Through each broker's link when the stack has the fault proxy, as the brokers
    /// advertise themselves.
    pub fn bootstrap_servers(&self) -> String {
        (0..self.brokers.max(1))
            .map(|i| super::Component::Kafka(i).addr(self).to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Copies of each partition: three (or every broker, when fewer), as Kafka's own advice has it.
    pub fn replication_factor(&self) -> u16 {
        self.brokers.clamp(1, 3)
    }

    /// Copies an acks=all write must reach: two of three, so one broker may be lost without
    /// refusing writes, and an acknowledged write survives losing any one broker.
    pub fn min_insync_replicas(&self) -> u16 {
        logctl_core::kafka::min_insync_for(usize::from(self.replication_factor())) as u16
    }
}

/// Paths inside one state dir.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    /// Makes `dir` absolute (creating it), since the stack's processes run from other cwds.
    pub fn open(dir: &Path) -> Result<Self, StackError> {
        std::fs::create_dir_all(dir).map_err(|e| StackError::io(dir, e))?;
        let root = dir.canonicalize().map_err(|e| StackError::io(dir, e))?;
        for sub in ["run", "logs", "secrets"] {
            let p = root.join(sub);
            std::fs::create_dir_all(&p).map_err(|e| StackError::io(&p, e))?;
        }
        Ok(Self { root })
    }

    pub fn config_file(&self) -> PathBuf {
        self.root.join("stack.toml")
    }

    pub fn pid_file(&self, component: &str) -> PathBuf {
        self.root.join("run").join(format!("{component}.pid"))
    }

    pub fn log_file(&self, component: &str) -> PathBuf {
        self.root.join("logs").join(format!("{component}.log"))
    }

    pub fn secret_file(&self, name: &str) -> PathBuf {
        self.root.join("secrets").join(name)
    }

    pub fn component_dir(&self, component: &str) -> PathBuf {
        self.root.join(component)
    }

    /// The saved config, or the defaults for a new stack.
    pub fn load_config(&self) -> Result<StackConfig, StackError> {
        let path = self.config_file();
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| StackError::Config {
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StackConfig::default()),
            Err(e) => Err(StackError::io(&path, e)),
        }
    }

    pub fn save_config(&self, config: &StackConfig) -> Result<(), StackError> {
        let path = self.config_file();
        let text = toml::to_string_pretty(config).map_err(|e| StackError::Config {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        std::fs::write(&path, text).map_err(|e| StackError::io(&path, e))
    }

    /// A secret generated on first use and kept (mode 0600) for every later `up`.
    pub fn secret(&self, name: &str) -> Result<String, StackError> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.secret_file(name);
        if let Ok(s) = std::fs::read_to_string(&path) {
            if !s.trim().is_empty() {
                return Ok(s.trim().to_owned());
            }
        }
        let value: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        std::fs::write(&path, &value).map_err(|e| StackError::io(&path, e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| StackError::io(&path, e))?;
        Ok(value)
    }
}

use rand::Rng;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_and_defaults_fill_gaps() {
        let dir = std::env::temp_dir().join(format!("logctl-layout-{}", std::process::id()));
        let layout = Layout::open(&dir).expect("opens");
        assert_eq!(
            layout.load_config().expect("default"),
            StackConfig::default()
        );
        std::fs::write(
            layout.config_file(),
            "consumers = 3\n[ports]\nkafka = 19092\n",
        )
        .expect("writes");
        let c = layout.load_config().expect("parses");
        assert_eq!(c.consumers, 3);
        assert_eq!(c.ports.kafka, 19092);
        assert_eq!(c.ports.postgres, 5432);
        layout.save_config(&c).expect("saves");
        assert_eq!(layout.load_config().expect("reloads"), c);
        let s1 = layout.secret("pw").expect("generates");
        assert_eq!(layout.secret("pw").expect("keeps"), s1);
        std::fs::remove_dir_all(&dir).ok();
    }
}
