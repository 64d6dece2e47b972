//! Connections that ended, told to a hub after the ones that still talk.
//!
//! Every server loop learns of a socket's end (the peer's end of stream, a
//! failed read or write) in the middle of other work: a read, a write to
//! another member. Telling the hub there would make the client leave its
//! room at once, a `LEFT` to every member, each written in the same turn
//! and perhaps failing for the next member gone; a room of 4,000 hanging up
//! together is 16 million deliveries, over a second of the hub's work, that
//! a member still there would wait behind (`ferry bench hostile --attacks
//! large-room`). So a loop queues the end in an [`EndedQueue`] and tells
//! the hub [`ENDS_BUDGET`] at a time, after serving the live sockets.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ferry_core::{ClientId, Hub};

/// How long a loop tells the hub of ended connections before it looks at
/// the live ones again (at least one end a turn).
pub const ENDS_BUDGET: Duration = Duration::from_millis(5);

/// A queue with room for more ends than this gives it back once empty: a
/// crowd's hang-up is over.
const KEEP_AT_MOST: usize = 1024;

/// How a connection's socket ended, until its loop tells the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The peer's end of stream (or TLS close_notify).
    Eof,
    /// A failed read or write, with the reason for the log.
    Broken(String),
}

impl End {
    /// Tells `hub` that `client`'s connection ended this way.
    pub fn tell(self, hub: &mut Hub, client: ClientId, now: Instant) {
        match self {
            End::Eof => hub.handle_eof(client, now),
            End::Broken(reason) => hub.handle_broken(client, now, &reason),
        }
    }
}

/// Connections whose end the hub has not heard yet, oldest first: what a
/// loop keeps for each is up to it (a client id, or the id and its
/// [`End`]).
///
/// ```
/// use ferry_core::{Hub, HubConfig};
/// use ferry_files::{End, EndedQueue};
/// use std::time::Instant;
///
/// let now = Instant::now();
/// let mut hub = Hub::new(HubConfig::default(), now);
/// let gone = hub.connect(now);
/// let mut ended = EndedQueue::default();
/// ended.push((gone, End::Eof));
///
/// // After the live sockets had their turn:
/// let mut turn = ended.turn();
/// while let Some((client, end)) = ended.next(&mut turn) {
///     end.tell(&mut hub, client, now);
/// }
/// assert!(ended.is_empty());
/// ```
#[derive(Debug)]
pub struct EndedQueue<T> {
    queue: VecDeque<T>,
}

impl<T> Default for EndedQueue<T> {
    fn default() -> Self {
        EndedQueue {
            queue: VecDeque::new(),
        }
    }
}

/// One turn of telling ended connections, [`ENDS_BUDGET`] long from its
/// start ([`EndedQueue::turn`]).
#[derive(Debug)]
pub struct EndsTurn {
    until: Instant,
    first: bool,
}

impl<T> EndedQueue<T> {
    /// Queues a connection that ended, behind those before it.
    pub fn push(&mut self, ended: T) {
        self.queue.push_back(ended);
    }

    /// No end waits to be told.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Ends waiting to be told.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Begins a turn of telling: [`next`](Self::next) hands ends out until
    /// [`ENDS_BUDGET`] has passed from now.
    pub fn turn(&self) -> EndsTurn {
        EndsTurn {
            until: Instant::now() + ENDS_BUDGET,
            first: true,
        }
    }

    /// The oldest end not yet told, while `turn` lasts (always the first
    /// of a turn, so every turn makes progress). `None` when the turn is
    /// over or nothing waits; the rest waits for the next turn.
    pub fn next(&mut self, turn: &mut EndsTurn) -> Option<T> {
        if !std::mem::replace(&mut turn.first, false) && Instant::now() >= turn.until {
            return None;
        }
        let ended = self.queue.pop_front();
        if self.queue.is_empty() && self.queue.capacity() > KEEP_AT_MOST {
            self.queue = VecDeque::new();
        }
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_go_oldest_first_and_a_turn_stops_at_its_budget_after_one() {
        let mut ended = EndedQueue::default();
        for n in 0..3 {
            ended.push(n);
        }
        let mut turn = ended.turn();
        assert_eq!(ended.next(&mut turn), Some(0));
        assert_eq!(ended.next(&mut turn), Some(1));

        // A turn that has run out still hands out its first end, then none.
        let mut spent = EndsTurn {
            until: Instant::now(),
            first: true,
        };
        assert_eq!(ended.next(&mut spent), Some(2));
        ended.push(3);
        assert_eq!(ended.next(&mut spent), None);
        assert_eq!(ended.len(), 1);
    }

    #[test]
    fn a_crowds_queue_gives_its_room_back_once_told() {
        let mut ended = EndedQueue::default();
        for n in 0..10_000 {
            ended.push(n);
        }
        let mut told = 0;
        while !ended.is_empty() {
            let mut turn = ended.turn();
            while ended.next(&mut turn).is_some() {
                told += 1;
            }
        }
        assert_eq!(told, 10_000);
        assert_eq!(ended.queue.capacity(), 0);
    }
}
