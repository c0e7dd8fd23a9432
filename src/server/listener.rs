//! Accept loop: one task per connection, at most `max_connections` at once (further clients
//! wait in the backlog) and at most `max_connections_per_ip` from one address (further
//! connections are closed once accepted), back-off on accept errors, stops on shutdown.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::connection;
use crate::broker::Broker;
use crate::protocol::Endpoint;

/// Accepts clients on `listener` until shutdown; they are told `endpoint`'s address.
pub async fn serve(broker: Arc<Broker>, listener: TcpListener, endpoint: Endpoint) {
    let endpoint = Arc::new(endpoint);
    let limit = Arc::new(Semaphore::new(broker.config.max_connections as usize));
    let per_ip = PerIpLimit::new(broker.config.max_connections_per_ip);
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
                let Some(slot) = per_ip.admit(peer.ip()) else {
                    debug!(%peer, "closing connection: max_connections_per_ip reached");
                    crate::telemetry::connection_rejected("per_ip_limit");
                    drop(stream);
                    continue;
                };
                debug!(%peer, "accepted connection");
                let _ = stream.set_nodelay(true);
                let broker = broker.clone();
                let endpoint = endpoint.clone();
                broker.shutdown.tracker().clone().spawn(async move {
                    let open = broker.stats.connection_opened();
                    connection::run(&broker, stream, peer, &endpoint).await;
                    drop(open);
                    drop(slot);
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

/// Open connections per client address. Touched once per accept and once per close, so a
/// plain mutex is enough.
#[derive(Clone)]
struct PerIpLimit {
    max: u32,
    open: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

/// One admitted connection; gives its slot back when dropped.
struct IpSlot {
    ip: IpAddr,
    limit: PerIpLimit,
}

impl PerIpLimit {
    fn new(max: u32) -> PerIpLimit {
        PerIpLimit {
            max,
            open: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn admit(&self, ip: IpAddr) -> Option<IpSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            ip,
            limit: self.clone(),
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.limit.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_slots_are_counted_and_given_back() {
        let limit = PerIpLimit::new(2);
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let first = limit.admit(a);
        let second = limit.admit(a);
        assert!(first.is_some() && second.is_some());
        assert!(limit.admit(a).is_none());
        assert!(
            limit.admit(b).is_some(),
            "another address has its own count"
        );
        drop(first);
        assert!(
            limit.admit(a).is_some(),
            "a closed connection frees its slot"
        );
        drop(second);
        let open = limit.open.lock().unwrap_or_else(|p| p.into_inner());
        assert!(
            open.is_empty(),
            "no entry is left for addresses without connections"
        );
    }
}
