//! Two datagram peers over an in-memory network that drops, duplicates and
//! reorders: every message arrives at most once, and every message the
//! sender was told is delivered did arrive; the rest are reported lost.

mod notation;

use bytes::BytesMut;
use ferry_core::datagram::{
    Datagram, DropReason, Peer, PeerConfig, PeerEvent, MAX_DATAGRAM, SESSIONS_KEPT,
};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// What the network does with each datagram, in turn (cycled).
#[derive(Debug, Clone, Copy)]
enum Fate {
    Deliver,
    Drop,
    Duplicate,
    /// Held back and delivered after the next one.
    Delay,
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        6 => Just(Fate::Deliver),
        2 => Just(Fate::Drop),
        1 => Just(Fate::Duplicate),
        1 => Just(Fate::Delay),
    ]
}

/// Both peers, the clock, and what each saw.
struct Pair {
    now: Instant,
    peers: [Peer; 2],
    fates: Vec<Fate>,
    next_fate: usize,
    /// Datagrams in flight to peer `i`: (deliver at step, bytes).
    flight: [Vec<(u64, Vec<u8>)>; 2],
    step: u64,
    events: [Vec<PeerEvent>; 2],
}

impl Pair {
    fn new(fates: Vec<Fate>) -> Pair {
        let now = Instant::now();
        Pair {
            now,
            peers: [
                Peer::new(PeerConfig::new("alice"), now, 0xA11CE),
                Peer::new(PeerConfig::new("bob"), now, 0xB0B),
            ],
            fates,
            next_fate: 0,
            flight: [Vec::new(), Vec::new()],
            step: 0,
            events: [Vec::new(), Vec::new()],
        }
    }

    fn fate(&mut self) -> Fate {
        if self.fates.is_empty() {
            return Fate::Deliver;
        }
        let fate = self.fates[self.next_fate % self.fates.len()];
        self.next_fate += 1;
        fate
    }

    /// One round: transmit, deliver what is due, fire timers, collect
    /// events; then 50 ms pass.
    fn round(&mut self) {
        self.step += 1;
        for from in 0..2 {
            while let Some(datagram) = self.peers[from].poll_transmit() {
                assert!(datagram.len() <= MAX_DATAGRAM);
                let to = 1 - from;
                match self.fate() {
                    Fate::Deliver => self.flight[to].push((self.step, datagram.to_vec())),
                    Fate::Drop => {}
                    Fate::Duplicate => {
                        self.flight[to].push((self.step, datagram.to_vec()));
                        self.flight[to].push((self.step + 1, datagram.to_vec()));
                    }
                    Fate::Delay => self.flight[to].push((self.step + 2, datagram.to_vec())),
                }
            }
        }
        for to in 0..2 {
            let step = self.step;
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.flight[to])
                .into_iter()
                .partition(|(at, _)| *at <= step);
            self.flight[to] = later;
            for (_, datagram) in due {
                self.peers[to].handle_datagram(self.now, &datagram);
            }
        }
        self.now += Duration::from_millis(50);
        for i in 0..2 {
            self.peers[i].handle_timeout(self.now);
            while let Some(event) = self.peers[i].poll_event() {
                self.events[i].push(event);
            }
        }
    }

    fn quiet(&self) -> bool {
        self.peers
            .iter()
            .all(|p| p.unacked() == 0 && p.poll_timeout().is_none())
            && self.flight.iter().all(Vec::is_empty)
    }
}

/// `(sent, received)` outcomes of peer `from`'s messages: delivered and lost
/// sequence numbers at the sender, and received ones at the other end.
fn check_outcomes(pair: &Pair, from: usize, sent: &BTreeMap<u64, String>) {
    let to = 1 - from;
    let mut received = BTreeMap::new();
    for event in &pair.events[to] {
        if let PeerEvent::Message {
            seq,
            from: name,
            text,
        } = event
        {
            assert_eq!(&**name, ["alice", "bob"][from]);
            assert!(
                received.insert(*seq, text.to_string()).is_none(),
                "message {seq} arrived twice"
            );
        }
    }
    let mut delivered = BTreeSet::new();
    let mut lost = BTreeSet::new();
    for event in &pair.events[from] {
        match event {
            PeerEvent::Delivered { seq } => assert!(delivered.insert(*seq)),
            PeerEvent::Lost { seq, .. } => assert!(lost.insert(*seq)),
            _ => {}
        }
    }
    for (seq, text) in sent {
        assert!(
            delivered.contains(seq) != lost.contains(seq),
            "message {seq} is neither delivered nor lost, or both"
        );
        if delivered.contains(seq) {
            assert_eq!(
                received.get(seq),
                Some(text),
                "delivered {seq} never arrived"
            );
        }
        if let Some(got) = received.get(seq) {
            assert_eq!(got, text, "message {seq} arrived changed");
        }
    }
    assert!(received.keys().all(|seq| sent.contains_key(seq)));
}

