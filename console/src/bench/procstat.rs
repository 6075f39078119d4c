//! Where the time goes, per component: CPU seconds and resident memory read from /proc. A
//! component's cost is its process and all its descendants (PostgreSQL's backends are children
//! of the postmaster, each in a session of its own, so process groups would miss them).

use std::collections::BTreeMap;

use logctl_core::procfs::{self, MachineCpu};
use tokio_util::sync::CancellationToken;

/// (parent pid, CPU seconds used so far) of one process.
fn cpu_of(pid: u32) -> Option<(u32, f64)> {
    procfs::stat(pid).map(|s| (s.ppid, s.cpu_seconds))
}

/// CPU seconds of each root in `roots`, its live descendants included.
pub fn cpu_by_tree(roots: &[u32]) -> BTreeMap<u32, f64> {
    let mut procs: BTreeMap<u32, (u32, f64)> = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Some(p) = cpu_of(pid) {
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

/// Cores each named root used over `wall` seconds, from [`cpu_by_tree`] readings before and
/// after.
pub fn cores(
    roots: &[(String, u32)],
    before: &BTreeMap<u32, f64>,
    after: &BTreeMap<u32, f64>,
    wall: f64,
) -> BTreeMap<String, f64> {
    roots
        .iter()
        .map(|(name, pid)| {
            let used =
                after.get(pid).copied().unwrap_or(0.0) - before.get(pid).copied().unwrap_or(0.0);
            (name.clone(), used.max(0.0) / wall.max(1e-9))
        })
        .collect()
}

/// CPU seconds this process has used.
pub fn own_cpu() -> f64 {
    cpu_of(std::process::id()).map_or(0.0, |(_, s)| s)
}

pub use procfs::{peak_rss_mib, rss_mib};

/// CPU seconds the JIT compiler threads of these JVMs have used so far: HotSpot names them
/// `C1 CompilerThreadN` and `C2 CompilerThreadN` (cut to 15 bytes).
pub fn jit_compiler_seconds(pids: &[u32]) -> f64 {
    pids.iter()
        .flat_map(|pid| procfs::threads(*pid))
        .filter(|t| t.name.starts_with("C1 Compiler") || t.name.starts_with("C2 Compiler"))
        .map(|t| t.cpu_seconds)
        .sum()
}

/// Starts a new peak for [`peak_rss_mib`]: the kernel resets the process's high-water mark
/// (VmHWM) to its current RSS. Allowed for the process's owner or root; when refused, the
/// peak covers the process's whole life, which can only overstate it.
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// How much of the machine's CPU time the hypervisor took during a step ("steal"), shown
/// beside each step because it is the one cost of the stack no process here is charged for.
/// On this kind of virtual machine the host does the guest's disk writes on the same CPU budget
/// as its two CPUs: 8 KiB writes each fsynced, alone, stole nothing; with both CPUs busy they
/// stole a steady 12%, where two busy loops alone stole 0.1-0.3%. So under load the stack's own
/// writes (PostgreSQL's WAL, Kafka's segments written back) come back as bursts of a fifth to a
/// third of both CPUs for a few hundred milliseconds, every process stalled at once: in one
/// run's single-event searches no passing step near the knee had a 200 ms window over 15%
/// stolen, and most failing ones had one of 20-35%. A cost of the stack, then, not something
/// to excuse a failed step for.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stolen {
    /// Over the whole step, as a share of the machine's CPU time.
    pub share: f64,
    /// In the step's worst window of [`STOLEN_WINDOW`].
    pub worst: f64,
}

/// How often [`sample_machine`] reads `/proc/stat`.
pub const MACHINE_SAMPLE: std::time::Duration = std::time::Duration::from_millis(100);

/// The window [`Stolen::worst`] is taken over, in samples of [`MACHINE_SAMPLE`] (200 ms): as
/// long as a burst that stalls the stack lasts, and long enough that the kernel's 10 ms ticks
/// on two CPUs give it 40 ticks to share out.
pub const STOLEN_WINDOW: usize = 2;

impl Stolen {
    /// From readings [`MACHINE_SAMPLE`] apart; a window is `window` consecutive intervals (the
    /// whole span when there are fewer).
    pub fn of(readings: &[MachineCpu], window: usize) -> Self {
        let share = |a: &MachineCpu, b: &MachineCpu| {
            let total = b.total.saturating_sub(a.total);
            match total {
                0 => 0.0,
                t => b.steal.saturating_sub(a.steal) as f64 / t as f64,
            }
        };
        let (Some(first), Some(last)) = (readings.first(), readings.last()) else {
            return Self::default();
        };
        let worst = readings
            .windows(window.max(1) + 1)
            .map(|w| share(&w[0], &w[w.len() - 1]))
            .reduce(f64::max)
            .unwrap_or_else(|| share(first, last));
        Self {
            share: share(first, last),
            worst,
        }
    }
}

/// Reads the machine's CPU time every [`MACHINE_SAMPLE`] until `stop`, and once more then.
/// The readings are cumulative, so a sample the burst itself delays loses nothing.
pub async fn sample_machine(stop: CancellationToken) -> Vec<MachineCpu> {
    let mut readings: Vec<MachineCpu> = procfs::machine_cpu().into_iter().collect();
    let mut every = tokio::time::interval(MACHINE_SAMPLE);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        tokio::select! {
            _ = every.tick() => readings.extend(procfs::machine_cpu()),
            _ = stop.cancelled() => {
                readings.extend(procfs::machine_cpu());
                return readings;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A burst shows in the worst window even when the step's whole share is small; too few
    /// readings for a window take the whole span; none give nothing stolen.
    #[test]
    fn a_burst_of_stolen_time_stands_out_of_the_step() {
        let at = |total, steal| MachineCpu { total, steal };
        // Six 100 ms intervals of 20 ticks; 8 ticks stolen across the third and fourth.
        let readings = [
            at(0, 0),
            at(20, 0),
            at(40, 0),
            at(60, 3),
            at(80, 8),
            at(100, 8),
            at(120, 8),
        ];
        let stolen = Stolen::of(&readings, STOLEN_WINDOW);
        assert!((stolen.share - 8.0 / 120.0).abs() < 1e-9, "{stolen:?}");
        assert!((stolen.worst - 8.0 / 40.0).abs() < 1e-9, "{stolen:?}");
        let short = Stolen::of(&readings[2..4], STOLEN_WINDOW);
        assert!((short.worst - 3.0 / 20.0).abs() < 1e-9, "{short:?}");
        assert_eq!(Stolen::of(&[], STOLEN_WINDOW), Stolen::default());
        assert_eq!(Stolen::of(&[at(5, 1)], STOLEN_WINDOW), Stolen::default());
    }

    /// Paused time: the interval fires as fast as the test can read.
    #[tokio::test(start_paused = true)]
    async fn the_machine_is_read_until_told_to_stop() {
        let stop = CancellationToken::new();
        let sampler = tokio::spawn(sample_machine(stop.clone()));
        tokio::time::sleep(MACHINE_SAMPLE * 3).await;
        stop.cancel();
        let readings = sampler.await.expect("the sampler");
        assert!(readings.len() >= 3, "{readings:?}");
        assert!(
            readings.windows(2).all(|w| w[1].total >= w[0].total),
            "{readings:?}"
        );
    }

    #[test]
    fn the_peak_covers_memory_already_given_back() {
        let me = std::process::id();
        assert!(reset_peak_rss(me), "clear_refs refused for our own process");
        let before = peak_rss_mib(me).expect("VmHWM");
        // Mapped and unmapped here, not allocated: the allocator (mimalloc) keeps freed memory
        // for a while before it gives it back.
        let mut block = memmap2::MmapMut::map_anon(96 * 1024 * 1024).expect("mmap");
        for page in block.chunks_mut(4096) {
            page[0] = 1;
        }
        std::hint::black_box(&block);
        drop(block);
        let peak = peak_rss_mib(me).expect("VmHWM");
        assert!(
            peak >= before + 90.0,
            "peak {peak:.0} MiB, before {before:.0} MiB"
        );
        assert!(
            rss_mib(me).expect("VmRSS") < peak - 50.0,
            "the block was not given back"
        );
        assert!(reset_peak_rss(me));
        assert!(peak_rss_mib(me).expect("VmHWM") < peak - 50.0);
    }

    #[test]
    fn a_jvms_compiler_threads_are_found_and_ours_are_not() {
        assert_eq!(jit_compiler_seconds(&[std::process::id()]), 0.0);
        let Some(java) = crate::stack::kafka::java_binary() else {
            panic!("no Java: scripts/bootstrap installs the one Kafka runs on");
        };
        // The source launcher compiles the file inside the JVM, then the loop runs hot: both
        // keep HotSpot's compilers busy well past the kernel's tick.
        let dir = std::env::temp_dir().join(format!("logctl-jit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let source = dir.join("Spin.java");
        std::fs::write(
            &source,
            "public class Spin { public static void main(String[] a) { long s = 0; \
             long end = System.nanoTime() + 20_000_000_000L; \
             while (System.nanoTime() < end) { for (int i = 0; i < 1000; i++) s += i % 7; } \
             System.out.println(s); } }",
        )
        .expect("write the source");
        let mut child = std::process::Command::new(java)
            .arg(&source)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start java");
        let started = std::time::Instant::now();
        let (mut compilers, mut whole) = (0.0, 0.0);
        while compilers == 0.0 && started.elapsed() < std::time::Duration::from_secs(15) {
            std::thread::sleep(std::time::Duration::from_millis(200));
            compilers = jit_compiler_seconds(&[child.id()]);
            whole = cpu_of(child.id()).map_or(0.0, |(_, s)| s);
        }
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            compilers > 0.0,
            "no compiler thread CPU seen in a running JVM"
        );
        // Two compiler threads each read as the whole process once counted it twice over.
        assert!(
            compilers < whole,
            "the compilers' {compilers} s are a share of the JVM's {whole} s"
        );
    }

    #[test]
    fn this_process_is_seen() {
        let parent = nix::unistd::getppid().as_raw() as u32;
        assert_eq!(
            cpu_of(std::process::id()).map(|(ppid, _)| ppid),
            Some(parent)
        );
        assert!(rss_mib(std::process::id()).is_some_and(|m| m > 1.0));
        let me = std::process::id();
        let before = cpu_by_tree(&[me])
            .get(&me)
            .copied()
            .expect("this process's tree");
        // Burn CPU until the kernel's accounting (tick-granular) shows it: the tree's CPU
        // seconds must grow with work done, or the bench's per-component CPU means nothing.
        let started = std::time::Instant::now();
        let mut after = before;
        while after <= before && started.elapsed() < std::time::Duration::from_secs(20) {
            let burn: u64 = (0..2_000_000u64).map(|i| std::hint::black_box(i) % 7).sum();
            std::hint::black_box(burn);
            after = cpu_by_tree(&[me]).get(&me).copied().unwrap_or(before);
        }
        assert!(
            after > before,
            "CPU seconds {before} -> {after} after burning"
        );
    }
}
