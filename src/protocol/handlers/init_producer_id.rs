//! InitProducerId (v0-5): a producer id for an idempotent producer. Every call gets a new id
//! at epoch 0, as Kafka answers non-transactional producers (an epoch bump request, v3+,
//! is served the same way). Transactional ids need the transaction coordinator, which this
//! broker does not have yet: they are refused.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use tracing::warn;

use crate::broker::Broker;

pub async fn handle(
    broker: &Arc<Broker>,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    if request
        .transactional_id
        .as_ref()
        .is_some_and(|id| !id.is_empty())
    {
        response.error_code = ResponseError::InvalidRequest.code();
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
