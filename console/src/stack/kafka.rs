//! Apache Kafka in KRaft combined mode (every node is broker and controller), run from the
//! jars that `scripts/bootstrap` fetched from Maven Central, with the machine's Java 17.
//!
//! One node by default; `up --brokers 3` makes a cluster of three sharing one cluster id and a
//! static quorum of all of them, with every partition replicated three times and acks=all
//! writes needing two copies (see [`StackConfig::replication_factor`]). Each node's storage dir
//! is formatted once (when `meta.properties` is missing), so a later `up` keeps the topics and
//! committed offsets. Heaps are kept small: the machine has 2 cores and the brokers share them
//! with everything else.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::layout::{Layout, StackConfig};
use super::process::{self, run_checked};
use super::StackError;

const POM: &str = include_str!("../../../deploy/kafka/pom.xml");
const LOG4J2: &str = include_str!("../../../deploy/kafka/log4j2.xml");
const TOOLS_LOG4J2: &str = include_str!("../../../deploy/kafka/tools-log4j2.xml");
const MAIN_CLASS: &str = "kafka.Kafka";

/// The Kafka version pinned by `deploy/kafka/pom.xml`.
pub fn version() -> &'static str {
    POM.split("<kafka.version>")
        .nth(1)
        .and_then(|rest| rest.split("</kafka.version>").next())
        .unwrap_or("unknown")
}

pub struct Kafka {
    java: PathBuf,
    libs: PathBuf,
    /// Which node: 0 is `kafka` (node.id 1), 1 is `kafka-2`, ...
    index: u16,
    dir: PathBuf,
}

/// The state-dir name of broker `index`, as `Component::name` has it.
pub fn name(index: u16) -> String {
    logctl_contracts::instance::name("kafka", index)
}

impl Kafka {
    pub fn new(layout: &Layout, index: u16) -> Result<Self, StackError> {
        Ok(Self {
            java: find_java()?,
            libs: find_libs()?,
            index,
            dir: layout.component_dir(&name(index)),
        })
    }

    /// Our broker's command line names its own properties file.
    pub fn marker(layout: &Layout, index: u16) -> String {
        properties_path(&layout.component_dir(&name(index)))
            .display()
            .to_string()
    }

    fn java(&self) -> Command {
        let mut c = Command::new(&self.java);
        c.arg("-cp").arg(self.libs.join("*"));
        c
    }

    /// Writes the config, formats storage on first use and starts the broker (not yet ready).
    pub fn start(&self, layout: &Layout, config: &StackConfig) -> Result<u32, StackError> {
        let data = self.dir.join("data");
        std::fs::create_dir_all(&data).map_err(|e| StackError::io(&data, e))?;
        let props = properties_path(&self.dir);
        std::fs::write(&props, server_properties(config, self.index, &data))
            .map_err(|e| StackError::io(&props, e))?;
        let log4j = self.dir.join("log4j2.xml");
        std::fs::write(&log4j, LOG4J2).map_err(|e| StackError::io(&log4j, e))?;

        if !data.join("meta.properties").exists() {
            let mut format = self.java();
            format
                .arg("kafka.tools.StorageTool")
                .args(["format", "-t", &shared_cluster_id(layout)?, "-c"])
                .arg(&props);
            run_checked(format, "kafka storage format")?;
        }

        let mut broker = Command::new(&self.java);
        broker
            .args([
                "-Xms256m",
                "-Xmx512m",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
            ])
            .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
            .arg(format!("-Dkafka.logs.dir={}", self.dir.display()))
            .arg("-cp")
            .arg(self.libs.join("*"))
            .arg(MAIN_CLASS)
            .arg(&props);
        let name = name(self.index);
        process::spawn(broker, &layout.log_file(&name), &layout.pid_file(&name))
    }
}

/// The cluster id every node of this stack is formatted with: made once, then kept in the
/// state dir, so a node formatted later (a wiped data dir) joins the same cluster.
fn shared_cluster_id(layout: &Layout) -> Result<String, StackError> {
    let path = layout.root.join("kafka-cluster-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        if !id.trim().is_empty() {
            return Ok(id.trim().to_owned());
        }
    }
    let id = cluster_id();
    std::fs::write(&path, &id).map_err(|e| StackError::io(&path, e))?;
    Ok(id)
}

