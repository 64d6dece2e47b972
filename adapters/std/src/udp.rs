//! Peer-to-peer chat over a UDP socket, driven by a
//! [`UdpChat`]: a [`datagram::Peer`](ferry_core::datagram::Peer), encrypted
//! when the users share a secret.

use ferry_core::datagram::{PeerConfig, PeerEvent, MAX_DATAGRAM};
use ferry_files::{os_entropy, session_number, UdpCommand, UdpHandle};
use ferry_noise::{Entropy, Secret, UdpChat};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// The receiving thread looks at the stop flag at least this often.
const TICK: Duration = Duration::from_millis(100);

/// Chats over `socket` (already bound) with the peer at `remote`, on a
/// thread of its own that receives and keeps the timers; messages are sent
/// from the caller's thread, under the peer's lock.
///
/// The socket is connected to the peer, so the kernel discards datagrams
/// from anyone else; what the peer sends that is a ferry frame but not a
/// valid datagram frame is dropped and counted ([`UdpHandle::drops`]), and
/// what is not a ferry frame at all is a raw-text line
/// ([`PeerEvent::RawLine`]).
///
/// With a `secret`, the chat is encrypted (`docs/PROTOCOL.md` §9.7): the
/// handshake starts at once, messages wait for it, and what fails
/// authentication is dropped and counted, never shown.
///
/// # Errors
///
/// The socket cannot be connected, the thread cannot be started, or
/// `config` asks for raw mode together with a secret (`InvalidInput`).
pub fn spawn_udp(
    socket: UdpSocket,
    remote: SocketAddr,
    config: PeerConfig,
    secret: Option<Secret>,
) -> io::Result<UdpHandle> {
    let chat = UdpChat::new(
        config,
        Instant::now(),
        session_number(),
        secret.map(|s| (s, Box::new(os_entropy()) as Entropy)),
    )
    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    socket.connect(remote)?;
    let local_addr = socket.local_addr()?;
    let shared = Arc::new(Shared {
        peer: Mutex::new(chat),
        socket,
        stop: AtomicBool::new(false),
    });
    let (events_tx, events) = mpsc::channel();
    let receiver = shared.clone();
    let thread = thread::Builder::new()
        .name("ferry-std-udp".into())
        .spawn(move || receive_loop(&receiver, &events_tx))?;
    let stopper = StopOnDrop(shared.clone());
    let command = Box::new(move |command: UdpCommand| {
        let shared = &stopper.0;
        let mut peer = shared.lock();
        match command {
            UdpCommand::Send { text, reply } => {
                let sent = peer.send(Instant::now(), &text);
                shared.transmit(&mut peer);
                let _ = reply.send(sent);
            }
            UdpCommand::Status { reply } => {
                let _ = reply.send((peer.unacked(), peer.drops()));
            }
            _ => {}
        }
    });
    Ok(UdpHandle::new(local_addr, command, events, thread))
}

/// The peer, its socket, and the receiving thread's stop flag.
struct Shared {
    peer: Mutex<UdpChat>,
    socket: UdpSocket,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, UdpChat> {
        // A panic elsewhere leaves the peer as consistent as any stop.
        self.peer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends what the peer has to send. A failed send (the peer's port is
    /// closed, say) loses the datagram, as the network could; the peer
    /// retransmits or reports the message lost.
    fn transmit(&self, peer: &mut UdpChat) {
        while let Some(datagram) = peer.poll_transmit() {
            let _ = self.socket.send(&datagram);
        }
    }

    fn forward_events(peer: &mut UdpChat, events: &Sender<PeerEvent>) {
        while let Some(event) = peer.poll_event() {
            let _ = events.send(event);
        }
    }
}

/// Stops the receiving thread when the handle's commander goes.
struct StopOnDrop(Arc<Shared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::SeqCst);
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
