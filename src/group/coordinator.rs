//! The group coordinator: this node coordinates every group. Each group with members is an
//! actor (a task owning its `ClassicGroup`, fed by a channel, waking for its own deadlines),
//! so a group's requests never contend on a lock and a slow rebalance holds nobody else up.
//! Committed offsets live in the shared `OffsetStore`.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashMap;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Duration, Instant};
use tracing::{info, warn};

use super::classic::{ClassicGroup, GroupSummary};
use super::messages::{
    CommitIdentity, GroupLimits, GroupState, HeartbeatRequest, JoinRequest, JoinResponse,
    LeaveMember, SyncRequest, SyncResponse,
};
use super::offset_log::{OffsetKey, OffsetValue};
use super::offsets::OffsetStore;
use crate::shutdown::Shutdown;

/// Requests queued per group before senders wait.
const GROUP_QUEUE: usize = 256;
/// The protocol type of Kafka consumers (whose metadata names the subscribed topics).
const CONSUMER_PROTOCOL: &str = "consumer";

enum Command {
    Join(JoinRequest, oneshot::Sender<JoinResponse>),
    Sync(SyncRequest, oneshot::Sender<SyncResponse>),
    Heartbeat(HeartbeatRequest, oneshot::Sender<Option<ResponseError>>),
    Leave(
        Vec<LeaveMember>,
        oneshot::Sender<Vec<Option<ResponseError>>>,
    ),
    Describe(oneshot::Sender<GroupSummary>),
    Subscriptions(oneshot::Sender<(GroupState, Option<String>, Vec<Bytes>)>),
    ValidateCommit(CommitIdentity, oneshot::Sender<Result<(), ResponseError>>),
    /// DeleteGroups: the group dies if it is empty.
    Delete(oneshot::Sender<Result<(), ResponseError>>),
}

pub struct GroupCoordinator {
    limits: GroupLimits,
    groups: DashMap<String, mpsc::Sender<Command>>,
    offsets: Arc<OffsetStore>,
    shutdown: Shutdown,
    offsets_retention: Duration,
}

impl GroupCoordinator {
    pub fn new(
        limits: GroupLimits,
        offsets: Arc<OffsetStore>,
        offsets_retention: Duration,
        shutdown: Shutdown,
    ) -> Arc<GroupCoordinator> {
        Arc::new(GroupCoordinator {
            limits,
            groups: DashMap::new(),
            offsets,
            shutdown,
            offsets_retention,
        })
    }

    pub fn offsets(&self) -> &Arc<OffsetStore> {
        &self.offsets
    }

    /// The group's actor, started when `create` is set and the group has none.
    fn actor(&self, group_id: &str, create: bool) -> Option<mpsc::Sender<Command>> {
        if let Some(sender) = self.groups.get(group_id) {
            return Some(sender.clone());
        }
        if !create || self.shutdown.is_triggered() {
            return None;
        }
        let sender = self
            .groups
            .entry(group_id.to_string())
            .or_insert_with(|| {
                let (tx, rx) = mpsc::channel(GROUP_QUEUE);
                let group = ClassicGroup::new(self.limits);
                tokio::spawn(run_group(
                    group_id.to_string(),
                    group,
                    rx,
                    self.shutdown.clone(),
                ));
                tx
            })
            .clone();
        Some(sender)
    }

