//! Bearer tokens: the JWTs the gateway verifies on every `/api/*` request and `logctl token`
//! mints for the local stack. One place for both sides, so the claims they agree on cannot drift.
//!
//! A token names one organization (`org`) and what it may do (`scope`, space-separated as in
//! OAuth 2: `logs:write`, `logs:read`). HS256 with a shared secret is the default; an RS256
//! public key may be configured beside it for tokens issued elsewhere.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::event::OrganizationId;

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Write,
    Read,
}

impl Scope {
    pub const ALL: [Scope; 2] = [Scope::Write, Scope::Read];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Write => "logs:write",
            Scope::Read => "logs:read",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| format!("unknown scope {s:?}: use logs:write or logs:read"))
    }
}

/// The claims on the wire. Unknown scopes in `scope` are ignored, not refused: an issuer may
/// grant scopes meant for other services in the same token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub org: String,
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
    pub scope: String,
}

/// Who is calling, once the token checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub org: OrganizationId,
    pub scopes: Vec<Scope>,
}

impl Principal {
    pub fn require(&self, scope: Scope) -> Result<(), AuthError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(AuthError::WrongScope(scope))
        }
    }
}

/// Why a request was refused; `reason()` is the metric label and 401s vs 403s follow `status()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send 'Authorization: Bearer <token>'")]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token lacks the scope {0}")]
    WrongScope(Scope),
    #[error("the token is for organization {token:?}, not {asked:?}")]
    WrongOrg { token: String, asked: String },
}

impl AuthError {
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed(_) => "malformed",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::WrongScope(_) => "wrong_scope",
            AuthError::WrongOrg { .. } => "wrong_org",
        }
    }

    /// 401 when the caller is not known; 403 when it is known but not allowed.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, AuthError::WrongScope(_) | AuthError::WrongOrg { .. })
    }
}

// Signing and verifying need the `jwt` feature (and its crypto): the gateway verifies and the
// console mints; the producer and the consumer see no token.
#[cfg(feature = "jwt")]
mod jwt;
#[cfg(feature = "jwt")]
pub use jwt::*;
