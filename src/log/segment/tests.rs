use super::*;
use crate::log::batch::patched_prefix;
use crate::log::batch::tests::sample_batch;
use kafka_protocol::records::Compression;

const VERIFY: SegmentRole = SegmentRole::Active { verify: true };

fn os() -> Arc<dyn Disk> {
    crate::disk::os()
}

fn append(segment: &Segment, next: &mut i64, count: i64, ts: i64) {
    let bytes = sample_batch(count, ts, Compression::None);
    let batch = AppendBatch {
        prefix: patched_prefix(&bytes, *next, 0),
        base_offset: *next,
        last_offset: *next + count - 1,
        max_timestamp: ts + count - 1,
        bytes,
    };
    segment.append(&[batch]).unwrap();
    *next += count;
}

#[test]
fn file_names_are_20_digits() {
    assert_eq!(segment_file_name(42, "log"), "00000000000000000042.log");
    assert_eq!(
        parse_segment_file_name("00000000000000000042.log"),
        Some(42)
    );
    assert_eq!(parse_segment_file_name("42.log"), None);
    assert_eq!(parse_segment_file_name("00000000000000000042.index"), None);
}

#[test]
fn append_read_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let segment = Segment::create(&os(), dir.path(), 100, 0, 0).unwrap();
    let mut next = 100;
    for i in 0..10 {
        append(&segment, &mut next, 3, 1_000 * i);
    }
    assert_eq!(segment.next_offset(), 130);
    // Offset inside a batch returns the whole batch (clients skip earlier records).
    let SegmentRead::Data(bytes) = segment
        .read(104, i64::MAX, 1, true, ReadInto::Memory)
        .unwrap()
    else {
        panic!("no data")
    };
    let header = BatchHeader::parse(&bytes).unwrap();
    assert_eq!(header.base_offset, 103);
    assert_eq!(bytes.len(), header.size);
    // The high watermark bounds reads.
    let SegmentRead::Data(bytes) = segment
        .read(100, 106, 1 << 20, true, ReadInto::Memory)
        .unwrap()
    else {
        panic!("no data")
    };
    let (_, first) = BatchHeader::peek_extent(&bytes).unwrap();
    assert_eq!(bytes.len(), 2 * first);
    assert!(matches!(
        segment
            .read(106, 106, 1 << 20, true, ReadInto::Memory)
            .unwrap(),
        SegmentRead::Uncommitted
    ));
    assert!(matches!(
        segment
            .read(100, i64::MAX, 10, false, ReadInto::Memory)
            .unwrap(),
        SegmentRead::DoesNotFit
    ));
    assert!(matches!(
        segment
            .read(130, i64::MAX, 1 << 20, true, ReadInto::Memory)
            .unwrap(),
        SegmentRead::NotHere
    ));
    // By timestamp: the first batch with max timestamp >= target.
    let batch = segment.find_by_timestamp(2_001, i64::MAX).unwrap().unwrap();
    assert_eq!(BatchHeader::parse(&batch).unwrap().base_offset, 106);
    drop(segment);

    let (reopened, report) = Segment::open(&os(), dir.path(), 100, 0, VERIFY, 0).unwrap();
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(report.batches, 10);
    assert_eq!(reopened.next_offset(), 130);
    assert_eq!(reopened.max_timestamp(), 9_002);
}

#[test]
fn torn_tail_is_truncated_to_the_valid_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let segment = Segment::create(&os(), dir.path(), 0, 4096, 0).unwrap();
    let mut next = 0;
    for i in 0..5 {
        append(&segment, &mut next, 2, i);
    }
    let good = segment.size();
    drop(segment);
    let path = dir.path().join(segment_file_name(0, "log"));
    let mut bytes = std::fs::read(&path).unwrap();
    let cut = bytes.len() - 7;
    bytes.truncate(cut);
    std::fs::write(&path, &bytes).unwrap();
    let (segment, report) = Segment::open(&os(), dir.path(), 0, 4096, VERIFY, 0).unwrap();
    assert!(report.truncated_bytes > 0);
    assert_eq!(segment.next_offset(), 8);
    assert!(segment.size() < good);

    // A flipped bit inside the last complete batch is caught by the CRC.
    drop(segment);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let (segment, report) = Segment::open(&os(), dir.path(), 0, 4096, VERIFY, 0).unwrap();
    assert!(report.truncated_bytes > 0);
    assert_eq!(segment.next_offset(), 6);
}

