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

/// What every handler shares, behind one `Arc`: axum clones the state for each extractor of
/// each request, and cloning these parts one by one (strings, the verifier's keys) was a
/// measurable share of the gateway's allocations per event.
pub type AppState = Arc<App>;

pub struct App {
    pub settings: Settings,
    pub upstream: Upstream,
    pub verifier: Verifier,
    pub limiter: RateLimiter,
}
