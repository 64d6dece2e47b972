//! TLS, over real sockets on 127.0.0.1: TLS and plain clients on one port,
//! an upload and a relayed file, a raw-text guest inside TLS, broken and
//! stalled handshakes, a wrong pin, a new and a changed server, TLS
//! required, what a watcher of the wire sees, and guests that stop reading.

use crate::fixtures::{contents, differs, file_with};
use crate::tls_peers::{client_hello, contains, time_to_close, Proxy, TextOverTls};
use crate::wait::{
    disconnected, finish, hears, hears_joined, is_slow_reader, say, transfer_outcome, wait_for,
    WAIT,
};
use crate::Adapter;
use ferry_core::transfer::Outcome;
use ferry_core::{ClientConfig, HubConfig};
use ferry_files::{
    ClientCommand, ClientHandle, ClientNotice, Inbox, Report, ServerHandle, ServerNotice,
};
use ferry_tls::{ClientTls, Identity, KnownServers, TlsClient, TlsServer, Verify};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// A server speaking TLS and plain, with its identity and the folder
/// that holds it.
struct Tls {
    _dir: tempfile::TempDir,
    identity: Identity,
    server: ServerHandle,
}

impl Tls {
    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// A client of `adapter` named `name`, through TLS pinning this
    /// server's certificate.
    fn join_pinned(&self, adapter: &Adapter, name: &str) -> ClientHandle {
        adapter.join_tls(self.addr(), name, pinned(&self.identity))
    }
}

fn tls_server(adapter: &Adapter, config: HubConfig, inbox: Option<&Path>) -> Tls {
    tls_server_requiring(adapter, config, inbox, false)
}

fn tls_server_requiring(
    adapter: &Adapter,
    config: HubConfig,
    inbox: Option<&Path>,
    required: bool,
) -> Tls {
    let dir = tempfile::tempdir().expect("a scratch folder");
    let identity = Identity::load_or_create(&dir.path().join("tls"), SystemTime::now())
        .expect("a server identity");
    let tls = TlsServer::new(&identity)
        .expect("a TLS server configuration")
        .require_tls(required);
    let server = adapter.serve_tls(config, inbox, Arc::new(tls));
    Tls {
        _dir: dir,
        identity,
        server,
    }
}

fn pinned(identity: &Identity) -> ClientTls {
    ClientTls::new(
        TlsClient::new(),
        "127.0.0.1",
        Verify::pinned(identity.fingerprint()),
    )
}

/// Why a plain client of `client` was turned away at `addr`: the error of
/// its `spawn_client_tls`, which must fail since it returns only once
/// welcomed.
fn turned_away(client: &Adapter, addr: SocketAddr, name: &str) -> String {
    match client.connect(addr, ClientConfig::new(name), None, None) {
        Ok(_) => panic!(
            "spawn_client_tls returned Ok for {name}, whom the server turns away: it must \
             return only once welcomed, and fail with the server's reason"
        ),
        Err(e) => e.to_string(),
    }
}

/// A TLS client and a plain client on the one port chat with each other.
pub fn a_tls_client_and_a_plain_client_chat_through_one_server(server: &Adapter, client: &Adapter) {
    let tls = tls_server(server, HubConfig::default(), None);
    let alice = tls.join_pinned(client, "alice");
    let bob = client.join(tls.addr(), "bob", None);
    say(&alice, "hello from TLS");
    hears(&bob, "alice", "hello from TLS");
    say(&bob, "hello in clear");
    hears(&alice, "bob", "hello in clear");
    finish(tls.server, vec![alice, bob]);
}

/// A 6 MiB upload through TLS ends verified and is stored byte for byte.
pub fn a_tls_upload_of_a_few_mib_is_stored_and_verified(server: &Adapter, client: &Adapter) {
    let src = tempfile::tempdir().expect("a scratch folder");
    let inbox = tempfile::tempdir().expect("a scratch folder");
    let data = contents(6 << 20, 3);
    let path = file_with(src.path(), "big.bin", &data);
    let tls = tls_server(server, HubConfig::default(), Some(inbox.path()));
    let alice = tls.join_pinned(client, "alice");
    alice.send(ClientCommand::SendFile {
        path,
        to: String::new(),
    });
    let outcome = transfer_outcome(&alice, "the end of alice's TLS upload");
    assert_eq!(outcome, Outcome::Verified, "the TLS upload's outcome");
    let saved = wait_for(
        tls.server.notices(),
        "the server storing the upload",
        |n| match n {
            ServerNotice::File {
                report: Report::Saved { path, .. },
                ..
            } => Some(path.clone()),
            _ => None,
        },
    );
    if let Some(how) = differs(&saved, &data) {
        panic!("the stored TLS upload: {how}");
    }
    finish(tls.server, vec![alice]);
}

