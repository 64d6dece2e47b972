//! Harnesses for cargo-fuzz and the corpus regression test.
//!
//! Each target under `fuzz/fuzz_targets/` is a one-line shim that calls the
//! function of the same name here, and `tests/corpus.rs` runs every file
//! committed under `fuzz/corpus/<target>/` through it on stable Rust, so the
//! corpus is a regression suite even where there is no nightly toolchain.
//!
//! Not a stable API: it exists only with the `fuzzing` feature and changes
//! whenever the harnesses do. A harness panics when it finds a bug; it never
//! panics on input the code under test is right to reject.

use crate::error::{DecodeError, LimitExceeded, Malformed};
use crate::frame::{decode, Frame, HEADER_LEN};
use bytes::BytesMut;

/// What one call to [`decode`] gave, with the input bytes a frame came from.
#[derive(Debug, PartialEq)]
enum Step<'a> {
    Frame(Frame, &'a [u8]),
    NeedMore,
    Failed(DecodeError),
}

/// Frame decoder: a stream of frames under a body limit.
///
/// `data[0]` selects the limit, `1 << (data[0] % 21)` bytes (1 B to 1 MiB);
/// the rest is the stream. Checks, for every call to [`decode`]:
///
/// * the codec is canonical: a frame decoded from bytes `b` encodes to exactly
///   `b`, and decoding that again gives the same frame;
/// * a decoded body is within the limit;
/// * `Ok(None)`, and an error raised from the header alone (length over the
///   limit, unknown critical type), consume nothing and do not grow the
///   buffer: 5 bytes from a peer never make the decoder reserve memory;
/// * no call grows the buffer's capacity;
/// * the stream fed in small pieces, as TCP may deliver it, gives the same
///   frames and the same final outcome as the stream fed whole. The piece
///   size, 1 to 13 bytes, also comes from `data[0]`.
pub fn frame_decode(data: &[u8]) {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let limit = 1u32 << (selector % 21);
    let piece = 1 + usize::from(selector / 21);

    let whole = decode_whole(stream, limit);
    for step in &whole {
        if let Step::Frame(frame, bytes) = step {
            check_canonical(frame, bytes, limit);
        }
    }
    let pieces = decode_in_pieces(stream, limit, piece);
    assert_eq!(
        whole, pieces,
        "feeding the stream in {piece}-byte pieces changed what was decoded"
    );
}

/// Decodes `stream` from one buffer until `Ok(None)` or an error, checking
/// the buffer after each call. The last step is never a frame.
fn decode_whole(stream: &[u8], limit: u32) -> Vec<Step<'_>> {
    let mut buf = BytesMut::from(stream);
    let mut steps = Vec::new();
    loop {
        let step = decode_one(&mut buf, stream, limit);
        let done = !matches!(step, Step::Frame(..));
        steps.push(step);
        if done {
            return steps;
        }
    }
}

/// Feeds `stream` into a buffer `piece` bytes at a time, decoding all it can
/// after each piece. Stops at the first error, or at `Ok(None)` once all of
/// the stream is in, like [`decode_whole`].
fn decode_in_pieces(stream: &[u8], limit: u32, piece: usize) -> Vec<Step<'_>> {
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut steps = Vec::new();
    loop {
        let step = decode_one(&mut buf, &stream[..fed], limit);
        match step {
            Step::NeedMore if fed < stream.len() => {
                let next = (fed + piece).min(stream.len());
                buf.extend_from_slice(&stream[fed..next]);
                fed = next;
            }
            Step::Frame(..) => steps.push(step),
            Step::NeedMore | Step::Failed(_) => {
                steps.push(step);
                return steps;
            }
        }
    }
}

