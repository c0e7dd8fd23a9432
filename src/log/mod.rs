//! The stream engine: every topic-partition is a segmented log on disk, written by its log
//! directory's background writer with group commit.
//!
//! - `batch.rs`: record batch validation and patching; `records.rs`: records inside a batch.
//! - `segment.rs`, `index.rs`: segment files and their sparse indexes; recovery of a torn tail.
//! - `commit.rs`: persistence flags and the commit step that advances the high watermark.
//! - `writer/`: the log directory's background writer: write stage, sync stage (group
//!   commit), their helper threads, and the periodic flushes and checkpoints.
//! - `partition.rs`: offset assignment and markers; `partition/read.rs`: reads bounded by the
//!   high watermark or last stable offset; `partition/retention.rs`: segment deletion.
//! - `producer_state.rs`: idempotent producers' epochs and sequences (deduplication).
//! - `transactions.rs`: open and aborted transactions per partition, the last stable offset;
//!   `control.rs`: the marker batches that end them.
//! - `manager.rs`: the topics of this broker, their creation, deletion and recovery;
//!   `topic.rs`: one topic, the errors of topic administration, topic name rules.
//! - `topic_config.rs`: topic-level configs under Kafka's names.

pub mod batch;
pub mod commit;
pub mod control;
pub mod index;
pub mod internal_log;
pub mod manager;
pub mod partition;
pub mod producer_state;
pub mod record_set;
pub mod records;
pub mod segment;
pub mod tail_cache;
pub mod topic;
pub mod topic_config;
pub mod transactions;
pub mod writer;

#[cfg(test)]
mod power_loss_tests;

use kafka_protocol::ResponseError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum LogError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("the partition refuses writes after a storage failure")]
    Poisoned,
    #[error("the partition is closed")]
    Closed,
    #[error("offset out of range")]
    OffsetOutOfRange,
    #[error(transparent)]
    Sequence(#[from] producer_state::SequenceError),
}

impl LogError {
    /// The Kafka error code a response carries for this error.
    pub fn error_code(&self) -> i16 {
        match self {
            LogError::Io { .. } | LogError::Poisoned => ResponseError::KafkaStorageError.code(),
            LogError::Closed => ResponseError::UnknownTopicOrPartition.code(),
            LogError::OffsetOutOfRange => ResponseError::OffsetOutOfRange.code(),
            LogError::Sequence(e) => e.error_code(),
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch (Kafka timestamps).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
