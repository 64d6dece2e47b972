//! The transport: socket bytes in and out, plaintext bytes in and out.

use std::io::{self, BufRead, Read, Write};
use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use rustls::{CertificateError, ClientConfig, Connection, RootCertStore, ServerConfig};

use bytes::BytesMut;
use ferry_core::frame::{self, Frame, PREAMBLE};
use ferry_core::Code;

use crate::error::SetupError;
use crate::verify::{Verified, Verifier};
use crate::{provider, Error, Fingerprint, Identity, KnownServers};

/// The ALPN protocol name clients offer and servers accept.
pub const ALPN: &[u8] = b"ferry/1";

/// How much received plaintext a transport holds before
/// [`Transport::feed`] refuses more socket bytes (it may overshoot by the
/// records already buffered, at most about one more record).
pub const PLAINTEXT_LIMIT: usize = 16 * 1024;

/// How much unsent output (plaintext before the handshake ends, records
/// after) a transport holds before [`Transport::write_plaintext`] accepts
/// no more, and [`Transport::feed`] refuses more input until the driver
/// takes the output out.
pub const OUTGOING_LIMIT: usize = 64 * 1024;

/// How many bytes a server transport takes from a client before its
/// handshake ends. A client's whole flight (ClientHello, perhaps a second
/// one after a HelloRetryRequest, Finished) is a few KiB; past this the
/// client is refused with [`Error::Limit`] instead of being buffered up to
/// rustls' 64 KiB cap on one handshake message.
pub const HANDSHAKE_INPUT_LIMIT: usize = 32 * 1024;

/// The first byte of a TLS ClientHello record (content type handshake).
pub const TLS_HANDSHAKE_BYTE: u8 = 0x16;

/// Clear-text bytes a client holds when the server's first byte is the
/// ferry preamble's, hoping for a whole `ERROR` that says why it was turned
/// away: the preamble and a header, and a reason of up to about 500 bytes.
const CLEAR_REFUSAL_LIMIT: usize = 1024;

/// What a new connection speaks, told by its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A TLS ClientHello: the first byte is [`TLS_HANDSHAKE_BYTE`].
    Tls,
    /// Anything else: ferry's preamble (0x89), raw text, ...
    Plain,
}

impl Kind {
    /// Classifies a connection by the first byte the client sent.
    pub fn of_first_byte(byte: u8) -> Kind {
        match byte {
            TLS_HANDSHAKE_BYTE => Kind::Tls,
            _ => Kind::Plain,
        }
    }
}

/// A server's TLS settings, made once and shared by every connection.
#[derive(Debug, Clone)]
pub struct TlsServer {
    config: Arc<ServerConfig>,
    fingerprint: Fingerprint,
    required: bool,
}

impl TlsServer {
    /// TLS 1.3 serving `identity`, accepting clients that offer ALPN
    /// [`ALPN`] or no ALPN at all (e.g. `openssl s_client` as a raw-text guest).
    pub fn new(identity: &Identity) -> Result<TlsServer, SetupError> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
                identity.certified_key(),
            )));
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(TlsServer {
            config: Arc::new(config),
            fingerprint: identity.fingerprint(),
            required: false,
        })
    }

    /// Whether clear-text connections are turned away
    /// ([`Hub::refuse_unencrypted`]) rather than served beside TLS ones on
    /// the same port. Off by default.
    ///
    /// [`Hub::refuse_unencrypted`]: https://docs.rs/ferry-core/latest/ferry_core/struct.Hub.html#method.refuse_unencrypted
    pub fn require_tls(mut self, required: bool) -> TlsServer {
        self.required = required;
        self
    }

    /// Whether clear-text connections are turned away.
    pub fn is_required(&self) -> bool {
        self.required
    }

    /// The fingerprint of the certificate this server shows.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }
}

/// A client's TLS settings: the roots the CA path trusts and, for trust
/// on first use, the known-servers list. Make one per program; each
/// [`Transport::client`] call checks one server with it.
#[derive(Debug, Clone)]
pub struct TlsClient {
    provider: Arc<CryptoProvider>,
    ca: Arc<WebPkiServerVerifier>,
    known: Option<KnownServers>,
    clock: Option<Arc<dyn rustls::time_provider::TimeProvider>>,
}

