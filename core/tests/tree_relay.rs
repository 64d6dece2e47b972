//! A tree sent to a member through a hub (`docs/PROTOCOL.md` §6.12.4,
//! "Relaying"): the hub checks the manifest as a receiver does, offers it
//! unchanged to the member, and passes every file on within the member's
//! window; the member gets the sender's bytes, and the sender `VERIFIED`.
//! A member whose client does not take folders, or nobody of that name,
//! is refused with its code.

use bytes::Bytes;
use ferry_core::frame::{features, HeldFile};
use ferry_core::transfer::{Outcome, TransferEvent};
use ferry_core::tree::{Entry, EntryKind, Manifest, Mtime, TreeLimits, TreePath};
use ferry_core::{ClientConfig, ClientId, Code, Config, Connection, Event, Hub, HubConfig};
use std::collections::BTreeMap;
use std::time::Instant;

fn entry(path: &str, kind: EntryKind) -> Entry {
    Entry {
        path: TreePath::new(path, &TreeLimits::default()).unwrap(),
        kind,
        mtime: Mtime::new(1_700_000_000, 0).unwrap(),
    }
}

fn file(size: usize) -> EntryKind {
    EntryKind::File {
        size: size as u64,
        executable: false,
    }
}

/// Folders, an empty file, a file over several chunks and windows, small
/// files.
fn tree() -> (Manifest, BTreeMap<u32, Vec<u8>>) {
    let mut entries = vec![
        entry("docs", EntryKind::Folder),
        entry("docs/zero", file(0)),
    ];
    let mut data = BTreeMap::new();
    data.insert(1, Vec::new());
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    data.insert(2, big.clone());
    entries.push(entry("docs/big.bin", file(big.len())));
    for n in 0..50usize {
        let bytes = format!("note {n}\n").into_bytes();
        data.insert(entries.len() as u32, bytes.clone());
        entries.push(entry(&format!("n{n:02}.txt"), file(bytes.len())));
    }
    let manifest = Manifest::new(Mtime::EPOCH, entries, &TreeLimits::default()).unwrap();
    (manifest, data)
}

/// A member of the hub's room and its connection.
struct Member {
    id: ClientId,
    conn: Connection,
}

fn join(hub: &mut Hub, now: Instant, name: &str, takes_trees: bool) -> Member {
    let id = hub.connect(now);
    let mut config = ClientConfig::new(name);
    if takes_trees {
        config.connection = Config::default()
            .trees(Some(TreeLimits::default()))
            .window(64 * 1024);
    }
    let mut member = Member {
        id,
        conn: Connection::client(config, now),
    };
    pump(hub, &mut [&mut member], now);
    while let Some(event) = member.conn.poll_event() {
        if let Event::Welcomed { .. } = event {
            let bits = if takes_trees { features::TREES } else { 0 };
            member.conn.announce_features(now, bits).unwrap();
        }
    }
    pump(hub, &mut [&mut member], now);
    let mut answered = false;
    while let Some(event) = member.conn.poll_event() {
        answered |= matches!(event, Event::Features { .. });
    }
    assert!(answered, "{name}: FEATURES answered");
    member
}

/// Moves every byte between the hub and its members until none moves;
/// returns whether any did.
fn pump(hub: &mut Hub, members: &mut [&mut Member], now: Instant) -> bool {
    let mut any = false;
    for _ in 0..1000 {
        let mut moved = false;
        for m in members.iter_mut() {
            while let Some(bytes) = m.conn.poll_transmit() {
                hub.handle_input(m.id, now, &bytes);
                moved = true;
            }
            while let Some(bytes) = hub.poll_transmit(m.id) {
                m.conn.handle_input(now, &bytes);
                moved = true;
            }
        }
        while hub.poll_event().is_some() {}
        any |= moved;
        if !moved {
            break;
        }
    }
    any
}

