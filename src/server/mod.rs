//! The TCP front end: the listener's accept loop and the per-connection pipeline, and
//! `RunningServer`, which binds, recovers, serves and shuts down (used by `main` and tests).

mod connection;
mod listener;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::broker::{Broker, BrokerError};
use crate::config::Config;
use crate::log::manager::RecoverySummary;

pub use listener::serve;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the data directory: {0}")]
    Broker(#[from] BrokerError),
}

pub struct RunningServer {
    pub broker: Arc<Broker>,
    pub local_addr: SocketAddr,
    pub recovered: RecoverySummary,
    accept_loop: JoinHandle<()>,
}

impl RunningServer {
    /// Binds the listener, recovers the data directory and starts accepting clients.
    pub async fn start(config: Config) -> Result<RunningServer, ServerError> {
        RunningServer::start_on(config, crate::disk::os()).await
    }

    /// As `start`, with every file operation going through `disk`.
    pub async fn start_on(
        config: Config,
        disk: Arc<dyn crate::disk::Disk>,
    ) -> Result<RunningServer, ServerError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
        let (broker, recovered) = Broker::open_on(config, local_addr, disk).await?;
        let accept_loop = tokio::spawn(serve(broker.clone(), listener));
        Ok(RunningServer {
            broker,
            local_addr,
            recovered,
            accept_loop,
        })
    }

    /// Graceful stop: no new connections or requests, in-flight requests finish, writers
    /// drain and fsync, then the clean-shutdown marker is written. Bounded by `timeout`.
    pub async fn shutdown(self, timeout: Duration) {
        self.broker.shutdown.trigger();
        let _ = self.accept_loop.await;
        if !self.broker.shutdown.wait_for_tasks(timeout).await {
            warn!("connections did not finish within shutdown_timeout_ms");
        }
        match tokio::time::timeout(timeout, self.broker.logs.shutdown()).await {
            Ok(Ok(())) => info!("shutdown complete: writers drained and fsynced"),
            Ok(Err(e)) => warn!(error = %e, "unclean shutdown: recovery will run on next start"),
            Err(_) => warn!("writers did not drain within shutdown_timeout_ms"),
        }
    }
}
