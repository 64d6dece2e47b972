//! A client connection sends a tree to a server connection through an
//! in-memory pipe: FEATURES asked and answered, the manifest in parts,
//! every file in order within a small window, DONE, VERIFIED; the bytes
//! the receiving application saw are the sender's, file by file.

use bytes::Bytes;
use ferry_core::frame::{features, Frame, HeldFile, ResumeKey};
use ferry_core::transfer::{Outcome, TransferEvent};
use ferry_core::tree::{Entry, EntryKind, Manifest, Mtime, TreeLimits, TreePath};
use ferry_core::{ClientConfig, Config, Connection, Event};
use std::collections::BTreeMap;
use std::time::Instant;

fn entry(path: &str, kind: EntryKind) -> Entry {
    Entry {
        path: TreePath::new(path, &TreeLimits::default()).unwrap(),
        kind,
        mtime: Mtime::new(1_700_000_000, 0).unwrap(),
    }
}

/// Folders, empty files first, last and between, files larger than the
/// window and many small ones (the manifest spans several frames).
fn tree() -> (Manifest, BTreeMap<u32, Vec<u8>>) {
    let mut entries = vec![entry(
        "a",
        EntryKind::File {
            size: 0,
            executable: false,
        },
    )];
    let mut data = BTreeMap::new();
    data.insert(0, Vec::new());
    entries.push(entry("big", EntryKind::Folder));
    for (n, size) in [10_000usize, 0, 4096, 1, 5000].into_iter().enumerate() {
        data.insert(
            entries.len() as u32,
            (0..size).map(|i| (i * 7 + n) as u8).collect(),
        );
        entries.push(entry(
            &format!("big/f{n}"),
            EntryKind::File {
                size: size as u64,
                executable: n == 2,
            },
        ));
    }
    entries.push(entry("empty", EntryKind::Folder));
    entries.push(entry("small", EntryKind::Folder));
    for n in 0..300usize {
        let bytes: Vec<u8> = format!("file number {n}\n").into_bytes();
        data.insert(entries.len() as u32, bytes.clone());
        entries.push(entry(
            &format!("small/with a rather long name to make the manifest span frames {n:04}"),
            EntryKind::File {
                size: bytes.len() as u64,
                executable: false,
            },
        ));
    }
    data.insert(entries.len() as u32, Vec::new());
    entries.push(entry(
        "z",
        EntryKind::File {
            size: 0,
            executable: false,
        },
    ));
    let manifest = Manifest::new(Mtime::EPOCH, entries, &TreeLimits::default()).unwrap();
    (manifest, data)
}

/// Moves everything either side has to send to the other, `step` bytes at
/// a time; returns whether anything moved.
fn pump(a: &mut Connection, b: &mut Connection, now: Instant, step: usize) -> bool {
    fn one_way(from: &mut Connection, to: &mut Connection, now: Instant, step: usize) -> bool {
        let mut moved = false;
        while let Some(bytes) = from.poll_transmit() {
            moved = true;
            for piece in bytes.chunks(step) {
                to.handle_input(now, piece);
            }
        }
        moved
    }
    let there = one_way(a, b, now, step);
    let back = one_way(b, a, now, step);
    there || back
}

/// A server that takes trees in small frames (4 KiB frames, 1 KiB chunks,
/// a 4 KiB window, so that manifests and files span many frames), and the
/// client `alice` about to join it.
fn small_frame_pair(now: Instant) -> (Connection, Connection) {
    let server_config = Config::default()
        .trees(Some(TreeLimits::default()))
        .max_frame(4096)
        .chunk_size(1024)
        .window(4096);
    (
        Connection::server(server_config, now),
        Connection::client(ClientConfig::new("alice"), now),
    )
}

