//! The two socket tasks every connection gets, server or client side: a
//! reader that forwards what arrives, and a writer that writes what the
//! state machine produced (or what of it the driver's [`Outlet`] could not
//! send at once). None of them knows anything about the protocol.

use async_channel::{Receiver, Sender, TrySendError};
use async_io::Timer;
use async_net::{Shutdown, TcpStream};
use bytes::Bytes;
use ferry_files::{OutputBatch, ReadBuffer};
use ferry_tls::link::LINGER_READ_LIMIT;
use futures_lite::{future, AsyncReadExt, AsyncWriteExt, Future};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Messages queued from the socket tasks to the task that owns the state
/// machine. Bounded so that a peer sending faster than the state machine
/// handles input is held back by TCP instead of by our memory.
pub(crate) const INPUT_QUEUE: usize = 64;

/// Segments queued for one writer. The state machine keeps everything
/// beyond this (and applies its own limits to it: a hub drops a slow
/// reader), and chat frames can still overtake queued file data there.
/// Room for 32, not a handful: a broadcast is one small segment per
/// message, and a writer woken for 4 at a time held fan-out to 0.3 million
/// deliveries per second, against 1.1 million with 32 (`ferry bench
/// fanout`, 1 to 100). Bytes are bounded too: see [`LENT_LIMIT`].
pub(crate) const WRITE_QUEUE: usize = 32;

/// Bytes a connection's writer may hold (queued, or taken and not yet
/// written) before its driver leaves the rest in the state machine, where
/// they count: a hub bounds the bytes its clients' queues hold together
/// and drops the biggest, and a writer that holds a member's bytes hides
/// them from that count. A room of 4,000 members that read slowly held
/// 1.1 GiB in writers' queues of 32 segments with no byte bound (`ferry
/// bench hostile --attacks large-room`). One segment is always taken, so a
/// frame bigger than this (a `MEMBERS` list) still goes out whole. The
/// same bound as the other servers' batches ([`OutputBatch::SERVER_LIMIT`],
/// the hub's own tolerance for a queue it never drops).
pub(crate) const LENT_LIMIT: usize = OutputBatch::SERVER_LIMIT;

/// How long a closed connection may take to write its last bytes before
/// its socket is dropped regardless.
pub(crate) const LINGER: Duration = Duration::from_secs(5);

/// How long, after our last bytes are written, to keep reading for the
/// peer's end of the connection. Dropping a socket that still receives
/// makes the kernel answer with a reset, and a reset can make the peer's
/// kernel throw away our last frames before the peer read them.
pub(crate) const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Waits for `writer` to finish (at most [`LINGER`]), then for `reader` to
/// see the peer's end (at most [`CLOSE_WAIT`]); the caller then drops both,
/// which closes the socket.
pub(crate) async fn wind_down(writer: impl Future<Output = ()>, reader: impl Future<Output = ()>) {
    future::or(writer, async {
        Timer::after(LINGER).await;
    })
    .await;
    future::or(reader, async {
        Timer::after(CLOSE_WAIT).await;
    })
    .await;
}

