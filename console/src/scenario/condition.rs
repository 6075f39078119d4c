//! Conditions a drill asserts or waits for: `<signal> <op> <value>`, e.g. `lag > 500`,
//! `breaker.postgres == open`, `load.error_rate <= 0.1%`, `gateway_p99_ms < 50ms`.
//!
//! A number may also be another signal, scaled: `stored_rate > 0.8 * load.sent_rate`. Rates
//! are judged that way against what the drill offered and the machine held, because machines
//! of this kind differ threefold in speed and an absolute rate passes on one and fails on the
//! next for no fault of the system.
//!
//! Every signal name is checked when the file is read, against the catalogue below, so a typo
//! is caught before the drill touches the stack, with the nearest known name as a hint.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// Breakers the services export (`logctl_breaker_state{name}`).
pub const BREAKERS: [&str; 5] = ["producer", "query", "kafka", "postgres", "redis"];
const BREAKER_STATES: [&str; 3] = ["closed", "half_open", "open"];
const COMPONENT_STATES: [&str; 4] = ["up", "starting", "paused", "down"];
/// Burrow's statuses, the group's worst over its partitions (`logctl_consumer_status`).
const CONSUMER_STATES: [&str; 5] = ["ok", "warn", "stall", "stop", "err"];

/// Numeric signals: name and what it means (shown by `logctl scenario signals`).
pub const NUMBERS: [(&str, &str); 38] = [
    (
        "accepted_rate",
        "events/s accepted at the gateway (last ~2 s)",
    ),
    (
        "published_rate",
        "events/s published to Kafka by the producer",
    ),
    (
        "stored_rate",
        "events/s stored in PostgreSQL by the consumers",
    ),
    ("http_4xx_rate", "gateway 4xx answers per second"),
    ("http_5xx_rate", "gateway 5xx answers per second"),
    (
        "rate_limited_rate",
        "requests per second refused by the rate limiter",
    ),
    (
        "shed_rate",
        "requests per second shed by the gateway's admission control",
    ),
    (
        "rate_limit_fallback_rate",
        "rate-limit decisions per second made in memory because Redis could not be asked",
    ),
    (
        "gateway_p50_ms",
        "gateway ingestion latency p50 over the last ~2 s",
    ),
    (
        "gateway_p99_ms",
        "gateway ingestion latency p99 over the last ~2 s",
    ),
    (
        "end_to_end_p99_ms",
        "accepted → stored p99 over the last ~2 s",
    ),
    ("lag", "consumer group lag from Kafka, all partitions"),
    (
        "lag_seconds",
        "age of the oldest unconsumed record on the partition furthest behind (s; also lag_seconds.N)",
    ),
    ("brokers_up", "Kafka brokers the cluster lists as alive"),
    (
        "under_replicated",
        "partitions of log-events and its dead-letter topic with fewer in-sync copies than replicas",
    ),
    (
        "under_min_isr",
        "partitions with fewer in-sync copies than acks=all writes need (writes to them spool)",
    ),
    (
        "spool_records",
        "records waiting in the producer's disk spool",
    ),
    (
        "consumers_paused",
        "consumer instances with their partitions paused (the database not taking rows)",
    ),
    (
        "rate_limit_local",
        "1 while the gateway limits from memory (Redis unreachable)",
    ),
    (
        "accepted",
        "events accepted at the gateway since the drill started",
    ),
    (
        "published",
        "events published to Kafka since the drill started",
    ),
    ("stored", "events stored since the drill started"),
    ("http_4xx", "gateway 4xx answers since the drill started"),
    ("http_5xx", "gateway 5xx answers since the drill started"),
    (
        "rate_limited",
        "requests refused by the limiter since the drill started",
    ),
    (
        "dead_lettered",
        "records dead-lettered since the drill started",
    ),
    (
        "load.rate",
        "events/s the drill's load plans to offer now (0 when stopped)",
    ),
    (
        "load.sent_rate",
        "events/s the drill's load actually sent over the last second (below load.rate when the machine cannot keep up)",
    ),
    ("load.sent", "events the drill's load sent"),
    (
        "load.acked",
        "events the gateway acknowledged (2xx) to the drill's load",
    ),
    (
        "load.2xx",
        "drill load answers 2xx (also load.4xx, load.5xx, load.429, load.503 ...)",
    ),
    ("load.4xx", "drill load answers 4xx"),
    ("load.5xx", "drill load answers 5xx"),
    ("load.no_answer", "drill load requests with no HTTP answer"),
    ("load.errors", "drill load requests not answered 2xx"),
    (
        "load.unexpected",
        "drill load answers other than 2xx, 429 and 503 (or none)",
    ),
    (
        "load.error_rate",
        "share of drill load requests not answered 2xx (0.1% or 0.001)",
    ),
    (
        "load.p99_ms",
        "worst p99 latency of the drill's load segments (from planned send time)",
    ),
];

