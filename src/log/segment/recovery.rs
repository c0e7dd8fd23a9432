//! Opening a segment at start-up. What its summary covers is taken from the summary and the
//! indexes without reading a batch; the batches after that (all of them without a summary)
//! are read header by header, CRC-checked when the segment may be torn, and a torn tail is
//! truncated away. A summary covers a whole rolled segment, the active segment at a clean
//! stop, or the active segment's prefix at its last checkpoint (see `Segment::checkpoint`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tracing::warn;

use super::summary::{self, SegmentHistory, SummaryExtent};
use super::{
    BatchExtent, Indexes, Opened, RecoveryReport, Segment, SegmentRole, segment_file_name,
};
use crate::disk::{Disk, DiskFile};
use crate::log::batch::{BATCH_HEADER_LEN, BatchHeader, verify_batch};
use crate::log::index::{IndexKind, SparseIndex};
use crate::log::partition::LEADER_EPOCH;

/// What a segment's summary says of its first `position` bytes.
struct Resume {
    position: u64,
    next_offset: i64,
    max_timestamp: i64,
    max_timestamp_batch: i64,
    history: SegmentHistory,
    /// The index entries of the covered bytes (entries past them are cut off the files).
    indexes: (SparseIndex, SparseIndex),
}

impl Resume {
    /// `None` when an index file cannot be read: the caller reads the whole segment.
    fn load(
        disk: &Arc<dyn Disk>,
        dir: &Path,
        extent: SummaryExtent,
        history: SegmentHistory,
    ) -> Option<Resume> {
        let base = extent.base_offset;
        let next_rel = extent.next_offset - base;
        let covered = extent.size;
        let path = |ext| dir.join(segment_file_name(base, ext));
        let offset =
            SparseIndex::load_prefix(disk, IndexKind::Offset, &path("index"), |rel, pos| {
                rel < next_rel && u64::from(pos) < covered
            })?;
        let max_ts = extent.max_timestamp;
        let time =
            SparseIndex::load_prefix(disk, IndexKind::Time, &path("timeindex"), |ts, rel| {
                ts <= max_ts && i64::from(rel) < next_rel
            })?;
        Some(Resume {
            position: covered,
            next_offset: extent.next_offset,
            max_timestamp: extent.max_timestamp,
            max_timestamp_batch: extent.max_timestamp_batch,
            history,
            indexes: (offset, time),
        })
    }
}

impl Segment {
    /// Opens an existing segment: from its summary as far as a valid one covers the file,
    /// then by reading the batches after that. A rolled segment that had to be read gets a
    /// summary for the next start. An active segment keeps a valid summary (appends do not
    /// change the bytes it covers) and loses one that does not match its file.
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
        let resume = summary::read(disk, &summary_path)
            .filter(|(extent, _)| {
                extent.base_offset == base_offset
                    && extent.size <= file_len
                    && extent.next_offset >= base_offset
            })
            .and_then(|(extent, history)| Resume::load(disk, dir, extent, history));
        if resume.is_none() && role != SegmentRole::Sealed {
            // Left in place, it could claim bytes that appends are about to rewrite; were it
            // to come back after a crash, it would be believed.
            if summary::remove(disk, &summary_path)? {
                disk.sync_dir(dir)?;
            }
        }
        let verify = role == SegmentRole::Active { verify: true };
        let (segment, report) = Segment::read_batches(
            disk,
            dir,
            base_offset,
            file,
            index_interval_bytes,
            verify,
            now_ms,
            resume,
        )?;
        match role {
            SegmentRole::Sealed if report.opened != Opened::Summary => {
                let extent = segment.summary_extent();
                let written = segment
                    .sync_indexes()
                    .and_then(|()| summary::write(disk, &summary_path, &extent, &report.history));
                if let Err(e) = written {
                    warn!(path = %summary_path.display(), error = %e,
                        "could not write a segment summary: the next start reads the segment");
                }
            }
            SegmentRole::Sealed => {}
            SegmentRole::Active { .. } => *segment.lock_history() = report.history.clone(),
        }
        Ok((segment, report))
    }

    /// Reads the batch headers after what `resume` covers (from the start without it). With
    /// `verify`, every batch read is CRC-checked and a torn or corrupt tail is truncated away;
    /// indexes are rebuilt whenever they cannot be trusted.
    #[allow(clippy::too_many_arguments)]
    fn read_batches(
        disk: &Arc<dyn Disk>,
        dir: &Path,
        base_offset: i64,
        file: Arc<dyn DiskFile>,
        index_interval_bytes: usize,
        verify: bool,
        now_ms: i64,
        resume: Option<Resume>,
    ) -> std::io::Result<(Segment, RecoveryReport)> {
        let file_len = file.size()?;
        let resumed = resume.is_some();
        let (start, mut next_offset, max_timestamp, mut history, resumed_indexes) = match resume {
            Some(r) => (
                r.position,
                r.next_offset,
                Some((r.max_timestamp, r.max_timestamp_batch)),
                r.history,
                Some(r.indexes),
            ),
            None => (0, base_offset, None, SegmentHistory::default(), None),
        };

        let mut report = RecoveryReport::default();
        let mut extents = Vec::new();
        let mut pos = start;
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
            if header.base_offset != next_offset
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
            history.observe(&header, header.base_offset, batch);
            extents.push((
                BatchExtent {
                    base_offset: header.base_offset,
                    last_offset: header.last_offset(),
                    position: pos,
                    size: header.size,
                },
                header.max_timestamp,
            ));
            next_offset = header.last_offset() + 1;
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
        report.opened = match (resumed, report.batches) {
            (false, _) => Opened::Scan,
            (true, 0) => Opened::Summary,
            (true, _) => Opened::Checkpoint,
        };

        let index_path = dir.join(segment_file_name(base_offset, "index"));
        let time_path = dir.join(segment_file_name(base_offset, "timeindex"));
        let max_rel = next_offset - base_offset;
        let loaded = match resumed_indexes {
            Some(pair) => Some(pair),
            None if verify || report.truncated_bytes > 0 => None,
            None => SparseIndex::load(disk, IndexKind::Offset, &index_path, max_rel).zip(
                SparseIndex::load(disk, IndexKind::Time, &time_path, max_rel),
            ),
        };
        // Entries for the batches just read: all of them after a summary's, or a rebuild.
        let index_read = resumed || loaded.is_none();
        let (offset, time) = match loaded {
            Some(pair) => pair,
            None => (
                SparseIndex::create(disk, IndexKind::Offset, &index_path)?,
                SparseIndex::create(disk, IndexKind::Time, &time_path)?,
            ),
        };
        let created_ms = if next_offset == base_offset {
            now_ms
        } else {
            file.modified_ms().unwrap_or(now_ms)
        };
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
            created_ms,
        );
        segment.size.store(pos, Ordering::Release);
        segment.next_offset.store(next_offset, Ordering::Release);
        if let Some((max_ts, batch)) = max_timestamp {
            segment.note_max_timestamp(max_ts, batch);
        }
        if index_read {
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
        report.history = history;
        Ok((segment, report))
    }
}
