//! The server's sockets, plain and TLS, read by the hub task itself.
//!
//! A reader task per connection that forwarded each read to the hub task
//! over a channel cost every message two task switches (the reader woken,
//! then the hub woken by the reader) and a queued copy of its bytes, where
//! the hub task, woken once, can make the one `read` itself: this is the
//! part of the smol server's round trip that its own stack (an echo task
//! per connection) does not pay. So each socket gets a [`Waker`] of its own
//! that, when the reactor says the socket is readable, lists the connection
//! for the hub and wakes the hub task; the hub then reads the listed
//! sockets in turn, one read each per turn, into one buffer for all of them.
//!
//! What that keeps from the reader tasks:
//!
//! * No input is queued at all, so none can pile up: a client sending
//!   faster than the hub works is held back by TCP, as before.
//! * One connection cannot keep the hub from the others: each turn is a
//!   single read, and a connection that had bytes goes to the back of the
//!   line (it may have more) behind every other listed one.
//! * The hub still knows when more input waits (see [`Intake::has_woken`]),
//!   so a burst of input is answered with one write per client.

use crate::pump::discard_until_end;
use async_io::Async;
use async_net::TcpStream;
use ferry_core::{ClientId, ClientMap};
use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, Read};
use std::net::TcpStream as StdStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

/// Bytes one turn reads at most: the most a reader task read at once.
const READ_SIZE: usize = 64 * 1024;

/// Reads made at most, while some socket keeps having more, before the
/// sockets that had bytes wait for the reactor like everyone else. The hub
/// task never waits while a socket has more, and async-io looks for newly
/// readable sockets only when the tasks wait (or every 200 task polls):
/// without this, a client flooding the server pushed an honest client's
/// round trip to 110 ms at the 99th percentile (`ferry bench hostile`,
/// extension-flood), against 15 ms with reader tasks.
const READS_PER_ROUND: usize = 64;

/// What one turn found on a connection's socket.
#[derive(Debug)]
pub(crate) enum Found<'a> {
    /// Bytes read.
    Data(&'a [u8]),
    /// The peer closed its side; its socket is read no more.
    End,
    /// Reading failed (why); its socket is read no more.
    Broken(String),
}

/// The hub task's reading of every plain connection: which sockets to read
/// next, and the buffer they are read into.
pub(crate) struct Intake {
    sources: ClientMap<Source>,
    /// Connections to read, in turn.
    turns: VecDeque<ClientId>,
    /// How many of `turns` the reactor said are readable (the others had
    /// bytes at their last read and may have more).
    woken_waiting: usize,
    shared: Arc<Shared>,
    /// `shared.readable` swapped out, kept for its allocation.
    spare: Vec<ClientId>,
    /// Reads since the hub last found no turn waiting (and so let the
    /// reactor look for readable sockets).
    reads_since_idle: usize,
    buf: Vec<u8>,
}

/// What the sockets' wakers share with the hub task.
#[derive(Default)]
struct Shared {
    /// Connections the reactor found readable since the hub last looked.
    /// Each is listed once until the hub takes it (see
    /// [`SocketWaker::listed`]): bounded by the number of connections.
    readable: Mutex<Vec<ClientId>>,
    /// Whether `readable` may hold any: looked at without the lock.
    any_readable: AtomicBool,
    /// The hub task's waker, once it waited for a turn.
    hub: Mutex<Option<Waker>>,
}

impl Shared {
    fn readable(&self) -> MutexGuard<'_, Vec<ClientId>> {
        // Only pushes and drains happen under it: a panic cannot leave it
        // half changed.
        self.readable.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn hub(&self) -> MutexGuard<'_, Option<Waker>> {
        self.hub.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The waker async-io holds for one socket while the hub waits for it to
/// become readable.
struct SocketWaker {
    id: ClientId,
    shared: Arc<Shared>,
    /// Set while `id` is in `shared.readable`, so it is listed only once.
    listed: AtomicBool,
}

impl Wake for SocketWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.listed.swap(true, Ordering::AcqRel) {
            return;
        }
        {
            let mut readable = self.shared.readable();
            readable.push(self.id);
            self.shared.any_readable.store(true, Ordering::Release);
        }
        // Cloned out so that the hub's waker runs without the lock held.
        let hub = self.shared.hub().clone();
        if let Some(hub) = hub {
            hub.wake();
        }
    }
}

