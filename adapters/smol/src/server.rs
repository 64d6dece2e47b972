//! The server: one task owns the [`Hub`] and reads every plain socket
//! itself (see [`Intake`]); each connection has a writer task that only
//! moves bytes (the hub task writes itself while a writer is idle: see
//! [`Outlet`]).
//!
//! With a [`TlsServer`], a reader task first reads the connection's first
//! bytes and settles how it speaks ([`Sniff`]); meanwhile the hub's bytes
//! for it wait in the hub. A plain connection then takes exactly the path
//! of a server without TLS (the hub reads it, and writes to it directly);
//! a TLS one too, with a [`TlsPeer`] between the socket and the hub: the
//! hub task decrypts what it reads and encrypts what it or the writer
//! writes.

use crate::alarm::Alarm;
use crate::intake::{Found, Intake};
use crate::lingering::Lingering;
use crate::pump::{discard_until_end, wind_down, write_loop, Fed, Outlet, INPUT_QUEUE};
use crate::tls_peer::TlsPeer;
use async_channel::{Receiver, Sender};
use async_executor::{Executor, Task};
use async_io::Timer;
use async_net::{TcpListener, TcpStream};
use bytes::Bytes;
use ferry_core::{ClientId, ClientMap, Hub, HubConfig, HubEvent};
use ferry_files::{
    AcceptFailures, AcceptRetry, BusRoute, End, EndedQueue, HubFiles, Inbox, ReadBuffer,
    ServerCommand, ServerNotice, ACCEPT_BACKOFF, ENDS_BUDGET,
};
use ferry_tls::{Kind, TlsServer, Transport};
use futures_lite::{future, AsyncReadExt};

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant};

/// How long a shutdown waits for clients to be sent their `ERROR SHUTDOWN`.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(1);

/// How long the hub task handles input, while more keeps waiting, before
/// it feeds the writers (see `Server::drain`) and lets the executor run
/// them and the other tasks (first-byte readers, the accept loop). A
/// socket the hub reads is always ready for another turn while its peer
/// keeps sending, so without this the hub could keep the thread from the
/// tasks that refill its other inputs.
///
/// Time rather than a count of inputs: each feed wakes the writer of every
/// client the inputs gave bytes to, and in a room of 4,000 filling up that
/// was every member, 2,500 writes of 8 us each after every 64 inputs; a
/// member's ping waited behind 2,500 sockets' turns at that pace for over
/// half a second (`ferry bench hostile --attacks large-room`).
const TURN: Duration = Duration::from_millis(5);

/// Wake-ups handled at most between two yields however quick they are.
const YIELD_EVERY: usize = 1024;

/// Clients fed at most after one [`TURN`] of input while more input waits:
/// their writers run before the hub reads on (at about 8 us a write, some
/// 4 ms). The rest stay in the hub, in order, for the next turn, with
/// what that turn adds for them.
const FEED_BUDGET: usize = 512;

/// What the socket tasks tell the hub task.
#[derive(Clone)]
enum Input {
    Accepted(TcpStream, SocketAddr),
    Read(ClientId, Bytes),
    /// The client closed its side.
    Eof(ClientId),
    /// Its socket broke: why.
    Broken(ClientId, String),
    /// The client's writer has room again.
    Room(ClientId),
    /// Its first bytes told plain from TLS: the hub's bytes may go out.
    Decided(ClientId),
    /// Clear text to a server that requires TLS: the first bytes.
    Unencrypted(ClientId, Bytes),
    /// Its first bytes were plain and have been sent: the hub reads the
    /// rest itself from this socket.
    Plain(ClientId, TcpStream),
    /// Its first bytes began a TLS ClientHello: the hub feeds them to a
    /// transport of its own and reads the rest itself from this socket.
    Tls(ClientId, TcpStream, Bytes),
}

/// What woke the hub task.
enum Wake {
    Input(Input),
    /// A socket the hub reads waits for its turn.
    Turn,
    /// Nothing else waits, but ended connections do.
    Ends,
    /// A file writer finished something.
    Disk,
    Timeout,
    Command(ServerCommand),
    CommandsClosed,
}

