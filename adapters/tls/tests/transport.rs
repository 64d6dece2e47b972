//! In-memory handshakes and data through pairs of transports.

mod common;

use std::io::Read;
use std::time::SystemTime;

use common::{read_all, self_signed, Pair};
use ferry_core::frame::{Frame, PREAMBLE};
use ferry_core::Code;
use ferry_tls::{
    server_identity, ClientTls, Error, Fingerprint, Identity, Kind, KnownServers, TlsClient,
    TlsServer, Transport, Verified, Verify, ALPN, HANDSHAKE_INPUT_LIMIT, OUTGOING_LIMIT,
    PLAINTEXT_LIMIT,
};

fn pinned_pair(chunk: usize) -> Pair {
    let (_dir, identity) = self_signed();
    let server = TlsServer::new(&identity).unwrap();
    let verify = Verify::pinned(identity.fingerprint());
    let client = Transport::client(&TlsClient::new(), "localhost", 7878, &verify).unwrap();
    Pair::new(client, Some(&server), chunk)
}

#[test]
fn a_pinned_server_is_identified_by_its_key_and_only_once_verified() {
    let (_dir, identity) = self_signed();
    let server = TlsServer::new(&identity).unwrap();
    let verify = Verify::pinned(identity.fingerprint());
    let client = Transport::client(&TlsClient::new(), "localhost", 7878, &verify).unwrap();
    let settings = ClientTls::new(TlsClient::new(), "localhost", verify);
    let mut pair = Pair::new(client, Some(&server), 1 << 20);
    assert_eq!(server_identity(&settings, &pair.client), None);
    pair.client.write_plaintext(b"HELLO").unwrap();
    pair.exchange().unwrap();
    assert_eq!(
        server_identity(&settings, &pair.client),
        Some(format!("key:{}", identity.fingerprint()))
    );
}

#[test]
fn pinned_handshake_carries_messages_both_ways_in_any_split() {
    for chunk in [1, 7, 100, 1 << 20] {
        let mut pair = pinned_pair(chunk);
        assert!(pair.client.is_handshaking() && pair.server.is_tls());
        pair.client.write_plaintext(b"HELLO from client").unwrap();
        let (_, at_server) = pair.exchange().unwrap();
        assert_eq!(at_server, b"HELLO from client");
        assert!(!pair.client.is_handshaking() && !pair.server.is_handshaking());
        assert_eq!(pair.client.verified(), Some(Verified::Pinned));
        assert_eq!(pair.client.alpn(), Some(ALPN));
        assert_eq!(pair.server.alpn(), Some(ALPN));
        pair.server.write_plaintext(b"WELCOME").unwrap();
        let (at_client, _) = pair.exchange().unwrap();
        assert_eq!(at_client, b"WELCOME");
    }
}

#[test]
fn a_whole_session_survives_random_splits() {
    let up: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let down: Vec<u8> = up.iter().rev().copied().collect();
    for seed in 1..=20u64 {
        let mut pair = pinned_pair(3000);
        pair.seed = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let (mut at_client, mut at_server) = (Vec::new(), Vec::new());
        let (mut up_left, mut down_left) = (&up[..], &down[..]);
        while at_server.len() < up.len() || at_client.len() < down.len() {
            let n = pair.client.write_plaintext(up_left).unwrap();
            up_left = &up_left[n..];
            let n = pair.server.write_plaintext(down_left).unwrap();
            down_left = &down_left[n..];
            let (c, s) = pair.exchange().unwrap();
            at_client.extend_from_slice(&c);
            at_server.extend_from_slice(&s);
        }
        assert!(at_server == up && at_client == down, "seed {seed}");
    }
}

#[test]
fn close_notify_reaches_the_peer() {
    let mut pair = pinned_pair(1 << 20);
    pair.exchange().unwrap();
    pair.client.close();
    assert!(matches!(
        pair.client.write_plaintext(b"late"),
        Err(Error::Misuse(_))
    ));
    pair.exchange().unwrap();
    assert!(pair.server.peer_closed());
}

