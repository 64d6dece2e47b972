//! What a hub in cluster mode knows of one room: every member's name across
//! the cluster and the `seq` of the last event it applied, kept in step
//! with the broker's log.
//!
//! A hub keeps a replica only of rooms it has members in (or is joining).
//! A new replica knows nothing until a [`Snapshot`] arrives (in the answer
//! to a join, or to a sync): the log's events for the room are held until
//! then, and those after the snapshot are applied. After that each event
//! must be the next `seq`: an older one is a repeat and ignored, a later
//! one means events were lost (a trimmed log, a restarted broker), and the
//! replica waits for a new snapshot.

use super::bus::{EventKind, RoomEvent, Snapshot};
use crate::text::Text;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// Bytes of events a replica holds while it waits for a snapshot; past
/// them the oldest are dropped (the snapshot that comes is newer than
/// them, or a gap is found and another snapshot asked for).
pub const HELD_MAX: usize = 256 * 1024;

/// Cost counted for an event held, beyond its strings.
const HELD_EVENT_COST: usize = 96;

/// One room as a hub in cluster mode knows it.
#[derive(Debug, Clone, Default)]
pub struct Replica {
    /// The room's name as its first member called it (empty until a
    /// snapshot).
    room: Text,
    /// `seq` of the last event applied; `None` while waiting for a
    /// snapshot.
    seq: Option<u64>,
    /// Every member's name, in the order they joined.
    members: Vec<Text>,
    /// Events from the log while waiting for a snapshot.
    held: VecDeque<RoomEvent>,
    held_bytes: usize,
    /// The highest `seq` this hub ever applied in the room.
    floor: u64,
    /// After a snapshot that passed events not read yet: `(after, upto]`,
    /// the `seq`s whose messages this hub's members did not get and may
    /// still read in the log.
    catch_up: Option<(u64, u64)>,
}

/// What a replica held while it waited for a snapshot
/// ([`Replica::settle`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settled {
    /// Messages at or before the snapshot that this server's members never
    /// got, in order: the hub delivers them before anything else.
    pub missed: Vec<RoomEvent>,
    /// Events after the snapshot, in order, to offer one by one.
    pub after: Vec<RoomEvent>,
}

/// What [`Replica::offer`] did with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offered {
    /// The room's next event: applied; deliver it to the local members.
    Applied,
    /// At or below the last `seq` applied: seen before, ignored.
    Repeat,
    /// A message at or below the snapshot the replica settled on, that its
    /// members never got (the snapshot came before the log brought it):
    /// deliver it, as [`Applied`](Self::Applied) events are.
    Missed,
    /// Held until a snapshot comes.
    Held,
    /// Past the next `seq`: events were lost. The event is held and the
    /// replica waits for a snapshot, which the hub asks for.
    Gap {
        /// The `seq` the replica expected.
        expected: u64,
    },
}

impl Replica {
    /// A replica that waits for its first snapshot.
    pub fn awaiting() -> Replica {
        Replica::default()
    }

    /// `seq` of the last event applied, `None` while waiting for a
    /// snapshot.
    pub fn seq(&self) -> Option<u64> {
        self.seq
    }

    /// The room's name as its first member called it (empty while waiting
    /// for a snapshot).
    pub fn room(&self) -> &Text {
        &self.room
    }

    /// Every member's name, in join order, as of [`seq`](Self::seq).
    pub fn members(&self) -> &[Text] {
        &self.members
    }

    /// Whether `name` (compared as typed) is a member.
    pub fn has_member(&self, name: &str) -> bool {
        self.members.iter().any(|m| m.as_str() == name)
    }

    /// Forgets what it knew (the broker restarted): it waits for a snapshot
    /// again. Returns the last `seq` it had applied.
    pub fn reset(&mut self) -> u64 {
        self.held.clear();
        self.held_bytes = 0;
        self.seq = None;
        self.catch_up = None;
        self.floor
    }

