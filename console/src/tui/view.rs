//! Draws the model: one screen, readable at 80x24, with more room given to charts and the event
//! log on larger terminals, and a compact summary on tiny ones.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Sparkline};
use ratatui::Frame;

use super::model::{Drill, Model, StepState};
use crate::signals::Signals;
use crate::units::thousands as rate;

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.1} ms"))
}

fn state_color(state: &str) -> Color {
    match state {
        "up" | "closed" | "ok" => Color::Green,
        "half_open" | "starting" | "lagging" | "paused" => Color::Yellow,
        _ => Color::Red,
    }
}

fn colored(text: String, state: &str) -> Span<'static> {
    Span::styled(text, Style::default().fg(state_color(state)))
}

pub const KEYS: &str =
    "q quit  p pause  l load  +/- rate  1-6 stop/start  K P R G links  I isolate  r drill  ? help";

pub const HELP: [&str; 15] = [
    "q, Esc, Ctrl-C   quit (the terminal is restored; a running drill restores the stack)",
    "p                pause the display",
    "l                start / stop background load (the logctl load engine)",
    "+ / -            double / halve the load rate",
    "1 kafka  2 postgres  3 redis  4 producer  5 consumer  6 gateway:",
    "                 stop the component if it runs, start it if not",
    "K                200 ms on every broker's link      (on a stack made with",
    "P                PostgreSQL's link at 1 Mbit/s       `logctl up --with-proxies`;",
    "R                Redis's link black-holed            the same key again clears",
    "G                the gateway cut from its producers  the link)",
    "C                clear every link's faults",
    "I                cut the leading broker off (`up --hosts`), or heal every host",
    "r / x            run the next --scenario drill / abort it (the stack is restored)",
    "?                this help",
    "",
];

fn step_mark(state: StepState) -> Span<'static> {
    match state {
        StepState::Pending => Span::raw("· "),
        StepState::Running => Span::styled("▶ ", Style::default().fg(Color::Yellow)),
        StepState::Passed => Span::styled("✓ ", Style::default().fg(Color::Green)),
        StepState::Failed => Span::styled("✗ ", Style::default().fg(Color::Red)),
    }
}

