//! An in-memory network for ferry-core: one hub, any number of clients, a
//! virtual clock, and links that can split, delay, corrupt or cut the byte
//! stream (quinn's `Pair`, for a hub and its clients).
#![allow(dead_code)]

use bytes::Bytes;
use ferry_core::transfer::{Outcome, TransferEvent};
use ferry_core::{
    ClientConfig, ClientId, Code, Connection, Event, Hub, HubConfig, HubEvent, ResumeKey,
};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How a link cuts the byte stream into reads.
#[derive(Debug, Clone, Copy)]
pub enum Split {
    /// Every segment as it was written.
    Whole,
    /// One byte per read.
    OneByte,
    /// Reads of random sizes (1..=max) from a seeded generator.
    Random { seed: u64, max: usize },
}

/// A deterministic xorshift generator: file contents and random splits.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Deterministic file contents.
pub fn file_bytes(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(size);
    out
}

/// One direction of a simulated TCP stream.
#[derive(Debug)]
pub struct Link {
    queue: VecDeque<u8>,
    split: Split,
    rng: Rng,
    /// Bytes that passed so far (stream position).
    pub passed: u64,
    /// Flip the byte at this stream position.
    pub corrupt_at: Option<u64>,
    /// The receiver reads nothing while false.
    pub reading: bool,
    /// The sender stops writing when this many bytes are in flight.
    pub capacity: usize,
}

impl Link {
    fn new(split: Split) -> Link {
        let seed = match split {
            Split::Random { seed, .. } => seed,
            _ => 1,
        };
        Link {
            queue: VecDeque::new(),
            split,
            rng: Rng::new(seed),
            passed: 0,
            corrupt_at: None,
            reading: true,
            capacity: 256 * 1024,
        }
    }

    fn has_room(&self) -> bool {
        self.queue.len() < self.capacity
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            let b = if self.corrupt_at == Some(self.passed) {
                b ^ 0x01
            } else {
                b
            };
            self.passed += 1;
            self.queue.push_back(b);
        }
    }

    /// The next read, or `None` when there is nothing to read (or the
    /// receiver is not reading).
    fn read(&mut self) -> Option<Vec<u8>> {
        if !self.reading || self.queue.is_empty() {
            return None;
        }
        let n = match self.split {
            Split::Whole => self.queue.len(),
            Split::OneByte => 1,
            Split::Random { max, .. } => 1 + self.rng.below(max),
        }
        .min(self.queue.len());
        Some(self.queue.drain(..n).collect())
    }
}

/// What a peer does with incoming file offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferPolicy {
    Accept,
    Reject,
    /// Leave offers unanswered.
    Ignore,
}

/// Files on one side: sources by transfer id, and received ones by name.
#[derive(Debug, Default)]
pub struct Disk {
    /// Files being sent, by transfer id.
    pub sending: HashMap<u32, Bytes>,
    /// Names of files being sent, by transfer id.
    pub sending_names: HashMap<u32, String>,
    /// Sender: the keys receivers issued to resume our files, by name (what
    /// a client keeps on disk between runs).
    pub resume_keys: HashMap<String, ResumeKey>,
    /// Partial files (`NAME.part`), by name.
    pub partial: HashMap<String, Vec<u8>>,
    /// Receiver: the key each partial file is kept under, by name.
    pub keys_issued: HashMap<String, ResumeKey>,
    /// Where issued keys come from (a real receiver uses a secure source).
    key_source: Option<Rng>,
    /// Names of incoming transfers, by transfer id.
    pub incoming: HashMap<u32, String>,
    /// Stored files, by name.
    pub stored: HashMap<String, Vec<u8>>,
    /// Chunks received and not yet confirmed (a slow disk holds them).
    pub unconfirmed: VecDeque<(u32, u64)>,
    /// Confirm writes only while true.
    pub writing: bool,
    pub policy: Option<OfferPolicy>,
}

impl Disk {
    pub fn new(seed: u64) -> Disk {
        Disk {
            writing: true,
            policy: Some(OfferPolicy::Accept),
            key_source: Some(Rng::new(seed ^ 0x6b65_7973)),
            ..Disk::default()
        }
    }

    fn new_key(&mut self) -> ResumeKey {
        let rng = self.key_source.get_or_insert_with(|| Rng::new(1));
        let mut bytes = [0; ResumeKey::LEN];
        bytes[..8].copy_from_slice(&rng.next().to_le_bytes());
        bytes[8..].copy_from_slice(&rng.next().to_le_bytes());
        ResumeKey::from_bytes(bytes)
    }

