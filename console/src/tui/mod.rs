//! `logctl tui`: the live operations console. Collection is [`crate::signals`]; this module only
//! keeps history ([`model`]), draws it ([`view`]) and turns keys into actions: background load
//! (the `logctl load` engine) and faults (the same driver as `logctl fault`). The terminal is
//! restored on quit, on Ctrl-C and on panic (ratatui's init installs the hook).

pub mod model;
pub mod view;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use tokio_util::sync::CancellationToken;

use crate::fault::{self, Action, Driver};
use crate::scenario::runner::{self as drill_runner, Context, RunEvent, ScenarioReport};
use crate::scenario::spec::Scenario;
use crate::signals::{Collector, Endpoints, Signals};
use crate::stack::layout::{Layout, StackConfig};
use crate::stack::{self, Component};
use model::Model;

/// Keys 1..6 stop or start these.
pub const FAULT_KEYS: [(char, Component); 6] = [
    ('1', Component::Kafka),
    ('2', Component::Postgres),
    ('3', Component::Redis),
    ('4', Component::Producer),
    ('5', Component::Consumer(0)),
    ('6', Component::Gateway),
];

const DEFAULT_RATE: f64 = 1_000.0;

/// The `l` key's load: the engine's defaults at the chosen rate, until stopped.
fn start_load(
    runtime: &tokio::runtime::Runtime,
    layout: &Layout,
    gateway: &str,
    rate: f64,
) -> anyhow::Result<crate::load::Background> {
    let _on = runtime.enter();
    crate::load::background(
        layout,
        gateway,
        rate,
        None,
        logctl_loadgen::engine::Options::default(),
        |_| {},
    )
}

/// `logctl tui --config FILE`: a stack by its endpoints, and how the 1-6 keys reach it.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackFile {
    pub endpoints: Endpoints,
    #[serde(default)]
    pub faults: Option<FaultsFile>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsFile {
    /// compose, exec or none.
    pub driver: String,
    #[serde(default)]
    pub compose_file: Option<std::path::PathBuf>,
    #[serde(default)]
    pub exec: Option<String>,
}

impl StackFile {
    pub fn load(path: &std::path::Path) -> anyhow::Result<StackFile> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("--config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("--config {}: {e}", path.display()))
    }

    /// The fault driver for the 1-6 keys; None when the file names none.
    pub fn driver(&self) -> anyhow::Result<Option<Driver>> {
        let Some(f) = &self.faults else {
            return Ok(None);
        };
        Ok(match f.driver.as_str() {
            "none" => None,
            "compose" => Some(Driver::Compose {
                file: f
                    .compose_file
                    .clone()
                    .unwrap_or_else(|| "docker-compose.yml".into()),
            }),
            "exec" => Some(Driver::Exec {
                template: f
                    .exec
                    .clone()
                    .ok_or_else(|| anyhow::anyhow!("[faults] driver = \"exec\" needs exec = \"command {{action}} {{component}}\""))?,
            }),
            other => anyhow::bail!(
                "[faults] driver {other:?}: choose compose, exec or none (the local stack needs no --config)"
            ),
        })
    }
}

/// The stack the console watches and acts on.
pub struct Stack {
    pub signals: Collector,
    /// How the 1-6 keys act; None: not from this console.
    pub driver: Option<Driver>,
    /// The local stack of `logctl up` (process ids tell what runs).
    pub local: bool,
}

/// A drill started with `r`.
struct RunningDrill {
    interrupt: CancellationToken,
    events: tokio::sync::mpsc::UnboundedReceiver<RunEvent>,
    handle: tokio::task::JoinHandle<ScenarioReport>,
}

fn verdict(report: &ScenarioReport) -> String {
    match (report.passed, report.interrupted) {
        (true, _) => "PASSED".into(),
        (false, true) => "INTERRUPTED".into(),
        (false, false) => "FAILED".into(),
    }
}

/// What the console needs to run drills: the files given with `--scenario`, and where.
pub struct Drills {
    pub files: Vec<(String, Scenario)>,
    pub context: Context,
}