/// Runs a ferry server on `listener` until a [`ServerCommand::Shutdown`]
/// arrives on `commands`, then tells every client, gives them up to a
/// second to receive it, and returns `Ok(())`.
///
/// Uploads to the server go into `inbox` (declined without one). What
/// happens is reported on `notices`: [`ServerNotice::Connected`] on accept,
/// then whatever [`HubFiles`] makes of the hub's events. A dropped notice
/// receiver is fine, and so is a closed `commands` channel: the server
/// goes on either way, and only `Shutdown` stops it. An
/// [`ServerCommand::Announce`] over the message cap is dropped, as
/// [`ServerNotice`] has no way to say so.
///
/// The future runs its connection tasks on an executor of its own, polled
/// from inside it, so it needs nothing but an async-io reactor: await it
/// in any executor built on async-io (`smol::block_on`, `smol::spawn`, an
/// `async_executor::Executor`, ...). It is `Send`.
///
/// # Errors
///
/// None today once running: per-connection failures close that
/// connection, and failed accepts are retried. The `io::Result` leaves room
/// for failures that must stop the server.
pub async fn run_server(
    listener: TcpListener,
    hub: HubConfig,
    inbox: Option<Inbox>,
    commands: Receiver<ServerCommand>,
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

/// [`run_server`], also speaking TLS with `tls`: a connection whose first
/// byte starts a TLS ClientHello (`0x16`) is served through TLS, any other
/// (the ferry preamble, a raw-text guest) in clear text on the same port,
/// or turned away with a reason if `tls` [requires
/// TLS](TlsServer::require_tls).
///
/// Until a connection's first bytes arrive, the hub's bytes for it wait in
/// the hub (in clear they would break a TLS handshake), except when the hub
/// closes it first: its last words then go out in clear. The hub's
/// `handshake_timeout` runs from the accept, so it bounds the TLS
/// handshake too. A failed TLS handshake ends that connection alone, with
/// a [`ServerNotice::Disconnected`] whose reason reads `TLS with <address>:
/// <rustls' reason>`.
///
/// In cluster mode (a `hub` with a [cluster id](HubConfig::cluster)), the
/// hub's requests for the broker go to `bus` from the hub's task, all that
/// one turn made at once.
///
/// # Errors
///
/// As [`run_server`].
pub async fn run_server_tls(
    listener: TcpListener,
    hub: HubConfig,
    inbox: Option<Inbox>,
    tls: Option<Arc<TlsServer>>,
    commands: Receiver<ServerCommand>,
    notices: mpsc::Sender<ServerNotice>,
    bus: BusRoute,
) -> io::Result<()> {
    let executor = Arc::new(Executor::new());
    let (inputs_tx, inputs) = async_channel::bounded(INPUT_QUEUE);
    // Owned by the executor: dropped, and the listener closed, when this
    // function returns.
    executor
        .spawn(accept_loop(listener, inputs_tx.clone(), notices.clone()))
        .detach();
    let (disk_wake, disk_done) = crate::disk_signal();
    let mut server = Server {
        executor: executor.clone(),
        hub: ferry_files::start_hub(hub)?,
        files: HubFiles::new(inbox, disk_wake),
        peers: ClientMap::default(),
        lingering: Lingering::new(),
        inputs: inputs_tx,
        notices,
        bus,
        disk_done,
        alarm: Alarm::new(),
        turn_ends: Instant::now(),
        tls,
        intake: Intake::new(),
        turns_first: false,
        ended: EndedQueue::default(),
        ends_due: Instant::now(),
    };
    // The hub's loop is a task like the others rather than the future
    // `run` drives itself: that future is woken through the thread's own
    // waker, and each such wake-up cost a non-blocking round of the
    // reactor (five system calls) per message.
    let hub_task = executor.spawn(async move { server.run(inputs, commands).await });
    executor.run(hub_task).await
}

async fn accept_loop(
    listener: TcpListener,
    to: Sender<Input>,
    notices: mpsc::Sender<ServerNotice>,
) {
    let mut failures = AcceptFailures::default();
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if let Some(notice) = failures.accepted() {
                    let _ = notices.send(notice);
                }
                if to.send(Input::Accepted(stream, peer)).await.is_err() {
                    return;
                }
            }
            Err(e) => match failures.failed(&e, Instant::now()) {
                AcceptRetry::Now => {}
                AcceptRetry::Later { notice } => {
                    if let Some(notice) = notice {
                        let _ = notices.send(notice);
                    }
                    Timer::after(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
}

/// Whether a connection to a TLS server turned out to speak TLS, set once,
/// by its reader from the first bytes or by the hub closing it before any
/// (plain).
type Sniff = OnceLock<bool>;

/// The hub task's view of one connection.
struct Peer {
    outlet: Outlet,
    /// The hub said [`HubEvent::Closed`]: flush, then remove.
    closed: bool,
    /// On a TLS server: plain or TLS, once known. `None` without TLS.
    sniff: Option<Arc<Sniff>>,
    /// Whether the hub's bytes may go out: always without TLS, else once
    /// the first bytes told plain from TLS (and a TLS one's transport is
    /// here), or the hub closed it before any.
    decided: bool,
    /// A TLS connection's transport, once its first bytes came.
    tls: Option<TlsPeer>,
    /// Where it connected from, for the log.
    address: SocketAddr,
    reader: ReaderTask,
    writer: Task<()>,
}

/// A connection's reader task: a TLS connection's, or on a TLS server the
/// one that reads the first bytes and ends once they were plain. `None`
/// when the hub reads the socket itself.
type ReaderTask = Option<Task<()>>;

struct Server {
    executor: Arc<Executor<'static>>,
    hub: Hub,
    files: HubFiles,
    peers: ClientMap<Peer>,
    /// Sockets of removed clients, still writing their last bytes.
    lingering: Lingering,
    inputs: Sender<Input>,
    notices: mpsc::Sender<ServerNotice>,
    /// Where the hub's requests for a cluster's broker go.
    bus: BusRoute,
    /// Signalled by file writers.
    disk_done: Receiver<()>,
    /// Fires by the hub's next deadline.
    alarm: Alarm,
    /// When the writers are fed (a bounded number) and the executor's
    /// other tasks run next, however much input waits (see [`TURN`]).
    turn_ends: Instant,
    /// TLS settings; `None` serves every connection plain, as always.
    tls: Option<Arc<TlsServer>>,
    /// The plain sockets, which this task reads itself.
    intake: Intake,
    /// Whether the next wait looks at the sockets' turns before the
    /// channel, which it alternates with, so that neither starves.
    turns_first: bool,
    /// Connections that ended, in order, not yet told to the hub: after
    /// the live sockets, [`ENDS_BUDGET`] at a time, and at least every
    /// [`ENDS_BUDGET`] of live work while they wait.
    ended: EndedQueue<(ClientId, End)>,
    /// When ends are told next even while live input keeps coming.
    ends_due: Instant,
}

impl Server {
    async fn run(
        &mut self,
        inputs: Receiver<Input>,
        commands: Receiver<ServerCommand>,
    ) -> io::Result<()> {
        let mut commands = Some(commands);
        let mut since_yield = 0;
        loop {
            since_yield += 1;
            if since_yield >= YIELD_EVERY || Instant::now() >= self.turn_ends {
                since_yield = 0;
                future::yield_now().await;
                self.turn_ends = Instant::now() + TURN;
            }
            // Nothing known to wait: the task is about to wait, and the
            // executor runs the others meanwhile; a turn starts afresh.
            let idle = !self.input_waits()
                && self.ended.is_empty()
                && self.hub.poll_timeout().is_none_or(|at| at > Instant::now());
            let wake = self.next(&inputs, commands.as_ref()).await;
            let now = Instant::now();
            if idle {
                self.turn_ends = now + TURN;
            }
            let mut tell_ends = now >= self.ends_due;
            match wake {
                Wake::Input(input) => self.on_input(now, input),
                Wake::Turn => self.read_turn(now),
                Wake::Ends => tell_ends = true,
                Wake::Disk => {
                    for notice in self.files.poll_disk(&mut self.hub, now) {
                        let _ = self.notices.send(notice);
                    }
                }
                Wake::Timeout => self.hub.handle_timeout(now),
                Wake::Command(ServerCommand::Announce(text)) => {
                    if let Err(e) = self.hub.announce(now, "", &text) {
                        let _ = self.notices.send(ServerNotice::CommandFailed(format!(
                            "announcement not sent: {e}"
                        )));
                    }
                }
                Wake::Command(ServerCommand::Shutdown(reason)) => {
                    self.hub.shutdown(now, &reason);
                    self.drain(now);
                    self.flush_all(&inputs, now + SHUTDOWN_FLUSH).await;
                    return Ok(());
                }
                Wake::Command(ServerCommand::Bus(inputs)) => {
                    for input in inputs {
                        self.hub.handle_bus(now, input);
                    }
                }
                // `ServerCommand` may grow; a command this runtime does not
                // know is ignored rather than fatal.
                Wake::Command(_) => {}
                Wake::CommandsClosed => commands = None,
            }
            self.catch_up(now);
            if tell_ends {
                self.report_ends(now);
            }
            self.drain(now);
        }
    }

    /// Tells the hub of ended connections, oldest first, for at most
    /// [`ENDS_BUDGET`]; the rest wait until the live sockets had theirs.
    fn report_ends(&mut self, now: Instant) {
        let mut now = now;
        let mut turn = self.ended.turn();
        while let Some((id, end)) = self.ended.next(&mut turn) {
            match (
                end,
                self.peers.get_mut(&id).and_then(|peer| peer.tls.as_mut()),
            ) {
                // Through TLS the transport hears it first: a truncated
                // handshake is a failure, anything else the peer's end.
                (End::Eof, Some(tls)) => {
                    tls.input_end(&mut self.hub, id, now);
                    self.feed(id, now);
                }
                (end, _) => end.tell(&mut self.hub, id, now),
            }
            now = Instant::now();
        }
        self.ends_due = now + ENDS_BUDGET;
    }

    /// Fires due timers and takes finished disk work even while input keeps
    /// coming: `next` prefers input, so under a steady stream of it (one
    /// client flooding) the timers and the disk would otherwise wait, and
    /// timeouts and upload confirmations with them.
    fn catch_up(&mut self, now: Instant) {
        if self.hub.poll_timeout().is_some_and(|at| at <= now) {
            self.hub.handle_timeout(now);
        }
        if self.disk_done.try_recv().is_ok() {
            while self.disk_done.try_recv().is_ok() {}
            for notice in self.files.poll_disk(&mut self.hub, now) {
                let _ = self.notices.send(notice);
            }
        }
    }

    /// Waits for the next input, command or timer.
    async fn next(
        &mut self,
        inputs: &Receiver<Input>,
        commands: Option<&Receiver<ServerCommand>>,
    ) -> Wake {
        self.alarm.arm(self.hub.poll_timeout());
        let command = async {
            match commands {
                Some(commands) => match commands.recv().await {
                    Ok(command) => Wake::Command(command),
                    Err(_) => Wake::CommandsClosed,
                },
                None => future::pending().await,
            }
        };
        // The channel and the sockets' turns, the first looked at first
        // alternating between the two.
        let turns_first = self.turns_first;
        self.turns_first = !turns_first;
        let ends_wait = !self.ended.is_empty();
        let intake = &mut self.intake;
        let mut received = pin!(inputs.recv());
        let input = future::poll_fn(|cx| {
            if turns_first && intake.poll_turn(cx).is_ready() {
                return Poll::Ready(Wake::Turn);
            }
            // An error cannot happen: we hold a sender ourselves.
            if let Poll::Ready(Ok(input)) = received.as_mut().poll(cx) {
                return Poll::Ready(Wake::Input(input));
            }
            if !turns_first && intake.poll_turn(cx).is_ready() {
                return Poll::Ready(Wake::Turn);
            }
            if ends_wait {
                return Poll::Ready(Wake::Ends);
            }
            Poll::Pending
        });
        let alarm = &mut self.alarm;
        let timer = async {
            alarm.ring().await;
            Wake::Timeout
        };
        let disk_done = &self.disk_done;
        let disk = async {
            match disk_done.recv().await {
                Ok(()) => Wake::Disk,
                // We hold the sender (in `files`), so this cannot happen.
                Err(_) => future::pending().await,
            }
        };
        // Commands first: a shutdown should not wait behind a busy room.
        future::or(command, future::or(input, future::or(disk, timer))).await
    }

    fn on_input(&mut self, now: Instant, input: Input) {
        match input {
            Input::Accepted(stream, peer) => self.accept(now, stream, peer),
            // A removed client's reader may still deliver: the hub ignores
            // ids it no longer knows.
            Input::Read(id, data) => self.hub.handle_input(id, now, &data),
            Input::Eof(id) => self.ended.push((id, End::Eof)),
            Input::Broken(id, why) => self.ended.push((id, End::Broken(why))),
            Input::Room(id) => {
                self.feed(id, now);
            }
            Input::Decided(id) => {
                if let Some(peer) = self.peers.get_mut(&id) {
                    peer.decided = true;
                }
                // What the hub held meanwhile goes out now.
                self.feed(id, now);
            }
            Input::Unencrypted(id, data) => self.hub.refuse_unencrypted(id, now, &data),
            Input::Plain(id, stream) => {
                if self.peers.contains_key(&id) {
                    self.intake.add(id, &stream);
                } else {
                    self.read_to_end(stream);
                }
            }
            Input::Tls(id, stream, first) => self.start_tls(id, now, stream, &first),
        }
    }

    /// A client removed before its first bytes came (closed at connect):
    /// its socket is read on until the peer's end, as any removed client's
    /// (for as long).
    fn read_to_end(&mut self, stream: TcpStream) {
        let reading = discard_until_end(stream);
        self.lingering
            .spawn(&self.executor, wind_down(async {}, reading));
    }

    /// A connection whose first bytes began a ClientHello: from now on the
    /// hub task reads it through a transport of its own.
    fn start_tls(&mut self, id: ClientId, now: Instant, stream: TcpStream, first: &[u8]) {
        let (Some(peer), Some(tls)) = (self.peers.get_mut(&id), self.tls.as_deref()) else {
            return self.read_to_end(stream);
        };
        let label = format!("TLS with {}", peer.address);
        // The hub's bytes may go out now: through TLS, or in clear to say
        // why there is none.
        peer.decided = true;
        let transport = match Transport::accept(first, Some(tls)) {
            Ok(transport) => transport,
            // Only the first byte decides, and it said TLS: this is rustls
            // refusing to start a connection at all.
            Err(e) => {
                self.hub.handle_broken(id, now, &format!("{label}: {e}"));
                return self.read_to_end(stream);
            }
        };
        peer.tls = Some(TlsPeer::new(transport, label));
        self.intake.add(id, &stream);
        self.tls_input(id, now, first);
        // What the hub held meanwhile goes in now, to go out once the
        // handshake is done.
        self.feed(id, now);
    }

    /// Reads the socket whose turn it is and hands the hub what it found.
    /// The client's own replies (a `PONG`, its own message's echo) are
    /// written at once, as the mio and tokio loops write a socket's replies
    /// right after reading it: waiting for the end of a burst of input put
    /// a member's `PONG` behind thousands of other sockets' turns and
    /// writers when a room of 4,000 pinged at once (`ferry bench hostile
    /// --attacks large-room`, p99 over 500 ms). What the input made the
    /// hub send to others still waits for the burst's end.
    fn read_turn(&mut self, now: Instant) {
        let Some((id, found)) = self.intake.read_turn() else {
            // Nothing there after all: the reactor will say when.
            return;
        };
        let tls = self.peers.get_mut(&id).and_then(|peer| peer.tls.as_mut());
        match (found, tls) {
            // A removed client is not read any more; one closed by the hub
            // still is, and the hub ignores what it sends.
            (Found::Data(data), None) => {
                self.hub.handle_input(id, now, data);
                self.feed_with(id, now, true);
            }
            (Found::Data(data), Some(tls)) => {
                let took_all = tls.input(&mut self.hub, id, now, data);
                self.after_tls_input(id, now, took_all);
                self.feed_with(id, now, true);
            }
            // Told after the live sockets (see `ENDS_BUDGET`).
            (Found::End, _) => self.ended.push((id, End::Eof)),
            (Found::Broken(why), _) => self.ended.push((id, End::Broken(why))),
        }
    }

    /// Hands `data`, read from `id`'s TLS socket, to its transport; stops
    /// reading the socket while the transport holds some of it back.
    fn tls_input(&mut self, id: ClientId, now: Instant, data: &[u8]) {
        let Some(tls) = self.peers.get_mut(&id).and_then(|peer| peer.tls.as_mut()) else {
            return;
        };
        let took_all = tls.input(&mut self.hub, id, now, data);
        self.after_tls_input(id, now, took_all);
    }

    /// After TLS input: the socket is not read while the transport holds
    /// some back, and the handshake's answers (or an alert) go out.
    fn after_tls_input(&mut self, id: ClientId, now: Instant, took_all: bool) {
        if !took_all {
            self.intake.pause(id);
        }
        let wants_write = self
            .peers
            .get(&id)
            .and_then(|peer| peer.tls.as_ref())
            .is_some_and(TlsPeer::wants_write);
        if wants_write {
            self.feed(id, now);
        }
    }

    /// Whether input is known to wait: then what it makes the hub send is
    /// gathered before anything is written.
    fn input_waits(&self) -> bool {
        !self.inputs.is_empty() || self.intake.has_woken()
    }

    fn accept(&mut self, now: Instant, stream: TcpStream, peer: SocketAddr) {
        // Chat frames are small and should leave at once.
        let _ = stream.set_nodelay(true);
        let id = self.hub.connect_from(now, peer.ip());
        let (outlet, writer_end) = Outlet::new(stream.clone());
        if let Some(tls) = self.tls.clone() {
            return self.accept_tls(id, stream, peer, outlet, writer_end, tls);
        }
        self.intake.add(id, &stream);
        let writer = self.spawn_writer(id, stream, writer_end);
        self.peers.insert(
            id,
            Peer {
                outlet,
                closed: false,
                sniff: None,
                decided: true,
                tls: None,
                address: peer,
                reader: None,
                writer,
            },
        );
        let _ = self
            .notices
            .send(ServerNotice::Connected { client: id, peer });
    }

    /// The writer of every connection, plain or TLS: it writes bytes (a TLS
    /// connection's records) the hub task could not write at once.
    fn spawn_writer(
        &self,
        id: ClientId,
        stream: TcpStream,
        writer_end: crate::pump::WriterEnd,
    ) -> Task<()> {
        self.executor.spawn(write_loop(
            stream,
            writer_end,
            self.inputs.clone(),
            Input::Room(id),
            move |why| Input::Broken(id, why),
        ))
    }

    /// [`accept`](Self::accept) on a TLS server: a reader task tells plain
    /// from TLS by the first bytes (after the hub's `connect_from`, so its
    /// handshake timeout covers TLS too) and hands the socket to the hub.
    fn accept_tls(
        &mut self,
        id: ClientId,
        stream: TcpStream,
        peer: SocketAddr,
        outlet: Outlet,
        writer_end: crate::pump::WriterEnd,
        tls: Arc<TlsServer>,
    ) {
        let sniff = Arc::new(Sniff::new());
        let reader = self.executor.spawn(sniff_first_bytes(
            stream.clone(),
            id,
            sniff.clone(),
            tls.is_required(),
            self.inputs.clone(),
        ));
        let writer = self.spawn_writer(id, stream, writer_end);
        self.peers.insert(
            id,
            Peer {
                outlet,
                closed: false,
                sniff: Some(sniff),
                decided: false,
                tls: None,
                address: peer,
                reader: Some(reader),
                writer,
            },
        );
        let _ = self
            .notices
            .send(ServerNotice::Connected { client: id, peer });
    }

    /// Handles everything the hub has to say until it is idle: events,
    /// then bytes for every writable client, again while either produced
    /// more (writing can make a sender ask for file data; file data for
    /// one client can make a relay recipient writable). Also fires timers
    /// that came due while input kept the task busy.
    fn drain(&mut self, now: Instant) {
        if self.hub.poll_timeout().is_some_and(|at| at <= now) {
            self.hub.handle_timeout(now);
        }
        // While more input waits, what it makes the hub send stays there
        // and goes to the writers once per turn: feeding after every input
        // woke each recipient's writer (a system call each) once per input,
        // so a thousand members joining one after another cost a million
        // writes and held the task for a third of a second. At a turn's
        // end, a bounded number of clients; once no input waits, all.
        let input_waits = self.input_waits();
        let mut budget = match (input_waits, Instant::now() >= self.turn_ends) {
            (false, _) => usize::MAX,
            (true, true) => FEED_BUDGET,
            (true, false) => 0,
        };
        loop {
            let mut busy = false;
            while let Some(event) = self.hub.poll_event() {
                busy = true;
                self.on_event(now, event);
            }
            while budget > 0 {
                let Some(id) = self.hub.poll_writable() else {
                    break;
                };
                budget -= 1;
                busy |= self.feed(id, now);
            }
            if !busy {
                break;
            }
        }
        self.bus.drain(&mut self.hub);
    }

    fn on_event(&mut self, now: Instant, event: HubEvent) {
        let closed = event.closed_client();
        if let Some(notice) = self.files.handle(&mut self.hub, now, event) {
            // Nobody listening is fine: the server serves on.
            let _ = self.notices.send(notice);
        }
        if let Some(id) = closed {
            if let Some(peer) = self.peers.get_mut(&id) {
                peer.closed = true;
                if !peer.decided {
                    // Closed before its first byte (turned away at
                    // connect, or silent until the handshake timeout):
                    // there is no TLS to put its last words in, so they go
                    // in clear. Unless a ClientHello just began: then
                    // they go through TLS once its transport is here.
                    peer.decided = peer
                        .sniff
                        .as_ref()
                        .is_none_or(|sniff| !*sniff.get_or_init(|| false));
                }
            }
            // Its last bytes may already be queued or written: finish now
            // if nothing is left, as the hub will not name it writable.
            self.feed(id, now);
        }
    }

    /// Hands `id`'s queued bytes to its writer while there is room, and
    /// removes a closed client once all of them are handed over. Returns
    /// whether anything moved.
    fn feed(&mut self, id: ClientId, now: Instant) -> bool {
        // Written at once only at the end of a burst of input, so that the
        // writers gather what the whole burst produced for each client.
        let direct = !self.input_waits();
        self.feed_with(id, now, direct)
    }

    /// [`feed`](Self::feed), writing to the socket itself first if
    /// `direct` (and the writer is idle).
    fn feed_with(&mut self, id: ClientId, now: Instant, direct: bool) -> bool {
        let Some(peer) = self.peers.get_mut(&id) else {
            return false;
        };
        if !peer.decided {
            // Held in the hub until the first bytes tell how to send it.
            return false;
        }
        let hub = &mut self.hub;
        let (fed, moved) = match &mut peer.tls {
            None => peer.outlet.feed(direct, || hub.poll_transmit(id)),
            Some(tls) => peer
                .outlet
                .feed(direct, || tls.records(|| hub.poll_transmit(id))),
        };
        if fed == Fed::Drained {
            // The transport's output is taken: what it held back of the
            // socket's bytes may go in now.
            let resumed = peer.tls.as_mut().and_then(|tls| tls.resume(hub, id, now));
            if resumed == Some(true) {
                self.intake.resume(id);
            }
            if resumed.is_some() {
                self.after_tls_input(id, now, resumed == Some(true));
            }
            if self.peers.get(&id).is_some_and(|peer| peer.closed) {
                self.remove(id, now);
            }
        }
        moved
    }

    /// Forgets a closed client whose last bytes are with its writer. The
    /// writer finishes them and shuts the socket's write side; its socket
    /// is read on (by a task, no longer by the hub) until the peer closes
    /// too, so that unread input does not turn the close into a reset that
    /// could destroy the final frames in flight. Both are bounded (see
    /// [`wind_down`]).
    fn remove(&mut self, id: ClientId, now: Instant) {
        let Some(peer) = self.peers.remove(&id) else {
            return;
        };
        ferry_core::shrink_if_sparse(&mut self.peers);
        self.hub.remove(id, now);
        let Peer {
            outlet,
            reader,
            writer,
            tls,
            ..
        } = peer;
        // close_notify tells the client the end is deliberate, not a cut.
        // Closing the queue is what tells the writer to finish.
        match tls.and_then(|mut tls| tls.close()) {
            Some(records) => self.executor.spawn(outlet.finish_with(records)).detach(),
            None => drop(outlet),
        }
        let drained = self.intake.remove(id);
        let reading = async move {
            if let Some(reader) = reader {
                reader.await;
            }
            if let Some(drained) = drained {
                drained.await;
            }
        };
        self.lingering
            .spawn(&self.executor, wind_down(writer, reading));
    }

    /// After a shutdown: keeps moving the clients' last bytes until every
    /// one is written and closed, or `deadline` passes.
    async fn flush_all(&mut self, inputs: &Receiver<Input>, deadline: Instant) {
        while !self.peers.is_empty() {
            let input = future::or(async { inputs.recv().await.ok() }, async {
                Timer::at(deadline).await;
                None
            })
            .await;
            let now = Instant::now();
            match input {
                None => return,
                // Too late to serve a newcomer: dropping it closes it.
                Some(Input::Accepted(..)) => {}
                Some(input) => self.on_input(now, input),
            }
            self.report_ends(now);
            self.drain(now);
        }
        future::or(self.lingering.finish(), async {
            Timer::at(deadline).await;
        })
        .await;
    }
}

/// A TLS server's reader: reads the first bytes, decides plain or TLS by
/// the first one (unless the hub decided plain first, by closing the
/// client), and hands the socket to the hub, which reads on itself. No
/// byte read is lost: the first ones go to the transport or the hub like
/// any others.
async fn sniff_first_bytes(
    mut stream: TcpStream,
    id: ClientId,
    sniff: Arc<Sniff>,
    tls_required: bool,
    to: Sender<Input>,
) {
    let mut buf = ReadBuffer::new();
    let read = loop {
        match stream.read(buf.space()).await {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            read => break read,
        }
    };
    let first: &[u8] = match &read {
        Ok(n) => buf.filled(*n),
        Err(_) => &[],
    };
    let is_tls = *sniff.get_or_init(|| {
        first
            .first()
            .is_some_and(|&byte| Kind::of_first_byte(byte) == Kind::Tls)
    });
    drop(sniff);
    let first = Bytes::copy_from_slice(first);
    if is_tls {
        let _ = to.send(Input::Tls(id, stream, first)).await;
        return;
    }
    if to.send(Input::Decided(id)).await.is_err() {
        return;
    }
    let input = match read {
        Err(e) => Input::Broken(id, format!("read failed: {e}")),
        Ok(0) => Input::Eof(id),
        // Nothing it sent is handled; the hub turns it away with a reason,
        // and reading on sees the end of the connection.
        Ok(_) if tls_required => Input::Unencrypted(id, first),
        Ok(_) => Input::Read(id, first),
    };
    let reads_on = matches!(input, Input::Unencrypted(..) | Input::Read(..));
    if to.send(input).await.is_ok() && reads_on {
        let _ = to.send(Input::Plain(id, stream)).await;
    }
}
