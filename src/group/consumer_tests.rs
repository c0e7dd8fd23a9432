//! The consumer group protocol (KIP-848) through the coordinator with paused tokio time:
//! joins, incremental revocation, fencing, session and revocation timeouts, static members.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::ResponseError;
use tokio::time::{Duration, sleep};
use uuid::Uuid;

use super::assignor::Assignment;
use super::coordinator::GroupCoordinator;
use super::messages::{
    CommitIdentity, ConsumerHeartbeat, ConsumerHeartbeatResponse, TopicsSnapshot,
};
use super::tests::coordinator;

const PARTITIONS: i32 = 6;

struct Fixture {
    groups: Arc<GroupCoordinator>,
    topics: TopicsSnapshot,
    topic: Uuid,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let groups = coordinator(dir.path(), 0).await;
    let topic = Uuid::new_v4();
    let topics = Arc::new(BTreeMap::from([(
        "orders".to_string(),
        (topic, PARTITIONS),
    )]));
    Fixture {
        groups,
        topics,
        topic,
        _dir: dir,
    }
}

impl Fixture {
    fn request(&self, member: &str, epoch: i32, owned: Option<&Assignment>) -> ConsumerHeartbeat {
        let joining = epoch == 0;
        ConsumerHeartbeat {
            member_id: member.to_string(),
            member_epoch: epoch,
            instance_id: None,
            rack_id: None,
            rebalance_timeout_ms: if joining { 30_000 } else { -1 },
            subscribed_topic_names: joining.then(|| vec!["orders".to_string()]),
            subscribed_topic_regex: None,
            server_assignor: None,
            owned: if joining {
                Some(Assignment::new())
            } else {
                owned.cloned()
            },
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            topics: self.topics.clone(),
            server_generates_member_id: false,
        }
    }

    async fn beat(&self, request: ConsumerHeartbeat) -> ConsumerHeartbeatResponse {
        self.groups.consumer_heartbeat("g", request).await
    }

    fn partitions(&self, assignment: &Assignment) -> BTreeSet<i32> {
        assignment.get(&self.topic).cloned().unwrap_or_default()
    }
}

/// A member's view: epoch and what it owns, updated from each response.
struct Client {
    id: String,
    epoch: i32,
    owned: Assignment,
}

impl Client {
    fn new() -> Client {
        Client {
            id: Uuid::new_v4().to_string(),
            epoch: 0,
            owned: Assignment::new(),
        }
    }

    /// One heartbeat; the client adopts what it is told (revoking and adding at once).
    async fn beat(&mut self, fx: &Fixture) -> ConsumerHeartbeatResponse {
        let response = fx
            .beat(fx.request(&self.id, self.epoch, Some(&self.owned)))
            .await;
        assert_eq!(response.error, None, "{response:?}");
        self.epoch = response.member_epoch;
        if let Some(assignment) = &response.assignment {
            self.owned = assignment.clone();
        }
        response
    }
}

fn all() -> BTreeSet<i32> {
    (0..PARTITIONS).collect()
}

#[tokio::test(start_paused = true)]
async fn members_converge_without_ever_sharing_a_partition() {
    let fx = fixture().await;
    let mut a = Client::new();
    a.beat(&fx).await;
    assert_eq!(a.epoch, 1);
    assert_eq!(fx.partitions(&a.owned), all());

    // b joins: nothing is free yet, so it gets nothing but the new epoch.
    let mut b = Client::new();
    b.beat(&fx).await;
    assert_eq!(b.epoch, 2);
    assert!(fx.partitions(&b.owned).is_empty());

    // a is asked to revoke half, at its old epoch; b still gets nothing.
    a.beat(&fx).await;
    assert_eq!(a.epoch, 1);
    assert_eq!(fx.partitions(&a.owned).len(), 3);
    b.beat(&fx).await;
    assert!(fx.partitions(&b.owned).is_empty());

    // a confirms by reporting what it owns now: it moves to epoch 2, b gets the rest.
    a.beat(&fx).await;
    assert_eq!(a.epoch, 2);
    b.beat(&fx).await;
    let (pa, pb) = (fx.partitions(&a.owned), fx.partitions(&b.owned));
    assert!(pa.is_disjoint(&pb));
    assert_eq!(pa.union(&pb).copied().collect::<BTreeSet<_>>(), all());
    let summary = fx.groups.describe("g").await.unwrap();
    assert_eq!(summary.state(), "Stable");
}

