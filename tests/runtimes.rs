//! End to end over real loopback sockets: the same scenarios for every
//! runtime as server, and every runtime as client.

mod common;

use bytes::Bytes;
use common::contents;
use ferry_core::frame::{decode, Frame, PREAMBLE};
use ferry_core::transfer::{Outcome, TransferEvent};
use ferry_core::{ClientConfig, Code, Connection, Event, HubConfig, ResumeKey};
use ferry_files::{
    ClientCommand, ClientHandle, ClientNotice, Inbox, Report, ServerHandle, ServerNotice,
};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

type SpawnServer = fn(SocketAddr, HubConfig, Option<Inbox>) -> io::Result<ServerHandle>;
type SpawnClient =
    fn(SocketAddr, ClientConfig, Option<Inbox>, Duration) -> io::Result<ClientHandle>;

/// Every server runtime, by name.
const SERVERS: &[(&str, SpawnServer)] = &[
    ("mio", ferry_mio::spawn_server),
    ("std", ferry_std::spawn_server),
];
/// Every client runtime, by name.
const CLIENTS: &[(&str, SpawnClient)] = &[
    ("mio", ferry_mio::spawn_client),
    ("std", ferry_std::spawn_client),
];

const WAIT: Duration = Duration::from_secs(20);

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn join(
    spawn: SpawnClient,
    server: &ServerHandle,
    name: &str,
    files: Option<&Path>,
) -> ClientHandle {
    let inbox = files.map(|dir| Inbox::open(dir).unwrap());
    spawn(server.local_addr(), ClientConfig::new(name), inbox, WAIT).unwrap()
}

/// Waits for the first notice `pick` accepts, failing after `WAIT`.
fn wait_for<T>(
    client: &ClientHandle,
    what: &str,
    mut pick: impl FnMut(ClientNotice) -> Option<T>,
) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.notices().recv_timeout(left) {
            Ok(notice) => {
                if let Some(found) = pick(notice) {
                    return found;
                }
            }
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    }
}

fn message(client: &ClientHandle) -> (u64, String, String) {
    wait_for(client, "a message", |n| match n {
        ClientNotice::Event(Event::Message { seq, from, text }) => {
            Some((seq, from.to_string(), text.to_string()))
        }
        _ => None,
    })
}

fn transfer_outcome(client: &ClientHandle) -> Outcome {
    wait_for(client, "the end of a transfer", |n| match n {
        ClientNotice::File(Report::Finished { outcome, .. }) => Some(outcome),
        ClientNotice::Error(e) => panic!("{e}"),
        _ => None,
    })
}

fn stop(server: ServerHandle) {
    server.shutdown("test over");
    server.join().unwrap();
}

fn for_each_pair(mut scenario: impl FnMut(&str, SpawnServer, SpawnClient)) {
    for &(server_name, server) in SERVERS {
        for &(client_name, client) in CLIENTS {
            scenario(
                &format!("{server_name} server, {client_name} clients"),
                server,
                client,
            );
        }
    }
}

