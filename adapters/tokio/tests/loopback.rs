//! The tokio adapter over real sockets on 127.0.0.1: chat, membership,
//! refusals, uploads, relayed files, garbage and resumed transfers.

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use ferry_core::frame::{decode, Frame, PREAMBLE};
use ferry_core::transfer::Outcome;
use ferry_core::{ClientConfig, Code, Connection, Event, ResumeKey};
use ferry_files::{
    ClientCommand, ClientNotice, FileTransfers, OfferPolicy, Report, Sending, ServerNotice,
};
use std::fs;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

#[test]
fn three_in_a_room_see_every_message_with_the_same_seq() {
    let server = server(None);
    let names = ["alice", "bob", "carol"];
    let clients: Vec<_> = names.iter().map(|n| client(&server, n, None)).collect();
    for (name, client) in names.iter().zip(&clients) {
        client.send(ClientCommand::Say(format!("hello from {name}")));
    }
    let mut seen = Vec::new();
    for client in &clients {
        let mut messages = Vec::new();
        while messages.len() < names.len() {
            let message = wait_for(client.notices(), "three messages", |n| match n {
                ClientNotice::Event(Event::Message { seq, from, text }) => {
                    Some((*seq, from.to_string(), text.to_string()))
                }
                _ => None,
            });
            messages.push(message);
        }
        seen.push(messages);
    }
    // Every member saw the same messages, in the same order, with the same
    // room sequence numbers.
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[1], seen[2]);
    assert!(seen[0].windows(2).all(|w| w[0].0 < w[1].0), "{seen:?}");
    for name in names {
        assert!(seen[0]
            .iter()
            .any(|(_, from, text)| from == name && *text == format!("hello from {name}")));
    }
    finish(server, clients);
}

#[test]
fn a_direct_message_reaches_only_its_recipient() {
    let server = server(None);
    let alice = client(&server, "alice", None);
    let bob = client(&server, "bob", None);
    let carol = client(&server, "carol", None);
    alice.send(ClientCommand::Direct {
        to: "bob".into(),
        text: "psst".into(),
    });
    // The room message goes out after the direct one: once carol has it,
    // she would have had the direct message too.
    alice.send(ClientCommand::Say("after".into()));
    wait_for(bob.notices(), "the direct message", |n| match n {
        ClientNotice::Event(Event::Direct { from, text }) if from == "alice" && text == "psst" => {
            Some(())
        }
        _ => None,
    });
    wait_for(carol.notices(), "the room message", |n| {
        assert!(
            !matches!(n, ClientNotice::Event(Event::Direct { .. })),
            "{n:?}"
        );
        message_from(n, "alice", "after")
    });
    alice.send(ClientCommand::Direct {
        to: "nobody".into(),
        text: "hello?".into(),
    });
    wait_for(alice.notices(), "the bounce", |n| match n {
        ClientNotice::Event(Event::Bounced {
            code: Code::NO_SUCH_USER,
            ..
        }) => Some(()),
        _ => None,
    });
    finish(server, vec![alice, bob, carol]);
}

#[test]
fn joins_and_leaves_are_announced() {
    let server = server(None);
    let alice = client(&server, "alice", None);
    let bob = client(&server, "bob", None);
    wait_for(alice.notices(), "bob joining", |n| match n {
        ClientNotice::Event(Event::Joined { name, .. }) if name == "bob" => Some(()),
        _ => None,
    });
    bob.send(ClientCommand::Bye);
    wait_for(alice.notices(), "bob leaving", |n| match n {
        ClientNotice::Event(Event::Left { name, code, .. }) if name == "bob" => Some(*code),
        _ => None,
    });
    wait_for(bob.notices(), "bob's close", |n| match n {
        ClientNotice::Event(Event::Closed {
            code: Code::QUIT,
            by_peer: false,
            ..
        }) => Some(()),
        _ => None,
    });
    wait_for_end(bob.notices(), "bob's notices");
    bob.join().unwrap();

    // The server saw all of it.
    let bob_id = wait_for(server.notices(), "bob joining", |n| match n {
        ServerNotice::Joined { client, name, .. } if name == "bob" => Some(*client),
        _ => None,
    });
    let code = wait_for(server.notices(), "bob leaving", |n| match n {
        ServerNotice::Left { client, code, .. } if *client == bob_id => Some(*code),
        _ => None,
    });
    assert_eq!(code, Code::QUIT);
    wait_for(server.notices(), "bob disconnecting", |n| match n {
        ServerNotice::Disconnected { client, .. } if *client == bob_id => Some(()),
        _ => None,
    });
    finish(server, vec![alice]);
}

