//! The hub's cluster mode ([`HubConfig::cluster`]): what it asks of the
//! broker, and what the broker's answers and log mean for its members.
//!
//! The rules (`docs/CLUSTER.md` §2.1):
//!
//! * a join that passes the local checks becomes [`BusRequest::Join`]; the
//!   client waits unwelcomed (under the handshake timeout) and enters the
//!   room when its own `JOINED` is applied from the log, in order, so its
//!   `MEMBERS` is the room exactly as of that `JOINED` (PROTOCOL.md §6.3);
//! * messages, direct messages to other servers' members, announcements
//!   and leaves are requests too; a hub delivers room events only as the
//!   log brings them, its own members' included;
//! * every request is counted in bytes until it is answered; past
//!   [`HubConfig::max_bus_bytes`], or while the link is down, a message or
//!   join is refused at once with `CLUSTER_UNAVAILABLE` (a leave always
//!   goes).

use super::{ClientId, End, Hub, HubEvent, Link, Room};
use crate::cluster::replica::{self, Offered, Replica, HELD_MAX};
use crate::cluster::{
    Answer, BusInput, BusRequest, EventKind, OpId, RoomEvent, ServerId, Snapshot,
};
use crate::code::Code;
use crate::frame::Frame;
use crate::history::{self, HistoryEntry};
use crate::names::name_key;
use crate::source::Source;
use crate::text::Text;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[cfg(doc)]
use crate::HubConfig;

/// A hub's side of the link to its cluster's broker.
pub(super) struct Bus {
    server: ServerId,
    next_op: u64,
    /// Requests for the driver to take ([`Hub::poll_bus`]).
    out: VecDeque<BusRequest>,
    /// Requests not answered yet, by number.
    pending: HashMap<OpId, Pending>,
    /// Their weight ([`BusRequest::weight`]) together.
    pending_bytes: usize,
    /// Whether the driver says the broker can be reached.
    up: bool,
    /// The run id of the broker's last restart this hub handled.
    restarted: Option<String>,
    /// Bytes of history held for joiners until they enter (see
    /// [`HeldHistory`]).
    history_held: Arc<AtomicUsize>,
    /// Bytes of room events held for joiners' answers, every room's
    /// together (see [`AwaitingAnswer`]).
    awaiting_bytes: usize,
    /// When members were last told the broker cannot be reached.
    outage_told: Option<Instant>,
    /// They were, and have not been told it is back.
    outage_pending: bool,
}

/// Members are told of the broker's outages at most this often.
pub(super) const OUTAGE_NOTICE_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// A room's events from a joiner's `JOINED` on, held until the answer to
/// its join (which carries the room's history) arrives: the log and the
/// answers come on different connections, and the joiner must get its
/// history before `MEMBERS`. Usually a fraction of a millisecond; past
/// [`AWAITING_EVENTS_MAX`] events or [`HELD_MAX`] bytes (or, every room's
/// together, `max_history_bytes`) the room goes on and the joiner enters
/// without its history.
pub(super) struct AwaitingAnswer {
    op: OpId,
    events: Vec<RoomEvent>,
    bytes: usize,
}

/// Events a room holds for a joiner's answer at most.
const AWAITING_EVENTS_MAX: usize = 1024;

/// A joiner's room history from its join's answer, held until it enters.
/// Counted in the hub's `history_held` while it lives, wherever the
/// joiner ends (entered, refused, gone), so that joiners the log is slow
/// to let in cannot make the hub hold more than `max_history_bytes`.
pub(super) struct HeldHistory {
    entries: Vec<HistoryEntry>,
    weight: usize,
    held: Arc<AtomicUsize>,
}

impl Drop for HeldHistory {
    fn drop(&mut self) {
        self.held.fetch_sub(self.weight, Ordering::Relaxed);
    }
}

struct Pending {
    client: Option<ClientId>,
    waiting: Waiting,
    weight: usize,
}

enum Waiting {
    Join {
        room_key: String,
    },
    Message,
    Leave,
    Announce,
    Sync {
        room_key: String,
    },
    Rejoin {
        room_key: String,
    },
    /// Where the recipient of the sender end `end`'s file is.
    Locate {
        end: End,
    },
    /// Whether the source of the tree end `end` may offer it.
    ChargeFolder {
        end: End,
    },
    /// Whether `source`'s wrong tokens, on every server, ban it.
    AuthFailed {
        source: Source,
    },
}

/// A client of this hub whose join the broker has not applied yet.
pub(super) struct Joiner {
    op: OpId,
    client: ClientId,
    name: Text,
    /// Named `guest-N` by the hub, not by the guest: another number is
    /// tried if another server has that one.
    auto_named: bool,
    /// The `seq` of its `JOINED`, once the answer told it.
    seq: Option<u64>,
    /// Direct messages that reached it before its `JOINED` did (the
    /// broker had let it in): delivered when it enters.
    directs: Vec<(Text, Text)>,
    /// What a guest said before it entered (its first line joins it):
    /// sent when it enters, so it follows its `JOINED`, and never sent if
    /// the join is refused.
    lines: Vec<(Text, Option<Text>)>,
    /// The room's history from the answer to its join: sent when it
    /// enters, before `MEMBERS`.
    history: Option<HeldHistory>,
}

