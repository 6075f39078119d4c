//! `logctl bench`: the pipeline benchmark, against a stack made for it (`scratch`), with this
//! machine's own baselines measured in the same run, written as a markdown table
//! (bench/RESULTS.md).
//!
//! Stages: the peak single-event rate through the gateway and straight to the producer (the
//! highest step with p99 under 50 ms, no errors and the generator on schedule), batched
//! ingestion (100 and 1000 per request), and the consumer's drain rate from a pre-filled topic.
//! Baselines: `wrk` on `/health` (the HTTP ceiling), Kafka's `ProducerPerformance`, PostgreSQL's
//! `COPY`. Each step also records CPU per component (where the time goes), the generator's own
//! CPU, and each service's peak RSS during the step (the drain: the consumer's).

pub mod baselines;
pub mod capacity;
pub mod cluster;
pub mod drain;
pub mod gateway;
pub mod procstat;
pub mod profile;
pub mod record;
pub mod scratch;
pub mod targets;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use logctl_contracts::topics::CONSUMER_GROUP;
use logctl_core::kafka::KafkaSettings;
use logctl_core::lag::LagReader;
use logctl_loadgen::engine::{self, Options, Target};
use logctl_loadgen::plan::Plan;
use logctl_loadgen::report::Report;
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;

use crate::stack::layout::{Layout, StackConfig};
use crate::stack::{self, Component};
use crate::units::thousands as num;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Shorter steps and fewer events: a smoke run of the benchmark, not figures to quote.
    pub quick: bool,
    pub skip_drain: bool,
    /// Also measure a cluster of this many brokers, made for the bench.
    pub brokers: Option<u16>,
    /// Profile each stage's peak with `perf` (the one-broker stack's) and keep the flame graphs in
    /// this directory.
    pub profile: Option<std::path::PathBuf>,
}

/// One rate held for one step, and what it cost.
#[derive(Debug, Clone)]
pub struct Step {
    pub rate: f64,
    pub report: Report,
    /// Cores used per component during the step.
    pub cores: BTreeMap<String, f64>,
    pub generator_cores: f64,
    /// Each component's highest RSS during the step.
    pub rss_mib: BTreeMap<String, f64>,
    pub passed: bool,
    /// The machine's CPU the hypervisor took during the step.
    pub stolen: procstat::Stolen,
    /// Through the gateway: end-to-end latency of the step's events and the rate limiter's
    /// counters.
    pub gateway: Option<gateway::GatewayStep>,
}

pub struct Search {
    pub name: String,
    pub p99_limit_ms: f64,
    pub steps: Vec<Step>,
}

impl Search {
    /// The highest passing step (the latest of those at its rate).
    pub fn peak(&self) -> Option<&Step> {
        self.steps
            .iter()
            .filter(|s| s.passed)
            .max_by(|a, b| a.rate.total_cmp(&b.rate))
    }

    /// The knee: the highest passing step's offered rate.
    pub fn knee(&self) -> Option<f64> {
        self.peak().map(|p| p.rate)
    }
}

fn components(config: &StackConfig) -> Vec<Component> {
    Component::all(config)
}

async fn run_step(
    layout: &Layout,
    config: &StackConfig,
    stage: &Stage<'_>,
    rate: f64,
    secs: u64,
) -> anyhow::Result<Step> {
    let through_gateway = stage.through_gateway;
    let plan = Plan::new(rate, Some(Duration::from_secs(secs)), None, Duration::ZERO)?;
    let options = Options {
        // Through the gateway the step's events are read back from PostgreSQL afterwards.
        collect_ids: through_gateway,
        ..load_options(stage, rate)
    };
    let gateway_url = format!("http://127.0.0.1:{}", config.ports.gateway);
    let limiter_before = if through_gateway {
        Some(gateway::counters(&gateway_url).await)
    } else {
        None
    };
    let groups: Vec<(String, u32)> = components(config)
        .into_iter()
        .filter_map(|c| stack::running_pid(c, layout).map(|pid| (c.name(), pid)))
        .collect();
    let roots: Vec<u32> = groups.iter().map(|(_, pid)| *pid).collect();
    for pid in &roots {
        procstat::reset_peak_rss(*pid);
    }
    let cpu_before = procstat::cpu_by_tree(&roots);
    let own_before = procstat::own_cpu();
    let sampling = CancellationToken::new();
    let machine = tokio::spawn(procstat::sample_machine(sampling.clone()));
    let started = Instant::now();
    let out = engine::run(
        &plan,
        stage.target.clone(),
        &options,
        CancellationToken::new(),
        |_| {},
    )
    .await;
    let wall = started.elapsed().as_secs_f64();
    sampling.cancel();
    let stolen = procstat::Stolen::of(&machine.await.unwrap_or_default(), procstat::STOLEN_WINDOW);
    let cores = procstat::cores(&groups, &cpu_before, &procstat::cpu_by_tree(&roots), wall);
    let rss_mib = groups
        .iter()
        .filter_map(|(name, pid)| Some((name.clone(), procstat::peak_rss_mib(*pid)?)))
        .collect();
    let generator_cores = (procstat::own_cpu() - own_before).max(0.0) / wall;
    let r = &out.report;
    let passed =
        r.error_rate() <= 0.001 && !r.fell_behind && r.latency_ms.p99 <= stage.p99_limit_ms;
    let gateway = match limiter_before {
        Some(before) => {
            let url = stack::postgres::database_url(
                Component::Postgres.listen(config),
                &layout.secret(stack::postgres::PASSWORD_SECRET)?,
            );
            Some(gateway::observe(&gateway_url, before, &url, &out.acked, STORED_WITHIN).await)
        }
        None => None,
    };
    Ok(Step {
        rate,
        report: out.report,
        cores,
        generator_cores,
        rss_mib,
        passed,
        stolen,
        gateway,
    })
}

/// How long after a step its last events may take to be stored before the rest count as
/// missing from its end-to-end figures (an overloaded step's backlog drains meanwhile).
const STORED_WITHIN: Duration = Duration::from_secs(30);

/// Waits until the consumer group has read everything, so one stage's backlog does not load
/// the next.
async fn settle(config: &StackConfig) {
    let settings = KafkaSettings {
        bootstrap_servers: config.bootstrap_servers(),
        ..KafkaSettings::default()
    };
    let Ok(reader) = LagReader::new(&settings, CONSUMER_GROUP) else {
        return;
    };
    let reader = Arc::new(reader);
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        let r = reader.clone();
        let lag = tokio::task::spawn_blocking(move || r.read(Duration::from_secs(5)))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|parts| parts.iter().map(|p| p.lag).sum::<i64>());
        if lag == Some(0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One stepped search: rising rates until one fails twice, then (with `refine_knee`) halving
/// the gap between the highest rate that passed and the one that failed.
#[derive(Clone)]
struct Stage<'a> {
    name: String,
    target: Arc<dyn Target>,
    through_gateway: bool,
    batch: usize,
    rates: &'a [f64],
    p99_limit_ms: f64,
    refine_knee: bool,
}

async fn search(
    layout: &Layout,
    config: &StackConfig,
    stage: Stage<'_>,
    secs: u64,
) -> anyhow::Result<Search> {
    let mut steps = Vec::new();
    let (mut passed, mut failed) = (None, None);
    for &rate in stage.rates {
        if hold(layout, config, &stage, rate, secs, &mut steps).await? {
            passed = Some(rate);
        } else {
            failed = Some(rate);
            break;
        }
    }
    // The fixed rates are a third apart near the knees (15,000 then 20,000): a stage that
    // carries 19,000 would be reported at 15,000, and the ratio of two knees moved by whole
    // steps from run to run.
    if let (true, Some(mut passed), Some(mut failed)) = (stage.refine_knee, passed, failed) {
        while let Some(rate) = between(passed, failed) {
            // Not straight after the overload of the rate that failed: there the gateway spent
            // half as much CPU again per event at 16,250 events/s as it had at 15,000 before
            // it, with twice the RSS, and shed requests (from 20,000 twice, then 17,500). Fresh
            // services instead, brought to the rate as the climb brings them to each of its
            // rates: from the one below, which passed.
            fresh_at(layout, config, &stage, passed).await?;
            if hold(layout, config, &stage, rate, secs, &mut steps).await? {
                passed = rate;
            } else {
                failed = rate;
            }
        }
    }
    Ok(Search {
        name: stage.name,
        p99_limit_ms: stage.p99_limit_ms,
        steps,
    })
}

/// The generator's settings for a step of `stage` at `rate`.
fn load_options(stage: &Stage<'_>, rate: f64) -> Options {
    Options {
        batch: stage.batch,
        max_in_flight: 2048,
        seed: rate as u64,
        orgs: 20,
        mean_message_bytes: 200,
        org_prefix: "bench".into(),
        ..Options::default()
    }
}

/// `rate` for `LEAD_IN`, not measured: the connections a step at about that rate keeps open,
/// tokens verified, rate-limit leases taken.
async fn lead_in(stage: &Stage<'_>, rate: f64) -> anyhow::Result<()> {
    let plan = Plan::new(rate, Some(LEAD_IN), None, Duration::ZERO)?;
    eprintln!(
        "bench: {}: {rate:.0} events/s for {} s first, not measured",
        stage.name,
        LEAD_IN.as_secs()
    );
    engine::run(
        &plan,
        stage.target.clone(),
        &load_options(stage, rate),
        CancellationToken::new(),
        |_| {},
    )
    .await;
    Ok(())
}

