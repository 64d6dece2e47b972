//! Peer-to-peer chat over a UDP socket, driven by a
//! [`datagram::Peer`](ferry_core::datagram::Peer).

use ferry_core::datagram::{DropCounts, Peer, PeerConfig, PeerEvent, MAX_DATAGRAM};
use ferry_core::Misuse;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

/// The receiving thread looks at the stop flag at least this often.
const TICK: Duration = Duration::from_millis(100);

/// A datagram chat with one other peer, running on a thread of its own.
///
/// The socket is connected to the peer, so the kernel discards datagrams
/// from anyone else; what the peer sends that is not a valid datagram frame
/// is dropped and counted ([`drops`](Self::drops)).
#[derive(Debug)]
pub struct UdpChat {
    shared: Arc<Shared>,
    events: Receiver<PeerEvent>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    peer: Mutex<Peer>,
    socket: UdpSocket,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Peer> {
        // A panic elsewhere leaves the peer as consistent as any stop.
        self.peer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends what the peer has to send. A failed send (the peer's port is
    /// closed, say) loses the datagram, as the network could; the peer
    /// retransmits or reports the message lost.
    fn transmit(&self, peer: &mut Peer) {
        while let Some(datagram) = peer.poll_transmit() {
            let _ = self.socket.send(&datagram);
        }
    }

    fn forward_events(peer: &mut Peer, events: &Sender<PeerEvent>) {
        while let Some(event) = peer.poll_event() {
            let _ = events.send(event);
        }
    }
}

impl UdpChat {
    /// Chats over `socket` (already bound) with the peer at `remote`.
    pub fn start(socket: UdpSocket, remote: SocketAddr, config: PeerConfig) -> io::Result<Self> {
        socket.connect(remote)?;
        let now = Instant::now();
        let shared = Arc::new(Shared {
            peer: Mutex::new(Peer::new(config, now, session_number())),
            socket,
            stop: AtomicBool::new(false),
        });
        let (events_tx, events) = mpsc::channel();
        let receiver = shared.clone();
        let thread = thread::Builder::new()
            .name("ferry-std-udp".into())
            .spawn(move || receive_loop(&receiver, &events_tx))?;
        Ok(UdpChat {
            shared,
            events,
            thread: Some(thread),
        })
    }

    /// The local address (the real port when bound to port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.socket.local_addr()
    }

    /// Sends `text`; returns its sequence number.
    pub fn send(&self, text: &str) -> Result<u64, Misuse> {
        let mut peer = self.shared.lock();
        let seq = peer.send(Instant::now(), text)?;
        self.shared.transmit(&mut peer);
        Ok(seq)
    }

    /// Messages, deliveries, losses and drops, as they happen.
    pub fn events(&self) -> &Receiver<PeerEvent> {
        &self.events
    }

    /// Messages still waiting for an acknowledgement.
    pub fn unacked(&self) -> usize {
        self.shared.lock().unacked()
    }

    /// Dropped datagrams so far, by reason.
    pub fn drops(&self) -> DropCounts {
        self.shared.lock().drops().clone()
    }

    /// Stops the receiving thread.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for UdpChat {
    fn drop(&mut self) {
        self.stop();
    }
}

fn receive_loop(shared: &Shared, events: &Sender<PeerEvent>) {
    // One byte more than allowed, so that an oversize datagram shows as
    // such instead of being cut to a valid-looking length.
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    while !shared.stop.load(Ordering::SeqCst) {
        let wait = shared
            .lock()
            .poll_timeout()
            .map_or(TICK, |at| at.saturating_duration_since(Instant::now()))
            .clamp(Duration::from_millis(1), TICK);
        // Only fails for a zero duration, which the clamp rules out.
        let _ = shared.socket.set_read_timeout(Some(wait));
        let received = shared.socket.recv(&mut buf);
        let now = Instant::now();
        let mut peer = shared.lock();
        // An error is a timeout, or an ICMP "port unreachable" while the
        // other peer is not up yet: nothing arrived either way.
        if let Ok(n) = received {
            peer.handle_datagram(now, &buf[..n]);
        }
        if peer.poll_timeout().is_some_and(|at| at <= now) {
            peer.handle_timeout(now);
        }
        shared.transmit(&mut peer);
        Shared::forward_events(&mut peer, events);
    }
}

/// A number that differs between runs: the session the peer's messages
/// carry, so that the other end can tell a restart from duplicates. Not a
/// secret; std's randomly seeded hasher, the time and the process id make
/// it unique enough.
fn session_number() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(since) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
        hasher.write_u128(since.as_nanos());
    }
    hasher.finish()
}
