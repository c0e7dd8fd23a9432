//! Kafka record batches (magic v2): header parsing, produce-time validation and the patches the
//! broker applies (base offset, leader epoch, LogAppendTime). Batches are stored as sent.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions};
use thiserror::Error;

/// Size of the fixed v2 batch header, up to and including the record count.
pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes before `batchLength` counts: baseOffset (8) + batchLength (4).
pub const LOG_OVERHEAD: usize = 12;
const MAGIC_OFFSET: usize = 16;
const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;
const MAX_TIMESTAMP_OFFSET: usize = 35;
const PARTITION_LEADER_EPOCH_OFFSET: usize = 12;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// Why a produced batch was refused; each maps to one Kafka error code.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("record set ends inside a batch")]
    Truncated,
    #[error("record batch length {0} is below the batch header size")]
    BadLength(i32),
    #[error("produce requests carry exactly one record batch per partition")]
    NotOneBatch,
    #[error("record batch CRC mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("record batch magic {0} is not supported (only v2)")]
    UnsupportedMagic(i8),
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    TooLarge { size: usize, max: usize },
    #[error("invalid record batch: {0}")]
    Invalid(&'static str),
    #[error("produce request has no records")]
    Empty,
}

impl BatchError {
    /// The Kafka error code a Produce response carries for this error.
    pub fn error_code(&self) -> i16 {
        use kafka_protocol::ResponseError as E;
        match self {
            BatchError::CrcMismatch { .. } | BatchError::BadLength(_) => E::CorruptMessage.code(),
            // As Kafka: a record set without exactly one complete batch is an invalid record.
            BatchError::Truncated | BatchError::NotOneBatch | BatchError::Empty => {
                E::InvalidRecord.code()
            }
            BatchError::UnsupportedMagic(_) => E::UnsupportedForMessageFormat.code(),
            BatchError::TooLarge { .. } => E::MessageTooLarge.code(),
            BatchError::Invalid(_) => E::InvalidRecord.code(),
        }
    }
}

/// The fixed fields of a v2 record batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Whole batch size on disk, including the 12-byte log overhead.
    pub size: usize,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Parses the header at the start of `buf` (which must hold at least the 61 header bytes).
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < BATCH_HEADER_LEN {
            return Err(BatchError::Truncated);
        }
        let mut b = buf;
        let base_offset = b.get_i64();
        let batch_length = b.get_i32();
        let partition_leader_epoch = b.get_i32();
        let magic = b.get_i8();
        let crc = b.get_u32();
        let attributes = b.get_i16();
        let last_offset_delta = b.get_i32();
        let base_timestamp = b.get_i64();
        let max_timestamp = b.get_i64();
        let producer_id = b.get_i64();
        let producer_epoch = b.get_i16();
        let base_sequence = b.get_i32();
        let record_count = b.get_i32();
        if batch_length < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(BatchError::BadLength(batch_length));
        }
        Ok(BatchHeader {
            base_offset,
            size: LOG_OVERHEAD + batch_length as usize,
            partition_leader_epoch,
            magic,
            crc,
            attributes,
            last_offset_delta,
            base_timestamp,
            max_timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
            record_count,
        })
    }

    /// Reads only base offset and total size: enough to walk a segment without the full header.
    pub fn peek_extent(buf: &[u8]) -> Option<(i64, usize)> {
        if buf.len() < LOG_OVERHEAD {
            return None;
        }
        let mut b = buf;
        let base_offset = b.get_i64();
        let batch_length = b.get_i32();
        if batch_length < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32 {
            return None;
        }
        Some((base_offset, LOG_OVERHEAD + batch_length as usize))
    }

    /// Records in the whole batches of `buf` (a fetch response's record set), read from
    /// each batch header without decoding the records.
    pub fn count_records(mut buf: &[u8]) -> u64 {
        let mut records = 0u64;
        while let Some((_, size)) = BatchHeader::peek_extent(buf) {
            if size > buf.len() {
                break;
            }
            if let Some(count) = buf.get(57..61) {
                records += u64::from(u32::from_be_bytes([count[0], count[1], count[2], count[3]]));
            }
            buf = &buf[size..];
        }
        records
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    pub fn compression(&self) -> i16 {
        self.attributes & COMPRESSION_MASK
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }
}

/// CRC-32C over attributes..end, as the v2 format defines it.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..])
}

/// Checks one complete batch (`batch.len() == header.size`) for integrity: magic, CRC, and
/// for uncompressed batches the framing of every record.
pub fn verify_batch(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.magic != 2 {
        return Err(BatchError::UnsupportedMagic(header.magic));
    }
    if batch.len() != header.size {
        return Err(BatchError::Truncated);
    }
    let computed = compute_crc(batch);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(header)
}

