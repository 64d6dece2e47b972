//! Limits and timeouts, with the defaults the protocol document names.

use crate::cluster::ServerId;
use crate::frame::{Settings, DATA_OVERHEAD, MIN_DATA};
use crate::secret::SessionSecret;
use std::fmt;
use std::time::Duration;

/// A consuming setter per field, named after the field, so that a
/// configuration reads as one expression (the struct is
/// `#[non_exhaustive]`, so other crates cannot write a struct literal):
/// `HubConfig::default().max_clients(500).guests(false)`.
macro_rules! setters {
    ($($field:ident: $ty:ty => $doc:literal;)*) => {
        $(
            #[doc = $doc]
            #[must_use]
            pub fn $field(mut self, $field: $ty) -> Self {
                self.$field = $field;
                self
            }
        )*
    };
}

/// Limits and timeouts of one connection, either role.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Largest frame body accepted after the handshake.
    pub max_frame: u32,
    /// Largest frame body accepted before the handshake completes.
    pub handshake_max_frame: u32,
    /// Largest chat message text in bytes (the server's cap; a client learns
    /// the server's from `WELCOME`). Strings on the wire carry a 16-bit
    /// length, so anything above 65,535 counts as 65,535.
    pub max_message: u32,
    /// Largest `DATA` payload this side sends (capped by the peer's limit).
    pub chunk_size: u32,
    /// Flow-control window granted to the peer for each incoming transfer.
    pub window: u32,
    /// Close the connection when nothing arrives for this long.
    pub idle_timeout: Duration,
    /// Close the connection when the handshake takes longer than this.
    pub handshake_timeout: Duration,
    /// Transfers open at once, each direction counted together.
    pub max_transfers: usize,
    /// Bytes of chat and control frames that may wait for the peer to read
    /// before it counts as a slow reader (file data is bounded separately by
    /// the flow-control window).
    pub max_outgoing: usize,
    /// Server role: control frames (`PING`, `PONG`, extensions, `BYE`,
    /// answers to transfers, a `CREDIT` that opens less than
    /// [`MIN_DATA`]) a client may send in a burst.
    /// Past the budget it is closed with `FLOODING`. Chat frames and offers
    /// are priced by the hub's flood limits instead, file data by the
    /// window.
    pub frame_burst: u32,
    /// Server role: control frames a client may send per second on average.
    pub frame_per_second: u32,
    /// Take trees (folders sent whole, `docs/PROTOCOL.md` §6.12) within
    /// these limits: a server with them announces trees in its answer to
    /// a client's `FEATURES`. `None` (the default): trees are refused, as
    /// by a peer that does not know them. Set it only where the
    /// application handles [`TransferEvent::TreeManifest`](crate::transfer::TransferEvent::TreeManifest).
    pub trees: Option<crate::tree::TreeLimits>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame: 1 << 20,
            handshake_max_frame: 4096,
            max_message: 4096,
            chunk_size: 64 * 1024,
            window: 4 << 20,
            idle_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            max_transfers: 8,
            max_outgoing: 1 << 20,
            frame_burst: 100,
            frame_per_second: 50,
            trees: None,
        }
    }
}

impl Config {
    setters! {
        max_frame: u32 => "Sets the largest frame body accepted after the handshake.";
        handshake_max_frame: u32 => "Sets the largest frame body accepted before the handshake completes.";
        max_message: u32 => "Sets the largest chat message text in bytes.";
        chunk_size: u32 => "Sets the largest `DATA` payload this side sends.";
        window: u32 => "Sets the flow-control window granted for each incoming transfer.";
        idle_timeout: Duration => "Sets how long a silent connection is kept.";
        handshake_timeout: Duration => "Sets how long the handshake may take.";
        max_transfers: usize => "Sets how many transfers may be open at once.";
        max_outgoing: usize => "Sets the chat and control bytes that may wait for a slow reader.";
        frame_burst: u32 => "Sets the control frames a client may send in a burst (server role).";
        frame_per_second: u32 => "Sets the control frames a client may send per second (server role).";
        trees: Option<crate::tree::TreeLimits> => "Takes trees within these limits (`None`: refuses them).";
    }

