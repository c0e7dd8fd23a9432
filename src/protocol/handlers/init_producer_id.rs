//! InitProducerId (v0-5). Without a transactional id: a new producer id at epoch 0 for an
//! idempotent producer, as Kafka answers (an epoch bump request, v3+, is served the same
//! way). With one: the transaction coordinator's producer id and a new epoch, fencing
//! earlier instances of the same transactional id.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use tracing::warn;

use crate::broker::Broker;
use crate::txn::state::fenced_for_version;

/// PRODUCER_FENCED exists from v4 on (KIP-588); older clients get INVALID_PRODUCER_EPOCH.
const FIRST_FENCED_VERSION: i16 = 4;

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    if let Some(id) = request
        .transactional_id
        .as_ref()
        .filter(|id| !id.is_empty())
    {
        let expected =
            (request.producer_id.0 >= 0).then_some((request.producer_id.0, request.producer_epoch));
        match broker
            .txns
            .init_producer(id, request.transaction_timeout_ms, expected)
            .await
        {
            Ok((producer_id, epoch)) => {
                response.producer_id = ProducerId(producer_id);
                response.producer_epoch = epoch;
            }
            Err(e) => {
                response.error_code = fenced_for_version(e, version, FIRST_FENCED_VERSION).code()
            }
        }
        return response;
    }
    let allocator = broker.producer_ids.clone();
    match tokio::task::spawn_blocking(move || allocator.allocate()).await {
        Ok(Ok(id)) => {
            response.producer_id = ProducerId(id);
            response.producer_epoch = 0;
        }
        Ok(Err(e)) => {
            warn!(error = %e, "cannot reserve producer ids");
            response.error_code = ResponseError::KafkaStorageError.code();
        }
        Err(e) => {
            warn!(error = %e, "producer id allocation task failed");
            response.error_code = ResponseError::UnknownServerError.code();
        }
    }
    response
}
