//! JoinGroup (v0-9): a member joins or rejoins a classic group and waits for the rebalance.

use std::time::Duration;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::{code, str_bytes};
use crate::broker::Broker;
use crate::group::messages::JoinRequest;
use crate::protocol::ClientInfo;

pub async fn handle(
    broker: &Broker,
    version: i16,
    request: JoinGroupRequest,
    client: &ClientInfo,
) -> JoinGroupResponse {
    let session_ms = request.session_timeout_ms.max(0) as u64;
    // v0 has no rebalance timeout: the session timeout bounds the rebalance too.
    let rebalance_ms = if version >= 1 {
        request.rebalance_timeout_ms.max(0) as u64
    } else {
        session_ms
    };
    let join = JoinRequest {
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.map(|id| id.to_string()),
        client_id: client.client_id.clone(),
        client_host: client.host.clone(),
        session_timeout: Duration::from_millis(session_ms),
        rebalance_timeout: Duration::from_millis(rebalance_ms),
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let answer = broker.groups.join(&request.group_id, join).await;
    let mut response = JoinGroupResponse::default();
    response.error_code = code(answer.error);
    response.generation_id = answer.generation_id;
    // v7+ send null for "no protocol"; older versions have a non-null string.
    if version >= 7 {
        response.protocol_type = answer.protocol_type.map(str_bytes);
        response.protocol_name = answer.protocol_name.map(str_bytes);
    } else {
        response.protocol_name = Some(str_bytes(answer.protocol_name.unwrap_or_default()));
    }
    response.leader = str_bytes(answer.leader);
    response.skip_assignment = version >= 9 && answer.skip_assignment;
    response.member_id = str_bytes(answer.member_id);
    response.members = answer
        .members
        .into_iter()
        .map(|m| {
            let mut member = JoinGroupResponseMember::default();
            member.member_id = str_bytes(m.member_id);
            if version >= 5 {
                member.group_instance_id = m.group_instance_id.map(str_bytes);
            }
            member.metadata = m.metadata;
            member
        })
        .collect();
    response
}
