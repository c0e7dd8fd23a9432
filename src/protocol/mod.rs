//! The Kafka protocol layer: codec, the API table and one handler per API.
//!
//! A request is handled in two stages (as Redpanda does): `dispatch` runs the part that fixes
//! the request's order (for Produce: validation and offset assignment) before the connection
//! reads its next request; the returned future completes it (waits for persistence, long-poll)
//! concurrently with later requests. Responses still go out in request order.

pub mod api_table;
pub mod codec;
pub mod handlers;
pub mod response_frame;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use kafka_protocol::messages::{RequestKind, ResponseKind};
use tokio::sync::OwnedSemaphorePermit;

use crate::broker::Broker;
use codec::Request;

/// A response body, and the memory-budget permit its data holds until it is written.
pub struct Reply {
    pub body: ResponseKind,
    /// A Fetch response's larger record sets, written as runs of their own in the places of
    /// the markers the body holds for them.
    pub runs: Option<response_frame::Spliced>,
    pub hold: Option<OwnedSemaphorePermit>,
    /// Send nothing and close the connection instead (Kafka's answer to a failed acks=0
    /// produce, so the producer refreshes its metadata).
    pub close_connection: bool,
}

impl From<ResponseKind> for Reply {
    fn from(body: ResponseKind) -> Reply {
        Reply {
            body,
            runs: None,
            hold: None,
            close_connection: false,
        }
    }
}

/// The listener a request came in by, and the address its clients are told to use: Metadata,
/// FindCoordinator and DescribeCluster answer with it, as Kafka answers with the advertised
/// address of the request's listener.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub name: String,
    pub host: String,
    pub port: i32,
}

impl Endpoint {
    pub fn advertised(&self) -> (&str, i32) {
        (&self.host, self.port)
    }
}

/// Who sent a request, as group descriptions show it.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub client_id: String,
    /// The peer's address as Kafka prints it (`/127.0.0.1`).
    pub host: String,
}

/// The second stage of a request: its response, or `None` when none is sent (acks=0).
pub type ResponseFuture = Pin<Box<dyn Future<Output = Option<Reply>> + Send>>;

fn ready(response: ResponseKind) -> ResponseFuture {
    Box::pin(std::future::ready(Some(response.into())))
}