fn chat(fates: Vec<Fate>, messages: usize) -> Pair {
    let mut pair = Pair::new(fates);
    let mut sent = [BTreeMap::new(), BTreeMap::new()];
    for i in 0..messages {
        for (from, sent) in sent.iter_mut().enumerate() {
            let text = format!("message {i} from {from}");
            let now = pair.now;
            let seq = pair.peers[from].send(now, &text).unwrap();
            sent.insert(seq, text);
        }
        pair.round();
    }
    // Retries run out within 12.6 s of virtual time: 300 rounds of 50 ms.
    for _ in 0..300 {
        if pair.quiet() {
            break;
        }
        pair.round();
    }
    assert!(
        pair.quiet(),
        "still busy after every retry should have run out"
    );
    check_outcomes(&pair, 0, &sent[0]);
    check_outcomes(&pair, 1, &sent[1]);
    pair
}

#[test]
fn a_clean_network_delivers_everything_once() {
    let pair = chat(Vec::new(), 20);
    for events in &pair.events {
        let delivered = events
            .iter()
            .filter(|e| matches!(e, PeerEvent::Delivered { .. }))
            .count();
        assert_eq!(delivered, 20);
    }
}

#[test]
fn duplicates_are_dropped_and_counted() {
    let pair = chat(vec![Fate::Duplicate], 10);
    assert!(pair.peers[1].drops().duplicate >= 10);
    assert!(pair.events[1].iter().any(|e| matches!(
        e,
        PeerEvent::Dropped {
            reason: DropReason::Duplicate
        }
    )));
}

#[test]
fn a_dead_link_reports_every_message_lost() {
    let pair = chat(vec![Fate::Drop], 5);
    let lost = pair.events[0]
        .iter()
        .filter(|e| matches!(e, PeerEvent::Lost { .. }))
        .count();
    assert_eq!(lost, 5);
}

#[test]
fn garbage_and_oversize_datagrams_are_dropped_with_a_reason() {
    let now = Instant::now();
    let mut peer = Peer::new(PeerConfig::new("bob"), now, 1);
    // An oversize frame: a ferry header whose length matches, 2000 bytes.
    let mut oversize = vec![0x40, 0, 0, 0x07, 0xCB];
    oversize.resize(2000, 0);
    peer.handle_datagram(now, &oversize);
    peer.handle_datagram(now, &[0x40, 0, 0, 0, 3, 1, 2, 3]);
    peer.handle_datagram(now, &[0x40, 0, 0, 0, 0]);
    // A TCP frame (PING) is not a datagram frame.
    peer.handle_datagram(now, &[0x04, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1]);
    let drops = peer.drops();
    assert_eq!(
        (drops.oversize, drops.malformed, drops.not_datagram),
        (1, 2, 1),
        "{drops:?}"
    );
    assert!(peer.poll_transmit().is_none(), "garbage is never answered");
    assert!(!peer.is_raw(), "frames, even broken ones, are not raw text");
}

/// Every event `peer` has, in order.
fn events(peer: &mut Peer) -> Vec<PeerEvent> {
    std::iter::from_fn(|| peer.poll_event()).collect()
}

fn raw_line(text: &str, cut: bool) -> PeerEvent {
    PeerEvent::RawLine {
        text: text.into(),
        cut,
    }
}

