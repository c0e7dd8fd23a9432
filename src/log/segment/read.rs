//! The read side of a segment: positional reads of whole batches for fetches, bounded by
//! what the writer completed and by the high watermark, and lookups by offset and timestamp.

use bytes::{Bytes, BytesMut};

use super::{BatchExtent, EXTENT_LEN, Segment};
use crate::log::batch::{BATCH_HEADER_LEN, BatchHeader};

/// What a segment has for a fetch at some offset.
#[derive(Debug)]
pub enum SegmentRead {
    /// Whole batches, the first holding the offset (or the first after it).
    Data(Bytes),
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
