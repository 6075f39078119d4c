//! Consumer-group lag computed from Kafka itself: each partition's log-end offset minus the
//! group's committed offset, as Burrow and `kafka-consumer-groups` compute it; how old the
//! oldest unconsumed record is, from its own timestamp at the committed offset (as klag does,
//! not interpolated from rates); and a status per partition by Burrow's rules ([`status`]).
//!
//! It reads committed offsets without joining the group, so any service can run it. Both the
//! producer and the consumer export it: when every consumer is down, the producer still shows
//! the lag growing (query it as `max by (partition) (logctl_consumer_lag)`).

pub mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use logctl_contracts::metric;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::kafka::KafkaSettings;
pub use status::{Observation, Rules, Status, Tracker};

/// One partition's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLag {
    pub partition: i32,
    /// The first offset the log still keeps.
    pub low: i64,
    pub log_end: i64,
    /// `None` when the group has committed nothing for this partition yet.
    pub committed: Option<i64>,
    pub lag: i64,
    /// When the oldest unconsumed record was written to Kafka (ms since the epoch); `None`
    /// with no lag, or when it could not be read in time.
    pub oldest_unconsumed_ms: Option<i64>,
    /// Whether a live member of the group holds the partition; `None` when the group is
    /// rebalancing or could not be described.
    pub owned: Option<bool>,
}

impl PartitionLag {
    /// How far behind the group is on this partition, in time: the age of the oldest record
    /// it has not consumed (0 with no lag). `None` when lag exists but its age is unknown.
    pub fn seconds(&self, now: SystemTime) -> Option<f64> {
        if self.lag == 0 {
            return Some(0.0);
        }
        let now_ms = now.duration_since(UNIX_EPOCH).ok()?.as_millis() as i64;
        self.oldest_unconsumed_ms
            .map(|ts| (now_ms - ts).max(0) as f64 / 1000.0)
    }

    pub fn observation(&self) -> Observation {
        Observation {
            low: self.low,
            log_end: self.log_end,
            committed: self.committed,
            lag: self.lag,
            owned: self.owned,
        }
    }
}

/// One partition as an operator wants it: how many records and how long behind, and the
/// consumer's status there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartitionHealth {
    pub lag: i64,
    pub seconds: Option<f64>,
    pub status: Status,
}

/// Judges each reading against the ones before it (the readings' owner keeps one).
pub fn health(
    tracker: &mut Tracker,
    at: Instant,
    now: SystemTime,
    parts: &[PartitionLag],
) -> BTreeMap<i32, PartitionHealth> {
    let statuses = tracker.observe(at, parts.iter().map(|p| (p.partition, p.observation())));
    parts
        .iter()
        .map(|p| {
            (
                p.partition,
                PartitionHealth {
                    lag: p.lag,
                    seconds: p.seconds(now),
                    status: statuses.get(&p.partition).copied().unwrap_or(Status::Ok),
                },
            )
        })
        .collect()
}

/// How long a reading waits for the oldest unconsumed records (they are fetched, not guessed).
const PROBE_WAIT: Duration = Duration::from_millis(600);

pub struct LagReader {
    client: BaseConsumer,
    /// Reads single records at the committed offsets, assigned partitions only: it never
    /// joins the group nor commits.
    probe: BaseConsumer,
    /// Partition → (offset, its record's timestamp) from earlier probes: while a committed
    /// offset stands still (a stopped consumer), its record is not fetched again.
    stamps: std::sync::Mutex<BTreeMap<i32, (i64, i64)>>,
    topic: String,
    group: String,
}

impl LagReader {
    pub fn new(kafka: &KafkaSettings, group: &str) -> Result<Self, KafkaError> {
        let client: BaseConsumer = kafka
            .client_config()
            .set("group.id", group)
            .set("client.id", "logctl-lag-reader")
            .set("enable.auto.commit", "false")
            .create()?;
        let probe: BaseConsumer = kafka
            .client_config()
            .set("group.id", "logctl-lag-probe")
            .set("client.id", "logctl-lag-probe")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("fetch.wait.max.ms", "50")
            // One record is wanted: fetch little, prefetch nothing more.
            .set("fetch.message.max.bytes", "4096")
            .set("queued.min.messages", "1")
            .set("queued.max.messages.kbytes", "64")
            // Each read moves the assignment back to the committed offsets: fetch again at once
            // rather than after the default second's back-off.
            .set("fetch.queue.backoff.ms", "5")
            .set("fetch.error.backoff.ms", "50")
            .create()?;
        Ok(Self {
            client,
            probe,
            stamps: std::sync::Mutex::default(),
            topic: kafka.topic.clone(),
            group: group.to_owned(),
        })
    }

