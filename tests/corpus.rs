//! The fuzz corpus as a regression suite that runs on stable Rust.
//!
//! Every file under `fuzz/corpus/<target>/` goes through the harness of the
//! same name in `ferry_core::fuzzing` (or, for `tls_server` and
//! `noise_receive`, which need ferry-tls and ferry-noise, in
//! `tls_server_harness/` and `noise_harness/` beside this file): the committed
//! seeds, and any input that once crashed a target and was added after the
//! fix. Each target must have at least one file.
//!
//! It lives in the workspace's tests, not ferry-core's, because the corpus
//! and the targets are in `fuzz/`, outside every published crate.
//!
//! The `seed-*` files are written by the ignored test below; after a change to
//! the wire format, regenerate them with
//!
//! ```text
//! cargo test -p ferry --test corpus -- --ignored regenerate_seeds
//! ```

mod noise_harness;
mod tls_server_harness;

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use ferry_core::code::Code;
use ferry_core::frame::{Frame, Settings};
use ferry_core::fuzzing;
use ferry_core::text::Text;
use ferry_core::ResumeKey;

/// A harness in `ferry_core::fuzzing`: it panics when it finds a bug.
type Harness = fn(&[u8]);

/// Every fuzz target, by the name of its file in `fuzz/fuzz_targets/`.
const TARGETS: &[(&str, Harness)] = &[
    ("frame_decode", fuzzing::frame_decode),
    // The core reads no clock: the hub harness is handed an instant.
    ("hub_session", |data| {
        fuzzing::hub_session(data, Instant::now())
    }),
    ("file_name", fuzzing::file_name),
    ("transfer_session", |data| {
        fuzzing::transfer_session(data, Instant::now())
    }),
    ("tls_server", tls_server_harness::tls_server),
    ("noise_receive", noise_harness::noise_receive),
    ("tree_manifest", fuzzing::tree_manifest),
];

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

#[test]
fn every_target_has_a_harness_here() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets");
    let mut on_disk: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = TARGETS.iter().map(|(name, _)| name.to_string()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "fuzz/fuzz_targets/ and TARGETS in tests/corpus.rs disagree"
    );
}

#[test]
fn corpus_passes_every_harness() {
    for &(target, harness) in TARGETS {
        let dir = corpus_dir(target);
        let mut files: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read corpus {}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "corpus {} is empty", dir.display());
        let mut failed = Vec::new();
        for file in &files {
            let data = fs::read(file).unwrap();
            if catch_unwind(AssertUnwindSafe(|| harness(&data))).is_err() {
                failed.push(file.display().to_string());
            }
        }
        assert!(
            failed.is_empty(),
            "{target}: {} of {} corpus files fail:\n  {}",
            failed.len(),
            files.len(),
            failed.join("\n  ")
        );
        println!("{target}: {} corpus files pass", files.len());
    }
}

/// Rewrites `fuzz/corpus/*/seed-*`. The output is deterministic,
/// so running it without a wire-format change leaves the files as they are.
#[test]
#[ignore = "writes files; run by hand after a wire-format change"]
fn regenerate_seeds() {
    for (target, seeds) in [
        ("frame_decode", frame_decode_seeds()),
        ("hub_session", hub_session_seeds()),
        ("file_name", file_name_seeds()),
        ("transfer_session", transfer_session_seeds()),
        ("noise_receive", noise_receive_seeds()),
        ("tree_manifest", tree_manifest_seeds()),
    ] {
        let dir = corpus_dir(target);
        fs::create_dir_all(&dir).unwrap();
        for (name, data) in seeds {
            fs::write(dir.join(format!("seed-{name}")), data).unwrap();
        }
    }
}

