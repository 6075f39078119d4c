//! Kafka → PostgreSQL, at least once from Kafka and exactly once in the table.
//!
//! Follow a record: the [`source`] reads it and [`decode`]s it into a row or a dead letter,
//! gathering a batch; the [`sink`] stores the batch (its rows loaded by `COPY`, retrying
//! outages by its [`retry`] policy, isolating rows PostgreSQL refuses, publishing dead letters);
//! only then does the source store the batch's offsets for commit. A crash before that replays
//! the batch, and the primary key turns the replay into a no-op.
//!
//! The sink never sleeps on its own: every wait goes through the source's [`Hold`], which goes
//! on polling so the group keeps this member through an outage. When the source sees its
//! client stalled (the [`watchdog`] rules), [`run`] returns and the service makes a new one.

pub mod decode;
pub mod group;
pub mod retry;
pub mod sink;
pub mod source;
pub mod watchdog;

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use group::{EventConsumer, GroupContext};
use sink::{Invalidate, Letters, Rows, StorageSink};
use source::{BatchSource, Feed, Next};

/// Shutdown was requested before the batch in hand was handled: nothing of it is committed.
#[derive(Debug)]
pub struct Interrupted;

/// Waiting while staying in the consumer group, for the sink's backoffs and open breaker.
pub trait Hold: Send {
    /// Returns after `how_long`, or `Err` at shutdown; the group is served meanwhile.
    fn hold(
        &mut self,
        how_long: Duration,
        shutdown: &CancellationToken,
    ) -> impl Future<Output = Result<(), Interrupted>> + Send;
    /// Stops fetching new records (the database is not taking them).
    fn pause(&mut self);
    /// Fetches again after [`Hold::pause`]; a no-op when not paused.
    fn resume(&mut self);
    /// Reads the next batch's records while the database works on this one, then waits; run
    /// beside an insert and dropped when it ends. Never finishes on its own.
    fn read_ahead(&mut self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }
}

/// Why [`run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Shutdown,
    /// Lag to read but no record for the stall timeout: recreate the client.
    Stalled,
}

/// Moves batches from `source` to `sink` until shutdown (the batch in hand finished and its
/// offsets committed) or until the source's client looks stalled.
pub async fn run<F: Feed, R: Rows, L: Letters, I: Invalidate>(
    mut source: BatchSource<F>,
    sink: &StorageSink<R, L, I>,
    shutdown: CancellationToken,
) -> Ended {
    let ended = loop {
        let batch = match source.next_batch(&shutdown).await {
            Next::Batch(b) => b,
            Next::Shutdown => break Ended::Shutdown,
            Next::Stalled => break Ended::Stalled,
        };
        let handled = source::next_offsets(&batch);
        if sink.store(batch, &mut source, &shutdown).await.is_err() {
            break Ended::Shutdown;
        }
        source.done(handled);
    };
    source.finish();
    ended
}
