//! The topic catalogue: name, id, partition count and config overrides of every topic,
//! rewritten atomically on each change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{MetadataError, read_json, write_json};
use crate::disk::Disk;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Catalogue {
    version: u32,
    topics: Vec<TopicRecord>,
}

/// The catalogue file. Callers serialise changes (the log manager's admin lock).
#[derive(Debug)]
pub struct TopicStore {
    disk: Arc<dyn Disk>,
    path: PathBuf,
    topics: BTreeMap<String, TopicRecord>,
}

impl TopicStore {
    pub const DIR: &'static str = "__weir_meta";

    pub fn open(disk: Arc<dyn Disk>, data_dir: &Path) -> Result<TopicStore, MetadataError> {
        let dir = data_dir.join(Self::DIR);
        disk.create_dir_all(&dir)
            .map_err(|source| MetadataError::Io {
                context: format!("creating {}", dir.display()),
                source,
            })?;
        let path = dir.join("topics.json");
        let topics = read_json::<Catalogue>(disk.as_ref(), &path)?
            .map(|catalogue| {
                catalogue
                    .topics
                    .into_iter()
                    .map(|t| (t.name.clone(), t))
                    .collect()
            })
            .unwrap_or_default();
        Ok(TopicStore { disk, path, topics })
    }

    pub fn topics(&self) -> impl Iterator<Item = &TopicRecord> {
        self.topics.values()
    }

    pub fn upsert(&mut self, record: TopicRecord) -> Result<(), MetadataError> {
        let previous = self.topics.insert(record.name.clone(), record.clone());
        self.persist().inspect_err(|_| {
            // Keep memory in step with disk when the write failed.
            match previous {
                Some(old) => self.topics.insert(old.name.clone(), old),
                None => self.topics.remove(&record.name),
            };
        })
    }

    pub fn remove(&mut self, name: &str) -> Result<(), MetadataError> {
        if let Some(old) = self.topics.remove(name) {
            self.persist().inspect_err(|_| {
                self.topics.insert(old.name.clone(), old);
            })?;
        }
        Ok(())
    }

    fn persist(&self) -> Result<(), MetadataError> {
        let catalogue = Catalogue {
            version: 1,
            topics: self.topics.values().cloned().collect(),
        };
        write_json(self.disk.as_ref(), &self.path, &catalogue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = TopicStore::open(crate::disk::os(), dir.path()).unwrap();
        let record = TopicRecord {
            name: "orders".into(),
            id: Uuid::new_v4(),
            partitions: 3,
            configs: [("retention.ms".to_string(), "1000".to_string())].into(),
        };
        store.upsert(record.clone()).unwrap();
        store
            .upsert(TopicRecord {
                name: "gone".into(),
                id: Uuid::new_v4(),
                partitions: 1,
                configs: BTreeMap::new(),
            })
            .unwrap();
        store.remove("gone").unwrap();
        let reopened = TopicStore::open(crate::disk::os(), dir.path()).unwrap();
        let topics: Vec<_> = reopened.topics().cloned().collect();
        assert_eq!(topics, vec![record]);
    }
}
