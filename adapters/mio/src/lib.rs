//! ferry on a mio event loop: a chat and file-transfer server whose one
//! thread holds thousands of connections, and a client driven by a thread
//! of its own.
//!
//! This crate is a thin driver. Every protocol decision (handshake, rooms,
//! flood and slow-reader limits, flow control, resume, verification) lives
//! in [`ferry_core`]; file I/O lives in [`ferry_files`]. The event loops
//! here own the sockets, the clock ([`Instant::now`](std::time::Instant::now))
//! and the threads, and nothing else: they feed the core what the sockets
//! read and when its timers are due, and write out what it queues.
//!
//! Both loops are driven through the runtime-neutral handles of
//! [`ferry_files`]: a [`ServerHandle`] or a [`ClientHandle`] sends commands
//! into the loop (waking it with a [`mio::Waker`]) and hands out what it
//! reports on a channel.
//!
//! TLS comes from `ferry-tls`: [`spawn_server_tls`] serves TLS and plain
//! clients on one port, told apart by their first byte, and
//! [`spawn_client_tls`] verifies the server ([`ClientTls`]) before it
//! writes a single ferry byte.
//!
//! # Example
//!
//! ```
//! use ferry_core::{ClientConfig, Event, HubConfig};
//! use ferry_files::ClientNotice;
//! use std::time::Duration;
//!
//! let server = ferry_mio::spawn_server("127.0.0.1:0".parse()?, HubConfig::default(), None)?;
//! let alice = ferry_mio::spawn_client(
//!     server.local_addr(),
//!     ClientConfig::new("alice"),
//!     None,
//!     Duration::from_secs(5),
//! )?;
//! let welcome = alice.notices().recv_timeout(Duration::from_secs(5))?;
//! assert!(matches!(welcome, ClientNotice::Event(Event::Welcomed { .. })));
//!
//! server.shutdown("bye for now");
//! server.join()?;
//! alice.join()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod server;
mod sock;
mod udp;

use ferry_core::{ClientConfig, HubConfig};
use ferry_files::{ClientHandle, Inbox, ServerHandle};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

pub use ferry_tls::ClientTls;
use std::time::Duration;

/// Binds `listen` and runs a [`Hub`](ferry_core::Hub) on it in a new
/// thread, with a single-threaded mio event loop for every client.
///
/// Port 0 picks a free port; [`ServerHandle::local_addr`] tells which.
/// Uploads to the server go into `inbox` (declined without one). Every
/// accepted connection is reported as
/// [`ServerNotice::Connected`](ferry_files::ServerNotice::Connected), then
/// what the hub reports as it happens.
///
/// The loop never waits for one client: a socket that cannot take more
/// output is left until it signals room again, and one that stops reading
/// altogether is dropped by the hub as a slow reader.
/// [`ServerHandle::shutdown`] tells every client, gives their sockets up to
/// about a second to take the last bytes, and ends the thread with `Ok`.
/// Dropping the handle shuts the server down likewise.
///
/// # Errors
///
/// Binding or setting up the event loop failed. Errors of single client
/// sockets only end those clients.
pub fn spawn_server(
    listen: SocketAddr,
    hub: HubConfig,
    inbox: Option<Inbox>,
) -> io::Result<ServerHandle> {
    server::spawn(listen, hub, inbox, None)
}

/// [`spawn_server`], also speaking TLS with `tls`: a connection whose
/// first byte starts a TLS ClientHello (`0x16`) is served through TLS, any
/// other (the ferry preamble, a raw-text guest) in clear text on the same
/// port, or turned away with a reason if `tls` [requires
/// TLS](ferry_tls::TlsServer::require_tls). Without `tls`, every
/// connection takes exactly the path of [`spawn_server`].
///
/// A TLS handshake that fails ends that connection alone, with a
/// [`ServerNotice::Disconnected`](ferry_files::ServerNotice::Disconnected)
/// whose reason names the client's address and rustls' reason. The hub's
/// `handshake_timeout` also bounds the TLS handshake: it runs from the TCP
/// accept, so a client that never finishes TLS is closed then like one
/// that never sends `HELLO`. Each TLS connection's transport holds at most
/// a record or two of input and [`ferry_tls::OUTGOING_LIMIT`] of output:
/// when that output is full and the socket takes no more, the socket is
/// not read until it does. What the hub queues beyond that is bounded by
/// its outgoing limit, as for plain clients (a slow reader is dropped).
///
/// # Errors
///
/// As [`spawn_server`].
pub fn spawn_server_tls(
    listen: SocketAddr,
    hub: HubConfig,
    inbox: Option<Inbox>,
    tls: Option<Arc<ferry_tls::TlsServer>>,
) -> io::Result<ServerHandle> {
    server::spawn(listen, hub, inbox, tls)
}

