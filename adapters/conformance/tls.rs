// TLS tests every ferry runtime must pass, over real sockets on 127.0.0.1:
// TLS and plain clients on one port, an upload and a relay, a raw-text
// guest inside TLS, broken and stalled handshakes, a wrong pin, a new and a
// changed server, TLS required, and what a watcher of the wire sees.
//
// Not a crate: each adapter's `tests/tls.rs` includes it after naming its
// crate `runtime` and importing `spawn_client_tls`, `spawn_server_tls` and
// `ClientTls` from it, and setting `CALL_WAITS_FOR_WELCOME` (whether its
// `spawn_client` returns only once the server welcomed the client).

use ferry_core::transfer::Outcome;
use ferry_core::{ClientConfig, Event, HubConfig};
use ferry_files::{
    ClientCommand, ClientHandle, ClientNotice, Inbox, Report, ServerHandle, ServerNotice,
};
use ferry_tls::{Identity, TlsClient, TlsServer, Transport, Verify};
use std::fmt::Debug;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// The longest any single expectation may take; a passing test never
/// waits this long.
const WAIT: Duration = Duration::from_secs(20);

/// A server speaking TLS and plain, with its identity's directory.
struct Tls {
    _dir: tempfile::TempDir,
    identity: Identity,
    server: ServerHandle,
}

fn tls_server(config: HubConfig, inbox: Option<&Path>) -> Tls {
    tls_server_requiring(config, inbox, false)
}

fn tls_server_requiring(config: HubConfig, inbox: Option<&Path>, required: bool) -> Tls {
    let dir = tempfile::tempdir().unwrap();
    let identity = Identity::load_or_create(&dir.path().join("tls"), SystemTime::now()).unwrap();
    let tls = Arc::new(TlsServer::new(&identity).unwrap().require_tls(required));
    let inbox = inbox.map(|dir| Inbox::open(dir).unwrap());
    let server =
        spawn_server_tls("127.0.0.1:0".parse().unwrap(), config, inbox, Some(tls)).unwrap();
    Tls {
        _dir: dir,
        identity,
        server,
    }
}

fn pinned(identity: &Identity) -> Option<ClientTls> {
    Some(ClientTls::new(
        TlsClient::new(),
        "127.0.0.1",
        Verify::pinned(identity.fingerprint()),
    ))
}

/// A client named `name` at `addr`, already welcomed.
fn client(addr: SocketAddr, name: &str, tls: Option<ClientTls>) -> ClientHandle {
    let handle = spawn_client_tls(
        addr,
        ClientConfig::new(name),
        None,
        Duration::from_secs(5),
        tls,
    )
    .unwrap();
    wait_for(handle.notices(), &format!("{name} welcomed"), |n| match n {
        ClientNotice::Event(Event::Welcomed { .. }) => Some(()),
        _ => None,
    });
    handle
}

/// Receives until `f` picks a notice, for at most [`WAIT`].
fn wait_for<N: Debug, T>(rx: &Receiver<N>, what: &str, mut f: impl FnMut(&N) -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    let mut recent = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(notice) => {
                if let Some(found) = f(&notice) {
                    return found;
                }
                if recent.len() == 10 {
                    recent.remove(0);
                }
                recent.push(notice);
            }
            Err(e) => panic!("waiting for {what}: {e}; last seen: {recent:#?}"),
        }
    }
}

fn hears(client: &ClientHandle, from: &str, text: &str) {
    wait_for(client.notices(), &format!("{from}: {text}"), |n| match n {
        ClientNotice::Event(Event::Message {
            from: f, text: t, ..
        }) if f == from && t == text => Some(()),
        _ => None,
    });
}

fn say(client: &ClientHandle, text: &str) {
    client.send(ClientCommand::Say(text.into()));
}

/// The reason of the next disconnection the server reports.
fn disconnected(server: &ServerHandle) -> String {
    wait_for(server.notices(), "a disconnection", |n| match n {
        ServerNotice::Disconnected { reason, .. } => Some(reason.clone()),
        _ => None,
    })
}

fn finish(server: ServerHandle, clients: Vec<ClientHandle>) {
    server.shutdown("test over");
    server.join().unwrap();
    for client in clients {
        let _ = client.join();
    }
}

