//! ferry-smol on real sockets: servers and clients on 127.0.0.1, port 0.
//! Every wait is bounded; a test that hangs fails instead.

use async_net::{TcpListener, TcpStream};
use bytes::BytesMut;
use ferry_core::frame::{decode, Frame, PREAMBLE};
use ferry_core::transfer::Outcome;
use ferry_core::{ClientConfig, Code, Event, HubConfig, Text};
use ferry_files::{
    ClientCommand, ClientHandle, ClientNotice, Inbox, Report, ServerHandle, ServerNotice,
    PARTIALS_DIR,
};
use futures_lite::future;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};
use std::{fs, io};

/// The longest any single expectation may take.
const WAIT: Duration = Duration::from_secs(20);

fn server(inbox: Option<&Path>) -> ServerHandle {
    let inbox = inbox.map(|dir| Inbox::open(dir).expect("inbox"));
    ferry_smol::spawn_server("127.0.0.1:0".parse().unwrap(), HubConfig::default(), inbox)
        .expect("server starts")
}

/// A client named `name`, once the server has let it in.
fn client(server: &ServerHandle, name: &str, accept_files: Option<&Path>) -> ClientHandle {
    let inbox = accept_files.map(|dir| Inbox::open(dir).expect("inbox"));
    let handle = ferry_smol::spawn_client(
        server.local_addr(),
        ClientConfig::new(name),
        inbox,
        Duration::from_secs(5),
    )
    .expect("client connects");
    wait_for(handle.notices(), &format!("{name} welcomed"), |n| {
        matches!(n, ClientNotice::Event(Event::Welcomed { .. })).then_some(())
    });
    handle
}

/// Receives from `rx` until `f` picks something, for at most [`WAIT`].
fn wait_for<N: Debug, T>(rx: &Receiver<N>, what: &str, mut f: impl FnMut(&N) -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(n) => {
                if let Some(found) = f(&n) {
                    return found;
                }
                seen.push(n);
            }
            Err(e) => panic!("waiting for {what}: {e}; saw {seen:#?}"),
        }
    }
}

fn message(n: &ClientNotice) -> Option<(Text, Text, u64)> {
    match n {
        ClientNotice::Event(Event::Message { seq, from, text }) => {
            Some((from.clone(), text.clone(), *seq))
        }
        _ => None,
    }
}

fn say(c: &ClientHandle, text: &str) {
    c.send(ClientCommand::Say(text.into()));
}

fn bye(c: ClientHandle) {
    c.send(ClientCommand::Bye);
    c.join().expect("client ends cleanly");
}

fn stop(s: ServerHandle) {
    s.shutdown("test over");
    s.join().expect("server ends cleanly");
}

fn contents(size: usize, seed: u8) -> Vec<u8> {
    // Not periodic in any small power of two, so a misplaced chunk shows.
    (0..size)
        .map(|i| ((i / 7) as u8).wrapping_mul(31) ^ (i as u8).wrapping_add(seed))
        .collect()
}

fn no_partials(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir.join(PARTIALS_DIR)) else {
        return;
    };
    let left: Vec<_> = entries.map(|entry| entry.unwrap().file_name()).collect();
    assert!(left.is_empty(), "{left:?} left behind");
}

#[test]
fn a_room_of_three_sees_the_same_sequence() {
    let s = server(None);
    let clients = [
        client(&s, "alice", None),
        client(&s, "bob", None),
        client(&s, "carol", None),
    ];
    for (c, text) in clients.iter().zip(["one", "two", "three"]) {
        say(c, text);
    }
    let heard: Vec<BTreeMap<String, (String, u64)>> = clients
        .iter()
        .map(|c| {
            let mut heard = BTreeMap::new();
            while heard.len() < 3 {
                let (from, text, seq) = wait_for(c.notices(), "three messages", message);
                heard.insert(text.to_string(), (from.to_string(), seq));
            }
            heard
        })
        .collect();
    assert_eq!(heard[0], heard[1]);
    assert_eq!(heard[1], heard[2]);
    assert_eq!(heard[0]["one"].0, "alice");
    assert_eq!(heard[0]["two"].0, "bob");
    assert_eq!(heard[0]["three"].0, "carol");
    let mut seqs: Vec<u64> = heard[0].values().map(|(_, seq)| *seq).collect();
    seqs.dedup();
    assert_eq!(
        seqs.len(),
        3,
        "every message has a sequence number of its own"
    );
    for c in clients {
        bye(c);
    }
    stop(s);
}

