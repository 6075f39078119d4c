//! The public API, one file per endpoint family; [`access`] is what every one of them checks
//! first (token, scope, organization, rate limit).

pub mod access;
pub mod ingest;
pub mod query;

use std::sync::Arc;

use logctl_core::auth::Verifier;

use crate::rate_limit::RateLimiter;
use crate::settings::Settings;
use crate::upstream::Upstream;

#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub upstream: Upstream,
    pub verifier: Verifier,
    pub limiter: RateLimiter,
}
