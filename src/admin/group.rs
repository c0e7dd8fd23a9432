//! `weir group list|describe|delete|seek`.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerProtocolAssignment, DeleteGroupsRequest,
    DescribeGroupsRequest, GroupId, ListGroupsRequest,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use serde_json::json;

use super::offsets::{EARLIEST, LATEST, Tp, commit, committed, list_offsets};
use super::{AdminError, Report, table};
use crate::client::{ClientError, Cluster};

fn group_id(name: &str) -> GroupId {
    GroupId(StrBytes::from_string(name.to_string()))
}

pub async fn list(cluster: &mut Cluster) -> Result<Report, AdminError> {
    // Every broker coordinates some groups: ask each.
    let nodes: Vec<i32> = cluster.brokers.keys().copied().collect();
    let mut groups = BTreeMap::new();
    for node in nodes {
        let (_, response) = cluster
            .node(node)
            .await?
            .send(&ListGroupsRequest::default(), 5)
            .await?;
        ClientError::check(response.error_code, None, || "ListGroups".into())?;
        for g in response.groups {
            let kind = if g.group_type.is_empty() {
                "classic".to_string()
            } else {
                g.group_type.to_string()
            };
            groups.insert(
                g.group_id.to_string(),
                (g.group_state.to_string(), kind, g.protocol_type.to_string()),
            );
        }
    }
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|(id, (state, kind, protocol))| {
            vec![id.clone(), state.clone(), kind.clone(), protocol.clone()]
        })
        .collect();
    Ok(Report {
        json: json!(
            groups
                .iter()
                .map(|(id, (state, kind, protocol))| json!({
                    "group": id, "state": state, "type": kind, "protocol_type": protocol,
                }))
                .collect::<Vec<_>>()
        ),
        text: table(&["GROUP", "STATE", "TYPE", "PROTOCOL-TYPE"], &rows),
    })
}

/// A member and the partitions it owns.
struct Member {
    id: String,
    instance: Option<String>,
    client_id: String,
    host: String,
    partitions: Vec<Tp>,
}

/// State and members: ConsumerGroupDescribe for KIP-848 groups, DescribeGroups otherwise.
async fn members(
    cluster: &mut Cluster,
    group: &str,
) -> Result<(String, String, Vec<Member>), AdminError> {
    let coordinator = cluster.coordinator(group).await?;
    if coordinator.serves(kafka_protocol::messages::ApiKey::ConsumerGroupDescribe) {
        let mut request = ConsumerGroupDescribeRequest::default();
        request.group_ids = vec![group_id(group)];
        let (_, response) = coordinator.send(&request, 1).await?;
        if let Some(g) = response.groups.first()
            && g.error_code == 0
        {
            let members = g
                .members
                .iter()
                .map(|m| Member {
                    id: m.member_id.to_string(),
                    instance: m.instance_id.as_ref().map(|i| i.to_string()),
                    client_id: m.client_id.to_string(),
                    host: m.client_host.to_string(),
                    partitions: m
                        .assignment
                        .topic_partitions
                        .iter()
                        .flat_map(|t| {
                            t.partitions
                                .iter()
                                .map(move |p| (t.topic_name.to_string(), *p))
                        })
                        .collect(),
                })
                .collect();
            return Ok((g.group_state.to_string(), "consumer".into(), members));
        }
    }
    let mut request = DescribeGroupsRequest::default();
    request.groups = vec![group_id(group)];
    let (_, response) = coordinator.send(&request, 5).await?;
    let g = response
        .groups
        .first()
        .ok_or_else(|| AdminError::Failed(format!("group `{group}`: empty answer")))?;
    ClientError::check(g.error_code, g.error_message.as_deref(), || {
        format!("describe group `{group}`")
    })?;
    let members = g
        .members
        .iter()
        .map(|m| Member {
            id: m.member_id.to_string(),
            instance: m.group_instance_id.as_ref().map(|i| i.to_string()),
            client_id: m.client_id.to_string(),
            host: m.client_host.to_string(),
            partitions: if g.protocol_type.as_str() == "consumer" {
                assigned(&m.member_assignment)
            } else {
                Vec::new()
            },
        })
        .collect();
    Ok((g.group_state.to_string(), "classic".into(), members))
}

/// The partitions in a classic consumer's assignment bytes (version, then the body).
fn assigned(bytes: &Bytes) -> Vec<Tp> {
    let mut buf = bytes.clone();
    if buf.remaining() < 2 {
        return Vec::new();
    }
    let version = buf.get_i16().clamp(0, 3);
    match ConsumerProtocolAssignment::decode(&mut buf, version) {
        Ok(assignment) => assignment
            .assigned_partitions
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.topic.to_string(), *p)))
            .collect(),
        Err(_) => Vec::new(),
    }
}