/// How long a refined rate's fresh services take the last passing rate first.
const LEAD_IN: Duration = Duration::from_secs(5);

/// Runs `rate` once, and once more if it fails: on a machine the whole stack shares, one
/// stall (a log segment rolled, a checkpoint) can put a 10 s step's p99 over its limit at a
/// rate the next 10 s hold; a rate the stack cannot carry fails again. Both attempts go into
/// `steps`. Whether either passed.
///
/// A failed step is not excused for the CPU the hypervisor stole in it (see
/// [`procstat::Stolen`]): those bursts are the host doing this machine's own disk writes.
async fn hold(
    layout: &Layout,
    config: &StackConfig,
    stage: &Stage<'_>,
    rate: f64,
    secs: u64,
    steps: &mut Vec<Step>,
) -> anyhow::Result<bool> {
    for attempt in 1..=2 {
        settle(config).await;
        eprintln!(
            "bench: {}: {rate:.0} events/s for {secs} s{}",
            stage.name,
            if attempt > 1 { ", again" } else { "" }
        );
        let step = run_step(layout, config, stage, rate, secs).await?;
        let passed = step.passed;
        steps.push(step);
        if passed {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The rate to try between one that passed and a higher one that failed: their midpoint on a
/// grain of `KNEE_GRAIN` events/s, or none once they are within `KNEE_RESOLUTION` of the one
/// that passed (two more rates between 15,000 and 20,000).
fn between(passed: f64, failed: f64) -> Option<f64> {
    if failed - passed <= passed * KNEE_RESOLUTION {
        return None;
    }
    let mid = ((passed + failed) / 2.0 / KNEE_GRAIN).round() * KNEE_GRAIN;
    (mid > passed && mid < failed).then_some(mid)
}

/// How close a refined knee gets to the rate above it that failed, as a share of the knee.
const KNEE_RESOLUTION: f64 = 0.1;

/// Refined rates are multiples of this.
const KNEE_GRAIN: f64 = 250.0;

pub struct Results {
    pub machine: String,
    pub started: String,
    pub options: BenchOptions,
    /// wrk on `/health` just before and just after each single-event search through the
    /// gateway.
    pub http_ceilings: Vec<f64>,
    /// The gateway answering `GET /health` at the rate of the first gateway search's peak, from
    /// the same generator: the floor under its CPU per event.
    pub bare_exchange: Option<Step>,
    pub searches: Vec<Search>,
    /// The two single-event searches once more (through the gateway, then straight to the
    /// producer) right after the first pair: the producer-direct knee alone swung from 12,750
    /// to 21,250 events/s between runs of the same code an hour apart, so one pair's ratio
    /// says as much about the minute it ran in as about the gateway. Empty with `--quick`.
    pub repeats: Vec<Search>,
    pub drain: Option<drain::Drained>,
    pub kafka_perf: Option<f64>,
    pub copy: Option<f64>,
    pub record_bytes: usize,
    /// Each service's RSS before the first step, so growth during the run shows.
    pub rss_at_start: BTreeMap<String, f64>,
    /// With `--brokers`: the same stages against a cluster.
    pub cluster: Option<cluster::ClusterResults>,
    /// Kafka's cores at each warm-up step.
    pub warmup: Vec<f64>,
    /// With `--profile`: where the serving process's CPU went at each stage's peak.
    pub profiles: Vec<profile::Profile>,
}

impl Results {
    /// The HTTP ceiling the gateway's single-event knee is judged against: the mean of the
    /// readings around its stage.
    pub fn http_ceiling(&self) -> Option<f64> {
        mean(&self.http_ceilings)
    }

    /// Each run's knee of ingest stage `i` (0: single events through the gateway, 1: straight
    /// to the producer): the first search's, then its repeat's. A run without a passing step
    /// has none.
    pub fn knees(&self, i: usize) -> Vec<f64> {
        [self.searches.get(i), self.repeats.get(i)]
            .into_iter()
            .flatten()
            .filter_map(Search::knee)
            .collect()
    }

    /// Stage `i`'s knee: the mean of its runs'.
    pub fn knee(&self, i: usize) -> Option<f64> {
        mean(&self.knees(i))
    }

    /// The gateway's knee over the producer-direct knee measured right after it, for each
    /// pair of searches with both knees.
    pub fn hop_ratios(&self) -> Vec<f64> {
        let pair = |searches: &[Search]| {
            let knee = |i: usize| searches.get(i)?.knee();
            quotient(knee(0), knee(1))
        };
        [pair(&self.searches), pair(&self.repeats)]
            .into_iter()
            .flatten()
            .collect()
    }

    /// Every search of the run in the order they ran: the one-broker stack's, then the
    /// cluster's.
    pub fn every_search(&self) -> impl Iterator<Item = &Search> {
        let (first, rest) = self.searches.split_at(self.searches.len().min(2));
        let cluster = self.cluster.iter().flat_map(|c| c.searches.iter());
        first.iter().chain(&self.repeats).chain(rest).chain(cluster)
    }

    /// The cost of the gateway hop, judged: the mean of the pairs' ratios. Each pair's two
    /// searches ran minutes apart, so the machine's drift over the run cancels within a pair.
    pub fn hop_ratio(&self) -> Option<f64> {
        mean(&self.hop_ratios())
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map_or_else(|| "?".into(), |k| format!("{:.0} GiB", k / 1024.0 / 1024.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores ({cpu}), {mem} RAM, Linux {}", kernel.trim())
}

/// The rates each search steps through.
struct Rates {
    single: Vec<f64>,
    batch: Vec<f64>,
    /// At most this many warm-up steps.
    warmup_steps: usize,
    /// Whether searches refine their knee between the fixed rates.
    refine_knees: bool,
}

impl Rates {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                single: vec![1_000.0, 3_000.0],
                batch: vec![10_000.0, 30_000.0],
                warmup_steps: 2,
                refine_knees: false,
            }
        } else {
            Self {
                // From 1,000: three brokers on this machine's two cores may not hold 2,000.
                single: vec![
                    1_000.0, 2_000.0, 4_000.0, 6_000.0, 8_000.0, 10_000.0, 12_000.0, 15_000.0,
                    20_000.0, 25_000.0, 30_000.0, 40_000.0,
                ],
                batch: vec![
                    10_000.0, 25_000.0, 50_000.0, 75_000.0, 100_000.0, 150_000.0, 200_000.0,
                ],
                warmup_steps: 12,
                refine_knees: true,
            }
        }
    }
}

/// What the ingest stages found.
struct Ingested {
    searches: Vec<Search>,
    /// The single-event pair's second run, when the stages are judged and not quick.
    repeats: Vec<Search>,
    /// Kafka's cores at each warm-up step.
    warmup: Vec<f64>,
    profiles: Vec<profile::Profile>,
    /// wrk's requests/s on the gateway's `/health` just before and just after the first stage.
    ceilings: Vec<f64>,
    /// The gateway's bare HTTP exchange at the first stage's peak rate.
    bare_exchange: Option<Step>,
}

/// The ingest searches, each from fresh services: single events through the gateway and
/// straight to the producer, then batches of 100 and of 1000 through the gateway, after a
/// warm-up. `suffix` names the stack in the stage names.
///
/// `judged`: these are the stages the targets judge (the one-broker stack's). Then wrk
/// measures the HTTP ceiling on the gateway's `/health` just before each single-event search
/// through the gateway and again just after it: its knee is judged against that ceiling, and
/// the machine's speed drifts over a run (wrk on the same gateway: 82,750 req/s at one run's
/// start, 73,000-77,500 an hour later, and the gateway's CPU per event at 15,000 events/s
/// moved by a quarter between minutes), so the baseline brackets the stage instead of
/// preceding it by minutes. And, unless the rates are quick ones, the single-event pair runs
/// twice (gateway, producer, gateway, producer; see [`Results::repeats`]).
async fn ingest(
    layout: &Layout,
    config: &StackConfig,
    rates: &Rates,
    secs: u64,
    suffix: &str,
    profile_dir: Option<&std::path::Path>,
    judged: bool,
) -> anyhow::Result<Ingested> {
    let gateway = format!("http://127.0.0.1:{}", config.ports.gateway);
    let producer = format!("http://127.0.0.1:{}", config.ports.producer);
    let gateway_target: Arc<dyn Target> = Arc::new(logctl_loadgen::http::Gateway::new(
        &gateway,
        crate::load::token_source(layout),
        Options::default().request_timeout,
    )?);
    let producer_target: Arc<dyn Target> = Arc::new(targets::Producer::new(&producer)?);
    let health_target: Arc<dyn Target> = Arc::new(targets::Health::new(&gateway)?);
    let warmup = warm_up(
        layout,
        config,
        gateway_target.clone(),
        secs,
        rates.warmup_steps,
        suffix,
    )
    .await?;
    let refine_knees = rates.refine_knees;
    let stage = |name: &str, target: &Arc<dyn Target>, batch, rates, p99_limit_ms| Stage {
        name: format!("{name}{suffix}"),
        target: target.clone(),
        through_gateway: Arc::ptr_eq(target, &gateway_target),
        batch,
        rates,
        p99_limit_ms,
        refine_knee: refine_knees,
    };
    let singles = |run: &str| {
        [
            stage(
                &format!("single events through the gateway{run}"),
                &gateway_target,
                1,
                &rates.single,
                50.0,
            ),
            stage(
                &format!("single events straight to the producer{run}"),
                &producer_target,
                1,
                &rates.single,
                50.0,
            ),
        ]
    };
    let repeats = match judged && rates.refine_knees {
        true => Vec::from(singles(", second run")),
        false => Vec::new(),
    };
    let batches = [
        stage(
            "batches of 100 through the gateway",
            &gateway_target,
            100,
            &rates.batch,
            500.0,
        ),
        stage(
            "batches of 1000 through the gateway",
            &gateway_target,
            1000,
            &rates.batch,
            1_000.0,
        ),
    ];
    let stages = singles("")
        .into_iter()
        .map(|s| (s, false))
        .chain(repeats.into_iter().map(|s| (s, true)))
        .chain(batches.into_iter().map(|s| (s, false)));
    let mut searches = Vec::new();
    let mut repeated = Vec::new();
    let mut profiles = Vec::new();
    let mut ceilings = Vec::new();
    let mut bare_exchange = None;
    let health = format!("{gateway}/health");
    for (stage, repeat) in stages {
        let bracket = judged && stage.through_gateway && stage.batch == 1;
        fresh_services(layout, config).await?;
        if bracket {
            eprintln!(
                "bench: HTTP ceiling (wrk on /health), before {}",
                stage.name
            );
            ceilings.extend(baselines::wrk(&health, secs)?);
        }
        let found = search(layout, config, stage.clone(), secs).await?;
        if bracket {
            eprintln!("bench: HTTP ceiling (wrk on /health), after {}", stage.name);
            ceilings.extend(baselines::wrk(&health, secs)?);
        }
        if repeat {
            repeated.push(found);
            continue;
        }
        if let (true, Some(peak)) = (bracket, found.peak()) {
            let bare = Stage {
                name: format!("the gateway's bare HTTP exchange{suffix}"),
                target: health_target.clone(),
                through_gateway: false,
                ..stage.clone()
            };
            bare_exchange = Some(bare_exchange_step(layout, config, &bare, peak.rate, secs).await?);
        }
        if let (Some(dir), Some(peak)) = (profile_dir, found.peak()) {
            fresh_services(layout, config).await?;
            settle(config).await;
            // A profile that cannot be made costs its table, not the run's figures.
            match profile_peak(layout, config, &stage, peak, secs, dir).await {
                Ok(p) => profiles.push(p),
                Err(e) => eprintln!("bench: {}: no profile: {e:#}", stage.name),
            }
        }
        searches.push(found);
    }
    settle(config).await;
    Ok(Ingested {
        searches,
        repeats: repeated,
        warmup,
        profiles,
        ceilings,
        bare_exchange,
    })
}

/// One step of `GET /health` ([`targets::Health`]) at `rate`, on fresh services brought to it
/// first as a refined knee's are: what the gateway spends per request on HTTP alone, at the
/// rate its CPU per event is judged at.
async fn bare_exchange_step(
    layout: &Layout,
    config: &StackConfig,
    stage: &Stage<'_>,
    rate: f64,
    secs: u64,
) -> anyhow::Result<Step> {
    fresh_at(layout, config, stage, rate).await?;
    eprintln!("bench: {}: {rate:.0} requests/s for {secs} s", stage.name);
    run_step(layout, config, stage, rate, secs).await
}

/// Restarted services, the topic drained, then `rate` of `stage` for [`LEAD_IN`]: the start of
/// a step that must not run in the wake of an earlier overload.
async fn fresh_at(
    layout: &Layout,
    config: &StackConfig,
    stage: &Stage<'_>,
    rate: f64,
) -> anyhow::Result<()> {
    fresh_services(layout, config).await?;
    settle(config).await;
    lead_in(stage, rate).await
}

/// The stage's peak rate held once more with `perf` sampling the service that takes its
/// requests: its flame graph goes to `dir`, its parts into the report, priced at the service's
/// CPU per event in the peak step itself (sampling DWARF stacks costs the profiled process
/// CPU of its own).
async fn profile_peak(
    layout: &Layout,
    config: &StackConfig,
    stage: &Stage<'_>,
    peak: &Step,
    secs: u64,
    dir: &std::path::Path,
) -> anyhow::Result<profile::Profile> {
    let rate = peak.rate;
    let service = if stage.through_gateway {
        Component::Gateway(0)
    } else {
        Component::Producer(0)
    };
    let name = service.name();
    let pid = stack::running_pid(service, layout)
        .ok_or_else(|| anyhow::anyhow!("{name} is not running: nothing to profile"))?;
    std::fs::create_dir_all(dir)?;
    let slug = profile::slug(&stage.name);
    let data = dir.join(format!("{slug}.perf.data"));
    eprintln!(
        "bench: {}: {rate:.0} events/s again, {name} sampled by perf",
        stage.name
    );
    let mut attempt = 1;
    let folded = loop {
        let mut perf = profile::start(pid, secs, &data)?;
        run_step(layout, config, stage, rate, secs).await?;
        let status = tokio::task::spawn_blocking(move || perf.wait()).await??;
        let folded = tokio::task::spawn_blocking({
            let data = data.clone();
            move || profile::fold(&data)
        })
        .await?
        .with_context(|| format!("perf record {status}"));
        // perf once left a file with no samples in it and nothing in its log, the stage's
        // profile lost for good; sampling the same rate again recorded normally.
        match folded {
            Err(e) if attempt == 1 => {
                eprintln!("bench: {}: {e:#}; sampling once more", stage.name);
                attempt += 1;
            }
            result => break result?,
        }
    };
    // DWARF samples make perf.data large; the folded stacks keep what the graph needs.
    let _ = std::fs::remove_file(&data);
    std::fs::write(dir.join(format!("{slug}.folded")), folded.join("\n"))?;
    let svg = dir.join(format!("{slug}.svg"));
    profile::flame_graph(
        &folded,
        &format!("{name}: {} at {rate:.0} events/s", stage.name),
        &svg,
    )?;
    let (sampled_ns, parts) = profile::parts(&folded);
    Ok(profile::Profile {
        stage: stage.name.clone(),
        service: name.clone(),
        rate,
        sampled_ns,
        parts,
        cpu_us_per_event: us_per_event(peak, &name),
        flame_graph: svg,
    })
}

/// Unmeasured batched load, step after step, until Kafka's CPU for it stops falling and its
/// JIT compilers are close to idle: a just-started JVM (a bench's own cluster always is)
/// compiles its hot paths over its first minute or so of load, each broker on its own, and the
/// first stages would be charged for it (on three fresh brokers the first measured stage once
/// used 1.26 cores of Kafka at 2,000 events/s, a later one 0.25 at 10,000). Its CPU alone is
/// not enough to judge by: three fresh brokers on two cores saturate them, so their CPU holds
/// level while compiling takes a shrinking share (1.23 then 1.24 cores, the compilers at 0.6
/// of them; the next stage then failed at 1,000 events/s with Kafka at 1.57 cores, and by hand
/// the same warm-up took 8 steps, Kafka 1.4 → 0.46 cores and its compilers 0.67 → 0.09).
/// Returns Kafka's cores at each warm-up step.
async fn warm_up(
    layout: &Layout,
    config: &StackConfig,
    target: Arc<dyn Target>,
    secs: u64,
    max_steps: usize,
    suffix: &str,
) -> anyhow::Result<Vec<f64>> {
    let mut kafka: Vec<f64> = Vec::new();
    // Nothing is restarted during the warm-up: the brokers keep their pids.
    let brokers: Vec<u32> = Component::all(config)
        .into_iter()
        .filter(|c| matches!(c, Component::Kafka(_)))
        .filter_map(|c| stack::running_pid(c, layout))
        .collect();
    for n in 1..=max_steps {
        eprintln!(
            "bench: warming up{suffix}, step {n} (batches of 100 at {} events/s, not measured)",
            WARMUP_RATE
        );
        let stage = Stage {
            name: format!("warm-up{suffix}"),
            target: target.clone(),
            through_gateway: false,
            batch: 100,
            rates: &[WARMUP_RATE],
            p99_limit_ms: 500.0,
            refine_knee: false,
        };
        let (jit_before, started) = (procstat::jit_compiler_seconds(&brokers), Instant::now());
        let step = run_step(layout, config, &stage, WARMUP_RATE, secs).await?;
        let jit = (procstat::jit_compiler_seconds(&brokers) - jit_before)
            / started.elapsed().as_secs_f64().max(1e-9);
        settle(config).await;
        let cores = by_role(&step.cores).get("kafka").copied().unwrap_or(0.0);
        let compiling = jit > JIT_IDLE_CORES_PER_BROKER * brokers.len().max(1) as f64;
        eprintln!("bench: warm-up step {n}: Kafka {cores:.2} cores, its JIT compilers {jit:.2}");
        let steady =
            step.passed && !compiling && kafka.last().is_some_and(|prev| cores >= prev * 0.9);
        kafka.push(cores);
        if steady {
            break;
        }
    }
    Ok(kafka)
}

/// Compilers using less than this, per broker, over a warm-up step have done the bulk of their
/// work: a warmed broker's still use a few hundredths of a core as new paths run.
const JIT_IDLE_CORES_PER_BROKER: f64 = 0.05;

/// The warm-up's rate: well inside what one broker and three take batched.
const WARMUP_RATE: f64 = 20_000.0;

/// A small pool on the stack's PostgreSQL, as the stack's own password opens it.
async fn pool(layout: &Layout, config: &StackConfig) -> anyhow::Result<sqlx::PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(2)
        .connect(&stack::postgres::database_url(
            stack::Component::Postgres.listen(config),
            &layout.secret(stack::postgres::PASSWORD_SECRET)?,
        ))
        .await?)
}

/// Where under the state dir the bench makes its one-broker stack, and its cluster.
pub const ONE_BROKER_DIR: &str = "bench-stack";
pub const CLUSTER_DIR: &str = "bench-cluster";

/// Runs every stage against a one-broker stack made for the bench beside `beside` (the state
/// dir), then (with `--brokers`) against a cluster made for it once that one is gone: neither
/// touches the stack in `beside`, and both are deleted with what they stored.
pub async fn run(beside: &Layout, options: BenchOptions) -> anyhow::Result<Results> {
    let started = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    let secs = if options.quick { 4 } else { 10 };
    let rates = Rates::new(options.quick);
    if options.profile.is_some() {
        profile::check_perf()?;
    }

    eprintln!(
        "bench: starting a one-broker stack of its own in {}",
        beside.root.join(ONE_BROKER_DIR).display()
    );
    let stack = scratch::ScratchStack::start(beside, ONE_BROKER_DIR, 1)?;
    let (layout, config) = (&stack.layout, &stack.config()?);
    let rss_at_start = services_rss(layout, config);
    let Ingested {
        searches,
        repeats,
        warmup,
        profiles,
        ceilings: http_ceilings,
        bare_exchange,
    } = ingest(
        layout,
        config,
        &rates,
        secs,
        "",
        options.profile.as_deref(),
        true,
    )
    .await?;

    let pool = pool(layout, config).await?;
    let drain_events: u64 = if options.quick { 100_000 } else { 1_000_000 };
    let drain = if options.skip_drain {
        None
    } else {
        eprintln!("bench: consumer drain of {drain_events} pre-filled events");
        let d = drain::measure(layout, config, &pool, config.consumers, drain_events).await?;
        Some(d)
    };
    let record_bytes = drain.as_ref().map_or(300, |d| d.mean_record_bytes);
    eprintln!("bench: Kafka's own producer (ProducerPerformance)");
    let kafka_perf = Some(baselines::kafka_perf(
        layout,
        config,
        drain_events,
        record_bytes,
    )?);
    eprintln!("bench: PostgreSQL COPY of {drain_events} rows");
    let copy = Some(baselines::copy(&pool, drain_events, 200).await?);
    // Gone before the cluster starts: its processes, and the disk its events took.
    pool.close().await;
    drop(stack);

    let cluster = match options.brokers {
        Some(n) if n > 1 => {
            eprintln!("bench: starting a {n}-broker cluster of its own");
            let bench_cluster = scratch::ScratchStack::start(beside, CLUSTER_DIR, n)?;
            let cconfig = bench_cluster.config()?;
            let suffix = format!(", {n} brokers");
            let Ingested {
                searches, warmup, ..
            } = ingest(
                &bench_cluster.layout,
                &cconfig,
                &rates,
                secs,
                &suffix,
                None,
                false,
            )
            .await?;
            eprintln!("bench: cluster: Kafka's own producer (ProducerPerformance)");
            let kafka_perf = Some(baselines::kafka_perf(
                &bench_cluster.layout,
                &cconfig,
                drain_events,
                record_bytes,
            )?);
            let drains = if options.skip_drain {
                Vec::new()
            } else {
                cluster::drains(&bench_cluster, drain_events).await?
            };
            Some(cluster::ClusterResults {
                brokers: n,
                replication_factor: cconfig.replication_factor(),
                min_insync_replicas: cconfig.min_insync_replicas(),
                searches,
                warmup,
                kafka_perf,
                drains,
            })
        }
        _ => None,
    };
    Ok(Results {
        machine: machine(),
        started,
        options,
        http_ceilings,
        bare_exchange,
        searches,
        repeats,
        drain,
        kafka_perf,
        copy,
        record_bytes,
        rss_at_start,
        cluster,
        warmup,
        profiles,
    })
}

/// Restarts the services, so each stage starts from fresh processes: an allocator keeps some of
/// what the previous stage's failing (overload) step allocated, and its RSS would be charged to
/// the next stage's target rate. That overload memory still shows, in the failing steps' rows.
async fn fresh_services(layout: &Layout, config: &StackConfig) -> anyhow::Result<()> {
    let services = services(config);
    for c in services.iter().rev() {
        stack::stop_one(layout, *c);
    }
    for c in &services {
        stack::start_one(layout, config, *c).await?;
    }
    Ok(())
}

fn services(config: &StackConfig) -> Vec<Component> {
    components(config)
        .into_iter()
        .filter(|c| c.is_service())
        .collect()
}

fn services_rss(layout: &Layout, config: &StackConfig) -> BTreeMap<String, f64> {
    services(config)
        .into_iter()
        .filter_map(|c| {
            let pid = stack::running_pid(c, layout)?;
            Some((c.name(), procstat::rss_mib(pid)?))
        })
        .collect()
}

const SERVICES: [&str; 3] = ["gateway", "producer", "consumer"];

/// The targets' rates: single events through the gateway, then batches of 100 and of 1000.
const TARGET_RATES: [(usize, f64); 3] = [(0, 10_000.0), (2, 100_000.0), (3, 100_000.0)];

/// Each service's highest RSS over the steps at the targets' rates and the drain.
fn peak_rss(r: &Results) -> BTreeMap<&'static str, f64> {
    let mut peaks = BTreeMap::new();
    let steps = TARGET_RATES.iter().filter_map(|(stage, rate)| {
        r.searches
            .get(*stage)?
            .steps
            .iter()
            .find(|s| s.rate == *rate && s.passed)
    });
    let readings = steps
        .flat_map(|step| {
            SERVICES
                .into_iter()
                .filter_map(|name| Some((name, *step.rss_mib.get(name)?)))
        })
        .chain(
            r.drain
                .as_ref()
                .and_then(|d| d.consumer_rss_mib)
                .map(|m| ("consumer", m)),
        );
    for (name, mib) in readings {
        let e = peaks.entry(name).or_insert(0.0f64);
        *e = e.max(mib);
    }
    peaks
}

