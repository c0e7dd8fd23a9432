#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
//! Weir: a Kafka-wire-protocol-compatible message broker.
//!
//! # Layout
//! The modules follow one request through the broker:
//!
//! - [`server`]: TCP listener and per-connection pipeline (framing, ordered responses).
//! - [`protocol`]: codec (header/body decode, response encode), the one API table that answers
//!   ApiVersions and checks versions, and one handler per Kafka API under `protocol/handlers/`.
//! - [`broker`]: the shared state a handler sees (config, topics, node identity).
//! - [`metadata`]: durable topic metadata and node identity (the seam for a future controller).
//! - [`log`]: the stream engine: partitions, segments, indexes, record batch validation, the
//!   background writer with group commit, the commit step that advances the high watermark,
//!   recovery and retention.
//! - [`group`]: the group coordinator (classic JoinGroup/SyncGroup protocol, one actor task per
//!   group) and committed offsets, stored in an internal log through the same writer.
//! - [`txn`]: the transaction coordinator (transactional ids, markers, its durable log); what
//!   a partition knows of transactions (last stable offset, aborted ones) lives in [`log`].
//! - [`disk`]: the storage seam (the real file system, and a simulated disk that loses what
//!   was not fsynced, for power-loss and fault-injection tests).
//! - [`config`]: the YAML configuration, its embedded default and validation.
//! - [`shutdown`]: the one token every task watches for a graceful stop.
//! - `fuzzing`: the fuzz targets (every parser client or disk bytes reach), for `fuzz/` and
//!   `tests/fuzz_replay.rs`.

#![forbid(unsafe_code)]

pub mod admin;
pub mod broker;
pub mod client;
pub mod config;
pub mod disk;
#[doc(hidden)]
pub mod fuzzing;
pub mod group;
pub mod log;
pub mod metadata;
pub mod protocol;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod txn;

#[cfg(test)]
mod test_figures;