#[test]
fn a_direct_message_reaches_only_its_recipient() {
    let s = server(None);
    let alice = client(&s, "alice", None);
    let bob = client(&s, "bob", None);
    let carol = client(&s, "carol", None);
    alice.send(ClientCommand::Direct {
        to: "BOB".into(),
        text: "psst".into(),
    });
    // Said after the direct message, so it reaches carol after it would have.
    say(&alice, "done");
    let direct = wait_for(bob.notices(), "the direct message", |n| match n {
        ClientNotice::Event(Event::Direct { from, text }) => Some((from.clone(), text.clone())),
        _ => None,
    });
    assert_eq!(direct, ("alice".into(), "psst".into()));
    wait_for(carol.notices(), "alice's message", |n| {
        assert!(
            !matches!(n, ClientNotice::Event(Event::Direct { .. })),
            "carol got {n:?}"
        );
        message(n).filter(|(_, text, _)| text == "done")
    });
    alice.send(ClientCommand::Direct {
        to: "nobody".into(),
        text: "hello?".into(),
    });
    let code = wait_for(alice.notices(), "a bounce", |n| match n {
        ClientNotice::Event(Event::Bounced { code, .. }) => Some(*code),
        _ => None,
    });
    assert_eq!(code, Code::NO_SUCH_USER);
    for c in [alice, bob, carol] {
        bye(c);
    }
    stop(s);
}

#[test]
fn joins_and_leaves_are_announced() {
    let s = server(None);
    let alice = client(&s, "alice", None);
    let bob = client(&s, "bob", None);
    // Alice first hears of herself joining, then of bob.
    let joined = wait_for(alice.notices(), "bob joining", |n| match n {
        ClientNotice::Event(Event::Joined { name, seq }) if name != "alice" => {
            Some((name.clone(), *seq))
        }
        _ => None,
    });
    assert_eq!(joined, ("bob".into(), 2));
    alice.send(ClientCommand::Who);
    let names = wait_for(alice.notices(), "the member list", |n| match n {
        ClientNotice::Event(Event::Members { names }) if names.len() == 2 => Some(names.clone()),
        _ => None,
    });
    assert_eq!(names, vec![Text::from("alice"), Text::from("bob")]);
    bye(bob);
    let left = wait_for(alice.notices(), "bob leaving", |n| match n {
        ClientNotice::Event(Event::Left { name, code, .. }) => Some((name.clone(), *code)),
        _ => None,
    });
    assert_eq!(left, ("bob".into(), Code::QUIT));
    // The operator saw it too, in order.
    wait_for(s.notices(), "the server's notice", |n| match n {
        ServerNotice::Left { name, code, .. } if name == "bob" => {
            assert_eq!(*code, Code::QUIT);
            Some(())
        }
        _ => None,
    });
    bye(alice);
    stop(s);
}

#[test]
fn a_taken_name_is_refused() {
    let s = server(None);
    let alice = client(&s, "alice", None);
    // The call itself fails: it returns only once let in.
    let refused = ferry_smol::spawn_client(
        s.local_addr(),
        ClientConfig::new("ALICE"),
        None,
        Duration::from_secs(5),
    )
    .map(|_| "a second alice got in")
    .unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::PermissionDenied, "{refused}");
    assert!(
        refused.to_string().contains(&Code::NAME_TAKEN.to_string()),
        "{refused}"
    );
    // The first alice is unaffected.
    say(&alice, "still here");
    wait_for(alice.notices(), "her own message", message);
    bye(alice);
    stop(s);
}

