//! Several ferry servers as one chat service: the Redis side of
//! [`ferry_core::cluster`].
//!
//! A hub in cluster mode asks a broker for every join, message and leave
//! and delivers room events only as the broker's ordered log brings them
//! back (`docs/CLUSTER.md`). This crate is that broker in Redis:
//! [`RedisBroker`] carries out each [`BusRequest`](ferry_core::cluster::BusRequest)
//! with one Lua script (names claimed atomically, the room's `seq`
//! assigned in the same step as the append, repeats of an operation
//! answered as the first time), reads the log (`ferry:events`) and each
//! server's inbox, renews leases and reaps servers that stopped renewing.
//! Its semantics are [`MemoryBroker`](ferry_core::cluster::MemoryBroker)'s,
//! which `tests/conformance.rs` checks by running the same requests
//! against both.
//!
//! Only a single Redis (or a primary) is supported: the scripts name keys
//! they compute, which Redis Cluster does not allow.
//!
//! Files never cross Redis: [`Peers`] links the servers directly, an
//! ordered pipe of opaque frames over TLS authenticated by the cluster
//! secret ([`peers`]).
//!
//! # Example
//!
//! ```no_run
//! use ferry_cluster::{BrokerSettings, RedisBroker};
//! use ferry_core::cluster::{BusRequest, OpId, ServerId};
//! use ferry_core::ClientId;
//! use std::time::Duration;
//!
//! let mut broker = RedisBroker::connect(
//!     "redis://127.0.0.1:6379",
//!     Duration::from_secs(2),
//!     BrokerSettings::default(),
//! )?;
//! let server = ServerId(0x1234);
//! let join = BusRequest::Join {
//!     op: OpId(1),
//!     client: ClientId(7),
//!     room: "lobby".into(),
//!     room_key: "lobby".into(),
//!     name: "alice".into(),
//!     name_key: ferry_core::names::name_key("alice"),
//!     source: None,
//!     max_members: 1000,
//!     max_per_source: 64,
//! };
//! println!("{:?}", broker.execute(server, &join, None)?);
//! let batch = broker.read_events("0", 100, None)?;
//! println!("{:?}", batch.events);
//! # Ok::<(), ferry_cluster::ClusterError>(())
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod broker;
mod error;
pub mod link;
#[cfg(unix)]
pub mod peers;
#[cfg(unix)]
pub mod relays;
mod reply;

pub use broker::{BrokerSettings, EventBatch, RedisBroker, EVENTS, MAX_PIPELINE};
pub use error::ClusterError;
pub use link::{Link, LinkSettings};
#[cfg(unix)]
pub use peers::{
    DeliverPeer, Locate, PeerAddress, PeerEvent, PeerKey, PeerSettings, Peers, MAX_FRAME,
};
#[cfg(unix)]
pub use relays::RelayLinks;
