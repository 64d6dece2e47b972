//! A server with one reader and one writer thread per connection, all
//! feeding one hub behind a mutex. Writers write outside the lock, so a
//! client that stops reading blocks only its own writer; the hub drops it
//! when its queue fills. What a client's own input produces for it (a
//! `PONG`, the echo of its message) its reader writes itself when the
//! writer is idle, without blocking: waking the writer thread for it cost
//! a thread switch per round trip. What does not fit in the socket is left
//! to the writer, so a reader never stops reading to wait for its peer.
//!
//! With a [`TlsServer`], a connection whose first byte starts a TLS
//! ClientHello runs through a [`Transport`] shared by its reader and
//! writer: the reader feeds it socket bytes and hands the plaintext to the
//! hub, the writer moves the hub's bytes into it and writes the records.
//! Neither holds the transport's lock while it blocks on the socket, so a
//! writer stuck on a peer that does not read never stops its reader. Every
//! other connection (the ferry preamble, a raw-text guest) stays plain and
//! takes exactly the path it takes without TLS.

use bytes::{Buf, Bytes, BytesMut};
use ferry_core::{ClientId, ClientMap, Hub, HubConfig};
use ferry_files::{
    AcceptFailures, AcceptRetry, BusRoute, End, EndedQueue, HubFiles, Inbox, OutputBatch,
    ReadBuffer, ServerCommand, ServerHandle, ServerNotice, Wake, ACCEPT_BACKOFF,
};
use ferry_tls::link::LINGER_READ_LIMIT;
use ferry_tls::{Kind, TlsServer, Transport};

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// How often the timer thread looks at the hub's deadline at the least.
const TIMER_TICK: Duration = Duration::from_millis(200);
/// A write blocked this long means the peer is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a shutting-down server lets writers flush.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// How long a TLS reader whose transport refuses input waits for its
/// writer before looking again (the writer also wakes it when it drains).
const TLS_DRAIN_WAIT: Duration = Duration::from_millis(100);

/// Binds `listen` (port 0 picks a free port) and serves on threads of its
/// own: one acceptor, one timer, and a reader and a writer per client.
/// Every connection is plain; see [`spawn_server_tls`] for TLS.
pub fn spawn_server(
    listen: SocketAddr,
    hub: HubConfig,
    inbox: Option<Inbox>,
) -> io::Result<ServerHandle> {
    spawn_server_tls(listen, hub, inbox, None)
}

