//! Local processes of the stack: started detached in their own process group (so a Ctrl-C in
//! the operator's terminal does not reach them), tracked by pid file, stopped with SIGTERM and,
//! past a deadline, SIGKILL.
//!
//! A pid alone is not trusted: a process counts as ours only if it is alive (not a zombie,
//! which PID 1 here may leave around) and its command line carries the component's marker,
//! so a recycled pid is never mistaken for, or killed as, a stack component.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use logctl_core::procfs;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::StackError;

/// Does any thread of `pid` still run? After SIGKILL the main thread can be a zombie while
/// another (say, one inside `fsync`) still holds the process's sockets and files.
fn any_thread_alive(pid: u32) -> bool {
    let live = |state: char| !matches!(state, 'Z' | 'X' | 'x');
    procfs::stat(pid).is_some_and(|s| live(s.state))
        || procfs::threads(pid).iter().any(|t| live(t.state))
}

/// Is `pid` a live process whose command line contains `marker`? A dying process (main thread
/// gone, others not yet) shows an empty command line: it is still ours until its last thread
/// exits, so nothing is started on its ports too early.
pub fn is_ours(pid: u32, marker: &str) -> bool {
    if !any_thread_alive(pid) {
        return false;
    }
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            c.is_empty()
                || String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(marker)
        })
        .unwrap_or(false)
}

/// Is `pid` on its way out: killed, its main thread gone or a zombie, while other threads
/// still finish (a thread in an fsync holds a SIGKILLed process for as long as the disk takes)?
pub fn is_exiting(pid: u32) -> bool {
    let main_state = procfs::stat(pid).map(|s| s.state);
    let cmdline_empty = std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.is_empty());
    matches!(main_state, Some('Z' | 'X' | 'x')) || cmdline_empty
}

pub fn read_pid(pid_file: &Path) -> Option<u32> {
    std::fs::read_to_string(pid_file)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Starts `cmd` detached with stdout and stderr appended to `log`, and records its pid.
pub fn spawn(mut cmd: Command, log: &Path, pid_file: &Path) -> Result<u32, StackError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| StackError::io(log, e))?;
    let err = out.try_clone().map_err(|e| StackError::io(log, e))?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| StackError::Spawn {
            program,
            reason: e.to_string(),
        })?;
    let pid = child.id();
    std::fs::write(pid_file, format!("{pid}\n")).map_err(|e| StackError::io(pid_file, e))?;
    Ok(pid)
}

/// Is the process stopped by a signal (SIGSTOP)?
pub fn is_stopped(pid: u32) -> bool {
    procfs::stat(pid).is_some_and(|s| s.state == 'T')
}

/// `pid` and all its descendants, parents first.
fn tree(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let child: u32 = e.file_name().to_str()?.parse().ok()?;
            let ppid = procfs::stat(child)?.ppid;
            Some((child, ppid))
        })
        .collect();
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let parent = all[i];
        all.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        i += 1;
    }
    all
}

/// Sends `signal` to `pid` and its descendants: pausing PostgreSQL means pausing its backends
/// too, not only the postmaster.
pub fn signal_tree(pid: u32, signal: Signal) {
    for p in tree(pid) {
        let _ = kill(Pid::from_raw(p as i32), signal);
    }
}

/// Sends SIGTERM, waits up to `grace`, then SIGKILL. Returns once the process is gone.
pub fn terminate(pid: u32, marker: &str, grace: Duration) {
    if !is_ours(pid, marker) {
        return;
    }
    let target = Pid::from_raw(pid as i32);
    let _ = kill(target, Signal::SIGTERM);
    if wait_gone(pid, marker, grace) {
        return;
    }
    let _ = kill(target, Signal::SIGKILL);
    wait_gone(pid, marker, Duration::from_secs(5));
}

fn wait_gone(pid: u32, marker: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !is_ours(pid, marker) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    !is_ours(pid, marker)
}

/// Finds `program` on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// A program the stack runs from a Debian package: its path, or an error naming the package
/// to install.
pub fn debian_program(program: &str, package: &str) -> Result<PathBuf, super::StackError> {
    which(program).ok_or_else(|| super::StackError::Missing {
        what: program.into(),
        hint: format!("run scripts/bootstrap (or apt-get install {package})"),
    })
}

/// Can a listener bind this loopback port right now?
pub fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Runs a short command to completion, turning a non-zero exit into an error with its output.
pub fn run_checked(mut cmd: Command, what: &str) -> Result<String, StackError> {
    let output = cmd.output().map_err(|e| StackError::Spawn {
        program: cmd.get_program().to_string_lossy().into_owned(),
        reason: e.to_string(),
    })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(StackError::Command {
            what: what.to_owned(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        })
    }
}

pub use logctl_core::procfs::rss_mib;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_and_stops_a_real_process() {
        let dir = std::env::temp_dir().join(format!("logctl-proc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut cmd = Command::new("sleep");
        cmd.arg("300");
        let pid = spawn(cmd, &dir.join("sleep.log"), &dir.join("sleep.pid")).expect("spawns");
        assert_eq!(read_pid(&dir.join("sleep.pid")), Some(pid));
        // Right after exec the command line can still read empty, which counts as "dying, ours".
        assert!(wait_until(
            || std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
        ));
        assert!(is_ours(pid, "sleep 300"));
        assert!(
            !is_ours(pid, "redis-server"),
            "a different marker is not ours"
        );
        signal_tree(pid, Signal::SIGSTOP);
        assert!(wait_until(|| is_stopped(pid)), "paused");
        signal_tree(pid, Signal::SIGCONT);
        assert!(wait_until(|| !is_stopped(pid)), "resumed");
        terminate(pid, "sleep 300", Duration::from_secs(5));
        assert!(!is_ours(pid, "sleep 300"));
        std::fs::remove_dir_all(&dir).ok();
    }

    fn wait_until(cond: impl Fn() -> bool) -> bool {
        (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            cond()
        })
    }

    #[test]
    fn sees_a_taken_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        let port = l.local_addr().expect("addr").port();
        assert!(!port_is_free(port));
        drop(l);
        // A freed port may go at once to any other test binding port 0 (seen once in a full
        // run), so one try can read it taken: it must read free on one of a few tries.
        let freed_reads_free = (0..20).any(|_| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
            let port = l.local_addr().expect("addr").port();
            drop(l);
            port_is_free(port)
        });
        assert!(freed_reads_free, "a port nobody holds reads taken");
    }
}
