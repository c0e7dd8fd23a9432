//! JoinGroup on a classic group: new members (with MEMBER_ID_REQUIRED), known members
//! rejoining, static members returning under a new member id, and the protocol checks.

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{ClassicGroup, GroupState, Member};
use crate::group::messages::{JoinRequest, JoinResponse, SyncResponse};

impl ClassicGroup {
    pub fn join(
        &mut self,
        request: JoinRequest,
        reply: oneshot::Sender<JoinResponse>,
        now: Instant,
    ) {
        if self.state == GroupState::Dead {
            let _ = reply.send(JoinResponse::error(ResponseError::CoordinatorNotAvailable));
            return;
        }
        if !self.accepts_protocols(&request) {
            let _ = reply.send(JoinResponse::error(
                ResponseError::InconsistentGroupProtocol,
            ));
            return;
        }
        if request.member_id.is_empty() {
            self.join_unknown_member(request, reply, now);
        } else {
            self.join_known_member(request, reply, now);
        }
    }

    /// A joining member's protocol type must match the group's, and at least one of its
    /// protocols must be supported by every current member.
    fn accepts_protocols(&self, request: &JoinRequest) -> bool {
        if request.protocol_type.is_empty() || request.protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(request.protocol_type.as_str()) {
            return false;
        }
        let common = self.common_protocols(None);
        request
            .protocols
            .iter()
            .any(|(name, _)| common.contains(name))
    }

    /// Protocol names every member (except `skip`) supports, in the first member's order.
    pub(super) fn common_protocols(&self, skip: Option<&str>) -> Vec<String> {
        let mut members = self
            .members
            .iter()
            .filter(|(id, _)| Some(id.as_str()) != skip)
            .map(|(_, m)| m);
        let Some(first) = members.next() else {
            return Vec::new();
        };
        let mut common: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for member in members {
            common.retain(|name| member.protocols.iter().any(|(n, _)| n == name));
        }
        common
    }

    fn join_unknown_member(
        &mut self,
        request: JoinRequest,
        reply: oneshot::Sender<JoinResponse>,
        now: Instant,
    ) {
        let member_id = new_member_id(&request.client_id, request.group_instance_id.as_deref());
        if let Some(instance) = &request.group_instance_id {
            if let Some(old_id) = self.static_members.get(instance).cloned() {
                self.replace_static_member(&old_id, member_id, request, reply, now);
            } else {
                // Static members skip MEMBER_ID_REQUIRED: their instance id already names them.
                self.add_member(member_id, request, reply, now);
            }
            return;
        }
        if request.require_known_member_id {
            if self.members.len() + self.pending_members.len() >= self.limits.max_size {
                let _ = reply.send(JoinResponse::error(ResponseError::GroupMaxSizeReached));
                return;
            }
            self.pending_members
                .insert(member_id.clone(), now + request.session_timeout);
            let mut response = JoinResponse::error(ResponseError::MemberIdRequired);
            response.member_id = member_id;
            let _ = reply.send(response);
            return;
        }
        self.add_member(member_id, request, reply, now);
    }

    fn join_known_member(
        &mut self,
        request: JoinRequest,
        reply: oneshot::Sender<JoinResponse>,
        now: Instant,
    ) {
        let member_id = request.member_id.clone();
        if let Err(error) = self.check_instance(&member_id, request.group_instance_id.as_deref()) {
            let _ = reply.send(JoinResponse::error(error));
            return;
        }
        if self.pending_members.remove(&member_id).is_some() {
            self.add_member(member_id, request, reply, now);
            return;
        }
        let Some(member) = self.members.get(&member_id) else {
            let _ = reply.send(JoinResponse::error(ResponseError::UnknownMemberId));
            return;
        };
        let unchanged = member.same_protocols(&request.protocols);
        let is_leader = self.leader.as_deref() == Some(member_id.as_str());
        match self.state {
            GroupState::PreparingRebalance => {
                self.update_member(&member_id, request, Some(reply), now);
                self.maybe_complete_join(now);
            }
            // The member lost its JoinGroup answer: send it again.
            GroupState::CompletingRebalance if unchanged => {
                let response = self.join_response(&member_id, is_leader);
                let _ = reply.send(response);
            }
            GroupState::Stable if unchanged && !is_leader => {
                let response = self.join_response(&member_id, false);
                let _ = reply.send(response);
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member(&member_id, request, Some(reply), now);
                self.prepare_rebalance(now);
            }
            GroupState::Empty | GroupState::Dead => {
                let _ = reply.send(JoinResponse::error(ResponseError::UnknownMemberId));
            }
        }
    }

