//! Files and folders between members on two servers of a cluster, and the
//! budgets a source shares across the servers: two hubs over the
//! in-memory broker, their relay frames carried between them as a direct
//! link would (encoded and decoded, in order), with the members' files in
//! memory.

mod sim;

use bytes::Bytes;
use ferry_core::cluster::relay::{self, RelayFrame};
use ferry_core::cluster::{BusInput, MemoryBroker, ServerId};
use ferry_core::frame::{features, HeldFile, TransferId};
use ferry_core::transfer::{Outcome, TransferEvent};
use ferry_core::tree::{Entry, EntryKind, Manifest, Mtime, TreeLimits, TreePath};
use ferry_core::{
    ClientConfig, ClientId, Code, Config, Connection, Event, Hub, HubConfig, HubEvent, ResumeKey,
};
use sim::Disk;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;

const SERVERS: [ServerId; 2] = [ServerId(1), ServerId(2)];

struct Member {
    server: usize,
    client: ClientId,
    conn: Connection,
    /// Its files, and what its program does with them (`sim::Disk`):
    /// `writing` false is a stalled disk, which confirms nothing.
    files: Disk,
    /// Its folders, sent and received.
    folders: Folders,
    events: Vec<Event>,
}

/// A member's folders: the one it sends (its files' bytes by manifest
/// index) and the one it receives (what it holds of each file), written
/// and confirmed at once unless `writing` is false.
#[derive(Default)]
struct Folders {
    sending: BTreeMap<u32, Vec<u8>>,
    outgoing: Option<TransferId>,
    incoming: Option<TransferId>,
    got: BTreeMap<u32, Vec<u8>>,
    /// Payload bytes received since the accept, and confirmed.
    received: u64,
    writing: bool,
    /// The key it issues, and the one it was given by a recipient.
    key: Option<ResumeKey>,
    given: Option<ResumeKey>,
    /// File bytes it supplied (read back to compare included).
    supplied: u64,
}

impl Folders {
    /// What a member's program does with an event of one of its folders;
    /// whether the event was one.
    fn on_transfer(&mut self, conn: &mut Connection, now: Instant, t: &TransferEvent) -> bool {
        let is = |id: &TransferId| Some(*id) == self.incoming || Some(*id) == self.outgoing;
        match t.clone() {
            TransferEvent::TreeOffered { id, .. } => self.incoming = Some(id),
            TransferEvent::TreeManifest { id, manifest } => {
                // What it holds from an earlier attempt, if the sender
                // presented its key: each file's prefix, and its hash.
                let held: Vec<HeldFile> = self
                    .got
                    .iter()
                    .filter(|(_, bytes)| !bytes.is_empty())
                    .map(|(&index, bytes)| HeldFile {
                        index,
                        offset: bytes.len() as u64,
                        prefix_hash: *blake3::hash(bytes).as_bytes(),
                    })
                    .collect();
                assert!(manifest.file_count() > 0);
                let key = *self
                    .key
                    .get_or_insert(ResumeKey::from_bytes([9; ResumeKey::LEN]));
                self.received = 0;
                conn.accept_tree_resumable(now, id, key, &held).unwrap();
            }
            TransferEvent::TreeChunk {
                id,
                index,
                offset,
                data,
            } if is(&id) => {
                let file = self.got.entry(index).or_default();
                file.truncate(offset as usize);
                assert_eq!(
                    file.len() as u64,
                    offset,
                    "file {index} goes on where it was"
                );
                file.extend_from_slice(&data);
                self.received += data.len() as u64;
                if self.writing {
                    conn.confirm_written(now, id, self.received).unwrap();
                }
            }
            TransferEvent::TreeFileDone { index, hash, id } if is(&id) => {
                let file = self.got.entry(index).or_default();
                assert_eq!(*blake3::hash(file).as_bytes(), hash, "file {index}");
            }
            TransferEvent::TreeNeedChunk {
                id,
                index,
                offset,
                len,
            } if is(&id) => {
                let bytes =
                    &self.sending[&index][offset as usize..(offset + u64::from(len)) as usize];
                self.supplied += bytes.len() as u64;
                conn.supply_tree_chunk(now, id, index, offset, Bytes::copy_from_slice(bytes))
                    .unwrap();
            }
            TransferEvent::ResumeKey { id, key } if is(&id) => self.given = Some(key),
            TransferEvent::Received { id, .. } if is(&id) => {
                conn.finish_receive(now, id, Ok(())).unwrap();
            }
            TransferEvent::TreeFileStarted { id, .. } | TransferEvent::TreeFileHeld { id, .. }
                if is(&id) => {}
            TransferEvent::Accepted { id, .. } | TransferEvent::Progress { id, .. } if is(&id) => {}
            TransferEvent::Ended { id, .. } if is(&id) => {
                if Some(id) == self.incoming {
                    self.incoming = None;
                } else {
                    self.outgoing = None;
                }
            }
            _ => return false,
        }
        true
    }
}

