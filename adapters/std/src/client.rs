//! A client on blocking sockets: one thread reads the socket, one drives
//! the connection (commands, timers, writes, files).
//!
//! With TLS, the handshake runs to the end (the server verified) before
//! the connection is even made, so no ferry byte, the token least of all,
//! can reach a server that was not checked. The reader then feeds the
//! transport and passes plaintext on; the driver encrypts under the same
//! lock, but writes to the socket outside it.

use ferry_core::{ClientConfig, Code, Connection, Event};
use ferry_files::{
    run_command, ClientCommand, ClientHandle, ClientNotice, FileTransfers, Inbox, OfferPolicy,
    OutputBatch, ReadBuffer, Wake,
};
pub use ferry_tls::ClientTls;
use ferry_tls::{connect, io_error as tls_error, Connected, Transport};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// What the driver thread waits for.
enum Input {
    Bytes(Vec<u8>),
    Eof,
    /// Reading failed: why.
    Broken(String),
    Command(ClientCommand),
    /// A file writer finished something.
    Disk,
    /// TLS: the transport has records to send that no plaintext made
    /// (an answer to the server's own TLS messages).
    Records,
}

/// A TLS connection's transport, shared by the reader and the driver.
type SharedTransport = Arc<Mutex<Transport>>;

fn lock(transport: &Mutex<Transport>) -> MutexGuard<'_, Transport> {
    // A panic leaves it as a failed I/O would: the next call says so.
    transport.lock().unwrap_or_else(|p| p.into_inner())
}

/// Connects to `addr` and runs the client on threads of its own. Received
/// files go into `accept_files` (offers are declined without it, and wait
/// for the user's answer if it asks first: see [`Inbox::ask_first`]). Fails if
/// the connection or the handshake takes longer than `timeout`, or if the
/// server refuses (the error says why). In clear text; see
/// [`spawn_client_tls`].
pub fn spawn_client(
    addr: SocketAddr,
    config: ClientConfig,
    accept_files: Option<Inbox>,
    timeout: Duration,
) -> io::Result<ClientHandle> {
    spawn_client_tls(addr, config, accept_files, timeout, None)
}

/// [`spawn_client`], through TLS when `tls` is given. The TLS handshake
/// ends, and the server is verified, before any ferry byte is written; a
/// server that fails the check is an error whose message is ferry-tls's
/// one line (a pin mismatch names both fingerprints, an unknown server the
/// flag that pins it, a server without TLS its first byte), and it never
/// sees the HELLO or its token. `timeout` covers both handshakes.
pub fn spawn_client_tls(
    addr: SocketAddr,
    config: ClientConfig,
    accept_files: Option<Inbox>,
    timeout: Duration,
    tls: Option<ClientTls>,
) -> io::Result<ClientHandle> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_nodelay(true)?;
    let (transport, unfed, identity) = match &tls {
        Some(tls) => {
            let Connected {
                transport,
                unfed,
                identity,
                ..
            } = connect(&mut stream, tls, addr.port(), deadline)?;
            (Some(Arc::new(Mutex::new(transport))), unfed, identity)
        }
        None => (None, Vec::new(), None),
    };
    let (input_tx, input) = mpsc::channel();
    let (notices_tx, notices) = mpsc::channel();
    let reader = stream.try_clone()?;
    let reader_tx = input_tx.clone();
    let reader_transport = transport.clone();
    thread::Builder::new()
        .name("ferry-std-client-read".into())
        .spawn(move || match reader_transport {
            Some(transport) => read_tls_loop(reader, &transport, unfed, &reader_tx),
            None => read_loop(reader, &reader_tx),
        })?;
    let disk_tx = input_tx.clone();
    let disk_wake: Wake = Arc::new(move || {
        let _ = disk_tx.send(Input::Disk);
    });
    let (welcomed_tx, welcomed) = mpsc::channel();
    let thread = thread::Builder::new()
        .name("ferry-std-client".into())
        .spawn(move || {
            let policy = OfferPolicy::for_inbox(accept_files.as_ref());
            let mut driver = Driver {
                conn: Connection::client(config, Instant::now()),
                files: FileTransfers::new(accept_files, policy).on_disk_done(disk_wake),
                stream,
                transport,
                notices: notices_tx,
                welcomed: Some(welcomed_tx),
            };
            driver.run(&input, deadline)
        })?;
    let command = Box::new(move |c| {
        let _ = input_tx.send(Input::Command(c));
    });
    match welcomed.recv_timeout(timeout + Duration::from_millis(100)) {
        Ok(Ok(())) => {
            Ok(ClientHandle::new(command, notices, thread).with_server_identity(identity))
        }
        Ok(Err(e)) => Err(e),
        Err(_) => match thread.join() {
            Ok(Err(e)) => Err(e),
            _ => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no answer from the server in time",
            )),
        },
    }
}

