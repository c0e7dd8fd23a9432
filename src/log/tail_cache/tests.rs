use std::sync::Arc;

use kafka_protocol::records::Compression;

use super::*;
use crate::log::batch::patched_prefix;
use crate::log::batch::tests::sample_batch;
use crate::log::segment::{ReadInto, Segment};

fn batch(next: &mut i64, count: i64) -> AppendBatch {
    let bytes = sample_batch(count, 1_000 * *next, Compression::None);
    let batch = AppendBatch {
        prefix: patched_prefix(&bytes, *next, 0),
        base_offset: *next,
        last_offset: *next + count - 1,
        max_timestamp: 1_000 * *next + count - 1,
        bytes,
    };
    *next += count;
    batch
}

/// A partition's cache that a fetch has just read, so that it keeps what is pushed.
fn read_cache(budget: &Arc<TailBudget>) -> Arc<TailCache> {
    let cache = TailCache::new(budget);
    cache.note_reader();
    cache
}

fn same(a: &SegmentRead, b: &SegmentRead) -> bool {
    match (a, b) {
        (SegmentRead::Data(x), SegmentRead::Data(y)) => x == y,
        (SegmentRead::Uncommitted, SegmentRead::Uncommitted)
        | (SegmentRead::DoesNotFit, SegmentRead::DoesNotFit)
        | (SegmentRead::NotHere, SegmentRead::NotHere) => true,
        _ => false,
    }
}

#[test]
fn answers_exactly_as_the_segment_does() {
    let dir = tempfile::tempdir().unwrap();
    let segment = Segment::create(&crate::disk::os(), dir.path(), 0, 0, 0).unwrap();
    let cache = read_cache(&TailBudget::new(64 << 20));
    let mut next = 0;
    // Chunks of 1 to 4 batches of 1 to 5 records, as group writes produce them.
    for i in 0..30 {
        let batches: Vec<AppendBatch> = (0..=(i % 4))
            .map(|j| batch(&mut next, 1 + (i + j) % 5))
            .collect();
        segment.append(&batches).unwrap();
        cache.push(&batches);
    }
    let sizes: Vec<usize> = vec![0, 1, 70, 200, 500, 1_000, 5_000, 1 << 20];
    let mut compared = 0;
    for offset in 0..next {
        for limit in [offset, offset + 1, offset + 7, next - 3, next] {
            for &max_bytes in &sizes {
                for min_one in [false, true] {
                    let from_disk = segment
                        .read(offset, limit, max_bytes, min_one, ReadInto::Memory)
                        .unwrap();
                    let from_cache = cache.read(offset, limit, max_bytes, min_one).unwrap();
                    assert!(
                        same(&from_disk, &from_cache),
                        "offset {offset} limit {limit} max {max_bytes} min_one {min_one}: \
                         {from_disk:?} vs {from_cache:?}"
                    );
                    compared += 1;
                }
            }
        }
    }
    assert!(compared > 5_000);
    assert!(cache.read(next, next, 1 << 20, true).is_none());
    assert!(cache.read(-1, next, 1 << 20, true).is_none());
}

#[test]
fn keeps_only_the_newest_bytes_of_a_partition() {
    let budget = TailBudget::new(64 << 20);
    let cache = read_cache(&budget);
    let mut next = 0;
    let mut pushed = 0;
    while pushed < 3 * PARTITION_MAX_BYTES {
        let batches = vec![batch(&mut next, 200)];
        pushed += batches[0].bytes.len();
        cache.push(&batches);
    }
    assert!(cache.held() <= PARTITION_MAX_BYTES);
    assert!(cache.held() > PARTITION_MAX_BYTES / 2);
    assert_eq!(budget.used(), cache.held());
    // The oldest offsets are gone, the newest are served.
    assert!(cache.read(0, next, 1 << 20, true).is_none());
    assert!(matches!(
        cache.read(next - 1, next, 1 << 20, true),
        Some(SegmentRead::Data(_))
    ));
    drop(cache);
    assert_eq!(budget.used(), 0);
}

#[test]
fn a_gap_or_a_clear_starts_again() {
    let budget = TailBudget::new(64 << 20);
    let cache = read_cache(&budget);
    let mut next = 0;
    cache.push(&[batch(&mut next, 3)]);
    next += 10;
    cache.push(&[batch(&mut next, 3)]);
    assert!(cache.read(0, next, 1 << 20, true).is_none());
    assert!(cache.read(13, next, 1 << 20, true).is_some());
    cache.clear();
    assert!(cache.read(13, next, 1 << 20, true).is_none());
    assert_eq!(budget.used(), 0);
}