struct Cluster {
    now: Instant,
    broker: MemoryBroker,
    hubs: Vec<Hub>,
    read: Vec<usize>,
    /// Frames on their way, per (from, to) link, in order.
    links: HashMap<(usize, usize), VecDeque<Vec<u8>>>,
    members: Vec<Member>,
    /// The most file bytes the links held at once.
    peak_in_flight: usize,
    /// What each hub told its driver.
    hub_events: Vec<Vec<HubEvent>>,
}

impl Cluster {
    fn new(config: impl Fn(HubConfig) -> HubConfig) -> Cluster {
        let now = Instant::now();
        // Each server holds a lease, as a real one does from its start: a
        // broker tells the servers with one of a ban.
        let mut broker = MemoryBroker::new();
        for &id in &SERVERS {
            broker.renew(id, 0, u64::MAX / 2);
        }
        Cluster {
            now,
            broker,
            hubs: SERVERS
                .iter()
                .map(|&id| Hub::new(config(HubConfig::default().cluster(id)), now))
                .collect(),
            read: vec![0; SERVERS.len()],
            links: HashMap::new(),
            members: Vec::new(),
            peak_in_flight: 0,
            hub_events: vec![Vec::new(); SERVERS.len()],
        }
    }

    fn join(&mut self, server: usize, name: &str) -> usize {
        self.join_with(server, name, false)
    }

    /// A member whose client takes folders (and says so), or not.
    fn join_with(&mut self, server: usize, name: &str, takes_trees: bool) -> usize {
        self.join_from(server, name, takes_trees, None)
    }

    /// The same, connected from `ip` (its source) when given.
    fn join_from(
        &mut self,
        server: usize,
        name: &str,
        takes_trees: bool,
        ip: Option<std::net::IpAddr>,
    ) -> usize {
        let mut config = ClientConfig::new(name);
        if takes_trees {
            config.connection = Config::default().trees(Some(TreeLimits::default()));
        }
        let m = self.connect(server, config, ip);
        assert!(self.members[m].conn.is_open(), "{name} joined");
        let now = self.now;
        self.members[m]
            .conn
            .announce_features(now, if takes_trees { features::TREES } else { 0 })
            .unwrap();
        self.run();
        assert!(
            self.members[m]
                .events
                .iter()
                .any(|e| matches!(e, Event::Features { .. })),
            "{name}: FEATURES answered"
        );
        m
    }

    /// A client of `server` with `config`, connected from `ip` when given,
    /// and everything moved until nothing moves; welcomed or not.
    fn connect(
        &mut self,
        server: usize,
        config: ClientConfig,
        ip: Option<std::net::IpAddr>,
    ) -> usize {
        let client = match ip {
            Some(ip) => self.hubs[server].connect_from(self.now, ip),
            None => self.hubs[server].connect(self.now),
        };
        self.members.push(Member {
            server,
            client,
            conn: Connection::client(config, self.now),
            files: Disk::new(self.members.len() as u64),
            folders: Folders {
                writing: true,
                ..Folders::default()
            },
            events: Vec::new(),
        });
        self.run();
        self.members.len() - 1
    }

    /// Time passes: every hub's timers that are due fire.
    fn advance(&mut self, by: std::time::Duration) {
        self.now += by;
        for hub in &mut self.hubs {
            hub.handle_timeout(self.now);
        }
        self.run();
    }

    /// Member `m` offers the folder `name` (`manifest`, its files' bytes
    /// by index) to `to`, resuming with the key it was given, if any.
    fn offer_tree(
        &mut self,
        m: usize,
        name: &str,
        (manifest, files): &(Manifest, BTreeMap<u32, Vec<u8>>),
        to: &str,
    ) {
        let now = self.now;
        let member = &mut self.members[m];
        let id = match member.folders.given {
            Some(key) => member
                .conn
                .offer_tree_resuming(now, name, manifest, to, key)
                .unwrap(),
            None => member.conn.offer_tree(now, name, manifest, to).unwrap(),
        };
        member.folders.outgoing = Some(id);
        member.folders.sending = files.clone();
    }

