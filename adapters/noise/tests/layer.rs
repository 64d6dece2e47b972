//! The encrypted UDP chat layer over a simulated network: a virtual clock,
//! and datagrams that are lost, duplicated, delayed and reordered.

use bytes::Bytes;
use ferry_core::datagram::{Datagram, PeerConfig, PeerEvent};
use ferry_noise::{Entropy, Noise, Secret, UdpChat, PENDING_MAX, QUEUE_MAX};
use std::time::{Duration, Instant};

/// xorshift64*: a deterministic stream for the network and for entropy.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn entropy(seed: u64) -> Entropy {
    let mut rng = Rng(seed | 1);
    Box::new(move |buf: &mut [u8]| {
        for b in buf {
            *b = rng.next() as u8;
        }
    })
}

/// How the simulated network treats datagrams, in percent.
#[derive(Clone, Copy, Default)]
struct Net {
    loss: u64,
    duplicate: u64,
    /// Delayed by up to 300 ms, so later datagrams overtake it.
    reorder: u64,
}

struct Sim {
    now: Instant,
    peers: [UdpChat; 2],
    /// (when, to, datagram).
    wire: Vec<(Instant, usize, Bytes)>,
    net: Net,
    rng: Rng,
    events: [Vec<PeerEvent>; 2],
    /// Every datagram sent, as sent, and by whom.
    sent: Vec<(usize, Bytes)>,
}

fn chat(name: &str, secret: Option<&str>, session: u64, seed: u64, now: Instant) -> UdpChat {
    let secret = secret.map(|s| (Secret::from_text(s), entropy(seed)));
    UdpChat::new(PeerConfig::new(name), now, session, secret).unwrap()
}

impl Sim {
    fn new(secrets: [Option<&str>; 2], net: Net, seed: u64) -> Sim {
        let start = Instant::now();
        Sim {
            now: start,
            peers: [
                chat("alice", secrets[0], 1, seed, start),
                chat(
                    "bob",
                    secrets[1],
                    2,
                    seed.wrapping_mul(31).wrapping_add(7),
                    start,
                ),
            ],
            wire: Vec::new(),
            net,
            rng: Rng(seed.wrapping_mul(0x9E37_79B9) | 1),
            events: [Vec::new(), Vec::new()],
            sent: Vec::new(),
        }
    }

    fn flush(&mut self) {
        for from in 0..2 {
            while let Some(datagram) = self.peers[from].poll_transmit() {
                self.sent.push((from, datagram.clone()));
                let copies = if self.rng.chance(self.net.duplicate) {
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    if self.rng.chance(self.net.loss) {
                        continue;
                    }
                    let delay = if self.rng.chance(self.net.reorder) {
                        Duration::from_millis(self.rng.next() % 300)
                    } else {
                        Duration::from_millis(1)
                    };
                    self.wire
                        .push((self.now + delay, 1 - from, datagram.clone()));
                }
            }
            while let Some(event) = self.peers[from].poll_event() {
                self.events[from].push(event);
            }
        }
    }

    /// Advances to the next delivery or timeout; false when idle.
    fn step(&mut self, until: Instant) -> bool {
        self.flush();
        let next_wire = self.wire.iter().map(|w| w.0).min();
        let next_timer = self.peers.iter().filter_map(UdpChat::poll_timeout).min();
        let Some(next) = [next_wire, next_timer].into_iter().flatten().min() else {
            return false;
        };
        if next > until {
            return false;
        }
        self.now = self.now.max(next);
        if let Some(at) = self.wire.iter().position(|w| w.0 <= self.now) {
            let (_, to, datagram) = self.wire.remove(at);
            self.peers[to].handle_datagram(self.now, &datagram);
        } else {
            for peer in &mut self.peers {
                peer.handle_timeout(self.now);
            }
        }
        self.flush();
        true
    }

    fn run_for(&mut self, span: Duration) {
        let until = self.now + span;
        for _ in 0..1_000_000 {
            if !self.step(until) {
                break;
            }
        }
        self.now = self.now.max(until);
    }

    fn messages(&self, who: usize) -> Vec<String> {
        self.events[who]
            .iter()
            .filter_map(|e| match e {
                PeerEvent::Message { text, .. } => Some(text.to_string()),
                _ => None,
            })
            .collect()
    }

