//! `weir consume TOPIC`: fetches from each partition's leader and prints every record with a
//! format template (`%t %p %o %k %v %T %h`) or as JSON lines. With `--group` it starts from
//! the group's committed offsets and commits where it stopped (a standalone commit, like
//! `group seek`: it does not join the group).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Record;
use serde_json::json;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::offsets::{EARLIEST, LATEST, Tp, commit, committed, list_offsets};
use super::{AdminError, Report};
use crate::client::records::decode_records;
use crate::client::{ClientError, Cluster};

const OFFSET_OUT_OF_RANGE: i16 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Earliest,
    Latest,
    Offset(i64),
}

#[derive(Debug, Clone)]
pub enum RecordFormat {
    Template(Vec<Piece>),
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Topic,
    Partition,
    Offset,
    Key,
    Value,
    Timestamp,
    Headers,
}

impl RecordFormat {
    /// `json`, or a template: `%t` topic, `%p` partition, `%o` offset, `%k` key, `%v` value,
    /// `%T` timestamp (ms), `%h` headers (`k=v,...`), `%%`, and `\n`, `\t`, `\\`.
    pub fn parse(text: &str) -> Result<RecordFormat, AdminError> {
        if text == "json" {
            return Ok(RecordFormat::Json);
        }
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            let piece = match c {
                '%' => match chars.next() {
                    Some('t') => Piece::Topic,
                    Some('p') => Piece::Partition,
                    Some('o') => Piece::Offset,
                    Some('k') => Piece::Key,
                    Some('v') => Piece::Value,
                    Some('T') => Piece::Timestamp,
                    Some('h') => Piece::Headers,
                    Some('%') => {
                        literal.push('%');
                        continue;
                    }
                    other => {
                        return Err(AdminError::Usage(format!(
                            "--format: unknown placeholder %{}",
                            other.map(String::from).unwrap_or_default()
                        )));
                    }
                },
                '\\' => {
                    match chars.next() {
                        Some('n') => literal.push('\n'),
                        Some('t') => literal.push('\t'),
                        Some(other) => literal.push(other),
                        None => literal.push('\\'),
                    }
                    continue;
                }
                c => {
                    literal.push(c);
                    continue;
                }
            };
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(piece);
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(RecordFormat::Template(pieces))
    }

    fn render(&self, topic: &str, partition: i32, record: &Record, out: &mut Vec<u8>) {
        match self {
            RecordFormat::Json => {
                let headers: serde_json::Map<String, serde_json::Value> = record
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), json!(v.as_deref().map(lossy))))
                    .collect();
                let line = json!({
                    "topic": topic, "partition": partition, "offset": record.offset,
                    "timestamp": record.timestamp,
                    "key": record.key.as_deref().map(lossy),
                    "value": record.value.as_deref().map(lossy),
                    "headers": headers,
                });
                out.extend_from_slice(line.to_string().as_bytes());
                out.push(b'\n');
            }
            RecordFormat::Template(pieces) => {
                for piece in pieces {
                    match piece {
                        Piece::Text(t) => out.extend_from_slice(t.as_bytes()),
                        Piece::Topic => out.extend_from_slice(topic.as_bytes()),
                        Piece::Partition => out.extend_from_slice(partition.to_string().as_bytes()),
                        Piece::Offset => {
                            out.extend_from_slice(record.offset.to_string().as_bytes())
                        }
                        Piece::Key => out.extend_from_slice(record.key.as_deref().unwrap_or(b"")),
                        Piece::Value => {
                            out.extend_from_slice(record.value.as_deref().unwrap_or(b""))
                        }
                        Piece::Timestamp => {
                            out.extend_from_slice(record.timestamp.to_string().as_bytes())
                        }
                        Piece::Headers => {
                            let text = record
                                .headers
                                .iter()
                                .map(|(k, v)| {
                                    format!("{k}={}", v.as_deref().map(lossy).unwrap_or_default())
                                })
                                .collect::<Vec<_>>()
                                .join(",");
                            out.extend_from_slice(text.as_bytes());
                        }
                    }
                }
            }
        }
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    pub topic: String,
    pub partition: Option<i32>,
    /// Where to start (with `group`: where partitions without a committed offset start).
    pub start: Start,
    pub group: Option<String>,
    pub max_messages: Option<u64>,
    /// Stop after this long without a record.
    pub idle_timeout: Option<Duration>,
    pub read_committed: bool,
    pub format: RecordFormat,
    pub progress: bool,
}

