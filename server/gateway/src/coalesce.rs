//! Publish coalescing: the events of requests that arrive while the producer is busy travel
//! together in one call.
//!
//! Without it every waiting client request held a connection to the producer of its own: at
//! 10,000 events/s a stall of a few milliseconds meant a thousand upstream connections, each
//! with its buffers and task, and the gateway's memory followed (profiled with heaptrack:
//! about half of its peak heap). Now at most a few calls per producer instance are out at
//! once; a request that arrives while they are all out waits for the next free one, and that
//! call takes every request queued meanwhile (as Kafka's own producer batches while a request
//! is in flight). An idle gateway adds no delay: a lone request goes at once.
//!
//! Few calls out means large ones. A call waits out the producer's `linger.ms` at least (about
//! 7 ms a call here), so the calls out at once, times that, set how many events each carries:
//! single events at 12,000/s went 10 to a call with 8 calls out and 39 with 2, and the gateway's
//! CPU per event fell from 40 to 38 µs, the producer's from 18 to 14, and the p99 from 59 to 28
//! ms (one run each of `logctl load`, co-located on 2 cores).
//!
//! Each request keeps its own answer: one outcome per event, in its order, and a failed call
//! fails each of its requests the same way. A request is never split across calls.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use logctl_contracts::metric;
use logctl_core::internal_api::{PublishOutcome, PublishRequest, Segment};
use logctl_core::{ApiError, LogEvent, TraceContext};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, Semaphore};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CoalesceSettings {
    /// Calls out at once to each producer instance.
    pub calls_per_producer: usize,
    /// Most events one call gathers (a single larger request still goes, alone).
    pub max_events: usize,
    /// Most event bytes (message and source, plus a fixed share per event) one call gathers.
    pub max_bytes: usize,
    /// A call out this long gives up its slot (it goes on until its own timeout): a call
    /// normally takes milliseconds, so this one is stuck, and stuck calls holding every slot
    /// would hold every request behind them. Against a producer that stopped answering, calls
    /// then go on failing at a steady pace and its breaker opens within a few seconds; with
    /// two slots held for the whole 4 s attempt timeout its five failures took about 10 s (the
    /// network test's cut: the breaker opened after the link was back).
    #[serde(deserialize_with = "logctl_contracts::duration::millis")]
    pub stuck_after_ms: u64,
}

impl Default for CoalesceSettings {
    fn default() -> Self {
        Self {
            calls_per_producer: 2,
            max_events: 2_000,
            max_bytes: 4 * 1024 * 1024,
            stuck_after_ms: 1_000,
        }
    }
}

pub type Answer = Result<Vec<PublishOutcome>, ApiError>;

struct Job {
    segment: Segment,
    bytes: usize,
    reply: oneshot::Sender<Answer>,
}

