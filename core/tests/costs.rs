//! What each frame costs a client (`docs/PROTOCOL.md` §6.5): control
//! frames spend the frame budget, file data is held to a floor, and a
//! flooder is closed with `FLOODING` while a client at an honest pace never
//! is.

use bytes::{Bytes, BytesMut};
use ferry_core::frame::{decode, Frame, MIN_DATA, PREAMBLE};
use ferry_core::transfer::TransferEvent;
use ferry_core::{ClientConfig, Code, Config, Connection, Event, ResumeKey};
use std::time::{Duration, Instant};

fn encode(frames: &[Frame]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for f in frames {
        f.encode(&mut out).unwrap();
    }
    out.to_vec()
}

/// A server-role connection that has welcomed its client, its preamble
/// and `WELCOME` not yet handed out.
fn welcoming_server(config: Config, now: Instant) -> Connection {
    let mut server = Connection::server(config, now);
    server.handle_input(now, &PREAMBLE);
    let hello = Frame::Hello {
        versions: vec![1],
        name: "mallory".into(),
        room: "".into(),
        token: Bytes::new(),
    };
    server.handle_input(now, &encode(&[hello]));
    assert!(matches!(server.poll_event(), Some(Event::Hello { .. })));
    server
        .welcome(now, "mallory".into(), "lobby".into())
        .unwrap();
    server
}

/// A server-role connection that has welcomed its client, its output
/// written.
fn welcomed_server(config: Config, now: Instant) -> Connection {
    let mut server = welcoming_server(config, now);
    while server.poll_transmit().is_some() {}
    server
}

/// How the connection closed itself, if it did.
fn closed(conn: &mut Connection) -> Option<(Code, String)> {
    std::iter::from_fn(|| conn.poll_event()).find_map(|e| match e {
        Event::Closed {
            code,
            reason,
            by_peer: false,
        } => Some((code, reason)),
        _ => None,
    })
}

#[test]
fn control_frames_past_the_burst_are_flooding_whatever_their_type() {
    let now = Instant::now();
    let burst = Config::default().frame_burst as usize;
    let floods: Vec<(&str, Frame)> = vec![
        ("PING", Frame::Ping { nonce: 7 }),
        ("PONG", Frame::Pong { nonce: 7 }),
        (
            "an empty extension frame",
            Frame::Extension {
                frame_type: 0x9a,
                body: Bytes::new(),
            },
        ),
        (
            "RESUME",
            Frame::Resume {
                id: 2,
                key: ResumeKey::from_bytes([1; 16]),
            },
        ),
        (
            "RESUME_KEY for no transfer of ours",
            Frame::ResumeKey {
                id: 1,
                key: ResumeKey::from_bytes([1; 16]),
            },
        ),
    ];
    for (what, frame) in floods {
        let mut server = welcomed_server(Config::default(), now);
        server.handle_input(now, &encode(&vec![frame.clone(); burst]));
        assert!(server.is_open(), "{what}: the burst itself is allowed");
        server.handle_input(now, &encode(&[frame]));
        let (code, reason) = closed(&mut server).expect(what);
        assert_eq!(code, Code::FLOODING, "{what}");
        assert!(reason.contains("control frames"), "{what}: {reason}");
    }
}

/// The idle timeout counts what a client sends, and a client pinging at
/// an honest pace for longer than its budget's burst is never a flooder.
#[test]
fn a_client_pinging_at_its_pace_is_never_flooding() {
    let start = Instant::now();
    let config = Config::default();
    let every = Duration::from_secs(1) / config.frame_per_second;
    let mut server = welcomed_server(config.clone(), start);
    let mut now = start;
    for nonce in 0..(config.frame_burst as u64) * 10 {
        now += every;
        server.handle_input(now, &encode(&[Frame::Ping { nonce }]));
        server.handle_timeout(now);
        while server.poll_transmit().is_some() {}
    }
    assert!(server.is_open(), "{:?}", closed(&mut server));
}

