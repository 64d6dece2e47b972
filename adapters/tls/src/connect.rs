//! A client's TLS connect step, for runtimes that connect on a blocking
//! socket before handing it to their loop: the handshake run to the end
//! (the server verified), then the transport for the loop to drive.

use crate::{Error, KnownServers, TlsClient, Transport, Verified, Verify};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

/// How a client speaks TLS to one server: the client settings (roots,
/// known servers), the name to check the server's certificate against
/// (its host name or IP address), and how to trust it.
///
/// A server trusted on first use ([`Verify::trusting_new_server`]) is
/// appended to the known-servers file of `client` once the handshake
/// succeeds; the copy in memory is this connection's, so load the file
/// again for the next connection.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// Roots and the known-servers file.
    pub client: TlsClient,
    /// The server's host name or IP address, as the user gave it.
    pub host: String,
    /// A pin, or trust of a new server.
    pub verify: Verify,
}

impl ClientTls {
    /// TLS to `host`, checked by `client` and `verify`.
    pub fn new(client: TlsClient, host: impl Into<String>, verify: Verify) -> ClientTls {
        ClientTls {
            client,
            host: host.into(),
            verify,
        }
    }
}

/// A ferry-tls error as an `io::Error` whose message is its one line: the
/// kind says who is at fault (`PermissionDenied` for a server that failed
/// the check, `UnexpectedEof` for a cut handshake, `InvalidData` for
/// anything else the peer sent), and [`tls_error_in`] gives it back.
pub fn io_error(error: Error) -> io::Error {
    use Error as E;
    let kind = match error {
        E::PinMismatch { .. }
        | E::UnknownServer { .. }
        | E::ChangedServer { .. }
        | E::CertificateName { .. }
        | E::Handshake { .. } => io::ErrorKind::PermissionDenied,
        E::Truncated => io::ErrorKind::UnexpectedEof,
        _ => io::ErrorKind::InvalidData,
    };
    io::Error::new(kind, error)
}

/// The ferry-tls error inside an `io::Error` made by [`io_error`], so that
/// a program can act on it (ask the user about an
/// [`UnknownServer`](Error::UnknownServer), say how to pin one).
pub fn tls_error_in(error: &io::Error) -> Option<&Error> {
    error.get_ref()?.downcast_ref::<Error>()
}

/// Who the server proved to be, to key what belongs to it (a sender's
/// resume keys): `name:HOST` when its certificate chains to a trusted root
/// for the host name (a renewed certificate keeps it), else `key:SHA256:...`,
/// its certificate's fingerprint (pinned, known or newly trusted). The same
/// identity at another address (another name for it, IPv6, a proxy, or
/// another server of a cluster that shares the certificate) is the same
/// server: it holds the key, or the name, that the handshake checked.
/// `None` before the handshake ends.
pub fn server_identity(tls: &ClientTls, transport: &Transport) -> Option<String> {
    match transport.verified()? {
        Verified::Ca => Some(format!("name:{}", tls.host.to_ascii_lowercase())),
        Verified::Pinned | Verified::Known { .. } | Verified::New { .. } => {
            Some(format!("key:{}", transport.peer_fingerprint()?))
        }
    }
}

/// Records a server trusted on first use in the known-servers file, so
/// that the next connection knows it (and refuses it if it changes).
pub fn remember(tls: &ClientTls, port: u16, transport: &Transport) -> io::Result<()> {
    let Some(Verified::New { fingerprint }) = transport.verified() else {
        return Ok(());
    };
    let Some(known) = tls
        .client
        .clone()
        .known_servers_mut()
        .map(|k| k.path().to_owned())
    else {
        return Ok(());
    };
    // The file as it is now, not the copy `tls` was made with: a client
    // that reconnects with the same settings (`ferry tui`) recorded the
    // server the first time, and must not add a line at every reconnect.
    let mut fresh = KnownServers::load(&known).map_err(|e| io::Error::other(e.to_string()))?;
    if fresh
        .lookup_all(&tls.host, port)
        .iter()
        .any(|entry| entry.fingerprint == fingerprint)
    {
        return Ok(());
    }
    fresh
        .add(&tls.host, port, fingerprint)
        .map_err(|e| io::Error::other(e.to_string()))
}

/// A client's TLS connection once the server is verified: what a runtime
/// hands to its loop, and who the server proved to be.
#[derive(Debug)]
#[non_exhaustive]
pub struct Connected {
    /// The transport, its handshake done.
    pub transport: Transport,
    /// Socket bytes the transport has not taken yet (the server may have
    /// sent more than the handshake).
    pub unfed: Vec<u8>,
    /// The server's [`server_identity`], to key what belongs to it.
    pub identity: Option<String>,
}

/// The whole connect step of a client runtime: [`handshake`] by
/// `deadline`, then [`remember`] a server trusted on first use, then its
/// [`server_identity`]. Every runtime's client calls this one function,
/// so that none can forget the known-servers file or the identity.
pub fn connect(
    stream: &mut TcpStream,
    tls: &ClientTls,
    port: u16,
    deadline: Instant,
) -> io::Result<Connected> {
    let (transport, unfed) = handshake(stream, tls, port, deadline)?;
    remember(tls, port, &transport)?;
    let identity = server_identity(tls, &transport);
    Ok(Connected {
        transport,
        unfed,
        identity,
    })
}

/// Runs the TLS handshake on a blocking `stream` until the server is
/// verified, by `deadline`; what thread-per-connection and readiness
/// runtimes alike do before their ferry connection exists, so that no
/// ferry byte can reach a server that was not checked. Returns the
/// transport and the socket bytes it has not taken yet (the server may have
/// sent more than the handshake). A client runtime calls [`connect`],
/// which remembers the server too.
pub fn handshake(
    stream: &mut TcpStream,
    tls: &ClientTls,
    port: u16,
    deadline: Instant,
) -> io::Result<(Transport, Vec<u8>)> {
    let mut transport = Transport::client(&tls.client, &tls.host, port, &tls.verify)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let mut unfed = Vec::new();
    let mut buf = [0; 16 * 1024];
    loop {
        while transport.wants_write() {
            transport.write_to(stream)?;
        }
        if !transport.is_handshaking() {
            stream.set_read_timeout(None)?;
            return Ok((transport, unfed));
        }
        if unfed.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the server did not complete the TLS handshake in time",
                ));
            }
            stream.set_read_timeout(Some(left))?;
            match stream.read(&mut buf) {
                Ok(0) => {
                    transport.feed_eof().map_err(io_error)?;
                    return Err(io_error(Error::Truncated));
                }
                Ok(n) => unfed.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        let result = transport.feed(&unfed);
        let taken = match result {
            Ok(taken) => taken,
            Err(e) => {
                // The alert tells the server why, if it still listens.
                let mut alert = Vec::new();
                transport.take_outgoing(&mut alert);
                let _ = stream.write_all(&alert);
                return Err(io_error(e));
            }
        };
        unfed.drain(..taken);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_io_error_carries_the_tls_error_and_its_one_line() {
        let error = io_error(Error::NotTls { first_byte: 0x89 });
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(matches!(
            tls_error_in(&error),
            Some(Error::NotTls { first_byte: 0x89 })
        ));
        assert_eq!(
            error.to_string(),
            Error::NotTls { first_byte: 0x89 }.to_string()
        );
        assert!(tls_error_in(&io::Error::other("plain")).is_none());
    }
}
