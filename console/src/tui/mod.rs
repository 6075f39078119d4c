//! `logctl tui`: the live operations console. Collection is [`crate::signals`]; this module only
//! keeps history ([`model`]), draws it ([`view`]) and turns keys into actions: background load
//! (the `logctl load` engine) and faults (the same driver as `logctl fault`). The terminal is
//! restored on quit, on Ctrl-C and on panic (ratatui's init installs the hook).

pub mod keys;
pub mod model;
pub mod view;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event};
use tokio_util::sync::CancellationToken;

use crate::fault::{self, Driver};
use crate::scenario::runner::{self as drill_runner, Context, RunEvent, ScenarioReport};
use crate::scenario::spec::Scenario;
use crate::signals::{Collector, Endpoints, Signals};
use crate::stack::layout::{Layout, StackConfig};
use crate::stack::{self, Component};
use keys::Action;
pub use keys::FAULT_KEYS;
use model::Model;

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
    let (notes_tx, notes) = mpsc::channel::<String>();
    let mut console = Console {
        runtime,
        layout,
        config,
        gateway: collector.gateway(),
        stack,
        drills,
        notes: notes_tx,
        load: None,
        drill: None,
        next_drill: 0,
    };
    let mut terminal = ratatui::init();
    let outcome = (|| -> anyhow::Result<()> {
        let started = Instant::now();
        let mut model = Model {
            rate: DEFAULT_RATE,
            ..Model::default()
        };
        let mut previous = console.runtime.block_on(collector.snapshot());
        let mut next = Instant::now() + refresh;
        loop {
            while let Ok(note) = notes.try_recv() {
                model.note(started.elapsed().as_secs_f64(), note);
            }
            console.follow_drill(&mut model, started.elapsed().as_secs_f64())?;
            terminal.draw(|f| view::render(f, &model))?;
            if event::poll(next.saturating_duration_since(Instant::now()))? {
                if let Event::Key(key) = event::read()? {
                    if let Some(action) = keys::action(&key) {
                        let now = started.elapsed().as_secs_f64();
                        if console.apply(action, &mut model, now)? == Flow::Quit {
                            return Ok(());
                        }
                    }
                }
                continue;
            }
            next += refresh;
            if !model.paused {
                let now = console.runtime.block_on(collector.snapshot());
                model.push(
                    Signals::between(&previous, &now),
                    started.elapsed().as_secs_f64(),
                );
                previous = now;
            }
        }
    })();
    ratatui::restore();
    console.shut_down();
    outcome
}

#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Quit,
}

/// What the console acts with: the runtime its load, faults and drills run on, and what is
/// running now. The model is what it shows; actions update both.
struct Console<'a> {
    runtime: tokio::runtime::Runtime,
    layout: &'a Layout,
    config: &'a StackConfig,
    gateway: String,
    stack: Stack,
    drills: Drills,
    /// Outcomes of faults, which finish in the background, for the event log.
    notes: mpsc::Sender<String>,
    load: Option<crate::load::Background>,
    drill: Option<RunningDrill>,
    next_drill: usize,
}

