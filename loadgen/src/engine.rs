//! The open-loop engine: sends each request at its planned time, whatever the answers so far,
//! and records its latency from that planned time.
//!
//! A request that cannot leave on time (every in-flight slot busy, or the generator itself
//! short of CPU) leaves late but is still measured from its planned time, so a stalled server
//! shows as latency, not as a quiet gap; the report also says how late the generator was and
//! marks the run `fell_behind` when it could not offer the planned load.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::events::EventMix;
use crate::plan::Plan;
use crate::report::{micros, new_histogram, Lateness, Percentiles, Report, LATE_AFTER};

/// One request, built before its send time so building never delays it.
#[derive(Debug, Clone)]
pub struct Request {
    pub org: String,
    pub body: Vec<u8>,
    /// The events' ids (set by the generator, so answers need not be parsed to know them).
    pub ids: Vec<Uuid>,
    pub batch: bool,
}

/// What came back: the status (None: no answer) and the ids the server acknowledged.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub status: Option<u16>,
    pub accepted: Vec<Uuid>,
}

/// Where requests go.
pub trait Target: Send + Sync + 'static {
    fn send(&self, request: Request) -> BoxFuture<'static, Answer>;
    fn describe(&self) -> String;
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Events per request: 1 posts single events, more posts batches.
    pub batch: usize,
    pub max_in_flight: usize,
    pub seed: u64,
    pub orgs: usize,
    pub mean_message_bytes: usize,
    pub org_prefix: String,
    /// Keep every acknowledged id (for `--verify`).
    pub collect_ids: bool,
    /// How long a request may wait for its answer before it counts as unanswered: the
    /// client's own timeout.
    pub request_timeout: std::time::Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            batch: 1,
            max_in_flight: 1024,
            seed: 1,
            orgs: 20,
            mean_message_bytes: 200,
            org_prefix: "load".into(),
            collect_ids: false,
            request_timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// A snapshot for live display, once a second.
#[derive(Debug, Clone)]
pub struct Progress {
    pub elapsed: Duration,
    pub planned: Duration,
    pub events_sent: u64,
    /// Events/s sent over the last interval.
    pub rate: f64,
    pub by_class: BTreeMap<String, u64>,
    /// Answers by HTTP status so far.
    pub statuses: BTreeMap<u16, u64>,
    pub transport_errors: u64,
    /// Events the server acknowledged so far.
    pub events_accepted: u64,
    pub latency: Percentiles,
    pub late_requests: u64,
}

/// Latency histograms per interval (about a second each), for an HdrHistogram log.
pub type Intervals = Vec<(Duration, Duration, Histogram<u64>)>;

pub struct Outcome {
    pub report: Report,
    pub acked: Vec<Uuid>,
    pub intervals: Intervals,
}

struct Recorder {
    latency: Histogram<u64>,
    service: Histogram<u64>,
    interval: Histogram<u64>,
    interval_start: Duration,
    intervals: Intervals,
    statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
    requests: u64,
    events_accepted: u64,
    acked: Vec<Uuid>,
}

impl Recorder {
    fn by_class(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (s, n) in &self.statuses {
            *out.entry(format!("{}xx", s / 100)).or_default() += n;
        }
        if self.transport_errors > 0 {
            out.insert("no answer".into(), self.transport_errors);
        }
        out
    }

    fn close_interval(&mut self, now: Duration) {
        let h = std::mem::replace(&mut self.interval, new_histogram());
        let start = self.interval_start;
        self.interval_start = now;
        if !h.is_empty() {
            self.intervals.push((start, now.saturating_sub(start), h));
        }
    }
}

fn build(mix: &mut EventMix, events: usize) -> Request {
    if events <= 1 {
        let mut e = mix.next_event();
        let id = Uuid::now_v7();
        e["id"] = json!(id);
        let org = e["organizationId"].as_str().unwrap_or_default().to_owned();
        return Request {
            org,
            body: serde_json::to_vec(&e).unwrap_or_default(),
            ids: vec![id],
            batch: false,
        };
    }
    let org = mix.organization();
    let mut ids = Vec::with_capacity(events);
    let batch: Vec<Value> = (0..events)
        .map(|_| {
            let mut e = mix.event_for(&org);
            let id = Uuid::now_v7();
            e["id"] = json!(id);
            ids.push(id);
            e
        })
        .collect();
    Request {
        org,
        body: serde_json::to_vec(&batch).unwrap_or_default(),
        ids,
        batch: true,
    }
}

