//! Transactions over TCP: every version of the transaction APIs, read_committed fetches held
//! at the last stable offset and given the aborted transactions, offsets committed with a
//! transaction, fencing by epoch, timeouts, and the coordinator's state across a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Buf;
use bytes::Bytes;
use common::{TestBroker, fetch_request, produce_request, topic_name};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey,
    DescribeTransactionsRequest, EndTxnRequest, FetchResponse, GroupId, ListOffsetsRequest,
    ListTransactionsRequest, OffsetFetchRequest, ProducerId, RequestKind, ResponseKind,
    TransactionalId, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;

const TOPIC: &str = "txn";

fn txn_id(id: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(id.to_string()))
}

fn txn_batch(id: i64, epoch: i16, first_seq: i32, count: i32, tag: &str) -> Bytes {
    common::producer_batch(id, epoch, first_seq, count, tag, true)
}

async fn init(
    client: &mut common::Client,
    id: &str,
    version: i16,
    timeout_ms: i32,
) -> (i16, i64, i16) {
    let response = client.init_producer_id(Some(id), timeout_ms, version).await;
    (
        response.error_code,
        response.producer_id.0,
        response.producer_epoch,
    )
}

async fn add_partitions(
    client: &mut common::Client,
    version: i16,
    id: &str,
    producer: (i64, i16),
    partitions: Vec<i32>,
    verify_only: bool,
) -> Vec<i16> {
    let topic = AddPartitionsToTxnTopic::default()
        .with_name(topic_name(TOPIC))
        .with_partitions(partitions);
    let mut request = AddPartitionsToTxnRequest::default();
    if version <= 3 {
        request.v3_and_below_transactional_id = txn_id(id);
        request.v3_and_below_producer_id = ProducerId(producer.0);
        request.v3_and_below_producer_epoch = producer.1;
        request.v3_and_below_topics = vec![topic];
    } else {
        request.transactions = vec![
            AddPartitionsToTxnTransaction::default()
                .with_transactional_id(txn_id(id))
                .with_producer_id(ProducerId(producer.0))
                .with_producer_epoch(producer.1)
                .with_verify_only(verify_only)
                .with_topics(vec![topic]),
        ];
    }
    let ResponseKind::AddPartitionsToTxn(response) = client
        .call(
            ApiKey::AddPartitionsToTxn,
            version,
            RequestKind::AddPartitionsToTxn(request),
        )
        .await
    else {
        panic!("not an AddPartitionsToTxn response");
    };
    partition_codes(&response, version)
}

fn partition_codes(response: &AddPartitionsToTxnResponse, version: i16) -> Vec<i16> {
    let topics = if version <= 3 {
        &response.results_by_topic_v3_and_below
    } else {
        &response.results_by_transaction[0].topic_results
    };
    topics
        .iter()
        .flat_map(|t| {
            t.results_by_partition
                .iter()
                .map(|p| p.partition_error_code)
        })
        .collect()
}

async fn end_txn(
    client: &mut common::Client,
    version: i16,
    id: &str,
    producer: (i64, i16),
    commit: bool,
) -> i16 {
    let mut request = EndTxnRequest::default();
    request.transactional_id = txn_id(id);
    request.producer_id = ProducerId(producer.0);
    request.producer_epoch = producer.1;
    request.committed = commit;
    let ResponseKind::EndTxn(response) = client
        .call(ApiKey::EndTxn, version, RequestKind::EndTxn(request))
        .await
    else {
        panic!("not an EndTxn response");
    };
    response.error_code
}

async fn produce_txn(
    client: &mut common::Client,
    id: &str,
    partition: i32,
    batch: Bytes,
) -> (i16, i64) {
    let mut request = produce_request(TOPIC, partition, batch, -1);
    request.transactional_id = Some(txn_id(id));
    let ResponseKind::Produce(response) = client
        .call(ApiKey::Produce, 9, RequestKind::Produce(request))
        .await
    else {
        panic!("not a Produce response");
    };
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// A read_committed fetch (v12) of one partition from offset 0, without waiting.
async fn fetch_committed(client: &mut common::Client, partition: i32) -> FetchResponse {
    let mut request = fetch_request(TOPIC, partition, 0, 0);
    request.isolation_level = 1;
    request.min_bytes = 0;
    let ResponseKind::Fetch(response) = client
        .call(ApiKey::Fetch, 12, RequestKind::Fetch(request))
        .await
    else {
        panic!("not a Fetch response");
    };
    response
}

/// Values of the data records fetched (markers left out), aborted ones included.
fn values(response: &FetchResponse) -> Vec<String> {
    let mut records = response.responses[0].partitions[0]
        .records
        .clone()
        .unwrap_or_default();
    let mut out = Vec::new();
    while records.has_remaining() {
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut records).unwrap();
        for r in set.records.into_iter().filter(|r| !r.control) {
            out.push(String::from_utf8(r.value.unwrap_or_default().to_vec()).unwrap());
        }
    }
    out
}

