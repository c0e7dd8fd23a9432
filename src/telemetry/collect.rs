//! Gauges of the broker's state, set on every scrape: topics, partitions, log sizes, disk
//! space, consumer groups and their lag. Reading them on demand costs nothing between
//! scrapes, and a gauge of a deleted topic or group is not set again and expires.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Instant;

use metrics::gauge;

use super::catalog::*;
use crate::broker::Broker;

/// Group states a scrape always reports, with 0 when no group is in them.
const GROUP_STATES: &[&str] = &[
    "Empty",
    "Stable",
    "PreparingRebalance",
    "CompletingRebalance",
    "Assigning",
    "Reconciling",
];

static STARTED: OnceLock<Instant> = OnceLock::new();

/// Marks the process start for `weir_uptime_seconds`.
pub fn mark_start() {
    STARTED.get_or_init(Instant::now);
}

/// Sets every state gauge; `broker` is `None` while recovery runs.
pub async fn state_gauges(broker: Option<&Arc<Broker>>) {
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let started = *STARTED.get_or_init(Instant::now);
    gauge!(UPTIME).set(started.elapsed().as_secs_f64());
    let Some(broker) = broker else {
        gauge!(READY).set(0.0);
        return;
    };
    gauge!(READY).set(if broker.shutdown.is_triggered() {
        0.0
    } else {
        1.0
    });
    gauge!(CONNECTIONS_ACTIVE).set(broker.stats.connections_active() as f64);
    gauge!(REQUESTS_IN_FLIGHT).set(broker.stats.requests_in_flight() as f64);
    logs(broker);
    disk(broker);
    groups(broker).await;
}

fn logs(broker: &Broker) {
    let per_partition = broker.config.metrics_per_partition;
    let mut topics = 0usize;
    let mut partitions = 0usize;
    for topic in broker.logs.topics() {
        topics += 1;
        let mut size = 0u64;
        let mut high_watermarks = 0i64;
        for partition in topic.partitions() {
            partitions += 1;
            let marks = partition.watermarks();
            size += partition.size_bytes();
            high_watermarks += marks.high_watermark;
            if per_partition {
                let labels = [
                    ("topic", topic.name.clone()),
                    ("partition", partition.index().to_string()),
                ];
                gauge!(PARTITION_HIGH_WATERMARK, &labels).set(marks.high_watermark as f64);
                gauge!(PARTITION_LOG_START_OFFSET, &labels).set(marks.log_start_offset as f64);
            }
        }
        gauge!(LOG_SIZE, "topic" => topic.name.clone()).set(size as f64);
        gauge!(TOPIC_HIGH_WATERMARK_SUM, "topic" => topic.name.clone()).set(high_watermarks as f64);
    }
    gauge!(TOPICS).set(topics as f64);
    gauge!(PARTITIONS).set(partitions as f64);
}

fn disk(broker: &Broker) {
    let disk = broker.logs.disk();
    if let Ok(free) = disk.available_space(&broker.config.data_dir) {
        gauge!(DISK_FREE).set(free as f64);
    }
    if let Ok(total) = disk.total_space(&broker.config.data_dir) {
        gauge!(DISK_TOTAL).set(total as f64);
    }
    gauge!(DISK_LOW).set(if broker.space.is_low() { 1.0 } else { 0.0 });
}

async fn groups(broker: &Broker) {
    let per_partition = broker.config.metrics_per_partition;
    let mut states: BTreeMap<&'static str, usize> =
        GROUP_STATES.iter().map(|state| (*state, 0)).collect();
    for (group, description) in broker.groups.list().await {
        *states.entry(description.state()).or_default() += 1;
        gauge!(GROUP_MEMBERS, "group" => group.clone()).set(description.member_count() as f64);
        let mut lag_max = 0i64;
        let mut lag_sum = 0i64;
        for (topic, partition, committed) in broker.groups.offsets().group_offsets(&group) {
            let Some(high_watermark) = broker
                .logs
                .topic(&topic)
                .and_then(|t| t.partition(partition))
                .map(|p| p.watermarks().high_watermark)
            else {
                continue;
            };
            // A committed offset past the end (the log was truncated or deleted and
            // recreated) has no lag to report, not a negative one.
            let lag = (high_watermark - committed.offset).max(0);
            lag_max = lag_max.max(lag);
            lag_sum += lag;
            if per_partition {
                let labels = [
                    ("group", group.clone()),
                    ("topic", topic.clone()),
                    ("partition", partition.to_string()),
                ];
                gauge!(GROUP_COMMITTED_OFFSET, &labels).set(committed.offset as f64);
                gauge!(GROUP_PARTITION_LAG, &labels).set(lag as f64);
            }
        }
        gauge!(GROUP_LAG_MAX, "group" => group.clone()).set(lag_max as f64);
        gauge!(GROUP_LAG_SUM, "group" => group).set(lag_sum as f64);
    }
    for (state, count) in states {
        gauge!(GROUPS, "state" => state).set(count as f64);
    }
}
