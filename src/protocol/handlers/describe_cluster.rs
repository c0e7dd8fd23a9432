//! DescribeCluster: this node as the whole cluster and its controller.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::protocol::Endpoint;

/// Kafka's "authorized operations not requested" marker.
pub const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;
const ENDPOINT_TYPE_BROKERS: i8 = 1;

pub fn handle(
    broker: &Broker,
    endpoint: &Endpoint,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let mut response = DescribeClusterResponse::default();
    response.cluster_id = StrBytes::from_string(broker.identity.cluster_id.clone());
    response.controller_id = BrokerId(broker.node_id());
    response.cluster_authorized_operations = OPERATIONS_NOT_REQUESTED;
    response.endpoint_type = request.endpoint_type;
    if request.endpoint_type != ENDPOINT_TYPE_BROKERS {
        response.error_code = ResponseError::UnsupportedEndpointType.code();
        response.error_message = super::message("only broker endpoints are served");
        return response;
    }
    let (host, port) = endpoint.advertised();
    let mut node = DescribeClusterBroker::default();
    node.broker_id = BrokerId(broker.node_id());
    node.host = StrBytes::from_string(host.to_string());
    node.port = port;
    response.brokers = vec![node];
    response
}
