//! The Noise layer: a handshake keyed by the shared secret, then sealed
//! datagrams with explicit nonces and a replay window (PROTOCOL.md §9.7).

use bytes::{BufMut, Bytes, BytesMut};
use ferry_core::datagram::MAX_DATAGRAM;
use snow::params::{CipherChoice, DHChoice, HashChoice, NoiseParams};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use snow::{Builder, HandshakeState, StatelessTransportState};
use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};
use zeroize::Zeroize;
/// The Noise protocol name (§9.7.1).
pub const PATTERN: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";

/// The BLAKE3 `derive_key` context that turns the secret's text into the
/// 32-byte pre-shared key (§9.7.2).
pub const PSK_CONTEXT: &str = "ferry 2026-12-02 UDP chat Noise_NNpsk0 pre-shared key";

/// The Noise prologue: both peers hash it into the handshake, so a
/// handshake of another protocol or version never completes with ours.
pub const PROLOGUE: &[u8] = b"ferry udp chat 1";

/// Frame types of the encrypted mode, in the datagram range (§9.7.3). A
/// clear-text ferry peer reads them as frames of a reserved type and drops
/// them; it never shows them as raw text.
pub mod noise_type {
    /// The initiator's handshake message (`-> psk, e`).
    pub const INIT: u8 = 0x48;
    /// The responder's handshake message (`<- e, ee`).
    pub const RESPONSE: u8 = 0x49;
    /// A sealed datagram: nonce, then ciphertext and tag.
    pub const DATA: u8 = 0x4A;
}

const HEADER_LEN: usize = 5;
/// A Noise handshake message of `NNpsk0` with an empty payload: an
/// ephemeral public key (32 bytes) and the tag of the empty payload (16).
const HANDSHAKE_LEN: usize = 48;
const NONCE_LEN: usize = 8;
const TAG_LEN: usize = 16;

/// Bytes a sealed datagram adds to its plaintext: header, nonce, tag.
pub const OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;

/// Longest plaintext datagram: what fits in [`MAX_DATAGRAM`] once sealed.
pub const MAX_PLAINTEXT: usize = MAX_DATAGRAM - OVERHEAD;

/// Plaintext datagrams kept while no channel is up; [`UdpChat::send`](crate::UdpChat::send)
/// refuses new messages past it.
pub const QUEUE_MAX: usize = 64;

/// First retransmission of a handshake message; it doubles every time.
pub const FIRST_RETRY: Duration = Duration::from_millis(200);

/// The initiator's retransmission interval stops doubling here: the other
/// peer may start much later, and should not wait long once it does.
pub const RETRY_CAP: Duration = Duration::from_secs(2);

/// Sends of one handshake response in all, unless its session is confirmed
/// first.
pub const RESPONSE_SENDS: u32 = 6;

/// Answered handshakes kept unconfirmed at once: a replayed INIT then
/// cannot push out the real one of a restarting peer.
pub const PENDING_MAX: usize = 4;

/// Nonces below the highest received that are still accepted (once each).
pub const REPLAY_WINDOW: u64 = 128;

/// Where the layer's randomness comes from: fills the buffer with bytes
/// from a cryptographically secure source (the adapters use the operating
/// system's). Called for 32 bytes, once per handshake started or answered.
pub type Entropy = Box<dyn FnMut(&mut [u8]) + Send>;

/// The pre-shared key, derived from the secret both users typed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 32]);

impl Secret {
    /// BLAKE3 `derive_key(`[`PSK_CONTEXT`]`, text)`. A secret people can
    /// guess can be found offline by whoever captured one handshake, as
    /// with any pre-shared key: use a long random one.
    pub fn from_text(text: &str) -> Secret {
        Secret(blake3::derive_key(PSK_CONTEXT, text.as_bytes()))
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // The key outlives nothing it protects: no copy left in freed memory.
        self.0.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key, not even in a panic message.
        f.write_str("Secret(..)")
    }
}

