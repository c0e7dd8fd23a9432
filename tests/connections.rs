//! Connection-level defences over real sockets: slow-loris and idle connections are closed by
//! their deadlines, and so are clients that stop reading their responses; the per-IP limit
//! closes surplus connections, non-Kafka protocols are dropped, and 10,000 connect/close
//! cycles leak no file descriptor.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Client, TestBroker, encode, fetch_request, record};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestKind, ResponseKind};
use kafka_protocol::records::Compression;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn api_versions_ok(client: &mut Client) -> bool {
    let request = RequestKind::ApiVersions(ApiVersionsRequest::default());
    matches!(
        client.call(ApiKey::ApiVersions, 0, request).await,
        ResponseKind::ApiVersions(r) if r.error_code == 0
    )
}

/// Waits until the broker closes `stream`; how long that took.
async fn closed_after(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout_at((started + within).into(), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

async fn connect_from(source: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_is_closed_by_the_request_deadline() {
    let broker = TestBroker::start_with("request_read_timeout_ms: 1000\n").await;
    let mut slow = TcpStream::connect(broker.addr()).await.unwrap();
    // A 1 KiB frame trickled one byte every 100 ms: never idle, never complete.
    slow.write_all(&1024i32.to_be_bytes()).await.unwrap();
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if slow.write_all(&[0u8]).await.is_err() {
                return;
            }
        }
    };
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), trickle)
        .await
        .expect("a trickling client was never closed");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    // A prompt client on its own connection is served throughout.
    let mut client = broker.client().await;
    assert!(api_versions_ok(&mut client).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_active_ones_kept() {
    let broker = TestBroker::start_with("connections_max_idle_ms: 1000\n").await;
    let mut idle = TcpStream::connect(broker.addr()).await.unwrap();
    let mut active = broker.client().await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        assert!(api_versions_ok(&mut active).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let closed = closed_after(&mut idle, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "an idle connection stayed open");
    assert!(
        api_versions_ok(&mut active).await,
        "an active connection was closed"
    );
}

/// A client that asks for far more than its socket takes and then stops reading is closed
/// once the broker's writes make no progress for `connections_max_idle_ms`: its queued
/// responses (and the fetch budget and segment files they hold) are released instead of
/// waiting forever on a full socket. Other clients are served throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_responses_is_closed() {
    let broker = TestBroker::start_with("connections_max_idle_ms: 1000\n").await;
    let mut client = broker.client().await;
    client.create_topic("unread", 1, &[]).await;
    // 16 batches of 512 records of 1 KiB: about 8.5 MiB.
    for start in (0..16 * 512).step_by(512) {
        let records: Vec<_> = (0..512)
            .map(|i| record(i, start + i, None, Bytes::from(vec![b'x'; 1024])))
            .collect();
        let produced = client
            .produce(
                "unread",
                0,
                encode(&records, Compression::None).freeze(),
                -1,
            )
            .await;
        assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
    }
    // How large one answer to the fetch below is.
    let fetch = || RequestKind::Fetch(fetch_request("unread", 0, 0, 0));
    client.send(ApiKey::Fetch, 12, fetch()).await;
    let one_response = client.read_frame().await.unwrap().len() + 4;
    // A tiny receive window, then 32 such fetches, never read.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = Client::over(socket.connect(broker.addr()).await.unwrap());
    for _ in 0..32 {
        stalled.send(ApiKey::Fetch, 12, fetch()).await;
    }
    let stats = broker.server.as_ref().unwrap().broker.stats.clone();
    let started = Instant::now();
    while stats.connections_active() > 1 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "a connection whose client stopped reading stayed open"
        );
        assert!(
            api_versions_ok(&mut client).await,
            "the other client was not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // What the stalled client finds: less than it asked for, then the end of the stream.
    let mut received = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let read_all = async {
        loop {
            match stalled.stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received += n,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_all)
        .await
        .expect("the closed connection never ended");
    assert!(
        received < 32 * one_response,
        "every response arrived: {received} bytes"
    );
    assert!(api_versions_ok(&mut client).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_per_ip_limit_are_closed() {
    let broker = TestBroker::start_with("max_connections_per_ip: 3\n").await;
    let mut admitted = Vec::new();
    for _ in 0..3 {
        let mut client = Client::over(connect_from([127, 0, 0, 1], broker.addr()).await);
        assert!(api_versions_ok(&mut client).await);
        admitted.push(client);
    }
    let mut surplus = connect_from([127, 0, 0, 1], broker.addr()).await;
    assert!(
        closed_after(&mut surplus, Duration::from_secs(5))
            .await
            .is_some(),
        "a fourth connection from one address was kept"
    );
    // Another address has its own count.
    let mut other = Client::over(connect_from([127, 0, 0, 2], broker.addr()).await);
    assert!(api_versions_ok(&mut other).await);
    // A closed connection gives its slot back.
    drop(admitted.pop());
    let mut again = Client::over(connect_from([127, 0, 0, 1], broker.addr()).await);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // The slot is given back once the broker has noticed the close.
        let request = RequestKind::ApiVersions(ApiVersionsRequest::default());
        again.send(ApiKey::ApiVersions, 0, request).await;
        if again.read_frame().await.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot was never reused");
        tokio::time::sleep(Duration::from_millis(50)).await;
        again.stream = connect_from([127, 0, 0, 1], broker.addr()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_protocols_are_dropped() {
    let broker = TestBroker::start().await;
    let tls_client_hello: &[u8] = &[
        0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03,
    ];
    let http: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let ssh: &[u8] = b"SSH-2.0-OpenSSH_9.6\r\n";
    for probe in [tls_client_hello, http, ssh] {
        let mut stream = TcpStream::connect(broker.addr()).await.unwrap();
        stream.write_all(probe).await.unwrap();
        assert!(
            closed_after(&mut stream, Duration::from_secs(5))
                .await
                .is_some(),
            "{probe:?} was not dropped"
        );
    }
    let mut client = broker.client().await;
    assert!(api_versions_ok(&mut client).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connect_close_cycles_leak_no_descriptor() {
    let broker = TestBroker::start_with("max_connections_per_ip: 8\n").await;
    let addr = broker.addr();
    let mut client = broker.client().await;
    assert!(api_versions_ok(&mut client).await);
    let before = open_fds();
    let mut held = Vec::new();
    for cycle in 0..10_000u32 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        match cycle % 4 {
            // Connect and close at once.
            0 => {}
            // Half a frame, then close.
            1 => {
                let _ = stream.write_all(&100i32.to_be_bytes()).await;
                let _ = stream.write_all(&[0u8; 10]).await;
            }
            // A full request whose response is never read.
            2 => {
                let mut c = Client::over(stream);
                let request = RequestKind::ApiVersions(ApiVersionsRequest::default());
                c.send(ApiKey::ApiVersions, 0, request).await;
                stream = c.stream;
            }
            // Held open for a while: the per-IP limit refuses some of the next ones.
            _ => {
                held.push(stream);
                if held.len() > 10 {
                    held.clear();
                }
                continue;
            }
        }
        drop(stream);
    }
    drop(held);
    // The broker closes its ends asynchronously; wait for the count to settle.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = open_fds();
        if now <= before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{before} descriptors before 10,000 cycles, {now} after"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = open_fds();
    assert!(api_versions_ok(&mut client).await);
    common::save_figures(
        "connection-cycles",
        &format!(
            "{{\"cycles\": 10000, \"per_ip_limit\": 8, \"fds_before\": {before}, \"fds_after\": {after}}}"
        ),
    );
}

/// A frame of several read steps arriving in uneven pieces, with pauses between them, is read
/// whole and in order (the reader switches between its buffer and the socket); a frame cut
/// short by the client's close appends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_arriving_in_pieces_are_read_whole_and_cut_ones_dropped() {
    let broker = TestBroker::start().await;
    let mut client = broker.client().await;
    client.create_topic("pieces", 1, &[]).await;
    // About 300 KiB in one batch: several 64 KiB read steps.
    let records = common::batch(0, 12_000, 0);
    let request = common::produce_request("pieces", 0, records, -1);
    let (correlation, frame) =
        client.frame(ApiKey::Produce, 9, &RequestKind::Produce(request.clone()));
    assert!(frame.len() > 4 * 64 * 1024, "{}", frame.len());
    let cuts = [3, 4, 11, 70_000, 70_001, 200_000, frame.len()];
    let mut at = 0;
    for cut in cuts {
        client.stream.write_all(&frame[at..cut]).await.unwrap();
        client.stream.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        at = cut;
    }
    let (answered, response) = client.recv(ApiKey::Produce, 9).await;
    assert_eq!(answered, correlation);
    let ResponseKind::Produce(response) = response else {
        panic!("wrong response")
    };
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    let fetched = client.fetch("pieces", 0, 0, 0).await;
    let values = common::decode_records(
        fetched.responses[0].partitions[0]
            .records
            .clone()
            .unwrap_or_default(),
    );
    assert_eq!(values.len(), 12_000);
    assert_eq!(values[11_999], (11_999, "value-11999".to_string()));

    // The same frame again, cut after 100,000 bytes by a close: nothing is appended.
    let mut cut = broker.client().await;
    let (_, frame) = cut.frame(ApiKey::Produce, 9, &RequestKind::Produce(request));
    cut.stream.write_all(&frame[..100_000]).await.unwrap();
    drop(cut);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fetched = client.fetch("pieces", 0, 0, 0).await;
    assert_eq!(fetched.responses[0].partitions[0].high_watermark, 12_000);
    assert!(api_versions_ok(&mut client).await);
}
