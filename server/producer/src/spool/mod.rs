//! The producer's durable spool: where accepted events wait while Kafka is unreachable.
//!
//! An event is answered 202 only once it is in Kafka or fsynced here. Appends from all
//! requests go to one writer thread, which writes whatever is queued and fsyncs once for the
//! lot (group commit), so many concurrent requests share one disk flush. Segments are
//! append-only files of CRC-checked records ([`codec`]); the replayer publishes sealed
//! segments to Kafka in order and deletes each only once Kafka acknowledged all its records.
//! While anything is spooled, new events are spooled behind it, so an organization's events
//! reach Kafka in the order they were accepted. The spool is bounded: full, it refuses.

pub mod codec;
pub mod record;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use logctl_contracts::metric;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SpoolSettings {
    pub dir: PathBuf,
    /// Past this many bytes on disk, appends are refused (the producer answers 503).
    pub max_bytes: u64,
    /// A segment is sealed once it passes this size.
    pub segment_bytes: u64,
}

impl Default for SpoolSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("logctl-spool"),
            max_bytes: 256 * 1024 * 1024,
            segment_bytes: 8 * 1024 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is full ({max_bytes} bytes)")]
    Full { max_bytes: u64 },
    #[error("spool I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the spool writer has stopped")]
    Closed,
}

enum Command {
    Append {
        frames: Vec<u8>,
        records: u64,
        done: oneshot::Sender<Result<(), String>>,
    },
    Seal {
        done: oneshot::Sender<Result<(), String>>,
    },
}

#[derive(Debug, Default)]
struct Counters {
    bytes: AtomicU64,
    records: AtomicU64,
    /// Appends not yet fsynced: they count as spooled for ordering.
    pending: AtomicU64,
    /// Sequence number of the segment being written; lower ones are sealed.
    current: AtomicU64,
}

#[derive(Clone)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    tx: mpsc::Sender<Command>,
    counters: Arc<Counters>,
}

/// A sealed segment and what it holds.
pub struct Segment {
    pub path: PathBuf,
    pub records: Vec<Vec<u8>>,
    bytes: u64,
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.seg"))
}

fn segment_seq(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_suffix(".seg")?
        .parse()
        .ok()
}

/// Segment files in `dir`, oldest first.
fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| segment_seq(&e.path()).map(|s| (s, e.path())))
        .collect();
    found.sort();
    Ok(found)
}

impl Spool {
    /// Opens (or creates) the spool in `settings.dir`; what an earlier run left is counted and
    /// will be replayed. Starts the writer thread.
    pub fn open(settings: &SpoolSettings) -> Result<Self, SpoolError> {
        std::fs::create_dir_all(&settings.dir)?;
        let counters = Arc::new(Counters::default());
        let mut next = 1;
        for (seq, path) in segments(&settings.dir)? {
            let decoded = codec::decode(&std::fs::read(&path)?);
            report_corruption(&decoded, &path);
            if decoded.records.is_empty() {
                std::fs::remove_file(&path)?;
                continue;
            }
            counters
                .records
                .fetch_add(decoded.records.len() as u64, Ordering::SeqCst);
            counters
                .bytes
                .fetch_add(std::fs::metadata(&path)?.len(), Ordering::SeqCst);
            next = seq + 1;
        }
        counters.current.store(next, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel(1024);
        let writer = Writer {
            dir: settings.dir.clone(),
            segment_bytes: settings.segment_bytes,
            counters: counters.clone(),
            file: None,
            written: 0,
        };
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer.run(rx))?;
        let spool = Self {
            dir: settings.dir.clone(),
            max_bytes: settings.max_bytes,
            tx,
            counters,
        };
        metrics::gauge!(metric::PRODUCER_SPOOL_MAX_BYTES).set(settings.max_bytes as f64);
        spool.report();
        Ok(spool)
    }

    pub fn records(&self) -> u64 {
        self.counters.records.load(Ordering::SeqCst)
    }

    /// Nothing spooled and nothing being spooled: new events may go straight to Kafka.
    pub fn is_empty(&self) -> bool {
        self.records() == 0 && self.counters.pending.load(Ordering::SeqCst) == 0
    }

