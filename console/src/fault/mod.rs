//! Faults on stack components: stop, start, kill -9, pause (SIGSTOP) and resume, through one
//! of three drivers. `local` acts on the processes of `logctl up`; `compose` runs the matching
//! `docker compose` command against docker-compose.yml; `exec` runs a command of the
//! operator's own (`{action}` and `{component}` filled in) for stacks run some other way. The
//! TUI and the scenario runner go through here too, so a drill means the same thing wherever
//! it runs. Faults on the links between components (latency, bandwidth, black holes, resets)
//! are in [`link`].

pub mod disk;
pub mod host;
pub mod link;

use std::path::PathBuf;
use std::process::Command;

use nix::sys::signal::Signal;

use crate::stack::layout::{Layout, StackConfig};
use crate::stack::{self, process, Component, StackError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Action {
    /// Graceful stop (SIGTERM; PostgreSQL through pg_ctl).
    Stop,
    /// Start it again and wait until it is ready.
    Start,
    /// SIGKILL: a crash, nothing flushed.
    Kill,
    /// SIGSTOP on the process and its children: it hangs, connections stay open.
    Pause,
    /// SIGCONT after a pause.
    Resume,
}

#[derive(Debug, Clone)]
pub enum Driver {
    Local,
    Compose {
        file: PathBuf,
    },
    /// A shell command template, e.g. `ssh db1 sudo systemctl {action} {component}`.
    Exec {
        template: String,
    },
}

/// What a fault acts on: a component by name, or a broker chosen when the fault happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Component(Component),
    /// The broker leading the most `log-events` partitions at that moment, so a drill can
    /// kill the leader without knowing its number; to `start` or `resume` it, the first
    /// broker that is down or paused (the leader that was).
    KafkaLeader,
}

impl Target {
    pub const KAFKA_LEADER: &'static str = "kafka-leader";

    pub fn parse(name: &str) -> Option<Target> {
        if name == Self::KAFKA_LEADER {
            return Some(Target::KafkaLeader);
        }
        Component::parse(name).map(Target::Component)
    }

    pub fn name(self) -> String {
        match self {
            Target::Component(c) => c.name(),
            Target::KafkaLeader => Self::KAFKA_LEADER.into(),
        }
    }

    /// The component this target means now, for `action`.
    pub async fn resolve(
        self,
        action: Action,
        layout: &Layout,
        config: &StackConfig,
    ) -> Result<Component, StackError> {
        match self {
            Target::Component(c) => Ok(c),
            Target::KafkaLeader if matches!(action, Action::Start | Action::Resume) => {
                let wanted = if action == Action::Start {
                    "down"
                } else {
                    "paused"
                };
                stack::status(layout, config)
                    .into_iter()
                    .find(|s| s.name.starts_with("kafka") && s.status == wanted)
                    .and_then(|s| Component::parse(&s.name))
                    .ok_or_else(|| StackError::Other(format!("no Kafka broker is {wanted}")))
            }
            Target::KafkaLeader => {
                let settings = stack::cluster::settings(config);
                let view = tokio::task::spawn_blocking(move || {
                    settings.partitions(std::time::Duration::from_secs(5))
                })
                .await
                .map_err(|e| StackError::Other(e.to_string()))?
                .map_err(|e| StackError::Other(format!("cannot ask Kafka who leads: {e}")))?;
                stack::cluster::busiest_leader(&view, logctl_contracts::topics::EVENTS)
                    .and_then(stack::cluster::broker_of)
                    .ok_or_else(|| {
                        StackError::Other("no broker leads a log-events partition".into())
                    })
            }
        }
    }
}

/// What a fault did, for the operator.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub component: String,
    pub action: String,
    pub detail: String,
}

