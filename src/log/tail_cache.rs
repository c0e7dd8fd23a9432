//! The newest batches of each partition, kept in memory for consumers at the log end. Segment
//! logs are written with O_DIRECT, so the page cache does not hold what was just written: a
//! tailing fetch would read it back from the disk, and wait for it. From here it is a memory
//! copy, or no copy at all when the answer is most of one chunk.
//!
//! Each partition keeps a contiguous run of its newest batches, at most
//! `PARTITION_MAX_BYTES`, as chunks (one per write of the partition's share of a group). All
//! partitions share one byte budget (`tail_cache_bytes`): when it is spent, the partition
//! written longest ago is emptied first, so idle partitions never hold memory a busy one
//! needs, and a partition not written for a while (`TAIL_CACHE_IDLE` in the broker) gives its
//! memory up. The cache is an accelerator only: a fetch it cannot answer reads the segments.
//!
//! Only partitions that fetches read are cached: copying every written batch costs about a
//! quarter of the broker's CPU under a produce-only load, for nobody. A partition fetched
//! within `READER_WINDOW` caches its writes; the first writes after a reader arrives fill it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::batch::BatchHeader;
use super::segment::{AppendBatch, SegmentRead};

/// Most bytes one partition keeps: a consumer further behind than this reads the segments.
pub const PARTITION_MAX_BYTES: usize = 4 << 20;

/// A partition caches its writes while a fetch read it this recently. Consumers at the log end
/// fetch again at least every `fetch.max.wait.ms` (500 ms by default, kafkajs 5 s).
pub const READER_WINDOW: Duration = Duration::from_secs(10);

/// Bytes of a batch header up to and including lastOffsetDelta.
const EXTENT_LEN: usize = 27;

/// The byte budget all partitions' caches share.
pub struct TailBudget {
    limit: usize,
    used: AtomicUsize,
    epoch: Instant,
    /// The caches that may hold memory, for eviction once the budget is spent.
    holders: Mutex<Vec<Weak<TailCache>>>,
}

impl std::fmt::Debug for TailBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TailBudget")
            .field("limit", &self.limit)
            .field("used", &self.used())
            .finish()
    }
}

impl TailBudget {
    pub fn new(limit: usize) -> Arc<TailBudget> {
        Arc::new(TailBudget {
            limit,
            used: AtomicUsize::new(0),
            epoch: Instant::now(),
            holders: Mutex::new(Vec::new()),
        })
    }

    /// Milliseconds since the budget was made: the cache's clock.
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Bytes cached over all partitions.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    fn holders(&self) -> MutexGuard<'_, Vec<Weak<TailCache>>> {
        self.holders.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Takes `bytes` from the budget, emptying the caches written longest ago (never `me`)
    /// while it is spent. False when even that cannot make room.
    fn reserve(&self, bytes: usize, me: &TailCache) -> bool {
        loop {
            let used = self.used.load(Ordering::Acquire);
            if used + bytes <= self.limit {
                if self
                    .used
                    .compare_exchange(used, used + bytes, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return true;
                }
                continue;
            }
            if !self.evict_stalest(me) {
                return false;
            }
        }
    }

    /// Empties the caches not written for `idle`: a consumer at their log end has read them
    /// by then, and an idle partition should not hold memory. Returns how many it emptied.
    pub fn expire_idle(&self, idle: Duration) -> usize {
        let now = self.now_ms();
        let cutoff = now.saturating_sub(idle.as_millis() as u64);
        let mut stale = Vec::new();
        self.holders().retain(|weak| match weak.upgrade() {
            Some(cache) if cache.last_push_ms.load(Ordering::Acquire) < cutoff => {
                cache.registered.store(false, Ordering::Release);
                stale.push(cache);
                false
            }
            Some(_) => true,
            None => false,
        });
        // Emptied outside the holders lock, as in eviction; a write meanwhile registers again.
        for cache in &stale {
            cache.clear();
        }
        stale.len()
    }

    /// Empties the cache (other than `me`) whose last write is the oldest.
    fn evict_stalest(&self, me: &TailCache) -> bool {
        let victim = {
            let mut holders = self.holders();
            holders.retain(|weak| weak.strong_count() > 0);
            let stalest = holders
                .iter()
                .enumerate()
                .filter_map(|(i, weak)| weak.upgrade().map(|cache| (i, cache)))
                .filter(|(_, cache)| !std::ptr::eq(cache.as_ref(), me) && cache.held() > 0)
                .min_by_key(|(_, cache)| cache.last_push_ms.load(Ordering::Acquire));
            let Some((index, cache)) = stalest else {
                return false;
            };
            holders.swap_remove(index);
            cache.registered.store(false, Ordering::Release);
            cache
        };
        // Emptied outside the holders lock: no thread ever holds both locks.
        victim.clear();
        true
    }
}

