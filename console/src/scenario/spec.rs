//! The drill file: what it may say, checked completely before anything runs. Every value that
//! can be wrong (a duration, a component, a condition) is parsed while the YAML is read, so
//! the error carries the file, line and column, and where it helps a hint.

use std::fmt;
use std::marker::PhantomData;
use std::path::Path;
use std::time::Duration;

use serde::de::{self, value::MapAccessDeserializer, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::condition::{nearest, Condition};
use crate::fault;
use crate::fault::host::HostFault;
use crate::fault::link::{self, Links};
use crate::fault::{Action, Target};
use crate::stack::Component;
use logctl_faultproxy::Fault;

/// A drill that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct SpecError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// What must be up before the drill starts.
    #[serde(default)]
    pub stack: StackNeeds,
    /// Conditions that hold before the first step and again after the last (Chaos Toolkit's
    /// steady-state hypothesis).
    #[serde(default)]
    pub steady_state: Option<SteadyState>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackNeeds {
    /// Components that must be up; every one of the stack when not given.
    #[serde(default)]
    pub up: Vec<Named>,
    /// Kafka brokers the stack must have (`logctl up --brokers N`), for drills that lose some.
    #[serde(default)]
    pub brokers: Option<u16>,
    /// Producer instances the stack must have (`logctl up --producers N`).
    #[serde(default)]
    pub producers: Option<u16>,
    /// Gateway instances behind the balancer the stack must have (`logctl up --gateways N`).
    #[serde(default)]
    pub gateways: Option<u16>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SteadyState {
    /// How long the conditions may take to hold (a stack still warming, a backlog draining).
    #[serde(default = "sixty_seconds")]
    pub within: Dur,
    #[serde(deserialize_with = "one_or_many")]
    pub conditions: Vec<Condition>,
}

fn sixty_seconds() -> Dur {
    Dur(Duration::from_secs(60))
}

/// One step: a map with a single key naming its kind (`- wait: 5s`).
#[derive(Debug, Clone)]
pub enum Step {
    /// Start background load, change its rate, or `stop` it.
    Load(LoadStep),
    /// Stop, start, kill, pause or resume a component.
    Fault(FaultStep),
    /// A fixed time, or until conditions hold.
    Wait(WaitStep),
    /// Conditions that must hold now.
    Assert(Vec<Condition>),
    /// Stop the load, wait for the pipeline to drain, and check in PostgreSQL that every
    /// event answered 2xx is stored exactly once.
    Verify(VerifyStep),
    /// One request through the gateway (e.g. a read while Redis is down).
    Http(HttpStep),
    /// Raw records straight onto the events topic (poison the consumer cannot decode).
    Publish(PublishStep),
    /// A shell command that must exit 0.
    Exec(String),
    /// Change how many instances of a service run, as `logctl up --consumers N` does.
    Scale(ScaleStep),
}

const STEP_KINDS: [&str; 9] = [
    "load", "fault", "wait", "assert", "verify", "http", "publish", "exec", "scale",
];

/// `one_or_many` as a type, for `next_value`.
struct Conditions(Vec<Condition>);

impl<'de> Deserialize<'de> for Conditions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        one_or_many(d).map(Conditions)
    }
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Step;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a step: one of {}", STEP_KINDS.join(", "))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Step, A::Error> {
                let Some(kind) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(format!(
                        "an empty step: write one of {}",
                        STEP_KINDS.join(", ")
                    )));
                };
                let step = match kind.as_str() {
                    "load" => Step::Load(map.next_value()?),
                    "fault" => Step::Fault(map.next_value()?),
                    "wait" => Step::Wait(map.next_value()?),
                    "assert" => Step::Assert(map.next_value::<Conditions>()?.0),
                    "verify" => Step::Verify(map.next_value()?),
                    "http" => Step::Http(map.next_value()?),
                    "publish" => Step::Publish(map.next_value()?),
                    "exec" => Step::Exec(map.next_value()?),
                    "scale" => Step::Scale(map.next_value()?),
                    other => {
                        let hint = nearest(other, STEP_KINDS)
                            .map(|n| format!("did you mean `{n}`?"))
                            .unwrap_or_else(|| format!("steps are {}", STEP_KINDS.join(", ")));
                        return Err(de::Error::custom(format!("unknown step `{other}`: {hint}")));
                    }
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "`{extra}` next to `{kind}`: one step per list item (start another with `- {extra}:`)"
                    )));
                }
                Ok(step)
            }
        }
        d.deserialize_map(V)
    }
}

