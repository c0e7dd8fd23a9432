//! ConsumerGroupDescribe (v0-1, KIP-848): epochs, assignor and members of consumer groups,
//! with each member's current and target assignment.

use std::collections::HashMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, TopicName,
};
use uuid::Uuid;

use super::{message, str_bytes};
use crate::broker::Broker;
use crate::group::actor::GroupDescription;
use crate::group::assignor;

/// READ, DELETE and DESCRIBE (Kafka's AclOperation codes 3, 6, 8).
const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);
/// ConsumerGroupDescribe v1's member type of a consumer-protocol member.
const CONSUMER_MEMBER: i8 = 1;

pub async fn handle(
    broker: &Broker,
    version: i16,
    request: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let names: HashMap<Uuid, String> = broker
        .logs
        .topics()
        .iter()
        .map(|t| (t.id, t.name.clone()))
        .collect();
    let describe = |assignment: &assignor::Assignment| {
        let mut out = Assignment::default();
        out.topic_partitions = assignment
            .iter()
            .map(|(topic_id, partitions)| {
                let mut tp = TopicPartitions::default();
                tp.topic_id = *topic_id;
                tp.topic_name =
                    TopicName(str_bytes(names.get(topic_id).cloned().unwrap_or_default()));
                tp.partitions = partitions.iter().copied().collect();
                tp
            })
            .collect();
        out
    };
    let mut response = ConsumerGroupDescribeResponse::default();
    for group_id in request.group_ids {
        let mut group = DescribedGroup::default();
        group.authorized_operations = if request.include_authorized_operations {
            GROUP_OPERATIONS
        } else {
            i32::MIN
        };
        match broker.groups.describe(&group_id).await {
            Some(GroupDescription::Consumer(summary)) => {
                group.group_state = str_bytes(summary.state.to_string());
                group.group_epoch = summary.group_epoch;
                group.assignment_epoch = summary.assignment_epoch;
                group.assignor_name = str_bytes(summary.assignor);
                group.members = summary
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut member = Member::default();
                        member.member_id = str_bytes(m.member_id);
                        member.instance_id = m.instance_id.map(str_bytes);
                        member.rack_id = m.rack_id.map(str_bytes);
                        member.member_epoch = m.member_epoch;
                        member.client_id = str_bytes(m.client_id);
                        member.client_host = str_bytes(m.client_host);
                        member.subscribed_topic_names = m
                            .subscribed_topic_names
                            .into_iter()
                            .map(|n| TopicName(str_bytes(n)))
                            .collect();
                        member.subscribed_topic_regex = m.subscribed_topic_regex.map(str_bytes);
                        member.assignment = describe(&m.assignment);
                        member.target_assignment = describe(&m.target_assignment);
                        if version >= 1 {
                            member.member_type = CONSUMER_MEMBER;
                        }
                        member
                    })
                    .collect();
            }
            found => {
                group.group_state = str_bytes("Dead".to_string());
                group.error_code = ResponseError::GroupIdNotFound.code();
                group.error_message = message(match found {
                    Some(_) => format!("group {} is not a consumer group", &*group_id),
                    None => format!("group {} not found", &*group_id),
                });
            }
        }
        group.group_id = group_id;
        response.groups.push(group);
    }
    response
}