impl TlsClient {
    /// Trusts the Mozilla roots of `webpki-roots` and keeps no known servers.
    pub fn new() -> TlsClient {
        // The compiled-in roots are never empty, the only way building fails.
        TlsClient::with_roots(TlsClient::webpki_roots()).expect("webpki roots make a verifier")
    }

    /// Trusts exactly `roots` (tests add their own CA to
    /// [`webpki_roots`](TlsClient::webpki_roots) or start empty).
    pub fn with_roots(roots: RootCertStore) -> Result<TlsClient, SetupError> {
        let provider = provider();
        let ca = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()?;
        Ok(TlsClient {
            provider,
            ca,
            known: None,
            clock: None,
        })
    }

    /// Checks certificates' validity on the CA path against `clock`
    /// instead of the system clock (tests, or a driver that owns time).
    pub fn with_clock(mut self, clock: Arc<dyn rustls::time_provider::TimeProvider>) -> TlsClient {
        self.clock = Some(clock);
        self
    }

    /// The Mozilla root certificates, to extend.
    pub fn webpki_roots() -> RootCertStore {
        RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }
    }

    /// Falls back on `known` when a server is neither pinned nor
    /// CA-signed for its name; without it such a server is refused with
    /// the CA's reason.
    pub fn with_known_servers(mut self, known: KnownServers) -> TlsClient {
        self.known = Some(known);
        self
    }

    /// The known-servers list, to record a server in after
    /// [`Verified::New`] or after the user accepted an
    /// [`Error::UnknownServer`].
    pub fn known_servers_mut(&mut self) -> Option<&mut KnownServers> {
        self.known.as_mut()
    }
}

impl Default for TlsClient {
    fn default() -> TlsClient {
        TlsClient::new()
    }
}

/// How a client checks one server, beyond its [`TlsClient`] settings.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Verify {
    /// Accept only a certificate with this fingerprint (no CA, no known servers).
    pub pin: Option<Fingerprint>,
    /// Accept a server that is not known (and not CA-signed) instead of
    /// failing with [`Error::UnknownServer`]; the transport then reports
    /// [`Verified::New`] so the driver records it.
    pub trust_new_server: bool,
}

impl Verify {
    /// Only the certificate with `fingerprint`.
    pub fn pinned(fingerprint: Fingerprint) -> Verify {
        Verify {
            pin: Some(fingerprint),
            trust_new_server: false,
        }
    }

    /// Also trust an unknown server (see [`Verify::trust_new_server`]).
    pub fn trusting_new_server(mut self) -> Verify {
        self.trust_new_server = true;
        self
    }
}

enum Inner {
    Plain {
        incoming: Vec<u8>,
        outgoing: Vec<u8>,
    },
    Tls(Box<Connection>),
}