/// One call to [`decode`] on `buf`, which holds the tail of `fed` (all the
/// bytes given to the buffer so far). Checks what the call did to `buf`.
fn decode_one<'a>(buf: &mut BytesMut, fed: &'a [u8], limit: u32) -> Step<'a> {
    let start = fed.len() - buf.len();
    let (len, capacity) = (buf.len(), buf.capacity());
    let result = decode(buf, limit);
    assert!(
        buf.capacity() <= capacity,
        "decode grew the buffer from {capacity} to {} bytes",
        buf.capacity()
    );
    match result {
        Ok(Some(frame)) => {
            let end = fed.len() - buf.len();
            let bytes = &fed[start..end];
            assert!(
                bytes.len() >= HEADER_LEN && bytes.len() - HEADER_LEN <= limit as usize,
                "decoded a {}-byte frame under a {limit}-byte body limit",
                bytes.len()
            );
            Step::Frame(frame, bytes)
        }
        Ok(None) => {
            assert_eq!(buf.len(), len, "Ok(None) consumed input");
            assert_eq!(buf[..], fed[start..], "Ok(None) changed the buffer");
            Step::NeedMore
        }
        Err(error) => {
            let from_header = matches!(
                error,
                DecodeError::LimitExceeded(LimitExceeded::FrameTooLarge { .. })
                    | DecodeError::Malformed(Malformed::UnknownFrameType(_))
            );
            if from_header {
                assert_eq!(buf.len(), len, "{error} consumed input");
                assert_eq!(buf.capacity(), capacity, "{error} resized the buffer");
            }
            Step::Failed(error)
        }
    }
}

/// Checks `encode(frame) == bytes` and `decode(bytes) == frame`.
fn check_canonical(frame: &Frame, bytes: &[u8], limit: u32) {
    let mut encoded = BytesMut::new();
    frame
        .encode(&mut encoded)
        .unwrap_or_else(|e| panic!("a decoded {} frame does not encode: {e}", frame.name()));
    assert_eq!(
        encoded[..],
        bytes[..],
        "{} frame re-encodes to other bytes than it was decoded from",
        frame.name()
    );
    match decode(&mut encoded, limit) {
        Ok(Some(again)) => assert_eq!(&again, frame, "re-encoded frame decodes differently"),
        other => panic!(
            "re-encoded {} frame does not decode: {other:?}",
            frame.name()
        ),
    }
    assert!(encoded.is_empty(), "re-encoded frame left bytes behind");
}

/// Feeds a [`Hub`](crate::Hub) with what fuzzer input says arrives from up to four
/// clients, in arbitrary splits and interleavings, with time passing. The hub
/// must never panic, and what it buffers for any client stays bounded.
///
/// Input: one byte of options, then operations: `[op, client, len, bytes…]`.
/// Clients may first complete a real handshake (option bit 0), so that the
/// bytes exercise the chat and transfer states too; with option bit 1 the
/// last two instead join as raw-text guests; with option bit 2 the hub hands
/// out session secrets (`SESSION`) and checks `RECLAIM`s. A client whose
/// first byte is not `0x89` becomes a guest anyway, so raw bytes exercise
/// the guest line reader, sanitiser and commands. Everything the hub sends a guest must be
/// UTF-8 lines with no control character but their CR LF. `start` is any
/// instant: the core reads no clock, so the caller provides one.
pub fn hub_session(data: &[u8], start: std::time::Instant) {
    use crate::transfer::TransferEvent;
    use crate::{ClientConfig, Connection, Hub, HubConfig, HubEvent};
    use std::time::Duration;

    let Some((&options, mut ops)) = data.split_first() else {
        return;
    };
    let mut now = start;
    let mut config = HubConfig::default();
    if options & 4 == 4 {
        // Welcomed clients are handed SESSION secrets, and RECLAIMs in the
        // input are checked against them.
        config.session_key = Some([0x42; 32]);
    }
    let max_frame = config.connection.max_frame as usize;
    let max_outgoing = config.connection.max_outgoing;
    let window = config.connection.window as usize;
    let mut hub = Hub::new(config, now);
    let clients: Vec<_> = (0..4).map(|_| hub.connect(now)).collect();
    if options & 1 == 1 {
        for (i, &id) in clients.iter().enumerate() {
            if options & 2 == 2 && i >= 2 {
                hub.handle_input(id, now, format!("/name guest{i}\n").as_bytes());
                continue;
            }
            let mut conn = Connection::client(ClientConfig::new(format!("user{i}")), now);
            while let Some(bytes) = conn.poll_transmit() {
                hub.handle_input(id, now, &bytes);
            }
        }
    }
    while let [op, who, len, rest @ ..] = ops {
        let id = clients[usize::from(*who) % clients.len()];
        let len = usize::from(*len).min(rest.len());
        let (bytes, tail) = rest.split_at(len);
        ops = tail;
        match op % 4 {
            0 | 1 => hub.handle_input(id, now, bytes),
            2 => {
                let ms = bytes
                    .iter()
                    .take(4)
                    .fold(0u64, |acc, &b| acc << 8 | u64::from(b))
                    % 100_000;
                now += Duration::from_millis(ms);
                hub.handle_timeout(now);
            }
            _ => hub.handle_eof(id, now),
        }
        // Act like an adapter: drain output and answer what asks for it.
        while let Some(client) = hub.poll_writable() {
            while let Some(bytes) = hub.poll_transmit(client) {
                if hub.is_guest(client) {
                    check_guest_output(&bytes);
                }
            }
        }
        while let Some(event) = hub.poll_event() {
            let HubEvent::Transfer { client, event } = event else {
                continue;
            };
            let _ = match event {
                // Issuing a key exercises RESUME_KEY on the way out.
                TransferEvent::Offered { id, .. } => {
                    let key = crate::ResumeKey::from_bytes([id as u8; 16]);
                    hub.accept_resumable(client, now, id, 0, key)
                }
                TransferEvent::NeedChunk { id, offset, len } => {
                    let chunk = bytes::Bytes::from(vec![0u8; len as usize]);
                    hub.supply_chunk(client, now, id, offset, chunk)
                }
                TransferEvent::Chunk { id, offset, data } => {
                    hub.confirm_written(client, now, id, offset + data.len() as u64)
                }
                TransferEvent::Received { id, .. } => hub.finish_receive(client, now, id, Ok(())),
                _ => Ok(()),
            };
        }
        for &client in &clients {
            if let Some((control, data)) = hub.queued_bytes(client) {
                assert!(
                    control <= max_outgoing + max_frame,
                    "control queue {control}"
                );
                assert!(data <= window + 8 * max_frame, "data queue {data}");
            }
        }
        // What the hub holds every queue to is what the queues hold: a
        // path that queued (or grew a buffer) without the hub counting it
        // would let the total's limit slip.
        let held: usize = clients
            .iter()
            .filter_map(|&client| hub.held_bytes(client))
            .sum();
        assert_eq!(hub.queued_total(), held, "counted queues");
    }
}

