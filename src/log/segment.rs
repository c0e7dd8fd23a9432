//! One log segment: `<20-digit base offset>.log` holding record batches back to back, with its
//! sparse `.index` and `.timeindex`. The partition's writer task is the only writer; fetches
//! read concurrently with positional reads bounded by what the writer has completed.

use std::io::IoSlice;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use thiserror::Error;
use tracing::warn;

use crate::disk::{Disk, DiskFile};

use super::batch::BatchHeader;
use super::index::{IndexKind, SparseIndex};

/// Bytes of a batch header needed to know its offsets: up to and including lastOffsetDelta.
const EXTENT_LEN: usize = 27;

mod read;
mod recovery;
pub mod summary;

pub use read::{ReadInto, SegmentRead};
pub use summary::SegmentHistory;
use summary::SummaryExtent;

pub fn segment_file_name(base_offset: i64, extension: &str) -> String {
    format!("{base_offset:020}.{extension}")
}

/// Parses `00000000000000000042.log` into 42.
pub fn parse_segment_file_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

#[derive(Debug)]
struct Indexes {
    offset: SparseIndex,
    time: SparseIndex,
    bytes_since_entry: usize,
}

/// Where a batch sits in a segment file.
#[derive(Debug, Clone, Copy)]
pub struct BatchExtent {
    pub base_offset: i64,
    pub last_offset: i64,
    pub position: u64,
    pub size: usize,
}

#[derive(Debug)]
pub struct Segment {
    base_offset: i64,
    dir: PathBuf,
    disk: Arc<dyn Disk>,
    file: Arc<dyn DiskFile>,
    /// Bytes of complete batches in the file: readers never look past it.
    size: AtomicU64,
    /// Offset after the last batch (the base offset while empty).
    next_offset: AtomicI64,
    max_timestamp: AtomicI64,
    /// Base offset of the batch holding `max_timestamp` (-1 while empty).
    max_timestamp_batch: AtomicI64,
    created_ms: i64,
    indexes: Mutex<Indexes>,
    index_interval_bytes: usize,
    /// Producers and transactions in this segment: what its summary stores when it is
    /// rolled, checkpointed or closed (emptied once the summary is written at a roll).
    history: Mutex<SegmentHistory>,
    /// Held while the summary file is written (by a roll, a close or a checkpoint, which may
    /// come from different threads); true once a roll or close wrote the segment's last
    /// summary, which a late checkpoint must not replace.
    summary_writes: Mutex<bool>,
    /// Serialises the fsyncs of the segment's files (the writer's and a checkpoint's) and is
    /// true once one failed, or an append did: Linux reports a writeback error to one fsync
    /// only, and the next may "succeed" over lost pages, so every later fsync fails too and
    /// no summary is written after it.
    syncs: Mutex<bool>,
}

/// How a start treats a segment it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentRole {
    /// Rolled: fsynced and never written again; its summary is trusted after any stop.
    Sealed,
    /// The newest segment, which appends continue. `verify` (after an unclean stop):
    /// CRC-check every batch after what its summary covers and truncate a torn tail.
    Active { verify: bool },
}

/// What recovery found in a segment file.
#[derive(Debug, Default)]
pub struct RecoveryReport {
    pub valid_bytes: u64,
    pub truncated_bytes: u64,
    /// The truncated bytes were less than a block of zeros: the padding an `O_DIRECT`
    /// append leaves past the data (or a tail the file system zero-filled), not damage.
    pub zero_padding: bool,
    /// Batches read (the ones a summary covered are not).
    pub batches: u64,
    pub opened: Opened,
    /// Idempotent producers and transactions in this segment.
    pub history: SegmentHistory,
}

/// How start-up came to know a segment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// From its summary alone: no batch was read.
    Summary,
    /// From its summary, then the batches appended after it (the active segment after a
    /// crash, from its last checkpoint).
    Checkpoint,
    /// Every batch read: no valid summary.
    #[default]
    Scan,
}

impl Opened {
    pub fn label(self) -> &'static str {
        match self {
            Opened::Summary => "summary",
            Opened::Checkpoint => "checkpoint",
            Opened::Scan => "scan",
        }
    }
}

/// Why a checkpoint failed.
#[derive(Debug, Error)]
pub enum CheckpointError {
    /// The segment's data or indexes could not be fsynced (now or before): nothing written
    /// since the last good fsync can be trusted to be on disk.
    #[error("fsync of the segment failed: {0}")]
    Sync(std::io::Error),
    /// Only the summary file is missing or torn: a start after a crash reads more of the
    /// segment.
    #[error("writing the segment summary failed: {0}")]
    Summary(std::io::Error),
}

