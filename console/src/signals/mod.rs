//! What the operator's screens and the scenario runner look at, collected apart from any
//! rendering: each service's `/metrics`, consumer lag read from Kafka itself (log-end offsets
//! against the group's committed offsets, as Burrow and `kafka-consumer-groups` do, so it stays
//! true with every consumer dead), and each component's process state.
//!
//! [`Collector::snapshot`] takes one reading; [`Signals::between`] turns two readings into
//! rates, interval percentiles and states.

pub mod exposition;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use logctl_contracts::metric;
use logctl_contracts::topics::CONSUMER_GROUP;
use logctl_core::kafka::{ClusterView, KafkaSettings, MetadataReader};
use logctl_core::lag::{self, LagReader, PartitionHealth, Tracker};
use serde::Serialize;

use crate::stack::layout::{Layout, StackConfig};
use crate::stack::{self, Component, ComponentStatus};
use exposition::{quantile_between, Scrape};

/// How long one scrape of a service may take: the console redraws every second.
const SCRAPE_TIMEOUT: Duration = Duration::from_millis(800);

/// One reading of the whole stack.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub at: Instant,
    pub components: Vec<ComponentStatus>,
    pub gateway: Scrape,
    pub producer: Scrape,
    /// Every consumer instance's samples together.
    pub consumers: Scrape,
    /// Per partition (partition, lag), from Kafka; None when Kafka did not answer.
    pub lag: Option<BTreeMap<i32, i64>>,
    /// Per partition: lag in records and in time, and the consumer's status there (judged
    /// against this collector's earlier readings); empty when Kafka did not answer.
    pub lag_health: BTreeMap<i32, PartitionHealth>,
    /// Brokers and partition copies as the cluster's metadata has them; None when no broker
    /// answered.
    pub cluster: Option<ClusterView>,
    /// The fault proxy's links and the faults on each (`up --with-proxies`); empty without.
    pub links: BTreeMap<String, Vec<String>>,
    /// On a stack on hosts: each host cut off, and the hosts each is partitioned from.
    pub hosts: Vec<stack::hosts::HostStatus>,
}

impl Snapshot {
    /// Records the consumers have dead-lettered since they started.
    pub fn dead_lettered(&self) -> f64 {
        self.consumers
            .sum(metric::CONSUMER_DEAD_LETTERED, &[])
            .unwrap_or(0.0)
    }
}

/// A stack known only by where its parts answer (`logctl tui --config FILE`): one run by
/// docker compose, or on other hosts. Its components' states come from the services' own
/// readiness checks instead of process ids.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoints {
    /// Base URLs, e.g. `http://10.0.0.5:8080`.
    pub gateway: String,
    pub producer: String,
    pub consumers: Vec<String>,
    /// Kafka's bootstrap servers, for lag.
    pub kafka: String,
}

#[derive(Debug, Clone)]
enum Source {
    Local { layout: Layout, config: StackConfig },
    Remote(Endpoints),
}

#[derive(Clone)]
pub struct Collector {
    source: Source,
    http: reqwest::Client,
    lag: Option<Arc<LagReader>>,
    /// The lag readings so far, which a status is judged against. Clones share it; a reader
    /// of its own (a drill's observer beside the TUI) takes [`Collector::with_own_lag_history`],
    /// so two readers' readings never interleave out of order.
    lag_tracker: Arc<std::sync::Mutex<Tracker>>,
    metadata: Option<Arc<MetadataReader>>,
}

impl Collector {
    /// The local stack of `logctl up`.
    pub fn new(layout: &Layout, config: &StackConfig) -> Self {
        Self::with(
            Source::Local {
                layout: layout.clone(),
                config: config.clone(),
            },
            config.bootstrap_servers(),
        )
    }

    /// Any stack, by its endpoints.
    pub fn remote(endpoints: &Endpoints) -> Self {
        Self::with(Source::Remote(endpoints.clone()), endpoints.kafka.clone())
    }

