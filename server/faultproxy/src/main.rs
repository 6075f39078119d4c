use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use logctl_faultproxy::{control, Proxy, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    logctl_core::telemetry::init_tracing("faultproxy");
    let config = std::env::var_os("LOGCTL_CONFIG").map(std::path::PathBuf::from);
    let settings = Settings::load(config.as_deref())?;
    let shutdown = logctl_core::shutdown::on_signal();
    let mut links = BTreeMap::new();
    for link in &settings.proxies {
        let proxy = Proxy::start(
            &link.name,
            link.listen,
            link.upstream.clone(),
            shutdown.clone(),
        )
        .await
        .with_context(|| format!("cannot listen on {} for {}", link.listen, link.name))?;
        tracing::info!(name = %link.name, listen = %proxy.listen_addr(), upstream = %link.upstream, "proxying");
        links.insert(link.name.clone(), proxy);
    }
    let listener = tokio::net::TcpListener::bind(settings.control)
        .await
        .with_context(|| format!("cannot listen on {}", settings.control))?;
    tracing::info!(control = %settings.control, "fault proxy ready");
    logctl_core::shutdown::serve(
        listener,
        control::router(Arc::new(links)),
        shutdown,
        Duration::from_secs(2),
    )
    .await?;
    Ok(())
}
