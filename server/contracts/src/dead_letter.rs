//! What a dead letter carries besides its original key and payload: headers saying why it
//! could not be stored, where it came from and how often it was tried. Written by the consumer
//! (records it cannot store) and the producer (spooled records it cannot decode), read by
//! `logctl dlq`.

/// Header names.
pub mod headers {
    pub const ERROR: &str = "x-logctl-error";
    pub const KIND: &str = "x-logctl-error-kind";
    pub const SOURCE_TOPIC: &str = "x-logctl-source-topic";
    pub const SOURCE_PARTITION: &str = "x-logctl-source-partition";
    pub const SOURCE_OFFSET: &str = "x-logctl-source-offset";
    pub const ATTEMPTS: &str = "x-logctl-attempts";
}

/// The source "topic" of a dead letter that never reached Kafka: a record of the producer's
/// disk spool (its partition header is then the spool segment, its offset the record's index).
pub const SPOOL_SOURCE: &str = "producer-spool";

/// Why a record is dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Not JSON, or not an event.
    Undecodable,
    /// An event that breaks the schema's rules (empty or oversized message, ...).
    Invalid,
    /// Larger than the consumer accepts.
    TooLarge,
    /// PostgreSQL refused the row itself (not an outage), every attempt.
    Rejected,
    /// A spooled record the producer could not read back (another format version, or damage
    /// the checksum did not catch).
    SpoolUndecodable,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Undecodable,
        Kind::Invalid,
        Kind::TooLarge,
        Kind::Rejected,
        Kind::SpoolUndecodable,
    ];

    /// The `x-logctl-error-kind` header and the `kind` label of the dead-letter counters.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Undecodable => "undecodable",
            Kind::Invalid => "invalid",
            Kind::TooLarge => "too_large",
            Kind::Rejected => "rejected_by_database",
            Kind::SpoolUndecodable => "spool_undecodable",
        }
    }
}
