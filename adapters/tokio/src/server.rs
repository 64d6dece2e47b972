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
//! on. Within a turn every part is bounded too, as in the mio server: the
//! sockets that rang in it are read for a few milliseconds, then those
//! left over (oldest first) for as long, at least one of each; at most
//! [`ACCEPT_PER_TURN`] connections are accepted; sockets that ended (the
//! peer hung up, a read or write failed: [`Link::ended`]) are told to the
//! hub after, for a few milliseconds; the hub's drain stops after
//! [`SETTLE_BUDGET`]. A room of thousands joining or hanging up at once
//! (each a `JOINED` or `LEFT` to everyone) is spread over turns instead of
//! holding one.
//!
//! What each connection does with its socket (plain or TLS by its first
//! bytes, back-pressure, the close) is a [`ferry_tls::link::Link`], shared
//! with the mio server; this task owns the sockets, their wakers, the
//! timers and the order in which the hub is drained. Its sockets are
//! [`Polled`]: a read or write that is not ready registers the
//! connection's waker and says `WouldBlock`, which is all the link needs.

use crate::bell::Doorbell;
use crate::sock::{Polled, LINGER, READ_BUF};
use ferry_core::{ClientId, ClientMap, Hub, HubConfig};
use ferry_files::{
    AcceptFailures, AcceptRetry, BusRoute, EndedQueue, HubFiles, Inbox, ServerCommand,
    ServerNotice, ACCEPT_BACKOFF,
};
use ferry_tls::link::{Link, Reading, READ_BUDGET};
use ferry_tls::TlsServer;
use std::collections::BTreeSet;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Sleep;

/// Turns one poll of the task may run (when timers fall due or sockets
/// ring while it works) before it hands the thread back to the runtime.
const TURNS_PER_POLL: usize = 8;

