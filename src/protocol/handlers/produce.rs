//! Produce. Stage one (before the connection reads its next request) validates every batch
//! and assigns offsets, so pipelined produce requests keep their order; stage two waits for
//! the persistence each `acks` level promises: none (acks=0, no response), the page cache
//! (acks=1) or the high watermark (acks=all).

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;
use tracing::debug;

use crate::broker::Broker;
use crate::log::batch::validate_produce_records;
use crate::log::commit::{AckLevel, PendingAppend};
use crate::log::manager::Topic;
use crate::log::partition::{Appended, Partition};
use crate::log::topic_config::CleanupPolicy;
use crate::log::transactions::TxnVerifier;
use crate::protocol::{Reply, ResponseFuture};
use crate::telemetry;

/// One partition's outcome of stage one.
enum Outcome {
    Failed(i16, Option<String>),
    Appended {
        append: Arc<PendingAppend>,
        log_append_time: i64,
        log_start_offset: i64,
        /// Records and bytes of the batches, counted in the metrics once acknowledged.
        records: u64,
        bytes: u64,
    },
    /// An idempotent producer's retry: answered with the original offsets once the high
    /// watermark covers them (the original may still be on its way to disk).
    Duplicate {
        partition: Arc<Partition>,
        base_offset: i64,
        last_offset: i64,
    },
}

struct PartitionSlot {
    index: i32,
    outcome: Outcome,
}

struct TopicSlot {
    name: TopicName,
    /// The topic's name for the metrics (v13+ requests carry only its id).
    label: String,
    topic_id: uuid::Uuid,
    partitions: Vec<PartitionSlot>,
}

pub async fn handle(broker: &Arc<Broker>, version: i16, request: ProduceRequest) -> ResponseFuture {
    let acks = request.acks;
    let level = match acks {
        0 | 1 => AckLevel::Written,
        -1 => AckLevel::Committed,
        _ => {
            return finish_now(request, ResponseError::InvalidRequiredAcks.code());
        }
    };
    let transactional_id = request.transactional_id.as_ref().map(|id| id.to_string());
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for topic_data in request.topic_data {
        topics.push(append_topic(broker, version, topic_data, transactional_id.as_deref()).await);
    }
    if acks == 0 {
        let failed = topics
            .iter()
            .flat_map(|t| &t.partitions)
            .any(|p| matches!(p.outcome, Outcome::Failed(..)));
        if !failed {
            for topic in &topics {
                for slot in &topic.partitions {
                    if let Outcome::Appended { records, bytes, .. } = slot.outcome {
                        telemetry::produced(&topic.label, records, bytes);
                    }
                }
            }
        } else {
            let mut reply: Reply = ResponseKind::Produce(ProduceResponse::default()).into();
            reply.close_connection = true;
            return Box::pin(std::future::ready(Some(reply)));
        }
        return Box::pin(std::future::ready(None));
    }
    // One deadline for the whole request, however many partitions it waits for.
    let deadline = Instant::now() + Duration::from_millis(request.timeout_ms.max(0) as u64);
    Box::pin(async move {
        let mut response = ProduceResponse::default();
        for topic in topics {
            let mut entry = TopicProduceResponse::default();
            entry.name = topic.name;
            entry.topic_id = topic.topic_id;
            for slot in topic.partitions {
                let counted = match slot.outcome {
                    Outcome::Appended { records, bytes, .. } => Some((records, bytes)),
                    _ => None,
                };
                let answer = complete(slot, level, deadline).await;
                if let (0, Some((records, bytes))) = (answer.error_code, counted) {
                    telemetry::produced(&topic.label, records, bytes);
                }
                entry.partition_responses.push(answer);
            }
            response.responses.push(entry);
        }
        Some(ResponseKind::Produce(response).into())
    })
}

/// Answers every partition with one error (a request-level problem such as bad acks).
fn finish_now(request: ProduceRequest, code: i16) -> ResponseFuture {
    let mut response = ProduceResponse::default();
    for topic_data in request.topic_data {
        let mut entry = TopicProduceResponse::default();
        entry.name = topic_data.name;
        entry.topic_id = topic_data.topic_id;
        for partition in topic_data.partition_data {
            entry
                .partition_responses
                .push(partition_response(partition.index, code, None));
        }
        response.responses.push(entry);
    }
    Box::pin(std::future::ready(Some(
        ResponseKind::Produce(response).into(),
    )))
}

async fn append_topic(
    broker: &Arc<Broker>,
    version: i16,
    data: TopicProduceData,
    transactional_id: Option<&str>,
) -> TopicSlot {
    // v13+ names topics by id only (KIP-516).
    let topic: Result<Arc<Topic>, i16> = if version >= 13 {
        broker
            .logs
            .topic_by_id(data.topic_id)
            .ok_or(ResponseError::UnknownTopicId.code())
    } else {
        broker
            .topic_or_create(&data.name, false)
            .await
            .map_err(|e| e.error_code())
    };
    let label = match &topic {
        Ok(topic) => topic.name.clone(),
        Err(_) => data.name.to_string(),
    };
    let mut slot = TopicSlot {
        label,
        name: data.name,
        topic_id: data.topic_id,
        partitions: Vec::with_capacity(data.partition_data.len()),
    };
    for partition in data.partition_data {
        let index = partition.index;
        let outcome = match &topic {
            Ok(topic) => append_partition(broker, topic, partition, transactional_id).await,
            Err(code) => Outcome::Failed(*code, None),
        };
        slot.partitions.push(PartitionSlot { index, outcome });
    }
    slot
}