#[test]
fn frames_and_raw_text_are_told_apart_by_their_header() {
    use ferry_core::datagram::{classify, Kind};
    // Real frames, of every kind, including broken and foreign ones.
    assert_eq!(classify(&chat_datagram(1, 0, "hi")), Kind::Frame);
    assert_eq!(classify(&[0x41, 0, 0, 0, 0]), Kind::Frame);
    assert_eq!(classify(&[0x4F, 0, 0, 0, 1, 9]), Kind::Frame);
    assert_eq!(classify(&[0x04, 0, 0, 0, 1, 9]), Kind::Frame);
    // Text, including lines starting with '@' (0x40) and 'A' (0x41),
    // lines of exactly 5 bytes, and anything shorter.
    for text in [
        &b"raw qt udp line"[..],
        b"@bob are you there?",
        b"@home",
        b"Alice",
        b"hello",
        b"@",
        b"",
        b"\x40\x00\x00\x00",
        "@\u{e9}t\u{e9}".as_bytes(),
        b"@\x00\x00\x00\x01",
    ] {
        assert_eq!(classify(text), Kind::RawText, "{text:?}");
    }
    // A 5-byte line passes for a frame only with NUL bytes in it.
    assert_eq!(classify(b"@\0\0\0\0"), Kind::Frame);
    // The type byte does not matter, defined or not: the length field alone
    // tells, so a later version's new types cannot turn frames into text.
    for kind in [0x00, 0x08, 0x30, 0x35, 0x7F, 0x86, 0xFF] {
        assert_eq!(
            classify(&[kind, 0, 0, 0, 4, b'A', b'B', b'C', b'D']),
            Kind::Frame,
            "{kind:#x}"
        );
    }
    // An oversize frame, cut to the receiver's buffer (1201 bytes), still
    // reads as a frame (and is dropped as oversize); a long line does not.
    let mut cut_frame = vec![0x40, 0, 0, 0x05, 0xD7];
    cut_frame.resize(MAX_DATAGRAM + 1, 0);
    assert_eq!(classify(&cut_frame), Kind::Frame);
    let mut long_line = b"@".to_vec();
    long_line.resize(MAX_DATAGRAM + 1, b'x');
    assert_eq!(classify(&long_line), Kind::RawText);
}

#[test]
fn a_raw_datagram_is_a_sanitised_line_once_per_datagram_and_switches_to_raw_mode() {
    let now = Instant::now();
    let mut bob = Peer::new(PeerConfig::new("bob"), now, 1);
    assert!(!bob.is_raw());
    bob.handle_datagram(now, b"raw qt udp line");
    assert_eq!(
        events(&mut bob),
        [PeerEvent::RawMode, raw_line("raw qt udp line", false)]
    );
    assert!(bob.is_raw());
    assert!(bob.poll_transmit().is_none(), "raw text is never answered");
    // Escape sequences and controls are removed whole; line breaks at the
    // end go, those inside become spaces; invalid UTF-8 is replaced.
    bob.handle_datagram(now, b"\x1b[31mred\x1b[0m \x1b]0;title\x07ok\r\n");
    bob.handle_datagram(now, b"two\nlines\x07\x00");
    bob.handle_datagram(now, b"bad \xff\xfe utf-8");
    // No deduplication: the same line twice is shown twice.
    bob.handle_datagram(now, b"@home");
    bob.handle_datagram(now, b"@home");
    assert_eq!(
        events(&mut bob),
        [
            raw_line("red ok", false),
            raw_line("two lines", false),
            raw_line("bad \u{fffd}\u{fffd} utf-8", false),
            raw_line("@home", false),
            raw_line("@home", false),
        ]
    );
    assert_eq!(bob.drops().total(), 0);
    // Our lines now go out bare, once, never waited for.
    bob.send(now, "hello qt").unwrap();
    assert_eq!(&bob.poll_transmit().unwrap()[..], b"hello qt");
    assert!(bob.poll_transmit().is_none());
    assert_eq!((bob.unacked(), bob.poll_timeout()), (0, None));
    // A new ferry message switches back: a stray raw datagram does not
    // downgrade a ferry chat for good.
    bob.handle_datagram(now, &chat_datagram(7, 0, "still ferry"));
    assert_eq!(
        events(&mut bob),
        [
            PeerEvent::FerryMode,
            PeerEvent::Message {
                seq: 0,
                from: "alice".into(),
                text: "still ferry".into()
            }
        ]
    );
    assert!(!bob.is_raw());
    assert_eq!(bob.poll_transmit().unwrap()[0], 0x41);
    bob.send(now, "framed again").unwrap();
    assert_eq!(bob.poll_transmit().unwrap()[0], 0x40);
    assert_eq!(bob.unacked(), 1);
}