/// Kafka's command-line tools by the names their shell scripts have (`kafka-<name>.sh`).
const TOOLS: &[(&str, &str, &str)] = &[
    (
        "topics",
        "org.apache.kafka.tools.TopicCommand",
        "--bootstrap-server",
    ),
    (
        "consumer-groups",
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        "--bootstrap-server",
    ),
    (
        "console-consumer",
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
        "--bootstrap-server",
    ),
    (
        "get-offsets",
        "org.apache.kafka.tools.GetOffsetShell",
        "--bootstrap-server",
    ),
    (
        "metadata-quorum",
        "org.apache.kafka.tools.MetadataQuorumCommand",
        "--bootstrap-server",
    ),
    (
        "producer-perf-test",
        "org.apache.kafka.tools.ProducerPerformance",
        "",
    ),
];

/// A command running Kafka tool `name` against the stack's brokers.
pub fn tool(
    name: &str,
    args: &[String],
    layout: &Layout,
    config: &StackConfig,
) -> Result<Command, StackError> {
    let Some((_, class, bootstrap_flag)) = TOOLS.iter().find(|(n, _, _)| *n == name) else {
        let names: Vec<&str> = TOOLS.iter().map(|(n, _, _)| *n).collect();
        return Err(StackError::Other(format!(
            "unknown Kafka tool {name:?}: choose one of {}",
            names.join(", ")
        )));
    };
    let dir = layout.component_dir("kafka");
    std::fs::create_dir_all(&dir).map_err(|e| StackError::io(&dir, e))?;
    let log4j = dir.join("tools-log4j2.xml");
    std::fs::write(&log4j, TOOLS_LOG4J2).map_err(|e| StackError::io(&log4j, e))?;
    let mut cmd = Command::new(find_java()?);
    cmd.args(["-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp"])
        .arg(find_libs()?.join("*"))
        .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
        .arg(class);
    if !bootstrap_flag.is_empty() && !args.iter().any(|a| a == bootstrap_flag) {
        cmd.arg(bootstrap_flag).arg(config.bootstrap_servers());
    }
    cmd.args(args);
    Ok(cmd)
}

fn properties_path(dir: &Path) -> PathBuf {
    dir.join("server.properties")
}

fn server_properties(config: &StackConfig, index: u16, data: &Path) -> String {
    let voters: Vec<String> = (0..config.brokers.max(1))
        .map(|i| {
            let ip = super::Component::Kafka(i).ip(config);
            format!("{}@{ip}:{}", i + 1, config.ports.controller(i))
        })
        .collect();
    let rf = config.replication_factor();
    let min_isr = config.min_insync_replicas();
    format!(
        "# Written by `logctl up` on every start; edit the stack's ports with its flags instead.\n\
         process.roles=broker,controller\n\
         node.id={node}\n\
         controller.quorum.voters={voters}\n\
         listeners=PLAINTEXT://{ip}:{broker},CONTROLLER://{ip}:{controller}\n\
         advertised.listeners=PLAINTEXT://{advertised}\n\
         controller.listener.names=CONTROLLER\n\
         inter.broker.listener.name=PLAINTEXT\n\
         listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
         log.dirs={data}\n\
         num.partitions=6\n\
         auto.create.topics.enable=false\n\
         default.replication.factor={rf}\n\
         min.insync.replicas={min_isr}\n\
         # Never elect a replica that missed acknowledged writes: losing them is the one thing\n\
         # replication is for.\n\
         unclean.leader.election.enable=false\n\
         # After a broker comes back, hand its partitions' leadership back within half a minute\n\
         # (Kafka's default waits five), so one broker does not keep leading everything.\n\
         leader.imbalance.check.interval.seconds=30\n\
         offsets.topic.replication.factor={rf}\n\
         offsets.topic.num.partitions=10\n\
         transaction.state.log.replication.factor={rf}\n\
         transaction.state.log.min.isr={min_isr}\n\
         share.coordinator.state.topic.replication.factor={rf}\n\
         share.coordinator.state.topic.min.isr={min_isr}\n\
         group.initial.rebalance.delay.ms=0\n\
         num.network.threads=2\n\
         num.io.threads=4\n",
        node = super::cluster::node_id(index),
        voters = voters.join(","),
        broker = config.ports.broker(index),
        // Through its link when the stack has the fault proxy: clients and the other
        // brokers' fetchers then cross it, so a fault on the link reaches all of them.
        advertised = super::Component::Kafka(index).addr(config),
        ip = super::Component::Kafka(index).ip(config),
        controller = config.ports.controller(index),
        data = data.display(),
    )
}