/// What a raw-text guest is sent: whole UTF-8 lines, each ending in CR LF,
/// with no other control character (no escape sequence can reach its
/// terminal).
fn check_guest_output(bytes: &[u8]) {
    let text = std::str::from_utf8(bytes).expect("a guest is sent UTF-8");
    assert!(
        text.ends_with("\r\n"),
        "a guest is sent whole lines: {text:?}"
    );
    for line in text.split_terminator("\r\n") {
        assert!(
            !line.chars().any(char::is_control),
            "a control character reaches a guest: {line:?}"
        );
    }
}

/// Checks the file-name rule against itself: an accepted name is a single,
/// plain path component.
pub fn file_name(data: &[u8]) {
    let Ok(name) = std::str::from_utf8(data) else {
        return;
    };
    if crate::filename::check_file_name(name).is_ok() {
        assert!(!name.is_empty() && name.len() <= crate::filename::MAX_FILE_NAME_BYTES);
        assert!(!name.contains(['/', '\\', ':', '\0']));
        assert!(name != "." && name != "..");
        assert!(!name.chars().any(char::is_control));
    }
}

/// A whole upload between a real client [`Connection`](crate::Connection)
/// and a real [`Hub`](crate::Hub), both honest, over a network the fuzzer
/// controls: it picks how bytes are split and when they move, lets time
/// pass, flips a byte in transit, and cuts the connection, after which the
/// user reconnects and offers the same file again, presenting the resume key
/// the hub side issued (and so resuming from the partial file it kept).
/// Files live in memory.
///
/// Checks that nothing is ever stored but the exact file, that a transfer
/// never ends verified with other contents, and that once the network
/// behaves (the ops are used up) the upload always completes, verified and
/// identical, within a bounded number of steps and retries. (A flipped byte
/// in an `OFFER`'s name can store the right contents under another name:
/// the end-to-end hash covers contents, and the transport's checksum the
/// rest. That is allowed only when a byte was flipped.) The hub side resumes
/// only an offer that presents the key it issued for the partial file, so a
/// key flipped in transit starts the file over.
///
/// Input: two bytes for the file's size (0 to 16 KiB, so that the small
/// chunk size and window used here give many chunks and credits), one seed
/// byte for its contents, then operations of two bytes each.
pub fn transfer_session(data: &[u8], start: std::time::Instant) {
    let [hi, lo, seed, ops @ ..] = data else {
        return;
    };
    let size = usize::from(u16::from_be_bytes([*hi, *lo])) % (16 * 1024 + 1);
    let file: Vec<u8> = (0..size)
        .map(|i| {
            (i as u8)
                .wrapping_mul(167)
                .wrapping_add(*seed ^ (i >> 8) as u8)
        })
        .collect();
    let mut session = session::Session::new(start, file);
    for op in ops.chunks_exact(2) {
        session.apply(op[0], op[1]);
    }
    session.finish();
}

