//! A connection in its handshake: a blocking TLS driver with a deadline,
//! the peer handshake of both sides, and what can go wrong on a link.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ferry_core::cluster::ServerId;
use ferry_tls::Transport;

use super::{PeerKey, MAX_FRAME};

/// The connector's first bytes.
pub(super) const MAGIC: &[u8; 10] = b"FERRYPEER1";
/// The connector's hello: magic, its id, the acceptor's id, its nonce.
const HELLO_LEN: usize = MAGIC.len() + 8 + 8 + 32;
/// The acceptor's answer: its id, its nonce, its MAC.
const ANSWER_LEN: usize = 8 + 32 + 32;
/// The connector's proof: its MAC.
const PROOF_LEN: usize = 32;

/// Why a link could not be made or ended; its text is the reason a
/// [`PeerEvent::Lost`](super::PeerEvent::Lost) gives.
#[derive(Debug, thiserror::Error)]
pub(super) enum Failure {
    /// A send to this server itself.
    #[error("a server does not link to itself")]
    Myself,
    /// `locate` said no.
    #[error("cannot locate it: {0}")]
    Locate(String),
    /// The TCP connect failed.
    #[error("cannot connect to {addr}: {detail}")]
    Connect { addr: SocketAddr, detail: String },
    /// The handshake did not end in time.
    #[error("no answer within {}", duration_text(*.0))]
    Timeout(Duration),
    /// The certificate is not the pinned one.
    #[error("the peer's certificate is not the one it advertised ({0})")]
    Certificate(ferry_tls::Error),
    /// Any other TLS failure.
    #[error("TLS failed: {0}")]
    Tls(ferry_tls::Error),
    /// The TLS client could not be made (a bad address).
    #[error("TLS setup failed: {0}")]
    Setup(String),
    /// The acceptor's MAC is wrong.
    #[error("the peer does not know the cluster secret")]
    Secret,
    /// The acceptor answered with another id than the one dialled.
    #[error("the server at that address is {0}, not the one located there")]
    NotThePeer(ServerId),
    /// The connector did not open with [`MAGIC`].
    #[error("the peer did not open with a ferry peer hello")]
    NotAPeer,
    /// The connector dialled another server.
    #[error("the peer wants server {0}, not this one")]
    NotForMe(ServerId),
    /// The connection ended before the handshake did.
    #[error(
        "the peer closed the link during the handshake \
         (it may not be the server located there, or it refused our secret)"
    )]
    ClosedInHandshake,
    /// The peer ended the link.
    #[error("the peer closed the link")]
    Closed,
    /// A write to a peer that stopped reading gave up.
    #[error("the peer read nothing for {}: a write gave up", duration_text(*.0))]
    WriteStalled(Duration),
    /// The socket failed.
    #[error("the link failed: {}", io_text(.0))]
    Io(io::Error),
    /// The peer announced a frame over [`MAX_FRAME`].
    #[error("the peer sent a frame of {0} bytes, over the limit of {MAX_FRAME}")]
    FrameTooLong(u64),
    /// No thread could be started for the link.
    #[error("cannot start a thread for the link: {}", io_text(.0))]
    Thread(io::Error),
    /// The link was given up by someone else (a failure already recorded,
    /// a close): nothing more to say.
    #[error("the link was dropped")]
    Dropped,
}

/// An I/O error in a few words: "connection refused" rather than
/// "Connection refused (os error 111)".
pub(super) fn io_text(error: &io::Error) -> String {
    use io::ErrorKind as K;
    match error.kind() {
        K::ConnectionRefused => "connection refused".into(),
        K::ConnectionReset => "connection reset by the peer".into(),
        K::ConnectionAborted => "connection aborted".into(),
        K::BrokenPipe => "the peer closed the connection".into(),
        K::NotConnected => "not connected".into(),
        K::AddrNotAvailable => "address not available".into(),
        _ => error.to_string(),
    }
}