/// Why a client was turned away. A runtime whose `spawn_client` waits
/// for the welcome ([`CALL_WAITS_FOR_WELCOME`]) must fail the call; smol's
/// returns before the welcome (commands wait for it), so a refusal may
/// come as the connection's close rather than as an error of the call.
fn turned_away(spawned: io::Result<ClientHandle>) -> String {
    let handle = match spawned {
        Err(e) => return e.to_string(),
        Ok(_) if CALL_WAITS_FOR_WELCOME => panic!("let in"),
        Ok(handle) => handle,
    };
    let why = wait_for(handle.notices(), "the refusal", |n| match n {
        ClientNotice::Event(Event::Welcomed { .. }) => panic!("let in"),
        ClientNotice::Event(Event::Closed { code, reason, .. }) => {
            Some(format!("{code:?}: {reason}"))
        }
        _ => None,
    });
    let _ = handle.join();
    why
}

fn contents(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| ((i / 7) as u8).wrapping_mul(31) ^ (i as u8).wrapping_add(seed))
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A ClientHello, as a real TLS client sends it first.
fn client_hello() -> Vec<u8> {
    let mut t = Transport::client(&TlsClient::new(), "127.0.0.1", 1, &Verify::default()).unwrap();
    let mut hello = Vec::new();
    t.take_outgoing(&mut hello);
    assert_eq!(hello[0], 0x16);
    hello
}

/// Reads until the server closes the connection; how long that took.
fn time_to_close(stream: &mut TcpStream) -> Duration {
    let start = Instant::now();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return start.elapsed(),
            Err(e) => panic!("the server kept the connection open: {e}"),
        }
    }
}

/// A blocking TLS text client: what `openssl s_client -quiet` does.
struct TextOverTls {
    socket: TcpStream,
    transport: Transport,
    unfed: Vec<u8>,
    received: Vec<u8>,
}

impl TextOverTls {
    fn connect(addr: SocketAddr, identity: &Identity) -> TextOverTls {
        let socket = TcpStream::connect(addr).unwrap();
        socket.set_read_timeout(Some(WAIT)).unwrap();
        let verify = Verify::pinned(identity.fingerprint());
        let transport = Transport::client(&TlsClient::new(), "127.0.0.1", 1, &verify).unwrap();
        TextOverTls {
            socket,
            transport,
            unfed: Vec::new(),
            received: Vec::new(),
        }
    }

    fn flush(&mut self) {
        while self.transport.wants_write() {
            self.transport.write_to(&mut self.socket).unwrap();
        }
    }

    /// Reads the socket once and feeds the transport.
    fn pump(&mut self) {
        if self.unfed.is_empty() {
            let mut buf = [0; 4096];
            let n = self.socket.read(&mut buf).unwrap();
            assert!(n > 0, "the server closed the connection");
            self.unfed.extend_from_slice(&buf[..n]);
        }
        let n = self.transport.feed(&self.unfed).unwrap();
        self.unfed.drain(..n);
        let mut buf = [0; 4096];
        loop {
            let n = self.transport.read_plaintext(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            self.received.extend_from_slice(&buf[..n]);
        }
        self.flush();
    }

    fn write(&mut self, mut text: &[u8]) {
        while !text.is_empty() {
            let n = self.transport.write_plaintext(text).unwrap();
            text = &text[n..];
            self.flush();
            if n == 0 && !self.transport.wants_write() {
                self.pump();
            }
        }
    }

    /// The next received line containing `part`, skipping others.
    fn expect(&mut self, part: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            while let Some(end) = self.received.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.received.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line).trim_end().to_string();
                if line.contains(part) {
                    return line;
                }
            }
            assert!(Instant::now() < deadline, "no line with {part:?}");
            self.pump();
        }
    }
}

/// A relay between a client and `to` that keeps every byte it carries,
/// each direction apart: what someone watching the wire sees.
struct Proxy {
    addr: SocketAddr,
    to_server: Arc<Mutex<Vec<u8>>>,
    to_client: Arc<Mutex<Vec<u8>>>,
}

impl Proxy {
    fn start(to: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let to_server = Arc::new(Mutex::new(Vec::new()));
        let to_client = Arc::new(Mutex::new(Vec::new()));
        let (up, down) = (to_server.clone(), to_client.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(to) else {
                    return;
                };
                let (c, s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let up = up.clone();
                thread::spawn(move || relay(client, server, &up));
                let down = down.clone();
                thread::spawn(move || relay(s, c, &down));
            }
        });
        Proxy {
            addr,
            to_server,
            to_client,
        }
    }

    fn seen(&self) -> (Vec<u8>, Vec<u8>) {
        (
            self.to_server.lock().unwrap().clone(),
            self.to_client.lock().unwrap().clone(),
        )
    }
}

