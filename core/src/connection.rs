//! [`Connection`]: one ferry link, client or server side, as a state machine.

use crate::bucket::TokenBucket;
use crate::code::Code;
use crate::config::{ClientConfig, Config};
use crate::error::{Error, LimitExceeded, Malformed, Misuse, Violation};
use crate::filename::check_file_name;
use crate::frame::{
    features, frame_type, Frame, Hash, ResumeKey, Settings, TransferId, DATA_OVERHEAD, HEADER_LEN,
    MIN_DATA, PREAMBLE, VERSION,
};
use crate::input::{InputBuffer, SHARED_BELOW};
use crate::outbox::Outbox;
use crate::secret::SessionSecret;
use crate::text::Text;
use crate::transfer::{
    empty_hash, InState, Incoming, OutState, Outcome, Outgoing, Reads, Transfer, TransferEvent,
};
use bytes::{Bytes, BytesMut};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

pub(crate) mod tree_receive;
pub(crate) mod tree_send;

/// Which end of the link this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Opens the connection and says `HELLO`.
    Client,
    /// Accepts it and answers `WELCOME` or `REFUSE`.
    Server,
}

/// Something the application must see or act on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Server role: a client introduced itself. Call
    /// [`Connection::welcome`] or [`Connection::refuse`].
    Hello {
        /// Name asked for.
        name: Text,
        /// Room asked for (empty: the default room).
        room: Text,
        /// Token presented (empty: none).
        token: Bytes,
        /// The secret of an earlier connection that this client says is
        /// its own and dead (`RECLAIM` before `HELLO`), if it sent one.
        reclaim: Option<SessionSecret>,
    },
    /// Client role: the server let us in.
    Welcomed {
        /// Our name as the server has it.
        name: Text,
        /// The room we are in.
        room: Text,
        /// The server's limits.
        settings: Settings,
    },
    /// Client role: the server handed us the secret of this session
    /// (`SESSION`, just after `WELCOME`). Keep it, and after losing the
    /// connection reconnect with
    /// [`ClientConfig::reclaim`](crate::ClientConfig::reclaim) to take
    /// our place back at once.
    Session {
        /// The secret; it stands for this connection, so keep it private.
        secret: SessionSecret,
    },
    /// Client role: a message said in the room before this client joined
    /// (`HISTORY`, PROTOCOL.md §4.38), oldest first, before `Members`.
    History {
        /// When the server ordered it, in milliseconds since the Unix
        /// epoch; 0 if unknown.
        time_ms: u64,
        /// Its sender then (empty: the server).
        from: Text,
        /// Text.
        text: Text,
    },
    /// Client role: a room message (`from` empty: the server).
    Message {
        /// Room sequence number.
        seq: u64,
        /// Sender.
        from: Text,
        /// Text.
        text: Text,
    },
    /// Client role: someone entered the room.
    Joined {
        /// Room sequence number.
        seq: u64,
        /// Who.
        name: Text,
    },
    /// Client role: someone left the room.
    Left {
        /// Room sequence number.
        seq: u64,
        /// Who.
        name: Text,
        /// Why.
        code: Code,
    },
    /// Client role: who is in the room.
    Members {
        /// Names in join order.
        names: Vec<Text>,
    },
    /// Client role: a direct message.
    Direct {
        /// Sender.
        from: Text,
        /// Text.
        text: Text,
    },
    /// Client role: a message of ours was not delivered.
    Bounced {
        /// Why.
        code: Code,
        /// Detail.
        reason: Text,
    },
    /// Server role: the client says something to the room.
    Say {
        /// Text.
        text: Text,
    },
    /// Server role: the client asks who is in the room.
    Who,
    /// Server role: the client sends a direct message.
    DirectTo {
        /// Recipient.
        to: Text,
        /// Text.
        text: Text,
    },
    /// A file transfer needs attention.
    Transfer(TransferEvent),
    /// Client role: the server answered our
    /// [`announce_features`](Connection::announce_features) with its own
    /// `FEATURES` ([`features`] bits; trees may be offered to it if
    /// [`features::TREES`] is set).
    Features {
        /// The server's bits.
        bits: u32,
    },
    /// The answer to our ping arrived.
    Pong {
        /// Round-trip time.
        rtt: Duration,
    },
    /// The connection is over. Write out what [`Connection::poll_transmit`]
    /// still returns (the final frame is in there), shut down the sending
    /// direction, read until the peer's FIN for at most
    /// [`CLOSE_LINGER`](crate::CLOSE_LINGER), then close the socket:
    /// [`driving`](crate::driving) step 6, PROTOCOL.md §6.9.
    Closed {
        /// Why.
        code: Code,
        /// Detail.
        reason: String,
        /// Whether the peer ended it.
        by_peer: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the peer's preamble; `matched` bytes of it seen.
    Preamble {
        matched: usize,
    },
    /// Preamble seen, handshake frames next.
    Handshake,
    /// Server role: `HELLO` handed to the application, awaiting its answer.
    HelloPending,
    Open,
    Closed,
}

/// One ferry connection, client or server side, with no I/O.
///
/// # Driving it
///
/// The methods come in four groups, like quinn-proto's `Connection`:
///
/// 1. **Getters**: [`role`](Self::role), [`is_open`](Self::is_open),
///    [`is_closed`](Self::is_closed), [`settings`](Self::settings), ...
/// 2. **Input**: [`handle_input`](Self::handle_input) with bytes read from the
///    socket, [`handle_eof`](Self::handle_eof) when the peer closed,
///    [`handle_timeout`](Self::handle_timeout) when the deadline from
///    `poll_timeout` has passed.
/// 3. **Commands**: [`say`](Self::say), [`offer_file`](Self::offer_file),
///    [`accept`](Self::accept), [`supply_chunk`](Self::supply_chunk), ...
///    They only queue work and never block.
/// 4. **Output**: [`poll_transmit`](Self::poll_transmit),
///    [`poll_event`](Self::poll_event), [`poll_timeout`](Self::poll_timeout).
///
/// After every input or command, drain: write `poll_transmit` segments in
/// order while the socket takes them, handle every `poll_event`, and repeat
/// until neither yields anything (each can feed the other: taking output
/// can ask for the next file chunk); then sleep until `poll_timeout` or the
/// next input. `now` never goes backwards; calling `handle_timeout` early or
/// twice is harmless. Once [`Event::Closed`] has been seen, close as
/// [`driving`](crate::driving) step 6 says: what is left of
/// `poll_transmit`, then FIN, then read until the peer's FIN for at most
/// [`CLOSE_LINGER`](crate::CLOSE_LINGER). The [`driving`](crate::driving)
/// module is the whole contract, with a complete blocking client.
///
/// File contents never pass through here uninvited: to send, the connection
/// asks for chunks with [`TransferEvent::NeedChunk`] and the application
/// answers with [`supply_chunk`](Self::supply_chunk); received data comes out
/// as [`TransferEvent::Chunk`] and is acknowledged with
/// [`confirm_written`](Self::confirm_written), which is what opens the
/// sender's flow-control window again.
///
/// # Example
///
/// ```
/// use ferry_core::{ClientConfig, Connection, Event};
/// use std::time::Instant;
///
/// let now = Instant::now();
/// let mut client = Connection::client(ClientConfig::new("alice"), now);
/// // The preamble and HELLO are queued at once.
/// let hello = client.poll_transmit().unwrap();
/// assert!(hello.starts_with(b"\x89FERRY\r\n"));
/// assert_eq!(client.poll_event(), None);
/// assert!(client.poll_timeout().is_some());
/// ```
#[derive(Debug)]
pub struct Connection {
    role: Role,
    config: Config,
    phase: Phase,
    inbuf: InputBuffer,
    outbox: Outbox,
    events: VecDeque<Event>,
    preamble_sent: bool,
    /// Deadline of the handshake while it lasts.
    handshake_deadline: Option<Instant>,
    last_recv: Instant,
    last_send: Instant,
    /// Server role: what control frames cost (see [`Config::frame_burst`]).
    frame_budget: TokenBucket,
    /// Some output was handed out by `poll_transmit`: the peer has (or
    /// will have) the preamble, whatever is discarded later.
    output_started: bool,
    /// Settings in force: the server's own, or the ones it announced.
    settings: Settings,
    /// DATA payload size we send.
    chunk_size: u32,
    version: u16,
    ping: Option<(u64, Instant)>,
    next_nonce: u64,
    transfers: BTreeMap<TransferId, Transfer>,
    /// Next id for a transfer we offer.
    next_local_id: TransferId,
    /// Highest id the peer has offered, if any.
    highest_peer_id: Option<TransferId>,
    /// Round-robin position among sending transfers.
    send_cursor: TransferId,
    /// The peer's last frame was `RESUME`: the offer it names, if it is the
    /// very next frame, comes with this key.
    pending_resume: Option<(TransferId, ResumeKey)>,
    /// Server role: the secret a `RECLAIM` before `HELLO` presented.
    reclaim: Option<SessionSecret>,
    /// The bits of the peer's last `FEATURES` (0 until it sends one).
    peer_features: u32,
    /// Whether tree frames from the peer are known here: only once this
    /// side has announced trees in `FEATURES` or offered a tree itself;
    /// before that they are critical types this side does not know.
    speaks_trees: bool,
    /// Server role: the client's first `FEATURES` was answered.
    features_answered: bool,
    name: Text,
    room: Text,
}

