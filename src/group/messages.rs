//! What the group coordinator is asked and answers, free of wire-format types: handlers
//! translate Kafka requests into these and back.

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::time::Duration;

/// The classic group states, named as Kafka reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// Limits from the broker configuration.
#[derive(Debug, Clone, Copy)]
pub struct GroupLimits {
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
    pub initial_delay: Duration,
    pub max_size: usize,
    /// Consumer groups (KIP-848): the session timeout and heartbeat interval are the broker's.
    pub consumer_session_timeout: Duration,
    pub consumer_heartbeat_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Empty for a member joining for the first time.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    /// Supported protocols in order of preference, with their metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new member first gets its id with MEMBER_ID_REQUIRED (KIP-394).
    pub require_known_member_id: bool,
}

#[derive(Debug, Clone, Default)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, Default)]
pub struct JoinResponse {
    pub error: Option<ResponseError>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub skip_assignment: bool,
    pub member_id: String,
    /// Filled for the leader only.
    pub members: Vec<JoinedMember>,
}

impl JoinResponse {
    pub fn error(error: ResponseError) -> JoinResponse {
        JoinResponse {
            error: Some(error),
            generation_id: -1,
            ..JoinResponse::default()
        }
    }
}

#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's assignment per member id; empty from followers.
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, Default)]
pub struct SyncResponse {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    pub fn error(error: ResponseError) -> SyncResponse {
        SyncResponse {
            error: Some(error),
            ..SyncResponse::default()
        }
    }
}

#[derive(Debug, Clone)]
pub struct HeartbeatRequest {
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LeaveMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// Who commits offsets, checked against the group's generation.
#[derive(Debug, Clone)]
pub struct CommitIdentity {
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// Every topic of the broker: name → (topic id, partition count), taken for a heartbeat.
pub type TopicsSnapshot = std::sync::Arc<std::collections::BTreeMap<String, (uuid::Uuid, i32)>>;

/// A ConsumerGroupHeartbeat (KIP-848). `None` fields are "unchanged since the last one".
#[derive(Debug, Clone)]
pub struct ConsumerHeartbeat {
    /// Empty from a v0 client joining: the coordinator names it.
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1: unchanged.
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Option<Vec<String>>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// The partitions the member owns, by topic id.
    pub owned: Option<super::assignor::Assignment>,
    pub client_id: String,
    pub client_host: String,
    pub topics: TopicsSnapshot,
    /// v0: the coordinator generates member ids; v1+ (KIP-1082) the client does.
    pub server_generates_member_id: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ConsumerHeartbeatResponse {
    pub error: Option<ResponseError>,
    pub error_message: Option<String>,
    pub member_id: Option<String>,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// Sent only when it changed.
    pub assignment: Option<super::assignor::Assignment>,
}

impl ConsumerHeartbeatResponse {
    pub fn error(error: ResponseError, message: Option<String>) -> ConsumerHeartbeatResponse {
        ConsumerHeartbeatResponse {
            error: Some(error),
            error_message: message,
            ..ConsumerHeartbeatResponse::default()
        }
    }
}
