//! What the server and client tasks do alike with a socket: reads and
//! writes that never wait, as `std::io` calls on top of tokio's polling.
//!
//! [`Polled`] is a socket together with the waker it is polled with. Its
//! reads and writes are tokio's `poll_read` / `poll_write_vectored`: one
//! system call when the socket is ready, `WouldBlock` (with the waker
//! registered for the socket's next readiness) when it is not. That lets
//! the loops be written like a mio loop, with [`OutputBatch`] and
//! [`Transport::write_to`] taking the socket as any [`Write`].

use bytes::Bytes;
use ferry_files::OutputBatch;
use ferry_tls::Transport;
use std::io::{self, IoSlice, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Size of the buffer each loop reads into, reused for every read.
pub(crate) const READ_BUF: usize = 64 * 1024;

/// How long a closed connection may take to hand its last bytes to the
/// kernel and see the peer's end of stream. Past this it is dropped: a peer
/// that stopped reading must not hold a loop (or a shutdown) up.
pub(crate) const LINGER: Duration = Duration::from_secs(1);

/// A socket and the context its readiness is reported to.
pub(crate) struct Polled<'s, 'c, 'w> {
    stream: &'s mut TcpStream,
    cx: &'c mut Context<'w>,
}

impl<'s, 'c, 'w> Polled<'s, 'c, 'w> {
    /// `stream`, whose readiness is reported to `cx`'s waker.
    pub fn new(stream: &'s mut TcpStream, cx: &'c mut Context<'w>) -> Self {
        Polled { stream, cx }
    }
}

fn would_block<T>(polled: Poll<io::Result<T>>) -> io::Result<T> {
    match polled {
        Poll::Ready(result) => result,
        Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
    }
}

impl Read for Polled<'_, '_, '_> {
    /// tokio marks the socket drained after a read shorter than `buf` (on
    /// epoll and kqueue, where the next arrival raises a new edge), so the
    /// call after it returns `WouldBlock` without a system call.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = ReadBuf::new(buf);
        would_block(Pin::new(&mut *self.stream).poll_read(self.cx, &mut filled))?;
        Ok(filled.filled().len())
    }
}

impl Write for Polled<'_, '_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        would_block(Pin::new(&mut *self.stream).poll_write(self.cx, buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        would_block(Pin::new(&mut *self.stream).poll_write_vectored(self.cx, bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What one read brought.
pub(crate) enum ReadOutcome {
    /// This many bytes, at the start of the buffer.
    Data(usize),
    /// Nothing more for now; the waker hears of the next arrival.
    WouldBlock,
    /// The peer closed its side.
    Eof,
    /// The socket broke.
    Failed(io::Error),
}

/// Reads once into `buf`, retrying on interruption.
pub(crate) fn read_some(socket: &mut impl Read, buf: &mut [u8]) -> ReadOutcome {
    loop {
        match socket.read(buf) {
            Ok(0) => return ReadOutcome::Eof,
            Ok(n) => return ReadOutcome::Data(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::WouldBlock,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return ReadOutcome::Failed(e),
        }
    }
}

/// Whether all output was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flush {
    /// Nothing is left: `next` returned `None`.
    Done,
    /// The socket is full; the rest of a batch waits in `pending`, and the
    /// waker hears when there is room.
    Blocked,
}

/// Writes `pending`, topped up with the segments `next` yields, one
/// vectored write at a time, until the socket would block or nothing is
/// left. At most one batch waits here; the rest stays queued in the core.
pub(crate) fn write_out(
    socket: &mut impl Write,
    pending: &mut OutputBatch,
    mut next: impl FnMut() -> Option<Bytes>,
) -> io::Result<Flush> {
    while pending.fill(&mut next) {
        match pending.write_once(socket) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flush::Blocked),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Flush::Done)
}

/// Why a TLS flush stopped the connection.
pub(crate) enum Broke {
    /// The socket failed.
    Io(io::Error),
    /// The transport refused (it failed before, or misuse).
    Tls(ferry_tls::Error),
}

/// Writes the transport's records and moves the core's bytes (`plaintext`,
/// topped up with what `next` yields) into it, until the socket would
/// block or nothing is left. With `closed` (close_notify queued), only the
/// records go out. During the handshake the transport holds a bounded
/// amount of plaintext; once that is full the rest stays in `plaintext`
/// (or in the core) until a feed ends the handshake and the caller
/// flushes again.
pub(crate) fn write_tls(
    socket: &mut impl Write,
    transport: &mut Transport,
    plaintext: &mut OutputBatch,
    closed: bool,
    mut next: impl FnMut() -> Option<Bytes>,
) -> Result<Flush, Broke> {
    loop {
        while transport.wants_write() {
            match transport.write_to(socket) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flush::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Broke::Io(e)),
            }
        }
        if closed || (plaintext.is_empty() && !plaintext.fill(&mut next)) {
            return Ok(Flush::Done);
        }
        let mut taken = 0;
        for slice in plaintext.io_slices().iter() {
            let n = transport.write_plaintext(slice).map_err(Broke::Tls)?;
            taken += n;
            if n < slice.len() {
                break;
            }
        }
        plaintext.advance(taken);
        if taken == 0 && !transport.wants_write() {
            // Held until the handshake ends: nothing to write meanwhile.
            return Ok(Flush::Done);
        }
    }
}

/// Sends our FIN after the last bytes. tokio's `poll_shutdown` on a TCP
/// stream is the `shutdown(2)` call itself and never waits.
pub(crate) fn shut_write(stream: &mut TcpStream, cx: &mut Context<'_>) {
    let _ = Pin::new(stream).poll_shutdown(cx);
}
