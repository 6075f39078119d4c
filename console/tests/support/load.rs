//! Steady open-loop load for the fault tests: one event every `1/rate` s with a client id,
//! whatever the answers, recording every id sent, every id answered 2xx, and each status.
//! Then [`verify_exactly_once`] lets the database judge.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub sent: Vec<Uuid>,
    pub acked: Vec<Uuid>,
    pub statuses: BTreeMap<u16, usize>,
    /// Requests that got no HTTP answer at all.
    pub transport_errors: usize,
    /// 503s without a `Retry-After` header.
    pub unavailable_without_retry_after: usize,
    pub slowest: Duration,
    /// (seconds since start, status) per answer, to see when 2xx came back.
    pub timeline: Vec<(f64, u16)>,
}

impl LoadReport {
    pub fn count(&self, status: u16) -> usize {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    pub fn server_errors(&self) -> usize {
        self.statuses
            .iter()
            .filter(|(s, _)| **s >= 500 && **s != 503)
            .map(|(_, n)| n)
            .sum()
    }
}

pub struct Load {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    report: Arc<Mutex<LoadReport>>,
    in_flight: Arc<Semaphore>,
}

const MAX_IN_FLIGHT: u32 = 256;
const ORGS: u64 = 7;

impl Load {
    /// Starts posting to the stack's gateway at `rate` events/s over 7 organizations (each
    /// with its own token); every event's `source` is `tag`.
    pub fn start(stack: &super::TestStack, rate: u32, tag: String) -> Load {
        let gateway = stack.gateway();
        let tokens: Vec<String> = (0..ORGS)
            .map(|i| stack.token(&format!("org-{i}")))
            .collect();
        let stop = CancellationToken::new();
        let report = Arc::new(Mutex::new(LoadReport::default()));
        let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT as usize));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let task = tokio::spawn({
            let (stop, report, in_flight) = (stop.clone(), report.clone(), in_flight.clone());
            async move {
                let started = Instant::now();
                let mut tick =
                    tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
                let mut seq = 0u64;
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    let Ok(permit) = in_flight.clone().acquire_owned().await else {
                        return;
                    };
                    seq += 1;
                    let id = Uuid::now_v7();
                    let event = json!({
                        "id": id, "organizationId": format!("org-{}", seq % ORGS), "level": "INFO",
                        "message": format!("{tag} event {seq}"), "source": tag,
                    });
                    report.lock().expect("report").sent.push(id);
                    let (client, report, url, token) = (
                        client.clone(),
                        report.clone(),
                        format!("{gateway}/api/logs"),
                        tokens[(seq % ORGS) as usize].clone(),
                    );
                    tokio::spawn(async move {
                        let t = Instant::now();
                        let answer = client
                            .post(url)
                            .bearer_auth(token)
                            .json(&event)
                            .send()
                            .await;
                        let took = t.elapsed();
                        let mut r = report.lock().expect("report");
                        r.slowest = r.slowest.max(took);
                        match answer {
                            Ok(resp) => {
                                let status = resp.status().as_u16();
                                *r.statuses.entry(status).or_default() += 1;
                                r.timeline.push((started.elapsed().as_secs_f64(), status));
                                if resp.status().is_success() {
                                    r.acked.push(id);
                                }
                                if status == 503 && !resp.headers().contains_key("retry-after") {
                                    r.unavailable_without_retry_after += 1;
                                }
                            }
                            Err(_) => r.transport_errors += 1,
                        }
                        drop(permit);
                    });
                }
            }
        });
        Load {
            stop,
            task,
            report,
            in_flight,
        }
    }

    /// Stops sending, waits for the answers in flight, and returns what happened.
    pub async fn stop(self) -> LoadReport {
        self.stop.cancel();
        let _ = self.task.await;
        let _all = self
            .in_flight
            .acquire_many(MAX_IN_FLIGHT)
            .await
            .expect("semaphore");
        let report = self.report.lock().expect("report").clone();
        report
    }
}

/// Waits until every acknowledged id is stored, then checks the database holds each exactly
/// once and nothing that was never sent.
pub async fn verify_exactly_once(
    stack: &super::TestStack,
    pool: &sqlx::PgPool,
    tag: &str,
    report: &LoadReport,
    within: Duration,
) {
    let acked: HashSet<Uuid> = report.acked.iter().copied().collect();
    let sent: HashSet<Uuid> = report.sent.iter().copied().collect();
    assert!(
        !acked.is_empty(),
        "the load got no event accepted at all: {:?}",
        report.statuses
    );
    let within = super::scaled(within);
    let deadline = Instant::now() + within;
    let stored: Vec<Uuid> = loop {
        let stored: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM log_events WHERE source = $1")
            .bind(tag)
            .fetch_all(pool)
            .await
            .expect("query stored ids");
        let present: HashSet<Uuid> = stored.iter().copied().collect();
        let missing = acked.difference(&present).count();
        if missing == 0 {
            break stored;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} acknowledged events never reached PostgreSQL\nconsumer log:\n{}\nproducer log:\n{}",
            acked.len(),
            stack.log_tail("consumer", 40),
            stack.log_tail("producer", 15)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let unique: HashSet<Uuid> = stored.iter().copied().collect();
    assert_eq!(unique.len(), stored.len(), "an event was stored twice");
    let strangers = unique.difference(&sent).count();
    assert_eq!(strangers, 0, "rows that were never sent");
    let messages: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT message) FROM log_events WHERE source = $1")
            .bind(tag)
            .fetch_one(pool)
            .await
            .expect("count");
    assert_eq!(
        messages as usize,
        stored.len(),
        "one event stored under two ids"
    );
}
