//! The server: one task owns the [`Hub`]; each connection has a reader and
//! a writer task that only move bytes (the hub task writes itself while a
//! writer is idle: see [`Outlet`]).

use crate::alarm::Alarm;
use crate::pump::{read_loop, wind_down, write_loop, Fed, Outlet, Received, INPUT_QUEUE};
use async_channel::{Receiver, Sender};
use async_executor::{Executor, Task};
use async_io::Timer;
use async_net::{TcpListener, TcpStream};
use bytes::Bytes;
use ferry_core::{ClientId, ClientMap, Hub, HubConfig, HubEvent};
use ferry_files::{HubFiles, Inbox, ServerCommand, ServerNotice};
use futures_lite::future;

use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a shutdown waits for clients to be sent their `ERROR SHUTDOWN`.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(1);

/// Inputs handled at most before the writers are fed, however much more
/// input waits (see `Server::drain`): one queue's worth.
const FEED_EVERY: usize = INPUT_QUEUE;

/// How long to wait before accepting again after `accept` failed (out of
/// file descriptors, say): retrying at once would only spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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
}

/// What woke the hub task.
enum Wake {
    Input(Input),
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
    let executor = Arc::new(Executor::new());
    let (inputs_tx, inputs) = async_channel::bounded(INPUT_QUEUE);
    // Owned by the executor: dropped, and the listener closed, when this
    // function returns.
    executor
        .spawn(accept_loop(listener, inputs_tx.clone()))
        .detach();
    let (disk_wake, disk_done) = crate::disk_signal();
    let mut server = Server {
        executor: executor.clone(),
        hub: Hub::new(ferry_files::with_session_key(hub)?, Instant::now()),
        files: HubFiles::new(inbox, disk_wake),
        peers: ClientMap::default(),
        lingering: Vec::new(),
        inputs: inputs_tx,
        notices,
        disk_done,
        alarm: Alarm::new(),
        unfed: 0,
    };
    // The hub's loop is a task like the others rather than the future
    // `run` drives itself: that future is woken through the thread's own
    // waker, and each such wake-up cost a non-blocking round of the
    // reactor (five system calls) per message.
    let hub_task = executor.spawn(async move { server.run(inputs, commands).await });
    executor.run(hub_task).await
}

