//! DescribeGroups (v0-6): state, protocol and members of each group.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::{message, str_bytes};
use crate::broker::Broker;
use crate::group::actor::GroupDescription;
use crate::group::messages::GroupState;

/// READ, DELETE and DESCRIBE (Kafka's AclOperation codes 3, 6, 8): what anyone may do here.
const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);
/// "Not requested" in Kafka's authorized-operations fields.
const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

pub async fn handle(
    broker: &Broker,
    version: i16,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let mut response = DescribeGroupsResponse::default();
    for group_id in request.groups {
        let mut group = DescribedGroup::default();
        group.authorized_operations = if version >= 3 && request.include_authorized_operations {
            GROUP_OPERATIONS
        } else {
            OPERATIONS_NOT_REQUESTED
        };
        match broker.groups.describe(&group_id).await {
            Some(GroupDescription::Classic(summary)) => {
                group.group_state = str_bytes(summary.state.as_str().to_string());
                group.protocol_type = str_bytes(summary.protocol_type);
                group.protocol_data = str_bytes(summary.protocol_name);
                group.members = summary
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut member = DescribedGroupMember::default();
                        member.member_id = str_bytes(m.member_id);
                        if version >= 4 {
                            member.group_instance_id = m.instance_id.map(str_bytes);
                        }
                        member.client_id = str_bytes(m.client_id);
                        member.client_host = str_bytes(m.client_host);
                        member.member_metadata = m.metadata;
                        member.member_assignment = m.assignment;
                        member
                    })
                    .collect();
            }
            // As Kafka: a consumer group (KIP-848) is not described by this API, only by
            // ConsumerGroupDescribe. Before v6 a missing group is described as Dead.
            found => {
                group.group_state = str_bytes(GroupState::Dead.as_str().to_string());
                if version >= 6 {
                    group.error_code = ResponseError::GroupIdNotFound.code();
                    group.error_message = message(match found {
                        Some(_) => format!("group {} is not a classic group", &*group_id),
                        None => format!("group {} not found", &*group_id),
                    });
                }
            }
        }
        group.group_id = group_id;
        response.groups.push(group);
    }
    response
}
