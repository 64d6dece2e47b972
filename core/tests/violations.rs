//! A peer that breaks the protocol's rules is told why and disconnected;
//! late frames about transfers that already ended are ignored.

use bytes::{Bytes, BytesMut};
use ferry_core::frame::{decode, Frame, PREAMBLE};
use ferry_core::transfer::TransferEvent;
use ferry_core::{Code, Config, Connection, Event};
use std::time::Instant;

fn encode(frames: &[Frame]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for f in frames {
        f.encode(&mut out).unwrap();
    }
    out.to_vec()
}

fn hello() -> Frame {
    Frame::Hello {
        versions: vec![1],
        name: "mallory".into(),
        room: "".into(),
        token: Bytes::new(),
    }
}

/// A server-role connection that has welcomed its client.
fn welcomed_server(now: Instant) -> Connection {
    let mut server = Connection::server(Config::default(), now);
    server.handle_input(now, &PREAMBLE);
    server.handle_input(now, &encode(&[hello()]));
    assert!(matches!(server.poll_event(), Some(Event::Hello { .. })));
    server
        .welcome(now, "mallory".into(), "lobby".into())
        .unwrap();
    server
}

/// The code of the ERROR frame the connection sent, and of its Closed event.
fn error_sent(conn: &mut Connection) -> Option<Code> {
    let mut out = BytesMut::new();
    while let Some(b) = conn.poll_transmit() {
        out.extend_from_slice(&b);
    }
    if out.starts_with(&PREAMBLE) {
        let _ = out.split_to(PREAMBLE.len());
    }
    let mut sent = None;
    while let Ok(Some(frame)) = decode(&mut out, 1 << 20) {
        if let Frame::Error { code, .. } = frame {
            sent = Some(code);
        }
    }
    let closed = std::iter::from_fn(|| conn.poll_event()).find_map(|e| match e {
        Event::Closed {
            code,
            by_peer: false,
            ..
        } => Some(code),
        _ => None,
    });
    assert_eq!(
        sent, closed,
        "the ERROR frame and the Closed event disagree"
    );
    sent
}

fn offer(id: u32, size: u64) -> Frame {
    Frame::Offer {
        id,
        size,
        name: "f.bin".into(),
        peer: "".into(),
    }
}

#[test]
fn frames_out_of_place_are_fatal() {
    let now = Instant::now();
    let cases: Vec<(Vec<Frame>, Code)> = vec![
        // An ACCEPT for a transfer the server never offered.
        (
            vec![Frame::Accept {
                id: 1,
                offset: 0,
                window: 10,
                prefix_hash: [0; 32],
            }],
            Code::UNKNOWN_TRANSFER,
        ),
        // Data for an id the client never offered.
        (
            vec![Frame::Data {
                id: 4,
                offset: 0,
                data: Bytes::from_static(b"x"),
            }],
            Code::UNKNOWN_TRANSFER,
        ),
        // An offer with the server's parity.
        (vec![offer(1, 10)], Code::UNEXPECTED_FRAME),
        // Ids must increase.
        (vec![offer(4, 10), offer(2, 10)], Code::UNEXPECTED_FRAME),
        // DATA before ACCEPT.
        (
            vec![
                offer(0, 10),
                Frame::Data {
                    id: 0,
                    offset: 0,
                    data: Bytes::from_static(b"x"),
                },
            ],
            Code::UNEXPECTED_FRAME,
        ),
        // A second HELLO.
        (vec![hello()], Code::UNEXPECTED_FRAME),
        // Room frames only go from server to client.
        (
            vec![Frame::Message {
                seq: 1,
                from: "x".into(),
                text: "y".into(),
            }],
            Code::UNEXPECTED_FRAME,
        ),
    ];
    for (frames, code) in cases {
        let mut server = welcomed_server(now);
        error_sent(&mut server);
        server.handle_input(now, &encode(&frames));
        assert_eq!(error_sent(&mut server), Some(code), "{frames:?}");
        assert!(server.is_closed());
    }
}

