//! The batches a read returns: in memory, or (for a fetch of a large span of a segment whose
//! bytes the page cache serves as they are) a range of the segment file that the connection
//! sends with `sendfile`, so the bytes never pass through the broker's memory.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::batch::BatchHeader;

/// Whole batches, as a fetch answers them.
#[derive(Debug, Clone)]
pub enum RecordSet {
    Memory(Bytes),
    File(FileSlice),
}

impl RecordSet {
    pub fn len(&self) -> usize {
        match self {
            RecordSet::Memory(bytes) => bytes.len(),
            RecordSet::File(slice) => slice.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records in the batches (their headers' counts).
    pub fn record_count(&self) -> u64 {
        match self {
            RecordSet::Memory(bytes) => BatchHeader::count_records(bytes),
            RecordSet::File(slice) => slice.records,
        }
    }

    /// One past the last offset of the last batch.
    pub fn next_offset(&self) -> Option<i64> {
        match self {
            RecordSet::Memory(bytes) => memory_next_offset(bytes),
            RecordSet::File(slice) => Some(slice.next_offset),
        }
    }

    /// The batches in memory (a read of the file for a file slice: blocking I/O).
    pub fn into_bytes(self) -> std::io::Result<Bytes> {
        match self {
            RecordSet::Memory(bytes) => Ok(bytes),
            RecordSet::File(slice) => slice.read(),
        }
    }
}

/// Whole batches at `[pos, pos + len)` of a segment file, read through the page cache.
/// Holding the descriptor keeps the bytes readable even if retention deletes the segment
/// before they are sent; batches below the high watermark are never rewritten.
#[derive(Debug, Clone)]
pub struct FileSlice {
    pub file: Arc<File>,
    pub pos: u64,
    pub len: usize,
    /// Records in the slice's batches.
    pub records: u64,
    /// One past the last offset of the slice's last batch.
    pub next_offset: i64,
}

impl FileSlice {
    /// The slice's bytes, read into memory (blocking).
    pub fn read(&self) -> std::io::Result<Bytes> {
        let mut buf = BytesMut::zeroed(self.len);
        self.file.read_exact_at(&mut buf, self.pos)?;
        Ok(buf.freeze())
    }
}

fn memory_next_offset(records: &[u8]) -> Option<i64> {
    let mut rest = records;
    let mut end = None;
    while let Ok(header) = BatchHeader::parse(rest) {
        end = Some(header.last_offset() + 1);
        rest = rest.get(header.size..)?;
    }
    end
}