#[test]
fn room_of_three_with_dm_and_leave_notices() {
    for_each_pair(|label, spawn_server, spawn_client| {
        let server = spawn_server(any_port(), HubConfig::default(), None).unwrap();
        let alice = join(spawn_client, &server, "alice", None);
        let bob = join(spawn_client, &server, "bob", None);
        let carol = join(spawn_client, &server, "carol", None);
        // Wait until carol is in everyone's room before talking.
        for c in [&alice, &bob] {
            wait_for(c, "carol's arrival", |n| match n {
                ClientNotice::Event(Event::Joined { name, .. }) if name == "carol" => Some(()),
                _ => None,
            });
        }
        alice.send(ClientCommand::Say("hi all".into()));
        let mut alices = vec![message(&alice)];
        bob.send(ClientCommand::Say("hello".into()));
        carol.send(ClientCommand::Say("hey".into()));
        alices.extend([message(&alice), message(&alice)]);
        // Everyone sees every message, with the same sequence numbers.
        let bobs: Vec<_> = (0..3).map(|_| message(&bob)).collect();
        let carols: Vec<_> = (0..3).map(|_| message(&carol)).collect();
        assert_eq!(alices, bobs, "{label}");
        assert_eq!(alices, carols, "{label}");
        assert_eq!(
            (alices[0].1.as_str(), alices[0].2.as_str()),
            ("alice", "hi all"),
            "{label}"
        );
        assert_eq!(
            alices[2].0,
            alices[0].0 + 2,
            "{label}: one sequence for the room"
        );
        let mut texts: Vec<_> = alices.iter().map(|m| m.2.as_str()).collect();
        texts.sort_unstable();
        assert_eq!(texts, ["hello", "hey", "hi all"], "{label}");

        carol.send(ClientCommand::Direct {
            to: "ALICE".into(),
            text: "psst".into(),
        });
        let dm = wait_for(&alice, "a DM", |n| match n {
            ClientNotice::Event(Event::Direct { from, text }) => {
                Some((from.to_string(), text.to_string()))
            }
            _ => None,
        });
        assert_eq!(dm, ("carol".to_string(), "psst".to_string()), "{label}");

        bob.send(ClientCommand::Bye);
        bob.join().unwrap();
        for c in [&alice, &carol] {
            let code = wait_for(c, "bob leaving", |n| match n {
                ClientNotice::Event(Event::Left { name, code, .. }) if name == "bob" => Some(code),
                _ => None,
            });
            assert_eq!(code, Code::QUIT, "{label}");
        }
        stop(server);
        for c in [alice, carol] {
            let code = wait_for(&c, "the shutdown", |n| match n {
                ClientNotice::Event(Event::Closed { code, .. }) => Some(code),
                _ => None,
            });
            assert_eq!(code, Code::SHUTDOWN, "{label}");
        }
    });
}

/// A message and the end of stream arriving together (one readiness
/// event for both): the message is heard and the leave announced. A server
/// that stops reading after a short read must not miss the end of stream
/// the same event already reported.
#[test]
fn a_last_word_and_a_hang_up_together_are_both_heard() {
    for &(server_name, spawn_server) in SERVERS {
        let server = spawn_server(any_port(), HubConfig::default(), None).unwrap();
        let alice = join(ferry_mio::spawn_client, &server, "alice", None);
        let mut bob = TcpStream::connect(server.local_addr()).unwrap();
        bob.set_read_timeout(Some(WAIT)).unwrap();
        let mut conn = Connection::client(ClientConfig::new("bob"), Instant::now());
        let mut buf = vec![0; 4096];
        while !conn.is_open() {
            while let Some(bytes) = conn.poll_transmit() {
                bob.write_all(&bytes).unwrap();
            }
            let n = bob.read(&mut buf).unwrap();
            assert_ne!(n, 0, "{server_name} server: hung up on bob's hello");
            conn.handle_input(Instant::now(), &buf[..n]);
        }
        wait_for(&alice, "bob's arrival", |n| match n {
            ClientNotice::Event(Event::Joined { name, .. }) if name == "bob" => Some(()),
            _ => None,
        });
        conn.say(Instant::now(), "bye for now").unwrap();
        let mut last = Vec::new();
        while let Some(bytes) = conn.poll_transmit() {
            last.extend_from_slice(&bytes);
        }
        bob.write_all(&last).unwrap();
        bob.shutdown(std::net::Shutdown::Write).unwrap();
        let (_, from, text) = message(&alice);
        assert_eq!((from.as_str(), text.as_str()), ("bob", "bye for now"));
        wait_for(&alice, "bob leaving", |n| match n {
            ClientNotice::Event(Event::Left { name, .. }) if name == "bob" => Some(()),
            _ => None,
        });
        stop(server);
    }
}

#[test]
fn a_name_clash_is_refused() {
    for_each_pair(|label, spawn_server, spawn_client| {
        let server = spawn_server(any_port(), HubConfig::default(), None).unwrap();
        let _alice = join(spawn_client, &server, "alice", None);
        let err =
            spawn_client(server.local_addr(), ClientConfig::new("Alice"), None, WAIT).unwrap_err();
        assert!(err.to_string().contains("name taken"), "{label}: {err}");
        stop(server);
    });
}