/// Kafka's cores over the warm-up's steps, e.g. "0.91 → 0.52 → 0.50 cores".
fn warmup_text(kafka: &[f64]) -> String {
    let steps: Vec<String> = kafka.iter().map(|c| format!("{c:.2}")).collect();
    format!("{} cores over {} steps", steps.join(" → "), steps.len())
}

fn ratio(ours: Option<f64>, base: Option<f64>) -> String {
    quotient(ours, base).map_or_else(|| "–".into(), |r| format!("{r:.2}"))
}

/// The mean of `values`; None when there are none.
fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// `ours / base` when both were measured and the baseline is above zero.
fn quotient(ours: Option<f64>, base: Option<f64>) -> Option<f64> {
    ours.zip(base).filter(|(_, b)| *b > 0.0).map(|(o, b)| o / b)
}

/// A ratio judged against `target`: two decimals, or as many more (up to four) as it takes for
/// the printed figure to fall on the same side of the target as the ratio itself, so a miss
/// never reads as a hit (16,250 against 66,099 is 0.246, not "0.25" beside "no").
fn ratio_to(ours: Option<f64>, base: Option<f64>, target: f64) -> String {
    shown_against(quotient(ours, base), target)
}

/// A ratio with as many decimals as it takes to print on the same side of `target` as it is.
fn shown_against(ratio: Option<f64>, target: f64) -> String {
    let Some(r) = ratio else {
        return "–".into();
    };
    let side = |x: f64| x.partial_cmp(&target);
    (2..=4)
        .map(|decimals| format!("{r:.decimals$}"))
        .find(|printed| printed.parse::<f64>().ok().and_then(side) == side(r))
        .unwrap_or_else(|| format!("{r:.4}"))
}

