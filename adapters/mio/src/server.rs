//! The server: one thread, one `mio::Poll`, every client socket of a
//! [`Hub`].
//!
//! With a [`TlsServer`], a connection's first bytes decide what it speaks:
//! a TLS ClientHello (`0x16`) runs through a [`Transport`] between the
//! socket and the hub, anything else (the ferry preamble, a raw-text
//! guest) takes the plain path it takes without TLS. Until the first bytes
//! arrive the hub's output for the connection waits in the hub: sent in
//! clear, it would break a TLS handshake.

use crate::sock::{
    commander, disk_wake, drained_by, read_some, set_write_interest, write_out, Flush, ReadOutcome,
    LINGER, READ_BUF,
};
use ferry_core::{ClientId, ClientMap, Hub, HubConfig};
use ferry_files::{HubFiles, Inbox, OutputBatch, ServerCommand, ServerHandle, ServerNotice};
use ferry_tls::{write_tls, Broke, Kind, TlsServer, Transport};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::BTreeSet;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Client tokens are `ClientId + FIRST_CLIENT`: ids are never reused, so
/// neither are tokens, and a late event for a closed socket finds nothing.
const FIRST_CLIENT: usize = 2;

/// Bytes read from one socket per turn of the loop. Readiness is
/// edge-triggered, and reading until `WouldBlock` let one client whose
/// socket never empties (a flood of PINGs or empty frames) keep the loop
/// from every other socket, the listener and the timers for a minute. A
/// socket left readable at its budget is read again next turn, after
/// everyone else's events.
const READ_BUDGET: usize = 4 * READ_BUF;

fn token_of(id: ClientId) -> Option<Token> {
    usize::try_from(id.0)
        .ok()?
        .checked_add(FIRST_CLIENT)
        .map(Token)
}

fn client_of(token: Token) -> Option<ClientId> {
    let n = token.0.checked_sub(FIRST_CLIENT)?;
    u64::try_from(n).ok().map(ClientId)
}

/// See [`crate::spawn_server`].
pub(crate) fn spawn(
    listen: SocketAddr,
    config: HubConfig,
    inbox: Option<Inbox>,
    tls: Option<Arc<TlsServer>>,
) -> io::Result<ServerHandle> {
    let mut listener = TcpListener::bind(listen)?;
    let local_addr = listener.local_addr()?;
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (command_tx, commands) = mpsc::channel();
    let (notices, notice_rx) = mpsc::channel();
    let server = Server {
        poll,
        listener: Some(listener),
        hub: Hub::new(ferry_files::with_session_key(config)?, Instant::now()),
        files: HubFiles::new(inbox, disk_wake(&waker)),
        _waker: waker.clone(),
        conns: ClientMap::default(),
        lingering: BTreeSet::new(),
        unread: Vec::new(),
        commands,
        notices,
        buf: vec![0; READ_BUF],
        stop_by: None,
        tls,
    };
    let thread = thread::Builder::new()
        .name("ferry-mio-server".into())
        .spawn(move || server.run())?;
    Ok(ServerHandle::new(
        local_addr,
        commander(command_tx, waker),
        notice_rx,
        thread,
    ))
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
    /// socket is not read until a flush makes room (WRITABLE says when).
    stalled: bool,
    /// close_notify was queued; nothing more goes in.
    closed: bool,
}

/// One accepted socket.
struct Conn {
    stream: TcpStream,
    token: Token,
    /// For the log when its TLS fails.
    peer: SocketAddr,
    layer: Layer,
    /// Output taken from the core and not yet written.
    pending: OutputBatch,
    /// The last write met a full socket; WRITABLE will say when to go on.
    blocked: bool,
    /// WRITABLE interest is registered.
    want_write: bool,
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
    poll: Poll,
    /// Keeps the waker's descriptor open while the loop runs (see
    /// [`commander`]).
    _waker: Arc<Waker>,
    /// `None` once shutting down: no new clients.
    listener: Option<TcpListener>,
    hub: Hub,
    files: HubFiles,
    conns: ClientMap<Conn>,
    /// Closing clients by deadline, so expiring them costs nothing per loop.
    lingering: BTreeSet<(Instant, ClientId)>,
    /// Sockets that may hold more input than their last turn's budget read,
    /// with whether the peer had closed; read again next turn.
    unread: Vec<(ClientId, bool)>,
    commands: Receiver<ServerCommand>,
    notices: Sender<ServerNotice>,
    buf: Vec<u8>,
    /// Shutting down: return once every socket is closed, or at this instant.
    stop_by: Option<Instant>,
    /// TLS beside plain connections on the same port, when given.
    tls: Option<Arc<TlsServer>>,
}

