//! The records inside a v2 batch: decompression with an output bound, and a walker over the
//! record framing. Used to validate produced batches (as Kafka's log validator does) and to
//! find records by timestamp, without trusting any count or length from the wire.

use std::io::Read;

use bytes::Buf;

use super::batch::{BATCH_HEADER_LEN, BatchError, BatchHeader, read_varint, read_varlong};

/// Most bytes one batch may decompress to: bounds memory against compression bombs.
pub const MAX_DECOMPRESSED_BYTES: usize = 128 << 20;

const NONE: i16 = 0;
const GZIP: i16 = 1;
const SNAPPY: i16 = 2;
const LZ4: i16 = 3;
const ZSTD: i16 = 4;

/// The xerial snappy-java stream header Kafka's Java client writes before snappy blocks.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

/// What a walk sees of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordInfo {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub has_key: bool,
}

/// The uncompressed records section of a complete batch (`batch` includes its header).
pub fn records_section<'a>(
    header: &BatchHeader,
    batch: &'a [u8],
) -> Result<std::borrow::Cow<'a, [u8]>, BatchError> {
    let data = batch.get(BATCH_HEADER_LEN..).ok_or(BatchError::Truncated)?;
    if header.compression() == NONE {
        return Ok(std::borrow::Cow::Borrowed(data));
    }
    decompress(header.compression(), data, MAX_DECOMPRESSED_BYTES).map(std::borrow::Cow::Owned)
}

/// Decompresses `data` with the batch's codec, failing beyond `cap` output bytes.
pub fn decompress(codec: i16, data: &[u8], cap: usize) -> Result<Vec<u8>, BatchError> {
    const BAD: BatchError = BatchError::Invalid("compressed records cannot be decompressed");
    let mut out = Vec::new();
    let limit = cap as u64 + 1;
    match codec {
        GZIP => {
            flate2::read::MultiGzDecoder::new(data)
                .take(limit)
                .read_to_end(&mut out)
                .map_err(|_| BAD)?;
        }
        LZ4 => {
            lz4::Decoder::new(data)
                .map_err(|_| BAD)?
                .take(limit)
                .read_to_end(&mut out)
                .map_err(|_| BAD)?;
        }
        ZSTD => {
            zstd::stream::read::Decoder::new(data)
                .map_err(|_| BAD)?
                .take(limit)
                .read_to_end(&mut out)
                .map_err(|_| BAD)?;
        }
        SNAPPY => decompress_snappy(data, cap, &mut out)?,
        _ => return Err(BatchError::Invalid("unknown compression codec")),
    }
    if out.len() > cap {
        return Err(BatchError::Invalid(
            "batch decompresses beyond the broker's limit",
        ));
    }
    Ok(out)
}

/// Snappy as Kafka clients send it: xerial-framed blocks (Java) or one raw block.
fn decompress_snappy(data: &[u8], cap: usize, out: &mut Vec<u8>) -> Result<(), BatchError> {
    const BAD: BatchError = BatchError::Invalid("snappy records cannot be decompressed");
    let block = |raw: &[u8], out: &mut Vec<u8>| -> Result<(), BatchError> {
        let len = snap::raw::decompress_len(raw).map_err(|_| BAD)?;
        if out.len() + len > cap {
            return Err(BatchError::Invalid(
                "batch decompresses beyond the broker's limit",
            ));
        }
        let start = out.len();
        out.resize(start + len, 0);
        let written = snap::raw::Decoder::new()
            .decompress(raw, &mut out[start..])
            .map_err(|_| BAD)?;
        out.truncate(start + written);
        Ok(())
    };
    if !data.starts_with(XERIAL_MAGIC) {
        return block(data, out);
    }
    let mut rest = data.get(XERIAL_HEADER_LEN..).ok_or(BAD)?;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(BAD);
        }
        let len = rest.get_u32() as usize;
        if len > rest.len() {
            return Err(BAD);
        }
        let (raw, tail) = rest.split_at(len);
        block(raw, out)?;
        rest = tail;
    }
    Ok(())
}

