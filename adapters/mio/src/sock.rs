//! What the server and client loops do alike with a non-blocking socket and
//! a command channel.

use bytes::{Buf, Bytes};
use ferry_files::{Commander, Wake};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token, Waker};
use std::io::{self, Read, Write};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

/// Size of the buffer each loop reads into, reused for every read.
pub(crate) const READ_BUF: usize = 64 * 1024;

/// How long a closed connection may take to hand its last bytes to the
/// kernel and see the peer's end of stream. Past this it is dropped: a peer
/// that stopped reading must not hold a loop (or a shutdown) up.
pub(crate) const LINGER: Duration = Duration::from_secs(1);

/// What one read brought.
pub(crate) enum ReadOutcome {
    /// This many bytes, at the start of the buffer.
    Data(usize),
    /// Nothing more for now; readiness is edge-triggered, so the loop
    /// hears of this socket again only after reading up to here.
    WouldBlock,
    /// The peer closed its side.
    Eof,
    /// The socket broke.
    Failed(io::Error),
}

/// Reads once into `buf`, retrying on interruption.
pub(crate) fn read_some(stream: &mut TcpStream, buf: &mut [u8]) -> ReadOutcome {
    loop {
        match stream.read(buf) {
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
    /// The socket is full; the rest of one segment waits in `pending`.
    Blocked,
}

/// Writes `pending`, then each segment `next` yields, until the socket would
/// block or nothing is left.
///
/// Segments are taken one at a time and only once the previous one is fully
/// written, so at most one segment waits here; everything else stays queued
/// in the core, where a chat frame can still overtake file data.
pub(crate) fn write_out(
    stream: &mut TcpStream,
    pending: &mut Option<Bytes>,
    mut next: impl FnMut() -> Option<Bytes>,
) -> io::Result<Flush> {
    loop {
        let Some(mut segment) = pending.take().or_else(&mut next) else {
            return Ok(Flush::Done);
        };
        while !segment.is_empty() {
            match stream.write(&segment) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => segment.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    *pending = Some(segment);
                    return Ok(Flush::Blocked);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
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
/// the loop too, which then finds the channel disconnected.
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
