//! The three logctl services, run from the binaries built beside `logctl` itself and
//! configured through their `LOGCTL_<SERVICE>_*` environment variables.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use super::layout::{Layout, StackConfig, JWT_SECRET};
use super::postgres;
use super::process;
use super::{Component, StackError};

/// Finds a service binary next to the running `logctl` (or in `LOGCTL_BIN_DIR`).
pub fn binary(name: &str) -> Result<PathBuf, StackError> {
    let dir = match std::env::var_os("LOGCTL_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(PathBuf::from))
            .unwrap_or_default(),
    };
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(StackError::Missing {
            what: format!("{name} (looked in {})", dir.display()),
            hint:
                "build all binaries with `cargo build --release --workspace`, or set LOGCTL_BIN_DIR"
                    .into(),
        })
    }
}

/// Where producer instance `component` keeps its spool: its own folder under the state dir
/// (`producer/spool`, `producer-2/spool`, ...), so each instance replays only its own.
pub fn spool_dir(component: Component, state_dir: &std::path::Path) -> std::path::PathBuf {
    state_dir.join(component.name()).join("spool")
}

pub fn binary_name(component: Component) -> &'static str {
    match component {
        Component::Gateway(_) => "logctl-gateway",
        Component::Producer(_) => "logctl-producer",
        _ => "logctl-consumer",
    }
}

/// What a service of this stack shows as its command name (`argv[0]`): the binary and the
/// stack's state dir. Recognising our processes by it, not by the binary name alone, keeps a
/// stale pid file of one stack from ever matching another stack's service once pids wrap
/// around (a test run spawns tens of thousands of processes; `pid_max` is often 32768).
pub fn marker(component: Component, layout: &Layout) -> String {
    format!(
        "{} --stack {}",
        binary_name(component),
        layout.root.display()
    )
}

/// The environment `logctl up` gives a service: its `LOGCTL_<SERVICE>_*` settings for this
/// stack. docker-compose.yml sets the same names (a test checks it).
pub fn env(
    component: Component,
    config: &StackConfig,
    state_dir: &std::path::Path,
    db_password: &str,
    jwt_secret: &str,
) -> Result<Vec<(&'static str, String)>, StackError> {
    // Each listens on its own address (its host's, or loopback); dependencies are reached at
    // theirs, through their links when the stack has the fault proxy.
    let listen = component.listen(config).to_string();
    let redis = format!("redis://{}", Component::Redis.addr(config));
    Ok(match component {
        Component::Gateway(_) => vec![
            ("LOGCTL_GATEWAY_LISTEN", listen),
            ("LOGCTL_GATEWAY_WORKER_THREADS", worker_threads()),
            (
                "LOGCTL_GATEWAY_PRODUCER_URL",
                (0..config.producers.max(1))
                    .map(|i| format!("http://{}", Component::Producer(i).addr(config)))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (
                "LOGCTL_GATEWAY_QUERY_URL",
                format!("http://{}", Component::Consumer(0).addr(config)),
            ),
            ("LOGCTL_GATEWAY_AUTH__HS256_SECRET", jwt_secret.to_owned()),
            ("LOGCTL_GATEWAY_REDIS__URL", redis),
        ],
        Component::Producer(_) => vec![
            ("LOGCTL_PRODUCER_LISTEN", listen),
            ("LOGCTL_PRODUCER_WORKER_THREADS", worker_threads()),
            (
                "LOGCTL_PRODUCER_KAFKA__BOOTSTRAP_SERVERS",
                config.bootstrap_servers(),
            ),
            (
                "LOGCTL_PRODUCER_SPOOL__DIR",
                spool_dir(component, state_dir).display().to_string(),
            ),
        ],
        Component::Consumer(_) => vec![
            ("LOGCTL_CONSUMER_LISTEN", listen),
            ("LOGCTL_CONSUMER_WORKER_THREADS", worker_threads()),
            (
                "LOGCTL_CONSUMER_KAFKA__BOOTSTRAP_SERVERS",
                config.bootstrap_servers(),
            ),
            (
                "LOGCTL_CONSUMER_DATABASE_URL",
                postgres::database_url(Component::Postgres.addr(config), db_password),
            ),
            // `logctl up` migrates before any consumer starts (prepare_kafka_and_database):
            // the one place the local stack's schema is applied.
            ("LOGCTL_CONSUMER_MIGRATE_ON_START", "false".to_owned()),
            ("LOGCTL_CONSUMER_REDIS__URL", redis),
            (
                "LOGCTL_CONSUMER_STORAGE__PARTITION_INTERVAL_SECS",
                config.storage.postgres.partition_interval_secs.to_string(),
            ),
            (
                "LOGCTL_CONSUMER_STORAGE__RETENTION_SECS",
                config.storage.postgres.retention_secs.to_string(),
            ),
            (
                "LOGCTL_CONSUMER_STORAGE__PARTITIONS_AHEAD",
                config.storage.postgres.partitions_ahead.to_string(),
            ),
        ],
        other => {
            return Err(StackError::Other(format!(
                "{} is not a logctl service",
                other.name()
            )))
        }
    })
}

/// Each service's runtime workers: `LOGCTL_WORKER_THREADS` when set, else 0 (one per core).
/// Fewer cost less CPU per event on a shared machine but hold less load (see
/// `logctl_core::runtime`), and the knee is what the stack is judged by.
fn worker_threads() -> String {
    std::env::var("LOGCTL_WORKER_THREADS").unwrap_or_else(|_| "0".to_owned())
}

/// Starts one service process configured for this stack.
pub fn start(
    component: Component,
    layout: &Layout,
    config: &StackConfig,
    db_password: &str,
) -> Result<u32, StackError> {
    let mut cmd = Command::new(binary(binary_name(component))?);
    cmd.arg0(marker(component, layout));
    let jwt_secret = layout.secret(JWT_SECRET)?;
    cmd.env_remove("LOGCTL_CONFIG").envs(env(
        component,
        config,
        &layout.root,
        db_password,
        &jwt_secret,
    )?);
    let name = component.name();
    process::spawn(cmd, &layout.log_file(&name), &layout.pid_file(&name))
}
