//! Draws the model: one screen, readable at 80x24, with more room given to charts and the event
//! log on larger terminals, and a compact summary on tiny ones. The charts are in [`charts`],
//! the text panes in [`panes`].

mod charts;
mod panes;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::model::Model;
use crate::signals::Signals;
use crate::units::thousands as rate;
use panes::{colored, halves, lag_text, ms};

pub const KEYS: &str = "q quit  p pause  w window  l load  +/- rate  1-6 stop/start  K P R G links  I isolate  r drill  ? help";

pub const HELP: [&str; 22] = [
    "q, Esc, Ctrl-C   quit (the terminal is restored; a running drill restores the stack)",
    "p                pause the display",
    "w                the charts' window: 1, 5 or 15 minutes",
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
    "Lag: records behind, and how long behind (the oldest unconsumed record's age).",
    "Status per partition, Burrow's rules over the last 15 s of readings:",
    "  OK     lag reached zero in the window, or shrinks",
    "  WARN   offsets move but lag grew at every reading of the window",
    "  STALL  lag above zero and the committed offset still for 6 s",
    "  STOP   no live consumer holds the partition",
    "  ERR    offset went back, or unconsumed records were deleted by retention",
];

/// How the screen's rows are shared out.
struct Rows {
    charts: u16,
    lag: u16,
    components: u16,
    brokers: u16,
}

/// Components and brokers get what their lines need; of the rest the charts take two thirds, the
/// lag table a line per partition when it fits, and the event log keeps at least four lines
/// (ten beside a drill).
fn rows(area: Rect, s: &Signals, spread: bool, cluster: bool, drill: bool) -> Rows {
    let links_line = u16::from(!s.links.is_empty() || !s.cuts.is_empty());
    let per_line = if area.width >= 90 { 3 } else { 2 };
    let lines = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
    let component_lines =
        lines(s.components.len().div_ceil(per_line).max(1)).saturating_add(links_line);
    let brokers = lines(
        s.components
            .keys()
            .filter(|n| n.starts_with("kafka"))
            .count(),
    );
    let (components, brokers) = match (spread, cluster) {
        (false, _) => (5, 0),
        (true, true) => (
            component_lines.saturating_add(2),
            brokers.max(2).saturating_add(3),
        ),
        (true, false) => (component_lines.saturating_add(2), 5),
    };
    // A running drill shows its steps beside the log: give them room.
    let events: u16 = if drill { 10 } else { 4 };
    let spare = area.height.saturating_sub(
        2u16.saturating_add(components)
            .saturating_add(brokers)
            .saturating_add(events),
    );
    let table = lines(s.lag_by_partition.len().max(1)).saturating_add(4);
    let lag = if spare >= table.saturating_add(8) {
        table
    } else {
        5
    };
    Rows {
        charts: (u32::from(spare.saturating_sub(lag)) * 2 / 3).clamp(7, 18) as u16,
        lag,
        components,
        brokers,
    }
}

/// The whole screen: a title line; charts of throughput, latency and lag in time (and the
/// latency spectrum when wide); lag by partition beside the breakers; the components (three to
/// a line), errors beside the brokers of a cluster; the event log (beside a running drill); the
/// keys. Help is a page of its own.
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
    let spread = cluster || s.components.len() > 6 || !s.links.is_empty() || !s.cuts.is_empty();
    let r = rows(area, s, spread, cluster, model.drill.is_some());
    let [title, charts_row, lag_row, row3, row4, events, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(r.charts),
        Constraint::Length(r.lag),
        Constraint::Length(r.components),
        Constraint::Length(r.brokers),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    panes::title_line(frame, title, model, s);
    if model.help {
        // Help is a full page: everything between the title and the keys.
        panes::help_pane(frame, charts_row.union(events));
        frame.render_widget(Paragraph::new(KEYS), footer);
        return;
    }
    chart_row(frame, charts_row, model);
    let [lag, breakers] = halves(lag_row);
    panes::lag_pane(frame, lag, model, s);
    panes::breakers_pane(frame, breakers, model, s);
    if !spread {
        let [components, errors] = halves(row3);
        panes::components_pane(frame, components, s);
        panes::errors_pane(frame, errors, s);
    } else {
        panes::components_pane(frame, row3, s);
        if cluster {
            let [brokers, errors] = halves(row4);
            panes::brokers_pane(frame, brokers, s);
            panes::errors_pane(frame, errors, s);
        } else {
            panes::errors_pane(frame, row4, s);
        }
    }
    let events = match &model.drill {
        Some(drill) => {
            let [left, right] = halves(events);
            panes::drill_pane(frame, left, drill);
            right
        }
        None => events,
    };
    panes::events_pane(frame, events, model);
    frame.render_widget(Paragraph::new(KEYS), footer);
}