    /// Takes the log's next event for this room.
    pub fn offer(&mut self, event: RoomEvent) -> Offered {
        let Some(seq) = self.seq else {
            self.hold(event);
            return Offered::Held;
        };
        if event.seq <= seq {
            let Some((after, upto)) = self.catch_up else {
                return Offered::Repeat;
            };
            if event.seq <= after || event.seq > upto {
                return Offered::Repeat;
            }
            self.catch_up = (event.seq < upto).then_some((event.seq, upto));
            return match event.kind {
                EventKind::Message { .. } => Offered::Missed,
                _ => Offered::Repeat,
            };
        }
        if event.seq > seq + 1 {
            self.seq = None;
            self.hold(event);
            return Offered::Gap { expected: seq + 1 };
        }
        self.apply(&event);
        Offered::Applied
    }

    /// Whether a snapshot at `seq` would move this replica: it waits for
    /// one, or it is behind.
    pub fn wants(&self, seq: u64) -> bool {
        self.seq.is_none_or(|have| have < seq)
    }

    /// A snapshot arrived. A replica that waits takes it, and returns the
    /// events it held: the messages at or before the snapshot that its
    /// members never got (newer than the last event it applied: the
    /// snapshot stands for who joined and left, not for what was said),
    /// and the events after it, each in order, for the hub to
    /// [`offer`](Self::offer) one by one. One that is already past it
    /// ignores it and returns nothing.
    pub fn settle(&mut self, snapshot: &Snapshot) -> Settled {
        if self.seq.is_some() {
            return Settled::default();
        }
        let applied = self.floor;
        self.room = snapshot.room.clone();
        self.seq = Some(snapshot.seq);
        self.floor = self.floor.max(snapshot.seq);
        self.members.clone_from(&snapshot.members);
        self.held_bytes = 0;
        let mut held: Vec<RoomEvent> = core::mem::take(&mut self.held).into();
        held.sort_by_key(|e| e.seq);
        let (before, after): (Vec<RoomEvent>, Vec<RoomEvent>) =
            held.into_iter().partition(|e| e.seq <= snapshot.seq);
        // A replica that never applied anything had no members to miss
        // anything: a joiner gets the room's past as history.
        if applied == 0 {
            return Settled {
                missed: Vec::new(),
                after,
            };
        }
        // What the log may still bring of the snapshot's past.
        let read = before.last().map_or(applied, |e| e.seq.max(applied));
        self.catch_up = (read < snapshot.seq).then_some((read, snapshot.seq));
        let missed = before
            .into_iter()
            .filter(|e| e.seq > applied && matches!(e.kind, EventKind::Message { .. }))
            .collect();
        Settled { missed, after }
    }

    fn apply(&mut self, event: &RoomEvent) {
        // The log is past the snapshot: nothing before it comes any more.
        self.catch_up = None;
        self.seq = Some(event.seq);
        self.floor = self.floor.max(event.seq);
        match &event.kind {
            // A member that claimed its name again after the broker
            // restarted is listed once.
            EventKind::Joined { name } if !self.has_member(name) => self.members.push(name.clone()),
            EventKind::Joined { .. } => {}
            EventKind::Left { name, .. } => {
                if let Some(i) = self.members.iter().position(|m| m == name) {
                    self.members.remove(i);
                }
            }
            EventKind::Message { .. } => {}
        }
    }

    fn hold(&mut self, event: RoomEvent) {
        self.held_bytes += weight(&event);
        self.held.push_back(event);
        while self.held_bytes > HELD_MAX {
            let Some(old) = self.held.pop_front() else {
                break;
            };
            self.held_bytes -= weight(&old);
        }
    }
}