/// A segment of four batches (one compressed), with the byte position and next offset after
/// each batch.
fn small_segment(dir: &Path) -> (Vec<u8>, Vec<(u64, i64)>) {
    let segment = Segment::create(&os(), dir, 10, 64, 0).unwrap();
    let mut next = 10;
    let mut boundaries = vec![(0u64, 10i64)];
    for (i, (count, compression)) in [
        (1, Compression::None),
        (3, Compression::None),
        (4, Compression::Gzip),
        (2, Compression::None),
    ]
    .into_iter()
    .enumerate()
    {
        let bytes = sample_batch(count, 1_000 * i as i64, compression);
        let batch = AppendBatch {
            prefix: patched_prefix(&bytes, next, 0),
            base_offset: next,
            last_offset: next + count - 1,
            max_timestamp: 1_000 * i as i64 + count - 1,
            bytes,
        };
        segment.append(&[batch]).unwrap();
        next += count;
        boundaries.push((segment.size(), next));
    }
    drop(segment);
    let bytes = std::fs::read(dir.join(segment_file_name(10, "log"))).unwrap();
    (bytes, boundaries)
}

/// Writes `bytes` as the segment's log (stale indexes left in place), recovers it and checks
/// that exactly the longest valid prefix survived, on disk and in the recovered state.
fn recover_and_expect(dir: &Path, bytes: &[u8], keep: (u64, i64), what: &str) {
    std::fs::write(dir.join(segment_file_name(10, "log")), bytes).unwrap();
    let (segment, report) = Segment::open(&os(), dir, 10, 64, VERIFY, 0).unwrap();
    let (valid, next_offset) = keep;
    assert_eq!(report.valid_bytes, valid, "{what}");
    assert_eq!(report.truncated_bytes, bytes.len() as u64 - valid, "{what}");
    assert_eq!(segment.size(), valid, "{what}");
    assert_eq!(segment.next_offset(), next_offset, "{what}");
    let on_disk = std::fs::read(dir.join(segment_file_name(10, "log"))).unwrap();
    assert_eq!(
        on_disk,
        bytes[..valid as usize],
        "{what}: the file is not the prefix"
    );
    // The rebuilt indexes find every surviving batch and nothing past it.
    for offset in 10..next_offset {
        let SegmentRead::Data(found) = segment
            .read(offset, i64::MAX, 1, true, ReadInto::Memory)
            .unwrap()
        else {
            panic!("{what}: offset {offset} not readable after recovery")
        };
        let header = BatchHeader::parse(&found).unwrap();
        assert!(
            header.base_offset <= offset && offset <= header.last_offset(),
            "{what}"
        );
    }
    assert!(
        matches!(
            segment
                .read(next_offset, i64::MAX, 1 << 20, true, ReadInto::Memory)
                .unwrap(),
            SegmentRead::NotHere
        ),
        "{what}: data past the valid prefix"
    );
}

#[test]
fn truncation_at_every_byte_keeps_exactly_the_complete_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, boundaries) = small_segment(dir.path());
    for cut in 0..=bytes.len() {
        let keep = *boundaries
            .iter()
            .rev()
            .find(|(pos, _)| *pos <= cut as u64)
            .unwrap();
        recover_and_expect(dir.path(), &bytes[..cut], keep, &format!("cut at {cut}"));
    }
    crate::test_figures::save(
        "torn-tail-truncation",
        &format!(
            "{{\"segment_bytes\": {}, \"batches\": 4, \"cuts\": {}, \"wrong_recoveries\": 0}}",
            bytes.len(),
            bytes.len() + 1
        ),
    );
}

#[test]
fn every_bit_flip_in_the_last_batch_drops_exactly_that_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, boundaries) = small_segment(dir.path());
    let keep = boundaries[boundaries.len() - 2];
    for byte in keep.0 as usize..bytes.len() {
        for bit in 0..8 {
            let mut flipped = bytes.clone();
            flipped[byte] ^= 1 << bit;
            let what = format!("bit {bit} of byte {byte}");
            recover_and_expect(dir.path(), &flipped, keep, &what);
        }
    }
    crate::test_figures::save(
        "torn-tail-bit-flips",
        &format!(
            "{{\"last_batch_bytes\": {}, \"flips\": {}, \"wrong_recoveries\": 0}}",
            bytes.len() as u64 - keep.0,
            (bytes.len() as u64 - keep.0) * 8
        ),
    );
}

