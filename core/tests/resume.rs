//! Resume keys (`docs/PROTOCOL.md` §6.10.9): a receiver hands the sender a
//! key with `RESUME_KEY` just before its `ACCEPT`, and the sender presents
//! it with `RESUME` just before a new `OFFER` to continue the transfer. The
//! core carries keys between the two; deciding to resume (only for the key
//! issued) is the receiving application's part, played here by the tests.

mod sim;

use bytes::{Bytes, BytesMut};
use ferry_core::frame::{decode, Frame, TransferId, PREAMBLE};
use ferry_core::transfer::{empty_hash, Outcome, TransferEvent};
use ferry_core::{ClientConfig, Code, Config, Connection, Event, ResumeKey};
use sim::{file_bytes, Net, Split};
use std::time::{Duration, Instant};

const KEY: ResumeKey = ResumeKey::from_bytes(*b"0123456789abcdef");
const OTHER_KEY: ResumeKey = ResumeKey::from_bytes(*b"fedcba9876543210");

fn encode(frames: &[Frame]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for f in frames {
        f.encode(&mut out).unwrap();
    }
    out.to_vec()
}

/// Every frame in `bytes`, which may start with the preamble.
fn frames_in(bytes: &[u8]) -> Vec<Frame> {
    let mut buf = BytesMut::from(bytes);
    if buf.starts_with(&PREAMBLE) {
        let _ = buf.split_to(PREAMBLE.len());
    }
    std::iter::from_fn(|| decode(&mut buf, 1 << 20).unwrap()).collect()
}

/// Everything `conn` has to send.
fn drain(conn: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(b) = conn.poll_transmit() {
        out.extend_from_slice(&b);
    }
    out
}

fn transfer_events(conn: &mut Connection) -> Vec<TransferEvent> {
    std::iter::from_fn(|| conn.poll_event())
        .filter_map(|e| match e {
            Event::Transfer(t) => Some(t),
            _ => None,
        })
        .collect()
}

/// One side of a direct client ↔ server link, acting as a simple
/// application would: it sends `file`, keeps received bytes in `partial`.
struct Side {
    conn: Connection,
    file: Vec<u8>,
    partial: Vec<u8>,
    events: Vec<TransferEvent>,
    /// Every frame this side sent, in order.
    sent: Vec<Frame>,
    /// Bytes sent not yet parsed into `sent`.
    unparsed: BytesMut,
}

impl Side {
    fn new(conn: Connection) -> Side {
        Side {
            conn,
            file: Vec::new(),
            partial: Vec::new(),
            events: Vec::new(),
            sent: Vec::new(),
            unparsed: BytesMut::new(),
        }
    }

    fn record(&mut self, bytes: &[u8]) {
        self.unparsed.extend_from_slice(bytes);
        if self.sent.is_empty() && self.unparsed.starts_with(&PREAMBLE) {
            let _ = self.unparsed.split_to(PREAMBLE.len());
        }
        while let Ok(Some(frame)) = decode(&mut self.unparsed, 1 << 20) {
            self.sent.push(frame);
        }
    }

    /// Answers what a sender or receiver application answers; offers are
    /// left to the test.
    fn act(&mut self, now: Instant) -> bool {
        let mut acted = false;
        while let Some(event) = self.conn.poll_event() {
            acted = true;
            let Event::Transfer(t) = event else {
                continue;
            };
            match &t {
                TransferEvent::NeedChunk { id, offset, len } => {
                    let source = if self.file.is_empty() {
                        &self.partial
                    } else {
                        &self.file
                    };
                    let range = *offset as usize..(*offset + u64::from(*len)) as usize;
                    let chunk = Bytes::copy_from_slice(&source[range]);
                    self.conn.supply_chunk(now, *id, *offset, chunk).unwrap();
                }
                TransferEvent::Chunk { id, offset, data } => {
                    self.partial.truncate(*offset as usize);
                    self.partial.extend_from_slice(data);
                    let upto = self.partial.len() as u64;
                    self.conn.confirm_written(now, *id, upto).unwrap();
                }
                TransferEvent::Restarted { .. } => self.partial.clear(),
                TransferEvent::Received { id, .. } => {
                    self.conn.finish_receive(now, *id, Ok(())).unwrap();
                }
                _ => {}
            }
            self.events.push(t);
        }
        acted
    }
}

