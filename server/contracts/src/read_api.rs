//! The read API's parameters, validated once: the gateway refuses bad ones with a 400 naming
//! the parameter, then forwards the canonical form to the query service, which parses it again
//! (it trusts nothing it did not check) and uses the canonical form as its cache key.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::{FieldError, Level, OrganizationId};

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1_000;
/// Longest `source` filter: the same bound events have.
const MAX_SOURCE_LEN: usize = 256;
const MAX_QUERY_LEN: usize = 4_096;

/// Where the next page starts: the last row's sort key (newest first), opaque to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub event_time: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "{}:{}",
            self.event_time.timestamp_micros(),
            self.id
        ))
    }

    pub fn decode(s: &str) -> Result<Self, FieldError> {
        let bad = || FieldError::new("cursor", "not a cursor this API issued");
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let (micros, id) = text.split_once(':').ok_or_else(bad)?;
        let micros: i64 = micros.parse().map_err(|_| bad())?;
        Ok(Self {
            event_time: DateTime::from_timestamp_micros(micros).ok_or_else(bad)?,
            id: Uuid::parse_str(id).map_err(|_| bad())?,
        })
    }
}

/// `GET /api/logs?level=&source=&since=&until=&limit=&cursor=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    pub level: Option<Level>,
    pub source: Option<String>,
    /// Inclusive lower bound on the event time.
    pub since: Option<DateTime<Utc>>,
    /// Exclusive upper bound on the event time.
    pub until: Option<DateTime<Utc>>,
    pub limit: u32,
    pub cursor: Option<Cursor>,
}

impl Default for LogQuery {
    fn default() -> Self {
        Self {
            level: None,
            source: None,
            since: None,
            until: None,
            limit: DEFAULT_LIMIT,
            cursor: None,
        }
    }
}

/// `GET /api/stats?since=`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsQuery {
    pub since: Option<DateTime<Utc>>,
}

/// One page of events, newest first; `next_cursor` is absent on the last page.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Counts of an organization's stored events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub organization_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    pub total: i64,
    pub by_level: std::collections::BTreeMap<String, i64>,
    pub by_source: std::collections::BTreeMap<String, i64>,
}

/// Splits a raw query string into pairs, refusing parameters not in `known` and repeats.
fn pairs(raw: Option<&str>, known: &[&str]) -> Result<Vec<(String, String)>, FieldError> {
    let raw = raw.unwrap_or("");
    if raw.len() > MAX_QUERY_LEN {
        return Err(FieldError::new(
            "query",
            format!("the query string is longer than {MAX_QUERY_LEN} bytes"),
        ));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        if !known.contains(&k.as_ref()) {
            return Err(FieldError::new(
                k.as_ref(),
                format!("unknown parameter; expected one of {}", known.join(", ")),
            ));
        }
        if !seen.insert(k.to_string()) {
            return Err(FieldError::new(k.as_ref(), "given more than once"));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

fn timestamp(field: &str, v: &str) -> Result<DateTime<Utc>, FieldError> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            FieldError::new(
                field,
                format!("not an RFC 3339 timestamp ({e}); e.g. 2026-11-24T10:00:00Z"),
            )
        })
}

impl LogQuery {
    const PARAMS: [&'static str; 6] = ["level", "source", "since", "until", "limit", "cursor"];

    pub fn parse(raw: Option<&str>) -> Result<Self, FieldError> {
        let mut q = LogQuery::default();
        for (k, v) in pairs(raw, &Self::PARAMS)? {
            match k.as_str() {
                "level" => {
                    q.level = Some(v.parse().map_err(|e: String| FieldError::new("level", e))?)
                }
                "source" => {
                    if v.is_empty() || v.len() > MAX_SOURCE_LEN {
                        return Err(FieldError::new(
                            "source",
                            format!("must be 1 to {MAX_SOURCE_LEN} bytes"),
                        ));
                    }
                    q.source = Some(v);
                }
                "since" => q.since = Some(timestamp("since", &v)?),
                "until" => q.until = Some(timestamp("until", &v)?),
                "limit" => {
                    q.limit = v
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            FieldError::new(
                                "limit",
                                format!("must be a whole number from 1 to {MAX_LIMIT}"),
                            )
                        })?;
                }
                "cursor" => q.cursor = Some(Cursor::decode(&v)?),
                _ => unreachable!("pairs() only yields known parameters"),
            }
        }
        if let (Some(since), Some(until)) = (q.since, q.until) {
            if since >= until {
                return Err(FieldError::new("until", "must be later than since"));
            }
        }
        Ok(q)
    }

    /// The same query as a query string, parameters in one fixed order: what the gateway
    /// forwards and what the cache keys on.
    pub fn canonical(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        if let Some(l) = self.level {
            s.append_pair("level", l.as_str());
        }
        if let Some(src) = &self.source {
            s.append_pair("source", src);
        }
        if let Some(t) = self.since {
            s.append_pair(
                "since",
                &t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            );
        }
        if let Some(t) = self.until {
            s.append_pair(
                "until",
                &t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            );
        }
        s.append_pair("limit", &self.limit.to_string());
        if let Some(c) = self.cursor {
            s.append_pair("cursor", &c.encode());
        }
        s.finish()
    }
}

impl StatsQuery {
    pub fn parse(raw: Option<&str>) -> Result<Self, FieldError> {
        let mut q = StatsQuery::default();
        for (_, v) in pairs(raw, &["since"])? {
            q.since = Some(timestamp("since", &v)?);
        }
        Ok(q)
    }