/// What [`Noise::handle_datagram`] made of a datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Received {
    /// An authenticated datagram's plaintext, for the peer above.
    Plaintext(Bytes),
    /// Handshake traffic, or the empty datagram that confirms a session:
    /// nothing for the peer above.
    Consumed,
    /// Failed authentication (or not a datagram of the encrypted mode at
    /// all); counted in [`Noise::unauthenticated`].
    Dropped,
    /// An authentic sealed datagram that arrived before: the network
    /// duplicated it, or someone replayed it. Not counted as failed
    /// authentication.
    Duplicate,
}

/// What the layer tells its application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoiseEvent {
    /// A session is confirmed: the handshake completed (again).
    Established,
}

/// 32 bytes of the adapter's entropy, handed to snow as its random source
/// for one handshake: snow draws the ephemeral key from it and nothing
/// else, so any further demand is refused rather than answered with
/// predictable bytes.
struct Drawn(Option<[u8; 32]>);

impl Drop for Drawn {
    fn drop(&mut self) {
        // Whoever reads this learns the ephemeral private key.
        self.0.zeroize();
    }
}

impl Random for Drawn {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        match &mut self.0 {
            Some(bytes) if dest.len() <= bytes.len() => {
                dest.copy_from_slice(&bytes[..dest.len()]);
                bytes.zeroize();
                self.0 = None;
                Ok(())
            }
            _ => Err(snow::Error::Rng),
        }
    }
}

/// snow's pure-Rust primitives, with the adapter's randomness.
struct Resolver(std::sync::Mutex<Option<[u8; 32]>>);

impl CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        let mut slot = self.0.lock().ok()?;
        let drawn = *slot;
        // `take` would leave the bytes behind the `None`.
        slot.zeroize();
        *slot = None;
        Some(Box::new(Drawn(drawn)))
    }
    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }
    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }
    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

/// Which nonces of one session arrived: the highest, and which of the
/// [`REPLAY_WINDOW`] below it.
#[derive(Debug, Default)]
struct ReplayWindow {
    highest: Option<u64>,
    /// Bit `i` set: `highest - 1 - i` arrived.
    below: u128,
}

impl ReplayWindow {
    /// Whether `nonce` may be new (checked before decrypting).
    fn fresh(&self, nonce: u64) -> bool {
        let Some(highest) = self.highest else {
            return true;
        };
        if nonce > highest {
            return true;
        }
        let back = highest - nonce;
        back != 0 && back <= REPLAY_WINDOW && self.below & (1u128 << (back - 1)) == 0
    }

    /// Records `nonce`, which [`fresh`](Self::fresh) accepted and which
    /// decrypted.
    fn insert(&mut self, nonce: u64) {
        match self.highest {
            Some(highest) if nonce <= highest => self.below |= 1u128 << (highest - nonce - 1),
            Some(highest) => {
                let shift = nonce - highest;
                self.below = if shift > REPLAY_WINDOW {
                    0
                } else {
                    // The old highest becomes bit `shift - 1`.
                    (self.below << (shift - 1) << 1) | (1 << (shift - 1))
                };
                self.highest = Some(nonce);
            }
            None => self.highest = Some(nonce),
        }
    }
}

/// One direction pair of keys from a completed handshake.
struct Session {
    transport: StatelessTransportState,
    next_nonce: u64,
    window: ReplayWindow,
}

impl Session {
    fn new(transport: StatelessTransportState) -> Session {
        Session {
            transport,
            next_nonce: 0,
            window: ReplayWindow::default(),
        }
    }

    fn seal(&mut self, plaintext: &[u8]) -> Option<Bytes> {
        let nonce = self.next_nonce;
        // 2^64 datagrams are never sent; snow refuses u64::MAX itself.
        self.next_nonce = self.next_nonce.checked_add(1)?;
        let body = NONCE_LEN + plaintext.len() + TAG_LEN;
        let mut out = BytesMut::zeroed(HEADER_LEN + body);
        out[0] = noise_type::DATA;
        // A body under MAX_DATAGRAM fits in a u32.
        out[1..HEADER_LEN].copy_from_slice(&(body as u32).to_be_bytes());
        out[HEADER_LEN..HEADER_LEN + NONCE_LEN].copy_from_slice(&nonce.to_be_bytes());
        let written = self
            .transport
            .write_message(nonce, plaintext, &mut out[HEADER_LEN + NONCE_LEN..])
            .ok()?;
        debug_assert_eq!(written, plaintext.len() + TAG_LEN);
        Some(out.freeze())
    }

