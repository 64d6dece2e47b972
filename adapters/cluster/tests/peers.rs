//! `Peers` over loopback: frames both ways on one link, every way a link
//! is refused or lost, and the limits that keep a hostile or stuck peer
//! from holding memory or a caller.
//!
//! Every wait has a deadline: events come through channels read with
//! `recv_timeout`, counters are polled until a deadline.

#![cfg(unix)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use ferry_cluster::peers::{
    DeliverPeer, Locate, PeerAddress, PeerEvent, PeerKey, PeerSettings, Peers, MAX_FRAME,
};
use ferry_core::cluster::ServerId;
use ferry_tls::{ClientTls, Fingerprint, Identity, TlsClient, Transport, Verify};

/// The longest any one event may take to come.
const WAIT: Duration = Duration::from_secs(20);

const A: ServerId = ServerId(0xa);
const B: ServerId = ServerId(0xb);

/// A self-signed identity in a folder of its own (kept while it is used).
fn identity() -> (tempfile::TempDir, Arc<Identity>) {
    let dir = tempfile::tempdir().unwrap();
    let identity = Identity::load_or_create(&dir.path().join("tls"), SystemTime::now()).unwrap();
    (dir, Arc::new(identity))
}

/// Where each server is, as Redis would say; and how often each server asked.
#[derive(Clone, Default)]
struct Directory {
    addresses: Arc<Mutex<HashMap<ServerId, PeerAddress>>>,
    asked: Arc<Mutex<HashMap<ServerId, usize>>>,
}

impl Directory {
    fn publish(&self, server: ServerId, address: PeerAddress) {
        self.addresses.lock().unwrap().insert(server, address);
    }

    fn locate_for(&self, asker: ServerId) -> Locate {
        let directory = self.clone();
        Arc::new(move |server| {
            *directory.asked.lock().unwrap().entry(asker).or_default() += 1;
            directory
                .addresses
                .lock()
                .unwrap()
                .get(&server)
                .copied()
                .ok_or_else(|| format!("server {server} is not in the directory"))
        })
    }

    fn asked_by(&self, asker: ServerId) -> usize {
        self.asked.lock().unwrap().get(&asker).copied().unwrap_or(0)
    }
}

/// A running `Peers` and the events it delivered.
struct Node {
    peers: Peers,
    events: Receiver<PeerEvent>,
    identity: Arc<Identity>,
    _dir: Option<tempfile::TempDir>,
}

impl Node {
    fn settings(secret: &[u8], identity: Arc<Identity>) -> PeerSettings {
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        PeerSettings::new(listen, PeerKey::derive(secret), identity).timeout(Duration::from_secs(5))
    }

    /// Server `me` on a free port with a new identity, published in `directory`.
    fn start(me: ServerId, secret: &[u8], directory: &Directory) -> Node {
        let (dir, identity) = identity();
        let settings = Node::settings(secret, identity.clone());
        let mut node = Node::with(me, settings, directory);
        node._dir = Some(dir);
        node
    }

    /// Server `me` with `settings`, published in `directory`.
    fn with(me: ServerId, settings: PeerSettings, directory: &Directory) -> Node {
        let (tx, events) = mpsc::channel();
        let deliver: DeliverPeer = Arc::new(move |batch: Vec<PeerEvent>| {
            assert!(!batch.is_empty(), "deliver is never called with nothing");
            for event in batch {
                let _ = tx.send(event);
            }
        });
        let identity = settings.identity.clone();
        let peers = Peers::start(me, settings, directory.locate_for(me), deliver).unwrap();
        directory.publish(
            me,
            PeerAddress::new(peers.local_addr(), peers.fingerprint()),
        );
        Node {
            peers,
            events,
            identity,
            _dir: None,
        }
    }

    fn next(&self) -> PeerEvent {
        self.events
            .recv_timeout(WAIT)
            .expect("an event within the deadline")
    }

    /// The next event, which must be a frame from `from`.
    fn frame_from(&self, from: ServerId) -> Vec<u8> {
        match self.next() {
            PeerEvent::Frame {
                from: sender,
                bytes,
            } if sender == from => bytes,
            other => panic!("expected a frame from {from}, got {other:?}"),
        }
    }

    /// The next event, which must be `server` lost; its reason.
    fn lost(&self, server: ServerId) -> String {
        match self.next() {
            PeerEvent::Lost {
                server: lost,
                reason,
            } if lost == server => reason,
            other => panic!("expected {server} lost, got {other:?}"),
        }
    }

