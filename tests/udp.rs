//! Two UDP chat peers on loopback, on every runtime (and across them).

use ferry_core::datagram::{PeerConfig, PeerEvent};
use ferry_files::UdpHandle;
use ferry_noise::Secret;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

type Spawn = fn(UdpSocket, SocketAddr, PeerConfig, Option<Secret>) -> io::Result<UdpHandle>;

/// Every runtime's driver.
const RUNTIMES: [(&str, Spawn); 4] = [
    ("std", ferry_std::spawn_udp),
    ("mio", ferry_mio::spawn_udp),
    ("smol", ferry_smol::spawn_udp),
    ("tokio", ferry_tokio::spawn_udp),
];

fn bind() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").unwrap()
}

/// Waits for the first event `pick` accepts; panics after [`WAIT`].
fn wait_for<T>(
    events: &Receiver<PeerEvent>,
    what: &str,
    mut pick: impl FnMut(&PeerEvent) -> Option<T>,
) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = events
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
        if let Some(found) = pick(&event) {
            return found;
        }
    }
}

#[test]
fn two_peers_chat_both_ways_and_hear_acknowledgements() {
    // Every runtime against every runtime.
    for (a_name, a_spawn) in RUNTIMES {
        for (b_name, b_spawn) in RUNTIMES {
            chat_both_ways(a_spawn, b_spawn);
            println!("{a_name} with {b_name}: ok");
        }
    }
}

fn chat_both_ways(a_spawn: Spawn, b_spawn: Spawn) {
    let (a, b) = (bind(), bind());
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let alice = a_spawn(a, b_addr, PeerConfig::new("alice"), None).unwrap();
    let bob = b_spawn(b, a_addr, PeerConfig::new("bob"), None).unwrap();
    for i in 0..20 {
        alice.send(&format!("ping {i}")).unwrap();
    }
    let seq = bob.send("pong").unwrap();
    let mut texts = Vec::new();
    while texts.len() < 20 {
        texts.push(wait_for(bob.events(), "alice's messages", |e| match e {
            PeerEvent::Message { from, text, .. } if &**from == "alice" => Some(text.to_string()),
            _ => None,
        }));
    }
    let expected: Vec<String> = (0..20).map(|i| format!("ping {i}")).collect();
    assert_eq!(texts, expected, "loopback neither loses nor reorders");
    let heard = wait_for(alice.events(), "bob's message", |e| match e {
        PeerEvent::Message { text, .. } => Some(text.to_string()),
        _ => None,
    });
    assert_eq!(heard, "pong");
    wait_for(bob.events(), "the acknowledgement", |e| match e {
        PeerEvent::Delivered { seq: s } if *s == seq => Some(()),
        _ => None,
    });
}

/// Garbage that is not a ferry frame is a raw-text line (PROTOCOL.md
/// §9.6); an oversize frame is dropped and counted; and a ferry peer that
/// speaks after the garbage has the chat back in acknowledged CHATs.
#[test]
fn garbage_from_the_peer_is_dropped_and_counted() {
    for (name, spawn) in RUNTIMES {
        garbage_dropped(spawn);
        println!("{name}: ok");
    }
}

fn garbage_dropped(spawn: Spawn) {
    let (a, b) = (bind(), bind());
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let alice = spawn(a, b_addr, PeerConfig::new("alice"), None).unwrap();
    // Bob's socket sends garbage first, then a real chat starts on it.
    b.send_to(b"GET / HTTP/1.0\r\n\r\n", a_addr).unwrap();
    // An oversize CHAT: 1500 bytes, its length field saying so.
    let mut oversize = vec![0x40, 0, 0, 0x05, 0xD7];
    oversize.resize(1500, 0);
    b.send_to(&oversize, a_addr).unwrap();
    b.send_to(&[0x40, 0, 0, 0, 0], a_addr).unwrap();
    let bob = spawn(b, a_addr, PeerConfig::new("bob"), None).unwrap();
    let line = wait_for(alice.events(), "the raw line", |e| match e {
        PeerEvent::RawLine { text, .. } => Some(text.to_string()),
        _ => None,
    });
    assert_eq!(line, "GET / HTTP/1.0");
    bob.send("still friends?").unwrap();
    let heard = wait_for(alice.events(), "bob's message", |e| match e {
        PeerEvent::Message { text, .. } => Some(text.to_string()),
        _ => None,
    });
    assert_eq!(heard, "still friends?");
    let drops = alice.drops();
    assert_eq!((drops.malformed, drops.oversize), (1, 1), "{drops:?}");
    // Bob's message put alice back in ferry mode: hers is acknowledged.
    let seq = alice.send("yes").unwrap();
    wait_for(alice.events(), "the acknowledgement", |e| match e {
        PeerEvent::Delivered { seq: s } if *s == seq => Some(()),
        _ => None,
    });
}

