//! TLS on the smol adapter: the tests every runtime passes
//! (`adapters/conformance/tls.rs`), smol and std speaking TLS to each
//! other, and a TLS guest flooding requests without reading.

use ferry_smol::{self as runtime, spawn_client_tls, spawn_server_tls, ClientTls};

/// Whether `spawn_client` returns only once the server welcomed the client.
const CALL_WAITS_FOR_WELCOME: bool = true;

include!("../../conformance/tls.rs");

#[test]
fn smol_and_std_speak_tls_to_each_other() {
    // A smol TLS client on a std TLS server...
    let dir = tempfile::tempdir().unwrap();
    let identity = Identity::load_or_create(&dir.path().join("tls"), SystemTime::now()).unwrap();
    let tls = Arc::new(TlsServer::new(&identity).unwrap());
    let std_server = ferry_std::spawn_server_tls(
        "127.0.0.1:0".parse().unwrap(),
        HubConfig::default(),
        None,
        Some(tls),
    )
    .unwrap();
    let alice = client(std_server.local_addr(), "alice", pinned(&identity));
    let bob = ferry_std::spawn_client_tls(
        std_server.local_addr(),
        ClientConfig::new("bob"),
        None,
        Duration::from_secs(5),
        pinned(&identity),
    )
    .unwrap();
    say(&alice, "smol to std server");
    hears(&bob, "alice", "smol to std server");
    say(&bob, "std client back");
    hears(&alice, "bob", "std client back");
    finish(std_server, vec![alice, bob]);

    // ... and a std TLS client on the smol TLS server.
    let server = tls_server(HubConfig::default(), None);
    let carol = ferry_std::spawn_client_tls(
        server.server.local_addr(),
        ClientConfig::new("carol"),
        None,
        Duration::from_secs(5),
        pinned(&server.identity),
    )
    .unwrap();
    let dave = client(server.server.local_addr(), "dave", pinned(&server.identity));
    say(&carol, "std to smol server");
    hears(&dave, "carol", "std to smol server");
    say(&dave, "smol client back");
    hears(&carol, "dave", "smol client back");
    finish(server.server, vec![carol, dave]);
}

/// A TLS guest that floods the server with requests (`/who`, answered to
/// it alone) and reads nothing: the answers pile up in the hub, not in the
/// TLS layer, the hub drops it as a slow reader, and the others chat on
/// throughout.
#[test]
fn a_tls_guest_flooding_requests_without_reading_is_dropped_as_a_slow_reader() {
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
    let mut flood = TextOverTls::connect(addr, &tls.identity);
    flood.write(b"/name flood\r\n");
    flood.expect("* welcome to ferry, flood");
    flood
        .socket
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    // A bound, should the server never close it.
    let limit = 64 << 20;
    let flooder = thread::spawn(move || {
        let line = "/who\r\n".repeat(100);
        let mut sent = 0;
        while sent < limit {
            let n = flood.transport.write_plaintext(line.as_bytes()).unwrap();
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
    wait_for(tls.server.notices(), "the flood dropped", |n| {
        is_slow_reader(n).then_some(())
    });
    // Its socket is closed at the latest once its last bytes had their
    // time (the writer's linger): the flood's writes then fail.
    flooder.join().unwrap();
    say(&bob, "still here");
    hears(&alice, "bob", "still here");
    finish(tls.server, vec![alice, bob]);
}
