//! Persistence flags and batch commit. Each append carries its own state, set by the writer's
//! completion without any lock; the commit step then advances the partition's high watermark
//! over the contiguous prefix of persisted appends in one pass, completes those appends and
//! wakes waiting fetches. A later append persisted before an earlier one waits for it.

use std::collections::VecDeque;
use std::sync::Arc;

// With the `loom` feature the queue's lock and flags are loom's, so `loom_tests` can explore
// every interleaving of writers, committers and readers (scripts/test runs it).
#[cfg(feature = "loom")]
use loom::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicBool, AtomicU8, Ordering},
};
#[cfg(not(feature = "loom"))]
use std::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicBool, AtomicU8, Ordering},
};

use tokio::sync::{Notify, watch};

/// How far an append has come. Ordered: each state implies the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Persistence {
    /// Offsets assigned, queued for the writer.
    Queued = 0,
    /// In the OS page cache (survives a process crash, not a power loss).
    Written = 1,
    /// fsynced (survives a power loss).
    Durable = 2,
}

/// What a producer waits for before it is answered (the mapping from `acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckLevel {
    /// acks=1: the batch reached the page cache.
    Written,
    /// acks=all: the high watermark covers the batch (durable in `fsync` mode).
    Committed,
}

/// The append could not be persisted: the partition is poisoned until restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the write failed on disk; the partition refuses writes until restart")]
pub struct StorageFailure;

/// One append's persistence flag and its waiters.
#[derive(Debug)]
pub struct PendingAppend {
    pub base_offset: i64,
    /// One past the append's last offset.
    pub next_offset: i64,
    state: AtomicU8,
    failed: AtomicBool,
    committed: AtomicBool,
    /// Someone waits for `Written` (acks=1): only then do flag changes wake waiters. An
    /// acks=all waiter is woken by the commit step or a failure alone, not also at each flag
    /// on the way (two wake-ups of its task per request for nothing).
    written_waiter: AtomicBool,
    notify: Notify,
}

impl PendingAppend {
    pub fn new(base_offset: i64, next_offset: i64) -> Arc<PendingAppend> {
        Arc::new(PendingAppend {
            base_offset,
            next_offset,
            state: AtomicU8::new(Persistence::Queued as u8),
            failed: AtomicBool::new(false),
            committed: AtomicBool::new(false),
            written_waiter: AtomicBool::new(false),
            notify: Notify::new(),
        })
    }

    /// Sets the persistence flag (never lowers it) and wakes waiters for `Written`. Lock-free
    /// by design. SeqCst with `wait`'s: either this sees the waiter's mark or the waiter's
    /// check sees this flag.
    pub fn mark(&self, level: Persistence) {
        self.state.fetch_max(level as u8, Ordering::SeqCst);
        if self.written_waiter.load(Ordering::SeqCst) {
            self.notify.notify_waiters();
        }
    }

    pub fn fail(&self) {
        self.failed.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub fn persistence(&self) -> Persistence {
        match self.state.load(Ordering::SeqCst) {
            0 => Persistence::Queued,
            1 => Persistence::Written,
            _ => Persistence::Durable,
        }
    }

    pub fn is_committed(&self) -> bool {
        self.committed.load(Ordering::Acquire)
    }

    fn check(&self, level: AckLevel) -> Option<Result<(), StorageFailure>> {
        let reached = match level {
            AckLevel::Written => self.persistence() >= Persistence::Written,
            AckLevel::Committed => self.is_committed(),
        };
        if reached {
            Some(Ok(()))
        } else if self.failed.load(Ordering::Acquire) {
            Some(Err(StorageFailure))
        } else {
            None
        }
    }

    /// Resolves once the append reached `level`, or failed.
    pub async fn wait(&self, level: AckLevel) -> Result<(), StorageFailure> {
        if level == AckLevel::Written {
            self.written_waiter.store(true, Ordering::SeqCst);
        }
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(result) = self.check(level) {
                return result;
            }
            notified.await;
        }
    }
}

/// A partition's appends in offset order, and its high watermark.
#[derive(Debug)]
pub struct CommitQueue {
    pending: Mutex<VecDeque<Arc<PendingAppend>>>,
    /// What an append must reach before the high watermark may cover it.
    required: Persistence,
    high_watermark: watch::Sender<i64>,
}

