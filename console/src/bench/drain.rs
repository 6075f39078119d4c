//! The consumer's drain rate: with the consumer stopped, fill `log-events` with valid events
//! straight through Kafka, start the consumer, and time until PostgreSQL holds them all.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use futures::stream::{FuturesUnordered, StreamExt};
use logctl_contracts::topics::EVENTS as EVENTS_TOPIC;
use logctl_core::{EventLimits, LogEvent};
use logctl_loadgen::events::EventMix;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use sqlx::PgPool;

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
pub async fn wait_stored(
    pool: &PgPool,
    orgs: &[String],
    expected: u64,
    within: Duration,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    loop {
        let n = logctl_contracts::schema::count_orgs(pool, orgs).await?;
        if n >= expected {
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > within {
            anyhow::bail!("only {n} of {expected} pre-filled events stored after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
