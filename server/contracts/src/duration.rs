//! Durations as people write them, read the same way everywhere: command-line flags, drill
//! files, load steps and the services' settings. `250ms`, `30s`, `1m 30s`, `2h` (humantime's
//! units); a bare number is seconds on the command line and in drills.
//!
//! Settings named `*_ms` or `*_secs` keep their unit for a bare number (so existing files and
//! environment variables mean what they meant) and also take a string with its own unit:
//! `LOGCTL_GATEWAY_UPSTREAM_TIMEOUT_MS=2s`, `timeout_ms = "250ms"` ([`millis`], [`seconds`]).

use std::time::Duration;

/// `500us`, `250ms`, `1.5s`, `90s`, `15m`, `1h 30m`; a bare number is seconds.
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let bad = || format!("{s:?} is not a duration: use e.g. 500ms, 30s, 5m, 1h");
    if s.starts_with('-') {
        return Err(bad());
    }
    if let Ok(secs) = s.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs))
            .ok_or_else(bad);
    }
    // humantime has no fractions: `1.5s` is read as its smaller units.
    if let Some((n, unit)) = split_fraction(s) {
        let scale = match unit {
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        return Ok(Duration::from_secs_f64(n * scale));
    }
    humantime::parse_duration(s).map_err(|e| format!("{}: {e}", bad()))
}

/// `1.5s` as (1.5, "s"); None unless the number has a fraction.
fn split_fraction(s: &str) -> Option<(f64, &str)> {
    let at = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (n, unit) = s.split_at(at);
    if !n.contains('.') {
        return None;
    }
    let n: f64 = n.parse().ok().filter(|n: &f64| n.is_finite())?;
    Some((n, unit.trim()))
}

/// A bare number in `unit`, or a string with its own unit.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Written {
    Number(u64),
    Text(String),
}

fn read<'de, D, T>(d: D, unit: Duration, field_unit: &str) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::Error;
    let units = match <Written as serde::Deserialize>::deserialize(d)? {
        Written::Number(n) => n,
        Written::Text(t) => match t.trim().parse::<u64>() {
            Ok(n) => n,
            Err(_) => {
                let d = parse(&t).map_err(D::Error::custom)?;
                (d.as_nanos() / unit.as_nanos()) as u64
            }
        },
    };
    T::try_from(units).map_err(|_| D::Error::custom(format!("{units} {field_unit} is too long")))
}

/// For a `*_ms` setting: `250` (milliseconds) or `"250ms"`, `"2s"`.
pub fn millis<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    read(d, Duration::from_millis(1), "ms")
}

/// For a `*_secs` setting: `15` (seconds) or `"15s"`, `"2m"`.
pub fn seconds<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    read(d, Duration::from_secs(1), "s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_fractions_and_bare_seconds() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("50us"), Ok(Duration::from_micros(50)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("30"), Ok(Duration::from_secs(30)));
        assert!(parse("-1s").is_err());
        assert!(parse("soon")
            .expect_err("not a duration")
            .contains("not a duration"));
        assert!(parse("1.5w").is_err());
    }

    #[derive(serde::Deserialize)]
    struct S {
        #[serde(deserialize_with = "millis")]
        timeout_ms: u32,
        #[serde(deserialize_with = "seconds")]
        grace_secs: u64,
    }

    #[test]
    fn settings_take_their_unit_or_a_written_one() {
        let s: S =
            serde_json::from_str(r#"{"timeout_ms": 250, "grace_secs": 15}"#).expect("numbers");
        assert_eq!((s.timeout_ms, s.grace_secs), (250, 15));
        let s: S =
            serde_json::from_str(r#"{"timeout_ms": "2s", "grace_secs": "2m"}"#).expect("units");
        assert_eq!((s.timeout_ms, s.grace_secs), (2000, 120));
        let s: S = serde_json::from_str(r#"{"timeout_ms": "300", "grace_secs": "1m 30s"}"#)
            .expect("an env var's number is a string");
        assert_eq!((s.timeout_ms, s.grace_secs), (300, 90));
        let e = serde_json::from_str::<S>(r#"{"timeout_ms": "soon", "grace_secs": 1}"#)
            .err()
            .expect("refused");
        assert!(e.to_string().contains("not a duration"), "{e}");
        assert!(
            serde_json::from_str::<S>(r#"{"timeout_ms": "9999999h", "grace_secs": 1}"#).is_err()
        );
    }
}
