//! Segment log files written with `O_DIRECT`: appends go from a recycled, block-aligned
//! buffer straight to the device, so the kernel neither copies them into the page cache nor
//! allocates fresh page-cache folios for them, the broker's largest CPU cost with buffered
//! writes on this kind of machine (see docs/benchmarks.md). Reads still go through the page
//! cache on a second, buffered descriptor.
//!
//! `O_DIRECT` writes whole aligned blocks, so the file's last, partly filled block is kept in
//! memory and written again, padded with zeros, with each append: the file may end in up to
//! one block of zeros past the logical end, which recovery drops like any torn tail. Reads of
//! that partial block are answered from memory: a direct write invalidates the page cache
//! over its range, but cannot if a reader holds the page at that moment, and a stale copy of
//! the old partial block must never be served. For the same reason fetches send only whole
//! blocks from the file with `sendfile` (`send_source`); on kernels whose pages are larger
//! than a block, a page may still span the partial block, as for any read of whole blocks.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use super::DiskFile;

/// Alignment of offsets, lengths and buffers for `O_DIRECT` (covers 512 B and 4 KiB devices).
pub const BLOCK: usize = 4096;
/// One write's size at most; each writer thread keeps one aligned buffer of this size.
const CHUNK: usize = 1 << 20;

/// A block-aligned buffer, allocated once per thread and reused: no first-touch page faults
/// per write. Aligned by offsetting into a slightly larger `Vec` (no unsafe code).
struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
}

impl AlignedBuf {
    fn new() -> AlignedBuf {
        let raw = vec![0u8; CHUNK + BLOCK];
        let start = raw.as_ptr().align_offset(BLOCK).min(BLOCK);
        AlignedBuf { raw, start }
    }

    fn chunk(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + CHUNK]
    }
}

thread_local! {
    static SCRATCH: RefCell<Option<AlignedBuf>> = const { RefCell::new(None) };
}

#[derive(Debug)]
struct Tail {
    /// Logical length: the bytes appended, without padding.
    len: u64,
    /// The bytes of the last, partial block: `[len - block.len(), len)`.
    block: Vec<u8>,
}

#[derive(Debug)]
pub struct DirectFile {
    writer: File,
    /// Shared with the file slices that fetches send from.
    reader: Arc<File>,
    /// Held by the one appender for the whole append (appends come from one writer at a
    /// time anyway); readers take only `tail`, briefly.
    appending: Mutex<()>,
    tail: Mutex<Tail>,
}

impl DirectFile {
    /// Opens `path` for direct appends; `Ok(None)` when the file system refuses `O_DIRECT`
    /// (tmpfs on older kernels, some network file systems): the caller falls back to
    /// buffered writes.
    pub fn open(path: &Path, create: bool) -> io::Result<Option<DirectFile>> {
        let writer = match OpenOptions::new()
            .write(true)
            .create(create)
            .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
            .open(path)
        {
            Ok(file) => file,
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let reader = Arc::new(File::open(path)?);
        let len = reader.metadata()?.len();
        let file = DirectFile {
            writer,
            reader,
            appending: Mutex::new(()),
            tail: Mutex::new(Tail {
                len: 0,
                block: Vec::new(),
            }),
        };
        file.load_tail(len)?;
        Ok(Some(file))
    }

    fn lock(&self) -> MutexGuard<'_, Tail> {
        self.tail.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the partial last block of a file `len` bytes long into memory.
    fn load_tail(&self, len: u64) -> io::Result<()> {
        let start = len - len % BLOCK as u64;
        let mut block = vec![0u8; (len - start) as usize];
        self.reader.read_exact_at(&mut block, start)?;
        *self.lock() = Tail { len, block };
        Ok(())
    }
}

impl DiskFile for DirectFile {
    fn append(&self, bufs: &mut [io::IoSlice<'_>]) -> io::Result<()> {
        let _appending = self.appending.lock().unwrap_or_else(|e| e.into_inner());
        SCRATCH.with(|cell| {
            let mut slot = cell.borrow_mut();
            let buf = slot.get_or_insert_with(AlignedBuf::new).chunk();
            // Readers keep using the old tail while the blocks from it on are rewritten.
            let (mut pos, mut filled, mut len) = {
                let tail = self.lock();
                buf[..tail.block.len()].copy_from_slice(&tail.block);
                (
                    tail.len - tail.block.len() as u64,
                    tail.block.len(),
                    tail.len,
                )
            };
            for slice in bufs.iter() {
                let mut data: &[u8] = slice;
                while !data.is_empty() {
                    let n = (CHUNK - filled).min(data.len());
                    buf[filled..filled + n].copy_from_slice(&data[..n]);
                    filled += n;
                    len += n as u64;
                    data = &data[n..];
                    if filled == CHUNK {
                        self.writer.write_all_at(buf, pos)?;
                        pos += CHUNK as u64;
                        filled = 0;
                    }
                }
            }
            if filled > 0 {
                let padded = filled.div_ceil(BLOCK) * BLOCK;
                buf[filled..padded].fill(0);
                self.writer.write_all_at(&buf[..padded], pos)?;
            }
            // Only now, with every byte written, does the appended data count.
            let whole = filled - filled % BLOCK;
            let mut tail = self.lock();
            tail.block.clear();
            tail.block.extend_from_slice(&buf[whole..filled]);
            tail.len = len;
            Ok(())
        })
    }

    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        let (tail_start, len, block) = {
            let tail = self.lock();
            let start = tail.len - tail.block.len() as u64;
            let end = pos + buf.len() as u64;
            if end <= start {
                (start, tail.len, None)
            } else {
                (start, tail.len, Some(tail.block.clone()))
            }
        };
        let end = pos + buf.len() as u64;
        if end > len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let Some(block) = block else {
            return self.reader.read_exact_at(buf, pos);
        };
        // The part before the partial block from the file, the rest from memory.
        let from_file = tail_start.saturating_sub(pos).min(buf.len() as u64) as usize;
        if from_file > 0 {
            self.reader.read_exact_at(&mut buf[..from_file], pos)?;
        }
        let offset = (pos + from_file as u64 - tail_start) as usize;
        let rest = buf.len() - from_file;
        buf[from_file..].copy_from_slice(&block[offset..offset + rest]);
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.lock().len)
    }

