//! Several hubs in cluster mode over the in-memory broker, under proptest:
//! requests, answers and the log reach each hub at its own pace, users join
//! with clashing names, talk, send direct messages and leave, and a server
//! dies and is reaped. Whatever the interleaving, every member sees one
//! order per room without gaps or repeats, names stay unique across the
//! servers, and every hub's view of a room ends equal to the broker's.

use ferry_core::cluster::{
    refusal, BusInput, BusRequest, EventKind, MemoryBroker, RoomEvent, ServerId,
};
use ferry_core::names::name_key;
use ferry_core::{ClientConfig, ClientId, Code, Connection, Event, Hub, HubConfig, Text};
use proptest::prelude::*;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

const NAMES: [&str; 5] = ["alice", "Alice", "bob", "carol", "dave"];
const ROOMS: [&str; 2] = ["lobby", "dev"];
const SERVERS: usize = 3;
const USERS: usize = 6;
const LEASE_MS: u64 = 10_000;

#[derive(Debug, Clone)]
enum Action {
    Join {
        user: usize,
        server: usize,
        name: usize,
        room: usize,
    },
    Say {
        user: usize,
    },
    Direct {
        user: usize,
        to: usize,
    },
    Quit {
        user: usize,
    },
    /// One request of the server reaches the broker.
    Request {
        server: usize,
    },
    /// One answer (or inbox message) reaches the server.
    Answer {
        server: usize,
    },
    /// Up to `n` events of the log reach the server.
    Read {
        server: usize,
        n: usize,
    },
    /// The server dies, with everything in flight to and from it.
    Crash {
        server: usize,
    },
    /// Everything in flight arrives.
    Settle,
    /// The broker restarts empty: what waited at each link is refused
    /// (but the request in flight, leaves, syncs and rejoins, which go
    /// again), and each hub is told.
    Restart,
}

fn actions() -> impl Strategy<Value = Vec<Action>> {
    let action = prop_oneof![
        3 => (0..USERS, 0..SERVERS, 0..NAMES.len(), 0..ROOMS.len())
            .prop_map(|(user, server, name, room)| Action::Join { user, server, name, room }),
        4 => (0..USERS).prop_map(|user| Action::Say { user }),
        1 => (0..USERS, 0..NAMES.len()).prop_map(|(user, to)| Action::Direct { user, to }),
        1 => (0..USERS).prop_map(|user| Action::Quit { user }),
        4 => (0..SERVERS).prop_map(|server| Action::Request { server }),
        4 => (0..SERVERS).prop_map(|server| Action::Answer { server }),
        4 => (0..SERVERS, 1..4usize).prop_map(|(server, n)| Action::Read { server, n }),
        1 => (0..SERVERS).prop_map(|server| Action::Crash { server }),
        1 => Just(Action::Settle),
        1 => Just(Action::Restart),
    ];
    proptest::collection::vec(action, 1..200)
}

struct Server {
    id: ServerId,
    hub: Hub,
    to_broker: VecDeque<BusRequest>,
    from_broker: VecDeque<BusInput>,
    read: usize,
    alive: bool,
}

struct User {
    server: usize,
    client: ClientId,
    conn: Connection,
    room: &'static str,
    /// Events after `Welcomed`, in order.
    seen: Vec<Event>,
    welcomed: Option<Text>,
    said: Vec<String>,
    closed: bool,
}

