//! Offsets the commands share: a partition's earliest/latest/by-time offset from its leader
//! (ListOffsets), a group's committed offsets (OffsetFetch) and committing new ones
//! (OffsetCommit, as a standalone commit outside any generation).

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    BrokerId, GroupId, ListOffsetsRequest, OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::client::{ClientError, Cluster};

pub const EARLIEST: i64 = -2;
pub const LATEST: i64 = -1;

/// (topic, partition)
pub type Tp = (String, i32);

/// Attempts of a request that meets a retriable error (a leader moving or not yet elected,
/// as right after a topic is created), with fresh metadata each time.
const ATTEMPTS: u32 = 20;
const RETRY_BACKOFF: std::time::Duration = std::time::Duration::from_millis(250);

/// The offset of each partition at `timestamp` (EARLIEST, LATEST or milliseconds), asked
/// of each partition's leader. -1 for a timestamp after the last record.
pub async fn list_offsets(
    cluster: &mut Cluster,
    partitions: &[Tp],
    timestamp: i64,
) -> Result<BTreeMap<Tp, i64>, ClientError> {
    let mut attempt = 1;
    loop {
        match list_offsets_once(cluster, partitions, timestamp).await {
            Err(ClientError::Broker { code, .. })
                if attempt < ATTEMPTS
                    && kafka_protocol::ResponseError::try_from_code(code)
                        .is_some_and(|e| e.is_retriable()) =>
            {
                attempt += 1;
                tokio::time::sleep(RETRY_BACKOFF).await;
            }
            other => return other,
        }
    }
}

async fn list_offsets_once(
    cluster: &mut Cluster,
    partitions: &[Tp],
    timestamp: i64,
) -> Result<BTreeMap<Tp, i64>, ClientError> {
    let topics: Vec<String> = {
        let mut t: Vec<String> = partitions.iter().map(|(t, _)| t.clone()).collect();
        t.sort();
        t.dedup();
        t
    };
    let metadata = cluster.metadata(Some(&topics)).await?;
    let mut leaders: HashMap<Tp, i32> = HashMap::new();
    for topic in &metadata {
        for p in &topic.partitions {
            leaders.insert((topic.name.clone(), p.index), p.leader);
        }
    }
    let mut by_leader: BTreeMap<i32, Vec<&Tp>> = BTreeMap::new();
    for tp in partitions {
        let leader = leaders.get(tp).copied().ok_or_else(|| {
            ClientError::Other(format!("partition {}-{} does not exist", tp.0, tp.1))
        })?;
        if leader < 0 {
            let code = kafka_protocol::ResponseError::LeaderNotAvailable.code();
            ClientError::check(code, None, || format!("partition {}-{}", tp.0, tp.1))?;
        }
        by_leader.entry(leader).or_default().push(tp);
    }
    let mut offsets = BTreeMap::new();
    for (leader, tps) in by_leader {
        let mut grouped: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in tps {
            grouped.entry(t.as_str()).or_default().push(*p);
        }
        let mut request = ListOffsetsRequest::default();
        request.replica_id = BrokerId(-1);
        request.topics = grouped
            .into_iter()
            .map(|(t, ps)| {
                ListOffsetsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(t.to_string())))
                    .with_partitions(
                        ps.into_iter()
                            .map(|p| {
                                ListOffsetsPartition::default()
                                    .with_partition_index(p)
                                    .with_timestamp(timestamp)
                            })
                            .collect(),
                    )
            })
            .collect();
        let (_, response) = cluster.node(leader).await?.send(&request, 7).await?;
        for topic in response.topics {
            for p in topic.partitions {
                ClientError::check(p.error_code, None, || {
                    format!("ListOffsets {}-{}", topic.name.as_str(), p.partition_index)
                })?;
                offsets.insert((topic.name.to_string(), p.partition_index), p.offset);
            }
        }
    }
    Ok(offsets)
}

/// Every offset `group` has committed.
pub async fn committed(
    cluster: &mut Cluster,
    group: &str,
) -> Result<BTreeMap<Tp, i64>, ClientError> {
    let coordinator = cluster.coordinator(group).await?;
    let mut request = OffsetFetchRequest::default();
    request.group_id = GroupId(StrBytes::from_string(group.to_string()));
    request.topics = None;
    let (_, response) = coordinator.send(&request, 7).await?;
    ClientError::check(response.error_code, None, || {
        format!("OffsetFetch for `{group}`")
    })?;
    let mut offsets = BTreeMap::new();
    for topic in response.topics {
        for p in topic.partitions {
            ClientError::check(p.error_code, None, || {
                format!("OffsetFetch {}-{}", topic.name.as_str(), p.partition_index)
            })?;
            if p.committed_offset >= 0 {
                offsets.insert(
                    (topic.name.to_string(), p.partition_index),
                    p.committed_offset,
                );
            }
        }
    }
    Ok(offsets)
}

/// Commits `offsets` for `group` outside any generation (the group must have no members).
pub async fn commit(
    cluster: &mut Cluster,
    group: &str,
    offsets: &BTreeMap<Tp, i64>,
) -> Result<(), ClientError> {
    let coordinator = cluster.coordinator(group).await?;
    let version = coordinator.version::<OffsetCommitRequest>(8)?;
    let mut grouped: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
    for ((t, p), o) in offsets {
        grouped.entry(t.as_str()).or_default().push((*p, *o));
    }
    let mut request = OffsetCommitRequest::default();
    request.group_id = GroupId(StrBytes::from_string(group.to_string()));
    request.generation_id_or_member_epoch = -1;
    request.member_id = StrBytes::from_static_str("");
    request.topics = grouped
        .into_iter()
        .map(|(t, ps)| {
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(t.to_string())))
                .with_partitions(
                    ps.into_iter()
                        .map(|(p, o)| {
                            let mut partition = OffsetCommitRequestPartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(o)
                                .with_committed_metadata(Some(StrBytes::from_static_str("")));
                            if version >= 6 {
                                partition.committed_leader_epoch = -1;
                            }
                            partition
                        })
                        .collect(),
                )
        })
        .collect();
    let response = coordinator.send_at(&request, version).await?;
    for topic in response.topics {
        for p in topic.partitions {
            ClientError::check(p.error_code, None, || {
                format!(
                    "OffsetCommit for `{group}` {}-{}",
                    topic.name.as_str(),
                    p.partition_index
                )
            })?;
        }
    }
    Ok(())
}
