//! What the threads of one [`Peers`] share: the links by server, their
//! queues, and how a link is registered, lost and closed.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferry_core::cluster::ServerId;
use ferry_tls::{TlsClient, TlsServer};

use super::connect::outgoing;
use super::wire::{Failure, Wire};
use super::{
    DeliverPeer, Locate, PeerEvent, PeerSettings, FRAME_OVERHEAD, MAX_FRAME, MAX_HANDSHAKING,
    MAX_HANDSHAKING_PER_ADDRESS,
};

/// What every thread of one [`Peers`] shares.
pub(super) struct Shared {
    pub(super) me: ServerId,
    pub(super) settings: PeerSettings,
    pub(super) locate: Locate,
    pub(super) deliver: DeliverPeer,
    pub(super) tls_server: TlsServer,
    pub(super) tls_client: TlsClient,
    pub(super) local: SocketAddr,
    pub(super) state: Mutex<State>,
    /// Held while something is handed to `deliver`, and by
    /// [`Shared::lose`] from the removal of a server to its `Lost`: no
    /// frame of a lost link is delivered after its `Lost`, and none of a
    /// new link before it.
    pub(super) delivering: Mutex<()>,
    pub(super) closing: AtomicBool,
    pub(super) refused: AtomicU64,
    pub(super) handshaking: AtomicUsize,
    /// Of those, how many from each IP address.
    pub(super) handshaking_by_address: Mutex<HashMap<IpAddr, usize>>,
    pub(super) threads: Mutex<Vec<JoinHandle<()>>>,
    /// Threads running, and their exits signalled, for a bounded wait.
    pub(super) live: Mutex<usize>,
    pub(super) live_changed: Condvar,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) peers: HashMap<ServerId, Peer>,
    /// Sockets still in their handshake, to shut down on close.
    pub(super) pending: HashMap<u64, TcpStream>,
    pub(super) last_id: u64,
}

impl State {
    pub(super) fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }
}

/// Everything about one server we have (or are making) links with.
pub(super) struct Peer {
    /// Which incarnation of the entry this is: threads of a lost one see
    /// another number (or none) and stop.
    pub(super) generation: u64,
    pub(super) queue: VecDeque<Vec<u8>>,
    pub(super) queued: usize,
    /// The connection frames to it go over (the first registered).
    pub(super) active: Option<u64>,
    /// Our own writer is still locating, connecting or handshaking.
    pub(super) connecting: bool,
    pub(super) conns: Vec<Conn>,
    /// Why the link must go, set by the caller's thread (a queue over its
    /// limit); a link thread delivers the `Lost`.
    pub(super) failed: Option<String>,
    /// Frames dropped because of `failed`.
    pub(super) dropped: usize,
    /// Signals the writers (frames, output, failure) and a reader waiting
    /// for its writer.
    pub(super) wake: Arc<Condvar>,
}

pub(super) struct Conn {
    pub(super) id: u64,
    pub(super) socket: TcpStream,
    /// The reader left TLS output (not frames) for the writer to send.
    pub(super) flush: bool,
}

impl Peer {
    pub(super) fn new(generation: u64) -> Peer {
        Peer {
            generation,
            queue: VecDeque::new(),
            queued: 0,
            active: None,
            connecting: false,
            conns: Vec::new(),
            failed: None,
            dropped: 0,
            wake: Arc::new(Condvar::new()),
        }
    }

    /// Marks the link to go (the first reason wins), drops the queue and
    /// shuts every connection down, which ends blocked reads and writes.
    pub(super) fn fail(&mut self, reason: String) {
        self.failed.get_or_insert(reason);
        self.dropped += self.queue.len();
        self.queue = VecDeque::new();
        self.queued = 0;
        for conn in &self.conns {
            let _ = conn.socket.shutdown(Shutdown::Both);
        }
        self.wake.notify_all();
    }
}

/// A connection that passed its handshake, registered with its server.
pub(super) struct Registered {
    pub(super) server: ServerId,
    pub(super) generation: u64,
    pub(super) conn: u64,
    pub(super) wake: Arc<Condvar>,
    pub(super) wire: Wire,
}

/// A socket in its handshake, known to [`State::pending`] until dropped.
pub(super) struct Pending {
    pub(super) shared: Arc<Shared>,
    pub(super) id: u64,
}

impl Drop for Pending {
    fn drop(&mut self) {
        lock(&self.shared.state).pending.remove(&self.id);
    }
}

/// One slot of [`MAX_HANDSHAKING`] (and of its address's
/// [`MAX_HANDSHAKING_PER_ADDRESS`]), given back when dropped.
pub(super) struct Slot {
    shared: Arc<Shared>,
    address: IpAddr,
}

