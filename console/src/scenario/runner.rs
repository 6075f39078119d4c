//! Runs one drill: checks the stack it needs and the steady state, runs the steps in order
//! (stopping at the first that fails), checks the steady state again, and always puts back
//! what it broke: load stopped, paused components resumed, stopped ones started, also when
//! interrupted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use logctl_core::auth::Scope;
use logctl_loadgen::report::Verification;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::condition::{Checked, Condition, Reading};
use super::load::{DrillLoad, LoadSummary};
use super::observe::{Observer, Point};
use super::spec::{
    FaultStep, HttpStep, LoadStep, PublishStep, ScaleStep, Scenario, Step, VerifyStep, WaitStep,
};
use crate::fault::{self, Action, Driver};
use crate::signals::Collector;
use crate::stack::layout::{Layout, StackConfig};
use crate::stack::{self, Component};

/// Where the drill runs.
#[derive(Clone)]
pub struct Context {
    /// Where the drill's conditions read from (the local stack, or endpoints).
    pub signals: Collector,
    pub layout: Layout,
    pub config: StackConfig,
    pub driver: Driver,
    pub gateway: String,
    pub database_url: Option<String>,
    pub sample_every: Duration,
}

/// What the runner tells whoever shows it (the headless printer, a terminal line, the TUI).
#[derive(Debug, Clone)]
pub enum RunEvent {
    Started {
        name: String,
        steps: usize,
    },
    Step {
        index: usize,
        total: usize,
        description: String,
    },
    StepDone(StepReport),
    Reading(Reading),
    Note(String),
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    /// 1-based; 0 for the steady-state checks.
    pub index: usize,
    pub kind: String,
    pub description: String,
    pub passed: bool,
    /// Seconds since the drill started.
    pub at_secs: f64,
    pub duration_secs: f64,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Checked>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

impl StepReport {
    /// Why it failed, naming the step, each unmet condition, expected and observed.
    pub fn failure(&self) -> String {
        let unmet: Vec<String> = self
            .conditions
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("expected `{}`, observed {}", c.condition, c.observed))
            .collect();
        let what = if self.index == 0 {
            self.kind.clone()
        } else {
            format!("step {} ({})", self.index, self.description)
        };
        match unmet.is_empty() {
            true => format!("{what}: {}", self.detail),
            false => format!("{what}: {}", unmet.join("; ")),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioReport {
    pub name: String,
    pub file: String,
    pub description: String,
    pub passed: bool,
    pub interrupted: bool,
    pub started_at: String,
    pub duration_secs: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steady_state_before: Option<StepReport>,
    pub steps: Vec<StepReport>,
    /// Steps not run because an earlier one failed (or the run was interrupted).
    pub skipped: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steady_state_after: Option<StepReport>,
    /// What the runner put back at the end.
    pub restored: Vec<String>,
    pub load: LoadSummary,
    pub timeline: Vec<Point>,
}

struct Run<'a> {
    ctx: &'a Context,
    /// The stack's shape now: a scale step changes it.
    config: StackConfig,
    /// Instance counts (consumers, producers) when the drill began, put back at its end: a
    /// drill whose scale-down step never ran (an earlier step failed) leaves no trace.
    shape_at_start: (u16, u16),
    started: Instant,
    observer: Observer,
    load: DrillLoad,
    /// The last fault applied to each component, to undo at the end.
    touched: BTreeMap<String, (Component, Action)>,
    /// Links this run put a network fault on, to clear at the end.
    faulted_links: std::collections::BTreeSet<String>,
    /// Whether it isolated or partitioned a host, to heal every host at the end.
    hosts_faulted: bool,
    /// Whether it filled PostgreSQL's events volume, to free it at the end.
    disk_filled: bool,
    events: UnboundedSender<RunEvent>,
}

enum Ended {
    Done(Box<StepReport>),
    Interrupted,
}

pub async fn run(
    scenario: &Scenario,
    file: &str,
    ctx: &Context,
    interrupt: CancellationToken,
    events: UnboundedSender<RunEvent>,
) -> ScenarioReport {
    let started = Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let _ = events.send(RunEvent::Started {
        name: scenario.name.clone(),
        steps: scenario.steps.len(),
    });
    let collector = ctx.signals.clone();
    // As saved: an earlier drill of this run may have scaled the stack.
    let config = match ctx.driver {
        Driver::Local => ctx
            .layout
            .load_config()
            .unwrap_or_else(|_| ctx.config.clone()),
        _ => ctx.config.clone(),
    };
    let mut run = Run {
        ctx,
        shape_at_start: (config.consumers, config.producers),
        config,
        started,
        observer: Observer::start(collector, ctx.sample_every, started),
        load: DrillLoad::new(ctx.gateway.clone(), ctx.layout.clone()),
        touched: BTreeMap::new(),
        faulted_links: Default::default(),
        hosts_faulted: false,
        disk_filled: false,
        events: events.clone(),
    };
    let mut report = ScenarioReport {
        name: scenario.name.clone(),
        file: file.to_owned(),
        description: scenario.description.trim().to_owned(),
        passed: false,
        interrupted: false,
        started_at,
        duration_secs: 0.0,
        failure: None,
        steady_state_before: None,
        steps: Vec::new(),
        skipped: 0,
        steady_state_after: None,
        restored: Vec::new(),
        load: LoadSummary::default(),
        timeline: Vec::new(),
    };

    let outcome = async {
        if let Err(e) = run.stack_is_ready(scenario) {
            report.failure = Some(e);
            return;
        }
        if let Some(ss) = &scenario.steady_state {
            let r = run
                .wait_until("steady state before", &ss.conditions, ss.within.0, 0)
                .await;
            let ok = r.passed;
            let _ = events.send(RunEvent::StepDone(r.clone()));
            report.steady_state_before = Some(r);
            if !ok {
                report.failure = report.steady_state_before.as_ref().map(StepReport::failure);
                return;
            }
        }
        let total = scenario.steps.len();
        for (i, step) in scenario.steps.iter().enumerate() {
            let _ = events.send(RunEvent::Step {
                index: i + 1,
                total,
                description: step.describe(),
            });
            let ended = tokio::select! {
                r = run.step(i + 1, step) => Ended::Done(Box::new(r)),
                _ = interrupt.cancelled() => Ended::Interrupted,
            };
            match ended {
                Ended::Done(r) => {
                    let r = *r;
                    let _ = events.send(RunEvent::StepDone(r.clone()));
                    let failed = !r.passed;
                    if failed {
                        report.failure = Some(r.failure());
                    }
                    report.steps.push(r);
                    if failed {
                        report.skipped = total - i - 1;
                        return;
                    }
                }
                Ended::Interrupted => {
                    report.interrupted = true;
                    report.failure = Some(format!(
                        "interrupted during step {} ({})",
                        i + 1,
                        step.describe()
                    ));
                    report.skipped = total - i;
                    return;
                }
            }
        }
        if let Some(ss) = &scenario.steady_state {
            let r = tokio::select! {
                r = run.wait_until("steady state after", &ss.conditions, ss.within.0, 0) => r,
                _ = interrupt.cancelled() => {
                    report.interrupted = true;
                    report.failure = Some("interrupted while checking the steady state".into());
                    return;
                }
            };
            let _ = events.send(RunEvent::StepDone(r.clone()));
            if !r.passed {
                report.failure = Some(r.failure());
            }
            report.steady_state_after = Some(r);
        }
    };
    outcome.await;

    report.restored = run.restore().await;
    report.load = run.load.summary();
    report.timeline = run.observer.finish();
    report.passed = report.failure.is_none();
    report.duration_secs = started.elapsed().as_secs_f64();
    report
}

impl Run<'_> {
    fn secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn stack_is_ready(&self, scenario: &Scenario) -> Result<(), String> {
        if !matches!(self.ctx.driver, Driver::Local) {
            return Ok(());
        }
        let needs = [
            (
                "Kafka brokers",
                "brokers",
                scenario.stack.brokers,
                self.config.brokers,
            ),
            (
                "producers",
                "producers",
                scenario.stack.producers,
                self.config.producers,
            ),
            (
                "gateways",
                "gateways",
                scenario.stack.gateways,
                self.config.gateways,
            ),
        ];
        for (what, flag, needed, has) in needs {
            if let Some(n) = needed.filter(|n| has < *n) {
                return Err(format!(
                    "this drill needs {n} {what} and the stack has {has}: run it against a \
                     stack started with `logctl up --{flag} {n}`"
                ));
            }
        }
        let network_faults = scenario.steps.iter().any(|s| {
            matches!(
                s,
                Step::Fault(FaultStep::Link { .. } | FaultStep::Clear { .. })
            )
        });
        let host_faults = scenario
            .steps
            .iter()
            .any(|s| matches!(s, Step::Fault(FaultStep::Host(_))));
        let disk_faults = scenario
            .steps
            .iter()
            .any(|s| matches!(s, Step::Fault(FaultStep::Disk { .. })));
        if disk_faults && self.config.postgres_disk.is_none() {
            return Err(
                "this drill fills PostgreSQL's disk and the stack's events share the state                  dir's filesystem: run it against a stack started with `logctl up                  --postgres-disk 2G` (as root, on a new state dir)"
                    .into(),
            );
        }
        if host_faults && self.config.hosts.is_none() {
            return Err(
                "this drill cuts hosts off and the stack runs on loopback: run it \
                        against a stack started with `logctl up --hosts` (as root)"
                    .into(),
            );
        }
        if network_faults && !self.config.proxies {
            return Err(
                "this drill sets network faults and the stack has no fault proxy: run \
                        it against a stack started with `logctl up --with-proxies`"
                    .into(),
            );
        }
        let status = stack::status(&self.ctx.layout, &self.config);
        let needed: Vec<String> = if scenario.stack.up.is_empty() {
            Component::all(&self.config)
                .into_iter()
                .filter(|c| *c != Component::Prometheus)
                .map(Component::name)
                .collect()
        } else {
            scenario.stack.up.iter().map(|n| n.0.name()).collect()
        };
        let down: Vec<String> = needed
            .iter()
            .filter(|n| !status.iter().any(|s| &s.name == *n && s.is_up()))
            .cloned()
            .collect();
        match down.is_empty() {
            true => Ok(()),
            false => Err(format!(
                "the stack is not ready: {} not up (start it with `logctl up`)",
                down.join(", ")
            )),
        }
    }