    /// Reads every partition's lag (blocking: call from a blocking thread).
    pub fn read(&self, timeout: Duration) -> Result<Vec<PartitionLag>, KafkaError> {
        let metadata = self
            .client
            .fetch_metadata(Some(&self.topic), Timeout::After(timeout))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition(&self.topic, *p);
        }
        let committed = self
            .client
            .committed_offsets(tpl, Timeout::After(timeout))?;
        partitions
            .into_iter()
            .map(|partition| {
                let (low, high) = self.client.fetch_watermarks(
                    &self.topic,
                    partition,
                    Timeout::After(timeout),
                )?;
                let committed = committed
                    .find_partition(&self.topic, partition)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    });
                let lag = (high - committed.unwrap_or(low)).max(0);
                Ok(PartitionLag {
                    partition,
                    low,
                    log_end: high,
                    committed,
                    lag,
                    oldest_unconsumed_ms: None,
                    owned: None,
                })
            })
            .collect::<Result<Vec<_>, KafkaError>>()
            .map(|mut parts| {
                let owned = self.owned_partitions(timeout);
                let behind: Vec<(i32, i64)> = parts
                    .iter()
                    .filter(|p| p.lag > 0)
                    .map(|p| (p.partition, p.committed.unwrap_or(p.low).max(p.low)))
                    .collect();
                let stamps = self.oldest_stamps(&behind, PROBE_WAIT.min(timeout));
                for p in &mut parts {
                    p.owned = owned.as_ref().map(|o| o.contains(&p.partition));
                    p.oldest_unconsumed_ms = stamps.get(&p.partition).copied();
                }
                parts
            })
    }

    /// The partitions of our topic that live members of the group hold, from the group's
    /// description; `None` while it rebalances or when it cannot be described.
    fn owned_partitions(&self, timeout: Duration) -> Option<BTreeSet<i32>> {
        let groups = self
            .client
            .fetch_group_list(Some(&self.group), Timeout::After(timeout))
            .ok()?;
        let group = groups.groups().iter().find(|g| g.name() == self.group)?;
        match group.state() {
            "Empty" | "Dead" => return Some(BTreeSet::new()),
            "Stable" => {}
            _ => return None,
        }
        let mut owned = BTreeSet::new();
        for member in group.members() {
            // A member holding nothing (more consumers than partitions) has no assignment.
            owned.extend(assigned_partitions(
                member.assignment().unwrap_or(&[]),
                &self.topic,
            )?);
        }
        Some(owned)
    }

    /// Each asked partition's record timestamp at the asked offset: remembered when that
    /// offset was probed before, fetched otherwise.
    fn oldest_stamps(&self, at: &[(i32, i64)], wait: Duration) -> BTreeMap<i32, i64> {
        let mut known = self
            .stamps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        known.retain(|p, (offset, _)| at.contains(&(*p, *offset)));
        let missing: Vec<(i32, i64)> = at
            .iter()
            .filter(|(p, _)| !known.contains_key(p))
            .copied()
            .collect();
        let offsets: BTreeMap<i32, i64> = at.iter().copied().collect();
        for (p, ts) in self.timestamps_at(&missing, wait) {
            known.insert(p, (offsets[&p], ts));
        }
        known.iter().map(|(p, (_, ts))| (*p, *ts)).collect()
    }

    /// Each asked partition's record timestamp at the asked offset (or the first after it), as
    /// far as they arrive within `wait`.
    fn timestamps_at(&self, at: &[(i32, i64)], wait: Duration) -> BTreeMap<i32, i64> {
        let mut stamps = BTreeMap::new();
        if at.is_empty() {
            return stamps;
        }
        let mut tpl = TopicPartitionList::new();
        for (p, offset) in at {
            if tpl
                .add_partition_offset(&self.topic, *p, Offset::Offset(*offset))
                .is_err()
            {
                return stamps;
            }
        }
        if self.probe.assign(&tpl).is_err() {
            return stamps;
        }
        let wanted: BTreeMap<i32, i64> = at.iter().copied().collect();
        let deadline = Instant::now() + wait;
        while stamps.len() < wanted.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if let Some(Ok(m)) = self.probe.poll(left) {
                let fresh = wanted.get(&m.partition()).is_some_and(|o| m.offset() >= *o);
                if let (true, Some(ts)) = (fresh, m.timestamp().to_millis()) {
                    stamps.entry(m.partition()).or_insert(ts);
                }
            }
        }
        let _ = self.probe.unassign();
        stamps
    }
}

/// How often the services read lag from Kafka: often enough for an alert or a stall check,
/// cheap enough (one offset fetch and a watermark per partition) to run in every instance.
pub const EXPORT_EVERY: Duration = Duration::from_secs(2);

