//! One server connection between a non-blocking socket and a [`Hub`]: what
//! the event-loop servers (mio, tokio) do alike with each client, whatever
//! type its socket is and however its readiness is learnt.
//!
//! A loop keeps a [`Link`] beside each accepted socket and calls it when the
//! socket may be ready ([`Link::read`], [`Link::writable`]), when the hub
//! has output for the client ([`Link::flush`]) or closed it
//! ([`Link::close`]), and after each of these asks [`Link::finishing`]
//! whether the socket can go. The link does the protocol's part:
//!
//! * With a [`TlsServer`], the connection's first bytes decide what it
//!   speaks: a TLS ClientHello (`0x16`) runs through a [`Transport`]
//!   between the socket and the hub, anything else (the ferry preamble, a
//!   raw-text guest) takes the plain path. Until then the hub's output
//!   waits in the hub: sent in clear, it would break a TLS handshake. A
//!   client the hub turned away at connect hears why in clear, whatever it
//!   sent.
//! * Reads are budgeted ([`READ_BUDGET`]), so one socket cannot hold the
//!   loop; a TLS connection whose output the peer does not read stops being
//!   read until a write makes room.
//! * A closed client's last bytes go out, then a FIN, and the socket goes
//!   once the peer's FIN is seen; the loop drops it at the [`LINGER`]
//!   deadline at the latest, and the link gives up at once on a peer that
//!   floods meanwhile ([`LINGER_READ_LIMIT`]).
//! * When the socket ends (the peer's end of stream, a failed read or
//!   write) the link stops reading, and writing if it broke, but does not
//!   tell the hub: it says [`Link::ended`], and the loop must call
//!   [`Link::report_end`], at once or after serving the sockets that still
//!   talk. A link that ended and is never reported keeps its client in the
//!   hub until the hub's own timeouts close it.
//!
//! The loop keeps everything that depends on its runtime: registration,
//! readiness or wakers, timers (the linger deadlines), accepting, and the
//! order in which it drains the hub. The link tells it what to do next by
//! return values ([`Reading`], `bool`s) and by [`Link::blocked`].

use crate::{write_tls, Broke, Error, Kind, TlsServer, Transport};
use bytes::{Buf, BytesMut};
use ferry_core::{ClientId, Hub};
use ferry_files::{read_some, write_out, End, Flush, OutputBatch, ReadOutcome};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Socket bytes read for one connection per turn of a loop. Reading until
/// `WouldBlock` let one client whose socket never empties (a flood of PINGs
/// or empty frames) keep the loop from every other socket, the listener and
/// the timers for a minute. A socket left readable at its budget is read
/// again next turn, after everyone else's.
pub const READ_BUDGET: usize = 256 * 1024;

/// How long a closed connection may take to hand its last bytes to the
/// kernel and see the peer's end of stream. Past this it is dropped: a peer
/// that stopped reading must not hold a loop (or a shutdown) up.
pub const LINGER: Duration = Duration::from_secs(1);

/// Socket bytes a closed connection may send while it lingers; past this
/// it is dropped at once. After the close its input is only read to see
/// its end of stream, and a peer that floods instead (it never read its
/// `ERROR`, or does not care) had the loop read and discard tens of MiB for
/// the whole [`LINGER`]. A peer that reads its last frames and closes sends
/// far less than this first. Dropping the socket with input unread resets
/// the connection, which may destroy those frames: they had their chance.
pub const LINGER_READ_LIMIT: usize = 256 * 1024;

/// A non-blocking socket, as a [`Link`] uses it: reads and writes return
/// `WouldBlock` when the socket is not ready, and the loop learns of its
/// readiness its own way (mio events, tokio wakers).
pub trait Socket: Read + Write {
    /// Whether a read of `n` bytes into a buffer of `len` emptied the
    /// socket, so that reading again would only return `WouldBlock` and
    /// the link may stop without that call. Only where the next arrival
    /// surely raises a new readiness event; `false` is always safe.
    fn drained_by(&self, n: usize, len: usize) -> bool;

    /// Sends our FIN after the last bytes (`shutdown(Write)`); a failure is
    /// ignored, as the socket is closed soon after anyway.
    fn shutdown_write(&mut self);
}

