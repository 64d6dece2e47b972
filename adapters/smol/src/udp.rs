//! Peer-to-peer chat over UDP on async-io: one task, one socket, one
//! [`UdpChat`] (a [`datagram::Peer`](ferry_core::datagram::Peer),
//! encrypted when the users share a secret).

use crate::alarm::Alarm;
use async_channel::Receiver;
use async_net::UdpSocket;
use ferry_core::datagram::{PeerConfig, PeerEvent, MAX_DATAGRAM};
use ferry_files::{os_entropy, session_number, UdpCommand};
use ferry_noise::{Entropy, Secret, UdpChat};
use futures_lite::future;
use std::io;
use std::sync::mpsc;
use std::time::Instant;

/// What woke the chat task.
enum Wake {
    Datagram(io::Result<usize>),
    Command(Option<UdpCommand>),
    Timer,
}

/// Chats over `socket`, which must be connected to the other peer (so that
/// the kernel discards datagrams from anyone else), until `commands` is
/// closed. What happens goes to `events`. Runs in any executor built on
/// async-io.
///
/// With a `secret`, the chat is encrypted (`docs/PROTOCOL.md` §9.7).
///
/// # Errors
///
/// `InvalidInput` when `config` asks for raw mode with a secret. Nothing
/// else today: failed sends lose a datagram (the peer retransmits or
/// reports the message lost), failed receives are ignored (an ICMP "port
/// unreachable" while the other peer is not up yet). The `io::Result`
/// leaves room for failures that must stop the chat.
pub async fn run_udp_chat(
    socket: UdpSocket,
    config: PeerConfig,
    secret: Option<Secret>,
    commands: Receiver<UdpCommand>,
    events: mpsc::Sender<PeerEvent>,
) -> io::Result<()> {
    let mut peer = UdpChat::new(
        config,
        Instant::now(),
        session_number(),
        secret.map(|s| (s, Box::new(os_entropy()) as Entropy)),
    )
    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    // One byte more than allowed, so that an oversize datagram shows as such
    // instead of being cut to a valid-looking length.
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut alarm = Alarm::new();
    loop {
        alarm.arm(peer.poll_timeout());
        let wake = future::or(
            async { Wake::Command(commands.recv().await.ok()) },
            future::or(
                async { Wake::Datagram(socket.recv(&mut buf).await) },
                async {
                    alarm.ring().await;
                    Wake::Timer
                },
            ),
        )
        .await;
        let now = Instant::now();
        match wake {
            Wake::Datagram(Ok(n)) => peer.handle_datagram(now, &buf[..n]),
            Wake::Datagram(Err(_)) | Wake::Timer => {}
            Wake::Command(Some(UdpCommand::Send { text, reply })) => {
                let _ = reply.send(peer.send(now, &text));
            }
            Wake::Command(Some(UdpCommand::Status { reply })) => {
                let _ = reply.send((peer.unacked(), peer.drops()));
            }
            Wake::Command(Some(_)) => {}
            Wake::Command(None) => return Ok(()),
        }
        if peer.poll_timeout().is_some_and(|at| at <= now) {
            peer.handle_timeout(now);
        }
        while let Some(datagram) = peer.poll_transmit() {
            let _ = socket.send(&datagram).await;
        }
        while let Some(event) = peer.poll_event() {
            let _ = events.send(event);
        }
    }
}
