//! One client connection. The reader decodes frames and runs each request's ordering stage in
//! turn, then spawns its completion; the writer awaits completions in request order and
//! writes the responses, so requests are pipelined while responses keep their order.
//! Any framing or decoding error closes the connection, as Kafka does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::broker::Broker;
use crate::log::record_set::FileSlice;
use crate::protocol::codec::{
    self, CodecError, Decoded, decode_request, encode_api_versions_fallback, encode_response,
};
use crate::protocol::response_frame::{ResponseFrame, Run};
use crate::protocol::{Endpoint, dispatch};
use crate::server::send_file::send_file;
use crate::server::write_deadline::WriteDeadline;
use crate::telemetry;

/// Requests of one connection that may be in flight at once.
const MAX_IN_FLIGHT: usize = 64;
/// A frame body is read in steps of at most this much, so a client that announces a large
/// frame and then stalls holds little memory.
const READ_STEP: usize = 64 * 1024;

/// What the writer does for one request, in request order.
enum Outcome {
    /// Write this response; the permit holds its bytes in the fetch budget until written.
    Send(ResponseFrame, Option<OwnedSemaphorePermit>),
    /// acks=0: no response.
    Nothing,
    /// Close the connection after the earlier responses (acks=0 produce that failed).
    Close(&'static str),
    Failed(CodecError),
}

type Completion = JoinHandle<Outcome>;

pub async fn run(broker: &Arc<Broker>, stream: TcpStream, peer: SocketAddr, endpoint: &Endpoint) {
    let (read_half, write_half) = stream.into_split();
    let (tx, rx) = mpsc::channel::<Completion>(MAX_IN_FLIGHT);
    // A client that stops reading is given up on after as long as a silent one.
    let stall = Duration::from_millis(broker.config.connections_max_idle_ms);
    let writer = tokio::spawn(write_responses(write_half, rx, peer, stall));
    read_requests(broker, read_half, tx, peer, endpoint).await;
    if let Err(e) = writer.await {
        warn!(%peer, error = %e, "response writer ended abnormally");
    }
    debug!(%peer, "connection closed");
}

async fn read_requests(
    broker: &Arc<Broker>,
    read_half: OwnedReadHalf,
    tx: mpsc::Sender<Completion>,
    peer: SocketAddr,
    endpoint: &Endpoint,
) {
    let max = broker.config.socket_request_max_bytes as usize;
    let mut reader = BufReader::with_capacity(READ_STEP, read_half);
    loop {
        let frame = tokio::select! {
            frame = read_frame(broker, &mut reader, max) => frame,
            _ = broker.shutdown.cancelled() => {
                telemetry::connection_closed("shutdown");
                return;
            }
            // The writer gave up on the client (it stopped reading): stop reading too.
            _ = tx.closed() => return,
        };
        // The permit bounds request memory until the request has been dispatched.
        let (frame, _permit) = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(FrameError::Io(e)) => {
                debug!(%peer, error = %e, "connection read ended");
                return;
            }
            Err(FrameError::Codec(e)) => {
                warn!(%peer, error = %e, "closing connection: bad frame");
                telemetry::connection_closed("bad_frame");
                return;
            }
            Err(FrameError::Idle) => {
                debug!(%peer, "closing idle connection");
                telemetry::connection_closed("idle");
                return;
            }
            Err(FrameError::Slow) => {
                debug!(%peer, "closing connection: request not received within request_read_timeout_ms");
                telemetry::connection_closed("slow_request");
                return;
            }
        };
        let header = codec::peek_header(&frame);
        let frame_bytes = frame.len();
        let completion: Completion = match decode_request(frame) {
            Ok(Decoded::Request(request)) => {
                let key = request.key;
                let version = request.version;
                let correlation_id = request.header.correlation_id;
                let timer = broker.stats.request_started(key, frame_bytes);
                let response = dispatch(broker, *request, peer, endpoint).await;
                tokio::spawn(async move {
                    let reply = response.await;
                    timer.finish(reply.as_ref().map(|r| &r.body));
                    let Some(reply) = reply else {
                        return Outcome::Nothing;
                    };
                    if reply.close_connection {
                        return Outcome::Close("a produce with acks=0 failed");
                    }
                    match encode_response(key, version, correlation_id, reply.body, reply.runs) {
                        Ok(frame) => Outcome::Send(frame, reply.hold),
                        Err(e) => Outcome::Failed(e),
                    }
                })
            }
            Ok(Decoded::ApiVersionsTooNew { correlation_id }) => tokio::spawn(async move {
                match encode_api_versions_fallback(correlation_id) {
                    Ok(frame) => Outcome::Send(frame, None),
                    Err(e) => Outcome::Failed(e),
                }
            }),
            Err(e) => {
                let (key, version, correlation_id) = header.unwrap_or((-1, -1, -1));
                warn!(%peer, api_key = key, api_version = version, correlation_id,
                    error = %e, "closing connection: request not served");
                telemetry::connection_closed("bad_request");
                return;
            }
        };
        if tx.send(completion).await.is_err() {
            return;
        }
    }
}

