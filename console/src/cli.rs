//! Every `logctl` command and flag, defined once with its help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "logctl",
    version,
    about = "Run and operate the logctl log pipeline"
)]
pub struct Cli {
    /// Where the local stack keeps its data, logs, pid files and secrets.
    #[arg(
        long,
        global = true,
        env = "LOGCTL_STATE_DIR",
        default_value = ".logctl"
    )]
    pub state_dir: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per run: the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the local stack (Kafka, PostgreSQL, Redis, gateway, producer, consumer) and wait
    /// until every part is ready. Starts only what is not already running.
    Up(UpArgs),
    /// Stop every part of the local stack; data is kept for the next `up`.
    Down(DownArgs),
    /// Show each component: up/down, pid and port. Exits 0 when all are up, 3 otherwise.
    Status(StatusArgs),
    /// Inject a fault into one component: stop, start, kill (SIGKILL), pause (SIGSTOP), resume.
    Fault(FaultArgs),
    /// Show or replay the records the consumer sent to the dead-letter topic.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// How the stack keeps events: PostgreSQL's time partitions (rows, sizes, the oldest kept,
    /// the next drop) and Kafka's topic retention. `logctl storage prune --older-than 3d` drops
    /// old partitions now.
    Storage(StorageArgs),
    /// Constant-rate, open-loop load against the gateway: latency from each request's planned
    /// send time (no coordinated omission), HdrHistogram percentiles, optional exactly-once check
    /// in PostgreSQL and pass/fail thresholds for CI.
    Load(LoadArgs),
    /// The pipeline benchmark against a stack it makes for the run and deletes after (yours is
    /// never touched): peak rates, batches, consumer drain,
    /// with wrk, Kafka's ProducerPerformance and PostgreSQL COPY as baselines in the same run;
    /// writes a markdown table.
    Bench(BenchArgs),
    /// A long run at a fixed rate that judges the steady state: RSS growth, lag, p99 trend,
    /// disk within retention, sampled every 10 s; a table, JSON and an SVG of the samples.
    Soak(SoakArgs),
    /// The live console: throughput, latency, lag from Kafka, breakers, components and errors,
    /// refreshed every second (q or Ctrl-C quits, p pauses).
    Tui(TuiArgs),
    /// Scenario drills: scripted load and faults with assertions, from YAML files.
    #[command(subcommand)]
    Scenario(ScenarioCommand),
    /// Print a bearer token for the stack's gateway (signed with the key in the state dir,
    /// or LOGCTL_JWT_SECRET), e.g. `curl -H "Authorization: Bearer $(logctl token --org acme)"`.
    Token(TokenArgs),
    /// Run one of Kafka's own tools against the stack's broker, e.g.
    /// `logctl kafka consumer-groups --describe --group log-consumer-group`.
    Kafka(KafkaArgs),
    /// Render a saved run again (`logctl load --output run.json`): the summary, an HTML page
    /// with plots (--html), and a comparison with another run (--compare; exit 1 on regression).
    Report(ReportArgs),
}