/// Walks `count` records: every length must fit, offset deltas must count up from 0 and no
/// bytes may follow the last record, so consumers never get a batch they cannot parse.
pub fn walk_records(
    mut buf: &[u8],
    count: i32,
    mut visit: impl FnMut(RecordInfo),
) -> Result<(), BatchError> {
    const BAD: BatchError = BatchError::Invalid("malformed record in batch");
    for expected_delta in 0..count {
        let len = read_varint(&mut buf).ok_or(BAD)?;
        let len = usize::try_from(len).map_err(|_| BAD)?;
        if len > buf.len() {
            return Err(BAD);
        }
        let (mut record, rest) = buf.split_at(len);
        buf = rest;
        if record.is_empty() {
            return Err(BAD);
        }
        record.advance(1); // attributes
        let timestamp_delta = read_varlong(&mut record).ok_or(BAD)?;
        if read_varint(&mut record).ok_or(BAD)? != expected_delta {
            return Err(BatchError::Invalid(
                "record offset deltas are not sequential",
            ));
        }
        let has_key = skip_nullable_bytes(&mut record).ok_or(BAD)?;
        skip_nullable_bytes(&mut record).ok_or(BAD)?; // value
        let headers = read_varint(&mut record).ok_or(BAD)?;
        if headers < 0 {
            return Err(BAD);
        }
        for _ in 0..headers {
            let key_len = read_varint(&mut record).ok_or(BAD)?;
            if key_len < 0 || key_len as usize > record.len() {
                return Err(BAD);
            }
            record.advance(key_len as usize);
            skip_nullable_bytes(&mut record).ok_or(BAD)?;
        }
        if !record.is_empty() {
            return Err(BAD);
        }
        visit(RecordInfo {
            offset_delta: expected_delta,
            timestamp_delta,
            has_key,
        });
    }
    if !buf.is_empty() {
        return Err(BatchError::Invalid("trailing bytes after the last record"));
    }
    Ok(())
}

/// Skips a varint-length-prefixed nullable byte string; returns whether it was non-null.
fn skip_nullable_bytes(buf: &mut &[u8]) -> Option<bool> {
    let len = read_varint(buf)?;
    if len < -1 {
        return None;
    }
    if len > 0 {
        let len = len as usize;
        if len > buf.len() {
            return None;
        }
        buf.advance(len);
    }
    Some(len >= 0)
}

/// `(offset, timestamp)` of every record of a stored batch.
pub fn offsets_and_timestamps(batch: &[u8]) -> Result<Vec<(i64, i64)>, BatchError> {
    let header = BatchHeader::parse(batch)?;
    let section = records_section(&header, batch)?;
    let mut out = Vec::new();
    walk_records(&section, header.record_count, |record| {
        let timestamp = if header.is_log_append_time() {
            // Every record of a LogAppendTime batch carries the batch's max timestamp.
            header.max_timestamp
        } else {
            header.base_timestamp + record.timestamp_delta
        };
        out.push((
            header.base_offset + i64::from(record.offset_delta),
            timestamp,
        ));
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::tests::sample_batch;
    use kafka_protocol::records::Compression;

    #[test]
    fn every_codec_round_trips_through_the_walker() {
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let batch = sample_batch(50, 1_000, compression);
            let records = offsets_and_timestamps(&batch).unwrap();
            assert_eq!(records.len(), 50, "{compression:?}");
            assert_eq!(records[7], (7, 1_007), "{compression:?}");
        }
    }

    #[test]
    fn decompression_is_bounded() {
        let big = vec![0u8; 1 << 20];
        let mut compressed = Vec::new();
        {
            use std::io::Write;
            let mut encoder =
                flate2::write::GzEncoder::new(&mut compressed, flate2::Compression::best());
            encoder.write_all(&big).unwrap();
            encoder.finish().unwrap();
        }
        assert!(decompress(GZIP, &compressed, 1 << 20).is_ok());
        assert!(decompress(GZIP, &compressed, (1 << 20) - 1).is_err());
        assert!(decompress(ZSTD, b"not zstd", 1 << 20).is_err());
        assert!(
            decompress(
                SNAPPY,
                b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01\xff",
                10
            )
            .is_err()
        );
    }
}
