//! ferry over TCP on smol / async-io: runs a ferry server or client on real
//! sockets by driving `ferry-core`'s [`Hub`](ferry_core::Hub) and
//! [`Connection`](ferry_core::Connection).
//!
//! The adapter is thin: it owns the sockets, the clock
//! ([`Instant::now`](std::time::Instant::now)) and the tasks, and nothing
//! else. Every protocol decision (handshakes, names, rooms, limits, slow
//! readers, flow control, verification) is the core's; files on disk are
//! `ferry-files`'.
//!
//! * [`run_server`] and [`run_client`] are futures that embed in any
//!   executor built on async-io. They spawn their socket tasks on an
//!   executor of their own that they poll themselves, and are `Send`.
//! * [`spawn_server`] and [`spawn_client`] run the same on a thread of their
//!   own and hand back the runtime-neutral
//!   [`ServerHandle`] and
//!   [`ClientHandle`] the `ferry` program uses.
//!
//! ```text
//!  socket ─ reader task ─┐  (bytes | eof, bounded; the server reads
//!                        │   plain sockets itself, see below)
//!                        ├──▶ hub / connection task ──▶ notices (std mpsc)
//!  commands (async) ─────┘     │ poll_transmit, while the queue has room
//!  socket ◀─ writer task ◀─────┘  (bounded; "room" when it drained)
//! ```
//!
//! * [`spawn_server_tls`] / [`run_server_tls`] and [`spawn_client_tls`]
//!   do the same through TLS (`ferry-tls`): the server tells a TLS
//!   ClientHello from plain clients and raw-text guests by the first byte
//!   on one port; the client finishes the TLS handshake, the server
//!   verified, before any ferry byte. The server's hub task decrypts what
//!   it reads through each connection's
//!   [`Transport`](ferry_tls::Transport) and encrypts what it sends; a
//!   client's reader task decrypts and its writer task encrypts.
//!
//! While a writer task has nothing to write, the hub or connection task
//! sends what it has to that socket itself (non-blocking, on Unix), and
//! hands the writer only what the socket did not take: a reply then costs
//! no task switch.
//!
//! # Example
//!
//! ```
//! use ferry_core::{ClientConfig, Event, HubConfig};
//! use ferry_files::{ClientCommand, ClientNotice};
//! use std::time::Duration;
//!
//! let server = ferry_smol::spawn_server("127.0.0.1:0".parse()?, HubConfig::default(), None)?;
//! let alice = ferry_smol::spawn_client(
//!     server.local_addr(),
//!     ClientConfig::new("alice"),
//!     None,
//!     Duration::from_secs(5),
//! )?;
//! alice.send(ClientCommand::Say("hello".into()));
//! // Welcomed already (spawn_client returns only then): the message comes
//! // back to the room.
//! let heard = loop {
//!     match alice.notices().recv_timeout(Duration::from_secs(5))? {
//!         ClientNotice::Event(Event::Message { text, .. }) => break text,
//!         _ => {}
//!     }
//! };
//! assert_eq!(heard, "hello");
//! alice.send(ClientCommand::Bye);
//! alice.join()?;
//! server.shutdown("done");
//! server.join()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What runs where
//!
//! The server's [`Hub`](ferry_core::Hub) lives in one task, with no locks.
//! That task also reads every socket itself: the reactor lists a socket
//! that became readable and wakes the hub task, which reads the listed
//! sockets in turn, one read each per turn, and queues none of it (a
//! client sending faster than the hub works is held back by TCP). A TLS
//! connection's bytes go through its transport, in the hub task too; one
//! whose output the peer does not read is not read until that output is
//! taken. On a TLS server a reader task reads each connection's first
//! bytes, to tell TLS from plain, and hands the socket over. Each
//! connection adds a writer task, which receives segments on a bounded
//! channel. The hub task moves `poll_transmit` segments into that channel
//! only while it has room and waits for the writer to say it has taken
//! one: bytes a slow client does not read stay in the hub, whose limits
//! drop it as a slow reader.
//! File I/O for the server's inbox happens in the hub task, through
//! [`HubFiles`](ferry_files::HubFiles), one chunk at a time.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod alarm;
mod client;
mod intake;
mod lingering;
mod pump;
mod server;
mod tls;
mod tls_peer;
mod udp;

pub use client::run_client;
pub use ferry_tls::ClientTls;
pub use server::{run_server, run_server_tls};
pub use udp::run_udp_chat;

