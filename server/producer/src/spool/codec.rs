//! The spool's on-disk record format: `[0xA5][len: u32 LE][crc32: u32 LE][payload]`.
//!
//! Reading never trusts the file: a record is yielded only if its magic byte, length and CRC
//! all check out. After a bad spot (a torn tail from a crash mid-write, or flipped bits) the
//! reader scans forward for the next record that checks out, and counts what it skipped, so
//! garbage is never replayed and good records after a bad one are not lost.

pub const MAGIC: u8 = 0xA5;
pub const HEADER: usize = 9;
/// No record is larger (a full batch of large events is far below it).
pub const MAX_RECORD: usize = 16 * 1024 * 1024;

pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    out.push(MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// What a segment held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    pub records: Vec<Vec<u8>>,
    /// Stretches of bytes skipped because no valid record started there.
    pub corrupt_spans: usize,
    pub corrupt_bytes: usize,
}

/// A valid record at `pos`: its payload range and total length.
fn record_at(bytes: &[u8], pos: usize) -> Option<(std::ops::Range<usize>, usize)> {
    let header = bytes.get(pos..pos.checked_add(HEADER)?)?;
    if header[0] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(header[1..5].try_into().ok()?) as usize;
    if len > MAX_RECORD {
        return None;
    }
    let crc = u32::from_le_bytes(header[5..9].try_into().ok()?);
    let start = pos + HEADER;
    let payload = bytes.get(start..start.checked_add(len)?)?;
    (crc32fast::hash(payload) == crc).then_some((start..start + len, HEADER + len))
}

pub fn decode(bytes: &[u8]) -> Decoded {
    let mut out = Decoded::default();
    let mut pos = 0;
    let mut skipping_from: Option<usize> = None;
    while pos < bytes.len() {
        match record_at(bytes, pos) {
            Some((payload, total)) => {
                if let Some(from) = skipping_from.take() {
                    out.corrupt_spans += 1;
                    out.corrupt_bytes += pos - from;
                }
                out.records.push(bytes[payload].to_vec());
                pos += total;
            }
            None => {
                skipping_from.get_or_insert(pos);
                pos += 1;
            }
        }
    }
    if let Some(from) = skipping_from {
        out.corrupt_spans += 1;
        out.corrupt_bytes += bytes.len() - from;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn file(records: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            encode(r, &mut out);
        }
        out
    }

    #[test]
    fn round_trips() {
        let records = vec![b"one".to_vec(), Vec::new(), vec![MAGIC; 40]];
        let d = decode(&file(&records));
        assert_eq!(d.records, records);
        assert_eq!(d.corrupt_spans, 0);
    }

    #[test]
    fn a_torn_tail_is_skipped_and_counted() {
        let records = vec![b"first".to_vec(), b"second".to_vec()];
        let mut bytes = file(&records);
        bytes.truncate(bytes.len() - 3);
        let d = decode(&bytes);
        assert_eq!(d.records, vec![b"first".to_vec()]);
        assert_eq!(d.corrupt_spans, 1);
    }

    #[test]
    fn a_flipped_bit_loses_one_record_not_the_rest() {
        let records: Vec<Vec<u8>> = (0..5).map(|i| format!("record {i}").into_bytes()).collect();
        let mut bytes = file(&records);
        let second_payload = (HEADER + 8) + HEADER + 2;
        bytes[second_payload] ^= 0x10;
        let d = decode(&bytes);
        assert_eq!(d.records.len(), 4);
        assert!(!d.records.contains(&records[1]));
        assert_eq!(d.corrupt_spans, 1);
    }

    proptest! {
        /// Whatever happens to the bytes, decoding never panics and yields only records that
        /// were written; every record before the first damaged byte is recovered.
        #[test]
        fn damage_never_yields_garbage(
            records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..20),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            cut in any::<prop::sample::Index>(),
            truncate: bool,
        ) {
            let clean = file(&records);
            let mut bytes = clean.clone();
            for (at, xor) in &flips {
                if !bytes.is_empty() {
                    let i = at.index(bytes.len());
                    bytes[i] ^= xor | 1;
                }
            }
            if truncate && !bytes.is_empty() {
                bytes.truncate(cut.index(bytes.len()));
            }
            let first_damage = clean.iter().zip(&bytes).position(|(a, b)| a != b)
                .unwrap_or(bytes.len().min(clean.len()));
            let d = decode(&bytes);
            for r in &d.records {
                prop_assert!(records.contains(r), "yielded a record never written");
            }
            let mut offset = 0;
            let mut intact = 0;
            for r in &records {
                offset += HEADER + r.len();
                if offset <= first_damage { intact += 1 } else { break }
            }
            prop_assert!(d.records.len() >= intact, "an intact record was lost");
            prop_assert_eq!(&d.records[..intact], &records[..intact]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }
    }
}