    /// What a client program does with a transfer event of its
    /// connection `conn`: answers offers as [`policy`](Self::policy) says
    /// (resuming what it holds under the key presented), supplies what it
    /// sends, writes what arrives (confirmed by
    /// [`confirm_writes`](Self::confirm_writes)), stores what is verified.
    pub fn on_transfer(&mut self, conn: &mut Connection, now: Instant, t: &TransferEvent) {
        self.sender_event(t);
        match t.clone() {
            TransferEvent::Offered {
                id,
                name,
                size,
                resume,
                ..
            } => match self.policy {
                Some(OfferPolicy::Accept) => {
                    let (from, key) = self.answer_offer(id, &name, size, resume);
                    conn.accept_resumable(now, id, from, key).unwrap();
                }
                Some(OfferPolicy::Reject) => conn
                    .reject(now, id, Code::FILE_REJECTED, "no thanks")
                    .unwrap(),
                _ => {}
            },
            TransferEvent::NeedChunk { id, offset, len } => {
                let chunk = self.chunk(id, offset, len);
                conn.supply_chunk(now, id, offset, chunk).unwrap();
            }
            TransferEvent::Restarted { id } => {
                let name = self.incoming[&id].clone();
                self.partial.insert(name, Vec::new());
            }
            TransferEvent::Chunk { id, offset, data } => {
                self.write(id, offset, &data);
                self.unconfirmed.push_back((id, offset + data.len() as u64));
            }
            TransferEvent::Received { id, .. } => {
                let name = self.incoming[&id].clone();
                let file = self.partial.remove(&name).unwrap_or_default();
                self.keys_issued.remove(&name);
                self.stored.insert(name, file);
                conn.finish_receive(now, id, Ok(())).unwrap();
            }
            TransferEvent::Ended { id, outcome } => {
                if matches!(outcome, Outcome::Failed { .. }) {
                    self.forget_partial(id);
                }
                self.sending.remove(&id);
            }
            _ => {}
        }
    }

    /// Confirms what was written, unless the disk is stalled
    /// ([`writing`](Self::writing) false); whether it confirmed anything.
    pub fn confirm_writes(&mut self, conn: &mut Connection, now: Instant) -> bool {
        let mut any = false;
        if self.writing {
            while let Some((id, upto)) = self.unconfirmed.pop_front() {
                // The transfer may have ended meanwhile.
                let _ = conn.confirm_written(now, id, upto);
                any = true;
            }
        }
        any
    }

    /// How a receiver answers an offer: it resumes the partial file only
    /// for the key it issued for it; any other offer is a new upload, which
    /// starts empty under a new key.
    pub fn answer_offer(
        &mut self,
        id: u32,
        name: &str,
        size: u64,
        resume: Option<ResumeKey>,
    ) -> (u64, ResumeKey) {
        self.incoming.insert(id, name.to_string());
        let have = self.partial.get(name).map_or(0, |f| f.len() as u64);
        match (resume, self.keys_issued.get(name)) {
            (Some(presented), Some(&kept)) if presented == kept && have <= size => (have, kept),
            _ => {
                self.partial.insert(name.to_string(), Vec::new());
                let key = self.new_key();
                self.keys_issued.insert(name.to_string(), key);
                (0, key)
            }
        }
    }

    /// The partial file of incoming transfer `id` is gone for good (stored,
    /// or its contents proved wrong): so is its key.
    fn forget_partial(&mut self, id: u32) {
        if let Some(name) = self.incoming.get(&id) {
            self.partial.remove(name);
            self.keys_issued.remove(name);
        }
    }

    /// A sender's bookkeeping of resume keys.
    fn sender_event(&mut self, event: &TransferEvent) {
        match event {
            TransferEvent::ResumeKey { id, key } => {
                if let Some(name) = self.sending_names.get(id) {
                    self.resume_keys.insert(name.clone(), *key);
                }
            }
            TransferEvent::Ended { id, outcome } => {
                // Kept only while the transfer may still be resumed.
                if !matches!(outcome, Outcome::Cancelled { .. }) {
                    if let Some(name) = self.sending_names.get(id) {
                        self.resume_keys.remove(name);
                    }
                }
                self.sending_names.remove(id);
            }
            _ => {}
        }
    }

    fn chunk(&self, id: u32, offset: u64, len: u32) -> Bytes {
        let range = offset as usize..(offset + u64::from(len)) as usize;
        match self.sending.get(&id) {
            Some(file) => file.slice(range),
            None => {
                let name = &self.incoming[&id];
                Bytes::copy_from_slice(&self.partial[name][range])
            }
        }
    }