use async_io::Timer;
use async_net::{TcpListener, TcpStream};
use ferry_core::{ClientConfig, Code, HubConfig};
use ferry_files::{BusRoute, ClientHandle, Inbox, ServerHandle, UdpHandle, Wake};
use ferry_tls::TlsServer;
use futures_lite::future;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Binds `listen` (port 0 picks a free one) and runs [`run_server`] on a
/// thread of its own. Every connection is plain; see [`spawn_server_tls`]
/// for TLS.
///
/// The handle's [`local_addr`](ServerHandle::local_addr) is the bound
/// address; its commands go to the server's loop without blocking, and
/// [`join`](ServerHandle::join) returns after
/// [`shutdown`](ServerHandle::shutdown).
///
/// # Errors
///
/// Binding fails (address in use, no permission), or the thread cannot be
/// started.
pub fn spawn_server(
    listen: SocketAddr,
    hub: HubConfig,
    inbox: Option<Inbox>,
) -> io::Result<ServerHandle> {
    spawn_server_tls(listen, hub, inbox, None)
}

/// [`spawn_server`], also speaking TLS with `tls`: [`run_server_tls`] on a
/// thread of its own. TLS clients, plain ferry clients and raw-text
/// guests share the port (plain ones are turned away with a reason if
/// `tls` [requires TLS](TlsServer::require_tls)).
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
    let listener = TcpListener::try_from(std::net::TcpListener::bind(listen)?)?;
    let local_addr = listener.local_addr()?;
    // Unbounded: commands come from an operator, and the commander must
    // never block its caller.
    let (commands_tx, commands) = async_channel::unbounded();
    let (notices_tx, notices) = mpsc::channel();
    let bus = BusRoute::default();
    let route = bus.clone();
    let thread = thread::Builder::new()
        .name(format!("ferry-server {local_addr}"))
        .spawn(move || {
            async_io::block_on(run_server_tls(
                listener, hub, inbox, tls, commands, notices_tx, route,
            ))
        })?;
    let command = Box::new(move |command| {
        // Fails only once the server stopped, when the command is moot.
        let _ = commands_tx.try_send(command);
    });
    Ok(ServerHandle::new(local_addr, command, notices, bus, thread))
}

/// Connects to `addr`, runs [`run_client`] on a thread of its own, and
/// returns once the server let the client in (its
/// [`Event::Welcomed`](ferry_core::Event::Welcomed) is the handle's first
/// notice), as every runtime's `spawn_client` does.
///
/// `connect_timeout` bounds both the TCP connect and the handshake after
/// it.
///
/// # Errors
///
/// The connection is refused, or is not welcomed within
/// `connect_timeout` ([`io::ErrorKind::TimedOut`]); the server turns the
/// client away (`PermissionDenied`, the message reading `code: reason`) or
/// the connection is lost before the welcome (`ConnectionAborted`); or the
/// thread cannot be started.
pub fn spawn_client(
    addr: SocketAddr,
    config: ClientConfig,
    accept_files: Option<Inbox>,
    connect_timeout: Duration,
) -> io::Result<ClientHandle> {
    spawn_client_tls(addr, config, accept_files, connect_timeout, None)
}

