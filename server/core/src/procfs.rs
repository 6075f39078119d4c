//! The one reader of `/proc` for a process's state, parent, CPU time and memory: the services'
//! own `process_*` metrics, the console's process tracking and the benchmark's CPU and RSS
//! accounting all read through it.
//!
//! CPU times in `/proc/PID/stat` are in clock ticks; the tick rate is asked of the system
//! (`sysconf(_SC_CLK_TCK)`) rather than assumed to be 100.

use std::sync::OnceLock;

/// What `/proc/PID/stat` says of a process.
#[derive(Debug, Clone, PartialEq)]
pub struct Stat {
    /// The command name (`comm`, at most 15 bytes; a thread's own name under `task/`).
    pub name: String,
    /// `R`, `S`, `D`, `T` (stopped), `Z` (zombie), ...
    pub state: char,
    pub ppid: u32,
    /// User plus system CPU time.
    pub cpu_seconds: f64,
    /// The scheduling niceness, -20 (favoured) to 19.
    pub nice: i32,
}

/// Clock ticks per second of `/proc`'s CPU times.
pub fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .filter(|t| *t > 0)
            .map_or(100.0, |t| t as f64)
    })
}

/// `pid`'s stat, or None when it is gone (or unreadable).
pub fn stat(pid: u32) -> Option<Stat> {
    parse_stat(
        &std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?,
        clock_ticks(),
    )
}

/// Each thread of `pid`, read under `/proc/PID/task/`: `/proc/TID/stat` opens for a thread too,
/// but reports its whole process. A SIGKILLed process's main thread can be a zombie while
/// another, say one inside `fsync`, still runs; a JVM's compiler threads are told apart by name.
pub fn threads(pid: u32) -> Vec<Stat> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter_map(|s| parse_stat(&s, clock_ticks()))
        .collect()
}

/// The fields after the command name, which may hold spaces and parentheses: state is field
/// 0, ppid 1, utime 11, stime 12, nice 16.
fn parse_stat(stat: &str, ticks: f64) -> Option<Stat> {
    let (head, rest) = stat.rsplit_once(')')?;
    let (_, name) = head.split_once('(')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks_used = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Stat {
        name: name.to_owned(),
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        cpu_seconds: ticks_used as f64 / ticks,
        nice: f.get(16)?.parse().ok()?,
    })
}

/// The machine's CPU time so far, from the first line of `/proc/stat`, in clock ticks summed
/// over its CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MachineCpu {
    /// Every state: user, nice, system, idle, iowait, irq, softirq and steal.
    pub total: u64,
    /// Time a virtual machine's CPUs wanted to run and the hypervisor ran something else: on a
    /// shared host, bursts of it stall every process here at once.
    pub steal: u64,
}

/// What `/proc/stat` says of the machine's CPU time, or None where it cannot be read.
pub fn machine_cpu() -> Option<MachineCpu> {
    parse_machine_cpu(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// The `cpu` line's first eight fields: user nice system idle iowait irq softirq steal (guest
/// time is counted in user already).
fn parse_machine_cpu(stat: &str) -> Option<MachineCpu> {
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    Some(MachineCpu {
        total: fields.iter().sum(),
        steal: *fields.get(7)?,
    })
}

/// One `/proc/PID/status` field given in kB (`VmRSS`, `VmHWM`, ...), in KiB.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Resident memory of `pid` in MiB.
pub fn rss_mib(pid: u32) -> Option<f64> {
    status_kib(pid, "VmRSS").map(|k| k as f64 / 1024.0)
}

/// The highest RSS since the process started or since its peak was reset, in MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    status_kib(pid, "VmHWM").map(|k| k as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_spaces_and_parentheses_in_the_name_parses() {
        let line = "42 (my (odd) name) S 7 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 30 10 1 0 1 1 1";
        let st = parse_stat(line, 100.0).expect("parses");
        assert_eq!(
            (st.name.as_str(), st.state, st.ppid, st.nice),
            ("my (odd) name", 'S', 7, 10)
        );
        assert!((st.cpu_seconds - 3.0).abs() < 1e-9, "{st:?}");
        // The same ticks at another tick rate are other seconds.
        let st = parse_stat(line, 1000.0).expect("parses");
        assert!((st.cpu_seconds - 0.3).abs() < 1e-9, "{st:?}");
        assert!(parse_stat("42 (truncated) S", 100.0).is_none());
    }

    #[test]
    fn the_machine_line_gives_all_time_and_stolen_time() {
        let stat = "cpu  100 5 40 800 10 0 15 30 7 0\ncpu0 50 2 20 400 5 0 7 15 3 0\n";
        assert_eq!(
            parse_machine_cpu(stat),
            Some(MachineCpu {
                total: 1000,
                steal: 30
            })
        );
        // Kernels before steal was counted have seven fields: no steal figure, not zero.
        assert_eq!(parse_machine_cpu("cpu  1 2 3 4 5 6 7\n"), None);
        assert_eq!(parse_machine_cpu("intr 1 2 3\n"), None);
        let now = machine_cpu().expect("/proc/stat");
        assert!(now.total > 0 && now.steal <= now.total, "{now:?}");
    }

    #[test]
    fn this_process_reads_itself() {
        let me = std::process::id();
        let st = stat(me).expect("own stat");
        assert!(matches!(st.state, 'R' | 'S'), "{st:?}");
        assert_eq!(st.ppid, nix::unistd::getppid().as_raw() as u32);
        assert!(rss_mib(me).is_some_and(|m| m > 1.0));
        assert!(peak_rss_mib(me).is_some_and(|p| p >= rss_mib(me).unwrap_or(f64::MAX) - 1.0));
        assert!(
            threads(me).iter().any(|t| t.state == 'R'),
            "this thread runs"
        );
        assert!(clock_ticks() > 0.0);
        assert!(stat(u32::MAX).is_none());
    }
}
