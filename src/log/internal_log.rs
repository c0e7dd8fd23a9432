//! An internal log of key/value records under `__weir_meta/` (committed offsets, transaction
//! state). Appends go through the same writer and commit step as topic data, and an append
//! returns only once its batch is committed (fsynced in `fsync` mode); start-up replays every
//! record from the log start.

use std::sync::Arc;

use bytes::{Buf, Bytes};
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder, TimestampType};

use super::LogError;
use super::batch::{BatchHeader, ValidatedBatch, encode_records, verify_batch};
use super::commit::{AckLevel, StorageFailure};
use super::partition::{Appended, Isolation, Partition};
use super::segment::ReadInto;

/// Bytes read per step of a replay.
const REPLAY_READ_BYTES: usize = 1 << 20;

/// A key and its value; `None` is a tombstone.
pub type KeyValue = (Bytes, Option<Bytes>);

#[derive(Debug, thiserror::Error)]
pub enum InternalLogError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Storage(#[from] StorageFailure),
    #[error("cannot encode records: {0}")]
    Encode(String),
    #[error("malformed batch in an internal log")]
    Malformed,
}

#[derive(Debug, Clone)]
pub struct InternalLog {
    partition: Arc<Partition>,
}

impl InternalLog {
    pub fn new(partition: Arc<Partition>) -> InternalLog {
        InternalLog { partition }
    }

    pub fn partition(&self) -> &Arc<Partition> {
        &self.partition
    }

    /// Appends the records as one batch and waits until it is committed; returns the
    /// batch's base offset (record `i` is at base + i).
    pub async fn append(&self, records: &[KeyValue]) -> Result<i64, InternalLogError> {
        let bytes = encode_batch(records, super::now_ms())?;
        let header = verify_batch(&bytes).map_err(|e| InternalLogError::Encode(e.to_string()))?;
        match self
            .partition
            .append(vec![ValidatedBatch { header, bytes }], None)
            .await?
        {
            Appended::New { append, .. } => {
                append.wait(AckLevel::Committed).await?;
                Ok(append.base_offset)
            }
            // The records carry no producer id, so they are never deduplicated.
            Appended::Duplicate { base_offset, .. } => Ok(base_offset),
        }
    }

    /// Every record from the log start to the high watermark (blocking I/O).
    pub fn replay(&self) -> Result<Vec<(i64, KeyValue)>, InternalLogError> {
        let marks = self.partition.watermarks();
        let mut offset = marks.log_start_offset;
        let mut out = Vec::new();
        while offset < marks.high_watermark {
            let Some(records) = self
                .partition
                .read(
                    offset,
                    REPLAY_READ_BYTES,
                    true,
                    Isolation::ReadUncommitted,
                    ReadInto::Memory,
                )?
                .records
            else {
                break;
            };
            let records = records.into_bytes().map_err(|source| LogError::Io {
                context: "replaying an internal log".to_string(),
                source,
            })?;
            // The next read starts after the last whole batch, whatever its records held.
            let mut next = offset;
            let mut rest: &[u8] = &records;
            while let Ok(header) = BatchHeader::parse(rest) {
                next = next.max(header.last_offset() + 1);
                rest = rest.get(header.size..).unwrap_or_default();
            }
            decode_batches(records, &mut out)?;
            if next <= offset {
                break;
            }
            offset = next;
        }
        Ok(out)
    }
}

/// One uncompressed batch holding `records` in order.
pub fn encode_batch(records: &[KeyValue], timestamp: i64) -> Result<Bytes, InternalLogError> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch whenever offset - sequence changes.
            sequence: i as i32,
            timestamp,
            key: Some(key.clone()),
            value: value.clone(),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    encode_records(&records, Compression::None).map_err(|e| InternalLogError::Encode(e.to_string()))
}

/// Decodes every keyed record of stored batches into `out` as `(log offset, key, value)`.
pub fn decode_batches(
    mut bytes: Bytes,
    out: &mut Vec<(i64, KeyValue)>,
) -> Result<(), InternalLogError> {
    while bytes.has_remaining() {
        let set =
            RecordBatchDecoder::decode(&mut bytes).map_err(|_| InternalLogError::Malformed)?;
        for record in set.records {
            if let Some(key) = record.key {
                out.push((record.offset, (key, record.value)));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip() {
        let records = vec![
            (Bytes::from_static(b"a"), Some(Bytes::from_static(b"1"))),
            (Bytes::from_static(b"b"), None),
        ];
        let batch = encode_batch(&records, 5).unwrap();
        let mut out = Vec::new();
        decode_batches(batch, &mut out).unwrap();
        assert_eq!(out, vec![(0, records[0].clone()), (1, records[1].clone())]);
    }
}
