//! `logctl tui`: the live operations console. Collection is [`crate::signals`]; this module only
//! keeps history ([`model`]), draws it ([`view`]) and reads keys. The terminal is restored on
//! quit, on Ctrl-C and on panic (ratatui's init installs the hook).

pub mod model;
pub mod view;

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

use crate::signals::{Collector, Signals};
use crate::stack::layout::{Layout, StackConfig};
use model::Model;

pub fn run(layout: &Layout, config: &StackConfig, refresh: Duration) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let collector = runtime.block_on(async { Collector::new(layout, config) });
    let mut terminal = ratatui::init();
    let outcome = (|| -> anyhow::Result<()> {
        let started = Instant::now();
        let mut model = Model::default();
        let mut previous = runtime.block_on(collector.snapshot());
        let mut next = Instant::now() + refresh;
        loop {
            terminal.draw(|f| view::render(f, &model))?;
            if event::poll(next.saturating_duration_since(Instant::now()))? {
                if let Event::Key(key) = event::read()? {
                    if key.kind != KeyEventKind::Press {
                        continue;
                    }
                    match key.code {
                        KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                            return Ok(())
                        }
                        KeyCode::Char('p') => model.paused = !model.paused,
                        _ => {}
                    }
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
    ratatui::restore();
    outcome
}