impl Server {
    fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut carried = Vec::new();
        loop {
            let now = Instant::now();
            // Input left over from the last turn: look for other events
            // without sleeping, then read on.
            let timeout = if self.unread.is_empty() {
                self.next_deadline()
                    .map(|at| at.saturating_duration_since(now))
            } else {
                Some(std::time::Duration::ZERO)
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            std::mem::swap(&mut carried, &mut self.unread);
            let mut woken = false;
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(now),
                    WAKER => woken = true,
                    token => {
                        let Some(id) = client_of(token) else { continue };
                        let peer_closed = event.is_read_closed() || event.is_error();
                        let readable = event.is_readable() || peer_closed;
                        let writable = event.is_writable() || event.is_write_closed();
                        self.on_socket(id, readable.then_some(peer_closed), writable, now);
                    }
                }
            }
            for (id, peer_closed) in carried.drain(..) {
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.unread = false;
                }
                self.read(id, peer_closed, now);
                self.maybe_finish(id, now);
            }
            if woken {
                self.take_commands(now);
                for notice in self.files.poll_disk(&mut self.hub, now) {
                    self.notify(notice);
                }
            }
            if self.hub.poll_timeout().is_some_and(|at| at <= now) {
                self.hub.handle_timeout(now);
            }
            self.expire(now);
            self.settle(now);
            if let Some(stop_by) = self.stop_by {
                if self.conns.is_empty() || now >= stop_by {
                    return Ok(());
                }
            }
        }
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

    fn accept(&mut self, now: Instant) {
        let Some(listener) = &self.listener else {
            return;
        };
        loop {
            let (mut stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue
                }
                // Out of file descriptors or the like: leave the rest in
                // the backlog. The next connection attempt raises a new
                // readiness event and accepting resumes then.
                Err(_) => return,
            };
            // Frames are written whole; waiting to coalesce them only adds
            // latency to chat.
            let _ = stream.set_nodelay(true);
            let id = self.hub.connect_from(now, peer.ip());
            let registered = token_of(id).and_then(|token| {
                self.poll
                    .registry()
                    .register(&mut stream, token, Interest::READABLE)
                    .ok()
                    .map(|()| token)
            });
            let Some(token) = registered else {
                self.hub.remove(id, now);
                continue;
            };
            self.conns.insert(
                id,
                Conn {
                    stream,
                    token,
                    peer,
                    // Without TLS there is nothing to tell apart: the
                    // hub's bytes go out from the start, as they always did.
                    layer: if self.tls.is_some() {
                        Layer::Undecided
                    } else {
                        Layer::Plain
                    },
                    pending: OutputBatch::new(),
                    blocked: false,
                    want_write: false,
                    eof: false,
                    closing: None,
                    unread: false,
                    shut: false,
                },
            );
            self.notify(ServerNotice::Connected { client: id, peer });
        }
    }

    /// `readable` is `Some(peer_closed)` for a read event.
    fn on_socket(&mut self, id: ClientId, readable: Option<bool>, writable: bool, now: Instant) {
        let mut resume = false;
        if writable {
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.blocked = false;
            }
            self.flush(id, now);
            // A TLS read that stopped for room in the socket goes on.
            if let Some(conn) = self.conns.get_mut(&id) {
                if let Layer::Tls(tls) = &mut conn.layer {
                    if tls.stalled && !conn.blocked {
                        tls.stalled = false;
                        resume = true;
                    }
                }
            }
        }
        if let Some(peer_closed) = readable {
            self.read(id, peer_closed, now);
        } else if resume {
            self.read(id, false, now);
        }
        self.maybe_finish(id, now);
    }

    /// Reads until the socket is empty (see [`drained_by`]) or this turn's
    /// [`READ_BUDGET`] is spent; then the socket waits in `unread` for the
    /// next turn. After a read that filled the whole buffer (more is
    /// probably waiting), the hub is drained before reading on: what one
    /// fast sender queues for everyone else then grows by one buffer at a
    /// time, well inside each client's outgoing limit, instead of by the
    /// whole backlog of its socket. Smaller reads are drained with the rest
    /// of the batch, so a burst of events from many sockets reaches each
    /// peer in few writes.
    fn read(&mut self, id: ClientId, peer_closed: bool, now: Instant) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        match conn.layer {
            Layer::Plain => self.read_plain(id, peer_closed, now),
            Layer::Undecided => self.read_first(id, peer_closed, now),
            Layer::Tls(_) => self.read_tls(id, peer_closed, now, READ_BUDGET),
        }
    }

    fn read_plain(&mut self, id: ClientId, peer_closed: bool, now: Instant) {
        let mut budget = READ_BUDGET;
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
                    self.unread.push((id, peer_closed));
                }
                return;
            }
            match read_some(&mut conn.stream, &mut self.buf) {
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
                    if drained_by(n, self.buf.len(), peer_closed) {
                        return;
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
    fn read_first(&mut self, id: ClientId, peer_closed: bool, now: Instant) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let n = match read_some(&mut conn.stream, &mut self.buf) {
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
                return self.read_tls(id, peer_closed, now, READ_BUDGET.saturating_sub(n));
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
        if !drained_by(n, self.buf.len(), peer_closed) {
            self.read_plain(id, peer_closed, now);
        }
    }

    /// The TLS read path: socket bytes into the transport, its plaintext
    /// to the hub, its answers out, within `budget` socket bytes this
    /// turn. Stops reading while the transport's output is full and the
    /// socket will not take it (`stalled`); the WRITABLE event that makes
    /// room resumes it (see [`Server::on_socket`]).
    fn read_tls(&mut self, id: ClientId, peer_closed: bool, now: Instant, mut budget: usize) {
        let mut drained = false;
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
                if drained {
                    return;
                }
                if budget == 0 {
                    if !conn.unread {
                        conn.unread = true;
                        self.unread.push((id, peer_closed));
                    }
                    return;
                }
                match read_some(&mut conn.stream, &mut self.buf) {
                    ReadOutcome::Data(n) => {
                        budget = budget.saturating_sub(n);
                        drained = drained_by(n, self.buf.len(), peer_closed);
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
                // no more until WRITABLE, so a peer that sends without
                // reading is held to a record or two. A transport that
                // refuses input for any other reason is left alone too,
                // rather than spun on; the hub's timers end such a client.
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
                let _ = conn.stream.write(&alert);
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
            // Waiting for WRITABLE (or nothing can be written): trying now
            // would only meet a full socket again.
            return;
        }
        let hub = &mut self.hub;
        let result = match &mut conn.layer {
            // Until the first bytes tell plain from TLS, the hub's bytes
            // wait in the hub: sent in clear, they would break a TLS
            // handshake. The first read flushes once it knows.
            Layer::Undecided => return,
            Layer::Plain => write_out(&mut conn.stream, &mut conn.pending, || {
                hub.poll_transmit(id)
            }),
            Layer::Tls(tls) => match write_tls(
                &mut conn.stream,
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
        let registry = self.poll.registry();
        let result = result.and_then(|flush| {
            conn.blocked = flush == Flush::Blocked;
            set_write_interest(
                registry,
                &mut conn.stream,
                conn.token,
                &mut conn.want_write,
                conn.blocked,
            )
        });
        if let Err(e) = result {
            conn.pending.clear();
            conn.shut = true;
            conn.eof = true;
            self.hub
                .handle_broken(id, now, &format!("write failed: {e}"));
        }
    }

    fn take_commands(&mut self, now: Instant) {
        loop {
            match self.commands.try_recv() {
                Ok(ServerCommand::Announce(text)) => {
                    if let Err(e) = self.hub.announce(now, "", &text) {
                        let _ = self.notices.send(ServerNotice::CommandFailed(format!(
                            "announcement not sent: {e}"
                        )));
                    }
                }
                Ok(ServerCommand::Shutdown(reason)) => self.begin_shutdown(now, &reason),
                Ok(_) => {}
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
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
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
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
            // Never registered: only the hub knows it.
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
            let _ = conn.stream.shutdown(Shutdown::Write);
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
        if let Some(mut conn) = self.conns.remove(&id) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            if let Some(at) = conn.closing {
                self.lingering.remove(&(at, id));
            }
        }
        self.hub.remove(id, now);
    }
}
