//! Room history: the last messages said in each room, replayed to
//! newcomers as `HISTORY` frames (`docs/PROTOCOL.md` §4.38).
//!
//! A hub on its own keeps them itself, at most
//! [`HubConfig::history`](crate::HubConfig::history) per room; in a
//! cluster the broker keeps them and hands a joiner its room's in the
//! join's [`Snapshot`](crate::cluster::Snapshot).
//!
//! ```
//! use ferry_core::history::HistoryEntry;
//!
//! let said = HistoryEntry::new(1_764_633_600_000, "alice", "hi");
//! assert_eq!(said.weight(), 7 + HistoryEntry::OVERHEAD);
//! ```

use crate::text::Text;
use std::collections::{BTreeSet, HashMap, VecDeque};

/// One message of a room's past.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// When it was ordered: milliseconds since the Unix epoch, 0 if unknown.
    pub time_ms: u64,
    /// Its sender (empty: the server).
    pub from: Text,
    /// The message.
    pub text: Text,
}

impl HistoryEntry {
    /// What an entry costs beyond its text: its record, its place in a
    /// queue, the frame header and lengths when sent.
    pub const OVERHEAD: usize = 64;

    /// An entry of its own: `from` and `text` are copied, so that it never
    /// keeps alive the larger buffer a message arrived in.
    pub fn new(time_ms: u64, from: &str, text: &str) -> HistoryEntry {
        HistoryEntry {
            time_ms,
            from: Text::from(from),
            text: Text::from(text),
        }
    }

    /// Bytes it holds, as counted against the limits.
    pub fn weight(&self) -> usize {
        self.from.len() + self.text.len() + Self::OVERHEAD
    }
}

/// The newest of `entries` (oldest first) whose weights add up to at most
/// `budget`, oldest first: what a newcomer is sent.
pub fn newest_within<'a>(
    entries: impl DoubleEndedIterator<Item = &'a HistoryEntry>,
    budget: usize,
) -> Vec<&'a HistoryEntry> {
    let mut spent = 0;
    let mut kept: Vec<&HistoryEntry> = entries
        .rev()
        .take_while(|e| {
            spent += e.weight();
            spent <= budget
        })
        .collect();
    kept.reverse();
    kept
}

/// The history of every room of one hub: at most `per_room` messages per
/// room and `max_bytes` in all, kept after a room empties (its members
/// may come back) until newer messages of any room push them out, oldest
/// first.
#[derive(Debug)]
pub(crate) struct History {
    per_room: usize,
    max_bytes: usize,
    bytes: usize,
    rooms: HashMap<String, VecDeque<(u64, HistoryEntry)>>,
    /// Every room with history, by the number of its oldest entry, so that
    /// the oldest entry of all is found without a scan.
    oldest: BTreeSet<(u64, String)>,
    next: u64,
}

impl History {
    pub(crate) fn new(per_room: usize, max_bytes: usize) -> History {
        History {
            per_room,
            max_bytes,
            bytes: 0,
            rooms: HashMap::new(),
            oldest: BTreeSet::new(),
            next: 0,
        }
    }

    /// Whether history is kept at all.
    pub(crate) fn enabled(&self) -> bool {
        self.per_room > 0 && self.max_bytes > 0
    }

    /// Bytes held, as counted against `max_bytes`.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Keeps `entry` as the newest message of the room keyed `key`.
    pub(crate) fn record(&mut self, key: &str, entry: HistoryEntry) {
        if !self.enabled() || entry.weight() > self.max_bytes {
            return;
        }
        let number = self.next;
        self.next += 1;
        self.bytes += entry.weight();
        let room = self.rooms.entry(key.to_string()).or_default();
        if room.is_empty() {
            self.oldest.insert((number, key.to_string()));
        }
        room.push_back((number, entry));
        if room.len() > self.per_room {
            self.drop_oldest_of(key);
        }
        while self.bytes > self.max_bytes {
            let Some((_, room)) = self.oldest.first().cloned() else {
                break;
            };
            self.drop_oldest_of(&room);
        }
    }

    /// The room's messages, oldest first.
    pub(crate) fn of(&self, key: &str) -> impl DoubleEndedIterator<Item = &HistoryEntry> {
        self.rooms
            .get(key)
            .into_iter()
            .flat_map(|room| room.iter().map(|(_, entry)| entry))
    }

    fn drop_oldest_of(&mut self, key: &str) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let Some((number, entry)) = room.pop_front() else {
            return;
        };
        self.bytes -= entry.weight();
        self.oldest.remove(&(number, key.to_string()));
        match room.front() {
            Some(&(next, _)) => {
                self.oldest.insert((next, key.to_string()));
            }
            None => {
                self.rooms.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(text: &str) -> HistoryEntry {
        HistoryEntry::new(1, "a", text)
    }

    fn texts(history: &History, key: &str) -> Vec<String> {
        history.of(key).map(|e| e.text.to_string()).collect()
    }

    #[test]
    fn a_room_keeps_its_last_messages() {
        let mut history = History::new(2, 1 << 20);
        for text in ["1", "2", "3"] {
            history.record("lobby", entry(text));
        }
        assert_eq!(texts(&history, "lobby"), ["2", "3"]);
        assert_eq!(history.bytes(), 2 * (2 + HistoryEntry::OVERHEAD));
    }

    #[test]
    fn over_the_bytes_the_oldest_message_of_any_room_goes_first() {
        let weight = 2 + HistoryEntry::OVERHEAD;
        let mut history = History::new(10, 3 * weight);
        history.record("a", entry("1"));
        history.record("b", entry("2"));
        history.record("a", entry("3"));
        history.record("b", entry("4"));
        assert_eq!(texts(&history, "a"), ["3"]);
        assert_eq!(texts(&history, "b"), ["2", "4"]);
        history.record("c", entry("5"));
        history.record("c", entry("6"));
        assert_eq!(texts(&history, "a"), Vec::<String>::new());
        assert_eq!(texts(&history, "b"), ["4"]);
        assert_eq!(texts(&history, "c"), ["5", "6"]);
        assert_eq!(history.bytes(), 3 * weight);
        // An emptied room leaves nothing behind.
        assert!(!history.rooms.contains_key("a"));
        assert_eq!(history.oldest.len(), 2);
    }

    #[test]
    fn off_keeps_nothing() {
        let mut history = History::new(0, 1 << 20);
        history.record("lobby", entry("1"));
        assert_eq!(history.bytes(), 0);
        assert_eq!(history.of("lobby").count(), 0);
    }

    #[test]
    fn a_newcomer_gets_the_newest_that_fit() {
        let entries: Vec<HistoryEntry> = ["1", "2", "3"].into_iter().map(entry).collect();
        let weight = entries[0].weight();
        let sent = newest_within(entries.iter(), 2 * weight + 1);
        let sent: Vec<&str> = sent.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(sent, ["2", "3"]);
        assert!(newest_within(entries.iter(), weight - 1).is_empty());
    }
}
