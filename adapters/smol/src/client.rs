//! The client: one task owns the [`Connection`]; a reader and a writer
//! task move its bytes.

use crate::alarm::Alarm;
use crate::pump::{read_loop, wind_down, write_loop, Fed, Outlet, Received, INPUT_QUEUE, LINGER};
use crate::tls::{tls_read_loop, tls_write_loop, Tls};
use async_channel::Receiver;
use async_executor::Executor;
use async_net::TcpStream;
use bytes::Bytes;
use ferry_core::{ClientConfig, Code, Connection, Event};
use ferry_files::{run_command, ClientCommand, ClientNotice, FileTransfers, Inbox, OfferPolicy};
use ferry_tls::Transport;
use futures_lite::future;
use std::io;
use std::sync::mpsc;
use std::time::Instant;

/// What the socket tasks tell the client task.
#[derive(Clone)]
enum Input {
    Read(Bytes),
    /// The server closed its side.
    Eof,
    /// The socket broke: why.
    Broken(String),
    /// The writer has room again.
    Room,
}

/// What woke the client task.
enum Wake {
    Input(Input),
    /// A file writer finished something.
    Disk,
    Timeout,
    Command(ClientCommand),
    CommandsClosed,
}

/// Told once, by [`drive`], whether the server let the client in: for
/// [`crate::spawn_client`], which returns only then.
pub(crate) type Welcome = mpsc::Sender<Result<(), Refusal>>;

/// Why a client was not let in: its [`Event::Closed`] before any welcome.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub(crate) code: Code,
    /// Whether the server ended it (else the client did, its handshake
    /// timer run out, or the connection was lost).
    pub(crate) by_peer: bool,
    pub(crate) reason: String,
}

/// How a client connection ended, for [`crate::spawn_client`] to tell a
/// handshake that ran out of time from any other end.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ending {
    /// The server let us in at some point.
    pub(crate) welcomed: bool,
    /// The code of [`Event::Closed`].
    pub(crate) code: Code,
    /// Whether the server ended it.
    pub(crate) by_peer: bool,
}

/// Runs a ferry client on a connected `stream` as `config` says until the
/// connection is over, then writes what is left (a `BYE`, say) and returns
/// `Ok(())`.
///
/// Commands come in on `commands` ([`ClientCommand::Bye`] leaves), and are
/// taken once the server has let the client in; a closed
/// `commands` channel only means no more commands, and the client stays
/// until the server ends the connection. Everything the connection reports
/// goes out on `notices`: files as [`ClientNotice::File`], everything else
/// (chat, membership, [`Event::Closed`] last) as [`ClientNotice::Event`],
/// and commands that could not be carried out as [`ClientNotice::Error`].
///
/// Offered files are accepted into `accept_files` when it is given (or
/// held for the user's answer, if it asks first: see
/// [`Inbox::ask_first`]), and declined otherwise.
///
/// Like [`run_server`](crate::run_server), the future polls its socket
/// tasks itself, needs only an async-io reactor and is `Send`.
///
/// # Errors
///
/// None today: a broken connection ends with [`Event::Closed`] and
/// `Ok(())`.
pub async fn run_client(
    stream: TcpStream,
    config: ClientConfig,
    accept_files: Option<Inbox>,
    commands: Receiver<ClientCommand>,
    notices: mpsc::Sender<ClientNotice>,
) -> io::Result<()> {
    drive(stream, None, config, accept_files, commands, notices, None)
        .await
        .map(|_| ())
}

