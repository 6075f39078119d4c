//! The Kafka cluster as an operator asks after it: which broker is up, which one is the active
//! controller, how many partitions each leads, and how many partitions are short of copies.
//! Read from the cluster's metadata (through librdkafka) and, for the controller, from Kafka's
//! own quorum tool: the one place that knows the KRaft leader.

use std::time::Duration;

use logctl_core::kafka::{ClusterView, KafkaSettings};
use serde::Serialize;

use super::layout::{Layout, StackConfig};
use super::{kafka, Component, ComponentStatus};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerStatus {
    pub name: String,
    pub node_id: i32,
    /// As `logctl status` has it for the process (up, down, paused, starting).
    pub status: String,
    /// Listed by the cluster as alive.
    pub in_cluster: bool,
    /// The KRaft quorum's leader: the active controller.
    pub controller: bool,
    /// Partitions of `log-events` this broker leads now.
    pub partitions_led: usize,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    pub brokers: Vec<BrokerStatus>,
    /// Partitions with fewer in-sync copies than replicas.
    pub under_replicated: usize,
    /// Partitions with fewer in-sync copies than `min.insync.replicas`: acks=all writes to
    /// them are refused (the producer spools).
    pub under_min_isr: usize,
    /// Partitions without a leader.
    pub offline: usize,
    pub replication_factor: u16,
    pub min_insync_replicas: u16,
    pub quorum: Quorum,
    /// Why the cluster could not be asked, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The KRaft controller quorum, counted from the processes: every broker is also a voter.
/// Without a majority no controller can change the metadata, so the partition counts above are
/// the last ones it settled (the ISR cannot shrink) and say nothing about the brokers lost
/// since.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Quorum {
    pub voters: u16,
    pub running: u16,
    pub has_majority: bool,
}

impl Quorum {
    pub fn of(voters: u16, running: u16) -> Self {
        Self {
            voters,
            running,
            has_majority: running > voters / 2,
        }
    }
}

/// Broker `i`'s KRaft node id: its number in `kafka-N`.
pub fn node_id(i: u16) -> i32 {
    i32::from(i) + 1
}

/// The broker a node id belongs to (the inverse of [`node_id`]).
pub fn broker_of(node_id: i32) -> Option<Component> {
    u16::try_from(node_id.checked_sub(1)?)
        .ok()
        .map(Component::Kafka)
}

/// The broker leading the most partitions of `topic` (the lowest node id on a tie): the one
/// whose loss moves the most leadership, which is what a "kill the leader" drill wants.
pub fn busiest_leader(view: &ClusterView, topic: &str) -> Option<i32> {
    let mut led: std::collections::BTreeMap<i32, usize> = Default::default();
    for p in view.partitions.iter().filter(|p| p.topic == topic) {
        if let Some(l) = p.leader {
            *led.entry(l).or_default() += 1;
        }
    }
    led.into_iter()
        .max_by(|(a, n), (b, m)| n.cmp(m).then(b.cmp(a)))
        .map(|(id, _)| id)
}

pub fn settings(config: &StackConfig) -> KafkaSettings {
    KafkaSettings {
        bootstrap_servers: config.bootstrap_servers(),
        ..KafkaSettings::default()
    }
}

/// Blocking: a metadata request and, for a cluster, one run of Kafka's quorum tool.
pub fn status(
    layout: &Layout,
    config: &StackConfig,
    components: &[ComponentStatus],
) -> ClusterStatus {
    let settings = settings(config);
    let (view, error) = match settings.partitions(Duration::from_secs(3)) {
        Ok(v) => (v, None),
        Err(e) => (
            ClusterView {
                brokers: Vec::new(),
                partitions: Vec::new(),
            },
            Some(e.to_string()),
        ),
    };
    let controller = if config.brokers > 1 {
        quorum_leader(layout, config)
    } else {
        Some(1).filter(|_| error.is_none())
    };
    let brokers = (0..config.brokers.max(1))
        .map(|i| {
            let name = kafka::name(i);
            let node_id = node_id(i);
            BrokerStatus {
                status: components
                    .iter()
                    .find(|c| c.name == name)
                    .map_or("down", |c| c.status)
                    .to_owned(),
                in_cluster: view.brokers.contains(&node_id),
                controller: controller == Some(node_id),
                partitions_led: view
                    .partitions
                    .iter()
                    .filter(|p| p.topic == settings.topic && p.leader == Some(node_id))
                    .count(),
                name,
                node_id,
            }
        })
        .collect::<Vec<BrokerStatus>>();
    let running = brokers.iter().filter(|b| b.status == "up").count();
    ClusterStatus {
        quorum: Quorum::of(
            config.brokers.max(1),
            u16::try_from(running).unwrap_or(u16::MAX),
        ),
        brokers,
        under_replicated: view.under_replicated(),
        under_min_isr: view.under_min_isr(),
        offline: view
            .partitions
            .iter()
            .filter(|p| p.leader.is_none())
            .count(),
        replication_factor: config.replication_factor(),
        min_insync_replicas: config.min_insync_replicas(),
        error,
    }
}

/// The KRaft leader's node id, from `kafka-metadata-quorum describe --status`.
fn quorum_leader(layout: &Layout, config: &StackConfig) -> Option<i32> {
    let args = ["describe".to_owned(), "--status".to_owned()];
    let out = kafka::tool("metadata-quorum", &args, layout, config)
        .ok()?
        .output()
        .ok()?;
    parse_leader_id(&String::from_utf8_lossy(&out.stdout))
}

fn parse_leader_id(text: &str) -> Option<i32> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("LeaderId:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use logctl_core::kafka::PartitionState;

    use super::*;

    fn partition(topic: &str, partition: i32, leader: Option<i32>) -> PartitionState {
        PartitionState {
            topic: topic.into(),
            partition,
            leader,
            replicas: vec![1, 2, 3],
            isr: vec![1, 2, 3],
        }
    }

    #[test]
    fn the_busiest_leader_leads_the_most_event_partitions() {
        let view = ClusterView {
            brokers: vec![1, 2, 3],
            partitions: vec![
                partition("log-events", 0, Some(2)),
                partition("log-events", 1, Some(3)),
                partition("log-events", 2, Some(3)),
                partition("log-events", 3, None),
                partition("log-events-dlq", 0, Some(1)),
                partition("log-events-dlq", 1, Some(1)),
                partition("log-events-dlq", 2, Some(1)),
            ],
        };
        assert_eq!(busiest_leader(&view, "log-events"), Some(3));
        let tie = ClusterView {
            brokers: vec![1, 2],
            partitions: vec![
                partition("log-events", 0, Some(2)),
                partition("log-events", 1, Some(1)),
            ],
        };
        assert_eq!(busiest_leader(&tie, "log-events"), Some(1));
        assert_eq!(broker_of(3), Some(Component::Kafka(2)));
        assert_eq!(broker_of(0), None);
    }

    #[test]
    fn the_quorum_leader_is_read_from_the_tools_status() {
        let text =
            "ClusterId:              abc\nLeaderId:               2\nLeaderEpoch:            7\n";
        assert_eq!(parse_leader_id(text), Some(2));
        assert_eq!(parse_leader_id("nothing"), None);
    }
}
