//! Peer-to-peer chat over datagrams (UDP): one ferry frame per datagram.
//!
//! A [`Peer`] is one end of a two-party chat over an unreliable transport
//! that may drop, duplicate and reorder datagrams. Every message carries the
//! sender's session (a random number the application picks per run) and a
//! sequence number; the receiver delivers each message once, in the order
//! it arrives, and acknowledges it. It remembers what arrived from the
//! peer's [`SESSIONS_KEPT`] most recent sessions, so a restart of the peer
//! does not make its earlier messages new again. The sender retransmits what is not
//! acknowledged, with a doubling timeout, and after a few tries reports the
//! message lost: nothing disappears silently. Datagrams that are oversize,
//! malformed or not datagram frames are dropped and counted by reason.
//!
//! A datagram that is not a ferry frame at all ([`classify`]) is a line of
//! text from a raw-text peer, such as the Qt UDP chat ferry grew from: it
//! is shown once, sanitised ([`PeerEvent::RawLine`]), and from then on,
//! until a ferry message arrives again (or throughout, with
//! [`PeerConfig::raw`]), the peer sends its own lines as bare UTF-8
//! datagrams, without acknowledgements (`docs/PROTOCOL.md` §9.6).
//!
//! Like [`Connection`](crate::Connection), it does no I/O: datagrams and
//! time come in, datagrams, events and a deadline go out.
//!
//! ```
//! use ferry_core::datagram::{Peer, PeerConfig, PeerEvent};
//! use std::time::Instant;
//!
//! let now = Instant::now();
//! let mut alice = Peer::new(PeerConfig::new("alice"), now, 1);
//! let mut bob = Peer::new(PeerConfig::new("bob"), now, 2);
//! alice.send(now, "hi bob").unwrap();
//! while let Some(datagram) = alice.poll_transmit() {
//!     bob.handle_datagram(now, &datagram);
//! }
//! match bob.poll_event() {
//!     Some(PeerEvent::Message { from, text, .. }) => assert_eq!((&*from, &*text), ("alice", "hi bob")),
//!     other => panic!("{other:?}"),
//! }
//! ```

use crate::error::{Malformed, Misuse};
use crate::frame::{put_text, Reader, HEADER_LEN};
use crate::guest::sanitize;
use crate::text::Text;
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// Sessions of the peer whose messages a [`Peer`] remembers: a message
/// from any of them is delivered once, however the sessions alternate. A
/// session heard from less recently than the last `SESSIONS_KEPT` is
/// forgotten (about 40 bytes each are kept).
pub const SESSIONS_KEPT: usize = 16;

/// Largest datagram sent or accepted: under the smallest common path MTU
/// once IP and UDP headers are added, so that nothing is fragmented.
pub const MAX_DATAGRAM: usize = 1200;

/// Longest text of a raw-text datagram, in bytes: only the first
/// `RAW_TEXT_MAX` bytes of a datagram are read (the adapters receive at
/// most one byte more), and the text, once invalid UTF-8 is replaced and
/// controls removed, is cut to this length at a character boundary.
pub const RAW_TEXT_MAX: usize = MAX_DATAGRAM;

/// What a received datagram is (`docs/PROTOCOL.md` §9.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// A ferry frame (which may still be malformed, oversize or of a type
    /// that is not a datagram's): at least 5 bytes, the first of any
    /// value, the next four a big-endian length
    /// equal to the datagram's length minus 5; or, for a datagram over
    /// [`MAX_DATAGRAM`] (which a receiver reads only in part), a length at
    /// least that and below 64 KiB.
    Frame,
    /// Anything else: a line of text from a raw-text peer.
    RawText,
}

/// Tells a ferry frame from raw text (see [`Kind`]). A frame's length
/// field is below 64 KiB, so it starts with two zero bytes: a line of text
/// passes for a frame only if its second and third bytes are NUL. A text
/// line starting with `@` (0x40) or `A` (0x41) is text.
pub fn classify(datagram: &[u8]) -> Kind {
    let Some((header, body)) = datagram.split_first_chunk::<HEADER_LEN>() else {
        return Kind::RawText;
    };
    // Any type byte: the length field alone tells a frame from text (its
    // first two bytes are NUL in any frame a UDP datagram can hold, and
    // typed text has no NUL), so the split does not move when a later
    // version defines a new frame type.
    let declared = u64::from(u32::from_be_bytes([
        header[1], header[2], header[3], header[4],
    ]));
    let body_len = body.len() as u64;
    // An oversize frame arrives cut to the receiver's buffer: its length
    // field says more than arrived, and still starts with two zero bytes.
    let cut_frame = datagram.len() > MAX_DATAGRAM && declared >= body_len && declared < 1 << 16;
    if declared == body_len || cut_frame {
        Kind::Frame
    } else {
        Kind::RawText
    }
}

