//! The transaction coordinator's durable state: one record per change, keyed by
//! transactional id with the JSON of its `TxnMetadata` (a null value forgets the id), in the
//! internal log `__weir_meta/transaction-state-0`. A write returns once committed. Once the
//! log holds a segment more than twice its live state, the live state is rewritten at its
//! end and the older segments dropped.

use std::collections::HashMap;

use bytes::Bytes;
use dashmap::DashMap;
use tracing::{info, warn};

use super::state::TxnMetadata;
use crate::log::internal_log::{InternalLog, InternalLogError, KeyValue};

/// Records per batch when the live state is rewritten.
const REWRITE_BATCH_RECORDS: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum TxnLogError {
    #[error(transparent)]
    Log(#[from] InternalLogError),
    #[error("malformed transaction state record: {0}")]
    Record(String),
    #[error("replay of the transaction log failed: {0}")]
    Replay(String),
}

pub struct TxnLog {
    log: InternalLog,
    /// The newest record of every live id: what a rewrite keeps.
    live: DashMap<String, Bytes>,
    /// Appends share it; a rewrite takes it alone, so nothing lands between the live state
    /// it copies and the records it writes.
    rewrite: tokio::sync::RwLock<()>,
    segment_bytes: u64,
}

impl TxnLog {
    /// Opens the log and replays it: every live id's newest state.
    pub async fn open(
        log: InternalLog,
        segment_bytes: u64,
    ) -> Result<(TxnLog, HashMap<String, TxnMetadata>), TxnLogError> {
        let reader = log.clone();
        let records = tokio::task::spawn_blocking(move || reader.replay())
            .await
            .map_err(|e| TxnLogError::Replay(e.to_string()))??;
        let mut latest: HashMap<String, Option<Bytes>> = HashMap::new();
        for (_, (key, value)) in records {
            let id = String::from_utf8(key.to_vec())
                .map_err(|_| TxnLogError::Record("transactional id is not UTF-8".into()))?;
            latest.insert(id, value);
        }
        let live = DashMap::new();
        let mut state = HashMap::new();
        for (id, value) in latest {
            let Some(value) = value else { continue };
            let meta: TxnMetadata = serde_json::from_slice(&value)
                .map_err(|e| TxnLogError::Record(format!("{id}: {e}")))?;
            live.insert(id.clone(), value);
            state.insert(id, meta);
        }
        let log = TxnLog {
            log,
            live,
            rewrite: tokio::sync::RwLock::new(()),
            segment_bytes,
        };
        Ok((log, state))
    }

    /// Writes the id's state (`None`: forget the id) and waits until it is committed.
    pub async fn write(
        &self,
        id: &str,
        meta: Option<&TxnMetadata>,
    ) -> Result<(), InternalLogError> {
        let value = meta
            .map(|m| {
                serde_json::to_vec(m)
                    .map(Bytes::from)
                    .map_err(|e| InternalLogError::Encode(e.to_string()))
            })
            .transpose()?;
        {
            let record: KeyValue = (Bytes::from(id.as_bytes().to_vec()), value.clone());
            let _shared = self.rewrite.read().await;
            self.log.append(&[record]).await?;
            match value {
                Some(value) => self.live.insert(id.to_string(), value),
                None => self.live.remove(id).map(|(_, v)| v),
            };
        }
        self.maybe_rewrite().await;
        Ok(())
    }

    async fn maybe_rewrite(&self) {
        let live_bytes: u64 = self.live.iter().map(|e| e.value().len() as u64 + 64).sum();
        let partition = self.log.partition();
        if partition.size_bytes() < self.segment_bytes + 2 * live_bytes {
            return;
        }
        let Ok(_exclusive) = self.rewrite.try_write() else {
            return;
        };
        let start = partition.watermarks().log_end_offset;
        let records: Vec<KeyValue> = self
            .live
            .iter()
            .map(|e| {
                (
                    Bytes::from(e.key().as_bytes().to_vec()),
                    Some(e.value().clone()),
                )
            })
            .collect();
        for chunk in records.chunks(REWRITE_BATCH_RECORDS) {
            if let Err(e) = self.log.append(chunk).await {
                warn!(error = %e, "rewriting the transaction log failed");
                return;
            }
        }
        let deleted = partition.delete_segments_before(start);
        info!(bytes = deleted, "rewrote the transaction log");
    }
}