    fn offer(&mut self, m: usize, name: &str, data: &[u8], to: &str) -> u32 {
        let now = self.now;
        let member = &mut self.members[m];
        let id = match member.files.resume_keys.get(name).copied() {
            Some(key) => member
                .conn
                .offer_file_resuming(now, name, data.len() as u64, to, key)
                .unwrap(),
            None => member
                .conn
                .offer_file(now, name, data.len() as u64, to)
                .unwrap(),
        };
        member
            .files
            .sending
            .insert(id, Bytes::copy_from_slice(data));
        member.files.sending_names.insert(id, name.to_string());
        id
    }

    /// Moves everything until nothing moves.
    fn run(&mut self) {
        for _ in 0..1_000_000 {
            if !self.step() {
                return;
            }
        }
        panic!("the cluster never settled");
    }

    fn step(&mut self) -> bool {
        let now = self.now;
        let mut moved = false;
        for m in &mut self.members {
            let hub = &mut self.hubs[m.server];
            while let Some(bytes) = m.conn.poll_transmit() {
                hub.handle_input(m.client, now, &bytes);
                moved = true;
            }
            while let Some(bytes) = hub.poll_transmit(m.client) {
                m.conn.handle_input(now, &bytes);
                moved = true;
            }
            moved |= member_events(m, now);
        }
        for (k, hub) in self.hubs.iter_mut().enumerate() {
            while let Some(event) = hub.poll_event() {
                moved = true;
                if let Some(client) = event.closed_client() {
                    hub.remove(client, now);
                }
                self.hub_events[k].push(event);
            }
            while let Some(request) = hub.poll_bus() {
                let answer = self.broker.execute(SERVERS[k], request, 0);
                hub.handle_bus(now, answer);
                moved = true;
            }
            for event in self.broker.events_after(self.read[k]).collect::<Vec<_>>() {
                hub.handle_bus(now, event);
                self.read[k] += 1;
                moved = true;
            }
            for direct in self.broker.take_inbox(SERVERS[k]) {
                hub.handle_bus(now, direct);
                moved = true;
            }
            while let Some((to, frame)) = hub.poll_relay() {
                let to = SERVERS.iter().position(|&s| s == to).unwrap();
                self.links
                    .entry((k, to))
                    .or_default()
                    .push_back(relay::encode(&frame));
                moved = true;
            }
        }
        let in_flight: usize = self
            .links
            .values()
            .flatten()
            .filter_map(|bytes| match relay::decode(bytes) {
                Ok(RelayFrame::Data { data, .. }) => Some(data.len()),
                _ => None,
            })
            .sum();
        self.peak_in_flight = self.peak_in_flight.max(in_flight);
        for (&(from, to), frames) in &mut self.links {
            // A few frames a step, so that the links hold some.
            for _ in 0..4 {
                let Some(bytes) = frames.pop_front() else {
                    break;
                };
                let frame = relay::decode(&bytes).expect("a frame the hub made");
                self.hubs[to].handle_bus(
                    now,
                    BusInput::Relay {
                        from: SERVERS[from],
                        frame,
                    },
                );
                moved = true;
            }
        }
        moved
    }

    /// The link between the two servers breaks: what was on it is lost,
    /// and each hub is told.
    fn cut_links(&mut self) {
        self.links.clear();
        for (k, other) in [(0, 1), (1, 0)] {
            self.hubs[k].handle_bus(
                self.now,
                BusInput::PeerLost {
                    server: SERVERS[other],
                    reason: "connection reset".into(),
                },
            );
        }
    }

    fn ended(&self, m: usize) -> Vec<Outcome> {
        self.members[m]
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Transfer(TransferEvent::Ended { outcome, .. }) => Some(outcome.clone()),
                _ => None,
            })
            .collect()
    }

    /// The offsets member `m`'s offers were accepted at, in order.
    fn accepted_at(&self, m: usize) -> Vec<u64> {
        self.members[m]
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Transfer(TransferEvent::Accepted { offset, .. }) => Some(*offset),
                _ => None,
            })
            .collect()
    }

    fn offers_seen(&self, m: usize) -> Vec<(String, u64, String)> {
        self.members[m]
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Transfer(TransferEvent::Offered {
                    name, size, peer, ..
                }) => Some((name.to_string(), *size, peer.to_string())),
                _ => None,
            })
            .collect()
    }
}

