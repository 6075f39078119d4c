//! The drill's background load: `logctl load`'s engine run in segments (a `load` step starts
//! one, changing the rate ends it and starts another), with answers and acknowledged ids
//! added up over every segment for conditions and for `verify`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use logctl_loadgen::engine::{self, Outcome, Progress};
use logctl_loadgen::report::{Report, LATE_AFTER};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::condition::Observed;
use super::spec::LoadSpec;
use crate::stack::layout::Layout;

struct Segment {
    rate: f64,
    stop: CancellationToken,
    progress: Arc<Mutex<Option<Progress>>>,
    handle: JoinHandle<Outcome>,
}

/// What the drill's load did, over all its segments.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadSummary {
    pub events_sent: u64,
    pub events_acked: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub no_answer: u64,
    /// Worst p99 (ms, from the planned send time) of any segment.
    pub worst_p99_ms: f64,
    pub segments: Vec<Report>,
}

impl LoadSummary {
    /// What each segment planned and what the generator actually sent, for the drill's
    /// summary line: a machine that cannot offer the plan shows here as the generator's (the
    /// machine's) limit, beside the rates the conditions were judged against.
    pub fn offered_and_held(&self) -> Option<String> {
        if self.segments.is_empty() {
            return None;
        }
        let parts: Vec<String> = self
            .segments
            .iter()
            .map(|r| {
                format!(
                    "{:.0}/s planned, {:.0}/s sent{}",
                    r.planned_rate,
                    r.achieved_rate,
                    if r.fell_behind {
                        format!(
                            " (fell behind: {} requests over {} ms late, max {:.0} ms)",
                            r.lateness.late_requests,
                            LATE_AFTER.as_millis(),
                            r.lateness.max_ms
                        )
                    } else {
                        String::new()
                    }
                )
            })
            .collect();
        let behind = self.segments.iter().any(|r| r.fell_behind);
        Some(format!(
            "load: {}{}",
            parts.join("; "),
            if behind {
                "; the generator could not keep its schedule here: this machine's limit, and rates were judged against what was sent (load.sent_rate)"
            } else {
                ""
            }
        ))
    }

    fn add(&mut self, sent: u64, acked: u64, statuses: &BTreeMap<u16, u64>, no_answer: u64) {
        self.events_sent += sent;
        self.events_acked += acked;
        for (s, n) in statuses {
            *self.statuses.entry(*s).or_default() += n;
        }
        self.no_answer += no_answer;
    }
}

pub struct DrillLoad {
    gateway: String,
    layout: Layout,
    current: Option<Segment>,
    done: LoadSummary,
    acked: Vec<Uuid>,
}

impl DrillLoad {
    pub fn new(gateway: String, layout: Layout) -> Self {
        Self {
            gateway,
            layout,
            current: None,
            done: LoadSummary::default(),
            acked: Vec::new(),
        }
    }

    /// Starts a segment at `spec`'s rate (ending the running one first).
    pub async fn start(&mut self, spec: &LoadSpec) -> anyhow::Result<String> {
        let ended = self.stop().await;
        let options = engine::Options {
            batch: spec.batch.0,
            orgs: spec.orgs.max(1),
            seed: spec.seed,
            mean_message_bytes: spec.message_bytes.max(1),
            org_prefix: "drill".into(),
            collect_ids: true,
            max_in_flight: spec.max_in_flight.max(1),
            request_timeout: spec.timeout.0,
        };
        let progress = Arc::new(Mutex::new(None));
        let latest = progress.clone();
        let crate::load::Background { stop, handle } = crate::load::background(
            &self.layout,
            &self.gateway,
            spec.rate.0,
            spec.duration.map(|d| d.0),
            options,
            move |p| {
                *latest
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(p.clone());
            },
        )?;
        self.current = Some(Segment {
            rate: spec.rate.0,
            stop,
            progress,
            handle,
        });
        Ok(match ended {
            Some(r) => format!(
                "was {:.0} events/s ({} sent, {} acknowledged)",
                r.planned_rate, r.events_sent, r.events_accepted
            ),
            None => "started".into(),
        })
    }

    /// Ends the running segment (waiting for its answers) and adds it up.
    pub async fn stop(&mut self) -> Option<Report> {
        let seg = self.current.take()?;
        seg.stop.cancel();
        self.absorb(seg.handle.await.ok()?)
    }

    fn absorb(&mut self, mut outcome: Outcome) -> Option<Report> {
        let r = outcome.report.clone();
        self.done.add(
            r.events_sent,
            r.events_accepted,
            &r.statuses,
            r.transport_errors,
        );
        self.done.worst_p99_ms = self.done.worst_p99_ms.max(r.latency_ms.p99);
        self.done.segments.push(r.clone());
        self.acked.append(&mut outcome.acked);
        Some(r)
    }