/// A file of 5 MiB relayed from one TLS user to another arrives whole, and
/// chat flows both ways afterwards.
pub fn a_file_goes_from_tls_user_to_tls_user(server: &Adapter, client: &Adapter) {
    let src = tempfile::tempdir().expect("a scratch folder");
    let bobs = tempfile::tempdir().expect("a scratch folder");
    let data = contents(5 << 20, 5);
    let path = file_with(src.path(), "holiday.jpg", &data);
    let tls = tls_server(server, HubConfig::default(), None);
    let alice = tls.join_pinned(client, "alice");
    let bob = client.join_with(
        tls.addr(),
        ClientConfig::new("bob"),
        Some(Inbox::open(bobs.path()).expect("bob's inbox")),
        Some(pinned(&tls.identity)),
    );
    hears_joined(&alice, "bob");
    alice.send(ClientCommand::SendFile {
        path,
        to: "bob".into(),
    });
    let saved = wait_for(bob.notices(), "bob storing the file", |n| match n {
        ClientNotice::File(Report::Saved { path, .. }) => Some(path.clone()),
        ClientNotice::File(Report::Offered { accepted: None, .. }) => {
            panic!("bob, who has a folder to receive into, declined the file")
        }
        _ => None,
    });
    if let Some(how) = differs(&saved, &data) {
        panic!("bob's copy of the file: {how}");
    }
    say(&bob, "got it");
    hears(&alice, "bob", "got it");
    finish(tls.server, vec![alice, bob]);
}

/// A raw-text guest (`openssl s_client`) joins inside TLS, is reported as
/// a guest, and chats with a plain ferry client.
pub fn a_raw_text_guest_chats_inside_tls(adapter: &Adapter) {
    let tls = tls_server(adapter, HubConfig::default(), None);
    let alice = adapter.join(tls.addr(), "alice", None);
    let mut carol = TextOverTls::connect(tls.addr(), &tls.identity);
    carol.write(b"/name carol\r\n");
    carol.expect("* welcome to ferry, carol");
    let guest = wait_for(
        tls.server.notices(),
        "the server reporting carol's join",
        |n| match n {
            ServerNotice::Joined { name, guest, .. } if name == "carol" => Some(*guest),
            _ => None,
        },
    );
    assert!(
        guest,
        "carol, a raw-text client, was not reported as a guest"
    );
    carol.write(b"hi over TLS\r\n");
    hears(&alice, "carol", "hi over TLS");
    say(&alice, "hello carol");
    assert_eq!(
        carol.expect("alice:"),
        "alice: hello carol",
        "the line carol got"
    );
    finish(tls.server, vec![alice]);
}

/// Garbage after a ClientHello, and a ClientHello cut short, are dropped,
/// each reported with the client's address and what went wrong, while the
/// others chat on.
pub fn broken_handshakes_are_dropped_while_others_chat_on(adapter: &Adapter) {
    let tls = tls_server(adapter, HubConfig::default(), None);
    let addr = tls.addr();
    let alice = tls.join_pinned(adapter, "alice");
    let bob = adapter.join(addr, "bob", None);
    let hello = client_hello();

    let mut garbage = TcpStream::connect(addr).expect("connecting to the server");
    let port = garbage.local_addr().expect("a local address").port();
    let mut bytes = hello.clone();
    bytes.extend_from_slice(&[0xab; 300]);
    garbage.write_all(&bytes).expect("sending garbage");
    time_to_close(&mut garbage);
    let reason = disconnected(&tls.server);
    assert!(
        reason.contains(&format!("127.0.0.1:{port}")) && reason.contains("TLS"),
        "the reason for dropping garbage after a ClientHello should name the client \
         (127.0.0.1:{port}) and TLS: {reason}"
    );
    say(&alice, "still here");
    hears(&bob, "alice", "still here");

    let mut cut = TcpStream::connect(addr).expect("connecting to the server");
    let port = cut.local_addr().expect("a local address").port();
    cut.write_all(&hello[..hello.len() / 2])
        .expect("sending half a ClientHello");
    cut.shutdown(Shutdown::Write).expect("hanging up");
    time_to_close(&mut cut);
    let reason = disconnected(&tls.server);
    assert!(
        reason.contains(&format!("127.0.0.1:{port}"))
            && reason.contains("closed during the TLS handshake"),
        "the reason for a ClientHello cut short should name the client (127.0.0.1:{port}) \
         and say \"closed during the TLS handshake\": {reason}"
    );
    say(&bob, "and me");
    hears(&alice, "bob", "and me");
    finish(tls.server, vec![alice, bob]);
}

