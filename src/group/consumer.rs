//! The consumer group protocol (KIP-848): members only heartbeat (ConsumerGroupHeartbeat),
//! the broker computes the assignment. The group epoch moves when membership, subscriptions
//! or the subscribed topics' partition counts change; the target assignment is computed for
//! it; each member then converges at its own heartbeats: partitions it must give up are
//! revoked first (its epoch stays), and it only reaches the new epoch with partitions no other
//! member still holds. Partitions are therefore never owned by two members at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kafka_protocol::ResponseError;
use regex::Regex;
use tokio::time::{Duration, Instant};
use uuid::Uuid;

use super::assignor::{
    self, ASSIGNORS, Assignment, AssignorMember, intersect, is_subset, minus, union,
};
use super::messages::{ConsumerHeartbeat, ConsumerHeartbeatResponse, TopicsSnapshot};

/// Member epoch of a heartbeat that leaves the group.
pub const LEAVE_EPOCH: i32 = -1;
/// Member epoch of a static member leaving temporarily (it keeps its partitions until its
/// session times out, to get them back when it returns).
pub const STATIC_LEAVE_EPOCH: i32 = -2;

#[derive(Debug, Clone, Copy)]
pub struct ConsumerGroupConfig {
    pub session_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub max_size: usize,
}

#[derive(Debug)]
struct Member {
    instance_id: Option<String>,
    rack_id: Option<String>,
    client_id: String,
    client_host: String,
    rebalance_timeout: Duration,
    topic_names: Vec<String>,
    topic_regex: Option<(String, Regex)>,
    server_assignor: Option<String>,
    epoch: i32,
    previous_epoch: i32,
    /// Partitions the member may consume.
    assigned: Assignment,
    /// Partitions taken from the member that it has not confirmed releasing yet.
    revoking: Assignment,
    session_deadline: Instant,
    revocation_deadline: Option<Instant>,
    /// The assignment the member was last sent (responses carry it only when it changes).
    sent: Option<Assignment>,
    /// A static member that left temporarily (epoch -2).
    away: bool,
}

/// One member as ConsumerGroupDescribe shows it.
#[derive(Debug, Clone)]
pub struct ConsumerMemberSummary {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub assignment: Assignment,
    pub target_assignment: Assignment,
}

#[derive(Debug, Clone)]
pub struct ConsumerGroupSummary {
    pub state: &'static str,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub members: Vec<ConsumerMemberSummary>,
}

#[derive(Debug)]
pub struct ConsumerGroup {
    config: ConsumerGroupConfig,
    group_epoch: i32,
    assignment_epoch: i32,
    members: BTreeMap<String, Member>,
    static_members: HashMap<String, String>,
    target: BTreeMap<String, Assignment>,
    /// Subscribed topics (name → id, partitions) the group epoch was last computed with.
    metadata: BTreeMap<String, (Uuid, i32)>,
    assignor: String,
}