/// The moving parts of [`transfer_session`].
mod session {
    use crate::config::{ClientConfig, HubConfig};
    use crate::connection::{Connection, Event};
    use crate::frame::{ResumeKey, TransferId};
    use crate::hub::{ClientId, Hub, HubEvent};
    use crate::transfer::{Outcome, TransferEvent};
    use bytes::Bytes;
    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    const NAME: &str = "file.bin";

    /// Steps the well-behaved network gets to finish, per attempt.
    const FINISH_STEPS: usize = 20_000;
    /// Clean attempts after the ops (a corrupted one fails verification).
    const FINISH_ATTEMPTS: usize = 3;

    pub(super) struct Session {
        now: Instant,
        hub: Hub,
        file: Vec<u8>,
        /// The hub side's partial files, and its stored files, by name.
        partials: HashMap<String, Vec<u8>>,
        stored: HashMap<String, Vec<u8>>,
        /// A byte was flipped in transit at some point.
        flipped: bool,
        /// Names of the hub side's incoming transfers.
        receiving: HashMap<(ClientId, TransferId), String>,
        /// The key the hub side keeps each partial file under, by name.
        partial_keys: HashMap<String, ResumeKey>,
        /// Keys issued so far: the next key is made from it (a real receiver
        /// draws keys from a secure random source; the core draws none).
        keys_issued: u64,
        /// The key the uploader was given for its file.
        resume_key: Option<ResumeKey>,
        link: Link,
        /// How the last attempt's transfer ended, as the client saw it.
        outcome: Option<Outcome>,
        /// Bytes still to cross before the byte at that position is flipped.
        flip_in: Option<usize>,
    }

    /// One connection: the client, its id in the hub, and bytes in flight.
    struct Link {
        client: Connection,
        id: ClientId,
        up: Vec<u8>,
        down: Vec<u8>,
        offered: Option<TransferId>,
    }

    fn config() -> HubConfig {
        let mut config = HubConfig::default();
        config.connection.chunk_size = 1024;
        config.connection.window = 4096;
        config
    }

    impl Session {
        pub(super) fn new(now: Instant, file: Vec<u8>) -> Session {
            let mut hub = Hub::new(config(), now);
            let link = Link::connect(&mut hub, now);
            Session {
                now,
                hub,
                file,
                partials: HashMap::new(),
                stored: HashMap::new(),
                flipped: false,
                receiving: HashMap::new(),
                partial_keys: HashMap::new(),
                keys_issued: 0,
                resume_key: None,
                link,
                outcome: None,
                flip_in: None,
            }
        }

        pub(super) fn apply(&mut self, op: u8, arg: u8) {
            let amount = usize::from(arg) * 61 + 1;
            match op % 8 {
                0..=2 => self.carry_up(amount),
                3 | 4 => self.carry_down(amount),
                5 => {
                    // Up to 25 s: enough for pings, and now and then for
                    // the idle timeout, which closes like a cut.
                    self.now += Duration::from_millis(u64::from(arg) * 100);
                    self.hub.handle_timeout(self.now);
                    self.link.client.handle_timeout(self.now);
                }
                6 => self.flip_in = Some(usize::from(arg) * 37),
                _ => self.reconnect(),
            }
            self.settle();
        }

