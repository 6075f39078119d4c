//! The local stack that `logctl up` runs: Kafka, PostgreSQL, Redis and the three services as
//! processes under one state dir, loopback only.
//!
//! `up` starts only what is not running (so a second `up` is cheap and keeps the data), checks
//! every port and binary before starting anything, and returns once each component answers
//! its readiness check. `down` stops everything in reverse order, each with SIGTERM first.

pub mod balancer;
pub mod cluster;
pub mod disk;
pub mod faultproxy;
pub mod hosts;
pub mod kafka;
pub mod layout;
pub mod postgres;
pub mod process;
pub mod prometheus;
pub mod redis;
pub mod services;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use layout::{Layout, Ports, StackConfig};
use logctl_contracts::schema::partitions::{self, Policy};

use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid stack config: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("cannot start {program}: {reason}")]
    Spawn { program: String, reason: String },
    #[error("{what} failed:\n{output}")]
    Command { what: String, output: String },
    #[error("{what} not found: {hint}")]
    Missing { what: String, hint: String },
    #[error(
        "port {port} for {component} is already in use by another process: stop it, or choose \
         another port with --{flag}"
    )]
    PortTaken {
        component: String,
        port: u16,
        flag: &'static str,
    },
    #[error("{component} did not become ready: {reason}\nlast lines of {log}:\n{tail}")]
    NotReady {
        component: String,
        reason: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{0}")]
    Other(String),
}

impl StackError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        StackError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// One process of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Postgres,
    Redis,
    /// Broker `i` of the Kafka cluster (one by default).
    Kafka(u16),
    /// Instance `i` of the producers the gateway publishes through.
    Producer(u16),
    /// Instance `i` of the consumer group.
    Consumer(u16),
    /// Instance `i` of the gateways.
    Gateway(u16),
    /// HAProxy on the public port, in front of several gateways.
    Balancer,
    Prometheus,
    /// The TCP fault proxy on the links to PostgreSQL, Redis, the brokers and the producers
    /// (`up --with-proxies`).
    FaultProxy,
}

impl Component {
    /// Every component of a stack, in start order (dependencies first).
    pub fn all(config: &StackConfig) -> Vec<Component> {
        let mut all = Vec::new();
        if config.proxies {
            all.push(Component::FaultProxy);
        }
        all.extend([Component::Postgres, Component::Redis]);
        all.extend((0..config.brokers.max(1)).map(Component::Kafka));
        all.extend((0..config.producers.max(1)).map(Component::Producer));
        all.extend((0..config.consumers.max(1)).map(Component::Consumer));
        all.extend((0..config.gateways.max(1)).map(Component::Gateway));
        if config.balanced() {
            all.push(Component::Balancer);
        }
        if config.prometheus {
            all.push(Component::Prometheus);
        }
        all
    }

    /// The names `parse` takes, besides `kafka-N`, `producer-N`, `consumer-N`, `gateway-N`
    /// (and `postgresql`), for messages and hints.
    pub const NAMES: [&'static str; 9] = [
        "kafka",
        "postgres",
        "redis",
        "producer",
        "consumer",
        "gateway",
        "haproxy",
        "prometheus",
        "faultproxy",
    ];

    /// The component a user names (`postgres`, `kafka`, `kafka-2`, `gateway-2`, ...). The first
    /// instance is named without a number (`kafka`, `consumer`), and `-1` names it too.
    pub fn parse(name: &str) -> Option<Component> {
        Some(match name {
            "postgres" | "postgresql" => Component::Postgres,
            "redis" => Component::Redis,
            "kafka" => Component::Kafka(0),
            "producer" => Component::Producer(0),
            "consumer" => Component::Consumer(0),
            "gateway" => Component::Gateway(0),
            "haproxy" => Component::Balancer,
            "prometheus" => Component::Prometheus,
            "faultproxy" => Component::FaultProxy,
            other => {
                let instance = |prefix: &str| -> Option<u16> {
                    let n: u16 = other.strip_prefix(prefix)?.parse().ok()?;
                    n.checked_sub(1)
                };
                if let Some(i) = instance("kafka-") {
                    Component::Kafka(i)
                } else if let Some(i) = instance("producer-") {
                    Component::Producer(i)
                } else if let Some(i) = instance("gateway-") {
                    Component::Gateway(i)
                } else {
                    Component::Consumer(instance("consumer-")?)
                }
            }
        })
    }