impl ConsumerGroup {
    pub fn new(config: ConsumerGroupConfig) -> ConsumerGroup {
        ConsumerGroup {
            config,
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            target: BTreeMap::new(),
            metadata: BTreeMap::new(),
            assignor: assignor::UNIFORM.to_string(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.group_epoch > self.assignment_epoch {
            "Assigning"
        } else if self.members.iter().any(|(id, m)| {
            m.epoch != self.assignment_epoch
                || !m.revoking.is_empty()
                || self.target.get(id).unwrap_or(&Assignment::new()) != &m.assigned
        }) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    pub fn summary(&self) -> ConsumerGroupSummary {
        ConsumerGroupSummary {
            state: self.state(),
            group_epoch: self.group_epoch,
            assignment_epoch: self.assignment_epoch,
            assignor: self.assignor.clone(),
            members: self
                .members
                .iter()
                .map(|(id, m)| ConsumerMemberSummary {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    member_epoch: m.epoch,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    subscribed_topic_names: m.topic_names.clone(),
                    subscribed_topic_regex: m.topic_regex.as_ref().map(|(text, _)| text.clone()),
                    assignment: m.assigned.clone(),
                    target_assignment: self.target.get(id).cloned().unwrap_or_default(),
                })
                .collect(),
        }
    }

    /// Topic names the members subscribe to, for OffsetDelete.
    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        self.metadata.keys().cloned().collect()
    }

    pub fn heartbeat(
        &mut self,
        request: ConsumerHeartbeat,
        now: Instant,
    ) -> ConsumerHeartbeatResponse {
        if let Err((error, message)) = validate(&request) {
            return ConsumerHeartbeatResponse::error(error, message);
        }
        if request.member_epoch == LEAVE_EPOCH || request.member_epoch == STATIC_LEAVE_EPOCH {
            return self.leave(&request.member_id, request.member_epoch, now);
        }
        let member_id = if request.member_id.is_empty() {
            Uuid::new_v4().to_string()
        } else {
            request.member_id.clone()
        };
        let mut changed = if request.member_epoch == 0 {
            match self.admit(&member_id, &request, now) {
                Ok(changed) => changed,
                Err(error) => return ConsumerHeartbeatResponse::error(error, None),
            }
        } else {
            let Some(member) = self.members.get(&member_id).filter(|m| !m.away) else {
                return ConsumerHeartbeatResponse::error(ResponseError::UnknownMemberId, None);
            };
            let lost_response = request.member_epoch == member.previous_epoch
                && request
                    .owned
                    .as_ref()
                    .is_none_or(|owned| is_subset(owned, &member.assigned));
            if request.member_epoch != member.epoch && !lost_response {
                return ConsumerHeartbeatResponse::error(ResponseError::FencedMemberEpoch, None);
            }
            false
        };
        changed |= self.update_member(&member_id, &request, now);
        changed |= self.refresh_metadata(&request.topics);
        if changed {
            self.group_epoch += 1;
            crate::telemetry::rebalance("consumer");
        }
        if self.group_epoch > self.assignment_epoch {
            self.compute_target(&request.topics);
        }
        self.reconcile(&member_id, request.owned.as_ref(), now);
        let Some(member) = self.members.get_mut(&member_id) else {
            return ConsumerHeartbeatResponse::error(ResponseError::UnknownMemberId, None);
        };
        let send_assignment = request.member_epoch == 0
            || member.sent.as_ref() != Some(&member.assigned)
            || request
                .owned
                .as_ref()
                .is_some_and(|owned| *owned != member.assigned);
        let assignment = send_assignment.then(|| member.assigned.clone());
        if send_assignment {
            member.sent = Some(member.assigned.clone());
        }
        ConsumerHeartbeatResponse {
            error: None,
            error_message: None,
            member_id: Some(member_id),
            member_epoch: member.epoch,
            heartbeat_interval_ms: self.config.heartbeat_interval.as_millis() as i32,
            assignment,
        }
    }

    /// A heartbeat with epoch 0: a new member, a member that lost its state, or a static
    /// member coming back. Returns whether the membership changed.
    fn admit(
        &mut self,
        member_id: &str,
        request: &ConsumerHeartbeat,
        now: Instant,
    ) -> Result<bool, ResponseError> {
        if let Some(instance) = &request.instance_id
            && let Some(previous) = self.static_members.get(instance).cloned()
            && previous != member_id
        {
            let away = self.members.get(&previous).is_some_and(|m| m.away);
            if !away {
                return Err(ResponseError::UnreleasedInstanceId);
            }
            // The static member returns under a new member id with its old assignment.
            if let Some(mut member) = self.members.remove(&previous) {
                member.away = false;
                member.sent = None;
                member.session_deadline = now + self.config.session_timeout;
                self.members.insert(member_id.to_string(), member);
            }
            if let Some(target) = self.target.remove(&previous) {
                self.target.insert(member_id.to_string(), target);
            }
            self.static_members
                .insert(instance.clone(), member_id.to_string());
            return Ok(false);
        }
        if let Some(member) = self.members.get_mut(member_id) {
            // A member that rejoins from scratch holds nothing any more.
            member.assigned.clear();
            member.revoking.clear();
            member.revocation_deadline = None;
            member.epoch = 0;
            member.sent = None;
            member.away = false;
            return Ok(true);
        }
        if self.members.len() >= self.config.max_size {
            return Err(ResponseError::GroupMaxSizeReached);
        }
        self.members.insert(
            member_id.to_string(),
            Member {
                instance_id: request.instance_id.clone(),
                rack_id: None,
                client_id: String::new(),
                client_host: String::new(),
                rebalance_timeout: Duration::ZERO,
                topic_names: Vec::new(),
                topic_regex: None,
                server_assignor: None,
                epoch: 0,
                previous_epoch: -1,
                assigned: Assignment::new(),
                revoking: Assignment::new(),
                session_deadline: now + self.config.session_timeout,
                revocation_deadline: None,
                sent: None,
                away: false,
            },
        );
        if let Some(instance) = &request.instance_id {
            self.static_members
                .insert(instance.clone(), member_id.to_string());
        }
        Ok(true)
    }

    /// Applies the fields a heartbeat carries (null: unchanged); true if the subscription
    /// or assignor changed.
    fn update_member(
        &mut self,
        member_id: &str,
        request: &ConsumerHeartbeat,
        now: Instant,
    ) -> bool {
        let session_timeout = self.config.session_timeout;
        let Some(member) = self.members.get_mut(member_id) else {
            return false;
        };
        let mut changed = false;
        member.session_deadline = now + session_timeout;
        member.client_id = request.client_id.clone();
        member.client_host = request.client_host.clone();
        if request.rack_id.is_some() {
            member.rack_id = request.rack_id.clone();
        }
        if request.rebalance_timeout_ms >= 0 {
            member.rebalance_timeout = Duration::from_millis(request.rebalance_timeout_ms as u64);
        }
        if let Some(names) = &request.subscribed_topic_names {
            let mut names = names.clone();
            names.sort();
            names.dedup();
            if names != member.topic_names {
                member.topic_names = names;
                changed = true;
            }
        }
        if let Some(pattern) = &request.subscribed_topic_regex {
            let current = member.topic_regex.as_ref().map(|(text, _)| text.as_str());
            if pattern.is_empty() {
                changed |= member.topic_regex.take().is_some();
            } else if current != Some(pattern.as_str())
                && let Ok(regex) = Regex::new(&format!("^(?:{pattern})$"))
            {
                member.topic_regex = Some((pattern.clone(), regex));
                changed = true;
            }
        }
        if request.server_assignor.is_some() && request.server_assignor != member.server_assignor {
            member.server_assignor = request.server_assignor.clone();
            changed = true;
        }
        changed
    }

    /// Recomputes the subscribed topics' ids and partition counts; true if they changed.
    fn refresh_metadata(&mut self, topics: &TopicsSnapshot) -> bool {
        let mut subscribed = BTreeMap::new();
        for member in self.members.values() {
            for name in &member.topic_names {
                if let Some(info) = topics.get(name) {
                    subscribed.insert(name.clone(), *info);
                }
            }
            if let Some((_, regex)) = &member.topic_regex {
                for (name, info) in topics.iter() {
                    if regex.is_match(name) {
                        subscribed.insert(name.clone(), *info);
                    }
                }
            }
        }
        if subscribed == self.metadata {
            return false;
        }
        self.metadata = subscribed;
        true
    }

    fn compute_target(&mut self, topics: &TopicsSnapshot) {
        // The group uses the assignor its members ask for most (uniform by default).
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(name) = &member.server_assignor {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        self.assignor = votes
            .into_iter()
            .max_by_key(|(name, count)| (*count, *name == assignor::UNIFORM))
            .map_or(assignor::UNIFORM, |(name, _)| name)
            .to_string();
        let partitions: BTreeMap<Uuid, i32> = self.metadata.values().copied().collect();
        let inputs: Vec<AssignorMember<'_>> = self
            .members
            .iter()
            .map(|(id, m)| {
                let mut ids = BTreeSet::new();
                for name in &m.topic_names {
                    if let Some((topic_id, _)) = topics.get(name) {
                        ids.insert(*topic_id);
                    }
                }
                if let Some((_, regex)) = &m.topic_regex {
                    for (name, (topic_id, _)) in topics.iter() {
                        if regex.is_match(name) {
                            ids.insert(*topic_id);
                        }
                    }
                }
                AssignorMember {
                    member_id: id,
                    topics: ids,
                    previous: self.target.get(id),
                }
            })
            .collect();
        self.target = assignor::assign(&self.assignor, &inputs, &partitions);
        self.assignment_epoch = self.group_epoch;
    }

    /// Moves one member toward its target: revoke first, then take what is free.
    fn reconcile(&mut self, member_id: &str, owned: Option<&Assignment>, now: Instant) {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let held_by_others: Assignment = self
            .members
            .iter()
            .filter(|(id, _)| id.as_str() != member_id)
            .fold(Assignment::new(), |acc, (_, m)| {
                union(&acc, &union(&m.assigned, &m.revoking))
            });
        let assignment_epoch = self.assignment_epoch;
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        if let Some(owned) = owned {
            // Whatever the member no longer reports owning is released.
            member.revoking = intersect(&member.revoking, owned);
        }
        if !member.revoking.is_empty() {
            return;
        }
        member.revocation_deadline = None;
        if member.epoch == assignment_epoch && member.assigned == target {
            return;
        }
        let to_revoke = minus(&member.assigned, &target);
        if !to_revoke.is_empty() {
            member.assigned = intersect(&member.assigned, &target);
            member.revoking = to_revoke;
            member.revocation_deadline = Some(now + member.rebalance_timeout);
            return;
        }
        member.assigned = minus(&target, &held_by_others);
        if member.epoch != assignment_epoch {
            member.previous_epoch = member.epoch;
            member.epoch = assignment_epoch;
        }
    }

    fn leave(&mut self, member_id: &str, epoch: i32, now: Instant) -> ConsumerHeartbeatResponse {
        let Some(member) = self.members.get_mut(member_id) else {
            return ConsumerHeartbeatResponse::error(ResponseError::UnknownMemberId, None);
        };
        if epoch == STATIC_LEAVE_EPOCH && member.instance_id.is_some() {
            // Keeps its partitions until the session times out, so a restart gets them back.
            member.away = true;
            member.session_deadline = now + self.config.session_timeout;
        } else {
            self.remove_member(member_id);
        }
        ConsumerHeartbeatResponse {
            error: None,
            error_message: None,
            member_id: Some(member_id.to_string()),
            member_epoch: epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        }
    }

    fn remove_member(&mut self, member_id: &str) {
        if let Some(member) = self.members.remove(member_id) {
            if let Some(instance) = member.instance_id
                && self.static_members.get(&instance).map(String::as_str) == Some(member_id)
            {
                self.static_members.remove(&instance);
            }
            self.target.remove(member_id);
            self.group_epoch += 1;
            crate::telemetry::rebalance("consumer");
        }
    }

    /// OffsetCommit from a member of this group: its epoch must be current.
    pub fn validate_commit(&self, member_id: &str, epoch: i32) -> Result<(), ResponseError> {
        if self.members.is_empty() && epoch < 0 {
            return Ok(());
        }
        let member = self
            .members
            .get(member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        if epoch != member.epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.members
            .values()
            .flat_map(|m| [Some(m.session_deadline), m.revocation_deadline])
            .flatten()
            .min()
    }

    /// Removes members whose session expired or that did not revoke in time.
    pub fn on_timer(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| {
                m.session_deadline <= now || m.revocation_deadline.is_some_and(|d| d <= now)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            tracing::info!(member = %id, "consumer group member fenced: session or revocation timeout");
            self.remove_member(&id);
        }
        // Targets are recomputed on the next heartbeat; the state shows Assigning until then.
    }
}

/// The checks Kafka makes before a heartbeat touches the group.
fn validate(request: &ConsumerHeartbeat) -> Result<(), (ResponseError, Option<String>)> {
    let invalid = |text: &str| Err((ResponseError::InvalidRequest, Some(text.to_string())));
    if request.member_epoch < STATIC_LEAVE_EPOCH {
        return invalid("member epoch must be -2, -1, 0 or positive");
    }
    if request.member_id.is_empty() && !request.server_generates_member_id {
        return invalid("member id must be set (ConsumerGroupHeartbeat v1+)");
    }
    if request.member_id.is_empty() && request.member_epoch != 0 {
        return invalid("member id must be set when the member epoch is not 0");
    }
    if request.member_epoch == 0 {
        if request.rebalance_timeout_ms < 0 {
            return invalid("rebalance timeout must be set when joining");
        }
        if request.subscribed_topic_names.is_none() && request.subscribed_topic_regex.is_none() {
            return invalid("subscribed topics must be set when joining");
        }
        if request.owned.as_ref().is_some_and(|o| !o.is_empty()) {
            return invalid("owned partitions must be empty when joining");
        }
    }
    if let Some(pattern) = &request.subscribed_topic_regex
        && !pattern.is_empty()
        && Regex::new(pattern).is_err()
    {
        return Err((
            ResponseError::InvalidRegularExpression,
            Some(format!("invalid regular expression {pattern}")),
        ));
    }
    if let Some(name) = &request.server_assignor
        && !ASSIGNORS.contains(&name.as_str())
    {
        return Err((
            ResponseError::UnsupportedAssignor,
            Some(format!("assignor {name} is not one of {ASSIGNORS:?}")),
        ));
    }
    Ok(())
}