    fn count(&self, who: usize, pick: impl Fn(&PeerEvent) -> bool) -> usize {
        self.events[who].iter().filter(|e| pick(e)).count()
    }

    fn send(&mut self, who: usize, text: &str) -> u64 {
        let seq = self.peers[who].send(self.now, text).unwrap();
        self.flush();
        seq
    }
}

const SECRET: Option<&str> = Some("a long random secret both users typed");

#[test]
fn both_peers_start_at_once_and_chat_both_ways() {
    let mut sim = Sim::new([SECRET, SECRET], Net::default(), 1);
    sim.send(0, "typed before the handshake");
    sim.run_for(Duration::from_secs(2));
    assert!(sim.peers[0].is_established() && sim.peers[1].is_established());
    sim.send(1, "hello alice");
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.messages(1), ["typed before the handshake"]);
    assert_eq!(sim.messages(0), ["hello alice"]);
    for who in 0..2 {
        assert_eq!(sim.peers[who].unacked(), 0);
        assert_eq!(
            sim.peers[who].drops().total(),
            0,
            "{:?}",
            sim.peers[who].drops()
        );
        assert_eq!(sim.count(who, |e| *e == PeerEvent::Encrypted), 1);
    }
    // Nothing on the wire shows the text, nor is a clear ferry frame.
    for (_, datagram) in &sim.sent {
        assert!((0x48..=0x4A).contains(&datagram[0]), "{datagram:?}");
        for text in ["typed before", "hello alice", "alice", "bob"] {
            assert!(
                !contains(datagram, text.as_bytes()),
                "{text} in {datagram:?}"
            );
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn one_peer_starts_long_after_the_other() {
    let mut sim = Sim::new([SECRET, SECRET], Net::default(), 2);
    // Bob is not there yet: everything sent to him is lost.
    sim.net.loss = 100;
    sim.send(0, "anyone?");
    sim.run_for(Duration::from_secs(5));
    sim.net.loss = 0;
    sim.peers[1] = chat("bob", SECRET, 3, 77, sim.now);
    sim.run_for(Duration::from_secs(5));
    assert!(sim.peers[0].is_established() && sim.peers[1].is_established());
    sim.send(1, "here");
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.messages(0), ["here"]);
}

#[test]
fn the_handshake_survives_loss_reordering_and_duplicates() {
    let net = Net {
        loss: 30,
        duplicate: 20,
        reorder: 30,
    };
    for seed in 1..=40 {
        let mut sim = Sim::new([SECRET, SECRET], net, seed);
        for i in 0..5 {
            sim.send(0, &format!("a{i}"));
            sim.send(1, &format!("b{i}"));
        }
        sim.run_for(Duration::from_secs(60));
        // 30 % loss over six tries: a message may be reported lost (even
        // one that arrived, when its acknowledgements were lost), never
        // doubled, and never missing without a report.
        for (from, to, prefix) in [(0, 1, "a"), (1, 0, "b")] {
            let mut heard = sim.messages(to);
            let lost: Vec<String> = sim.events[from]
                .iter()
                .filter_map(|e| match e {
                    PeerEvent::Lost { text, .. } => Some(text.to_string()),
                    _ => None,
                })
                .collect();
            let count = heard.len();
            heard.sort();
            heard.dedup();
            assert_eq!(heard.len(), count, "seed {seed}: {heard:?}");
            for i in 0..5 {
                let text = format!("{prefix}{i}");
                assert!(
                    heard.contains(&text) || lost.contains(&text),
                    "seed {seed}: {text}"
                );
            }
        }
        assert!(
            sim.peers[0].is_established() && sim.peers[1].is_established(),
            "seed {seed}"
        );
        for who in 0..2 {
            let shown = sim.count(who, |e| {
                matches!(e, PeerEvent::RawLine { .. } | PeerEvent::RawMode)
            });
            assert_eq!(shown, 0, "seed {seed}");
        }
    }
}

#[test]
fn a_restarted_peer_is_met_with_a_new_handshake() {
    let mut sim = Sim::new([SECRET, SECRET], Net::default(), 5);
    sim.send(0, "before");
    sim.send(1, "me too");
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.messages(1), ["before"]);
    // Bob restarts: new keys, new session number, nothing remembered.
    sim.peers[1] = chat("bob", SECRET, 99, 1234, sim.now);
    sim.events[1].clear();
    sim.run_for(Duration::from_secs(2));
    assert!(sim.peers[1].is_established());
    assert_eq!(sim.count(0, |e| *e == PeerEvent::Encrypted), 2);
    sim.send(0, "after");
    sim.send(1, "back");
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.messages(1), ["after"]);
    assert_eq!(sim.messages(0), ["me too", "back"]);
    assert_eq!(sim.count(0, |e| *e == PeerEvent::PeerRestarted), 1);
    assert_eq!(sim.peers[0].unacked() + sim.peers[1].unacked(), 0);
}

