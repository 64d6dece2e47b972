//! [`MemoryBroker`]: what a cluster's broker does, in memory.
//!
//! It is the reference for every broker link: the Redis scripts of
//! `ferry-cluster` implement exactly these operations (one script each, in
//! `docs/CLUSTER.md` §4), and tests run several hubs over it, delaying,
//! cutting and restarting it at will. Time comes in as milliseconds on the
//! broker's own clock, as Redis has one clock for every server.

use super::bus::{Answer, BusInput, BusRequest, EventKind, OpId, RoomEvent, ServerId, Snapshot};
use super::refusal;
use crate::code::Code;
use crate::history::HistoryEntry;
use crate::hub::ClientId;
use crate::source::Source;
use crate::text::Text;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Answers a broker keeps per server for repeated requests.
const ANSWERS_KEPT: usize = 1024;

/// A cluster's broker in memory: names, `seq`s, the ordered log, each
/// server's inbox and lease, and the budgets sources share.
#[derive(Debug, Default)]
pub struct MemoryBroker {
    log: Vec<RoomEvent>,
    rooms: HashMap<String, Room>,
    /// Each room's last `seq`, kept when it empties so numbers never repeat.
    seqs: HashMap<String, u64>,
    /// Where each member is: (room key, name key).
    members: HashMap<(ServerId, ClientId), (String, String)>,
    /// Each member's address group, when it has one.
    member_sources: HashMap<(ServerId, ClientId), Source>,
    /// Members of each source across every server.
    source_members: HashMap<Source, u32>,
    inboxes: HashMap<ServerId, VecDeque<BusInput>>,
    /// Per server: the last operation applied, and recent answers.
    applied: HashMap<ServerId, Applied>,
    /// Per server: when its lease ends (ms).
    leases: HashMap<ServerId, u64>,
    budget: Option<Budget>,
    buckets: HashMap<Source, Bucket>,
    /// Each source's budget of folder manifest entries.
    folder_buckets: HashMap<Source, Bucket>,
    /// Each source's wrong tokens: how many, the last one's time and the
    /// end of its ban (ms).
    auth_failures: HashMap<Source, AuthRecord>,
    /// A server found this broker restarted ([`mark_restarted`]): a room's
    /// numbers start from the clock, past any used before the restart.
    ///
    /// [`mark_restarted`]: MemoryBroker::mark_restarted
    restarted: bool,
    /// The time of the operation under way (ms).
    clock_ms: u64,
    /// Messages of history kept per room (0: none).
    history: usize,
    /// Each room's last messages, kept when it empties.
    histories: HashMap<String, VecDeque<HistoryEntry>>,
}

#[derive(Debug)]
struct Room {
    name: Text,
    /// (name key, name, server, client), in join order.
    members: Vec<(String, Text, ServerId, ClientId)>,
}

#[derive(Debug, Default)]
struct Applied {
    last: u64,
    answers: BTreeMap<u64, Answer>,
}

#[derive(Debug, Clone, Copy)]
struct Budget {
    burst: u32,
    per_second: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct AuthRecord {
    failures: u32,
    last_ms: u64,
    banned_until_ms: u64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens, in thousandths.
    milli: u64,
    at_ms: u64,
}

impl MemoryBroker {
    /// An empty broker with no shared budgets.
    pub fn new() -> MemoryBroker {
        MemoryBroker::default()
    }

    /// Charges every join and message to its source's budget, shared by
    /// every server: `burst` at once, `per_second` on average. A source
    /// over it is refused with `FLOODING`, on whichever server it spends.
    #[must_use]
    pub fn source_budget(mut self, burst: u32, per_second: u32) -> MemoryBroker {
        self.budget = Some(Budget { burst, per_second });
        self
    }

    /// Keeps the last `messages` of each room (said or announced) and hands
    /// them to a joiner in its `Joined` snapshot, oldest first; kept when
    /// the room empties, forgotten with everything else on a restart. The
    /// Redis broker also drops a room's history a week after its last
    /// message, which this one, used over seconds, does not model.
    #[must_use]
    pub fn history(mut self, messages: usize) -> MemoryBroker {
        self.history = messages;
        self
    }