impl Connection {
    /// A client connection that will ask to join as `config.name`. The
    /// preamble and `HELLO` are queued at once. (A name, room or token too
    /// long to encode closes it at once, with [`Event::Closed`].)
    pub fn client(config: ClientConfig, now: Instant) -> Connection {
        let mut conn = Connection::new(Role::Client, config.connection, now);
        conn.send_preamble();
        if let Some(secret) = config.reclaim {
            let mut encoded = BytesMut::new();
            // A fixed-size body always encodes.
            let _ = Frame::Reclaim { secret }.encode(&mut encoded);
            conn.outbox.push_shared(&encoded.freeze());
        }
        let hello = Frame::Hello {
            versions: vec![VERSION],
            name: Text::from(config.name),
            room: Text::from(config.room),
            token: Bytes::from(config.token),
        };
        let mut encoded = BytesMut::new();
        match hello.encode(&mut encoded) {
            Ok(()) => conn.outbox.push_shared(&encoded.freeze()),
            Err(e) => conn.close(Code::NAME_INVALID, e.to_string(), false),
        }
        conn
    }

    /// A server connection for a client that just connected.
    pub fn server(config: Config, now: Instant) -> Connection {
        Connection::new(Role::Server, config, now)
    }

    fn new(role: Role, config: Config, now: Instant) -> Connection {
        let settings = config.settings();
        let frame_budget = TokenBucket::full(config.frame_burst, config.frame_per_second, now);
        Connection {
            role,
            chunk_size: settings.chunk_size,
            settings,
            handshake_deadline: Some(now + config.handshake_timeout),
            config,
            phase: Phase::Preamble { matched: 0 },
            inbuf: InputBuffer::default(),
            outbox: Outbox::default(),
            events: VecDeque::new(),
            preamble_sent: false,
            last_recv: now,
            last_send: now,
            frame_budget,
            output_started: false,
            version: VERSION,
            ping: None,
            next_nonce: 1,
            transfers: BTreeMap::new(),
            next_local_id: match role {
                Role::Client => 0,
                Role::Server => 1,
            },
            highest_peer_id: None,
            send_cursor: 0,
            pending_resume: None,
            reclaim: None,
            peer_features: 0,
            speaks_trees: false,
            features_answered: false,
            name: Text::new(),
            room: Text::new(),
        }
    }

    // ----- getters -------------------------------------------------------

    /// The bits of the peer's last `FEATURES` frame
    /// ([`features`]); 0 if it sent none.
    pub fn peer_features(&self) -> u32 {
        self.peer_features
    }

    /// Client or server side.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The handshake is done and the connection is usable.
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// The connection is over ([`Event::Closed`] was queued).
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Nothing is left to transmit.
    pub fn is_drained(&self) -> bool {
        self.outbox.is_empty()
    }

    /// The limits in force: the server's own, or what it announced.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Our user name once welcomed (client), or the client's (server).
    pub fn name(&self) -> &Text {
        &self.name
    }

    /// The room joined.
    pub fn room(&self) -> &Text {
        &self.room
    }

    /// Bytes of chat and control frames waiting to be written.
    pub fn queued_control_bytes(&self) -> usize {
        self.outbox.control_len()
    }

    /// Memory the chat and control frames waiting hold: their bytes and
    /// the room their buffers keep for more (at least
    /// [`queued_control_bytes`](Self::queued_control_bytes)). What a hub
    /// counts against [`HubConfig::max_outgoing_memory`](crate::HubConfig::max_outgoing_memory).
    pub fn held_control_bytes(&self) -> usize {
        self.outbox.control_held()
    }

    /// Bytes of file data (and `DONE` frames) waiting to be written.
    pub fn queued_data_bytes(&self) -> usize {
        self.outbox.data_len()
    }

    /// Transfers open on this connection.
    pub fn open_transfers(&self) -> usize {
        self.transfers.len()
    }

    /// Events are waiting in [`poll_event`](Self::poll_event).
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Bytes received but not yet parsed into a frame.
    pub fn buffered_input(&self) -> usize {
        self.inbuf.len()
    }

    /// Memory held for input not yet parsed into a frame: the room of its
    /// buffer, which a frame begun has sized for up to twice what arrived
    /// of it. A server counts it against
    /// [`HubConfig::max_incoming_memory`](crate::HubConfig::max_incoming_memory).
    pub fn held_input_bytes(&self) -> usize {
        self.inbuf.held()
    }

    // ----- input ---------------------------------------------------------