    /// The stack's signals with the drill's own load figures.
    async fn reading(&mut self, fresh: bool) -> Reading {
        let mut r = if fresh {
            self.observer.fresh().await
        } else {
            self.observer.latest.borrow().reading.clone()
        };
        self.load.reap().await;
        r.extend(self.load.signals());
        let _ = self.events.send(RunEvent::Reading(r.clone()));
        r
    }

    fn check(conditions: &[Condition], reading: &Reading) -> Vec<Checked> {
        conditions.iter().map(|c| c.check(reading)).collect()
    }

    fn report(&self, index: usize, kind: &str, description: String, at: f64) -> StepReport {
        StepReport {
            index,
            kind: kind.to_owned(),
            description,
            passed: true,
            at_secs: at,
            duration_secs: self.secs() - at,
            detail: String::new(),
            conditions: Vec::new(),
            verification: None,
        }
    }

    async fn wait_until(
        &mut self,
        kind: &str,
        conditions: &[Condition],
        within: Duration,
        index: usize,
    ) -> StepReport {
        let at = self.secs();
        let deadline = Instant::now() + within;
        let description = conditions
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        loop {
            let reading = self.reading(true).await;
            let checked = Self::check(conditions, &reading);
            let all = checked.iter().all(|c| c.passed);
            if all || Instant::now() >= deadline {
                let mut r = self.report(index, kind, description, at);
                r.passed = all;
                r.detail = match all {
                    true => format!("held after {:.1} s", self.secs() - at),
                    false => format!("not met within {}", super::spec::Dur(within)),
                };
                r.conditions = checked;
                return r;
            }
        }
    }