/// How long one drain of the hub ([`Server::settle`]) goes on at most
/// before the task looks at its sockets again.
const SETTLE_BUDGET: Duration = Duration::from_millis(10);
/// How long one turn reads the sockets that rang in it, then (as long
/// again) those left over from earlier turns, each at least one: a crowd
/// joining a large room at once (each join a `JOINED` to every member and
/// a `MEMBERS` frame of the whole room) is spread over turns, and a socket
/// that just rang is read in the turn that saw it.
const READ_TURN_BUDGET: Duration = Duration::from_millis(5);
/// Connections accepted in one turn at most; the rest wait in the listen
/// backlog for the next turn.
const ACCEPT_PER_TURN: usize = 64;

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
    run_server_tls(
        listener,
        hub,
        inbox,
        None,
        commands,
        notices,
        BusRoute::default(),
    )
    .await
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
/// listening is fine. In cluster mode (a `hub` with a [cluster
/// id](HubConfig::cluster)), the hub's requests for the broker go to `bus`
/// from the server's task, all that one turn made at once.
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
    bus: BusRoute,
) -> io::Result<()> {
    let bell = Doorbell::new();
    let mut server = Server {
        hub: ferry_files::start_hub(hub)?,
        files: HubFiles::new(inbox, bell.disk_wake()),
        bell,
        listener: Some(listener),
        conns: ClientMap::default(),
        lingering: BTreeSet::new(),
        ready: Vec::new(),
        unread: Vec::new(),
        ended: EndedQueue::default(),
        settle_pending: false,
        accept_pending: false,
        accept_retry: None,
        accept_failures: AcceptFailures::default(),
        commands,
        notices,
        bus,
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

/// One accepted socket.
struct Conn {
    stream: TcpStream,
    /// Lists this connection on the doorbell when its socket is ready.
    waker: Waker,
    link: Link,
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
    /// Sockets that ended, told to the hub after those that still talk.
    ended: EndedQueue<ClientId>,
    /// The last drain of the hub ran out of time with work left.
    settle_pending: bool,
    /// The last turn accepted its most: the listener may hold more.
    accept_pending: bool,
    /// `accept` failed for want of descriptors or memory: not tried again
    /// before this instant. The listener's readiness stays set after such
    /// a failure, so no wake-up comes for the connections waiting.
    accept_retry: Option<Instant>,
    accept_failures: AcceptFailures,
    commands: UnboundedReceiver<ServerCommand>,
    notices: mpsc::Sender<ServerNotice>,
    /// Where the hub's requests for a cluster's broker go.
    bus: BusRoute,
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
            let left_over = !self.unread.is_empty()
                || !self.ended.is_empty()
                || self.settle_pending
                || self.accept_pending;
            if left_over {
                // Work left over: let the runtime run others, then go on.
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
        // Sockets that rang now first, then those left over, each for a
        // share of the turn: whoever just spoke is heard in this turn,
        // and whoever waits is served in order.
        let fresh_until = Instant::now() + READ_TURN_BUDGET;
        let mut deferred = Vec::new();
        for (n, &id) in ready.iter().enumerate() {
            if n == 0 || Instant::now() < fresh_until {
                self.on_socket(id, now);
            } else if let Some(conn) = self.conns.get_mut(&id) {
                if conn.link.defer() {
                    deferred.push(id);
                }
            }
        }
        let carried_until = Instant::now() + READ_TURN_BUDGET;
        let mut still_waiting = Vec::new();
        for (n, &id) in carried.iter().enumerate() {
            let Some(conn) = self.conns.get_mut(&id) else {
                continue;
            };
            if n > 0 && Instant::now() >= carried_until {
                still_waiting.push(id);
                continue;
            }
            conn.link.dequeue();
            self.on_socket(id, now);
        }
        // Next turn's order: those still waiting from earlier turns, then
        // those whose read budget ran out in this one, then the sockets
        // this turn had no time for.
        if !still_waiting.is_empty() {
            still_waiting.append(&mut self.unread);
            self.unread = still_waiting;
        }
        self.unread.append(&mut deferred);
        ready.clear();
        self.ready = ready;
        self.report_ends(now);
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
    /// says whether the listener may hold more.
    fn accept(&mut self, cx: &mut Context<'_>, now: Instant) {
        match self.accept_retry {
            Some(at) if now < at => return,
            Some(_) => self.accept_retry = None,
            None => {}
        }
        self.accept_pending = true;
        for _ in 0..ACCEPT_PER_TURN {
            let Some(listener) = &self.listener else {
                self.accept_pending = false;
                return;
            };
            let (stream, peer) = match listener.poll_accept(cx) {
                Poll::Ready(Ok(accepted)) => {
                    if let Some(notice) = self.accept_failures.accepted() {
                        self.notify(notice);
                    }
                    accepted
                }
                Poll::Pending => {
                    self.accept_pending = false;
                    return;
                }
                Poll::Ready(Err(e)) => match self.accept_failures.failed(&e, now) {
                    AcceptRetry::Now => continue,
                    // The rest waits in the backlog until the retry.
                    AcceptRetry::Later { notice } => {
                        if let Some(notice) = notice {
                            self.notify(notice);
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
            self.conns.insert(
                id,
                Conn {
                    stream,
                    waker: self.bell.socket_waker(id),
                    link: Link::new(id, peer, self.tls.clone()),
                },
            );
            self.notify(ServerNotice::Connected { client: id, peer });
            // Polled once now, so that its waker is registered (and what it
            // already sent is read).
            self.on_socket(id, now);
        }
    }

    /// Runs `step` on the link of `id` with its socket, polled with the
    /// connection's own waker.
    fn drive<R>(
        &mut self,
        id: ClientId,
        step: impl FnOnce(&mut Link, &mut Hub, &mut Polled<'_, '_, '_>, &mut [u8]) -> R,
    ) -> Option<R> {
        let conn = self.conns.get_mut(&id)?;
        let mut cx = Context::from_waker(&conn.waker);
        let mut socket = Polled::new(&mut conn.stream, &mut cx);
        let out = step(&mut conn.link, &mut self.hub, &mut socket, &mut self.buf);
        if conn.link.queue_end() {
            self.ended.push(id);
        }
        Some(out)
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

    /// The socket of `id` may be readable or writable (its waker cannot
    /// say which): a blocked write is tried again, then the socket read,
    /// unless it waits in `unread` for its turn. Asking a socket that is
    /// not ready costs no system call.
    fn on_socket(&mut self, id: ClientId, now: Instant) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        if conn.link.blocked() {
            self.drive(id, |link, hub, socket, _| link.writable(hub, now, socket));
        }
        let unread = self
            .conns
            .get(&id)
            .is_some_and(|conn| conn.link.is_unread());
        if !unread {
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
            let reading = self.drive(id, |link, hub, socket, buf| {
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
        self.drive(id, |link, hub, socket, _| link.flush(hub, now, socket));
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
                Poll::Ready(Some(ServerCommand::Bus(inputs))) => {
                    for input in inputs {
                        self.hub.handle_bus(now, input);
                    }
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
            // Never accepted here: only the hub knows it.
            self.hub.remove(id, now);
            return;
        }
        let closing = self.drive(id, |link, hub, socket, _| link.close(hub, now, socket));
        if let Some(Some(deadline)) = closing {
            self.lingering.insert((deadline, id));
        }
        self.maybe_finish(id, now);
    }

    /// Drops the socket of a closed client once its link is done with it.
    fn maybe_finish(&mut self, id: ClientId, now: Instant) {
        let done = self.drive(id, |link, hub, socket, _| link.finishing(hub, now, socket));
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
        if let Some(conn) = self.conns.remove(&id) {
            if let Some(at) = conn.link.deadline() {
                self.lingering.remove(&(at, id));
            }
            ferry_core::shrink_if_sparse(&mut self.conns);
        }
        self.hub.remove(id, now);
    }
}