    /// What a DATA body is under this session's keys. A nonce seen
    /// before is still authenticated before it counts as a duplicate, so
    /// that forged datagrams cannot pass for the network's harmless
    /// duplicates (both cost one decryption).
    fn open(&mut self, nonce: u64, ciphertext: &[u8]) -> Opened {
        let fresh = self.window.fresh(nonce);
        let mut plain = vec![0u8; ciphertext.len()];
        let Ok(n) = self.transport.read_message(nonce, ciphertext, &mut plain) else {
            return Opened::Forged;
        };
        if !fresh {
            return Opened::Duplicate;
        }
        self.window.insert(nonce);
        plain.truncate(n);
        Opened::Fresh(Bytes::from(plain))
    }
}

/// What [`Session::open`] found.
enum Opened {
    /// New and authentic: its plaintext.
    Fresh(Bytes),
    /// Authentic, but its nonce arrived before (or is older than the
    /// replay window can tell).
    Duplicate,
    /// Not sealed with this session's keys.
    Forged,
}

/// Our handshake in progress: waiting for the response to `datagram`.
struct Initiator {
    handshake: HandshakeState,
    datagram: Bytes,
    ephemeral: [u8; 32],
    interval: Duration,
    due: Instant,
}

/// A handshake we answered, not yet confirmed by a datagram sealed with
/// its keys.
struct Pending {
    session: Session,
    /// The INIT datagram answered, so that a retransmission of it gets the
    /// same response instead of a new handshake.
    init: Bytes,
    response: Bytes,
    sends: u32,
    interval: Duration,
    due: Option<Instant>,
}

/// The encryption layer of one peer. See the [crate documentation](crate)
/// and `docs/PROTOCOL.md` §9.7 for the rules it follows.
///
/// Drive it like the core's peer: after every
/// [`handle_datagram`](Self::handle_datagram),
/// [`handle_timeout`](Self::handle_timeout) or [`seal`](Self::seal), send
/// everything [`poll_transmit`](Self::poll_transmit) gives and read
/// [`poll_event`](Self::poll_event); call `handle_timeout` at
/// [`poll_timeout`](Self::poll_timeout) (calling it earlier is harmless).
/// Time never goes backwards.
pub struct Noise {
    params: NoiseParams,
    psk: Secret,
    entropy: Entropy,
    /// The confirmed session: everything is sealed with it.
    current: Option<Session>,
    initiator: Option<Initiator>,
    /// Answered handshakes, newest first, at most [`PENDING_MAX`].
    pending: VecDeque<Pending>,
    /// Ephemeral keys of INITs ignored because ours won the tie, newest
    /// first: a late copy of one is not answered once our session is up
    /// (its sender gave it up, and would only count our answer as a drop).
    outranked: VecDeque<[u8; 32]>,
    /// The RESPONSE that completed our last handshake as initiator: a
    /// retransmission of it means our confirmation was lost.
    completed_by: Option<Bytes>,
    /// The INIT behind the confirmed session when we answered it: a late
    /// copy is a duplicate, not a new handshake (its sender has our
    /// RESPONSE, or the session could not have been confirmed).
    confirmed_init: Option<Bytes>,
    queue: VecDeque<Bytes>,
    transmit: VecDeque<Bytes>,
    events: VecDeque<NoiseEvent>,
    unauthenticated: u64,
}

