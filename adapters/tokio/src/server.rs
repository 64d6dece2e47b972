//! The server: one task owns the [`Hub`] and polls every client socket
//! itself.
//!
//! # Why one task, and not a task per connection
//!
//! A message should cost one task wake-up, as it does a bare echo task on
//! tokio. Two shapes give that: a task per connection that locks a shared
//! hub and writes to the other sockets itself, or one task that owns the
//! hub and every socket. This is the second. Each socket is polled with a
//! waker of its own ([`Doorbell::socket_waker`]) that lists the
//! connection's id and wakes the task, so a turn looks only at sockets
//! that are ready, however many are idle.
//!
//! For a ping both shapes make the same system calls and the same one
//! wake-up; they differ in what a message to a room costs. Here the hub
//! needs no lock and output no hand-off: the task that read a message
//! writes it to every member's socket in the same turn, and a full socket
//! only waits for its own waker. With a task per connection every message
//! takes the hub's lock (contended on a multi-thread runtime whenever two
//! members talk at once), and a sender that meets a member's full socket
//! must wake that member's task to finish the write, one more wake-up and
//! a second owner for that socket's output. One task also keeps the mio
//! server's loop, whose fairness and TLS handling are settled: the read
//! budget, output held until a connection's first byte tells TLS from
//! plain, the linger after close.
//!
//! Measured: a scratch prototype of the other shape (a task per
//! connection, the hub behind a `std::sync::Mutex`, replies written with
//! `try_write`; ping only, not kept) and this server, in one process,
//! taking turns of 100 pings, nine runs: medians of the per-run p50s 15.4
//! us here, 15.6 us for the prototype on a current-thread runtime and 15.4
//! us on a two-worker one. For a ping they tie, as their wake-ups say they
//! should; the choice rests on what a room costs, above. In `ferry bench
//! rtt` this server's ping is 1.07x tokio's own echo task at the median
//! (target 1.25x) and below it at p99, and its fan-out and 1 GiB transfer
//! are at mio's figures (`BENCHMARKS.md`, "tokio"). What it gives up is
//! parallelism: on a multi-thread runtime the hub's work stays on one
//! worker at a time, as it does in every other adapter.
//!
//! The task plays fair with whatever else its runtime runs by budgets of
//! its own, in place of tokio's cooperative one: a socket is read at most
//! [`READ_BUDGET`] per turn, a poll runs at most [`TURNS_PER_POLL`] turns,
//! and a task with input left over yields to the runtime before it reads
//! on.
//!
//! With a [`TlsServer`], a connection's first bytes decide what it speaks:
//! a TLS ClientHello (`0x16`) runs through a [`Transport`] between the
//! socket and the hub, anything else (the ferry preamble, a raw-text
//! guest) takes the plain path it takes without TLS. Until the first bytes
//! arrive the hub's output for the connection waits in the hub: sent in
//! clear, it would break a TLS handshake.

use crate::bell::Doorbell;
use crate::sock::{shut_write, Polled, LINGER, READ_BUF};
use ferry_core::{ClientId, ClientMap, Hub, HubConfig};
use ferry_files::{
    read_some, write_out, Flush, HubFiles, Inbox, OutputBatch, ReadOutcome, ServerCommand,
    ServerNotice,
};
use ferry_tls::{write_tls, Broke, Kind, TlsServer, Transport};
use std::collections::BTreeSet;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Sleep;

/// Bytes read from one socket per turn. Reading until `WouldBlock` let one
/// client whose socket never empties (a flood of PINGs or empty frames)
/// keep the task from every other socket, the listener and the timers. A
/// socket left readable at its budget is read again next turn, after
/// everyone else's.
const READ_BUDGET: usize = 4 * READ_BUF;

/// Turns one poll of the task may run (when timers fall due or sockets
/// ring while it works) before it hands the thread back to the runtime.
const TURNS_PER_POLL: usize = 8;

