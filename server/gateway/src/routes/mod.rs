//! The public API, one file per endpoint family.

pub mod ingest;
pub mod query;

use std::sync::Arc;

use crate::settings::Settings;
use crate::upstream::Upstream;

#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub upstream: Upstream,
}