/// One partition's newest batches.
pub struct TailCache {
    budget: Arc<TailBudget>,
    chunks: Mutex<Chunks>,
    /// Bytes held, readable without the lock (eviction compares caches).
    held: AtomicUsize,
    /// When this cache was last written (ms since the budget's epoch).
    last_push_ms: AtomicU64,
    /// When a fetch last read the partition (ms since the budget's epoch, plus one: 0 is never).
    last_read_ms: AtomicU64,
    /// Listed in the budget's holders.
    registered: AtomicBool,
}

impl std::fmt::Debug for TailCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TailCache")
            .field("held", &self.held())
            .finish()
    }
}

#[derive(Default)]
struct Chunks {
    chunks: VecDeque<Chunk>,
    bytes: usize,
}

/// Batches written together, exactly as they are on disk.
struct Chunk {
    base_offset: i64,
    /// One past the last offset of the chunk's last batch.
    next_offset: i64,
    data: Bytes,
}

impl TailCache {
    pub fn new(budget: &Arc<TailBudget>) -> Arc<TailCache> {
        Arc::new(TailCache {
            budget: budget.clone(),
            chunks: Mutex::new(Chunks::default()),
            held: AtomicUsize::new(0),
            last_push_ms: AtomicU64::new(0),
            last_read_ms: AtomicU64::new(0),
            registered: AtomicBool::new(false),
        })
    }

    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// Notes that a fetch read the partition, so that its next writes are cached.
    pub fn note_reader(&self) {
        let now = self.budget.now_ms() + 1;
        // Most fetches find it already set this millisecond: skip the shared-line write.
        if self.last_read_ms.load(Ordering::Relaxed) != now {
            self.last_read_ms.store(now, Ordering::Release);
        }
    }

    /// Whether a fetch read the partition within `READER_WINDOW` of `now`.
    fn has_reader(&self, now: u64) -> bool {
        let last = self.last_read_ms.load(Ordering::Acquire);
        last != 0 && (now + 1).saturating_sub(last) <= READER_WINDOW.as_millis() as u64
    }

    fn lock(&self) -> MutexGuard<'_, Chunks> {
        self.chunks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Empties the cache (a write failed, or another partition needs the budget).
    pub fn clear(&self) {
        let mut chunks = self.lock();
        let bytes = std::mem::take(&mut chunks.bytes);
        chunks.chunks.clear();
        self.held.store(0, Ordering::Release);
        drop(chunks);
        self.budget.release(bytes);
    }

    /// Adds batches the writer has just written, in offset order after everything written
    /// before them, when a fetch read the partition lately. Only the partition's writer calls
    /// this, one call at a time.
    pub fn push(self: &Arc<Self>, batches: &[AppendBatch]) {
        let (Some(first), Some(last)) = (batches.first(), batches.last()) else {
            return;
        };
        let now = self.budget.now_ms();
        if !self.has_reader(now) {
            // What it holds would be followed by a gap: give it up now, not at expiry.
            if self.held() > 0 {
                self.clear();
            }
            return;
        }
        let bytes: usize = batches.iter().map(|b| b.bytes.len()).sum();
        let base_offset = first.base_offset;
        let next_offset = last.last_offset + 1;
        if bytes > PARTITION_MAX_BYTES || bytes > self.budget.limit {
            self.clear();
            return;
        }
        self.last_push_ms.store(now, Ordering::Release);
        // Room in this partition first, then in the shared budget.
        let freed = {
            let mut chunks = self.lock();
            let mut freed = 0;
            if chunks
                .chunks
                .back()
                .is_some_and(|c| c.next_offset != base_offset)
            {
                freed += std::mem::take(&mut chunks.bytes);
                chunks.chunks.clear();
            }
            while chunks.bytes + bytes > PARTITION_MAX_BYTES {
                let Some(oldest) = chunks.chunks.pop_front() else {
                    break;
                };
                chunks.bytes -= oldest.data.len();
                freed += oldest.data.len();
            }
            self.held.store(chunks.bytes, Ordering::Release);
            freed
        };
        self.budget.release(freed);
        if !self.budget.reserve(bytes, self) {
            // Skipping these batches would leave a gap: start again after them.
            self.clear();
            return;
        }
        let mut data = BytesMut::with_capacity(bytes);
        for batch in batches {
            data.extend_from_slice(&batch.prefix);
            data.extend_from_slice(batch.bytes.get(16..).unwrap_or_default());
        }
        {
            let mut chunks = self.lock();
            chunks.bytes += bytes;
            chunks.chunks.push_back(Chunk {
                base_offset,
                next_offset,
                data: data.freeze(),
            });
            self.held.store(chunks.bytes, Ordering::Release);
        }
        if !self.registered.swap(true, Ordering::AcqRel) {
            self.budget.holders().push(Arc::downgrade(self));
        }
    }