struct Cluster {
    now: Instant,
    broker: MemoryBroker,
    clock_ms: u64,
    servers: Vec<Server>,
    users: Vec<Option<User>>,
    counter: u64,
    crashed: Vec<String>,
    restarts: u64,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster::with_history(0)
    }

    /// A cluster whose broker keeps `history` messages per room.
    fn with_history(history: usize) -> Cluster {
        let now = Instant::now();
        let mut broker = MemoryBroker::new().history(history);
        let servers = (0..SERVERS)
            .map(|k| {
                let id = ServerId(100 + k as u64);
                broker.renew(id, 0, LEASE_MS);
                Server {
                    id,
                    hub: Hub::new(HubConfig::default().cluster(id).history(history), now),
                    to_broker: VecDeque::new(),
                    from_broker: VecDeque::new(),
                    read: 0,
                    alive: true,
                }
            })
            .collect();
        Cluster {
            now,
            broker,
            clock_ms: 1_000_000,
            servers,
            users: (0..USERS).map(|_| None).collect(),
            counter: 0,
            crashed: Vec::new(),
            restarts: 0,
        }
    }

    fn act(&mut self, action: &Action) {
        // The broker's clock moves on a little with everything.
        self.clock_ms += 1;
        match *action {
            Action::Join {
                user,
                server,
                name,
                room,
            } => {
                if self.users[user].is_some() || !self.servers[server].alive {
                    return;
                }
                let client = self.servers[server].hub.connect(self.now);
                let config = ClientConfig::new(NAMES[name]).room(ROOMS[room]);
                self.users[user] = Some(User {
                    server,
                    client,
                    conn: Connection::client(config, self.now),
                    room: ROOMS[room],
                    seen: Vec::new(),
                    welcomed: None,
                    said: Vec::new(),
                    closed: false,
                });
                self.shuttle(server);
            }
            Action::Say { user } | Action::Direct { user, .. } | Action::Quit { user } => {
                let now = self.now;
                self.counter += 1;
                let text = format!("m{}", self.counter);
                let Some(u) = self.users[user].as_mut() else {
                    return;
                };
                if u.welcomed.is_none() || u.closed || !self.servers[u.server].alive {
                    return;
                }
                match *action {
                    Action::Say { .. } => {
                        if u.conn.say(now, &text).is_ok() {
                            u.said.push(text);
                        }
                    }
                    Action::Direct { to, .. } => {
                        let _ = u.conn.direct(now, NAMES[to], &text);
                    }
                    _ => u.conn.bye(now),
                }
                let server = u.server;
                self.shuttle(server);
            }
            Action::Request { server } => {
                let s = &mut self.servers[server];
                if !s.alive {
                    return;
                }
                if let Some(request) = s.to_broker.pop_front() {
                    let answer = self.broker.execute(s.id, request, self.clock_ms);
                    s.from_broker.push_back(answer);
                }
            }
            Action::Answer { server } => {
                let s = &mut self.servers[server];
                if !s.alive {
                    return;
                }
                let inbox = self.broker.take_inbox(s.id);
                s.from_broker.extend(inbox);
                if let Some(input) = s.from_broker.pop_front() {
                    s.hub.handle_bus(self.now, input);
                    self.shuttle(server);
                }
            }
            Action::Read { server, n } => {
                let s = &mut self.servers[server];
                if !s.alive {
                    return;
                }
                // A link says a restart before it hands over anything of
                // the new broker's log.
                if let Some(k) = s
                    .from_broker
                    .iter()
                    .rposition(|i| matches!(i, BusInput::Restarted { .. }))
                {
                    for input in s.from_broker.drain(..=k).collect::<Vec<_>>() {
                        s.hub.handle_bus(self.now, input);
                    }
                }
                let events: Vec<BusInput> = self.broker.events_after(s.read).take(n).collect();
                for event in events {
                    s.read += 1;
                    s.hub.handle_bus(self.now, event);
                }
                self.shuttle(server);
            }
            Action::Crash { server } => {
                let alive = self.servers.iter().filter(|s| s.alive).count();
                if alive < 2 || !self.servers[server].alive {
                    return;
                }
                self.servers[server].alive = false;
                for u in self.users.iter_mut().flatten() {
                    if u.server == server && !u.closed {
                        u.closed = true;
                        if let Some(name) = &u.welcomed {
                            self.crashed.push(name.to_string());
                        }
                    }
                }
                // The others renew; the dead one's lease runs out and the
                // first to look reaps it.
                self.clock_ms += LEASE_MS + 1;
                let alive: Vec<ServerId> = self
                    .servers
                    .iter()
                    .filter(|s| s.alive)
                    .map(|s| s.id)
                    .collect();
                for &id in &alive {
                    self.broker.renew(id, self.clock_ms, LEASE_MS);
                }
                let reaped = self.broker.reap(alive[0], self.clock_ms);
                assert_eq!(reaped, vec![self.servers[server].id]);
            }
            Action::Settle => self.settle(),
            Action::Restart => {
                self.broker.restart();
                // What every link does first on finding it restarted.
                self.broker.mark_restarted();
                self.restarts += 1;
                for s in self.servers.iter_mut().filter(|s| s.alive) {
                    let queued: Vec<BusRequest> = s.to_broker.drain(..).collect();
                    for (i, request) in queued.into_iter().enumerate() {
                        let again = i == 0
                            || matches!(
                                request,
                                BusRequest::Leave { .. }
                                    | BusRequest::Sync { .. }
                                    | BusRequest::Rejoin { .. }
                            );
                        if again {
                            s.to_broker.push_back(request);
                        } else {
                            s.from_broker.push_back(BusInput::Answer {
                                op: request.op(),
                                answer: refusal::unavailable("restarting"),
                            });
                        }
                    }
                    s.read = 0;
                    s.from_broker.push_back(BusInput::Restarted {
                        broker: format!("run {}", self.restarts),
                    });
                    self.broker.renew(s.id, self.clock_ms, LEASE_MS);
                }
            }
        }
    }

    /// Moves bytes between the server's hub and its users, and the hub's
    /// requests to its queue for the broker, until nothing moves.
    fn shuttle(&mut self, server: usize) {
        let now = self.now;
        loop {
            let mut moved = false;
            let s = &mut self.servers[server];
            for u in self
                .users
                .iter_mut()
                .flatten()
                .filter(|u| u.server == server)
            {
                if u.closed {
                    continue;
                }
                while let Some(bytes) = u.conn.poll_transmit() {
                    s.hub.handle_input(u.client, now, &bytes);
                    moved = true;
                }
                while let Some(bytes) = s.hub.poll_transmit(u.client) {
                    u.conn.handle_input(now, &bytes);
                    moved = true;
                }
                while let Some(event) = u.conn.poll_event() {
                    moved = true;
                    match &event {
                        Event::Welcomed { name, .. } => u.welcomed = Some(name.clone()),
                        Event::Closed { .. } => u.closed = true,
                        _ => {}
                    }
                    if u.welcomed.is_some() {
                        u.seen.push(event);
                    }
                }
            }
            while let Some(event) = s.hub.poll_event() {
                moved = true;
                if let Some(client) = event.closed_client() {
                    s.hub.remove(client, now);
                }
            }
            while let Some(request) = s.hub.poll_bus() {
                s.to_broker.push_back(request);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    /// Delivers everything in flight, to every live server, until nothing
    /// moves.
    fn settle(&mut self) {
        for _ in 0..1000 {
            let before: usize = self.log_position();
            for server in 0..SERVERS {
                while !self.servers[server].to_broker.is_empty() && self.servers[server].alive {
                    self.act(&Action::Request { server });
                }
                self.act(&Action::Read {
                    server,
                    n: usize::MAX,
                });
                loop {
                    let s = &self.servers[server];
                    if !s.alive || s.from_broker.is_empty() && self.broker_inbox_empty(server) {
                        break;
                    }
                    self.act(&Action::Answer { server });
                }
            }
            let quiet = self
                .servers
                .iter()
                .all(|s| !s.alive || s.to_broker.is_empty() && s.from_broker.is_empty());
            if quiet && before == self.log_position() {
                return;
            }
        }
        panic!("the cluster never settled");
    }

    fn broker_inbox_empty(&mut self, server: usize) -> bool {
        let inbox = self.broker.take_inbox(self.servers[server].id);
        let empty = inbox.is_empty();
        self.servers[server].from_broker.extend(inbox);
        empty
    }

    fn log_position(&self) -> usize {
        self.broker.log_len() + self.servers.iter().map(|s| s.read).sum::<usize>()
    }
}

/// A room event as a member saw it, for comparing members' views.
fn room_event(event: &Event) -> Option<(u64, String)> {
    match event {
        Event::Message { seq, from, text } => Some((*seq, format!("MESSAGE {from} {text}"))),
        Event::Joined { seq, name } => Some((*seq, format!("JOINED {name}"))),
        Event::Left { seq, name, code } => Some((*seq, format!("LEFT {name} {code:?}"))),
        _ => None,
    }
}

fn check(cluster: &Cluster) -> Result<(), TestCaseError> {
    // One order per room: members agree on what each seq is, and each
    // sees its room's events from its own JOINED on, without gaps.
    let mut by_room: BTreeMap<String, BTreeMap<u64, String>> = BTreeMap::new();
    // Once everything has arrived, nobody waits to be let in: each client
    // of a live server was welcomed or told why not.
    for u in cluster.users.iter().flatten() {
        if cluster.servers[u.server].alive {
            prop_assert!(
                u.welcomed.is_some() || u.closed,
                "a client still waits to join"
            );
        }
    }
    for u in cluster.users.iter().flatten() {
        let Some(name) = &u.welcomed else { continue };
        let events: Vec<(u64, String)> = u.seen.iter().filter_map(room_event).collect();
        let first = events.first().cloned();
        prop_assert_eq!(
            first.as_ref().map(|e| e.1.clone()),
            Some(format!("JOINED {name}")),
            "{}'s first room event is its own JOINED",
            name
        );
        for pair in events.windows(2) {
            // A broker restart loses events: numbers then jump, never repeat.
            if cluster.restarts == 0 {
                prop_assert_eq!(
                    pair[1].0,
                    pair[0].0 + 1,
                    "{} saw a gap or a repeat: {:?}",
                    name,
                    events
                );
            } else {
                prop_assert!(pair[1].0 > pair[0].0, "{} saw a repeat: {:?}", name, events);
            }
        }
        let room = by_room.entry(name_key(u.room)).or_default();
        for (seq, what) in events {
            let known = room.entry(seq).or_insert_with(|| what.clone());
            prop_assert_eq!(&*known, &what, "two members saw seq {} differently", seq);
        }
        // Each message at most once; each of its own, if not bounced, once.
        let mut texts: Vec<&str> = u
            .seen
            .iter()
            .filter_map(|e| match e {
                Event::Message { text, .. } | Event::Direct { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        texts.sort_unstable();
        let before = texts.len();
        texts.dedup();
        prop_assert_eq!(before, texts.len(), "{} got a message twice", name);
        if !u.closed && cluster.restarts == 0 {
            let echoed = u
                .said
                .iter()
                .filter(|t| texts.binary_search(&t.as_str()).is_ok())
                .count();
            // Nothing here refuses a message (no budgets, the link never
            // down): every one comes back.
            prop_assert_eq!(echoed, u.said.len(), "{} lost a message", name);
        }
    }
    // Names unique per room, and every hub's view equals the broker's.
    for room in ROOMS {
        let members = cluster.broker.members(&name_key(room));
        let mut keys: Vec<String> = members.iter().map(|m| name_key(m)).collect();
        keys.sort();
        keys.dedup();
        prop_assert_eq!(keys.len(), members.len(), "a name twice in {}", room);
        // A member of a dead server is gone (its name may have been taken
        // since by a live member).
        for crashed in &cluster.crashed {
            let retaken = cluster.users.iter().flatten().any(|u| {
                !u.closed
                    && u.welcomed.as_deref() == Some(crashed.as_str())
                    && name_key(u.room) == name_key(room)
            });
            prop_assert!(
                retaken || !members.iter().any(|m| m.as_str() == crashed),
                "{} outlived its server",
                crashed
            );
        }
        for s in cluster.servers.iter().filter(|s| s.alive) {
            let local = cluster.users.iter().flatten().any(|u| {
                u.server == cluster.servers.iter().position(|x| x.id == s.id).unwrap()
                    && !u.closed
                    && u.welcomed.is_some()
                    && name_key(u.room) == name_key(room)
            });
            if local {
                prop_assert_eq!(
                    s.hub.members(room),
                    members.clone(),
                    "a hub's view of {}",
                    room
                );
            }
        }
        // Every open member's MEMBERS + JOINED/LEFT ends at the broker's.
        for u in cluster.users.iter().flatten() {
            if u.closed || u.welcomed.is_none() || name_key(u.room) != name_key(room) {
                continue;
            }
            let mut view: Vec<Text> = Vec::new();
            for e in &u.seen {
                match e {
                    // At its join, and anew after the broker restarted.
                    Event::Members { names } => view = names.clone(),
                    Event::Joined { name, .. } if !view.contains(name) => view.push(name.clone()),
                    Event::Left { name, .. } => view.retain(|n| n != name),
                    _ => {}
                }
            }
            prop_assert_eq!(&view, &members, "a member's view of {}", room);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn one_order_unique_names_and_exactly_once(actions in actions()) {
        let mut cluster = Cluster::new();
        for action in &actions {
            cluster.act(action);
        }
        cluster.settle();
        check(&cluster)?;
        check_restart_delivery(&cluster)?;
    }

    /// The same with room history: a joiner whose `JOINED` comes before
    /// its answer holds its room's events until the answer, and everything
    /// above still holds; every joiner got the room's last messages.
    #[test]
    fn the_same_with_history_and_every_joiner_gets_it(actions in actions()) {
        let mut cluster = Cluster::with_history(2);
        for action in &actions {
            cluster.act(action);
        }
        cluster.settle();
        check(&cluster)?;
        check_restart_delivery(&cluster)?;
        check_history(&cluster)?;
    }
}

/// The broker's log as it stands (since its last restart), in order.
fn broker_log(cluster: &Cluster) -> Vec<RoomEvent> {
    cluster
        .broker
        .events_after(0)
        .filter_map(|e| match e {
            BusInput::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

/// The `JOINED` of `user` (welcomed as `name`) that it saw first, if that
/// one is in `log`: it joined since the broker last restarted. Matched by
/// room too: each room numbers its own events, so another room can hold a
/// `JOINED` of the same name under the same seq.
fn own_joined_in<'l>(log: &'l [RoomEvent], user: &User, name: &str) -> Option<&'l RoomEvent> {
    let seq = user.seen.iter().find_map(|e| match e {
        Event::Joined { seq, name: n } if n == name => Some(*seq),
        _ => None,
    })?;
    let room_key = name_key(user.room);
    log.iter().find(|e| {
        e.room_key == room_key
            && e.seq == seq
            && matches!(&e.kind, EventKind::Joined { name: n } if n == name)
    })
}

/// A member that was in its room before the broker last restarted, and is
/// still there, got every message of the restarted broker's log for its
/// room: those said before its server had the room anew included.
fn check_restart_delivery(cluster: &Cluster) -> Result<(), TestCaseError> {
    if cluster.restarts == 0 {
        return Ok(());
    }
    let log = broker_log(cluster);
    for u in cluster.users.iter().flatten() {
        let Some(name) = &u.welcomed else {
            continue;
        };
        if u.closed || !cluster.servers[u.server].alive {
            continue;
        }
        // Its first JOINED is in the restarted log: it joined since.
        if own_joined_in(&log, u, name).is_some() {
            continue;
        }
        let seen: Vec<u64> = u
            .seen
            .iter()
            .filter_map(|e| match e {
                Event::Message { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect();
        for e in log.iter().filter(|e| e.room_key == name_key(u.room)) {
            if let EventKind::Message { text, .. } = &e.kind {
                prop_assert!(
                    seen.contains(&e.seq),
                    "{} missed {:?} (seq {}) said after the restart",
                    name,
                    text,
                    e.seq
                );
            }
        }
    }
    Ok(())
}

/// Every member's history is its room's messages from before its `JOINED`
/// (the last two at most, by then), oldest first, with the sender's name.
/// Checked exactly for members whose `JOINED` is in the broker's log (not
/// those from before a restart, whose log is gone).
fn check_history(cluster: &Cluster) -> Result<(), TestCaseError> {
    let log = broker_log(cluster);
    for u in cluster.users.iter().flatten() {
        let Some(name) = &u.welcomed else {
            continue;
        };
        if let Some(own) = own_joined_in(&log, u, name) {
            let before: Vec<String> = log
                .iter()
                .filter(|e| e.room_key == own.room_key && e.seq < own.seq)
                .filter_map(|e| match &e.kind {
                    EventKind::Message { from, text } => Some(format!("{from}: {text}")),
                    _ => None,
                })
                .collect();
            let expected = &before[before.len().saturating_sub(2)..];
            let got: Vec<String> = u
                .seen
                .iter()
                .filter_map(|e| match e {
                    Event::History { from, text, .. } => Some(format!("{from}: {text}")),
                    _ => None,
                })
                .collect();
            prop_assert_eq!(&got[..], expected, "{}'s history", name);
        }
    }
    // Everyone settled: nothing is held for joiners any more.
    for server in cluster.servers.iter().filter(|s| s.alive) {
        prop_assert_eq!(server.hub.history_bytes(), 0);
    }
    for u in cluster.users.iter().flatten() {
        let history: Vec<String> = u
            .seen
            .iter()
            .filter_map(|e| match e {
                Event::History { from, text, .. } => Some(format!("{from}: {text}")),
                _ => None,
            })
            .collect();
        prop_assert!(history.len() <= 2, "{:?}", u.seen);
        if !history.is_empty() {
            // History comes right after the welcome, before MEMBERS.
            let first = u
                .seen
                .iter()
                .position(|e| matches!(e, Event::History { .. }));
            let members = u
                .seen
                .iter()
                .position(|e| matches!(e, Event::Members { .. }));
            prop_assert_eq!(first, Some(1), "{:?}", u.seen);
            prop_assert!(members > first, "{:?}", u.seen);
        }
    }
    Ok(())
}

#[test]
fn a_name_is_refused_on_a_second_server_and_free_after_its_server_is_reaped() {
    let mut cluster = Cluster::new();
    cluster.act(&Action::Join {
        user: 0,
        server: 0,
        name: 0,
        room: 0,
    });
    cluster.settle();
    // "Alice" on another server: a look-alike of alice, refused.
    cluster.act(&Action::Join {
        user: 1,
        server: 1,
        name: 1,
        room: 0,
    });
    cluster.settle();
    let refused = cluster.users[1].as_ref().unwrap();
    assert!(refused.welcomed.is_none() && refused.closed);
    cluster.act(&Action::Join {
        user: 2,
        server: 2,
        name: 2,
        room: 0,
    });
    cluster.settle();
    cluster.act(&Action::Crash { server: 0 });
    cluster.settle();
    let bob = cluster.users[2].as_ref().unwrap();
    assert!(bob.seen.iter().any(|e| matches!(e,
        Event::Left { name, code, .. } if name == "alice" && *code == Code::SERVER_GONE)));
    // The name is free again, on any server.
    cluster.users[1] = None;
    cluster.act(&Action::Join {
        user: 1,
        server: 1,
        name: 1,
        room: 0,
    });
    cluster.settle();
    assert_eq!(
        cluster.servers[1].hub.members("lobby"),
        vec!["bob", "Alice"]
    );
    assert_eq!(
        cluster.servers[2].hub.members("lobby"),
        vec!["bob", "Alice"]
    );
}

#[test]
fn a_late_joiner_on_another_server_gets_the_rooms_last_messages_first() {
    let mut cluster = Cluster::with_history(2);
    cluster.act(&Action::Join {
        user: 0,
        server: 0,
        name: 0,
        room: 0,
    });
    cluster.settle();
    for _ in 0..3 {
        cluster.act(&Action::Say { user: 0 });
        cluster.settle();
    }
    cluster.act(&Action::Join {
        user: 1,
        server: 1,
        name: 2,
        room: 0,
    });
    cluster.settle();
    let said = cluster.users[0].as_ref().unwrap().said.clone();
    let bob = cluster.users[1].as_ref().unwrap();
    let history: Vec<(u64, String, String)> = bob
        .seen
        .iter()
        .filter_map(|e| match e {
            Event::History {
                time_ms,
                from,
                text,
            } => Some((*time_ms, from.to_string(), text.to_string())),
            _ => None,
        })
        .collect();
    let texts: Vec<&str> = history.iter().map(|(_, _, t)| t.as_str()).collect();
    assert_eq!(texts, [said[1].as_str(), said[2].as_str()]);
    assert!(history.iter().all(|(_, from, _)| from == "alice"));
    // Stamped by the broker's clock, in order.
    assert!(history[0].0 >= 1_000_000 && history[0].0 < history[1].0);
    // First, before MEMBERS; and not live messages.
    assert!(
        matches!(
            bob.seen[..],
            [Event::Welcomed { .. }, Event::History { .. }, ..]
        ),
        "{:?}",
        bob.seen
    );
    assert!(!bob.seen.iter().any(|e| matches!(e, Event::Message { .. })));
    // The held history was given back once bob entered.
    assert_eq!(cluster.servers[1].hub.history_bytes(), 0);
}

/// Everything a guest was sent, as text.
fn guest_text(hub: &mut Hub, guest: ClientId) -> String {
    let mut out = Vec::new();
    while let Some(bytes) = hub.poll_transmit(guest) {
        out.extend_from_slice(&bytes);
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn a_guest_on_one_server_talks_with_a_ferry_client_on_another() {
    let mut cluster = Cluster::new();
    cluster.act(&Action::Join {
        user: 0,
        server: 0,
        name: 0,
        room: 0,
    });
    cluster.settle();
    let now = cluster.now;
    let server = &mut cluster.servers[1];
    let guest = server.hub.connect(now);
    // Its first line joins it as guest-1 and is said after the join.
    server.hub.handle_input(guest, now, b"hello from nc\n");
    while let Some(request) = server.hub.poll_bus() {
        server.to_broker.push_back(request);
    }
    cluster.settle();
    let text = guest_text(&mut cluster.servers[1].hub, guest);
    assert!(text.contains("welcome to ferry, guest-1"), "{text}");
    assert!(text.contains("* in the room: alice, guest-1"), "{text}");
    // A guest does not hear itself (its terminal shows what it typed).
    assert!(!text.contains("guest-1: hello from nc"), "{text}");
    let alice = cluster.users[0].as_ref().unwrap();
    assert!(alice.seen.iter().any(|e| matches!(e,
        Event::Message { from, text, .. } if from == "guest-1" && text == "hello from nc")));
    // And back, as a direct message across servers.
    cluster.users[0]
        .as_mut()
        .unwrap()
        .conn
        .direct(now, "guest-1", "hi guest")
        .unwrap();
    cluster.shuttle(0);
    cluster.settle();
    let text = guest_text(&mut cluster.servers[1].hub, guest);
    assert!(text.contains("alice (to you): hi guest"), "{text}");
}

#[test]
fn a_guest_whose_number_is_taken_elsewhere_takes_the_next_and_keeps_its_first_line() {
    let mut cluster = Cluster::new();
    let now = cluster.now;
    let mut guests = Vec::new();
    // guest-1 on both servers at once: one of them is refused by the
    // broker and must come in as another number, its line intact.
    for server in [0, 1] {
        let s = &mut cluster.servers[server];
        let guest = s.hub.connect(now);
        s.hub
            .handle_input(guest, now, format!("first line from {server}\n").as_bytes());
        while let Some(request) = s.hub.poll_bus() {
            s.to_broker.push_back(request);
        }
        guests.push((server, guest));
    }
    cluster.settle();
    let mut members = cluster.broker.members("lobby");
    members.sort();
    assert_eq!(members, vec!["guest-1", "guest-2"]);
    for (server, guest) in guests {
        let text = guest_text(&mut cluster.servers[server].hub, guest);
        assert!(text.contains("welcome to ferry, guest-"), "{text}");
        assert!(!text.contains("not delivered"), "{text}");
        // guest-1 (server 0, first to the broker) hears the line of
        // guest-2, which joined after it.
        if server == 0 {
            assert!(text.contains("guest-2: first line from 1"), "{text}");
        }
    }
    // Both lines are in the room, each after its sender's JOINED.
    let log: Vec<String> = cluster
        .broker
        .events_after(0)
        .map(|e| match e {
            BusInput::Event(e) => format!("{:?}", e.kind),
            _ => String::new(),
        })
        .collect();
    let at = |needle: &str| log.iter().position(|l| l.contains(needle)).unwrap();
    assert!(at("first line from 0") > at("Joined { name: \"guest-1\""));
    assert!(at("first line from 1") > at("Joined { name: \"guest-2\""));
}

#[test]
fn a_message_is_refused_at_once_while_the_broker_is_away_or_behind() {
    let now = Instant::now();
    let config = HubConfig::default()
        .cluster(ServerId(1))
        .max_bus_bytes(1024);
    let mut hub = Hub::new(config, now);
    let mut broker = MemoryBroker::new();
    let id = hub.connect(now);
    let mut alice = Connection::client(ClientConfig::new("alice"), now);
    let exchange = |hub: &mut Hub,
                    alice: &mut Connection,
                    broker: &mut MemoryBroker,
                    answer: bool| {
        let mut bounced = Vec::new();
        let mut told = Vec::new();
        for _ in 0..4 {
            while let Some(bytes) = alice.poll_transmit() {
                hub.handle_input(id, now, &bytes);
            }
            if answer {
                while let Some(request) = hub.poll_bus() {
                    let input = broker.execute(ServerId(1), request, 0);
                    hub.handle_bus(now, input);
                }
                let events: Vec<BusInput> = broker.events_after(0).collect();
                for event in events {
                    hub.handle_bus(now, event);
                }
            }
            while let Some(bytes) = hub.poll_transmit(id) {
                alice.handle_input(now, &bytes);
            }
            while let Some(event) = alice.poll_event() {
                match event {
                    Event::Bounced { code, .. } => bounced.push(code),
                    Event::Direct { from, text } if from.is_empty() => told.push(text.to_string()),
                    _ => {}
                }
            }
        }
        (bounced, told)
    };
    exchange(&mut hub, &mut alice, &mut broker, true);
    assert!(alice.is_open() && hub.members("lobby") == vec!["alice"]);

    hub.handle_bus(
        now,
        BusInput::Down {
            reason: "connection refused".into(),
        },
    );
    alice.say(now, "lost?").unwrap();
    let (bounced, told) = exchange(&mut hub, &mut alice, &mut broker, false);
    assert_eq!(bounced, vec![Code::CLUSTER_UNAVAILABLE]);
    assert!(hub.poll_bus().is_none(), "nothing was sent while down");
    // alice heard of it from the server, once, before she said anything.
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0].contains("cannot reach the rest of the cluster (connection refused)"),
        "{told:?}"
    );

    // A link that comes and goes tells members once per 30 s, and that it
    // is back once.
    hub.handle_bus(now, BusInput::Up);
    let (_, told) = exchange(&mut hub, &mut alice, &mut broker, false);
    assert_eq!(
        told,
        vec!["the cluster is back: messages reach every server again"]
    );
    let flaps = [now + Duration::from_secs(1), now + Duration::from_secs(31)];
    for (k, at) in flaps.into_iter().enumerate() {
        hub.handle_bus(
            at,
            BusInput::Down {
                reason: "again".into(),
            },
        );
        hub.handle_bus(at, BusInput::Up);
        let (_, told) = exchange(&mut hub, &mut alice, &mut broker, false);
        assert_eq!(told.len(), 2 * k, "flap {k}: {told:?}");
    }

    // Back, but the broker does not answer: 1 KiB of requests at most.
    hub.handle_bus(now, BusInput::Up);
    for k in 0..20 {
        alice
            .say(now, &format!("message {k} {}", "x".repeat(40)))
            .unwrap();
    }
    let (bounced, _) = exchange(&mut hub, &mut alice, &mut broker, false);
    assert!(
        hub.bus_pending_bytes() <= 1024,
        "{}",
        hub.bus_pending_bytes()
    );
    assert!(!bounced.is_empty() && bounced.iter().all(|&c| c == Code::CLUSTER_UNAVAILABLE));
    let mut sent = 0;
    while hub.poll_bus().is_some() {
        sent += 1;
    }
    assert_eq!(sent + bounced.len(), 20);
}

#[test]
fn a_server_taken_for_gone_closes_its_members() {
    let mut cluster = Cluster::new();
    cluster.act(&Action::Join {
        user: 0,
        server: 0,
        name: 0,
        room: 0,
    });
    cluster.act(&Action::Join {
        user: 1,
        server: 1,
        name: 2,
        room: 0,
    });
    cluster.settle();
    // Server 0 misses its lease (paused): server 1 reaps it.
    cluster.clock_ms += LEASE_MS + 1;
    for k in [1, 2] {
        let id = cluster.servers[k].id;
        cluster.broker.renew(id, cluster.clock_ms, LEASE_MS);
    }
    let reaped = cluster.broker.reap(cluster.servers[1].id, cluster.clock_ms);
    assert_eq!(reaped, vec![cluster.servers[0].id]);
    // Awake, its link renews, finds it was reaped and says so.
    assert!(!cluster
        .broker
        .renew(cluster.servers[0].id, cluster.clock_ms, LEASE_MS));
    cluster.servers[0].from_broker.push_back(BusInput::Reaped);
    cluster.settle();
    let alice = cluster.users[0].as_ref().unwrap();
    assert!(alice.closed);
    assert!(alice.seen.iter().any(|e| matches!(e,
        Event::Closed { code, .. } if *code == Code::SERVER_GONE)));
    let bob = cluster.users[1].as_ref().unwrap();
    assert!(bob.seen.iter().any(|e| matches!(e,
        Event::Left { name, code, .. } if name == "alice" && *code == Code::SERVER_GONE)));
    assert_eq!(cluster.servers[1].hub.members("lobby"), vec!["bob"]);
    check(&cluster).unwrap();
}
