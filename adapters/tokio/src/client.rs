//! The client: one task owns the [`Connection`] and its socket.
//!
//! The task polls the socket with its own waker: a reply from the server
//! wakes it once, and it reads, hands the bytes to the connection and
//! writes the answer in that same wake-up. With TLS, the handshake has run
//! to the end (the server verified) before the task starts, so no ferry
//! byte, the token least of all, can reach a server that was not checked.

use crate::bell::Doorbell;
use crate::sock::{shut_write, Polled, LINGER, READ_BUF};
use ferry_core::{ClientConfig, Code, Connection, Event};
use ferry_files::{
    read_some, run_command, write_out, ClientCommand, ClientNotice, FileTransfers, Flush, Inbox,
    OfferPolicy, OutputBatch, ReadOutcome,
};
use ferry_tls::{write_tls, Broke, Transport};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Sleep;

/// Bytes read per turn: a file arriving faster than the task handles it
/// must not keep the task from its timers and commands, nor the runtime
/// from its other tasks.
const READ_BUDGET: usize = 4 * READ_BUF;

/// Turns one poll may run before the task hands the thread back.
const TURNS_PER_POLL: usize = 8;

/// Runs a ferry client on a connected `stream` as `config` says until the
/// connection is over and its last bytes are written (or a second after
/// it closed, for a server that stopped reading), then returns.
///
/// Commands come in on `commands` and are carried out once the server has
/// let the client in ([`ClientCommand::Bye`] leaves; so does dropping every
/// sender). Everything the connection reports goes out on `notices`: files
/// as [`ClientNotice::File`], everything else (chat, membership,
/// [`Event::Closed`] last) as [`ClientNotice::Event`], and commands that
/// could not be carried out as [`ClientNotice::Error`]. Offered files are
/// accepted into `accept_files` when it is given (or held for the user's
/// answer, if it [asks first](Inbox::ask_first)), and declined otherwise;
/// they are written on ferry-files' writer threads, never on the runtime's.
///
/// It runs as one task on the runtime it is awaited on, current-thread or
/// multi-thread, which must have I/O and time enabled.
///
/// # Errors
///
/// The server did not let the client in within the configured handshake
/// timeout: [`TimedOut`](io::ErrorKind::TimedOut). Any other end (a
/// refusal, a broken link) ends with [`Event::Closed`] and `Ok(())`.
pub async fn run_client(
    stream: TcpStream,
    config: ClientConfig,
    accept_files: Option<Inbox>,
    commands: UnboundedReceiver<ClientCommand>,
    notices: mpsc::Sender<ClientNotice>,
) -> io::Result<()> {
    drive(stream, None, config, accept_files, commands, notices, None).await
}

/// A TLS connection's transport and what waits around it.
pub(crate) struct TlsState {
    transport: Transport,
    /// Socket bytes the transport has not taken yet (first: what the
    /// handshake's last read brought beyond the handshake).
    unfed: Vec<u8>,
    /// The connection's bytes the transport has not taken yet.
    plaintext: OutputBatch,
    /// The transport refused input until its output is written: the socket
    /// is not read until there is room.
    stalled: bool,
    /// close_notify was queued.
    closed: bool,
}

impl TlsState {
    /// A finished handshake's transport and the bytes read beyond it.
    pub(crate) fn new(transport: Transport, unfed: Vec<u8>) -> TlsState {
        TlsState {
            transport,
            unfed,
            plaintext: OutputBatch::new(),
            stalled: false,
            closed: false,
        }
    }
}

/// [`run_client`], through `tls` when given, telling `welcomed` once
/// whether the server let the client in.
pub(crate) async fn drive(
    stream: TcpStream,
    tls: Option<TlsState>,
    config: ClientConfig,
    accept_files: Option<Inbox>,
    commands: UnboundedReceiver<ClientCommand>,
    notices: mpsc::Sender<ClientNotice>,
    welcomed: Option<Sender<io::Result<()>>>,
) -> io::Result<()> {
    // Frames are written whole; waiting to coalesce them only adds latency.
    stream.set_nodelay(true)?;
    let bell = Doorbell::new();
    let policy = OfferPolicy::for_inbox(accept_files.as_ref());
    let mut client = Client {
        stream,
        conn: Connection::client(config, Instant::now()),
        files: FileTransfers::new(accept_files, policy).on_disk_done(bell.disk_wake()),
        bell,
        commands,
        commands_open: true,
        notices,
        buf: vec![0; READ_BUF],
        pending: OutputBatch::new(),
        blocked: false,
        unread: false,
        eof: false,
        broken: false,
        shut: false,
        close_by: None,
        welcomed,
        let_in: false,
        timed_out: false,
        tls,
        alarm: Box::pin(tokio::time::sleep_until(Instant::now().into())),
        alarm_at: None,
    };
    // Its own budgets, as the server's (see `crate::server`).
    tokio::task::unconstrained(std::future::poll_fn(|cx| client.poll(cx))).await
}

