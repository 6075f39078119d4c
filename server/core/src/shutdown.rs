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
