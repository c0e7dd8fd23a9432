//! ConsumerGroupHeartbeat (v0-1, KIP-848): the consumer group protocol's only membership
//! request. The member reports its subscription and owned partitions; the broker answers with
//! its epoch and, when it changed, its assignment.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};

use super::{code, str_bytes};
use crate::broker::Broker;
use crate::group::messages::{ConsumerHeartbeat, TopicsSnapshot};
use crate::protocol::ClientInfo;

pub async fn handle(
    broker: &Broker,
    version: i16,
    request: ConsumerGroupHeartbeatRequest,
    client: &ClientInfo,
) -> ConsumerGroupHeartbeatResponse {
    let topics: TopicsSnapshot = Arc::new(
        broker
            .logs
            .topics()
            .iter()
            .map(|t| (t.name.clone(), (t.id, t.partition_count())))
            .collect::<BTreeMap<_, _>>(),
    );
    let owned = request.topic_partitions.map(|owned| {
        owned
            .into_iter()
            .map(|tp| (tp.topic_id, tp.partitions.into_iter().collect()))
            .collect()
    });
    let heartbeat = ConsumerHeartbeat {
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.map(|id| id.to_string()),
        rack_id: request.rack_id.map(|id| id.to_string()),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed_topic_names: request
            .subscribed_topic_names
            .map(|names| names.iter().map(|n| n.to_string()).collect()),
        subscribed_topic_regex: request.subscribed_topic_regex.map(|r| r.to_string()),
        server_assignor: request.server_assignor.map(|a| a.to_string()),
        owned,
        client_id: client.client_id.clone(),
        client_host: client.host.clone(),
        topics,
        server_generates_member_id: version == 0,
    };
    let answer = broker
        .groups
        .consumer_heartbeat(&request.group_id, heartbeat)
        .await;
    let mut response = ConsumerGroupHeartbeatResponse::default();
    response.error_code = code(answer.error);
    response.error_message = answer.error_message.map(str_bytes);
    response.member_id = answer.member_id.map(str_bytes);
    response.member_epoch = answer.member_epoch;
    response.heartbeat_interval_ms = answer.heartbeat_interval_ms;
    response.assignment = answer.assignment.map(|assignment| {
        let mut out = Assignment::default();
        out.topic_partitions = assignment
            .into_iter()
            .map(|(topic_id, partitions)| {
                let mut tp = TopicPartitions::default();
                tp.topic_id = topic_id;
                tp.partitions = partitions.into_iter().collect();
                tp
            })
            .collect();
        out
    });
    response
}
