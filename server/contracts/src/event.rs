//! The log event, validated once at the gateway and trusted downstream.
//!
//! A [`LogEvent`] can only be built through [`LogEvent::from_json`] (outside input) or by
//! deserializing the internal wire form, whose newtypes re-check their invariants. Every
//! rejection is a [`FieldError`] naming the offending field, so the HTTP layer can answer a
//! 400 that tells the client exactly what to fix.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// An event id as clients and paths give it; the error names the `id` field.
pub fn parse_id(s: &str) -> Result<Uuid, FieldError> {
    Uuid::parse_str(s).map_err(|e| FieldError::new("id", format!("not a UUID ({e})")))
}

/// Why one field of an incoming event was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Bounds on outside input, configurable per deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLimits {
    /// Largest accepted `message`, in bytes of UTF-8.
    pub max_message_bytes: usize,
}

impl Default for EventLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: 64 * 1024,
        }
    }
}

/// Severity, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl Level {
    pub const ALL: [Level; 6] = [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
        Level::Fatal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
            Level::Fatal => "FATAL",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = String;

    /// Case-insensitive, so `warn` and `WARN` are the same level; `WARNING` is accepted as the
    /// spelling several logging libraries use.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        Level::ALL
            .into_iter()
            .find(|l| l.as_str() == upper)
            .or((upper == "WARNING").then_some(Level::Warn))
            .ok_or_else(|| {
                format!(
                    "unknown level {s:?}: expected one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL"
                )
            })
    }
}

/// The tenant an event belongs to: also the Kafka key, so one organization's events stay in
/// order within one partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OrganizationId(String);

impl OrganizationId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(s: impl Into<String>) -> Result<Self, String> {
        let s = s.into();
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        if s.len() > Self::MAX_LEN {
            return Err(format!("must be at most {} characters", Self::MAX_LEN));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(format!(
                "invalid character {c:?}: use letters, digits, '-', '_' or '.'"
            ));
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OrganizationId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl From<OrganizationId> for String {
    fn from(o: OrganizationId) -> String {
        o.0
    }
}

impl fmt::Display for OrganizationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One log event as it travels gateway → producer → Kafka → consumer → PostgreSQL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogEvent {
    pub id: Uuid,
    pub organization_id: OrganizationId,
    pub level: Level,
    pub message: String,
    pub source: String,
    /// When it happened, as the client said; `received_at` when the client gave none.
    pub timestamp: DateTime<Utc>,
    /// When the gateway accepted it: the start of the end-to-end latency clock.
    pub received_at: DateTime<Utc>,
}

/// Fields a client may send; anything else is refused so a typo (`levle`) is not silently lost.
const CLIENT_FIELDS: [&str; 6] = [
    "id",
    "organizationId",
    "level",
    "message",
    "source",
    "timestamp",
];

/// A client event's fields as strings, before their rules are checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClientFields<'a> {
    #[serde(default, borrow)]
    organization_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    level: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    source: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
}

/// Each client field as read: absent (or null), a string, or why it is neither.
struct Fields<'a> {
    organization_id: Field<'a>,
    level: Field<'a>,
    message: Field<'a>,
    source: Field<'a>,
    timestamp: Field<'a>,
    id: Field<'a>,
}

type Field<'a> = Result<Option<Cow<'a, str>>, FieldError>;

fn required<'a>(field: Field<'a>, name: &str) -> Result<Cow<'a, str>, FieldError> {
    field?.ok_or_else(|| FieldError::new(name, "is required"))
}

const MAX_SOURCE_LEN: usize = 256;