pub fn run(
    layout: &Layout,
    config: &StackConfig,
    refresh: Duration,
    drills: Drills,
    stack: Stack,
) -> anyhow::Result<()> {
    // One worker drives background load and faults while the screen waits for keys.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let collector = stack.signals.clone();
    let gateway = collector.gateway();
    let (notes_tx, notes) = mpsc::channel::<String>();
    let mut terminal = ratatui::init();
    let mut load: Option<crate::load::Background> = None;
    let mut drill: Option<RunningDrill> = None;
    let mut next_drill = 0usize;
    let outcome = (|| -> anyhow::Result<()> {
        let started = Instant::now();
        let mut model = Model {
            rate: DEFAULT_RATE,
            ..Model::default()
        };
        let mut previous = runtime.block_on(collector.snapshot());
        let mut next = Instant::now() + refresh;
        loop {
            while let Ok(note) = notes.try_recv() {
                model.note(started.elapsed().as_secs_f64(), note);
            }
            if let Some(d) = drill.as_mut() {
                while let Ok(ev) = d.events.try_recv() {
                    model.drill_event(started.elapsed().as_secs_f64(), ev);
                }
                if d.handle.is_finished() {
                    if let Some(d) = drill.take() {
                        let report = runtime.block_on(d.handle)?;
                        let v = verdict(&report);
                        model.note(
                            started.elapsed().as_secs_f64(),
                            format!("drill {} {v}", report.name),
                        );
                        if let Some(shown) = model.drill.as_mut() {
                            shown.verdict = Some(v);
                        }
                    }
                }
            }
            terminal.draw(|f| view::render(f, &model))?;
            if event::poll(next.saturating_duration_since(Instant::now()))? {
                let Event::Key(key) = event::read()? else {
                    continue;
                };
                if key.kind != KeyEventKind::Press {
                    continue;
                }
                let now = started.elapsed().as_secs_f64();
                match key.code {
                    KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                    KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                        return Ok(())
                    }
                    KeyCode::Char('p') => model.paused = !model.paused,
                    KeyCode::Char('r') if drill.is_none() => {
                        match drills.files.get(next_drill % drills.files.len().max(1)) {
                            None => model.note(
                                now,
                                "no drill to run: start the console with --scenario FILE".into(),
                            ),
                            Some((file, scenario)) => {
                                next_drill += 1;
                                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                                let interrupt = CancellationToken::new();
                                let (s, f, ctx, stop) = (
                                    scenario.clone(),
                                    file.clone(),
                                    drills.context.clone(),
                                    interrupt.clone(),
                                );
                                let handle = runtime.spawn(async move {
                                    drill_runner::run(&s, &f, &ctx, stop, tx).await
                                });
                                model.drill = Some(model::Drill::new(
                                    &scenario.name,
                                    scenario.steps.iter().map(|s| s.describe()).collect(),
                                ));
                                model.note(now, format!("drill {} started", scenario.name));
                                drill = Some(RunningDrill {
                                    interrupt,
                                    events: rx,
                                    handle,
                                });
                            }
                        }
                    }
                    KeyCode::Char('x') => {
                        if let Some(d) = &drill {
                            d.interrupt.cancel();
                            model.note(now, "drill aborted: restoring the stack…".into());
                        }
                    }
                    KeyCode::Char('?') => model.help = !model.help,
                    KeyCode::Char('l') => match load.take() {
                        Some(l) => {
                            l.stop.cancel();
                            model.loading = false;
                            model.note(now, "load stopped".into());
                        }
                        None => {
                            load = Some(start_load(&runtime, layout, &gateway, model.rate)?);
                            model.loading = true;
                            model.note(now, format!("load started at {:.0} events/s", model.rate));
                        }
                    },
                    KeyCode::Char(c @ ('+' | '-')) => {
                        model.rate = if c == '+' {
                            model.rate * 2.0
                        } else {
                            (model.rate / 2.0).max(1.0)
                        };
                        if let Some(l) = load.take() {
                            l.stop.cancel();
                            load = Some(start_load(&runtime, layout, &gateway, model.rate)?);
                        }
                        model.note(now, format!("load rate {:.0} events/s", model.rate));
                    }
                    KeyCode::Char(k) => {
                        if let Some((_, c)) = FAULT_KEYS.iter().find(|(key, _)| *key == k) {
                            let c = *c;
                            let Some(driver) = stack.driver.clone() else {
                                model.note(
                                    now,
                                    "no fault driver: give [faults] in the --config file".into(),
                                );
                                continue;
                            };
                            let running = if stack.local {
                                stack::running_pid(c, layout).is_some()
                            } else {
                                model
                                    .last()
                                    .and_then(|s| s.components.get(&c.name()))
                                    .is_some_and(|st| st == "up" || st == "paused")
                            };
                            let action = if running { Action::Stop } else { Action::Start };
                            model.note(
                                now,
                                format!(
                                    "{} {}…",
                                    match action {
                                        Action::Stop => "stopping",
                                        _ => "starting",
                                    },
                                    c.name()
                                ),
                            );
                            let (layout, config, tx) =
                                (layout.clone(), config.clone(), notes_tx.clone());
                            runtime.spawn(async move {
                                let note = match fault::apply(&driver, action, c, &layout, &config)
                                    .await
                                {
                                    Ok(o) => format!("{}: {}", o.component, o.detail),
                                    Err(e) => format!("{}: {e}", c.name()),
                                };
                                let _ = tx.send(note);
                            });
                        }
                    }
                    _ => {}
                }
                continue;
            }
            next += refresh;
            if !model.paused {
                let now = runtime.block_on(collector.snapshot());
                model.push(
                    Signals::between(&previous, &now),
                    started.elapsed().as_secs_f64(),
                );
                previous = now;
            }
        }
    })();
    if let Some(l) = load {
        l.stop.cancel();
    }
    ratatui::restore();
    // A drill cut short still puts the stack back before the console exits.
    if let Some(d) = drill {
        eprintln!("stopping the drill and restoring the stack...");
        d.interrupt.cancel();
        if let Ok(report) = runtime.block_on(d.handle) {
            for r in &report.restored {
                eprintln!("  {r}");
            }
        }
    }
    outcome
}
