//! Accept loop: one task per connection, at most `max_connections` at once (further clients
//! wait in the backlog), back-off on accept errors, stops on shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::connection;
use crate::broker::Broker;

pub async fn serve(broker: Arc<Broker>, listener: TcpListener) {
    let limit = Arc::new(Semaphore::new(broker.config.max_connections as usize));
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = broker.shutdown.cancelled() => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = broker.shutdown.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                debug!(%peer, "accepted connection");
                let _ = stream.set_nodelay(true);
                let broker = broker.clone();
                broker.shutdown.tracker().clone().spawn(async move {
                    connection::run(broker, stream, peer).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Typically EMFILE: wait instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}
