//! ferry on tokio: a chat and file-transfer server whose one task holds
//! every connection, and a client task, as futures for any tokio runtime.
//!
//! This crate is a thin driver. Every protocol decision (handshake, rooms,
//! flood and slow-reader limits, flow control, resume, verification) lives
//! in [`ferry_core`]; file I/O lives in [`ferry_files`], whose writer
//! threads keep the disk off the runtime's threads. The tasks here own the
//! sockets, the clock ([`Instant::now`](std::time::Instant::now)) and
//! nothing else: they feed the core what the sockets read and when its
//! timers are due, and write out what it queues.
//!
//! * [`run_server`] / [`run_server_tls`], [`run_client`] and
//!   [`run_udp_chat`] are futures that run in any tokio runtime,
//!   current-thread or multi-thread, with I/O and time enabled. Each is one
//!   task: the server's polls every client socket itself (see
//!   `src/server.rs` for why that shape), so a message costs one wake-up.
//! * [`spawn_server`], [`spawn_client`] (and their `_tls` variants) and
//!   [`spawn_udp`] run the same on a current-thread runtime in a thread of
//!   their own and hand back the runtime-neutral [`ServerHandle`],
//!   [`ClientHandle`] and [`UdpHandle`] the `ferry` program drives.
//!
//! ```text
//!  sockets ──ready──▶ doorbell (ids) ──wake──▶ server task: Hub, HubFiles
//!  file writer threads ──done──▶ doorbell         │ reads, handle_input,
//!  commands (tokio mpsc) ─────────────────────────▶ poll_transmit, writes
//! ```
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
//! use ferry_files::{ClientCommand, ClientNotice};
//! use std::time::Duration;
//!
//! let server = ferry_tokio::spawn_server("127.0.0.1:0".parse()?, HubConfig::default(), None)?;
//! let alice = ferry_tokio::spawn_client(
//!     server.local_addr(),
//!     ClientConfig::new("alice"),
//!     None,
//!     Duration::from_secs(5),
//! )?;
//! let welcome = alice.notices().recv_timeout(Duration::from_secs(5))?;
//! assert!(matches!(welcome, ClientNotice::Event(Event::Welcomed { .. })));
//! alice.send(ClientCommand::Say("hello".into()));
//! let heard = loop {
//!     match alice.notices().recv_timeout(Duration::from_secs(5))? {
//!         ClientNotice::Event(Event::Message { text, .. }) => break text,
//!         _ => {}
//!     }
//! };
//! assert_eq!(heard, "hello");
//!
//! server.shutdown("bye for now");
//! server.join()?;
//! alice.join()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod bell;
mod client;
mod server;
mod sock;
mod udp;

pub use client::run_client;
pub use ferry_tls::ClientTls;
pub use server::{run_server, run_server_tls};
pub use udp::run_udp_chat;

use ferry_core::{ClientConfig, HubConfig};
use ferry_files::{BusRoute, ClientHandle, Inbox, ServerHandle, UdpHandle};
use ferry_tls::TlsServer;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Binds `listen` and runs [`run_server`] on a current-thread tokio runtime
/// in a new thread.
///
/// Port 0 picks a free port; [`ServerHandle::local_addr`] tells which.
/// Uploads to the server go into `inbox` (declined without one). Every
/// accepted connection is reported as
/// [`ServerNotice::Connected`](ferry_files::ServerNotice::Connected), then
/// what the hub reports as it happens.
///
/// The task never waits for one client: a socket that cannot take more
/// output is left until tokio says it has room, and one that stops reading
/// altogether is dropped by the hub as a slow reader.
/// [`ServerHandle::shutdown`] tells every client, gives their sockets up to
/// about a second to take the last bytes, and ends the thread with `Ok`.
/// Dropping the handle shuts the server down likewise.
///
/// # Errors
///
/// Binding or building the runtime failed. Errors of single client sockets
/// only end those clients.
pub fn spawn_server(
    listen: SocketAddr,
    hub: HubConfig,
    inbox: Option<Inbox>,
) -> io::Result<ServerHandle> {
    spawn_server_tls(listen, hub, inbox, None)
}