    async fn step(&mut self, index: usize, step: &Step) -> StepReport {
        let at = self.secs();
        let mut r = self.report(index, step.kind(), step.describe(), at);
        let result: Result<String, String> = match step {
            Step::Load(LoadStep::Start(spec)) => {
                self.load.start(spec).await.map_err(|e| format!("{e:#}"))
            }
            Step::Load(LoadStep::Stop) => Ok(match self.load.stop().await {
                Some(rep) => format!(
                    "{} sent, {} acknowledged, p99 {:.1} ms",
                    rep.events_sent, rep.events_accepted, rep.latency_ms.p99
                ),
                None => "no load was running".into(),
            }),
            Step::Fault(f) => self.fault(f).await,
            Step::Wait(WaitStep::For(d)) => {
                tokio::time::sleep(d.0).await;
                Ok(String::new())
            }
            Step::Wait(WaitStep::Until { until, timeout }) => {
                let w = self.wait_until("wait", until, timeout.0, index).await;
                r.conditions = w.conditions;
                if w.passed {
                    Ok(w.detail)
                } else {
                    Err(w.detail)
                }
            }
            Step::Assert(conditions) => {
                let reading = self.reading(true).await;
                r.conditions = Self::check(conditions, &reading);
                match r.conditions.iter().all(|c| c.passed) {
                    true => Ok(String::new()),
                    false => Err("condition not met".into()),
                }
            }
            Step::Verify(v) => match self.verify(v).await {
                Ok(ver) => {
                    let line = format!(
                        "{} acknowledged: {} stored, {} lost, {} duplicated; end-to-end p99 {:.0} ms",
                        ver.acknowledged, ver.stored, ver.lost, ver.duplicated, ver.end_to_end_ms.p99
                    );
                    let ok = ver.passed() && ver.acknowledged > 0;
                    r.verification = Some(ver);
                    match ok {
                        true => Ok(line),
                        false => Err(line),
                    }
                }
                Err(e) => Err(e),
            },
            Step::Http(h) => self.http(h).await,
            Step::Publish(p) => self.publish(p).await,
            Step::Exec(cmd) => exec(cmd).await,
            Step::Scale(s) => self.scale(s).await,
        };
        r.duration_secs = self.secs() - at;
        match result {
            Ok(detail) => r.detail = detail,
            Err(detail) => {
                r.passed = false;
                r.detail = detail;
            }
        }
        r
    }