fn relay(mut from: TcpStream, mut to: TcpStream, log: &Mutex<Vec<u8>>) {
    let mut buf = [0; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                log.lock().unwrap().extend_from_slice(&buf[..n]);
                if to.write_all(&buf[..n]).is_err() {
                    let _ = from.shutdown(Shutdown::Both);
                    return;
                }
            }
        }
    }
}

#[test]
fn a_tls_client_and_a_plain_client_chat_through_one_server() {
    let tls = tls_server(HubConfig::default(), None);
    let addr = tls.server.local_addr();
    let alice = client(addr, "alice", pinned(&tls.identity));
    let bob = client(addr, "bob", None);
    say(&alice, "hello from TLS");
    hears(&bob, "alice", "hello from TLS");
    say(&bob, "hello in clear");
    hears(&alice, "bob", "hello in clear");
    finish(tls.server, vec![alice, bob]);
}

#[test]
fn a_tls_upload_of_a_few_mib_is_stored_and_verified() {
    let src = tempfile::tempdir().unwrap();
    let inbox = tempfile::tempdir().unwrap();
    let data = contents(6 << 20, 3);
    let path = src.path().join("big.bin");
    fs::write(&path, &data).unwrap();
    let tls = tls_server(HubConfig::default(), Some(inbox.path()));
    let alice = client(tls.server.local_addr(), "alice", pinned(&tls.identity));
    alice.send(ClientCommand::SendFile {
        path,
        to: String::new(),
    });
    let outcome = wait_for(alice.notices(), "the upload's end", |n| match n {
        ClientNotice::File(Report::Finished { outcome, .. }) => Some(outcome.clone()),
        ClientNotice::Error(e) => panic!("{e}"),
        _ => None,
    });
    assert_eq!(outcome, Outcome::Verified);
    let saved = wait_for(tls.server.notices(), "the stored file", |n| match n {
        ServerNotice::File {
            report: Report::Saved { path, .. },
            ..
        } => Some(path.clone()),
        _ => None,
    });
    assert!(fs::read(&saved).unwrap() == data, "contents differ");
    finish(tls.server, vec![alice]);
}

#[test]
fn a_raw_text_guest_chats_inside_tls() {
    let tls = tls_server(HubConfig::default(), None);
    let addr = tls.server.local_addr();
    let alice = client(addr, "alice", None);
    let mut carol = TextOverTls::connect(addr, &tls.identity);
    carol.write(b"/name carol\r\n");
    carol.expect("* welcome to ferry, carol");
    let guest = wait_for(tls.server.notices(), "carol joining", |n| match n {
        ServerNotice::Joined { name, guest, .. } if name == "carol" => Some(*guest),
        _ => None,
    });
    assert!(guest, "carol joined as a raw-text guest");
    carol.write(b"hi over TLS\r\n");
    hears(&alice, "carol", "hi over TLS");
    say(&alice, "hello carol");
    assert_eq!(carol.expect("alice:"), "alice: hello carol");
    finish(tls.server, vec![alice]);
}

#[test]
fn broken_handshakes_are_dropped_while_others_chat_on() {
    let tls = tls_server(HubConfig::default(), None);
    let addr = tls.server.local_addr();
    let alice = client(addr, "alice", pinned(&tls.identity));
    let bob = client(addr, "bob", None);
    let hello = client_hello();

    // Garbage after a ClientHello.
    let mut garbage = TcpStream::connect(addr).unwrap();
    let port = garbage.local_addr().unwrap().port();
    let mut bytes = hello.clone();
    bytes.extend_from_slice(&[0xab; 300]);
    garbage.write_all(&bytes).unwrap();
    time_to_close(&mut garbage);
    let reason = disconnected(&tls.server);
    assert!(
        reason.contains(&format!("127.0.0.1:{port}")) && reason.contains("TLS"),
        "{reason}"
    );
    say(&alice, "still here");
    hears(&bob, "alice", "still here");

    // A ClientHello cut short, then the end.
    let mut cut = TcpStream::connect(addr).unwrap();
    let port = cut.local_addr().unwrap().port();
    cut.write_all(&hello[..hello.len() / 2]).unwrap();
    cut.shutdown(Shutdown::Write).unwrap();
    time_to_close(&mut cut);
    let reason = disconnected(&tls.server);
    assert!(
        reason.contains(&format!("127.0.0.1:{port}"))
            && reason.contains("closed during the TLS handshake"),
        "{reason}"
    );
    say(&bob, "and me");
    hears(&alice, "bob", "and me");
    finish(tls.server, vec![alice, bob]);
}

