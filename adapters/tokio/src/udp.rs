//! Peer-to-peer chat over UDP: one task, one socket, one [`UdpChat`] (a
//! [`datagram::Peer`](ferry_core::datagram::Peer), encrypted when the users
//! share a secret).

use bytes::Bytes;
use ferry_core::datagram::{PeerConfig, PeerEvent, MAX_DATAGRAM};
use ferry_files::{os_entropy, session_number, UdpCommand};
use ferry_noise::{Entropy, Secret, UdpChat};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Sleep;

/// Datagrams read per poll, so that a flood cannot keep the task (and the
/// runtime's thread) from its timers and commands.
const DATAGRAMS_PER_POLL: usize = 64;

/// Chats over `socket` (already connected to the peer, so that the kernel
/// discards datagrams from anyone else) until every sender of `commands`
/// is gone. With a `secret`, the chat is encrypted (`docs/PROTOCOL.md`
/// §9.7). What the peer reports goes to `events`.
///
/// # Errors
///
/// `InvalidInput` when `config` asks for raw mode with a secret. Nothing
/// else: a datagram the socket refuses is lost, as the network could lose
/// it (the peer retransmits or reports the message lost), and failed
/// receives (an ICMP "port unreachable" while the other peer is not up
/// yet) are ignored.
pub async fn run_udp_chat(
    socket: UdpSocket,
    config: PeerConfig,
    secret: Option<Secret>,
    commands: UnboundedReceiver<UdpCommand>,
    events: mpsc::Sender<PeerEvent>,
) -> io::Result<()> {
    let peer = UdpChat::new(
        config,
        Instant::now(),
        session_number(),
        secret.map(|s| (s, Box::new(os_entropy()) as Entropy)),
    )
    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let mut chat = Chat {
        socket,
        peer,
        commands,
        events,
        // One byte more than allowed, so that an oversize datagram shows as
        // such instead of being cut to a valid-looking length.
        buf: vec![0u8; MAX_DATAGRAM + 1],
        unsent: None,
        alarm: Box::pin(tokio::time::sleep_until(Instant::now().into())),
    };
    std::future::poll_fn(|cx| chat.poll(cx)).await
}

struct Chat {
    socket: UdpSocket,
    peer: UdpChat,
    commands: UnboundedReceiver<UdpCommand>,
    events: mpsc::Sender<PeerEvent>,
    buf: Vec<u8>,
    /// A datagram tokio could not send yet: its socket had not reported
    /// room (a new socket has not, until the driver's first turn). Sent
    /// first when the task is woken for room; the rest waits in the peer.
    unsent: Option<Bytes>,
    alarm: Pin<Box<Sleep>>,
}

impl Chat {
    /// Sends what the peer queued. A datagram the socket refuses is lost,
    /// as the network could lose it; the peer retransmits or reports it.
    fn transmit(&mut self, cx: &mut Context<'_>) {
        while let Some(datagram) = self.unsent.take().or_else(|| self.peer.poll_transmit()) {
            if self.socket.poll_send(cx, &datagram).is_pending() {
                self.unsent = Some(datagram);
                return;
            }
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let now = Instant::now();
        loop {
            match self.commands.poll_recv(cx) {
                Poll::Ready(Some(UdpCommand::Send { text, reply })) => {
                    let _ = reply.send(self.peer.send(now, &text));
                }
                Poll::Ready(Some(UdpCommand::Status { reply })) => {
                    let _ = reply.send((self.peer.unacked(), self.peer.drops()));
                }
                Poll::Ready(Some(_)) => {}
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => break,
            }
        }
        let mut more = false;
        for _ in 0..DATAGRAMS_PER_POLL {
            let mut datagram = ReadBuf::new(&mut self.buf);
            match self.socket.poll_recv(cx, &mut datagram) {
                Poll::Ready(Ok(())) => self.peer.handle_datagram(now, datagram.filled()),
                // ICMP "port unreachable" and the like: nothing arrived.
                Poll::Ready(Err(_)) => {}
                Poll::Pending => {
                    more = false;
                    break;
                }
            }
            more = true;
        }
        if self.peer.poll_timeout().is_some_and(|at| at <= now) {
            self.peer.handle_timeout(now);
        }
        self.transmit(cx);
        while let Some(event) = self.peer.poll_event() {
            let _ = self.events.send(event);
        }
        if let Some(at) = self.peer.poll_timeout() {
            self.alarm.as_mut().reset(at.into());
            more |= self.alarm.as_mut().poll(cx).is_ready();
        }
        if more {
            // Datagrams left, or a timer already due: the next poll goes on.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}
