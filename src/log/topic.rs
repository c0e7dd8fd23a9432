//! A topic as the broker holds it (its id, config and partitions), the errors of topic
//! administration and Kafka's rules for topic names.

use std::sync::{Arc, RwLock};

use kafka_protocol::ResponseError;
use thiserror::Error;
use uuid::Uuid;

use super::LogError;
use super::partition::Partition;
use super::topic_config::{TopicConfig, TopicConfigError};
use crate::metadata::MetadataError;

/// Kafka's limit on topic name length.
const MAX_TOPIC_NAME_LEN: usize = 249;

#[derive(Debug, Error)]
pub enum TopicError {
    #[error("topic name `{0}` is invalid: {1}")]
    InvalidName(String, &'static str),
    #[error("topic `{0}` already exists")]
    AlreadyExists(String),
    #[error("topic `{0}` collides with existing topic `{1}` ('.' and '_' are interchangeable)")]
    Collides(String, String),
    #[error("unknown topic `{0}`")]
    Unknown(String),
    #[error("invalid number of partitions: {0}")]
    InvalidPartitions(String),
    #[error("replication factor {0} is not possible on a single node")]
    InvalidReplicationFactor(i16),
    #[error(transparent)]
    Config(#[from] TopicConfigError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

impl TopicError {
    pub fn error_code(&self) -> i16 {
        match self {
            TopicError::InvalidName(..) | TopicError::Collides(..) => {
                ResponseError::InvalidTopicException.code()
            }
            TopicError::AlreadyExists(_) => ResponseError::TopicAlreadyExists.code(),
            TopicError::Unknown(_) => ResponseError::UnknownTopicOrPartition.code(),
            TopicError::InvalidPartitions(_) => ResponseError::InvalidPartitions.code(),
            TopicError::InvalidReplicationFactor(_) => {
                ResponseError::InvalidReplicationFactor.code()
            }
            TopicError::Config(_) => ResponseError::InvalidConfig.code(),
            TopicError::Log(e) => e.error_code(),
            TopicError::Metadata(_) => ResponseError::KafkaStorageError.code(),
        }
    }
}

/// Kafka's topic name rules: 1..=249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let invalid = |reason| Err(TopicError::InvalidName(name.to_string(), reason));
    if name.is_empty() {
        return invalid("empty");
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are not allowed");
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return invalid("longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

#[derive(Debug)]
pub struct Topic {
    pub name: String,
    pub id: Uuid,
    pub(super) config: RwLock<Arc<TopicConfig>>,
    pub(super) partitions: RwLock<Vec<Arc<Partition>>>,
}

impl Topic {
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn partition(&self, index: i32) -> Option<Arc<Partition>> {
        let partitions = self.partitions.read().unwrap_or_else(|e| e.into_inner());
        usize::try_from(index)
            .ok()
            .and_then(|i| partitions.get(i).cloned())
    }

    pub fn partition_count(&self) -> i32 {
        self.partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len() as i32
    }

    pub fn config(&self) -> Arc<TopicConfig> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_a-b").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a b").is_err());
        assert!(validate_topic_name("ünicode").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
    }
}