impl fmt::Debug for Noise {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Noise")
            .field("established", &self.current.is_some())
            .field("initiating", &self.initiator.is_some())
            .field("pending", &self.pending.len())
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl Noise {
    /// A layer keyed by `secret`; it starts a handshake at once (its first
    /// INIT is ready in [`poll_transmit`](Self::poll_transmit)).
    pub fn new(secret: &Secret, now: Instant, entropy: Entropy) -> Noise {
        let mut noise = Noise {
            // A constant that snow parses: checked by the tests.
            params: PATTERN.parse().expect("PATTERN is a valid Noise name"),
            psk: secret.clone(),
            entropy,
            current: None,
            initiator: None,
            pending: VecDeque::new(),
            outranked: VecDeque::new(),
            completed_by: None,
            confirmed_init: None,
            queue: VecDeque::new(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            unauthenticated: 0,
        };
        noise.initiate(now);
        noise
    }

    /// Whether a confirmed session exists.
    pub fn is_established(&self) -> bool {
        self.current.is_some()
    }

    /// Plaintext datagrams waiting for a channel.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Datagrams dropped because they failed authentication.
    pub fn unauthenticated(&self) -> u64 {
        self.unauthenticated
    }

    /// Handshakes answered and not yet confirmed by a datagram sealed with
    /// their keys: at most [`PENDING_MAX`].
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// INITs remembered as outranked by our own (so that a late copy is not
    /// answered): at most [`PENDING_MAX`]. For the fuzz harness, which
    /// checks every bound the layer keeps.
    #[doc(hidden)]
    pub fn outranked(&self) -> usize {
        self.outranked.len()
    }

    fn builder(&mut self) -> Builder<'_> {
        let mut ephemeral = [0u8; 32];
        (self.entropy)(&mut ephemeral);
        let resolver = Resolver(std::sync::Mutex::new(Some(ephemeral)));
        ephemeral.zeroize();
        Builder::with_resolver(self.params.clone(), Box::new(resolver))
    }

    fn initiate(&mut self, now: Instant) {
        let psk = zeroize::Zeroizing::new(self.psk.0);
        // psk() and prologue() fail only when set twice; the builder is new.
        let Ok(mut handshake) = self
            .builder()
            .psk(0, &psk)
            .and_then(|b| b.prologue(PROLOGUE))
            .and_then(|b| b.build_initiator())
        else {
            return;
        };
        let mut message = [0u8; HANDSHAKE_LEN];
        let Ok(HANDSHAKE_LEN) = handshake.write_message(&[], &mut message) else {
            return;
        };
        let datagram = handshake_datagram(noise_type::INIT, &message);
        let mut ephemeral = [0u8; 32];
        ephemeral.copy_from_slice(&message[..32]);
        self.transmit.push_back(datagram.clone());
        self.initiator = Some(Initiator {
            handshake,
            datagram,
            ephemeral,
            interval: FIRST_RETRY,
            due: now + FIRST_RETRY,
        });
    }

    /// Takes one datagram that arrived from the other peer.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) -> Received {
        let received = self.receive(now, datagram);
        if received == Received::Dropped {
            self.unauthenticated += 1;
        }
        received
    }

    fn receive(&mut self, now: Instant, datagram: &[u8]) -> Received {
        if datagram.len() > MAX_DATAGRAM {
            return Received::Dropped;
        }
        let Some((header, body)) = datagram.split_first_chunk::<HEADER_LEN>() else {
            return Received::Dropped;
        };
        let declared = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        if declared as usize != body.len() {
            return Received::Dropped;
        }
        match header[0] {
            noise_type::INIT if body.len() == HANDSHAKE_LEN => self.on_init(now, datagram, body),
            noise_type::RESPONSE if body.len() == HANDSHAKE_LEN => self.on_response(datagram, body),
            noise_type::DATA if body.len() >= NONCE_LEN + TAG_LEN => self.on_data(body),
            _ => Received::Dropped,
        }
    }

