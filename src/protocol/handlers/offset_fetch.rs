//! OffsetFetch: one group (v1-7, all its offsets when no topics are named) or a batch of
//! groups (v8+). A partition without a committed offset answers -1.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};

use super::{code, str_bytes};
use crate::broker::Broker;

/// One partition's answer: offset, leader epoch, metadata.
type Fetched = (i32, i64, i32, String);

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
                    .map(|(index, offset, epoch, metadata)| {
                        let mut p = <$partition>::default();
                        p.partition_index = index;
                        p.committed_offset = offset;
                        p.committed_leader_epoch = epoch;
                        p.metadata = Some(str_bytes(metadata));
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
            match lookup(broker, &group.group_id, requested) {
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
    match lookup(broker, &request.group_id, requested) {
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
) -> Result<Vec<(String, Vec<Fetched>)>, ResponseError> {
    if group.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    let store = broker.groups.offsets();
    let Some(requested) = requested else {
        let mut topics: Vec<(String, Vec<Fetched>)> = Vec::new();
        for (topic, partition, value) in store.group_offsets(group) {
            let fetched = (
                partition,
                value.offset,
                value.leader_epoch,
                value.metadata.unwrap_or_default(),
            );
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
                .map(|partition| match store.get(group, &topic, partition) {
                    Some(value) => (
                        partition,
                        value.offset,
                        value.leader_epoch,
                        value.metadata.unwrap_or_default(),
                    ),
                    None => (partition, -1, -1, String::new()),
                })
                .collect();
            (topic, fetched)
        })
        .collect())
}
