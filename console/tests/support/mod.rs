//! The one harness every integration test uses: a real local stack (`logctl up`) in a fresh
//! state dir on random free ports, shared by the tests of one test binary.
//!
//! A stack must never outlive the test run, even when a test panics or the binary is killed:
//! each start also launches `logctl down --after-pid <this process>`, which waits for the test
//! binary to exit and then stops the stack.

#![allow(dead_code)]

pub mod load;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use logctl::signals::exposition::Scrape;
use serde_json::Value;

pub struct TestStack {
    pub dir: PathBuf,
    pub ports: Vec<(&'static str, u16)>,
    pub brokers: u16,
    pub producers: u16,
    pub gateways: u16,
    pub consumers: u16,
    pub with_prometheus: bool,
    pub with_proxies: bool,
    pub with_hosts: bool,
}

/// The ports a stack needs, by `logctl up` flag.
const PORT_FLAGS: [&str; 10] = [
    "fault-proxy-port",
    "prometheus-port",
    "gateway-backend-port",
    "kafka-port",
    "kafka-controller-port",
    "postgres-port",
    "redis-port",
    "gateway-port",
    "producer-port",
    "consumer-port",
];

/// A new empty folder under the temp dir, `logctl-<name>-<random>`.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "logctl-{name}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Tests that break the shared stack, or count what reached it, take this lock to run one
/// at a time (each on its own runtime, so the guard is held across awaits on purpose).
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The `logctl` under test; `LOGCTL_TEST_BIN` points at another build (a frozen copy, so a
/// long drill loop is not disturbed by rebuilding the workspace).
pub fn logctl_bin() -> PathBuf {
    std::env::var_os("LOGCTL_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_logctl")))
}

/// Consumer instances a test may run; each needs its own port after the first.
const MAX_TEST_CONSUMERS: u16 = 4;

/// Producer instances a test may run; each needs its own port after the first.
const MAX_TEST_PRODUCERS: u16 = 2;

/// Gateway instances (behind the balancer) a test may run.
const MAX_TEST_GATEWAYS: u16 = 2;

/// Kafka nodes a test may run; each needs a client and a controller port, side by side
/// (`logctl up` puts broker i at the first ports + 2i).
const MAX_TEST_BROKERS: u16 = 3;

/// Free loopback ports below the kernel's ephemeral range (so no client socket can take one
/// while a component is stopped), held open together so they are distinct, then released.
/// Services get free ports for extra instances, `logctl up`'s instance stride apart.
fn free_ports() -> Vec<(&'static str, u16)> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    // Runs reach up to a few strides past their start: keep them below the ephemeral range.
    let range = 10_000..low.max(10_200) - 100;
    // Stacks of one test binary start concurrently: never hand out a port twice.
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut held = Vec::new();
    let mut out = Vec::new();
    for flag in PORT_FLAGS {
        let stride = logctl::stack::layout::INSTANCE_PORT_STRIDE;
        let (run, stride) = match flag {
            "consumer-port" => (MAX_TEST_CONSUMERS, stride),
            "producer-port" => (MAX_TEST_PRODUCERS, stride),
            "gateway-backend-port" => (MAX_TEST_GATEWAYS, stride),
            "kafka-port" => (2 * MAX_TEST_BROKERS, 1),
            // The control port, then a link per slot: postgres, redis, each broker, each producer.
            "fault-proxy-port" => (
                1 + 2 + logctl::stack::layout::MAX_BROKERS + MAX_TEST_PRODUCERS,
                1,
            ),
            // The controller ports interleave with the client ports' run.
            "kafka-controller-port" => continue,
            _ => (1, 1),
        };
        loop {
            let start: u16 = rand::random_range(range.clone());
            let ports: Option<Vec<u16>> = (0..run).map(|i| start.checked_add(i * stride)).collect();
            let Some(ports) = ports else { continue };
            if ports.iter().any(|p| handed_out.contains(p)) {
                continue;
            }
            let listeners: Option<Vec<_>> = ports
                .iter()
                .map(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).ok())
                .collect();
            if let Some(mut ls) = listeners {
                held.append(&mut ls);
                handed_out.extend(&ports);
                out.push((flag, start));
                if flag == "kafka-port" {
                    out.push(("kafka-controller-port", start + 1));
                }
                break;
            }
        }
    }
    out
}

impl TestStack {
    /// Starts a fresh stack with `consumers` consumer instances and waits until it is ready.
    pub fn start(name: &str, consumers: u16) -> TestStack {
        let stack = TestStack::new(name, consumers);
        stack.up_or_panic(&[]);
        stack
    }

