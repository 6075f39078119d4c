//! A TCP fault proxy for drills, in the Toxiproxy model. This kernel has no `netem`, so slow,
//! thin and dead links are made in user space: a proxy stands in front of a dependency and the
//! faults set on it (latency with jitter, a bandwidth limit, a black hole, connection resets),
//! each with a direction and a toxicity, act on the bytes crossing it, live.
//!
//! Written here rather than taken from `noxious` (the Rust port of Toxiproxy's core): its last
//! release is from 2021 on tokio-util 0.6 and rand 0.8, built around its own REST server, and it
//! has no connection reset; what a drill needs is a few hundred lines on the workspace's tokio.

pub mod control;
pub mod echo;
pub mod fault;
pub mod proxy;
pub mod settings;

pub use fault::{parse_duration, parse_rate, Direction, Fault, FaultError, Toxic};
pub use proxy::{Counters, Proxy};
pub use settings::{Link, Settings};