#[test]
fn a_16_mib_upload_lands_in_the_inbox_byte_for_byte() {
    let src = tempfile::tempdir().unwrap();
    let inbox = tempfile::tempdir().unwrap();
    let data = contents(16 << 20, 7);
    let path = src.path().join("big.bin");
    fs::write(&path, &data).unwrap();
    let s = server(Some(inbox.path()));
    let alice = client(&s, "alice", None);
    alice.send(ClientCommand::SendFile {
        path: path.clone(),
        to: String::new(),
    });
    let outcome = wait_for(alice.notices(), "the upload to end", |n| match n {
        ClientNotice::File(Report::Finished { outcome, .. }) => Some(outcome.clone()),
        ClientNotice::Error(e) => panic!("{e}"),
        _ => None,
    });
    assert_eq!(outcome, Outcome::Verified);
    let saved = wait_for(s.notices(), "the server storing it", |n| match n {
        ServerNotice::File {
            report: Report::Saved { path, .. },
            ..
        } => Some(path.clone()),
        _ => None,
    });
    assert_eq!(saved, inbox.path().join("big.bin"));
    assert!(fs::read(&saved).unwrap() == data, "the stored bytes differ");
    no_partials(inbox.path());
    bye(alice);
    stop(s);
}

#[test]
fn a_file_goes_from_user_to_user() {
    let src = tempfile::tempdir().unwrap();
    let bobs = tempfile::tempdir().unwrap();
    let data = contents(3_000_017, 9);
    let path = src.path().join("photo.jpg");
    fs::write(&path, &data).unwrap();
    let s = server(None);
    let alice = client(&s, "alice", None);
    let bob = client(&s, "bob", Some(bobs.path()));
    alice.send(ClientCommand::SendFile {
        path,
        to: "bob".into(),
    });
    let offered = wait_for(bob.notices(), "the offer", |n| match n {
        ClientNotice::File(Report::Offered { peer, accepted, .. }) => {
            Some((peer.clone(), *accepted))
        }
        _ => None,
    });
    assert_eq!(offered, ("alice".into(), Some(0)));
    let saved = wait_for(bob.notices(), "the file", |n| match n {
        ClientNotice::File(Report::Saved { path, .. }) => Some(path.clone()),
        ClientNotice::File(Report::Finished { outcome, .. }) => panic!("{outcome:?}"),
        _ => None,
    });
    assert_eq!(saved, bobs.path().join("photo.jpg"));
    assert!(fs::read(&saved).unwrap() == data, "the stored bytes differ");
    let outcome = wait_for(alice.notices(), "the sender's end", |n| match n {
        ClientNotice::File(Report::Finished { outcome, .. }) => Some(outcome.clone()),
        _ => None,
    });
    assert_eq!(outcome, Outcome::Verified);
    no_partials(bobs.path());
    // Without a folder to receive into, the same offer is declined.
    let carol = client(&s, "carol", None);
    alice.send(ClientCommand::SendFile {
        path: src.path().join("photo.jpg"),
        to: "carol".into(),
    });
    let outcome = wait_for(alice.notices(), "the refusal", |n| match n {
        ClientNotice::File(Report::Finished { outcome, .. }) => Some(outcome.clone()),
        _ => None,
    });
    assert!(matches!(outcome, Outcome::Rejected { .. }), "{outcome:?}");
    // A file that is not there is the sender's error, not the server's.
    alice.send(ClientCommand::SendFile {
        path: src.path().join("missing"),
        to: "bob".into(),
    });
    let error = wait_for(alice.notices(), "the error", |n| match n {
        ClientNotice::Error(e) => Some(e.clone()),
        _ => None,
    });
    assert!(error.contains("missing"), "{error}");
    for c in [alice, bob, carol] {
        bye(c);
    }
    stop(s);
}