/// Alice offers the tree to `to`; bob (taking folders) writes what comes;
/// returns how alice's transfer ended and what bob holds.
fn send(to: &str, bob_takes_trees: bool) -> (Option<Outcome>, BTreeMap<u32, Vec<u8>>) {
    let now = Instant::now();
    let mut config = HubConfig::default();
    config.connection = config.connection.trees(Some(TreeLimits::default()));
    let mut hub = Hub::new(config, now);
    let mut alice = join(&mut hub, now, "alice", false);
    let mut bob = join(&mut hub, now, "bob", bob_takes_trees);
    let (manifest, files) = tree();
    alice.conn.offer_tree(now, "docs", &manifest, to).unwrap();
    let mut got: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut written = 0u64;
    let mut outcome = None;
    let key = ferry_core::ResumeKey::from_bytes([4; ferry_core::ResumeKey::LEN]);
    for _ in 0..10_000 {
        let moved = pump(&mut hub, &mut [&mut alice, &mut bob], now);
        let mut acted = false;
        while let Some(event) = bob.conn.poll_event() {
            acted = true;
            match event {
                Event::Transfer(TransferEvent::TreeOffered { peer, name, .. }) => {
                    assert_eq!((&*peer, &*name), ("alice", "docs"));
                }
                Event::Transfer(TransferEvent::TreeManifest { id, manifest: m }) => {
                    assert_eq!(m, manifest, "passed on unchanged");
                    bob.conn
                        .accept_tree_resumable(now, id, key, &[] as &[HeldFile])
                        .unwrap();
                }
                Event::Transfer(TransferEvent::TreeFileStarted { .. }) => {}
                Event::Transfer(TransferEvent::TreeChunk {
                    id,
                    index,
                    offset,
                    data,
                }) => {
                    let file = got.entry(index).or_default();
                    assert_eq!(file.len() as u64, offset);
                    file.extend_from_slice(&data);
                    written += data.len() as u64;
                    bob.conn.confirm_written(now, id, written).unwrap();
                }
                Event::Transfer(TransferEvent::TreeFileDone { index, hash, .. }) => {
                    let file = got.entry(index).or_default();
                    assert_eq!(*blake3::hash(file).as_bytes(), hash);
                }
                Event::Transfer(TransferEvent::Received { id, .. }) => {
                    bob.conn.finish_receive(now, id, Ok(())).unwrap();
                }
                Event::Transfer(TransferEvent::Ended { .. }) | Event::Joined { .. } => {}
                other => panic!("bob: unexpected {other:?}"),
            }
        }
        while let Some(event) = alice.conn.poll_event() {
            acted = true;
            match event {
                Event::Transfer(TransferEvent::TreeNeedChunk {
                    id,
                    index,
                    offset,
                    len,
                }) => {
                    let data = &files[&index][offset as usize..(offset + u64::from(len)) as usize];
                    alice
                        .conn
                        .supply_tree_chunk(now, id, index, offset, Bytes::copy_from_slice(data))
                        .unwrap();
                }
                Event::Transfer(TransferEvent::Ended { outcome: o, .. }) => outcome = Some(o),
                _ => {}
            }
        }
        if outcome.is_some() || !(moved || acted) {
            break;
        }
    }
    assert!(alice.conn.is_open() && bob.conn.is_open());
    assert_eq!(hub.relay_count(), 0, "the relay ended with the tree");
    (outcome, got)
}

#[test]
fn a_tree_reaches_a_member_through_the_hub_unchanged() {
    let (outcome, got) = send("bob", true);
    assert_eq!(outcome, Some(Outcome::Verified));
    let (_, files) = tree();
    let digest = |files: &BTreeMap<u32, Vec<u8>>| -> Vec<(u32, usize, [u8; 32])> {
        files
            .iter()
            .map(|(i, d)| (*i, d.len(), *blake3::hash(d).as_bytes()))
            .collect()
    };
    assert_eq!(digest(&got), digest(&files));
}

#[test]
fn a_tree_for_a_member_who_takes_none_or_nobody_is_refused_with_its_code() {
    let code = |outcome: Option<Outcome>| match outcome {
        Some(Outcome::Rejected { code, .. }) => code,
        other => panic!("{other:?}"),
    };
    assert_eq!(code(send("bob", false).0), Code::FILE_REJECTED);
    assert_eq!(code(send("carol", true).0), Code::NO_SUCH_USER);
}

/// What bob keeps of the tree: each file's bytes so far.
type Kept = BTreeMap<u32, Vec<u8>>;