#[test]
fn a_tls_handshake_that_never_finishes_is_dropped_at_the_handshake_timeout() {
    let mut config = HubConfig::default();
    config.connection.handshake_timeout = Duration::from_millis(600);
    let tls = tls_server(config, None);
    let addr = tls.server.local_addr();
    let alice = client(addr, "alice", pinned(&tls.identity));
    let bob = client(addr, "bob", None);
    // One sends a ClientHello and never answers the server's flight; one
    // sends only the first byte of a record.
    let mut stalled = TcpStream::connect(addr).unwrap();
    stalled.write_all(&client_hello()).unwrap();
    let mut one_byte = TcpStream::connect(addr).unwrap();
    one_byte.write_all(&[0x16]).unwrap();
    let started = Instant::now();
    for stream in [&mut stalled, &mut one_byte] {
        time_to_close(stream);
    }
    // Not at once (the handshake was only slow, not wrong), and not much
    // later than the deadline.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );
    disconnected(&tls.server);
    disconnected(&tls.server);
    say(&alice, "after the timeouts");
    hears(&bob, "alice", "after the timeouts");
    finish(tls.server, vec![alice, bob]);
}

#[test]
fn a_wrong_pin_is_refused_before_any_ferry_byte_is_sent() {
    let tls = tls_server(HubConfig::default(), None);
    let proxy = Proxy::start(tls.server.local_addr());
    let other_dir = tempfile::tempdir().unwrap();
    let other = Identity::load_or_create(other_dir.path(), SystemTime::now()).unwrap();
    let mut config = ClientConfig::new("mallory-victim");
    config.token = b"the-secret-token".to_vec();
    let error = spawn_client_tls(
        proxy.addr,
        config,
        None,
        Duration::from_secs(5),
        pinned(&other),
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(&tls.identity.fingerprint().to_string())
            && message.contains(&other.fingerprint().to_string()),
        "{message}"
    );
    assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);
    // The server saw a connection end without anyone joining.
    let reason = wait_for(tls.server.notices(), "the refused one's end", |n| match n {
        ServerNotice::Joined { .. } => panic!("the refused client joined"),
        ServerNotice::Disconnected { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    // The log says who and why: the client's alert, as rustls words it.
    assert!(
        reason.contains("TLS with 127.0.0.1:") && reason.contains("alert"),
        "{reason}"
    );
    // On the wire: after its ClientHello, the client sent no record that
    // could hold a HELLO (an encrypted alert is 19 bytes).
    let (up, _) = proxy.seen();
    assert!(!contains(&up, b"mallory-victim") && !contains(&up, b"the-secret-token"));
    let mut rest = &up[..];
    let mut records = Vec::new();
    while rest.len() >= 5 {
        let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        records.push((rest[0], len));
        rest = &rest[(5 + len).min(rest.len())..];
    }
    assert_eq!(records.first().map(|r| r.0), Some(0x16), "{records:?}");
    assert!(
        records[1..].iter().all(|&(_, len)| len <= 32),
        "a record long enough for a HELLO: {records:?}"
    );
    finish(tls.server, vec![]);
}

#[test]
fn no_chat_line_or_file_byte_crosses_the_wire_in_clear() {
    let src = tempfile::tempdir().unwrap();
    let inbox = tempfile::tempdir().unwrap();
    let data = contents(2 << 20, 9);
    let path = src.path().join("secret.bin");
    fs::write(&path, &data).unwrap();
    let tls = tls_server(HubConfig::default(), Some(inbox.path()));
    let proxy = Proxy::start(tls.server.local_addr());
    let bob = client(tls.server.local_addr(), "bob", None);
    let alice = client(proxy.addr, "alice", pinned(&tls.identity));
    let line = "the eagle lands at midnight";
    say(&alice, line);
    hears(&bob, "alice", line);
    say(&bob, "a reply only alice hears on the wire");
    hears(&alice, "bob", "a reply only alice hears on the wire");
    alice.send(ClientCommand::SendFile {
        path,
        to: String::new(),
    });
    let outcome = wait_for(alice.notices(), "the upload's end", |n| match n {
        ClientNotice::File(Report::Finished { outcome, .. }) => Some(outcome.clone()),
        ClientNotice::Error(e) => panic!("{e}"),
        _ => None,
    });
    assert_eq!(outcome, Outcome::Verified);
    let (up, down) = proxy.seen();
    assert!(up.len() > data.len(), "the proxy carried the upload");
    for wire in [&up, &down] {
        assert!(!contains(wire, line.as_bytes()), "the chat line in clear");
        assert!(
            !contains(wire, b"a reply only alice hears"),
            "the reply in clear"
        );
        assert!(!contains(wire, b"alice"), "the name in clear");
        for at in [0, 1 << 20, data.len() - 64] {
            assert!(!contains(wire, &data[at..at + 64]), "file bytes in clear");
        }
    }
    // The same through the proxy in clear does show: the capture works.
    let plain = Proxy::start(tls.server.local_addr());
    let carl = client(plain.addr, "carl", None);
    say(&carl, line);
    hears(&bob, "carl", line);
    assert!(contains(&plain.seen().0, line.as_bytes()));
    finish(tls.server, vec![alice, bob, carl]);
}

#[test]
fn a_new_server_is_refused_then_trusted_remembered_and_a_changed_one_refused() {
    let tls = tls_server(HubConfig::default(), None);
    let addr = tls.server.local_addr();
    let state = tempfile::tempdir().unwrap();
    let path = state.path().join("known_servers");
    let with_known = |verify: Verify| {
        let known = ferry_tls::KnownServers::load(&path).unwrap();
        Some(ClientTls::new(
            TlsClient::new().with_known_servers(known),
            "127.0.0.1",
            verify,
        ))
    };
    let connect = |name: &str, tls: Option<ClientTls>| {
        spawn_client_tls(
            addr,
            ClientConfig::new(name),
            None,
            Duration::from_secs(5),
            tls,
        )
    };
    let fingerprint = tls.identity.fingerprint().to_string();

    let error = connect("first", with_known(Verify::default())).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);
    let message = error.to_string();
    assert!(
        message.contains(&format!("--fingerprint {fingerprint}")),
        "{message}"
    );

    let trusted = connect(
        "trusting",
        with_known(Verify::default().trusting_new_server()),
    )
    .unwrap();
    let recorded = fs::read_to_string(&path).unwrap();
    assert_eq!(
        recorded,
        format!("127.0.0.1:{} {fingerprint}\n", addr.port())
    );
    let known = connect("known", with_known(Verify::default())).unwrap();

    // The server's key as someone else's: the record no longer matches.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Identity::load_or_create(other_dir.path(), SystemTime::now()).unwrap();
    let changed = state.path().join("changed");
    let mut list = ferry_tls::KnownServers::load(&changed).unwrap();
    list.add("127.0.0.1", addr.port(), other.fingerprint())
        .unwrap();
    let tls_changed = ClientTls::new(
        TlsClient::new().with_known_servers(list),
        "127.0.0.1",
        Verify::default().trusting_new_server(),
    );
    let message = connect("changed", Some(tls_changed))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("changed its certificate")
            && message.contains(&fingerprint)
            && message.contains(&other.fingerprint().to_string()),
        "{message}"
    );
    finish(tls.server, vec![trusted, known]);
}

