//! [`Hub`]: the server side of many connections — rooms, names, broadcast,
//! relayed transfers — with no I/O.

mod cluster;
mod queued;
mod remote_relay;
mod remote_tree;

use crate::bucket::TokenBucket;
use crate::cluster::replica::Replica;
use crate::code::Code;
use crate::config::HubConfig;
use crate::connection::tree_send::RelayedTreeFrame;
use crate::connection::{Connection, Event};
use crate::error::Misuse;
use crate::frame::{features, Frame, ResumeKey, TransferId, PREAMBLE};
use crate::guest::{self, Command, Guest, GuestEvent};
use crate::history::{self, History, HistoryEntry};
use crate::names::{check_name, check_name_characters, check_name_scripts, name_key, DEFAULT_ROOM};
use crate::secret::SessionSecret;
use crate::source::Source;
use crate::sources::{Sources, Turnaway};
use crate::text::Text;
use crate::transfer::{Outcome, TransferEvent};
use crate::tree::Manifest;
use bytes::{Bytes, BytesMut};
// A plain value type from `core`: the hub only counts connections per
// address and compares addresses; it never touches a socket.
use crate::client_map::{shrink_if_sparse, ClientMap};
use core::net::IpAddr;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::time::Instant;

/// Names one client connection of a [`Hub`]. Never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What the hub tells the adapter that runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HubEvent {
    /// A client finished the handshake and entered `room`.
    Joined {
        /// The client.
        client: ClientId,
        /// Its name.
        name: Text,
        /// Its room.
        room: Text,
    },
    /// A client that had joined left its room.
    Left {
        /// The client.
        client: ClientId,
        /// Its name.
        name: Text,
        /// Its room.
        room: Text,
        /// Why ([`Code::QUIT`], [`Code::FLOODING`], ...).
        code: Code,
    },
    /// A client came back on a new connection (`RECLAIM`) and the hub
    /// closed its old one, which leaves with [`Code::REPLACED`]; the new
    /// one joins (or is refused) as usual.
    Replaced {
        /// The connection closed.
        old: ClientId,
        /// The connection that reclaimed its place.
        new: ClientId,
        /// The old connection's name.
        name: Text,
    },
    /// A file is relayed from one user to another through the hub.
    RelayStarted {
        /// Sending client.
        from: ClientId,
        /// Receiving client.
        to: ClientId,
        /// File name.
        name: Text,
        /// Size in bytes.
        size: u64,
    },
    /// A relayed transfer ended (as seen from the recipient's side).
    RelayEnded {
        /// Sending client.
        from: ClientId,
        /// Receiving client.
        to: ClientId,
        /// How.
        outcome: Outcome,
    },
    /// In a cluster: a file between `client`, a member here, and a member
    /// of another server started being relayed over the servers' link
    /// ([`crate::cluster::relay`]).
    RemoteRelayStarted {
        /// The member here.
        client: ClientId,
        /// Whether it is the sender (else the recipient).
        sending: bool,
        /// The other member's name.
        other: Text,
        /// The other member's server.
        server: crate::cluster::ServerId,
        /// File name.
        name: Text,
        /// Size in bytes.
        size: u64,
    },
    /// In a cluster: a relay with another server ended, as `client`'s end
    /// saw it (or as the other server said).
    RemoteRelayEnded {
        /// The member here.
        client: ClientId,
        /// Whether it is the sender.
        sending: bool,
        /// The other member's name.
        other: Text,
        /// The other member's server.
        server: crate::cluster::ServerId,
        /// How.
        outcome: Outcome,
    },
    /// A transfer between a client and the hub itself (an upload to the
    /// inbox, or a file the hub offered) needs the adapter: answer offers
    /// with [`Hub::accept`] or [`Hub::reject`], chunk requests with
    /// [`Hub::supply_chunk`], write received chunks and
    /// [`Hub::confirm_written`], store received files and
    /// [`Hub::finish_receive`].
    Transfer {
        /// The client.
        client: ClientId,
        /// What happened.
        event: TransferEvent,
    },
    /// A source kept presenting wrong tokens and is turned away for `ban`.
    SourceBanned {
        /// The address group.
        source: Source,
        /// Wrong tokens that led to the ban.
        failures: u32,
        /// How long it lasts.
        ban: std::time::Duration,
    },
    /// The connection is over. Write out what [`Hub::poll_transmit`] still
    /// returns for it (the final frame is in there), shut down the sending
    /// direction, read until the client's FIN, then close the socket and
    /// call [`Hub::remove`]; all of it within
    /// [`CLOSE_LINGER`](crate::CLOSE_LINGER), written or not:
    /// [`driving`](crate::driving) step 6, PROTOCOL.md §6.9. Until
    /// `remove`, the client still counts against the connection limits.
    Closed {
        /// The client.
        client: ClientId,
        /// Why.
        code: Code,
        /// Detail.
        reason: String,
        /// Whether the client ended it.
        by_peer: bool,
    },
}

impl HubEvent {
    /// The client this event closed, if it is [`HubEvent::Closed`]: the
    /// runtime then finishes writing to its socket and closes it.
    pub fn closed_client(&self) -> Option<ClientId> {
        match self {
            HubEvent::Closed { client, .. } => Some(*client),
            _ => None,
        }
    }
}

struct Client {
    link: Link,
    /// Guests are served and no byte has arrived yet: the first one tells
    /// a ferry peer (`0x89`) from a raw-text guest (anything else).
    undecided: bool,
    /// When it connected, for the handshake timeout while undecided.
    connected: Instant,
    /// Key of the room once joined.
    room: Option<String>,
    bucket: TokenBucket,
    /// The deadline registered in `Hub::timers`. A connection's deadline
    /// moves later with nearly every frame (idle and keep-alive timers), so
    /// a later one is not registered: the entry fires early, once, and is
    /// registered anew then. Only an earlier deadline replaces it at once.
    timer: Option<Instant>,
    /// The address group it connected from, if known.
    source: Option<Source>,
    /// Counted in `Hub::sources` (until it closes).
    counted: bool,
    /// A refusal held back (a wrong token is answered late) and when it is
    /// due: its timer is part of the client's.
    refusal: Option<(Instant, Code, String)>,
    /// Queued in `Hub::dirty`: its events are due to be handled.
    dirty: bool,
    /// Queued in `Hub::touched`: its timer and write readiness are due to
    /// be refreshed.
    touched: bool,
    /// Queued in `Hub::writable`.
    writable: bool,
    /// Its trees offered and not ended, each with what its manifest may
    /// make the server hold (counted in `Hub::manifest_reserved`).
    manifests: Vec<(TransferId, u64)>,
    /// In cluster mode: its trees whose manifest entries the broker has
    /// not charged to its source yet, each with its `TreeManifest` event
    /// if that came first (handled once the charge is answered).
    awaiting_charge: Vec<(TransferId, Option<TransferEvent>)>,
    /// Its chat and control bytes queued when last counted in
    /// `Hub::queued`.
    queued: usize,
    /// Its unfinished input when last counted in `Hub::incoming`.
    incoming: usize,
}

/// A client's connection: the ferry protocol, or a raw-text guest.
// A guest is much smaller than a ferry connection, but every client starts
// as a ferry connection and few become guests: boxing would cost every
// ferry client an allocation and an indirection for nothing.
#[allow(clippy::large_enum_variant)]
enum Link {
    Ferry(Connection),
    Guest(Guest),
}

impl Link {
    /// The ferry connection, unless this is a guest.
    fn ferry(&mut self) -> Option<&mut Connection> {
        match self {
            Link::Ferry(conn) => Some(conn),
            Link::Guest(_) => None,
        }
    }

    fn ferry_ref(&self) -> Option<&Connection> {
        match self {
            Link::Ferry(conn) => Some(conn),
            Link::Guest(_) => None,
        }
    }

    fn guest(&mut self) -> Option<&mut Guest> {
        match self {
            Link::Guest(guest) => Some(guest),
            Link::Ferry(_) => None,
        }
    }

    fn is_guest(&self) -> bool {
        matches!(self, Link::Guest(_))
    }

