//! Line plots as inline SVG, so a report is one self-contained file that needs nothing from
//! the network to be read: axes with round ticks, a grid, a legend, and events (faults, steps)
//! drawn as labelled vertical lines on the time axis.
//!
//! The percentile axis is HdrHistogram's: x = log10(1 / (1 − q)), so 90%, 99%, 99.9% … sit at
//! equal steps and the tail gets the room it deserves.

use std::fmt::Write;

/// Colours that stay apart for the colour-blind (Okabe–Ito), in the order series take them.
pub const PALETTE: [&str; 6] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9",
];

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum XAxis {
    /// Seconds since the run started.
    Seconds,
    /// Percentiles, from 0 up to the given number of nines (3 → 99.9%).
    Percentile { nines: u32 },
    /// The rate a benchmark step offered.
    Rate,
}

#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Dashed: a baseline beside the run it is compared with.
    pub dashed: bool,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
            dashed: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Plot {
    pub title: String,
    pub y_label: String,
    pub x: XAxis,
    pub series: Vec<Series>,
    /// (x, label): a fault or step at that time.
    pub marks: Vec<(f64, String)>,
}

const W: f64 = 860.0;
const H: f64 = 260.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 62.0;

/// The x position a percentile is drawn at.
pub fn percentile_x(q: f64) -> f64 {
    (1.0 / (1.0 - q.clamp(0.0, 0.999_999_9))).log10()
}

/// A step of 1, 2 or 5 times a power of ten that cuts `span` into about `n` pieces.
fn tick_step(span: f64, n: f64) -> f64 {
    if !(span.is_finite() && span > 0.0) {
        return 1.0;
    }
    let raw = span / n;
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * power)
}

