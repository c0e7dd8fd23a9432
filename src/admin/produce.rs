//! `weir produce TOPIC`: one record per input line (`--key-separator` splits a key off),
//! partitioned as Kafka's default partitioner does (keyed: murmur2 of the key; unkeyed:
//! round robin by batch), sent in batches to each partition's leader.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use super::{AdminError, Report};
use crate::client::records::{OutRecord, encode_batch, partition_for_key};
use crate::client::{ClientError, Cluster};

/// Records per partition batch, and bytes buffered over all partitions, before a send.
const BATCH_RECORDS: usize = 1000;
const BUFFER_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct ProduceOptions {
    pub topic: String,
    pub partition: Option<i32>,
    pub key_separator: Option<String>,
    /// -1 (all), 1 or 0.
    pub acks: i16,
    pub headers: Vec<(String, String)>,
    /// Progress lines on stderr about once a second.
    pub progress: bool,
}

#[derive(Default)]
struct Sent {
    records: u64,
    bytes: u64,
    /// Per partition: records, first and last offset acknowledged.
    partitions: BTreeMap<i32, (u64, i64, i64)>,
}

pub async fn run<R: AsyncBufRead + Unpin>(
    cluster: &mut Cluster,
    options: &ProduceOptions,
    input: R,
) -> Result<Report, AdminError> {
    let topic = &options.topic;
    let info = cluster.topic(topic).await?;
    let leaders: BTreeMap<i32, i32> = info
        .partitions
        .iter()
        .map(|p| (p.index, p.leader))
        .collect();
    let count = leaders.len() as i32;
    if let Some(p) = options.partition
        && !leaders.contains_key(&p)
    {
        return Err(AdminError::Usage(format!(
            "topic `{topic}` has no partition {p} ({count} partitions)"
        )));
    }
    let headers: Vec<(String, Option<Bytes>)> = options
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Some(Bytes::from(v.clone()))))
        .collect();
    let mut lines = input.lines();
    let mut pending: BTreeMap<i32, Vec<OutRecord>> = BTreeMap::new();
    let mut pending_bytes = 0usize;
    let mut round_robin = 0i32;
    let mut sent = Sent::default();
    let started = Instant::now();
    let mut last_progress = Instant::now();
    while let Some(line) = lines.next_line().await? {
        let (key, value) = match &options.key_separator {
            Some(sep) => match line.split_once(sep.as_str()) {
                Some((k, v)) => (Some(k.to_string()), v.to_string()),
                None => (None, line),
            },
            None => (None, line),
        };
        let partition = match (options.partition, &key) {
            (Some(p), _) => p,
            (None, Some(k)) => partition_for_key(k.as_bytes(), count),
            (None, None) => round_robin,
        };
        pending_bytes += value.len() + key.as_ref().map_or(0, String::len);
        let batch = pending.entry(partition).or_default();
        batch.push(OutRecord {
            key: key.map(Bytes::from),
            value: Some(Bytes::from(value)),
            headers: headers.clone(),
            timestamp: now_ms(),
        });
        if batch.len() >= BATCH_RECORDS || pending_bytes >= BUFFER_BYTES {
            flush(cluster, options, &leaders, &mut pending, &mut sent).await?;
            pending_bytes = 0;
            round_robin = (round_robin + 1) % count.max(1);
        }
        if options.progress && last_progress.elapsed() >= Duration::from_secs(1) {
            eprintln!("produced {} records", sent.records);
            last_progress = Instant::now();
        }
    }
    flush(cluster, options, &leaders, &mut pending, &mut sent).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut text = format!(
        "produced {} records ({} bytes) to {topic} in {elapsed:.2} s\n",
        sent.records, sent.bytes
    );
    for (p, (n, first, last)) in &sent.partitions {
        if options.acks == 0 {
            text.push_str(&format!(
                "  partition {p}: {n} records (acks=0: offsets unknown)\n"
            ));
        } else {
            text.push_str(&format!(
                "  partition {p}: {n} records, offsets {first}..={last}\n"
            ));
        }
    }
    Ok(Report {
        json: json!({
            "topic": topic, "records": sent.records, "bytes": sent.bytes,
            "seconds": elapsed,
            "partitions": sent.partitions.iter().map(|(p, (n, first, last))| json!({
                "partition": p, "records": n,
                "first_offset": (options.acks != 0).then_some(*first),
                "last_offset": (options.acks != 0).then_some(*last),
            })).collect::<Vec<_>>(),
        }),
        text,
    })
}

/// Sends every pending batch, one Produce per leader, and checks each partition's answer.
async fn flush(
    cluster: &mut Cluster,
    options: &ProduceOptions,
    leaders: &BTreeMap<i32, i32>,
    pending: &mut BTreeMap<i32, Vec<OutRecord>>,
    sent: &mut Sent,
) -> Result<(), AdminError> {
    let mut by_leader: BTreeMap<i32, Vec<(i32, Vec<OutRecord>)>> = BTreeMap::new();
    for (partition, records) in std::mem::take(pending) {
        let leader = leaders.get(&partition).copied().unwrap_or(-1);
        by_leader
            .entry(leader)
            .or_default()
            .push((partition, records));
    }
    for (leader, batches) in by_leader {
        let mut data = Vec::new();
        let mut counts = BTreeMap::new();
        for (partition, records) in &batches {
            let batch = encode_batch(records)?;
            sent.bytes += batch.len() as u64;
            counts.insert(*partition, records.len() as u64);
            data.push(
                PartitionProduceData::default()
                    .with_index(*partition)
                    .with_records(Some(batch)),
            );
        }
        let mut request = ProduceRequest::default();
        request.acks = options.acks;
        request.timeout_ms = 30_000;
        request.topic_data = vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(options.topic.clone())))
                .with_partition_data(data),
        ];
        let connection = cluster.node(leader).await?;
        let version = connection.version::<ProduceRequest>(11)?;
        if options.acks == 0 {
            connection.send_without_response(&request, version).await?;
            for (p, n) in counts {
                let entry = sent.partitions.entry(p).or_insert((0, -1, -1));
                entry.0 += n;
                sent.records += n;
            }
            continue;
        }
        let response = connection.send_at(&request, version).await?;
        for topic in response.responses {
            for p in topic.partition_responses {
                ClientError::check(p.error_code, p.error_message.as_deref(), || {
                    format!("produce to {}-{}", options.topic, p.index)
                })?;
                let n = counts.get(&p.index).copied().unwrap_or(0);
                let entry = sent
                    .partitions
                    .entry(p.index)
                    .or_insert((0, p.base_offset, 0));
                entry.0 += n;
                entry.2 = p.base_offset + n as i64 - 1;
                sent.records += n;
            }
        }
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
