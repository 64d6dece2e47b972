//! Hostile input against the real `ferry serve`, every runtime: each attack
//! is refused with a reason while a well-behaved client on the same server
//! notices nothing: it keeps chatting and gets every message.

mod common;

use bytes::Bytes;
use common::{has_raw_control, raise_fd_limit, run, Raw, Serve, TextGuest, WAIT};
use ferry_core::frame::{Frame, PREAMBLE};
use ferry_core::Code;
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

const RUNTIMES: [&str; 4] = ["mio", "smol", "std", "tokio"];

/// alice, who only wants to chat: says a numbered line after every attack
/// and checks she hears each of hers back, in order, and nothing fatal.
struct Bystander {
    raw: Raw,
    said: usize,
}

impl Bystander {
    fn join(server: &Serve) -> Bystander {
        Bystander {
            raw: Raw::join(server.addr, "alice", ""),
            said: 0,
        }
    }

    /// Says the next line; returns the room events seen before its echo.
    fn carry_on(&mut self, label: &str) -> Vec<Frame> {
        self.said += 1;
        let line = format!("alice #{} after {label}", self.said);
        let before = self.raw.say_and_hear(&line);
        for frame in &before {
            assert!(
                !matches!(frame, Frame::Error { .. }),
                "{label}: alice got {frame:?}"
            );
            if let Frame::Message { from, text, .. } = frame {
                assert!(from != "alice", "{label}: an out-of-order echo {text:?}");
            }
        }
        before
    }
}

fn joined(server: &Serve, name: &str) -> Raw {
    Raw::join(server.addr, name, "")
}

#[test]
fn garbage_versions_lengths_order_and_floods_are_refused() {
    for runtime in RUNTIMES {
        let inbox = tempfile::tempdir().unwrap();
        let mut server = Serve::start(inbox.path(), &["--runtime", runtime]);
        let mut alice = Bystander::join(&server);

        // Garbage: an HTTP request is not a ferry peer, nor a guest to let
        // into the room; it is told so in plain text.
        let mut http = TextGuest::connect(server.addr);
        http.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let answer = String::from_utf8(http.rest()).unwrap();
        assert_eq!(
            answer, "! closing: this is a ferry chat server, not a web server\r\n",
            "{runtime}"
        );
        server.expect(&["disconnected: not a ferry peer"]);
        alice.carry_on("garbage");

        // A version nobody speaks.
        let mut raw = Raw::connect(server.addr);
        let mut hello = bytes::BytesMut::from(&PREAMBLE[..]);
        Frame::Hello {
            versions: vec![7, 9],
            name: "future".into(),
            room: "".into(),
            token: Bytes::new(),
        }
        .encode(&mut hello)
        .unwrap();
        raw.send_bytes(&hello).unwrap();
        assert_eq!(raw.expect_end().0, Code::VERSION_UNSUPPORTED, "{runtime}");
        alice.carry_on("a wrong version");

        // A length over the limit, before and after the handshake: refused
        // from the header alone.
        let mut raw = Raw::connect(server.addr);
        raw.send_bytes(&PREAMBLE).unwrap();
        raw.send_bytes(&[0x01, 0x00, 0x00, 0x10, 0x01]).unwrap();
        assert_eq!(raw.expect_end().0, Code::FRAME_TOO_LARGE, "{runtime}");
        let mut big = joined(&server, "big");
        big.send_bytes(&[0x10, 0xff, 0xff, 0xff, 0xff]).unwrap();
        assert_eq!(big.expect_end().0, Code::FRAME_TOO_LARGE, "{runtime}");
        let seen = alice.carry_on("a frame too large");
        assert!(
            seen.iter().any(|f| matches!(f,
                Frame::Left { name, code: Code::FRAME_TOO_LARGE, .. } if name == "big")),
            "{runtime}: {seen:?}"
        );

        // Valid frames out of order: DATA for a transfer never offered, a
        // SAY before HELLO, a second HELLO.
        let mut raw = joined(&server, "data");
        raw.send(&Frame::Data {
            id: 0,
            offset: 0,
            data: Bytes::from_static(b"surprise"),
        })
        .unwrap();
        let (code, _) = raw.expect_end();
        assert!(
            code == Code::UNKNOWN_TRANSFER || code == Code::UNEXPECTED_FRAME,
            "{runtime}: {code:?}"
        );
        let mut raw = Raw::connect(server.addr);
        raw.send_bytes(&PREAMBLE).unwrap();
        raw.send(&Frame::Say { text: "hi".into() }).unwrap();
        assert_eq!(raw.expect_end().0, Code::UNEXPECTED_FRAME, "{runtime}");
        let mut raw = joined(&server, "twice");
        raw.send(&Frame::Hello {
            versions: vec![1],
            name: "twice".into(),
            room: "".into(),
            token: Bytes::new(),
        })
        .unwrap();
        assert_eq!(raw.expect_end().0, Code::UNEXPECTED_FRAME, "{runtime}");
        alice.carry_on("frames out of order");

        // A flood: over the burst of 20, disconnected as FLOODING.
        let mut flood = joined(&server, "flood");
        for i in 0..200 {
            if flood
                .send(&Frame::Say {
                    text: format!("spam {i}").into(),
                })
                .is_err()
            {
                break;
            }
        }
        assert_eq!(flood.expect_end().0, Code::FLOODING, "{runtime}");
        let seen = alice.carry_on("a flood");
        assert!(
            seen.iter().any(|f| matches!(f,
                Frame::Left { name, code: Code::FLOODING, .. } if name == "flood")),
            "{runtime}: {seen:?}"
        );
        server.expect(&["\"flood\" (", "disconnected: flooding"]);
        assert!(server.terminate().success(), "{runtime}");
    }
}

