//! Transactions (KIP-98): the coordinator that maps transactional ids to producers and ends
//! transactions with markers, and the state it keeps per id.
//!
//! - `coordinator.rs`: the requests, markers and recovery; `coordinator/expiry.rs`: timeouts
//!   and idle ids.
//! - `log.rs`: the durable transaction state log; `pending.rs`: offsets not yet committed.
//! - `state.rs`: one id's state and the checks requests make against it.
//!
//! What a partition knows of transactions (open ones, the last stable offset, aborted ones for
//! read_committed) lives with the partition, in `log/transactions.rs`.

pub mod coordinator;
pub mod log;
pub mod pending;
pub mod state;

pub use coordinator::{TransactionCoordinator, TxnLimits};

#[cfg(test)]
mod tests;
