//! The server: one thread, one `mio::Poll`, every client socket of a
//! [`Hub`].
//!
//! What each connection does with its socket (plain or TLS by its first
//! bytes, read budgets, back-pressure, the close) is a
//! [`ferry_tls::link::Link`], shared with the tokio server; this loop owns
//! the sockets' registration, its events, the linger deadlines and the
//! order in which the hub is drained. A socket has WRITABLE interest only
//! while its link waits for room, so an idle connection costs no
//! wake-ups.
//!
//! Every part of a turn is bounded, so that no crowd holds the loop: the
//! sockets that became ready in it are read for a few milliseconds, then
//! those left over from earlier turns (oldest first) for as long, at
//! least one of each; at most [`ACCEPT_PER_TURN`] connections are
//! accepted. Sockets that ended (the peer hung up, a read or write
//! failed: [`Link::ended`]) are told to the hub after those, for a few
//! milliseconds, and the hub's drain is bounded in time too. A join is a
//! `JOINED` to every member of its room and an end a `LEFT`, so a room of
//! thousands joining or hanging up at once costs the square of its size:
//! spread over turns, it delays nobody's chat by more than a turn or two.

use crate::sock::{commander, disk_wake, set_write_interest, Stream, LINGER, READ_BUF};
use ferry_core::{ClientId, ClientMap, Hub, HubConfig};
use ferry_files::{
    AcceptFailures, AcceptRetry, BusRoute, EndedQueue, HubFiles, Inbox, ServerCommand,
    ServerHandle, ServerNotice, ACCEPT_BACKOFF,
};
use ferry_tls::link::{Link, Reading, READ_BUDGET};
use ferry_tls::TlsServer;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::BTreeSet;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Client tokens are `ClientId + FIRST_CLIENT`: ids are never reused, so
/// neither are tokens, and a late event for a closed socket finds nothing.
const FIRST_CLIENT: usize = 2;

/// How long one drain of the hub ([`Server::settle`]) goes on at most
/// before the loop looks at its sockets again: writing a room's worth of
/// `JOINED`s, or closing a crowd the hub dropped, goes on next turn.
const SETTLE_BUDGET: Duration = Duration::from_millis(10);
/// How long one turn reads the sockets that became ready in it, then (as
/// long again) those left over from earlier turns, each at least one:
/// a crowd joining a large room at once (each join a `JOINED` to every
/// member and a `MEMBERS` frame of the whole room) is spread over turns,
/// and a socket that just became ready is read in the turn that saw it.
const READ_TURN_BUDGET: Duration = Duration::from_millis(5);
/// Connections accepted in one turn at most; the rest wait in the listen
/// backlog for the next turn, which comes without sleeping.
const ACCEPT_PER_TURN: usize = 64;

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
    let bus = BusRoute::default();
    let server = Server {
        poll,
        listener: Some(listener),
        hub: ferry_files::start_hub(config)?,
        files: HubFiles::new(inbox, disk_wake(&waker)),
        _waker: waker.clone(),
        conns: ClientMap::default(),
        lingering: BTreeSet::new(),
        unread: Vec::new(),
        ended: EndedQueue::default(),
        settle_pending: false,
        accept_pending: false,
        accept_retry: None,
        accept_failures: AcceptFailures::default(),
        commands,
        notices,
        bus: bus.clone(),
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
        bus,
        thread,
    ))
}

