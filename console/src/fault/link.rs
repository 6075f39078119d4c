//! Faults on the network between components: latency, a bandwidth limit, a black hole or
//! connection resets on a link of the stack's fault proxy (`logctl up --with-proxies`). The
//! process on the far side keeps running; only what crosses the link changes. `logctl fault`,
//! the scenario runner and `status` all come through here.

use logctl_faultproxy::{parse_duration, parse_rate, Direction, Fault, Toxic};

use super::{Action, Outcome, Target};
use crate::stack::faultproxy::Control;
use crate::stack::layout::{Layout, StackConfig};
use crate::stack::{Component, StackError};

/// What can be done to a link; `clear` undoes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Latency,
    Bandwidth,
    Blackhole,
    Reset,
}

impl Kind {
    pub const NAMES: [&'static str; 4] = ["latency", "bandwidth", "blackhole", "reset"];

    pub fn parse(word: &str) -> Option<Kind> {
        Some(match word {
            "latency" => Kind::Latency,
            "bandwidth" => Kind::Bandwidth,
            "blackhole" => Kind::Blackhole,
            "reset" => Kind::Reset,
            _ => return None,
        })
    }
}

/// How a fault is written by an operator: the kind, its amount and options, as words.
#[derive(Debug, Clone, Default)]
pub struct Words<'a> {
    /// `200ms` for latency, `1mbit` for bandwidth; none for the others.
    pub value: Option<&'a str>,
    pub jitter: Option<&'a str>,
    pub direction: Option<&'a str>,
    pub toxicity: Option<f64>,
}

/// A validated fault from its words. Latency acts on answers by default (Toxiproxy's
/// downstream), so `latency kafka 200ms` adds 200 ms to each round trip, not 400; the rest act
/// both ways.
pub fn fault(kind: Kind, w: &Words<'_>) -> Result<Fault, String> {
    let needs_value = |what: &str, example: &str| {
        w.value
            .ok_or_else(|| format!("{what} needs an amount, e.g. `{example}`"))
    };
    let no_value = |name: &str| match w.value {
        Some(v) => Err(format!("{name} takes no amount (got `{v}`)")),
        None => Ok(()),
    };
    let toxic = match kind {
        Kind::Latency => {
            let latency = parse_duration(needs_value("latency", "latency kafka 200ms")?)
                .map_err(|e| e.to_string())?;
            let jitter = w
                .jitter
                .map(parse_duration)
                .transpose()
                .map_err(|e| format!("jitter: {e}"))?
                .unwrap_or_default();
            Toxic::Latency {
                latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
                jitter_ms: u64::try_from(jitter.as_millis()).unwrap_or(u64::MAX),
            }
        }
        Kind::Bandwidth => Toxic::Bandwidth {
            bytes_per_second: parse_rate(needs_value("bandwidth", "bandwidth postgres 1mbit")?)
                .map_err(|e| e.to_string())?,
        },
        Kind::Blackhole => {
            no_value("blackhole")?;
            Toxic::Blackhole
        }
        Kind::Reset => {
            no_value("reset")?;
            Toxic::Reset
        }
    };
    if w.jitter.is_some() && kind != Kind::Latency {
        return Err("jitter goes with latency only".into());
    }
    let direction = match w.direction {
        None if kind == Kind::Latency => Direction::Downstream,
        None | Some("both") => Direction::Both,
        Some("upstream") => Direction::Upstream,
        Some("downstream") => Direction::Downstream,
        Some(other) => {
            return Err(format!(
                "direction `{other}`: choose upstream (towards the dependency), downstream \
                 (answers) or both"
            ))
        }
    };
    Fault::new(toxic, direction, w.toxicity.unwrap_or(1.0)).map_err(|e| e.to_string())
}

/// Which links a fault goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// A kind's bare name (`kafka`, `producer`): every instance's link, as "Kafka is slow"
    /// means every broker. `kafka-1` names the first alone.
    Every(Every),
    /// One component's link (`kafka-2`, `postgres`), or the leading broker's.
    One(Target),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Every {
    Kafka,
    Producer,
}

impl Links {
    pub fn parse(name: &str) -> Result<Links, String> {
        let target = match name {
            "kafka" => return Ok(Links::Every(Every::Kafka)),
            "producer" => return Ok(Links::Every(Every::Producer)),
            other => Target::parse(other),
        };
        let has_link = |t: &Target| match t {
            Target::Component(c) => c.link_slot().is_some(),
            Target::KafkaLeader => true,
        };
        match target {
            Some(t) if has_link(&t) => Ok(Links::One(t)),
            _ => Err(format!(
                "`{name}` has no link: the fault proxy stands in front of postgres, redis, kafka \
                 (every broker; kafka-N one, {} the leader) and producer (every instance; \
                 producer-N one)",
                Target::KAFKA_LEADER
            )),
        }
    }

    pub fn name(self) -> String {
        match self {
            Links::Every(Every::Kafka) => "kafka".into(),
            Links::Every(Every::Producer) => "producer".into(),
            Links::One(t) => t.name(),
        }
    }