    fn write(&mut self, id: u32, offset: u64, data: &[u8]) {
        let name = self.incoming[&id].clone();
        let part = self.partial.entry(name).or_default();
        let offset = offset as usize;
        if part.len() < offset + data.len() {
            part.resize(offset + data.len(), 0);
        }
        part[offset..offset + data.len()].copy_from_slice(data);
    }
}

pub struct Peer {
    pub conn: Connection,
    pub client: ClientId,
    pub events: Vec<Event>,
    pub disk: Disk,
    /// Client → hub.
    pub up: Link,
    /// Hub → client.
    pub down: Link,
    /// The link is cut: nothing moves either way.
    pub cut: bool,
}

impl Peer {
    /// Room messages seen, as `(seq, from, text)`.
    pub fn messages(&self) -> Vec<(u64, String, String)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Message { seq, from, text } => {
                    Some((*seq, from.to_string(), text.to_string()))
                }
                _ => None,
            })
            .collect()
    }

    /// Every transfer that ended, with its outcome.
    pub fn ended(&self) -> Vec<(u32, Outcome)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Transfer(TransferEvent::Ended { id, outcome }) => {
                    Some((*id, outcome.clone()))
                }
                _ => None,
            })
            .collect()
    }

    pub fn closed(&self) -> Option<(Code, bool)> {
        self.events.iter().find_map(|e| match e {
            Event::Closed { code, by_peer, .. } => Some((*code, *by_peer)),
            _ => None,
        })
    }

    pub fn offers(&self) -> Vec<(u32, String, u64, String)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Transfer(TransferEvent::Offered {
                    id,
                    name,
                    size,
                    peer,
                    ..
                }) => Some((*id, name.to_string(), *size, peer.to_string())),
                _ => None,
            })
            .collect()
    }

    /// The key each offer presented, in order.
    pub fn offered_keys(&self) -> Vec<Option<ResumeKey>> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Transfer(TransferEvent::Offered { resume, .. }) => Some(*resume),
                _ => None,
            })
            .collect()
    }

    /// The offsets our offers were accepted at, in order.
    pub fn accepted_at(&self) -> Vec<u64> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Transfer(TransferEvent::Accepted { offset, .. }) => Some(*offset),
                _ => None,
            })
            .collect()
    }
}

pub struct Net {
    pub now: Instant,
    pub start: Instant,
    pub hub: Hub,
    pub peers: Vec<Peer>,
    pub hub_events: Vec<HubEvent>,
    /// The server's inbox.
    pub inbox: Disk,
    /// Inbox transfers: (client, transfer id) → name.
    inbox_names: HashMap<(ClientId, u32), String>,
    /// Files the hub itself sends: (client, transfer id) → contents.
    pub hub_sending: HashMap<(ClientId, u32), Bytes>,
    split: Split,
    /// Peak of bytes the hub held for any client (control, data).
    pub peak_queued: (usize, usize),
}

impl Net {
    pub fn new(config: HubConfig, split: Split) -> Net {
        let now = Instant::now();
        Net {
            now,
            start: now,
            hub: Hub::new(config, now),
            peers: Vec::new(),
            hub_events: Vec::new(),
            inbox: Disk::new(0),
            inbox_names: HashMap::new(),
            hub_sending: HashMap::new(),
            split,
            peak_queued: (0, 0),
        }
    }

    fn link_split(&self, salt: u64) -> Split {
        match self.split {
            Split::Random { seed, max } => Split::Random {
                seed: seed.wrapping_add(salt.wrapping_mul(7919)),
                max,
            },
            s => s,
        }
    }

    /// Connects a client with `config`; returns its index in `peers`.
    pub fn connect(&mut self, config: ClientConfig) -> usize {
        let client = self.hub.connect(self.now);
        let n = self.peers.len() as u64;
        self.peers.push(Peer {
            conn: Connection::client(config, self.now),
            client,
            events: Vec::new(),
            disk: Disk::new(n + 1),
            up: Link::new(self.link_split(2 * n + 1)),
            down: Link::new(self.link_split(2 * n + 2)),
            cut: false,
        });
        self.peers.len() - 1
    }

    /// Connects and completes the handshake of a client named `name`.
    pub fn join(&mut self, name: &str) -> usize {
        let i = self.connect(ClientConfig::new(name));
        self.run();
        assert!(
            self.peers[i].conn.is_open(),
            "{name} did not get in: {:?}",
            self.peers[i].events
        );
        i
    }

