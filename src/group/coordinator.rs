//! The group coordinator: this node coordinates every group. Each group is an actor
//! (`actor.rs`), so a slow rebalance holds nobody else up; committed offsets live in the
//! shared `OffsetStore`.

use std::collections::BTreeSet;
use std::sync::Arc;

use dashmap::DashMap;
use kafka_protocol::ResponseError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Duration;
use tracing::{info, warn};

use super::actor::{self, Command, GroupDescription};
use super::classic::GroupSummary;
use super::messages::{
    CommitIdentity, ConsumerHeartbeat, ConsumerHeartbeatResponse, GroupLimits, GroupState,
    HeartbeatRequest, JoinRequest, JoinResponse, LeaveMember, SyncRequest, SyncResponse,
};
use super::offset_log::{OffsetKey, OffsetValue};
use super::offsets::OffsetStore;
use crate::shutdown::Shutdown;

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
                actor::spawn(group_id.to_string(), self.limits, self.shutdown.clone())
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
    pub async fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        if let Some(description) = self.ask(group_id, false, Command::Describe).await {
            return Some(description);
        }
        self.offsets
            .has_group(group_id)
            .then(|| GroupDescription::Classic(empty_summary()))
    }

    /// Every group: those with an actor and those that only have committed offsets.
    pub async fn list(&self) -> Vec<(String, GroupDescription)> {
        let ids: BTreeSet<String> = self
            .groups
            .iter()
            .map(|g| g.key().clone())
            .chain(self.offsets.groups())
            .collect();
        let mut groups = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(description) = self.describe(&id).await
                && !description.is_dead()
            {
                groups.push((id, description));
            }
        }
        groups
    }

    /// ConsumerGroupHeartbeat (KIP-848).
    pub async fn consumer_heartbeat(
        &self,
        group_id: &str,
        request: ConsumerHeartbeat,
    ) -> ConsumerHeartbeatResponse {
        if group_id.is_empty() {
            return ConsumerHeartbeatResponse::error(ResponseError::InvalidGroupId, None);
        }
        // Only a join may create the group.
        let create = request.member_epoch == 0;
        match self
            .ask(group_id, create, |tx| {
                Command::ConsumerHeartbeat(request, tx)
            })
            .await
        {
            Some(response) => response,
            None if create => {
                ConsumerHeartbeatResponse::error(ResponseError::CoordinatorNotAvailable, None)
            }
            None => ConsumerHeartbeatResponse::error(ResponseError::UnknownMemberId, None),
        }
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

    /// Checks a committer (OffsetCommit, TxnOffsetCommit) against the group's members and
    /// generation.
    pub async fn validate_commit(
        &self,
        group_id: &str,
        identity: CommitIdentity,
    ) -> Result<(), ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        let generation = identity.generation_id;
        match self
            .ask(group_id, false, |tx| Command::ValidateCommit(identity, tx))
            .await
        {
            Some(result) => result,
            // A commit without group management (generation -1) needs no members.
            None if generation < 0 => Ok(()),
            None => Err(ResponseError::IllegalGeneration),
        }
    }

    /// OffsetCommit: checks the committer against the group, then stores durably.
    pub async fn commit_offsets(
        &self,
        group_id: &str,
        identity: CommitIdentity,
        entries: Vec<(OffsetKey, Option<OffsetValue>)>,
    ) -> Result<(), ResponseError> {
        self.validate_commit(group_id, identity).await?;
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
        let subscribed = match self.ask(group_id, false, Command::SubscribedTopics).await {
            Some(result) => result?,
            None if self.offsets.has_group(group_id) => BTreeSet::new(),
            None => return Err(ResponseError::GroupIdNotFound),
        };
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
                Some(description) if !description.is_empty() => {}
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
        crate::shutdown::spawn_periodic(
            Arc::downgrade(self),
            period,
            self.shutdown.clone(),
            |coordinator: Arc<GroupCoordinator>| async move { coordinator.sweep().await },
        );
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
