//! The Tokio runtime each service runs on, sized by its `worker_threads` setting.
//!
//! Tokio's default is a worker per core, right for a service with a machine to itself. A stack
//! whose services share their cores with Kafka, PostgreSQL and each other does better with
//! fewer: a parked worker woken for each request costs a context switch, and on two shared
//! cores the gateway spent a quarter of its CPU on them (measured at 6,000 single events/s:
//! 60 µs of CPU per event with two workers, 45 µs with one, the same latency).

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