/// Manifests for [`fuzzing::tree_manifest`]: honest trees, and every kind
/// of hostile one a receiver must refuse, as bytes and as path lists.
fn tree_manifest_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use ferry_core::tree::{Entry, EntryKind, Manifest, Mtime, TreeLimits, TreePath};
    // The selector byte: bit 0 path lines (else bytes), bit 1 tight limits.
    const BYTES: u8 = 0;
    const LINES: u8 = 1;
    const TIGHT: u8 = 2;
    // Entries as a hostile peer encodes them, unchecked: (path, kind
    // (0 folder, 1 file), flags, size).
    let raw = |selector: u8, entries: &[(&str, u8, u8, u64)]| {
        let mut out = vec![selector];
        out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        out.extend_from_slice(&[0; 12]);
        for &(path, kind, flags, size) in entries {
            out.extend_from_slice(&(path.len() as u16).to_be_bytes());
            out.extend_from_slice(path.as_bytes());
            out.extend_from_slice(&[kind, flags]);
            out.extend_from_slice(&size.to_be_bytes());
            out.extend_from_slice(&1_700_000_000u64.to_be_bytes());
            out.extend_from_slice(&0u32.to_be_bytes());
        }
        out
    };
    let limits = TreeLimits::default();
    let at = Mtime::new(1_700_000_000, 123_456_789).unwrap();
    let entry = |path: &str, kind| Entry {
        path: TreePath::new(path, &limits).unwrap(),
        kind,
        mtime: at,
    };
    let file = |size, executable| EntryKind::File { size, executable };
    let honest = Manifest::new(
        at,
        vec![
            entry("src", EntryKind::Folder),
            entry("src/bin", EntryKind::Folder),
            entry("src/bin/ferry.rs", file(1234, false)),
            entry("empty", EntryKind::Folder),
            entry("报告 2024.pdf", file(99, false)),
            entry("run.sh", file(20, true)),
        ],
        &limits,
    )
    .unwrap();
    let lines = |selector: u8, text: &str| [&[selector][..], text.as_bytes()].concat();
    vec![
        ("tree", [vec![BYTES], honest.encode()].concat()),
        ("empty", raw(BYTES, &[])),
        ("traversal", raw(BYTES, &[("a", 0, 0, 0), ("a/../../x", 1, 0, 1)])),
        ("absolute", raw(BYTES, &[("/etc/passwd", 1, 0, 1)])),
        ("separator", raw(BYTES, &[("a\\..\\x", 1, 0, 1)])),
        ("case-clash", raw(BYTES, &[("Makefile", 1, 0, 1), ("makefile", 1, 0, 1)])),
        ("file-and-folder", raw(BYTES, &[("a", 0, 0, 0), ("a", 1, 0, 1)])),
        ("missing-parent", raw(BYTES, &[("a/b/c", 1, 0, 1)])),
        ("huge-count", {
            let mut bytes = raw(BYTES, &[]);
            bytes[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
            bytes
        }),
        (
            "over-tight-limits",
            raw(
                TIGHT,
                &[("d", 0, 0, 0), ("d/d", 0, 0, 0), ("d/d/d", 0, 0, 0), ("d/d/d/f", 1, 0, 11)],
            ),
        ),
        ("truncated", {
            let mut bytes = [vec![BYTES], honest.encode()].concat();
            bytes.truncate(bytes.len() - 5);
            bytes
        }),
        (
            "lines",
            lines(
                LINES,
                "d src\nf src/main.rs\nd src/empty\nf ../evil\nf /etc/passwd\nd SRC\nf src/aux.txt\nf src/Main.rs",
            ),
        ),
        (
            "lines-tight",
            lines(LINES | TIGHT, "d a\nd a/b\nd a/b/c\nd a/b/c/d\nf a/b/c/file-with-a-long-name\nf a/1\nf a/2"),
        ),
    ]
}

/// Sessions of [`noise_harness::noise_receive`]: the handshake, data,
/// and data duplicated, tampered with, cut short and made up.
fn noise_receive_seeds() -> Vec<(&'static str, Vec<u8>)> {
    // The first byte: 1, the handshake first; 0, not. Operations: 0 a
    // datagram from the input, 1 the honest peer seals, 2 replays, 3 flips a
    // byte, 4 cuts short, 5 time passes, 6 a round trip, 7 the peer
    // restarts, 8 we seal.
    const SHAKEN: u8 = 1;
    const FRESH: u8 = 0;
    let say = |text: &str| [&[1, text.len() as u8][..], text.as_bytes()].concat();
    let raw = |datagram: &[u8]| [&[0, datagram.len() as u8][..], datagram].concat();
    let header = |kind: u8, len: u32| [&[kind][..], &len.to_be_bytes()].concat();
    vec![
        // Either peer may stay initiator: the seeds differ in who does.
        ("handshake", vec![FRESH, 6, 6, 6]),
        ("handshake-other-way", vec![FRESH | 2, 6, 6, 6]),
        (
            "data",
            [vec![SHAKEN], say("hello"), say("and again"), say("")].concat(),
        ),
        (
            "duplicate",
            [vec![SHAKEN], say("once"), vec![2, 0, 2, 0], say("twice")].concat(),
        ),
        (
            "tampered",
            [vec![SHAKEN], say("mine"), vec![3, 0, 0, 0x4b, 3, 0, 20, 1]].concat(),
        ),
        (
            "truncated",
            [vec![SHAKEN], say("cut"), vec![4, 0, 20]].concat(),
        ),
        (
            "queued-then-handshake",
            vec![FRESH, 8, 2, b'h', b'i', 8, 2, b'h', b'o', 6, 6, 6],
        ),
        (
            "restart",
            [
                vec![SHAKEN],
                say("before"),
                vec![7, 6, 6],
                say("after"),
                vec![2, 4],
            ]
            .concat(),
        ),
        (
            "retransmissions",
            [
                vec![FRESH, 2, 0, 7, 6],
                [5, 0x03, 0xe8].repeat(8),
                vec![6, 6],
            ]
            .concat(),
        ),
        (
            "garbage",
            [
                vec![SHAKEN],
                raw(b"hello in clear text"),
                raw(&[header(0x48, 48), vec![7; 48]].concat()),
                raw(&[header(0x49, 48), vec![9; 48]].concat()),
                raw(&[header(0x4a, 30), vec![0; 30]].concat()),
                raw(&header(0x4a, 999)),
                vec![0, 255],
                vec![0xff; 1500],
            ]
            .concat(),
        ),
    ]
}

