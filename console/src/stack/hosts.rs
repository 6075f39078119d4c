//! `logctl up --hosts`: each broker, PostgreSQL, Redis and each service instance on a host of
//! its own, a network namespace with its own address, all joined by one bridge that lives in a
//! namespace of the stack's, so a link can be cut while the process on it keeps running.
//!
//! ```text
//!  machine (root namespace)                 lc<N>-net              lc<N>-kafka-2 ...
//!  127.0.0.1:8080 HAProxy, the console      br0 ── lc<N>h11 ──── eth0 198.18.N.11
//!  lc<N>up 198.18.N.1 ───────────────────── up0 ─┘
//! ```
//!
//! Addresses come from 198.18.0.0/15, the range set aside for benchmarking networks (RFC
//! 2544): they exist only on the links made here, and nothing is routed anywhere else. The
//! one link into the machine's own namespace (`lc<N>up`) is how the edge (HAProxy on the
//! public port) and the console reach the hosts. Partitions between two hosts are nftables
//! rules inside their own namespaces; the machine's own tables are never touched.
//!
//! Everything is made with `ip` and `nft` as root, and undone by [`remove`], which also
//! cleans what a crashed run left: every namespace and link named for this stack's network.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::Command;

use serde::Serialize;

use super::layout::StackConfig;
use super::process::run_checked;
use super::{Component, StackError};

/// The network of a stack's hosts: `198.18.<octet>.0/24`, namespaces `lc<octet>-<host>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    pub octet: u8,
}

/// The root namespace's end of the stack's link, and the edge's address on it.
const EDGE_HOST: u8 = 1;

impl Net {
    pub fn prefix(self) -> String {
        format!("lc{}", self.octet)
    }

    /// The namespace holding the bridge.
    pub fn switch(self) -> String {
        format!("{}-net", self.prefix())
    }

    pub fn namespace(self, c: Component) -> String {
        format!("{}-{}", self.prefix(), c.name())
    }

    /// The machine's end of the link into the bridge.
    pub fn uplink(self) -> String {
        format!("{}up", self.prefix())
    }

    /// The bridge's end of host `c`'s link (at most 15 characters: `lc255h233`).
    pub fn port(self, c: Component) -> Option<String> {
        Some(format!("{}h{}", self.prefix(), c.host_slot()?))
    }

    pub fn edge(self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.octet, EDGE_HOST)
    }

    pub fn ip(self, c: Component) -> Option<Ipv4Addr> {
        Some(Ipv4Addr::new(198, 18, self.octet, c.host_slot()?))
    }

    pub fn subnet(self) -> String {
        format!("198.18.{}.0/24", self.octet)
    }
}

fn ip(args: &[&str]) -> Result<String, StackError> {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    run_checked(cmd, &format!("ip {}", args.join(" ")))
}

/// Runs `nft` inside a host's namespace.
fn nft(namespace: &str, script: &str) -> Result<String, StackError> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", namespace, "nft", script]);
    run_checked(cmd, &format!("nft {script} in {namespace}"))
}

/// Why `--hosts` cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some(
            "`--hosts` makes network namespaces and links, which needs root: run `sudo logctl \
             up --hosts`, or use `logctl up --with-proxies` for latency, bandwidth, black holes \
             and resets on an unprivileged stack"
                .into(),
        );
    }
    for (program, package) in [("ip", "iproute2"), ("nft", "nftables")] {
        if super::process::which(program).is_none() {
            return Some(format!(
                "`--hosts` needs `{program}`: run scripts/bootstrap (or apt-get install {package})"
            ));
        }
    }
    None
}

