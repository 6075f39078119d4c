//! The Tokio runtime each service runs on, sized by its `worker_threads` setting.
//!
//! Tokio's default, a worker per core, is the default here too. Fewer trade load for CPU on a
//! machine the services share with Kafka and PostgreSQL: a parked worker woken for a request
//! costs a context switch, and on two shared cores one gateway worker instead of two cut its
//! CPU per single event from 60 to 45 µs at 6,000 events/s. But one worker is a queue: in
//! `logctl bench` the gateway's single-event knee (p99 < 50 ms) fell from 12,000 to 4,000
//! events/s, a burst of work on the one thread holding every request behind it.

use std::future::Future;

/// Runs `future` to completion on a multi-threaded runtime of `worker_threads` workers (0: one
/// per core).
pub fn block_on<F: Future>(worker_threads: usize, future: F) -> std::io::Result<F::Output> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if worker_threads > 0 {
        builder.worker_threads(worker_threads);
    }
    Ok(builder.enable_all().build()?.block_on(future))
}