    fn name(&self) -> &Text {
        match self {
            Link::Ferry(conn) => conn.name(),
            Link::Guest(guest) => guest.name(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            Link::Ferry(conn) => conn.is_open(),
            Link::Guest(guest) => !guest.is_closed(),
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Link::Ferry(conn) => conn.is_closed(),
            Link::Guest(guest) => guest.is_closed(),
        }
    }

    fn is_drained(&self) -> bool {
        match self {
            Link::Ferry(conn) => conn.is_drained(),
            Link::Guest(guest) => guest.is_drained(),
        }
    }

    fn has_events(&self) -> bool {
        match self {
            Link::Ferry(conn) => conn.has_events(),
            Link::Guest(guest) => guest.has_events(),
        }
    }

    /// Bytes queued: (chat and control, file data).
    fn queued(&self) -> (usize, usize) {
        match self {
            Link::Ferry(conn) => (conn.queued_control_bytes(), conn.queued_data_bytes()),
            Link::Guest(guest) => (guest.queued_bytes(), 0),
        }
    }

    /// Memory the chat and control queue holds, as counted against
    /// [`HubConfig::max_outgoing_memory`] (a guest counts each line's
    /// text and queue entry).
    fn held(&self) -> usize {
        match self {
            Link::Ferry(conn) => conn.held_control_bytes(),
            Link::Guest(guest) => guest.queued_bytes(),
        }
    }

    /// Memory its unfinished input holds, as counted against
    /// [`HubConfig::max_incoming_memory`] (a guest's line is at most
    /// 1 KiB, bounded on its own).
    fn held_input(&self) -> usize {
        match self {
            Link::Ferry(conn) => conn.held_input_bytes(),
            Link::Guest(_) => 0,
        }
    }

    fn drop_for_incoming_memory(&mut self, now: Instant, limit: usize) {
        if let Link::Ferry(conn) = self {
            conn.drop_for_incoming_memory(now, limit);
        }
    }

    fn handle_input(&mut self, now: Instant, data: &[u8]) {
        match self {
            Link::Ferry(conn) => conn.handle_input(now, data),
            Link::Guest(guest) => guest.handle_input(now, data),
        }
    }

    fn handle_eof(&mut self, now: Instant) {
        match self {
            Link::Ferry(conn) => conn.handle_eof(now),
            Link::Guest(guest) => guest.handle_eof(now),
        }
    }

    fn handle_broken(&mut self, now: Instant, reason: &str) {
        match self {
            Link::Ferry(conn) => conn.handle_broken(now, reason),
            Link::Guest(guest) => guest.handle_broken(now, reason),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Link::Ferry(conn) => conn.handle_timeout(now),
            Link::Guest(guest) => guest.handle_timeout(now),
        }
    }

    fn close_with_error(&mut self, now: Instant, code: Code, reason: &str) {
        match self {
            Link::Ferry(conn) => conn.close_with_error(now, code, reason),
            Link::Guest(guest) => guest.close_with_error(now, code, reason),
        }
    }

    /// Drops a client because every client's queue together is over
    /// `limit` and its is among the biggest, behind the longest.
    fn drop_for_outgoing_memory(&mut self, now: Instant, limit: usize) {
        match self {
            Link::Ferry(conn) => conn.drop_for_outgoing_memory(now, limit),
            Link::Guest(guest) => guest.drop_for_outgoing_memory(limit),
        }
    }

    fn poll_transmit(&mut self) -> Option<Bytes> {
        match self {
            Link::Ferry(conn) => conn.poll_transmit(),
            Link::Guest(guest) => guest.poll_transmit(),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Link::Ferry(conn) => conn.poll_timeout(),
            Link::Guest(guest) => guest.poll_timeout(),
        }
    }

    /// Queues a room frame: the encoded bytes for a ferry client; for a
    /// guest, the frame as text lines, rendered once into `rendered` and
    /// shared by every guest of a broadcast (its own echo skipped).
    fn deliver(
        &mut self,
        now: Instant,
        frame: &Frame,
        encoded: &Bytes,
        rendered: &mut Option<Option<Bytes>>,
    ) {
        match self {
            Link::Ferry(conn) => conn.send_encoded(now, encoded),
            Link::Guest(guest) => {
                if guest::is_own(frame, guest.name()) {
                    return;
                }
                if let Some(text) = rendered.get_or_insert_with(|| guest::render(frame)) {
                    guest.send(now, text.clone());
                }
            }
        }
    }
}

/// After a frame was queued for room member `id`: its output and timer
/// need a refresh, and its events (a member the frame made a slow reader
/// is closed) handling. Only a member with events goes through the dirty
/// queue: a broadcast to thousands would otherwise have each looked at
/// twice, and the room emptying at once costs the square of that.
fn delivered(
    c: &mut Client,
    id: ClientId,
    dirty: &mut VecDeque<ClientId>,
    touched: &mut Vec<ClientId>,
) {
    if c.link.has_events() {
        if !c.dirty {
            c.dirty = true;
            dirty.push_back(id);
        }
    } else if !c.touched {
        c.touched = true;
        touched.push(id);
    }
}

/// What a `HELLO` asked for.
struct Hello {
    name: Text,
    room: Text,
    token: Bytes,
}

struct Room {
    name: Text,
    /// Members on this server that entered the room (in cluster mode,
    /// joiners wait in `joining` until their `JOINED` comes back).
    members: Vec<ClientId>,
    seq: u64,
    /// In cluster mode: the room across the cluster.
    replica: Option<Replica>,
    /// In cluster mode: clients whose join the broker has not applied.
    joining: Vec<cluster::Joiner>,
    /// In cluster mode: the replica was reset (the broker restarted, or
    /// the log lost events): members get `MEMBERS` anew once it settles.
    resync: bool,
    /// In cluster mode: the room's events wait here while a joiner whose
    /// `JOINED` came before its join's answer waits for that answer (which
    /// holds its history).
    awaiting_answer: Option<cluster::AwaitingAnswer>,
    /// In cluster mode: the members here when the replica settled after a
    /// reset, who get the messages before the snapshot that the log
    /// brings late (joiners after them had those in their history).
    catching_up: Vec<ClientId>,
}

/// A tree offered to a member, its manifest still arriving.
#[derive(Debug)]
struct PendingTree {
    target: ClientId,
    name: Text,
    total_size: u64,
    resume: Option<ResumeKey>,
}

/// One end of a relayed transfer.
type End = (ClientId, TransferId);

/// Unfinished input under this is never dropped for the total: a frame of
/// this size or less has no buffer of its own (`input::LARGE_FRAME`), and
/// a client that finishes what it begins holds this much only while a
/// frame arrives.
const INCOMING_FLOOR: usize = 16 * 1024;

/// Room deliveries (one frame queued for one member) after which one call
/// of `process` stops handling further connections. A join, a leave or a
/// line costs as many as the room has members, and when a whole room goes
/// at once (its members' queues overflowing with the others' `LEFT`s, or
/// thousands of sockets closing together) one call would otherwise do
/// O(room^2) work while the driver's other connections wait. The rest is
/// resumed at the next call, which `poll_timeout` asks for at once. About
/// 20 ms of work on a 2 GHz core.
const DELIVERIES_PER_PROCESS: usize = 1 << 16;

/// The server side of ferry: many client connections, their rooms and the
/// files relayed between them, as one state machine with no I/O.
///
/// Like quinn's `Endpoint`, the hub owns every [`Connection`] (in server
/// role) and the adapter only moves bytes:
///
/// 1. On accept, [`connect`](Self::connect) gives the socket a [`ClientId`].
/// 2. Feed [`handle_input`](Self::handle_input) /
///    [`handle_eof`](Self::handle_eof) with what each socket reads, and
///    [`handle_timeout`](Self::handle_timeout) when
///    [`poll_timeout`](Self::poll_timeout) passes.
/// 3. After each call, drain until nothing moves:
///    [`poll_writable`](Self::poll_writable) names every client with bytes
///    to send — write its [`poll_transmit`](Self::poll_transmit) segments
///    while its socket takes them (resume on writability); then handle
///    every [`poll_event`](Self::poll_event); repeat while either yielded
///    something (taking output can ask for the next file chunk).
/// 4. On [`HubEvent::Closed`], close the socket as
///    [`driving`](crate::driving) step 6 says, within
///    [`CLOSE_LINGER`](crate::CLOSE_LINGER), then call
///    [`remove`](Self::remove).
///
/// The [`driving`](crate::driving) module is the whole contract, for
/// authors of new runtimes.
///
/// The hub enforces unique names (ignoring case), broadcasts each message
/// once-encoded to every member, limits flooding with a token bucket per
/// client, drops a client whose outgoing queue overflows (nobody else waits
/// for it), and relays files between users holding at most one
/// flow-control window per transfer.
///
/// With [`HubConfig::guests`] on (the default), a client whose first byte
/// is not the preamble's `0x89` is a raw-text guest ([`crate::guest`]): it
/// joins the default room by typing lines and is sent the room as text
/// lines, through the same `handle_*` and `poll_*` calls, so a runtime needs
/// nothing special for it. The hub sends nothing to a client before its
/// first byte (unless it closes it at once: the per-address limit, a
/// shutdown), so neither kind of peer is sent bytes meant for the other.
///
/// # Example
///
/// ```
/// use ferry_core::{ClientConfig, Connection, Hub, HubConfig};
/// use std::time::Instant;
///
/// let now = Instant::now();
/// let mut hub = Hub::new(HubConfig::default(), now);
/// let id = hub.connect(now);
/// let mut alice = Connection::client(ClientConfig::new("alice"), now);
/// while let Some(bytes) = alice.poll_transmit() {
///     hub.handle_input(id, now, &bytes);
/// }
/// while let Some(bytes) = hub.poll_transmit(id) {
///     alice.handle_input(now, &bytes);
/// }
/// assert!(alice.is_open());
/// assert_eq!(hub.members("lobby"), vec!["alice"]);
/// ```
pub struct Hub {
    config: HubConfig,
    clients: ClientMap<Client>,
    /// Every client's queued chat and control bytes, and the biggest.
    queued: queued::QueuedBytes,
    /// Every client's unfinished input, and the biggest.
    incoming: queued::QueuedBytes,
    next_id: u64,
    rooms: HashMap<String, Room>,
    /// (room key, name key) → client: names are unique in a room.
    names: HashMap<(String, String), ClientId>,
    /// Relay links, both directions: sender end ↔ recipient end.
    relays: HashMap<End, End>,
    /// Keys a relay recipient issued (`RESUME_KEY`) for offers it has not
    /// answered yet, by its end: passed on to the sender with the `ACCEPT`.
    relay_keys: HashMap<End, ResumeKey>,
    /// Trees offered to a member whose manifests are still arriving, by
    /// the sender's end: offered to the member once checked whole.
    pending_trees: HashMap<End, PendingTree>,
    /// Bytes of file data the relays under way may hold at once: a window
    /// each (see [`HubConfig::max_relay_memory`]).
    relay_reserved: u64,
    /// Relays with members of other servers of the cluster.
    remote: remote_relay::RemoteRelays,
    /// What the manifests of trees offered and not ended may make the
    /// server hold, all clients together (see
    /// [`HubConfig::max_manifest_memory`]).
    manifest_reserved: u64,
    events: VecDeque<HubEvent>,
    /// Clients whose connection produced events not yet processed, each
    /// once (see `Client::dirty`).
    dirty: VecDeque<ClientId>,
    /// Clients processed since the last refresh of timers and write
    /// readiness, each once (see `Client::touched`); kept for its capacity.
    touched: Vec<ClientId>,
    /// Clients with bytes to send, each once (see `Client::writable`).
    writable: VecDeque<ClientId>,
    timers: BTreeSet<(Instant, ClientId)>,
    /// What each address group has spent: connections, its shared chat
    /// budget, wrong tokens.
    sources: Sources,
    /// The latest time any input carried, for work done while polling.
    last_now: Instant,
    /// The number in the next `guest-N` name.
    next_guest: u64,
    /// In cluster mode, the link to the broker.
    bus: Option<cluster::Bus>,
    /// Frames queued for room members in the current call of `process`.
    deliveries_this_process: usize,
    /// `process` stopped with work left: `poll_timeout` asks for a call now.
    backlog: bool,
    /// Each room's last messages, on its own (in a cluster the broker keeps
    /// them).
    history: History,
    /// An instant and the wall-clock time then, in ms since the Unix
    /// epoch: how history entries get their time.
    clock: Option<(Instant, u64)>,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("clients", &self.clients.len())
            .field("rooms", &self.rooms.len())
            .field("relays", &(self.relays.len() / 2))
            .finish()
    }
}

impl Hub {
    /// An empty hub.
    pub fn new(config: HubConfig, now: Instant) -> Hub {
        let sources = Sources::new(&config);
        let bus = config.cluster.map(cluster::Bus::new);
        let history = History::new(
            if bus.is_some() { 0 } else { config.history },
            config.max_history_bytes,
        );
        Hub {
            bus,
            deliveries_this_process: 0,
            backlog: false,
            history,
            clock: None,
            queued: queued::QueuedBytes::default(),
            incoming: queued::QueuedBytes::with_floor(INCOMING_FLOOR),
            last_now: now,
            config,
            clients: ClientMap::default(),
            next_id: 0,
            rooms: HashMap::new(),
            names: HashMap::new(),
            relays: HashMap::new(),
            relay_keys: HashMap::new(),
            pending_trees: HashMap::new(),
            relay_reserved: 0,
            remote: remote_relay::RemoteRelays::default(),
            manifest_reserved: 0,
            events: VecDeque::new(),
            dirty: VecDeque::new(),
            touched: Vec::new(),
            writable: VecDeque::new(),
            timers: BTreeSet::new(),
            sources,
            next_guest: 1,
        }
    }

    // ----- getters -------------------------------------------------------