    fn with(source: Source, bootstrap_servers: String) -> Self {
        let kafka = KafkaSettings {
            bootstrap_servers,
            ..KafkaSettings::default()
        };
        Self {
            source,
            http: reqwest::Client::builder()
                .timeout(SCRAPE_TIMEOUT)
                .build()
                .unwrap_or_default(),
            lag: LagReader::new(&kafka, CONSUMER_GROUP).ok().map(Arc::new),
            lag_tracker: Arc::default(),
            metadata: MetadataReader::new(&kafka).ok().map(Arc::new),
        }
    }

    /// The same collector with a lag history of its own.
    pub fn with_own_lag_history(&self) -> Self {
        Self {
            lag_tracker: Arc::default(),
            ..self.clone()
        }
    }

    /// The gateway's base URL.
    pub fn gateway(&self) -> String {
        match &self.source {
            Source::Local { config, .. } => format!("http://127.0.0.1:{}", config.ports.gateway),
            Source::Remote(e) => e.gateway.trim_end_matches('/').to_owned(),
        }
    }

    async fn get(&self, url: String) -> Option<String> {
        let r = self.http.get(url).send().await.ok()?;
        r.text().await.ok()
    }

    async fn scrape(&self, base: &str) -> Option<Scrape> {
        exposition::fetch(&self.http, base, SCRAPE_TIMEOUT).await
    }

    /// A remote stack's components: each service up when it answers; Kafka, PostgreSQL and
    /// Redis as the readiness checks of the services that use them say (down when any says so).
    async fn remote_status(
        &self,
        e: &Endpoints,
        gateway: &mut Scrape,
        producer: &mut Scrape,
        consumers: &mut Scrape,
    ) -> Vec<ComponentStatus> {
        let status = |name: String, status: &'static str| ComponentStatus {
            name,
            status,
            pid: None,
            rss_mib: None,
            port: 0,
            address: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
            log: std::path::PathBuf::new(),
        };
        let mut services = vec![
            (Component::Gateway(0), e.gateway.as_str()),
            (Component::Producer(0), e.producer.as_str()),
        ];
        services.extend(
            (0u16..)
                .zip(&e.consumers)
                .map(|(i, url)| (Component::Consumer(i), url.as_str())),
        );
        let mut out = Vec::new();
        let mut dependencies: BTreeMap<&str, bool> = BTreeMap::new();
        for (c, url) in services {
            let Some(scrape) = self.scrape(url).await else {
                out.push(status(c.name(), "down"));
                continue;
            };
            let target = match c {
                Component::Gateway(_) => &mut *gateway,
                Component::Producer(_) => &mut *producer,
                _ => &mut *consumers,
            };
            target.samples.extend(scrape.samples);
            out.push(status(c.name(), "up"));
            let ready = self
                .get(format!("{}/health/ready", url.trim_end_matches('/')))
                .await
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
            for dep in ["kafka", "postgres", "redis"] {
                if let Some(st) = ready
                    .as_ref()
                    .and_then(|r| r["checks"][dep]["status"].as_str())
                {
                    *dependencies.entry(dep).or_insert(true) &= st == "UP";
                }
            }
        }
        for dep in ["kafka", "postgres", "redis"] {
            let state = match dependencies.get(dep) {
                Some(true) => "up",
                Some(false) => "down",
                None => "unknown",
            };
            out.push(status(dep.to_owned(), state));
        }
        out
    }

    pub async fn snapshot(&self) -> Snapshot {
        let mut gateway = Scrape::default();
        let mut producer = Scrape::default();
        let mut consumers = Scrape::default();
        let mut links = BTreeMap::new();
        let mut hosts = Vec::new();
        let components = match &self.source {
            Source::Local { layout, config } => {
                // Read again each time: `logctl up --consumers N` (or a drill's scale step)
                // may have changed the stack's shape since this collector was made.
                let config = &layout.load_config().unwrap_or_else(|_| config.clone());
                let components = stack::status(layout, config);
                for c in Component::all(config) {
                    let target = match c {
                        Component::Gateway(_) => &mut gateway,
                        Component::Producer(_) => &mut producer,
                        Component::Consumer(_) => &mut consumers,
                        _ => continue,
                    };
                    let up = components.iter().any(|s| s.name == c.name() && s.is_up());
                    if up {
                        let base = format!("http://{}", c.listen(config));
                        if let Some(scrape) = self.scrape(&base).await {
                            target.samples.extend(scrape.samples);
                        }
                    }
                }
                if config.proxies {
                    links = link_faults(config).await;
                }
                if let Some(net) = config.net() {
                    let config = config.clone();
                    hosts = tokio::task::spawn_blocking(move || stack::hosts::status(net, &config))
                        .await
                        .unwrap_or_default();
                }
                components
            }
            Source::Remote(e) => {
                self.remote_status(e, &mut gateway, &mut producer, &mut consumers)
                    .await
            }
        };
        // Both ask Kafka (blocking client calls, up to 2 s each when it is away): side by side.
        let (lag, cluster) = tokio::join!(
            off_thread(self.lag.clone(), |r| r.read(Duration::from_secs(2))),
            off_thread(self.metadata.clone(), |r| r.read(Duration::from_secs(2))),
        );
        let at = Instant::now();
        let lag_health = lag.as_ref().map_or_else(BTreeMap::new, |parts| {
            let mut tracker = self
                .lag_tracker
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            lag::health(&mut tracker, at, std::time::SystemTime::now(), parts)
        });
        let lag = lag.map(|parts| parts.iter().map(|p| (p.partition, p.lag)).collect());
        Snapshot {
            at,
            components,
            gateway,
            producer,
            consumers,
            lag,
            lag_health,
            cluster,
            links,
            hosts,
        }
    }
}

