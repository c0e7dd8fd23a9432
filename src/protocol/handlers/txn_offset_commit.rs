//! TxnOffsetCommit: offsets a transaction commits for a consumer group (consume-transform-
//! produce). They are held with the transaction and become the group's committed offsets
//! only if it commits. From v3 the committing member is checked against the group (KIP-447).

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use crate::broker::Broker;
use crate::group::messages::CommitIdentity;
use crate::txn::state::{PendingOffset, fenced_for_version};

/// PRODUCER_FENCED from v3 on (KIP-588).
const FIRST_FENCED_VERSION: i16 = 3;

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let max_metadata = broker.config.offset_metadata_max_bytes as usize;
    let mut errors: Vec<Vec<Option<ResponseError>>> = Vec::with_capacity(request.topics.len());
    let mut offsets = Vec::new();
    for topic in &request.topics {
        let known = broker.logs.topic(&topic.name);
        let mut topic_errors = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let metadata = p.committed_metadata.as_ref().map(|m| m.to_string());
            let error = if known
                .as_ref()
                .is_none_or(|t| t.partition(p.partition_index).is_none())
            {
                Some(ResponseError::UnknownTopicOrPartition)
            } else if metadata.as_ref().is_some_and(|m| m.len() > max_metadata) {
                Some(ResponseError::OffsetMetadataTooLarge)
            } else {
                offsets.push(PendingOffset {
                    topic: topic.name.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: if version >= 2 {
                        p.committed_leader_epoch
                    } else {
                        -1
                    },
                    metadata,
                });
                None
            };
            topic_errors.push(error);
        }
        errors.push(topic_errors);
    }
    let identity = CommitIdentity {
        generation_id: if version >= 3 {
            request.generation_id
        } else {
            -1
        },
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|id| id.to_string()),
    };
    let outcome = if offsets.is_empty() {
        Ok(())
    } else {
        broker
            .txns
            .commit_offsets(
                &request.transactional_id,
                request.producer_id.0,
                request.producer_epoch,
                &request.group_id,
                identity,
                offsets,
            )
            .await
            .map_err(|e| fenced_for_version(e, version, FIRST_FENCED_VERSION))
    };
    let mut response = TxnOffsetCommitResponse::default();
    for (topic, topic_errors) in request.topics.into_iter().zip(errors) {
        let partitions = topic
            .partitions
            .iter()
            .zip(topic_errors)
            .map(|(p, error)| {
                let error = error.or(outcome.err());
                TxnOffsetCommitResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(error.map_or(0, |e| e.code()))
            })
            .collect();
        response.topics.push(
            TxnOffsetCommitResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    response
}