#[tokio::test(start_paused = true)]
async fn bad_epochs_unknown_members_and_invalid_requests_are_refused() {
    let fx = fixture().await;
    let mut a = Client::new();
    a.beat(&fx).await;
    let stale = fx.beat(fx.request(&a.id, a.epoch + 5, None)).await;
    assert_eq!(stale.error, Some(ResponseError::FencedMemberEpoch));
    let unknown = fx.beat(fx.request("ghost", 3, None)).await;
    assert_eq!(unknown.error, Some(ResponseError::UnknownMemberId));
    let no_id = fx.beat(fx.request("", 0, None)).await;
    assert_eq!(no_id.error, Some(ResponseError::InvalidRequest));
    let mut v0 = fx.request("", 0, None);
    v0.server_generates_member_id = true;
    let named = fx.beat(v0).await;
    assert_eq!(named.error, None);
    assert!(named.member_id.is_some_and(|id| !id.is_empty()));
    let mut odd = fx.request(&Uuid::new_v4().to_string(), 0, None);
    odd.server_assignor = Some("sticky-ish".into());
    assert_eq!(
        fx.beat(odd).await.error,
        Some(ResponseError::UnsupportedAssignor)
    );
    // Offset commits must carry the member's current epoch.
    let stale_commit = CommitIdentity {
        generation_id: a.epoch - 1,
        member_id: a.id.clone(),
        group_instance_id: None,
    };
    assert_eq!(
        fx.groups
            .commit_offsets("g", stale_commit, Vec::new())
            .await,
        Err(ResponseError::StaleMemberEpoch)
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_member_is_removed_after_the_session_timeout() {
    let fx = fixture().await;
    let (mut a, mut b) = (Client::new(), Client::new());
    a.beat(&fx).await;
    b.beat(&fx).await;
    for _ in 0..3 {
        a.beat(&fx).await;
        b.beat(&fx).await;
    }
    assert_eq!(fx.partitions(&b.owned).len(), 3);
    // a goes silent; b heartbeats every 5 s and inherits everything after 45 s.
    for _ in 0..12 {
        sleep(Duration::from_secs(5)).await;
        b.beat(&fx).await;
    }
    assert_eq!(fx.partitions(&b.owned), all());
    let gone = fx.beat(fx.request(&a.id, a.epoch, None)).await;
    assert_eq!(gone.error, Some(ResponseError::UnknownMemberId));
}

#[tokio::test(start_paused = true)]
async fn a_member_that_never_revokes_is_fenced_after_its_rebalance_timeout() {
    let fx = fixture().await;
    let mut a = Client::new();
    a.beat(&fx).await;
    let mut b = Client::new();
    b.beat(&fx).await;
    // a is told to revoke but keeps reporting every partition as owned.
    let told = fx.beat(fx.request(&a.id, a.epoch, Some(&a.owned))).await;
    assert_eq!(told.error, None);
    for _ in 0..8 {
        sleep(Duration::from_secs(5)).await;
        let _ = fx.beat(fx.request(&a.id, a.epoch, Some(&a.owned))).await;
        b.beat(&fx).await;
    }
    // 30 s rebalance timeout: a was fenced and b owns everything.
    assert_eq!(fx.partitions(&b.owned), all());
}

#[tokio::test(start_paused = true)]
async fn a_static_member_returns_to_its_partitions() {
    let fx = fixture().await;
    let mut a = Client::new();
    let mut join = fx.request(&a.id, 0, None);
    join.instance_id = Some("instance-a".into());
    let first = fx.beat(join).await;
    a.epoch = first.member_epoch;
    a.owned = first.assignment.unwrap();
    let mut b = Client::new();
    b.beat(&fx).await;
    for _ in 0..3 {
        a.beat(&fx).await;
        b.beat(&fx).await;
    }
    let before = fx.partitions(&a.owned);
    assert_eq!(before.len(), 3);
    // Another process claiming the instance id while a is active is refused.
    let mut thief = fx.request(&Uuid::new_v4().to_string(), 0, None);
    thief.instance_id = Some("instance-a".into());
    assert_eq!(
        fx.beat(thief).await.error,
        Some(ResponseError::UnreleasedInstanceId)
    );
    // a leaves temporarily (epoch -2) and comes back as a new process.
    let left = fx
        .beat(fx.request(&a.id, super::consumer::STATIC_LEAVE_EPOCH, None))
        .await;
    assert_eq!(left.error, None);
    sleep(Duration::from_secs(5)).await;
    b.beat(&fx).await;
    assert_eq!(
        fx.partitions(&b.owned).len(),
        3,
        "b must not take a's partitions"
    );
    let mut back = fx.request(&Uuid::new_v4().to_string(), 0, None);
    back.instance_id = Some("instance-a".into());
    let returned = fx.beat(back).await;
    assert_eq!(returned.error, None);
    assert_eq!(returned.member_epoch, a.epoch);
    assert_eq!(fx.partitions(&returned.assignment.unwrap()), before);
}