#[test]
fn garbage_gets_an_error_and_a_close_while_the_room_chats_on() {
    let s = server(None);
    let alice = client(&s, "alice", None);
    let bob = client(&s, "bob", None);
    // An HTTP request is text, so not a ferry peer, and no person either:
    // it is told so in one plain-text line (a raw-text guest's language).
    let mut http = std::net::TcpStream::connect(s.local_addr()).unwrap();
    http.set_read_timeout(Some(WAIT)).unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: ferry\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    http.read_to_end(&mut answer).expect("the server closes");
    assert_eq!(
        answer,
        b"! closing: this is a ferry chat server, not a web server\r\n"
    );

    // Binary that starts like the preamble and then differs: a broken
    // ferry peer, answered in its own language.
    let mut raw = std::net::TcpStream::connect(s.local_addr()).unwrap();
    raw.set_read_timeout(Some(WAIT)).unwrap();
    raw.write_all(b"\x89FERRIES\r\n").unwrap();
    // The server answers, then closes: read to the end.
    let mut answer = Vec::new();
    raw.read_to_end(&mut answer).expect("the server closes");
    assert!(answer.starts_with(&PREAMBLE), "{answer:?}");
    let mut rest = BytesMut::from(&answer[PREAMBLE.len()..]);
    let frame = decode(&mut rest, 1 << 20).unwrap().expect("a whole frame");
    assert!(matches!(frame, Frame::Error { .. }), "{frame:?}");
    assert!(rest.is_empty(), "nothing after the ERROR: {rest:?}");

    say(&alice, "unbothered");
    let (from, text, _) = wait_for(bob.notices(), "alice's message", message);
    assert_eq!((from.as_str(), text.as_str()), ("alice", "unbothered"));
    bye(alice);
    bye(bob);
    // Closed, like a well-behaved peer, so the server need not wait for it.
    drop(raw);
    stop(s);
}

#[test]
fn a_client_that_stops_reading_is_dropped_and_the_room_goes_on() {
    // Generous flood limits, a small outgoing queue: what fills up is the
    // silent client's queue, and the hub's limit is what drops it.
    let mut config = HubConfig::default();
    config.flood_burst = 1_000_000;
    config.flood_per_second = 1_000_000;
    // Every client is on 127.0.0.1, one source with one shared budget.
    config.source_flood_burst = 1_000_000;
    config.source_flood_per_second = 1_000_000;
    config.connection.max_outgoing = 256 * 1024;
    let s = ferry_smol::spawn_server("127.0.0.1:0".parse().unwrap(), config, None).unwrap();
    let alice = client(&s, "alice", None);
    // A real handshake, from the core itself, then never a read.
    let mut sloth = std::net::TcpStream::connect(s.local_addr()).unwrap();
    let mut hello = ferry_core::Connection::client(ClientConfig::new("sloth"), Instant::now());
    while let Some(bytes) = hello.poll_transmit() {
        sloth.write_all(&bytes).unwrap();
    }
    wait_for(alice.notices(), "sloth joining", |n| match n {
        ClientNotice::Event(Event::Joined { name, .. }) if name == "sloth" => Some(()),
        _ => None,
    });
    let text = "x".repeat(4000);
    let deadline = Instant::now() + WAIT;
    // What alice hears of sloth leaving, which may come between her echoes.
    let mut heard_left = None;
    let mut listen = |n: &ClientNotice| match n {
        ClientNotice::Event(Event::Left { name, code, .. }) if name == "sloth" => {
            heard_left = Some(*code);
            None
        }
        n => message(n),
    };
    let code = 'flood: loop {
        assert!(Instant::now() < deadline, "sloth was never dropped");
        // Alice reads her echoes before saying more, so that she is never
        // the one who falls behind.
        for _ in 0..20 {
            say(&alice, &text);
        }
        for _ in 0..20 {
            wait_for(alice.notices(), "alice's echo", &mut listen);
        }
        while let Ok(n) = s.notices().try_recv() {
            if let ServerNotice::Left { name, code, .. } = n {
                assert_eq!(name, "sloth");
                break 'flood code;
            }
        }
    };
    assert_eq!(code, Code::SLOW_READER);
    // Alice heard of it too, and still chats.
    say(&alice, "still here");
    wait_for(alice.notices(), "alice's last message", |n| {
        listen(n).filter(|(_, text, _)| text == "still here")
    });
    assert_eq!(heard_left, Some(Code::SLOW_READER));
    drop(sloth);
    bye(alice);
    stop(s);
}