#[test]
fn a_silent_peer_makes_messages_lost_not_forgotten() {
    for (name, spawn) in RUNTIMES {
        silent_peer(spawn);
        println!("{name}: ok");
    }
}

fn silent_peer(spawn: Spawn) {
    let a = bind();
    // Nobody will ever answer from this address.
    let nobody = bind();
    let mut config = PeerConfig::new("alice");
    config.initial_timeout = Duration::from_millis(20);
    config.max_tries = 3;
    let alice = spawn(a, nobody.local_addr().unwrap(), config, None).unwrap();
    let seq = alice.send("anyone?").unwrap();
    let lost = wait_for(alice.events(), "the loss", |e| match e {
        PeerEvent::Lost { seq, text } => Some((*seq, text.to_string())),
        _ => None,
    });
    assert_eq!(lost, (seq, "anyone?".to_string()));
    assert_eq!(alice.unacked(), 0);
}

/// A relay between two peers on loopback that records every datagram it
/// carries: what an eavesdropper on the path would capture.
struct Relay {
    /// The address alice sends to, and the one bob sends to.
    for_alice: SocketAddr,
    for_bob: SocketAddr,
    captured: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Relay {
    /// Relays between `alice` and `bob` (their sockets' addresses).
    fn start(alice: SocketAddr, bob: SocketAddr) -> Relay {
        let (a_side, b_side) = (bind(), bind());
        let (for_alice, for_bob) = (a_side.local_addr().unwrap(), b_side.local_addr().unwrap());
        let captured = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut threads = Vec::new();
        for (from, to, dest) in [
            (
                a_side.try_clone().unwrap(),
                b_side.try_clone().unwrap(),
                bob,
            ),
            (b_side, a_side, alice),
        ] {
            let (captured, stop) = (captured.clone(), stop.clone());
            from.set_read_timeout(Some(Duration::from_millis(20)))
                .unwrap();
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    if let Ok(n) = from.recv(&mut buf) {
                        captured.lock().unwrap().push(buf[..n].to_vec());
                        let _ = to.send_to(&buf[..n], dest);
                    }
                }
            }));
        }
        Relay {
            for_alice,
            for_bob,
            captured,
            stop,
            threads,
        }
    }

    fn captured(&self) -> Vec<Vec<u8>> {
        self.captured.lock().unwrap().clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// PROTOCOL.md §9.7 on every runtime against every runtime: both peers
/// pass the same secret, chat both ways through a relay, and the relay
/// never sees the text.
#[test]
fn encrypted_peers_chat_both_ways_and_the_wire_shows_no_text() {
    for (a_name, a_spawn) in RUNTIMES {
        for (b_name, b_spawn) in RUNTIMES {
            encrypted_chat(a_spawn, b_spawn);
            println!("{a_name} with {b_name}: ok");
        }
    }
}

fn encrypted_chat(a_spawn: Spawn, b_spawn: Spawn) {
    let secret = || Some(Secret::from_text("the relay must not read this chat"));
    let (a, b) = (bind(), bind());
    let relay = Relay::start(a.local_addr().unwrap(), b.local_addr().unwrap());
    let alice = a_spawn(a, relay.for_alice, PeerConfig::new("alice"), secret()).unwrap();
    // Typed before bob exists: it waits for the handshake.
    let early = alice.send("sent before bob started").unwrap();
    let bob = b_spawn(b, relay.for_bob, PeerConfig::new("bob"), secret()).unwrap();
    for chat in [&alice, &bob] {
        wait_for(chat.events(), "the handshake", |e| {
            (*e == PeerEvent::Encrypted).then_some(())
        });
    }
    let heard = wait_for(bob.events(), "alice's early message", |e| match e {
        PeerEvent::Message { text, .. } => Some(text.to_string()),
        _ => None,
    });
    assert_eq!(heard, "sent before bob started");
    wait_for(alice.events(), "its acknowledgement", |e| match e {
        PeerEvent::Delivered { seq } if *seq == early => Some(()),
        _ => None,
    });
    bob.send("attack at dawn").unwrap();
    let heard = wait_for(alice.events(), "bob's message", |e| match e {
        PeerEvent::Message { from, text, .. } => Some(format!("{from}: {text}")),
        _ => None,
    });
    assert_eq!(heard, "bob: attack at dawn");
    let wire = relay.captured();
    assert!(wire.len() >= 6, "{}", wire.len());
    for datagram in &wire {
        for text in ["sent before", "attack at dawn", "alice", "bob"] {
            assert!(!contains(datagram, text.as_bytes()), "{text:?} on the wire");
        }
    }
    assert_eq!(alice.drops().total(), 0, "{:?}", alice.drops());
}

/// Different secrets: the handshake never completes, nothing is shown,
/// and every datagram of the other peer is counted as unauthenticated.
#[test]
fn a_wrong_secret_delivers_nothing_and_counts_the_drops() {
    for (name, spawn) in RUNTIMES {
        let (a, b) = (bind(), bind());
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let alice = spawn(
            a,
            b_addr,
            PeerConfig::new("alice"),
            Some(Secret::from_text("one secret")),
        )
        .unwrap();
        let bob = spawn(
            b,
            a_addr,
            PeerConfig::new("bob"),
            Some(Secret::from_text("another")),
        )
        .unwrap();
        alice.send("for the right bob only").unwrap();
        bob.send("from the wrong bob").unwrap();
        let deadline = Instant::now() + WAIT;
        while (alice.drops().unauthenticated == 0 || bob.drops().unauthenticated == 0)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500));
        for chat in [&alice, &bob] {
            let drops = chat.drops();
            assert!(drops.unauthenticated > 0, "{name}: {drops:?}");
            assert_eq!(drops.total(), drops.unauthenticated, "{name}: {drops:?}");
            let shown: Vec<PeerEvent> = chat
                .events()
                .try_iter()
                .filter(|e| {
                    matches!(
                        e,
                        PeerEvent::Message { .. }
                            | PeerEvent::RawLine { .. }
                            | PeerEvent::RawMode
                            | PeerEvent::Encrypted
                    )
                })
                .collect();
            assert!(shown.is_empty(), "{name}: {shown:?}");
        }
        println!("{name}: ok");
    }
}

