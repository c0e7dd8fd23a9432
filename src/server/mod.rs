//! The TCP front end: the listener's accept loop and the per-connection pipeline, and
//! `RunningServer`, which binds, recovers, serves and shuts down (used by `main` and tests).

mod connection;
mod listener;
mod send_file;
mod write_deadline;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::broker::{Broker, BrokerError};
use crate::config::{Config, MAIN_LISTENER, parse_host_port};
use crate::log::manager::RecoverySummary;
use crate::protocol::Endpoint;

pub use listener::serve;

/// Pending connections the kernel queues for the accept loop (capped by `somaxconn`). With
/// the usual 128, a burst of clients connecting at once (all of them reconnecting after a
/// restart) overflows the queue and their SYNs are dropped: each waits a 1 s retransmit.
const LISTEN_BACKLOG: u32 = 1024;

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ServerError> {
    let bind_error = |source| ServerError::Bind { addr, source };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(bind_error)?;
    socket.set_reuseaddr(true).map_err(bind_error)?;
    socket.bind(addr).map_err(bind_error)?;
    let listener = socket.listen(LISTEN_BACKLOG).map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    Ok((listener, local))
}

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
    /// The main listener's bound address.
    pub local_addr: SocketAddr,
    /// `extra_listeners`, by name, with their bound addresses.
    pub extra_addrs: Vec<(String, SocketAddr)>,
    pub recovered: RecoverySummary,
    accept_loops: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// Binds the listener, recovers the data directory and starts accepting clients.
    pub async fn start(config: Config) -> Result<RunningServer, ServerError> {
        let disk = crate::disk::os_with(config.log_write_io);
        RunningServer::start_on(config, disk).await
    }

    /// As `start`, with every file operation going through `disk`.
    pub async fn start_on(
        config: Config,
        disk: Arc<dyn crate::disk::Disk>,
    ) -> Result<RunningServer, ServerError> {
        let (listener, local_addr) = bind(config.listen).await?;
        let mut extras = Vec::with_capacity(config.extra_listeners.len());
        for extra in &config.extra_listeners {
            let (listener, addr) = bind(extra.listen).await?;
            let (host, port) = parse_host_port(&extra.advertised).unwrap_or_else(|| {
                // Validated with the config; the bound address is the fallback anyway.
                (addr.ip().to_string(), i32::from(addr.port()))
            });
            let endpoint = Endpoint {
                name: extra.name.clone(),
                host,
                port,
            };
            extras.push((listener, addr, endpoint));
        }
        let (broker, recovered) = Broker::open_on(config, local_addr, disk).await?;
        let (host, port) = broker.advertised();
        let main = Endpoint {
            name: MAIN_LISTENER.to_string(),
            host: host.to_string(),
            port,
        };
        let mut accept_loops = vec![tokio::spawn(serve(broker.clone(), listener, main))];
        let mut extra_addrs = Vec::with_capacity(extras.len());
        for (listener, addr, endpoint) in extras {
            extra_addrs.push((endpoint.name.clone(), addr));
            accept_loops.push(tokio::spawn(serve(broker.clone(), listener, endpoint)));
        }
        Ok(RunningServer {
            broker,
            local_addr,
            extra_addrs,
            recovered,
            accept_loops,
        })
    }

    /// Graceful stop: no new connections or requests, in-flight requests finish, writers
    /// drain and fsync, then the clean-shutdown marker is written. Bounded by `timeout`.
    pub async fn shutdown(self, timeout: Duration) {
        self.broker.shutdown.trigger();
        for accept_loop in self.accept_loops {
            let _ = accept_loop.await;
        }
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
