//! Rows in PostgreSQL's binary `COPY` format, the bulk-load path: it parses no text and
//! inserts in multi-row buffers per partition, where an `INSERT ... SELECT FROM UNNEST(...)`
//! unpacks ten arrays and inserts row by row (about a fifth more of PostgreSQL's CPU per row
//! in a drain here, `perf` sampled).
//!
//! The format: a signature, flags and header-extension length; each row as its field count,
//! then each field's length (-1 for NULL) and bytes in the type's binary send form; -1 ends it.

use chrono::{DateTime, TimeZone, Utc};

use super::NewRow;

/// The statement that reads [`encode`]'s bytes.
pub const STATEMENT: &str = concat!(
    "COPY log_events (",
    logctl_contracts::written_columns!(),
    ") FROM STDIN (FORMAT binary)"
);

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
const FIELDS: i16 = 10;

/// `rows` as one `COPY` stream for [`STATEMENT`].
pub fn encode(rows: &[&NewRow]) -> Vec<u8> {
    let text: usize = rows
        .iter()
        .map(|r| {
            let e = &r.event;
            e.organization_id.as_str().len()
                + e.level.as_str().len()
                + e.message.len()
                + e.source.len()
                + r.trace_id.as_deref().map_or(0, str::len)
        })
        .sum();
    // 2 for the field count, 4 for each field's length, 16 + 8 + 8 + 4 + 8 for the fixed-width
    // values.
    let mut out = Vec::with_capacity(SIGNATURE.len() + 8 + rows.len() * (2 + 40 + 44) + text + 2);
    out.extend_from_slice(SIGNATURE);
    out.extend_from_slice(&0i32.to_be_bytes()); // flags: no OIDs
    out.extend_from_slice(&0i32.to_be_bytes()); // no header extension
    for r in rows {
        let e = &r.event;
        out.extend_from_slice(&FIELDS.to_be_bytes());
        field(&mut out, e.id.as_bytes());
        field(&mut out, e.organization_id.as_str().as_bytes());
        field(&mut out, e.level.as_str().as_bytes());
        field(&mut out, e.message.as_bytes());
        field(&mut out, e.source.as_bytes());
        field(&mut out, &timestamp(e.timestamp).to_be_bytes());
        field(&mut out, &timestamp(e.received_at).to_be_bytes());
        match &r.trace_id {
            Some(t) => field(&mut out, t.as_bytes()),
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
        field(&mut out, &r.partition.to_be_bytes());
        field(&mut out, &r.offset.to_be_bytes());
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    // A field is at most a message (bounded far below 2 GiB by the gateway's limits).
    out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A `timestamptz` as PostgreSQL sends it: microseconds since 2000-01-01 UTC, truncated the
/// way sqlx binds one, so a row copied in and the same row bound by a statement have the same
/// key.
fn timestamp(t: DateTime<Utc>) -> i64 {
    let epoch = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap();
    (t - epoch).num_microseconds().unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use logctl_core::{EventLimits, LogEvent};
    use uuid::Uuid;

    fn row(trace_id: Option<&str>) -> NewRow {
        let at = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 1).unwrap();
        let event = LogEvent::from_json(
            &serde_json::json!({"organizationId": "o", "level": "INFO", "message": "hé",
                                "source": "s", "id": Uuid::nil(),
                                "timestamp": at.to_rfc3339()}),
            &EventLimits::default(),
            at,
        )
        .expect("valid");
        NewRow {
            event,
            trace_id: trace_id.map(str::to_owned),
            traceparent: None,
            partition: 3,
            offset: 7,
        }
    }

    /// A column added to the written list without a field here would shift every field after
    /// it; PostgreSQL would refuse the stream only if the count differed.
    #[test]
    fn a_row_has_a_field_for_each_written_column() {
        let columns = logctl_contracts::written_columns!().split(',').count();
        assert_eq!(columns, usize::try_from(FIELDS).expect("positive"));
    }

    #[test]
    fn each_row_is_its_fields_lengths_and_bytes_between_header_and_trailer() {
        let (a, b) = (row(None), row(Some("t")));
        let bytes = encode(&[&a, &b]);
        let mut want: Vec<u8> = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
        for trace in [None, Some(&b"t"[..])] {
            want.extend_from_slice(&[0, 10]);
            want.extend_from_slice(&[0, 0, 0, 16]);
            want.extend_from_slice(&[0; 16]);
            for text in [&b"o"[..], b"INFO", "hé".as_bytes(), b"s"] {
                want.extend_from_slice(&(text.len() as i32).to_be_bytes());
                want.extend_from_slice(text);
            }
            // One second after PostgreSQL's epoch, twice (event time and receipt).
            for _ in 0..2 {
                want.extend_from_slice(&[0, 0, 0, 8]);
                want.extend_from_slice(&1_000_000i64.to_be_bytes());
            }
            match trace {
                Some(t) => {
                    want.extend_from_slice(&[0, 0, 0, 1]);
                    want.extend_from_slice(t);
                }
                None => want.extend_from_slice(&[0xff; 4]),
            }
            want.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 3]);
            want.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 7]);
        }
        want.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(bytes, want);
    }

    #[test]
    fn timestamps_keep_microseconds_and_drop_what_is_finer() {
        let epoch = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap();
        let t = epoch + chrono::TimeDelta::nanoseconds(1_234_567);
        assert_eq!(timestamp(t), 1_234);
        assert_eq!(timestamp(epoch - chrono::TimeDelta::microseconds(5)), -5);
    }
}
