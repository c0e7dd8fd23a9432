//! Sparse per-segment indexes in Kafka's on-disk formats: `.index` maps a relative offset to a
//! file position (8-byte entries), `.timeindex` maps a max timestamp to a relative offset
//! (12-byte entries). Entries live in memory for lookups and are appended to the files.

use std::io::IoSlice;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::disk::Disk;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    /// key = relative offset, value = file position.
    Offset,
    /// key = timestamp, value = relative offset.
    Time,
}

impl IndexKind {
    fn entry_len(self) -> usize {
        match self {
            IndexKind::Offset => 8,
            IndexKind::Time => 12,
        }
    }
}

/// One sparse index: `(key, value)` entries with non-decreasing keys.
#[derive(Debug)]
pub struct SparseIndex {
    kind: IndexKind,
    path: PathBuf,
    /// Index files are opened per write: only the active segment's are ever written, and
    /// holding two more descriptors per segment would add up over thousands of segments.
    disk: Arc<dyn Disk>,
    entries: Vec<(i64, u32)>,
    /// Encoded entries not yet written to the file.
    unwritten: Vec<u8>,
}

impl SparseIndex {
    /// An empty index whose file is (re)written from scratch.
    pub fn create(
        disk: &Arc<dyn Disk>,
        kind: IndexKind,
        path: &Path,
    ) -> std::io::Result<SparseIndex> {
        disk.create_empty(path)?;
        Ok(SparseIndex {
            kind,
            path: path.to_path_buf(),
            disk: disk.clone(),
            entries: Vec::new(),
            unwritten: Vec::new(),
        })
    }

    /// Loads an index file; `None` when it is missing or not well formed (the caller rebuilds).
    /// `max_key` bounds offset keys (relative offsets past the log end mean a stale index).
    pub fn load(
        disk: &Arc<dyn Disk>,
        kind: IndexKind,
        path: &Path,
        max_key: i64,
    ) -> Option<SparseIndex> {
        let bytes = disk.read_all(path).ok()?;
        let len = kind.entry_len();
        if bytes.len() % len != 0 {
            return None;
        }
        let mut entries = Vec::with_capacity(bytes.len() / len);
        for chunk in bytes.chunks_exact(len) {
            let entry = match kind {
                IndexKind::Offset => (
                    i64::from(u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]])),
                    u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]),
                ),
                IndexKind::Time => (
                    i64::from_be_bytes([
                        chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6],
                        chunk[7],
                    ]),
                    u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]),
                ),
            };
            if let Some(&(last_key, last_value)) = entries.last()
                && (entry.0 < last_key || entry.1 < last_value)
            {
                return None;
            }
            entries.push(entry);
        }
        if kind == IndexKind::Offset && entries.last().is_some_and(|e| e.0 > max_key) {
            return None;
        }
        Some(SparseIndex {
            kind,
            path: path.to_path_buf(),
            disk: disk.clone(),
            entries,
            unwritten: Vec::new(),
        })
    }

    pub fn push(&mut self, key: i64, value: u32) {
        if let Some(&(last_key, _)) = self.entries.last()
            && key <= last_key
        {
            return;
        }
        self.entries.push((key, value));
        match self.kind {
            IndexKind::Offset => self
                .unwritten
                .extend_from_slice(&(key as u32).to_be_bytes()),
            IndexKind::Time => self.unwritten.extend_from_slice(&key.to_be_bytes()),
        }
        self.unwritten.extend_from_slice(&value.to_be_bytes());
    }

    /// The last entry whose key is at most `key`.
    pub fn floor(&self, key: i64) -> Option<(i64, u32)> {
        let idx = self.entries.partition_point(|e| e.0 <= key);
        idx.checked_sub(1).map(|i| self.entries[i])
    }

    /// The last entry whose key is strictly below `key`.
    pub fn below(&self, key: i64) -> Option<(i64, u32)> {
        let idx = self.entries.partition_point(|e| e.0 < key);
        idx.checked_sub(1).map(|i| self.entries[i])
    }

    pub fn last(&self) -> Option<(i64, u32)> {
        self.entries.last().copied()
    }

    /// Appends entries pushed since the last call to the file.
    pub fn write_pending(&mut self) -> std::io::Result<()> {
        if self.unwritten.is_empty() {
            return Ok(());
        }
        let file = self.disk.open_append(&self.path, false)?;
        file.append(&mut [IoSlice::new(&self.unwritten)])?;
        self.unwritten.clear();
        Ok(())
    }

    pub fn sync(&mut self) -> std::io::Result<()> {
        self.write_pending()?;
        self.disk.open_append(&self.path, false)?.sync_all()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os() -> Arc<dyn Disk> {
        crate::disk::os()
    }

    #[test]
    fn offset_index_round_trips_and_floors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut index = SparseIndex::create(&os(), IndexKind::Offset, &path).unwrap();
        index.push(0, 0);
        index.push(10, 4096);
        index.push(25, 9000);
        index.push(25, 9999); // not increasing: ignored
        index.write_pending().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24);
        let loaded = SparseIndex::load(&os(), IndexKind::Offset, &path, 100).unwrap();
        assert_eq!(loaded.floor(9), Some((0, 0)));
        assert_eq!(loaded.floor(10), Some((10, 4096)));
        assert_eq!(loaded.floor(1000), Some((25, 9000)));
        assert_eq!(loaded.below(10), Some((0, 0)));
        assert!(SparseIndex::load(&os(), IndexKind::Offset, &path, 20).is_none());
    }

    #[test]
    fn torn_or_unordered_index_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.timeindex");
        std::fs::write(&path, [0u8; 13]).unwrap();
        assert!(SparseIndex::load(&os(), IndexKind::Time, &path, 0).is_none());
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&100i64.to_be_bytes());
        bytes.extend_from_slice(&5u32.to_be_bytes());
        bytes.extend_from_slice(&50i64.to_be_bytes());
        bytes.extend_from_slice(&6u32.to_be_bytes());
        std::fs::write(&path, bytes).unwrap();
        assert!(SparseIndex::load(&os(), IndexKind::Time, &path, 0).is_none());
    }
}
