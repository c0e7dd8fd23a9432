//! Metadata: this node as the only broker and leader of every partition, topic ids, and
//! auto-creation of requested topics.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::describe_cluster::OPERATIONS_NOT_REQUESTED;
use crate::broker::Broker;
use crate::log::manager::Topic;
use crate::log::partition::LEADER_EPOCH;
use crate::protocol::Endpoint;

pub async fn handle(
    broker: &Arc<Broker>,
    endpoint: &Endpoint,
    version: i16,
    request: MetadataRequest,
) -> MetadataResponse {
    let mut response = MetadataResponse::default();
    let (host, port) = endpoint.advertised();
    let mut node = MetadataResponseBroker::default();
    node.node_id = BrokerId(broker.node_id());
    node.host = StrBytes::from_string(host.to_string());
    node.port = port;
    response.brokers = vec![node];
    response.cluster_id = Some(StrBytes::from_string(broker.identity.cluster_id.clone()));
    response.controller_id = BrokerId(broker.node_id());
    response.cluster_authorized_operations = OPERATIONS_NOT_REQUESTED;

    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let requested = match request.topics {
        Some(topics) if !(version == 0 && topics.is_empty()) => topics,
        _ => {
            response.topics = broker
                .logs
                .topics()
                .iter()
                .map(|topic| describe_topic(broker, topic))
                .collect();
            return response;
        }
    };
    // Before v4 the request had no flag and auto-creation was always allowed.
    let auto_create = version < 4 || request.allow_auto_topic_creation;
    for wanted in requested {
        let entry = match (&wanted.name, wanted.topic_id) {
            (Some(name), _) => match broker.topic_or_create(name, auto_create).await {
                Ok(topic) => describe_topic(broker, &topic),
                Err(e) => topic_error(Some(name.clone()), Uuid::nil(), e.error_code()),
            },
            // Lookups by id need v12+, where a topic's name may be null.
            (None, _) if version < 12 => topic_error(
                Some(TopicName(StrBytes::from_static_str(""))),
                Uuid::nil(),
                ResponseError::InvalidRequest.code(),
            ),
            (None, id) => match broker.logs.topic_by_id(id) {
                Some(topic) => describe_topic(broker, &topic),
                None => topic_error(None, id, ResponseError::UnknownTopicId.code()),
            },
        };
        response.topics.push(entry);
    }
    response
}

fn topic_error(name: Option<TopicName>, id: Uuid, code: i16) -> MetadataResponseTopic {
    let mut topic = MetadataResponseTopic::default();
    topic.error_code = code;
    topic.name = name;
    topic.topic_id = id;
    topic.topic_authorized_operations = OPERATIONS_NOT_REQUESTED;
    topic
}

fn describe_topic(broker: &Broker, topic: &Topic) -> MetadataResponseTopic {
    let node = BrokerId(broker.node_id());
    let mut entry = topic_error(
        Some(TopicName(StrBytes::from_string(topic.name.clone()))),
        topic.id,
        0,
    );
    entry.partitions = (0..topic.partition_count())
        .map(|index| {
            let mut partition = MetadataResponsePartition::default();
            partition.partition_index = index;
            partition.leader_id = node;
            partition.leader_epoch = LEADER_EPOCH;
            partition.replica_nodes = vec![node];
            partition.isr_nodes = vec![node];
            partition
        })
        .collect();
    entry
}