/// "10 s", "1.5 s", "250 ms".
pub(super) fn duration_text(duration: Duration) -> String {
    if duration.subsec_millis() == 0 && duration.as_secs() > 0 {
        format!("{} s", duration.as_secs())
    } else if duration.as_secs() > 0 {
        format!("{:.1} s", duration.as_secs_f64())
    } else {
        format!("{} ms", duration.as_millis())
    }
}

fn timed_out(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn tls_failure(error: ferry_tls::Error) -> Failure {
    match error {
        ferry_tls::Error::PinMismatch { .. } => Failure::Certificate(error),
        error => Failure::Tls(error),
    }
}

/// A socket and its TLS transport, driven by blocking calls that give up
/// at one deadline: what a connection is until its handshake ends.
pub(super) struct Wire {
    pub(super) stream: TcpStream,
    pub(super) transport: Transport,
    /// Socket bytes the transport has not taken yet.
    pub(super) unfed: Vec<u8>,
    deadline: Instant,
    timeout: Duration,
}

impl Wire {
    /// `transport` over `stream`, giving up at `deadline` (`timeout`
    /// after the start, for the reason).
    pub(super) fn new(
        stream: TcpStream,
        transport: Transport,
        deadline: Instant,
        timeout: Duration,
    ) -> Wire {
        Wire {
            stream,
            transport,
            unfed: Vec::new(),
            deadline,
            timeout,
        }
    }

    fn left(&self) -> Result<Duration, Failure> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        match left.is_zero() {
            true => Err(Failure::Timeout(self.timeout)),
            false => Ok(left),
        }
    }

    /// Writes out everything the transport has for the socket.
    fn flush(&mut self) -> Result<(), Failure> {
        while self.transport.wants_write() {
            let left = self.left()?;
            self.stream
                .set_write_timeout(Some(left))
                .map_err(Failure::Io)?;
            match self.transport.write_to(&mut self.stream) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if timed_out(&e) => return Err(Failure::Timeout(self.timeout)),
                Err(e) => return Err(Failure::Io(e)),
            }
        }
        Ok(())
    }

    /// Reads the socket once if nothing waits to be fed, and feeds.
    fn pump(&mut self) -> Result<(), Failure> {
        if self.unfed.is_empty() {
            let left = self.left()?;
            self.stream
                .set_read_timeout(Some(left))
                .map_err(Failure::Io)?;
            let mut buf = [0; 16 * 1024];
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.transport.feed_eof().map_err(tls_failure)?;
                    return Err(Failure::ClosedInHandshake);
                }
                Ok(n) => self.unfed.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
                Err(e) if timed_out(&e) => return Err(Failure::Timeout(self.timeout)),
                Err(e) => return Err(Failure::Io(e)),
            }
        }
        match self.transport.feed(&self.unfed) {
            Ok(n) => {
                self.unfed.drain(..n);
                Ok(())
            }
            Err(e) => {
                // The alert tells the peer why, if it still listens.
                let mut alert = Vec::new();
                self.transport.take_outgoing(&mut alert);
                let _ = self.stream.write(&alert);
                Err(tls_failure(e))
            }
        }
    }

    /// Sends `data` whole (held by TLS until the server is verified).
    fn write_all(&mut self, mut data: &[u8]) -> Result<(), Failure> {
        while !data.is_empty() {
            let n = self.transport.write_plaintext(data).map_err(tls_failure)?;
            data = &data[n..];
            self.flush()?;
            // Full with nothing to send: the handshake waits for the peer.
            if n == 0 && !self.transport.wants_write() {
                self.pump()?;
            }
        }
        self.flush()
    }

    /// Receives exactly `buf.len()` bytes.
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), Failure> {
        let mut got = 0;
        loop {
            self.flush()?;
            while got < buf.len() {
                let n = self
                    .transport
                    .read_plaintext(&mut buf[got..])
                    .map_err(tls_failure)?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            if got == buf.len() {
                return Ok(());
            }
            if self.transport.peer_closed() {
                return Err(Failure::ClosedInHandshake);
            }
            self.pump()?;
        }
    }
}

