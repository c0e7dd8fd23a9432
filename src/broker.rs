//! The state every request handler sees: configuration, node identity, the topics, and the
//! shutdown token. Opening it recovers the data directory.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::info;

use crate::config::Config;
use crate::disk::{Disk, SpaceGuard};
use crate::group::GroupCoordinator;
use crate::group::messages::GroupLimits;
use crate::group::offsets::OffsetStore;
use crate::log::internal_log::InternalLog;
use crate::log::manager::{LogManager, RecoverySummary, Topic, TopicError};
use crate::log::partition::PartitionOptions;
use crate::log::tail_cache::TailBudget;
use crate::metadata::{MetadataError, NodeIdentity, ProducerIdAllocator};
use crate::shutdown::Shutdown;
use crate::txn::{TransactionCoordinator, TxnLimits};

#[derive(Debug, Error)]
pub enum BrokerError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot start the log writer thread: {0}")]
    WriterThread(std::io::Error),
    #[error("cannot start the disk space monitor thread: {0}")]
    SpaceMonitor(std::io::Error),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    Topic(#[from] TopicError),
    #[error("recovery task failed: {0}")]
    Join(String),
    #[error("cannot open the committed offsets: {0}")]
    Offsets(#[from] crate::group::offsets::OffsetError),
    #[error("cannot open the transaction state: {0}")]
    Transactions(#[from] crate::txn::log::TxnLogError),
}

pub struct Broker {
    pub config: Arc<Config>,
    pub identity: NodeIdentity,
    pub logs: Arc<LogManager>,
    pub groups: Arc<GroupCoordinator>,
    pub txns: Arc<TransactionCoordinator>,
    pub producer_ids: Arc<ProducerIdAllocator>,
    pub shutdown: Shutdown,
    /// Bytes of request frames read but not yet dispatched, over all connections.
    pub request_budget: Arc<Semaphore>,
    /// Bytes of fetch responses read but not yet written, over all connections.
    pub fetch_budget: Arc<Semaphore>,
    /// Refuses produce while the data directory's file system is nearly full.
    pub space: Arc<SpaceGuard>,
    /// Connections and requests in flight, for the metrics.
    pub stats: Arc<crate::telemetry::LiveStats>,
    advertised: (String, i32),
}

impl Broker {
    /// Opens the data directory (recovering every partition) for a listener bound to `bound`.
    pub async fn open(
        config: Config,
        bound: SocketAddr,
    ) -> Result<(Arc<Broker>, RecoverySummary), BrokerError> {
        let disk = crate::disk::os_with(config.log_write_io);
        Broker::open_on(config, bound, disk).await
    }

    /// As `open`, with every file operation going through `disk` (tests pass a simulated
    /// disk that can fail or lose power).
    pub async fn open_on(
        config: Config,
        bound: SocketAddr,
        disk: Arc<dyn Disk>,
    ) -> Result<(Arc<Broker>, RecoverySummary), BrokerError> {
        let config = Arc::new(config);
        crate::disk::create_dir_durable(disk.as_ref(), &config.data_dir).map_err(|source| {
            BrokerError::DataDir {
                path: config.data_dir.display().to_string(),
                source,
            }
        })?;
        let identity =
            NodeIdentity::load_or_create(disk.as_ref(), &config.data_dir, config.node_id)?;
        let budget = permits(config.write_queue_max_bytes);
        let space = SpaceGuard::new(disk.clone(), &config.data_dir, config.disk_min_free_bytes);
        space.spawn_monitor().map_err(BrokerError::SpaceMonitor)?;
        let timers = crate::log::writer::WriterTimers {
            flush: std::time::Duration::from_millis(config.flush_interval_ms),
            checkpoint: std::time::Duration::from_millis(config.checkpoint_interval_ms),
        };
        let writer = crate::log::writer::spawn(config.durability, timers, Some(space.clone()))
            .map_err(BrokerError::WriterThread)?;
        let options = PartitionOptions {
            disk: disk.clone(),
            writer,
            durability: config.durability,
            write_path: config.write_path,
            page_cache_via_writer: config.durability == crate::config::Durability::PageCache
                && config.log_write_io == crate::config::LogWriteIo::Direct,
            write_budget: Arc::new(Semaphore::new(budget)),
            write_budget_bytes: budget,
            tail_cache: (config.log_write_io == crate::config::LogWriteIo::Direct
                && config.tail_cache_bytes > 0)
                .then(|| {
                    TailBudget::new(usize::try_from(config.tail_cache_bytes).unwrap_or(usize::MAX))
                }),
        };
        let open_config = config.clone();
        let (logs, summary) =
            tokio::task::spawn_blocking(move || LogManager::open(open_config, options))
                .await
                .map_err(|e| BrokerError::Join(e.to_string()))??;
        let advertised = match &config.advertised_listener {
            Some(_) => config.advertised(),
            None => (bound.ip().to_string(), i32::from(bound.port())),
        };
        let request_budget = Arc::new(Semaphore::new(permits(config.queued_max_request_bytes)));
        let fetch_budget = Arc::new(Semaphore::new(permits(config.fetch_queue_max_bytes)));
        let logs = Arc::new(logs);
        let shutdown = Shutdown::new();
        let groups = open_groups(&config, &logs, &shutdown).await?;
        // After the log manager: it creates `__weir_meta`.
        let producer_ids = Arc::new(ProducerIdAllocator::open(disk, &config.data_dir)?);
        let txns = open_transactions(&config, &logs, &groups, &producer_ids).await?;
        txns.spawn_sweeper(
            Duration::from_millis(config.transaction_abort_timed_out_check_interval_ms),
            shutdown.clone(),
        );
        let recovering = txns.clone();
        tokio::spawn(async move { recovering.recover().await });
        let broker = Arc::new(Broker {
            config,
            identity,
            logs,
            groups,
            txns,
            producer_ids,
            shutdown,
            request_budget,
            fetch_budget,
            space,
            stats: Default::default(),
            advertised,
        });
        broker.spawn_retention();
        broker.spawn_tail_cache_expiry();
        Ok((broker, summary))
    }

    /// Takes `bytes` from the request budget (all of it when `bytes` exceeds the budget).
    pub async fn reserve_request_bytes(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        reserve(
            &self.request_budget,
            self.config.queued_max_request_bytes,
            bytes,
        )
        .await
    }

    /// Takes `bytes` from the fetch-response budget (all of it when `bytes` exceeds it).
    pub async fn reserve_fetch_bytes(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        reserve(&self.fetch_budget, self.config.fetch_queue_max_bytes, bytes).await
    }

    pub fn node_id(&self) -> i32 {
        self.identity.node_id
    }

    /// The host and port clients are told to connect to.
    pub fn advertised(&self) -> (&str, i32) {
        (&self.advertised.0, self.advertised.1)
    }

    /// The topic, created with broker defaults when `auto_create` and the config allow it.
    pub async fn topic_or_create(
        &self,
        name: &str,
        auto_create: bool,
    ) -> Result<Arc<Topic>, TopicError> {
        if let Some(topic) = self.logs.topic(name) {
            return Ok(topic);
        }
        if !(auto_create && self.config.auto_create_topics) {
            crate::log::manager::validate_topic_name(name)?;
            return Err(TopicError::Unknown(name.to_string()));
        }
        match self
            .logs
            .create_topic(name, -1, -1, Default::default(), false)
            .await
        {
            Ok(topic) => Ok(topic),
            // Another request created it first.
            Err(TopicError::AlreadyExists(_)) => self
                .logs
                .topic(name)
                .ok_or_else(|| TopicError::Unknown(name.to_string())),
            Err(e) => Err(e),
        }
    }

    /// Every second, empties the tail caches of partitions not written for 10 s.
    fn spawn_tail_cache_expiry(self: &Arc<Self>) {
        if self.logs.tail_cache().is_none() {
            return;
        }
        crate::shutdown::spawn_periodic(
            Arc::downgrade(self),
            Duration::from_secs(1),
            self.shutdown.clone(),
            |broker: Arc<Broker>| async move {
                if let Some(budget) = broker.logs.tail_cache() {
                    budget.expire_idle(TAIL_CACHE_IDLE);
                }
            },
        );
    }

    fn spawn_retention(self: &Arc<Self>) {
        let period = std::time::Duration::from_millis(self.config.log_retention_check_interval_ms);
        crate::shutdown::spawn_periodic(
            Arc::downgrade(self),
            period,
            self.shutdown.clone(),
            |broker: Arc<Broker>| async move {
                let logs = broker.logs.clone();
                let deleted = tokio::task::spawn_blocking(move || logs.enforce_retention())
                    .await
                    .unwrap_or(0);
                if deleted > 0 {
                    crate::telemetry::retention_deleted(deleted);
                    info!(bytes = deleted, "retention deleted old segments");
                }
            },
        );
    }
}

/// The group coordinator, with committed offsets replayed from their internal log.
async fn open_groups(
    config: &Config,
    logs: &LogManager,
    shutdown: &Shutdown,
) -> Result<Arc<GroupCoordinator>, BrokerError> {
    let overrides = rewritten_log_overrides(config.offsets_log_segment_bytes);
    let log = logs.open_internal_log(OFFSETS_LOG, overrides).await?;
    let offsets = OffsetStore::open(log, config.offsets_log_segment_bytes as u64).await?;
    let limits = GroupLimits {
        min_session_timeout: Duration::from_millis(config.group_min_session_timeout_ms),
        max_session_timeout: Duration::from_millis(config.group_max_session_timeout_ms),
        initial_delay: Duration::from_millis(config.group_initial_rebalance_delay_ms),
        max_size: config.group_max_size as usize,
        consumer_session_timeout: Duration::from_millis(config.group_consumer_session_timeout_ms),
        consumer_heartbeat_interval: Duration::from_millis(
            config.group_consumer_heartbeat_interval_ms,
        ),
    };
    let retention = Duration::from_secs(config.offsets_retention_minutes.saturating_mul(60));
    let groups = GroupCoordinator::new(limits, offsets, retention, shutdown.clone());
    groups.spawn_sweeper(OFFSETS_SWEEP_PERIOD);
    Ok(groups)
}

/// Topic configs of an internal log that is compacted by rewriting its live state.
fn rewritten_log_overrides(segment_bytes: i64) -> std::collections::BTreeMap<String, String> {
    [
        ("cleanup.policy", "compact".to_string()),
        ("segment.bytes", segment_bytes.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The transaction coordinator, with its state replayed from its internal log.
async fn open_transactions(
    config: &Config,
    logs: &Arc<LogManager>,
    groups: &Arc<GroupCoordinator>,
    producer_ids: &Arc<ProducerIdAllocator>,
) -> Result<Arc<TransactionCoordinator>, BrokerError> {
    let overrides = rewritten_log_overrides(config.transaction_log_segment_bytes);
    let log = logs.open_internal_log(TRANSACTION_LOG, overrides).await?;
    let limits = TxnLimits {
        max_timeout_ms: config.transaction_max_timeout_ms,
        id_expiration_ms: config.transactional_id_expiration_ms,
        log_segment_bytes: config.transaction_log_segment_bytes as u64,
    };
    Ok(TransactionCoordinator::open(
        InternalLog::new(log),
        producer_ids.clone(),
        logs.clone(),
        groups.clone(),
        limits,
    )
    .await?)
}

/// The internal log of transaction state: `<data_dir>/__weir_meta/transaction-state-0`.
const TRANSACTION_LOG: &str = "transaction-state";

/// The internal log of committed offsets: `<data_dir>/__weir_meta/consumer-offsets-0`.
const OFFSETS_LOG: &str = "consumer-offsets";
/// How often expired offsets and empty groups are cleaned up (Kafka's
/// `offsets.retention.check.interval.ms` default).
const OFFSETS_SWEEP_PERIOD: Duration = Duration::from_secs(600);
/// A partition not written for this long gives its tail cache up (a tailing consumer has
/// read it long before).
const TAIL_CACHE_IDLE: Duration = Duration::from_secs(10);

/// A byte budget as semaphore permits (at most `u32::MAX`, what one acquire can take).
fn permits(bytes: u64) -> usize {
    usize::try_from(bytes)
        .unwrap_or(usize::MAX)
        .min(Semaphore::MAX_PERMITS)
        .min(u32::MAX as usize)
}

async fn reserve(
    budget: &Arc<Semaphore>,
    total: u64,
    bytes: usize,
) -> Option<OwnedSemaphorePermit> {
    let wanted = bytes.clamp(1, permits(total)) as u32;
    budget.clone().acquire_many_owned(wanted).await.ok()
}
