//! Storage against a real stack: the events table range-partitioned by time with partitions
//! ahead of today, reads that only touch the partitions `since`/`until` cover (read from
//! PostgreSQL's plan), a client's re-posted ids stored once within the dedup window, the
//! upgrade from the unpartitioned schema keeping every row, and retention (by a maintenance
//! pass and by `logctl storage prune`) dropping whole partitions.

mod support;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use logctl_contracts::read_api::LogQuery;
use logctl_contracts::schema::partitions::{self, Pass, Policy, RetentionSettings};
use logctl_contracts::OrganizationId;
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use support::{eventually, TestStack};
use uuid::Uuid;

fn unique(name: &str) -> String {
    format!("{name}-{}", &Uuid::new_v4().simple().to_string()[..8])
}

async fn db(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .expect("connect to the stack's PostgreSQL")
}

/// Midnight UTC `days` from today.
fn day(days: i64) -> DateTime<Utc> {
    let today = Utc::now()
        .date_naive()
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    today + TimeDelta::days(days)
}

async fn stored(pool: &PgPool, source: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM log_events WHERE source = $1")
        .bind(source)
        .fetch_one(pool)
        .await
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_ahead_and_reads_that_prune_them() {
    let stack = TestStack::shared();
    let pool = db(&stack.database_url()).await;
    let strategy: String = sqlx::query_scalar(
        "SELECT partstrat::text FROM pg_partitioned_table WHERE partrelid = 'log_events'::regclass",
    )
    .fetch_one(&pool)
    .await
    .expect("log_events is a partitioned table");
    assert_eq!(strategy, "r", "range-partitioned");

    let out = stack.logctl(&["storage", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("storage --json");
    let parts = report["partitions"].as_array().expect("partitions");
    assert!(
        parts
            .iter()
            .any(|p| p["range"].is_null() && p["name"] == "log_events_default"),
        "a default partition: {report}"
    );
    let tomorrow = day(1);
    let ahead = parts
        .iter()
        .filter_map(|p| p["range"]["from"].as_str())
        .filter_map(|f| DateTime::parse_from_rfc3339(f).ok())
        .filter(|f| *f >= tomorrow)
        .count();
    assert!(ahead >= 3, "three partitions ahead of today: {report}");
    assert!(
        report["kafka"]["Ok"][0]["retention_ms"].as_i64().is_some(),
        "{report}"
    );

    // Events yesterday and today; a page spans both partitions in order.
    let org = unique("parts");
    let source = unique("src");
    let events: Vec<Value> = [
        day(-1) + TimeDelta::hours(12),
        day(0) + TimeDelta::minutes(5),
    ]
    .iter()
    .enumerate()
    .map(|(i, t)| {
        json!({"organizationId": org, "level": "INFO", "message": format!("m{i}"),
                   "source": source, "timestamp": t.to_rfc3339()})
    })
    .collect();
    let client = reqwest::Client::new();
    for e in &events {
        stack.post_event(&client, e).await;
    }
    eventually("both events stored", Duration::from_secs(60), || {
        let pool = pool.clone();
        let source = source.clone();
        async move { (stored(&pool, &source).await == 2).then_some(()) }
    })
    .await;
    // What the bench's capacity model prices disk by: the rows live in the partitions.
    let footprint = logctl_contracts::schema::footprint(&pool)
        .await
        .expect("footprint");
    assert!(
        footprint.table_bytes > 0.0,
        "the table's size counts its partitions: {footprint:?}"
    );
    let page: Value = client
        .get(format!("{}/api/logs?source={source}", stack.gateway()))
        .bearer_auth(stack.token(&org))
        .send()
        .await
        .expect("read")
        .json()
        .await
        .expect("page");
    let messages: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert_eq!(messages, ["m1", "m0"], "newest first across partitions");

    // The consumer's own page statement, as PostgreSQL plans it.
    let storage = logctl_consumer::Storage::connect_lazy(&stack.database_url(), 1).expect("pool");
    let org_id = OrganizationId::parse(org.clone()).expect("org");
    let today = partitions::name(day(0));
    let yesterday = partitions::name(day(-1));
    let within_today = LogQuery {
        since: Some(day(0)),
        until: Some(day(0) + TimeDelta::hours(1)),
        ..LogQuery::default()
    };
    let plan = storage
        .explain_page(&org_id, &within_today)
        .await
        .expect("explain");
    assert!(plan.contains(&today), "today's partition is read:\n{plan}");
    assert!(
        !plan.contains(&yesterday) && !plan.contains("log_events_default"),
        "no other partition is read:\n{plan}"
    );
    let since_yesterday = LogQuery {
        since: Some(day(-1)),
        ..LogQuery::default()
    };
    let plan = storage
        .explain_page(&org_id, &since_yesterday)
        .await
        .expect("explain");
    assert!(plan.contains(&yesterday) && plan.contains(&today), "{plan}");
    assert!(
        !plan.contains(&partitions::name(day(-2))),
        "partitions before `since` are pruned:\n{plan}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reposting_an_id_is_stored_once_within_the_window() {
    let stack = TestStack::shared();
    let pool = db(&stack.database_url()).await;
    let client = reqwest::Client::new();
    let org = unique("repost");
    let source = unique("src");
    let event = |id: Uuid, timestamp: Option<DateTime<Utc>>| {
        let mut e = json!({"organizationId": org, "level": "WARN", "message": "again",
                           "source": source, "id": id});
        if let Some(t) = timestamp {
            e["timestamp"] = json!(t.to_rfc3339());
        }
        e
    };
    // No timestamp: each post gets the moment it was received, a second apart.
    let untimed = Uuid::new_v4();
    stack.post_event(&client, &event(untimed, None)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stack.post_event(&client, &event(untimed, None)).await;
    // The same timestamp: the same partition and the same key.
    let timed = Uuid::new_v4();
    let at = day(0) + TimeDelta::minutes(1);
    stack.post_event(&client, &event(timed, Some(at))).await;
    stack.post_event(&client, &event(timed, Some(at))).await;
    // Timestamps two days apart: outside the one-day window, two events by design.
    let apart = Uuid::new_v4();
    stack
        .post_event(&client, &event(apart, Some(day(-2))))
        .await;
    stack.post_event(&client, &event(apart, Some(day(0)))).await;

    eventually("the copies handled", Duration::from_secs(60), || {
        let pool = pool.clone();
        let source = source.clone();
        async move { (stored(&pool, &source).await >= 4).then_some(()) }
    })
    .await;
    // Let any late copy arrive before counting per id.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let count = |id: Uuid| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM log_events WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .expect("count")
        }
    };
    assert_eq!(
        count(untimed).await,
        1,
        "re-posted a second later: stored once"
    );
    assert_eq!(
        count(timed).await,
        1,
        "re-posted with its timestamp: stored once"
    );
    assert_eq!(count(apart).await, 2, "two days apart: beyond the window");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_split_across_connections_stores_each_event_once() {
    let stack = TestStack::shared();
    let pool = db(&stack.database_url()).await;
    let storage = logctl_consumer::Storage::connect_lazy(&stack.database_url(), 4)
        .expect("pool")
        .with_parts(3);
    let org = OrganizationId::parse(unique("parts")).expect("org");
    let source = unique("src");
    let now = Utc::now();
    let row = |i: i64, id: Uuid, at: DateTime<Utc>| new_row(&org, &source, i, id, at, now);
    let ids: Vec<Uuid> = (0..3_000).map(|_| Uuid::now_v7()).collect();
    // 3,000 events, then copies of the first 100 (another event time within the window) at the
    // end of the batch, where another part than their first copies' would take them.
    let mut batch: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| row(i as i64, *id, now))
        .collect();
    batch.extend(
        ids[..100]
            .iter()
            .enumerate()
            .map(|(i, id)| row(3_000 + i as i64, *id, now + TimeDelta::seconds(1))),
    );
    assert_eq!(storage.insert_batch(&batch).await.expect("insert"), 3_000);
    assert_eq!(stored(&pool, &source).await, 3_000);
    // The whole batch again, as after a failed part or a crash before the commit: no new row.
    assert_eq!(storage.insert_batch(&batch).await.expect("replay"), 0);
    assert_eq!(stored(&pool, &source).await, 3_000);
}

/// The insert skips what its lookup finds stored; a copy committed after the lookup (another
/// consumer storing the same records around a rebalance) meets the primary key, which aborts
/// the `COPY`, and the part is stored again with `ON CONFLICT`: no error, no second row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_committed_while_a_batch_is_inserted_is_skipped_not_an_error() {
    let stack = TestStack::shared();
    let pool = db(&stack.database_url()).await;
    let storage = logctl_consumer::Storage::connect_lazy(&stack.database_url(), 2).expect("pool");
    let org = OrganizationId::parse(unique("race")).expect("org");
    let source = unique("src");
    let now = Utc::now();
    let row = |i: i64, id: Uuid| new_row(&org, &source, i, id, now, now);
    let batch: Vec<_> = (0..10).map(|i| row(i, Uuid::now_v7())).collect();
    // The other consumer: the batch's fourth event, inserted and not committed yet.
    let mut other = pool.begin().await.expect("begin");
    sqlx::query(
        "INSERT INTO log_events (id, organization_id, level, message, source, event_time, \
                                 received_at, kafka_partition, kafka_offset) \
         VALUES ($1, $2, 'INFO', 'theirs', $3, $4, $4, 0, 3)",
    )
    .bind(batch[3].event.id)
    .bind(org.as_str())
    .bind(&source)
    .bind(now)
    .execute(&mut *other)
    .await
    .expect("the other consumer's insert");
    let ours = tokio::spawn({
        let (storage, batch) = (storage.clone(), batch.clone());
        async move { storage.insert_batch(&batch).await }
    });
    // Ours has looked (and seen nothing) and now waits on that key; then theirs commits.
    eventually(
        "our insert waiting on theirs",
        Duration::from_secs(30),
        || async {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
             AND query LIKE 'COPY log_events%'",
            )
            .fetch_one(&pool)
            .await
            .expect("pg_stat_activity");
            (waiting > 0).then_some(())
        },
    )
    .await;
    other.commit().await.expect("commit");
    let inserted = ours
        .await
        .expect("task")
        .expect("a racing copy is not an error");
    assert_eq!(inserted, 9, "the other consumer's copy was skipped");
    assert_eq!(stored(&pool, &source).await, 10);
    let theirs: String = sqlx::query_scalar("SELECT message FROM log_events WHERE id = $1")
        .bind(batch[3].event.id)
        .fetch_one(&pool)
        .await
        .expect("one row for the raced id");
    assert_eq!(theirs, "theirs");
}

/// A row as the consumer inserts it: event `offset` of partition 0, message `m{offset}`.
fn new_row(
    org: &OrganizationId,
    source: &str,
    offset: i64,
    id: Uuid,
    at: DateTime<Utc>,
    received_at: DateTime<Utc>,
) -> logctl_consumer::storage::NewRow {
    logctl_consumer::storage::NewRow {
        event: logctl_contracts::LogEvent {
            id,
            organization_id: org.clone(),
            level: "INFO".parse().expect("level"),
            message: format!("m{offset}"),
            source: source.to_owned(),
            timestamp: at,
            received_at,
        },
        trace_id: None,
        traceparent: None,
        partition: 0,
        offset,
    }
}

/// Runs a maintenance pass, waiting while a consumer's holds the lock.
async fn maintain(pool: &PgPool, policy: &Policy) -> Pass {
    eventually("the maintenance lock", Duration::from_secs(60), || async {
        partitions::maintain(pool, policy, Utc::now())
            .await
            .expect("maintenance pass")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_keeps_every_row_and_retention_drops_whole_partitions() {
    let stack = TestStack::shared();
    // A schema of its own in the stack's database stands for a database made before the
    // partitioning migration.
    let schema = unique("upgrade").replace('-', "_");
    let admin = db(&stack.database_url()).await;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .expect("schema");
    let url = format!(
        "{}?options=-c%20search_path%3D{schema}",
        stack.database_url()
    );
    let pool = db(&url).await;

    // The schema as it was: the first migration alone, from a folder holding only it.
    let migrations =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/contracts/migrations");
    let first = std::fs::read_dir(&migrations)
        .expect("migrations")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .min()
        .expect("a first migration");
    let old = support::scratch_dir(&unique("old-migrations"));
    std::fs::copy(&first, old.join(first.file_name().expect("name"))).expect("copy");
    sqlx::migrate::Migrator::new(old.as_path())
        .await
        .expect("the old migrator")
        .run(&pool)
        .await
        .expect("the old schema");
    let rows = |days: i64, n: i64, tag: &str| {
        format!(
            "INSERT INTO log_events (id, organization_id, level, message, source, event_time, \
                                     received_at, kafka_partition, kafka_offset) \
             SELECT gen_random_uuid(), 'org', 'INFO', 'm', '{tag}', \
                    date_trunc('day', now(), 'UTC') + interval '{days} days' + i * interval '1 second', \
                    now(), 0, i FROM generate_series(1, {n}) i"
        )
    };
    for (days, n, tag) in [
        (0, 100, "today"),
        (-3, 100, "three-days-ago"),
        (-10, 50, "ten-days-ago"),
        (20, 10, "far-ahead"),
    ] {
        sqlx::query(&rows(days, n, tag))
            .execute(&pool)
            .await
            .expect("old rows");
    }
    let ids_before: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM log_events ORDER BY id")
        .fetch_all(&pool)
        .await
        .expect("ids");
    assert_eq!(ids_before.len(), 260);

    // The upgrade: every row kept, now in a range-partitioned table.
    logctl_contracts::schema::migrate(&pool)
        .await
        .expect("upgrade");
    let ids_after: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM log_events ORDER BY id")
        .fetch_all(&pool)
        .await
        .expect("ids");
    assert_eq!(ids_after, ids_before, "the upgrade keeps every row");
    let in_default: i64 = sqlx::query_scalar("SELECT count(*) FROM log_events_default")
        .fetch_one(&pool)
        .await
        .expect("default");
    assert_eq!(
        in_default, 60,
        "rows outside the last week and the next days wait in the default partition"
    );

    // A pass with the default policy: partitions ahead, the week-old rows gone with the
    // default partition's expired part, the far-ahead ones kept.
    let pass = maintain(&pool, &Policy::default()).await;
    assert_eq!(pass.expired_from_default, 50, "{pass:?}");
    assert!(pass.created.contains(&partitions::name(day(3))), "{pass:?}");
    // Ahead far enough to cover the rows 20 days out: they move into their new partition.
    let far = Policy::try_from(&RetentionSettings {
        partitions_ahead: 25,
        ..RetentionSettings::default()
    })
    .expect("policy");
    let pass = maintain(&pool, &far).await;
    assert_eq!(pass.moved, 10, "{pass:?}");
    let in_default: i64 = sqlx::query_scalar("SELECT count(*) FROM log_events_default")
        .fetch_one(&pool)
        .await
        .expect("default");
    assert_eq!(in_default, 0);

    // `logctl storage` lists them with exact counts; `prune` drops the three-day-old one.
    let out = stack.logctl(&["storage", "--json", "--exact", "--database-url", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["rows"], 210, "{report}");
    let old_day = partitions::name(day(-3));
    let listed = report["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .find(|p| p["name"] == old_day.as_str())
        .cloned()
        .expect("the three-day-old partition is listed");
    assert_eq!(listed["rows"], 100);
    assert!(listed["bytes"].as_i64().unwrap_or(0) > 0);

    let out = stack.logctl(&[
        "storage",
        "prune",
        "--older-than",
        "2d",
        "--json",
        "--database-url",
        &url,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pruned: Value = serde_json::from_slice(&out.stdout).expect("json");
    let dropped: Vec<&str> = pruned["partitions"]
        .as_array()
        .expect("dropped")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(dropped.contains(&old_day.as_str()), "{pruned}");
    let left: Vec<(String, i64)> =
        sqlx::query_as("SELECT source, count(*) FROM log_events GROUP BY source ORDER BY source")
            .fetch_all(&pool)
            .await
            .expect("left");
    assert_eq!(
        left,
        [("far-ahead".to_owned(), 10), ("today".to_owned(), 100)]
    );

    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await
        .expect("drop the scratch schema");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_full_drill_needs_an_events_volume_and_says_so() {
    let stack = TestStack::shared();
    let drill = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios/postgres-disk-full.yaml");
    let out = stack.logctl(&[
        "scenario".as_ref(),
        "run".as_ref(),
        "--headless".as_ref(),
        drill.as_os_str(),
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("--postgres-disk"), "names the flag: {text}");
    let out = stack.logctl(&["fault", "fill", "postgres"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("no events volume"),
        "{text}"
    );
    let out = stack.logctl(&["fault", "fill", "kafka"]);
    assert!(!out.status.success());
}
