//! TLS on the mio adapter: the tests every runtime passes
//! (`adapters/conformance/tls.rs`), and mio and std speaking TLS to each
//! other.

use ferry_mio::{self as runtime, spawn_client_tls, spawn_server_tls, ClientTls};

/// Whether `spawn_client` returns only once the server welcomed the client.
const CALL_WAITS_FOR_WELCOME: bool = true;

// `conformance/tls.rs` is a link to `adapters/conformance/tls.rs`, which
// `cargo package` follows: the packaged crate carries the tests.
include!("conformance/tls.rs");

/// A client of the std runtime named `name` at `addr`, already welcomed.
fn std_client(addr: SocketAddr, name: &str, tls: Option<ClientTls>) -> ClientHandle {
    let handle = ferry_std::spawn_client_tls(
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

#[test]
fn mio_and_std_speak_tls_to_each_other() {
    // A std TLS server: a mio TLS client chats with a std one through it.
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
    let addr = std_server.local_addr();
    let alice = client(addr, "alice", pinned(&identity));
    let bob = std_client(addr, "bob", pinned(&identity));
    say(&alice, "from mio to a std server");
    hears(&bob, "alice", "from mio to a std server");
    say(&bob, "from std back");
    hears(&alice, "bob", "from std back");
    finish(std_server, vec![alice, bob]);

    // The mio TLS server: a std TLS client chats with a mio one.
    let server = tls_server(HubConfig::default(), None);
    let addr = server.server.local_addr();
    let carol = std_client(addr, "carol", pinned(&server.identity));
    let dave = client(addr, "dave", pinned(&server.identity));
    say(&carol, "from std to a mio server");
    hears(&dave, "carol", "from std to a mio server");
    say(&dave, "from mio back");
    hears(&carol, "dave", "from mio back");
    finish(server.server, vec![carol, dave]);
}