/// A client (the transfer sender here) and a server (the receiver)
/// connected directly, with no hub between them.
struct Pair {
    now: Instant,
    client: Side,
    server: Side,
    /// Bytes the link still carries from client to server; `None`: no limit.
    up_budget: Option<usize>,
}

impl Pair {
    fn new(now: Instant) -> Pair {
        let mut pair = Pair {
            now,
            client: Side::new(Connection::client(ClientConfig::new("alice"), now)),
            server: Side::new(Connection::server(Config::default(), now)),
            up_budget: None,
        };
        pair.run();
        assert!(pair.client.conn.is_open() && pair.server.conn.is_open());
        pair
    }

    /// Moves bytes and answers events until nothing changes.
    fn run(&mut self) {
        let now = self.now;
        loop {
            let mut moved = false;
            while let Some(mut bytes) = self.client.conn.poll_transmit() {
                if let Some(budget) = self.up_budget.as_mut() {
                    // The link is cut after this many bytes.
                    bytes.truncate(*budget);
                    *budget -= bytes.len();
                }
                self.client.record(&bytes);
                self.server.conn.handle_input(now, &bytes);
                moved = true;
            }
            while let Some(bytes) = self.server.conn.poll_transmit() {
                self.server.record(&bytes);
                self.client.conn.handle_input(now, &bytes);
                moved = true;
            }
            let mut fresh = Vec::new();
            while let Some(event) = self.server.conn.poll_event() {
                moved = true;
                match event {
                    Event::Hello { name, room, .. } => {
                        self.server.conn.welcome(now, name, room).unwrap();
                    }
                    Event::Transfer(t) => fresh.push(t),
                    _ => {}
                }
            }
            moved |= self.client.act(now);
            moved |= self.server_act(fresh);
            if !moved {
                return;
            }
        }
    }

    fn server_act(&mut self, events: Vec<TransferEvent>) -> bool {
        let now = self.now;
        let acted = !events.is_empty();
        let s = &mut self.server;
        for t in events {
            match &t {
                TransferEvent::NeedChunk { id, offset, len } => {
                    let range = *offset as usize..(*offset + u64::from(*len)) as usize;
                    let chunk = Bytes::copy_from_slice(&s.partial[range]);
                    s.conn.supply_chunk(now, *id, *offset, chunk).unwrap();
                }
                TransferEvent::Chunk { id, offset, data } => {
                    s.partial.truncate(*offset as usize);
                    s.partial.extend_from_slice(data);
                    let upto = s.partial.len() as u64;
                    s.conn.confirm_written(now, *id, upto).unwrap();
                }
                TransferEvent::Restarted { .. } => s.partial.clear(),
                TransferEvent::Received { id, .. } => {
                    s.conn.finish_receive(now, *id, Ok(())).unwrap();
                }
                _ => {}
            }
            s.events.push(t);
        }
        acted
    }

    /// The offers the server saw: id and the key presented.
    fn offers(&self) -> Vec<(TransferId, Option<ResumeKey>)> {
        self.server
            .events
            .iter()
            .filter_map(|t| match t {
                TransferEvent::Offered { id, resume, .. } => Some((*id, *resume)),
                _ => None,
            })
            .collect()
    }
}

/// The frame right after the first one `is` matches in `frames`.
fn after(frames: &[Frame], is: impl Fn(&Frame) -> bool) -> Option<&Frame> {
    let at = frames.iter().position(is)?;
    frames.get(at + 1)
}