    /// What `logctl up --consumers N` does, mid-drill: the new shape is saved (so `status`, the
    /// signals and a later `up` see it), missing instances start, extra ones stop.
    async fn scale(&mut self, s: &ScaleStep) -> Result<String, String> {
        if !matches!(self.ctx.driver, Driver::Local) {
            return Err(
                "scale acts on the local stack only (`logctl up` runs its instances)".into(),
            );
        }
        let consumers = s.consumers.unwrap_or(self.config.consumers);
        let producers = s.producers.unwrap_or(self.config.producers);
        self.reshape(consumers, producers).await
    }

    /// Saves and applies a new instance count. When the stack cannot take it (a port taken, an
    /// instance that does not come up), the shape before is saved and applied again: a shape
    /// half taken would leave every later drill of the run finding the stack "not ready".
    async fn reshape(&mut self, consumers: u16, producers: u16) -> Result<String, String> {
        let before = self.config.clone();
        let mut config = before.clone();
        config.consumers = consumers;
        config.producers = producers;
        let outcomes = match self.apply_shape(&config).await {
            Ok(outcomes) => outcomes,
            Err(e) => {
                let back = match self.apply_shape(&before).await {
                    Ok(_) => format!(
                        "put back to {} consumers, {} producers",
                        before.consumers, before.producers
                    ),
                    Err(again) => format!("putting the shape back FAILED too: {again}"),
                };
                return Err(format!("{e} ({back})"));
            }
        };
        let after = Component::all(&config);
        let started: Vec<String> = outcomes
            .into_iter()
            .filter(|o| o.action == "started")
            .map(|o| o.name)
            .collect();
        let stopped: Vec<String> = Component::all(&before)
            .into_iter()
            .filter(|c| !after.contains(c))
            .map(Component::name)
            .collect();
        let said: Vec<String> = [("started", started), ("stopped", stopped)]
            .into_iter()
            .filter(|(_, names)| !names.is_empty())
            .map(|(what, names)| format!("{what} {}", names.join(", ")))
            .collect();
        Ok(match said.is_empty() {
            true => "already so".into(),
            false => said.join("; "),
        })
    }

    /// Saves `config` and brings the stack to it; it is the run's shape from then on.
    async fn apply_shape(&mut self, config: &StackConfig) -> Result<Vec<stack::UpOutcome>, String> {
        self.ctx
            .layout
            .save_config(config)
            .map_err(|e| e.to_string())?;
        self.config = config.clone();
        stack::up(&self.ctx.layout, config)
            .await
            .map_err(|e| e.to_string())
    }