/// The text of a raw-text datagram and whether it was cut: at most
/// [`RAW_TEXT_MAX`] bytes read, invalid UTF-8 replaced by U+FFFD, line
/// breaks at the end dropped and those inside made spaces, escape
/// sequences and controls removed ([`sanitize`]), then cut to
/// [`RAW_TEXT_MAX`] bytes.
pub fn raw_text(datagram: &[u8]) -> (Text, bool) {
    let mut cut = datagram.len() > RAW_TEXT_MAX;
    let read = &datagram[..datagram.len().min(RAW_TEXT_MAX)];
    let lossy = String::from_utf8_lossy(read);
    let line = lossy
        .trim_end_matches(['\r', '\n'])
        .replace("\r\n", " ")
        .replace(['\r', '\n'], " ");
    let mut text = sanitize(&line);
    if text.len() > RAW_TEXT_MAX {
        let mut end = RAW_TEXT_MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        cut = true;
    }
    (Text::from(text), cut)
}

/// Frame types of the datagram transport (`0x40-0x4F`, never valid on TCP).
pub mod datagram_type {
    /// A chat message.
    pub const CHAT: u8 = 0x40;
    /// Acknowledges one message.
    pub const ACK: u8 = 0x41;
    /// First type of the range reserved for datagrams.
    pub const FIRST: u8 = 0x40;
    /// Last type of the range reserved for datagrams.
    pub const LAST: u8 = 0x4F;
}

/// One datagram frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Datagram {
    /// `CHAT`: message `seq` of the sender's `session`.
    Chat {
        /// The sender's session, fixed for one run of the sender.
        session: u64,
        /// Counts up from 0 within the session.
        seq: u64,
        /// The sender's name.
        from: Text,
        /// The message.
        text: Text,
    },
    /// `ACK`: message `seq` of `session` (the receiver of this ACK's own
    /// session) arrived.
    Ack {
        /// The session of the acknowledged message.
        session: u64,
        /// Its sequence number.
        seq: u64,
    },
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DropReason {
    /// Longer than [`MAX_DATAGRAM`].
    Oversize,
    /// Not one whole, well-formed frame of a known datagram type.
    Malformed,
    /// A frame type of the TCP protocol, or an unknown reserved type.
    NotDatagram,
    /// A message already delivered (or too old to tell).
    Duplicate,
    /// An acknowledgement for a message not waiting for one.
    StaleAck,
    /// Failed authentication in an encrypted chat (`docs/PROTOCOL.md`
    /// §9.7): a wrong secret, a tampered or replayed datagram, or a
    /// clear-text frame or raw text arriving at an encrypted peer. The
    /// core's [`Peer`] never reports it itself: the encryption layer
    /// beneath it (the `ferry-noise` crate) does, through
    /// [`DropCounts::add`].
    Unauthenticated,
}

/// Counts of dropped datagrams, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropCounts {
    /// See [`DropReason::Oversize`].
    pub oversize: u64,
    /// See [`DropReason::Malformed`].
    pub malformed: u64,
    /// See [`DropReason::NotDatagram`].
    pub not_datagram: u64,
    /// See [`DropReason::Duplicate`].
    pub duplicate: u64,
    /// See [`DropReason::StaleAck`].
    pub stale_ack: u64,
    /// See [`DropReason::Unauthenticated`].
    pub unauthenticated: u64,
}

impl DropCounts {
    /// Counts one drop for `reason`.
    pub fn add(&mut self, reason: DropReason) {
        let counter = match reason {
            DropReason::Oversize => &mut self.oversize,
            DropReason::Malformed => &mut self.malformed,
            DropReason::NotDatagram => &mut self.not_datagram,
            DropReason::Duplicate => &mut self.duplicate,
            DropReason::StaleAck => &mut self.stale_ack,
            DropReason::Unauthenticated => &mut self.unauthenticated,
        };
        *counter += 1;
    }

    /// All drops.
    pub fn total(&self) -> u64 {
        self.oversize
            + self.malformed
            + self.not_datagram
            + self.duplicate
            + self.stale_ack
            + self.unauthenticated
    }
}