    /// A segment given a duration ends by itself: add it up once it has.
    pub async fn reap(&mut self) {
        if self
            .current
            .as_ref()
            .is_some_and(|s| s.handle.is_finished())
        {
            if let Some(seg) = self.current.take() {
                if let Ok(outcome) = seg.handle.await {
                    self.absorb(outcome);
                }
            }
        }
    }

    pub fn acked(&self) -> &[Uuid] {
        &self.acked
    }

    pub fn summary(&self) -> LoadSummary {
        self.done.clone()
    }

    /// The `load.*` signals: finished segments plus the running one's progress so far.
    pub fn signals(&self) -> Vec<(String, Observed)> {
        let mut all = self.done.clone();
        let (mut rate, mut sent_rate) = (0.0, 0.0);
        if let Some(seg) = &self.current {
            rate = seg.rate;
            let p = seg
                .progress
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(p) = p.as_ref() {
                sent_rate = p.rate;
                all.add(
                    p.events_sent,
                    p.events_accepted,
                    &p.statuses,
                    p.transport_errors,
                );
                all.worst_p99_ms = all.worst_p99_ms.max(p.latency.p99);
            }
        }
        let answered: u64 = all.statuses.values().sum();
        let requests = answered + all.no_answer;
        let count = |pred: &dyn Fn(u16) -> bool| -> u64 {
            all.statuses
                .iter()
                .filter(|(s, _)| pred(**s))
                .map(|(_, n)| n)
                .sum()
        };
        let errors = count(&|s| !(200..300).contains(&s)) + all.no_answer;
        let unexpected =
            count(&|s| !(200..300).contains(&s) && s != 429 && s != 503) + all.no_answer;
        let mut out = vec![
            ("load.rate".to_owned(), rate),
            ("load.sent_rate".to_owned(), sent_rate),
            ("load.sent".to_owned(), all.events_sent as f64),
            ("load.acked".to_owned(), all.events_acked as f64),
            ("load.no_answer".to_owned(), all.no_answer as f64),
            ("load.errors".to_owned(), errors as f64),
            ("load.unexpected".to_owned(), unexpected as f64),
            (
                "load.error_rate".to_owned(),
                if requests == 0 {
                    0.0
                } else {
                    errors as f64 / requests as f64
                },
            ),
            ("load.p99_ms".to_owned(), all.worst_p99_ms),
        ];
        for class in 1..=5u16 {
            out.push((
                format!("load.{class}xx"),
                count(&|s| s / 100 == class) as f64,
            ));
        }
        for (s, n) in &all.statuses {
            out.push((format!("load.{s}"), *n as f64));
        }
        out.into_iter()
            .map(|(k, v)| (k, Observed::Number(v)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use logctl_loadgen::report::{Lateness, Percentiles};

    fn segment(planned: f64, sent: f64, fell_behind: bool) -> Report {
        Report {
            target: "t".into(),
            planned_rate: planned,
            planned_events: 0,
            requests: 0,
            events_sent: 0,
            events_accepted: 0,
            statuses: BTreeMap::new(),
            transport_errors: 0,
            duration_secs: 1.0,
            achieved_rate: sent,
            latency_ms: Percentiles::default(),
            service_time_ms: Percentiles::default(),
            lateness: Lateness {
                late_requests: if fell_behind { 40 } else { 0 },
                max_ms: if fell_behind { 2_221.0 } else { 0.4 },
                waited_for_slot: 0,
            },
            fell_behind,
            verify: None,
        }
    }

    #[test]
    fn the_summary_says_what_was_planned_and_sent_and_whose_limit_a_shortfall_is() {
        assert_eq!(LoadSummary::default().offered_and_held(), None);
        let kept = LoadSummary {
            segments: vec![segment(500.0, 499.6, false)],
            ..LoadSummary::default()
        };
        assert_eq!(
            kept.offered_and_held().as_deref(),
            Some("load: 500/s planned, 500/s sent")
        );
        let behind = LoadSummary {
            segments: vec![
                segment(500.0, 500.0, false),
                segment(5_000.0, 3_120.0, true),
            ],
            ..LoadSummary::default()
        };
        let text = behind.offered_and_held().expect("segments");
        assert!(text.starts_with("load: 500/s planned, 500/s sent; 5000/s planned, 3120/s sent (fell behind: 40 requests over 10 ms late, max 2221 ms)"), "{text}");
        assert!(text.contains("this machine's limit"), "{text}");
    }
}
