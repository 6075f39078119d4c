//! HAProxy from Debian's packages in front of several gateways (`logctl up --gateways N`): it
//! takes the public port, health-checks each gateway's `/health/ready` and sends a request
//! refused by a dead gateway to a live one. The settings are those of
//! `deploy/haproxy/haproxy.cfg`, which docker compose's cluster profile uses as it is; only the
//! addresses differ here.

use std::path::PathBuf;
use std::process::Command;

use super::layout::{Layout, StackConfig};
use super::process;
use super::{Component, StackError};

pub const TEMPLATE: &str = include_str!("../../../deploy/haproxy/haproxy.cfg");

/// Answered 200 by HAProxy itself while at least one gateway passes its check, 503 otherwise.
pub const READY_PATH: &str = "/health/balancer";

/// The local config: the template with the public bind on loopback and one server line per
/// gateway instance (named as `logctl status` names them), in place of the template's.
pub fn config(stack: &StackConfig) -> String {
    let mut out = String::from("# Written by `logctl up --gateways N` on every start.\n");
    let mut servers_written = false;
    for line in TEMPLATE.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        if trimmed.starts_with("bind ") {
            out.push_str(&format!(
                "{indent}bind 127.0.0.1:{}\n",
                Component::Balancer.port(stack)
            ));
        } else if trimmed.starts_with("server ") {
            if !servers_written {
                for i in 0..stack.gateways.max(1) {
                    let gateway = Component::Gateway(i);
                    out.push_str(&format!(
                        "{indent}server {} {}\n",
                        gateway.name(),
                        gateway.addr(stack)
                    ));
                }
                servers_written = true;
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

pub fn config_path(layout: &Layout) -> PathBuf {
    layout.component_dir("haproxy").join("haproxy.cfg")
}

/// What its command line contains: this stack's config path.
pub fn marker(layout: &Layout) -> String {
    config_path(layout).display().to_string()
}

/// Writes the config, checks it with `haproxy -c` and starts HAProxy in the foreground
/// (readiness is awaited by the caller).
pub fn start(layout: &Layout, stack: &StackConfig) -> Result<u32, StackError> {
    let binary = process::debian_program("haproxy", "haproxy")?;
    let dir = layout.component_dir("haproxy");
    std::fs::create_dir_all(&dir).map_err(|e| StackError::io(&dir, e))?;
    let path = config_path(layout);
    std::fs::write(&path, config(stack)).map_err(|e| StackError::io(&path, e))?;
    let check = Command::new(&binary)
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .map_err(|e| StackError::Spawn {
            program: binary.display().to_string(),
            reason: e.to_string(),
        })?;
    if !check.status.success() {
        return Err(StackError::Command {
            what: format!("haproxy -c -f {}", path.display()),
            output: String::from_utf8_lossy(&check.stdout).into_owned()
                + &String::from_utf8_lossy(&check.stderr),
        });
    }
    let mut cmd = Command::new(binary);
    // -db: in the foreground, one process, so the pid is the one to signal.
    cmd.arg("-db").arg("-f").arg(&path);
    process::spawn(
        cmd,
        &layout.log_file("haproxy"),
        &layout.pid_file("haproxy"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_config_points_at_each_gateway_instance() {
        let stack = StackConfig {
            gateways: 3,
            ..StackConfig::default()
        };
        let text = config(&stack);
        assert!(text.contains("    bind 127.0.0.1:8080\n"), "{text}");
        for server in [
            "server gateway 127.0.0.1:8083",
            "server gateway-2 127.0.0.1:8093",
            "server gateway-3 127.0.0.1:8103",
        ] {
            assert!(text.contains(server), "{server} missing:\n{text}");
        }
        let servers = text
            .lines()
            .filter(|l| l.trim_start().starts_with("server "))
            .count();
        assert_eq!(servers, 3, "{text}");
        assert!(text.contains("option httpchk GET /health/ready"));
        assert!(text.contains(&format!("monitor-uri {READY_PATH}")));
    }
}
