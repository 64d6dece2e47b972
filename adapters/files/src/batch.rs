//! Output segments gathered for one vectored write.

use bytes::{Buf, Bytes};
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

/// Segments from a connection's `poll_transmit`, written together with one
/// `write_vectored` call where a plain loop would make one `write` each.
///
/// A `DATA` frame comes out of the core as two segments, its header and its
/// payload; written apart, with `TCP_NODELAY` set, every chunk also cost a
/// tiny TCP segment of its own. The batch takes segments only up to its
/// limit ([`MAX_BYTES`](Self::MAX_BYTES), or a server's
/// [`SERVER_LIMIT`](Self::SERVER_LIMIT)): the rest stays queued in the
/// core, where a chat frame can still overtake file data.
#[derive(Debug)]
pub struct OutputBatch {
    segments: VecDeque<Bytes>,
    bytes: usize,
    /// `fill` stops once this many bytes wait.
    limit: usize,
}

impl Default for OutputBatch {
    fn default() -> Self {
        OutputBatch::with_limit(Self::MAX_BYTES)
    }
}

impl OutputBatch {
    /// Stop taking segments once this many bytes wait (a client's one
    /// connection, where bigger writes are fewer system calls).
    pub const MAX_BYTES: usize = 256 * 1024;
    /// At most this many segments go into one write.
    pub const MAX_SEGMENTS: usize = 64;
    /// What a server's batch takes for one client. Bytes taken from a hub
    /// leave its count of what its clients' queues hold (it bounds them
    /// together and drops the biggest), so a server holds this much per
    /// client outside that count, plus at most one segment (a `MEMBERS`
    /// list still goes whole). It is the hub's own tolerance for a queue
    /// it never drops: with [`MAX_BYTES`](Self::MAX_BYTES), 4,000 members
    /// of a room whose sockets are full could hold 1 GiB that the hub's
    /// bound on all queues never sees.
    pub const SERVER_LIMIT: usize = 64 * 1024;

    /// An empty batch that takes up to [`MAX_BYTES`](Self::MAX_BYTES).
    pub fn new() -> Self {
        OutputBatch::default()
    }

    /// An empty batch that takes segments until `limit` bytes wait (at
    /// least one segment, whatever its size).
    pub fn with_limit(limit: usize) -> Self {
        OutputBatch {
            segments: VecDeque::new(),
            bytes: 0,
            limit,
        }
    }

    /// Nothing waits to be written.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.bytes
    }

    /// Takes segments from `next` until the batch is full (its limit,
    /// [`MAX_BYTES`](Self::MAX_BYTES) or the one given to
    /// [`with_limit`](Self::with_limit), reached or passed by the last
    /// segment, or [`MAX_SEGMENTS`](Self::MAX_SEGMENTS)) or `next` has
    /// none. Returns whether anything waits to be written.
    pub fn fill(&mut self, mut next: impl FnMut() -> Option<Bytes>) -> bool {
        while self.bytes < self.limit && self.segments.len() < Self::MAX_SEGMENTS {
            let Some(segment) = next() else { break };
            self.push(segment);
        }
        !self.is_empty()
    }

    /// Adds one segment at the end.
    pub fn push(&mut self, segment: Bytes) {
        if !segment.is_empty() {
            self.bytes += segment.len();
            self.segments.push_back(segment);
        }
    }

    /// The one segment waiting, if just one does. Write it with a plain
    /// `write` rather than `write_vectored`: on a `std` or `mio` socket that
    /// is `send`, which skips the file-layer work `writev` does (a chat
    /// message or a `PONG` is one segment).
    pub fn single(&self) -> Option<&[u8]> {
        match self.segments.as_slices() {
            ([one], []) | ([], [one]) => Some(one),
            _ => None,
        }
    }

    /// The waiting bytes as slices for `write_vectored`, in order, without
    /// allocating.
    pub fn io_slices(&self) -> IoSlices<'_> {
        let mut slices = IoSlices {
            slices: [IoSlice::new(&[]); Self::MAX_SEGMENTS],
            len: 0,
        };
        for (slot, segment) in slices.slices.iter_mut().zip(&self.segments) {
            *slot = IoSlice::new(segment);
            slices.len += 1;
        }
        slices
    }

    /// Drops the first `written` bytes, as a write reported.
    pub fn advance(&mut self, mut written: usize) {
        self.bytes -= written.min(self.bytes);
        while written > 0 {
            let Some(front) = self.segments.front_mut() else {
                return;
            };
            if written < front.len() {
                front.advance(written);
                return;
            }
            written -= front.len();
            self.segments.pop_front();
        }
    }

    /// Takes the waiting segments out, in order, leaving the batch empty
    /// (for handing what a write did not take to someone else).
    pub fn drain(&mut self) -> impl Iterator<Item = Bytes> + '_ {
        self.bytes = 0;
        self.segments.drain(..)
    }

    /// Forgets everything (the socket broke).
    pub fn clear(&mut self) {
        self.segments.clear();
        self.bytes = 0;
    }

    /// One `write_vectored` of what waits; returns what it returned, after
    /// dropping the written bytes. `Ok(0)` with bytes waiting is
    /// [`io::ErrorKind::WriteZero`].
    pub fn write_once(&mut self, out: &mut impl Write) -> io::Result<usize> {
        if self.is_empty() {
            return Ok(0);
        }
        let written = match self.single() {
            Some(one) => out.write(one)?,
            None => out.write_vectored(&self.io_slices())?,
        };
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        self.advance(written);
        Ok(written)
    }

    /// One write of what waits that returns `WouldBlock` rather than wait
    /// for room, whether `socket` is blocking or not (`MSG_DONTWAIT`), and
    /// raises no `SIGPIPE` for a peer that is gone, as `std`'s own writes
    /// ask. Otherwise as [`write_once`](Self::write_once).
    ///
    /// For a thread or task that writes only when it can do so at once and
    /// leaves the rest to a writer of its own.
    #[cfg(unix)]
    pub fn send_without_blocking(&mut self, socket: &impl std::os::fd::AsFd) -> io::Result<usize> {
        self.write_once(&mut DontWait(socket2::SockRef::from(socket)))
    }

    /// Writes everything that waits, blocking as needed.
    pub fn write_all(&mut self, out: &mut impl Write) -> io::Result<()> {
        while !self.is_empty() {
            match self.write_once(out) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// A socket whose writes return `WouldBlock` rather than wait, and raise
/// no `SIGPIPE` (see [`OutputBatch::send_without_blocking`]).
#[cfg(unix)]
struct DontWait<'s>(socket2::SockRef<'s>);

#[cfg(unix)]
impl DontWait<'_> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const FLAGS: std::ffi::c_int = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const FLAGS: std::ffi::c_int = libc::MSG_DONTWAIT;
}