#[test]
fn sniffing_tells_tls_from_ferry_and_raw_text_and_keeps_the_bytes() {
    assert_eq!(Kind::of_first_byte(0x16), Kind::Tls);
    assert_eq!(Kind::of_first_byte(0x89), Kind::Plain);
    assert_eq!(Kind::of_first_byte(b'h'), Kind::Plain);
    let (_dir, identity) = self_signed();
    let tls = TlsServer::new(&identity).unwrap();
    assert!(matches!(
        Transport::accept(&[], Some(&tls)),
        Err(Error::Misuse(_))
    ));
    for first in [&b"\x89FERRY\r\n"[..], b"hello\n"] {
        let mut server = Transport::accept(first, Some(&tls)).unwrap();
        assert!(!server.is_tls());
        assert_eq!(server.feed(first).unwrap(), first.len());
        let mut got = Vec::new();
        read_all(&mut server, &mut got);
        assert_eq!(got, first);
    }
    // A server without TLS treats even a ClientHello as plain bytes.
    assert!(!Transport::accept(&[0x16, 3, 1], None).unwrap().is_tls());
}

#[test]
fn plain_passes_bytes_through_both_ways() {
    let mut client = Transport::plain();
    client.write_plaintext(b"\x89hello").unwrap();
    let mut pair = Pair::new(client, None, 3);
    let (_, at_server) = pair.exchange().unwrap();
    assert_eq!(at_server, b"\x89hello");
    pair.server.write_plaintext(b"welcome").unwrap();
    let (at_client, _) = pair.exchange().unwrap();
    assert_eq!(at_client, b"welcome");
    assert!(!pair.client.is_handshaking());
    assert_eq!(pair.client.verified(), None);
    pair.server.feed_eof().unwrap();
    assert!(pair.server.peer_closed());
}

#[test]
fn a_wrong_pin_is_refused_naming_both_fingerprints_and_nothing_is_sent() {
    let (_dir, identity) = self_signed();
    let server = TlsServer::new(&identity).unwrap();
    let pinned = Fingerprint::of_der(b"another certificate");
    let client = Transport::client(
        &TlsClient::new(),
        "localhost",
        7878,
        &Verify::pinned(pinned),
    )
    .unwrap();
    let mut pair = Pair::new(client, Some(&server), 1 << 20);
    pair.client.write_plaintext(b"HELLO token=secret").unwrap();
    let error = pair.exchange().unwrap_err().client();
    let Error::PinMismatch { pinned: p, actual } = &error else {
        panic!("{error:?}");
    };
    assert_eq!((*p, *actual), (pinned, identity.fingerprint()));
    let text = error.to_string();
    assert!(
        text.contains(&pinned.to_string()) && text.contains(&identity.fingerprint().to_string())
    );
    assert_eq!(
        text,
        format!(
            "server's certificate {} does not match the pinned {pinned}",
            identity.fingerprint()
        )
    );
    // The client's alert goes out; the server learns the handshake failed
    // and never sees the plaintext.
    let mut wire = Vec::new();
    pair.client.take_outgoing(&mut wire);
    let server_error = pair.server.feed(&wire).unwrap_err();
    assert!(
        matches!(server_error, Error::Handshake { .. }),
        "{server_error:?}"
    );
    assert_eq!(pair.server.plaintext_pending(), 0);
    // The error stays.
    assert!(matches!(
        pair.client.feed(b"x"),
        Err(Error::PinMismatch { .. })
    ));
}