#[test]
fn a_tls_client_refuses_a_server_without_tls() {
    let server =
        runtime::spawn_server("127.0.0.1:0".parse().unwrap(), HubConfig::default(), None)
            .unwrap();
    let tls = ClientTls::new(TlsClient::new(), "127.0.0.1", Verify::default());
    let error = spawn_client_tls(
        server.local_addr(),
        ClientConfig::new("alice"),
        None,
        Duration::from_secs(3),
        Some(tls),
    )
    .unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    assert!(
        error.to_string().starts_with("server speaks no TLS"),
        "{error}"
    );
    finish(server, vec![]);
}

#[test]
fn a_plain_client_turned_away_at_connect_still_hears_why() {
    let mut config = HubConfig::default();
    config.max_per_ip = 1;
    let tls = tls_server(config, None);
    let alice = client(tls.server.local_addr(), "alice", None);
    let error = turned_away(spawn_client_tls(
        tls.server.local_addr(),
        ClientConfig::new("bob"),
        None,
        Duration::from_secs(5),
        None,
    ));
    assert!(
        error.to_string().contains("too many connections"),
        "{error}"
    );
    finish(tls.server, vec![alice]);
}

#[test]
fn a_file_goes_from_tls_user_to_tls_user() {
    let src = tempfile::tempdir().unwrap();
    let bobs = tempfile::tempdir().unwrap();
    let data = contents(5 << 20, 5);
    let path = src.path().join("holiday.jpg");
    fs::write(&path, &data).unwrap();
    let tls = tls_server(HubConfig::default(), None);
    let addr = tls.server.local_addr();
    let alice = client(addr, "alice", pinned(&tls.identity));
    let bob = spawn_client_tls(
        addr,
        ClientConfig::new("bob"),
        Some(Inbox::open(bobs.path()).unwrap()),
        Duration::from_secs(5),
        pinned(&tls.identity),
    )
    .unwrap();
    // smol's spawn_client returns before the welcome: bob must be in the
    // room before alice names him (the others' handles hold the welcome
    // as their first notice).
    wait_for(bob.notices(), "bob welcomed", |n| match n {
        ClientNotice::Event(Event::Welcomed { .. }) => Some(()),
        _ => None,
    });
    alice.send(ClientCommand::SendFile {
        path,
        to: "bob".into(),
    });
    let saved = wait_for(bob.notices(), "bob's copy", |n| match n {
        ClientNotice::File(Report::Saved { path, .. }) => Some(path.clone()),
        ClientNotice::File(Report::Offered { accepted: None, .. }) => panic!("declined"),
        _ => None,
    });
    assert!(fs::read(&saved).unwrap() == data, "contents differ");
    // Chat still flows both ways afterwards.
    say(&bob, "got it");
    hears(&alice, "bob", "got it");
    finish(tls.server, vec![alice, bob]);
}