/// Appends a batch of `count` records from idempotent producer 7, sequence `first_seq`.
fn append_idempotent(segment: &Segment, next: &mut i64, first_seq: i32, count: i32) {
    let bytes = crate::log::partition::tests::batch(Some((7, 0, first_seq)), false, count).bytes;
    let batch = AppendBatch {
        prefix: patched_prefix(&bytes, *next, 0),
        base_offset: *next,
        last_offset: *next + i64::from(count) - 1,
        max_timestamp: 1_000 + i64::from(count) - 1,
        bytes,
    };
    segment.append(&[batch]).unwrap();
    *next += i64::from(count);
}

/// A rolled segment (sealed, summary written) of plain and idempotent batches.
fn rolled_segment(dir: &Path) -> Segment {
    let segment = Segment::create(&os(), dir, 50, 64, 0).unwrap();
    let mut next = 50;
    append(&segment, &mut next, 4, 3_000);
    append_idempotent(&segment, &mut next, 0, 2);
    append_idempotent(&segment, &mut next, 2, 3);
    segment.seal().unwrap();
    segment.sync_indexes().unwrap();
    segment.write_summary(true).unwrap();
    segment
}

#[test]
fn a_sealed_segment_opens_from_its_summary_as_a_scan_would() {
    let dir = tempfile::tempdir().unwrap();
    let written = rolled_segment(dir.path());
    let (size, next, max_ts) = (
        written.size(),
        written.next_offset(),
        written.max_timestamp(),
    );
    drop(written);

    let (summarized, report) =
        Segment::open(&os(), dir.path(), 50, 64, SegmentRole::Sealed, 0).unwrap();
    assert_eq!(report.opened, Opened::Summary);
    assert_eq!(report.batches, 0, "no batch header was read");
    assert_eq!(
        (
            summarized.size(),
            summarized.next_offset(),
            summarized.max_timestamp()
        ),
        (size, next, max_ts)
    );
    // Reads work from the loaded indexes.
    let SegmentRead::Data(bytes) = summarized
        .read(56, i64::MAX, 1, true, ReadInto::Memory)
        .unwrap()
    else {
        panic!("no data")
    };
    assert_eq!(BatchHeader::parse(&bytes).unwrap().base_offset, 56);
    drop(summarized);

    // The same segment read batch by batch gives the same state.
    let summary = dir.path().join(segment_file_name(50, "summary"));
    std::fs::remove_file(&summary).unwrap();
    let (scanned, scan) = Segment::open(&os(), dir.path(), 50, 64, SegmentRole::Sealed, 0).unwrap();
    assert_eq!(scan.opened, Opened::Scan);
    assert_eq!(scan.batches, 3);
    assert_eq!(
        scan.history.producers.save(),
        report.history.producers.save()
    );
    assert_eq!(scan.history.producers.save()[0].batches.len(), 2);
    assert_eq!(
        (
            scanned.size(),
            scanned.next_offset(),
            scanned.max_timestamp()
        ),
        (size, next, max_ts)
    );
    // ...and writes the summary the next start will use.
    assert!(summary.exists());
}

#[test]
fn bytes_after_a_summary_are_read_and_a_summary_longer_than_the_file_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    drop(rolled_segment(dir.path()));
    let log = dir.path().join(segment_file_name(50, "log"));
    let bytes = std::fs::read(&log).unwrap();
    // Garbage after what the summary covers is read, found to be no batch, and cut off.
    let mut longer = bytes.clone();
    longer.extend(std::iter::repeat_n(0xAB, 100));
    std::fs::write(&log, &longer).unwrap();
    let (segment, report) =
        Segment::open(&os(), dir.path(), 50, 64, SegmentRole::Sealed, 0).unwrap();
    assert_eq!(report.opened, Opened::Summary);
    assert_eq!(report.truncated_bytes, 100);
    assert_eq!(segment.next_offset(), 59);
    drop(segment);
    // A file shorter than its summary says (damaged elsewhere): the summary is not believed.
    std::fs::write(&log, &bytes[..bytes.len() - 10]).unwrap();
    let (segment, report) =
        Segment::open(&os(), dir.path(), 50, 64, SegmentRole::Sealed, 0).unwrap();
    assert_eq!(report.opened, Opened::Scan);
    assert_eq!(segment.next_offset(), 56, "the torn last batch is cut");
}

