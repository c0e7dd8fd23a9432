//! Gives up on a client that stopped reading. A response write, flush or shutdown that makes
//! no progress for the connection's idle limit fails with `TimedOut`, so the connection closes
//! and releases what its queued responses hold (fetch budget, deleted segments' files), as
//! Kafka closes a connection without any progress for `connections.max.idle.ms`. Only a
//! stall counts: a slow reader that keeps taking bytes is served however long it takes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::AsyncWrite;
use tokio::time::{Instant, Sleep};

pub struct WriteDeadline<W> {
    inner: W,
    limit: Duration,
    /// Runs while the inner writer is blocked; any progress disarms it.
    stall: Pin<Box<Sleep>>,
    armed: bool,
}

impl<W: AsyncWrite + Unpin> WriteDeadline<W> {
    pub fn new(inner: W, limit: Duration) -> WriteDeadline<W> {
        WriteDeadline {
            inner,
            limit,
            stall: Box::pin(tokio::time::sleep(limit)),
            armed: false,
        }
    }

    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// Passes on the inner writer's answer; a `Pending` one starts (or checks) the stall clock.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.armed = false;
            return polled;
        }
        if !self.armed {
            self.stall.as_mut().reset(Instant::now() + self.limit);
            self.armed = true;
        }
        match self.stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read nothing within the idle limit",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watch(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn a_stalled_write_times_out_and_a_slow_one_does_not() {
        // A pipe whose reader takes nothing: the write blocks once the pipe is full.
        let (stalled, _reader) = tokio::io::duplex(1024);
        let mut writer = WriteDeadline::new(stalled, Duration::from_secs(10));
        let started = Instant::now();
        let result = writer.write_all(&[7u8; 4096]).await;
        let error = result.expect_err("a write nobody reads finished");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_secs(10));

        // A reader that takes 512 bytes every 6 s: each step is progress, so 16 KiB arrive
        // although the whole write takes far longer than the limit.
        let (slow, mut reader) = tokio::io::duplex(1024);
        let mut writer = WriteDeadline::new(slow, Duration::from_secs(10));
        let drain = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut got = 0;
            let mut buf = [0u8; 512];
            while got < 16 * 1024 {
                tokio::time::sleep(Duration::from_secs(6)).await;
                got += reader.read(&mut buf).await.expect("read");
            }
            got
        });
        let started = Instant::now();
        writer
            .write_all(&[7u8; 16 * 1024])
            .await
            .expect("a slow reader's write failed");
        assert!(started.elapsed() > Duration::from_secs(60));
        assert!(drain.await.expect("drain") >= 15 * 1024);
    }
}