    fn up_or_panic(&self, env: &[(&str, &str)]) {
        let out = self.up_with_env(env);
        assert!(
            out.status.success(),
            "logctl up failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts a fresh stack of `brokers` Kafka nodes and `producers`, `gateways` and
    /// `consumers` instances of the services.
    pub fn start_cluster(
        name: &str,
        brokers: u16,
        producers: u16,
        gateways: u16,
        consumers: u16,
    ) -> TestStack {
        assert!(
            brokers <= MAX_TEST_BROKERS
                && producers <= MAX_TEST_PRODUCERS
                && gateways <= MAX_TEST_GATEWAYS
        );
        let mut stack = TestStack::new(name, consumers);
        stack.brokers = brokers;
        stack.producers = producers;
        stack.gateways = gateways;
        stack.up_or_panic(&[]);
        stack
    }

    /// A fresh state dir and free ports, nothing started yet (the reaper already watches).
    pub fn new(name: &str, consumers: u16) -> TestStack {
        let dir = scratch_dir(&format!("test-{name}"));
        let stack = TestStack {
            dir,
            ports: free_ports(),
            brokers: 1,
            producers: 1,
            gateways: 1,
            consumers,
            with_prometheus: false,
            with_proxies: false,
            with_hosts: false,
        };
        stack.spawn_reaper();
        stack
    }

    /// `logctl up` with this stack's ports and consumer count.
    pub fn up(&self) -> Output {
        self.up_with_env(&[])
    }

    pub fn up_with_env(&self, env: &[(&str, &str)]) -> Output {
        let mut args = vec![
            "up".to_owned(),
            "--brokers".to_owned(),
            self.brokers.to_string(),
            "--producers".to_owned(),
            self.producers.to_string(),
            "--gateways".to_owned(),
            self.gateways.to_string(),
            "--consumers".to_owned(),
            self.consumers.to_string(),
        ];
        if self.with_prometheus {
            args.push("--with-prometheus".to_owned());
        }
        if self.with_proxies {
            args.push("--with-proxies".to_owned());
        }
        if self.with_hosts {
            args.push("--hosts".to_owned());
        }
        for (flag, port) in &self.ports {
            args.push(format!("--{flag}"));
            args.push(port.to_string());
        }
        self.logctl_with_env(&args, env)
    }

    /// Like [`TestStack::start`], with Prometheus scraping the services, and `env` given to
    /// `logctl up` (the services inherit it).
    pub fn start_with_prometheus(name: &str, consumers: u16, env: &[(&str, &str)]) -> TestStack {
        let mut stack = TestStack::new(name, consumers);
        stack.with_prometheus = true;
        stack.up_or_panic(env);
        stack
    }

    /// Like [`TestStack::start`], with the fault proxy on the services' links.
    pub fn start_with_proxies(name: &str) -> TestStack {
        let mut stack = TestStack::new(name, 1);
        stack.with_proxies = true;
        stack.up_or_panic(&[]);
        stack
    }

    /// A cluster of `brokers` with every component on a host of its own (`--hosts`, root),
    /// and the fault proxy on the links between them.
    pub fn start_on_hosts(name: &str, brokers: u16) -> TestStack {
        let mut stack = TestStack::new(name, 1);
        stack.brokers = brokers;
        stack.with_hosts = true;
        stack.with_proxies = true;
        stack.up_or_panic(&[]);
        stack
    }

    /// The stack shared by all tests of this binary, started on first use.
    pub fn shared() -> &'static TestStack {
        static STACK: OnceLock<TestStack> = OnceLock::new();
        STACK.get_or_init(|| TestStack::start("shared", 1))
    }

    /// The reaper is left running on purpose: it must outlive this process.
    #[allow(clippy::zombie_processes)]
    fn spawn_reaper(&self) {
        // LOGCTL_TEST_KEEP=1 keeps the state dir (logs included) for a look after a failure.
        let purge = std::env::var_os("LOGCTL_TEST_KEEP").is_none();
        let mut cmd = Command::new(logctl_bin());
        cmd.arg("--state-dir").arg(&self.dir).arg("down");
        if purge {
            cmd.arg("--purge");
        }
        cmd.args(["--after-pid", &std::process::id().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn the stack reaper");
    }

    pub fn port(&self, flag: &str) -> u16 {
        self.ports
            .iter()
            .find(|(f, _)| *f == flag)
            .map(|(_, p)| *p)
            .expect("known port flag")
    }

    pub fn gateway(&self) -> String {
        format!("http://127.0.0.1:{}", self.port("gateway-port"))
    }

    pub fn database_url(&self) -> String {
        let password = std::fs::read_to_string(self.dir.join("secrets/postgres-password"))
            .expect("postgres password");
        // On hosts PostgreSQL listens on its host's address, as `status` reports it.
        let at = if self.with_hosts {
            self.status_json()["components"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["name"] == "postgres"))
                .and_then(|c| c["address"].as_str().map(str::to_owned))
                .expect("postgres in status")
        } else {
            format!("127.0.0.1:{}", self.port("postgres-port"))
        };
        format!("postgres://loguser:{}@{at}/logprocessor", password.trim())
    }

    /// Runs `logctl --state-dir <this stack> ARGS`.
    pub fn logctl<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Output {
        self.logctl_with_env(args, &[])
    }

    pub fn logctl_with_env<S: AsRef<std::ffi::OsStr>>(
        &self,
        args: &[S],
        env: &[(&str, &str)],
    ) -> Output {
        let mut cmd = Command::new(logctl_bin());
        cmd.arg("--state-dir").arg(&self.dir).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run logctl")
    }

    pub fn status_json(&self) -> Value {
        let out = self.logctl(&["status", "--json"]);
        serde_json::from_slice(&out.stdout).expect("status --json is JSON")
    }

    /// One component's state as `logctl status` reports it (up, down, paused...).
    pub fn component_status(&self, name: &str) -> String {
        self.status_json()["components"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == name))
            .map(|c| c["status"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    }

    /// Total lag of `log-consumer-group` as Kafka's own `kafka-consumer-groups` reports it;
    /// `None` while some partition has no committed offset yet.
    pub fn kafka_reported_lag(&self) -> Option<i64> {
        let out = self.logctl(&[
            "kafka",
            "consumer-groups",
            "--describe",
            "--group",
            "log-consumer-group",
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        let mut total = 0;
        let mut rows = 0;
        for line in text.lines().filter(|l| l.starts_with("log-consumer-group")) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG ...
            let end: i64 = cols.get(4)?.parse().ok()?;
            let lag = match cols.get(5)? {
                &"-" if end == 0 => 0,
                l => l.parse().ok()?,
            };
            total += lag;
            rows += 1;
        }
        (rows == 6).then_some(total)
    }

    /// A token for `org` with both scopes, minted as `logctl token` does (cached per org).
    pub fn token(&self, org: &str) -> String {
        static TOKENS: std::sync::Mutex<Vec<(PathBuf, String, String)>> =
            std::sync::Mutex::new(Vec::new());
        let mut tokens = TOKENS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, _, t)) = tokens.iter().find(|(d, o, _)| d == &self.dir && o == org) {
            return t.clone();
        }
        let layout = logctl::stack::layout::Layout::open(&self.dir).expect("state dir");
        let token = logctl::token::mint(
            &layout,
            org,
            &logctl_core::auth::Scope::ALL,
            Duration::from_secs(6 * 3600),
            "tests",
        )
        .expect("mint a token");
        tokens.push((self.dir.clone(), org.to_owned(), token.clone()));
        token
    }

    /// Posts one event to the gateway with a token for its organization, checks it was
    /// accepted (202) and returns its id.
    pub async fn post_event(&self, client: &reqwest::Client, event: &Value) -> String {
        let org = event["organizationId"].as_str().expect("organizationId");
        let r = client
            .post(format!("{}/api/logs", self.gateway()))
            .bearer_auth(self.token(org))
            .json(event)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
        r.json::<Value>().await.expect("json")["id"]
            .as_str()
            .expect("id")
            .to_owned()
    }

    /// The last `n` lines of a component's log, for failure messages.
    pub fn log_tail(&self, component: &str, n: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join("logs").join(format!("{component}.log")))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Distinct members of `log-consumer-group` that own partitions, per Kafka's own tool.
    pub fn kafka_group_members(&self) -> usize {
        let out = self.logctl(&[
            "kafka",
            "consumer-groups",
            "--describe",
            "--group",
            "log-consumer-group",
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .filter(|l| l.starts_with("log-consumer-group"))
            .filter_map(|l| l.split_whitespace().nth(6).map(str::to_owned))
            .filter(|id| id != "-")
            .collect::<std::collections::HashSet<_>>()
            .len()
    }

    pub fn state_dir(&self) -> &Path {
        &self.dir
    }
}

/// How much longer than written a deadline may run here: `LOGCTL_TEST_PATIENCE` when set,
/// else 2 cores' worth over the cores this process may use (2 on `taskset -c 0`), so a wait
/// for a condition scales with the machine instead of failing a slow one.
pub fn patience() -> f64 {
    static FACTOR: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *FACTOR.get_or_init(|| {
        std::env::var("LOGCTL_TEST_PATIENCE")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|f| *f >= 1.0)
            .unwrap_or_else(|| {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                (2.0 / cores as f64).max(1.0)
            })
    })
}

/// `d` stretched by [`patience`].
pub fn scaled(d: Duration) -> Duration {
    d.mul_f64(patience())
}

/// Polls `check` until it returns `Some`, or panics with `what` after `within` (scaled by
/// [`patience`]).
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let within = scaled(within);
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until at least `at_least` rows of events from `source` are stored, and returns how
/// many there are then (a test asserts the exact number: more would be a duplicate).
pub async fn stored_from(
    pool: &sqlx::PgPool,
    source: &str,
    at_least: i64,
    within: Duration,
) -> i64 {
    eventually(
        &format!("{at_least} events from {source} stored"),
        within,
        || async {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM log_events WHERE source = $1")
                .bind(source)
                .fetch_one(pool)
                .await
                .ok()?;
            (n >= at_least).then_some(n)
        },
    )
    .await
}

/// Sums every sample of `name` (all label sets) in a Prometheus text exposition; None when
/// there is none. Read with the console's own parser, so tests and the console agree.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    Scrape::parse(text).sum(name, &[])
}

pub async fn scrape(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text")
}

/// Sums the samples of `name` whose labels include every pair in `labels` (0 when none).
pub fn metric_with(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    Scrape::parse(text).sum(name, labels).unwrap_or(0.0)
}
