//! DescribeTransactions (v0): state, producer, timeout and partitions of transactional ids.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};

use super::str_bytes;
use crate::broker::Broker;

pub fn handle(
    broker: &Arc<Broker>,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let mut response = DescribeTransactionsResponse::default();
    for id in request.transactional_ids {
        let mut state = TransactionState::default().with_producer_id(ProducerId(-1));
        state.producer_epoch = -1;
        match broker.txns.describe(&id) {
            None => state.error_code = ResponseError::TransactionalIdNotFound.code(),
            Some(described) => {
                let meta = described.meta;
                state.transaction_state = str_bytes(meta.state.name().to_string());
                state.transaction_timeout_ms = meta.timeout_ms;
                state.transaction_start_time_ms = meta.start_ms;
                state.producer_id = ProducerId(meta.producer_id);
                state.producer_epoch = meta.producer_epoch;
                let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
                for (topic, partition) in meta.partitions {
                    topics.entry(topic).or_default().push(partition);
                }
                state.topics = topics
                    .into_iter()
                    .map(|(topic, partitions)| {
                        TopicData::default()
                            .with_topic(TopicName(str_bytes(topic)))
                            .with_partitions(partitions)
                    })
                    .collect();
            }
        }
        state.transactional_id = id;
        response.transaction_states.push(state);
    }
    response
}