/// One attempt of alice (a new connection named `name`) at sending the
/// tree to bob through the hub, resuming with `key` if given; bob issues
/// `bob_key` and lists what he kept. Cut (alice's link broken) once bob
/// has `cut_after` new bytes. Returns alice's outcome, the key she was
/// handed, and the bytes bob got in this attempt.
#[allow(clippy::too_many_arguments)]
fn relay_attempt(
    hub: &mut Hub,
    bob: &mut Member,
    kept: &mut Kept,
    name: &str,
    resume: Option<ferry_core::ResumeKey>,
    bob_key: ferry_core::ResumeKey,
    cut_after: Option<u64>,
    now: Instant,
) -> (Option<Outcome>, Option<ferry_core::ResumeKey>, u64) {
    let (manifest, files) = tree();
    let mut alice = join(hub, now, name, false);
    match resume {
        Some(key) => alice
            .conn
            .offer_tree_resuming(now, "docs", &manifest, "bob", key)
            .unwrap(),
        None => alice
            .conn
            .offer_tree(now, "docs", &manifest, "bob")
            .unwrap(),
    };
    let (mut outcome, mut key, mut got) = (None, None, 0u64);
    let mut written: u64 = 0;
    for _ in 0..10_000 {
        let moved = pump(hub, &mut [&mut alice, bob], now);
        let mut acted = false;
        while let Some(event) = bob.conn.poll_event() {
            acted = true;
            match event {
                Event::Transfer(TransferEvent::TreeOffered { resume: r, .. }) => {
                    assert_eq!(r, resume, "the key alice presented reaches bob");
                }
                Event::Transfer(TransferEvent::TreeManifest { id, .. }) => {
                    let records: Vec<HeldFile> = kept
                        .iter()
                        .filter(|(_, d)| resume.is_some() && !d.is_empty())
                        .map(|(&index, d)| HeldFile {
                            index,
                            offset: d.len() as u64,
                            prefix_hash: *blake3::hash(d).as_bytes(),
                        })
                        .collect();
                    bob.conn
                        .accept_tree_resumable(now, id, bob_key, &records)
                        .unwrap();
                }
                Event::Transfer(TransferEvent::TreeChunk {
                    id,
                    index,
                    offset,
                    data,
                }) => {
                    let file = kept.entry(index).or_default();
                    if offset == 0 {
                        file.clear();
                    }
                    assert_eq!(file.len() as u64, offset, "file {index}");
                    file.extend_from_slice(&data);
                    got += data.len() as u64;
                    written += data.len() as u64;
                    bob.conn.confirm_written(now, id, written).unwrap();
                }
                Event::Transfer(TransferEvent::TreeFileDone { index, hash, .. }) => {
                    let file = kept.entry(index).or_default();
                    assert_eq!(*blake3::hash(file).as_bytes(), hash, "file {index}");
                }
                Event::Transfer(TransferEvent::Received { id, .. }) => {
                    bob.conn.finish_receive(now, id, Ok(())).unwrap();
                }
                _ => {}
            }
        }
        while let Some(event) = alice.conn.poll_event() {
            acted = true;
            match event {
                Event::Transfer(TransferEvent::ResumeKey { key: k, .. }) => key = Some(k),
                Event::Transfer(TransferEvent::TreeNeedChunk {
                    id,
                    index,
                    offset,
                    len,
                }) => {
                    let data = &files[&index][offset as usize..(offset + u64::from(len)) as usize];
                    alice
                        .conn
                        .supply_tree_chunk(now, id, index, offset, Bytes::copy_from_slice(data))
                        .unwrap();
                }
                Event::Transfer(TransferEvent::Ended { outcome: o, .. }) => outcome = Some(o),
                _ => {}
            }
        }
        if cut_after.is_some_and(|cut| got >= cut) {
            hub.handle_broken(alice.id, now, "cut");
            pump(hub, &mut [bob], now);
            while bob.conn.poll_event().is_some() {}
            return (outcome, key, got);
        }
        if outcome.is_some() || !(moved || acted) {
            break;
        }
    }
    (outcome, key, got)
}

#[test]
fn a_relayed_tree_cut_resumes_with_what_the_member_holds() {
    let now = Instant::now();
    let mut config = HubConfig::default();
    config.connection = config.connection.trees(Some(TreeLimits::default()));
    let mut hub = Hub::new(config, now);
    let mut bob = join(&mut hub, now, "bob", true);
    let bob_key = ferry_core::ResumeKey::from_bytes([8; ferry_core::ResumeKey::LEN]);
    let mut kept = Kept::new();
    let (manifest, files) = tree();
    let total = manifest.total_size();
    let (outcome, key, first) = relay_attempt(
        &mut hub,
        &mut bob,
        &mut kept,
        "alice",
        None,
        bob_key,
        Some(100_000),
        now,
    );
    assert_eq!(outcome, None, "cut");
    assert_eq!(
        key,
        Some(bob_key),
        "bob's key reached alice through the hub"
    );
    assert!(first >= 100_000 && first < total);
    let held: u64 = kept.values().map(|d| d.len() as u64).sum();
    assert_eq!(hub.relay_count(), 0, "the cut ended the relay");

    let (outcome, _, second) = relay_attempt(
        &mut hub,
        &mut bob,
        &mut kept,
        "alice-again",
        Some(bob_key),
        bob_key,
        None,
        now,
    );
    assert_eq!(outcome, Some(Outcome::Verified));
    assert_eq!(second, total - held, "only what bob lacked crossed");
    for (index, data) in &files {
        assert_eq!(
            kept.get(index).map(|d| blake3::hash(d)),
            Some(blake3::hash(data)),
            "file {index}"
        );
    }
}