/// [`run_client`], saying how the connection ended, and on `welcome`
/// whether the server let the client in as soon as that is known.
///
/// With a `tls` transport (its handshake done, and the socket bytes it has
/// not taken yet), the connection runs inside it.
pub(crate) async fn drive(
    stream: TcpStream,
    tls: Option<(Transport, Vec<u8>)>,
    config: ClientConfig,
    accept_files: Option<Inbox>,
    commands: Receiver<ClientCommand>,
    notices: mpsc::Sender<ClientNotice>,
    welcome: Option<Welcome>,
) -> io::Result<Ending> {
    // Chat frames are small and should leave at once.
    let _ = stream.set_nodelay(true);
    let executor = Executor::new();
    let (inputs_tx, inputs) = async_channel::bounded(INPUT_QUEUE);
    let (outlet, writer_end) = Outlet::new(stream.clone());
    let wrap = |received| match received {
        Received::Data(data) => Input::Read(data),
        Received::End => Input::Eof,
        Received::Broken(why) => Input::Broken(why),
    };
    let encrypted = tls.is_some();
    let (reader, writer) = match tls {
        None => (
            executor.spawn(read_loop(stream.clone(), inputs_tx.clone(), wrap)),
            executor.spawn(write_loop(
                stream,
                writer_end,
                inputs_tx,
                Input::Room,
                Input::Broken,
            )),
        ),
        Some((transport, unfed)) => {
            let tls = Tls::new(transport);
            let label = "TLS".to_string();
            (
                executor.spawn(tls_read_loop(
                    stream.clone(),
                    tls.clone(),
                    unfed,
                    inputs_tx.clone(),
                    wrap,
                    label.clone(),
                )),
                executor.spawn(tls_write_loop(
                    stream,
                    writer_end,
                    tls,
                    inputs_tx,
                    Input::Room,
                    Input::Broken,
                    label,
                )),
            )
        }
    };
    let policy = OfferPolicy::for_inbox(accept_files.as_ref());
    let (disk_wake, disk_done) = crate::disk_signal();
    let mut client = Client {
        conn: Connection::client(config, Instant::now()),
        files: FileTransfers::new(accept_files, policy).on_disk_done(disk_wake),
        disk_done,
        outlet,
        encrypted,
        notices,
        ending: None,
        welcomed: false,
        welcome,
        alarm: Alarm::new(),
    };
    // A task like the socket tasks rather than the future `run` drives
    // itself, which is woken through the thread's own waker: each such
    // wake-up cost a non-blocking round of the reactor per message.
    let main = executor.spawn(async move {
        let ending = client.run(&inputs, commands).await;
        // Closing the queue tells the writer to finish and shut down
        // its side; the reader then waits a little for the server's end
        // (see `wind_down`). The reader's last messages have nobody to
        // go to any more.
        drop(client.outlet);
        drop(inputs);
        wind_down(writer, reader).await;
        Ok(ending)
    });
    executor.run(main).await
}

struct Client {
    conn: Connection,
    files: FileTransfers,
    /// Signalled by file writers.
    disk_done: Receiver<()>,
    outlet: Outlet,
    /// TLS: the writer encrypts everything, nothing is written directly.
    encrypted: bool,
    notices: mpsc::Sender<ClientNotice>,
    /// Set by [`Event::Closed`].
    ending: Option<Ending>,
    welcomed: bool,
    /// Told once whether the server let us in; `None` once told.
    welcome: Option<Welcome>,
    /// Fires by the next deadline (early at times: `run` then waits again).
    alarm: Alarm,
}

impl Client {
    /// Runs the connection until it closed and everything it had to say is
    /// with the writer.
    async fn run(&mut self, inputs: &Receiver<Input>, commands: Receiver<ClientCommand>) -> Ending {
        let mut commands = Some(commands);
        let mut blocked = self.drain(Instant::now()) == Fed::Blocked;
        // Once closed, how long the writer may take to accept the rest.
        let mut flush_by = None;
        loop {
            if let Some(ending) = self.ending {
                let until = *flush_by.get_or_insert_with(|| Instant::now() + LINGER);
                if !blocked || Instant::now() >= until {
                    return ending;
                }
            }
            let wake = self.next(inputs, commands.as_ref(), flush_by).await;
            let now = Instant::now();
            match wake {
                Wake::Input(Input::Read(data)) => self.conn.handle_input(now, &data),
                Wake::Input(Input::Eof) => self.conn.handle_eof(now),
                Wake::Input(Input::Broken(why)) => self.conn.handle_broken(now, &why),
                // Feeding happens in `drain` below.
                Wake::Input(Input::Room) => {}
                Wake::Disk => {
                    for report in self.files.poll_disk(&mut self.conn, now) {
                        self.notify(ClientNotice::File(report));
                    }
                }
                // Timers are fired in `drain` below.
                Wake::Timeout => {}
                Wake::Command(command) => self.command(now, command),
                Wake::CommandsClosed => commands = None,
            }
            blocked = self.drain(now) == Fed::Blocked;
        }
    }