/// How the HTTP ceiling was measured, for its table cell: the two runs of wrk around the stage
/// beside their mean.
fn ceiling_measured(ceilings: &[f64]) -> String {
    match ceilings {
        [before, after] => format!(
            " just before and after the stage: {} and {}, mean",
            num(*before),
            num(*after)
        ),
        [_, _, ..] => format!(
            " just before and after each run of the stage: {}, mean",
            listed(ceilings)
        ),
        _ => String::new(),
    }
}

/// `a, b and c`, each as a whole number.
fn listed(values: &[f64]) -> String {
    let shown: Vec<String> = values.iter().map(|v| num(*v)).collect();
    match shown.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => shown.concat(),
    }
}

/// A knee and, when its stage ran twice, each run's (`16,875 events/s (runs: 17,500 and
/// 16,250)`).
fn knee_text(knees: &[f64], unit: &str) -> String {
    match mean(knees) {
        None => "–".into(),
        Some(m) if knees.len() > 1 => format!("{} {unit} (runs: {})", num(m), listed(knees)),
        Some(m) => format!("{} {unit}", num(m)),
    }
}

/// Targets as ratios to the same run's baselines (machines of this kind differ threefold).
const GATEWAY_OF_CEILING: f64 = 0.25;
const GATEWAY_OF_PRODUCER: f64 = 0.8;
const GATEWAY_CPU_OF_PRODUCER: f64 = 1.5;
const DRAIN_OF_COPY: f64 = 0.75;

