//! One topic-partition: a segmented log, its offset sequencer, its background writer and its
//! commit queue (high watermark). `Partition` is what handlers hold; `PartitionLog` is the part
//! the writer task shares.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{Semaphore, oneshot, watch};
use tracing::{error, warn};

use super::commit::{CommitQueue, PendingAppend, Persistence};
use super::producer_state::{ActiveProducer, ProducerStates};
use super::segment::{
    AppendBatch, CheckpointError, RecoveryReport, Segment, SegmentRead, SegmentRole,
    parse_segment_file_name,
};
use super::tail_cache::{TailBudget, TailCache};
use super::topic_config::TopicConfig;
use super::transactions::PartitionTxns;
use super::writer::{WriterCommand, WriterHandle};
use super::{LogError, now_ms};
use crate::config::{Durability, WritePath};
use crate::disk::Disk;

mod append;
mod read;
mod retention;

pub use read::{Isolation, ReadResult};

/// The leader epoch this single node writes into batches and reports in Metadata.
pub const LEADER_EPOCH: i32 = 0;

/// Settings every partition of the broker shares.
#[derive(Debug, Clone)]
pub struct PartitionOptions {
    /// The storage every file operation goes through.
    pub disk: Arc<dyn Disk>,
    /// The log directory's writer thread.
    pub writer: WriterHandle,
    pub durability: Durability,
    pub write_path: WritePath,
    /// page_cache mode with direct log writes: appends go to the background writer (group
    /// write, acknowledged once written, fsynced by the periodic flush) instead of being
    /// copied into the page cache by the request handler.
    pub page_cache_via_writer: bool,
    pub write_budget: Arc<Semaphore>,
    pub write_budget_bytes: usize,
    /// The shared budget of the in-memory tail caches; `None` turns them off (buffered
    /// writes leave the newest batches in the page cache anyway).
    pub tail_cache: Option<Arc<TailBudget>>,
}

/// The part of a partition its writer task shares: segments, commit queue, poison flag.
#[derive(Debug)]
pub struct PartitionLog {
    name: String,
    dir: PathBuf,
    disk: Arc<dyn Disk>,
    config: RwLock<Arc<TopicConfig>>,
    segments: RwLock<BTreeMap<i64, Arc<Segment>>>,
    log_start_offset: AtomicI64,
    commit: CommitQueue,
    poisoned: AtomicBool,
    /// Set by `close`: retention leaves the partition alone from then on.
    closed: AtomicBool,
    /// Written by a request handler since the last flush (page_cache mode).
    dirty: AtomicBool,
    /// The newest batches, for fetches at the log end.
    tail: Option<Arc<TailCache>>,
}