impl LogEvent {
    /// Validates one client event (a JSON object) and completes it: an id (UUID v7, time-ordered)
    /// when the client sent none, and the gateway's receive time.
    pub fn from_json(
        value: &Value,
        limits: &EventLimits,
        received_at: DateTime<Utc>,
    ) -> Result<Self, FieldError> {
        let obj = value
            .as_object()
            .ok_or_else(|| FieldError::new("body", "expected a JSON object"))?;
        if let Some(unknown) = obj.keys().find(|k| !CLIENT_FIELDS.contains(&k.as_str())) {
            return Err(FieldError::new(
                unknown.as_str(),
                format!("unknown field: expected only {}", CLIENT_FIELDS.join(", ")),
            ));
        }

        let field = |name| optional_str(obj, name).map(|s| s.map(Cow::from));
        let fields = Fields {
            organization_id: field("organizationId"),
            level: field("level"),
            message: field("message"),
            source: field("source"),
            timestamp: field("timestamp"),
            id: field("id"),
        };
        Self::from_fields(fields, limits, received_at)
    }

    /// [`LogEvent::from_json`] straight from the body's bytes when they hold a well-formed
    /// event object (what clients send): its strings are borrowed from the body where they
    /// have no escapes, with no JSON tree built first (a map and a string per field, for every
    /// event the gateway took). `None` for anything else: the tree then says what is wrong,
    /// as before.
    pub fn from_json_bytes(
        body: &[u8],
        limits: &EventLimits,
        received_at: DateTime<Utc>,
    ) -> Option<Result<Self, FieldError>> {
        let f = serde_json::from_slice::<ClientFields<'_>>(body).ok()?;
        let fields = Fields {
            organization_id: Ok(f.organization_id),
            level: Ok(f.level),
            message: Ok(f.message),
            source: Ok(f.source),
            timestamp: Ok(f.timestamp),
            id: Ok(f.id),
        };
        Some(Self::from_fields(fields, limits, received_at))
    }

    /// Checks the fields in the order the API documents its first error by.
    fn from_fields(
        fields: Fields<'_>,
        limits: &EventLimits,
        received_at: DateTime<Utc>,
    ) -> Result<Self, FieldError> {
        let organization_id =
            OrganizationId::parse(required(fields.organization_id, "organizationId")?)
                .map_err(|m| FieldError::new("organizationId", m))?;
        let level = required(fields.level, "level")?
            .parse::<Level>()
            .map_err(|m| FieldError::new("level", m))?;
        let message = required(fields.message, "message")?;
        let message = parse_message(&message, limits)?;
        let source = required(fields.source, "source")?;
        let source = parse_source(&source)?;
        let timestamp = match fields.timestamp?.as_deref() {
            None => received_at,
            Some(s) => DateTime::parse_from_rfc3339(s)
                .map_err(|e| {
                    FieldError::new(
                        "timestamp",
                        format!("not an RFC 3339 timestamp ({e}), e.g. 2026-01-02T03:04:05.678Z"),
                    )
                })?
                .with_timezone(&Utc),
        };
        let id = match fields.id?.as_deref() {
            None => Uuid::now_v7(),
            Some(s) => parse_id(s)?,
        };

        Ok(Self {
            id,
            organization_id,
            level,
            message: message.to_owned(),
            source: source.to_owned(),
            timestamp,
            received_at,
        })
    }
}

impl LogEvent {
    /// Re-checks the rules a decoded event must keep, for events that did not come through
    /// [`LogEvent::from_json`] (a record written to Kafka by someone else).
    pub fn check(&self, limits: &EventLimits) -> Result<(), FieldError> {
        parse_message(&self.message, limits)?;
        parse_source(&self.source)?;
        Ok(())
    }
}

fn optional_str<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, FieldError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(FieldError::new(
            field,
            format!("expected a string, got {}", json_type(other)),
        )),
    }
}

fn parse_message<'a>(s: &'a str, limits: &EventLimits) -> Result<&'a str, FieldError> {
    if s.trim().is_empty() {
        return Err(FieldError::new("message", "must not be empty"));
    }
    if s.len() > limits.max_message_bytes {
        return Err(FieldError::new(
            "message",
            format!(
                "is {} bytes, above the limit of {} bytes",
                s.len(),
                limits.max_message_bytes
            ),
        ));
    }
    if s.contains('\0') {
        return Err(FieldError::new(
            "message",
            "must not contain NUL characters",
        ));
    }
    Ok(s)
}