    /// The link names this means now (the leader is asked of Kafka when the fault is set).
    pub async fn resolve(
        self,
        layout: &Layout,
        config: &StackConfig,
    ) -> Result<Vec<String>, StackError> {
        Ok(match self {
            Links::Every(Every::Kafka) => (0..config.brokers.max(1))
                .map(|i| Component::Kafka(i).name())
                .collect(),
            Links::Every(Every::Producer) => (0..config.producers.max(1))
                .map(|i| Component::Producer(i).name())
                .collect(),
            Links::One(t) => vec![t.resolve(Action::Kill, layout, config).await?.name()],
        })
    }
}

fn control(config: &StackConfig) -> Result<Control, StackError> {
    Control::new(config).map_err(|e| StackError::Other(e.to_string()))
}

/// Sets `fault` on every link `links` means, each in place of a fault of the same kind.
pub async fn set(
    links: Links,
    fault: &Fault,
    layout: &Layout,
    config: &StackConfig,
) -> Result<(Outcome, Vec<String>), StackError> {
    let control = control(config)?;
    let names = links.resolve(layout, config).await?;
    for name in &names {
        control
            .set(name, fault.clone())
            .await
            .map_err(|e| StackError::Other(e.to_string()))?;
    }
    Ok((
        Outcome {
            component: names.join(","),
            action: kind_name(fault).into(),
            detail: format!("{fault} on the link to {}", names.join(", ")),
        },
        names,
    ))
}

/// Clears the faults on what `links` means, or on every link.
pub async fn clear(
    links: Option<Links>,
    layout: &Layout,
    config: &StackConfig,
) -> Result<Outcome, StackError> {
    let control = control(config)?;
    let names = match links {
        Some(l) => l.resolve(layout, config).await?,
        None => Vec::new(),
    };
    if names.is_empty() {
        control
            .clear(None)
            .await
            .map_err(|e| StackError::Other(e.to_string()))?;
    }
    for name in &names {
        control
            .clear(Some(name))
            .await
            .map_err(|e| StackError::Other(e.to_string()))?;
    }
    Ok(Outcome {
        component: if names.is_empty() {
            "every link".into()
        } else {
            names.join(",")
        },
        action: "clear".into(),
        detail: "no faults left".into(),
    })
}

fn kind_name(fault: &Fault) -> &'static str {
    match fault.toxic() {
        Toxic::Latency { .. } => "latency",
        Toxic::Bandwidth { .. } => "bandwidth",
        Toxic::Blackhole => "blackhole",
        Toxic::Reset => "reset",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(value: &str) -> Words<'_> {
        Words {
            value: Some(value),
            ..Words::default()
        }
    }

    #[test]
    fn latency_acts_on_answers_unless_told_otherwise() {
        let f = fault(
            Kind::Latency,
            &Words {
                jitter: Some("50ms"),
                ..words("200ms")
            },
        )
        .expect("valid");
        assert_eq!(
            f.toxic(),
            &Toxic::Latency {
                latency_ms: 200,
                jitter_ms: 50
            }
        );
        assert_eq!(f.direction(), Direction::Downstream);
        let both = fault(
            Kind::Latency,
            &Words {
                direction: Some("both"),
                ..words("1s")
            },
        )
        .expect("valid");
        assert_eq!(both.direction(), Direction::Both);
    }

    #[test]
    fn bandwidth_reads_tc_rates() {
        let f = fault(Kind::Bandwidth, &words("1mbit")).expect("valid");
        assert_eq!(
            f.toxic(),
            &Toxic::Bandwidth {
                bytes_per_second: 125_000
            }
        );
        assert_eq!(f.direction(), Direction::Both);
    }

    #[test]
    fn bad_words_are_named() {
        let err = |k, w: Words<'_>| fault(k, &w).expect_err("refused");
        assert!(err(Kind::Latency, Words::default()).contains("needs an amount"));
        assert!(err(Kind::Latency, words("fast")).contains("duration"));
        assert!(err(Kind::Bandwidth, words("1 lightyear")).contains("rate"));
        assert!(err(Kind::Blackhole, words("5s")).contains("takes no amount"));
        assert!(err(
            Kind::Reset,
            Words {
                jitter: Some("1ms"),
                ..Words::default()
            }
        )
        .contains("jitter"));
        assert!(err(
            Kind::Blackhole,
            Words {
                direction: Some("sideways"),
                ..Words::default()
            }
        )
        .contains("direction"));
        assert!(err(
            Kind::Reset,
            Words {
                toxicity: Some(1.5),
                ..Words::default()
            }
        )
        .contains("toxicity"));
    }

    #[test]
    fn a_kinds_bare_name_means_every_instance() {
        assert_eq!(Links::parse("kafka"), Ok(Links::Every(Every::Kafka)));
        assert_eq!(
            Links::parse("kafka-1"),
            Ok(Links::One(Target::Component(Component::Kafka(0))))
        );
        assert_eq!(
            Links::parse("kafka-leader"),
            Ok(Links::One(Target::KafkaLeader))
        );
        assert_eq!(
            Links::parse("postgresql"),
            Ok(Links::One(Target::Component(Component::Postgres)))
        );
        let refused = Links::parse("consumer").expect_err("no link");
        assert!(refused.contains("has no link"), "{refused}");
        assert!(Links::parse("gateway-2").is_err());
    }
}
