//! One shutdown signal per process: Ctrl-C or SIGTERM cancels a token that the HTTP server,
//! the Kafka loops and every worker hold a clone of, so each drains and is awaited.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    shutdown: CancellationToken,
    deadline: Duration,
) -> std::io::Result<()> {
    let server =
        axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let expired = async {
        shutdown.cancelled().await;
        tokio::time::sleep(deadline).await;
    };
    tokio::select! {
        served = server => served,
        _ = expired => {
            tracing::warn!(?deadline, "requests still in flight at the shutdown deadline; leaving them");
            Ok(())
        }
    }
}
