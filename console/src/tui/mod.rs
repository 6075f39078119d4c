//! `logctl tui`: the live operations console. Collection is [`crate::signals`]; this module only
//! keeps history ([`model`]), draws it ([`view`]) and turns keys into actions: background load
//! (the `logctl load` engine) and faults (the same driver as `logctl fault`). The terminal is
//! restored on quit, on Ctrl-C and on panic (ratatui's init installs the hook).

pub mod model;
pub mod view;

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use tokio_util::sync::CancellationToken;

use crate::fault::{self, Action, Driver};
use crate::scenario::runner::{self as drill_runner, Context, RunEvent, ScenarioReport};
use crate::scenario::spec::Scenario;
use crate::signals::{Collector, Signals};
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

struct Load {
    stop: CancellationToken,
}

fn start_load(
    runtime: &tokio::runtime::Runtime,
    layout: &Layout,
    config: &StackConfig,
    rate: f64,
) -> anyhow::Result<Load> {
    let plan = logctl_loadgen::plan::Plan::new(
        rate,
        Some(Duration::from_secs(24 * 3600)),
        None,
        Duration::ZERO,
    )?;
    let target = Arc::new(logctl_loadgen::http::Gateway::new(
        &format!("http://127.0.0.1:{}", config.ports.gateway),
        crate::load::token_source(layout),
        1024,
    )?);
    let stop = CancellationToken::new();
    let token = stop.clone();
    runtime.spawn(async move {
        let options = logctl_loadgen::engine::Options::default();
        logctl_loadgen::engine::run(&plan, target, &options, token, |_| {}).await;
    });
    Ok(Load { stop })
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
) -> anyhow::Result<()> {
    // One worker drives background load and faults while the screen waits for keys.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let collector = runtime.block_on(async { Collector::new(layout, config) });
    let (notes_tx, notes) = mpsc::channel::<String>();
    let mut terminal = ratatui::init();
    let mut load: Option<Load> = None;
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
                            load = Some(start_load(&runtime, layout, config, model.rate)?);
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
                            load = Some(start_load(&runtime, layout, config, model.rate)?);
                        }
                        model.note(now, format!("load rate {:.0} events/s", model.rate));
                    }
                    KeyCode::Char(k) => {
                        if let Some((_, c)) = FAULT_KEYS.iter().find(|(key, _)| *key == k) {
                            let c = *c;
                            let action = if stack::running_pid(c, layout).is_some() {
                                Action::Stop
                            } else {
                                Action::Start
                            };
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
                                let note =
                                    match fault::apply(&Driver::Local, action, c, &layout, &config)
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
