//! Prometheus text exposition, read into samples: enough of the format for what our services
//! export (counters, gauges, histograms with `le` buckets), and forgiving of anything else.
//!
//! Hand-written on purpose: the `prometheus-parse` crate splits labels on `,` and `=` without
//! honouring escapes (a quoted `,` or `\"` in a value breaks the sample) and reads `le` only
//! when it is the first label. The integration tests read scrapes through this same parser
//! (`console/tests/support`), so the tests and the console cannot disagree on a sample.

use std::collections::BTreeMap;
use std::time::Duration;

/// One scrape of the service at `base` (its `/metrics`); None when it does not answer within
/// `timeout`.
pub async fn fetch(http: &reqwest::Client, base: &str, timeout: Duration) -> Option<Scrape> {
    let response = http
        .get(format!("{}/metrics", base.trim_end_matches('/')))
        .timeout(timeout)
        .send()
        .await
        .ok()?;
    Some(Scrape::parse(&response.text().await.ok()?))
}

/// One sample: a metric name, its labels, its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample of one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    pub samples: Vec<Sample>,
}

fn parse_labels(s: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(' ' | ',')) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(labels);
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key.trim().to_owned(), value);
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}')?;
            (
                &line[..open],
                parse_labels(&line[open + 1..close])?,
                &line[close + 1..],
            )
        }
        None => {
            let (name, rest) = line.split_once(char::is_whitespace)?;
            (name, BTreeMap::new(), rest)
        }
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.trim().to_owned(),
        labels,
        value,
    })
}

impl Scrape {
    pub fn parse(text: &str) -> Self {
        Self {
            samples: text.lines().filter_map(parse_line).collect(),
        }
    }

    /// Samples named `name` whose labels include all of `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The sum of matching samples; None when there is none.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut it = self.matching(name, labels).peekable();
        it.peek()?;
        Some(it.map(|s| s.value).sum())
    }

    /// Cumulative bucket counts of a histogram, summed over the other labels, by upper bound.
    pub fn buckets(&self, name: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
        let bucket = format!("{name}_bucket");
        let mut by_le: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for s in self.matching(&bucket, labels) {
            let Some(le) = s.labels.get("le").and_then(|v| {
                if v == "+Inf" {
                    Some(f64::INFINITY)
                } else {
                    v.parse().ok()
                }
            }) else {
                continue;
            };
            let entry = by_le.entry(le.to_bits()).or_insert((le, 0.0));
            entry.1 += s.value;
        }
        let mut out: Vec<(f64, f64)> = by_le.into_values().collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }
}

/// The `q` quantile of the observations between two scrapes of a histogram (cumulative buckets
/// `(le, count)`), interpolated within its bucket as Prometheus' `histogram_quantile` does.
/// None when nothing was observed in between.
pub fn quantile_between(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let earlier = |le: f64| {
        before
            .iter()
            .find(|(b, _)| *b == le)
            .map_or(0.0, |(_, c)| *c)
    };
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, c)| (*le, (c - earlier(*le)).max(0.0)))
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in &delta {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let in_bucket = count - lower.1;
            let share = if in_bucket > 0.0 {
                (rank - lower.1) / in_bucket
            } else {
                1.0
            };
            return Some(lower.0 + (le - lower.0) * share);
        }
        lower = (le, count);
    }
    Some(lower.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use logctl_contracts::metric;

    const TEXT: &str = r#"
# HELP logctl_http_requests_total Requests.
# TYPE logctl_http_requests_total counter
logctl_http_requests_total{route="/api/logs",method="POST",status="202"} 90
logctl_http_requests_total{route="/api/logs",method="POST",status="400"} 10
logctl_breaker_state{name="kafka"} 2
logctl_consumer_lag{partition="0"} 5
logctl_consumer_lag{partition="1"} 7
odd_label{msg="a \"quoted\", value"} 1
process_resident_memory_bytes 1.5e7
h_bucket{le="0.01"} 10
h_bucket{le="0.1"} 90
h_bucket{le="+Inf"} 100
h_count 100
"#;

    #[test]
    fn samples_read_with_their_labels() {
        let s = Scrape::parse(TEXT);
        assert_eq!(s.sum(metric::HTTP_REQUESTS, &[]), Some(100.0));
        assert_eq!(
            s.sum(metric::HTTP_REQUESTS, &[("status", "400")]),
            Some(10.0)
        );
        assert_eq!(
            s.sum(metric::BREAKER_STATE, &[("name", "kafka")]),
            Some(2.0)
        );
        assert_eq!(s.sum(metric::CONSUMER_LAG, &[]), Some(12.0));
        assert_eq!(s.sum("process_resident_memory_bytes", &[]), Some(1.5e7));
        assert_eq!(s.sum("missing", &[]), None);
        let odd = s.matching("odd_label", &[]).next().expect("odd");
        assert_eq!(odd.labels["msg"], "a \"quoted\", value");
    }

    #[test]
    fn quantiles_come_from_the_buckets_observed_in_between() {
        let after = Scrape::parse(TEXT).buckets("h", &[]);
        assert_eq!(
            after,
            vec![(0.01, 10.0), (0.1, 90.0), (f64::INFINITY, 100.0)]
        );
        let p50 = quantile_between(&[], &after, 0.5).expect("p50");
        assert!((p50 - 0.055).abs() < 1e-9, "{p50}");
        // Nothing new between two equal scrapes.
        assert_eq!(quantile_between(&after, &after, 0.99), None);
        // Only the new observations count: 10 more, all under 10 ms.
        let later: Vec<(f64, f64)> = after.iter().map(|(le, c)| (*le, c + 10.0)).collect();
        let p99 = quantile_between(&after, &later, 0.99).expect("p99");
        assert!(p99 <= 0.01, "{p99}");
    }

    #[test]
    fn garbage_lines_are_skipped_not_fatal() {
        let s = Scrape::parse("not a metric\nx{a=\"1\" 2\ny 3\n{}\n");
        assert_eq!(s.sum("y", &[]), Some(3.0));
        assert_eq!(s.samples.len(), 1);
    }
}