fn met_ratio(ours: Option<f64>, base: Option<f64>, at_least: f64) -> &'static str {
    match quotient(ours, base) {
        Some(r) if r >= at_least => "yes",
        Some(_) => "**no**",
        None => "–",
    }
}

/// A summary row: the gateway's CPU per event at its knee against a producer's, and whether
/// it is within the target. Nothing when either was not measured.
fn cpu_row(
    md: &mut String,
    what: &str,
    gateway_us: Option<f64>,
    against: &str,
    producer_us: Option<f64>,
) {
    let (Some(gateway_us), Some(producer_us)) = (gateway_us, producer_us) else {
        return;
    };
    let cost = gateway_us / producer_us.max(1e-9);
    let _ = writeln!(
        md,
        "| {what} | {gateway_us:.1} µs | {against}: {producer_us:.1} µs | {} | ≤ {GATEWAY_CPU_OF_PRODUCER} | {} |",
        ratio_to(Some(cost), Some(1.0), GATEWAY_CPU_OF_PRODUCER),
        if cost <= GATEWAY_CPU_OF_PRODUCER { "yes" } else { "**no**" }
    );
}

/// The gateway's CPU per bare HTTP exchange against the producer's per event in the gateway's
/// knee step, and how much of the CPU target that leaves for the gateway's own work (token,
/// JSON, rate limit, the call onward): nothing, when the exchange alone is over it.
fn bare_exchange_row(md: &mut String, bare: Option<&Step>, knee: Option<&Step>) {
    let (Some(bare), Some(knee)) = (bare, knee) else {
        return;
    };
    let (Some(bare_us), Some(producer_us)) = (
        us_per_event(bare, "gateway"),
        us_per_event(knee, "producer"),
    ) else {
        return;
    };
    let room = GATEWAY_CPU_OF_PRODUCER * producer_us - bare_us;
    let _ = writeln!(
        md,
        "| the gateway's bare HTTP exchange at that rate ({} `GET /health` a second from the same generator: no token, no body, nothing behind it) | {bare_us:.1} µs per request | the producer's per event in the gateway's knee step: {producer_us:.1} µs | {:.2} | – | {} |",
        num(bare.rate),
        bare_us / producer_us.max(1e-9),
        if room > 0.0 {
            format!("leaves {room:.1} µs per event under the target above for the gateway's own work")
        } else {
            format!("**over the target above by {:.1} µs on its own**: no cut to the gateway's own work reaches it", -room)
        }
    );
}

/// A role's CPU per accepted event over a step, in µs.
fn us_per_event(step: &Step, role: &str) -> Option<f64> {
    let rate = step.report.accepted_rate();
    (rate > 0.0).then_some(())?;
    Some(by_role(&step.cores).get(role)? * 1e6 / rate)
}

fn met(value: Option<f64>, target: f64) -> &'static str {
    match value {
        Some(v) if v >= target => "yes",
        Some(_) => "**no**",
        None => "–",
    }
}