#[cfg(unix)]
impl Write for DontWait<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.send_with_flags(buf, Self::FLAGS)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.send_vectored_with_flags(bufs, Self::FLAGS)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An [`OutputBatch`]'s waiting segments as [`IoSlice`]s, held on the
/// stack.
#[derive(Debug)]
pub struct IoSlices<'a> {
    slices: [IoSlice<'a>; OutputBatch::MAX_SEGMENTS],
    len: usize,
}

impl<'a> std::ops::Deref for IoSlices<'a> {
    type Target = [IoSlice<'a>];

    fn deref(&self) -> &Self::Target {
        &self.slices[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts at most `step` bytes per call.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let mut left = self.step;
            for buf in bufs {
                let n = buf.len().min(left);
                self.out.extend_from_slice(&buf[..n]);
                left -= n;
                if left == 0 {
                    break;
                }
            }
            Ok(self.step - left)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_keep_the_order_and_every_byte() {
        let segments: Vec<Bytes> = (0..20u8)
            .map(|i| Bytes::from(vec![i; usize::from(i) * 7 + 1]))
            .collect();
        let expected: Vec<u8> = segments.iter().flat_map(|s| s.to_vec()).collect();
        for step in [1, 3, 50, 1000] {
            let mut source = segments.clone().into_iter();
            let mut batch = OutputBatch::new();
            let mut out = Trickle {
                out: Vec::new(),
                step,
            };
            while batch.fill(|| source.next()) {
                batch.write_once(&mut out).unwrap();
            }
            assert_eq!(out.out, expected, "step {step}");
            assert_eq!(batch.len(), 0);
        }
    }

    #[test]
    fn fill_stops_at_the_byte_limit() {
        let mut batch = OutputBatch::new();
        let mut taken = 0;
        batch.fill(|| {
            taken += 1;
            Some(Bytes::from(vec![0; 100 * 1024]))
        });
        assert_eq!(taken, 3);
        assert_eq!(batch.len(), 300 * 1024);
    }

    #[test]
    fn a_server_batch_takes_its_own_limit_and_one_segment_past_it_whole() {
        let mut batch = OutputBatch::with_limit(OutputBatch::SERVER_LIMIT);
        let mut taken = 0;
        batch.fill(|| {
            taken += 1;
            Some(Bytes::from(vec![0; 10 * 1024]))
        });
        // 60 KiB waits after six: the seventh passes the limit and is the last.
        assert_eq!(taken, 7);
        assert_eq!(batch.len(), 70 * 1024);

        let mut big = OutputBatch::with_limit(OutputBatch::SERVER_LIMIT);
        let members = Bytes::from(vec![0; 4 * OutputBatch::SERVER_LIMIT]);
        let mut offered = [members.clone(), members].into_iter();
        assert!(big.fill(|| offered.next()));
        assert_eq!(big.len(), 4 * OutputBatch::SERVER_LIMIT);
        assert_eq!(offered.len(), 1, "the second stays with whoever gave it");
    }

    #[test]
    fn drain_hands_over_what_a_partial_write_left_in_order() {
        let mut batch = OutputBatch::new();
        for text in ["first ", "second ", "third"] {
            batch.push(Bytes::from(text));
        }
        let mut out = Trickle {
            out: Vec::new(),
            step: 8,
        };
        batch.write_once(&mut out).unwrap();
        let rest: Vec<u8> = batch.drain().flat_map(|s| s.to_vec()).collect();
        assert_eq!(out.out, b"first se");
        assert_eq!(rest, b"cond third");
        assert!(batch.is_empty());
        assert_eq!(batch.len(), 0);
    }
}