/// One connection's transport: TLS (client or server side) or plain
/// pass-through, with the same methods either way. It does no I/O: the
/// driver feeds it what the socket read and writes out what it gives.
///
/// # Driving it
///
/// * **Read side.** After the socket reads bytes, call
///   [`feed`](Transport::feed) with them; it returns how many it took. Keep
///   the rest and offer them again after taking plaintext out with
///   [`read_plaintext`](Transport::read_plaintext) until it returns 0. A
///   feed that takes 0 of a non-empty slice means "drain first": stop
///   reading the socket until plaintext was taken or output written.
///   When the socket reads end of file, call
///   [`feed_eof`](Transport::feed_eof).
/// * **Write side.** [`write_plaintext`](Transport::write_plaintext)
///   takes at most what fits under [`OUTGOING_LIMIT`] and says how much.
///   Whenever [`wants_write`](Transport::wants_write) is true (after every
///   feed too: the handshake answers the peer), write the bytes of
///   [`write_to`](Transport::write_to) (a socket, handles partial writes)
///   or [`take_outgoing`](Transport::take_outgoing) (a buffer of yours).
///   A client's first flight is ready as soon as it is made.
/// * **Shutdown.** [`close`](Transport::close) queues TLS close_notify;
///   write the output out, then shut the socket down. After an
///   [`Error`], write out the output once (an alert) and close.
///
/// Plaintext written before the handshake ends is held and sent
/// encrypted once it ends; for a client, only after the server was
/// verified, so nothing reaches an unverified server. Until then
/// `write_plaintext` takes at most [`OUTGOING_LIMIT`]; a blocking driver
/// that gets 0 with nothing to write (`!wants_write()`) must read the
/// socket next, or it waits forever for a handshake it never feeds.
///
/// # In each runtime
///
/// * **Blocking std**: read the socket, feed, read plaintext out, write
///   out with `write_to` while `wants_write`; one thread per connection
///   or a reader and a writer sharing the transport under a lock
///   (`tests/socket.rs` has a whole blocking driver).
/// * **mio**: on readable, read into the connection's buffer until
///   `WouldBlock` or the buffer is full and feed it; when `feed` takes 0,
///   stop reading (drop readable interest) until the plaintext was taken
///   out. After every feed and write, if `wants_write`, call `write_to`
///   until `WouldBlock` and keep writable interest while `wants_write`.
/// * **smol / async**: the same with `read().await` into a buffer and
///   `write_all(&out).await` of [`take_outgoing`](Transport::take_outgoing).
///
/// A server should put a deadline on the handshake (`is_handshaking`
/// still true after a few seconds): the transport has no clock.
/// Error messages are for people; log them with the peer's address.
pub struct Transport {
    inner: Inner,
    is_client: bool,
    first_byte_seen: bool,
    /// Client: the server answered in clear ferry framing; what came so far.
    clear_refusal: Option<Vec<u8>>,
    handshake_input: usize,
    plaintext: usize,
    peer_closed: bool,
    closing: bool,
    failed: Option<Error>,
    outcome: Option<Arc<Mutex<Option<Verified>>>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("tls", &self.is_tls())
            .field("client", &self.is_client)
            .field("handshaking", &self.is_handshaking())
            .field("plaintext", &self.plaintext)
            .field("peer_closed", &self.peer_closed)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Transport {
    fn new(inner: Inner, is_client: bool) -> Transport {
        Transport {
            inner,
            is_client,
            first_byte_seen: false,
            clear_refusal: None,
            handshake_input: 0,
            plaintext: 0,
            peer_closed: false,
            closing: false,
            failed: None,
            outcome: None,
        }
    }

    /// A pass-through transport: plaintext in, the same bytes out.
    pub fn plain() -> Transport {
        Transport::new(
            Inner::Plain {
                incoming: Vec::new(),
                outgoing: Vec::new(),
            },
            false,
        )
    }

    /// The server side of a TLS connection.
    pub fn server(tls: &TlsServer) -> Transport {
        // A fresh connection from a built config fails only when the
        // config itself is inconsistent, which TlsServer::new rules out.
        let mut conn = rustls::ServerConnection::new(tls.config.clone())
            .expect("a server config from TlsServer::new is usable");
        conn.set_buffer_limit(Some(OUTGOING_LIMIT));
        Transport::new(Inner::Tls(Box::new(conn.into())), false)
    }

    /// A server's transport for a new connection, by the connection's
    /// first bytes: TLS if they start a ClientHello and `tls` is given,
    /// else plain. It does not consume `first_bytes`: feed them next, as
    /// usual, so none is lost.
    pub fn accept(first_bytes: &[u8], tls: Option<&TlsServer>) -> Result<Transport, Error> {
        let Some(&first) = first_bytes.first() else {
            return Err(Error::Misuse("accept needs the connection's first bytes"));
        };
        Ok(match (Kind::of_first_byte(first), tls) {
            (Kind::Tls, Some(tls)) => Transport::server(tls),
            _ => Transport::plain(),
        })
    }

    /// The client side of a TLS connection to `host` (a DNS name or an IP
    /// address, IPv6 with or without brackets) at `port`, checked by
    /// `verify` and `tls` in this order: a pin; else a certificate that
    /// chains to `tls`'s roots for `host` (dates checked against the
    /// system clock or [`TlsClient::with_clock`]); else the known-servers list. Offers ALPN [`ALPN`].
    pub fn client(
        tls: &TlsClient,
        host: &str,
        port: u16,
        verify: &Verify,
    ) -> Result<Transport, SetupError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(bare.to_string())
            .map_err(|_| SetupError::ServerName(host.to_string()))?;
        let outcome = Arc::new(Mutex::new(None));
        let verifier = Verifier {
            provider: tls.provider.clone(),
            ca: tls.ca.clone(),
            pin: verify.pin,
            known: tls
                .known
                .as_ref()
                .map(|k| (k.path().to_path_buf(), k.lookup_all(host, port))),
            trust_new: verify.trust_new_server,
            server: crate::known::server_key(host, port),
            outcome: outcome.clone(),
        };
        let builder = match &tls.clock {
            Some(clock) => ClientConfig::builder_with_details(tls.provider.clone(), clock.clone()),
            None => ClientConfig::builder_with_provider(tls.provider.clone()),
        };
        let mut config = builder
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        config.alpn_protocols = vec![ALPN.to_vec()];
        // Each connection has its own config (its verifier knows the
        // server's known-servers record), so a session cache could never
        // be reused; and a resumed session would skip the check.
        config.resumption = rustls::client::Resumption::disabled();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name)?;
        conn.set_buffer_limit(Some(OUTGOING_LIMIT));
        let mut transport = Transport::new(Inner::Tls(Box::new(conn.into())), true);
        transport.outcome = Some(outcome);
        Ok(transport)
    }

    /// Whether this transport speaks TLS (not pass-through).
    pub fn is_tls(&self) -> bool {
        matches!(self.inner, Inner::Tls(_))
    }

    /// Whether the TLS handshake is still going on (false for plain).
    pub fn is_handshaking(&self) -> bool {
        match &self.inner {
            Inner::Plain { .. } => false,
            Inner::Tls(conn) => conn.is_handshaking(),
        }
    }

    /// Whether there are socket bytes to write out.
    pub fn wants_write(&self) -> bool {
        match &self.inner {
            Inner::Plain { outgoing, .. } => !outgoing.is_empty(),
            Inner::Tls(conn) => conn.wants_write(),
        }
    }

    /// How many plaintext bytes wait for [`read_plaintext`](Transport::read_plaintext).
    pub fn plaintext_pending(&self) -> usize {
        self.plaintext
    }

    /// How many bytes wait to be written to the socket (for TLS, the
    /// records; plaintext written before the handshake ends counts once
    /// it is encrypted).
    pub fn outgoing_pending(&mut self) -> usize {
        match &mut self.inner {
            Inner::Plain { outgoing, .. } => outgoing.len(),
            Inner::Tls(conn) => match conn.process_new_packets() {
                Ok(state) => state.tls_bytes_to_write(),
                Err(_) => usize::from(conn.wants_write()),
            },
        }
    }

    /// Whether the peer ended its side: close_notify, or end of file
    /// after the handshake (plain: end of file). After close_notify
    /// [`feed`](Transport::feed) takes nothing more.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// The protocol the peer agreed by ALPN (`Some(ALPN)` or `None`:
    /// a client that offered none, or a plain transport).
    pub fn alpn(&self) -> Option<&[u8]> {
        match &self.inner {
            Inner::Plain { .. } => None,
            Inner::Tls(conn) => conn.alpn_protocol(),
        }
    }

    /// The fingerprint of the peer's certificate (a client's view of the
    /// server), once the handshake has seen it.
    pub fn peer_fingerprint(&self) -> Option<Fingerprint> {
        match &self.inner {
            Inner::Plain { .. } => None,
            Inner::Tls(conn) => conn
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(Fingerprint::of),
        }
    }

    /// How a client trusted the server, once it has (None on a server
    /// or plain transport, and before the check).
    pub fn verified(&self) -> Option<Verified> {
        let outcome = self.outcome.as_ref()?;
        // See Verifier::verify_server_cert: a poisoned Option is whole.
        outcome.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn fail(&mut self, error: Error) -> Error {
        self.failed = Some(error.clone());
        error
    }

    fn check(&self) -> Result<(), Error> {
        match &self.failed {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    /// Takes bytes read from the socket; returns how many it took, which
    /// is fewer (maybe 0) while [`PLAINTEXT_LIMIT`] plaintext awaits
    /// [`read_plaintext`](Transport::read_plaintext) or
    /// [`OUTGOING_LIMIT`] output awaits the socket. Offer the rest again
    /// after draining. An error ends the connection.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<usize, Error> {
        self.check()?;
        let is_client = self.is_client;
        match &mut self.inner {
            Inner::Plain { incoming, .. } => {
                let n = bytes
                    .len()
                    .min(PLAINTEXT_LIMIT.saturating_sub(incoming.len()));
                incoming.extend_from_slice(&bytes[..n]);
                self.plaintext = incoming.len();
                Ok(n)
            }
            Inner::Tls(_) if is_client && self.clear_refusal.is_some() => self.hold_refusal(bytes),
            Inner::Tls(_)
                if is_client && !self.first_byte_seen && bytes.first() == Some(&PREAMBLE[0]) =>
            {
                self.first_byte_seen = true;
                self.clear_refusal = Some(Vec::new());
                self.hold_refusal(bytes)
            }
            Inner::Tls(conn) => {
                if let (false, true, Some(&first)) =
                    (self.first_byte_seen, is_client, bytes.first())
                {
                    // A server's first record is a handshake or an alert;
                    // any other byte means it is not speaking TLS at all.
                    if !(0x14..=0x17).contains(&first) {
                        return Err(self.fail(Error::NotTls { first_byte: first }));
                    }
                }
                self.first_byte_seen |= !bytes.is_empty();
                let handshaking = conn.is_handshaking();
                let mut state = match conn.process_new_packets() {
                    Ok(state) => state,
                    Err(e) => return Err(self.fail(describe_at(e, handshaking))),
                };
                let mut taken = 0;
                while taken < bytes.len()
                    && state.plaintext_bytes_to_read() < PLAINTEXT_LIMIT
                    && state.tls_bytes_to_write() < OUTGOING_LIMIT
                    && !state.peer_has_closed()
                {
                    let mut rest = &bytes[taken..];
                    let handshaking = conn.is_handshaking();
                    if !is_client && handshaking {
                        let room = HANDSHAKE_INPUT_LIMIT.saturating_sub(self.handshake_input);
                        if room == 0 {
                            let reason = format!("handshake over {HANDSHAKE_INPUT_LIMIT} bytes");
                            return Err(self.fail(Error::Limit { reason }));
                        }
                        rest = &rest[..rest.len().min(room)];
                    }
                    match conn.read_tls(&mut rest) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            taken += n;
                            if handshaking {
                                self.handshake_input += n;
                            }
                        }
                    }
                    state = match conn.process_new_packets() {
                        Ok(state) => state,
                        Err(e) => return Err(self.fail(describe_at(e, handshaking))),
                    };
                }
                self.plaintext = state.plaintext_bytes_to_read();
                Ok(taken)
            }
        }
    }

    /// Client: the server's clear-text answer grows by `bytes`. Once it
    /// holds a whole ferry `ERROR`, that is the error; until then the bytes
    /// are taken and held, up to [`CLEAR_REFUSAL_LIMIT`].
    fn hold_refusal(&mut self, bytes: &[u8]) -> Result<usize, Error> {
        let held = self.clear_refusal.get_or_insert_with(Vec::new);
        let take = bytes.len().min(CLEAR_REFUSAL_LIMIT - held.len());
        held.extend_from_slice(&bytes[..take]);
        match refusal_in(held) {
            Some(error) => Err(self.fail(error)),
            None if held.len() < CLEAR_REFUSAL_LIMIT => Ok(take),
            None => Err(self.fail(Error::NotTls {
                first_byte: PREAMBLE[0],
            })),
        }
    }

    /// Tells the transport the socket read end of file. An error if the
    /// TLS handshake had not finished ([`Error::Truncated`]).
    pub fn feed_eof(&mut self) -> Result<(), Error> {
        self.check()?;
        if self.clear_refusal.is_some() {
            // Clear ferry bytes that never made a whole ERROR.
            return Err(self.fail(Error::NotTls {
                first_byte: PREAMBLE[0],
            }));
        }
        if let Inner::Tls(conn) = &mut self.inner {
            // An empty read is how rustls learns of end of file.
            let _ = conn.read_tls(&mut io::empty());
            if let Err(e) = conn.process_new_packets() {
                let error = describe_at(e, conn.is_handshaking());
                return Err(self.fail(error));
            }
            if conn.is_handshaking() {
                return Err(self.fail(Error::Truncated));
            }
        }
        self.peer_closed = true;
        Ok(())
    }

    /// Copies received plaintext into `buf`; returns how many bytes, 0 when
    /// none waits (then see [`peer_closed`](Transport::peer_closed)).
    pub fn read_plaintext(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        match &mut self.inner {
            Inner::Plain { incoming, .. } => {
                let n = buf.len().min(incoming.len());
                buf[..n].copy_from_slice(&incoming[..n]);
                incoming.drain(..n);
                self.plaintext = incoming.len();
                Ok(n)
            }
            Inner::Tls(conn) => match conn.reader().read(buf) {
                Ok(0) => {
                    self.peer_closed = true;
                    Ok(0)
                }
                Ok(n) => {
                    self.plaintext = self.plaintext.saturating_sub(n);
                    Ok(n)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.plaintext = 0;
                    Ok(0)
                }
                // The peer closed without close_notify after the handshake
                // (feed_eof caught the case during it): ferry's own
                // protocol tells a finished session from a cut one.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    self.peer_closed = true;
                    self.plaintext = 0;
                    Ok(0)
                }
                Err(_) => Err(Error::Misuse("reading plaintext failed")),
            },
        }
    }

    /// Received plaintext where the transport holds it, without copying it
    /// out: empty when none waits (then see
    /// [`peer_closed`](Transport::peer_closed)). Pass what was used to
    /// [`consume_plaintext`](Transport::consume_plaintext); until then the
    /// same bytes come again. For TLS it is one record's plaintext at a
    /// time: call again after consuming for the next.
    pub fn plaintext(&mut self) -> Result<&[u8], Error> {
        let conn = match &mut self.inner {
            Inner::Plain { incoming, .. } => return Ok(incoming),
            Inner::Tls(conn) => conn,
        };
        // The chunk's length first: a borrow returned from one arm of a
        // match cannot coexist with the state updates of the others.
        match conn.reader().fill_buf().map(<[u8]>::len) {
            Ok(0) => {
                self.peer_closed = true;
                Ok(&[])
            }
            Ok(_) => conn
                .reader()
                .into_first_chunk()
                .map_err(|_| Error::Misuse("reading plaintext failed")),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.plaintext = 0;
                Ok(&[])
            }
            // As in read_plaintext: the peer closed without close_notify
            // after the handshake.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                self.peer_closed = true;
                self.plaintext = 0;
                Ok(&[])
            }
            Err(_) => Err(Error::Misuse("reading plaintext failed")),
        }
    }

    /// Drops the first `n` bytes of [`plaintext`](Transport::plaintext),
    /// used up.
    pub fn consume_plaintext(&mut self, n: usize) {
        match &mut self.inner {
            Inner::Plain { incoming, .. } => {
                incoming.drain(..n.min(incoming.len()));
                self.plaintext = incoming.len();
            }
            Inner::Tls(conn) => {
                conn.reader().consume(n);
                self.plaintext = self.plaintext.saturating_sub(n);
            }
        }
    }

    /// Queues plaintext for the peer; returns how much it took, at most
    /// what fits under [`OUTGOING_LIMIT`] (0 when full: write output out
    /// first).
    pub fn write_plaintext(&mut self, data: &[u8]) -> Result<usize, Error> {
        self.check()?;
        if self.closing {
            return Err(Error::Misuse("write after close"));
        }
        match &mut self.inner {
            Inner::Plain { outgoing, .. } => {
                let n = data
                    .len()
                    .min(OUTGOING_LIMIT.saturating_sub(outgoing.len()));
                outgoing.extend_from_slice(&data[..n]);
                Ok(n)
            }
            Inner::Tls(conn) => conn
                .writer()
                .write(data)
                .map_err(|_| Error::Misuse("writing plaintext failed")),
        }
    }

    /// Appends every byte waiting for the socket to `out`; returns how many.
    pub fn take_outgoing(&mut self, out: &mut Vec<u8>) -> usize {
        match &mut self.inner {
            Inner::Plain { outgoing, .. } => {
                let n = outgoing.len();
                out.append(outgoing);
                n
            }
            Inner::Tls(conn) => {
                let mut n = 0;
                while conn.wants_write() {
                    match conn.write_tls(out) {
                        // Writing into a Vec cannot fail or stop short.
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
                }
                n
            }
        }
    }

    /// Writes waiting socket bytes to `socket` with one write call; returns
    /// how many it wrote (the rest stays queued). `WouldBlock` passes
    /// through for non-blocking sockets.
    pub fn write_to(&mut self, socket: &mut dyn Write) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain { outgoing, .. } => {
                if outgoing.is_empty() {
                    return Ok(0);
                }
                let n = socket.write(outgoing)?;
                outgoing.drain(..n);
                Ok(n)
            }
            Inner::Tls(conn) => conn.write_tls(socket),
        }
    }

    /// Ends our side: queues TLS close_notify (write it out, then shut
    /// the socket down). Later writes are misuse.
    pub fn close(&mut self) {
        if let (false, Inner::Tls(conn)) = (self.closing, &mut self.inner) {
            conn.send_close_notify();
        }
        self.closing = true;
    }
}