impl Step {
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Load(_) => "load",
            Step::Fault(_) => "fault",
            Step::Wait(_) => "wait",
            Step::Assert(_) => "assert",
            Step::Verify(_) => "verify",
            Step::Http(_) => "http",
            Step::Publish(_) => "publish",
            Step::Exec(_) => "exec",
            Step::Scale(_) => "scale",
        }
    }

    /// One line saying what the step does.
    pub fn describe(&self) -> String {
        let conds = |c: &[Condition]| {
            c.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Step::Load(LoadStep::Stop) => "load stop".into(),
            Step::Load(LoadStep::Start(l)) => format!(
                "load {} events/s{}{}",
                l.rate.0,
                if l.batch.0 > 1 {
                    format!(" in batches of {}", l.batch.0)
                } else {
                    String::new()
                },
                l.duration
                    .map(|d| format!(" for {}", d))
                    .unwrap_or_default()
            ),
            Step::Fault(f) => f.describe(),
            Step::Wait(WaitStep::For(d)) => format!("wait {d}"),
            Step::Wait(WaitStep::Until { until, timeout }) => {
                format!("wait until {} (at most {timeout})", conds(until))
            }
            Step::Assert(c) => format!("assert {}", conds(c)),
            Step::Verify(v) => format!("verify exactly-once (at most {})", v.timeout),
            Step::Http(h) => format!("http {} {} expect {}", h.method, h.path, h.expect),
            Step::Publish(p) => format!("publish {} raw record(s)", p.count),
            Step::Exec(c) => format!("exec {c}"),
            Step::Scale(s) => format!("scale {s}"),
        }
    }
}

/// A duration written as `500ms`, `30s`, `2m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(60_000) && ms > 0 {
            write!(f, "{}m", ms / 60_000)
        } else if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Dur {
    fn parse(s: &str) -> Result<Dur, String> {
        logctl_contracts::duration::parse(s)
            .map(Dur)
            .map_err(|e| format!("bad duration {s:?}: {e}"))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Dur::parse(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

/// A fault's target by the name `logctl fault` takes (a component, or `kafka-leader`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Named(pub Target);

fn component(s: &str) -> Result<Target, String> {
    Target::parse(s).ok_or_else(|| {
        let names = Component::NAMES
            .iter()
            .copied()
            .chain([Target::KAFKA_LEADER]);
        let hint = nearest(s, names)
            .map(|n| format!(": did you mean `{n}`?"))
            .unwrap_or_else(|| {
                format!(
                    ": choose {}, kafka-N, consumer-N or {}",
                    Component::NAMES.join(", "),
                    Target::KAFKA_LEADER
                )
            });
        format!("unknown component `{s}`{hint}")
    })
}

impl<'de> Deserialize<'de> for Named {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        component(&s).map(Named).map_err(de::Error::custom)
    }
}

fn process_action(s: &str) -> Result<Action, String> {
    const ACTIONS: [&str; 15] = [
        "stop",
        "start",
        "kill",
        "pause",
        "resume",
        "latency",
        "bandwidth",
        "blackhole",
        "reset",
        "clear",
        "isolate",
        "partition",
        "heal",
        "fill",
        "free",
    ];
    Ok(match s {
        "stop" => Action::Stop,
        "start" => Action::Start,
        "kill" => Action::Kill,
        "pause" => Action::Pause,
        "resume" => Action::Resume,
        other => {
            let hint = nearest(other, ACTIONS)
                .map(|n| format!("did you mean `{n}`?"))
                .unwrap_or_else(|| format!("choose {}", ACTIONS.join(", ")));
            return Err(format!("unknown fault action `{other}`: {hint}"));
        }
    })
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Condition::parse(&s).map_err(de::Error::custom)
    }
}

/// One condition as a string, or a list of them.
fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a condition or a list of conditions")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Vec<T>, E> {
            T::deserialize(de::value::StrDeserializer::<E>::new(s)).map(|t| vec![t])
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            // The error's line is the list's: name the item too.
            let mut out = Vec::new();
            while let Some(text) = seq.next_element::<String>()? {
                let item = T::deserialize(de::value::StrDeserializer::<A::Error>::new(&text))
                    .map_err(|e| de::Error::custom(format!("item {}: {e}", out.len() + 1)))?;
                out.push(item);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V(PhantomData))
}