/// [`spawn_client`], through TLS when `tls` is given.
///
/// The TLS handshake runs to its end, the server verified, before the
/// ferry connection even exists, so no ferry byte (the token least of all)
/// can reach a server that failed the check. It runs on a blocking socket
/// on the calling thread, which this function blocks anyway; a server
/// trusted on first use is then recorded in the known-servers file
/// ([`ferry_tls::remember`]). A server that fails the check is an error
/// whose message is ferry-tls's one line (a pin mismatch names both
/// fingerprints, an unknown server the flag that pins it, a server
/// without TLS its first byte). `connect_timeout` covers the TCP connect
/// and both handshakes, and the call returns once welcomed.
///
/// # Errors
///
/// As [`spawn_client`], and the TLS handshake fails or takes too long
/// (see [`ferry_tls::io_error`] for the kinds).
pub fn spawn_client_tls(
    addr: SocketAddr,
    mut config: ClientConfig,
    accept_files: Option<Inbox>,
    connect_timeout: Duration,
    tls: Option<ClientTls>,
) -> io::Result<ClientHandle> {
    let start = Instant::now();
    let (stream, transport, identity) = match &tls {
        None => (
            async_io::block_on(connect(addr, connect_timeout))?,
            None,
            None,
        ),
        Some(tls) => {
            // Blocking, like the caller: only once verified does the
            // socket become async.
            let mut stream = std::net::TcpStream::connect_timeout(&addr, connect_timeout)?;
            let ferry_tls::Connected {
                transport,
                unfed,
                identity,
                ..
            } = ferry_tls::connect(&mut stream, tls, addr.port(), start + connect_timeout)?;
            let stream = TcpStream::try_from(stream)?;
            (stream, Some((transport, unfed)), identity)
        }
    };
    // What is left of the budget is the handshake's: the core closes with
    // HANDSHAKE_TIMEOUT when it runs out, and that is read back below.
    let left = connect_timeout.saturating_sub(start.elapsed());
    config.connection.handshake_timeout = config.connection.handshake_timeout.min(left);
    let (commands_tx, commands) = async_channel::unbounded();
    let (notices_tx, notices) = mpsc::channel();
    let (welcome_tx, welcome) = mpsc::channel();
    let thread = thread::Builder::new()
        .name(format!("ferry-client {addr}"))
        .spawn(move || {
            let ending = async_io::block_on(client::drive(
                stream,
                transport,
                config,
                accept_files,
                commands,
                notices_tx,
                Some(welcome_tx),
            ))?;
            if !ending.welcomed && ending.code == Code::HANDSHAKE_TIMEOUT && !ending.by_peer {
                return Err(not_let_in(addr, connect_timeout));
            }
            Ok(())
        })?;
    let command = Box::new(move |command| {
        // Fails only once the client stopped, when the command is moot.
        let _ = commands_tx.try_send(command);
    });
    // The core closes the connection when its handshake timer (set to
    // what is left above) runs out; the grace covers the thread's start.
    let grace = Duration::from_millis(100);
    match welcome.recv_timeout(left + grace) {
        Ok(Ok(())) => {
            Ok(ClientHandle::new(command, notices, thread).with_server_identity(identity))
        }
        Ok(Err(refusal)) => Err(refused(addr, connect_timeout, refusal)),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(not_let_in(addr, connect_timeout)),
        // Ended without a word: its error says why.
        Err(mpsc::RecvTimeoutError::Disconnected) => match thread.join() {
            Ok(Err(e)) => Err(e),
            _ => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                format!("the connection to {addr} ended before the welcome"),
            )),
        },
    }
}

/// The error [`spawn_client`] returns for a client that was not let in.
fn refused(addr: SocketAddr, connect_timeout: Duration, refusal: client::Refusal) -> io::Error {
    let client::Refusal {
        code,
        by_peer,
        reason,
    } = refusal;
    if code == Code::HANDSHAKE_TIMEOUT && !by_peer {
        return not_let_in(addr, connect_timeout);
    }
    let kind = if code == Code::CONNECTION_LOST {
        io::ErrorKind::ConnectionAborted
    } else {
        io::ErrorKind::PermissionDenied
    };
    io::Error::new(kind, format!("{code}: {reason}"))
}

/// A client not welcomed within `connect_timeout`.
fn not_let_in(addr: SocketAddr, connect_timeout: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{addr} did not let us in within {connect_timeout:?}"),
    )
}

/// `TcpStream::connect`, giving up after `timeout`.
async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    future::or(TcpStream::connect(addr), async {
        Timer::after(timeout).await;
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connecting to {addr} took longer than {timeout:?}"),
        ))
    })
    .await
}

/// Chats over `socket` (already bound) with the peer at `remote` over UDP:
/// [`run_udp_chat`] on a thread of its own.
///
/// With a `secret`, the chat is encrypted (`docs/PROTOCOL.md` §9.7).
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
    let local_addr = socket.local_addr()?;
    let socket = async_net::UdpSocket::try_from(socket)?;
    // Unbounded: the commander must never block its caller.
    let (commands_tx, commands) = async_channel::unbounded();
    let (events_tx, events) = mpsc::channel();
    let thread = thread::Builder::new()
        .name("ferry-smol-udp".into())
        .spawn(move || {
            // Ends when the handle drops its commander.
            let _ = async_io::block_on(run_udp_chat(socket, config, secret, commands, events_tx));
        })?;
    let command = Box::new(move |command| {
        // Fails only once the chat stopped, when the command is moot.
        let _ = commands_tx.try_send(command);
    });
    Ok(UdpHandle::new(local_addr, command, events, thread))
}

/// A [`Wake`] for file writers and the channel it signals. One pending
/// signal is enough: the loop takes everything finished when it wakes.
fn disk_signal() -> (Wake, async_channel::Receiver<()>) {
    let (tx, rx) = async_channel::bounded(1);
    let wake: Wake = std::sync::Arc::new(move || {
        let _ = tx.try_send(());
    });
    (wake, rx)
}