    /// Its configuration.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// Client connections held, joined or not.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// Names in `room` (default room if empty), in join order.
    pub fn members(&self, room: &str) -> Vec<Text> {
        let key = room_key(room);
        if let Some(names) = self.cluster_members(&key) {
            return names;
        }
        self.rooms
            .get(&key)
            .map(|r| {
                r.members
                    .iter()
                    .filter_map(|id| self.clients.get(id))
                    .map(|c| c.link.name().clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The name a client joined with, once it has.
    pub fn name_of(&self, client: ClientId) -> Option<&Text> {
        self.clients
            .get(&client)
            .filter(|c| c.room.is_some())
            .map(|c| c.link.name())
    }

    /// Tells the hub the wall-clock time: at `now` it was `unix_ms`
    /// milliseconds since the Unix epoch. Room history is stamped with it
    /// (`HISTORY` frames carry 0 until it is set); the core reads no clock
    /// of its own. Every ferry runtime sets it when it starts.
    pub fn set_unix_time(&mut self, now: Instant, unix_ms: u64) {
        self.clock = Some((now, unix_ms));
    }

    /// Bytes of room history the hub holds (see
    /// [`HubConfig::max_history_bytes`]): on its own, every room's; in a
    /// cluster, what it holds for joiners until they enter (their
    /// histories, and room events waiting for their answers).
    pub fn history_bytes(&self) -> usize {
        match &self.bus {
            Some(bus) => bus.history_held(),
            None => self.history.bytes(),
        }
    }

    /// Whether `client` is over: the hub closed it ([`HubEvent::Closed`]
    /// was queued) or it was [`remove`](Self::remove)d, or never existed.
    /// A driver whose write to `client` was stuck asks this when the write
    /// completes or times out ([`driving`](crate::driving) step 7).
    pub fn is_closed(&self, client: ClientId) -> bool {
        self.clients.get(&client).is_none_or(|c| c.link.is_closed())
    }

    /// Bytes queued for `client`: chat/control and file data.
    pub fn queued_bytes(&self, client: ClientId) -> Option<(usize, usize)> {
        self.clients.get(&client).map(|c| c.link.queued())
    }

    /// Memory `client`'s chat and control queue holds, as counted against
    /// [`HubConfig::max_outgoing_memory`]: at least its queued bytes
    /// ([`queued_bytes`](Self::queued_bytes)), with the room its buffers
    /// keep beyond them.
    pub fn held_bytes(&self, client: ClientId) -> Option<usize> {
        self.clients.get(&client).map(|c| c.link.held())
    }

    /// Whether `client` is a raw-text guest (known from its first byte).
    pub fn is_guest(&self, client: ClientId) -> bool {
        self.clients.get(&client).is_some_and(|c| c.link.is_guest())
    }

    /// Relayed transfers in progress.
    pub fn relay_count(&self) -> usize {
        self.relays.len() / 2
    }

    /// Open connections from the address group of `ip` (see
    /// [`source_of_ip`](Self::source_of_ip)), counted against
    /// [`HubConfig::max_per_ip`].
    pub fn connections_from(&self, ip: IpAddr) -> usize {
        self.sources.connections(self.source_of_ip(ip))
    }

    /// Address groups the hub remembers: those with connections, and those
    /// whose budget or wrong tokens are not forgotten yet.
    pub fn sources_remembered(&self) -> usize {
        self.sources.len()
    }

    /// The address group per-source limits count `ip` in
    /// ([`HubConfig::source_prefix_v4`], [`HubConfig::source_prefix_v6`]).
    pub fn source_of_ip(&self, ip: IpAddr) -> Source {
        Source::of(
            ip,
            self.config.source_prefix_v4,
            self.config.source_prefix_v6,
        )
    }

    /// The address group `client` connected from, if it was added with
    /// [`connect_from`](Self::connect_from).
    pub fn source_of(&self, client: ClientId) -> Option<Source> {
        self.clients.get(&client).and_then(|c| c.source)
    }

    // ----- input ---------------------------------------------------------

    /// A new client socket was accepted from `ip`. Like
    /// [`connect`](Self::connect), and also counts the connection against
    /// [`HubConfig::max_per_ip`]: one over the limit is closed at once with
    /// `ERROR SERVER_FULL` naming the address (drain and close it like any
    /// other). The count drops when the connection closes.
    ///
    /// The address is only compared, never used: the hub stays sans-IO.
    pub fn connect_from(&mut self, now: Instant, ip: IpAddr) -> ClientId {
        let id = self.connect(now);
        let source = self.source_of_ip(ip);
        let admitted = self.sources.connect(source, now);
        let max = self.config.max_per_ip;
        if let Some(c) = self.clients.get_mut(&id) {
            c.source = Some(source);
            c.counted = true;
            let turned_away = match admitted {
                Ok(()) => None,
                Err(Turnaway::TooMany) => Some((
                    Code::SERVER_FULL,
                    format!("too many connections from {source} (at most {max})"),
                )),
                Err(Turnaway::Banned(left)) => Some((
                    Code::AUTH_FAILED,
                    format!(
                        "too many wrong tokens from {source}: try again in {} s",
                        left.as_secs() + 1
                    ),
                )),
            };
            if let Some((code, reason)) = turned_away {
                c.link.close_with_error(now, code, &reason);
                self.touch(id);
            }
        }
        self.process(now);
        id
    }

    /// A new client socket was accepted; no per-address limit applies
    /// (see [`connect_from`](Self::connect_from)).
    pub fn connect(&mut self, now: Instant) -> ClientId {
        let id = ClientId(self.next_id);
        self.next_id += 1;
        self.clients.insert(
            id,
            Client {
                // Every client starts as a ferry connection; with guests
                // served, its first byte may turn it into a guest. Nothing
                // is sent before that byte (a ferry server sends its
                // preamble once the client's has arrived), so neither kind
                // of peer sees anything meant for the other.
                link: Link::Ferry(Connection::server(self.config.connection.clone(), now)),
                undecided: self.config.guests,
                connected: now,
                room: None,
                bucket: TokenBucket::full(
                    self.config.flood_burst,
                    self.config.flood_per_second,
                    now,
                ),
                timer: None,
                source: None,
                counted: false,
                refusal: None,
                dirty: false,
                touched: false,
                writable: false,
                manifests: Vec::new(),
                awaiting_charge: Vec::new(),
                queued: 0,
                incoming: 0,
            },
        );
        self.touch(id);
        self.process(now);
        id
    }

    /// Bytes read from `client`'s socket.
    pub fn handle_input(&mut self, client: ClientId, now: Instant, data: &[u8]) {
        let token_required = self.config.token.is_some();
        if let Some(c) = self.clients.get_mut(&client) {
            if let (true, Some(&first)) = (c.undecided, data.first()) {
                c.undecided = false;
                // A ferry peer's first byte is 0x89, which no text starts
                // with; the decision is made from this one byte, so a ferry
                // client is never kept waiting.
                if first != PREAMBLE[0] && !c.link.is_closed() {
                    let mut guest = Guest::new(&self.config, now);
                    if token_required {
                        guest.close_with_error(
                            now,
                            Code::AUTH_FAILED,
                            "this server requires a token, which a raw-text guest cannot give; \
                             use the ferry program",
                        );
                    }
                    c.link = Link::Guest(guest);
                }
            }
            c.link.handle_input(now, data);
            let droppable = !c.link.is_closed();
            self.incoming
                .recount(client, &mut c.incoming, c.link.held_input(), droppable);
            self.touch(client);
            self.drop_biggest_inputs(now);
            self.process(now);
        }
    }

    /// While every client's unfinished input together is over the limit,
    /// closes the client holding one of the biggest, the longest.
    fn drop_biggest_inputs(&mut self, now: Instant) {
        let limit = self.config.max_incoming_memory;
        while let Some(id) = self.incoming.over(limit) {
            let Some(c) = self.clients.get_mut(&id) else {
                debug_assert!(false, "{id} counted in the input but gone");
                break;
            };
            c.link.drop_for_incoming_memory(now, limit);
            // Closed now (its input freed): counted, never named again.
            self.incoming
                .recount(id, &mut c.incoming, c.link.held_input(), false);
            self.touch(id);
        }
    }

    /// Memory the unfinished input of every client holds together, as held
    /// to [`HubConfig::max_incoming_memory`].
    pub fn incoming_total(&self) -> usize {
        self.incoming.total()
    }

    /// Bytes read from `client` on a server that takes only encrypted
    /// connections, when they did not start one (the adapter tells: a TLS
    /// ClientHello starts with `0x16`). Nothing in `data` is acted on: the
    /// client is told why in its own terms, a raw-text guest (first byte
    /// not `0x89`, guests served) in a line of text, a ferry peer with
    /// `ERROR TLS_REQUIRED`, and closed.
    pub fn refuse_unencrypted(&mut self, client: ClientId, now: Instant, data: &[u8]) {
        const WHY: &str = "this server takes only encrypted (TLS) connections: \
                           use a ferry client with TLS on, or `openssl s_client -quiet`";
        let guests = self.config.guests;
        if let Some(c) = self.clients.get_mut(&client) {
            if c.undecided && !data.is_empty() {
                c.undecided = false;
                if guests && data[0] != PREAMBLE[0] && !c.link.is_closed() {
                    c.link = Link::Guest(Guest::new(&self.config, now));
                }
            }
            c.link.close_with_error(now, Code::TLS_REQUIRED, WHY);
            self.touch(client);
            self.process(now);
        }
    }

    /// `client` closed its socket (or it broke).
    pub fn handle_eof(&mut self, client: ClientId, now: Instant) {
        if let Some(c) = self.clients.get_mut(&client) {
            c.link.handle_eof(now);
            self.touch(client);
            self.process(now);
        }
    }

    /// `client`'s transport failed; see [`Connection::handle_broken`].
    pub fn handle_broken(&mut self, client: ClientId, now: Instant, reason: &str) {
        if let Some(c) = self.clients.get_mut(&client) {
            c.link.handle_broken(now, reason);
            self.touch(client);
            self.process(now);
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.sources.handle_timeout(now);
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            if let Some(c) = self.clients.get_mut(&id) {
                c.timer = None;
                if let Some((_, code, reason)) = c.refusal.take_if(|(at, ..)| *at <= now) {
                    if let Some(conn) = c.link.ferry() {
                        // Still waiting for its answer: nothing else can
                        // have answered the HELLO meanwhile.
                        let _ = conn.refuse(now, code, &reason);
                    }
                }
                if c.undecided {
                    let limit = self.config.connection.handshake_timeout;
                    if now >= c.connected + limit {
                        if let Some(conn) = c.link.ferry() {
                            let secs = limit.as_secs_f64();
                            conn.abandon(
                                Code::HANDSHAKE_TIMEOUT,
                                format!("nothing received in {secs} s"),
                            );
                        }
                    }
                } else {
                    c.link.handle_timeout(now);
                }
                self.touch(id);
            }
        }
        self.process(now);
    }

    /// Forgets a closed client after its socket was closed. Also fine for an
    /// open one: it is then treated as a lost connection first.
    pub fn remove(&mut self, client: ClientId, now: Instant) {
        if let Some(c) = self.clients.get_mut(&client) {
            if !c.link.is_closed() {
                c.link.handle_eof(now);
                self.touch(client);
                self.process(now);
            }
        }
        // Its own events first, whatever `process` left for later: its
        // leave must be handled before it is forgotten.
        self.handle_events_of(client, now);
        if let Some(c) = self.clients.remove(&client) {
            if let Some(at) = c.timer {
                self.timers.remove(&(at, client));
            }
            self.queued.update(client, c.queued, 0, false);
            self.incoming.update(client, c.incoming, 0, false);
            shrink_if_sparse(&mut self.clients);
        }
        // Its `LEFT` reached the room: their output and timers.
        self.process(now);
    }

    /// Memory the chat and control queues of every client hold together
    /// ([`held_bytes`](Self::held_bytes)), as held to
    /// [`HubConfig::max_outgoing_memory`].
    pub fn queued_total(&self) -> usize {
        self.queued.total()
    }

    // ----- commands ------------------------------------------------------

    /// Says `text` to `room` as the server itself (`from` empty). An empty
    /// `room` means every room.
    pub fn announce(&mut self, now: Instant, room: &str, text: &str) -> Result<(), Misuse> {
        let max = self.config.connection.settings().max_message as usize;
        if text.len() > max {
            return Err(Misuse::MessageTooLong {
                len: text.len(),
                max,
            });
        }
        if self.bus.is_some() {
            let key = (!room.is_empty()).then(|| room_key(room));
            return self
                .cluster_announce(key, text.into())
                .map_err(Misuse::ClusterUnavailable);
        }
        let keys: Vec<String> = if room.is_empty() {
            self.rooms.keys().cloned().collect()
        } else {
            vec![room_key(room)]
        };
        for key in keys {
            self.broadcast_with_seq(now, &key, |seq| Frame::Message {
                seq,
                from: Text::new(),
                text: text.into(),
            });
        }
        self.process(now);
        Ok(())
    }

    /// Closes every connection with `ERROR SHUTDOWN`.
    pub fn shutdown(&mut self, now: Instant, reason: &str) {
        let ids: Vec<ClientId> = self.clients.keys().copied().collect();
        for id in ids {
            if let Some(c) = self.clients.get_mut(&id) {
                c.link.close_with_error(now, Code::SHUTDOWN, reason);
                self.touch(id);
            }
        }
        self.process(now);
    }

    /// Offers a file from the server itself to `client`.
    pub fn offer_file(
        &mut self,
        client: ClientId,
        now: Instant,
        name: &str,
        size: u64,
    ) -> Result<TransferId, Misuse> {
        self.with_conn(client, now, |c| c.offer_file(now, name, size, ""))
    }

    /// Accepts an upload offered to the inbox; see [`Connection::accept`].
    pub fn accept(
        &mut self,
        client: ClientId,
        now: Instant,
        id: TransferId,
        resume_from: u64,
    ) -> Result<(), Misuse> {
        self.with_conn(client, now, |c| c.accept(now, id, resume_from))
    }

    /// Accepts an upload offered to the inbox and hands the client `key`
    /// to resume it with; see [`Connection::accept_resumable`].
    pub fn accept_resumable(
        &mut self,
        client: ClientId,
        now: Instant,
        id: TransferId,
        resume_from: u64,
        key: ResumeKey,
    ) -> Result<(), Misuse> {
        self.with_conn(client, now, |c| {
            c.accept_resumable(now, id, resume_from, key)
        })
    }

    /// Takes a tree offered to the inbox once its manifest is in; see
    /// [`Connection::accept_tree`].
    pub fn accept_tree(
        &mut self,
        client: ClientId,
        now: Instant,
        id: TransferId,
    ) -> Result<(), Misuse> {
        self.with_conn(client, now, |c| c.accept_tree(now, id))
    }

    /// Takes a tree offered to the inbox once its manifest is in, issuing
    /// `key` and listing what is `held` of an earlier attempt; see
    /// [`Connection::accept_tree_resumable`].
    pub fn accept_tree_resumable(
        &mut self,
        client: ClientId,
        now: Instant,
        id: TransferId,
        key: ResumeKey,
        held: &[crate::frame::HeldFile],
    ) -> Result<(), Misuse> {
        self.with_conn(client, now, |c| c.accept_tree_resumable(now, id, key, held))
    }

    /// Answers a [`TransferEvent::TreeNeedChunk`] (see
    /// [`Connection::supply_tree_chunk`]).
    pub fn supply_tree_chunk(
        &mut self,
        client: ClientId,
        now: Instant,
        id: TransferId,
        index: u32,
        offset: u64,
        data: Bytes,
    ) -> Result<(), Misuse> {
        self.with_conn(client, now, |c| {
            c.supply_tree_chunk(now, id, index, offset, data)
        })
    }

    /// Declines an upload (a file or a tree) offered to the inbox.
    pub fn reject(
        &mut self,
        client: ClientId,
        now: Instant,
        id: TransferId,
        code: Code,
        reason: &str,
    ) -> Result<(), Misuse> {
        self.with_conn(client, now, |c| c.reject(now, id, code, reason))
    }

    /// Cancels a transfer between `client` and the hub.
    pub fn cancel(
        &mut self,
        client: ClientId,
        now: Instant,
        id: TransferId,
        code: Code,
        reason: &str,
    ) -> Result<(), Misuse> {
        self.with_conn(client, now, |c| c.cancel(now, id, code, reason))
    }

    /// Answers a [`TransferEvent::NeedChunk`].
    pub fn supply_chunk(
        &mut self,
        client: ClientId,
        now: Instant,
        id: TransferId,
        offset: u64,
        data: Bytes,
    ) -> Result<(), Misuse> {
        self.with_conn(client, now, |c| c.supply_chunk(now, id, offset, data))
    }

    /// Acknowledges stored bytes of an upload.
    pub fn confirm_written(
        &mut self,
        client: ClientId,
        now: Instant,
        id: TransferId,
        upto: u64,
    ) -> Result<(), Misuse> {
        self.with_conn(client, now, |c| c.confirm_written(now, id, upto))
    }

    /// Reports whether an upload was stored under its final name.
    pub fn finish_receive(
        &mut self,
        client: ClientId,
        now: Instant,
        id: TransferId,
        result: Result<(), (Code, String)>,
    ) -> Result<(), Misuse> {
        self.with_conn(client, now, |c| c.finish_receive(now, id, result))
    }

    fn with_conn<T>(
        &mut self,
        client: ClientId,
        now: Instant,
        f: impl FnOnce(&mut Connection) -> Result<T, Misuse>,
    ) -> Result<T, Misuse> {
        let c = self.clients.get_mut(&client).ok_or(Misuse::Closed)?;
        let conn = c.link.ferry().ok_or(Misuse::InvalidArgument(
            "a raw-text guest has no file transfers",
        ))?;
        let result = f(conn);
        self.touch(client);
        self.process(now);
        result
    }

    // ----- output --------------------------------------------------------

    /// A client that has bytes to send, each named once until it is drained.
    pub fn poll_writable(&mut self) -> Option<ClientId> {
        while let Some(id) = self.writable.pop_front() {
            let Some(c) = self.clients.get_mut(&id) else {
                continue;
            };
            c.writable = false;
            if !c.link.is_drained() {
                return Some(id);
            }
        }
        None
    }

    /// The next bytes to write to `client`'s socket.
    pub fn poll_transmit(&mut self, client: ClientId) -> Option<Bytes> {
        let c = self.clients.get_mut(&client)?;
        let bytes = c.link.poll_transmit();
        let droppable = !c.link.is_closed();
        self.queued
            .recount(client, &mut c.queued, c.link.held(), droppable);
        // Writing may have let a sender ask for more file data.
        if c.link.has_events() {
            self.touch(client);
            self.process(self.last_now);
        }
        bytes
    }

    /// The next event for the adapter.
    pub fn poll_event(&mut self) -> Option<HubEvent> {
        self.events.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next. An
    /// instant already past when a call stopped with work left (a room's
    /// worth of joins or leaves at once): call it as soon as the other
    /// ready sockets are served.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let client = self.timers.first().map(|&(at, _)| at);
        let backlog = self.backlog.then_some(self.last_now);
        [client, self.sources.poll_timeout(), backlog]
            .into_iter()
            .flatten()
            .min()
    }

    // ----- internals -----------------------------------------------------

    fn touch(&mut self, id: ClientId) {
        // A broadcast touches every member: each is queued once however
        // many messages reach it before the next `process`.
        if let Some(c) = self.clients.get_mut(&id) {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push_back(id);
            }
        }
    }

    /// Handles the events of every touched connection until none is left,
    /// then refreshes their timers and write readiness.
    fn process(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        self.deliveries_this_process = 0;
        self.backlog = false;
        loop {
            let done = self.handle_dirty(now);
            self.refresh_touched();
            // Dropping the biggest queue makes events of its own (the
            // client's close, `LEFT` to its room): handled in turn, or at
            // the next call. The memory bound holds either way.
            let dropped = self.drop_biggest_queues(now);
            if !done {
                self.backlog = true;
                return;
            }
            if !dropped {
                return;
            }
        }
    }

    /// While every client's queue together is over the limit, drops the
    /// client with the biggest one; whether any was dropped.
    fn drop_biggest_queues(&mut self, now: Instant) -> bool {
        let limit = self.config.max_outgoing_memory;
        let mut dropped = false;
        while let Some(id) = self.queued.over(limit) {
            let Some(c) = self.clients.get_mut(&id) else {
                // `remove` counts a client out: never here, but no loop.
                debug_assert!(false, "{id} counted in the queues but gone");
                break;
            };
            c.link.drop_for_outgoing_memory(now, limit);
            // Closed now: counted, never named again.
            self.queued.recount(id, &mut c.queued, c.link.held(), false);
            self.touch(id);
            dropped = true;
        }
        dropped
    }

    /// Handles the events of touched connections until none is left or
    /// [`DELIVERIES_PER_PROCESS`] frames were queued for room members;
    /// whether none is left.
    fn handle_dirty(&mut self, now: Instant) -> bool {
        while self.deliveries_this_process < DELIVERIES_PER_PROCESS {
            let Some(id) = self.dirty.pop_front() else {
                return true;
            };
            if self.clients.get(&id).is_some_and(|c| c.dirty) {
                self.handle_events_of(id, now);
            }
        }
        self.dirty.is_empty()
    }

    /// Handles every event of `id`'s connection (taking it out of the
    /// dirty queue's count if it was there).
    fn handle_events_of(&mut self, id: ClientId, now: Instant) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        // Still queued, if it was: the queue finds it clean and skips it.
        c.dirty = false;
        if !c.touched {
            c.touched = true;
            self.touched.push(id);
        }
        loop {
            match self.clients.get_mut(&id).map(|c| &mut c.link) {
                Some(Link::Ferry(conn)) => match conn.poll_event() {
                    Some(event) => self.handle_event(id, now, event),
                    None => break,
                },
                Some(Link::Guest(guest)) => match guest.poll_event() {
                    Some(event) => self.handle_guest_event(id, now, event),
                    None => break,
                },
                None => break,
            }
        }
    }

    /// Refreshes the timers, write readiness and queued bytes of every
    /// touched connection.
    fn refresh_touched(&mut self) {
        let mut touched = std::mem::take(&mut self.touched);
        for id in touched.drain(..) {
            let Some(c) = self.clients.get_mut(&id) else {
                continue;
            };
            c.touched = false;
            let droppable = !c.link.is_closed();
            self.queued
                .recount(id, &mut c.queued, c.link.held(), droppable);
            // A connection closed since (its input freed) is counted out.
            self.incoming
                .recount(id, &mut c.incoming, c.link.held_input(), droppable);
            // A later deadline, or none, leaves the registered one: it
            // fires early, once, and `handle_timeout` registers anew. That
            // spares a `timers` removal and insertion per frame.
            let refusal = c.refusal.as_ref().map(|&(at, ..)| at);
            let deadline = [c.link.poll_timeout(), refusal].into_iter().flatten().min();
            if let Some(deadline) = deadline {
                if c.timer.is_none_or(|registered| deadline < registered) {
                    if let Some(old) = c.timer.replace(deadline) {
                        self.timers.remove(&(old, id));
                    }
                    self.timers.insert((deadline, id));
                }
            }
            if !c.writable && !c.link.is_drained() {
                c.writable = true;
                self.writable.push_back(id);
            }
        }
        self.touched = touched;
    }

    fn handle_event(&mut self, id: ClientId, now: Instant, event: Event) {
        match event {
            Event::Hello {
                name,
                room,
                token,
                reclaim,
            } => self.on_hello(id, now, Hello { name, room, token }, reclaim),
            // Each chat command spends a flood token first.
            Event::Say { text } if self.take_token(id, now) => self.on_say(id, now, text),
            Event::Who if self.take_token(id, now) => {
                let names = self
                    .room_of(id)
                    .map(|key| self.members_of(&key))
                    .unwrap_or_default();
                self.send_to(id, now, &Frame::Members { names });
            }
            Event::DirectTo { to, text } if self.take_token(id, now) => {
                self.on_direct(id, now, to, text)
            }
            Event::Transfer(event) => self.on_transfer(id, now, event),
            Event::Closed {
                code,
                reason,
                by_peer,
            } => self.on_closed(id, now, code, reason, by_peer),
            // Client-role events never come from a server-role connection;
            // pongs need no action.
            _ => {}
        }
    }

    fn handle_guest_event(&mut self, id: ClientId, now: Instant, event: GuestEvent) {
        match event {
            GuestEvent::Line { text, cut } => self.on_guest_line(id, now, &text, cut),
            GuestEvent::Closed {
                code,
                reason,
                by_peer,
            } => self.on_closed(id, now, code, reason, by_peer),
        }
    }

    /// A ferry client's or a guest's connection closed: it leaves its room
    /// and stops counting against the limits; the adapter is told.
    fn on_closed(&mut self, id: ClientId, now: Instant, code: Code, reason: String, by_peer: bool) {
        if let Some(client) = self.clients.get_mut(&id) {
            let held: u64 = client.manifests.drain(..).map(|(_, len)| len).sum();
            self.manifest_reserved = self.manifest_reserved.saturating_sub(held);
        }
        self.leave(id, now, code);
        self.uncount(id, now);
        self.events.push_back(HubEvent::Closed {
            client: id,
            code,
            reason,
            by_peer,
        });
    }

    /// One line from a guest, already sanitised: a message, or a command.
    fn on_guest_line(&mut self, id: ClientId, now: Instant, line: &str, cut: bool) {
        let command = guest::parse(line);
        if command == Command::Nothing && !cut {
            return;
        }
        // Every line costs a flood token, commands included, as every
        // chat frame does for a ferry client.
        if !self.take_token(id, now) {
            return;
        }
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let joined = c.room.is_some();
        let max = c.link.guest().map_or(0, |g| g.line_max());
        if cut {
            self.tell_guest(
                id,
                now,
                &format!("! that line was over {max} bytes: only its start was kept"),
            );
        }
        match command {
            Command::Nothing => {}
            Command::Help => {
                for line in guest::HELP {
                    self.tell_guest(id, now, line);
                }
            }
            Command::Quit => {
                if let Some(guest) = self.clients.get_mut(&id).and_then(|c| c.link.guest()) {
                    guest.quit(now);
                    self.touch(id);
                }
            }
            Command::Name(name) if !joined => {
                self.guest_join(id, now, Some(name));
            }
            Command::Name(_) => {
                let name = self.name_of(id).cloned().unwrap_or_default();
                self.tell_guest(
                    id,
                    now,
                    &format!("! you are {name}: a name is chosen before the first message"),
                );
            }
            Command::Files => self.tell_guest(
                id,
                now,
                "! raw-text guests cannot send or receive files: use the ferry program",
            ),
            Command::Say(text) if !joined && guest::is_http_request(text) => {
                if let Some(guest) = self.clients.get_mut(&id).and_then(|c| c.link.guest()) {
                    guest.close_with_error(
                        now,
                        Code::NOT_FERRY,
                        "this is a ferry chat server, not a web server",
                    );
                    self.touch(id);
                }
            }
            command => {
                if !joined && !self.guest_join(id, now, None) {
                    return;
                }
                match command {
                    Command::Say(text) => self.on_say(id, now, text.into()),
                    Command::Direct { to, text } => self.on_direct(id, now, to.into(), text.into()),
                    Command::Who => {
                        let names = self
                            .room_of(id)
                            .map(|key| self.members_of(&key))
                            .unwrap_or_default();
                        self.send_to(id, now, &Frame::Members { names });
                    }
                    Command::Unknown(what) => {
                        let what: String = what.chars().take(40).collect();
                        self.tell_guest(
                            id,
                            now,
                            &format!("! unknown command {what:?}: /help lists the commands"),
                        );
                    }
                    _ => {}
                }
            }
        }
    }

    /// Lets a guest into the default room as `requested`, or as the next
    /// free `guest-N`. A refused name is explained and the guest stays
    /// outside, free to try another; a full server closes it. Returns
    /// whether it joined.
    fn guest_join(&mut self, id: ClientId, now: Instant, requested: Option<&str>) -> bool {
        let key = room_key(DEFAULT_ROOM);
        let room = self.canonical_room(&key, Text::from_static(DEFAULT_ROOM));
        let name = match requested {
            Some(name) => name.to_string(),
            None => self.free_guest_name(&key),
        };
        let refusal = self
            .name_refusal(&key, &name)
            .or_else(|| self.join_allowed(id, now).err());
        if let Some((code, reason)) = refusal {
            if code == Code::SERVER_FULL || code == Code::FLOODING || requested.is_none() {
                if let Some(guest) = self.clients.get_mut(&id).and_then(|c| c.link.guest()) {
                    guest.close_with_error(now, code, &reason);
                    self.touch(id);
                }
            } else {
                self.tell_guest(
                    id,
                    now,
                    &format!(
                        "! {reason}: try /name with another name, or say something to join as guest-N"
                    ),
                );
            }
            return false;
        }
        let name = Text::from(name);
        let Some(guest) = self.clients.get_mut(&id).and_then(|c| c.link.guest()) else {
            return false;
        };
        guest.set_name(name.clone());
        if self.bus.is_some() {
            // Welcomed when the broker has let it in; what it says
            // meanwhile follows its join to the broker.
            self.cluster_join(id, now, name, room, requested.is_none());
            return true;
        }
        guest.send_line(
            now,
            &format!("* welcome to ferry, {name}: you are a raw-text guest in {room}; /help for commands"),
        );
        self.touch(id);
        self.enter_room(id, now, name, room);
        true
    }

    /// The name of the room keyed `key` as it was created, or `asked` for a
    /// room that does not exist yet.
    fn canonical_room(&self, key: &str, asked: Text) -> Text {
        self.rooms.get(key).map_or(asked, |room| room.name.clone())
    }

    /// The first `guest-N` nobody in the room has (or looks like).
    fn free_guest_name(&mut self, key: &str) -> String {
        loop {
            let name = format!("guest-{}", self.next_guest);
            self.next_guest += 1;
            if !self.names.contains_key(&(key.to_string(), name_key(&name))) {
                return name;
            }
        }
    }

    fn on_hello(
        &mut self,
        id: ClientId,
        now: Instant,
        hello: Hello,
        reclaim: Option<SessionSecret>,
    ) {
        let Hello { name, room, token } = hello;
        let room = if room.is_empty() {
            Text::from_static(DEFAULT_ROOM)
        } else {
            room
        };
        let key = room_key(&room);
        let source = self.clients.get(&id).and_then(|c| c.source);
        let banned = source.and_then(|s| self.sources.banned_for(s, now).map(|left| (s, left)));
        // The token comes first, so that an outsider learns nothing about
        // who is here.
        let refusal = if let Some((source, left)) = banned {
            // Even the right token: a ban is not a guessing window.
            Some((
                Code::AUTH_FAILED,
                format!(
                    "too many wrong tokens from {source}: try again in {} s",
                    left.as_secs() + 1
                ),
            ))
        } else if !self.token_matches(&token) {
            if let Some(source) = source {
                self.hold_auth_refusal(id, now, source);
                return;
            }
            Some((Code::AUTH_FAILED, "wrong or missing token".to_string()))
        } else {
            // Only a client with the right token takes a place back, and
            // before its name is checked: the place may hold that name.
            if let Some(secret) = reclaim {
                self.reclaim(id, now, &secret);
            }
            self.join_refusal(id, now, &key, &name, &room)
        };
        // A room is called what its first member called it: WELCOME tells
        // every later member that spelling, whatever case or look-alikes
        // they asked for.
        let room = self.canonical_room(&key, room);
        // HELLO comes only from a ferry connection.
        let Some(conn) = self.clients.get_mut(&id).and_then(|c| c.link.ferry()) else {
            return;
        };
        if let Some((code, reason)) = refusal {
            // `refuse` only fails outside the pending-hello state, which is
            // the state this event was raised in.
            let _ = conn.refuse(now, code, &reason);
            self.touch(id);
            return;
        }
        if self.bus.is_some() {
            // Welcomed when the broker has let it in.
            self.cluster_join(id, now, name, room, false);
            return;
        }
        if conn.welcome(now, name.clone(), room.clone()).is_err() {
            return;
        }
        if let Some(secret) = self.session_secret(id) {
            self.send_to(id, now, &Frame::Session { secret });
        }
        self.enter_room(id, now, name, room);
    }

    /// The secret that stands for client `id`'s session: its number and a
    /// keyed BLAKE3 tag of it, so that the hub keeps no table of secrets
    /// and checks a presented one against the client it names. `None`
    /// without a [`HubConfig::session_key`].
    fn session_secret(&self, id: ClientId) -> Option<SessionSecret> {
        let key = self.config.session_key.as_ref()?;
        let number = id.0.to_be_bytes();
        let mut hasher = blake3::Hasher::new_keyed(key);
        hasher.update(b"ferry session secret v1");
        hasher.update(&number);
        let tag = hasher.finalize();
        let mut secret = [0; SessionSecret::LEN];
        secret[..8].copy_from_slice(&number);
        secret[8..].copy_from_slice(&tag.as_bytes()[..SessionSecret::LEN - 8]);
        Some(SessionSecret::from_bytes(secret))
    }

    /// `RECLAIM`: client `id` presented `secret` as that of an earlier
    /// connection of its own. If it is the secret of a ferry client still
    /// here, that connection is closed with `REPLACED` and leaves its room
    /// now, so its name is free for this `HELLO`. Anything else (a stale
    /// secret from before a restart, a guess) is ignored: the client is
    /// then handled like any other.
    fn reclaim(&mut self, id: ClientId, now: Instant, secret: &SessionSecret) {
        let mut number = [0; 8];
        number.copy_from_slice(&secret.as_bytes()[..8]);
        let old = ClientId(u64::from_be_bytes(number));
        if old == id || self.session_secret(old).as_ref() != Some(secret) {
            return;
        }
        let Some(c) = self.clients.get_mut(&old) else {
            return;
        };
        let Some(conn) = c.link.ferry() else {
            return;
        };
        if !conn.is_open() {
            return;
        }
        conn.close_with_error(
            now,
            Code::REPLACED,
            "replaced by a new connection of the same client",
        );
        self.leave(old, now, Code::REPLACED);
        self.touch(old);
        self.events.push_back(HubEvent::Replaced {
            old,
            new: id,
            name: self
                .clients
                .get(&old)
                .map(|c| c.link.name().clone())
                .unwrap_or_default(),
        });
    }

    /// A wrong token from `source`: refused, but only after a delay that
    /// grows with every wrong token from the same source, and a source that
    /// keeps guessing is banned for a while (one event says so).
    fn hold_auth_refusal(&mut self, id: ClientId, now: Instant, source: Source) {
        let penalty = self.sources.auth_failed(source, now);
        if penalty.banned.is_none() {
            // Counted with its wrong tokens on the other servers too: the
            // ban may be the cluster's.
            self.cluster_auth_failed(id, source);
        }
        if let Some((ban, failures)) = penalty.banned {
            self.events.push_back(HubEvent::SourceBanned {
                source,
                failures,
                ban,
            });
        }
        if let Some(c) = self.clients.get_mut(&id) {
            let reason = "wrong or missing token".to_string();
            c.refusal = Some((now + penalty.delay, Code::AUTH_FAILED, reason));
            self.touch(id);
        }
    }

    /// Why a client with the right token cannot join as `name` in `room`
    /// (keyed `key`), if it cannot.
    fn join_refusal(
        &mut self,
        id: ClientId,
        now: Instant,
        key: &str,
        name: &str,
        room: &str,
    ) -> Option<(Code, String)> {
        if let Err(e) = check_name_characters(name) {
            Some((Code::NAME_INVALID, format!("user name: {e}")))
        } else if let Err(e) = check_name(room) {
            Some((Code::ROOM_INVALID, format!("room name: {e}")))
        } else {
            self.name_refusal(key, name)
                .or_else(|| self.join_allowed(id, now).err())
        }
    }

    /// Puts a client that was let in (welcomed, or a guest) into `room`:
    /// it learns who is there, and the room learns it came.
    fn enter_room(&mut self, id: ClientId, now: Instant, name: Text, room: Text) {
        let key = room_key(&room);
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        c.room = Some(key.clone());
        self.names.insert((key.clone(), name_key(&name)), id);
        let entry = self.rooms.entry(key.clone()).or_insert_with(|| Room {
            name: room.clone(),
            members: Vec::new(),
            seq: 0,
            replica: None,
            joining: Vec::new(),
            resync: false,
            catching_up: Vec::new(),
            awaiting_answer: None,
        });
        entry.members.push(id);
        let names = self.members_of(&key);
        if self.history.enabled() {
            let entries: Vec<HistoryEntry> = self.history.of(&key).cloned().collect();
            self.send_history(id, now, entries.iter());
        }
        self.send_to(id, now, &Frame::Members { names });
        let joined = name.clone();
        self.broadcast_with_seq(now, &key, |seq| Frame::Joined { seq, name: joined });
        self.events.push_back(HubEvent::Joined {
            client: id,
            name,
            room,
        });
    }

    /// Why `name` cannot join the room keyed `key`, if it cannot: the same
    /// rules for ferry clients and guests (valid, room on the server, and no
    /// name in the room the same or alike). A look-alike of a member is
    /// told so even when its scripts are mixed too: that is what it is.
    fn name_refusal(&self, key: &str, name: &str) -> Option<(Code, String)> {
        if let Err(e) = check_name_characters(name) {
            Some((Code::NAME_INVALID, format!("user name: {e}")))
        } else if self.names.len() >= self.config.max_clients {
            Some((Code::SERVER_FULL, "the server is full".to_string()))
        } else if self
            .rooms
            .get(key)
            .is_some_and(|room| room.members.len() >= self.config.max_room_members)
        {
            Some((
                Code::SERVER_FULL,
                crate::cluster::refusal::room_full_reason(self.config.max_room_members),
            ))
        } else if let Some(&holder) = self.names.get(&(key.to_string(), name_key(name))) {
            let held = self
                .clients
                .get(&holder)
                .map(|c| c.link.name().to_string())
                .unwrap_or_default();
            let reason = if held.to_lowercase() == name.to_lowercase() {
                format!("the name {name:?} is taken in this room")
            } else {
                format!("the name {name:?} looks like {held:?}, who is in this room")
            };
            Some((Code::NAME_TAKEN, reason))
        } else if let Err(e) = check_name_scripts(name) {
            Some((Code::NAME_INVALID, format!("user name: {e}")))
        } else {
            None
        }
    }

    fn on_say(&mut self, id: ClientId, now: Instant, text: Text) {
        if !self.within_message_cap(id, now, &text) {
            return;
        }
        if self.bus.is_some() {
            if self.room_of(id).is_some() {
                self.cluster_say(id, now, text, None);
            }
            return;
        }
        let (Some(key), Some(from)) = (self.room_of(id), self.name_of(id).cloned()) else {
            return;
        };
        self.broadcast_with_seq(now, &key, |seq| Frame::Message { seq, from, text });
    }

    fn on_direct(&mut self, id: ClientId, now: Instant, to: Text, text: Text) {
        if !self.within_message_cap(id, now, &text) {
            return;
        }
        let Some(from) = self.name_of(id).cloned() else {
            return;
        };
        let Some(key) = self.room_of(id) else {
            return;
        };
        let target = self.names.get(&(key.clone(), name_key(&to))).copied();
        if self.bus.is_some() {
            match target.filter(|&t| self.has_entered(t, &key)) {
                Some(target) => self.send_to(target, now, &Frame::DirectFrom { from, text }),
                None => self.cluster_say(id, now, text, Some(to)),
            }
            return;
        }
        match target {
            Some(target) => self.send_to(target, now, &Frame::DirectFrom { from, text }),
            None => {
                let reason = format!("nobody named {to:?} is here");
                self.send_to(
                    id,
                    now,
                    &Frame::Bounce {
                        code: Code::NO_SUCH_USER,
                        reason: reason.into(),
                    },
                );
            }
        }
    }

    fn within_message_cap(&mut self, id: ClientId, now: Instant, text: &Text) -> bool {
        let max = self.config.connection.settings().max_message as usize;
        if text.len() <= max {
            return true;
        }
        let reason = format!("message of {} bytes, the limit is {max}", text.len());
        self.send_to(
            id,
            now,
            &Frame::Bounce {
                code: Code::MESSAGE_TOO_LONG,
                reason: reason.into(),
            },
        );
        false
    }

    /// Reserves, until tree `tid` of `id` ends, the most its manifest of
    /// `manifest_len` bytes can make the server hold, while it arrives and
    /// decoded afterwards
    /// ([`decoded_bytes_bound`](crate::tree::decoded_bytes_bound): the
    /// receiver keeps the decoded manifest until the tree ends); `false`
    /// when [`HubConfig::max_manifest_memory`] has no room for it.
    fn reserve_manifest(&mut self, id: ClientId, tid: TransferId, manifest_len: u32) -> bool {
        let limits = self.config.connection.trees.unwrap_or_default();
        let len = crate::tree::decoded_bytes_bound(manifest_len as usize, &limits) as u64;
        if self.manifest_reserved + len > self.config.max_manifest_memory {
            return false;
        }
        let Some(client) = self.clients.get_mut(&id) else {
            return false;
        };
        client.manifests.push((tid, len));
        self.manifest_reserved += len;
        true
    }

    /// Tree `tid` of `id` ended: what its manifest reserved is free.
    fn release_manifest(&mut self, id: ClientId, tid: TransferId) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        if let Some(at) = client.manifests.iter().position(|&(t, _)| t == tid) {
            let (_, len) = client.manifests.swap_remove(at);
            self.manifest_reserved = self.manifest_reserved.saturating_sub(len);
        }
    }

    /// Bytes of tree manifests reserved now, all clients together (see
    /// [`HubConfig::max_manifest_memory`]).
    pub fn manifest_bytes_reserved(&self) -> u64 {
        self.manifest_reserved
    }

    /// Spends what checking a tree manifest of `manifest_len` bytes can
    /// cost ([`entries_bound`](crate::tree::entries_bound)) from the
    /// client's source: the manifest's parts are not priced one by one.
    fn take_tree_entries(&mut self, id: ClientId, now: Instant, manifest_len: u32) -> bool {
        let entries = self.tree_entries_of(manifest_len);
        match self.clients.get(&id).and_then(|c| c.source) {
            Some(source) => self.sources.take_tree_entries(source, now, entries),
            None => true,
        }
    }

    /// The most entries a manifest of `manifest_len` bytes can hold under
    /// this server's limits: what checking it can cost.
    fn tree_entries_of(&self, manifest_len: u32) -> u64 {
        let limits = self.config.connection.trees.unwrap_or_default();
        crate::tree::entries_bound(manifest_len as usize, &limits) as u64
    }

    /// `event` of `id`, unless it is the manifest of a tree whose charge
    /// the cluster has not answered: then it is kept for the answer.
    fn hold_for_charge(&mut self, id: ClientId, event: TransferEvent) -> Option<TransferEvent> {
        let TransferEvent::TreeManifest { id: tid, .. } = &event else {
            return Some(event);
        };
        let tid = *tid;
        let slot = self
            .clients
            .get_mut(&id)
            .and_then(|c| c.awaiting_charge.iter_mut().find(|(t, _)| *t == tid));
        match slot {
            Some(slot) => {
                slot.1 = Some(event);
                None
            }
            None => Some(event),
        }
    }

    /// Spends one flood token of the client and one of its source. A client
    /// out of tokens is disconnected; when only its source is (another
    /// connection from the same addresses spent them, or this one before it
    /// reconnected), the message is not delivered and the client is told.
    fn take_token(&mut self, id: ClientId, now: Instant) -> bool {
        let burst = self.config.flood_burst;
        let Some(c) = self.clients.get_mut(&id) else {
            return false;
        };
        if !c.bucket.take(now) {
            let reason = format!("more than {burst} messages in a burst");
            c.link.close_with_error(now, Code::FLOODING, &reason);
            self.touch(id);
            return false;
        }
        let Some(source) = c.source else {
            return true;
        };
        if self.sources.take_token(source, now) {
            return true;
        }
        let reason = format!(
            "not delivered: {source} is over its budget ({} messages in a burst, {} a second)",
            self.config.source_flood_burst, self.config.source_flood_per_second
        );
        if self.is_guest(id) {
            self.tell_guest(id, now, &format!("! {reason}"));
        } else {
            let bounce = Frame::Bounce {
                code: Code::FLOODING,
                reason: reason.into(),
            };
            self.send_to(id, now, &bounce);
        }
        false
    }

    /// Spends a token of `id`'s source for joining a room: reconnecting
    /// costs what it makes the room see (a `JOINED`, then a `LEFT`).
    fn join_allowed(&mut self, id: ClientId, now: Instant) -> Result<(), (Code, String)> {
        let Some(source) = self.clients.get(&id).and_then(|c| c.source) else {
            return Ok(());
        };
        if self.sources.take_token(source, now) {
            return Ok(());
        }
        Err((
            Code::FLOODING,
            format!("too many joins and messages from {source}: wait a moment"),
        ))
    }

    /// A closed connection no longer counts against its source's limit.
    fn uncount(&mut self, id: ClientId, now: Instant) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        if let (Some(source), true) = (c.source, std::mem::take(&mut c.counted)) {
            self.sources.disconnect(source, now);
        }
    }