fn read_loop(mut stream: TcpStream, input: &Sender<Input>) {
    let mut buf = ReadBuffer::new();
    loop {
        match stream.read(buf.space()) {
            Ok(0) => {
                let _ = input.send(Input::Eof);
                return;
            }
            Err(e) => {
                let _ = input.send(Input::Broken(format!("read failed: {e}")));
                return;
            }
            Ok(n) => {
                if input.send(Input::Bytes(buf.filled(n).to_vec())).is_err() {
                    return;
                }
            }
        }
    }
}

/// The TLS read path: socket bytes (after `unfed`, what the handshake
/// left) into the transport, its plaintext to the driver.
fn read_tls_loop(
    mut stream: TcpStream,
    transport: &Mutex<Transport>,
    mut unfed: Vec<u8>,
    input: &Sender<Input>,
) {
    let mut buf = ReadBuffer::new();
    let mut plaintext = vec![0; ferry_tls::PLAINTEXT_LIMIT];
    // The handshake's last read may have brought the server's first bytes.
    if send_plaintext(transport, &mut plaintext, input).is_err() {
        return;
    }
    loop {
        if unfed.is_empty() {
            match stream.read(buf.space()) {
                Ok(0) => {
                    let ended = lock(transport).feed_eof();
                    let _ = send_plaintext(transport, &mut plaintext, input);
                    let _ = input.send(match ended {
                        Ok(()) => Input::Eof,
                        Err(e) => Input::Broken(format!("TLS: {e}")),
                    });
                    return;
                }
                Ok(n) => unfed.extend_from_slice(buf.filled(n)),
                Err(e) => {
                    let _ = input.send(Input::Broken(format!("read failed: {e}")));
                    return;
                }
            }
        }
        let fed = lock(transport).feed(&unfed);
        let taken = match fed {
            Ok(taken) => taken,
            Err(e) => {
                let _ = input.send(Input::Broken(format!("TLS: {e}")));
                return;
            }
        };
        unfed.drain(..taken);
        if send_plaintext(transport, &mut plaintext, input).is_err() {
            return;
        }
        let (closed, records) = {
            let t = lock(transport);
            (t.peer_closed(), t.wants_write())
        };
        if closed {
            let _ = input.send(Input::Eof);
            return;
        }
        if records && input.send(Input::Records).is_err() {
            return;
        }
        if taken == 0 && !unfed.is_empty() {
            // Its output is full until the driver writes it: wait rather
            // than spin (the driver was just woken if it had to be).
            thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Passes the transport's plaintext on; an error once the driver is gone.
fn send_plaintext(
    transport: &Mutex<Transport>,
    buf: &mut [u8],
    input: &Sender<Input>,
) -> Result<(), ()> {
    loop {
        let n = lock(transport).read_plaintext(buf).unwrap_or(0);
        if n == 0 {
            return Ok(());
        }
        input
            .send(Input::Bytes(buf[..n].to_vec()))
            .map_err(|_| ())?;
    }
}

struct Driver {
    conn: Connection,
    files: FileTransfers,
    stream: TcpStream,
    /// TLS: the transport the connection's bytes go through.
    transport: Option<SharedTransport>,
    notices: Sender<ClientNotice>,
    /// Told once whether the handshake succeeded.
    welcomed: Option<Sender<io::Result<()>>>,
}

impl Driver {
    fn run(
        &mut self,
        input: &mpsc::Receiver<Input>,
        handshake_deadline: Instant,
    ) -> io::Result<()> {
        self.flush()?;
        loop {
            let now = Instant::now();
            if self.welcomed.is_some() && now >= handshake_deadline {
                self.handshake_failed(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the server did not complete the handshake in time",
                ));
                let _ = self.stream.shutdown(Shutdown::Both);
                return Ok(());
            }
            let deadline = [self.conn.poll_timeout(), self.files.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(now + Duration::from_secs(3600));
            let deadline = if self.welcomed.is_some() {
                deadline.min(handshake_deadline)
            } else {
                deadline
            };
            match input.recv_timeout(deadline.saturating_duration_since(now)) {
                Ok(Input::Bytes(bytes)) => self.conn.handle_input(Instant::now(), &bytes),
                Ok(Input::Eof) | Err(RecvTimeoutError::Disconnected) => {
                    self.conn.handle_eof(Instant::now())
                }
                Ok(Input::Broken(reason)) => self.conn.handle_broken(Instant::now(), &reason),
                Ok(Input::Command(command)) => self.command(command),
                Ok(Input::Records) => {}
                Ok(Input::Disk) => {
                    for report in self.files.poll_disk(&mut self.conn, Instant::now()) {
                        let _ = self.notices.send(ClientNotice::File(report));
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let now = Instant::now();
                    self.conn.handle_timeout(now);
                    for report in self.files.handle_timeout(&mut self.conn, now) {
                        let _ = self.notices.send(ClientNotice::File(report));
                    }
                }
            }
            self.events();
            if let Err(e) = self.flush() {
                self.conn
                    .handle_broken(Instant::now(), &format!("write failed: {e}"));
                self.events();
            }
            if self.conn.is_closed() && self.conn.is_drained() {
                if let Some(transport) = &self.transport {
                    // close_notify: the server sees a deliberate end.
                    let mut records = Vec::new();
                    {
                        let mut transport = lock(transport);
                        transport.close();
                        transport.take_outgoing(&mut records);
                    }
                    let _ = self.stream.write_all(&records);
                }
                let _ = self.stream.shutdown(Shutdown::Write);
                return Ok(());
            }
        }
    }

    fn command(&mut self, command: ClientCommand) {
        let notice = match run_command(&mut self.conn, &mut self.files, Instant::now(), command) {
            Ok(Some(report)) => ClientNotice::File(report),
            Ok(None) => return,
            Err(error) => ClientNotice::Error(error),
        };
        let _ = self.notices.send(notice);
    }

    fn events(&mut self) {
        while let Some(event) = self.conn.poll_event() {
            let now = Instant::now();
            match event {
                Event::Transfer(t) => {
                    if let Some(report) = self.files.handle(&mut self.conn, now, t) {
                        let _ = self.notices.send(ClientNotice::File(report));
                    }
                }
                Event::Welcomed { .. } => {
                    if let Some(tx) = self.welcomed.take() {
                        let _ = tx.send(Ok(()));
                    }
                    let _ = self.notices.send(ClientNotice::Event(event));
                }
                Event::Closed {
                    code, ref reason, ..
                } if self.welcomed.is_some() => {
                    let kind = if code == Code::CONNECTION_LOST {
                        io::ErrorKind::ConnectionAborted
                    } else {
                        io::ErrorKind::PermissionDenied
                    };
                    self.handshake_failed(io::Error::new(kind, format!("{code}: {reason}")));
                }
                event => {
                    let _ = self.notices.send(ClientNotice::Event(event));
                }
            }
        }
    }

    fn handshake_failed(&mut self, error: io::Error) {
        if let Some(tx) = self.welcomed.take() {
            let _ = tx.send(Err(error));
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut batch = OutputBatch::new();
        if let Some(transport) = self.transport.clone() {
            self.write_records(&transport)?;
            while batch.fill(|| self.conn.poll_transmit()) {
                while !batch.is_empty() {
                    let mut taken = 0;
                    {
                        let mut transport = lock(&transport);
                        for slice in batch.io_slices().iter() {
                            let n = transport.write_plaintext(slice).map_err(tls_error)?;
                            taken += n;
                            if n < slice.len() {
                                break;
                            }
                        }
                    }
                    batch.advance(taken);
                    self.write_records(&transport)?;
                }
                self.events();
            }
            return Ok(());
        }
        while batch.fill(|| self.conn.poll_transmit()) {
            batch.write_all(&mut self.stream)?;
            // Writing may have let the connection ask for more file data.
            self.events();
        }
        Ok(())
    }

    /// Writes out the transport's records, outside its lock so that the
    /// reader keeps feeding it while the socket is full.
    fn write_records(&mut self, transport: &Mutex<Transport>) -> io::Result<()> {
        let mut records = Vec::new();
        lock(transport).take_outgoing(&mut records);
        self.stream.write_all(&records)
    }
}

/// A client whose calls block, like the seeds' blocking mode: connect with
/// a timeout, send, wait for the next event with a timeout.
#[derive(Debug)]
pub struct Client {
    handle: ClientHandle,
}

impl Client {
    /// Connects to `addr` and joins the default room as `name`.
    pub fn connect(addr: SocketAddr, name: &str, timeout: Duration) -> io::Result<Client> {
        Client::connect_with(addr, ClientConfig::new(name), None, timeout)
    }

    /// Connects with full configuration, receiving files into `accept_files`.
    pub fn connect_with(
        addr: SocketAddr,
        config: ClientConfig,
        accept_files: Option<Inbox>,
        timeout: Duration,
    ) -> io::Result<Client> {
        spawn_client(addr, config, accept_files, timeout).map(|handle| Client { handle })
    }

    /// [`connect_with`](Client::connect_with) through TLS when `tls` is
    /// given (see [`spawn_client_tls`]).
    pub fn connect_tls(
        addr: SocketAddr,
        config: ClientConfig,
        accept_files: Option<Inbox>,
        timeout: Duration,
        tls: Option<ClientTls>,
    ) -> io::Result<Client> {
        spawn_client_tls(addr, config, accept_files, timeout, tls).map(|handle| Client { handle })
    }

    /// Says `text` to the room.
    pub fn say(&mut self, text: &str) -> io::Result<()> {
        self.handle.send(ClientCommand::Say(text.into()));
        Ok(())
    }

    /// Sends any command.
    pub fn send(&mut self, command: ClientCommand) {
        self.handle.send(command);
    }

    /// The next thing that happens, waiting at most `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> io::Result<ClientNotice> {
        self.handle
            .notices()
            .recv_timeout(timeout)
            .map_err(|e| match e {
                RecvTimeoutError::Timeout => {
                    io::Error::new(io::ErrorKind::TimedOut, "nothing happened in time")
                }
                RecvTimeoutError::Disconnected => {
                    io::Error::new(io::ErrorKind::NotConnected, "the connection is closed")
                }
            })
    }

    /// Waits for the next room message, as `(from, text)`, skipping other
    /// events.
    pub fn next_message(&mut self, timeout: Duration) -> io::Result<(String, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if let ClientNotice::Event(Event::Message { from, text, .. }) = self.next_event(left)? {
                return Ok((from.to_string(), text.to_string()));
            }
        }
    }

    /// Leaves politely and waits for the connection to close.
    pub fn bye(self) -> io::Result<()> {
        self.handle.send(ClientCommand::Bye);
        self.handle.join()
    }

    /// The underlying handle.
    pub fn into_handle(self) -> ClientHandle {
        self.handle
    }
}