/// Receives an upload of `size` bytes with `window` on a welcomed server.
fn receiving(now: Instant, size: u64) -> Connection {
    let mut server = welcomed_server(Config::default(), now);
    let offer = Frame::Offer {
        id: 0,
        size,
        name: "f.bin".into(),
        peer: "".into(),
    };
    server.handle_input(now, &encode(&[offer]));
    assert!(matches!(
        server.poll_event(),
        Some(Event::Transfer(TransferEvent::Offered { id: 0, .. }))
    ));
    server.accept(now, 0, 0).unwrap();
    while server.poll_transmit().is_some() {}
    server
}

fn data(offset: u64, len: usize) -> Frame {
    Frame::Data {
        id: 0,
        offset,
        data: Bytes::from(vec![1u8; len]),
    }
}

#[test]
fn data_under_the_floor_is_refused_unless_it_ends_the_file() {
    let now = Instant::now();
    let min = MIN_DATA as usize;
    // One byte short of the floor, in the middle of a file.
    let mut server = receiving(now, 1 << 20);
    server.handle_input(now, &encode(&[data(0, min - 1)]));
    let (code, reason) = closed(&mut server).expect("refused");
    assert_eq!(code, Code::UNEXPECTED_FRAME);
    assert!(reason.contains("at least 1024"), "{reason}");

    // At the floor, then a short last frame: the whole file arrives.
    let size = (min + 10) as u64;
    let mut server = receiving(now, size);
    server.handle_input(now, &encode(&[data(0, min), data(min as u64, 10)]));
    let chunks: Vec<usize> = std::iter::from_fn(|| server.poll_event())
        .filter_map(|e| match e {
            Event::Transfer(TransferEvent::Chunk { data, .. }) => Some(data.len()),
            _ => None,
        })
        .collect();
    assert_eq!(chunks, vec![min, 10]);
    assert!(server.is_open());

    // A file smaller than the floor is one short frame.
    let mut server = receiving(now, 5);
    server.handle_input(now, &encode(&[data(0, 5)]));
    assert!(server.is_open(), "{:?}", closed(&mut server));
}

/// A receiver that credits a few bytes at a time gets no frame under the
/// floor from an honest sender: it waits until the window has room for one.
#[test]
fn a_sender_waits_for_room_for_a_frame_at_the_floor() {
    let now = Instant::now();
    let size = 64 * 1024u64;
    let mut client = Connection::client(ClientConfig::new("alice"), now);
    let mut config = Config::default();
    config.window = 3000;
    let mut server = Connection::server(config, now);
    let shuttle = |client: &mut Connection, server: &mut Connection| {
        let mut sent = Vec::new();
        while let Some(b) = client.poll_transmit() {
            sent.extend_from_slice(&b);
            server.handle_input(now, &b);
        }
        while let Some(b) = server.poll_transmit() {
            client.handle_input(now, &b);
        }
        sent
    };
    shuttle(&mut client, &mut server);
    assert!(matches!(server.poll_event(), Some(Event::Hello { .. })));
    server.welcome(now, "alice".into(), "lobby".into()).unwrap();
    shuttle(&mut client, &mut server);
    while client.poll_event().is_some() {}
    let id = client.offer_file(now, "f.bin", size, "").unwrap();
    shuttle(&mut client, &mut server);
    assert!(matches!(
        server.poll_event(),
        Some(Event::Transfer(TransferEvent::Offered { .. }))
    ));
    // A window of 3,000 bytes: two frames at the floor do not fit.
    server.accept(now, 0, 0).unwrap();
    let mut received = 0u64;
    let mut lens = Vec::new();
    let mut written = 0u64;
    for _ in 0..10_000 {
        shuttle(&mut client, &mut server);
        while let Some(event) = client.poll_event() {
            if let Event::Transfer(TransferEvent::NeedChunk { id, offset, len }) = event {
                let chunk = Bytes::from(vec![3u8; len as usize]);
                client.supply_chunk(now, id, offset, chunk).unwrap();
            }
        }
        while let Some(event) = server.poll_event() {
            if let Event::Transfer(TransferEvent::Chunk { data, .. }) = event {
                received += data.len() as u64;
                lens.push(data.len());
            }
        }
        // Confirms 100 bytes at a time.
        if written < received {
            written = (written + 100).min(received);
            server.confirm_written(now, 0, written).unwrap();
        }
        if received == size {
            break;
        }
    }
    assert_eq!(received, size, "the whole file arrived");
    assert!(server.is_open() && client.is_open());
    let (last, rest) = lens.split_last().unwrap();
    assert!(
        rest.iter().all(|&len| len >= MIN_DATA as usize),
        "frames under the floor: {lens:?}"
    );
    assert!(*last > 0);
    assert!(lens.len() > 20, "the window kept frames small: {lens:?}");
    let _ = id;
}