/// The markdown report.
pub fn render(r: &Results) -> String {
    let peak = |i: usize| r.searches.get(i).and_then(Search::peak);
    // The offered rate of the highest passing step: passing means it was sustained (on
    // schedule, at most 0.1% errors) within the latency limit.
    let (gw, pr, b100, b1000) = (r.knee(0), r.knee(1), r.knee(2), r.knee(3));
    let drain_rate = r.drain.as_ref().map(drain::Drained::rate);
    let mut md = String::new();
    let _ = writeln!(md, "# logctl benchmark results\n");
    let _ = writeln!(
        md,
        "Measured {} on {} with `logctl bench{}` against a one-broker stack it made for the run (the defaults of `logctl up`, deleted after), everything \
         co-located: generator, services, Kafka, PostgreSQL and Redis share the machine. Build: {}. \
         The stack is warmed up first (steps of batched load, not measured, until Kafka's CPU for them stops falling and its JIT compilers are close to idle: {}) and the services are restarted before each stage. Rates are stepped up, 10 s a step; a step passes with p99 latency (from the planned send \
         time) under its limit, at most 0.1% errors and the generator on schedule; a step that fails is held once more, and the climb stops at a rate that fails twice{}; *ours* is \
         the highest passing step's rate. Baselines are measured in the same run; the HTTP ceiling just before and just after the stage judged against it (the machine's speed drifts over a run), and the ratio takes their mean.{}\n",
        r.started,
        r.machine,
        if r.options.quick { " --quick" } else { "" },
        if cfg!(debug_assertions) { "debug (figures not representative)" } else { "release" },
        warmup_text(&r.warmup),
        if r.options.quick {
            String::new()
        } else {
            format!(
                ", then the gap between the highest rate that passed and that one is halved (on multiples of {KNEE_GRAIN:.0} events/s) until it is within {:.0}% of the rate that passed, each rate tried on restarted services after {} s at the rate below it",
                KNEE_RESOLUTION * 100.0,
                LEAD_IN.as_secs()
            )
        },
        if r.repeats.is_empty() {
            ""
        } else {
            " The two single-event searches run twice, as pairs (through the gateway, then straight to the producer, then both again): a knee is the mean of its two runs, and the cost of the gateway hop the mean of the pairs' ratios, each pair's searches minutes apart (the producer-direct knee alone has moved by half between runs an hour apart)."
        }
    );
    let _ = writeln!(
        md,
        "| stage | ours | baseline (same run) | ours / baseline | target | met |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    let opt =
        |v: Option<f64>, unit: &str| v.map_or_else(|| "–".into(), |v| format!("{} {unit}", num(v)));
    let ceiling = r.http_ceiling();
    let _ = writeln!(
        md,
        "| single events through the gateway, p99 < 50 ms | {} | HTTP ceiling (`wrk` on `/health`{}): {} | {} | ≥ {GATEWAY_OF_CEILING} × ceiling | {} |",
        knee_text(&r.knees(0), "events/s"), ceiling_measured(&r.http_ceilings), opt(ceiling, "req/s"), ratio_to(gw, ceiling, GATEWAY_OF_CEILING), met_ratio(gw, ceiling, GATEWAY_OF_CEILING)
    );
    let _ = writeln!(
        md,
        "| single events straight to the producer, p99 < 50 ms | {} | Kafka `ProducerPerformance`: {} | {} | – | – |",
        knee_text(&r.knees(1), "events/s"), opt(r.kafka_perf, "records/s"), ratio(pr, r.kafka_perf)
    );
    let hop = r.hop_ratio();
    let pairs = r.hop_ratios();
    let hop_shown = match pairs[..] {
        [_, _, ..] => format!(
            "{} (pairs: {})",
            shown_against(hop, GATEWAY_OF_PRODUCER),
            pairs
                .iter()
                .map(|h| shown_against(Some(*h), GATEWAY_OF_PRODUCER))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => shown_against(hop, GATEWAY_OF_PRODUCER),
    };
    let _ = writeln!(
        md,
        "| cost of the gateway hop: gateway knee | {} | producer-direct knee searched right after it: {} | {hop_shown} | ≥ {GATEWAY_OF_PRODUCER} | {} |",
        knee_text(&r.knees(0), "events/s"), knee_text(&r.knees(1), "events/s"), met(hop, GATEWAY_OF_PRODUCER)
    );
    let gateway_us = peak(0).and_then(|st| us_per_event(st, "gateway"));
    cpu_row(
        &mut md,
        "gateway CPU per event at its knee",
        gateway_us,
        "the producer's in the same step",
        peak(0).and_then(|st| us_per_event(st, "producer")),
    );
    // The producer behind the gateway gets the gateway's coalesced calls, dozens of events
    // each: the better the gateway batches, the cheaper that producer and the worse the row
    // above. Serving single events itself it does the gateway's job: HTTP per event.
    cpu_row(
        &mut md,
        "gateway CPU per event at its knee, against the producer taking single events itself",
        gateway_us,
        "the producer's at its own knee",
        peak(1).and_then(|st| us_per_event(st, "producer")),
    );
    bare_exchange_row(&mut md, r.bare_exchange.as_ref(), peak(0));
    if let Some(g) = peak(0).and_then(|st| st.gateway.as_ref()) {
        if let Some(v) = &g.stored {
            let _ = writeln!(
                md,
                "| end to end at the gateway knee (accepted → stored) | p50 {:.1} ms, p99 {:.1} ms | ingest: p50 {:.1} ms, p99 {:.1} ms | – | – | {} |",
                v.end_to_end_ms.p50,
                v.end_to_end_ms.p99,
                peak(0).map_or(0.0, |st| st.report.latency_ms.p50),
                peak(0).map_or(0.0, |st| st.report.latency_ms.p99),
                if v.lost == 0 && v.duplicated == 0 {
                    "none lost or stored twice".to_owned()
                } else {
                    format!("**{} lost, {} stored twice**", v.lost, v.duplicated)
                }
            );
        }
    }
    let _ = writeln!(
        md,
        "| batches of 100, p99 < 500 ms | {} | Kafka `ProducerPerformance`: {} | {} | 100,000 events/s | {} |",
        opt(b100, "events/s"), opt(r.kafka_perf, "records/s"), ratio(b100, r.kafka_perf), met(b100, 100_000.0)
    );
    let _ = writeln!(
        md,
        "| batches of 1000, p99 < 1 s | {} | Kafka `ProducerPerformance`: {} | {} | 100,000 events/s | {} |",
        opt(b1000, "events/s"), opt(r.kafka_perf, "records/s"), ratio(b1000, r.kafka_perf), met(b1000, 100_000.0)
    );
    let _ = writeln!(
        md,
        "| consumer drain of {} pre-filled events | {} | PostgreSQL `COPY`: {} | {} | ≥ {DRAIN_OF_COPY} × `COPY` | {} |",
        r.drain.as_ref().map_or_else(|| "–".into(), |d| num(d.events as f64)),
        opt(drain_rate, "rows/s"), opt(r.copy, "rows/s"), ratio_to(drain_rate, r.copy, DRAIN_OF_COPY), met_ratio(drain_rate, r.copy, DRAIN_OF_COPY)
    );
    let peaks = peak_rss(r);
    if !peaks.is_empty() {
        let start: Vec<String> = SERVICES
            .iter()
            .filter_map(|n| r.rss_at_start.get(*n).map(|m| format!("{m:.0}")))
            .collect();
        let shown: Vec<String> = peaks
            .iter()
            .map(|(n, m)| format!("{n} {m:.0} MiB"))
            .collect();
        let max = peaks.values().fold(0.0f64, |a, b| a.max(*b));
        let _ = writeln!(
            md,
            "| peak RSS of each service at the targets' rates (10,000 single events/s, 100,000 batched events/s, the drain; before the run: {} MiB) | {} | – | – | < 64 MiB each | {} |",
            start.join(" / "),
            shown.join(", "),
            if max < 64.0 { "yes" } else { "**no**" }
        );
    }
    if let Some(step) = peak(0) {
        let _ = writeln!(
            md,
            "| generator CPU at the gateway peak ({} req/s) | {:.2} cores | – | – | < 0.5 core at 10,000 req/s | {} |",
            num(step.rate),
            step.generator_cores,
            if step.rate >= 10_000.0 {
                if step.generator_cores < 0.5 { "yes" } else { "**no**" }
            } else {
                "not reached"
            }
        );
    }
    let _ = writeln!(
        md,
        "\nKafka's baseline sends {} records of {} bytes (our mean record) with our producer's settings \
         (acks=all, lz4, linger 5 ms, idempotent); `COPY` loads the same number of rows into a copy of \
         the table with its indexes. The drain is timed from the consumer's launch (with the \
         backlog waiting) until PostgreSQL holds every event.\n",
        r.drain.as_ref().map_or_else(|| "the same number of".into(), |d| num(d.events as f64)),
        r.record_bytes
    );
    if let Some(c) = &r.cluster {
        render_cluster(&mut md, r, c);
    }
    per_core(&mut md, r);
    profile::render(&mut md, &r.profiles);
    capacity::render(&mut md, r);
    let _ = writeln!(md, "## Every step, and where the time went\n");
    let _ = writeln!(
        md,
        "CPU in cores per component over the step (2.00 is all of a 2-core machine); peak RSS is \
         each service's high-water mark during the step (VmHWM, reset before it).\n"
    );
    for s in r.every_search() {
        step_table(&mut md, s);
    }
    let _ = writeln!(
        md,
        "Reproduce: `scripts/start` (it builds logctl), `logctl down` (the bench makes stacks of its own; yours would sit idle beside them), then `~/.cache/logctl/target/release/logctl bench --brokers 3` (about 40 minutes; without `--brokers`, about 25)."
    );
    md
}

/// One search's steps: rates, latencies, CPU per component, peak RSS; through the gateway also
/// end-to-end latency and what the rate limiter did.
fn step_table(md: &mut String, s: &Search) {
    let _ = writeln!(md, "### {} (p99 limit {} ms)\n", s.name, s.p99_limit_ms);
    let names: Vec<String> = s
        .steps
        .first()
        .map(|st| st.cores.keys().cloned().collect())
        .unwrap_or_default();
    let through_gateway = s.steps.iter().any(|st| st.gateway.is_some());
    let gateway_heads = if through_gateway {
        " end to end p50 / p99 ms | Redis round trips | decided in memory | Redis breaker transitions |"
    } else {
        ""
    };
    let _ = writeln!(
        md,
        "| offered events/s | accepted events/s | p50 ms | p99 ms | errors | on schedule |{gateway_heads} {} | generator | peak RSS MiB gateway / producer / consumer | CPU stolen (worst 200 ms) | passed |",
        names.join(" | ")
    );
    let extra = if through_gateway { 4 } else { 0 };
    let _ = writeln!(md, "|{}", "---|".repeat(10 + extra + names.len()));
    for (i, st) in s.steps.iter().enumerate() {
        let held_again = s.steps.get(i + 1).is_some_and(|next| next.rate == st.rate);
        let rep = &st.report;
        let cores: Vec<String> = names
            .iter()
            .map(|n| format!("{:.2}", st.cores.get(n).copied().unwrap_or(0.0)))
            .collect();
        let rss: Vec<String> = SERVICES
            .iter()
            .map(|n| st.rss_mib.get(*n).map_or("–".into(), |m| format!("{m:.0}")))
            .collect();
        let gateway_cells = match (&st.gateway, through_gateway) {
            (Some(g), _) => format!(
                " {} | {} | {} | {} |",
                g.stored.as_ref().map_or_else(
                    || "–".to_owned(),
                    |v| {
                        let missing = if v.lost > 0 {
                            format!(
                                " ({} not stored within {} s)",
                                num(v.lost as f64),
                                STORED_WITHIN.as_secs()
                            )
                        } else {
                            String::new()
                        };
                        format!(
                            "{:.1} / {:.1}{missing}",
                            v.end_to_end_ms.p50, v.end_to_end_ms.p99
                        )
                    }
                ),
                num(g.limiter.redis_round_trips),
                num(g.limiter.fallback_decisions),
                num(g.limiter.breaker_transitions),
            ),
            (None, true) => " – | – | – | – |".to_owned(),
            (None, false) => String::new(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} | {:.1} | {} | {} |{gateway_cells} {} | {:.2} | {} | {:.1}% ({:.0}%) | {} |",
            num(st.rate),
            num(rep.accepted_rate()),
            rep.latency_ms.p50,
            rep.latency_ms.p99,
            errors_cell(rep),
            if rep.fell_behind { "no" } else { "yes" },
            cores.join(" | "),
            st.generator_cores,
            rss.join(" / "),
            st.stolen.share * 100.0,
            st.stolen.worst * 100.0,
            match (st.passed, held_again) {
                (true, _) => "yes",
                (false, true) => "no, held again",
                (false, false) => "no",
            }
        );
    }
    let _ = writeln!(md);
}

/// The error rate, and what the errors were: a failed step says whether it was shed (503),
/// limited (429) or left unanswered.
fn errors_cell(rep: &Report) -> String {
    let mut kinds: Vec<String> = rep
        .statuses
        .iter()
        .filter(|(s, _)| !(200..300).contains(*s))
        .map(|(s, n)| format!("{s}: {}", num(*n as f64)))
        .collect();
    if rep.transport_errors > 0 {
        kinds.push(format!("no answer: {}", num(rep.transport_errors as f64)));
    }
    let rate = format!("{:.2}%", rep.error_rate() * 100.0);
    if kinds.is_empty() {
        rate
    } else {
        format!("{rate} ({})", kinds.join(", "))
    }
}

/// A component's role: its name without the instance number (`kafka-2` is a broker).
fn role(name: &str) -> &str {
    match name.rsplit_once('-') {
        Some((role, n)) if n.parse::<u16>().is_ok() => role,
        _ => name,
    }
}

/// Cores per role: every broker's together, every consumer instance's together.
fn by_role(cores: &BTreeMap<String, f64>) -> BTreeMap<&str, f64> {
    let mut out = BTreeMap::new();
    for (name, c) in cores {
        *out.entry(role(name)).or_insert(0.0) += c;
    }
    out
}

/// Events/s per core of each role that used a measurable share of a core (at least 0.01) while
/// `rate` events/s went through: the events-per-core table and the capacity model read these.
fn events_per_core(rate: f64, cores: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    by_role(cores)
        .into_iter()
        .filter(|(_, c)| *c >= 0.01)
        .map(|(role, c)| (role.to_owned(), rate / c))
        .collect()
}

const ROLES: [&str; 6] = [
    "gateway", "producer", "kafka", "postgres", "consumer", "redis",
];

/// Events/s per core of each role at each stage's peak step and in each drain: what the
/// capacity model (bench/CAPACITY.md) scales from.
fn per_core(md: &mut String, r: &Results) {
    let mut rows: Vec<(String, f64, BTreeMap<String, f64>)> = Vec::new();
    for s in r.every_search() {
        if let Some(st) = s.peak() {
            let rate = st.report.accepted_rate();
            rows.push((
                format!("{} ({} offered)", s.name, num(st.rate)),
                rate,
                events_per_core(rate, &st.cores),
            ));
        }
    }
    let one = r.drain.iter().map(|d| ("1 broker".to_owned(), d));
    let many = r.cluster.iter().flat_map(|c| {
        c.drains
            .iter()
            .map(|d| (format!("{} brokers", c.brokers), d))
    });
    for (stack, d) in one.chain(many) {
        rows.push((
            format!("drain, {} consumer(s), {stack}", d.consumers),
            d.rate(),
            events_per_core(d.rate(), &d.cores),
        ));
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "## Events per core\n\n\
         Events/s per core each role used at each stage's highest passing step and in each \
         drain (all brokers together, all consumer instances together); – where a role did not \
         take part or was not measured. The ingest stages store as they go, so PostgreSQL and the \
         consumer appear there too.\n"
    );
    let _ = writeln!(md, "| stage | events/s | {} |", ROLES.join(" | "));
    let _ = writeln!(md, "|{}", "---|".repeat(2 + ROLES.len()));
    for (name, rate, per_core) in rows {
        let cells: Vec<String> = ROLES
            .iter()
            .map(|role| per_core.get(*role).map_or_else(|| "–".into(), |e| num(*e)))
            .collect();
        let _ = writeln!(md, "| {name} | {} | {} |", num(rate), cells.join(" | "));
    }
    let _ = writeln!(md);
}

/// The cluster's figures beside the one-broker stack's of the same run.
fn render_cluster(md: &mut String, r: &Results, c: &cluster::ClusterResults) {
    let n = c.brokers;
    let one = |i: usize| r.knee(i);
    let many = |i: usize| c.searches.get(i).and_then(Search::knee);
    let opt = |v: Option<f64>| v.map_or_else(|| "–".into(), num);
    let _ = writeln!(
        md,
        "## {n} brokers: what replication costs\n\n\
         The same stages against a cluster of {n} Kafka brokers made for the bench on this \
         machine (replication factor {}, min ISR {}, acks=all: a record is acknowledged once \
         {} brokers have it), with one gateway and one producer as above, so the ratio of the \
         two columns is the cost of replication. Its warm-up: all brokers' {}. It is made once the one-broker \
         stack is gone. Rates in events/s (records/s, rows/s).\n",
        c.replication_factor,
        c.min_insync_replicas,
        c.min_insync_replicas,
        warmup_text(&c.warmup)
    );
    let _ = writeln!(
        md,
        "| stage | 1 broker | {n} brokers | {n} / 1 | baseline on {n} brokers (same run) | {n} brokers / baseline |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    let ceiling = format!("HTTP ceiling: {}", opt(r.http_ceiling()));
    let perf = format!("`ProducerPerformance`: {}", opt(c.kafka_perf));
    let rows = [
        (
            "single events through the gateway, p99 < 50 ms",
            0,
            &ceiling,
            r.http_ceiling(),
        ),
        (
            "single events straight to the producer, p99 < 50 ms",
            1,
            &perf,
            c.kafka_perf,
        ),
        ("batches of 100, p99 < 500 ms", 2, &perf, c.kafka_perf),
        ("batches of 1000, p99 < 1 s", 3, &perf, c.kafka_perf),
    ];
    for (name, i, base_name, base) in rows {
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {base_name} | {} |",
            opt(one(i)),
            opt(many(i)),
            ratio(many(i), one(i)),
            ratio(many(i), base)
        );
    }
    let _ = writeln!(
        md,
        "| Kafka's `ProducerPerformance` ({} records) | {} | {} | {} | – | – |",
        r.drain
            .as_ref()
            .map_or_else(|| "–".into(), |d| num(d.events as f64)),
        opt(r.kafka_perf),
        opt(c.kafka_perf),
        ratio(c.kafka_perf, r.kafka_perf)
    );
    let one_drain = r.drain.as_ref().map(drain::Drained::rate);
    let first = c.drains.first().map(drain::Drained::rate);
    if !c.drains.is_empty() {
        let _ = writeln!(
            md,
            "| drain, 1 consumer | {} | {} | {} | `COPY`: {} | {} |",
            opt(one_drain),
            opt(first),
            ratio(first, one_drain),
            opt(r.copy),
            ratio(first, r.copy)
        );
        let _ = writeln!(
            md,
            "\n### The drain as the group grows ({n} brokers, 6 partitions)\n\n\
             Each drain: every consumer stopped, {} events pre-filled, then this many consumers \
             launched at once and timed from their launch until PostgreSQL holds every event \
             (start-up, group joins and rebalances included).\n",
            num(c.drains[0].events as f64)
        );
        let _ = writeln!(
            md,
            "| consumers | drained in | rows/s | / 1 consumer | / `COPY` |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|");
        for d in &c.drains {
            let _ = writeln!(
                md,
                "| {} | {:.1} s | {} | {} | {} |",
                d.consumers,
                d.secs,
                num(d.rate()),
                ratio(Some(d.rate()), first),
                ratio(Some(d.rate()), r.copy)
            );
        }
    }
    let _ = writeln!(md);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_knee_is_refined_between_the_fixed_rates() {
        assert_eq!(between(15_000.0, 20_000.0), Some(17_500.0));
        assert_eq!(between(17_500.0, 20_000.0), Some(18_750.0));
        assert_eq!(between(15_000.0, 17_500.0), Some(16_250.0));
        assert_eq!(between(18_750.0, 20_000.0), None);
        assert_eq!(between(16_250.0, 17_500.0), None);
        // Low rates stop on the grain rather than splitting it.
        assert_eq!(between(1_000.0, 1_250.0), None);
    }

    /// Whatever a stage can carry, the refined knee is the highest rate tried under it, within
    /// a tenth of it (or a grain), after a few more rates than the climb.
    #[test]
    fn a_refined_knee_lands_within_a_tenth_of_what_the_stage_carries() {
        let rates = Rates::new(false).single;
        let mut capacity = rates[0];
        while capacity < rates[rates.len() - 1] {
            let carries = |rate: f64| rate <= capacity;
            let mut passed = None;
            let mut failed = None;
            for &rate in &rates {
                if carries(rate) {
                    passed = Some(rate);
                } else {
                    failed = Some(rate);
                    break;
                }
            }
            let (mut passed, mut failed) =
                (passed.expect("the first rate"), failed.expect("one fails"));
            let mut tried = 0;
            while let Some(rate) = between(passed, failed) {
                tried += 1;
                assert!(rate > passed && rate < failed);
                if carries(rate) {
                    passed = rate;
                } else {
                    failed = rate;
                }
            }
            assert!(passed <= capacity, "{passed} over {capacity}");
            assert!(
                capacity - passed <= (passed * KNEE_RESOLUTION).max(KNEE_GRAIN),
                "{passed} for {capacity}"
            );
            assert!(tried <= 3, "{tried} rates to refine {capacity}");
            capacity += 333.0;
        }
    }

    #[test]
    fn ratios_of_what_was_measured() {
        assert_eq!(ratio(Some(50.0), Some(100.0)), "0.50");
        assert_eq!(ratio(Some(50.0), None), "–");
        // Beside a target, a figure that rounds onto it shows the digit that decides.
        assert_eq!(ratio_to(Some(16_250.0), Some(66_099.0), 0.25), "0.246");
        assert_eq!(ratio_to(Some(1.504), Some(1.0), 1.5), "1.504");
        assert_eq!(ratio_to(Some(0.25), Some(1.0), 0.25), "0.25");
        assert_eq!(ratio_to(Some(15_000.0), Some(20_000.0), 0.8), "0.75");
        assert_eq!(ratio_to(Some(1.0), None, 0.8), "–");
    }

    fn drained(consumers: u16, secs: f64) -> drain::Drained {
        drain::Drained {
            consumers,
            events: 1_000_000,
            secs,
            mean_record_bytes: 400,
            cores: BTreeMap::new(),
            consumer_rss_mib: None,
            wal_bytes_per_event: None,
            table_bytes_per_event: None,
        }
    }

    /// A search whose one passing step is at `knee` (and one above it failed).
    fn knee_at(name: &str, knee: f64) -> Search {
        let step = |rate: f64, passed: bool| Step {
            rate,
            report: Report {
                target: "t".into(),
                planned_rate: rate,
                planned_events: rate as u64 * 10,
                requests: rate as u64 * 10,
                events_sent: rate as u64 * 10,
                events_accepted: rate as u64 * 10,
                statuses: BTreeMap::new(),
                transport_errors: 0,
                duration_secs: 10.0,
                achieved_rate: rate,
                latency_ms: Default::default(),
                service_time_ms: Default::default(),
                lateness: Default::default(),
                fell_behind: false,
                verify: None,
            },
            cores: BTreeMap::new(),
            generator_cores: 0.1,
            rss_mib: BTreeMap::new(),
            passed,
            stolen: Default::default(),
            gateway: None,
        };
        Search {
            name: name.into(),
            p99_limit_ms: 50.0,
            steps: vec![step(knee, true), step(knee * 2.0, false)],
        }
    }

    /// The bare exchange is priced against the producer of the gateway's knee step, and says
    /// how much of the CPU target it leaves, or that it alone is over it.
    #[test]
    fn the_bare_exchange_says_what_it_leaves_of_the_cpu_target() {
        let with_cores = |rate: f64, gateway: f64, producer: f64| {
            let mut step = knee_at("s", rate).steps.remove(0);
            step.cores = BTreeMap::from([
                ("gateway".to_owned(), gateway),
                ("producer".to_owned(), producer),
            ]);
            step
        };
        // 10,000 events/s: the producer 20 µs per event, the bare exchange 24 or 36 µs.
        let knee = with_cores(10_000.0, 0.5, 0.2);
        let mut md = String::new();
        bare_exchange_row(&mut md, Some(&with_cores(10_000.0, 0.24, 0.0)), Some(&knee));
        assert!(
            md.contains("| 24.0 µs per request | the producer's per event in the gateway's knee step: 20.0 µs | 1.20 | – | leaves 6.0 µs per event under the target above"),
            "{md}"
        );
        md.clear();
        bare_exchange_row(&mut md, Some(&with_cores(10_000.0, 0.36, 0.0)), Some(&knee));
        assert!(
            md.contains("| 1.80 | – | **over the target above by 6.0 µs on its own**"),
            "{md}"
        );
        md.clear();
        bare_exchange_row(&mut md, None, Some(&knee));
        assert!(md.is_empty());
    }

    /// Gateway and producer-direct searched twice: each knee is the mean of its runs, the hop
    /// is judged on the pairs' ratios, and the table shows every run and pair.
    #[test]
    fn the_gateway_hop_is_judged_pair_by_pair() {
        let results = Results {
            machine: "m".into(),
            started: "now".into(),
            options: BenchOptions {
                quick: false,
                skip_drain: true,
                brokers: None,
                profile: None,
            },
            http_ceilings: vec![60_000.0, 64_000.0, 62_000.0, 62_000.0],
            bare_exchange: None,
            searches: vec![
                knee_at("single events through the gateway", 16_000.0),
                knee_at("single events straight to the producer", 20_000.0),
                knee_at("batches of 100 through the gateway", 70_000.0),
            ],
            repeats: vec![
                knee_at("single events through the gateway, second run", 15_000.0),
                knee_at(
                    "single events straight to the producer, second run",
                    15_000.0,
                ),
            ],
            drain: None,
            kafka_perf: None,
            copy: None,
            record_bytes: 400,
            rss_at_start: BTreeMap::new(),
            warmup: Vec::new(),
            cluster: None,
            profiles: Vec::new(),
        };
        assert_eq!(results.knees(0), vec![16_000.0, 15_000.0]);
        assert_eq!(results.knee(1), Some(17_500.0));
        assert_eq!(results.knee(2), Some(70_000.0));
        assert_eq!(results.hop_ratios(), vec![0.8, 1.0]);
        // 0.9, where the knees' quotient would say 15,500 / 17,500 = 0.886.
        assert!((results.hop_ratio().expect("pairs") - 0.9).abs() < 1e-9);
        let md = render(&results);
        assert!(
            md.contains("| single events through the gateway, p99 < 50 ms | 15,500 events/s (runs: 16,000 and 15,000) | HTTP ceiling (`wrk` on `/health` just before and after each run of the stage: 60,000, 64,000, 62,000 and 62,000, mean): 62,000 req/s | 0.25 |"),
            "{md}"
        );
        assert!(
            md.contains("producer-direct knee searched right after it: 17,500 events/s (runs: 20,000 and 15,000) | 0.90 (pairs: 0.80, 1.00) | ≥ 0.8 | yes |"),
            "{md}"
        );
        // In the order they ran.
        let order: Vec<&str> = results.every_search().map(|s| s.name.as_str()).collect();
        assert_eq!(
            order,
            [
                "single events through the gateway",
                "single events straight to the producer",
                "single events through the gateway, second run",
                "single events straight to the producer, second run",
                "batches of 100 through the gateway",
            ]
        );
        let record = record::BenchRecord::of(&results);
        let hop = record
            .figures
            .iter()
            .find(|f| f.name == "gateway knee (events/s)")
            .expect("the hop's figure");
        assert!((hop.ratio.expect("a ratio") - 0.9).abs() < 1e-9);
        assert_eq!(record.searches.len(), 5);
    }

    #[test]
    fn the_cluster_rows_stand_beside_the_one_broker_figures() {
        let results = Results {
            machine: "m".into(),
            started: "now".into(),
            options: BenchOptions {
                quick: false,
                skip_drain: false,
                brokers: Some(3),
                profile: None,
            },
            http_ceilings: vec![52_000.0, 48_000.0],
            bare_exchange: None,
            searches: Vec::new(),
            repeats: Vec::new(),
            drain: Some(drained(1, 10.0)),
            kafka_perf: Some(200_000.0),
            copy: Some(400_000.0),
            record_bytes: 400,
            rss_at_start: BTreeMap::new(),
            warmup: vec![0.9, 0.5, 0.5],
            cluster: Some(cluster::ClusterResults {
                brokers: 3,
                replication_factor: 3,
                min_insync_replicas: 2,
                searches: Vec::new(),
                warmup: vec![1.2],
                kafka_perf: Some(50_000.0),
                drains: vec![drained(1, 20.0), drained(2, 10.0), drained(6, 5.0)],
            }),
            profiles: vec![profile::Profile {
                stage: "single events through the gateway".into(),
                service: "gateway".into(),
                rate: 12_000.0,
                sampled_ns: 2_000_000_000,
                parts: vec![
                    ("HTTP serving (hyper, axum, sockets)".into(), 1_500_000_000),
                    ("JSON and validation".into(), 500_000_000),
                ],
                cpu_us_per_event: Some(40.0),
                flame_graph: "profiles/single-events-through-the-gateway.svg".into(),
            }],
        };
        let md = render(&results);
        assert!(
            md.contains("### single events through the gateway: gateway at 12,000 events/s (2.00 s of its CPU sampled, 40.0 µs of CPU per event, [flame graph](profiles/single-events-through-the-gateway.svg))"),
            "{md}"
        );
        assert!(
            md.contains("| HTTP serving (hyper, axum, sockets) | 75.0% | 30.0 |"),
            "{md}"
        );
        // The ceiling brackets the stage it is the baseline of, and the ratio takes the mean.
        assert!(
            md.contains("HTTP ceiling (`wrk` on `/health` just before and after the stage: 52,000 and 48,000, mean): 50,000 req/s"),
            "{md}"
        );
        assert!(md.contains("## 3 brokers: what replication costs"), "{md}");
        assert!(md.contains("0.90 → 0.50 → 0.50 cores over 3 steps"), "{md}");
        // ProducerPerformance on three brokers against one: 50,000 / 200,000.
        assert!(md.contains("| 200,000 | 50,000 | 0.25 |"), "{md}");
        // The one-consumer drain: 50,000 rows/s on the cluster, 100,000 on one broker.
        assert!(
            md.contains("| drain, 1 consumer | 100,000 | 50,000 | 0.50 | `COPY`: 400,000 | 0.12 |"),
            "{md}"
        );
        // Each group size against one consumer and against COPY.
        assert!(md.contains("| 6 | 5.0 s | 200,000 | 4.00 | 0.50 |"), "{md}");
        // No stage passed on the cluster: the capacity model says it has nothing to scale.
        assert!(
            md.contains("have no passing step, or it has no drain"),
            "{md}"
        );
        let without = Results {
            cluster: None,
            profiles: Vec::new(),
            ..results
        };
        let md = render(&without);
        assert!(!md.contains("brokers: what replication costs"));
        assert!(!md.contains("--profile"));
    }

    #[test]
    fn a_roles_cores_add_up_over_its_instances() {
        let cores: BTreeMap<String, f64> = [
            ("kafka", 0.25),
            ("kafka-2", 0.25),
            ("kafka-3", 0.5),
            ("consumer", 0.5),
            ("consumer-2", 0.25),
            ("postgres", 0.5),
        ]
        .into_iter()
        .map(|(n, c)| (n.to_owned(), c))
        .collect();
        let roles = by_role(&cores);
        assert_eq!(roles["kafka"], 1.0);
        assert_eq!(roles["consumer"], 0.75);
        assert_eq!(roles["postgres"], 0.5);
        assert_eq!(role("log-events"), "log-events");
    }
}
