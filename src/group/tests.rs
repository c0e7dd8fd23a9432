//! The group coordinator driven through its API with paused tokio time: joins, syncs,
//! heartbeats, session and rebalance timeouts, fencing, static members and offsets.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::time::{Duration, sleep};

use super::actor::GroupDescription;
use super::coordinator::GroupCoordinator;
use super::messages::*;
use super::offset_log::{OffsetKey, OffsetValue};
use super::offsets::OffsetStore;
use crate::config::Config;
use crate::log::partition::Partition;
use crate::log::topic_config::TopicConfig;
use crate::shutdown::Shutdown;

const SESSION: Duration = Duration::from_secs(10);
const REBALANCE: Duration = Duration::from_secs(30);

pub(crate) fn limits(initial_delay_ms: u64) -> GroupLimits {
    GroupLimits {
        min_session_timeout: Duration::from_secs(6),
        max_session_timeout: Duration::from_secs(1800),
        initial_delay: Duration::from_millis(initial_delay_ms),
        max_size: 100,
        consumer_session_timeout: Duration::from_secs(45),
        consumer_heartbeat_interval: Duration::from_secs(5),
    }
}

pub(super) fn open_log(dir: &std::path::Path, segment_bytes: i64) -> Arc<Partition> {
    let options = crate::log::partition::tests::options();
    let overrides = BTreeMap::from([("segment.bytes".to_string(), segment_bytes.to_string())]);
    let config = Arc::new(TopicConfig::resolve(&Config::embedded().unwrap(), &overrides).unwrap());
    Partition::open(&dir.join("offsets-0"), "offsets", 0, config, options, true).unwrap()
}

pub(super) async fn coordinator(
    dir: &std::path::Path,
    initial_delay_ms: u64,
) -> Arc<GroupCoordinator> {
    let store = OffsetStore::open(open_log(dir, 1 << 20), 1 << 20)
        .await
        .unwrap();
    GroupCoordinator::new(
        limits(initial_delay_ms),
        store,
        Duration::from_secs(7 * 24 * 3600),
        Shutdown::new(),
    )
}

fn join(member_id: &str, instance: Option<&str>) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_string(),
        group_instance_id: instance.map(str::to_string),
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: SESSION,
        rebalance_timeout: REBALANCE,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"subscription"))],
        require_known_member_id: true,
    }
}

/// Joins a new dynamic member the v4+ way: MEMBER_ID_REQUIRED first, then the real join.
async fn join_new(groups: &GroupCoordinator, group: &str) -> JoinResponse {
    let first = groups.join(group, join("", None)).await;
    assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
    assert!(!first.member_id.is_empty());
    groups.join(group, join(&first.member_id, None)).await
}

fn sync(generation_id: i32, member_id: &str, assignments: Vec<(String, Bytes)>) -> SyncRequest {
    SyncRequest {
        generation_id,
        member_id: member_id.to_string(),
        group_instance_id: None,
        protocol_type: Some("consumer".into()),
        protocol_name: Some("range".into()),
        assignments,
    }
}

fn heartbeat(generation_id: i32, member_id: &str) -> HeartbeatRequest {
    HeartbeatRequest {
        generation_id,
        member_id: member_id.to_string(),
        group_instance_id: None,
    }
}