    /// Feeds bytes read from the socket. Any split is fine: half a frame,
    /// many frames, one byte at a time.
    pub fn handle_input(&mut self, now: Instant, mut data: &[u8]) {
        if self.phase == Phase::Closed || data.is_empty() {
            return;
        }
        self.last_recv = now;
        if let Phase::Preamble { matched } = self.phase {
            let take = data.len().min(PREAMBLE.len() - matched);
            for (i, &byte) in data[..take].iter().enumerate() {
                let offset = matched + i;
                if byte != PREAMBLE[offset] {
                    self.fail(
                        Malformed::BadPreamble {
                            offset,
                            found: byte,
                            expected: PREAMBLE[offset],
                        }
                        .into(),
                        now,
                    );
                    return;
                }
            }
            data = &data[take..];
            if matched + take < PREAMBLE.len() {
                self.phase = Phase::Preamble {
                    matched: matched + take,
                };
                return;
            }
            self.phase = Phase::Handshake;
            if self.role == Role::Server {
                self.send_preamble();
            }
        }
        while !data.is_empty() && self.phase != Phase::Closed {
            let taken = self.inbuf.take_piece(data, self.frame_limit());
            data = &data[taken..];
            while self.phase != Phase::Closed {
                // Tree frames are unknown critical types to a side that
                // never said it speaks them, decided from the header alone
                // as for any unknown type (`docs/PROTOCOL.md` §6.12.1).
                if let Some(t) = self.inbuf.next_type() {
                    if frame_type::is_tree(t) && !self.speaks_trees {
                        self.fail(Malformed::UnknownFrameType(t).into(), now);
                        break;
                    }
                }
                match self.inbuf.decode(self.frame_limit()) {
                    Ok(Some(frame)) => {
                        let priced = self.charge_control_frame(&frame, now);
                        if let Err(e) = priced.and_then(|()| self.handle_frame(frame, now)) {
                            self.fail(e, now);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => self.fail(e.into(), now),
                }
            }
            self.check_unread_answers(now);
        }
        self.fill_requests();
    }

    /// Answers the peer asks for and does not read (a `PONG` for each of a
    /// flood of `PING`s) count against the same limit as what a room sends
    /// it: past it, the peer is dropped as a slow reader rather than let the
    /// queue grow without end.
    /// The `FEATURES` bits this side announces: trees if it has limits for
    /// them.
    fn own_features(&self) -> u32 {
        if self.config.trees.is_some() {
            features::TREES
        } else {
            0
        }
    }

    fn check_unread_answers(&mut self, now: Instant) {
        if self.phase == Phase::Open && self.outbox.control_len() > self.config.max_outgoing {
            let limit = self.config.max_outgoing;
            self.drop_unsent_output();
            self.fail(LimitExceeded::SlowReader { limit }.into(), now);
        }
    }

    /// Server: drops the peer as a slow reader because the server's queues
    /// together are over `limit` and this one is among the biggest, behind
    /// the longest: what it never took is thrown away and it is told why.
    pub(crate) fn drop_for_outgoing_memory(&mut self, now: Instant, limit: usize) {
        if self.phase == Phase::Closed {
            return;
        }
        let queued = self.outbox.control_len();
        self.drop_unsent_output();
        self.fail(LimitExceeded::OutgoingMemory { limit, queued }.into(), now);
    }

    /// Closes the connection with `ERROR FLOODING`: the server's unfinished
    /// input from every client together is over `limit`, and this
    /// connection's is among the biggest and oldest.
    pub(crate) fn drop_for_incoming_memory(&mut self, now: Instant, limit: usize) {
        if self.phase == Phase::Closed {
            return;
        }
        let held = self.inbuf.held();
        self.fail(LimitExceeded::IncomingMemory { limit, held }.into(), now);
    }

    /// Throws away the output a slow reader never took, keeping what must
    /// still go out for the stream to make sense: the rest of a frame
    /// already begun, and the preamble if the peer never got it, so that
    /// the `ERROR` that follows reaches it as a ferry frame.
    fn drop_unsent_output(&mut self) {
        self.outbox.discard_unsent();
        if !self.output_started {
            self.preamble_sent = false;
        }
    }

    /// Server role: a control frame costs a token of the frame budget
    /// ([`Config::frame_burst`]); without one the client is flooding. Chat
    /// frames and offers are priced by the hub, `DATA` by the window, and
    /// `CREDIT` where it is handled (it is free when it opens the window).
    /// Extension frames, `RESUME` and `RESUME_KEY` included, are control
    /// frames.
    fn charge_control_frame(&mut self, frame: &Frame, now: Instant) -> Result<(), Error> {
        let priced_elsewhere = matches!(
            frame,
            Frame::Hello { .. }
                | Frame::Say { .. }
                | Frame::Who
                | Frame::DirectTo { .. }
                | Frame::Offer { .. }
                | Frame::Cancel { .. }
                | Frame::Data { .. }
                | Frame::Credit { .. }
                | Frame::TreeOffer { .. }
                // Each file of a tree at most once, in order: bounded by
                // the manifest, which was priced whole.
                | Frame::TreeFile { .. }
                | Frame::TreeFileDone { .. }
        );
        // A manifest's parts are bounded by the offer's manifest_len, whose
        // entries the hub charged to the source at the offer; parts of a
        // tree that has ended cost a token like any control frame.
        let manifest_part =
            matches!(frame, Frame::TreeManifest { id, .. } if self.is_incoming_tree(*id));
        if priced_elsewhere || manifest_part {
            return Ok(());
        }
        self.take_frame_token(now)
    }

    fn take_frame_token(&mut self, now: Instant) -> Result<(), Error> {
        if self.role != Role::Server || self.frame_budget.take(now) {
            return Ok(());
        }
        let burst = self.config.frame_burst;
        Err(LimitExceeded::FrameFlooding { burst }.into())
    }

    /// Largest frame body accepted now: small until the handshake is over.
    fn frame_limit(&self) -> u32 {
        if self.phase == Phase::Open {
            self.config.max_frame
        } else {
            self.config.handshake_max_frame
        }
    }

    /// The peer closed its side of the connection.
    pub fn handle_eof(&mut self, now: Instant) {
        self.handle_broken(now, "the peer closed the connection");
    }

    /// The transport failed (a reset, a timeout, a write error): the
    /// connection closes as [`Code::CONNECTION_LOST`] with `reason`, the
    /// runtime's own words for what broke, so that the user sees why.
    pub fn handle_broken(&mut self, now: Instant, reason: &str) {
        let _ = now;
        if self.phase != Phase::Closed {
            self.close(Code::CONNECTION_LOST, reason.to_string(), true);
        }
    }

    /// Fires whatever timers are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Closed {
            return;
        }
        if let Some(deadline) = self.handshake_deadline {
            if now >= deadline {
                let millis = self.config.handshake_timeout.as_millis() as u64;
                self.fail(LimitExceeded::HandshakeTimeout { millis }.into(), now);
                return;
            }
        }
        if now >= self.last_recv + self.config.idle_timeout {
            let millis = self.config.idle_timeout.as_millis() as u64;
            self.fail(LimitExceeded::IdleTimeout { millis }.into(), now);
            return;
        }
        if let Some(at) = self.keepalive_at() {
            if now >= at {
                self.ping(now);
            }
        }
    }

    // ----- commands ------------------------------------------------------

    /// Client: says `text` to the room.
    pub fn say(&mut self, now: Instant, text: &str) -> Result<(), Misuse> {
        self.check_chat(Role::Client, text)?;
        self.queue(&Frame::Say { text: text.into() }, now);
        Ok(())
    }

    /// Client: sends `text` to user `to` only.
    pub fn direct(&mut self, now: Instant, to: &str, text: &str) -> Result<(), Misuse> {
        self.check_chat(Role::Client, text)?;
        if to.len() > usize::from(u16::MAX) {
            return Err(Misuse::InvalidArgument("recipient name too long"));
        }
        self.queue(
            &Frame::DirectTo {
                to: to.into(),
                text: text.into(),
            },
            now,
        );
        Ok(())
    }

    /// Client: asks who is in the room.
    pub fn who(&mut self, now: Instant) -> Result<(), Misuse> {
        self.check_chat(Role::Client, "")?;
        self.queue(&Frame::Who, now);
        Ok(())
    }

    /// Sends a `PING`; the answer comes as [`Event::Pong`].
    pub fn ping(&mut self, now: Instant) {
        if self.phase == Phase::Closed {
            return;
        }
        let nonce = self.next_nonce;
        self.next_nonce += 1;
        self.ping = Some((nonce, now));
        self.queue(&Frame::Ping { nonce }, now);
    }

    /// Leaves politely: queues `BYE` and closes.
    pub fn bye(&mut self, now: Instant) {
        if self.phase == Phase::Closed {
            return;
        }
        self.queue(&Frame::Bye, now);
        self.close(Code::QUIT, "closed by this side".into(), false);
    }

    /// Closes with an `ERROR` frame carrying `code` and `reason` (a server
    /// shutting down sends [`Code::SHUTDOWN`]).
    pub fn close_with_error(&mut self, now: Instant, code: Code, reason: &str) {
        if self.phase == Phase::Closed {
            return;
        }
        // A server closing before the client's preamble arrived (a limit,
        // a shutdown) has not sent its own yet; every frame follows one.
        self.send_preamble();
        self.queue(
            &Frame::Error {
                code,
                reason: truncated(reason),
            },
            now,
        );
        self.close(code, reason.into(), false);
    }

    /// Server: closes a connection that has sent nothing at all, without
    /// a word: with raw-text guests served, such a peer may be a person at
    /// `nc` who has not typed yet, to whom a preamble and an `ERROR` frame
    /// would be binary noise (and a ferry client always speaks first).
    pub(crate) fn abandon(&mut self, code: Code, reason: String) {
        if self.phase != Phase::Closed {
            self.close(code, reason, false);
        }
    }

    /// Server: lets the client in under `name` in `room`. Queues `WELCOME`.
    pub fn welcome(&mut self, now: Instant, name: Text, room: Text) -> Result<(), Misuse> {
        if self.role != Role::Server || self.phase != Phase::HelloPending {
            return Err(Misuse::NotReady);
        }
        self.queue(
            &Frame::Welcome {
                version: self.version,
                name: name.clone(),
                room: room.clone(),
                settings: self.settings,
            },
            now,
        );
        self.name = name;
        self.room = room;
        self.phase = Phase::Open;
        self.handshake_deadline = None;
        Ok(())
    }

    /// Server: turns the client away with `code` and closes.
    pub fn refuse(&mut self, now: Instant, code: Code, reason: &str) -> Result<(), Misuse> {
        if self.role != Role::Server || self.phase != Phase::HelloPending {
            return Err(Misuse::NotReady);
        }
        self.queue(
            &Frame::Refuse {
                code,
                reason: truncated(reason),
            },
            now,
        );
        self.close(code, reason.into(), false);
        Ok(())
    }

    /// Server: queues a frame the server sends to clients in the room
    /// (`MESSAGE`, `JOINED`, `LEFT`, `MEMBERS`, `DIRECT_FROM`, `BOUNCE`,
    /// `HISTORY`).
    pub fn send_chat(&mut self, now: Instant, frame: &Frame) -> Result<(), Misuse> {
        if self.role != Role::Server {
            return Err(Misuse::InvalidArgument("only a server sends room frames"));
        }
        if !matches!(
            frame,
            Frame::Message { .. }
                | Frame::Joined { .. }
                | Frame::Left { .. }
                | Frame::Members { .. }
                | Frame::DirectFrom { .. }
                | Frame::Bounce { .. }
                | Frame::History { .. }
        ) {
            return Err(Misuse::InvalidArgument("not a room frame"));
        }
        self.ensure_open()?;
        let mut encoded = BytesMut::new();
        frame.encode(&mut encoded)?;
        self.send_encoded(now, &encoded.freeze());
        Ok(())
    }

