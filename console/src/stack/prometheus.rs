//! Prometheus from Debian's packages (`logctl up --with-prometheus`), scraping the stack's
//! services with the alert rules in `deploy/prometheus/rules.yml`. The jobs, intervals and
//! rules match `deploy/prometheus/prometheus.yml`, which docker-compose uses.

use std::path::PathBuf;
use std::process::Command;

use super::layout::{Layout, StackConfig};
use super::process;
use super::{Component, StackError};

pub const RULES: &str = include_str!("../../../deploy/prometheus/rules.yml");
pub const MARKER: &str = "prometheus/prometheus.yml";

/// The local scrape config: one job per service, the same names as in docker-compose.
pub fn config(config: &StackConfig, rules: &std::path::Path) -> String {
    let target = |c: Component| format!("\"{}\"", c.listen(config));
    let consumers: Vec<String> = (0..config.consumers.max(1))
        .map(|i| target(Component::Consumer(i)))
        .collect();
    let producers: Vec<String> = (0..config.producers.max(1))
        .map(|i| target(Component::Producer(i)))
        .collect();
    let gateways: Vec<String> = (0..config.gateways.max(1))
        .map(|i| target(Component::Gateway(i)))
        .collect();
    format!(
        "# Written by `logctl up --with-prometheus` on every start.\n\
         global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n\n\
         rule_files:\n  - {rules}\n\n\
         scrape_configs:\n\
         \x20 - job_name: gateway\n    static_configs:\n      - targets: [{gateway}]\n\
         \x20 - job_name: producer\n    static_configs:\n      - targets: [{producer}]\n\
         \x20 - job_name: consumer\n    static_configs:\n      - targets: [{consumers}]\n",
        rules = rules.display(),
        gateway = gateways.join(", "),
        producer = producers.join(", "),
        consumers = consumers.join(", "),
    )
}

pub fn config_path(layout: &Layout) -> PathBuf {
    layout.component_dir("prometheus").join("prometheus.yml")
}

/// Writes the config and rules and starts the server (readiness is awaited by the caller).
pub fn start(layout: &Layout, stack: &StackConfig) -> Result<u32, StackError> {
    let binary = process::debian_program("prometheus", "prometheus")?;
    let dir = layout.component_dir("prometheus");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).map_err(|e| StackError::io(&data, e))?;
    let rules = dir.join("rules.yml");
    std::fs::write(&rules, RULES).map_err(|e| StackError::io(&rules, e))?;
    let path = config_path(layout);
    std::fs::write(&path, config(stack, &rules)).map_err(|e| StackError::io(&path, e))?;
    let mut cmd = Command::new(binary);
    cmd.arg(format!("--config.file={}", path.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!(
            "--web.listen-address=127.0.0.1:{}",
            stack.ports.prometheus
        ))
        .arg("--storage.tsdb.retention.time=2d")
        .arg("--web.enable-lifecycle");
    process::spawn(
        cmd,
        &layout.log_file("prometheus"),
        &layout.pid_file("prometheus"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrapes_every_consumer_instance() {
        let stack = StackConfig {
            consumers: 3,
            ..StackConfig::default()
        };
        let text = config(&stack, std::path::Path::new("/x/rules.yml"));
        assert!(
            text.contains("\"127.0.0.1:8082\", \"127.0.0.1:8092\", \"127.0.0.1:8102\""),
            "{text}"
        );
        assert!(text.contains("- /x/rules.yml"));
    }
}