/// [`spawn_server`], also speaking TLS with `tls`: a connection whose first
/// byte starts a TLS ClientHello (`0x16`) is served through TLS, any other
/// (the ferry preamble, a raw-text guest) in clear text on the same port.
///
/// A TLS handshake that fails ends that connection alone, with a
/// [`ServerNotice::Disconnected`] whose reason names the client's address
/// and rustls' reason. The hub's `handshake_timeout` also bounds the TLS
/// handshake: it runs from the TCP accept, so a client that never finishes
/// TLS is closed then like one that never sends HELLO.
pub fn spawn_server_tls(
    listen: SocketAddr,
    hub: HubConfig,
    inbox: Option<Inbox>,
    tls: Option<Arc<TlsServer>>,
) -> io::Result<ServerHandle> {
    let listener = TcpListener::bind(listen)?;
    let local_addr = listener.local_addr()?;
    let (notices_tx, notices) = mpsc::channel();
    let bus = BusRoute::default();
    // File writers only signal; this thread takes the hub for them, so a
    // writer never waits on the hub's lock (whose holder may be waiting for
    // that writer to release a file's name).
    let (disk_tx, disk_rx) = mpsc::channel::<()>();
    let disk_wake: Wake = Arc::new(move || {
        let _ = disk_tx.send(());
    });
    let timer_wake = Arc::new(Condvar::new());
    let state = Arc::new(State {
        shared: Mutex::new(Shared {
            hub: ferry_files::start_hub(hub)?,
            files: HubFiles::new(inbox, disk_wake),
            writers: ClientMap::default(),
            notices: notices_tx,
            bus: bus.clone(),
            serving: None,
            ended: EndedQueue::default(),
            timer_wake: timer_wake.clone(),
        }),
        stopping: AtomicBool::new(false),
        timer_wake,
        local_addr,
        tls,
    });
    let disk_state = Arc::downgrade(&state);
    thread::Builder::new()
        .name("ferry-std-disk".into())
        .spawn(move || {
            // Ends with the server: the wake (and so the sender) lives in it.
            while disk_rx.recv().is_ok() {
                let Some(state) = disk_state.upgrade() else {
                    return;
                };
                let mut shared = state.lock();
                let now = Instant::now();
                let Shared { hub, files, .. } = &mut *shared;
                for notice in files.poll_disk(hub, now) {
                    let _ = shared.notices.send(notice);
                }
                shared.after(now);
            }
        })?;
    let commander_state = state.clone();
    let command = Box::new(move |command: ServerCommand| {
        let state = &commander_state;
        let mut shared = state.lock();
        let now = Instant::now();
        match command {
            ServerCommand::Announce(text) => {
                if let Err(e) = shared.hub.announce(now, "", &text) {
                    let _ = shared.notices.send(ServerNotice::CommandFailed(format!(
                        "announcement not sent: {e}"
                    )));
                }
            }
            ServerCommand::Shutdown(reason) => {
                shared.hub.shutdown(now, &reason);
                state.stopping.store(true, Ordering::SeqCst);
                state.timer_wake.notify_all();
            }
            ServerCommand::Bus(inputs) => {
                for input in inputs {
                    shared.hub.handle_bus(now, input);
                }
            }
            _ => {}
        }
        shared.after(now);
    });
    let thread = thread::Builder::new()
        .name("ferry-std-server".into())
        .spawn(move || run(listener, state))?;
    Ok(ServerHandle::new(local_addr, command, notices, bus, thread))
}

struct State {
    shared: Mutex<Shared>,
    stopping: AtomicBool,
    /// Wakes the timer thread: to stop, or to resume work the hub left.
    timer_wake: Arc<Condvar>,
    local_addr: SocketAddr,
    tls: Option<Arc<TlsServer>>,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panicking thread leaves the hub as consistent as any other stop.
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Shared {
    hub: Hub,
    files: HubFiles,
    /// Wakes each client's writer; `true` asks it to finish after flushing.
    writers: ClientMap<Sender<bool>>,
    notices: Sender<ServerNotice>,
    /// Where the hub's requests for a cluster's broker go.
    bus: BusRoute,
    /// The client whose reader is handling its input and will write what
    /// that leaves for it itself: its writer is not woken for it.
    serving: Option<ClientId>,
    /// Connections that ended (the peer hung up, a read or write failed),
    /// told to the hub by the timer thread, a few milliseconds at a time:
    /// thousands of readers each taking the lock to make their client
    /// leave its room kept the lock from the readers of clients that still
    /// talk for as long as the whole room took.
    ended: EndedQueue<(ClientId, End)>,
    /// [`State::timer_wake`], for [`after`](Self::after).
    timer_wake: Arc<Condvar>,
}

impl Shared {
    /// Queues `client`'s end for the timer thread and wakes it.
    fn end(&mut self, client: ClientId, end: End) {
        self.ended.push((client, end));
        self.timer_wake.notify_one();
    }

    /// Tells the hub of the connections that ended, oldest first, for
    /// [`ferry_files::ENDS_BUDGET`] at the most: the lock then goes to the
    /// readers of the clients that still talk.
    fn report_ends(&mut self, now: Instant) {
        let mut turn = self.ended.turn();
        while let Some((client, end)) = self.ended.next(&mut turn) {
            end.tell(&mut self.hub, client, now);
        }
    }

