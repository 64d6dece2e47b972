//! What the server and client loops do alike with a non-blocking socket and
//! a command channel.

pub(crate) use ferry_files::{read_some, write_out, Flush, ReadOutcome};
use ferry_files::{Commander, Wake};
use ferry_tls::link::Socket;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token, Waker};
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::sync::mpsc::Sender;
use std::sync::Arc;

/// Size of the buffer each loop reads into, reused for every read.
pub(crate) const READ_BUF: usize = 64 * 1024;

pub(crate) use ferry_tls::link::LINGER;

/// Whether a read of `n` bytes into a buffer of `len` emptied the socket,
/// so that reading again would only return `WouldBlock`. On epoll and
/// kqueue, more data arriving later raises a new edge, so the read loop can
/// stop here and save that system call (tokio relies on the same). Not when
/// the event already said the peer closed (`peer_closed`): no new edge will
/// announce the end of stream or the error, so reading must go on until it
/// shows. Not on Windows, whose readiness is emulated.
pub(crate) fn drained_by(n: usize, len: usize, peer_closed: bool) -> bool {
    !cfg!(windows) && !peer_closed && n < len
}

/// A client socket as the server's [`Link`](ferry_tls::link::Link) uses
/// it, with what the socket's last event said.
pub(crate) struct Stream<'s> {
    stream: &'s mut TcpStream,
    /// The event said the peer closed (or the socket failed).
    peer_closed: bool,
}

impl<'s> Stream<'s> {
    pub fn new(stream: &'s mut TcpStream, peer_closed: bool) -> Self {
        Stream {
            stream,
            peer_closed,
        }
    }
}

impl Read for Stream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }
}

impl Write for Stream<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.stream.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Socket for Stream<'_> {
    fn drained_by(&self, n: usize, len: usize) -> bool {
        drained_by(n, len, self.peer_closed)
    }

    fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// Registers write interest only while output waits, so that an idle
/// connection costs no wake-ups. `want_write` tracks what is registered.
pub(crate) fn set_write_interest(
    registry: &Registry,
    stream: &mut TcpStream,
    token: Token,
    want_write: &mut bool,
    want: bool,
) -> io::Result<()> {
    if *want_write == want {
        return Ok(());
    }
    let interest = if want {
        Interest::READABLE | Interest::WRITABLE
    } else {
        Interest::READABLE
    };
    registry.reregister(stream, token, interest)?;
    *want_write = want;
    Ok(())
}

/// The sending side of a loop's command channel.
struct CommandTx<C> {
    tx: Option<Sender<C>>,
    waker: Arc<Waker>,
}

impl<C> Drop for CommandTx<C> {
    fn drop(&mut self) {
        // Disconnect first, then wake: the loop then sees that its handle is
        // gone rather than an empty channel.
        drop(self.tx.take());
        let _ = self.waker.wake();
    }
}

/// A [`Commander`] that sends on `tx` and wakes the loop. Dropping it wakes
/// the loop too, which then finds the channel disconnected. The loop must
/// hold a clone of `waker` itself: a wake-up from the last reference closes
/// the waker's descriptor and may never be seen.
pub(crate) fn commander<C: Send + 'static>(tx: Sender<C>, waker: Arc<Waker>) -> Commander<C> {
    let inner = CommandTx {
        tx: Some(tx),
        waker,
    };
    Box::new(move |command| {
        let sent = inner.tx.as_ref().is_some_and(|tx| tx.send(command).is_ok());
        // A failed send means the loop has ended: there is nobody to wake.
        // A failed wake-up leaves the command queued for the next wake-up.
        if sent {
            let _ = inner.waker.wake();
        }
    })
}

/// Wakes the loop when a file writer finished something; the loop then
/// polls its files.
pub(crate) fn disk_wake(waker: &Arc<Waker>) -> Wake {
    let waker = waker.clone();
    // A failed wake-up leaves the work queued for the next one.
    Arc::new(move || drop(waker.wake()))
}