impl Slot {
    /// A slot for a connection from `address`, if one is free.
    pub(super) fn take(shared: &Arc<Shared>, address: IpAddr) -> Option<Slot> {
        if shared.handshaking.fetch_add(1, Ordering::AcqRel) >= MAX_HANDSHAKING {
            shared.handshaking.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let mut by_address = lock(&shared.handshaking_by_address);
        let held = by_address.entry(address).or_insert(0);
        if *held >= MAX_HANDSHAKING_PER_ADDRESS {
            drop(by_address);
            shared.handshaking.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        *held += 1;
        Some(Slot {
            shared: shared.clone(),
            address,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut by_address = lock(&self.shared.handshaking_by_address);
        if let Some(held) = by_address.get_mut(&self.address) {
            *held -= 1;
            if *held == 0 {
                by_address.remove(&self.address);
            }
        }
        drop(by_address);
        self.shared.handshaking.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One running thread of [`Shared::live`], counted off when dropped (also
/// when `locate` or `deliver` panicked).
struct Live(Arc<Shared>);

impl Drop for Live {
    fn drop(&mut self) {
        let mut live = lock(&self.0.live);
        *live = live.saturating_sub(1);
        self.0.live_changed.notify_all();
    }
}

thread_local! {
    /// The `Shared` whose thread this is (its address), so that a close
    /// from inside `deliver` does not wait for its own thread.
    static OURS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data whole between statements; a
    // panic in user code (`deliver`) never happens under these locks.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn spawn(
    shared: &Arc<Shared>,
    name: String,
    work: impl FnOnce(Arc<Shared>) + Send + 'static,
) -> io::Result<()> {
    *lock(&shared.live) += 1;
    let live = Live(shared.clone());
    let inner = shared.clone();
    let handle = std::thread::Builder::new().name(name).spawn(move || {
        let _live = live;
        OURS.with(|ours| ours.set(Arc::as_ptr(&inner) as usize));
        work(inner);
    })?;
    let mut threads = lock(&shared.threads);
    // Finished threads are joined by dropping their handles.
    threads.retain(|thread| !thread.is_finished());
    threads.push(handle);
    Ok(())
}

impl Shared {
    pub(super) fn send(self: &Arc<Shared>, to: ServerId, frame: Vec<u8>) {
        if self.closing.load(Ordering::Acquire) {
            return;
        }
        let cost = frame.capacity().saturating_add(FRAME_OVERHEAD);
        let max = self.settings.max_queued_bytes;
        let mut state = lock(&self.state);
        if let Some(peer) = state.peers.get_mut(&to) {
            if peer.failed.is_some() {
                peer.dropped += 1;
            } else if let Some(reason) = refusal(frame.len(), peer.queued, cost, max) {
                peer.fail(reason);
                peer.dropped += 1;
            } else {
                peer.queued += cost;
                peer.queue.push_back(frame);
                peer.wake.notify_all();
            }
            return;
        }
        let generation = state.next_id();
        let mut peer = Peer::new(generation);
        peer.connecting = true;
        match refusal(frame.len(), 0, cost, max) {
            Some(reason) => {
                peer.fail(reason);
                peer.dropped += 1;
            }
            None => {
                peer.queued = cost;
                peer.queue.push_back(frame);
            }
        }
        state.peers.insert(to, peer);
        drop(state);
        let started = spawn(self, format!("ferry-peer-{to}"), move |shared| {
            outgoing(&shared, to, generation)
        });
        if let Err(e) = started {
            // The only Lost delivered on the caller's thread: nothing else
            // is left to deliver it.
            self.lose(to, generation, Failure::Thread(e).to_string());
        }
    }

    /// Whether server `server`'s entry is still incarnation `generation`.
    pub(super) fn is_current(&self, state: &State, server: ServerId, generation: u64) -> bool {
        !self.closing.load(Ordering::Acquire)
            && state
                .peers
                .get(&server)
                .is_some_and(|peer| peer.generation == generation)
    }

    /// `Ok` while a link to `server` is still wanted by incarnation
    /// `generation` (not lost, not failed, not closing).
    pub(super) fn wanted(&self, server: ServerId, generation: u64) -> Result<(), Failure> {
        let state = lock(&self.state);
        match state.peers.get(&server) {
            Some(peer)
                if peer.generation == generation
                    && peer.failed.is_none()
                    && !self.closing.load(Ordering::Acquire) =>
            {
                Ok(())
            }
            _ => Err(Failure::Dropped),
        }
    }

    /// Ends incarnation `generation` of the links with `server`: removes
    /// it, shuts its connections down and delivers one `Lost` (with the
    /// reason it failed for first, if any). Nothing if it is already gone.
    pub(super) fn lose(&self, server: ServerId, generation: u64, reason: String) {
        let _delivering = lock(&self.delivering);
        let mut peer = {
            let mut state = lock(&self.state);
            match state.peers.get(&server) {
                Some(peer) if peer.generation == generation => {}
                _ => return,
            }
            match state.peers.remove(&server) {
                Some(peer) => peer,
                None => return,
            }
        };
        let reason = peer.failed.take().unwrap_or(reason);
        peer.fail(String::new());
        if self.closing.load(Ordering::Acquire) {
            return;
        }
        let reason = match peer.dropped {
            0 => reason,
            1 => format!("{reason} (1 frame queued for it was dropped)"),
            n => format!("{reason} ({n} frames queued for it were dropped)"),
        };
        (self.deliver)(vec![PeerEvent::Lost { server, reason }]);
    }

    /// Hands frames of incarnation `generation` to `deliver`; false (and
    /// nothing delivered) when that incarnation is gone.
    pub(super) fn deliver_frames(
        &self,
        server: ServerId,
        generation: u64,
        frames: Vec<Vec<u8>>,
    ) -> bool {
        let _delivering = lock(&self.delivering);
        let current = self.is_current(&lock(&self.state), server, generation);
        if !current {
            return false;
        }
        let events = frames
            .into_iter()
            .map(|bytes| PeerEvent::Frame {
                from: server,
                bytes,
            })
            .collect();
        (self.deliver)(events);
        true
    }

    /// Remembers a socket in its handshake, or `None` when closing.
    pub(super) fn pending(self: &Arc<Shared>, stream: &TcpStream) -> Option<Pending> {
        let copy = stream.try_clone().ok()?;
        let mut state = lock(&self.state);
        if self.closing.load(Ordering::Acquire) {
            return None;
        }
        let id = state.next_id();
        state.pending.insert(id, copy);
        Some(Pending {
            shared: self.clone(),
            id,
        })
    }

    /// Makes a connection that passed its handshake a link with `server`:
    /// into incarnation `generation` (our own connection: it must still
    /// be current) or into the current one, made if none (theirs).
    pub(super) fn register(
        &self,
        server: ServerId,
        generation: Option<u64>,
        wire: Wire,
    ) -> Result<Registered, Failure> {
        wire.stream.set_read_timeout(None).map_err(Failure::Io)?;
        wire.stream
            .set_write_timeout(Some(self.settings.timeout))
            .map_err(Failure::Io)?;
        let socket = wire.stream.try_clone().map_err(Failure::Io)?;
        let mut state = lock(&self.state);
        if self.closing.load(Ordering::Acquire) {
            return Err(Failure::Dropped);
        }
        let conn = state.next_id();
        let fresh = state.next_id();
        let peer = match generation {
            Some(generation) => match state.peers.get_mut(&server) {
                Some(peer) if peer.generation == generation => {
                    peer.connecting = false;
                    peer
                }
                _ => return Err(Failure::Dropped),
            },
            None => state
                .peers
                .entry(server)
                .or_insert_with(|| Peer::new(fresh)),
        };
        if peer.failed.is_some() {
            return Err(Failure::Dropped);
        }
        peer.conns.push(Conn {
            id: conn,
            socket,
            flush: false,
        });
        peer.active.get_or_insert(conn);
        peer.wake.notify_all();
        Ok(Registered {
            server,
            generation: peer.generation,
            conn,
            wake: peer.wake.clone(),
            wire,
        })
    }

    /// After our own connection to `server` failed: whether another
    /// (theirs) serves it, so that nothing is lost.
    pub(super) fn served_by_another(&self, server: ServerId, generation: u64) -> bool {
        let mut state = lock(&self.state);
        match state.peers.get_mut(&server) {
            Some(peer) if peer.generation == generation => {
                peer.connecting = false;
                peer.failed.is_none() && !peer.conns.is_empty()
            }
            _ => false,
        }
    }

    pub(super) fn close(&self) {
        if self.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        let peers = {
            let mut state = lock(&self.state);
            for socket in state.pending.values() {
                let _ = socket.shutdown(Shutdown::Both);
            }
            std::mem::take(&mut state.peers)
        };
        for mut peer in peers.into_values() {
            peer.fail(String::new());
        }
        // The acceptor is blocked in accept: a connection wakes it, and it
        // sees `closing`.
        let wake = match self.local.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => {
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), self.local.port())
            }
            IpAddr::V6(ip) if ip.is_unspecified() => {
                SocketAddr::new(Ipv6Addr::LOCALHOST.into(), self.local.port())
            }
            _ => self.local,
        };
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));

        let ours = OURS.with(|ours| ours.get()) == self as *const Shared as usize;
        let deadline = Instant::now() + self.settings.timeout;
        let mut live = lock(&self.live);
        while *live > usize::from(ours) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            live = self
                .live_changed
                .wait_timeout(live, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let all_done = *live <= usize::from(ours);
        drop(live);
        let me = std::thread::current().id();
        for thread in std::mem::take(&mut *lock(&self.threads)) {
            // Past the deadline, the threads still running are left to end
            // alone (dropping a handle detaches it).
            if thread.thread().id() != me && (all_done || thread.is_finished()) {
                let _ = thread.join();
            }
        }
    }
}

/// Why a frame of `len` bytes costing `cost` cannot join a queue holding
/// `queued` bytes, if it cannot.
fn refusal(len: usize, queued: usize, cost: usize, max: usize) -> Option<String> {
    if len > MAX_FRAME {
        return Some(format!(
            "a frame of {len} bytes was sent to it, over the limit of {MAX_FRAME}"
        ));
    }
    if queued.saturating_add(cost) > max {
        return Some(format!(
            "more than {max} bytes queued for it (it reads too slowly, or not at all)"
        ));
    }
    None
}