    /// Peer `old`'s user comes back as a new connection, with the resume
    /// keys it kept (on disk, say).
    pub fn rejoin(&mut self, old: usize, name: &str) -> usize {
        let i = self.join(name);
        self.peers[i].disk.resume_keys = self.peers[old].disk.resume_keys.clone();
        i
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Moves bytes and handles events until nothing changes, without moving
    /// the clock. Returns whether anything happened.
    pub fn step(&mut self) -> bool {
        let mut moved = false;
        let now = self.now;
        for i in 0..self.peers.len() {
            // Client → link.
            let p = &mut self.peers[i];
            if !p.cut {
                while p.up.has_room() {
                    let Some(bytes) = p.conn.poll_transmit() else {
                        break;
                    };
                    p.up.write(&bytes);
                    moved = true;
                }
                // Link → hub.
                while let Some(read) = p.up.read() {
                    self.hub.handle_input(p.client, now, &read);
                    moved = true;
                }
            }
        }
        while self.hub.poll_writable().is_some() {}
        for i in 0..self.peers.len() {
            let p = &mut self.peers[i];
            if p.cut {
                continue;
            }
            // Hub → link.
            while p.down.has_room() {
                let Some(bytes) = self.hub.poll_transmit(p.client) else {
                    break;
                };
                p.down.write(&bytes);
                moved = true;
            }
            // Link → client.
            while let Some(read) = p.down.read() {
                p.conn.handle_input(now, &read);
                moved = true;
            }
            if let Some((c, d)) = self.hub.queued_bytes(p.client) {
                self.peak_queued.0 = self.peak_queued.0.max(c);
                self.peak_queued.1 = self.peak_queued.1.max(d);
            }
        }
        moved |= self.handle_client_events();
        moved |= self.handle_hub_events();
        moved
    }

    fn handle_client_events(&mut self) -> bool {
        let mut any = false;
        let now = self.now;
        for p in &mut self.peers {
            while let Some(event) = p.conn.poll_event() {
                any = true;
                if let Event::Transfer(t) = &event {
                    p.disk.on_transfer(&mut p.conn, now, t);
                }
                p.events.push(event);
            }
            any |= p.disk.confirm_writes(&mut p.conn, now);
        }
        any
    }

    fn handle_hub_events(&mut self) -> bool {
        let mut any = false;
        let now = self.now;
        while let Some(event) = self.hub.poll_event() {
            any = true;
            if let HubEvent::Transfer { client, event: t } = &event {
                let client = *client;
                match t.clone() {
                    TransferEvent::Offered {
                        id,
                        name,
                        size,
                        resume,
                        ..
                    } => match self.inbox.policy {
                        Some(OfferPolicy::Accept) => {
                            let (from, key) = self.inbox.answer_offer(id, &name, size, resume);
                            self.inbox_names.insert((client, id), name.to_string());
                            self.hub
                                .accept_resumable(client, now, id, from, key)
                                .unwrap();
                        }
                        Some(OfferPolicy::Reject) => self
                            .hub
                            .reject(client, now, id, Code::FILE_REJECTED, "inbox closed")
                            .unwrap(),
                        _ => {}
                    },
                    TransferEvent::NeedChunk { id, offset, len } => {
                        let range = offset as usize..(offset + u64::from(len)) as usize;
                        let chunk = match self.hub_sending.get(&(client, id)) {
                            Some(file) => file.slice(range),
                            None => {
                                let name = &self.inbox_names[&(client, id)];
                                Bytes::copy_from_slice(&self.inbox.partial[name][range])
                            }
                        };
                        self.hub
                            .supply_chunk(client, now, id, offset, chunk)
                            .unwrap();
                    }
                    TransferEvent::Restarted { id } => {
                        let name = self.inbox_names[&(client, id)].clone();
                        self.inbox.partial.insert(name, Vec::new());
                    }
                    TransferEvent::Chunk { id, offset, data } => {
                        let name = self.inbox_names[&(client, id)].clone();
                        let part = self.inbox.partial.entry(name).or_default();
                        let end = offset as usize + data.len();
                        if part.len() < end {
                            part.resize(end, 0);
                        }
                        part[offset as usize..end].copy_from_slice(&data);
                        self.hub
                            .confirm_written(client, now, id, end as u64)
                            .unwrap();
                    }
                    TransferEvent::Received { id, .. } => {
                        let name = self.inbox_names[&(client, id)].clone();
                        let file = self.inbox.partial.remove(&name).unwrap_or_default();
                        self.inbox.keys_issued.remove(&name);
                        self.inbox.stored.insert(name, file);
                        self.hub.finish_receive(client, now, id, Ok(())).unwrap();
                    }
                    TransferEvent::Ended {
                        id,
                        outcome: Outcome::Failed { .. },
                    } => {
                        if let Some(name) = self.inbox_names.get(&(client, id)) {
                            self.inbox.partial.remove(name);
                            self.inbox.keys_issued.remove(name);
                        }
                    }
                    _ => {}
                }
            }
            if let HubEvent::Closed { client, .. } = &event {
                // The adapter writes what is left, then closes the socket.
                let client = *client;
                if let Some(p) = self.peers.iter_mut().find(|p| p.client == client) {
                    while let Some(bytes) = self.hub.poll_transmit(client) {
                        if !p.cut {
                            p.down.write(&bytes);
                        }
                    }
                }
            }
            self.hub_events.push(event);
        }
        any
    }

    /// Runs until nothing moves without advancing the clock.
    pub fn run(&mut self) {
        for _ in 0..10_000_000 {
            if !self.step() {
                self.reap();
                return;
            }
        }
        panic!("the network never settled");
    }

    /// Closes sockets of connections that are over, both ways.
    fn reap(&mut self) {
        let now = self.now;
        for p in &mut self.peers {
            if p.conn.is_closed() && p.conn.is_drained() && p.up.queue.is_empty() && !p.cut {
                // The client closed its socket: the hub reads end of file.
                if self.hub.queued_bytes(p.client).is_some() && p.down.queue.is_empty() {
                    self.hub.handle_eof(p.client, now);
                }
            }
        }
        let closed: Vec<ClientId> = self
            .hub_events
            .iter()
            .filter_map(|e| match e {
                HubEvent::Closed { client, .. } => Some(*client),
                _ => None,
            })
            .collect();
        for client in closed {
            if let Some(p) = self.peers.iter_mut().find(|p| p.client == client) {
                if p.down.queue.is_empty() && !p.conn.is_closed() {
                    p.conn.handle_eof(now);
                }
            }
            self.hub.remove(client, now);
        }
        // Events raised by the reaping itself.
        while self.step() {}
    }

    /// Runs, advancing the clock to each next timer, for `duration` of
    /// virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        for _ in 0..1_000_000 {
            self.run();
            let next = self
                .peers
                .iter()
                .filter(|p| !p.cut)
                .filter_map(|p| p.conn.poll_timeout())
                .chain(self.hub.poll_timeout())
                .min();
            match next {
                Some(at) if at <= end => {
                    self.now = self.now.max(at);
                    let now = self.now;
                    for p in &mut self.peers {
                        if !p.cut {
                            p.conn.handle_timeout(now);
                        }
                    }
                    self.hub.handle_timeout(now);
                }
                _ => {
                    self.now = end;
                    self.run();
                    return;
                }
            }
        }
        panic!("timers never settled");
    }

    /// Runs in small clock steps until `done` holds, for at most `limit` of
    /// virtual time.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Net) -> bool) {
        let end = self.now + limit;
        loop {
            self.run();
            if done(self) {
                return;
            }
            assert!(self.now < end, "condition not reached within {limit:?}");
            self.run_for(Duration::from_millis(10));
        }
    }

    /// Sends a file from peer `i` to the inbox (`to` empty) or to a user,
    /// resuming with the key kept for it if there is one.
    pub fn send_file(&mut self, i: usize, name: &str, data: &[u8], to: &str) -> u32 {
        let now = self.now;
        let p = &mut self.peers[i];
        let size = data.len() as u64;
        let id = match p.disk.resume_keys.get(name) {
            Some(&key) => p.conn.offer_file_resuming(now, name, size, to, key),
            None => p.conn.offer_file(now, name, size, to),
        }
        .unwrap();
        p.disk.sending.insert(id, Bytes::copy_from_slice(data));
        p.disk.sending_names.insert(id, name.to_string());
        id
    }

    pub fn say(&mut self, i: usize, text: &str) {
        let now = self.now;
        self.peers[i].conn.say(now, text).unwrap();
    }

    /// Reason codes of every `LEFT` peer `i` saw, by name.
    pub fn lefts(&self, i: usize) -> Vec<(String, Code)> {
        self.peers[i]
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Left { name, code, .. } => Some((name.to_string(), *code)),
                _ => None,
            })
            .collect()
    }
}

/// All three ways of splitting, for scenario tests.
pub fn splits() -> [Split; 3] {
    [
        Split::Whole,
        Split::OneByte,
        Split::Random { seed: 42, max: 97 },
    ]
}
