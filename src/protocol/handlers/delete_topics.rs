//! DeleteTopics: by name (v0-5) or by name or id (v6+).

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::message;
use crate::broker::Broker;

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let targets: Vec<(Option<TopicName>, Uuid)> = if version >= 6 {
        request
            .topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|name| (Some(name), Uuid::nil()))
            .collect()
    };
    let mut response = DeleteTopicsResponse::default();
    for (name, id) in targets {
        let mut result = DeletableTopicResult::default();
        let resolved = match &name {
            Some(name) => Some(name.to_string()),
            None => broker.logs.topic_by_id(id).map(|t| t.name.clone()),
        };
        result.name = name.clone();
        result.topic_id = id;
        match resolved {
            None => {
                result.error_code = ResponseError::UnknownTopicId.code();
                result.error_message = message(format!("unknown topic id {id}"));
            }
            Some(resolved) => match broker.logs.delete_topic(&resolved).await {
                Ok(deleted_id) => {
                    result.topic_id = deleted_id;
                    result.name = Some(TopicName(StrBytes::from_string(resolved)));
                }
                Err(e) => {
                    result.error_code = e.error_code();
                    result.error_message = message(&e);
                }
            },
        }
        response.responses.push(result);
    }
    response
}