/// A clear-text frame or raw text sent to an encrypted peer is dropped and
/// counted, never shown, and the peer never falls into raw mode.
#[test]
fn clear_datagrams_at_an_encrypted_peer_are_never_shown() {
    for (name, spawn) in RUNTIMES {
        let (a, mallory) = (bind(), bind());
        let a_addr = a.local_addr().unwrap();
        let alice = spawn(
            a,
            mallory.local_addr().unwrap(),
            PeerConfig::new("alice"),
            Some(Secret::from_text("s")),
        )
        .unwrap();
        let mut chat = bytes::BytesMut::new();
        ferry_core::datagram::Datagram::Chat {
            session: 1,
            seq: 0,
            from: "bob".into(),
            text: "pay mallory".into(),
        }
        .encode(&mut chat)
        .unwrap();
        mallory.send_to(&chat, a_addr).unwrap();
        mallory.send_to(b"raw text from mallory", a_addr).unwrap();
        let deadline = Instant::now() + WAIT;
        while alice.drops().unauthenticated < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(alice.drops().unauthenticated, 2, "{name}");
        let shown: Vec<PeerEvent> = alice
            .events()
            .try_iter()
            .filter(|e| !matches!(e, PeerEvent::Dropped { .. }))
            .collect();
        assert!(shown.is_empty(), "{name}: {shown:?}");
        println!("{name}: ok");
    }
}
