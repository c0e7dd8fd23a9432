//! One log segment: `<20-digit base offset>.log` holding record batches back to back, with its
//! sparse `.index` and `.timeindex`. The partition's writer task is the only writer; fetches
//! read concurrently with positional reads bounded by what the writer has completed.

use std::io::IoSlice;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tracing::warn;

use crate::disk::{Disk, DiskFile};

use super::batch::{BATCH_HEADER_LEN, BatchHeader, verify_batch};
use super::index::{IndexKind, SparseIndex};
use super::partition::LEADER_EPOCH;

/// Bytes of a batch header needed to know its offsets: up to and including lastOffsetDelta.
const EXTENT_LEN: usize = 27;

mod read;
pub mod summary;

pub use read::SegmentRead;
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
    /// rolled or closed (emptied once the summary is written at a roll).
    history: Mutex<SegmentHistory>,
}

/// How a start treats a segment it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentRole {
    /// Rolled: fsynced and never written again; its summary is trusted after any stop.
    Sealed,
    /// The newest segment, which appends continue. `verify` (after an unclean stop):
    /// CRC-check every batch and truncate a torn tail, ignoring any summary.
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
    pub batches: u64,
    /// Opened from its summary: no batch was read.
    pub from_summary: bool,
    /// Idempotent producers and transactions in this segment.
    pub history: SegmentHistory,
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
        // A summary left by an earlier segment at this offset would describe other data.
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
        }
    }

    /// Opens an existing segment: from its summary when a valid one matches the file (and
    /// the segment need not be verified), otherwise by reading its batch headers. A sealed
    /// segment read that way gets a summary for the next start; an active segment's summary
    /// is removed before anything is appended, which would outdate it.
    pub fn open(
        disk: &Arc<dyn Disk>,
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: usize,
        role: SegmentRole,
        now_ms: i64,
    ) -> std::io::Result<(Segment, RecoveryReport)> {
        let file = disk.open_log(&dir.join(segment_file_name(base_offset, "log")), false)?;
        let file_len = file.size()?;
        let summary_path = summary::path(dir, base_offset);
        let verify = role == SegmentRole::Active { verify: true };
        let summarized = if verify {
            None
        } else {
            summary::read(disk, &summary_path)
                .filter(|(extent, _)| {
                    extent.base_offset == base_offset
                        && extent.size == file_len
                        && extent.next_offset >= base_offset
                })
                .and_then(|(extent, history)| {
                    Segment::open_summarized(
                        disk,
                        dir,
                        file.clone(),
                        (extent, history),
                        index_interval_bytes,
                        now_ms,
                    )
                })
        };
        let (segment, report) = match summarized {
            Some(opened) => opened,
            None => Segment::open_scanned(
                disk,
                dir,
                base_offset,
                file,
                index_interval_bytes,
                verify,
                now_ms,
            )?,
        };
        match role {
            SegmentRole::Sealed if !report.from_summary => {
                let extent = segment.summary_extent();
                if let Err(e) = summary::write(disk, &summary_path, &extent, &report.history) {
                    warn!(path = %summary_path.display(), error = %e,
                        "could not write a segment summary: the next start reads the segment");
                }
            }
            SegmentRole::Sealed => {}
            SegmentRole::Active { .. } => {
                *segment.lock_history() = report.history.clone();
                summary::remove(disk, &summary_path)?;
            }
        }
        Ok((segment, report))
    }

    /// A segment opened from its summary and indexes alone; `None` when the indexes do not
    /// load (the caller reads the segment instead).
    fn open_summarized(
        disk: &Arc<dyn Disk>,
        dir: &Path,
        file: Arc<dyn DiskFile>,
        (extent, history): (SummaryExtent, SegmentHistory),
        index_interval_bytes: usize,
        now_ms: i64,
    ) -> Option<(Segment, RecoveryReport)> {
        let base_offset = extent.base_offset;
        let max_rel = extent.next_offset - base_offset;
        let load = |kind, ext| {
            let path = dir.join(segment_file_name(base_offset, ext));
            SparseIndex::load(disk, kind, &path, max_rel)
        };
        let (offset, time) =
            load(IndexKind::Offset, "index").zip(load(IndexKind::Time, "timeindex"))?;
        let created_ms = if extent.size == 0 {
            now_ms
        } else {
            file.modified_ms().unwrap_or(now_ms)
        };
        let indexes = Indexes {
            offset,
            time,
            bytes_since_entry: 0,
        };
        let segment = Segment::new(
            disk,
            dir,
            base_offset,
            file,
            indexes,
            index_interval_bytes,
            created_ms,
        );
        segment.size.store(extent.size, Ordering::Release);
        segment
            .next_offset
            .store(extent.next_offset, Ordering::Release);
        segment.note_max_timestamp(extent.max_timestamp, extent.max_timestamp_batch);
        let report = RecoveryReport {
            valid_bytes: extent.size,
            from_summary: true,
            history,
            ..RecoveryReport::default()
        };
        Some((segment, report))
    }

    /// A segment opened by reading every batch header. With `verify`, every batch is
    /// CRC-checked and a torn or corrupt tail is truncated away; indexes are rebuilt whenever
    /// they cannot be trusted.
    fn open_scanned(
        disk: &Arc<dyn Disk>,
        dir: &Path,
        base_offset: i64,
        file: Arc<dyn DiskFile>,
        index_interval_bytes: usize,
        verify: bool,
        now_ms: i64,
    ) -> std::io::Result<(Segment, RecoveryReport)> {
        let file_len = file.size()?;
        let index_path = dir.join(segment_file_name(base_offset, "index"));
        let time_path = dir.join(segment_file_name(base_offset, "timeindex"));

        let mut report = RecoveryReport::default();
        let mut extents = Vec::new();
        let mut pos = 0u64;
        let mut header_buf = vec![0u8; BATCH_HEADER_LEN];
        let mut batch_buf = Vec::new();
        while pos < file_len {
            let remaining = file_len - pos;
            if remaining < BATCH_HEADER_LEN as u64 {
                break;
            }
            file.read_exact_at(&mut header_buf, pos)?;
            let Ok(header) = BatchHeader::parse(&header_buf) else {
                break;
            };
            if header.size as u64 > remaining || header.magic != 2 {
                break;
            }
            if verify {
                batch_buf.resize(header.size, 0);
                file.read_exact_at(&mut batch_buf, pos)?;
                if verify_batch(&batch_buf).is_err() {
                    break;
                }
            }
            // The fields the CRC leaves out must hold what the writer put there: offsets
            // follow on from the previous batch (from the segment's base for the first) and
            // the leader epoch is this node's.
            let expected = extents
                .last()
                .map_or(base_offset, |(e, _): &(BatchExtent, i64)| e.last_offset + 1);
            if header.base_offset != expected
                || !(0..=LEADER_EPOCH).contains(&header.partition_leader_epoch)
            {
                break;
            }
            if header.is_control() && !verify {
                // A marker's type is in its record.
                batch_buf.resize(header.size, 0);
                file.read_exact_at(&mut batch_buf, pos)?;
            }
            let batch: &[u8] = if header.is_control() { &batch_buf } else { &[] };
            report.history.observe(&header, header.base_offset, batch);
            extents.push((
                BatchExtent {
                    base_offset: header.base_offset,
                    last_offset: header.last_offset(),
                    position: pos,
                    size: header.size,
                },
                header.max_timestamp,
            ));
            pos += header.size as u64;
            report.batches += 1;
        }
        report.valid_bytes = pos;
        report.truncated_bytes = file_len - pos;
        if report.truncated_bytes > 0 {
            if report.truncated_bytes < crate::disk::BLOCK as u64 {
                let mut rest = vec![0u8; report.truncated_bytes as usize];
                file.read_exact_at(&mut rest, pos)?;
                report.zero_padding = rest.iter().all(|b| *b == 0);
            }
            file.set_len(pos)?;
            file.sync_all()?;
        }

        let next_offset = extents
            .last()
            .map_or(base_offset, |(e, _)| e.last_offset + 1);
        let max_rel = next_offset - base_offset;
        let loaded =
            if verify || report.truncated_bytes > 0 {
                None
            } else {
                SparseIndex::load(disk, IndexKind::Offset, &index_path, max_rel).zip(
                    SparseIndex::load(disk, IndexKind::Time, &time_path, max_rel),
                )
            };
        let rebuild = loaded.is_none();
        let (offset, time) = match loaded {
            Some(pair) => pair,
            None => (
                SparseIndex::create(disk, IndexKind::Offset, &index_path)?,
                SparseIndex::create(disk, IndexKind::Time, &time_path)?,
            ),
        };
        let created_ms = file.modified_ms().unwrap_or(now_ms);
        let segment = Segment::new(
            disk,
            dir,
            base_offset,
            file,
            Indexes {
                offset,
                time,
                bytes_since_entry: 0,
            },
            index_interval_bytes,
            if report.batches == 0 {
                now_ms
            } else {
                created_ms
            },
        );
        segment.size.store(pos, Ordering::Release);
        segment.next_offset.store(next_offset, Ordering::Release);
        if rebuild {
            let mut indexes = segment.lock_indexes();
            for (extent, max_ts) in &extents {
                segment.index_batch(&mut indexes, extent, *max_ts);
            }
            indexes.offset.write_pending()?;
            indexes.time.write_pending()?;
        } else {
            for (extent, max_ts) in &extents {
                segment.note_max_timestamp(*max_ts, extent.base_offset);
            }
        }
        Ok((segment, report))
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

    fn summary_extent(&self) -> SummaryExtent {
        SummaryExtent {
            base_offset: self.base_offset,
            size: self.size(),
            next_offset: self.next_offset(),
            max_timestamp: self.max_timestamp(),
            max_timestamp_batch: self.max_timestamp_batch(),
        }
    }

    /// Writes the segment's summary: at a roll (after `seal`, then the history is dropped:
    /// the partition's own state carries on) and at a clean close.
    pub fn write_summary(&self, then_forget: bool) -> std::io::Result<()> {
        let path = summary::path(&self.dir, self.base_offset);
        let mut history = self.lock_history();
        let result = summary::write(&self.disk, &path, &self.summary_extent(), &history);
        if then_forget {
            *history = SegmentHistory::default();
        }
        result
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
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(batches.len() * 2);
        for batch in batches {
            slices.push(IoSlice::new(&batch.prefix));
            slices.push(IoSlice::new(&batch.bytes[16..]));
        }
        self.file.append(&mut slices)?;
        let mut pos = self.size();
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
        let mut indexes = self.lock_indexes();
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
        drop(indexes);
        if let Some(last) = batches.last() {
            self.next_offset
                .store(last.last_offset + 1, Ordering::Release);
        }
        self.size.store(pos, Ordering::Release);
        Ok(())
    }

    /// fdatasync of the log file: what makes appended batches durable.
    pub fn sync_data(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    /// fdatasync after dropping any padding past the data: a segment closed cleanly (rolled,
    /// or at shutdown) ends exactly after its last batch.
    pub fn seal(&self) -> std::io::Result<()> {
        self.file.trim()?;
        self.file.sync_data()
    }

    /// Flushes and fsyncs the indexes (on roll and shutdown; recovery rebuilds them otherwise).
    pub fn sync_indexes(&self) -> std::io::Result<()> {
        let mut indexes = self.lock_indexes();
        indexes.offset.sync()?;
        indexes.time.sync()
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
