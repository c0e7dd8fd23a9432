//! DescribeConfigs: topic configs under Kafka's names with their source (topic override,
//! broker config file, or default) and synonyms; broker configs of this node.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::message;
use crate::broker::Broker;
use crate::config::{Config, MAIN_LISTENER};
use crate::log::topic_config::{ConfigType, TOPIC_CONFIG_KEYS, TopicConfig};

use super::{RESOURCE_BROKER, RESOURCE_TOPIC};

const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

pub fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let synonyms = version >= 1 && request.include_synonyms;
    let docs = version >= 3 && request.include_documentation;
    let mut response = DescribeConfigsResponse::default();
    for resource in request.resources {
        let mut result = DescribeConfigsResult::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let keys = resource.configuration_keys.as_deref();
        match resource.resource_type {
            RESOURCE_TOPIC => match broker.logs.topic(&resource.resource_name) {
                Some(topic) => {
                    result.configs =
                        topic_config_entries(broker, &topic.config(), keys, synonyms, docs);
                }
                None => {
                    result.error_code = ResponseError::UnknownTopicOrPartition.code();
                    result.error_message =
                        message(format!("unknown topic `{}`", resource.resource_name));
                }
            },
            RESOURCE_BROKER
                if resource.resource_name.is_empty()
                    || resource.resource_name.as_str() == broker.node_id().to_string() =>
            {
                result.configs = broker_config_entries(broker, keys, docs);
            }
            RESOURCE_BROKER => {
                result.error_code = ResponseError::InvalidRequest.code();
                result.error_message = message(format!("this is broker {}", broker.node_id()));
            }
            other => {
                result.error_code = ResponseError::InvalidRequest.code();
                result.error_message = message(format!("resource type {other} is not supported"));
            }
        }
        response.results.push(result);
    }
    response
}

fn wanted(keys: Option<&[StrBytes]>, name: &str) -> bool {
    keys.is_none_or(|keys| keys.is_empty() || keys.iter().any(|k| k.as_str() == name))
}

fn entry(
    name: &str,
    value: String,
    source: i8,
    config_type: ConfigType,
    doc: Option<&str>,
) -> DescribeConfigsResourceResult {
    let mut entry = DescribeConfigsResourceResult::default();
    entry.name = StrBytes::from_string(name.to_string());
    entry.value = Some(StrBytes::from_string(value));
    entry.read_only = false;
    entry.config_source = source;
    entry.is_sensitive = false;
    entry.config_type = config_type as i8;
    entry.documentation = doc.map(|d| StrBytes::from_string(d.to_string()));
    entry
}

fn synonym(name: &str, value: String, source: i8) -> DescribeConfigsSynonym {
    let mut synonym = DescribeConfigsSynonym::default();
    synonym.name = StrBytes::from_string(name.to_string());
    synonym.value = Some(StrBytes::from_string(value));
    synonym.source = source;
    synonym
}

/// A topic's configs, as DescribeConfigs and CreateTopics (v5+) report them.
pub fn topic_config_entries(
    broker: &Broker,
    config: &TopicConfig,
    keys: Option<&[StrBytes]>,
    include_synonyms: bool,
    include_docs: bool,
) -> Vec<DescribeConfigsResourceResult> {
    let default_values = Config::embedded().map(|c| broker_values(&c)).ok();
    let broker_values = broker_values(&broker.config);
    TOPIC_CONFIG_KEYS
        .iter()
        .filter(|key| wanted(keys, key.name))
        .filter_map(|key| {
            let value = config.value_of(key.name)?;
            let broker_value = broker_values
                .iter()
                .find(|(name, _, _)| *name == key.broker_name)
                .map(|(_, v, _)| v.clone());
            let broker_source = broker_source(key.broker_name, &broker_values, &default_values);
            let source = if config.is_override(key.name) {
                SOURCE_DYNAMIC_TOPIC
            } else {
                broker_source
            };
            let mut result = entry(
                key.name,
                value.clone(),
                source,
                key.config_type,
                include_docs.then_some(key.doc),
            );
            if include_synonyms {
                if config.is_override(key.name) {
                    result
                        .synonyms
                        .push(synonym(key.name, value, SOURCE_DYNAMIC_TOPIC));
                }
                if let Some(broker_value) = broker_value {
                    result
                        .synonyms
                        .push(synonym(key.broker_name, broker_value, broker_source));
                }
            }
            Some(result)
        })
        .collect()
}