struct Client {
    stream: TcpStream,
    conn: Connection,
    files: FileTransfers,
    /// Rung by file writers.
    bell: Arc<Doorbell>,
    commands: UnboundedReceiver<ClientCommand>,
    /// Some sender of `commands` is left.
    commands_open: bool,
    notices: Sender<ClientNotice>,
    buf: Vec<u8>,
    /// Output taken from the core and not yet written.
    pending: OutputBatch,
    /// The last write met a full socket; the waker says when to go on.
    blocked: bool,
    /// The last turn's read budget ran out with input left.
    unread: bool,
    /// The server's end of stream was seen.
    eof: bool,
    /// The socket failed: nothing more can be written.
    broken: bool,
    /// Our side was shut down (FIN sent) after the last bytes.
    shut: bool,
    /// Once closed: give up flushing and waiting for the server's FIN then.
    close_by: Option<Instant>,
    /// Told once whether the handshake succeeded.
    welcomed: Option<Sender<io::Result<()>>>,
    /// The server let the client in at some point.
    let_in: bool,
    /// The handshake ran out of time before the server let us in.
    timed_out: bool,
    /// Through TLS, when given.
    tls: Option<TlsState>,
    /// Wakes the task for the next deadline.
    alarm: Pin<Box<Sleep>>,
    /// What `alarm` is set to, if armed.
    alarm_at: Option<Instant>,
}

impl Client {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        for _ in 0..TURNS_PER_POLL {
            let now = Instant::now();
            if let Some(done) = self.turn(cx, now) {
                return Poll::Ready(done);
            }
            if self.unread {
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

    /// Everything that is ready, once; `Some` when the client is done.
    fn turn(&mut self, cx: &mut Context<'_>, now: Instant) -> Option<io::Result<()>> {
        let rang = self.bell.take(&mut Vec::new());
        if rang.disk {
            for report in self.files.poll_disk(&mut self.conn, now) {
                self.notify(ClientNotice::File(report));
            }
        }
        if self.blocked {
            // Woken, perhaps for room: the rest of the output goes on.
            self.blocked = false;
            self.flush(cx, now);
            if let Some(tls) = &mut self.tls {
                if tls.stalled && !self.blocked {
                    tls.stalled = false;
                }
            }
        }
        self.unread = false;
        self.read(cx, now);
        if self.conn.poll_timeout().is_some_and(|at| at <= now) {
            self.conn.handle_timeout(now);
        }
        if self.files.poll_timeout().is_some_and(|at| at <= now) {
            for report in self.files.handle_timeout(&mut self.conn, now) {
                self.notify(ClientNotice::File(report));
            }
        }
        self.settle(cx, now);
        // After the read: a welcome that just came in lets the commands
        // that waited for it go now.
        if self.conn.is_open() {
            self.take_commands(cx, now);
            self.settle(cx, now);
        }
        if !self.conn.is_closed() {
            return None;
        }
        let close_by = *self.close_by.get_or_insert(now + LINGER);
        if let Some(tls) = &mut self.tls {
            if !tls.closed && !self.blocked && !self.broken {
                // close_notify: the server sees a deliberate end.
                tls.closed = true;
                tls.transport.close();
                self.flush(cx, now);
            }
        }
        if !self.blocked && self.pending.is_empty() && !self.shut {
            self.shut = true;
            shut_write(&mut self.stream, cx);
        }
        // Waiting for the server's FIN avoids a reset that could destroy
        // our last frame (BYE) before the server reads it.
        if self.broken || (self.shut && self.eof) || now >= close_by {
            return Some(if self.timed_out {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the server did not let us in in time",
                ))
            } else {
                Ok(())
            });
        }
        None
    }

