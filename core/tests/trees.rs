//! A server-role connection receiving trees (`docs/PROTOCOL.md` §6.12):
//! the whole life cycle, fed whole and byte by byte, and each hostile
//! offer refused with its documented code while the connection carries on.

use bytes::{Bytes, BytesMut};
use ferry_core::frame::{decode, Frame, HeldFile, ResumeKey, PREAMBLE};
use ferry_core::transfer::{Outcome, TransferEvent};
use ferry_core::tree::{Entry, EntryKind, Manifest, Mtime, TreeLimits, TreePath};
use ferry_core::{Code, Config, Connection, Event};
use std::time::Instant;

fn encode(frames: &[Frame]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for f in frames {
        f.encode(&mut out).unwrap();
    }
    out.to_vec()
}

fn config() -> Config {
    Config::default().trees(Some(TreeLimits::default()))
}

/// A server-role connection that welcomed its client and answered its
/// `FEATURES`, with the frames it sent so far dropped.
fn server(config: Config, now: Instant) -> Connection {
    let mut server = Connection::server(config, now);
    server.handle_input(now, &PREAMBLE);
    let hello = Frame::Hello {
        versions: vec![1],
        name: "alice".into(),
        room: "".into(),
        token: Bytes::new(),
    };
    server.handle_input(now, &encode(&[hello]));
    assert!(matches!(server.poll_event(), Some(Event::Hello { .. })));
    server.welcome(now, "alice".into(), "lobby".into()).unwrap();
    server.handle_input(now, &encode(&[Frame::Features { bits: 0 }]));
    let answer = sent(&mut server);
    assert_eq!(answer.last(), Some(&Frame::Features { bits: 1 }));
    server
}

/// The frames the connection sent since the last call, preamble skipped.
fn sent(conn: &mut Connection) -> Vec<Frame> {
    let mut out = BytesMut::new();
    while let Some(b) = conn.poll_transmit() {
        out.extend_from_slice(&b);
    }
    if out.starts_with(&PREAMBLE) {
        let _ = out.split_to(PREAMBLE.len());
    }
    std::iter::from_fn(|| decode(&mut out, 1 << 20).unwrap()).collect()
}

fn events(conn: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| conn.poll_event()).collect()
}

fn entry(path: &str, kind: EntryKind) -> Entry {
    Entry {
        path: TreePath::new(path, &TreeLimits::default()).unwrap(),
        kind,
        mtime: Mtime::new(1_700_000_000, 5).unwrap(),
    }
}

fn file(size: u64) -> EntryKind {
    EntryKind::File {
        size,
        executable: false,
    }
}

/// `demo`: `docs/`, `docs/a.bin` (3000 bytes), `empty/`, `zero` (0 bytes),
/// `run.sh` (5 bytes, executable).
fn demo() -> (Manifest, Vec<(u32, Vec<u8>)>) {
    let manifest = Manifest::new(
        Mtime::EPOCH,
        vec![
            entry("docs", EntryKind::Folder),
            entry("docs/a.bin", file(3000)),
            entry("empty", EntryKind::Folder),
            entry("zero", file(0)),
            entry(
                "run.sh",
                EntryKind::File {
                    size: 5,
                    executable: true,
                },
            ),
        ],
        &TreeLimits::default(),
    )
    .unwrap();
    let a: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    (
        manifest,
        vec![(1, a), (3, Vec::new()), (4, b"#!/x\n".to_vec())],
    )
}

fn offer(id: u32, manifest: &Manifest, name: &str) -> Frame {
    Frame::TreeOffer {
        id,
        total_size: manifest.total_size(),
        manifest_len: manifest.encode().len() as u32,
        name: name.into(),
        peer: "".into(),
    }
}

/// Every frame of a tree after `TREE_ACCEPT`, files in 1,024-byte chunks.
fn files_frames(id: u32, manifest: &Manifest, files: &[(u32, Vec<u8>)]) -> Vec<Frame> {
    let mut frames = Vec::new();
    for (index, data) in files {
        frames.push(Frame::TreeFile {
            id,
            index: *index,
            offset: 0,
        });
        for (n, chunk) in data.chunks(1024).enumerate() {
            frames.push(Frame::Data {
                id,
                offset: (n * 1024) as u64,
                data: Bytes::copy_from_slice(chunk),
            });
        }
        frames.push(Frame::TreeFileDone {
            id,
            index: *index,
            hash: *blake3::hash(data).as_bytes(),
        });
    }
    frames.push(Frame::Done {
        id,
        hash: *blake3::hash(&manifest.encode()).as_bytes(),
    });
    frames
}

