//! ferry on blocking `std::net` sockets, in the style of the Qt seeds'
//! blocking mode: a server with one thread per connection feeding one
//! [`Hub`](ferry_core::Hub), a client whose calls block with a timeout, and
//! [`spawn_udp`], peer-to-peer chat over UDP.
//!
//! Every protocol decision is ferry-core's; this crate moves bytes between
//! sockets and the core, keeps the clock, and runs files through
//! [`ferry_files`].
//!
//! TLS comes from `ferry-tls`: [`spawn_server_tls`] serves TLS and plain
//! clients on one port, told apart by their first byte, and
//! [`spawn_client_tls`] (or [`Client::connect_tls`]) verifies the server
//! ([`ClientTls`]) before it writes a single ferry byte.
//!
//! # Example
//!
//! ```
//! use ferry_core::HubConfig;
//! use ferry_std::{spawn_server, Client};
//! use std::time::Duration;
//!
//! let server = spawn_server("127.0.0.1:0".parse().unwrap(), HubConfig::default(), None).unwrap();
//! let mut alice = Client::connect(server.local_addr(), "alice", Duration::from_secs(5)).unwrap();
//! alice.say("hello").unwrap();
//! let echo = alice.next_message(Duration::from_secs(5)).unwrap();
//! assert_eq!(echo, ("alice".to_string(), "hello".to_string()));
//! server.shutdown("done");
//! server.join().unwrap();
//! ```

mod client;
mod server;
mod udp;

pub use client::{spawn_client, spawn_client_tls, Client, ClientTls};
pub use server::{spawn_server, spawn_server_tls};
pub use udp::spawn_udp;