fn broker_source(
    name: &str,
    values: &[(&'static str, String, ConfigType)],
    defaults: &Option<Vec<(&'static str, String, ConfigType)>>,
) -> i8 {
    let value = values
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, v, _)| v);
    let default = defaults
        .as_ref()
        .and_then(|d| d.iter().find(|(n, _, _)| *n == name).map(|(_, v, _)| v));
    if value == default {
        SOURCE_DEFAULT
    } else {
        SOURCE_STATIC_BROKER
    }
}

/// This node's configs under Kafka's broker names (Weir-only settings under `weir.`).
fn broker_values(config: &Config) -> Vec<(&'static str, String, ConfigType)> {
    use ConfigType::*;
    let (host, port) = config.advertised();
    let mut listeners = format!("{MAIN_LISTENER}://{}", config.listen);
    let mut advertised = format!("{MAIN_LISTENER}://{host}:{port}");
    for extra in &config.extra_listeners {
        listeners.push_str(&format!(",{}://{}", extra.name, extra.listen));
        advertised.push_str(&format!(",{}://{}", extra.name, extra.advertised));
    }
    vec![
        ("node.id", config.node_id.to_string(), Int),
        ("broker.id", config.node_id.to_string(), Int),
        ("listeners", listeners, List),
        ("advertised.listeners", advertised, List),
        ("log.dirs", config.data_dir.display().to_string(), List),
        (
            "auto.create.topics.enable",
            config.auto_create_topics.to_string(),
            Boolean,
        ),
        ("num.partitions", config.num_partitions.to_string(), Int),
        ("default.replication.factor", "1".to_string(), Int),
        (
            "socket.request.max.bytes",
            config.socket_request_max_bytes.to_string(),
            Int,
        ),
        (
            "log.segment.bytes",
            config.log_segment_bytes.to_string(),
            Int,
        ),
        ("log.roll.ms", config.log_segment_ms.to_string(), Long),
        (
            "log.retention.ms",
            config.log_retention_ms.to_string(),
            Long,
        ),
        (
            "log.retention.bytes",
            config.log_retention_bytes.to_string(),
            Long,
        ),
        (
            "log.index.interval.bytes",
            config.log_index_interval_bytes.to_string(),
            Int,
        ),
        (
            "message.max.bytes",
            config.message_max_bytes.to_string(),
            Int,
        ),
        (
            "log.message.timestamp.type",
            config.log_message_timestamp_type.as_str().to_string(),
            String,
        ),
        (
            "log.cleanup.policy",
            config.log_cleanup_policy.clone(),
            List,
        ),
        (
            "log.retention.check.interval.ms",
            config.log_retention_check_interval_ms.to_string(),
            Long,
        ),
        (
            "weir.durability",
            config.durability.as_str().to_string(),
            String,
        ),
        (
            "weir.flush.interval.ms",
            config.flush_interval_ms.to_string(),
            Long,
        ),
        (
            "log.flush.offset.checkpoint.interval.ms",
            config.checkpoint_interval_ms.to_string(),
            Long,
        ),
    ]
}

fn broker_config_entries(
    broker: &Broker,
    keys: Option<&[StrBytes]>,
    include_docs: bool,
) -> Vec<DescribeConfigsResourceResult> {
    let values = broker_values(&broker.config);
    let defaults = Config::embedded().map(|c| broker_values(&c)).ok();
    values
        .iter()
        .filter(|(name, _, _)| wanted(keys, name))
        .map(|(name, value, config_type)| {
            let mut result = entry(
                name,
                value.clone(),
                broker_source(name, &values, &defaults),
                *config_type,
                None,
            );
            result.read_only = true;
            if include_docs {
                result.documentation = Some(StrBytes::from_static_str(
                    "Set in the broker's YAML configuration; see config/weir.yaml.",
                ));
            }
            result
        })
        .collect()
}
