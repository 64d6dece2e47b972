//! The outgoing byte queue of one connection.
//!
//! Two lanes: control (chat, credits, handshake) and file data. Control frames
//! are coalesced into one buffer and always go out before queued data, so a
//! big file never holds up a chat line by more than the frame already being
//! written. Data payloads are queued as their own `Bytes`, never copied.

use crate::frame::{encode_data_header, Frame, TransferId, DATA_OVERHEAD};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;

/// Shared frames up to this size are copied into the control lane (see
/// [`Outbox::push_shared`]): copying that much costs less than a reference
/// count, a queue entry and a write segment of its own.
const COPY_AT_MOST: usize = 1024;

/// The most an empty control lane reserves for the copies to come.
const CONTROL_AT_MOST: usize = 4096;

/// A control lane allocation this small is kept when its bytes are handed
/// out; a larger one goes with them (see [`Outbox::pop`]).
const KEEP_AT_MOST: usize = 256;

/// Copies into the control lane stop growing its allocation past this:
/// the lane is queued as it is and a new one begins. Grown by doubling,
/// one buffer for a member that stopped reading held up to twice what it
/// queued (a room of 4,000: 487 MB for the hub's count of 256 MiB, `ferry
/// bench hostile --attacks large-room`), and each doubling copied it all.
const CONTROL_CHUNK: usize = 64 * 1024;

#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// Encoded control frames not yet handed out.
    control: BytesMut,
    /// Bytes of the control lane the last time it was handed out.
    last_control: usize,
    /// Control frames encoded elsewhere and shared (broadcasts), queued in
    /// order with whatever was encoded into `control` before them, each
    /// with the memory it holds (a lane queued whole holds its allocation).
    shared: VecDeque<(Bytes, usize)>,
    shared_bytes: usize,
    /// What the `shared` entries hold.
    shared_held: usize,
    /// The file-data lane: `DATA` frames and the `DONE` that must follow them.
    data: VecDeque<DataItem>,
    data_bytes: usize,
    /// The payload of a data frame whose head was handed out: it must go next.
    in_progress: Option<Bytes>,
}

#[derive(Debug)]
struct DataItem {
    id: TransferId,
    head: Bytes,
    payload: Bytes,
}

impl Outbox {
    /// Encodes `frame` into the control lane.
    pub(crate) fn push(&mut self, frame: &Frame) {
        // Frames built by the state machines always fit: every string in them
        // was either received within the frame limit or checked on the way in.
        if let Err(e) = frame.encode(&mut self.control) {
            debug_assert!(false, "unencodable {} frame: {e}", frame.name());
        }
    }

    /// Queues an already encoded control frame (a broadcast shared by many
    /// connections). A small one is copied behind the frames before it, so
    /// that a client's chat goes out as one contiguous write however many
    /// messages it holds, and costs no reference count per member; a large
    /// one is shared, never copied.
    pub(crate) fn push_shared(&mut self, bytes: &Bytes) {
        if bytes.len() <= COPY_AT_MOST {
            if self.control.capacity() == 0 {
                // As much as the last write took (a burst of chat in a
                // busy room: `ferry bench fanout`, 10 -> 100), within
                // bounds: a member of a large room gets about one frame
                // per write, and 4 KiB for each of thousands of members,
                // freed after every write, cost more in page faults than
                // the frames' copies (`cargo bench -p ferry-core --bench
                // room`).
                let hint = self.last_control.clamp(KEEP_AT_MOST, CONTROL_AT_MOST);
                self.control.reserve(bytes.len().max(hint));
            } else if self.control.len() + bytes.len() > self.control.capacity() {
                if self.control.capacity() > CONTROL_CHUNK / 2 {
                    // Growing would double it past the chunk: queue it as
                    // it is (nearly full, as it must grow) and begin anew.
                    self.flush_control();
                    self.control.reserve(bytes.len().max(CONTROL_AT_MOST));
                } else {
                    self.grow_control(bytes.len());
                }
            }
            self.control.extend_from_slice(bytes);
            return;
        }
        self.flush_control();
        self.queue_shared(bytes.clone(), bytes.len());
    }

    /// Doubles the control lane's room (at least `more` bytes more), to
    /// at most [`CONTROL_CHUNK`]. Not left to `BytesMut`, whose growth
    /// doubles the whole allocation it was split from: 32,692 bytes of
    /// room became 65,556 after a write had split the lane (found by
    /// `what_an_outbox_holds_is_counted_and_stays_close_to_its_bytes`).
    fn grow_control(&mut self, more: usize) {
        let wanted = (2 * self.control.capacity())
            .max(self.control.len() + more)
            .min(CONTROL_CHUNK);
        let mut grown = BytesMut::with_capacity(wanted);
        grown.extend_from_slice(&self.control);
        self.control = grown;
    }