    /// Carries out `request` of `server` at `now_ms` and returns its
    /// answer. A request numbered at or below one already applied for that
    /// server changes nothing and gets the answer given first.
    pub fn execute(&mut self, server: ServerId, request: BusRequest, now_ms: u64) -> BusInput {
        self.clock_ms = now_ms;
        let op = request.op();
        let applied = self.applied.entry(server).or_default();
        if op.0 <= applied.last {
            let answer = applied
                .answers
                .get(&op.0)
                .cloned()
                .unwrap_or_else(refusal::forgotten);
            return BusInput::Answer { op, answer };
        }
        let answer = self.apply(server, request, now_ms);
        let applied = self.applied.entry(server).or_default();
        applied.last = op.0;
        // A repeat is answered without the history: a thousand recorded
        // joins would each hold a room's.
        let mut recorded = answer.clone();
        if let Answer::Joined(snapshot) = &mut recorded {
            snapshot.history = Vec::new();
        }
        applied.answers.insert(op.0, recorded);
        while applied.answers.len() > ANSWERS_KEPT {
            applied.answers.pop_first();
        }
        BusInput::Answer { op, answer }
    }

    /// The log's events after the first `read`, in order, as a hub takes
    /// them ([`BusInput::Event`]).
    pub fn events_after(&self, read: usize) -> impl Iterator<Item = BusInput> + '_ {
        self.log
            .get(read..)
            .unwrap_or_default()
            .iter()
            .cloned()
            .map(BusInput::Event)
    }

    /// Events in the log.
    pub fn log_len(&self) -> usize {
        self.log.len()
    }

    /// Takes what waits in `server`'s inbox (direct messages, and the
    /// bans other servers' wrong tokens began).
    pub fn take_inbox(&mut self, server: ServerId) -> Vec<BusInput> {
        self.inboxes
            .remove(&server)
            .map(Vec::from)
            .unwrap_or_default()
    }

    /// Every member's name in the room keyed `room_key`, in join order.
    pub fn members(&self, room_key: &str) -> Vec<Text> {
        self.rooms
            .get(room_key)
            .map(|r| r.members.iter().map(|m| m.1.clone()).collect())
            .unwrap_or_default()
    }

    /// Moves `server`'s lease to end `lease_ms` after `now_ms`. Returns
    /// `false` if the server had no lease (never had one, or was reaped):
    /// the others took it for gone.
    pub fn renew(&mut self, server: ServerId, now_ms: u64, lease_ms: u64) -> bool {
        let had = self.leases.contains_key(&server) || !self.applied.contains_key(&server);
        self.leases.insert(server, now_ms + lease_ms);
        had
    }

    /// Takes every server whose lease ended before `now_ms` for gone: each
    /// of its members leaves with `SERVER_GONE` (appended as `by`'s
    /// operation 0) and its name is free. Returns the servers reaped.
    pub fn reap(&mut self, by: ServerId, now_ms: u64) -> Vec<ServerId> {
        self.clock_ms = now_ms;
        let mut gone: Vec<ServerId> = self
            .leases
            .iter()
            .filter(|&(_, &until)| until < now_ms)
            .map(|(&s, _)| s)
            .collect();
        gone.sort();
        for &server in &gone {
            self.leases.remove(&server);
            self.inboxes.remove(&server);
            let mut held: Vec<(ServerId, ClientId)> = self
                .members
                .keys()
                .filter(|(s, _)| *s == server)
                .copied()
                .collect();
            held.sort();
            for member in held {
                self.remove_member(member, Code::SERVER_GONE, by, OpId(0));
            }
        }
        gone
    }

    /// What a broker link does first when it finds the broker restarted:
    /// from then on a room whose numbering starts anew starts at
    /// `now_ms × 1000`, past every number the room used before the restart
    /// (unless it averaged more than a thousand events a millisecond), so
    /// no member ever sees a number twice.
    pub fn mark_restarted(&mut self) {
        self.restarted = true;
    }

    /// Forgets everything, as a Redis restarted without its data does:
    /// names, `seq`s, the log, inboxes, leases and remembered answers.
    pub fn restart(&mut self) {
        *self = MemoryBroker {
            budget: self.budget,
            history: self.history,
            ..MemoryBroker::default()
        };
    }

