//! The consumer's drain rate: with the consumer stopped, fill `log-events` with valid events
//! straight through Kafka, start the consumer, and time until PostgreSQL holds them all.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use futures::stream::{FuturesUnordered, StreamExt};
use logctl_contracts::topics::EVENTS as EVENTS_TOPIC;
use logctl_contracts::{metric, schema};
use logctl_core::{EventLimits, LogEvent};
use logctl_loadgen::events::EventMix;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use sqlx::PgPool;

use super::procstat;
use crate::signals::exposition;
use crate::stack::layout::{Layout, StackConfig};
use crate::stack::{self, Component};

pub struct Filled {
    pub orgs: Vec<String>,
    pub events: u64,
    pub mean_record_bytes: usize,
    pub fill_secs: f64,
}

/// Publishes `events` valid events for organizations `{prefix}-1..=orgs` and waits for Kafka's
/// acknowledgement of each.
pub async fn fill(
    bootstrap: &str,
    prefix: &str,
    orgs: usize,
    events: u64,
) -> anyhow::Result<Filled> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "200000")
        .create()
        .context("cannot create a Kafka producer")?;
    let mut mix = EventMix::new(42, orgs, 200, prefix);
    let limits = EventLimits::default();
    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let mut bytes = 0usize;
    for _ in 0..events {
        let event = LogEvent::from_json(&mix.next_event(), &limits, Utc::now())
            .map_err(|e| anyhow::anyhow!("generated an invalid event: {e}"))?;
        let payload = serde_json::to_vec(&event)?;
        bytes += payload.len();
        let key = event.organization_id.as_str().to_owned();
        let producer = producer.clone();
        in_flight.push(async move {
            producer
                .send(
                    FutureRecord::to(EVENTS_TOPIC).key(&key).payload(&payload),
                    Duration::from_secs(60),
                )
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        });
        if in_flight.len() >= 50_000 {
            if let Some(r) = in_flight.next().await {
                r.context("Kafka refused a pre-fill record")?;
            }
        }
    }
    while let Some(r) = in_flight.next().await {
        r.context("Kafka refused a pre-fill record")?;
    }
    Ok(Filled {
        orgs: (1..=orgs).map(|k| format!("{prefix}-{k}")).collect(),
        events,
        mean_record_bytes: bytes / events.max(1) as usize,
        fill_secs: started.elapsed().as_secs_f64(),
    })
}