    /// Waits for the next input, command or timer.
    async fn next(
        &mut self,
        inputs: &Receiver<Input>,
        commands: Option<&Receiver<ClientCommand>>,
        flush_by: Option<Instant>,
    ) -> Wake {
        // A closed connection has no timers of its own; the flush has one.
        let deadline = [self.conn.poll_timeout(), self.files.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .or(flush_by);
        self.alarm.arm(deadline);
        // Commands wait in their channel until the handshake is done (the
        // core refuses chat before it), and are left there once closed.
        let commands = commands.filter(|_| self.conn.is_open());
        let command = async {
            match commands {
                Some(commands) => match commands.recv().await {
                    Ok(command) => Wake::Command(command),
                    Err(_) => Wake::CommandsClosed,
                },
                None => future::pending().await,
            }
        };
        let input = async {
            match inputs.recv().await {
                Ok(input) => Wake::Input(input),
                // The writer holds a sender until the very end.
                Err(_) => future::pending().await,
            }
        };
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
        future::or(input, future::or(command, future::or(disk, timer))).await
    }

    fn command(&mut self, now: Instant, command: ClientCommand) {
        match run_command(&mut self.conn, &mut self.files, now, command) {
            Ok(Some(report)) => self.notify(ClientNotice::File(report)),
            Ok(None) => {}
            Err(error) => self.notify(ClientNotice::Error(error)),
        }
    }

    /// Handles every event and hands every queued segment to the writer,
    /// again while either produced more (writing makes room for file data,
    /// which the connection asks for with events).
    fn drain(&mut self, now: Instant) -> Fed {
        // Input that never pauses would keep the timer from winning the
        // race in `next`; deadlines are checked here as well.
        if self.conn.poll_timeout().is_some_and(|at| at <= now) {
            self.conn.handle_timeout(now);
        }
        if self.files.poll_timeout().is_some_and(|at| at <= now) {
            for report in self.files.handle_timeout(&mut self.conn, now) {
                self.notify(ClientNotice::File(report));
            }
        }
        loop {
            let mut busy = false;
            while let Some(event) = self.conn.poll_event() {
                busy = true;
                self.on_event(now, event);
            }
            let conn = &mut self.conn;
            // One connection: nothing to gather across clients.
            let (fed, moved) = self.outlet.feed(!self.encrypted, || conn.poll_transmit());
            if !busy && !moved {
                return fed;
            }
        }
    }

    fn on_event(&mut self, now: Instant, event: Event) {
        match event {
            Event::Transfer(transfer) => {
                if let Some(report) = self.files.handle(&mut self.conn, now, transfer) {
                    self.notify(ClientNotice::File(report));
                }
            }
            event => {
                match &event {
                    Event::Welcomed { .. } => {
                        self.welcomed = true;
                        if let Some(welcome) = self.welcome.take() {
                            // Nobody waiting any more is fine.
                            let _ = welcome.send(Ok(()));
                        }
                    }
                    Event::Closed {
                        code,
                        by_peer,
                        reason,
                    } => {
                        self.ending = Some(Ending {
                            welcomed: self.welcomed,
                            code: *code,
                            by_peer: *by_peer,
                        });
                        if let Some(welcome) = self.welcome.take() {
                            let _ = welcome.send(Err(Refusal {
                                code: *code,
                                by_peer: *by_peer,
                                reason: reason.clone(),
                            }));
                        }
                    }
                    _ => {}
                }
                self.notify(ClientNotice::Event(event));
            }
        }
    }

    fn notify(&self, notice: ClientNotice) {
        // Nobody listening is fine: the connection runs its course.
        let _ = self.notices.send(notice);
    }
}
