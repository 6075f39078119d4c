//! `logctl dlq`: what the consumer gave up on, and putting it back.
//!
//! `list` reads the dead-letter topic from its start (without joining a group, so reading
//! changes nothing). `replay` publishes chosen records' original key and payload to the events
//! topic again, once the cause is fixed; a record still bad comes back to the dead-letter topic.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use logctl_core::kafka::{KafkaSettings, ProducerTuning};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::stack::StackError;

/// Header naming where a replayed record came from.
pub const REPLAYED_FROM: &str = "x-logctl-replayed-from";

#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Option<String>,
    pub headers: BTreeMap<String, String>,
    #[serde(skip)]
    raw_key: Option<Vec<u8>>,
    #[serde(skip)]
    raw_payload: Option<Vec<u8>>,
}

fn kafka_err(e: rdkafka::error::KafkaError) -> StackError {
    StackError::Other(format!("Kafka: {e}"))
}

/// Every record of the dead-letter topic, oldest first.
pub fn list(kafka: &KafkaSettings, timeout: Duration) -> Result<Vec<DeadLetter>, StackError> {
    let consumer: BaseConsumer = kafka
        .client_config()
        .set("group.id", "logctl-dlq-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(kafka_err)?;
    let topic = &kafka.dead_letter_topic;
    let metadata = consumer
        .fetch_metadata(Some(topic), Timeout::After(timeout))
        .map_err(kafka_err)?;
    let mut ends = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id(), Timeout::After(timeout))
            .map_err(kafka_err)?;
        if high > low {
            ends.insert(p.id(), high);
            tpl.add_partition_offset(topic, p.id(), Offset::Offset(low))
                .map_err(kafka_err)?;
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    consumer.assign(&tpl).map_err(kafka_err)?;
    let deadline = Instant::now() + timeout;
    let mut done: BTreeMap<i32, bool> = ends.keys().map(|p| (*p, false)).collect();
    while done.values().any(|d| !d) {
        if Instant::now() > deadline {
            return Err(StackError::Other(
                "timed out reading the dead-letter topic".into(),
            ));
        }
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.map_err(kafka_err)?;
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        let value = h.value.map(|v| String::from_utf8_lossy(v).into_owned());
                        (h.key.to_owned(), value.unwrap_or_default())
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(DeadLetter {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: m.payload().map(|p| String::from_utf8_lossy(p).into_owned()),
            headers,
            raw_key: m.key().map(<[u8]>::to_vec),
            raw_payload: m.payload().map(<[u8]>::to_vec),
        });
        if m.offset() + 1 >= ends[&m.partition()] {
            done.insert(m.partition(), true);
        }
    }
    out.sort_by_key(|d| (d.partition, d.offset));
    Ok(out)
}

/// Publishes each letter's original key and payload to the events topic; returns how many
/// Kafka acknowledged.
pub async fn replay(kafka: &KafkaSettings, letters: &[DeadLetter]) -> Result<usize, StackError> {
    let producer: FutureProducer = kafka
        .producer_config(&ProducerTuning::default())
        .create()
        .map_err(kafka_err)?;
    let mut sent = 0;
    for l in letters {
        let from = format!("{}:{}:{}", kafka.dead_letter_topic, l.partition, l.offset);
        let mut headers = OwnedHeaders::new().insert(Header {
            key: REPLAYED_FROM,
            value: Some(&from),
        });
        if let Some(tp) = l.headers.get(logctl_core::trace::HEADER) {
            headers = headers.insert(Header {
                key: logctl_core::trace::HEADER,
                value: Some(tp),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&kafka.topic).headers(headers);
        if let Some(k) = &l.raw_key {
            record = record.key(k.as_slice());
        }
        if let Some(p) = &l.raw_payload {
            record = record.payload(p.as_slice());
        }
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| kafka_err(e))?;
        sent += 1;
    }
    Ok(sent)
}