impl Segment {
    /// Creates a new, empty segment (its files must not exist yet with data).
    pub fn create(
        disk: &Arc<dyn Disk>,
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: usize,
        now_ms: i64,
    ) -> std::io::Result<Segment> {
        let file = disk.open_log(&dir.join(segment_file_name(base_offset, "log")), true)?;
        // A summary left by an earlier segment at this offset would describe other data (the
        // caller fsyncs the directory, for the new file too).
        summary::remove(disk, &summary::path(dir, base_offset))?;
        let indexes = Indexes {
            offset: SparseIndex::create(
                disk,
                IndexKind::Offset,
                &dir.join(segment_file_name(base_offset, "index")),
            )?,
            time: SparseIndex::create(
                disk,
                IndexKind::Time,
                &dir.join(segment_file_name(base_offset, "timeindex")),
            )?,
            bytes_since_entry: 0,
        };
        Ok(Segment::new(
            disk,
            dir,
            base_offset,
            file,
            indexes,
            index_interval_bytes,
            now_ms,
        ))
    }

    fn new(
        disk: &Arc<dyn Disk>,
        dir: &Path,
        base_offset: i64,
        file: Arc<dyn DiskFile>,
        indexes: Indexes,
        index_interval_bytes: usize,
        created_ms: i64,
    ) -> Segment {
        Segment {
            base_offset,
            dir: dir.to_path_buf(),
            disk: disk.clone(),
            file,
            size: AtomicU64::new(0),
            next_offset: AtomicI64::new(base_offset),
            max_timestamp: AtomicI64::new(-1),
            max_timestamp_batch: AtomicI64::new(-1),
            created_ms,
            indexes: Mutex::new(indexes),
            index_interval_bytes,
            history: Mutex::new(SegmentHistory::default()),
            summary_writes: Mutex::new(false),
            syncs: Mutex::new(false),
        }
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    pub fn next_offset(&self) -> i64 {
        self.next_offset.load(Ordering::Acquire)
    }

    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp.load(Ordering::Acquire)
    }

    pub fn max_timestamp_batch(&self) -> i64 {
        self.max_timestamp_batch.load(Ordering::Acquire)
    }

    pub fn created_ms(&self) -> i64 {
        self.created_ms
    }

    pub fn is_empty(&self) -> bool {
        self.size() == 0
    }

    fn lock_indexes(&self) -> std::sync::MutexGuard<'_, Indexes> {
        // A poisoned lock only means a panic elsewhere; the index data stays consistent.
        self.indexes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_history(&self) -> std::sync::MutexGuard<'_, SegmentHistory> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lock order: `summary_writes`, then `indexes`, then `history`; `syncs` last.
    fn lock_summary_writes(&self) -> std::sync::MutexGuard<'_, bool> {
        self.summary_writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Runs an fsync of the segment's files unless one failed before; a failure sticks.
    fn synced(&self, sync: impl FnOnce() -> std::io::Result<()>) -> std::io::Result<()> {
        let mut failed = self.syncs.lock().unwrap_or_else(|e| e.into_inner());
        if *failed {
            return Err(std::io::Error::other(
                "an earlier fsync or append of this segment failed",
            ));
        }
        let result = sync();
        *failed = result.is_err();
        result
    }

    fn summary_extent(&self) -> SummaryExtent {
        SummaryExtent {
            base_offset: self.base_offset,
            size: self.size(),
            next_offset: self.next_offset(),
            max_timestamp: self.max_timestamp(),
            max_timestamp_batch: self.max_timestamp_batch(),
        }
    }

    /// Writes the segment's last summary: at a roll (after `seal`, then the history is
    /// dropped: the partition's own state carries on) and at a clean close.
    pub fn write_summary(&self, rolled: bool) -> std::io::Result<()> {
        let mut last_written = self.lock_summary_writes();
        *last_written = true;
        self.synced(|| Ok(()))?;
        let path = summary::path(&self.dir, self.base_offset);
        let mut history = self.lock_history();
        let result = summary::write(&self.disk, &path, &self.summary_extent(), &history);
        if rolled {
            *history = SegmentHistory::default();
        }
        result
    }

    /// Makes everything appended so far durable and writes the summary of it, so that a
    /// start after a crash reads and verifies only what is appended later. Runs beside
    /// appends: extent and history are taken together under the indexes lock, where an
    /// append is either whole or not begun, and fsynced before the summary claims them.
    pub fn checkpoint(&self) -> Result<(), CheckpointError> {
        // Held throughout: a close waits for a checkpoint under way, and none starts after.
        let last_written = self.lock_summary_writes();
        if *last_written {
            return Ok(());
        }
        let encoded = {
            let _indexes = self.lock_indexes();
            summary::encode(&self.summary_extent(), &self.lock_history())
        };
        self.synced(|| {
            self.file.sync_data()?;
            // Appends write their index entries as they go; only the fsync is missing.
            for ext in ["index", "timeindex"] {
                let path = self.dir.join(segment_file_name(self.base_offset, ext));
                self.disk.open_append(&path, false)?.sync_all()?;
            }
            Ok(())
        })
        .map_err(CheckpointError::Sync)?;
        let path = summary::path(&self.dir, self.base_offset);
        summary::write_encoded(&self.disk, &path, &encoded).map_err(CheckpointError::Summary)
    }

