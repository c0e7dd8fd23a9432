//! Transactions in one partition, end to end through the real writer: the last stable offset,
//! read_committed reads with their aborted transactions, produce verification, fencing by a
//! marker's epoch, and all of it rebuilt from disk on reopen.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::records::{Compression, Record, TimestampType};
use tokio::sync::Semaphore;

use super::{Appended, Isolation, Partition, PartitionOptions};
use crate::config::{Config, Durability, WritePath};
use crate::log::LogError;
use crate::log::batch::{ValidatedBatch, encode_records, verify_batch};
use crate::log::commit::AckLevel;
use crate::log::control::ControlType;
use crate::log::producer_state::SequenceError;
use crate::log::segment::ReadInto;
use crate::log::topic_config::TopicConfig;
use crate::log::transactions::{AbortedTxn, TxnVerifier};

/// A transaction coordinator that says yes or no to every verification.
pub(crate) struct Coordinator {
    allow: bool,
}

impl TxnVerifier for Coordinator {
    fn verify(&self, _producer_id: i64, _producer_epoch: i16) -> bool {
        self.allow
    }
}

pub(crate) const ALLOW: Coordinator = Coordinator { allow: true };
const DENY: Coordinator = Coordinator { allow: false };

/// Options for a test partition: `fsync` durability, its own writer thread.
pub(crate) fn options() -> PartitionOptions {
    PartitionOptions {
        disk: crate::disk::os(),
        writer: crate::log::writer::spawn(
            Durability::Fsync,
            // Checkpoints only where a test takes them.
            crate::log::writer::WriterTimers {
                flush: Duration::from_millis(100),
                checkpoint: Duration::from_secs(3600),
            },
            None,
        )
        .unwrap(),
        durability: Durability::Fsync,
        write_path: WritePath::Background,
        page_cache_via_writer: false,
        write_budget: Arc::new(Semaphore::new(64 << 20)),
        write_budget_bytes: 64 << 20,
        tail_cache: Some(crate::log::tail_cache::TailBudget::new(64 << 20)),
    }
}

/// `segment_bytes` overrides the topic's; `verify` as after an unclean stop.
fn open_with(dir: &std::path::Path, segment_bytes: Option<i64>, verify: bool) -> Arc<Partition> {
    let options = options();
    let mut config = TopicConfig::resolve(&Config::embedded().unwrap(), &BTreeMap::new()).unwrap();
    if let Some(bytes) = segment_bytes {
        config.segment_bytes = bytes;
    }
    Partition::open(&dir.join("t-0"), "t", 0, Arc::new(config), options, verify).unwrap()
}

/// How the transactions test reopens its partition.
#[derive(Clone, Copy, PartialEq)]
enum Reopen {
    /// After an unclean stop: the newest segment is read and verified.
    Verify,
    /// After a clean stop: every segment opens from its summary.
    Clean,
    /// After a clean stop, but the summaries are gone (written by an older Weir): every
    /// segment is read, and the sealed ones get their summaries back.
    CleanWithoutSummaries,
    /// After a crash (no close, so no final summary): the newest segment is read from its
    /// last checkpoint on, or whole without one.
    Crash,
}

fn summaries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("t-0"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".summary"))
        .collect();
    names.sort();
    names
}

/// A batch of `count` records; `producer` is (id, epoch, first sequence).
pub(crate) fn batch(
    producer: Option<(i64, i16, i32)>,
    transactional: bool,
    count: i32,
) -> ValidatedBatch {
    let (producer_id, producer_epoch, sequence) = producer.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional,
            control: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i64::from(i),
            // offset - sequence must stay constant or the encoder splits the batch.
            sequence: sequence.max(0) + i,
            timestamp: 1_000 + i64::from(i),
            key: None,
            value: Some(Bytes::from(format!("v{i}"))),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let bytes = encode_records(&records, Compression::None).unwrap();
    ValidatedBatch {
        header: verify_batch(&bytes).unwrap(),
        bytes,
    }
}

