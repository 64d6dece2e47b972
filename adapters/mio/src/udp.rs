//! Peer-to-peer chat over UDP on a mio event loop: one thread, one socket,
//! one [`UdpChat`] (a [`datagram::Peer`](ferry_core::datagram::Peer),
//! encrypted when the users share a secret).

use crate::sock::commander;
use ferry_core::datagram::{PeerConfig, PeerEvent, MAX_DATAGRAM};
use ferry_files::{os_entropy, session_number, UdpCommand, UdpHandle};
use ferry_noise::{Entropy, Secret, UdpChat};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);

/// Chats over `socket` (already bound) with the peer at `remote`, on a
/// thread of its own.
pub(crate) fn spawn(
    socket: std::net::UdpSocket,
    remote: SocketAddr,
    config: PeerConfig,
    secret: Option<Secret>,
) -> io::Result<UdpHandle> {
    let peer = UdpChat::new(
        config,
        Instant::now(),
        session_number(),
        secret.map(|s| (s, Box::new(os_entropy()) as Entropy)),
    )
    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    socket.connect(remote)?;
    socket.set_nonblocking(true)?;
    let local_addr = socket.local_addr()?;
    let mut socket = UdpSocket::from_std(socket);
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut socket, SOCKET, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (command_tx, commands) = mpsc::channel();
    let (events_tx, events) = mpsc::channel();
    let chat = Chat {
        poll,
        _waker: waker.clone(),
        socket,
        peer,
        commands,
        events: events_tx,
    };
    let thread = thread::Builder::new()
        .name("ferry-mio-udp".into())
        .spawn(move || {
            // A failed poll ends the chat; the handle then sees no answers.
            let _ = chat.run();
        })?;
    Ok(UdpHandle::new(
        local_addr,
        commander(command_tx, waker),
        events,
        thread,
    ))
}

struct Chat {
    poll: Poll,
    /// Keeps the waker's file descriptor open as long as the loop runs: if
    /// the handle's commander held the last reference, its final wake-up
    /// would close the descriptor and could vanish from the poll unseen.
    _waker: Arc<Waker>,
    socket: UdpSocket,
    peer: UdpChat,
    commands: Receiver<UdpCommand>,
    events: Sender<PeerEvent>,
}

impl Chat {
    fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(8);
        // One byte more than allowed, so that an oversize datagram shows as
        // such instead of being cut to a valid-looking length.
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        loop {
            let timeout = self
                .peer
                .poll_timeout()
                .map(|at| at.saturating_duration_since(Instant::now()));
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    SOCKET => self.receive(now, &mut buf),
                    WAKER if !self.take_commands(now) => return Ok(()),
                    _ => {}
                }
            }
            if self.peer.poll_timeout().is_some_and(|at| at <= now) {
                self.peer.handle_timeout(now);
            }
            self.transmit();
            while let Some(event) = self.peer.poll_event() {
                let _ = self.events.send(event);
            }
        }
    }

    /// Reads every waiting datagram: readiness is edge-triggered.
    fn receive(&mut self, now: Instant, buf: &mut [u8]) {
        loop {
            match self.socket.recv(buf) {
                Ok(n) => self.peer.handle_datagram(now, &buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // ICMP "port unreachable" while the other peer is not up,
                // and the like: nothing arrived.
                Err(_) => {}
            }
        }
    }

    /// Carries out the handle's commands; false once the handle is gone.
    fn take_commands(&mut self, now: Instant) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(UdpCommand::Send { text, reply }) => {
                    let _ = reply.send(self.peer.send(now, &text));
                }
                Ok(UdpCommand::Status { reply }) => {
                    let _ = reply.send((self.peer.unacked(), self.peer.drops()));
                }
                Ok(_) => {}
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Sends what the peer queued. A datagram the socket refuses is lost,
    /// as the network could lose it; the peer retransmits or reports it.
    fn transmit(&mut self) {
        while let Some(datagram) = self.peer.poll_transmit() {
            let _ = self.socket.send(&datagram);
        }
    }
}
