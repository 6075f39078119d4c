//! The fault proxy on a local stack (`logctl up --with-proxies`): `logctl-faultproxy` stands on
//! the links the services depend on (PostgreSQL, Redis, each broker, each producer), so a
//! drill can slow, thin, black-hole or reset the network between them while every process
//! keeps running. Each broker advertises its link's address, so clients and the other
//! brokers' replica fetchers reach it through the proxy; the controller quorum does not. On a
//! stack on hosts (`--hosts`) the proxy stays on the machine and its links listen on the hosts'
//! uplink, so a host reaches a dependency through the machine: both kinds of fault then apply.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use logctl_faultproxy::control::LinkView;
use logctl_faultproxy::settings::Link;
use logctl_faultproxy::{Fault, Settings};

use super::layout::{Layout, StackConfig};
use super::{process, services, Component, StackError};

pub const NAME: &str = "faultproxy";
pub const BINARY: &str = "logctl-faultproxy";

/// The components with a link, in slot order.
pub fn linked(config: &StackConfig) -> Vec<Component> {
    Component::all(config)
        .into_iter()
        .filter(|c| c.link_slot().is_some())
        .collect()
}

/// One link per linked component, named as the component is.
pub fn links(config: &StackConfig) -> Vec<Link> {
    linked(config)
        .into_iter()
        .map(|c| Link {
            name: c.name(),
            listen: c.addr(config),
            upstream: c.listen(config).to_string(),
        })
        .collect()
}

/// The proxy's config file as `up` writes it: compared on every `up`, so a proxy started for
/// another shape (more producers, other ports) is restarted with the right links.
pub fn config(stack: &StackConfig) -> String {
    let settings = Settings {
        control: SocketAddr::from(([127, 0, 0, 1], stack.ports.fault_proxy)),
        proxies: links(stack),
    };
    format!(
        "# Written by `logctl up --with-proxies` on every start.\n{}",
        toml::to_string_pretty(&settings).unwrap_or_default()
    )
}

pub fn config_path(layout: &Layout) -> PathBuf {
    layout.component_dir(NAME).join("faultproxy.toml")
}

/// What its command line shows: the binary and this stack's config, so another stack's proxy
/// never counts as this one's.
pub fn marker(layout: &Layout) -> String {
    format!("{BINARY} {}", config_path(layout).display())
}

pub fn start(layout: &Layout, stack: &StackConfig) -> Result<u32, StackError> {
    let dir = layout.component_dir(NAME);
    std::fs::create_dir_all(&dir).map_err(|e| StackError::io(&dir, e))?;
    let path = config_path(layout);
    std::fs::write(&path, config(stack)).map_err(|e| StackError::io(&path, e))?;
    let mut cmd = Command::new(services::binary(BINARY)?);
    cmd.arg0(marker(layout)).env("LOGCTL_CONFIG", &path);
    // The operator's own `LOGCTL_FAULTPROXY_*` settings stay out of the stack's proxy.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("LOGCTL_FAULTPROXY_") {
            cmd.env_remove(key);
        }
    }
    process::spawn(cmd, &layout.log_file(NAME), &layout.pid_file(NAME))
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(
        "this stack has no fault proxy: network faults need `logctl up --with-proxies` \
         (on a stopped or new stack)"
    )]
    NoProxies,
    #[error("the fault proxy at {url} does not answer ({reason}): is the stack up?")]
    Unreachable { url: String, reason: String },
    #[error("the fault proxy refused {what}: {message}")]
    Refused { what: String, message: String },
}

/// The proxy's control API, as `logctl fault`, `status` and the drills use it.
#[derive(Clone)]
pub struct Control {
    base: String,
    http: reqwest::Client,
}

impl Control {
    pub fn new(config: &StackConfig) -> Result<Self, ControlError> {
        if !config.proxies {
            return Err(ControlError::NoProxies);
        }
        Ok(Self {
            base: format!("http://127.0.0.1:{}", config.ports.fault_proxy),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .build()
                .map_err(|e| ControlError::Unreachable {
                    url: String::new(),
                    reason: e.to_string(),
                })?,
        })
    }

