//! [`Peers`]: direct links between the servers of a cluster, a dumb,
//! authenticated, encrypted and ordered pipe of opaque frames.
//!
//! What the frames mean (file relays, their credit) is the protocol's
//! business, not this module's: it only carries `Vec<u8>`s from one
//! [`ServerId`] to another, in order, and says when a link is gone.
//!
//! # Threads
//!
//! Blocking std I/O on threads of its own, so that no runtime's loop ever
//! waits for a socket: one thread accepts other servers' connections;
//! each link has a reader and a writer thread (a cluster has a handful of
//! servers). [`Peers::send`] only queues the frame and wakes the link's
//! writer; the first send to a server with no link starts a writer that
//! asks `locate` where the server is (a Redis round trip, never on the
//! caller's thread), connects and runs the handshake below. What arrives
//! goes to `deliver`, called on the link's reader thread.
//!
//! # One link per server
//!
//! Frames to a server go over one connection, in the order they were
//! sent. A server that connected to us is answered over that connection:
//! no second one is made. When both connect at once there may be two;
//! each side sends on the one it registered first and reads both. When
//! **any** connection with a server ends (end of stream, an error, a write
//! that waited [`PeerSettings::timeout`], a frame over [`MAX_FRAME`],
//! more than [`PeerSettings::max_queued_bytes`] waiting for it), every
//! connection with it is closed, the frames still queued for it are
//! dropped, and one [`PeerEvent::Lost`] says so. The next send to it
//! connects anew.
//!
//! # On the wire
//!
//! TLS 1.3 (ferry-tls, ALPN `ferry/1`); the connecting side pins the
//! fingerprint `locate` gave. The TLS server checks no client
//! certificate, so inside TLS a fixed handshake proves that both sides
//! know the cluster secret ([`PeerKey`]) and who each is (integers big
//! endian, `||` concatenation):
//!
//! 1. connector → acceptor, 58 bytes:
//!    `"FERRYPEER1" || connector id: u64 || acceptor id: u64 || nonce_c: [u8; 32]`.
//!    The acceptor closes the connection unless `acceptor id` is its own.
//! 2. acceptor → connector, 72 bytes:
//!    `acceptor id: u64 || nonce_a: [u8; 32] || mac_a: [u8; 32]`, where
//!    `mac_a = BLAKE3-keyed(key, "acceptor" || nonce_c || nonce_a || connector id || acceptor id)`.
//!    The connector closes the connection unless the id is the one it
//!    dialled and `mac_a` is right.
//! 3. connector → acceptor, 32 bytes: `mac_c = BLAKE3-keyed(key, "connector" || nonce_c || nonce_a || connector id || acceptor id)`.
//!    The acceptor closes the connection unless it is right.
//!
//! Nonces come from the operating system; MACs are compared in constant
//! time. Then each frame is `length: u32 || bytes`, `length` at most
//! [`MAX_FRAME`] (zero is allowed).
//!
//! # Hostile connections
//!
//! The port speaks TLS only. An incoming connection is handshaken on a
//! thread of its own within [`PeerSettings::timeout`]; at most
//! [`MAX_HANDSHAKING`] at once, [`MAX_HANDSHAKING_PER_ADDRESS`] from one IP
//! address (past either, new ones are closed at once). A
//! connection that fails its handshake is closed without a word and
//! counted ([`Peers::refused_links`]).

mod connect;
mod link;
mod state;
mod wire;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use ferry_core::cluster::ServerId;
use ferry_tls::{Fingerprint, Identity, TlsClient, TlsServer};

use self::state::{lock, spawn, Shared, State};

/// The longest frame a link carries. A peer that announces a longer one
/// loses its link; so does a server that [sends](Peers::send) one.
pub const MAX_FRAME: usize = 4 * 1024 * 1024;

/// Incoming connections whose handshake may run at once; new ones past
/// it are closed as soon as they are accepted (and counted in
/// [`Peers::refused_links`]).
pub const MAX_HANDSHAKING: usize = 64;

/// Incoming connections from one IP address whose handshake may run at
/// once: one address holding silent connections cannot take every one of
/// [`MAX_HANDSHAKING`] from the servers of the cluster (a server dials a
/// peer once at a time).
pub const MAX_HANDSHAKING_PER_ADDRESS: usize = 4;