    fn note_max_timestamp(&self, max_ts: i64, batch_base: i64) {
        if max_ts > self.max_timestamp.load(Ordering::Acquire) {
            self.max_timestamp.store(max_ts, Ordering::Release);
            self.max_timestamp_batch
                .store(batch_base, Ordering::Release);
        }
    }

    /// Records a batch in the running max timestamp and, every `index_interval_bytes`, in both
    /// indexes. A time index entry holds the segment's running max timestamp, so every batch
    /// up to its offset is known to be older than any later target.
    fn index_batch(&self, indexes: &mut Indexes, extent: &BatchExtent, max_ts: i64) {
        self.note_max_timestamp(max_ts, extent.base_offset);
        if indexes.bytes_since_entry >= self.index_interval_bytes || indexes.offset.last().is_none()
        {
            let rel = extent.base_offset - self.base_offset;
            indexes.offset.push(rel, extent.position as u32);
            let running_max = self.max_timestamp();
            if indexes.time.last().is_none_or(|(t, _)| running_max > t) {
                let rel_last = extent.last_offset - self.base_offset;
                indexes.time.push(running_max, rel_last as u32);
            }
            indexes.bytes_since_entry = 0;
        }
        indexes.bytes_since_entry += extent.size;
    }

    /// Appends batches (each given as `[16-byte patched prefix, rest of the client's bytes]`)
    /// with vectored writes. Called only by the partition's writer.
    pub fn append(&self, batches: &[AppendBatch]) -> std::io::Result<()> {
        let result = self.append_all(batches);
        if result.is_err() {
            // Part of it may be in the history or the indexes: no summary may claim it.
            self.fail_syncs();
        }
        result
    }

    fn append_all(&self, batches: &[AppendBatch]) -> std::io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(batches.len() * 2);
        for batch in batches {
            slices.push(IoSlice::new(&batch.prefix));
            slices.push(IoSlice::new(&batch.bytes[16..]));
        }
        self.file.append(&mut slices)?;
        // History, indexes, size and next offset change together under the indexes lock: a
        // checkpoint reading them there sees whole appends only.
        let mut indexes = self.lock_indexes();
        let mut history = None;
        for batch in batches {
            if let Ok(header) = BatchHeader::parse(&batch.bytes)
                && SegmentHistory::concerns(&header)
            {
                history.get_or_insert_with(|| self.lock_history()).observe(
                    &header,
                    batch.base_offset,
                    &batch.bytes,
                );
            }
        }
        drop(history);
        let mut pos = self.size();
        for batch in batches {
            let extent = BatchExtent {
                base_offset: batch.base_offset,
                last_offset: batch.last_offset,
                position: pos,
                size: batch.bytes.len(),
            };
            self.index_batch(&mut indexes, &extent, batch.max_timestamp);
            pos += batch.bytes.len() as u64;
        }
        indexes.offset.write_pending()?;
        indexes.time.write_pending()?;
        if let Some(last) = batches.last() {
            self.next_offset
                .store(last.last_offset + 1, Ordering::Release);
        }
        self.size.store(pos, Ordering::Release);
        Ok(())
    }

    /// fdatasync of the log file: what makes appended batches durable.
    pub fn sync_data(&self) -> std::io::Result<()> {
        self.synced(|| self.file.sync_data())
    }

    /// After a failure that may have lost written data: every later fsync fails, and no
    /// summary is written.
    pub fn fail_syncs(&self) {
        *self.syncs.lock().unwrap_or_else(|e| e.into_inner()) = true;
    }

    /// fdatasync after dropping any padding past the data: a segment closed cleanly (rolled,
    /// or at shutdown) ends exactly after its last batch.
    pub fn seal(&self) -> std::io::Result<()> {
        self.file.trim()?;
        self.sync_data()
    }

    /// Flushes and fsyncs the indexes (on roll and shutdown; recovery rebuilds them otherwise).
    pub fn sync_indexes(&self) -> std::io::Result<()> {
        let mut indexes = self.lock_indexes();
        self.synced(|| {
            indexes.offset.sync()?;
            indexes.time.sync()
        })
    }

    /// Removes the segment's files (after retention or topic deletion).
    pub fn delete_files(&self) {
        for ext in ["log", "index", "timeindex", "summary"] {
            let path = self.dir.join(segment_file_name(self.base_offset, ext));
            if let Err(e) = self.disk.remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                warn!(path = %path.display(), error = %e, "could not delete segment file");
            }
        }
    }
}

/// One batch as the writer appends it.
#[derive(Debug, Clone)]
pub struct AppendBatch {
    pub prefix: [u8; 16],
    pub bytes: Bytes,
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

#[cfg(test)]
mod tests;