/// A TLS handshake that never finishes (a ClientHello and then silence, or
/// one byte of a record) is closed at the hub's handshake timeout: not at
/// once, not much later.
pub fn a_tls_handshake_that_never_finishes_is_dropped_at_the_handshake_timeout(adapter: &Adapter) {
    let mut config = HubConfig::default();
    config.connection.handshake_timeout = Duration::from_millis(600);
    let tls = tls_server(adapter, config, None);
    let addr = tls.addr();
    let alice = tls.join_pinned(adapter, "alice");
    let bob = adapter.join(addr, "bob", None);
    let mut stalled = TcpStream::connect(addr).expect("connecting to the server");
    stalled
        .write_all(&client_hello())
        .expect("sending a ClientHello");
    let mut one_byte = TcpStream::connect(addr).expect("connecting to the server");
    one_byte.write_all(&[0x16]).expect("sending one byte");
    let started = Instant::now();
    for stream in [&mut stalled, &mut one_byte] {
        time_to_close(stream);
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "stalled TLS handshakes closed after {took:?}, the handshake timeout being 600 ms"
    );
    disconnected(&tls.server);
    disconnected(&tls.server);
    say(&alice, "after the timeouts");
    hears(&bob, "alice", "after the timeouts");
    finish(tls.server, vec![alice, bob]);
}

/// A client pinning another certificate refuses the server with
/// `PermissionDenied` naming both fingerprints, before any ferry byte (its
/// name, its token) crosses the wire; the server reports the client's
/// alert and nobody joining.
pub fn a_wrong_pin_is_refused_before_any_ferry_byte_is_sent(server: &Adapter, client: &Adapter) {
    let tls = tls_server(server, HubConfig::default(), None);
    let proxy = Proxy::start(tls.addr());
    let other_dir = tempfile::tempdir().expect("a scratch folder");
    let other =
        Identity::load_or_create(other_dir.path(), SystemTime::now()).expect("another identity");
    let mut config = ClientConfig::new("mallory-victim");
    config.token = b"the-secret-token".to_vec();
    let error = match client.connect(proxy.addr, config, None, Some(pinned(&other))) {
        Ok(_) => panic!("a client pinning another certificate was let in"),
        Err(e) => e,
    };
    let message = error.to_string();
    assert!(
        message.contains(&tls.identity.fingerprint().to_string())
            && message.contains(&other.fingerprint().to_string()),
        "the error of a wrong pin should name both fingerprints: {message}"
    );
    assert_eq!(
        error.kind(),
        io::ErrorKind::PermissionDenied,
        "the error kind of a wrong pin"
    );
    let reason = wait_for(
        tls.server.notices(),
        "the refused client's end",
        |n| match n {
            ServerNotice::Joined { .. } => panic!("the client that refused the server joined"),
            ServerNotice::Disconnected { reason, .. } => Some(reason.clone()),
            _ => None,
        },
    );
    assert!(
        reason.contains("TLS with 127.0.0.1:") && reason.contains("alert"),
        "the server's reason should name the client and its alert: {reason}"
    );
    // On the wire: after its ClientHello, the client sent no record that
    // could hold a HELLO (an encrypted alert is 19 bytes).
    let (up, _) = proxy.seen();
    assert!(
        !contains(&up, b"mallory-victim") && !contains(&up, b"the-secret-token"),
        "the client's name or token crossed the wire to a server it refused"
    );
    let mut rest = &up[..];
    let mut records = Vec::new();
    while rest.len() >= 5 {
        let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        records.push((rest[0], len));
        rest = &rest[(5 + len).min(rest.len())..];
    }
    assert_eq!(
        records.first().map(|r| r.0),
        Some(0x16),
        "the client's first record should be a handshake: {records:?}"
    );
    assert!(
        records[1..].iter().all(|&(_, len)| len <= 32),
        "after its ClientHello, the client sent a record long enough for a HELLO: {records:?}"
    );
    finish(tls.server, vec![]);
}