impl Datagram {
    /// Appends the datagram's bytes (header and body) to `out`.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), Misuse> {
        let start = out.len();
        out.put_bytes(0, HEADER_LEN);
        let frame_type = match self {
            Datagram::Chat {
                session,
                seq,
                from,
                text,
            } => {
                out.put_u64(*session);
                out.put_u64(*seq);
                put_text(out, from)?;
                put_text(out, text)?;
                datagram_type::CHAT
            }
            Datagram::Ack { session, seq } => {
                out.put_u64(*session);
                out.put_u64(*seq);
                datagram_type::ACK
            }
        };
        let body = out.len() - start - HEADER_LEN;
        out[start] = frame_type;
        // A datagram body is far below 4 GiB: the caller keeps it under
        // MAX_DATAGRAM.
        out[start + 1..start + HEADER_LEN].copy_from_slice(&(body as u32).to_be_bytes());
        Ok(())
    }

    /// Decodes one datagram: exactly one frame, its length matching the
    /// datagram's, at most [`MAX_DATAGRAM`] bytes.
    pub fn decode(datagram: &[u8]) -> Result<Datagram, DropReason> {
        if datagram.len() > MAX_DATAGRAM {
            return Err(DropReason::Oversize);
        }
        let Some((header, body)) = datagram.split_first_chunk::<HEADER_LEN>() else {
            return Err(DropReason::Malformed);
        };
        let frame_type = header[0];
        let declared = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        if declared as usize != body.len() {
            return Err(DropReason::Malformed);
        }
        let name = match frame_type {
            datagram_type::CHAT => "CHAT",
            datagram_type::ACK => "ACK",
            _ => return Err(DropReason::NotDatagram),
        };
        let mut r = Reader::new(name, Bytes::copy_from_slice(body));
        let parsed = (|| -> Result<Datagram, Malformed> {
            let datagram = match frame_type {
                datagram_type::CHAT => Datagram::Chat {
                    session: r.u64("session")?,
                    seq: r.u64("seq")?,
                    from: r.text("from")?,
                    text: r.text("text")?,
                },
                _ => Datagram::Ack {
                    session: r.u64("session")?,
                    seq: r.u64("seq")?,
                },
            };
            Ok(datagram)
        })();
        let datagram = parsed.map_err(|_| DropReason::Malformed)?;
        r.finish().map_err(|_| DropReason::Malformed)?;
        Ok(datagram)
    }
}

/// Settings of a [`Peer`].
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Our name, sent with every message.
    pub name: String,
    /// Retransmit what is not acknowledged and report what never is as
    /// lost. Without, messages are sent once and losses go unnoticed.
    /// What arrives is acknowledged either way.
    pub reliable: bool,
    /// First retransmission timeout; it doubles with every try.
    pub initial_timeout: Duration,
    /// Tries (the first send included) before a message is reported lost.
    pub max_tries: u32,
    /// Messages waiting for an acknowledgement at once; `send` refuses more.
    pub max_unacked: usize,
    /// Raw mode throughout: the other end is a raw-text peer, so every
    /// message goes out as a bare UTF-8 datagram, once, unacknowledged.
    /// Without, a peer switches to raw mode when the other end sends raw
    /// text ([`PeerEvent::RawMode`]) and back when it sends a new ferry
    /// message ([`PeerEvent::FerryMode`]).
    pub raw: bool,
    /// Largest datagram this peer makes, at most [`MAX_DATAGRAM`]: a layer
    /// beneath that adds its own bytes (encryption, §9.7) lowers it so
    /// that what it sends still fits in [`MAX_DATAGRAM`].
    pub max_datagram: usize,
}

impl PeerConfig {
    /// Reliable, 200 ms first timeout, 6 tries (about 12 s in all), 256
    /// messages in flight.
    pub fn new(name: impl Into<String>) -> Self {
        PeerConfig {
            name: name.into(),
            reliable: true,
            initial_timeout: Duration::from_millis(200),
            max_tries: 6,
            max_unacked: 256,
            raw: false,
            max_datagram: MAX_DATAGRAM,
        }
    }
}