    /// Sets the alarm to the next deadline; true if it is already due.
    fn alarm_due(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = [
            self.conn.poll_timeout(),
            self.files.poll_timeout(),
            self.close_by,
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(at) = deadline else {
            self.alarm_at = None;
            return false;
        };
        if self.alarm_at != Some(at) {
            self.alarm.as_mut().reset(at.into());
            self.alarm_at = Some(at);
        }
        self.alarm.as_mut().poll(cx).is_ready()
    }

    fn notify(&mut self, notice: ClientNotice) {
        match &notice {
            ClientNotice::Event(Event::Welcomed { .. }) => {
                self.let_in = true;
                if let Some(tx) = self.welcomed.take() {
                    let _ = tx.send(Ok(()));
                }
            }
            ClientNotice::Event(Event::Closed {
                code,
                reason,
                by_peer,
            }) => {
                let kind = if *code == Code::HANDSHAKE_TIMEOUT && !by_peer {
                    io::ErrorKind::TimedOut
                } else if *code == Code::CONNECTION_LOST {
                    io::ErrorKind::ConnectionAborted
                } else {
                    io::ErrorKind::PermissionDenied
                };
                self.timed_out = !self.let_in && kind == io::ErrorKind::TimedOut;
                if let Some(tx) = self.welcomed.take() {
                    let _ = tx.send(Err(io::Error::new(kind, format!("{code}: {reason}"))));
                }
            }
            _ => {}
        }
        // Nobody listening is fine: the connection still closes properly.
        let _ = self.notices.send(notice);
    }

    /// Reads until the socket would block or this turn's budget is spent,
    /// draining the connection after every read, as its contract asks.
    fn read(&mut self, cx: &mut Context<'_>, now: Instant) {
        if self.tls.is_some() {
            return self.read_tls(cx, now);
        }
        let mut budget = READ_BUDGET;
        while !self.eof {
            if budget == 0 {
                self.unread = true;
                return;
            }
            match read_some(&mut Polled::new(&mut self.stream, cx), &mut self.buf) {
                ReadOutcome::Data(n) => {
                    budget = budget.saturating_sub(n);
                    self.conn.handle_input(now, &self.buf[..n]);
                    self.settle(cx, now);
                }
                ReadOutcome::WouldBlock => return,
                ReadOutcome::Eof => {
                    self.eof = true;
                    self.conn.handle_eof(now);
                }
                ReadOutcome::Failed(e) => {
                    self.eof = true;
                    self.broken = true;
                    self.conn.handle_broken(now, &format!("read failed: {e}"));
                }
            }
        }
    }

    /// The TLS read path: socket bytes into the transport, its plaintext
    /// to the connection. Stops while the transport's output is full and
    /// the socket takes no more, until a wake-up finds room again.
    fn read_tls(&mut self, cx: &mut Context<'_>, now: Instant) {
        let mut budget = READ_BUDGET;
        let mut idle_rounds = 0;
        loop {
            let Some(tls) = &mut self.tls else { return };
            if self.eof || tls.stalled {
                return;
            }
            if tls.unfed.is_empty() {
                if budget == 0 {
                    self.unread = true;
                    return;
                }
                match read_some(&mut Polled::new(&mut self.stream, cx), &mut self.buf) {
                    ReadOutcome::Data(n) => {
                        budget = budget.saturating_sub(n);
                        tls.unfed.extend_from_slice(&self.buf[..n]);
                    }
                    ReadOutcome::WouldBlock => return,
                    ReadOutcome::Eof => {
                        self.eof = true;
                        match tls.transport.feed_eof() {
                            Ok(()) => {
                                // What came before the end still counts.
                                self.deliver(now);
                                self.conn.handle_eof(now);
                            }
                            Err(e) => self.tls_failed(now, &e),
                        }
                        return;
                    }
                    ReadOutcome::Failed(e) => {
                        self.eof = true;
                        self.broken = true;
                        self.conn.handle_broken(now, &format!("read failed: {e}"));
                        return;
                    }
                }
            }
            let taken = match tls.transport.feed(&tls.unfed) {
                Ok(taken) => taken,
                Err(e) => return self.tls_failed(now, &e),
            };
            tls.unfed.drain(..taken);
            let stuck = taken == 0 && !tls.unfed.is_empty();
            self.deliver(now);
            // Answers to the server's TLS messages go out with the rest.
            self.settle(cx, now);
            let Some(tls) = &mut self.tls else { return };
            if tls.transport.peer_closed() && !self.eof {
                self.eof = true;
                self.conn.handle_eof(now);
                return;
            }
            if stuck {
                idle_rounds += 1;
                // Output full and the socket takes no more: read on once
                // there is room. Refusing for any other reason is not spun
                // on.
                if self.blocked || idle_rounds > 1 {
                    tls.stalled = true;
                    return;
                }
            } else {
                idle_rounds = 0;
            }
        }
    }

    /// Moves the transport's plaintext to the connection.
    fn deliver(&mut self, now: Instant) {
        while let Some(tls) = &mut self.tls {
            // Only misuse fails here; the next feed reports it.
            let n = tls.transport.read_plaintext(&mut self.buf).unwrap_or(0);
            if n == 0 {
                return;
            }
            self.conn.handle_input(now, &self.buf[..n]);
        }
    }

    /// The TLS layer failed: the alert goes out if the socket takes it at
    /// once, and the connection ends with ferry-tls's one line.
    fn tls_failed(&mut self, now: Instant, error: &ferry_tls::Error) {
        if let Some(tls) = &mut self.tls {
            let mut alert = Vec::new();
            tls.transport.take_outgoing(&mut alert);
            if !alert.is_empty() {
                let _ = self.stream.try_write(&alert);
            }
            tls.closed = true;
        }
        self.eof = true;
        self.broken = true;
        self.pending.clear();
        self.conn.handle_broken(now, &format!("TLS: {error}"));
    }

    fn take_commands(&mut self, cx: &mut Context<'_>, now: Instant) {
        while self.commands_open {
            match self.commands.poll_recv(cx) {
                Poll::Ready(Some(command)) => {
                    match run_command(&mut self.conn, &mut self.files, now, command) {
                        Ok(Some(report)) => self.notify(ClientNotice::File(report)),
                        Ok(None) => {}
                        Err(error) => self.notify(ClientNotice::Error(error)),
                    }
                }
                Poll::Ready(None) => {
                    // The handle is gone: nobody will ever say goodbye.
                    self.commands_open = false;
                    self.conn.bye(now);
                }
                Poll::Pending => return,
            }
        }
    }

    /// Drains the connection: events (file I/O and notices), then output,
    /// until neither produces anything new.
    fn settle(&mut self, cx: &mut Context<'_>, now: Instant) {
        loop {
            while let Some(event) = self.conn.poll_event() {
                let notice = match event {
                    Event::Transfer(t) => self
                        .files
                        .handle(&mut self.conn, now, t)
                        .map(ClientNotice::File),
                    other => Some(ClientNotice::Event(other)),
                };
                if let Some(notice) = notice {
                    self.notify(notice);
                }
            }
            self.flush(cx, now);
            // Writing may have let a transfer ask for more file data.
            if !self.conn.has_events() {
                return;
            }
        }
    }

    fn flush(&mut self, cx: &mut Context<'_>, now: Instant) {
        if self.blocked || self.broken || self.shut {
            return;
        }
        let conn = &mut self.conn;
        let mut socket = Polled::new(&mut self.stream, cx);
        let result = match &mut self.tls {
            None => write_out(&mut socket, &mut self.pending, || conn.poll_transmit()),
            Some(tls) => match write_tls(
                &mut socket,
                &mut tls.transport,
                &mut tls.plaintext,
                tls.closed,
                || conn.poll_transmit(),
            ) {
                Ok(flush) => Ok(flush),
                Err(Broke::Io(e)) => Err(e),
                Err(Broke::Tls(e)) => return self.tls_failed(now, &e),
                Err(other) => Err(io::Error::other(other)),
            },
        };
        match result {
            Ok(flush) => self.blocked = flush == Flush::Blocked,
            Err(e) => {
                self.broken = true;
                self.pending.clear();
                self.conn.handle_broken(now, &format!("write failed: {e}"));
            }
        }
    }
}