#[test]
fn a_restart_under_loss_still_recovers() {
    let net = Net {
        loss: 25,
        duplicate: 10,
        reorder: 20,
    };
    for seed in 1..=20 {
        let mut sim = Sim::new([SECRET, SECRET], net, seed);
        sim.run_for(Duration::from_secs(10));
        sim.peers[0] = chat("alice", SECRET, 50 + seed, seed * 3, sim.now);
        sim.events[0].clear();
        sim.run_for(Duration::from_secs(10));
        sim.send(0, "one");
        sim.send(1, "two");
        sim.run_for(Duration::from_secs(30));
        let lost = sim.count(0, |e| matches!(e, PeerEvent::Lost { .. }))
            + sim.count(1, |e| matches!(e, PeerEvent::Lost { .. }));
        assert_eq!(
            sim.messages(0).len() + sim.messages(1).len() + lost,
            2,
            "seed {seed}"
        );
        assert!(
            sim.peers[0].is_established() && sim.peers[1].is_established(),
            "seed {seed}"
        );
    }
}

#[test]
fn a_wrong_secret_shows_nothing_and_counts_every_datagram() {
    let mut sim = Sim::new([SECRET, Some("another secret")], Net::default(), 6);
    sim.send(0, "for the right bob only");
    sim.send(1, "from the wrong bob");
    sim.run_for(Duration::from_secs(20));
    for who in 0..2 {
        assert!(!sim.peers[who].is_established());
        assert!(sim.messages(who).is_empty());
        assert!(sim.peers[who].drops().unauthenticated > 0);
        assert_eq!(
            sim.peers[who].drops().unauthenticated,
            sim.peers[who].drops().total()
        );
        assert_eq!(sim.count(who, |e| matches!(e, PeerEvent::Lost { .. })), 1);
        assert_eq!(
            sim.count(who, |e| matches!(
                e,
                PeerEvent::RawMode | PeerEvent::RawLine { .. }
            )),
            0
        );
    }
}

#[test]
fn an_encrypted_peer_meets_a_clear_one() {
    let mut sim = Sim::new([SECRET, None], Net::default(), 7);
    sim.send(1, "clear text from bob");
    sim.send(0, "sealed from alice");
    sim.run_for(Duration::from_secs(15));
    assert!(sim.messages(0).is_empty(), "the clear CHAT is not shown");
    assert!(sim.messages(1).is_empty());
    assert!(sim.peers[0].drops().unauthenticated > 0);
    // The clear peer sees reserved frame types, not raw text.
    assert!(sim.peers[1].drops().not_datagram > 0);
    assert_eq!(sim.count(1, |e| matches!(e, PeerEvent::RawLine { .. })), 0);
    // Raw text at the encrypted peer is dropped too, never shown.
    sim.peers[0].handle_datagram(sim.now, b"hello from a Qt peer");
    sim.flush();
    assert_eq!(
        sim.count(0, |e| matches!(
            e,
            PeerEvent::RawLine { .. } | PeerEvent::RawMode
        )),
        0
    );
}

