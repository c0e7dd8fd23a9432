//! SyncGroup (v0-5): the leader hands out the assignment; every member receives its own.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::{code, str_bytes};
use crate::broker::Broker;
use crate::group::messages::SyncRequest;

pub async fn handle(broker: &Broker, version: i16, request: SyncGroupRequest) -> SyncGroupResponse {
    let sync = SyncRequest {
        generation_id: request.generation_id,
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.map(|id| id.to_string()),
        protocol_type: request.protocol_type.map(|t| t.to_string()),
        protocol_name: request.protocol_name.map(|n| n.to_string()),
        assignments: request
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let answer = broker.groups.sync(&request.group_id, sync).await;
    let mut response = SyncGroupResponse::default();
    response.error_code = code(answer.error);
    if version >= 5 {
        response.protocol_type = answer.protocol_type.map(str_bytes);
        response.protocol_name = answer.protocol_name.map(str_bytes);
    }
    response.assignment = answer.assignment;
    response
}