#[test]
fn the_receiver_issues_a_key_and_only_it_resumes_the_transfer() {
    let now = Instant::now();
    let data = file_bytes(300_000, 5);

    // First attempt: the server accepts and issues a key; the link is cut
    // part of the way through.
    let mut first = Pair::new(now);
    first.client.file = data.clone();
    first.up_budget = Some(150_000);
    let id = first
        .client
        .conn
        .offer_file(now, "thesis.pdf", data.len() as u64, "")
        .unwrap();
    first.run();
    assert_eq!(first.offers(), vec![(id, None)], "a plain offer has no key");
    first.server.conn.accept_resumable(now, id, 0, KEY).unwrap();
    first.run();
    // RESUME_KEY went out immediately before the ACCEPT.
    let next = after(
        &first.server.sent,
        |f| matches!(f, Frame::ResumeKey { id: i, key } if *i == id && *key == KEY),
    );
    assert!(
        matches!(next, Some(Frame::Accept { id: i, offset: 0, .. }) if *i == id),
        "{:?}",
        first.server.sent
    );
    // The sender heard the key before the acceptance.
    let key_at = first.client.events.iter().position(
        |e| matches!(e, TransferEvent::ResumeKey { id: i, key } if *i == id && *key == KEY),
    );
    let accepted_at = first
        .client
        .events
        .iter()
        .position(|e| matches!(e, TransferEvent::Accepted { .. }));
    assert!(
        key_at.is_some() && key_at < accepted_at,
        "{:?}",
        first.client.events
    );
    let held = first.server.partial.clone();
    assert!(
        held.len() > 60_000 && held.len() < 150_000,
        "{}",
        held.len()
    );
    first.server.conn.handle_eof(now);
    first.client.conn.handle_eof(now);

    // A stranger offering a file of the same name and size presents no key
    // (or a wrong one): the application sees it and starts a new transfer.
    let later = now + Duration::from_secs(1);
    let mut stranger = Pair::new(later);
    stranger.client.file = file_bytes(300_000, 6);
    let plain = stranger
        .client
        .conn
        .offer_file(later, "thesis.pdf", 300_000, "")
        .unwrap();
    let wrong = stranger
        .client
        .conn
        .offer_file_resuming(later, "thesis.pdf", 300_000, "", OTHER_KEY)
        .unwrap();
    stranger.run();
    let offers = stranger.offers();
    assert_eq!(offers, vec![(plain, None), (wrong, Some(OTHER_KEY))]);
    assert_ne!(offers[1].1, Some(KEY));
    stranger.server.conn.accept(later, plain, 0).unwrap();
    stranger.run();
    assert!(stranger.client.events.iter().any(|e| matches!(e,
        TransferEvent::Accepted { id, offset: 0, prefix_hash, .. }
            if *id == plain && *prefix_hash == empty_hash())));
    assert!(
        !stranger
            .server
            .sent
            .iter()
            .any(|f| matches!(f, Frame::ResumeKey { .. })),
        "accept issues no key"
    );

    // The owner comes back with the key and continues.
    let mut again = Pair::new(later);
    again.client.file = data.clone();
    again.server.partial = held.clone();
    let id2 = again
        .client
        .conn
        .offer_file_resuming(later, "thesis.pdf", data.len() as u64, "", KEY)
        .unwrap();
    again.run();
    // RESUME went out immediately before its OFFER.
    let next = after(
        &again.client.sent,
        |f| matches!(f, Frame::Resume { id: i, key } if *i == id2 && *key == KEY),
    );
    assert!(
        matches!(next, Some(Frame::Offer { id: i, .. }) if *i == id2),
        "{:?}",
        again.client.sent
    );
    assert_eq!(again.offers(), vec![(id2, Some(KEY))]);
    // The receiver holds this key's data: it resumes, and issues the key
    // again, still just before the ACCEPT (which waited for the prefix to
    // be hashed).
    again
        .server
        .conn
        .accept_resumable(later, id2, held.len() as u64, KEY)
        .unwrap();
    again.run();
    let next = after(&again.server.sent, |f| matches!(f, Frame::ResumeKey { .. }));
    assert!(
        matches!(next, Some(Frame::Accept { id: i, offset, .. })
            if *i == id2 && *offset == held.len() as u64),
        "{:?}",
        again.server.sent
    );
    assert!(again.client.events.iter().any(|e| matches!(e,
        TransferEvent::Ended { id, outcome: Outcome::Verified } if *id == id2)));
    assert_eq!(again.server.partial, data);
    // Only the missing part crossed the wire.
    let first_data = again.client.sent.iter().find_map(|f| match f {
        Frame::Data { offset, .. } => Some(*offset),
        _ => None,
    });
    assert_eq!(first_data, Some(held.len() as u64));
}

