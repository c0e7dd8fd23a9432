//! Group APIs over TCP at every advertised version: requests decode, answers encode, and the
//! group and its offsets behave the same whatever version a client speaks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{TestBroker, topic_name};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const NO_DELAY: &str = "group_initial_rebalance_delay_ms: 0\n";

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

fn join_request(group: &str, member_id: &str) -> JoinGroupRequest {
    let mut protocol = JoinGroupRequestProtocol::default();
    protocol.name = s("range");
    protocol.metadata = Bytes::from_static(b"\x00\x00\x00\x00\x00\x00\x00\x00");
    let mut request = JoinGroupRequest::default();
    request.group_id = GroupId(s(group));
    request.session_timeout_ms = 10_000;
    request.rebalance_timeout_ms = 10_000;
    request.member_id = s(member_id);
    request.protocol_type = s("consumer");
    request.protocols = vec![protocol];
    request
}

async fn join(client: &mut common::Client, version: i16, group: &str) -> JoinGroupResponse {
    let mut response = match client
        .call(
            ApiKey::JoinGroup,
            version,
            RequestKind::JoinGroup(join_request(group, "")),
        )
        .await
    {
        ResponseKind::JoinGroup(r) => r,
        other => panic!("{other:?}"),
    };
    if version >= 4 {
        assert_eq!(response.error_code, ResponseError::MemberIdRequired.code());
        let member_id = response.member_id.to_string();
        response = match client
            .call(
                ApiKey::JoinGroup,
                version,
                RequestKind::JoinGroup(join_request(group, &member_id)),
            )
            .await
        {
            ResponseKind::JoinGroup(r) => r,
            other => panic!("{other:?}"),
        };
    }
    response
}

#[tokio::test]
async fn membership_apis_work_at_every_version() {
    let broker = TestBroker::start_with(NO_DELAY).await;
    let mut client = broker.client().await;
    for version in 0..=9i16 {
        let group = format!("membership-v{version}");
        let joined = join(&mut client, version, &group).await;
        assert_eq!(joined.error_code, 0, "JoinGroup v{version}");
        assert_eq!(joined.generation_id, 1);
        assert_eq!(joined.leader, joined.member_id);
        assert_eq!(joined.members.len(), 1);
        let member_id = joined.member_id.clone();

        let sync_version = version.min(5);
        let mut assignment = SyncGroupRequestAssignment::default();
        assignment.member_id = member_id.clone();
        assignment.assignment = Bytes::from_static(b"assignment");
        let mut sync = SyncGroupRequest::default();
        sync.group_id = GroupId(s(&group));
        sync.generation_id = 1;
        sync.member_id = member_id.clone();
        sync.assignments = vec![assignment];
        let ResponseKind::SyncGroup(synced) = client
            .call(
                ApiKey::SyncGroup,
                sync_version,
                RequestKind::SyncGroup(sync),
            )
            .await
        else {
            panic!("not a SyncGroup response");
        };
        assert_eq!(synced.error_code, 0, "SyncGroup v{sync_version}");
        assert_eq!(synced.assignment, Bytes::from_static(b"assignment"));

        let heartbeat_version = version.min(4);
        let mut heartbeat = HeartbeatRequest::default();
        heartbeat.group_id = GroupId(s(&group));
        heartbeat.generation_id = 1;
        heartbeat.member_id = member_id.clone();
        let ResponseKind::Heartbeat(beat) = client
            .call(
                ApiKey::Heartbeat,
                heartbeat_version,
                RequestKind::Heartbeat(heartbeat),
            )
            .await
        else {
            panic!("not a Heartbeat response");
        };
        assert_eq!(beat.error_code, 0, "Heartbeat v{heartbeat_version}");

        let leave_version = version.min(5);
        let mut leave = LeaveGroupRequest::default();
        leave.group_id = GroupId(s(&group));
        if leave_version >= 3 {
            let mut member = MemberIdentity::default();
            member.member_id = member_id.clone();
            leave.members = vec![member];
        } else {
            leave.member_id = member_id.clone();
        }
        let ResponseKind::LeaveGroup(left) = client
            .call(
                ApiKey::LeaveGroup,
                leave_version,
                RequestKind::LeaveGroup(leave),
            )
            .await
        else {
            panic!("not a LeaveGroup response");
        };
        assert_eq!(left.error_code, 0, "LeaveGroup v{leave_version}");
        if leave_version >= 3 {
            assert_eq!(left.members.len(), 1);
            assert_eq!(left.members[0].error_code, 0);
        }
    }

    // Every group is now empty: described, listed and deleted at every version.
    for version in 0..=6i16 {
        let mut describe = DescribeGroupsRequest::default();
        describe.groups = vec![GroupId(s("membership-v1")), GroupId(s("no-such-group"))];
        let ResponseKind::DescribeGroups(described) = client
            .call(
                ApiKey::DescribeGroups,
                version,
                RequestKind::DescribeGroups(describe),
            )
            .await
        else {
            panic!("not a DescribeGroups response");
        };
        assert_eq!(described.groups[0].error_code, 0);
        assert_eq!(described.groups[0].group_state.as_str(), "Empty");
        let unknown = &described.groups[1];
        assert_eq!(unknown.group_state.as_str(), "Dead");
        let expected = if version >= 6 {
            ResponseError::GroupIdNotFound.code()
        } else {
            0
        };
        assert_eq!(unknown.error_code, expected, "DescribeGroups v{version}");
    }
    for version in 0..=5i16 {
        let ResponseKind::ListGroups(listed) = client
            .call(
                ApiKey::ListGroups,
                version,
                RequestKind::ListGroups(ListGroupsRequest::default()),
            )
            .await
        else {
            panic!("not a ListGroups response");
        };
        assert_eq!(listed.groups.len(), 10, "ListGroups v{version}");
    }
    for version in 0..=2i16 {
        let mut delete = DeleteGroupsRequest::default();
        delete.groups_names = vec![GroupId(s(&format!("membership-v{version}")))];
        let ResponseKind::DeleteGroups(deleted) = client
            .call(
                ApiKey::DeleteGroups,
                version,
                RequestKind::DeleteGroups(delete),
            )
            .await
        else {
            panic!("not a DeleteGroups response");
        };
        assert_eq!(deleted.results[0].error_code, 0, "DeleteGroups v{version}");
    }
}

