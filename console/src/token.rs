//! `logctl token`: bearer tokens for the local stack, signed with the HS256 key `logctl up`
//! keeps in the state dir (or `LOGCTL_JWT_SECRET`, for a compose stack).

use std::time::Duration;

use logctl_core::auth::{self, Scope};
use logctl_core::config::Secret;
use logctl_core::OrganizationId;

use crate::stack::layout::{Layout, JWT_SECRET};
use crate::stack::StackError;

/// The env var that overrides the state dir's key (docker-compose reads the same one).
pub const SECRET_ENV: &str = "LOGCTL_JWT_SECRET";

/// The key tokens for this stack are signed with.
pub fn secret(layout: &Layout) -> Result<Secret, StackError> {
    match std::env::var(SECRET_ENV) {
        Ok(s) if !s.is_empty() => Ok(Secret::new(s)),
        _ => layout.secret(JWT_SECRET).map(Secret::new),
    }
}

/// Mints a token for `org` with `scopes`, valid for `ttl`.
pub fn mint(
    layout: &Layout,
    org: &str,
    scopes: &[Scope],
    ttl: Duration,
    subject: &str,
) -> Result<String, StackError> {
    let org =
        OrganizationId::parse(org).map_err(|e| StackError::Other(format!("--org {org:?}: {e}")))?;
    auth::mint(&secret(layout)?, &org, scopes, ttl, subject)
        .map_err(|e| StackError::Other(format!("cannot sign the token: {e}")))
}

/// Reads `90s`, `15m`, `1h`, `7d` (a bare number is seconds).
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: use e.g. 90s, 15m, 1h, 7d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3_600,
        "d" => n * 86_400,
        other => return Err(format!("unknown unit {other:?}: use s, m, h or d")),
    };
    if secs == 0 {
        return Err("the lifetime must be longer than 0 s".into());
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_read_as_an_operator_writes_them() {
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("soon").is_err());
    }

    #[test]
    fn a_minted_token_verifies_with_the_stack_key() {
        let dir = std::env::temp_dir().join(format!("logctl-token-{}", std::process::id()));
        let layout = Layout::open(&dir).expect("layout");
        let token = mint(
            &layout,
            "acme",
            &[Scope::Read],
            Duration::from_secs(60),
            "t",
        )
        .expect("mint");
        let verifier = auth::Verifier::new(&auth::AuthSettings {
            hs256_secret: secret(&layout).expect("secret"),
            ..auth::AuthSettings::default()
        })
        .expect("verifier");
        let who = verifier.verify(&token).expect("verifies");
        assert_eq!(who.org.as_str(), "acme");
        assert_eq!(who.scopes, vec![Scope::Read]);
        assert!(mint(
            &layout,
            "bad org",
            &[Scope::Read],
            Duration::from_secs(1),
            "t"
        )
        .is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