/// Seconds until PostgreSQL holds `expected` rows of these organizations.
///
/// The consumers' own stored-events counters are watched (fresh processes: they count only
/// the backlog) and the table is counted only once they say they are done (and at each poll
/// after, until it holds them all). Counting a million rows every 200 ms took a share of PostgreSQL's
/// CPU from the drain it was timing.
pub async fn wait_stored(
    pool: &PgPool,
    consumers: &[String],
    orgs: &[String],
    expected: u64,
    within: Duration,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let http = reqwest::Client::new();
    loop {
        if stored_by(&http, consumers).await >= expected as f64 {
            let n = schema::count_orgs(pool, orgs).await?;
            if n >= expected {
                return Ok(started.elapsed().as_secs_f64());
            }
        }
        if started.elapsed() > within {
            let n = schema::count_orgs(pool, orgs).await?;
            anyhow::bail!("only {n} of {expected} pre-filled events stored after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Events the consumers at these base URLs say they stored; one that does not answer (yet)
/// counts none.
async fn stored_by(http: &reqwest::Client, consumers: &[String]) -> f64 {
    let mut sum = 0.0;
    for base in consumers {
        if let Some(scrape) = exposition::fetch(http, base, Duration::from_secs(2)).await {
            sum += scrape
                .sum(metric::CONSUMER_EVENTS_STORED, &[])
                .unwrap_or(0.0);
        }
    }
    sum
}

/// One drain: `consumers` instances reading a backlog of `events` they found waiting.
#[derive(Debug, Clone)]
pub struct Drained {
    pub consumers: u16,
    pub events: u64,
    pub secs: f64,
    pub mean_record_bytes: usize,
    /// Cores used over the drain by each consumer instance, PostgreSQL and each broker.
    pub cores: BTreeMap<String, f64>,
    /// The first consumer's highest RSS (a fresh process: its high-water mark is the drain's).
    pub consumer_rss_mib: Option<f64>,
    /// What storing cost PostgreSQL's disk per event: WAL written, and the table's growth.
    pub wal_bytes_per_event: Option<f64>,
    pub table_bytes_per_event: Option<f64>,
}

impl Drained {
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.secs.max(1e-9)
    }
}

/// Stops every consumer of the stack, fills the topic, starts the first `consumers` of them
/// and times from their launch until PostgreSQL holds the backlog (start-up and group joins
/// included). The rest stay stopped.
pub async fn measure(
    layout: &Layout,
    config: &StackConfig,
    pool: &PgPool,
    consumers: u16,
    events: u64,
) -> anyhow::Result<Drained> {
    let all: Vec<Component> = (0..config.consumers).map(Component::Consumer).collect();
    for c in all.iter().rev() {
        stack::stop_one(layout, *c);
    }
    let prefix = format!("drain-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let filled = fill(&config.bootstrap_servers(), &prefix, 20, events).await;
    // PostgreSQL's and Kafka's CPU over the drain; the consumers are fresh processes, so all
    // theirs is the drain's.
    let components = Component::all(config);
    let running = |c: &Component| stack::running_pid(*c, layout).map(|pid| (c.name(), pid));
    let dependencies: Vec<(String, u32)> = components
        .iter()
        .filter(|c| matches!(c, Component::Postgres | Component::Kafka(_)))
        .filter_map(running)
        .collect();
    let dependency_pids: Vec<u32> = dependencies.iter().map(|(_, pid)| *pid).collect();
    let before = procstat::cpu_by_tree(&dependency_pids);
    let disk_before = schema::footprint(pool).await.ok();
    // Timed from the launch, all of them at once: were they started one after another, the
    // first would drain part of the backlog before the clock started and a larger group would
    // look faster than it is.
    let started = Instant::now();
    let starts = all
        .iter()
        .take(usize::from(consumers.max(1)))
        .map(|c| stack::start_one(layout, config, *c));
    // Whatever happened to the fill, the consumers come back.
    futures::future::try_join_all(starts).await?;
    let filled = filled?;
    let urls: Vec<String> = all
        .iter()
        .take(usize::from(consumers.max(1)))
        .map(|c| format!("http://{}", c.listen(config)))
        .collect();
    wait_stored(
        pool,
        &urls,
        &filled.orgs,
        filled.events,
        Duration::from_secs(900),
    )
    .await?;
    let secs = started.elapsed().as_secs_f64();
    let measured: Vec<(String, u32)> = all.iter().filter_map(running).chain(dependencies).collect();
    let pids: Vec<u32> = measured.iter().map(|(_, pid)| *pid).collect();
    let cores = procstat::cores(&measured, &before, &procstat::cpu_by_tree(&pids), secs);
    let disk_after = schema::footprint(pool).await.ok();
    let per_event = |field: fn(&schema::Footprint) -> f64| {
        let (a, b) = (disk_before.as_ref()?, disk_after.as_ref()?);
        Some((field(b) - field(a)).max(0.0) / filled.events.max(1) as f64)
    };
    Ok(Drained {
        wal_bytes_per_event: per_event(|f| f.wal_bytes),
        table_bytes_per_event: per_event(|f| f.table_bytes),
        consumers,
        events: filled.events,
        secs,
        cores,
        mean_record_bytes: filled.mean_record_bytes,
        consumer_rss_mib: stack::running_pid(Component::Consumer(0), layout)
            .and_then(procstat::peak_rss_mib),
    })
}