fn send_tree(step: usize) {
    let now = Instant::now();
    let (mut server, mut client) = small_frame_pair(now);
    let (manifest, files) = tree();
    assert!(
        manifest.encode().len() > 4096 * 3,
        "the manifest spans frames"
    );

    let mut id = None;
    let mut received: BTreeMap<u32, (Vec<u8>, [u8; 32])> = BTreeMap::new();
    let mut written = 0u64;
    let mut progress = 0u64;
    let mut outcome = None;
    for _ in 0..100_000 {
        let moved = pump(&mut client, &mut server, now, step);
        let mut acted = false;
        while let Some(event) = server.poll_event() {
            acted = true;
            match event {
                Event::Hello { name, .. } => server.welcome(now, name, "".into()).unwrap(),
                Event::Transfer(TransferEvent::TreeOffered { .. }) => {}
                Event::Transfer(TransferEvent::TreeManifest { id, manifest: m }) => {
                    assert_eq!(m, manifest);
                    server.accept_tree(now, id).unwrap();
                }
                Event::Transfer(TransferEvent::TreeChunk {
                    id,
                    index,
                    offset,
                    data,
                }) => {
                    let file = &mut received.entry(index).or_default().0;
                    assert_eq!(file.len() as u64, offset);
                    file.extend_from_slice(&data);
                    written += data.len() as u64;
                    server.confirm_written(now, id, written).unwrap();
                }
                Event::Transfer(TransferEvent::TreeFileDone { index, hash, .. }) => {
                    received.entry(index).or_default().1 = hash;
                }
                Event::Transfer(TransferEvent::Received { id, hash }) => {
                    assert_eq!(hash, *blake3::hash(&manifest.encode()).as_bytes());
                    server.finish_receive(now, id, Ok(())).unwrap();
                }
                Event::Transfer(TransferEvent::Ended { .. })
                | Event::Transfer(TransferEvent::TreeFileStarted { .. }) => {}
                other => panic!("server: unexpected {other:?}"),
            }
        }
        while let Some(event) = client.poll_event() {
            acted = true;
            match event {
                Event::Welcomed { .. } => client.announce_features(now, 0).unwrap(),
                Event::Features { bits } => {
                    assert_eq!(bits & features::TREES, features::TREES);
                    id = Some(client.offer_tree(now, "demo", &manifest, "").unwrap());
                }
                Event::Transfer(TransferEvent::Accepted { .. }) => {}
                Event::Transfer(TransferEvent::TreeNeedChunk {
                    id,
                    index,
                    offset,
                    len,
                }) => {
                    let file = &files[&index];
                    let data = &file[offset as usize..offset as usize + len as usize];
                    client
                        .supply_tree_chunk(now, id, index, offset, Bytes::copy_from_slice(data))
                        .unwrap();
                }
                Event::Transfer(TransferEvent::Progress {
                    confirmed, size, ..
                }) => {
                    assert!(confirmed >= progress && confirmed <= size);
                    progress = confirmed;
                }
                Event::Transfer(TransferEvent::Ended { outcome: o, .. }) => outcome = Some(o),
                Event::Joined { .. } | Event::Members { .. } => {}
                other => panic!("client: unexpected {other:?}"),
            }
        }
        if outcome.is_some() || !(moved || acted) {
            break;
        }
    }
    assert!(id.is_some(), "the tree was offered");
    assert_eq!(outcome, Some(Outcome::Verified));
    assert_eq!(progress, manifest.total_size());
    assert!(client.is_open() && server.is_open());
    let expected: BTreeMap<u32, (Vec<u8>, [u8; 32])> = files
        .into_iter()
        .map(|(i, d)| {
            let h = *blake3::hash(&d).as_bytes();
            (i, (d, h))
        })
        .collect();
    assert_eq!(received, expected);
}

#[test]
fn a_tree_goes_from_a_client_to_a_server_whole_and_in_order() {
    send_tree(1 << 20);
}

#[test]
fn a_tree_goes_across_fed_in_small_pieces() {
    send_tree(7);
}

#[test]
fn a_tree_is_not_offered_to_a_peer_that_did_not_announce_trees() {
    let now = Instant::now();
    let mut server = Connection::server(Config::default(), now);
    let mut client = Connection::client(ClientConfig::new("alice"), now);
    let (manifest, _) = tree();
    let mut answered = None;
    for _ in 0..100 {
        pump(&mut client, &mut server, now, 1 << 20);
        while let Some(event) = server.poll_event() {
            if let Event::Hello { name, .. } = event {
                server.welcome(now, name, "".into()).unwrap();
            }
        }
        while let Some(event) = client.poll_event() {
            match event {
                Event::Welcomed { .. } => client.announce_features(now, 0).unwrap(),
                Event::Features { bits } => answered = Some(bits),
                _ => {}
            }
        }
        if answered.is_some() {
            break;
        }
    }
    assert_eq!(answered, Some(0));
    assert!(client.offer_tree(now, "demo", &manifest, "").is_err());
    assert!(client.announce_features(now, 0).is_err(), "once");
}

