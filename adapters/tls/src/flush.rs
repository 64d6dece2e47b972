//! Writing a [`Transport`]'s records to a socket that never blocks, fed
//! from the core's output: what the event-loop adapters (mio, tokio) do
//! alike with a TLS connection, whatever type the socket is.

use crate::{Error, Transport};
use bytes::Bytes;
use ferry_files::{Flush, OutputBatch};
use std::io::{self, Write};

/// Why a TLS flush stopped the connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Broke {
    /// The socket failed.
    #[error("write failed: {0}")]
    Io(io::Error),
    /// The transport refused (it failed before, or misuse).
    #[error("TLS: {0}")]
    Tls(Error),
}

/// Writes the transport's records and moves the core's bytes (`plaintext`,
/// topped up with what `next` yields) into it, until the socket would
/// block or nothing is left. With `closed` (close_notify queued), only the
/// records go out. During the handshake the transport holds a bounded
/// amount of plaintext; once that is full the rest stays in `plaintext`
/// (or in the core) until a feed ends the handshake and the caller
/// flushes again.
///
/// # Errors
///
/// The socket failed ([`Broke::Io`]), or the transport refused the
/// plaintext ([`Broke::Tls`]): the connection cannot go on.
pub fn write_tls(
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