    pub fn canonical(&self) -> String {
        let mut out = String::new();
        if let Some(t) = self.since {
            let _ = write!(
                out,
                "since={}",
                form_urlencoded::byte_serialize(
                    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                        .as_bytes()
                )
                .collect::<String>()
            );
        }
        out
    }
}

/// The query service's internal paths; the organization comes from the gateway's verified
/// token as `org=`, never from the client's query.
pub const LOGS_PATH: &str = "/internal/logs";
pub const STATS_PATH: &str = "/internal/stats";

/// Prefixes a canonical query with the caller's organization for the internal hop.
pub fn internal_query(org: &OrganizationId, canonical: &str) -> String {
    let org = form_urlencoded::byte_serialize(org.as_str().as_bytes()).collect::<String>();
    if canonical.is_empty() {
        format!("org={org}")
    } else {
        format!("org={org}&{canonical}")
    }
}

/// Splits the internal hop's query back into the organization and the rest.
pub fn split_internal(raw: Option<&str>) -> Result<(OrganizationId, String), FieldError> {
    let raw = raw.unwrap_or("");
    let (first, rest) = raw.split_once('&').unwrap_or((raw, ""));
    let org = first
        .strip_prefix("org=")
        .ok_or_else(|| FieldError::new("org", "the internal API needs org= first"))?;
    let org = form_urlencoded::parse(format!("o={org}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let org = OrganizationId::parse(org).map_err(|e| FieldError::new("org", e))?;
    Ok((org, rest.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_full_query_round_trips_through_its_canonical_form() {
        let cursor = Cursor {
            event_time: DateTime::from_timestamp_micros(1_764_000_000_123_456).expect("time"),
            id: Uuid::now_v7(),
        };
        let raw = format!(
            "source=api%20x&level=warn&since=2026-11-24T10:00:00Z&until=2026-11-24T12:00:00%2B01:00&limit=5&cursor={}",
            cursor.encode()
        );
        let q = LogQuery::parse(Some(&raw)).expect("parses");
        assert_eq!(q.level, Some(Level::Warn));
        assert_eq!(q.source.as_deref(), Some("api x"));
        assert_eq!(q.limit, 5);
        assert_eq!(q.cursor, Some(cursor));
        assert_eq!(LogQuery::parse(Some(&q.canonical())).expect("again"), q);
    }

    #[test]
    fn each_bad_parameter_is_named() {
        let field = |raw: &str| LogQuery::parse(Some(raw)).expect_err("refused").field;
        assert_eq!(field("level=LOUD"), "level");
        assert_eq!(field("since=yesterday"), "since");
        assert_eq!(field("until=2026-13-01T00:00:00Z"), "until");
        assert_eq!(field("limit=0"), "limit");
        assert_eq!(field("limit=1001"), "limit");
        assert_eq!(field("limit=ten"), "limit");
        assert_eq!(field("cursor=abc"), "cursor");
        assert_eq!(field("org=other"), "org");
        assert_eq!(field("level=INFO&level=WARN"), "level");
        assert_eq!(
            field("since=2026-11-24T11:00:00Z&until=2026-11-24T10:00:00Z"),
            "until"
        );
        assert_eq!(
            StatsQuery::parse(Some("since=x"))
                .expect_err("refused")
                .field,
            "since"
        );
        assert_eq!(
            StatsQuery::parse(Some("level=INFO"))
                .expect_err("refused")
                .field,
            "level"
        );
    }

    #[test]
    fn the_internal_hop_carries_the_org_first() {
        let org = OrganizationId::parse("acme.eu").expect("org");
        let q = LogQuery {
            limit: 7,
            ..LogQuery::default()
        };
        let raw = internal_query(&org, &q.canonical());
        let (back, rest) = split_internal(Some(&raw)).expect("splits");
        assert_eq!(back, org);
        assert_eq!(LogQuery::parse(Some(&rest)).expect("parses"), q);
        assert!(split_internal(Some("limit=5")).is_err());
    }

    proptest! {
        /// No query string makes the parsers panic; what parses re-parses to itself.
        #[test]
        fn any_query_string_is_answered_without_panic(raw in ".{0,200}") {
            if let Ok(q) = LogQuery::parse(Some(&raw)) {
                prop_assert_eq!(LogQuery::parse(Some(&q.canonical())).expect("canonical parses"), q);
            }
            let _ = StatsQuery::parse(Some(&raw));
            let _ = split_internal(Some(&raw));
        }

        #[test]
        fn any_cursor_text_is_answered_without_panic(raw in "[A-Za-z0-9_=-]{0,120}") {
            let _ = Cursor::decode(&raw);
        }

        #[test]
        fn structured_queries_round_trip(
            level in proptest::option::of(0usize..6),
            limit in 1u32..=MAX_LIMIT,
            source in proptest::option::of("[ -~]{1,40}"),
            micros in proptest::option::of(0i64..4_000_000_000_000_000),
        ) {
            let q = LogQuery {
                level: level.map(|i| Level::ALL[i]),
                source,
                since: micros.and_then(DateTime::from_timestamp_micros),
                until: None,
                limit,
                cursor: micros.and_then(DateTime::from_timestamp_micros).map(|t| Cursor { event_time: t, id: Uuid::nil() }),
            };
            prop_assert_eq!(LogQuery::parse(Some(&q.canonical())).expect("parses"), q);
        }
    }
}