pub async fn describe(cluster: &mut Cluster, group: &str) -> Result<Report, AdminError> {
    let (state, kind, members) = members(cluster, group).await?;
    let offsets = committed(cluster, group).await?;
    let mut partitions: BTreeSet<Tp> = offsets.keys().cloned().collect();
    let mut owner: BTreeMap<Tp, &Member> = BTreeMap::new();
    for m in &members {
        for tp in &m.partitions {
            partitions.insert(tp.clone());
            owner.insert(tp.clone(), m);
        }
    }
    let partitions: Vec<Tp> = partitions.into_iter().collect();
    let ends = if partitions.is_empty() {
        BTreeMap::new()
    } else {
        list_offsets(cluster, &partitions, LATEST).await?
    };
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    let mut total_lag = 0i64;
    for tp in &partitions {
        let current = offsets.get(tp).copied();
        let end = ends.get(tp).copied().unwrap_or(-1);
        let lag = current.map(|c| (end - c).max(0));
        total_lag += lag.unwrap_or(0);
        let m = owner.get(tp);
        rows.push(vec![
            tp.0.clone(),
            tp.1.to_string(),
            current.map_or("-".into(), |c| c.to_string()),
            end.to_string(),
            lag.map_or("-".into(), |l| l.to_string()),
            m.map_or("-".into(), |m| m.id.clone()),
            m.map_or("-".into(), |m| m.host.clone()),
            m.map_or("-".into(), |m| m.client_id.clone()),
        ]);
        json_rows.push(json!({
            "topic": tp.0, "partition": tp.1, "current_offset": current,
            "log_end_offset": end, "lag": lag, "consumer_id": m.map(|m| &m.id),
            "host": m.map(|m| &m.host), "client_id": m.map(|m| &m.client_id),
        }));
    }
    let mut text = format!(
        "Group: {group}  State: {state}  Type: {kind}  Members: {}  Total lag: {total_lag}\n",
        members.len()
    );
    text.push_str(&table(
        &[
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID",
        ],
        &rows,
    ));
    Ok(Report {
        json: json!({
            "group": group, "state": state, "type": kind, "total_lag": total_lag,
            "members": members.iter().map(|m| json!({
                "member_id": m.id, "instance_id": m.instance, "client_id": m.client_id,
                "host": m.host,
                "partitions": m.partitions.iter().map(|(t, p)| json!({"topic": t, "partition": p}))
                    .collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "partitions": json_rows,
        }),
        text,
    })
}

pub async fn delete(cluster: &mut Cluster, group: &str) -> Result<Report, AdminError> {
    let coordinator = cluster.coordinator(group).await?;
    let mut request = DeleteGroupsRequest::default();
    request.groups_names = vec![group_id(group)];
    let (_, response) = coordinator.send(&request, 2).await?;
    for r in &response.results {
        ClientError::check(r.error_code, None, || format!("delete group `{group}`"))?;
    }
    Ok(Report {
        json: json!({"deleted": group}),
        text: format!("deleted group {group}\n"),
    })
}

/// Where `group seek` moves the committed offsets to.
#[derive(Debug, Clone, Copy)]
pub enum SeekTarget {
    Earliest,
    Latest,
    Offset(i64),
    /// The first offset at or after this timestamp (ms); the end when there is none.
    Timestamp(i64),
}

impl SeekTarget {
    pub fn parse(text: &str) -> Result<SeekTarget, AdminError> {
        match text {
            "earliest" => Ok(SeekTarget::Earliest),
            "latest" => Ok(SeekTarget::Latest),
            _ => {
                if let Some(ms) = text.strip_prefix("timestamp:") {
                    return ms.parse().map(SeekTarget::Timestamp).map_err(|_| {
                        AdminError::Usage(format!("--to {text}: timestamp:<milliseconds>"))
                    });
                }
                text.parse().map(SeekTarget::Offset).map_err(|_| {
                    AdminError::Usage(format!(
                        "--to {text}: expected earliest, latest, an offset or timestamp:<ms>"
                    ))
                })
            }
        }
    }
}

/// Commits new offsets for `group` on `topic` (all partitions, or `partition`). The group
/// must have no active members, as with Kafka's `--reset-offsets`.
pub async fn seek(
    cluster: &mut Cluster,
    group: &str,
    topic: &str,
    partition: Option<i32>,
    target: SeekTarget,
    dry_run: bool,
) -> Result<Report, AdminError> {
    let info = cluster.topic(topic).await?;
    let tps: Vec<Tp> = info
        .partitions
        .iter()
        .map(|p| p.index)
        .filter(|p| partition.is_none_or(|want| want == *p))
        .map(|p| (topic.to_string(), p))
        .collect();
    if tps.is_empty() {
        return Err(AdminError::Usage(format!(
            "topic `{topic}` has no partition {}",
            partition.unwrap_or(-1)
        )));
    }
    let starts = list_offsets(cluster, &tps, EARLIEST).await?;
    let ends = list_offsets(cluster, &tps, LATEST).await?;
    let mut targets: BTreeMap<Tp, i64> = match target {
        SeekTarget::Earliest => starts.clone(),
        SeekTarget::Latest => ends.clone(),
        SeekTarget::Offset(o) => tps.iter().map(|tp| (tp.clone(), o)).collect(),
        SeekTarget::Timestamp(ms) => list_offsets(cluster, &tps, ms).await?,
    };
    // Out of range or "after the last record": clamp into [log start, log end].
    for (tp, offset) in targets.iter_mut() {
        let start = starts.get(tp).copied().unwrap_or(0);
        let end = ends.get(tp).copied().unwrap_or(0);
        *offset = if *offset < 0 {
            end
        } else {
            (*offset).clamp(start, end)
        };
    }
    let previous = committed(cluster, group).await?;
    if !dry_run {
        commit(cluster, group, &targets).await?;
    }
    let rows: Vec<Vec<String>> = targets
        .iter()
        .map(|(tp, o)| {
            vec![
                tp.0.clone(),
                tp.1.to_string(),
                previous.get(tp).map_or("-".into(), |p| p.to_string()),
                o.to_string(),
            ]
        })
        .collect();
    let verb = if dry_run { "would move" } else { "moved" };
    let mut text = format!("{verb} group {group} on {topic}:\n");
    text.push_str(&table(
        &["TOPIC", "PARTITION", "PREVIOUS-OFFSET", "NEW-OFFSET"],
        &rows,
    ));
    Ok(Report {
        json: json!({
            "group": group, "dry_run": dry_run,
            "partitions": targets.iter().map(|(tp, o)| json!({
                "topic": tp.0, "partition": tp.1, "previous_offset": previous.get(tp),
                "new_offset": o,
            })).collect::<Vec<_>>(),
        }),
        text,
    })
}
