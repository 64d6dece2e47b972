//! What the server and client tasks do alike with a socket: reads and
//! writes that never wait, as `std::io` calls on top of tokio's polling.
//!
//! [`Polled`] is a socket together with the waker it is polled with. Its
//! reads and writes are tokio's `poll_read` / `poll_write_vectored`: one
//! system call when the socket is ready, `WouldBlock` (with the waker
//! registered for the socket's next readiness) when it is not. That lets
//! the loops be written like a mio loop, with the helpers they share
//! ([`ferry_files::write_out`], [`ferry_tls::write_tls`]) taking the
//! socket as any [`Write`].

use ferry_tls::link::Socket;
use std::io::{self, IoSlice, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Size of the buffer each loop reads into, reused for every read.
pub(crate) const READ_BUF: usize = 64 * 1024;

pub(crate) use ferry_tls::link::LINGER;

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

impl Socket for Polled<'_, '_, '_> {
    /// Never: tokio registers the waker only when a read returns
    /// `WouldBlock`, so reading stops there (after a short read tokio
    /// answers that without a system call).
    fn drained_by(&self, _n: usize, _len: usize) -> bool {
        false
    }

    fn shutdown_write(&mut self) {
        shut_write(self.stream, self.cx);
    }
}

/// Sends our FIN after the last bytes. tokio's `poll_shutdown` on a TCP
/// stream is the `shutdown(2)` call itself and never waits.
pub(crate) fn shut_write(stream: &mut TcpStream, cx: &mut Context<'_>) {
    let _ = Pin::new(stream).poll_shutdown(cx);
}