fn number(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1_000_000.0 {
        format!("{:.1}M", v / 1_000_000.0)
    } else if v.abs() >= 10_000.0 {
        format!("{:.0}k", v / 1_000.0)
    } else if v.abs() >= 10.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Plot {
    /// A plot over time since the start, with the same marks as its neighbours.
    pub fn over_time(
        title: &str,
        y_label: &str,
        series: Vec<Series>,
        marks: &[(f64, String)],
    ) -> Plot {
        Plot {
            title: title.into(),
            y_label: y_label.into(),
            x: XAxis::Seconds,
            series,
            marks: marks.to_vec(),
        }
    }

    /// The finite points of every series, for the bounds.
    fn all(&self) -> impl Iterator<Item = &(f64, f64)> {
        self.series
            .iter()
            .flat_map(|s| &s.points)
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    }

    fn x_bounds(&self) -> (f64, f64) {
        match self.x {
            XAxis::Percentile { nines } => (0.0, f64::from(nines.max(1))),
            XAxis::Seconds | XAxis::Rate => {
                let max = self
                    .all()
                    .map(|p| p.0)
                    .chain(self.marks.iter().map(|m| m.0).filter(|x| x.is_finite()))
                    .fold(0.0, f64::max);
                (0.0, if max > 0.0 { max } else { 1.0 })
            }
        }
    }

    /// Whether there is anything to draw.
    pub fn is_empty(&self) -> bool {
        self.all().next().is_none()
    }

    /// The plot as an `<svg>` element with a `data-points` count (what a test reads to know
    /// the lines are not empty).
    pub fn svg(&self) -> String {
        let (x0, x1) = self.x_bounds();
        let y_max = self.all().map(|p| p.1).fold(0.0, f64::max);
        let y_step = tick_step(if y_max > 0.0 { y_max } else { 1.0 }, 4.0);
        let y1 = (y_max / y_step).ceil().max(1.0) * y_step;
        let sx = |x: f64| LEFT + (x - x0) / (x1 - x0).max(1e-12) * W;
        let sy = |y: f64| TOP + H - (y / y1) * H;
        let points: usize = self.series.iter().map(|s| s.points.len()).sum();
        let mut out = String::new();
        let _ = write!(
            out,
            "<svg class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {}\" data-points=\"{points}\" role=\"img\" aria-label=\"{}\">",
            LEFT + W + RIGHT,
            TOP + H + BOTTOM,
            escape(&self.title)
        );
        let _ = write!(
            out,
            "<text x=\"{LEFT}\" y=\"18\" class=\"title\">{}</text>",
            escape(&self.title)
        );
        // Y grid and ticks.
        // At most a handful of ticks by construction; the cap guards against float surprises.
        let mut y = 0.0;
        for _ in 0..50 {
            if y > y1 + y_step / 2.0 {
                break;
            }
            let py = sy(y);
            let _ = write!(
                out,
                "<line x1=\"{LEFT}\" y1=\"{py:.1}\" x2=\"{:.1}\" y2=\"{py:.1}\" class=\"grid\"/><text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text>",
                LEFT + W,
                LEFT - 6.0,
                py + 4.0,
                number(y)
            );
            y += y_step;
        }
        let _ = write!(
            out,
            "<text x=\"14\" y=\"{:.1}\" class=\"axis\" transform=\"rotate(-90 14 {:.1})\" text-anchor=\"middle\">{}</text>",
            TOP + H / 2.0,
            TOP + H / 2.0,
            escape(&self.y_label)
        );
        // X ticks.
        let x_ticks: Vec<(f64, String)> = match self.x {
            XAxis::Percentile { nines } => (0..=nines.max(1))
                .map(|n| {
                    let label = match n {
                        0 => "0%".to_owned(),
                        n => {
                            let q = 100.0 * (1.0 - 10f64.powi(-(n as i32)));
                            format!("{}%", number_trimmed(q))
                        }
                    };
                    (f64::from(n), label)
                })
                .collect(),
            XAxis::Seconds | XAxis::Rate => {
                let unit = if self.x == XAxis::Seconds { "s" } else { "" };
                let step = tick_step(x1 - x0, 8.0);
                let mut ticks = Vec::new();
                let mut x = 0.0;
                while x <= x1 + step / 1000.0 && ticks.len() < 50 {
                    ticks.push((x, format!("{}{unit}", number(x))));
                    x += step;
                }
                ticks
            }
        };
        for (x, label) in &x_ticks {
            let px = sx(*x);
            let _ = write!(
                out,
                "<line x1=\"{px:.1}\" y1=\"{TOP}\" x2=\"{px:.1}\" y2=\"{:.1}\" class=\"grid\"/><text x=\"{px:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"middle\">{}</text>",
                TOP + H,
                TOP + H + 16.0,
                escape(label)
            );
        }
        let x_label = match self.x {
            XAxis::Seconds => "time since start",
            XAxis::Percentile { .. } => "percentile",
            XAxis::Rate => "offered events/s",
        };
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"middle\">{x_label}</text>",
            LEFT + W / 2.0,
            TOP + H + 32.0
        );
        let _ = write!(
            out,
            "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{W}\" height=\"{H}\" class=\"frame\"/>"
        );
        // Marks: a dashed line and its label at the top, labels on three staggered rows so
        // marks a moment apart stay readable.
        for (i, (x, label)) in self.marks.iter().enumerate() {
            let px = sx(*x);
            let _ = write!(
                out,
                "<line x1=\"{px:.1}\" y1=\"{TOP}\" x2=\"{px:.1}\" y2=\"{:.1}\" class=\"mark\"><title>{}</title></line><text x=\"{:.1}\" y=\"{:.1}\" class=\"mark-label\">{}</text>",
                TOP + H,
                escape(label),
                px + 3.0,
                TOP + 11.0 + 12.0 * (i % 3) as f64,
                escape(label)
            );
        }
        // The lines, then the legend on a line of its own under the axis.
        let mut lx = LEFT;
        for (i, s) in self.series.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            let coords: Vec<String> = s
                .points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
                .collect();
            let dash = if s.dashed {
                " stroke-dasharray=\"6 4\""
            } else {
                ""
            };
            let _ = write!(
                out,
                "<polyline class=\"line\" data-series=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.8\"{dash} points=\"{}\"/>",
                escape(&s.name),
                coords.join(" ")
            );
            let _ = write!(
                out,
                "<line x1=\"{lx:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{colour}\" stroke-width=\"3\"{dash}/><text x=\"{:.1}\" y=\"{:.1}\" class=\"legend\">{}</text>",
                TOP + H + 50.0,
                lx + 18.0,
                TOP + H + 50.0,
                lx + 22.0,
                TOP + H + 54.0,
                escape(&s.name)
            );
            // The next entry after this one's name (about 7 px a character at 12 px).
            lx += 40.0 + 7.0 * s.name.chars().count() as f64;
        }
        out.push_str("</svg>");
        out
    }
}