/// Through a relay that records the wire, a TLS client's chat lines, the
/// replies to it, its name and its file's bytes never show in clear; the
/// same relay does show a plain client's line.
pub fn no_chat_line_or_file_byte_crosses_the_wire_in_clear(server: &Adapter, client: &Adapter) {
    let src = tempfile::tempdir().expect("a scratch folder");
    let inbox = tempfile::tempdir().expect("a scratch folder");
    let data = contents(2 << 20, 9);
    let path = file_with(src.path(), "secret.bin", &data);
    let tls = tls_server(server, HubConfig::default(), Some(inbox.path()));
    let proxy = Proxy::start(tls.addr());
    let bob = client.join(tls.addr(), "bob", None);
    let alice = client.join_tls(proxy.addr, "alice", pinned(&tls.identity));
    let line = "the eagle lands at midnight";
    say(&alice, line);
    hears(&bob, "alice", line);
    say(&bob, "a reply only alice hears on the wire");
    hears(&alice, "bob", "a reply only alice hears on the wire");
    alice.send(ClientCommand::SendFile {
        path,
        to: String::new(),
    });
    let outcome = transfer_outcome(&alice, "the end of alice's upload");
    assert_eq!(outcome, Outcome::Verified, "the upload's outcome");
    let (up, down) = proxy.seen();
    assert!(
        up.len() > data.len(),
        "the relay carried {} bytes up, less than the {} byte upload",
        up.len(),
        data.len()
    );
    for (wire, direction) in [(&up, "to the server"), (&down, "to the client")] {
        assert!(
            !contains(wire, line.as_bytes()),
            "the chat line in clear {direction}"
        );
        assert!(
            !contains(wire, b"a reply only alice hears"),
            "the reply in clear {direction}"
        );
        assert!(!contains(wire, b"alice"), "the name in clear {direction}");
        for at in [0, 1 << 20, data.len() - 64] {
            assert!(
                !contains(wire, &data[at..at + 64]),
                "file bytes from offset {at} in clear {direction}"
            );
        }
    }
    // The same relay in clear does show: the capture works.
    let plain = Proxy::start(tls.addr());
    let carl = client.join(plain.addr, "carl", None);
    say(&carl, line);
    hears(&bob, "carl", line);
    assert!(
        contains(&plain.seen().0, line.as_bytes()),
        "the relay did not capture a plain client's line"
    );
    finish(tls.server, vec![alice, bob, carl]);
}

/// A client knowing no server refuses a new one (`PermissionDenied`, the
/// message giving the `--fingerprint` that would pin it); trusting it on
/// first use records it in the known-servers file, and the next connection
/// is let in by that record; a record of another key is refused as a
/// changed certificate, naming both fingerprints.
pub fn a_new_server_is_refused_then_trusted_remembered_and_a_changed_one_refused(
    server: &Adapter,
    client: &Adapter,
) {
    let tls = tls_server(server, HubConfig::default(), None);
    let addr = tls.addr();
    let state = tempfile::tempdir().expect("a scratch folder");
    let path = state.path().join("known_servers");
    let with_known = |verify: Verify| {
        let known = KnownServers::load(&path).expect("the known-servers file");
        ClientTls::new(
            TlsClient::new().with_known_servers(known),
            "127.0.0.1",
            verify,
        )
    };
    let connect =
        |name: &str, tls: ClientTls| client.connect(addr, ClientConfig::new(name), None, Some(tls));
    let fingerprint = tls.identity.fingerprint().to_string();

    let error = match connect("first", with_known(Verify::default())) {
        Ok(_) => panic!("a client trusting no new server was let in by an unknown one"),
        Err(e) => e,
    };
    assert_eq!(
        error.kind(),
        io::ErrorKind::PermissionDenied,
        "the error kind for an unknown server ({error})"
    );
    assert!(
        error
            .to_string()
            .contains(&format!("--fingerprint {fingerprint}")),
        "the error for an unknown server should give --fingerprint {fingerprint}: {error}"
    );

    let trusted = connect(
        "trusting",
        with_known(Verify::default().trusting_new_server()),
    )
    .unwrap_or_else(|e| panic!("a client trusting a new server was refused: {e}"));
    let recorded = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        recorded,
        format!("127.0.0.1:{} {fingerprint}\n", addr.port()),
        "the known-servers file after trusting the server"
    );
    let known = connect("known", with_known(Verify::default()))
        .unwrap_or_else(|e| panic!("a client knowing the server from its record: {e}"));

    // The server's key as someone else's: the record no longer matches.
    let other_dir = tempfile::tempdir().expect("a scratch folder");
    let other =
        Identity::load_or_create(other_dir.path(), SystemTime::now()).expect("another identity");
    let mut list = KnownServers::load(&state.path().join("changed")).expect("a known-servers file");
    list.add("127.0.0.1", addr.port(), other.fingerprint())
        .expect("recording a server");
    let changed = ClientTls::new(
        TlsClient::new().with_known_servers(list),
        "127.0.0.1",
        Verify::default().trusting_new_server(),
    );
    let message = match connect("changed", changed) {
        Ok(_) => panic!("a client that knew the server by another key was let in"),
        Err(e) => e.to_string(),
    };
    assert!(
        message.contains("changed its certificate")
            && message.contains(&fingerprint)
            && message.contains(&other.fingerprint().to_string()),
        "the error for a changed certificate should say so and name both fingerprints: \
         {message}"
    );
    finish(tls.server, vec![trusted, known]);
}

