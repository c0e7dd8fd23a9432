//! Reads: committed batches for fetches (bounded by the high watermark, or by the last
//! stable offset for read_committed consumers) and the timestamp lookups of ListOffsets.

use std::sync::Arc;

use bytes::Bytes;

use super::Partition;
use crate::log::LogError;
use crate::log::record_set::RecordSet;
use crate::log::segment::{ReadInto, Segment, SegmentRead};
use crate::log::transactions::AbortedTxn;

/// Which records a consumer may see (Fetch and ListOffsets `isolation_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Up to the high watermark, aborted transactions included.
    ReadUncommitted,
    /// Up to the last stable offset, with the aborted transactions the consumer must drop.
    ReadCommitted,
}

impl Isolation {
    pub fn from_level(isolation_level: i8) -> Isolation {
        if isolation_level == 1 {
            Isolation::ReadCommitted
        } else {
            Isolation::ReadUncommitted
        }
    }
}

/// What a fetch got from a partition.
#[derive(Debug, Clone, Default)]
pub struct ReadResult {
    pub records: Option<RecordSet>,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// read_committed only: aborted transactions overlapping the records returned.
    pub aborted: Vec<AbortedTxn>,
}

impl Partition {
    /// Reads committed batches from `offset` (blocking I/O: call from the blocking pool),
    /// up to the high watermark or, for read_committed, the last stable offset.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        isolation: Isolation,
        into: ReadInto,
    ) -> Result<ReadResult, LogError> {
        self.log.note_reader();
        let marks = self.watermarks();
        let limit = match isolation {
            Isolation::ReadUncommitted => marks.high_watermark,
            Isolation::ReadCommitted => marks.last_stable_offset,
        };
        let mut result = ReadResult {
            records: None,
            high_watermark: marks.high_watermark,
            last_stable_offset: marks.last_stable_offset,
            log_start_offset: marks.log_start_offset,
            aborted: Vec::new(),
        };
        if offset < marks.log_start_offset || offset > marks.log_end_offset {
            return Err(LogError::OffsetOutOfRange);
        }
        if offset >= limit {
            return Ok(result);
        }
        match self.log.read_cached(offset, limit, max_bytes, min_one) {
            Some(SegmentRead::Data(records)) => result.records = Some(RecordSet::Memory(records)),
            Some(_) => {}
            None => self.read_segments(offset, limit, max_bytes, min_one, into, &mut result)?,
        }
        if isolation == Isolation::ReadCommitted
            && let Some(records) = &result.records
        {
            let end = records.next_offset().unwrap_or(limit);
            result.aborted = self.sequencer().txns.aborted_between(offset, end);
        }
        Ok(result)
    }

    /// The segments' answer to a fetch the tail cache does not hold.
    fn read_segments(
        &self,
        offset: i64,
        limit: i64,
        max_bytes: usize,
        min_one: bool,
        into: ReadInto,
        result: &mut ReadResult,
    ) -> Result<(), LogError> {
        let candidates: Vec<Arc<Segment>> = {
            let segments = self.log.segments();
            // Retention may have removed the segment since the watermarks were read.
            let Some(start) = segments.range(..=offset).next_back().map(|(base, _)| *base) else {
                return Err(LogError::OffsetOutOfRange);
            };
            segments.range(start..).map(|(_, s)| s.clone()).collect()
        };
        for segment in candidates {
            if segment.base_offset() >= limit {
                break;
            }
            let read = segment
                .read(offset, limit, max_bytes, min_one, into)
                .map_err(|source| LogError::Io {
                    context: format!("reading {}", self.log.name),
                    source,
                })?;
            match read {
                SegmentRead::Data(records) => {
                    result.records = Some(RecordSet::Memory(records));
                    break;
                }
                SegmentRead::File(slice) => {
                    result.records = Some(RecordSet::File(slice));
                    break;
                }
                SegmentRead::NotHere => continue,
                SegmentRead::Uncommitted | SegmentRead::DoesNotFit => break,
            }
        }
        Ok(())
    }

    /// The batch holding the first record with timestamp >= `timestamp`, if any (blocking).
    pub fn batch_by_timestamp(&self, timestamp: i64) -> Result<Option<Bytes>, LogError> {
        let high_watermark = self.log.commit.high_watermark();
        let segments: Vec<Arc<Segment>> = self.log.segments().values().cloned().collect();
        for segment in segments {
            let found = segment
                .find_by_timestamp(timestamp, high_watermark)
                .map_err(|source| LogError::Io {
                    context: format!("searching {}", self.log.name),
                    source,
                })?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// The batch holding the partition's largest timestamp, if any (blocking).
    pub fn batch_with_max_timestamp(&self) -> Result<Option<Bytes>, LogError> {
        let high_watermark = self.log.commit.high_watermark();
        let segments: Vec<Arc<Segment>> = self.log.segments().values().cloned().collect();
        // The first segment holding the maximum wins ties, as Kafka answers.
        let best = segments
            .iter()
            .filter(|s| s.max_timestamp_batch() >= 0 && s.max_timestamp_batch() < high_watermark)
            .fold(None::<&Arc<Segment>>, |best, s| match best {
                Some(b) if b.max_timestamp() >= s.max_timestamp() => Some(b),
                _ => Some(s),
            });
        match best {
            Some(segment) => segment
                .read_batch(segment.max_timestamp_batch())
                .map_err(|source| LogError::Io {
                    context: format!("reading {}", self.log.name),
                    source,
                }),
            None => Ok(None),
        }
    }
}