#[test]
fn upload_of_64_mib_is_verified() {
    for_each_pair(|label, spawn_server, spawn_client| {
        let src = tempfile::tempdir().unwrap();
        let inbox = tempfile::tempdir().unwrap();
        let data = contents(64 << 20, 5);
        let path = src.path().join("big.bin");
        std::fs::write(&path, &data).unwrap();
        let server = spawn_server(
            any_port(),
            HubConfig::default(),
            Some(Inbox::open(inbox.path()).unwrap()),
        )
        .unwrap();
        let alice = join(spawn_client, &server, "alice", None);
        alice.send(ClientCommand::SendFile {
            path,
            to: String::new(),
        });
        assert_eq!(transfer_outcome(&alice), Outcome::Verified, "{label}");
        let stored = std::fs::read(inbox.path().join("big.bin")).unwrap();
        assert!(stored == data, "{label}: stored file differs");
        assert!(common::partials_in(inbox.path()).is_empty(), "{label}");
        stop(server);
    });
}

#[test]
fn user_to_user_transfer_through_the_room() {
    for_each_pair(|label, spawn_server, spawn_client| {
        let src = tempfile::tempdir().unwrap();
        let bobs = tempfile::tempdir().unwrap();
        let data = contents(5_000_001, 6);
        let path = src.path().join("photo.jpg");
        std::fs::write(&path, &data).unwrap();
        let server = spawn_server(any_port(), HubConfig::default(), None).unwrap();
        let alice = join(spawn_client, &server, "alice", None);
        let bob = join(spawn_client, &server, "bob", Some(bobs.path()));
        alice.send(ClientCommand::SendFile {
            path,
            to: "bob".into(),
        });
        assert_eq!(transfer_outcome(&alice), Outcome::Verified, "{label}");
        let saved = wait_for(&bob, "the saved file", |n| match n {
            ClientNotice::File(Report::Saved { path, .. }) => Some(path),
            _ => None,
        });
        assert_eq!(saved, bobs.path().join("photo.jpg"));
        assert!(std::fs::read(&saved).unwrap() == data, "{label}");
        stop(server);
    });
}

#[test]
fn garbage_is_refused_while_others_carry_on() {
    for_each_pair(|label, spawn_server, spawn_client| {
        let server = spawn_server(any_port(), HubConfig::default(), None).unwrap();
        let alice = join(spawn_client, &server, "alice", None);
        let mut raw = TcpStream::connect(server.local_addr()).unwrap();
        raw.set_read_timeout(Some(WAIT)).unwrap();
        raw.write_all(b"\x89FERRY\r\n\x42\x00\x00\x00\x00").unwrap();
        let mut reply = Vec::new();
        let _ = raw.read_to_end(&mut reply);
        assert!(reply.starts_with(&PREAMBLE), "{label}: {reply:?}");
        let mut buf = bytes::BytesMut::from(&reply[PREAMBLE.len()..]);
        let frame = decode(&mut buf, 1 << 20).unwrap().unwrap();
        assert!(
            matches!(
                frame,
                Frame::Error {
                    code: Code::UNKNOWN_FRAME_TYPE,
                    ..
                }
            ),
            "{label}: {frame:?}"
        );
        alice.send(ClientCommand::Say("unbothered".into()));
        assert_eq!(message(&alice).2, "unbothered", "{label}");
        stop(server);
    });
}

