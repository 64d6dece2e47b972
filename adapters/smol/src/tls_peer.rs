//! A server's TLS connection as the hub task drives it: the hub task reads
//! its socket through the [`Intake`](crate::intake::Intake), like a plain
//! one's, feeds the bytes to the connection's [`Transport`] and hands the
//! plaintext straight to the hub; it encrypts the hub's segments itself and
//! gives the connection's writer records, which it writes like any bytes.
//!
//! A reader task that decrypted and sent the plaintext to the hub task over
//! a channel, and a writer task that encrypted, cost every TLS message
//! three task switches where a plain one costs one: a chat round trip
//! through smol took 1.7x its clear-text time (`ferry bench rtt`, pinned to
//! one CPU), against 1.2x since, as on the other runtimes.

use bytes::{Bytes, BytesMut};
use ferry_core::{ClientId, Hub};
use ferry_tls::Transport;
use std::time::Instant;

/// Room for a segment's records over its plaintext: a record's header and
/// tag (22 bytes) for every 16 KiB, and some.
fn records_room(plaintext: usize) -> usize {
    plaintext + plaintext / 512 + 64
}

/// One TLS connection's transport, and what the hub task keeps beside it.
pub(crate) struct TlsPeer {
    transport: Transport,
    /// Socket bytes read but not taken yet: the transport's output was
    /// full. While any wait, the socket is not read (see
    /// [`input`](TlsPeer::input)), so this is at most one read, and a peer
    /// that sends without reading is held to a record or two.
    unfed: BytesMut,
    /// The part of a hub segment the transport has not taken: before the
    /// handshake ends it holds only so much plaintext.
    pending: Option<Bytes>,
    /// How failures begin: "TLS with {peer}".
    label: String,
    /// The transport failed and the hub was told: nothing more is read or
    /// encrypted, only its alert goes out.
    failed: bool,
    /// The peer's end was told to the hub.
    ended: bool,
}

impl TlsPeer {
    pub(crate) fn new(transport: Transport, label: String) -> TlsPeer {
        TlsPeer {
            transport,
            unfed: BytesMut::new(),
            pending: None,
            label,
            failed: false,
            ended: false,
        }
    }

    /// Feeds socket bytes to the transport and hands the plaintext to the
    /// hub as `id`'s input. Returns false if the transport's output is full
    /// and the rest of `data` waits here: read the socket no more until
    /// [`resume`](TlsPeer::resume) says so. A failure or the peer's
    /// close_notify is told to the hub.
    pub(crate) fn input(&mut self, hub: &mut Hub, id: ClientId, now: Instant, data: &[u8]) -> bool {
        let mut rest = data;
        while !self.failed && !self.ended {
            let taken = match self.transport.feed(rest) {
                Ok(taken) => taken,
                Err(e) => {
                    self.fail(hub, id, now, &e);
                    break;
                }
            };
            rest = &rest[taken..];
            let passed = self.pass_plaintext(hub, id, now);
            if self.transport.peer_closed() {
                self.end(hub, id, now);
                break;
            }
            if rest.is_empty() {
                break;
            }
            if taken == 0 && passed == 0 {
                self.unfed.extend_from_slice(rest);
                return false;
            }
        }
        true
    }

    /// Feeds what [`input`](TlsPeer::input) held back, now that output was
    /// taken. `None` if nothing was held; else whether the socket may be
    /// read again.
    pub(crate) fn resume(&mut self, hub: &mut Hub, id: ClientId, now: Instant) -> Option<bool> {
        if self.unfed.is_empty() {
            return None;
        }
        let unfed = std::mem::take(&mut self.unfed);
        Some(self.input(hub, id, now, &unfed))
    }

    /// The socket read end of file: a truncated handshake is a failure,
    /// anything else the peer's end.
    pub(crate) fn input_end(&mut self, hub: &mut Hub, id: ClientId, now: Instant) {
        if self.failed || self.ended {
            return;
        }
        match self.transport.feed_eof() {
            Ok(()) => {
                self.pass_plaintext(hub, id, now);
                self.end(hub, id, now);
            }
            Err(e) => self.fail(hub, id, now, &e),
        }
    }

    /// Whether records wait that no segment made (the handshake's
    /// answers, an alert): the writer should be fed even though the hub
    /// has nothing.
    pub(crate) fn wants_write(&self) -> bool {
        self.transport.wants_write()
    }

    /// The next records for the socket: first what the transport made of
    /// itself, then the encryption of the next segment `segments` yields.
    /// `None` when there is nothing to send for now: the segments are
    /// exhausted, the handshake holds plaintext back, or the transport
    /// failed.
    pub(crate) fn records(&mut self, mut segments: impl FnMut() -> Option<Bytes>) -> Option<Bytes> {
        let mut out = Vec::new();
        loop {
            self.transport.take_outgoing(&mut out);
            if !out.is_empty() || self.failed {
                break;
            }
            let segment = match self.pending.take() {
                Some(segment) => segment,
                None => segments()?,
            };
            out.reserve(records_room(segment.len()));
            match self.transport.write_plaintext(&segment) {
                Ok(n) if n < segment.len() => {
                    self.pending = Some(segment.slice(n..));
                    self.transport.take_outgoing(&mut out);
                    break;
                }
                Ok(_) => {}
                // The transport failed, and the hub was told when it did;
                // or it is closing, after which nothing is sent.
                Err(_) => {
                    self.failed = true;
                    self.transport.take_outgoing(&mut out);
                    break;
                }
            }
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }

    /// Ends our side: the close_notify records to send last, if the
    /// transport can still make them.
    pub(crate) fn close(&mut self) -> Option<Bytes> {
        if self.failed {
            return None;
        }
        self.transport.close();
        let mut out = Vec::new();
        self.transport.take_outgoing(&mut out);
        (!out.is_empty()).then(|| Bytes::from(out))
    }

    /// Hands every plaintext byte waiting in the transport to the hub, in
    /// place; returns how many.
    fn pass_plaintext(&mut self, hub: &mut Hub, id: ClientId, now: Instant) -> usize {
        let mut passed = 0;
        // Only misuse fails here; the next feed reports it.
        while let Ok(chunk) = self.transport.plaintext() {
            if chunk.is_empty() {
                break;
            }
            let n = chunk.len();
            hub.handle_input(id, now, chunk);
            self.transport.consume_plaintext(n);
            passed += n;
        }
        passed
    }

    fn end(&mut self, hub: &mut Hub, id: ClientId, now: Instant) {
        if !self.ended {
            self.ended = true;
            hub.handle_eof(id, now);
        }
    }

    fn fail(&mut self, hub: &mut Hub, id: ClientId, now: Instant, error: &ferry_tls::Error) {
        self.failed = true;
        hub.handle_broken(id, now, &format!("{}: {error}", self.label));
    }
}