/// Runs the plan against the target; `progress` is called about once a second.
pub async fn run(
    plan: &Plan,
    target: Arc<dyn Target>,
    options: &Options,
    stop: CancellationToken,
    mut progress: impl FnMut(&Progress) + Send,
) -> Outcome {
    drive(plan, target, options, stop, &mut progress).await
}

/// The engine's body, not generic, so it is compiled (and optimised, see the workspace's
/// `profile.dev` overrides) in this crate rather than in each caller's debug build: the
/// generator must not be what limits a test on a slow machine.
async fn drive(
    plan: &Plan,
    target: Arc<dyn Target>,
    options: &Options,
    stop: CancellationToken,
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> Outcome {
    let mut mix = EventMix::new(
        options.seed,
        options.orgs,
        options.mean_message_bytes,
        &options.org_prefix,
    );
    let recorder = Arc::new(Mutex::new(Recorder {
        latency: new_histogram(),
        service: new_histogram(),
        interval: new_histogram(),
        interval_start: Duration::ZERO,
        intervals: Vec::new(),
        statuses: BTreeMap::new(),
        transport_errors: 0,
        requests: 0,
        events_accepted: 0,
        acked: Vec::new(),
    }));
    let max_in_flight = options.max_in_flight.max(1);
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let collect_ids = options.collect_ids;
    let mut lateness = Lateness::default();
    let (mut requests, mut events_sent) = (0u64, 0u64);
    let mut last_tick = (Instant::now(), 0u64);

    let start = Instant::now();
    let tokio_start = tokio::time::Instant::from_std(start);
    let mut schedule = plan.schedule(options.batch);
    let mut next = schedule.next();
    let mut upcoming = next.map(|(_, n)| build(&mut mix, n));
    while let (Some((offset, n)), Some(request)) = (next, upcoming.take()) {
        let due = tokio_start + offset;
        // Wait for the send time, reporting progress meanwhile.
        loop {
            if last_tick.0.elapsed() >= Duration::from_secs(1) {
                let r = recorder
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let secs = last_tick.0.elapsed().as_secs_f64();
                let snapshot = Progress {
                    elapsed: start.elapsed(),
                    planned: plan.duration(),
                    events_sent,
                    rate: (events_sent - last_tick.1) as f64 / secs,
                    by_class: r.by_class(),
                    statuses: r.statuses.clone(),
                    transport_errors: r.transport_errors,
                    events_accepted: r.events_accepted,
                    latency: Percentiles::of(&r.latency),
                    late_requests: lateness.late_requests,
                };
                drop(r);
                recorder
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .close_interval(start.elapsed());
                progress(&snapshot);
                last_tick = (Instant::now(), events_sent);
            }
            if tokio::time::Instant::now() >= due {
                break;
            }
            let wake = due.min(tokio::time::Instant::from_std(
                last_tick.0 + Duration::from_secs(1),
            ));
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
        if stop.is_cancelled() {
            break;
        }
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                lateness.waited_for_slot += 1;
                tokio::select! {
                    _ = stop.cancelled() => break,
                    p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                }
            }
        };
        let late = tokio::time::Instant::now().saturating_duration_since(due);
        if late > LATE_AFTER {
            lateness.late_requests += 1;
        }
        lateness.max_ms = lateness.max_ms.max(late.as_secs_f64() * 1000.0);
        requests += 1;
        events_sent += n as u64;
        let (target, recorder) = (target.clone(), recorder.clone());
        let intended = start + offset;
        tokio::spawn(async move {
            let sent = Instant::now();
            let answer = target.send(request).await;
            let done = Instant::now();
            let mut r = recorder
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let latency = micros(done.saturating_duration_since(intended));
            let _ = r.latency.record(latency);
            let _ = r.interval.record(latency);
            let _ = r.service.record(micros(done - sent));
            r.requests += 1;
            match answer.status {
                Some(s) => *r.statuses.entry(s).or_default() += 1,
                None => r.transport_errors += 1,
            }
            r.events_accepted += answer.accepted.len() as u64;
            if collect_ids {
                r.acked.extend(answer.accepted);
            }
            drop(permit);
        });
        // Build the next request now, while there is time before it is due.
        next = schedule.next();
        upcoming = next.map(|(_, n)| build(&mut mix, n));
    }
    let send_phase = start.elapsed();
    // Every answer in flight, however long it takes: the run is not over until then.
    let _all = slots.acquire_many(max_in_flight as u32).await;
    let duration = start.elapsed();

    let mut r = recorder
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    r.close_interval(duration);
    // What was planned: all of it, or up to the stop (a day-long background plan stopped
    // after a minute is not walked to its end).
    let stopped = stop.is_cancelled();
    let planned_events: u64 = plan
        .schedule(options.batch.max(1))
        .take_while(|(offset, _)| !stopped || *offset <= send_phase)
        .map(|(_, n)| n as u64)
        .sum();
    let planned_rate = if plan.duration().is_zero() {
        0.0
    } else if stopped {
        planned_events as f64 / send_phase.as_secs_f64().max(1e-9)
    } else {
        planned_events as f64 / plan.duration().as_secs_f64()
    };
    let achieved_rate = events_sent as f64 / send_phase.as_secs_f64().max(1e-9);
    // Behind when it sent less than planned (not stopped early), or sent much of it late.
    let fell_behind = (!stopped
        && (events_sent < planned_events || achieved_rate < 0.95 * planned_rate))
        || lateness.late_requests * 20 > requests.max(1);
    let report = Report {
        target: target.describe(),
        planned_rate,
        planned_events,
        requests,
        events_sent,
        events_accepted: r.events_accepted,
        statuses: r.statuses.clone(),
        transport_errors: r.transport_errors,
        duration_secs: duration.as_secs_f64(),
        achieved_rate,
        latency_ms: Percentiles::of(&r.latency),
        service_time_ms: Percentiles::of(&r.service),
        lateness,
        fell_behind,
        verify: None,
    };
    Outcome {
        report,
        acked: std::mem::take(&mut r.acked),
        intervals: std::mem::take(&mut r.intervals),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers every request after a fixed delay.
    struct Slow {
        delay: Duration,
    }

    impl Target for Slow {
        fn send(&self, request: Request) -> BoxFuture<'static, Answer> {
            let delay = self.delay;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Answer {
                    status: Some(202),
                    accepted: request.ids,
                }
            })
        }
        fn describe(&self) -> String {
            "in-memory".into()
        }
    }

    #[tokio::test]
    async fn a_run_sends_the_plan_and_collects_every_id() {
        let plan =
            Plan::new(500.0, Some(Duration::from_secs(1)), None, Duration::ZERO).expect("plan");
        let options = Options {
            collect_ids: true,
            batch: 10,
            ..Options::default()
        };
        let out = run(
            &plan,
            Arc::new(Slow {
                delay: Duration::from_millis(2),
            }),
            &options,
            CancellationToken::new(),
            |_| {},
        )
        .await;
        assert_eq!(out.report.events_sent, 500);
        assert_eq!(out.report.requests, 50);
        assert_eq!(out.acked.len(), 500);
        assert_eq!(out.report.statuses.get(&202), Some(&50));
        assert!(!out.report.fell_behind, "{:?}", out.report);
        assert!(out.report.latency_ms.p50 >= 2.0);
    }

    #[tokio::test]
    async fn a_server_slower_than_the_slots_shows_as_latency_from_the_planned_time() {
        // 200 req/s for 1 s, each answer takes 100 ms, only 5 in flight: at most 50 req/s get
        // through, so requests queue for slots and their latency grows far beyond 100 ms.
        let plan =
            Plan::new(200.0, Some(Duration::from_secs(1)), None, Duration::ZERO).expect("plan");
        let options = Options {
            max_in_flight: 5,
            ..Options::default()
        };
        let out = run(
            &plan,
            Arc::new(Slow {
                delay: Duration::from_millis(100),
            }),
            &options,
            CancellationToken::new(),
            |_| {},
        )
        .await;
        assert_eq!(out.report.requests, 200);
        assert!(out.report.lateness.waited_for_slot > 0);
        assert!(out.report.fell_behind);
        assert!(
            out.report.latency_ms.p99 > 2_000.0,
            "coordinated omission corrected: {:?} vs service {:?}",
            out.report.latency_ms,
            out.report.service_time_ms
        );
        assert!(out.report.service_time_ms.p99 < 500.0);
    }
}