/// Comparing a run with a saved baseline run.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// A saved run (`--output` of an earlier `logctl load`) to compare with: each figure side
    /// by side with its ratio, and a verdict; exit 1 on regression.
    #[arg(long, value_name = "BASELINE.json")]
    pub compare: Option<PathBuf>,
    /// A p99 this much above the baseline's is a regression (and at least 1 ms above it).
    #[arg(long, default_value = "10%")]
    pub max_p99_regression: String,
    /// Accepted events/s this much below the baseline's is a regression.
    #[arg(long, default_value = "5%")]
    pub max_throughput_regression: String,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run's JSON record.
    pub run: PathBuf,
    /// Write the run as a self-contained HTML page with plots.
    #[arg(long)]
    pub html: Option<PathBuf>,
    #[command(flatten)]
    pub compare: CompareArgs,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Events per second (with --batch, requests per second are rate / batch).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// How long to send (500ms, 30s, 5m); 30s when neither this nor --count is given.
    #[arg(long)]
    pub duration: Option<String>,
    /// Stop after this many events.
    #[arg(long)]
    pub count: Option<u64>,
    /// Rise linearly to the rate over this long first (from a tenth of it).
    #[arg(long, default_value = "0s")]
    pub ramp: String,
    /// Stepped rates instead of --rate and --duration: 1000:10s,2000:10s,5000:30s.
    #[arg(long, conflicts_with_all = ["rate", "duration"])]
    pub steps: Option<String>,
    /// Events per request: 1 posts single events to /api/logs, more posts batches.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Organizations (Zipf-skewed: a few send most), each with its own token.
    #[arg(long, default_value_t = 20)]
    pub orgs: usize,
    #[arg(long, default_value = "load")]
    pub org_prefix: String,
    /// Seed of the event mix: the same seed sends the same events.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Mean message size in bytes (messages vary from half to 1.5 times it).
    #[arg(long, default_value_t = 200)]
    pub message_bytes: usize,
    /// Most requests awaiting an answer; beyond it sends wait (and are counted late).
    #[arg(long, default_value_t = 1024)]
    pub max_in_flight: usize,
    /// The client's timeout: a request unanswered this long counts as having no answer.
    #[arg(long, default_value = "30s")]
    pub timeout: String,
    /// Gateway URL; the local stack's by default.
    #[arg(long)]
    pub target: Option<String>,
    /// Print the final report as JSON (no live progress).
    #[arg(long)]
    pub json: bool,
    /// Also write the run's JSON record to this file: the report's fields, latency and answers
    /// per second, the whole latency histogram (what `logctl report` and `--compare` read).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Write the run as a self-contained HTML page: latency over time, the latency
    /// distribution, throughput and (on the local stack) lag over time.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
    #[command(flatten)]
    pub compare: CompareArgs,
    /// Write per-second latency histograms as an HdrHistogram interval log.
    #[arg(long)]
    pub hdr_log: Option<PathBuf>,
    /// After the run, wait for the pipeline to drain and check in PostgreSQL that every event
    /// answered 2xx is stored exactly once.
    #[arg(long)]
    pub verify: bool,
    #[arg(long, default_value = "120s")]
    pub verify_timeout: String,
    /// For --verify against another stack; the local stack's by default.
    #[arg(long, env = "LOGCTL_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Fail (exit 1) when p99 latency is above this, e.g. 50ms.
    #[arg(long)]
    pub max_p99: Option<String>,
    /// Fail (exit 1) when more requests than this are not answered 2xx, e.g. 0.1%.
    #[arg(long)]
    pub max_error_rate: Option<String>,
    /// Also fail when the generator could not keep its schedule (by default that is reported
    /// as the machine's limit, with its figures, and does not fail the run).
    #[arg(long)]
    pub strict_schedule: bool,
}

#[derive(Debug, Args)]
pub struct TuiArgs {
    /// Time between readings: 1s, 500ms.
    #[arg(long, default_value = "1s")]
    pub refresh: String,
    /// Drills the `r` key runs, one after another (repeat the flag); checked at start.
    #[arg(long = "scenario")]
    pub scenarios: Vec<PathBuf>,
    /// Watch a stack given by its endpoints instead of the local one: a TOML file with
    /// `[endpoints]` gateway, producer, consumers (list), kafka, and optionally `[faults]`
    /// driver = "compose" (with compose_file) or "exec" (with exec) for the 1-6 keys.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Short steps and fewer events: checks the benchmark runs, not figures to quote.
    #[arg(long)]
    pub quick: bool,
    /// Leave out the consumer drain stages (the one broker's and the cluster's): a shorter
    /// run, with no drain / COPY ratio in the table.
    #[arg(long)]
    pub skip_drain: bool,
    /// Then each stage's peak once more with Linux `perf` sampling the service taking the
    /// requests: a flame graph per stage in `profiles/` beside --output, and a table of where
    /// its CPU per event went (HTTP, JSON, token, rate limiting, metrics, tracing, the
    /// producer call). Needs `perf` (Debian: linux-perf).
    #[arg(long)]
    pub profile: bool,
    /// Then the same stages against a cluster of this many Kafka brokers (RF 3, min ISR 2),
    /// made for the bench once its one-broker stack is gone (`<state>/bench-cluster`, free
    /// ports) and deleted after, and the drain with 1, 2, 3 and 6 consumers.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=i64::from(crate::stack::layout::MAX_BROKERS)))]
    pub brokers: Option<u16>,
    /// The markdown table; its figures go as JSON beside it (RESULTS.json).
    #[arg(long, default_value = "bench/RESULTS.md")]
    pub output: PathBuf,
    /// Also write the results as a self-contained HTML page with each search's latency
    /// against the offered rate.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// An earlier run's RESULTS.json: each figure's ratio to its baseline, then and now; exit 1
    /// when one fell more than --max-regression.
    #[arg(long, value_name = "OLD.json")]
    pub compare: Option<PathBuf>,
    #[arg(long, default_value = "10%")]
    pub max_regression: String,
}