    /// The next `Lost` of `server`, skipping frames from it.
    fn lost_after_frames(&self, server: ServerId) -> String {
        loop {
            match self.next() {
                PeerEvent::Frame { from, .. } if from == server => continue,
                PeerEvent::Lost {
                    server: lost,
                    reason,
                } if lost == server => return reason,
                other => panic!("expected {server} lost, got {other:?}"),
            }
        }
    }
}

/// Polls `condition` until it holds, failing the test at the deadline.
fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Frame `i` of test 1: sizes from 0 bytes to 1 MiB, contents from `i`.
fn numbered_frame(i: usize) -> Vec<u8> {
    let len = match i % 50 {
        0 => 1 << 20,
        1 => 0,
        2 => 1,
        3 => 4,
        k => (k * 997 + i * 31) % 20_000,
    };
    (0..len).map(|j| (i * 7 + j) as u8).collect()
}

#[test]
fn a_thousand_frames_in_order_and_the_answer_on_the_same_link() {
    let directory = Directory::default();
    let a = Node::start(A, b"cluster secret", &directory);
    let b = Node::start(B, b"cluster secret", &directory);

    for i in 0..1000 {
        a.peers.send(B, numbered_frame(i));
    }
    for i in 0..1000 {
        let bytes = b.frame_from(A);
        assert!(bytes == numbered_frame(i), "frame {i} arrived changed");
    }

    // B answers over the link A made, from another thread.
    let send = b.peers.sender();
    std::thread::spawn(move || send(A, b"all 1000".to_vec()))
        .join()
        .unwrap();
    assert_eq!(a.frame_from(B), b"all 1000");
    a.peers.send(B, Vec::new());
    assert_eq!(b.frame_from(A), b"");

    assert_eq!(a.peers.links(), 1);
    assert_eq!(b.peers.links(), 1, "B made no second connection");
    assert_eq!(directory.asked_by(B), 0, "B never looked A up");
    assert_eq!(directory.asked_by(A), 1);
    assert_eq!(b.peers.refused_links(), 0);
    assert!(a.events.try_recv().is_err());
    assert!(b.events.try_recv().is_err());
}

#[test]
fn a_peer_with_another_secret_is_refused_both_ways() {
    let directory = Directory::default();
    let a = Node::start(A, b"one secret", &directory);
    let b = Node::start(B, b"another secret", &directory);

    a.peers.send(B, b"hello".to_vec());
    let reason = a.lost(B);
    assert!(
        reason.contains("the peer does not know the cluster secret"),
        "{reason}"
    );
    assert!(
        reason.contains("1 frame queued for it was dropped"),
        "{reason}"
    );
    wait_until("B to refuse the link", || b.peers.refused_links() == 1);
    assert!(b.events.try_recv().is_err(), "B delivered nothing");
    assert_eq!(a.peers.links(), 0);
    assert_eq!(b.peers.links(), 0);
}

#[test]
fn a_peer_showing_another_certificate_is_refused() {
    let directory = Directory::default();
    let a = Node::start(A, b"cluster secret", &directory);
    let b = Node::start(B, b"cluster secret", &directory);
    let (_dir, other) = identity();
    directory.publish(
        B,
        PeerAddress::new(b.peers.local_addr(), other.fingerprint()),
    );

    a.peers.send(B, b"hello".to_vec());
    let reason = a.lost(B);
    assert!(
        reason.contains("the peer's certificate is not the one it advertised"),
        "{reason}"
    );
    assert!(b.events.try_recv().is_err(), "B delivered nothing");
}

#[test]
fn nobody_listening_and_nobody_known_are_lost_quickly() {
    let directory = Directory::default();
    let a = Node::start(A, b"cluster secret", &directory);
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    directory.publish(B, PeerAddress::new(closed, a.peers.fingerprint()));

    let start = Instant::now();
    a.peers.send(B, b"hello".to_vec());
    let reason = a.lost(B);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(
        reason.contains(&format!("cannot connect to {closed}: connection refused")),
        "{reason}"
    );

    let unknown = ServerId(0x99);
    a.peers.send(unknown, b"hello".to_vec());
    let reason = a.lost(unknown);
    assert!(reason.contains("cannot locate it"), "{reason}");
    assert!(reason.contains("not in the directory"), "{reason}");

    a.peers.send(A, b"to myself".to_vec());
    let reason = a.lost(A);
    assert!(reason.contains("does not link to itself"), "{reason}");
}