#[test]
fn the_left_code_is_quit_after_bye() {
    let server = server(None);
    let alice = client(&server, "alice", None);
    let bob = client(&server, "bob", None);
    bob.send(ClientCommand::Bye);
    let code = wait_for(alice.notices(), "bob leaving", |n| match n {
        ClientNotice::Event(Event::Left { name, code, .. }) if name == "bob" => Some(*code),
        _ => None,
    });
    assert_eq!(code, Code::QUIT);
    finish(server, vec![alice, bob]);
}

#[test]
fn a_taken_name_is_refused() {
    let server = server(None);
    let alice = client(&server, "alice", None);
    let refused = ferry_tokio::spawn_client(
        server.local_addr(),
        ClientConfig::new("ALICE"),
        None,
        Duration::from_secs(5),
    )
    .unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::PermissionDenied);
    assert!(refused.to_string().contains("name taken"), "{refused}");
    // The first alice is unaffected.
    alice.send(ClientCommand::Say("still me".into()));
    wait_for(alice.notices(), "alice's message", |n| {
        message_from(n, "alice", "still me")
    });
    finish(server, vec![alice]);
}

#[test]
fn a_client_that_is_never_welcomed_times_out() {
    // A listener that accepts and says nothing.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let error = ferry_tokio::spawn_client(
        silent.local_addr().unwrap(),
        ClientConfig::new("alice"),
        None,
        Duration::from_millis(200),
    )
    .unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
}

/// Waits for a transfer of the client's to end and returns how.
fn outcome(notices: &std::sync::mpsc::Receiver<ClientNotice>) -> Outcome {
    wait_for(notices, "the transfer's end", |n| match n {
        ClientNotice::File(Report::Finished { outcome, .. }) => Some(outcome.clone()),
        ClientNotice::Error(e) => panic!("{e}"),
        _ => None,
    })
}

#[test]
fn a_16_mib_upload_is_stored_byte_for_byte() {
    let src = tempfile::tempdir().unwrap();
    let inbox = tempfile::tempdir().unwrap();
    let data = contents(16 << 20, 7);
    let path = src.path().join("big.bin");
    fs::write(&path, &data).unwrap();
    let server = server(Some(inbox.path()));
    let alice = client(&server, "alice", None);
    alice.send(ClientCommand::SendFile {
        path: path.clone(),
        to: String::new(),
    });
    assert_eq!(outcome(alice.notices()), Outcome::Verified);
    let saved = wait_for(server.notices(), "the stored file", |n| match n {
        ServerNotice::File {
            report: Report::Saved { path, .. },
            ..
        } => Some(path.clone()),
        _ => None,
    });
    assert_eq!(saved, inbox.path().join("big.bin"));
    assert!(fs::read(&saved).unwrap() == data, "contents differ");
    assert_eq!(files_in(inbox.path()), vec!["big.bin"], "no .part left");
    finish(server, vec![alice]);
}

