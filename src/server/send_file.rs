//! Sends a range of a segment file to a client's socket with `sendfile`: the kernel hands the
//! page-cache pages to the socket, and the broker neither reads nor copies the bytes.

use std::io;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::log::record_set::FileSlice;

/// Sends the whole slice. The socket is non-blocking: a full send buffer waits until it is
/// writable again, for at most `stall` (then `TimedOut`: the client stopped reading, see
/// `write_deadline`). A file that ends before the slice does (nothing should cause it) is an
/// error, since the frame on the wire would be cut short: the caller closes the connection.
pub async fn send_file(stream: &TcpStream, slice: &FileSlice, stall: Duration) -> io::Result<()> {
    let mut pos = slice.pos;
    let end = slice.pos + slice.len as u64;
    while pos < end {
        let want = usize::try_from(end - pos).unwrap_or(usize::MAX);
        tokio::time::timeout(stall, stream.writable())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading"))??;
        let sent = stream.try_io(Interest::WRITABLE, || {
            rustix::fs::sendfile(stream, &*slice.file, Some(&mut pos), want)
                .map_err(io::Error::from)
        });
        match sent {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