async fn append_partition(
    broker: &Arc<Broker>,
    topic: &Topic,
    data: PartitionProduceData,
    transactional_id: Option<&str>,
) -> Outcome {
    let Some(partition) = topic.partition(data.index) else {
        return Outcome::Failed(ResponseError::UnknownTopicOrPartition.code(), None);
    };
    let config = partition.config();
    let Some(records) = data.records else {
        return Outcome::Failed(ResponseError::InvalidRecord.code(), None);
    };
    let require_keys = config.cleanup_policy != CleanupPolicy::Delete;
    let max_bytes = config.max_message_bytes.max(0) as usize;
    let batches = match validate_produce_records(&records, max_bytes, require_keys) {
        Ok(batches) => batches,
        Err(e) => {
            debug!(topic = %topic.name, partition = data.index, error = %e, "rejected batch");
            return Outcome::Failed(e.error_code(), Some(e.to_string()));
        }
    };
    let mut records = 0u64;
    let mut bytes = 0u64;
    for batch in &batches {
        records += batch.header.record_count.max(0) as u64;
        bytes += batch.bytes.len() as u64;
        telemetry::produce_batch(batch.bytes.len());
    }
    // Nearly full disk: refused before offsets are assigned, retriable (see disk::space).
    if broker.space.is_low() {
        return Outcome::Failed(
            ResponseError::KafkaStorageError.code(),
            Some(format!(
                "disk space low: {} bytes available, disk_min_free_bytes is {}",
                broker.space.available(),
                broker.space.min_free()
            )),
        );
    }
    // A transaction's first batch in a partition is checked with its coordinator (KIP-890).
    let verifier = batches
        .iter()
        .any(|b| b.header.is_transactional())
        .then(|| {
            broker
                .txns
                .verifier(transactional_id, &topic.name, data.index)
        });
    match partition
        .append(batches, verifier.as_ref().map(|v| v as &dyn TxnVerifier))
        .await
    {
        Ok(Appended::New {
            append,
            log_append_time,
        }) => Outcome::Appended {
            append,
            log_append_time,
            log_start_offset: partition.watermarks().log_start_offset,
            records,
            bytes,
        },
        Ok(Appended::Duplicate {
            base_offset,
            last_offset,
        }) => {
            debug!(topic = %topic.name, partition = data.index, base_offset,
                "duplicate batch of an idempotent producer: answered with its original offsets");
            Outcome::Duplicate {
                partition,
                base_offset,
                last_offset,
            }
        }
        Err(e) => Outcome::Failed(e.error_code(), Some(e.to_string())),
    }
}

async fn complete(
    slot: PartitionSlot,
    level: AckLevel,
    deadline: Instant,
) -> PartitionProduceResponse {
    match slot.outcome {
        Outcome::Failed(code, message) => partition_response(slot.index, code, message),
        Outcome::Duplicate {
            partition,
            base_offset,
            last_offset,
        } => {
            let mut committed = partition.subscribe();
            let covered = tokio::time::timeout_at(
                deadline,
                committed.wait_for(|high_watermark| *high_watermark > last_offset),
            )
            .await;
            let code = match covered {
                Ok(Ok(_)) => 0,
                // The partition closed, or poisoned before the original was persisted.
                Ok(Err(_)) => ResponseError::KafkaStorageError.code(),
                Err(_) => ResponseError::RequestTimedOut.code(),
            };
            let mut response = partition_response(slot.index, code, None);
            if code == 0 {
                response.base_offset = base_offset;
                response.log_start_offset = partition.watermarks().log_start_offset;
            }
            response
        }
        Outcome::Appended {
            append,
            log_append_time,
            log_start_offset,
            ..
        } => {
            let code = match tokio::time::timeout_at(deadline, append.wait(level)).await {
                Ok(Ok(())) => 0,
                Ok(Err(_)) => ResponseError::KafkaStorageError.code(),
                Err(_) => ResponseError::RequestTimedOut.code(),
            };
            let mut response = partition_response(slot.index, code, None);
            if code == 0 {
                response.base_offset = append.base_offset;
                response.log_append_time_ms = log_append_time;
                response.log_start_offset = log_start_offset;
            }
            response
        }
    }
}

fn partition_response(index: i32, code: i16, message: Option<String>) -> PartitionProduceResponse {
    let mut response = PartitionProduceResponse::default();
    response.index = index;
    response.error_code = code;
    response.base_offset = -1;
    response.log_append_time_ms = -1;
    response.log_start_offset = -1;
    response.error_message = message.map(StrBytes::from_string);
    response
}
