//! Property-testing an embedding: a hub and two clients over an in-memory
//! network with a virtual clock, the way you would test your own driver.
//!
//! `cargo run -p ferry-core --example simulated_network`
//!
//! Because ferry-core does no I/O and reads no clock, a whole session runs
//! in memory, deterministically, in microseconds: proptest picks how the
//! byte streams are split into reads, how long each piece is delayed, and
//! whether and when bob's link is cut. Whatever it picks, these must hold:
//!
//! * alice's upload to the hub arrives verified (BLAKE3, end to end);
//! * bob hears alice's messages in order, none twice, and, if his link was
//!   never cut, every one of them;
//! * a bob whose link was cut comes back under his own name at once
//!   (`RECLAIM` with the secret of his first connection) and hears every
//!   message said after his return.
//!
//! A failure prints the smallest case proptest found.

use ferry_core::bytes::Bytes;
use ferry_core::transfer::{Outcome, TransferEvent};
use ferry_core::{ClientConfig, ClientId, Connection, Event, Hub, HubConfig, HubEvent};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How the network treats the bytes: read sizes and delays, cycled.
#[derive(Debug, Clone)]
struct Weather {
    reads: Vec<usize>,
    delays_ms: Vec<u64>,
    /// Cut bob's link once this many pieces reached him.
    cut_bob_after: Option<usize>,
}

/// One direction of a TCP stream: pieces in order, each with its arrival.
#[derive(Default)]
struct Stream {
    pieces: VecDeque<(Instant, Vec<u8>)>,
}

/// A client, its connection to the hub, and the two directions between.
struct Peer {
    id: ClientId,
    conn: Connection,
    up: Stream,
    down: Stream,
    heard: Vec<String>,
    delivered: usize,
}

struct Net {
    now: Instant,
    hub: Hub,
    peers: Vec<Peer>,
    weather: Weather,
    turn: usize,
}

impl Net {
    fn join(&mut self, config: ClientConfig) -> usize {
        let id = self.hub.connect(self.now);
        let conn = Connection::client(config, self.now);
        let (up, down) = (Stream::default(), Stream::default());
        self.peers.push(Peer {
            id,
            conn,
            up,
            down,
            heard: vec![],
            delivered: 0,
        });
        self.peers.len() - 1
    }

