//! Every metric name the services export, named once: the services record under these, and
//! the console's collector, the tests, the alert rules and the dashboard read them (the last
//! two are YAML and JSON; `console/tests/deploy_files.rs` checks they name only metrics
//! listed here).
//!
//! A series that appears only on first use is invisible to an alert or a panel until then, so
//! each service registers its counters and gauges at start, at zero, with every label value
//! known in advance ([`register`]).

use crate::dead_letter;

// Shared by every service.
pub const HTTP_REQUESTS: &str = "logctl_http_requests_total";
pub const HTTP_REQUEST_DURATION: &str = "logctl_http_request_duration_seconds";
pub const HTTP_REQUESTS_IN_FLIGHT: &str = "logctl_http_requests_in_flight";
pub const HTTP_ERRORS: &str = "logctl_http_errors_total";
pub const AUTH_FAILURES: &str = "logctl_auth_failures_total";
pub const BREAKER_STATE: &str = "logctl_breaker_state";
pub const BREAKER_TRANSITIONS: &str = "logctl_breaker_transitions_total";
pub const BREAKER_REJECTED: &str = "logctl_breaker_rejected_total";
pub const OTLP_SPANS_EXPORTED: &str = "logctl_otlp_spans_exported_total";
pub const OTLP_SPANS_DROPPED: &str = "logctl_otlp_spans_dropped_total";

// Gateway.
pub const GATEWAY_EVENTS_ACCEPTED: &str = "logctl_gateway_events_accepted_total";
pub const GATEWAY_SHED: &str = "logctl_gateway_shed_total";
pub const GATEWAY_PUBLISH_COALESCED_SIZE: &str = "logctl_gateway_publish_coalesced_size";
pub const RATE_LIMIT_DECISIONS: &str = "logctl_rate_limit_decisions_total";
pub const RATE_LIMIT_LOCAL: &str = "logctl_rate_limit_local";
/// One round trip to Redis for a lease of tokens (or to give unspent ones back).
pub const RATE_LIMIT_CHECK: &str = "logctl_rate_limit_check_seconds";
/// Decisions made in memory because Redis could not be asked: the shared limit was not kept.
pub const RATE_LIMIT_FALLBACK: &str = "logctl_gateway_rate_limit_fallback_total";

// Producer.
pub const PRODUCER_EVENTS_PUBLISHED: &str = "logctl_producer_events_published_total";
pub const PRODUCER_EVENTS_FAILED: &str = "logctl_producer_events_failed_total";
pub const PRODUCER_PUBLISH_DURATION: &str = "logctl_producer_publish_duration_seconds";
pub const PRODUCER_KAFKA_IN_FLIGHT: &str = "logctl_producer_kafka_in_flight";
pub const PRODUCER_SPOOLED: &str = "logctl_producer_spooled_total";
pub const PRODUCER_SPOOL_REPLAYED: &str = "logctl_producer_spool_replayed_total";
pub const PRODUCER_SPOOL_CORRUPT: &str = "logctl_producer_spool_corrupt_total";
pub const PRODUCER_SPOOL_UNDECODABLE: &str = "logctl_producer_spool_undecodable_total";
pub const PRODUCER_SPOOL_RECORDS: &str = "logctl_producer_spool_records";
pub const PRODUCER_SPOOL_BYTES: &str = "logctl_producer_spool_bytes";
pub const PRODUCER_SPOOL_MAX_BYTES: &str = "logctl_producer_spool_max_bytes";

// Consumer: the write path.
pub const CONSUMER_EVENTS_STORED: &str = "logctl_consumer_events_stored_total";
pub const CONSUMER_DUPLICATES_SKIPPED: &str = "logctl_consumer_duplicates_skipped_total";
pub const CONSUMER_DEAD_LETTERED: &str = "logctl_consumer_dead_lettered_total";
pub const CONSUMER_INSERT_RETRIES: &str = "logctl_consumer_insert_retries_total";
pub const CONSUMER_INSERT_DURATION: &str = "logctl_consumer_insert_duration_seconds";
pub const CONSUMER_BATCH_SIZE: &str = "logctl_consumer_batch_size";
pub const CONSUMER_END_TO_END_LATENCY: &str = "logctl_consumer_end_to_end_latency_seconds";
pub const CONSUMER_LAG: &str = "logctl_consumer_lag";
/// Age of the oldest record the group has not consumed, per partition (0 with no lag).
pub const CONSUMER_LAG_SECONDS: &str = "logctl_consumer_lag_seconds";
/// The group's status per partition by Burrow's rules: 0 OK, 1 WARN, 2 STALL, 3 STOP, 4 ERR.
pub const CONSUMER_STATUS: &str = "logctl_consumer_status";
pub const CONSUMER_PAUSED: &str = "logctl_consumer_paused";
pub const CONSUMER_REBALANCES: &str = "logctl_consumer_rebalances_total";
pub const CONSUMER_CLIENT_RESTARTS: &str = "logctl_consumer_client_restarts_total";
pub const CONSUMER_DB_POOL_IN_USE: &str = "logctl_consumer_db_pool_in_use";
pub const CONSUMER_DB_POOL_MAX: &str = "logctl_consumer_db_pool_max";

