//! Disk faults seen by a client over a real socket, on a simulated disk: a failed fsync is
//! never acknowledged, the client gets KAFKA_STORAGE_ERROR, the partition refuses writes
//! until a restart, and readers keep reading what was committed before. A filling disk
//! refuses produce before it is full and takes writes again once space is freed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{Client, TestBroker, batch, decode_records};
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

/// Produces 100-record batches (about 3 KB) with acks=all until one is refused; returns how
/// many records were acknowledged and the refusal's error code. Every call must answer
/// promptly: a full disk is an error, never a hang.
async fn produce_until_refused(client: &mut Client, topic: &str, first: i64) -> (i64, i16) {
    let mut next = first;
    for _ in 0..10_000 {
        let response = tokio::time::timeout(
            Duration::from_secs(10),
            client.produce(topic, 0, batch(next, 100, 1_000), -1),
        )
        .await
        .expect("a produce on a filling disk hung");
        match produce_error(&response) {
            (0, base) => {
                assert_eq!(base, next, "acknowledged offsets must be gapless");
                next += 100;
            }
            (code, _) => return (next - first, code),
        }
    }
    panic!("the disk never filled");
}

/// Fetches everything from offset 0 and checks it is exactly records 0..count, in order.
async fn assert_log_is(client: &mut Client, topic: &str, count: i64) {
    let mut offset = 0;
    while offset < count {
        let fetch = client.fetch(topic, 0, offset, 0).await;
        let partition = &fetch.responses[0].partitions[0];
        assert_eq!(partition.error_code, 0);
        assert_eq!(partition.high_watermark, count);
        let records = decode_records(partition.records.clone().unwrap_or_default());
        assert!(!records.is_empty(), "nothing readable at offset {offset}");
        for (o, value) in records {
            if o < offset {
                continue;
            }
            assert_eq!((o, value), (offset, format!("value-{offset}")));
            offset += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filling_disk_refuses_produce_and_takes_writes_again_once_space_is_freed() {
    let disk = SimDisk::new(11, Faults::default());
    let mut broker = TestBroker::start_on(disk.clone(), "disk_min_free_bytes: 60000\n").await;
    let mut client = broker.client().await;
    client.create_topic("t", 1, &[]).await;
    // 120 KB left: produce is refused once less than 60 KB remain.
    let capacity = disk.used_bytes() + 120_000;
    disk.set_faults(Faults {
        capacity: Some(capacity),
        ..Faults::default()
    });
    let (acked, code) = produce_until_refused(&mut client, "t", 0).await;
    assert_eq!(code, ResponseError::KafkaStorageError.code());
    assert!(acked > 0);
    // Refused before the disk was full (nothing failed in the writer, which would have
    // fenced the partition: the resumption below shows it was not).
    assert!(disk.used_bytes() < capacity);
    // Consumers keep reading everything acknowledged; refusals keep coming while low.
    assert_log_is(&mut client, "t", acked).await;
    let response = client.produce("t", 0, batch(acked, 100, 1_000), -1).await;
    assert_eq!(produce_error(&response).0, code);

    // Space is freed: writes resume without a restart, the offsets continue.
    disk.set_faults(Faults {
        capacity: Some(disk.used_bytes() + 10_000_000),
        ..Faults::default()
    });
    let started = Instant::now();
    let resumed_at = loop {
        let response = client.produce("t", 0, batch(acked, 100, 1_000), -1).await;
        match produce_error(&response) {
            (0, base) => break base,
            (c, _) => assert_eq!(c, code),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "writes never resumed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(resumed_at, acked);
    assert_log_is(&mut client, "t", acked + 100).await;

    // And all of it survives a restart.
    drop(client);
    broker.restart().await;
    let mut client = broker.client().await;
    assert_log_is(&mut client, "t", acked + 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enospc_without_the_guard_fences_the_partition_and_corrupts_nothing() {
    let disk = SimDisk::new(12, Faults::default());
    let mut broker = TestBroker::start_on(disk.clone(), "disk_min_free_bytes: 0\n").await;
    let mut client = broker.client().await;
    client.create_topic("t", 1, &[]).await;
    client.create_topic("other", 1, &[]).await;
    disk.set_faults(Faults {
        capacity: Some(disk.used_bytes() + 60_000),
        ..Faults::default()
    });
    let (acked, code) = produce_until_refused(&mut client, "t", 0).await;
    assert_eq!(code, ResponseError::KafkaStorageError.code());
    assert_log_is(&mut client, "t", acked).await;
    // Fenced: refused even once there is space, until a restart recovers it.
    disk.set_faults(Faults::default());
    let response = client.produce("t", 0, batch(acked, 100, 1_000), -1).await;
    assert_eq!(produce_error(&response).0, code);
    let response = client.produce("other", 0, batch(0, 100, 1_000), -1).await;
    assert_eq!(produce_error(&response), (0, 0));

    drop(client);
    broker.stop().await;
    broker.start_again().await;
    let mut client = broker.client().await;
    let response = client.produce("t", 0, batch(acked, 100, 1_000), -1).await;
    let (code, base) = produce_error(&response);
    assert_eq!(code, 0);
    // The refused write may have reached the page cache before ENOSPC (a retriable error:
    // the client may see it again, as with Kafka); nothing acknowledged is lost or moved.
    assert!(base >= acked);
    let fetch = client.fetch("t", 0, 0, 0).await;
    assert_eq!(fetch.responses[0].partitions[0].high_watermark, base + 100);
    let records = decode_records(fetch.responses[0].partitions[0].records.clone().unwrap());
    for (o, value) in records.iter().take(acked as usize) {
        assert_eq!(value, &format!("value-{o}"));
    }
}