#[test]
fn the_active_segment_resumes_from_its_summary_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    drop(rolled_segment(dir.path()));
    let summary = dir.path().join(segment_file_name(50, "summary"));
    let log = dir.path().join(segment_file_name(50, "log"));

    let clean = SegmentRole::Active { verify: false };
    let (segment, report) = Segment::open(&os(), dir.path(), 50, 64, clean, 0).unwrap();
    assert_eq!(report.opened, Opened::Summary);
    assert!(summary.exists(), "appends leave the bytes it covers alone");
    let mut next = segment.next_offset();
    append_idempotent(&segment, &mut next, 5, 1);
    drop(segment);

    // A crash: what the summary covers is taken as it is, the batch after it is verified.
    let (segment, report) = Segment::open(&os(), dir.path(), 50, 64, VERIFY, 0).unwrap();
    assert_eq!(report.opened, Opened::Checkpoint);
    assert_eq!(report.batches, 1);
    assert_eq!(segment.next_offset(), 60);
    let producers = report.history.producers.save();
    assert_eq!(producers[0].batches.last().map(|b| b.last_seq), Some(5));

    // A checkpoint moves the summary up; a batch torn after it is cut at the next start.
    let mut next = segment.next_offset();
    append_idempotent(&segment, &mut next, 6, 2);
    segment.checkpoint().unwrap();
    let checkpointed = segment.size();
    append_idempotent(&segment, &mut next, 8, 3);
    drop(segment);
    let len = std::fs::metadata(&log).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    let (segment, report) = Segment::open(&os(), dir.path(), 50, 64, VERIFY, 0).unwrap();
    assert_eq!((report.opened, report.batches), (Opened::Summary, 0));
    assert_eq!(report.valid_bytes, checkpointed);
    assert_eq!(segment.next_offset(), 62);
    let producers = report.history.producers.save();
    assert_eq!(producers[0].batches.last().map(|b| b.last_seq), Some(7));
    // Reads of what the summary covered go through the indexes it kept.
    let SegmentRead::Data(bytes) = segment
        .read(60, i64::MAX, 1, true, ReadInto::Memory)
        .unwrap()
    else {
        panic!("no data")
    };
    assert_eq!(BatchHeader::parse(&bytes).unwrap().base_offset, 60);
    drop(segment);

    // A summary claiming more than the file holds is removed, never believed later.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(checkpointed - 1)
        .unwrap();
    let (segment, report) = Segment::open(&os(), dir.path(), 50, 64, VERIFY, 0).unwrap();
    assert_eq!(report.opened, Opened::Scan);
    assert_eq!(segment.next_offset(), 60);
    assert!(!summary.exists());
}

/// Checkpoints taken while another thread appends: every summary written describes whole
/// appends, its extent and its producer history in step.
#[test]
fn checkpoints_beside_appends_see_whole_appends() {
    let dir = tempfile::tempdir().unwrap();
    let segment = Arc::new(Segment::create(&os(), dir.path(), 0, 64, 0).unwrap());
    let mut probe = 0;
    append_idempotent(&segment, &mut probe, 0, 2);
    let batch_size = segment.size();
    let appender = {
        let segment = segment.clone();
        std::thread::spawn(move || {
            let mut next = probe;
            for seq in 1..2_000 {
                append_idempotent(&segment, &mut next, seq * 2, 2);
            }
        })
    };
    let summary = summary::path(dir.path(), 0);
    let mut seen = 0;
    while !appender.is_finished() || seen == 0 {
        segment.checkpoint().unwrap();
        let (extent, history) = summary::read(&os(), &summary).expect("a whole summary");
        let batches = extent.size / batch_size;
        assert_eq!(extent.size % batch_size, 0, "{extent:?}");
        assert_eq!(extent.next_offset, 2 * batches as i64, "{extent:?}");
        let last_seq = history.producers.save()[0]
            .batches
            .last()
            .map(|b| b.last_seq);
        assert_eq!(last_seq, Some(2 * batches as i32 - 1), "{extent:?}");
        seen += 1;
    }
    appender.join().unwrap();
    assert!(seen > 0);
}

