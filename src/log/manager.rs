//! The topics of this broker: lookup on the hot path (a `DashMap`, guards never held across an
//! `.await`), creation, deletion and partition growth under one admin lock, recovery on start
//! and the clean-shutdown marker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use dashmap::DashMap;
use tokio::sync::Mutex;
use tracing::{info, warn};
use uuid::Uuid;

use super::partition::{Partition, PartitionOptions, partition_dir};
use super::topic_config::TopicConfig;
use super::{LogError, now_ms};
use crate::config::Config;
use crate::disk::Disk;
use crate::metadata::{TopicRecord, TopicStore};

pub use super::topic::{Topic, TopicError, validate_topic_name};

const CLEAN_SHUTDOWN_FILE: &str = ".clean_shutdown";

pub struct LogManager {
    config: Arc<Config>,
    data_dir: PathBuf,
    topics: DashMap<String, Arc<Topic>>,
    store: Mutex<TopicStore>,
    options: PartitionOptions,
    /// Whether start-up found the clean-shutdown marker (internal logs opened later skip
    /// tail recovery then, as topics do).
    clean_start: bool,
    /// The broker's own logs (committed offsets), closed at shutdown like topics.
    internal: std::sync::Mutex<Vec<Arc<Partition>>>,
}

/// What start-up recovered.
#[derive(Debug, Clone, Copy)]
pub struct RecoverySummary {
    pub topics: usize,
    pub partitions: usize,
    pub clean_shutdown: bool,
}

impl LogManager {
    /// Opens the data directory and recovers every partition (blocking I/O).
    pub fn open(
        config: Arc<Config>,
        options: PartitionOptions,
    ) -> Result<(LogManager, RecoverySummary), TopicError> {
        let data_dir = config.data_dir.clone();
        let disk = options.disk.clone();
        let store = TopicStore::open(disk.clone(), &data_dir)?;
        let records: Vec<TopicRecord> = store.topics().cloned().collect();
        let marker = data_dir.join(CLEAN_SHUTDOWN_FILE);
        let clean_shutdown = disk.exists(&marker);
        remove_deleted_dirs(disk.as_ref(), &data_dir);
        let manager = LogManager {
            config: config.clone(),
            data_dir: data_dir.clone(),
            topics: DashMap::new(),
            store: Mutex::new(store),
            options,
            clean_start: clean_shutdown,
            internal: std::sync::Mutex::new(Vec::new()),
        };
        let mut partitions = 0;
        for record in &records {
            let topic = manager.open_topic(record, !clean_shutdown)?;
            partitions += topic.partition_count() as usize;
            manager.topics.insert(record.name.clone(), topic);
        }
        // Partition directories recreated by recovery (missing ones) become durable too.
        disk.sync_dir(&data_dir).map_err(|source| LogError::Io {
            context: "syncing the data directory".into(),
            source,
        })?;
        if clean_shutdown {
            // The marker must be gone for good before anything is written: were it to come
            // back after a crash, the next start would skip recovery of torn tails.
            disk.remove_file(&marker)
                .and_then(|()| disk.sync_dir(&data_dir))
                .map_err(|source| LogError::Io {
                    context: "removing the clean-shutdown marker".into(),
                    source,
                })?;
        }
        let summary = RecoverySummary {
            topics: manager.topics.len(),
            partitions,
            clean_shutdown,
        };
        Ok((manager, summary))
    }

    fn open_topic(&self, record: &TopicRecord, verify: bool) -> Result<Arc<Topic>, TopicError> {
        let config = Arc::new(TopicConfig::resolve(&self.config, &record.configs)?);
        let mut partitions = Vec::with_capacity(record.partitions.max(0) as usize);
        for index in 0..record.partitions {
            partitions.push(self.open_partition(&record.name, index, &config, verify)?);
        }
        Ok(Arc::new(Topic {
            name: record.name.clone(),
            id: record.id,
            config: RwLock::new(config),
            partitions: RwLock::new(partitions),
        }))
    }

    fn open_partition(
        &self,
        topic: &str,
        index: i32,
        config: &Arc<TopicConfig>,
        verify: bool,
    ) -> Result<Arc<Partition>, TopicError> {
        let dir = partition_dir(&self.data_dir, topic, index);
        Ok(Partition::open(
            &dir,
            topic,
            index,
            config.clone(),
            self.options.clone(),
            verify,
        )?)
    }

    pub fn disk(&self) -> &Arc<dyn Disk> {
        &self.options.disk
    }