#[test]
fn a_ca_signed_certificate_is_trusted_for_its_name_only() {
    let (ca, chain, key) = common::ca_and_leaf(&["ferry.test"]);
    let identity = Identity::from_pem(chain.as_bytes(), key.as_bytes(), SystemTime::now()).unwrap();
    assert_eq!(identity.chain().len(), 2);
    let server = TlsServer::new(&identity).unwrap();
    let mut roots = TlsClient::webpki_roots();
    roots.add(ca.der().clone()).unwrap();
    let client_tls = TlsClient::with_roots(roots).unwrap();

    let client = Transport::client(&client_tls, "ferry.test", 7878, &Verify::default()).unwrap();
    let mut pair = Pair::new(client, Some(&server), 1 << 20);
    pair.client.write_plaintext(b"hi").unwrap();
    assert_eq!(pair.exchange().unwrap().1, b"hi");
    assert_eq!(pair.client.verified(), Some(Verified::Ca));
    // Who it is, for keys kept per server: the name, whatever key a
    // renewed certificate brings.
    let settings = ClientTls::new(client_tls.clone(), "Ferry.Test", Verify::default());
    assert_eq!(
        server_identity(&settings, &pair.client).as_deref(),
        Some("name:ferry.test")
    );

    let client = Transport::client(&client_tls, "other.test", 7878, &Verify::default()).unwrap();
    let mut pair = Pair::new(client, Some(&server), 1 << 20);
    let error = pair.exchange().unwrap_err().client();
    assert_eq!(
        error.to_string(),
        "certificate for ferry.test is not valid for other.test"
    );

    // The same certificate without its CA among the roots is unknown.
    let client =
        Transport::client(&TlsClient::new(), "ferry.test", 7878, &Verify::default()).unwrap();
    let mut pair = Pair::new(client, Some(&server), 1 << 20);
    let error = pair.exchange().unwrap_err().client();
    assert!(matches!(error, Error::Handshake { .. }), "{error:?}");
}