impl Console<'_> {
    fn apply(&mut self, action: Action, model: &mut Model, now: f64) -> anyhow::Result<Flow> {
        match action {
            Action::Quit => return Ok(Flow::Quit),
            Action::TogglePause => model.paused = !model.paused,
            Action::ToggleHelp => model.help = !model.help,
            Action::CycleWindow => model.window = model.window.next(),
            Action::RunDrill => self.run_drill(model, now),
            Action::AbortDrill => {
                if let Some(d) = &self.drill {
                    d.interrupt.cancel();
                    model.note(now, "drill aborted: restoring the stack…".into());
                }
            }
            Action::ToggleLoad => match self.load.take() {
                Some(l) => {
                    l.stop.cancel();
                    model.loading = false;
                    model.note(now, "load stopped".into());
                }
                None => {
                    self.load = Some(self.start_load(model.rate)?);
                    model.loading = true;
                    model.note(now, format!("load started at {:.0} events/s", model.rate));
                }
            },
            Action::Faster | Action::Slower => {
                model.rate = if action == Action::Faster {
                    model.rate * 2.0
                } else {
                    (model.rate / 2.0).max(1.0)
                };
                if let Some(l) = self.load.take() {
                    l.stop.cancel();
                    self.load = Some(self.start_load(model.rate)?);
                }
                model.note(now, format!("load rate {:.0} events/s", model.rate));
            }
            Action::ToggleComponent(c) => self.toggle(c, model, now),
            Action::ToggleLink(i) => self.toggle_link(i, model, now),
            Action::ClearLinks => self.clear_links(None, model, now),
            Action::ToggleIsolation => self.toggle_isolation(model, now),
        }
        Ok(Flow::Continue)
    }

    fn start_load(&self, rate: f64) -> anyhow::Result<crate::load::Background> {
        start_load(&self.runtime, self.layout, &self.gateway, rate)
    }

    /// Starts the next `--scenario` drill unless one runs.
    fn run_drill(&mut self, model: &mut Model, now: f64) {
        if self.drill.is_some() {
            return;
        }
        let files = &self.drills.files;
        let Some((file, scenario)) = files.get(self.next_drill % files.len().max(1)) else {
            model.note(
                now,
                "no drill to run: start the console with --scenario FILE".into(),
            );
            return;
        };
        self.next_drill += 1;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let interrupt = CancellationToken::new();
        let (s, f, ctx, stop) = (
            scenario.clone(),
            file.clone(),
            self.drills.context.clone(),
            interrupt.clone(),
        );
        let handle = self
            .runtime
            .spawn(async move { drill_runner::run(&s, &f, &ctx, stop, tx).await });
        model.drill = Some(model::Drill::new(
            &scenario.name,
            scenario.steps.iter().map(|s| s.describe()).collect(),
        ));
        model.note(now, format!("drill {} started", scenario.name));
        self.drill = Some(RunningDrill {
            interrupt,
            events: rx,
            handle,
        });
    }

    /// Shows the running drill's progress, and its verdict once it ends.
    fn follow_drill(&mut self, model: &mut Model, now: f64) -> anyhow::Result<()> {
        let Some(d) = self.drill.as_mut() else {
            return Ok(());
        };
        while let Ok(ev) = d.events.try_recv() {
            model.drill_event(now, ev);
        }
        if d.handle.is_finished() {
            if let Some(d) = self.drill.take() {
                let report = self.runtime.block_on(d.handle)?;
                let v = verdict(&report);
                model.note(now, format!("drill {} {v}", report.name));
                if let Some(shown) = model.drill.as_mut() {
                    shown.verdict = Some(v);
                }
            }
        }
        Ok(())
    }

    /// Stops `c` if it runs, starts it if not, through the stack's fault driver; the outcome
    /// arrives as a note.
    fn toggle(&self, c: Component, model: &mut Model, now: f64) {
        let Some(driver) = self.stack.driver.clone() else {
            model.note(
                now,
                "no fault driver: give [faults] in the --config file".into(),
            );
            return;
        };
        let running = if self.stack.local {
            stack::running_pid(c, self.layout).is_some()
        } else {
            model
                .last()
                .and_then(|s| s.components.get(&c.name()))
                .is_some_and(|st| st == "up" || st == "paused")
        };
        let action = if running {
            fault::Action::Stop
        } else {
            fault::Action::Start
        };
        model.mark(
            now,
            format!(
                "{} {}…",
                match action {
                    fault::Action::Stop => "stopping",
                    _ => "starting",
                },
                c.name()
            ),
        );
        self.act(move |layout, config| async move {
            match fault::apply(&driver, action, c, &layout, &config).await {
                Ok(o) => format!("{}: {}", o.component, o.detail),
                Err(e) => format!("{}: {e}", c.name()),
            }
        });
    }

    /// Runs a fault off the input loop; what it says arrives as a note in the event log.
    fn act<F, Fut>(&self, fault: F)
    where
        F: FnOnce(Layout, StackConfig) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = String> + Send + 'static,
    {
        let (layout, config, tx) = (self.layout.clone(), self.config.clone(), self.notes.clone());
        self.runtime.spawn(async move {
            let _ = tx.send(fault(layout, config).await);
        });
    }

    /// Sets a link key's fault, or clears the link when it has any (as the last reading saw).
    fn toggle_link(&self, i: usize, model: &mut Model, now: f64) {
        use crate::fault::link;
        let Some(key) = keys::LINK_KEYS.get(i).copied() else {
            return;
        };
        let Ok(links) = link::Links::parse(key.link) else {
            return;
        };
        let faulted = model.last().is_some_and(|s| {
            s.links
                .iter()
                .any(|(name, faults)| !faults.is_empty() && name.starts_with(key.link))
        });
        if faulted {
            return self.clear_links(Some(links), model, now);
        }
        let words = link::Words {
            value: key.amount,
            ..link::Words::default()
        };
        let fault = match link::fault(key.kind, &words) {
            Ok(f) => f,
            Err(e) => return model.note(now, e),
        };
        model.mark(now, format!("{}…", key.label));
        self.act(move |layout, config| async move {
            match link::set(links, &fault, &layout, &config).await {
                Ok((o, _)) => o.detail,
                Err(e) => e.to_string(),
            }
        });
    }

    /// Cuts the leading broker off, or heals every host when the last reading saw one cut.
    fn toggle_isolation(&self, model: &mut Model, now: f64) {
        use crate::fault::host::HostFault;
        let cut = model
            .last()
            .is_some_and(|s| s.components.values().any(|st| st == "isolated"));
        let fault = if cut {
            HostFault::Heal(None, None)
        } else {
            HostFault::Isolate(fault::Target::KafkaLeader)
        };
        model.mark(now, format!("{}…", fault.describe()));
        self.act(move |layout, config| async move {
            match crate::fault::host::apply(fault, &layout, &config).await {
                Ok((o, _)) => o.detail,
                Err(e) => e.to_string(),
            }
        });
    }

    fn clear_links(&self, links: Option<crate::fault::link::Links>, model: &mut Model, now: f64) {
        model.mark(now, "clearing link faults…".into());
        self.act(move |layout, config| async move {
            match crate::fault::link::clear(links, &layout, &config).await {
                Ok(o) => format!("{}: {}", o.component, o.detail),
                Err(e) => e.to_string(),
            }
        });
    }

    /// On quit: the load stopped, and a drill cut short still puts the stack back.
    fn shut_down(self) {
        if let Some(l) = self.load {
            l.stop.cancel();
        }
        if let Some(d) = self.drill {
            eprintln!("stopping the drill and restoring the stack...");
            d.interrupt.cancel();
            if let Ok(report) = self.runtime.block_on(d.handle) {
                for r in &report.restored {
                    eprintln!("  {r}");
                }
            }
        }
    }
}
