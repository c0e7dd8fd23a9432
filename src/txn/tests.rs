//! The coordinator's recovery from its log: a transaction caught between its commit decision
//! and its markers is finished at start-up (markers written, offsets applied), and an open
//! one stays open with its partitions and pending offsets.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::state::{PendingOffset, TxnMetadata, TxnState};
use super::{TransactionCoordinator, TxnLimits};
use crate::config::Config;
use crate::group::GroupCoordinator;
use crate::group::offsets::OffsetStore;
use crate::log::commit::AckLevel;
use crate::log::internal_log::InternalLog;
use crate::log::manager::LogManager;
use crate::log::partition::tests::{ALLOW, batch, options};
use crate::log::partition::{Appended, Partition};
use crate::metadata::ProducerIdAllocator;
use crate::shutdown::Shutdown;

async fn write(partition: &Partition, producer_id: i64) -> i64 {
    let Appended::New { append, .. } = partition
        .append(
            vec![batch(Some((producer_id, 0, 0)), true, 1)],
            Some(&ALLOW),
        )
        .await
        .unwrap()
    else {
        panic!("not a new append");
    };
    append.wait(AckLevel::Committed).await.unwrap();
    append.base_offset
}

fn meta(producer_id: i64, state: TxnState, partition: i32) -> TxnMetadata {
    let mut meta = TxnMetadata::new(producer_id, 60_000, crate::log::now_ms());
    meta.state = state;
    meta.start_ms = crate::log::now_ms();
    meta.partitions.insert(("t".to_string(), partition));
    meta.groups.insert(
        "g".to_string(),
        vec![PendingOffset {
            topic: "t".to_string(),
            partition,
            offset: 1,
            leader_epoch: -1,
            metadata: None,
        }],
    );
    meta
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_finishes_decided_transactions_and_keeps_open_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::embedded().unwrap();
    config.data_dir = dir.path().to_path_buf();
    let config = Arc::new(config);
    let (logs, _) = LogManager::open(config.clone(), options()).unwrap();
    let logs = Arc::new(logs);
    logs.create_topic("t", 2, 1, BTreeMap::new(), false)
        .await
        .unwrap();
    let topic = logs.topic("t").unwrap();
    let (p0, p1) = (topic.partition(0).unwrap(), topic.partition(1).unwrap());
    assert_eq!(write(&p0, 5).await, 0);
    assert_eq!(write(&p1, 6).await, 0);

    let offsets_log = logs
        .open_internal_log("consumer-offsets", BTreeMap::new())
        .await
        .unwrap();
    let store = OffsetStore::open(offsets_log, 1 << 20).await.unwrap();
    let groups = GroupCoordinator::new(
        crate::group::tests::limits(0),
        store,
        Duration::from_secs(3600),
        Shutdown::new(),
    );
    let txn_log = InternalLog::new(
        logs.open_internal_log("transaction-state", BTreeMap::new())
            .await
            .unwrap(),
    );
    // What a crash leaves: "decided" committed but never marked; "open" still running.
    for (id, meta) in [
        ("decided", meta(5, TxnState::PrepareCommit, 0)),
        ("open", meta(6, TxnState::Ongoing, 1)),
    ] {
        let value = Bytes::from(serde_json::to_vec(&meta).unwrap());
        txn_log
            .append(&[(Bytes::from(id), Some(value))])
            .await
            .unwrap();
    }
    assert_eq!(p0.watermarks().last_stable_offset, 0);

    let producer_ids = Arc::new(ProducerIdAllocator::open(crate::disk::os(), dir.path()).unwrap());
    let limits = TxnLimits {
        max_timeout_ms: 900_000,
        id_expiration_ms: 7 * 24 * 3600 * 1000,
        log_segment_bytes: 1 << 20,
    };
    let txns =
        TransactionCoordinator::open(txn_log, producer_ids, logs.clone(), groups.clone(), limits)
            .await
            .unwrap();
    // Before recovery the decided offsets are pending for require_stable readers.
    assert_eq!(txns.pending_offsets("g").len(), 2);
    txns.recover().await;

    let decided = txns.describe("decided").unwrap().meta;
    assert_eq!(decided.state, TxnState::CompleteCommit);
    assert!(decided.partitions.is_empty());
    // The marker is written and committed: the transaction no longer holds readers.
    let marks = p0.watermarks();
    assert_eq!((marks.high_watermark, marks.last_stable_offset), (2, 2));
    assert_eq!(groups.offsets().get("g", "t", 0).map(|v| v.offset), Some(1));

    let open = txns.describe("open").unwrap().meta;
    assert_eq!(open.state, TxnState::Ongoing);
    assert_eq!(p1.watermarks().last_stable_offset, 0);
    assert_eq!(groups.offsets().get("g", "t", 1), None);
    assert_eq!(
        txns.pending_offsets("g").into_iter().collect::<Vec<_>>(),
        vec![("t".to_string(), 1)]
    );
    // The producer of the open transaction can still end it.
    txns.end_transaction("open", 6, 0, false).await.unwrap();
    assert_eq!(p1.watermarks().last_stable_offset, 2);
    assert!(txns.pending_offsets("g").is_empty());
    logs.shutdown().await.unwrap();
}
