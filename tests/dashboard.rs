//! The Grafana dashboard (`config/grafana/weir-dashboard.json`) is valid JSON, lays its panels
//! out without overlaps, and every query names only metrics Weir exports. The compat suite
//! also runs every query against a real Prometheus scraping a broker.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use weir::telemetry::catalog::{Kind, METRICS};

const DASHBOARD: &str = include_str!("../config/grafana/weir-dashboard.json");

fn exprs(dashboard: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    out
}

/// The `weir_*` identifiers in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("weir_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn dashboard_queries_name_only_exported_metrics() {
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).expect("valid JSON");
    assert_eq!(dashboard["uid"], "weir-broker");
    let mut known = BTreeSet::new();
    for m in METRICS {
        known.insert(m.name.to_string());
        if m.kind == Kind::Histogram {
            for suffix in ["_bucket", "_sum", "_count"] {
                known.insert(format!("{}{suffix}", m.name));
            }
        }
    }
    let exprs = exprs(&dashboard);
    assert!(exprs.len() >= 20, "{} queries", exprs.len());
    let mut used = BTreeSet::new();
    for expr in &exprs {
        assert_eq!(
            expr.matches('(').count(),
            expr.matches(')').count(),
            "unbalanced: {expr}"
        );
        assert_eq!(
            expr.matches('{').count(),
            expr.matches('}').count(),
            "{expr}"
        );
        let names = metric_names(expr);
        assert!(!names.is_empty(), "no weir_ metric in {expr}");
        for name in names {
            assert!(known.contains(&name), "{name} in `{expr}` is not exported");
            used.insert(name);
        }
    }
    // What the dashboard is for: throughput, latency by API, fsync and group commit size,
    // consumer lag, disk.
    for needed in [
        "weir_produced_records_total",
        "weir_request_duration_seconds_bucket",
        "weir_wal_fsync_duration_seconds_bucket",
        "weir_wal_group_requests_sum",
        "weir_wal_group_bytes_sum",
        "weir_consumer_group_lag_sum",
        "weir_disk_free_bytes",
    ] {
        assert!(
            used.contains(needed),
            "the dashboard does not show {needed}"
        );
    }
}

#[test]
fn dashboard_panels_do_not_overlap() {
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).unwrap();
    let mut cells = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(
            ids.insert(panel["id"].as_i64().unwrap()),
            "duplicate panel id"
        );
        let pos = &panel["gridPos"];
        let (x, y, w, h) = (
            pos["x"].as_i64().unwrap(),
            pos["y"].as_i64().unwrap(),
            pos["w"].as_i64().unwrap(),
            pos["h"].as_i64().unwrap(),
        );
        assert!(x + w <= 24, "{} is wider than the grid", panel["title"]);
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(cells.insert((cx, cy)), "{} overlaps", panel["title"]);
            }
        }
    }
}