fn commit_request(group: &str, topic: &str, offset: i64) -> OffsetCommitRequest {
    let mut partition = OffsetCommitRequestPartition::default();
    partition.partition_index = 0;
    partition.committed_offset = offset;
    partition.committed_metadata = Some(s("meta"));
    let mut entry = OffsetCommitRequestTopic::default();
    entry.name = topic_name(topic);
    entry.partitions = vec![partition];
    let mut request = OffsetCommitRequest::default();
    request.group_id = GroupId(s(group));
    request.generation_id_or_member_epoch = -1;
    request.topics = vec![entry];
    request
}

/// The committed offset of partition 0, fetched with OffsetFetch `version`.
async fn fetch_offset(client: &mut common::Client, version: i16, group: &str, topic: &str) -> i64 {
    let mut request = OffsetFetchRequest::default();
    if version >= 8 {
        let mut t = OffsetFetchRequestTopics::default();
        t.name = topic_name(topic);
        t.partition_indexes = vec![0];
        let mut g = OffsetFetchRequestGroup::default();
        g.group_id = GroupId(s(group));
        g.topics = Some(vec![t]);
        request.groups = vec![g];
    } else {
        let mut t = OffsetFetchRequestTopic::default();
        t.name = topic_name(topic);
        t.partition_indexes = vec![0];
        request.group_id = GroupId(s(group));
        request.topics = Some(vec![t]);
    }
    let ResponseKind::OffsetFetch(response) = client
        .call(
            ApiKey::OffsetFetch,
            version,
            RequestKind::OffsetFetch(request),
        )
        .await
    else {
        panic!("not an OffsetFetch response");
    };
    if version >= 8 {
        let group = &response.groups[0];
        assert_eq!(group.error_code, 0);
        let partition = &group.topics[0].partitions[0];
        assert_eq!(partition.error_code, 0);
        partition.committed_offset
    } else {
        assert_eq!(response.error_code, 0);
        let partition = &response.topics[0].partitions[0];
        assert_eq!(partition.error_code, 0);
        partition.committed_offset
    }
}

