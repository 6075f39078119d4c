//! What one spool record holds: an accepted event with its trace context, as JSON with a
//! format version, inside the CRC framing of [`super::codec`].
//!
//! A spool outlives the producer that wrote it (a crash, then an upgrade), so every version
//! this producer knows is read back: format 0 (before records carried `v`) and format 1 have
//! the same fields. A record no known version reads is never dropped: the replay sends its
//! bytes, untouched, to the dead-letter topic with the reason (see `Publisher::replay_spool`).

use logctl_core::LogEvent;
use serde::{Deserialize, Serialize};

use crate::publisher::Outgoing;

/// The format this producer writes.
pub const VERSION: u32 = 1;

#[derive(Serialize)]
struct Written<'a> {
    v: u32,
    event: &'a LogEvent,
    traceparent: &'a str,
}

#[derive(Deserialize)]
struct Read {
    /// Absent in format 0.
    #[serde(default)]
    v: u32,
    event: LogEvent,
    traceparent: String,
}

/// Only the version, to say why a record did not read.
#[derive(Deserialize)]
struct Version {
    #[serde(default)]
    v: u32,
}

pub fn encode(o: &Outgoing) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&Written {
        v: VERSION,
        event: &o.event,
        traceparent: &o.traceparent,
    })
}

/// The event a record holds, or why it cannot be read.
pub fn decode(bytes: &[u8]) -> Result<Outgoing, String> {
    match serde_json::from_slice::<Read>(bytes) {
        Ok(r) if r.v <= VERSION => Ok(Outgoing {
            event: r.event,
            traceparent: r.traceparent,
        }),
        Ok(r) => Err(newer(r.v)),
        Err(e) => Err(match serde_json::from_slice::<Version>(bytes) {
            Ok(Version { v }) if v > VERSION => newer(v),
            _ => format!("not a spool record of format 0..={VERSION}: {e}"),
        }),
    }
}

fn newer(v: u32) -> String {
    format!("spool record format {v} is newer than this producer reads (0..={VERSION})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Vec<Vec<u8>> {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/spool-v0.seg"
        ))
        .expect("fixture segment");
        let decoded = super::super::codec::decode(&bytes);
        assert_eq!(decoded.corrupt_spans, 0);
        decoded.records
    }

    #[test]
    fn a_segment_written_before_records_had_a_version_replays() {
        let records = fixture();
        assert_eq!(records.len(), 4);
        for (i, r) in records[..3].iter().enumerate() {
            let o = decode(r).expect("format 0 reads");
            assert_eq!(o.event.organization_id.as_str(), "spool-fixture");
            assert!(
                o.event.message.ends_with(&format!("record {i}")),
                "{}",
                o.event.message
            );
            assert!(o.traceparent.starts_with("00-0af7651916cd43dd"));
        }
        let why = decode(&records[3]).expect_err("format 99");
        assert!(why.contains("format 99 is newer"), "{why}");
    }

    #[test]
    fn what_is_written_reads_back_and_says_its_version() {
        let o = decode(&fixture()[0]).expect("event");
        let bytes = encode(&o).expect("encode");
        assert!(
            bytes.starts_with(br#"{"v":1,"#),
            "{}",
            String::from_utf8_lossy(&bytes)
        );
        let back = decode(&bytes).expect("decode");
        assert_eq!(back.event, o.event);
        assert_eq!(back.traceparent, o.traceparent);
        let why = decode(b"not json at all").expect_err("garbage");
        assert!(why.contains("not a spool record"), "{why}");
    }
}