/// A Kafka cluster id: 16 random bytes in URL-safe base64 without padding (what
/// `kafka-storage random-uuid` prints), made here to save a JVM start. Like Kafka's own, it
/// never starts with `-`, which the tool's argument parser would read as an option.
fn cluster_id() -> String {
    loop {
        let id = encode_cluster_id(uuid::Uuid::new_v4().into_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

fn encode_cluster_id(bytes: [u8; 16]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits: u32 = 0;
    let mut nbits = 0;
    let mut out = String::with_capacity(22);
    for b in bytes {
        bits = (bits << 8) | u32::from(b);
        nbits += 8;
        while nbits >= 6 {
            nbits -= 6;
            out.push(ALPHABET[((bits >> nbits) & 63) as usize] as char);
        }
    }
    if nbits > 0 {
        out.push(ALPHABET[((bits << (6 - nbits)) & 63) as usize] as char);
    }
    out
}

/// `$JAVA_HOME/bin/java`, or `java` on the `PATH`.
pub(crate) fn java_binary() -> Option<PathBuf> {
    std::env::var_os("JAVA_HOME")
        .map(|home| PathBuf::from(home).join("bin/java"))
        .filter(|p| p.is_file())
        .or_else(|| process::which("java"))
}

fn find_java() -> Result<PathBuf, StackError> {
    java_binary().ok_or_else(|| StackError::Missing {
        what: "Java (17 or newer) to run Kafka".into(),
        hint: "run scripts/bootstrap (or apt-get install openjdk-17-jre-headless)".into(),
    })
}

/// `LOGCTL_KAFKA_LIBS`, or the cache folder `scripts/bootstrap` fills.
pub fn find_libs() -> Result<PathBuf, StackError> {
    let dir = match std::env::var_os("LOGCTL_KAFKA_LIBS") {
        Some(d) => PathBuf::from(d),
        None => cache_dir()
            .join(format!("kafka-{}", version()))
            .join("libs"),
    };
    if dir.join(".complete").exists() || std::env::var_os("LOGCTL_KAFKA_LIBS").is_some() {
        Ok(dir)
    } else {
        Err(StackError::Missing {
            what: format!("Kafka {} jars in {}", version(), dir.display()),
            hint: "run scripts/bootstrap, which fetches them from Maven Central (or set LOGCTL_KAFKA_LIBS)".into(),
        })
    }
}

fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("LOGCTL_CACHE") {
        return PathBuf::from(d);
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join("logctl")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::layout::Ports;

    #[test]
    fn cluster_id_has_kafkas_shape() {
        let id = cluster_id();
        assert_eq!(id.len(), 22);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(id, cluster_id());
    }

    #[test]
    fn cluster_id_never_starts_with_a_dash() {
        // 0xF8 encodes to a leading '-' (62): the raw encoding can, the id must not.
        assert!(encode_cluster_id([0xF8; 16]).starts_with('-'));
        assert!((0..2_000).all(|_| !cluster_id().starts_with('-')));
    }

    #[test]
    fn version_comes_from_the_pom() {
        assert!(version().starts_with('4'), "{}", version());
    }

    #[test]
    fn properties_use_the_given_ports() {
        let config = StackConfig {
            ports: Ports {
                kafka: 19092,
                kafka_controller: 19093,
                ..Ports::default()
            },
            ..StackConfig::default()
        };
        let p = server_properties(&config, 0, Path::new("/tmp/x"));
        assert!(p.contains("listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"));
        assert!(p.contains("controller.quorum.voters=1@127.0.0.1:19093\n"));
        assert!(p.contains("default.replication.factor=1\n"));
        assert!(p.contains("min.insync.replicas=1\n"));
    }

    #[test]
    fn a_three_node_cluster_shares_one_quorum_and_replicates_three_times() {
        let config = StackConfig {
            brokers: 3,
            ..StackConfig::default()
        };
        let third = server_properties(&config, 2, Path::new("/tmp/k3"));
        assert!(third.contains("node.id=3\n"));
        assert!(third.contains(
            "controller.quorum.voters=1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097\n"
        ));
        assert!(third.contains("listeners=PLAINTEXT://127.0.0.1:9096,CONTROLLER://127.0.0.1:9097"));
        for line in [
            "default.replication.factor=3",
            "min.insync.replicas=2",
            "unclean.leader.election.enable=false",
            "offsets.topic.replication.factor=3",
            "transaction.state.log.replication.factor=3",
            "transaction.state.log.min.isr=2",
        ] {
            assert!(third.lines().any(|l| l == line), "{line} missing:\n{third}");
        }
        assert_eq!(
            config.bootstrap_servers(),
            "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
        );
    }
}