/// A welcomed server-role connection, its output drained.
fn welcomed_server(now: Instant) -> Connection {
    let mut server = Connection::server(Config::default(), now);
    server.handle_input(now, &PREAMBLE);
    server.handle_input(
        now,
        &encode(&[Frame::Hello {
            versions: vec![1],
            name: "mallory".into(),
            room: "".into(),
            token: Bytes::new(),
        }]),
    );
    assert!(matches!(server.poll_event(), Some(Event::Hello { .. })));
    server.welcome(now, "mallory".into(), "".into()).unwrap();
    drain(&mut server);
    server
}

/// A welcomed client-role connection, its output drained.
fn welcomed_client(now: Instant) -> Connection {
    let mut client = Connection::client(ClientConfig::new("alice"), now);
    let mut input = PREAMBLE.to_vec();
    input.extend(encode(&[Frame::Welcome {
        version: 1,
        name: "alice".into(),
        room: "lobby".into(),
        settings: Config::default().settings(),
    }]));
    client.handle_input(now, &input);
    assert!(client.is_open());
    drain(&mut client);
    while client.poll_event().is_some() {}
    client
}

fn offer(id: TransferId) -> Frame {
    Frame::Offer {
        id,
        size: 10,
        name: "f.bin".into(),
        peer: "".into(),
    }
}

fn resume(id: TransferId, key: ResumeKey) -> Frame {
    Frame::Resume { id, key }
}

#[test]
fn a_resume_holds_only_for_the_offer_right_after_it() {
    let now = Instant::now();
    let mut server = welcomed_server(now);
    server.handle_input(
        now,
        &encode(&[
            // Another id comes next: forgotten.
            resume(2, KEY),
            offer(0),
            // Another frame between them: forgotten.
            resume(2, KEY),
            Frame::Ping { nonce: 1 },
            offer(2),
            // So is one followed by an extension frame.
            resume(4, KEY),
            Frame::Extension {
                frame_type: 0x9a,
                body: Bytes::new(),
            },
            offer(4),
            // Right before its offer: attached.
            resume(6, KEY),
            offer(6),
            // Of two, the last one counts.
            resume(8, OTHER_KEY),
            resume(8, KEY),
            offer(8),
            // A RESUME for an offer that never comes is harmless.
            resume(10, KEY),
        ]),
    );
    let offered: Vec<_> = transfer_events(&mut server)
        .into_iter()
        .filter_map(|t| match t {
            TransferEvent::Offered { id, resume, .. } => Some((id, resume)),
            _ => None,
        })
        .collect();
    assert_eq!(
        offered,
        vec![
            (0, None),
            (2, None),
            (4, None),
            (6, Some(KEY)),
            (8, Some(KEY))
        ]
    );
    assert!(server.is_open());
    assert!(
        frames_in(&drain(&mut server))
            .iter()
            .all(|f| !matches!(f, Frame::Error { .. })),
        "no error for a stray RESUME"
    );
}