    /// Cuts `bytes` into reads, delayed but never reordered (TCP).
    fn send(now: Instant, weather: &Weather, turn: &mut usize, stream: &mut Stream, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            *turn += 1;
            let take = weather.reads[*turn % weather.reads.len()].min(rest.len());
            let delay = Duration::from_millis(weather.delays_ms[*turn % weather.delays_ms.len()]);
            let after = stream.pieces.back().map_or(now, |(at, _)| *at);
            stream
                .pieces
                .push_back(((now + delay).max(after), rest[..take].to_vec()));
            rest = &rest[take..];
        }
    }

    /// Everything every side has to say goes into the streams; events are
    /// handled; repeated until nothing moves (the driving contract, step 3).
    fn drain(&mut self, on_hub_event: &mut impl FnMut(&mut Hub, Instant, HubEvent)) {
        let (now, weather, turn) = (self.now, &self.weather, &mut self.turn);
        loop {
            let mut moved = false;
            for peer in &mut self.peers {
                while let Some(bytes) = peer.conn.poll_transmit() {
                    Net::send(now, weather, turn, &mut peer.up, &bytes);
                    moved = true;
                }
                while let Some(bytes) = self.hub.poll_transmit(peer.id) {
                    Net::send(now, weather, turn, &mut peer.down, &bytes);
                    moved = true;
                }
            }
            while let Some(event) = self.hub.poll_event() {
                on_hub_event(&mut self.hub, now, event);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    /// Advances the virtual clock to the next arrival or timer and delivers
    /// what is due. False once nothing is left to happen.
    fn step(&mut self) -> bool {
        let arrivals = self.peers.iter().flat_map(|p| {
            [p.up.pieces.front(), p.down.pieces.front()]
                .into_iter()
                .flatten()
                .map(|(at, _)| *at)
        });
        let Some(next) = arrivals.min() else {
            return false;
        };
        self.now = self.now.max(next);
        for peer in &mut self.peers {
            while let Some((_, bytes)) = peer.up.pieces.pop_front_if_due(self.now) {
                self.hub.handle_input(peer.id, self.now, &bytes);
            }
            while let Some((_, bytes)) = peer.down.pieces.pop_front_if_due(self.now) {
                peer.conn.handle_input(self.now, &bytes);
                peer.delivered += 1;
            }
            peer.conn.handle_timeout(self.now);
        }
        self.hub.handle_timeout(self.now);
        true
    }
}

trait PopDue {
    fn pop_front_if_due(&mut self, now: Instant) -> Option<(Instant, Vec<u8>)>;
}

impl PopDue for VecDeque<(Instant, Vec<u8>)> {
    fn pop_front_if_due(&mut self, now: Instant) -> Option<(Instant, Vec<u8>)> {
        if self.front()?.0 <= now {
            self.pop_front()
        } else {
            None
        }
    }
}

/// Sessions in which bob's link was cut, and in which he came back by
/// `RECLAIM` (his secret had arrived before the cut).
static CUT: AtomicUsize = AtomicUsize::new(0);
static RECLAIMED: AtomicUsize = AtomicUsize::new(0);

/// One session under `weather`; `Err` says which property broke.
fn session(weather: Weather) -> Result<(), TestCaseError> {
    let start = Instant::now();
    // Alice says her 20 messages as fast as the network lets her, with an
    // offer besides: over the default burst of 20, which would close her
    // with FLOODING, as it should.
    let config = HubConfig::default().session_key([7; 32]).flood_burst(40);
    let mut net = Net {
        now: start,
        hub: Hub::new(config, start),
        peers: vec![],
        weather,
        turn: 0,
    };
    let file: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let alice = net.join(ClientConfig::new("alice"));
    let mut bob = net.join(ClientConfig::new("bob"));
    let (mut said, mut returned_at, mut upload, mut secret) = (0, None, None, None);
    let (mut offered, mut reclaimed, replaced) = (false, false, Cell::new(false));
    let mut hub_events = |hub: &mut Hub, now: Instant, event: HubEvent| match event {
        HubEvent::Transfer {
            client,
            event: TransferEvent::Offered { id, .. },
        } => {
            hub.accept(client, now, id, 0).unwrap();
        }
        HubEvent::Transfer {
            client,
            event: TransferEvent::Chunk { id, offset, data },
        } => {
            hub.confirm_written(client, now, id, offset + data.len() as u64)
                .unwrap();
        }
        HubEvent::Transfer {
            client,
            event: TransferEvent::Received { id, .. },
        } => {
            hub.finish_receive(client, now, id, Ok(())).unwrap();
        }
        HubEvent::Replaced { .. } => replaced.set(true),
        HubEvent::Closed { client, .. } => hub.remove(client, now),
        _ => {}
    };
    for _ in 0..100_000 {
        net.drain(&mut hub_events);
        let now = net.now;
        // The clients' applications: alice talks once both are in, and
        // uploads; bob keeps his secret, and comes back if cut.
        while let Some(event) = net.peers[alice].conn.poll_event() {
            match event {
                Event::Transfer(TransferEvent::NeedChunk { id, offset, len }) => {
                    let chunk = &file[offset as usize..][..len as usize];
                    net.peers[alice]
                        .conn
                        .supply_chunk(now, id, offset, Bytes::copy_from_slice(chunk))
                        .unwrap();
                }
                Event::Transfer(TransferEvent::Ended { outcome, .. }) => upload = Some(outcome),
                _ => {}
            }
        }
        let both_in = net.hub.members("").len() == 2 && net.peers[alice].conn.is_open();
        if both_in && !offered {
            offered = true;
            net.peers[alice]
                .conn
                .offer_file(now, "f.bin", file.len() as u64, "")
                .unwrap();
        }
        if both_in && said < 20 {
            said += 1;
            net.peers[alice].conn.say(now, &format!("m{said}")).unwrap();
        }
        while let Some(event) = net.peers[bob].conn.poll_event() {
            match event {
                Event::Session { secret: s } => secret = Some(s),
                Event::Welcomed { .. } if bob != 1 => returned_at = Some(said),
                Event::Message { from, text, .. } if from == "alice" => {
                    net.peers[bob].heard.push(text.to_string())
                }
                _ => {}
            }
        }
        if bob == 1
            && net
                .weather
                .cut_bob_after
                .is_some_and(|n| net.peers[bob].delivered >= n)
        {
            // The link dies; what was in flight is lost. Bob notices. The
            // hub does not, if bob holds a secret: his RECLAIM must replace
            // the old connection at once (else it sees a reset too).
            let id = net.peers[bob].id;
            let old = &mut net.peers[bob];
            old.conn.handle_broken(now, "cut");
            old.up.pieces.clear();
            old.down.pieces.clear();
            let config = ClientConfig::new("bob");
            let config = match secret {
                Some(s) => {
                    reclaimed = true;
                    config.reclaim(s)
                }
                None => {
                    net.hub.handle_broken(id, now, "cut");
                    config
                }
            };
            bob = net.join(config);
        }
        net.drain(&mut hub_events);
        if !net.step() && upload.is_some() && said == 20 {
            break;
        }
    }
    prop_assert_eq!(upload, Some(Outcome::Verified), "alice's upload");
    let heard: Vec<String> = net.peers[1..]
        .iter()
        .flat_map(|p| p.heard.clone())
        .collect();
    let numbers: Vec<usize> = heard.iter().map(|m| m[1..].parse().unwrap()).collect();
    prop_assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "in order, once: {:?}",
        numbers
    );
    let from = returned_at.map_or(1, |n| n + 1);
    let missing: Vec<usize> = (from..=20).filter(|n| !numbers.contains(n)).collect();
    prop_assert!(
        missing.is_empty(),
        "bob missed {:?} (back after m{:?}), heard {:?} of {}",
        missing,
        returned_at,
        numbers,
        said
    );
    prop_assert_eq!(replaced.get(), reclaimed, "RECLAIM replaced the old link");
    CUT.fetch_add(usize::from(bob != 1), Ordering::Relaxed);
    RECLAIMED.fetch_add(usize::from(reclaimed), Ordering::Relaxed);
    let mut members = net.hub.members("");
    members.sort();
    prop_assert_eq!(members, vec!["alice", "bob"], "bob is back under his name");
    Ok(())
}

fn main() {
    let weather = (
        prop::collection::vec(1..3000usize, 1..8),
        prop::collection::vec(0..40u64, 1..8),
        prop::option::of(0..60usize),
    )
        .prop_map(|(reads, delays_ms, cut_bob_after)| Weather {
            reads,
            delays_ms,
            cut_bob_after,
        });
    let mut runner = TestRunner::new(Config {
        cases: 200,
        failure_persistence: None,
        ..Config::default()
    });
    match runner.run(&weather, session) {
        Ok(()) => println!(
            "200 simulated sessions, bob cut in {} and back by RECLAIM in {}: every property held",
            CUT.load(Ordering::Relaxed),
            RECLAIMED.load(Ordering::Relaxed)
        ),
        Err(e) => {
            eprintln!("a property broke: {e}");
            std::process::exit(1);
        }
    }
}
