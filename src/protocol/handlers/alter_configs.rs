//! IncrementalAlterConfigs (SET, DELETE, APPEND, SUBTRACT per config) and the older
//! AlterConfigs (the given set replaces every override) for topics. Broker configs come from
//! the config file and are refused here, as Kafka refuses its read-only broker configs.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, alter_configs_response, incremental_alter_configs_response,
};
use kafka_protocol::protocol::StrBytes;

use super::message;
use crate::broker::Broker;
use crate::log::topic_config::{ConfigType, TOPIC_CONFIG_KEYS};

use super::{RESOURCE_BROKER, RESOURCE_TOPIC};

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// Why a resource was not altered.
struct Refused(ResponseError, String);

pub async fn handle_incremental(
    broker: &Arc<Broker>,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut response = IncrementalAlterConfigsResponse::default();
    for resource in request.resources {
        let ops: Vec<(String, i8, Option<String>)> = resource
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    c.config_operation,
                    c.value.as_ref().map(|v| v.to_string()),
                )
            })
            .collect();
        let outcome = alter(
            broker,
            resource.resource_type,
            &resource.resource_name,
            request.validate_only,
            |current| apply_incremental(current, &ops),
        )
        .await;
        let mut result =
            incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name;
        if let Err(Refused(error, text)) = outcome {
            result.error_code = error.code();
            result.error_message = message(text);
        }
        response.responses.push(result);
    }
    response
}

pub async fn handle_legacy(
    broker: &Arc<Broker>,
    request: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let mut response = AlterConfigsResponse::default();
    for resource in request.resources {
        let set: Vec<(String, Option<String>)> = resource
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
            .collect();
        let outcome = alter(
            broker,
            resource.resource_type,
            &resource.resource_name,
            request.validate_only,
            |_| replace_all(&set),
        )
        .await;
        let (error_code, error_message) = outcome_fields(outcome);
        response.responses.push(
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name)
                .with_error_code(error_code)
                .with_error_message(error_message),
        );
    }
    response
}

/// A resource's error code and message in either response.
fn outcome_fields(outcome: Result<(), Refused>) -> (i16, Option<StrBytes>) {
    match outcome {
        Ok(()) => (0, None),
        Err(Refused(error, text)) => (error.code(), message(text)),
    }
}

/// Computes a topic's new overrides from its current ones with `change`, then stores them.
async fn alter(
    broker: &Arc<Broker>,
    resource_type: i8,
    name: &StrBytes,
    validate_only: bool,
    change: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, Refused>,
) -> Result<(), Refused> {
    match resource_type {
        RESOURCE_TOPIC => {
            let topic = broker.logs.topic(name).ok_or_else(|| {
                Refused(
                    ResponseError::UnknownTopicOrPartition,
                    format!("unknown topic `{name}`"),
                )
            })?;
            let overrides = change(&topic.config().overrides)?;
            broker
                .logs
                .alter_topic_config(name, overrides, validate_only)
                .await
                .map_err(|e| {
                    let error = ResponseError::try_from_code(e.error_code())
                        .unwrap_or(ResponseError::UnknownServerError);
                    Refused(error, e.to_string())
                })
        }
        RESOURCE_BROKER => Err(Refused(
            ResponseError::InvalidRequest,
            "broker configs are read from the config file at start-up; they cannot be altered \
             while the broker runs"
                .into(),
        )),
        other => Err(Refused(
            ResponseError::InvalidRequest,
            format!("resource type {other} is not supported"),
        )),
    }
}

fn apply_incremental(
    current: &BTreeMap<String, String>,
    ops: &[(String, i8, Option<String>)],
) -> Result<BTreeMap<String, String>, Refused> {
    let mut overrides = current.clone();
    let mut seen = std::collections::HashSet::new();
    for (name, op, value) in ops {
        if !seen.insert(name.as_str()) {
            return Err(Refused(
                ResponseError::InvalidRequest,
                format!("`{name}` appears more than once"),
            ));
        }
        let is_list = TOPIC_CONFIG_KEYS
            .iter()
            .any(|k| k.name == name && k.config_type == ConfigType::List);
        match (*op, value) {
            (OP_SET, Some(value)) => {
                overrides.insert(name.clone(), value.clone());
            }
            (OP_SET, None) => {
                return Err(Refused(
                    ResponseError::InvalidConfig,
                    format!("SET `{name}` needs a value"),
                ));
            }
            (OP_DELETE, _) => {
                overrides.remove(name);
            }
            (OP_APPEND | OP_SUBTRACT, _) if !is_list => {
                return Err(Refused(
                    ResponseError::InvalidConfig,
                    format!("`{name}` is not a list: APPEND and SUBTRACT do not apply"),
                ));
            }
            (OP_APPEND | OP_SUBTRACT, value) => {
                let mut items: Vec<String> = overrides
                    .get(name)
                    .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
                    .unwrap_or_default();
                for item in value.as_deref().unwrap_or("").split(',') {
                    let item = item.trim();
                    if item.is_empty() {
                        continue;
                    }
                    if *op == OP_APPEND && !items.iter().any(|i| i == item) {
                        items.push(item.to_string());
                    } else if *op == OP_SUBTRACT {
                        items.retain(|i| i != item);
                    }
                }
                if items.is_empty() {
                    overrides.remove(name);
                } else {
                    overrides.insert(name.clone(), items.join(","));
                }
            }
            (other, _) => {
                return Err(Refused(
                    ResponseError::InvalidRequest,
                    format!("unknown config operation {other} for `{name}`"),
                ));
            }
        }
    }
    Ok(overrides)
}

fn replace_all(set: &[(String, Option<String>)]) -> Result<BTreeMap<String, String>, Refused> {
    let mut overrides = BTreeMap::new();
    for (name, value) in set {
        let Some(value) = value else {
            continue;
        };
        if overrides.insert(name.clone(), value.clone()).is_some() {
            return Err(Refused(
                ResponseError::InvalidRequest,
                format!("`{name}` appears more than once"),
            ));
        }
    }
    Ok(overrides)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn op(name: &str, op: i8, value: Option<&str>) -> (String, i8, Option<String>) {
        (name.into(), op, value.map(Into::into))
    }

    #[test]
    fn incremental_operations() {
        let current = map(&[("retention.ms", "1000"), ("cleanup.policy", "delete")]);
        let ops = [
            op("retention.ms", OP_DELETE, None),
            op("segment.bytes", OP_SET, Some("1048576")),
            op("cleanup.policy", OP_APPEND, Some("compact")),
        ];
        let Ok(next) = apply_incremental(&current, &ops) else {
            panic!("refused")
        };
        assert_eq!(
            next,
            map(&[
                ("segment.bytes", "1048576"),
                ("cleanup.policy", "delete,compact")
            ])
        );
        let ops = [op("cleanup.policy", OP_SUBTRACT, Some("delete,compact"))];
        let Ok(next) = apply_incremental(&next, &ops) else {
            panic!("refused")
        };
        assert_eq!(next, map(&[("segment.bytes", "1048576")]));
        assert!(apply_incremental(&current, &[op("retention.ms", OP_APPEND, Some("1"))]).is_err());
        let twice = [
            op("retention.ms", OP_SET, Some("1")),
            op("retention.ms", OP_DELETE, None),
        ];
        assert!(apply_incremental(&current, &twice).is_err());
    }
}