/// What a queued frame counts for against
/// [`PeerSettings::max_queued_bytes`] besides its buffer's capacity: its
/// slot in the queue and its length header, rounded up.
pub const FRAME_OVERHEAD: usize = 32;

/// The cluster secret as the key the links use. Every server of a cluster
/// derives it from the same secret.
///
/// Its [`Debug`](fmt::Debug) does not show the key.
#[derive(Clone)]
pub struct PeerKey([u8; 32]);

impl PeerKey {
    /// The BLAKE3 key-derivation context of [`PeerKey::derive`].
    pub const CONTEXT: &'static str = "ferry 2026-12 cluster peer link";

    /// The key of the cluster secret `secret`:
    /// `blake3::derive_key(`[`PeerKey::CONTEXT`]`, secret)`.
    pub fn derive(secret: &[u8]) -> PeerKey {
        PeerKey(blake3::derive_key(Self::CONTEXT, secret))
    }

    fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PeerKey(..)")
    }
}

/// How a server's [`Peers`] listens, proves itself and bounds its links.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PeerSettings {
    /// Where other servers' connections are accepted (port 0: any free
    /// port; see [`Peers::local_addr`]).
    pub listen: SocketAddr,
    /// The cluster secret.
    pub key: PeerKey,
    /// This server's TLS certificate, which the others pin.
    pub identity: Arc<Identity>,
    /// Connecting and the handshake (either way) give up after this, and
    /// so does any single write to a peer that stopped reading.
    /// [`PeerSettings::DEFAULT_TIMEOUT`] unless set; at least 1 ms.
    pub timeout: Duration,
    /// Bytes of frames waiting to be written to one server (each frame
    /// counts its buffer's capacity plus [`FRAME_OVERHEAD`]); past it the
    /// link to that server is dropped.
    /// [`PeerSettings::DEFAULT_MAX_QUEUED_BYTES`] unless set.
    pub max_queued_bytes: usize,
}

impl PeerSettings {
    /// [`timeout`](Self::timeout) unless set: 10 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
    /// [`max_queued_bytes`](Self::max_queued_bytes) unless set: 64 MiB.
    pub const DEFAULT_MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;

    /// Listening on `listen`, proving `key` and showing `identity`, with
    /// the default limits.
    pub fn new(listen: SocketAddr, key: PeerKey, identity: Arc<Identity>) -> PeerSettings {
        PeerSettings {
            listen,
            key,
            identity,
            timeout: Self::DEFAULT_TIMEOUT,
            max_queued_bytes: Self::DEFAULT_MAX_QUEUED_BYTES,
        }
    }

    /// Sets [`timeout`](Self::timeout).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> PeerSettings {
        self.timeout = timeout;
        self
    }

    /// Sets [`max_queued_bytes`](Self::max_queued_bytes).
    #[must_use]
    pub fn max_queued_bytes(mut self, max: usize) -> PeerSettings {
        self.max_queued_bytes = max;
        self
    }
}

/// Where a server accepts links, and the fingerprint of the certificate
/// it shows there (published in Redis by that server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddress {
    /// Its [`Peers::local_addr`], as reachable from the other servers.
    pub addr: SocketAddr,
    /// Its [`Peers::fingerprint`]; a certificate with any other is refused.
    pub fingerprint: Fingerprint,
}

impl PeerAddress {
    /// `addr` showing the certificate `fingerprint`.
    pub fn new(addr: SocketAddr, fingerprint: Fingerprint) -> PeerAddress {
        PeerAddress { addr, fingerprint }
    }
}

/// What [`Peers`] hands to `deliver`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerEvent {
    /// A frame from server `from`, in the order `from` sent them.
    Frame {
        /// The server that sent it.
        from: ServerId,
        /// The frame, as sent.
        bytes: Vec<u8>,
    },
    /// Every link with `server` is gone (or none could be made): frames
    /// sent to it before may not have arrived, and the ones still queued
    /// were dropped (`reason` counts them). The next send connects anew.
    Lost {
        /// The server.
        server: ServerId,
        /// Why, for people: "the peer does not know the cluster secret",
        /// "cannot connect to 127.0.0.1:4000: connection refused", ...
        reason: String,
    },
}

/// Where a server's links are accepted: `Err` with a reason when it is
/// not known (the lookup may be a Redis round trip; it runs on the
/// link's own thread).
pub type Locate = Arc<dyn Fn(ServerId) -> Result<PeerAddress, String> + Send + Sync>;