/// Runs the whole life cycle, feeding the client's bytes in pieces of
/// `step` bytes, and returns the files as the application saw them.
fn receive_demo(step: usize) -> Vec<(u32, Vec<u8>, [u8; 32])> {
    let now = Instant::now();
    let mut server = server(config(), now);
    let (manifest, files) = demo();
    let bytes = manifest.encode();
    let (first, second) = bytes.split_at(10);
    let head = encode(&[
        offer(0, &manifest, "demo"),
        Frame::TreeManifest {
            id: 0,
            part: Bytes::copy_from_slice(first),
        },
        Frame::TreeManifest {
            id: 0,
            part: Bytes::copy_from_slice(second),
        },
    ]);
    for piece in head.chunks(step) {
        server.handle_input(now, piece);
    }
    let seen = events(&mut server);
    assert!(
        matches!(
            &seen[..],
            [
                Event::Transfer(TransferEvent::TreeOffered { id: 0, total_size: 3005, .. }),
                Event::Transfer(TransferEvent::TreeManifest { id: 0, manifest: m }),
            ] if *m == manifest
        ),
        "{seen:?}"
    );
    assert!(
        sent(&mut server).is_empty(),
        "nothing is answered before accept_tree"
    );
    server.accept_tree(now, 0).unwrap();
    assert_eq!(
        sent(&mut server),
        vec![Frame::TreeAccept {
            id: 0,
            window: config().window
        }]
    );
    let mut got: Vec<(u32, Vec<u8>, [u8; 32])> = Vec::new();
    let mut written = 0u64;
    for piece in encode(&files_frames(0, &manifest, &files)).chunks(step) {
        server.handle_input(now, piece);
        for event in events(&mut server) {
            match event {
                Event::Transfer(TransferEvent::TreeChunk {
                    index,
                    offset,
                    data,
                    ..
                }) => {
                    if got.last().is_none_or(|(i, _, _)| *i != index) {
                        got.push((index, Vec::new(), [0; 32]));
                    }
                    let file = &mut got.last_mut().unwrap().1;
                    assert_eq!(file.len() as u64, offset);
                    file.extend_from_slice(&data);
                    written += data.len() as u64;
                    server.confirm_written(now, 0, written).unwrap();
                }
                Event::Transfer(TransferEvent::TreeFileDone { index, hash, .. }) => {
                    if got.last().is_none_or(|(i, _, _)| *i != index) {
                        got.push((index, Vec::new(), [0; 32]));
                    }
                    got.last_mut().unwrap().2 = hash;
                }
                Event::Transfer(TransferEvent::Received { hash, .. }) => {
                    assert_eq!(hash, *blake3::hash(&bytes).as_bytes());
                    server.finish_receive(now, 0, Ok(())).unwrap();
                }
                Event::Transfer(TransferEvent::TreeFileStarted { offset, .. }) => {
                    assert_eq!(offset, 0, "nothing held");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let answers = sent(&mut server);
    assert_eq!(
        answers.last(),
        Some(&Frame::Verified { id: 0 }),
        "{answers:?}"
    );
    assert!(
        answers.contains(&Frame::Credit {
            id: 0,
            written: 3005
        }),
        "{answers:?}"
    );
    assert!(matches!(
        &events(&mut server)[..],
        [Event::Transfer(TransferEvent::Ended {
            id: 0,
            outcome: Outcome::Verified
        })]
    ));
    assert!(server.is_open());
    got
}

#[test]
fn a_tree_arrives_whole_fed_at_once_or_byte_by_byte() {
    let (_, files) = demo();
    let expected: Vec<(u32, Vec<u8>, [u8; 32])> = files
        .iter()
        .map(|(i, d)| (*i, d.clone(), *blake3::hash(d).as_bytes()))
        .collect();
    assert_eq!(receive_demo(1 << 20), expected);
    assert_eq!(receive_demo(1), expected);
    assert_eq!(receive_demo(7), expected);
}

/// The code of the REJECT for tree 0, and that the connection stayed open.
fn rejected(server: &mut Connection) -> Code {
    let frames = sent(server);
    assert!(server.is_open(), "{frames:?}");
    frames
        .iter()
        .find_map(|f| match f {
            Frame::Reject { id: 0, code, .. } => Some(*code),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no REJECT in {frames:?}"))
}

/// A manifest's bytes, written out by hand as a hostile peer would.
fn raw_manifest(entries: &[(&str, u8, u8, u64)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    out.extend_from_slice(&[0; 12]);
    for &(path, kind, flags, size) in entries {
        out.extend_from_slice(&(path.len() as u16).to_be_bytes());
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&size.to_be_bytes());
        out.extend_from_slice(&[0; 12]);
    }
    out
}

fn send_raw(server: &mut Connection, now: Instant, name: &str, bytes: &[u8], total: u64) {
    server.handle_input(
        now,
        &encode(&[
            Frame::TreeOffer {
                id: 0,
                total_size: total,
                manifest_len: bytes.len() as u32,
                name: name.into(),
                peer: "".into(),
            },
            Frame::TreeManifest {
                id: 0,
                part: Bytes::copy_from_slice(bytes),
            },
        ]),
    );
}

#[test]
fn hostile_trees_are_refused_with_their_codes_and_the_connection_carries_on() {
    let now = Instant::now();
    let cases: Vec<(&str, &str, Vec<u8>, u64, Code)> = vec![
        (
            "..",
            "leaving the tree",
            raw_manifest(&[("..", 0, 0, 0)]),
            0,
            Code::BAD_FILE_NAME,
        ),
        (
            "absolute",
            "ok",
            raw_manifest(&[("/etc", 0, 0, 0)]),
            0,
            Code::BAD_FILE_NAME,
        ),
        (
            "case clash",
            "ok",
            raw_manifest(&[("Makefile", 1, 0, 1), ("makefile", 1, 0, 1)]),
            2,
            Code::BAD_FILE_NAME,
        ),
        (
            "bad top name",
            "a/b",
            raw_manifest(&[("x", 0, 0, 0)]),
            0,
            Code::BAD_FILE_NAME,
        ),
        (
            "a truncated entry",
            "ok",
            [&[0, 0, 0, 1][..], &[0; 12], &[0, 5, b'a']].concat(),
            0,
            Code::BAD_MANIFEST,
        ),
        (
            "an unknown kind",
            "ok",
            raw_manifest(&[("x", 9, 0, 0)]),
            0,
            Code::BAD_MANIFEST,
        ),
        // A count of 4 billion entries is over the limit before any is read.
        ("garbage", "ok", vec![0xff; 40], 0, Code::TREE_TOO_LARGE),
        (
            "total differs",
            "ok",
            raw_manifest(&[("x", 1, 0, 5)]),
            6,
            Code::BAD_MANIFEST,
        ),
        ("too short", "ok", vec![0; 3], 0, Code::BAD_MANIFEST),
    ];
    for (what, name, bytes, total, code) in cases {
        let mut server = server(config(), now);
        send_raw(&mut server, now, name, &bytes, total);
        assert_eq!(rejected(&mut server), code, "{what}");
        // The connection goes on: a ping is answered.
        server.handle_input(now, &encode(&[Frame::Ping { nonce: 1 }]));
        assert_eq!(sent(&mut server), vec![Frame::Pong { nonce: 1 }], "{what}");
    }

    // Over the limits, refused from the offer or the manifest.
    let tight = |f: fn(&mut TreeLimits)| {
        let mut limits = TreeLimits::default();
        f(&mut limits);
        server(Config::default().trees(Some(limits)), now)
    };
    let deep = raw_manifest(&[("a", 0, 0, 0), ("a/b", 0, 0, 0), ("a/b/c", 0, 0, 0)]);
    let mut s = tight(|l| l.max_depth = 2);
    send_raw(&mut s, now, "ok", &deep, 0);
    assert_eq!(rejected(&mut s), Code::TREE_TOO_LARGE, "depth");
    let mut s = tight(|l| l.max_entries = 2);
    send_raw(&mut s, now, "ok", &deep, 0);
    assert_eq!(rejected(&mut s), Code::TREE_TOO_LARGE, "entries");
    let mut s = tight(|l| l.max_manifest_bytes = 20);
    send_raw(&mut s, now, "ok", &deep, 0);
    assert_eq!(rejected(&mut s), Code::TREE_TOO_LARGE, "manifest length");
    assert!(
        events(&mut s)
            .iter()
            .all(|e| !matches!(e, Event::Transfer(TransferEvent::TreeOffered { .. }))),
        "refused from the offer, before the manifest"
    );
    let mut s = tight(|l| l.max_total_bytes = 10);
    send_raw(&mut s, now, "ok", &raw_manifest(&[("x", 1, 0, 11)]), 11);
    assert_eq!(rejected(&mut s), Code::FILE_TOO_LARGE, "total size");

    // To a member: the connection hands the offer, with its recipient, to
    // whoever drives it (a hub relays it, or refuses: see
    // core/tests/tree_relay.rs), and refuses nothing itself.
    let mut s = server(config(), now);
    let (manifest, _) = demo();
    let Frame::TreeOffer {
        total_size,
        manifest_len,
        ..
    } = offer(0, &manifest, "demo")
    else {
        unreachable!()
    };
    s.handle_input(
        now,
        &encode(&[Frame::TreeOffer {
            id: 0,
            total_size,
            manifest_len,
            name: "demo".into(),
            peer: "bob".into(),
        }]),
    );
    assert!(
        events(&mut s).iter().any(|e| matches!(
            e,
            Event::Transfer(TransferEvent::TreeOffered { peer, .. }) if &**peer == "bob"
        )),
        "to a member"
    );
}

/// A connection that accepted the demo tree, with its events drained.
fn accepted(now: Instant) -> (Connection, Manifest, Vec<(u32, Vec<u8>)>) {
    let mut server = server(config(), now);
    let (manifest, files) = demo();
    server.handle_input(
        now,
        &encode(&[
            offer(0, &manifest, "demo"),
            Frame::TreeManifest {
                id: 0,
                part: manifest.encode().into(),
            },
        ]),
    );
    let _ = events(&mut server);
    server.accept_tree(now, 0).unwrap();
    let _ = sent(&mut server);
    (server, manifest, files)
}

fn error_code(server: &mut Connection) -> Option<Code> {
    sent(server).iter().find_map(|f| match f {
        Frame::Error { code, .. } => Some(*code),
        _ => None,
    })
}

#[test]
fn files_out_of_order_data_outside_a_file_and_a_wrong_manifest_hash() {
    let now = Instant::now();
    let tree_file = |index| Frame::TreeFile {
        id: 0,
        index,
        offset: 0,
    };
    // A folder, a file out of order, a file not from 0.
    for frame in [
        tree_file(0),
        tree_file(3),
        Frame::TreeFile {
            id: 0,
            index: 1,
            offset: 5,
        },
    ] {
        let (mut s, _, _) = accepted(now);
        s.handle_input(now, &encode(std::slice::from_ref(&frame)));
        assert_eq!(
            error_code(&mut s),
            Some(Code::UNEXPECTED_FRAME),
            "{frame:?}"
        );
    }
    // DATA before any TREE_FILE.
    let (mut s, _, _) = accepted(now);
    let data = Frame::Data {
        id: 0,
        offset: 0,
        data: Bytes::from(vec![0; 1024]),
    };
    s.handle_input(now, &encode(&[data]));
    assert_eq!(error_code(&mut s), Some(Code::UNEXPECTED_FRAME));
    // DONE before every file.
    let (mut s, manifest, _) = accepted(now);
    let done = Frame::Done {
        id: 0,
        hash: *blake3::hash(&manifest.encode()).as_bytes(),
    };
    s.handle_input(now, &encode(&[done]));
    assert_eq!(error_code(&mut s), Some(Code::UNEXPECTED_FRAME));
    // A DONE whose hash is not the manifest's: FAILED, not fatal.
    let (mut s, manifest, files) = accepted(now);
    let mut frames = files_frames(0, &manifest, &files);
    *frames.last_mut().unwrap() = Frame::Done {
        id: 0,
        hash: [7; 32],
    };
    s.handle_input(now, &encode(&frames));
    let answers = sent(&mut s);
    assert!(
        answers.iter().any(|f| matches!(
            f,
            Frame::Failed {
                id: 0,
                code: Code::HASH_MISMATCH,
                ..
            }
        )),
        "{answers:?}"
    );
    assert!(s.is_open());
}

#[test]
fn data_past_the_window_is_a_flow_control_error() {
    let now = Instant::now();
    let mut server = server(config().window(2048), now);
    let (manifest, files) = demo();
    server.handle_input(
        now,
        &encode(&[
            offer(0, &manifest, "demo"),
            Frame::TreeManifest {
                id: 0,
                part: manifest.encode().into(),
            },
        ]),
    );
    server.accept_tree(now, 0).unwrap();
    let _ = sent(&mut server);
    // 3,000 bytes of a.bin with nothing confirmed: the third chunk is past
    // the window of 2,048.
    let frames = files_frames(0, &manifest, &files);
    server.handle_input(now, &encode(&frames[..4]));
    assert_eq!(error_code(&mut server), Some(Code::FLOW_CONTROL));
}

#[test]
fn a_rejected_tree_ignores_its_parts_in_flight() {
    let now = Instant::now();
    let mut server = server(config(), now);
    let (manifest, _) = demo();
    let bytes = Bytes::from(manifest.encode());
    server.handle_input(
        now,
        &encode(&[
            offer(0, &manifest, "demo"),
            Frame::TreeManifest {
                id: 0,
                part: bytes.slice(..20),
            },
        ]),
    );
    // The header is read, 4 bytes of the first entry wait for the rest.
    let held = server.manifest_bytes_held();
    let bound = ferry_core::tree::decoded_bytes_bound(bytes.len(), &TreeLimits::default());
    assert!((4..=bound).contains(&held), "{held}");
    assert!(matches!(
        &events(&mut server)[..],
        [Event::Transfer(TransferEvent::TreeOffered { id: 0, .. })]
    ));
    server
        .reject(now, 0, Code::INBOX_FULL, "inbox full")
        .unwrap();
    assert_eq!(rejected(&mut server), Code::INBOX_FULL);
    assert_eq!(server.manifest_bytes_held(), 0, "freed with the refusal");
    server.handle_input(
        now,
        &encode(&[Frame::TreeManifest {
            id: 0,
            part: bytes.slice(20..),
        }]),
    );
    assert_eq!(server.manifest_bytes_held(), 0);
    assert!(sent(&mut server).is_empty());
    assert!(server.is_open());
}

#[test]
fn a_server_without_tree_limits_announces_no_trees() {
    let now = Instant::now();
    let mut server = Connection::server(Config::default(), now);
    server.handle_input(now, &PREAMBLE);
    let hello = Frame::Hello {
        versions: vec![1],
        name: "alice".into(),
        room: "".into(),
        token: Bytes::new(),
    };
    server.handle_input(now, &encode(&[hello]));
    let _ = events(&mut server);
    server.welcome(now, "alice".into(), "".into()).unwrap();
    let _ = sent(&mut server);
    server.handle_input(now, &encode(&[Frame::Features { bits: 1 }]));
    assert_eq!(sent(&mut server), vec![Frame::Features { bits: 0 }]);
}

/// A manifest of `files` empty files at the top.
fn many_files(files: usize) -> Manifest {
    let entries = (0..files)
        .map(|i| entry(&format!("file {i:05}"), file(0)))
        .collect();
    Manifest::new(Mtime::EPOCH, entries, &TreeLimits::default()).unwrap()
}

#[test]
fn manifest_parts_cost_no_frame_tokens_and_are_at_most_64_kib() {
    let now = Instant::now();
    // 3,000 files: 108,016 bytes of manifest, sent in 100 parts while the
    // frame burst is 10. The offer was priced for all of them.
    let manifest = many_files(3000);
    let bytes = Bytes::from(manifest.encode());
    assert!(bytes.len() > 65_536);
    let mut first = server(config().frame_burst(10), now);
    let mut frames = vec![offer(0, &manifest, "many")];
    for part in bytes.chunks(bytes.len().div_ceil(100)) {
        frames.push(Frame::TreeManifest {
            id: 0,
            part: Bytes::copy_from_slice(part),
        });
    }
    first.handle_input(now, &encode(&frames));
    assert_eq!(error_code(&mut first), None);
    assert!(events(&mut first).iter().any(|e| matches!(
        e,
        Event::Transfer(TransferEvent::TreeManifest { id: 0, .. })
    )));

    // The same manifest in one part of 108,016 bytes: over 65,536.
    let mut second = server(config(), now);
    second.handle_input(
        now,
        &encode(&[
            offer(0, &manifest, "many"),
            Frame::TreeManifest { id: 0, part: bytes },
        ]),
    );
    assert_eq!(error_code(&mut second), Some(Code::UNEXPECTED_FRAME));
}

/// The demo tree offered again with `RESUME`, its manifest whole; the
/// server's events drained.
fn resumed_offer(now: Instant, key: ResumeKey) -> (Connection, Manifest, Vec<(u32, Vec<u8>)>) {
    let mut server = server(config(), now);
    let (manifest, files) = demo();
    server.handle_input(
        now,
        &encode(&[
            Frame::Resume { id: 0, key },
            offer(0, &manifest, "demo"),
            Frame::TreeManifest {
                id: 0,
                part: manifest.encode().into(),
            },
        ]),
    );
    let offered = events(&mut server);
    assert!(
        offered.iter().any(|e| matches!(
            e,
            Event::Transfer(TransferEvent::TreeOffered { resume: Some(k), .. }) if *k == key
        )),
        "{offered:?}"
    );
    (server, manifest, files)
}

#[test]
fn a_resumed_tree_lists_what_is_held_and_its_files_start_there() {
    let now = Instant::now();
    let key = ResumeKey::from_bytes([9; ResumeKey::LEN]);
    let (mut server, manifest, files) = resumed_offer(now, key);
    let a = &files[0].1;
    let held = [
        // docs/a.bin: its first 2,048 bytes.
        HeldFile {
            index: 1,
            offset: 2048,
            prefix_hash: *blake3::hash(&a[..2048]).as_bytes(),
        },
        // run.sh: whole.
        HeldFile {
            index: 4,
            offset: 5,
            prefix_hash: *blake3::hash(b"#!/x\n").as_bytes(),
        },
    ];
    // What the application may list is checked: a folder, out of order,
    // past a file's end.
    for bad in [
        vec![HeldFile {
            index: 0,
            ..held[0]
        }],
        vec![held[1], held[0]],
        vec![HeldFile {
            offset: 3001,
            ..held[0]
        }],
    ] {
        assert!(
            server.accept_tree_resumable(now, 0, key, &bad).is_err(),
            "{bad:?}"
        );
    }
    server.accept_tree_resumable(now, 0, key, &held).unwrap();
    let answers = sent(&mut server);
    assert_eq!(
        answers,
        [
            Frame::ResumeKey { id: 0, key },
            Frame::TreeHeld {
                id: 0,
                records: held.to_vec()
            },
            Frame::TreeAccept {
                id: 0,
                window: config().window
            },
        ]
    );
    // The sender checked both: a.bin goes on from 2,048, run.sh is there.
    let mut frames = vec![
        Frame::TreeFile {
            id: 0,
            index: 1,
            offset: 2048,
        },
        Frame::Data {
            id: 0,
            offset: 2048,
            data: Bytes::copy_from_slice(&a[2048..]),
        },
        Frame::TreeFileDone {
            id: 0,
            index: 1,
            hash: *blake3::hash(a).as_bytes(),
        },
        Frame::TreeFile {
            id: 0,
            index: 3,
            offset: 0,
        },
        Frame::TreeFileDone {
            id: 0,
            index: 3,
            hash: *blake3::hash(b"").as_bytes(),
        },
        Frame::TreeFile {
            id: 0,
            index: 4,
            offset: 5,
        },
        Frame::TreeFileDone {
            id: 0,
            index: 4,
            hash: *blake3::hash(b"#!/x\n").as_bytes(),
        },
    ];
    frames.push(Frame::Done {
        id: 0,
        hash: *blake3::hash(&manifest.encode()).as_bytes(),
    });
    server.handle_input(now, &encode(&frames));
    let seen = events(&mut server);
    let chunks: Vec<(u32, u64, usize)> = seen
        .iter()
        .filter_map(|e| match e {
            Event::Transfer(TransferEvent::TreeChunk {
                index,
                offset,
                data,
                ..
            }) => Some((*index, *offset, data.len())),
            _ => None,
        })
        .collect();
    assert_eq!(chunks, [(1, 2048, 952)]);
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::Transfer(TransferEvent::Received { id: 0, .. }))),
        "{seen:?}"
    );
    assert!(server.is_open());
}

#[test]
fn a_resumed_file_starts_at_zero_or_the_offset_held_and_nowhere_else() {
    let now = Instant::now();
    let key = ResumeKey::from_bytes([9; ResumeKey::LEN]);
    let record = HeldFile {
        index: 1,
        offset: 2048,
        prefix_hash: [1; 32],
    };
    // From 0 (the sender's bytes differ): allowed.
    let (mut server, _, _) = resumed_offer(now, key);
    server
        .accept_tree_resumable(now, 0, key, &[record])
        .unwrap();
    let _ = sent(&mut server);
    let from_zero = Frame::TreeFile {
        id: 0,
        index: 1,
        offset: 0,
    };
    server.handle_input(now, &encode(&[from_zero]));
    assert_eq!(error_code(&mut server), None);
    // Anywhere else, or at an offset for a file not listed: refused.
    for (index, offset) in [(1, 1024), (1, 3000), (4, 2)] {
        let (mut server, _, _) = resumed_offer(now, key);
        server
            .accept_tree_resumable(now, 0, key, &[record])
            .unwrap();
        let _ = sent(&mut server);
        if index == 4 {
            // Files 1 and 3 first, in order.
            let a = vec![0u8; 3000];
            server.handle_input(
                now,
                &encode(&[
                    Frame::TreeFile {
                        id: 0,
                        index: 1,
                        offset: 0,
                    },
                    Frame::Data {
                        id: 0,
                        offset: 0,
                        data: Bytes::from(a),
                    },
                    Frame::TreeFileDone {
                        id: 0,
                        index: 1,
                        hash: [0; 32],
                    },
                    Frame::TreeFile {
                        id: 0,
                        index: 3,
                        offset: 0,
                    },
                    Frame::TreeFileDone {
                        id: 0,
                        index: 3,
                        hash: [0; 32],
                    },
                ]),
            );
        }
        let frame = Frame::TreeFile {
            id: 0,
            index,
            offset,
        };
        server.handle_input(now, &encode(std::slice::from_ref(&frame)));
        assert_eq!(
            error_code(&mut server),
            Some(Code::UNEXPECTED_FRAME),
            "{frame:?}"
        );
    }
    // Without RESUME before the offer, nothing may be listed.
    let (mut server, _, _) = accepted_unanswered(now);
    assert!(server
        .accept_tree_resumable(now, 0, key, &[record])
        .is_err());
    server.accept_tree_resumable(now, 0, key, &[]).unwrap();
    assert_eq!(
        sent(&mut server),
        [
            Frame::ResumeKey { id: 0, key },
            Frame::TreeAccept {
                id: 0,
                window: config().window
            },
        ]
    );
}

/// The demo tree offered without `RESUME`, its manifest whole, not yet
/// answered.
fn accepted_unanswered(now: Instant) -> (Connection, Manifest, Vec<(u32, Vec<u8>)>) {
    let mut server = server(config(), now);
    let (manifest, files) = demo();
    server.handle_input(
        now,
        &encode(&[
            offer(0, &manifest, "demo"),
            Frame::TreeManifest {
                id: 0,
                part: manifest.encode().into(),
            },
        ]),
    );
    let _ = events(&mut server);
    (server, manifest, files)
}
