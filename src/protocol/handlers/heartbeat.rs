//! Heartbeat (v0-4): keeps a member's session alive; REBALANCE_IN_PROGRESS tells it to rejoin.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::code;
use crate::broker::Broker;
use crate::group::messages;

pub async fn handle(broker: &Broker, request: HeartbeatRequest) -> HeartbeatResponse {
    let heartbeat = messages::HeartbeatRequest {
        generation_id: request.generation_id,
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.map(|id| id.to_string()),
    };
    let mut response = HeartbeatResponse::default();
    response.error_code = code(broker.groups.heartbeat(&request.group_id, heartbeat).await);
    response
}