/// What a loop does after [`Link::read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Reading {
    /// Nothing more to read until the socket's readiness says so: it is
    /// empty, it ended, or the link waits for room to write.
    Idle,
    /// A whole buffer went to the hub and more is probably waiting: drain
    /// the hub (its output to every client), then call `read` again with
    /// what is left of the budget. What one fast sender queues for everyone
    /// else then grows by one buffer at a time, well inside each client's
    /// outgoing limit, instead of by the whole backlog of its socket.
    Settle,
    /// The budget is spent with input maybe left: read it again next turn,
    /// after the other sockets (call [`Link::dequeue`] first).
    Unread,
}

/// What a connection speaks.
enum Layer {
    /// Clear text: socket bytes go to the hub as they are.
    Plain,
    /// A TLS server without the connection's first byte yet.
    Undecided(Arc<TlsServer>),
    /// Through TLS.
    Tls(Box<TlsConn>),
}

/// A TLS connection's state beside its socket.
struct TlsConn {
    transport: Transport,
    /// Socket bytes the transport did not take yet.
    unfed: BytesMut,
    /// The hub's bytes the transport did not take yet (up to
    /// [`OutputBatch::SERVER_LIMIT`] and a segment, beside the transport's
    /// own records).
    plaintext: OutputBatch,
    /// The transport refused input until its output is written: the socket
    /// is not read until a write makes room ([`Link::writable`]).
    stalled: bool,
    /// Feeds in a row that took nothing.
    idle_feeds: u8,
    /// close_notify was queued; nothing more goes in.
    closed: bool,
}

/// One accepted client socket's protocol state: see the [module
/// docs](self).
pub struct Link {
    id: ClientId,
    /// For the log when its TLS fails.
    peer: SocketAddr,
    layer: Layer,
    /// Output taken from the hub and not yet written (plain connections):
    /// up to [`OutputBatch::SERVER_LIMIT`] and a segment, outside the
    /// hub's count of what its clients' queues hold.
    pending: OutputBatch,
    /// The last write met a full socket; its writability says when to go on.
    blocked: bool,
    /// The peer's end of stream was seen (or nothing more can be read).
    eof: bool,
    /// The hub closed this client: finish by this instant at the latest.
    closing: Option<Instant>,
    /// Socket bytes read and dropped since the hub closed the client.
    discarded: usize,
    /// It sent more than [`LINGER_READ_LIMIT`] while closing: drop it now.
    abandoned: bool,
    /// Its read budget ran out with input left: the loop queued it.
    unread: bool,
    /// Our side was shut down (FIN sent), or nothing can be written.
    shut: bool,
    /// The socket ended (the peer's end of stream, a failed read or
    /// write) and the hub is not told yet: see [`Link::ended`].
    unreported: Option<End>,
    /// The loop queued this link to [`report_end`](Link::report_end).
    end_queued: bool,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .field("blocked", &self.blocked)
            .field("eof", &self.eof)
            .field("closing", &self.closing)
            .field("shut", &self.shut)
            .finish_non_exhaustive()
    }
}

impl Link {
    /// The link of client `id` (from [`Hub::connect_from`]) at `peer`. With
    /// `tls`, its first bytes decide TLS or plain; without, the hub's bytes
    /// go out from the start.
    pub fn new(id: ClientId, peer: SocketAddr, tls: Option<Arc<TlsServer>>) -> Link {
        Link {
            id,
            peer,
            layer: match tls {
                Some(server) => Layer::Undecided(server),
                None => Layer::Plain,
            },
            pending: OutputBatch::with_limit(OutputBatch::SERVER_LIMIT),
            blocked: false,
            eof: false,
            closing: None,
            discarded: 0,
            abandoned: false,
            unread: false,
            shut: false,
            unreported: None,
            end_queued: false,
        }
    }

    /// Whether the last write met a full socket: the loop watches for the
    /// socket's writability and then calls [`writable`](Link::writable).
    pub fn blocked(&self) -> bool {
        self.blocked
    }

    /// Whether the link is queued for a read next turn ([`Reading::Unread`]).
    pub fn is_unread(&self) -> bool {
        self.unread
    }

