//! Fetch: whole batches from each partition up to its high watermark (read_committed: its
//! last stable offset, with the aborted transactions to drop), bounded by the partition
//! and response byte limits (at least one batch, KIP-74), with long-poll: a fetch that has
//! less than `min_bytes` waits until a high watermark it reads advances, `max_wait_ms`
//! passes, or the broker shuts down. Fetch sessions are not kept: every response carries
//! session id 0, which tells clients to send full fetch requests.
//!
//! Large spans of segments are answered as file ranges, which the connection sends with
//! `sendfile`; the response holds a marker in their place (`response_frame`).

use std::sync::Arc;
use std::time::Duration;

use futures::future::select_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId, TopicName};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Instant;

use crate::broker::Broker;
use crate::log::LogError;
use crate::log::partition::{Isolation, Partition};
use crate::log::record_set::RecordSet;
use crate::log::segment::ReadInto;
use crate::log::transactions::AbortedTxn;
use crate::protocol::response_frame::Spliced;

/// A partition of the request, resolved to the broker's partition or an error code.
struct Wanted {
    topic_index: usize,
    index: i32,
    fetch_offset: i64,
    max_bytes: usize,
    partition: Result<Arc<Partition>, i16>,
}

/// Returns the response, the record sets it carries as runs of their own, and the
/// fetch-budget permit its record bytes hold until written.
pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: FetchRequest,
) -> (FetchResponse, Spliced, Option<OwnedSemaphorePermit>) {
    let mut response = FetchResponse::default();
    let mut runs = Spliced::default();
    if request.session_epoch > 0 {
        // We never hand out session ids, so an incremental fetch names an unknown session;
        // epochs 0 and -1 are full fetches whatever the session id.
        response.error_code = ResponseError::FetchSessionIdNotFound.code();
        return (response, runs, None);
    }
    let isolation = if version >= 4 {
        Isolation::from_level(request.isolation_level)
    } else {
        Isolation::ReadUncommitted
    };
    let mut topics: Vec<(TopicName, uuid::Uuid)> = Vec::with_capacity(request.topics.len());
    let mut wanted = Vec::new();
    for (topic_index, fetch_topic) in request.topics.into_iter().enumerate() {
        let by_id = version >= 13;
        let topic = if by_id {
            broker.logs.topic_by_id(fetch_topic.topic_id)
        } else {
            broker.logs.topic(&fetch_topic.topic)
        };
        let missing = if by_id {
            ResponseError::UnknownTopicId.code()
        } else {
            ResponseError::UnknownTopicOrPartition.code()
        };
        topics.push((fetch_topic.topic, fetch_topic.topic_id));
        for p in fetch_topic.partitions {
            let partition = match &topic {
                Some(topic) => topic
                    .partition(p.partition)
                    .ok_or(ResponseError::UnknownTopicOrPartition.code()),
                None => Err(missing),
            };
            wanted.push(Wanted {
                topic_index,
                index: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as usize,
                partition,
            });
        }
    }
    let wanted = Arc::new(wanted);
    let broker_max = broker.config.fetch_max_bytes.max(0) as usize;
    let max_bytes = if version >= 3 {
        (request.max_bytes.max(0) as usize).min(broker_max)
    } else {
        broker_max
    };
    let min_bytes = request.min_bytes.max(0) as usize;
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);

    // Subscribe before reading, so an advance between the read and the wait is not missed.
    let mut watches: Vec<watch::Receiver<i64>> = wanted
        .iter()
        .filter_map(|w| w.partition.as_ref().ok().map(|p| p.subscribe()))
        .collect();
    let (results, hold) = loop {
        for watch in &mut watches {
            watch.mark_unchanged();
        }
        // Reserve what this read may return; keep only what it did return. The wait is bounded
        // by the fetch's own deadline: the budget may be held by this connection's later
        // fetches, answered already and queued behind this one for a client that is not
        // reading, and waiting for them would deadlock the connection. An empty answer lets
        // the client fetch again.
        let reserved = tokio::select! {
            hold = broker.reserve_fetch_bytes(max_bytes) => Some(hold),
            _ = tokio::time::sleep_until(deadline) => None,
            _ = broker.shutdown.cancelled() => None,
        };
        let Some(mut hold) = reserved else {
            break (empty_reads(&wanted), None);
        };
        let task_wanted = wanted.clone();
        let results =
            tokio::task::spawn_blocking(move || read_all(&task_wanted, max_bytes, isolation))
                .await
                .unwrap_or_default();
        // File ranges count too: the budget bounds what responses queue for their clients,
        // and a range queued behind a slow client keeps its segment's file open.
        let bytes: usize = results
            .iter()
            .map(|r| r.records.as_ref().map_or(0, RecordSet::len))
            .sum();
        let any_error = results.iter().any(|r| r.error_code != 0);
        if bytes >= min_bytes || any_error || watches.is_empty() {
            // Growing the permit for a first batch above the limits waits as boundedly.
            tokio::select! {
                _ = fit_permit(broker, &mut hold, bytes) => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = broker.shutdown.cancelled() => {}
            }
            break (results, hold);
        }
        drop(hold);
        let now = Instant::now();
        if now >= deadline || broker.shutdown.is_triggered() {
            break (results, None);
        }
        let changed = select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = broker.shutdown.cancelled() => {}
        }
    };

    let mut responses: Vec<FetchableTopicResponse> = topics
        .into_iter()
        .map(|(name, id)| {
            let mut topic = FetchableTopicResponse::default();
            topic.topic = name;
            topic.topic_id = id;
            topic
        })
        .collect();
    for (w, result) in wanted.iter().zip(results) {
        let mut data = PartitionData::default();
        data.partition_index = w.index;
        data.error_code = result.error_code;
        data.high_watermark = result.high_watermark;
        data.last_stable_offset = result.last_stable_offset;
        data.log_start_offset = result.log_start_offset;
        // read_committed consumers need the list (empty or not); others get null.
        data.aborted_transactions = (isolation == Isolation::ReadCommitted).then(|| {
            result
                .aborted
                .iter()
                .map(|a| {
                    AbortedTransaction::default()
                        .with_producer_id(ProducerId(a.producer_id))
                        .with_first_offset(a.first_offset)
                })
                .collect()
        });
        if let (Ok(partition), Some(records)) = (&w.partition, &result.records)
            && !records.is_empty()
        {
            crate::telemetry::fetched(
                partition.topic(),
                records.record_count(),
                records.len() as u64,
            );
        }
        // Placed in encoding order: `wanted` is in topic order, as `responses` is.
        data.records = Some(match result.records {
            Some(records) => runs.place(records),
            None => Default::default(),
        });
        if let Some(topic) = responses.get_mut(w.topic_index) {
            topic.partitions.push(data);
        }
    }
    response.responses = responses;
    (response, runs, hold)
}

