//! ListOffsets: earliest (-2, and -4/-5 which mean the same without tiered storage), latest
//! (-1: the high watermark, one past the last readable record), max timestamp (-3) and the
//! first offset whose record timestamp is at least a given time (searching inside batches).

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::broker::Broker;
use crate::log::LogError;
use crate::log::partition::{Isolation, LEADER_EPOCH, Partition};
use crate::log::records::offsets_and_timestamps;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let mut response = ListOffsetsResponse::default();
    let isolation = if version >= 2 {
        Isolation::from_level(request.isolation_level)
    } else {
        Isolation::ReadUncommitted
    };
    for topic_request in request.topics {
        let topic = broker.logs.topic(&topic_request.name);
        let mut topic_response = ListOffsetsTopicResponse::default();
        topic_response.name = topic_request.name;
        for p in topic_request.partitions {
            let mut entry = ListOffsetsPartitionResponse::default();
            entry.partition_index = p.partition_index;
            entry.timestamp = -1;
            entry.offset = -1;
            // -1 unless an offset is found; the crate refuses the field before v4.
            let with_epoch = version >= 4;
            match topic.as_ref().and_then(|t| t.partition(p.partition_index)) {
                None => entry.error_code = ResponseError::UnknownTopicOrPartition.code(),
                Some(partition) => {
                    let found = lookup(partition, p.timestamp, isolation).await;
                    match found {
                        Ok(Some((offset, timestamp))) => {
                            entry.offset = offset;
                            entry.timestamp = timestamp;
                            if with_epoch {
                                entry.leader_epoch = LEADER_EPOCH;
                            }
                        }
                        Ok(None) => {}
                        Err(e) => entry.error_code = e.error_code(),
                    }
                }
            }
            topic_response.partitions.push(entry);
        }
        response.topics.push(topic_response);
    }
    response
}

/// `(offset, timestamp)` for a ListOffsets query, `None` when no record matches.
async fn lookup(
    partition: Arc<Partition>,
    target: i64,
    isolation: Isolation,
) -> Result<Option<(i64, i64)>, LogError> {
    let marks = partition.watermarks();
    match target {
        EARLIEST | EARLIEST_LOCAL => Ok(Some((marks.log_start_offset, -1))),
        // read_committed consumers start from the last stable offset, not the high watermark.
        LATEST if isolation == Isolation::ReadCommitted => Ok(Some((marks.last_stable_offset, -1))),
        LATEST => Ok(Some((marks.high_watermark, -1))),
        // Nothing is tiered: Kafka answers -1 then.
        LATEST_TIERED => Ok(None),
        MAX_TIMESTAMP => {
            let batch = blocking(move || partition.batch_with_max_timestamp()).await?;
            Ok(batch.and_then(|b| record_with_max_timestamp(&b)))
        }
        ts if ts >= 0 => {
            let batch = blocking(move || partition.batch_by_timestamp(ts)).await?;
            Ok(batch.and_then(|b| first_record_at_or_after(&b, ts)))
        }
        _ => Ok(None),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LogError> + Send + 'static,
) -> Result<T, LogError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LogError::Io {
            context: "list offsets".into(),
            source: std::io::Error::other(e.to_string()),
        })?
}

fn first_record_at_or_after(batch: &Bytes, target: i64) -> Option<(i64, i64)> {
    offsets_and_timestamps(batch)
        .ok()?
        .into_iter()
        .find(|(_, ts)| *ts >= target)
}

fn record_with_max_timestamp(batch: &Bytes) -> Option<(i64, i64)> {
    // The first record holding the maximum, as Kafka answers.
    offsets_and_timestamps(batch)
        .ok()?
        .into_iter()
        .reduce(|best, r| if r.1 > best.1 { r } else { best })
}