    pub fn name(self) -> String {
        match self {
            Component::Postgres => "postgres".into(),
            Component::Redis => "redis".into(),
            Component::Kafka(i) => kafka::name(i),
            Component::Producer(i) => logctl_contracts::instance::name("producer", i),
            Component::Consumer(i) => logctl_contracts::instance::name("consumer", i),
            Component::Gateway(i) => logctl_contracts::instance::name("gateway", i),
            Component::Balancer => "haproxy".into(),
            Component::Prometheus => "prometheus".into(),
            Component::FaultProxy => faultproxy::NAME.into(),
        }
    }

    /// Where it listens on a stack of this shape: a lone gateway on the public port, several
    /// on internal ones behind the balancer.
    pub fn port(self, config: &StackConfig) -> u16 {
        let p = &config.ports;
        match self {
            Component::Postgres => p.postgres,
            Component::Redis => p.redis,
            Component::Kafka(i) => p.broker(i),
            Component::Producer(i) => Ports::instance(p.producer, i),
            Component::Consumer(i) => Ports::instance(p.consumer, i),
            Component::Gateway(_) if !config.balanced() => p.gateway,
            Component::Gateway(i) => Ports::instance(p.gateway_backend, i),
            Component::Balancer => p.gateway,
            Component::Prometheus => p.prometheus,
            Component::FaultProxy => p.fault_proxy,
        }
    }

    /// Its place among the fault proxy's links: link `slot` listens on the proxy's control
    /// port + `slot`. Only what the services depend on has a link.
    pub fn link_slot(self) -> Option<u16> {
        match self {
            Component::Postgres => Some(1),
            Component::Redis => Some(2),
            Component::Kafka(i) => Some(3 + i.min(layout::MAX_BROKERS - 1)),
            Component::Producer(i) => Some(3 + layout::MAX_BROKERS + i),
            _ => None,
        }
    }

    /// Its address on a stack on hosts (`up --hosts`): the last octet of its host's. The edge
    /// (HAProxy, Prometheus, the fault proxy) stays on the machine.
    pub fn host_slot(self) -> Option<u8> {
        let nth = |first: u16, i: u16, most: u16| (i < most).then(|| (first + i) as u8);
        match self {
            Component::Postgres => Some(2),
            Component::Redis => Some(3),
            Component::Kafka(i) => nth(10, i, layout::MAX_BROKERS),
            Component::Producer(i) => nth(20, i, MAX_INSTANCES),
            Component::Consumer(i) => nth(100, i, MAX_INSTANCES),
            Component::Gateway(i) => nth(170, i, MAX_INSTANCES),
            _ => None,
        }
    }

    /// The address it listens on and is reached at: its host's, or the machine's loopback.
    pub fn ip(self, config: &StackConfig) -> std::net::Ipv4Addr {
        config
            .net()
            .and_then(|net| net.ip(self))
            .unwrap_or(std::net::Ipv4Addr::LOCALHOST)
    }

    /// Where the other components reach it: its address and [`Component::reach`]'s port.
    pub fn addr(self, config: &StackConfig) -> std::net::SocketAddr {
        match self.link_slot() {
            // Its link, on the machine: on loopback, or on the hosts' uplink.
            Some(_) if config.proxies => std::net::SocketAddr::from((
                config
                    .net()
                    .map_or(std::net::Ipv4Addr::LOCALHOST, |net| net.edge()),
                self.reach(config),
            )),
            _ => std::net::SocketAddr::from((self.ip(config), self.reach(config))),
        }
    }

    /// Where it listens: its address and its own port.
    pub fn listen(self, config: &StackConfig) -> std::net::SocketAddr {
        std::net::SocketAddr::from((self.ip(config), self.port(config)))
    }

    /// The port the other components reach it on: its link's, when the stack has the fault
    /// proxy, else its own.
    pub fn reach(self, config: &StackConfig) -> u16 {
        match self.link_slot() {
            Some(slot) if config.proxies => config.ports.fault_proxy + slot,
            _ => self.port(config),
        }
    }