/// A rustls error as this crate's [`Error`], a failure after the
/// handshake as [`Error::Tls`].
/// What a server's clear-text answer (`held`, starting with the ferry
/// preamble's first byte) says, once it says enough: `None` while a whole
/// preamble and frame have not arrived. A plain ferry server that does
/// not take TLS at all says `NOT_FERRY`: that is [`Error::NotTls`], like
/// any other server that does not speak TLS, and so is anything but an
/// `ERROR`.
fn refusal_in(held: &[u8]) -> Option<Error> {
    let not_tls = Error::NotTls {
        first_byte: PREAMBLE[0],
    };
    let matched = held.len().min(PREAMBLE.len());
    if held[..matched] != PREAMBLE[..matched] {
        return Some(not_tls);
    }
    if held.len() == PREAMBLE.len() {
        return None;
    }
    let mut rest = BytesMut::from(&held[PREAMBLE.len().min(held.len())..]);
    match frame::decode(&mut rest, CLEAR_REFUSAL_LIMIT as u32) {
        Ok(None) => None,
        Ok(Some(Frame::Error { code, .. })) if code == Code::NOT_FERRY => Some(not_tls),
        Ok(Some(Frame::Error { code, reason })) => Some(Error::RefusedBeforeTls {
            code,
            reason: reason.to_string(),
        }),
        Ok(Some(_)) | Err(_) => Some(not_tls),
    }
}

