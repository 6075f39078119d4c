//! One shutdown signal per process: Ctrl-C or SIGTERM cancels a token that the HTTP server,
//! the Kafka loops and every worker hold a clone of, so each drains and is awaited.

use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Largest read buffer of one connection, and so the largest request head accepted.
pub const MAX_READ_BUFFER: usize = 16 * 1024;

/// Pending connections a listener holds before the kernel drops new ones (capped by
/// `net.core.somaxconn`, 4096 on current kernels). Tokio's `bind` asks for std's 128: a load
/// generator opening its connections for a step at once overflowed that queue (399 dropped
/// handshakes in the first half of one `logctl bench`), and each dropped one cost its client
/// the kernel's 1 s retransmit.
const LISTEN_BACKLOG: u32 = 4096;

/// Listens on `addr` with a backlog for bursts of new connections.
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As `TcpListener::bind`: a restarted service takes its port back past TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A token cancelled on the first SIGINT or SIGTERM.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received; draining");
        cancel.cancel();
    });
    token
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Serves `app` until `shutdown`, then stops accepting and lets in-flight requests finish, but
/// for at most `deadline`: a stuck client cannot hold a stopping service hostage.
///
/// A plain hyper accept loop rather than `axum::serve`, which rebuilds the router's route table
/// for every connection (`Router::with_state`): about 20 KiB a connection, kept for its
/// lifetime. With a thousand clients' keep-alive connections that was a third of the gateway's
/// heap (measured with heaptrack at 10,000 events/s). Here the table is built once and each
/// connection shares it.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    shutdown: CancellationToken,
    deadline: Duration,
) -> std::io::Result<()> {
    let app = app.with_state(());
    let mut http = hyper::server::conn::http1::Builder::new();
    // hyper grows a connection's read buffer to fit large bodies (up to ~400 KiB) and keeps it
    // while the connection lives: with hundreds of clients posting batches that was tens of
    // MiB. Bodies stream through a bounded buffer instead; request heads still fit easily.
    http.max_buf_size(MAX_READ_BUFFER);
    let connections = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Answers are written whole; waiting for more to coalesce only adds latency.
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = connections.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = connections.shutdown() => Ok(()),
        _ = tokio::time::sleep(deadline) => {
            tracing::warn!(?deadline, "requests still in flight at the shutdown deadline; leaving them");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    /// Connections the service has not accepted yet still complete their handshake: a burst
    /// past std's backlog of 128 waits in the queue instead of having its SYNs dropped (and
    /// each client waiting out the kernel's 1 s retransmit).
    #[tokio::test]
    async fn a_burst_of_connections_waits_in_the_queue() {
        let listener = super::listen("127.0.0.1:0".parse().expect("addr")).expect("listen");
        let addr = listener.local_addr().expect("addr");
        let connects: Vec<_> = (0..400)
            .map(|_| {
                tokio::spawn(tokio::time::timeout(
                    Duration::from_millis(900),
                    tokio::net::TcpStream::connect(addr),
                ))
            })
            .collect();
        let mut done = 0;
        for c in connects {
            if matches!(c.await.expect("joined"), Ok(Ok(_))) {
                done += 1;
            }
        }
        assert_eq!(
            done, 400,
            "handshakes completed before the service accepted any"
        );
        drop(listener);
    }
}