#[test]
fn a_closed_peer_is_lost_and_a_restarted_one_is_reached_again() {
    let directory = Directory::default();
    let a = Node::start(A, b"cluster secret", &directory);
    let (_dir, b_identity) = identity();
    let b = Node::with(
        B,
        Node::settings(b"cluster secret", b_identity.clone()),
        &directory,
    );
    let b_addr = b.peers.local_addr();

    // A stream of 256 KiB frames; B closes after the first.
    for i in 0..64 {
        a.peers.send(B, vec![i as u8; 256 * 1024]);
    }
    assert_eq!(b.frame_from(A), vec![0; 256 * 1024]);
    b.peers.close();
    let reason = a.lost_after_frames(B);
    assert!(!reason.is_empty());
    assert_eq!(a.peers.links(), 0);

    // The same server restarted on the same port: the next send reconnects.
    let settings = PeerSettings::new(b_addr, PeerKey::derive(b"cluster secret"), b_identity)
        .timeout(Duration::from_secs(5));
    let b = Node::with(B, settings, &directory);
    assert_eq!(b.peers.local_addr(), b_addr);
    a.peers.send(B, b"again".to_vec());
    assert_eq!(b.frame_from(A), b"again");
    b.peers.send(A, b"welcome back".to_vec());
    assert_eq!(a.frame_from(B), b"welcome back");
    assert_eq!(a.peers.links(), 1);
    assert_eq!(directory.asked_by(A), 2);
}

/// A connector written from the module's description of the handshake,
/// with nothing of the crate's own code: an authenticated peer that can
/// then misbehave.
struct RawPeer {
    stream: TcpStream,
    transport: Transport,
    unfed: Vec<u8>,
}

impl RawPeer {
    fn connect(me: ServerId, to: ServerId, address: PeerAddress, secret: &[u8]) -> RawPeer {
        let mut stream = TcpStream::connect(address.addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        let tls = ClientTls::new(
            TlsClient::new(),
            address.addr.ip().to_string(),
            Verify::pinned(address.fingerprint),
        );
        let (transport, unfed) = ferry_tls::handshake(
            &mut stream,
            &tls,
            address.addr.port(),
            Instant::now() + WAIT,
        )
        .unwrap();
        let mut raw = RawPeer {
            stream,
            transport,
            unfed,
        };
        let key = blake3::derive_key("ferry 2026-12 cluster peer link", secret);
        let nonce_c = [0x5a; 32];
        let mut hello = b"FERRYPEER1".to_vec();
        hello.extend_from_slice(&me.0.to_be_bytes());
        hello.extend_from_slice(&to.0.to_be_bytes());
        hello.extend_from_slice(&nonce_c);
        assert_eq!(hello.len(), 58);
        raw.write(&hello);
        let answer = raw.read_exact(72);
        assert_eq!(answer[..8], to.0.to_be_bytes());
        let nonce_a = &answer[8..40];
        let mac = |label: &[u8]| {
            let mut hasher = blake3::Hasher::new_keyed(&key);
            hasher
                .update(label)
                .update(&nonce_c)
                .update(nonce_a)
                .update(&me.0.to_be_bytes())
                .update(&to.0.to_be_bytes());
            hasher.finalize()
        };
        assert_eq!(
            mac(b"acceptor"),
            <[u8; 32]>::try_from(&answer[40..]).unwrap()
        );
        raw.write(mac(b"connector").as_bytes());
        raw
    }

    fn write(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let n = self.transport.write_plaintext(data).unwrap();
            data = &data[n..];
            while self.transport.wants_write() {
                self.transport.write_to(&mut self.stream).unwrap();
            }
        }
    }

    fn read_exact(&mut self, want: usize) -> Vec<u8> {
        let mut got = vec![0; want];
        let mut have = 0;
        while have < want {
            let n = self.transport.read_plaintext(&mut got[have..]).unwrap();
            have += n;
            if n > 0 {
                continue;
            }
            if self.unfed.is_empty() {
                let mut buf = [0; 4096];
                let n = self.stream.read(&mut buf).unwrap();
                assert!(n > 0, "the server closed the link");
                self.unfed.extend_from_slice(&buf[..n]);
            }
            let n = self.transport.feed(&self.unfed).unwrap();
            self.unfed.drain(..n);
            while self.transport.wants_write() {
                self.transport.write_to(&mut self.stream).unwrap();
            }
        }
        got
    }
}