#[test]
fn shutdown_tells_every_client() {
    let s = server(None);
    let alice = client(&s, "alice", None);
    s.announce("closing soon");
    let (from, text, _) = wait_for(alice.notices(), "the announcement", message);
    assert_eq!((from.as_str(), text.as_str()), ("", "closing soon"));
    stop(s);
    let code = wait_for(alice.notices(), "the close", |n| match n {
        ClientNotice::Event(Event::Closed { code, .. }) => Some(*code),
        _ => None,
    });
    assert_eq!(code, Code::SHUTDOWN);
    alice.join().unwrap();
}

#[test]
fn a_server_that_never_answers_times_the_client_out() {
    // Accepts (the kernel does) but never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let started = Instant::now();
    let err = ferry_smol::spawn_client(
        silent.local_addr().unwrap(),
        ClientConfig::new("alice"),
        None,
        Duration::from_millis(300),
    )
    .map(|_| "let in")
    .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    assert!(started.elapsed() < WAIT);
}

/// Polls a std receiver from async code without blocking the executor's
/// thread, for at most [`WAIT`].
async fn next_async<N>(rx: &Receiver<N>) -> N {
    let deadline = Instant::now() + WAIT;
    loop {
        match rx.try_recv() {
            Ok(n) => return n,
            Err(TryRecvError::Empty) if Instant::now() < deadline => {
                async_io::Timer::after(Duration::from_millis(5)).await;
            }
            Err(e) => panic!("waiting for a notice: {e}"),
        }
    }
}

fn assert_send<T: Send>(value: T) -> T {
    value
}

#[test]
fn run_server_embeds_in_a_plain_block_on() {
    smol::block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // The operator's end is dropped at once: a closed command channel
        // must not stop the server.
        let (_, commands) = async_channel::unbounded();
        let (notices, server_notices) = std::sync::mpsc::channel();
        let server = assert_send(ferry_smol::run_server(
            listener,
            HubConfig::default(),
            None,
            commands,
            notices,
        ));

        let session = async {
            let stream = TcpStream::connect(addr).await.unwrap();
            let (commands, commands_rx) = async_channel::unbounded();
            let (notices, client_notices) = std::sync::mpsc::channel();
            let client = assert_send(ferry_smol::run_client(
                stream,
                ClientConfig::new("alice"),
                None,
                commands_rx,
                notices,
            ));
            let script = async {
                // Taken once the handshake is done.
                commands
                    .send(ClientCommand::Say("embedded".into()))
                    .await
                    .unwrap();
                loop {
                    if let Some((_, text, _)) = message(&next_async(&client_notices).await) {
                        assert_eq!(text, "embedded");
                        break;
                    }
                }
                commands.send(ClientCommand::Bye).await.unwrap();
                loop {
                    if let ClientNotice::Event(Event::Closed { code, .. }) =
                        next_async(&client_notices).await
                    {
                        assert_eq!(code, Code::QUIT);
                        break;
                    }
                }
            };
            let (result, ()) = future::zip(client, script).await;
            result.unwrap();
            // The server saw the client come and go.
            loop {
                if let ServerNotice::Disconnected { code, .. } = next_async(&server_notices).await {
                    assert_eq!(code, Code::QUIT);
                    break;
                }
            }
        };
        let guard = async {
            async_io::Timer::after(WAIT).await;
            panic!("the embedded session took too long");
        };
        // The session ends first; dropping the server future then closes
        // its listener and every socket.
        future::or(
            async {
                server.await.unwrap();
                panic!("the server stopped without a Shutdown");
            },
            future::or(session, guard),
        )
        .await;
    });
}