/// What a signal's values look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Number,
    Word(&'static [&'static str]),
}

/// The kind of a signal name, or None when there is no such signal.
pub fn kind_of(name: &str) -> Option<Kind> {
    if NUMBERS.iter().any(|(n, _)| *n == name) {
        return Some(Kind::Number);
    }
    if let Some(b) = name.strip_prefix("breaker.") {
        return BREAKERS.contains(&b).then_some(Kind::Word(&BREAKER_STATES));
    }
    if let Some(c) = name.strip_prefix("component.") {
        return crate::stack::Component::parse(c).map(|_| Kind::Word(&COMPONENT_STATES));
    }
    if name == "consumer_status" {
        return Some(Kind::Word(&CONSUMER_STATES));
    }
    if let Some(p) = name
        .strip_prefix("lag.")
        .or_else(|| name.strip_prefix("lag_seconds."))
    {
        return p.parse::<u16>().ok().map(|_| Kind::Number);
    }
    if let Some(s) = name.strip_prefix("load.") {
        let b = s.as_bytes();
        let status = b.len() == 3
            && (b'1'..=b'5').contains(&b[0])
            && ((b[1].is_ascii_digit() && b[2].is_ascii_digit()) || &b[1..] == b"xx");
        return status.then_some(Kind::Number);
    }
    None
}

/// Every name a hint may suggest.
fn known_names() -> Vec<String> {
    let mut names: Vec<String> = NUMBERS.iter().map(|(n, _)| (*n).to_owned()).collect();
    names.push("consumer_status".to_owned());
    names.extend(BREAKERS.iter().map(|b| format!("breaker.{b}")));
    names.extend(
        crate::stack::Component::NAMES
            .iter()
            .map(|c| format!("component.{c}")),
    );
    names
}

/// The nearest of `candidates` to `word`, when it is near enough to be a likely typo.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 3.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Op {
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
}

impl Op {
    const ALL: [(&'static str, Op); 6] = [
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("<", Op::Lt),
        (">", Op::Gt),
    ];

    fn symbol(self) -> &'static str {
        Op::ALL
            .iter()
            .find(|(_, o)| *o == self)
            .map(|(s, _)| *s)
            .unwrap_or("?")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    Number(f64),
    /// `factor * signal`, read from the same reading as the signal it is compared with.
    Scaled {
        factor: f64,
        signal: String,
    },
    Word(String),
}

/// One parsed condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub signal: String,
    pub op: Op,
    pub value: Expected,
    /// As written, for messages.
    pub text: String,
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A value read from the stack.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Observed {
    Number(f64),
    Word(String),
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Observed::Number(v) if v.fract() == 0.0 && v.abs() < 1e15 => write!(f, "{v:.0}"),
            Observed::Number(v) => write!(f, "{v:.3}"),
            Observed::Word(w) => f.write_str(w),
        }
    }
}

/// Every signal's value at one moment; a signal absent here could not be read (the service
/// exporting it is down, Kafka did not answer, no request in the window).
pub type Reading = BTreeMap<String, Observed>;