impl CommitQueue {
    pub fn new(high_watermark: i64, required: Persistence) -> CommitQueue {
        CommitQueue {
            pending: Mutex::new(VecDeque::new()),
            required,
            high_watermark: watch::Sender::new(high_watermark),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Arc<PendingAppend>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an append; callers register in offset order (under the partition's append lock).
    pub fn register(&self, append: Arc<PendingAppend>) {
        self.lock().push_back(append);
    }

    /// Commits every persisted append at the head of the queue in one pass and advances the
    /// high watermark past them. Returns the new high watermark. A concurrent second caller
    /// simply finds nothing left to do.
    pub fn commit(&self) -> i64 {
        let mut committed = Vec::new();
        let high_watermark = {
            let mut pending = self.lock();
            while let Some(front) = pending.front() {
                if front.persistence() < self.required {
                    break;
                }
                if let Some(append) = pending.pop_front() {
                    committed.push(append);
                }
            }
            committed.last().map(|a| a.next_offset)
        };
        if let Some(high_watermark) = high_watermark {
            self.high_watermark.send_if_modified(|current| {
                let advance = high_watermark > *current;
                if advance {
                    *current = high_watermark;
                }
                advance
            });
        }
        for append in &committed {
            append.committed.store(true, Ordering::Release);
            append.notify.notify_waiters();
        }
        *self.high_watermark.borrow()
    }

    /// Fails every queued append (after a write or fsync error).
    pub fn fail_all(&self) {
        let failed: Vec<_> = self.lock().drain(..).collect();
        for append in failed {
            append.fail();
        }
    }

    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }

    /// A receiver that changes whenever the high watermark advances (long-poll fetches).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn queue_of(n: i64) -> (CommitQueue, Vec<Arc<PendingAppend>>) {
        let queue = CommitQueue::new(0, Persistence::Durable);
        let appends: Vec<_> = (0..n)
            .map(|i| PendingAppend::new(i * 10, i * 10 + 10))
            .collect();
        for a in &appends {
            queue.register(a.clone());
        }
        (queue, appends)
    }

    #[test]
    fn out_of_order_persistence_advances_only_the_contiguous_prefix() {
        let (queue, appends) = queue_of(4);
        appends[2].mark(Persistence::Durable);
        appends[1].mark(Persistence::Durable);
        assert_eq!(queue.commit(), 0, "append 0 is not persisted yet");
        assert!(!appends[1].is_committed());
        appends[0].mark(Persistence::Written);
        assert_eq!(queue.commit(), 0, "written is not enough in fsync mode");
        appends[0].mark(Persistence::Durable);
        assert_eq!(queue.commit(), 30);
        assert!(appends[..3].iter().all(|a| a.is_committed()));
        assert!(!appends[3].is_committed());
        appends[3].mark(Persistence::Durable);
        assert_eq!(queue.commit(), 40);
        assert_eq!(queue.commit(), 40, "a second pass finds nothing left");
    }

    #[test]
    fn page_cache_mode_commits_at_written() {
        let queue = CommitQueue::new(5, Persistence::Written);
        let a = PendingAppend::new(5, 8);
        queue.register(a.clone());
        a.mark(Persistence::Written);
        assert_eq!(queue.commit(), 8);
        assert!(a.is_committed());
    }

    #[test]
    fn flags_never_move_back() {
        let a = PendingAppend::new(0, 1);
        a.mark(Persistence::Durable);
        a.mark(Persistence::Written);
        assert_eq!(a.persistence(), Persistence::Durable);
    }

    /// Counts the wake-ups of a task, to see which steps wake a waiting producer.
    struct CountingWaker(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn an_acks_all_waiter_is_woken_by_its_commit_not_by_the_flags_before() {
        use std::future::Future;
        use std::task::{Context, Poll, Waker};

        let (queue, appends) = queue_of(1);
        let wakes = Arc::new(CountingWaker(std::sync::atomic::AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let woken = || wakes.0.load(std::sync::atomic::Ordering::SeqCst);

        let mut committed = Box::pin(appends[0].wait(AckLevel::Committed));
        assert!(committed.as_mut().poll(&mut cx).is_pending());
        appends[0].mark(Persistence::Written);
        appends[0].mark(Persistence::Durable);
        assert_eq!(woken(), 0, "a flag on the way woke an acks=all waiter");
        queue.commit();
        assert_eq!(woken(), 1);
        assert_eq!(committed.as_mut().poll(&mut cx), Poll::Ready(Ok(())));

        // acks=1 is woken by the flag it waits for.
        let written_at = woken();
        let a = PendingAppend::new(0, 1);
        let mut written = Box::pin(a.wait(AckLevel::Written));
        assert!(written.as_mut().poll(&mut cx).is_pending());
        a.mark(Persistence::Written);
        assert_eq!(woken(), written_at + 1);
        assert_eq!(written.as_mut().poll(&mut cx), Poll::Ready(Ok(())));
    }

    #[tokio::test]
    async fn waiters_are_released_by_commit_or_failure() {
        let (queue, appends) = queue_of(2);
        let queue = Arc::new(queue);
        let mut rx = queue.subscribe();
        let waiter = {
            let a = appends[1].clone();
            tokio::spawn(async move { a.wait(AckLevel::Committed).await })
        };
        let written_waiter = {
            let a = appends[0].clone();
            tokio::spawn(async move { a.wait(AckLevel::Written).await })
        };
        appends[1].mark(Persistence::Durable);
        appends[0].mark(Persistence::Written);
        assert_eq!(written_waiter.await.unwrap(), Ok(()));
        appends[0].mark(Persistence::Durable);
        queue.commit();
        assert_eq!(waiter.await.unwrap(), Ok(()));
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow(), 20);

        let (queue, appends) = queue_of(1);
        let waiter = {
            let a = appends[0].clone();
            tokio::spawn(async move { a.wait(AckLevel::Committed).await })
        };
        queue.fail_all();
        assert_eq!(waiter.await.unwrap(), Err(StorageFailure));
        assert_eq!(queue.high_watermark(), 0);
    }
}

/// Exhaustive interleavings (loom, bounded preemptions) of the persistence flags and the
/// commit step: no append is acknowledged before it and everything before it is durable, the
/// high watermark never moves back, and every append ends committed or failed.
#[cfg(all(test, feature = "loom"))]
mod loom_tests {
    use super::*;
    use loom::thread;

    /// Runs `f` under every interleaving loom explores and records how many it ran
    /// (`target/reliability/loom-<name>.json`).
    fn model(name: &str, f: impl Fn() + Sync + Send + 'static) {
        // LOOM_MAX_PREEMPTIONS overrides (scripts/reliability runs them unbounded).
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = builder.preemption_bound.or(Some(3));
        let bound = builder.preemption_bound;
        let runs = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = runs.clone();
        builder.check(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            f();
        });
        let runs = runs.load(std::sync::atomic::Ordering::Relaxed);
        let bound = bound.map_or("null".to_string(), |b| b.to_string());
        crate::test_figures::save(
            &format!("loom-{name}"),
            &format!("{{\"interleavings\": {runs}, \"preemption_bound\": {bound}}}"),
        );
    }

    fn queue_of(n: i64) -> (Arc<CommitQueue>, Vec<Arc<PendingAppend>>) {
        let (queue, appends) = super::tests::queue_of(n);
        (Arc::new(queue), appends)
    }

    /// What a producer or consumer may observe at any moment.
    fn check_acknowledged(queue: &CommitQueue, appends: &[Arc<PendingAppend>], last_hw: &mut i64) {
        let hw = queue.high_watermark();
        assert!(hw >= *last_hw, "the high watermark moved back");
        *last_hw = hw;
        for (i, a) in appends.iter().enumerate() {
            if a.is_committed() {
                for earlier in &appends[..=i] {
                    assert_eq!(
                        earlier.persistence(),
                        Persistence::Durable,
                        "acknowledged before it (or an earlier append) was durable"
                    );
                }
            }
        }
    }

    /// A commit step as the writer runs it, then what a producer could see right after.
    fn commit_and_check(queue: &CommitQueue, appends: &[Arc<PendingAppend>]) {
        queue.commit();
        check_acknowledged(queue, appends, &mut 0);
    }

    /// The main thread's own commit step racing the other threads, then the final commit
    /// once they are all done.
    fn race_and_join(
        queue: &CommitQueue,
        appends: &[Arc<PendingAppend>],
        threads: [thread::JoinHandle<()>; 2],
    ) {
        let mut last_hw = 0;
        commit_and_check(queue, appends);
        check_acknowledged(queue, appends, &mut last_hw);
        for t in threads {
            t.join().unwrap();
        }
        queue.commit();
        check_acknowledged(queue, appends, &mut last_hw);
    }

    #[test]
    fn out_of_order_writers_and_concurrent_commits() {
        model("out-of-order-commits", || {
            let (queue, appends) = queue_of(3);
            let writer = {
                let a = appends.clone();
                thread::spawn(move || {
                    a[0].mark(Persistence::Written);
                    a[0].mark(Persistence::Durable);
                    a[2].mark(Persistence::Durable);
                })
            };
            let committer = {
                let (q, a) = (queue.clone(), appends.clone());
                thread::spawn(move || {
                    a[1].mark(Persistence::Durable);
                    commit_and_check(&q, &a);
                })
            };
            race_and_join(&queue, &appends, [writer, committer]);
            assert_eq!(queue.high_watermark(), 30);
            assert!(appends.iter().all(|a| a.is_committed()));
        });
    }

    #[test]
    fn a_failure_racing_commits_leaves_every_append_resolved() {
        model("failure-racing-commits", || {
            let (queue, appends) = queue_of(3);
            let writer = {
                let (q, a) = (queue.clone(), appends.clone());
                thread::spawn(move || {
                    a[0].mark(Persistence::Durable);
                    a[1].mark(Persistence::Written);
                    // The fsync covering append 1 failed: what write_group and poison do.
                    a[1].fail();
                    q.fail_all();
                })
            };
            let committer = {
                let (q, a) = (queue.clone(), appends.clone());
                thread::spawn(move || commit_and_check(&q, &a))
            };
            // Append 2 was fsynced by another helper: it must still not be acknowledged
            // past the hole append 1 leaves.
            appends[2].mark(Persistence::Durable);
            race_and_join(&queue, &appends, [writer, committer]);
            assert!(
                queue.high_watermark() <= 10,
                "covers an append never durable"
            );
            assert!(!appends[1].is_committed() && !appends[2].is_committed());
            for a in &appends {
                assert!(
                    a.check(AckLevel::Committed).is_some(),
                    "a waiter is never released"
                );
            }
        });
    }
}
