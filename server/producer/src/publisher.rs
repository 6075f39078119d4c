//! Publishes events to Kafka, or spools them while Kafka is unreachable, and reports per event
//! whether it is safe: acknowledged by Kafka, or fsynced in the spool.
//!
//! Events are enqueued in the order given, keyed by organization, so one organization's events
//! keep their order within its partition (the idempotent producer preserves it across retries).
//! While the spool holds anything, new events queue behind it for the same reason. A full
//! client queue is back-pressure: we wait for earlier deliveries instead of spinning.

use std::time::Duration;

use futures::future::join_all;
use logctl_contracts::dead_letter::{headers, Kind, SPOOL_SOURCE};
use logctl_contracts::metric;
use logctl_core::breaker::{Breaker, BreakerSettings};
use logctl_core::internal_api::PublishOutcome;
use logctl_core::kafka::{KafkaSettings, ProducerTuning};
use logctl_core::trace;
use logctl_core::LogEvent;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use serde::{Deserialize, Serialize};

use crate::spool::{record, Segment, Spool, SpoolError};

/// How long an enqueue may wait for room in a full client queue before the event is refused.
const QUEUE_FULL_PATIENCE: Duration = Duration::from_secs(5);

/// An event as the spool keeps it: with its own trace context, replayed as it came.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outgoing {
    pub event: LogEvent,
    pub traceparent: String,
}

pub struct Publisher {
    producer: FutureProducer,
    topic: String,
    /// Where spooled records that no longer decode go (never dropped).
    dead_letter_topic: String,
    breaker: Breaker,
    spool: Option<Spool>,
    ack_patience: Duration,
    /// Publishing takes it shared; the replay takes it alone while the spool's last segment
    /// goes out, so the spool can empty under steady load (see `replay_spool`).
    handoff: tokio::sync::RwLock<()>,
}

enum Pending {
    Queued(DeliveryFuture),
    Failed(String),
}

type Delivered = Result<(i32, i64), String>;

impl Publisher {
    pub fn new(
        kafka: &KafkaSettings,
        tuning: &ProducerTuning,
        breaker: BreakerSettings,
        spool: Option<Spool>,
    ) -> Result<Self, KafkaError> {
        Ok(Self {
            producer: kafka.producer_config(tuning).create()?,
            topic: kafka.topic.clone(),
            dead_letter_topic: kafka.dead_letter_topic.clone(),
            breaker: Breaker::new("kafka", breaker),
            spool,
            ack_patience: Duration::from_millis(u64::from(tuning.ack_patience_ms.max(1))),
            handoff: tokio::sync::RwLock::new(()),
        })
    }

    pub fn spool(&self) -> Option<&Spool> {
        self.spool.as_ref()
    }

    /// Makes each event safe (in Kafka, or else in the spool) and says which are, in order.
    pub async fn publish(&self, outgoing: &[Outgoing]) -> Vec<PublishOutcome> {
        // Deciding "behind the spool or straight to Kafka" and acting on it is one step.
        let _turn = self.handoff.read().await;
        let delivered: Vec<Delivered> = match &self.spool {
            Some(spool) if !spool.is_empty() => {
                vec![Err("queued behind the spool".to_owned()); outgoing.len()]
            }
            _ => self.send_guarded(outgoing).await,
        };
        let mut outcomes: Vec<PublishOutcome> = outgoing
            .iter()
            .zip(&delivered)
            .map(|(o, d)| match d {
                Ok((partition, offset)) => PublishOutcome {
                    id: o.event.id,
                    partition: Some(*partition),
                    offset: Some(*offset),
                    error: None,
                    spooled: false,
                },
                Err(e) => PublishOutcome::failed(o.event.id, e.clone()),
            })
            .collect();
        self.spool_failed(outgoing, &mut outcomes).await;

        let safe = outcomes.iter().filter(|o| o.is_acknowledged()).count();
        metrics::counter!(metric::PRODUCER_EVENTS_FAILED).increment((outcomes.len() - safe) as u64);
        outcomes
    }