    /// Server: queues an already encoded room frame (a broadcast encoded once
    /// and shared by every member). Drops the client as a slow reader if its
    /// queue is full.
    pub(crate) fn send_encoded(&mut self, now: Instant, frame: &Bytes) {
        if self.phase != Phase::Open {
            return;
        }
        if self.outbox.control_len() + frame.len() > self.config.max_outgoing {
            let limit = self.config.max_outgoing;
            self.drop_unsent_output();
            self.fail(LimitExceeded::SlowReader { limit }.into(), now);
            return;
        }
        self.outbox.push_shared(frame);
        self.last_send = now;
    }

    /// Offers a file of `size` bytes named `name` to the peer. To a server,
    /// `to` names the recipient in the room, or is empty for its inbox; from a
    /// server, `to` is the sender's name (empty: the server itself).
    pub fn offer_file(
        &mut self,
        now: Instant,
        name: &str,
        size: u64,
        to: &str,
    ) -> Result<TransferId, Misuse> {
        self.offer(now, name, size, to, None, false)
    }

    /// Like [`offer_file`](Self::offer_file), to continue a transfer that
    /// was cut: `key` is the one the receiver issued for it
    /// ([`TransferEvent::ResumeKey`]). Queues `RESUME` with the key, then the
    /// `OFFER`. A receiver that still holds the partial data under that key
    /// accepts at an offset above 0; otherwise the file goes from the start.
    pub fn offer_file_resuming(
        &mut self,
        now: Instant,
        name: &str,
        size: u64,
        to: &str,
        key: ResumeKey,
    ) -> Result<TransferId, Misuse> {
        self.offer(now, name, size, to, Some(key), false)
    }

    /// Hub: offers a file whose bytes will be pushed with `relay_chunk`,
    /// passing on the key the sender presented, if any.
    pub(crate) fn offer_relayed(
        &mut self,
        now: Instant,
        name: &str,
        size: u64,
        from: &str,
        resume: Option<ResumeKey>,
    ) -> Result<TransferId, Misuse> {
        self.offer(now, name, size, from, resume, true)
    }

    fn offer(
        &mut self,
        now: Instant,
        name: &str,
        size: u64,
        peer: &str,
        resume: Option<ResumeKey>,
        relay: bool,
    ) -> Result<TransferId, Misuse> {
        self.ensure_open()?;
        check_file_name(name).map_err(|_| Misuse::InvalidArgument("unsafe file name"))?;
        if peer.len() > usize::from(u16::MAX) {
            return Err(Misuse::InvalidArgument("peer name too long"));
        }
        if self.transfers.len() >= self.config.max_transfers {
            return Err(Misuse::InvalidArgument("too many transfers open"));
        }
        let id = self.next_local_id;
        self.next_local_id = id
            .checked_add(2)
            .ok_or(Misuse::InvalidArgument("transfer ids exhausted"))?;
        self.transfers.insert(
            id,
            Transfer::Outgoing(Outgoing {
                size,
                relay,
                state: OutState::Offered,
                hasher: blake3::Hasher::new(),
            }),
        );
        if let Some(key) = resume {
            // Immediately before its OFFER: nothing else goes between them.
            self.queue(&Frame::Resume { id, key }, now);
        }
        self.queue(
            &Frame::Offer {
                id,
                size,
                name: name.into(),
                peer: peer.into(),
            },
            now,
        );
        Ok(id)
    }

    /// Accepts an offered file. `resume_from` is how many bytes of it we
    /// already hold from an earlier attempt (0 for none): the connection then
    /// asks for them with [`TransferEvent::NeedChunk`] to hash them before
    /// answering, so the sender can check they match its file.
    ///
    /// No key is issued, so the sender cannot resume this transfer if it is
    /// cut; see [`accept_resumable`](Self::accept_resumable). Resume only
    /// data kept under the key the offer presented
    /// ([`TransferEvent::Offered`]'s `resume`).
    pub fn accept(&mut self, now: Instant, id: TransferId, resume_from: u64) -> Result<(), Misuse> {
        self.accept_with(now, id, resume_from, None)
    }

    /// Like [`accept`](Self::accept), and hands the sender `key`
    /// (`RESUME_KEY`, sent just before the `ACCEPT`), with which it can
    /// resume the transfer if it is cut. `key` must come from a
    /// cryptographically secure random source, one per transfer (resuming,
    /// the same key again or a new one that replaces it); keep it with the
    /// partial data, and resume an offer only if it presents this key.
    pub fn accept_resumable(
        &mut self,
        now: Instant,
        id: TransferId,
        resume_from: u64,
        key: ResumeKey,
    ) -> Result<(), Misuse> {
        self.accept_with(now, id, resume_from, Some(key))
    }

    fn accept_with(
        &mut self,
        now: Instant,
        id: TransferId,
        resume_from: u64,
        key: Option<ResumeKey>,
    ) -> Result<(), Misuse> {
        let window = self.config.window;
        let incoming = self.incoming_offered(id)?;
        if resume_from > incoming.size {
            return Err(Misuse::InvalidArgument("resume offset past the end"));
        }
        incoming.issue_key = key;
        if resume_from == 0 {
            incoming.hasher = Some(blake3::Hasher::new());
            self.send_accept(now, id, 0, window, empty_hash());
        } else {
            incoming.hasher = Some(blake3::Hasher::new());
            incoming.state = InState::HashingPrefix {
                target: resume_from,
                reads: Reads::starting_at(0),
            };
            self.fill_requests();
        }
        Ok(())
    }

    /// Hub: accepts on behalf of the relay recipient, passing its offset,
    /// prefix hash and resume key through; nothing is hashed here.
    pub(crate) fn accept_relayed(
        &mut self,
        now: Instant,
        id: TransferId,
        offset: u64,
        window: u32,
        prefix_hash: Hash,
        key: Option<ResumeKey>,
    ) -> Result<(), Misuse> {
        let incoming = self.incoming_offered(id)?;
        if offset > incoming.size {
            return Err(Misuse::InvalidArgument("resume offset past the end"));
        }
        incoming.hasher = None;
        incoming.issue_key = key;
        self.send_accept(now, id, offset, window, prefix_hash);
        Ok(())
    }

    fn incoming_offered(&mut self, id: TransferId) -> Result<&mut Incoming, Misuse> {
        match self.transfers.get_mut(&id) {
            Some(Transfer::Incoming(incoming)) if matches!(incoming.state, InState::Offered) => {
                Ok(incoming)
            }
            _ => Err(Misuse::NoSuchTransfer(id)),
        }
    }

    fn send_accept(
        &mut self,
        now: Instant,
        id: TransferId,
        offset: u64,
        window: u32,
        prefix_hash: Hash,
    ) {
        let mut key = None;
        if let Some(Transfer::Incoming(incoming)) = self.transfers.get_mut(&id) {
            incoming.state = InState::Receiving {
                accepted: offset,
                started: false,
                expected: offset,
                confirmed: offset,
                credited: offset,
                window,
                done: false,
            };
            key = incoming.issue_key.take();
        }
        if let Some(key) = key {
            // Immediately before the ACCEPT: nothing else goes between them.
            self.queue(&Frame::ResumeKey { id, key }, now);
        }
        self.queue(
            &Frame::Accept {
                id,
                offset,
                window,
                prefix_hash,
            },
            now,
        );
    }

    /// Declines an offered file.
    pub fn reject(
        &mut self,
        now: Instant,
        id: TransferId,
        code: Code,
        reason: &str,
    ) -> Result<(), Misuse> {
        if !self.is_unanswered_tree(id) {
            self.incoming_offered(id)?;
        }
        self.transfers.remove(&id);
        self.queue(
            &Frame::Reject {
                id,
                code,
                reason: truncated(reason),
            },
            now,
        );
        self.end(
            id,
            Outcome::Rejected {
                code,
                reason: reason.into(),
            },
        );
        Ok(())
    }