/// What is cut on a stack on hosts, each pair once.
fn cuts(hosts: &[stack::hosts::HostStatus]) -> Vec<String> {
    let mut out: Vec<String> = hosts
        .iter()
        .filter(|h| h.link == "isolated")
        .map(|h| format!("{} isolated", h.name))
        .collect();
    for h in hosts {
        out.extend(
            h.cut_from
                .iter()
                .filter(|peer| h.name < **peer)
                .map(|peer| format!("{} × {peer}", h.name)),
        );
    }
    out
}

/// Each link of the stack's fault proxy with its faults, as text; empty when it does not
/// answer.
async fn link_faults(config: &StackConfig) -> BTreeMap<String, Vec<String>> {
    let Ok(control) = stack::faultproxy::Control::new(config) else {
        return BTreeMap::new();
    };
    control
        .links()
        .await
        .map(|links| {
            links
                .into_iter()
                .map(|l| (l.name, l.faults.iter().map(ToString::to_string).collect()))
                .collect()
        })
        .unwrap_or_default()
}

/// A blocking read of a Kafka client, on a blocking thread; `None` without a client or an answer.
async fn off_thread<R, T, E>(
    reader: Option<Arc<R>>,
    read: impl FnOnce(&R) -> Result<T, E> + Send + 'static,
) -> Option<T>
where
    R: Send + Sync + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    let reader = reader?;
    tokio::task::spawn_blocking(move || read(&reader))
        .await
        .ok()
        .and_then(Result::ok)
}

/// A breaker's state, by its gauge (0 closed, 1 half-open, 2 open).
fn breaker_state(v: f64) -> &'static str {
    match v as i64 {
        0 => "closed",
        1 => "half_open",
        _ => "open",
    }
}