fn describe_at(error: rustls::Error, handshaking: bool) -> Error {
    match describe(error) {
        Error::Handshake { reason } if !handshaking => Error::Tls { reason },
        error => error,
    }
}

/// A rustls error as this crate's [`Error`].
pub(crate) fn describe(error: rustls::Error) -> Error {
    use rustls::{Error as E, InvalidMessage};
    match error {
        E::InvalidCertificate(CertificateError::Other(other)) => {
            match other.0.downcast_ref::<Error>() {
                Some(ours) => ours.clone(),
                None => Error::Handshake {
                    reason: E::InvalidCertificate(CertificateError::Other(other)),
                },
            }
        }
        E::InvalidCertificate(CertificateError::NotValidForNameContext {
            expected,
            presented,
        }) => Error::CertificateName {
            expected: server_name_text(&expected),
            presented: presented.iter().map(|name| presented_name(name)).collect(),
        },
        E::InvalidMessage(
            InvalidMessage::MessageTooLarge
            | InvalidMessage::HandshakePayloadTooLarge
            | InvalidMessage::CertificatePayloadTooLarge,
        ) => Error::Limit {
            reason: error.to_string(),
        },
        E::InvalidMessage(_) | E::DecryptError | E::PeerMisbehaved(_) => {
            Error::Garbage { reason: error }
        }
        E::HandshakeNotComplete => Error::Truncated,
        reason => Error::Handshake { reason },
    }
}

fn server_name_text(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(dns) => dns.as_ref().to_string(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

/// A name as rustls shows it (`DnsName("example.com")`), bare.
fn presented_name(shown: &str) -> String {
    shown
        .strip_prefix("DnsName(\"")
        .and_then(|rest| rest.strip_suffix("\")"))
        .unwrap_or(shown)
        .to_string()
}