    /// Appends the payloads and returns once they are fsynced.
    pub async fn append(&self, payloads: &[Vec<u8>]) -> Result<(), SpoolError> {
        let mut frames = Vec::with_capacity(payloads.iter().map(|p| p.len() + codec::HEADER).sum());
        for p in payloads {
            codec::encode(p, &mut frames);
        }
        let size = frames.len() as u64;
        // Reserve the room first, so concurrent appends cannot overshoot the bound together.
        let before = self.counters.bytes.fetch_add(size, Ordering::SeqCst);
        if before + size > self.max_bytes {
            self.counters.bytes.fetch_sub(size, Ordering::SeqCst);
            return Err(SpoolError::Full {
                max_bytes: self.max_bytes,
            });
        }
        self.counters.pending.fetch_add(1, Ordering::SeqCst);
        let (done, wait) = oneshot::channel();
        let sent = self
            .tx
            .send(Command::Append {
                frames,
                records: payloads.len() as u64,
                done,
            })
            .await;
        let result = match sent {
            Ok(()) => wait
                .await
                .map_err(|_| SpoolError::Closed)
                .and_then(|r| r.map_err(|e| SpoolError::Io(std::io::Error::other(e)))),
            Err(_) => Err(SpoolError::Closed),
        };
        self.counters.pending.fetch_sub(1, Ordering::SeqCst);
        if result.is_err() {
            self.counters.bytes.fetch_sub(size, Ordering::SeqCst);
        } else {
            metrics::counter!(metric::PRODUCER_SPOOLED).increment(payloads.len() as u64);
        }
        self.report();
        result
    }

    /// Closes the segment being written, so everything appended so far is in sealed segments.
    pub async fn seal(&self) -> Result<(), SpoolError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Command::Seal { done })
            .await
            .map_err(|_| SpoolError::Closed)?;
        wait.await
            .map_err(|_| SpoolError::Closed)?
            .map_err(|e| SpoolError::Io(std::io::Error::other(e)))
    }

    /// The oldest sealed segment, read and checked.
    pub fn oldest_sealed(&self) -> Result<Option<Segment>, SpoolError> {
        let current = self.counters.current.load(Ordering::SeqCst);
        let Some((_, path)) = segments(&self.dir)?.into_iter().find(|(s, _)| *s < current) else {
            return Ok(None);
        };
        let bytes = std::fs::read(&path)?;
        let decoded = codec::decode(&bytes);
        report_corruption(&decoded, &path);
        Ok(Some(Segment {
            path,
            records: decoded.records,
            bytes: bytes.len() as u64,
        }))
    }

    /// Deletes a segment whose records Kafka has all acknowledged.
    pub fn remove(&self, segment: Segment) -> Result<(), SpoolError> {
        std::fs::remove_file(&segment.path)?;
        self.counters.records.fetch_sub(
            (segment.records.len() as u64).min(self.records()),
            Ordering::SeqCst,
        );
        let bytes = self.counters.bytes.load(Ordering::SeqCst);
        self.counters
            .bytes
            .fetch_sub(segment.bytes.min(bytes), Ordering::SeqCst);
        metrics::counter!(metric::PRODUCER_SPOOL_REPLAYED).increment(segment.records.len() as u64);
        self.report();
        Ok(())
    }

    fn report(&self) {
        metrics::gauge!(metric::PRODUCER_SPOOL_BYTES)
            .set(self.counters.bytes.load(Ordering::SeqCst) as f64);
        metrics::gauge!(metric::PRODUCER_SPOOL_RECORDS).set(self.records() as f64);
    }
}

fn report_corruption(decoded: &codec::Decoded, path: &Path) {
    if decoded.corrupt_spans > 0 {
        metrics::counter!(metric::PRODUCER_SPOOL_CORRUPT).increment(decoded.corrupt_spans as u64);
        tracing::warn!(path = %path.display(), spans = decoded.corrupt_spans, bytes = decoded.corrupt_bytes,
            "skipped damaged spool bytes (a torn write from a crash, or corruption); valid records kept");
    }
}

/// Owns the segment being written; runs on its own thread (blocking file I/O and fsync).
struct Writer {
    dir: PathBuf,
    segment_bytes: u64,
    counters: Arc<Counters>,
    file: Option<File>,
    written: u64,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(first) = rx.blocking_recv() {
            // Group commit: take everything already queued, write it all, fsync once.
            let mut batch = vec![first];
            while batch.len() < 1024 {
                match rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            let mut waiting = Vec::new();
            let mut appended = 0;
            let mut failure: Option<String> = None;
            for command in batch {
                match command {
                    Command::Append {
                        frames,
                        records,
                        done,
                    } => {
                        if failure.is_none() {
                            if let Err(e) = self.write(&frames) {
                                failure = Some(e.to_string());
                            } else {
                                appended += records;
                            }
                        }
                        waiting.push(done);
                    }
                    Command::Seal { done } => {
                        let r = self
                            .sync()
                            .and_then(|()| self.seal())
                            .map_err(|e| e.to_string());
                        let _ = done.send(r);
                    }
                }
            }
            let result = match failure {
                Some(e) => Err(e),
                None => self.sync().map_err(|e| e.to_string()),
            };
            if result.is_ok() {
                self.counters.records.fetch_add(appended, Ordering::SeqCst);
            }
            for done in waiting {
                let _ = done.send(result.clone());
            }
        }
        let _ = self.sync();
    }