/// Two members join, the leader assigns, both get their assignment: a stable group.
async fn stable_pair(groups: &Arc<GroupCoordinator>) -> (JoinResponse, JoinResponse) {
    let (a, b) = tokio::join!(join_new(groups, "g"), async {
        sleep(Duration::from_millis(100)).await;
        join_new(groups, "g").await
    });
    assert_eq!(a.error, None);
    assert_eq!(b.error, None);
    assert_eq!(a.generation_id, b.generation_id);
    let (leader, follower) = if a.member_id == a.leader {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(leader.members.len(), 2);
    assert!(follower.members.is_empty());
    let assignments = vec![
        (leader.member_id.clone(), Bytes::from_static(b"p0")),
        (follower.member_id.clone(), Bytes::from_static(b"p1")),
    ];
    let (ls, fs) = tokio::join!(
        groups.sync(
            "g",
            sync(leader.generation_id, &leader.member_id, assignments)
        ),
        groups.sync(
            "g",
            sync(follower.generation_id, &follower.member_id, vec![])
        )
    );
    assert_eq!(ls.error, None);
    assert_eq!(fs.error, None);
    assert_eq!(ls.assignment, Bytes::from_static(b"p0"));
    assert_eq!(fs.assignment, Bytes::from_static(b"p1"));
    (leader, follower)
}

#[tokio::test(start_paused = true)]
async fn members_join_sync_and_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let groups = coordinator(dir.path(), 3000).await;
    let (leader, follower) = stable_pair(&groups).await;
    assert_eq!(leader.generation_id, 1);
    assert_eq!(leader.protocol_name.as_deref(), Some("range"));
    let summary = groups.describe("g").await.unwrap();
    assert_eq!(summary.state(), "Stable");
    let GroupDescription::Classic(summary) = summary else {
        panic!("not a classic group");
    };
    assert_eq!(summary.members.len(), 2);
    for member in [&leader, &follower] {
        let error = groups
            .heartbeat("g", heartbeat(member.generation_id, &member.member_id))
            .await;
        assert_eq!(error, None);
    }
}

#[tokio::test(start_paused = true)]
async fn a_new_group_waits_for_the_initial_delay_only() {
    let dir = tempfile::tempdir().unwrap();
    let groups = coordinator(dir.path(), 3000).await;
    let started = tokio::time::Instant::now();
    let joined = join_new(&groups, "g").await;
    assert_eq!(joined.error, None);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_member_is_evicted_after_its_session_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let groups = coordinator(dir.path(), 3000).await;
    let (leader, follower) = stable_pair(&groups).await;
    // Only the leader heartbeats; the follower's session runs out after 10 s.
    let mut rebalancing = false;
    for _ in 0..8 {
        sleep(Duration::from_secs(2)).await;
        let error = groups
            .heartbeat("g", heartbeat(leader.generation_id, &leader.member_id))
            .await;
        if error == Some(ResponseError::RebalanceInProgress) {
            rebalancing = true;
            break;
        }
        assert_eq!(error, None);
    }
    assert!(rebalancing, "the follower was never evicted");
    let stale = groups
        .heartbeat("g", heartbeat(follower.generation_id, &follower.member_id))
        .await;
    assert_eq!(stale, Some(ResponseError::UnknownMemberId));
    // The leader rejoins alone: a new generation with one member.
    let rejoined = groups.join("g", join(&leader.member_id, None)).await;
    assert_eq!(rejoined.error, None);
    assert_eq!(rejoined.generation_id, leader.generation_id + 1);
    assert_eq!(rejoined.members.len(), 1);
    let old = groups
        .heartbeat("g", heartbeat(leader.generation_id, &leader.member_id))
        .await;
    assert_eq!(old, Some(ResponseError::IllegalGeneration));
}

#[tokio::test(start_paused = true)]
async fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let groups = coordinator(dir.path(), 3000).await;
    let (leader, follower) = stable_pair(&groups).await;
    // The follower keeps heartbeating but never rejoins the rebalance the leader starts.
    let keep_alive = {
        let groups = groups.clone();
        let follower = follower.clone();
        tokio::spawn(async move {
            for _ in 0..20 {
                sleep(Duration::from_secs(3)).await;
                let _ = groups
                    .heartbeat("g", heartbeat(follower.generation_id, &follower.member_id))
                    .await;
            }
        })
    };
    let started = tokio::time::Instant::now();
    let mut request = join(&leader.member_id, None);
    request.protocols = vec![("range".into(), Bytes::from_static(b"changed"))];
    let rejoined = groups.join("g", request).await;
    assert_eq!(rejoined.error, None);
    assert!(started.elapsed() >= REBALANCE, "{:?}", started.elapsed());
    assert_eq!(rejoined.members.len(), 1);
    let error = groups
        .heartbeat("g", heartbeat(follower.generation_id, &follower.member_id))
        .await;
    assert_eq!(error, Some(ResponseError::UnknownMemberId));
    keep_alive.abort();
}

