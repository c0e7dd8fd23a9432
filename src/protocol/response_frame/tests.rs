use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, ResponseKind, TopicName};
use kafka_protocol::protocol::{Message, StrBytes};

use super::*;
use crate::protocol::codec::{encode_response, encode_whole};

/// Puts every record set of `fetch` through `Spliced::place`, as the fetch handler does.
fn take(fetch: &mut FetchResponse) -> Spliced {
    let mut spliced = Spliced::default();
    for topic in &mut fetch.responses {
        for partition in &mut topic.partitions {
            if let Some(records) = partition.records.take() {
                partition.records = Some(spliced.place(RecordSet::Memory(records)));
            }
        }
    }
    spliced
}

fn encode(version: i16, mut fetch: FetchResponse) -> ResponseFrame {
    let runs = take(&mut fetch);
    encode_response(
        ApiKey::Fetch,
        version,
        42,
        ResponseKind::Fetch(fetch),
        Some(runs),
    )
    .unwrap()
}

/// Record sets of sizes around the splice threshold and the varint length boundaries.
const SIZES: [usize; 9] = [
    0, 100, 4095, 4096, 16_382, 16_383, 16_384, 70_000, 2_100_000,
];

fn records(len: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect::<Vec<u8>>(),
    )
}

fn response(version: i16) -> FetchResponse {
    let mut fetch = FetchResponse::default();
    fetch.session_id = 0;
    for (t, name) in ["a", "topic-b"].into_iter().enumerate() {
        let mut topic = FetchableTopicResponse::default();
        if version >= 13 {
            topic.topic_id = uuid::Uuid::from_u128(7 + t as u128);
        } else {
            topic.topic = TopicName(StrBytes::from_static_str(name));
        }
        for (p, &len) in SIZES.iter().enumerate() {
            let mut data = PartitionData::default();
            data.partition_index = p as i32;
            data.high_watermark = 1_000 + p as i64;
            data.last_stable_offset = 900;
            if p % 3 == 0 {
                let mut aborted = AbortedTransaction::default();
                aborted.producer_id = kafka_protocol::messages::ProducerId(5);
                aborted.first_offset = 12;
                data.aborted_transactions = Some(vec![aborted]);
            }
            data.records = (p != 1).then(|| records(len, (t * 16 + p) as u8));
            topic.partitions.push(data);
        }
        fetch.responses.push(topic);
    }
    fetch
}

#[test]
fn spliced_frames_are_the_whole_encoding_byte_for_byte() {
    for version in 4..=FetchRequest::VERSIONS.max {
        let fetch = response(version);
        let whole = encode_whole(
            ApiKey::Fetch,
            version,
            42,
            &ResponseKind::Fetch(fetch.clone()),
        )
        .unwrap();
        let frame = encode(version, fetch.clone());
        assert_eq!(frame.len(), whole.len(), "v{version}");
        assert_eq!(frame.to_bytes().unwrap(), whole, "v{version}");
        // Every record set of at least SPLICE_MIN is its own run, not a copy.
        let big: Vec<&Bytes> = fetch
            .responses
            .iter()
            .flat_map(|t| &t.partitions)
            .filter_map(|p| p.records.as_ref())
            .filter(|r| r.len() >= SPLICE_MIN)
            .collect();
        assert_eq!(big.len(), 12);
        for records in big {
            assert!(
                frame.parts().iter().any(|part| matches!(part,
                    Run::Bytes(b) if b.as_ptr() == records.as_ptr() && b.len() == records.len())),
                "v{version}: a record set of {} bytes was copied",
                records.len()
            );
        }
        assert_eq!(frame.parts().len(), 2 * 12 + 1);
    }
}

#[test]
fn small_record_sets_stay_in_one_buffer() {
    let mut fetch = response(12);
    for topic in &mut fetch.responses {
        for partition in &mut topic.partitions {
            partition.records = partition
                .records
                .take()
                .map(|r| r.slice(..r.len().min(100)));
        }
    }
    let frame = encode(12, fetch);
    assert_eq!(frame.parts().len(), 1);
}

