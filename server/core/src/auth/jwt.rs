//! Signing and verifying the tokens described in the parent module, with `jsonwebtoken`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{AuthError, Claims, Principal, Scope};
use crate::config::Secret;
use crate::event::OrganizationId;

/// How tokens are checked. The HS256 secret must be set (the local stack generates one); an
/// RS256 public key (PEM) may be added for tokens from an external issuer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    pub hs256_secret: Secret,
    /// PEM text of an RSA public key; tokens signed RS256 are checked against it.
    pub rs256_public_key: Option<String>,
    /// Clock skew tolerated on `exp`, in seconds.
    #[serde(deserialize_with = "logctl_contracts::duration::seconds")]
    pub leeway_secs: u64,
}

/// Smallest HS256 secret accepted: shorter ones are guessable offline from one token.
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("auth.hs256_secret must be set, at least {MIN_SECRET_BYTES} bytes (the local stack generates one)")]
    SecretTooShort,
    #[error("auth.rs256_public_key is not an RSA public key in PEM: {0}")]
    BadPublicKey(String),
}

/// Verifies tokens. Built once at start-up; cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    hs256: DecodingKey,
    rs256: Option<DecodingKey>,
    leeway: u64,
    verified: Arc<Mutex<HashMap<String, Verified>>>,
}

/// A token that checked out, kept until it expires: a client sends the same token with every
/// request, and checking it again (two base64 decodes, two JSON parses and an HMAC, or an RSA
/// signature) each time was a measurable part of the gateway's cost per event. The outcome
/// depends only on the token, the keys (fixed for the process) and the clock, so the cache
/// keeps the expiry and judges it as the full check does.
#[derive(Clone)]
struct Verified {
    principal: Principal,
    exp: u64,
}

/// Tokens remembered at most; past this the cache starts over (many distinct tokens at once
/// means many clients, each of which is verified once again).
const VERIFIED_MAX: usize = 10_000;

impl Verifier {
    pub fn new(settings: &AuthSettings) -> Result<Self, KeyError> {
        let secret = settings.hs256_secret.expose().as_bytes();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(KeyError::SecretTooShort);
        }
        let rs256 = settings
            .rs256_public_key
            .as_deref()
            .map(|pem| {
                DecodingKey::from_rsa_pem(pem.as_bytes())
                    .map_err(|e| KeyError::BadPublicKey(e.to_string()))
            })
            .transpose()?;
        Ok(Self {
            hs256: DecodingKey::from_secret(secret),
            rs256,
            leeway: settings.leeway_secs,
            verified: Arc::default(),
        })
    }

    /// Checks an `Authorization` header value and returns who is calling.
    pub fn verify_header(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let (scheme, token) = header
            .trim()
            .split_once(' ')
            .ok_or_else(|| AuthError::Malformed("expected 'Bearer <token>'".into()))?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Malformed(format!(
                "unsupported scheme {scheme:?}: use Bearer"
            )));
        }
        self.verify(token.trim())
    }

    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        match verified.get(token) {
            // Expired as jsonwebtoken judges it: `exp` before now, less the leeway.
            Some(v) if v.exp.saturating_add(self.leeway) >= now => return Ok(v.principal.clone()),
            Some(_) => {
                verified.remove(token);
            }
            None => {}
        }
        drop(verified);
        let (principal, exp) = self.verify_fully(token)?;
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if verified.len() >= VERIFIED_MAX {
            verified.clear();
        }
        verified.insert(
            token.to_owned(),
            Verified {
                principal: principal.clone(),
                exp,
            },
        );
        Ok(principal)
    }

    fn verify_fully(&self, token: &str) -> Result<(Principal, u64), AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| classify(e.kind()))?;
        let key = match header.alg {
            Algorithm::HS256 => &self.hs256,
            Algorithm::RS256 => self
                .rs256
                .as_ref()
                .ok_or_else(|| AuthError::Malformed("RS256 tokens are not accepted here".into()))?,
            other => {
                return Err(AuthError::Malformed(format!(
                    "algorithm {other:?} is not accepted: use HS256 or RS256"
                )))
            }
        };
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|e| classify(e.kind()))?;
        let claims = data.claims;
        let org = OrganizationId::parse(claims.org)
            .map_err(|e| AuthError::Malformed(format!("claim org {e}")))?;
        let scopes = claims
            .scope
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect();
        let principal = Principal {
            subject: claims.sub,
            org,
            scopes,
        };
        Ok((principal, claims.exp))
    }
}

