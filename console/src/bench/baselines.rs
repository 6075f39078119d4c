//! What this machine can do without us, measured in the same run: the HTTP ceiling (`wrk` on
//! the gateway's `/health`), Kafka's own producer (`kafka-producer-perf-test`), and PostgreSQL's
//! own bulk load (`COPY`).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use logctl_contracts::schema;
use sqlx::postgres::PgPoolCopyExt;
use sqlx::PgPool;

use crate::stack::layout::{Layout, StackConfig};

/// Requests/s `wrk` gets from `url` (2 threads, 64 connections); None when wrk is missing.
pub fn wrk(url: &str, secs: u64) -> anyhow::Result<Option<f64>> {
    let out = match Command::new("wrk")
        .args(["-t2", "-c64", &format!("-d{secs}s"), url])
        .output()
    {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context("cannot run wrk"),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let rate = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))?;
    Ok(Some(rate))
}

/// Records/s of Kafka's own `ProducerPerformance` with our producer's settings (acks=all,
/// lz4, linger 5 ms, idempotent) and our mean record size, into a topic of its own.
pub fn kafka_perf(
    layout: &Layout,
    config: &StackConfig,
    records: u64,
    record_bytes: usize,
) -> anyhow::Result<f64> {
    let topic = "logctl-bench-perf";
    let run = |tool: &str, args: &[&str]| -> anyhow::Result<String> {
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        let out = crate::stack::kafka::tool(tool, &args, layout, config)?
            .output()
            .with_context(|| format!("cannot run kafka {tool}"))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr))
    };
    run(
        "topics",
        &[
            "--create",
            "--if-not-exists",
            "--topic",
            topic,
            "--partitions",
            "6",
            "--replication-factor",
            &config.replication_factor().to_string(),
        ],
    )?;
    let text = run(
        "producer-perf-test",
        &[
            "--topic",
            topic,
            "--num-records",
            &records.to_string(),
            "--record-size",
            &record_bytes.to_string(),
            "--throughput",
            "-1",
            "--producer-props",
            &format!("bootstrap.servers={}", config.bootstrap_servers()),
            "acks=all",
            "compression.type=lz4",
            "linger.ms=5",
            "enable.idempotence=true",
        ],
    )?;
    let _ = run("topics", &["--delete", "--topic", topic]);
    // The summary line: "N records sent, X records/sec (Y MB/sec), ...".
    text.lines()
        .rev()
        .find_map(|l| {
            let (_, rest) = l.split_once("records sent, ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .with_context(|| format!("no summary in ProducerPerformance's output:\n{text}"))
}

/// Rows/s of one `COPY` of `rows` log rows into a scratch copy of the table (same columns,
/// indexes and constraints), dropped afterwards.
pub async fn copy(pool: &PgPool, rows: u64, message_bytes: usize) -> anyhow::Result<f64> {
    sqlx::query("DROP TABLE IF EXISTS logctl_bench_copy")
        .execute(pool)
        .await?;
    sqlx::query(&format!(
        "CREATE TABLE logctl_bench_copy (LIKE {} INCLUDING ALL)",
        schema::TABLE
    ))
    .execute(pool)
    .await?;
    let message = "x".repeat(message_bytes);
    let started = Instant::now();
    let mut copy = pool
        .copy_in_raw(&format!(
            "COPY logctl_bench_copy ({}) FROM STDIN (FORMAT csv)",
            schema::COLUMNS
        ))
        .await?;
    let mut chunk = String::with_capacity(8 << 20);
    for i in 0..rows {
        let id = uuid::Uuid::now_v7();
        chunk.push_str(&format!(
            "{id},bench-{},INFO,{message},bench,2026-11-24 10:00:00+00,2026-11-24 10:00:00+00,,{},{i}\n",
            i % 20,
            i % 6
        ));
        if chunk.len() > (4 << 20) {
            copy.send(std::mem::take(&mut chunk).into_bytes()).await?;
        }
    }
    if !chunk.is_empty() {
        copy.send(chunk.into_bytes()).await?;
    }
    copy.finish().await?;
    let took = started.elapsed().max(Duration::from_millis(1));
    sqlx::query("DROP TABLE logctl_bench_copy")
        .execute(pool)
        .await?;
    Ok(rows as f64 / took.as_secs_f64())
}
