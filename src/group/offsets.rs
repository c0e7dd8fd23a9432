//! Committed offsets: an in-memory map per group, made durable in an internal log written
//! through the same writer (group commit, fsync) as topic data. A commit is acknowledged only
//! once its records are committed in that log, so an acknowledged offset survives SIGKILL and,
//! in `fsync` mode, a power loss. Start-up replays the log; a compaction rewrites the live
//! offsets at the log's end and drops the segments before them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use dashmap::DashMap;
use kafka_protocol::ResponseError;
use tokio::sync::RwLock;
use tracing::{info, warn};

use super::offset_log::{OffsetKey, OffsetRecordError, OffsetValue, decode_entry, encode_entry};
use crate::log::LogError;
use crate::log::commit::StorageFailure;
use crate::log::internal_log::{InternalLog, InternalLogError};
use crate::log::partition::Partition;

/// Records per batch when the whole live set is rewritten.
const SNAPSHOT_BATCH_RECORDS: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum OffsetError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Record(#[from] OffsetRecordError),
    #[error(transparent)]
    Storage(#[from] StorageFailure),
    #[error("replay of the offsets log failed: {0}")]
    Replay(String),
    #[error("cannot encode committed offsets: {0}")]
    Encode(String),
}

impl From<InternalLogError> for OffsetError {
    fn from(e: InternalLogError) -> OffsetError {
        match e {
            InternalLogError::Log(e) => OffsetError::Log(e),
            InternalLogError::Storage(e) => OffsetError::Storage(e),
            InternalLogError::Encode(e) => OffsetError::Encode(e),
            InternalLogError::Malformed => OffsetError::Replay(e.to_string()),
        }
    }
}

impl OffsetError {
    /// The Kafka error a client gets for a commit that could not be stored.
    pub fn response_error(&self) -> ResponseError {
        match self {
            OffsetError::Log(LogError::Closed) => ResponseError::CoordinatorNotAvailable,
            OffsetError::Log(_) | OffsetError::Storage(_) => ResponseError::KafkaStorageError,
            OffsetError::Record(_) | OffsetError::Replay(_) | OffsetError::Encode(_) => {
                ResponseError::UnknownServerError
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Committed {
    value: OffsetValue,
    /// Where the record sits in the log: a commit completing late never overwrites a newer one.
    log_offset: i64,
}

type GroupOffsets = HashMap<(String, i32), Committed>;

pub struct OffsetStore {
    groups: DashMap<String, GroupOffsets>,
    log: InternalLog,
    /// Commits share it; a compaction takes it alone, so nothing is appended between the
    /// snapshot it copies and the records it writes.
    compaction: RwLock<()>,
    compacting: AtomicBool,
    /// Approximate bytes the live offsets take in the log.
    live_bytes: AtomicU64,
    segment_bytes: u64,
}

impl OffsetStore {
    /// Replays the log into memory (blocking reads run on the blocking pool).
    pub async fn open(
        log: Arc<Partition>,
        segment_bytes: u64,
    ) -> Result<Arc<OffsetStore>, OffsetError> {
        let log = InternalLog::new(log);
        let reader = log.clone();
        let records = tokio::task::spawn_blocking(move || reader.replay())
            .await
            .map_err(|e| OffsetError::Replay(e.to_string()))??;
        let mut skipped = 0;
        let entries: Vec<_> = records
            .iter()
            .filter_map(|(offset, record)| {
                let decoded = decode_entry(record).map(|(key, value)| (*offset, key, value));
                skipped += usize::from(decoded.is_none());
                decoded
            })
            .collect();
        if skipped > 0 {
            warn!(records = skipped, "offsets log: skipped unreadable records");
        }
        let store = OffsetStore {
            groups: DashMap::new(),
            log,
            compaction: RwLock::new(()),
            compacting: AtomicBool::new(false),
            live_bytes: AtomicU64::new(0),
            segment_bytes,
        };
        let count = entries.len();
        for (log_offset, key, value) in entries {
            store.apply(log_offset, key, value);
        }
        store
            .live_bytes
            .store(store.estimate_live_bytes(), Ordering::Relaxed);
        info!(
            records = count,
            groups = store.groups.len(),
            "replayed committed offsets"
        );
        Ok(Arc::new(store))
    }

    /// Stores commits and deletions (`None`) durably, then makes them visible.
    pub async fn write(
        self: &Arc<Self>,
        entries: Vec<(OffsetKey, Option<OffsetValue>)>,
    ) -> Result<(), OffsetError> {
        if entries.is_empty() {
            return Ok(());
        }
        {
            let _shared = self.compaction.read().await;
            let base = self.append(&entries).await?;
            crate::telemetry::offsets_committed(
                entries.iter().filter(|(_, value)| value.is_some()).count(),
            );
            for (i, (key, value)) in entries.into_iter().enumerate() {
                self.apply(base + i as i64, key, value);
            }
        }
        self.maybe_compact();
        Ok(())
    }

    /// Appends one batch and waits until it is committed; returns its base offset.
    async fn append(
        &self,
        entries: &[(OffsetKey, Option<OffsetValue>)],
    ) -> Result<i64, OffsetError> {
        let records: Vec<_> = entries
            .iter()
            .map(|(key, value)| encode_entry(key, value.as_ref()))
            .collect();
        Ok(self.log.append(&records).await?)
    }

    fn apply(&self, log_offset: i64, key: OffsetKey, value: Option<OffsetValue>) {
        let OffsetKey {
            group,
            topic,
            partition,
        } = key;
        let mut offsets = self.groups.entry(group.clone()).or_default();
        let slot = (topic, partition);
        let newer = offsets
            .get(&slot)
            .is_none_or(|existing| existing.log_offset < log_offset);
        if newer {
            match value {
                Some(value) => {
                    offsets.insert(slot, Committed { value, log_offset });
                }
                None => {
                    offsets.remove(&slot);
                }
            }
        }
        let empty = offsets.is_empty();
        drop(offsets);
        if empty {
            self.groups
                .remove_if(&group, |_, offsets| offsets.is_empty());
        }
    }

    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<OffsetValue> {
        self.groups
            .get(group)?
            .get(&(topic.to_string(), partition))
            .map(|c| c.value.clone())
    }

    /// Every committed offset of a group, sorted by topic and partition.
    pub fn group_offsets(&self, group: &str) -> Vec<(String, i32, OffsetValue)> {
        let mut offsets: Vec<_> = self
            .groups
            .get(group)
            .map(|offsets| {
                offsets
                    .iter()
                    .map(|((topic, partition), c)| (topic.clone(), *partition, c.value.clone()))
                    .collect()
            })
            .unwrap_or_default();
        offsets.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        offsets
    }

    /// Bytes the offsets log holds on disk.
    pub fn log_size(&self) -> u64 {
        self.log.partition().size_bytes()
    }

    pub fn has_group(&self, group: &str) -> bool {
        self.groups.contains_key(group)
    }

    /// Groups that have committed offsets.
    pub fn groups(&self) -> Vec<String> {
        self.groups.iter().map(|g| g.key().clone()).collect()
    }

    /// Tombstones for every offset of `group`; returns how many were deleted.
    pub async fn delete_group(self: &Arc<Self>, group: &str) -> Result<usize, OffsetError> {
        let entries: Vec<(OffsetKey, Option<OffsetValue>)> = self
            .group_offsets(group)
            .into_iter()
            .map(|(topic, partition, _)| {
                let key = OffsetKey {
                    group: group.to_string(),
                    topic,
                    partition,
                };
                (key, None)
            })
            .collect();
        let count = entries.len();
        self.write(entries).await?;
        Ok(count)
    }

    /// Tombstones for offsets committed before `cutoff_ms` by groups `is_idle` says have no
    /// members (Kafka's `offsets.retention.minutes`). Returns how many expired.
    pub async fn expire(
        self: &Arc<Self>,
        cutoff_ms: i64,
        is_idle: impl Fn(&str) -> bool,
    ) -> Result<usize, OffsetError> {
        let mut entries = Vec::new();
        for group in self.groups() {
            if !is_idle(&group) {
                continue;
            }
            for (topic, partition, value) in self.group_offsets(&group) {
                if value.commit_timestamp < cutoff_ms {
                    let key = OffsetKey {
                        group: group.clone(),
                        topic,
                        partition,
                    };
                    entries.push((key, None));
                }
            }
        }
        let count = entries.len();
        self.write(entries).await?;
        Ok(count)
    }

    fn estimate_live_bytes(&self) -> u64 {
        self.groups
            .iter()
            .map(|g| {
                g.value()
                    .iter()
                    .map(|((topic, _), c)| {
                        let metadata = c.value.metadata.as_ref().map_or(0, String::len);
                        (g.key().len() + topic.len() + metadata + 48) as u64
                    })
                    .sum::<u64>()
            })
            .sum()
    }

    /// Starts a compaction in the background once the log holds a segment more than twice
    /// the live offsets.
    fn maybe_compact(self: &Arc<Self>) {
        let live = self.live_bytes.load(Ordering::Relaxed);
        if self.log.partition().size_bytes() < self.segment_bytes + 2 * live {
            return;
        }
        if self.compacting.swap(true, Ordering::AcqRel) {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            match store.compact().await {
                Ok(deleted) => info!(bytes = deleted, "compacted the offsets log"),
                Err(e) => warn!(error = %e, "offsets log compaction failed"),
            }
            store.compacting.store(false, Ordering::Release);
        });
    }

    /// Rewrites every live offset at the log's end, then drops the segments before it: what
    /// replay sees afterwards is the same state.
    async fn compact(&self) -> Result<u64, OffsetError> {
        let _exclusive = self.compaction.write().await;
        let start = self.log.partition().watermarks().log_end_offset;
        let live: Vec<(OffsetKey, Option<OffsetValue>)> = self
            .groups
            .iter()
            .flat_map(|g| {
                let group = g.key().clone();
                g.value()
                    .iter()
                    .map(|((topic, partition), c)| {
                        let key = OffsetKey {
                            group: group.clone(),
                            topic: topic.clone(),
                            partition: *partition,
                        };
                        (key, Some(c.value.clone()))
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        for chunk in live.chunks(SNAPSHOT_BATCH_RECORDS) {
            let base = self.append(chunk).await?;
            for (i, (key, value)) in chunk.iter().enumerate() {
                self.apply(base + i as i64, key.clone(), value.clone());
            }
        }
        self.live_bytes
            .store(self.estimate_live_bytes(), Ordering::Relaxed);
        Ok(self.log.partition().delete_segments_before(start))
    }
}