/// §9.1: a frame of a type that is not a datagram's is dropped and counted,
/// never shown as text, and does not switch the peer to raw mode.
#[test]
fn a_frame_of_any_other_type_is_dropped_not_shown() {
    let now = Instant::now();
    let mut bob = Peer::new(PeerConfig::new("bob"), now, 1);
    for kind in [0x00, 0x04, 0x35, 0x42, 0x86, 0xFF] {
        bob.handle_datagram(now, &[kind, 0, 0, 0, 4, b'A', b'B', b'C', b'D']);
    }
    let shown: Vec<PeerEvent> = events(&mut bob)
        .into_iter()
        .filter(|e| !matches!(e, PeerEvent::Dropped { .. }))
        .collect();
    assert!(shown.is_empty(), "{shown:?}");
    assert!(!bob.is_raw());
    assert_eq!(bob.drops().not_datagram, 6);
    assert!(bob.poll_transmit().is_none());
}

/// §9.4: a peer that sends unreliably still acknowledges what it receives,
/// so a reliable partner is told its message arrived instead of reporting
/// it lost.
#[test]
fn an_unreliable_peer_still_acknowledges() {
    let now = Instant::now();
    let mut alice = Peer::new(PeerConfig::new("alice"), now, 1);
    let mut config = PeerConfig::new("bob");
    config.reliable = false;
    let mut bob = Peer::new(config, now, 2);
    alice.send(now, "are you there?").unwrap();
    while let Some(d) = alice.poll_transmit() {
        bob.handle_datagram(now, &d);
    }
    while let Some(d) = bob.poll_transmit() {
        alice.handle_datagram(now, &d);
    }
    assert!(events(&mut alice).contains(&PeerEvent::Delivered { seq: 0 }));
    assert_eq!((alice.unacked(), alice.poll_timeout()), (0, None));
    // Bob's own messages still go once, waited for by nobody; Alice's ACK
    // of them is dropped as stale.
    bob.send(now, "yes").unwrap();
    assert_eq!(bob.unacked(), 0);
    while let Some(d) = bob.poll_transmit() {
        alice.handle_datagram(now, &d);
    }
    while let Some(d) = alice.poll_transmit() {
        bob.handle_datagram(now, &d);
    }
    assert_eq!(bob.drops().stale_ack, 1);
}

#[test]
fn raw_text_is_bounded() {
    use ferry_core::datagram::RAW_TEXT_MAX;
    let now = Instant::now();
    let mut bob = Peer::new(PeerConfig::new("bob"), now, 1);
    // Longer than a datagram (as a test can hand it over): cut.
    bob.handle_datagram(now, "\u{e9}".repeat(RAW_TEXT_MAX).as_bytes());
    // Invalid UTF-8 triples in size when replaced: still cut to the max.
    bob.handle_datagram(now, &[0xff; RAW_TEXT_MAX]);
    let lines: Vec<(usize, bool)> = events(&mut bob)
        .into_iter()
        .filter_map(|e| match e {
            PeerEvent::RawLine { text, cut } => Some((text.len(), cut)),
            _ => None,
        })
        .collect();
    assert_eq!(lines, [(RAW_TEXT_MAX, true), (RAW_TEXT_MAX, true)]);
    // A datagram of exactly the maximum is whole.
    bob.handle_datagram(now, &[b'x'; RAW_TEXT_MAX]);
    assert_eq!(
        events(&mut bob),
        [raw_line(&"x".repeat(RAW_TEXT_MAX), false)]
    );
}

#[test]
fn a_flood_of_raw_datagrams_costs_no_more_than_one_of_chats() {
    let now = Instant::now();
    let mut raw = Peer::new(PeerConfig::new("bob"), now, 1);
    let mut chat = Peer::new(PeerConfig::new("bob"), now, 1);
    for i in 0..1000u64 {
        raw.handle_datagram(now, &[b'x'; MAX_DATAGRAM]);
        chat.handle_datagram(now, &chat_datagram(9, i, &"x".repeat(1150)));
    }
    // One event a datagram for both (plus the switch to raw mode), and
    // nothing sent back for raw text (each CHAT costs an ACK).
    assert_eq!(events(&mut raw).len(), 1001);
    assert_eq!(events(&mut chat).len(), 1000);
    assert!(raw.poll_transmit().is_none());
    assert_eq!(std::iter::from_fn(|| chat.poll_transmit()).count(), 1000);
}

