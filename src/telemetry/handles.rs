//! Handles of the metrics recorded on every request, registered once when the recorder is
//! installed. The `counter!`/`histogram!` macros look the metric up by name and labels on
//! each call (hashing, label clones, a `String` per topic label); with one-record requests
//! that was a tenth of the broker's CPU. With no recorder installed (in-process tests) there
//! are no handles and recording is skipped, as the macros would make it a no-op.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use kafka_protocol::messages::ApiKey;
use metrics::{Counter, Histogram, counter, histogram};

use super::api_name;
use super::catalog::*;

static HANDLES: OnceLock<Handles> = OnceLock::new();

pub(super) struct Handles {
    pub network_received: Counter,
    pub network_sent: Counter,
    pub sent_from_file: Counter,
    pub produce_batch: Histogram,
    pub wal_write: Histogram,
    pub wal_fsync: Histogram,
    pub wal_group_requests: Histogram,
    pub wal_group_bytes: Histogram,
    /// Registered at an API's first request, so an API never called is not exported.
    apis: HashMap<i16, OnceLock<ApiHandles>>,
    /// APIs Weir does not serve, named `Other` as `api_name` names them.
    other_api: OnceLock<ApiHandles>,
    /// Registered at a topic's first produce or fetch; a deleted topic's counters stay, as
    /// they would in the recorder.
    topics: DashMap<String, Arc<TopicHandles>>,
}

/// One API's request count and duration.
pub(super) struct ApiHandles {
    pub requests: Counter,
    pub duration: Histogram,
}

impl ApiHandles {
    fn new(name: &'static str) -> ApiHandles {
        ApiHandles {
            requests: counter!(REQUESTS, "api" => name),
            duration: histogram!(REQUEST_DURATION, "api" => name),
        }
    }
}

/// One topic's traffic counters.
pub(super) struct TopicHandles {
    pub produced_records: Counter,
    pub produced_bytes: Counter,
    pub fetched_records: Counter,
    pub fetched_bytes: Counter,
}

/// Registers the handles with the recorder just installed.
pub(super) fn register() {
    HANDLES.get_or_init(|| Handles {
        network_received: counter!(NETWORK_RECEIVED),
        network_sent: counter!(NETWORK_SENT),
        sent_from_file: counter!(FETCH_SENDFILE_BYTES),
        produce_batch: histogram!(PRODUCE_BATCH_SIZE),
        wal_write: histogram!(WAL_WRITE_DURATION),
        wal_fsync: histogram!(WAL_FSYNC_DURATION),
        wal_group_requests: histogram!(WAL_GROUP_REQUESTS),
        wal_group_bytes: histogram!(WAL_GROUP_BYTES),
        apis: crate::protocol::api_table::APIS
            .iter()
            .map(|api| (api.key as i16, OnceLock::new()))
            .collect(),
        other_api: OnceLock::new(),
        topics: DashMap::new(),
    });
}

/// The handles, once a recorder is installed.
pub(super) fn get() -> Option<&'static Handles> {
    HANDLES.get()
}

impl Handles {
    pub fn api(&'static self, key: ApiKey) -> &'static ApiHandles {
        self.apis
            .get(&(key as i16))
            .unwrap_or(&self.other_api)
            .get_or_init(|| ApiHandles::new(api_name(key)))
    }

    pub fn topic(&self, topic: &str) -> Arc<TopicHandles> {
        if let Some(handles) = self.topics.get(topic) {
            return handles.clone();
        }
        self.topics
            .entry(topic.to_string())
            .or_insert_with(|| {
                Arc::new(TopicHandles {
                    produced_records: counter!(PRODUCED_RECORDS, "topic" => topic.to_string()),
                    produced_bytes: counter!(PRODUCED_BYTES, "topic" => topic.to_string()),
                    fetched_records: counter!(FETCHED_RECORDS, "topic" => topic.to_string()),
                    fetched_bytes: counter!(FETCHED_BYTES, "topic" => topic.to_string()),
                })
            })
            .clone()
    }
}
