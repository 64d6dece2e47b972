//! [`UdpChat`]: the core's UDP [`Peer`] with a [`Noise`] beneath it when
//! the chat is encrypted, the one type every runtime's loop drives.

use crate::noise::{Entropy, Noise, NoiseEvent, Received, Secret, MAX_PLAINTEXT, QUEUE_MAX};
use bytes::Bytes;
use ferry_core::datagram::{classify, DropCounts, DropReason, Kind, Peer, PeerConfig, PeerEvent};
use ferry_core::Misuse;
use std::collections::VecDeque;
use std::time::Instant;

/// A UDP peer chat, clear or encrypted: the core's [`Peer`] and, when the
/// users share a secret, a [`Noise`] beneath it. Every runtime's loop drives
/// this one type, the same way it would drive a [`Peer`].
///
/// Encrypted, everything the peer sends is sealed (or queued until the
/// handshake completes), and only authenticated plaintext that is a ferry
/// frame reaches it: clear frames, raw text, wrong keys and tampering are
/// dropped as [`DropReason::Unauthenticated`], authentic datagrams that
/// arrive again (duplicated or replayed) as [`DropReason::Duplicate`],
/// never shown, and the peer never goes into raw mode.
#[derive(Debug)]
pub struct UdpChat {
    peer: Peer,
    noise: Option<Noise>,
    events: VecDeque<PeerEvent>,
    /// Drops decided here, not by the peer.
    drops: DropCounts,
}

impl UdpChat {
    /// A chat as `config` says, whose messages carry `session` (see
    /// [`Peer::new`]), encrypted with `secret` when there is one (its
    /// handshake starts at once).
    ///
    /// # Errors
    ///
    /// [`PeerConfig::raw`] with a secret: raw text is clear text.
    pub fn new(
        mut config: PeerConfig,
        now: Instant,
        session: u64,
        secret: Option<(Secret, Entropy)>,
    ) -> Result<UdpChat, Misuse> {
        let noise = match secret {
            Some((secret, entropy)) => {
                if config.raw {
                    return Err(Misuse::InvalidArgument(
                        "raw mode sends clear text, so it cannot be encrypted",
                    ));
                }
                config.max_datagram = config.max_datagram.min(MAX_PLAINTEXT);
                Some(Noise::new(&secret, now, entropy))
            }
            None => None,
        };
        Ok(UdpChat {
            peer: Peer::new(config, now, session),
            noise,
            events: VecDeque::new(),
            drops: DropCounts::default(),
        })
    }

    /// Whether the chat is encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.noise.is_some()
    }

    /// Whether an encrypted chat's handshake has completed (always false
    /// when clear).
    pub fn is_established(&self) -> bool {
        self.noise.as_ref().is_some_and(Noise::is_established)
    }

    /// Sends `text` (see [`Peer::send`]); when encrypted and the handshake
    /// has not completed, it waits in a queue of at most [`QUEUE_MAX`]
    /// datagrams, and is refused once that is full.
    pub fn send(&mut self, now: Instant, text: &str) -> Result<u64, Misuse> {
        if let Some(noise) = &self.noise {
            if !noise.is_established() && noise.queued() >= QUEUE_MAX {
                return Err(Misuse::InvalidArgument(
                    "too many messages wait for the encrypted channel",
                ));
            }
        }
        let seq = self.peer.send(now, text)?;
        self.seal_outgoing();
        Ok(seq)
    }

    /// Takes one datagram that arrived from the other peer.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        let Some(noise) = &mut self.noise else {
            self.peer.handle_datagram(now, datagram);
            return;
        };
        match noise.handle_datagram(now, datagram) {
            // Only ferry frames: an authenticated peer never sends raw
            // text, and this one must never fall into raw mode.
            Received::Plaintext(plain) if classify(&plain) == Kind::Frame => {
                self.peer.handle_datagram(now, &plain);
            }
            Received::Plaintext(_) => self.drop_one(DropReason::Malformed),
            Received::Dropped => self.drop_one(DropReason::Unauthenticated),
            Received::Duplicate => self.drop_one(DropReason::Duplicate),
            Received::Consumed => {}
        }
        self.after_noise();
    }

    /// Retransmits what is due at `now` (calling it early is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.peer.handle_timeout(now);
        if let Some(noise) = &mut self.noise {
            noise.handle_timeout(now);
        }
        self.after_noise();
    }

    fn drop_one(&mut self, reason: DropReason) {
        self.drops.add(reason);
        self.events.push_back(PeerEvent::Dropped { reason });
    }

    fn after_noise(&mut self) {
        if let Some(noise) = &mut self.noise {
            while let Some(event) = noise.poll_event() {
                match event {
                    NoiseEvent::Established => self.events.push_back(PeerEvent::Encrypted),
                }
            }
        }
        self.seal_outgoing();
    }

    /// Moves what the peer has to send into the layer beneath.
    fn seal_outgoing(&mut self) {
        let Some(noise) = &mut self.noise else {
            return;
        };
        while let Some(plain) = self.peer.poll_transmit() {
            // Not kept only when the queue is full: the peer retransmits
            // a message, or reports it lost.
            noise.seal(&plain);
        }
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let peer = self.peer.poll_timeout();
        let noise = self.noise.as_ref().and_then(Noise::poll_timeout);
        match (peer, noise) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next datagram to send to the other peer.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        match &mut self.noise {
            Some(noise) => noise.poll_transmit(),
            None => self.peer.poll_transmit(),
        }
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<PeerEvent> {
        self.events.pop_front().or_else(|| self.peer.poll_event())
    }

    /// Messages sent and not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.peer.unacked()
    }

    /// Dropped datagrams so far, by reason, those of the layer beneath
    /// included.
    pub fn drops(&self) -> DropCounts {
        let (mut drops, own) = (self.peer.drops().clone(), &self.drops);
        drops.malformed += own.malformed;
        drops.unauthenticated += own.unauthenticated;
        drops.duplicate += own.duplicate;
        drops
    }
}