#[test]
fn replayed_and_tampered_datagrams_are_dropped() {
    let mut sim = Sim::new([SECRET, SECRET], Net::default(), 8);
    sim.run_for(Duration::from_secs(2));
    let before = sim.sent.len();
    sim.send(0, "pay 10 EUR");
    let chat = sim.sent[before].1.clone();
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.messages(1), ["pay 10 EUR"]);
    let drops = sim.peers[1].drops().unauthenticated;
    let duplicates = sim.peers[1].drops().duplicate;
    // The same sealed datagram again, twice: a replay (or the network
    // duplicating it), authentic but not new.
    sim.peers[1].handle_datagram(sim.now, &chat);
    sim.peers[1].handle_datagram(sim.now, &chat);
    // Every single bit flipped in turn.
    for bit in 0..chat.len() * 8 {
        let mut tampered = chat.to_vec();
        tampered[bit / 8] ^= 1 << (bit % 8);
        sim.peers[1].handle_datagram(sim.now, &tampered);
    }
    // Cut short, and a clear CHAT that says the same.
    sim.peers[1].handle_datagram(sim.now, &chat[..chat.len() - 1]);
    let mut clear = bytes::BytesMut::new();
    Datagram::Chat {
        session: 1,
        seq: 7,
        from: "alice".into(),
        text: "pay 1000 EUR".into(),
    }
    .encode(&mut clear)
    .unwrap();
    sim.peers[1].handle_datagram(sim.now, &clear);
    sim.flush();
    assert_eq!(sim.messages(1), ["pay 10 EUR"]);
    assert_eq!(sim.peers[1].drops().duplicate - duplicates, 2);
    // Tampering (a flipped bit in the nonce too: a seen nonce is
    // authenticated before it counts as a duplicate), cut short, clear.
    assert_eq!(
        sim.peers[1].drops().unauthenticated - drops,
        chat.len() as u64 * 8 + 2
    );
}

#[test]
fn the_queue_before_the_handshake_is_bounded() {
    let start = Instant::now();
    let mut alice = chat("alice", SECRET, 1, 1, start);
    for i in 0..QUEUE_MAX {
        alice.send(start, &format!("m{i}")).unwrap();
    }
    assert!(alice.send(start, "one too many").is_err());
    // Retransmissions are kept once, not again.
    alice.handle_timeout(start + Duration::from_secs(1));
    while alice.poll_transmit().is_some() {}
    let mut bob = chat("bob", SECRET, 2, 2, start);
    let mut now = start;
    let mut heard = Vec::new();
    for _ in 0..20 {
        now += Duration::from_millis(50);
        while let Some(d) = alice.poll_transmit() {
            bob.handle_datagram(now, &d);
        }
        while let Some(d) = bob.poll_transmit() {
            alice.handle_datagram(now, &d);
        }
        alice.handle_timeout(now);
        bob.handle_timeout(now);
        while let Some(e) = bob.poll_event() {
            if let PeerEvent::Message { text, .. } = e {
                heard.push(text.to_string());
            }
        }
    }
    let expected: Vec<String> = (0..QUEUE_MAX).map(|i| format!("m{i}")).collect();
    assert_eq!(heard, expected);
}

#[test]
fn messages_fit_in_a_datagram_once_sealed() {
    let start = Instant::now();
    let mut alice = chat("alice", SECRET, 1, 1, start);
    let long = "x".repeat(2000);
    let err = alice.send(start, &long).unwrap_err().to_string();
    let max: usize = err
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .min()
        .unwrap();
    alice.send(start, &long[..max]).unwrap();
    let mut bob = chat("bob", SECRET, 2, 2, start);
    let mut sizes = Vec::new();
    for _ in 0..4 {
        while let Some(d) = alice.poll_transmit() {
            sizes.push(d.len());
            bob.handle_datagram(start, &d);
        }
        while let Some(d) = bob.poll_transmit() {
            alice.handle_datagram(start, &d);
        }
    }
    assert_eq!(
        sizes.iter().max(),
        Some(&ferry_core::datagram::MAX_DATAGRAM)
    );
}

/// The first INIT `who` sent in `sim`.
fn first_init(sim: &Sim, who: usize) -> Bytes {
    sim.sent
        .iter()
        .find(|(from, d)| *from == who && d[0] == 0x48)
        .unwrap()
        .1
        .clone()
}

#[test]
fn honest_peers_starting_at_any_offset_drop_nothing() {
    for seed in 1..=60 {
        let mut sim = Sim::new([SECRET, SECRET], Net::default(), seed);
        // Bob starts up to 3 s later; until then what is sent to him is lost.
        sim.net.loss = 100;
        sim.run_for(Duration::from_millis(seed * 50));
        sim.net.loss = 0;
        sim.peers[1] = chat("bob", SECRET, 2, seed * 7, sim.now);
        sim.run_for(Duration::from_secs(5));
        sim.send(0, "hi");
        sim.send(1, "ho");
        sim.run_for(Duration::from_secs(3));
        assert_eq!(
            (sim.messages(0), sim.messages(1)),
            (vec!["ho".to_string()], vec!["hi".to_string()]),
            "seed {seed}"
        );
        for who in 0..2 {
            assert_eq!(
                sim.peers[who].drops().total(),
                0,
                "seed {seed}: {:?}",
                sim.peers[who].drops()
            );
        }
    }
}

