//! What a hub in cluster mode and its broker say to each other.
//!
//! A hub emits [`BusRequest`]s ([`Hub::poll_bus`](crate::Hub::poll_bus));
//! the broker answers each exactly once with a [`BusInput::Answer`]
//! carrying the request's [`OpId`], and every hub reads the broker's log of
//! [`RoomEvent`]s in its order. A request whose answer was lost (a broken
//! link) is sent again with the same `OpId`: the broker applies an
//! operation once and answers a repeat with what it answered first.

use super::relay::RelayFrame;
use crate::code::Code;
use crate::history::HistoryEntry;
use crate::hub::ClientId;
use crate::source::Source;
use crate::text::Text;
use core::fmt;

/// One server of a cluster. Chosen by the driver (64 random bits at each
/// start: the core draws no randomness), never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerId(pub u64);

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A hub's number for one request: 1 for its first, one more for each
/// next, so a broker can tell a repeat from a new request by comparing it
/// with the last it applied for that server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub u64);

/// What a hub asks of the broker. Keys (`room_key`, `name_key`) come
/// computed ([`crate::names::name_key`]): a broker compares them as bytes
/// and never folds names itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BusRequest {
    /// Claims `name` in `room` for `client` and appends its `JOINED`.
    /// Answered [`Answer::Joined`] or [`Answer::Refused`] (`NAME_TAKEN`,
    /// `SERVER_FULL` for the room or for the source, `FLOODING`).
    Join {
        /// This request's number.
        op: OpId,
        /// The joining client, on the asking server.
        client: ClientId,
        /// The room as the client typed it; a new room is called so.
        room: Text,
        /// The room's key.
        room_key: String,
        /// The name as the client typed it.
        name: Text,
        /// The name's key: unique per room across the cluster.
        name_key: String,
        /// The client's address group, for the budgets the cluster shares.
        source: Option<Source>,
        /// Members the room may hold, this server's limit.
        max_members: u32,
        /// Members `source` may have across the cluster, every server's
        /// together (this server's limit of connections per address):
        /// a source spread over several servers gets one allowance, not
        /// one each. 0: no limit.
        max_per_source: u32,
    },
    /// `client`'s chat message to its room. Answered [`Answer::Done`] once
    /// its `MESSAGE` is in the log, or [`Answer::Refused`] (`FLOODING`: its
    /// source is over the cluster's budget; `NO_SUCH_USER`: `client` holds
    /// no name, its join was refused).
    Say {
        /// This request's number.
        op: OpId,
        /// The sender.
        client: ClientId,
        /// The message.
        text: Text,
        /// The sender's address group.
        source: Option<Source>,
    },
    /// `client`'s direct message to the member of its room whose name key
    /// is `to_key`, on another server. Answered [`Answer::Done`] once it is
    /// in that server's inbox, or `Refused` with `NO_SUCH_USER`.
    Direct {
        /// This request's number.
        op: OpId,
        /// The sender.
        client: ClientId,
        /// The recipient's name as the sender typed it (for the refusal).
        to: Text,
        /// The recipient's name key.
        to_key: String,
        /// The message.
        text: Text,
        /// The sender's address group.
        source: Option<Source>,
    },
    /// The server's own message (`from` empty) to the room keyed
    /// `room_key`, or to every room with members when `None`.
    Announce {
        /// This request's number.
        op: OpId,
        /// The room, or every room.
        room_key: Option<String>,
        /// The message.
        text: Text,
    },
    /// `client` leaves its room: its name is free, its `LEFT` (with `code`)
    /// is appended. Never refused; a client that held no name is answered
    /// `Done` and nothing is appended.
    Leave {
        /// This request's number.
        op: OpId,
        /// The client leaving.
        client: ClientId,
        /// Why, as `LEFT` tells the room.
        code: Code,
    },
    /// `client`, a member of this server before the broker restarted
    /// empty, claims its name again; the room's `seq` is raised to at least
    /// `min_seq` first (so no number is used twice) and its `JOINED`
    /// appended. Answered [`Answer::Joined`], or [`Answer::Refused`]
    /// (`NAME_TAKEN`: another server's member claimed the name first).
    Rejoin {
        /// This request's number.
        op: OpId,
        /// The member.
        client: ClientId,
        /// The room, as it is called.
        room: Text,
        /// The room's key.
        room_key: String,
        /// The member's name.
        name: Text,
        /// The name's key.
        name_key: String,
        /// The last `seq` this server delivered in the room.
        min_seq: u64,
        /// The member's address group: counted among its source's members
        /// again (never refused for it: the member is already connected).
        source: Option<Source>,
    },
    /// Which server holds the member of `client`'s room whose name key is
    /// `to_key`, for a file `client` offers it. Answered
    /// [`Answer::Located`], or [`Answer::Refused`] (`NO_SUCH_USER`).
    /// Changes nothing.
    Locate {
        /// This request's number.
        op: OpId,
        /// The member asking.
        client: ClientId,
        /// The name looked for, as typed (for the refusal).
        to: Text,
        /// Its key.
        to_key: String,
    },
    /// What checking the manifest of a folder `client` offers can cost
    /// (`entries`, [`entries_bound`](crate::tree::entries_bound)), charged
    /// to its source's budget of manifest entries, which every server
    /// shares: `burst` at once, `per_second` on average (this server's
    /// limits; a charge over `burst` costs `burst`). Answered
    /// [`Answer::Done`], or [`Answer::Refused`] (`FLOODING`).
    ChargeFolder {
        /// This request's number.
        op: OpId,
        /// The member offering the folder.
        client: ClientId,
        /// Its address group.
        source: Source,
        /// Manifest entries the folder may have.
        entries: u64,
        /// The budget's burst, in entries.
        burst: u32,
        /// Its refill, in entries a second.
        per_second: u32,
    },
    /// A wrong token from `source` on the asking server, counted with
    /// those from the source on every server: wrong tokens older than
    /// `memory_ms` are forgotten, and the `ban_after`th bans the source
    /// for `ban_ms` (the count starting again). Answered [`Answer::Done`],
    /// or [`Answer::Banned`] when this one banned it or it was banned
    /// already.
    AuthFailed {
        /// This request's number.
        op: OpId,
        /// The client that presented it.
        client: ClientId,
        /// Its address group.
        source: Source,
        /// Wrong tokens before a ban (this server's limit).
        ban_after: u32,
        /// How long a ban lasts, in ms.
        ban_ms: u64,
        /// How long a wrong token is remembered, in ms.
        memory_ms: u64,
    },
    /// The room's members and last `seq` now: asked when the log skipped
    /// some of its events (a trimmed log, a restarted broker). Answered
    /// [`Answer::Synced`].
    Sync {
        /// This request's number.
        op: OpId,
        /// The room.
        room_key: String,
    },
}