/// A step's value written short (`wait: 5s`, `fault: stop postgres`, a bare `verify:`) or long,
/// as a map that `L`'s own fields check: one visitor serves every such step. `short` gets None
/// for an empty value.
fn short_or_long<'de, D, L, T>(
    d: D,
    expecting: &'static str,
    short: fn(Option<&str>) -> Result<T, String>,
    long: fn(L) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    L: Deserialize<'de>,
{
    struct V<L, T> {
        expecting: &'static str,
        short: fn(Option<&str>) -> Result<T, String>,
        long: fn(L) -> Result<T, String>,
    }
    impl<'de, L: Deserialize<'de>, T> Visitor<'de> for V<L, T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
            (self.short)(Some(s)).map_err(E::custom)
        }
        fn visit_unit<E: de::Error>(self) -> Result<T, E> {
            (self.short)(None).map_err(E::custom)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            let l = L::deserialize(MapAccessDeserializer::new(map))?;
            (self.long)(l).map_err(de::Error::custom)
        }
    }
    d.deserialize_any(V {
        expecting,
        short,
        long,
    })
}

/// Events per second, above zero.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate(pub f64);

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if v.is_finite() && v > 0.0 && v <= 1_000_000.0 {
            Ok(Rate(v))
        } else {
            Err(de::Error::custom(format!(
                "rate {v} must be above 0 and at most 1000000 events/s (use `load: stop` to stop)"
            )))
        }
    }
}

/// Events per request, 1 ..= 1000 (the gateway's batch limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch(pub usize);

impl Default for Batch {
    fn default() -> Self {
        Batch(1)
    }
}

impl<'de> Deserialize<'de> for Batch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = usize::deserialize(d)?;
        if (1..=1000).contains(&v) {
            Ok(Batch(v))
        } else {
            Err(de::Error::custom(format!(
                "batch {v}: must be from 1 to 1000 (the gateway's batch limit)"
            )))
        }
    }
}

#[derive(Debug, Clone)]
pub enum LoadStep {
    Start(LoadSpec),
    Stop,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    pub rate: Rate,
    #[serde(default)]
    pub batch: Batch,
    /// Organizations (Zipf-skewed).
    #[serde(default = "five")]
    pub orgs: usize,
    /// Stops by itself after this long; runs until `load: stop`, `verify` or the end otherwise.
    #[serde(default)]
    pub duration: Option<Dur>,
    #[serde(default = "two_hundred")]
    pub message_bytes: usize,
    #[serde(default = "one")]
    pub seed: u64,
    /// Most requests awaiting an answer; above the gateway's own limit (1024) a spike meets
    /// its admission control instead of queueing in the generator.
    #[serde(default = "thousand_and_twenty_four")]
    pub max_in_flight: usize,
    /// The client's timeout: a request unanswered this long counts in `load.no_answer`.
    #[serde(default = "thirty_seconds")]
    pub timeout: Dur,
}

fn thirty_seconds() -> Dur {
    Dur(Duration::from_secs(30))
}

fn thousand_and_twenty_four() -> usize {
    1024
}

fn five() -> usize {
    5
}
fn two_hundred() -> usize {
    200
}
fn one() -> u64 {
    1
}

impl<'de> Deserialize<'de> for LoadStep {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        short_or_long(
            d,
            "`stop` or a map with at least `rate`",
            |s| match s {
                Some("stop") => Ok(LoadStep::Stop),
                other => Err(format!(
                    "load `{}`: write `load: stop`, or `load: {{rate: 1000}}` to start",
                    other.unwrap_or_default()
                )),
            },
            |spec: LoadSpec| Ok(LoadStep::Start(spec)),
        )
    }
}
/// New instance counts (`scale: {consumers: 3}`); what is not named keeps its count. The
/// runner puts the counts the drill began with back at its end.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleStep {
    #[serde(default, deserialize_with = "instances")]
    pub consumers: Option<u16>,
    #[serde(default, deserialize_with = "instances")]
    pub producers: Option<u16>,
}

/// More consumers than partitions would sit idle; more producers than that are never needed.
pub const MAX_SCALE: u16 = logctl_contracts::topics::EVENTS_PARTITIONS as u16;

fn instances<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    let n = u16::deserialize(d)?;
    if (1..=MAX_SCALE).contains(&n) {
        Ok(Some(n))
    } else {
        Err(de::Error::custom(format!(
            "{n} instances: from 1 to {MAX_SCALE} (the events topic's partitions)"
        )))
    }
}