#[test]
fn a_side_that_only_sends_trees_takes_none() {
    use bytes::BytesMut;
    use ferry_core::frame::{decode, PREAMBLE};
    use ferry_core::Code;
    let now = Instant::now();
    let mut server = Connection::server(Config::default().trees(Some(TreeLimits::default())), now);
    let mut client = Connection::client(ClientConfig::new("alice"), now);
    let (manifest, _) = tree();
    let mut offered = false;
    for _ in 0..100 {
        pump(&mut client, &mut server, now, 1 << 20);
        while let Some(event) = server.poll_event() {
            if let Event::Hello { name, .. } = event {
                server.welcome(now, name, "".into()).unwrap();
            }
        }
        while let Some(event) = client.poll_event() {
            match event {
                Event::Welcomed { .. } => client.announce_features(now, 0).unwrap(),
                Event::Features { .. } => {
                    client.offer_tree(now, "demo", &manifest, "").unwrap();
                    offered = true;
                }
                _ => {}
            }
        }
        if offered {
            break;
        }
    }
    assert!(offered);
    // Without limits of its own, the client cannot announce trees...
    let mut other = Connection::client(ClientConfig::new("bob"), now);
    assert!(other.announce_features(now, features::TREES).is_err());
    // ...and a TREE_OFFER to it is out of place.
    let mut out = BytesMut::new();
    Frame::TreeOffer {
        id: 1,
        total_size: 0,
        manifest_len: 16,
        name: "x".into(),
        peer: "".into(),
    }
    .encode(&mut out)
    .unwrap();
    while client.poll_transmit().is_some() {}
    client.handle_input(now, &out);
    let mut sent = BytesMut::new();
    while let Some(b) = client.poll_transmit() {
        sent.extend_from_slice(&b);
    }
    if sent.starts_with(&PREAMBLE) {
        let _ = sent.split_to(PREAMBLE.len());
    }
    let frames: Vec<Frame> =
        std::iter::from_fn(|| decode(&mut sent, 1 << 20).ok().flatten()).collect();
    assert!(
        frames.iter().any(|f| matches!(
            f,
            Frame::Error {
                code: Code::UNEXPECTED_FRAME,
                ..
            }
        )),
        "{frames:?}"
    );
}

/// What the receiving application of [`resume_attempt`] kept of the tree:
/// each file's bytes so far, and the files whose hash matched.
#[derive(Default)]
struct Kept {
    files: BTreeMap<u32, Vec<u8>>,
    verified: std::collections::BTreeSet<u32>,
}

impl Kept {
    /// The `TREE_HELD` records of what is kept: every file with bytes.
    fn records(&self) -> Vec<HeldFile> {
        self.files
            .iter()
            .filter(|(_, bytes)| !bytes.is_empty())
            .map(|(&index, bytes)| HeldFile {
                index,
                offset: bytes.len() as u64,
                prefix_hash: *blake3::hash(bytes).as_bytes(),
            })
            .collect()
    }
}

/// What one attempt of [`resume_attempt`] saw.
struct Attempt {
    outcome: Option<Outcome>,
    key: Option<ResumeKey>,
    /// Payload bytes the receiver was handed.
    received: u64,
    /// `TreeFileHeld` reports: `(index, offset)`.
    held: Vec<(u32, u64)>,
}

