//! A group's two stages. The write stage appends every partition's share of the group and
//! marks it Written; the sync stage fsyncs each partition once for everything written to it
//! since its last fsync, marks that Durable and answers closes. Each stage runs its
//! partitions concurrently; in fsync mode the stages run on two threads, so the next group
//! is written while the last one is fsynced.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;
use tracing::error;

use super::background::key;
use super::pool::{Pool, run_all};
use super::{Job, WriteRequest, WriterCommand};
use crate::log::commit::{PendingAppend, Persistence};
use crate::log::partition::PartitionLog;
use crate::log::segment::AppendBatch;
use crate::telemetry;

type Reply = oneshot::Sender<std::io::Result<()>>;

/// One partition's appends the write stage wrote, waiting for their fsync, and the closes
/// waiting on it.
pub(super) struct Unsynced {
    log: Arc<PartitionLog>,
    appends: Vec<Arc<PendingAppend>>,
    bytes: usize,
    replies: Vec<Reply>,
}

/// What a group's write stage did.
pub(super) struct Written {
    /// Partitions written to or marked dirty (page_cache mode), for the periodic work.
    pub touched: Vec<Arc<PartitionLog>>,
    /// What the sync stage must make durable.
    pub unsynced: Vec<Unsynced>,
}

/// One partition's share of a group, as the write stage gathers it.
struct Share {
    log: Arc<PartitionLog>,
    appends: Vec<WriteRequest>,
    replies: Vec<Reply>,
    /// Written by a request handler since its last flush (page_cache mode).
    dirty: bool,
}

/// A share after its write: the outcome rides with it (see `run_all`).
struct ShareWritten {
    share: Share,
    result: std::io::Result<()>,
}

fn write_share(share: Share) -> ShareWritten {
    let started = Instant::now();
    let result = write_appends(&share.log, &share.appends);
    if !share.appends.is_empty() {
        telemetry::wal_write(started.elapsed());
    }
    ShareWritten { share, result }
}

/// The write stage: every partition's appends (marked Written), then the commit step, which
/// in page_cache mode advances the high watermark. Shares that must be fsynced (all of them
/// when `sync_all`, else those with a close waiting) are handed on; a partition whose write
/// failed is poisoned and settled here.
pub(super) fn write_group(jobs: Vec<Job>, sync_all: bool, pool: Option<&Pool>) -> Written {
    let mut order: HashMap<usize, usize> = HashMap::new();
    let mut shares: Vec<Share> = Vec::new();
    for job in jobs {
        let index = *order.entry(key(&job.log)).or_insert_with(|| {
            shares.push(Share {
                log: job.log.clone(),
                appends: Vec::new(),
                replies: Vec::new(),
                dirty: false,
            });
            shares.len() - 1
        });
        match job.command {
            WriterCommand::Append(request) => shares[index].appends.push(request),
            WriterCommand::Sync(reply) => shares[index].replies.push(reply),
            WriterCommand::Dirty => shares[index].dirty = true,
        }
    }
    let mut written = Written {
        touched: Vec::with_capacity(shares.len()),
        unsynced: Vec::new(),
    };
    for ShareWritten { share, result } in run_all(pool, shares, write_share) {
        let bytes: usize = share.appends.iter().map(WriteRequest::bytes).sum();
        if !share.appends.is_empty() || share.dirty {
            written.touched.push(share.log.clone());
        }
        if let Err(e) = result {
            error!(partition = %share.log.name(), error = %e, "write failed");
            settle(
                &share.log,
                share.appends.iter().map(|r| &r.append),
                share.replies,
                &e,
            );
            continue;
        }
        share.log.commit();
        let sync = (sync_all && !share.appends.is_empty()) || !share.replies.is_empty();
        if !sync {
            if !share.appends.is_empty() {
                telemetry::wal_group(share.appends.len(), bytes);
            }
            continue;
        }
        // The batches and their budget permits go here: the bytes are written.
        written.unsynced.push(Unsynced {
            appends: share.appends.into_iter().map(|r| r.append).collect(),
            log: share.log,
            bytes,
            replies: share.replies,
        });
    }
    written
}

