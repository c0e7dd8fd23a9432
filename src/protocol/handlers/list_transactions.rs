//! ListTransactions (v0-2): transactional ids, filtered by state, producer id, how long the
//! transaction has run (v1) and an id pattern (v2, a regular expression as Kafka's).

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};

use super::str_bytes;
use crate::broker::Broker;
use crate::log::now_ms;
use crate::txn::state::TxnState;

pub fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let mut response = ListTransactionsResponse::default();
    let mut states = Vec::new();
    for name in &request.state_filters {
        match TxnState::from_name(name) {
            Some(state) => states.push(state),
            None => response.unknown_state_filters.push(name.clone()),
        }
    }
    let pattern = match request
        .transactional_id_pattern
        .as_ref()
        .filter(|p| version >= 2 && !p.is_empty())
    {
        Some(p) => match regex::Regex::new(&format!("^(?:{})$", &**p)) {
            Ok(re) => Some(re),
            Err(_) => {
                response.error_code = ResponseError::InvalidRegularExpression.code();
                return response;
            }
        },
        None => None,
    };
    let now = now_ms();
    for described in broker.txns.list() {
        let meta = &described.meta;
        let wanted_state = request.state_filters.is_empty() || states.contains(&meta.state);
        let wanted_producer = request.producer_id_filters.is_empty()
            || request
                .producer_id_filters
                .iter()
                .any(|p| p.0 == meta.producer_id);
        // v1: only transactions running longer than the filter (-1: no filter).
        let wanted_duration = version < 1
            || request.duration_filter < 0
            || (meta.state == TxnState::Ongoing && now - meta.start_ms > request.duration_filter);
        let wanted_id = pattern
            .as_ref()
            .is_none_or(|re| re.is_match(&described.transactional_id));
        if wanted_state && wanted_producer && wanted_duration && wanted_id {
            response.transaction_states.push(
                TransactionState::default()
                    .with_transactional_id(TransactionalId(str_bytes(
                        described.transactional_id.clone(),
                    )))
                    .with_producer_id(ProducerId(meta.producer_id))
                    .with_transaction_state(str_bytes(meta.state.name().to_string())),
            );
        }
    }
    response
}
