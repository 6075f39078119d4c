use anyhow::Context;
use logctl_gateway::{run, Settings};

fn main() -> anyhow::Result<()> {
    logctl_core::telemetry::init_tracing("gateway");
    let config = std::env::var_os("LOGCTL_CONFIG").map(std::path::PathBuf::from);
    let settings = Settings::load(config.as_deref())?;
    logctl_core::runtime::block_on(settings.worker_threads, async move {
        let listener = logctl_core::shutdown::listen(settings.listen)
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        run(settings, listener, logctl_core::shutdown::on_signal()).await
    })?
}
