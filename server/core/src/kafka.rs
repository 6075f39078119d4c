//! Kafka client settings, in one place for the producer, the consumer and `logctl`.
//!
//! The producer is idempotent (acks=all, at most 5 in flight, endless internal retries) so a
//! retried batch never duplicates or reorders an organization's events within its partition;
//! the consumer never commits an offset the application has not stored (auto-commit of
//! *stored* offsets only, which the consumer stores after the database commit).

use std::time::Duration;

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use serde::{Deserialize, Serialize};

use logctl_contracts::topics;

/// Where Kafka is and which topics carry events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KafkaSettings {
    pub bootstrap_servers: String,
    pub topic: String,
    pub dead_letter_topic: String,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            topic: topics::EVENTS.into(),
            dead_letter_topic: topics::DEAD_LETTERS.into(),
        }
    }
}

/// How long Kafka keeps the events topic, from one setting; the dead-letter topic keeps
/// [`DEAD_LETTER_RETENTION_FACTOR`] times as long, since its records wait for a person to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TopicRetention {
    /// `retention.ms` of the events topic: `7d` (Kafka's own default).
    #[serde(deserialize_with = "logctl_contracts::duration::seconds")]
    pub retention_secs: u64,
    /// `retention.bytes` of each of its partitions; none (-1) by default.
    pub retention_bytes: i64,
}

/// The dead-letter topic keeps its records this many times as long as the events topic.
pub const DEAD_LETTER_RETENTION_FACTOR: u64 = 4;

impl Default for TopicRetention {
    fn default() -> Self {
        Self {
            retention_secs: 7 * 86_400,
            retention_bytes: -1,
        }
    }
}

impl TopicRetention {
    /// `retention.ms`, `retention.bytes` and `segment.ms` of the events topic and of the
    /// dead-letter topic. Kafka deletes whole segments, never the one being written, so a
    /// segment rolls after a fifth of the retention (a minute at least, a week at most):
    /// what is kept on disk then stays within 1.2 x the retention (plus the broker's 5-minute
    /// retention check) instead of waiting for a week-long segment to close.
    pub fn configs(&self) -> [[(&'static str, String); 3]; 2] {
        let ms = self.retention_secs.saturating_mul(1000);
        let segment = |retention_ms: u64| (retention_ms / 5).clamp(60_000, 7 * 86_400_000);
        let dead_letters = ms.saturating_mul(DEAD_LETTER_RETENTION_FACTOR);
        [
            [
                ("retention.ms", ms.to_string()),
                ("retention.bytes", self.retention_bytes.to_string()),
                ("segment.ms", segment(ms).to_string()),
            ],
            [
                ("retention.ms", dead_letters.to_string()),
                ("retention.bytes", "-1".to_owned()),
                ("segment.ms", segment(dead_letters).to_string()),
            ],
        ]
    }
}

/// A topic's retention as the brokers have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicRetentionView {
    pub topic: String,
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<i64>,
}

/// Producer knobs; defaults favour throughput with a small memory bound.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProducerTuning {
    /// How long librdkafka waits to fill a batch: the main throughput knob.
    #[serde(deserialize_with = "logctl_contracts::duration::millis")]
    pub linger_ms: u32,
    /// `lz4` or `zstd` pay off on log text.
    pub compression: String,
    /// Bounds the client's in-memory queue: past it, sends fail fast as back-pressure.
    pub queue_max_messages: u32,
    pub queue_max_kbytes: u32,
    /// How long a record may wait for an acknowledgement before it is reported failed; below
    /// the gateway's upstream timeout, so the producer's clear answer arrives first.
    #[serde(deserialize_with = "logctl_contracts::duration::millis")]
    pub message_timeout_ms: u32,
    /// How long a request waits for Kafka's acknowledgement before its events go to the spool
    /// instead. When Kafka goes away this, not `message_timeout_ms`, is what callers wait:
    /// answers stay well under the gateway's slow-call threshold, so its breaker does not
    /// turn a Kafka outage the spool absorbs into 503s. Kafka may still take the abandoned
    /// records later; the consumer's primary key stores such a copy once.
    #[serde(deserialize_with = "logctl_contracts::duration::millis")]
    pub ack_patience_ms: u32,
}

impl Default for ProducerTuning {
    fn default() -> Self {
        Self {
            linger_ms: 5,
            compression: "lz4".into(),
            queue_max_messages: 100_000,
            queue_max_kbytes: 32 * 1024,
            message_timeout_ms: 8_000,
            ack_patience_ms: 2_000,
        }
    }
}