    fn flush_control(&mut self) {
        if self.control.is_empty() {
            return;
        }
        if self.control.capacity() > 2 * self.control.len() {
            // Mostly room (a few frames before a large broadcast): a copy
            // of what it holds is queued and the allocation stays for the
            // next frames, rather than queue kilobytes to hold a few bytes.
            let pending = Bytes::copy_from_slice(&self.control);
            self.control.clear();
            let len = pending.len();
            self.queue_shared(pending, len);
        } else {
            let held = self.control.capacity();
            let pending = std::mem::take(&mut self.control).freeze();
            self.queue_shared(pending, held);
        }
    }

    fn queue_shared(&mut self, bytes: Bytes, held: usize) {
        self.shared_bytes += bytes.len();
        self.shared_held += held;
        self.shared.push_back((bytes, held));
    }

    /// Queues a `DATA` frame carrying `payload` without copying it.
    pub(crate) fn push_data(&mut self, id: TransferId, offset: u64, payload: Bytes) {
        let mut head = BytesMut::with_capacity(crate::frame::HEADER_LEN + DATA_OVERHEAD);
        encode_data_header(&mut head, id, offset, payload.len());
        self.push_data_item(id, head.freeze(), payload);
    }

    /// Queues a frame in the data lane, behind the transfer's data (`DONE`).
    pub(crate) fn push_after_data(&mut self, id: TransferId, frame: &Frame) {
        let mut head = BytesMut::new();
        if let Err(e) = frame.encode(&mut head) {
            debug_assert!(false, "unencodable {} frame: {e}", frame.name());
        }
        self.push_data_item(id, head.freeze(), Bytes::new());
    }

    fn push_data_item(&mut self, id: TransferId, head: Bytes, payload: Bytes) {
        self.data_bytes += head.len() + payload.len();
        self.data.push_back(DataItem { id, head, payload });
    }

    /// The next bytes to write, control lane first.
    pub(crate) fn pop(&mut self) -> Option<Bytes> {
        if let Some(payload) = self.in_progress.take() {
            self.data_bytes -= payload.len();
            return Some(payload);
        }
        if let Some((bytes, held)) = self.shared.pop_front() {
            self.shared_bytes -= bytes.len();
            self.shared_held -= held;
            return Some(bytes);
        }
        if !self.control.is_empty() {
            if self.control.capacity() <= KEEP_AT_MOST {
                // Split off: the allocation stays for the next frames and is
                // reused once these bytes are written (a PONG, an ack):
                // no allocation per round trip.
                return Some(self.control.split().freeze());
            }
            // Taken whole: an idle connection then holds no large buffer
            // once its last bytes are written.
            self.last_control = self.control.len();
            return Some(std::mem::take(&mut self.control).freeze());
        }
        let item = self.data.pop_front()?;
        self.data_bytes -= item.head.len();
        if !item.payload.is_empty() {
            self.in_progress = Some(item.payload);
        }
        Some(item.head)
    }

    /// Bytes of control frames waiting.
    pub(crate) fn control_len(&self) -> usize {
        self.control.len() + self.shared_bytes
    }

    /// Memory the control frames waiting hold: their bytes and the room
    /// their buffers keep beyond them (at least
    /// [`control_len`](Self::control_len)).
    pub(crate) fn control_held(&self) -> usize {
        self.control.capacity() + self.shared_held
    }

    /// Bytes of data-lane frames waiting.
    pub(crate) fn data_len(&self) -> usize {
        self.data_bytes
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.control_len() == 0 && self.data.is_empty() && self.in_progress.is_none()
    }

    /// Drops every queued data-lane frame of transfer `id` that has not
    /// started going out (after a cancel).
    pub(crate) fn discard_data(&mut self, id: TransferId) {
        let before = self.data.len();
        let mut dropped = 0;
        self.data.retain(|item| {
            let keep = item.id != id;
            if !keep {
                dropped += item.head.len() + item.payload.len();
            }
            keep
        });
        if self.data.len() != before {
            self.data_bytes -= dropped;
        }
    }

