//! Where the time goes, per process group: CPU seconds and resident memory read from /proc.
//! Every component `logctl up` starts leads its own process group (PostgreSQL's backends
//! included), so a group's sum is that component's whole cost.

use std::collections::BTreeMap;

/// Clock ticks per second of /proc's CPU times (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

fn fields(stat: &str) -> Option<Vec<&str>> {
    // The command name may hold spaces; the fields after its closing parenthesis do not.
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().collect())
}

/// (process group, CPU seconds used so far) of one process.
fn cpu_of(stat: &str) -> Option<(u32, f64)> {
    let f = fields(stat)?;
    // After the name: state(0) ppid(1) pgrp(2) ... utime(11) stime(12).
    let pgrp: u32 = f.get(2)?.parse().ok()?;
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((pgrp, (utime + stime) / TICKS))
}

/// CPU seconds per process group, summed over its live processes.
pub fn cpu_by_group() -> BTreeMap<u32, f64> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if let Some((pgrp, secs)) = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| cpu_of(&s))
        {
            *out.entry(pgrp).or_default() += secs;
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
        let stat = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 1 1 1";
        assert_eq!(cpu_of(stat), Some((42, 3.0)));
    }

    #[test]
    fn this_process_is_seen() {
        let _burn: u64 = (0..2_000_000u64).map(|i| i % 7).sum();
        assert!(rss_mib(std::process::id()).is_some_and(|m| m > 1.0));
        let me = nix::unistd::getpgrp().as_raw() as u32;
        assert!(cpu_by_group().contains_key(&me));
    }
}
