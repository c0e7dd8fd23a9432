//! `weir cluster info` and `weir diagnose-connection`.

use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;
use serde_json::json;

use super::{AdminError, Report, table};
use crate::client::{Cluster, KafkaConnection};

pub async fn info(cluster: &mut Cluster) -> Result<Report, AdminError> {
    let topics = cluster.metadata(None).await?;
    let partitions: usize = topics.iter().map(|t| t.partitions.len()).sum();
    let brokers: Vec<Vec<String>> = cluster
        .brokers
        .iter()
        .map(|(id, addr)| {
            vec![
                id.to_string(),
                addr.clone(),
                if *id == cluster.controller_id {
                    "controller".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    let mut text = format!(
        "Cluster id: {}\nBootstrap: {}\nTopics: {}  Partitions: {}\n\n",
        cluster.cluster_id.as_deref().unwrap_or("-"),
        cluster.bootstrap_addr,
        topics.len(),
        partitions
    );
    text.push_str(&table(&["BROKER", "ADDRESS", "ROLE"], &brokers));
    Ok(Report {
        json: json!({
            "cluster_id": cluster.cluster_id,
            "controller_id": cluster.controller_id,
            "bootstrap": cluster.bootstrap_addr,
            "brokers": cluster.brokers.iter().map(|(id, addr)| json!({"node_id": id, "address": addr}))
                .collect::<Vec<_>>(),
            "topics": topics.len(),
            "partitions": partitions,
        }),
        text,
    })
}

/// One step of the diagnosis.
struct Check {
    what: String,
    ok: bool,
    detail: String,
}

/// Bootstrap, Metadata, then every advertised broker address dialled from here: the usual
/// first-run failure is a broker advertising an address clients cannot reach.
/// Returns the report and whether every check passed.
pub async fn diagnose(bootstrap: &str, timeout: Duration) -> Result<(Report, bool), AdminError> {
    let mut checks = Vec::new();
    let started = Instant::now();
    let mut cluster = match Cluster::connect(bootstrap, timeout).await {
        Ok(cluster) => {
            checks.push(Check {
                what: format!("bootstrap {bootstrap}"),
                ok: true,
                detail: format!(
                    "connected, ApiVersions and Metadata answered in {} ms",
                    started.elapsed().as_millis()
                ),
            });
            cluster
        }
        Err(e) => {
            checks.push(Check {
                what: format!("bootstrap {bootstrap}"),
                ok: false,
                detail: format!(
                    "{e}. Is the broker running and listening on this address (Weir: `listen`, \
                     Kafka: `listeners`), and is no firewall in the way?"
                ),
            });
            return finish(bootstrap, checks, Vec::new());
        }
    };
    let advertised: Vec<(i32, String)> = cluster
        .brokers
        .iter()
        .map(|(id, addr)| (*id, addr.clone()))
        .collect();
    let mut unreachable = Vec::new();
    for (id, addr) in &advertised {
        let started = Instant::now();
        match KafkaConnection::connect(addr, timeout).await {
            Ok(connection) => checks.push(Check {
                what: format!("broker {id} advertised as {addr}"),
                ok: true,
                detail: format!(
                    "reachable, ApiVersions answered in {} ms{}",
                    started.elapsed().as_millis(),
                    if connection.serves(ApiKey::Produce) && connection.serves(ApiKey::Fetch) {
                        ""
                    } else {
                        " (but it does not serve Produce and Fetch)"
                    }
                ),
            }),
            Err(e) => {
                unreachable.push(addr.clone());
                checks.push(Check {
                    what: format!("broker {id} advertised as {addr}"),
                    ok: false,
                    detail: format!(
                        "UNREACHABLE: {e}. The bootstrap address answered, but clients then \
                         connect to this advertised address and will fail. Set the broker's \
                         advertised address to one reachable from here (Weir: \
                         `advertised_listener` or `extra_listeners`; Kafka: \
                         `advertised.listeners`)."
                    ),
                });
            }
        }
    }
    let _ = cluster.metadata(Some(&[])).await;
    finish(bootstrap, checks, unreachable)
}

fn finish(
    bootstrap: &str,
    checks: Vec<Check>,
    unreachable: Vec<String>,
) -> Result<(Report, bool), AdminError> {
    let ok = checks.iter().all(|c| c.ok);
    let mut text = String::new();
    for c in &checks {
        text.push_str(&format!(
            "[{}] {}: {}\n",
            if c.ok { "ok" } else { "FAIL" },
            c.what,
            c.detail
        ));
    }
    text.push_str(if ok {
        "every advertised address is reachable from here\n"
    } else {
        "clients on this machine will not be able to use this cluster\n"
    });
    let report = Report {
        json: json!({
            "bootstrap": bootstrap,
            "ok": ok,
            "unreachable": unreachable,
            "checks": checks.iter().map(|c| json!({"check": c.what, "ok": c.ok, "detail": c.detail}))
                .collect::<Vec<_>>(),
        }),
        text,
    };
    Ok((report, ok))
}