/// Uploads of a few sizes: untouched, cut and resumed, corrupted in
/// transit, delayed past the idle timeout.
fn transfer_session_seeds() -> Vec<(&'static str, Vec<u8>)> {
    // Operations: 0-2 carry bytes up, 3-4 down, 5 time, 6 flip, 7 cut.
    let head = |size: u16, seed: u8| [&size.to_be_bytes()[..], &[seed]].concat();
    let moves = |n: usize| [0u8, 40, 3, 40].repeat(n);
    vec![
        ("empty", head(0, 1)),
        ("clean", [head(10_000, 2), moves(30)].concat()),
        (
            "cut-resume",
            [head(16_384, 3), moves(12), vec![7, 0], moves(30)].concat(),
        ),
        ("flip", [head(9_000, 4), vec![6, 90], moves(40)].concat()),
        (
            "cut-flip-cut",
            [
                head(12_345, 5),
                moves(6),
                vec![6, 20],
                moves(6),
                vec![7, 0],
                moves(4),
                vec![7, 0],
            ]
            .concat(),
        ),
        (
            "idle",
            [head(5_000, 6), moves(3), [5, 255].repeat(8), moves(20)].concat(),
        ),
    ]
}

/// One operation of [`fuzzing::hub_session`]: `frames` arrive from `client`.
fn arrive(client: u8, frames: &[Frame]) -> Vec<u8> {
    let mut body = BytesMut::new();
    for frame in frames {
        frame.encode(&mut body).unwrap();
    }
    // Operations carry at most 255 bytes: longer input arrives in pieces.
    body.chunks(255)
        .flat_map(|piece| [&[0, client, piece.len() as u8][..], piece].concat())
        .collect()
}

/// Time passes: `millis` (below 65,536) and a timer check.
fn wait(millis: u16) -> Vec<u8> {
    [&[2, 0, 2][..], &millis.to_be_bytes()].concat()
}

