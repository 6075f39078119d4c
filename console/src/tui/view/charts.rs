//! The time-series charts (throughput, latency, lag in time) over the selected window, with
//! labelled axes, faults drawn as vertical lines at the moment they were set, and the gateway's
//! latency spectrum over the same window on a log axis of percentiles (as HdrHistogram's
//! plotter draws it).

use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType};
use ratatui::Frame;

use super::super::model::Model;
use crate::signals::exposition::quantile_between;
use crate::signals::Signals;
use crate::units::thousands;

const MARK_COLOR: Color = Color::Magenta;

/// One line of a chart: its name and colour, and how to read it from a reading.
struct Series {
    name: &'static str,
    color: Color,
    read: fn(&Signals) -> Option<f64>,
}

/// 1, 2 or 5 times a power of ten, at or above `v`: an axis top that reads well.
pub fn nice_ceiling(v: f64) -> f64 {
    if !v.is_finite() || v <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|c| *c >= v * 0.999_999)
        .unwrap_or(10.0 * power)
}

/// "-5m", "-30s": how long before the latest reading.
fn ago(secs: f64) -> String {
    let secs = secs.abs();
    if secs >= 60.0 && (secs % 60.0).abs() < 0.5 {
        format!("-{:.0}m", secs / 60.0)
    } else if secs >= 60.0 {
        format!("-{:.1}m", secs / 60.0)
    } else {
        format!("-{secs:.0}s")
    }
}

/// A chart of `series` over the model's window, titled with each series' latest value (in
/// its colour) instead of a legend that would cover the lines on a small pane.
fn time_chart(
    frame: &mut Frame,
    area: Rect,
    model: &Model,
    title: &str,
    series: &[Series],
    format: fn(f64) -> String,
) {
    let window = model.window.seconds();
    let points: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| {
            model
                .in_window()
                .filter_map(|(t, r)| (s.read)(r).map(|v| (t, v)))
                .collect()
        })
        .collect();
    let top = nice_ceiling(points.iter().flatten().map(|(_, v)| *v).fold(0.0, f64::max));
    let marks: Vec<[(f64, f64); 2]> = model
        .marks_in_window()
        .into_iter()
        .map(|(t, _)| [(t, 0.0), (t, top)])
        .collect();
    let mut datasets: Vec<Dataset> = marks
        .iter()
        .map(|m| {
            Dataset::default()
                .graph_type(GraphType::Line)
                .marker(Marker::Braille)
                .style(Style::default().fg(MARK_COLOR))
                .data(m)
        })
        .collect();
    datasets.extend(series.iter().zip(&points).map(|(s, data)| {
        Dataset::default()
            .graph_type(GraphType::Line)
            .marker(Marker::Braille)
            .style(Style::default().fg(s.color))
            .data(data)
    }));
    let latest = model.last();
    let mut spans = vec![Span::raw(format!(" {title} "))];
    for s in series {
        let v = latest.and_then(|r| (s.read)(r));
        spans.push(Span::styled(
            format!("{} {} ", s.name, v.map_or_else(|| "–".into(), format)),
            Style::default().fg(s.color),
        ));
    }
    if !marks.is_empty() {
        spans.push(Span::styled("│fault ", Style::default().fg(MARK_COLOR)));
    }
    let chart = Chart::new(datasets)
        .block(Block::bordered().title(Line::from(spans)))
        .legend_position(None)
        .x_axis(axis(
            [-window, 0.0],
            [ago(window), ago(window / 2.0), "now".into()],
        ))
        .y_axis(axis(
            [0.0, top],
            ["0".into(), format(top / 2.0), format(top)],
        ));
    frame.render_widget(chart, area);
}

/// An axis in the charts' muted colour with three labels: its ends and its middle.
fn axis(bounds: [f64; 2], labels: [String; 3]) -> Axis<'static> {
    Axis::default()
        .bounds(bounds)
        .labels(labels)
        .style(Style::default().fg(Color::DarkGray))
}

/// Accepted, published and stored events per second.
pub fn throughput(frame: &mut Frame, area: Rect, model: &Model) {
    time_chart(
        frame,
        area,
        model,
        "events/s",
        &[
            Series {
                name: "in",
                color: Color::Cyan,
                read: |s| Some(s.accepted_per_sec),
            },
            Series {
                name: "kafka",
                color: Color::Blue,
                read: |s| Some(s.published_per_sec),
            },
            Series {
                name: "stored",
                color: Color::Green,
                read: |s| Some(s.stored_per_sec),
            },
        ],
        thousands,
    );
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}ms")
    } else {
        format!("{v:.1}ms")
    }
}

