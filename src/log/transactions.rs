//! Transactions as one partition sees them: which producers have a transaction open here (from
//! their first transactional batch to their marker), the last stable offset (LSO) that follows
//! from it, and the index of aborted transactions that read_committed consumers need to drop
//! aborted records. Start-up rebuilds all of it from the batch headers and markers the
//! segment scan reads, so nothing here needs its own file.

use std::collections::{HashMap, VecDeque};

use super::control::ControlType;

/// The transaction coordinator's answer to "is this partition part of the producer's ongoing
/// transaction?" (KIP-890 verification), asked when a transaction's first batch arrives.
pub trait TxnVerifier: Send + Sync {
    fn verify(&self, producer_id: i64, producer_epoch: i16) -> bool;
}

/// A transaction that was aborted in this partition: its records lie in
/// `[first_offset, last_offset]`, `last_offset` being the abort marker's offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// What the segment scan saw of transactions, in offset order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnEvent {
    /// A producer's first transactional batch since its last marker (in that segment).
    Begin { producer_id: i64, offset: i64 },
    /// A marker.
    End {
        producer_id: i64,
        offset: i64,
        control: ControlType,
    },
}

#[derive(Debug, Clone, Copy)]
struct OpenTxn {
    first_offset: i64,
    /// The marker's offset once it is written: the transaction stays open for readers until
    /// the high watermark covers the marker.
    marker: Option<i64>,
}

#[derive(Debug, Default)]
pub struct PartitionTxns {
    open: HashMap<i64, OpenTxn>,
    /// Ordered by `last_offset` (markers are appended in offset order).
    aborted: VecDeque<AbortedTxn>,
}

impl PartitionTxns {
    /// Rebuilds the state from the scan's events (oldest segment first).
    pub fn replay(&mut self, events: impl IntoIterator<Item = TxnEvent>) {
        for event in events {
            match event {
                TxnEvent::Begin {
                    producer_id,
                    offset,
                } => self.on_data(producer_id, offset),
                TxnEvent::End {
                    producer_id,
                    offset,
                    control,
                } => self.on_marker(producer_id, offset, control),
            }
        }
    }

    /// Whether the producer's transaction is open here (its marker not written yet).
    pub fn is_open(&self, producer_id: i64) -> bool {
        self.open
            .get(&producer_id)
            .is_some_and(|t| t.marker.is_none())
    }

    /// The first offset of the producer's open transaction, if it has one here.
    pub fn first_offset(&self, producer_id: i64) -> Option<i64> {
        self.open
            .get(&producer_id)
            .filter(|t| t.marker.is_none())
            .map(|t| t.first_offset)
    }

    /// A transactional batch of `producer_id` was given `offset`.
    pub fn on_data(&mut self, producer_id: i64, offset: i64) {
        let entry = self.open.entry(producer_id).or_insert(OpenTxn {
            first_offset: offset,
            marker: None,
        });
        if entry.marker.is_some() {
            // The previous transaction's marker is written but not yet covered by the high
            // watermark; a new transaction starts here.
            *entry = OpenTxn {
                first_offset: offset,
                marker: None,
            };
        }
    }

    /// A marker for `producer_id` was given `offset`.
    pub fn on_marker(&mut self, producer_id: i64, offset: i64, control: ControlType) {
        let Some(txn) = self
            .open
            .get_mut(&producer_id)
            .filter(|t| t.marker.is_none())
        else {
            // Nothing of this transaction reached the partition: the marker ends nothing.
            return;
        };
        txn.marker = Some(offset);
        if control == ControlType::Abort {
            self.aborted.push_back(AbortedTxn {
                producer_id,
                first_offset: txn.first_offset,
                last_offset: offset,
            });
        }
    }

    /// The last stable offset: below the first offset of every transaction still open for
    /// readers, and never above the high watermark. Forgets transactions the high
    /// watermark has closed.
    pub fn last_stable_offset(&mut self, high_watermark: i64) -> i64 {
        self.open
            .retain(|_, t| t.marker.is_none_or(|marker| marker >= high_watermark));
        self.open
            .values()
            .map(|t| t.first_offset)
            .fold(high_watermark, i64::min)
    }

    /// Aborted transactions a read of `[from, to)` must tell the consumer about: those whose
    /// records overlap the range.
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted
            .range(start..)
            .filter(|a| a.first_offset < to)
            .copied()
            .collect()
    }

    /// Forgets aborted transactions that lie wholly before the log start (retention).
    pub fn trim(&mut self, log_start_offset: i64) {
        while self
            .aborted
            .front()
            .is_some_and(|a| a.last_offset < log_start_offset)
        {
            self.aborted.pop_front();
        }
    }

    /// Producers with a transaction open here and its first offset (DescribeProducers).
    pub fn open_transactions(&self) -> HashMap<i64, i64> {
        self.open
            .iter()
            .filter(|(_, t)| t.marker.is_none())
            .map(|(pid, t)| (*pid, t.first_offset))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lso_stops_at_the_oldest_open_transaction() {
        let mut txns = PartitionTxns::default();
        // Interleaved: producer 1 at 10, producer 2 at 12, non-transactional data between.
        txns.on_data(1, 10);
        txns.on_data(2, 12);
        txns.on_data(1, 14);
        assert_eq!(txns.last_stable_offset(20), 10);
        // Producer 1 commits at 20; until the high watermark covers the marker it stays open.
        txns.on_marker(1, 20, ControlType::Commit);
        assert_eq!(txns.last_stable_offset(20), 10);
        assert_eq!(txns.last_stable_offset(21), 12);
        // Producer 2 aborts at 21.
        txns.on_marker(2, 21, ControlType::Abort);
        assert_eq!(txns.last_stable_offset(22), 22);
        assert_eq!(
            txns.aborted_between(0, 22),
            vec![AbortedTxn {
                producer_id: 2,
                first_offset: 12,
                last_offset: 21
            }]
        );
        // A read that ends before the aborted transaction starts does not need it.
        assert!(txns.aborted_between(0, 12).is_empty());
        assert!(txns.aborted_between(22, 30).is_empty());
    }

    #[test]
    fn a_new_transaction_after_an_uncommitted_marker_starts_fresh() {
        let mut txns = PartitionTxns::default();
        txns.on_data(1, 0);
        txns.on_marker(1, 5, ControlType::Commit);
        txns.on_data(1, 6);
        assert_eq!(txns.first_offset(1), Some(6));
        assert_eq!(txns.last_stable_offset(10), 6);
    }

    #[test]
    fn markers_without_data_change_nothing() {
        let mut txns = PartitionTxns::default();
        txns.on_marker(7, 3, ControlType::Abort);
        assert_eq!(txns.last_stable_offset(4), 4);
        assert!(txns.aborted_between(0, 4).is_empty());
    }

    #[test]
    fn replay_and_trim() {
        let mut txns = PartitionTxns::default();
        txns.replay([
            TxnEvent::Begin {
                producer_id: 1,
                offset: 0,
            },
            TxnEvent::End {
                producer_id: 1,
                offset: 3,
                control: ControlType::Abort,
            },
            // The next segment's scan sees the producer again and begins anew.
            TxnEvent::Begin {
                producer_id: 1,
                offset: 4,
            },
            TxnEvent::Begin {
                producer_id: 1,
                offset: 6,
            },
        ]);
        assert_eq!(txns.last_stable_offset(8), 4);
        assert_eq!(txns.aborted_between(0, 8).len(), 1);
        txns.trim(4);
        assert!(txns.aborted_between(0, 8).is_empty());
    }
}