    /// What a server announces in `WELCOME`.
    pub fn settings(&self) -> Settings {
        Settings {
            max_frame: self.max_frame,
            max_message: self.max_message.min(u32::from(u16::MAX)),
            chunk_size: self.effective_chunk_size(self.max_frame),
            window: self.window,
            idle_timeout_ms: u32::try_from(self.idle_timeout.as_millis()).unwrap_or(u32::MAX),
        }
    }

    /// The chunk size to send with when the peer accepts bodies up to
    /// `peer_max_frame`: never zero, never more than fits in one frame, and
    /// never under the floor receivers hold `DATA` to ([`MIN_DATA`]).
    pub(crate) fn effective_chunk_size(&self, peer_max_frame: u32) -> u32 {
        let fits = peer_max_frame.saturating_sub(DATA_OVERHEAD as u32);
        self.chunk_size.max(MIN_DATA).min(fits).max(1)
    }
}

/// What a client asks for in `HELLO`.
///
/// Its `Debug` form shows whether a token is set, never the token.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Limits and timeouts.
    pub connection: Config,
    /// The user name to ask for.
    pub name: String,
    /// The room to join; empty for the default room.
    pub room: String,
    /// Authentication token; empty for none.
    pub token: Vec<u8>,
    /// The secret of this client's earlier connection to the same server
    /// (from [`Event::Session`](crate::Event::Session)), presented in
    /// `RECLAIM` before `HELLO` so that the server closes that connection
    /// and gives the name back at once. `None`: a first connection. Send it
    /// only to the server that issued it.
    pub reclaim: Option<SessionSecret>,
}

impl ClientConfig {
    /// A client named `name` joining the default room, with default limits.
    pub fn new(name: impl Into<String>) -> Self {
        ClientConfig {
            connection: Config::default(),
            name: name.into(),
            room: String::new(),
            token: Vec::new(),
            reclaim: None,
        }
    }

    /// Uses `connection` as the limits and timeouts instead of the defaults.
    pub fn connection(mut self, connection: Config) -> Self {
        self.connection = connection;
        self
    }

    /// Joins `room` instead of the default one.
    pub fn room(mut self, room: impl Into<String>) -> Self {
        self.room = room.into();
        self
    }

    /// Presents `token` in the handshake.
    pub fn token(mut self, token: impl Into<Vec<u8>>) -> Self {
        self.token = token.into();
        self
    }

    /// Takes back the place of the earlier connection that was handed
    /// `secret` (see [`reclaim`](Self::reclaim)).
    pub fn reclaim(mut self, secret: SessionSecret) -> Self {
        self.reclaim = Some(secret);
        self
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("connection", &self.connection)
            .field("name", &self.name)
            .field("room", &self.room)
            .field("token", &Redacted(!self.token.is_empty()))
            .field("reclaim", &Redacted(self.reclaim.is_some()))
            .finish()
    }
}