/// Lines held for a joining guest; more are refused.
const JOINER_LINES_MAX: usize = 16;

/// Direct messages held for one joiner; more are dropped (a joiner is
/// in the log's next few events, so this is a race, not a queue).
const JOINER_DIRECTS_MAX: usize = 16;

impl Bus {
    pub(super) fn new(server: ServerId) -> Bus {
        Bus {
            server,
            next_op: 1,
            out: VecDeque::new(),
            pending: HashMap::new(),
            pending_bytes: 0,
            up: true,
            restarted: None,
            history_held: Arc::new(AtomicUsize::new(0)),
            awaiting_bytes: 0,
            outage_told: None,
            outage_pending: false,
        }
    }

    /// Bytes held for joiners: their histories, and room events waiting
    /// for their answers.
    pub(super) fn history_held(&self) -> usize {
        self.history_held.load(Ordering::Relaxed) + self.awaiting_bytes
    }

    /// Holds the newest of `history` that fit in `budget` for a joiner,
    /// unless that would take the history held past `max_bytes`: then the
    /// joiner gets none.
    fn hold_history(
        &self,
        history: &[HistoryEntry],
        budget: usize,
        max_bytes: usize,
    ) -> Option<HeldHistory> {
        let entries: Vec<HistoryEntry> = history::newest_within(history.iter(), budget)
            .into_iter()
            .cloned()
            .collect();
        if entries.is_empty() {
            return None;
        }
        let weight = entries.iter().map(HistoryEntry::weight).sum();
        let held = self.history_held.fetch_add(weight, Ordering::Relaxed) + weight;
        let kept = HeldHistory {
            entries,
            weight,
            held: self.history_held.clone(),
        };
        // Over the limit: dropped at once, which gives its bytes back.
        (held <= max_bytes).then_some(kept)
    }

    fn next_op(&mut self) -> OpId {
        let op = OpId(self.next_op);
        self.next_op += 1;
        op
    }

    fn send(&mut self, request: BusRequest, client: Option<ClientId>, waiting: Waiting) {
        let weight = request.weight();
        self.pending_bytes += weight;
        self.pending.insert(
            request.op(),
            Pending {
                client,
                waiting,
                weight,
            },
        );
        self.out.push_back(request);
    }

    /// Why a request of `weight` bytes cannot be sent now, if it cannot.
    fn refusal(&self, weight: usize, max: usize) -> Option<String> {
        if !self.up {
            Some("the servers of this cluster cannot reach each other now".into())
        } else if self.pending_bytes + weight > max {
            Some("the cluster is behind: try again in a moment".into())
        } else {
            None
        }
    }
}

impl Hub {
    /// This hub's server id, in cluster mode.
    pub fn cluster_server(&self) -> Option<ServerId> {
        self.bus.as_ref().map(|b| b.server)
    }

    /// The next request for the cluster's broker, in cluster mode. Take
    /// them after every call, as [`poll_transmit`](Self::poll_transmit)'s
    /// bytes, and carry them to the broker in this order; each is answered
    /// once through [`handle_bus`](Self::handle_bus).
    pub fn poll_bus(&mut self) -> Option<BusRequest> {
        self.bus.as_mut()?.out.pop_front()
    }

    /// Bytes of requests sent to the broker and not answered yet.
    pub fn bus_pending_bytes(&self) -> usize {
        self.bus.as_ref().map_or(0, |b| b.pending_bytes)
    }

    /// What the broker said: an answer, the log's next event, a direct
    /// message for a member here, or the link's state. Ignored outside
    /// cluster mode.
    pub fn handle_bus(&mut self, now: Instant, input: BusInput) {
        if self.bus.is_none() {
            return;
        }
        match input {
            BusInput::Answer { op, answer } => self.on_answer(now, op, answer),
            BusInput::Event(event) => self.on_room_event(now, event),
            BusInput::Direct {
                client,
                room_key,
                from,
                text,
            } => {
                if self.has_entered(client, &room_key) {
                    self.send_to(client, now, &Frame::DirectFrom { from, text });
                } else if let Some(joiner) = self
                    .rooms
                    .get_mut(&room_key)
                    .and_then(|r| r.joining.iter_mut().find(|j| j.client == client))
                {
                    if joiner.directs.len() < JOINER_DIRECTS_MAX {
                        joiner.directs.push((from, text));
                    }
                }
            }
            BusInput::SourceBanned { source, ms_left } => self.on_cluster_ban(now, source, ms_left),
            BusInput::Down { reason } => self.on_broker_down(now, &reason),
            BusInput::Up => self.on_broker_up(now),
            BusInput::Relay { from, frame } => self.on_relay_frame(now, from, frame),
            BusInput::PeerLost { server, reason } => self.on_peer_lost(now, server, &reason),
            BusInput::Restarted { broker } => {
                self.on_broker_up(now);
                self.on_broker_restarted(broker)
            }
            BusInput::Reaped => self.on_reaped(now),
        }
        self.process(now);
    }

