//! AddOffsetsToTxn: the group's offsets will be committed with the transaction
//! (TxnOffsetCommit follows).

use std::sync::Arc;

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use crate::broker::Broker;
use crate::txn::state::fenced_for_version;

/// PRODUCER_FENCED from v2 on (KIP-588).
const FIRST_FENCED_VERSION: i16 = 2;

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let mut response = AddOffsetsToTxnResponse::default();
    if let Err(e) = broker
        .txns
        .add_offsets(
            &request.transactional_id,
            request.producer_id.0,
            request.producer_epoch,
            &request.group_id,
        )
        .await
    {
        response.error_code = fenced_for_version(e, version, FIRST_FENCED_VERSION).code();
    }
    response
}
