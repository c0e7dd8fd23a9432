//! Fuzz targets: every parser that bytes from a client or the disk reach, as plain functions
//! over `&[u8]`. `fuzz/` drives them with libFuzzer (`scripts/fuzz`, nightly) and
//! `tests/fuzz_replay.rs` replays the committed corpus and seeded mutations of it under
//! stable `cargo test` with a memory cap. A target must return on any input: no panic, no
//! unbounded allocation, no corrupted state.

use std::io::IoSlice;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;

use crate::disk::Disk;
use crate::disk::sim::{Faults, SimDisk};
use crate::log::batch::{BatchHeader, validate_produce_records};
use crate::log::records::decompress;
use crate::log::segment::{Segment, SegmentRole, summary};
use crate::protocol::api_table::APIS;
use crate::protocol::codec::{decode_request, frame_length};

/// A fuzz target: must return on any input.
pub type Target = fn(&[u8]);

/// The targets by name (the names of `fuzz/fuzz_targets/*.rs` and `fuzz/corpus/*`).
pub const TARGETS: &[(&str, Target)] = &[
    ("request_frame", request_frame),
    ("request_body", request_body),
    ("produce_records", produce_records),
    ("decompress", decompress_capped),
    ("segment_recovery", segment_recovery),
    ("segment_summary", segment_summary),
];

/// Output bound of the decompression target (the broker's own is 128 MiB per batch).
pub const DECOMPRESS_CAP: usize = 1 << 20;

/// A frame as the connection reads it: length prefix checked against a 1 MiB limit, then
/// header and body decoded by api key and version.
pub fn request_frame(data: &[u8]) {
    let Some((prefix, body)) = data.split_first_chunk::<4>() else {
        return;
    };
    if frame_length(*prefix, 1 << 20).is_ok() {
        let _ = decode_request(Bytes::copy_from_slice(body));
    }
}

/// The header and body decoders of one served (api key, version), picked by the first two
/// bytes, so every request decoder is reached however rarely random headers name it.
pub fn request_body(data: &[u8]) {
    let Some(([pick, version], rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let api = APIS[usize::from(*pick) % APIS.len()];
    let span = (api.max - api.min_served + 1).max(1) as u8;
    let version = api.min_served + i16::from(*version % span);
    let mut buf = Bytes::copy_from_slice(rest);
    if RequestHeader::decode(&mut buf, api.key.request_header_version(version)).is_ok() {
        let _ = RequestKind::decode(api.key, &mut buf, version);
    }
}

/// A Produce partition's `records` through the broker's validation (CRC, framing, every
/// record, decompression); the first byte says whether keys are required.
pub fn produce_records(data: &[u8]) {
    let Some((flags, records)) = data.split_first() else {
        return;
    };
    let records = Bytes::copy_from_slice(records);
    if let Ok(batches) = validate_produce_records(&records, 1 << 20, flags & 1 == 1) {
        for batch in batches {
            assert_eq!(batch.bytes.len(), records.len());
        }
    }
}

/// Every codec's decompressor (first byte picks it) with the output capped.
pub fn decompress_capped(data: &[u8]) {
    let Some((codec, compressed)) = data.split_first() else {
        return;
    };
    if let Ok(out) = decompress(i16::from(codec % 5), compressed, DECOMPRESS_CAP) {
        assert!(out.len() <= DECOMPRESS_CAP);
    }
}

/// Start-up recovery of a segment file holding arbitrary bytes (a torn or corrupt tail,
/// or garbage): it keeps a prefix of whole, CRC-valid batches and truncates the rest.
pub fn segment_recovery(data: &[u8]) {
    let disk = SimDisk::new(0, Faults::default());
    let dir = Path::new("/p");
    let written = disk.create_dir_all(dir).and_then(|()| {
        disk.open_append(&dir.join("00000000000000000000.log"), true)?
            .append(&mut [IoSlice::new(data)])
    });
    if written.is_err() {
        return;
    }
    let disk: Arc<dyn Disk> = Arc::new(disk);
    let Ok((segment, report)) =
        Segment::open(&disk, dir, 0, 4096, SegmentRole::Active { verify: true }, 0)
    else {
        return;
    };
    let kept = usize::try_from(report.valid_bytes).unwrap_or(usize::MAX);
    assert!(kept <= data.len());
    assert_eq!(segment.size(), report.valid_bytes);
    // What was kept is whole batches, each with an intact CRC.
    let mut rest = &data[..kept];
    while !rest.is_empty() {
        let Some((_, len)) = BatchHeader::peek_extent(rest) else {
            panic!("recovery kept a partial batch");
        };
        assert!(len <= rest.len(), "recovery kept a partial batch");
        assert!(crate::log::batch::verify_batch(&rest[..len]).is_ok());
        rest = &rest[len..];
    }
}

/// A segment summary's decoder, past its checksum (a damaged summary file must only make the
/// start read the segment): whatever decodes must encode back to the same bytes.
pub fn segment_summary(data: &[u8]) {
    let Some((extent, history)) = summary::decode_body(data) else {
        return;
    };
    let encoded = summary::encode(&extent, &history);
    let again = summary::decode(&encoded);
    assert!(again.is_some_and(|(e, _)| e == extent));
}

/// Seed inputs of `segment_summary`: summary bodies (no checksum) of segments with no
/// producers, idempotent producers, and transactions begun, committed and aborted.
pub fn segment_summary_seeds() -> Vec<(String, Vec<u8>)> {
    use crate::log::control::ControlType;
    use crate::log::producer_state::{ProducerBatch, ProducerStates, SavedProducer};
    use crate::log::transactions::TxnEvent;

    let extent = summary::SummaryExtent {
        base_offset: 1_000,
        size: 65_536,
        next_offset: 1_400,
        max_timestamp: 1_700_000_000_000,
        max_timestamp_batch: 1_390,
    };
    let producer = |id: i64, batches: i32| SavedProducer {
        producer_id: id,
        epoch: 3,
        last_timestamp_ms: 1_700_000_000_000,
        batches: (0..batches)
            .map(|i| ProducerBatch {
                producer_id: id,
                epoch: 3,
                first_seq: i * 10,
                last_seq: i * 10 + 9,
                base_offset: 1_000 + i64::from(i) * 10,
                last_offset: 1_009 + i64::from(i) * 10,
                timestamp_ms: 1_700_000_000_000,
            })
            .collect(),
    };
    let txns = vec![
        TxnEvent::Begin {
            producer_id: 5,
            offset: 1_010,
        },
        TxnEvent::End {
            producer_id: 5,
            offset: 1_020,
            control: ControlType::Commit,
        },
        TxnEvent::Begin {
            producer_id: 6,
            offset: 1_030,
        },
        TxnEvent::End {
            producer_id: 6,
            offset: 1_040,
            control: ControlType::Abort,
        },
        TxnEvent::Begin {
            producer_id: 5,
            offset: 1_050,
        },
    ];
    let cases = [
        ("empty", vec![], vec![]),
        ("one-producer", vec![producer(1, 1)], vec![]),
        ("full-window", vec![producer(1, 5), producer(2, 3)], vec![]),
        (
            "transactions",
            vec![producer(5, 2), producer(6, 1)],
            txns.clone(),
        ),
        ("markers-only", vec![producer(9, 0)], txns),
    ];
    cases
        .into_iter()
        .map(|(name, producers, events)| {
            let history =
                summary::SegmentHistory::from_parts(ProducerStates::restore(producers), events);
            let mut bytes = summary::encode(&extent, &history);
            bytes.truncate(bytes.len() - 4);
            (name.to_string(), bytes)
        })
        .collect()
}
