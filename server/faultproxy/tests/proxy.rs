//! The proxy between a real client and a real TCP server on random loopback ports: bytes pass
//! unchanged, and each toxic does what it says to them. Delays are checked as lower bounds
//! (a slow machine only makes them longer), never as upper ones.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use logctl_faultproxy::{Direction, Fault, Proxy, Toxic};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

async fn proxy() -> (std::sync::Arc<Proxy>, CancellationToken) {
    let shutdown = CancellationToken::new();
    let upstream = logctl_faultproxy::echo::serve().await.expect("echo server");
    let local: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let p = Proxy::start("echo", local, upstream.to_string(), shutdown.clone())
        .await
        .expect("proxy starts");
    (p, shutdown)
}

/// Sends `payload` and reads as many bytes back.
async fn round_trip(addr: SocketAddr, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await?;
    let (mut r, mut w) = s.split();
    let send = async {
        w.write_all(payload).await?;
        w.shutdown().await
    };
    let mut back = Vec::new();
    let recv = r.read_to_end(&mut back);
    let (sent, got) = tokio::join!(send, recv);
    sent?;
    got?;
    Ok(back)
}

fn everywhere(t: Toxic) -> Fault {
    Fault::everywhere(t).expect("valid")
}

#[tokio::test]
async fn an_upstream_given_by_name_is_resolved_on_connect() {
    // As docker compose names its services: `postgres:5432`.
    let shutdown = CancellationToken::new();
    let upstream = logctl_faultproxy::echo::serve().await.expect("echo server");
    let local: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let by_name = format!("localhost:{}", upstream.port());
    let p = Proxy::start("named", local, by_name, shutdown.clone())
        .await
        .expect("proxy starts");
    let back = round_trip(p.listen_addr(), b"by name")
        .await
        .expect("round trip");
    assert_eq!(back, b"by name");
    shutdown.cancel();
}

#[tokio::test]
async fn bytes_cross_unchanged_without_faults() {
    let (p, _guard) = proxy().await;
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let back = round_trip(p.listen_addr(), &payload).await.expect("echo");
    assert_eq!(back, payload);
    assert_eq!(
        p.counters()
            .bytes_upstream
            .load(std::sync::atomic::Ordering::Relaxed),
        1_000_000
    );
}

#[tokio::test]
async fn latency_holds_each_way() {
    let (p, _guard) = proxy().await;
    p.add(everywhere(Toxic::Latency {
        latency_ms: 200,
        jitter_ms: 0,
    }));
    let started = Instant::now();
    let back = round_trip(p.listen_addr(), b"ping").await.expect("echo");
    assert_eq!(back, b"ping");
    // 200 ms out and 200 ms back.
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn bandwidth_paces_the_bytes() {
    let (p, _guard) = proxy().await;
    p.add(
        Fault::new(
            Toxic::Bandwidth {
                bytes_per_second: 100_000,
            },
            Direction::Upstream,
            1.0,
        )
        .expect("valid"),
    );
    let started = Instant::now();
    let back = round_trip(p.listen_addr(), &vec![1u8; 200_000])
        .await
        .expect("echo");
    assert_eq!(back.len(), 200_000);
    // 200 kB at 100 kB/s: two seconds at least.
    assert!(started.elapsed() >= Duration::from_millis(1900));
}

#[tokio::test]
async fn a_black_hole_accepts_and_never_answers() {
    let (p, _guard) = proxy().await;
    p.add(everywhere(Toxic::Blackhole));
    let mut s = TcpStream::connect(p.listen_addr()).await.expect("accepted");
    s.write_all(b"PING\r\n").await.expect("written");
    let mut buf = [0u8; 16];
    let answer = tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await;
    assert!(answer.is_err(), "the black hole answered: {answer:?}");
    // Cleared, a new connection works again.
    p.clear();
    assert_eq!(
        round_trip(p.listen_addr(), b"ok").await.expect("echo"),
        b"ok"
    );
}

#[tokio::test]
async fn a_reset_reaches_open_connections_and_new_ones() {
    let (p, _guard) = proxy().await;
    let mut open = TcpStream::connect(p.listen_addr()).await.expect("connects");
    open.write_all(b"a").await.expect("written");
    let mut one = [0u8; 1];
    open.read_exact(&mut one).await.expect("echoed");
    p.add(everywhere(Toxic::Reset));
    let mut buf = [0u8; 8];
    let read = tokio::time::timeout(Duration::from_secs(5), open.read(&mut buf))
        .await
        .expect("the reset arrives");
    assert_eq!(
        read.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset)
    );
    let fresh = round_trip(p.listen_addr(), b"x").await;
    assert!(fresh.as_ref().map_or(true, |b| b.is_empty()), "{fresh:?}");
    p.clear();
    assert_eq!(round_trip(p.listen_addr(), b"x").await.expect("echo"), b"x");
}

#[tokio::test]
async fn toxicity_touches_a_share_of_connections() {
    let (p, _guard) = proxy().await;
    p.add(Fault::new(Toxic::Reset, Direction::Both, 0.5).expect("valid"));
    let mut reset = 0;
    for _ in 0..200 {
        if round_trip(p.listen_addr(), b"x")
            .await
            .map_or(true, |b| b.is_empty())
        {
            reset += 1;
        }
    }
    // Binomial(200, 0.5): outside 60..140 with odds below one in a billion.
    assert!((60..=140).contains(&reset), "{reset} of 200 reset");
}