        /// Runs a clean network until the file is stored, reconnecting to
        /// retry an attempt that failed or closed.
        pub(super) fn finish(&mut self) {
            self.flip_in = None;
            for _ in 0..FINISH_ATTEMPTS {
                if self.link.client.is_closed() || self.outcome.is_some() {
                    if self.outcome == Some(Outcome::Verified) {
                        break;
                    }
                    self.reconnect();
                }
                for _ in 0..FINISH_STEPS {
                    if self.outcome.is_some() || self.link.client.is_closed() {
                        break;
                    }
                    let before = (self.link.up.len(), self.link.down.len());
                    self.carry_up(usize::MAX);
                    self.carry_down(usize::MAX);
                    self.settle();
                    if before == (0, 0) && self.link.up.is_empty() && self.link.down.is_empty() {
                        // Quiet: let a little time pass (pings, credits).
                        self.now += Duration::from_millis(100);
                        self.hub.handle_timeout(self.now);
                        self.link.client.handle_timeout(self.now);
                        self.settle();
                    }
                }
            }
            assert_eq!(
                self.outcome,
                Some(Outcome::Verified),
                "a clean network did not finish the upload of {} bytes",
                self.file.len()
            );
            assert!(
                self.stored.values().any(|f| *f == self.file),
                "the file was never stored"
            );
            if !self.flipped {
                assert!(
                    self.stored.get(NAME) == Some(&self.file),
                    "the file is not stored under its name"
                );
            }
        }

        fn reconnect(&mut self) {
            let now = self.now;
            self.hub.handle_eof(self.link.id, now);
            self.link.client.handle_eof(now);
            self.settle();
            self.hub.remove(self.link.id, now);
            self.settle();
            self.link = Link::connect(&mut self.hub, now);
            self.outcome = None;
            self.settle();
        }

        fn carry_up(&mut self, amount: usize) {
            let take = amount.min(self.link.up.len());
            let mut bytes: Vec<u8> = self.link.up.drain(..take).collect();
            if let Some(at) = self.flip_in {
                if at < bytes.len() {
                    bytes[at] ^= 0x01;
                    self.flip_in = None;
                    self.flipped = true;
                } else {
                    self.flip_in = Some(at - bytes.len());
                }
            }
            if !bytes.is_empty() {
                self.hub.handle_input(self.link.id, self.now, &bytes);
            }
        }

        fn carry_down(&mut self, amount: usize) {
            let take = amount.min(self.link.down.len());
            let bytes: Vec<u8> = self.link.down.drain(..take).collect();
            if !bytes.is_empty() {
                self.link.client.handle_input(self.now, &bytes);
            }
        }

        /// Drains both ends' output into the link and answers their events,
        /// as adapters do, until neither has anything more.
        fn settle(&mut self) {
            for _ in 0..10_000 {
                let mut moved = false;
                while let Some(bytes) = self.link.client.poll_transmit() {
                    self.link.up.extend_from_slice(&bytes);
                    moved = true;
                }
                while let Some(id) = self.hub.poll_writable() {
                    while let Some(bytes) = self.hub.poll_transmit(id) {
                        if id == self.link.id {
                            self.link.down.extend_from_slice(&bytes);
                        }
                        moved = true;
                    }
                }
                while let Some(event) = self.link.client.poll_event() {
                    moved = true;
                    self.client_event(event);
                }
                while let Some(event) = self.hub.poll_event() {
                    moved = true;
                    if let HubEvent::Transfer { client, event } = event {
                        self.hub_transfer(client, event);
                    }
                }
                if self.link.offered.is_none() && self.link.client.is_open() {
                    let (now, size) = (self.now, self.file.len() as u64);
                    let client = &mut self.link.client;
                    let id = match self.resume_key {
                        Some(key) => client.offer_file_resuming(now, NAME, size, "", key),
                        None => client.offer_file(now, NAME, size, ""),
                    }
                    .expect("an open client can offer a file");
                    self.link.offered = Some(id);
                    moved = true;
                }
                if !moved {
                    return;
                }
            }
            panic!("the two ends never went quiet");
        }

        fn client_event(&mut self, event: Event) {
            let Event::Transfer(event) = event else {
                return;
            };
            let now = self.now;
            match event {
                TransferEvent::NeedChunk { id, offset, len } => {
                    let start = offset as usize;
                    let end = start + len as usize;
                    assert!(end <= self.file.len(), "asked for bytes past the file");
                    let chunk = Bytes::copy_from_slice(&self.file[start..end]);
                    let _ = self.link.client.supply_chunk(now, id, offset, chunk);
                }
                TransferEvent::ResumeKey { id, key } if Some(id) == self.link.offered => {
                    self.resume_key = Some(key);
                }
                TransferEvent::Ended { id, outcome } if Some(id) == self.link.offered => {
                    if !matches!(outcome, Outcome::Cancelled { .. }) {
                        self.resume_key = None;
                    }
                    if outcome == Outcome::Verified {
                        assert!(
                            self.stored.values().any(|f| *f == self.file),
                            "verified, but no stored file is the one sent"
                        );
                    }
                    self.outcome = Some(outcome);
                }
                _ => {}
            }
        }