#[test]
fn in_raw_mode_from_the_start_lines_go_out_bare_and_frame_lookalikes_are_refused() {
    let now = Instant::now();
    let mut config = PeerConfig::new("alice");
    config.raw = true;
    let mut alice = Peer::new(config, now, 1);
    assert!(alice.is_raw());
    alice.send(now, "@bob hi").unwrap();
    alice.send(now, "hello").unwrap();
    assert_eq!(&alice.poll_transmit().unwrap()[..], b"@bob hi");
    assert_eq!(&alice.poll_transmit().unwrap()[..], b"hello");
    assert!(alice.send(now, "@\0\0\0\0").is_err(), "reads as a frame");
    assert!(alice.send(now, &"x".repeat(MAX_DATAGRAM + 1)).is_err());
    alice.send(now, &"x".repeat(MAX_DATAGRAM)).unwrap();
    assert_eq!(alice.poll_transmit().unwrap().len(), MAX_DATAGRAM);
    assert_eq!((alice.unacked(), alice.poll_timeout()), (0, None));
    // Already raw: a raw line does not announce a switch, and with
    // `raw` set a ferry message does not switch back.
    alice.handle_datagram(now, b"hi alice");
    alice.handle_datagram(now, &chat_datagram(7, 0, "ferry"));
    assert_eq!(events(&mut alice).len(), 2);
    assert!(alice.is_raw());
}

#[test]
fn messages_waiting_when_the_peer_turns_out_raw_are_resent_as_text() {
    let now = Instant::now();
    let mut alice = Peer::new(PeerConfig::new("alice"), now, 1);
    alice.send(now, "first").unwrap();
    let frame = alice.poll_transmit().unwrap();
    assert_eq!(frame[0], 0x40);
    assert_eq!(alice.unacked(), 1);
    // The raw-text peer printed the frame as garbage and says something.
    alice.handle_datagram(now, b"what was that?");
    assert_eq!(&alice.poll_transmit().unwrap()[..], b"first");
    assert!(alice.poll_transmit().is_none());
    assert_eq!((alice.unacked(), alice.poll_timeout()), (0, None));
    alice.handle_timeout(now + Duration::from_secs(60));
    assert!(alice.poll_transmit().is_none(), "nothing retransmitted");
    assert_eq!(
        events(&mut alice),
        [PeerEvent::RawMode, raw_line("what was that?", false)]
    );
}

#[test]
fn a_restarted_peer_is_heard_again() {
    let now = Instant::now();
    let mut alice = Peer::new(PeerConfig::new("alice"), now, 1);
    let mut bob = Peer::new(PeerConfig::new("bob"), now, 2);
    alice.send(now, "one").unwrap();
    while let Some(d) = alice.poll_transmit() {
        bob.handle_datagram(now, &d);
    }
    // Alice restarts: a new session, numbering from 0 again.
    let mut alice = Peer::new(PeerConfig::new("alice"), now, 3);
    alice.send(now, "two").unwrap();
    while let Some(d) = alice.poll_transmit() {
        bob.handle_datagram(now, &d);
    }
    let events: Vec<_> = std::iter::from_fn(|| bob.poll_event()).collect();
    assert!(events.contains(&PeerEvent::PeerRestarted));
    let texts: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            PeerEvent::Message { text, .. } => Some(text.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["one", "two"]);
}

/// The bytes of a CHAT from mallory's capture: `text` as message `seq` of
/// `session`.
fn chat_datagram(session: u64, seq: u64, text: &str) -> Vec<u8> {
    let mut out = BytesMut::new();
    Datagram::Chat {
        session,
        seq,
        from: "alice".into(),
        text: text.into(),
    }
    .encode(&mut out)
    .unwrap();
    out.to_vec()
}

/// The texts `peer` delivered since last asked, and its restarts.
fn delivered(peer: &mut Peer) -> (Vec<String>, usize) {
    let mut texts = Vec::new();
    let mut restarts = 0;
    while let Some(event) = peer.poll_event() {
        match event {
            PeerEvent::Message { text, .. } => texts.push(text.to_string()),
            PeerEvent::PeerRestarted => restarts += 1,
            _ => {}
        }
    }
    (texts, restarts)
}

