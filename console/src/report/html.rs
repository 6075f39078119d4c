//! A load run as one self-contained HTML page: the figures a person reads first, then latency
//! over time (p50, p99 and max per second), the latency distribution on a percentile axis,
//! throughput over time, and lag over time when the stack was watched, with faults and steps
//! marked on the time axis. Plots are inline SVG and the little script is inline too: the page
//! needs no network when it is opened, and the JSON beside it stays the machine's record.

use std::fmt::Write;

use hdrhistogram::Histogram;

use super::compare::Comparison;
use super::plot::{percentile_x, Plot, Series, XAxis};
use super::record::LoadRecord;
use crate::units::thousands;

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:960px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px} h2{font-size:16px;margin:28px 0 6px} div.plot{margin:24px 0 0}
.sub{color:#666;margin:0 0 16px}
table{border-collapse:collapse;font-size:14px} td,th{padding:3px 12px 3px 0;text-align:left}
th{color:#555;font-weight:600} td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{font-weight:700;padding:6px 10px;display:inline-block;border-radius:4px}
.pass{background:#e3f4e8;color:#0a6b2d} .fail{background:#fde5e2;color:#a3160a}
#tip{position:fixed;pointer-events:none;background:#222;color:#fff;font-size:12px;padding:3px 6px;border-radius:3px;display:none}
";

/// Shows the x position under the pointer on any plot; marks the page drawn (a test reads
/// `data-plots` to know the script ran to its end with no error).
const SCRIPT: &str = "
(function(){
  var tip=document.getElementById('tip');
  var plots=document.querySelectorAll('svg.plot');
  plots.forEach(function(svg){
    svg.addEventListener('mousemove',function(e){
      var t=svg.getAttribute('aria-label');
      tip.textContent=t; tip.style.display='block';
      tip.style.left=(e.clientX+12)+'px'; tip.style.top=(e.clientY+12)+'px';
    });
    svg.addEventListener('mouseleave',function(){tip.style.display='none';});
  });
  var drawn=0;
  plots.forEach(function(svg){ if(svg.querySelector('polyline[points*=\",\"]')) drawn++; });
  document.body.setAttribute('data-plots', String(drawn));
})();
";

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The percentile spectrum of a histogram, in ms, up to 99.99% (or fewer nines with few
/// samples: a 99.99th percentile of 500 requests is only the maximum again).
pub fn spectrum(h: &Histogram<u64>) -> (Vec<(f64, f64)>, u32) {
    let nines = match h.len() {
        0..=999 => 2,
        1_000..=9_999 => 3,
        _ => 4,
    };
    let points = (0..=nines * 20)
        .map(|i| {
            let x = f64::from(i) / 20.0;
            let q = 1.0 - 10f64.powf(-x);
            let q = q.min(1.0 - 10f64.powi(-(nines as i32)));
            (percentile_x(q), h.value_at_quantile(q) as f64 / 1000.0)
        })
        .collect();
    (points, nines)
}

fn plots(record: &LoadRecord, baseline: Option<&LoadRecord>) -> Vec<Plot> {
    let marks: Vec<(f64, String)> = record
        .marks
        .iter()
        .map(|m| (m.t, m.label.clone()))
        .collect();
    let per_second = |f: fn(&super::record::Second) -> f64| -> Vec<(f64, f64)> {
        record.seconds.iter().map(|s| (s.t, f(s))).collect()
    };
    let mut out = vec![Plot {
        title: "Latency per second (from the intended send time)".into(),
        y_label: "ms".into(),
        x: XAxis::Seconds,
        series: vec![
            Series::new("p50", per_second(|s| s.p50_ms)),
            Series::new("p99", per_second(|s| s.p99_ms)),
            Series::new("max", per_second(|s| s.max_ms)),
        ],
        marks: marks.clone(),
    }];
    if let Some(h) = record.latency() {
        let (points, mut nines) = spectrum(&h);
        let mut series = vec![Series::new("this run", points)];
        if let Some(b) = baseline.and_then(LoadRecord::latency) {
            let (points, n) = spectrum(&b);
            nines = nines.min(n);
            series.push(Series {
                dashed: true,
                ..Series::new("baseline", points)
            });
        }
        for s in &mut series {
            s.points.retain(|(x, _)| *x <= f64::from(nines) + 1e-9);
        }
        out.push(Plot {
            title: "Latency by percentile (whole run)".into(),
            y_label: "ms".into(),
            x: XAxis::Percentile { nines },
            series,
            marks: Vec::new(),
        });
    }
    let per_request = record.report.events_sent as f64 / record.report.requests.max(1) as f64;
    let mut throughput = vec![Series::new(
        "answered (events/s)",
        per_second(|s| s.answers_per_sec)
            .into_iter()
            .map(|(t, v)| (t, v * per_request))
            .collect(),
    )];
    if !record.stack.is_empty() {
        throughput.push(Series::new(
            "accepted at the gateway",
            record
                .stack
                .iter()
                .map(|p| (p.t, p.accepted_per_sec))
                .collect(),
        ));
        throughput.push(Series::new(
            "stored",
            record
                .stack
                .iter()
                .map(|p| (p.t, p.stored_per_sec))
                .collect(),
        ));
    }
    out.push(Plot {
        title: "Throughput".into(),
        y_label: "events/s".into(),
        x: XAxis::Seconds,
        series: throughput,
        marks: marks.clone(),
    });
    let lag: Vec<(f64, f64)> = record
        .stack
        .iter()
        .filter_map(|p| p.lag_seconds.map(|l| (p.t, l)))
        .collect();
    if !lag.is_empty() {
        out.push(Plot {
            title: "Consumer lag in time (the oldest unconsumed record's age)".into(),
            y_label: "seconds".into(),
            x: XAxis::Seconds,
            series: vec![Series::new("lag", lag)],
            marks,
        });
    }
    out
}

fn summary(record: &LoadRecord) -> String {
    let r = &record.report;
    let p = &r.latency_ms;
    let mut rows = vec![
        ("target", escape(&r.target)),
        (
            "planned",
            format!(
                "{} events/s, {} events",
                thousands(r.planned_rate),
                thousands(r.planned_events as f64)
            ),
        ),
        (
            "sent",
            format!(
                "{} events in {:.1} s: {} events/s",
                thousands(r.events_sent as f64),
                r.duration_secs,
                thousands(r.achieved_rate)
            ),
        ),
        (
            "accepted",
            format!(
                "{} events ({:.3}% of requests not answered 2xx)",
                thousands(r.events_accepted as f64),
                r.error_rate() * 100.0
            ),
        ),
        (
            "latency",
            format!(
                "p50 {:.2} · p90 {:.2} · p99 {:.2} · p99.9 {:.2} · max {:.2} ms",
                p.p50, p.p90, p.p99, p.p999, p.max
            ),
        ),
    ];
    if r.fell_behind {
        rows.push((
            "generator",
            "fell behind its schedule: this machine's limit, not the system's".into(),
        ));
    }
    if let Some(v) = &r.verify {
        rows.push((
            "verify",
            format!(
                "{} acknowledged, {} stored, {} lost, {} duplicated",
                v.acknowledged, v.stored, v.lost, v.duplicated
            ),
        ));
    }
    let mut out = String::from("<table>");
    for (k, v) in rows {
        let _ = write!(out, "<tr><th>{k}</th><td>{v}</td></tr>");
    }
    out.push_str("</table>");
    out
}

/// A comparison's verdict and its table of figures side by side.
pub(crate) fn comparison_table(c: &Comparison) -> String {
    let mut out = String::new();
    let (class, text) = if c.regressions.is_empty() {
        ("pass", "no regression".to_owned())
    } else {
        ("fail", format!("REGRESSION: {}", c.regressions.join("; ")))
    };
    let _ = write!(
        out,
        "<h2>Against the baseline</h2><p class=\"verdict {class}\">{}</p><table><tr><th>figure</th><th>baseline</th><th>this run</th><th>ratio</th></tr>",
        escape(&text)
    );
    for w in &c.warnings {
        let _ = write!(out, "<p>The runs differ: {}.</p>", escape(w));
    }
    for row in &c.rows {
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(&row.figure),
            escape(&row.baseline),
            escape(&row.run),
            row.ratio.map_or_else(|| "–".into(), |r| format!("{r:.2}×"))
        );
    }
    out.push_str("</table>");
    out
}

/// A page: the shared style, a title and a line under it, the body, and the script last (so
/// it runs over every plot).
pub(crate) fn document(title: &str, subtitle: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}{}</style></head><body><div id=\"tip\"></div><h1>{t}</h1><p class=\"sub\">{}</p>{body}<script>{SCRIPT}</script></body></html>",
        super::plot::STYLE,
        escape(subtitle),
        t = escape(title)
    )
}

/// The plots one after another (each carries its title).
pub(crate) fn sections(plots: &[Plot]) -> String {
    plots
        .iter()
        .map(|p| format!("<div class=\"plot\">{}</div>", p.svg()))
        .collect()
}

/// The page for `record`, with the comparison beside it when there is one.
pub fn page(
    title: &str,
    record: &LoadRecord,
    baseline: Option<(&LoadRecord, &Comparison)>,
) -> String {
    let mut body = summary(record);
    if let Some((_, c)) = baseline {
        body.push_str(&comparison_table(c));
    }
    body.push_str(&sections(&plots(record, baseline.map(|(b, _)| b))));
    document(
        title,
        "logctl load: latency counts from each request's intended send time, so a stall shows in full.",
        &body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::record::tests::sample_report;
    use crate::report::record::{Mark, StackPoint};
    use logctl_loadgen::report::new_histogram;
    use std::time::Duration;

    fn record() -> LoadRecord {
        let intervals: Vec<_> = (0..5u64)
            .map(|s| {
                let mut h = new_histogram();
                for i in 1..=200u64 {
                    h.record(i * 50).expect("record");
                }
                (Duration::from_secs(s), Duration::from_secs(1), h)
            })
            .collect();
        let mut r = LoadRecord::new(sample_report(), &intervals);
        r.marks.push(Mark {
            t: 2.0,
            label: "pause gateway 1s".into(),
        });
        r.stack = (1..=5)
            .map(|t| StackPoint {
                t: f64::from(t),
                accepted_per_sec: 100.0,
                stored_per_sec: 95.0,
                lag: Some(10.0),
                lag_seconds: Some(0.2),
            })
            .collect();
        r
    }

    #[test]
    fn a_page_holds_every_plot_inline_and_needs_no_network() {
        let html = page("run <1>", &record(), None);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<title>run &lt;1&gt;</title>"));
        assert_eq!(html.matches("<svg class=\"plot\"").count(), 4);
        assert!(html.contains("Latency by percentile"));
        assert!(html.contains(">pause gateway 1s</text>"));
        assert!(html.contains("data-plots"));
        // Nothing to load when the page is opened: no external script, style, font or image.
        for remote in ["src=", "href=", "<link", "@import", "url("] {
            assert!(!html.contains(remote), "{remote} in the page");
        }
    }

    #[test]
    fn the_spectrum_stops_where_the_samples_do() {
        let mut h = new_histogram();
        for i in 1..=500u64 {
            h.record(i).expect("record");
        }
        let (points, nines) = spectrum(&h);
        assert_eq!(nines, 2);
        assert!(points.windows(2).all(|w| w[1].1 >= w[0].1));
        assert!(points.last().is_some_and(|p| (p.0 - 2.0).abs() < 1e-9));
    }
}
