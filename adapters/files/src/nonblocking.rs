//! One read, and the writes of one batch, on a socket that never blocks:
//! what the event-loop adapters (mio, tokio) do alike with their sockets,
//! whatever type the socket is.

use crate::batch::OutputBatch;
use bytes::Bytes;
use std::io::{self, Read, Write};

/// What one read brought.
#[derive(Debug)]
pub enum ReadOutcome {
    /// This many bytes, at the start of the buffer.
    Data(usize),
    /// Nothing more for now; the socket's readiness will say when.
    WouldBlock,
    /// The peer closed its side.
    Eof,
    /// The socket broke.
    Failed(io::Error),
}

/// Reads once into `buf`, retrying on interruption.
pub fn read_some(socket: &mut impl Read, buf: &mut [u8]) -> ReadOutcome {
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
pub enum Flush {
    /// Nothing is left: the source of segments had none.
    Done,
    /// The socket is full; the rest of a batch waits in it until the
    /// socket has room.
    Blocked,
}

/// Writes `pending`, topped up with the segments `next` yields, one
/// vectored write at a time, until the socket would block or nothing is
/// left. At most one batch waits here; the rest stays queued in the core,
/// where a chat frame can still overtake file data.
///
/// # Errors
///
/// The socket failed (not `WouldBlock` or `Interrupted`, which are handled
/// here).
pub fn write_out(
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