#[test]
fn extension_frames_are_skipped_only_after_the_handshake() {
    let now = Instant::now();
    let ext = Frame::Extension {
        frame_type: 0x9A,
        body: Bytes::from_static(b"future"),
    };
    let mut server = welcomed_server(now);
    error_sent(&mut server);
    server.handle_input(
        now,
        &encode(&[
            ext.clone(),
            Frame::Say {
                text: "still here".into(),
            },
        ]),
    );
    assert!(matches!(server.poll_event(), Some(Event::Say { text }) if text == "still here"));
    assert!(server.is_open());

    let mut early = Connection::server(Config::default(), now);
    early.handle_input(now, &PREAMBLE);
    early.handle_input(now, &encode(&[ext]));
    assert_eq!(error_sent(&mut early), Some(Code::UNEXPECTED_FRAME));
}

/// Receives an upload of `size` bytes on a welcomed server connection.
fn receiving(now: Instant, size: u64) -> Connection {
    let mut server = welcomed_server(now);
    error_sent(&mut server);
    server.handle_input(now, &encode(&[offer(0, size)]));
    assert!(matches!(
        server.poll_event(),
        Some(Event::Transfer(TransferEvent::Offered { id: 0, .. }))
    ));
    server.accept(now, 0, 0).unwrap();
    server
}

#[test]
fn data_past_the_window_is_a_flow_control_error() {
    let now = Instant::now();
    let window = Config::default().window as usize;
    let mut server = receiving(now, 1 << 30);
    let chunk = Bytes::from(vec![7u8; 64 * 1024]);
    let frames: Vec<Frame> = (0..window / chunk.len() + 1)
        .map(|i| Frame::Data {
            id: 0,
            offset: (i * chunk.len()) as u64,
            data: chunk.clone(),
        })
        .collect();
    server.handle_input(now, &encode(&frames));
    assert_eq!(error_sent(&mut server), Some(Code::FLOW_CONTROL));
}

#[test]
fn gaps_oversized_chunks_and_early_done_are_fatal() {
    let now = Instant::now();
    let data = |offset: u64, len: usize| Frame::Data {
        id: 0,
        offset,
        data: Bytes::from(vec![1u8; len]),
    };
    let cases: Vec<(Vec<Frame>, Code)> = vec![
        (vec![data(10, 5)], Code::UNEXPECTED_FRAME),
        (vec![data(0, 5), data(6, 5)], Code::UNEXPECTED_FRAME),
        (vec![data(0, 0)], Code::UNEXPECTED_FRAME),
        (vec![data(0, 64 * 1024 + 1)], Code::UNEXPECTED_FRAME),
        (
            vec![
                data(0, 5),
                Frame::Done {
                    id: 0,
                    hash: [0; 32],
                },
            ],
            Code::UNEXPECTED_FRAME,
        ),
        // The uploader sending its receiver's frame about its own upload:
        // the wrong party (§6.10.1), not an unknown transfer.
        (
            vec![Frame::Credit { id: 0, written: 1 }],
            Code::UNEXPECTED_FRAME,
        ),
        // Ids nobody offered, of either parity: unknown.
        (
            vec![Frame::Credit { id: 4, written: 1 }],
            Code::UNKNOWN_TRANSFER,
        ),
        (
            vec![Frame::Data {
                id: 1,
                offset: 0,
                data: Bytes::from_static(b"x"),
            }],
            Code::UNKNOWN_TRANSFER,
        ),
    ];
    for (frames, code) in cases {
        let mut server = receiving(now, 1000);
        server.handle_input(now, &encode(&frames));
        assert_eq!(error_sent(&mut server), Some(code), "{frames:?}");
    }
}

#[test]
fn late_frames_for_an_ended_transfer_are_ignored() {
    let now = Instant::now();
    let mut server = receiving(now, 1000);
    server.cancel(now, 0, Code::CANCELLED, "no").unwrap();
    error_sent(&mut server);
    // Data that was in flight when the cancel went out.
    server.handle_input(
        now,
        &encode(&[
            Frame::Data {
                id: 0,
                offset: 0,
                data: Bytes::from_static(b"late"),
            },
            Frame::Done {
                id: 0,
                hash: [0; 32],
            },
            Frame::Cancel {
                id: 0,
                code: Code::CANCELLED,
                reason: "crossed".into(),
            },
        ]),
    );
    assert!(server.is_open());
    assert_eq!(error_sent(&mut server), None);
}