    /// The broker cannot be reached: requests are refused from now on,
    /// and every member here is told so once (a member who sends nothing
    /// would otherwise not know its messages cannot go out), at most once
    /// per [`OUTAGE_NOTICE_EVERY`] however often the link comes and goes.
    fn on_broker_down(&mut self, now: Instant, reason: &str) {
        let Some(bus) = self.bus.as_mut() else {
            return;
        };
        if !bus.up {
            return;
        }
        bus.up = false;
        let due = bus
            .outage_told
            .is_none_or(|at| now.saturating_duration_since(at) >= OUTAGE_NOTICE_EVERY);
        if !due {
            return;
        }
        bus.outage_told = Some(now);
        bus.outage_pending = true;
        self.tell_members(
            now,
            &format!(
                "this server cannot reach the rest of the cluster ({reason}): \
                 messages are refused until it is back"
            ),
        );
    }

    /// The broker is back: members told of the outage are told it ended.
    fn on_broker_up(&mut self, now: Instant) {
        let Some(bus) = self.bus.as_mut() else {
            return;
        };
        bus.up = true;
        if std::mem::take(&mut bus.outage_pending) {
            self.tell_members(
                now,
                "the cluster is back: messages reach every server again",
            );
        }
    }

    /// The server's own word to every member here (`DIRECT_FROM` with an
    /// empty `from`: to each of them alone, with no room `seq`, which only
    /// the broker gives).
    fn tell_members(&mut self, now: Instant, text: &str) {
        let members: Vec<ClientId> = self
            .rooms
            .values()
            .flat_map(|r| r.members.iter().copied())
            .collect();
        let frame = Frame::DirectFrom {
            from: Text::new(),
            text: text.into(),
        };
        for id in members {
            self.send_to(id, now, &frame);
        }
    }

    // ----- requests ------------------------------------------------------

    /// Asks the broker to let `id` into `room` as `name` (local checks
    /// passed). Refused at once while the link is down or behind.
    pub(super) fn cluster_join(
        &mut self,
        id: ClientId,
        now: Instant,
        name: Text,
        room: Text,
        auto_named: bool,
    ) {
        let key = super::room_key(&room);
        let source = self.clients.get(&id).and_then(|c| c.source);
        let Some(bus) = self.bus.as_mut() else {
            return;
        };
        let op = bus.next_op();
        let request = BusRequest::Join {
            op,
            client: id,
            room: room.clone(),
            room_key: key.clone(),
            name: name.clone(),
            name_key: name_key(&name),
            source,
            max_members: u32::try_from(self.config.max_room_members).unwrap_or(u32::MAX),
            max_per_source: u32::try_from(self.config.max_per_ip).unwrap_or(u32::MAX),
        };
        if let Some(reason) = bus.refusal(request.weight(), self.config.max_bus_bytes) {
            self.refuse_joiner(id, now, Code::CLUSTER_UNAVAILABLE, &reason, false);
            return;
        }
        bus.send(
            request,
            Some(id),
            Waiting::Join {
                room_key: key.clone(),
            },
        );
        if let Some(c) = self.clients.get_mut(&id) {
            c.room = Some(key.clone());
        }
        self.names.insert((key.clone(), name_key(&name)), id);
        let room = self.rooms.entry(key).or_insert_with(|| Room {
            name: room,
            members: Vec::new(),
            seq: 0,
            replica: Some(Replica::awaiting()),
            joining: Vec::new(),
            resync: false,
            catching_up: Vec::new(),
            awaiting_answer: None,
        });
        room.joining.push(Joiner {
            op,
            client: id,
            name,
            auto_named,
            seq: None,
            directs: Vec::new(),
            lines: Vec::new(),
            history: None,
        });
    }

    /// `id`'s chat message, or (`to` set) its direct message to a member
    /// of another server; refused at once while the link is down or
    /// behind.
    pub(super) fn cluster_say(&mut self, id: ClientId, now: Instant, text: Text, to: Option<Text>) {
        let key = self.room_of(id).unwrap_or_default();
        if let Some(joiner) = self
            .rooms
            .get_mut(&key)
            .and_then(|r| r.joining.iter_mut().find(|j| j.client == id))
        {
            if joiner.lines.len() < JOINER_LINES_MAX {
                joiner.lines.push((text, to));
            } else {
                self.bounce(id, now, Code::FLOODING, "wait until you are in the room");
            }
            return;
        }
        let source = self.clients.get(&id).and_then(|c| c.source);
        let Some(bus) = self.bus.as_mut() else {
            return;
        };
        let op = bus.next_op();
        let request = match to {
            Some(to) => BusRequest::Direct {
                op,
                client: id,
                to_key: name_key(&to),
                to,
                text,
                source,
            },
            None => BusRequest::Say {
                op,
                client: id,
                text,
                source,
            },
        };
        match bus.refusal(request.weight(), self.config.max_bus_bytes) {
            Some(reason) => self.bounce(id, now, Code::CLUSTER_UNAVAILABLE, &reason),
            None => bus.send(request, Some(id), Waiting::Message),
        }
    }

    /// The server's own message to the room keyed `room_key`, or to every
    /// room; refused while the link is down or behind.
    pub(super) fn cluster_announce(
        &mut self,
        room_key: Option<String>,
        text: Text,
    ) -> Result<(), String> {
        let Some(bus) = self.bus.as_mut() else {
            return Ok(());
        };
        let op = bus.next_op();
        let request = BusRequest::Announce { op, room_key, text };
        if let Some(reason) = bus.refusal(request.weight(), self.config.max_bus_bytes) {
            return Err(reason);
        }
        bus.send(request, None, Waiting::Announce);
        Ok(())
    }

