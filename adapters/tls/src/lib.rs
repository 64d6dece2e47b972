//! TLS for ferry, sans-IO and written once for every runtime.
//!
//! A [`Transport`] sits between a socket and `ferry-core`: the driver
//! (a blocking std loop, a mio readiness loop, a smol task) gives it the
//! bytes its socket read and writes out the bytes it returns; in between
//! it decrypts to plaintext and encrypts plaintext (TLS 1.3 through
//! rustls, crypto by ring), or passes bytes through for plain
//! connections. It opens no socket, starts no thread and reads no clock
//! of its own (the CA path of certificate checks uses rustls' system
//! clock; loading an identity takes "now" as a parameter).
//!
//! * Servers load an [`Identity`] ([`Identity::load_or_create`] for a
//!   self-signed one, [`Identity::from_pem_files`] for a real chain), make
//!   a [`TlsServer`] from it, and tell TLS from plain clients on one port
//!   by the first byte ([`Transport::accept`], [`Kind`]).
//! * Clients make a [`TlsClient`] (roots, [`KnownServers`]) and check each
//!   server by [`Verify`]: a pinned [`Fingerprint`], else a CA-signed
//!   certificate for the host, else the known-servers file (trust on first
//!   use). An unknown, changed or mismatching server fails the handshake
//!   ([`Error::UnknownServer`], [`Error::ChangedServer`],
//!   [`Error::PinMismatch`]), so nothing written before is ever sent to it.
//! * Memory is bounded: a transport holds at most [`PLAINTEXT_LIMIT`]
//!   of received plaintext plus a record or two of socket input, and
//!   [`OUTGOING_LIMIT`] of output; see [`Transport`] for the driving rules.
//!
//! # Example
//!
//! An in-memory handshake and one message, the client pinning the server:
//!
//! ```
//! use std::time::SystemTime;
//! use ferry_tls::{Identity, TlsClient, TlsServer, Transport, Verify};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let identity = Identity::load_or_create(dir.path(), SystemTime::now())?;
//! let server_tls = TlsServer::new(&identity)?;
//! let verify = Verify::pinned(identity.fingerprint());
//! let mut client = Transport::client(&TlsClient::new(), "localhost", 7878, &verify)?;
//!
//! // Written before the handshake: held until the server is verified.
//! client.write_plaintext(b"HELLO")?;
//!
//! let mut wire = Vec::new();
//! client.take_outgoing(&mut wire);
//! let mut server = Transport::accept(&wire, Some(&server_tls))?;
//! assert!(server.is_tls());
//! while !wire.is_empty() || client.wants_write() || server.wants_write() {
//!     let n = server.feed(&wire)?;
//!     wire.drain(..n);
//!     let mut back = Vec::new();
//!     server.take_outgoing(&mut back);
//!     let n = client.feed(&back)?;
//!     assert_eq!(n, back.len());
//!     client.take_outgoing(&mut wire);
//! }
//! let mut buf = [0; 64];
//! let n = server.read_plaintext(&mut buf)?;
//! assert_eq!(&buf[..n], b"HELLO");
//! assert_eq!(server.alpn(), Some(ferry_tls::ALPN));
//! # Ok(())
//! # }
//! ```

#![cfg(unix)]
#![warn(missing_docs)]

mod connect;
mod der;
mod error;
mod files;
mod fingerprint;
mod flush;
mod identity;
mod known;
pub mod link;
mod transport;
mod verify;

use std::sync::{Arc, OnceLock};

pub use connect::{
    connect, handshake, io_error, remember, server_identity, tls_error_in, ClientTls, Connected,
};
pub use error::{Error, ParseFingerprintError, SetupError};
pub use fingerprint::Fingerprint;
pub use flush::{write_tls, Broke};
pub use identity::{Identity, CERT_FILE, KEY_FILE};
pub use known::{state_dir, KnownServer, KnownServers};
pub use transport::{
    Kind, TlsClient, TlsServer, Transport, Verify, ALPN, HANDSHAKE_INPUT_LIMIT, OUTGOING_LIMIT,
    PLAINTEXT_LIMIT, TLS_HANDSHAKE_BYTE,
};
pub use verify::Verified;

/// ring as rustls' crypto provider, made once.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}