        fn hub_transfer(&mut self, client: ClientId, event: TransferEvent) {
            let now = self.now;
            let hub = &mut self.hub;
            let _ = match event {
                TransferEvent::Offered {
                    id,
                    name,
                    size,
                    resume,
                    ..
                } => {
                    assert!(
                        &*name == NAME || self.flipped,
                        "a name changed in transit without a flipped byte"
                    );
                    let partial = self.partials.entry(name.to_string()).or_default();
                    self.receiving.insert((client, id), name.to_string());
                    let held = partial.len() as u64;
                    let kept = self.partial_keys.get(&*name).copied();
                    let resumable = held <= size && kept.is_some() && resume == kept;
                    let (from, key) = match kept {
                        Some(key) if resumable => (held, key),
                        _ => {
                            // A new upload: it starts empty, under a new key.
                            partial.clear();
                            self.keys_issued += 1;
                            let mut bytes = [0; ResumeKey::LEN];
                            bytes[..8].copy_from_slice(&self.keys_issued.to_be_bytes());
                            let key = ResumeKey::from_bytes(bytes);
                            self.partial_keys.insert(name.to_string(), key);
                            (0, key)
                        }
                    };
                    hub.accept_resumable(client, now, id, from, key)
                }
                TransferEvent::NeedChunk { id, offset, len } => {
                    // Prefix of the partial file, hashed before resuming.
                    let name = &self.receiving[&(client, id)];
                    let partial = self.partials.get(name).map_or(&[][..], Vec::as_slice);
                    let start = (offset as usize).min(partial.len());
                    let end = (start + len as usize).min(partial.len());
                    let chunk = Bytes::copy_from_slice(&partial[start..end]);
                    hub.supply_chunk(client, now, id, offset, chunk)
                }
                TransferEvent::Chunk { id, offset, data } => {
                    let name = self.receiving[&(client, id)].clone();
                    let partial = self.partials.entry(name).or_default();
                    let at = offset as usize;
                    assert!(at <= partial.len(), "a chunk left a hole in the file");
                    partial.truncate(at);
                    partial.extend_from_slice(&data);
                    hub.confirm_written(client, now, id, offset + data.len() as u64)
                }
                TransferEvent::Restarted { id } => {
                    let name = self.receiving[&(client, id)].clone();
                    self.partials.insert(name, Vec::new());
                    Ok(())
                }
                TransferEvent::Received { id, .. } => {
                    let name = self.receiving[&(client, id)].clone();
                    let data = self.partials.remove(&name).unwrap_or_default();
                    self.partial_keys.remove(&name);
                    assert!(
                        data == self.file,
                        "the hub verified a file that differs from the one sent"
                    );
                    self.stored.insert(name, data);
                    hub.finish_receive(client, now, id, Ok(()))
                }
                TransferEvent::Ended {
                    id,
                    outcome:
                        Outcome::Failed {
                            code: crate::Code::HASH_MISMATCH,
                            ..
                        },
                } => {
                    // Wrong bytes are no base for a resume.
                    if let Some(name) = self.receiving.get(&(client, id)) {
                        self.partials.remove(name);
                        self.partial_keys.remove(name);
                    }
                    Ok(())
                }
                _ => Ok(()),
            };
        }
    }

    impl Link {
        fn connect(hub: &mut Hub, now: Instant) -> Link {
            Link {
                client: Connection::client(ClientConfig::new("uploader"), now),
                id: hub.connect(now),
                up: Vec::new(),
                down: Vec::new(),
                offered: None,
            }
        }
    }
}