/// A produced batch that passed validation, ready for offset assignment.
#[derive(Debug, Clone)]
pub struct ValidatedBatch {
    pub header: BatchHeader,
    pub bytes: Bytes,
}

impl ValidatedBatch {
    pub fn record_count(&self) -> i64 {
        i64::from(self.header.last_offset_delta) + 1
    }
}

/// Validates a Produce partition's `records` the way a Kafka broker does before anything is
/// appended: exactly one complete v2 batch, intact CRC, consistent counts, well-formed records.
/// `require_keys` is set for compacted topics, where a record without a key is invalid.
pub fn validate_produce_records(
    records: &Bytes,
    max_message_bytes: usize,
    require_keys: bool,
) -> Result<Vec<ValidatedBatch>, BatchError> {
    if records.is_empty() {
        return Err(BatchError::Empty);
    }
    if records.len() < LOG_OVERHEAD {
        return Err(BatchError::Truncated);
    }
    let batch_length = i32::from_be_bytes([records[8], records[9], records[10], records[11]]);
    if batch_length < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32 {
        return Err(BatchError::BadLength(batch_length));
    }
    let size = LOG_OVERHEAD + batch_length as usize;
    if size > records.len() {
        return Err(BatchError::Truncated);
    }
    if size < records.len() {
        return Err(BatchError::NotOneBatch);
    }
    if size > max_message_bytes {
        return Err(BatchError::TooLarge {
            size,
            max: max_message_bytes,
        });
    }
    let header = verify_batch(records)?;
    if header.record_count <= 0 {
        return Err(BatchError::Invalid("batch has no records"));
    }
    if i64::from(header.last_offset_delta) + 1 != i64::from(header.record_count) {
        return Err(BatchError::Invalid("inconsistent batch offset range"));
    }
    if header.compression() > 4 {
        return Err(BatchError::Invalid("unknown compression codec"));
    }
    if header.is_control() {
        return Err(BatchError::Invalid(
            "clients may not produce control batches",
        ));
    }
    // As Kafka's log validator: walk every record, decompressing when needed, so a batch
    // whose counts or framing lie is refused instead of stored.
    let section = super::records::records_section(&header, records)?;
    let mut keyless = false;
    super::records::walk_records(&section, header.record_count, |record| {
        keyless |= !record.has_key;
    })?;
    if require_keys && keyless {
        return Err(BatchError::Invalid(
            "a compacted topic cannot accept a record without a key",
        ));
    }
    Ok(vec![ValidatedBatch {
        header,
        bytes: records.clone(),
    }])
}