async fn append(
    partition: &Partition,
    batch: ValidatedBatch,
    verifier: &Coordinator,
) -> Result<i64, LogError> {
    match partition.append(vec![batch], Some(verifier)).await? {
        Appended::New { append, .. } => {
            append.wait(AckLevel::Committed).await.unwrap();
            Ok(append.base_offset)
        }
        Appended::Duplicate { base_offset, .. } => Ok(base_offset),
    }
}

async fn marker(partition: &Partition, producer_id: i64, epoch: i16, control: ControlType) -> i64 {
    let append = partition
        .append_marker(producer_id, epoch, control, 0)
        .await
        .unwrap();
    append.wait(AckLevel::Committed).await.unwrap();
    append.base_offset
}

/// Base offsets of the batches a read_committed read from `offset` returns.
fn committed_read(partition: &Partition, offset: i64) -> (Vec<i64>, Vec<AbortedTxn>) {
    let read = partition
        .read(
            offset,
            1 << 20,
            true,
            Isolation::ReadCommitted,
            ReadInto::Memory,
        )
        .unwrap();
    let records = read.records.map(|r| r.into_bytes().unwrap());
    let mut bases = Vec::new();
    let mut rest: &[u8] = records.as_deref().unwrap_or_default();
    while let Ok(header) = crate::log::batch::BatchHeader::parse(rest) {
        bases.push(header.base_offset);
        rest = &rest[header.size..];
    }
    (bases, read.aborted)
}

#[tokio::test]
async fn interleaved_transactions_bound_read_committed_and_survive_reopen() {
    transactions_survive_reopen(None, Reopen::Verify).await;
    transactions_survive_reopen(None, Reopen::Crash).await;
}

/// One batch per segment: the producer and transaction state comes from many summaries.
#[tokio::test]
async fn transaction_state_survives_a_clean_restart_from_segment_summaries() {
    transactions_survive_reopen(Some(1), Reopen::Clean).await;
    transactions_survive_reopen(Some(1), Reopen::Verify).await;
    transactions_survive_reopen(Some(1), Reopen::CleanWithoutSummaries).await;
    transactions_survive_reopen(Some(1), Reopen::Crash).await;
}