pub async fn run<W: AsyncWrite + Unpin>(
    cluster: &mut Cluster,
    options: &ConsumeOptions,
    out: &mut W,
) -> Result<Report, AdminError> {
    let topic = &options.topic;
    let info = cluster.topic(topic).await?;
    let mut leaders: BTreeMap<i32, i32> = BTreeMap::new();
    for p in &info.partitions {
        if options.partition.is_none_or(|want| want == p.index) {
            leaders.insert(p.index, p.leader);
        }
    }
    if leaders.is_empty() {
        return Err(AdminError::Usage(format!(
            "topic `{topic}` has no partition {}",
            options.partition.unwrap_or(-1)
        )));
    }
    let tps: Vec<Tp> = leaders.keys().map(|p| (topic.clone(), *p)).collect();
    let mut positions = start_positions(cluster, options, &tps).await?;
    let started_at = positions.clone();
    let mut consumed = 0u64;
    let mut last_record = Instant::now();
    let mut last_progress = Instant::now();
    let mut buf = Vec::with_capacity(64 * 1024);
    'fetching: loop {
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for (p, leader) in &leaders {
            by_leader.entry(*leader).or_default().push(*p);
        }
        let mut got_any = false;
        for (leader, partitions) in by_leader {
            let request = fetch_request(options, &partitions, &positions);
            let (_, response) = cluster.node(leader).await?.send(&request, 12).await?;
            ClientError::check(response.error_code, None, || "Fetch".into())?;
            for t in response.responses {
                for p in t.partitions {
                    let position = positions.entry(p.partition_index).or_insert(0);
                    if p.error_code == OFFSET_OUT_OF_RANGE {
                        let reset = if options.start == Start::Latest {
                            LATEST
                        } else {
                            EARLIEST
                        };
                        let tp = (topic.clone(), p.partition_index);
                        let fresh = list_offsets(cluster, std::slice::from_ref(&tp), reset).await?;
                        *position = fresh.get(&tp).copied().unwrap_or(0);
                        eprintln!(
                            "partition {}: offset out of range, continuing at {}",
                            p.partition_index, position
                        );
                        continue;
                    }
                    ClientError::check(p.error_code, None, || {
                        format!("fetch {topic}-{}", p.partition_index)
                    })?;
                    let Some(data) = p.records else { continue };
                    let (records, next) = decode_records(&data)?;
                    for record in records {
                        // A compressed batch can start before the position asked for.
                        if record.offset < *position {
                            continue;
                        }
                        options
                            .format
                            .render(topic, p.partition_index, &record, &mut buf);
                        consumed += 1;
                        got_any = true;
                        *position = record.offset + 1;
                        if options.max_messages.is_some_and(|max| consumed >= max) {
                            out.write_all(&buf).await?;
                            break 'fetching;
                        }
                    }
                    if let Some(next) = next {
                        *position = (*position).max(next);
                    }
                }
            }
        }
        out.write_all(&buf).await?;
        out.flush().await?;
        buf.clear();
        if got_any {
            last_record = Instant::now();
        } else if options
            .idle_timeout
            .is_some_and(|idle| last_record.elapsed() >= idle)
        {
            break;
        }
        if options.progress && last_progress.elapsed() >= Duration::from_secs(1) {
            eprintln!("consumed {consumed} records");
            last_progress = Instant::now();
        }
    }
    out.flush().await?;
    let committed_to = match &options.group {
        Some(group) if consumed > 0 => {
            let offsets: BTreeMap<Tp, i64> = positions
                .iter()
                .map(|(p, o)| ((topic.clone(), *p), *o))
                .collect();
            commit(cluster, group, &offsets).await?;
            Some(group.clone())
        }
        _ => None,
    };
    Ok(Report {
        json: json!({
            "topic": topic, "records": consumed, "group": committed_to,
            "partitions": positions.iter().map(|(p, o)| json!({
                "partition": p, "start_offset": started_at.get(p), "next_offset": o,
            })).collect::<Vec<_>>(),
        }),
        text: format!(
            "consumed {consumed} records from {topic}{}\n",
            committed_to
                .map(|g| format!("; committed for group {g}"))
                .unwrap_or_default()
        ),
    })
}

async fn start_positions(
    cluster: &mut Cluster,
    options: &ConsumeOptions,
    tps: &[Tp],
) -> Result<BTreeMap<i32, i64>, AdminError> {
    let fallback = match options.start {
        Start::Earliest => list_offsets(cluster, tps, EARLIEST).await?,
        Start::Latest => list_offsets(cluster, tps, LATEST).await?,
        Start::Offset(o) => tps.iter().map(|tp| (tp.clone(), o)).collect(),
    };
    let group_offsets = match &options.group {
        Some(group) => committed(cluster, group).await?,
        None => BTreeMap::new(),
    };
    Ok(tps
        .iter()
        .map(|tp| {
            let offset = group_offsets
                .get(tp)
                .or_else(|| fallback.get(tp))
                .copied()
                .unwrap_or(0);
            (tp.1, offset)
        })
        .collect())
}

fn fetch_request(
    options: &ConsumeOptions,
    partitions: &[i32],
    positions: &BTreeMap<i32, i64>,
) -> FetchRequest {
    let mut request = FetchRequest::default();
    request.max_wait_ms = 500;
    request.min_bytes = 1;
    request.max_bytes = 16 << 20;
    request.isolation_level = i8::from(options.read_committed);
    request.topics = vec![
        FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(options.topic.clone())))
            .with_partitions(
                partitions
                    .iter()
                    .map(|p| {
                        FetchPartition::default()
                            .with_partition(*p)
                            .with_fetch_offset(positions.get(p).copied().unwrap_or(0))
                            .with_partition_max_bytes(4 << 20)
                    })
                    .collect(),
            ),
    ];
    request
}
