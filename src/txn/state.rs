//! One transactional id's state as the coordinator keeps it and its log stores it, and the
//! checks every transaction request makes against it.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};

/// Kafka's transaction states (the names DescribeTransactions and ListTransactions use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    pub const ALL: [TxnState; 6] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Markers are being written: the outcome is decided but not yet in every partition.
    pub fn is_preparing(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// An offset committed inside a transaction, applied to the group only if it commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMetadata {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump: a retried InitProducerId (KIP-360) that presents it
    /// gets the current epoch back instead of being fenced.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// Partitions the ongoing transaction has written to (or will): they get its markers.
    pub partitions: BTreeSet<(String, i32)>,
    /// Groups added with AddOffsetsToTxn, with the offsets committed for them so far.
    pub groups: BTreeMap<String, Vec<PendingOffset>>,
    pub start_ms: i64,
    pub last_update_ms: i64,
}

impl TxnMetadata {
    pub fn new(producer_id: i64, timeout_ms: i32, now_ms: i64) -> TxnMetadata {
        TxnMetadata {
            producer_id,
            producer_epoch: 0,
            last_producer_epoch: -1,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            groups: BTreeMap::new(),
            start_ms: -1,
            last_update_ms: now_ms,
        }
    }

    /// Checks the producer id and epoch a request presents.
    pub fn check_producer(&self, producer_id: i64, epoch: i16) -> Result<(), ResponseError> {
        if producer_id != self.producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if epoch != self.producer_epoch {
            return Err(ResponseError::ProducerFenced);
        }
        Ok(())
    }

    /// Starts a transaction if none is ongoing (the first AddPartitions / AddOffsets).
    pub fn begin(&mut self, now_ms: i64) -> Result<(), ResponseError> {
        match self.state {
            TxnState::Ongoing => {}
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                self.state = TxnState::Ongoing;
                self.start_ms = now_ms;
                self.partitions.clear();
                self.groups.clear();
            }
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                return Err(ResponseError::ConcurrentTransactions);
            }
        }
        self.last_update_ms = now_ms;
        Ok(())
    }

    /// Raises the epoch (a new producer instance, or fencing an abandoned transaction).
    /// Returns false when the epoch is exhausted and the id needs a new producer id.
    pub fn bump_epoch(&mut self) -> bool {
        if self.producer_epoch >= i16::MAX - 1 {
            return false;
        }
        self.last_producer_epoch = self.producer_epoch;
        self.producer_epoch += 1;
        true
    }

    /// Whether the transaction ran longer than its timeout.
    pub fn timed_out(&self, now_ms: i64) -> bool {
        self.state == TxnState::Ongoing && now_ms - self.start_ms > i64::from(self.timeout_ms)
    }
}

/// Old request versions know INVALID_PRODUCER_EPOCH, not PRODUCER_FENCED (KIP-588): the
/// versions below `first_fenced_version` get the older code.
pub fn fenced_for_version(
    error: ResponseError,
    version: i16,
    first_fenced_version: i16,
) -> ResponseError {
    if error == ResponseError::ProducerFenced && version < first_fenced_version {
        ResponseError::InvalidProducerEpoch
    } else {
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_checks_and_epochs() {
        let mut meta = TxnMetadata::new(7, 60_000, 0);
        assert_eq!(meta.check_producer(7, 0), Ok(()));
        assert_eq!(
            meta.check_producer(8, 0),
            Err(ResponseError::InvalidProducerIdMapping)
        );
        assert!(meta.bump_epoch());
        assert_eq!(
            meta.check_producer(7, 0),
            Err(ResponseError::ProducerFenced)
        );
        assert_eq!((meta.producer_epoch, meta.last_producer_epoch), (1, 0));
        meta.producer_epoch = i16::MAX - 1;
        assert!(!meta.bump_epoch());
        assert_eq!(
            fenced_for_version(ResponseError::ProducerFenced, 1, 2),
            ResponseError::InvalidProducerEpoch
        );
        assert_eq!(
            fenced_for_version(ResponseError::ProducerFenced, 2, 2),
            ResponseError::ProducerFenced
        );
    }

    #[test]
    fn begin_and_timeout() {
        let mut meta = TxnMetadata::new(1, 1_000, 0);
        meta.begin(100).unwrap();
        assert_eq!(meta.state, TxnState::Ongoing);
        assert!(!meta.timed_out(1_100));
        assert!(meta.timed_out(1_101));
        meta.state = TxnState::PrepareCommit;
        assert_eq!(
            meta.begin(2_000),
            Err(ResponseError::ConcurrentTransactions)
        );
        assert_eq!(
            TxnState::from_name("CompleteAbort"),
            Some(TxnState::CompleteAbort)
        );
        assert_eq!(TxnState::from_name("Dead"), None);
    }

    #[test]
    fn metadata_round_trips_as_json() {
        let mut meta = TxnMetadata::new(3, 5_000, 10);
        meta.partitions.insert(("t".into(), 2));
        meta.groups.insert(
            "g".into(),
            vec![PendingOffset {
                topic: "t".into(),
                partition: 2,
                offset: 9,
                leader_epoch: -1,
                metadata: None,
            }],
        );
        let json = serde_json::to_vec(&meta).unwrap();
        assert_eq!(serde_json::from_slice::<TxnMetadata>(&json).unwrap(), meta);
    }
}
