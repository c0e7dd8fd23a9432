//! The writer's periodic work between groups: page_cache flushes, and handing the partitions
//! written since their last checkpoint to the checkpoint thread.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::time::Instant;

use super::WriterTimers;
use crate::config::Durability;
use crate::log::partition::PartitionLog;
use crate::telemetry;

/// A partition's key in the writer's maps: its log's address, stable while the log lives.
pub(super) fn key(log: &Arc<PartitionLog>) -> usize {
    Arc::as_ptr(log) as usize
}

/// The thread that checkpoints the logs the writer hands it, off the writer thread: a
/// checkpoint's fsyncs would otherwise hold up the next group. It ends with the writer.
pub(super) struct Checkpointer {
    tx: Sender<Vec<Arc<PartitionLog>>>,
    /// Set while a round runs: the writer keeps the next one until it is done, so rounds
    /// never queue up.
    busy: Arc<AtomicBool>,
}

impl Checkpointer {
    pub(super) fn spawn() -> std::io::Result<Checkpointer> {
        let (tx, rx) = channel::<Vec<Arc<PartitionLog>>>();
        let busy = Arc::new(AtomicBool::new(false));
        let running = busy.clone();
        std::thread::Builder::new()
            .name("weir-log-checkpoint".into())
            .spawn(move || {
                for logs in rx {
                    for log in logs {
                        log.checkpoint();
                    }
                    running.store(false, Ordering::Release);
                }
            })?;
        Ok(Checkpointer { tx, busy })
    }

    /// Starts a round over `logs` unless one is running; gives them back then.
    fn start(&self, logs: Vec<Arc<PartitionLog>>) -> Result<(), Vec<Arc<PartitionLog>>> {
        if self.busy.swap(true, Ordering::AcqRel) {
            return Err(logs);
        }
        self.tx.send(logs).map_err(|e| e.0)
    }
}

/// What is due between groups, and the partitions it is due for.
pub(super) struct Background {
    timers: WriterTimers,
    durability: Durability,
    /// page_cache mode: partitions written since their last fsync.
    unsynced: HashMap<usize, Arc<PartitionLog>>,
    next_flush: Instant,
    /// Partitions written since their last checkpoint.
    unchecked: HashMap<usize, Arc<PartitionLog>>,
    next_checkpoint: Instant,
    checkpointer: Checkpointer,
}

impl Background {
    pub(super) fn new(
        timers: WriterTimers,
        durability: Durability,
        checkpointer: Checkpointer,
    ) -> Background {
        let now = Instant::now();
        Background {
            timers,
            durability,
            unsynced: HashMap::new(),
            next_flush: now + timers.flush,
            unchecked: HashMap::new(),
            next_checkpoint: now + timers.checkpoint,
            checkpointer,
        }
    }

    /// The next time something is due, if anything waits.
    pub(super) fn deadline(&self) -> Option<Instant> {
        let flush = (!self.unsynced.is_empty()).then_some(self.next_flush);
        let checkpoint = (!self.unchecked.is_empty()).then_some(self.next_checkpoint);
        flush.into_iter().chain(checkpoint).min()
    }

    /// Takes in the partitions a group wrote (or a handler wrote, page_cache mode).
    pub(super) fn written(&mut self, logs: Vec<Arc<PartitionLog>>) {
        for log in logs {
            if self.durability == Durability::PageCache {
                self.unsynced
                    .entry(key(&log))
                    .or_insert_with(|| log.clone());
            }
            self.unchecked.entry(key(&log)).or_insert(log);
        }
    }

    /// Partitions fsynced in full since they were written: no flush needed.
    pub(super) fn synced(&mut self, keys: impl IntoIterator<Item = usize>) {
        for key in keys {
            self.unsynced.remove(&key);
        }
    }

    /// Runs whatever is due.
    pub(super) fn run_due(&mut self) {
        let now = Instant::now();
        if now >= self.next_flush {
            self.flush();
            self.next_flush = now + self.timers.flush;
        }
        if now >= self.next_checkpoint {
            if !self.unchecked.is_empty() {
                let logs: Vec<_> = self.unchecked.drain().map(|(_, log)| log).collect();
                if let Err(logs) = self.checkpointer.start(logs) {
                    // The last round is still running: these wait for the next one.
                    for log in logs {
                        self.unchecked.insert(key(&log), log);
                    }
                }
            }
            self.next_checkpoint = now + self.timers.checkpoint;
        }
    }

    /// fsyncs every partition written since its last fsync (page_cache mode's flush, and
    /// the last one at shutdown).
    pub(super) fn flush(&mut self) {
        for (_, log) in self.unsynced.drain() {
            // Cleared before the fsync: a write that lands meanwhile registers again.
            log.clear_dirty();
            let started = Instant::now();
            let result = log.sync_active();
            telemetry::wal_fsync(started.elapsed());
            if let Err(e) = result {
                log.poison(&e);
            }
        }
    }
}