/// What a member's program does with its connection's events
/// (`sim::Disk::on_transfer`: accepts every offer, resuming what it holds
/// under the key presented; writes what arrives and confirms it unless
/// stalled; supplies what it sends).
fn member_events(m: &mut Member, now: Instant) -> bool {
    let mut moved = false;
    while let Some(event) = m.conn.poll_event() {
        moved = true;
        if let Event::Transfer(t) = &event {
            if !m.folders.on_transfer(&mut m.conn, now, t) {
                m.files.on_transfer(&mut m.conn, now, t);
            }
        }
        m.events.push(event);
    }
    moved | m.files.confirm_writes(&mut m.conn, now)
}

fn file(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn window() -> usize {
    ferry_core::Config::default().window as usize
}

#[test]
fn a_file_goes_to_a_member_of_another_server_verified_within_one_window_per_hop() {
    let mut cluster = Cluster::new(|c| c);
    let alice = cluster.join(0, "alice");
    let bob = cluster.join(1, "bob");
    let data = file(3 * window() + 12_345);
    cluster.offer(alice, "photo.jpg", &data, "Bob");
    cluster.run();
    assert_eq!(cluster.ended(alice), vec![Outcome::Verified]);
    assert_eq!(cluster.ended(bob), vec![Outcome::Verified]);
    assert_eq!(
        cluster.offers_seen(bob),
        vec![("photo.jpg".into(), data.len() as u64, "alice".into())]
    );
    assert!(cluster.members[bob].files.stored["photo.jpg"] == data);
    assert!(
        cluster.peak_in_flight <= window(),
        "the link held {} bytes of file at once, over the window",
        cluster.peak_in_flight
    );
    assert!(cluster.peak_in_flight > 0);
    for hub in &cluster.hubs {
        assert_eq!(hub.remote_relay_count(), 0);
        assert_eq!(hub.relay_count(), 0);
    }
    // Each server says it relayed, and how it ended, for its own member.
    let relays = |k: usize| -> Vec<String> {
        cluster.hub_events[k]
            .iter()
            .filter_map(|e| match e {
                HubEvent::RemoteRelayStarted {
                    sending,
                    other,
                    server,
                    name,
                    size,
                    ..
                } => Some(format!("start {sending} {other} {server} {name} {size}")),
                HubEvent::RemoteRelayEnded {
                    sending,
                    other,
                    server,
                    outcome,
                    ..
                } => Some(format!("end {sending} {other} {server} {outcome:?}")),
                _ => None,
            })
            .collect()
    };
    let size = data.len();
    assert_eq!(
        relays(0),
        [
            format!("start true Bob {} photo.jpg {size}", SERVERS[1]),
            format!("end true Bob {} Verified", SERVERS[1]),
        ]
    );
    assert_eq!(
        relays(1),
        [
            format!("start false alice {} photo.jpg {size}", SERVERS[0]),
            format!("end false alice {} Verified", SERVERS[0]),
        ]
    );
}

#[test]
fn a_recipient_that_writes_slowly_holds_the_sender_to_the_window() {
    let mut cluster = Cluster::new(|c| c);
    let alice = cluster.join(0, "alice");
    let bob = cluster.join(1, "bob");
    cluster.members[bob].files.writing = false;
    let data = file(4 * window());
    cluster.offer(alice, "big.bin", &data, "bob");
    cluster.run();
    // Nothing confirmed: the sender sent one window and waits.
    let got = cluster.members[bob].files.partial["big.bin"].len();
    assert_eq!(got, window(), "bob holds exactly one window");
    assert!(cluster.ended(alice).is_empty());
    cluster.members[bob].files.writing = true;
    cluster.run();
    assert_eq!(cluster.ended(alice), vec![Outcome::Verified]);
    assert!(cluster.members[bob].files.stored["big.bin"] == data);
}

#[test]
fn a_sender_cut_off_resumes_where_the_recipient_stopped() {
    let mut cluster = Cluster::new(|c| c);
    let alice = cluster.join(0, "alice");
    let bob = cluster.join(1, "bob");
    cluster.members[bob].files.writing = false;
    let data = file(3 * window());
    cluster.offer(alice, "notes.txt", &data, "bob");
    cluster.run();
    // Bob wrote one window; alice's connection is lost.
    cluster.members[bob].files.writing = true;
    while let Some((id, upto)) = cluster.members[bob].files.unconfirmed.pop_front() {
        let now = cluster.now;
        cluster.members[bob]
            .conn
            .confirm_written(now, id, upto)
            .unwrap();
    }
    let key = *cluster.members[alice]
        .files
        .resume_keys
        .get("notes.txt")
        .expect("alice got bob's key with his accept");
    let (server, client) = (cluster.members[alice].server, cluster.members[alice].client);
    let now = cluster.now;
    cluster.hubs[server].remove(client, now);
    cluster.run();
    let ended = cluster.ended(bob);
    assert!(
        matches!(&ended[..], [Outcome::Cancelled { code, reason, .. }]
            if *code == Code::PEER_GONE && reason.contains("alice")),
        "bob is told alice went: {ended:?}"
    );
    let held = cluster.members[bob].files.partial["notes.txt"].len();
    assert!(held >= window(), "bob kept what he wrote: {held}");
    for hub in &cluster.hubs {
        assert_eq!(hub.remote_relay_count(), 0);
    }
    // Alice comes back and offers again with bob's key.
    let again = cluster.join(0, "alice");
    cluster.members[again]
        .files
        .resume_keys
        .insert("notes.txt".into(), key);
    cluster.offer(again, "notes.txt", &data, "bob");
    cluster.run();
    assert_eq!(cluster.ended(again), vec![Outcome::Verified]);
    assert!(cluster.members[bob].files.stored["notes.txt"] == data);
    assert_eq!(
        cluster.accepted_at(again),
        vec![held as u64],
        "resumed where bob stopped"
    );
}

#[test]
fn a_lost_link_between_the_servers_ends_the_relay_on_both_sides() {
    let mut cluster = Cluster::new(|c| c);
    let alice = cluster.join(0, "alice");
    let bob = cluster.join(1, "bob");
    cluster.members[bob].files.writing = false;
    cluster.offer(alice, "a.bin", &file(2 * window()), "bob");
    cluster.run();
    cluster.cut_links();
    cluster.run();
    for m in [alice, bob] {
        let ended = cluster.ended(m);
        assert!(
            matches!(&ended[..], [Outcome::Cancelled { code, reason, .. }]
                if *code == Code::PEER_GONE && reason.contains("connection reset")),
            "{ended:?}"
        );
    }
    for hub in &cluster.hubs {
        assert_eq!(hub.remote_relay_count(), 0);
    }
    // The window each reserved is free again: a new file goes.
    cluster.members[bob].files.writing = true;
    let data = file(1000);
    cluster.offer(alice, "b.bin", &data, "bob");
    cluster.run();
    assert!(cluster.members[bob].files.stored["b.bin"] == data);
}

#[test]
fn an_offer_another_server_cannot_take_is_refused_with_its_reason() {
    // Bob's server takes files of at most 1000 bytes; alice's takes more.
    let mut cluster = Cluster::new(|c| c);
    let alice = cluster.join(0, "alice");
    cluster.hubs[1] = Hub::new(
        HubConfig::default().cluster(SERVERS[1]).max_file_size(1000),
        cluster.now,
    );
    let bob = cluster.join(1, "bob");
    cluster.offer(alice, "big.bin", &file(5000), "bob");
    cluster.run();
    let ended = cluster.ended(alice);
    assert!(
        matches!(&ended[..], [Outcome::Rejected { code, reason }]
            if *code == Code::FILE_TOO_LARGE && reason.contains("recipient's server")),
        "{ended:?}"
    );
    assert!(cluster.offers_seen(bob).is_empty());
    // A name nobody holds is refused by this server as before.
    cluster.offer(alice, "x", b"x", "carol");
    cluster.run();
    assert!(matches!(
        cluster.ended(alice).last(),
        Some(Outcome::Rejected { code, .. }) if *code == Code::NO_SUCH_USER
    ));
    for hub in &cluster.hubs {
        assert_eq!(hub.remote_relay_count(), 0);
    }
}

#[test]
fn a_recipient_cut_off_resumes_from_its_new_connection() {
    let mut cluster = Cluster::new(|c| c);
    let alice = cluster.join(0, "alice");
    let bob = cluster.join(1, "bob");
    cluster.members[bob].files.writing = false;
    let data = file(3 * window());
    cluster.offer(alice, "song.flac", &data, "bob");
    cluster.run();
    // Bob wrote one window and confirmed it, got a second (unconfirmed),
    // then his connection is lost.
    let now = cluster.now;
    while let Some((id, upto)) = cluster.members[bob].files.unconfirmed.pop_front() {
        cluster.members[bob]
            .conn
            .confirm_written(now, id, upto)
            .unwrap();
    }
    cluster.run();
    let held = cluster.members[bob].files.partial["song.flac"].len();
    assert_eq!(held, 2 * window());
    let (server, client) = (cluster.members[bob].server, cluster.members[bob].client);
    cluster.hubs[server].remove(client, now);
    cluster.run();
    let ended = cluster.ended(alice);
    assert!(
        matches!(&ended[..], [Outcome::Cancelled { code, reason, .. }]
            if *code == Code::PEER_GONE && reason.contains("bob")),
        "alice is told bob went: {ended:?}"
    );
    for hub in &cluster.hubs {
        assert_eq!(hub.remote_relay_count(), 0);
    }
    // Bob is back (on his server, with what his disk kept); alice offers
    // again with his key.
    let again = cluster.join(1, "bob");
    cluster.members[again].files = std::mem::take(&mut cluster.members[bob].files);
    cluster.members[again].files.incoming.clear();
    cluster.offer(alice, "song.flac", &data, "bob");
    cluster.run();
    assert_eq!(cluster.ended(alice).last(), Some(&Outcome::Verified));
    assert!(cluster.members[again].files.stored["song.flac"] == data);
    assert_eq!(
        cluster.accepted_at(alice),
        vec![0, held as u64],
        "resumed where bob stopped"
    );
}

fn trees(mut config: HubConfig) -> HubConfig {
    config.connection = config.connection.trees(Some(TreeLimits::default()));
    config
}

fn entry(path: &str, kind: EntryKind) -> Entry {
    Entry {
        path: TreePath::new(path, &TreeLimits::default()).unwrap(),
        kind,
        mtime: Mtime::new(1_700_000_000, 0).unwrap(),
    }
}

/// A folder: a subfolder, an empty file, a file of several windows, then
/// `small` files of a few bytes named with `pad` so that the manifest can
/// be made long. Its manifest, and its files' bytes by index.
fn folder(small: usize, pad: usize) -> (Manifest, BTreeMap<u32, Vec<u8>>) {
    let file_kind = |size: usize| EntryKind::File {
        size: size as u64,
        executable: false,
    };
    let mut entries = vec![
        entry("docs", EntryKind::Folder),
        entry("docs/zero", file_kind(0)),
    ];
    let mut files = BTreeMap::new();
    files.insert(1, Vec::new());
    let big = file(3 * window() + 12_345);
    files.insert(2, big.clone());
    entries.push(entry("docs/big.bin", file_kind(big.len())));
    let padding = "p".repeat(pad);
    for n in 0..small {
        let bytes = format!("note {n}\n").into_bytes();
        files.insert(entries.len() as u32, bytes.clone());
        entries.push(entry(
            &format!("n{n:05}{padding}.txt"),
            file_kind(bytes.len()),
        ));
    }
    let manifest = Manifest::new(Mtime::EPOCH, entries, &TreeLimits::default()).unwrap();
    (manifest, files)
}

/// Every hub forgot its relays and gave back what they reserved.
fn assert_all_released(cluster: &Cluster) {
    for hub in &cluster.hubs {
        assert_eq!(hub.remote_relay_count(), 0);
        assert_eq!(hub.relay_count(), 0);
        assert_eq!(hub.manifest_bytes_reserved(), 0);
    }
}

#[test]
fn a_folder_goes_to_a_member_of_another_server_verified_within_one_window_per_hop() {
    let mut cluster = Cluster::new(trees);
    let alice = cluster.join_with(0, "alice", true);
    let bob = cluster.join_with(1, "bob", true);
    let sent = folder(50, 0);
    cluster.offer_tree(alice, "docs", &sent, "Bob");
    cluster.run();
    assert_eq!(cluster.ended(alice), vec![Outcome::Verified]);
    assert_eq!(cluster.ended(bob), vec![Outcome::Verified]);
    assert_eq!(
        cluster.members[bob].folders.got, sent.1,
        "every file, whole"
    );
    assert!(
        cluster.peak_in_flight <= window() && cluster.peak_in_flight > 0,
        "the link held {} bytes of file at once",
        cluster.peak_in_flight
    );
    assert_all_released(&cluster);
    let started = |k: usize| {
        cluster.hub_events[k].iter().find_map(|e| match e {
            HubEvent::RemoteRelayStarted { name, size, .. } => Some((name.to_string(), *size)),
            _ => None,
        })
    };
    let total = sent.0.total_size();
    assert_eq!(started(0), Some(("docs/".to_string(), total)));
    assert_eq!(started(1), Some(("docs/".to_string(), total)));
}

#[test]
fn a_folder_whose_manifest_takes_several_frames_arrives_whole() {
    let mut cluster = Cluster::new(trees);
    let alice = cluster.join_with(0, "alice", true);
    let bob = cluster.join_with(1, "bob", true);
    // 12,000 entries of about 130 bytes: a manifest of 1.5 MB, two parts.
    let sent = folder(12_000, 100);
    assert!(sent.0.encode().len() > 1 << 20);
    cluster.offer_tree(alice, "many", &sent, "bob");
    cluster.run();
    assert_eq!(cluster.ended(alice), vec![Outcome::Verified]);
    assert_eq!(cluster.members[bob].folders.got, sent.1);
    assert_all_released(&cluster);
}

#[test]
fn a_folder_cut_off_resumes_with_what_the_recipient_holds() {
    let mut cluster = Cluster::new(trees);
    let alice = cluster.join_with(0, "alice", true);
    let bob = cluster.join_with(1, "bob", true);
    cluster.members[bob].folders.writing = false;
    let sent = folder(50, 0);
    cluster.offer_tree(alice, "docs", &sent, "bob");
    cluster.run();
    // Nothing confirmed: one window arrived, and alice's connection is lost.
    let held: usize = cluster.members[bob]
        .folders
        .got
        .values()
        .map(Vec::len)
        .sum();
    assert_eq!(held, window(), "bob holds one window");
    let key = cluster.members[alice]
        .folders
        .given
        .expect("alice got bob's key with his accept");
    let (server, client) = (cluster.members[alice].server, cluster.members[alice].client);
    let now = cluster.now;
    cluster.hubs[server].remove(client, now);
    cluster.run();
    assert!(
        matches!(&cluster.ended(bob)[..], [Outcome::Cancelled { code, reason, .. }]
            if *code == Code::PEER_GONE && reason.contains("alice")),
        "bob is told alice went: {:?}",
        cluster.ended(bob)
    );
    assert_all_released(&cluster);
    // Alice is back and offers the same folder with bob's key: bob lists
    // what he holds, and only the rest crosses.
    cluster.members[bob].folders.writing = true;
    let again = cluster.join_with(0, "alice", true);
    cluster.members[again].folders.given = Some(key);
    cluster.offer_tree(again, "docs", &sent, "bob");
    cluster.run();
    assert_eq!(cluster.ended(again), vec![Outcome::Verified]);
    assert_eq!(cluster.members[bob].folders.got, sent.1);
    let total = sent.0.total_size();
    assert_eq!(
        cluster.members[bob].folders.received,
        total - held as u64,
        "only what bob lacked crossed the second time"
    );
    assert_all_released(&cluster);
}

#[test]
fn a_folder_another_server_or_member_cannot_take_is_refused_with_its_reason() {
    // Bob's server takes folders of at most 1,000 bytes.
    let mut cluster = Cluster::new(trees);
    let mut small = TreeLimits::default();
    small.max_total_bytes = 1000;
    let mut config = HubConfig::default().cluster(SERVERS[1]);
    config.connection = config.connection.trees(Some(small));
    cluster.hubs[1] = Hub::new(config, cluster.now);
    let alice = cluster.join_with(0, "alice", true);
    let bob = cluster.join_with(1, "bob", false);
    cluster.join_with(1, "carol", true);
    cluster.offer_tree(alice, "docs", &folder(3, 0), "bob");
    cluster.run();
    assert!(
        matches!(&cluster.ended(alice)[..], [Outcome::Rejected { code, reason }]
            if *code == Code::FILE_REJECTED && reason.contains("does not take folders")),
        "{:?}",
        cluster.ended(alice)
    );
    assert!(cluster.ended(bob).is_empty());
    cluster.offer_tree(alice, "docs", &folder(3, 0), "carol");
    cluster.run();
    assert!(
        matches!(cluster.ended(alice).last(), Some(Outcome::Rejected { code, reason })
            if *code == Code::FILE_TOO_LARGE && reason.contains("recipient's server")),
        "{:?}",
        cluster.ended(alice)
    );
    assert_all_released(&cluster);
}

#[test]
fn a_lost_link_while_a_manifest_arrives_gives_back_what_it_reserved() {
    let mut cluster = Cluster::new(trees);
    let alice = cluster.join_with(0, "alice", true);
    cluster.join_with(1, "bob", true);
    cluster.offer_tree(alice, "many", &folder(12_000, 100), "bob");
    // Until bob's server holds part of the manifest.
    let mut steps = 0;
    while cluster.hubs[1].manifest_bytes_reserved() == 0 {
        assert!(cluster.step(), "the manifest never reached bob's server");
        steps += 1;
        assert!(steps < 10_000);
    }
    assert_eq!(cluster.hubs[1].remote_relay_count(), 1);
    cluster.cut_links();
    cluster.run();
    assert!(
        matches!(&cluster.ended(alice)[..], [Outcome::Cancelled { code, .. }] if *code == Code::PEER_GONE),
        "{:?}",
        cluster.ended(alice)
    );
    assert_all_released(&cluster);
}

#[test]
fn a_source_spread_over_two_servers_shares_one_folder_budget() {
    let sent = folder(50, 0);
    let limits = TreeLimits::default();
    let entries = ferry_core::tree::entries_bound(sent.0.encode().len(), &limits) as u32;
    // Room for one such folder and a half, refilled too slowly to matter.
    let mut cluster = Cluster::new(|config| {
        let mut config = trees(config);
        config.source_tree_entries_burst = entries * 3 / 2;
        config.source_tree_entries_per_second = 1;
        config
    });
    let ip = |last: u8| Some(std::net::IpAddr::from([10, 0, 0, last]));
    let alice = cluster.join_from(0, "alice", true, ip(1));
    cluster.join_from(0, "bob", true, ip(2));
    let dave = cluster.join_from(1, "dave", true, ip(1));
    let carol = cluster.join_from(1, "carol", true, ip(3));
    let erin = cluster.join_from(1, "erin", true, ip(4));
    cluster.offer_tree(alice, "docs", &sent, "bob");
    cluster.run();
    assert_eq!(cluster.ended(alice), vec![Outcome::Verified]);
    // The same address on the other server: its own server's budget is
    // full, the cluster's is not.
    cluster.offer_tree(dave, "docs", &sent, "carol");
    cluster.run();
    assert!(
        matches!(&cluster.ended(dave)[..], [Outcome::Rejected { code, reason }]
            if *code == Code::FLOODING && reason.contains("cluster's folder budget")),
        "{:?}",
        cluster.ended(dave)
    );
    assert!(cluster.members[carol].folders.got.is_empty());
    // Another address on that server is not held to it.
    cluster.offer_tree(erin, "docs", &sent, "carol");
    cluster.run();
    assert_eq!(cluster.ended(erin), vec![Outcome::Verified]);
    assert_eq!(cluster.members[carol].folders.got, sent.1);
    assert_all_released(&cluster);
}

/// Wrong tokens from one address on two servers count toward one ban: with
/// 4 allowed, 2 on each server ban it on both, where each server alone
/// would have let it guess on.
#[test]
fn a_source_guessing_tokens_on_two_servers_is_banned_once_for_both() {
    let mut cluster = Cluster::new(|mut config| {
        config.token = Some(b"sesame".to_vec());
        config.auth_failures_before_ban = 4;
        config
    });
    let guesser = Some(std::net::IpAddr::from([10, 0, 0, 9]));
    let mut refusals = Vec::new();
    for server in [0, 1, 0, 1] {
        let m = cluster.connect(server, ClientConfig::new("mallory").token("guess"), guesser);
        // Each wrong token is answered late.
        cluster.advance(std::time::Duration::from_secs(5));
        refusals.push(cluster.members[m].events.iter().find_map(|e| match e {
            Event::Closed { code, reason, .. } => Some((*code, reason.clone())),
            _ => None,
        }));
    }
    assert!(
        refusals
            .iter()
            .all(|r| matches!(r, Some((code, _)) if *code == Code::AUTH_FAILED)),
        "{refusals:?}"
    );
    let banned = |cluster: &Cluster, k: usize| {
        cluster.hub_events[k]
            .iter()
            .filter(|e| matches!(e, HubEvent::SourceBanned { .. }))
            .count()
    };
    assert_eq!(
        banned(&cluster, 1),
        1,
        "the fourth guess, on server 1, banned it"
    );
    // Server 0 heard of the ban from the broker, without another guess
    // there: the right token is turned away on both.
    assert_eq!(banned(&cluster, 0), 1, "server 0 heard of the ban");
    let right = ClientConfig::new("mallory").token("sesame");
    for server in [1, 0] {
        let m = cluster.connect(server, right.clone(), guesser);
        assert!(
            !cluster.members[m].conn.is_open(),
            "banned on server {server}"
        );
    }
    // A wrong token on server 0 meanwhile is answered with the ban, not
    // counted toward another.
    let m = cluster.connect(0, ClientConfig::new("mallory").token("guess"), guesser);
    cluster.advance(std::time::Duration::from_secs(5));
    assert!(!cluster.members[m].conn.is_open());
    assert_eq!(banned(&cluster, 0), 1, "one ban, logged once");
    // Another address is not held to it.
    let other = Some(std::net::IpAddr::from([10, 0, 0, 10]));
    let m = cluster.connect(0, ClientConfig::new("trent").token("sesame"), other);
    assert!(cluster.members[m].conn.is_open());
}
