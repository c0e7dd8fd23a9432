//! The read side of a segment: positional reads of whole batches for fetches, bounded by
//! what the writer completed and by the high watermark, and lookups by offset and timestamp.

use std::fs::File;
use std::num::NonZeroU64;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::{BatchExtent, EXTENT_LEN, Segment};
use crate::log::batch::{BATCH_HEADER_LEN, BatchHeader};
use crate::log::record_set::FileSlice;

/// Spans smaller than this are read into memory even when they could be sent from the file:
/// for them the copy costs less than the extra system calls.
const SEND_MIN: usize = 32 * 1024;
/// A span whose first batch is smaller than this is read into memory: a file range costs one
/// header read per batch, and small batches would make that more system calls than the
/// copy is worth.
const SEND_MIN_BATCH: usize = 8 * 1024;
/// Most batch headers read for one file range: a range of many small batches after a large
/// first one ends early (fewer batches, as a fetch may return).
const SEND_MAX_BATCHES: usize = 256;
/// The blocking read waits for one byte in every this many of a file range (and its last),
/// so that the range is in the page cache before the connection sends it.
const RESIDENT_STRIDE: usize = 256 * 1024;

/// How a read hands its batches over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadInto {
    /// Copied into memory.
    Memory,
    /// A range of the segment file, for the connection to send with `sendfile`, when the span
    /// is large and the page cache serves it as written; otherwise memory.
    FileWhenLarge,
}

/// What a segment has for a fetch at some offset.
#[derive(Debug)]
pub enum SegmentRead {
    /// Whole batches, the first holding the offset (or the first after it).
    Data(Bytes),
    /// Whole batches, as a range of the segment file (`ReadInto::FileWhenLarge`).
    File(FileSlice),
    /// Every batch here ends before the offset: look in the next segment.
    NotHere,
    /// The batch holding the offset is above the high watermark.
    Uncommitted,
    /// The batch holding the offset is larger than the bytes allowed (and not the first of
    /// the response): return nothing for the partition rather than skip the batch.
    DoesNotFit,
}

impl Segment {
    /// Reads whole batches starting with the one that contains `offset`, stopping before any
    /// batch at or past `limit_offset` (the high watermark) and after `max_bytes` — but always
    /// returning at least one batch when `min_one` (KIP-74).
    pub fn read(
        &self,
        offset: i64,
        limit_offset: i64,
        max_bytes: usize,
        min_one: bool,
        into: ReadInto,
    ) -> std::io::Result<SegmentRead> {
        let size = self.size();
        let Some(start) = self.find_batch(offset, size)? else {
            return Ok(SegmentRead::NotHere);
        };
        if start.base_offset >= limit_offset {
            return Ok(SegmentRead::Uncommitted);
        }
        let want = if min_one {
            max_bytes.max(start.size)
        } else {
            max_bytes
        };
        let read_len = (want as u64).min(size - start.position) as usize;
        if read_len < start.size {
            return Ok(SegmentRead::DoesNotFit);
        }
        if into == ReadInto::FileWhenLarge
            && start.size >= SEND_MIN_BATCH
            && let Some((file, exact_end)) = self.file.send_source()
        {
            // A span past what the file sends exactly (the partial block of an O_DIRECT
            // file) is cut there if its first batch still fits: fewer batches, no copy.
            let send_len = (read_len as u64).min(exact_end.saturating_sub(start.position));
            let send_len = send_len as usize;
            if send_len >= SEND_MIN && send_len >= start.size {
                let span = Span {
                    pos: start.position,
                    len: send_len,
                    exact_end,
                };
                if let Some(slice) = self.file_slice(file, span, limit_offset)? {
                    return Ok(SegmentRead::File(slice));
                }
            }
        }
        let mut buf = BytesMut::zeroed(read_len);
        self.file.read_exact_at(&mut buf, start.position)?;
        let mut end = 0;
        while end + EXTENT_LEN <= buf.len() {
            let Some((base, batch_size)) = BatchHeader::peek_extent(&buf[end..]) else {
                break;
            };
            if base >= limit_offset || end + batch_size > buf.len() {
                break;
            }
            end += batch_size;
        }
        buf.truncate(end);
        Ok(if end > 0 {
            SegmentRead::Data(buf.freeze())
        } else {
            SegmentRead::Uncommitted
        })
    }