/// Everything a server enforces, on top of each connection's [`Config`]:
/// access, limits and flood control. This is the one place where a
/// server's limits and their defaults are defined; `ferry serve` has a flag
/// for each.
///
/// | Field | Default | `ferry serve` flag |
/// |-------|---------|--------------------|
/// | [`token`](Self::token) | none: anyone may join | `--token`, or `FERRY_TOKEN` |
/// | [`max_clients`](Self::max_clients) | 10,000 | `--max-clients` |
/// | [`max_per_ip`](Self::max_per_ip) | 64 per address group | `--max-per-ip` |
/// | [`source_prefix_v4`](Self::source_prefix_v4) | 32: each IPv4 address is a group | `--source-prefix-v4` |
/// | [`source_prefix_v6`](Self::source_prefix_v6) | 64: each IPv6 /64 is a group | `--source-prefix-v6` |
/// | [`max_file_size`](Self::max_file_size) | 1 TiB | `--max-file-size` |
/// | [`inbox_quota`](Self::inbox_quota) | none: the disk is the limit | `--inbox-quota` |
/// | [`max_manifest_memory`](Self::max_manifest_memory) | 64 MiB | `--tree-manifest-memory` |
/// | [`flood_burst`](Self::flood_burst) | 20 messages | `--flood-burst` |
/// | [`flood_per_second`](Self::flood_per_second) | 10 messages/s | `--flood-rate` |
/// | [`source_flood_burst`](Self::source_flood_burst) | 60 messages and joins per source | `--source-flood-burst` |
/// | [`source_flood_per_second`](Self::source_flood_per_second) | 20 messages and joins/s per source | `--source-flood-rate` |
/// | [`source_tree_entries_burst`](Self::source_tree_entries_burst) | 200,000 folder manifest entries per source | `--source-tree-entries-burst` |
/// | [`source_tree_entries_per_second`](Self::source_tree_entries_per_second) | 20,000 folder manifest entries/s per source | `--source-tree-entries-rate` |
/// | [`auth_failures_before_ban`](Self::auth_failures_before_ban) | 10 wrong tokens | `--auth-ban-after` |
/// | [`auth_ban`](Self::auth_ban) | 300 s | `--auth-ban` |
/// | [`max_room_members`](Self::max_room_members) | 1,000 | `--max-room-members` |
/// | [`max_relay_memory`](Self::max_relay_memory) | 256 MiB | `--max-relay-memory` |
/// | [`history`](Self::history) | 0: no room history | `--history` |
/// | [`max_history_bytes`](Self::max_history_bytes) | 16 MiB | `--max-history-memory` |
/// | [`max_outgoing_memory`](Self::max_outgoing_memory) | 256 MiB | `--max-outgoing-memory` |
/// | [`max_incoming_memory`](Self::max_incoming_memory) | 64 MiB | `--max-incoming-memory` |
/// | `connection.handshake_timeout` | 10 s | `--handshake-timeout` |
/// | `connection.idle_timeout` | 30 s | `--idle-timeout` |
/// | `connection.max_outgoing` | 1 MiB per client | (slow readers are dropped past it) |
/// | `connection.frame_burst` | 100 control frames | `--frame-burst` |
/// | `connection.frame_per_second` | 50 control frames/s | `--frame-rate` |
/// | [`guests`](Self::guests) | on: raw-text guests may join | `--no-guests` |
/// | [`guest_idle_timeout`](Self::guest_idle_timeout) | 10 min | `--guest-idle-timeout` |
/// | [`guest_line_wait`](Self::guest_line_wait) | 1 s | (a line with no end of line is taken after it) |
/// | [`GUEST_LINE_MAX`](crate::guest::GUEST_LINE_MAX) | 1,024 bytes per guest line | (longer lines are cut) |
///
/// Its `Debug` form shows whether a token is set, never the token.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubConfig {
    /// Limits and timeouts of every client connection.
    pub connection: Config,
    /// Clients in rooms at once; more are refused with `SERVER_FULL`.
    pub max_clients: usize,
    /// Connections at once from one address group (see
    /// [`source_prefix_v4`](Self::source_prefix_v4)), joined or not; the
    /// next one is closed at once with `ERROR SERVER_FULL`. Enforced for
    /// clients added with [`Hub::connect_from`](crate::Hub::connect_from),
    /// which every ferry runtime uses.
    pub max_per_ip: usize,
    /// Leading bits of an IPv4 address that name its source for per-source
    /// limits ([`Source`](crate::Source)); 32: every address is its own.
    pub source_prefix_v4: u8,
    /// Leading bits of an IPv6 address that name its source; 64: a /64,
    /// the block one machine is usually given, counts as one source.
    pub source_prefix_v6: u8,
    /// Largest file accepted, in bytes; larger offers are rejected with
    /// `FILE_TOO_LARGE`.
    pub max_file_size: u64,
    /// Most bytes the server's inbox may hold, counting finished files,
    /// partial files and the full size of uploads under way; an offer that
    /// would go over it is rejected with `INBOX_FULL` before any byte is
    /// written. `None`: no quota. The hub only carries it: the inbox of the
    /// runtime (`ferry_files::HubFiles`) enforces it, as only it sees files.
    pub inbox_quota: Option<u64>,
    /// Bytes of tree manifests all clients together may make the server
    /// hold, while they arrive and decoded until their trees end (each
    /// connection receives at most one at a time, of at most
    /// `connection.trees`' `max_manifest_bytes`; each is counted at
    /// [`decoded_bytes_bound`](crate::tree::decoded_bytes_bound) of its
    /// announced length): a `TREE_OFFER` whose manifest would pass it is
    /// rejected with `TOO_MANY_TRANSFERS`.
    /// Like the quota, the hub only carries it: the inbox of the runtime
    /// (`ferry_files::HubFiles`) enforces it.
    pub max_manifest_memory: u64,
    /// Messages a client may send in a burst (`SAY`, `DIRECT_TO`, `WHO`).
    pub flood_burst: u32,
    /// Messages per second a client may send on average.
    pub flood_per_second: u32,
    /// Messages (`SAY`, `DIRECT_TO`, `WHO`, `OFFER`, `CANCEL`, guest lines)
    /// and joins that all connections from one source (see
    /// [`source_prefix_v4`](Self::source_prefix_v4)) may send in a burst.
    /// The budget is shared and outlives the connections, so reconnecting
    /// does not refill it. A message over it is not delivered (`BOUNCE
    /// FLOODING`); a join over it is refused (`REFUSE FLOODING`).
    pub source_flood_burst: u32,
    /// Messages and joins per second one source may send on average.
    pub source_flood_per_second: u32,
    /// Entries of folder manifests all clients of one source may offer in
    /// a burst: what checking them costs the server. A `TREE_OFFER` spends
    /// as many as its `manifest_len` could hold
    /// (`(manifest_len - 16) / 27`, at most the trees' `max_entries`, at
    /// most this burst), before any of it arrives; over the budget it is
    /// `REJECT FLOODING`. Shared by the source's connections and kept
    /// across reconnects, like [`source_flood_burst`](Self::source_flood_burst).
    pub source_tree_entries_burst: u32,
    /// Folder manifest entries per second one source may offer on average.
    pub source_tree_entries_per_second: u32,
    /// Wrong tokens from one source before it is banned for
    /// [`auth_ban`](Self::auth_ban). Each wrong token is answered later than
    /// the one before (250 ms, doubling, at most 4 s). In a cluster the
    /// source's wrong tokens on every server count toward one ban too
    /// (the broker tells every server of it: [`BusInput::SourceBanned`]).
    ///
    /// [`BusInput::SourceBanned`]: crate::cluster::BusInput::SourceBanned
    pub auth_failures_before_ban: u32,
    /// How long a source that kept presenting wrong tokens is turned away
    /// (`ERROR AUTH_FAILED` at connect).
    pub auth_ban: Duration,
    /// Members a room may hold; the next is refused with `SERVER_FULL`. A
    /// room's `MEMBERS` frame must fit in a frame and in a newcomer's
    /// outgoing queue: see [`check`](Self::check).
    pub max_room_members: usize,
    /// File data all relayed transfers together may hold in the server: each
    /// reserves its flow-control window (`connection.window`) while it runs,
    /// and an offer that would pass this is rejected with
    /// `TOO_MANY_TRANSFERS`. A receiver that stops reading makes the server
    /// hold its window (and a small cost per queued frame), so this bounds
    /// what stalled receivers can make the server hold in all.
    pub max_relay_memory: u64,
    /// When set, `HELLO` must carry this token, compared in constant time;
    /// otherwise the client is refused with `AUTH_FAILED`. Raw-text guests
    /// cannot present one, so a server with a token turns them away.
    pub token: Option<Vec<u8>>,
    /// Serve raw-text guests: a peer whose first byte is not the preamble's
    /// `0x89` (`nc`, `telnet`) joins the default room as a line-based guest
    /// (`docs/PROTOCOL.md` §2.3). Off: such a peer is closed with
    /// `NOT_FERRY`, as version 1 servers did before.
    pub guests: bool,
    /// A raw-text guest that sends nothing for this long is closed with
    /// `IDLE_TIMEOUT`. Longer than `connection.idle_timeout` because a guest
    /// has no keepalive: `nc` sends nothing while its user only reads.
    pub guest_idle_timeout: Duration,
    /// Bytes from a guest with no end of line yet count as a line once no
    /// more has arrived for this long, for clients that write text without
    /// newlines (a bare `QTcpSocket` write). End of file also ends a line.
    pub guest_line_wait: Duration,
    /// The key a hub makes session secrets with (`SESSION`, `RECLAIM`,
    /// `docs/PROTOCOL.md` §6.11): set it to 32 bytes from a secure random
    /// source, new at each start, and every welcomed client is handed a
    /// secret that lets it take its place back at once after its
    /// connection is lost. `None` (the default, as the core draws no
    /// randomness): no secrets are handed out and `RECLAIM` is ignored, so a
    /// client that reconnects waits for its old connection to time out.
    /// Every ferry runtime sets it when it is `None`.
    pub session_key: Option<[u8; 32]>,
    /// Cluster mode: this server's id in a cluster of servers sharing one
    /// broker ([`crate::cluster`]). Joins, messages, leaves and
    /// announcements then go through [`Hub::poll_bus`](crate::Hub::poll_bus)
    /// to the broker and come back through
    /// [`Hub::handle_bus`](crate::Hub::handle_bus). `None` (the default):
    /// one server on its own.
    pub cluster: Option<ServerId>,
    /// Bytes of requests the hub may have sent to the broker and not had
    /// answered; a message or join past it is refused with
    /// `CLUSTER_UNAVAILABLE` (leaves always go), so a broker that falls
    /// behind costs bounded memory, never a silent loss.
    pub max_bus_bytes: usize,
    /// Room history: the last messages of each room a newcomer is sent
    /// first, as `HISTORY` frames (`docs/PROTOCOL.md` §4.38); 0: none. On
    /// its own the hub keeps them ([`max_history_bytes`](Self::max_history_bytes)
    /// in all); in a cluster the broker keeps them.
    pub history: usize,
    /// Bytes of room history the hub holds: on its own, every room's
    /// together (the oldest message of any room goes first); in a cluster,
    /// the histories it holds for joiners until they enter (a joiner past
    /// it gets none).
    pub max_history_bytes: usize,
    /// Memory the chat and control queues of every client hold together
    /// (their bytes and the room their buffers keep beyond them:
    /// [`Hub::held_bytes`](crate::Hub::held_bytes)). Each
    /// client's own queue is bounded by `connection.max_outgoing`; past
    /// this total, of the clients with the biggest queues (at least 64 KiB,
    /// within a factor of two of the biggest) the one that has been that far
    /// behind the longest is dropped as a slow reader (`SLOW_READER`), then
    /// the next, until the total is back within it. Clients that keep up
    /// hold next to nothing and are never dropped for it, so the total may
    /// pass this by at most 64 KiB per client.
    pub max_outgoing_memory: usize,
    /// Memory the unfinished frames of every client may hold together:
    /// what arrived of a frame not yet complete, in a buffer that grows
    /// with it (each client's bounded on its own by `max_frame`, so ten
    /// thousand clients each holding a frame nearly whole would make the
    /// server hold gigabytes). Past this total, of the clients holding the
    /// most (at least 16 KiB, within a factor of two of the biggest) the
    /// one that has held that much the longest is closed with `FLOODING`,
    /// then the next, until the total is back within it. A client that
    /// finishes what it begins holds a frame only while it arrives, so the
    /// total may pass this by at most 16 KiB per client.
    pub max_incoming_memory: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            connection: Config::default(),
            max_clients: 10_000,
            max_per_ip: 64,
            source_prefix_v4: 32,
            source_prefix_v6: 64,
            max_file_size: 1 << 40,
            inbox_quota: None,
            max_manifest_memory: 64 << 20,
            flood_burst: 20,
            flood_per_second: 10,
            source_flood_burst: 60,
            source_flood_per_second: 20,
            source_tree_entries_burst: 200_000,
            source_tree_entries_per_second: 20_000,
            auth_failures_before_ban: 10,
            auth_ban: Duration::from_secs(300),
            max_room_members: 1000,
            max_relay_memory: 256 << 20,
            token: None,
            guests: true,
            guest_idle_timeout: Duration::from_secs(600),
            guest_line_wait: Duration::from_secs(1),
            session_key: None,
            cluster: None,
            max_bus_bytes: 4 << 20,
            history: 0,
            max_history_bytes: 16 << 20,
            max_outgoing_memory: 256 << 20,
            max_incoming_memory: 64 << 20,
        }
    }
}

