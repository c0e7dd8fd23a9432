//! Record batches for `weir produce` and `weir consume`: encoding (magic 2, uncompressed),
//! decoding whole batches of a Fetch answer, and Kafka's key partitioner, so the CLI puts a
//! keyed record in the partition any Kafka client would.

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::ClientError;
use crate::log::batch::BatchHeader;

/// A record to produce.
#[derive(Debug, Clone)]
pub struct OutRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    pub timestamp: i64,
}

/// One uncompressed batch of `records`; the broker assigns the offsets.
pub fn encode_batch(records: &[OutRecord]) -> Result<Bytes, ClientError> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch wherever offset - sequence changes; this keeps
            // one batch whose base sequence is -1 (not idempotent).
            sequence: i as i32 - 1,
            timestamp: r.timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                .collect::<IndexMap<_, _>>(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options)
        .map_err(|e| ClientError::Other(format!("cannot encode a record batch: {e}")))?;
    Ok(buf.freeze())
}

/// The data records of the whole batches in `data` (a Fetch answer may end with a partial
/// batch, which is left for the next fetch), control records dropped, and the offset after
/// the last whole batch (`None` when there is none): where the next fetch starts even when
/// a batch held only a transaction marker.
pub fn decode_records(data: &Bytes) -> Result<(Vec<Record>, Option<i64>), ClientError> {
    let mut whole = 0usize;
    let mut next = None;
    while let Some((_, size)) = BatchHeader::peek_extent(&data[whole..]) {
        if whole + size > data.len() {
            break;
        }
        if let Ok(header) = BatchHeader::parse(&data[whole..]) {
            next = Some(header.last_offset() + 1);
        }
        whole += size;
    }
    let mut buf = data.slice(..whole);
    let sets = RecordBatchDecoder::decode_all(&mut buf)
        .map_err(|e| ClientError::Other(format!("cannot decode fetched records: {e}")))?;
    let records = sets
        .into_iter()
        .flat_map(|set| set.records)
        .filter(|r| !r.control)
        .collect();
    Ok((records, next))
}

/// Kafka's murmur2 hash (the Java client's `Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for a keyed record.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }

    #[test]
    fn batches_round_trip() {
        let records: Vec<OutRecord> = (0..3)
            .map(|i| OutRecord {
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("v{i}"))),
                headers: vec![("h".into(), Some(Bytes::from_static(b"x")))],
                timestamp: 1_700_000_000_000 + i,
            })
            .collect();
        let batch = encode_batch(&records).unwrap_or_default();
        // One batch, as a Produce request must carry per partition.
        assert_eq!(
            BatchHeader::peek_extent(&batch).map(|(_, size)| size),
            Some(batch.len())
        );
        let mut data = BytesMut::from(&batch[..]);
        data.extend_from_slice(&batch[..20]); // a partial batch at the end is left alone
        let (decoded, next) = decode_records(&data.freeze()).unwrap_or_default();
        assert_eq!(next, Some(3));
        assert_eq!(decoded.len(), 3);
        assert_eq!(decoded[2].value.as_deref(), Some(&b"v2"[..]));
        assert_eq!(decoded[1].timestamp, 1_700_000_000_001);
    }
}
