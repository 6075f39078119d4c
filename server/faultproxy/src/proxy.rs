//! One proxied link: a listener that forwards every connection to its upstream, through the
//! faults set on it at that moment. Faults change live: a connection consults them for every
//! chunk, and a reset reaches connections already open.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::fault::{Direction, Fault, Toxic};

/// How long a connection to the upstream may take before the client's is dropped.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes read at once; a latency toxic holds each chunk read.
const CHUNK: usize = 16 * 1024;
/// Chunks held in flight per direction (latency overlaps them) before reading waits.
const IN_FLIGHT: usize = 1024;

type Faults = Arc<[Fault]>;

#[derive(Debug, Default)]
pub struct Counters {
    pub connections: AtomicU64,
    pub open: AtomicU64,
    pub bytes_upstream: AtomicU64,
    pub bytes_downstream: AtomicU64,
    pub resets: AtomicU64,
}

/// A running proxy. Dropping it does not stop it: cancel the token it was started with.
pub struct Proxy {
    name: String,
    listen: SocketAddr,
    /// `host:port`, resolved on each connection: a name (a compose service) may move.
    upstream: String,
    faults: watch::Sender<Faults>,
    counters: Arc<Counters>,
}

impl Proxy {
    /// Binds `listen` (port 0 picks one) and forwards to `upstream` until `shutdown`.
    pub async fn start(
        name: impl Into<String>,
        listen: SocketAddr,
        upstream: impl Into<String>,
        shutdown: CancellationToken,
    ) -> std::io::Result<Arc<Self>> {
        let listener = TcpListener::bind(listen).await?;
        let (faults, _) = watch::channel(Faults::from(Vec::new()));
        let proxy = Arc::new(Self {
            name: name.into(),
            listen: listener.local_addr()?,
            upstream: upstream.into(),
            faults,
            counters: Arc::default(),
        });
        tokio::spawn(accept(listener, proxy.clone(), shutdown));
        Ok(proxy)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    pub fn faults(&self) -> Vec<Fault> {
        self.faults.borrow().to_vec()
    }

    /// Replaces every fault on the link.
    pub fn set(&self, faults: Vec<Fault>) {
        self.faults.send_replace(faults.into());
    }

    /// Adds one; toxics stack (latencies add up, the lowest bandwidth holds).
    pub fn add(&self, fault: Fault) {
        let mut all = self.faults();
        all.push(fault);
        self.set(all);
    }

    pub fn clear(&self) {
        self.set(Vec::new());
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }
}

async fn accept(listener: TcpListener, proxy: Arc<Proxy>, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((client, _)) => {
                proxy.counters.connections.fetch_add(1, Ordering::Relaxed);
                let proxy = proxy.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    proxy.counters.open.fetch_add(1, Ordering::Relaxed);
                    connection(client, &proxy, shutdown).await;
                    proxy.counters.open.fetch_sub(1, Ordering::Relaxed);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(proxy = %proxy.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// What the faults mean for one connection, one direction, now.
#[derive(Debug, Default, PartialEq)]
struct Effect {
    delay: Duration,
    jitter: Duration,
    bytes_per_second: Option<u64>,
    blackhole: bool,
}

fn effect(faults: &[Fault], direction: Direction, draw: f64) -> Effect {
    let mut e = Effect::default();
    for f in faults
        .iter()
        .filter(|f| f.direction().includes(direction) && f.touches(draw))
    {
        match f.toxic() {
            Toxic::Latency {
                latency_ms,
                jitter_ms,
            } => {
                e.delay += Duration::from_millis(*latency_ms);
                e.jitter += Duration::from_millis(*jitter_ms);
            }
            Toxic::Bandwidth { bytes_per_second } => {
                e.bytes_per_second = Some(
                    e.bytes_per_second
                        .map_or(*bytes_per_second, |b| b.min(*bytes_per_second)),
                );
            }
            Toxic::Blackhole => e.blackhole = true,
            Toxic::Reset => {}
        }
    }
    e
}

fn resets(faults: &[Fault], draw: f64) -> bool {
    faults
        .iter()
        .any(|f| matches!(f.toxic(), Toxic::Reset) && f.touches(draw))
}

/// Closes with RST instead of FIN: the peer sees "connection reset", as when a host or a
/// middlebox drops the connection's state.
fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

async fn connection(mut client: TcpStream, proxy: &Proxy, shutdown: CancellationToken) {
    // Drawn once: a connection is touched by a fault of toxicity t or not, for as long as it
    // lives, as in Toxiproxy.
    let draw: f64 = rand::random();
    let mut faults = proxy.faults.subscribe();
    if resets(&faults.borrow_and_update(), draw) {
        proxy.counters.resets.fetch_add(1, Ordering::Relaxed);
        reset(client);
        return;
    }
    let mut server =
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(proxy.upstream.as_str()))
            .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(proxy = %proxy.name, error = %e, "upstream refused");
                reset(client);
                return;
            }
            Err(_) => {
                reset(client);
                return;
            }
        };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let outcome = {
        let (cr, cw) = client.split();
        let (sr, sw) = server.split();
        let up = pipe(
            cr,
            sw,
            Direction::Upstream,
            proxy.faults.subscribe(),
            draw,
            &proxy.counters.bytes_upstream,
        );
        let down = pipe(
            sr,
            cw,
            Direction::Downstream,
            proxy.faults.subscribe(),
            draw,
            &proxy.counters.bytes_downstream,
        );
        tokio::select! {
            _ = async { tokio::join!(up, down) } => Outcome::Closed,
            () = reset_requested(&mut faults, draw) => Outcome::Reset,
            () = shutdown.cancelled() => Outcome::Closed,
        }
    };
    if outcome == Outcome::Reset {
        proxy.counters.resets.fetch_add(1, Ordering::Relaxed);
        reset(client);
        reset(server);
    }
}

#[derive(PartialEq)]
enum Outcome {
    Closed,
    Reset,
}

async fn reset_requested(faults: &mut watch::Receiver<Faults>, draw: f64) {
    loop {
        if faults.changed().await.is_err() {
            // The proxy is gone: nothing will ever ask for a reset.
            return std::future::pending().await;
        }
        if resets(&faults.borrow_and_update(), draw) {
            return;
        }
    }
}

/// One direction: a reader stamps each chunk with when it may leave (latency), a writer sends
/// it then (bandwidth paces the writing), so chunks in flight overlap. EOF is passed on as a
/// half-close.
async fn pipe<R, W>(
    mut from: R,
    mut to: W,
    direction: Direction,
    faults: watch::Receiver<Faults>,
    draw: f64,
    bytes: &AtomicU64,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let read = async {
        // Owned here, so the writer sees the end once reading ends.
        let tx = tx;
        let mut last_due = Instant::now();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let e = effect(&faults.borrow(), direction, draw);
            if e.blackhole {
                continue;
            }
            let jitter = if e.jitter.is_zero() {
                Duration::ZERO
            } else {
                e.jitter.mul_f64(rand::random::<f64>() * 2.0)
            };
            // delay ± jitter, never below zero, never overtaking the chunk before.
            let due = (Instant::now() + e.delay + jitter)
                .checked_sub(e.jitter)
                .unwrap_or_else(Instant::now)
                .max(last_due);
            last_due = due;
            if tx.send((due, buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
    };
    let write = async {
        while let Some((due, chunk)) = rx.recv().await {
            // Only when held: a timer, even one already due, waits for the timer wheel's next
            // millisecond, which would add a millisecond to every chunk of a link without faults.
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
            let paced = effect(&faults.borrow(), direction, draw).bytes_per_second;
            let sent = match paced {
                None => to.write_all(&chunk).await,
                Some(rate) => write_paced(&mut to, &chunk, rate).await,
            };
            if sent.is_err() {
                // The reader must not wait on a channel nobody drains.
                rx.close();
                return;
            }
            bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

/// Writes in slices of a tenth of a second's allowance, each followed by its share of time,
/// so a large chunk does not leave as a burst.
async fn write_paced<W: AsyncWrite + Unpin>(
    to: &mut W,
    chunk: &[u8],
    bytes_per_second: u64,
) -> std::io::Result<()> {
    let slice = usize::try_from((bytes_per_second / 10).max(1)).unwrap_or(usize::MAX);
    for part in chunk.chunks(slice) {
        let started = Instant::now();
        to.write_all(part).await?;
        let takes = Duration::from_secs_f64(part.len() as f64 / bytes_per_second as f64);
        tokio::time::sleep_until(started + takes).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(toxic: Toxic, direction: Direction, toxicity: f64) -> Fault {
        Fault::new(toxic, direction, toxicity).expect("valid")
    }

    #[test]
    fn toxics_stack_per_direction_and_share_of_connections() {
        let faults = vec![
            fault(
                Toxic::Latency {
                    latency_ms: 100,
                    jitter_ms: 10,
                },
                Direction::Both,
                1.0,
            ),
            fault(
                Toxic::Latency {
                    latency_ms: 50,
                    jitter_ms: 0,
                },
                Direction::Upstream,
                1.0,
            ),
            fault(
                Toxic::Bandwidth {
                    bytes_per_second: 1000,
                },
                Direction::Downstream,
                1.0,
            ),
            fault(
                Toxic::Bandwidth {
                    bytes_per_second: 500,
                },
                Direction::Downstream,
                0.5,
            ),
        ];
        let up = effect(&faults, Direction::Upstream, 0.9);
        assert_eq!(up.delay, Duration::from_millis(150));
        assert_eq!(up.jitter, Duration::from_millis(10));
        assert_eq!(up.bytes_per_second, None);
        // A connection that drew 0.9 is outside the half the 500 B/s toxic touches.
        assert_eq!(
            effect(&faults, Direction::Downstream, 0.9).bytes_per_second,
            Some(1000)
        );
        // One that drew 0.1 is inside it: the lower bandwidth holds.
        assert_eq!(
            effect(&faults, Direction::Downstream, 0.1).bytes_per_second,
            Some(500)
        );
        assert!(!resets(&faults, 0.0));
        let reset = [fault(Toxic::Reset, Direction::Both, 0.5)];
        assert!(resets(&reset, 0.2) && !resets(&reset, 0.7));
    }

    /// Paused time, in-memory streams: 64 chunks under 200 ms of latency arrive after about
    /// 200 ms, not 64 × 200: the chunks in flight overlap, so latency does not cap throughput.
    #[tokio::test(start_paused = true)]
    async fn latency_overlaps_the_chunks_in_flight() {
        let (mut client, from_client) = tokio::io::duplex(CHUNK);
        let (to_server, mut server) = tokio::io::duplex(CHUNK);
        let latency = fault(
            Toxic::Latency {
                latency_ms: 200,
                jitter_ms: 0,
            },
            Direction::Both,
            1.0,
        );
        let (_faults, rx) = watch::channel(Faults::from(vec![latency]));
        let bytes = AtomicU64::new(0);
        let started = Instant::now();
        let feed = async move {
            for _ in 0..64 {
                client.write_all(&[1u8; CHUNK]).await.expect("fed");
            }
        };
        let drain = async {
            let mut all = Vec::new();
            server.read_to_end(&mut all).await.expect("drained");
            all.len()
        };
        let ((), (), n) = tokio::join!(
            pipe(from_client, to_server, Direction::Upstream, rx, 0.0, &bytes),
            feed,
            drain
        );
        assert_eq!(n, 64 * CHUNK);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_millis(400),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bandwidth_paces_in_slices() {
        let (mut sink_in, mut sink_out) = tokio::io::duplex(1 << 20);
        let started = Instant::now();
        let payload = vec![0u8; 50_000];
        let write = write_paced(&mut sink_in, &payload, 10_000);
        let mut got = vec![0u8; 50_000];
        let (w, r) = tokio::join!(write, sink_out.read_exact(&mut got));
        w.expect("written");
        r.expect("read");
        // 50 kB at 10 kB/s, in 1 kB slices: five seconds of virtual time.
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(5) && took < Duration::from_millis(5_010),
            "{took:?}"
        );
    }
}