/// A fetch of a large span may be answered with a range of the segment file: whole batches,
/// the same ones a read into memory returns (or, where a range must end early, the first of
/// them), with their record count and next offset, on buffered and on O_DIRECT segments and
/// whatever the limits. Small spans and spans of small batches stay in memory.
#[test]
fn large_reads_become_file_ranges_holding_the_same_batches() {
    use crate::config::LogWriteIo;
    use crate::log::record_set::RecordSet;
    for io in [LogWriteIo::Buffered, LogWriteIo::Direct] {
        let disk = crate::disk::os_with(io);
        let dir = tempfile::tempdir().unwrap();
        let segment = Segment::create(&disk, dir.path(), 0, 0, 0).unwrap();
        // Batches of 8-18 KiB, with a run of 300 one-record batches in the middle.
        let mut next = 0;
        for i in 0..120 {
            if i == 60 {
                for _ in 0..300 {
                    append(&segment, &mut next, 1, 1_000 * i);
                }
            }
            append(&segment, &mut next, 330 + 40 * (i % 11), 1_000 * i);
        }
        let size = segment.size();
        let on_disk = std::fs::metadata(dir.path().join(segment_file_name(0, "log")))
            .unwrap()
            .len();
        if io == LogWriteIo::Direct {
            // O_DIRECT really wrote it: the file ends in zero padding up to a whole block.
            assert!(
                on_disk > size && on_disk.is_multiple_of(4096),
                "{on_disk} {size}"
            );
        }
        let exact_end = match io {
            LogWriteIo::Direct => size - size % 4096,
            _ => size,
        };
        let (mut files, mut memory, mut shorter) = (0, 0, 0);
        for offset in (0..next).step_by(1_013) {
            for (limit, max_bytes, min_one) in [
                (next, 1 << 20, true),
                (next, 40_000, false),
                (next, 1_000, true),
                (offset + 4_000, 1 << 20, true),
                (offset + 5, 1 << 20, true),
                (next - 5, 1 << 20, false),
            ] {
                let copied = segment
                    .read(offset, limit, max_bytes, min_one, ReadInto::Memory)
                    .unwrap();
                let sent = segment
                    .read(offset, limit, max_bytes, min_one, ReadInto::FileWhenLarge)
                    .unwrap();
                let context = format!("{io:?} offset {offset} limit {limit} max {max_bytes}");
                match (copied, sent) {
                    (SegmentRead::Data(bytes), SegmentRead::File(slice)) => {
                        let sent = slice.read().unwrap();
                        assert!(sent.len() >= 32 * 1024, "{context}");
                        assert!(bytes.starts_with(&sent), "{context}");
                        let records = BatchHeader::count_records(&sent);
                        assert_eq!(slice.records, records, "{context}");
                        let next_offset = RecordSet::Memory(sent.clone()).next_offset();
                        assert_eq!(Some(slice.next_offset), next_offset, "{context}");
                        if sent.len() < bytes.len() {
                            // Only at the batch cap or before the partial block.
                            let (_, following) =
                                BatchHeader::peek_extent(&bytes[sent.len()..]).unwrap();
                            let end = slice.pos + (sent.len() + following) as u64;
                            let mut batches = 0;
                            let mut rest = &sent[..];
                            while let Some((_, size)) = BatchHeader::peek_extent(rest) {
                                rest = &rest[size..];
                                batches += 1;
                            }
                            assert!(batches == 256 || end > exact_end, "{context}: {batches}");
                            shorter += 1;
                        }
                        files += 1;
                    }
                    (SegmentRead::Data(a), SegmentRead::Data(b)) => {
                        assert!(a == b, "{context}");
                        memory += 1;
                    }
                    (a, b) => assert_eq!(format!("{a:?}"), format!("{b:?}"), "{context}"),
                }
            }
        }
        assert!(
            files > 0 && memory > 0 && shorter > 0,
            "{io:?}: {files} file ranges ({shorter} shorter), {memory} copies"
        );
    }
}
