//! The records of the committed-offsets log. Keys and values use the layout of Kafka's
//! `__consumer_offsets` offset-commit records (key v1: group, topic, partition; value v3:
//! offset, leader epoch, metadata, commit timestamp), so the log reads like Kafka's; a null
//! value is a tombstone (offset deleted).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

const KEY_VERSION: i16 = 1;
const VALUE_VERSION: i16 = 3;

/// The key of one committed offset.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OffsetKey {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

/// One committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum OffsetRecordError {
    #[error("malformed committed-offset record")]
    Malformed,
    #[error("unsupported committed-offset record version {0}")]
    Version(i16),
    #[error("cannot encode committed offsets: {0}")]
    Encode(String),
}

fn put_string(buf: &mut BytesMut, value: Option<&str>) {
    match value {
        Some(s) => {
            // Callers bound names and metadata far below i16::MAX bytes.
            let bytes = &s.as_bytes()[..s.len().min(i16::MAX as usize)];
            buf.put_i16(bytes.len() as i16);
            buf.put_slice(bytes);
        }
        None => buf.put_i16(-1),
    }
}

fn get_string(buf: &mut &[u8]) -> Result<Option<String>, OffsetRecordError> {
    if buf.remaining() < 2 {
        return Err(OffsetRecordError::Malformed);
    }
    let len = buf.get_i16();
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    if buf.remaining() < len {
        return Err(OffsetRecordError::Malformed);
    }
    let text = String::from_utf8(buf[..len].to_vec()).map_err(|_| OffsetRecordError::Malformed)?;
    buf.advance(len);
    Ok(Some(text))
}

impl OffsetKey {
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(10 + self.group.len() + self.topic.len());
        buf.put_i16(KEY_VERSION);
        put_string(&mut buf, Some(&self.group));
        put_string(&mut buf, Some(&self.topic));
        buf.put_i32(self.partition);
        buf.freeze()
    }

    pub fn decode(mut buf: &[u8]) -> Result<OffsetKey, OffsetRecordError> {
        if buf.remaining() < 2 {
            return Err(OffsetRecordError::Malformed);
        }
        let version = buf.get_i16();
        if version != KEY_VERSION {
            return Err(OffsetRecordError::Version(version));
        }
        let group = get_string(&mut buf)?.ok_or(OffsetRecordError::Malformed)?;
        let topic = get_string(&mut buf)?.ok_or(OffsetRecordError::Malformed)?;
        if buf.remaining() != 4 {
            return Err(OffsetRecordError::Malformed);
        }
        Ok(OffsetKey {
            group,
            topic,
            partition: buf.get_i32(),
        })
    }
}

impl OffsetValue {
    pub fn encode(&self) -> Bytes {
        let metadata_len = self.metadata.as_ref().map_or(0, String::len);
        let mut buf = BytesMut::with_capacity(24 + metadata_len);
        buf.put_i16(VALUE_VERSION);
        buf.put_i64(self.offset);
        buf.put_i32(self.leader_epoch);
        put_string(&mut buf, self.metadata.as_deref());
        buf.put_i64(self.commit_timestamp);
        buf.freeze()
    }

    pub fn decode(mut buf: &[u8]) -> Result<OffsetValue, OffsetRecordError> {
        if buf.remaining() < 2 {
            return Err(OffsetRecordError::Malformed);
        }
        let version = buf.get_i16();
        if version != VALUE_VERSION {
            return Err(OffsetRecordError::Version(version));
        }
        if buf.remaining() < 12 {
            return Err(OffsetRecordError::Malformed);
        }
        let offset = buf.get_i64();
        let leader_epoch = buf.get_i32();
        let metadata = get_string(&mut buf)?;
        if buf.remaining() != 8 {
            return Err(OffsetRecordError::Malformed);
        }
        Ok(OffsetValue {
            offset,
            leader_epoch,
            metadata,
            commit_timestamp: buf.get_i64(),
        })
    }
}

/// Encodes entries (a `None` value is a tombstone) as one uncompressed record batch.
pub fn encode_batch(
    entries: &[(OffsetKey, Option<OffsetValue>)],
    timestamp: i64,
) -> Result<Bytes, OffsetRecordError> {
    let records: Vec<Record> = entries
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
            key: Some(key.encode()),
            value: value.as_ref().map(OffsetValue::encode),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| OffsetRecordError::Encode(e.to_string()))?;
    Ok(buf.freeze())
}

/// A stored record: its log offset, key and value (`None`: a tombstone).
pub type StoredRecord = (i64, OffsetKey, Option<OffsetValue>);

/// Decodes every record of stored batches: `(log offset, key, value)`, and how many records
/// were skipped because their key or value could not be read.
pub fn decode_batches(mut bytes: Bytes) -> Result<(Vec<StoredRecord>, usize), OffsetRecordError> {
    let mut out = Vec::new();
    let mut skipped = 0;
    while bytes.has_remaining() {
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes)
            .map_err(|_| OffsetRecordError::Malformed)?;
        for record in set.records {
            let decoded = record
                .key
                .as_deref()
                .map(OffsetKey::decode)
                .and_then(|key| {
                    let value = record.value.as_deref().map(OffsetValue::decode).transpose();
                    match (key, value) {
                        (Ok(key), Ok(value)) => Some((record.offset, key, value)),
                        _ => None,
                    }
                });
            match decoded {
                Some(entry) => out.push(entry),
                None => skipped += 1,
            }
        }
    }
    Ok((out, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let key = OffsetKey {
            group: "g".into(),
            topic: "orders".into(),
            partition: 3,
        };
        let value = OffsetValue {
            offset: 42,
            leader_epoch: 0,
            metadata: Some("meta".into()),
            commit_timestamp: 1_700_000_000_000,
        };
        assert_eq!(OffsetKey::decode(&key.encode()).unwrap(), key);
        assert_eq!(OffsetValue::decode(&value.encode()).unwrap(), value);
        let batch = encode_batch(
            &[(key.clone(), Some(value.clone())), (key.clone(), None)],
            1,
        )
        .unwrap();
        let (decoded, skipped) = decode_batches(batch).unwrap();
        assert_eq!(decoded, vec![(0, key.clone(), Some(value)), (1, key, None)]);
        assert_eq!(skipped, 0);
        assert!(OffsetKey::decode(&[0, 1, 0]).is_err());
        assert!(OffsetValue::decode(&[0, 9]).is_err());
    }
}
