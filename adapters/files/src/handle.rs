//! Handles on a server or client running in its own thread, the same for
//! every runtime, so that the `ferry` program drives any of them alike.

use crate::bus_route::{BusRoute, BusSink, RelaySink};
use crate::server::{ServerCommand, ServerNotice};
use crate::transfers::Report;
use ferry_core::frame::TransferId;
use ferry_core::Event;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Delivers a command into a runtime's loop and wakes it.
pub type Commander<C> = Box<dyn Fn(C) + Send + Sync>;

/// A server running on some runtime.
pub struct ServerHandle {
    local_addr: SocketAddr,
    control: ServerControl,
    notices: Receiver<ServerNotice>,
    bus: BusRoute,
    thread: JoinHandle<io::Result<()>>,
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// For runtimes: wraps a server loop running in `thread`, which hands
    /// its requests for a cluster's broker to `bus`.
    pub fn new(
        local_addr: SocketAddr,
        command: Commander<ServerCommand>,
        notices: Receiver<ServerNotice>,
        bus: BusRoute,
        thread: JoinHandle<io::Result<()>>,
    ) -> Self {
        ServerHandle {
            local_addr,
            control: ServerControl {
                command: Arc::new(command),
            },
            notices,
            bus,
            thread,
        }
    }

    /// In cluster mode: the server's requests for its broker go to `sink`
    /// (such as `ferry_cluster::Link::sender`, which only queues) straight
    /// from the server's loop, those made so far first, in order. See
    /// [`BusRoute`].
    pub fn route_bus(&self, sink: BusSink) {
        self.bus.route_to(sink);
    }

    /// In cluster mode: the server's relay frames for other servers (files
    /// between members on two servers) go to `sink` (such as
    /// `ferry_cluster::peers::Peers::sender`, which only queues) straight
    /// from the server's loop. See [`BusRoute`].
    pub fn route_relay(&self, sink: RelaySink) {
        self.bus.route_relay_to(sink);
    }

    /// The address it listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Says `text` to every room as the server.
    pub fn announce(&self, text: impl Into<String>) {
        self.control.announce(text);
    }

    /// Tells every client and stops; [`join`](Self::join) then returns.
    pub fn shutdown(&self, reason: impl Into<String>) {
        self.control.shutdown(reason);
    }

    /// A handle for other threads (a signal handler, a reader of standard
    /// input) to announce and shut down with, while this thread waits on
    /// [`notices`](Self::notices).
    pub fn control(&self) -> ServerControl {
        self.control.clone()
    }

    /// What the server reports, as it happens.
    pub fn notices(&self) -> &Receiver<ServerNotice> {
        &self.notices
    }

    /// Waits for the server to stop.
    pub fn join(self) -> io::Result<()> {
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the server thread panicked")))
    }
}

/// Announces and shuts down a running server from any thread; see
/// [`ServerHandle::control`].
#[derive(Clone)]
pub struct ServerControl {
    command: Arc<Commander<ServerCommand>>,
}

impl fmt::Debug for ServerControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerControl").finish_non_exhaustive()
    }
}

impl ServerControl {
    /// Says `text` to every room as the server.
    pub fn announce(&self, text: impl Into<String>) {
        (self.command)(ServerCommand::Announce(text.into()));
    }

    /// Tells every client and stops the server. Harmless once it stopped.
    pub fn shutdown(&self, reason: impl Into<String>) {
        (self.command)(ServerCommand::Shutdown(reason.into()));
    }

    /// In cluster mode: hands the hub what its broker link brings (answers,
    /// the log's events, direct messages, the link's state), in order: all
    /// that one read or one round trip brought at once, for one wake of the
    /// server's loop rather than one each.
    pub fn bus(&self, inputs: Vec<ferry_core::cluster::BusInput>) {
        if !inputs.is_empty() {
            (self.command)(ServerCommand::Bus(inputs));
        }
    }
}