/// Where [`PeerEvent`]s go, in order, all that one read brought in one
/// call (never empty). Called from the links' threads, one call at a
/// time; it should hand the events on (a command to a loop) rather than
/// block, as a link reads nothing meanwhile.
pub type DeliverPeer = Arc<dyn Fn(Vec<PeerEvent>) + Send + Sync>;

/// A server's links to the other servers of its cluster; see the
/// [module](self).
///
/// [`close`](Peers::close) or dropping it stops every thread and closes
/// every link (no [`PeerEvent::Lost`] is delivered for them).
pub struct Peers {
    shared: Arc<Shared>,
}

impl fmt::Debug for Peers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peers")
            .field("me", &self.shared.me)
            .field("local_addr", &self.shared.local)
            .finish_non_exhaustive()
    }
}

impl Peers {
    /// Binds the listener on [`PeerSettings::listen`] now (an error if it
    /// cannot, or if the identity makes no TLS server) and starts
    /// accepting other servers' links as server `me`. `locate` finds the
    /// servers this one sends to; `deliver` gets what arrives.
    pub fn start(
        me: ServerId,
        settings: PeerSettings,
        locate: Locate,
        deliver: DeliverPeer,
    ) -> io::Result<Peers> {
        let mut settings = settings;
        settings.timeout = settings.timeout.max(Duration::from_millis(1));
        let tls_server = TlsServer::new(&settings.identity)
            .map_err(|e| io::Error::other(format!("the identity makes no TLS server: {e}")))?;
        let listener = TcpListener::bind(settings.listen)?;
        let local = listener.local_addr()?;
        let shared = Arc::new(Shared {
            me,
            settings,
            locate,
            deliver,
            tls_server,
            tls_client: TlsClient::new(),
            local,
            state: Mutex::new(State::default()),
            delivering: Mutex::new(()),
            closing: AtomicBool::new(false),
            refused: AtomicU64::new(0),
            handshaking: AtomicUsize::new(0),
            handshaking_by_address: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
            live: Mutex::new(0),
            live_changed: Condvar::new(),
        });
        spawn(&shared, "ferry-peer-accept".into(), move |shared| {
            connect::accept_loop(&shared, listener)
        })?;
        Ok(Peers { shared })
    }

    /// This server's id.
    pub fn me(&self) -> ServerId {
        self.shared.me
    }

    /// Where the listener is bound (the port chosen for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// The fingerprint of the certificate this server shows, for the
    /// others to pin.
    pub fn fingerprint(&self) -> Fingerprint {
        self.shared.tls_server.fingerprint()
    }

    /// Queues `frame` for server `to`, connecting first if there is no
    /// link with it; never blocks (it takes a lock held only briefly by
    /// the links' threads). A frame over [`MAX_FRAME`], or one that puts
    /// more than [`PeerSettings::max_queued_bytes`] in the queue, drops
    /// the link: [`PeerEvent::Lost`] follows. Frames to this server itself
    /// are lost the same way.
    pub fn send(&self, to: ServerId, frame: Vec<u8>) {
        self.shared.send(to, frame);
    }

    /// [`send`](Peers::send) for other threads. It does nothing once
    /// the `Peers` is closed.
    pub fn sender(&self) -> impl Fn(ServerId, Vec<u8>) + Send + Sync + 'static {
        let shared: Weak<Shared> = Arc::downgrade(&self.shared);
        move |to, frame| {
            if let Some(shared) = shared.upgrade() {
                shared.send(to, frame);
            }
        }
    }

    /// Connections with other servers that passed the handshake and are
    /// open now (one per server, two for a while after both connected at
    /// once).
    pub fn links(&self) -> usize {
        lock(&self.shared.state)
            .peers
            .values()
            .map(|peer| peer.conns.len())
            .sum()
    }

    /// Incoming connections closed without becoming links: failed
    /// handshakes (not TLS, a wrong secret, too slow, not addressed to
    /// this server) and connections over [`MAX_HANDSHAKING`].
    pub fn refused_links(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }

    /// Stops every thread and closes every link; the same as dropping it.
    /// Waits for the threads for at most [`PeerSettings::timeout`] (a
    /// `locate` or `deliver` that takes longer is left to finish alone).
    pub fn close(self) {
        drop(self);
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        self.shared.close();
    }
}
