//! The screen's text panes: the title line, lag by partition with each one's status, breakers,
//! brokers, components, errors, the drill's steps, help and the event log.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;

use super::super::model::{Drill, Model, StepState};
use super::charts::seconds;
use super::HELP;
use crate::signals::Signals;
use crate::units::thousands as rate;

pub(super) fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.1} ms"))
}

pub(super) fn state_color(state: &str) -> Color {
    match state {
        "up" | "closed" | "ok" => Color::Green,
        "half_open" | "starting" | "warn" | "paused" => Color::Yellow,
        _ => Color::Red,
    }
}

pub(super) fn colored(text: String, state: &str) -> Span<'static> {
    Span::styled(text, Style::default().fg(state_color(state)))
}

pub(super) fn step_mark(state: StepState) -> Span<'static> {
    match state {
        StepState::Pending => Span::raw("· "),
        StepState::Running => Span::styled("▶ ", Style::default().fg(Color::Yellow)),
        StepState::Passed => Span::styled("✓ ", Style::default().fg(Color::Green)),
        StepState::Failed => Span::styled("✗ ", Style::default().fg(Color::Red)),
    }
}

/// The drill's steps, scrolled so the running one stays in view.
pub(super) fn drill_pane(frame: &mut Frame, area: Rect, drill: &Drill) {
    let rows = area.height.saturating_sub(2) as usize;
    let current = drill
        .steps
        .iter()
        .position(|s| matches!(s.state, StepState::Running | StepState::Failed))
        .unwrap_or(drill.steps.len().saturating_sub(1));
    let first = current.saturating_sub(rows.saturating_sub(2));
    let lines: Vec<Line> = drill
        .steps
        .iter()
        .enumerate()
        .skip(first)
        .take(rows)
        .map(|(i, s)| {
            Line::from(vec![
                step_mark(s.state),
                Span::raw(format!("{:>2}. {}", i + 1, s.description)),
            ])
        })
        .collect();
    let verdict = drill.progress();
    let color = match drill.verdict.as_deref() {
        Some("PASSED") => Color::Green,
        Some(_) => Color::Red,
        None => Color::Yellow,
    };
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(Line::from(vec![
            Span::raw(format!(" Drill {} ", drill.name)),
            Span::styled(format!("{verdict} "), Style::default().fg(color)),
        ]))),
        area,
    );
}

pub(super) fn halves(r: Rect) -> [Rect; 2] {
    Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(r)
}

pub(super) fn lag_text(s: &Signals) -> String {
    s.lag_total.map_or("?".into(), |l| rate(l as f64))
}

pub(super) fn title_line(frame: &mut Frame, area: Rect, model: &Model, s: &Signals) {
    let status = model.lag_status();
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled("logctl", Style::default().add_modifier(Modifier::BOLD)),
            Span::raw(format!(
                "  stored {}/s  lag {}{} ",
                rate(s.stored_per_sec),
                lag_text(s),
                s.lag_seconds
                    .map_or_else(String::new, |secs| format!(" · {} behind", seconds(secs)))
            )),
            colored(status.to_uppercase(), status),
            Span::raw(format!("  window {}", model.window.label())),
            Span::raw(if model.loading {
                format!("  load {}/s", rate(model.rate))
            } else {
                String::new()
            }),
            Span::raw(if model.paused { "  [paused]" } else { "" }),
        ])),
        area,
    );
}

