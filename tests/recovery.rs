//! Recovery: data survives restarts at its acknowledged offsets, a torn or corrupt tail is
//! truncated (not a failed start), indexes are rebuilt, and segments roll.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{TestBroker, batch, decode_records};

async fn read_all(broker: &TestBroker, topic: &str) -> Vec<(i64, String)> {
    let mut client = broker.client().await;
    let mut out = Vec::new();
    loop {
        let next = out.last().map_or(0, |(o, _)| o + 1);
        let fetch = client.fetch(topic, 0, next, 0).await;
        let data = &fetch.responses[0].partitions[0];
        assert_eq!(data.error_code, 0);
        let records = decode_records(data.records.clone().unwrap());
        let fresh: Vec<_> = records.into_iter().filter(|(o, _)| *o >= next).collect();
        if fresh.is_empty() {
            return out;
        }
        out.extend(fresh);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_restart_across_rolled_segments() {
    let mut broker = TestBroker::start().await;
    let mut client = broker.client().await;
    client
        .create_topic("rolling", 1, &[("segment.bytes", "2048")])
        .await;
    for i in 0..100 {
        let response = client.produce("rolling", 0, batch(i * 3, 3, 0), -1).await;
        assert_eq!(
            response.responses[0].partition_responses[0].base_offset,
            i * 3
        );
    }
    let dir = broker.dir.path().join("rolling-0");
    let segments = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".log")
        })
        .count();
    assert!(segments > 5, "only {segments} segments");
    broker.restart().await;
    assert!(broker.server.as_ref().unwrap().recovered.clean_shutdown);
    let records = read_all(&broker, "rolling").await;
    assert_eq!(records.len(), 300);
    for (i, (offset, value)) in records.iter().enumerate() {
        assert_eq!(*offset, i as i64);
        assert_eq!(value, &format!("value-{i}"));
    }
    // Appends continue at the right offset after restart.
    let mut client = broker.client().await;
    let response = client.produce("rolling", 0, batch(300, 1, 0), -1).await;
    assert_eq!(
        response.responses[0].partition_responses[0].base_offset,
        300
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_tail_is_truncated_after_an_unclean_stop() {
    let mut broker = TestBroker::start().await;
    let mut client = broker.client().await;
    client.create_topic("torn", 1, &[]).await;
    for i in 0..10 {
        client.produce("torn", 0, batch(i * 2, 2, 0), -1).await;
    }
    broker.stop().await;
    // Simulate a crash: no clean-shutdown marker, no summary of the segment (a crash before
    // any checkpoint writes none), garbage after the last batch, and a damaged index.
    let crashed = |broker: &TestBroker| {
        let dir = broker.dir.path();
        std::fs::remove_file(dir.join(".clean_shutdown")).unwrap();
        std::fs::remove_file(dir.join("torn-0/00000000000000000000.summary")).unwrap();
    };
    crashed(&broker);
    let log = broker.dir.path().join("torn-0/00000000000000000000.log");
    let mut bytes = std::fs::read(&log).unwrap();
    let valid = bytes.len();
    bytes.extend_from_slice(&[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x14, 0xff, 0xff]);
    std::fs::write(&log, &bytes).unwrap();
    std::fs::write(
        broker.dir.path().join("torn-0/00000000000000000000.index"),
        [1u8; 5],
    )
    .unwrap();
    broker.start_again().await;
    assert!(!broker.server.as_ref().unwrap().recovered.clean_shutdown);
    assert_eq!(std::fs::metadata(&log).unwrap().len() as usize, valid);
    let records = read_all(&broker, "torn").await;
    assert_eq!(records.len(), 20);

    // A bit flip inside the last batch: that batch is dropped, the rest kept.
    broker.stop().await;
    crashed(&broker);
    let mut bytes = std::fs::read(&log).unwrap();
    let at = bytes.len() - 5;
    bytes[at] ^= 0x01;
    std::fs::write(&log, &bytes).unwrap();
    broker.start_again().await;
    let records = read_all(&broker, "torn").await;
    assert_eq!(records.len(), 18);
    let mut client = broker.client().await;
    let response = client.produce("torn", 0, batch(18, 1, 0), -1).await;
    assert_eq!(response.responses[0].partition_responses[0].base_offset, 18);
}

/// Polls the partition's log start offset (fetching at `offset`) until retention moved it,
/// for up to five seconds; returns the last value seen.
async fn wait_for_log_start(client: &mut common::Client, topic: &str, offset: i64) -> i64 {
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let fetch = client.fetch(topic, 0, offset, 0).await;
        let log_start = fetch.responses[0].partitions[0].log_start_offset;
        if log_start > 0 {
            return log_start;
        }
    }
    0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_segments_and_advances_log_start() {
    let broker = TestBroker::start_with("log_retention_check_interval_ms: 100\n").await;
    let mut client = broker.client().await;
    client
        .create_topic(
            "short",
            1,
            &[("segment.bytes", "1024"), ("retention.bytes", "2048")],
        )
        .await;
    for i in 0..60 {
        client.produce("short", 0, batch(i, 1, 0), -1).await;
    }
    let log_start = wait_for_log_start(&mut client, "short", 59).await;
    assert!(log_start > 0, "retention never ran");
    let fetch = client.fetch("short", 0, 0, 0).await;
    assert_eq!(
        fetch.responses[0].partitions[0].error_code, 1,
        "offset 0 is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_retention_deletes_segments_whose_records_are_old() {
    let broker = TestBroker::start_with("log_retention_check_interval_ms: 100\n").await;
    let mut client = broker.client().await;
    client
        .create_topic(
            "aging",
            1,
            &[("segment.bytes", "1024"), ("retention.ms", "3600000")],
        )
        .await;
    let old = weir::log::now_ms() - 2 * 3_600_000;
    for i in 0..30 {
        client.produce("aging", 0, batch(i, 1, old), -1).await;
    }
    let fresh_from = 30;
    for i in 0..30 {
        client
            .produce("aging", 0, batch(30 + i, 1, weir::log::now_ms()), -1)
            .await;
    }
    let log_start = wait_for_log_start(&mut client, "aging", 59).await;
    assert!(log_start > 0, "old segments were not deleted");
    assert!(
        log_start <= fresh_from,
        "fresh records were deleted: {log_start}"
    );
}
