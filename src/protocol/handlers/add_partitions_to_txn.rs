//! AddPartitionsToTxn: v0-3 is the client's form (one transaction); v4+ batches several
//! transactions and can only verify (`verify_only`, KIP-890). A partition of an unknown topic
//! fails the whole transaction's request: it gets UNKNOWN_TOPIC_OR_PARTITION and the others
//! OPERATION_NOT_ATTEMPTED, as Kafka answers.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, TopicName, TransactionalId,
};

use crate::broker::Broker;
use crate::txn::state::fenced_for_version;

/// PRODUCER_FENCED from v2 on (KIP-588).
const FIRST_FENCED_VERSION: i16 = 2;

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let mut response = AddPartitionsToTxnResponse::default();
    if version <= 3 {
        let txn = AddPartitionsToTxnTransaction::default()
            .with_transactional_id(request.v3_and_below_transactional_id)
            .with_producer_id(request.v3_and_below_producer_id)
            .with_producer_epoch(request.v3_and_below_producer_epoch)
            .with_topics(request.v3_and_below_topics);
        response.results_by_topic_v3_and_below = add(broker, version, txn).await.topic_results;
    } else {
        for txn in request.transactions {
            response
                .results_by_transaction
                .push(add(broker, version, txn).await);
        }
    }
    response
}

async fn add(
    broker: &Arc<Broker>,
    version: i16,
    txn: AddPartitionsToTxnTransaction,
) -> AddPartitionsToTxnResult {
    let id: TransactionalId = txn.transactional_id;
    let partitions: Vec<(String, i32)> = txn
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.to_string(), *p)))
        .collect();
    let unknown: Vec<bool> = partitions
        .iter()
        .map(|(topic, index)| {
            broker
                .logs
                .topic(topic)
                .and_then(|t| t.partition(*index))
                .is_none()
        })
        .collect();
    let codes: Vec<i16> = if unknown.iter().any(|u| *u) {
        unknown
            .iter()
            .map(|u| {
                if *u {
                    ResponseError::UnknownTopicOrPartition.code()
                } else {
                    ResponseError::OperationNotAttempted.code()
                }
            })
            .collect()
    } else if txn.verify_only {
        let (producer_id, epoch) = (txn.producer_id.0, txn.producer_epoch);
        partitions
            .iter()
            .map(|p| {
                if broker.txns.is_in_transaction(&id, producer_id, epoch, p) {
                    0
                } else {
                    ResponseError::InvalidTxnState.code()
                }
            })
            .collect()
    } else {
        let result = broker
            .txns
            .add_partitions(&id, txn.producer_id.0, txn.producer_epoch, &partitions)
            .await;
        let code = match result {
            Ok(()) => 0,
            Err(e) => fenced_for_version(e, version, FIRST_FENCED_VERSION).code(),
        };
        vec![code; partitions.len()]
    };
    let mut codes = codes.into_iter();
    let topic_results = txn
        .topics
        .into_iter()
        .map(|t: AddPartitionsToTxnTopic| {
            let results = t
                .partitions
                .iter()
                .map(|p| {
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(*p)
                        .with_partition_error_code(codes.next().unwrap_or(0))
                })
                .collect();
            AddPartitionsToTxnTopicResult::default()
                .with_name(TopicName(t.name.0))
                .with_results_by_partition(results)
        })
        .collect();
    AddPartitionsToTxnResult::default()
        .with_transactional_id(id)
        .with_topic_results(topic_results)
}