    /// Cancels a transfer in either direction.
    pub fn cancel(
        &mut self,
        now: Instant,
        id: TransferId,
        code: Code,
        reason: &str,
    ) -> Result<(), Misuse> {
        // A tree of ours still queued was never offered: nothing to tell.
        let unheard = self.is_queued_tree(id);
        if self.transfers.remove(&id).is_none() {
            return Err(Misuse::NoSuchTransfer(id));
        }
        self.outbox.discard_data(id);
        if self.phase == Phase::Open && !unheard {
            self.queue(
                &Frame::Cancel {
                    id,
                    code,
                    reason: truncated(reason),
                },
                now,
            );
        }
        self.end(
            id,
            Outcome::Cancelled {
                code,
                reason: reason.into(),
                by_peer: false,
            },
        );
        self.release_queued_tree(now);
        self.fill_requests();
        Ok(())
    }

    /// Answers the oldest [`TransferEvent::NeedChunk`] of transfer `id` with
    /// exactly the bytes it asked for.
    pub fn supply_chunk(
        &mut self,
        now: Instant,
        id: TransferId,
        offset: u64,
        data: Bytes,
    ) -> Result<(), Misuse> {
        let unrequested = Misuse::UnrequestedChunk {
            id,
            offset,
            len: data.len(),
        };
        let Some(transfer) = self.transfers.get_mut(&id) else {
            return Err(Misuse::NoSuchTransfer(id));
        };
        match transfer {
            Transfer::Outgoing(out) => match &mut out.state {
                OutState::VerifyingPrefix {
                    target,
                    theirs,
                    window,
                    reads,
                } => {
                    if !reads.answer(offset, data.len()) {
                        return Err(unrequested);
                    }
                    out.hasher.update(&data);
                    if reads.next == *target {
                        let matches = out.hasher.finalize().as_bytes() == theirs;
                        let start = if matches { *target } else { 0 };
                        if !matches {
                            out.hasher.reset();
                        }
                        out.state = OutState::Sending {
                            confirmed: start,
                            window: *window,
                            reads: Reads::starting_at(start),
                        };
                        self.maybe_done(now, id);
                    }
                }
                OutState::Sending { reads, .. } if !out.relay => {
                    if !reads.answer(offset, data.len()) {
                        return Err(unrequested);
                    }
                    out.hasher.update(&data);
                    self.outbox.push_data(id, offset, data);
                    self.last_send = now;
                    self.maybe_done(now, id);
                }
                _ => return Err(unrequested),
            },
            Transfer::Incoming(incoming) => {
                let InState::HashingPrefix { target, reads } = &mut incoming.state else {
                    return Err(unrequested);
                };
                if !reads.answer(offset, data.len()) {
                    return Err(unrequested);
                }
                let target = *target;
                let done = reads.next == target;
                let hasher = incoming.hasher.get_or_insert_with(blake3::Hasher::new);
                hasher.update(&data);
                if done {
                    let prefix = *hasher.finalize().as_bytes();
                    let window = self.config.window;
                    self.send_accept(now, id, target, window, prefix);
                }
            }
            // A tree asks for no chunks here (see `supply_tree_chunk`).
            Transfer::Tree(_) | Transfer::OutTree(_) => return Err(unrequested),
        }
        self.fill_requests();
        Ok(())
    }

    /// Hub: pushes relayed file bytes to the recipient.
    pub(crate) fn relay_chunk(&mut self, now: Instant, id: TransferId, offset: u64, data: Bytes) {
        if let Some(Transfer::Outgoing(out)) = self.transfers.get_mut(&id) {
            if let (
                true,
                OutState::Sending {
                    confirmed, reads, ..
                },
            ) = (out.relay, &mut out.state)
            {
                if offset == 0 {
                    // The sender restarted (prefix mismatch): so will the
                    // recipient's confirmations.
                    *confirmed = 0;
                }
                // What the recipient may confirm at most (see CREDIT).
                *reads = Reads::starting_at(offset + data.len() as u64);
                self.outbox.push_data(id, offset, data);
                self.last_send = now;
            }
        }
    }

    /// Hub: passes the sender's `DONE` on to the recipient.
    pub(crate) fn relay_done(&mut self, now: Instant, id: TransferId, hash: Hash) {
        if let Some(Transfer::Outgoing(out)) = self.transfers.get_mut(&id) {
            if let OutState::Sending { confirmed, .. } = out.state {
                out.state = OutState::DoneSent { confirmed };
                self.outbox.push_after_data(id, &Frame::Done { id, hash });
                self.last_send = now;
            }
        }
    }

    /// Queues `DONE` once every byte of a local file has been queued.
    fn maybe_done(&mut self, now: Instant, id: TransferId) {
        let Some(Transfer::Outgoing(out)) = self.transfers.get_mut(&id) else {
            return;
        };
        if let OutState::Sending {
            confirmed, reads, ..
        } = &out.state
        {
            if !out.relay && reads.next == out.size && reads.pending.is_empty() {
                let hash = *out.hasher.finalize().as_bytes();
                out.state = OutState::DoneSent {
                    confirmed: *confirmed,
                };
                self.outbox.push_after_data(id, &Frame::Done { id, hash });
                self.last_send = now;
            }
        }
    }

    /// Acknowledges that bytes `0..upto` of incoming transfer `id` are
    /// stored. This is what lets the sender send more.
    pub fn confirm_written(
        &mut self,
        now: Instant,
        id: TransferId,
        upto: u64,
    ) -> Result<(), Misuse> {
        if self.is_incoming_tree(id) {
            return self.confirm_tree_written(now, id, upto);
        }
        let Some(Transfer::Incoming(incoming)) = self.transfers.get_mut(&id) else {
            return Err(Misuse::NoSuchTransfer(id));
        };
        let size = incoming.size;
        let InState::Receiving {
            expected,
            confirmed,
            credited,
            window,
            ..
        } = &mut incoming.state
        else {
            return Err(Misuse::NoSuchTransfer(id));
        };
        if upto > *expected {
            return Err(Misuse::OverConfirmed {
                id,
                confirmed: upto,
                delivered: *expected,
            });
        }
        if upto <= *confirmed {
            return Ok(());
        }
        *confirmed = upto;
        let step = u64::from(*window / 4).max(1);
        if upto - *credited >= step || upto == size {
            *credited = upto;
            self.queue(&Frame::Credit { id, written: upto }, now);
        }
        Ok(())
    }

    /// After [`TransferEvent::Received`]: reports whether the file was stored
    /// under its final name (`Ok`) or not (`Err` with a code such as
    /// [`Code::IO_ERROR`] and a reason). Sends `VERIFIED` or `FAILED`.
    pub fn finish_receive(
        &mut self,
        now: Instant,
        id: TransferId,
        result: Result<(), (Code, String)>,
    ) -> Result<(), Misuse> {
        let credited = match self.transfers.get(&id) {
            Some(Transfer::Tree(_)) => self.finish_tree(id).ok_or(Misuse::NoSuchTransfer(id))?,
            Some(Transfer::Incoming(Incoming {
                state:
                    InState::Receiving {
                        done: true,
                        credited,
                        ..
                    },
                size,
                ..
            })) => (*credited < *size).then_some(*size),
            _ => return Err(Misuse::NoSuchTransfer(id)),
        };
        self.transfers.remove(&id);
        match result {
            Ok(()) => {
                // Storing the file confirms every byte: let the sender's
                // progress reach the end before it hears VERIFIED.
                if let Some(size) = credited {
                    self.queue(&Frame::Credit { id, written: size }, now);
                }
                self.queue(&Frame::Verified { id }, now);
                self.end(id, Outcome::Verified);
            }
            Err((code, reason)) => {
                self.queue(
                    &Frame::Failed {
                        id,
                        code,
                        reason: truncated(&reason),
                    },
                    now,
                );
                self.end(id, Outcome::Failed { code, reason });
            }
        }
        Ok(())
    }

    // ----- output --------------------------------------------------------