// Consumer: storage and its retention (server/contracts/src/schema/partitions.rs).
pub const STORAGE_PARTITIONS: &str = "logctl_storage_partitions";
pub const STORAGE_TABLE_BYTES: &str = "logctl_storage_table_bytes";
pub const STORAGE_OLDEST_PARTITION_AGE: &str = "logctl_storage_oldest_partition_age_seconds";
pub const STORAGE_DEFAULT_PARTITION_ROWS: &str = "logctl_storage_default_partition_rows";
pub const STORAGE_RETENTION: &str = "logctl_storage_retention_seconds";
pub const STORAGE_PARTITION_INTERVAL: &str = "logctl_storage_partition_interval_seconds";
pub const STORAGE_BUDGET: &str = "logctl_storage_budget_bytes";
pub const STORAGE_PARTITIONS_CREATED: &str = "logctl_storage_partitions_created_total";
pub const STORAGE_PARTITIONS_DROPPED: &str = "logctl_storage_partitions_dropped_total";
pub const STORAGE_MAINTENANCE_FAILURES: &str = "logctl_storage_maintenance_failures_total";

// Consumer: the read path.
pub const QUERY_DURATION: &str = "logctl_query_duration_seconds";
pub const CACHE_REQUESTS: &str = "logctl_cache_requests_total";
pub const CACHE_INVALIDATIONS_DEFERRED: &str = "logctl_cache_invalidations_deferred_total";

/// Which process registers its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Gateway,
    Producer,
    Consumer,
}

/// The read cache's kinds and results: the labels of [`CACHE_REQUESTS`].
pub const CACHE_KINDS: [&str; 3] = ["event", "page", "stats"];
pub const CACHE_RESULTS: [&str; 3] = ["hit", "miss", "error"];
/// The labels of [`RATE_LIMIT_DECISIONS`].
pub const RATE_LIMIT_OUTCOMES: [&str; 2] = ["allowed", "limited"];
pub const RATE_LIMIT_BACKENDS: [&str; 2] = ["redis", "local"];

/// Every counter and gauge of `service` at zero, so each series exists from the first scrape.
/// Call it once the recorder is installed and before serving; adding zero never changes a
/// value already recorded.
pub fn register(service: Service) {
    let counters: &[&'static str] = match service {
        Service::Gateway => &[GATEWAY_EVENTS_ACCEPTED, GATEWAY_SHED, RATE_LIMIT_FALLBACK],
        Service::Producer => &[
            PRODUCER_EVENTS_PUBLISHED,
            PRODUCER_EVENTS_FAILED,
            PRODUCER_SPOOLED,
            PRODUCER_SPOOL_REPLAYED,
            PRODUCER_SPOOL_CORRUPT,
            PRODUCER_SPOOL_UNDECODABLE,
        ],
        Service::Consumer => &[
            CONSUMER_EVENTS_STORED,
            CONSUMER_DUPLICATES_SKIPPED,
            CONSUMER_INSERT_RETRIES,
            CONSUMER_REBALANCES,
            CONSUMER_CLIENT_RESTARTS,
            CACHE_INVALIDATIONS_DEFERRED,
            STORAGE_PARTITIONS_CREATED,
            STORAGE_PARTITIONS_DROPPED,
            STORAGE_MAINTENANCE_FAILURES,
        ],
    };
    for name in counters
        .iter()
        .chain(&[OTLP_SPANS_EXPORTED, OTLP_SPANS_DROPPED])
    {
        metrics::counter!(*name).increment(0);
    }
    metrics::gauge!(HTTP_REQUESTS_IN_FLIGHT).increment(0.0);
    match service {
        Service::Gateway => {
            metrics::gauge!(RATE_LIMIT_LOCAL).increment(0.0);
            for decision in RATE_LIMIT_OUTCOMES {
                for backend in RATE_LIMIT_BACKENDS {
                    metrics::counter!(RATE_LIMIT_DECISIONS, "decision" => decision, "backend" => backend)
                        .increment(0);
                }
            }
        }
        Service::Producer => {
            for gauge in [
                PRODUCER_KAFKA_IN_FLIGHT,
                PRODUCER_SPOOL_RECORDS,
                PRODUCER_SPOOL_BYTES,
                PRODUCER_SPOOL_MAX_BYTES,
            ] {
                metrics::gauge!(gauge).increment(0.0);
            }
        }
        Service::Consumer => {
            for gauge in [
                CONSUMER_PAUSED,
                CONSUMER_DB_POOL_IN_USE,
                CONSUMER_DB_POOL_MAX,
                STORAGE_PARTITIONS,
                STORAGE_TABLE_BYTES,
                STORAGE_OLDEST_PARTITION_AGE,
                STORAGE_DEFAULT_PARTITION_ROWS,
                STORAGE_RETENTION,
                STORAGE_PARTITION_INTERVAL,
                STORAGE_BUDGET,
            ] {
                metrics::gauge!(gauge).increment(0.0);
            }
            for kind in dead_letter::Kind::ALL {
                metrics::counter!(CONSUMER_DEAD_LETTERED, "kind" => kind.as_str()).increment(0);
            }
            for cache in CACHE_KINDS {
                for result in CACHE_RESULTS {
                    metrics::counter!(CACHE_REQUESTS, "cache" => cache, "result" => result)
                        .increment(0);
                }
            }
        }
    }
}