/// One connection read by the hub.
struct Source {
    socket: Arc<Async<StdStream>>,
    /// For the reads after the hub let it go (see [`Intake::remove`]).
    stream: TcpStream,
    state: Arc<SocketWaker>,
    waker: Waker,
    /// Whether it is in `turns`, and if so whether the reactor woke it.
    turn: Option<Turn>,
    /// End of file or a failure was read: nothing more to read.
    ended: bool,
    /// Not read until resumed: what it sent last waits to be taken (a TLS
    /// connection whose output the peer does not read).
    paused: bool,
}

/// What one read of a [`Source`] found.
enum Outcome {
    Data(usize),
    End,
    Broken(String),
    /// Nothing to read; the socket's waker is registered.
    Waiting,
}

impl Source {
    /// Reads once into `buf`, or registers the socket's waker if there is
    /// nothing to read.
    fn read(&mut self, buf: &mut [u8]) -> Outcome {
        loop {
            match self.socket.get_ref().read(buf) {
                Ok(0) => return Outcome::End,
                Ok(n) => return Outcome::Data(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Ready only if an event came after the failed read: then
                // the read is tried again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => match self.wait_readable() {
                    Poll::Pending => return Outcome::Waiting,
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Outcome::Broken(format!("read failed: {e}")),
                },
                Err(e) => return Outcome::Broken(format!("read failed: {e}")),
            }
        }
    }

    /// Asks the reactor to wake this socket's waker once it is readable.
    fn wait_readable(&self) -> Poll<io::Result<()>> {
        self.socket
            .poll_readable(&mut Context::from_waker(&self.waker))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// The reactor said it is readable.
    Woken,
    /// Its last read had bytes; it may have more.
    Again,
}

impl Intake {
    pub(crate) fn new() -> Intake {
        Intake {
            sources: ClientMap::default(),
            turns: VecDeque::new(),
            woken_waiting: 0,
            shared: Arc::default(),
            spare: Vec::new(),
            reads_since_idle: 0,
            buf: vec![0; READ_SIZE],
        }
    }

    /// Starts reading `stream` as `id`'s socket; what already waits on it
    /// is read at its first turn.
    pub(crate) fn add(&mut self, id: ClientId, stream: &TcpStream) {
        let state = Arc::new(SocketWaker {
            id,
            shared: self.shared.clone(),
            listed: AtomicBool::new(false),
        });
        let source = Source {
            socket: stream.clone().into(),
            stream: stream.clone(),
            waker: Waker::from(state.clone()),
            state,
            turn: None,
            ended: false,
            paused: false,
        };
        self.sources.insert(id, source);
        self.list(id, Turn::Woken);
    }

    /// Stops reading `id`'s socket. Returns what keeps reading it, and
    /// drops what arrives, until the peer's end: the socket must not be
    /// closed while it still receives (see [`CLOSE_WAIT`](crate::pump::CLOSE_WAIT)). `None` if
    /// the hub did not read it or it has ended.
    pub(crate) fn remove(&mut self, id: ClientId) -> Option<impl Future<Output = ()>> {
        let source = self.sources.remove(&id)?;
        ferry_core::shrink_if_sparse(&mut self.sources);
        if source.turn == Some(Turn::Woken) {
            self.woken_waiting -= 1;
        }
        // Its place in `turns` is skipped when it comes up.
        if source.ended {
            return None;
        }
        Some(discard_until_end(source.stream))
    }

    /// Stops reading `id`'s socket for now, keeping it: see
    /// [`resume`](Intake::resume).
    pub(crate) fn pause(&mut self, id: ClientId) {
        if let Some(source) = self.sources.get_mut(&id) {
            source.paused = true;
        }
    }