/// Consumer knobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsumerTuning {
    pub group_id: String,
    #[serde(deserialize_with = "logctl_contracts::duration::millis")]
    pub session_timeout_ms: u32,
    #[serde(deserialize_with = "logctl_contracts::duration::millis")]
    pub max_poll_interval_ms: u32,
    /// How often stored offsets are committed; only offsets of rows already in PostgreSQL are stored.
    #[serde(deserialize_with = "logctl_contracts::duration::millis")]
    pub auto_commit_interval_ms: u32,
    /// Where a group with no committed offset starts: `earliest` so no event is skipped.
    pub auto_offset_reset: String,
    /// Pre-fetched records librdkafka keeps queued (KiB); a bound on the consumer's memory.
    pub queued_max_kbytes: u32,
    /// Most bytes one fetch brings back, and most per partition: the queue bound above is
    /// checked before a fetch, so one fetch can overshoot it by this much, and lz4 makes the
    /// decompressed record sets several times larger. librdkafka's defaults (50 MiB, 1 MiB a
    /// partition) held ~50 MiB of decompressed records in the consumer at 100,000 rows/s.
    pub fetch_max_bytes: u32,
    pub max_partition_fetch_bytes: u32,
    /// Records per partition librdkafka tries to keep queued (its default: 100,000, each with
    /// a few hundred bytes of bookkeeping).
    pub queued_min_messages: u32,
    /// How long librdkafka waits to fetch again once that queue is full. Its default, 1 s, caps
    /// a backlog's drain at one queue per second (about 40k rows/s measured here).
    #[serde(deserialize_with = "logctl_contracts::duration::millis")]
    pub fetch_queue_backoff_ms: u32,
    /// A fetch waits for this many bytes, or `fetch_wait_max_ms`, whichever comes first.
    /// librdkafka's default (1 byte) answers each fetch as soon as one record is there: at a
    /// steady trickle the consumer fetched continuously and cost the broker as much CPU as the
    /// producer's writes did (0.2 cores at 1,000 events/s, measured with the consumer stopped
    /// and running). A backlog fills the bytes at once, so a drain does not wait.
    pub fetch_min_bytes: u32,
    #[serde(deserialize_with = "logctl_contracts::duration::millis")]
    pub fetch_wait_max_ms: u32,
}

impl Default for ConsumerTuning {
    fn default() -> Self {
        Self {
            group_id: topics::CONSUMER_GROUP.into(),
            session_timeout_ms: 10_000,
            max_poll_interval_ms: 300_000,
            auto_commit_interval_ms: 1_000,
            auto_offset_reset: "earliest".into(),
            queued_max_kbytes: 4_096,
            fetch_max_bytes: 1024 * 1024,
            max_partition_fetch_bytes: 256 * 1024,
            queued_min_messages: 5_000,
            fetch_queue_backoff_ms: 5,
            fetch_min_bytes: 64 * 1024,
            // Adds at most this much to end-to-end latency at a trickle.
            fetch_wait_max_ms: 20,
        }
    }
}

impl KafkaSettings {
    /// Settings every client shares.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("broker.address.family", "v4")
            .set("socket.timeout.ms", "10000")
            .set("reconnect.backoff.max.ms", "2000");
        c
    }

    pub fn producer_config(&self, t: &ProducerTuning) -> ClientConfig {
        let mut c = self.client_config();
        c.set("enable.idempotence", "true")
            .set("client.id", "logctl-producer")
            .set("acks", "all")
            .set("compression.type", &t.compression)
            .set("linger.ms", t.linger_ms.to_string())
            .set(
                "queue.buffering.max.messages",
                t.queue_max_messages.to_string(),
            )
            .set("queue.buffering.max.kbytes", t.queue_max_kbytes.to_string())
            .set("message.timeout.ms", t.message_timeout_ms.to_string());
        c
    }

    pub fn consumer_config(&self, t: &ConsumerTuning) -> ClientConfig {
        let mut c = self.client_config();
        c.set("group.id", &t.group_id)
            .set("client.id", "logctl-consumer")
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.commit.interval.ms",
                t.auto_commit_interval_ms.to_string(),
            )
            .set("auto.offset.reset", &t.auto_offset_reset)
            .set("session.timeout.ms", t.session_timeout_ms.to_string())
            .set("max.poll.interval.ms", t.max_poll_interval_ms.to_string())
            .set("enable.partition.eof", "false")
            .set(
                "queued.max.messages.kbytes",
                t.queued_max_kbytes.to_string(),
            )
            .set("fetch.max.bytes", t.fetch_max_bytes.to_string())
            .set(
                "max.partition.fetch.bytes",
                t.max_partition_fetch_bytes.to_string(),
            )
            .set("queued.min.messages", t.queued_min_messages.to_string())
            .set(
                "fetch.queue.backoff.ms",
                t.fetch_queue_backoff_ms.to_string(),
            )
            .set("fetch.min.bytes", t.fetch_min_bytes.to_string())
            .set("fetch.wait.max.ms", t.fetch_wait_max_ms.to_string());
        c
    }

    /// Creates the events topic and its dead-letter topic if they are missing, each partition
    /// with `replication` copies (never more than the cluster has brokers), and sets their
    /// retention (on topics that already exist too, so a changed setting takes effect).
    pub async fn ensure_topics(
        &self,
        timeout: Duration,
        replication: i32,
        retention: &TopicRetention,
    ) -> Result<(), KafkaError> {
        let admin: AdminClient<DefaultClientContext> = self.client_config().create()?;
        let configs = retention.configs();
        let names = [self.topic.as_str(), self.dead_letter_topic.as_str()];
        let partitions = [topics::EVENTS_PARTITIONS, 1];
        let topics: Vec<NewTopic> = (0..2)
            .map(|i| {
                configs[i].iter().fold(
                    NewTopic::new(
                        names[i],
                        partitions[i],
                        TopicReplication::Fixed(replication),
                    ),
                    |t, (k, v)| t.set(k, v),
                )
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(timeout));
        for result in admin.create_topics(&topics, &options).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(KafkaError::AdminOp(code)).inspect_err(|_| {
                        tracing::error!(%topic, ?code, "cannot create topic");
                    })
                }
            }
        }
        // AlterConfigs replaces a topic's whole set of dynamic configs: these two are all
        // logctl sets, so writing both each time keeps nothing stale.
        let alters: Vec<AlterConfig> = (0..2)
            .map(|i| {
                configs[i].iter().fold(
                    AlterConfig::new(ResourceSpecifier::Topic(names[i])),
                    |a, (k, v)| a.set(k, v),
                )
            })
            .collect();
        for result in admin.alter_configs(&alters, &options).await? {
            if let Err((resource, code)) = result {
                tracing::error!(?resource, ?code, "cannot set topic retention");
                return Err(KafkaError::AdminOp(code));
            }
        }
        Ok(())
    }

    /// The retention of the events and dead-letter topics, as the brokers have it.
    pub async fn topic_retention(
        &self,
        timeout: Duration,
    ) -> Result<Vec<TopicRetentionView>, KafkaError> {
        let admin: AdminClient<DefaultClientContext> = self.client_config().create()?;
        let names = [self.topic.as_str(), self.dead_letter_topic.as_str()];
        let specs: Vec<ResourceSpecifier> =
            names.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
        let options = AdminOptions::new().request_timeout(Some(timeout));
        let mut views = Vec::new();
        for (name, result) in names
            .iter()
            .zip(admin.describe_configs(&specs, &options).await?)
        {
            let resource = result.map_err(KafkaError::AdminOp)?;
            let number = |key: &str| {
                resource
                    .get(key)
                    .and_then(|e| e.value.as_deref())
                    .and_then(|v| v.parse().ok())
            };
            views.push(TopicRetentionView {
                topic: (*name).to_owned(),
                retention_ms: number("retention.ms"),
                retention_bytes: number("retention.bytes"),
            });
        }
        Ok(views)
    }

    /// Each partition of the events and dead-letter topics as the cluster's metadata has it,
    /// with the brokers it lists. Blocking: call it off the async threads.
    pub fn partitions(&self, timeout: Duration) -> Result<ClusterView, KafkaError> {
        MetadataReader::new(self)?.read(timeout)
    }
}

