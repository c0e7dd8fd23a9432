//! The free-space guard. Produce is refused while the file system holding the data
//! directory has less than `disk_min_free_bytes` available, and accepted again as soon as
//! space is freed. Refusing early keeps ENOSPC away from the log writer: a write that fails
//! there leaves the partition's queued offsets unwritable, so the partition is fenced until
//! a restart, while a refused produce costs nothing but a retry.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tracing::{info, warn};

use super::Disk;

/// How often the monitor thread re-reads the free space (the writer also does after every
/// group it writes, so a fast producer trips the guard without waiting for this).
const CHECK_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Debug)]
pub struct SpaceGuard {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    min_free: u64,
    low: AtomicBool,
    available: AtomicU64,
}

impl SpaceGuard {
    /// A guard for `dir`, checked once now; `min_free` 0 turns it off.
    pub fn new(disk: Arc<dyn Disk>, dir: &Path, min_free: u64) -> Arc<SpaceGuard> {
        let guard = Arc::new(SpaceGuard {
            disk,
            dir: dir.to_path_buf(),
            min_free,
            low: AtomicBool::new(false),
            available: AtomicU64::new(u64::MAX),
        });
        guard.refresh();
        guard
    }

    /// Whether produce is to be refused for lack of space.
    pub fn is_low(&self) -> bool {
        self.low.load(Ordering::Acquire)
    }

    /// Bytes available at the last check.
    pub fn available(&self) -> u64 {
        self.available.load(Ordering::Acquire)
    }

    pub fn min_free(&self) -> u64 {
        self.min_free
    }

    /// Reads the free space again; returns whether it is low. A failed check keeps the
    /// previous state (the next write, if the disk really is gone, fails on its own).
    pub fn refresh(&self) -> bool {
        if self.min_free == 0 {
            return false;
        }
        let available = match self.disk.available_space(&self.dir) {
            Ok(available) => available,
            Err(e) => {
                warn!(dir = %self.dir.display(), error = %e, "cannot read the free disk space");
                return self.is_low();
            }
        };
        self.available.store(available, Ordering::Release);
        let low = available < self.min_free;
        if self.low.swap(low, Ordering::AcqRel) != low {
            if low {
                warn!(available, min_free = self.min_free, dir = %self.dir.display(),
                    "disk space low: produce is refused until space is freed");
            } else {
                info!(available, min_free = self.min_free, dir = %self.dir.display(),
                    "disk space available again: produce accepted");
            }
        }
        low
    }

    /// Starts the thread that re-checks the free space while the guard lives, so that produce
    /// resumes once space is freed even though nothing is being written.
    pub fn spawn_monitor(self: &Arc<SpaceGuard>) -> std::io::Result<()> {
        if self.min_free == 0 {
            return Ok(());
        }
        let guard: Weak<SpaceGuard> = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("weir-disk-space".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(CHECK_INTERVAL);
                    let Some(guard) = guard.upgrade() else { return };
                    guard.refresh();
                }
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::disk::sim::{Faults, SimDisk};
    use std::io::IoSlice;

    #[test]
    fn low_space_is_seen_and_freed_space_clears_it() {
        let disk = SimDisk::new(1, Faults::default());
        let dir = Path::new("/data");
        disk.create_dir_all(dir).unwrap();
        let file = disk.open_append(&dir.join("f"), true).unwrap();
        disk.set_faults(Faults {
            capacity: Some(10_000),
            ..Faults::default()
        });
        let guard = SpaceGuard::new(Arc::new(disk.clone()), dir, 4_000);
        assert!(!guard.is_low());
        assert_eq!(guard.available(), 10_000);
        file.append(&mut [IoSlice::new(&[0; 7_000])]).unwrap();
        assert!(guard.refresh());
        assert!(guard.is_low());
        assert_eq!(guard.available(), 3_000);
        // Space freed (the file system grew): produce is accepted again.
        disk.set_faults(Faults {
            capacity: Some(20_000),
            ..Faults::default()
        });
        assert!(!guard.refresh());
        assert!(!guard.is_low());
    }

    #[test]
    fn zero_turns_the_guard_off() {
        let disk = SimDisk::new(1, Faults::default());
        disk.set_faults(Faults {
            capacity: Some(0),
            ..Faults::default()
        });
        let guard = SpaceGuard::new(Arc::new(disk), Path::new("/"), 0);
        assert!(!guard.refresh());
    }

    #[test]
    fn the_real_file_system_reports_space() {
        let dir = tempfile::tempdir().unwrap();
        let guard = SpaceGuard::new(crate::disk::os(), dir.path(), 1);
        assert!(guard.available() > 0 && guard.available() < u64::MAX);
        let huge = SpaceGuard::new(crate::disk::os(), dir.path(), u64::MAX);
        assert!(huge.is_low());
    }
}
