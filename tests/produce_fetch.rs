//! Produce and fetch over a real socket: offsets, acks levels, pipelining order, long-poll.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{TestBroker, batch, decode_records, fetch_request, produce_request};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestKind, ResponseKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_assigned_gaplessly_and_read_back() {
    let broker = TestBroker::start().await;
    let mut client = broker.client().await;
    client.create_topic("orders", 2, &[]).await;
    let mut next = 0;
    for round in 0..20 {
        let response = client.produce("orders", 1, batch(next, 5, 1_000), -1).await;
        let p = &response.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0);
        assert_eq!(p.base_offset, next, "round {round}");
        next += 5;
    }
    // A fetch from the middle of a batch returns the whole batch; clients skip.
    let fetch = client.fetch("orders", 1, 7, 0).await;
    let data = &fetch.responses[0].partitions[0];
    assert_eq!(data.error_code, 0);
    assert_eq!(data.high_watermark, 100);
    let records = decode_records(data.records.clone().unwrap());
    assert_eq!(records.first().unwrap().0, 5);
    assert_eq!(records.len(), 95);
    for (i, (offset, value)) in records.iter().enumerate() {
        assert_eq!(*offset, 5 + i as i64);
        assert_eq!(value, &format!("value-{}", 5 + i));
    }
    // Past the end: OFFSET_OUT_OF_RANGE.
    let fetch = client.fetch("orders", 1, 101, 0).await;
    assert_eq!(fetch.responses[0].partitions[0].error_code, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_answer_in_order_and_acks0_gets_no_response() {
    let broker = TestBroker::start().await;
    let mut client = broker.client().await;
    client.create_topic("pipe", 1, &[]).await;
    let mut expected = Vec::new();
    let mut frames = Vec::new();
    for i in 0..30 {
        let acks = [1, -1, 0][i % 3];
        let (correlation, frame) = client.frame(
            ApiKey::Produce,
            9,
            &RequestKind::Produce(produce_request("pipe", 0, batch(i as i64, 1, 0), acks)),
        );
        if acks != 0 {
            expected.push((correlation, ApiKey::Produce, i as i64));
        }
        frames.push(frame);
        let (correlation, frame) = client.frame(
            ApiKey::ApiVersions,
            3,
            &RequestKind::ApiVersions(ApiVersionsRequest::default()),
        );
        expected.push((correlation, ApiKey::ApiVersions, -1));
        frames.push(frame);
    }
    use tokio::io::AsyncWriteExt;
    for frame in frames {
        client.stream.write_all(&frame).await.unwrap();
    }
    for (correlation, key, offset) in expected {
        let version = if key == ApiKey::Produce { 9 } else { 3 };
        let (got, body) = client.recv(key, version).await;
        assert_eq!(got, correlation);
        if let ResponseKind::Produce(p) = body {
            assert_eq!(p.responses[0].partition_responses[0].base_offset, offset);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_is_woken_by_data_not_the_timer() {
    let broker = TestBroker::start().await;
    let mut consumer = broker.client().await;
    let mut producer = broker.client().await;
    consumer.create_topic("tail", 1, &[]).await;

    // Idle: returns after about max_wait_ms with no records.
    let started = Instant::now();
    let idle = consumer.fetch("tail", 0, 0, 300).await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(290), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    assert!(
        idle.responses[0].partitions[0]
            .records
            .as_ref()
            .unwrap()
            .is_empty()
    );

    // Data arriving mid-wait ends the poll long before max_wait_ms (10 s).
    let sent = consumer
        .send(
            ApiKey::Fetch,
            12,
            RequestKind::Fetch(fetch_request("tail", 0, 0, 10_000)),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let produced = Instant::now();
    producer.produce("tail", 0, batch(0, 3, 0), -1).await;
    let (correlation, body) = consumer.recv(ApiKey::Fetch, 12).await;
    let latency = produced.elapsed();
    assert_eq!(correlation, sent);
    let ResponseKind::Fetch(fetch) = body else {
        panic!()
    };
    let records = decode_records(fetch.responses[0].partitions[0].records.clone().unwrap());
    assert_eq!(records.len(), 3);
    assert!(latency < Duration::from_secs(2), "woken after {latency:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_cache_mode_acknowledges_and_serves() {
    let mut broker =
        TestBroker::start_with("durability: page_cache\nflush_interval_ms: 50\n").await;
    let mut client = broker.client().await;
    client.create_topic("fast", 1, &[]).await;
    for i in 0..10 {
        let response = client.produce("fast", 0, batch(i, 1, 0), -1).await;
        assert_eq!(response.responses[0].partition_responses[0].base_offset, i);
    }
    let fetch = client.fetch("fast", 0, 0, 0).await;
    assert_eq!(fetch.responses[0].partitions[0].high_watermark, 10);
    // Written from the request path, flushed in the background, kept across a restart.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    broker.restart().await;
    let mut client = broker.client().await;
    let fetch = client.fetch("fast", 0, 0, 0).await;
    let records = decode_records(fetch.responses[0].partitions[0].records.clone().unwrap());
    assert_eq!(records.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_append_time_topics_stamp_batches_with_a_valid_crc() {
    let broker = TestBroker::start().await;
    let mut client = broker.client().await;
    client
        .create_topic("stamped", 1, &[("message.timestamp.type", "LogAppendTime")])
        .await;
    let before = weir::log::now_ms();
    let response = client.produce("stamped", 0, batch(0, 3, 1_000), -1).await;
    let p = &response.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0);
    assert!(p.log_append_time_ms >= before, "{}", p.log_append_time_ms);
    let fetch = client.fetch("stamped", 0, 0, 0).await;
    let bytes = fetch.responses[0].partitions[0].records.clone().unwrap();
    let header = weir::log::batch::verify_batch(&bytes).expect("CRC must still be valid");
    assert!(header.is_log_append_time());
    assert_eq!(header.max_timestamp, p.log_append_time_ms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_write_path_baseline_is_correct_too() {
    let broker = TestBroker::start_with("write_path: inline\n").await;
    let mut client = broker.client().await;
    client
        .create_topic("inline", 1, &[("segment.bytes", "2048")])
        .await;
    for i in 0..40 {
        let response = client.produce("inline", 0, batch(i * 2, 2, 0), -1).await;
        assert_eq!(
            response.responses[0].partition_responses[0].base_offset,
            i * 2
        );
    }
    let fetch = client.fetch("inline", 0, 0, 0).await;
    let data = &fetch.responses[0].partitions[0];
    assert_eq!(data.high_watermark, 80);
    assert!(!decode_records(data.records.clone().unwrap()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_too_big_for_the_partition_limit_is_not_skipped() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    let broker = TestBroker::start().await;
    let mut client = broker.client().await;
    client
        .create_topic("mixed", 2, &[("segment.bytes", "1024")])
        .await;
    client.produce("mixed", 0, batch(0, 1, 0), -1).await;
    // Partition 1: a big batch alone in its segment, then a small one in the next.
    client.produce("mixed", 1, batch(0, 60, 0), -1).await;
    client.produce("mixed", 1, batch(60, 1, 0), -1).await;
    let mut request = fetch_request("mixed", 0, 0, 0);
    let mut second = FetchPartition::default();
    second.partition = 1;
    second.fetch_offset = 0;
    second.partition_max_bytes = 200;
    request.topics[0].partitions.push(second);
    let _ = FetchTopic::default();
    let ResponseKind::Fetch(fetch) = client
        .call(ApiKey::Fetch, 12, RequestKind::Fetch(request))
        .await
    else {
        panic!()
    };
    let partitions = &fetch.responses[0].partitions;
    assert_eq!(
        decode_records(partitions[0].records.clone().unwrap()).len(),
        1
    );
    let second = decode_records(partitions[1].records.clone().unwrap());
    assert!(
        second.is_empty() || second[0].0 == 0,
        "offset 0 was skipped: got {:?}",
        second.first()
    );
}

/// Fetches of large spans of segments are sent from the segment files (`sendfile`): every
/// record comes back as produced, from buffered and from O_DIRECT segments (whose partial
/// last block is never sent from the file), across segment rolls, whatever the fetch offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_fetches_from_segment_files_return_every_record() {
    for io in ["buffered", "direct"] {
        let broker =
            TestBroker::start_with(&format!("log_write_io: {io}\nlog_segment_bytes: 1048576\n"))
                .await;
        let mut client = broker.client().await;
        client.create_topic("cold", 1, &[]).await;
        let total = 100_000;
        for start in (0..total).step_by(500) {
            let response = client.produce("cold", 0, batch(start, 500, 0), -1).await;
            assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
        }
        for first in [0, 777, 45_123] {
            let mut offset = first;
            while offset < total {
                let fetch = client.fetch("cold", 0, offset, 0).await;
                let data = &fetch.responses[0].partitions[0];
                assert_eq!(data.error_code, 0, "{io} offset {offset}");
                let records = decode_records(data.records.clone().unwrap());
                let wanted: Vec<_> = records.into_iter().filter(|(o, _)| *o >= offset).collect();
                assert!(!wanted.is_empty(), "{io}: nothing at {offset}");
                for (i, (o, value)) in wanted.iter().enumerate() {
                    assert_eq!(*o, offset + i as i64, "{io}");
                    assert_eq!(value, &format!("value-{o}"), "{io}");
                }
                offset += wanted.len() as i64;
            }
        }
    }
}