/// Uploads the first `upto` bytes of `data` with a hand-driven connection,
/// then drops the socket: a client killed mid-transfer. Returns the key
/// the server handed out to resume it.
fn killed_upload(addr: SocketAddr, name: &str, data: &[u8], upto: u64) -> ResumeKey {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let now = Instant::now();
    let mut conn = Connection::client(ClientConfig::new("crasher"), now);
    let mut offered = false;
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + WAIT;
    let mut written = 0u64;
    let mut key = None;
    while Instant::now() < deadline {
        while let Some(b) = conn.poll_transmit() {
            stream.write_all(&b).unwrap();
        }
        if conn.is_open() && !offered {
            conn.offer_file(Instant::now(), name, data.len() as u64, "")
                .unwrap();
            offered = true;
        }
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Transfer(TransferEvent::NeedChunk { id, offset, len }) => {
                    let chunk = Bytes::copy_from_slice(
                        &data[offset as usize..(offset + u64::from(len)) as usize],
                    );
                    conn.supply_chunk(Instant::now(), id, offset, chunk)
                        .unwrap();
                }
                Event::Transfer(TransferEvent::Progress { confirmed, .. }) => written = confirmed,
                Event::Transfer(TransferEvent::ResumeKey { key: issued, .. }) => key = Some(issued),
                _ => {}
            }
        }
        if written >= upto {
            // The socket drops here, mid-transfer.
            return key.expect("the server handed out no resume key");
        }
        match stream.read(&mut buf) {
            Ok(0) => panic!("server closed"),
            Ok(n) => conn.handle_input(Instant::now(), &buf[..n]),
            Err(_) => conn.handle_timeout(Instant::now()),
        }
    }
    panic!("the killed upload never got to {upto} bytes");
}

