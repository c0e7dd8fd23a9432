//! The classic group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) as a state
//! machine: Empty → PreparingRebalance → CompletingRebalance → Stable, and Dead once deleted.
//! It holds the JoinGroup and SyncGroup answers that wait for a rebalance and says when it next
//! needs the clock (`next_deadline`); its owner calls `on_timer` then. Time is always passed in.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::{Duration, Instant};

mod join;

use super::messages::{
    GroupLimits, GroupState, HeartbeatRequest, JoinResponse, JoinedMember, LeaveMember,
    SyncRequest, SyncResponse,
};

/// One member as the coordinator sees it.
#[derive(Debug)]
struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    /// The protocols the member supports, in its order of preference, with their metadata.
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    awaiting_join: Option<oneshot::Sender<JoinResponse>>,
    awaiting_sync: Option<oneshot::Sender<SyncResponse>>,
    /// The member is evicted when this passes without a heartbeat (unless it waits in a join
    /// or sync, which keeps it alive as in Kafka).
    heartbeat_deadline: Instant,
}

impl Member {
    fn metadata(&self, protocol: Option<&str>) -> Bytes {
        protocol
            .and_then(|name| self.protocols.iter().find(|(p, _)| p == name))
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    fn same_protocols(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    fn is_waiting(&self) -> bool {
        self.awaiting_join.is_some() || self.awaiting_sync.is_some()
    }
}

/// What DescribeGroups shows of a member.
#[derive(Debug, Clone)]
pub struct DescribedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// What DescribeGroups and ListGroups show of a group.
#[derive(Debug, Clone)]
pub struct GroupSummary {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol_name: String,
    pub generation_id: i32,
    pub members: Vec<DescribedMember>,
}

#[derive(Debug)]
pub struct ClassicGroup {
    limits: GroupLimits,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// `group.instance.id` → the member id it currently holds.
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until they join or expire.
    pending_members: HashMap<String, Instant>,
    /// Members of the current generation that have not sent SyncGroup yet.
    pending_sync: HashSet<String>,
    /// PreparingRebalance: when the join phase ends. Otherwise: when members that never sent
    /// SyncGroup for this generation are evicted.
    rebalance_deadline: Option<Instant>,
    /// The first rebalance of an empty group waits for more members, at most until here.
    initial_delay_limit: Option<Instant>,
}

impl ClassicGroup {
    pub fn new(limits: GroupLimits) -> ClassicGroup {
        ClassicGroup {
            limits,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            pending_sync: HashSet::new(),
            rebalance_deadline: None,
            initial_delay_limit: None,
        }
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn summary(&self) -> GroupSummary {
        // Like Kafka, member metadata and assignments are only shown once the group is stable.
        let stable = self.state == GroupState::Stable;
        let members = self
            .members
            .iter()
            .map(|(id, m)| DescribedMember {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: if stable {
                    m.metadata(self.protocol_name.as_deref())
                } else {
                    Bytes::new()
                },
                assignment: if stable {
                    m.assignment.clone()
                } else {
                    Bytes::new()
                },
            })
            .collect();
        GroupSummary {
            state: self.state,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_name: if stable {
                self.protocol_name.clone().unwrap_or_default()
            } else {
                String::new()
            },
            generation_id: self.generation,
            members,
        }
    }

    /// The members' subscription metadata for the selected protocol (for OffsetDelete).
    pub fn member_metadata(&self) -> Vec<Bytes> {
        self.members
            .values()
            .map(|m| m.metadata(self.protocol_name.as_deref()))
            .collect()
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    /// Marks the group deleted; only an empty group can be.
    pub fn mark_dead(&mut self) -> Result<(), ResponseError> {
        match self.state {
            GroupState::Dead => Err(ResponseError::GroupIdNotFound),
            GroupState::Empty => {
                self.state = GroupState::Dead;
                Ok(())
            }
            _ => Err(ResponseError::NonEmptyGroup),
        }
    }

    /// Answers every waiting request with `error` (the coordinator is shutting down).
    pub fn abort_waiting(&mut self, error: ResponseError) {
        for member in self.members.values_mut() {
            if let Some(reply) = member.awaiting_join.take() {
                let _ = reply.send(JoinResponse::error(error));
            }
            if let Some(reply) = member.awaiting_sync.take() {
                let _ = reply.send(SyncResponse::error(error));
            }
        }
    }

    fn prepare_rebalance(&mut self, now: Instant) {
        if self.state == GroupState::CompletingRebalance {
            // The assignment being synced is void: members must rejoin.
            for member in self.members.values_mut() {
                if let Some(reply) = member.awaiting_sync.take() {
                    let _ = reply.send(SyncResponse::error(ResponseError::RebalanceInProgress));
                }
            }
        }
        let was_empty = self.state == GroupState::Empty;
        self.state = GroupState::PreparingRebalance;
        self.pending_sync.clear();
        let timeout = self.rebalance_timeout();
        if was_empty && !self.limits.initial_delay.is_zero() {
            let limit = now + timeout;
            self.initial_delay_limit = Some(limit);
            self.rebalance_deadline = Some((now + self.limits.initial_delay).min(limit));
        } else {
            self.initial_delay_limit = None;
            self.rebalance_deadline = Some(now + timeout);
        }
        self.maybe_complete_join(now);
    }

    /// How long a join or sync phase may take: the longest rebalance timeout of the members.
    fn rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default()
    }

    /// Completes the join phase once every known member has rejoined (never during the
    /// initial delay of a new group, which waits for more members on purpose).
    fn maybe_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance || self.initial_delay_limit.is_some() {
            return;
        }
        let all_joined = self.members.values().all(|m| m.awaiting_join.is_some())
            && self.pending_members.is_empty();
        if all_joined {
            self.complete_join(now);
        }
    }

    fn complete_join(&mut self, now: Instant) {
        let missing: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.awaiting_join.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in missing {
            self.remove_member(&id);
        }
        self.initial_delay_limit = None;
        self.generation = self.generation.wrapping_add(1).max(1);
        if !self.members.is_empty() {
            crate::telemetry::rebalance("classic");
        }
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol_name = None;
            self.protocol_type = None;
            self.leader = None;
            self.rebalance_deadline = None;
            return;
        }
        self.protocol_name = self.select_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|leader| !self.members.contains_key(leader))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        self.pending_sync = self.members.keys().cloned().collect();
        self.rebalance_deadline = Some(now + self.rebalance_timeout());
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let is_leader = self.leader.as_deref() == Some(id.as_str());
            let response = self.join_response(&id, is_leader);
            if let Some(member) = self.members.get_mut(&id) {
                member.heartbeat_deadline = now + member.session_timeout;
                if let Some(reply) = member.awaiting_join.take() {
                    let _ = reply.send(response);
                }
            }
        }
    }

    /// The protocol every member supports that most members prefer (Kafka's vote).
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.common_protocols(None);
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for member in self.members.values() {
            if let Some((name, _)) = member
                .protocols
                .iter()
                .find(|(name, _)| candidates.contains(name))
            {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for name in &candidates {
            let count = votes.get(name.as_str()).copied().unwrap_or(0);
            if best.is_none_or(|(_, c)| count > c) {
                best = Some((name.as_str(), count));
            }
        }
        best.map(|(name, _)| name.to_string())
    }

    fn join_response(&self, member_id: &str, with_members: bool) -> JoinResponse {
        let members = if with_members {
            self.members
                .iter()
                .map(|(id, m)| JoinedMember {
                    member_id: id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    metadata: m.metadata(self.protocol_name.as_deref()),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResponse {
            error: None,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            skip_assignment: false,
            member_id: member_id.to_string(),
            members,
        }
    }

    /// Removes a member, answering whatever it waits for with UNKNOWN_MEMBER_ID.
    fn remove_member(&mut self, member_id: &str) {
        let Some(mut member) = self.members.remove(member_id) else {
            return;
        };
        if let Some(reply) = member.awaiting_join.take() {
            let _ = reply.send(JoinResponse::error(ResponseError::UnknownMemberId));
        }
        if let Some(reply) = member.awaiting_sync.take() {
            let _ = reply.send(SyncResponse::error(ResponseError::UnknownMemberId));
        }
        if let Some(instance) = &member.instance_id
            && self.static_members.get(instance).map(String::as_str) == Some(member_id)
        {
            self.static_members.remove(instance);
        }
        self.pending_sync.remove(member_id);
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
    }

    /// After members left or were evicted: rebalance, or finish a join waiting on them.
    fn after_departure(&mut self, now: Instant) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(now),
            GroupState::PreparingRebalance => self.maybe_complete_join(now),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Common checks of SyncGroup, Heartbeat and OffsetCommit for a known member.
    fn check_member(
        &self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        match self.state {
            GroupState::Dead => return Err(ResponseError::CoordinatorNotAvailable),
            GroupState::Empty => return Err(ResponseError::UnknownMemberId),
            _ => {}
        }
        self.check_instance(member_id, instance)?;
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    pub fn sync(
        &mut self,
        request: SyncRequest,
        reply: oneshot::Sender<SyncResponse>,
        now: Instant,
    ) {
        if let Err(error) = self.check_member(
            &request.member_id,
            request.group_instance_id.as_deref(),
            request.generation_id,
        ) {
            let _ = reply.send(SyncResponse::error(error));
            return;
        }
        let type_mismatch = request
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != self.protocol_type.as_ref());
        let name_mismatch = request
            .protocol_name
            .as_ref()
            .is_some_and(|n| Some(n) != self.protocol_name.as_ref());
        if type_mismatch || name_mismatch {
            let _ = reply.send(SyncResponse::error(
                ResponseError::InconsistentGroupProtocol,
            ));
            return;
        }
        if self.state == GroupState::PreparingRebalance {
            let _ = reply.send(SyncResponse::error(ResponseError::RebalanceInProgress));
            return;
        }
        self.pending_sync.remove(&request.member_id);
        if self.pending_sync.is_empty() && self.state == GroupState::Stable {
            self.rebalance_deadline = None;
        }
        let protocol_type = self.protocol_type.clone();
        let protocol_name = self.protocol_name.clone();
        let is_leader = self.leader.as_deref() == Some(request.member_id.as_str());
        let Some(member) = self.members.get_mut(&request.member_id) else {
            return;
        };
        member.heartbeat_deadline = now + member.session_timeout;
        if self.state == GroupState::Stable {
            let _ = reply.send(SyncResponse {
                error: None,
                protocol_type,
                protocol_name,
                assignment: member.assignment.clone(),
            });
            return;
        }
        // CompletingRebalance: wait for the leader's assignment.
        member.awaiting_sync = Some(reply);
        if !is_leader {
            return;
        }
        let mut assignments: HashMap<String, Bytes> = request.assignments.into_iter().collect();
        for (id, member) in self.members.iter_mut() {
            member.assignment = assignments.remove(id).unwrap_or_default();
            if let Some(reply) = member.awaiting_sync.take() {
                let _ = reply.send(SyncResponse {
                    error: None,
                    protocol_type: protocol_type.clone(),
                    protocol_name: protocol_name.clone(),
                    assignment: member.assignment.clone(),
                });
            }
        }
        self.state = GroupState::Stable;
        if self.pending_sync.is_empty() {
            self.rebalance_deadline = None;
        }
    }

    pub fn heartbeat(&mut self, request: HeartbeatRequest, now: Instant) -> Option<ResponseError> {
        if let Err(error) = self.check_member(
            &request.member_id,
            request.group_instance_id.as_deref(),
            request.generation_id,
        ) {
            return Some(error);
        }
        if let Some(member) = self.members.get_mut(&request.member_id) {
            member.heartbeat_deadline = now + member.session_timeout;
        }
        match self.state {
            GroupState::PreparingRebalance => Some(ResponseError::RebalanceInProgress),
            _ => None,
        }
    }

    /// LeaveGroup: one result per member, in request order.
    pub fn leave(&mut self, members: Vec<LeaveMember>, now: Instant) -> Vec<Option<ResponseError>> {
        if self.state == GroupState::Dead {
            return vec![Some(ResponseError::CoordinatorNotAvailable); members.len()];
        }
        let mut results = Vec::with_capacity(members.len());
        let mut departed = false;
        for leaving in members {
            let result = match &leaving.group_instance_id {
                Some(instance) => match self.static_members.get(instance).cloned() {
                    None => Some(ResponseError::UnknownMemberId),
                    Some(owner) if !leaving.member_id.is_empty() && owner != leaving.member_id => {
                        Some(ResponseError::FencedInstanceId)
                    }
                    Some(owner) => {
                        self.remove_member(&owner);
                        departed = true;
                        None
                    }
                },
                None => {
                    if self.members.contains_key(&leaving.member_id) {
                        self.remove_member(&leaving.member_id);
                        departed = true;
                        None
                    } else if self.pending_members.remove(&leaving.member_id).is_some() {
                        departed = true;
                        None
                    } else {
                        Some(ResponseError::UnknownMemberId)
                    }
                }
            };
            results.push(result);
        }
        if departed {
            self.after_departure(now);
        }
        results
    }

    /// Whether a member may commit offsets for this generation (generation < 0 with an empty
    /// group is a standalone commit, e.g. from an admin tool or a consumer without a group).
    pub fn validate_commit(
        &self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        match self.state {
            GroupState::Dead => Err(ResponseError::CoordinatorNotAvailable),
            GroupState::Empty if generation < 0 => Ok(()),
            GroupState::CompletingRebalance => {
                self.check_instance(member_id, instance)?;
                Err(ResponseError::RebalanceInProgress)
            }
            _ => self.check_member(member_id, instance, generation),
        }
    }

    /// When `on_timer` must run next, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        let members = self
            .members
            .values()
            .filter(|m| !m.is_waiting())
            .map(|m| m.heartbeat_deadline);
        members
            .chain(self.pending_members.values().copied())
            .chain(self.rebalance_deadline)
            .min()
    }

    /// Evicts members whose session expired and ends join or sync phases that timed out.
    pub fn on_timer(&mut self, now: Instant) {
        self.pending_members.retain(|_, expiry| *expiry > now);
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| !m.is_waiting() && m.heartbeat_deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            tracing::info!(member = %id, "group member session expired");
            self.remove_member(id);
        }
        let deadline_passed = self.rebalance_deadline.is_some_and(|d| d <= now);
        let before = (self.state, self.generation);
        if deadline_passed {
            match self.state {
                GroupState::PreparingRebalance => self.complete_join(now),
                GroupState::CompletingRebalance | GroupState::Stable
                    if !self.pending_sync.is_empty() =>
                {
                    // Members that never sent SyncGroup for this generation are evicted.
                    let silent: Vec<String> = self.pending_sync.drain().collect();
                    for id in silent {
                        self.remove_member(&id);
                    }
                    self.prepare_rebalance(now);
                }
                _ => self.rebalance_deadline = None,
            }
        }
        if before != (self.state, self.generation) {
            return;
        }
        if expired.is_empty() {
            // Expired pending members may have been all the join was waiting for.
            self.maybe_complete_join(now);
        } else {
            self.after_departure(now);
        }
    }
}