async fn transactions_survive_reopen(segment_bytes: Option<i64>, reopen: Reopen) {
    let dir = tempfile::tempdir().unwrap();
    let partition = open_with(dir.path(), segment_bytes, true);
    // A consumer at the log end from the start: the tail cache keeps every write, and reads
    // from it cross segments.
    assert!(committed_read(&partition, 0).0.is_empty());
    assert_eq!(
        append(&partition, batch(None, false, 3), &DENY)
            .await
            .unwrap(),
        0
    );
    // A transaction's first batch needs the coordinator's word.
    let refused = append(&partition, batch(Some((1, 0, 0)), true, 2), &DENY).await;
    assert!(matches!(
        refused,
        Err(LogError::Sequence(SequenceError::InvalidTxnState(_)))
    ));
    assert_eq!(
        append(&partition, batch(Some((1, 0, 0)), true, 2), &ALLOW)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        append(&partition, batch(Some((2, 0, 0)), true, 2), &ALLOW)
            .await
            .unwrap(),
        5
    );
    // Later batches of an open transaction need no new verification.
    assert_eq!(
        append(&partition, batch(Some((1, 0, 2)), true, 1), &DENY)
            .await
            .unwrap(),
        7
    );
    assert_eq!(
        append(&partition, batch(None, false, 1), &DENY)
            .await
            .unwrap(),
        8
    );
    // A producer with an open transaction cannot write outside it.
    let outside = append(&partition, batch(Some((2, 0, 2)), false, 1), &ALLOW).await;
    assert!(matches!(
        outside,
        Err(LogError::Sequence(SequenceError::InvalidTxnState(_)))
    ));

    let marks = partition.watermarks();
    assert_eq!((marks.high_watermark, marks.last_stable_offset), (9, 3));
    assert_eq!(committed_read(&partition, 0).0, vec![0]);
    // read_uncommitted sees past the last stable offset, read_committed does not.
    assert!(committed_read(&partition, 7).0.is_empty());
    let open = partition
        .read(
            7,
            1 << 20,
            true,
            Isolation::ReadUncommitted,
            ReadInto::Memory,
        )
        .unwrap()
        .records
        .map(|r| r.into_bytes().unwrap());
    let first = open.as_deref().map(crate::log::batch::BatchHeader::parse);
    assert!(matches!(first, Some(Ok(header)) if header.base_offset == 7));

    assert_eq!(marker(&partition, 1, 0, ControlType::Commit).await, 9);
    assert_eq!(partition.watermarks().last_stable_offset, 5);
    // What the open segment holds so far becomes its checkpoint.
    partition.checkpoint();
    // Producer 2 is fenced by its coordinator: the abort marker carries epoch 1.
    assert_eq!(marker(&partition, 2, 1, ControlType::Abort).await, 10);
    let marks = partition.watermarks();
    assert_eq!((marks.high_watermark, marks.last_stable_offset), (11, 11));
    let aborted = AbortedTxn {
        producer_id: 2,
        first_offset: 5,
        last_offset: 10,
    };
    let (bases, aborted_seen) = committed_read(&partition, 0);
    assert_eq!(bases, vec![0, 3, 5, 7, 8, 9, 10]);
    assert_eq!(aborted_seen, vec![aborted]);
    // A read past the aborted transaction does not carry it.
    assert!(committed_read(&partition, 11).1.is_empty());
    // The fenced producer's old epoch is refused.
    let zombie = append(&partition, batch(Some((2, 0, 2)), true, 1), &ALLOW).await;
    assert!(matches!(
        zombie,
        Err(LogError::Sequence(SequenceError::StaleEpoch { .. }))
    ));
    // Producer 1 opens a new transaction that stays open across the restart.
    assert_eq!(
        append(&partition, batch(Some((1, 0, 3)), true, 1), &ALLOW)
            .await
            .unwrap(),
        11
    );
    if reopen != Reopen::Crash {
        partition.close().await.unwrap();
    }
    drop(partition);

    // Every segment has its summary: the rolled ones from their roll, the active one from
    // the close. After a crash the one segment has its checkpoint's; with a segment per
    // batch the checkpointed segment was rolled since, and the active one has none.
    let segments = if segment_bytes.is_some() { 8 } else { 1 };
    let summarized = if reopen == Reopen::Crash && segment_bytes.is_some() {
        segments - 1
    } else {
        segments
    };
    assert_eq!(summaries(dir.path()).len(), summarized);
    if reopen == Reopen::CleanWithoutSummaries {
        for name in summaries(dir.path()) {
            std::fs::remove_file(dir.path().join("t-0").join(name)).unwrap();
        }
    }
    let verify = matches!(reopen, Reopen::Verify | Reopen::Crash);
    let reopened = open_with(dir.path(), segment_bytes, verify);
    // Every sealed segment has its summary, read or rewritten; the active one keeps its own
    // (appends leave the bytes it covers alone), if it has one.
    let kept = summaries(dir.path()).len();
    if reopen == Reopen::CleanWithoutSummaries {
        assert_eq!(kept, segments - 1);
    } else {
        assert_eq!(kept, summarized);
    }
    let marks = reopened.watermarks();
    assert_eq!((marks.high_watermark, marks.last_stable_offset), (12, 11));
    // A read from a segment stops at its end (the tail cache that crossed segments before
    // the restart is empty now): read from the aborted transaction's first segment.
    let from = if segment_bytes.is_some() { 5 } else { 0 };
    assert_eq!(committed_read(&reopened, from).1, vec![aborted]);
    let producers = reopened.active_producers();
    let one = producers.iter().find(|p| p.producer_id == 1).unwrap();
    assert_eq!((one.last_sequence, one.current_txn_start_offset), (3, 11));
    // Deduplication and fencing survive too.
    assert_eq!(
        append(&reopened, batch(Some((1, 0, 3)), true, 1), &DENY)
            .await
            .unwrap(),
        11
    );
    let zombie = append(&reopened, batch(Some((2, 0, 2)), true, 1), &ALLOW).await;
    assert!(matches!(
        zombie,
        Err(LogError::Sequence(SequenceError::StaleEpoch { .. }))
    ));
    assert_eq!(marker(&reopened, 1, 0, ControlType::Commit).await, 12);
    assert_eq!(reopened.watermarks().last_stable_offset, 13);
    reopened.close().await.unwrap();
}