/// One accepted socket.
struct Conn {
    stream: TcpStream,
    token: Token,
    /// WRITABLE interest is registered.
    want_write: bool,
    /// An event said the peer closed its side: read to the end of stream
    /// (a short read does not mean the socket is empty then).
    peer_closed: bool,
    /// A writable event waits with it in [`Server::unread`].
    write_deferred: bool,
    link: Link,
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
    /// Sockets to read next turn, oldest first: their last turn's read
    /// budget ran out with input left, or the turn's time did before their
    /// event was served.
    unread: Vec<ClientId>,
    /// Sockets that ended, told to the hub after those that still talk.
    ended: EndedQueue<ClientId>,
    /// The last drain of the hub ran out of time with work left.
    settle_pending: bool,
    /// The listener may hold connections not accepted yet.
    accept_pending: bool,
    /// `accept` failed for want of descriptors or memory: when to try
    /// again. No readiness event comes for connections already waiting.
    accept_retry: Option<Instant>,
    accept_failures: AcceptFailures,
    commands: Receiver<ServerCommand>,
    notices: Sender<ServerNotice>,
    /// Where the hub's requests for a cluster's broker go.
    bus: BusRoute,
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
        let mut deferred = Vec::new();
        loop {
            let now = Instant::now();
            // Input left over from the last turn: look for other events
            // without sleeping, then read on.
            let idle = self.unread.is_empty()
                && self.ended.is_empty()
                && !self.settle_pending
                && !self.accept_pending;
            let timeout = if idle {
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
            // Sockets that became ready now first, then those left over,
            // each for a share of the turn: whoever just spoke is heard in
            // this turn, and whoever waits is served in order.
            let fresh_until = now + READ_TURN_BUDGET;
            let mut first = true;
            for event in events.iter() {
                match event.token() {
                    // While accepting waits out a failure, the retry
                    // takes what arrived meanwhile.
                    LISTENER => self.accept_pending |= self.accept_retry.is_none(),
                    WAKER => woken = true,
                    token => {
                        let Some(id) = client_of(token) else { continue };
                        let peer_closed = event.is_read_closed() || event.is_error();
                        let readable = event.is_readable() || peer_closed;
                        let writable = event.is_writable() || event.is_write_closed();
                        if let Some(conn) = self.conns.get_mut(&id) {
                            conn.peer_closed |= peer_closed;
                        }
                        if first || Instant::now() < fresh_until {
                            first = false;
                            self.on_socket(id, readable, writable, now);
                        } else {
                            self.defer(id, writable, &mut deferred);
                        }
                    }
                }
            }
            let carried_until = Instant::now() + READ_TURN_BUDGET;
            let mut first = true;
            let mut still_waiting = Vec::new();
            for id in carried.drain(..) {
                let Some(conn) = self.conns.get_mut(&id) else {
                    continue;
                };
                if !first && Instant::now() >= carried_until {
                    still_waiting.push(id);
                    continue;
                }
                first = false;
                conn.link.dequeue();
                let writable = std::mem::take(&mut conn.write_deferred);
                self.on_socket(id, true, writable, now);
            }
            // Next turn's order: those still waiting from earlier turns,
            // then those whose read budget ran out in this one, then the
            // events this turn had no time for.
            if !still_waiting.is_empty() {
                still_waiting.append(&mut self.unread);
                self.unread = still_waiting;
            }
            self.unread.append(&mut deferred);
            if self.accept_retry.is_some_and(|at| at <= now) {
                self.accept_retry = None;
                self.accept_pending = true;
            }
            if self.accept_pending {
                self.accept(now);
            }
            self.report_ends(now);
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

    /// Leaves `id`'s event for the next turn, after the sockets already
    /// waiting: its socket is read then, and written if `writable` said it
    /// had room.
    fn defer(&mut self, id: ClientId, writable: bool, deferred: &mut Vec<ClientId>) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.write_deferred |= writable;
            if conn.link.defer() {
                deferred.push(id);
            }
        }
    }

