//! The memory every client's chat and control queue holds, together, and
//! which clients hold the biggest queues. A queue is counted by what it
//! holds (its buffers' room included: `Connection::held_control_bytes`),
//! not by the bytes it will write, so that the limit bounds what the
//! process really holds.
//!
//! Each client's queue is bounded on its own (`Config::max_outgoing`, a slow
//! reader past it is dropped), but ten thousand clients that each stop
//! reading just under that bound would make the server hold gigabytes. The
//! hub counts every queue here and, while the total is over
//! `HubConfig::max_outgoing_memory`, drops a client with one of the
//! biggest queues as a slow reader, then the next, as Redis does with
//! `maxmemory-clients`. Queues under [`BIG`] are never dropped for this:
//! a client that keeps up holds next to nothing, so the total can pass the
//! limit by at most [`BIG`] per client.
//!
//! Finding the biggest queue must not scan the clients: queues of at least
//! [`BIG`] bytes sit in size classes (powers of two), and the victim is the
//! client that has been in the highest class the longest. Within a class,
//! sizes say little (they differ by at most half), but time does: a client
//! that reads, even slowly, drains and comes back later, while one that
//! does not read stays. On a runtime whose writers take a client's bytes
//! out of the hub before the socket accepts them (a thread per client), a
//! silent client's queue in the hub is no bigger than a busy reader's, and
//! only its time in the class tells them apart. Only clients falling behind
//! move between classes, so a client that keeps up costs an addition per
//! turn.

use std::collections::BTreeMap;

use crate::client_map::ClientMap;
use crate::ClientId;

/// Queues smaller than this are counted but never dropped for the total.
pub(super) const BIG: usize = 64 * 1024;

/// Every client's queued bytes together, and the big queues by size class.
#[derive(Debug)]
pub(super) struct QueuedBytes {
    /// Counts under this are never dropped for the total: [`BIG`] for
    /// outgoing queues.
    floor: usize,
    total: usize,
    /// Class `k` holds the clients whose count is in
    /// `[floor << k, floor << (k + 1))`, by when they entered it.
    classes: Vec<BTreeMap<u64, ClientId>>,
    /// Where each client of a class sits: its class and when it entered.
    slots: ClientMap<(usize, u64)>,
    /// Numbers the entries into classes, so that the first is the oldest.
    entries: u64,
}

impl Default for QueuedBytes {
    fn default() -> Self {
        QueuedBytes::with_floor(BIG)
    }
}

impl QueuedBytes {
    /// A counter whose classes start at `floor` bytes instead of [`BIG`]
    /// (the same rule for another kind of buffer: unfinished input).
    pub(super) fn with_floor(floor: usize) -> Self {
        QueuedBytes {
            floor: floor.max(1),
            total: 0,
            classes: Vec::new(),
            slots: ClientMap::default(),
            entries: 0,
        }
    }

    /// Bytes queued for every client together.
    pub(super) fn total(&self) -> usize {
        self.total
    }

    /// `client`'s queue went from `old` bytes to `new`. Only a client that
    /// can still be dropped (`droppable`: not closed already, its queue then
    /// being the rest of a frame begun and its `ERROR`) is put in a class.
    pub(super) fn update(&mut self, client: ClientId, old: usize, new: usize, droppable: bool) {
        self.total = self.total - old + new;
        // Only a queue that was big can be in a class: no lookup otherwise.
        let from = if old >= self.floor {
            self.slots.get(&client).map(|&(class, _)| class)
        } else {
            None
        };
        let to = if droppable {
            class_of(new, self.floor)
        } else {
            None
        };
        if from == to {
            return;
        }
        if from.is_some() {
            self.unslot(client);
        }
        if let Some(class) = to {
            if self.classes.len() <= class {
                self.classes.resize_with(class + 1, BTreeMap::new);
            }
            self.entries += 1;
            self.classes[class].insert(self.entries, client);
            self.slots.insert(client, (class, self.entries));
        }
    }

    /// Counts `client`'s queue anew: `counted` is what was counted for it
    /// last and becomes `now`.
    pub(super) fn recount(
        &mut self,
        client: ClientId,
        counted: &mut usize,
        now: usize,
        droppable: bool,
    ) {
        self.update(client, *counted, now, droppable);
        *counted = now;
    }

    /// While the total is over `limit`, the client that has been longest in
    /// the highest class of big queues (at least [`BIG`] bytes); `None` when
    /// within it, or when no queue is that big.
    pub(super) fn over(&self, limit: usize) -> Option<ClientId> {
        if self.total <= limit {
            return None;
        }
        self.classes
            .iter()
            .rev()
            .find_map(|members| members.values().next().copied())
    }