impl fmt::Display for ScaleStep {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let parts: Vec<String> = [("consumers", self.consumers), ("producers", self.producers)]
            .into_iter()
            .filter_map(|(what, n)| n.map(|n| format!("{what} to {n}")))
            .collect();
        write!(f, "{}", parts.join(", "))
    }
}

/// A fault on a process (`stop postgres`) or on a link (`latency kafka 200ms`,
/// `blackhole redis`, `clear kafka`, a bare `clear`).
#[derive(Debug, Clone)]
pub enum FaultStep {
    Process {
        action: Action,
        component: Named,
    },
    Link {
        links: Links,
        fault: Fault,
    },
    /// Every link's faults when `links` is none.
    Clear {
        links: Option<Links>,
    },
    /// On a stack on hosts: `isolate kafka-leader`, `partition kafka kafka-2`, `heal`.
    Host(HostFault),
    /// On a stack with an events volume: `fill postgres` (true), `free postgres`.
    Disk {
        fill: bool,
    },
}

impl FaultStep {
    pub fn describe(&self) -> String {
        match self {
            FaultStep::Process { action, component } => format!(
                "fault {} {}",
                format!("{action:?}").to_lowercase(),
                component.0.name()
            ),
            FaultStep::Link { links, fault } => format!("fault {fault} on {}", links.name()),
            FaultStep::Clear { links: Some(l) } => format!("fault clear {}", l.name()),
            FaultStep::Clear { links: None } => "fault clear every link".into(),
            FaultStep::Host(h) => format!("fault {}", h.describe()),
            FaultStep::Disk { fill } => format!("fault {} postgres", fault::disk::verb(*fill)),
        }
    }

    fn new(action: &str, component: Option<&str>, words: &link::Words<'_>) -> Result<Self, String> {
        let links = || -> Result<Option<Links>, String> { component.map(Links::parse).transpose() };
        if matches!(action, "isolate" | "partition" | "heal") {
            return HostFault::parse(action, component, words.value).map(FaultStep::Host);
        }
        if action == "clear" {
            return Ok(FaultStep::Clear { links: links()? });
        }
        if let fill @ ("fill" | "free") = action {
            let fill = fill == "fill";
            fault::disk::check_component(fill, component)?;
            return Ok(FaultStep::Disk { fill });
        }
        if let Some(kind) = link::Kind::parse(action) {
            let links = links()?
                .ok_or_else(|| format!("fault `{action}`: name the link, e.g. `{action} kafka`"))?;
            return Ok(FaultStep::Link {
                links,
                fault: link::fault(kind, words)?,
            });
        }
        let action = process_action(action)?;
        let component =
            component.ok_or("a process fault names its component, e.g. `stop postgres`")?;
        if words.value.is_some() || words.jitter.is_some() || words.direction.is_some() {
            return Err(format!(
                "fault `{}`: only network faults take an amount, jitter or direction",
                format!("{action:?}").to_lowercase()
            ));
        }
        Ok(FaultStep::Process {
            action,
            component: Named(self::component(component)?),
        })
    }
}

impl<'de> Deserialize<'de> for FaultStep {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Long {
            action: String,
            component: Option<String>,
            amount: Option<String>,
            jitter: Option<String>,
            direction: Option<String>,
            toxicity: Option<f64>,
        }
        short_or_long(
            d,
            "`<action> <component> [amount]` (e.g. `stop postgres`, `latency kafka 200ms`) or \
             {action, component, amount, jitter, direction, toxicity}",
            |s| {
                let s = s.unwrap_or_default();
                let words: Vec<&str> = s.split_whitespace().collect();
                match words.as_slice() {
                    [action, rest @ ..] if rest.len() <= 2 => FaultStep::new(
                        action,
                        rest.first().copied(),
                        &link::Words {
                            value: rest.get(1).copied(),
                            ..link::Words::default()
                        },
                    ),
                    _ => Err(format!(
                        "fault `{s}`: write `<action> <component>`, e.g. `stop postgres`, or \
                         `<network fault> <link> [amount]`, e.g. `latency kafka 200ms`"
                    )),
                }
            },
            |l: Long| {
                FaultStep::new(
                    &l.action,
                    l.component.as_deref(),
                    &link::Words {
                        value: l.amount.as_deref(),
                        jitter: l.jitter.as_deref(),
                        direction: l.direction.as_deref(),
                        toxicity: l.toxicity,
                    },
                )
            },
        )
    }
}

