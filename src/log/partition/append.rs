//! The write side of a partition: offsets assigned in order under the sequencer lock, the
//! idempotence and transaction checks made under that same lock, transaction markers, and
//! the hand-off to the writer (or the inline write of `page_cache` mode).

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use super::{Appended, LEADER_EPOCH, Partition, Sequencer};
use crate::config::{Durability, TimestampType, WritePath};
use crate::log::batch::{ValidatedBatch, patched_prefix, verify_batch, with_log_append_time};
use crate::log::commit::PendingAppend;
use crate::log::control::{ControlType, marker_batch};
use crate::log::producer_state::{ProducerBatch, SequenceCheck, SequenceError, add_sequence};
use crate::log::segment::AppendBatch;
use crate::log::transactions::TxnVerifier;
use crate::log::writer::{self, WriteRequest, WriterCommand};
use crate::log::{LogError, now_ms};

impl Partition {
    /// Assigns offsets to validated batches and queues them for the writer. The returned
    /// append resolves as the writer persists it. Batches of idempotent producers are checked
    /// against their sequences first, under the same lock that assigns offsets; a
    /// transaction's first batch here must be confirmed by `verifier` (the transaction
    /// coordinator), asked under that lock so that no batch can slip in after a marker.
    pub async fn append(
        &self,
        batches: Vec<ValidatedBatch>,
        verifier: Option<&dyn TxnVerifier>,
    ) -> Result<Appended, LogError> {
        let bytes: usize = batches.iter().map(|b| b.bytes.len()).sum();
        let permit = self.write_permit(bytes).await?;
        let config = self.config();
        let log_append_time = match config.message_timestamp_type {
            TimestampType::LogAppendTime => now_ms(),
            TimestampType::CreateTime => -1,
        };
        let mut sequencer = self.sequencer();
        if sequencer.writer.is_none() {
            return Err(LogError::Closed);
        }
        for batch in &batches {
            let header = &batch.header;
            if header.producer_id < 0 {
                if header.is_transactional() {
                    return Err(SequenceError::InvalidTxnState(
                        "a transactional batch needs a producer id",
                    )
                    .into());
                }
                continue;
            }
            // Sequence and epoch first: a fenced producer hears that it is fenced, and a
            // retry is answered with its original offsets even after its marker.
            let last_seq = add_sequence(header.base_sequence, header.last_offset_delta);
            let check = sequencer.producers.check(
                header.producer_id,
                header.producer_epoch,
                header.base_sequence,
                last_seq,
            )?;
            if let SequenceCheck::Duplicate(written) = check {
                return Ok(Appended::Duplicate {
                    base_offset: written.base_offset,
                    last_offset: written.last_offset,
                });
            }
            let open = sequencer.txns.is_open(header.producer_id);
            if header.is_transactional() && !open {
                let verified =
                    verifier.is_some_and(|v| v.verify(header.producer_id, header.producer_epoch));
                if !verified {
                    return Err(SequenceError::InvalidTxnState(
                        "the partition is not part of the producer's ongoing transaction",
                    )
                    .into());
                }
            } else if !header.is_transactional() && open {
                return Err(SequenceError::InvalidTxnState(
                    "a non-transactional batch from a producer with an open transaction",
                )
                .into());
            }
        }
        let base_offset = sequencer.next_offset;
        let mut next = base_offset;
        let mut planned = Vec::with_capacity(batches.len());
        for batch in batches {
            let bytes = if log_append_time >= 0 {
                with_log_append_time(&batch.bytes, log_append_time)
            } else {
                batch.bytes
            };
            let count = batch.header.record_count as i64;
            let max_timestamp = if log_append_time >= 0 {
                log_append_time
            } else {
                batch.header.max_timestamp
            };
            if let Some(producer) = ProducerBatch::from_header(&batch.header, next, now_ms()) {
                sequencer.producers.record(producer);
                if batch.header.is_transactional() {
                    sequencer.txns.on_data(producer.producer_id, next);
                }
            }
            planned.push(AppendBatch {
                prefix: patched_prefix(&bytes, next, LEADER_EPOCH),
                bytes,
                base_offset: next,
                last_offset: next + count - 1,
                max_timestamp,
            });
            next += count;
        }
        let append = self.queue(&mut sequencer, planned, base_offset, next, permit)?;
        Ok(Appended::New {
            append,
            log_append_time,
        })
    }

