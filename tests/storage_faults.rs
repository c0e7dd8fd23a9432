//! Disk faults seen by a client over a real socket, on a simulated disk: a failed fsync is
//! never acknowledged, the client gets KAFKA_STORAGE_ERROR, the partition refuses writes
//! until a restart, and readers keep reading what was committed before.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{TestBroker, batch};
use kafka_protocol::ResponseError;
use weir::disk::sim::{Faults, SimDisk};

fn produce_error(response: &kafka_protocol::messages::ProduceResponse) -> (i16, i64) {
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_is_never_acknowledged_and_fences_the_partition() {
    let disk = SimDisk::new(7, Faults::default());
    let mut broker = TestBroker::start_on(disk.clone(), "").await;
    let mut client = broker.client().await;
    client.create_topic("t", 1, &[]).await;
    client.create_topic("other", 1, &[]).await;
    for i in 0..3 {
        let response = client.produce("t", 0, batch(i * 5, 5, 1_000), -1).await;
        assert_eq!(produce_error(&response), (0, i * 5));
    }

    // The next fsync fails: that write is refused, and so is every later one.
    disk.set_faults(Faults {
        fail_sync_at: Some(disk.syncs() + 1),
        ..Faults::default()
    });
    let storage_error = ResponseError::KafkaStorageError.code();
    for acks in [-1, 1, -1] {
        let response = client.produce("t", 0, batch(0, 5, 2_000), acks).await;
        assert_eq!(produce_error(&response).0, storage_error, "acks={acks}");
    }
    // Readers see exactly what was committed before, and the high watermark stayed.
    let fetch = client.fetch("t", 0, 0, 0).await;
    let partition = &fetch.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(partition.high_watermark, 15);
    let records = partition.records.clone().unwrap();
    assert!(!records.is_empty());
    // Other partitions are not affected.
    let response = client.produce("other", 0, batch(0, 5, 1_000), -1).await;
    assert_eq!(produce_error(&response), (0, 0));

    // A restart recovers the partition from disk; it takes writes again.
    drop(client);
    broker.stop().await;
    broker.start_again().await;
    let mut client = broker.client().await;
    let response = client.produce("t", 0, batch(0, 5, 3_000), -1).await;
    let (code, base) = produce_error(&response);
    assert_eq!(code, 0);
    assert!(base >= 15, "offset {base} reuses acknowledged offsets");
    let fetch = client.fetch("t", 0, 0, 0).await;
    assert_eq!(fetch.responses[0].partitions[0].high_watermark, base + 5);
}
