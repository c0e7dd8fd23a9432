//! Test harness: an in-process broker on a free port with a temp data dir, and a minimal
//! Kafka client over a real socket built on `kafka-protocol`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, FetchRequest, FetchResponse, InitProducerIdRequest,
    InitProducerIdResponse, ProduceRequest, ProduceResponse, ProducerId, RequestHeader,
    RequestKind, ResponseHeader, ResponseKind, TopicName, TransactionalId,
    create_topics_request::{CreatableTopic, CreatableTopicConfig},
    fetch_request::{FetchPartition, FetchTopic},
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{Compression, Record, TimestampType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir::config::Config;
use weir::disk::sim::SimDisk;
use weir::server::RunningServer;

pub struct TestBroker {
    pub server: Option<RunningServer>,
    pub dir: tempfile::TempDir,
    pub extra: String,
    /// A simulated disk under `/data` instead of the temp directory.
    pub disk: Option<SimDisk>,
}

impl TestBroker {
    pub async fn start() -> TestBroker {
        Self::start_with("").await
    }

    /// Starts a broker whose config is the defaults plus the YAML `extra`.
    pub async fn start_with(extra: &str) -> TestBroker {
        let dir = tempfile::tempdir().unwrap();
        let server = Self::boot(dir.path(), extra, None).await;
        TestBroker {
            server: Some(server),
            dir,
            extra: extra.to_string(),
            disk: None,
        }
    }

    /// Starts a broker whose data directory `/data` lives on the simulated `disk`.
    pub async fn start_on(disk: SimDisk, extra: &str) -> TestBroker {
        let dir = tempfile::tempdir().unwrap();
        let server = Self::boot(dir.path(), extra, Some(&disk)).await;
        TestBroker {
            server: Some(server),
            dir,
            extra: extra.to_string(),
            disk: Some(disk),
        }
    }

    async fn boot(dir: &std::path::Path, extra: &str, disk: Option<&SimDisk>) -> RunningServer {
        let data_dir = match disk {
            Some(_) => std::path::PathBuf::from("/data"),
            None => dir.to_path_buf(),
        };
        let yaml = format!(
            "listen: 127.0.0.1:0\ndata_dir: {}\n{extra}",
            data_dir.display()
        );
        let config = Config::from_yaml_overrides(&yaml).unwrap();
        match disk {
            Some(disk) => RunningServer::start_on(config, Arc::new(disk.clone()))
                .await
                .unwrap(),
            None => RunningServer::start(config).await.unwrap(),
        }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.as_ref().unwrap().local_addr
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr()).await
    }

    /// Graceful stop and start again on the same data directory (a new port).
    pub async fn restart(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown(Duration::from_secs(10)).await;
        }
        self.server = Some(Self::boot(self.dir.path(), &self.extra, self.disk.as_ref()).await);
    }

    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown(Duration::from_secs(10)).await;
        }
    }

    pub async fn start_again(&mut self) {
        self.server = Some(Self::boot(self.dir.path(), &self.extra, self.disk.as_ref()).await);
    }
}

pub struct Client {
    pub stream: TcpStream,
    next_correlation: i32,
}

impl Client {
    /// A client over an already connected stream.
    pub fn over(stream: TcpStream) -> Client {
        Client {
            stream,
            next_correlation: 1,
        }
    }

