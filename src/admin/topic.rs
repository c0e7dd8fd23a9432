//! `weir topic create|list|describe|delete|alter-config`.

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;

use super::offsets::{EARLIEST, LATEST, list_offsets};
use super::{AdminError, Report, table};
use crate::client::{ClientError, Cluster};
use crate::protocol::handlers::RESOURCE_TOPIC;

const SOURCE_TOPIC_OVERRIDE: i8 = 1;

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub async fn create(
    cluster: &mut Cluster,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &[(String, String)],
) -> Result<Report, AdminError> {
    let topic = CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(partitions)
        .with_replication_factor(replication_factor)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.clone()))
                        .with_value(Some(StrBytes::from_string(v.clone())))
                })
                .collect(),
        );
    let mut request = CreateTopicsRequest::default();
    request.topics = vec![topic];
    request.timeout_ms = cluster.timeout().as_millis().min(i32::MAX as u128) as i32;
    let (_, response) = cluster.bootstrap().send(&request, 7).await?;
    for t in &response.topics {
        ClientError::check(t.error_code, t.error_message.as_deref(), || {
            format!("create topic `{name}`")
        })?;
    }
    Ok(Report {
        json: json!({"created": name, "partitions": partitions,
                     "replication_factor": replication_factor}),
        text: format!("created topic {name} with {partitions} partitions\n"),
    })
}

pub async fn list(cluster: &mut Cluster, internal: bool) -> Result<Report, AdminError> {
    let mut topics = cluster.metadata(None).await?;
    topics.retain(|t| internal || !t.internal);
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    let rows: Vec<Vec<String>> = topics
        .iter()
        .map(|t| vec![t.name.clone(), t.partitions.len().to_string()])
        .collect();
    Ok(Report {
        json: json!(
            topics
                .iter()
                .map(|t| json!({
            "name": t.name, "id": t.id.to_string(), "partitions": t.partitions.len(),
            "internal": t.internal}))
                .collect::<Vec<_>>()
        ),
        text: table(&["TOPIC", "PARTITIONS"], &rows),
    })
}

pub async fn describe(cluster: &mut Cluster, name: &str) -> Result<Report, AdminError> {
    let topic = cluster.topic(name).await?;
    let tps: Vec<(String, i32)> = topic
        .partitions
        .iter()
        .map(|p| (name.to_string(), p.index))
        .collect();
    let starts = list_offsets(cluster, &tps, EARLIEST).await?;
    let ends = list_offsets(cluster, &tps, LATEST).await?;
    let configs = topic_overrides(cluster, name).await?;
    let mut partitions = Vec::new();
    let mut rows = Vec::new();
    let mut partition_list = topic.partitions.clone();
    partition_list.sort_by_key(|p| p.index);
    for p in &partition_list {
        let key = (name.to_string(), p.index);
        let start = starts.get(&key).copied().unwrap_or(-1);
        let end = ends.get(&key).copied().unwrap_or(-1);
        partitions.push(json!({
            "partition": p.index, "leader": p.leader, "replicas": p.replicas, "isr": p.isr,
            "log_start_offset": start, "log_end_offset": end,
        }));
        rows.push(vec![
            p.index.to_string(),
            p.leader.to_string(),
            join(&p.replicas),
            join(&p.isr),
            start.to_string(),
            end.to_string(),
        ]);
    }
    let mut text = format!(
        "Topic: {name}  Id: {}  Partitions: {}  Configs: {}\n",
        topic.id,
        partition_list.len(),
        if configs.is_empty() {
            "(broker defaults)".to_string()
        } else {
            configs
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("null")))
                .collect::<Vec<_>>()
                .join(",")
        }
    );
    text.push_str(&table(
        &[
            "PARTITION",
            "LEADER",
            "REPLICAS",
            "ISR",
            "LOG-START-OFFSET",
            "LOG-END-OFFSET",
        ],
        &rows,
    ));
    Ok(Report {
        json: json!({
            "name": name, "id": topic.id.to_string(), "internal": topic.internal,
            "configs": configs.iter().cloned().collect::<serde_json::Map<String, serde_json::Value>>(),
            "partitions": partitions,
        }),
        text,
    })
}

fn join(nodes: &[i32]) -> String {
    nodes
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The topic's configs that override the broker defaults.
async fn topic_overrides(
    cluster: &mut Cluster,
    name: &str,
) -> Result<Vec<(String, serde_json::Value)>, AdminError> {
    let mut request = DescribeConfigsRequest::default();
    request.resources = vec![
        DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(StrBytes::from_string(name.to_string())),
    ];
    let (_, response) = cluster.bootstrap().send(&request, 4).await?;
    let mut out = Vec::new();
    for result in response.results {
        ClientError::check(result.error_code, result.error_message.as_deref(), || {
            format!("DescribeConfigs `{name}`")
        })?;
        for config in result.configs {
            if config.config_source == SOURCE_TOPIC_OVERRIDE {
                out.push((
                    config.name.to_string(),
                    json!(config.value.as_ref().map(|v| v.to_string())),
                ));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

pub async fn delete(cluster: &mut Cluster, name: &str) -> Result<Report, AdminError> {
    let version = cluster.bootstrap().version::<DeleteTopicsRequest>(6)?;
    let mut request = DeleteTopicsRequest::default();
    request.timeout_ms = cluster.timeout().as_millis().min(i32::MAX as u128) as i32;
    if version >= 6 {
        request.topics = vec![DeleteTopicState::default().with_name(Some(topic_name(name)))];
    } else {
        request.topic_names = vec![topic_name(name)];
    }
    let response = cluster.bootstrap().send_at(&request, version).await?;
    for r in &response.responses {
        ClientError::check(r.error_code, r.error_message.as_deref(), || {
            format!("delete topic `{name}`")
        })?;
    }
    Ok(Report {
        json: json!({"deleted": name}),
        text: format!("deleted topic {name}\n"),
    })
}

/// IncrementalAlterConfigs: `set` entries are SET, `delete` names are DELETE.
pub async fn alter_config(
    cluster: &mut Cluster,
    name: &str,
    set: &[(String, String)],
    delete: &[String],
) -> Result<Report, AdminError> {
    if set.is_empty() && delete.is_empty() {
        return Err(AdminError::Usage(
            "nothing to change: give --set key=value or --delete key".into(),
        ));
    }
    let mut configs: Vec<AlterableConfig> = set
        .iter()
        .map(|(k, v)| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string(k.clone()))
                .with_config_operation(0)
                .with_value(Some(StrBytes::from_string(v.clone())))
        })
        .collect();
    configs.extend(delete.iter().map(|k| {
        AlterableConfig::default()
            .with_name(StrBytes::from_string(k.clone()))
            .with_config_operation(1)
    }));
    let mut request = IncrementalAlterConfigsRequest::default();
    request.resources = vec![
        AlterConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(StrBytes::from_string(name.to_string()))
            .with_configs(configs),
    ];
    let (_, response) = cluster.bootstrap().send(&request, 1).await?;
    for r in &response.responses {
        ClientError::check(r.error_code, r.error_message.as_deref(), || {
            format!("alter configs of `{name}`")
        })?;
    }
    let overrides = topic_overrides(cluster, name).await?;
    let text = overrides
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("null")))
        .collect::<Vec<_>>()
        .join(",");
    Ok(Report {
        json: json!({"topic": name,
                     "configs": overrides.into_iter().collect::<serde_json::Map<_, _>>()}),
        text: format!(
            "altered topic {name}; overrides now: {}\n",
            if text.is_empty() {
                "(none)".to_string()
            } else {
                text
            }
        ),
    })
}
