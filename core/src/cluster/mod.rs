//! Several hubs as one chat service: the sans-IO half of a cluster.
//!
//! A hub in cluster mode ([`HubConfig::cluster`](crate::HubConfig::cluster))
//! decides nothing that needs the whole cluster on its own. Joins, chat
//! messages, direct messages to members it does not hold, announcements and
//! leaves become [`BusRequest`]s, which the driver takes with
//! [`Hub::poll_bus`](crate::Hub::poll_bus) and carries to a broker (Redis,
//! through `ferry-cluster`; or the [`MemoryBroker`] of this module in
//! tests). The broker answers each request once ([`BusInput::Answer`]) and
//! appends room events to one ordered log, which every hub reads back and
//! feeds to [`Hub::handle_bus`](crate::Hub::handle_bus) as
//! [`BusInput::Event`]s: a hub delivers its own members' messages only when
//! they come back from the log, like everyone else's, so every member on
//! every server sees one order per room, with the room's `seq` assigned by
//! the broker.
//!
//! `docs/CLUSTER.md` is the design; this module is its core:
//!
//! * [`bus`]: what hubs and brokers say to each other;
//! * [`replica`]: what a hub knows of one room (members across the cluster,
//!   the last `seq` applied, events held until a snapshot arrives);
//! * [`codec`]: the bytes of an event or request as a broker stores them;
//! * [`memory`]: [`MemoryBroker`], the broker's semantics in memory, which
//!   every broker link must match (the Redis scripts mirror it);
//! * [`relay`]: a file relayed between members on two servers, as the
//!   frames their hubs send each other over a direct link;
//! * [`refusal`]: the words of a broker's refusals, shared by every broker.
//!
//! # Example: two hubs, one room
//!
//! ```
//! use ferry_core::cluster::{MemoryBroker, ServerId};
//! use ferry_core::{ClientConfig, Connection, Hub, HubConfig};
//! use std::time::Instant;
//!
//! let now = Instant::now();
//! let mut broker = MemoryBroker::new();
//! let mut hubs = [ServerId(1), ServerId(2)]
//!     .map(|server| Hub::new(HubConfig::default().cluster(server), now));
//! let mut read = [0, 0]; // each hub's place in the broker's log
//!
//! let alice = hubs[0].connect(now);
//! let bob = hubs[1].connect(now);
//! let mut clients = [
//!     Connection::client(ClientConfig::new("alice"), now),
//!     Connection::client(ClientConfig::new("bob"), now),
//! ];
//! for _ in 0..4 {
//!     for (k, (hub, id)) in hubs.iter_mut().zip([alice, bob]).enumerate() {
//!         while let Some(bytes) = clients[k].poll_transmit() {
//!             hub.handle_input(id, now, &bytes);
//!         }
//!         // Requests to the broker, its answers and the log back.
//!         while let Some(request) = hub.poll_bus() {
//!             let answer = broker.execute(hub.cluster_server().unwrap(), request, 0);
//!             hub.handle_bus(now, answer);
//!         }
//!         for event in broker.events_after(read[k]) {
//!             hub.handle_bus(now, event);
//!             read[k] += 1;
//!         }
//!         while let Some(bytes) = hub.poll_transmit(id) {
//!             clients[k].handle_input(now, &bytes);
//!         }
//!     }
//! }
//! assert!(clients[0].is_open() && clients[1].is_open());
//! // Each hub knows the whole room, though it holds one member of it.
//! assert_eq!(hubs[0].members("lobby"), vec!["alice", "bob"]);
//! assert_eq!(hubs[1].members("lobby"), vec!["alice", "bob"]);
//! ```

pub mod bus;
pub mod codec;
pub mod memory;
pub mod refusal;
pub mod relay;
pub mod replica;

pub use bus::{Answer, BusInput, BusRequest, EventKind, OpId, RoomEvent, ServerId, Snapshot};
pub use memory::MemoryBroker;
pub use relay::{RelayFrame, RelayId};