enum FrameError {
    Io(std::io::Error),
    Codec(CodecError),
    Idle,
    /// The frame's first byte came, the rest did not arrive within `request_read_timeout_ms`.
    Slow,
}

/// Reads one length-prefixed frame; `Ok(None)` on a clean end of stream between frames.
/// Body bytes are reserved from the broker's request budget step by step as they arrive, so
/// a frame that is announced but never sent holds nothing. A connection silent for
/// `connections_max_idle_ms` (between or inside frames) is closed, and so is one whose frame
/// does not arrive whole within `request_read_timeout_ms` of its first byte (slow-loris).
async fn read_frame(
    broker: &Broker,
    reader: &mut BufReader<OwnedReadHalf>,
    max: usize,
) -> Result<Option<(Bytes, Option<OwnedSemaphorePermit>)>, FrameError> {
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms);
    match tokio::time::timeout(idle, reader.fill_buf()).await {
        Err(_) => return Err(FrameError::Idle),
        Ok(Ok([])) => return Ok(None),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(FrameError::Io(e)),
    }
    let mut deadline = FrameDeadline::new(broker, idle);
    let mut prefix = [0u8; 4];
    deadline
        .run(reader.read_exact(&mut prefix))
        .await?
        .map_err(FrameError::Io)?;
    let size = codec::frame_length(prefix, max).map_err(FrameError::Codec)?;
    let mut permit: Option<OwnedSemaphorePermit> = None;
    let mut frame: Vec<u8> = Vec::new();
    while frame.len() < size {
        // Wait for more of the frame without reading it: what the read buffer does not hold
        // is read from the socket straight into the frame, not copied through the buffer.
        if reader.buffer().is_empty() {
            let peeked = deadline
                .run(reader.get_mut().peek(&mut [0u8; 1]))
                .await?
                .map_err(FrameError::Io)?;
            if peeked == 0 {
                return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
        // Reserve budget only once the client has actually sent more of the frame, so frames
        // announced but never sent hold nothing.
        let want = (size - frame.len()).min(READ_STEP);
        let waiting = Instant::now();
        let Some(step) = broker.reserve_request_bytes(want).await else {
            return Ok(None);
        };
        // The broker's own backpressure is not the client's slowness.
        deadline.extend(waiting.elapsed());
        match permit.as_mut() {
            Some(held) => held.merge(step),
            None => permit = Some(step),
        }
        grow_frame(&mut frame, size, want, reader)?;
        let read = if reader.buffer().is_empty() {
            deadline
                .run(reader.get_mut().take(want as u64).read_buf(&mut frame))
                .await?
        } else {
            (&mut *reader).take(want as u64).read_buf(&mut frame).await
        }
        .map_err(FrameError::Io)?;
        if read == 0 {
            return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
    // No copy: the vector's buffer becomes the frame's.
    Ok(Some((Bytes::from(frame), permit)))
}

/// Makes room for `want` more bytes of a frame of `size`. Once at least half of the frame has
/// arrived (read, in the read buffer or queued in the socket), the buffer is sized to the
/// whole frame, so it is not copied again as it grows; before that it grows by doubling.
/// Either way a stalled frame holds at most about twice what arrived. A failed allocation
/// closes the connection instead of aborting the broker.
fn grow_frame(
    frame: &mut Vec<u8>,
    size: usize,
    want: usize,
    reader: &BufReader<OwnedReadHalf>,
) -> Result<(), FrameError> {
    let arrived = frame.len() + reader.buffer().len();
    // The socket is asked only when what is buffered does not settle it: small frames that
    // arrive together cost no system call each.
    let whole = frame.capacity() < size
        && (2 * arrived >= size || {
            let stream: &TcpStream = reader.get_ref().as_ref();
            let queued = rustix::io::ioctl_fionread(stream).map_or(0, |n| n as usize);
            2 * (arrived + queued) >= size
        });
    let grown = if whole {
        frame.try_reserve_exact(size - frame.len())
    } else {
        frame.try_reserve(want)
    };
    grown.map_err(|_| FrameError::Io(std::io::ErrorKind::OutOfMemory.into()))
}

/// The time left to read the rest of one frame: the sooner of the idle timeout and the
/// whole-frame deadline.
struct FrameDeadline {
    idle: Duration,
    whole: Instant,
}

impl FrameDeadline {
    fn new(broker: &Broker, idle: Duration) -> FrameDeadline {
        let timeout = Duration::from_millis(broker.config.request_read_timeout_ms);
        FrameDeadline {
            idle,
            whole: Instant::now() + timeout,
        }
    }

    fn extend(&mut self, by: Duration) {
        self.whole += by;
    }

    async fn run<F: std::future::Future>(&self, read: F) -> Result<F::Output, FrameError> {
        let idle = Instant::now() + self.idle;
        let (at, error) = if idle < self.whole {
            (idle, FrameError::Idle)
        } else {
            (self.whole, FrameError::Slow)
        };
        tokio::time::timeout_at(at, read).await.map_err(|_| error)
    }
}

type ResponseWriter = BufWriter<WriteDeadline<OwnedWriteHalf>>;

async fn write_responses(
    write_half: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Completion>,
    peer: SocketAddr,
    stall: Duration,
) {
    let mut writer = BufWriter::with_capacity(64 * 1024, WriteDeadline::new(write_half, stall));
    let mut next: Option<Completion> = None;
    loop {
        let completion = match next.take() {
            Some(completion) => completion,
            None => match rx.recv().await {
                Some(completion) => completion,
                None => break,
            },
        };
        match completion.await {
            Ok(Outcome::Send(frame, _hold)) => {
                // Runs of at least the buffer's size go to the socket without a copy into it.
                for part in frame.parts() {
                    let written = match part {
                        Run::Bytes(bytes) => writer.write_all(bytes).await,
                        Run::File(slice) => write_from_file(&mut writer, slice, stall).await,
                    };
                    if let Err(e) = written {
                        write_failed(peer, &e);
                        return;
                    }
                }
                telemetry::response_sent(frame.len());
            }
            Ok(Outcome::Nothing) => {}
            Ok(Outcome::Close(reason)) => {
                debug!(%peer, reason, "closing connection");
                break;
            }
            Ok(Outcome::Failed(e)) => {
                warn!(%peer, error = %e, "closing connection: response could not be encoded");
                break;
            }
            Err(e) => {
                warn!(%peer, error = %e, "closing connection: request handler failed");
                break;
            }
        }
        // Flush unless the next response is already complete: then it joins this write.
        next = rx.try_recv().ok();
        if !next.as_ref().is_some_and(|c| c.is_finished())
            && let Err(e) = writer.flush().await
        {
            write_failed(peer, &e);
            return;
        }
    }
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
}

fn write_failed(peer: SocketAddr, e: &std::io::Error) {
    if e.kind() == std::io::ErrorKind::TimedOut {
        debug!(%peer, "closing connection: the client stopped reading responses");
        telemetry::connection_closed("write_stalled");
    } else {
        debug!(%peer, error = %e, "write failed");
    }
}

/// Sends a file run of a response after what the buffer holds of the frame before it.
async fn write_from_file(
    writer: &mut ResponseWriter,
    slice: &FileSlice,
    stall: Duration,
) -> std::io::Result<()> {
    writer.flush().await?;
    send_file(writer.get_ref().get_ref().as_ref(), slice, stall).await?;
    telemetry::sent_from_file(slice.len);
    Ok(())
}
