//! What the fault proxy costs with no fault set: request/response round trips of 400 bytes at
//! a constant rate (open loop: latency from each request's planned send time), straight to an
//! echo server and then through a `logctl-faultproxy` process, in the same run; the proxy's own
//! CPU from /proc. Build the binary first, then run:
//!
//! ```sh
//! cargo build --release -p logctl-faultproxy --bins --examples
//! ~/.cache/logctl/target/release/examples/cost [rate] [seconds]
//! ```

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONNECTIONS: usize = 64;
const MESSAGE: usize = 400;

/// Microseconds from each request's planned send time to its echo, over `secs` at `rate`.
async fn run(target: SocketAddr, rate: f64, secs: f64) -> anyhow::Result<Vec<u64>> {
    let per_connection = Duration::from_secs_f64(CONNECTIONS as f64 / rate);
    let count = (rate * secs / CONNECTIONS as f64) as u64;
    let start = Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let mut s = TcpStream::connect(target).await?;
        s.set_nodelay(true)?;
        // Connections start spread over one period, so the rate is even.
        let offset = per_connection.mul_f64(c as f64 / CONNECTIONS as f64);
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(count as usize);
            let mut buf = [0u8; MESSAGE];
            let msg = [b'x'; MESSAGE];
            for k in 0..count {
                let planned = start + offset + per_connection.mul_f64(k as f64);
                tokio::time::sleep_until(planned.into()).await;
                if s.write_all(&msg).await.is_err() || s.read_exact(&mut buf).await.is_err() {
                    break;
                }
                out.push(planned.elapsed().as_micros() as u64);
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    all.sort_unstable();
    Ok(all)
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rate: f64 = args.get(1).map_or(Ok(10_000.0), |s| s.parse())?;
    let secs: f64 = args.get(2).map_or(Ok(10.0), |s| s.parse())?;
    let upstream = logctl_faultproxy::echo::serve().await?;

    // Two free ports, held together so they differ, then let go for the proxy to take.
    let held = [
        std::net::TcpListener::bind("127.0.0.1:0")?,
        std::net::TcpListener::bind("127.0.0.1:0")?,
    ];
    let (control, link) = (held[0].local_addr()?, held[1].local_addr()?);
    drop(held);
    let dir = std::env::temp_dir().join(format!("faultproxy-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("faultproxy.toml");
    std::fs::write(
        &config,
        format!(
            "control = \"{control}\"\n[[proxies]]\nname = \"echo\"\nlisten = \"{link}\"\nupstream = \"{upstream}\"\n"
        ),
    )?;
    let exe = std::env::current_exe()?;
    let binary = exe
        .parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("logctl-faultproxy"))
        .ok_or_else(|| anyhow::anyhow!("cannot find logctl-faultproxy beside {}", exe.display()))?;
    let proxy = Running(
        Command::new(&binary)
            .env("LOGCTL_CONFIG", &config)
            .env("RUST_LOG", "warn")
            .spawn()?,
    );
    let ready = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(link).await.is_err() {
        anyhow::ensure!(Instant::now() < ready, "the proxy did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let direct = run(upstream, rate, secs).await?;
    let cpu = |pid| logctl_core::procfs::stat(pid).map_or(0.0, |s| s.cpu_seconds);
    let (before, started) = (cpu(proxy.0.id()), Instant::now());
    let proxied = run(link, rate, secs).await?;
    let cores = (cpu(proxy.0.id()) - before) / started.elapsed().as_secs_f64();
    drop(proxy);
    let _ = std::fs::remove_dir_all(&dir);

    println!("| {rate:.0} round trips/s of {MESSAGE} B, {CONNECTIONS} connections, {secs:.0} s | p50 ms | p99 ms | p99.9 ms | answered |");
    println!("|---|---|---|---|---|");
    for (name, v) in [
        ("straight to the echo server (baseline)", &direct),
        ("through logctl-faultproxy, no fault", &proxied),
    ] {
        println!(
            "| {name} | {:.3} | {:.3} | {:.3} | {} |",
            pct(v, 0.5),
            pct(v, 0.99),
            pct(v, 0.999),
            v.len()
        );
    }
    println!(
        "| added by the proxy | {:.3} | {:.3} | {:.3} | |",
        pct(&proxied, 0.5) - pct(&direct, 0.5),
        pct(&proxied, 0.99) - pct(&direct, 0.99),
        pct(&proxied, 0.999) - pct(&direct, 0.999)
    );
    println!(
        "\nthe proxy's CPU: {cores:.3} cores at {rate:.0} round trips/s ({:.1} µs per round trip)",
        cores * 1e6 / rate
    );
    Ok(())
}
