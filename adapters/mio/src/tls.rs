//! What the server and client loops do alike with a TLS [`Transport`] on a
//! non-blocking socket.

use crate::sock::Flush;
use bytes::Bytes;
use ferry_files::OutputBatch;
use ferry_tls::Transport;
use mio::net::TcpStream;
use std::io;

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
    stream: &mut TcpStream,
    transport: &mut Transport,
    plaintext: &mut OutputBatch,
    closed: bool,
    mut next: impl FnMut() -> Option<Bytes>,
) -> Result<Flush, Broke> {
    loop {
        while transport.wants_write() {
            match transport.write_to(stream) {
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