    /// The loop takes the link off its queue of unread sockets, to read it.
    pub fn dequeue(&mut self) {
        self.unread = false;
    }

    /// The loop's turn ran out before this link's socket event was served:
    /// it is to be read next turn ([`is_unread`](Link::is_unread) until
    /// [`dequeue`](Link::dequeue)). `true` if the loop must queue it, `false`
    /// if it waits in the loop's queue already.
    pub fn defer(&mut self) -> bool {
        !std::mem::replace(&mut self.unread, true)
    }

    /// The linger deadline, once the hub closed the client.
    pub fn deadline(&self) -> Option<Instant> {
        self.closing
    }

    /// Reads the socket, spending `budget` (start each turn with
    /// [`READ_BUDGET`]), and gives the hub what came; see [`Reading`] for
    /// what the loop does next. `buf` is scratch space the loop lends every
    /// link; a whole buffer read is the sign that more waits.
    pub fn read(
        &mut self,
        hub: &mut Hub,
        now: Instant,
        socket: &mut impl Socket,
        buf: &mut [u8],
        budget: &mut usize,
    ) -> Reading {
        match self.layer {
            Layer::Plain => self.read_plain(hub, now, socket, buf, budget),
            Layer::Undecided(_) => self.read_first(hub, now, socket, buf, budget),
            Layer::Tls(_) => self.read_tls(hub, now, socket, buf, budget, 0),
        }
    }

    /// The budget is spent: queued for the next turn, once.
    fn queue(&mut self) -> Reading {
        if self.unread {
            Reading::Idle
        } else {
            self.unread = true;
            Reading::Unread
        }
    }

    /// `n` bytes read after the close were dropped; past
    /// [`LINGER_READ_LIMIT`] the link gives up on the peer.
    fn discard(&mut self, n: usize) -> bool {
        self.discarded = self.discarded.saturating_add(n);
        if self.discarded > LINGER_READ_LIMIT {
            self.abandoned = true;
            self.eof = true;
            self.shut = true;
            self.pending.clear();
        }
        self.abandoned
    }

    /// Nothing more can be read or written.
    fn broken(&mut self, hub: &mut Hub, now: Instant, reason: &str) {
        self.unreported = None;
        self.eof = true;
        self.shut = true;
        self.pending.clear();
        hub.handle_broken(self.id, now, reason);
    }

    /// The loop could not watch the socket any more (a failed
    /// registration): nothing more can be read or written.
    pub fn fail(&mut self, hub: &mut Hub, now: Instant, reason: &str) {
        self.broken(hub, now, reason);
    }

    fn read_plain(
        &mut self,
        hub: &mut Hub,
        now: Instant,
        socket: &mut impl Socket,
        buf: &mut [u8],
        budget: &mut usize,
    ) -> Reading {
        loop {
            if self.eof {
                return Reading::Idle;
            }
            if *budget == 0 {
                return self.queue();
            }
            match read_some(socket, buf) {
                ReadOutcome::Data(n) => {
                    *budget = budget.saturating_sub(n);
                    if self.closing.is_some() {
                        // Only read to see the end of stream; the closed
                        // connection ignores it.
                        if self.discard(n) {
                            return Reading::Idle;
                        }
                    } else {
                        hub.handle_input(self.id, now, &buf[..n]);
                        if n == buf.len() {
                            return Reading::Settle;
                        }
                    }
                    if socket.drained_by(n, buf.len()) {
                        return Reading::Idle;
                    }
                }
                ReadOutcome::WouldBlock => return Reading::Idle,
                ReadOutcome::Eof => {
                    self.end(End::Eof);
                    return Reading::Idle;
                }
                ReadOutcome::Failed(e) => {
                    self.end(End::Broken(format!("read failed: {e}")));
                    return Reading::Idle;
                }
            }
        }
    }