    /// The tail caches' shared budget, when they are on.
    pub fn tail_cache(&self) -> Option<&Arc<crate::log::tail_cache::TailBudget>> {
        self.options.tail_cache.as_ref()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Opens (or creates) one of the broker's internal logs, `<data_dir>/__weir_meta/<name>-0`:
    /// a partition no client sees by name (e.g. the committed offsets). It is recovered like
    /// a topic's partition and closed at shutdown before the clean-shutdown marker is written.
    pub async fn open_internal_log(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
    ) -> Result<Arc<Partition>, TopicError> {
        let config = Arc::new(TopicConfig::resolve(&self.config, &overrides)?);
        let parent = self.data_dir.join(crate::metadata::TopicStore::DIR);
        let dir = partition_dir(&parent, name, 0);
        let name = name.to_string();
        let options = self.options.clone();
        let verify = !self.clean_start;
        let partition = tokio::task::spawn_blocking(move || {
            let disk = options.disk.clone();
            let partition = Partition::open(&dir, &name, 0, config, options, verify)?;
            disk.sync_dir(&parent).map_err(|source| LogError::Io {
                context: format!("creating internal log {name}"),
                source,
            })?;
            Ok::<_, LogError>(partition)
        })
        .await
        .map_err(|e| LogError::Io {
            context: "opening an internal log".into(),
            source: std::io::Error::other(e.to_string()),
        })??;
        self.internal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(partition.clone());
        Ok(partition)
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.get(name).map(|t| t.value().clone())
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.topics
            .iter()
            .find(|t| t.value().id == id)
            .map(|t| t.value().clone())
    }

    /// All topics, sorted by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut topics: Vec<_> = self.topics.iter().map(|t| t.value().clone()).collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics
    }