    /// Sends through the Kafka breaker: refused at once while it is open.
    async fn send_guarded(&self, outgoing: &[Outgoing]) -> Vec<Delivered> {
        let permit = match self.breaker.acquire() {
            Ok(p) => p,
            Err(rejected) => {
                return vec![Err(format!("Kafka unavailable: {rejected}")); outgoing.len()];
            }
        };
        let started = std::time::Instant::now();
        let delivered = self.send(outgoing).await;
        if delivered.iter().all(Result::is_ok) {
            permit.success();
        } else {
            permit.failure();
        }
        let acked = delivered.iter().filter(|d| d.is_ok()).count();
        metrics::counter!(metric::PRODUCER_EVENTS_PUBLISHED).increment(acked as u64);
        metrics::histogram!(metric::PRODUCER_PUBLISH_DURATION)
            .record(started.elapsed().as_secs_f64());
        delivered
    }

    /// Spools the events Kafka did not take; each one fsynced counts as safe.
    async fn spool_failed(&self, outgoing: &[Outgoing], outcomes: &mut [PublishOutcome]) {
        let Some(spool) = &self.spool else {
            return;
        };
        let failed: Vec<usize> = (0..outcomes.len())
            .filter(|i| !outcomes[*i].is_acknowledged())
            .collect();
        if failed.is_empty() {
            return;
        }
        let payloads: Vec<Vec<u8>> = failed
            .iter()
            .filter_map(|i| record::encode(&outgoing[*i]).ok())
            .collect();
        if payloads.len() != failed.len() {
            return;
        }
        match spool.append(&payloads).await {
            Ok(()) => {
                for i in failed {
                    outcomes[i].error = None;
                    outcomes[i].spooled = true;
                }
            }
            Err(e @ SpoolError::Full { .. }) => {
                tracing::warn!(error = %e, "spool full: refusing events");
                for i in failed {
                    outcomes[i].error = Some(format!("Kafka unavailable and {e}"));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot spool events");
                for i in failed {
                    outcomes[i].error =
                        Some(format!("Kafka unavailable and the spool failed: {e}"));
                }
            }
        }
    }

    /// Publishes spooled segments to Kafka in order, deleting each once all of it is
    /// acknowledged, until `shutdown`. A partly failed segment is sent again later: the
    /// consumer's primary key absorbs the repeats.
    ///
    /// New events queue behind the spool (for order) while it holds anything, so under
    /// steady load the spool would never be empty: each round sends what arrived during the
    /// last. When only the segment being written is left, the replay therefore holds new
    /// events back (the handoff lock) while it seals and sends that segment; once it is out
    /// the spool is empty and events go straight to Kafka again.
    pub async fn replay_spool(&self, shutdown: tokio_util::sync::CancellationToken) {
        let Some(spool) = &self.spool else {
            return;
        };
        let mut alone = None;
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            // Rest only when there is nothing to do; with a backlog, go round at once, or the
            // replay would only ever keep pace with new arrivals and never drain.
            if spool.is_empty() {
                alone = None;
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                continue;
            }
            let segment = match spool.oldest_sealed() {
                Ok(Some(s)) => s,
                Ok(None) => {
                    if alone.is_none() {
                        alone = Some(self.handoff.write().await);
                    }
                    if let Err(e) = spool.seal().await {
                        tracing::warn!(error = %e, "cannot seal the spool segment");
                        alone = None;
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the spool");
                    alone = None;
                    continue;
                }
            };
            let mut outgoing = Vec::with_capacity(segment.records.len());
            let mut unreadable = Vec::new();
            for (index, r) in segment.records.iter().enumerate() {
                match record::decode(r) {
                    Ok(o) => outgoing.push(o),
                    Err(why) => unreadable.push((index, why)),
                }
            }
            let delivered = self.send_guarded(&outgoing).await;
            // Dead letters only once the readable events are in: a segment sent again after a
            // failure would otherwise put its unreadable records in the topic once per try.
            let sent = delivered.iter().all(Result::is_ok)
                && self
                    .dead_letter_unreadable(&segment, &unreadable)
                    .await
                    .inspect_err(|e| tracing::warn!(error = %e, "cannot dead-letter unreadable spool records"))
                    .is_ok();
            if sent {
                tracing::info!(
                    events = outgoing.len(),
                    dead_lettered = unreadable.len(),
                    "spooled events replayed to Kafka"
                );
                if let Err(e) = spool.remove(segment) {
                    tracing::warn!(error = %e, "cannot delete a replayed spool segment");
                }
            } else {
                alone = None;
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }

    /// Sends spooled records that no known format reads to the dead-letter topic, bytes as
    /// they were, with why and where from; the segment is deleted only once Kafka has them.
    async fn dead_letter_unreadable(
        &self,
        segment: &Segment,
        unreadable: &[(usize, String)],
    ) -> Result<(), String> {
        let source = segment
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let deliveries = unreadable.iter().map(|(index, why)| {
            let offset = index.to_string();
            let headers = OwnedHeaders::new()
                .insert(header(headers::ERROR, why))
                .insert(header(headers::KIND, Kind::SpoolUndecodable.as_str()))
                .insert(header(headers::SOURCE_TOPIC, SPOOL_SOURCE))
                .insert(header(headers::SOURCE_PARTITION, &source))
                .insert(header(headers::SOURCE_OFFSET, &offset))
                .insert(header(headers::ATTEMPTS, "1"));
            let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.dead_letter_topic)
                .payload(segment.records[*index].as_slice())
                .headers(headers);
            self.producer.send(record, self.ack_patience)
        });
        for (result, (index, why)) in join_all(deliveries).await.into_iter().zip(unreadable) {
            match result {
                Ok(_) => {
                    metrics::counter!(metric::PRODUCER_SPOOL_UNDECODABLE).increment(1);
                    tracing::warn!(segment = %source, index, reason = %why,
                        "unreadable spool record sent to the dead-letter topic");
                }
                Err((e, _)) => return Err(e.to_string()),
            }
        }
        Ok(())
    }

    /// Enqueues all, in order, then waits for every acknowledgement, at most `ack_patience`.
    async fn send(&self, outgoing: &[Outgoing]) -> Vec<Delivered> {
        let mut pending = Vec::with_capacity(outgoing.len());
        for o in outgoing {
            pending.push(self.enqueue(o).await);
        }
        let deadline = tokio::time::Instant::now() + self.ack_patience;
        let patience = self.ack_patience;
        join_all(pending.into_iter().map(|p| async move {
            match p {
                Pending::Failed(e) => Err(e),
                Pending::Queued(fut) => match tokio::time::timeout_at(deadline, fut).await {
                    Ok(Ok(Ok(delivery))) => Ok((delivery.partition, delivery.offset)),
                    Ok(Ok(Err((e, _)))) => Err(e.to_string()),
                    Ok(Err(_)) => Err("producer shut down before Kafka answered".to_owned()),
                    Err(_) => Err(format!("Kafka did not acknowledge within {patience:?}")),
                },
            }
        }))
        .await
    }

    async fn enqueue(&self, o: &Outgoing) -> Pending {
        let payload = match serde_json::to_vec(&o.event) {
            Ok(p) => p,
            Err(e) => return Pending::Failed(format!("cannot encode event: {e}")),
        };
        let key = o.event.organization_id.as_str();
        let deadline = tokio::time::Instant::now() + QUEUE_FULL_PATIENCE;
        loop {
            let headers = OwnedHeaders::new().insert(Header {
                key: trace::HEADER,
                value: Some(o.traceparent.as_str()),
            });
            let record = FutureRecord::to(&self.topic)
                .key(key)
                .payload(&payload)
                .headers(headers);
            match self.producer.send_result(record) {
                Ok(delivery) => return Pending::Queued(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Pending::Failed(e.to_string()),
            }
        }
    }

    /// Records waiting in the client for an acknowledgement.
    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }

    /// Checks that the events topic's metadata can be fetched from a broker.
    pub async fn check_kafka(&self, timeout: Duration) -> Result<(), String> {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), Timeout::After(timeout))
                .map_err(|e| e.to_string())
                .and_then(|m| match m.topics().first().and_then(|t| t.error()) {
                    Some(err) => Err(format!("topic {topic}: {err:?}")),
                    None => Ok(()),
                })
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Waits until every queued record was acknowledged or failed, up to `timeout`.
    pub async fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(Timeout::After(timeout)))
            .await
            .unwrap_or(Ok(()))
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}