    /// Asks the broker which server holds `to`, of `id`'s room, for the
    /// file of the sender end `end`; refused at once while the link is
    /// down or behind.
    pub(super) fn cluster_locate(
        &mut self,
        id: ClientId,
        end: End,
        to: Text,
    ) -> Result<(), String> {
        let Some(bus) = self.bus.as_mut() else {
            return Err("this server is not in a cluster".into());
        };
        let op = bus.next_op();
        let request = BusRequest::Locate {
            op,
            client: id,
            to_key: name_key(&to),
            to,
        };
        if let Some(reason) = bus.refusal(request.weight(), self.config.max_bus_bytes) {
            return Err(reason);
        }
        bus.send(request, Some(id), Waiting::Locate { end });
        Ok(())
    }

    /// In cluster mode, charges the `entries` of tree `tid` of `id` to its
    /// source's budget that the servers share; the tree's manifest is held
    /// ([`Hub::hold_for_charge`]) until the answer. Nothing outside a
    /// cluster, or for a client with no source; an error when the
    /// cluster cannot take the request now.
    pub(super) fn cluster_charge_folder(
        &mut self,
        id: ClientId,
        tid: crate::frame::TransferId,
        entries: u64,
    ) -> Result<(), String> {
        let Some(source) = self.clients.get(&id).and_then(|c| c.source) else {
            return Ok(());
        };
        let (burst, per_second) = (
            self.config.source_tree_entries_burst,
            self.config.source_tree_entries_per_second,
        );
        let Some(bus) = self.bus.as_mut() else {
            return Ok(());
        };
        let op = bus.next_op();
        let request = BusRequest::ChargeFolder {
            op,
            client: id,
            source,
            entries,
            burst,
            per_second,
        };
        if let Some(reason) = bus.refusal(request.weight(), self.config.max_bus_bytes) {
            return Err(reason);
        }
        bus.send(request, Some(id), Waiting::ChargeFolder { end: (id, tid) });
        if let Some(c) = self.clients.get_mut(&id) {
            c.awaiting_charge.push((tid, None));
        }
        Ok(())
    }

    /// In cluster mode, counts a wrong token of `source` (from `id`) with
    /// those it presented to the other servers. Outside a cluster, or
    /// while the cluster cannot take the request, this server's own count
    /// is all there is.
    pub(super) fn cluster_auth_failed(&mut self, id: ClientId, source: Source) {
        let ban_after = self.config.auth_failures_before_ban;
        let ban_ms = self.config.auth_ban.as_millis() as u64;
        let memory_ms = crate::sources::AUTH_MEMORY.as_millis() as u64;
        let Some(bus) = self.bus.as_mut() else {
            return;
        };
        let op = bus.next_op();
        let request = BusRequest::AuthFailed {
            op,
            client: id,
            source,
            ban_after,
            ban_ms,
            memory_ms,
        };
        if bus
            .refusal(request.weight(), self.config.max_bus_bytes)
            .is_none()
        {
            bus.send(request, Some(id), Waiting::AuthFailed { source });
        }
    }

    /// The cluster banned `source` for `ms_left`: so does this server, and
    /// says so once.
    fn on_cluster_ban(&mut self, now: Instant, source: Source, ms_left: u64) {
        let ban = std::time::Duration::from_millis(ms_left);
        if self.sources.ban(source, now, ban) {
            self.events.push_back(HubEvent::SourceBanned {
                source,
                failures: self.config.auth_failures_before_ban,
                ban,
            });
        }
    }

    /// The broker's answer to the charge of tree end `end`: its manifest,
    /// if it came meanwhile, goes on; a refusal rejects the tree.
    fn on_folder_charged(&mut self, now: Instant, end: End, answer: Answer) {
        let (id, tid) = end;
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let Some(at) = c.awaiting_charge.iter().position(|(t, _)| *t == tid) else {
            return; // The tree ended meanwhile.
        };
        let (_, held) = c.awaiting_charge.swap_remove(at);
        match answer {
            Answer::Done => {
                if let Some(event) = held {
                    self.on_transfer(id, now, event);
                }
            }
            Answer::Refused { code, reason } => self.refuse_offer(id, now, tid, code, &reason),
            other => {
                let reason = format!("the cluster answered {other:?} to the folder's charge");
                self.refuse_offer(id, now, tid, Code::CLUSTER_UNAVAILABLE, &reason);
            }
        }
    }

    /// `id` leaves the room keyed `key`: it stops receiving at once, and
    /// its `LEFT` reaches the room through the log.
    pub(super) fn cluster_leave(&mut self, id: ClientId, now: Instant, key: &str, code: Code) {
        let name = self
            .clients
            .get(&id)
            .map(|c| c.link.name().clone())
            .unwrap_or_default();
        let mut entered = false;
        let mut room_name = Text::new();
        if let Some(room) = self.rooms.get_mut(key) {
            entered = room.members.contains(&id);
            room.members.retain(|&m| m != id);
            room.joining.retain(|j| j.client != id);
            room_name = room.name.clone();
        }
        self.names.remove(&(key.to_string(), name_key(&name)));
        self.forget_room_if_unused(key);
        if let Some(bus) = self.bus.as_mut() {
            let op = bus.next_op();
            bus.send(
                BusRequest::Leave {
                    op,
                    client: id,
                    code,
                },
                None,
                Waiting::Leave,
            );
        }
        if entered {
            self.events.push_back(HubEvent::Left {
                client: id,
                name,
                room: room_name,
                code,
            });
        }
        let _ = now;
    }