    /// The next bytes to write to the socket.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        let bytes = self.outbox.pop();
        self.output_started |= bytes.is_some();
        // The data lane drained below its budget: ask for more file data.
        if self.outbox.data_len() < 2 * self.chunk_size as usize {
            self.fill_requests();
        }
        bytes
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next; `None`
    /// once closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Closed {
            return None;
        }
        let idle = self.last_recv + self.config.idle_timeout;
        [Some(idle), self.handshake_deadline, self.keepalive_at()]
            .into_iter()
            .flatten()
            .min()
    }

    fn keepalive_at(&self) -> Option<Instant> {
        // Clients keep the link alive well inside the server's idle timeout.
        (self.role == Role::Client && self.phase == Phase::Open).then(|| {
            let server_idle = Duration::from_millis(u64::from(self.settings.idle_timeout_ms));
            self.last_send + server_idle.min(self.config.idle_timeout) / 3
        })
    }

    // ----- internals -----------------------------------------------------

    fn send_preamble(&mut self) {
        if !self.preamble_sent {
            self.preamble_sent = true;
            self.outbox.push_shared(&Bytes::from_static(&PREAMBLE));
        }
    }

    fn queue(&mut self, frame: &Frame, now: Instant) {
        self.outbox.push(frame);
        self.last_send = now;
    }

    fn ensure_open(&self) -> Result<(), Misuse> {
        match self.phase {
            Phase::Open => Ok(()),
            Phase::Closed => Err(Misuse::Closed),
            _ => Err(Misuse::NotReady),
        }
    }

    fn check_chat(&self, role: Role, text: &str) -> Result<(), Misuse> {
        if self.role != role {
            return Err(Misuse::InvalidArgument(
                "a server does not chat as a client",
            ));
        }
        self.ensure_open()?;
        let max = self.settings.max_message as usize;
        if text.len() > max {
            return Err(Misuse::MessageTooLong {
                len: text.len(),
                max,
            });
        }
        Ok(())
    }

    fn fail(&mut self, error: Error, now: Instant) {
        if self.phase == Phase::Closed {
            return;
        }
        let reason = error.to_string();
        // A non-ferry peer still gets a parseable answer if it is one after all.
        self.send_preamble();
        self.queue(
            &Frame::Error {
                code: error.code(),
                reason: truncated(&reason),
            },
            now,
        );
        self.close(error.code(), reason, false);
    }

    fn close(&mut self, code: Code, reason: String, by_peer: bool) {
        self.phase = Phase::Closed;
        self.handshake_deadline = None;
        self.inbuf.clear();
        let ids: Vec<TransferId> = self.transfers.keys().copied().collect();
        for id in ids {
            self.transfers.remove(&id);
            self.outbox.discard_data(id);
            self.end(
                id,
                Outcome::Cancelled {
                    code,
                    reason: reason.clone(),
                    by_peer,
                },
            );
        }
        self.events.push_back(Event::Closed {
            code,
            reason,
            by_peer,
        });
    }

    fn end(&mut self, id: TransferId, outcome: Outcome) {
        self.events
            .push_back(Event::Transfer(TransferEvent::Ended { id, outcome }));
    }

    fn emit(&mut self, event: TransferEvent) {
        self.events.push_back(Event::Transfer(event));
    }

    fn handle_frame(&mut self, frame: Frame, now: Instant) -> Result<(), Error> {
        let frame_name = frame.name();
        let unexpected = |state: &'static str| -> Error {
            Violation::UnexpectedFrame {
                frame: frame_name,
                state,
            }
            .into()
        };
        // A RESUME holds only for the frame right after it.
        let resume = self.pending_resume.take();
        match (self.phase, self.role, frame) {
            // Unknown extensions are skipped, except that a server takes
            // nothing but HELLO before it has welcomed the client (and a
            // client has no transfer to resume before it is welcomed).
            (Phase::Open, _, Frame::Extension { .. } | Frame::Reclaim { .. })
            | (Phase::Open, Role::Server, Frame::Session { .. } | Frame::History { .. })
            | (
                Phase::Handshake,
                Role::Client,
                Frame::Extension { .. }
                | Frame::Resume { .. }
                | Frame::ResumeKey { .. }
                | Frame::Session { .. }
                | Frame::Reclaim { .. }
                | Frame::History { .. }
                | Frame::Features { .. },
            ) => Ok(()),
            (Phase::Open, Role::Client, Frame::Features { bits }) => {
                self.peer_features = bits;
                self.events.push_back(Event::Features { bits });
                Ok(())
            }
            // A server answers a client's first FEATURES with its own, at
            // once (`docs/PROTOCOL.md` §6.12.1); later ones are ignored.
            (Phase::Open, Role::Server, Frame::Features { bits }) => {
                if !self.features_answered {
                    self.features_answered = true;
                    self.peer_features = bits;
                    let ours = self.own_features();
                    self.queue(&Frame::Features { bits: ours }, now);
                    if ours & features::TREES != 0 {
                        self.speaks_trees = true;
                    }
                }
                Ok(())
            }
            (Phase::Open, Role::Client, Frame::Session { secret }) => {
                self.events.push_back(Event::Session { secret });
                Ok(())
            }
            (
                Phase::Open,
                Role::Client,
                Frame::History {
                    time_ms,
                    from,
                    text,
                },
            ) => {
                self.events.push_back(Event::History {
                    time_ms,
                    from,
                    text,
                });
                Ok(())
            }
            // The one extension a server takes before HELLO, once.
            (Phase::Handshake, Role::Server, Frame::Reclaim { secret })
                if self.reclaim.is_none() =>
            {
                self.reclaim = Some(secret);
                Ok(())
            }
            (Phase::Open, _, Frame::Resume { id, key }) => {
                self.pending_resume = Some((id, key));
                Ok(())
            }
            (Phase::Open, _, Frame::ResumeKey { id, key }) => {
                self.on_resume_key(id, key);
                Ok(())
            }
            (_, _, Frame::Error { code, reason }) => {
                self.close(code, reason.to_string(), true);
                Ok(())
            }
            (
                Phase::Handshake,
                Role::Server,
                Frame::Hello {
                    versions,
                    name,
                    room,
                    token,
                },
            ) => {
                if !versions.contains(&VERSION) {
                    self.phase = Phase::HelloPending;
                    let reason = format!("this server speaks version {VERSION} only");
                    // `refuse` cannot fail in HelloPending on a server.
                    let _ = self.refuse(now, Code::VERSION_UNSUPPORTED, &reason);
                    return Ok(());
                }
                self.version = VERSION;
                self.phase = Phase::HelloPending;
                let reclaim = self.reclaim.take();
                self.events.push_back(Event::Hello {
                    name,
                    room,
                    token,
                    reclaim,
                });
                Ok(())
            }
            (
                Phase::Handshake,
                Role::Client,
                Frame::Welcome {
                    version,
                    name,
                    room,
                    settings,
                },
            ) => {
                if version != VERSION {
                    return Err(Violation::VersionNotOffered(version).into());
                }
                if settings.max_frame < 4096
                    || settings.chunk_size == 0
                    || settings.window == 0
                    || settings.idle_timeout_ms == 0
                {
                    return Err(Malformed::InvalidValue {
                        frame: "WELCOME",
                        field: "settings",
                        why: "max_frame must be at least 4096; chunk_size, window and idle_timeout_ms at least 1",
                    }
                    .into());
                }
                self.settings = settings;
                self.chunk_size = self
                    .config
                    .effective_chunk_size(settings.max_frame)
                    .min(settings.chunk_size);
                self.name = name.clone();
                self.room = room.clone();
                self.phase = Phase::Open;
                self.handshake_deadline = None;
                self.events.push_back(Event::Welcomed {
                    name,
                    room,
                    settings,
                });
                Ok(())
            }
            (Phase::Handshake, Role::Client, Frame::Refuse { code, reason }) => {
                self.close(code, reason.to_string(), true);
                Ok(())
            }
            (Phase::Handshake | Phase::HelloPending, _, _) => {
                Err(unexpected("before the handshake completed"))
            }
            (Phase::Open, _, Frame::Ping { nonce }) => {
                self.queue(&Frame::Pong { nonce }, now);
                Ok(())
            }
            (Phase::Open, _, Frame::Pong { nonce }) => {
                if let Some((sent_nonce, sent_at)) = self.ping {
                    if sent_nonce == nonce {
                        self.ping = None;
                        let rtt = now.saturating_duration_since(sent_at);
                        self.events.push_back(Event::Pong { rtt });
                    }
                }
                Ok(())
            }
            (Phase::Open, _, Frame::Bye) => {
                self.close(Code::QUIT, "the peer said goodbye".into(), true);
                Ok(())
            }
            (Phase::Open, Role::Client, frame) => match frame {
                Frame::Message { seq, from, text } => {
                    self.events.push_back(Event::Message { seq, from, text });
                    Ok(())
                }
                Frame::Joined { seq, name } => {
                    self.events.push_back(Event::Joined { seq, name });
                    Ok(())
                }
                Frame::Left { seq, name, code } => {
                    self.events.push_back(Event::Left { seq, name, code });
                    Ok(())
                }
                Frame::Members { names } => {
                    self.events.push_back(Event::Members { names });
                    Ok(())
                }
                Frame::DirectFrom { from, text } => {
                    self.events.push_back(Event::Direct { from, text });
                    Ok(())
                }
                Frame::Bounce { code, reason } => {
                    self.events.push_back(Event::Bounced { code, reason });
                    Ok(())
                }
                frame => self.handle_transfer_frame(frame, now, "from a server", resume),
            },
            (Phase::Open, Role::Server, frame) => match frame {
                Frame::Say { text } => {
                    self.events.push_back(Event::Say { text });
                    Ok(())
                }
                Frame::Who => {
                    self.events.push_back(Event::Who);
                    Ok(())
                }
                Frame::DirectTo { to, text } => {
                    self.events.push_back(Event::DirectTo { to, text });
                    Ok(())
                }
                frame => self.handle_transfer_frame(frame, now, "from a client", resume),
            },
            (Phase::Preamble { .. } | Phase::Closed, _, _) => Ok(()),
        }
    }

    /// `RESUME_KEY`: kept (by the application) only for an offer of ours
    /// still waiting for its answer. Anything else is ignored: it is an
    /// extension frame, and a late or stray one harms nobody.
    fn on_resume_key(&mut self, id: TransferId, key: ResumeKey) {
        let offered = match self.transfers.get(&id) {
            Some(Transfer::Outgoing(Outgoing {
                state: OutState::Offered,
                ..
            })) => true,
            Some(Transfer::OutTree(tree)) => tree.is_offered(),
            _ => false,
        };
        if offered {
            self.emit(TransferEvent::ResumeKey { id, key });
        }
    }

    /// Whether `id` was allocated by the peer (its parity is theirs).
    fn is_peer_id(&self, id: TransferId) -> bool {
        let ours = self.next_local_id & 1;
        id & 1 != ours
    }

    /// Looks up the transfer a frame names. `Ok(None)`: it existed and has
    /// ended, so late frames for it are ignored.
    fn named(
        &mut self,
        frame: &'static str,
        id: TransferId,
        from_peer_offer: bool,
    ) -> Result<Option<&mut Transfer>, Error> {
        let unknown = Violation::UnknownTransfer { frame, id };
        if from_peer_offer != self.is_peer_id(id) {
            // An id of the other direction: if that transfer was offered,
            // the frame comes from the wrong party of it (§6.10.1).
            let offered = if from_peer_offer {
                id < self.next_local_id
            } else {
                self.highest_peer_id.is_some_and(|h| id <= h)
            };
            if !offered {
                return Err(unknown.into());
            }
            let (sender, receiver) = if from_peer_offer {
                ("receiver", "sender")
            } else {
                ("sender", "receiver")
            };
            return Err(Violation::WrongParty {
                frame,
                id,
                sender,
                receiver,
            }
            .into());
        }
        let existed = if from_peer_offer {
            self.highest_peer_id.is_some_and(|h| id <= h)
        } else {
            id < self.next_local_id
        };
        match self.transfers.get_mut(&id) {
            Some(t) => Ok(Some(t)),
            None if existed => Ok(None),
            None => Err(unknown.into()),
        }
    }

    fn handle_transfer_frame(
        &mut self,
        frame: Frame,
        now: Instant,
        state: &'static str,
        resume: Option<(TransferId, ResumeKey)>,
    ) -> Result<(), Error> {
        let name = frame.name();
        if self.on_tree_frame(now, &frame)? || self.on_tree_answer(now, &frame)? {
            self.fill_requests();
            return Ok(());
        }
        match frame {
            Frame::TreeOffer {
                id,
                total_size,
                manifest_len,
                name,
                peer,
            } => self.on_tree_offer(now, id, total_size, manifest_len, name, peer, resume),
            Frame::TreeManifest { id, part } => self.on_tree_manifest(now, id, part),
            Frame::Offer {
                id,
                size,
                name: file,
                peer,
            } => {
                let fresh = self.is_peer_id(id) && self.highest_peer_id.is_none_or(|h| id > h);
                if !fresh {
                    return Err(Violation::BadTransferId { id }.into());
                }
                self.highest_peer_id = Some(id);
                if let Err(e) = check_file_name(&file) {
                    self.queue(
                        &Frame::Reject {
                            id,
                            code: Code::BAD_FILE_NAME,
                            reason: truncated(&e.to_string()),
                        },
                        now,
                    );
                    return Ok(());
                }
                if self.transfers.len() >= self.config.max_transfers {
                    let limit = self.config.max_transfers;
                    self.queue(
                        &Frame::Reject {
                            id,
                            code: Code::TOO_MANY_TRANSFERS,
                            reason: truncated(&format!("at most {limit} transfers at once")),
                        },
                        now,
                    );
                    return Ok(());
                }
                self.transfers.insert(
                    id,
                    Transfer::Incoming(Incoming {
                        size,
                        hasher: None,
                        state: InState::Offered,
                        issue_key: None,
                    }),
                );
                let resume = resume.filter(|&(of, _)| of == id).map(|(_, key)| key);
                self.emit(TransferEvent::Offered {
                    id,
                    name: file,
                    size,
                    peer,
                    resume,
                });
                Ok(())
            }
            Frame::Accept {
                id,
                offset,
                window,
                prefix_hash,
            } => {
                let Some(out) = self.offered_outgoing(name, id)? else {
                    return Ok(());
                };
                if offset > out.size {
                    return Err(Violation::BadResumeOffset {
                        id,
                        offset,
                        size: out.size,
                    }
                    .into());
                }
                if window == 0 {
                    return Err(Malformed::InvalidValue {
                        frame: name,
                        field: "window",
                        why: "must be at least 1",
                    }
                    .into());
                }
                out.state = if offset > 0 && !out.relay {
                    OutState::VerifyingPrefix {
                        target: offset,
                        theirs: prefix_hash,
                        window,
                        reads: Reads::starting_at(0),
                    }
                } else {
                    OutState::Sending {
                        confirmed: offset,
                        window,
                        reads: Reads::starting_at(offset),
                    }
                };
                self.emit(TransferEvent::Accepted {
                    id,
                    offset,
                    window,
                    prefix_hash,
                });
                self.maybe_done(now, id);
                Ok(())
            }
            Frame::Reject { id, code, reason } => {
                if self.offered_outgoing(name, id)?.is_none() {
                    return Ok(());
                }
                self.transfers.remove(&id);
                self.end(
                    id,
                    Outcome::Rejected {
                        code,
                        reason: reason.to_string(),
                    },
                );
                Ok(())
            }
            Frame::Data { id, offset, data } => {
                let max_chunk = self.settings.chunk_size as usize;
                let Some(Transfer::Incoming(incoming)) = self.named(name, id, true)? else {
                    return Ok(());
                };
                let size = incoming.size;
                let InState::Receiving {
                    accepted,
                    started,
                    expected,
                    confirmed,
                    credited,
                    window,
                    done: false,
                } = &mut incoming.state
                else {
                    return Err(Violation::UnexpectedFrame {
                        frame: name,
                        state: "before ACCEPT or after DONE",
                    }
                    .into());
                };
                let mut restarted = false;
                if !*started && offset == 0 && *accepted > 0 {
                    // The sender's prefix differed from ours: start over.
                    *expected = 0;
                    *confirmed = 0;
                    *credited = 0;
                    if let Some(h) = incoming.hasher.as_mut() {
                        h.reset();
                    }
                    restarted = true;
                }
                *started = true;
                let len = data.len();
                let end = offset.saturating_add(len as u64);
                if offset != *expected || len == 0 || len > max_chunk || end > size {
                    return Err(Violation::DataOutOfOrder {
                        id,
                        offset,
                        len,
                        expected: *expected,
                        size,
                    }
                    .into());
                }
                let limit = confirmed.saturating_add(u64::from(*window));
                if end > limit {
                    return Err(Violation::FlowControl { id, end, limit }.into());
                }
                let min = data_floor(max_chunk, *window);
                if (len as u64) < min && end != size {
                    return Err(Violation::DataTooSmall { id, len, min }.into());
                }
                *expected = end;
                if let Some(h) = incoming.hasher.as_mut() {
                    h.update(&data);
                }
                if restarted {
                    self.emit(TransferEvent::Restarted { id });
                }
                // Kept until written or relayed: a short frame's payload
                // must not keep the neighbours it was read with alive.
                let data = if HEADER_LEN + DATA_OVERHEAD + len < SHARED_BELOW {
                    Bytes::copy_from_slice(&data)
                } else {
                    data
                };
                self.emit(TransferEvent::Chunk { id, offset, data });
                Ok(())
            }
            Frame::Credit { id, written } => {
                let Some(Transfer::Outgoing(out)) = self.named(name, id, false)? else {
                    return Ok(());
                };
                let size = out.size;
                // Data queued so far (from the accepted offset): no receiver
                // can have stored more.
                let sent = match &out.state {
                    OutState::Sending { reads, .. } => reads.next,
                    _ => size,
                };
                let (OutState::Sending { confirmed, .. } | OutState::DoneSent { confirmed }) =
                    &mut out.state
                else {
                    return Err(Violation::UnexpectedFrame {
                        frame: name,
                        state: "before sending",
                    }
                    .into());
                };
                if written > sent && written <= size {
                    return Err(Violation::CreditBeyondData { id, written, sent }.into());
                }
                if written < *confirmed || written > size {
                    return Err(Violation::BadCredit {
                        id,
                        written,
                        previous: *confirmed,
                        size,
                    }
                    .into());
                }
                // A credit that opens the window by a frame's worth is paid
                // for by the data it lets through; a trickle of tiny or
                // repeated credits is control traffic like any other.
                let opens = written - *confirmed;
                let free = opens >= u64::from(MIN_DATA) || (written == size && opens > 0);
                *confirmed = written;
                if !free {
                    self.take_frame_token(now)?;
                }
                self.emit(TransferEvent::Progress {
                    id,
                    confirmed: written,
                    size,
                });
                Ok(())
            }
            Frame::Done { id, hash } => {
                let Some(Transfer::Incoming(incoming)) = self.named(name, id, true)? else {
                    return Ok(());
                };
                let InState::Receiving {
                    expected,
                    done: done @ false,
                    ..
                } = &mut incoming.state
                else {
                    return Err(Violation::UnexpectedFrame {
                        frame: name,
                        state: "before ACCEPT or twice",
                    }
                    .into());
                };
                let expected = *expected;
                if expected != incoming.size {
                    return Err(Violation::EarlyDone {
                        id,
                        received: expected,
                        size: incoming.size,
                    }
                    .into());
                }
                let matches = incoming
                    .hasher
                    .as_ref()
                    .is_none_or(|h| h.finalize().as_bytes() == &hash);
                if matches {
                    *done = true;
                    self.emit(TransferEvent::Received { id, hash });
                } else {
                    self.transfers.remove(&id);
                    let reason = "the file's BLAKE3 hash does not match the sender's".to_string();
                    self.queue(
                        &Frame::Failed {
                            id,
                            code: Code::HASH_MISMATCH,
                            reason: truncated(&reason),
                        },
                        now,
                    );
                    self.end(
                        id,
                        Outcome::Failed {
                            code: Code::HASH_MISMATCH,
                            reason,
                        },
                    );
                }
                Ok(())
            }
            Frame::Verified { id } => self.finish_outgoing(name, id, Outcome::Verified),
            Frame::Failed { id, code, reason } => self.finish_outgoing(
                name,
                id,
                Outcome::Failed {
                    code,
                    reason: reason.to_string(),
                },
            ),
            Frame::Cancel { id, code, reason } => {
                let peers = self.is_peer_id(id);
                if self.named(name, id, peers)?.is_none() {
                    return Ok(());
                }
                self.transfers.remove(&id);
                self.outbox.discard_data(id);
                self.end(
                    id,
                    Outcome::Cancelled {
                        code,
                        reason: reason.to_string(),
                        by_peer: true,
                    },
                );
                self.release_queued_tree(now);
                Ok(())
            }
            other => Err(Violation::UnexpectedFrame {
                frame: other.name(),
                state,
            }
            .into()),
        }
    }

    /// Our offer that `ACCEPT` or `REJECT` answers: it must still be waiting
    /// for its answer. `Ok(None)`: it has ended, ignore the frame.
    fn offered_outgoing(
        &mut self,
        frame: &'static str,
        id: TransferId,
    ) -> Result<Option<&mut Outgoing>, Error> {
        let Some(Transfer::Outgoing(out)) = self.named(frame, id, false)? else {
            return Ok(None);
        };
        if !matches!(out.state, OutState::Offered) {
            return Err(Violation::UnexpectedFrame {
                frame,
                state: "after the offer was answered",
            }
            .into());
        }
        Ok(Some(out))
    }

    /// `VERIFIED` or `FAILED` from the receiver: allowed only after our `DONE`.
    fn finish_outgoing(
        &mut self,
        frame: &'static str,
        id: TransferId,
        outcome: Outcome,
    ) -> Result<(), Error> {
        let Some(Transfer::Outgoing(out)) = self.named(frame, id, false)? else {
            return Ok(());
        };
        if !matches!(out.state, OutState::DoneSent { .. }) {
            return Err(Violation::UnexpectedFrame {
                frame,
                state: "before DONE",
            }
            .into());
        }
        self.transfers.remove(&id);
        self.end(id, outcome);
        Ok(())
    }

    /// Asks the application for the chunks that can be used now: prefixes to
    /// hash, and file data within the flow-control window, round-robin
    /// between transfers and with a small budget so memory stays flat.
    fn fill_requests(&mut self) {
        if self.phase != Phase::Open || self.transfers.is_empty() {
            return;
        }
        const PREFIX_READS_AHEAD: usize = 2;
        let chunk = self.chunk_size;
        let budget = 4 * u64::from(chunk);
        let mut requests = Vec::new();
        // Prefix hashing: a couple of reads in flight per transfer.
        for (&id, transfer) in self.transfers.iter_mut() {
            let (target, reads) = match transfer {
                Transfer::Outgoing(Outgoing {
                    state: OutState::VerifyingPrefix { target, reads, .. },
                    ..
                })
                | Transfer::Incoming(Incoming {
                    state: InState::HashingPrefix { target, reads },
                    ..
                }) => (*target, reads),
                _ => continue,
            };
            while reads.requested < target && reads.pending.len() < PREFIX_READS_AHEAD {
                let len = (target - reads.requested).min(u64::from(chunk)) as u32;
                let offset = reads.request(len);
                requests.push(TransferEvent::NeedChunk { id, offset, len });
            }
        }
        // File data: one chunk per transfer per round while the budget lasts.
        let mut in_flight = self.outbox.data_len() as u64
            + self
                .transfers
                .values()
                .map(|t| match t {
                    Transfer::Outgoing(Outgoing {
                        state: OutState::Sending { reads, .. },
                        ..
                    }) => reads.unsupplied(),
                    _ => 0,
                })
                .sum::<u64>();
        let mut progressed = true;
        while progressed && in_flight < budget {
            progressed = false;
            let cursor = self.send_cursor;
            let order: Vec<TransferId> = self
                .transfers
                .range(cursor..)
                .chain(self.transfers.range(..cursor))
                .map(|(&id, _)| id)
                .collect();
            for id in order {
                if in_flight >= budget {
                    break;
                }
                let Some(Transfer::Outgoing(out)) = self.transfers.get_mut(&id) else {
                    continue;
                };
                if out.relay {
                    continue;
                }
                let size = out.size;
                let OutState::Sending {
                    confirmed,
                    window,
                    reads,
                } = &mut out.state
                else {
                    continue;
                };
                let limit = size.min(confirmed.saturating_add(u64::from(*window)));
                if reads.requested >= limit {
                    continue;
                }
                let len = (limit - reads.requested).min(u64::from(chunk)) as u32;
                // Receivers refuse a frame under the floor that does not end
                // the file: wait for the window to open further.
                let ends_file = reads.requested + u64::from(len) == size;
                if u64::from(len) < data_floor(chunk as usize, *window) && !ends_file {
                    continue;
                }
                let offset = reads.request(len);
                in_flight += u64::from(len);
                requests.push(TransferEvent::NeedChunk { id, offset, len });
                self.send_cursor = id.wrapping_add(1);
                progressed = true;
            }
        }
        requests.extend(self.tree_requests(chunk, budget));
        for request in requests {
            self.emit(request);
        }
    }
}

/// The smallest `DATA` payload that need not end the file, for a receiver
/// taking chunks up to `max_chunk` within `window`.
fn data_floor(max_chunk: usize, window: u32) -> u64 {
    u64::from(MIN_DATA.min(window)).min(max_chunk as u64)
}

/// Reason strings go on the wire in a u16-length field; keep them short and
/// cut on a character boundary.
fn truncated(reason: &str) -> Text {
    const MAX: usize = 1024;
    if reason.len() <= MAX {
        return Text::from(reason);
    }
    let mut end = MAX;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Text::from(&reason[..end])
}