#[test]
fn a_spent_budget_empties_the_partition_written_longest_ago() {
    let one = batch(&mut 0, 100).bytes.len();
    let budget = TailBudget::new(3 * one);
    let caches: Vec<Arc<TailCache>> = (0..3).map(|_| read_cache(&budget)).collect();
    let mut nexts = [0i64; 3];
    for (cache, next) in caches.iter().zip(nexts.iter_mut()) {
        cache.push(&[batch(next, 100)]);
        std::thread::sleep(std::time::Duration::from_millis(3));
    }
    assert_eq!(budget.used(), 3 * one);
    // A fourth partition's write empties the first (the stalest), not the others.
    let newcomer = read_cache(&budget);
    let mut next = 0;
    newcomer.push(&[batch(&mut next, 100)]);
    assert_eq!(caches[0].held(), 0);
    assert_eq!(caches[1].held(), one);
    assert_eq!(caches[2].held(), one);
    assert_eq!(newcomer.held(), one);
    assert_eq!(budget.used(), 3 * one);
    // A write larger than the whole budget is not cached, and leaves nothing behind.
    let huge: Vec<AppendBatch> = (0..4).map(|_| batch(&mut next, 100)).collect();
    newcomer.push(&huge);
    assert_eq!(newcomer.held(), 0);
    assert!(newcomer.read(100, next, 1 << 20, true).is_none());
    drop(caches);
    drop(newcomer);
    assert_eq!(budget.used(), 0);
}

#[test]
fn idle_partitions_give_their_memory_up() {
    let budget = TailBudget::new(64 << 20);
    let idle = read_cache(&budget);
    let busy = read_cache(&budget);
    let (mut a, mut b) = (0, 0);
    idle.push(&[batch(&mut a, 50)]);
    std::thread::sleep(std::time::Duration::from_millis(30));
    busy.push(&[batch(&mut b, 50)]);
    assert_eq!(budget.expire_idle(std::time::Duration::from_millis(20)), 1);
    assert_eq!(idle.held(), 0);
    assert!(busy.held() > 0);
    assert_eq!(budget.used(), busy.held());
    // Written again, it is cached (and registered) again.
    idle.push(&[batch(&mut a, 50)]);
    assert!(idle.read(a - 1, a, 1 << 20, true).is_some());
    assert_eq!(budget.expire_idle(std::time::Duration::from_secs(60)), 0);
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert_eq!(budget.expire_idle(std::time::Duration::from_millis(1)), 2);
    assert_eq!(budget.used(), 0);
}

#[test]
fn only_partitions_fetched_lately_keep_their_writes() {
    // A clock started a minute ago, so that a read at its start is outside the window.
    let budget = Arc::new(TailBudget {
        limit: 64 << 20,
        used: AtomicUsize::new(0),
        epoch: Instant::now() - Duration::from_secs(60),
        holders: Mutex::new(Vec::new()),
    });
    let cache = TailCache::new(&budget);
    let mut next = 0;
    cache.push(&[batch(&mut next, 3)]);
    assert_eq!((cache.held(), budget.used()), (0, 0));
    assert!(cache.read(0, next, 1 << 20, true).is_none());
    // A fetch arrives: the writes after it are kept.
    cache.note_reader();
    cache.push(&[batch(&mut next, 3)]);
    assert!(cache.held() > 0);
    assert!(matches!(
        cache.read(3, next, 1 << 20, true),
        Some(SegmentRead::Data(_))
    ));
    // Its last fetch was a minute ago: the next write empties the cache.
    cache.last_read_ms.store(1, Ordering::Release);
    cache.push(&[batch(&mut next, 3)]);
    assert_eq!((cache.held(), budget.used()), (0, 0));
    assert!(cache.read(3, next, 1 << 20, true).is_none());
}

#[test]
fn only_answers_of_most_of_a_chunk_share_its_memory() {
    let cache = read_cache(&TailBudget::new(64 << 20));
    let mut next = 0;
    let batches: Vec<AppendBatch> = (0..10).map(|_| batch(&mut next, 5)).collect();
    cache.push(&batches);
    let chunk = cache.lock().chunks[0].data.clone();
    let start = chunk.as_ptr() as usize;
    let within = |b: &Bytes| (start..start + chunk.len()).contains(&(b.as_ptr() as usize));
    let Some(SegmentRead::Data(all)) = cache.read(0, next, 1 << 20, true) else {
        panic!("the cache holds offset 0");
    };
    assert!(within(&all) && all.len() == chunk.len());
    // The last batch alone is a tenth of the chunk: copied, so it does not keep the chunk.
    let Some(SegmentRead::Data(last)) = cache.read(next - 1, next, 1 << 20, true) else {
        panic!("the cache holds the last offset");
    };
    assert!(!within(&last));
    assert_eq!(&last[..], &chunk[chunk.len() - last.len()..]);
}