#[test]
fn a_resume_key_for_anything_but_an_offer_awaiting_its_answer_is_ignored() {
    let now = Instant::now();
    let mut client = welcomed_client(now);
    let answered = client.offer_file(now, "a.bin", 10, "").unwrap();
    let pending = client.offer_file(now, "b.bin", 10, "").unwrap();
    let accept = |id| Frame::Accept {
        id,
        offset: 0,
        window: 1 << 20,
        prefix_hash: empty_hash(),
    };
    client.handle_input(
        now,
        &encode(&[
            accept(answered),
            // An offer already answered.
            Frame::ResumeKey {
                id: answered,
                key: KEY,
            },
            // An id never offered, of either parity.
            Frame::ResumeKey { id: 100, key: KEY },
            Frame::ResumeKey { id: 1, key: KEY },
            // The server's own offer, which we receive.
            Frame::Offer {
                id: 3,
                size: 5,
                name: "c.bin".into(),
                peer: "".into(),
            },
            Frame::ResumeKey { id: 3, key: KEY },
            // The offer still waiting: kept.
            Frame::ResumeKey {
                id: pending,
                key: OTHER_KEY,
            },
            accept(pending),
        ]),
    );
    let events = transfer_events(&mut client);
    let keys: Vec<_> = events
        .iter()
        .filter_map(|t| match t {
            TransferEvent::ResumeKey { id, key } => Some((*id, *key)),
            _ => None,
        })
        .collect();
    assert_eq!(keys, vec![(pending, OTHER_KEY)]);
    let key_at = events
        .iter()
        .position(|t| matches!(t, TransferEvent::ResumeKey { .. }));
    let accepted_at = events
        .iter()
        .position(|t| matches!(t, TransferEvent::Accepted { id, .. } if *id == pending));
    assert!(key_at < accepted_at, "{events:?}");
    assert!(client.is_open());

    // And after the transfer ended.
    let id = client.offer_file(now, "d.bin", 10, "").unwrap();
    client.cancel(now, id, Code::CANCELLED, "no").unwrap();
    client.handle_input(now, &encode(&[Frame::ResumeKey { id, key: KEY }]));
    assert!(!transfer_events(&mut client)
        .iter()
        .any(|t| matches!(t, TransferEvent::ResumeKey { .. })));
    assert!(client.is_open());
}

#[test]
fn resume_frames_of_the_wrong_length_are_malformed_on_either_side() {
    let now = Instant::now();
    // 19 and 21 bytes: a key one byte short, one byte too many.
    for (frame_type, len) in [
        (0x80u8, 19u32),
        (0x80, 21),
        (0x81, 19),
        (0x81, 21),
        (0x81, 0),
    ] {
        let mut bytes = vec![frame_type];
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.resize(5 + len as usize, 0);
        for mut conn in [welcomed_server(now), welcomed_client(now)] {
            conn.handle_input(now, &bytes);
            let sent = frames_in(&drain(&mut conn));
            assert!(
                matches!(
                    sent.last(),
                    Some(Frame::Error {
                        code: Code::MALFORMED,
                        ..
                    })
                ),
                "{frame_type:#04x} with {len} bytes: {sent:?}"
            );
            assert!(conn.is_closed());
        }
    }
}

#[test]
fn resume_frames_before_the_welcome_are_treated_like_other_extensions() {
    let now = Instant::now();
    // A server takes nothing but HELLO first.
    let mut server = Connection::server(Config::default(), now);
    let mut input = PREAMBLE.to_vec();
    input.extend(encode(&[resume(0, KEY)]));
    server.handle_input(now, &input);
    assert!(matches!(
        frames_in(&drain(&mut server)).last(),
        Some(Frame::Error {
            code: Code::UNEXPECTED_FRAME,
            ..
        })
    ));
    // A client skips them while it waits for WELCOME.
    let mut client = Connection::client(ClientConfig::new("alice"), now);
    drain(&mut client);
    let mut input = PREAMBLE.to_vec();
    input.extend(encode(&[
        Frame::ResumeKey { id: 0, key: KEY },
        resume(1, KEY),
        Frame::Welcome {
            version: 1,
            name: "alice".into(),
            room: "lobby".into(),
            settings: Config::default().settings(),
        },
    ]));
    client.handle_input(now, &input);
    assert!(client.is_open());
}

/// Through a hub: bob issues the key, the hub carries it to alice with the
/// ACCEPT and back to bob with alice's next offer, translating ids both
/// ways.
#[test]
fn a_relay_passes_keys_through_with_translated_ids() {
    for split in [
        Split::Whole,
        Split::Random {
            seed: 3,
            max: 7_000,
        },
    ] {
        relay_passes_keys_with(split);
    }
}

