//! The transaction coordinator (KIP-98): maps transactional ids to producer ids and epochs,
//! tracks each ongoing transaction's partitions and offsets, and ends it by writing markers
//! to every partition and the transaction's offsets to the group's committed offsets.
//!
//! Every state change is written to the internal log `__weir_meta/transaction-state-0`
//! (committed, so fsynced in `fsync` mode) before it is acknowledged; start-up replays the
//! log and finishes transactions that were between their decision and their markers. One
//! async lock per transactional id serialises its requests; what produce verification needs
//! sits behind a short synchronous lock, so a partition can ask under its append lock.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use kafka_protocol::ResponseError;
use tracing::{info, warn};

use super::log::{TxnLog, TxnLogError};
use super::pending::PendingOffsets;
use super::state::{PendingOffset, TxnMetadata, TxnState};
use crate::group::GroupCoordinator;
use crate::group::messages::CommitIdentity;
use crate::group::offset_log::{OffsetKey, OffsetValue};
use crate::log::commit::AckLevel;
use crate::log::control::ControlType;
use crate::log::internal_log::{InternalLog, InternalLogError};
use crate::log::manager::LogManager;
use crate::log::now_ms;
use crate::log::transactions::TxnVerifier;
use crate::metadata::ProducerIdAllocator;

mod expiry;

/// Single node: the coordinator epoch never changes.
const COORDINATOR_EPOCH: i32 = 0;

#[derive(Debug, Clone)]
pub struct TxnLimits {
    pub max_timeout_ms: i32,
    /// Idle transactional ids are forgotten after this long (`transactional.id.expiration.ms`).
    pub id_expiration_ms: i64,
    /// The log is rewritten once it holds this many bytes more than its live state.
    pub log_segment_bytes: u64,
}

/// One transactional id.
#[derive(Debug, Default)]
struct TxnEntry {
    /// Held for the whole of a request (across its log writes): one request at a time.
    op: tokio::sync::Mutex<()>,
    /// The current state, replaced after every change; never held across an await.
    meta: Mutex<Option<TxnMetadata>>,
}

impl TxnEntry {
    fn get(&self) -> Option<TxnMetadata> {
        self.meta.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, meta: Option<TxnMetadata>) {
        *self.meta.lock().unwrap_or_else(|e| e.into_inner()) = meta;
    }
}

/// A transaction as operators see it (DescribeTransactions / ListTransactions).
#[derive(Debug, Clone)]
pub struct TxnDescription {
    pub transactional_id: String,
    pub meta: TxnMetadata,
}

pub struct TransactionCoordinator {
    entries: DashMap<String, Arc<TxnEntry>>,
    log: TxnLog,
    producer_ids: Arc<ProducerIdAllocator>,
    logs: Arc<LogManager>,
    groups: Arc<GroupCoordinator>,
    limits: TxnLimits,
    pending: PendingOffsets,
}

impl TransactionCoordinator {
    /// Replays the transaction log. Transactions caught between decision and markers are
    /// finished by `recover`, once the broker serves.
    pub async fn open(
        log: InternalLog,
        producer_ids: Arc<ProducerIdAllocator>,
        logs: Arc<LogManager>,
        groups: Arc<GroupCoordinator>,
        limits: TxnLimits,
    ) -> Result<Arc<TransactionCoordinator>, TxnLogError> {
        let (log, state) = TxnLog::open(log, limits.log_segment_bytes).await?;
        let coordinator = TransactionCoordinator {
            entries: DashMap::new(),
            log,
            producer_ids,
            logs,
            groups,
            limits,
            pending: PendingOffsets::default(),
        };
        for (id, meta) in state {
            coordinator.pending.track(&meta, true);
            let entry = Arc::new(TxnEntry::default());
            entry.set(Some(meta));
            coordinator.entries.insert(id, entry);
        }
        info!(
            transactional_ids = coordinator.entries.len(),
            "replayed transaction state"
        );
        Ok(Arc::new(coordinator))
    }

    /// Finishes transactions whose outcome was decided before a crash.
    pub async fn recover(self: &Arc<Self>) {
        let preparing: Vec<String> = self
            .entries
            .iter()
            .filter(|e| e.value().get().is_some_and(|m| m.state.is_preparing()))
            .map(|e| e.key().clone())
            .collect();
        for id in preparing {
            let entry = self.entry(&id);
            let _op = entry.op.lock().await;
            if let Some(meta) = entry.get().filter(|m| m.state.is_preparing()) {
                let commit = meta.state == TxnState::PrepareCommit;
                match self
                    .write_markers_and_complete(&id, &entry, meta, commit)
                    .await
                {
                    Ok(()) => {
                        info!(transactional_id = %id, commit, "finished a transaction after restart")
                    }
                    Err(e) => {
                        warn!(transactional_id = %id, error = ?e, "cannot finish a transaction after restart")
                    }
                }
            }
        }
    }

