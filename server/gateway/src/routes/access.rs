//! Who may do what: the bearer token names the organization and scopes; the limiter decides
//! whether that organization may spend `cost` more events now.

use axum::http::{header, HeaderMap};
use axum::response::Response;
use logctl_core::auth::{AuthError, Principal, Scope};
use logctl_core::{ApiError, OrganizationId, Quota};

use super::AppState;
use crate::rate_limit::Bucket;

/// Verifies the token and its scope.
pub fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    scope: Scope,
) -> Result<Principal, ApiError> {
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
