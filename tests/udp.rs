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
const RUNTIMES: [(&str, Spawn); 3] = [
    ("std", ferry_std::spawn_udp),
    ("mio", ferry_mio::spawn_udp),
    ("smol", ferry_smol::spawn_udp),
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
