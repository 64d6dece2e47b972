//! What `spawn_client` promises: it returns only once the server welcomed
//! the client, so a refusal and a server that never answers are errors of
//! the call itself, saying why.

use crate::wait::{finish, hears, say};
use crate::Adapter;
use ferry_core::{ClientConfig, HubConfig};
use std::io;
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A second "alice" (in other letter case) is refused: `spawn_client_tls`
/// fails with `PermissionDenied` saying the name is taken, and the first
/// alice chats on.
pub fn a_taken_name_is_an_error_of_spawn_client(server: &Adapter, client: &Adapter) {
    let hub = server.serve(HubConfig::default(), None);
    let alice = client.join(hub.local_addr(), "alice", None);
    match client.connect(hub.local_addr(), ClientConfig::new("ALICE"), None, None) {
        Ok(_) => panic!(
            "spawn_client_tls returned Ok for a taken name: it must return only once \
             welcomed, and fail with the server's refusal"
        ),
        Err(e) => {
            assert_eq!(
                e.kind(),
                io::ErrorKind::PermissionDenied,
                "the refusal's error kind ({e})"
            );
            assert!(
                e.to_string().contains("name taken"),
                "the refusal's message should give the server's reason, \"name taken\": {e}"
            );
        }
    }
    say(&alice, "still me");
    hears(&alice, "alice", "still me");
    finish(hub, vec![alice]);
}

/// A server that accepts the connection and never says a word:
/// `spawn_client_tls` fails with `TimedOut` once its timeout has passed,
/// not before and not much later.
pub fn a_server_that_never_welcomes_is_a_timeout_of_spawn_client(adapter: &Adapter) {
    // The kernel accepts; nobody answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("a listener on 127.0.0.1");
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let result = (adapter.spawn_client_tls)(
        silent.local_addr().expect("the listener's address"),
        ClientConfig::new("alice"),
        None,
        timeout,
        None,
    );
    let took = started.elapsed();
    match result {
        Ok(_) => panic!(
            "spawn_client_tls returned Ok though the server never welcomed the client: it \
             must wait for the welcome and fail with TimedOut after {timeout:?}"
        ),
        Err(e) => assert_eq!(
            e.kind(),
            io::ErrorKind::TimedOut,
            "the error of a client never welcomed ({e})"
        ),
    }
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(5),
        "spawn_client_tls gave up after {took:?}, its timeout being {timeout:?}"
    );
}