/// Copies an acks=all write must reach with `replicas` copies: two of three (or more), so one
/// broker may be lost without refusing writes and an acknowledged write survives losing any
/// one; every copy when there are fewer.
pub fn min_insync_for(replicas: usize) -> usize {
    if replicas >= 3 {
        2
    } else {
        1
    }
}

/// Reads [`ClusterView`]s through one client, for callers that ask every second.
pub struct MetadataReader {
    client: BaseConsumer,
    topics: [String; 2],
}

impl MetadataReader {
    pub fn new(settings: &KafkaSettings) -> Result<Self, KafkaError> {
        Ok(Self {
            client: settings.client_config().create()?,
            topics: [settings.topic.clone(), settings.dead_letter_topic.clone()],
        })
    }

    /// Blocking: call it off the async threads.
    pub fn read(&self, timeout: Duration) -> Result<ClusterView, KafkaError> {
        let metadata = self.client.fetch_metadata(None, timeout)?;
        let mut partitions = Vec::new();
        for t in metadata.topics() {
            if !self.topics.iter().any(|n| n == t.name()) {
                continue;
            }
            for p in t.partitions() {
                partitions.push(PartitionState {
                    topic: t.name().to_owned(),
                    partition: p.id(),
                    leader: (p.leader() >= 0).then_some(p.leader()),
                    replicas: p.replicas().to_vec(),
                    isr: p.isr().to_vec(),
                });
            }
        }
        Ok(ClusterView {
            brokers: metadata.brokers().iter().map(|b| b.id()).collect(),
            partitions,
        })
    }
}

/// What the cluster's metadata says of its brokers and of our topics' partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// Ids of the brokers the cluster lists as alive.
    pub brokers: Vec<i32>,
    pub partitions: Vec<PartitionState>,
}

impl ClusterView {
    /// Partitions with fewer in-sync copies than replicas: a broker is down or catching up.
    pub fn under_replicated(&self) -> usize {
        self.partitions
            .iter()
            .filter(|p| p.isr.len() < p.replicas.len())
            .count()
    }

    /// Partitions with fewer in-sync copies than [`min_insync_for`] their replicas: acks=all
    /// writes to them fail.
    pub fn under_min_isr(&self) -> usize {
        self.partitions
            .iter()
            .filter(|p| p.isr.len() < min_insync_for(p.replicas.len()))
            .count()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    pub topic: String,
    pub partition: i32,
    /// The broker leading it; `None` while it has no leader (offline).
    pub leader: Option<i32>,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}