/// The outcome of one condition against one reading.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    pub condition: String,
    pub passed: bool,
    /// What was read; "n/a" when the signal could not be read.
    pub observed: String,
}

impl Condition {
    pub fn parse(text: &str) -> Result<Condition, String> {
        let text = text.trim();
        let (at, symbol, op) = Op::ALL
            .iter()
            .filter_map(|(s, op)| text.find(s).map(|i| (i, *s, *op)))
            // The leftmost operator; at one position the two-character one (`<=` over `<`).
            .min_by_key(|(i, s, _)| (*i, usize::MAX - s.len()))
            .ok_or_else(|| {
                format!("{text:?} is not a condition: write `<signal> <op> <value>`, e.g. `lag < 100` (ops: == != < <= > >=)")
            })?;
        let signal = text[..at].trim();
        let raw = text[at + symbol.len()..].trim();
        if signal.is_empty() || raw.is_empty() {
            return Err(format!(
                "{text:?}: a condition needs a signal and a value on either side of {symbol}"
            ));
        }
        let kind = kind_of(signal).ok_or_else(|| {
            let names = known_names();
            match nearest(signal, names.iter().map(String::as_str)) {
                Some(n) => format!("unknown signal `{signal}`: did you mean `{n}`? (`logctl scenario signals` lists them)"),
                None => format!("unknown signal `{signal}` (`logctl scenario signals` lists them)"),
            }
        })?;
        let value = match kind {
            Kind::Number => parse_scaled(raw)?
                .map(Ok)
                .unwrap_or_else(|| parse_number(signal, raw).map(Expected::Number))?,
            Kind::Word(allowed) => {
                if !matches!(op, Op::Eq | Op::Ne) {
                    return Err(format!(
                        "`{signal}` is a state ({}): compare it with == or !=",
                        allowed.join(", ")
                    ));
                }
                let word = raw.replace('-', "_");
                if !allowed.contains(&word.as_str()) {
                    let hint = nearest(&word, allowed.iter().copied())
                        .map(|n| format!("; did you mean `{n}`?"))
                        .unwrap_or_default();
                    return Err(format!(
                        "`{signal}` is one of {}, not `{raw}`{hint}",
                        allowed.join(", ")
                    ));
                }
                Expected::Word(word)
            }
        };
        Ok(Condition {
            signal: signal.to_owned(),
            op,
            value,
            text: format!("{signal} {} {raw}", op.symbol()),
        })
    }

    pub fn check(&self, reading: &Reading) -> Checked {
        // A status the drill's load never got is a count of zero, not an unknown.
        let zero = Observed::Number(0.0);
        let read = |signal: &str| {
            reading
                .get(signal)
                .or_else(|| signal.starts_with("load.").then_some(&zero))
        };
        let observed = read(&self.signal);
        // The number a scaled value stands for in this reading; None when its signal is absent.
        let expected = match &self.value {
            Expected::Scaled { factor, signal } => match read(signal) {
                Some(Observed::Number(v)) => Some(Expected::Number(factor * v)),
                _ => None,
            },
            other => Some(other.clone()),
        };
        let passed = match (observed, &expected) {
            (Some(Observed::Number(o)), Some(Expected::Number(e))) => self.op.holds(*o, *e),
            (Some(Observed::Word(o)), Some(Expected::Word(e))) => match self.op {
                Op::Eq => o == e,
                Op::Ne => o != e,
                _ => false,
            },
            // A component that is not running has no breakers or latencies to read.
            (None, Some(Expected::Word(_))) if self.signal.starts_with("component.") => {
                self.value == Expected::Word("down".into()) && self.op == Op::Eq
            }
            _ => false,
        };
        let mut observed = observed.map_or("n/a".into(), ToString::to_string);
        if let Expected::Scaled { factor, signal } = &self.value {
            // Say what the scaled side came to, so a failure reads without the timeline.
            let against = match &expected {
                Some(Expected::Number(e)) => Observed::Number(*e).to_string(),
                _ => "n/a".into(),
            };
            observed = format!("{observed} (against {factor} * {signal} = {against})");
        }
        Checked {
            condition: self.text.clone(),
            passed,
            observed,
        }
    }
}