/// The classes the plots use, for a page's stylesheet or a standalone SVG's `<style>`.
pub const STYLE: &str = "svg.plot{width:100%;height:auto;display:block} .title{font:600 14px sans-serif} .tick{font:11px sans-serif;fill:#555} .axis{font:12px sans-serif;fill:#333} .legend{font:12px sans-serif} .grid{stroke:#eee} .frame{fill:none;stroke:#999} .mark{stroke:#a0a;stroke-dasharray:4 3} .mark-label{font:11px sans-serif;fill:#a0a}";

/// Several plots one above the other as one standalone SVG file (a soak's plots).
pub fn stacked_svg(plots: &[Plot]) -> String {
    let (w, h) = (LEFT + W + RIGHT, TOP + H + BOTTOM);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\"><style>{STYLE}</style><rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>",
        h * plots.len() as f64
    );
    for (i, plot) in plots.iter().enumerate() {
        // The plot's own root, placed and sized as a nested viewport.
        let inner = plot.svg().replacen(
            "<svg ",
            &format!(
                "<svg x=\"0\" y=\"{}\" width=\"{w}\" height=\"{h}\" ",
                h * i as f64
            ),
            1,
        );
        out.push_str(&inner);
    }
    out.push_str("</svg>\n");
    out
}

/// 99.9 not 99.900.
fn number_trimmed(v: f64) -> String {
    let s = format!("{v:.5}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_sit_at_equal_steps() {
        assert!((percentile_x(0.9) - 1.0).abs() < 1e-9);
        assert!((percentile_x(0.999) - 3.0).abs() < 1e-9);
        assert_eq!(percentile_x(0.0), 0.0);
        assert!(percentile_x(1.0).is_finite());
    }

    #[test]
    fn infinite_or_huge_values_do_not_hang_the_axes() {
        let plot = Plot::over_time(
            "t",
            "y",
            vec![Series::new(
                "s",
                vec![(0.0, f64::INFINITY), (1.0, 1e308), (f64::NAN, 2.0)],
            )],
            &[(f64::INFINITY, "mark".into())],
        );
        assert!(plot.svg().ends_with("</svg>"));
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(100.0, 4.0), 50.0);
        assert_eq!(tick_step(37.0, 8.0), 5.0);
        assert_eq!(tick_step(0.0, 4.0), 1.0);
        assert_eq!(number(12_345.0), "12k");
        assert_eq!(number(2.5), "2.5");
        assert_eq!(number_trimmed(99.9), "99.9");
    }

    #[test]
    fn an_svg_with_its_axes_lines_legend_and_marks() {
        let plot = Plot {
            title: "latency <per second>".into(),
            y_label: "ms".into(),
            x: XAxis::Seconds,
            series: vec![
                Series::new("p50", vec![(0.0, 1.0), (1.0, 2.0), (2.0, 1.5)]),
                Series::new("p99", vec![(0.0, 5.0), (1.0, 40.0), (2.0, 7.0)]),
            ],
            marks: vec![(1.0, "fault stop postgres".into())],
        };
        let svg = plot.svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("data-points=\"6\""));
        assert!(svg.contains("latency &lt;per second&gt;"), "escaped");
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains(">fault stop postgres</text>"));
        assert!(svg.contains(">2s</text>") && svg.contains(">ms</text>"));
        let spectrum = Plot {
            x: XAxis::Percentile { nines: 4 },
            marks: vec![],
            ..plot
        };
        let svg = spectrum.svg();
        for label in ["0%", "90%", "99%", "99.9%", "99.99%"] {
            assert!(svg.contains(&format!(">{label}</text>")), "{label}");
        }
    }
}