/// `CREDIT` that opens the window by a frame's worth is paid for by the
/// data; a trickle of tiny or repeated ones is control traffic.
#[test]
fn repeated_credits_spend_the_frame_budget() {
    let now = Instant::now();
    let mut server = Connection::server(Config::default(), now);
    let mut client = Connection::client(ClientConfig::new("bob"), now);
    let pump = |client: &mut Connection, server: &mut Connection| {
        for _ in 0..3 {
            while let Some(b) = client.poll_transmit() {
                server.handle_input(now, &b);
            }
            while let Some(b) = server.poll_transmit() {
                client.handle_input(now, &b);
            }
        }
    };
    pump(&mut client, &mut server);
    assert!(matches!(server.poll_event(), Some(Event::Hello { .. })));
    server.welcome(now, "bob".into(), "lobby".into()).unwrap();
    pump(&mut client, &mut server);
    // The server sends bob a file; bob accepts it.
    let id = server.offer_file(now, "f.bin", 1 << 20, "").unwrap();
    pump(&mut client, &mut server);
    let offered = std::iter::from_fn(|| client.poll_event()).find_map(|e| match e {
        Event::Transfer(TransferEvent::Offered { id, .. }) => Some(id),
        _ => None,
    });
    client.accept(now, offered.unwrap(), 0).unwrap();
    pump(&mut client, &mut server);
    while server.poll_event().is_some() {}
    assert!(server.is_open());
    // Credits that open nothing, over and over: past the budget, flooding.
    let credit = Frame::Credit { id, written: 0 };
    let burst = Config::default().frame_burst as usize;
    server.handle_input(now, &encode(&vec![credit; burst + 1]));
    let (code, reason) = closed(&mut server).expect("flooding");
    assert_eq!(code, Code::FLOODING);
    assert!(reason.contains("control frames"), "{reason}");
}

#[test]
fn a_slow_reader_dropped_before_reading_anything_still_gets_the_preamble() {
    let now = Instant::now();
    let mut config = Config::default();
    config.frame_burst = u32::MAX;
    let mut server = welcoming_server(config, now);
    // Never reads: the PONGs pile up past the limit.
    let pings = encode(&vec![Frame::Ping { nonce: 1 }; 100_000]);
    server.handle_input(now, &pings);
    let mut out = BytesMut::new();
    while let Some(b) = server.poll_transmit() {
        out.extend_from_slice(&b);
    }
    assert!(
        out.starts_with(&PREAMBLE),
        "{:?}",
        &out[..out.len().min(16)]
    );
    let _ = out.split_to(PREAMBLE.len());
    let mut last = None;
    while let Ok(Some(frame)) = decode(&mut out, 1 << 20) {
        last = Some(frame);
    }
    assert!(
        matches!(
            last,
            Some(Frame::Error {
                code: Code::SLOW_READER,
                ..
            })
        ),
        "{last:?}"
    );
}