    /// Forgets everything queued that has not started going out: the
    /// payload of a frame whose head was handed out stays, as the stream
    /// would make no sense without it.
    pub(crate) fn discard_unsent(&mut self) {
        let in_progress = self.in_progress.take();
        *self = Outbox::default();
        if let Some(payload) = in_progress {
            self.data_bytes = payload.len();
            self.in_progress = Some(payload);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Everything `outbox` hands out, in order.
    fn drain(outbox: &mut Outbox) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(bytes) = outbox.pop() {
            out.extend_from_slice(&bytes);
        }
        out
    }

    #[test]
    fn a_member_that_never_reads_holds_little_more_than_its_frames() {
        let mut outbox = Outbox::default();
        let mut expected = Vec::new();
        for n in 0..20_000u32 {
            // A JOINED with a long name: copied into the control lane.
            let frame = Bytes::from(vec![(n % 251) as u8; 150 + (n % 7) as usize]);
            outbox.push_shared(&frame);
            expected.extend_from_slice(&frame);
            let (len, held) = (outbox.control_len(), outbox.control_held());
            assert!(held >= len, "held {held} < queued {len}");
            // The lane being filled may keep up to half of itself free;
            // the lanes queued before it are full.
            assert!(
                held <= len + CONTROL_CHUNK / 2 + 2 * CONTROL_AT_MOST,
                "held {held} for {len} queued after {n} frames"
            );
        }
        assert!(outbox.control.capacity() <= CONTROL_CHUNK);
        assert_eq!(drain(&mut outbox), expected);
        assert_eq!(outbox.control_len(), 0);
        assert_eq!(outbox.shared_held, 0);
    }

    #[test]
    fn a_few_frames_before_a_large_broadcast_are_not_queued_with_their_room() {
        let mut outbox = Outbox::default();
        let mut expected = Vec::new();
        let large = Bytes::from(vec![7u8; 2 * COPY_AT_MOST]);
        for _ in 0..100 {
            let small = Bytes::from_static(b"small frame");
            outbox.push_shared(&small);
            outbox.push_shared(&large);
            expected.extend_from_slice(&small);
            expected.extend_from_slice(&large);
        }
        let (len, held) = (outbox.control_len(), outbox.control_held());
        // The lane's one allocation is kept for the next frames, not queued
        // a hundred times.
        assert!(
            held <= len + CONTROL_AT_MOST,
            "held {held} for {len} queued"
        );
        assert_eq!(drain(&mut outbox), expected);
        assert_eq!(outbox.shared_held, 0);
    }

    /// What a test does to an outbox: queue a copied or a shared frame of
    /// `len` bytes, or many copied ones (a member that stopped reading),
    /// hand the next bytes out, or drop what is unsent.
    #[derive(Debug, Clone)]
    enum Step {
        Frame(usize),
        Burst(usize, usize),
        Pop,
        DiscardUnsent,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (1..=COPY_AT_MOST).prop_map(Step::Frame),
            1 => (COPY_AT_MOST + 1..4 * COPY_AT_MOST).prop_map(Step::Frame),
            1 => (1..400usize, 1..=COPY_AT_MOST).prop_map(|(n, len)| Step::Burst(n, len)),
            2 => Just(Step::Pop),
            1 => Just(Step::DiscardUnsent),
        ]
    }

    proptest! {
        /// Whatever the mix of frames and writes, the bytes come out in
        /// order, what the outbox says it holds is what its buffers hold,
        /// and no buffer holds much more than its bytes.
        #[test]
        fn what_an_outbox_holds_is_counted_and_stays_close_to_its_bytes(
            steps in proptest::collection::vec(step(), 1..400)
        ) {
            let mut outbox = Outbox::default();
            let mut queued: Vec<u8> = Vec::new();
            let mut out: Vec<u8> = Vec::new();
            for (n, step) in steps.into_iter().enumerate() {
                match step {
                    Step::Frame(len) => {
                        let frame = Bytes::from(vec![(n % 251) as u8; len]);
                        outbox.push_shared(&frame);
                        queued.extend_from_slice(&frame);
                    }
                    Step::Burst(count, len) => {
                        for i in 0..count {
                            let frame = Bytes::from(vec![((n + i) % 251) as u8; len]);
                            outbox.push_shared(&frame);
                            queued.extend_from_slice(&frame);
                        }
                    }
                    Step::Pop => {
                        if let Some(bytes) = outbox.pop() {
                            out.extend_from_slice(&bytes);
                        }
                    }
                    Step::DiscardUnsent => {
                        outbox.discard_unsent();
                        // Control frames are never begun and half sent:
                        // what was not handed out is gone whole.
                        queued.truncate(out.len());
                    }
                }
                let entries: usize = outbox.shared.iter().map(|(_, held)| held).sum();
                prop_assert_eq!(outbox.shared_held, entries);
                prop_assert_eq!(
                    outbox.shared_bytes,
                    outbox.shared.iter().map(|(bytes, _)| bytes.len()).sum::<usize>()
                );
                prop_assert_eq!(outbox.control_held(), outbox.control.capacity() + entries);
                prop_assert!(outbox.control_held() >= outbox.control_len());
                prop_assert!(outbox.control.capacity() <= CONTROL_CHUNK);
                for (bytes, held) in &outbox.shared {
                    prop_assert!(*held <= 2 * bytes.len().max(KEEP_AT_MOST));
                }
                prop_assert_eq!(out.len() + outbox.control_len(), queued.len());
            }
            out.extend(drain(&mut outbox));
            prop_assert_eq!(out, queued);
        }
    }
}
