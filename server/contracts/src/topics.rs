//! Kafka names every process agrees on: the producer writes [`EVENTS`], the consumers of
//! [`CONSUMER_GROUP`] read it and write what they cannot store to [`DEAD_LETTERS`], and
//! `logctl` creates, inspects and replays them.

pub const EVENTS: &str = "log-events";
pub const DEAD_LETTERS: &str = "log-events-dlq";
pub const CONSUMER_GROUP: &str = "log-consumer-group";
/// Partitions of the events topic: the most consumer instances that can share the load.
pub const EVENTS_PARTITIONS: i32 = 6;
