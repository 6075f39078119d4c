//! Layered configuration: the binary's defaults (which work with `logctl up`), then an optional
//! TOML file, then `LOGCTL_<SERVICE>_*` environment variables (nested keys split on `__`).

use std::fmt;
use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(#[from] Box<figment::Error>);

/// Loads `T` from its defaults, the file at `file` (if any) and env vars under `env_prefix`
/// (for example `LOGCTL_GATEWAY_`).
pub fn load<T>(env_prefix: &str, file: Option<&Path>) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned + Default,
{
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(path) = file {
        figment = figment.merge(Toml::file_exact(path));
    }
    figment
        .merge(Env::prefixed(env_prefix).split("__"))
        .extract()
        .map_err(|e| ConfigError(Box::new(e)))
}

/// A value that must never reach a log: `Debug` and `Display` print a placeholder.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closures return its large error type
mod tests {
    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    struct Demo {
        port: u16,
        nested: Nested,
        password: Secret,
    }

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    struct Nested {
        size: usize,
    }

    #[test]
    fn env_overrides_file_overrides_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("demo.toml", "port = 7\n[nested]\nsize = 3\n")?;
            jail.set_env("LOGCTL_DEMO_NESTED__SIZE", "9");
            jail.set_env("LOGCTL_DEMO_PASSWORD", "hunter2");
            let d: Demo = load("LOGCTL_DEMO_", Some(Path::new("demo.toml"))).expect("loads");
            assert_eq!(d.port, 7);
            assert_eq!(d.nested.size, 9);
            assert_eq!(d.password.expose(), "hunter2");
            assert!(!format!("{d:?}").contains("hunter2"));
            Ok(())
        });
    }

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(default)]
    struct Timing {
        #[serde(deserialize_with = "logctl_contracts::duration::millis")]
        timeout_ms: u64,
        #[serde(deserialize_with = "logctl_contracts::duration::seconds")]
        grace_secs: u64,
    }

    #[test]
    fn durations_from_a_file_and_the_environment_take_units() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("t.toml", "timeout_ms = \"250ms\"\ngrace_secs = 15\n")?;
            let t: Timing = load("LOGCTL_T_", Some(Path::new("t.toml"))).expect("loads");
            assert_eq!((t.timeout_ms, t.grace_secs), (250, 15));
            jail.set_env("LOGCTL_T_TIMEOUT_MS", "2s");
            jail.set_env("LOGCTL_T_GRACE_SECS", "1m");
            let t: Timing = load("LOGCTL_T_", Some(Path::new("t.toml"))).expect("loads");
            assert_eq!((t.timeout_ms, t.grace_secs), (2000, 60));
            jail.set_env("LOGCTL_T_TIMEOUT_MS", "1500");
            let t: Timing = load("LOGCTL_T_", None).expect("a bare number keeps the unit");
            assert_eq!(t.timeout_ms, 1500);
            jail.set_env("LOGCTL_T_TIMEOUT_MS", "soon");
            assert!(load::<Timing>("LOGCTL_T_", None).is_err());
            Ok(())
        });
    }

    #[test]
    fn a_bad_value_is_an_error_not_a_default() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("LOGCTL_DEMO_PORT", "not-a-port");
            assert!(load::<Demo>("LOGCTL_DEMO_", None).is_err());
            Ok(())
        });
    }
}