    /// An id's entry, for requests that need it to exist: an unknown id must not make one
    /// (or any client could fill the map with ids).
    fn existing(&self, id: &str) -> Result<Arc<TxnEntry>, ResponseError> {
        self.entries
            .get(id)
            .map(|e| e.clone())
            .ok_or(ResponseError::InvalidProducerIdMapping)
    }

    fn entry(&self, id: &str) -> Arc<TxnEntry> {
        if let Some(entry) = self.entries.get(id) {
            return entry.clone();
        }
        self.entries.entry(id.to_string()).or_default().clone()
    }

    /// InitProducerId for a transactional id: a producer id and a new epoch, fencing any
    /// earlier producer instance and aborting its unfinished transaction.
    pub async fn init_producer(
        &self,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), ResponseError> {
        if timeout_ms <= 0 || timeout_ms > self.limits.max_timeout_ms {
            return Err(ResponseError::InvalidTransactionTimeout);
        }
        let entry = self.entry(id);
        let _op = entry.op.lock().await;
        let now = now_ms();
        let mut meta = match entry.get() {
            None => {
                if expected.is_some() {
                    return Err(ResponseError::InvalidProducerIdMapping);
                }
                let producer_id = self.allocate_producer_id().await?;
                let meta = TxnMetadata::new(producer_id, timeout_ms, now);
                self.persist(id, &entry, meta.clone()).await?;
                return Ok((meta.producer_id, meta.producer_epoch));
            }
            Some(meta) => meta,
        };
        if let Some((producer_id, epoch)) = expected {
            if producer_id == meta.producer_id
                && epoch == meta.last_producer_epoch
                && meta.state == TxnState::Empty
            {
                // A retry of the bump that produced the current epoch.
                return Ok((meta.producer_id, meta.producer_epoch));
            }
            meta.check_producer(producer_id, epoch)?;
        }
        match meta.state {
            TxnState::Ongoing => {
                // Fence the old instance with a higher epoch on the abort markers (an
                // exhausted epoch aborts at the current one; the new producer id below then
                // leaves the old instance nothing to write with).
                meta.bump_epoch();
                meta = self.end(id, &entry, meta, false).await?;
            }
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                let commit = meta.state == TxnState::PrepareCommit;
                self.write_markers_and_complete(id, &entry, meta, commit)
                    .await?;
                meta = entry.get().ok_or(ResponseError::UnknownServerError)?;
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {}
        }
        if !meta.bump_epoch() {
            meta.producer_id = self.allocate_producer_id().await?;
            meta.producer_epoch = 0;
            meta.last_producer_epoch = -1;
        }
        meta.timeout_ms = timeout_ms;
        meta.state = TxnState::Empty;
        meta.partitions.clear();
        meta.groups.clear();
        meta.start_ms = -1;
        meta.last_update_ms = now;
        self.persist(id, &entry, meta.clone()).await?;
        Ok((meta.producer_id, meta.producer_epoch))
    }