    /// A TLS server's first read of a connection: its first byte decides
    /// TLS or plain, and the bytes read go on down that path.
    fn read_first(
        &mut self,
        hub: &mut Hub,
        now: Instant,
        socket: &mut impl Socket,
        buf: &mut [u8],
        budget: &mut usize,
    ) -> Reading {
        let Layer::Undecided(server) = &self.layer else {
            return Reading::Idle;
        };
        let server = server.clone();
        if hub.is_closed(self.id) {
            // Turned away at connect (the per-address limit, a ban): its
            // ERROR goes out in clear whatever the client sent, even a
            // ClientHello, as no TLS can start for it; what it sent is
            // read and dropped while the close lingers.
            self.layer = Layer::Plain;
            return self.read_plain(hub, now, socket, buf, budget);
        }
        let n = match read_some(socket, buf) {
            ReadOutcome::Data(n) => n,
            ReadOutcome::WouldBlock => return Reading::Idle,
            ReadOutcome::Eof => {
                // Gone before its first byte: the hub's last words (if
                // any) go out in clear, there is no TLS to put them in.
                self.layer = Layer::Plain;
                self.end(End::Eof);
                return Reading::Idle;
            }
            ReadOutcome::Failed(e) => {
                self.layer = Layer::Plain;
                self.end(End::Broken(format!("read failed: {e}")));
                return Reading::Idle;
            }
        };
        *budget = budget.saturating_sub(n);
        let first = &buf[..n];
        if Kind::of_first_byte(first[0]) == Kind::Tls {
            if let Ok(transport) = Transport::accept(first, Some(&server)) {
                self.layer = Layer::Tls(Box::new(TlsConn {
                    transport,
                    unfed: BytesMut::new(),
                    plaintext: OutputBatch::with_limit(OutputBatch::SERVER_LIMIT),
                    stalled: false,
                    idle_feeds: 0,
                    closed: false,
                }));
                return self.read_tls(hub, now, socket, buf, budget, n);
            }
        }
        self.layer = Layer::Plain;
        if server.is_required() {
            // Nothing it sent is acted on; reading on only sees its end.
            hub.refuse_unencrypted(self.id, now, first);
        } else {
            hub.handle_input(self.id, now, first);
        }
        // What the hub held while undecided goes out now.
        self.flush(hub, now, socket);
        if socket.drained_by(n, buf.len()) {
            return Reading::Idle;
        }
        self.read_plain(hub, now, socket, buf, budget)
    }