    /// Sends a command to the group's actor and waits for its answer; `None` when the group
    /// has no actor (and `create` is not set) or the actor ended.
    async fn ask<T>(
        &self,
        group_id: &str,
        create: bool,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Option<T> {
        let actor = self.actor(group_id, create)?;
        let (tx, rx) = oneshot::channel();
        actor.send(command(tx)).await.ok()?;
        rx.await.ok()
    }

    pub async fn join(&self, group_id: &str, request: JoinRequest) -> JoinResponse {
        if group_id.is_empty() {
            return JoinResponse::error(ResponseError::InvalidGroupId);
        }
        let timeout = request.session_timeout;
        if timeout < self.limits.min_session_timeout || timeout > self.limits.max_session_timeout {
            return JoinResponse::error(ResponseError::InvalidSessionTimeout);
        }
        self.ask(group_id, true, |tx| Command::Join(request, tx))
            .await
            .unwrap_or_else(|| JoinResponse::error(ResponseError::CoordinatorNotAvailable))
    }

    pub async fn sync(&self, group_id: &str, request: SyncRequest) -> SyncResponse {
        if group_id.is_empty() {
            return SyncResponse::error(ResponseError::InvalidGroupId);
        }
        match self.actor(group_id, false) {
            None => SyncResponse::error(ResponseError::UnknownMemberId),
            Some(_) => self
                .ask(group_id, false, |tx| Command::Sync(request, tx))
                .await
                .unwrap_or_else(|| SyncResponse::error(ResponseError::CoordinatorNotAvailable)),
        }
    }

    pub async fn heartbeat(
        &self,
        group_id: &str,
        request: HeartbeatRequest,
    ) -> Option<ResponseError> {
        if group_id.is_empty() {
            return Some(ResponseError::InvalidGroupId);
        }
        match self.actor(group_id, false) {
            None => Some(ResponseError::UnknownMemberId),
            Some(_) => self
                .ask(group_id, false, |tx| Command::Heartbeat(request, tx))
                .await
                .unwrap_or(Some(ResponseError::CoordinatorNotAvailable)),
        }
    }

    pub async fn leave(
        &self,
        group_id: &str,
        members: Vec<LeaveMember>,
    ) -> Vec<Option<ResponseError>> {
        let count = members.len();
        if group_id.is_empty() {
            return vec![Some(ResponseError::InvalidGroupId); count];
        }
        match self.actor(group_id, false) {
            None => vec![Some(ResponseError::UnknownMemberId); count],
            Some(_) => self
                .ask(group_id, false, |tx| Command::Leave(members, tx))
                .await
                .unwrap_or_else(|| vec![Some(ResponseError::CoordinatorNotAvailable); count]),
        }
    }

    /// The group's state and members; `None` for a group that does not exist.
    pub async fn describe(&self, group_id: &str) -> Option<GroupSummary> {
        if let Some(summary) = self.ask(group_id, false, Command::Describe).await {
            return Some(summary);
        }
        self.offsets.has_group(group_id).then(empty_summary)
    }

    /// Every group: those with an actor and those that only have committed offsets.
    pub async fn list(&self) -> Vec<(String, GroupSummary)> {
        let ids: BTreeSet<String> = self
            .groups
            .iter()
            .map(|g| g.key().clone())
            .chain(self.offsets.groups())
            .collect();
        let mut groups = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(summary) = self.describe(&id).await
                && summary.state != GroupState::Dead
            {
                groups.push((id, summary));
            }
        }
        groups
    }

    /// DeleteGroups: an empty group and all its committed offsets.
    pub async fn delete(&self, group_id: &str) -> Result<(), ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        let had_actor = match self.ask(group_id, false, Command::Delete).await {
            Some(result) => {
                result?;
                self.groups.remove(group_id);
                true
            }
            None => false,
        };
        if !had_actor && !self.offsets.has_group(group_id) {
            return Err(ResponseError::GroupIdNotFound);
        }
        self.offsets
            .delete_group(group_id)
            .await
            .map_err(|e| e.response_error())?;
        info!(group = group_id, "deleted group");
        Ok(())
    }

    /// OffsetCommit: checks the committer against the group, then stores durably.
    pub async fn commit_offsets(
        &self,
        group_id: &str,
        identity: CommitIdentity,
        entries: Vec<(OffsetKey, Option<OffsetValue>)>,
    ) -> Result<(), ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        let generation = identity.generation_id;
        match self
            .ask(group_id, false, |tx| Command::ValidateCommit(identity, tx))
            .await
        {
            Some(result) => result?,
            // A commit without group management (generation -1) needs no members.
            None if generation < 0 => {}
            None => return Err(ResponseError::IllegalGeneration),
        }
        self.offsets
            .write(entries)
            .await
            .map_err(|e| e.response_error())
    }

    /// OffsetDelete: removes committed offsets unless the group's members consume the topic.
    /// Returns one result per partition.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<(String, i32, Option<ResponseError>)>, ResponseError> {
        let subscriptions = self.ask(group_id, false, Command::Subscriptions).await;
        if subscriptions.is_none() && !self.offsets.has_group(group_id) {
            return Err(ResponseError::GroupIdNotFound);
        }
        let mut subscribed = BTreeSet::new();
        if let Some((state, protocol_type, metadata)) = subscriptions
            && state != GroupState::Empty
        {
            if protocol_type.as_deref() != Some(CONSUMER_PROTOCOL) {
                return Err(ResponseError::NonEmptyGroup);
            }
            subscribed = metadata.iter().flat_map(subscribed_topics).collect();
        }
        let mut results = Vec::with_capacity(partitions.len());
        let mut tombstones = Vec::new();
        for (topic, partition) in partitions {
            if subscribed.contains(&topic) {
                results.push((
                    topic,
                    partition,
                    Some(ResponseError::GroupSubscribedToTopic),
                ));
                continue;
            }
            let key = OffsetKey {
                group: group_id.to_string(),
                topic: topic.clone(),
                partition,
            };
            tombstones.push((key, None));
            results.push((topic, partition, None));
        }
        self.offsets
            .write(tombstones)
            .await
            .map_err(|e| e.response_error())?;
        Ok(results)
    }

    /// Expires offsets of groups without members past `offsets_retention_minutes` and retires
    /// empty groups that have no offsets left.
    pub async fn sweep(&self) {
        let cutoff = crate::log::now_ms() - self.offsets_retention.as_millis() as i64;
        let mut idle = BTreeSet::new();
        for id in self.offsets.groups() {
            match self.describe(&id).await {
                Some(summary) if summary.state != GroupState::Empty => {}
                _ => {
                    idle.insert(id);
                }
            }
        }
        match self
            .offsets
            .expire(cutoff, |group| idle.contains(group))
            .await
        {
            Ok(0) => {}
            Ok(expired) => info!(offsets = expired, "expired committed offsets"),
            Err(e) => warn!(error = %e, "could not expire committed offsets"),
        }
        let ids: Vec<String> = self.groups.iter().map(|g| g.key().clone()).collect();
        for id in ids {
            if self.offsets.has_group(&id) {
                continue;
            }
            if let Some(Ok(())) = self.ask(&id, false, Command::Delete).await {
                self.groups.remove(&id);
            }
        }
    }

    /// Runs `sweep` every `period` until shutdown.
    pub fn spawn_sweeper(self: &Arc<Self>, period: Duration) {
        let coordinator = Arc::downgrade(self);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.cancelled() => return,
                }
                let Some(coordinator) = coordinator.upgrade() else {
                    return;
                };
                coordinator.sweep().await;
            }
        });
    }
}