fn parse_source(s: &str) -> Result<&str, FieldError> {
    if s.trim().is_empty() {
        return Err(FieldError::new("source", "must not be empty"));
    }
    if s.len() > MAX_SOURCE_LEN {
        return Err(FieldError::new(
            "source",
            format!("must be at most {MAX_SOURCE_LEN} bytes"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(FieldError::new(
            "source",
            "must not contain control characters",
        ));
    }
    Ok(s)
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z")
            .expect("valid")
            .with_timezone(&Utc)
    }

    fn parse(v: Value) -> Result<LogEvent, FieldError> {
        LogEvent::from_json(&v, &EventLimits::default(), now())
    }

    fn valid() -> Value {
        json!({"organizationId": "acme", "level": "INFO", "message": "hello", "source": "api"})
    }

    /// Any object of the client's fields, some missing, null, of another type, unknown or
    /// escaped: the bytes path either steps aside or decides exactly as the tree does.
    fn any_event() -> impl Strategy<Value = Value> {
        let text = prop_oneof![
            Just(json!("INFO")),
            Just(json!("acme")),
            Just(json!("hello \"there\"")),
            Just(json!("")),
            Just(json!("not a level")),
            Just(json!("2026-11-24T09:00:00Z")),
            Just(json!("0190a0a0-0000-7000-8000-000000000001")),
            Just(json!(null)),
            Just(json!(7)),
            "[a-zA-Z0-9 ._-]{0,12}".prop_map(Value::from),
        ];
        let field = prop_oneof![
            Just("organizationId"),
            Just("level"),
            Just("message"),
            Just("source"),
            Just("timestamp"),
            Just("id"),
            Just("levle"),
        ];
        let base = valid();
        proptest::collection::vec((field, text), 0..4).prop_map(move |changes| {
            let mut v = base.clone();
            let obj = v.as_object_mut().expect("object");
            for (field, text) in changes {
                obj.insert(field.to_owned(), text);
            }
            v
        })
    }

    proptest! {
        #[test]
        fn the_bytes_path_decides_as_the_tree_does(v in any_event()) {
            let limits = EventLimits::default();
            let bytes = serde_json::to_vec(&v).expect("serialize");
            if let Some(fast) = LogEvent::from_json_bytes(&bytes, &limits, now()) {
                let tree = LogEvent::from_json(&v, &limits, now());
                match (fast, tree) {
                    (Ok(mut a), Ok(b)) => {
                        if v.get("id").is_none_or(Value::is_null) {
                            a.id = b.id; // both made one of their own
                        }
                        prop_assert_eq!(a, b);
                    }
                    (a, b) => prop_assert_eq!(a.err(), b.err()),
                }
            }
        }
    }

    #[test]
    fn the_bytes_path_takes_what_clients_send_and_steps_aside_for_the_rest() {
        let limits = EventLimits::default();
        let ok = br#"{"organizationId":"acme","level":"INFO","message":"m","source":"s"}"#;
        assert!(matches!(
            LogEvent::from_json_bytes(ok, &limits, now()),
            Some(Ok(_))
        ));
        let quoted =
            br#"{"organizationId":"acme","level":"INFO","message":"a \"quoted\" word","source":"s"}"#;
        let event = LogEvent::from_json_bytes(quoted, &limits, now()).map(|r| r.expect("valid"));
        assert_eq!(
            event.map(|e| e.message).as_deref(),
            Some(r#"a "quoted" word"#)
        );
        for aside in [
            &br#"{"organizationId":"acme","level":"INFO","message":"m","source":"s","levle":1}"#[..],
            br#"[1]"#,
            b"{",
        ] {
            assert!(LogEvent::from_json_bytes(aside, &limits, now()).is_none());
        }
    }

    #[test]
    fn completes_a_minimal_event() {
        let e = parse(valid()).expect("valid event");
        assert_eq!(e.organization_id.as_str(), "acme");
        assert_eq!(e.level, Level::Info);
        assert_eq!(e.timestamp, now());
        assert_eq!(e.received_at, now());
        assert_eq!(e.id.get_version_num(), 7);
    }

    #[test]
    fn keeps_client_id_and_timestamp() {
        let mut v = valid();
        v["id"] = json!("0190f5d2-3b4c-7d8e-9f00-112233445566");
        v["timestamp"] = json!("2026-01-02T03:04:05.678+01:00");
        let e = parse(v).expect("valid event");
        assert_eq!(e.id.to_string(), "0190f5d2-3b4c-7d8e-9f00-112233445566");
        assert_eq!(e.timestamp.to_rfc3339(), "2026-01-02T02:04:05.678+00:00");
    }

    #[test]
    fn level_is_case_insensitive() {
        let mut v = valid();
        v["level"] = json!("warn");
        assert_eq!(parse(v).expect("valid").level, Level::Warn);
    }

    fn field_of(v: Value) -> String {
        parse(v).expect_err("must be refused").field
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(Value, &str)> = vec![
            (json!([1]), "body"),
            (
                json!({"level": "INFO", "message": "m", "source": "s"}),
                "organizationId",
            ),
            (
                json!({"organizationId": 5, "level": "INFO", "message": "m", "source": "s"}),
                "organizationId",
            ),
            (
                json!({"organizationId": "a b", "level": "INFO", "message": "m", "source": "s"}),
                "organizationId",
            ),
            (
                json!({"organizationId": "a", "level": "LOUD", "message": "m", "source": "s"}),
                "level",
            ),
            (
                json!({"organizationId": "a", "level": "INFO", "message": "  ", "source": "s"}),
                "message",
            ),
            (
                json!({"organizationId": "a", "level": "INFO", "message": "m"}),
                "source",
            ),
            (
                json!({"organizationId": "a", "level": "INFO", "message": "m", "source": "s", "timestamp": "yesterday"}),
                "timestamp",
            ),
            (
                json!({"organizationId": "a", "level": "INFO", "message": "m", "source": "s", "id": "nope"}),
                "id",
            ),
            (
                json!({"organizationId": "a", "level": "INFO", "message": "m", "source": "s", "levle": "x"}),
                "levle",
            ),
        ];
        for (v, field) in cases {
            assert_eq!(field_of(v.clone()), field, "for {v}");
        }
    }

    #[test]
    fn message_limit_is_configurable() {
        let mut v = valid();
        v["message"] = json!("x".repeat(101));
        let limits = EventLimits {
            max_message_bytes: 100,
        };
        let err = LogEvent::from_json(&v, &limits, now()).expect_err("too long");
        assert_eq!(err.field, "message");
        v["message"] = json!("x".repeat(100));
        assert!(LogEvent::from_json(&v, &limits, now()).is_ok());
    }

    #[test]
    fn wire_form_round_trips_and_revalidates() {
        let e = parse(valid()).expect("valid");
        let wire = serde_json::to_string(&e).expect("serializes");
        assert_eq!(serde_json::from_str::<LogEvent>(&wire).expect("decodes"), e);
        let bad = wire.replace("\"acme\"", "\"a c m e\"");
        assert!(serde_json::from_str::<LogEvent>(&bad).is_err());
    }

    proptest! {
        /// Whatever a client sends, validation answers with an event or a field error: never a panic.
        #[test]
        fn never_panics_on_arbitrary_strings(org in ".*", level in ".*", msg in ".*", src in ".*", ts in ".*", id in ".*") {
            let v = json!({"organizationId": org, "level": level, "message": msg, "source": src, "timestamp": ts, "id": id});
            let _ = parse(v);
        }

        #[test]
        fn never_panics_on_arbitrary_json(s in "[\\[\\]{}\":,0-9a-zA-Z ]{0,64}") {
            if let Ok(v) = serde_json::from_str::<Value>(&s) {
                let _ = parse(v);
            }
        }
    }
}
