//! ListGroups (v0-5): every group, filtered by state (v4+) and type (v5+: classic or consumer).

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::str_bytes;
use crate::broker::Broker;

pub async fn handle(
    broker: &Broker,
    version: i16,
    request: ListGroupsRequest,
) -> ListGroupsResponse {
    let states: Vec<String> = request
        .states_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let types: Vec<String> = request
        .types_filter
        .iter()
        .map(|t| t.to_ascii_lowercase())
        .collect();
    let mut response = ListGroupsResponse::default();
    for (id, description) in broker.groups.list().await {
        let state = description.state();
        let group_type = description.group_type();
        if !states.is_empty() && !states.contains(&state.to_ascii_lowercase()) {
            continue;
        }
        if !types.is_empty() && !types.iter().any(|t| t == group_type) {
            continue;
        }
        let mut group = ListedGroup::default();
        group.group_id = GroupId(str_bytes(id));
        group.protocol_type = str_bytes(description.protocol_type());
        if version >= 4 {
            group.group_state = str_bytes(state.to_string());
        }
        if version >= 5 {
            group.group_type = str_bytes(group_type.to_string());
        }
        response.groups.push(group);
    }
    response
}