/// What a [`Peer`] tells its application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerEvent {
    /// A message arrived (each one once).
    Message {
        /// Its sequence number in the sender's session.
        seq: u64,
        /// The sender's name, as it says.
        from: Text,
        /// The text.
        text: Text,
    },
    /// Our message `seq` was acknowledged.
    Delivered {
        /// Its sequence number.
        seq: u64,
    },
    /// Our message `seq` was never acknowledged: it is probably lost.
    Lost {
        /// Its sequence number.
        seq: u64,
        /// The text, so that the application can say which.
        text: Text,
    },
    /// Messages now come from a session of the peer not heard from before
    /// (it restarted).
    PeerRestarted,
    /// A datagram that is not a ferry frame arrived: a line from a
    /// raw-text peer, read by [`raw_text`] (sanitised, at most
    /// [`RAW_TEXT_MAX`] bytes, `cut` if longer). Each datagram gives one
    /// event; raw lines have no sequence numbers, so nothing is
    /// deduplicated or acknowledged.
    RawLine {
        /// The line.
        text: Text,
        /// Whether it was longer than [`RAW_TEXT_MAX`] and only its start
        /// is here.
        cut: bool,
    },
    /// The other end spoke raw text, so this peer is now in raw mode: its
    /// messages go out as bare UTF-8 datagrams, without acknowledgements.
    /// Messages still waiting for an acknowledgement were sent once more
    /// as raw lines and are no longer waited for. Comes once, just before
    /// the [`RawLine`](PeerEvent::RawLine) that caused it, and never when
    /// [`PeerConfig::raw`] was set.
    RawMode,
    /// A new message arrived as a ferry CHAT after the peer had spoken raw
    /// text, so this peer is back to sending acknowledged CHATs (a stray
    /// or forged raw datagram does not downgrade a ferry chat for good).
    /// Comes just before that [`Message`](PeerEvent::Message), and never
    /// when [`PeerConfig::raw`] was set.
    FerryMode,
    /// The encrypted channel beneath the peer (`docs/PROTOCOL.md` §9.7)
    /// is established: messages now go out, and what was typed before
    /// follows. Comes again when the other end restarted and a new
    /// handshake replaced the channel. The core's [`Peer`] never emits it:
    /// the encryption layer beneath it (the `ferry-noise` crate) does.
    Encrypted,
    /// A datagram was dropped; [`Peer::drops`] keeps the counts.
    Dropped {
        /// Why.
        reason: DropReason,
    },
}

/// A message waiting for its acknowledgement.
#[derive(Debug)]
struct Unacked {
    datagram: Bytes,
    text: Text,
    tries: u32,
    due: Instant,
}

/// Messages received from one session of the peer: the highest sequence
/// number, and which of the [`SeenWindow::SPAN`] below it arrived.
#[derive(Debug)]
struct SeenWindow {
    session: u64,
    highest: Option<u64>,
    /// Bit `i` set: `highest - 1 - i` arrived.
    below: u128,
}

impl SeenWindow {
    const SPAN: u64 = 128;

    fn new(session: u64) -> Self {
        SeenWindow {
            session,
            highest: None,
            below: 0,
        }
    }

    /// Records `seq`; false if it arrived before or is too old to tell.
    fn insert(&mut self, seq: u64) -> bool {
        let Some(highest) = self.highest else {
            self.highest = Some(seq);
            return true;
        };
        if seq > highest {
            let shift = seq - highest;
            self.below = if shift > Self::SPAN {
                0
            } else {
                // The old highest becomes bit `shift - 1`.
                (self.below << (shift - 1) << 1) | (1 << (shift - 1))
            };
            self.highest = Some(seq);
            return true;
        }
        if seq == highest {
            return false;
        }
        let back = highest - seq;
        if back > Self::SPAN {
            return false;
        }
        let bit = 1u128 << (back - 1);
        if self.below & bit != 0 {
            return false;
        }
        self.below |= bit;
        true
    }
}

/// One end of a datagram chat. See the [module documentation](self).
#[derive(Debug)]
pub struct Peer {
    config: PeerConfig,
    name: Text,
    session: u64,
    next_seq: u64,
    transmit: VecDeque<Bytes>,
    events: VecDeque<PeerEvent>,
    unacked: BTreeMap<u64, Unacked>,
    /// Retransmission deadlines, earliest first.
    timers: BTreeSet<(Instant, u64)>,
    /// What arrived from the peer's most recent sessions, the most recently
    /// heard first; at most [`SESSIONS_KEPT`].
    seen: VecDeque<SeenWindow>,
    drops: DropCounts,
    /// Sending bare UTF-8 datagrams to a raw-text peer.
    raw: bool,
}

impl Peer {
    /// A peer named in `config`, whose messages carry `session`: a random
    /// number, new for every run, so that the other end can tell a restart
    /// (with sequence numbers from 0 again) from duplicates. The core has no
    /// randomness of its own; the application supplies it.
    pub fn new(config: PeerConfig, now: Instant, session: u64) -> Peer {
        let _ = now;
        Peer {
            name: Text::from(config.name.as_str()),
            raw: config.raw,
            config,
            session,
            next_seq: 0,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            unacked: BTreeMap::new(),
            timers: BTreeSet::new(),
            seen: VecDeque::new(),
            drops: DropCounts::default(),
        }
    }

