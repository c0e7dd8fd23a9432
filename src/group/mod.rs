//! Consumer groups: the coordinator (this node coordinates every group), the classic group
//! protocol's state machine, and committed offsets with their durable log.

pub mod classic;
pub mod coordinator;
pub mod messages;
pub mod offset_log;
pub mod offsets;

pub use coordinator::GroupCoordinator;

#[cfg(test)]
mod tests;
