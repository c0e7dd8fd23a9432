//! Helper threads that run a group's per-partition work (writes in one stage, fsyncs in the
//! other) concurrently with the stage's own thread.

use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};

type Task = Box<dyn FnOnce() + Send>;

/// A fixed set of threads taking tasks from one queue; they end when the pool is dropped.
pub(super) struct Pool {
    tx: Sender<Task>,
}

impl Pool {
    pub(super) fn start(name: &str, helpers: usize) -> std::io::Result<Pool> {
        let (tx, rx) = channel::<Task>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..helpers {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    loop {
                        let next = {
                            let guard = rx.lock().unwrap_or_else(|e| e.into_inner());
                            guard.recv()
                        };
                        let Ok(task) = next else { return };
                        task();
                    }
                })?;
        }
        Ok(Pool { tx })
    }
}

/// Runs `f` on every item, concurrently on `pool`'s helpers when there is one (this thread
/// takes the first item itself), and returns the results in the items' order. Results carry
/// what they are about: a task lost to a panicking helper leaves no gap to misread.
pub(super) fn run_all<T, R>(pool: Option<&Pool>, items: Vec<T>, f: fn(T) -> R) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
{
    let Some(pool) = pool.filter(|_| items.len() > 1) else {
        return items.into_iter().map(f).collect();
    };
    let count = items.len();
    let mut items = items.into_iter();
    let first = items.next();
    let (done_tx, done_rx) = channel::<(usize, R)>();
    let mut results: Vec<Option<R>> = (0..count).map(|_| None).collect();
    for (i, item) in items.enumerate() {
        let done = done_tx.clone();
        let task: Task = Box::new(move || {
            let _ = done.send((i + 1, f(item)));
        });
        if let Err(e) = pool.tx.send(task) {
            // No helper left (cannot happen while the pool lives): run it here instead.
            (e.0)();
        }
    }
    drop(done_tx);
    if let Some(first) = first {
        results[0] = Some(f(first));
    }
    let mut received = 1;
    while received < count {
        match done_rx.recv() {
            Ok((i, result)) => {
                results[i] = Some(result);
                received += 1;
            }
            // A helper died with its task (a panic): nothing more will come.
            Err(_) => break,
        }
    }
    results.into_iter().flatten().collect()
}
