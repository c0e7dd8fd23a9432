//! Producer ids for InitProducerId, never handed out twice, even across crashes: ids come
//! from blocks, and a block's end is made durable (`__weir_meta/producer_ids.json`) before its
//! first id is given out, so a crash skips at most the rest of one block.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::{MetadataError, TopicStore, read_json, write_json};
use crate::disk::Disk;

/// Ids reserved by one durable write.
const BLOCK: i64 = 1000;

#[derive(Debug, Serialize, Deserialize)]
struct Reserved {
    /// Every id below this may have been handed out.
    reserved_until: i64,
}

#[derive(Debug)]
struct Block {
    next: i64,
    end: i64,
}

#[derive(Debug)]
pub struct ProducerIdAllocator {
    disk: Arc<dyn Disk>,
    path: PathBuf,
    block: Mutex<Block>,
}

impl ProducerIdAllocator {
    pub fn open(
        disk: Arc<dyn Disk>,
        data_dir: &Path,
    ) -> Result<ProducerIdAllocator, MetadataError> {
        let path = data_dir.join(TopicStore::DIR).join("producer_ids.json");
        let reserved_until =
            read_json::<Reserved>(disk.as_ref(), &path)?.map_or(0, |r| r.reserved_until);
        Ok(ProducerIdAllocator {
            disk,
            path,
            block: Mutex::new(Block {
                next: reserved_until,
                end: reserved_until,
            }),
        })
    }

    /// The next producer id (blocking I/O once per block).
    pub fn allocate(&self) -> Result<i64, MetadataError> {
        let mut block = self.block.lock().unwrap_or_else(|e| e.into_inner());
        if block.next >= block.end {
            let end = block.end + BLOCK;
            write_json(
                self.disk.as_ref(),
                &self.path,
                &Reserved {
                    reserved_until: end,
                },
            )?;
            block.end = end;
        }
        let id = block.next;
        block.next += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_never_reused_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(TopicStore::DIR)).unwrap();
        let first = ProducerIdAllocator::open(crate::disk::os(), dir.path()).unwrap();
        let a = first.allocate().unwrap();
        let b = first.allocate().unwrap();
        assert_eq!((a, b), (0, 1));
        drop(first);
        // A "crash": the new process starts after everything the old one reserved.
        let second = ProducerIdAllocator::open(crate::disk::os(), dir.path()).unwrap();
        assert_eq!(second.allocate().unwrap(), BLOCK);
    }
}