/// Every name above, for checks that a dashboard or rule names only real metrics.
pub const ALL: &[&str] = &[
    HTTP_REQUESTS,
    HTTP_REQUEST_DURATION,
    HTTP_REQUESTS_IN_FLIGHT,
    HTTP_ERRORS,
    AUTH_FAILURES,
    BREAKER_STATE,
    BREAKER_TRANSITIONS,
    BREAKER_REJECTED,
    OTLP_SPANS_EXPORTED,
    OTLP_SPANS_DROPPED,
    GATEWAY_EVENTS_ACCEPTED,
    GATEWAY_SHED,
    GATEWAY_PUBLISH_COALESCED_SIZE,
    RATE_LIMIT_DECISIONS,
    RATE_LIMIT_LOCAL,
    RATE_LIMIT_CHECK,
    RATE_LIMIT_FALLBACK,
    PRODUCER_EVENTS_PUBLISHED,
    PRODUCER_EVENTS_FAILED,
    PRODUCER_PUBLISH_DURATION,
    PRODUCER_KAFKA_IN_FLIGHT,
    PRODUCER_SPOOLED,
    PRODUCER_SPOOL_REPLAYED,
    PRODUCER_SPOOL_CORRUPT,
    PRODUCER_SPOOL_UNDECODABLE,
    PRODUCER_SPOOL_RECORDS,
    PRODUCER_SPOOL_BYTES,
    PRODUCER_SPOOL_MAX_BYTES,
    CONSUMER_EVENTS_STORED,
    CONSUMER_DUPLICATES_SKIPPED,
    CONSUMER_DEAD_LETTERED,
    CONSUMER_INSERT_RETRIES,
    CONSUMER_INSERT_DURATION,
    CONSUMER_BATCH_SIZE,
    CONSUMER_END_TO_END_LATENCY,
    CONSUMER_LAG,
    CONSUMER_LAG_SECONDS,
    CONSUMER_STATUS,
    CONSUMER_PAUSED,
    CONSUMER_REBALANCES,
    CONSUMER_CLIENT_RESTARTS,
    CONSUMER_DB_POOL_IN_USE,
    CONSUMER_DB_POOL_MAX,
    STORAGE_PARTITIONS,
    STORAGE_TABLE_BYTES,
    STORAGE_OLDEST_PARTITION_AGE,
    STORAGE_DEFAULT_PARTITION_ROWS,
    STORAGE_RETENTION,
    STORAGE_PARTITION_INTERVAL,
    STORAGE_BUDGET,
    STORAGE_PARTITIONS_CREATED,
    STORAGE_PARTITIONS_DROPPED,
    STORAGE_MAINTENANCE_FAILURES,
    QUERY_DURATION,
    CACHE_REQUESTS,
    CACHE_INVALIDATIONS_DEFERRED,
];
