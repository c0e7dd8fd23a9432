//! The process-wide Prometheus recorder: histogram buckets per metric (so latencies export
//! as histograms, not summaries), idle expiry for gauges of things that are gone, and the
//! periodic upkeep that drains histogram samples between scrapes.

use std::time::Duration;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

use super::catalog;

/// Latencies from 50 µs (an fsync on a fast disk) to a minute (a JoinGroup waiting out a
/// rebalance).
const SECONDS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Sizes from 256 B to 64 MiB, by powers of 4.
const BYTES: &[f64] = &[
    256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0, 67108864.0,
];
/// Requests per write group.
const COUNTS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// Every scrape sets the state gauges afresh (`collect`); one not set for this long belongs to
/// a topic, partition or group that is gone and is dropped from the output.
const GAUGE_IDLE: Duration = Duration::from_secs(1);
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the recorder for the whole process and returns the handle that renders it.
/// Fails if a recorder is already installed.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)?
        .set_buckets_for_metric(Matcher::Suffix("_bytes".into()), BYTES)?
        .set_buckets_for_metric(Matcher::Full(catalog::WAL_GROUP_REQUESTS.into()), COUNTS)?
        .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE))
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(BuildError::FailedToSetGlobalRecorder)?;
    catalog::describe();
    super::handles::register();
    Ok(handle)
}

/// Drains histogram samples into their buckets even when nobody scrapes, so memory stays
/// bounded.
pub fn spawn_upkeep(handle: PrometheusHandle) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
}