/// The drill's steps, scrolled so the running one stays in view.
fn drill_pane(frame: &mut Frame, area: Rect, drill: &Drill) {
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

/// The whole screen: a title line, two rows of two panes, the components (three to a line),
/// errors beside the brokers of a cluster, the event log (beside a running drill, or under the
/// help), and the keys.
pub fn render(frame: &mut Frame, model: &Model) {
    let area = frame.area();
    let empty = Signals::default();
    let s = model.last().unwrap_or(&empty);
    if area.width < 60 || area.height < 16 {
        compact(frame, area, model, s);
        return;
    }
    // A one-node stack keeps components and errors side by side; a cluster (or many
    // instances) gets the components a full-width pane and the brokers one beside the errors.
    let cluster = s.partitions_led.len() > 1 || s.brokers_up.is_some_and(|b| b > 1.0);
    let links_line = u16::from(!s.links.is_empty() || !s.cuts.is_empty());
    let spread = cluster || s.components.len() > 6 || links_line > 0;
    let per_line = if area.width >= 90 { 3 } else { 2 };
    let component_lines = s.components.len().div_ceil(per_line).max(1) as u16 + links_line;
    let brokers = s
        .components
        .keys()
        .filter(|n| n.starts_with("kafka"))
        .count() as u16;
    let (row3_height, row4_height) = match (spread, cluster) {
        (false, _) => (5, 0),
        (true, true) => (component_lines + 2, brokers.max(2) + 3),
        (true, false) => (component_lines + 2, 4),
    };
    let [title, body, events, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(12 + row3_height + row4_height),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    title_line(frame, title, model, s);
    let [row1, row2, row3, row4] = Layout::vertical([
        Constraint::Length(7),
        Constraint::Length(5),
        Constraint::Length(row3_height),
        Constraint::Length(row4_height),
    ])
    .areas(body);
    let [through, latency] = halves(row1);
    throughput_pane(frame, through, model, s);
    latency_pane(frame, latency, model, s);
    let [lag, breakers] = halves(row2);
    lag_pane(frame, lag, model, s);
    breakers_pane(frame, breakers, model, s);
    if !spread {
        let [components, errors] = halves(row3);
        components_pane(frame, components, s);
        errors_pane(frame, errors, s);
    } else {
        components_pane(frame, row3, s);
        if cluster {
            let [brokers, errors] = halves(row4);
            brokers_pane(frame, brokers, s);
            errors_pane(frame, errors, s);
        } else {
            errors_pane(frame, row4, s);
        }
    }
    if model.help {
        help_pane(frame, events);
    } else {
        let events = match &model.drill {
            Some(drill) => {
                let [left, right] = halves(events);
                drill_pane(frame, left, drill);
                right
            }
            None => events,
        };
        events_pane(frame, events, model);
    }
    frame.render_widget(Paragraph::new(KEYS), footer);
}

fn halves(r: Rect) -> [Rect; 2] {
    Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(r)
}

fn lag_text(s: &Signals) -> String {
    s.lag_total.map_or("?".into(), |l| rate(l as f64))
}

fn title_line(frame: &mut Frame, area: Rect, model: &Model, s: &Signals) {
    let status = model.lag_status();
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled("logctl", Style::default().add_modifier(Modifier::BOLD)),
            Span::raw(format!(
                "  stored {}/s  lag {} ",
                rate(s.stored_per_sec),
                lag_text(s)
            )),
            colored(status.to_owned(), status),
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

/// What each stage passed on, over the stored rate's last minutes.
fn throughput_pane(frame: &mut Frame, area: Rect, model: &Model, s: &Signals) {
    let stored: Vec<u64> = model
        .history
        .iter()
        .map(|h| h.stored_per_sec.round() as u64)
        .collect();
    numbers_over_chart(
        frame,
        area,
        " Throughput (events/s) ",
        vec![
            Line::raw(format!("accepted  {}", rate(s.accepted_per_sec))),
            Line::raw(format!("published {}", rate(s.published_per_sec))),
            Line::raw(format!("stored    {}", rate(s.stored_per_sec))),
        ],
        &stored,
    );
}

/// The gateway's answer times and the end-to-end time, over the gateway p99's last minutes.
fn latency_pane(frame: &mut Frame, area: Rect, model: &Model, s: &Signals) {
    let p99: Vec<u64> = model
        .history
        .iter()
        .map(|h| h.gateway_p99_ms.unwrap_or(0.0).round() as u64)
        .collect();
    numbers_over_chart(
        frame,
        area,
        " Latency ",
        vec![
            Line::raw(format!("gateway p50 {}", ms(s.gateway_p50_ms))),
            Line::raw(format!("gateway p99 {}", ms(s.gateway_p99_ms))),
            Line::raw(format!("end-to-end p99 {}", ms(s.end_to_end_p99_ms))),
        ],
        &p99,
    );
}

/// Lag as Kafka reports it (not the consumer's own view), its trend and each partition's.
fn lag_pane(frame: &mut Frame, area: Rect, model: &Model, s: &Signals) {
    let status = model.lag_status();
    let parts: Vec<String> = s
        .lag_by_partition
        .iter()
        .map(|(p, l)| format!("p{p} {}", rate(*l as f64)))
        .collect();
    frame.render_widget(
        Paragraph::new(vec![
            Line::from(vec![
                Span::raw(format!("total {} {} ", lag_text(s), model.lag_trend())),
                colored(status.to_owned(), status),
            ]),
            Line::raw(parts.join("  ")),
        ])
        .block(Block::bordered().title(" Consumer lag (from Kafka) ")),
        area,
    );
}

/// Each breaker's state and how long it has been in it.
fn breakers_pane(frame: &mut Frame, area: Rect, model: &Model, s: &Signals) {
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
fn brokers_pane(frame: &mut Frame, area: Rect, s: &Signals) {
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
fn components_pane(frame: &mut Frame, area: Rect, s: &Signals) {
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
fn links_line(s: &Signals) -> Option<Line<'static>> {
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

fn errors_pane(frame: &mut Frame, area: Rect, s: &Signals) {
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
        ])
        .block(Block::bordered().title(" Errors ")),
        area,
    );
}

fn help_pane(frame: &mut Frame, area: Rect) {
    let help: Vec<Line> = HELP.iter().map(|l| Line::raw(*l)).collect();
    frame.render_widget(
        Paragraph::new(help).block(Block::bordered().title(" Keys ")),
        area,
    );
}

/// The state-change log, newest first, as much as fits.
fn events_pane(frame: &mut Frame, area: Rect, model: &Model) {
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

/// A bordered pane: a few lines of figures, and under them the latest history that fits.
fn numbers_over_chart(
    frame: &mut Frame,
    area: Rect,
    title: &str,
    lines: Vec<Line<'static>>,
    history: &[u64],
) {
    let [text, chart] =
        Layout::vertical([Constraint::Length(lines.len() as u16), Constraint::Min(0)])
            .areas(Block::bordered().inner(area));
    frame.render_widget(Block::bordered().title(title.to_owned()), area);
    frame.render_widget(Paragraph::new(lines), text);
    let shown = &history[history.len().saturating_sub(chart.width as usize)..];
    frame.render_widget(Sparkline::default().data(shown), chart);
}

fn breakers_or_none(lines: Vec<Line<'static>>) -> Vec<Line<'static>> {
    if lines.is_empty() {
        vec![Line::raw("none reported")]
    } else {
        lines
    }
}

/// A few lines for terminals too small for the panes.
fn compact(frame: &mut Frame, area: Rect, model: &Model, s: &Signals) {
    let open: Vec<&str> = s
        .breakers
        .iter()
        .filter(|(_, st)| *st != "closed")
        .map(|(n, _)| n.as_str())
        .collect();
    let down: Vec<&str> = s
        .components
        .iter()
        .filter(|(_, st)| *st != "up")
        .map(|(n, _)| n.as_str())
        .collect();
    let lines = vec![
        Line::raw(format!("stored {}/s", rate(s.stored_per_sec))),
        Line::raw(format!("p99 {}", ms(s.gateway_p99_ms))),
        Line::from(vec![
            Span::raw(format!("lag {} ", lag_text(s))),
            colored(model.lag_status().to_owned(), model.lag_status()),
        ]),
        Line::raw(format!(
            "open: {}",
            if open.is_empty() {
                "none".into()
            } else {
                open.join(",")
            }
        )),
        Line::raw(format!(
            "down: {}",
            if down.is_empty() {
                "none".into()
            } else {
                down.join(",")
            }
        )),
        Line::raw(if model.loading {
            format!("load {}/s  q quit", rate(model.rate))
        } else {
            "q quit".into()
        }),
    ];
    frame.render_widget(Paragraph::new(lines), area);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use std::collections::BTreeMap;

    fn screen(model: &Model, w: u16, h: u16) -> String {
        let mut t = Terminal::new(TestBackend::new(w, h)).expect("terminal");
        t.draw(|f| render(f, model)).expect("draw");
        let buf = t.backend().buffer().clone();
        (0..h)
            .map(|y| {
                (0..w)
                    .map(|x| buf[(x, y)].symbol().to_owned())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn healthy() -> Signals {
        Signals {
            accepted_per_sec: 1000.0,
            published_per_sec: 1000.0,
            stored_per_sec: 998.0,
            gateway_p50_ms: Some(4.2),
            gateway_p99_ms: Some(12.5),
            end_to_end_p99_ms: Some(80.0),
            lag_total: Some(0),
            lag_by_partition: (0..6).map(|p| (p, 0)).collect(),
            breakers: ["kafka", "postgres", "producer"]
                .iter()
                .map(|n| ((*n).into(), "closed".into()))
                .collect(),
            components: [
                "kafka", "postgres", "redis", "gateway", "producer", "consumer",
            ]
            .iter()
            .map(|n| ((*n).into(), "up".into()))
            .collect(),
            ..Signals::default()
        }
    }

    /// Fails naming the first missing piece, with the whole screen.
    fn assert_shows(text: &str, wanted: &[&str]) {
        for want in wanted {
            assert!(text.contains(want), "{want:?} missing:\n{text}");
        }
    }

    #[test]
    fn a_healthy_stack_at_80x24() {
        let mut m = Model::default();
        m.push(healthy(), 1.0);
        let text = screen(&m, 80, 24);
        assert_shows(
            &text,
            &[
                "Throughput",
                "stored    998",
                "gateway p99 12.5 ms",
                "total 0",
                "ok",
                "postgres  closed",
                "consumer up",
                "q quit",
            ],
        );
    }

    #[test]
    fn a_cluster_shows_its_brokers_and_every_instance() {
        let mut s = healthy();
        for name in [
            "kafka-2",
            "kafka-3",
            "producer-2",
            "gateway-2",
            "haproxy",
            "consumer-2",
        ] {
            s.components.insert(name.into(), "up".into());
        }
        s.components.insert("kafka-3".into(), "down".into());
        s.brokers_up = Some(2.0);
        s.under_replicated = Some(7.0);
        s.under_min_isr = Some(0.0);
        s.partitions_led = BTreeMap::from([(1, 3), (2, 3)]);
        s.isr = (0..7)
            .map(|p| (format!("log-events/{p}"), vec![1, 2]))
            .collect();
        let mut m = Model::default();
        m.push(s, 1.0);
        let text = screen(&m, 120, 40);
        assert_shows(
            &text,
            &[
                "Brokers",
                "kafka-2  up    leads 3  in sync 7/7",
                "kafka-3  down  leads 0  in sync 0/7",
                "under-replicated 7  under min ISR 0",
                "gateway-2",
                "haproxy",
                "consumer-2",
            ],
        );
    }

    #[test]
    fn a_degraded_stack_shows_what_broke() {
        let mut m = Model::default();
        m.push(healthy(), 1.0);
        let mut bad = healthy();
        bad.stored_per_sec = 0.0;
        bad.lag_total = Some(4_200);
        bad.lag_by_partition = BTreeMap::from([(0, 4_200)]);
        bad.breakers.insert("postgres".into(), "open".into());
        bad.components.insert("postgres".into(), "down".into());
        m.push(bad, 2.0);
        let text = screen(&m, 100, 30);
        assert_shows(
            &text,
            &[
                "postgres  open",
                "postgres down",
                "total 4,200 ↑",
                "stalled",
                "breaker postgres open",
                "lag above 1000",
            ],
        );
    }

    #[test]
    fn help_and_load_show_when_asked() {
        let mut m = Model {
            loading: true,
            rate: 2000.0,
            help: true,
            ..Model::default()
        };
        m.push(healthy(), 1.0);
        let text = screen(&m, 100, 30);
        assert!(text.contains("load 2,000/s"), "{text}");
        assert!(text.contains("2 postgres"), "{text}");
    }

    #[test]
    fn a_drill_shows_its_steps_and_verdict() {
        use crate::scenario::runner::{RunEvent, StepReport};
        let mut m = Model::default();
        m.push(healthy(), 1.0);
        m.drill = Some(Drill::new(
            "postgres-outage",
            vec![
                "load 1000 events/s".into(),
                "fault stop postgres".into(),
                "assert lag > 5000".into(),
            ],
        ));
        let done = |index: usize, passed: bool| StepReport {
            index,
            kind: "assert".into(),
            description: "assert lag > 5000".into(),
            passed,
            at_secs: 1.0,
            duration_secs: 0.1,
            detail: "condition not met".into(),
            conditions: vec![crate::scenario::condition::Checked {
                condition: "lag > 5000".into(),
                passed,
                observed: "12".into(),
            }],
            verification: None,
        };
        m.drill_event(
            2.0,
            RunEvent::Step {
                index: 1,
                total: 3,
                description: String::new(),
            },
        );
        m.drill_event(2.0, RunEvent::StepDone(done(1, true)));
        m.drill_event(
            2.0,
            RunEvent::Step {
                index: 2,
                total: 3,
                description: String::new(),
            },
        );
        let text = screen(&m, 100, 30);
        assert_shows(
            &text,
            &[
                "Drill postgres-outage step 2/3",
                "✓  1. load",
                "▶  2. fault stop postgres",
                "·  3. assert",
            ],
        );
        m.drill_event(3.0, RunEvent::StepDone(done(3, false)));
        if let Some(d) = m.drill.as_mut() {
            d.verdict = Some("FAILED".into());
        }
        let text = screen(&m, 180, 30);
        assert!(text.contains("✗  3. assert"), "{text}");
        assert!(text.contains("Drill postgres-outage FAILED"), "{text}");
        assert!(
            text.contains("expected `lag > 5000`, observed 12"),
            "in the event log: {text}"
        );
    }

    #[test]
    fn a_tiny_terminal_gets_a_summary() {
        let mut m = Model::default();
        m.push(healthy(), 1.0);
        let text = screen(&m, 30, 8);
        assert!(text.contains("stored 998/s"), "{text}");
        assert!(text.contains("down: none"), "{text}");
        // Nothing to show yet is not a crash either.
        let _ = screen(&Model::default(), 80, 24);
        let _ = screen(&Model::default(), 1, 1);
    }
}