    /// Appends a transaction marker for the producer (the coordinator's EndTxn). Resolves
    /// as the writer persists it; the transaction counts as open for readers until the high
    /// watermark covers the marker.
    pub async fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        control: ControlType,
        coordinator_epoch: i32,
    ) -> Result<Arc<PendingAppend>, LogError> {
        let now = now_ms();
        let invalid = |e: crate::log::batch::BatchError| LogError::Io {
            context: format!("encoding a transaction marker for {}", self.log.name),
            source: std::io::Error::other(e.to_string()),
        };
        let bytes = marker_batch(producer_id, producer_epoch, control, coordinator_epoch, now)
            .map_err(invalid)?;
        verify_batch(&bytes).map_err(invalid)?;
        let permit = self.write_permit(bytes.len()).await?;
        let mut sequencer = self.sequencer();
        if sequencer.writer.is_none() {
            return Err(LogError::Closed);
        }
        let offset = sequencer.next_offset;
        sequencer.txns.on_marker(producer_id, offset, control);
        sequencer
            .producers
            .record_marker(producer_id, producer_epoch, now);
        let planned = vec![AppendBatch {
            prefix: patched_prefix(&bytes, offset, LEADER_EPOCH),
            bytes,
            base_offset: offset,
            last_offset: offset,
            max_timestamp: now,
        }];
        self.queue(&mut sequencer, planned, offset, offset + 1, permit)
    }

    /// Waits for room in the write queue's byte budget.
    async fn write_permit(&self, bytes: usize) -> Result<OwnedSemaphorePermit, LogError> {
        if self.log.is_poisoned() {
            return Err(LogError::Poisoned);
        }
        let wanted = bytes.clamp(1, self.options.write_budget_bytes) as u32;
        self.options
            .write_budget
            .clone()
            .acquire_many_owned(wanted)
            .await
            .map_err(|_| LogError::Closed)
    }

    /// Registers planned batches (offsets `base_offset..next`) with the commit queue and
    /// hands them to the writer; called with the sequencer locked, so offsets stay in order.
    fn queue(
        &self,
        sequencer: &mut Sequencer,
        batches: Vec<AppendBatch>,
        base_offset: i64,
        next: i64,
        permit: OwnedSemaphorePermit,
    ) -> Result<Arc<PendingAppend>, LogError> {
        let Some(writer) = sequencer.writer.clone() else {
            return Err(LogError::Closed);
        };
        let append = PendingAppend::new(base_offset, next);
        self.log.commit.register(append.clone());
        let request = WriteRequest {
            append: append.clone(),
            batches,
            permit,
        };
        let fsync = self.options.durability == Durability::Fsync;
        let inline = if fsync {
            self.options.write_path == WritePath::Inline
        } else {
            !self.options.page_cache_via_writer
        };
        if inline {
            // page_cache mode writes into the page cache right here and leaves the flush to
            // the writer thread (no thread hop before the acknowledgement). In fsync mode this
            // is the `inline` benchmark baseline: write and fsync while holding the partition.
            writer::write_inline(&self.log, request, fsync);
            sequencer.next_offset = next;
            if !fsync && self.log.mark_dirty() {
                // The writer thread is only gone at shutdown, when `close` syncs anyway.
                let _ = writer.send(&self.log, WriterCommand::Dirty);
            }
            return Ok(append);
        }
        if writer
            .send(&self.log, WriterCommand::Append(request))
            .is_err()
        {
            append.fail();
            return Err(LogError::Closed);
        }
        sequencer.next_offset = next;
        Ok(append)
    }
}