/// The partitions of `topic` in a member's assignment, as the classic consumer protocol
/// encodes it (version, then topics with their partitions, then user data; big-endian);
/// `None` when it does not parse.
fn assigned_partitions(bytes: &[u8], topic: &str) -> Option<Vec<i32>> {
    struct Reader<'a>(&'a [u8]);
    impl Reader<'_> {
        fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
            let (head, rest) = self.0.split_at_checked(N)?;
            self.0 = rest;
            head.try_into().ok()
        }
        fn i16(&mut self) -> Option<i16> {
            self.take().map(i16::from_be_bytes)
        }
        fn i32(&mut self) -> Option<i32> {
            self.take().map(i32::from_be_bytes)
        }
        fn bytes(&mut self, n: usize) -> Option<&[u8]> {
            let (head, rest) = self.0.split_at_checked(n)?;
            self.0 = rest;
            Some(head)
        }
    }
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let mut r = Reader(bytes);
    r.i16()?;
    let mut out = Vec::new();
    for _ in 0..r.i32()?.max(0) {
        let len = usize::try_from(r.i16()?).ok()?;
        let name = r.bytes(len)?.to_vec();
        for _ in 0..r.i32()?.max(0) {
            let p = r.i32()?;
            if name == topic.as_bytes() {
                out.push(p);
            }
        }
    }
    Some(out)
}

/// The latest lag per partition, for a consumer to judge whether it is stalled.
pub type LagBoard = std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<i32, i64>>>;

/// Exports `logctl_consumer_lag{partition}` every `every` until `shutdown`, and keeps `board`
/// (if given) up to date.
pub async fn export(
    reader: LagReader,
    every: Duration,
    shutdown: CancellationToken,
    board: Option<LagBoard>,
) {
    let reader = std::sync::Arc::new(reader);
    let mut tracker = Tracker::new(Rules::default());
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let r = reader.clone();
        match tokio::task::spawn_blocking(move || r.read(Duration::from_secs(3))).await {
            Ok(Ok(lags)) => {
                if let Some(board) = &board {
                    let mut b = board
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    b.clear();
                    b.extend(lags.iter().map(|l| (l.partition, l.lag)));
                }
                let judged = health(&mut tracker, Instant::now(), SystemTime::now(), &lags);
                for (p, h) in judged {
                    let p = p.to_string();
                    metrics::gauge!(metric::CONSUMER_LAG, "partition" => p.clone())
                        .set(h.lag as f64);
                    metrics::gauge!(metric::CONSUMER_STATUS, "partition" => p.clone())
                        .set(h.status.code());
                    // Unknown is NaN, not the last value: an alert must not read a stale 0.
                    metrics::gauge!(metric::CONSUMER_LAG_SECONDS, "partition" => p)
                        .set(h.seconds.unwrap_or(f64::NAN));
                }
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "cannot read consumer lag"),
            Err(e) => tracing::debug!(error = %e, "lag reader task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut b = 1i16.to_be_bytes().to_vec();
        b.extend((topics.len() as i32).to_be_bytes());
        for (name, parts) in topics {
            b.extend((name.len() as i16).to_be_bytes());
            b.extend(name.as_bytes());
            b.extend((parts.len() as i32).to_be_bytes());
            for p in *parts {
                b.extend(p.to_be_bytes());
            }
        }
        b.extend((-1i32).to_be_bytes()); // no user data
        b
    }

    #[test]
    fn a_members_assignment_names_its_partitions_of_our_topic() {
        let bytes = assignment(&[("other", &[0, 1]), ("log-events", &[2, 5])]);
        assert_eq!(assigned_partitions(&bytes, "log-events"), Some(vec![2, 5]));
        assert_eq!(assigned_partitions(&[], "log-events"), Some(vec![]));
        assert_eq!(
            assigned_partitions(&bytes[..9], "log-events"),
            None,
            "cut short"
        );
    }

    #[test]
    fn lag_in_seconds_is_the_oldest_unconsumed_records_age() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let p = PartitionLag {
            partition: 0,
            low: 0,
            log_end: 10,
            committed: Some(4),
            lag: 6,
            oldest_unconsumed_ms: Some(997_500),
            owned: Some(true),
        };
        assert_eq!(p.seconds(now), Some(2.5));
        let unknown = PartitionLag {
            oldest_unconsumed_ms: None,
            ..p
        };
        assert_eq!(unknown.seconds(now), None);
        let caught_up = PartitionLag { lag: 0, ..unknown };
        assert_eq!(caught_up.seconds(now), Some(0.0));
    }
}
