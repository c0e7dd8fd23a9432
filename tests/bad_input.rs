//! Hostile and malformed input over a real socket: each case gets the right Kafka error or a
//! closed connection, nothing is appended, and the broker keeps serving other connections.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::{BufMut, BytesMut};
use common::{Client, TestBroker, batch};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use tokio::io::AsyncWriteExt;

async fn still_serving(broker: &TestBroker) {
    let mut client = broker.client().await;
    let mut request = ApiVersionsRequest::default();
    request.client_software_name = StrBytes::from_static_str("weir-tests");
    request.client_software_version = StrBytes::from_static_str("1.0");
    let ResponseKind::ApiVersions(response) = client
        .call(ApiKey::ApiVersions, 3, RequestKind::ApiVersions(request))
        .await
    else {
        panic!()
    };
    assert_eq!(response.error_code, 0);
}

async fn high_watermark(client: &mut Client, topic: &str) -> i64 {
    let fetch = client.fetch(topic, 0, 0, 0).await;
    fetch.responses[0].partitions[0].high_watermark
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_errors_close_only_that_connection() {
    let broker = TestBroker::start().await;
    // Over the 100 MiB limit: closed before anything is allocated.
    for size in [200 * 1024 * 1024i32, -5, i32::MAX] {
        let mut client = broker.client().await;
        client.stream.write_all(&size.to_be_bytes()).await.unwrap();
        assert!(client.is_closed_by_broker().await, "size {size}");
        still_serving(&broker).await;
    }
    // Unknown api key, then a version below the served range.
    for (key, version) in [(9999i16, 0i16), (1, 2), (0, 1)] {
        let mut client = broker.client().await;
        let mut frame = BytesMut::new();
        frame.put_i32(10);
        frame.put_i16(key);
        frame.put_i16(version);
        frame.put_i32(1);
        frame.put_i16(-1);
        client.stream.write_all(&frame).await.unwrap();
        assert!(client.is_closed_by_broker().await, "key {key} v{version}");
    }
    // A truncated body that the codec cannot decode.
    let mut client = broker.client().await;
    let mut frame = BytesMut::new();
    frame.put_i32(9);
    frame.put_i16(3);
    frame.put_i16(12);
    frame.put_i32(1);
    frame.put_u8(0xff);
    client.stream.write_all(&frame).await.unwrap();
    assert!(client.is_closed_by_broker().await);
    // A client that announces a frame and disconnects halfway through it.
    let mut client = broker.client().await;
    client
        .stream
        .write_all(&1000i32.to_be_bytes())
        .await
        .unwrap();
    client.stream.write_all(&[0u8; 100]).await.unwrap();
    drop(client);
    still_serving(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_too_new_gets_the_kip511_fallback() {
    let broker = TestBroker::start().await;
    let mut client = broker.client().await;
    let mut frame = BytesMut::new();
    frame.put_i32(8);
    frame.put_i16(18);
    frame.put_i16(99);
    frame.put_i32(77);
    client.stream.write_all(&frame).await.unwrap();
    let (correlation, body) = client.recv(ApiKey::ApiVersions, 0).await;
    assert_eq!(correlation, 77);
    let ResponseKind::ApiVersions(response) = body else {
        panic!()
    };
    assert_eq!(response.error_code, 35);
    let api_versions = response.api_keys.iter().find(|k| k.api_key == 18).unwrap();
    assert_eq!((api_versions.min_version, api_versions.max_version), (0, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_batches_get_kafka_errors_and_nothing_is_appended() {
    let broker = TestBroker::start().await;
    let mut client = broker.client().await;
    client
        .create_topic("guarded", 1, &[("max.message.bytes", "2000")])
        .await;
    client.produce("guarded", 0, batch(0, 2, 0), -1).await;

    let good = batch(0, 3, 0);
    let mut corrupt = BytesMut::from(&good[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x40;
    let cases = [
        (corrupt.freeze(), 2i16),           // CORRUPT_MESSAGE
        (good.slice(..good.len() - 4), 87), // truncated: INVALID_RECORD, as Kafka
        (batch(0, 200, 0), 10),             // over max.message.bytes: MESSAGE_TOO_LARGE
    ];
    for (records, code) in cases {
        let response = client.produce("guarded", 0, records, -1).await;
        assert_eq!(
            response.responses[0].partition_responses[0].error_code,
            code
        );
    }
    assert_eq!(high_watermark(&mut client, "guarded").await, 2);

    // Unknown partition, unknown topic, invalid name, bad acks.
    let response = client.produce("guarded", 7, batch(0, 1, 0), -1).await;
    assert_eq!(response.responses[0].partition_responses[0].error_code, 3);
    let response = client.produce("nope", 0, batch(0, 1, 0), -1).await;
    assert_eq!(response.responses[0].partition_responses[0].error_code, 3);
    let response = client.produce("bad name!", 0, batch(0, 1, 0), -1).await;
    assert_eq!(response.responses[0].partition_responses[0].error_code, 17);
    let response = client.produce("guarded", 0, batch(0, 1, 0), 5).await;
    assert_eq!(response.responses[0].partition_responses[0].error_code, 21);
    assert_eq!(high_watermark(&mut client, "guarded").await, 2);
    still_serving(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_to_a_deleted_topic_is_refused() {
    use kafka_protocol::messages::DeleteTopicsRequest;
    let broker = TestBroker::start().await;
    let mut client = broker.client().await;
    client.create_topic("doomed", 1, &[]).await;
    client.produce("doomed", 0, batch(0, 1, 0), -1).await;
    let mut request = DeleteTopicsRequest::default();
    request.topic_names = vec![common::topic_name("doomed")];
    let ResponseKind::DeleteTopics(response) = client
        .call(ApiKey::DeleteTopics, 5, RequestKind::DeleteTopics(request))
        .await
    else {
        panic!()
    };
    assert_eq!(response.responses[0].error_code, 0);
    let response = client.produce("doomed", 0, batch(0, 1, 0), -1).await;
    assert_eq!(response.responses[0].partition_responses[0].error_code, 3);
    let mut request = DeleteTopicsRequest::default();
    request.topic_names = vec![common::topic_name("doomed")];
    let ResponseKind::DeleteTopics(response) = client
        .call(ApiKey::DeleteTopics, 5, RequestKind::DeleteTopics(request))
        .await
    else {
        panic!()
    };
    assert_eq!(response.responses[0].error_code, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_array_counts_are_refused_without_allocating() {
    let broker = TestBroker::start().await;
    // Metadata v1 (int32 array length) announcing 2^31-1 topics in a 14-byte body.
    let mut client = broker.client().await;
    let mut frame = BytesMut::new();
    frame.put_i32(14);
    frame.put_i16(3);
    frame.put_i16(1);
    frame.put_i32(1);
    frame.put_i16(-1);
    frame.put_i32(i32::MAX);
    client.stream.write_all(&frame).await.unwrap();
    assert!(client.is_closed_by_broker().await);
    // Metadata v12 (flexible: compact array length as an unsigned varint) announcing 2^32-2.
    let mut client = broker.client().await;
    let mut body = BytesMut::new();
    body.put_i16(3);
    body.put_i16(12);
    body.put_i32(2);
    body.put_i16(-1); // client id
    body.put_u8(0); // header tagged fields
    body.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    let mut frame = BytesMut::new();
    frame.put_i32(body.len() as i32);
    frame.put_slice(&body);
    client.stream.write_all(&frame).await.unwrap();
    assert!(client.is_closed_by_broker().await);
    still_serving(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_batches_with_lying_counts_are_invalid() {
    use kafka_protocol::records::Compression;
    let broker = TestBroker::start().await;
    let mut client = broker.client().await;
    client.create_topic("zipped", 1, &[]).await;
    let one = common::record(0, 0, None, bytes::Bytes::from_static(b"v"));
    let mut buf = common::encode(&[one], Compression::Gzip);
    // Claim 2^31-1 records (last offset delta and count agree), then fix the CRC.
    buf[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
    buf[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
    let crc = weir::log::batch::compute_crc(&buf);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
    let response = client.produce("zipped", 0, buf.freeze(), -1).await;
    assert_eq!(response.responses[0].partition_responses[0].error_code, 87);
    assert_eq!(high_watermark(&mut client, "zipped").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_but_unsent_frames_do_not_starve_other_clients() {
    let broker = TestBroker::start_with("queued_max_request_bytes: 1048576\n").await;
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut client = broker.client().await;
        client
            .stream
            .write_all(&(100 * 1024 * 1024i32).to_be_bytes())
            .await
            .unwrap();
        stalled.push(client);
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    tokio::time::timeout(std::time::Duration::from_secs(5), still_serving(&broker))
        .await
        .expect("a small request waited behind announced frames");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_acks0_produce_closes_the_connection() {
    let broker = TestBroker::start().await;
    let mut client = broker.client().await;
    let request = common::produce_request("missing", 0, batch(0, 1, 0), 0);
    client
        .send(ApiKey::Produce, 9, RequestKind::Produce(request))
        .await;
    assert!(client.is_closed_by_broker().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_topics_refuse_records_without_keys() {
    use kafka_protocol::records::Compression;
    let broker = TestBroker::start().await;
    let mut client = broker.client().await;
    client
        .create_topic("compacted", 1, &[("cleanup.policy", "compact")])
        .await;
    let keyless = common::record(0, 0, None, bytes::Bytes::from_static(b"v"));
    let buf = common::encode(&[keyless], Compression::None);
    let response = client.produce("compacted", 0, buf.freeze(), -1).await;
    assert_eq!(response.responses[0].partition_responses[0].error_code, 87);
    // Keyed records are fine.
    let response = client.produce("compacted", 0, batch(0, 2, 0), -1).await;
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
}