async fn describe(client: &mut common::Client, id: &str) -> (i16, String, i16, usize) {
    let mut request = DescribeTransactionsRequest::default();
    request.transactional_ids = vec![txn_id(id)];
    let ResponseKind::DescribeTransactions(response) = client
        .call(
            ApiKey::DescribeTransactions,
            0,
            RequestKind::DescribeTransactions(request),
        )
        .await
    else {
        panic!("not a DescribeTransactions response");
    };
    let state = &response.transaction_states[0];
    let partitions = state.topics.iter().map(|t| t.partitions.len()).sum();
    (
        state.error_code,
        state.transaction_state.to_string(),
        state.producer_epoch,
        partitions,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_abort_fencing_and_every_version() {
    let mut broker = TestBroker::start().await;
    let mut client = broker.client().await;
    client.create_topic(TOPIC, 2, &[]).await;

    // Every InitProducerId version bumps the epoch of the same producer id.
    let mut producer = (0, 0);
    for version in 0..=5 {
        let (code, id, epoch) = init(&mut client, "t1", version, 60_000).await;
        assert_eq!(code, 0, "InitProducerId v{version}");
        if version > 0 {
            assert_eq!(id, producer.0);
        }
        assert_eq!(epoch, version);
        producer = (id, epoch);
    }
    let (code, ..) = init(&mut client, "t1", 4, 1_000_000_000).await;
    assert_eq!(code, ResponseError::InvalidTransactionTimeout.code());

    // A transactional batch before AddPartitionsToTxn fails verification.
    let (code, _) = produce_txn(
        &mut client,
        "t1",
        0,
        txn_batch(producer.0, producer.1, 0, 2, "early"),
    )
    .await;
    assert_eq!(code, ResponseError::InvalidTxnState.code());

    // Transaction 1 commits on partition 0; transaction 2 aborts on partition 1.
    for version in 0..=3 {
        let codes = add_partitions(&mut client, version, "t1", producer, vec![0], false).await;
        assert_eq!(codes, vec![0], "AddPartitionsToTxn v{version}");
    }
    for version in 4..=5 {
        let codes = add_partitions(&mut client, version, "t1", producer, vec![0, 1], true).await;
        assert_eq!(
            codes,
            vec![0, ResponseError::InvalidTxnState.code()],
            "verify_only v{version}"
        );
    }
    let codes = add_partitions(&mut client, 3, "t1", producer, vec![7], false).await;
    assert_eq!(codes, vec![ResponseError::UnknownTopicOrPartition.code()]);
    assert_eq!(
        produce_txn(
            &mut client,
            "t1",
            0,
            txn_batch(producer.0, producer.1, 0, 3, "one")
        )
        .await,
        (0, 0)
    );
    // Non-transactional data after the open transaction.
    let plain = client.produce(TOPIC, 0, common::batch(0, 1, 1), -1).await;
    assert_eq!(plain.responses[0].partition_responses[0].base_offset, 3);
    // read_committed stops at the open transaction's first offset.
    let held = fetch_committed(&mut client, 0).await;
    assert!(values(&held).is_empty());
    assert_eq!(held.responses[0].partitions[0].last_stable_offset, 0);
    assert_eq!(held.responses[0].partitions[0].high_watermark, 4);
    assert_eq!(
        describe(&mut client, "t1").await,
        (0, "Ongoing".into(), 5, 1)
    );

    // Offsets committed with the transaction.
    let mut add_offsets = AddOffsetsToTxnRequest::default();
    add_offsets.transactional_id = txn_id("t1");
    add_offsets.producer_id = ProducerId(producer.0);
    add_offsets.producer_epoch = producer.1;
    add_offsets.group_id = GroupId(StrBytes::from_static_str("txn-group"));
    for version in 0..=4 {
        let ResponseKind::AddOffsetsToTxn(response) = client
            .call(
                ApiKey::AddOffsetsToTxn,
                version,
                RequestKind::AddOffsetsToTxn(add_offsets.clone()),
            )
            .await
        else {
            panic!("not an AddOffsetsToTxn response");
        };
        assert_eq!(response.error_code, 0, "AddOffsetsToTxn v{version}");
    }
    for version in 0..=5 {
        let mut request = TxnOffsetCommitRequest::default();
        request.transactional_id = txn_id("t1");
        request.group_id = GroupId(StrBytes::from_static_str("txn-group"));
        request.producer_id = ProducerId(producer.0);
        request.producer_epoch = producer.1;
        request.generation_id = -1;
        request.topics = vec![
            TxnOffsetCommitRequestTopic::default()
                .with_name(topic_name(TOPIC))
                .with_partitions(vec![
                    TxnOffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(40 + i64::from(version)),
                ]),
        ];
        let ResponseKind::TxnOffsetCommit(response) = client
            .call(
                ApiKey::TxnOffsetCommit,
                version,
                RequestKind::TxnOffsetCommit(request),
            )
            .await
        else {
            panic!("not a TxnOffsetCommit response");
        };
        assert_eq!(
            response.topics[0].partitions[0].error_code, 0,
            "TxnOffsetCommit v{version}"
        );
    }
    // Not visible yet; with require_stable the consumer is told to retry.
    assert_eq!(committed_offset(&mut client, false).await, (0, -1));
    assert_eq!(
        committed_offset(&mut client, true).await,
        (ResponseError::UnstableOffsetCommit.code(), -1)
    );

    assert_eq!(end_txn(&mut client, 3, "t1", producer, true).await, 0);
    // A retry of the commit succeeds; an abort now is refused.
    assert_eq!(end_txn(&mut client, 0, "t1", producer, true).await, 0);
    assert_eq!(
        end_txn(&mut client, 1, "t1", producer, false).await,
        ResponseError::InvalidTxnState.code()
    );
    let released = fetch_committed(&mut client, 0).await;
    assert_eq!(
        values(&released),
        vec!["one-0", "one-1", "one-2", "value-0"]
    );
    assert_eq!(released.responses[0].partitions[0].last_stable_offset, 5);
    assert_eq!(committed_offset(&mut client, true).await, (0, 45));
    assert_eq!(
        describe(&mut client, "t1").await,
        (0, "CompleteCommit".into(), 5, 0)
    );

    // Transaction 2 aborts on partition 1: read_committed gets the aborted transaction.
    assert_eq!(
        add_partitions(&mut client, 2, "t1", producer, vec![1], false).await,
        vec![0]
    );
    assert_eq!(
        produce_txn(
            &mut client,
            "t1",
            1,
            txn_batch(producer.0, producer.1, 0, 2, "two")
        )
        .await,
        (0, 0)
    );
    assert_eq!(end_txn(&mut client, 5, "t1", producer, false).await, 0);
    let aborted = fetch_committed(&mut client, 1).await;
    let partition = &aborted.responses[0].partitions[0];
    let list = partition.aborted_transactions.clone().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].producer_id.0, list[0].first_offset),
        (producer.0, 0)
    );
    assert_eq!(partition.last_stable_offset, 3);
    // ListOffsets: read_committed's latest is the last stable offset.
    assert_eq!(latest_offset(&mut client, 1, 1).await, 3);

    // A second instance fences the first: its epoch is refused everywhere.
    let (code, id, epoch) = init(&mut client, "t1", 4, 60_000).await;
    assert_eq!((code, id, epoch), (0, producer.0, producer.1 + 1));
    assert_eq!(
        end_txn(&mut client, 1, "t1", producer, true).await,
        ResponseError::InvalidProducerEpoch.code()
    );
    assert_eq!(
        end_txn(&mut client, 2, "t1", producer, true).await,
        ResponseError::ProducerFenced.code()
    );
    assert_eq!(
        add_partitions(&mut client, 3, "t1", producer, vec![0], false).await,
        vec![ResponseError::ProducerFenced.code()]
    );
    assert_eq!(
        add_partitions(&mut client, 1, "t1", producer, vec![0], false).await,
        vec![ResponseError::InvalidProducerEpoch.code()]
    );
    // An unknown transactional id.
    assert_eq!(
        end_txn(&mut client, 3, "nobody", producer, true).await,
        ResponseError::InvalidProducerIdMapping.code()
    );
    assert_eq!(
        describe(&mut client, "nobody").await.0,
        ResponseError::TransactionalIdNotFound.code()
    );

    for version in 0..=2 {
        let mut request = ListTransactionsRequest::default();
        request.duration_filter = -1;
        if version >= 2 {
            request.transactional_id_pattern = Some(StrBytes::from_static_str("t.*"));
        }
        request.state_filters = vec![
            StrBytes::from_static_str("Empty"),
            StrBytes::from_static_str("Bogus"),
        ];
        let ResponseKind::ListTransactions(response) = client
            .call(
                ApiKey::ListTransactions,
                version,
                RequestKind::ListTransactions(request),
            )
            .await
        else {
            panic!("not a ListTransactions response");
        };
        assert_eq!(response.error_code, 0);
        assert_eq!(response.unknown_state_filters.len(), 1);
        assert_eq!(
            response.transaction_states.len(),
            1,
            "ListTransactions v{version}"
        );
        assert_eq!(
            response.transaction_states[0].transactional_id.to_string(),
            "t1"
        );
    }
    broker.stop().await;
}