/// [`spawn_server`], also speaking TLS with `tls`: a connection whose
/// first byte starts a TLS ClientHello (`0x16`) is served through TLS, any
/// other (the ferry preamble, a raw-text guest) in clear text on the same
/// port, or turned away with a reason if `tls` [requires
/// TLS](TlsServer::require_tls). Without `tls`, every connection takes
/// exactly the path of [`spawn_server`].
///
/// A TLS handshake that fails ends that connection alone, with a
/// [`ServerNotice::Disconnected`](ferry_files::ServerNotice::Disconnected)
/// whose reason names the client's address and rustls' reason. The hub's
/// `handshake_timeout` also bounds the TLS handshake, counted from the TCP
/// accept. Each TLS connection's transport holds at most a record or two
/// of input and [`ferry_tls::OUTGOING_LIMIT`] of output: when that output
/// is full and the socket takes no more, the socket is not read until it
/// does.
///
/// # Errors
///
/// As [`spawn_server`].
pub fn spawn_server_tls(
    listen: SocketAddr,
    hub: HubConfig,
    inbox: Option<Inbox>,
    tls: Option<Arc<TlsServer>>,
) -> io::Result<ServerHandle> {
    // Bound here rather than on the thread, so that the caller gets the
    // error and the real port at once.
    let listener = std::net::TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    let local_addr = listener.local_addr()?;
    // Unbounded: commands come from an operator, and the commander must
    // never block its caller.
    let (commands_tx, commands) = tokio::sync::mpsc::unbounded_channel();
    let (notices_tx, notices) = mpsc::channel();
    let bus = BusRoute::default();
    let route = bus.clone();
    let thread = on_own_runtime("ferry-tokio-server", async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        run_server_tls(listener, hub, inbox, tls, commands, notices_tx, route).await
    })?;
    let command = Box::new(move |command| {
        // Fails only once the server stopped, when the command is moot.
        let _ = commands_tx.send(command);
    });
    Ok(ServerHandle::new(local_addr, command, notices, bus, thread))
}

/// Connects to the server at `addr` (giving up after `connect_timeout`) and
/// runs [`run_client`] on a current-thread tokio runtime in a new thread.
///
/// Returns once the server has welcomed the client; a refusal is an error
/// of kind [`PermissionDenied`](io::ErrorKind::PermissionDenied) saying
/// why. Every connection event comes out of [`ClientHandle::notices`] as
/// [`ClientNotice::Event`](ferry_files::ClientNotice::Event), the first
/// being `Welcomed`; file transfers are reported as
/// [`ClientNotice::File`](ferry_files::ClientNotice::File). Offers are
/// accepted into `accept_files` when given (or held for the user's answer
/// if it [asks first](ferry_files::Inbox::ask_first)), declined otherwise.
///
/// The thread ends with `Ok` once the connection is closed (after
/// [`ClientCommand::Bye`](ferry_files::ClientCommand::Bye), by the server,
/// or when the link fails) and its last bytes are written; the notices then
/// end. Dropping the handle says `BYE`.
///
/// # Errors
///
/// Connecting or starting the thread failed, the server refused the
/// client, or it did not welcome it within `connect_timeout` (counted from
/// this call): an error of kind [`TimedOut`](io::ErrorKind::TimedOut).
pub fn spawn_client(
    addr: SocketAddr,
    config: ClientConfig,
    accept_files: Option<Inbox>,
    connect_timeout: Duration,
) -> io::Result<ClientHandle> {
    spawn_client_tls(addr, config, accept_files, connect_timeout, None)
}