    /// The whole batches of `span` below `limit_offset`, as a file range (blocking I/O);
    /// `None` when they come to less than `SEND_MIN` (the caller reads them into memory).
    ///
    /// The kernel is told to read the span ahead, and as much again after it (a consumer
    /// reading on finds its next fetch read already, as the kernel's own readahead would have
    /// done for a positional read of the span): segments written with `O_DIRECT` are not in
    /// the page cache. The batch headers are then read one by one, and one byte in every
    /// `RESIDENT_STRIDE` and the last one are waited for, so that `sendfile` finds the range
    /// in the page cache and does not hold the connection's runtime thread on the disk.
    fn file_slice(
        &self,
        file: Arc<File>,
        span: Span,
        limit_offset: i64,
    ) -> std::io::Result<Option<FileSlice>> {
        let Span {
            pos,
            len: read_len,
            exact_end,
        } = span;
        let ahead = (2 * read_len as u64)
            .min(self.size().saturating_sub(pos))
            .min(exact_end.saturating_sub(pos));
        // Advice only: a refusal changes nothing but the speed.
        let _ = rustix::fs::fadvise(
            &*file,
            pos,
            NonZeroU64::new(ahead.max(read_len as u64)),
            rustix::fs::Advice::WillNeed,
        );
        let mut header = [0u8; BATCH_HEADER_LEN];
        let (mut len, mut batches, mut records, mut next_offset) = (0usize, 0, 0u64, -1i64);
        while len + BATCH_HEADER_LEN <= read_len && batches < SEND_MAX_BATCHES {
            file.read_exact_at(&mut header, pos + len as u64)?;
            let Ok(batch) = BatchHeader::parse(&header) else {
                break;
            };
            if batch.base_offset >= limit_offset || len + batch.size > read_len {
                break;
            }
            len += batch.size;
            batches += 1;
            records += u64::from(batch.record_count as u32);
            next_offset = batch.last_offset() + 1;
        }
        if len < SEND_MIN {
            // What the high watermark (or the batch cap) left of the span is small after all.
            return Ok(None);
        }
        let mut byte = [0u8; 1];
        for at in (RESIDENT_STRIDE - 1..len)
            .step_by(RESIDENT_STRIDE)
            .chain([len - 1])
        {
            file.read_exact_at(&mut byte, pos + at as u64)?;
        }
        Ok(Some(FileSlice {
            file,
            pos,
            len,
            records,
            next_offset,
        }))
    }

    /// The first batch whose last offset is at least `offset`, searching from the index.
    pub fn find_batch(&self, offset: i64, size: u64) -> std::io::Result<Option<BatchExtent>> {
        let start_pos = {
            let indexes = self.lock_indexes();
            indexes
                .offset
                .floor(offset - self.base_offset)
                .map_or(0, |(_, pos)| u64::from(pos))
        };
        self.scan_from(start_pos, size, |extent| extent.last_offset >= offset)
    }

    /// Walks batch headers from `pos` and returns the first extent matching `found`.
    fn scan_from(
        &self,
        mut pos: u64,
        size: u64,
        mut found: impl FnMut(&BatchExtent) -> bool,
    ) -> std::io::Result<Option<BatchExtent>> {
        let mut header = [0u8; EXTENT_LEN];
        while pos + EXTENT_LEN as u64 <= size {
            self.file.read_exact_at(&mut header, pos)?;
            let Some((base_offset, batch_size)) = BatchHeader::peek_extent(&header) else {
                return Ok(None);
            };
            let delta = i32::from_be_bytes([header[23], header[24], header[25], header[26]]);
            let extent = BatchExtent {
                base_offset,
                last_offset: base_offset + i64::from(delta),
                position: pos,
                size: batch_size,
            };
            if found(&extent) {
                return Ok(Some(extent));
            }
            pos += batch_size as u64;
        }
        Ok(None)
    }

    /// The first batch (within `limit_offset`) whose max timestamp is at least `timestamp`,
    /// returned whole so the caller can look for the exact record inside it.
    pub fn find_by_timestamp(
        &self,
        timestamp: i64,
        limit_offset: i64,
    ) -> std::io::Result<Option<Bytes>> {
        if self.max_timestamp() < timestamp {
            return Ok(None);
        }
        let size = self.size();
        let start_pos = {
            let indexes = self.lock_indexes();
            let start_offset = indexes
                .time
                .below(timestamp)
                .map_or(self.base_offset, |(_, rel)| {
                    self.base_offset + i64::from(rel)
                });
            indexes
                .offset
                .floor(start_offset - self.base_offset)
                .map_or(0, |(_, pos)| u64::from(pos))
        };
        let mut header = [0u8; BATCH_HEADER_LEN];
        let mut pos = start_pos;
        while pos + BATCH_HEADER_LEN as u64 <= size {
            self.file.read_exact_at(&mut header, pos)?;
            let Ok(parsed) = BatchHeader::parse(&header) else {
                return Ok(None);
            };
            if parsed.base_offset >= limit_offset {
                return Ok(None);
            }
            if parsed.max_timestamp >= timestamp {
                return self.read_batch_at(pos, parsed.size).map(Some);
            }
            pos += parsed.size as u64;
        }
        Ok(None)
    }

    /// The whole batch whose base offset is `base_offset`.
    pub fn read_batch(&self, base_offset: i64) -> std::io::Result<Option<Bytes>> {
        match self.find_batch(base_offset, self.size())? {
            Some(extent) if extent.base_offset == base_offset => {
                self.read_batch_at(extent.position, extent.size).map(Some)
            }
            _ => Ok(None),
        }
    }

    fn read_batch_at(&self, pos: u64, size: usize) -> std::io::Result<Bytes> {
        let mut buf = BytesMut::zeroed(size);
        self.file.read_exact_at(&mut buf, pos)?;
        Ok(buf.freeze())
    }
}

/// A span of a segment file to answer as a file range: `len` bytes from `pos`, within what
/// the file's descriptor reads exactly (`exact_end`).
struct Span {
    pos: u64,
    len: usize,
    exact_end: u64,
}