#[tokio::test]
async fn offsets_commit_and_fetch_at_every_version_and_survive_a_restart() {
    let mut broker = TestBroker::start_with(NO_DELAY).await;
    let mut client = broker.client().await;
    client.create_topic("committed", 1, &[]).await;
    for version in 2..=9i16 {
        let group = format!("offsets-v{version}");
        let ResponseKind::OffsetCommit(committed) = client
            .call(
                ApiKey::OffsetCommit,
                version,
                RequestKind::OffsetCommit(commit_request(
                    &group,
                    "committed",
                    100 + version as i64,
                )),
            )
            .await
        else {
            panic!("not an OffsetCommit response");
        };
        assert_eq!(
            committed.topics[0].partitions[0].error_code, 0,
            "OffsetCommit v{version}"
        );
    }
    for version in 1..=9i16 {
        let group = format!("offsets-v{}", version.max(2));
        let offset = fetch_offset(&mut client, version, &group, "committed").await;
        assert_eq!(
            offset,
            100 + version.max(2) as i64,
            "OffsetFetch v{version}"
        );
    }
    // Unknown topics and unknown groups.
    let ResponseKind::OffsetCommit(unknown) = client
        .call(
            ApiKey::OffsetCommit,
            9,
            RequestKind::OffsetCommit(commit_request("offsets-v2", "no-such-topic", 1)),
        )
        .await
    else {
        panic!("not an OffsetCommit response");
    };
    assert_eq!(
        unknown.topics[0].partitions[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert_eq!(
        fetch_offset(&mut client, 9, "never-committed", "committed").await,
        -1
    );
    drop(client);
    broker.restart().await;
    let mut client = broker.client().await;
    for version in 2..=9i16 {
        let group = format!("offsets-v{version}");
        let offset = fetch_offset(&mut client, 7, &group, "committed").await;
        assert_eq!(offset, 100 + version as i64);
    }
    let mut delete = OffsetDeleteRequest::default();
    delete.group_id = GroupId(s("offsets-v2"));
    let mut partition = OffsetDeleteRequestPartition::default();
    partition.partition_index = 0;
    let mut topic = OffsetDeleteRequestTopic::default();
    topic.name = topic_name("committed");
    topic.partitions = vec![partition];
    delete.topics = vec![topic];
    let ResponseKind::OffsetDelete(deleted) = client
        .call(ApiKey::OffsetDelete, 0, RequestKind::OffsetDelete(delete))
        .await
    else {
        panic!("not an OffsetDelete response");
    };
    assert_eq!(deleted.error_code, 0);
    assert_eq!(deleted.topics[0].partitions[0].error_code, 0);
    assert_eq!(
        fetch_offset(&mut client, 9, "offsets-v2", "committed").await,
        -1
    );
}

#[tokio::test]
async fn a_join_waiting_for_a_rebalance_does_not_hold_up_shutdown() {
    let mut broker = TestBroker::start_with("group_initial_rebalance_delay_ms: 60000\n").await;
    let mut client = broker.client().await;
    client
        .send(
            ApiKey::JoinGroup,
            3,
            RequestKind::JoinGroup(join_request("slow", "")),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let stop = tokio::spawn(async move {
        broker.stop().await;
        broker
    });
    let (_, response) = client.recv(ApiKey::JoinGroup, 3).await;
    let ResponseKind::JoinGroup(response) = response else {
        panic!("not a JoinGroup response");
    };
    assert_eq!(
        response.error_code,
        ResponseError::CoordinatorNotAvailable.code()
    );
    let _broker = stop.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn consumer_group_heartbeat_and_describe_work_at_every_version() {
    use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
    let broker = TestBroker::start().await;
    let mut client = broker.client().await;
    client.create_topic("kip848", 4, &[]).await;
    for version in 0..=1i16 {
        let group = format!("consumer-v{version}");
        let mut request = ConsumerGroupHeartbeatRequest::default();
        request.group_id = GroupId(s(&group));
        // v0: the broker names the member; v1: the client does (KIP-1082).
        if version >= 1 {
            request.member_id = s(&uuid::Uuid::new_v4().to_string());
        }
        request.member_epoch = 0;
        request.rebalance_timeout_ms = 30_000;
        request.subscribed_topic_names = Some(vec![topic_name("kip848")]);
        request.topic_partitions = Some(Vec::<TopicPartitions>::new());
        let ResponseKind::ConsumerGroupHeartbeat(joined) = client
            .call(
                ApiKey::ConsumerGroupHeartbeat,
                version,
                RequestKind::ConsumerGroupHeartbeat(request),
            )
            .await
        else {
            panic!("not a ConsumerGroupHeartbeat response");
        };
        assert_eq!(joined.error_code, 0, "ConsumerGroupHeartbeat v{version}");
        assert_eq!(joined.member_epoch, 1);
        assert!(joined.heartbeat_interval_ms > 0);
        let assignment = joined
            .assignment
            .expect("a joining member gets its assignment");
        assert_eq!(assignment.topic_partitions[0].partitions, vec![0, 1, 2, 3]);

        let mut describe = ConsumerGroupDescribeRequest::default();
        describe.group_ids = vec![GroupId(s(&group))];
        let ResponseKind::ConsumerGroupDescribe(described) = client
            .call(
                ApiKey::ConsumerGroupDescribe,
                version,
                RequestKind::ConsumerGroupDescribe(describe),
            )
            .await
        else {
            panic!("not a ConsumerGroupDescribe response");
        };
        let described = &described.groups[0];
        assert_eq!(described.error_code, 0);
        assert_eq!(described.group_state.as_str(), "Stable");
        assert_eq!(described.members.len(), 1);
        assert_eq!(
            described.members[0].assignment.topic_partitions[0].topic_name,
            topic_name("kip848")
        );
    }
}
