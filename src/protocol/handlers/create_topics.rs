//! CreateTopics: partitions, replication factor (1 on a single node), configs under Kafka's
//! names, manual assignments naming this node, and `validate_only`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::describe_configs::topic_config_entries;
use super::message;
use crate::broker::Broker;
use crate::log::manager::TopicError;

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut response = CreateTopicsResponse::default();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for topic in &request.topics {
        *seen.entry(topic.name.to_string()).or_default() += 1;
    }
    for topic in request.topics {
        let name = topic.name.to_string();
        let mut result = CreatableTopicResult::default();
        result.name = topic.name.clone();
        result.num_partitions = -1;
        result.replication_factor = -1;
        // Java's admin client expects a list here, never null.
        result.configs = Some(Vec::new());
        if seen.get(&name).copied().unwrap_or(0) > 1 {
            result.error_code = ResponseError::InvalidRequest.code();
            result.error_message = message(format!("topic `{name}` appears more than once"));
            response.topics.push(result);
            continue;
        }
        let mut partitions = topic.num_partitions;
        let mut replication_factor = topic.replication_factor;
        if !topic.assignments.is_empty() {
            let node = broker.node_id();
            if partitions != -1 || replication_factor != -1 {
                result.error_code = ResponseError::InvalidRequest.code();
                result.error_message =
                    message("assignments and num_partitions/replication_factor are exclusive");
                response.topics.push(result);
                continue;
            }
            if topic
                .assignments
                .iter()
                .any(|a| a.broker_ids.len() != 1 || a.broker_ids[0].0 != node)
            {
                result.error_code = ResponseError::InvalidReplicaAssignment.code();
                result.error_message = message(format!("replicas must be exactly [{node}]"));
                response.topics.push(result);
                continue;
            }
            partitions = topic.assignments.len() as i32;
            replication_factor = 1;
        }
        let mut configs = BTreeMap::new();
        for config in &topic.configs {
            if let Some(value) = &config.value {
                configs.insert(config.name.to_string(), value.to_string());
            }
        }
        let created = broker
            .logs
            .create_topic(
                &name,
                partitions,
                replication_factor,
                configs,
                request.validate_only,
            )
            .await;
        match created {
            Ok(created) => {
                result.topic_id = if request.validate_only {
                    uuid::Uuid::nil()
                } else {
                    created.id
                };
                result.num_partitions = if partitions == -1 {
                    broker.config.num_partitions
                } else {
                    partitions
                };
                result.replication_factor = 1;
                if version >= 5 {
                    result.configs = Some(
                        topic_config_entries(broker, &created.config(), None, false, false)
                            .into_iter()
                            .map(|entry| {
                                let mut config = CreatableTopicConfigs::default();
                                config.name = entry.name;
                                config.value = entry.value;
                                config.read_only = entry.read_only;
                                config.config_source = entry.config_source;
                                config.is_sensitive = false;
                                config
                            })
                            .collect(),
                    );
                }
            }
            Err(e) => {
                result.error_code = e.error_code();
                result.error_message = message(&e);
                if matches!(e, TopicError::Config(_)) {
                    result.topic_config_error_code = e.error_code();
                }
            }
        }
        response.topics.push(result);
    }
    response
}
