//! A soak: many clients chatting at once against `ferry serve`, every
//! runtime. Every message is delivered exactly once, in order per sender,
//! to everyone in its room, and the server's memory at the end is back near
//! where it started.
//!
//! `cargo test` runs a short one (200 clients for 5 s per runtime, then two
//! more waves of 200 for 5 s that show the server's memory does not grow). The full
//! one is ignored by default:
//!
//! ```text
//! cargo test --release --test soak -- --ignored --nocapture
//! FERRY_SOAK_SECS=60 FERRY_SOAK_CLIENTS=1000 cargo test --release --test soak -- --ignored --nocapture
//! ```
//!
//! Parameters (environment): `FERRY_SOAK_CLIENTS`, `FERRY_SOAK_SECS`,
//! `FERRY_SOAK_RATE` (messages per second per client, default 5, within the
//! default flood limit of 10), `FERRY_SOAK_ROOM` (clients per room, default
//! 10: each message reaches its room; one room of a thousand would be a
//! million deliveries a second), `FERRY_SOAK_RUNTIMES` (default
//! `mio,smol,std`), `FERRY_SOAK_WAVES` (default 3, at least 3);
//! `FERRY_SOAK_FREE_ARENAS=1` leaves glibc's number of heaps alone (see
//! `soak`).

mod common;

use common::{raise_fd_limit, Raw, Serve};
use ferry_core::frame::Frame;
use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

struct Params {
    clients: usize,
    secs: f64,
    rate: f64,
    room: usize,
    runtimes: Vec<String>,
}

impl Params {
    fn from_env(clients: usize, secs: f64) -> Params {
        let get = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
        Params {
            clients: get("FERRY_SOAK_CLIENTS").map_or(clients, |v| v.parse().unwrap()),
            secs: get("FERRY_SOAK_SECS").map_or(secs, |v| v.parse().unwrap()),
            rate: get("FERRY_SOAK_RATE").map_or(5.0, |v| v.parse().unwrap()),
            room: get("FERRY_SOAK_ROOM").map_or(10, |v| v.parse().unwrap()),
            runtimes: get("FERRY_SOAK_RUNTIMES")
                .unwrap_or_else(|| "mio,smol,std".into())
                .split(',')
                .map(str::to_string)
                .collect(),
        }
    }
}

/// What one client saw: messages sent, and per sender the count received.
struct Tally {
    sent: usize,
    received: HashMap<String, usize>,
}