#[test]
fn a_replayed_old_init_neither_blocks_a_new_peer_nor_a_restart() {
    // An INIT bob sent in an earlier chat with the same secret.
    let mut earlier = Sim::new([SECRET, SECRET], Net::default(), 11);
    earlier.run_for(Duration::from_secs(1));
    let old_init = first_init(&earlier, 1);

    // Replayed to alice as she starts, before bob's own INIT arrives.
    let mut sim = Sim::new([SECRET, SECRET], Net::default(), 12);
    sim.peers[0].handle_datagram(sim.now, &old_init);
    sim.run_for(Duration::from_secs(10));
    sim.send(0, "still works");
    sim.send(1, "yes");
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.messages(1), ["still works"]);
    assert_eq!(sim.messages(0), ["yes"]);

    // Replayed again and again while bob restarts.
    sim.peers[1] = chat("bob", SECRET, 3, 4321, sim.now);
    sim.events[1].clear();
    for _ in 0..20 {
        sim.peers[0].handle_datagram(sim.now, &old_init);
        sim.run_for(Duration::from_millis(50));
    }
    sim.run_for(Duration::from_secs(3));
    sim.send(0, "after the restart");
    sim.send(1, "heard");
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.messages(1), ["after the restart"]);
    assert_eq!(sim.messages(0), ["yes", "heard"]);
}