#[test]
fn hash_mismatch_fails_the_transfer_not_the_connection() {
    let now = Instant::now();
    let mut server = receiving(now, 4);
    server.handle_input(
        now,
        &encode(&[
            Frame::Data {
                id: 0,
                offset: 0,
                data: Bytes::from_static(b"abcd"),
            },
            Frame::Done {
                id: 0,
                hash: *blake3::hash(b"abce").as_bytes(),
            },
        ]),
    );
    let events: Vec<Event> = std::iter::from_fn(|| server.poll_event()).collect();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Transfer(TransferEvent::Ended {
            outcome: ferry_core::transfer::Outcome::Failed {
                code: Code::HASH_MISMATCH,
                ..
            },
            ..
        })
    )));
    assert!(!events
        .iter()
        .any(|e| matches!(e, Event::Transfer(TransferEvent::Received { .. }))));
    assert!(server.is_open());
}

#[test]
fn oversized_handshake_is_refused_from_the_header() {
    let now = Instant::now();
    let mut server = Connection::server(Config::default(), now);
    server.handle_input(now, &PREAMBLE);
    // A HELLO that claims 5000 bytes: over the 4096-byte handshake limit.
    server.handle_input(now, &[0x01, 0x00, 0x00, 0x13, 0x88]);
    assert_eq!(error_sent(&mut server), Some(Code::FRAME_TOO_LARGE));
    assert_eq!(server.buffered_input(), 0);
}

#[test]
fn unsupported_version_is_refused() {
    let now = Instant::now();
    let mut server = Connection::server(Config::default(), now);
    server.handle_input(now, &PREAMBLE);
    let hello = Frame::Hello {
        versions: vec![7, 9],
        name: "future".into(),
        room: "".into(),
        token: Bytes::new(),
    };
    server.handle_input(now, &encode(&[hello]));
    let mut out = BytesMut::new();
    while let Some(b) = server.poll_transmit() {
        out.extend_from_slice(&b);
    }
    let _ = out.split_to(PREAMBLE.len());
    let frame = decode(&mut out, 1 << 20).unwrap().unwrap();
    assert!(
        matches!(
            frame,
            Frame::Refuse {
                code: Code::VERSION_UNSUPPORTED,
                ..
            }
        ),
        "{frame:?}"
    );
    assert!(server.is_closed());
}

#[test]
fn a_hello_too_long_to_encode_closes_the_client_at_once() {
    let now = Instant::now();
    let mut client = Connection::client(ferry_core::ClientConfig::new("x".repeat(70_000)), now);
    assert!(client.is_closed());
    assert!(matches!(
        client.poll_event(),
        Some(Event::Closed {
            code: Code::NAME_INVALID,
            by_peer: false,
            ..
        })
    ));
}

/// A server sending a file; the client accepted it: returns the server with
/// `sent` bytes of it supplied (queued as `DATA`).
fn sending(now: Instant, size: u64, sent: usize) -> Connection {
    let mut server = welcomed_server(now);
    let id = server.offer_file(now, "f.bin", size, "").unwrap();
    let accept = Frame::Accept {
        id,
        offset: 0,
        window: 1 << 20,
        prefix_hash: ferry_core::transfer::empty_hash(),
    };
    server.handle_input(now, &encode(&[accept]));
    let mut supplied = 0;
    while let Some(event) = server.poll_event() {
        if supplied == sent {
            break;
        }
        if let Event::Transfer(TransferEvent::NeedChunk { id, offset, len }) = event {
            // Requests are answered in full, in order.
            assert!(supplied + len as usize <= sent, "ask for less");
            let data = Bytes::from(vec![7u8; len as usize]);
            server.supply_chunk(now, id, offset, data).unwrap();
            supplied += len as usize;
        }
    }
    assert_eq!(supplied, sent);
    server
}

#[test]
fn a_credit_for_bytes_never_sent_is_fatal_and_one_for_bytes_sent_is_not() {
    let now = Instant::now();
    // 64 KiB sent of a 1 MiB file: a credit for 64 KiB is fine, one byte
    // more was never sent (§6.10.5).
    let credit = |written| Frame::Credit { id: 1, written };
    let mut server = sending(now, 1 << 20, 64 * 1024);
    server.handle_input(now, &encode(&[credit(64 * 1024)]));
    assert_eq!(error_sent(&mut server), None);
    server.handle_input(now, &encode(&[credit(64 * 1024 + 1)]));
    assert_eq!(error_sent(&mut server), Some(Code::UNEXPECTED_FRAME));
}