    /// The answer to joiner `op`'s join came: it keeps the room's history
    /// from it, and the room's events held for it go on (its `JOINED`
    /// first, which lets it in, history and all).
    fn joiner_answered(&mut self, now: Instant, room_key: &str, op: OpId, answer: &Answer) {
        let Some(room) = self.rooms.get_mut(room_key) else {
            return;
        };
        if let (Some(joiner), Answer::Joined(snapshot)) =
            (room.joining.iter_mut().find(|j| j.op == op), answer)
        {
            joiner.seq = Some(snapshot.seq);
            if let Some(bus) = self.bus.as_ref() {
                joiner.history = bus.hold_history(
                    &snapshot.history,
                    self.config.connection.max_outgoing / 4,
                    self.config.max_history_bytes,
                );
            }
        }
        if room.awaiting_answer.as_ref().is_some_and(|w| w.op == op) {
            let waiting = room.awaiting_answer.take();
            self.release_awaiting(now, waiting);
        }
    }

    /// Goes on with a room's events that waited for a joiner's answer.
    fn release_awaiting(&mut self, now: Instant, waiting: Option<AwaitingAnswer>) {
        let Some(waiting) = waiting else {
            return;
        };
        if let Some(bus) = self.bus.as_mut() {
            bus.awaiting_bytes -= waiting.bytes;
        }
        for event in waiting.events {
            self.on_room_event(now, event);
        }
    }

    /// The names in the room keyed `key` across the cluster.
    pub(super) fn cluster_members(&self, key: &str) -> Option<Vec<Text>> {
        self.bus.as_ref()?;
        let replica = self.rooms.get(key)?.replica.as_ref()?;
        Some(replica.members().to_vec())
    }

    /// Whether `peer` is a member of `id`'s room on another server.
    pub(super) fn elsewhere_in_cluster(&self, id: ClientId, peer: &str) -> bool {
        let Some(key) = self.room_of(id) else {
            return false;
        };
        let peer = name_key(peer);
        self.cluster_members(&key)
            .is_some_and(|names| names.iter().any(|n| name_key(n) == peer))
    }

    // ----- what comes back -----------------------------------------------

    fn on_answer(&mut self, now: Instant, op: OpId, answer: Answer) {
        let Some(bus) = self.bus.as_mut() else {
            return;
        };
        let Some(pending) = bus.pending.remove(&op) else {
            return;
        };
        bus.pending_bytes -= pending.weight;
        if let Waiting::Join { room_key } | Waiting::Rejoin { room_key } = &pending.waiting {
            self.joiner_answered(now, room_key, op, &answer);
        }
        match (pending.waiting, answer) {
            (Waiting::Join { room_key }, Answer::Joined(snapshot)) => {
                let Some(room) = self.rooms.get_mut(&room_key) else {
                    return;
                };
                let Some(joiner) = room.joining.iter_mut().find(|j| j.op == op) else {
                    // It left before the answer: its LEFT follows its JOINED.
                    return;
                };
                joiner.seq = Some(snapshot.seq);
                let Some(replica) = room.replica.as_mut() else {
                    return;
                };
                match replica.seq() {
                    None => {
                        let held = replica.settle(&snapshot);
                        // Members here from before a reset learn the room
                        // anew, and get what was said meanwhile; the joiner
                        // gets it with its welcome and history.
                        self.resynced(now, &room_key, snapshot.members.clone());
                        self.deliver_missed(now, &room_key, held.missed);
                        self.enter(now, &room_key, op, (snapshot.seq, snapshot.members), true);
                        for event in held.after {
                            self.on_room_event(now, event);
                        }
                    }
                    Some(applied) if applied >= snapshot.seq => {
                        // Its JOINED went by unapplied (the log skipped
                        // it): in from here.
                        let members = replica.members().to_vec();
                        self.enter(now, &room_key, op, (snapshot.seq, members), true);
                    }
                    // Its JOINED is on its way in the log.
                    Some(_) => {}
                }
            }
            (Waiting::Join { room_key }, Answer::Refused { code, reason }) => {
                let Some(room) = self.rooms.get_mut(&room_key) else {
                    return;
                };
                let Some(i) = room.joining.iter().position(|j| j.op == op) else {
                    return;
                };
                let joiner = room.joining.remove(i);
                self.names
                    .remove(&(room_key.clone(), name_key(&joiner.name)));
                if let Some(c) = self.clients.get_mut(&joiner.client) {
                    c.room = None;
                }
                self.forget_room_if_unused(&room_key);
                let retry = joiner.auto_named && code == Code::NAME_TAKEN;
                if retry && self.is_guest(joiner.client) {
                    let name = self.free_guest_name(&room_key);
                    let room = self
                        .canonical_room(&room_key, Text::from_static(crate::names::DEFAULT_ROOM));
                    if let Some(guest) = self
                        .clients
                        .get_mut(&joiner.client)
                        .and_then(|c| c.link.guest())
                    {
                        guest.set_name(name.clone().into());
                    }
                    self.cluster_join(joiner.client, now, name.into(), room, true);
                    // What it said waits for the new attempt.
                    if let Some(again) = self
                        .rooms
                        .get_mut(&room_key)
                        .and_then(|r| r.joining.iter_mut().find(|j| j.client == joiner.client))
                    {
                        again.lines = joiner.lines;
                    }
                } else {
                    self.refuse_joiner(joiner.client, now, code, &reason, joiner.auto_named);
                }
            }
            (Waiting::Locate { end }, answer) => self.on_located(now, end, answer),
            (Waiting::ChargeFolder { end }, answer) => self.on_folder_charged(now, end, answer),
            (Waiting::AuthFailed { source }, Answer::Banned { ms_left }) => {
                self.on_cluster_ban(now, source, ms_left)
            }
            (Waiting::Rejoin { room_key }, answer) => {
                self.on_rejoined(now, op, pending.client, room_key, answer)
            }
            (Waiting::Message, Answer::Refused { code, reason }) => {
                if let Some(client) = pending.client {
                    self.bounce(client, now, code, &reason);
                }
            }
            (Waiting::Sync { room_key }, Answer::Synced(snapshot)) => {
                self.settle_reset_room(now, &room_key, snapshot)
            }
            _ => {}
        }
    }