/// Runs a request's ordering stage and returns the future that completes it.
pub async fn dispatch(
    broker: &Arc<Broker>,
    request: Request,
    peer: SocketAddr,
    endpoint: &Endpoint,
) -> ResponseFuture {
    let version = request.version;
    let broker = broker.clone();
    let client = ClientInfo {
        client_id: request
            .header
            .client_id
            .as_ref()
            .map(|id| id.to_string())
            .unwrap_or_default(),
        host: format!("/{}", peer.ip()),
    };
    match request.body {
        RequestKind::Produce(body) => handlers::produce::handle(&broker, version, body).await,
        RequestKind::ApiVersions(body) => ready(ResponseKind::ApiVersions(
            handlers::api_versions::handle(version, &body),
        )),
        RequestKind::Metadata(body) => {
            let endpoint = endpoint.clone();
            Box::pin(async move {
                let response = handlers::metadata::handle(&broker, &endpoint, version, body).await;
                Some(ResponseKind::Metadata(response).into())
            })
        }
        RequestKind::Fetch(body) => Box::pin(async move {
            let (response, runs, hold) = handlers::fetch::handle(&broker, version, body).await;
            Some(Reply {
                body: ResponseKind::Fetch(response),
                runs: Some(runs),
                hold,
                close_connection: false,
            })
        }),
        RequestKind::ListOffsets(body) => Box::pin(async move {
            Some(
                ResponseKind::ListOffsets(
                    handlers::list_offsets::handle(&broker, version, body).await,
                )
                .into(),
            )
        }),
        RequestKind::CreateTopics(body) => Box::pin(async move {
            Some(
                ResponseKind::CreateTopics(
                    handlers::create_topics::handle(&broker, version, body).await,
                )
                .into(),
            )
        }),
        RequestKind::DeleteTopics(body) => Box::pin(async move {
            Some(
                ResponseKind::DeleteTopics(
                    handlers::delete_topics::handle(&broker, version, body).await,
                )
                .into(),
            )
        }),
        RequestKind::CreatePartitions(body) => Box::pin(async move {
            Some(
                ResponseKind::CreatePartitions(
                    handlers::create_partitions::handle(&broker, body).await,
                )
                .into(),
            )
        }),
        RequestKind::DescribeConfigs(body) => ready(ResponseKind::DescribeConfigs(
            handlers::describe_configs::handle(&broker, version, body),
        )),
        RequestKind::IncrementalAlterConfigs(body) => Box::pin(async move {
            let response = handlers::alter_configs::handle_incremental(&broker, body).await;
            Some(ResponseKind::IncrementalAlterConfigs(response).into())
        }),
        RequestKind::AlterConfigs(body) => Box::pin(async move {
            let response = handlers::alter_configs::handle_legacy(&broker, body).await;
            Some(ResponseKind::AlterConfigs(response).into())
        }),
        RequestKind::FindCoordinator(body) => ready(ResponseKind::FindCoordinator(
            handlers::find_coordinator::handle(&broker, endpoint, version, body),
        )),
        RequestKind::DescribeCluster(body) => ready(ResponseKind::DescribeCluster(
            handlers::describe_cluster::handle(&broker, endpoint, body),
        )),
        RequestKind::DescribeProducers(body) => ready(ResponseKind::DescribeProducers(
            handlers::describe_producers::handle(&broker, body),
        )),
        RequestKind::InitProducerId(body) => Box::pin(async move {
            let response = handlers::init_producer_id::handle(&broker, version, body).await;
            Some(ResponseKind::InitProducerId(response).into())
        }),
        // Transaction requests wait for their state (and markers) to be committed.
        RequestKind::AddPartitionsToTxn(body) => Box::pin(async move {
            let response = handlers::add_partitions_to_txn::handle(&broker, version, body).await;
            Some(ResponseKind::AddPartitionsToTxn(response).into())
        }),
        RequestKind::AddOffsetsToTxn(body) => Box::pin(async move {
            let response = handlers::add_offsets_to_txn::handle(&broker, version, body).await;
            Some(ResponseKind::AddOffsetsToTxn(response).into())
        }),
        RequestKind::TxnOffsetCommit(body) => Box::pin(async move {
            let response = handlers::txn_offset_commit::handle(&broker, version, body).await;
            Some(ResponseKind::TxnOffsetCommit(response).into())
        }),
        RequestKind::EndTxn(body) => Box::pin(async move {
            let response = handlers::end_txn::handle(&broker, version, body).await;
            Some(ResponseKind::EndTxn(response).into())
        }),
        RequestKind::DescribeTransactions(body) => ready(ResponseKind::DescribeTransactions(
            handlers::describe_transactions::handle(&broker, body),
        )),
        RequestKind::ListTransactions(body) => ready(ResponseKind::ListTransactions(
            handlers::list_transactions::handle(&broker, version, body),
        )),
        // Group requests may wait for a rebalance: they run entirely in the second stage.
        RequestKind::JoinGroup(body) => Box::pin(async move {
            let response = handlers::join_group::handle(&broker, version, body, &client).await;
            Some(ResponseKind::JoinGroup(response).into())
        }),
        RequestKind::SyncGroup(body) => Box::pin(async move {
            let response = handlers::sync_group::handle(&broker, version, body).await;
            Some(ResponseKind::SyncGroup(response).into())
        }),
        RequestKind::Heartbeat(body) => Box::pin(async move {
            let response = handlers::heartbeat::handle(&broker, body).await;
            Some(ResponseKind::Heartbeat(response).into())
        }),
        RequestKind::LeaveGroup(body) => Box::pin(async move {
            let response = handlers::leave_group::handle(&broker, version, body).await;
            Some(ResponseKind::LeaveGroup(response).into())
        }),
        RequestKind::DescribeGroups(body) => Box::pin(async move {
            let response = handlers::describe_groups::handle(&broker, version, body).await;
            Some(ResponseKind::DescribeGroups(response).into())
        }),
        RequestKind::ListGroups(body) => Box::pin(async move {
            let response = handlers::list_groups::handle(&broker, version, body).await;
            Some(ResponseKind::ListGroups(response).into())
        }),
        RequestKind::DeleteGroups(body) => Box::pin(async move {
            let response = handlers::delete_groups::handle(&broker, body).await;
            Some(ResponseKind::DeleteGroups(response).into())
        }),
        RequestKind::OffsetCommit(body) => Box::pin(async move {
            let response = handlers::offset_commit::handle(&broker, version, body).await;
            Some(ResponseKind::OffsetCommit(response).into())
        }),
        RequestKind::OffsetFetch(body) => Box::pin(async move {
            let response = handlers::offset_fetch::handle(&broker, version, body).await;
            Some(ResponseKind::OffsetFetch(response).into())
        }),
        RequestKind::OffsetDelete(body) => Box::pin(async move {
            let response = handlers::offset_delete::handle(&broker, body).await;
            Some(ResponseKind::OffsetDelete(response).into())
        }),
        RequestKind::ConsumerGroupHeartbeat(body) => Box::pin(async move {
            let response =
                handlers::consumer_group_heartbeat::handle(&broker, version, body, &client).await;
            Some(ResponseKind::ConsumerGroupHeartbeat(response).into())
        }),
        RequestKind::ConsumerGroupDescribe(body) => Box::pin(async move {
            let response = handlers::consumer_group_describe::handle(&broker, version, body).await;
            Some(ResponseKind::ConsumerGroupDescribe(response).into())
        }),
        // The codec only lets through keys in the API table, all matched above.
        other => {
            tracing::error!(api = ?std::mem::discriminant(&other), "request without a handler");
            Box::pin(std::future::ready(None))
        }
    }
}