#[test]
fn a_file_goes_from_user_to_user_through_the_room() {
    let src = tempfile::tempdir().unwrap();
    let bobs = tempfile::tempdir().unwrap();
    let data = contents(3 << 20, 9);
    let path = src.path().join("holiday.jpg");
    fs::write(&path, &data).unwrap();
    // The server has no inbox: the file is relayed, not stored there.
    let server = server(None);
    let alice = client(&server, "alice", None);
    let bob = client(&server, "bob", Some(bobs.path()));
    alice.send(ClientCommand::SendFile {
        path,
        to: "bob".into(),
    });
    let saved = wait_for(bob.notices(), "bob's copy", |n| match n {
        ClientNotice::File(Report::Saved { path, .. }) => Some(path.clone()),
        ClientNotice::File(Report::Offered { accepted: None, .. }) => panic!("declined"),
        _ => None,
    });
    assert_eq!(outcome(alice.notices()), Outcome::Verified);
    assert!(fs::read(&saved).unwrap() == data, "contents differ");
    assert_eq!(files_in(bobs.path()), vec!["holiday.jpg"]);
    finish(server, vec![alice, bob]);
}

#[test]
fn garbage_gets_an_error_frame_and_the_room_chats_on() {
    let server = server(None);
    let alice = client(&server, "alice", None);
    let bob = client(&server, "bob", None);

    // An HTTP request is text, so not a ferry peer, and no person either:
    // it is told so in one plain-text line (a raw-text guest's language).
    let mut http = TcpStream::connect(server.local_addr()).unwrap();
    http.set_read_timeout(Some(WAIT)).unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: ferry\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    http.read_to_end(&mut answer).unwrap();
    assert_eq!(
        answer,
        b"! closing: this is a ferry chat server, not a web server\r\n"
    );
    wait_for(server.notices(), "the web client's end", |n| match n {
        ServerNotice::Disconnected {
            code: Code::NOT_FERRY,
            ..
        } => Some(()),
        _ => None,
    });

    // Binary that starts like the preamble and then differs: a broken
    // ferry peer, answered in its own language.
    let mut raw = TcpStream::connect(server.local_addr()).unwrap();
    raw.set_read_timeout(Some(WAIT)).unwrap();
    raw.write_all(b"\x89FERRIES\r\n").unwrap();
    // The server answers, then closes: reading ends at its FIN.
    let mut answer = Vec::new();
    raw.read_to_end(&mut answer).unwrap();
    assert!(answer.starts_with(&PREAMBLE), "{answer:?}");
    let mut buf = BytesMut::from(&answer[PREAMBLE.len()..]);
    match decode(&mut buf, 1 << 20) {
        Ok(Some(Frame::Error { code, .. })) => assert_eq!(code, Code::NOT_FERRY),
        other => panic!("expected an ERROR frame, got {other:?}"),
    }
    wait_for(server.notices(), "the raw client's end", |n| match n {
        ServerNotice::Disconnected {
            code: Code::NOT_FERRY,
            ..
        } => Some(()),
        _ => None,
    });
    drop(raw);

    alice.send(ClientCommand::Say("anyone there?".into()));
    wait_for(bob.notices(), "alice's message", |n| {
        message_from(n, "alice", "anyone there?")
    });
    finish(server, vec![alice, bob]);
}

/// A client run by hand over a blocking-free std socket, so a test can cut
/// it off wherever it likes.
struct RawClient {
    stream: TcpStream,
    conn: Connection,
    files: FileTransfers,
    pending: Option<Bytes>,
    /// Bytes handed to the socket so far.
    written: usize,
    /// The key the receiver handed out to resume the upload, once it did.
    resume_key: Option<ResumeKey>,
}

impl RawClient {
    fn connect(addr: std::net::SocketAddr, name: &str) -> RawClient {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nonblocking(true).unwrap();
        let mut raw = RawClient {
            stream,
            conn: Connection::client(ClientConfig::new(name), Instant::now()),
            files: FileTransfers::new(None, OfferPolicy::Reject),
            pending: None,
            written: 0,
            resume_key: None,
        };
        raw.run_until(|raw| raw.conn.is_open());
        raw
    }