    /// Creates a topic. `partitions`/`replication_factor` of -1 take the broker default.
    pub async fn create_topic(
        self: &Arc<Self>,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>, TopicError> {
        validate_topic_name(name)?;
        let partitions = if partitions == -1 {
            self.config.num_partitions
        } else {
            partitions
        };
        if partitions < 1 || partitions > self.config.max_partitions_per_topic {
            return Err(TopicError::InvalidPartitions(format!(
                "{partitions}; must be between 1 and {}",
                self.config.max_partitions_per_topic
            )));
        }
        if replication_factor != -1 && replication_factor != 1 {
            return Err(TopicError::InvalidReplicationFactor(replication_factor));
        }
        let config = Arc::new(TopicConfig::resolve(&self.config, &overrides)?);
        let mut store = self.store.lock().await;
        if self.topics.contains_key(name) {
            return Err(TopicError::AlreadyExists(name.to_string()));
        }
        let normalized = name.replace('.', "_");
        if let Some(other) = self
            .topics
            .iter()
            .find(|t| t.key().replace('.', "_") == normalized)
        {
            return Err(TopicError::Collides(name.to_string(), other.key().clone()));
        }
        let record = TopicRecord {
            name: name.to_string(),
            id: Uuid::new_v4(),
            partitions,
            configs: overrides,
        };
        let topic = Arc::new(Topic {
            name: name.to_string(),
            id: record.id,
            config: RwLock::new(config),
            partitions: RwLock::new(Vec::new()),
        });
        if validate_only {
            return Ok(topic);
        }
        // Partition directories first, then the catalogue: a crash in between leaves only
        // directories that start-up ignores.
        let opened = self.open_partitions_blocking(&topic, 0..partitions).await?;
        *topic.partitions.write().unwrap_or_else(|e| e.into_inner()) = opened;
        store.upsert(record)?;
        self.topics.insert(name.to_string(), topic.clone());
        info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    async fn open_partitions_blocking(
        self: &Arc<Self>,
        topic: &Arc<Topic>,
        range: std::ops::Range<i32>,
    ) -> Result<Vec<Arc<Partition>>, TopicError> {
        let manager = self.clone();
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || {
            let config = topic.config();
            let opened = range
                .map(|index| {
                    let dir = partition_dir(&manager.data_dir, &topic.name, index);
                    // A directory left by a crash between create and catalogue write is stale.
                    if manager.disk().exists(&dir) {
                        let _ = manager.disk().remove_dir_all(&dir);
                    }
                    manager.open_partition(&topic.name, index, &config, false)
                })
                .collect::<Result<Vec<_>, _>>()?;
            // One fsync makes every new partition directory's entry durable.
            manager
                .disk()
                .sync_dir(&manager.data_dir)
                .map_err(|source| LogError::Io {
                    context: "creating partitions".into(),
                    source,
                })?;
            Ok(opened)
        })
        .await
        .map_err(|e| {
            TopicError::Log(LogError::Io {
                context: "creating partitions".into(),
                source: std::io::Error::other(e.to_string()),
            })
        })?
    }

    /// Grows a topic to `count` partitions.
    pub async fn create_partitions(
        self: &Arc<Self>,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let mut store = self.store.lock().await;
        let topic = self
            .topic(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        let current = topic.partition_count();
        if count <= current {
            return Err(TopicError::InvalidPartitions(format!(
                "topic currently has {current} partitions, {count} would not be an increase"
            )));
        }
        if count > self.config.max_partitions_per_topic {
            return Err(TopicError::InvalidPartitions(format!(
                "{count} is above max_partitions_per_topic {}",
                self.config.max_partitions_per_topic
            )));
        }
        if validate_only {
            return Ok(());
        }
        let added = self
            .open_partitions_blocking(&topic, current..count)
            .await?;
        store.upsert(TopicRecord {
            name: topic.name.clone(),
            id: topic.id,
            partitions: count,
            configs: topic.config().overrides.clone(),
        })?;
        topic
            .partitions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .extend(added);
        info!(topic = name, partitions = count, "added partitions");
        Ok(())
    }

    /// Replaces a topic's config overrides (AlterConfigs, IncrementalAlterConfigs): checked
    /// against the broker defaults, written to the catalogue, then applied to the topic and
    /// every partition (a new segment size applies from the next roll).
    pub async fn alter_topic_config(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let mut store = self.store.lock().await;
        let topic = self
            .topic(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        let config = Arc::new(TopicConfig::resolve(&self.config, &overrides)?);
        if validate_only {
            return Ok(());
        }
        store.upsert(TopicRecord {
            name: topic.name.clone(),
            id: topic.id,
            partitions: topic.partition_count(),
            configs: overrides,
        })?;
        *topic.config.write().unwrap_or_else(|e| e.into_inner()) = config.clone();
        for partition in topic.partitions() {
            partition.set_config(config.clone());
        }
        info!(topic = name, overrides = ?config.overrides, "altered topic config");
        Ok(())
    }

    /// Deletes a topic: gone from lookups and the catalogue at once, its writers drained and
    /// its directories removed in the background so other requests are never held up.
    pub async fn delete_topic(&self, name: &str) -> Result<Uuid, TopicError> {
        let mut store = self.store.lock().await;
        let topic = self
            .topic(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        store.remove(name)?;
        self.topics.remove(name);
        // Writers are drained and directories renamed before the admin lock is released, so
        // a topic recreated under the same name never shares a directory with the old one.
        let mut doomed = Vec::new();
        for partition in topic.partitions() {
            if let Err(e) = partition.close().await {
                warn!(topic = name, error = %e, "partition of deleted topic did not close cleanly");
            }
            let target = self.data_dir.join(format!(
                "{}-{}.{}-delete",
                topic.name,
                partition.index(),
                topic.id.simple()
            ));
            match self.disk().rename(partition.dir(), &target) {
                Ok(()) => doomed.push(target),
                Err(e) => warn!(topic = name, error = %e, "could not rename partition directory"),
            }
        }
        if let Err(e) = self.disk().sync_dir(&self.data_dir) {
            warn!(topic = name, error = %e, "could not fsync the data directory after deletion");
        }
        drop(store);
        let disk = self.disk().clone();
        tokio::task::spawn_blocking(move || {
            for dir in doomed {
                if let Err(e) = disk.remove_dir_all(&dir) {
                    warn!(dir = %dir.display(), error = %e, "could not remove partition directory");
                }
            }
        });
        info!(topic = name, "deleted topic");
        Ok(topic.id)
    }

    /// Runs retention over every partition; returns bytes deleted. Idle idempotent
    /// producers' state is dropped on the same pass.
    pub fn enforce_retention(&self) -> u64 {
        let cutoff = now_ms() - self.config.producer_id_expiration_ms;
        let mut expired = 0;
        let mut deleted = 0;
        for partition in self.topics().iter().flat_map(|t| t.partitions()) {
            deleted += partition.enforce_retention();
            expired += partition.expire_producers(cutoff);
        }
        if expired > 0 {
            info!(
                producers = expired,
                "expired idle idempotent producers' state"
            );
        }
        deleted
    }

    /// Drains and fsyncs every writer, then writes the clean-shutdown marker.
    pub async fn shutdown(&self) -> Result<(), TopicError> {
        let mut clean = true;
        for topic in self.topics() {
            for partition in topic.partitions() {
                if let Err(e) = partition.close().await {
                    warn!(partition = format!("{}-{}", topic.name, partition.index()), error = %e,
                        "partition did not close cleanly");
                    clean = false;
                }
            }
        }
        let internal: Vec<Arc<Partition>> = self
            .internal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for partition in internal {
            if let Err(e) = partition.close().await {
                warn!(log = partition.topic(), error = %e, "internal log did not close cleanly");
                clean = false;
            }
        }
        if clean {
            let marker = self.data_dir.join(CLEAN_SHUTDOWN_FILE);
            let disk = self.disk();
            disk.create_empty(&marker)
                .and_then(|file| {
                    file.append(&mut [std::io::IoSlice::new(now_ms().to_string().as_bytes())])
                })
                .and_then(|()| disk.sync_dir(&self.data_dir))
                .map_err(|source| LogError::Io {
                    context: "writing the clean-shutdown marker".into(),
                    source,
                })?;
        }
        Ok(())
    }
}

/// Removes directories of topics whose deletion a crash interrupted.
fn remove_deleted_dirs(disk: &dyn Disk, data_dir: &Path) {
    let Ok(entries) = disk.list_dir(data_dir) else {
        return;
    };
    for entry in entries {
        if entry.name.ends_with("-delete")
            && entry.is_dir
            && let Err(e) = disk.remove_dir_all(&data_dir.join(&entry.name))
        {
            warn!(dir = entry.name, error = %e, "could not remove deleted partition directory");
        }
    }
}