    /// The TLS read path: socket bytes into the transport, its plaintext
    /// to the hub, its answers out. `fresh` bytes at the start of `buf`
    /// were read already and go in first. The transport is fed straight
    /// from `buf`; only what it does not take is kept (`unfed`), and the
    /// socket is not read again until that went in. Stops reading while the
    /// transport's output is full and the socket will not take it
    /// (`stalled`); [`Link::writable`] resumes it.
    fn read_tls(
        &mut self,
        hub: &mut Hub,
        now: Instant,
        socket: &mut impl Socket,
        buf: &mut [u8],
        budget: &mut usize,
        mut fresh: usize,
    ) -> Reading {
        let mut drained = false;
        // Where the `fresh` bytes still to feed start in `buf`.
        let mut start = 0;
        // The last read filled `buf`: more waits in the socket.
        let mut full = false;
        loop {
            let Layer::Tls(tls) = &mut self.layer else {
                return Reading::Idle;
            };
            if self.eof || tls.stalled {
                return Reading::Idle;
            }
            if fresh == 0 && tls.unfed.is_empty() {
                if drained {
                    return Reading::Idle;
                }
                if *budget == 0 {
                    return self.queue();
                }
                match read_some(socket, buf) {
                    ReadOutcome::Data(n) => {
                        *budget = budget.saturating_sub(n);
                        drained = socket.drained_by(n, buf.len());
                        full = n == buf.len();
                        if self.closing.is_some() || tls.closed {
                            // Only read to see the end of stream.
                            if self.discard(n) {
                                return Reading::Idle;
                            }
                            continue;
                        }
                        fresh = n;
                        start = 0;
                    }
                    ReadOutcome::WouldBlock => return Reading::Idle,
                    ReadOutcome::Eof => {
                        self.eof = true;
                        if self.closing.is_none() && !tls.closed {
                            if let Err(e) = tls.transport.feed_eof() {
                                self.tls_failed(hub, now, socket, &e);
                                return Reading::Idle;
                            }
                            // What came before the end still reaches the hub.
                            self.deliver(hub, now);
                        }
                        self.end(End::Eof);
                        return Reading::Idle;
                    }
                    ReadOutcome::Failed(e) => {
                        self.end(End::Broken(format!("read failed: {e}")));
                        return Reading::Idle;
                    }
                }
            }
            // What the transport does not take of `fresh` stays in `buf`
            // while the loop feeds on; it is copied aside only when the
            // transport takes nothing more, as `buf` is lent for this call.
            let fed = if fresh > 0 {
                let fed = tls.transport.feed(&buf[start..start + fresh]);
                if let Ok(taken) = fed {
                    start += taken;
                    fresh -= taken;
                    if taken == 0 {
                        tls.unfed.extend_from_slice(&buf[start..start + fresh]);
                        fresh = 0;
                    }
                }
                fed
            } else {
                let fed = tls.transport.feed(&tls.unfed);
                if let Ok(taken) = fed {
                    tls.unfed.advance(taken);
                }
                fed
            };
            let taken = match fed {
                Ok(taken) => taken,
                Err(e) => {
                    self.tls_failed(hub, now, socket, &e);
                    return Reading::Idle;
                }
            };
            let stuck = taken == 0 && !tls.unfed.is_empty();
            tls.idle_feeds = if stuck {
                tls.idle_feeds.saturating_add(1)
            } else {
                0
            };
            self.deliver(hub, now);
            // The handshake's answers, the hub's replies, and what the hub
            // held until the handshake ended go out now.
            self.flush(hub, now, socket);
            let Layer::Tls(tls) = &mut self.layer else {
                return Reading::Idle;
            };
            if tls.transport.peer_closed() && !self.eof {
                // close_notify: the client ended the session.
                self.end(End::Eof);
                return Reading::Idle;
            }
            // Its output is full and the socket takes no more: read no
            // more until there is room, so a peer that sends without
            // reading is held to a record or two. A transport that refuses
            // input for any other reason is left alone too, rather than
            // spun on; the hub's timers end such a client.
            if stuck && (self.blocked || tls.idle_feeds > 1) {
                tls.stalled = true;
            }
            if full && fresh == 0 {
                return Reading::Settle;
            }
        }
    }

    /// Hands the transport's plaintext to the hub where rustls holds it,
    /// with no copy of ours (unless the hub closed the client, which then
    /// ignores input anyway).
    fn deliver(&mut self, hub: &mut Hub, now: Instant) {
        let Layer::Tls(tls) = &mut self.layer else {
            return;
        };
        loop {
            // Only misuse fails here; the next feed reports it.
            let chunk = match tls.transport.plaintext() {
                Ok(chunk) if !chunk.is_empty() => chunk,
                _ => return,
            };
            let n = chunk.len();
            if self.closing.is_none() {
                hub.handle_input(self.id, now, chunk);
            }
            tls.transport.consume_plaintext(n);
        }
    }

    /// Ends a connection whose TLS failed: the alert goes out only if the
    /// socket takes it at once (a peer that sends garbage and reads
    /// nothing must not hold anything up), and the hub learns why, with
    /// the client's address.
    fn tls_failed(&mut self, hub: &mut Hub, now: Instant, socket: &mut impl Socket, error: &Error) {
        if let Layer::Tls(tls) = &mut self.layer {
            let mut alert = Vec::new();
            tls.transport.take_outgoing(&mut alert);
            if !alert.is_empty() {
                let _ = socket.write(&alert);
            }
            tls.closed = true;
        }
        let reason = format!("TLS with {}: {error}", self.peer);
        self.broken(hub, now, &reason);
    }

