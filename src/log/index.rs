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

    /// The whole entries at the start of `bytes` up to the first one whose key or value does
    /// not grow (`push` writes only growing ones: a lost page reads as zeros and stops here).
    fn decode_ordered(self, bytes: &[u8]) -> Vec<(i64, u32)> {
        let mut entries: Vec<(i64, u32)> = Vec::with_capacity(bytes.len() / self.entry_len());
        for chunk in bytes.chunks_exact(self.entry_len()) {
            let entry = match self {
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
            if entries
                .last()
                .is_some_and(|&(key, value)| entry.0 <= key || entry.1 <= value)
            {
                break;
            }
            entries.push(entry);
        }
        entries
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
        let entries = kind.decode_ordered(&bytes);
        if entries.len() * len != bytes.len()
            || (kind == IndexKind::Offset && entries.last().is_some_and(|e| e.0 > max_key))
        {
            return None;
        }
        Some(SparseIndex::with_entries(disk, kind, path, entries))
    }

    /// Loads the longest prefix of an index file whose entries are in order and pass `keep`,
    /// and cuts the file to it: entries after it belong to batches a start is about to read
    /// again, or were torn. `None` when the file cannot be read or cut.
    pub fn load_prefix(
        disk: &Arc<dyn Disk>,
        kind: IndexKind,
        path: &Path,
        keep: impl Fn(i64, u32) -> bool,
    ) -> Option<SparseIndex> {
        let bytes = disk.read_all(path).ok()?;
        let mut entries = kind.decode_ordered(&bytes);
        if let Some(first_dropped) = entries.iter().position(|&(key, value)| !keep(key, value)) {
            entries.truncate(first_dropped);
        }
        let kept = (entries.len() * kind.entry_len()) as u64;
        if kept < bytes.len() as u64 {
            disk.open_append(path, false)
                .and_then(|file| file.set_len(kept))
                .ok()?;
        }
        Some(SparseIndex::with_entries(disk, kind, path, entries))
    }

    fn with_entries(
        disk: &Arc<dyn Disk>,
        kind: IndexKind,
        path: &Path,
        entries: Vec<(i64, u32)>,
    ) -> SparseIndex {
        SparseIndex {
            kind,
            path: path.to_path_buf(),
            disk: disk.clone(),
            entries,
            unwritten: Vec::new(),
        }
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
    fn a_prefix_load_keeps_what_a_summary_covers_and_cuts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut index = SparseIndex::create(&os(), IndexKind::Offset, &path).unwrap();
        for (rel, pos) in [(0, 0), (10, 4096), (25, 9000), (40, 12000)] {
            index.push(rel, pos);
        }
        index.write_pending().unwrap();
        // A torn entry and an entry that goes backwards after the good ones.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[0, 0, 0, 3, 0, 0, 0, 1, 0xff, 0xff]);
        std::fs::write(&path, &bytes).unwrap();

        let all = SparseIndex::load_prefix(&os(), IndexKind::Offset, &path, |_, _| true).unwrap();
        assert_eq!(all.last(), Some((40, 12000)));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 32);

        let covered = |rel: i64, pos: u32| rel < 30 && pos < 10_000;
        let some = SparseIndex::load_prefix(&os(), IndexKind::Offset, &path, covered).unwrap();
        assert_eq!(some.last(), Some((25, 9000)));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24);
        assert!(
            SparseIndex::load_prefix(&os(), IndexKind::Offset, &dir.path().join("gone"), covered)
                .is_none()
        );
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
