//! `logctl bench --quick` end to end: it runs on a stack it makes for itself, writes its table
//! and its JSON, and leaves the state dir's own stack as it found it: the same processes, none
//! of the bench's events in its PostgreSQL, and the stack it made deleted with its data.

mod support;

use serde_json::Value;
use support::TestStack;

fn pids(stack: &TestStack) -> Vec<(String, u64)> {
    stack.status_json()["components"]
        .as_array()
        .expect("components")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_owned(),
                c["pid"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_bench_runs_on_a_stack_of_its_own_and_deletes_it() {
    let stack = TestStack::shared();
    let before = pids(stack);
    assert!(before.iter().all(|(_, pid)| *pid > 1), "{before:?}");
    let out_dir = stack.dir.join("bench-run");
    let table = out_dir.join("RESULTS.md");
    let out = stack.logctl(&[
        "bench",
        "--quick",
        "--skip-drain",
        "--output",
        table.to_str().expect("utf8"),
    ]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");

    let md = std::fs::read_to_string(&table).expect("the table");
    assert!(
        md.contains("| single events through the gateway, p99 < 50 ms |"),
        "{md}"
    );
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("RESULTS.json")).expect("the JSON beside it"),
    )
    .expect("JSON");
    assert!(record.is_object(), "{record}");
    // Its stack's events were stored (the gateway stage reads them back: none lost), and
    // what measured them is gone with it.
    assert!(md.contains("none lost or stored twice"), "{md}");
    assert!(
        !stack
            .dir
            .join(logctl::bench::ONE_BROKER_DIR)
            .join("postgres")
            .exists(),
        "the bench's stack was not deleted"
    );

    // The state dir's stack: not restarted, and none of the bench's load in it.
    assert_eq!(pids(stack), before);
    let pool = sqlx::PgPool::connect(&stack.database_url())
        .await
        .expect("connect to the stack's PostgreSQL");
    let benched: i64 =
        sqlx::query_scalar("SELECT count(*) FROM log_events WHERE organization_id LIKE 'bench%'")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(
        benched, 0,
        "the bench's events reached the stack's own PostgreSQL"
    );
}