/// Zig-zag varint (Kafka's `varint`), at most 5 bytes.
pub fn read_varint(buf: &mut &[u8]) -> Option<i32> {
    let raw = read_unsigned_varint(buf, 5)?;
    let raw = u32::try_from(raw).ok()?;
    Some(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// Zig-zag varlong (Kafka's `varlong`), at most 10 bytes.
pub fn read_varlong(buf: &mut &[u8]) -> Option<i64> {
    let raw = read_unsigned_varint(buf, 10)?;
    Some(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

fn read_unsigned_varint(buf: &mut &[u8], max_bytes: usize) -> Option<u64> {
    let mut value: u64 = 0;
    for i in 0..max_bytes {
        let byte = *buf.first()?;
        buf.advance(1);
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Encodes records as one v2 batch (markers and internal logs use no compression); the
/// partition assigns its real base offset.
pub fn encode_records(records: &[Record], compression: Compression) -> Result<Bytes, BatchError> {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|_| BatchError::Invalid("records the broker made cannot be encoded"))?;
    Ok(buf.freeze())
}

/// The 16 bytes that replace a batch's first 16 on disk: the broker's base offset, the batch
/// length as sent and the partition leader epoch. Both patched fields lie outside the CRC, so
/// the stored batch is the client's bytes with this prefix, written without a copy.
pub fn patched_prefix(batch: &[u8], base_offset: i64, leader_epoch: i32) -> [u8; 16] {
    let mut prefix = [0u8; 16];
    prefix[..8].copy_from_slice(&base_offset.to_be_bytes());
    prefix[8..PARTITION_LEADER_EPOCH_OFFSET].copy_from_slice(&batch[8..12]);
    prefix[PARTITION_LEADER_EPOCH_OFFSET..MAGIC_OFFSET]
        .copy_from_slice(&leader_epoch.to_be_bytes());
    prefix
}

/// Rewrites a batch for a LogAppendTime topic: sets the timestamp-type bit and the max
/// timestamp to `now_ms`, then recomputes the CRC (both fields are covered by it).
pub fn with_log_append_time(batch: &Bytes, now_ms: i64) -> Bytes {
    let mut copy = BytesMut::from(&batch[..]);
    let attributes = i16::from_be_bytes([copy[ATTRIBUTES_OFFSET], copy[ATTRIBUTES_OFFSET + 1]])
        | TIMESTAMP_TYPE_BIT;
    copy[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
    copy[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = compute_crc(&copy);
    copy[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    copy.freeze()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use kafka_protocol::records::{Compression, Record, TimestampType};

    /// A real batch from the crate's encoder: `count` records starting at timestamp `ts`.
    pub fn sample_batch(count: i64, ts: i64, compression: Compression) -> Bytes {
        let records: Vec<Record> = (0..count)
            .map(|i| Record {
                transactional: false,
                control: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: i as i32,
                timestamp: ts + i,
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(format!("value-{i}"))),
                headers: Default::default(),
                delete_horizon: false,
            })
            .collect();
        encode_records(&records, compression).unwrap()
    }

    #[test]
    fn validates_real_batches() {
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let batch = sample_batch(5, 1_000, compression);
            let batches = validate_produce_records(&batch, 1 << 20, false).unwrap();
            assert_eq!(batches.len(), 1);
            assert_eq!(batches[0].record_count(), 5);
            assert_eq!(batches[0].header.max_timestamp, 1_004);
        }
    }

    #[test]
    fn rejects_bad_crc_truncation_and_size() {
        let batch = sample_batch(3, 0, Compression::None);
        let mut corrupt = BytesMut::from(&batch[..]);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0x01;
        let err = validate_produce_records(&corrupt.freeze(), 1 << 20, false).unwrap_err();
        assert!(matches!(err, BatchError::CrcMismatch { .. }));
        assert_eq!(err.error_code(), 2);

        let truncated = batch.slice(..batch.len() - 1);
        let err = validate_produce_records(&truncated, 1 << 20, false).unwrap_err();
        assert_eq!(err, BatchError::Truncated);
        assert_eq!(err.error_code(), 87);
        let mut two = BytesMut::from(&batch[..]);
        two.extend_from_slice(&batch);
        assert_eq!(
            validate_produce_records(&two.freeze(), 1 << 20, false).unwrap_err(),
            BatchError::NotOneBatch
        );
        let err = validate_produce_records(&batch, 10, false).unwrap_err();
        assert_eq!(err.error_code(), 10);
        assert_eq!(
            validate_produce_records(&Bytes::new(), 100, false).unwrap_err(),
            BatchError::Empty
        );
    }

    #[test]
    fn malformed_record_with_valid_crc_is_invalid() {
        let batch = sample_batch(2, 0, Compression::None);
        let mut bad = BytesMut::from(&batch[..]);
        // Claim a longer first record than the batch holds, then fix up the CRC.
        bad[BATCH_HEADER_LEN] = 0x7e;
        let crc = compute_crc(&bad);
        bad[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        let err = validate_produce_records(&bad.freeze(), 1 << 20, false).unwrap_err();
        assert_eq!(err.error_code(), 87);
    }

    #[test]
    fn prefix_patch_keeps_crc_valid() {
        let batch = sample_batch(4, 0, Compression::None);
        let prefix = patched_prefix(&batch, 1234, 7);
        let mut stored = BytesMut::from(&prefix[..]);
        stored.extend_from_slice(&batch[16..]);
        let header = verify_batch(&stored).unwrap();
        assert_eq!(header.base_offset, 1234);
        assert_eq!(header.last_offset(), 1237);
    }

    #[test]
    fn log_append_time_recomputes_crc() {
        let batch = sample_batch(2, 5, Compression::None);
        let stamped = with_log_append_time(&batch, 99_999);
        let header = verify_batch(&stamped).unwrap();
        assert!(header.is_log_append_time());
        assert_eq!(header.max_timestamp, 99_999);
    }

    #[test]
    fn varints_round_trip_kafka_examples() {
        let mut buf: &[u8] = &[0x01];
        assert_eq!(read_varint(&mut buf), Some(-1));
        let mut buf: &[u8] = &[0x96, 0x01];
        assert_eq!(read_varint(&mut buf), Some(75));
        let mut buf: &[u8] = &[0x80];
        assert_eq!(read_varint(&mut buf), None);
    }
}