/// A tree's manifest, as a receiver meets it: decoded from bytes a peer
/// sent, or built from paths it lists.
///
/// `data[0]` picks the mode and the limits: bit 0 clear, the rest of the
/// input is a manifest's bytes for [`Manifest::decode`](crate::tree::Manifest::decode);
/// set, it is UTF-8 lines, each `d PATH` or `f PATH` (a folder or a 1-byte
/// file), checked one by one with [`TreePath::new`](crate::tree::TreePath::new)
/// and the accepted ones built into a manifest. Bit 1 set: tight limits (8
/// entries, depth 3, 24-byte paths, 10 bytes in all, a 512-byte manifest),
/// so that every limit is reached; clear: the defaults.
///
/// Checks, against rules written here again independently of the code
/// under test, that whatever is accepted is safe to create: every path is
/// relative, has no empty, `.` or `..` component, every component passes
/// the file-name check, within the limits; every entry's folder is listed
/// before it as a folder; no two names in one folder clash ignoring case
/// and normalisation; the total size is within the limit. And that the
/// codec is canonical: what decodes re-encodes to the same bytes, and
/// what is built encodes to bytes that decode to it. Every error message
/// must be safe to print.
pub fn tree_manifest(data: &[u8]) {
    use crate::tree::{Entry, EntryKind, Manifest, Mtime, TreeLimits, TreePath};
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut limits = TreeLimits::default();
    if selector & 2 != 0 {
        limits.max_entries = 8;
        limits.max_depth = 3;
        limits.max_path_bytes = 24;
        limits.max_total_bytes = 10;
        limits.max_manifest_bytes = 512;
    }
    let printable = |message: String| {
        assert!(
            !message.chars().any(char::is_control),
            "error message with a control character: {message:?}"
        );
    };
    let manifest = if selector & 1 == 0 {
        match Manifest::decode(rest, &limits) {
            Ok(manifest) => {
                assert_eq!(manifest.encode(), rest, "decoded, not re-encoded the same");
                manifest
            }
            Err(e) => return printable(e.to_string()),
        }
    } else {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        let mut entries = Vec::new();
        for line in text.split('\n') {
            let (kind, path) = match line.split_at_checked(2) {
                Some(("d ", path)) => (EntryKind::Folder, path),
                Some(("f ", path)) => (
                    EntryKind::File {
                        size: 1,
                        executable: false,
                    },
                    path,
                ),
                _ => continue,
            };
            match TreePath::new(path, &limits) {
                Ok(path) => {
                    entries.push(Entry {
                        path,
                        kind,
                        mtime: Mtime::EPOCH,
                    });
                }
                Err(e) => printable(e.to_string()),
            }
        }
        match Manifest::new(Mtime::EPOCH, entries, &limits) {
            Ok(manifest) => {
                let bytes = manifest.encode();
                assert_eq!(Manifest::decode(&bytes, &limits).as_ref(), Ok(&manifest));
                manifest
            }
            Err(e) => return printable(e.to_string()),
        }
    };
    check_tree_is_safe(&manifest, &limits);
}

/// The rules of [`tree_manifest`], written out plainly.
fn check_tree_is_safe(manifest: &crate::tree::Manifest, limits: &crate::tree::TreeLimits) {
    use crate::filename::check_file_name;
    let entries = manifest.entries();
    assert!(entries.len() <= limits.max_entries);
    let mut total = 0u64;
    for (index, entry) in entries.iter().enumerate() {
        let path = entry.path.as_str();
        assert!(!path.is_empty() && !path.starts_with('/'), "{path:?}");
        assert!(path.len() <= limits.max_path_bytes, "{path:?}");
        let components: Vec<&str> = path.split('/').collect();
        assert!(components.len() <= limits.max_depth, "{path:?}");
        for component in &components {
            assert!(!matches!(*component, "" | "." | ".."), "{path:?}");
            assert!(check_file_name(component).is_ok(), "{path:?}");
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            assert!(
                entries[..index]
                    .iter()
                    .any(|e| e.is_folder() && e.path.as_str() == parent),
                "{path:?} before its folder"
            );
        }
        let folder = path.rsplit_once('/').map(|(parent, _)| parent);
        let key = crate::tree::clash_key(entry.path.name());
        for other in &entries[..index] {
            let other_folder = other.path.as_str().rsplit_once('/').map(|(p, _)| p);
            assert!(
                other_folder != folder || crate::tree::clash_key(other.path.name()) != key,
                "{path:?} clashes with {:?}",
                other.path.as_str()
            );
        }
        total += entry.size();
    }
    assert!(total <= limits.max_total_bytes);
    assert_eq!(total, manifest.total_size());
}