/// One attempt at sending `manifest` with `files` to a server that issues
/// `key` and keeps what arrives in `kept`; with `resume`, the offer
/// presents the key and the server lists what it kept. Stops (the
/// connections dropped: a cut) once `cut_after` payload bytes arrived.
fn resume_attempt(
    manifest: &Manifest,
    files: &BTreeMap<u32, Vec<u8>>,
    kept: &mut Kept,
    key: ResumeKey,
    resume: bool,
    cut_after: Option<u64>,
) -> Attempt {
    let now = Instant::now();
    let (mut server, mut client) = small_frame_pair(now);
    let mut seen = Attempt {
        outcome: None,
        key: None,
        received: 0,
        held: Vec::new(),
    };
    let mut hashes: BTreeMap<u32, [u8; 32]> = BTreeMap::new();
    for _ in 0..100_000 {
        let moved = pump(&mut client, &mut server, now, 1 << 20);
        let mut acted = false;
        while let Some(event) = server.poll_event() {
            acted = true;
            match event {
                Event::Hello { name, .. } => server.welcome(now, name, "".into()).unwrap(),
                Event::Transfer(TransferEvent::TreeOffered { resume: r, .. }) => {
                    assert_eq!(r, resume.then_some(key), "the key presented");
                }
                Event::Transfer(TransferEvent::TreeManifest { id, manifest: m }) => {
                    assert_eq!(&m, manifest);
                    let records = if resume { kept.records() } else { Vec::new() };
                    server
                        .accept_tree_resumable(now, id, key, &records)
                        .unwrap();
                }
                Event::Transfer(TransferEvent::TreeChunk {
                    id,
                    index,
                    offset,
                    data,
                }) => {
                    let file = kept.files.entry(index).or_default();
                    if offset == 0 {
                        // Sent from the start: what was held is not the
                        // sender's.
                        file.clear();
                        kept.verified.remove(&index);
                    }
                    assert_eq!(file.len() as u64, offset, "file {index}");
                    file.extend_from_slice(&data);
                    seen.received += data.len() as u64;
                    server.confirm_written(now, id, seen.received).unwrap();
                }
                Event::Transfer(TransferEvent::TreeFileDone { index, hash, .. }) => {
                    let file = kept.files.entry(index).or_default();
                    assert_eq!(*blake3::hash(file).as_bytes(), hash, "file {index}");
                    kept.verified.insert(index);
                    hashes.insert(index, hash);
                }
                Event::Transfer(TransferEvent::Received { id, .. }) => {
                    server.finish_receive(now, id, Ok(())).unwrap();
                }
                Event::Transfer(TransferEvent::Ended { .. })
                | Event::Transfer(TransferEvent::TreeFileStarted { .. }) => {}
                other => panic!("server: unexpected {other:?}"),
            }
        }
        while let Some(event) = client.poll_event() {
            acted = true;
            match event {
                Event::Welcomed { .. } => client.announce_features(now, 0).unwrap(),
                Event::Features { .. } => {
                    if resume {
                        client
                            .offer_tree_resuming(now, "demo", manifest, "", key)
                            .unwrap();
                    } else {
                        client.offer_tree(now, "demo", manifest, "").unwrap();
                    }
                }
                Event::Transfer(TransferEvent::ResumeKey { key: k, .. }) => seen.key = Some(k),
                Event::Transfer(TransferEvent::TreeFileHeld { index, offset, .. }) => {
                    seen.held.push((index, offset));
                }
                Event::Transfer(TransferEvent::Accepted { .. })
                | Event::Transfer(TransferEvent::Progress { .. }) => {}
                Event::Transfer(TransferEvent::TreeNeedChunk {
                    id,
                    index,
                    offset,
                    len,
                }) => {
                    let file = &files[&index];
                    let data = &file[offset as usize..offset as usize + len as usize];
                    client
                        .supply_tree_chunk(now, id, index, offset, Bytes::copy_from_slice(data))
                        .unwrap();
                }
                Event::Transfer(TransferEvent::Ended { outcome: o, .. }) => seen.outcome = Some(o),
                Event::Joined { .. } | Event::Members { .. } => {}
                other => panic!("client: unexpected {other:?}"),
            }
        }
        if cut_after.is_some_and(|cut| seen.received >= cut) {
            return seen;
        }
        if seen.outcome.is_some() || !(moved || acted) {
            break;
        }
    }
    seen
}

