//! Where the time goes, per component: CPU seconds and resident memory read from /proc. A
//! component's cost is its process and all its descendants (PostgreSQL's backends are children
//! of the postmaster, each in a session of its own, so process groups would miss them).

use std::collections::BTreeMap;

/// Clock ticks per second of /proc's CPU times (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

fn fields(stat: &str) -> Option<Vec<&str>> {
    // The command name may hold spaces; the fields after its closing parenthesis do not.
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().collect())
}

/// (parent pid, CPU seconds used so far) of one process.
fn cpu_of(stat: &str) -> Option<(u32, f64)> {
    let f = fields(stat)?;
    // After the name: state(0) ppid(1) pgrp(2) ... utime(11) stime(12).
    let ppid: u32 = f.get(1)?.parse().ok()?;
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((ppid, (utime + stime) / TICKS))
}

/// CPU seconds of each root in `roots`, its live descendants included.
pub fn cpu_by_tree(roots: &[u32]) -> BTreeMap<u32, f64> {
    let mut procs: BTreeMap<u32, (u32, f64)> = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Some(p) = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| cpu_of(&s))
        {
            procs.insert(pid, p);
        }
    }
    let mut out = BTreeMap::new();
    for (&pid, &(_, secs)) in &procs {
        // Walk up to a root (or to init).
        let mut at = pid;
        for _ in 0..64 {
            if roots.contains(&at) {
                *out.entry(at).or_default() += secs;
                break;
            }
            match procs.get(&at) {
                Some(&(parent, _)) if parent > 1 => at = parent,
                _ => break,
            }
        }
    }
    out
}

/// CPU seconds this process has used.
pub fn own_cpu() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| cpu_of(&s))
        .map_or(0.0, |(_, s)| s)
}

/// Resident memory of one process in MiB.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_spaces_in_the_name_parses() {
        let stat = "42 (my (odd) name) S 7 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 1 1 1";
        assert_eq!(cpu_of(stat), Some((7, 3.0)));
    }

    #[test]
    fn this_process_is_seen() {
        let _burn: u64 = (0..2_000_000u64).map(|i| i % 7).sum();
        assert!(rss_mib(std::process::id()).is_some_and(|m| m > 1.0));
        let me = std::process::id();
        assert!(cpu_by_tree(&[me]).get(&me).is_some_and(|s| *s >= 0.0));
    }
}
