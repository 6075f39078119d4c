use anyhow::Context;
use logctl_consumer::{run, Settings};

fn main() -> anyhow::Result<()> {
    // What can be configured (LOGCTL_CONSUMER_* or a LOGCTL_CONFIG file), with its defaults.
    if std::env::args().nth(1).as_deref() == Some("--print-defaults") {
        println!("{}", serde_json::to_string_pretty(&Settings::default())?);
        return Ok(());
    }
    logctl_core::telemetry::init_tracing("consumer");
    let config = std::env::var_os("LOGCTL_CONFIG").map(std::path::PathBuf::from);
    let settings = Settings::load(config.as_deref())?;
    logctl_core::runtime::block_on(settings.worker_threads, async move {
        let listener = logctl_core::shutdown::listen(settings.listen)
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        run(settings, listener, logctl_core::shutdown::on_signal()).await
    })?
}
