//! Faults on the hosts of a stack made with `logctl up --hosts`: a host isolated (its link to
//! the bridge down), or the link between two hosts cut, while every process keeps running.
//! `logctl fault`, the scenario runner and the TUI come through here.

use super::{Action, Outcome, Target};
use crate::stack::hosts::{self, Net};
use crate::stack::layout::{Layout, StackConfig};
use crate::stack::{Component, StackError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostFault {
    Isolate(Target),
    /// Both links of a pair cut.
    Partition(Target, Target),
    /// One host's isolation and partitions undone, one pair's partition, or (`None`) all.
    Heal(Option<Target>, Option<Target>),
}

impl HostFault {
    /// From the words `logctl fault` and drill files use: the verb and up to two hosts.
    pub fn parse(verb: &str, a: Option<&str>, b: Option<&str>) -> Result<HostFault, String> {
        let host = |name: Option<&str>| -> Result<Option<Target>, String> {
            let Some(name) = name else { return Ok(None) };
            match Target::parse(name) {
                Some(t @ Target::KafkaLeader) => Ok(Some(t)),
                Some(t @ Target::Component(c)) if c.host_slot().is_some() => Ok(Some(t)),
                _ => Err(format!(
                    "`{name}` is not a host: the hosts are postgres, redis, kafka (kafka-N, \
                     {}), producer-N, consumer-N and gateway-N",
                    Target::KAFKA_LEADER
                )),
            }
        };
        let (a, b) = (host(a)?, host(b)?);
        match (verb, a, b) {
            ("isolate", Some(a), None) => Ok(HostFault::Isolate(a)),
            ("isolate", _, _) => Err("isolate takes one host, e.g. `isolate kafka-leader`".into()),
            ("partition", Some(a), Some(b)) if a != b => Ok(HostFault::Partition(a, b)),
            ("partition", _, _) => {
                Err("partition takes two different hosts, e.g. `partition kafka kafka-2`".into())
            }
            ("heal", a, b) if a.is_some() || b.is_none() => Ok(HostFault::Heal(a, b)),
            (other, _, _) => Err(format!("`{other}` is not a host fault")),
        }
    }

    pub fn describe(&self) -> String {
        let name = |t: &Target| t.name();
        match self {
            HostFault::Isolate(a) => format!("isolate {}", name(a)),
            HostFault::Partition(a, b) => format!("partition {} {}", name(a), name(b)),
            HostFault::Heal(Some(a), Some(b)) => format!("heal {} {}", name(a), name(b)),
            HostFault::Heal(Some(a), None) => format!("heal {}", name(a)),
            HostFault::Heal(None, _) => "heal every host".into(),
        }
    }
}

fn net(config: &StackConfig) -> Result<Net, StackError> {
    config.net().ok_or_else(|| {
        StackError::Other(
            "this stack runs on loopback: isolate, heal and partition need a stack on hosts \
             (`logctl down`, then `logctl up --hosts`, as root)"
                .into(),
        )
    })
}

/// The host a target means now: `kafka-leader` is the leading broker to cut, and the
/// isolated broker (the leader that was) to heal.
async fn resolve(
    t: Target,
    healing: bool,
    layout: &Layout,
    config: &StackConfig,
) -> Result<Component, StackError> {
    if healing && t == Target::KafkaLeader {
        let net = net(config)?;
        return hosts::status(net, config)
            .into_iter()
            .filter(|h| h.link == "isolated" || !h.cut_from.is_empty())
            .filter_map(|h| Component::parse(&h.name))
            .find(|c| matches!(c, Component::Kafka(_)))
            .ok_or_else(|| StackError::Other("no broker is isolated or cut".into()));
    }
    t.resolve(Action::Kill, layout, config).await
}

async fn resolve_pair(
    a: Target,
    b: Target,
    healing: bool,
    layout: &Layout,
    config: &StackConfig,
) -> Result<(Component, Component), StackError> {
    Ok((
        resolve(a, healing, layout, config).await?,
        resolve(b, healing, layout, config).await?,
    ))
}

/// Applies the fault; the outcome names the hosts it resolved to, and `touched` the
/// components whose links changed (for a drill to undo).
pub async fn apply(
    fault: HostFault,
    layout: &Layout,
    config: &StackConfig,
) -> Result<(Outcome, Vec<(Component, Option<Component>)>), StackError> {
    let net = net(config)?;
    let (action, detail, touched) = match fault {
        HostFault::Isolate(t) => {
            let c = resolve(t, false, layout, config).await?;
            hosts::set_isolated(net, c, true)?;
            (
                "isolate",
                format!("{} cut off from every other host", c.name()),
                vec![(c, None)],
            )
        }
        HostFault::Partition(a, b) => {
            let (a, b) = resolve_pair(a, b, false, layout, config).await?;
            hosts::set_partitioned(net, a, b, true)?;
            (
                "partition",
                format!("{} and {} cut from each other", a.name(), b.name()),
                vec![(a, Some(b))],
            )
        }
        HostFault::Heal(Some(a), Some(b)) => {
            let (a, b) = resolve_pair(a, b, true, layout, config).await?;
            hosts::set_partitioned(net, a, b, false)?;
            (
                "heal",
                format!("{} and {} joined again", a.name(), b.name()),
                vec![(a, Some(b))],
            )
        }
        HostFault::Heal(one, _) => {
            let only = match one {
                Some(t) => Some(resolve(t, true, layout, config).await?),
                None => None,
            };
            heal(net, config, only)?;
            let what = only.map_or_else(|| "every host".to_owned(), |c| c.name());
            (
                "heal",
                format!("{what} on the network again"),
                only.map(|c| (c, None)).into_iter().collect(),
            )
        }
    };
    Ok((
        Outcome {
            component: touched
                .first()
                .map_or_else(|| "every host".to_owned(), |(c, _)| c.name()),
            action: action.into(),
            detail,
        },
        touched,
    ))
}

/// Undoes isolation and partitions: of `only`, or of every host.
pub fn heal(net: Net, config: &StackConfig, only: Option<Component>) -> Result<(), StackError> {
    for h in hosts::status(net, config) {
        let Some(c) = Component::parse(&h.name) else {
            continue;
        };
        let mine = only.is_none_or(|o| o == c);
        if mine && h.link == "isolated" {
            hosts::set_isolated(net, c, false)?;
        }
        for peer in h.cut_from.iter().filter_map(|p| Component::parse(p)) {
            if mine || only == Some(peer) {
                hosts::set_partitioned(net, c, peer, false)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_words_of_each_host_fault() {
        assert_eq!(
            HostFault::parse("isolate", Some("kafka-leader"), None),
            Ok(HostFault::Isolate(Target::KafkaLeader))
        );
        assert_eq!(
            HostFault::parse("partition", Some("kafka"), Some("kafka-2")),
            Ok(HostFault::Partition(
                Target::Component(Component::Kafka(0)),
                Target::Component(Component::Kafka(1))
            ))
        );
        assert_eq!(
            HostFault::parse("heal", None, None),
            Ok(HostFault::Heal(None, None))
        );
        assert!(HostFault::parse("isolate", None, None).is_err());
        assert!(HostFault::parse("partition", Some("kafka"), Some("kafka")).is_err());
        let not_a_host = HostFault::parse("isolate", Some("haproxy"), None).expect_err("edge");
        assert!(not_a_host.contains("not a host"), "{not_a_host}");
        assert_eq!(
            HostFault::parse("heal", Some("redis"), None)
                .expect("valid")
                .describe(),
            "heal redis"
        );
    }
}