    /// After every hub call: run events through the inbox, report them, and
    /// wake the writers of clients with bytes to send.
    fn after(&mut self, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some(event) = self.hub.poll_event() {
                progressed = true;
                let closed = event.closed_client();
                if let Some(notice) = self.files.handle(&mut self.hub, now, event) {
                    let _ = self.notices.send(notice);
                }
                if let Some(client) = closed {
                    if let Some(writer) = self.writers.get(&client) {
                        let _ = writer.send(true);
                    }
                }
            }
            while let Some(client) = self.hub.poll_writable() {
                progressed = true;
                if self.serving == Some(client) {
                    continue;
                }
                if let Some(writer) = self.writers.get(&client) {
                    let _ = writer.send(false);
                }
            }
            self.bus.drain(&mut self.hub);
            if !progressed {
                break;
            }
        }
        // A call that stopped with work left (a room's worth of leaves)
        // asks to be called again at once: the timer thread does that,
        // taking the lock between calls so readers get their turns,
        // rather than this thread holding it for the whole room.
        if self
            .hub
            .poll_timeout()
            .is_some_and(|at| at <= Instant::now())
        {
            self.timer_wake.notify_one();
        }
    }
}

fn run(listener: TcpListener, state: Arc<State>) -> io::Result<()> {
    let timer_state = state.clone();
    let timer = thread::Builder::new()
        .name("ferry-std-timer".into())
        .spawn(move || timers(&timer_state))?;
    let mut failures = AcceptFailures::default();
    for stream in listener.incoming() {
        if state.stopping.load(Ordering::SeqCst) {
            break;
        }
        let stream = match stream {
            Ok(stream) => {
                if let Some(notice) = failures.accepted() {
                    let _ = state.lock().notices.send(notice);
                }
                stream
            }
            Err(e) => match failures.failed(&e, Instant::now()) {
                AcceptRetry::Now => continue,
                AcceptRetry::Later { notice } => {
                    if let Some(notice) = notice {
                        let _ = state.lock().notices.send(notice);
                    }
                    thread::sleep(ACCEPT_BACKOFF);
                    continue;
                }
            },
        };
        if let Err(e) = start_client(&state, stream) {
            // Out of threads or sockets: refuse this one, keep serving.
            eprintln!("ferry: cannot serve a new connection: {e}");
        }
    }
    drop(listener);
    // Writers are flushing the shutdown notices; give them a moment.
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while Instant::now() < deadline && !state.lock().writers.is_empty() {
        thread::sleep(Duration::from_millis(10));
    }
    let _ = timer.join();
    // Readers of clients that have not hung up yet still hold the state:
    // drop its notice sender here, so that whoever reads the notices sees
    // their end now that the server has stopped, as with the other
    // runtimes.
    state.lock().notices = mpsc::channel().0;
    Ok(())
}

/// Fires the hub's timers; also stops the acceptor on shutdown.
fn timers(state: &Arc<State>) {
    let mut shared = state.lock();
    loop {
        if state.stopping.load(Ordering::SeqCst) {
            drop(shared);
            wake_acceptor(state);
            return;
        }
        let now = Instant::now();
        shared.hub.handle_timeout(now);
        shared.report_ends(now);
        shared.after(now);
        let wait = if shared.ended.is_empty() {
            shared
                .hub
                .poll_timeout()
                .map_or(TIMER_TICK, |at| at.saturating_duration_since(now))
                .min(TIMER_TICK)
        } else {
            Duration::ZERO
        };
        if wait.is_zero() {
            // Work left (the hub's, or ends to tell): let the readers
            // waiting for the lock in before taking the next part.
            drop(shared);
            thread::yield_now();
            shared = state.lock();
            continue;
        }
        shared = state
            .timer_wake
            .wait_timeout(shared, wait)
            .map(|(guard, _)| guard)
            .unwrap_or_else(|p| p.into_inner().0);
    }
}

/// `accept()` blocks; a connection to ourselves unblocks it to see the stop.
fn wake_acceptor(state: &Arc<State>) {
    let mut addr = state.local_addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
}

