//! Time: transactions past their timeout are aborted with a bumped epoch (fencing the
//! producer that abandoned them), and transactional ids idle past the expiration forgotten.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::{TransactionCoordinator, TxnEntry};
use crate::log::now_ms;
use crate::shutdown::{Shutdown, spawn_periodic};
use crate::txn::state::TxnState;

impl TransactionCoordinator {
    /// Aborts transactions past their timeout and forgets idle ids, every `period`.
    pub fn spawn_sweeper(self: &Arc<Self>, period: Duration, shutdown: Shutdown) {
        spawn_periodic(Arc::downgrade(self), period, shutdown, |c| async move {
            c.sweep().await;
        });
    }

    /// Aborts timed-out transactions (fencing their producer with a new epoch) and forgets
    /// ids idle for longer than the expiration.
    pub async fn sweep(&self) {
        let now = now_ms();
        let ids: Vec<(String, Arc<TxnEntry>)> = self
            .entries
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        for (id, entry) in ids {
            let Some(meta) = entry.get() else { continue };
            let idle = matches!(
                meta.state,
                TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
            ) && now - meta.last_update_ms > self.limits.id_expiration_ms;
            if !meta.timed_out(now) && !idle {
                continue;
            }
            let _op = entry.op.lock().await;
            let Some(mut meta) = entry.get() else {
                continue;
            };
            if meta.timed_out(now) {
                info!(transactional_id = %id, producer_id = meta.producer_id,
                    timeout_ms = meta.timeout_ms, "aborting a transaction past its timeout");
                if !meta.bump_epoch() {
                    warn!(transactional_id = %id, "producer epoch exhausted; aborting without a bump");
                }
                if let Err(e) = self.end(&id, &entry, meta, false).await {
                    warn!(transactional_id = %id, error = ?e, "cannot abort a timed-out transaction");
                }
            } else if now - meta.last_update_ms > self.limits.id_expiration_ms
                && !meta.state.is_preparing()
                && meta.state != TxnState::Ongoing
                && self.log.write(&id, None).await.is_ok()
            {
                entry.set(None);
                // Only if no request holds the entry (it would recreate the id in it): the map
                // and this sweep hold the only references.
                self.entries
                    .remove_if(&id, |_, e| Arc::strong_count(e) <= 2);
                info!(transactional_id = %id, "forgot an idle transactional id");
            }
        }
    }
}
