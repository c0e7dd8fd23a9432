//! DescribeProducers (v0): the idempotent producers each partition knows, with their epoch,
//! last sequence and last timestamp (what `kafka-transactions.sh describe-producers` shows).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use super::message;
use crate::broker::Broker;

pub fn handle(broker: &Broker, request: DescribeProducersRequest) -> DescribeProducersResponse {
    let mut response = DescribeProducersResponse::default();
    for topic in request.topics {
        let known = broker.logs.topic(&topic.name);
        let mut entry = TopicResponse::default();
        for index in topic.partition_indexes {
            let mut partition = PartitionResponse::default();
            partition.partition_index = index;
            match known.as_ref().and_then(|t| t.partition(index)) {
                Some(log) => {
                    partition.active_producers = log
                        .active_producers()
                        .into_iter()
                        .map(|p| {
                            let mut state = ProducerState::default();
                            state.producer_id = ProducerId(p.producer_id);
                            state.producer_epoch = i32::from(p.epoch);
                            state.last_sequence = p.last_sequence;
                            state.last_timestamp = p.last_timestamp_ms;
                            // No transactions yet: no coordinator epoch, no open transaction.
                            state.coordinator_epoch = -1;
                            state.current_txn_start_offset = p.current_txn_start_offset;
                            state
                        })
                        .collect();
                }
                None => {
                    partition.error_code = ResponseError::UnknownTopicOrPartition.code();
                    partition.error_message =
                        message(format!("unknown partition {}-{index}", &*topic.name));
                }
            }
            entry.partitions.push(partition);
        }
        entry.name = topic.name;
        response.topics.push(entry);
    }
    response
}