    fn on_init(&mut self, now: Instant, datagram: &[u8], body: &[u8]) -> Received {
        if let Some(pending) = self.pending.iter().find(|p| p.init == datagram) {
            self.transmit.push_back(pending.response.clone());
            return Received::Consumed;
        }
        if self.confirmed_init.as_deref() == Some(datagram) {
            return Received::Duplicate;
        }
        let psk = zeroize::Zeroizing::new(self.psk.0);
        let Ok(mut handshake) = self
            .builder()
            .psk(0, &psk)
            .and_then(|b| b.prologue(PROLOGUE))
            .and_then(|b| b.build_responder())
        else {
            return Received::Dropped;
        };
        let mut payload = [0u8; HANDSHAKE_LEN];
        // Authenticated before anything else, so that a wrong secret is
        // counted on both sides, whoever wins the tie below.
        if handshake.read_message(body, &mut payload) != Ok(0) {
            return Received::Dropped;
        }
        if let Some(initiator) = &self.initiator {
            // Both started: the larger ephemeral key stays initiator, and
            // the other peer answers it.
            if initiator.ephemeral.as_slice() > &body[..32] {
                let mut theirs = [0u8; 32];
                theirs.copy_from_slice(&body[..32]);
                if !self.outranked.contains(&theirs) {
                    self.outranked.truncate(PENDING_MAX - 1);
                    self.outranked.push_front(theirs);
                }
                return Received::Consumed;
            }
        } else if self.outranked.iter().any(|e| e.as_slice() == &body[..32]) {
            return Received::Consumed;
        }
        let mut message = [0u8; HANDSHAKE_LEN];
        if handshake.write_message(&[], &mut message) != Ok(HANDSHAKE_LEN) {
            return Received::Dropped;
        }
        let Ok(transport) = handshake.into_stateless_transport_mode() else {
            return Received::Dropped;
        };
        let response = handshake_datagram(noise_type::RESPONSE, &message);
        self.transmit.push_back(response.clone());
        self.initiator = None;
        self.pending.truncate(PENDING_MAX - 1);
        self.pending.push_front(Pending {
            session: Session::new(transport),
            init: Bytes::copy_from_slice(datagram),
            response,
            sends: 1,
            interval: FIRST_RETRY,
            due: Some(now + FIRST_RETRY),
        });
        // With no confirmed session, the answered one is the best there
        // is: what waits goes out now rather than after a round trip.
        self.flush();
        Received::Consumed
    }

    fn on_response(&mut self, datagram: &[u8], body: &[u8]) -> Received {
        if let Some(initiator) = &mut self.initiator {
            let mut payload = [0u8; HANDSHAKE_LEN];
            // On failure snow rolls the handshake back, so a forged
            // response does not spoil the real one still to come.
            if initiator.handshake.read_message(body, &mut payload) == Ok(0) {
                let Some(initiator) = self.initiator.take() else {
                    return Received::Dropped;
                };
                let Ok(transport) = initiator.handshake.into_stateless_transport_mode() else {
                    return Received::Dropped;
                };
                self.pending.clear();
                self.completed_by = Some(Bytes::copy_from_slice(datagram));
                self.confirmed_init = None;
                self.establish(Session::new(transport));
                self.confirm();
                return Received::Consumed;
            }
        } else if self.completed_by.as_deref() == Some(datagram) {
            // The responder never saw our confirmation.
            self.confirm();
            return Received::Consumed;
        }
        Received::Dropped
    }

    fn on_data(&mut self, body: &[u8]) -> Received {
        let (nonce, ciphertext) = body.split_at(NONCE_LEN);
        // Eight bytes, split off just above.
        let nonce = u64::from_be_bytes(nonce.try_into().expect("8 bytes"));
        let mut opened = self
            .current
            .as_mut()
            .map_or(Opened::Forged, |s| s.open(nonce, ciphertext));
        if matches!(opened, Opened::Forged) {
            let found = self.pending.iter_mut().enumerate().find_map(|(at, p)| {
                match p.session.open(nonce, ciphertext) {
                    Opened::Forged => None,
                    other => Some((at, other)),
                }
            });
            if let Some((at, found)) = found {
                if matches!(found, Opened::Fresh(_)) {
                    // The initiator has the keys: the answered handshake
                    // is confirmed and replaces whatever session came
                    // before.
                    if let Some(pending) = self.pending.remove(at) {
                        self.pending.clear();
                        self.initiator = None;
                        self.confirmed_init = Some(pending.init);
                        self.establish(pending.session);
                    }
                }
                opened = found;
            }
        }
        let plain = match opened {
            Opened::Fresh(plain) => plain,
            Opened::Duplicate => return Received::Duplicate,
            Opened::Forged => return Received::Dropped,
        };
        if plain.is_empty() {
            Received::Consumed
        } else {
            Received::Plaintext(plain)
        }
    }

