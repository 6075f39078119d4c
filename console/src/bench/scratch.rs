//! The stacks the bench runs against: each made for it in a directory of its own under the
//! state dir, on free ports, and deleted with its data when dropped.
//!
//! The bench stores tens of millions of synthetic events (a `--brokers 3` run left about 20
//! million rows, 10 GiB, in PostgreSQL alone, kept for the retention's 7 days). Run against
//! the operator's own stack, that was their storage: three runs in a day filled this machine's
//! disk and the fourth failed with the cluster's producer unable to spool. A stack of its own
//! also measures the same defaults on every machine, whatever `stack.toml` says, and leaves
//! the operator's services and data as they were, interrupted or not.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::stack::layout::{Layout, StackConfig};

pub struct ScratchStack {
    exe: PathBuf,
    pub layout: Layout,
}

impl ScratchStack {
    /// `logctl up --free-ports --brokers N` in `<beside>/<name>`, after removing whatever a
    /// killed bench left there.
    pub fn start(beside: &Layout, name: &str, brokers: u16) -> anyhow::Result<Self> {
        let dir = beside.root.join(name);
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

    /// `logctl up --consumers n` on this stack: the group grows (or shrinks) to n.
    pub fn consumers(&self, n: u16) -> anyhow::Result<StackConfig> {
        logctl(
            &self.exe,
            &self.layout.root,
            &["up", "--consumers", &n.to_string()],
        )?;
        self.config()
    }
}

impl Drop for ScratchStack {
    fn drop(&mut self) {
        if let Err(e) = logctl(&self.exe, &self.layout.root, &["down", "--purge"]) {
            eprintln!(
                "bench: the stack in {} was not removed: {e:#}",
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