    /// Longest text [`send`](Self::send) takes with our name (in raw mode,
    /// a whole datagram).
    pub fn max_text(&self) -> usize {
        let max = self.config.max_datagram.min(MAX_DATAGRAM);
        if self.raw {
            return max;
        }
        // Header, session, seq, two length prefixes.
        max.saturating_sub(HEADER_LEN + 8 + 8 + 2 + 2 + self.name.len())
    }

    /// Whether [`send`](Self::send) would take another message now.
    pub fn can_send(&self) -> bool {
        self.raw || !self.config.reliable || self.unacked.len() < self.config.max_unacked
    }

    /// Whether messages go out as bare UTF-8 datagrams to a raw-text peer
    /// ([`PeerConfig::raw`], or from [`PeerEvent::RawMode`] to
    /// [`PeerEvent::FerryMode`]).
    pub fn is_raw(&self) -> bool {
        self.raw
    }

    /// Sends `text`; returns its sequence number. In raw mode the text goes
    /// out as it is, once, unacknowledged (the number then only counts
    /// what was sent); a text that would read as a ferry frame
    /// ([`classify`]) is refused rather than sent.
    pub fn send(&mut self, now: Instant, text: &str) -> Result<u64, Misuse> {
        let max = self.max_text();
        if text.len() > max {
            return Err(Misuse::MessageTooLong {
                len: text.len(),
                max,
            });
        }
        if self.raw {
            if classify(text.as_bytes()) == Kind::Frame {
                return Err(Misuse::InvalidArgument(
                    "this line would read as a ferry frame, not as text",
                ));
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            self.transmit
                .push_back(Bytes::copy_from_slice(text.as_bytes()));
            return Ok(seq);
        }
        if !self.can_send() {
            return Err(Misuse::InvalidArgument(
                "too many messages wait for an acknowledgement",
            ));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let text = Text::from(text);
        let mut out = BytesMut::with_capacity(MAX_DATAGRAM);
        Datagram::Chat {
            session: self.session,
            seq,
            from: self.name.clone(),
            text: text.clone(),
        }
        .encode(&mut out)?;
        let datagram = out.freeze();
        self.transmit.push_back(datagram.clone());
        if self.config.reliable {
            let due = now + self.config.initial_timeout;
            self.timers.insert((due, seq));
            self.unacked.insert(
                seq,
                Unacked {
                    datagram,
                    text,
                    tries: 1,
                    due,
                },
            );
        }
        Ok(seq)
    }

    /// Takes one datagram that arrived from the peer.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        let _ = now;
        if classify(datagram) == Kind::RawText {
            self.on_raw(datagram);
            return;
        }
        match Datagram::decode(datagram) {
            Ok(Datagram::Chat {
                session,
                seq,
                from,
                text,
            }) => self.on_chat(session, seq, from, text),
            Ok(Datagram::Ack { session, seq }) => self.on_ack(session, seq),
            Err(reason) => self.drop_one(reason),
        }
    }

    fn on_raw(&mut self, datagram: &[u8]) {
        if !self.raw {
            self.raw = true;
            self.events.push_back(PeerEvent::RawMode);
            // What the raw-text peer could not read goes once more as text;
            // nothing is waited for any more.
            self.timers.clear();
            for (_, unacked) in std::mem::take(&mut self.unacked) {
                if classify(unacked.text.as_bytes()) == Kind::RawText {
                    self.transmit.push_back(unacked.text.as_bytes().clone());
                }
            }
        }
        let (text, cut) = raw_text(datagram);
        self.events.push_back(PeerEvent::RawLine { text, cut });
    }

    fn on_chat(&mut self, session: u64, seq: u64, from: Text, text: Text) {
        let fresh = self.seen_window(session).insert(seq);
        {
            // Acknowledged even when a duplicate (the first ACK may be the
            // datagram that was lost), and whatever our own mode: a
            // reliable partner would otherwise report a message we showed
            // as lost.
            let mut out = BytesMut::with_capacity(HEADER_LEN + 16);
            // An ACK always encodes.
            let _ = Datagram::Ack { session, seq }.encode(&mut out);
            self.transmit.push_back(out.freeze());
        }
        if fresh {
            if self.raw && !self.config.raw {
                self.raw = false;
                self.events.push_back(PeerEvent::FerryMode);
            }
            self.events
                .push_back(PeerEvent::Message { seq, from, text });
        } else {
            self.drop_one(DropReason::Duplicate);
        }
    }

    /// The window of `session`, moved to the front (most recently heard).
    /// A session not among those remembered gets a new window, evicting the
    /// one heard from least recently when [`SESSIONS_KEPT`] are kept, and is
    /// reported as a restart unless it is the first session heard.
    fn seen_window(&mut self, session: u64) -> &mut SeenWindow {
        match self.seen.iter().position(|w| w.session == session) {
            Some(0) => {}
            Some(at) => {
                if let Some(window) = self.seen.remove(at) {
                    self.seen.push_front(window);
                }
            }
            None => {
                if !self.seen.is_empty() {
                    self.events.push_back(PeerEvent::PeerRestarted);
                }
                self.seen.truncate(SESSIONS_KEPT - 1);
                self.seen.push_front(SeenWindow::new(session));
            }
        }
        // Either found and moved to the front, or just pushed there.
        self.seen
            .front_mut()
            .expect("the session's window is at the front")
    }

    fn on_ack(&mut self, session: u64, seq: u64) {
        if session != self.session {
            self.drop_one(DropReason::StaleAck);
            return;
        }
        match self.unacked.remove(&seq) {
            Some(unacked) => {
                self.timers.remove(&(unacked.due, seq));
                self.events.push_back(PeerEvent::Delivered { seq });
            }
            None => self.drop_one(DropReason::StaleAck),
        }
    }

    fn drop_one(&mut self, reason: DropReason) {
        self.drops.add(reason);
        self.events.push_back(PeerEvent::Dropped { reason });
    }

    /// Retransmits what is due at `now`, and gives up on what has had all
    /// its tries.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(due, seq)) = self.timers.first() {
            if due > now {
                return;
            }
            self.timers.pop_first();
            let Some(unacked) = self.unacked.get_mut(&seq) else {
                continue;
            };
            if unacked.tries >= self.config.max_tries {
                if let Some(lost) = self.unacked.remove(&seq) {
                    self.events.push_back(PeerEvent::Lost {
                        seq,
                        text: lost.text,
                    });
                }
                continue;
            }
            let backoff = 1u32 << unacked.tries.min(16);
            unacked.tries += 1;
            unacked.due = now + self.config.initial_timeout * backoff;
            self.timers.insert((unacked.due, seq));
            self.transmit.push_back(unacked.datagram.clone());
        }
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|&(due, _)| due)
    }

    /// The next datagram to send to the peer.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmit.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<PeerEvent> {
        self.events.pop_front()
    }

    /// Messages sent and not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    /// Dropped datagrams so far, by reason.
    pub fn drops(&self) -> &DropCounts {
        &self.drops
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seen_window_tells_new_from_repeated() {
        let mut w = SeenWindow::new(7);
        assert!(w.insert(5));
        assert!(!w.insert(5));
        assert!(w.insert(3));
        assert!(!w.insert(3));
        assert!(w.insert(4));
        assert!(w.insert(200));
        assert!(!w.insert(5), "too old to tell counts as seen");
        assert!(w.insert(199));
        assert!(w.insert(72));
        assert!(!w.insert(72));
        assert!(!w.insert(71), "more than SPAN below the highest");
        assert!(w.insert(201));
        assert!(!w.insert(199));
    }

    #[test]
    fn decode_refuses_what_is_not_one_datagram_frame() {
        let mut out = BytesMut::new();
        Datagram::Ack { session: 1, seq: 2 }
            .encode(&mut out)
            .unwrap();
        assert_eq!(
            Datagram::decode(&out),
            Ok(Datagram::Ack { session: 1, seq: 2 })
        );
        let mut longer = out.to_vec();
        longer.push(0);
        assert_eq!(Datagram::decode(&longer), Err(DropReason::Malformed));
        assert_eq!(Datagram::decode(&out[..7]), Err(DropReason::Malformed));
        assert_eq!(
            Datagram::decode(&[0x07, 0, 0, 0, 0]),
            Err(DropReason::NotDatagram)
        );
        assert_eq!(
            Datagram::decode(&[0x4F, 0, 0, 0, 0]),
            Err(DropReason::NotDatagram)
        );
        assert_eq!(
            Datagram::decode(&[0u8; MAX_DATAGRAM + 1]),
            Err(DropReason::Oversize)
        );
    }
}