    /// A static member came back with a new member id: it takes the old member's place and,
    /// if the group is stable and nothing changed, its old assignment without a rebalance.
    fn replace_static_member(
        &mut self,
        old_id: &str,
        new_id: String,
        request: JoinRequest,
        reply: oneshot::Sender<JoinResponse>,
        now: Instant,
    ) {
        let Some(mut member) = self.members.remove(old_id) else {
            self.static_members
                .remove(request.group_instance_id.as_deref().unwrap_or_default());
            self.add_member(new_id, request, reply, now);
            return;
        };
        // Whoever still uses the old member id is fenced.
        if let Some(old) = member.awaiting_join.take() {
            let _ = old.send(JoinResponse::error(ResponseError::FencedInstanceId));
        }
        if let Some(old) = member.awaiting_sync.take() {
            let _ = old.send(SyncResponse::error(ResponseError::FencedInstanceId));
        }
        member.heartbeat_deadline = now + request.session_timeout;
        self.members.insert(new_id.clone(), member);
        if let Some(instance) = &request.group_instance_id {
            self.static_members.insert(instance.clone(), new_id.clone());
        }
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.clone());
        }
        let was_leader = self.leader.as_deref() == Some(old_id);
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        match self.state {
            GroupState::Stable => {
                self.update_member(&new_id, request, None, now);
                // As Kafka: no rebalance unless the group's protocol would change. The member
                // keeps its assignment; a returning leader learns the members but is told not
                // to reassign (KIP-814; older leaders' SyncGroup in Stable changes nothing).
                if self.select_protocol() == self.protocol_name {
                    let mut response = self.join_response(&new_id, was_leader);
                    response.skip_assignment = was_leader;
                    let _ = reply.send(response);
                } else {
                    self.set_awaiting_join(&new_id, reply);
                    self.prepare_rebalance(now);
                }
            }
            GroupState::PreparingRebalance => {
                self.update_member(&new_id, request, Some(reply), now);
                self.maybe_complete_join(now);
            }
            _ => {
                self.update_member(&new_id, request, Some(reply), now);
                self.prepare_rebalance(now);
            }
        }
    }

    fn set_awaiting_join(&mut self, member_id: &str, reply: oneshot::Sender<JoinResponse>) {
        if let Some(member) = self.members.get_mut(member_id) {
            member.awaiting_join = Some(reply);
        }
    }

    fn add_member(
        &mut self,
        member_id: String,
        request: JoinRequest,
        reply: oneshot::Sender<JoinResponse>,
        now: Instant,
    ) {
        if self.members.len() >= self.limits.max_size {
            let _ = reply.send(JoinResponse::error(ResponseError::GroupMaxSizeReached));
            return;
        }
        if self.members.is_empty() {
            self.protocol_type = Some(request.protocol_type.clone());
        }
        if let Some(instance) = &request.group_instance_id {
            self.static_members
                .insert(instance.clone(), member_id.clone());
        }
        self.members.insert(
            member_id.clone(),
            Member {
                instance_id: request.group_instance_id.clone(),
                client_id: String::new(),
                client_host: String::new(),
                session_timeout: request.session_timeout,
                rebalance_timeout: request.rebalance_timeout,
                protocols: Vec::new(),
                assignment: Bytes::new(),
                awaiting_join: None,
                awaiting_sync: None,
                heartbeat_deadline: now + request.session_timeout,
            },
        );
        self.update_member(&member_id, request, Some(reply), now);
        if self.leader.is_none() {
            self.leader = Some(member_id);
        }
        match self.state {
            GroupState::PreparingRebalance => {
                if let Some(limit) = self.initial_delay_limit {
                    // Each new member of a new group extends the initial delay, up to the limit.
                    self.rebalance_deadline = Some((now + self.limits.initial_delay).min(limit));
                }
                self.maybe_complete_join(now);
            }
            _ => self.prepare_rebalance(now),
        }
    }

    fn update_member(
        &mut self,
        member_id: &str,
        request: JoinRequest,
        reply: Option<oneshot::Sender<JoinResponse>>,
        now: Instant,
    ) {
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        member.client_id = request.client_id;
        member.client_host = request.client_host;
        member.session_timeout = request.session_timeout;
        member.rebalance_timeout = request.rebalance_timeout;
        member.protocols = request.protocols;
        member.heartbeat_deadline = now + member.session_timeout;
        if let Some(reply) = reply
            && let Some(previous) = member.awaiting_join.replace(reply)
        {
            // A second JoinGroup from the same member supersedes the first.
            let _ = previous.send(JoinResponse::error(ResponseError::RebalanceInProgress));
        }
    }

    /// Fails a member's request if its static instance id belongs to another member id.
    pub(super) fn check_instance(
        &self,
        member_id: &str,
        instance: Option<&str>,
    ) -> Result<(), ResponseError> {
        let Some(instance) = instance else {
            return Ok(());
        };
        match self.static_members.get(instance) {
            Some(owner) if owner != member_id => Err(ResponseError::FencedInstanceId),
            Some(_) => Ok(()),
            None if self.members.contains_key(member_id) => Err(ResponseError::FencedInstanceId),
            None => Err(ResponseError::UnknownMemberId),
        }
    }
}

/// A member id as Kafka forms it: the client id (or instance id) and a random suffix.
fn new_member_id(client_id: &str, instance: Option<&str>) -> String {
    let prefix = instance.unwrap_or(client_id);
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}