pub async fn apply(
    driver: &Driver,
    action: Action,
    component: Component,
    layout: &Layout,
    config: &StackConfig,
) -> Result<Outcome, StackError> {
    let detail = match driver {
        Driver::Local => local(action, component, layout, config).await?,
        Driver::Compose { file } => {
            let mut cmd = compose_command(file, action, component)?;
            cmd.stdin(std::process::Stdio::null());
            let shown = format!("{cmd:?}");
            process::run_checked(cmd, "docker compose")?;
            shown
        }
        Driver::Exec { template } => {
            let line = exec_line(template, action, component);
            let mut cmd = Command::new("sh");
            cmd.arg("-c").arg(&line).stdin(std::process::Stdio::null());
            process::run_checked(cmd, "the exec fault driver")?;
            line
        }
    };
    Ok(Outcome {
        component: component.name(),
        action: format!("{action:?}").to_lowercase(),
        detail,
    })
}

async fn local(
    action: Action,
    c: Component,
    layout: &Layout,
    config: &StackConfig,
) -> Result<String, StackError> {
    let running = || {
        stack::running_pid(c, layout)
            .ok_or_else(|| StackError::Other(format!("{} is not running", c.name())))
    };
    Ok(match action {
        Action::Stop => match stack::stop_one(layout, c) {
            true => "stopped".into(),
            false => "was not running".into(),
        },
        Action::Start => format!(
            "running as pid {}",
            stack::start_one(layout, config, c).await?
        ),
        Action::Kill => {
            let pid = running()?;
            process::signal_tree(pid, Signal::SIGKILL);
            stack::wait_exited(c, layout, stack::EXIT_WAIT).await?;
            format!("killed pid {pid}")
        }
        Action::Pause => {
            let pid = running()?;
            process::signal_tree(pid, Signal::SIGSTOP);
            format!("paused pid {pid}")
        }
        Action::Resume => {
            let pid = running()?;
            process::signal_tree(pid, Signal::SIGCONT);
            format!("resumed pid {pid}")
        }
    })
}

/// The exec driver's command line for a fault.
pub fn exec_line(template: &str, action: Action, c: Component) -> String {
    template
        .replace("{action}", &format!("{action:?}").to_lowercase())
        .replace("{component}", &c.name())
}

/// The `docker compose` command for a fault; compose runs one instance per service.
pub fn compose_command(
    file: &std::path::Path,
    action: Action,
    c: Component,
) -> Result<Command, StackError> {
    match c {
        Component::Consumer(i) if i > 0 => {
            return Err(StackError::Other(format!(
                "{}: the compose stack runs one consumer; scale it with `docker compose up --scale consumer=N`",
                c.name()
            )));
        }
        Component::Kafka(i) if i > 0 => {
            return Err(StackError::Other(format!(
                "{}: the compose stack runs one Kafka broker",
                c.name()
            )));
        }
        _ => {}
    }
    let mut cmd = Command::new("docker");
    cmd.arg("compose").arg("-f").arg(file);
    match action {
        Action::Stop => cmd.arg("stop"),
        Action::Start => cmd.args(["up", "-d", "--wait"]),
        Action::Kill => cmd.args(["kill", "-s", "SIGKILL"]),
        Action::Pause => cmd.arg("pause"),
        Action::Resume => cmd.arg("unpause"),
    };
    cmd.arg(c.name());
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cmd: &Command) -> Vec<String> {
        std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn compose_commands_name_the_service() {
        let f = std::path::Path::new("docker-compose.yml");
        let stop = compose_command(f, Action::Stop, Component::Postgres).expect("ok");
        assert_eq!(
            args(&stop),
            [
                "docker",
                "compose",
                "-f",
                "docker-compose.yml",
                "stop",
                "postgres"
            ]
        );
        let kill = compose_command(f, Action::Kill, Component::Consumer(0)).expect("ok");
        assert_eq!(args(&kill)[4..], ["kill", "-s", "SIGKILL", "consumer"]);
        let pause = compose_command(f, Action::Pause, Component::Kafka(0)).expect("ok");
        assert_eq!(args(&pause)[4..], ["pause", "kafka"]);
        assert!(compose_command(f, Action::Stop, Component::Consumer(1)).is_err());
    }

    #[test]
    fn exec_fills_in_action_and_component() {
        assert_eq!(
            exec_line(
                "ssh db1 sudo systemctl {action} {component}",
                Action::Pause,
                Component::Postgres
            ),
            "ssh db1 sudo systemctl pause postgres"
        );
    }
}