async fn committed_offset(client: &mut common::Client, require_stable: bool) -> (i16, i64) {
    let mut request = OffsetFetchRequest::default();
    request.group_id = GroupId(StrBytes::from_static_str("txn-group"));
    request.require_stable = require_stable;
    request.topics = Some(vec![
        OffsetFetchRequestTopic::default()
            .with_name(topic_name(TOPIC))
            .with_partition_indexes(vec![0]),
    ]);
    let ResponseKind::OffsetFetch(response) = client
        .call(ApiKey::OffsetFetch, 7, RequestKind::OffsetFetch(request))
        .await
    else {
        panic!("not an OffsetFetch response");
    };
    let p = &response.topics[0].partitions[0];
    (p.error_code, p.committed_offset)
}

async fn latest_offset(client: &mut common::Client, partition: i32, isolation_level: i8) -> i64 {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let mut request = ListOffsetsRequest::default();
    request.replica_id = kafka_protocol::messages::BrokerId(-1);
    request.isolation_level = isolation_level;
    request.topics = vec![
        ListOffsetsTopic::default()
            .with_name(topic_name(TOPIC))
            .with_partitions(vec![
                ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_timestamp(-1),
            ]),
    ];
    let ResponseKind::ListOffsets(response) = client
        .call(ApiKey::ListOffsets, 5, RequestKind::ListOffsets(request))
        .await
    else {
        panic!("not a ListOffsets response");
    };
    response.topics[0].partitions[0].offset
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_restart_and_timeouts_abort() {
    let mut broker =
        TestBroker::start_with("transaction_abort_timed_out_check_interval_ms: 100\n").await;
    let mut client = broker.client().await;
    client.create_topic(TOPIC, 2, &[]).await;
    let (_, id, epoch) = init(&mut client, "keep", 4, 60_000).await;
    let producer = (id, epoch);
    assert_eq!(
        add_partitions(&mut client, 3, "keep", producer, vec![0], false).await,
        vec![0]
    );
    assert_eq!(
        produce_txn(&mut client, "keep", 0, txn_batch(id, epoch, 0, 2, "kept")).await,
        (0, 0)
    );

    // The open transaction, its partitions and its producer come back after a restart.
    drop(client);
    broker.restart().await;
    let mut client = broker.client().await;
    assert_eq!(
        describe(&mut client, "keep").await,
        (0, "Ongoing".into(), epoch, 1)
    );
    assert!(values(&fetch_committed(&mut client, 0).await).is_empty());
    assert_eq!(
        produce_txn(&mut client, "keep", 0, txn_batch(id, epoch, 2, 1, "more")).await,
        (0, 2)
    );
    assert_eq!(end_txn(&mut client, 3, "keep", producer, true).await, 0);
    assert_eq!(
        values(&fetch_committed(&mut client, 0).await),
        vec!["kept-0", "kept-1", "more-0"]
    );

    // A transaction past its timeout is aborted and its producer fenced.
    let (_, id, epoch) = init(&mut client, "slow", 4, 500).await;
    assert_eq!(
        add_partitions(&mut client, 3, "slow", (id, epoch), vec![1], false).await,
        vec![0]
    );
    assert_eq!(
        produce_txn(&mut client, "slow", 1, txn_batch(id, epoch, 0, 1, "slow")).await,
        (0, 0)
    );
    let mut state = describe(&mut client, "slow").await;
    for _ in 0..100 {
        if state.1 == "CompleteAbort" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        state = describe(&mut client, "slow").await;
    }
    assert_eq!(state, (0, "CompleteAbort".into(), epoch + 1, 0));
    assert_eq!(
        end_txn(&mut client, 3, "slow", (id, epoch), true).await,
        ResponseError::ProducerFenced.code()
    );
    // The record is still there for read_uncommitted; read_committed is told it was aborted.
    let fetched = fetch_committed(&mut client, 1).await;
    assert_eq!(values(&fetched), vec!["slow-0"]);
    let partition = &fetched.responses[0].partitions[0];
    assert_eq!(partition.last_stable_offset, 2);
    let aborted = partition.aborted_transactions.clone().unwrap();
    assert_eq!((aborted.len(), aborted[0].producer_id.0), (1, id));
    broker.stop().await;
}
