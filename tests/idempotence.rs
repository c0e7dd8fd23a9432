//! Idempotent producers over TCP: InitProducerId, a retried batch written once and answered
//! with its original offsets, sequence gaps and stale epochs refused, and the same after a
//! restart (producer state rebuilt from the log).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use common::{TestBroker, decode_records};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::{
    ApiKey, DescribeProducersRequest, InitProducerIdResponse, RequestKind, ResponseKind,
};

fn idempotent_batch(id: i64, epoch: i16, first_seq: i32, count: i32, tag: &str) -> Bytes {
    common::producer_batch(id, epoch, first_seq, count, tag, false)
}

async fn init_producer_id(client: &mut common::Client, version: i16) -> InitProducerIdResponse {
    client.init_producer_id(None, 60_000, version).await
}

/// Produces one batch; returns (error code, base offset).
async fn produce(client: &mut common::Client, batch: Bytes) -> (i16, i64) {
    let response = client.produce("idem", 0, batch, -1).await;
    let partition = &response.responses[0].partition_responses[0];
    (partition.error_code, partition.base_offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_written_once_and_gaps_and_stale_epochs_refused() {
    let mut broker = TestBroker::start().await;
    let mut client = broker.client().await;
    client.create_topic("idem", 1, &[]).await;
    let mut ids = Vec::new();
    for version in 0..=5 {
        let response = init_producer_id(&mut client, version).await;
        assert_eq!(response.error_code, 0, "InitProducerId v{version}");
        assert_eq!(response.producer_epoch, 0);
        ids.push(response.producer_id.0);
    }
    let mut sorted = ids.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "producer ids must differ: {ids:?}");
    let id = ids[0];

    assert_eq!(
        produce(&mut client, idempotent_batch(id, 0, 0, 3, "a")).await,
        (0, 0)
    );
    assert_eq!(
        produce(&mut client, idempotent_batch(id, 0, 3, 2, "b")).await,
        (0, 3)
    );
    // The retry of the first batch: its original offsets, nothing written.
    assert_eq!(
        produce(&mut client, idempotent_batch(id, 0, 0, 3, "a")).await,
        (0, 0)
    );
    // A gap in the sequence.
    let (code, _) = produce(&mut client, idempotent_batch(id, 0, 9, 1, "c")).await;
    assert_eq!(code, ResponseError::OutOfOrderSequenceNumber.code());
    // A new epoch restarts at 0; the old epoch is fenced from then on.
    assert_eq!(
        produce(&mut client, idempotent_batch(id, 1, 0, 1, "d")).await,
        (0, 5)
    );
    let (code, _) = produce(&mut client, idempotent_batch(id, 0, 5, 1, "e")).await;
    assert_eq!(code, ResponseError::InvalidProducerEpoch.code());
    // An unknown producer must start at sequence 0.
    let (code, _) = produce(&mut client, idempotent_batch(id + 1000, 0, 7, 1, "f")).await;
    assert_eq!(code, ResponseError::UnknownProducerId.code());

    // After a restart the state comes back from the log: the retry is still recognised.
    drop(client);
    broker.restart().await;
    let mut client = broker.client().await;
    assert_eq!(
        produce(&mut client, idempotent_batch(id, 1, 0, 1, "d")).await,
        (0, 5)
    );
    assert_eq!(
        produce(&mut client, idempotent_batch(id, 1, 1, 1, "g")).await,
        (0, 6)
    );
    // DescribeProducers shows the producer's epoch and last sequence in the partition.
    let mut describe = DescribeProducersRequest::default();
    let mut topic = TopicRequest::default();
    topic.name = common::topic_name("idem");
    topic.partition_indexes = vec![0, 7];
    describe.topics = vec![topic];
    let ResponseKind::DescribeProducers(described) = client
        .call(
            ApiKey::DescribeProducers,
            0,
            RequestKind::DescribeProducers(describe),
        )
        .await
    else {
        panic!("not a DescribeProducers response");
    };
    let partitions = &described.topics[0].partitions;
    let producer = partitions[0]
        .active_producers
        .iter()
        .find(|p| p.producer_id.0 == id)
        .expect("the producer is listed");
    assert_eq!((producer.producer_epoch, producer.last_sequence), (1, 1));
    assert_eq!(
        partitions[1].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    // Producer ids are never handed out twice, restart or not.
    let after = init_producer_id(&mut client, 4).await.producer_id.0;
    assert!(!ids.contains(&after));
    let fetched = client.fetch("idem", 0, 0, 0).await;
    let records = fetched.responses[0].partitions[0].records.clone().unwrap();
    let values: Vec<String> = decode_records(records)
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values, ["a-0", "a-1", "a-2", "b-0", "b-1", "d-0", "g-0"]);
}