impl Op {
    fn holds(self, o: f64, e: f64) -> bool {
        match self {
            Op::Eq => (o - e).abs() < 1e-9,
            Op::Ne => (o - e).abs() >= 1e-9,
            Op::Lt => o < e,
            Op::Le => o <= e,
            Op::Gt => o > e,
            Op::Ge => o >= e,
        }
    }
}

/// `0.8 * load.rate` or `load.sent_rate`: a numeric signal, optionally scaled. `Ok(None)` when
/// `raw` names no signal (it is a plain number then).
fn parse_scaled(raw: &str) -> Result<Option<Expected>, String> {
    let (factor, name) = match raw.split_once('*') {
        Some((f, n)) => {
            let f = f.trim();
            let factor = f
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| {
                    format!("`{f}` is not a factor: write e.g. `0.8 * load.sent_rate`")
                })?;
            (factor, n.trim())
        }
        None if raw.starts_with(|c: char| c.is_ascii_alphabetic()) => (1.0, raw),
        None => return Ok(None),
    };
    match kind_of(name) {
        Some(Kind::Number) => Ok(Some(Expected::Scaled {
            factor,
            signal: name.to_owned(),
        })),
        Some(Kind::Word(_)) => Err(format!(
            "`{name}` is a state: only a numeric signal can be scaled"
        )),
        None => {
            let names = known_names();
            Err(match nearest(name, names.iter().map(String::as_str)) {
                Some(n) => format!("unknown signal `{name}`: did you mean `{n}`?"),
                None => format!("unknown signal `{name}` (`logctl scenario signals` lists them)"),
            })
        }
    }
}

