//! The group consumer's client context.

use logctl_contracts::metric;
use rdkafka::consumer::{ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::{ClientContext, TopicPartitionList};

/// Logs group membership changes, which explain most "why did my lag jump" questions.
pub struct GroupContext;

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        tracing::info!(rebalance = ?describe(rebalance), "partitions being rebalanced");
    }

    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        metrics::counter!(metric::CONSUMER_REBALANCES).increment(1);
        tracing::info!(rebalance = ?describe(rebalance), "partitions rebalanced");
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::debug!(error = %e, "offset commit did not go through");
        }
    }
}

fn describe(rebalance: &Rebalance<'_>) -> String {
    match rebalance {
        Rebalance::Assign(tpl) => format!("assign {:?}", partitions(tpl)),
        Rebalance::Revoke(tpl) => format!("revoke {:?}", partitions(tpl)),
        Rebalance::Error(e) => format!("error {e}"),
    }
}

pub(crate) fn partitions(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

/// The consumer of the events topic, in this service's group.
pub type EventConsumer = StreamConsumer<GroupContext>;