/// The review's replay: a message, then a datagram of another session, then
/// the first datagram again. It used to be shown twice, as another session
/// cleared the record of what had arrived.
#[test]
fn a_message_replayed_after_another_session_is_shown_once() {
    let now = Instant::now();
    let mut bob = Peer::new(PeerConfig::new("bob"), now, 2);
    let pay = chat_datagram(1, 0, "pay 10 EUR");
    bob.handle_datagram(now, &pay);
    bob.handle_datagram(now, &chat_datagram(9, 0, "hello from another run"));
    bob.handle_datagram(now, &pay);
    // And back and forth once more, with the later session's message too.
    bob.handle_datagram(now, &chat_datagram(9, 0, "hello from another run"));
    bob.handle_datagram(now, &pay);
    let (texts, restarts) = delivered(&mut bob);
    assert_eq!(texts, ["pay 10 EUR", "hello from another run"]);
    assert_eq!(restarts, 1, "returning to a known session is no restart");
    assert_eq!(bob.drops().duplicate, 3);
    // Every copy is still acknowledged: the first ACK may have been lost.
    assert_eq!(std::iter::from_fn(|| bob.poll_transmit()).count(), 5);
}

/// A message from each of the last `SESSIONS_KEPT` sessions stays delivered
/// once, whatever order they come back in; only a session pushed out by
/// that many newer ones is forgotten (the documented limit).
#[test]
fn the_last_sessions_are_remembered_and_the_oldest_forgotten() {
    let now = Instant::now();
    let mut bob = Peer::new(PeerConfig::new("bob"), now, 2);
    let kept = SESSIONS_KEPT as u64;
    for session in 0..kept {
        bob.handle_datagram(now, &chat_datagram(session, 0, &format!("from {session}")));
    }
    assert_eq!(delivered(&mut bob).0.len(), SESSIONS_KEPT);
    for session in (0..kept).rev().chain(0..kept) {
        bob.handle_datagram(now, &chat_datagram(session, 0, &format!("from {session}")));
    }
    assert_eq!(delivered(&mut bob), (vec![], 0));
    // Session 0 is now the one heard from least recently: one more
    // session pushes it out, and only it.
    bob.handle_datagram(now, &chat_datagram(kept, 0, "newest"));
    assert_eq!(delivered(&mut bob), (vec!["newest".to_string()], 1));
    bob.handle_datagram(now, &chat_datagram(1, 0, "from 1"));
    assert_eq!(delivered(&mut bob), (vec![], 0), "session 1 is still known");
    bob.handle_datagram(now, &chat_datagram(0, 0, "from 0"));
    assert_eq!(
        delivered(&mut bob),
        (vec!["from 0".to_string()], 1),
        "session 0 was forgotten: only a sender of {SESSIONS_KEPT} other sessions gets here"
    );
}

#[test]
fn oversize_messages_are_refused_before_sending() {
    let now = Instant::now();
    let mut peer = Peer::new(PeerConfig::new("alice"), now, 1);
    let max = peer.max_text();
    assert!(peer.send(now, &"x".repeat(max + 1)).is_err());
    peer.send(now, &"x".repeat(max)).unwrap();
    assert_eq!(peer.poll_transmit().unwrap().len(), MAX_DATAGRAM);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_lossy_network_loses_nothing_silently(
        fates in proptest::collection::vec(fate(), 1..40),
        messages in 1usize..30,
    ) {
        chat(fates, messages);
    }
}

/// The ```` ```datagram-vector ```` blocks of `docs/PROTOCOL.md` decode to
/// their `frame:` line and encode back to the same bytes.
#[test]
fn the_protocol_documents_vectors_hold() {
    use bytes::BytesMut;
    use ferry_core::datagram::Datagram;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/PROTOCOL.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let mut checked = BTreeSet::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```datagram-vector" {
            continue;
        }
        let mut fields = BTreeMap::new();
        for line in lines.by_ref() {
            if line.trim() == "```" {
                break;
            }
            let (key, value) = line.split_once(':').expect("key: value");
            fields.insert(key.trim().to_string(), value.trim().to_string());
        }
        let hex: String = fields["hex"].split_whitespace().collect();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let datagram = Datagram::decode(&bytes).unwrap();
        assert_eq!(notation::datagram(&datagram), fields["frame"]);
        let mut out = BytesMut::new();
        datagram.encode(&mut out).unwrap();
        assert_eq!(out[..], bytes[..]);
        checked.insert(bytes[0]);
    }
    assert_eq!(
        checked.into_iter().collect::<Vec<_>>(),
        [0x40, 0x41],
        "a vector for each datagram type"
    );
}