impl HubConfig {
    setters! {
        connection: Config => "Sets the limits and timeouts of every client connection.";
        max_clients: usize => "Sets how many clients may be in rooms at once.";
        max_per_ip: usize => "Sets how many connections one address group may hold at once.";
        source_prefix_v4: u8 => "Sets the leading bits of an IPv4 address that name its source (0 to 32).";
        source_prefix_v6: u8 => "Sets the leading bits of an IPv6 address that name its source (0 to 128).";
        max_file_size: u64 => "Sets the largest file accepted, in bytes.";
        inbox_quota: Option<u64> => "Sets the most bytes the inbox may hold (`None`: no quota).";
        max_manifest_memory: u64 => "Sets the bytes of tree manifests all clients together may make the server hold.";
        flood_burst: u32 => "Sets the messages a client may send in a burst.";
        flood_per_second: u32 => "Sets the messages per second a client may send on average.";
        source_flood_burst: u32 => "Sets the messages and joins one source may send in a burst.";
        source_flood_per_second: u32 => "Sets the messages and joins per second one source may send.";
        source_tree_entries_burst: u32 => "Sets the folder manifest entries one source may offer in a burst.";
        source_tree_entries_per_second: u32 => "Sets the folder manifest entries per second one source may offer.";
        auth_failures_before_ban: u32 => "Sets the wrong tokens from one source before it is banned.";
        auth_ban: Duration => "Sets how long a banned source is turned away.";
        max_room_members: usize => "Sets the members a room may hold (see [`check`](Self::check)).";
        max_relay_memory: u64 => "Sets the file data all relayed transfers may hold together.";
        guests: bool => "Serves raw-text guests, or not.";
        guest_idle_timeout: Duration => "Sets how long a silent raw-text guest is kept.";
        guest_line_wait: Duration => "Sets how long a guest's unfinished line waits for its end.";
        max_bus_bytes: usize => "Sets the bytes of requests to the cluster's broker that may wait for an answer.";
        history: usize => "Sets the messages of each room's history a newcomer is sent (0: none).";
        max_history_bytes: usize => "Sets the bytes of room history the hub may hold.";
        max_outgoing_memory: usize => "Sets the memory all clients' chat and control queues may hold together.";
        max_incoming_memory: usize => "Sets the memory all clients' unfinished frames may hold together.";
    }