    /// The `logctl up` flag that moves this component's port.
    fn port_flag(self) -> &'static str {
        match self {
            Component::Postgres => "postgres-port",
            Component::Redis => "redis-port",
            Component::Kafka(_) => "kafka-port",
            Component::Producer(_) => "producer-port",
            Component::Consumer(_) => "consumer-port",
            Component::Gateway(_) | Component::Balancer => "gateway-port",
            Component::Prometheus => "prometheus-port",
            Component::FaultProxy => "fault-proxy-port",
        }
    }

    /// What the process's command line must contain for a pid to count as this component.
    fn marker(self, layout: &Layout) -> String {
        match self {
            Component::Postgres => postgres::Postgres::marker(layout),
            Component::Redis => redis::MARKER.into(),
            Component::Kafka(i) => kafka::Kafka::marker(layout, i),
            Component::Prometheus => prometheus::MARKER.into(),
            Component::Balancer => balancer::marker(layout),
            Component::FaultProxy => faultproxy::marker(layout),
            service => services::marker(service, layout),
        }
    }

    pub fn is_service(self) -> bool {
        matches!(
            self,
            Component::Producer(_) | Component::Consumer(_) | Component::Gateway(_)
        )
    }

    /// Where readiness is asked over HTTP, if it is (the rest are ready when their port opens).
    fn ready_path(self) -> Option<&'static str> {
        match self {
            c if c.is_service() || c == Component::FaultProxy => Some("/health/ready"),
            Component::Balancer => Some(balancer::READY_PATH),
            Component::Prometheus => Some("/-/ready"),
            _ => None,
        }
    }
}

/// What `status` reports for one component.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentStatus {
    pub name: String,
    /// `up` (process alive and its port accepts connections), `starting` (alive, port not yet
    /// open), `paused` (stopped by SIGSTOP), `isolated` (alive on a host cut off by `fault
    /// isolate`) or `down`.
    pub status: &'static str,
    pub pid: Option<u32>,
    /// Resident memory of its main process (PostgreSQL's backends not included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_mib: Option<f64>,
    pub port: u16,
    /// Where it listens: loopback, or its host's address (`up --hosts`).
    pub address: std::net::SocketAddr,
    pub log: PathBuf,
}

impl ComponentStatus {
    pub fn is_up(&self) -> bool {
        self.status == "up"
    }
}

/// The pid of a running component, if it is running.
pub fn running_pid(c: Component, layout: &Layout) -> Option<u32> {
    process::read_pid(&layout.pid_file(&c.name()))
        .filter(|pid| process::is_ours(*pid, &c.marker(layout)))
}

