//! Consumer groups: the coordinator (this node coordinates every group), one actor per group
//! running the classic protocol's state machine or the consumer protocol's (KIP-848, with
//! broker-side assignors), and committed offsets with their durable log.

pub mod actor;
pub mod assignor;
pub mod classic;
pub mod consumer;
pub mod coordinator;
pub mod messages;
pub mod offset_log;
pub mod offsets;

pub use coordinator::GroupCoordinator;

#[cfg(test)]
mod consumer_tests;
#[cfg(test)]
pub(crate) mod tests;
