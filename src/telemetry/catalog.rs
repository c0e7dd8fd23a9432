//! Every metric Weir exports: name, type, labels and meaning. Recording sites use these
//! constants, `describe` gives the exporter the help texts, and a test checks that
//! `docs/metrics.md` documents exactly this list.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct MetricSpec {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
    /// Only exported with `metrics_per_partition: true`.
    pub per_partition: bool,
}

macro_rules! catalog {
    ($( $konst:ident = $name:literal, $kind:ident, [$($label:literal),*], $per:literal, $help:literal; )*) => {
        $( pub const $konst: &str = $name; )*
        pub const METRICS: &[MetricSpec] = &[
            $( MetricSpec {
                name: $name,
                kind: Kind::$kind,
                labels: &[$($label),*],
                help: $help,
                per_partition: $per,
            }, )*
        ];
    };
}

catalog! {
    BUILD_INFO = "weir_build_info", Gauge, ["version"], false,
        "Always 1; the label carries the broker's version.";
    UPTIME = "weir_uptime_seconds", Gauge, [], false,
        "Seconds since the process started.";
    READY = "weir_ready", Gauge, [], false,
        "1 once recovery has finished and clients are served, 0 before and while shutting down.";
    CONNECTIONS_ACTIVE = "weir_connections_active", Gauge, [], false,
        "Client connections open now.";
    CONNECTIONS_ACCEPTED = "weir_connections_accepted_total", Counter, [], false,
        "Client connections accepted since start.";
    CONNECTIONS_REJECTED = "weir_connections_rejected_total", Counter, ["reason"], false,
        "Connections closed right after accept (reason: per_ip_limit).";
    CONNECTIONS_CLOSED = "weir_connections_closed_total", Counter, ["reason"], false,
        "Connections the broker closed (reason: idle, write_stalled, slow_request, bad_frame, bad_request, shutdown, peer).";
    REQUESTS = "weir_requests_total", Counter, ["api"], false,
        "Requests decoded, by Kafka API name.";
    REQUEST_ERRORS = "weir_request_errors_total", Counter, ["api", "error"], false,
        "Error codes in responses, by API and Kafka error name (one per failed topic, partition or group).";
    REQUEST_DURATION = "weir_request_duration_seconds", Histogram, ["api"], false,
        "Time from a request being decoded to its response being ready, by API (includes long-poll and acks waits).";
    REQUESTS_IN_FLIGHT = "weir_requests_in_flight", Gauge, [], false,
        "Requests decoded whose response is not yet ready.";
    NETWORK_RECEIVED = "weir_network_received_bytes_total", Counter, [], false,
        "Bytes of request frames received, size prefixes included.";
    NETWORK_SENT = "weir_network_sent_bytes_total", Counter, [], false,
        "Bytes of responses sent, size prefixes included.";
    PRODUCED_RECORDS = "weir_produced_records_total", Counter, ["topic"], false,
        "Records of acknowledged produce requests, by topic (acks=0: appended).";
    PRODUCED_BYTES = "weir_produced_bytes_total", Counter, ["topic"], false,
        "Record batch bytes of acknowledged produce requests, by topic.";
    PRODUCE_BATCH_SIZE = "weir_produce_batch_size_bytes", Histogram, [], false,
        "Size of each record batch a producer sent.";
    FETCHED_RECORDS = "weir_fetched_records_total", Counter, ["topic"], false,
        "Records returned by fetch responses, by topic.";
    FETCHED_BYTES = "weir_fetched_bytes_total", Counter, ["topic"], false,
        "Record batch bytes returned by fetch responses, by topic.";
    FETCH_SENDFILE_BYTES = "weir_fetch_sendfile_bytes_total", Counter, [], false,
        "Record batch bytes of fetch responses sent from segment files with sendfile (zero-copy), a part of weir_fetched_bytes_total.";
    WAL_WRITE_DURATION = "weir_wal_write_duration_seconds", Histogram, [], false,
        "Time to write one partition's share of a write group to its segment.";
    WAL_FSYNC_DURATION = "weir_wal_fsync_duration_seconds", Histogram, [], false,
        "Time of one fdatasync of a segment (group commit or periodic flush).";
    WAL_GROUP_REQUESTS = "weir_wal_group_requests", Histogram, [], false,
        "Appends (produce requests) one fsync made durable on one partition (fsync mode), or one write group wrote to it (page_cache mode).";
    WAL_GROUP_BYTES = "weir_wal_group_bytes", Histogram, [], false,
        "Bytes one fsync made durable on one partition (fsync mode), or one write group wrote to it (page_cache mode).";
    TOPICS = "weir_topics", Gauge, [], false,
        "Topics (the broker's internal logs are not topics).";
    PARTITIONS = "weir_partitions", Gauge, [], false,
        "Partitions of those topics.";
    LOG_SIZE = "weir_log_size_bytes", Gauge, ["topic"], false,
        "Bytes of the topic's segments on disk.";
    TOPIC_HIGH_WATERMARK_SUM = "weir_topic_high_watermark_sum", Gauge, ["topic"], false,
        "Sum of the topic's partitions' high watermarks (its rate is the topic's committed message rate).";
    PARTITION_HIGH_WATERMARK = "weir_partition_high_watermark", Gauge, ["topic", "partition"], true,
        "The partition's high watermark: consumers read below it.";
    PARTITION_LOG_START_OFFSET = "weir_partition_log_start_offset", Gauge, ["topic", "partition"], true,
        "The partition's first offset still held (moves with retention).";
    RETENTION_DELETED = "weir_retention_deleted_bytes_total", Counter, [], false,
        "Bytes of segments deleted by retention.";
    SEGMENTS_OPENED = "weir_log_segments_opened_total", Counter, ["from"], false,
        "Segments opened at start-up: from their summary file (summary: no batch read), from the summary of their last checkpoint and then the batches after it (checkpoint: the newest segment after an unclean stop), or by reading every batch header (scan: no valid summary).";
    CHECKPOINTS = "weir_log_checkpoints_total", Counter, [], false,
        "Checkpoints written: an active segment's data fsynced and summarized, so that a start after a crash reads only what came after.";
    DISK_FREE = "weir_disk_free_bytes", Gauge, [], false,
        "Bytes an unprivileged writer can still add to the data directory's file system.";
    DISK_TOTAL = "weir_disk_total_bytes", Gauge, [], false,
        "Size of the data directory's file system.";
    DISK_LOW = "weir_disk_space_low", Gauge, [], false,
        "1 while produce is refused because free space is below disk_min_free_bytes.";
    GROUPS = "weir_consumer_groups", Gauge, ["state"], false,
        "Consumer groups by state (Empty, Stable, PreparingRebalance, CompletingRebalance, Assigning, Reconciling).";
    GROUP_MEMBERS = "weir_consumer_group_members", Gauge, ["group"], false,
        "Members of the group.";
    GROUP_LAG_MAX = "weir_consumer_group_lag_max", Gauge, ["group"], false,
        "Largest lag (high watermark minus committed offset) over the group's committed partitions.";
    GROUP_LAG_SUM = "weir_consumer_group_lag_sum", Gauge, ["group"], false,
        "Sum of the lag over the group's committed partitions.";
    GROUP_COMMITTED_OFFSET = "weir_consumer_group_committed_offset", Gauge, ["group", "topic", "partition"], true,
        "The group's committed offset for the partition.";
    GROUP_PARTITION_LAG = "weir_consumer_group_partition_lag", Gauge, ["group", "topic", "partition"], true,
        "High watermark minus the group's committed offset for the partition.";
    OFFSET_COMMITS = "weir_offset_commits_total", Counter, [], false,
        "Partition offsets committed (OffsetCommit and TxnOffsetCommit).";
    REBALANCES = "weir_consumer_group_rebalances_total", Counter, ["protocol"], false,
        "Rebalances completed: a new generation (classic) or group epoch (consumer, KIP-848).";
}