/// §3.3's values a frame forbids that are checked once the frame is
/// decoded, by the side that receives it: each is ERROR `MALFORMED`.
#[test]
fn forbidden_values_after_decoding_are_malformed() {
    let now = Instant::now();
    // An ACCEPT granting a window of 0.
    let mut server = welcomed_server(now);
    let id = server.offer_file(now, "f.bin", 100, "").unwrap();
    let accept = Frame::Accept {
        id,
        offset: 0,
        window: 0,
        prefix_hash: ferry_core::transfer::empty_hash(),
    };
    server.handle_input(now, &encode(&[accept]));
    assert_eq!(error_sent(&mut server), Some(Code::MALFORMED));

    // A WELCOME whose settings break §4.2's bounds.
    let good = ferry_core::frame::Settings {
        max_frame: 1 << 20,
        max_message: 4096,
        chunk_size: 65536,
        window: 4 << 20,
        idle_timeout_ms: 30_000,
    };
    let breaks: [fn(&mut ferry_core::frame::Settings); 4] = [
        |s| s.max_frame = 4095,
        |s| s.chunk_size = 0,
        |s| s.window = 0,
        |s| s.idle_timeout_ms = 0,
    ];
    for (i, broken) in breaks.iter().enumerate() {
        let mut settings = good;
        broken(&mut settings);
        let mut client = Connection::client(ferry_core::ClientConfig::new("alice"), now);
        let welcome = Frame::Welcome {
            version: 1,
            name: "alice".into(),
            room: "lobby".into(),
            settings,
        };
        let mut bytes = PREAMBLE.to_vec();
        bytes.extend(encode(&[welcome]));
        client.handle_input(now, &bytes);
        assert_eq!(error_sent(&mut client), Some(Code::MALFORMED), "case {i}");
    }
}

/// The frames a server sent, preamble skipped.
fn frames_sent(conn: &mut Connection) -> Vec<Frame> {
    let mut out = BytesMut::new();
    while let Some(b) = conn.poll_transmit() {
        out.extend_from_slice(&b);
    }
    if out.starts_with(&PREAMBLE) {
        let _ = out.split_to(PREAMBLE.len());
    }
    std::iter::from_fn(|| decode(&mut out, 1 << 20).ok().flatten()).collect()
}

#[test]
fn tree_frames_are_unknown_to_a_side_that_never_announced_trees() {
    use ferry_core::frame::frame_type;
    let now = Instant::now();
    for t in frame_type::TREE_OFFER..=frame_type::TREE_FILE_DONE {
        // Decided from the header alone, whatever length it declares.
        let mut server = welcomed_server(now);
        let _ = frames_sent(&mut server);
        server.handle_input(now, &[t, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            error_sent(&mut server),
            Some(Code::UNKNOWN_FRAME_TYPE),
            "{t:#04x}"
        );
    }
    // Also after FEATURES, from a server that takes no trees.
    let mut server = welcomed_server(now);
    server.handle_input(now, &encode(&[Frame::Features { bits: 1 }]));
    let offer = Frame::TreeOffer {
        id: 0,
        total_size: 6,
        manifest_len: 112,
        name: "demo".into(),
        peer: "".into(),
    };
    let _ = frames_sent(&mut server);
    server.handle_input(now, &encode(&[offer]));
    assert_eq!(error_sent(&mut server), Some(Code::UNKNOWN_FRAME_TYPE));
}

#[test]
fn a_server_answers_the_first_features_of_a_client_once() {
    let now = Instant::now();
    let mut server = welcomed_server(now);
    let _ = frames_sent(&mut server);
    server.handle_input(now, &encode(&[Frame::Features { bits: 0xffff_fffe }]));
    assert_eq!(server.peer_features(), 0xffff_fffe);
    assert_eq!(frames_sent(&mut server), vec![Frame::Features { bits: 0 }]);
    server.handle_input(
        now,
        &encode(&[Frame::Features { bits: 1 }, Frame::Ping { nonce: 7 }]),
    );
    assert_eq!(
        server.peer_features(),
        0xffff_fffe,
        "later FEATURES are ignored"
    );
    assert_eq!(frames_sent(&mut server), vec![Frame::Pong { nonce: 7 }]);
    assert!(server.is_open());
}