fn hub_session_seeds() -> Vec<(&'static str, Vec<u8>)> {
    const HANDSHAKE: u8 = 1;
    let hash = |b: &[u8]| *blake3::hash(b).as_bytes();
    let chat = [
        vec![HANDSHAKE],
        arrive(
            0,
            &[Frame::Say {
                text: text("hi all"),
            }],
        ),
        arrive(1, &[Frame::Who]),
        arrive(
            2,
            &[Frame::DirectTo {
                to: text("USER0"),
                text: text("psst"),
            }],
        ),
        wait(20_000),
        arrive(3, &[Frame::Ping { nonce: 9 }, Frame::Bye]),
        vec![3, 1, 0],
    ]
    .concat();
    let upload = [
        vec![HANDSHAKE],
        arrive(
            0,
            &[
                Frame::Offer {
                    id: 0,
                    size: 10,
                    name: text("notes.txt"),
                    peer: Text::new(),
                },
                Frame::Data {
                    id: 0,
                    offset: 0,
                    data: Bytes::from_static(b"0123456789"),
                },
                Frame::Done {
                    id: 0,
                    hash: hash(b"0123456789"),
                },
            ],
        ),
    ]
    .concat();
    let relay = [
        vec![HANDSHAKE],
        arrive(
            0,
            &[Frame::Offer {
                id: 0,
                size: 4,
                name: text("a.txt"),
                peer: text("user1"),
            }],
        ),
        arrive(
            1,
            &[Frame::Accept {
                id: 1,
                offset: 0,
                window: 1 << 20,
                prefix_hash: hash(b""),
            }],
        ),
        arrive(
            0,
            &[Frame::Data {
                id: 0,
                offset: 0,
                data: Bytes::from_static(b"abcd"),
            }],
        ),
        arrive(1, &[Frame::Credit { id: 1, written: 4 }]),
        arrive(
            0,
            &[Frame::Done {
                id: 0,
                hash: hash(b"abcd"),
            }],
        ),
        arrive(1, &[Frame::Verified { id: 1 }]),
    ]
    .concat();
    // A relayed offer that presents a key, answered with a key.
    let relay_resume = [
        vec![HANDSHAKE],
        arrive(
            0,
            &[
                Frame::Resume {
                    id: 0,
                    key: ResumeKey::from_bytes([1; 16]),
                },
                Frame::Offer {
                    id: 0,
                    size: 4,
                    name: text("a.txt"),
                    peer: text("user1"),
                },
            ],
        ),
        arrive(
            1,
            &[
                Frame::ResumeKey {
                    id: 1,
                    key: ResumeKey::from_bytes([2; 16]),
                },
                Frame::Accept {
                    id: 1,
                    offset: 2,
                    window: 1 << 20,
                    prefix_hash: hash(b"ab"),
                },
            ],
        ),
        arrive(
            0,
            &[Frame::Data {
                id: 0,
                offset: 2,
                data: Bytes::from_static(b"cd"),
            }],
        ),
    ]
    .concat();
    let mut raw_hello = BytesMut::from(&ferry_core::frame::PREAMBLE[..]);
    Frame::Hello {
        versions: vec![1],
        name: text("late"),
        room: text("den"),
        token: Bytes::new(),
    }
    .encode(&mut raw_hello)
    .unwrap();
    let (first, second) = raw_hello.split_at(11);
    let handshake_in_pieces = [
        vec![0],
        [&[0, 0, first.len() as u8][..], first].concat(),
        wait(5_000),
        [&[1, 0, second.len() as u8][..], second].concat(),
        wait(40_000),
    ]
    .concat();
    let garbage = [vec![HANDSHAKE], vec![0, 2, 8], b"\x30\0\0\0\0junk".to_vec()].concat();
    vec![
        ("chat", chat),
        ("upload", upload),
        ("relay", relay),
        ("relay-resume", relay_resume),
        ("handshake-in-pieces", handshake_in_pieces),
        ("garbage", garbage),
    ]
}

fn file_name_seeds() -> Vec<(&'static str, Vec<u8>)> {
    [
        ("plain", "report.pdf"),
        ("unicode", "报告 2024.pdf"),
        ("traversal", "../../etc/passwd"),
        ("windows", "C:\\Windows\\aux.txt"),
        ("device", "COM1 .txt"),
        ("escape", "\u{1b}[31mred"),
        ("bidi", "\u{202e}fdp.exe"),
    ]
    .into_iter()
    .map(|(name, text)| (name, text.as_bytes().to_vec()))
    .collect()
}

/// The selector byte for [`fuzzing::frame_decode`]: a body limit of
/// `1 << limit_log2` bytes, the stream fed in `piece`-byte pieces.
fn selector(limit_log2: u8, piece: u8) -> u8 {
    assert!(limit_log2 <= 20 && piece >= 1);
    (21 * (piece - 1))
        .checked_add(limit_log2)
        .expect("limit and piece size fit in the selector byte")
}

fn seed(limit_log2: u8, piece: u8, frames: &[Frame]) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.extend_from_slice(&[selector(limit_log2, piece)]);
    for frame in frames {
        frame.encode(&mut out).unwrap();
    }
    out.to_vec()
}

fn text(s: &'static str) -> Text {
    Text::from_static(s)
}