#[tokio::test(start_paused = true)]
async fn unknown_members_and_old_generations_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let groups = coordinator(dir.path(), 3000).await;
    assert_eq!(
        groups.heartbeat("none", heartbeat(1, "ghost")).await,
        Some(ResponseError::UnknownMemberId)
    );
    let (leader, _follower) = stable_pair(&groups).await;
    assert_eq!(
        groups
            .heartbeat("g", heartbeat(leader.generation_id, "ghost"))
            .await,
        Some(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        groups
            .heartbeat("g", heartbeat(leader.generation_id + 5, &leader.member_id))
            .await,
        Some(ResponseError::IllegalGeneration)
    );
    let stale_sync = groups
        .sync(
            "g",
            sync(leader.generation_id - 1, &leader.member_id, vec![]),
        )
        .await;
    assert_eq!(stale_sync.error, Some(ResponseError::IllegalGeneration));
    let unknown_join = groups.join("g", join("ghost", None)).await;
    assert_eq!(unknown_join.error, Some(ResponseError::UnknownMemberId));
    let mut short = join("", None);
    short.session_timeout = Duration::from_secs(1);
    assert_eq!(
        groups.join("g", short).await.error,
        Some(ResponseError::InvalidSessionTimeout)
    );
    let mut other_type = join("", None);
    other_type.protocol_type = "connect".into();
    assert_eq!(
        groups.join("g", other_type).await.error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
}

#[tokio::test(start_paused = true)]
async fn leaving_members_trigger_a_rebalance_and_the_last_one_empties_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let groups = coordinator(dir.path(), 3000).await;
    let (leader, follower) = stable_pair(&groups).await;
    let left = groups
        .leave(
            "g",
            vec![LeaveMember {
                member_id: follower.member_id.clone(),
                group_instance_id: None,
            }],
        )
        .await;
    assert_eq!(left, vec![None]);
    assert_eq!(
        groups
            .heartbeat("g", heartbeat(leader.generation_id, &leader.member_id))
            .await,
        Some(ResponseError::RebalanceInProgress)
    );
    let rejoined = groups.join("g", join(&leader.member_id, None)).await;
    assert_eq!(rejoined.members.len(), 1);
    let left = groups
        .leave(
            "g",
            vec![
                LeaveMember {
                    member_id: leader.member_id.clone(),
                    group_instance_id: None,
                },
                LeaveMember {
                    member_id: "ghost".into(),
                    group_instance_id: None,
                },
            ],
        )
        .await;
    assert_eq!(left, vec![None, Some(ResponseError::UnknownMemberId)]);
    assert_eq!(groups.describe("g").await.unwrap().state(), "Empty");
    assert_eq!(groups.delete("g").await, Ok(()));
    assert!(groups.describe("g").await.is_none());
    assert_eq!(
        groups.delete("g").await,
        Err(ResponseError::GroupIdNotFound)
    );
}

#[tokio::test(start_paused = true)]
async fn a_static_member_returns_to_its_assignment_without_a_rebalance() {
    let dir = tempfile::tempdir().unwrap();
    let groups = coordinator(dir.path(), 3000).await;
    let (a, b) = tokio::join!(groups.join("g", join("", Some("instance-a"))), async {
        sleep(Duration::from_millis(10)).await;
        groups.join("g", join("", Some("instance-b"))).await
    });
    let (leader, follower) = if a.member_id == a.leader {
        (a, b)
    } else {
        (b, a)
    };
    let assignments = vec![
        (leader.member_id.clone(), Bytes::from_static(b"p0")),
        (follower.member_id.clone(), Bytes::from_static(b"p1")),
    ];
    let generation = leader.generation_id;
    let (_, fs) = tokio::join!(
        groups.sync("g", sync(generation, &leader.member_id, assignments)),
        groups.sync("g", sync(generation, &follower.member_id, vec![]))
    );
    assert_eq!(fs.assignment, Bytes::from_static(b"p1"));
    // The follower restarts: a new process, same instance id, no member id.
    let instance = leader
        .members
        .iter()
        .find(|m| m.member_id == follower.member_id)
        .and_then(|m| m.group_instance_id.clone())
        .unwrap();
    let instance = instance.as_str();
    let back = groups.join("g", join("", Some(instance))).await;
    assert_eq!(back.error, None);
    assert_eq!(back.generation_id, generation, "no rebalance");
    assert_ne!(back.member_id, follower.member_id);
    let synced = groups
        .sync("g", sync(generation, &back.member_id, vec![]))
        .await;
    assert_eq!(synced.assignment, Bytes::from_static(b"p1"));
    // The old incarnation is fenced; the group stayed stable throughout.
    let mut old = heartbeat(generation, &follower.member_id);
    old.group_instance_id = Some(instance.to_string());
    assert_eq!(
        groups.heartbeat("g", old).await,
        Some(ResponseError::FencedInstanceId)
    );
    assert_eq!(
        groups
            .heartbeat("g", heartbeat(generation, &leader.member_id))
            .await,
        None
    );
    assert_eq!(groups.describe("g").await.unwrap().state(), "Stable");
}