#[test]
fn a_cut_tree_resumes_sending_only_what_the_receiver_lacks() {
    let (manifest, mut files) = tree();
    let key = ResumeKey::from_bytes([7; ResumeKey::LEN]);
    let mut kept = Kept::default();
    let total = manifest.total_size();

    // The first attempt is cut in the middle of a file.
    let first = resume_attempt(&manifest, &files, &mut kept, key, false, Some(total / 2));
    assert_eq!(first.outcome, None, "cut before the end");
    assert_eq!(first.key, Some(key), "the key reached the sender");
    let partial: Vec<u32> = kept
        .files
        .iter()
        .filter(|(i, bytes)| bytes.len() < files[i].len())
        .map(|(&i, _)| i)
        .collect();
    assert_eq!(partial.len(), 1, "one file was cut: {partial:?}");
    // Meanwhile one of the files that arrived whole changed at the
    // sender (same size): it must go again, from its first byte.
    let changed = *kept
        .verified
        .iter()
        .find(|&&i| files[&i].len() > 1000)
        .expect("a large file arrived whole");
    for byte in files.get_mut(&changed).unwrap().iter_mut() {
        *byte = byte.wrapping_add(1);
    }
    let held_before: u64 = kept.records().iter().map(|r| r.offset).sum();
    let partial_len = kept.files[&partial[0]].len() as u64;
    let changed_len = files[&changed].len() as u64;

    let second = resume_attempt(&manifest, &files, &mut kept, key, true, None);
    assert_eq!(second.outcome, Some(Outcome::Verified));
    // Only what the receiver lacked crossed: the rest of the cut file,
    // the files it never got, and the changed file whole.
    assert_eq!(second.received, total - held_before + changed_len);
    assert!(!second.held.iter().any(|&(i, _)| i == changed));
    assert!(
        second.held.contains(&(partial[0], partial_len)),
        "the cut file went on from where it stopped: {:?}",
        second.held
    );
    for (index, bytes) in &files {
        assert_eq!(
            &kept.files.get(index).cloned().unwrap_or_default(),
            bytes,
            "file {index}"
        );
    }
}

/// A client that offered the tree (presenting `resume`, if any), with
/// everything it sent so far taken; the server dropped.
fn offering_client(resume: Option<ResumeKey>) -> Connection {
    let now = Instant::now();
    let mut server = Connection::server(Config::default().trees(Some(TreeLimits::default())), now);
    let mut client = Connection::client(ClientConfig::new("alice"), now);
    let (manifest, _) = tree();
    for _ in 0..100 {
        pump(&mut client, &mut server, now, 1 << 20);
        while let Some(event) = server.poll_event() {
            if let Event::Hello { name, .. } = event {
                server.welcome(now, name, "".into()).unwrap();
            }
        }
        while let Some(event) = client.poll_event() {
            match event {
                Event::Welcomed { .. } => client.announce_features(now, 0).unwrap(),
                Event::Features { .. } => {
                    match resume {
                        Some(key) => client.offer_tree_resuming(now, "demo", &manifest, "", key),
                        None => client.offer_tree(now, "demo", &manifest, ""),
                    }
                    .unwrap();
                    while client.poll_transmit().is_some() {}
                    return client;
                }
                _ => {}
            }
        }
    }
    panic!("the client never offered");
}

/// The code of the `ERROR` `client` sends after taking `frame`, if any.
fn error_after(client: &mut Connection, frame: Frame) -> Option<ferry_core::Code> {
    use bytes::BytesMut;
    use ferry_core::frame::decode;
    let mut input = BytesMut::new();
    frame.encode(&mut input).unwrap();
    client.handle_input(Instant::now(), &input);
    let mut sent = BytesMut::new();
    while let Some(b) = client.poll_transmit() {
        sent.extend_from_slice(&b);
    }
    std::iter::from_fn(|| decode(&mut sent, 1 << 20).ok().flatten()).find_map(|f| match f {
        Frame::Error { code, .. } => Some(code),
        _ => None,
    })
}