/// One client: joins, waits for everyone, chats at `rate` for `secs`, then
/// says it is done and reads on until everyone in its room has said so.
/// Checks on the way that each sender's messages come exactly once, in
/// order.
fn client(
    addr: std::net::SocketAddr,
    me: usize,
    p: &Params,
    roommates: Vec<String>,
    start: Arc<Barrier>,
) -> Tally {
    let name = format!("u{me}");
    let room = format!("r{}", me / p.room);
    let mut raw = Raw::join(addr, &name, &room);
    start.wait();
    let began = Instant::now();
    let period = Duration::from_secs_f64(1.0 / p.rate);
    let chat_for = Duration::from_secs_f64(p.secs);
    let mut next_send = began + period.mul_f64((me % 97) as f64 / 97.0);
    let mut sent = 0;
    let mut next: HashMap<String, usize> = HashMap::new();
    let mut done: HashMap<String, usize> = HashMap::new();
    let mut said_done = false;
    let deadline = began + chat_for + Duration::from_secs(60);
    loop {
        let now = Instant::now();
        assert!(now < deadline, "{name}: not done; heard {done:?}");
        if !said_done && now >= began + chat_for {
            raw.send(&Frame::Say {
                text: format!("done {sent}").into(),
            })
            .unwrap();
            said_done = true;
        } else if !said_done && now >= next_send {
            raw.send(&Frame::Say {
                text: format!("{sent}").into(),
            })
            .unwrap();
            sent += 1;
            next_send += period;
            continue;
        }
        if said_done && roommates.iter().all(|m| done.contains_key(m)) {
            break;
        }
        let wait = if said_done {
            deadline - now
        } else {
            next_send
                .min(began + chat_for)
                .saturating_duration_since(now)
                .max(Duration::from_millis(1))
        };
        match raw.recv(wait) {
            Ok(Frame::Message { from, text, .. }) => {
                let from = from.to_string();
                if let Some(count) = text.strip_prefix("done ") {
                    let count: usize = count.parse().unwrap();
                    let got = next.get(&from).copied().unwrap_or(0);
                    assert_eq!(got, count, "{name}: {from} sent {count}, {got} arrived");
                    assert!(
                        done.insert(from.clone(), count).is_none(),
                        "{name}: two dones"
                    );
                } else {
                    let n: usize = text.parse().unwrap();
                    let expected = next.entry(from.clone()).or_insert(0);
                    assert_eq!(n, *expected, "{name}: from {from}, out of order or twice");
                    assert!(!done.contains_key(&from), "{name}: {from} after done");
                    *expected += 1;
                }
            }
            Ok(Frame::Left {
                name: who, code, ..
            }) => {
                panic!("{name}: {who} left the room: {code:?}")
            }
            Ok(Frame::Error { code, reason }) => panic!("{name}: {code:?} {reason}"),
            Ok(_) => {}
            Err(common::NoFrame::Timeout) => {}
            Err(e) => panic!("{name}: {e:?}"),
        }
    }
    raw.send(&Frame::Bye).unwrap();
    // Reads to the server's end of the connection: closing with unread
    // data would reset it, maybe before the server read the BYE.
    let closing = Instant::now() + Duration::from_secs(30);
    while raw
        .recv(closing.saturating_duration_since(Instant::now()))
        .is_ok()
    {}
    Tally {
        sent,
        received: next,
    }
}

/// One wave: every client joins, chats for `secs`, checks what it heard,
/// and leaves. Returns the server's RSS with everyone in and after.
fn wave(server: &mut Serve, runtime: &str, p: &Params, number: usize, secs: f64) -> (u64, u64) {
    let names: Vec<String> = (0..p.clients).map(|i| format!("u{i}")).collect();
    let start = Arc::new(Barrier::new(p.clients + 1));
    let params = Arc::new(Params {
        runtimes: Vec::new(),
        secs,
        ..*p
    });
    let threads: Vec<_> = (0..p.clients)
        .map(|me| {
            let room = me / p.room;
            let roommates: Vec<String> = names
                .iter()
                .enumerate()
                .filter(|(i, _)| i / p.room == room)
                .map(|(_, n)| n.clone())
                .collect();
            let (start, params, addr) = (start.clone(), params.clone(), server.addr);
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || client(addr, me, &params, roommates, start))
                .unwrap()
        })
        .collect();
    start.wait();
    let began = Instant::now();
    let rss_joined = server.rss_kib();
    let tallies: Vec<Tally> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let elapsed = began.elapsed();
    // Everyone has said BYE: wait for the server to see every one go.
    server.expect_count(&["disconnected: quit"], p.clients * number);
    let rss_end = server.rss_kib();
    let sent: usize = tallies.iter().map(|t| t.sent).sum();
    let delivered: usize = tallies
        .iter()
        .map(|t| t.received.values().sum::<usize>())
        .sum();
    // Every message reached every member of its room, itself included.
    let mut expected = 0;
    for (me, tally) in tallies.iter().enumerate() {
        let room = me / p.room;
        for (other, t) in tallies.iter().enumerate() {
            if other / p.room == room {
                let from = format!("u{other}");
                assert_eq!(
                    tally.received.get(&from).copied().unwrap_or(0),
                    t.sent,
                    "{runtime}: u{me} from {from}"
                );
                expected += t.sent;
            }
        }
    }
    assert_eq!(delivered, expected);
    eprintln!(
        "soak {runtime}, wave {number}: {} clients, {:.0} s: {sent} messages sent, {delivered} \
         delivered ({:.0}/s), each exactly once and in order; server RSS {rss_joined} KiB with \
         everyone in, {rss_end} KiB after they left",
        p.clients,
        elapsed.as_secs_f64(),
        delivered as f64 / elapsed.as_secs_f64()
    );
    (rss_joined, rss_end)
}

