//! OffsetFetch: one group (v1-7, all its offsets when no topics are named) or a batch of
//! groups (v8+). A partition without a committed offset answers -1. With `require_stable`
//! (v7+), a partition whose offset a transaction is still committing answers
//! UNSTABLE_OFFSET_COMMIT, and the consumer retries.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};

use super::{code, str_bytes};
use crate::broker::Broker;

/// One partition's answer: offset, leader epoch, metadata, error code.
type Fetched = (i32, i64, i32, String, i16);

/// The v8+ and the older response carry the same fields in twin structs.
macro_rules! response_topics {
    ($topics:expr, $topic:ty, $partition:ty) => {
        $topics
            .into_iter()
            .map(|(name, partitions)| {
                let mut topic = <$topic>::default();
                topic.name = TopicName(str_bytes(name));
                topic.partitions = partitions
                    .into_iter()
                    .map(|(index, offset, epoch, metadata, error_code)| {
                        let mut p = <$partition>::default();
                        p.partition_index = index;
                        p.committed_offset = offset;
                        p.committed_leader_epoch = epoch;
                        p.metadata = Some(str_bytes(metadata));
                        p.error_code = error_code;
                        p
                    })
                    .collect();
                topic
            })
            .collect()
    };
}

pub async fn handle(
    broker: &Broker,
    version: i16,
    request: OffsetFetchRequest,
) -> OffsetFetchResponse {
    let mut response = OffsetFetchResponse::default();
    if version >= 8 {
        for group in request.groups {
            let requested = group.topics.map(|topics| {
                topics
                    .into_iter()
                    .map(|t| (t.name.to_string(), t.partition_indexes))
                    .collect()
            });
            let mut entry = OffsetFetchResponseGroup::default();
            match lookup(broker, &group.group_id, requested, request.require_stable) {
                Ok(topics) => {
                    entry.topics = response_topics!(
                        topics,
                        OffsetFetchResponseTopics,
                        OffsetFetchResponsePartitions
                    );
                }
                Err(error) => entry.error_code = error.code(),
            }
            entry.group_id = group.group_id;
            response.groups.push(entry);
        }
        return response;
    }
    let requested = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.name.to_string(), t.partition_indexes))
            .collect()
    });
    let require_stable = version >= 7 && request.require_stable;
    match lookup(broker, &request.group_id, requested, require_stable) {
        Ok(topics) => {
            response.topics = response_topics!(
                topics,
                OffsetFetchResponseTopic,
                OffsetFetchResponsePartition
            );
        }
        Err(error) if version >= 2 => response.error_code = code(Some(error)),
        Err(_) => {}
    }
    response
}

/// The committed offsets asked for (`None`: all of the group's), grouped by topic.
fn lookup(
    broker: &Broker,
    group: &str,
    requested: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Result<Vec<(String, Vec<Fetched>)>, ResponseError> {
    if group.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    let store = broker.groups.offsets();
    let pending = if require_stable {
        broker.txns.pending_offsets(group)
    } else {
        Default::default()
    };
    let unstable = |topic: &str, partition: i32| {
        (!pending.is_empty() && pending.contains(&(topic.to_string(), partition))).then(|| {
            (
                partition,
                -1,
                -1,
                String::new(),
                ResponseError::UnstableOffsetCommit.code(),
            )
        })
    };
    let Some(requested) = requested else {
        let mut topics: Vec<(String, Vec<Fetched>)> = Vec::new();
        for (topic, partition, value) in store.group_offsets(group) {
            let fetched = unstable(&topic, partition).unwrap_or((
                partition,
                value.offset,
                value.leader_epoch,
                value.metadata.unwrap_or_default(),
                0,
            ));
            match topics.last_mut() {
                Some((name, partitions)) if *name == topic => partitions.push(fetched),
                _ => topics.push((topic, vec![fetched])),
            }
        }
        return Ok(topics);
    };
    Ok(requested
        .into_iter()
        .map(|(topic, partitions)| {
            let fetched = partitions
                .into_iter()
                .map(|partition| {
                    if let Some(answer) = unstable(&topic, partition) {
                        return answer;
                    }
                    match store.get(group, &topic, partition) {
                        Some(value) => (
                            partition,
                            value.offset,
                            value.leader_epoch,
                            value.metadata.unwrap_or_default(),
                            0,
                        ),
                        None => (partition, -1, -1, String::new(), 0),
                    }
                })
                .collect();
            (topic, fetched)
        })
        .collect())
}