    /// Writes what the hub has for the client until the socket is full
    /// (then [`blocked`](Link::blocked)).
    pub fn flush(&mut self, hub: &mut Hub, now: Instant, socket: &mut impl Socket) {
        if self.blocked || self.shut {
            // Waiting for room (or nothing can be written): trying now
            // would only meet a full socket again.
            return;
        }
        let id = self.id;
        let written = match &mut self.layer {
            // Until the first bytes tell plain from TLS, the hub's bytes
            // wait in the hub: sent in clear, they would break a TLS
            // handshake. The first read flushes once it knows.
            Layer::Undecided(_) => return,
            Layer::Plain => write_out(socket, &mut self.pending, || hub.poll_transmit(id)),
            Layer::Tls(tls) => match write_tls(
                socket,
                &mut tls.transport,
                &mut tls.plaintext,
                tls.closed,
                || hub.poll_transmit(id),
            ) {
                Ok(flush) => Ok(flush),
                Err(Broke::Io(e)) => Err(e),
                Err(Broke::Tls(e)) => return self.tls_failed(hub, now, socket, &e),
            },
        };
        match written {
            Ok(flush) => self.blocked = flush == Flush::Blocked,
            Err(e) => self.end(End::Broken(format!("write failed: {e}"))),
        }
    }

    /// The socket ended: nothing more is read (nor, if it broke, written),
    /// and the hub hears of it when the loop calls
    /// [`report_end`](Link::report_end). Telling it here would make the
    /// client leave its room (a `LEFT` to every member, written at once,
    /// perhaps failing for the next member gone) inside this read or
    /// write, and a crowd gone at once would cost the square of its room
    /// before the loop looked at anything else.
    fn end(&mut self, end: End) {
        self.eof = true;
        if matches!(end, End::Broken(_)) {
            self.shut = true;
            self.pending.clear();
        }
        if !matches!(self.unreported, Some(End::Broken(_))) {
            self.unreported = Some(end);
        }
    }

    /// The socket ended (its peer's end of stream, or a failed read or
    /// write) and the hub must hear of it through
    /// [`report_end`](Link::report_end). A loop calls that after the
    /// sockets that still talk are served (many peers gone at once each
    /// cost their room a `LEFT`), or at once.
    pub fn ended(&self) -> bool {
        self.unreported.is_some()
    }

    /// Whether the loop must queue this link to call
    /// [`report_end`](Link::report_end): `true` once for each end, `false`
    /// while it waits in the loop's queue already or nothing ended.
    pub fn queue_end(&mut self) -> bool {
        self.unreported.is_some() && !std::mem::replace(&mut self.end_queued, true)
    }

    /// Tells the hub how the socket [`ended`](Link::ended), once.
    pub fn report_end(&mut self, hub: &mut Hub, now: Instant) {
        self.end_queued = false;
        match self.unreported.take() {
            Some(End::Eof) => hub.handle_eof(self.id, now),
            Some(End::Broken(reason)) => self.broken(hub, now, &reason),
            None => {}
        }
    }

    /// The socket has room again: what waits is written, and a TLS read
    /// that stopped for room may go on. Returns whether it may (the loop
    /// then reads, even without a readable event).
    pub fn writable(&mut self, hub: &mut Hub, now: Instant, socket: &mut impl Socket) -> bool {
        self.blocked = false;
        self.flush(hub, now, socket);
        match &mut self.layer {
            Layer::Tls(tls) if tls.stalled && !self.blocked => {
                tls.stalled = false;
                tls.idle_feeds = 0;
                true
            }
            _ => false,
        }
    }

    /// The hub closed the client: its last bytes go out (best effort), and
    /// the loop drops the socket by the returned deadline at the latest
    /// (`None` if the close had begun already). Then ask
    /// [`finishing`](Link::finishing).
    pub fn close(
        &mut self,
        hub: &mut Hub,
        now: Instant,
        socket: &mut impl Socket,
    ) -> Option<Instant> {
        if self.closing.is_some() {
            return None;
        }
        if matches!(self.layer, Layer::Undecided(_)) {
            // Closed before its first byte (turned away at connect, or
            // silent until the handshake timeout): the hub's last words go
            // out in clear, there is no TLS to put them in.
            self.layer = Layer::Plain;
        }
        let deadline = now + LINGER;
        self.closing = Some(deadline);
        self.flush(hub, now, socket);
        Some(deadline)
    }

