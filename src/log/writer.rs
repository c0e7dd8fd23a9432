//! The background writer of one partition: it owns all disk writes of the partition's log.
//! Request handlers hand it appends over a channel; it drains everything pending into one
//! group, writes the group with vectored writes and, when the durability mode asks for it,
//! fsyncs once for the whole group (group commit). Completion sets each append's persistence
//! flag, then the commit step advances the high watermark.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, error};

use super::commit::{PendingAppend, Persistence};
use super::partition::PartitionLog;
use super::segment::AppendBatch;
use crate::config::Durability;

/// Most bytes written in one group before the writer completes it and starts the next.
const MAX_GROUP_BYTES: usize = 8 << 20;

pub enum WriterCommand {
    Append(WriteRequest),
    /// fsync everything written so far (data and indexes), then answer.
    Sync(oneshot::Sender<std::io::Result<()>>),
}

/// One produce request's batches for one partition, with their offsets already assigned.
pub struct WriteRequest {
    pub append: Arc<PendingAppend>,
    pub batches: Vec<AppendBatch>,
    /// Held until the bytes are written: bounds the memory queued for writers.
    pub permit: OwnedSemaphorePermit,
}

impl WriteRequest {
    fn bytes(&self) -> usize {
        self.batches.iter().map(|b| b.bytes.len()).sum()
    }
}

pub fn spawn(
    log: Arc<PartitionLog>,
    rx: mpsc::UnboundedReceiver<WriterCommand>,
    durability: Durability,
    flush_interval: Duration,
) -> JoinHandle<()> {
    tokio::spawn(run(log, rx, durability, flush_interval))
}

async fn run(
    log: Arc<PartitionLog>,
    mut rx: mpsc::UnboundedReceiver<WriterCommand>,
    durability: Durability,
    flush_interval: Duration,
) {
    let mut flush_tick = tokio::time::interval(flush_interval);
    flush_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Data written but not yet fsynced (page_cache mode only).
    let mut unsynced = false;
    loop {
        let first = tokio::select! {
            command = rx.recv() => match command {
                Some(command) => command,
                None => break,
            },
            _ = flush_tick.tick(), if unsynced => {
                let task_log = log.clone();
                let flushed = tokio::task::spawn_blocking(move || task_log.sync_active()).await;
                match flushed {
                    Ok(Ok(())) => unsynced = false,
                    Ok(Err(e)) => log.poison(&e),
                    Err(e) => log.poison(&std::io::Error::other(e.to_string())),
                }
                continue;
            }
        };
        let mut group = vec![first];
        let mut bytes = group_bytes(&group[0]);
        while bytes < MAX_GROUP_BYTES {
            match rx.try_recv() {
                Ok(command) => {
                    bytes += group_bytes(&command);
                    group.push(command);
                }
                Err(_) => break,
            }
        }
        let sync = durability == Durability::Fsync
            || group.iter().any(|c| matches!(c, WriterCommand::Sync(_)));
        let task_log = log.clone();
        let outcome =
            tokio::task::spawn_blocking(move || write_group(&task_log, group, sync)).await;
        match outcome {
            Ok(wrote) => unsynced = !sync && (unsynced || wrote),
            Err(e) => log.poison(&std::io::Error::other(e.to_string())),
        }
        log.commit();
    }
    // All senders are gone (shutdown or deletion): make what was written durable.
    let task_log = log.clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || task_log.sync_active()).await {
        log.poison(&e);
    }
    debug!(partition = %log.name(), "writer stopped");
}

fn group_bytes(command: &WriterCommand) -> usize {
    match command {
        WriterCommand::Append(request) => request.bytes(),
        WriterCommand::Sync(_) => 0,
    }
}

/// Writes one group (blocking I/O, on the blocking pool). Returns whether anything was written.
pub(crate) fn write_group(log: &PartitionLog, group: Vec<WriterCommand>, sync: bool) -> bool {
    let mut appends = Vec::new();
    let mut replies = Vec::new();
    for command in group {
        match command {
            WriterCommand::Append(request) => appends.push(request),
            WriterCommand::Sync(reply) => replies.push(reply),
        }
    }
    let result = if log.is_poisoned() {
        Err(std::io::Error::other(
            "partition is poisoned by an earlier write failure",
        ))
    } else {
        write_and_sync(log, &appends, sync)
    };
    let wrote = !appends.is_empty();
    match &result {
        Ok(()) => {}
        Err(e) => {
            log.poison(e);
            for request in &appends {
                request.append.fail();
            }
        }
    }
    for reply in replies {
        let answer = match &result {
            Ok(()) => Ok(()),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        };
        // The caller may have given up waiting; nothing to do then.
        let _ = reply.send(answer);
    }
    wrote && result.is_ok()
}

fn write_and_sync(log: &PartitionLog, appends: &[WriteRequest], sync: bool) -> std::io::Result<()> {
    let mut run: Vec<AppendBatch> = Vec::new();
    let mut run_bytes = 0u64;
    let mut active = log.active_segment()?;
    for request in appends {
        let request_bytes = request.bytes() as u64;
        let last_offset = request.append.next_offset - 1;
        if log.should_roll(&active, run_bytes + request_bytes, last_offset) {
            active.append(&run)?;
            run.clear();
            run_bytes = 0;
            let next = request.append.base_offset;
            active = log.roll(&active, next)?;
        }
        run.extend(request.batches.iter().cloned());
        run_bytes += request_bytes;
    }
    active.append(&run)?;
    for request in appends {
        request.append.mark(Persistence::Written);
    }
    if sync {
        active.sync_data().inspect_err(|e| {
            error!(partition = %log.name(), error = %e, "fsync failed");
        })?;
        for request in appends {
            request.append.mark(Persistence::Durable);
        }
    }
    Ok(())
}