/// Reads `stream` until the peer's end or a failure and drops what
/// arrives: for a socket nobody reads any more that must still not be
/// closed while it receives (see [`CLOSE_WAIT`]). A peer that sends more
/// than [`LINGER_READ_LIMIT`] meanwhile floods rather than closes: its
/// socket is shut at once (a reset) instead of read for the whole wait.
pub(crate) async fn discard_until_end(mut stream: TcpStream) {
    let mut buf = [0; 4096];
    let mut discarded = 0usize;
    while let Ok(n @ 1..) = stream.read(&mut buf).await {
        discarded = discarded.saturating_add(n);
        if discarded > LINGER_READ_LIMIT {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        // A read that finds bytes does not wait: against a peer that
        // never stops sending, this loop would otherwise keep the thread
        // (and the hub) to itself, and its time limit from firing.
        future::yield_now().await;
    }
}

/// What a reader saw.
pub(crate) enum Received {
    /// Bytes read.
    Data(Bytes),
    /// The peer closed its side.
    End,
    /// Reading or writing failed: why.
    Broken(String),
}

/// Reads `stream` until end of file or an error and forwards each read as
/// `wrap(Received::Data(bytes))`, then the end or the failure once. Stops
/// early when nobody listens any more.
pub(crate) async fn read_loop<M>(
    mut stream: TcpStream,
    to: Sender<M>,
    wrap: impl Fn(Received) -> M,
) {
    let mut buf = ReadBuffer::new();
    let end = loop {
        let n = match stream.read(buf.space()).await {
            Ok(0) => break Received::End,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Received::Broken(format!("read failed: {e}")),
        };
        // One copy, sized to what arrived, so the buffer is reused and a
        // queued message never pins more than it carries.
        let data = Bytes::copy_from_slice(buf.filled(n));
        if to.send(wrap(Received::Data(data))).await.is_err() {
            return;
        }
    };
    let _ = to.send(wrap(end)).await;
}

/// Writes every segment received on `segments` to `stream`, in order.
///
/// When the driver found the queue full (in segments, or in bytes: see
/// [`LENT_LIMIT`]), the writer sends `room` after its next write, so the
/// driver knows when to feed it again. A failed write sends `broken(why)`
/// and ends.
/// Once the driver closes the queue and it is drained, the write side of
/// the socket is shut down so the peer sees a clean end.
pub(crate) async fn write_loop<M: Clone>(
    mut stream: TcpStream,
    writer: WriterEnd,
    to: Sender<M>,
    room: M,
    broken: impl FnOnce(String) -> M,
) {
    let mut batch = OutputBatch::new();
    while let Ok(segment) = writer.segments.recv().await {
        // The outlet writes itself only while this is clear; taking a
        // segment and setting it happen without a yield in between.
        writer.writing.store(true, Ordering::SeqCst);
        // What else is queued goes out in the same vectored write.
        batch.push(segment);
        while batch.len() < OutputBatch::MAX_BYTES {
            match writer.segments.try_recv() {
                Ok(segment) => batch.push(segment),
                Err(_) => break,
            }
        }
        while !batch.is_empty() {
            let written = match batch.single() {
                Some(one) => stream.write(one).await,
                None => stream.write_vectored(&batch.io_slices()).await,
            };
            let why = match written {
                Ok(0) => io::Error::from(io::ErrorKind::WriteZero),
                Ok(n) => {
                    batch.advance(n);
                    if writer.released(n) && to.send(room.clone()).await.is_err() {
                        return;
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => e,
            };
            let _ = to.send(broken(format!("write failed: {why}"))).await;
            return;
        }
        writer.writing.store(false, Ordering::SeqCst);
    }
    // Errors here change nothing: the socket is about to be dropped.
    let _ = stream.flush().await;
    let _ = stream.shutdown(Shutdown::Write);
}

/// Queues `segment` for a writer, counted in `lent`; gives it back if the
/// queue is full. A writer that is gone takes it, uncounted: its bytes are
/// dropped.
fn lend(segments: &Sender<Bytes>, lent: &AtomicUsize, segment: Bytes) -> Result<(), Bytes> {
    let len = segment.len();
    // Counted before the writer can see it, so that its release never
    // comes first.
    lent.fetch_add(len, Ordering::SeqCst);
    match segments.try_send(segment) {
        Ok(()) => Ok(()),
        Err(TrySendError::Closed(_)) => {
            lent.fetch_sub(len, Ordering::SeqCst);
            Ok(())
        }
        Err(TrySendError::Full(segment)) => {
            lent.fetch_sub(len, Ordering::SeqCst);
            Err(segment)
        }
    }
}

/// The driver's end of one writer: the bounded queue, the wake-up flag and
/// the one segment that did not fit, and the socket, which it writes to
/// itself while the writer is idle.
///
/// Handing every segment to the writer task cost each reply two task
/// switches (driver to writer, each a round through the executor) where
/// the driver, holding the bytes, can make the one `send`. It does so only
/// when the writer has nothing: its queue empty and no batch of its own
/// half written, so bytes never overtake each other. What the socket does
/// not take at once goes to the writer, which waits for room; a failed
/// write goes to the writer too, which meets the failure and reports it.
#[derive(Debug)]
pub(crate) struct Outlet {
    segments: Sender<Bytes>,
    wanted: Arc<AtomicBool>,
    /// Bytes handed to the writer and not yet written (or, for TLS, taken
    /// into its transport): at most [`LENT_LIMIT`] plus one segment.
    lent: Arc<AtomicUsize>,
    held: Option<Bytes>,
    // Written to directly on Unix only.
    #[cfg_attr(not(unix), allow(dead_code))]
    stream: TcpStream,
    /// Set by the writer while it holds bytes it has not finished writing.
    writing: Arc<AtomicBool>,
    /// Segments being written directly, kept for its allocation.
    #[cfg_attr(not(unix), allow(dead_code))]
    batch: OutputBatch,
}

/// The writer's end of an [`Outlet`], for [`write_loop`].
pub(crate) struct WriterEnd {
    pub(crate) segments: Receiver<Bytes>,
    wanted: Arc<AtomicBool>,
    lent: Arc<AtomicUsize>,
    writing: Arc<AtomicBool>,
}

impl WriterEnd {
    /// `n` bytes of the queue's segments left the writer (written, or
    /// taken by a TLS transport). Returns whether the driver waits for room
    /// and must be told: it found the queue full, and this may have made
    /// room.
    pub(crate) fn released(&self, n: usize) -> bool {
        // Before looking at `wanted`: a driver that sets it looks at
        // `lent` again afterwards, so one of the two sees the other.
        self.lent.fetch_sub(n, Ordering::SeqCst);
        self.wanted.swap(false, Ordering::SeqCst)
    }
}

/// What [`Outlet::feed`] left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fed {
    /// The source has nothing more; everything is written or with the
    /// writer.
    Drained,
    /// The writer's queue is full; it will say when it has room.
    Blocked,
}

impl Outlet {
    /// An outlet for `stream` and the end [`write_loop`] takes.
    pub(crate) fn new(stream: TcpStream) -> (Outlet, WriterEnd) {
        let (segments, rx) = async_channel::bounded(WRITE_QUEUE);
        let wanted = Arc::new(AtomicBool::new(false));
        let lent = Arc::new(AtomicUsize::new(0));
        let writing = Arc::new(AtomicBool::new(false));
        let outlet = Outlet {
            segments,
            wanted: wanted.clone(),
            lent: lent.clone(),
            held: None,
            stream,
            writing: writing.clone(),
            batch: OutputBatch::new(),
        };
        let end = WriterEnd {
            segments: rx,
            wanted,
            lent,
            writing,
        };
        (outlet, end)
    }

    /// Writes what `next` yields straight to the socket while the writer
    /// is idle and the socket takes it (only if `direct`), then moves the
    /// rest to the writer while its queue has room. Returns how it stopped
    /// and whether anything moved.
    ///
    /// A driver with more input waiting passes `direct: false`: the writer
    /// then runs after that input too and sends what it all produced in
    /// one write, where writing at once would make a system call per
    /// input and client (a room's broadcasts from several senders).
    ///
    /// A writer that is gone (its socket broke) takes everything: the
    /// segments are dropped, and the state machine learns of the break
    /// from the writer's own message.
    pub(crate) fn feed(
        &mut self,
        direct: bool,
        mut next: impl FnMut() -> Option<Bytes>,
    ) -> (Fed, bool) {
        let mut moved = direct && self.write_directly(&mut next);
        loop {
            if self.held.is_none() && self.lent.load(Ordering::SeqCst) >= LENT_LIMIT {
                // As below: the flag first, then a second look.
                self.wanted.store(true, Ordering::SeqCst);
                if self.lent.load(Ordering::SeqCst) >= LENT_LIMIT {
                    return (Fed::Blocked, moved);
                }
            }
            let Some(segment) = self.held.take().or_else(&mut next) else {
                return (Fed::Drained, moved);
            };
            match self.lend(segment) {
                Ok(()) => moved = true,
                Err(segment) => {
                    // Ask for a wake-up first, then look again: a writer that
                    // took a segment between the two sees the flag, one that
                    // took it before leaves room for this second try.
                    self.wanted.store(true, Ordering::SeqCst);
                    match self.lend(segment) {
                        Ok(()) => moved = true,
                        Err(segment) => {
                            self.held = Some(segment);
                            return (Fed::Blocked, moved);
                        }
                    }
                }
            }
        }
    }

    /// [`lend`] to this outlet's writer.
    fn lend(&self, segment: Bytes) -> Result<(), Bytes> {
        lend(&self.segments, &self.lent, segment)
    }

    /// Closes the queue after `last` (a TLS close_notify), which goes to
    /// the writer whether or not its queue has room: the future sends it
    /// once there is, and ends early if the writer is gone. Only after
    /// [`feed`](Self::feed) drained, so nothing is held back.
    pub(crate) fn finish_with(self, last: Bytes) -> impl Future<Output = ()> {
        debug_assert!(self.held.is_none(), "finished with a segment held back");
        let segments = self.segments;
        // Counted like any segment: the writer releases it.
        self.lent.fetch_add(last.len(), Ordering::SeqCst);
        async move {
            let _ = segments.send(last).await;
        }
    }

    /// The direct path of [`feed`](Self::feed): at most a queue's worth of
    /// segments at a time, so that what the socket leaves always fits in
    /// the writer's queue, which is empty here.
    #[cfg(unix)]
    fn write_directly(&mut self, next: &mut impl FnMut() -> Option<Bytes>) -> bool {
        let mut moved = false;
        while self.held.is_none()
            && self.segments.is_empty()
            && !self.segments.is_closed()
            && !self.writing.load(Ordering::SeqCst)
        {
            // What the socket leaves goes to the writer, lent: no more
            // than it may hold.
            let mut taken = 0;
            while taken < WRITE_QUEUE && self.batch.len() < LENT_LIMIT {
                let Some(segment) = next() else { break };
                self.batch.push(segment);
                taken += 1;
            }
            if self.batch.is_empty() {
                break;
            }
            moved = true;
            loop {
                match self.batch.send_without_blocking(&self.stream) {
                    Ok(_) if self.batch.is_empty() => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // Full (the writer waits for room) or failed (the
                    // writer meets the failure and reports it).
                    Err(_) => break,
                }
            }
            if !self.batch.is_empty() {
                for segment in self.batch.drain() {
                    // Fits: the queue was empty and this is at most its
                    // size. Closed: nobody writes any more.
                    let _ = lend(&self.segments, &self.lent, segment);
                }
                break;
            }
        }
        moved
    }

    /// Elsewhere the writer does all the writing.
    #[cfg(not(unix))]
    fn write_directly(&mut self, _: &mut impl FnMut() -> Option<Bytes>) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_net::TcpListener;

    /// A connected socket whose writer never runs: what the outlet lends
    /// stays lent until the test releases it.
    fn outlet() -> (Outlet, WriterEnd, TcpStream) {
        future::block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (ours, theirs) = future::zip(TcpStream::connect(addr), listener.accept()).await;
            let (outlet, end) = Outlet::new(ours.unwrap());
            (outlet, end, theirs.unwrap().0)
        })
    }

    #[test]
    fn an_outlet_lends_its_writer_no_more_than_the_limit() {
        let (mut outlet, end, _peer) = outlet();
        let segment = Bytes::from(vec![7; 16 * 1024]);
        let mut taken = 0;
        let (fed, moved) = outlet.feed(false, || {
            taken += 1;
            Some(segment.clone())
        });
        assert_eq!((fed, moved), (Fed::Blocked, true));
        assert_eq!(
            taken,
            LENT_LIMIT / segment.len(),
            "the rest stays with the source"
        );
        assert_eq!(end.segments.len(), taken);

        // Written: room for one more, and the driver is told.
        let written = end.segments.try_recv().unwrap();
        assert!(end.released(written.len()), "the driver waits for room");
        let (fed, _) = outlet.feed(false, || {
            taken += 1;
            Some(segment.clone())
        });
        assert_eq!(fed, Fed::Blocked);
        assert_eq!(taken, LENT_LIMIT / segment.len() + 1);
    }

    #[test]
    fn a_segment_over_the_limit_is_still_lent_whole_when_nothing_else_is() {
        let (mut outlet, end, _peer) = outlet();
        let mut source = vec![
            Bytes::from(vec![1; 300 * 1024]),
            Bytes::from_static(b"next"),
        ];
        source.reverse();
        let (fed, _) = outlet.feed(false, || source.pop());
        assert_eq!(fed, Fed::Blocked);
        assert_eq!(source.len(), 1, "the small one waits");
        let big = end.segments.try_recv().unwrap();
        assert_eq!(big.len(), 300 * 1024);
        assert!(end.released(big.len()));
        assert_eq!(outlet.feed(false, || source.pop()).0, Fed::Drained);
        assert_eq!(
            end.segments.try_recv().unwrap(),
            Bytes::from_static(b"next")
        );
    }
}
