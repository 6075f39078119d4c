//! The dead-letter topic: where records that can never be stored go, so the pipeline moves on
//! without losing them. Each keeps its original key and payload, plus headers saying what was
//! wrong, where it came from and how often it was tried; `logctl dlq list|replay` reads them.
//! A dead letter counts as handled only once Kafka acknowledged it: its source offset is
//! committed after that, never before.

use std::time::Duration;

use futures::future::join_all;
use logctl_contracts::metric;
use logctl_core::kafka::{KafkaSettings, ProducerTuning};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

pub use logctl_contracts::dead_letter::{headers, Kind};

#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub traceparent: Option<String>,
    pub kind: Kind,
    pub error: String,
    pub partition: i32,
    pub offset: i64,
    pub attempts: u32,
}

#[derive(Clone)]
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    source_topic: String,
}

impl DeadLetters {
    pub fn new(kafka: &KafkaSettings) -> Result<Self, KafkaError> {
        Ok(Self {
            producer: kafka
                .producer_config(&ProducerTuning::default())
                .set("client.id", "logctl-consumer-dlq")
                .create()?,
            topic: kafka.dead_letter_topic.clone(),
            source_topic: kafka.topic.clone(),
        })
    }

    /// Publishes every letter and waits for Kafka's acknowledgement of each.
    pub async fn send(&self, letters: &[DeadLetter]) -> Result<(), KafkaError> {
        let deliveries = letters.iter().map(|l| {
            let partition = l.partition.to_string();
            let offset = l.offset.to_string();
            let attempts = l.attempts.to_string();
            let mut h = OwnedHeaders::new()
                .insert(header(headers::ERROR, &l.error))
                .insert(header(headers::KIND, l.kind.as_str()))
                .insert(header(headers::SOURCE_TOPIC, &self.source_topic))
                .insert(header(headers::SOURCE_PARTITION, &partition))
                .insert(header(headers::SOURCE_OFFSET, &offset))
                .insert(header(headers::ATTEMPTS, &attempts));
            if let Some(tp) = &l.traceparent {
                h = h.insert(header(logctl_core::trace::HEADER, tp));
            }
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic).headers(h);
            if let Some(k) = &l.key {
                record = record.key(k.as_slice());
            }
            if let Some(p) = &l.payload {
                record = record.payload(p.as_slice());
            }
            self.producer.send(record, Duration::from_secs(5))
        });
        for result in join_all(deliveries).await {
            result.map_err(|(e, _)| e)?;
        }
        for l in letters {
            metrics::counter!(metric::CONSUMER_DEAD_LETTERED, "kind" => l.kind.as_str())
                .increment(1);
            tracing::warn!(kind = l.kind.as_str(), error = %l.error, partition = l.partition,
                offset = l.offset, attempts = l.attempts, "record sent to the dead-letter topic");
        }
        Ok(())
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}