    /// Cluster mode, as server `server` (see [`cluster`](Self::cluster)).
    #[must_use]
    pub fn cluster(mut self, server: ServerId) -> Self {
        self.cluster = Some(server);
        self
    }

    /// Requires `token` in every `HELLO`.
    #[must_use]
    pub fn token(mut self, token: impl Into<Vec<u8>>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Hands out session secrets made with `key` (see
    /// [`session_key`](Self::session_key)): 32 bytes from a secure random
    /// source, new at each start.
    #[must_use]
    pub fn session_key(mut self, key: [u8; 32]) -> Self {
        self.session_key = Some(key);
        self
    }

    /// Whether these limits can all hold at once, as a server should check
    /// before it starts (`ferry serve` does):
    ///
    /// * a full room's `MEMBERS` frame (every name at its longest) must fit
    ///   in one frame and in half of a newcomer's outgoing queue, or the
    ///   newcomer could never join;
    /// * a limit that would turn everyone away (no clients, no connection
    ///   per address, rooms of no one, no message or control frame ever)
    ///   is a mistake, not a policy;
    /// * a source prefix longer than the address.
    pub fn check(&self) -> Result<(), ConfigError> {
        let members = members_frame_size(self.max_room_members);
        let fits = (self.connection.max_frame as usize).min(self.connection.max_outgoing / 2);
        if members > fits {
            return Err(ConfigError::RoomTooLarge {
                members: self.max_room_members,
                frame: members,
                fits,
                most: fits.saturating_sub(crate::frame::HEADER_LEN + 2) / MEMBER_SIZE,
            });
        }
        let zero = [
            ("max_clients", self.max_clients == 0),
            ("max_per_ip", self.max_per_ip == 0),
            ("max_room_members", self.max_room_members == 0),
            ("flood_burst", self.flood_burst == 0),
            ("source_flood_burst", self.source_flood_burst == 0),
            (
                "source_tree_entries_burst",
                self.source_tree_entries_burst == 0,
            ),
            ("connection.frame_burst", self.connection.frame_burst == 0),
            ("connection.max_outgoing", self.connection.max_outgoing == 0),
        ];
        if let Some((limit, _)) = zero.iter().find(|(_, is_zero)| *is_zero) {
            return Err(ConfigError::TurnsEveryoneAway { limit });
        }
        if self.source_prefix_v4 > 32 {
            return Err(ConfigError::PrefixTooLong {
                family: "IPv4",
                bits: self.source_prefix_v4,
                most: 32,
            });
        }
        if self.source_prefix_v6 > 128 {
            return Err(ConfigError::PrefixTooLong {
                family: "IPv6",
                bits: self.source_prefix_v6,
                most: 128,
            });
        }
        Ok(())
    }
}

/// Limits that cannot all hold at once: what [`HubConfig::check`] found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A full room's `MEMBERS` frame would not fit.
    #[error(
        "a room of {members} members needs a MEMBERS frame of up to {frame} bytes, \
         over {fits}: at most {most} members fit"
    )]
    RoomTooLarge {
        /// The room size asked for.
        members: usize,
        /// Bytes its `MEMBERS` frame may need.
        frame: usize,
        /// Bytes that fit (the frame limit, half the outgoing queue).
        fits: usize,
        /// The most members that fit.
        most: usize,
    },
    /// A limit of zero, which would turn every client away.
    #[error("{limit} is 0, which would turn every client away")]
    TurnsEveryoneAway {
        /// The field.
        limit: &'static str,
    },
    /// A source prefix longer than the address it applies to.
    #[error("an {family} source prefix of {bits} bits is longer than the address ({most} bits)")]
    PrefixTooLong {
        /// `IPv4` or `IPv6`.
        family: &'static str,
        /// The prefix asked for.
        bits: u8,
        /// The address length.
        most: u8,
    },
}