    /// Whether a closed client's socket can go now (then the loop drops it
    /// and calls [`Hub::remove`]). Its output written, it gets a FIN, and
    /// it goes once the peer's end of stream has been seen too: waiting for
    /// the peer's FIN avoids a reset that could destroy the last bytes (an
    /// `ERROR` frame) before the peer reads them. A peer that floods
    /// instead goes at once ([`LINGER_READ_LIMIT`]).
    pub fn finishing(&mut self, hub: &mut Hub, now: Instant, socket: &mut impl Socket) -> bool {
        if self.abandoned {
            return true;
        }
        if self.closing.is_none() || self.blocked {
            return false;
        }
        if let Layer::Tls(tls) = &mut self.layer {
            if !tls.closed && !self.shut {
                // close_notify tells the client the end is deliberate.
                tls.closed = true;
                tls.transport.close();
                self.flush(hub, now, socket);
                if self.blocked {
                    return false;
                }
            }
        }
        if self.pending.is_empty() && !self.shut {
            self.shut = true;
            socket.shutdown_write();
        }
        self.shut && self.eof
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::HubConfig;
    use std::io;
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::SystemTime;

    /// A peer that sends without end and reads everything.
    #[derive(Default)]
    struct Flood {
        read: usize,
        shut: bool,
    }

    impl Read for Flood {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            buf.fill(b'x');
            self.read += buf.len();
            Ok(buf.len())
        }
    }

    impl Write for Flood {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Socket for Flood {
        fn drained_by(&self, _: usize, _: usize) -> bool {
            false
        }

        fn shutdown_write(&mut self) {
            self.shut = true;
        }
    }

