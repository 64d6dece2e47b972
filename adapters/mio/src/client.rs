//! The client: one thread, one `mio::Poll`, one [`Connection`].
//!
//! With TLS, the handshake runs to the end on a blocking socket (the
//! server verified) before the connection is even made, so no ferry byte,
//! the token least of all, can reach a server that was not checked. The
//! socket then joins the loop, which drives the transport between it and
//! the connection.

use crate::sock::{
    commander, disk_wake, drained_by, read_some, set_write_interest, write_out, Flush, ReadOutcome,
    LINGER, READ_BUF,
};
use ferry_core::{ClientConfig, Code, Connection, Event};
use ferry_files::{
    run_command, ClientCommand, ClientHandle, ClientNotice, FileTransfers, Inbox, OfferPolicy,
    OutputBatch,
};
use ferry_tls::{connect, write_tls, Broke, ClientTls, Connected, Transport};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);

/// See [`crate::spawn_client`].
pub(crate) fn spawn(
    addr: SocketAddr,
    config: ClientConfig,
    accept_files: Option<Inbox>,
    connect_timeout: Duration,
    tls: Option<ClientTls>,
) -> io::Result<ClientHandle> {
    let started = Instant::now();
    let mut stream = std::net::TcpStream::connect_timeout(&addr, connect_timeout)?;
    let (tls, identity) = match &tls {
        Some(settings) => {
            // Blocking, bounded by the same deadline as the welcome: the
            // loop only ever sees a verified server.
            let deadline = started + connect_timeout;
            let Connected {
                transport,
                unfed,
                identity,
                ..
            } = connect(&mut stream, settings, addr.port(), deadline)?;
            let state = TlsState {
                transport,
                unfed,
                plaintext: OutputBatch::new(),
                stalled: false,
                closed: false,
            };
            (Some(state), identity)
        }
        None => (None, None),
    };
    stream.set_nonblocking(true)?;
    // Frames are written whole; waiting to coalesce them only adds latency.
    stream.set_nodelay(true)?;
    let mut stream = TcpStream::from_std(stream);
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut stream, SOCKET, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (command_tx, commands) = mpsc::channel();
    let (notices, notice_rx) = mpsc::channel();
    let (welcomed_tx, welcomed) = mpsc::channel();
    let policy = OfferPolicy::for_inbox(accept_files.as_ref());
    let client = Client {
        poll,
        stream,
        conn: Connection::client(config, Instant::now()),
        files: FileTransfers::new(accept_files, policy).on_disk_done(disk_wake(&waker)),
        _waker: waker.clone(),
        commands,
        notices,
        buf: vec![0; READ_BUF],
        pending: OutputBatch::new(),
        blocked: false,
        want_write: false,
        eof: false,
        broken: false,
        shut: false,
        welcome_by: started + connect_timeout,
        connect_timeout,
        close_by: None,
        welcomed: Some(welcomed_tx),
        tls,
    };
    let thread = thread::Builder::new()
        .name("ferry-mio-client".into())
        .spawn(move || client.run())?;
    // Like every runtime's client: return once in the room, or say why not.
    let grace = Duration::from_millis(100);
    match welcomed.recv_timeout(connect_timeout.saturating_sub(started.elapsed()) + grace) {
        Ok(Ok(())) => Ok(
            ClientHandle::new(commander(command_tx, waker), notice_rx, thread)
                .with_server_identity(identity),
        ),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no answer from the server in time",
        )),
    }
}

/// A TLS connection's transport and what waits around it.
struct TlsState {
    transport: Transport,
    /// Socket bytes the transport has not taken yet (first: what the
    /// handshake's last read brought beyond the handshake).
    unfed: Vec<u8>,
    /// The connection's bytes the transport has not taken yet.
    plaintext: OutputBatch,
    /// The transport refused input until its output is written: the socket
    /// is not read until WRITABLE makes room.
    stalled: bool,
    /// close_notify was queued.
    closed: bool,
}