    fn token_matches(&self, offered: &[u8]) -> bool {
        match &self.config.token {
            None => true,
            Some(expected) => constant_time_eq(expected, offered),
        }
    }

    fn room_of(&self, id: ClientId) -> Option<String> {
        self.clients.get(&id).and_then(|c| c.room.clone())
    }

    /// Whether `id` is a member of the room keyed `key` that the room's
    /// frames reach (in cluster mode, a joiner is not, until its `JOINED`).
    fn has_entered(&self, id: ClientId, key: &str) -> bool {
        self.rooms.get(key).is_some_and(|r| r.members.contains(&id))
    }

    fn members_of(&self, key: &str) -> Vec<Text> {
        if let Some(names) = self.cluster_members(key) {
            return names;
        }
        self.rooms
            .get(key)
            .map(|r| {
                r.members
                    .iter()
                    .filter_map(|m| self.clients.get(m))
                    .map(|c| c.link.name().clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn send_to(&mut self, id: ClientId, now: Instant, frame: &Frame) {
        let mut encoded = BytesMut::new();
        if frame.encode(&mut encoded).is_ok() {
            if let Some(c) = self.clients.get_mut(&id) {
                c.link.deliver(now, frame, &encoded.freeze(), &mut None);
                self.touch(id);
            }
        }
    }

    /// Sends a guest one line of text (sanitised on the way).
    fn tell_guest(&mut self, id: ClientId, now: Instant, line: &str) {
        if let Some(guest) = self.clients.get_mut(&id).and_then(|c| c.link.guest()) {
            guest.send_line(now, line);
            self.touch(id);
        }
    }

    /// Encodes a room frame once, with the room's next sequence number, and
    /// queues the same bytes for every member.
    fn broadcast_with_seq(&mut self, now: Instant, key: &str, frame: impl FnOnce(u64) -> Frame) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        room.seq += 1;
        let frame = frame(room.seq);
        if let Frame::Message { from, text, .. } = &frame {
            if self.history.enabled() {
                let time_ms = self.unix_ms(now);
                self.history
                    .record(key, HistoryEntry::new(time_ms, from, text));
            }
        }
        self.deliver_to_room(now, key, &frame);
    }

    /// The wall-clock time at `now`, in ms since the Unix epoch, from the
    /// adapter's [`set_unix_time`](Self::set_unix_time); 0 without it.
    fn unix_ms(&self, now: Instant) -> u64 {
        self.clock.map_or(0, |(at, unix_ms)| {
            let since = now.saturating_duration_since(at).as_millis();
            unix_ms.saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
        })
    }

    /// Sends a newcomer `entries` (oldest first) as `HISTORY` frames: the
    /// newest that fit in a quarter of its outgoing queue, so that history
    /// never makes it a slow reader (`docs/PROTOCOL.md` §6.3).
    fn send_history<'a>(
        &mut self,
        id: ClientId,
        now: Instant,
        entries: impl DoubleEndedIterator<Item = &'a HistoryEntry>,
    ) {
        let budget = self.config.connection.max_outgoing / 4;
        let frames: Vec<Frame> = history::newest_within(entries, budget)
            .into_iter()
            .map(|e| Frame::History {
                time_ms: e.time_ms,
                from: e.from.clone(),
                text: e.text.clone(),
            })
            .collect();
        for frame in &frames {
            self.send_to(id, now, frame);
        }
    }

    /// Encodes a room frame once and queues the same bytes for every member
    /// of the room keyed `key` on this server.
    fn deliver_to_room(&mut self, now: Instant, key: &str, frame: &Frame) {
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        let mut encoded = BytesMut::new();
        if frame.encode(&mut encoded).is_err() {
            return;
        }
        let encoded = encoded.freeze();
        let mut rendered = None;
        self.deliveries_this_process += room.members.len();
        for &member in &room.members {
            if let Some(c) = self.clients.get_mut(&member) {
                c.link.deliver(now, frame, &encoded, &mut rendered);
                delivered(c, member, &mut self.dirty, &mut self.touched);
            }
        }
    }

    /// Delivers `frame` to those of `ids` still in the room keyed `key`
    /// (a rare path: the catch-up after a reset).
    fn deliver_to_members(&mut self, now: Instant, key: &str, ids: &[ClientId], frame: &Frame) {
        let mut encoded = BytesMut::new();
        if frame.encode(&mut encoded).is_err() {
            return;
        }
        let encoded = encoded.freeze();
        let mut rendered = None;
        self.deliveries_this_process += ids.len();
        for &member in ids {
            let Some(c) = self.clients.get_mut(&member) else {
                continue;
            };
            if c.room.as_deref() != Some(key) {
                continue;
            }
            c.link.deliver(now, frame, &encoded, &mut rendered);
            delivered(c, member, &mut self.dirty, &mut self.touched);
        }
    }

    fn leave(&mut self, id: ClientId, now: Instant, code: Code) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let Some(key) = c.room.take() else {
            return;
        };
        if self.bus.is_some() {
            self.cluster_leave(id, now, &key, code);
            return;
        }
        let name = c.link.name().clone();
        self.names.remove(&(key.clone(), name_key(&name)));
        let Some(room) = self.rooms.get_mut(&key) else {
            return;
        };
        room.members.retain(|&m| m != id);
        let room_name = room.name.clone();
        if room.members.is_empty() {
            self.rooms.remove(&key);
        } else {
            let left = name.clone();
            self.broadcast_with_seq(now, &key, |seq| Frame::Left {
                seq,
                name: left,
                code,
            });
        }
        self.events.push_back(HubEvent::Left {
            client: id,
            name,
            room: room_name,
            code,
        });
    }

    fn on_transfer(&mut self, id: ClientId, now: Instant, event: TransferEvent) {
        // A tree's manifest waits for the cluster to charge what checking
        // it cost, before anyone is offered the tree.
        let event = match self.hold_for_charge(id, event) {
            Some(event) => event,
            None => return,
        };
        // An offer, or a cancel the client sent, is priced like a message:
        // each sets disk or a peer to work, and the pair made 392,000 empty
        // files in 40 s when they were free.
        let priced = match &event {
            TransferEvent::Offered { .. } | TransferEvent::TreeOffered { .. } => true,
            TransferEvent::Ended {
                outcome: Outcome::Cancelled { by_peer: true, .. },
                ..
            } => self.clients.get(&id).is_some_and(|c| c.link.is_open()),
            _ => false,
        };
        if priced && !self.take_token(id, now) {
            if let TransferEvent::Offered { id: tid, .. }
            | TransferEvent::TreeOffered { id: tid, .. } = event
            {
                let reason = "over the flood limit: offer again later";
                self.refuse_offer(id, now, tid, Code::FLOODING, reason);
                return;
            }
        }
        if let TransferEvent::TreeOffered {
            id: tid,
            manifest_len,
            ..
        } = &event
        {
            if !self.take_tree_entries(id, now, *manifest_len) {
                let (burst, rate) = (
                    self.config.source_tree_entries_burst,
                    self.config.source_tree_entries_per_second,
                );
                let reason = format!(
                    "over the folder budget of this address ({burst} manifest entries in a burst, {rate} a second): offer again later"
                );
                let tid = *tid;
                self.refuse_offer(id, now, tid, Code::FLOODING, &reason);
                return;
            }
        }
        if let TransferEvent::TreeOffered {
            id: tid,
            manifest_len,
            ..
        } = &event
        {
            if !self.reserve_manifest(id, *tid, *manifest_len) {
                let reason = "the server holds all the folder manifests it can: try again later";
                let tid = *tid;
                self.refuse_offer(id, now, tid, Code::TOO_MANY_TRANSFERS, reason);
                return;
            }
            let entries = self.tree_entries_of(*manifest_len);
            if let Err(reason) = self.cluster_charge_folder(id, *tid, entries) {
                let tid = *tid;
                self.refuse_offer(id, now, tid, Code::CLUSTER_UNAVAILABLE, &reason);
                return;
            }
        }
        if let TransferEvent::Ended { id: tid, .. } = &event {
            self.release_manifest(id, *tid);
            self.pending_trees.remove(&(id, *tid));
            if let Some(c) = self.clients.get_mut(&id) {
                c.awaiting_charge.retain(|(t, _)| t != tid);
            }
        }
        if self.remote.holds(id, &event) {
            self.on_remote_end_event(id, now, event);
            return;
        }
        match event {
            TransferEvent::TreeOffered {
                id: tid,
                name,
                total_size,
                manifest_len,
                peer,
                resume,
            } if !peer.is_empty() => {
                if self.member_in_room(id, &peer).is_none() && self.elsewhere_in_cluster(id, &peer)
                {
                    self.offer_tree_to_remote(
                        id,
                        now,
                        tid,
                        name,
                        total_size,
                        manifest_len,
                        peer,
                        resume,
                    );
                } else {
                    self.on_tree_to_member(id, now, tid, name, total_size, peer, resume);
                }
            }
            TransferEvent::TreeManifest { id: tid, manifest }
                if self.pending_trees.contains_key(&(id, tid)) =>
            {
                self.relay_tree(id, now, tid, &manifest)
            }
            TransferEvent::TreeFileStarted {
                id: tid,
                index,
                offset,
            } if self.relays.contains_key(&(id, tid)) => {
                self.pass_tree_frame(id, now, tid, RelayedTreeFrame::File { index, offset })
            }
            TransferEvent::TreeChunk {
                id: tid,
                offset,
                data,
                ..
            } if self.relays.contains_key(&(id, tid)) => {
                self.pass_tree_frame(id, now, tid, RelayedTreeFrame::Data { offset, data })
            }
            TransferEvent::TreeFileDone {
                id: tid,
                index,
                hash,
            } if self.relays.contains_key(&(id, tid)) => {
                self.pass_tree_frame(id, now, tid, RelayedTreeFrame::FileDone { index, hash })
            }
            TransferEvent::TreeFileStarted { .. } => {}
            TransferEvent::Offered {
                id: tid,
                name,
                size,
                peer,
                resume,
            } => self.on_offer(id, now, tid, name, size, peer, resume),
            TransferEvent::ResumeKey { id: tid, key } if self.relays.contains_key(&(id, tid)) => {
                // Goes to the sender with the ACCEPT it comes before.
                self.relay_keys.insert((id, tid), key);
            }
            TransferEvent::Accepted {
                id: tid,
                offset,
                window,
                prefix_hash,
            } if self.relays.contains_key(&(id, tid)) => {
                let window = window.min(self.config.connection.window);
                let (a, a_tid) = self.relays[&(id, tid)];
                let key = self.relay_keys.remove(&(id, tid));
                if self.is_incoming_tree(a, a_tid) {
                    let held = self
                        .clients
                        .get_mut(&id)
                        .and_then(|c| c.link.ferry())
                        .map(|c| c.take_relayed_held(tid))
                        .unwrap_or_default();
                    self.relay_call(
                        a,
                        now,
                        |c| c.accept_tree_relayed(now, a_tid, window, key, &held),
                        a_tid,
                    );
                    return;
                }
                self.relay_call(
                    a,
                    now,
                    |c| c.accept_relayed(now, a_tid, offset, window, prefix_hash, key),
                    a_tid,
                );
            }
            TransferEvent::Chunk {
                id: tid,
                offset,
                data,
            } if self.relays.contains_key(&(id, tid)) => {
                let (b, b_tid) = self.relays[&(id, tid)];
                if let Some(conn) = self.clients.get_mut(&b).and_then(|c| c.link.ferry()) {
                    conn.relay_chunk(now, b_tid, offset, data);
                    self.touch(b);
                }
            }
            TransferEvent::Restarted { id: tid } if self.relays.contains_key(&(id, tid)) => {
                // The recipient sees the restart in the data itself.
            }
            TransferEvent::Progress {
                id: tid, confirmed, ..
            } if self.relays.contains_key(&(id, tid)) => {
                let (a, a_tid) = self.relays[&(id, tid)];
                self.relay_call(a, now, |c| c.confirm_written(now, a_tid, confirmed), a_tid);
            }
            TransferEvent::Received { id: tid, hash }
                if self.relays.contains_key(&(id, tid)) && self.is_incoming_tree(id, tid) =>
            {
                self.pass_tree_frame(id, now, tid, RelayedTreeFrame::Done { hash })
            }
            TransferEvent::Received { id: tid, hash } if self.relays.contains_key(&(id, tid)) => {
                let (b, b_tid) = self.relays[&(id, tid)];
                if let Some(conn) = self.clients.get_mut(&b).and_then(|c| c.link.ferry()) {
                    conn.relay_done(now, b_tid, hash);
                    self.touch(b);
                }
            }
            TransferEvent::Ended { id: tid, outcome } if self.relays.contains_key(&(id, tid)) => {
                self.on_relay_ended(id, now, tid, outcome)
            }
            event => self
                .events
                .push_back(HubEvent::Transfer { client: id, event }),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_offer(
        &mut self,
        id: ClientId,
        now: Instant,
        tid: TransferId,
        name: Text,
        size: u64,
        peer: Text,
        resume: Option<ResumeKey>,
    ) {
        let refusal = if size > self.config.max_file_size {
            Some((
                Code::FILE_TOO_LARGE,
                format!(
                    "{size} bytes is over this server's limit of {}",
                    self.config.max_file_size
                ),
            ))
        } else {
            None
        };
        if let Some((code, reason)) = refusal {
            self.refuse_offer(id, now, tid, code, &reason);
            return;
        }
        if peer.is_empty() {
            self.events.push_back(HubEvent::Transfer {
                client: id,
                event: TransferEvent::Offered {
                    id: tid,
                    name,
                    size,
                    peer,
                    resume,
                },
            });
            return;
        }
        let target = self.member_in_room(id, &peer);
        if target.is_none() && self.elsewhere_in_cluster(id, &peer) {
            self.offer_to_remote(id, now, tid, name, size, peer, resume, None);
            return;
        }
        if target.is_some_and(|t| self.is_guest(t)) {
            let reason = format!("{peer} is a raw-text guest and cannot receive files");
            self.refuse_offer(id, now, tid, Code::FILE_REJECTED, &reason);
            return;
        }
        if self.relay_memory_full() {
            let reason = "the server holds all the relayed data it can: try again later";
            self.refuse_offer(id, now, tid, Code::TOO_MANY_TRANSFERS, reason);
            return;
        }
        let Some(target) = target else {
            let reason = format!("nobody named {peer:?} is here");
            self.refuse_offer(id, now, tid, Code::NO_SUCH_USER, &reason);
            return;
        };
        let from = self.name_of(id).cloned().unwrap_or_default();
        let offered = self
            .clients
            .get_mut(&target)
            .and_then(|c| c.link.ferry())
            .map(|conn| conn.offer_relayed(now, &name, size, &from, resume));
        self.touch(target);
        match offered {
            Some(Ok(b_tid)) => {
                self.relays.insert((id, tid), (target, b_tid));
                self.relays.insert((target, b_tid), (id, tid));
                self.relay_reserved += u64::from(self.config.connection.window);
                self.events.push_back(HubEvent::RelayStarted {
                    from: id,
                    to: target,
                    name,
                    size,
                });
            }
            _ => {
                let reason = format!("{peer} cannot take another file right now");
                self.refuse_offer(id, now, tid, Code::TOO_MANY_TRANSFERS, &reason);
            }
        }
    }

    /// A tree offered to a member (`peer`): refused at once if it cannot
    /// be relayed, else held until its manifest is whole and checked
    /// ([`relay_tree`](Self::relay_tree)).
    #[allow(clippy::too_many_arguments)]
    fn on_tree_to_member(
        &mut self,
        id: ClientId,
        now: Instant,
        tid: TransferId,
        name: Text,
        total_size: u64,
        peer: Text,
        resume: Option<ResumeKey>,
    ) {
        match self.tree_recipient(id, &peer) {
            Ok(target) => {
                self.pending_trees.insert(
                    (id, tid),
                    PendingTree {
                        target,
                        name,
                        total_size,
                        resume,
                    },
                );
            }
            Err((code, reason)) => {
                self.refuse_offer(id, now, tid, code, &reason);
            }
        }
    }

    /// The client named `peer` in `id`'s room, connected and entered: the
    /// one a file or a tree for `peer` goes to.
    fn member_in_room(&self, id: ClientId, peer: &str) -> Option<ClientId> {
        let key = self.room_of(id)?;
        self.entered_member(&key, &name_key(peer))
    }

    /// The member of the room keyed `room_key` whose name key is
    /// `name_key`, connected and entered.
    fn entered_member(&self, room_key: &str, name_key: &str) -> Option<ClientId> {
        self.names
            .get(&(room_key.to_string(), name_key.to_string()))
            .copied()
            .filter(|t| self.clients.get(t).is_some_and(|c| c.link.is_open()))
            .filter(|&t| self.has_entered(t, room_key))
    }

    /// Why `target` (called `name`) cannot be offered a folder, if it
    /// cannot: a guest, or a client that did not say it takes folders.
    fn refuses_folders(&self, target: ClientId, name: &str) -> Option<(Code, String)> {
        let takes_trees = self
            .clients
            .get(&target)
            .and_then(|c| c.link.ferry_ref())
            .is_some_and(|c| c.peer_features() & features::TREES != 0);
        (self.is_guest(target) || !takes_trees).then(|| {
            (
                Code::FILE_REJECTED,
                format!("{name}'s client does not take folders"),
            )
        })
    }

    /// Whether `tid` is a tree that `client` sends to this hub.
    fn is_incoming_tree(&self, client: ClientId, tid: TransferId) -> bool {
        self.clients
            .get(&client)
            .and_then(|c| c.link.ferry_ref())
            .is_some_and(|c| c.is_incoming_tree(tid))
    }

    /// Who in `id`'s room a tree for `peer` goes to, or why it cannot.
    fn tree_recipient(&self, id: ClientId, peer: &str) -> Result<ClientId, (Code, String)> {
        let target = self.member_in_room(id, peer);
        let Some(target) = target else {
            return Err((Code::NO_SUCH_USER, format!("nobody named {peer:?} is here")));
        };
        if let Some(refusal) = self.refuses_folders(target, peer) {
            return Err(refusal);
        }
        if self.relay_memory_full() {
            return Err((
                Code::TOO_MANY_TRANSFERS,
                "the server holds all the relayed data it can: try again later".to_string(),
            ));
        }
        Ok(target)
    }

    /// The manifest of a tree for a member is whole and checked (by the
    /// sender's connection, as any receiver checks it): offered to the
    /// member, unchanged, and relayed from then on.
    fn relay_tree(&mut self, id: ClientId, now: Instant, tid: TransferId, manifest: &Manifest) {
        let Some(pending) = self.pending_trees.remove(&(id, tid)) else {
            return;
        };
        let from = self.name_of(id).cloned().unwrap_or_default();
        // Still there, and still room for it?
        let peer = self
            .clients
            .get(&pending.target)
            .map(|c| c.link.name().to_string())
            .unwrap_or_default();
        if let Err((code, reason)) = self.tree_recipient(id, &peer).and_then(|t| {
            if t == pending.target {
                Ok(t)
            } else {
                Err((Code::NO_SUCH_USER, format!("{peer} left")))
            }
        }) {
            self.refuse_offer(id, now, tid, code, &reason);
            return;
        }
        let offered = self
            .clients
            .get_mut(&pending.target)
            .and_then(|c| c.link.ferry())
            .map(|conn| {
                conn.offer_tree_relayed(now, &pending.name, manifest, &from, pending.resume)
            });
        self.touch(pending.target);
        match offered {
            Some(Ok(b_tid)) => {
                let target = pending.target;
                self.relays.insert((id, tid), (target, b_tid));
                self.relays.insert((target, b_tid), (id, tid));
                self.relay_reserved += u64::from(self.config.connection.window);
                self.events.push_back(HubEvent::RelayStarted {
                    from: id,
                    to: target,
                    name: Text::from(format!("{}/", pending.name)),
                    size: pending.total_size,
                });
            }
            _ => {
                let reason = format!("{peer} cannot take another transfer right now");
                self.refuse_offer(id, now, tid, Code::TOO_MANY_TRANSFERS, &reason);
            }
        }
    }

    /// Passes a frame of the tree `id` sends (its end `tid`) on to the
    /// member it is relayed to.
    fn pass_tree_frame(
        &mut self,
        id: ClientId,
        now: Instant,
        tid: TransferId,
        frame: RelayedTreeFrame,
    ) {
        let Some(&(b, b_tid)) = self.relays.get(&(id, tid)) else {
            return;
        };
        self.relay_call(b, now, |c| c.relay_tree_frame(now, b_tid, frame), b_tid);
    }

    /// One end of a relay ended: finish the other end to match.
    fn on_relay_ended(&mut self, id: ClientId, now: Instant, tid: TransferId, outcome: Outcome) {
        let Some((other, other_tid)) = self.relays.remove(&(id, tid)) else {
            return;
        };
        self.relays.remove(&(other, other_tid));
        self.relay_keys.remove(&(id, tid));
        self.relay_keys.remove(&(other, other_tid));
        let window = u64::from(self.config.connection.window);
        self.relay_reserved = self.relay_reserved.saturating_sub(window);
        // The hub offers with odd ids: an odd id is the recipient's end.
        let recipient_side = tid & 1 == 1;
        let (from, to) = if recipient_side {
            (other, id)
        } else {
            (id, other)
        };
        self.events.push_back(HubEvent::RelayEnded {
            from,
            to,
            outcome: outcome.clone(),
        });
        let gone = self.why_gone(id, recipient_side, &outcome);
        let told = self.outcome_for_other_end(id, recipient_side, outcome);
        self.end_relay_end(other, other_tid, now, &told, &gone);
    }

    /// What the other end of a relay that `id`'s end ended with `outcome`
    /// is told: the outcome itself, except that a cancel not of the
    /// member's own words says who went and why.
    fn outcome_for_other_end(
        &self,
        id: ClientId,
        recipient_side: bool,
        outcome: Outcome,
    ) -> Outcome {
        match outcome {
            Outcome::Cancelled {
                code,
                reason,
                by_peer: true,
            } if code != Code::CONNECTION_LOST && code != Code::QUIT => Outcome::Cancelled {
                code,
                reason,
                by_peer: true,
            },
            Outcome::Cancelled { .. } => Outcome::Cancelled {
                code: Code::PEER_GONE,
                reason: self.why_gone(id, recipient_side, &outcome),
                by_peer: true,
            },
            other => other,
        }
    }

    /// Ends `client`'s end `tid` of a relay as `outcome` (how the other end
    /// ended) says; a transfer that cannot end so is cancelled, with the
    /// cancel's words or `fallback`.
    fn end_relay_end(
        &mut self,
        client: ClientId,
        tid: TransferId,
        now: Instant,
        outcome: &Outcome,
        fallback: &str,
    ) {
        let Some(conn) = self.clients.get_mut(&client).and_then(|c| c.link.ferry()) else {
            return;
        };
        let result = match outcome {
            Outcome::Verified => conn.finish_receive(now, tid, Ok(())),
            Outcome::Failed { code, reason } => {
                conn.finish_receive(now, tid, Err((*code, reason.clone())))
            }
            Outcome::Rejected { code, reason } => conn.reject(now, tid, *code, reason),
            Outcome::Cancelled { .. } => Err(Misuse::NoSuchTransfer(tid)),
        };
        if result.is_err() {
            let (code, reason) = match outcome {
                Outcome::Cancelled { code, reason, .. } => (*code, reason.as_str()),
                _ => (Code::PEER_GONE, fallback),
            };
            // Fails only if this end already ended, which is fine.
            let _ = conn.cancel(now, tid, code, reason);
        }
        self.touch(client);
    }

    /// What the other end of a relay is told when `id`'s end ended with
    /// `outcome` without a word of its own: who went, and why (it left,
    /// its link was lost, or the server dropped it for a fault), so that a
    /// sender learns more than "gone".
    fn why_gone(&self, id: ClientId, recipient_side: bool, outcome: &Outcome) -> String {
        let who = self
            .clients
            .get(&id)
            .map(|c| c.link.name().to_string())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| {
                let role = if recipient_side {
                    "recipient"
                } else {
                    "sender"
                };
                format!("the {role}")
            });
        match outcome {
            Outcome::Cancelled { code, .. } if *code == Code::QUIT => format!("{who} left"),
            Outcome::Cancelled { code, .. } if *code == Code::REPLACED => {
                format!("{who} came back on a new connection, which may resume the transfer")
            }
            Outcome::Cancelled {
                code,
                reason,
                by_peer: true,
            } if *code == Code::CONNECTION_LOST => {
                format!("{who}'s connection was lost ({reason})")
            }
            Outcome::Cancelled {
                code,
                reason,
                by_peer: false,
            } => format!("{who} was disconnected by the server: {code} ({reason})"),
            _ => format!("{who} is gone"),
        }
    }

    /// Calls into `client`'s connection for relay bookkeeping; a failure
    /// means the transfer is already gone there, so cancel it to be sure.
    /// Refuses `id`'s offer `tid` with `code` and `reason`.
    fn refuse_offer(
        &mut self,
        id: ClientId,
        now: Instant,
        tid: TransferId,
        code: Code,
        reason: &str,
    ) {
        self.relay_call(id, now, |c| c.reject(now, tid, code, reason), tid);
    }

    /// Whether the relays hold all the memory they may: another would pass
    /// [`HubConfig::max_relay_memory`] with its window.
    fn relay_memory_full(&self) -> bool {
        self.relay_reserved + u64::from(self.config.connection.window)
            > self.config.max_relay_memory
    }

    fn relay_call(
        &mut self,
        client: ClientId,
        now: Instant,
        f: impl FnOnce(&mut Connection) -> Result<(), Misuse>,
        tid: TransferId,
    ) {
        if let Some(conn) = self.clients.get_mut(&client).and_then(|c| c.link.ferry()) {
            if f(conn).is_err() {
                let _ = conn.cancel(now, tid, Code::PEER_GONE, "relay out of step");
            }
            self.touch(client);
        }
    }
}

fn room_key(room: &str) -> String {
    if room.is_empty() {
        DEFAULT_ROOM.to_string()
    } else {
        name_key(room)
    }
}

/// Compares secrets in constant time: both are hashed first (BLAKE3), so
/// the time depends on neither their contents nor where they first differ,
/// and the comparison of the two 32-byte digests touches every byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let a = blake3::hash(a);
    let b = blake3::hash(b);
    let diff = a
        .as_bytes()
        .iter()
        .zip(b.as_bytes())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keeps the compiler from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn secrets_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"abc", b""));
    }
}