#[derive(Clone)]
pub struct Coalescer {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Coalescer {
    /// Starts the dispatching task; `call` makes one call to one of `producers` instances.
    /// The task ends when the last `Coalescer` clone is dropped and the queue is empty.
    pub fn start<F, Fut>(settings: CoalesceSettings, producers: usize, call: F) -> Self
    where
        F: Fn(PublishRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Answer> + Send + 'static,
    {
        // Unbounded is safe here: admission control bounds the requests in flight.
        let (tx, rx) = mpsc::unbounded_channel();
        let max_calls = settings.calls_per_producer.max(1) * producers.max(1);
        tokio::spawn(dispatch(settings, max_calls, Arc::new(call), rx));
        Self { jobs: tx }
    }

    /// Publishes one request's events; the answer has one outcome per event, in order.
    pub async fn publish(&self, events: Vec<LogEvent>, trace: &TraceContext) -> Answer {
        let (reply, answer) = oneshot::channel();
        let bytes = events.iter().map(weight).sum();
        let job = Job {
            segment: Segment {
                traceparent: Some(trace.to_string()),
                events,
            },
            bytes,
            reply,
        };
        self.jobs
            .send(job)
            .map_err(|_| ApiError::Internal("the publish queue is closed".into()))?;
        answer
            .await
            .map_err(|_| ApiError::Internal("the publish call was dropped".into()))?
    }
}

/// What an event adds to a call's body, roughly: its free text plus the fixed fields.
fn weight(event: &LogEvent) -> usize {
    event.message.len() + event.source.len() + 200
}

async fn dispatch<F, Fut>(
    settings: CoalesceSettings,
    max_calls: usize,
    call: Arc<F>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
) where
    F: Fn(PublishRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Answer> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(max_calls));
    let stuck_after = Duration::from_millis(settings.stuck_after_ms.max(1));
    let mut held: Option<Job> = None;
    loop {
        // A free slot first: while none is, requests gather in the queue for the next call.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let first = match held.take() {
            Some(job) => job,
            None => match jobs.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let (mut events, mut bytes) = (first.segment.events.len(), first.bytes);
        let mut batch = vec![first];
        while let Ok(job) = jobs.try_recv() {
            let n = job.segment.events.len();
            if events + n > settings.max_events || bytes + job.bytes > settings.max_bytes {
                held = Some(job);
                break;
            }
            events += n;
            bytes += job.bytes;
            batch.push(job);
        }
        metrics::histogram!(metric::GATEWAY_PUBLISH_COALESCED_SIZE).record(batch.len() as f64);
        let call = call.clone();
        tokio::spawn(async move {
            let mut segments = Vec::with_capacity(batch.len());
            let mut replies = Vec::with_capacity(batch.len());
            for job in batch {
                replies.push((job.reply, job.segment.events.len()));
                segments.push(job.segment);
            }
            let mut pending = std::pin::pin!(call(PublishRequest { segments }));
            let answered = tokio::time::timeout(stuck_after, pending.as_mut()).await;
            drop(slot);
            let answer = match answered {
                Ok(answer) => answer,
                Err(_) => pending.await,
            };
            answer_each(answer, replies);
        });
    }
}

/// Hands each request its slice of the call's outcomes, or the call's error. Outcomes that do
/// not match the events one for one fail the whole call: which event each belongs to is lost.
fn answer_each(answer: Answer, requests: Vec<(oneshot::Sender<Answer>, usize)>) {
    let expected: usize = requests.iter().map(|(_, size)| size).sum();
    let answer = answer.and_then(|outcomes| {
        if outcomes.len() == expected {
            Ok(outcomes)
        } else {
            Err(ApiError::Internal(format!(
                "producer answered {} outcomes for {expected} events",
                outcomes.len()
            )))
        }
    });
    match answer {
        Ok(outcomes) => {
            let mut outcomes = outcomes.into_iter();
            for (reply, size) in requests {
                let _ = reply.send(Ok(outcomes.by_ref().take(size).collect()));
            }
        }
        Err(e) => {
            for (reply, _) in requests {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use logctl_core::EventLimits;
    use std::sync::Mutex;
    use std::time::Duration;

    fn event(message: &str) -> LogEvent {
        let v = serde_json::json!({"organizationId": "acme", "level": "INFO", "message": message, "source": "t"});
        LogEvent::from_json(&v, &EventLimits::default(), Utc::now()).expect("valid")
    }

    fn ok(request: &PublishRequest) -> Vec<PublishOutcome> {
        request
            .segments
            .iter()
            .flat_map(|s| &s.events)
            .map(|e| PublishOutcome {
                id: e.id,
                partition: Some(0),
                offset: Some(0),
                error: None,
                spooled: false,
            })
            .collect()
    }

    type Calls = Arc<Mutex<Vec<Vec<usize>>>>;
    type BoxedAnswer = std::pin::Pin<Box<dyn Future<Output = Answer> + Send>>;

    /// A producer that takes `delay` per call and remembers each call's segment sizes.
    fn recording(
        delay: Duration,
    ) -> (
        Calls,
        impl Fn(PublishRequest) -> BoxedAnswer + Send + Sync + 'static,
    ) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = calls.clone();
        let call = move |request: PublishRequest| {
            seen.lock()
                .expect("not poisoned")
                .push(request.segments.iter().map(|s| s.events.len()).collect());
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(ok(&request))
            }) as BoxedAnswer
        };
        (calls, call)
    }

    #[tokio::test]
    async fn requests_waiting_for_a_slot_share_the_next_call_and_keep_their_answers() {
        let (calls, call) = recording(Duration::from_millis(50));
        let settings = CoalesceSettings {
            calls_per_producer: 1,
            ..CoalesceSettings::default()
        };
        let coalescer = Coalescer::start(settings, 1, call);
        let trace = TraceContext::root(0.0);
        let mut tasks = Vec::new();
        for i in 0..20usize {
            let (c, t) = (coalescer.clone(), trace);
            let events: Vec<LogEvent> = (0..=i % 3).map(|j| event(&format!("{i}-{j}"))).collect();
            let ids: Vec<_> = events.iter().map(|e| e.id).collect();
            tasks.push(tokio::spawn(async move {
                let answer = c.publish(events, &t).await.expect("published");
                assert_eq!(answer.iter().map(|o| o.id).collect::<Vec<_>>(), ids);
            }));
        }
        for t in tasks {
            t.await
                .expect("each request got its own outcomes, in order");
        }
        let calls = calls.lock().expect("not poisoned");
        assert!(
            calls.len() < 20,
            "20 requests against one slot took {} calls",
            calls.len()
        );
        let requests: usize = calls.iter().map(Vec::len).sum();
        assert_eq!(requests, 20);
    }

    #[tokio::test]
    async fn each_producer_instance_gets_its_share_of_calls_out_at_once() {
        let out = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let call = {
            let (out, most) = (out.clone(), most.clone());
            move |request: PublishRequest| {
                let (out, most) = (out.clone(), most.clone());
                async move {
                    let now = out.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    out.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    Ok(ok(&request))
                }
            }
        };
        let settings = CoalesceSettings {
            calls_per_producer: 2,
            ..CoalesceSettings::default()
        };
        let coalescer = Coalescer::start(settings, 3, call);
        let trace = TraceContext::root(0.0);
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let c = coalescer.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(i % 10)).await;
                    c.publish(vec![event("x")], &trace)
                        .await
                        .expect("published")
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("joined");
        }
        assert_eq!(
            most.load(std::sync::atomic::Ordering::SeqCst),
            6,
            "2 calls for each of 3 producers"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_call_gives_up_its_slot_and_the_next_requests_go_out() {
        let made = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let call = {
            let made = made.clone();
            move |request: PublishRequest| {
                // The first call hangs for a minute (a black-holed link); later ones answer.
                let first = made.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
                async move {
                    if first {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    Ok(ok(&request))
                }
            }
        };
        let settings = CoalesceSettings {
            calls_per_producer: 1,
            stuck_after_ms: 1_000,
            ..CoalesceSettings::default()
        };
        let coalescer = Coalescer::start(settings, 1, call);
        let trace = TraceContext::root(0.0);
        let stuck = tokio::spawn({
            let c = coalescer.clone();
            async move { c.publish(vec![event("a")], &trace).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let started = tokio::time::Instant::now();
        let answer = coalescer.publish(vec![event("b")], &trace).await;
        assert!(answer.is_ok(), "{answer:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "waited {:?}: the stuck call's minute, not the second after which it gives up its slot",
            started.elapsed()
        );
        assert!(!stuck.is_finished(), "the stuck call goes on");
    }

    #[tokio::test]
    async fn a_call_stops_gathering_at_its_event_limit() {
        let (calls, call) = recording(Duration::from_millis(20));
        let settings = CoalesceSettings {
            calls_per_producer: 1,
            max_events: 5,
            ..CoalesceSettings::default()
        };
        let coalescer = Coalescer::start(settings, 1, call);
        let trace = TraceContext::root(0.0);
        let tasks: Vec<_> = (0..12)
            .map(|i| {
                let c = coalescer.clone();
                let n = if i == 11 { 7 } else { 2 };
                tokio::spawn(async move {
                    let events = (0..n).map(|_| event("x")).collect();
                    c.publish(events, &trace).await.expect("published").len()
                })
            })
            .collect();
        for (i, t) in tasks.into_iter().enumerate() {
            assert_eq!(t.await.expect("joined"), if i == 11 { 7 } else { 2 });
        }
        for sizes in calls.lock().expect("not poisoned").iter() {
            let total: usize = sizes.iter().sum();
            assert!(
                total <= 5 || sizes.len() == 1,
                "a call gathered {sizes:?} past the limit of 5"
            );
        }
    }

    #[tokio::test]
    async fn a_failed_call_fails_every_request_in_it() {
        let call = |_: PublishRequest| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Err::<Vec<PublishOutcome>, _>(ApiError::Unavailable {
                what: "producer".into(),
                reason: "down".into(),
                retry_after_secs: 1,
            })
        };
        let coalescer = Coalescer::start(
            CoalesceSettings {
                calls_per_producer: 1,
                ..CoalesceSettings::default()
            },
            1,
            call,
        );
        let trace = TraceContext::root(0.0);
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let c = coalescer.clone();
                tokio::spawn(async move { c.publish(vec![event("x")], &trace).await })
            })
            .collect();
        for t in tasks {
            assert!(matches!(
                t.await.expect("joined"),
                Err(ApiError::Unavailable { .. })
            ));
        }
    }

    #[tokio::test]
    async fn a_short_answer_is_an_error_not_a_wrong_outcome() {
        let call = |request: PublishRequest| async move {
            let mut outcomes = ok(&request);
            outcomes.pop();
            Ok(outcomes)
        };
        let coalescer = Coalescer::start(CoalesceSettings::default(), 1, call);
        let answer = coalescer
            .publish(vec![event("a"), event("b")], &TraceContext::root(0.0))
            .await;
        assert!(matches!(answer, Err(ApiError::Internal(_))), "{answer:?}");
    }
}