    /// Whole batches from the one holding `offset`, as `Segment::read` answers, or `None`
    /// when the cache does not hold `offset` (the caller reads the segments).
    pub fn read(
        &self,
        offset: i64,
        limit_offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Option<SegmentRead> {
        let candidates: Vec<Bytes> = {
            let chunks = self.lock();
            let front = chunks.chunks.front()?;
            let back = chunks.chunks.back()?;
            if offset < front.base_offset || offset >= back.next_offset {
                return None;
            }
            let first = chunks.chunks.partition_point(|c| c.next_offset <= offset);
            // The first chunk, then enough chunks for `max_bytes` (more cannot be returned).
            let mut after_first = 0;
            let mut candidates = Vec::new();
            for (i, chunk) in chunks.chunks.range(first..).enumerate() {
                if i > 0 && after_first > max_bytes {
                    break;
                }
                if i > 0 {
                    after_first += chunk.data.len();
                }
                candidates.push(chunk.data.clone());
            }
            candidates
        };
        Some(collect_batches(
            &candidates,
            offset,
            limit_offset,
            max_bytes,
            min_one,
        ))
    }
}

impl Drop for TailCache {
    fn drop(&mut self) {
        let bytes = self.chunks.get_mut().map_or(0, |c| c.bytes);
        self.budget.release(bytes);
    }
}

/// (base offset, last offset, size) of the batch at the start of `buf`.
fn extent(buf: &[u8]) -> Option<(i64, i64, usize)> {
    let header = buf.get(..EXTENT_LEN)?;
    let (base, size) = BatchHeader::peek_extent(header)?;
    let delta = i32::from_be_bytes([header[23], header[24], header[25], header[26]]);
    (size <= buf.len()).then_some((base, base + i64::from(delta), size))
}

/// The batches of `chunks` (contiguous, the first holding `offset`) that a fetch at `offset`
/// gets: from the batch holding it, below `limit_offset`, within `max_bytes` but at least one
/// batch with `min_one` (KIP-74).
fn collect_batches(
    chunks: &[Bytes],
    offset: i64,
    limit_offset: i64,
    max_bytes: usize,
    min_one: bool,
) -> SegmentRead {
    // (chunk, start, end) ranges of whole batches to return.
    let mut ranges: Vec<(usize, usize, usize)> = Vec::new();
    let mut total = 0usize;
    let mut want = max_bytes;
    'chunks: for (i, chunk) in chunks.iter().enumerate() {
        let mut pos = 0;
        while let Some((base, last, size)) = extent(&chunk[pos..]) {
            if ranges.is_empty() && total == 0 && last < offset {
                pos += size;
                continue;
            }
            if base >= limit_offset {
                break 'chunks;
            }
            if total == 0 {
                if min_one {
                    want = want.max(size);
                }
                if size > want {
                    return SegmentRead::DoesNotFit;
                }
            } else if total + size > want {
                break 'chunks;
            }
            match ranges.last_mut() {
                Some((c, _, end)) if *c == i => *end = pos + size,
                _ => ranges.push((i, pos, pos + size)),
            }
            total += size;
            pos += size;
        }
    }
    match ranges.as_slice() {
        [] => SegmentRead::Uncommitted,
        // A slice keeps its whole chunk alive until the response is written, after the cache
        // may have given the chunk up: only an answer of most of a chunk is not copied.
        [(chunk, start, end)] if 2 * (end - start) >= chunks[*chunk].len() => {
            SegmentRead::Data(chunks[*chunk].slice(*start..*end))
        }
        _ => {
            // Several chunks, or a small part of one: copied.
            let mut out = BytesMut::with_capacity(total);
            for (chunk, start, end) in &ranges {
                out.extend_from_slice(&chunks[*chunk][*start..*end]);
            }
            SegmentRead::Data(out.freeze())
        }
    }
}

#[cfg(test)]
mod tests;