    pub async fn connect(addr: std::net::SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.unwrap(),
            next_correlation: 1,
        }
    }

    /// Encodes a request frame (length prefix included); returns it with its correlation id.
    pub fn frame(&mut self, key: ApiKey, version: i16, body: &RequestKind) -> (i32, Bytes) {
        let correlation = self.next_correlation;
        self.next_correlation += 1;
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        let mut header = RequestHeader::default();
        header.request_api_key = key as i16;
        header.request_api_version = version;
        header.correlation_id = correlation;
        header.client_id = Some(StrBytes::from_static_str("weir-tests"));
        header
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        (correlation, buf.freeze())
    }

    pub async fn send(&mut self, key: ApiKey, version: i16, body: RequestKind) -> i32 {
        let (correlation, frame) = self.frame(key, version, &body);
        self.stream.write_all(&frame).await.unwrap();
        correlation
    }

    /// Reads one response frame; `None` when the broker closed the connection.
    pub async fn read_frame(&mut self) -> Option<Bytes> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).await.ok()?;
        let mut buf = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut buf).await.ok()?;
        Some(Bytes::from(buf))
    }

    pub async fn recv(&mut self, key: ApiKey, version: i16) -> (i32, ResponseKind) {
        let mut frame = self
            .read_frame()
            .await
            .expect("connection closed before a response");
        let header =
            ResponseHeader::decode(&mut frame, key.response_header_version(version)).unwrap();
        let body = ResponseKind::decode(key, &mut frame, version).unwrap();
        (header.correlation_id, body)
    }

    pub async fn call(&mut self, key: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
        let sent = self.send(key, version, body).await;
        let (correlation, response) = self.recv(key, version).await;
        assert_eq!(correlation, sent);
        response
    }

    /// True when the broker closes the connection within a second.
    pub async fn is_closed_by_broker(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut byte)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }

    pub async fn create_topic(&mut self, name: &str, partitions: i32, configs: &[(&str, &str)]) {
        let mut topic = CreatableTopic::default();
        topic.name = topic_name(name);
        topic.num_partitions = partitions;
        topic.replication_factor = 1;
        topic.configs = configs
            .iter()
            .map(|(k, v)| {
                let mut c = CreatableTopicConfig::default();
                c.name = StrBytes::from_string(k.to_string());
                c.value = Some(StrBytes::from_string(v.to_string()));
                c
            })
            .collect();
        let mut request = CreateTopicsRequest::default();
        request.topics = vec![topic];
        request.timeout_ms = 5000;
        let ResponseKind::CreateTopics(response) = self
            .call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(request))
            .await
        else {
            panic!("wrong response")
        };
        assert_eq!(response.topics[0].error_code, 0, "{:?}", response.topics[0]);
    }

    /// A v12 fetch of one partition from `offset`.
    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
    ) -> FetchResponse {
        let request = fetch_request(topic, partition, offset, max_wait_ms);
        let ResponseKind::Fetch(response) = self
            .call(ApiKey::Fetch, 12, RequestKind::Fetch(request))
            .await
        else {
            panic!("wrong response")
        };
        response
    }

    /// InitProducerId at `version`, for an idempotent (`None`) or transactional producer.
    pub async fn init_producer_id(
        &mut self,
        transactional_id: Option<&str>,
        timeout_ms: i32,
        version: i16,
    ) -> InitProducerIdResponse {
        let mut request = InitProducerIdRequest::default();
        request.transactional_id =
            transactional_id.map(|id| TransactionalId(StrBytes::from_string(id.to_string())));
        request.transaction_timeout_ms = timeout_ms;
        request.producer_id = ProducerId(-1);
        request.producer_epoch = -1;
        let ResponseKind::InitProducerId(response) = self
            .call(
                ApiKey::InitProducerId,
                version,
                RequestKind::InitProducerId(request),
            )
            .await
        else {
            panic!("not an InitProducerId response");
        };
        response
    }

    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        records: Bytes,
        acks: i16,
    ) -> ProduceResponse {
        let request = produce_request(topic, partition, records, acks);
        let ResponseKind::Produce(response) = self
            .call(ApiKey::Produce, 9, RequestKind::Produce(request))
            .await
        else {
            panic!("wrong response")
        };
        response
    }
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub fn produce_request(topic: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
    let mut data = PartitionProduceData::default();
    data.index = partition;
    data.records = Some(records);
    let mut topic_data = TopicProduceData::default();
    topic_data.name = topic_name(topic);
    topic_data.partition_data = vec![data];
    let mut request = ProduceRequest::default();
    request.acks = acks;
    request.timeout_ms = 10_000;
    request.topic_data = vec![topic_data];
    request
}

pub fn fetch_request(topic: &str, partition: i32, offset: i64, max_wait_ms: i32) -> FetchRequest {
    let mut p = FetchPartition::default();
    p.partition = partition;
    p.fetch_offset = offset;
    p.partition_max_bytes = 1 << 20;
    let mut t = FetchTopic::default();
    t.topic = topic_name(topic);
    t.partitions = vec![p];
    let mut request = FetchRequest::default();
    request.max_wait_ms = max_wait_ms;
    request.min_bytes = 1;
    request.max_bytes = 50 << 20;
    request.topics = vec![t];
    request
}

/// One record for the crate's batch encoder.
pub fn record(offset: i64, timestamp: i64, key: Option<Bytes>, value: Bytes) -> Record {
    Record {
        transactional: false,
        control: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset,
        // offset - sequence must stay constant or the encoder splits the batch.
        sequence: offset as i32,
        timestamp,
        key,
        value: Some(value),
        headers: Default::default(),
        delete_horizon: false,
    }
}

/// Encodes records as one v2 batch.
pub fn encode(records: &[Record], compression: Compression) -> BytesMut {
    BytesMut::from(&weir::log::batch::encode_records(records, compression).unwrap()[..])
}

/// A batch of `count` records of producer `id` at `epoch`, sequences from `first_seq`, values
/// `<tag>-<i>`; transactional or only idempotent.
pub fn producer_batch(
    id: i64,
    epoch: i16,
    first_seq: i32,
    count: i32,
    tag: &str,
    transactional: bool,
) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional,
            control: false,
            partition_leader_epoch: 0,
            producer_id: id,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i64::from(i),
            sequence: first_seq + i,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from(format!("{tag}-{i}"))),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    encode(&records, Compression::None).freeze()
}

/// A record batch of `count` records with values `value-<start+i>`.
pub fn batch(start: i64, count: i64, timestamp: i64) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| {
            record(
                i,
                timestamp + i,
                Some(Bytes::from(format!("key-{}", start + i))),
                Bytes::from(format!("value-{}", start + i)),
            )
        })
        .collect();
    encode(&records, Compression::None).freeze()
}

/// Decodes every record of fetched bytes into `(offset, value)`.
pub fn decode_records(mut bytes: Bytes) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    while bytes.has_remaining() {
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).unwrap();
        for r in set.records {
            out.push((
                r.offset,
                String::from_utf8(r.value.unwrap_or_default().to_vec()).unwrap(),
            ));
        }
    }
    out
}

/// Writes a reliability figure set to `target/reliability/<name>.json` for
/// scripts/reliability to put into docs/reliability.md, and prints it.
pub fn save_figures(name: &str, json: &str) {
    println!("{name}: {json}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/reliability");
    if std::fs::create_dir_all(&out).is_ok() {
        let _ = std::fs::write(out.join(format!("{name}.json")), format!("{json}\n"));
    }
}