/// What a user asks of a running client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientCommand {
    /// Say something to the room.
    Say(String),
    /// A direct message.
    Direct {
        /// Recipient.
        to: String,
        /// Text.
        text: String,
    },
    /// Ask who is in the room.
    Who,
    /// Send a file to the server's inbox (`to` empty) or to a user.
    SendFile {
        /// The file.
        path: PathBuf,
        /// Recipient, empty for the inbox.
        to: String,
    },
    /// Send a file again, presenting the key its receiver handed out for an
    /// earlier attempt ([`Report::ResumeKey`]): the receiver continues
    /// from what it kept of that attempt (and the first bytes are checked),
    /// or, if it kept nothing, takes the file from the start.
    ResumeFile {
        /// The file.
        path: PathBuf,
        /// Recipient, empty for the inbox.
        to: String,
        /// The key of the earlier attempt.
        key: ferry_core::ResumeKey,
    },
    /// Tell the server which optional features this client takes
    /// ([`ferry_core::frame::features`]; 0 to only learn the server's,
    /// which come back as [`Event::Features`]).
    AnnounceFeatures(u32),
    /// Send a folder, walked with [`walk_tree`](crate::walk_tree), to the
    /// server's inbox (`to` empty) or to a user; the server must have
    /// announced trees ([`Event::Features`]).
    SendTree {
        /// The folder as walked.
        tree: Box<crate::WalkedTree>,
        /// Recipient, empty for the inbox.
        to: String,
        /// The key the receiver handed out for an earlier attempt at the
        /// same folder ([`Report::ResumeKey`](crate::Report::ResumeKey)),
        /// to send only what it does not hold yet.
        resume: Option<ferry_core::ResumeKey>,
    },
    /// Accept an offer reported as [`Report::Asking`] (resuming any
    /// partial file of it in the inbox).
    AcceptOffer {
        /// The offer's transfer id.
        id: TransferId,
    },
    /// Decline an offer reported as [`Report::Asking`].
    RejectOffer {
        /// The offer's transfer id.
        id: TransferId,
    },
    /// Measure the round trip to the server now: the answer comes as
    /// [`Event::Pong`]. (The connection pings by itself only when idle.)
    Ping,
    /// Leave politely.
    Bye,
}

/// What a running client reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientNotice {
    /// Something from the connection (chat, membership, closing).
    Event(Event),
    /// Something about a file.
    File(Report),
    /// A command could not be carried out (file not found, not connected...).
    Error(String),
}

/// A client running on some runtime.
///
/// Every runtime's `spawn_client` returns it only once the server has
/// welcomed the client (a refusal or a timeout is an error saying why), with
/// the `Welcomed` event first among its notices.
pub struct ClientHandle {
    command: Commander<ClientCommand>,
    notices: Receiver<ClientNotice>,
    thread: JoinHandle<io::Result<()>>,
    server_identity: Option<String>,
}

impl fmt::Debug for ClientHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientHandle").finish_non_exhaustive()
    }
}

impl ClientHandle {
    /// For runtimes: wraps a client loop running in `thread`.
    pub fn new(
        command: Commander<ClientCommand>,
        notices: Receiver<ClientNotice>,
        thread: JoinHandle<io::Result<()>>,
    ) -> Self {
        ClientHandle {
            command,
            notices,
            thread,
            server_identity: None,
        }
    }

    /// For runtimes: who the server proved to be in the TLS handshake
    /// (`ferry_tls::server_identity`); `None` in clear text.
    #[must_use]
    pub fn with_server_identity(mut self, identity: Option<String>) -> Self {
        self.server_identity = identity;
        self
    }

    /// Who the server proved to be, over TLS: `name:HOST` for a
    /// certificate a trusted root vouches for, else `key:SHA256:...`, its
    /// fingerprint. The same identity reached at another address is the
    /// same server, so keep what belongs to a server (resume keys) under
    /// this rather than under the address. `None` in clear text, where the
    /// address is all there is.
    pub fn server_identity(&self) -> Option<&str> {
        self.server_identity.as_deref()
    }

    /// Queues a command.
    pub fn send(&self, command: ClientCommand) {
        (self.command)(command);
    }

    /// What the client reports, as it happens. Ends (disconnects) after
    /// the connection closed.
    pub fn notices(&self) -> &Receiver<ClientNotice> {
        &self.notices
    }

    /// Waits for the client to stop.
    pub fn join(self) -> io::Result<()> {
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the client thread panicked")))
    }
}