    /// The broker restarted and may have lost everything: every room is
    /// learnt anew, and every member here claims its name again (its
    /// `seq`s going on from where they were).
    fn on_broker_restarted(&mut self, broker: String) {
        let Some(bus) = self.bus.as_mut() else {
            return;
        };
        bus.up = true;
        if bus.restarted.as_deref() == Some(broker.as_str()) {
            return;
        }
        bus.restarted = Some(broker);
        let mut keys: Vec<String> = self.rooms.keys().cloned().collect();
        keys.sort();
        for key in keys {
            let Some(room) = self.rooms.get_mut(&key) else {
                continue;
            };
            // Events of the broker that is gone: the room learns itself anew.
            if let Some(waiting) = room.awaiting_answer.take() {
                if let Some(bus) = self.bus.as_mut() {
                    bus.awaiting_bytes -= waiting.bytes;
                }
            }
            let min_seq = room.replica.as_mut().map_or(0, Replica::reset);
            room.resync = true;
            let room_name = room.name.clone();
            // Members, and joiners the old broker had let in (their JOINED
            // went with it): each claims its name again. A joiner's own
            // JOINED is then the rejoin's.
            let mut claims: Vec<(ClientId, Option<usize>)> =
                room.members.iter().map(|&id| (id, None)).collect();
            claims.extend(
                room.joining
                    .iter()
                    .enumerate()
                    .filter(|(_, j)| j.seq.is_some())
                    .map(|(i, j)| (j.client, Some(i))),
            );
            for (id, joiner) in claims {
                let name = match joiner {
                    Some(i) => self.rooms[&key].joining[i].name.clone(),
                    None => self
                        .clients
                        .get(&id)
                        .map(|c| c.link.name().clone())
                        .unwrap_or_default(),
                };
                let Some(bus) = self.bus.as_mut() else {
                    return;
                };
                let op = bus.next_op();
                bus.send(
                    BusRequest::Rejoin {
                        op,
                        client: id,
                        room: room_name.clone(),
                        room_key: key.clone(),
                        name_key: name_key(&name),
                        name,
                        min_seq,
                        source: self.clients.get(&id).and_then(|c| c.source),
                    },
                    Some(id),
                    Waiting::Rejoin {
                        room_key: key.clone(),
                    },
                );
                if let (Some(i), Some(room)) = (joiner, self.rooms.get_mut(&key)) {
                    room.joining[i].op = op;
                    room.joining[i].seq = None;
                }
            }
        }
    }

    /// The cluster took this server for gone: every member and joiner is
    /// closed with `SERVER_GONE` (their names are free already).
    fn on_reaped(&mut self, now: Instant) {
        let mut ids: Vec<ClientId> = self
            .rooms
            .values()
            .flat_map(|r| {
                r.members
                    .iter()
                    .copied()
                    .chain(r.joining.iter().map(|j| j.client))
            })
            .collect();
        ids.sort();
        for id in ids {
            if let Some(c) = self.clients.get_mut(&id) {
                c.link.close_with_error(
                    now,
                    Code::SERVER_GONE,
                    "this server was cut off from its cluster for too long: connect again",
                );
                self.touch(id);
            }
        }
    }

    /// The answer to a member's [`BusRequest::Rejoin`].
    fn on_rejoined(
        &mut self,
        now: Instant,
        op: OpId,
        client: Option<ClientId>,
        room_key: String,
        answer: Answer,
    ) {
        match answer {
            Answer::Joined(snapshot) => {
                // A joiner claiming its name again enters at its new
                // JOINED, from this snapshot or as the log brings it.
                let seq = snapshot.seq;
                let joiner = self.rooms.get_mut(&room_key).and_then(|r| {
                    r.joining
                        .iter_mut()
                        .find(|j| j.op == op)
                        .map(|j| j.seq = Some(seq))
                });
                self.settle_reset_room(now, &room_key, snapshot);
                let applied = self
                    .rooms
                    .get(&room_key)
                    .and_then(|r| r.replica.as_ref())
                    .and_then(Replica::seq);
                if joiner.is_some() && applied.is_some_and(|a| a >= seq) {
                    let members = self.cluster_members(&room_key).unwrap_or_default();
                    self.enter(now, &room_key, op, (seq, members), true);
                }
            }
            Answer::Refused { code, reason } => {
                let Some(id) = client else {
                    return;
                };
                if let Some(c) = self.clients.get_mut(&id) {
                    let reason = format!("the cluster restarted and your place was lost: {reason}");
                    c.link.close_with_error(now, code, &reason);
                    self.touch(id);
                }
            }
            _ => {}
        }
    }

