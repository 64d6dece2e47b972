//! The `noise_receive` fuzz target's harness: the receiving side of the
//! Noise layer that encrypts ferry's UDP peer chat (`ferry_noise::Noise`,
//! PROTOCOL.md §9.7). Shared by `fuzz/fuzz_targets/noise_receive.rs` and
//! `tests/corpus.rs`, which replays the corpus on stable.
//!
//! The layer under test (`us`) talks to an honest peer (`them`) that holds
//! the same secret, over a network the input drives: it delivers, replays,
//! tampers with and cuts the honest peer's datagrams, adds datagrams of its
//! own, lets time pass and restarts the honest peer. The fuzzer cannot forge
//! a Poly1305 tag or know the secret, so without the honest peer it would
//! never get past the first authentication check; with it, it reaches the
//! transport path (nonces, replay window, pending sessions, restarts).
//!
//! Both peers draw their entropy from fixed seeds, so a run is a function of
//! its input. After every step the harness checks what the layer promises:
//! it never panics, what it keeps stays within [`PENDING_MAX`] and
//! [`QUEUE_MAX`], one datagram in makes a bounded number out, every drop is
//! counted, and no plaintext comes out that the honest peer did not seal,
//! nor twice from the same datagram.

use ferry_noise::{Entropy, Noise, Received, Secret, PENDING_MAX, QUEUE_MAX};
use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

/// The secret both peers were given.
const SECRET: &str = "ferry noise_receive fuzz harness";

/// Datagrams kept in flight each way, and the honest peer's kept for
/// replay: past it the oldest is lost, so a long input cannot grow memory.
const WINDOW: usize = 64;

/// Most datagrams one received datagram may make the layer send: the
/// response to an INIT, or a confirmation, and the queue flushed once a
/// session exists.
const OUT_PER_DATAGRAM: usize = QUEUE_MAX + 1;

/// Most datagrams one timeout may make it send: its own INIT again, every
/// pending response again, and a new INIT when it gives up on all of them.
const OUT_PER_TIMEOUT: usize = PENDING_MAX + 2;

/// A deterministic stand-in for the operating system's randomness
/// (splitmix64): distinct seeds give distinct ephemeral keys.
fn entropy(seed: u64) -> Entropy {
    let mut state = seed;
    Box::new(move |buf: &mut [u8]| {
        for chunk in buf.chunks_mut(8) {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
    })
}

/// The input, read from the front.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    /// A length byte, then that many bytes. 255 takes all that is left, so
    /// that datagrams longer than a byte can count (up to and past
    /// `MAX_DATAGRAM`) are reachable too.
    fn sized(&mut self) -> Option<&'a [u8]> {
        Some(match self.byte()? {
            u8::MAX => self.take(usize::MAX),
            len => self.take(len.into()),
        })
    }
}

/// Pushes `datagram` onto `queue`, losing the oldest past [`WINDOW`].
fn keep(queue: &mut VecDeque<Vec<u8>>, datagram: Vec<u8>) {
    if queue.len() == WINDOW {
        queue.pop_front();
    }
    queue.push_back(datagram);
}

struct Run {
    now: Instant,
    secret: Secret,
    us: Noise,
    them: Noise,
    /// Seeds the honest peer's entropy: a restart draws new keys.
    restarts: u64,
    /// Our datagrams on their way to the honest peer.
    ours: VecDeque<Vec<u8>>,
    /// The honest peer's datagrams on their way to us.
    theirs: VecDeque<Vec<u8>>,
    /// Every datagram the honest peer sent, newest last: replay material.
    history: VecDeque<Vec<u8>>,
    /// Plaintexts the honest peer sealed: the only ones we may yield.
    sealed: HashSet<Vec<u8>>,
    /// Datagrams that yielded plaintext: none may yield it again.
    delivered: HashSet<Vec<u8>>,
}

impl Run {
    fn new(now: Instant, them_seed: u64) -> Run {
        let secret = Secret::from_text(SECRET);
        let mut run = Run {
            now,
            us: Noise::new(&secret, now, entropy(1)),
            them: Noise::new(&secret, now, entropy(them_seed)),
            secret,
            restarts: them_seed,
            ours: VecDeque::new(),
            theirs: VecDeque::new(),
            history: VecDeque::new(),
            sealed: HashSet::new(),
            delivered: HashSet::new(),
        };
        // Each peer's INIT, sent on creation.
        run.settle_us(1);
        run.collect_theirs();
        run
    }

    /// Takes what we sent (at most `most` datagrams since the last call)
    /// and checks our bounds.
    fn settle_us(&mut self, most: usize) {
        let mut sent = 0;
        while let Some(datagram) = self.us.poll_transmit() {
            sent += 1;
            keep(&mut self.ours, datagram.to_vec());
        }
        assert!(sent <= most, "one step sent {sent} datagrams, over {most}");
        while self.us.poll_event().is_some() {}
        assert!(self.us.queued() <= QUEUE_MAX, "{} queued", self.us.queued());
        assert!(
            self.us.pending() <= PENDING_MAX,
            "{} pending handshakes",
            self.us.pending()
        );
        assert!(
            self.us.outranked() <= PENDING_MAX,
            "{} outranked INITs remembered",
            self.us.outranked()
        );
    }

