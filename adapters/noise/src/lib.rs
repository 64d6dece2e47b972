//! The encrypted mode of ferry's UDP peer chat (`docs/PROTOCOL.md` §9.7):
//! a Noise `NNpsk0` handshake keyed by a secret both peers were given, then
//! every datagram sealed with an explicit nonce, so that loss and
//! reordering cost nothing but the datagram lost.
//!
//! Two layers, both sans-IO like [`ferry_core::datagram::Peer`] (datagrams
//! and time in; datagrams, events and a deadline out; no sockets, no clock,
//! and no randomness of their own: the adapter supplies [`Entropy`]):
//!
//! * [`Noise`] turns received datagrams into plaintext datagrams (or a drop)
//!   and plaintext into datagrams to send; it runs the handshake, its
//!   retransmissions and its restart when the other peer restarts.
//! * [`UdpChat`] is what every runtime's loop drives: a core
//!   [`Peer`](ferry_core::datagram::Peer) with or without a [`Noise`] beneath it. One type, so that the
//!   std, mio and smol loops cannot drift apart.
//!
//! The crypto lives here, not in `ferry-core`, which by the project's rule
//! holds none, and not in `ferry-files`, which is about disk: the three
//! runtimes and any later one share this crate.
//!
//! ```
//! use ferry_noise::{Secret, UdpChat};
//! use ferry_core::datagram::{PeerConfig, PeerEvent};
//! use std::time::Instant;
//!
//! // Entropy from a counter, for the example only: adapters use the OS.
//! fn entropy(seed: u8) -> ferry_noise::Entropy {
//!     let mut n = seed;
//!     Box::new(move |buf: &mut [u8]| buf.iter_mut().for_each(|b| { n = n.wrapping_add(1); *b = n }))
//! }
//! let now = Instant::now();
//! let secret = Secret::from_text("correct horse battery staple");
//! let mut alice = UdpChat::new(PeerConfig::new("alice"), now, 1, Some((secret.clone(), entropy(0)))).unwrap();
//! let mut bob = UdpChat::new(PeerConfig::new("bob"), now, 2, Some((secret, entropy(99)))).unwrap();
//! alice.send(now, "hi bob").unwrap();
//! for _ in 0..4 {
//!     while let Some(d) = alice.poll_transmit() { bob.handle_datagram(now, &d); }
//!     while let Some(d) = bob.poll_transmit() { alice.handle_datagram(now, &d); }
//! }
//! let events: Vec<PeerEvent> = std::iter::from_fn(|| bob.poll_event()).collect();
//! assert!(events.iter().any(|e| matches!(e, PeerEvent::Message { text, .. } if &**text == "hi bob")));
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod chat;
mod noise;

pub use chat::UdpChat;
pub use noise::{
    Entropy, Noise, NoiseEvent, Received, Secret, FIRST_RETRY, MAX_PLAINTEXT, OVERHEAD, PATTERN,
    PENDING_MAX, PROLOGUE, PSK_CONTEXT, QUEUE_MAX, REPLAY_WINDOW, RESPONSE_SENDS, RETRY_CAP,
};