/// Bytes a name takes in `MEMBERS` at most: its 16-bit length and up to
/// [`MAX_NAME_CHARS`](crate::names::MAX_NAME_CHARS) characters of 4 bytes.
const MEMBER_SIZE: usize = 2 + 4 * crate::names::MAX_NAME_CHARS;

/// The largest `MEMBERS` frame of a room of `members`, header included.
fn members_frame_size(members: usize) -> usize {
    crate::frame::HEADER_LEN + 2 + members.saturating_mul(MEMBER_SIZE)
}

impl fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubConfig")
            .field("connection", &self.connection)
            .field("max_clients", &self.max_clients)
            .field("max_per_ip", &self.max_per_ip)
            .field("source_prefix_v4", &self.source_prefix_v4)
            .field("source_prefix_v6", &self.source_prefix_v6)
            .field("max_file_size", &self.max_file_size)
            .field("inbox_quota", &self.inbox_quota)
            .field("max_manifest_memory", &self.max_manifest_memory)
            .field("flood_burst", &self.flood_burst)
            .field("flood_per_second", &self.flood_per_second)
            .field("source_flood_burst", &self.source_flood_burst)
            .field("source_flood_per_second", &self.source_flood_per_second)
            .field("source_tree_entries_burst", &self.source_tree_entries_burst)
            .field(
                "source_tree_entries_per_second",
                &self.source_tree_entries_per_second,
            )
            .field("auth_failures_before_ban", &self.auth_failures_before_ban)
            .field("auth_ban", &self.auth_ban)
            .field("max_room_members", &self.max_room_members)
            .field("max_relay_memory", &self.max_relay_memory)
            .field("token", &Redacted(self.token.is_some()))
            .field("guests", &self.guests)
            .field("guest_idle_timeout", &self.guest_idle_timeout)
            .field("guest_line_wait", &self.guest_line_wait)
            .field("session_key", &Redacted(self.session_key.is_some()))
            .field("cluster", &self.cluster)
            .field("max_bus_bytes", &self.max_bus_bytes)
            .field("history", &self.history)
            .field("max_history_bytes", &self.max_history_bytes)
            .field("max_outgoing_memory", &self.max_outgoing_memory)
            .field("max_incoming_memory", &self.max_incoming_memory)
            .finish()
    }
}

/// Stands in for a secret in `Debug` output.
struct Redacted(bool);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0 { "<set>" } else { "<none>" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token() {
        let hub = HubConfig {
            token: Some(b"hunter2-secret".to_vec()),
            ..HubConfig::default()
        };
        let client = ClientConfig::new("alice").token(b"hunter2-secret".to_vec());
        for shown in [format!("{hub:?}"), format!("{client:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("token: <set>"), "{shown}");
        }
    }

    #[test]
    fn debug_never_shows_session_secrets() {
        let hub = HubConfig {
            session_key: Some([0xab; 32]),
            ..HubConfig::default()
        };
        let client = ClientConfig::new("alice").reclaim(SessionSecret::from_bytes([0xab; 24]));
        for shown in [format!("{hub:?}"), format!("{client:?}")] {
            assert!(!shown.contains("171"), "{shown}");
        }
        assert!(format!("{hub:?}").contains("session_key: <set>"));
        assert!(format!("{client:?}").contains("reclaim: <set>"));
    }
}
