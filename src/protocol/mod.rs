//! The Kafka protocol layer: codec, the API table and one handler per API.
//!
//! A request is handled in two stages (as Redpanda does): `dispatch` runs the part that fixes
//! the request's order (for Produce: validation and offset assignment) before the connection
//! reads its next request; the returned future completes it (waits for persistence, long-poll)
//! concurrently with later requests. Responses still go out in request order.

pub mod api_table;
pub mod codec;
pub mod handlers;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use kafka_protocol::messages::{RequestKind, ResponseKind};
use tokio::sync::OwnedSemaphorePermit;

use crate::broker::Broker;
use codec::Request;

/// A response body, and the memory-budget permit its data holds until it is written.
pub struct Reply {
    pub body: ResponseKind,
    pub hold: Option<OwnedSemaphorePermit>,
    /// Send nothing and close the connection instead (Kafka's answer to a failed acks=0
    /// produce, so the producer refreshes its metadata).
    pub close_connection: bool,
}

impl From<ResponseKind> for Reply {
    fn from(body: ResponseKind) -> Reply {
        Reply {
            body,
            hold: None,
            close_connection: false,
        }
    }
}

/// The second stage of a request: its response, or `None` when none is sent (acks=0).
pub type ResponseFuture = Pin<Box<dyn Future<Output = Option<Reply>> + Send>>;

fn ready(response: ResponseKind) -> ResponseFuture {
    Box::pin(std::future::ready(Some(response.into())))
}

/// Runs a request's ordering stage and returns the future that completes it.
pub async fn dispatch(broker: &Arc<Broker>, request: Request) -> ResponseFuture {
    let version = request.version;
    let broker = broker.clone();
    match request.body {
        RequestKind::Produce(body) => handlers::produce::handle(&broker, version, body).await,
        RequestKind::ApiVersions(body) => ready(ResponseKind::ApiVersions(
            handlers::api_versions::handle(version, &body),
        )),
        RequestKind::Metadata(body) => Box::pin(async move {
            Some(
                ResponseKind::Metadata(handlers::metadata::handle(&broker, version, body).await)
                    .into(),
            )
        }),
        RequestKind::Fetch(body) => Box::pin(async move {
            let (response, hold) = handlers::fetch::handle(&broker, version, body).await;
            Some(Reply {
                body: ResponseKind::Fetch(response),
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
        RequestKind::FindCoordinator(body) => ready(ResponseKind::FindCoordinator(
            handlers::find_coordinator::handle(&broker, version, body),
        )),
        RequestKind::DescribeCluster(body) => ready(ResponseKind::DescribeCluster(
            handlers::describe_cluster::handle(&broker, body),
        )),
        // The codec only lets through keys in the API table, all matched above.
        other => {
            tracing::error!(api = ?std::mem::discriminant(&other), "request without a handler");
            Box::pin(std::future::ready(None))
        }
    }
}
