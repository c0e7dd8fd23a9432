//! What a segment's batch headers say beyond their offsets (its idempotent producers' last
//! batches, the transactions begun and ended in it), kept up to date as the writer appends,
//! and the summary file `<base>.summary` that stores it with the segment's extent when the
//! segment is rolled, checkpointed or the broker stops cleanly. A start that finds a valid
//! summary reads none of the batch headers it covers, which after `O_DIRECT` writes are not
//! in the page cache: a start used to read the whole log from the disk.

use std::collections::HashSet;
use std::io::IoSlice;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::disk::Disk;
use crate::log::batch::BatchHeader;
use crate::log::control::{ControlType, control_type};
use crate::log::producer_state::{ProducerBatch, ProducerStates, SavedProducer};
use crate::log::transactions::TxnEvent;

const MAGIC: &[u8; 4] = b"WSUM";
const VERSION: u16 = 1;

/// A segment's producers and transactions, as a scan of its batch headers would find them.
#[derive(Debug, Default, Clone)]
pub struct SegmentHistory {
    pub producers: ProducerStates,
    /// Transactions begun and ended in the segment, in offset order.
    pub txn_events: Vec<TxnEvent>,
    /// Producers with a transaction begun in the segment and not ended in it.
    open_txns: HashSet<i64>,
}

impl SegmentHistory {
    /// Whether a batch with this header changes the history: plain producers' batches
    /// (producer id -1) do not, so they cost the writer nothing here.
    pub fn concerns(header: &BatchHeader) -> bool {
        header.producer_id >= 0 || header.is_control() || header.is_transactional()
    }

    /// Takes in the next batch of the segment; `batch` is the whole batch (a marker's type
    /// is in its record), `base_offset` the offset the broker gave it.
    pub fn observe(&mut self, header: &BatchHeader, base_offset: i64, batch: &[u8]) {
        if header.is_control() {
            if let Some(control) = control_type(batch) {
                self.open_txns.remove(&header.producer_id);
                self.txn_events.push(TxnEvent::End {
                    producer_id: header.producer_id,
                    offset: base_offset,
                    control,
                });
            }
            self.producers.record_marker(
                header.producer_id,
                header.producer_epoch,
                header.max_timestamp,
            );
            return;
        }
        if header.is_transactional() && self.open_txns.insert(header.producer_id) {
            self.txn_events.push(TxnEvent::Begin {
                producer_id: header.producer_id,
                offset: base_offset,
            });
        }
        if let Some(batch) = ProducerBatch::from_header(header, base_offset, header.max_timestamp) {
            self.producers.record(batch);
        }
    }

    pub fn from_parts(producers: ProducerStates, txn_events: Vec<TxnEvent>) -> SegmentHistory {
        let mut open_txns = HashSet::new();
        for event in &txn_events {
            match event {
                TxnEvent::Begin { producer_id, .. } => open_txns.insert(*producer_id),
                TxnEvent::End { producer_id, .. } => open_txns.remove(producer_id),
            };
        }
        SegmentHistory {
            producers,
            txn_events,
            open_txns,
        }
    }
}

/// Everything of a segment but its history that a start would otherwise read it for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SummaryExtent {
    pub base_offset: i64,
    /// Bytes of batches covered: the file's exact length for a rolled or closed segment (no
    /// padding), a prefix of it for a checkpointed active segment.
    pub size: u64,
    pub next_offset: i64,
    pub max_timestamp: i64,
    pub max_timestamp_batch: i64,
}

