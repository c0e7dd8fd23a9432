//! OffsetCommit (v2-9): a group member (or a standalone consumer, generation -1) commits
//! offsets; the answer comes once they are durable in the committed-offsets log.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, TopicName};

use super::code;
use crate::broker::Broker;
use crate::group::messages::CommitIdentity;
use crate::group::offset_log::{OffsetKey, OffsetValue};

/// A partition and the error decided for it before the commit, if any.
type PartitionResult = (i32, Option<ResponseError>);

pub async fn handle(
    broker: &Broker,
    version: i16,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let max_metadata = broker.config.offset_metadata_max_bytes as usize;
    let now = crate::log::now_ms();
    let group = request.group_id.to_string();
    let mut results: Vec<(TopicName, Vec<PartitionResult>)> = Vec::new();
    let mut entries = Vec::new();
    for topic in request.topics {
        let known = broker.logs.topic(&topic.name);
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let metadata = p
                .committed_metadata
                .map(|m| m.to_string())
                .unwrap_or_default();
            let error = if known
                .as_ref()
                .is_none_or(|t| t.partition(p.partition_index).is_none())
            {
                Some(ResponseError::UnknownTopicOrPartition)
            } else if metadata.len() > max_metadata {
                Some(ResponseError::OffsetMetadataTooLarge)
            } else {
                let key = OffsetKey {
                    group: group.clone(),
                    topic: topic.name.to_string(),
                    partition: p.partition_index,
                };
                let value = OffsetValue {
                    offset: p.committed_offset,
                    leader_epoch: if version >= 6 {
                        p.committed_leader_epoch
                    } else {
                        -1
                    },
                    metadata: Some(metadata),
                    commit_timestamp: now,
                };
                entries.push((key, Some(value)));
                None
            };
            partitions.push((p.partition_index, error));
        }
        results.push((topic.name, partitions));
    }
    let identity = CommitIdentity {
        generation_id: request.generation_id_or_member_epoch,
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.map(|id| id.to_string()),
    };
    let outcome = if group.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else if entries.is_empty() {
        Ok(())
    } else {
        broker
            .groups
            .commit_offsets(&group, identity, entries)
            .await
    };
    let mut response = OffsetCommitResponse::default();
    for (name, partitions) in results {
        let mut topic = OffsetCommitResponseTopic::default();
        topic.name = name;
        for (index, error) in partitions {
            let mut partition = OffsetCommitResponsePartition::default();
            partition.partition_index = index;
            partition.error_code = code(error.or(outcome.err()));
            topic.partitions.push(partition);
        }
        response.topics.push(topic);
    }
    response
}
