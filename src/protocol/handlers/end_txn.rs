//! EndTxn: commits or aborts the ongoing transaction. The answer comes once every marker is
//! committed in its partition, so read_committed consumers see the outcome at once.

use std::sync::Arc;

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

use crate::broker::Broker;
use crate::txn::state::fenced_for_version;

/// PRODUCER_FENCED from v2 on (KIP-588).
const FIRST_FENCED_VERSION: i16 = 2;

pub async fn handle(broker: &Arc<Broker>, version: i16, request: EndTxnRequest) -> EndTxnResponse {
    let mut response = EndTxnResponse::default();
    if let Err(e) = broker
        .txns
        .end_transaction(
            &request.transactional_id,
            request.producer_id.0,
            request.producer_epoch,
            request.committed,
        )
        .await
    {
        response.error_code = fenced_for_version(e, version, FIRST_FENCED_VERSION).code();
    }
    response
}
