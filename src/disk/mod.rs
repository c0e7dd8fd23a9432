//! The storage seam: every file and directory operation of the log and the metadata goes
//! through [`Disk`]. [`OsDisk`] is the real file system; [`sim::SimDisk`] is an in-memory disk
//! that knows what was fsynced, so tests can cut the power at any operation, tear in-flight
//! writes, fail the k-th fsync or run out of space, and then recover from what a real disk
//! could have kept.

use std::fmt;
use std::io::{self, IoSlice};
use std::path::Path;
use std::sync::Arc;

mod direct;
mod os;
pub mod sim;
mod space;

pub use direct::BLOCK;
pub use os::OsDisk;
pub use space::SpaceGuard;

/// A directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub is_dir: bool,
}

/// File-system operations, by path.
pub trait Disk: Send + Sync + fmt::Debug {
    /// Opens a file for appends and positional reads; `create` makes it when missing.
    fn open_append(&self, path: &Path, create: bool) -> io::Result<Arc<dyn DiskFile>>;
    /// Opens a segment's log file for appends and positional reads: as `open_append`, unless
    /// the disk writes logs another way (`OsDisk` with `O_DIRECT`).
    fn open_log(&self, path: &Path, create: bool) -> io::Result<Arc<dyn DiskFile>> {
        self.open_append(path, create)
    }
    /// Creates a file, or empties an existing one, for appends and positional reads.
    fn create_empty(&self, path: &Path) -> io::Result<Arc<dyn DiskFile>>;
    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>>;
    fn exists(&self, path: &Path) -> bool;
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// fsync of a directory: makes its entries (created, renamed, removed) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Bytes an unprivileged writer can still add to the file system holding `path`.
    fn available_space(&self, path: &Path) -> io::Result<u64>;
    /// Size of the file system holding `path`.
    fn total_space(&self, path: &Path) -> io::Result<u64>;
}

/// An open file: appends at the end, reads anywhere.
pub trait DiskFile: Send + Sync + fmt::Debug {
    /// Writes every slice, in order, at the end of the file.
    fn append(&self, bufs: &mut [IoSlice<'_>]) -> io::Result<()>;
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()>;
    fn size(&self) -> io::Result<u64>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// fdatasync: the data written so far survives a power loss.
    fn sync_data(&self) -> io::Result<()>;
    /// fsync: data and metadata.
    fn sync_all(&self) -> io::Result<()>;
    /// Last modification, in milliseconds since the epoch.
    fn modified_ms(&self) -> Option<i64>;
    /// Drops whatever the file holds past its data (the zero padding of `O_DIRECT`
    /// appends), so a cleanly closed file ends at its last byte. Not durable by itself.
    fn trim(&self) -> io::Result<()> {
        Ok(())
    }
    /// A descriptor whose page-cache reads return exactly the file's data below the returned
    /// end, so `sendfile` may send from it; `None` when reads must go through
    /// `read_exact_at` (a simulated disk). An `O_DIRECT` file's end is its last whole block:
    /// the page cache may hold a stale copy of the partial one. The caller knows where the
    /// data it wrote ends.
    fn send_source(&self) -> Option<(Arc<std::fs::File>, u64)> {
        None
    }
}

/// The disk the broker runs on unless told otherwise (buffered log writes).
pub fn os() -> Arc<dyn Disk> {
    Arc::new(OsDisk::default())
}

/// The real file system with segment logs written as `io` says.
pub fn os_with(io: crate::config::LogWriteIo) -> Arc<dyn Disk> {
    Arc::new(OsDisk {
        direct_logs: io == crate::config::LogWriteIo::Direct,
    })
}

/// Writes `bytes` to `path` so that a crash leaves either the old or the new content:
/// temp file, fsync, rename, fsync of the directory.
pub fn write_atomically(disk: &dyn Disk, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("path has no parent directory"))?;
    let tmp = path.with_extension("tmp");
    let file = disk.create_empty(&tmp)?;
    file.append(&mut [IoSlice::new(bytes)])?;
    file.sync_all()?;
    drop(file);
    disk.rename(&tmp, path)?;
    disk.sync_dir(dir)
}

/// Creates `path` and any missing parents, each made durable in its parent directory
/// (a directory entry survives a power loss only once its parent is fsynced).
pub fn create_dir_durable(disk: &dyn Disk, path: &Path) -> io::Result<()> {
    if disk.exists(path) {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_durable(disk, parent)?;
        disk.create_dir_all(path)?;
        disk.sync_dir(parent)
    } else {
        disk.create_dir_all(path)
    }
}
