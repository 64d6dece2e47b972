//! The Redis scripts against their model: the same requests, from several
//! servers, go to `MemoryBroker` and to `RedisBroker` on a `redis-server`
//! this test starts on a free loopback port; every answer, the whole log,
//! every inbox and every room must come out the same. Proptest picks the
//! requests: joins with clashing names into small rooms, messages, direct
//! messages, announcements, leaves, syncs, repeats of earlier operations,
//! lease renewals and reaps, with the clock moving in between.

use ferry_cluster::{BrokerSettings, RedisBroker};
use ferry_core::cluster::{BusInput, BusRequest, MemoryBroker, OpId, RoomEvent, ServerId};
use ferry_core::names::name_key;
use ferry_core::{ClientId, Code, Source};
use proptest::prelude::*;
use std::net::{Ipv4Addr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` of this test's own, stopped on drop.
struct RedisServer {
    child: Child,
    url: String,
}

impl RedisServer {
    /// On a free port; tests run in parallel, so the server that answers
    /// must be this one (its `process_id`), else another port is tried.
    fn start() -> RedisServer {
        for _ in 0..20 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            if let Some(server) = RedisServer::try_start_on(port) {
                return server;
            }
        }
        panic!("no redis-server of this test's own could start");
    }

    fn try_start_on(port: u16) -> Option<RedisServer> {
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is needed (apt-get install redis-server)");
        let url = format!("redis://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if child.try_wait().ok().flatten().is_some() {
                // It could not bind: the port was taken meanwhile.
                return None;
            }
            let pid = redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                .and_then(|mut c| redis::cmd("INFO").arg("server").query::<String>(&mut c))
                .ok()
                .and_then(|info| {
                    info.lines()
                        .find_map(|l| l.strip_prefix("process_id:"))
                        .and_then(|id| id.trim().parse::<u32>().ok())
                });
            if pid == Some(child.id()) {
                return Some(RedisServer { child, url });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn broker(&self, settings: BrokerSettings) -> RedisBroker {
        RedisBroker::connect(&self.url, Duration::from_secs(5), settings).expect("connect")
    }

    fn flush(&self) {
        let mut c = redis::Client::open(self.url.as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        redis::cmd("FLUSHALL").query::<()>(&mut c).unwrap();
    }

    fn forget_scripts(&self) {
        let mut c = redis::Client::open(self.url.as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query::<()>(&mut c)
            .unwrap();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SERVERS: [ServerId; 3] = [ServerId(0xa1), ServerId(0xb2), ServerId(0xc3)];
const NAMES: [&str; 5] = ["alice", "Alice", "bob", "carol", "ÉVE"];
const ROOMS: [&str; 2] = ["lobby", "Dev"];
const BURST: u32 = 4;
const PER_SECOND: u32 = 2;
/// Messages of history per room: few, so that rooms fill and roll over.
const HISTORY: u32 = 3;

#[derive(Debug, Clone)]
enum Step {
    Join {
        server: usize,
        client: u64,
        name: usize,
        room: usize,
        max: u32,
        source: u8,
        /// Members the source may have across the cluster (0: no limit).
        per_source: u32,
    },
    Say {
        server: usize,
        client: u64,
        source: u8,
    },
    Direct {
        server: usize,
        client: u64,
        to: usize,
        source: u8,
    },
    /// Where a member of the caller's room is, for a file.
    Locate {
        server: usize,
        client: u64,
        to: usize,
    },
    /// A wrong token from a source (bans of 1.5 s after 3, remembered
    /// 2 s: the waits between steps cross both).
    AuthFailed {
        server: usize,
        client: u64,
        source: u8,
    },
    /// A folder's manifest entries charged to its source.
    ChargeFolder {
        server: usize,
        client: u64,
        source: u8,
        entries: u64,
        burst: u32,
        per_second: u32,
    },
    Announce {
        server: usize,
        room: Option<usize>,
    },
    Leave {
        server: usize,
        client: u64,
    },
    Sync {
        server: usize,
        room: usize,
    },
    /// The server sends one of its earlier requests again.
    Repeat {
        server: usize,
        which: usize,
    },
    /// A member of the server claims its name again after a restart.
    Rejoin {
        server: usize,
        client: u64,
        name: usize,
        room: usize,
        min_seq: u64,
        source: u8,
    },
    /// The broker forgets everything and is marked restarted, as a link
    /// marks a Redis it finds restarted.
    Restart,
    Renew {
        server: usize,
        lease: u64,
    },
    Reap {
        server: usize,
    },
    Wait {
        ms: u64,
    },
    /// Redis forgets its scripts (`SCRIPT FLUSH`); the memory broker has
    /// none to forget.
    ForgetScripts,
    /// Ends the pipeline being gathered (pipelining runs only).
    Cut,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let server = 0..SERVERS.len();
    let client = 0..4u64;
    let step = prop_oneof![
        4 => (server.clone(), client.clone(), 0..NAMES.len(), 0..ROOMS.len(), 1..4u32, 0..3u8, 0..3u32)
            .prop_map(|(server, client, name, room, max, source, per_source)| Step::Join { server, client, name, room, max, source, per_source }),
        4 => (server.clone(), client.clone(), 0..3u8)
            .prop_map(|(server, client, source)| Step::Say { server, client, source }),
        2 => (server.clone(), client.clone(), 0..NAMES.len(), 0..3u8)
            .prop_map(|(server, client, to, source)| Step::Direct { server, client, to, source }),
        1 => (server.clone(), client.clone(), 0..NAMES.len())
            .prop_map(|(server, client, to)| Step::Locate { server, client, to }),
        2 => (server.clone(), client.clone(), 1..3u8)
            .prop_map(|(server, client, source)| Step::AuthFailed { server, client, source }),
        2 => (server.clone(), client.clone(), 1..3u8, 0..12u64, 0..10u32, 0..4u32)
            .prop_map(|(server, client, source, entries, burst, per_second)| Step::ChargeFolder {
                server, client, source, entries, burst, per_second
            }),
        1 => (server.clone(), proptest::option::of(0..ROOMS.len()))
            .prop_map(|(server, room)| Step::Announce { server, room }),
        2 => (server.clone(), client.clone()).prop_map(|(server, client)| Step::Leave { server, client }),
        1 => (server.clone(), 0..ROOMS.len()).prop_map(|(server, room)| Step::Sync { server, room }),
        2 => (server.clone(), 0..8usize).prop_map(|(server, which)| Step::Repeat { server, which }),
        1 => (server.clone(), 100..5000u64).prop_map(|(server, lease)| Step::Renew { server, lease }),
        1 => server.clone().prop_map(|server| Step::Reap { server }),
        2 => (0..3000u64).prop_map(|ms| Step::Wait { ms }),
        2 => (server.clone(), client.clone(), 0..NAMES.len(), 0..ROOMS.len(), 0..20u64, 0..3u8).prop_map(
            |(server, client, name, room, min_seq, source)| Step::Rejoin { server, client, name, room, min_seq, source }
        ),
        1 => Just(Step::Restart),
        1 => Just(Step::ForgetScripts),
        2 => Just(Step::Cut),
    ];
    proptest::collection::vec(step, 1..60)
}

/// Steps that are mostly messages, so that pipelines carry long runs of
/// them (one call of the say script each), with repeats, leaves, budgets
/// running out and the scripts forgotten among them.
fn message_steps() -> impl Strategy<Value = Vec<Step>> {
    let server = 0..2usize;
    let client = 0..3u64;
    let step = prop_oneof![
        2 => (server.clone(), client.clone(), 0..NAMES.len(), 0..ROOMS.len(), 0..3u8)
            .prop_map(|(server, client, name, room, source)| Step::Join { server, client, name, room, max: 4, source, per_source: 2 }),
        12 => (server.clone(), client.clone(), 0..3u8)
            .prop_map(|(server, client, source)| Step::Say { server, client, source }),
        2 => (server.clone(), 0..8usize).prop_map(|(server, which)| Step::Repeat { server, which }),
        1 => (server.clone(), client.clone()).prop_map(|(server, client)| Step::Leave { server, client }),
        1 => (0..1500u64).prop_map(|ms| Step::Wait { ms }),
        1 => Just(Step::ForgetScripts),
        1 => Just(Step::Cut),
    ];
    proptest::collection::vec(step, 1..120)
}

fn source(n: u8) -> Option<Source> {
    (n > 0).then(|| Source::of(Ipv4Addr::new(10, 0, 0, n).into(), 32, 64))
}

/// Each room's events, in log order.
fn by_room(events: &[RoomEvent]) -> std::collections::BTreeMap<&str, Vec<&RoomEvent>> {
    let mut rooms = std::collections::BTreeMap::new();
    for event in events {
        rooms
            .entry(event.room_key.as_str())
            .or_insert_with(Vec::new)
            .push(event);
    }
    rooms
}

/// What both brokers are asked, and what each answered.
struct Both {
    memory: MemoryBroker,
    redis: RedisBroker,
    now_ms: u64,
    /// Per server: its next op and the requests it sent.
    sent: Vec<(u64, Vec<BusRequest>)>,
    /// Empties the Redis, as a restart without persistence does.
    flush: Box<dyn Fn()>,
    /// Pipelining: requests gathered (with their server) and sent to Redis
    /// in one `execute_all` per run of one server's requests; the memory
    /// broker still takes them one at a time.
    pipeline: Option<Vec<(usize, BusRequest)>>,
    /// `SCRIPT FLUSH` on the Redis.
    forget_scripts: Box<dyn Fn()>,
}

impl Both {
    fn request(&mut self, server: usize, make: impl FnOnce(OpId) -> BusRequest) {
        let (next, sent) = &mut self.sent[server];
        let request = make(OpId(*next));
        *next += 1;
        sent.push(request.clone());
        self.send(server, &request);
    }

    fn send(&mut self, server: usize, request: &BusRequest) {
        if let Some(pipeline) = &mut self.pipeline {
            pipeline.push((server, request.clone()));
            return;
        }
        let id = SERVERS[server];
        let expected = self.memory.execute(id, request.clone(), self.now_ms);
        let got = self
            .redis
            .execute(id, request, Some(self.now_ms))
            .expect("redis");
        assert_eq!(got, expected, "answers to {request:?}");
    }

    /// Sends what the pipeline gathered: each run of one server's requests
    /// in one round trip, compared with the memory broker's answers.
    fn send_pipeline(&mut self) {
        let Some(pipeline) = self.pipeline.replace(Vec::new()) else {
            return;
        };
        for run in pipeline.chunk_by(|a, b| a.0 == b.0) {
            let id = SERVERS[run[0].0];
            let expected: Vec<BusInput> = run
                .iter()
                .map(|(_, r)| self.memory.execute(id, r.clone(), self.now_ms))
                .collect();
            let got = self
                .redis
                .execute_all(id, run.iter().map(|(_, r)| r), Some(self.now_ms))
                .expect("redis");
            assert_eq!(got, expected, "answers to the pipeline {run:?}");
        }
    }

    fn step(&mut self, step: &Step) {
        let request = matches!(
            step,
            Step::Join { .. }
                | Step::Say { .. }
                | Step::Direct { .. }
                | Step::Locate { .. }
                | Step::ChargeFolder { .. }
                | Step::AuthFailed { .. }
                | Step::Announce { .. }
                | Step::Leave { .. }
                | Step::Sync { .. }
                | Step::Repeat { .. }
                | Step::Rejoin { .. }
        );
        if !request {
            self.send_pipeline();
        }
        match *step {
            Step::Join {
                server,
                client,
                name,
                room,
                max,
                source: src,
                per_source,
            } => self.request(server, |op| BusRequest::Join {
                op,
                client: ClientId(client),
                room: ROOMS[room].into(),
                room_key: name_key(ROOMS[room]),
                name: NAMES[name].into(),
                name_key: name_key(NAMES[name]),
                source: source(src),
                max_members: max,
                max_per_source: per_source,
            }),
            Step::AuthFailed {
                server,
                client,
                source: src,
            } => self.request(server, |op| BusRequest::AuthFailed {
                op,
                client: ClientId(client),
                source: source(src).expect("a source"),
                ban_after: 3,
                ban_ms: 1500,
                memory_ms: 2000,
            }),
            Step::ChargeFolder {
                server,
                client,
                source: src,
                entries,
                burst,
                per_second,
            } => self.request(server, |op| BusRequest::ChargeFolder {
                op,
                client: ClientId(client),
                source: source(src).expect("a source"),
                entries,
                burst,
                per_second,
            }),
            Step::Say {
                server,
                client,
                source: src,
            } => {
                let text = format!("hello {}", self.now_ms);
                self.request(server, |op| BusRequest::Say {
                    op,
                    client: ClientId(client),
                    text: text.into(),
                    source: source(src),
                })
            }
            Step::Direct {
                server,
                client,
                to,
                source: src,
            } => self.request(server, |op| BusRequest::Direct {
                op,
                client: ClientId(client),
                to: NAMES[to].into(),
                to_key: name_key(NAMES[to]),
                text: "psst".into(),
                source: source(src),
            }),
            Step::Locate { server, client, to } => self.request(server, |op| BusRequest::Locate {
                op,
                client: ClientId(client),
                to: NAMES[to].into(),
                to_key: name_key(NAMES[to]),
            }),
            Step::Announce { server, room } => self.request(server, |op| BusRequest::Announce {
                op,
                room_key: room.map(|r| name_key(ROOMS[r])),
                text: "server says".into(),
            }),
            Step::Leave { server, client } => self.request(server, |op| BusRequest::Leave {
                op,
                client: ClientId(client),
                code: Code::QUIT,
            }),
            Step::Sync { server, room } => self.request(server, |op| BusRequest::Sync {
                op,
                room_key: name_key(ROOMS[room]),
            }),
            Step::Repeat { server, which } => {
                let sent = &self.sent[server].1;
                if let Some(request) = sent.get(sent.len().saturating_sub(1 + which)).cloned() {
                    self.send(server, &request);
                }
            }
            Step::Renew { server, lease } => {
                let id = SERVERS[server];
                let expected = self.memory.renew(id, self.now_ms, lease);
                let got = self
                    .redis
                    .renew(id, Duration::from_millis(lease), Some(self.now_ms))
                    .expect("redis");
                assert_eq!(got, expected, "renew");
            }
            Step::Reap { server } => {
                let id = SERVERS[server];
                let expected = self.memory.reap(id, self.now_ms);
                let got = self.redis.reap(id, Some(self.now_ms)).expect("redis");
                assert_eq!(got, expected, "reaped");
            }
            Step::Wait { ms } => self.now_ms += ms,
            Step::Rejoin {
                server,
                client,
                name,
                room,
                min_seq,
                source: src,
            } => self.request(server, |op| BusRequest::Rejoin {
                op,
                client: ClientId(client),
                room: ROOMS[room].into(),
                room_key: name_key(ROOMS[room]),
                name: NAMES[name].into(),
                name_key: name_key(NAMES[name]),
                min_seq,
                source: source(src),
            }),
            Step::Restart => {
                self.memory.restart();
                self.memory.mark_restarted();
                (self.flush)();
                self.redis.mark_restarted().expect("redis");
            }
            Step::ForgetScripts => (self.forget_scripts)(),
            Step::Cut => {}
        }
    }

    /// The logs, inboxes and rooms of both, compared.
    fn compare(&mut self) {
        self.send_pipeline();
        self.pipeline = None;
        let expected: Vec<RoomEvent> = self
            .memory
            .events_after(0)
            .map(|e| match e {
                BusInput::Event(e) => e,
                other => panic!("{other:?}"),
            })
            .collect();
        let batch = self.redis.read_events("0", 100_000, None).expect("redis");
        assert_eq!(batch.malformed, 0);
        // The order that counts is each room's: one call of the say script
        // appends each room's messages as one entry, so rooms' events may
        // interleave differently (never a room's own).
        assert_eq!(
            by_room(&batch.events),
            by_room(&expected),
            "the logs, room by room"
        );
        assert_eq!(batch.events.len(), expected.len());
        for id in SERVERS {
            let expected = self.memory.take_inbox(id);
            let got = self.redis.take_inbox(id).expect("redis");
            assert_eq!(got, expected, "the inbox of {id}");
        }
        for room in ROOMS {
            let key = name_key(room);
            let sync = |op| BusRequest::Sync {
                op,
                room_key: key.clone(),
            };
            let (next, _) = &mut self.sent[0];
            let op = OpId(*next);
            *next += 1;
            self.send(0, &sync(op));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 120, ..ProptestConfig::default() })]

    #[test]
    fn the_scripts_do_what_the_memory_broker_does(steps in steps()) {
        run_both(&steps, false);
    }

    /// The same steps with every run of a server's requests sent in one
    /// pipeline (`execute_all`): the same answers, log and inboxes.
    #[test]
    fn pipelines_do_what_one_request_at_a_time_does(steps in steps()) {
        run_both(&steps, true);
    }

    /// Runs of messages in one pipeline are carried out by one call of the
    /// say script each: still the answers, seqs, budgets and history of
    /// one message at a time.
    #[test]
    fn runs_of_messages_do_what_one_at_a_time_does(steps in message_steps()) {
        run_both(&steps, true);
    }
}

fn run_both(steps: &[Step], pipelined: bool) {
    thread_local! {
        static REDIS: RedisServer = RedisServer::start();
    }
    REDIS.with(|redis| {
        redis.flush();
        let settings = BrokerSettings::default()
            .source_budget(BURST, PER_SECOND)
            .history(HISTORY);
        let mut both = Both {
            memory: MemoryBroker::new()
                .source_budget(BURST, PER_SECOND)
                .history(HISTORY as usize),
            redis: redis.broker(settings),
            now_ms: 1_733_000_000_000,
            sent: SERVERS.iter().map(|_| (1, Vec::new())).collect(),
            flush: Box::new(|| REDIS.with(RedisServer::flush)),
            pipeline: pipelined.then(Vec::new),
            forget_scripts: Box::new(|| REDIS.with(RedisServer::forget_scripts)),
        };
        for step in steps {
            both.step(step);
        }
        both.compare();
    });
}

#[test]
fn a_look_alike_is_refused_and_the_seq_goes_on_after_a_room_empties() {
    let redis = RedisServer::start();
    let mut broker = redis.broker(BrokerSettings::default());
    let server = SERVERS[0];
    let join = |op, client, name: &str| BusRequest::Join {
        op: OpId(op),
        client: ClientId(client),
        room: "Lobby".into(),
        room_key: name_key("Lobby"),
        name: name.into(),
        name_key: name_key(name),
        source: None,
        max_members: 10,
        max_per_source: 0,
    };
    let BusInput::Answer { answer, .. } =
        broker.execute(server, &join(1, 1, "alice"), None).unwrap()
    else {
        panic!()
    };
    assert!(
        matches!(answer, ferry_core::cluster::Answer::Joined(ref s) if s.seq == 1 && s.room == "Lobby")
    );
    let BusInput::Answer { answer, .. } =
        broker.execute(server, &join(2, 2, "ALICE"), None).unwrap()
    else {
        panic!()
    };
    assert!(
        matches!(answer, ferry_core::cluster::Answer::Refused { code, .. } if code == Code::NAME_TAKEN)
    );
    let leave = BusRequest::Leave {
        op: OpId(3),
        client: ClientId(1),
        code: Code::QUIT,
    };
    broker.execute(server, &leave, None).unwrap();
    broker.execute(server, &join(4, 2, "ALICE"), None).unwrap();
    let batch = broker.read_events("0", 100, None).unwrap();
    let seqs: Vec<u64> = batch.events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        vec![1, 2, 3],
        "JOINED, LEFT, JOINED: the seq never restarts"
    );
    // A blocking read from the last id waits, then times out empty.
    let last = batch.last_id.unwrap();
    let started = Instant::now();
    let none = broker
        .read_events(&last, 10, Some(Duration::from_millis(100)))
        .unwrap();
    assert!(none.events.is_empty() && started.elapsed() >= Duration::from_millis(90));
}