    /// Reads `id`'s socket again after [`pause`](Intake::pause), from its
    /// next turn: it may have had bytes all along.
    pub(crate) fn resume(&mut self, id: ClientId) {
        if let Some(source) = self.sources.get_mut(&id) {
            if source.paused {
                source.paused = false;
                self.list(id, Turn::Woken);
            }
        }
    }

    /// Whether a socket the reactor found readable waits for its turn: more
    /// input is certain to come before the hub is idle.
    pub(crate) fn has_woken(&self) -> bool {
        self.woken_waiting > 0 || self.shared.any_readable.load(Ordering::Acquire)
    }

    /// Ready when a connection waits for its turn; otherwise wakes the task
    /// when the reactor finds one readable.
    pub(crate) fn poll_turn(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.take_woken();
        if !self.turns.is_empty() {
            return Poll::Ready(());
        }
        {
            let mut hub = self.shared.hub();
            if !hub.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *hub = Some(cx.waker().clone());
            }
        }
        // A socket woken while the waker was being stored.
        self.take_woken();
        if self.turns.is_empty() {
            self.reads_since_idle = 0;
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// Reads the socket whose turn it is, once. `None` if nobody waits, or
    /// no listed socket had anything after all (the reactor then wakes the
    /// hub when one has).
    pub(crate) fn read_turn(&mut self) -> Option<(ClientId, Found<'_>)> {
        self.take_woken();
        loop {
            let id = self.turns.pop_front()?;
            // Skipped if removed since it was listed.
            let Some(source) = self.sources.get_mut(&id) else {
                continue;
            };
            let turn = source.turn.take();
            if turn == Some(Turn::Woken) {
                self.woken_waiting -= 1;
            }
            // A paused one is listed again when it resumes.
            if source.ended || source.paused {
                continue;
            }
            let outcome = if turn == Some(Turn::Again) && self.reads_since_idle >= READS_PER_ROUND {
                // Enough reads without asking the reactor: it will list
                // this socket again if it has more, along with every other
                // socket that has.
                match source.wait_readable() {
                    Poll::Pending => Outcome::Waiting,
                    Poll::Ready(Ok(())) => source.read(&mut self.buf),
                    Poll::Ready(Err(e)) => Outcome::Broken(format!("read failed: {e}")),
                }
            } else {
                source.read(&mut self.buf)
            };
            self.reads_since_idle += 1;
            let found = match outcome {
                Outcome::Waiting => continue,
                Outcome::Data(n) => {
                    // It may have more: after everyone else.
                    source.turn = Some(Turn::Again);
                    self.turns.push_back(id);
                    return Some((id, Found::Data(&self.buf[..n])));
                }
                Outcome::End => Found::End,
                Outcome::Broken(why) => Found::Broken(why),
            };
            source.ended = true;
            return Some((id, found));
        }
    }

    /// Moves the connections the reactor woke into `turns`.
    fn take_woken(&mut self) {
        if !self.shared.any_readable.load(Ordering::Acquire) {
            return;
        }
        let mut woken = std::mem::take(&mut self.spare);
        {
            let mut readable = self.shared.readable();
            std::mem::swap(&mut *readable, &mut woken);
            self.shared.any_readable.store(false, Ordering::Release);
        }
        for id in woken.drain(..) {
            if let Some(source) = self.sources.get(&id) {
                // Cleared before it is read: a wake from now on lists it
                // again.
                source.state.listed.store(false, Ordering::Release);
                self.list(id, Turn::Woken);
            }
        }
        self.spare = woken;
    }

    /// Gives `id` a turn, unless it has one: a woken one is not put behind
    /// the others again, only counted as woken.
    fn list(&mut self, id: ClientId, turn: Turn) {
        let Some(source) = self.sources.get_mut(&id) else {
            return;
        };
        match (source.turn, turn) {
            (None, _) => {
                self.turns.push_back(id);
                source.turn = Some(turn);
                if turn == Turn::Woken {
                    self.woken_waiting += 1;
                }
            }
            (Some(Turn::Again), Turn::Woken) => {
                source.turn = Some(Turn::Woken);
                self.woken_waiting += 1;
            }
            (Some(_), _) => {}
        }
    }
}