    /// Tells the hub of sockets that ended, oldest first, for
    /// [`ENDS_BUDGET`](ferry_files::ENDS_BUDGET) at the most; the rest
    /// wait for the next turn, behind the sockets that still talk.
    fn report_ends(&mut self, now: Instant) {
        let mut turn = self.ended.turn();
        while let Some(id) = self.ended.next(&mut turn) {
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.link.report_end(&mut self.hub, now);
                self.maybe_finish(id, now);
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.hub.poll_timeout(),
            self.lingering.first().map(|&(at, _)| at),
            self.stop_by,
            self.accept_retry,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn notify(&self, notice: ServerNotice) {
        // Nobody listening is fine: the server runs on regardless.
        let _ = self.notices.send(notice);
    }

    /// Accepts [`ACCEPT_PER_TURN`] connections at most; `accept_pending`
    /// stays set while the listener may hold more.
    fn accept(&mut self, now: Instant) {
        let Some(listener) = &self.listener else {
            self.accept_pending = false;
            return;
        };
        for _ in 0..ACCEPT_PER_TURN {
            let (mut stream, peer) = match listener.accept() {
                Ok(accepted) => {
                    if let Some(notice) = self.accept_failures.accepted() {
                        let _ = self.notices.send(notice);
                    }
                    accepted
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_pending = false;
                    return;
                }
                Err(e) => match self.accept_failures.failed(&e, now) {
                    AcceptRetry::Now => continue,
                    // The rest waits in the backlog until the retry.
                    AcceptRetry::Later { notice } => {
                        if let Some(notice) = notice {
                            let _ = self.notices.send(notice);
                        }
                        self.accept_pending = false;
                        self.accept_retry = Some(now + ACCEPT_BACKOFF);
                        return;
                    }
                },
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
                    want_write: false,
                    peer_closed: false,
                    write_deferred: false,
                    link: Link::new(id, peer, self.tls.clone()),
                },
            );
            self.notify(ServerNotice::Connected { client: id, peer });
        }
    }

    /// Runs `step` on the link of `id` with its socket, then keeps WRITABLE
    /// interest exactly while the link waits for room.
    fn drive<R>(
        &mut self,
        id: ClientId,
        now: Instant,
        step: impl FnOnce(&mut Link, &mut Hub, &mut Stream<'_>, &mut [u8]) -> R,
    ) -> Option<R> {
        let conn = self.conns.get_mut(&id)?;
        let mut socket = Stream::new(&mut conn.stream, conn.peer_closed);
        let out = step(&mut conn.link, &mut self.hub, &mut socket, &mut self.buf);
        let watched = set_write_interest(
            self.poll.registry(),
            &mut conn.stream,
            conn.token,
            &mut conn.want_write,
            conn.link.blocked(),
        );
        if let Err(e) = watched {
            conn.link
                .fail(&mut self.hub, now, &format!("write failed: {e}"));
        }
        if conn.link.queue_end() {
            self.ended.push(id);
        }
        Some(out)
    }

    fn on_socket(&mut self, id: ClientId, readable: bool, writable: bool, now: Instant) {
        let resume = writable
            && self
                .drive(id, now, |link, hub, socket, _| {
                    link.writable(hub, now, socket)
                })
                .unwrap_or(false);
        if readable || resume {
            self.read(id, now);
        }
        self.maybe_finish(id, now);
    }

    /// Reads `id` until its socket is empty or this turn's [`READ_BUDGET`]
    /// is spent (then it waits in `unread` for the next turn), draining
    /// the hub after each whole buffer ([`Reading::Settle`]).
    fn read(&mut self, id: ClientId, now: Instant) {
        let mut budget = READ_BUDGET;
        loop {
            let reading = self.drive(id, now, |link, hub, socket, buf| {
                link.read(hub, now, socket, buf, &mut budget)
            });
            match reading {
                Some(Reading::Settle) => self.settle(now),
                Some(Reading::Unread) => return self.unread.push(id),
                Some(Reading::Idle) | None => return,
            }
        }
    }

    /// Writes what the hub has for `id` until the socket is full.
    fn flush(&mut self, id: ClientId, now: Instant) {
        self.drive(id, now, |link, hub, socket, _| link.flush(hub, now, socket));
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
                Ok(ServerCommand::Bus(inputs)) => {
                    for input in inputs {
                        self.hub.handle_bus(now, input);
                    }
                }
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
        let until = Instant::now() + SETTLE_BUDGET;
        self.settle_pending = false;
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
                if Instant::now() >= until {
                    self.settle_pending = true;
                    break;
                }
            }
            while let Some(id) = self.hub.poll_writable() {
                progressed = true;
                self.flush(id, now);
                self.maybe_finish(id, now);
                if Instant::now() >= until {
                    self.settle_pending = true;
                    break;
                }
            }
            if self.settle_pending {
                // The rest waits in the hub's queues for the next turn.
                self.bus.drain(&mut self.hub);
                return;
            }
            self.bus.drain(&mut self.hub);
            if !progressed {
                return;
            }
        }
    }

    /// The hub closed `id`: its last bytes go out (best effort), then the
    /// socket closes, within [`LINGER`].
    fn start_close(&mut self, id: ClientId, now: Instant) {
        if !self.conns.contains_key(&id) {
            // Never registered: only the hub knows it.
            self.hub.remove(id, now);
            return;
        }
        let closing = self.drive(id, now, |link, hub, socket, _| link.close(hub, now, socket));
        if let Some(Some(deadline)) = closing {
            self.lingering.insert((deadline, id));
        }
        self.maybe_finish(id, now);
    }

    /// Drops the socket of a closed client once its link is done with it.
    fn maybe_finish(&mut self, id: ClientId, now: Instant) {
        let done = self.drive(id, now, |link, hub, socket, _| {
            link.finishing(hub, now, socket)
        });
        if done == Some(true) {
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
            if let Some(at) = conn.link.deadline() {
                self.lingering.remove(&(at, id));
            }
            ferry_core::shrink_if_sparse(&mut self.conns);
        }
        self.hub.remove(id, now);
    }
}