#[test]
fn trust_on_first_use_unknown_then_recorded_then_known() {
    let (dir, identity) = self_signed();
    let server = TlsServer::new(&identity).unwrap();
    let path = dir.path().join("state/known_servers");
    let mut client_tls = TlsClient::new().with_known_servers(KnownServers::load(&path).unwrap());

    let client = Transport::client(&client_tls, "localhost", 7878, &Verify::default()).unwrap();
    let mut pair = Pair::new(client, Some(&server), 1 << 20);
    pair.client.write_plaintext(b"HELLO token=secret").unwrap();
    let error = pair.exchange().unwrap_err().client();
    let Error::UnknownServer {
        server: name,
        fingerprint,
        ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(
        (name.as_str(), *fingerprint),
        ("localhost:7878", identity.fingerprint())
    );
    let text = error.to_string();
    let fp = identity.fingerprint();
    assert_eq!(
        text,
        format!(
            "server localhost:7878 is not known; its certificate is {fp} (not trusted by a CA: \
             invalid peer certificate: UnknownIssuer); to trust it, connect with --fingerprint {fp}"
        )
    );
    assert_eq!(pair.server.plaintext_pending(), 0);

    // The user accepted: record, and the next connection is known.
    client_tls
        .known_servers_mut()
        .unwrap()
        .add("localhost", 7878, *fingerprint)
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    let client_tls = TlsClient::new().with_known_servers(KnownServers::load(&path).unwrap());
    let client = Transport::client(&client_tls, "localhost", 7878, &Verify::default()).unwrap();
    let mut pair = Pair::new(client, Some(&server), 1 << 20);
    pair.client.write_plaintext(b"again").unwrap();
    assert_eq!(pair.exchange().unwrap().1, b"again");
    assert_eq!(pair.client.verified(), Some(Verified::Known { line: 1 }));

    // Another port of the same host is another server; trusting new
    // servers lets it in and says what to record.
    let verify = Verify::default().trusting_new_server();
    let client = Transport::client(&client_tls, "localhost", 7879, &verify).unwrap();
    let mut pair = Pair::new(client, Some(&server), 1 << 20);
    pair.exchange().unwrap();
    assert_eq!(
        pair.client.verified(),
        Some(Verified::New {
            fingerprint: identity.fingerprint()
        })
    );
}

#[test]
fn a_changed_server_is_refused_with_the_line_to_delete() {
    let (dir, identity) = self_signed();
    let server = TlsServer::new(&identity).unwrap();
    let path = dir.path().join("known_servers");
    let old = Fingerprint::of_der(b"the old certificate");
    std::fs::write(
        &path,
        format!("# ferry known servers\nlocalhost:7878 {old}\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let client_tls = TlsClient::new().with_known_servers(KnownServers::load(&path).unwrap());
    // Even trusting new servers does not let a changed one in.
    let verify = Verify::default().trusting_new_server();
    let client = Transport::client(&client_tls, "LOCALHOST", 7878, &verify).unwrap();
    let mut pair = Pair::new(client, Some(&server), 1 << 20);
    pair.client.write_plaintext(b"HELLO token=secret").unwrap();
    let error = pair.exchange().unwrap_err().client();
    let Error::ChangedServer {
        old: o,
        new,
        path: p,
        line,
        ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(
        (*o, *new, p, *line),
        (old, identity.fingerprint(), &path, 2)
    );
    let text = error.to_string();
    assert!(text.contains(&old.to_string()) && text.contains(&new.to_string()));
    assert!(
        text.contains(&format!("{} line 2", path.display())),
        "{text}"
    );
    assert_eq!(pair.server.plaintext_pending(), 0);
}

#[test]
fn a_client_without_alpn_is_served_and_a_foreign_alpn_is_not() {
    use std::sync::Arc;
    let (_dir, identity) = self_signed();
    let server_tls = TlsServer::new(&identity).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(identity.chain()[0].clone()).unwrap();
    for (alpn, served) in [(vec![], true), (vec![b"h2".to_vec()], false)] {
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
        config.alpn_protocols = alpn;
        let mut client =
            rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap())
                .unwrap();
        let mut hello = Vec::new();
        client.write_tls(&mut hello).unwrap();
        let mut server = Transport::accept(&hello, Some(&server_tls)).unwrap();
        let result = server.feed(&hello);
        assert_eq!(result.is_ok(), served, "{result:?}");
        if served {
            let mut out = Vec::new();
            server.take_outgoing(&mut out);
            client.read_tls(&mut &out[..]).unwrap();
            client.process_new_packets().unwrap();
            assert!(!client.is_handshaking());
            assert_eq!(server.alpn(), None);
        }
    }
}

#[test]
fn garbage_after_a_client_hello_is_an_error() {
    let mut pair = pinned_pair(1 << 20);
    let mut hello = std::mem::take(&mut pair.to_server);
    hello.extend_from_slice(b"\x16\x03\x03\x00\x05hello, this is not TLS at all");
    let error = pair.server.feed(&hello).unwrap_err();
    assert!(matches!(error, Error::Garbage { .. }), "{error:?}");
    assert!(error.to_string().starts_with("peer sent invalid TLS data"));
    // Text where a record header should be.
    let mut pair = pinned_pair(1 << 20);
    let mut hello = std::mem::take(&mut pair.to_server);
    hello.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    assert!(pair.server.feed(&hello).is_err());
}

#[test]
fn a_truncated_handshake_is_an_error_on_either_side() {
    let mut pair = pinned_pair(1 << 20);
    let hello = std::mem::take(&mut pair.to_server);
    assert_eq!(
        pair.server.feed(&hello[..hello.len() / 2]).unwrap(),
        hello.len() / 2
    );
    assert!(matches!(pair.server.feed_eof(), Err(Error::Truncated)));
    assert_eq!(
        pair.server.feed_eof().unwrap_err().to_string(),
        "connection closed during the TLS handshake"
    );
    let mut pair = pinned_pair(1 << 20);
    assert!(matches!(pair.client.feed_eof(), Err(Error::Truncated)));
}

#[test]
fn a_server_that_speaks_no_tls_is_named() {
    // The ferry preamble, and then the end: a plain server that said
    // nothing more.
    let mut pair = pinned_pair(1 << 20);
    assert_eq!(pair.client.feed(b"\x89FERRY").unwrap(), 6);
    let error = pair.client.feed_eof().unwrap_err();
    assert_eq!(
        error.to_string(),
        "server speaks no TLS (its first byte is 0x89)"
    );
    // A plain server that takes no TLS says NOT_FERRY; one that sends a
    // frame other than ERROR, or garbage after the preamble, speaks no TLS
    // either.
    for answer in [
        error_frame(Code::NOT_FERRY, "expected the ferry preamble"),
        [&PREAMBLE[..], &[0x05, 0, 0, 0, 0]].concat(),
        b"\x89FERRX\r\n".to_vec(),
    ] {
        let mut pair = pinned_pair(1 << 20);
        let error = pair.client.feed(&answer).unwrap_err();
        assert!(
            matches!(error, Error::NotTls { first_byte: 0x89 }),
            "{answer:?}: {error}"
        );
    }
    let mut pair = pinned_pair(1 << 20);
    assert!(matches!(
        pair.client.feed(b"welcome to the chat\n"),
        Err(Error::NotTls { first_byte: b'w' })
    ));
}

/// Record size plus the most rustls adds to one (header, tag, padding).
const RECORD: usize = 16 * 1024 + 256;

#[test]
fn a_flooding_peer_cannot_make_the_transport_hold_more_than_a_record_or_two() {
    let mut pair = pinned_pair(1 << 20);
    pair.exchange().unwrap();
    // 4 MiB from the client's side, the server never reading plaintext.
    let data: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    let (mut sent, mut taken_by_server) = (0, 0);
    let mut wire = Vec::new();
    loop {
        sent += pair.client.write_plaintext(&data[sent..]).unwrap();
        pair.client.take_outgoing(&mut wire);
        let n = pair.server.feed(&wire).unwrap();
        taken_by_server += n;
        wire.drain(..n);
        if n == 0 {
            break;
        }
    }
    assert!(sent < data.len(), "the flood was not held back");
    assert!(pair.server.plaintext_pending() >= PLAINTEXT_LIMIT);
    assert!(pair.server.plaintext_pending() <= PLAINTEXT_LIMIT + RECORD);
    // Everything the server took is plaintext it holds or part of a record.
    assert!(
        taken_by_server <= PLAINTEXT_LIMIT + 2 * RECORD,
        "{taken_by_server}"
    );
    assert_eq!(pair.server.feed(&wire).unwrap(), 0);

    // Draining lets it all through, intact.
    let mut got = Vec::new();
    while got.len() < data.len() {
        sent += pair.client.write_plaintext(&data[sent..]).unwrap();
        pair.client.take_outgoing(&mut wire);
        let n = pair.server.feed(&wire).unwrap();
        wire.drain(..n);
        read_all(&mut pair.server, &mut got);
    }
    assert!(got == data);
}

#[test]
fn unsent_output_is_bounded_before_and_after_the_handshake() {
    let mut pair = pinned_pair(1 << 20);
    let big = vec![b'z'; 4 << 20];
    // Before the handshake: held as plaintext until the server is verified.
    let before = pair.client.write_plaintext(&big).unwrap();
    assert!(before <= OUTGOING_LIMIT, "{before}");
    assert_eq!(pair.client.write_plaintext(&big).unwrap(), 0);
    pair.drive().unwrap();
    // After: encrypted records, never more than the limit unsent.
    let mut written = 0;
    loop {
        let n = pair.client.write_plaintext(&big).unwrap();
        written += n;
        if n == 0 {
            break;
        }
    }
    assert!(written <= OUTGOING_LIMIT + RECORD, "{written}");
    assert!(pair.client.outgoing_pending() <= OUTGOING_LIMIT + RECORD);
}

#[test]
fn a_plain_flood_is_bounded_too() {
    let mut server = Transport::accept(b"x", None).unwrap();
    let flood = vec![b'x'; 4 << 20];
    let taken = server.feed(&flood).unwrap();
    assert_eq!(taken, PLAINTEXT_LIMIT);
    assert_eq!(server.feed(&flood).unwrap(), 0);
    let big = vec![b'y'; 4 << 20];
    assert_eq!(server.write_plaintext(&big).unwrap(), OUTGOING_LIMIT);
    assert_eq!(server.write_plaintext(&big).unwrap(), 0);
}

#[test]
fn a_handshake_flood_is_refused_after_little_input() {
    let (_dir, identity) = self_signed();
    let tls = TlsServer::new(&identity).unwrap();
    // A record header claiming the largest handshake record, then junk.
    let mut flood = vec![0x16, 0x03, 0x01, 0xff, 0xff];
    flood.resize(4 << 20, 0x41);
    let mut server = Transport::accept(&flood, Some(&tls)).unwrap();
    let error = server.feed(&flood).unwrap_err();
    assert!(
        matches!(error, Error::Limit { .. } | Error::Garbage { .. }),
        "{error:?}"
    );
}

#[test]
fn transports_and_settings_move_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Transport>();
    send_sync::<TlsServer>();
    send_sync::<TlsClient>();
    send_sync::<Error>();
}

fn record(payload: &[u8]) -> Vec<u8> {
    let mut r = vec![0x16, 0x03, 0x01];
    r.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    r.extend_from_slice(payload);
    r
}

#[test]
fn a_client_handshake_is_refused_past_its_limit() {
    let (_dir, identity) = self_signed();
    let tls = TlsServer::new(&identity).unwrap();
    // A ClientHello that claims 60,000 bytes, sent in full records: rustls
    // would wait for all of it; the transport stops at its own limit.
    let mut first = vec![0x01, 0x00, 0xea, 0x60];
    first.resize(16 * 1024, 0x41);
    let mut flood = record(&first);
    for _ in 0..4 {
        flood.extend_from_slice(&record(&[0x41; 16 * 1024]));
    }
    let mut server = Transport::accept(&flood, Some(&tls)).unwrap();
    let mut taken = 0;
    let error = loop {
        match server.feed(&flood[taken..]) {
            Ok(0) => panic!("the flood was neither taken nor refused"),
            Ok(n) => taken += n,
            Err(e) => break e,
        }
    };
    assert!(matches!(error, Error::Limit { .. }), "{error:?}");
    assert!(taken <= HANDSHAKE_INPUT_LIMIT, "{taken}");
    assert!(error.to_string().starts_with("peer exceeded a TLS limit"));

    // A claim over rustls' own cap is refused at once.
    let mut server = Transport::accept(&flood, Some(&tls)).unwrap();
    let error = server
        .feed(&record(&[0x01, 0xff, 0xff, 0xff, 0x03, 0x03]))
        .unwrap_err();
    assert!(matches!(error, Error::Limit { .. }), "{error:?}");
}

#[test]
fn any_recorded_fingerprint_of_a_server_is_accepted() {
    let (dir, identity) = self_signed();
    let server = TlsServer::new(&identity).unwrap();
    let path = dir.path().join("known_servers");
    let old = Fingerprint::of_der(b"the old certificate");
    std::fs::write(
        &path,
        format!(
            "localhost:7878 {old}\nlocalhost:7878 {}\n",
            identity.fingerprint()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let client_tls = TlsClient::new().with_known_servers(KnownServers::load(&path).unwrap());
    let client = Transport::client(&client_tls, "localhost", 7878, &Verify::default()).unwrap();
    let mut pair = Pair::new(client, Some(&server), 1 << 20);
    pair.exchange().unwrap();
    assert_eq!(pair.client.verified(), Some(Verified::Known { line: 2 }));
}

#[test]
fn a_known_servers_file_others_can_write_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_servers");
    std::fs::write(&path, "").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let error = KnownServers::load(&path).unwrap_err();
    assert!(error.to_string().contains("writable"), "{error}");
}

#[test]
fn the_ca_path_checks_dates_against_the_client_clock() {
    #[derive(Debug)]
    struct Future;
    impl rustls::time_provider::TimeProvider for Future {
        fn current_time(&self) -> Option<rustls::pki_types::UnixTime> {
            // Past rcgen's default end of validity, the year 4096.
            Some(rustls::pki_types::UnixTime::since_unix_epoch(
                std::time::Duration::from_secs(4_000 * 365 * 86_400),
            ))
        }
    }
    let (ca, chain, key) = common::ca_and_leaf(&["ferry.test"]);
    let identity = Identity::from_pem(chain.as_bytes(), key.as_bytes(), SystemTime::now()).unwrap();
    let server = TlsServer::new(&identity).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let client_tls = TlsClient::with_roots(roots)
        .unwrap()
        .with_clock(std::sync::Arc::new(Future));
    let client = Transport::client(&client_tls, "ferry.test", 1, &Verify::default()).unwrap();
    let mut pair = Pair::new(client, Some(&server), 1 << 20);
    let error = pair.exchange().unwrap_err().client();
    assert!(matches!(error, Error::Handshake { .. }), "{error:?}");
    assert!(error.to_string().contains("expired"), "{error}");
}

#[test]
fn a_server_showing_a_pinned_certificate_without_its_key_is_refused() {
    use std::sync::Arc;
    // The man in the middle copies the real server's certificate (public)
    // but signs the handshake with a key of its own.
    let (_dir, real) = self_signed();
    let own_key = rcgen::KeyPair::generate().unwrap();
    let key_der = rustls::pki_types::PrivateKeyDer::try_from(own_key.serialize_der()).unwrap();
    let signer = rustls::crypto::ring::sign::any_supported_type(&key_der).unwrap();
    let stolen = rustls::sign::CertifiedKey::new(real.chain().to_vec(), signer);
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(stolen)));
    let mut mitm = rustls::ServerConnection::new(Arc::new(config)).unwrap();

    let verify = Verify::pinned(real.fingerprint());
    let mut client = Transport::client(&TlsClient::new(), "localhost", 1, &verify).unwrap();
    client.write_plaintext(b"HELLO token=secret").unwrap();
    let mut wire = Vec::new();
    let error = loop {
        client.take_outgoing(&mut wire);
        mitm.read_tls(&mut &wire[..]).unwrap();
        wire.clear();
        mitm.process_new_packets().unwrap();
        assert_eq!(
            mitm.reader().read(&mut [0; 64]).ok(),
            None,
            "plaintext leaked"
        );
        mitm.write_tls(&mut wire).unwrap();
        if let Err(e) = client.feed(&wire) {
            break e;
        }
        wire.clear();
    };
    let Error::Handshake { reason } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(
        *reason,
        rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature)
    );
}

