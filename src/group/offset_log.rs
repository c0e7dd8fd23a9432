//! The records of the committed-offsets log. Keys and values use the layout of Kafka's
//! `__consumer_offsets` offset-commit records (key v1: group, topic, partition; value v3:
//! offset, leader epoch, metadata, commit timestamp), so the log reads like Kafka's; a null
//! value is a tombstone (offset deleted).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::log::internal_log::KeyValue;

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

/// An offset record as the internal log stores it (a `None` value is a tombstone).
pub fn encode_entry(key: &OffsetKey, value: Option<&OffsetValue>) -> KeyValue {
    (key.encode(), value.map(OffsetValue::encode))
}

/// Reads back a stored offset record; `None` when its key or value cannot be read.
pub fn decode_entry((key, value): &KeyValue) -> Option<(OffsetKey, Option<OffsetValue>)> {
    let key = OffsetKey::decode(key).ok()?;
    let value = value.as_deref().map(OffsetValue::decode).transpose().ok()?;
    Some((key, value))
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
        let stored = encode_entry(&key, Some(&value));
        assert_eq!(decode_entry(&stored), Some((key.clone(), Some(value))));
        assert_eq!(decode_entry(&encode_entry(&key, None)), Some((key, None)));
        assert!(OffsetKey::decode(&[0, 1, 0]).is_err());
        assert!(OffsetValue::decode(&[0, 9]).is_err());
    }
}