fn soak(p: &Params) {
    raise_fd_limit();
    for runtime in &p.runtimes {
        let inbox = tempfile::tempdir().unwrap();
        let max = (p.clients * 2).to_string();
        let args = [
            "--runtime",
            runtime,
            "--max-per-ip",
            &max,
            "--max-clients",
            &max,
            // Every client comes from 127.0.0.1, one source: its shared
            // budget for joins and messages would price the soak's load
            // (tests/hostile_load.rs and core/tests/limits.rs test it).
            "--source-flood-burst",
            "1000000",
            "--source-flood-rate",
            "1000000",
        ];
        // glibc gives each allocating thread a heap of its own (up to 8 per
        // core), and keeps what is freed in it: with a thread per
        // connection (std), RSS then creeps up wave after wave as new
        // threads land in heaps not used before, which would hide a leak
        // or fake one. Two heaps keep the measure about ferry; with one
        // heap, the std server stays flat to within 1% from the second
        // wave on (checked by hand; the unpinned figures are in
        // RELIABILITY.md).
        let mut server = Serve::start_with(inbox.path(), &args, |c| {
            if std::env::var_os("FERRY_SOAK_FREE_ARENAS").is_none() {
                c.env("GLIBC_TUNABLES", "glibc.malloc.arena_max=2");
            }
        });
        let rss_start = server.rss_kib();
        eprintln!("soak {runtime}: server RSS {rss_start} KiB at start");
        let (joined, first) = wave(&mut server, runtime, p, 1, p.secs);
        assert!(
            first <= rss_start + 24 * 1024 + joined.saturating_sub(rss_start),
            "{runtime}: server RSS {rss_start} KiB at start, {first} KiB after the first wave"
        );
        // More waves of as many clients (5 s each): after the allocator has
        // settled, nothing a wave leaves behind may grow. What stays after
        // the first waves is the allocator's, not ferry's: glibc keeps freed
        // memory in its heaps (up to 16 MiB at a heap's top, see
        // src/allocator.rs), one heap per allocating thread, up to 8 per
        // core, and the std runtime has two threads per client.
        let waves: usize = std::env::var("FERRY_SOAK_WAVES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3)
            .max(3);
        let mut after = vec![first];
        let mut peak = joined;
        for number in 2..=waves {
            let (joined, left) = wave(&mut server, runtime, p, number, p.secs.min(5.0));
            peak = peak.max(joined);
            after.push(left);
        }
        let (settled, last) = (after[1], after[waves - 1]);
        assert!(
            last <= settled + 2 * 1024 + settled / 20,
            "{runtime}: server RSS after each wave {after:?} KiB: it keeps growing"
        );
        // Per-client state is gone: the server holds no more than it did
        // with everyone in. (Not less: the smol and std runtimes give each
        // connection a 64 KiB read buffer, and glibc keeps the freed
        // buffers for reuse rather than returning them; the next wave
        // reuses them, as the flat figures after the second wave show.)
        assert!(
            last <= peak + 8 * 1024,
            "{runtime}: server RSS {rss_start} KiB at start, {peak} KiB at most with \
             everyone in, {last} KiB at the end"
        );
        eprintln!("soak {runtime}: server RSS {rss_start} KiB at start, after each wave {after:?}");
        assert!(server.terminate().success());
    }
}

#[test]
fn soak_short() {
    soak(&Params::from_env(200, 5.0));
}

/// The full soak: 1,000 clients for 60 s against each runtime.
#[test]
#[ignore = "minutes long; run with --release -- --ignored"]
fn soak_full() {
    soak(&Params::from_env(1000, 60.0));
}