fn relay_passes_keys_with(split: Split) {
    let mut net = Net::new(Default::default(), split);
    let a = net.join("alice");
    let b = net.join("bob");
    let data = file_bytes(3 << 20, 17);
    let sent = net.send_file(a, "movie.mkv", &data, "bob");
    while net.peers[b]
        .disk
        .partial
        .get("movie.mkv")
        .map_or(0, Vec::len)
        < 1 << 20
    {
        assert!(net.step(), "transfer stalled");
    }
    // Bob issued a key for his (odd) id; alice got the same key for hers.
    let issued = net.peers[b].disk.keys_issued["movie.mkv"];
    let offers = net.peers[b].offers();
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].0 % 2, 1, "the hub's id");
    assert_eq!(net.peers[b].offered_keys(), vec![None]);
    let alice_keys: Vec<_> = net.peers[a]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Transfer(TransferEvent::ResumeKey { id, key }) => Some((*id, *key)),
            _ => None,
        })
        .collect();
    assert_eq!(alice_keys, vec![(sent, issued)]);
    assert_eq!(net.peers[a].disk.resume_keys["movie.mkv"], issued);

    // Alice's link drops; bob keeps his partial file and its key.
    net.peers[a].cut = true;
    let client = net.peers[a].client;
    let now = net.now;
    net.hub.handle_eof(client, now);
    net.run();
    let held = net.peers[b].disk.partial["movie.mkv"].len() as u64;
    assert!(held >= 1 << 20 && held < data.len() as u64);
    assert_eq!(net.hub.relay_count(), 0);

    // She comes back with the key: bob's offer carries it, and he resumes.
    net.run_for(Duration::from_secs(1));
    let again = net.rejoin(a, "alice");
    let id = net.send_file(again, "movie.mkv", &data, "bob");
    net.run();
    assert_eq!(net.peers[b].offered_keys(), vec![None, Some(issued)]);
    assert_eq!(net.peers[again].accepted_at(), vec![held]);
    assert_eq!(net.peers[again].ended(), vec![(id, Outcome::Verified)]);
    assert_eq!(net.peers[b].disk.stored["movie.mkv"], data);
    // The key was sent again with the resumed ACCEPT, then forgotten once
    // the file was verified.
    assert!(net.peers[again].events.iter().any(|e| matches!(e,
        Event::Transfer(TransferEvent::ResumeKey { id: i, key }) if *i == id && *key == issued)));
    assert!(net.peers[again].disk.resume_keys.is_empty());
}

/// The inbox too: `Hub::accept_resumable` issues the key, and an offer
/// presenting it reaches the adapter with it.
#[test]
fn the_inbox_issues_keys_through_the_hub() {
    let mut net = Net::new(Default::default(), Split::Whole);
    let a = net.join("alice");
    let data = file_bytes(100_000, 2);
    let id = net.send_file(a, "notes.txt", &data, "");
    net.run();
    assert_eq!(net.peers[a].ended(), vec![(id, Outcome::Verified)]);
    let key = net.peers[a].events.iter().find_map(|e| match e {
        Event::Transfer(TransferEvent::ResumeKey { id: i, key }) if *i == id => Some(*key),
        _ => None,
    });
    assert!(key.is_some(), "no key from the inbox");
    // Verified: both sides forgot the key.
    assert!(net.peers[a].disk.resume_keys.is_empty());
    assert!(net.inbox.keys_issued.is_empty());
}

#[test]
fn wrong_calls_are_misuse_as_for_the_plain_methods() {
    use ferry_core::Misuse;
    let now = Instant::now();
    let mut server = welcomed_server(now);
    assert_eq!(
        server.accept_resumable(now, 0, 0, KEY),
        Err(Misuse::NoSuchTransfer(0))
    );
    server.handle_input(now, &encode(&[offer(0)]));
    assert_eq!(
        server.accept_resumable(now, 0, 11, KEY),
        Err(Misuse::InvalidArgument("resume offset past the end"))
    );
    assert_eq!(
        server.offer_file_resuming(now, "../etc/passwd", 1, "", KEY),
        Err(Misuse::InvalidArgument("unsafe file name"))
    );
    // Nothing was sent for the refused calls.
    assert!(frames_in(&drain(&mut server)).is_empty());
    server.accept_resumable(now, 0, 0, KEY).unwrap();
    assert_eq!(
        server.accept_resumable(now, 0, 0, KEY),
        Err(Misuse::NoSuchTransfer(0)),
        "answered twice"
    );
    let mut client = Connection::client(ClientConfig::new("alice"), now);
    assert_eq!(
        client.offer_file_resuming(now, "a.bin", 1, "", KEY),
        Err(Misuse::NotReady)
    );
}