/// Runs a plain ferry server on `listener` until it is shut down; see
/// [`run_server_tls`].
///
/// # Errors
///
/// As [`run_server_tls`].
pub async fn run_server(
    listener: TcpListener,
    hub: HubConfig,
    inbox: Option<Inbox>,
    commands: UnboundedReceiver<ServerCommand>,
    notices: mpsc::Sender<ServerNotice>,
) -> io::Result<()> {
    run_server_tls(listener, hub, inbox, None, commands, notices).await
}

/// Runs a ferry server on `listener`, speaking TLS beside clear text when
/// `tls` is given (or TLS only, if it [requires TLS](TlsServer::require_tls)),
/// until [`ServerCommand::Shutdown`] or until every sender of `commands` is
/// gone; then every client is told, their last bytes get up to about a
/// second, and the future ends with `Ok`.
///
/// It runs as one task on the runtime it is awaited on, current-thread or
/// multi-thread, which must have I/O and time enabled
/// (`Builder::enable_all`). Uploads go into `inbox` (declined without
/// one), on ferry-files' writer threads: no file is written on the
/// runtime's threads. What the server reports goes to `notices`; nobody
/// listening is fine.
///
/// # Errors
///
/// The session key could not be drawn from the operating system. Errors
/// of single client sockets only end those clients.
pub async fn run_server_tls(
    listener: TcpListener,
    hub: HubConfig,
    inbox: Option<Inbox>,
    tls: Option<Arc<TlsServer>>,
    commands: UnboundedReceiver<ServerCommand>,
    notices: mpsc::Sender<ServerNotice>,
) -> io::Result<()> {
    let bell = Doorbell::new();
    let mut server = Server {
        hub: Hub::new(ferry_files::with_session_key(hub)?, Instant::now()),
        files: HubFiles::new(inbox, bell.disk_wake()),
        bell,
        listener: Some(listener),
        conns: ClientMap::default(),
        lingering: BTreeSet::new(),
        ready: Vec::new(),
        unread: Vec::new(),
        commands,
        notices,
        buf: vec![0; READ_BUF],
        stop_by: None,
        tls,
        alarm: Box::pin(tokio::time::sleep_until(Instant::now().into())),
        alarm_at: None,
    };
    // The task keeps its own budgets (a read budget per socket, a few turns
    // per poll, then it yields); tokio's would cut a fan-out to hundreds of
    // sockets into many polls, each starting over.
    tokio::task::unconstrained(std::future::poll_fn(|cx| server.poll(cx))).await
}

/// What a connection speaks.
enum Layer {
    /// Clear text: socket bytes go to the hub as they are.
    Plain,
    /// A TLS server without its first byte yet.
    Undecided,
    /// Through TLS.
    Tls(Box<TlsConn>),
}

/// A TLS connection's state beside its socket.
struct TlsConn {
    transport: Transport,
    /// Socket bytes the transport has not taken yet.
    unfed: Vec<u8>,
    /// The hub's bytes the transport has not taken yet.
    plaintext: OutputBatch,
    /// The transport refused input until its output is written: the
    /// socket is not read until a flush makes room.
    stalled: bool,
    /// close_notify was queued; nothing more goes in.
    closed: bool,
}

/// One accepted socket.
struct Conn {
    stream: TcpStream,
    /// Lists this connection on the doorbell when its socket is ready.
    waker: Waker,
    /// For the log when its TLS fails.
    peer: SocketAddr,
    layer: Layer,
    /// Output taken from the core and not yet written.
    pending: OutputBatch,
    /// The last write met a full socket; the waker says when to go on.
    blocked: bool,
    /// The peer's end of stream was seen.
    eof: bool,
    /// The hub closed this client: finish by this instant at the latest.
    closing: Option<Instant>,
    /// Its read budget ran out with input left: queued in `Server::unread`.
    unread: bool,
    /// Our side was shut down (FIN sent) after the last bytes.
    shut: bool,
}