/// Lag as Kafka reports it (not the consumer's own view), in records and in time, with each
/// partition's status; a table when there is room, a few lines of cells when not.
pub(super) fn lag_pane(frame: &mut Frame, area: Rect, model: &Model, s: &Signals) {
    let status = model.lag_status();
    let mut lines = vec![Line::from(vec![
        Span::raw(format!(
            "total {} {}{}  ",
            lag_text(s),
            model.lag_trend(),
            s.lag_seconds
                .map_or_else(String::new, |secs| format!("  {} behind", seconds(secs)))
        )),
        colored(status.to_uppercase(), status),
    ])];
    let behind = |p: &i32| {
        s.partition_health
            .get(p)
            .and_then(|(secs, _)| *secs)
            .map_or_else(|| "?".into(), seconds)
    };
    let state = |p: &i32| {
        s.partition_health
            .get(p)
            .map_or("unknown", |(_, st)| st.as_str())
    };
    let inner = Block::bordered().inner(area);
    if usize::from(inner.height) >= s.lag_by_partition.len() + 2 {
        lines.push(Line::raw(format!(
            "{:<10}{:>10}{:>10}  status",
            "partition", "records", "behind"
        )));
        lines.extend(s.lag_by_partition.iter().map(|(p, l)| {
            Line::from(vec![
                Span::raw(format!(
                    "{:<10}{:>10}{:>10}  ",
                    p,
                    rate(*l as f64),
                    behind(p)
                )),
                colored(state(p).to_uppercase(), state(p)),
            ])
        }));
    } else {
        let cells: Vec<Vec<Span>> = s
            .lag_by_partition
            .iter()
            .map(|(p, l)| {
                vec![
                    Span::raw(format!("p{p} {} {} ", rate(*l as f64), behind(p))),
                    colored(format!("{:<6}", state(p).to_uppercase()), state(p)),
                ]
            })
            .collect();
        let per_line = (usize::from(inner.width) / 22).max(1);
        lines.extend(cells.chunks(per_line).map(|row| Line::from(row.concat())));
    }
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Consumer lag (from Kafka) ")),
        area,
    );
}

/// Each breaker's state and how long it has been in it.
pub(super) fn breakers_pane(frame: &mut Frame, area: Rect, model: &Model, s: &Signals) {
    let lines: Vec<Line> = s
        .breakers
        .iter()
        .map(|(name, state)| {
            Line::from(vec![
                Span::raw(format!("{name:<10}")),
                colored(format!("{state:<10}"), state),
                Span::raw(model.breaker_age(name)),
            ])
        })
        .collect();
    frame.render_widget(
        Paragraph::new(breakers_or_none(lines)).block(Block::bordered().title(" Breakers ")),
        area,
    );
}

/// Each broker of a cluster: up or not, partitions of `log-events` it leads, and in how many
/// partitions' in-sync copies it is; then the under-replicated and under-min-ISR counts.
pub(super) fn brokers_pane(frame: &mut Frame, area: Rect, s: &Signals) {
    let mut lines: Vec<Line> = s
        .components
        .iter()
        .filter(|(name, _)| name.starts_with("kafka"))
        .map(|(name, state)| {
            let node = crate::stack::Component::parse(name).and_then(|c| match c {
                crate::stack::Component::Kafka(i) => Some(crate::stack::cluster::node_id(i)),
                _ => None,
            });
            let led = node.and_then(|n| s.partitions_led.get(&n)).copied();
            let in_sync = node.map_or(0, |n| s.isr.values().filter(|isr| isr.contains(&n)).count());
            Line::from(vec![
                Span::raw(format!("{name:<9}")),
                colored(format!("{state:<5}"), state),
                Span::raw(format!(
                    " leads {:<2} in sync {in_sync}/{}",
                    led.unwrap_or(0),
                    s.isr.len()
                )),
            ])
        })
        .collect();
    let counts = |v: Option<f64>| v.map_or("?".into(), |n| format!("{n:.0}"));
    let under = s.under_replicated.unwrap_or(0.0) + s.under_min_isr.unwrap_or(0.0);
    lines.push(Line::from(colored(
        format!(
            "under-replicated {}  under min ISR {}",
            counts(s.under_replicated),
            counts(s.under_min_isr)
        ),
        if under > 0.0 { "half_open" } else { "closed" },
    )));
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Brokers ")),
        area,
    );
}