#[test]
fn a_tampered_record_is_refused_and_an_abrupt_end_after_the_handshake_is_a_close() {
    let mut pair = pinned_pair(1 << 20);
    pair.exchange().unwrap();
    pair.client.write_plaintext(b"chat line").unwrap();
    let mut wire = Vec::new();
    pair.client.take_outgoing(&mut wire);
    let last = wire.len() - 1;
    wire[last] ^= 1;
    let error = pair.server.feed(&wire).unwrap_err();
    assert!(matches!(error, Error::Garbage { .. }), "{error:?}");
    assert_eq!(pair.server.plaintext_pending(), 0);

    let mut pair = pinned_pair(1 << 20);
    pair.exchange().unwrap();
    pair.server.feed_eof().unwrap();
    assert!(pair.server.peer_closed());
}

/// The preamble and an `ERROR` frame, as a server turning a client away
/// before reading from it sends them.
fn error_frame(code: Code, reason: &str) -> Vec<u8> {
    let mut out = bytes::BytesMut::from(&PREAMBLE[..]);
    Frame::Error {
        code,
        reason: reason.into(),
    }
    .encode(&mut out)
    .unwrap();
    out.to_vec()
}

#[test]
fn a_refusal_in_clear_text_is_told_whole_however_it_is_split() {
    let refusal = error_frame(Code::SERVER_FULL, "too many connections from 127.0.0.1");
    for split in [1, 2, 7, 8, 9, 13, refusal.len()] {
        let mut pair = pinned_pair(1 << 20);
        let mut outcome = None;
        for piece in refusal.chunks(split) {
            match pair.client.feed(piece) {
                Ok(n) => assert_eq!(n, piece.len(), "held whole"),
                Err(e) => {
                    outcome = Some(e);
                    break;
                }
            }
        }
        let error = outcome.expect("the whole ERROR is an error");
        assert!(
            matches!(&error, Error::RefusedBeforeTls { code, reason }
                if *code == Code::SERVER_FULL && reason == "too many connections from 127.0.0.1"),
            "split {split}: {error:?}"
        );
        assert_eq!(
            error.to_string(),
            "server turned the connection away before TLS began: \
             too many connections from 127.0.0.1 (server full)"
        );
    }
    // A refusal that never ends is not held past a bound.
    let mut pair = pinned_pair(1 << 20);
    let mut endless = error_frame(Code::SERVER_FULL, "x");
    endless[PREAMBLE.len() + 1..PREAMBLE.len() + 5].copy_from_slice(&60_000u32.to_be_bytes());
    let mut fed = 0;
    let error = loop {
        match pair.client.feed(&endless[..endless.len().min(64)]) {
            Ok(n) => fed += n,
            Err(e) => break e,
        }
        endless.drain(..endless.len().min(64));
        endless.extend_from_slice(&[b'x'; 64]);
        assert!(fed <= 4096, "held {fed} bytes");
    };
    assert!(matches!(error, Error::NotTls { .. }), "{error}");
}