    fn unslot(&mut self, client: ClientId) {
        if let Some((class, entered)) = self.slots.remove(&client) {
            self.classes[class].remove(&entered);
        }
    }
}

/// The size class of a queue of `bytes`, if it is at least `floor`.
fn class_of(bytes: usize, floor: usize) -> Option<usize> {
    let multiple = bytes / floor;
    (multiple > 0).then(|| (usize::BITS - 1 - multiple.leading_zeros()) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> ClientId {
        ClientId(n)
    }

    #[test]
    fn size_classes_are_powers_of_two_from_big() {
        assert_eq!(class_of(0, BIG), None);
        assert_eq!(class_of(BIG - 1, BIG), None);
        assert_eq!(class_of(BIG, BIG), Some(0));
        assert_eq!(class_of(2 * BIG - 1, BIG), Some(0));
        assert_eq!(class_of(2 * BIG, BIG), Some(1));
        assert_eq!(class_of(16 * BIG, BIG), Some(4));
    }

    #[test]
    fn the_biggest_queue_is_named_only_while_the_total_is_over() {
        let mut queued = QueuedBytes::default();
        queued.update(id(1), 0, 100, true);
        queued.update(id(2), 0, 3 * BIG, true);
        queued.update(id(3), 0, 9 * BIG, true);
        queued.update(id(4), 0, BIG, true);
        assert_eq!(queued.total(), 100 + 13 * BIG);
        assert_eq!(queued.over(100 + 13 * BIG), None);
        assert_eq!(queued.over(BIG), Some(id(3)));
        // Client 3 drained, client 2 grew into the top class.
        queued.update(id(3), 9 * BIG, 10, true);
        queued.update(id(2), 3 * BIG, 8 * BIG, true);
        assert_eq!(queued.over(BIG), Some(id(2)));
        queued.update(id(2), 8 * BIG, 0, true);
        assert_eq!(queued.over(BIG), Some(id(4)));
        queued.update(id(4), BIG, 0, true);
        // Over the limit, but no queue is big: nobody is named.
        assert_eq!(queued.over(0), None);
        assert_eq!(queued.total(), 110);
    }

    #[test]
    fn within_a_class_the_client_there_longest_is_named_not_the_one_that_drained() {
        let mut queued = QueuedBytes::default();
        // Both fall behind together; the reader is even a little ahead.
        queued.update(id(1), 0, 2 * BIG, true);
        queued.update(id(2), 0, 2 * BIG + 10, true);
        queued.update(id(2), 2 * BIG + 10, 3 * BIG, true);
        assert_eq!(queued.over(0), Some(id(1)));
        // Client 1 reads: it drains, then falls behind again, and now
        // queues more than client 2, which has not moved since.
        queued.update(id(1), 2 * BIG, BIG / 2, true);
        queued.update(id(1), BIG / 2, 3 * BIG + 100, true);
        assert_eq!(queued.over(0), Some(id(2)));
        // Growing into a higher class still comes first.
        queued.update(id(1), 3 * BIG + 100, 4 * BIG, true);
        assert_eq!(queued.over(0), Some(id(1)));
    }

    #[test]
    fn a_closed_client_is_counted_but_never_named_again() {
        let mut queued = QueuedBytes::default();
        queued.update(id(1), 0, 4 * BIG, true);
        queued.update(id(2), 0, BIG, true);
        assert_eq!(queued.over(0), Some(id(1)));
        // Dropped, it still holds the rest of a frame begun: counted, but
        // naming it again would never free anything.
        queued.update(id(1), 4 * BIG, 2 * BIG, false);
        assert_eq!(queued.total(), 3 * BIG);
        assert_eq!(queued.over(0), Some(id(2)));
        queued.update(id(1), 2 * BIG, 0, false);
        queued.update(id(2), BIG, 0, false);
        assert_eq!(queued.over(0), None);
        assert!(queued.slots.is_empty());
    }

    #[test]
    fn moving_clients_between_classes_keeps_every_slot_right() {
        let mut queued = QueuedBytes::default();
        for n in 0..50 {
            queued.update(id(n), 0, BIG * (1 + n as usize % 5), true);
        }
        for n in (0..50).step_by(3) {
            queued.update(id(n), BIG * (1 + n as usize % 5), 0, true);
        }
        for (&client, &(class, entered)) in &queued.slots {
            assert_eq!(queued.classes[class][&entered], client);
        }
        let slotted: usize = queued.classes.iter().map(BTreeMap::len).sum();
        assert_eq!(slotted, queued.slots.len());
        assert_eq!(slotted, 50 - (0..50).step_by(3).count());
    }
}
