//! Who may do what: the bearer token names the organization and scopes; the limiter decides
//! whether that organization may spend `cost` more events now.
//!
//! A handler says what it needs by taking a [`Caller`]: `Caller<Write>` or `Caller<Read>`. The
//! token is verified, and its scope checked, before the handler runs (and before the body is
//! read), so no handler can forget to.

use std::marker::PhantomData;
use std::ops::Deref;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use logctl_core::auth::{AuthError, Principal, Scope};
use logctl_core::{ApiError, OrganizationId, Quota};

use super::AppState;
use crate::rate_limit::Bucket;

/// The scope a [`Caller`] must hold.
pub trait Needs {
    const SCOPE: Scope;
}

/// `logs:write`.
pub struct Write;
/// `logs:read`.
pub struct Read;

impl Needs for Write {
    const SCOPE: Scope = Scope::Write;
}

impl Needs for Read {
    const SCOPE: Scope = Scope::Read;
}

/// The verified caller of a request, holding scope `S`; refused with 401/403 otherwise.
pub struct Caller<S> {
    pub principal: Principal,
    scope: PhantomData<S>,
}

impl<S> Deref for Caller<S> {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.principal
    }
}

impl<S: Needs + Send + Sync> FromRequestParts<AppState> for Caller<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(Caller {
            principal: authorize(state, &parts.headers, S::SCOPE)?,
            scope: PhantomData,
        })
    }
}

/// Verifies the token and its scope.
fn authorize(state: &AppState, headers: &HeaderMap, scope: Scope) -> Result<Principal, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .map(|v| {
            v.to_str()
                .map_err(|_| AuthError::Malformed("not ASCII".into()))
        })
        .transpose()?;
    let principal = state.verifier.verify_header(value)?;
    principal.require(scope)?;
    Ok(principal)
}

/// An event for another organization than the token's is refused whole: nothing published.
pub fn same_org(principal: &Principal, org: &OrganizationId) -> Result<(), ApiError> {
    if &principal.org == org {
        Ok(())
    } else {
        Err(AuthError::WrongOrg {
            token: principal.org.to_string(),
            asked: org.to_string(),
        }
        .into())
    }
}

/// Spends `cost` of the organization's allowance; the quota to report on success.
pub async fn spend(
    state: &AppState,
    org: &OrganizationId,
    bucket: Bucket,
    cost: u64,
) -> Result<Option<Quota>, ApiError> {
    let Some(decision) = state.limiter.check(org, bucket, cost).await else {
        return Ok(None);
    };
    if decision.allowed {
        Ok(Some(decision.quota))
    } else if cost > decision.quota.limit {
        // Waiting would never help: say what would.
        Err(logctl_core::FieldError::new(
            "body",
            format!(
                "{cost} events exceed this organization's burst limit of {}; send smaller batches",
                decision.quota.limit
            ),
        )
        .into())
    } else {
        Err(ApiError::RateLimited {
            quota: decision.quota,
            retry_after_secs: decision.retry_after_secs,
        })
    }
}

/// Adds the `X-RateLimit-*` headers to an answer the limiter saw.
pub fn with_quota(mut response: Response, quota: Option<Quota>) -> Response {
    if let Some(q) = quota {
        q.write_headers(response.headers_mut());
    }
    response
}
