//! Observability against a real stack with Prometheus: the metrics catalogue is present and
//! moves under load, consumer lag (read from Kafka) rises while the consumer is stopped, the
//! lag alert fires in Prometheus, and everything returns to zero when the consumer is back.

mod support;

use std::time::Duration;

use logctl_contracts::metric;
use logctl_loadgen::events::EventMix;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{eventually, metric_sum, scrape, TestStack};

/// Posts `n` events in batches of up to 100 (one organization each, as tokens are) and checks
/// every one was accepted.
async fn post_events(stack: &TestStack, n: usize, seed: u64) {
    let client = reqwest::Client::new();
    let mut mix = EventMix::new(seed, 10, 120, "obs");
    let mut by_org: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for e in (0..n).map(|_| mix.next_event()) {
        let org = e["organizationId"].as_str().expect("org").to_owned();
        by_org.entry(org).or_default().push(e);
    }
    for (org, events) in &by_org {
        for chunk in events.chunks(100) {
            let r = client
                .post(format!("{}/api/logs/batch", stack.gateway()))
                .bearer_auth(stack.token(org))
                .json(&chunk)
                .send()
                .await
                .expect("post");
            assert_eq!(r.status(), StatusCode::ACCEPTED);
        }
    }
}

type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>;

/// A minimal OTLP/HTTP (JSON) collector: keeps (service name, span) pairs.
async fn otlp_collector() -> (String, Received) {
    let spans: Received = Default::default();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post({
            let spans = spans.clone();
            move |axum::Json(body): axum::Json<Value>| async move {
                let mut kept = spans.lock().expect("lock");
                for rs in body["resourceSpans"].as_array().into_iter().flatten() {
                    let service = rs["resource"]["attributes"][0]["value"]["stringValue"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                        for span in ss["spans"].as_array().into_iter().flatten() {
                            kept.push((service.clone(), span.clone()));
                        }
                    }
                }
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), spans)
}

async fn prometheus_query(stack: &TestStack, path: &str) -> Value {
    reqwest::get(format!(
        "http://127.0.0.1:{}{path}",
        stack.port("prometheus-port")
    ))
    .await
    .expect("prometheus answers")
    .json()
    .await
    .expect("json")
}

/// The highest value of a per-partition gauge the producer exports.
async fn worst_partition(stack: &TestStack, name: &str) -> Option<f64> {
    let text = scrape(stack.port("producer-port")).await;
    logctl::signals::exposition::Scrape::parse(&text)
        .matching(name, &[])
        .map(|s| s.value)
        .reduce(f64::max)
}

async fn total_lag(stack: &TestStack) -> Option<f64> {
    metric_sum(
        &scrape(stack.port("producer-port")).await,
        metric::CONSUMER_LAG,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_lag_rises_with_the_consumer_stopped_and_the_alert_fires() {
    let (collector, spans) = otlp_collector().await;
    let stack = TestStack::start_with_prometheus(
        "observability",
        1,
        &[
            ("LOGCTL_GATEWAY_OTLP__ENDPOINT", collector.as_str()),
            ("LOGCTL_PRODUCER_OTLP__ENDPOINT", collector.as_str()),
            ("LOGCTL_CONSUMER_OTLP__ENDPOINT", collector.as_str()),
        ],
    );
    let (gateway, producer, consumer) = (
        stack.port("gateway-port"),
        stack.port("producer-port"),
        stack.port("consumer-port"),
    );

    // Prometheus scrapes all three services.
    eventually(
        "every Prometheus target up",
        Duration::from_secs(60),
        || async {
            let targets = prometheus_query(&stack, "/api/v1/targets").await;
            let active = targets["data"]["activeTargets"].as_array()?.clone();
            (active.len() == 3 && active.iter().all(|t| t["health"] == "up")).then_some(())
        },
    )
    .await;

    // The catalogue: present before load, and the counters move with it.
    let before = [
        scrape(gateway).await,
        scrape(producer).await,
        scrape(consumer).await,
    ];
    // Registered at zero on start: before any read, the read cache's counters are there, one
    // series per kind and result, and so are the limiter's and the spool's.
    for cache in metric::CACHE_KINDS {
        for result in metric::CACHE_RESULTS {
            let series = format!(
                "{}{{cache=\"{cache}\",result=\"{result}\"}} 0",
                metric::CACHE_REQUESTS
            );
            assert!(
                before[2].lines().any(|l| l == series),
                "no `{series}` in:\n{}",
                before[2]
            );
        }
    }
    assert_eq!(
        metric_sum(&before[0], metric::RATE_LIMIT_DECISIONS),
        Some(0.0)
    );
    assert_eq!(
        metric_sum(&before[1], metric::PRODUCER_SPOOL_UNDECODABLE),
        Some(0.0)
    );
    post_events(&stack, 2_000, 7).await;
    let bad = reqwest::Client::new()
        .post(format!("{}/api/logs", stack.gateway()))
        .bearer_auth(stack.token("obs"))
        .json(&json!({"organizationId": "obs", "level": "LOUD", "message": "m", "source": "s"}))
        .send()
        .await
        .expect("post");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let anonymous = reqwest::Client::new()
        .post(format!("{}/api/logs", stack.gateway()))
        .json(&json!({"organizationId": "obs", "level": "INFO", "message": "m", "source": "s"}))
        .send()
        .await
        .expect("post");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    // Read twice: a cache miss, then a hit.
    for _ in 0..2 {
        let r = reqwest::Client::new()
            .get(format!("{}/api/stats", stack.gateway()))
            .bearer_auth(stack.token("obs"))
            .send()
            .await
            .expect("stats");
        assert_eq!(r.status(), StatusCode::OK);
    }
    // Counted by the consumer itself: the lag gauge may still hold its pre-load reading.
    eventually(
        "the 2000 events stored",
        Duration::from_secs(60),
        || async {
            metric_sum(&scrape(consumer).await, metric::CONSUMER_EVENTS_STORED)
                .filter(|n| *n >= 2_000.0)
        },
    )
    .await;
    let after = [
        scrape(gateway).await,
        scrape(producer).await,
        scrape(consumer).await,
    ];

    let moving: [(usize, &[&str]); 3] = [
        (
            0,
            &[
                metric::HTTP_REQUESTS,
                "logctl_http_request_duration_seconds_count",
                metric::HTTP_ERRORS,
                metric::GATEWAY_EVENTS_ACCEPTED,
                metric::RATE_LIMIT_DECISIONS,
                "logctl_rate_limit_check_seconds_count",
                metric::AUTH_FAILURES,
                "process_cpu_seconds_total",
            ],
        ),
        (
            1,
            &[
                metric::PRODUCER_EVENTS_PUBLISHED,
                "logctl_producer_publish_duration_seconds_count",
                metric::HTTP_REQUESTS,
            ],
        ),
        (
            2,
            &[
                metric::CONSUMER_EVENTS_STORED,
                "logctl_consumer_batch_size_count",
                "logctl_consumer_insert_duration_seconds_count",
                "logctl_consumer_end_to_end_latency_seconds_count",
                metric::CACHE_REQUESTS,
                "logctl_query_duration_seconds_count",
            ],
        ),
    ];
    for (i, names) in moving {
        for name in names {
            let b = metric_sum(&before[i], name).unwrap_or(0.0);
            let a = metric_sum(&after[i], name).unwrap_or_else(|| panic!("{name} missing"));
            assert!(a > b, "{name} did not move: {b} -> {a}");
        }
    }
    assert!(metric_sum(&after[2], metric::CONSUMER_EVENTS_STORED).unwrap_or(0.0) >= 2_000.0);
    let present: [(usize, &[&str]); 3] = [
        (
            0,
            &[
                metric::HTTP_REQUESTS_IN_FLIGHT,
                "process_resident_memory_bytes",
            ],
        ),
        (
            1,
            &[
                metric::PRODUCER_KAFKA_IN_FLIGHT,
                metric::CONSUMER_LAG,
                "process_resident_memory_bytes",
            ],
        ),
        (
            2,
            &[
                metric::CONSUMER_LAG,
                metric::CONSUMER_DB_POOL_IN_USE,
                metric::CONSUMER_DB_POOL_MAX,
                "process_resident_memory_bytes",
            ],
        ),
    ];
    for (i, names) in present {
        for name in names {
            assert!(metric_sum(&after[i], name).is_some(), "{name} missing");
        }
    }
    assert!(
        after[2].contains("logctl_consumer_end_to_end_latency_seconds_bucket{le=\"0.001\"}"),
        "histograms resolve 1 ms"
    );

    // A sampled trace is exported by all three services as one chain of spans.
    let client_span = "00f067aa0ba902b7";
    let trace_id = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
    let r = reqwest::Client::new()
        .post(format!("{}/api/logs", stack.gateway()))
        .bearer_auth(stack.token("obs"))
        .header("traceparent", format!("00-{trace_id}-{client_span}-01"))
        .json(&json!({"organizationId": "obs", "level": "INFO", "message": "traced", "source": "otlp"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let chain = eventually(
        "spans from gateway, producer and consumer",
        Duration::from_secs(30),
        || {
            let spans = spans.clone();
            let trace_id = trace_id.clone();
            async move {
                let mine: Vec<(String, Value)> = spans
                    .lock()
                    .expect("lock")
                    .iter()
                    .filter(|(_, s)| s["traceId"] == trace_id.as_str())
                    .cloned()
                    .collect();
                let find = |service: &str| {
                    mine.iter()
                        .find(|(svc, _)| svc == service)
                        .map(|(_, s)| s.clone())
                };
                Some((
                    find("logctl-gateway")?,
                    find("logctl-producer")?,
                    find("logctl-consumer")?,
                ))
            }
        },
    )
    .await;
    let (gateway_span, producer_span, consumer_span) = chain;
    assert_eq!(gateway_span["parentSpanId"], client_span);
    assert_eq!(producer_span["parentSpanId"], gateway_span["spanId"]);
    assert_eq!(consumer_span["parentSpanId"], producer_span["spanId"]);
    assert_eq!(gateway_span["name"], "POST /api/logs");

    // Consumer stopped: lag (exported by the producer, read from Kafka) rises past 1000...
    let out = stack.logctl(&["fault", "stop", "consumer"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    post_events(&stack, 1_500, 8).await;
    eventually("lag to reach 1500", Duration::from_secs(30), || async {
        total_lag(&stack).await.filter(|l| *l >= 1_500.0)
    })
    .await;
    assert!(
        stack.kafka_reported_lag().is_some_and(|l| l >= 1_500),
        "Kafka's own tool agrees"
    );
    // Lag as time and Burrow's status: nobody holds the partitions (STOP, 3), and the oldest
    // unconsumed record's age grows with the wall clock.
    eventually(
        "a partition STOP, its records aging",
        Duration::from_secs(30),
        || async {
            let status = worst_partition(&stack, metric::CONSUMER_STATUS).await?;
            let behind = worst_partition(&stack, metric::CONSUMER_LAG_SECONDS).await?;
            (status == 3.0 && behind >= 1.0).then_some(())
        },
    )
    .await;

    // ...and the alert fires once it has held for its `for:` period.
    eventually(
        "ConsumerLagHigh firing",
        Duration::from_secs(120),
        || async {
            let alerts = prometheus_query(&stack, "/api/v1/alerts").await;
            alerts["data"]["alerts"]
                .as_array()?
                .iter()
                .any(|a| a["labels"]["alertname"] == "ConsumerLagHigh" && a["state"] == "firing")
                .then_some(())
        },
    )
    .await;

    // Consumer back: the lag drains to zero.
    let out = stack.logctl(&["fault", "start", "consumer"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually("lag back to 0", Duration::from_secs(60), || async {
        total_lag(&stack).await.filter(|l| *l == 0.0)
    })
    .await;
    eventually(
        "every partition OK and no time behind",
        Duration::from_secs(30),
        || async {
            let status = worst_partition(&stack, metric::CONSUMER_STATUS).await?;
            let behind = worst_partition(&stack, metric::CONSUMER_LAG_SECONDS).await?;
            (status == 0.0 && behind == 0.0).then_some(())
        },
    )
    .await;
    eventually(
        "Kafka's tool to show zero lag",
        Duration::from_secs(30),
        || async { stack.kafka_reported_lag().filter(|l| *l == 0) },
    )
    .await;
}
