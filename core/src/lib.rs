//! ferry-core parses and emits every frame of the ferry protocol (text chat
//! and file transfer over TCP) and runs its connection and chat-room state
//! machines, with no I/O at all.
//!
//! Bytes, time and file contents come in as method arguments; bytes to send,
//! events and the next timeout come out of `poll_*` methods. No sockets,
//! files, clocks, threads or randomness live here, so the same core runs
//! under blocking std, mio, async runtimes, a fuzzer or a simulated network.
//!
//! * [`frame`]: the codec. Incremental, zero-copy, limit-checked before any
//!   body is buffered.
//! * [`Connection`]: one link, client or server side (handshake, chat,
//!   liveness, file transfers with flow control, resume and BLAKE3
//!   verification).
//! * [`Hub`]: the server side of many connections: rooms, unique names,
//!   broadcast, relayed transfers, flood and slow-reader limits; it also
//!   serves raw-text [`guest`]s (`nc`, `telnet`) as room members.
//! * [`filename::check_file_name`]: whether an incoming file name is safe to
//!   create.
//! * [`driving`]: the contract a runtime keeps when it drives a
//!   [`Connection`] or a [`Hub`] over real sockets (input, output, timeouts,
//!   back-pressure, closing), written for authors of new adapters.
//!
//! The wire format is specified in `docs/PROTOCOL.md`.
//!
//! # Example
//!
//! A client and a hub talking through memory:
//!
//! ```
//! use ferry_core::{ClientConfig, Connection, Event, Hub, HubConfig};
//! use std::time::Instant;
//!
//! let now = Instant::now();
//! let mut hub = Hub::new(HubConfig::default(), now);
//! let alice_id = hub.connect(now);
//! let mut alice = Connection::client(ClientConfig::new("alice"), now);
//!
//! // Move bytes both ways until neither side has anything to say.
//! let mut pump = |hub: &mut Hub, alice: &mut Connection| loop {
//!     let mut moved = false;
//!     while let Some(bytes) = alice.poll_transmit() {
//!         hub.handle_input(alice_id, now, &bytes);
//!         moved = true;
//!     }
//!     while let Some(bytes) = hub.poll_transmit(alice_id) {
//!         alice.handle_input(now, &bytes);
//!         moved = true;
//!     }
//!     if !moved {
//!         break;
//!     }
//! };
//!
//! pump(&mut hub, &mut alice);
//! alice.say(now, "hello, room").unwrap();
//! pump(&mut hub, &mut alice);
//!
//! let events: Vec<Event> = std::iter::from_fn(|| alice.poll_event()).collect();
//! assert!(matches!(&events[0], Event::Welcomed { name, .. } if name == "alice"));
//! assert!(events.iter().any(|e| matches!(e,
//!     Event::Message { from, text, .. } if from == "alice" && text == "hello, room")));
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod bucket;
pub mod client_map;
pub mod code;
pub mod config;
pub mod connection;
pub mod datagram;
pub mod driving;
pub mod error;
pub mod filename;
pub mod frame;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod guest;
pub mod hub;
mod input;
pub mod names;
mod outbox;
pub mod secret;
pub mod source;
mod sources;
pub mod text;
pub mod transfer;

pub use client_map::{ClientMap, ClientSet};
pub use code::Code;
pub use config::{ClientConfig, Config, ConfigError, HubConfig};
pub use connection::{Connection, Event, Role};
pub use driving::CLOSE_LINGER;
pub use error::{DecodeError, Error, LimitExceeded, Malformed, Misuse, Violation};
pub use hub::{ClientId, Hub, HubEvent};
pub use secret::{ResumeKey, SessionSecret};
pub use source::Source;
pub use text::Text;

/// The `bytes` crate, whose [`Bytes`](bytes::Bytes) the `poll_transmit`
/// methods and file chunks use: drivers name it from here, so their
/// version always matches the core's.
pub use bytes;