/// Connects to the server at `addr` (giving up after `connect_timeout`) and
/// runs a client [`Connection`](ferry_core::Connection) on it in a new
/// thread, with a mio event loop.
///
/// Returns once the server has welcomed the client; a refusal is an error
/// of kind [`PermissionDenied`](io::ErrorKind::PermissionDenied) saying
/// why. Every connection event comes out of [`ClientHandle::notices`] as
/// [`ClientNotice::Event`](ferry_files::ClientNotice::Event), the first
/// being `Welcomed`; file transfers are
/// handled with [`FileTransfers`](ferry_files::FileTransfers) and reported
/// as [`ClientNotice::File`](ferry_files::ClientNotice::File). Offers are
/// accepted into `accept_files` when given (or held for the user's answer
/// if it [asks first](ferry_files::Inbox::ask_first)), declined otherwise.
/// A command
/// that cannot be carried out is reported as
/// [`ClientNotice::Error`](ferry_files::ClientNotice::Error).
///
/// The thread ends with `Ok` once the connection is closed (after
/// [`ClientCommand::Bye`](ferry_files::ClientCommand::Bye), by the server,
/// or when the link fails) and its last bytes are written; the notices then
/// end. Dropping the handle says `BYE`.
///
/// # Errors
///
/// Connecting or setting up the event loop failed, the server refused the
/// client, or it did not welcome it within `connect_timeout` (counted from
/// this call): an error of kind [`TimedOut`](io::ErrorKind::TimedOut).
pub fn spawn_client(
    addr: SocketAddr,
    config: ClientConfig,
    accept_files: Option<Inbox>,
    connect_timeout: Duration,
) -> io::Result<ClientHandle> {
    client::spawn(addr, config, accept_files, connect_timeout, None)
}

/// [`spawn_client`], through TLS when `tls` is given. The TLS handshake
/// runs to its end on a blocking socket, and the server is verified,
/// before any ferry byte is written; only then does the socket join the
/// mio loop. A server that fails the check is an error whose message is
/// ferry-tls's one line (a pin mismatch names both fingerprints, an
/// unknown server the flag that pins it, a server without TLS its first
/// byte), and it never sees the `HELLO` or its token. A server trusted on
/// first use is recorded in the known-servers file. `connect_timeout`
/// covers both handshakes.
///
/// # Errors
///
/// As [`spawn_client`], and the TLS handshake's failure
/// ([`ferry_tls::io_error`]: `PermissionDenied` for a server that failed
/// the check, `UnexpectedEof` for a cut handshake, `InvalidData` for
/// anything else it sent).
pub fn spawn_client_tls(
    addr: SocketAddr,
    config: ClientConfig,
    accept_files: Option<Inbox>,
    connect_timeout: Duration,
    tls: Option<ClientTls>,
) -> io::Result<ClientHandle> {
    client::spawn(addr, config, accept_files, connect_timeout, tls)
}

/// Chats over `socket` (already bound) with the peer at `remote` over UDP,
/// on a mio loop in a thread of its own; see
/// [`datagram`](ferry_core::datagram).
///
/// The socket is connected to the peer, so the kernel discards datagrams
/// from anyone else. With a `secret`, the chat is encrypted
/// (`docs/PROTOCOL.md` §9.7).
///
/// # Errors
///
/// The socket cannot be connected or registered, the thread cannot be
/// started, or `config` asks for raw mode with a secret (`InvalidInput`).
pub fn spawn_udp(
    socket: std::net::UdpSocket,
    remote: std::net::SocketAddr,
    config: ferry_core::datagram::PeerConfig,
    secret: Option<ferry_noise::Secret>,
) -> std::io::Result<ferry_files::UdpHandle> {
    udp::spawn(socket, remote, config, secret)
}