    fn closed_client(tls: Option<Arc<TlsServer>>) -> (Hub, Link, Flood, Instant) {
        let now = Instant::now();
        let mut hub = Hub::new(HubConfig::default(), now);
        let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 40000));
        let id = hub.connect_from(now, IpAddr::V4(Ipv4Addr::LOCALHOST));
        let mut link = Link::new(id, peer, tls);
        let mut flood = Flood::default();
        hub.shutdown(now, "closing for the test");
        assert!(hub.is_closed(id));
        assert!(link.close(&mut hub, now, &mut flood).is_some());
        assert!(
            !link.finishing(&mut hub, now, &mut flood),
            "no FIN seen yet"
        );
        assert!(flood.shut, "our FIN went out after the last bytes");
        (hub, link, flood, now)
    }

    /// Turns of a loop, each with a fresh budget, until the link lets its
    /// socket go; how many bytes it read by then.
    fn read_until_finished(
        hub: &mut Hub,
        link: &mut Link,
        flood: &mut Flood,
        now: Instant,
    ) -> usize {
        let mut buf = vec![0; 64 * 1024];
        for _ in 0..1000 {
            let mut budget = READ_BUDGET;
            loop {
                match link.read(hub, now, flood, &mut buf, &mut budget) {
                    Reading::Settle => continue,
                    Reading::Unread => link.dequeue(),
                    Reading::Idle => {}
                }
                break;
            }
            if link.finishing(hub, now, flood) {
                return flood.read;
            }
        }
        panic!("still reading after {} bytes", flood.read);
    }

    /// A peer that sent `input` and is gone: every write fails.
    struct Gone {
        input: Vec<u8>,
    }

    impl Read for Gone {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.input.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.input.len());
            buf[..n].copy_from_slice(&self.input[..n]);
            self.input.drain(..n);
            Ok(n)
        }
    }

    impl Write for Gone {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Socket for Gone {
        fn drained_by(&self, _: usize, _: usize) -> bool {
            false
        }

        fn shutdown_write(&mut self) {}
    }

    #[test]
    fn a_failed_write_reaches_the_hub_when_the_loop_reports_it_and_once() {
        let now = Instant::now();
        let mut hub = Hub::new(HubConfig::default(), now);
        let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 40000));
        let id = hub.connect_from(now, IpAddr::V4(Ipv4Addr::LOCALHOST));
        let mut link = Link::new(id, peer, None);
        let mut client =
            ferry_core::Connection::client(ferry_core::ClientConfig::new("alice"), now);
        let mut input = Vec::new();
        while let Some(bytes) = client.poll_transmit() {
            input.extend_from_slice(&bytes);
        }
        let mut gone = Gone { input };
        let mut buf = vec![0; 64 * 1024];
        let mut budget = READ_BUDGET;
        let _ = link.read(&mut hub, now, &mut gone, &mut buf, &mut budget);
        // The hub answered the HELLO; writing the answer fails.
        link.flush(&mut hub, now, &mut gone);
        assert!(link.ended());
        assert!(!hub.is_closed(id), "the hub was told inside the write");
        // Nothing more is read or written meanwhile.
        let mut budget = READ_BUDGET;
        assert_eq!(
            link.read(&mut hub, now, &mut gone, &mut buf, &mut budget),
            Reading::Idle
        );
        // Queued once by the loop, however often it asks.
        assert!(link.queue_end());
        assert!(!link.queue_end());
        link.report_end(&mut hub, now);
        assert!(!link.ended());
        assert!(!link.queue_end(), "nothing left to report");
        assert!(hub.is_closed(id));
        let reasons: Vec<String> = std::iter::from_fn(|| hub.poll_event())
            .filter_map(|event| match event {
                ferry_core::HubEvent::Closed { reason, .. } => Some(reason),
                _ => None,
            })
            .collect();
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(reasons[0].contains("write failed"), "{reasons:?}");
        link.report_end(&mut hub, now);
        assert!(hub.poll_event().is_none(), "told twice");
    }

    /// A peer that sent `input` and hung up; it reads what it is sent.
    struct HungUp {
        input: Vec<u8>,
    }

    impl Read for HungUp {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.input.len());
            buf[..n].copy_from_slice(&self.input[..n]);
            self.input.drain(..n);
            Ok(n)
        }
    }

    impl Write for HungUp {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Socket for HungUp {
        fn drained_by(&self, _: usize, _: usize) -> bool {
            false
        }

        fn shutdown_write(&mut self) {}
    }

    #[test]
    fn a_hang_up_reaches_the_hub_after_what_came_before_it_when_the_loop_reports_it() {
        let now = Instant::now();
        let mut hub = Hub::new(HubConfig::default(), now);
        let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 40000));
        let id = hub.connect_from(now, IpAddr::V4(Ipv4Addr::LOCALHOST));
        let mut link = Link::new(id, peer, None);
        let mut client = ferry_core::Connection::client(ferry_core::ClientConfig::new("bob"), now);
        let mut input = Vec::new();
        while let Some(bytes) = client.poll_transmit() {
            input.extend_from_slice(&bytes);
        }
        let mut socket = HungUp { input };
        let mut buf = vec![0; 64 * 1024];
        let mut budget = READ_BUDGET;
        let _ = link.read(&mut hub, now, &mut socket, &mut buf, &mut budget);
        assert!(link.ended());
        // The HELLO before the end was handled; the end waits.
        let joined = std::iter::from_fn(|| hub.poll_event())
            .any(|event| matches!(event, ferry_core::HubEvent::Joined { .. }));
        assert!(joined, "what came before the end reached the hub");
        assert!(!hub.is_closed(id), "the hub was told inside the read");
        link.report_end(&mut hub, now);
        assert!(!link.ended());
        assert!(hub.is_closed(id));
        let closed = std::iter::from_fn(|| hub.poll_event())
            .any(|event| matches!(event, ferry_core::HubEvent::Closed { by_peer: true, .. }));
        assert!(closed, "closed by its peer");
    }

    #[test]
    fn a_closed_client_that_floods_is_dropped_after_the_linger_read_limit() {
        let (mut hub, mut link, mut flood, now) = closed_client(None);
        let read = read_until_finished(&mut hub, &mut link, &mut flood, now);
        assert!(read > LINGER_READ_LIMIT, "{read}");
        assert!(read <= LINGER_READ_LIMIT + 64 * 1024, "{read}");
    }

    #[test]
    fn a_client_turned_away_before_its_first_byte_is_held_to_the_same_limit() {
        let dir = tempfile::tempdir().expect("a scratch folder");
        let identity = crate::Identity::load_or_create(&dir.path().join("tls"), SystemTime::now())
            .expect("an identity");
        let server = TlsServer::new(&identity).expect("a TLS server");
        let (mut hub, mut link, mut flood, now) = closed_client(Some(Arc::new(server)));
        let read = read_until_finished(&mut hub, &mut link, &mut flood, now);
        assert!(read <= LINGER_READ_LIMIT + 64 * 1024, "{read}");
    }
}
