//! A simulated disk for crash-consistency tests. It keeps, for every file, what the running
//! system sees and what is durable (fsynced), and for every directory its entries as seen and
//! as last fsynced. [`SimDisk::power_loss`] builds the disk a machine could come back to:
//! durable state, plus any part of what was not fsynced, written out in any order (pages lost
//! or zeroed in the middle), with each unsynced directory change kept or not.
//!
//! Faults, all decided by a seed so a failing run replays exactly:
//! - `crash_at_op`: the n-th mutating operation is the last one; an append there is torn
//!   (a random prefix lands) and everything after fails with EIO, as on a dead machine;
//! - `fail_sync_at`: the n-th file fsync fails with EIO, and the file's later fsyncs report
//!   success without making anything durable (what Linux did after a writeback error:
//!   "fsyncgate"), so only software that never retries an fsync stays correct;
//! - `capacity`: appends beyond this many bytes in all files fail with ENOSPC.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, IoSlice};
use std::path::{Component, Path};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{DirEntry, Disk, DiskFile};

/// Bytes the simulated page cache writes back at a time.
const PAGE: usize = 4096;

/// Injected faults (see the module docs). Operation and fsync counts start at 1.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    pub crash_at_op: Option<u64>,
    pub fail_sync_at: Option<u64>,
    pub capacity: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    File(u64),
    Dir(u64),
}

#[derive(Debug, Clone, Default)]
struct FileState {
    data: Vec<u8>,
    durable: Vec<u8>,
    /// An fsync of this file failed: later ones "succeed" without effect.
    writeback_lost: bool,
    modified_ms: i64,
}

type Entries = BTreeMap<String, Node>;

#[derive(Debug)]
struct State {
    files: HashMap<u64, FileState>,
    /// Directory entries as the running system sees them, by directory inode.
    dirs: HashMap<u64, Entries>,
    /// Directory entries as of each directory's last fsync.
    durable_dirs: HashMap<u64, Entries>,
    next_inode: u64,
    faults: Faults,
    ops: u64,
    syncs: u64,
    dead: bool,
    /// The kind of operation the crash point hit.
    crashed_in: Option<&'static str>,
    rng: SplitMix64,
}

const ROOT: u64 = 0;

/// An in-memory disk; clones share it.
#[derive(Debug, Clone)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

