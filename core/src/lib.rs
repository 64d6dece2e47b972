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
//!   create; [`tree`]: the same for every path of a folder sent whole, and
//!   the folder's manifest.
//! * [`cluster`]: a hub in cluster mode, several servers as one chat
//!   service through a broker (requests out, answers and one ordered log
//!   in), and [`cluster::MemoryBroker`], the broker's semantics in memory.
//! * [`driving`]: the contract a runtime keeps when it drives a
//!   [`Connection`] or a [`Hub`] over real sockets (input, output, timeouts,
//!   back-pressure, closing), written for authors of new adapters.
//!
//! The wire format is specified in [`protocol`] (`docs/PROTOCOL.md` in the
//! repository).
//!
//! # Features
//!
//! * `std` (default): everything above. Without it the crate is `#![no_std]`
//!   and needs only `alloc`, and holds just the codec: [`frame`], [`text`],
//!   [`names`], [`filename`], [`tree`], [`code`], [`error`] and [`secret`].
//!   The state machines ([`Connection`], [`Hub`], [`guest`], [`datagram`],
//!   [`transfer`], [`cluster`], their configuration and the [`driving`]
//!   contract) need
//!   `std`: they keep hash maps and take `Instant`s.
//! * `fuzzing`: exposes `ferry_core::fuzzing`, the harnesses of the
//!   cargo-fuzz targets and of the corpus regression test. **Unstable**: not
//!   covered by semver; it may change or go in any release.
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
#![cfg_attr(not(feature = "std"), no_std)]
// docs.rs (nightly) labels the items that need a feature.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_code)]
#![warn(missing_docs)]

// The codec's `String`s and `Vec`s, with or without `std`.
extern crate alloc;

// The codec: `no_std` + `alloc`.
pub mod code;
pub mod error;
pub mod filename;
pub mod frame;
pub mod names;
pub mod secret;
pub mod text;
pub mod tree;

// The state machines: hash maps, `Instant`s.
#[cfg(feature = "std")]
mod bucket;
#[cfg(feature = "std")]
pub mod client_map;
#[cfg(feature = "std")]
pub mod cluster;
#[cfg(feature = "std")]
pub mod config;
#[cfg(feature = "std")]
pub mod connection;
#[cfg(feature = "std")]
pub mod datagram;
#[cfg(feature = "std")]
pub mod driving;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
#[cfg(feature = "std")]
pub mod guest;
#[cfg(feature = "std")]
pub mod history;
#[cfg(feature = "std")]
pub mod hub;
#[cfg(feature = "std")]
mod input;
#[cfg(feature = "std")]
mod outbox;
#[cfg(feature = "std")]
pub mod source;
#[cfg(feature = "std")]
mod sources;
#[cfg(feature = "std")]
pub mod transfer;

/// The ferry wire protocol, version 1: its specification, `docs/PROTOCOL.md`
/// in the repository, included here so that it ships with the crate.
///
/// Only in the documentation, not in doctests: its code blocks are diagrams
/// and test vectors, not Rust.
#[cfg(all(doc, not(doctest)))]
#[allow(rustdoc::invalid_rust_codeblocks)]
#[doc = include_str!("../PROTOCOL.md")]
pub mod protocol {}

/// The README's example, run as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use code::Code;
pub use error::{DecodeError, Error, LimitExceeded, Malformed, Misuse, Violation};
pub use secret::{ResumeKey, SessionSecret};
pub use text::Text;

/// The `bytes` crate, whose [`Bytes`](bytes::Bytes) the frames, the
/// `poll_transmit` methods and file chunks use: drivers name it from here,
/// so their version always matches the core's.
pub use bytes;

#[cfg(feature = "std")]
pub use client_map::{shrink_if_sparse, ClientMap, ClientSet};
#[cfg(feature = "std")]
pub use config::{ClientConfig, Config, ConfigError, HubConfig};
#[cfg(feature = "std")]
pub use connection::{Connection, Event, Role};
#[cfg(feature = "std")]
pub use driving::CLOSE_LINGER;
#[cfg(feature = "std")]
pub use hub::{ClientId, Hub, HubEvent};
#[cfg(feature = "std")]
pub use source::{ParseSourceError, Source};