    async fn fault(&mut self, f: &FaultStep) -> Result<String, String> {
        let (action, target) = match f {
            FaultStep::Process { action, component } => (*action, component.0),
            FaultStep::Link { links, fault } => {
                let names = links
                    .resolve(&self.ctx.layout, &self.config)
                    .await
                    .map_err(|e| e.to_string())?;
                // Recorded before acting, as a stop is: a half-set fault is cleared too.
                self.faulted_links.extend(names);
                return fault::link::set(*links, fault, &self.ctx.layout, &self.config)
                    .await
                    .map(|(o, _)| o.detail)
                    .map_err(|e| e.to_string());
            }
            FaultStep::Host(h) => {
                // Recorded before acting: a half-made cut is healed too.
                self.hosts_faulted = true;
                return fault::host::apply(*h, &self.ctx.layout, &self.config)
                    .await
                    .map(|(o, _)| o.detail)
                    .map_err(|e| e.to_string());
            }
            FaultStep::Disk { fill } => {
                // Recorded before acting: a half-filled volume is freed too.
                self.disk_filled |= *fill;
                return fault::disk::apply(*fill, Some("postgres"), &self.ctx.layout)
                    .map(|o| o.detail)
                    .map_err(|e| e.to_string());
            }
            FaultStep::Clear { links } => {
                return fault::link::clear(*links, &self.ctx.layout, &self.config)
                    .await
                    .map(|o| format!("{}: {}", o.component, o.detail))
                    .map_err(|e| e.to_string());
            }
        };
        let c = target
            .resolve(action, &self.ctx.layout, &self.config)
            .await
            .map_err(|e| e.to_string())?;
        // Recorded before acting: an interrupted stop must still be undone.
        self.touched.insert(c.name(), (c, action));
        fault::apply(&self.ctx.driver, action, c, &self.ctx.layout, &self.config)
            .await
            .map(|o| match target {
                // Say which broker the leader was, for the report.
                crate::fault::Target::KafkaLeader => format!("{}: {}", o.component, o.detail),
                crate::fault::Target::Component(_) => o.detail,
            })
            .map_err(|e| e.to_string())
    }

    async fn verify(&mut self, v: &VerifyStep) -> Result<Verification, String> {
        if let Some(rep) = self.load.stop().await {
            let _ = self.events.send(RunEvent::Note(format!(
                "load stopped for verify: {} sent, {} acknowledged",
                rep.events_sent, rep.events_accepted
            )));
        }
        let url = self.ctx.database_url.clone().ok_or(
            "verify needs the stack's database (the local stack's password, or --database-url)",
        )?;
        crate::load::verify(&url, self.load.acked(), v.timeout.0)
            .await
            .map_err(|e| format!("verify: {e:#}"))
    }

    async fn http(&self, h: &HttpStep) -> Result<String, String> {
        let token = crate::token::mint(
            &self.ctx.layout,
            &h.org,
            &Scope::ALL,
            Duration::from_secs(600),
            "logctl-scenario",
        )
        .map_err(|e| e.to_string())?;
        let method = reqwest::Method::from_bytes(h.method.to_uppercase().as_bytes())
            .map_err(|_| format!("bad method {:?}", h.method))?;
        let mut req = reqwest::Client::new()
            .request(method, format!("{}{}", self.ctx.gateway, h.path))
            .bearer_auth(token)
            .timeout(Duration::from_secs(10));
        if let Some(body) = &h.body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| format!("no answer: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        let shown: String = body.chars().take(160).collect();
        match status == h.expect {
            true => Ok(format!("{status}")),
            false => Err(format!("expected {}, got {status}: {shown}", h.expect)),
        }
    }

    async fn publish(&self, p: &PublishStep) -> Result<String, String> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", self.config.bootstrap_servers())
            .set("message.timeout.ms", "10000")
            .create()
            .map_err(|e| e.to_string())?;
        for _ in 0..p.count {
            producer
                .send(
                    FutureRecord::to(logctl_contracts::topics::EVENTS)
                        .key(&p.key)
                        .payload(p.payload.as_bytes()),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| format!("publish: {e}"))?;
        }
        Ok(format!(
            "{} record(s) on {}",
            p.count,
            logctl_contracts::topics::EVENTS
        ))
    }