async fn accept_loop(listener: TcpListener, to: Sender<Input>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if to.send(Input::Accepted(stream, peer)).await.is_err() {
                    return;
                }
            }
            Err(_) => {
                Timer::after(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// The hub task's view of one connection.
struct Peer {
    outlet: Outlet,
    /// The hub said [`HubEvent::Closed`]: flush, then remove.
    closed: bool,
    reader: Task<()>,
    writer: Task<()>,
}

struct Server {
    executor: Arc<Executor<'static>>,
    hub: Hub,
    files: HubFiles,
    peers: ClientMap<Peer>,
    /// Sockets of removed clients, still writing their last bytes.
    lingering: Vec<Task<()>>,
    inputs: Sender<Input>,
    notices: mpsc::Sender<ServerNotice>,
    /// Signalled by file writers.
    disk_done: Receiver<()>,
    /// Fires by the hub's next deadline.
    alarm: Alarm,
    /// Inputs handled since the writers were last fed (see `drain`).
    unfed: usize,
}

impl Server {
    async fn run(
        &mut self,
        inputs: Receiver<Input>,
        commands: Receiver<ServerCommand>,
    ) -> io::Result<()> {
        let mut commands = Some(commands);
        loop {
            let wake = self.next(&inputs, commands.as_ref()).await;
            let now = Instant::now();
            match wake {
                Wake::Input(input) => self.on_input(now, input),
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
                // `ServerCommand` may grow; a command this runtime does not
                // know is ignored rather than fatal.
                Wake::Command(_) => {}
                Wake::CommandsClosed => commands = None,
            }
            self.catch_up(now);
            self.drain(now);
        }
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
        let input = async {
            match inputs.recv().await {
                Ok(input) => Wake::Input(input),
                // We hold a sender ourselves, so this cannot happen.
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
        // Commands first: a shutdown should not wait behind a busy room.
        future::or(command, future::or(input, future::or(disk, timer))).await
    }

    fn on_input(&mut self, now: Instant, input: Input) {
        match input {
            Input::Accepted(stream, peer) => self.accept(now, stream, peer),
            // A removed client's reader may still deliver: the hub ignores
            // ids it no longer knows.
            Input::Read(id, data) => self.hub.handle_input(id, now, &data),
            Input::Eof(id) => self.hub.handle_eof(id, now),
            Input::Broken(id, why) => self.hub.handle_broken(id, now, &why),
            Input::Room(id) => {
                self.feed(id, now);
            }
        }
    }

    fn accept(&mut self, now: Instant, stream: TcpStream, peer: SocketAddr) {
        // Chat frames are small and should leave at once.
        let _ = stream.set_nodelay(true);
        let id = self.hub.connect_from(now, peer.ip());
        let (outlet, writer_end) = Outlet::new(stream.clone());
        let reader = self.executor.spawn(read_loop(
            stream.clone(),
            self.inputs.clone(),
            move |received| match received {
                Received::Data(data) => Input::Read(id, data),
                Received::End => Input::Eof(id),
                Received::Broken(why) => Input::Broken(id, why),
            },
        ));
        let writer = self.executor.spawn(write_loop(
            stream,
            writer_end,
            self.inputs.clone(),
            Input::Room(id),
            move |why| Input::Broken(id, why),
        ));
        self.peers.insert(
            id,
            Peer {
                outlet,
                closed: false,
                reader,
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
        // and goes to the writers once per burst of input: feeding after
        // every input woke each recipient's writer (a system call each)
        // once per input, so a thousand members joining one after another
        // cost a million writes and held the task for a third of a second.
        let feed = self.inputs.is_empty() || self.unfed >= FEED_EVERY;
        self.unfed = if feed { 0 } else { self.unfed + 1 };
        loop {
            let mut busy = false;
            while let Some(event) = self.hub.poll_event() {
                busy = true;
                self.on_event(now, event);
            }
            while let Some(id) = feed.then(|| self.hub.poll_writable()).flatten() {
                busy |= self.feed(id, now);
            }
            if !busy {
                break;
            }
        }
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
        let Some(peer) = self.peers.get_mut(&id) else {
            return false;
        };
        let hub = &mut self.hub;
        // Written at once only at the end of a burst of input, so that the
        // writers gather what the whole burst produced for each client.
        let direct = self.inputs.is_empty();
        let (fed, moved) = peer.outlet.feed(direct, || hub.poll_transmit(id));
        if fed == Fed::Drained && peer.closed {
            self.remove(id, now);
        }
        moved
    }

    /// Forgets a closed client whose last bytes are with its writer. The
    /// writer finishes them and shuts the socket's write side; the reader
    /// keeps draining until the peer closes too, so that unread input does
    /// not turn the close into a reset that could destroy the final frames
    /// in flight. Both are bounded (see [`wind_down`]).
    fn remove(&mut self, id: ClientId, now: Instant) {
        let Some(peer) = self.peers.remove(&id) else {
            return;
        };
        self.hub.remove(id, now);
        let Peer {
            outlet,
            reader,
            writer,
            ..
        } = peer;
        // Closing the queue is what tells the writer to finish.
        drop(outlet);
        self.lingering.retain(|task| !task.is_finished());
        self.lingering
            .push(self.executor.spawn(wind_down(writer, reader)));
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
            self.drain(now);
        }
        let lingering = std::mem::take(&mut self.lingering);
        future::or(
            async {
                for task in lingering {
                    task.await;
                }
            },
            async {
                Timer::at(deadline).await;
            },
        )
        .await;
    }
}