/// The namespaces of this network that exist now.
fn existing(net: Net) -> Vec<String> {
    let prefix = format!("{}-", net.prefix());
    ip(&["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

/// The hosts of a stack of this shape: every component but the edge's (HAProxy, Prometheus).
pub fn hosted(config: &StackConfig) -> Vec<Component> {
    Component::all(config)
        .into_iter()
        .filter(|c| c.host_slot().is_some())
        .collect()
}

/// Makes what is missing of the bridge, the uplink and a host for each component, and removes
/// hosts of instances the stack no longer has. A network without its bridge or uplink (a
/// crash mid-way) is removed and made again; on failure nothing is left behind.
pub fn create(net: Net, config: &StackConfig) -> Result<(), StackError> {
    let hosts = hosted(config);
    let have = existing(net);
    if !have.contains(&net.switch()) || ip(&["link", "show", &net.uplink()]).is_err() {
        remove(net);
    }
    let made = (|| {
        let switch = net.switch();
        if !existing(net).contains(&switch) {
            ip(&["netns", "add", &switch])?;
            ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
            ip(&["-n", &switch, "link", "set", "br0", "up"])?;
            ip(&[
                "link",
                "add",
                "name",
                &net.uplink(),
                "type",
                "veth",
                "peer",
                "name",
                "up0",
                "netns",
                &switch,
            ])?;
            ip(&["-n", &switch, "link", "set", "up0", "master", "br0", "up"])?;
            ip(&[
                "addr",
                "add",
                &format!("{}/24", net.edge()),
                "dev",
                &net.uplink(),
            ])?;
            ip(&["link", "set", &net.uplink(), "up"])?;
        }
        let have = existing(net);
        for c in &hosts {
            if !have.contains(&net.namespace(*c)) {
                add_host(net, *c)?;
            }
        }
        let wanted: Vec<String> = hosts.iter().map(|c| net.namespace(*c)).collect();
        for ns in have {
            if ns != switch && !wanted.contains(&ns) {
                ip(&["netns", "del", &ns])?;
            }
        }
        Ok(())
    })();
    if made.is_err() {
        remove(net);
    }
    made
}

fn add_host(net: Net, c: Component) -> Result<(), StackError> {
    let (Some(port), Some(addr)) = (net.port(c), net.ip(c)) else {
        return Ok(());
    };
    let ns = net.namespace(c);
    let switch = net.switch();
    ip(&["netns", "add", &ns])?;
    ip(&["-n", &ns, "link", "set", "lo", "up"])?;
    ip(&[
        "-n", &switch, "link", "add", "name", &port, "type", "veth", "peer", "name", "eth0",
        "netns", &ns,
    ])?;
    ip(&["-n", &switch, "link", "set", &port, "master", "br0", "up"])?;
    ip(&[
        "-n",
        &ns,
        "addr",
        "add",
        &format!("{addr}/24"),
        "dev",
        "eth0",
    ])?;
    ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
    // Partitions: addresses in `cut` are dropped both ways, inside this host only.
    nft(
        &ns,
        "add table ip logctl; \
         add set ip logctl cut { type ipv4_addr; }; \
         add chain ip logctl in { type filter hook input priority 0; policy accept; }; \
         add chain ip logctl out { type filter hook output priority 0; policy accept; }; \
         add rule ip logctl in ip saddr @cut drop; \
         add rule ip logctl out ip daddr @cut drop",
    )?;
    Ok(())
}

/// Removes every namespace and link of this network (deleting a namespace takes its ends of
/// the links with it). Safe to call when nothing is there.
pub fn remove(net: Net) {
    let _ = ip(&["link", "del", &net.uplink()]);
    for ns in existing(net) {
        let _ = ip(&["netns", "del", &ns]);
    }
}

/// A free network for a new stack: an octet no namespace, link or route uses yet.
pub fn pick() -> Result<Net, StackError> {
    let routes = ip(&["route", "show"]).unwrap_or_default();
    let netns = ip(&["netns", "list"]).unwrap_or_default();
    let links = ip(&["link", "show"]).unwrap_or_default();
    for _ in 0..256 {
        let net = Net {
            octet: rand::random_range(2..=254),
        };
        let used = routes.contains(&format!("198.18.{}.", net.octet))
            || netns.contains(&format!("{}-", net.prefix()))
            || links.contains(&net.uplink());
        if !used {
            return Ok(net);
        }
    }
    Err(StackError::Other(
        "no free 198.18.N.0/24 network for the stack's hosts".into(),
    ))
}

/// Runs `start` on a thread inside `c`'s namespace, so every process it spawns lives there
/// (a namespace is a thread's, and children inherit it); the caller's thread is untouched.
pub fn within<T: Send>(
    net: Net,
    c: Component,
    start: impl FnOnce() -> Result<T, StackError> + Send,
) -> Result<T, StackError> {
    let path = format!("/run/netns/{}", net.namespace(c));
    let ns = std::fs::File::open(&path).map_err(|e| StackError::io(path.as_ref(), e))?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| StackError::Other(format!("cannot enter {path}: {e}")))?;
                start()
            })
            .join()
            .unwrap_or_else(|_| Err(StackError::Other("a start thread panicked".into())))
    })
}

/// Takes host `c` off the bridge (its process keeps running, unreachable), or puts it back.
pub fn set_isolated(net: Net, c: Component, isolated: bool) -> Result<(), StackError> {
    let port = net
        .port(c)
        .ok_or_else(|| StackError::Other(format!("{} is not on a host of its own", c.name())))?;
    ip(&[
        "-n",
        &net.switch(),
        "link",
        "set",
        &port,
        if isolated { "down" } else { "up" },
    ])
    .map(|_| ())
}