/// Reads `stream` until the other side closes it (end of stream or reset).
fn until_closed(stream: &mut TcpStream) {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("the server did not close the connection: {e}"),
        }
    }
}

#[test]
fn garbage_and_an_oversized_frame_are_dropped_and_the_others_still_served() {
    let directory = Directory::default();
    let a = Node::start(A, b"cluster secret", &directory);
    let b = Node::start(B, b"cluster secret", &directory);
    let b_address = PeerAddress::new(b.peers.local_addr(), b.peers.fingerprint());

    // Not TLS at all.
    let mut garbage = TcpStream::connect(b_address.addr).unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    until_closed(&mut garbage);
    wait_until("B to refuse the garbage", || b.peers.refused_links() == 1);

    // TLS and the right handshake, then a frame header over the limit.
    let rogue = ServerId(0x77);
    let mut raw = RawPeer::connect(rogue, B, b_address, b"cluster secret");
    raw.write(&((MAX_FRAME + 1) as u32).to_be_bytes());
    let reason = b.lost(rogue);
    assert!(
        reason.contains(&format!("a frame of {} bytes", MAX_FRAME + 1)),
        "{reason}"
    );
    until_closed(&mut raw.stream);

    // A, beside them, is still served both ways.
    a.peers.send(B, b"still there?".to_vec());
    assert_eq!(b.frame_from(A), b"still there?");
    b.peers.send(A, b"yes".to_vec());
    assert_eq!(a.frame_from(B), b"yes");
    assert_eq!(b.peers.links(), 1);
    assert_eq!(b.peers.refused_links(), 1);
}

#[test]
fn a_peer_that_never_reads_is_dropped_past_the_queue_limit_without_blocking_send() {
    let directory = Directory::default();
    let (_dir, identity) = identity();
    // A long timeout: only the queue limit may end the link.
    let settings = Node::settings(b"cluster secret", identity)
        .max_queued_bytes(1 << 20)
        .timeout(Duration::from_secs(60));
    let a = Node::with(A, settings, &directory);
    assert!(a.identity.fingerprint() == a.peers.fingerprint());

    // A stuck server links to A and then reads nothing.
    let stuck = ServerId(0x5);
    let address = PeerAddress::new(a.peers.local_addr(), a.peers.fingerprint());
    let _raw = RawPeer::connect(stuck, A, address, b"cluster secret");
    wait_until("A to register the link", || a.peers.links() == 1);

    // 64 MiB, far more than the socket buffers hold: sends only queue.
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    for _ in 0..1024 {
        let frame = vec![0x42; 64 * 1024];
        let sent = Instant::now();
        a.peers.send(stuck, frame);
        slowest = slowest.max(sent.elapsed());
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "64 MiB of sends took {took:?}"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "one send took {slowest:?}"
    );

    let reason = a.lost(stuck);
    assert!(
        reason.contains("more than 1048576 bytes queued for it"),
        "{reason}"
    );
    assert!(
        reason.contains("frames queued for it were dropped"),
        "{reason}"
    );
    wait_until("A to close the link", || a.peers.links() == 0);
}

#[test]
fn a_peer_that_never_reads_is_dropped_when_a_write_waits_too_long() {
    let directory = Directory::default();
    let (_dir, identity) = identity();
    let settings = Node::settings(b"cluster secret", identity).timeout(Duration::from_millis(500));
    let a = Node::with(A, settings, &directory);
    let stuck = ServerId(0x5);
    let address = PeerAddress::new(a.peers.local_addr(), a.peers.fingerprint());
    let _raw = RawPeer::connect(stuck, A, address, b"cluster secret");
    wait_until("A to register the link", || a.peers.links() == 1);

    // 32 MiB, under the default queue limit, more than the sockets hold.
    for _ in 0..32 {
        a.peers.send(stuck, vec![0x42; 1 << 20]);
    }
    let reason = a.lost(stuck);
    assert!(
        reason.contains("the peer read nothing for 500 ms: a write gave up"),
        "{reason}"
    );
    assert_eq!(a.peers.links(), 0);
}