impl BusRequest {
    /// This request's number.
    pub fn op(&self) -> OpId {
        match self {
            BusRequest::Join { op, .. }
            | BusRequest::Say { op, .. }
            | BusRequest::Direct { op, .. }
            | BusRequest::Announce { op, .. }
            | BusRequest::Leave { op, .. }
            | BusRequest::Rejoin { op, .. }
            | BusRequest::Locate { op, .. }
            | BusRequest::ChargeFolder { op, .. }
            | BusRequest::AuthFailed { op, .. }
            | BusRequest::Sync { op, .. } => *op,
        }
    }

    /// Bytes this request holds, as the hub counts them against
    /// [`HubConfig::max_bus_bytes`](crate::HubConfig::max_bus_bytes):
    /// its strings and a fixed cost for the rest.
    pub fn weight(&self) -> usize {
        const FIXED: usize = 64;
        FIXED
            + match self {
                BusRequest::Join {
                    room,
                    room_key,
                    name,
                    name_key,
                    ..
                }
                | BusRequest::Rejoin {
                    room,
                    room_key,
                    name,
                    name_key,
                    ..
                } => room.len() + room_key.len() + name.len() + name_key.len(),
                BusRequest::Say { text, .. } => text.len(),
                BusRequest::Direct {
                    to, to_key, text, ..
                } => to.len() + to_key.len() + text.len(),
                BusRequest::Announce { room_key, text, .. } => {
                    room_key.as_ref().map_or(0, String::len) + text.len()
                }
                BusRequest::Leave { .. }
                | BusRequest::ChargeFolder { .. }
                | BusRequest::AuthFailed { .. } => 0,
                BusRequest::Locate { to, to_key, .. } => to.len() + to_key.len(),
                BusRequest::Sync { room_key, .. } => room_key.len(),
            }
    }
}