impl PartitionLog {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> Arc<TopicConfig> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A topic config change (AlterConfigs): appends, rolls and retention read it from here.
    pub fn set_config(&self, config: Arc<TopicConfig>) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config;
    }

    fn segments(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<i64, Arc<Segment>>> {
        self.segments.read().unwrap_or_else(|e| e.into_inner())
    }

    fn segments_mut(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<i64, Arc<Segment>>> {
        self.segments.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The segment appends go to (the last one; `open` always creates one).
    pub fn active_segment(&self) -> std::io::Result<Arc<Segment>> {
        self.segments()
            .last_key_value()
            .map(|(_, segment)| segment.clone())
            .ok_or_else(|| std::io::Error::other(format!("partition {} has no segment", self.name)))
    }

    /// Whether appending `incoming_bytes` ending at `incoming_last_offset` needs a new segment:
    /// by size, by age, or because index entries hold offsets relative to the segment's base
    /// in 32 bits (as Kafka rolls).
    pub fn should_roll(
        &self,
        active: &Segment,
        incoming_bytes: u64,
        incoming_last_offset: i64,
    ) -> bool {
        let config = self.config();
        let size = active.size();
        size > 0
            && (size + incoming_bytes > config.segment_bytes as u64
                || now_ms() - active.created_ms() >= config.segment_ms
                || incoming_last_offset - active.base_offset() > i64::from(i32::MAX))
    }

    /// Closes `active` (data and indexes fsynced, so only the newest segment can ever be
    /// torn) and starts a new segment at `next_offset`.
    pub fn roll(&self, active: &Segment, next_offset: i64) -> std::io::Result<Arc<Segment>> {
        active.seal()?;
        active.sync_indexes()?;
        if let Err(e) = active.write_summary(true) {
            warn!(partition = %self.name, segment = active.base_offset(), error = %e,
                "could not write a segment summary: the next start reads the segment");
        }
        let config = self.config();
        let segment = Arc::new(Segment::create(
            &self.disk,
            &self.dir,
            next_offset,
            config.index_interval_bytes.max(0) as usize,
            now_ms(),
        )?);
        self.disk.sync_dir(&self.dir)?;
        self.segments_mut().insert(next_offset, segment.clone());
        Ok(segment)
    }

    /// fdatasync of the active segment's log file: what a group commit needs.
    pub fn sync_active_data(&self) -> std::io::Result<()> {
        self.active_segment()?.sync_data()
    }

    /// fsync of the active segment's data and indexes (shutdown, page_cache flushes).
    pub fn sync_active(&self) -> std::io::Result<()> {
        let active = self.active_segment()?;
        active.seal()?;
        active.sync_indexes()
    }

    /// The last writes of a closing partition: fsync, then the active segment's summary, so
    /// that a clean start need not read the segment.
    pub fn close_active(&self) -> std::io::Result<()> {
        self.sync_active()?;
        let active = self.active_segment()?;
        if let Err(e) = active.write_summary(false) {
            warn!(partition = %self.name, segment = active.base_offset(), error = %e,
                "could not write a segment summary: the next start reads the segment");
        }
        Ok(())
    }

    /// Checkpoints the active segment (see `Segment::checkpoint`); the log directory's
    /// checkpoint thread calls this for logs written since their last one. A close writes
    /// the segment's last summary after any checkpoint under way, and none follows it.
    pub fn checkpoint(&self) {
        let active = {
            let segments = self.segments();
            if self.closed.load(Ordering::Acquire) || self.is_poisoned() {
                return;
            }
            match segments.values().next_back() {
                Some(active) => active.clone(),
                None => return,
            }
        };
        match active.checkpoint() {
            Ok(()) => crate::telemetry::checkpoint_written(),
            Err(CheckpointError::Sync(e)) => self.poison(&e),
            Err(e) => warn!(partition = %self.name, error = %e,
                "checkpoint failed: a start after a crash reads more of the segment"),
        }
    }

    pub fn commit(&self) -> i64 {
        self.commit.commit()
    }

    /// Marks the log written since its last flush; true when it was clean before.
    pub fn mark_dirty(&self) -> bool {
        !self.dirty.swap(true, Ordering::AcqRel)
    }

    pub fn clear_dirty(&self) {
        self.dirty.store(false, Ordering::Release);
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// After a failed write or fsync nothing queued may be acknowledged, and the partition
    /// refuses writes until a restart recovers it from disk (never retry an fsync).
    pub fn poison(&self, cause: &std::io::Error) {
        if !self.poisoned.swap(true, Ordering::AcqRel) {
            error!(partition = %self.name, error = %cause,
                "write to the log failed: partition refuses writes until restart");
        }
        self.commit.fail_all();
        if let Some(tail) = &self.tail {
            tail.clear();
        }
        // Its fsyncs (a later one could "succeed" over lost pages) and summaries stop too.
        if let Ok(active) = self.active_segment() {
            active.fail_syncs();
        }
    }

    /// Keeps batches the writer has just written for tailing fetches.
    pub fn cache_written(&self, batches: &[AppendBatch]) {
        if let Some(tail) = &self.tail {
            tail.push(batches);
        }
    }

    /// Notes a fetch of the partition: its next writes are kept for it in the tail cache.
    fn note_reader(&self) {
        if let Some(tail) = &self.tail {
            tail.note_reader();
        }
    }

    /// A fetch's answer from the tail cache, when it holds `offset`.
    fn read_cached(
        &self,
        offset: i64,
        limit_offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Option<SegmentRead> {
        self.tail
            .as_ref()?
            .read(offset, limit_offset, max_bytes, min_one)
    }
}

struct Sequencer {
    next_offset: i64,
    /// `None` once the partition is closed (shutdown or deleted).
    writer: Option<WriterHandle>,
    /// Idempotent producers' sequences: checked and updated with the offsets they get.
    producers: ProducerStates,
    /// Open transactions and aborted ones: the last stable offset and read_committed.
    txns: PartitionTxns,
}

/// What `Partition::append` did with a produce request's batches.
#[derive(Debug)]
pub enum Appended {
    /// Offsets assigned and queued; the append resolves as it is persisted.
    New {
        append: Arc<PendingAppend>,
        /// -1 for CreateTime topics.
        log_append_time: i64,
    },
    /// An idempotent producer's retry of a batch already written: nothing new is written and
    /// the producer is answered with the original offsets.
    Duplicate { base_offset: i64, last_offset: i64 },
}

/// Offsets a partition reports.
#[derive(Debug, Clone, Copy)]
pub struct Watermarks {
    pub log_start_offset: i64,
    pub high_watermark: i64,
    /// Next offset to be assigned (includes appends not yet persisted).
    pub log_end_offset: i64,
    /// Below every transaction still open for readers; at most the high watermark.
    pub last_stable_offset: i64,
}

pub struct Partition {
    topic: String,
    index: i32,
    log: Arc<PartitionLog>,
    sequencer: Mutex<Sequencer>,
    options: PartitionOptions,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partition")
            .field("topic", &self.topic)
            .field("index", &self.index)
            .finish()
    }
}

/// The directory of a partition: `<data_dir>/<topic>-<partition>`.
pub fn partition_dir(data_dir: &Path, topic: &str, index: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{index}"))
}

impl Partition {
    /// Opens (or creates) the partition in `dir`, recovering its segments. With `verify`
    /// (after an unclean stop) the newest segment is CRC-checked and a torn tail truncated.
    /// A caller creating `dir` fsyncs its parent afterwards.
    pub fn open(
        dir: &Path,
        topic: &str,
        index: i32,
        config: Arc<TopicConfig>,
        options: PartitionOptions,
        verify: bool,
    ) -> Result<Arc<Partition>, LogError> {
        let name = format!("{topic}-{index}");
        let io = |source| LogError::Io {
            context: format!("opening partition {name}"),
            source,
        };
        // A new directory's own entry is made durable by the caller (one fsync of the data
        // directory for all partitions it creates).
        let disk = &options.disk;
        disk.create_dir_all(dir).map_err(io)?;
        let mut bases: Vec<i64> = disk
            .list_dir(dir)
            .map_err(io)?
            .iter()
            .filter_map(|entry| parse_segment_file_name(&entry.name))
            .collect();
        bases.sort_unstable();
        let interval = config.index_interval_bytes.max(0) as usize;
        let now = now_ms();
        let mut segments = BTreeMap::new();
        let mut producers = ProducerStates::default();
        let mut txns = PartitionTxns::default();
        let last = bases.len().checked_sub(1);
        for (i, base) in bases.iter().enumerate() {
            let is_last = Some(i) == last;
            let role = if is_last {
                SegmentRole::Active { verify }
            } else {
                SegmentRole::Sealed
            };
            let (segment, report) =
                Segment::open(disk, dir, *base, interval, role, now).map_err(io)?;
            log_recovery(&name, *base, &report);
            crate::telemetry::segment_opened(report.opened.label());
            producers.extend(report.history.producers);
            txns.replay(report.history.txn_events);
            segments.insert(*base, Arc::new(segment));
        }
        if segments.is_empty() {
            let segment = Segment::create(disk, dir, 0, interval, now).map_err(io)?;
            disk.sync_dir(dir).map_err(io)?;
            segments.insert(0, Arc::new(segment));
        }
        let log_start_offset = segments.keys().next().copied().unwrap_or(0);
        let next_offset = segments
            .values()
            .next_back()
            .map_or(0, |segment| segment.next_offset());
        let required = match options.durability {
            Durability::Fsync => Persistence::Durable,
            Durability::PageCache => Persistence::Written,
        };
        let log = Arc::new(PartitionLog {
            name,
            dir: dir.to_path_buf(),
            disk: disk.clone(),
            config: RwLock::new(config),
            segments: RwLock::new(segments),
            log_start_offset: AtomicI64::new(log_start_offset),
            commit: CommitQueue::new(next_offset, required),
            poisoned: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            dirty: AtomicBool::new(false),
            tail: options.tail_cache.as_ref().map(TailCache::new),
        });
        Ok(Arc::new(Partition {
            topic: topic.to_string(),
            index,
            log,
            sequencer: Mutex::new(Sequencer {
                next_offset,
                writer: Some(options.writer.clone()),
                producers,
                txns,
            }),
            options,
        }))
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn index(&self) -> i32 {
        self.index
    }

    pub fn config(&self) -> Arc<TopicConfig> {
        self.log.config()
    }

    pub fn set_config(&self, config: Arc<TopicConfig>) {
        self.log.set_config(config);
    }

    fn sequencer(&self) -> std::sync::MutexGuard<'_, Sequencer> {
        self.sequencer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The idempotent producers this partition knows (DescribeProducers).
    pub fn active_producers(&self) -> Vec<ActiveProducer> {
        let sequencer = self.sequencer();
        let open = sequencer.txns.open_transactions();
        let mut producers = sequencer.producers.active();
        for p in &mut producers {
            p.current_txn_start_offset = open.get(&p.producer_id).copied().unwrap_or(-1);
        }
        producers
    }

    /// Forgets idempotent producers idle since before `cutoff_ms`; returns how many.
    pub fn expire_producers(&self, cutoff_ms: i64) -> usize {
        self.sequencer().producers.expire(cutoff_ms)
    }

    pub fn watermarks(&self) -> Watermarks {
        let mut sequencer = self.sequencer();
        let high_watermark = self.log.commit.high_watermark();
        Watermarks {
            log_start_offset: self.log.log_start_offset.load(Ordering::Acquire),
            high_watermark,
            log_end_offset: sequencer.next_offset,
            last_stable_offset: sequencer.txns.last_stable_offset(high_watermark),
        }
    }

    /// A receiver that changes whenever the high watermark advances.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.log.commit.subscribe()
    }

    /// Size of all segments in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.log.segments().values().map(|s| s.size()).sum()
    }

    /// Stops accepting appends, lets the writer finish everything queued, fsyncs, and waits
    /// for the writer task to end.
    pub async fn close(&self) -> Result<(), LogError> {
        {
            let _segments = self.log.segments_mut();
            self.log.closed.store(true, Ordering::Release);
        }
        let writer = self.sequencer().writer.take();
        let mut result = Ok(());
        if let Some(writer) = writer {
            let (tx, rx) = oneshot::channel();
            if writer.send(&self.log, WriterCommand::Sync(tx)).is_ok() {
                match rx.await {
                    Ok(Ok(())) => {}
                    Ok(Err(source)) => {
                        result = Err(LogError::Io {
                            context: format!("final fsync of {}", self.log.name),
                            source,
                        })
                    }
                    Err(_) => result = Err(LogError::Closed),
                }
            }
        }
        if result.is_ok() && self.log.is_poisoned() {
            result = Err(LogError::Poisoned);
        }
        result
    }

    pub fn dir(&self) -> &Path {
        &self.log.dir
    }

    /// Checkpoints the active segment now, as the writer's checkpoint thread would.
    pub fn checkpoint(&self) {
        self.log.checkpoint();
    }
}

fn log_recovery(name: &str, base: i64, report: &RecoveryReport) {
    if report.zero_padding {
        tracing::debug!(partition = %name, segment = base, bytes = report.truncated_bytes,
            "recovery dropped the zero padding after the last batch");
    } else if report.truncated_bytes > 0 {
        warn!(
            partition = %name,
            segment = base,
            valid_bytes = report.valid_bytes,
            truncated_bytes = report.truncated_bytes,
            "recovery truncated a torn or corrupt segment tail"
        );
    }
}

#[cfg(test)]
pub(crate) mod tests;