    /// AddPartitionsToTxn: the partitions join the ongoing transaction (starting one).
    pub async fn add_partitions(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<(), ResponseError> {
        self.update(id, producer_id, epoch, |meta| {
            let added = partitions.iter().any(|p| !meta.partitions.contains(p));
            if meta.state == TxnState::Ongoing && !added {
                return Ok(false);
            }
            meta.begin(now_ms())?;
            meta.partitions.extend(partitions.iter().cloned());
            Ok(true)
        })
        .await
    }

    /// Whether the partition is part of the producer's ongoing transaction (produce
    /// verification, and AddPartitionsToTxn v4+ `verify_only`).
    pub fn is_in_transaction(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partition: &(String, i32),
    ) -> bool {
        self.entries.get(id).is_some_and(|entry| {
            entry.get().is_some_and(|m| {
                m.producer_id == producer_id
                    && m.producer_epoch == epoch
                    && m.state == TxnState::Ongoing
                    && m.partitions.contains(partition)
            })
        })
    }

    /// AddOffsetsToTxn: the group's offsets will be committed with the transaction.
    pub async fn add_offsets(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
    ) -> Result<(), ResponseError> {
        if group.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        self.update(id, producer_id, epoch, |meta| {
            if meta.state == TxnState::Ongoing && meta.groups.contains_key(group) {
                return Ok(false);
            }
            meta.begin(now_ms())?;
            meta.groups.entry(group.to_string()).or_default();
            Ok(true)
        })
        .await
    }

    /// TxnOffsetCommit: offsets that become the group's committed offsets if the
    /// transaction commits. The committing member is checked against the group first.
    pub async fn commit_offsets(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
        identity: CommitIdentity,
        offsets: Vec<PendingOffset>,
    ) -> Result<(), ResponseError> {
        self.groups.validate_commit(group, identity).await?;
        let mut added = Vec::new();
        self.update(id, producer_id, epoch, |meta| {
            if meta.state != TxnState::Ongoing {
                return Err(ResponseError::InvalidTxnState);
            }
            let Some(pending) = meta.groups.get_mut(group) else {
                // AddOffsetsToTxn must come first, or the offsets would never be applied.
                return Err(ResponseError::InvalidTxnState);
            };
            for offset in &offsets {
                match pending
                    .iter_mut()
                    .find(|p| p.topic == offset.topic && p.partition == offset.partition)
                {
                    Some(existing) => *existing = offset.clone(),
                    None => {
                        added.push((offset.topic.clone(), offset.partition));
                        pending.push(offset.clone());
                    }
                }
            }
            meta.last_update_ms = now_ms();
            Ok(true)
        })
        .await?;
        self.pending.adjust(group, &added, true);
        Ok(())
    }

    /// EndTxn: commits or aborts the ongoing transaction. A retry of an EndTxn that already
    /// took effect succeeds.
    pub async fn end_transaction(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), ResponseError> {
        let entry = self.existing(id)?;
        let _op = entry.op.lock().await;
        let meta = entry.get().ok_or(ResponseError::InvalidProducerIdMapping)?;
        meta.check_producer(producer_id, epoch)?;
        match (meta.state, commit) {
            (TxnState::Ongoing, _) => self.end(id, &entry, meta, commit).await.map(|_| ()),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                self.write_markers_and_complete(id, &entry, meta, commit)
                    .await
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(()),
            _ => Err(ResponseError::InvalidTxnState),
        }
    }

    /// A transaction that is known, as operators see it.
    pub fn describe(&self, id: &str) -> Option<TxnDescription> {
        let meta = self.entries.get(id)?.get()?;
        Some(TxnDescription {
            transactional_id: id.to_string(),
            meta,
        })
    }

    /// Every known transactional id.
    pub fn list(&self) -> Vec<TxnDescription> {
        let mut all: Vec<TxnDescription> = self
            .entries
            .iter()
            .filter_map(|e| {
                e.value().get().map(|meta| TxnDescription {
                    transactional_id: e.key().clone(),
                    meta,
                })
            })
            .collect();
        all.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        all
    }

    /// Partitions of `group` with transactional offsets not yet committed or aborted.
    pub fn pending_offsets(&self, group: &str) -> HashSet<(String, i32)> {
        self.pending.of_group(group)
    }

    /// What a produce request's partition asks before it takes a transaction's first batch.
    pub fn verifier(
        self: &Arc<Self>,
        id: Option<&str>,
        topic: &str,
        partition: i32,
    ) -> ProduceVerifier {
        ProduceVerifier {
            coordinator: self.clone(),
            transactional_id: id.map(str::to_string),
            partition: (topic.to_string(), partition),
        }
    }

    /// Runs one change under the id's lock: `change` returns whether anything changed (and
    /// must be written) or the error to answer.
    async fn update(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        change: impl FnOnce(&mut TxnMetadata) -> Result<bool, ResponseError>,
    ) -> Result<(), ResponseError> {
        let entry = self.existing(id)?;
        let _op = entry.op.lock().await;
        let mut meta = entry.get().ok_or(ResponseError::InvalidProducerIdMapping)?;
        meta.check_producer(producer_id, epoch)?;
        if meta.state.is_preparing() {
            return Err(ResponseError::ConcurrentTransactions);
        }
        if change(&mut meta)? {
            self.persist(id, &entry, meta).await?;
        }
        Ok(())
    }

    /// Decides the outcome (PrepareCommit / PrepareAbort, durable), then writes the markers
    /// and completes. Returns the completed state.
    async fn end(
        &self,
        id: &str,
        entry: &TxnEntry,
        mut meta: TxnMetadata,
        commit: bool,
    ) -> Result<TxnMetadata, ResponseError> {
        meta.state = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        meta.last_update_ms = now_ms();
        // Shown before it is written: from here on no partition takes a new batch of this
        // transaction, so none can land after its marker.
        entry.set(Some(meta.clone()));
        self.persist(id, entry, meta.clone()).await?;
        self.write_markers_and_complete(id, entry, meta, commit)
            .await?;
        entry.get().ok_or(ResponseError::UnknownServerError)
    }

    /// Writes a marker to every partition of the transaction and waits until all are
    /// committed; on commit, applies the transaction's offsets; then records the completion.
    async fn write_markers_and_complete(
        &self,
        id: &str,
        entry: &TxnEntry,
        mut meta: TxnMetadata,
        commit: bool,
    ) -> Result<(), ResponseError> {
        let control = ControlType::from_commit(commit);
        let mut appends = Vec::with_capacity(meta.partitions.len());
        for (topic, index) in &meta.partitions {
            // A topic deleted since it joined the transaction needs no marker.
            let Some(partition) = self.logs.topic(topic).and_then(|t| t.partition(*index)) else {
                continue;
            };
            let append = partition
                .append_marker(
                    meta.producer_id,
                    meta.producer_epoch,
                    control,
                    COORDINATOR_EPOCH,
                )
                .await
                .map_err(|e| {
                    warn!(transactional_id = %id, topic, partition = index, error = %e,
                        "cannot write a transaction marker");
                    ResponseError::CoordinatorNotAvailable
                })?;
            appends.push(append);
        }
        for append in appends {
            append
                .wait(AckLevel::Committed)
                .await
                .map_err(|_| ResponseError::CoordinatorNotAvailable)?;
        }
        if commit {
            let now = now_ms();
            for (group, offsets) in &meta.groups {
                let entries: Vec<(OffsetKey, Option<OffsetValue>)> = offsets
                    .iter()
                    .map(|o| {
                        let key = OffsetKey {
                            group: group.clone(),
                            topic: o.topic.clone(),
                            partition: o.partition,
                        };
                        let value = OffsetValue {
                            offset: o.offset,
                            leader_epoch: o.leader_epoch,
                            metadata: o.metadata.clone(),
                            commit_timestamp: now,
                        };
                        (key, Some(value))
                    })
                    .collect();
                self.groups
                    .offsets()
                    .write(entries)
                    .await
                    .map_err(|e| e.response_error())?;
            }
        }
        self.pending.track(&meta, false);
        meta.state = if commit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        meta.partitions.clear();
        meta.groups.clear();
        meta.last_update_ms = now_ms();
        self.persist(id, entry, meta).await
    }

    /// Writes the id's new state to the log (waiting until committed), then shows it.
    async fn persist(
        &self,
        id: &str,
        entry: &TxnEntry,
        meta: TxnMetadata,
    ) -> Result<(), ResponseError> {
        self.log
            .write(id, Some(&meta))
            .await
            .map_err(|e| storage_failure(id, &e))?;
        entry.set(Some(meta));
        Ok(())
    }

    async fn allocate_producer_id(&self) -> Result<i64, ResponseError> {
        let allocator = self.producer_ids.clone();
        match tokio::task::spawn_blocking(move || allocator.allocate()).await {
            Ok(Ok(id)) => Ok(id),
            Ok(Err(e)) => {
                warn!(error = %e, "cannot reserve producer ids");
                Err(ResponseError::KafkaStorageError)
            }
            Err(_) => Err(ResponseError::UnknownServerError),
        }
    }
}

/// Produce verification (KIP-890): asked by a partition, under its append lock, before it
/// takes the first batch of a producer's transaction.
pub struct ProduceVerifier {
    coordinator: Arc<TransactionCoordinator>,
    transactional_id: Option<String>,
    partition: (String, i32),
}

impl TxnVerifier for ProduceVerifier {
    fn verify(&self, producer_id: i64, producer_epoch: i16) -> bool {
        self.transactional_id.as_deref().is_some_and(|id| {
            self.coordinator
                .is_in_transaction(id, producer_id, producer_epoch, &self.partition)
        })
    }
}

/// A state write that did not make it to the log: the client retries against a coordinator
/// it is told is not available.
fn storage_failure(id: &str, e: &InternalLogError) -> ResponseError {
    warn!(transactional_id = %id, error = %e, "cannot write transaction state");
    ResponseError::CoordinatorNotAvailable
}