    fn apply(&mut self, server: ServerId, request: BusRequest, now_ms: u64) -> Answer {
        match request {
            BusRequest::Join {
                op,
                client,
                room,
                room_key,
                name,
                name_key,
                source,
                max_members,
                max_per_source,
            } => self.join(
                (server, client),
                op,
                (room, room_key),
                (name, name_key),
                source,
                (max_members, max_per_source),
                now_ms,
            ),
            BusRequest::Say {
                op,
                client,
                text,
                source,
            } => {
                let (room_key, name) = match self.sender((server, client), source, now_ms) {
                    Ok(sender) => sender,
                    Err(refused) => return refused,
                };
                self.append(
                    &room_key,
                    server,
                    op,
                    EventKind::Message { from: name, text },
                );
                Answer::Done
            }
            BusRequest::Direct {
                client,
                to,
                to_key,
                text,
                source,
                ..
            } => {
                let (room_key, from) = match self.sender((server, client), source, now_ms) {
                    Ok(sender) => sender,
                    Err(refused) => return refused,
                };
                let target = self
                    .rooms
                    .get(&room_key)
                    .and_then(|r| r.members.iter().find(|m| m.0 == to_key).map(|m| (m.2, m.3)));
                let Some((to_server, to_client)) = target else {
                    return refusal::no_such_user(&to);
                };
                self.inboxes
                    .entry(to_server)
                    .or_default()
                    .push_back(BusInput::Direct {
                        client: to_client,
                        room_key,
                        from,
                        text,
                    });
                Answer::Done
            }
            BusRequest::Announce { op, room_key, text } => {
                let mut keys: Vec<String> = match room_key {
                    Some(key) => self
                        .rooms
                        .contains_key(&key)
                        .then_some(key)
                        .into_iter()
                        .collect(),
                    None => self.rooms.keys().cloned().collect(),
                };
                keys.sort();
                for key in keys {
                    let kind = EventKind::Message {
                        from: Text::new(),
                        text: text.clone(),
                    };
                    self.append(&key, server, op, kind);
                }
                Answer::Done
            }
            BusRequest::Leave { op, client, code } => {
                self.remove_member((server, client), code, server, op);
                Answer::Done
            }
            BusRequest::Locate {
                client, to, to_key, ..
            } => {
                let Some((room_key, _)) = self.member((server, client)) else {
                    return refusal::not_in_a_room();
                };
                self.rooms
                    .get(&room_key)
                    .and_then(|r| r.members.iter().find(|m| m.0 == to_key))
                    .map_or_else(|| refusal::no_such_user(&to), |m| Answer::Located(m.2))
            }
            BusRequest::ChargeFolder {
                source,
                entries,
                burst,
                per_second,
                ..
            } => self.charge_folder(source, entries, burst, per_second, now_ms),
            BusRequest::AuthFailed {
                source,
                ban_after,
                ban_ms,
                memory_ms,
                ..
            } => self.auth_failed(server, source, (ban_after, ban_ms, memory_ms), now_ms),
            BusRequest::Sync { room_key, .. } => Answer::Synced(self.snapshot(&room_key)),
            BusRequest::Rejoin {
                op,
                client,
                room,
                room_key,
                name,
                name_key,
                min_seq,
                source,
            } => {
                let member = (server, client);
                if let Some((held_room, held_name)) = self.members.get(&member) {
                    // Asked twice (two restarts in a row): it holds its
                    // place already.
                    if *held_room == room_key && *held_name == name_key {
                        return Answer::Joined(self.snapshot(&room_key));
                    }
                    return refusal::already_member(held_room);
                }
                if let Some(held) = self
                    .rooms
                    .get(&room_key)
                    .and_then(|r| r.members.iter().find(|m| m.0 == name_key))
                {
                    return refusal::name_taken(&name, &held.1);
                }
                let base = self.first_seq();
                let seq = self.seqs.entry(room_key.clone()).or_insert(base);
                *seq = (*seq).max(min_seq);
                let r = self.rooms.entry(room_key.clone()).or_insert_with(|| Room {
                    name: room,
                    members: Vec::new(),
                });
                r.members
                    .push((name_key.clone(), name.clone(), server, client));
                self.members.insert(member, (room_key.clone(), name_key));
                self.count_source(member, source);
                self.append(&room_key, server, op, EventKind::Joined { name });
                // As a join's: a joiner the old broker had let in enters
                // with what was said since the restart.
                Answer::Joined(self.snapshot_with_history(&room_key))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn join(
        &mut self,
        member: (ServerId, ClientId),
        op: OpId,
        (room, room_key): (Text, String),
        (name, name_key): (Text, String),
        source: Option<Source>,
        (max_members, max_per_source): (u32, u32),
        now_ms: u64,
    ) -> Answer {
        if let Some((held_room, _)) = self.members.get(&member) {
            return refusal::already_member(held_room);
        }
        if let Some(r) = self.rooms.get(&room_key) {
            if let Some(held) = r.members.iter().find(|m| m.0 == name_key) {
                return refusal::name_taken(&name, &held.1);
            }
            if r.members.len() >= max_members as usize {
                return refusal::room_full(max_members);
            }
        }
        if let Some(source) = source.filter(|_| max_per_source > 0) {
            if self.source_members.get(&source).copied().unwrap_or(0) >= max_per_source {
                return refusal::source_full(source, max_per_source);
            }
        }
        if let Err(refused) = self.charge(source, now_ms) {
            return refused;
        }
        let r = self.rooms.entry(room_key.clone()).or_insert_with(|| Room {
            name: room,
            members: Vec::new(),
        });
        r.members
            .push((name_key.clone(), name.clone(), member.0, member.1));
        self.members.insert(member, (room_key.clone(), name_key));
        self.count_source(member, source);
        self.append(&room_key, member.0, op, EventKind::Joined { name });
        Answer::Joined(self.snapshot_with_history(&room_key))
    }

    /// The room's snapshot with its history, as a join's answer has it.
    fn snapshot_with_history(&self, room_key: &str) -> Snapshot {
        let mut snapshot = self.snapshot(room_key);
        snapshot.history = self
            .histories
            .get(room_key)
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default();
        snapshot
    }

    /// The room and name of the sender of a message, its source's budget
    /// charged; or the refusal.
    fn sender(
        &mut self,
        member: (ServerId, ClientId),
        source: Option<Source>,
        now_ms: u64,
    ) -> Result<(String, Text), Answer> {
        let sender = self.member(member).ok_or_else(refusal::not_in_a_room)?;
        self.charge(source, now_ms)?;
        Ok(sender)
    }

    fn member(&self, member: (ServerId, ClientId)) -> Option<(String, Text)> {
        let (room_key, name_key) = self.members.get(&member)?;
        let name = self
            .rooms
            .get(room_key)?
            .members
            .iter()
            .find(|m| &m.0 == name_key)?
            .1
            .clone();
        Some((room_key.clone(), name))
    }

    /// Counts `member` among its source's members.
    fn count_source(&mut self, member: (ServerId, ClientId), source: Option<Source>) {
        if let Some(source) = source {
            self.member_sources.insert(member, source);
            *self.source_members.entry(source).or_default() += 1;
        }
    }

    fn remove_member(&mut self, member: (ServerId, ClientId), code: Code, by: ServerId, op: OpId) {
        let Some((room_key, name_key)) = self.members.remove(&member) else {
            return;
        };
        if let Some(source) = self.member_sources.remove(&member) {
            if let Some(count) = self.source_members.get_mut(&source) {
                *count -= 1;
                if *count == 0 {
                    self.source_members.remove(&source);
                }
            }
        }
        let Some(r) = self.rooms.get_mut(&room_key) else {
            return;
        };
        let Some(i) = r.members.iter().position(|m| m.0 == name_key) else {
            return;
        };
        let (_, name, ..) = r.members.remove(i);
        let empty = r.members.is_empty();
        self.append(&room_key, by, op, EventKind::Left { name, code });
        if empty {
            self.rooms.remove(&room_key);
        }
    }

    /// Where a room's numbering starts (its first event is one more).
    fn first_seq(&self) -> u64 {
        if self.restarted {
            self.clock_ms * 1000
        } else {
            0
        }
    }

    fn append(&mut self, room_key: &str, origin: ServerId, op: OpId, kind: EventKind) {
        if let (EventKind::Message { from, text }, true) = (&kind, self.history > 0) {
            let kept = self.histories.entry(room_key.to_string()).or_default();
            kept.push_back(HistoryEntry::new(self.clock_ms, from, text));
            if kept.len() > self.history {
                kept.pop_front();
            }
        }
        let base = self.first_seq();
        let seq = self.seqs.entry(room_key.to_string()).or_insert(base);
        *seq += 1;
        self.log.push(RoomEvent {
            room_key: room_key.to_string(),
            seq: *seq,
            origin,
            op,
            kind,
        });
    }

    fn snapshot(&self, room_key: &str) -> Snapshot {
        let room = self.rooms.get(room_key);
        Snapshot {
            room_key: room_key.to_string(),
            room: room.map(|r| r.name.clone()).unwrap_or_default(),
            seq: self.seqs.get(room_key).copied().unwrap_or(0),
            members: self.members(room_key),
            history: Vec::new(),
        }
    }

    /// Counts a wrong token of `source` on any server (`server` asking).
    /// The one that bans it is told so in the answer, and every other
    /// server holding a lease in its inbox.
    fn auth_failed(
        &mut self,
        server: ServerId,
        source: Source,
        (ban_after, ban_ms, memory_ms): (u32, u64, u64),
        now_ms: u64,
    ) -> Answer {
        let record = self.auth_failures.entry(source).or_default();
        if record.banned_until_ms > now_ms {
            return Answer::Banned {
                ms_left: record.banned_until_ms - now_ms,
            };
        }
        if record.failures > 0 && now_ms.saturating_sub(record.last_ms) >= memory_ms {
            record.failures = 0;
        }
        record.failures += 1;
        record.last_ms = now_ms;
        if record.failures >= ban_after {
            record.failures = 0;
            record.banned_until_ms = now_ms + ban_ms;
            let mut others: Vec<ServerId> = self
                .leases
                .keys()
                .copied()
                .filter(|&s| s != server)
                .collect();
            others.sort();
            for other in others {
                self.inboxes
                    .entry(other)
                    .or_default()
                    .push_back(BusInput::SourceBanned {
                        source,
                        ms_left: ban_ms,
                    });
            }
            return Answer::Banned { ms_left: ban_ms };
        }
        Answer::Done
    }

    /// Spends `entries` (at most `burst`) of `source`'s shared budget of
    /// folder manifest entries.
    fn charge_folder(
        &mut self,
        source: Source,
        entries: u64,
        burst: u32,
        per_second: u32,
        now_ms: u64,
    ) -> Answer {
        if burst == 0 {
            return Answer::Done;
        }
        let full = u64::from(burst) * 1000;
        let bucket = self.folder_buckets.entry(source).or_insert(Bucket {
            milli: full,
            at_ms: now_ms,
        });
        let refill = now_ms.saturating_sub(bucket.at_ms) * u64::from(per_second);
        bucket.milli = (bucket.milli + refill).min(full);
        bucket.at_ms = bucket.at_ms.max(now_ms);
        let cost = entries.min(u64::from(burst)) * 1000;
        if bucket.milli < cost {
            return refusal::over_folder_budget(source, burst, per_second);
        }
        bucket.milli -= cost;
        Answer::Done
    }

    /// Spends one token of `source`'s shared budget.
    fn charge(&mut self, source: Option<Source>, now_ms: u64) -> Result<(), Answer> {
        let (Some(budget), Some(source)) = (self.budget, source) else {
            return Ok(());
        };
        let full = u64::from(budget.burst) * 1000;
        let bucket = self.buckets.entry(source).or_insert(Bucket {
            milli: full,
            at_ms: now_ms,
        });
        let refill = now_ms.saturating_sub(bucket.at_ms) * u64::from(budget.per_second);
        bucket.milli = (bucket.milli + refill).min(full);
        bucket.at_ms = bucket.at_ms.max(now_ms);
        if bucket.milli < 1000 {
            return Err(refusal::over_budget(
                source,
                budget.burst,
                budget.per_second,
            ));
        }
        bucket.milli -= 1000;
        Ok(())
    }
}