fn commit_entry(group: &str, partition: i32, offset: i64) -> (OffsetKey, Option<OffsetValue>) {
    (
        OffsetKey {
            group: group.into(),
            topic: "t".into(),
            partition,
        },
        Some(OffsetValue {
            offset,
            leader_epoch: -1,
            metadata: Some(String::new()),
            commit_timestamp: crate::log::now_ms(),
        }),
    )
}

#[tokio::test]
async fn commits_are_checked_against_the_generation_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let groups = coordinator(dir.path(), 0).await;
    let standalone = CommitIdentity {
        generation_id: -1,
        member_id: String::new(),
        group_instance_id: None,
    };
    groups
        .commit_offsets("solo", standalone, vec![commit_entry("solo", 0, 42)])
        .await
        .unwrap();
    let member = join_new(&groups, "g").await;
    let current = CommitIdentity {
        generation_id: member.generation_id,
        member_id: member.member_id.clone(),
        group_instance_id: None,
    };
    // Until the leader's SyncGroup the generation's assignment is not final.
    assert_eq!(
        groups
            .commit_offsets("g", current.clone(), vec![commit_entry("g", 0, 1)])
            .await,
        Err(ResponseError::RebalanceInProgress)
    );
    let synced = groups
        .sync(
            "g",
            sync(
                member.generation_id,
                &member.member_id,
                vec![(member.member_id.clone(), Bytes::new())],
            ),
        )
        .await;
    assert_eq!(synced.error, None);
    let stale = CommitIdentity {
        generation_id: member.generation_id + 1,
        ..current.clone()
    };
    assert_eq!(
        groups
            .commit_offsets("g", stale, vec![commit_entry("g", 0, 1)])
            .await,
        Err(ResponseError::IllegalGeneration)
    );
    groups
        .commit_offsets("g", current, vec![commit_entry("g", 3, 7)])
        .await
        .unwrap();
    let listed: Vec<String> = groups.list().await.into_iter().map(|(id, _)| id).collect();
    assert_eq!(listed, vec!["g".to_string(), "solo".to_string()]);
    drop(groups);
    let reopened = OffsetStore::open(open_log(dir.path(), 1 << 20), 1 << 20)
        .await
        .unwrap();
    assert_eq!(reopened.get("solo", "t", 0).map(|v| v.offset), Some(42));
    assert_eq!(reopened.get("g", "t", 3).map(|v| v.offset), Some(7));
}

#[tokio::test]
async fn compaction_keeps_the_log_small_and_the_state_intact() {
    let dir = tempfile::tempdir().unwrap();
    let segment = 64 << 10;
    let store = OffsetStore::open(open_log(dir.path(), segment), segment as u64)
        .await
        .unwrap();
    // 2,000 commits over 10 partitions: far more than two segments of records.
    for round in 0..200 {
        let entries = (0..10).map(|p| commit_entry("g", p, round)).collect();
        store.write(entries).await.unwrap();
    }
    // Compaction runs in the background; give it a moment to finish.
    for _ in 0..100 {
        if store.log_size() < 3 * segment as u64 {
            break;
        }
        sleep(Duration::from_millis(20)).await;
    }
    assert!(
        store.log_size() < 3 * segment as u64,
        "{}",
        store.log_size()
    );
    let reopened = OffsetStore::open(open_log(dir.path(), segment), segment as u64)
        .await
        .unwrap();
    for p in 0..10 {
        assert_eq!(reopened.get("g", "t", p).map(|v| v.offset), Some(199));
    }
}