/// What reaches a hub from the broker, through
/// [`Hub::handle_bus`](crate::Hub::handle_bus).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BusInput {
    /// The answer to the request numbered `op`.
    Answer {
        /// The request answered.
        op: OpId,
        /// What the broker did.
        answer: Answer,
    },
    /// The next event of the log, in the log's order.
    Event(RoomEvent),
    /// A direct message for `client`, a member of this server, from the
    /// member named `from` of its room on another server.
    Direct {
        /// The recipient, on this server.
        client: ClientId,
        /// The room both are in, by key: a recipient that left it meanwhile
        /// does not get the message.
        room_key: String,
        /// The sender's name.
        from: Text,
        /// The message.
        text: Text,
    },
    /// Another server's wrong tokens banned `source` across the cluster
    /// (its [`BusRequest::AuthFailed`] was answered [`Answer::Banned`]):
    /// this server bans it too, so that it turns the source away even with
    /// the right token, as the server that banned it does.
    SourceBanned {
        /// The address group banned.
        source: Source,
        /// How long the ban lasts, in ms.
        ms_left: u64,
    },
    /// The link to the broker is lost. Requests still unanswered are
    /// answered later (applied, or refused with `CLUSTER_UNAVAILABLE`);
    /// until [`Up`](Self::Up), the hub refuses new requests at once.
    Down {
        /// Why, for the log and the members.
        reason: String,
    },
    /// The link to the broker is back.
    Up,
    /// The others took this server for gone (it did not renew its lease in
    /// time: paused, or cut off from the broker) and its members were
    /// announced `LEFT ... SERVER_GONE`: the hub closes each of them with
    /// `SERVER_GONE`, so they reconnect (here or to another server) rather
    /// than talk in a room that no longer lists them.
    Reaped,
    /// A relay frame from the hub of server `from`, over their direct link
    /// ([`relay`](super::relay)).
    Relay {
        /// The server that sent it.
        from: ServerId,
        /// What it said.
        frame: RelayFrame,
    },
    /// The direct link with `server` broke, or could not be made: every
    /// relay with it ends, its members told why, so the transfer can be
    /// resumed.
    PeerLost {
        /// The other server.
        server: ServerId,
        /// Why, in words.
        reason: String,
    },
    /// The link is back to a broker that restarted (its run id `broker`
    /// is new): what it held may be lost. The hub claims its members'
    /// names again ([`BusRequest::Rejoin`]) and learns every room anew.
    /// Said once per restart (a repeat with the same `broker` is ignored).
    Restarted {
        /// The broker's new run id.
        broker: String,
    },
}

/// The broker's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Answer {
    /// Applied.
    Done,
    /// The join was applied: the room just after its `JOINED`.
    Joined(Snapshot),
    /// The member is on `server` (the answer to [`BusRequest::Locate`]).
    Located(ServerId),
    /// The room now (the answer to [`BusRequest::Sync`]).
    Synced(Snapshot),
    /// The source of a wrong token is banned across the cluster for
    /// `ms_left` more ms (the answer to [`BusRequest::AuthFailed`]).
    Banned {
        /// How much longer the ban lasts, in ms.
        ms_left: u64,
    },
    /// Not applied, and why; `code` reaches the client (`REFUSE` for a
    /// join, `BOUNCE` for a message).
    Refused {
        /// Why, as a protocol code.
        code: Code,
        /// Why, in words.
        reason: String,
    },
}

/// A room as the broker holds it at one `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The room's key.
    pub room_key: String,
    /// The room's name, as its first member called it.
    pub room: Text,
    /// The `seq` of the room's last event.
    pub seq: u64,
    /// Every member's name, in the order they joined.
    pub members: Vec<Text>,
    /// In the answer to a `Join` only: the room's history, oldest first
    /// (none when the broker keeps none). A repeated `Join` is answered
    /// without it.
    pub history: Vec<HistoryEntry>,
}

/// One event of the broker's log: something that happened in a room, with
/// the room's next `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomEvent {
    /// The room's key.
    pub room_key: String,
    /// The room's sequence number for this event: one more than the
    /// room's event before it, across the cluster.
    pub seq: u64,
    /// The server whose request appended it (a reaper, for the `LEFT`s of
    /// a server that went away).
    pub origin: ServerId,
    /// That request's number.
    pub op: OpId,
    /// What happened.
    pub kind: EventKind,
}

/// What happened in a room.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// `name` joined.
    Joined {
        /// The member's name.
        name: Text,
    },
    /// `name` left, with `code` saying why.
    Left {
        /// The member's name.
        name: Text,
        /// Why (`QUIT`, `CONNECTION_LOST`, `SERVER_GONE`, ...).
        code: Code,
    },
    /// A chat message; `from` is empty for the server's own.
    Message {
        /// The sender's name, or empty.
        from: Text,
        /// The message.
        text: Text,
    },
}
