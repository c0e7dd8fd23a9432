//! CreatePartitions: grows a topic's partition count (never shrinks it).

use std::collections::HashSet;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::message;
use crate::broker::Broker;

pub async fn handle(
    broker: &Arc<Broker>,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut response = CreatePartitionsResponse::default();
    let mut seen = HashSet::new();
    let duplicates: HashSet<String> = request
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.to_string()))
        .map(|t| t.name.to_string())
        .collect();
    for topic in request.topics {
        let mut result = CreatePartitionsTopicResult::default();
        result.name = topic.name.clone();
        let name = topic.name.to_string();
        let node = broker.node_id();
        if duplicates.contains(&name) {
            result.error_code = ResponseError::InvalidRequest.code();
            result.error_message = message("topic appears more than once");
        } else if topic.assignments.as_ref().is_some_and(|assignments| {
            assignments
                .iter()
                .any(|a| a.broker_ids.len() != 1 || a.broker_ids[0].0 != node)
        }) {
            result.error_code = ResponseError::InvalidReplicaAssignment.code();
            result.error_message = message(format!("replicas must be exactly [{node}]"));
        } else if let Err(e) = broker
            .logs
            .create_partitions(&name, topic.count, request.validate_only)
            .await
        {
            result.error_code = e.error_code();
            result.error_message = message(&e);
        }
        response.results.push(result);
    }
    response
}