#[test]
fn slow_handshakes_and_a_thousand_abandoned_connections_time_out() {
    raise_fd_limit();
    for runtime in RUNTIMES {
        let inbox = tempfile::tempdir().unwrap();
        let mut server = Serve::start(
            inbox.path(),
            &[
                "--runtime",
                runtime,
                "--handshake-timeout",
                "1.5",
                "--max-per-ip",
                "5000",
            ],
        );
        let mut alice = Bystander::join(&server);

        // A handshake at one byte per second: cut off at the timeout.
        let mut slow = Raw::connect(server.addr);
        let mut writer = slow.stream.try_clone().unwrap();
        let dribble = thread::spawn(move || {
            use std::io::Write;
            for byte in PREAMBLE {
                if writer.write_all(&[byte]).is_err() {
                    return;
                }
                thread::sleep(Duration::from_secs(1));
            }
        });
        assert_eq!(slow.expect_end().0, Code::HANDSHAKE_TIMEOUT, "{runtime}");
        dribble.join().unwrap();
        alice.carry_on("a slow handshake");

        // A thousand connections opened and abandoned, some after part of
        // a preamble: alice chats on while they wait, and they all time out.
        let abandoned: Vec<TcpStream> = (0..1000)
            .map(|i| {
                use std::io::Write;
                let mut s = TcpStream::connect(server.addr).unwrap();
                if i % 2 == 0 {
                    let _ = s.write_all(&PREAMBLE[..3]);
                }
                s
            })
            .collect();
        for i in 0..5 {
            alice.carry_on(&format!("abandoned connections ({i})"));
        }
        server.expect_count(&["disconnected: handshake timeout"], 1001);
        drop(abandoned);
        alice.carry_on("the abandoned connections timed out");
        let mut bob = joined(&server, "bob");
        bob.say_and_hear("a newcomer is welcome");
        assert!(server.terminate().success(), "{runtime}");
    }
}

#[test]
fn hostile_file_names_are_refused_and_never_reach_the_disk_or_the_log_raw() {
    let scratch = tempfile::tempdir().unwrap();
    let inbox = scratch.path().join("inbox");
    let files = tempfile::tempdir().unwrap();
    for runtime in RUNTIMES {
        let mut server = Serve::start(&inbox, &["--runtime", runtime]);
        let mut alice = Bystander::join(&server);
        let long = "n".repeat(300);
        let names = [
            "../x",
            "/etc/x",
            "C:\\x",
            "..\\\\x",
            "nul\0byte",
            "new\nline",
            "\u{1b}[2J\u{1b}[31mred",
            "CON",
            "aux.txt",
            long.as_str(),
            "bidi\u{202e}txt.exe",
        ];
        let mut mallory = joined(&server, "mallory");
        // A client's transfer ids are even and rising.
        let mut id = 0;
        for name in names {
            for peer in ["", "alice"] {
                // Offers to the inbox and to alice alike.
                id += 2;
                mallory
                    .send(&Frame::Offer {
                        id,
                        size: 4,
                        name: (*name).into(),
                        peer: peer.into(),
                    })
                    .unwrap();
                match mallory.recv(WAIT) {
                    Ok(Frame::Reject { id: got, code, .. }) => {
                        assert_eq!((got, code), (id, Code::BAD_FILE_NAME), "{name:?}")
                    }
                    other => panic!("{runtime}: {name:?} got {other:?}"),
                }
            }
        }
        // Names that are no names at all, and rooms with control characters.
        for (name, room) in [("\u{1b}]0;pwned\u{7}", ""), ("eve", "a\nroom")] {
            let mut raw = Raw::connect(server.addr);
            raw.hello(name, room, b"");
            let (code, _) = raw.expect_end();
            assert!(code == Code::NAME_INVALID || code == Code::ROOM_INVALID);
        }
        let seen = alice.carry_on("hostile file names");
        assert!(
            seen.iter().all(|f| !matches!(f, Frame::Offer { .. })),
            "{runtime}: alice was offered {seen:?}"
        );
        drop(mallory);
        server.expect(&["\"mallory\" (", "disconnected"]);
        server.terminate();
        // Nothing outside the inbox, nothing in it.
        let around: Vec<_> = std::fs::read_dir(scratch.path()).unwrap().collect();
        assert_eq!(around.len(), 1, "{runtime}: {around:?}");
        assert!(common::stored_in(&inbox).is_empty(), "{runtime}");
        assert!(common::partials_in(&inbox).is_empty(), "{runtime}");
        let output = server.output();
        if let Some(at) = has_raw_control(&output) {
            panic!(
                "{runtime}: a raw control character in the server's output at {at}:\n{}",
                String::from_utf8_lossy(&output)
            );
        }
    }
    assert!(!std::path::Path::new("/etc/x").exists());

    // A name that differs only by case from a file already there is stored
    // beside it, never over it.
    let mut server = Serve::start(&inbox, &[]);
    let addr = server.addr();
    for (dir, name, text) in [("a", "Report.txt", "first"), ("b", "REPORT.TXT", "second")] {
        let dir = files.path().join(dir);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let (ok, out, err) = run(&["send", &addr, path.to_str().unwrap()], &[]);
        assert!(ok, "{out}{err}");
    }
    assert_eq!(std::fs::read(inbox.join("Report.txt")).unwrap(), b"first");
    assert_eq!(
        std::fs::read(inbox.join("REPORT (1).TXT")).unwrap(),
        b"second"
    );
    server.expect(&["saved", "REPORT (1).TXT"]);
}