    /// Moves bytes both ways until `done`, for at most [`WAIT`].
    fn run_until(&mut self, mut done: impl FnMut(&RawClient) -> bool) {
        let deadline = Instant::now() + WAIT;
        let mut buf = vec![0; 64 * 1024];
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out");
            assert!(!self.conn.is_closed(), "closed");
            let now = Instant::now();
            let mut moved = false;
            while let Some(event) = self.conn.poll_event() {
                if let Event::Transfer(t) = event {
                    if let Some(Report::ResumeKey { key, .. }) =
                        self.files.handle(&mut self.conn, now, t)
                    {
                        self.resume_key = Some(key);
                    }
                }
            }
            if let Some(segment) = self.pending.take().or_else(|| self.conn.poll_transmit()) {
                match self.stream.write(&segment) {
                    Ok(n) => {
                        self.written += n;
                        moved = true;
                        if n < segment.len() {
                            self.pending = Some(segment.slice(n..));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.pending = Some(segment),
                    Err(e) => panic!("{e}"),
                }
            }
            match self.stream.read(&mut buf) {
                Ok(0) => self.conn.handle_eof(now),
                Ok(n) => {
                    self.conn.handle_input(now, &buf[..n]);
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
            if !moved {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

#[test]
fn an_upload_cut_off_midway_is_resumed_by_a_new_client() {
    let src = tempfile::tempdir().unwrap();
    let inbox = tempfile::tempdir().unwrap();
    let data = contents(8 << 20, 3);
    let path = src.path().join("movie.mkv");
    fs::write(&path, &data).unwrap();
    let server = server(Some(inbox.path()));

    // A client sends about 3 MiB, then its socket is dropped mid-frame.
    let mut mallory = RawClient::connect(server.local_addr(), "mallory");
    let (file, name, size) = Sending::open(&path).unwrap();
    let id = mallory
        .conn
        .offer_file(Instant::now(), &name, size, "")
        .unwrap();
    mallory.files.register_send(id, file);
    let start = mallory.written;
    mallory.run_until(|raw| raw.written >= start + (3 << 20) + 1000);
    let key = mallory
        .resume_key
        .expect("the server handed out a resume key");
    drop(mallory);
    wait_for(server.notices(), "the cut-off client's end", |n| match n {
        ServerNotice::Disconnected {
            code: Code::CONNECTION_LOST,
            ..
        } => Some(()),
        _ => None,
    });
    // Its last chunks may still be on their way to the disk; the server
    // says when the partial file is complete.
    let reported = wait_for(server.notices(), "the partial file", |n| match n {
        ServerNotice::File {
            report: Report::PartialKept { held, .. },
            ..
        } => Some(*held),
        _ => None,
    });
    assert!(files_in(inbox.path()).is_empty(), "only a partial file");
    let [held] = partial_lengths(inbox.path())[..] else {
        panic!("{:?}", partial_lengths(inbox.path()));
    };
    assert_eq!(held, reported);
    assert!(held > 0 && held < data.len() as u64, "{held}");

    // Another client, given the key, offers the identical file and
    // resumes where it broke.
    let alice = client(&server, "alice", None);
    alice.send(ClientCommand::ResumeFile {
        path,
        to: String::new(),
        key,
    });
    let offset = wait_for(alice.notices(), "the acceptance", |n| match n {
        ClientNotice::File(Report::Accepted { offset, .. }) => Some(*offset),
        _ => None,
    });
    assert_eq!(offset, held);
    assert_eq!(outcome(alice.notices()), Outcome::Verified);
    assert!(
        fs::read(inbox.path().join("movie.mkv")).unwrap() == data,
        "contents differ"
    );
    assert_eq!(files_in(inbox.path()), vec!["movie.mkv"]);
    assert!(partial_lengths(inbox.path()).is_empty());
    finish(server, vec![alice]);
}

#[test]
fn a_sent_file_that_does_not_exist_is_an_error_notice() {
    let server = server(None);
    let alice = client(&server, "alice", None);
    alice.send(ClientCommand::SendFile {
        path: Path::new("/nonexistent/ferry/file").to_path_buf(),
        to: String::new(),
    });
    let error = wait_for(alice.notices(), "an error", |n| match n {
        ClientNotice::Error(e) => Some(e.clone()),
        _ => None,
    });
    assert!(error.contains("/nonexistent/ferry/file"), "{error}");
    finish(server, vec![alice]);
}

#[test]
fn a_client_that_stops_reading_holds_nobody_up() {
    let mut config = ferry_core::HubConfig::default();
    // Let alice talk as fast as she can; the point is the reader.
    config.flood_burst = 1_000_000;
    config.flood_per_second = 1_000_000;
    // Every client is on 127.0.0.1, one source with one shared budget.
    config.source_flood_burst = 1_000_000;
    config.source_flood_per_second = 1_000_000;
    config.connection.max_outgoing = 256 * 1024;
    let server = server_with(config, None);
    let alice = client(&server, "alice", None);
    let bob = client(&server, "bob", None);
    // Joins, then never reads again.
    let slow = RawClient::connect(server.local_addr(), "slow");
    // Far more than the slow socket's kernel buffers and its hub queue
    // hold, in rounds that bob keeps up with: he is not the slow one.
    let text = "x".repeat(4000);
    for round in 0..125 {
        for i in 0..20 {
            alice.send(ClientCommand::Say(format!("{round}.{i} {text}")));
        }
        let last = format!("{round}.19 {text}");
        wait_for(bob.notices(), "alice's round", |n| {
            message_from(n, "alice", &last)
        });
    }
    wait_for(server.notices(), "the slow reader dropped", |n| match n {
        ServerNotice::Disconnected {
            code: Code::SLOW_READER,
            ..
        } => Some(()),
        _ => None,
    });
    drop(slow);
    finish(server, vec![alice, bob]);
}

/// A client's first bytes (preamble and HELLO) sent on a new blocking
/// socket; the connection reads nothing yet.
fn say_hello(addr: std::net::SocketAddr, config: ClientConfig) -> (TcpStream, Connection) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut conn = Connection::client(config, Instant::now());
    while let Some(bytes) = conn.poll_transmit() {
        stream.write_all(&bytes).unwrap();
    }
    (stream, conn)
}

/// Reads `stream` into `conn` until `want` picks an event.
fn read_until(stream: &mut TcpStream, conn: &mut Connection, want: impl Fn(&Event) -> bool) {
    let mut buf = vec![0; 64 * 1024];
    loop {
        if std::iter::from_fn(|| conn.poll_event()).any(|e| want(&e)) {
            return;
        }
        assert!(!conn.is_closed());
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the server closed a client");
        conn.handle_input(Instant::now(), &buf[..n]);
    }
}

#[test]
fn one_task_holds_a_thousand_clients() {
    // All of them come from 127.0.0.1: lift the per-source limits (a
    // thousand joins at once spend the shared budget of joins).
    let mut config = ferry_core::HubConfig::default();
    config.max_per_ip = 2_000;
    config.source_flood_burst = 1_000_000;
    config.source_flood_per_second = 1_000_000;
    let server = server_with(config, None);
    let mut users = Vec::new();
    // Waves of a hundred, each connecting and saying HELLO before any of
    // them reads an answer. (All at once would overflow the kernel's
    // accept backlog and test SYN retransmits instead.) Ten rooms, so that
    // the test does not spend its time on JOINED frames to everyone.
    for wave in 0..10 {
        let start = users.len();
        for i in 0..100 {
            let n = wave * 100 + i;
            let config = ClientConfig::new(format!("user{n}")).room(format!("room{}", n % 10));
            users.push(say_hello(server.local_addr(), config));
        }
        for (stream, conn) in &mut users[start..] {
            read_until(stream, conn, |e| matches!(e, Event::Welcomed { .. }));
        }
    }
    // An announcement goes to every room.
    server.announce("hello, everyone");
    for (stream, conn) in &mut users {
        read_until(stream, conn, |e| {
            matches!(e, Event::Message { from, text, .. }
                if from.is_empty() && text == "hello, everyone")
        });
    }
    drop(users);
    finish(server, Vec::new());
}