/// Shrinks (or, for a first batch above the limits, grows) a fetch permit to `bytes`.
async fn fit_permit(broker: &Broker, hold: &mut Option<OwnedSemaphorePermit>, bytes: usize) {
    let Some(permit) = hold.as_mut() else {
        return;
    };
    let held = permit.num_permits();
    if bytes < held {
        drop(permit.split(held - bytes.max(1)));
    } else if bytes > held
        && let Some(extra) = broker.reserve_fetch_bytes(bytes - held).await
    {
        permit.merge(extra);
    }
}

/// Every wanted partition with no records and its current watermarks.
fn empty_reads(wanted: &[Wanted]) -> Vec<PartitionRead> {
    wanted
        .iter()
        .map(|w| match &w.partition {
            Ok(partition) => PartitionRead::without_records(0, Some(partition)),
            Err(code) => PartitionRead::without_records(*code, None),
        })
        .collect()
}

#[derive(Debug, Default)]
struct PartitionRead {
    error_code: i16,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
    records: Option<RecordSet>,
    aborted: Vec<AbortedTxn>,
}

impl PartitionRead {
    /// No records: `code` with the partition's watermarks, or -1s when there is none.
    fn without_records(code: i16, partition: Option<&Partition>) -> PartitionRead {
        let marks = partition.map(|p| p.watermarks());
        PartitionRead {
            error_code: code,
            high_watermark: marks.map_or(-1, |m| m.high_watermark),
            last_stable_offset: marks.map_or(-1, |m| m.last_stable_offset),
            log_start_offset: marks.map_or(-1, |m| m.log_start_offset),
            records: None,
            aborted: Vec::new(),
        }
    }
}

/// Reads every partition in request order (blocking I/O). The first batch found may exceed
/// the limits (KIP-74); after that, partition and response limits hold strictly.
fn read_all(wanted: &[Wanted], max_bytes: usize, isolation: Isolation) -> Vec<PartitionRead> {
    let mut remaining = max_bytes;
    let mut min_one = true;
    wanted
        .iter()
        .map(|w| {
            let partition = match &w.partition {
                Ok(p) => p,
                Err(code) => return PartitionRead::without_records(*code, None),
            };
            let limit = w.max_bytes.min(remaining);
            let read = partition.read(
                w.fetch_offset,
                limit,
                min_one,
                isolation,
                ReadInto::FileWhenLarge,
            );
            match read {
                Ok(read) => {
                    if let Some(records) = &read.records {
                        remaining = remaining.saturating_sub(records.len());
                        min_one = false;
                    }
                    PartitionRead {
                        error_code: 0,
                        high_watermark: read.high_watermark,
                        last_stable_offset: read.last_stable_offset,
                        log_start_offset: read.log_start_offset,
                        records: read.records,
                        aborted: read.aborted,
                    }
                }
                Err(e) => {
                    if !matches!(e, LogError::OffsetOutOfRange) {
                        tracing::warn!(topic = partition.topic(), partition = w.index,
                            error = %e, "fetch read failed");
                    }
                    PartitionRead::without_records(e.error_code(), Some(partition))
                }
            }
        })
        .collect()
}