/// What happened between two snapshots.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Signals {
    pub seconds: f64,
    /// Events per second accepted at the gateway, published to Kafka, stored in PostgreSQL.
    pub accepted_per_sec: f64,
    pub published_per_sec: f64,
    pub stored_per_sec: f64,
    /// Gateway latency of ingestion requests over the interval (ms).
    pub gateway_p50_ms: Option<f64>,
    pub gateway_p99_ms: Option<f64>,
    /// The gateway's ingestion latency histogram as it stands (cumulative: `le` in seconds,
    /// count), so a spectrum over any window is the difference of two readings.
    #[serde(skip)]
    pub gateway_buckets: Vec<(f64, f64)>,
    /// Gateway receive → row committed, over the interval (ms).
    pub end_to_end_p99_ms: Option<f64>,
    pub lag_total: Option<i64>,
    /// The oldest unconsumed record's age on the partition furthest behind (s); None when
    /// Kafka did not answer or some partition's age could not be read yet.
    pub lag_seconds: Option<f64>,
    /// The group's worst status over its partitions (ok, warn, stall, stop, err).
    pub consumer_status: Option<String>,
    /// Partition → (lag in seconds where known, status).
    pub partition_health: BTreeMap<i32, (Option<f64>, String)>,
    /// Brokers the cluster lists as alive; None when no broker answered.
    pub brokers_up: Option<f64>,
    /// Partitions of our topics with fewer in-sync copies than replicas.
    pub under_replicated: Option<f64>,
    /// Partitions with fewer in-sync copies than acks=all writes need.
    pub under_min_isr: Option<f64>,
    /// `topic/partition` → the node ids of its in-sync copies (empty when no broker answered).
    pub isr: BTreeMap<String, Vec<i32>>,
    /// Node id → `log-events` partitions it leads.
    pub partitions_led: BTreeMap<i32, usize>,
    pub lag_by_partition: BTreeMap<i32, i64>,
    /// Breaker name → closed / half_open / open.
    pub breakers: BTreeMap<String, String>,
    pub client_errors_per_sec: f64,
    pub server_errors_per_sec: f64,
    pub rate_limited_per_sec: f64,
    /// Requests the gateway turned away with 503 because too many were in flight.
    pub shed_per_sec: f64,
    /// Rate-limit decisions the gateways made in memory (Redis not asked): the shared limit
    /// was per replica for them.
    pub rate_limit_fallback_per_sec: f64,
    /// 1 while the gateway limits from memory because Redis is unreachable.
    pub rate_limit_local: Option<f64>,
    pub dead_lettered_total: f64,
    pub spool_records: f64,
    /// Consumer instances whose partitions are paused (their database is not taking rows).
    pub consumers_paused: f64,
    /// Component name → up / starting / paused / down.
    pub components: BTreeMap<String, String>,
    /// Component name → (pid, RSS in MiB) where running.
    pub processes: BTreeMap<String, (u32, Option<f64>)>,
    /// Link name → the network faults on it, on a stack with the fault proxy.
    pub links: BTreeMap<String, Vec<String>>,
    /// On a stack on hosts, what is cut: `kafka-2 isolated`, `kafka-2 × kafka-3`.
    pub cuts: Vec<String>,
}

/// Per second growth of a counter read `b` then `a`. A restarted service starts its counters
/// again: count from zero then.
fn per_sec(b: f64, a: f64, secs: f64) -> f64 {
    (if a >= b { a - b } else { a }) / secs.max(1e-9)
}

fn rate(before: &Scrape, after: &Scrape, name: &str, labels: &[(&str, &str)], secs: f64) -> f64 {
    per_sec(
        before.sum(name, labels).unwrap_or(0.0),
        after.sum(name, labels).unwrap_or(0.0),
        secs,
    )
}

fn status_class(scrape: &Scrape, class: char) -> f64 {
    scrape
        .matching(metric::HTTP_REQUESTS, &[])
        .filter(|s| {
            s.labels
                .get("status")
                .is_some_and(|st| st.starts_with(class))
        })
        .map(|s| s.value)
        .sum()
}