    fn write(&mut self, frames: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() {
            let seq = self.counters.current.load(Ordering::SeqCst);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(segment_path(&self.dir, seq))?;
            File::open(&self.dir)?.sync_all()?;
            self.written = file.metadata()?.len();
            self.file = Some(file);
        }
        if let Some(f) = self.file.as_mut() {
            f.write_all(frames)?;
            self.written += frames.len() as u64;
        }
        if self.written >= self.segment_bytes {
            self.sync()?;
            self.seal()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.sync_data(),
            None => Ok(()),
        }
    }

    /// The next write opens a new segment; the current one becomes sealed.
    fn seal(&mut self) -> std::io::Result<()> {
        if self.file.take().is_some() {
            self.counters.current.fetch_add(1, Ordering::SeqCst);
            self.written = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path, max_bytes: u64) -> SpoolSettings {
        SpoolSettings {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes: 64,
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("logctl-spool-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[tokio::test]
    async fn appends_survive_a_restart_and_replay_in_order() {
        let dir = temp_dir("restart");
        {
            let spool = Spool::open(&settings(&dir, 1 << 20)).expect("open");
            for i in 0..10 {
                spool
                    .append(&[format!("event {i}").into_bytes()])
                    .await
                    .expect("append");
            }
            assert_eq!(spool.records(), 10);
        }
        // A new process on the same dir: everything is there, sealed, in order.
        let spool = Spool::open(&settings(&dir, 1 << 20)).expect("reopen");
        assert_eq!(spool.records(), 10);
        let mut seen = Vec::new();
        while let Some(segment) = spool.oldest_sealed().expect("read") {
            seen.extend(
                segment
                    .records
                    .iter()
                    .map(|r| String::from_utf8_lossy(r).into_owned()),
            );
            spool.remove(segment).expect("remove");
        }
        let expected: Vec<String> = (0..10).map(|i| format!("event {i}")).collect();
        assert_eq!(seen, expected);
        assert!(spool.is_empty());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn seal_makes_everything_appended_readable() {
        let dir = temp_dir("seal");
        let spool = Spool::open(&SpoolSettings {
            segment_bytes: 1 << 20,
            ..settings(&dir, 1 << 20)
        })
        .expect("open");
        spool
            .append(&[b"a".to_vec(), b"b".to_vec()])
            .await
            .expect("append");
        assert!(
            spool.oldest_sealed().expect("read").is_none(),
            "still being written"
        );
        spool.seal().await.expect("seal");
        let segment = spool.oldest_sealed().expect("read").expect("sealed");
        assert_eq!(segment.records, vec![b"a".to_vec(), b"b".to_vec()]);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn refuses_appends_past_its_bound() {
        let dir = temp_dir("full");
        let spool = Spool::open(&settings(&dir, 100)).expect("open");
        spool.append(&[vec![1; 50]]).await.expect("fits");
        assert!(matches!(
            spool.append(&[vec![2; 50]]).await,
            Err(SpoolError::Full { .. })
        ));
        assert_eq!(spool.records(), 1);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn a_torn_tail_is_skipped_on_reopen() {
        let dir = temp_dir("torn");
        {
            let spool = Spool::open(&SpoolSettings {
                segment_bytes: 1 << 20,
                ..settings(&dir, 1 << 20)
            })
            .expect("open");
            spool.append(&[b"kept".to_vec()]).await.expect("append");
        }
        let (_, path) = segments(&dir).expect("list").pop().expect("a segment");
        let mut f = OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open segment");
        f.write_all(&[codec::MAGIC, 200, 0, 0, 0, 1, 2])
            .expect("torn write");
        drop(f);
        let spool = Spool::open(&settings(&dir, 1 << 20)).expect("reopen");
        assert_eq!(spool.records(), 1);
        let segment = spool.oldest_sealed().expect("read").expect("sealed");
        assert_eq!(segment.records, vec![b"kept".to_vec()]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