    /// Only whole blocks: the page cache may hold a stale copy of the partial last block
    /// (see the module comment), which reads answer from memory instead.
    fn send_source(&self) -> Option<(Arc<File>, u64)> {
        let tail = self.lock();
        Some((self.reader.clone(), tail.len - tail.block.len() as u64))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.writer.set_len(len)?;
        self.load_tail(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.writer.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.writer.sync_all()
    }

    fn trim(&self) -> io::Result<()> {
        let _appending = self.appending.lock().unwrap_or_else(|e| e.into_inner());
        let len = self.lock().len;
        if self.writer.metadata()?.len() > len {
            self.writer.set_len(len)?;
        }
        Ok(())
    }

    fn modified_ms(&self) -> Option<i64> {
        let modified = self.reader.metadata().and_then(|m| m.modified()).ok()?;
        let since = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
        Some(since.as_millis() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::IoSlice;

    fn pattern(from: usize, len: usize) -> Vec<u8> {
        (from..from + len).map(|i| (i % 251) as u8).collect()
    }

    fn open(path: &Path, create: bool) -> Option<DirectFile> {
        DirectFile::open(path, create).unwrap_or_else(|e| panic!("open: {e}"))
    }

    #[test]
    fn appends_of_every_size_read_back_exactly_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("seg.log");
        let Some(file) = open(&path, true) else {
            eprintln!("O_DIRECT not supported here: skipped");
            return;
        };
        let mut written = 0usize;
        // Within a block, across blocks, exactly a block, across the 1 MiB chunk, empty.
        for size in [1, 100, 4095, 1, 4096, 5000, CHUNK + 3, 0, 3 * CHUNK - 7, 12] {
            let data = pattern(written, size);
            let (a, b) = data.split_at(size / 2);
            file.append(&mut [IoSlice::new(a), IoSlice::new(b)])
                .unwrap_or_else(|e| panic!("append {size}: {e}"));
            written += size;
            assert_eq!(file.size().ok(), Some(written as u64));
        }
        let all = pattern(0, written);
        for (pos, len) in [
            (0, written),
            (4090, 10),
            (written - 3, 3),
            (written - 5000, 4999),
        ] {
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, pos as u64)
                .unwrap_or_else(|e| panic!("read {pos}+{len}: {e}"));
            assert_eq!(buf, all[pos..pos + len], "read {pos}+{len}");
        }
        let mut past = [0u8; 2];
        assert!(file.read_exact_at(&mut past, written as u64 - 1).is_err());
        file.sync_data().unwrap_or_else(|e| panic!("{e}"));
        drop(file);

        // On disk: the data, then zeros up to the next block boundary.
        let on_disk = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(on_disk.len(), written.div_ceil(BLOCK) * BLOCK);
        assert_eq!(on_disk[..written], all[..]);
        assert!(on_disk[written..].iter().all(|b| *b == 0));

        // Reopened as recovery does: trimmed to the valid length, then appended to.
        let Some(file) = open(&path, false) else {
            return;
        };
        file.set_len(written as u64)
            .unwrap_or_else(|e| panic!("{e}"));
        let more = pattern(written, 7000);
        file.append(&mut [IoSlice::new(&more)])
            .unwrap_or_else(|e| panic!("{e}"));
        let total = written + 7000;
        let mut buf = vec![0u8; total];
        file.read_exact_at(&mut buf, 0)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(buf, pattern(0, total));
        // Truncation into the middle of a block keeps that block's head in memory.
        file.set_len(10_000).unwrap_or_else(|e| panic!("{e}"));
        file.append(&mut [IoSlice::new(b"xyz")])
            .unwrap_or_else(|e| panic!("{e}"));
        let mut buf = vec![0u8; 10_003];
        file.read_exact_at(&mut buf, 0)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(buf[..10_000], pattern(0, 10_000)[..]);
        assert_eq!(&buf[10_000..], b"xyz");
    }

    /// `sendfile` reads through the page cache, which may hold a stale copy of the partial
    /// last block: only whole blocks are offered, and they read back as written.
    #[test]
    fn only_whole_blocks_are_offered_to_sendfile() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let Some(file) = open(&dir.path().join("seg.log"), true) else {
            eprintln!("O_DIRECT not supported here: skipped");
            return;
        };
        let written = 3 * BLOCK + 100;
        let data = pattern(0, written);
        file.append(&mut [IoSlice::new(&data)])
            .unwrap_or_else(|e| panic!("{e}"));
        let whole = (3 * BLOCK) as u64;
        let Some((source, end)) = file.send_source() else {
            panic!("whole blocks are offered");
        };
        assert_eq!(end, whole);
        let mut buf = vec![0u8; (whole - 10) as usize];
        source
            .read_exact_at(&mut buf, 10)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(buf, data[10..whole as usize]);
        // Once the block fills, it is offered too.
        let more = pattern(written, BLOCK - 100);
        file.append(&mut [IoSlice::new(&more)])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(file.send_source().map(|s| s.1), Some((4 * BLOCK) as u64));
    }
}