/// [`spawn_client`], through TLS when `tls` is given. The TLS handshake
/// runs to its end on a blocking socket on the calling thread (which this
/// function blocks anyway), and the server is verified, before any ferry
/// byte is written; only then does the socket join the runtime. A server
/// that fails the check is an error whose message is ferry-tls's one line
/// (a pin mismatch names both fingerprints, an unknown server the flag
/// that pins it, a server without TLS its first byte), and it never sees
/// the `HELLO` or its token. A server trusted on first use is recorded in
/// the known-servers file. `connect_timeout` covers both handshakes.
///
/// # Errors
///
/// As [`spawn_client`], and the TLS handshake's failure
/// ([`ferry_tls::io_error`]: `PermissionDenied` for a server that failed
/// the check, `UnexpectedEof` for a cut handshake, `InvalidData` for
/// anything else it sent).
pub fn spawn_client_tls(
    addr: SocketAddr,
    mut config: ClientConfig,
    accept_files: Option<Inbox>,
    connect_timeout: Duration,
    tls: Option<ClientTls>,
) -> io::Result<ClientHandle> {
    let started = Instant::now();
    let mut stream = std::net::TcpStream::connect_timeout(&addr, connect_timeout)?;
    let (tls, identity) = match &tls {
        Some(settings) => {
            // Blocking, bounded by the same deadline as the welcome: the
            // task only ever sees a verified server.
            let deadline = started + connect_timeout;
            let ferry_tls::Connected {
                transport,
                unfed,
                identity,
                ..
            } = ferry_tls::connect(&mut stream, settings, addr.port(), deadline)?;
            (Some(client::TlsState::new(transport, unfed)), identity)
        }
        None => (None, None),
    };
    stream.set_nonblocking(true)?;
    // What is left of the budget is the handshake's: the core closes with
    // HANDSHAKE_TIMEOUT when it runs out, which the call reports as
    // `TimedOut`.
    let left = connect_timeout.saturating_sub(started.elapsed());
    config.connection.handshake_timeout = config.connection.handshake_timeout.min(left);
    let (commands_tx, commands) = tokio::sync::mpsc::unbounded_channel();
    let (notices_tx, notices) = mpsc::channel();
    let (welcomed_tx, welcomed) = mpsc::channel();
    let thread = on_own_runtime("ferry-tokio-client", async move {
        let stream = tokio::net::TcpStream::from_std(stream)?;
        client::drive(
            stream,
            tls,
            config,
            accept_files,
            commands,
            notices_tx,
            Some(welcomed_tx),
        )
        .await
    })?;
    let command = Box::new(move |command| {
        // Fails only once the client stopped, when the command is moot.
        let _ = commands_tx.send(command);
    });
    // Like every runtime's client: return once in the room, or say why not.
    let grace = Duration::from_millis(100);
    match welcomed.recv_timeout(left + grace) {
        Ok(Ok(())) => {
            Ok(ClientHandle::new(command, notices, thread).with_server_identity(identity))
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no answer from the server in time",
        )),
    }
}

/// Chats over `socket` (already bound) with the peer at `remote` over UDP:
/// [`run_udp_chat`] on a current-thread runtime in a thread of its own.
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
    remote: SocketAddr,
    config: ferry_core::datagram::PeerConfig,
    secret: Option<ferry_noise::Secret>,
) -> io::Result<UdpHandle> {
    if config.raw && secret.is_some() {
        // Said here, not only when the loop starts: the caller hears it.
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "raw mode sends clear text, so it cannot be encrypted",
        ));
    }
    socket.connect(remote)?;
    socket.set_nonblocking(true)?;
    let local_addr = socket.local_addr()?;
    let (commands_tx, commands) = tokio::sync::mpsc::unbounded_channel();
    let (events_tx, events) = mpsc::channel();
    let thread = on_own_runtime("ferry-tokio-udp", async move {
        // The chat's only error (raw mode with a secret) was refused above;
        // a socket the runtime cannot take ends the chat, and the handle
        // then sees no answers.
        if let Ok(socket) = tokio::net::UdpSocket::from_std(socket) {
            let _ = run_udp_chat(socket, config, secret, commands, events_tx).await;
        }
    })?;
    let command = Box::new(move |command| {
        // Fails only once the chat stopped, when the command is moot.
        let _ = commands_tx.send(command);
    });
    Ok(UdpHandle::new(local_addr, command, events, thread))
}

/// Runs `task` to its end on a current-thread runtime (I/O and time
/// enabled) in a new thread named `name`.
fn on_own_runtime<T: Send + 'static>(
    name: &str,
    task: impl Future<Output = T> + Send + 'static,
) -> io::Result<thread::JoinHandle<T>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    thread::Builder::new()
        .name(name.into())
        .spawn(move || runtime.block_on(task))
}

/// The README's example, run as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
