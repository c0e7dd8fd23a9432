//! One token for a graceful stop: the listener stops accepting, connections stop reading new
//! requests and finish the ones in flight, long-poll fetches return early, then the writers
//! are drained and fsynced.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tasks: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Starts the shutdown; everything watching `cancelled()` winds down.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    pub async fn cancelled(&self) {
        self.token.cancelled().await
    }

    /// Tracks a connection task so shutdown can wait for its in-flight requests.
    pub fn tracker(&self) -> &TaskTracker {
        &self.tasks
    }

    /// Waits for tracked tasks to end, up to `timeout`. Returns false on timeout.
    pub async fn wait_for_tasks(&self, timeout: Duration) -> bool {
        self.tasks.close();
        tokio::time::timeout(timeout, self.tasks.wait())
            .await
            .is_ok()
    }
}

/// Runs `tick` every `period` (the first time one period after the start) until shutdown,
/// or until `owner` is gone. For housekeeping such as retention and offset expiry.
pub fn spawn_periodic<T, F, Fut>(
    owner: std::sync::Weak<T>,
    period: Duration,
    shutdown: Shutdown,
    tick: F,
) where
    T: Send + Sync + 'static,
    F: Fn(std::sync::Arc<T>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        interval.tick().await;
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            let Some(owner) = owner.upgrade() else {
                return;
            };
            tick(owner).await;
        }
    });
}
