//! Load generation for logctl, the engine of `logctl load` and `logctl bench`.
//!
//! - [`events`]: realistic, seedable client events (skewed organizations, a level mix, sources,
//!   message sizes).
//! - [`plan`]: when each request is meant to leave (constant rate, ramp, steps, count).
//! - [`engine`]: the open-loop sender, latency measured from the planned send time.
//! - [`report`]: HdrHistogram percentiles, answers by status, the generator's own lateness.
//! - [`http`]: the gateway as a target, with a token per organization.
//! - [`http1`]: the lean HTTP/1.1 client the targets send with.

pub mod engine;
pub mod events;
pub mod http;
pub mod http1;
pub mod plan;
pub mod report;
