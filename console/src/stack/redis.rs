//! Redis from Debian's packages: on loopback (or its host's address), no persistence (it holds rate-limit counters
//! and cache entries, all of which can be rebuilt).

use std::process::Command;

use super::layout::Layout;
use super::process;
use super::StackError;

pub const MARKER: &str = "redis-server";

pub fn start(layout: &Layout, listen: std::net::SocketAddr) -> Result<u32, StackError> {
    let server = process::debian_program("redis-server", "redis-server")?;
    let dir = layout.component_dir("redis");
    std::fs::create_dir_all(&dir).map_err(|e| StackError::io(&dir, e))?;
    let mut cmd = Command::new(server);
    cmd.args([
        "--bind",
        &listen.ip().to_string(),
        "--port",
        &listen.port().to_string(),
    ])
    .args([
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "yes",
    ])
    .arg("--dir")
    .arg(&dir);
    process::spawn(cmd, &layout.log_file("redis"), &layout.pid_file("redis"))
}