struct Server {
    hub: Hub,
    files: HubFiles,
    bell: Arc<Doorbell>,
    /// `None` once shutting down: no new clients.
    listener: Option<TcpListener>,
    conns: ClientMap<Conn>,
    /// Closing clients by deadline, so expiring them costs nothing per turn.
    lingering: BTreeSet<(Instant, ClientId)>,
    /// Sockets the doorbell listed, taken at the start of a turn.
    ready: Vec<ClientId>,
    /// Sockets that may hold more input than their last turn's budget read;
    /// read again next turn.
    unread: Vec<ClientId>,
    commands: UnboundedReceiver<ServerCommand>,
    notices: mpsc::Sender<ServerNotice>,
    buf: Vec<u8>,
    /// Shutting down: return once every socket is closed, or at this instant.
    stop_by: Option<Instant>,
    /// TLS beside plain connections on the same port, when given.
    tls: Option<Arc<TlsServer>>,
    /// Wakes the task for the next deadline.
    alarm: Pin<Box<Sleep>>,
    /// What `alarm` is set to, if armed.
    alarm_at: Option<Instant>,
}

impl Server {
    /// One poll of the task: turns until nothing is left to do, then parks
    /// on the doorbell, the listener, the commands and the alarm.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        for _ in 0..TURNS_PER_POLL {
            let now = Instant::now();
            self.turn(cx, now);
            if let Some(stop_by) = self.stop_by {
                if self.conns.is_empty() || now >= stop_by {
                    return Poll::Ready(Ok(()));
                }
            }
            if !self.unread.is_empty() {
                // Input left over: let the runtime run others, then read on.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if self.alarm_due(cx) {
                continue;
            }
            if self.bell.park(cx) {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Sets the alarm to the next deadline; true if it is already due.
    fn alarm_due(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(at) = self.next_deadline() else {
            self.alarm_at = None;
            return false;
        };
        if self.alarm_at != Some(at) {
            self.alarm.as_mut().reset(at.into());
            self.alarm_at = Some(at);
        }
        self.alarm.as_mut().poll(cx).is_ready()
    }

    /// Everything that is ready, once: commands, new clients, sockets the
    /// doorbell listed and those with input left, finished disk work and
    /// due timers; then the hub is drained.
    fn turn(&mut self, cx: &mut Context<'_>, now: Instant) {
        let mut ready = std::mem::take(&mut self.ready);
        let rang = self.bell.take(&mut ready);
        let carried = std::mem::take(&mut self.unread);
        self.take_commands(cx, now);
        self.accept(cx, now);
        for &id in &ready {
            self.on_socket(id, now);
        }
        for &id in &carried {
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.unread = false;
            }
            self.read(id, now);
            self.maybe_finish(id, now);
        }
        ready.clear();
        self.ready = ready;
        if rang.disk {
            for notice in self.files.poll_disk(&mut self.hub, now) {
                self.notify(notice);
            }
        }
        if self.hub.poll_timeout().is_some_and(|at| at <= now) {
            self.hub.handle_timeout(now);
        }
        self.expire(now);
        self.settle(now);
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.hub.poll_timeout(),
            self.lingering.first().map(|&(at, _)| at),
            self.stop_by,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn notify(&self, notice: ServerNotice) {
        // Nobody listening is fine: the server runs on regardless.
        let _ = self.notices.send(notice);
    }

    fn accept(&mut self, cx: &mut Context<'_>, now: Instant) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            let (stream, peer) = match listener.poll_accept(cx) {
                Poll::Ready(Ok(accepted)) => accepted,
                Poll::Pending => return,
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                // Out of file descriptors or the like: leave the rest in
                // the backlog until the next turn (any wake-up) rather
                // than spin on it now.
                Poll::Ready(Err(_)) => return,
            };
            // Frames are written whole; waiting to coalesce them only adds
            // latency to chat.
            let _ = stream.set_nodelay(true);
            let id = self.hub.connect_from(now, peer.ip());
            self.conns.insert(
                id,
                Conn {
                    stream,
                    waker: self.bell.socket_waker(id),
                    peer,
                    // Without TLS there is nothing to tell apart: the
                    // hub's bytes go out from the start.
                    layer: if self.tls.is_some() {
                        Layer::Undecided
                    } else {
                        Layer::Plain
                    },
                    pending: OutputBatch::new(),
                    blocked: false,
                    eof: false,
                    closing: None,
                    unread: false,
                    shut: false,
                },
            );
            self.notify(ServerNotice::Connected { client: id, peer });
            // Polled once now, so that its waker is registered (and what it
            // already sent is read).
            self.on_socket(id, now);
        }
    }

    /// The socket of `id` may be readable or writable (its waker cannot
    /// say which): a blocked write is tried again, then the socket read.
    /// Asking a socket that is not ready costs no system call.
    fn on_socket(&mut self, id: ClientId, now: Instant) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.blocked {
            conn.blocked = false;
            self.flush(id, now);
            // A TLS read that stopped for room in the socket goes on.
            if let Some(conn) = self.conns.get_mut(&id) {
                if let Layer::Tls(tls) = &mut conn.layer {
                    if tls.stalled && !conn.blocked {
                        tls.stalled = false;
                    }
                }
            }
        }
        let unread = self.conns.get(&id).is_some_and(|conn| conn.unread);
        if !unread {
            self.read(id, now);
        }
        self.maybe_finish(id, now);
    }

    /// Reads until the socket is empty or this turn's [`READ_BUDGET`] is
    /// spent; then the socket waits in `unread` for the next turn. After a
    /// read that filled the whole buffer (more is probably waiting), the
    /// hub is drained before reading on: what one fast sender queues for
    /// everyone else then grows by one buffer at a time, well inside each
    /// client's outgoing limit, instead of by the whole backlog of its
    /// socket. Smaller reads are drained with the rest of the turn, so a
    /// burst of messages from many sockets reaches each peer in few writes.
    fn read(&mut self, id: ClientId, now: Instant) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        match conn.layer {
            Layer::Plain => self.read_plain(id, now, READ_BUDGET),
            Layer::Undecided => self.read_first(id, now),
            Layer::Tls(_) => self.read_tls(id, now, READ_BUDGET),
        }
    }

    fn read_plain(&mut self, id: ClientId, now: Instant, mut budget: usize) {
        loop {
            let Some(conn) = self.conns.get_mut(&id) else {
                return;
            };
            if conn.eof {
                return;
            }
            if budget == 0 {
                if !conn.unread {
                    conn.unread = true;
                    self.unread.push(id);
                }
                return;
            }
            let mut cx = Context::from_waker(&conn.waker);
            match read_some(&mut Polled::new(&mut conn.stream, &mut cx), &mut self.buf) {
                ReadOutcome::Data(n) => {
                    budget = budget.saturating_sub(n);
                    // After the hub closed it, input is only read to see
                    // the end of stream; the closed connection ignores it.
                    if conn.closing.is_none() {
                        self.hub.handle_input(id, now, &self.buf[..n]);
                        if n == self.buf.len() {
                            self.settle(now);
                        }
                    }
                }
                ReadOutcome::WouldBlock => return,
                ReadOutcome::Eof => {
                    conn.eof = true;
                    self.hub.handle_eof(id, now);
                    return;
                }
                ReadOutcome::Failed(e) => {
                    // Nothing more can be read or written.
                    conn.eof = true;
                    conn.pending.clear();
                    conn.shut = true;
                    self.hub
                        .handle_broken(id, now, &format!("read failed: {e}"));
                    return;
                }
            }
        }
    }

    /// A TLS server's first read of a connection: its first byte decides
    /// TLS or plain, and the bytes read go on down that path.
    fn read_first(&mut self, id: ClientId, now: Instant) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if self.hub.is_closed(id) {
            // Turned away at connect (the per-address limit, a ban): its
            // ERROR goes out in clear whatever the client sent, even a
            // ClientHello, as no TLS can start for it; what it sent is
            // read and dropped while the close lingers.
            conn.layer = Layer::Plain;
            return self.read_plain(id, now, READ_BUDGET);
        }
        let mut cx = Context::from_waker(&conn.waker);
        let n = match read_some(&mut Polled::new(&mut conn.stream, &mut cx), &mut self.buf) {
            ReadOutcome::Data(n) => n,
            ReadOutcome::WouldBlock => return,
            ReadOutcome::Eof => {
                // Gone before its first byte: the hub's last words (if
                // any) go out in clear, there is no TLS to put them in.
                conn.layer = Layer::Plain;
                conn.eof = true;
                self.hub.handle_eof(id, now);
                return;
            }
            ReadOutcome::Failed(e) => {
                conn.layer = Layer::Plain;
                conn.eof = true;
                conn.shut = true;
                self.hub
                    .handle_broken(id, now, &format!("read failed: {e}"));
                return;
            }
        };
        let first = &self.buf[..n];
        let server = self.tls.as_deref();
        if Kind::of_first_byte(first[0]) == Kind::Tls {
            if let Ok(transport) = Transport::accept(first, server) {
                conn.layer = Layer::Tls(Box::new(TlsConn {
                    transport,
                    unfed: first.to_vec(),
                    plaintext: OutputBatch::new(),
                    stalled: false,
                    closed: false,
                }));
                return self.read_tls(id, now, READ_BUDGET.saturating_sub(n));
            }
        }
        conn.layer = Layer::Plain;
        if server.is_some_and(TlsServer::is_required) {
            // Nothing it sent is acted on; reading on only sees its end.
            self.hub.refuse_unencrypted(id, now, first);
        } else {
            self.hub.handle_input(id, now, first);
        }
        // What the hub held while undecided goes out now.
        self.flush(id, now);
        self.read_plain(id, now, READ_BUDGET.saturating_sub(n));
    }

    /// The TLS read path: socket bytes into the transport, its plaintext
    /// to the hub, its answers out, within `budget` socket bytes this
    /// turn. Stops reading while the transport's output is full and the
    /// socket will not take it (`stalled`); the wake-up that makes room
    /// resumes it (see [`Server::on_socket`]).
    fn read_tls(&mut self, id: ClientId, now: Instant, mut budget: usize) {
        let mut idle_rounds = 0;
        loop {
            let Some(conn) = self.conns.get_mut(&id) else {
                return;
            };
            let Layer::Tls(tls) = &mut conn.layer else {
                return;
            };
            if conn.eof || tls.stalled {
                return;
            }
            let mut full = false;
            if tls.unfed.is_empty() {
                if budget == 0 {
                    if !conn.unread {
                        conn.unread = true;
                        self.unread.push(id);
                    }
                    return;
                }
                let mut cx = Context::from_waker(&conn.waker);
                match read_some(&mut Polled::new(&mut conn.stream, &mut cx), &mut self.buf) {
                    ReadOutcome::Data(n) => {
                        budget = budget.saturating_sub(n);
                        full = n == self.buf.len();
                        // After the hub closed it, input is only read to
                        // see the end of stream.
                        if conn.closing.is_none() && !tls.closed {
                            tls.unfed.extend_from_slice(&self.buf[..n]);
                        }
                        if tls.unfed.is_empty() {
                            continue;
                        }
                    }
                    ReadOutcome::WouldBlock => return,
                    ReadOutcome::Eof => {
                        conn.eof = true;
                        if conn.closing.is_some() || tls.closed {
                            self.hub.handle_eof(id, now);
                            return;
                        }
                        if let Err(e) = tls.transport.feed_eof() {
                            return self.tls_failed(id, now, &e);
                        }
                        // What came before the end still reaches the hub.
                        self.deliver(id, now);
                        self.hub.handle_eof(id, now);
                        return;
                    }
                    ReadOutcome::Failed(e) => {
                        conn.eof = true;
                        conn.pending.clear();
                        conn.shut = true;
                        self.hub
                            .handle_broken(id, now, &format!("read failed: {e}"));
                        return;
                    }
                }
            }
            let taken = match tls.transport.feed(&tls.unfed) {
                Ok(taken) => taken,
                Err(e) => return self.tls_failed(id, now, &e),
            };
            tls.unfed.drain(..taken);
            let stuck = taken == 0 && !tls.unfed.is_empty();
            self.deliver(id, now);
            // The handshake's answers, the hub's replies, and what the hub
            // held until the handshake ended go out now.
            self.flush(id, now);
            if full {
                self.settle(now);
            }
            let Some(conn) = self.conns.get_mut(&id) else {
                return;
            };
            let Layer::Tls(tls) = &mut conn.layer else {
                return;
            };
            if tls.transport.peer_closed() && !conn.eof {
                // close_notify: the client ended the session.
                conn.eof = true;
                self.hub.handle_eof(id, now);
                return;
            }
            if stuck {
                idle_rounds += 1;
                // Its output is full and the socket takes no more: read
                // no more until there is room, so a peer that sends
                // without reading is held to a record or two. A transport
                // that refuses input for any other reason is left alone
                // too, rather than spun on; the hub's timers end such a
                // client.
                if conn.blocked || idle_rounds > 1 {
                    tls.stalled = true;
                    return;
                }
            } else {
                idle_rounds = 0;
            }
        }
    }

    /// Moves the transport's plaintext to the hub (unless it closed the
    /// client, which then ignores input anyway).
    fn deliver(&mut self, id: ClientId, now: Instant) {
        loop {
            let Some(conn) = self.conns.get_mut(&id) else {
                return;
            };
            let Layer::Tls(tls) = &mut conn.layer else {
                return;
            };
            // Only misuse fails here; the next feed reports it.
            let n = tls.transport.read_plaintext(&mut self.buf).unwrap_or(0);
            if n == 0 {
                return;
            }
            if conn.closing.is_none() {
                self.hub.handle_input(id, now, &self.buf[..n]);
            }
        }
    }

    /// Ends a connection whose TLS failed: the alert goes out only if the
    /// socket takes it at once (a peer that sends garbage and reads
    /// nothing must not hold anything up), and the hub learns why, with
    /// the client's address.
    fn tls_failed(&mut self, id: ClientId, now: Instant, error: &ferry_tls::Error) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if let Layer::Tls(tls) = &mut conn.layer {
            let mut alert = Vec::new();
            tls.transport.take_outgoing(&mut alert);
            if !alert.is_empty() {
                let _ = conn.stream.try_write(&alert);
            }
            tls.closed = true;
        }
        conn.eof = true;
        conn.shut = true;
        conn.pending.clear();
        let reason = format!("TLS with {}: {error}", conn.peer);
        self.hub.handle_broken(id, now, &reason);
    }

    /// Writes what the hub has for `id` until the socket is full.
    fn flush(&mut self, id: ClientId, now: Instant) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.blocked || conn.shut {
            // Waiting for room (or nothing can be written): trying now
            // would only meet a full socket again.
            return;
        }
        let hub = &mut self.hub;
        let mut cx = Context::from_waker(&conn.waker);
        let mut socket = Polled::new(&mut conn.stream, &mut cx);
        let result = match &mut conn.layer {
            // Until the first bytes tell plain from TLS, the hub's bytes
            // wait in the hub: sent in clear, they would break a TLS
            // handshake. The first read flushes once it knows.
            Layer::Undecided => return,
            Layer::Plain => write_out(&mut socket, &mut conn.pending, || hub.poll_transmit(id)),
            Layer::Tls(tls) => match write_tls(
                &mut socket,
                &mut tls.transport,
                &mut tls.plaintext,
                tls.closed,
                || hub.poll_transmit(id),
            ) {
                Ok(flush) => Ok(flush),
                Err(Broke::Io(e)) => Err(e),
                Err(Broke::Tls(e)) => return self.tls_failed(id, now, &e),
                Err(other) => Err(io::Error::other(other)),
            },
        };
        match result {
            Ok(flush) => conn.blocked = flush == Flush::Blocked,
            Err(e) => {
                conn.pending.clear();
                conn.shut = true;
                conn.eof = true;
                self.hub
                    .handle_broken(id, now, &format!("write failed: {e}"));
            }
        }
    }

    fn take_commands(&mut self, cx: &mut Context<'_>, now: Instant) {
        loop {
            match self.commands.poll_recv(cx) {
                Poll::Ready(Some(ServerCommand::Announce(text))) => {
                    if let Err(e) = self.hub.announce(now, "", &text) {
                        self.notify(ServerNotice::CommandFailed(format!(
                            "announcement not sent: {e}"
                        )));
                    }
                }
                Poll::Ready(Some(ServerCommand::Shutdown(reason))) => {
                    self.begin_shutdown(now, &reason)
                }
                Poll::Ready(Some(_)) => {}
                Poll::Pending => return,
                Poll::Ready(None) => {
                    // The handle is gone: nobody could ever stop this loop.
                    self.begin_shutdown(now, "the server is stopping");
                    return;
                }
            }
        }
    }

    fn begin_shutdown(&mut self, now: Instant, reason: &str) {
        if self.stop_by.is_some() {
            return;
        }
        self.stop_by = Some(now + LINGER);
        self.listener = None;
        self.hub.shutdown(now, reason);
    }

    /// Drains the hub: events (file I/O and notices), then output, until
    /// neither produces anything new.
    fn settle(&mut self, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some(event) = self.hub.poll_event() {
                progressed = true;
                let closed = event.closed_client();
                if let Some(notice) = self.files.handle(&mut self.hub, now, event) {
                    self.notify(notice);
                }
                if let Some(id) = closed {
                    self.start_close(id, now);
                }
            }
            while let Some(id) = self.hub.poll_writable() {
                progressed = true;
                self.flush(id, now);
                self.maybe_finish(id, now);
            }
            if !progressed {
                return;
            }
        }
    }

    /// The hub closed `id`: its last bytes go out (best effort), then the
    /// socket closes, within [`LINGER`].
    fn start_close(&mut self, id: ClientId, now: Instant) {
        let Some(conn) = self.conns.get_mut(&id) else {
            // Never accepted here: only the hub knows it.
            self.hub.remove(id, now);
            return;
        };
        if conn.closing.is_some() {
            return;
        }
        if matches!(conn.layer, Layer::Undecided) {
            // Closed before its first byte (turned away at connect, or
            // silent until the handshake timeout): the hub's last words go
            // out in clear, there is no TLS to put them in.
            conn.layer = Layer::Plain;
        }
        let deadline = now + LINGER;
        conn.closing = Some(deadline);
        self.lingering.insert((deadline, id));
        self.flush(id, now);
        self.maybe_finish(id, now);
    }

    /// A closing client whose output is written gets a FIN; once the peer's
    /// end of stream has been seen too, the socket and the hub's record go.
    /// Waiting for the peer's FIN avoids a reset that could destroy the
    /// last bytes (an `ERROR` frame) before the peer reads them.
    fn maybe_finish(&mut self, id: ClientId, now: Instant) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.closing.is_none() || conn.blocked {
            return;
        }
        if let Layer::Tls(tls) = &mut conn.layer {
            if !tls.closed && !conn.shut {
                // close_notify tells the client the end is deliberate.
                tls.closed = true;
                tls.transport.close();
                self.flush(id, now);
                let Some(c) = self.conns.get_mut(&id) else {
                    return;
                };
                if c.blocked {
                    return;
                }
            }
        }
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.pending.is_empty() && !conn.shut {
            conn.shut = true;
            let mut cx = Context::from_waker(&conn.waker);
            shut_write(&mut conn.stream, &mut cx);
        }
        if conn.shut && conn.eof {
            self.finish(id, now);
        }
    }

    /// Drops clients that did not finish closing in time.
    fn expire(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.lingering.first() {
            if at > now {
                return;
            }
            self.lingering.pop_first();
            self.finish(id, now);
        }
    }

    fn finish(&mut self, id: ClientId, now: Instant) {
        if let Some(conn) = self.conns.remove(&id) {
            if let Some(at) = conn.closing {
                self.lingering.remove(&(at, id));
            }
        }
        self.hub.remove(id, now);
    }
}
