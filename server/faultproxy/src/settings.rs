//! The proxy process's one config: where its control API listens and the links it stands on.
//! Defaults, then a TOML file (`LOGCTL_CONFIG`), then `LOGCTL_FAULTPROXY_*` variables.

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The control API: faults are set and cleared here. Toxiproxy's port by default.
    pub control: SocketAddr,
    pub proxies: Vec<Link>,
}

/// One proxied link: clients connect to `listen`, the proxy to `upstream`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub name: String,
    pub listen: SocketAddr,
    /// `host:port`: an address, or a name resolved on each connection.
    pub upstream: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            control: SocketAddr::from(([127, 0, 0, 1], 8474)),
            proxies: Vec::new(),
        }
    }
}

impl Settings {
    pub fn load(file: Option<&Path>) -> Result<Self, logctl_core::config::ConfigError> {
        logctl_core::config::load("LOGCTL_FAULTPROXY_", file)
    }
}