/// A number, with a unit where the signal allows one: `50ms`/`2s` for `_ms` signals, `5s` or
/// `500ms` for `lag_seconds`,
/// `0.1%` for rates and ratios.
fn parse_number(signal: &str, raw: &str) -> Result<f64, String> {
    let bad = || format!("`{raw}` is not a number for `{signal}`");
    if signal.ends_with("_ms") {
        if let Some(n) = raw.strip_suffix("ms") {
            return n.trim().parse().map_err(|_| bad());
        }
        if let Some(n) = raw.strip_suffix('s') {
            return n
                .trim()
                .parse::<f64>()
                .map(|v| v * 1000.0)
                .map_err(|_| bad());
        }
    }
    if signal.starts_with("lag_seconds") {
        if let Some(n) = raw.strip_suffix("ms") {
            return n
                .trim()
                .parse::<f64>()
                .map(|v| v / 1000.0)
                .map_err(|_| bad());
        }
        if let Some(n) = raw.strip_suffix('s') {
            return n.trim().parse().map_err(|_| bad());
        }
    }
    if let Some(n) = raw.strip_suffix('%') {
        if signal == "load.error_rate" {
            return n
                .trim()
                .parse::<f64>()
                .map(|v| v / 100.0)
                .map_err(|_| bad());
        }
        return Err(format!(
            "`{signal}` is not a ratio: `%` only goes with load.error_rate"
        ));
    }
    raw.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(pairs: &[(&str, Observed)]) -> Reading {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn lag_in_time_and_the_consumer_status() {
        let r = reading(&[
            ("lag_seconds", Observed::Number(2.5)),
            ("consumer_status", Observed::Word("stall".into())),
        ]);
        let ok = |t: &str| Condition::parse(t).expect(t).check(&r).passed;
        assert!(ok("lag_seconds < 5"));
        assert!(ok("lag_seconds < 5s"));
        assert!(!ok("lag_seconds < 2000ms"));
        assert!(ok("consumer_status == stall"));
        assert!(!ok("consumer_status == ok"));
        assert!(Condition::parse("lag_seconds.3 < 1s").is_ok());
        let e = Condition::parse("consumer_status == stalled").expect_err("not a status");
        assert!(e.contains("did you mean `stall`"), "{e}");
        let e = Condition::parse("consumer_status > ok").expect_err("a state");
        assert!(e.contains("compare it with =="), "{e}");
    }

    #[test]
    fn numbers_words_and_units() {
        let r = reading(&[
            ("lag", Observed::Number(600.0)),
            ("breaker.postgres", Observed::Word("open".into())),
            ("gateway_p99_ms", Observed::Number(40.0)),
            ("load.error_rate", Observed::Number(0.0005)),
        ]);
        let ok = |t: &str| Condition::parse(t).expect(t).check(&r).passed;
        assert!(ok("lag > 500"));
        assert!(!ok("lag<=500"));
        assert!(ok("breaker.postgres == open"));
        assert!(!ok("breaker.postgres != open"));
        assert!(ok("gateway_p99_ms < 50ms"));
        assert!(ok("gateway_p99_ms < 0.05s"));
        assert!(ok("load.error_rate <= 0.1%"));
        assert!(!ok("load.error_rate < 0.01%"));
        let missing = Condition::parse("stored_rate > 0").expect("ok").check(&r);
        assert!(!missing.passed);
        assert_eq!(missing.observed, "n/a");
        assert!(
            ok("component.redis == down"),
            "absent component reads as down"
        );
    }

    #[test]
    fn mistakes_are_named_with_a_hint() {
        let e = Condition::parse("lagg > 5").expect_err("typo");
        assert!(e.contains("did you mean `lag`"), "{e}");
        let e = Condition::parse("breaker.postgress == open").expect_err("typo");
        assert!(e.contains("breaker.postgres"), "{e}");
        let e = Condition::parse("breaker.postgres == opne").expect_err("typo");
        assert!(e.contains("did you mean `open`"), "{e}");
        let e = Condition::parse("breaker.kafka > open").expect_err("order on a state");
        assert!(e.contains("== or !="), "{e}");
        assert!(Condition::parse("lag 5").is_err());
        assert!(Condition::parse("lag > fast").is_err());
        assert!(Condition::parse("lag > 5%").is_err());
        assert!(Condition::parse("component.consumer-2 == up").is_ok());
        assert!(Condition::parse("load.503 > 0").is_ok());
        assert!(Condition::parse("load.5xx == 0").is_ok());
        assert!(Condition::parse("load.6xx == 0").is_err());
        assert!(Condition::parse("lag.3 == 0").is_ok());
        let e = Condition::parse("stored_rate > 0.8 * load.sent_rat").expect_err("typo");
        assert!(e.contains("did you mean `load.sent_rate`"), "{e}");
        let e = Condition::parse("stored_rate > fast * load.rate").expect_err("factor");
        assert!(e.contains("not a factor"), "{e}");
        let e = Condition::parse("stored_rate > 2 * breaker.kafka").expect_err("state");
        assert!(e.contains("numeric"), "{e}");
    }

    #[test]
    fn rates_relative_to_another_signal() {
        let r = reading(&[
            ("stored_rate", Observed::Number(700.0)),
            ("load.sent_rate", Observed::Number(800.0)),
            ("spool_records", Observed::Number(9000.0)),
        ]);
        let check = |t: &str| Condition::parse(t).expect(t).check(&r);
        assert!(check("stored_rate > 0.8 * load.sent_rate").passed);
        assert!(!check("stored_rate > 0.9 * load.sent_rate").passed);
        assert!(check("stored_rate < load.sent_rate").passed);
        assert!(!check("spool_records > 12 * load.sent_rate").passed);
        let failed = check("stored_rate >= 0.9*load.sent_rate");
        assert_eq!(failed.observed, "700 (against 0.9 * load.sent_rate = 720)");
        // An absent reference fails and says so; a load signal never answered reads 0.
        let absent = check("stored_rate > 0.5 * published_rate");
        assert!(!absent.passed);
        assert!(absent.observed.ends_with("= n/a)"), "{}", absent.observed);
        assert!(check("stored_rate > 0.5 * load.rate").passed);
    }
}