fn start_client(state: &Arc<State>, stream: TcpStream) -> io::Result<()> {
    let peer = stream.peer_addr()?;
    // Small frames go out as they are made: chat is latency-bound.
    stream.set_nodelay(true)?;
    // A peer that never reads would hold its writer thread forever; the hub
    // has dropped it long before this fires.
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let kind = Arc::new(OnceLock::new());
    if state.tls.is_none() {
        // Without TLS there is nothing to tell apart: the hub's bytes may
        // go out from the start, as they always did.
        let _ = kind.set(None);
    }
    // One descriptor for both threads: `&TcpStream` reads and writes, so
    // the writer needs no duplicate (`try_clone`), which would make each
    // client cost two of the process's open files.
    let stream = Arc::new(stream);
    let outlet = Arc::new(Mutex::new(Outlet {
        stream: stream.clone(),
        batch: OutputBatch::with_limit(OutputBatch::SERVER_LIMIT),
        kind: kind.clone(),
        plaintext: OutputBatch::with_limit(OutputBatch::SERVER_LIMIT),
        broken: false,
    }));
    let (wake_tx, wake_rx) = mpsc::channel();
    let reader_wake = wake_tx.clone();
    let client = {
        let mut shared = state.lock();
        let now = Instant::now();
        let client = shared.hub.connect_from(now, peer.ip());
        shared.writers.insert(client, wake_tx);
        let _ = shared
            .notices
            .send(ServerNotice::Connected { client, peer });
        shared.after(now);
        client
    };
    // The writer first: without it, the reader would serve a client that
    // can never be written to. A thread that cannot start (the kernel's
    // limit on threads or on memory mappings: four per thread) must not
    // leave the client in the hub, where it would hold a place of its
    // address's quota and of max_clients forever.
    let writer_state = state.clone();
    let writer_outlet = outlet.clone();
    let started = thread::Builder::new()
        .name(format!("ferry-std-write-{}", client.0))
        .spawn(move || write_loop(&writer_state, client, &writer_outlet, wake_rx))
        .and_then(|_| {
            let reader_state = state.clone();
            thread::Builder::new()
                .name(format!("ferry-std-read-{}", client.0))
                .spawn(move || {
                    let reader = Reader {
                        state: &reader_state,
                        client,
                        peer,
                        outlet: &outlet,
                        wake_writer: &reader_wake,
                        discarded: Cell::new(0),
                    };
                    reader.run(&stream, &kind)
                })
        });
    if let Err(e) = started {
        let mut shared = state.lock();
        let now = Instant::now();
        // Dropping the writer's wake sender ends a writer that did start.
        shared.writers.remove(&client);
        shared.hub.remove(client, now);
        shared.after(now);
        return Err(e);
    }
    Ok(())
}

/// How a connection turned out to speak, set once by its reader from the
/// first bytes: `None` plain, `Some` TLS.
type ConnKind = OnceLock<Option<Arc<Tls>>>;

/// A TLS connection's transport, shared by its reader and writer.
struct Tls {
    transport: Mutex<Transport>,
    /// Signalled when the writer took records out, for a reader whose
    /// transport refused input while its output was full.
    drained: Condvar,
    /// A reader waits on `drained`. A `Condvar`'s notify is a system call
    /// whether or not anyone waits: two per round trip on every TLS
    /// connection (`strace`: a `futex` wake after each write and after
    /// each read), where a reader waits only when a peer sends without
    /// reading.
    reader_waits: AtomicBool,
}

