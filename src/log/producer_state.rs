//! Idempotent producers' state in one partition (KIP-98): per producer id its epoch and the
//! sequence ranges of its last five batches. A retried batch is recognised and answered with
//! its original offsets instead of being written twice; a gap or a stale epoch is refused.
//! Start-up rebuilds the state from the batch headers the segment scan reads anyway, so
//! deduplication holds across a crash.

use std::collections::{HashMap, VecDeque};

use kafka_protocol::ResponseError;

use super::batch::BatchHeader;

/// Batches remembered per producer: a producer has at most five requests in flight.
pub const DEDUP_WINDOW: usize = 5;

/// One batch of an idempotent producer, with the offsets it was written at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
    /// Milliseconds; the producer's state expires this long after its last batch.
    pub timestamp_ms: i64,
}

impl ProducerBatch {
    /// The batch's producer identity, if it has one (producer id -1: not idempotent).
    pub fn from_header(header: &BatchHeader, base_offset: i64, timestamp_ms: i64) -> Option<Self> {
        if header.producer_id < 0 {
            return None;
        }
        let delta = header.last_offset_delta;
        Some(ProducerBatch {
            producer_id: header.producer_id,
            epoch: header.producer_epoch,
            first_seq: header.base_sequence,
            last_seq: add_sequence(header.base_sequence, delta),
            base_offset,
            last_offset: base_offset + i64::from(delta),
            timestamp_ms,
        })
    }
}

/// Sequences wrap from `i32::MAX` to 0, as Kafka's do.
pub fn add_sequence(sequence: i32, delta: i32) -> i32 {
    let sum = i64::from(sequence) + i64::from(delta);
    (sum % (i64::from(i32::MAX) + 1)) as i32
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error("producer epoch {got} is older than the current epoch {current}")]
    StaleEpoch { got: i16, current: i16 },
    #[error("out of order sequence number: expected {expected}, got {got}")]
    OutOfOrder { expected: i32, got: i32 },
    #[error(
        "unknown producer id {0}: no state for it (expired, or never seen) and sequence is not 0"
    )]
    UnknownProducer(i64),
    #[error("{0}")]
    InvalidTxnState(&'static str),
}

impl SequenceError {
    pub fn error_code(&self) -> i16 {
        match self {
            SequenceError::StaleEpoch { .. } => ResponseError::InvalidProducerEpoch.code(),
            SequenceError::OutOfOrder { .. } => ResponseError::OutOfOrderSequenceNumber.code(),
            SequenceError::UnknownProducer(_) => ResponseError::UnknownProducerId.code(),
            SequenceError::InvalidTxnState(_) => ResponseError::InvalidTxnState.code(),
        }
    }
}

/// One producer as operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp_ms: i64,
    /// First offset of its transaction open in the partition, or -1.
    pub current_txn_start_offset: i64,
}

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    Append,
    /// Already written: answer with these offsets and write nothing.
    Duplicate(ProducerBatch),
}

#[derive(Debug, Default, Clone)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<ProducerBatch>,
    last_timestamp_ms: i64,
}

/// One producer's stored state, as a segment summary keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedProducer {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_timestamp_ms: i64,
    /// Oldest first, at most `DEDUP_WINDOW`.
    pub batches: Vec<ProducerBatch>,
}