fn frame_decode_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let chat = vec![
        Frame::Say {
            text: text("hello, room!"),
        },
        Frame::Message {
            seq: 1,
            from: text("alice"),
            text: text("hello, room!"),
        },
        Frame::Joined {
            seq: 2,
            name: text("bob"),
        },
        Frame::Who,
        Frame::Members {
            names: vec![text("alice"), text("bob")],
        },
        Frame::DirectTo {
            to: text("bob"),
            text: text("psst"),
        },
        Frame::DirectFrom {
            from: text("alice"),
            text: text("psst"),
        },
        Frame::Bounce {
            code: Code::NO_SUCH_USER,
            reason: text("no user carol"),
        },
        Frame::Left {
            seq: 3,
            name: text("bob"),
            code: Code::QUIT,
        },
    ];
    let transfer = vec![
        Frame::Offer {
            id: 2,
            size: 10,
            name: text("notes.txt"),
            peer: text("bob"),
        },
        Frame::Accept {
            id: 2,
            offset: 4,
            window: 1 << 20,
            prefix_hash: *blake3::hash(b"0123").as_bytes(),
        },
        Frame::Data {
            id: 2,
            offset: 4,
            data: Bytes::from_static(b"456789"),
        },
        Frame::Credit { id: 2, written: 10 },
        Frame::Done {
            id: 2,
            hash: *blake3::hash(b"0123456789").as_bytes(),
        },
        Frame::Verified { id: 2 },
    ];
    let big_chunk: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let mut partial = seed(
        16,
        1,
        &[Frame::Ping {
            nonce: 0x0123_4567_89ab_cdef,
        }],
    );
    let cut = partial.len() - 3;
    partial.truncate(cut);

    vec![
        (
            "handshake",
            seed(
                16,
                1,
                &[
                    Frame::Hello {
                        versions: vec![1, 2],
                        name: text("alice"),
                        room: text("lobby"),
                        token: Bytes::from_static(b"secret"),
                    },
                    Frame::Welcome {
                        version: 1,
                        name: text("alice"),
                        room: text("lobby"),
                        settings: Settings {
                            max_frame: 1 << 20,
                            max_message: 4096,
                            chunk_size: 1 << 16,
                            window: 1 << 22,
                            idle_timeout_ms: 60_000,
                        },
                    },
                ],
            ),
        ),
        (
            "refuse",
            seed(
                10,
                3,
                &[Frame::Refuse {
                    code: Code::NAME_TAKEN,
                    reason: text("alice is taken"),
                }],
            ),
        ),
        (
            "keepalive",
            seed(
                8,
                2,
                &[
                    Frame::Ping { nonce: 7 },
                    Frame::Pong { nonce: 7 },
                    Frame::Bye,
                ],
            ),
        ),
        (
            "error",
            seed(
                12,
                5,
                &[Frame::Error {
                    code: Code::MALFORMED,
                    reason: text("MESSAGE frame truncated"),
                }],
            ),
        ),
        ("chat", seed(12, 4, &chat)),
        (
            "chat-unicode",
            seed(
                14,
                12,
                &[Frame::Message {
                    seq: u64::MAX,
                    from: text("zoë"),
                    text: text("héllo ⛴ 🚢"),
                }],
            ),
        ),
        ("transfer", seed(20, 7, &transfer)),
        (
            "transfer-refused",
            seed(
                16,
                2,
                &[
                    Frame::Reject {
                        id: 3,
                        code: Code::FILE_TOO_LARGE,
                        reason: text("over 1 GiB"),
                    },
                    Frame::Failed {
                        id: 5,
                        code: Code::HASH_MISMATCH,
                        reason: text("hash mismatch"),
                    },
                    Frame::Cancel {
                        id: 7,
                        code: Code::CANCELLED,
                        reason: text("user cancelled"),
                    },
                ],
            ),
        ),
        (
            "data-1000",
            seed(
                10,
                11,
                &[Frame::Data {
                    id: 4,
                    offset: 1 << 33,
                    data: Bytes::from(big_chunk),
                }],
            ),
        ),
        (
            "extension",
            seed(
                8,
                1,
                &[
                    Frame::Extension {
                        frame_type: 0x9a,
                        body: Bytes::from_static(b"opaque"),
                    },
                    Frame::Extension {
                        frame_type: 0xff,
                        body: Bytes::new(),
                    },
                    Frame::Who,
                ],
            ),
        ),
        (
            "resume",
            seed(
                8,
                3,
                &[
                    Frame::Resume {
                        id: 2,
                        key: ResumeKey::from_bytes(*b"0123456789abcdef"),
                    },
                    Frame::Offer {
                        id: 2,
                        size: 6,
                        name: text("hello.txt"),
                        peer: Text::new(),
                    },
                    Frame::ResumeKey {
                        id: 2,
                        key: ResumeKey::from_bytes([0xff; 16]),
                    },
                ],
            ),
        ),
        // A frame over the 16-byte limit after one that fits.
        (
            "over-limit",
            seed(
                4,
                1,
                &[
                    Frame::Bye,
                    Frame::Say {
                        text: text("this is longer than sixteen bytes"),
                    },
                ],
            ),
        ),
        // A whole frame, then one cut 3 bytes short.
        ("partial", {
            let mut data = seed(16, 1, &[Frame::Who]);
            data.extend_from_slice(&partial[1..]);
            data
        }),
    ]
}
