//! One group's actor: a task that owns the group's state, applies its commands in arrival
//! order and wakes for its deadlines, so a group's requests never contend on a lock. The
//! group is classic or consumer (KIP-848); an empty group takes the protocol of whoever
//! joins next.

use std::collections::BTreeSet;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::classic::{ClassicGroup, GroupSummary};
use super::consumer::{ConsumerGroup, ConsumerGroupConfig, ConsumerGroupSummary};
use super::messages::{
    CommitIdentity, ConsumerHeartbeat, ConsumerHeartbeatResponse, GroupLimits, GroupState,
    HeartbeatRequest, JoinRequest, JoinResponse, LeaveMember, SyncRequest, SyncResponse,
};
use crate::shutdown::Shutdown;

/// The protocol type of Kafka consumers (whose metadata names the subscribed topics).
const CONSUMER_PROTOCOL: &str = "consumer";

pub enum Command {
    Join(JoinRequest, oneshot::Sender<JoinResponse>),
    Sync(SyncRequest, oneshot::Sender<SyncResponse>),
    Heartbeat(HeartbeatRequest, oneshot::Sender<Option<ResponseError>>),
    Leave(
        Vec<LeaveMember>,
        oneshot::Sender<Vec<Option<ResponseError>>>,
    ),
    ConsumerHeartbeat(
        ConsumerHeartbeat,
        oneshot::Sender<ConsumerHeartbeatResponse>,
    ),
    Describe(oneshot::Sender<GroupDescription>),
    /// The topics the members consume (OffsetDelete), or why that cannot be told.
    SubscribedTopics(oneshot::Sender<Result<BTreeSet<String>, ResponseError>>),
    ValidateCommit(CommitIdentity, oneshot::Sender<Result<(), ResponseError>>),
    /// DeleteGroups (and the sweeper): the group dies if it is empty.
    Delete(oneshot::Sender<Result<(), ResponseError>>),
}

/// What a group looks like from outside.
#[derive(Debug, Clone)]
pub enum GroupDescription {
    Classic(GroupSummary),
    Consumer(ConsumerGroupSummary),
}

impl GroupDescription {
    pub fn state(&self) -> &'static str {
        match self {
            GroupDescription::Classic(summary) => summary.state.as_str(),
            GroupDescription::Consumer(summary) => summary.state,
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            GroupDescription::Classic(summary) => summary.members.is_empty(),
            GroupDescription::Consumer(summary) => summary.members.is_empty(),
        }
    }

    pub fn member_count(&self) -> usize {
        match self {
            GroupDescription::Classic(summary) => summary.members.len(),
            GroupDescription::Consumer(summary) => summary.members.len(),
        }
    }

    pub fn is_dead(&self) -> bool {
        matches!(self, GroupDescription::Classic(s) if s.state == GroupState::Dead)
    }

    pub fn protocol_type(&self) -> String {
        match self {
            GroupDescription::Classic(summary) => summary.protocol_type.clone(),
            GroupDescription::Consumer(_) => CONSUMER_PROTOCOL.to_string(),
        }
    }

    /// ListGroups' group type.
    pub fn group_type(&self) -> &'static str {
        match self {
            GroupDescription::Classic(_) => "classic",
            GroupDescription::Consumer(_) => "consumer",
        }
    }
}

enum Group {
    Classic(ClassicGroup),
    Consumer(ConsumerGroup),
}

pub fn spawn(group_id: String, limits: GroupLimits, shutdown: Shutdown) -> mpsc::Sender<Command> {
    let (tx, rx) = mpsc::channel(GROUP_QUEUE);
    let actor = Actor {
        group: Group::Classic(ClassicGroup::new(limits)),
        limits,
    };
    tokio::spawn(actor.run(group_id, rx, shutdown));
    tx
}

/// Requests queued per group before senders wait.
const GROUP_QUEUE: usize = 256;

struct Actor {
    group: Group,
    limits: GroupLimits,
}

