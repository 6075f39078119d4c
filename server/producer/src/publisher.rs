//! Publishes events to Kafka and reports, per event, whether Kafka acknowledged it.
//!
//! Events are enqueued in the order given, keyed by organization, so one organization's events
//! keep their order within its partition (the idempotent producer preserves it across retries).
//! A full client queue is back-pressure: we wait for earlier deliveries instead of spinning.

use std::time::Duration;

use futures::future::join_all;
use logctl_core::internal_api::PublishOutcome;
use logctl_core::kafka::{KafkaSettings, ProducerTuning};
use logctl_core::trace::{self, TraceContext};
use logctl_core::LogEvent;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

/// How long an enqueue may wait for room in a full client queue before the event is refused.
const QUEUE_FULL_PATIENCE: Duration = Duration::from_secs(5);

pub struct Publisher {
    producer: FutureProducer,
    topic: String,
}

enum Pending {
    Queued(DeliveryFuture),
    Failed(String),
}

impl Publisher {
    pub fn new(kafka: &KafkaSettings, tuning: &ProducerTuning) -> Result<Self, KafkaError> {
        Ok(Self {
            producer: kafka.producer_config(tuning).create()?,
            topic: kafka.topic.clone(),
        })
    }

    /// Publishes `events` and waits for each one's acknowledgement (or failure).
    pub async fn publish(&self, events: &[LogEvent], trace: &TraceContext) -> Vec<PublishOutcome> {
        let started = std::time::Instant::now();
        let traceparent = trace.child().to_string();
        let mut pending = Vec::with_capacity(events.len());
        for event in events {
            pending.push(self.enqueue(event, &traceparent).await);
        }
        let results = join_all(pending.into_iter().map(|p| async move {
            match p {
                Pending::Failed(e) => Err(e),
                Pending::Queued(fut) => match fut.await {
                    Ok(Ok(delivery)) => Ok((delivery.partition, delivery.offset)),
                    Ok(Err((e, _))) => Err(e.to_string()),
                    Err(_) => Err("producer shut down before Kafka answered".to_owned()),
                },
            }
        }))
        .await;

        let outcomes: Vec<PublishOutcome> = events
            .iter()
            .zip(results)
            .map(|(event, r)| match r {
                Ok((partition, offset)) => PublishOutcome {
                    id: event.id,
                    partition: Some(partition),
                    offset: Some(offset),
                    error: None,
                },
                Err(error) => PublishOutcome {
                    id: event.id,
                    partition: None,
                    offset: None,
                    error: Some(error),
                },
            })
            .collect();
        let acked = outcomes.iter().filter(|o| o.is_acknowledged()).count();
        metrics::counter!("logctl_producer_events_published_total").increment(acked as u64);
        metrics::counter!("logctl_producer_events_failed_total")
            .increment((outcomes.len() - acked) as u64);
        metrics::histogram!("logctl_producer_publish_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        outcomes
    }

    async fn enqueue(&self, event: &LogEvent, traceparent: &str) -> Pending {
        let payload = match serde_json::to_vec(event) {
            Ok(p) => p,
            Err(e) => return Pending::Failed(format!("cannot encode event: {e}")),
        };
        let key = event.organization_id.as_str();
        let deadline = tokio::time::Instant::now() + QUEUE_FULL_PATIENCE;
        loop {
            let headers = OwnedHeaders::new().insert(Header {
                key: trace::HEADER,
                value: Some(traceparent),
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
