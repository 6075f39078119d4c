//! From a Kafka record to a row, or to the reason it never can be one.
//!
//! Pure: what a record holds decides, never the state of the database or of Kafka, so a record
//! judged unstorable here goes to the dead-letter topic at once instead of being retried.

use logctl_core::{EventLimits, LogEvent};

use crate::dead_letter::{DeadLetter, Kind};
use crate::storage::NewRow;

/// One record of a batch, decoded, or why it never can be.
#[derive(Debug, Clone)]
pub enum Decoded {
    Row(NewRow),
    Dead(DeadLetter),
}

impl Decoded {
    /// Where it was read: (partition, offset).
    pub fn position(&self) -> (i32, i64) {
        match self {
            Decoded::Row(r) => (r.partition, r.offset),
            Decoded::Dead(d) => (d.partition, d.offset),
        }
    }
}

/// What of a Kafka record decoding looks at, borrowed from the client's message.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    /// The record's `traceparent` header.
    pub traceparent: Option<&'a str>,
    pub partition: i32,
    pub offset: i64,
}

/// The rules a record must keep to become a row.
#[derive(Debug, Clone, Copy)]
pub struct Decoder {
    pub limits: EventLimits,
    /// Larger records are dead-lettered unread.
    pub max_record_bytes: usize,
}

impl Decoder {
    pub fn decode(&self, r: Record<'_>) -> Decoded {
        let traceparent = r.traceparent.map(str::to_owned);
        let dead = |kind: Kind, error: String| {
            Decoded::Dead(DeadLetter {
                key: r.key.map(<[u8]>::to_vec),
                payload: r.payload.map(<[u8]>::to_vec),
                traceparent: traceparent.clone(),
                kind,
                error,
                partition: r.partition,
                offset: r.offset,
                attempts: 1,
            })
        };
        let Some(bytes) = r.payload else {
            return dead(Kind::Undecodable, "record has no payload".into());
        };
        if bytes.len() > self.max_record_bytes {
            return dead(
                Kind::TooLarge,
                format!(
                    "{} bytes, above the limit of {}",
                    bytes.len(),
                    self.max_record_bytes
                ),
            );
        }
        let event = match serde_json::from_slice::<LogEvent>(bytes) {
            Ok(e) => e,
            Err(e) => return dead(Kind::Undecodable, e.to_string()),
        };
        if let Err(e) = event.check(&self.limits) {
            return dead(Kind::Invalid, e.to_string());
        }
        Decoded::Row(NewRow {
            trace_id: r
                .traceparent
                .and_then(|tp| tp.split('-').nth(1))
                .map(str::to_owned),
            traceparent,
            event,
            partition: r.partition,
            offset: r.offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECODER: Decoder = Decoder {
        limits: EventLimits {
            max_message_bytes: 16,
        },
        max_record_bytes: 400,
    };

    fn record(payload: Option<&[u8]>) -> Record<'_> {
        Record {
            key: Some(b"org-1"),
            payload,
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            partition: 2,
            offset: 41,
        }
    }

    fn event(message: &str) -> Vec<u8> {
        format!(
            r#"{{"id":"0190b3a2-7c4e-7d1a-9f3e-2b1c0d9e8f7a","organizationId":"org-1","level":"INFO","message":"{message}","source":"api","timestamp":"2026-01-02T03:04:05Z","receivedAt":"2026-01-02T03:04:05Z"}}"#
        )
        .into_bytes()
    }

    fn dead_kind(d: Decoded) -> (Kind, DeadLetter) {
        match d {
            Decoded::Dead(l) => (l.kind, l),
            Decoded::Row(r) => panic!("expected a dead letter, got a row: {r:?}"),
        }
    }

    #[test]
    fn a_valid_event_becomes_a_row_with_its_trace_and_position() {
        let bytes = event("hello");
        let Decoded::Row(row) = DECODER.decode(record(Some(&bytes))) else {
            panic!("expected a row");
        };
        assert_eq!(row.event.message, "hello");
        assert_eq!(
            row.trace_id.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!((row.partition, row.offset), (2, 41));
    }

    #[test]
    fn what_can_never_be_stored_is_dead_lettered_with_its_bytes_and_why() {
        let (kind, letter) = dead_kind(DECODER.decode(record(None)));
        assert_eq!(kind, Kind::Undecodable);
        assert_eq!(letter.error, "record has no payload");

        let (kind, letter) = dead_kind(DECODER.decode(record(Some(b"{not json"))));
        assert_eq!(kind, Kind::Undecodable);
        assert_eq!(letter.payload.as_deref(), Some(&b"{not json"[..]));
        assert_eq!(letter.key.as_deref(), Some(&b"org-1"[..]));
        assert_eq!(
            (letter.partition, letter.offset, letter.attempts),
            (2, 41, 1)
        );

        let long = event("far more than sixteen bytes");
        let (kind, letter) = dead_kind(DECODER.decode(record(Some(&long))));
        assert_eq!(kind, Kind::Invalid);
        assert!(letter.error.contains("message"), "{}", letter.error);

        let huge = vec![b' '; 401];
        let (kind, letter) = dead_kind(DECODER.decode(record(Some(&huge))));
        assert_eq!(kind, Kind::TooLarge);
        assert_eq!(letter.error, "401 bytes, above the limit of 400");
    }
}
