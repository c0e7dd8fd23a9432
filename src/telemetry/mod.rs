//! Operability: the Prometheus metrics (catalog, recorder, scrape-time state gauges), the
//! per-request accounting the connection layer calls, and the HTTP listener serving
//! `/metrics`, `/health` and `/ready`.
//!
//! Recording goes through the `metrics` facade: with no recorder installed (in-process tests)
//! every call is a no-op.

pub mod catalog;
mod collect;
mod exporter;
mod handles;
mod http;
mod response_errors;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use kafka_protocol::messages::{ApiKey, ResponseKind};
use metrics::counter;

use catalog::*;
pub use collect::mark_start;
pub use exporter::{install, spawn_upkeep};
pub use http::{MetricsServer, probe};
pub use response_errors::error_name;

/// Counts the gauges a scrape reads from the broker rather than from the recorder.
#[derive(Debug, Default)]
pub struct LiveStats {
    connections_active: AtomicI64,
    requests_in_flight: AtomicI64,
}

impl LiveStats {
    pub fn connections_active(&self) -> i64 {
        self.connections_active.load(Ordering::Relaxed)
    }

    pub fn requests_in_flight(&self) -> i64 {
        self.requests_in_flight.load(Ordering::Relaxed)
    }

    /// A connection was accepted; the guard counts it closed when dropped.
    pub fn connection_opened(&self) -> ConnectionGuard<'_> {
        counter!(CONNECTIONS_ACCEPTED).increment(1);
        self.connections_active.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard { stats: self }
    }

    /// A request was decoded; `RequestTimer::finish` records its outcome.
    pub fn request_started(self: &Arc<Self>, key: ApiKey, frame_bytes: usize) -> RequestTimer {
        let api = handles::get().map(|h| {
            h.network_received.increment(frame_bytes as u64 + 4);
            h.api(key)
        });
        if let Some(api) = api {
            api.requests.increment(1);
        }
        self.requests_in_flight.fetch_add(1, Ordering::Relaxed);
        RequestTimer {
            stats: self.clone(),
            key,
            api,
            started: Instant::now(),
        }
    }
}

pub struct ConnectionGuard<'a> {
    stats: &'a LiveStats,
}

impl Drop for ConnectionGuard<'_> {
    fn drop(&mut self) {
        self.stats
            .connections_active
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// One request between decode and response; dropping it without `finish` (a handler that
/// failed) still ends its in-flight count.
pub struct RequestTimer {
    stats: Arc<LiveStats>,
    key: ApiKey,
    api: Option<&'static handles::ApiHandles>,
    started: Instant,
}

impl RequestTimer {
    /// The response is ready (`None`: none is sent, acks=0).
    pub fn finish(self, body: Option<&ResponseKind>) {
        let Some(api) = self.api else { return };
        api.duration.record(self.started.elapsed());
        if let Some(body) = body {
            response_errors::for_each_error(body, |code| {
                counter!(REQUEST_ERRORS, "api" => api_name(self.key), "error" => error_name(code))
                    .increment(1);
            });
        }
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        self.stats
            .requests_in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Kafka's name of an API (`Produce`, `OffsetCommit`, ...), interned once.
pub fn api_name(key: ApiKey) -> &'static str {
    static NAMES: OnceLock<HashMap<i16, &'static str>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        crate::protocol::api_table::APIS
            .iter()
            .map(|api| {
                let name: &'static str = format!("{:?}", api.key).leak();
                (api.key as i16, name)
            })
            .collect()
    });
    names.get(&(key as i16)).copied().unwrap_or("Other")
}

/// Bytes of a response written to a client.
pub fn response_sent(bytes: usize) {
    if let Some(h) = handles::get() {
        h.network_sent.increment(bytes as u64);
    }
}

/// Record bytes a response sent from a segment file with `sendfile`.
pub fn sent_from_file(bytes: usize) {
    if let Some(h) = handles::get() {
        h.sent_from_file.increment(bytes as u64);
    }
}

/// A connection the broker closed, by reason.
pub fn connection_closed(reason: &'static str) {
    counter!(CONNECTIONS_CLOSED, "reason" => reason).increment(1);
}

pub fn connection_rejected(reason: &'static str) {
    counter!(CONNECTIONS_REJECTED, "reason" => reason).increment(1);
}

/// Records and bytes acknowledged to a producer for `topic`.
pub fn produced(topic: &str, records: u64, bytes: u64) {
    if let Some(h) = handles::get() {
        let topic = h.topic(topic);
        topic.produced_records.increment(records);
        topic.produced_bytes.increment(bytes);
    }
}

pub fn produce_batch(bytes: usize) {
    if let Some(h) = handles::get() {
        h.produce_batch.record(bytes as f64);
    }
}

/// Records and bytes a fetch response returns for `topic`.
pub fn fetched(topic: &str, records: u64, bytes: u64) {
    if let Some(h) = handles::get() {
        let topic = h.topic(topic);
        topic.fetched_records.increment(records);
        topic.fetched_bytes.increment(bytes);
    }
}

pub fn wal_write(elapsed: std::time::Duration) {
    if let Some(h) = handles::get() {
        h.wal_write.record(elapsed);
    }
}

pub fn wal_fsync(elapsed: std::time::Duration) {
    if let Some(h) = handles::get() {
        h.wal_fsync.record(elapsed);
    }
}

/// One partition's share of a write group: its appends and bytes (one fsync in fsync mode).
pub fn wal_group(requests: usize, bytes: usize) {
    if let Some(h) = handles::get() {
        h.wal_group_requests.record(requests as f64);
        h.wal_group_bytes.record(bytes as f64);
    }
}

/// A segment opened at start-up: `from` its summary, its checkpoint or by reading its batches.
pub fn segment_opened(from: &'static str) {
    counter!(SEGMENTS_OPENED, "from" => from).increment(1);
}

/// An active segment's checkpoint was written.
pub fn checkpoint_written() {
    counter!(CHECKPOINTS).increment(1);
}

pub fn retention_deleted(bytes: u64) {
    counter!(RETENTION_DELETED).increment(bytes);
}

pub fn offsets_committed(partitions: usize) {
    counter!(OFFSET_COMMITS).increment(partitions as u64);
}

/// A rebalance completed (`protocol`: classic or consumer).
pub fn rebalance(protocol: &'static str) {
    counter!(REBALANCES, "protocol" => protocol).increment(1);
}