    /// Stops the load, clears the network faults it set and brings back every component a
    /// fault left down or paused.
    async fn restore(&mut self) -> Vec<String> {
        let mut done = Vec::new();
        if let Some(rep) = self.load.stop().await {
            done.push(format!("load stopped ({} events sent)", rep.events_sent));
        }
        if std::mem::take(&mut self.disk_filled) {
            let disk = stack::disk::EventsDisk::new(&self.ctx.layout);
            let line = if !disk.is_full() {
                "the events volume was freed already".to_owned()
            } else {
                match disk.free() {
                    Ok(bytes) => format!("freed {} MiB on the events volume", bytes >> 20),
                    Err(e) => format!("freeing the events volume FAILED: {e}"),
                }
            };
            let _ = self
                .events
                .send(RunEvent::Note(format!("restoring: {line}")));
            done.push(line);
        }
        if std::mem::take(&mut self.hosts_faulted) {
            let line = match self.config.net() {
                Some(net) => match fault::host::heal(net, &self.config, None) {
                    Ok(()) => "healed every host".to_owned(),
                    Err(e) => format!("healing the hosts FAILED: {e}"),
                },
                None => "no hosts to heal".to_owned(),
            };
            let _ = self
                .events
                .send(RunEvent::Note(format!("restoring: {line}")));
            done.push(line);
        }
        if !self.faulted_links.is_empty() {
            let names: Vec<String> = std::mem::take(&mut self.faulted_links)
                .into_iter()
                .collect();
            let line = match stack::faultproxy::Control::new(&self.config) {
                Ok(control) => {
                    let mut failed = Vec::new();
                    for name in &names {
                        if let Err(e) = control.clear(Some(name)).await {
                            failed.push(format!("{name}: {e}"));
                        }
                    }
                    match failed.is_empty() {
                        true => format!("cleared the faults on {}", names.join(", ")),
                        false => format!("clearing faults FAILED: {}", failed.join("; ")),
                    }
                }
                Err(e) => format!("clearing faults FAILED: {e}"),
            };
            let _ = self
                .events
                .send(RunEvent::Note(format!("restoring: {line}")));
            done.push(line);
        }
        let local = matches!(self.ctx.driver, Driver::Local);
        let status = stack::status(&self.ctx.layout, &self.config);
        let state_of = |c: Component| {
            status
                .iter()
                .find(|s| s.name == c.name())
                .map_or("down", |s| s.status)
        };
        let mut resume = Vec::new();
        let mut start = Vec::new();
        for (c, last) in self.touched.values() {
            let (paused, down) = match local {
                true => (state_of(*c) == "paused", state_of(*c) == "down"),
                false => (
                    *last == Action::Pause,
                    matches!(last, Action::Stop | Action::Kill),
                ),
            };
            if paused {
                resume.push(*c);
            } else if down {
                start.push(*c);
            }
        }
        // Dependencies first, as `logctl up` starts them.
        let order = Component::all(&self.config);
        start.sort_by_key(|c| order.iter().position(|o| o == c));
        for (action, c) in resume
            .into_iter()
            .map(|c| (Action::Resume, c))
            .chain(start.into_iter().map(|c| (Action::Start, c)))
        {
            let _ = self.events.send(RunEvent::Note(format!(
                "restoring: {} {}",
                format!("{action:?}").to_lowercase(),
                c.name()
            )));
            let line =
                match fault::apply(&self.ctx.driver, action, c, &self.ctx.layout, &self.config)
                    .await
                {
                    Ok(o) => format!("{} {}: {}", o.action, o.component, o.detail),
                    Err(e) => format!(
                        "{} {} FAILED: {e}",
                        format!("{action:?}").to_lowercase(),
                        c.name()
                    ),
                };
            done.push(line);
        }
        let (consumers, producers) = self.shape_at_start;
        if (self.config.consumers, self.config.producers) != (consumers, producers) {
            let line = match self.reshape(consumers, producers).await {
                Ok(what) => {
                    format!("scaled back to {consumers} consumers, {producers} producers: {what}")
                }
                Err(e) => format!("scaling back FAILED: {e}"),
            };
            let _ = self
                .events
                .send(RunEvent::Note(format!("restoring: {line}")));
            done.push(line);
        }
        done
    }
}

async fn exec(cmd: &str) -> Result<String, String> {
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run sh: {e}"))?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let last = text.lines().last().unwrap_or_default().to_owned();
    match out.status.success() {
        true => Ok(last),
        false => Err(format!("exited with {}: {last}", out.status)),
    }
}