    /// A snapshot for a room whose replica was reset (a gap in the log, a
    /// restarted broker): the replica takes it if it still waits, its
    /// members here learn the room anew, joiners whose `JOINED` it passed
    /// enter, and the events held after it are applied.
    fn settle_reset_room(&mut self, now: Instant, key: &str, snapshot: Snapshot) {
        let Some(replica) = self.rooms.get_mut(key).and_then(|r| r.replica.as_mut()) else {
            return;
        };
        if replica.seq().is_some() {
            return;
        }
        let held = replica.settle(&snapshot);
        self.resynced(now, key, snapshot.members.clone());
        self.deliver_missed(now, key, held.missed);
        let late: Vec<(OpId, u64)> = self
            .rooms
            .get(key)
            .map(|r| {
                r.joining
                    .iter()
                    .filter_map(|j| j.seq.filter(|&s| s <= snapshot.seq).map(|s| (j.op, s)))
                    .collect()
            })
            .unwrap_or_default();
        for (op, seq) in late {
            self.enter(now, key, op, (seq, snapshot.members.clone()), true);
        }
        for event in held.after {
            self.on_room_event(now, event);
        }
    }

    /// The messages a reset room's members here never got (said while it
    /// waited for a snapshot, before it), in order: they follow the room's
    /// `MEMBERS` and come before anything after the snapshot, so each
    /// member's `seq`s still only grow.
    fn deliver_missed(&mut self, now: Instant, key: &str, missed: Vec<RoomEvent>) {
        if let Some(room) = self.rooms.get_mut(key) {
            room.catching_up.clone_from(&room.members);
        }
        for event in missed {
            if let EventKind::Message { from, text } = event.kind {
                let frame = Frame::Message {
                    seq: event.seq,
                    from,
                    text,
                };
                self.deliver_to_room(now, key, &frame);
            }
        }
    }

