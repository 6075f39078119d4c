//! The cluster stage of `logctl bench --brokers N`: the same ingest searches against a stack of
//! N brokers (RF 3, min ISR 2) made for the bench beside the one being benched, Kafka's
//! `ProducerPerformance` against that cluster as its baseline, and the drain with more and more
//! consumers in the group. The cluster has one gateway and one producer, as the one-broker
//! stack has, so the ratio of the two runs is what replication costs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use super::drain::{self, Drained};
use super::Search;
use crate::stack::layout::{Layout, StackConfig};

/// The group sizes the drain is measured with (the topic has 6 partitions).
pub const DRAIN_CONSUMERS: [u16; 4] = [1, 2, 3, 6];

pub struct ClusterResults {
    pub brokers: u16,
    pub replication_factor: u16,
    pub min_insync_replicas: u16,
    pub searches: Vec<Search>,
    /// Kafka's cores (all brokers) at each warm-up step.
    pub warmup: Vec<f64>,
    pub kafka_perf: Option<f64>,
    pub drains: Vec<Drained>,
}

/// A stack of its own in `<state>/bench-cluster`, on free ports; deleted with its data when
/// dropped, so an interrupted bench leaves no brokers running (and the next bench removes
/// whatever a killed one left).
pub struct BenchCluster {
    exe: PathBuf,
    pub layout: Layout,
}

impl BenchCluster {
    pub fn start(beside: &Layout, brokers: u16) -> anyhow::Result<Self> {
        let dir = beside.root.join("bench-cluster");
        let exe = std::env::current_exe().context("cannot find the logctl binary")?;
        if dir.exists() {
            logctl(&exe, &dir, &["down", "--purge"])?;
        }
        let brokers = brokers.to_string();
        logctl(
            &exe,
            &dir,
            &[
                "up",
                "--free-ports",
                "--brokers",
                &brokers,
                "--consumers",
                "1",
            ],
        )?;
        let layout = Layout::open(&dir)?;
        Ok(Self { exe, layout })
    }

    pub fn config(&self) -> anyhow::Result<StackConfig> {
        Ok(self.layout.load_config()?)
    }

    /// `logctl up --consumers n` on the cluster: the group grows (or shrinks) to n.
    pub fn consumers(&self, n: u16) -> anyhow::Result<StackConfig> {
        logctl(
            &self.exe,
            &self.layout.root,
            &["up", "--consumers", &n.to_string()],
        )?;
        self.config()
    }
}

impl Drop for BenchCluster {
    fn drop(&mut self) {
        if let Err(e) = logctl(&self.exe, &self.layout.root, &["down", "--purge"]) {
            eprintln!(
                "bench: the cluster in {} was not removed: {e:#}",
                self.layout.root.display()
            );
        }
    }
}

fn logctl(exe: &Path, state: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(exe)
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    if !out.status.success() {
        anyhow::bail!(
            "`logctl {}` on {} failed: {}",
            args.join(" "),
            state.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The drains, one per group size, each of `events` pre-filled events.
pub async fn drains(cluster: &BenchCluster, events: u64) -> anyhow::Result<Vec<Drained>> {
    let largest = DRAIN_CONSUMERS.iter().copied().max().unwrap_or(1);
    let config = cluster.consumers(largest)?;
    let pool = super::pool(&cluster.layout, &config).await?;
    let mut out = Vec::new();
    for n in DRAIN_CONSUMERS {
        super::settle(&config).await;
        eprintln!("bench: cluster: drain of {events} pre-filled events with {n} consumer(s)");
        out.push(drain::measure(&cluster.layout, &config, &pool, n, events).await?);
    }
    Ok(out)
}