#[test]
fn tree_held_is_taken_only_for_a_resumed_offer_and_only_in_order_for_its_files() {
    use ferry_core::Code;
    let (manifest, files) = tree();
    let key = ResumeKey::from_bytes([3; ResumeKey::LEN]);
    // The client's first transfer id (a client's ids are even).
    let id = 0;
    let record = |index: u32, offset: u64| HeldFile {
        index,
        offset,
        prefix_hash: [0; 32],
    };
    let size = |index: u32| files[&index].len() as u64;
    let last = manifest.entries().len() as u32 - 1;
    // Entry 1 is the folder `big`, entry 2 the 10,000-byte `big/f0`.
    assert!(manifest.entries()[1].is_folder());
    assert_eq!(size(2), 10_000);
    let good = Frame::TreeHeld {
        id,
        records: vec![record(2, 5000), record(last, 0)],
    };
    assert_eq!(
        error_after(&mut offering_client(Some(key)), good.clone()),
        None
    );
    for (resume, records) in [
        // Not presented: nothing may be listed.
        (None, vec![record(2, 5000)]),
        // A folder, past the manifest, past the file's end, out of order,
        // twice.
        (Some(key), vec![record(1, 0)]),
        (Some(key), vec![record(last + 1, 0)]),
        (Some(key), vec![record(2, 10_001)]),
        (Some(key), vec![record(3, 1), record(2, 1)]),
        (Some(key), vec![record(2, 1), record(2, 1)]),
    ] {
        let frame = Frame::TreeHeld { id, records };
        assert_eq!(
            error_after(&mut offering_client(resume), frame.clone()),
            Some(Code::UNEXPECTED_FRAME),
            "{resume:?} {frame:?}"
        );
    }
    // Order holds across frames too.
    let mut client = offering_client(Some(key));
    assert_eq!(error_after(&mut client, good), None);
    let earlier = Frame::TreeHeld {
        id,
        records: vec![record(2, 1)],
    };
    assert_eq!(
        error_after(&mut client, earlier),
        Some(Code::UNEXPECTED_FRAME)
    );
}

#[test]
fn trees_offered_back_to_back_go_one_manifest_at_a_time_and_all_arrive() {
    // A receiver takes one manifest at a time per connection (a second
    // TREE_OFFER meanwhile is TOO_MANY_TRANSFERS): the sender holds each
    // offer until the one before it is answered.
    let now = Instant::now();
    let (mut server, mut client) = small_frame_pair(now);
    let (manifest, files) = tree();
    let mut written: BTreeMap<u32, u64> = BTreeMap::new();
    let mut outcomes = Vec::new();
    for _ in 0..100_000 {
        let moved = pump(&mut client, &mut server, now, 1 << 20);
        let mut acted = false;
        while let Some(event) = server.poll_event() {
            acted = true;
            match event {
                Event::Hello { name, .. } => server.welcome(now, name, "".into()).unwrap(),
                Event::Transfer(TransferEvent::TreeManifest { id, .. }) => {
                    server.accept_tree(now, id).unwrap();
                }
                Event::Transfer(TransferEvent::TreeChunk { id, data, .. }) => {
                    let total = written.entry(id).or_default();
                    *total += data.len() as u64;
                    server.confirm_written(now, id, *total).unwrap();
                }
                Event::Transfer(TransferEvent::Received { id, .. }) => {
                    server.finish_receive(now, id, Ok(())).unwrap();
                }
                _ => {}
            }
        }
        while let Some(event) = client.poll_event() {
            acted = true;
            match event {
                Event::Welcomed { .. } => client.announce_features(now, 0).unwrap(),
                Event::Features { .. } => {
                    for name in ["one", "two", "three"] {
                        client.offer_tree(now, name, &manifest, "").unwrap();
                    }
                }
                Event::Transfer(TransferEvent::TreeNeedChunk {
                    id,
                    index,
                    offset,
                    len,
                }) => {
                    let data = &files[&index][offset as usize..offset as usize + len as usize];
                    client
                        .supply_tree_chunk(now, id, index, offset, Bytes::copy_from_slice(data))
                        .unwrap();
                }
                Event::Transfer(TransferEvent::Ended { outcome, .. }) => outcomes.push(outcome),
                _ => {}
            }
        }
        if outcomes.len() == 3 || !(moved || acted) {
            break;
        }
    }
    assert_eq!(outcomes, vec![Outcome::Verified; 3]);
}