/// A TLS client facing a server without TLS fails with `InvalidData`,
/// saying the server speaks no TLS.
pub fn a_tls_client_refuses_a_server_without_tls(server: &Adapter, client: &Adapter) {
    let hub = server.serve(HubConfig::default(), None);
    let tls = ClientTls::new(TlsClient::new(), "127.0.0.1", Verify::default());
    let error = match client.connect(
        hub.local_addr(),
        ClientConfig::new("alice"),
        None,
        Some(tls),
    ) {
        Ok(_) => panic!("a TLS client was let in by a server without TLS"),
        Err(e) => e,
    };
    assert_eq!(
        error.kind(),
        io::ErrorKind::InvalidData,
        "the error kind for a server without TLS ({error})"
    );
    assert!(
        error.to_string().starts_with("server speaks no TLS"),
        "the error for a server without TLS should start \"server speaks no TLS\": {error}"
    );
    finish(hub, vec![]);
}

/// A client over the per-address limit of a TLS-capable server is turned
/// away at connect, and its `spawn_client_tls` error says why: a plain
/// client reads the protocol's ERROR; a TLS client reads it in clear where
/// it expected the server's TLS hello, or through TLS.
pub fn a_client_turned_away_at_connect_still_hears_why(server: &Adapter, client: &Adapter) {
    let mut config = HubConfig::default();
    config.max_per_ip = 1;
    let tls = tls_server(server, config, None);
    let alice = client.join(tls.addr(), "alice", None);
    let why = turned_away(client, tls.addr(), "bob");
    assert!(
        why.contains("too many connections"),
        "the refusal over the per-address limit should say \"too many connections\": {why}"
    );
    let why = match client.connect(
        tls.addr(),
        ClientConfig::new("carol"),
        None,
        Some(pinned(&tls.identity)),
    ) {
        Ok(_) => panic!("spawn_client_tls let carol in over the per-address limit"),
        Err(e) => e.to_string(),
    };
    // The refusal comes in clear when the server writes it before the
    // ClientHello arrives (ferry_tls::Error::RefusedBeforeTls), inside TLS
    // when a server that read the ClientHello first finishes the
    // handshake: either way the client says why, never "no TLS".
    assert!(
        why.contains("too many connections") && !why.contains("speaks no TLS"),
        "a TLS client refused at connect should say why, in clear or through TLS: {why}"
    );
    finish(tls.server, vec![alice]);
}

/// With TLS required, a plain ferry client is told `TLS_REQUIRED` (its
/// HELLO never handled) and a raw-text guest one line of text, while TLS
/// clients chat on.
pub fn with_tls_required_clear_text_clients_are_turned_away_with_a_reason(
    server: &Adapter,
    client: &Adapter,
) {
    let tls = tls_server_requiring(server, HubConfig::default(), None, true);
    let addr = tls.addr();
    let alice = tls.join_pinned(client, "alice");

    let why = turned_away(client, addr, "bob");
    assert!(
        why.contains("TLS"),
        "the refusal of a plain client should say TLS is required: {why}"
    );

    let mut guest = TcpStream::connect(addr).expect("connecting to the server");
    guest.set_read_timeout(Some(WAIT)).expect("a read timeout");
    guest
        .write_all(b"/name mallory\nhello\n")
        .expect("a guest's lines");
    let mut said = Vec::new();
    let _ = guest.read_to_end(&mut said);
    let said = String::from_utf8_lossy(&said);
    assert!(
        said.contains("only encrypted (TLS)") && !said.contains("welcome"),
        "a raw-text guest should be told only encrypted (TLS) clients are served, and not \
         welcomed: {said:?}"
    );

    say(&alice, "still here");
    hears(&alice, "alice", "still here");
    let joined: Vec<_> = tls
        .server
        .notices()
        .try_iter()
        .filter_map(|n| match n {
            ServerNotice::Joined { name, .. } if name != "alice" => Some(name),
            _ => None,
        })
        .collect();
    assert!(
        joined.is_empty(),
        "clear-text clients joined a server requiring TLS: {joined:?}"
    );
    finish(tls.server, vec![alice]);
}