/// Hands every help text and unit to the installed recorder.
pub fn describe() {
    for spec in METRICS {
        let unit = unit_of(spec.name);
        match (spec.kind, unit) {
            (Kind::Counter, Some(u)) => describe_counter!(spec.name, u, spec.help),
            (Kind::Counter, None) => describe_counter!(spec.name, spec.help),
            (Kind::Gauge, Some(u)) => describe_gauge!(spec.name, u, spec.help),
            (Kind::Gauge, None) => describe_gauge!(spec.name, spec.help),
            (Kind::Histogram, Some(u)) => describe_histogram!(spec.name, u, spec.help),
            (Kind::Histogram, None) => describe_histogram!(spec.name, spec.help),
        }
    }
}

fn unit_of(name: &str) -> Option<Unit> {
    let base = name.strip_suffix("_total").unwrap_or(name);
    if base.ends_with("_seconds") {
        Some(Unit::Seconds)
    } else if base.ends_with("_bytes") {
        Some(Unit::Bytes)
    } else {
        None
    }
}

pub fn spec(name: &str) -> Option<&'static MetricSpec> {
    METRICS.iter().find(|m| m.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let mut seen = std::collections::HashSet::new();
        for m in METRICS {
            assert!(seen.insert(m.name), "{} listed twice", m.name);
            assert!(m.name.starts_with("weir_"), "{}", m.name);
            assert!(
                m.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                m.name
            );
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                m.name
            );
            assert!(!m.help.is_empty());
            assert!(!m.labels.contains(&"le") && !m.labels.contains(&"quantile"));
        }
    }

    #[test]
    fn docs_list_every_metric_and_nothing_else() {
        let doc = include_str!("../../docs/metrics.md");
        let mut documented = std::collections::BTreeMap::new();
        for line in doc.lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            if cells.len() >= 5
                && let Some(name) = cells[1].strip_prefix('`').and_then(|n| n.strip_suffix('`'))
                && name.starts_with("weir_")
            {
                documented.insert(
                    name.to_string(),
                    (
                        cells[2].to_string(),
                        cells[3].to_string(),
                        cells[4].to_string(),
                    ),
                );
            }
        }
        for m in METRICS {
            let Some((kind, labels, meaning)) = documented.remove(m.name) else {
                panic!("{} is not documented in docs/metrics.md", m.name);
            };
            assert_eq!(kind, m.kind.as_str(), "{}: type in docs/metrics.md", m.name);
            let want = m
                .labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ");
            assert_eq!(labels, want, "{}: labels in docs/metrics.md", m.name);
            assert!(
                meaning.starts_with(m.help),
                "{}: docs/metrics.md says `{meaning}`, the exporter's help is `{}`",
                m.name,
                m.help
            );
        }
        assert!(
            documented.is_empty(),
            "documented but not exported: {:?}",
            documented.keys()
        );
    }
}