#[test]
fn a_missing_marker_gives_the_records_back() {
    for version in [11, 12] {
        let original = response(version);
        let mut fetch = original.clone();
        let spliced = take(&mut fetch);
        assert!(!spliced.is_empty());
        assert_ne!(fetch, original);
        // A frame without the markers (here: the original's own encoding) is refused...
        let whole = encode_whole(
            ApiKey::Fetch,
            version,
            1,
            &ResponseKind::Fetch(original.clone()),
        )
        .unwrap();
        let Err(spliced) = spliced.splice(whole, version >= 12) else {
            panic!("spliced a frame without markers");
        };
        // ...and the records go back where they were.
        spliced.restore(&mut fetch).unwrap();
        assert_eq!(fetch, original);
    }
}

#[test]
fn length_prefixes_are_kafkas() {
    assert_eq!(length_prefix(16, true).unwrap(), vec![17]);
    assert_eq!(length_prefix(126, true).unwrap(), vec![127]);
    assert_eq!(length_prefix(127, true).unwrap(), vec![0x80, 0x01]);
    assert_eq!(length_prefix(16, false).unwrap(), vec![0, 0, 0, 16]);
    assert_eq!(
        length_prefix(70_000, false).unwrap(),
        70_000i32.to_be_bytes()
    );
    assert!(length_prefix(usize::MAX, true).is_none());
}

/// A response whose even partitions' record sets are ranges of a file: with markers, the
/// runs placed for them, and the same response with the bytes in place.
fn with_file_ranges(
    version: i16,
    file: &std::sync::Arc<std::fs::File>,
) -> (FetchResponse, Spliced, FetchResponse) {
    let mut fetch = response(version);
    let mut expected = fetch.clone();
    let mut runs = Spliced::default();
    for (t, topic) in fetch.responses.iter_mut().enumerate() {
        for (p, partition) in topic.partitions.iter_mut().enumerate() {
            let set = if p % 2 == 0 {
                RecordSet::File(FileSlice {
                    file: file.clone(),
                    pos: (1_000 * (t * 16 + p)) as u64,
                    len: 40_000 + 17 * p,
                    records: 0,
                    next_offset: 0,
                })
            } else {
                RecordSet::Memory(partition.records.take().unwrap_or_default())
            };
            expected.responses[t].partitions[p].records = Some(set.clone().into_bytes().unwrap());
            partition.records = Some(runs.place(set));
        }
    }
    (fetch, runs, expected)
}

/// A record set given as a range of a file is a file run of the frame, and the frame is the
/// whole encoding of the same bytes; the fallback reads it back into the response.
#[test]
fn file_ranges_are_runs_of_their_own() {
    use std::io::Write;
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&records(300_000, 9)).unwrap();
    let file = std::sync::Arc::new(file);
    for version in [11, 12, 16] {
        let (fetch, runs, expected) = with_file_ranges(version, &file);
        let whole = encode_whole(
            ApiKey::Fetch,
            version,
            42,
            &ResponseKind::Fetch(expected.clone()),
        )
        .unwrap();
        let frame = encode_response(
            ApiKey::Fetch,
            version,
            42,
            ResponseKind::Fetch(fetch),
            Some(runs),
        )
        .unwrap();
        let files = frame
            .parts()
            .iter()
            .filter(|part| matches!(part, Run::File(_)))
            .count();
        assert_eq!(files, 2 * SIZES.len().div_ceil(2), "v{version}");
        assert_eq!(frame.len(), whole.len(), "v{version}");
        assert_eq!(frame.to_bytes().unwrap(), whole, "v{version}");

        // A frame without the markers is refused, and the restore reads the file back.
        let (mut fetch, runs, expected) = with_file_ranges(version, &file);
        let Err(runs) = runs.splice(whole.clone(), version >= 12) else {
            panic!("spliced a frame without markers");
        };
        runs.restore(&mut fetch).unwrap();
        assert_eq!(fetch, expected, "v{version}");
    }
}
