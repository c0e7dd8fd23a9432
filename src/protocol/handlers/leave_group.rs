//! LeaveGroup: one member (v0-2) or a batch of members by id or instance id (v3+).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::{code, str_bytes};
use crate::broker::Broker;
use crate::group::messages::LeaveMember;

pub async fn handle(
    broker: &Broker,
    version: i16,
    request: LeaveGroupRequest,
) -> LeaveGroupResponse {
    let members: Vec<LeaveMember> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| LeaveMember {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|id| id.to_string()),
            })
            .collect()
    } else {
        vec![LeaveMember {
            member_id: request.member_id.to_string(),
            group_instance_id: None,
        }]
    };
    let results = broker
        .groups
        .leave(&request.group_id, members.clone())
        .await;
    let mut response = LeaveGroupResponse::default();
    if version < 3 {
        response.error_code = code(results.first().copied().flatten());
        return response;
    }
    // Errors about the group itself go at the top, as Kafka reports them.
    let group_level = [
        ResponseError::InvalidGroupId,
        ResponseError::CoordinatorNotAvailable,
    ];
    if let Some(Some(first)) = results.first()
        && group_level.contains(first)
    {
        response.error_code = first.code();
        return response;
    }
    response.members = members
        .into_iter()
        .zip(results)
        .map(|(member, result)| {
            let mut entry = MemberResponse::default();
            entry.member_id = str_bytes(member.member_id);
            entry.group_instance_id = member.group_instance_id.map(str_bytes);
            entry.error_code = code(result);
            entry
        })
        .collect();
    response
}