#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Events per second, constant (pick a share of the knee `logctl bench` measured, e.g. a
    /// half).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    #[arg(long, default_value = "30m")]
    pub duration: String,
    /// Samples before this are not judged (JIT, caches, pools filling).
    #[arg(long, default_value = "2m")]
    pub warmup: String,
    #[arg(long, default_value = "10s")]
    pub sample_every: String,
    /// Write the report (every sample and check) as JSON here.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Write the samples as an SVG plot here.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// The database (the local stack's by default).
    #[arg(long)]
    pub database_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The organization the token is for: it may only write and read this one's events.
    #[arg(long)]
    pub org: String,
    /// logs:write, logs:read (repeat, or separate with commas); both when not given.
    #[arg(long, value_delimiter = ',')]
    pub scope: Vec<String>,
    /// Lifetime: 90s, 15m, 1h, 7d.
    #[arg(long, default_value = "1h")]
    pub ttl: String,
    /// The `sub` claim: who the token was issued to.
    #[arg(long, default_value = "logctl")]
    pub sub: String,
}

#[derive(Debug, Args)]
pub struct KafkaArgs {
    /// topics, consumer-groups, console-consumer, producer-perf-test, get-offsets
    pub tool: String,
    /// Passed to the tool as they are; `--bootstrap-server` is added for the stack's broker.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Kafka nodes (each broker and controller): 1, or 3 for a replicated cluster (every
    /// partition on three brokers, acks=all writes on two). Fixed when the stack is made.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=i64::from(crate::stack::layout::MAX_BROKERS)))]
    pub brokers: Option<u16>,
    /// Producer instances; the gateway spreads its publish calls over them and fails over.
    #[arg(long)]
    pub producers: Option<u16>,
    /// Consumer instances in the one group (they share the topic's 6 partitions).
    #[arg(long)]
    pub consumers: Option<u16>,
    /// Gateway instances; with more than one, HAProxy (Debian's package) takes the public
    /// port, health-checks them and spreads requests over them.
    #[arg(long)]
    pub gateways: Option<u16>,
    /// The first broker's client port; broker i listens on this port + 2i.
    #[arg(long)]
    pub kafka_port: Option<u16>,
    /// The first broker's controller port; broker i's is this port + 2i.
    #[arg(long)]
    pub kafka_controller_port: Option<u16>,
    #[arg(long)]
    pub postgres_port: Option<u16>,
    #[arg(long)]
    pub redis_port: Option<u16>,
    /// The public port: the gateway's, or with several gateways the balancer's.
    #[arg(long)]
    pub gateway_port: Option<u16>,
    /// With several gateways, the first one's internal port; instance i listens on this
    /// port + 10i.
    #[arg(long)]
    pub gateway_backend_port: Option<u16>,
    /// The first producer's port; instance i listens on this port + 10i.
    #[arg(long)]
    pub producer_port: Option<u16>,
    /// The first consumer's port; instance i listens on this port + 10i.
    #[arg(long)]
    pub consumer_port: Option<u16>,
    /// Also run Prometheus (Debian's package) scraping every service, with the alert rules.
    /// Remembered by later `up`s of this stack.
    #[arg(long)]
    pub with_prometheus: bool,
    #[arg(long)]
    pub prometheus_port: Option<u16>,
    /// Put the fault proxy (logctl-faultproxy) on the links to PostgreSQL, Redis, each broker
    /// and each producer, for `logctl fault latency|bandwidth|blackhole|reset|clear`.
    /// Remembered by later `up`s; set on a stopped or new stack (the brokers advertise it).
    #[arg(long)]
    pub with_proxies: bool,
    /// Each broker, PostgreSQL, Redis and each service instance on a host of its own: a
    /// network namespace with its own address on a bridge of the stack's, so `logctl fault
    /// isolate|heal|partition` can cut links while the processes keep running. Needs root;
    /// HAProxy keeps the public port on 127.0.0.1. Remembered; set on a new or stopped stack.
    #[arg(long)]
    pub hosts: bool,
    /// The fault proxy's control port; its links listen on the ports right after it.
    #[arg(long)]
    pub fault_proxy_port: Option<u16>,
    /// On a new state dir, pick free loopback ports for every port not given by a flag
    /// (remembered by later `up`s): for a second stack beside one on the default ports, or CI.
    #[arg(long)]
    pub free_ports: bool,
    /// How long PostgreSQL keeps events, by their event time (`7d` by default): partitions
    /// wholly older are dropped. Remembered by later `up`s.
    #[arg(long)]
    pub retention: Option<String>,
    /// The width of one PostgreSQL partition, whole minutes (`1d` by default; `2m` for a soak).
    /// Remembered.
    #[arg(long)]
    pub partition_interval: Option<String>,
    /// How long Kafka keeps the events topic (`retention.ms`, `7d` by default); the
    /// dead-letter topic keeps four times as long. Remembered.
    #[arg(long)]
    pub kafka_retention: Option<String>,
    /// `retention.bytes` of each events-topic partition (none by default). Remembered.
    #[arg(long)]
    pub kafka_retention_bytes: Option<i64>,
    /// The events table on a filesystem of its own of this size (`2G`, `512M`), so `logctl
    /// fault fill postgres` can run it out of space. Needs root; set on a new state dir.
    #[arg(long)]
    pub postgres_disk: Option<String>,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Wait until this process has exited, then stop the stack (used by test harnesses so a
    /// stack never outlives the run that started it).
    #[arg(long, hide = true)]
    pub after_pid: Option<u32>,
    /// Delete the state dir (data, logs, secrets) once everything is stopped.
    #[arg(long)]
    pub purge: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the status as JSON, for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct FaultArgs {
    pub action: FaultVerb,
    /// postgres, redis, kafka, producer, consumer, gateway, haproxy, prometheus or
    /// faultproxy; an instance by number (kafka-2, producer-2, gateway-2, consumer-3; `-1` is
    /// the first); or kafka-leader, the broker leading the most `log-events` partitions. For
    /// the network faults, `kafka` and `producer` mean every instance's link. `clear` without
    /// one clears every link.
    pub component: Option<String>,
    /// The amount: `200ms` for latency, `1mbit` (or kbit, gbit, bps, kbps, mbps) for
    /// bandwidth; for `partition` and `heal`, the second host.
    pub amount: Option<String>,
    /// Latency only: each chunk held the latency give or take up to this much.
    #[arg(long)]
    pub jitter: Option<String>,
    /// upstream (towards the component), downstream (its answers) or both; latency acts on
    /// answers by default, the rest both ways.
    #[arg(long)]
    pub direction: Option<String>,
    /// The share of connections touched, 0 to 1 (each drawn once when it opens).
    #[arg(long)]
    pub toxicity: Option<f64>,
    #[command(flatten)]
    pub faults: DriverArgs,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `logctl fault` does: to a process (the first five), or to the network in front of it
/// (the rest, on a stack with `up --with-proxies`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FaultVerb {
    /// Graceful stop (SIGTERM; PostgreSQL through pg_ctl).
    Stop,
    /// Start it again and wait until it is ready.
    Start,
    /// SIGKILL: a crash, nothing flushed.
    Kill,
    /// SIGSTOP on the process and its children: it hangs, connections stay open.
    Pause,
    /// SIGCONT after a pause.
    Resume,
    /// Hold what crosses the link this long (`latency kafka 200ms --jitter 50ms`).
    Latency,
    /// Cap the link's rate (`bandwidth postgres 1mbit`).
    Bandwidth,
    /// Accept connections and never answer (`blackhole redis`).
    Blackhole,
    /// Reset its connections, open and new (`reset producer`).
    Reset,
    /// Take the network faults off a link, or off every link.
    Clear,
    /// On a stack on hosts: take the host off the network, its process running
    /// (`isolate kafka-leader`).
    Isolate,
    /// Cut only the link between two hosts (`partition kafka kafka-2`).
    Partition,
    /// Undo isolation and partitions: of one host, of a pair, or (alone) of every host.
    Heal,
    /// Take every free byte of PostgreSQL's events volume (`fill postgres`; a stack made with
    /// `up --postgres-disk`): inserts fail with "disk full", PostgreSQL stays up.
    Fill,
    /// Give the space `fill` took back (`free postgres`).
    Free,
}

impl FaultVerb {
    /// The process action this verb is, if it is one.
    pub fn process(self) -> Option<crate::fault::Action> {
        use crate::fault::Action;
        Some(match self {
            FaultVerb::Stop => Action::Stop,
            FaultVerb::Start => Action::Start,
            FaultVerb::Kill => Action::Kill,
            FaultVerb::Pause => Action::Pause,
            FaultVerb::Resume => Action::Resume,
            _ => return None,
        })
    }

    /// The host fault's verb, if it is one.
    pub fn host(self) -> Option<&'static str> {
        Some(match self {
            FaultVerb::Isolate => "isolate",
            FaultVerb::Partition => "partition",
            FaultVerb::Heal => "heal",
            _ => return None,
        })
    }

    /// `Some(true)` for fill, `Some(false)` for free.
    pub fn disk(self) -> Option<bool> {
        match self {
            FaultVerb::Fill => Some(true),
            FaultVerb::Free => Some(false),
            _ => None,
        }
    }

    /// The network fault this verb is, if it is one (`clear` is neither).
    pub fn link(self) -> Option<crate::fault::link::Kind> {
        use crate::fault::link::Kind;
        Some(match self {
            FaultVerb::Latency => Kind::Latency,
            FaultVerb::Bandwidth => Kind::Bandwidth,
            FaultVerb::Blackhole => Kind::Blackhole,
            FaultVerb::Reset => Kind::Reset,
            _ => return None,
        })
    }
}

/// How faults reach the stack, for `logctl fault` and `logctl scenario run`.
#[derive(Debug, Args)]
pub struct DriverArgs {
    /// `local` acts on the processes of `logctl up`; `compose` runs `docker compose`; `exec`
    /// runs --exec.
    #[arg(long, value_enum, default_value = "local")]
    pub driver: DriverKind,
    /// The compose file the `compose` driver uses.
    #[arg(long, default_value = "docker-compose.yml")]
    pub compose_file: PathBuf,
    /// The exec driver's command, with {action} and {component} filled in.
    #[arg(long, required_if_eq("driver", "exec"))]
    pub exec: Option<String>,
}

impl DriverArgs {
    pub fn driver(&self) -> crate::fault::Driver {
        use crate::fault::Driver;
        match self.driver {
            DriverKind::Local => Driver::Local,
            DriverKind::Compose => Driver::Compose {
                file: self.compose_file.clone(),
            },
            DriverKind::Exec => Driver::Exec {
                template: self.exec.clone().unwrap_or_default(),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DriverKind {
    Local,
    Compose,
    /// A command of your own: --exec 'ssh db1 sudo systemctl {action} {component}'.
    Exec,
}

// Parsed once per run: the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum ScenarioCommand {
    /// Run drills one after another against the stack. Every file is checked before any runs;
    /// each drill puts back what it broke, also when it fails or is interrupted (Ctrl-C).
    /// Exit code: 0 all passed, 1 a drill failed, 2 a file is invalid, 130 interrupted.
    Run(ScenarioRunArgs),
    /// Check drill files without running them (unknown keys, durations, components, signals).
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List the signals conditions can use.
    Signals,
}

#[derive(Debug, Args)]
pub struct ScenarioRunArgs {
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// One plain line per step and a summary, no live line (for CI; also when not on a TTY).
    #[arg(long)]
    pub headless: bool,
    /// Write every drill's JSON report (steps, conditions, load, timeline) to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write each drill's JSON report as <name>.json in this folder.
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
    /// Write each drill as a self-contained HTML page, <name>.html in this folder: its steps,
    /// and rates, latencies and lag over the drill with its faults marked.
    #[arg(long)]
    pub html_dir: Option<PathBuf>,
    /// Write a JUnit XML report (one suite per drill, one case per step).
    #[arg(long)]
    pub junit: Option<PathBuf>,
    #[command(flatten)]
    pub faults: DriverArgs,
    /// Gateway URL; the local stack's by default.
    #[arg(long)]
    pub target: Option<String>,
    /// For `verify` against another stack; the local stack's by default.
    #[arg(long, env = "LOGCTL_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Time between readings of the stack's signals.
    #[arg(long, default_value = "1s")]
    pub sample_every: String,
}

#[derive(Debug, Args)]
pub struct StorageArgs {
    #[command(subcommand)]
    pub command: Option<StorageCommand>,
    /// Count each partition's rows (PostgreSQL's live-row estimate otherwise, which is cheap
    /// but may lag a few seconds behind).
    #[arg(long)]
    pub exact: bool,
    /// Print the report as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// The database (the local stack's by default).
    #[arg(long, global = true)]
    pub database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum StorageCommand {
    /// Retention by hand: drop every partition whose events are all older than --older-than
    /// (and the default partition's rows that are), now. Whole partitions only, never a DELETE.
    Prune {
        /// `3d`, `12h`: events older than this go.
        #[arg(long)]
        older_than: String,
        /// Only list what would be dropped.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters, oldest first, with why each failed and where it came from.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Publish dead letters' original records to the events topic again (after fixing the
    /// cause). Give offsets of the dead-letter topic, or --all.
    Replay {
        #[arg(long = "offset", required_unless_present = "all")]
        offsets: Vec<i64>,
        #[arg(long, conflicts_with = "offsets")]
        all: bool,
    },
}