/// A partition's fsync after its write: the outcome rides with it (see `run_all`).
struct ShareSynced {
    unsynced: Unsynced,
    result: std::io::Result<()>,
}

/// Group fsyncs cover the log data; indexes are rebuilt by recovery, so they are fsynced only
/// when a partition closes and when a segment rolls.
fn sync_share(unsynced: Unsynced) -> ShareSynced {
    let started = Instant::now();
    let result = if unsynced.replies.is_empty() {
        unsynced.log.sync_active_data()
    } else {
        unsynced.log.close_active()
    };
    telemetry::wal_fsync(started.elapsed());
    if !unsynced.appends.is_empty() {
        // What one fsync makes durable: this partition's appends since its last fsync.
        telemetry::wal_group(unsynced.appends.len(), unsynced.bytes);
    }
    ShareSynced { unsynced, result }
}

/// The sync stage over everything written since the last one (one or more groups): one
/// fsync per partition, its appends marked Durable, closes answered, then the commit step.
/// Returns the keys of the partitions fsynced.
pub(super) fn sync_group(unsynced: Vec<Unsynced>, pool: Option<&Pool>) -> Vec<usize> {
    let mut order: HashMap<usize, usize> = HashMap::new();
    let mut merged: Vec<Unsynced> = Vec::new();
    for part in unsynced {
        match order.get(&key(&part.log)) {
            Some(&i) => {
                let into = &mut merged[i];
                into.appends.extend(part.appends);
                into.bytes += part.bytes;
                into.replies.extend(part.replies);
            }
            None => {
                order.insert(key(&part.log), merged.len());
                merged.push(part);
            }
        }
    }
    let mut synced = Vec::with_capacity(merged.len());
    for ShareSynced { unsynced, result } in run_all(pool, merged, sync_share) {
        let Unsynced {
            log,
            appends,
            replies,
            ..
        } = unsynced;
        if let Err(e) = result {
            error!(partition = %log.name(), error = %e, "fsync failed");
            settle(&log, appends.iter(), replies, &e);
            continue;
        }
        for append in &appends {
            append.mark(Persistence::Durable);
        }
        for reply in replies {
            // The caller may have given up waiting; nothing to do then.
            let _ = reply.send(Ok(()));
        }
        log.commit();
        synced.push(key(&log));
    }
    synced
}

/// A failed write or fsync: the partition is poisoned, its appends fail and closes get the
/// error.
fn settle<'a>(
    log: &PartitionLog,
    appends: impl Iterator<Item = &'a Arc<PendingAppend>>,
    replies: Vec<Reply>,
    cause: &std::io::Error,
) {
    log.poison(cause);
    for append in appends {
        append.fail();
    }
    for reply in replies {
        let _ = reply.send(Err(std::io::Error::new(cause.kind(), cause.to_string())));
    }
    log.commit();
}

/// Appends one partition's requests in order, rolling segments as needed, and marks them
/// Written. Nothing is written to a poisoned partition.
fn write_appends(log: &PartitionLog, appends: &[WriteRequest]) -> std::io::Result<()> {
    if log.is_poisoned() {
        return Err(std::io::Error::other(
            "partition is poisoned by an earlier write failure",
        ));
    }
    if appends.is_empty() {
        return Ok(());
    }
    let mut run: Vec<AppendBatch> = Vec::new();
    let mut run_bytes = 0u64;
    let mut active = log.active_segment()?;
    for request in appends {
        let request_bytes = request.bytes() as u64;
        let last_offset = request.append.next_offset - 1;
        if log.should_roll(&active, run_bytes + request_bytes, last_offset) {
            active.append(&run)?;
            log.cache_written(&run);
            run.clear();
            run_bytes = 0;
            active = log.roll(&active, request.append.base_offset)?;
        }
        run.extend(request.batches.iter().cloned());
        run_bytes += request_bytes;
    }
    active.append(&run)?;
    log.cache_written(&run);
    for request in appends {
        request.append.mark(Persistence::Written);
    }
    Ok(())
}
