//! The operators' HTTP listener (`metrics_listen`): `/metrics` in the Prometheus text format,
//! `/health` (the process serves HTTP: live) and `/ready` (recovery finished and the broker is
//! not shutting down). It starts before recovery so orchestrators see a live, not-ready
//! broker while a large log directory is recovered.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::collect;
use crate::broker::Broker;

/// Scrapes and probes served at once; more wait for a slot.
const MAX_CONNECTIONS: usize = 32;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The running listener. `set_broker` once recovery has finished makes `/ready` answer 200.
pub struct MetricsServer {
    pub local_addr: SocketAddr,
    state: Arc<State>,
}

struct State {
    handle: Option<PrometheusHandle>,
    broker: OnceLock<Arc<Broker>>,
}

impl MetricsServer {
    /// Binds `addr` and serves until the process ends. `handle` is `None` when another
    /// recorder owns the process (in-process tests): `/metrics` then answers 404.
    pub async fn start(
        addr: SocketAddr,
        handle: Option<PrometheusHandle>,
    ) -> std::io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let state = Arc::new(State {
            handle,
            broker: OnceLock::new(),
        });
        tokio::spawn(accept_loop(listener, state.clone()));
        Ok(MetricsServer { local_addr, state })
    }

    pub fn set_broker(&self, broker: Arc<Broker>) {
        let _ = self.state.broker.set(broker);
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                warn!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(respond(&state, request).await) }
            });
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                debug!(error = %e, "metrics listener: connection ended");
            }
            drop(slot);
        });
    }
}

async fn respond(state: &State, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    match request.uri().path() {
        "/health" => text(StatusCode::OK, "ok\n"),
        "/ready" => match state.broker.get() {
            Some(broker) if !broker.shutdown.is_triggered() => text(StatusCode::OK, "ready\n"),
            Some(_) => text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
            None => text(StatusCode::SERVICE_UNAVAILABLE, "recovering\n"),
        },
        "/metrics" => {
            let Some(handle) = &state.handle else {
                return text(StatusCode::NOT_FOUND, "metrics are not recorded here\n");
            };
            collect::state_gauges(state.broker.get()).await;
            let mut response = Response::new(Full::new(Bytes::from(handle.render())));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        _ => text(StatusCode::NOT_FOUND, "try /metrics, /health or /ready\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

/// `weir healthcheck`: GET `path` on `addr` and succeed on a 200, for container images
/// without curl. A hand-written HTTP/1.0 request: one line out, one status line back.
pub fn probe(addr: &str, path: &str, timeout: Duration) -> Result<u16, std::io::Error> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let target = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{addr}: no address")))?;
    let mut stream = std::net::TcpStream::connect_timeout(&target, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut head = [0u8; 64];
    let mut len = 0;
    while len < head.len() {
        let n = stream.read(&mut head[len..])?;
        if n == 0 {
            break;
        }
        len += n;
        if head[..len].contains(&b'\n') {
            break;
        }
    }
    let line = String::from_utf8_lossy(&head[..len]);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {line:?}")))
}