/// The gateway's p50 and p99, and accepted → stored p99.
pub fn latency(frame: &mut Frame, area: Rect, model: &Model) {
    time_chart(
        frame,
        area,
        model,
        "latency",
        &[
            Series {
                name: "p50",
                color: Color::Green,
                read: |s| s.gateway_p50_ms,
            },
            Series {
                name: "p99",
                color: Color::Yellow,
                read: |s| s.gateway_p99_ms,
            },
            Series {
                name: "e2e p99",
                color: Color::Cyan,
                read: |s| s.end_to_end_p99_ms,
            },
        ],
        ms,
    );
}

pub fn seconds(v: f64) -> String {
    if v >= 120.0 {
        format!("{:.0}m", v / 60.0)
    } else if v >= 10.0 {
        format!("{v:.0}s")
    } else {
        format!("{v:.1}s")
    }
}

/// How far behind the group is in time (the oldest unconsumed record's age).
pub fn lag(frame: &mut Frame, area: Rect, model: &Model) {
    time_chart(
        frame,
        area,
        model,
        "lag",
        &[Series {
            name: "behind",
            color: Color::Red,
            read: |s| s.lag_seconds,
        }],
        seconds,
    );
}

/// Percentiles from 0 to 99.99, evenly spaced on the log axis of 1/(1-q).
fn spectrum_points(before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<(f64, f64)> {
    (0..=40)
        .filter_map(|i| {
            let x = f64::from(i) / 10.0;
            let q = 1.0 - 10f64.powf(-x);
            quantile_between(before, after, q).map(|secs| (x, secs * 1000.0))
        })
        .collect()
}

/// The gateway's latency by percentile over the window: where the tail starts and how far it
/// goes, which one p99 line cannot show.
pub fn spectrum(frame: &mut Frame, area: Rect, model: &Model) {
    let points = model
        .window_buckets()
        .map(|(before, after)| spectrum_points(before, after))
        .unwrap_or_default();
    let top = nice_ceiling(points.iter().map(|(_, v)| *v).fold(0.0, f64::max));
    let title = format!(" latency by percentile, last {} ", model.window.label());
    let chart = Chart::new(vec![Dataset::default()
        .graph_type(GraphType::Line)
        .marker(Marker::Braille)
        .style(Style::default().fg(Color::Yellow))
        .data(&points)])
    .block(Block::bordered().title(title))
    .legend_position(None)
    .x_axis(axis(
        [0.0, 4.0],
        ["0%".into(), "99%".into(), "99.99%".into()],
    ))
    .y_axis(axis([0.0, top], ["0".into(), ms(top / 2.0), ms(top)]));
    frame.render_widget(chart, area);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(0.7), 1.0);
        assert_eq!(nice_ceiling(1_000.0), 1_000.0);
        assert_eq!(nice_ceiling(1_001.0), 2_000.0);
        assert_eq!(nice_ceiling(3_400.0), 5_000.0);
        assert_eq!(nice_ceiling(42.0), 50.0);
        assert_eq!(nice_ceiling(f64::NAN), 1.0);
    }

    #[test]
    fn the_time_axis_counts_back_from_now() {
        assert_eq!(ago(60.0), "-1m");
        assert_eq!(ago(30.0), "-30s");
        assert_eq!(ago(450.0), "-7.5m");
        assert_eq!(ago(-900.0), "-15m");
    }

    #[test]
    fn the_spectrum_rises_with_the_percentile() {
        // 90 requests under 10 ms, 9 under 100 ms, 1 under 1 s.
        let before = [(0.01, 0.0), (0.1, 0.0), (1.0, 0.0), (f64::INFINITY, 0.0)];
        let after = [
            (0.01, 90.0),
            (0.1, 99.0),
            (1.0, 100.0),
            (f64::INFINITY, 100.0),
        ];
        let points = spectrum_points(&before, &after);
        assert_eq!(points.len(), 41);
        assert!(points.windows(2).all(|w| w[1].1 >= w[0].1));
        let at = |x: f64| {
            points
                .iter()
                .find(|(px, _)| (px - x).abs() < 1e-9)
                .map(|p| p.1)
        };
        assert!(
            at(1.0).is_some_and(|v| v <= 10.0),
            "p90 within the first bucket"
        );
        assert!(at(3.0).is_some_and(|v| v > 100.0), "p99.9 in the last");
        assert!(
            spectrum_points(&before, &before).is_empty(),
            "no requests, no line"
        );
    }
}
