//! The console as an operator uses it, in a real terminal (tmux) against a real stack: press
//! `l` to start load and read the charts, `5` to stop the consumer and see its partitions turn
//! STOP or STALL, `2` to stop PostgreSQL and see the breaker open and lag rise, `2` again to
//! bring it back, `q` to quit.

#![allow(clippy::await_holding_lock)] // one test at a time on the shared stack, on purpose

mod support;

use std::process::Command;
use std::time::Duration;

use support::{eventually, logctl_bin, scaled, scratch_dir, serial, TestStack};

struct Session(String);

impl Session {
    /// Runs `command` in a detached tmux session of the given size.
    fn start(name: &str, width: u16, height: u16, command: &str) -> Session {
        let session = Session(format!("{name}-{}", std::process::id()));
        let started = Command::new("tmux")
            .args(["new-session", "-d", "-s", &session.0, "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
            .arg(command)
            .status()
            .expect("tmux (scripts/bootstrap installs it)");
        assert!(started.success(), "tmux new-session");
        session
    }

    fn keys(&self, keys: &str) {
        let ok = Command::new("tmux")
            .args(["send-keys", "-t", &self.0, keys])
            .status()
            .expect("tmux send-keys")
            .success();
        assert!(ok, "tmux send-keys {keys}");
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.0])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn alive(&self) -> bool {
        Command::new("tmux")
            .args(["has-session", "-t", &self.0])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Reads the screen until `check` holds; fails with the last screen.
    async fn wait_for(&self, what: &str, within: Duration, check: impl Fn(&str) -> bool) -> String {
        let within = scaled(within);
        let deadline = std::time::Instant::now() + within;
        loop {
            let screen = self.screen();
            if check(&screen) {
                return screen;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out after {within:?} waiting for {what}; the screen:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

/// The stored rate the title line shows (`logctl  stored 1,000/s  lag …`).
fn stored_per_sec(screen: &str) -> f64 {
    screen
        .lines()
        .find_map(|l| l.strip_prefix("logctl  stored "))
        .and_then(|rest| rest.split("/s").next())
        .and_then(|n| n.replace(',', "").parse().ok())
        .unwrap_or(0.0)
}

/// The lag pane's table rows of partitions with records behind: (partition, status). (The
/// load's organizations are keyed to some partitions only; the others stay at zero, OK.)
fn partition_statuses(screen: &str) -> Vec<(u32, String)> {
    screen
        .lines()
        .filter_map(|l| {
            let pane = l.split('│').nth(1)?;
            let words: Vec<&str> = pane.split_whitespace().collect();
            match words.as_slice() {
                [p, records, _behind, status] if *records != "0" => {
                    Some((p.parse().ok()?, (*status).to_owned()))
                }
                _ => None,
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_a_postgres_outage_and_recovery_watched_from_the_console() {
    let _serial = serial();
    let stack = TestStack::shared();
    let command = format!(
        "{} --state-dir {} tui",
        logctl_bin().display(),
        stack.dir.display()
    );
    let session = Session::start("logctl-tui", 150, 45, &command);
    session
        .wait_for("the console drawn", Duration::from_secs(20), |s| {
            s.contains("events/s")
        })
        .await;

    session.keys("l");
    let loaded = session
        .wait_for(
            "events stored under load, every partition OK",
            Duration::from_secs(30),
            |s| {
                let statuses = partition_statuses(s);
                s.contains("load 1,000/s")
                    && stored_per_sec(s) > 0.0
                    && !statuses.is_empty()
                    && statuses.iter().all(|(_, st)| st == "OK")
            },
        )
        .await;
    // Charts with labelled axes, lag in time, the percentile spectrum.
    for label in [
        "-1m",
        "-30s",
        "now",
        "lag behind",
        "behind  status",
        "latency by percentile",
        "99.99%",
    ] {
        assert!(loaded.contains(label), "{label:?} missing:\n{loaded}");
    }

    // The consumer stopped: nobody holds its partitions (STOP), or its offsets stand still
    // while the group has not noticed yet (STALL); how far behind shows in seconds.
    session.keys("5");
    session
        .wait_for(
            "every partition STOP or STALL",
            Duration::from_secs(30),
            |s| {
                let statuses = partition_statuses(s);
                !statuses.is_empty()
                    && statuses.iter().all(|(_, st)| st == "STOP" || st == "STALL")
                    && s.contains("s behind")
            },
        )
        .await;
    session.keys("5");
    session
        .wait_for(
            "the consumer back: every partition OK",
            Duration::from_secs(60),
            |s| {
                let statuses = partition_statuses(s);
                !statuses.is_empty() && statuses.iter().all(|(_, st)| st == "OK")
            },
        )
        .await;

    session.keys("2");
    let outage = session
        .wait_for(
            "the postgres breaker open and lag rising",
            Duration::from_secs(90),
            |s| s.contains("postgres down") && s.contains("postgres  open") && s.contains("↑"),
        )
        .await;
    assert!(
        outage.contains("lag above 1000") || outage.contains("total"),
        "{outage}"
    );

    session.keys("2");
    session
        .wait_for(
            "recovery: postgres up, breaker closed, events stored",
            Duration::from_secs(120),
            |s| {
                // The events pane keeps "postgres down"; the components pane must say up now.
                let components = s
                    .lines()
                    // "kafka" padded to 9 there, to 10 in the breakers pane.
                    .find(|l| l.contains("kafka    ") && !l.contains("kafka     "))
                    .unwrap_or("");
                s.contains("postgres  closed")
                    && components.contains("postgres up")
                    && stored_per_sec(s) > 0.0
            },
        )
        .await;

    session.keys("l");
    session.keys("q");
    eventually("the console quit", Duration::from_secs(10), || async {
        (!session.alive()).then_some(())
    })
    .await;
    // PostgreSQL was brought back from the console; the stack is whole for the other tests.
    let status = stack.logctl(&["status"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_run_from_the_console_shows_its_steps_and_x_aborts_one_restoring_the_stack() {
    let _serial = serial();
    let stack = TestStack::shared();
    let file = stack.dir.join("console-drill.yaml");
    std::fs::write(
        &file,
        "name: console-drill\nsteps:\n  - load: {rate: 200}\n  - wait: {until: stored_rate > 50, timeout: 60s}\n  - fault: stop redis\n  - wait: {until: rate_limit_local == 1, timeout: 30s}\n  - wait: 3s\n  - fault: start redis\n  - verify: {timeout: 60s}\n",
    )
    .expect("drill file");
    let command = format!(
        "{} --state-dir {} tui --scenario {}",
        logctl_bin().display(),
        stack.dir.display(),
        file.display()
    );
    let session = Session::start("logctl-tui-drill", 140, 40, &command);
    session
        .wait_for("the console drawn", Duration::from_secs(20), |s| {
            s.contains("events/s")
        })
        .await;

    session.keys("r");
    session
        .wait_for("the drill under way", Duration::from_secs(60), |s| {
            s.contains("Drill console-drill step")
                && s.contains("\u{25b6}  4. wait until rate_limit_local == 1")
                || s.contains("\u{25b6}  5. wait 3s")
        })
        .await;
    let done = session
        .wait_for("the drill passed", Duration::from_secs(120), |s| {
            s.contains("Drill console-drill PASSED")
        })
        .await;
    assert!(done.contains("\u{2713}  7. verify"), "{done}");
    assert!(
        done.contains("drill console-drill PASSED"),
        "in the event log: {done}"
    );

    // Again, aborted while Redis is down: the drill puts it back.
    session.keys("r");
    session
        .wait_for("redis stopped by the drill", Duration::from_secs(60), |s| {
            s.contains("\u{25b6}  4. wait until") || s.contains("\u{25b6}  5. wait 3s")
        })
        .await;
    assert_eq!(stack.component_status("redis"), "down");
    session.keys("x");
    session
        .wait_for("the drill interrupted", Duration::from_secs(60), |s| {
            s.contains("Drill console-drill INTERRUPTED")
        })
        .await;
    assert_eq!(
        stack.component_status("redis"),
        "up",
        "restored by the drill"
    );
    session.keys("q");
    eventually("the console quit", Duration::from_secs(10), || async {
        (!session.alive()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_given_by_its_endpoints_is_watched_and_driven_through_the_exec_driver() {
    let _serial = serial();
    let stack = TestStack::shared();
    // An empty state dir: everything the console knows comes from the file.
    let elsewhere = scratch_dir("tui-remote");
    let file = elsewhere.join("stack.toml");
    let base = |flag: &str| format!("http://127.0.0.1:{}", stack.port(flag));
    std::fs::write(
        &file,
        format!(
            "[endpoints]\ngateway = \"{}\"\nproducer = \"{}\"\nconsumers = [\"{}\"]\nkafka = \"127.0.0.1:{}\"\n\n[faults]\ndriver = \"exec\"\nexec = \"{} --state-dir {} fault {{action}} {{component}}\"\n",
            base("gateway-port"),
            base("producer-port"),
            base("consumer-port"),
            stack.port("kafka-port"),
            logctl_bin().display(),
            stack.dir.display()
        ),
    )
    .expect("stack file");
    let secret = std::fs::read_to_string(stack.dir.join("secrets/jwt-secret")).expect("secret");
    let command = format!(
        "LOGCTL_JWT_SECRET='{}' {} --state-dir {} tui --config {}",
        secret.trim(),
        logctl_bin().display(),
        elsewhere.display(),
        file.display()
    );
    let session = Session::start("logctl-tui-remote", 110, 34, &command);
    session
        .wait_for(
            "components from the endpoints",
            Duration::from_secs(30),
            |s| s.contains("gateway  up") && s.contains("redis    up") && s.contains("kafka    up"),
        )
        .await;
    session.keys("l");
    session
        .wait_for("events stored under load", Duration::from_secs(30), |s| {
            stored_per_sec(s) > 0.0
        })
        .await;
    // The 3 key toggles Redis by the state the console last read, which for a stack known by
    // its endpoints comes from the services' readiness checks: under load on a slow machine a
    // late check can read a running Redis as down (the key would then start it). Stop the
    // load and let the reading settle first.
    session.keys("l");
    session
        .wait_for(
            "redis read up with the load stopped",
            Duration::from_secs(30),
            |s| s.contains("load stopped") && s.contains("redis    up"),
        )
        .await;
    session.keys("3");
    session
        .wait_for(
            "redis stopped through the exec driver",
            Duration::from_secs(60),
            |s| s.contains("stopping redis") && s.contains("redis    down"),
        )
        .await;
    // The console reads Redis down as soon as it stops answering; the stack's own status
    // follows once the exec driver's `fault stop` has seen the process gone.
    eventually(
        "the stack's status to read redis down",
        Duration::from_secs(30),
        || async { (stack.component_status("redis") == "down").then_some(()) },
    )
    .await;
    session.keys("3");
    session
        .wait_for("redis back", Duration::from_secs(60), |s| {
            s.contains("redis    up")
        })
        .await;
    eventually(
        "the stack's status to read redis up",
        Duration::from_secs(30),
        || async { (stack.component_status("redis") == "up").then_some(()) },
    )
    .await;
    session.keys("q");
    eventually("the console quit", Duration::from_secs(10), || async {
        (!session.alive()).then_some(())
    })
    .await;
}
