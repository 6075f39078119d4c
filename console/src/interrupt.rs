//! Ctrl-C or SIGTERM, for commands that must finish rather than die half-way: drills break the
//! stack and `logctl bench` restarts its services and makes a cluster beside it, so both put
//! it back before they exit; `logctl load` stops sending and still reports what it measured.

/// Resolves at the first SIGINT or SIGTERM. Without a SIGTERM handler (it cannot be installed)
/// only Ctrl-C counts.
pub async fn requested() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    /// A SIGTERM to the process resolves it (and, with the handler installed, does not end the
    /// test binary).
    #[tokio::test]
    async fn sigterm_is_a_request_to_stop() {
        let waiting = tokio::spawn(super::requested());
        // Let the handler install before the signal is sent.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!waiting.is_finished());
        let pid = std::process::id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("resolved after SIGTERM")
            .expect("task");
    }
}