    /// Takes what the honest peer sent: on its way to us, and kept for
    /// replay.
    fn collect_theirs(&mut self) {
        while let Some(datagram) = self.them.poll_transmit() {
            keep(&mut self.theirs, datagram.to_vec());
            keep(&mut self.history, datagram.to_vec());
        }
        while self.them.poll_event().is_some() {}
    }

    /// One datagram reaches the layer under test.
    fn deliver(&mut self, datagram: &[u8]) {
        let before = self.us.unauthenticated();
        let received = self.us.handle_datagram(self.now, datagram);
        assert_eq!(
            self.us.unauthenticated() - before,
            u64::from(received == Received::Dropped),
            "drops are counted, and only drops: {received:?}"
        );
        if let Received::Plaintext(plain) = &received {
            assert!(
                self.sealed.contains(&plain[..]),
                "plaintext the honest peer never sealed: {plain:?}"
            );
            assert!(
                self.delivered.insert(datagram.to_vec()),
                "an authentic datagram yielded its plaintext twice"
            );
        }
        self.settle_us(OUT_PER_DATAGRAM);
    }

    /// The network carries everything in flight, both ways, without loss.
    fn round_trip(&mut self) {
        for datagram in std::mem::take(&mut self.ours) {
            self.them.handle_datagram(self.now, &datagram);
        }
        self.collect_theirs();
        for datagram in std::mem::take(&mut self.theirs) {
            self.deliver(&datagram);
        }
    }

    /// The honest peer's `back`-th latest datagram.
    fn past(&self, back: u8) -> Option<Vec<u8>> {
        let len = self.history.len();
        let back = usize::from(back) % len.max(1);
        self.history.get(len.checked_sub(1 + back)?).cloned()
    }

    fn step(&mut self, op: u8, input: &mut Input<'_>) -> Option<()> {
        match op % 9 {
            // Anything at all, from anyone.
            0 => self.deliver(input.sized()?),
            // The honest peer says something; it arrives at once.
            1 => {
                let plain = input.sized()?;
                self.sealed.insert(plain.to_vec());
                self.them.seal(plain);
                self.collect_theirs();
                for datagram in std::mem::take(&mut self.theirs) {
                    self.deliver(&datagram);
                }
            }
            // One of the honest peer's datagrams again: duplicated by the
            // network, or replayed by an attacker.
            2 => {
                let datagram = self.past(input.byte()?)?;
                self.deliver(&datagram);
            }
            // One of them with a byte changed.
            3 => {
                let mut datagram = self.past(input.byte()?)?;
                let at = usize::from(input.byte()?) % datagram.len().max(1);
                let flip = input.byte()?;
                if let Some(b) = datagram.get_mut(at) {
                    *b ^= flip;
                }
                self.deliver(&datagram);
            }
            // One of them cut short.
            4 => {
                let mut datagram = self.past(input.byte()?)?;
                datagram.truncate(usize::from(input.byte()?));
                self.deliver(&datagram);
            }
            // Time passes; both peers retransmit what is due.
            5 => {
                let millis = u16::from_be_bytes([input.byte()?, input.byte()?]);
                self.now += Duration::from_millis(millis.into());
                self.us.handle_timeout(self.now);
                self.settle_us(OUT_PER_TIMEOUT);
                assert!(
                    self.us.poll_timeout().is_none_or(|at| at > self.now),
                    "a timeout handled leaves nothing due"
                );
                self.them.handle_timeout(self.now);
                self.collect_theirs();
            }
            6 => self.round_trip(),
            // The honest peer restarts: new keys, a new handshake.
            7 => {
                self.restarts += 1;
                self.them = Noise::new(&self.secret, self.now, entropy(self.restarts));
                self.collect_theirs();
                for datagram in std::mem::take(&mut self.theirs) {
                    self.deliver(&datagram);
                }
            }
            // We say something: sealed, or queued while no session exists.
            _ => {
                let plain = input.sized()?;
                let queued = self.us.queued();
                let kept = self.us.seal(plain);
                assert!(
                    kept || plain.len() > ferry_noise::MAX_PLAINTEXT || queued == QUEUE_MAX,
                    "a datagram refused with room in the queue"
                );
                self.settle_us(1);
            }
        }
        Some(())
    }
}

/// One run. The first byte: bit 0 set, the handshake completes before
/// anything else (so that the input starts on the transport path); the
/// other bits seed the honest peer's entropy, which decides who of the two
/// stays initiator. Then operations, each a byte and its arguments, until
/// the input runs out.
pub fn noise_receive(data: &[u8]) {
    let mut input = Input(data);
    let Some(mode) = input.byte() else {
        return;
    };
    // Never 1, the seed of `us`; restarts count up from it, so that every
    // honest peer draws keys of its own.
    let mut run = Run::new(Instant::now(), 1000 + u64::from(mode >> 1));
    if mode & 1 == 1 {
        for _ in 0..4 {
            run.round_trip();
        }
        assert!(
            run.us.is_established() && run.them.is_established(),
            "a handshake over a lossless network completes"
        );
    }
    while let Some(op) = input.byte() {
        if run.step(op, &mut input).is_none() {
            return;
        }
    }
}
