//! OffsetDelete (v0): drops committed offsets of topics the group no longer consumes.

use std::collections::BTreeMap;

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse, TopicName};

use super::{code, str_bytes};
use crate::broker::Broker;

pub async fn handle(broker: &Broker, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.partition_index))
        })
        .collect();
    let mut response = OffsetDeleteResponse::default();
    match broker
        .groups
        .delete_offsets(&request.group_id, partitions)
        .await
    {
        Ok(results) => {
            let mut topics: BTreeMap<String, Vec<OffsetDeleteResponsePartition>> = BTreeMap::new();
            for (topic, index, error) in results {
                let mut partition = OffsetDeleteResponsePartition::default();
                partition.partition_index = index;
                partition.error_code = code(error);
                topics.entry(topic).or_default().push(partition);
            }
            response.topics = topics
                .into_iter()
                .map(|(name, partitions)| {
                    let mut topic = OffsetDeleteResponseTopic::default();
                    topic.name = TopicName(str_bytes(name));
                    topic.partitions = partitions;
                    topic
                })
                .collect();
        }
        Err(error) => response.error_code = error.code(),
    }
    response
}
