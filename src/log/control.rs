//! Transaction markers: the control batches that end a producer's transaction in a partition.
//! A marker is one record whose key says COMMIT or ABORT (Kafka's layout: key version 0 and
//! type; value version 0 and the coordinator epoch), written with the producer's id and epoch
//! and the transactional and control bits set.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{Compression, Record, TimestampType};

use super::batch::{BATCH_HEADER_LEN, BatchError, encode_records, read_varint, read_varlong};

/// How a transaction ended in a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    Abort,
    Commit,
}

impl ControlType {
    fn code(self) -> i16 {
        match self {
            ControlType::Abort => 0,
            ControlType::Commit => 1,
        }
    }

    pub fn from_commit(commit: bool) -> ControlType {
        if commit {
            ControlType::Commit
        } else {
            ControlType::Abort
        }
    }
}

/// Encodes a marker batch (base offset 0: the partition assigns the real one).
pub fn marker_batch(
    producer_id: i64,
    producer_epoch: i16,
    control: ControlType,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Result<Bytes, BatchError> {
    let mut key = BytesMut::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&control.code().to_be_bytes());
    let mut value = BytesMut::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let record = Record {
        transactional: true,
        control: true,
        partition_leader_epoch: 0,
        producer_id,
        producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp,
        key: Some(key.freeze()),
        value: Some(value.freeze()),
        headers: Default::default(),
        delete_horizon: false,
    };
    encode_records(&[record], Compression::None)
}

/// The type of a stored control batch (`batch` is the whole batch); `None` when its record
/// is not a marker this broker knows (Kafka defines more control types than the two).
pub fn control_type(batch: &[u8]) -> Option<ControlType> {
    let mut rest = batch.get(BATCH_HEADER_LEN..)?;
    let _length = read_varint(&mut rest)?;
    let (_attributes, tail) = rest.split_first()?;
    rest = tail;
    let _timestamp_delta = read_varlong(&mut rest)?;
    let _offset_delta = read_varint(&mut rest)?;
    let key_len = usize::try_from(read_varint(&mut rest)?).ok()?;
    let key = rest.get(..key_len)?;
    if key.len() < 4 {
        return None;
    }
    match i16::from_be_bytes([key[2], key[3]]) {
        0 => Some(ControlType::Abort),
        1 => Some(ControlType::Commit),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::verify_batch;

    #[test]
    fn markers_round_trip() {
        for control in [ControlType::Abort, ControlType::Commit] {
            let batch = marker_batch(42, 3, control, 0, 1_000).unwrap();
            let header = verify_batch(&batch).unwrap();
            assert!(header.is_control() && header.is_transactional());
            assert_eq!((header.producer_id, header.producer_epoch), (42, 3));
            assert_eq!(header.record_count, 1);
            assert_eq!(control_type(&batch), Some(control));
        }
    }

    #[test]
    fn truncated_markers_are_not_read() {
        let batch = marker_batch(1, 0, ControlType::Commit, 0, 0).unwrap();
        assert_eq!(control_type(&batch[..BATCH_HEADER_LEN + 3]), None);
        assert_eq!(control_type(&batch[..10]), None);
    }
}