    fn establish(&mut self, session: Session) {
        self.current = Some(session);
        self.events.push_back(NoiseEvent::Established);
        self.flush();
    }

    /// An empty sealed datagram: tells a responder its session is
    /// confirmed when there is nothing else to say.
    fn confirm(&mut self) {
        if let Some(datagram) = self.current.as_mut().and_then(|s| s.seal(&[])) {
            self.transmit.push_back(datagram);
        }
    }

    fn sending(&mut self) -> Option<&mut Session> {
        match (&mut self.current, self.pending.front_mut()) {
            (Some(current), _) => Some(current),
            (None, Some(pending)) => Some(&mut pending.session),
            (None, None) => None,
        }
    }

    fn flush(&mut self) {
        while self.sending().is_some() {
            let Some(plain) = self.queue.pop_front() else {
                return;
            };
            self.seal(&plain);
        }
    }

    /// Seals `plaintext` (a datagram of the peer above, at most
    /// [`MAX_PLAINTEXT`] bytes) for sending, or keeps it until a session
    /// exists. Returns false if it was not kept: the queue is full
    /// ([`QUEUE_MAX`]) or the datagram is too long. A datagram equal to
    /// one already waiting (a retransmission) is kept once.
    pub fn seal(&mut self, plaintext: &[u8]) -> bool {
        if plaintext.len() > MAX_PLAINTEXT {
            return false;
        }
        if let Some(session) = self.sending() {
            if let Some(datagram) = session.seal(plaintext) {
                self.transmit.push_back(datagram);
                return true;
            }
            return false;
        }
        if self.queue.iter().any(|q| q == plaintext) {
            return true;
        }
        if self.queue.len() >= QUEUE_MAX {
            return false;
        }
        self.queue.push_back(Bytes::copy_from_slice(plaintext));
        true
    }

    /// Retransmits handshake messages that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(initiator) = &mut self.initiator {
            if initiator.due <= now {
                initiator.interval = (initiator.interval * 2).min(RETRY_CAP);
                initiator.due = now + initiator.interval;
                self.transmit.push_back(initiator.datagram.clone());
            }
        }
        let mut gave_up = false;
        for pending in &mut self.pending {
            if pending.due.is_some_and(|due| due <= now) {
                if pending.sends < RESPONSE_SENDS {
                    pending.sends += 1;
                    pending.interval *= 2;
                    pending.due = Some(now + pending.interval);
                    self.transmit.push_back(pending.response.clone());
                } else {
                    pending.due = None;
                    gave_up = true;
                }
            }
        }
        // An answer nobody confirmed (its INIT may have been a replay that
        // made us give up our own handshake): with no session, start over.
        if gave_up && self.current.is_none() && self.initiator.is_none() {
            self.initiate(now);
        }
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let initiator = self.initiator.as_ref().map(|i| i.due);
        let pending = self.pending.iter().filter_map(|p| p.due).min();
        match (initiator, pending) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next datagram to send to the other peer.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmit.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<NoiseEvent> {
        self.events.pop_front()
    }
}

fn handshake_datagram(kind: u8, message: &[u8; HANDSHAKE_LEN]) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN + HANDSHAKE_LEN);
    out.put_u8(kind);
    out.put_u32(HANDSHAKE_LEN as u32);
    out.put_slice(message);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_parses_and_the_window_tells_new_from_repeated() {
        assert!(PATTERN.parse::<NoiseParams>().is_ok());
        let mut w = ReplayWindow::default();
        for (nonce, fresh) in [(5, true), (3, true), (4, true), (200, true), (199, true)] {
            assert_eq!(w.fresh(nonce), fresh, "{nonce}");
            w.insert(nonce);
        }
        assert!(!w.fresh(5), "too old to tell counts as seen");
        assert!(!w.fresh(199));
        assert!(!w.fresh(200));
        assert!(w.fresh(72));
        assert!(!w.fresh(71), "more than the window below the highest");
        assert!(w.fresh(201));
    }
}