/// PROTOCOL.md §9.7.4: a late copy of the INIT behind the confirmed session
/// (the network duplicated it, or someone replays it) is a duplicate: it
/// gets no new RESPONSE and leaves no pending session behind.
#[test]
fn a_late_copy_of_an_answered_init_is_a_duplicate() {
    let now = Instant::now();
    let secret = Secret::from_text("late copies");
    let mut layers = [
        Noise::new(&secret, now, entropy(5)),
        Noise::new(&secret, now, entropy(6)),
    ];
    let mut inits: [Vec<Bytes>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..3 {
        for from in 0..2 {
            while let Some(d) = layers[from].poll_transmit() {
                if d[0] == 0x48 {
                    inits[from].push(d.clone());
                }
                layers[1 - from].handle_datagram(now, &d);
            }
        }
    }
    assert!(layers.iter().all(Noise::is_established));
    assert!(layers.iter().all(|l| l.pending() == 0));
    for from in 0..2 {
        for init in &inits[from] {
            let to = &mut layers[1 - from];
            let received = to.handle_datagram(now, init);
            assert_ne!(received, ferry_noise::Received::Dropped);
            assert!(to.poll_transmit().is_none(), "a late INIT was answered");
            assert_eq!(to.pending(), 0);
            assert!(to.is_established());
        }
    }
}

/// Two established layers, alice's datagrams delivered to bob.
fn established() -> (ferry_noise::Noise, ferry_noise::Noise, Instant) {
    use ferry_noise::Noise;
    let now = Instant::now();
    let secret = Secret::from_text("proptest");
    let mut alice = Noise::new(&secret, now, entropy(1));
    let mut bob = Noise::new(&secret, now, entropy(2));
    for _ in 0..3 {
        while let Some(d) = alice.poll_transmit() {
            bob.handle_datagram(now, &d);
        }
        while let Some(d) = bob.poll_transmit() {
            alice.handle_datagram(now, &d);
        }
    }
    assert!(alice.is_established() && bob.is_established());
    (alice, bob, now)
}

proptest::proptest! {
    /// Whatever an attacker without the secret sends, in any shape: never
    /// a panic, never a plaintext, always counted.
    #[test]
    fn forged_datagrams_never_come_through(
        kind in proptest::sample::select(vec![0x40u8, 0x41, 0x48, 0x49, 0x4A, 0x4B, 0x11, b'h']),
        body in proptest::collection::vec(proptest::num::u8::ANY, 0..1300),
        honest_length in proptest::bool::ANY,
    ) {
        let (_alice, mut bob, now) = established();
        let mut datagram = vec![kind];
        let declared = if honest_length { body.len() as u32 } else { body.len() as u32 ^ 1 };
        datagram.extend_from_slice(&declared.to_be_bytes());
        datagram.extend_from_slice(&body);
        let before = bob.unauthenticated();
        let received = bob.handle_datagram(now, &datagram);
        // A forged INIT cannot authenticate without the key either.
        proptest::prop_assert_eq!(received, ferry_noise::Received::Dropped);
        proptest::prop_assert_eq!(bob.unauthenticated(), before + 1);
        proptest::prop_assert!(bob.is_established());
    }

    /// Sealed datagrams delivered in any order, some twice: each plaintext
    /// comes through exactly once.
    #[test]
    fn reordered_and_repeated_datagrams_come_through_once(
        order in proptest::collection::vec(0usize..40, 0..120),
    ) {
        let (mut alice, mut bob, now) = established();
        let sealed: Vec<Bytes> = (0..40u8)
            .map(|i| {
                assert!(alice.seal(&[0x40, 0, 0, 0, 1, i]));
                alice.poll_transmit().unwrap()
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        for &i in &order {
            match bob.handle_datagram(now, &sealed[i]) {
                ferry_noise::Received::Plaintext(p) => {
                    proptest::prop_assert_eq!(p[5] as usize, i);
                    proptest::prop_assert!(seen.insert(i), "{} twice", i);
                }
                other => {
                    // Authentic, so a duplicate, not a failed authentication.
                    proptest::prop_assert_eq!(other, ferry_noise::Received::Duplicate);
                    proptest::prop_assert!(seen.contains(&i));
                }
            }
        }
    }
}

/// A forged RESPONSE reaching an initiator first does not spoil its
/// handshake: the real one still completes it.
#[test]
fn a_forged_response_does_not_spoil_the_handshake() {
    use ferry_noise::{Noise, Received};
    let now = Instant::now();
    let secret = Secret::from_text("forged response");
    let mut alice = Noise::new(&secret, now, entropy(1));
    let mut bob = Noise::new(&secret, now, entropy(2));
    let alice_init = alice.poll_transmit().unwrap();
    let bob_init = bob.poll_transmit().unwrap();
    // Whichever of alice and bob ends up initiator gets a forgery of the
    // right shape first (without the key, nothing better can be made).
    let mut forged = vec![0x49, 0, 0, 0, 48];
    forged.extend_from_slice(&[7; 48]);
    for target in [&mut alice, &mut bob] {
        assert_eq!(target.handle_datagram(now, &forged), Received::Dropped);
    }
    assert_eq!(bob.handle_datagram(now, &alice_init), Received::Consumed);
    assert_eq!(alice.handle_datagram(now, &bob_init), Received::Consumed);
    for _ in 0..3 {
        while let Some(d) = alice.poll_transmit() {
            bob.handle_datagram(now, &d);
        }
        while let Some(d) = bob.poll_transmit() {
            alice.handle_datagram(now, &d);
        }
    }
    assert!(alice.is_established() && bob.is_established());
    assert_eq!(alice.unauthenticated() + bob.unauthenticated(), 2);
}

/// INITs from many peers at once (a replay of old ones, or a crowd holding
/// the secret): the layer answers them, but keeps at most [`PENDING_MAX`]
/// unconfirmed, and remembers at most as many outranked.
#[test]
fn many_inits_keep_at_most_pending_max() {
    let now = Instant::now();
    let secret = Secret::from_text("many peers");
    let mut us = Noise::new(&secret, now, entropy(1));
    while us.poll_transmit().is_some() {}
    for seed in 2..20 {
        let mut them = Noise::new(&secret, now, entropy(seed));
        let init = them.poll_transmit().expect("an INIT on creation");
        us.handle_datagram(now, &init);
        while us.poll_transmit().is_some() {}
        assert!(us.pending() <= PENDING_MAX, "{} pending", us.pending());
        assert!(
            us.outranked() <= PENDING_MAX,
            "{} outranked",
            us.outranked()
        );
    }
    assert_eq!(us.pending(), PENDING_MAX, "the newest are kept");
    assert_eq!(us.unauthenticated(), 0);
}