/// Two charts side by side, three from 100 columns (lag in time), four from 140 (the latency
/// spectrum).
fn chart_row(frame: &mut Frame, area: Rect, model: &Model) {
    let n: u32 = match area.width {
        140.. => 4,
        100.. => 3,
        _ => 2,
    };
    let cells = Layout::horizontal((0..n).map(|_| Constraint::Ratio(1, n))).split(area);
    charts::throughput(frame, cells[0], model);
    charts::latency(frame, cells[1], model);
    if let Some(cell) = cells.get(2) {
        charts::lag(frame, *cell, model);
    }
    if let Some(cell) = cells.get(3) {
        charts::spectrum(frame, *cell, model);
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
            colored(model.lag_status().to_uppercase(), model.lag_status()),
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
    use crate::tui::model::Drill;
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
            lag_seconds: Some(0.0),
            consumer_status: Some("ok".into()),
            lag_by_partition: (0..6).map(|p| (p, 0)).collect(),
            partition_health: (0..6).map(|p| (p, (Some(0.0), "ok".into()))).collect(),
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

    /// Fails unless some line holds `words` in that order, apart only by spaces.
    fn assert_row(text: &str, words: &[&str]) {
        let found = text.lines().any(|l| {
            l.split('│')
                .any(|pane| pane.split_whitespace().collect::<Vec<_>>() == words)
        });
        assert!(found, "no row {words:?}:\n{text}");
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
                "events/s",
                "stored 998",
                "p99 12.5ms",
                "-1m",
                "now",
                "total 0",
                "OK",
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
        bad.lag_seconds = Some(12.0);
        bad.consumer_status = Some("stall".into());
        bad.lag_by_partition = BTreeMap::from([(0, 4_200)]);
        bad.partition_health = BTreeMap::from([(0, (Some(12.0), "stall".into()))]);
        bad.breakers.insert("postgres".into(), "open".into());
        bad.components.insert("postgres".into(), "down".into());
        m.push(bad, 2.0);
        let text = screen(&m, 100, 30);
        assert_row(&text, &["0", "4,200", "12s", "STALL"]);
        assert_shows(
            &text,
            &[
                "postgres  open",
                "postgres down",
                "total 4,200 ↑  12s behind  STALL",
                "consumer status STALL",
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
    fn a_large_terminal_gets_four_charts_with_axes_and_a_lag_table() {
        let mut m = Model::default();
        for t in 0..90 {
            let mut s = healthy();
            s.stored_per_sec = 900.0 + f64::from(t);
            s.lag_seconds = Some(f64::from(t % 7) / 10.0);
            s.gateway_buckets = vec![
                (0.005, 90.0 * f64::from(t)),
                (0.05, 99.0 * f64::from(t)),
                (f64::INFINITY, 100.0 * f64::from(t)),
            ];
            m.push(s, f64::from(t));
        }
        m.mark(80.0, "stopping consumer…".into());
        let mut s = healthy();
        s.gateway_buckets = vec![(0.005, 9_000.0), (0.05, 9_900.0), (f64::INFINITY, 10_000.0)];
        s.partition_health.insert(3, (Some(4.5), "stop".into()));
        s.lag_by_partition.insert(3, 812);
        s.consumer_status = Some("stop".into());
        m.push(s, 90.0);
        let text = screen(&m, 150, 45);
        assert_shows(
            &text,
            &[
                "events/s",
                "latency",
                "lag behind",
                "latency by percentile, last 1m",
                "0%",
                "99%",
                "99.99%",
                "-1m",
                "-30s",
                "now",
                "│fault",
                "window 1m",
            ],
        );
        assert_row(&text, &["partition", "records", "behind", "status"]);
        assert_row(&text, &["3", "812", "4.5s", "STOP"]);
        m.window = m.window.next();
        assert!(screen(&m, 150, 45).contains("-5m"));
        m.help = true;
        let help = screen(&m, 150, 45);
        assert_shows(
            &help,
            &[
                "STALL  lag above zero",
                "w                the charts' window",
            ],
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