#[test]
fn a_killed_upload_resumes_for_its_key_holder_only_and_to_the_identical_file() {
    for_each_pair(|label, spawn_server, spawn_client| {
        let src = tempfile::tempdir().unwrap();
        let inbox = tempfile::tempdir().unwrap();
        let data = contents(12 << 20, 8);
        let path = src.path().join("movie.mkv");
        std::fs::write(&path, &data).unwrap();
        let server = spawn_server(
            any_port(),
            HubConfig::default(),
            Some(Inbox::open(inbox.path()).unwrap()),
        )
        .unwrap();
        let key = killed_upload(server.local_addr(), "movie.mkv", &data, 5 << 20);
        // The server tells when the partial file is complete on disk.
        let deadline = Instant::now() + WAIT;
        let (kept, reported) = loop {
            let kept = server.notices().try_iter().find_map(|n| match n {
                ServerNotice::File {
                    report: Report::PartialKept { path, held, .. },
                    ..
                } => Some((path, held)),
                _ => None,
            });
            if let Some(kept) = kept {
                break kept;
            }
            assert!(
                Instant::now() < deadline,
                "{label}: the partial file was never reported"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(
            !inbox.path().join("movie.mkv").exists(),
            "{label}: partial under the final name"
        );
        let (partial, held) = common::the_partial_in(inbox.path()).expect(label);
        assert_eq!(kept, partial, "{label}");
        assert_eq!(held, reported, "{label}");
        assert!(held >= 5 << 20, "{label}: held {held}");

        // Someone else offers the same name and size, without the key: a
        // new upload from 0 (told nothing of the first), which it finishes
        // with other contents; the first stays as it was.
        let other = contents(data.len(), 9);
        let other_path = src.path().join("other").join("movie.mkv");
        std::fs::create_dir(other_path.parent().unwrap()).unwrap();
        std::fs::write(&other_path, &other).unwrap();
        let mallory = join(spawn_client, &server, "mallory", None);
        mallory.send(ClientCommand::SendFile {
            path: other_path,
            to: String::new(),
        });
        let taken_at = wait_for(&mallory, "mallory's accept", |n| match n {
            ClientNotice::File(Report::Accepted { offset, .. }) => Some(offset),
            _ => None,
        });
        assert_eq!(taken_at, 0, "{label}: the other upload was resumed");
        assert_eq!(transfer_outcome(&mallory), Outcome::Verified, "{label}");
        assert!(std::fs::read(inbox.path().join("movie.mkv")).unwrap() == other);
        assert_eq!(std::fs::metadata(&partial).unwrap().len(), held, "{label}");

        // The key holder resumes after its own bytes, to the identical file.
        let alice = join(spawn_client, &server, "alice", None);
        alice.send(ClientCommand::ResumeFile {
            path,
            to: String::new(),
            key,
        });
        let resumed_at = wait_for(&alice, "the accept", |n| match n {
            ClientNotice::File(Report::Accepted { offset, .. }) => Some(offset),
            _ => None,
        });
        assert_eq!(resumed_at, held, "{label}");
        assert_eq!(transfer_outcome(&alice), Outcome::Verified, "{label}");
        assert!(
            std::fs::read(inbox.path().join("movie (1).mkv")).unwrap() == data,
            "{label}"
        );
        assert!(common::partials_in(inbox.path()).is_empty(), "{label}");
        stop(server);
    });
}

/// Offers into an inbox that asks first wait for the user: accepted, the
/// file arrives whole; declined, or left unanswered past its time, the
/// sender hears "rejected" and is not left waiting. Every client runtime.
#[test]
fn offers_wait_for_the_users_answer() {
    let clients: [(&str, SpawnClient); 3] = [
        ("mio", ferry_mio::spawn_client),
        ("smol", ferry_smol::spawn_client),
        ("std", ferry_std::spawn_client),
    ];
    for (label, spawn_client) in clients {
        let src = tempfile::tempdir().unwrap();
        let bobs = tempfile::tempdir().unwrap();
        let data = contents(1_000_003, 9);
        let path = src.path().join("asked.bin");
        std::fs::write(&path, &data).unwrap();
        let server = ferry_mio::spawn_server(any_port(), HubConfig::default(), None).unwrap();
        let alice = join(spawn_client, &server, "alice", None);
        // Some runtimes return from spawn_client before the welcome: alice
        // must be in the room before bob comes, to see him arrive.
        wait_for(&alice, &format!("{label}: alice's welcome"), |n| match n {
            ClientNotice::Event(Event::Welcomed { .. }) => Some(()),
            _ => None,
        });
        let answer_within = Duration::from_millis(700);
        let inbox = Inbox::open(bobs.path()).unwrap().ask_first(answer_within);
        let bob = spawn_client(
            server.local_addr(),
            ClientConfig::new("bob"),
            Some(inbox),
            WAIT,
        )
        .unwrap();
        // Offer only once alice has seen bob arrive.
        wait_for(&alice, &format!("{label}: bob's arrival"), |n| match n {
            ClientNotice::Event(Event::Joined { name, .. }) if name == "bob" => Some(()),
            _ => None,
        });
        let offer = || {
            alice.send(ClientCommand::SendFile {
                path: path.clone(),
                to: "bob".into(),
            });
            wait_for(&bob, &format!("{label}: an offer to answer"), |n| match n {
                ClientNotice::File(Report::Asking {
                    id,
                    name,
                    size,
                    peer,
                    answer_within: within,
                }) => {
                    assert_eq!(
                        (&*name, size, &*peer),
                        ("asked.bin", data.len() as u64, "alice")
                    );
                    assert_eq!(within, answer_within);
                    Some(id)
                }
                _ => None,
            })
        };
        let rejected = |outcome: Outcome, why: &str| match outcome {
            Outcome::Rejected { code, reason } => {
                assert_eq!(code, Code::FILE_REJECTED, "{label}");
                assert!(reason.contains(why), "{label}: {reason}");
            }
            other => panic!("{label}: {other:?}"),
        };

        // Declined by the user.
        let id = offer();
        bob.send(ClientCommand::RejectOffer { id });
        rejected(transfer_outcome(&alice), "declined");
        // Left unanswered: declined by itself, nothing written.
        let started = Instant::now();
        offer();
        rejected(transfer_outcome(&alice), "no answer");
        assert!(started.elapsed() >= answer_within, "{label}");
        assert!(common::stored_in(bobs.path()).is_empty(), "{label}");
        assert!(common::partials_in(bobs.path()).is_empty(), "{label}");
        // Accepted: the file arrives whole.
        let id = offer();
        bob.send(ClientCommand::AcceptOffer { id });
        assert_eq!(transfer_outcome(&alice), Outcome::Verified, "{label}");
        let saved = wait_for(&bob, "the saved file", |n| match n {
            ClientNotice::File(Report::Saved { path, .. }) => Some(path),
            _ => None,
        });
        assert!(std::fs::read(&saved).unwrap() == data, "{label}");
        // An answer to an offer no longer waiting is an error, not a crash.
        bob.send(ClientCommand::AcceptOffer { id });
        let error = wait_for(&bob, "an error", |n| match n {
            ClientNotice::Error(e) => Some(e),
            _ => None,
        });
        assert!(error.contains("no offer"), "{label}: {error}");
        stop(server);
    }
}