struct Client {
    poll: Poll,
    /// Keeps the waker's descriptor open while the loop runs (see
    /// [`commander`]).
    _waker: Arc<Waker>,
    stream: TcpStream,
    conn: Connection,
    files: FileTransfers,
    commands: Receiver<ClientCommand>,
    notices: Sender<ClientNotice>,
    buf: Vec<u8>,
    /// Output taken from the core and not yet written.
    pending: OutputBatch,
    /// The last write met a full socket; WRITABLE will say when to go on.
    blocked: bool,
    /// WRITABLE interest is registered.
    want_write: bool,
    /// The server's end of stream was seen.
    eof: bool,
    /// The socket failed: nothing more can be written.
    broken: bool,
    /// Our side was shut down (FIN sent) after the last bytes.
    shut: bool,
    /// The handshake must be over by then.
    welcome_by: Instant,
    connect_timeout: Duration,
    /// Once closed: give up flushing and waiting for the server's FIN then.
    close_by: Option<Instant>,
    /// Told once whether the handshake succeeded.
    welcomed: Option<Sender<io::Result<()>>>,
    /// Through TLS, when given.
    tls: Option<TlsState>,
}

impl Client {
    fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(16);
        let mut now = Instant::now();
        if self.tls.is_some() {
            // The handshake's last read may have brought the server's
            // first bytes: they come before anything the socket reads.
            self.read(false, now);
        }
        loop {
            self.settle(now);
            if self.conn.is_closed() {
                let close_by = *self.close_by.get_or_insert(now + LINGER);
                if let Some(tls) = &mut self.tls {
                    if !tls.closed && !self.blocked && !self.broken {
                        // close_notify: the server sees a deliberate end.
                        tls.closed = true;
                        tls.transport.close();
                        self.flush(now);
                    }
                }
                if !self.blocked && self.pending.is_empty() && !self.shut {
                    self.shut = true;
                    let _ = self.stream.shutdown(Shutdown::Write);
                }
                // Waiting for the server's FIN avoids a reset that could
                // destroy our last frame (BYE) before the server reads it.
                if self.broken || (self.shut && self.eof) || now >= close_by {
                    return Ok(());
                }
            } else if !self.conn.is_open() && now >= self.welcome_by {
                let error = format!(
                    "not welcomed within {} ms",
                    self.connect_timeout.as_millis()
                );
                self.notify(ClientNotice::Error(error.clone()));
                return Err(io::Error::new(io::ErrorKind::TimedOut, error));
            }
            let deadline = [
                self.conn.poll_timeout(),
                self.files.poll_timeout(),
                (!self.conn.is_open()).then_some(self.welcome_by),
                self.close_by,
            ]
            .into_iter()
            .flatten()
            .min();
            let timeout = deadline.map(|at| at.saturating_duration_since(now));
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    SOCKET => {
                        let peer_closed = event.is_read_closed() || event.is_error();
                        if event.is_readable() || peer_closed {
                            self.read(peer_closed, now);
                        }
                        if event.is_writable() || event.is_write_closed() {
                            self.blocked = false;
                            self.resume(now);
                        }
                    }
                    WAKER => {
                        self.take_commands(now);
                        self.poll_disk(now);
                    }
                    _ => {}
                }
            }
            if self.conn.poll_timeout().is_some_and(|at| at <= now) {
                self.conn.handle_timeout(now);
            }
            if self.files.poll_timeout().is_some_and(|at| at <= now) {
                for report in self.files.handle_timeout(&mut self.conn, now) {
                    self.notify(ClientNotice::File(report));
                }
            }
        }
    }

    fn notify(&mut self, notice: ClientNotice) {
        match &notice {
            ClientNotice::Event(Event::Welcomed { .. }) => {
                if let Some(tx) = self.welcomed.take() {
                    let _ = tx.send(Ok(()));
                }
            }
            ClientNotice::Event(Event::Closed { code, reason, .. }) => {
                if let Some(tx) = self.welcomed.take() {
                    let kind = if *code == Code::CONNECTION_LOST {
                        io::ErrorKind::ConnectionAborted
                    } else {
                        io::ErrorKind::PermissionDenied
                    };
                    let _ = tx.send(Err(io::Error::new(kind, format!("{code}: {reason}"))));
                }
            }
            ClientNotice::Error(error) => {
                if let Some(tx) = self.welcomed.take() {
                    let _ = tx.send(Err(io::Error::new(io::ErrorKind::TimedOut, error.clone())));
                }
            }
            _ => {}
        }
        // Nobody listening is fine: the connection still closes properly.
        let _ = self.notices.send(notice);
    }

    /// Reads until the socket would block, draining the connection after
    /// every read, as its contract asks.
    fn read(&mut self, peer_closed: bool, now: Instant) {
        if self.tls.is_some() {
            return self.read_tls(peer_closed, now);
        }
        while !self.eof {
            match read_some(&mut self.stream, &mut self.buf) {
                ReadOutcome::Data(n) => {
                    self.conn.handle_input(now, &self.buf[..n]);
                    self.settle(now);
                    if drained_by(n, self.buf.len(), peer_closed) {
                        return;
                    }
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
    /// the socket takes no more; WRITABLE resumes it ([`Client::resume`]).
    fn read_tls(&mut self, peer_closed: bool, now: Instant) {
        let mut drained = false;
        let mut idle_rounds = 0;
        loop {
            let Some(tls) = &mut self.tls else { return };
            if self.eof || tls.stalled {
                return;
            }
            if tls.unfed.is_empty() {
                if drained {
                    return;
                }
                match read_some(&mut self.stream, &mut self.buf) {
                    ReadOutcome::Data(n) => {
                        drained = drained_by(n, self.buf.len(), peer_closed);
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
            self.settle(now);
            let Some(tls) = &mut self.tls else { return };
            if tls.transport.peer_closed() && !self.eof {
                self.eof = true;
                self.conn.handle_eof(now);
                return;
            }
            if stuck {
                idle_rounds += 1;
                // Output full and the socket takes no more: read on after
                // WRITABLE. Refusing for any other reason is not spun on.
                if self.blocked || idle_rounds > 1 {
                    tls.stalled = true;
                    return;
                }
            } else {
                idle_rounds = 0;
            }
        }
    }

    /// A TLS read that stopped for room in the socket goes on once there is.
    fn resume(&mut self, now: Instant) {
        self.flush(now);
        if let Some(tls) = &mut self.tls {
            if tls.stalled && !self.blocked {
                tls.stalled = false;
                self.read(false, now);
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
                let _ = io::Write::write(&mut self.stream, &alert);
            }
            tls.closed = true;
        }
        self.eof = true;
        self.broken = true;
        self.pending.clear();
        self.conn.handle_broken(now, &format!("TLS: {error}"));
    }

    fn take_commands(&mut self, now: Instant) {
        loop {
            match self.commands.try_recv() {
                Ok(command) => self.command(command, now),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    // The handle is gone: nobody will ever say goodbye.
                    self.conn.bye(now);
                    return;
                }
            }
        }
    }

    fn poll_disk(&mut self, now: Instant) {
        for report in self.files.poll_disk(&mut self.conn, now) {
            self.notify(ClientNotice::File(report));
        }
    }

    fn command(&mut self, command: ClientCommand, now: Instant) {
        match run_command(&mut self.conn, &mut self.files, now, command) {
            Ok(Some(report)) => self.notify(ClientNotice::File(report)),
            Ok(None) => {}
            Err(error) => self.notify(ClientNotice::Error(error)),
        }
    }

    /// Drains the connection: events (file I/O and notices), then output,
    /// until neither produces anything new.
    fn settle(&mut self, now: Instant) {
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
            self.flush(now);
            // Writing may have let a transfer ask for more file data.
            if !self.conn.has_events() {
                return;
            }
        }
    }

    fn flush(&mut self, now: Instant) {
        if self.blocked || self.broken || self.shut {
            return;
        }
        let conn = &mut self.conn;
        let result = match &mut self.tls {
            None => write_out(&mut self.stream, &mut self.pending, || conn.poll_transmit()),
            Some(tls) => match write_tls(
                &mut self.stream,
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
        let result = result.and_then(|flush| {
            self.blocked = flush == Flush::Blocked;
            set_write_interest(
                self.poll.registry(),
                &mut self.stream,
                SOCKET,
                &mut self.want_write,
                self.blocked,
            )
        });
        if let Err(e) = result {
            self.broken = true;
            self.pending.clear();
            self.conn.handle_broken(now, &format!("write failed: {e}"));
        }
    }
}