#[test]
fn a_tls_guest_that_stops_reading_holds_nobody_up() {
    let mut config = HubConfig::default();
    config.flood_burst = 1_000_000;
    config.flood_per_second = 1_000_000;
    config.source_flood_burst = 1_000_000;
    config.source_flood_per_second = 1_000_000;
    config.connection.max_outgoing = 256 * 1024;
    let tls = tls_server(config, None);
    let addr = tls.server.local_addr();
    let alice = client(addr, "alice", pinned(&tls.identity));
    let bob = client(addr, "bob", pinned(&tls.identity));
    // Joins inside TLS, then never reads again.
    let mut slow = TextOverTls::connect(addr, &tls.identity);
    slow.write(b"/name slow\r\n");
    slow.expect("* welcome to ferry, slow");
    let text = "x".repeat(4000);
    let mut dropped = false;
    for round in 0..125 {
        for i in 0..20 {
            say(&alice, &format!("{round}.{i} {text}"));
        }
        hears(&bob, "alice", &format!("{round}.19 {text}"));
        while let Ok(notice) = tls.server.notices().try_recv() {
            dropped |= is_slow_reader(&notice);
        }
    }
    if !dropped {
        wait_for(tls.server.notices(), "the slow reader dropped", |n| {
            is_slow_reader(n).then_some(())
        });
    }
    drop(slow);
    finish(tls.server, vec![alice, bob]);
}

fn is_slow_reader(notice: &ServerNotice) -> bool {
    matches!(
        notice,
        ServerNotice::Disconnected {
            code: ferry_core::Code::SLOW_READER,
            ..
        }
    )
}

/// With TLS required, a plain ferry client is told `TLS_REQUIRED` (its
/// HELLO never handled) and a raw-text guest one line of text, while TLS
/// clients chat on.
#[test]
fn with_tls_required_clear_text_clients_are_turned_away_with_a_reason() {
    let tls = tls_server_requiring(HubConfig::default(), None, true);
    let addr = tls.server.local_addr();
    let alice = client(addr, "alice", pinned(&tls.identity));

    let error = turned_away(spawn_client_tls(
        addr,
        ClientConfig::new("bob"),
        None,
        Duration::from_secs(5),
        None,
    ));
    assert!(error.contains("TLS"), "{error}");

    let mut guest = TcpStream::connect(addr).unwrap();
    guest.set_read_timeout(Some(WAIT)).unwrap();
    guest.write_all(b"/name mallory\nhello\n").unwrap();
    let mut said = Vec::new();
    let _ = guest.read_to_end(&mut said);
    let said = String::from_utf8_lossy(&said);
    assert!(said.contains("only encrypted (TLS)"), "{said:?}");
    assert!(!said.contains("welcome"), "{said:?}");

    say(&alice, "still here");
    hears(&alice, "alice", "still here");
    assert!(
        !tls.server
            .notices()
            .try_iter()
            .any(|n| matches!(n, ServerNotice::Joined { name, .. } if name != "alice")),
        "someone joined in clear text"
    );
    finish(tls.server, vec![alice]);
}
