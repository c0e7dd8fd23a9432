//! FindCoordinator: on a single node this broker coordinates every group and transactional
//! id. v0-3 answer one key; v4+ answer a batch of keys.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::message;
use crate::broker::Broker;
use crate::protocol::Endpoint;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub fn handle(
    broker: &Broker,
    endpoint: &Endpoint,
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let (host, port) = endpoint.advertised();
    let answer = |key: &StrBytes| {
        let mut coordinator = Coordinator::default();
        coordinator.key = key.clone();
        coordinator.node_id = BrokerId(-1);
        coordinator.port = -1;
        if key.is_empty() {
            coordinator.error_code = ResponseError::InvalidRequest.code();
            coordinator.error_message = message("the coordinator key must not be empty");
        } else if request.key_type != KEY_TYPE_GROUP && request.key_type != KEY_TYPE_TRANSACTION {
            coordinator.error_code = ResponseError::InvalidRequest.code();
            coordinator.error_message =
                message(format!("unsupported key type {}", request.key_type));
        } else {
            coordinator.node_id = BrokerId(broker.node_id());
            coordinator.host = StrBytes::from_string(host.to_string());
            coordinator.port = port;
        }
        coordinator
    };
    let mut response = FindCoordinatorResponse::default();
    if version >= 4 {
        response.coordinators = request.coordinator_keys.iter().map(answer).collect();
    } else {
        let single = answer(&request.key);
        response.error_code = single.error_code;
        response.error_message = if version >= 1 {
            single.error_message
        } else {
            None
        };
        response.node_id = single.node_id;
        response.host = single.host;
        response.port = single.port;
    }
    response
}