/// Both MACs: `label` is `"acceptor"` or `"connector"`.
fn mac(
    key: &PeerKey,
    label: &[u8],
    nonce_c: &[u8; 32],
    nonce_a: &[u8; 32],
    connector: ServerId,
    acceptor: ServerId,
) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new_keyed(key.bytes());
    hasher
        .update(label)
        .update(nonce_c)
        .update(nonce_a)
        .update(&connector.0.to_be_bytes())
        .update(&acceptor.0.to_be_bytes());
    hasher.finalize()
}

fn nonce() -> Result<[u8; 32], Failure> {
    let mut nonce = [0; 32];
    getrandom::fill(&mut nonce).map_err(|e| Failure::Io(io::Error::other(e.to_string())))?;
    Ok(nonce)
}

/// Splits `N` bytes off the front of `bytes`. Only used on the fixed-size
/// buffers of the handshake, whose fields add up to their length, so the
/// slice is always long enough.
fn take<const N: usize>(bytes: &mut &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&bytes[..N]);
    *bytes = &bytes[N..];
    out
}

/// The connector's side of the handshake, as server `me` dialling `to`
/// (whose certificate the transport pins).
pub(super) fn connect(
    wire: &mut Wire,
    key: &PeerKey,
    me: ServerId,
    to: ServerId,
) -> Result<(), Failure> {
    let nonce_c = nonce()?;
    let mut hello = Vec::with_capacity(HELLO_LEN);
    hello.extend_from_slice(MAGIC);
    hello.extend_from_slice(&me.0.to_be_bytes());
    hello.extend_from_slice(&to.0.to_be_bytes());
    hello.extend_from_slice(&nonce_c);
    wire.write_all(&hello)?;

    let mut answer = [0; ANSWER_LEN];
    wire.read_exact(&mut answer)?;
    let mut rest = &answer[..];
    let answered = ServerId(u64::from_be_bytes(take(&mut rest)));
    let nonce_a: [u8; 32] = take(&mut rest);
    let mac_a: [u8; 32] = take(&mut rest);
    if answered != to {
        return Err(Failure::NotThePeer(answered));
    }
    // blake3::Hash compares in constant time.
    if mac(key, b"acceptor", &nonce_c, &nonce_a, me, to) != mac_a {
        return Err(Failure::Secret);
    }
    let proof = mac(key, b"connector", &nonce_c, &nonce_a, me, to);
    wire.write_all(proof.as_bytes())
}

/// The acceptor's side of the handshake as server `me`; the connector's id.
pub(super) fn accept(wire: &mut Wire, key: &PeerKey, me: ServerId) -> Result<ServerId, Failure> {
    let mut hello = [0; HELLO_LEN];
    wire.read_exact(&mut hello)?;
    let mut rest = &hello[..];
    let magic: [u8; MAGIC.len()] = take(&mut rest);
    if &magic != MAGIC {
        return Err(Failure::NotAPeer);
    }
    let connector = ServerId(u64::from_be_bytes(take(&mut rest)));
    let wanted = ServerId(u64::from_be_bytes(take(&mut rest)));
    let nonce_c: [u8; 32] = take(&mut rest);
    if wanted != me {
        return Err(Failure::NotForMe(wanted));
    }
    if connector == me {
        return Err(Failure::Myself);
    }
    let nonce_a = nonce()?;
    let mut answer = Vec::with_capacity(ANSWER_LEN);
    answer.extend_from_slice(&me.0.to_be_bytes());
    answer.extend_from_slice(&nonce_a);
    answer.extend_from_slice(mac(key, b"acceptor", &nonce_c, &nonce_a, connector, me).as_bytes());
    wire.write_all(&answer)?;

    let mut proof = [0; PROOF_LEN];
    wire.read_exact(&mut proof)?;
    if mac(key, b"connector", &nonce_c, &nonce_a, connector, me) != proof {
        return Err(Failure::Secret);
    }
    Ok(connector)
}