#[derive(Debug, Clone)]
pub enum WaitStep {
    For(Dur),
    Until { until: Vec<Condition>, timeout: Dur },
}

impl<'de> Deserialize<'de> for WaitStep {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Until {
            #[serde(deserialize_with = "one_or_many")]
            until: Vec<Condition>,
            #[serde(default = "sixty_seconds")]
            timeout: Dur,
        }
        short_or_long(
            d,
            "a duration (`30s`) or {until: <conditions>, timeout: <duration>}",
            |s| Dur::parse(s.unwrap_or_default()).map(WaitStep::For),
            |u: Until| {
                Ok(WaitStep::Until {
                    until: u.until,
                    timeout: u.timeout,
                })
            },
        )
    }
}
#[derive(Debug, Clone)]
pub struct VerifyStep {
    pub timeout: Dur,
}

impl<'de> Deserialize<'de> for VerifyStep {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Long {
            #[serde(default = "two_minutes")]
            timeout: Dur,
        }
        fn two_minutes() -> Dur {
            Dur(Duration::from_secs(120))
        }
        short_or_long(
            d,
            "nothing, or {timeout: <duration>}",
            |s| match s {
                None => Ok(VerifyStep {
                    timeout: two_minutes(),
                }),
                Some(s) => Err(format!(
                    "verify `{s}`: write `verify:` alone, or `verify: {{timeout: 2m}}`"
                )),
            },
            |l: Long| Ok(VerifyStep { timeout: l.timeout }),
        )
    }
}
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpStep {
    #[serde(default = "get")]
    pub method: String,
    /// A path on the gateway, e.g. `/api/stats`.
    pub path: String,
    /// The organization the request's token is for.
    #[serde(default = "scenario_org")]
    pub org: String,
    /// A JSON body (YAML written here is sent as JSON).
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    #[serde(default = "ok")]
    pub expect: u16,
}

fn get() -> String {
    "GET".into()
}
fn scenario_org() -> String {
    "drill".into()
}
fn ok() -> u16 {
    200
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishStep {
    pub payload: String,
    #[serde(default = "one_usize")]
    pub count: usize,
    #[serde(default = "scenario_org")]
    pub key: String,
}

fn one_usize() -> usize {
    1
}

/// Reads and checks a drill file.
pub fn load(path: &Path) -> Result<Scenario, SpecError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| SpecError {
        file: file.clone(),
        line: 0,
        column: 0,
        message: format!("cannot read: {e}"),
    })?;
    parse(&file, &text)
}

pub fn parse(file: &str, text: &str) -> Result<Scenario, SpecError> {
    let scenario: Scenario = serde_saphyr::from_str(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line() as usize, l.column() as usize))
            .unwrap_or((0, 0));
        // One line, without the source snippet; the `file:line:column` prefix carries the
        // location the plain message would append (" at line L, column C").
        let mut message = e.render_with_options(serde_saphyr::render_options! {
            snippets: serde_saphyr::SnippetMode::Off,
        });
        if let Some(i) = message.find(" at line ") {
            message.truncate(i);
        }
        SpecError {
            file: file.to_owned(),
            line,
            column,
            message,
        }
    })?;
    if scenario.steps.is_empty() {
        return Err(SpecError {
            file: file.to_owned(),
            line: 1,
            column: 1,
            message: "a drill needs at least one step".into(),
        });
    }
    Ok(scenario)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name: example
description: every step kind
stack:
  up: [postgres, kafka, gateway]
steady_state:
  within: 30s
  conditions: ["lag < 100", "breaker.postgres == closed"]
steps:
  - load: {rate: 500, batch: 10, duration: 1m}
  - fault: stop postgres
  - fault: {action: pause, component: consumer-2}
  - fault: latency kafka 200ms
  - fault: {action: latency, component: kafka-leader, amount: 1s, jitter: 100ms, direction: both}
  - fault: blackhole redis
  - fault: clear redis
  - fault: clear
  - fault: isolate kafka-leader
  - fault: partition kafka kafka-2
  - fault: heal
  - wait: 5s
  - wait: {until: lag > 100, timeout: 20s}
  - assert: ["http_5xx == 0", "load.error_rate < 0.1%"]
  - http: {path: /api/stats, expect: 200}
  - publish: {payload: "not json", count: 2}
  - exec: "true"
  - scale: {consumers: 3}
  - load: stop
  - verify:
  - verify: {timeout: 30s}