#[test]
fn a_silent_connection_is_closed_at_the_handshake_deadline() {
    let directory = Directory::default();
    let (_dir, identity) = identity();
    let settings = Node::settings(b"cluster secret", identity).timeout(Duration::from_millis(300));
    let b = Node::with(B, settings, &directory);
    let start = Instant::now();
    let mut silent = TcpStream::connect(b.peers.local_addr()).unwrap();
    until_closed(&mut silent);
    assert!(start.elapsed() >= Duration::from_millis(300));
    wait_until("B to count it", || b.peers.refused_links() == 1);
}

/// A TCP connection to `to` from the loopback address `from` (any port).
fn connect_from(from: [u8; 4], to: std::net::SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local = std::net::SocketAddr::from((from, 0));
    socket.bind(&local.into()).unwrap();
    socket.connect(&to.into()).unwrap();
    socket.into()
}

#[test]
fn a_flood_of_connections_holds_at_most_the_handshake_limits() {
    use ferry_cluster::peers::{MAX_HANDSHAKING, MAX_HANDSHAKING_PER_ADDRESS};
    let directory = Directory::default();
    let a = Node::start(A, b"cluster secret", &directory);
    let b = Node::start(B, b"cluster secret", &directory);
    let b_addr = b.peers.local_addr();

    // One address holds its share of silent connections; one more from it
    // is closed at once, long before the handshake's deadline.
    let from_one: Vec<TcpStream> = (0..MAX_HANDSHAKING_PER_ADDRESS)
        .map(|_| connect_from([127, 0, 0, 2], b_addr))
        .collect();
    let start = Instant::now();
    let mut over = connect_from([127, 0, 0, 2], b_addr);
    until_closed(&mut over);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(b.peers.refused_links(), 1);
    // A server (from 127.0.0.1) still gets through.
    a.peers.send(B, b"through".to_vec());
    assert_eq!(b.frame_from(A), b"through");

    // Many addresses together hold all the slots there are: one more is
    // closed at once.
    let others = MAX_HANDSHAKING - MAX_HANDSHAKING_PER_ADDRESS;
    let from_many: Vec<TcpStream> = (0..others)
        .map(|k| {
            connect_from(
                [127, 0, 1 + (k / MAX_HANDSHAKING_PER_ADDRESS) as u8, 1],
                b_addr,
            )
        })
        .collect();
    let start = Instant::now();
    let mut over = connect_from([127, 0, 9, 9], b_addr);
    until_closed(&mut over);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );

    // Gone, they free their slots, and every one is counted.
    drop(from_one);
    drop(from_many);
    let all = MAX_HANDSHAKING as u64 + 2;
    wait_until("B to refuse them all", || b.peers.refused_links() == all);
}

#[test]
fn servers_that_connect_to_each_other_at_once_keep_both_orders() {
    let directory = Directory::default();
    let a = Node::start(A, b"cluster secret", &directory);
    let b = Node::start(B, b"cluster secret", &directory);
    let (to_b, to_a) = (a.peers.sender(), b.peers.sender());
    let from_a = std::thread::spawn(move || (0..200).for_each(|i| to_b(B, numbered_frame(i))));
    let from_b = std::thread::spawn(move || (0..200).for_each(|i| to_a(A, numbered_frame(i))));
    from_a.join().unwrap();
    from_b.join().unwrap();
    for i in 0..200 {
        assert!(b.frame_from(A) == numbered_frame(i), "frame {i} to B");
        assert!(a.frame_from(B) == numbered_frame(i), "frame {i} to A");
    }
    assert!((1..=2).contains(&a.peers.links()));
    assert_eq!(a.peers.links(), b.peers.links());
    assert!(a.events.try_recv().is_err());
    assert!(b.events.try_recv().is_err());
}

#[test]
fn a_key_does_not_show_itself() {
    let key = PeerKey::derive(b"cluster secret");
    assert_eq!(format!("{key:?}"), "PeerKey(..)");
    let (_dir, identity) = identity();
    let settings = PeerSettings::new("127.0.0.1:0".parse().unwrap(), key, identity);
    let shown = format!("{settings:?}");
    assert!(shown.contains("PeerKey(..)"), "{shown}");
    assert_eq!(settings.timeout, Duration::from_secs(10));
    assert_eq!(settings.max_queued_bytes, 64 << 20);
    let _: Fingerprint = settings.identity.fingerprint();
}