impl SimDisk {
    /// An empty disk; `seed` drives every random choice (torn writes, power-loss images).
    pub fn new(seed: u64, faults: Faults) -> SimDisk {
        let mut dirs = HashMap::new();
        dirs.insert(ROOT, Entries::new());
        let mut durable_dirs = HashMap::new();
        durable_dirs.insert(ROOT, Entries::new());
        SimDisk {
            state: Arc::new(Mutex::new(State {
                files: HashMap::new(),
                dirs,
                durable_dirs,
                next_inode: 1,
                faults,
                ops: 0,
                syncs: 0,
                dead: false,
                crashed_in: None,
                rng: SplitMix64(seed),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the crash point was reached (everything since failed).
    pub fn is_dead(&self) -> bool {
        self.lock().dead
    }

    /// The kind of operation the crash point hit (append, fsync, create, ...).
    pub fn crashed_in(&self) -> Option<&'static str> {
        self.lock().crashed_in
    }

    /// Mutating operations so far.
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// File fsyncs so far.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    /// Bytes in all files, as the running system sees them.
    pub fn used_bytes(&self) -> u64 {
        self.lock().used()
    }

    /// The disk after a power cut now: durable state, plus whatever part of the rest the
    /// `seed` decides a real disk could have kept. The new disk has no faults and is alive.
    pub fn power_loss(&self, seed: u64) -> SimDisk {
        let state = self.lock();
        let mut rng = SplitMix64(seed);
        let mut files = HashMap::new();
        let mut dirs = HashMap::new();
        let mut stack = vec![ROOT];
        while let Some(dir) = stack.pop() {
            let entries = survive_entries(&state, dir, &mut rng);
            for node in entries.values() {
                match *node {
                    Node::Dir(ino) => stack.push(ino),
                    Node::File(ino) => {
                        if let Some(file) = state.files.get(&ino)
                            && !files.contains_key(&ino)
                        {
                            let data = survive_data(file, &mut rng);
                            files.insert(
                                ino,
                                FileState {
                                    durable: data.clone(),
                                    data,
                                    writeback_lost: false,
                                    modified_ms: file.modified_ms,
                                },
                            );
                        }
                    }
                }
            }
            dirs.insert(dir, entries);
        }
        SimDisk {
            state: Arc::new(Mutex::new(State {
                files,
                durable_dirs: dirs.clone(),
                dirs,
                next_inode: state.next_inode,
                faults: Faults::default(),
                ops: 0,
                syncs: 0,
                dead: false,
                crashed_in: None,
                rng: SplitMix64(seed ^ 0x5eed),
            })),
        }
    }
}

/// A directory's entries after a power cut: each entry whose current state differs from its
/// durable one comes back in either state.
fn survive_entries(state: &State, dir: u64, rng: &mut SplitMix64) -> Entries {
    let empty = Entries::new();
    let now = state.dirs.get(&dir).unwrap_or(&empty);
    let durable = state.durable_dirs.get(&dir).unwrap_or(&empty);
    let mut out = Entries::new();
    for name in now.keys().chain(durable.keys()) {
        let (a, b) = (now.get(name), durable.get(name));
        let pick = if a == b || rng.coin() { a } else { b };
        if let Some(node) = pick {
            out.insert(name.clone(), *node);
        }
    }
    out
}

/// A file's bytes after a power cut: the durable bytes, then any length of what was written
/// since, each page of it written back or not (lost pages read as zeros).
fn survive_data(file: &FileState, rng: &mut SplitMix64) -> Vec<u8> {
    let common = file
        .data
        .iter()
        .zip(&file.durable)
        .take_while(|(a, b)| a == b)
        .count();
    if common < file.durable.len() {
        // Truncated or rewritten since its last fsync: the old or a prefix of the new.
        if rng.coin() {
            return file.durable.clone();
        }
        let len = rng.between(common, file.data.len());
        return file.data[..len].to_vec();
    }
    let len = rng.between(file.durable.len(), file.data.len());
    let mut out = file.data[..len].to_vec();
    let mut page_start = file.durable.len() - file.durable.len() % PAGE;
    while page_start < len {
        let page_end = (page_start + PAGE).min(len);
        if rng.below(4) == 0 {
            let from = page_start.max(file.durable.len());
            out[from..page_end].fill(0);
        }
        page_start = page_end;
    }
    out
}

impl State {
    fn used(&self) -> u64 {
        self.files.values().map(|f| f.data.len() as u64).sum()
    }

    /// Counts a mutating operation; true when it is the crash point (the caller applies it,
    /// possibly in part, then the disk is dead).
    fn step(&mut self, kind: &'static str) -> io::Result<bool> {
        if self.dead {
            return Err(dead());
        }
        self.ops += 1;
        let crash = self.faults.crash_at_op == Some(self.ops);
        if crash {
            self.crashed_in = Some(kind);
        }
        Ok(crash)
    }

    /// The directory inode holding `path`'s last component, and that component.
    fn parent_of<'p>(&self, path: &'p Path) -> io::Result<(u64, &'p str)> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
        let parent = path.parent().ok_or_else(not_found)?;
        match self.lookup(parent)? {
            Node::Dir(ino) => Ok((ino, name)),
            Node::File(_) => Err(io::Error::new(io::ErrorKind::NotADirectory, "not a dir")),
        }
    }

    fn lookup(&self, path: &Path) -> io::Result<Node> {
        let mut node = Node::Dir(ROOT);
        for component in path.components() {
            let name = match component {
                Component::RootDir | Component::CurDir => continue,
                Component::Normal(name) => name.to_str().ok_or_else(not_found)?,
                _ => return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad path")),
            };
            let Node::Dir(dir) = node else {
                return Err(not_found());
            };
            node = *self
                .dirs
                .get(&dir)
                .and_then(|entries| entries.get(name))
                .ok_or_else(not_found)?;
        }
        Ok(node)
    }

    fn file(&mut self, ino: u64) -> io::Result<&mut FileState> {
        self.files.get_mut(&ino).ok_or_else(not_found)
    }

    fn open(&mut self, path: &Path, create: bool) -> io::Result<u64> {
        if let Ok(node) = self.lookup(path) {
            return match node {
                Node::File(ino) => Ok(ino),
                Node::Dir(_) => Err(io::Error::new(io::ErrorKind::IsADirectory, "a dir")),
            };
        }
        if !create {
            return Err(not_found());
        }
        let (dir, name) = self.parent_of(path)?;
        let crash = self.step("create file")?;
        let ino = self.next_inode;
        self.next_inode += 1;
        self.files.insert(ino, FileState::default());
        if let Some(entries) = self.dirs.get_mut(&dir) {
            entries.insert(name.to_string(), Node::File(ino));
        }
        self.dead |= crash;
        Ok(ino)
    }

    fn sync_file(&mut self, ino: u64) -> io::Result<()> {
        let crash = self.step("fsync file")?;
        self.syncs += 1;
        let fail = self.faults.fail_sync_at == Some(self.syncs);
        let file = self.file(ino)?;
        if fail {
            file.writeback_lost = true;
            return Err(io::Error::other("injected fsync failure (EIO)"));
        }
        if !file.writeback_lost && !crash {
            file.durable = file.data.clone();
        }
        if crash {
            self.dead = true;
            return Err(dead());
        }
        Ok(())
    }
}

impl Disk for SimDisk {
    fn open_append(&self, path: &Path, create: bool) -> io::Result<Arc<dyn DiskFile>> {
        let ino = self.lock().open(path, create)?;
        Ok(Arc::new(SimFile {
            disk: self.clone(),
            ino,
        }))
    }

    fn create_empty(&self, path: &Path) -> io::Result<Arc<dyn DiskFile>> {
        let file = self.open_append(path, true)?;
        file.set_len(0)?;
        Ok(file)
    }

    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        let state = self.lock();
        match state.lookup(path)? {
            Node::File(ino) => Ok(state.files.get(&ino).ok_or_else(not_found)?.data.clone()),
            Node::Dir(_) => Err(io::Error::new(io::ErrorKind::IsADirectory, "a dir")),
        }
    }

    fn exists(&self, path: &Path) -> bool {
        self.lock().lookup(path).is_ok()
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        let mut current = ROOT;
        for component in path.components() {
            let name = match component {
                Component::RootDir | Component::CurDir => continue,
                Component::Normal(name) => name.to_str().ok_or_else(not_found)?,
                _ => return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad path")),
            };
            let existing = state.dirs.get(&current).and_then(|e| e.get(name)).copied();
            current = match existing {
                Some(Node::Dir(ino)) => ino,
                Some(Node::File(_)) => {
                    return Err(io::Error::new(io::ErrorKind::NotADirectory, "a file"));
                }
                None => {
                    let crash = state.step("create dir")?;
                    let ino = state.next_inode;
                    state.next_inode += 1;
                    state.dirs.insert(ino, Entries::new());
                    if let Some(entries) = state.dirs.get_mut(&current) {
                        entries.insert(name.to_string(), Node::Dir(ino));
                    }
                    if crash {
                        state.dead = true;
                        return Err(dead());
                    }
                    ino
                }
            };
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let state = self.lock();
        let Node::Dir(ino) = state.lookup(path)? else {
            return Err(io::Error::new(io::ErrorKind::NotADirectory, "a file"));
        };
        Ok(state
            .dirs
            .get(&ino)
            .map(|entries| {
                entries
                    .iter()
                    .map(|(name, node)| DirEntry {
                        name: name.clone(),
                        is_dir: matches!(node, Node::Dir(_)),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        let (dir, name) = state.parent_of(path)?;
        if !matches!(state.lookup(path)?, Node::File(_)) {
            return Err(io::Error::new(io::ErrorKind::IsADirectory, "a dir"));
        }
        let crash = state.step("remove file")?;
        if let Some(entries) = state.dirs.get_mut(&dir) {
            entries.remove(name);
        }
        state.dead |= crash;
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        let (dir, name) = state.parent_of(path)?;
        state.lookup(path)?;
        let crash = state.step("remove dir")?;
        // The subtree's inodes stay: a power cut may bring the entry back.
        if let Some(entries) = state.dirs.get_mut(&dir) {
            entries.remove(name);
        }
        state.dead |= crash;
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        let node = state.lookup(from)?;
        let (from_dir, from_name) = state.parent_of(from)?;
        let (to_dir, to_name) = state.parent_of(to)?;
        let crash = state.step("rename")?;
        if let Some(entries) = state.dirs.get_mut(&from_dir) {
            entries.remove(from_name);
        }
        if let Some(entries) = state.dirs.get_mut(&to_dir) {
            entries.insert(to_name.to_string(), node);
        }
        state.dead |= crash;
        Ok(())
    }

    fn available_space(&self, _path: &Path) -> io::Result<u64> {
        let state = self.lock();
        Ok(state
            .faults
            .capacity
            .map_or(u64::MAX, |capacity| capacity.saturating_sub(state.used())))
    }

    fn total_space(&self, _path: &Path) -> io::Result<u64> {
        Ok(self.lock().faults.capacity.unwrap_or(u64::MAX))
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        let Node::Dir(ino) = state.lookup(path)? else {
            return Err(io::Error::new(io::ErrorKind::NotADirectory, "a file"));
        };
        let crash = state.step("fsync dir")?;
        if crash {
            state.dead = true;
            return Err(dead());
        }
        let entries = state.dirs.get(&ino).cloned().unwrap_or_default();
        state.durable_dirs.insert(ino, entries);
        Ok(())
    }
}

/// An open file of a [`SimDisk`]: it follows the inode, not the name.
#[derive(Debug)]
struct SimFile {
    disk: SimDisk,
    ino: u64,
}

impl DiskFile for SimFile {
    fn append(&self, bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
        let mut state = self.disk.lock();
        let crash = state.step("append")?;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if let Some(capacity) = state.faults.capacity
            && state.used() + total as u64 > capacity
        {
            state.dead |= crash;
            return Err(io::ErrorKind::StorageFull.into());
        }
        // At the crash point only a prefix of the write lands (a torn write).
        let keep = if crash {
            state.rng.between(0, total)
        } else {
            total
        };
        let now = crate::log::now_ms();
        let file = state.file(self.ino)?;
        let mut left = keep;
        for buf in bufs.iter() {
            let take = left.min(buf.len());
            file.data.extend_from_slice(&buf[..take]);
            left -= take;
        }
        file.modified_ms = now;
        if crash {
            state.dead = true;
            return Err(dead());
        }
        Ok(())
    }

    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        let state = self.disk.lock();
        let file = state.files.get(&self.ino).ok_or_else(not_found)?;
        let start =
            usize::try_from(pos).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let end = start
            .checked_add(buf.len())
            .filter(|end| *end <= file.data.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(&file.data[start..end]);
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        let state = self.disk.lock();
        Ok(state.files.get(&self.ino).ok_or_else(not_found)?.data.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.disk.lock();
        let crash = state.step("truncate")?;
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        state.file(self.ino)?.data.resize(len, 0);
        state.dead |= crash;
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.disk.lock().sync_file(self.ino)
    }

    fn sync_all(&self) -> io::Result<()> {
        self.disk.lock().sync_file(self.ino)
    }

    fn modified_ms(&self) -> Option<i64> {
        let state = self.disk.lock();
        state.files.get(&self.ino).map(|f| f.modified_ms)
    }
}

fn not_found() -> io::Error {
    io::ErrorKind::NotFound.into()
}

fn dead() -> io::Error {
    io::Error::other("simulated power loss: the disk is gone")
}

/// A small deterministic generator (SplitMix64): seeds replay exactly.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo) as u64 + 1) as usize
    }

    pub fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
}

#[cfg(test)]
mod tests;