impl Tls {
    fn new(transport: Transport) -> Tls {
        Tls {
            transport: Mutex::new(transport),
            drained: Condvar::new(),
            reader_waits: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Transport> {
        // A panic leaves the transport as a failed I/O would: the next
        // call reports the connection's end.
        self.transport.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The reader waits (holding `transport`) until the writer drains the
    /// transport's output, or [`TLS_DRAIN_WAIT`].
    fn wait_drained(&self, transport: MutexGuard<'_, Transport>) {
        if !transport.wants_write() {
            // The writer took everything since the feed was refused.
            return;
        }
        // Set under the lock that `wait_timeout` releases, so a writer
        // that takes records after the wait began sees it and wakes it.
        self.reader_waits.store(true, Ordering::SeqCst);
        let _ = self.drained.wait_timeout(transport, TLS_DRAIN_WAIT);
        self.reader_waits.store(false, Ordering::SeqCst);
    }

    /// The writer took `records` out of the transport (after releasing
    /// its lock): wakes a reader that waits for room.
    fn records_taken(&self, records: &[u8]) {
        if !records.is_empty() && self.reader_waits.load(Ordering::SeqCst) {
            self.drained.notify_all();
        }
    }
}

/// A client's sending side: its writer's, lent to its reader when idle.
struct Outlet {
    /// Shared with the reader; the socket closes when both let go.
    stream: Arc<TcpStream>,
    /// Taken from the hub (or, for TLS, records from the transport), not
    /// yet written; what a reader could not write without blocking stays
    /// here for the writer.
    batch: OutputBatch,
    /// Plain or TLS, once the reader knows.
    kind: Arc<ConnKind>,
    /// TLS only: the hub's bytes the transport has not taken yet.
    plaintext: OutputBatch,
    /// A write failed: nothing more is written, and the end waits in
    /// [`Shared::ended`] until the hub closes the client.
    broken: bool,
}

/// How [`Outlet::flush`] ended.
#[derive(Debug, PartialEq, Eq)]
enum Flushed {
    /// The hub has nothing more for the client.
    All,
    /// Not blocking, the socket was full: the rest waits in the batch.
    Full,
    /// The write failed; the hub will be told, and close the client.
    Broken,
}

impl Outlet {
    fn lock(outlet: &Mutex<Outlet>) -> MutexGuard<'_, Outlet> {
        // Whoever panicked holding it left the batch as consistent as a
        // failed write would: the next write tells.
        outlet.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes what waits and everything the hub has for `client`, a batch
    /// at a time, outside the hub's lock; with `blocking` false, only what
    /// the socket takes at once.
    fn flush(&mut self, state: &State, client: ClientId, blocking: bool) -> Flushed {
        if self.broken {
            return Flushed::Broken;
        }
        loop {
            if self.batch.is_empty() {
                let kind = self.kind.clone();
                let more = match kind.get() {
                    Some(None) => {
                        let mut shared = state.lock();
                        let more = self.batch.fill(|| shared.hub.poll_transmit(client));
                        shared.after(Instant::now());
                        more
                    }
                    Some(Some(tls)) => match self.encrypt(state, client, tls) {
                        Ok(more) => more,
                        Err(e) => {
                            self.broken = true;
                            state.lock().end(client, End::Broken(format!("TLS: {e}")));
                            return Flushed::Broken;
                        }
                    },
                    // Until the first bytes tell plain from TLS, the hub's
                    // bytes wait in the hub: sent in clear, they would break
                    // a TLS handshake. The reader flushes once it knows.
                    None => false,
                };
                if !more {
                    return Flushed::All;
                }
            }
            let written = if blocking {
                self.batch.write_once(&mut &*self.stream)
            } else {
                write_without_blocking(&self.stream, &mut self.batch)
            };
            match written {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if !blocking && e.kind() == io::ErrorKind::WouldBlock => {
                    return Flushed::Full;
                }
                Err(e) => {
                    self.broken = true;
                    let reason = format!("write failed: {e}");
                    state.lock().end(client, End::Broken(reason));
                    return Flushed::Broken;
                }
            }
        }
    }
}

impl Outlet {
    /// TLS: moves the hub's bytes for `client` into the transport and the
    /// records it makes into the batch. Returns whether the batch has
    /// something to write.
    fn encrypt(
        &mut self,
        state: &State,
        client: ClientId,
        tls: &Tls,
    ) -> Result<bool, ferry_tls::Error> {
        if self.plaintext.is_empty() {
            let mut shared = state.lock();
            self.plaintext.fill(|| shared.hub.poll_transmit(client));
            shared.after(Instant::now());
        }
        let mut transport = tls.lock();
        let mut taken = 0;
        for slice in self.plaintext.io_slices().iter() {
            let n = transport.write_plaintext(slice)?;
            taken += n;
            if n < slice.len() {
                break;
            }
        }
        self.plaintext.advance(taken);
        let mut records = Vec::new();
        transport.take_outgoing(&mut records);
        drop(transport);
        tls.records_taken(&records);
        self.batch.push(Bytes::from(records));
        Ok(!self.batch.is_empty())
    }
}

/// One write of what `batch` holds that returns `WouldBlock` rather than
/// wait for room, on a socket that is otherwise blocking.
#[cfg(unix)]
fn write_without_blocking(stream: &TcpStream, batch: &mut OutputBatch) -> io::Result<usize> {
    batch.send_without_blocking(stream)
}

/// Elsewhere the writer does all the writing.
#[cfg(not(unix))]
fn write_without_blocking(_: &TcpStream, _: &mut OutputBatch) -> io::Result<usize> {
    Err(io::ErrorKind::WouldBlock.into())
}

/// A client's receiving side.
struct Reader<'a> {
    state: &'a Arc<State>,
    client: ClientId,
    peer: SocketAddr,
    outlet: &'a Mutex<Outlet>,
    wake_writer: &'a Sender<bool>,
    /// Socket bytes read since the hub closed this client: past
    /// [`LINGER_READ_LIMIT`] the connection is dropped, not read on.
    discarded: Cell<usize>,
}

impl Reader<'_> {
    /// Reads until the client is gone; the first bytes decide plain or TLS.
    fn run(&self, mut stream: &TcpStream, kind: &ConnKind) {
        let mut buf = ReadBuffer::new();
        let read = stream.read(buf.space());
        // A client the hub turned away at connect (the per-address limit,
        // a ban) gets its ERROR in clear whatever it sent, even a
        // ClientHello: no TLS can start for it.
        let turned_away = self.state.lock().hub.is_closed(self.client);
        let decided = kind.get_or_init(|| match (&read, &self.state.tls) {
            (Ok(n), Some(server))
                if *n > 0 && !turned_away && Kind::of_first_byte(buf.space()[0]) == Kind::Tls =>
            {
                // Only the first byte decides: accept cannot fail on one.
                let transport = Transport::accept(&buf.space()[..*n], Some(server)).ok()?;
                Some(Arc::new(Tls::new(transport)))
            }
            // The writer may have decided first (see write_loop): then
            // this connection is plain whatever it sent.
            _ => None,
        });
        match (decided, read) {
            (Some(tls), Ok(n)) => {
                let first = buf.filled(n).to_vec();
                self.tls(stream, buf, tls, first);
            }
            (_, Ok(n)) if n > 0 && self.state.tls.as_ref().is_some_and(|t| t.is_required()) => {
                let mut shared = self.state.lock();
                let now = Instant::now();
                shared
                    .hub
                    .refuse_unencrypted(self.client, now, buf.filled(n));
                shared.after(now);
                drop(shared);
                self.write_back();
                // The hub ignores whatever else it sends; reading on sees
                // the end of the connection.
                self.plain(stream, buf);
            }
            (_, read) => {
                if self.input(read, &mut buf) {
                    self.plain(stream, buf);
                }
            }
        }
    }

    /// Hands one read's outcome to the hub and writes what it left for
    /// the client; false once the client is gone.
    fn input(&self, read: io::Result<usize>, buf: &mut ReadBuffer) -> bool {
        let mut shared = self.state.lock();
        let now = Instant::now();
        match read {
            Ok(0) => {
                shared.end(self.client, End::Eof);
                return false;
            }
            Err(e) => {
                let reason = format!("read failed: {e}");
                shared.end(self.client, End::Broken(reason));
                return false;
            }
            Ok(n) if self.over_linger_limit(&shared.hub, n) => return false,
            Ok(n) => {
                shared.serving = Some(self.client);
                shared.hub.handle_input(self.client, now, buf.filled(n));
                shared.after(now);
                shared.serving = None;
            }
        }
        drop(shared);
        self.write_back();
        true
    }

    /// What the input left for this client goes out from here if the
    /// writer is idle and the socket has room; otherwise the writer is
    /// woken for it. Either way nothing waits without someone to write it.
    fn write_back(&self) {
        let written = match self.outlet.try_lock() {
            Ok(mut outlet) => outlet.flush(self.state, self.client, false),
            Err(_) => Flushed::Full,
        };
        if written == Flushed::Full {
            let _ = self.wake_writer.send(false);
        }
    }

    fn plain(&self, mut stream: &TcpStream, mut buf: ReadBuffer) {
        loop {
            let read = stream.read(buf.space());
            if !self.input(read, &mut buf) {
                self.drop_if_flooding(stream);
                return;
            }
        }
    }

    /// A client the hub closed that went on sending gets a reset when its
    /// socket closes, not a FIN: a FIN left its writes hanging on a full
    /// window for as long as the kernel keeps the closed socket (a minute
    /// on Linux), as `tests/linger.rs` saw one run in twenty-five.
    fn reset_if_sending(&self, stream: &TcpStream) {
        if self.discarded.get() > 0 {
            let _ = socket2::SockRef::from(stream).set_linger(Some(std::time::Duration::ZERO));
        }
    }

    /// Counts `n` more bytes read; true once the hub has closed this
    /// client and it sent more than [`LINGER_READ_LIMIT`] since. After the
    /// close its input is read only to see its end; a peer that floods
    /// instead had this thread read and discard tens of MiB for the whole
    /// linger (as `ferry_tls::link` found for the event-loop servers).
    fn over_linger_limit(&self, hub: &Hub, n: usize) -> bool {
        if !hub.is_closed(self.client) {
            return false;
        }
        let discarded = self.discarded.get().saturating_add(n);
        self.discarded.set(discarded);
        discarded > LINGER_READ_LIMIT
    }

    /// Drops a connection that went over the linger's read limit: both
    /// directions shut (the peer sees a reset), so its writer finishes at
    /// once too. Its last frames had their chance.
    fn drop_if_flooding(&self, stream: &TcpStream) {
        self.reset_if_sending(stream);
        if self.discarded.get() > LINGER_READ_LIMIT {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// The TLS read path: socket bytes into the transport, its plaintext
    /// to the hub. `unfed` starts with the bytes the first read got.
    fn tls(&self, mut stream: &TcpStream, mut buf: ReadBuffer, tls: &Tls, unfed: Vec<u8>) {
        // Taken from the front as the transport takes it, without moving
        // the rest.
        let mut unfed = BytesMut::from(&unfed[..]);
        loop {
            if unfed.is_empty() {
                match stream.read(buf.space()) {
                    Ok(0) => {
                        let ended = tls.lock().feed_eof();
                        if let Err(e) = ended {
                            return self.tls_failed(stream, tls, &e);
                        }
                        // What came before the end still reaches the hub.
                        self.tls_plaintext(tls, buf.space());
                        self.state.lock().end(self.client, End::Eof);
                        return;
                    }
                    Ok(n) if self.over_linger_limit(&self.state.lock().hub, n) => {
                        self.drop_if_flooding(stream);
                        return;
                    }
                    Ok(n) => unfed.extend_from_slice(buf.filled(n)),
                    Err(e) => {
                        let _ = self.input(Err(e), &mut buf);
                        return;
                    }
                }
            }
            let fed = tls.lock().feed(&unfed);
            let taken = match fed {
                Ok(taken) => taken,
                Err(e) => return self.tls_failed(stream, tls, &e),
            };
            unfed.advance(taken);
            self.tls_plaintext(tls, buf.space());
            // The handshake's answers, and what the hub had been holding
            // until the handshake ended, go out now.
            self.write_back();
            let transport = tls.lock();
            if transport.peer_closed() {
                drop(transport);
                self.state.lock().end(self.client, End::Eof);
                return;
            }
            if taken == 0 && !unfed.is_empty() {
                // Its output is full: read no more until the writer drains
                // it, so a peer that sends without reading is held to a
                // record or two.
                drop(transport);
                let _ = self.wake_writer.send(false);
                tls.wait_drained(tls.lock());
            }
        }
    }

    /// Moves the transport's plaintext to the hub.
    fn tls_plaintext(&self, tls: &Tls, buf: &mut [u8]) {
        loop {
            // Only misuse fails here; the next feed reports it.
            let n = tls.lock().read_plaintext(buf).unwrap_or_default();
            if n == 0 {
                return;
            }
            let mut shared = self.state.lock();
            let now = Instant::now();
            shared.serving = Some(self.client);
            shared.hub.handle_input(self.client, now, &buf[..n]);
            shared.after(now);
            shared.serving = None;
        }
    }

    /// Ends a connection whose TLS failed: the alert for the peer goes out
    /// if the socket takes it, and the hub learns why, with the address.
    fn tls_failed(&self, stream: &TcpStream, tls: &Tls, error: &ferry_tls::Error) {
        let mut alert = Vec::new();
        tls.lock().take_outgoing(&mut alert);
        // Only if the socket takes it at once: a peer that sends garbage
        // and reads nothing must not hold this thread for WRITE_TIMEOUT.
        let mut batch = OutputBatch::new();
        batch.push(Bytes::from(alert));
        let _ = write_without_blocking(stream, &mut batch);
        let mut shared = self.state.lock();
        let now = Instant::now();
        let reason = format!("TLS with {}: {error}", self.peer);
        shared.hub.handle_broken(self.client, now, &reason);
        shared.after(now);
    }
}

fn write_loop(
    state: &Arc<State>,
    client: ClientId,
    outlet: &Mutex<Outlet>,
    wake: mpsc::Receiver<bool>,
) {
    loop {
        // A failed write waits, as any wake does, for the hub to close the
        // client (once the timer thread told it): the hub then ends the
        // connection here, as it ends every other.
        Outlet::lock(outlet).flush(state, client, true);
        let mut closing = match wake.recv() {
            Ok(finish) => finish,
            Err(_) => break,
        };
        // Drain pending wakes; one pass writes everything.
        while let Ok(finish) = wake.try_recv() {
            closing |= finish;
        }
        if closing {
            // A client closed before its first byte (turned away at
            // connect, or silent until the handshake timeout) gets the
            // hub's last words in clear: there is no TLS to put them in.
            let _ = Outlet::lock(outlet).kind.set(None);
            // One last pass flushes the final frames (ERROR, REFUSE...).
            Outlet::lock(outlet).flush(state, client, true);
            break;
        }
    }
    let outlet = Outlet::lock(outlet);
    if let Some(Some(tls)) = outlet.kind.get().cloned() {
        // close_notify tells the client the end is deliberate, not a cut.
        let mut records = Vec::new();
        {
            let mut transport = tls.lock();
            transport.close();
            transport.take_outgoing(&mut records);
        }
        let _ = (&*outlet.stream).write_all(&records);
    }
    let _ = (&*outlet.stream).flush();
    let _ = outlet.stream.shutdown(Shutdown::Both);
    drop(outlet);
    let mut shared = state.lock();
    shared.writers.remove(&client);
    ferry_core::shrink_if_sparse(&mut shared.writers);
    shared.hub.remove(client, Instant::now());
    shared.after(Instant::now());
}
