//! Load generation for logctl.
//!
//! For now this is the event side: [`events::EventMix`] makes realistic, seedable client events
//! (skewed organizations, a level mix, sources and message sizes). The open-loop scheduler and
//! latency recording of `logctl load` build on it.

pub mod events;