impl Signals {
    pub fn between(before: &Snapshot, after: &Snapshot) -> Signals {
        let secs = after.at.duration_since(before.at).as_secs_f64();
        let ms = |v: Option<f64>| v.map(|s| s * 1000.0);
        let gw_buckets =
            |s: &Scrape| s.buckets(metric::HTTP_REQUEST_DURATION, &[("method", "POST")]);
        let e2e = |s: &Scrape| s.buckets(metric::CONSUMER_END_TO_END_LATENCY, &[]);
        let class_rate = |c: char| {
            per_sec(
                status_class(&before.gateway, c),
                status_class(&after.gateway, c),
                secs,
            )
        };
        let mut breakers = BTreeMap::new();
        for scrape in [&after.gateway, &after.producer, &after.consumers] {
            for s in scrape.matching(metric::BREAKER_STATE, &[]) {
                if let Some(name) = s.labels.get("name") {
                    let worst = breakers.get(name).copied().unwrap_or(0.0f64).max(s.value);
                    breakers.insert(name.clone(), worst);
                }
            }
        }
        let lag_by_partition = after.lag.clone().unwrap_or_default();
        Signals {
            seconds: secs,
            accepted_per_sec: rate(
                &before.gateway,
                &after.gateway,
                metric::GATEWAY_EVENTS_ACCEPTED,
                &[],
                secs,
            ),
            published_per_sec: rate(
                &before.producer,
                &after.producer,
                metric::PRODUCER_EVENTS_PUBLISHED,
                &[],
                secs,
            ),
            stored_per_sec: rate(
                &before.consumers,
                &after.consumers,
                metric::CONSUMER_EVENTS_STORED,
                &[],
                secs,
            ),
            gateway_p50_ms: ms(quantile_between(
                &gw_buckets(&before.gateway),
                &gw_buckets(&after.gateway),
                0.5,
            )),
            gateway_p99_ms: ms(quantile_between(
                &gw_buckets(&before.gateway),
                &gw_buckets(&after.gateway),
                0.99,
            )),
            gateway_buckets: gw_buckets(&after.gateway),
            end_to_end_p99_ms: ms(quantile_between(
                &e2e(&before.consumers),
                &e2e(&after.consumers),
                0.99,
            )),
            lag_total: after.lag.as_ref().map(|l| l.values().sum()),
            // Unknown while any partition behind has no age read yet: a maximum of the
            // others would understate it.
            lag_seconds: after
                .lag_health
                .values()
                .map(|h| h.seconds)
                .try_fold(None, |worst: Option<f64>, s| {
                    s.map(|s| Some(worst.map_or(s, |w| w.max(s))))
                })
                .flatten(),
            consumer_status: after
                .lag_health
                .values()
                .map(|h| h.status)
                .max()
                .map(|s| s.word().to_owned()),
            partition_health: after
                .lag_health
                .iter()
                .map(|(p, h)| (*p, (h.seconds, h.status.word().to_owned())))
                .collect(),
            brokers_up: after.cluster.as_ref().map(|c| c.brokers.len() as f64),
            under_replicated: after.cluster.as_ref().map(|c| c.under_replicated() as f64),
            under_min_isr: after.cluster.as_ref().map(|c| c.under_min_isr() as f64),
            isr: after
                .cluster
                .iter()
                .flat_map(|c| &c.partitions)
                .map(|p| (format!("{}/{}", p.topic, p.partition), p.isr.clone()))
                .collect(),
            partitions_led: after
                .cluster
                .iter()
                .flat_map(|c| &c.partitions)
                .filter(|p| p.topic == logctl_contracts::topics::EVENTS)
                .filter_map(|p| p.leader)
                .fold(BTreeMap::new(), |mut led, node| {
                    *led.entry(node).or_insert(0) += 1;
                    led
                }),
            lag_by_partition,
            breakers: breakers
                .into_iter()
                .map(|(k, v)| (k, breaker_state(v).to_owned()))
                .collect(),
            client_errors_per_sec: class_rate('4'),
            server_errors_per_sec: class_rate('5'),
            rate_limited_per_sec: rate(
                &before.gateway,
                &after.gateway,
                metric::RATE_LIMIT_DECISIONS,
                &[("decision", "limited")],
                secs,
            ),
            shed_per_sec: rate(
                &before.gateway,
                &after.gateway,
                metric::GATEWAY_SHED,
                &[],
                secs,
            ),
            rate_limit_fallback_per_sec: rate(
                &before.gateway,
                &after.gateway,
                metric::RATE_LIMIT_FALLBACK,
                &[],
                secs,
            ),
            rate_limit_local: after.gateway.sum(metric::RATE_LIMIT_LOCAL, &[]),
            dead_lettered_total: after.dead_lettered(),
            spool_records: after
                .producer
                .sum(metric::PRODUCER_SPOOL_RECORDS, &[])
                .unwrap_or(0.0),
            consumers_paused: after
                .consumers
                .sum(metric::CONSUMER_PAUSED, &[])
                .unwrap_or(0.0),
            components: after
                .components
                .iter()
                .map(|c| (c.name.clone(), c.status.to_owned()))
                .collect(),
            processes: after
                .components
                .iter()
                .filter_map(|c| Some((c.name.clone(), (c.pid?, c.rss_mib))))
                .collect(),
            links: after.links.clone(),
            cuts: cuts(&after.hosts),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_name_each_isolated_host_and_each_pair_once() {
        let host = |name: &str, link: &'static str, cut: &[&str]| stack::hosts::HostStatus {
            name: name.into(),
            namespace: format!("lc9-{name}"),
            address: std::net::Ipv4Addr::new(198, 18, 9, 10),
            link,
            cut_from: cut.iter().map(|c| c.to_string()).collect(),
        };
        let hosts = [
            host("kafka", "isolated", &[]),
            host("kafka-2", "up", &["kafka-3"]),
            host("kafka-3", "up", &["kafka-2"]),
            host("redis", "up", &[]),
        ];
        assert_eq!(cuts(&hosts), ["kafka isolated", "kafka-2 × kafka-3"]);
        assert!(cuts(&[]).is_empty());
    }

    fn snap(
        at: Instant,
        gateway: &str,
        consumers: &str,
        lag: Option<BTreeMap<i32, i64>>,
    ) -> Snapshot {
        Snapshot {
            at,
            components: Vec::new(),
            gateway: Scrape::parse(gateway),
            producer: Scrape::default(),
            consumers: Scrape::parse(consumers),
            lag,
            lag_health: BTreeMap::new(),
            cluster: None,
            links: BTreeMap::new(),
            hosts: Vec::new(),
        }
    }

    #[test]
    fn rates_states_and_lag_come_from_two_readings() {
        let t0 = Instant::now();
        let before = snap(
            t0,
            "logctl_gateway_events_accepted_total 100\nlogctl_http_requests_total{status=\"202\"} 100\n",
            "logctl_consumer_events_stored_total 50\nlogctl_breaker_state{name=\"postgres\"} 0\n",
            None,
        );
        let after = snap(
            t0 + Duration::from_secs(2),
            "logctl_gateway_events_accepted_total 300\nlogctl_http_requests_total{status=\"202\"} 300\nlogctl_http_requests_total{status=\"503\"} 4\n",
            "logctl_consumer_events_stored_total 60\nlogctl_breaker_state{name=\"postgres\"} 2\n",
            Some(BTreeMap::from([(0, 10), (1, 30)])),
        );
        let s = Signals::between(&before, &after);
        assert!((s.accepted_per_sec - 100.0).abs() < 1e-6);
        assert!((s.stored_per_sec - 5.0).abs() < 1e-6);
        assert!((s.server_errors_per_sec - 2.0).abs() < 1e-6);
        assert_eq!(s.breakers["postgres"], "open");
        assert_eq!(s.lag_total, Some(40));
        assert_eq!(s.gateway_p99_ms, None, "no latency observed");
    }

    #[test]
    fn a_restarted_service_counts_from_zero() {
        let t0 = Instant::now();
        let before = snap(t0, "logctl_gateway_events_accepted_total 1000\n", "", None);
        let after = snap(
            t0 + Duration::from_secs(1),
            "logctl_gateway_events_accepted_total 30\n",
            "",
            None,
        );
        assert!((Signals::between(&before, &after).accepted_per_sec - 30.0).abs() < 1e-6);
    }
}