/// Tunes a hub so that only a reader that stops reading fills up: no
/// flood limits (every client shares 127.0.0.1), a small outgoing queue.
fn slow_reader_config() -> HubConfig {
    let mut config = HubConfig::default();
    config.flood_burst = 1_000_000;
    config.flood_per_second = 1_000_000;
    config.source_flood_burst = 1_000_000;
    config.source_flood_per_second = 1_000_000;
    config.connection.max_outgoing = 256 * 1024;
    config
}

/// A raw-text guest that joins inside TLS and never reads again is dropped
/// as `SLOW_READER` while alice's 10 MB of chat reach bob.
pub fn a_tls_guest_that_stops_reading_holds_nobody_up(adapter: &Adapter) {
    let tls = tls_server(adapter, slow_reader_config(), None);
    let alice = tls.join_pinned(adapter, "alice");
    let bob = tls.join_pinned(adapter, "bob");
    let mut slow = TextOverTls::connect(tls.addr(), &tls.identity);
    slow.write(b"/name slow\r\n");
    slow.expect("* welcome to ferry, slow");
    let text = "x".repeat(4000);
    let mut dropped = false;
    for round in 0..125 {
        for i in 0..20 {
            say(&alice, &format!("{round}.{i} {text}"));
        }
        hears(&bob, "alice", &format!("{round}.19 {text}"));
        dropped |= tls.server.notices().try_iter().any(|n| is_slow_reader(&n));
        if dropped {
            break;
        }
    }
    if !dropped {
        wait_for(
            tls.server.notices(),
            "the TLS guest that stopped reading dropped as SLOW_READER",
            |n| is_slow_reader(n).then_some(()),
        );
    }
    drop(slow);
    finish(tls.server, vec![alice, bob]);
}

/// A TLS guest that floods the server with requests (`/who`, answered to
/// it alone) and reads nothing: the answers pile up in the hub, not in the
/// TLS layer, the hub drops it as `SLOW_READER`, and the others chat on
/// throughout.
pub fn a_tls_guest_flooding_requests_without_reading_is_dropped_as_a_slow_reader(
    adapter: &Adapter,
) {
    let tls = tls_server(adapter, slow_reader_config(), None);
    let alice = tls.join_pinned(adapter, "alice");
    let bob = tls.join_pinned(adapter, "bob");
    let mut flood = TextOverTls::connect(tls.addr(), &tls.identity);
    flood.write(b"/name flood\r\n");
    flood.expect("* welcome to ferry, flood");
    flood
        .socket
        .set_write_timeout(Some(Duration::from_secs(2)))
        .expect("a write timeout");
    // A bound, should the server never close it.
    let limit = 64 << 20;
    let flooder = thread::spawn(move || {
        let line = "/who\r\n".repeat(100);
        let mut sent = 0;
        while sent < limit {
            let Ok(n) = flood.transport.write_plaintext(line.as_bytes()) else {
                return sent;
            };
            sent += n;
            while flood.transport.wants_write() {
                if flood.transport.write_to(&mut flood.socket).is_err() {
                    return sent;
                }
            }
        }
        sent
    });
    let text = "x".repeat(4000);
    for round in 0..20 {
        say(&alice, &format!("{round} {text}"));
        hears(&bob, "alice", &format!("{round} {text}"));
    }
    wait_for(
        tls.server.notices(),
        "the flooding TLS guest dropped as SLOW_READER",
        |n| is_slow_reader(n).then_some(()),
    );
    // Its socket is closed at the latest once its last bytes had their
    // time (the writer's linger): the flood's writes then fail, or it ends
    // at its bound.
    flooder.join().expect("the flooding thread");
    say(&bob, "still here");
    hears(&alice, "bob", "still here");
    finish(tls.server, vec![alice, bob]);
}