fn empty_summary() -> GroupSummary {
    GroupSummary {
        state: GroupState::Empty,
        protocol_type: String::new(),
        protocol_name: String::new(),
        generation_id: 0,
        members: Vec::new(),
    }
}

/// The topics a consumer's subscription metadata names (none if it cannot be read).
fn subscribed_topics(metadata: &Bytes) -> Vec<String> {
    let mut buf = metadata.clone();
    if buf.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    let _ = bytes::Buf::get_i16(&mut buf);
    match ConsumerProtocolSubscription::decode(&mut buf, version.clamp(0, 3)) {
        Ok(subscription) => subscription.topics.iter().map(|t| t.to_string()).collect(),
        Err(_) => Vec::new(),
    }
}

/// One group's actor: applies commands in arrival order and wakes for the group's deadlines.
async fn run_group(
    group_id: String,
    mut group: ClassicGroup,
    mut commands: mpsc::Receiver<Command>,
    shutdown: Shutdown,
) {
    loop {
        let deadline = group.next_deadline();
        let timer = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            command = commands.recv() => {
                let Some(command) = command else { break };
                if !handle(&mut group, command, Instant::now()) {
                    break;
                }
            }
            _ = timer => group.on_timer(Instant::now()),
            _ = shutdown.cancelled() => {
                group.abort_waiting(ResponseError::CoordinatorNotAvailable);
                break;
            }
        }
    }
    tracing::debug!(group = %group_id, "group actor ended");
}

/// Applies one command; false once the group is dead and the actor should end.
fn handle(group: &mut ClassicGroup, command: Command, now: Instant) -> bool {
    match command {
        Command::Join(request, reply) => group.join(request, reply, now),
        Command::Sync(request, reply) => group.sync(request, reply, now),
        Command::Heartbeat(request, reply) => {
            let _ = reply.send(group.heartbeat(request, now));
        }
        Command::Leave(members, reply) => {
            let _ = reply.send(group.leave(members, now));
        }
        Command::Describe(reply) => {
            let _ = reply.send(group.summary());
        }
        Command::Subscriptions(reply) => {
            let protocol_type = group.protocol_type().map(str::to_string);
            let _ = reply.send((group.state(), protocol_type, group.member_metadata()));
        }
        Command::ValidateCommit(identity, reply) => {
            let result = group.validate_commit(
                &identity.member_id,
                identity.group_instance_id.as_deref(),
                identity.generation_id,
            );
            let _ = reply.send(result);
        }
        Command::Delete(reply) => {
            let result = group.mark_dead();
            let dead = result.is_ok();
            let _ = reply.send(result);
            return !dead;
        }
    }
    true
}