/// Bytes an event held in memory is counted as.
pub(crate) fn weight(event: &RoomEvent) -> usize {
    HELD_EVENT_COST
        + event.room_key.len()
        + match &event.kind {
            EventKind::Joined { name } | EventKind::Left { name, .. } => name.len(),
            EventKind::Message { from, text } => from.len() + text.len(),
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::bus::{OpId, ServerId};
    use crate::code::Code;

    fn event(seq: u64, kind: EventKind) -> RoomEvent {
        RoomEvent {
            room_key: "lobby".into(),
            seq,
            origin: ServerId(1),
            op: OpId(seq),
            kind,
        }
    }

    fn joined(seq: u64, name: &str) -> RoomEvent {
        event(seq, EventKind::Joined { name: name.into() })
    }

    fn snapshot(seq: u64, members: &[&str]) -> Snapshot {
        Snapshot {
            room_key: "lobby".into(),
            room: "Lobby".into(),
            seq,
            members: members.iter().map(|&m| m.into()).collect(),
            history: Vec::new(),
        }
    }

    #[test]
    fn holds_until_a_snapshot_then_applies_what_came_after_it() {
        let mut replica = Replica::awaiting();
        assert_eq!(replica.offer(joined(4, "carol")), Offered::Held);
        assert_eq!(replica.offer(joined(5, "dave")), Offered::Held);
        let after = replica.settle(&snapshot(4, &["alice", "carol"])).after;
        assert_eq!(after, vec![joined(5, "dave")]);
        for e in after {
            assert_eq!(replica.offer(e), Offered::Applied);
        }
        assert_eq!(replica.members(), ["alice", "carol", "dave"]);
        assert_eq!(replica.seq(), Some(5));
        assert_eq!(replica.room(), "Lobby");
        // A second snapshot, older, changes nothing.
        assert_eq!(replica.settle(&snapshot(3, &["alice"])), Settled::default());
        assert_eq!(replica.members(), ["alice", "carol", "dave"]);
    }

    #[test]
    fn repeats_are_ignored_and_gaps_wait_for_a_snapshot() {
        let mut replica = Replica::awaiting();
        replica.settle(&snapshot(1, &["alice"]));
        assert_eq!(replica.offer(joined(2, "bob")), Offered::Applied);
        assert_eq!(replica.offer(joined(2, "bob")), Offered::Repeat);
        let left = event(
            5,
            EventKind::Left {
                name: "bob".into(),
                code: Code::QUIT,
            },
        );
        assert_eq!(replica.offer(left.clone()), Offered::Gap { expected: 3 });
        assert!(replica.wants(4));
        assert_eq!(
            replica.settle(&snapshot(4, &["alice", "bob"])),
            Settled {
                missed: Vec::new(),
                after: vec![left]
            }
        );
    }

    #[test]
    fn holds_a_bounded_number_of_bytes() {
        let mut replica = Replica::awaiting();
        let text: Text = "x".repeat(60_000).into();
        for seq in 1..=20 {
            replica.offer(event(
                seq,
                EventKind::Message {
                    from: "alice".into(),
                    text: text.clone(),
                },
            ));
        }
        assert!(replica.held_bytes <= HELD_MAX);
        let after = replica.settle(&snapshot(0, &[])).after;
        assert_eq!(after.last().map(|e| e.seq), Some(20));
        assert!(after.len() < 20);
    }

    fn message(seq: u64, text: &str) -> RoomEvent {
        event(
            seq,
            EventKind::Message {
                from: "bob".into(),
                text: text.into(),
            },
        )
    }

    #[test]
    fn after_a_reset_the_messages_its_members_never_got_are_handed_back() {
        let mut replica = Replica::awaiting();
        replica.settle(&snapshot(1, &["alice"]));
        assert_eq!(replica.offer(message(2, "before")), Offered::Applied);
        // The broker restarted: the new log starts at 10.
        assert_eq!(replica.reset(), 2);
        assert_eq!(replica.offer(joined(11, "bob")), Offered::Held);
        assert_eq!(replica.offer(message(12, "held")), Offered::Held);
        // The snapshot is at 15: 12 was held, 13 and 14 come late.
        let settled = replica.settle(&snapshot(15, &["alice", "bob"]));
        assert_eq!(settled.missed, vec![message(12, "held")]);
        assert!(settled.after.is_empty());
        assert_eq!(replica.offer(message(13, "late")), Offered::Missed);
        assert_eq!(replica.offer(message(13, "late")), Offered::Repeat);
        assert_eq!(replica.offer(joined(14, "carol")), Offered::Repeat);
        assert_eq!(replica.offer(message(16, "after")), Offered::Applied);
        // Past the snapshot: nothing before it is handed back any more.
        assert_eq!(replica.offer(message(15, "again")), Offered::Repeat);
    }

    #[test]
    fn a_replica_that_never_applied_anything_hands_nothing_back() {
        let mut replica = Replica::awaiting();
        assert_eq!(replica.offer(message(3, "history")), Offered::Held);
        let settled = replica.settle(&snapshot(5, &["alice"]));
        assert_eq!(settled, Settled::default());
        assert_eq!(replica.offer(message(4, "history too")), Offered::Repeat);
    }
}