fn classify(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm => AuthError::BadSignature,
        ErrorKind::MissingRequiredClaim(c) => AuthError::Malformed(format!("claim {c} is missing")),
        ErrorKind::InvalidClaimFormat(c) => AuthError::Malformed(format!("claim {c} is malformed")),
        ErrorKind::Json(e) => AuthError::Malformed(format!("claims: {e}")),
        ErrorKind::ImmatureSignature => AuthError::Malformed("the token is not valid yet".into()),
        other => AuthError::Malformed(format!("{other:?}")),
    }
}

/// Signs an HS256 token: what `logctl token` and the tests use against the local stack.
pub fn mint(
    secret: &Secret,
    org: &OrganizationId,
    scopes: &[Scope],
    ttl: Duration,
    subject: &str,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = jsonwebtoken::get_current_timestamp();
    mint_claims(
        secret,
        &Claims {
            sub: subject.to_string(),
            org: org.as_str().to_string(),
            exp: now + ttl.as_secs(),
            iat: now,
            scope: scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        },
    )
}

/// Signs any claims (tests use it for expired or odd tokens).
pub fn mint_claims(
    secret: &Secret,
    claims: &Claims,
) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.expose().as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

    fn verifier() -> Verifier {
        Verifier::new(&AuthSettings {
            hs256_secret: Secret::new(SECRET),
            ..AuthSettings::default()
        })
        .expect("verifier")
    }

    fn org(s: &str) -> OrganizationId {
        OrganizationId::parse(s).expect("org")
    }

    #[test]
    fn a_minted_token_verifies_with_its_org_and_scopes() {
        let token = mint(
            &Secret::new(SECRET),
            &org("acme"),
            &[Scope::Write],
            Duration::from_secs(60),
            "ci",
        )
        .expect("mint");
        let p = verifier()
            .verify_header(Some(&format!("Bearer {token}")))
            .expect("verifies");
        assert_eq!(p.org, org("acme"));
        assert_eq!(p.subject, "ci");
        assert!(p.require(Scope::Write).is_ok());
        assert_eq!(
            p.require(Scope::Read),
            Err(AuthError::WrongScope(Scope::Read))
        );
    }

    #[test]
    fn a_remembered_token_is_refused_once_it_expires() {
        let v = verifier();
        let token = mint(
            &Secret::new(SECRET),
            &org("acme"),
            &[Scope::Write],
            Duration::from_secs(60),
            "ci",
        )
        .expect("mint");
        let first = v.verify(&token).expect("verifies");
        assert_eq!(v.verify(&token).expect("remembered"), first);
        // The same entry, as it stands once its expiry (and the leeway) has passed.
        let now = jsonwebtoken::get_current_timestamp();
        v.verified
            .lock()
            .expect("lock")
            .get_mut(&token)
            .expect("remembered")
            .exp = now - 1 - v.leeway;
        let forged_late = mint_claims(
            &Secret::new(SECRET),
            &Claims {
                sub: "ci".into(),
                org: "acme".into(),
                exp: now - 1 - v.leeway,
                iat: now - 120,
                scope: "logs:write".into(),
            },
        )
        .expect("mint");
        // An entry past its expiry is dropped and the token checked in full again.
        assert!(v.verify(&token).is_ok(), "the real token is still valid");
        v.verified.lock().expect("lock").insert(
            forged_late.clone(),
            Verified {
                principal: first,
                exp: now - 1 - v.leeway,
            },
        );
        assert_eq!(v.verify(&forged_late), Err(AuthError::Expired));
        assert!(!v.verified.lock().expect("lock").contains_key(&forged_late));
    }

    #[test]
    fn each_failure_has_its_reason() {
        let v = verifier();
        assert_eq!(
            v.verify_header(None).expect_err("refused").reason(),
            "missing"
        );
        assert_eq!(
            v.verify_header(Some("Basic abc"))
                .expect_err("refused")
                .reason(),
            "malformed"
        );
        assert_eq!(
            v.verify_header(Some("Bearer x.y.z"))
                .expect_err("refused")
                .reason(),
            "malformed"
        );
        let forged = mint(
            &Secret::new("another-secret-another-secret-another"),
            &org("acme"),
            &[Scope::Write],
            Duration::from_secs(60),
            "x",
        )
        .expect("mint");
        assert_eq!(
            v.verify(&forged).expect_err("refused"),
            AuthError::BadSignature
        );
        let now = jsonwebtoken::get_current_timestamp();
        let expired = mint_claims(
            &Secret::new(SECRET),
            &Claims {
                sub: "x".into(),
                org: "acme".into(),
                exp: now - 120,
                iat: now - 180,
                scope: "logs:write".into(),
            },
        )
        .expect("mint");
        assert_eq!(v.verify(&expired).expect_err("refused"), AuthError::Expired);
        let bad_org = mint_claims(
            &Secret::new(SECRET),
            &Claims {
                sub: "x".into(),
                org: "no spaces allowed".into(),
                exp: now + 60,
                iat: now,
                scope: "logs:write".into(),
            },
        )
        .expect("mint");
        assert_eq!(
            v.verify(&bad_org).expect_err("refused").reason(),
            "malformed"
        );
    }

    /// A key pair made for this test only (tests/fixtures), never used anywhere else.
    const TEST_PRIVATE: &str = include_str!("../../tests/fixtures/rs256-test-private.pem");
    const TEST_PUBLIC: &str = include_str!("../../tests/fixtures/rs256-test-public.pem");

    #[test]
    fn rs256_tokens_from_an_external_issuer_verify_with_its_public_key() {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: "idp-user".into(),
            org: "acme".into(),
            exp: now + 60,
            iat: now,
            scope: "logs:read openid".into(),
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::RS256),
            &claims,
            &EncodingKey::from_rsa_pem(TEST_PRIVATE.as_bytes()).expect("private key"),
        )
        .expect("sign");
        let with_key = Verifier::new(&AuthSettings {
            hs256_secret: Secret::new(SECRET),
            rs256_public_key: Some(TEST_PUBLIC.into()),
            ..AuthSettings::default()
        })
        .expect("verifier");
        let who = with_key.verify(&token).expect("verifies");
        assert_eq!(who.org, org("acme"));
        assert_eq!(who.scopes, vec![Scope::Read], "unknown scopes are ignored");
        // Without the public key configured, RS256 is refused.
        assert_eq!(
            verifier().verify(&token).expect_err("refused").reason(),
            "malformed"
        );
        // A token signed HS256 with the *public key text* as secret (the classic algorithm
        // confusion attack) does not verify.
        let confused = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(TEST_PUBLIC.as_bytes()),
        )
        .expect("sign");
        assert_eq!(
            with_key.verify(&confused).expect_err("refused"),
            AuthError::BadSignature
        );
        assert!(matches!(
            Verifier::new(&AuthSettings {
                hs256_secret: Secret::new(SECRET),
                rs256_public_key: Some("not a key".into()),
                ..AuthSettings::default()
            }),
            Err(KeyError::BadPublicKey(_))
        ));
    }

    #[test]
    fn a_short_secret_is_refused_at_start_up() {
        let short = AuthSettings {
            hs256_secret: Secret::new("short"),
            ..AuthSettings::default()
        };
        assert!(matches!(
            Verifier::new(&short),
            Err(KeyError::SecretTooShort)
        ));
    }

    proptest! {
        /// Whatever arrives in the header, verification answers, never panics.
        #[test]
        fn any_header_is_answered_without_panic(header in ".{0,300}") {
            let _ = verifier().verify_header(Some(&header));
        }

        #[test]
        fn any_three_part_token_is_answered_without_panic(
            a in "[A-Za-z0-9_-]{0,80}", b in "[A-Za-z0-9_-]{0,200}", c in "[A-Za-z0-9_-]{0,80}"
        ) {
            let _ = verifier().verify(&format!("{a}.{b}.{c}"));
        }
    }
}