    /// Every link with its faults and counters.
    pub async fn links(&self) -> Result<Vec<LinkView>, ControlError> {
        let url = format!("{}/proxies", self.base);
        let response = self.http.get(&url).send().await.map_err(|e| self.gone(e))?;
        Self::judge("the list of links", response)
            .await?
            .json()
            .await
            .map_err(|e| self.gone(e))
    }

    /// Sets `fault` on `link`, in place of any fault of the same kind it had (a second
    /// latency replaces the first; a latency and a bandwidth limit stack).
    pub async fn set(&self, link: &str, fault: Fault) -> Result<Vec<Fault>, ControlError> {
        let mut faults: Vec<Fault> = self
            .links()
            .await?
            .into_iter()
            .find(|l| l.name == link)
            .map(|l| l.faults)
            .unwrap_or_default();
        faults
            .retain(|f| std::mem::discriminant(f.toxic()) != std::mem::discriminant(fault.toxic()));
        faults.push(fault);
        let url = format!("{}/proxies/{link}/faults", self.base);
        let response = self
            .http
            .put(&url)
            .json(&faults)
            .send()
            .await
            .map_err(|e| self.gone(e))?;
        Self::judge(&format!("a fault on {link}"), response).await?;
        Ok(faults)
    }

    /// Clears one link's faults, or every link's.
    pub async fn clear(&self, link: Option<&str>) -> Result<(), ControlError> {
        let url = match link {
            Some(link) => format!("{}/proxies/{link}/faults", self.base),
            None => format!("{}/faults", self.base),
        };
        let response = self
            .http
            .delete(&url)
            .send()
            .await
            .map_err(|e| self.gone(e))?;
        Self::judge("clearing faults", response).await?;
        Ok(())
    }

    fn gone(&self, e: reqwest::Error) -> ControlError {
        ControlError::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        }
    }

    async fn judge(
        what: &str,
        response: reqwest::Response,
    ) -> Result<reqwest::Response, ControlError> {
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        Err(ControlError::Refused {
            what: what.to_owned(),
            message: body["message"]
                .as_str()
                .map_or_else(|| status.to_string(), str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dependency_gets_a_link_on_its_own_port() {
        let stack = StackConfig {
            brokers: 3,
            producers: 2,
            proxies: true,
            ..StackConfig::default()
        };
        let links = links(&stack);
        let names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "postgres",
                "redis",
                "kafka",
                "kafka-2",
                "kafka-3",
                "producer",
                "producer-2"
            ]
        );
        let mut ports: Vec<u16> = links.iter().map(|l| l.listen.port()).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(
            ports.len(),
            links.len(),
            "two links share a port: {links:?}"
        );
        let upstreams: Vec<&str> = links.iter().map(|l| l.upstream.as_str()).collect();
        assert_eq!(
            upstreams,
            [
                "127.0.0.1:5432",
                "127.0.0.1:6379",
                "127.0.0.1:9092",
                "127.0.0.1:9094",
                "127.0.0.1:9096",
                "127.0.0.1:8081",
                "127.0.0.1:8091"
            ]
        );
        assert!(links.iter().all(|l| l.listen.port() > 8474));
        // What the services are given is the link, what the link forwards to is the component.
        assert_eq!(Component::Redis.reach(&stack), links[1].listen.port());
        assert!(stack
            .bootstrap_servers()
            .contains(&links[2].listen.port().to_string()));
    }

    #[test]
    fn without_proxies_everything_is_reached_directly() {
        let stack = StackConfig::default();
        assert_eq!(Component::Postgres.reach(&stack), 5432);
        assert_eq!(stack.bootstrap_servers(), "127.0.0.1:9092");
        assert!(matches!(Control::new(&stack), Err(ControlError::NoProxies)));
    }

    #[test]
    fn config_parses_back_as_the_proxys_settings() {
        let stack = StackConfig {
            proxies: true,
            ..StackConfig::default()
        };
        let text = config(&stack);
        let settings: Settings = toml::from_str(&text).expect("parses");
        assert_eq!(settings.proxies, links(&stack));
        assert_eq!(settings.control.port(), 8474);
    }
}