/// Every producer's state in one partition.
#[derive(Debug, Default, Clone)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStates {
    /// Checks a batch before offsets are assigned.
    pub fn check(
        &self,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
    ) -> Result<SequenceCheck, SequenceError> {
        let Some(entry) = self.producers.get(&producer_id) else {
            // A new producer starts at sequence 0; anything else means its state is gone and
            // it must reset (KIP-360), not that a gap may be written.
            return if first_seq == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(SequenceError::UnknownProducer(producer_id))
            };
        };
        if epoch < entry.epoch {
            return Err(SequenceError::StaleEpoch {
                got: epoch,
                current: entry.epoch,
            });
        }
        if epoch > entry.epoch {
            // A new epoch restarts the sequence.
            return if first_seq == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(SequenceError::OutOfOrder {
                    expected: 0,
                    got: first_seq,
                })
            };
        }
        if let Some(written) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
        {
            return Ok(SequenceCheck::Duplicate(*written));
        }
        let expected = entry
            .batches
            .back()
            .map_or(0, |last| add_sequence(last.last_seq, 1));
        if first_seq == expected {
            Ok(SequenceCheck::Append)
        } else {
            Err(SequenceError::OutOfOrder {
                expected,
                got: first_seq,
            })
        }
    }

    /// Records a written batch (appends and start-up replay, in offset order).
    pub fn record(&mut self, batch: ProducerBatch) {
        let entry = self.producers.entry(batch.producer_id).or_default();
        if batch.epoch != entry.epoch {
            entry.batches.clear();
            entry.epoch = batch.epoch;
        }
        entry.batches.push_back(batch);
        while entry.batches.len() > DEDUP_WINDOW {
            entry.batches.pop_front();
        }
        entry.last_timestamp_ms = entry.last_timestamp_ms.max(batch.timestamp_ms);
    }

    /// A transaction marker of the producer: a higher epoch (a coordinator fencing the
    /// producer) restarts its sequences; markers count as activity.
    pub fn record_marker(&mut self, producer_id: i64, epoch: i16, timestamp_ms: i64) {
        let entry = self.producers.entry(producer_id).or_default();
        if epoch > entry.epoch {
            entry.batches.clear();
            entry.epoch = epoch;
        }
        entry.last_timestamp_ms = entry.last_timestamp_ms.max(timestamp_ms);
    }

    /// Folds in the state of a later stretch of the log (the next segment at start-up).
    pub fn extend(&mut self, later: ProducerStates) {
        for (producer_id, later) in later.producers {
            let entry = self.producers.entry(producer_id).or_default();
            if later.epoch != entry.epoch {
                entry.batches.clear();
                entry.epoch = later.epoch;
            }
            entry.batches.extend(later.batches);
            while entry.batches.len() > DEDUP_WINDOW {
                entry.batches.pop_front();
            }
            entry.last_timestamp_ms = entry.last_timestamp_ms.max(later.last_timestamp_ms);
        }
    }

    /// The producer's current epoch, if it is known here.
    pub fn epoch(&self, producer_id: i64) -> Option<i16> {
        self.producers.get(&producer_id).map(|e| e.epoch)
    }

    /// Drops producers whose last batch is older than `cutoff_ms` (Kafka's
    /// `producer.id.expiration.ms`); returns how many.
    pub fn expire(&mut self, cutoff_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| e.last_timestamp_ms >= cutoff_ms);
        before - self.producers.len()
    }

    /// Every known producer, by id: what DescribeProducers shows.
    pub fn active(&self) -> Vec<ActiveProducer> {
        let mut producers: Vec<ActiveProducer> = self
            .producers
            .iter()
            .filter_map(|(id, entry)| {
                entry.batches.back().map(|last| ActiveProducer {
                    producer_id: *id,
                    epoch: entry.epoch,
                    last_sequence: last.last_seq,
                    last_timestamp_ms: entry.last_timestamp_ms,
                    current_txn_start_offset: -1,
                })
            })
            .collect();
        producers.sort_by_key(|p| p.producer_id);
        producers
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// The whole state, by producer id (what a segment summary stores).
    pub fn save(&self) -> Vec<SavedProducer> {
        let mut saved: Vec<SavedProducer> = self
            .producers
            .iter()
            .map(|(id, entry)| SavedProducer {
                producer_id: *id,
                epoch: entry.epoch,
                last_timestamp_ms: entry.last_timestamp_ms,
                batches: entry.batches.iter().copied().collect(),
            })
            .collect();
        saved.sort_by_key(|p| p.producer_id);
        saved
    }

    /// The inverse of `save`.
    pub fn restore(saved: Vec<SavedProducer>) -> ProducerStates {
        let producers = saved
            .into_iter()
            .map(|p| {
                let mut batches: VecDeque<ProducerBatch> = p.batches.into();
                while batches.len() > DEDUP_WINDOW {
                    batches.pop_front();
                }
                let entry = ProducerEntry {
                    epoch: p.epoch,
                    batches,
                    last_timestamp_ms: p.last_timestamp_ms,
                };
                (p.producer_id, entry)
            })
            .collect();
        ProducerStates { producers }
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(epoch: i16, first: i32, count: i32, base_offset: i64) -> ProducerBatch {
        ProducerBatch {
            producer_id: 7,
            epoch,
            first_seq: first,
            last_seq: add_sequence(first, count - 1),
            base_offset,
            last_offset: base_offset + i64::from(count) - 1,
            timestamp_ms: 1_000,
        }
    }

    #[test]
    fn sequences_must_follow_on_and_retries_are_recognised() {
        let mut states = ProducerStates::default();
        assert_eq!(states.check(7, 0, 0, 9), Ok(SequenceCheck::Append));
        states.record(batch(0, 0, 10, 100));
        assert_eq!(states.check(7, 0, 10, 19), Ok(SequenceCheck::Append));
        states.record(batch(0, 10, 10, 110));
        // A retry of the first batch gets its original offsets back.
        assert_eq!(
            states.check(7, 0, 0, 9),
            Ok(SequenceCheck::Duplicate(batch(0, 0, 10, 100)))
        );
        // A gap, and a replay that does not match a remembered batch, are refused.
        assert_eq!(
            states.check(7, 0, 25, 30),
            Err(SequenceError::OutOfOrder {
                expected: 20,
                got: 25
            })
        );
        assert!(matches!(
            states.check(7, 0, 5, 9),
            Err(SequenceError::OutOfOrder { .. })
        ));
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut states = ProducerStates::default();
        for i in 0..7 {
            states.record(batch(0, i * 2, 2, i64::from(i) * 2));
        }
        assert!(matches!(
            states.check(7, 0, 4, 5),
            Ok(SequenceCheck::Duplicate(_))
        ));
        // Batch 1 (sequences 2-3) fell out of the window.
        assert!(matches!(
            states.check(7, 0, 2, 3),
            Err(SequenceError::OutOfOrder { .. })
        ));
    }

    #[test]
    fn epochs_fence_and_restart_sequences() {
        let mut states = ProducerStates::default();
        states.record(batch(3, 0, 5, 0));
        assert_eq!(
            states.check(7, 2, 5, 5),
            Err(SequenceError::StaleEpoch { got: 2, current: 3 })
        );
        assert_eq!(states.check(7, 4, 0, 0), Ok(SequenceCheck::Append));
        assert!(matches!(
            states.check(7, 4, 5, 5),
            Err(SequenceError::OutOfOrder { expected: 0, .. })
        ));
        assert_eq!(
            states.check(8, 0, 12, 12),
            Err(SequenceError::UnknownProducer(8))
        );
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        assert_eq!(add_sequence(i32::MAX, 1), 0);
        assert_eq!(add_sequence(i32::MAX - 1, 3), 1);
        let mut states = ProducerStates::default();
        states.record(batch(0, i32::MAX - 1, 2, 0));
        assert_eq!(states.check(7, 0, 0, 4), Ok(SequenceCheck::Append));
    }

    #[test]
    fn idle_producers_expire() {
        let mut states = ProducerStates::default();
        states.record(batch(0, 0, 1, 0));
        assert_eq!(states.expire(500), 0);
        assert_eq!(
            states.active(),
            vec![ActiveProducer {
                producer_id: 7,
                epoch: 0,
                last_sequence: 0,
                last_timestamp_ms: 1_000,
                current_txn_start_offset: -1,
            }]
        );
        assert_eq!(states.expire(2_000), 1);
        assert!(states.is_empty());
    }
}
