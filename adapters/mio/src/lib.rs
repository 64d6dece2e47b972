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
    server::spawn(listen, hub, inbox)
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
    client::spawn(addr, config, accept_files, connect_timeout)
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