/// Cuts (or restores) the link between hosts `a` and `b` only: each drops the other's packets.
pub fn set_partitioned(net: Net, a: Component, b: Component, cut: bool) -> Result<(), StackError> {
    let missing = |c: Component| StackError::Other(format!("{} is not a host", c.name()));
    let (ip_a, ip_b) = (
        net.ip(a).ok_or_else(|| missing(a))?,
        net.ip(b).ok_or_else(|| missing(b))?,
    );
    for (host, peer) in [(a, ip_b), (b, ip_a)] {
        let verb = if cut { "add" } else { "delete" };
        let done = nft(
            &net.namespace(host),
            &format!("{verb} element ip logctl cut {{ {peer} }}"),
        );
        // Healing a link that was never cut is not an error.
        if cut {
            done?;
        }
    }
    Ok(())
}

/// Is host `c`'s link to the bridge down?
pub fn is_isolated(net: Net, c: Component) -> bool {
    let Some(port) = net.port(c) else {
        return false;
    };
    ip(&["-n", &net.switch(), "-br", "link", "show", "dev", &port])
        .is_ok_and(|brief| port_down(&brief, &port))
}

/// Whether `ip -br link show` (one port's or the bridge's every port) lists `port` as DOWN.
fn port_down(brief: &str, port: &str) -> bool {
    brief.lines().any(|l| {
        let mut cols = l.split_whitespace();
        cols.next().and_then(|n| n.split('@').next()) == Some(port) && cols.next() == Some("DOWN")
    })
}

/// One host as `status` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostStatus {
    pub name: String,
    pub namespace: String,
    pub address: Ipv4Addr,
    /// `up`, or `isolated` when its link to the bridge is down.
    pub link: &'static str,
    /// Hosts it is partitioned from.
    pub cut_from: Vec<String>,
}

pub fn status(net: Net, config: &StackConfig) -> Vec<HostStatus> {
    let hosts = hosted(config);
    let down = ip(&["-n", &net.switch(), "-br", "link", "show"]).unwrap_or_default();
    let by_ip = |addr: &str| {
        hosts
            .iter()
            .find(|c| net.ip(**c).is_some_and(|i| i.to_string() == addr))
            .map(|c| c.name())
    };
    hosts
        .iter()
        .filter_map(|c| {
            let port = net.port(*c)?;
            let isolated = port_down(&down, &port);
            let cut = nft(&net.namespace(*c), "list set ip logctl cut").unwrap_or_default();
            let cut_from = cut
                .split(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
                .filter(|w| w.starts_with("198.18."))
                .filter_map(by_ip)
                .collect();
            Some(HostStatus {
                name: c.name(),
                namespace: net.namespace(*c),
                address: net.ip(*c)?,
                link: if isolated { "isolated" } else { "up" },
                cut_from,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_kernels_limits_and_addresses_stay_in_the_benchmark_range() {
        let net = Net { octet: 255 };
        let config = StackConfig {
            brokers: 5,
            producers: 64,
            consumers: 64,
            gateways: 64,
            ..StackConfig::default()
        };
        let hosts = hosted(&config);
        let mut addresses: Vec<Ipv4Addr> = hosts.iter().filter_map(|c| net.ip(*c)).collect();
        assert_eq!(addresses.len(), hosts.len());
        addresses.sort();
        addresses.dedup();
        assert_eq!(addresses.len(), hosts.len(), "two hosts share an address");
        for c in hosts {
            let port = net.port(c).expect("a host has a port");
            assert!(port.len() <= 15, "{port} is too long for an interface name");
            let ip = net.ip(c).expect("address");
            assert_eq!(ip.octets()[..3], [198, 18, 255]);
            assert!(ip != net.edge() && ip.octets()[3] < 255);
        }
        assert!(net.uplink().len() <= 15);
        assert_eq!(net.ip(Component::Balancer), None, "the edge is the machine");
    }

    #[test]
    fn a_ports_state_is_read_from_its_own_line_only() {
        let brief = "br0              UP             16:53 <UP>\n\
                     lc2h10@if2       DOWN           56:2b <NO-CARRIER>\n\
                     lc2h100@if9      UP             56:2c <UP>\n";
        assert!(port_down(brief, "lc2h10"));
        assert!(!port_down(brief, "lc2h100"));
        assert!(!port_down(brief, "lc2h1"));
    }
}
