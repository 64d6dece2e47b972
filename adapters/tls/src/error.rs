//! What can go wrong, split by who is at fault.

use std::io;
use std::path::PathBuf;

use crate::Fingerprint;

/// An error of a [`Transport`](crate::Transport): the connection cannot go on.
///
/// The variants fall into four groups: the peer sent bytes that are not
/// TLS ([`NotTls`](Error::NotTls), [`Garbage`](Error::Garbage),
/// [`Truncated`](Error::Truncated)), or a ferry refusal in clear text
/// ([`RefusedBeforeTls`](Error::RefusedBeforeTls)); the handshake failed, with the reason
/// ([`Handshake`](Error::Handshake), [`CertificateName`](Error::CertificateName),
/// [`PinMismatch`](Error::PinMismatch), [`UnknownServer`](Error::UnknownServer),
/// [`ChangedServer`](Error::ChangedServer), [`Tls`](Error::Tls) after it);
/// a limit was exceeded ([`Limit`](Error::Limit)); or the driver misused the
/// API ([`Misuse`](Error::Misuse), never caused by the peer's bytes).
///
/// After an error the transport may still hold an alert for the peer: write
/// out [`Transport::take_outgoing`](crate::Transport::take_outgoing) once,
/// if the socket allows, then close the socket.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client's first byte from the server cannot start a TLS record:
    /// the server speaks plain ferry, raw text or something else.
    #[error("server speaks no TLS (its first byte is {first_byte:#04x})")]
    NotTls {
        /// The server's first byte.
        first_byte: u8,
    },
    /// The server turned the connection away in clear text before TLS
    /// could begin, with a ferry `ERROR` (a TLS server does so for a limit
    /// it enforces at connect: too many connections from one address, a
    /// banned source, a shutdown).
    #[error("server turned the connection away before TLS began: {reason} ({code})")]
    RefusedBeforeTls {
        /// The `ERROR`'s code.
        code: ferry_core::Code,
        /// The `ERROR`'s reason.
        reason: String,
    },
    /// The peer sent bytes that are not valid TLS here: undecodable,
    /// failing to decrypt, or breaking the protocol's rules.
    #[error("peer sent invalid TLS data: {reason}")]
    Garbage {
        /// rustls' reason.
        reason: rustls::Error,
    },
    /// The connection ended during the handshake.
    #[error("connection closed during the TLS handshake")]
    Truncated,
    /// The handshake failed (an alert from the peer, no common protocol
    /// version or ALPN, a certificate rejected by the CA path, ...).
    #[error("TLS handshake failed: {reason}")]
    Handshake {
        /// rustls' reason.
        reason: rustls::Error,
    },
    /// The server's certificate chains to a trusted root but names other hosts.
    #[error("certificate for {} is not valid for {expected}", presented.join(", "))]
    CertificateName {
        /// The name the client asked for.
        expected: String,
        /// The names in the certificate.
        presented: Vec<String>,
    },
    /// The client pinned a fingerprint and the server showed another.
    #[error("server's certificate {actual} does not match the pinned {pinned}")]
    PinMismatch {
        /// The fingerprint the client pinned.
        pinned: Fingerprint,
        /// The fingerprint of the server's certificate.
        actual: Fingerprint,
    },
    /// The server's certificate is neither pinned, nor CA-signed for its
    /// name, nor in the known-servers file. Connect again with
    /// [`Verify::pin`](crate::Verify) set to `fingerprint` (after asking the
    /// user) and record it with [`KnownServers::add`](crate::KnownServers::add).
    #[error("server {server} is not known; its certificate is {fingerprint} (not trusted by a CA: {ca_reason}); to trust it, connect with --fingerprint {fingerprint}")]
    UnknownServer {
        /// `HOST:PORT`, as the known-servers file writes it.
        server: String,
        /// The fingerprint of the server's certificate.
        fingerprint: Fingerprint,
        /// Why the CA path did not accept the certificate.
        ca_reason: String,
    },
    /// The server's certificate is not the one the known-servers file
    /// records for it: a new key, or someone in the middle.
    #[error("server {server} changed its certificate: it shows {new} but {} line {line} records {old}; if the change is expected, delete that line", path.display())]
    ChangedServer {
        /// `HOST:PORT`.
        server: String,
        /// The recorded fingerprint.
        old: Fingerprint,
        /// The fingerprint the server showed.
        new: Fingerprint,
        /// The known-servers file.
        path: PathBuf,
        /// The line (from 1) of `path` that records `old`.
        line: usize,
    },
    /// A TLS error after the handshake (a record that fails to decrypt,
    /// an alert, a protocol violation).
    #[error("TLS error: {reason}")]
    Tls {
        /// rustls' reason.
        reason: rustls::Error,
    },
    /// The peer exceeded a size limit: a record or handshake message
    /// too large, or a server's handshake input over
    /// [`HANDSHAKE_INPUT_LIMIT`](crate::HANDSHAKE_INPUT_LIMIT).
    #[error("peer exceeded a TLS limit: {reason}")]
    Limit {
        /// Which limit, and rustls' words when it was rustls' limit.
        reason: String,
    },
    /// The driver called a method it must not call now; never caused by
    /// the peer's bytes.
    #[error("TLS transport misused: {0}")]
    Misuse(&'static str),
}

/// An error setting up TLS: the server's identity, the known-servers
/// file, a server name. Each names the file or value at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// A file or folder could not be read, written or created.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// A file or folder that holds secrets or trust decisions is not
    /// safe to use (a link, someone else's, writable by others).
    #[error("{}: {why}; refusing to use it", path.display())]
    Unsafe {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A PEM file holds no certificate or no key, or does not decode.
    #[error("{}: {why}", path.display())]
    Pem {
        /// The file (`<memory>` for in-memory PEM).
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The private key does not belong to the certificate.
    #[error("the key in {} does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The leaf certificate is outside its validity period now.
    #[error("the certificate in {} {why}", path.display())]
    Validity {
        /// The certificate file.
        path: PathBuf,
        /// "expired at ..." or "is not valid before ...".
        why: String,
    },
    /// rustls refused the certificate or key.
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
    /// Making the self-signed certificate failed.
    #[error("could not make a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The root certificates cannot make a verifier (e.g. none at all).
    #[error("TLS roots unusable: {0}")]
    Roots(#[from] rustls::client::VerifierBuilderError),
    /// The host is neither a DNS name nor an IP address.
    #[error("{0:?} is not a valid server name")]
    ServerName(String),
}

/// Why a text is not a [`Fingerprint`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseFingerprintError {
    /// The text does not start with `SHA256:`.
    #[error("a fingerprint starts with SHA256: followed by 64 hex digits")]
    NoPrefix,
    /// Another digest than SHA-256.
    #[error("fingerprint algorithm {0} is not supported; use SHA256:<64 hex digits>")]
    Algorithm(String),
    /// The hex part has the wrong length.
    #[error("a SHA256 fingerprint has 64 hex digits, not {0}")]
    Length(usize),
    /// A character that is not a hex digit.
    #[error("a SHA256 fingerprint has only hex digits (0-9, a-f) after SHA256:")]
    NotHex,
}