fn port_open(addr: std::net::SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

pub fn status(layout: &Layout, config: &StackConfig) -> Vec<ComponentStatus> {
    Component::all(config)
        .into_iter()
        .map(|c| {
            let pid = running_pid(c, layout);
            let port = c.port(config);
            let status = match pid {
                None => "down",
                Some(pid) if process::is_stopped(pid) => "paused",
                Some(_) if port_open(c.listen(config)) => "up",
                Some(_) if config.net().is_some_and(|net| hosts::is_isolated(net, c)) => "isolated",
                Some(_) => "starting",
            };
            ComponentStatus {
                name: c.name(),
                status,
                pid,
                rss_mib: pid.and_then(process::rss_mib),
                port,
                address: c.listen(config),
                log: layout.log_file(&c.name()),
            }
        })
        .collect()
}

/// What `up` did for one component.
#[derive(Debug, Clone, Serialize)]
pub struct UpOutcome {
    pub name: String,
    pub action: &'static str,
    pub pid: u32,
    pub port: u16,
    pub address: std::net::SocketAddr,
}

/// Starts every component that is not running and waits until each is ready.
pub async fn up(layout: &Layout, config: &StackConfig) -> Result<Vec<UpOutcome>, StackError> {
    let components = Component::all(config);
    stop_extra_instances(layout, config)?;
    let to_start: Vec<Component> = components
        .iter()
        .copied()
        .filter(|c| running_pid(*c, layout).is_none())
        .collect();
    preflight(&to_start, config)?;
    if let Some(net) = config.net() {
        if let Some(why) = hosts::unavailable() {
            return Err(StackError::Other(why));
        }
        hosts::create(net, config)?;
    }
    let db_password = layout.secret(postgres::PASSWORD_SECRET)?;
    let starting = |c: &Component| to_start.contains(c);
    let mut pids = BTreeMap::new();

    // The links first: the brokers advertise them, and nothing reaches a dependency without.
    if starting(&Component::FaultProxy) {
        let c = Component::FaultProxy;
        pids.insert(c.name(), launch(c, layout, config, &db_password)?);
        wait_ready(c, layout, config, ready_deadline(c)).await?;
    }

    // Kafka's JVMs are the slowest to come up: launch them first, start the rest meanwhile.
    let brokers: Vec<Component> = (0..config.brokers.max(1)).map(Component::Kafka).collect();
    for c in brokers
        .iter()
        .copied()
        .chain([Component::Postgres, Component::Redis])
    {
        if starting(&c) {
            pids.insert(c.name(), launch(c, layout, config, &db_password)?);
        }
    }
    for c in std::iter::once(Component::Redis).chain(brokers.iter().copied()) {
        if starting(&c) {
            wait_ready(c, layout, config, ready_deadline(c)).await?;
        }
    }
    prepare_kafka_and_database(config, &db_password).await?;

    let later: Vec<Component> = components
        .iter()
        .copied()
        .filter(|c| {
            (c.is_service() || matches!(c, Component::Prometheus | Component::Balancer))
                && starting(c)
        })
        .collect();
    for c in &later {
        pids.insert(c.name(), launch(*c, layout, config, &db_password)?);
    }
    for c in &later {
        wait_ready(*c, layout, config, ready_deadline(*c)).await?;
    }

    Ok(components
        .into_iter()
        .map(|c| {
            let name = c.name();
            let (action, pid) = match pids.get(&name) {
                Some(pid) => ("started", *pid),
                None => ("already running", running_pid(c, layout).unwrap_or(0)),
            };
            UpOutcome {
                name,
                action,
                pid,
                port: c.port(config),
                address: c.listen(config),
            }
        })
        .collect())
}

/// Starts one component (if it is not running) and waits until it is ready: how a drill
/// brings back what it stopped.
pub async fn start_one(
    layout: &Layout,
    config: &StackConfig,
    c: Component,
) -> Result<u32, StackError> {
    if let Some(pid) = running_pid(c, layout) {
        // A killed process still finishing its last threads is not running: wait it out.
        if !process::is_exiting(pid) {
            return Ok(pid);
        }
        wait_exited(c, layout, EXIT_WAIT).await?;
    }
    preflight(&[c], config)?;
    let db_password = layout.secret(postgres::PASSWORD_SECRET)?;
    let pid = launch(c, layout, config, &db_password)?;
    wait_ready(c, layout, config, ready_deadline(c)).await?;
    Ok(pid)
}

/// Longest wait for a killed process to be gone (its threads may be finishing an fsync).
pub const EXIT_WAIT: Duration = Duration::from_secs(30);

/// Waits until `c` has no live process, or says it still has one after `within`.
pub async fn wait_exited(
    c: Component,
    layout: &Layout,
    within: Duration,
) -> Result<(), StackError> {
    let deadline = std::time::Instant::now() + within;
    while let Some(pid) = running_pid(c, layout) {
        if std::time::Instant::now() >= deadline {
            return Err(StackError::Other(format!(
                "{} (pid {pid}) has not exited {within:?} after being stopped",
                c.name()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn ready_deadline(c: Component) -> Duration {
    match c {
        Component::Kafka(_) => Duration::from_secs(90),
        Component::Redis => Duration::from_secs(20),
        _ => Duration::from_secs(60),
    }
}

/// Starts the process of `c` (Postgres also waits until it accepts connections), on its own
/// host when the stack has hosts.
fn launch(
    c: Component,
    layout: &Layout,
    config: &StackConfig,
    db_password: &str,
) -> Result<u32, StackError> {
    match config.net().filter(|_| c.host_slot().is_some()) {
        Some(net) => hosts::within(net, c, || launch_here(c, layout, config, db_password)),
        None => launch_here(c, layout, config, db_password),
    }
}

fn launch_here(
    c: Component,
    layout: &Layout,
    config: &StackConfig,
    db_password: &str,
) -> Result<u32, StackError> {
    match c {
        Component::Kafka(i) => kafka::Kafka::new(layout, i)?.start(layout, config),
        Component::Postgres => {
            let clients = config.net().map(|net| net.subnet());
            let events_disk = disk::EventsDisk::new(layout);
            if let Some(bytes) = config.postgres_disk {
                // Mounted before PostgreSQL starts: its tablespace must be there.
                events_disk.mount(bytes)?;
            }
            let pg = postgres::Postgres::new(layout)?;
            let pid = pg.start(
                layout,
                &config.ports,
                c.ip(config),
                clients.as_deref(),
                db_password,
                config.postgres_nice,
            )?;
            if config.postgres_disk.is_some() {
                pg.ensure_tablespace(config.ports.postgres, &events_disk.location())?;
            }
            Ok(pid)
        }
        Component::Redis => redis::start(layout, c.listen(config)),
        Component::Prometheus => prometheus::start(layout, config),
        Component::Balancer => balancer::start(layout, config),
        Component::FaultProxy => faultproxy::start(layout, config),
        service => services::start(service, layout, config, db_password),
    }
}

/// Refuses to start anything if a needed port is taken or a needed program is missing, so a
/// failed `up` does not leave half a stack behind.
fn preflight(to_start: &[Component], config: &StackConfig) -> Result<(), StackError> {
    for c in to_start {
        let port = c.port(config);
        // On a host of its own, its ports are its namespace's: nothing else can hold them.
        let own_host = config.net().is_some() && c.host_slot().is_some();
        if !own_host && !process::port_is_free(port) {
            return Err(StackError::PortTaken {
                component: c.name(),
                port,
                flag: c.port_flag(),
            });
        }
        if let Component::Kafka(i) = c {
            let port = config.ports.controller(*i);
            if !own_host && !process::port_is_free(port) {
                return Err(StackError::PortTaken {
                    component: format!("{} controller", c.name()),
                    port,
                    flag: "kafka-controller-port",
                });
            }
        }
        if c.is_service() {
            services::binary(services::binary_name(*c))?;
        }
        if *c == Component::FaultProxy {
            services::binary(faultproxy::BINARY)?;
            for link in faultproxy::links(config) {
                if !process::port_is_free(link.listen.port()) {
                    return Err(StackError::PortTaken {
                        component: format!("{}'s link to {}", c.name(), link.name),
                        port: link.listen.port(),
                        flag: "fault-proxy-port",
                    });
                }
            }
        }
    }
    if to_start.iter().any(|c| matches!(c, Component::Kafka(_))) {
        kafka::find_libs()?;
    }
    Ok(())
}

/// Instances left over from an earlier `up` with more of them. A producer whose
/// spool still holds events is not stopped: what it acknowledged reaches Kafka only through it.
fn stop_extra_instances(layout: &Layout, config: &StackConfig) -> Result<(), StackError> {
    for i in config.producers.max(1)..MAX_INSTANCES {
        let c = Component::Producer(i);
        let spooled = spooled_segments(&services::spool_dir(c, &layout.root));
        if spooled > 0 {
            return Err(StackError::Other(format!(
                "{} still holds {spooled} spool segment(s) of acknowledged events: keep it \
                 (`logctl up --producers {}`) until Kafka has taken them",
                c.name(),
                i + 1
            )));
        }
        stop_one(layout, c);
    }
    for i in config.consumers.max(1)..MAX_INSTANCES {
        stop_one(layout, Component::Consumer(i));
    }
    // A lone gateway listens on the public port, several behind the balancer on internal ones:
    // when the shape changes, the running gateways are on the wrong ports.
    let balancer_running = running_pid(Component::Balancer, layout).is_some();
    let reshaped = if config.balanced() {
        !balancer_running
            && running_pid(Component::Gateway(0), layout).is_some()
            && port_open(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                config.ports.gateway,
            )))
    } else {
        balancer_running
    };
    let keep = if reshaped { 0 } else { config.gateways.max(1) };
    // HAProxy reads its servers at start: one running with another gateway count's config
    // is restarted (briefly closing the public port) rather than left blind to new instances.
    let stale = balancer_running
        && std::fs::read_to_string(balancer::config_path(layout)).ok()
            != Some(balancer::config(config));
    if !config.balanced() || stale {
        stop_one(layout, Component::Balancer);
    }
    // The proxy reads its links at start, as HAProxy its servers.
    let proxy_stale = std::fs::read_to_string(faultproxy::config_path(layout)).ok()
        != Some(faultproxy::config(config));
    if proxy_stale {
        stop_one(layout, Component::FaultProxy);
    }
    for i in keep..MAX_INSTANCES {
        stop_one(layout, Component::Gateway(i));
    }
    Ok(())
}

fn spooled_segments(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
                .count()
        })
        .unwrap_or(0)
}

/// Beyond any sensible instance count (the topic has 6 partitions).
const MAX_INSTANCES: u16 = 64;

/// Creates the topics (events with 6 partitions, dead letters), waits until every partition
/// has all its copies in sync, and applies the migrations.
async fn prepare_kafka_and_database(
    config: &StackConfig,
    db_password: &str,
) -> Result<(), StackError> {
    let kafka = logctl_core::kafka::KafkaSettings {
        bootstrap_servers: config.bootstrap_servers(),
        ..Default::default()
    };
    let rf = config.replication_factor();
    retry("creating Kafka topics", Duration::from_secs(60), || {
        let kafka = kafka.clone();
        async move {
            kafka
                .ensure_topics(
                    Duration::from_secs(10),
                    i32::from(rf),
                    &config.storage.kafka,
                )
                .await
                .map_err(|e| e.to_string())
        }
    })
    .await?;
    // Ready means the whole quorum answers and no partition waits for a copy: a drill that
    // kills a broker right after `up` must find every write already replicated.
    retry(
        "waiting for every broker and every partition's replicas",
        Duration::from_secs(90),
        || {
            let kafka = kafka.clone();
            let brokers = usize::from(config.brokers.max(1));
            async move {
                let view =
                    tokio::task::spawn_blocking(move || kafka.partitions(Duration::from_secs(5)))
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| e.to_string())?;
                let short = view
                    .partitions
                    .iter()
                    .filter(|p| p.replicas.len() < usize::from(rf))
                    .count();
                if view.brokers.len() < brokers {
                    Err(format!(
                        "{} of {brokers} brokers listed",
                        view.brokers.len()
                    ))
                } else if view.partitions.is_empty() || short > 0 {
                    Err(format!("{short} partitions with fewer than {rf} replicas"))
                } else if view.under_replicated() > 0 {
                    Err(format!(
                        "{} partitions not fully in sync",
                        view.under_replicated()
                    ))
                } else {
                    Ok(())
                }
            }
        },
    )
    .await?;
    let url = postgres::database_url(Component::Postgres.listen(config), db_password);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy(&url)
        .map_err(|e| StackError::Other(e.to_string()))?;
    // The one place the local stack's schema is migrated: before any consumer starts.
    retry(
        "applying database migrations",
        Duration::from_secs(30),
        || {
            let pool = pool.clone();
            async move {
                logctl_contracts::schema::migrate(&pool)
                    .await
                    .map_err(|e| e.to_string())
            }
        },
    )
    .await?;
    if config.postgres_disk.is_some() {
        move_events_to_their_volume(&pool).await?;
    }
    // Today's partitions and those ahead before any consumer inserts (the consumers keep them
    // up from then on).
    let policy = Policy::try_from(&config.storage.postgres)
        .map_err(|e| StackError::Other(format!("storage settings: {e}")))?;
    partitions::maintain(&pool, &policy, chrono::Utc::now())
        .await
        .map(drop)
        .map_err(|e| StackError::Other(format!("making the events table's partitions: {e}")))
}

/// Puts the events table on the events volume: its partitions and indexes now, and (set on
/// the partitioned parents) every partition made from now on. A no-op once done.
async fn move_events_to_their_volume(pool: &sqlx::PgPool) -> Result<(), StackError> {
    let ts = disk::TABLESPACE;
    let user = postgres::USER;
    for statement in [
        format!("ALTER TABLE log_events SET TABLESPACE {ts}"),
        format!("ALTER INDEX log_events_pkey SET TABLESPACE {ts}"),
        format!("ALTER INDEX log_events_org_time SET TABLESPACE {ts}"),
        format!("ALTER TABLE ALL IN TABLESPACE pg_default OWNED BY {user} SET TABLESPACE {ts}"),
        format!("ALTER INDEX ALL IN TABLESPACE pg_default OWNED BY {user} SET TABLESPACE {ts}"),
    ] {
        sqlx::query(&statement)
            .execute(pool)
            .await
            .map_err(|e| StackError::Other(format!("putting the events on their volume: {e}")))?;
    }
    Ok(())
}

async fn retry<F, Fut>(what: &str, within: Duration, mut attempt: F) -> Result<(), StackError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match attempt().await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(StackError::Other(format!("{what} failed: {e}")))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Waits until `c` answers: its HTTP readiness path, or else its port.
async fn wait_ready(
    c: Component,
    layout: &Layout,
    config: &StackConfig,
    within: Duration,
) -> Result<(), StackError> {
    let deadline = Instant::now() + within;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .map_err(|e| StackError::Other(e.to_string()))?;
    let mut last = String::from("no answer yet");
    loop {
        // Only liveness here: a process may rewrite its title while starting (Redis does).
        let alive = process::read_pid(&layout.pid_file(&c.name()))
            .is_some_and(|pid| process::is_ours(pid, ""));
        if !alive {
            return Err(not_ready(c, layout, "the process exited".into()));
        }
        let ready = match c.ready_path() {
            Some(path) => match http
                .get(format!("http://{}{path}", c.listen(config)))
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => true,
                Ok(r) => {
                    last = format!(
                        "{path} answered {}: {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    );
                    false
                }
                Err(e) => {
                    last = e.to_string();
                    false
                }
            },
            None => port_open(c.listen(config)),
        };
        if ready {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(not_ready(
                c,
                layout,
                format!("not ready after {}s ({last})", within.as_secs()),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn not_ready(c: Component, layout: &Layout, reason: String) -> StackError {
    let log = layout.log_file(&c.name());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(15)..].join("\n");
    StackError::NotReady {
        component: c.name(),
        reason,
        log,
        tail,
    }
}

/// Stops one component if it runs (PostgreSQL through `pg_ctl`, the rest with SIGTERM and a
/// grace period); `true` if it was running.
pub fn stop_one(layout: &Layout, c: Component) -> bool {
    let Some(pid) = running_pid(c, layout) else {
        return false;
    };
    // A paused process cannot act on SIGTERM: let it run again first.
    process::signal_tree(pid, nix::sys::signal::Signal::SIGCONT);
    let stopped_cleanly = c == Component::Postgres
        && postgres::Postgres::new(layout)
            .and_then(|pg| pg.stop())
            .is_ok();
    if !stopped_cleanly {
        let grace = if matches!(c, Component::Kafka(_)) {
            Duration::from_secs(30)
        } else {
            Duration::from_secs(20)
        };
        process::terminate(pid, &c.marker(layout), grace);
    }
    let _ = std::fs::remove_file(layout.pid_file(&c.name()));
    true
}

/// What `down` did for one component.
#[derive(Debug, Clone, Serialize)]
pub struct DownOutcome {
    pub name: String,
    pub action: &'static str,
}

/// Stops every component, services first, each with SIGTERM and a grace period.
pub fn down(layout: &Layout, config: &StackConfig) -> Vec<DownOutcome> {
    let everything = StackConfig {
        consumers: MAX_INSTANCES,
        producers: MAX_INSTANCES,
        gateways: MAX_INSTANCES,
        prometheus: true,
        proxies: true,
        ..config.clone()
    };
    let configured = Component::all(config);
    let mut components = Component::all(&everything);
    components.reverse();
    let outcomes = components
        .into_iter()
        .filter_map(|c| {
            let was_running = stop_one(layout, c);
            (was_running || configured.contains(&c)).then(|| DownOutcome {
                name: c.name(),
                action: if was_running {
                    "stopped"
                } else {
                    "not running"
                },
            })
        })
        .collect();
    // The hosts go once nothing runs on them, and with them every link they had.
    if let Some(net) = config.net() {
        hosts::remove(net);
    }
    // PostgreSQL is stopped: its events volume can go (the image stays for the next `up`).
    if let Err(e) = disk::EventsDisk::new(layout).unmount() {
        eprintln!("logctl: {e}");
    }
    outcomes
}