impl Actor {
    async fn run(
        mut self,
        group_id: String,
        mut commands: mpsc::Receiver<Command>,
        shutdown: Shutdown,
    ) {
        loop {
            let deadline = match &self.group {
                Group::Classic(group) => group.next_deadline(),
                Group::Consumer(group) => group.next_deadline(),
            };
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
                    if !self.handle(command, Instant::now()) {
                        break;
                    }
                }
                _ = timer => match &mut self.group {
                    Group::Classic(group) => group.on_timer(Instant::now()),
                    Group::Consumer(group) => group.on_timer(Instant::now()),
                },
                _ = shutdown.cancelled() => {
                    if let Group::Classic(group) = &mut self.group {
                        group.abort_waiting(ResponseError::CoordinatorNotAvailable);
                    }
                    break;
                }
            }
        }
        tracing::debug!(group = %group_id, "group actor ended");
    }

    /// The group as classic, converting an empty consumer group.
    fn classic(&mut self) -> Option<&mut ClassicGroup> {
        if let Group::Consumer(group) = &self.group
            && group.is_empty()
        {
            self.group = Group::Classic(ClassicGroup::new(self.limits));
        }
        match &mut self.group {
            Group::Classic(group) => Some(group),
            Group::Consumer(_) => None,
        }
    }

    /// The group as a consumer group, converting an empty classic group.
    fn consumer(&mut self) -> Option<&mut ConsumerGroup> {
        if let Group::Classic(group) = &self.group
            && group.is_empty()
            && group.state() != GroupState::Dead
        {
            self.group = Group::Consumer(ConsumerGroup::new(ConsumerGroupConfig {
                session_timeout: self.limits.consumer_session_timeout,
                heartbeat_interval: self.limits.consumer_heartbeat_interval,
                max_size: self.limits.max_size,
            }));
        }
        match &mut self.group {
            Group::Consumer(group) => Some(group),
            Group::Classic(_) => None,
        }
    }

    /// Applies one command; false once the group is dead and the actor should end.
    fn handle(&mut self, command: Command, now: Instant) -> bool {
        match command {
            Command::Join(request, reply) => match self.classic() {
                Some(group) => group.join(request, reply, now),
                None => {
                    let _ = reply.send(JoinResponse::error(
                        ResponseError::InconsistentGroupProtocol,
                    ));
                }
            },
            Command::Sync(request, reply) => match self.classic() {
                Some(group) => group.sync(request, reply, now),
                None => {
                    let _ = reply.send(SyncResponse::error(ResponseError::UnknownMemberId));
                }
            },
            Command::Heartbeat(request, reply) => {
                let result = match self.classic() {
                    Some(group) => group.heartbeat(request, now),
                    None => Some(ResponseError::UnknownMemberId),
                };
                let _ = reply.send(result);
            }
            Command::Leave(members, reply) => {
                let count = members.len();
                let result = match self.classic() {
                    Some(group) => group.leave(members, now),
                    None => vec![Some(ResponseError::UnknownMemberId); count],
                };
                let _ = reply.send(result);
            }
            Command::ConsumerHeartbeat(request, reply) => {
                let response = match self.consumer() {
                    Some(group) => group.heartbeat(request, now),
                    None => ConsumerHeartbeatResponse::error(
                        ResponseError::GroupIdNotFound,
                        Some("the group is a classic group with members".into()),
                    ),
                };
                let _ = reply.send(response);
            }
            Command::Describe(reply) => {
                let description = match &self.group {
                    Group::Classic(group) => GroupDescription::Classic(group.summary()),
                    Group::Consumer(group) => GroupDescription::Consumer(group.summary()),
                };
                let _ = reply.send(description);
            }
            Command::SubscribedTopics(reply) => {
                let result = match &self.group {
                    Group::Classic(group) if group.state() == GroupState::Empty => {
                        Ok(BTreeSet::new())
                    }
                    Group::Classic(group) if group.protocol_type() != Some(CONSUMER_PROTOCOL) => {
                        Err(ResponseError::NonEmptyGroup)
                    }
                    Group::Classic(group) => Ok(group
                        .member_metadata()
                        .iter()
                        .flat_map(subscribed_topics)
                        .collect()),
                    Group::Consumer(group) => Ok(group.subscribed_topics()),
                };
                let _ = reply.send(result);
            }
            Command::ValidateCommit(identity, reply) => {
                let result = match &self.group {
                    Group::Classic(group) => group.validate_commit(
                        &identity.member_id,
                        identity.group_instance_id.as_deref(),
                        identity.generation_id,
                    ),
                    Group::Consumer(group) => {
                        group.validate_commit(&identity.member_id, identity.generation_id)
                    }
                };
                let _ = reply.send(result);
            }
            Command::Delete(reply) => {
                let result = match &mut self.group {
                    Group::Classic(group) => group.mark_dead(),
                    Group::Consumer(group) if group.is_empty() => Ok(()),
                    Group::Consumer(_) => Err(ResponseError::NonEmptyGroup),
                };
                let dead = result.is_ok();
                let _ = reply.send(result);
                return !dead;
            }
        }
        true
    }
}

/// The topics a classic consumer's subscription metadata names (none if unreadable).
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
