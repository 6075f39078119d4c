//! What can be done to a link: the toxics, the direction they act in, and the share of
//! connections they touch. Validated on construction, so a proxy only ever holds faults it can
//! apply.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FaultError {
    #[error("toxicity must be between 0 and 1, got {0}")]
    Toxicity(f64),
    #[error("bandwidth must be at least 1 byte/s")]
    Bandwidth,
    #[error("latency {0:?} is longer than the hour a drill could wait for")]
    Latency(Duration),
    #[error("not a fault: {0}")]
    Json(String),
    #[error("cannot read {input:?} as {what}: {hint}")]
    Parse {
        input: String,
        what: &'static str,
        hint: &'static str,
    },
}

impl FaultError {
    /// The field of a fault's JSON the error is about, for a 400 that names it.
    pub fn field(&self) -> &'static str {
        match self {
            FaultError::Toxicity(_) => "toxicity",
            FaultError::Bandwidth => "bytes_per_second",
            FaultError::Latency(_) => "latency_ms",
            FaultError::Json(_) | FaultError::Parse { .. } => "body",
        }
    }
}

/// Which way the bytes flow: towards the dependency (requests) or back to the client
/// (answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Upstream,
    Downstream,
    Both,
}

impl Direction {
    pub fn includes(self, other: Direction) -> bool {
        self == Direction::Both || self == other
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Toxic {
    /// Every chunk held this long, give or take a uniform `jitter`; order is kept, and chunks
    /// in flight overlap, so latency does not become a bandwidth cap.
    Latency { latency_ms: u64, jitter_ms: u64 },
    /// Bytes forwarded no faster than this.
    Bandwidth { bytes_per_second: u64 },
    /// Connections are accepted and bytes read, but nothing is forwarded: the peer waits for
    /// an answer that never comes (a dropped route, a hung server).
    Blackhole,
    /// Connections reset (RST): those open when the fault is set and every new one.
    Reset,
}

/// A toxic on a link: validated, so a proxy never holds one it cannot apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawFault")]
pub struct Fault {
    #[serde(flatten)]
    toxic: Toxic,
    direction: Direction,
    toxicity: f64,
}

#[derive(Deserialize)]
struct RawFault {
    #[serde(flatten)]
    toxic: Toxic,
    #[serde(default = "both")]
    direction: Direction,
    #[serde(default = "all")]
    toxicity: f64,
}

fn both() -> Direction {
    Direction::Both
}

fn all() -> f64 {
    1.0
}

impl TryFrom<RawFault> for Fault {
    type Error = FaultError;
    fn try_from(raw: RawFault) -> Result<Self, FaultError> {
        Fault::new(raw.toxic, raw.direction, raw.toxicity)
    }
}

const LONGEST: Duration = Duration::from_secs(3600);

impl Fault {
    pub fn new(toxic: Toxic, direction: Direction, toxicity: f64) -> Result<Self, FaultError> {
        if !(0.0..=1.0).contains(&toxicity) {
            return Err(FaultError::Toxicity(toxicity));
        }
        match &toxic {
            Toxic::Bandwidth {
                bytes_per_second: 0,
            } => return Err(FaultError::Bandwidth),
            Toxic::Latency {
                latency_ms,
                jitter_ms,
            } => {
                let longest = Duration::from_millis(latency_ms.saturating_add(*jitter_ms));
                if longest > LONGEST {
                    return Err(FaultError::Latency(longest));
                }
            }
            _ => {}
        }
        Ok(Self {
            toxic,
            direction,
            toxicity,
        })
    }

    /// From its JSON form (`{"type": "latency", "latency_ms": 200, "direction": "upstream"}`),
    /// with the rule that failed named rather than buried in a parser's message.
    pub fn from_json(body: &[u8]) -> Result<Self, FaultError> {
        let raw: RawFault =
            serde_json::from_slice(body).map_err(|e| FaultError::Json(e.to_string()))?;
        Self::try_from(raw)
    }

    /// The same from JSON already parsed (an element of an array of faults).
    pub fn from_value(value: serde_json::Value) -> Result<Self, FaultError> {
        let raw: RawFault =
            serde_json::from_value(value).map_err(|e| FaultError::Json(e.to_string()))?;
        Self::try_from(raw)
    }

    /// On every connection, both ways.
    pub fn everywhere(toxic: Toxic) -> Result<Self, FaultError> {
        Self::new(toxic, Direction::Both, 1.0)
    }

    pub fn toxic(&self) -> &Toxic {
        &self.toxic
    }

    pub fn direction(&self) -> Direction {
        self.direction
    }

    pub fn toxicity(&self) -> f64 {
        self.toxicity
    }

    /// Whether it acts on a connection that drew `draw` (uniform in [0, 1), once per
    /// connection, so a connection is either touched or not for as long as it lives).
    pub fn touches(&self, draw: f64) -> bool {
        draw < self.toxicity
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.toxic {
            Toxic::Latency {
                latency_ms,
                jitter_ms: 0,
            } => write!(f, "latency {latency_ms}ms")?,
            Toxic::Latency {
                latency_ms,
                jitter_ms,
            } => write!(f, "latency {latency_ms}ms ±{jitter_ms}ms")?,
            Toxic::Bandwidth { bytes_per_second } => {
                write!(f, "bandwidth {}", rate_text(*bytes_per_second))?
            }
            Toxic::Blackhole => write!(f, "blackhole")?,
            Toxic::Reset => write!(f, "reset")?,
        }
        if self.direction != Direction::Both {
            let d = match self.direction {
                Direction::Upstream => "upstream",
                _ => "downstream",
            };
            write!(f, " {d}")?;
        }
        if self.toxicity < 1.0 {
            write!(f, " on {:.0}% of connections", self.toxicity * 100.0)?;
        }
        Ok(())
    }
}

/// `200ms`, `1s`, `1m30s`.
pub fn parse_duration(input: &str) -> Result<Duration, FaultError> {
    humantime::parse_duration(input.trim()).map_err(|_| FaultError::Parse {
        input: input.to_owned(),
        what: "a duration",
        hint: "a number and a unit, e.g. 200ms or 1s",
    })
}

/// A rate as `tc` writes it, in bits per second (`bit`, `kbit`, `mbit`, `gbit`, decimal) or
/// bytes per second (`bps`, `kbps`, `mbps`), into bytes per second.
pub fn parse_rate(input: &str) -> Result<u64, FaultError> {
    let err = || FaultError::Parse {
        input: input.to_owned(),
        what: "a rate",
        hint: "a number and one of bit, kbit, mbit, gbit, bps, kbps, mbps, e.g. 1mbit",
    };
    let s = input.trim().to_ascii_lowercase();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(err)?;
    let (number, unit) = s.split_at(split);
    let n: f64 = number.parse().map_err(|_| err())?;
    let bytes = match unit {
        "bit" => n / 8.0,
        "kbit" => n * 1e3 / 8.0,
        "mbit" => n * 1e6 / 8.0,
        "gbit" => n * 1e9 / 8.0,
        "bps" => n,
        "kbps" => n * 1e3,
        "mbps" => n * 1e6,
        _ => return Err(err()),
    };
    if !bytes.is_finite() || bytes < 1.0 {
        return Err(FaultError::Bandwidth);
    }
    Ok(bytes as u64)
}

fn rate_text(bytes_per_second: u64) -> String {
    let bits = bytes_per_second as f64 * 8.0;
    if bits >= 1e9 {
        format!("{:.3}gbit", bits / 1e9)
    } else if bits >= 1e6 {
        format!("{:.3}mbit", bits / 1e6)
    } else {
        format!("{:.3}kbit", bits / 1e3)
    }
    .replace(".000", "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_tc_writes_them() {
        assert_eq!(parse_rate("1mbit"), Ok(125_000));
        assert_eq!(parse_rate("8kbit"), Ok(1_000));
        assert_eq!(parse_rate("2.5mbps"), Ok(2_500_000));
        assert_eq!(parse_rate("10bit"), Ok(1));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("1mb").is_err());
        assert_eq!(parse_rate("4bit"), Err(FaultError::Bandwidth));
    }

    #[test]
    fn a_fault_is_valid_or_refused() {
        let lat = Toxic::Latency {
            latency_ms: 200,
            jitter_ms: 50,
        };
        assert!(Fault::new(lat.clone(), Direction::Upstream, 0.5).is_ok());
        assert_eq!(
            Fault::new(lat, Direction::Both, 1.5),
            Err(FaultError::Toxicity(1.5))
        );
        assert_eq!(
            Fault::everywhere(Toxic::Bandwidth {
                bytes_per_second: 0
            }),
            Err(FaultError::Bandwidth)
        );
        assert!(Fault::everywhere(Toxic::Latency {
            latency_ms: 7_200_000,
            jitter_ms: 0
        })
        .is_err());
    }

    #[test]
    fn json_is_validated_like_code() {
        let ok: Fault =
            serde_json::from_str(r#"{"type":"latency","latency_ms":200,"jitter_ms":50}"#)
                .expect("a valid fault");
        assert_eq!(ok.direction(), Direction::Both);
        assert_eq!(ok.toxicity(), 1.0);
        assert_eq!(ok.to_string(), "latency 200ms ±50ms");
        let bad = serde_json::from_str::<Fault>(r#"{"type":"reset","toxicity":2}"#);
        assert!(bad.is_err());
        let named = Fault::from_json(br#"{"type":"reset","toxicity":2}"#);
        assert_eq!(named.map_err(|e| e.field()), Err("toxicity"));
        let unknown = Fault::from_json(br#"{"type":"gremlins"}"#);
        assert_eq!(unknown.map_err(|e| e.field()), Err("body"));
        let back: Fault =
            serde_json::from_str(&serde_json::to_string(&ok).expect("serialises")).expect("reads");
        assert_eq!(back, ok);
    }

    #[test]
    fn faults_read_as_an_operator_would_write_them() {
        let f = Fault::new(
            Toxic::Bandwidth {
                bytes_per_second: 125_000,
            },
            Direction::Downstream,
            0.25,
        )
        .expect("valid");
        assert_eq!(
            f.to_string(),
            "bandwidth 1mbit downstream on 25% of connections"
        );
        assert!(f.touches(0.1) && !f.touches(0.3));
    }
}