pub fn encode(extent: &SummaryExtent, history: &SegmentHistory) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    for value in [
        extent.base_offset,
        extent.size as i64,
        extent.next_offset,
        extent.max_timestamp,
        extent.max_timestamp_batch,
    ] {
        out.extend_from_slice(&value.to_be_bytes());
    }
    let producers = history.producers.save();
    out.extend_from_slice(&(producers.len() as u32).to_be_bytes());
    for p in &producers {
        out.extend_from_slice(&p.producer_id.to_be_bytes());
        out.extend_from_slice(&p.epoch.to_be_bytes());
        out.extend_from_slice(&p.last_timestamp_ms.to_be_bytes());
        out.push(p.batches.len() as u8);
        for b in &p.batches {
            out.extend_from_slice(&b.epoch.to_be_bytes());
            out.extend_from_slice(&b.first_seq.to_be_bytes());
            out.extend_from_slice(&b.last_seq.to_be_bytes());
            out.extend_from_slice(&b.base_offset.to_be_bytes());
            out.extend_from_slice(&b.last_offset.to_be_bytes());
            out.extend_from_slice(&b.timestamp_ms.to_be_bytes());
        }
    }
    out.extend_from_slice(&(history.txn_events.len() as u32).to_be_bytes());
    for event in &history.txn_events {
        let (tag, producer_id, offset) = match *event {
            TxnEvent::Begin {
                producer_id,
                offset,
            } => (0u8, producer_id, offset),
            TxnEvent::End {
                producer_id,
                offset,
                control: ControlType::Abort,
            } => (1, producer_id, offset),
            TxnEvent::End {
                producer_id,
                offset,
                control: ControlType::Commit,
            } => (2, producer_id, offset),
        };
        out.push(tag);
        out.extend_from_slice(&producer_id.to_be_bytes());
        out.extend_from_slice(&offset.to_be_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// `None` for anything but a whole, intact summary of this version.
pub fn decode(bytes: &[u8]) -> Option<(SummaryExtent, SegmentHistory)> {
    let (body, crc) = bytes.split_last_chunk::<4>()?;
    if crc32c::crc32c(body) != u32::from_be_bytes(*crc) {
        return None;
    }
    decode_body(body)
}

/// A summary without its checksum (public for the fuzz target, which must get past it).
pub fn decode_body(body: &[u8]) -> Option<(SummaryExtent, SegmentHistory)> {
    let mut r = Reader(body);
    if &r.take::<4>()? != MAGIC || u16::from_be_bytes(r.take()?) != VERSION {
        return None;
    }
    let extent = SummaryExtent {
        base_offset: r.i64()?,
        size: u64::try_from(r.i64()?).ok()?,
        next_offset: r.i64()?,
        max_timestamp: r.i64()?,
        max_timestamp_batch: r.i64()?,
    };
    let mut producers = Vec::new();
    for _ in 0..r.u32()? {
        let producer_id = r.i64()?;
        let epoch = i16::from_be_bytes(r.take()?);
        let last_timestamp_ms = r.i64()?;
        let mut batches = Vec::new();
        for _ in 0..r.take::<1>()?[0] {
            batches.push(ProducerBatch {
                producer_id,
                epoch: i16::from_be_bytes(r.take()?),
                first_seq: r.i32()?,
                last_seq: r.i32()?,
                base_offset: r.i64()?,
                last_offset: r.i64()?,
                timestamp_ms: r.i64()?,
            });
        }
        producers.push(SavedProducer {
            producer_id,
            epoch,
            last_timestamp_ms,
            batches,
        });
    }
    let mut txn_events = Vec::new();
    for _ in 0..r.u32()? {
        let tag = r.take::<1>()?[0];
        let producer_id = r.i64()?;
        let offset = r.i64()?;
        txn_events.push(match tag {
            0 => TxnEvent::Begin {
                producer_id,
                offset,
            },
            1 | 2 => TxnEvent::End {
                producer_id,
                offset,
                control: ControlType::from_commit(tag == 2),
            },
            _ => return None,
        });
    }
    if !r.0.is_empty() {
        return None;
    }
    let history = SegmentHistory::from_parts(ProducerStates::restore(producers), txn_events);
    Some((extent, history))
}

/// Where the summary of the segment at `base_offset` in `dir` lives.
pub fn path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(super::segment_file_name(base_offset, "summary"))
}

/// Removes a summary that must not be believed; none there is fine. True if one was removed
/// (the caller fsyncs the directory if that must survive a crash).
pub fn remove(disk: &Arc<dyn Disk>, path: &Path) -> std::io::Result<bool> {
    match disk.remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The summary at `path`, if there is a valid one.
pub fn read(disk: &Arc<dyn Disk>, path: &Path) -> Option<(SummaryExtent, SegmentHistory)> {
    decode(&disk.read_all(path).ok()?)
}

/// Writes and fsyncs a summary. Not atomic: a torn file fails its checksum, and the start
/// that finds it reads the segment instead.
pub fn write(
    disk: &Arc<dyn Disk>,
    path: &Path,
    extent: &SummaryExtent,
    history: &SegmentHistory,
) -> std::io::Result<()> {
    write_encoded(disk, path, &encode(extent, history))
}

/// Writes and fsyncs a summary already encoded.
pub fn write_encoded(disk: &Arc<dyn Disk>, path: &Path, encoded: &[u8]) -> std::io::Result<()> {
    let file = disk.create_empty(path)?;
    file.append(&mut [IoSlice::new(encoded)])?;
    file.sync_all()
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }

    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (SummaryExtent, SegmentHistory) {
        let mut producers = ProducerStates::default();
        for i in 0..7 {
            producers.record(ProducerBatch {
                producer_id: 9,
                epoch: 2,
                first_seq: i * 10,
                last_seq: i * 10 + 9,
                base_offset: 100 + i64::from(i) * 10,
                last_offset: 109 + i64::from(i) * 10,
                timestamp_ms: 5_000 + i64::from(i),
            });
        }
        producers.record_marker(11, 4, 6_000);
        let events = vec![
            TxnEvent::Begin {
                producer_id: 11,
                offset: 120,
            },
            TxnEvent::End {
                producer_id: 11,
                offset: 150,
                control: ControlType::Abort,
            },
            TxnEvent::Begin {
                producer_id: 12,
                offset: 160,
            },
        ];
        let extent = SummaryExtent {
            base_offset: 100,
            size: 123_456,
            next_offset: 170,
            max_timestamp: 6_000,
            max_timestamp_batch: 150,
        };
        (extent, SegmentHistory::from_parts(producers, events))
    }

    #[test]
    fn a_summary_round_trips() {
        let (extent, history) = sample();
        let (back, back_history) = decode(&encode(&extent, &history)).unwrap();
        assert_eq!(back, extent);
        assert_eq!(back_history.producers.save(), history.producers.save());
        // Only the last five batches of producer 9 are kept, as the live state keeps them.
        assert_eq!(back_history.producers.save()[0].batches.len(), 5);
        assert_eq!(back_history.txn_events, history.txn_events);
        // Producer 12's transaction is still open in the segment; 11's ended.
        assert_eq!(back_history.open_txns, HashSet::from([12]));
    }

    #[test]
    fn torn_or_damaged_summaries_are_refused() {
        let (extent, history) = sample();
        let bytes = encode(&extent, &history);
        for cut in [0, 1, 5, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_none(), "cut at {cut}");
        }
        for i in [0, 4, 10, bytes.len() / 2, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x40;
            assert!(decode(&damaged).is_none(), "flip at {i}");
        }
    }
}
