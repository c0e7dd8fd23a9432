//! The cluster as the CLI sees it: a bootstrap connection, the brokers Metadata advertises,
//! and connections to each broker opened when a request must go to it (a partition's leader,
//! a group's coordinator).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{ClientError, KafkaConnection};

#[derive(Debug, Clone)]
pub struct TopicInfo {
    pub name: String,
    pub id: uuid::Uuid,
    pub internal: bool,
    pub error_code: i16,
    pub partitions: Vec<PartitionInfo>,
}

#[derive(Debug, Clone)]
pub struct PartitionInfo {
    pub index: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub error_code: i16,
}

pub struct Cluster {
    pub bootstrap_addr: String,
    timeout: Duration,
    bootstrap: KafkaConnection,
    /// Node id -> advertised host:port, from the last Metadata.
    pub brokers: BTreeMap<i32, String>,
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    nodes: HashMap<String, KafkaConnection>,
}

impl Cluster {
    /// Connects to `bootstrap` and reads the broker list.
    pub async fn connect(bootstrap: &str, timeout: Duration) -> Result<Cluster, ClientError> {
        let connection = KafkaConnection::connect(bootstrap, timeout).await?;
        let mut cluster = Cluster {
            bootstrap_addr: bootstrap.to_string(),
            timeout,
            bootstrap: connection,
            brokers: BTreeMap::new(),
            cluster_id: None,
            controller_id: -1,
            nodes: HashMap::new(),
        };
        cluster.metadata(Some(&[])).await?;
        Ok(cluster)
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The connection to the bootstrap address.
    pub fn bootstrap(&mut self) -> &mut KafkaConnection {
        &mut self.bootstrap
    }

    /// Metadata for `topics` (`None`: every topic); refreshes the broker list.
    pub async fn metadata(
        &mut self,
        topics: Option<&[String]>,
    ) -> Result<Vec<TopicInfo>, ClientError> {
        let mut request = MetadataRequest::default();
        request.topics = topics.map(|names| {
            names
                .iter()
                .map(|name| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(name.clone()))))
                })
                .collect()
        });
        request.allow_auto_topic_creation = false;
        let (_, response) = self.bootstrap.send(&request, 12).await?;
        self.brokers = response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
            .collect();
        self.cluster_id = response.cluster_id.as_ref().map(|c| c.to_string());
        self.controller_id = response.controller_id.0;
        Ok(response
            .topics
            .iter()
            .map(|t| TopicInfo {
                name: t.name.as_ref().map(|n| n.to_string()).unwrap_or_default(),
                id: t.topic_id,
                internal: t.is_internal,
                error_code: t.error_code,
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| PartitionInfo {
                        index: p.partition_index,
                        leader: p.leader_id.0,
                        replicas: p.replica_nodes.iter().map(|n| n.0).collect(),
                        isr: p.isr_nodes.iter().map(|n| n.0).collect(),
                        error_code: p.error_code,
                    })
                    .collect(),
            })
            .collect())
    }

    /// One topic's metadata; an error when the topic does not exist.
    pub async fn topic(&mut self, name: &str) -> Result<TopicInfo, ClientError> {
        let topics = self.metadata(Some(&[name.to_string()])).await?;
        let topic = topics
            .into_iter()
            .find(|t| t.name == name)
            .ok_or_else(|| ClientError::Other(format!("topic `{name}` not found")))?;
        ClientError::check(topic.error_code, None, || format!("topic `{name}`"))?;
        Ok(topic)
    }

    /// The connection to broker `node` at its advertised address.
    pub async fn node(&mut self, node: i32) -> Result<&mut KafkaConnection, ClientError> {
        let addr =
            self.brokers.get(&node).cloned().ok_or_else(|| {
                ClientError::Other(format!("broker {node} is not in the metadata"))
            })?;
        self.at(&addr).await
    }

    /// The connection to `addr`, opened on first use.
    pub async fn at(&mut self, addr: &str) -> Result<&mut KafkaConnection, ClientError> {
        if !self.nodes.contains_key(addr) {
            let connection = KafkaConnection::connect(addr, self.timeout).await?;
            self.nodes.insert(addr.to_string(), connection);
        }
        self.nodes
            .get_mut(addr)
            .ok_or_else(|| ClientError::Other(format!("no connection to {addr}")))
    }

    /// The connection to `group`'s coordinator (FindCoordinator).
    pub async fn coordinator(&mut self, group: &str) -> Result<&mut KafkaConnection, ClientError> {
        let version = self.bootstrap.version::<FindCoordinatorRequest>(4)?;
        let mut request = FindCoordinatorRequest::default();
        if version >= 4 {
            request.coordinator_keys = vec![StrBytes::from_string(group.to_string())];
        } else {
            request.key = StrBytes::from_string(group.to_string());
        }
        let response = self.bootstrap.send_at(&request, version).await?;
        let context = || format!("FindCoordinator for group `{group}`");
        let (host, port) = if version >= 4 {
            let c = response
                .coordinators
                .first()
                .ok_or_else(|| ClientError::Other(format!("{}: empty answer", context())))?;
            ClientError::check(c.error_code, c.error_message.as_deref(), context)?;
            (c.host.to_string(), c.port)
        } else {
            ClientError::check(
                response.error_code,
                response.error_message.as_deref(),
                context,
            )?;
            (response.host.to_string(), response.port)
        };
        self.at(&format!("{host}:{port}")).await
    }
}