    /// A room's replica settled after a reset: its members here learn who
    /// is there now (events may have been lost).
    fn resynced(&mut self, now: Instant, key: &str, names: Vec<Text>) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        if !std::mem::take(&mut room.resync) {
            return;
        }
        for id in room.members.clone() {
            self.send_to(
                id,
                now,
                &Frame::Members {
                    names: names.clone(),
                },
            );
        }
    }

    fn on_room_event(&mut self, now: Instant, event: RoomEvent) {
        let server = self.cluster_server();
        let key = event.room_key.clone();
        let history = self.config.history > 0;
        let max_awaiting = self.config.max_history_bytes;
        let awaiting_bytes = self.bus.as_ref().map_or(0, |b| b.awaiting_bytes);
        let Some(room) = self.rooms.get_mut(&key) else {
            return;
        };
        let weight = replica::weight(&event);
        if let Some(waiting) = room.awaiting_answer.as_mut() {
            if waiting.events.len() < AWAITING_EVENTS_MAX
                && waiting.bytes + weight <= HELD_MAX
                && awaiting_bytes + weight <= max_awaiting
            {
                waiting.events.push(event);
                waiting.bytes += weight;
                if let Some(bus) = self.bus.as_mut() {
                    bus.awaiting_bytes += weight;
                }
                return;
            }
            // Too long: the room goes on, the joiner without its history
            // (taken as answered, so that its JOINED lets it in).
            let waiting = room.awaiting_answer.take();
            if let Some(w) = &waiting {
                let seq = w.events.first().map(|e| e.seq);
                if let Some(joiner) = room.joining.iter_mut().find(|j| j.op == w.op) {
                    joiner.seq = seq;
                }
            }
            self.release_awaiting(now, waiting);
            self.on_room_event(now, event);
            return;
        }
        let Some(replica) = room.replica.as_mut() else {
            return;
        };
        let joiner = (matches!(event.kind, EventKind::Joined { .. })
            && Some(event.origin) == server)
            .then(|| room.joining.iter().find(|j| j.op == event.op))
            .flatten();
        let ours = joiner.is_some();
        if history
            && replica.seq().is_some()
            && joiner.is_some_and(|j| j.seq.is_none())
            && awaiting_bytes + weight <= max_awaiting
        {
            room.awaiting_answer = Some(AwaitingAnswer {
                op: event.op,
                events: vec![event],
                bytes: weight,
            });
            if let Some(bus) = self.bus.as_mut() {
                bus.awaiting_bytes += weight;
            }
            return;
        }
        let (seq, op) = (event.seq, event.op);
        let frame = match &event.kind {
            EventKind::Joined { name } => Frame::Joined {
                seq,
                name: name.clone(),
            },
            EventKind::Left { name, code } => Frame::Left {
                seq,
                name: name.clone(),
                code: *code,
            },
            EventKind::Message { from, text } => Frame::Message {
                seq,
                from: from.clone(),
                text: text.clone(),
            },
        };
        match replica.offer(event) {
            Offered::Applied => {
                if ours {
                    let members = replica.members().to_vec();
                    // Its own JOINED reaches it below, with everyone's.
                    self.enter(now, &key, op, (seq, members), false);
                }
                self.deliver_to_room(now, &key, &frame);
            }
            Offered::Repeat if ours => {
                let members = replica.members().to_vec();
                self.enter(now, &key, op, (seq, members), true);
            }
            Offered::Missed => {
                let catching_up = self
                    .rooms
                    .get(&key)
                    .map(|r| r.catching_up.clone())
                    .unwrap_or_default();
                self.deliver_to_members(now, &key, &catching_up, &frame);
            }
            Offered::Repeat | Offered::Held => {}
            Offered::Gap { .. } => {
                if let Some(room) = self.rooms.get_mut(&key) {
                    room.resync = true;
                }
                self.ask_sync(&key);
            }
        }
    }

    /// Lets the joiner of request `op` into the room keyed `key`: its
    /// `WELCOME` (or a guest's welcome line) and `MEMBERS` (`members`, the
    /// room as of its `JOINED` at `seq`). With `send_joined`, its `JOINED`
    /// too: when it enters from a snapshot or late, as the log's copy went
    /// by before it was in; otherwise the caller delivers that event to
    /// every member, the joiner included.
    fn enter(
        &mut self,
        now: Instant,
        key: &str,
        op: OpId,
        (seq, members): (u64, Vec<Text>),
        send_joined: bool,
    ) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let Some(i) = room.joining.iter().position(|j| j.op == op) else {
            return;
        };
        let joiner = room.joining.remove(i);
        let id = joiner.client;
        if let Some(name) = room.replica.as_ref().map(|r| r.room().clone()) {
            if !name.is_empty() {
                room.name = name;
            }
        }
        let room_name = room.name.clone();
        room.members.push(id);
        let name = joiner.name.clone();
        let welcomed = match self.clients.get_mut(&id).map(|c| &mut c.link) {
            Some(Link::Ferry(conn)) => conn.welcome(now, name.clone(), room_name.clone()).is_ok(),
            Some(Link::Guest(guest)) => {
                guest.send_line(
                    now,
                    &format!(
                        "* welcome to ferry, {name}: you are a raw-text guest in {room_name}; /help for commands"
                    ),
                );
                true
            }
            None => false,
        };
        self.touch(id);
        if !welcomed {
            return;
        }
        if let Some(secret) = self.session_secret(id) {
            self.send_to(id, now, &Frame::Session { secret });
        }
        if let Some(history) = joiner.history {
            for entry in &history.entries {
                self.send_to(
                    id,
                    now,
                    &Frame::History {
                        time_ms: entry.time_ms,
                        from: entry.from.clone(),
                        text: entry.text.clone(),
                    },
                );
            }
        }
        self.send_to(id, now, &Frame::Members { names: members });
        if send_joined {
            self.send_to(
                id,
                now,
                &Frame::Joined {
                    seq,
                    name: name.clone(),
                },
            );
        }
        for (from, text) in joiner.directs {
            self.send_to(id, now, &Frame::DirectFrom { from, text });
        }
        for (text, to) in joiner.lines {
            self.cluster_say(id, now, text, to);
        }
        self.events.push_back(HubEvent::Joined {
            client: id,
            name,
            room: room_name,
        });
    }

    /// Asks the broker for the room keyed `key` as it is now.
    fn ask_sync(&mut self, key: &str) {
        let Some(bus) = self.bus.as_mut() else {
            return;
        };
        let op = bus.next_op();
        bus.send(
            BusRequest::Sync {
                op,
                room_key: key.to_string(),
            },
            None,
            Waiting::Sync {
                room_key: key.to_string(),
            },
        );
    }

    /// A join the broker or the link refused: a ferry client gets `REFUSE`;
    /// a guest that chose its name may choose another, one named by the
    /// hub (or refused for a reason a new name does not change) is closed.
    fn refuse_joiner(&mut self, id: ClientId, now: Instant, code: Code, reason: &str, auto: bool) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        c.room = None;
        match &mut c.link {
            Link::Ferry(conn) => {
                let _ = conn.refuse(now, code, reason);
            }
            Link::Guest(guest) => {
                if auto || code != Code::NAME_TAKEN {
                    guest.close_with_error(now, code, reason);
                } else {
                    guest.send_line(
                        now,
                        &format!(
                            "! {reason}: try /name with another name, or say something to join as guest-N"
                        ),
                    );
                }
            }
        }
        self.touch(id);
    }

    /// Tells `id` a message of its was not delivered.
    fn bounce(&mut self, id: ClientId, now: Instant, code: Code, reason: &str) {
        if self.is_guest(id) {
            self.tell_guest(id, now, &format!("! not delivered: {reason}"));
        } else {
            let frame = Frame::Bounce {
                code,
                reason: reason.to_string().into(),
            };
            self.send_to(id, now, &frame);
        }
    }

    /// Drops the replica of a room with no member and no joiner here.
    fn forget_room_if_unused(&mut self, key: &str) {
        if self
            .rooms
            .get(key)
            .is_some_and(|r| r.members.is_empty() && r.joining.is_empty())
        {
            self.rooms.remove(key);
        }
    }
}