"#;

    #[test]
    fn every_step_kind_reads() {
        let s = parse("good.yaml", GOOD).expect("parses");
        assert_eq!(s.steps.len(), 21);
        assert_eq!(s.stack.up.len(), 3);
        assert_eq!(
            s.steady_state.as_ref().map(|s| s.within.0.as_secs()),
            Some(30)
        );
        let kinds: Vec<&str> = s.steps.iter().map(Step::kind).collect();
        assert_eq!(
            kinds,
            [
                "load", "fault", "fault", "fault", "fault", "fault", "fault", "fault", "fault",
                "fault", "fault", "wait", "wait", "assert", "http", "publish", "exec", "scale",
                "load", "verify", "verify"
            ]
        );
        assert_eq!(s.steps[17].describe(), "scale consumers to 3");
        assert_eq!(s.steps[8].describe(), "fault isolate kafka-leader");
        assert_eq!(s.steps[9].describe(), "fault partition kafka kafka-2");
        assert_eq!(s.steps[10].describe(), "fault heal every host");
        assert_eq!(
            s.steps[0].describe(),
            "load 500 events/s in batches of 10 for 1m"
        );
        assert_eq!(s.steps[2].describe(), "fault pause consumer-2");
        assert_eq!(
            s.steps[3].describe(),
            "fault latency 200ms downstream on kafka"
        );
        assert_eq!(
            s.steps[4].describe(),
            "fault latency 1000ms ±100ms on kafka-leader"
        );
        assert_eq!(s.steps[5].describe(), "fault blackhole on redis");
        assert_eq!(s.steps[6].describe(), "fault clear redis");
        assert_eq!(s.steps[7].describe(), "fault clear every link");
    }

    fn error(text: &str) -> SpecError {
        parse("bad.yaml", text).expect_err("must be rejected")
    }

    #[test]
    fn mistakes_are_rejected_with_file_line_and_hint() {
        let e = error("name: x\nsteps:\n  - fault: stop postgress\n");
        assert_eq!((e.file.as_str(), e.line), ("bad.yaml", 3), "{e}");
        assert!(e.to_string().contains("did you mean `postgres`"), "{e}");

        let e = error("name: x\nsteps:\n  - load: {rate: 10}\n  - wait: half a minute\n");
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("bad duration"), "{e}");

        let e = error("name: x\nsteps:\n  - load: {rate: 10, ratee: 5}\n");
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("unknown field `ratee`"), "{e}");

        let e = error("name: x\nsteps:\n  - scale: {consumers: 7}\n");
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("from 1 to 6"), "{e}");

        let e = error("name: x\nsteps:\n  - waitt: 5s\n");
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("did you mean `wait`"), "{e}");

        let e = error("name: x\nsteps:\n  - assert:\n      - lag > 1\n      - lagg > 1\n");
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("item 2"), "{e}");
        assert!(e.message.contains("did you mean `lag`"), "{e}");

        let e = error("name: x\nsteps:\n  - fault: {action: sotp, component: kafka}\n");
        assert!(e.message.contains("did you mean `stop`"), "{e}");

        let e = error("name: x\nsteps:\n  - fault: latency kafka\n");
        assert!(e.message.contains("needs an amount"), "{e}");
        let e = error("name: x\nsteps:\n  - fault: blackhole consumer\n");
        assert!(e.message.contains("has no link"), "{e}");
        let e = error("name: x\nsteps:\n  - fault: stop kafka 5s\n");
        assert!(e.message.contains("only network faults"), "{e}");
        let e = error("name: x\nsteps:\n  - fault: latncy kafka 5s\n");
        assert!(e.message.contains("did you mean `latency`"), "{e}");

        let e = error("name: x\nsteps:\n  - fault: fill kafka\n");
        assert!(e.message.contains("write `fill postgres`"), "{e}");
        let s = parse(
            "disk.yaml",
            "name: x\nsteps:\n  - fault: fill postgres\n  - fault: {action: free, component: postgres}\n",
        )
        .expect("fill and free parse");
        assert_eq!(s.steps[0].describe(), "fault fill postgres");
        assert_eq!(s.steps[1].describe(), "fault free postgres");

        let e = error("name: x\nsteps:\n  - load: {rate: 10, batch: 5000}\n");
        assert!(e.message.contains("batch 5000"), "{e}");

        let e = error("name: x\nsteps: []\n");
        assert!(e.message.contains("at least one step"), "{e}");

        let e = error("name: x\nsteps:\n  - load: go\n");
        assert!(e.message.contains("load: stop"), "{e}");
    }
}