/// Three components to a line (two when narrow) with their RSS; pids too when wide enough.
pub(super) fn components_pane(frame: &mut Frame, area: Rect, s: &Signals) {
    let wide = area.width >= 105;
    let cells: Vec<Vec<Span>> = s
        .components
        .iter()
        .map(|(name, state)| {
            let (pid, rss) =
                s.processes
                    .get(name)
                    .map_or((String::new(), String::new()), |(pid, rss)| {
                        (
                            format!(" {pid}"),
                            rss.map_or_else(String::new, |m| format!(" {m:.0}M")),
                        )
                    });
            vec![
                Span::raw(format!(
                    "{name:<width$}",
                    width = if area.width >= 90 { 11 } else { 9 }
                )),
                colored(format!("{state:<5}"), state),
                Span::raw(format!(
                    "{:<16}",
                    if wide { format!("{pid}{rss}") } else { rss }
                )),
            ]
        })
        .collect();
    let mut lines: Vec<Line> = cells
        .chunks(if area.width >= 90 { 3 } else { 2 })
        .map(|row| Line::from(row.concat()))
        .collect();
    if let Some(line) = links_line(s) {
        lines.push(line);
    }
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Components ")),
        area,
    );
}

/// The fault proxy's links with a fault (slowed, thinned, cut), on a stack that has it.
pub(super) fn links_line(s: &Signals) -> Option<Line<'static>> {
    if s.links.is_empty() && s.cuts.is_empty() {
        return None;
    }
    if s.links.is_empty() {
        return Some(Line::from(vec![
            Span::raw("cut        "),
            colored(s.cuts.join("  "), "open"),
        ]));
    }
    let faulted: Vec<String> = s
        .links
        .iter()
        .filter(|(_, faults)| !faults.is_empty())
        .map(|(name, faults)| format!("{name}: {}", faults.join(", ")))
        .collect();
    Some(Line::from(vec![
        Span::raw("links      "),
        if faulted.is_empty() && s.cuts.is_empty() {
            colored("no faults".into(), "up")
        } else {
            colored(
                faulted
                    .into_iter()
                    .chain(s.cuts.iter().cloned())
                    .collect::<Vec<_>>()
                    .join("  "),
                "open",
            )
        },
    ]))
}

pub(super) fn errors_pane(frame: &mut Frame, area: Rect, s: &Signals) {
    frame.render_widget(
        Paragraph::new(vec![
            Line::raw(format!(
                "4xx {}/s  5xx {}/s  429 {}/s",
                rate(s.client_errors_per_sec),
                rate(s.server_errors_per_sec),
                rate(s.rate_limited_per_sec)
            )),
            Line::raw(format!(
                "dead-lettered {}  spooled {}",
                rate(s.dead_lettered_total),
                rate(s.spool_records)
            )),
            Line::raw(format!(
                "limited in memory {}/s",
                rate(s.rate_limit_fallback_per_sec)
            )),
        ])
        .block(Block::bordered().title(" Errors ")),
        area,
    );
}

pub(super) fn help_pane(frame: &mut Frame, area: Rect) {
    let help: Vec<Line> = HELP.iter().map(|l| Line::raw(*l)).collect();
    frame.render_widget(
        Paragraph::new(help).block(Block::bordered().title(" Keys ")),
        area,
    );
}

/// The state-change log, newest first, as much as fits.
pub(super) fn events_pane(frame: &mut Frame, area: Rect, model: &Model) {
    let log: Vec<Line> = model
        .events
        .iter()
        .rev()
        .take(area.height.saturating_sub(2) as usize)
        .map(|(t, e)| Line::raw(format!("{t:>6.0}s  {e}")))
        .collect();
    frame.render_widget(
        Paragraph::new(log).block(Block::bordered().title(" Events ")),
        area,
    );
}

pub(super) fn breakers_or_none(lines: Vec<Line<'static>>) -> Vec<Line<'static>> {
    if lines.is_empty() {
        vec![Line::raw("none reported")]
    } else {
        lines
    }
}
