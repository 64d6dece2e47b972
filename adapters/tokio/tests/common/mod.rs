//! Helpers for the loopback tests: a server and clients on 127.0.0.1, and
//! bounded waits for what they report.

#![allow(dead_code)] // Each test binary uses its own subset.

use ferry_core::{ClientConfig, Event, HubConfig};
use ferry_files::{ClientHandle, ClientNotice, Inbox, ServerHandle};
use std::fmt::Debug;
use std::fs;
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// The longest any single expectation may take. Generous: CI machines are
/// slow, and a passing test never waits this long.
pub const WAIT: Duration = Duration::from_secs(20);

pub fn server(inbox: Option<&Path>) -> ServerHandle {
    server_with(HubConfig::default(), inbox)
}

pub fn server_with(config: HubConfig, inbox: Option<&Path>) -> ServerHandle {
    let inbox = inbox.map(|dir| Inbox::open(dir).unwrap());
    ferry_tokio::spawn_server("127.0.0.1:0".parse().unwrap(), config, inbox).unwrap()
}

/// A client named `name`, already welcomed.
pub fn client(server: &ServerHandle, name: &str, accept: Option<&Path>) -> ClientHandle {
    let accept = accept.map(|dir| Inbox::open(dir).unwrap());
    let handle = ferry_tokio::spawn_client(
        server.local_addr(),
        ClientConfig::new(name),
        accept,
        Duration::from_secs(5),
    )
    .unwrap();
    wait_for(handle.notices(), &format!("{name} welcomed"), |n| match n {
        ClientNotice::Event(Event::Welcomed { .. }) => Some(()),
        _ => None,
    });
    handle
}

/// Receives until `f` picks a notice, for at most [`WAIT`]; panics with
/// the last notices seen otherwise.
pub fn wait_for<N: Debug, T>(
    rx: &Receiver<N>,
    what: &str,
    mut f: impl FnMut(&N) -> Option<T>,
) -> T {
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

/// Waits for the notices to end (the loop's thread has finished).
pub fn wait_for_end<N: Debug>(rx: &Receiver<N>, what: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(_) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            Err(e) => panic!("waiting for the end of {what}: {e}"),
        }
    }
}

/// A chat message `text` from `from`, with its sequence number.
pub fn message_from(n: &ClientNotice, from: &str, text: &str) -> Option<u64> {
    match n {
        ClientNotice::Event(Event::Message {
            seq,
            from: f,
            text: t,
        }) if f == from && t == text => Some(*seq),
        _ => None,
    }
}

/// Shuts the server down and checks that it and every client end cleanly.
pub fn finish(server: ServerHandle, clients: Vec<ClientHandle>) {
    server.shutdown("test over");
    server.join().unwrap();
    for client in clients {
        wait_for_end(client.notices(), "a client");
        client.join().unwrap();
    }
}

pub fn contents(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| ((i / 7) as u8).wrapping_mul(31) ^ (i as u8).wrapping_add(seed))
        .collect()
}

/// The files stored in a receiving folder, sorted (not its folder of
/// partial files).
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name != ferry_files::PARTIALS_DIR)
        .collect();
    names.sort();
    names
}

/// The lengths of the partial files a receiving folder keeps.
pub fn partial_lengths(dir: &Path) -> Vec<u64> {
    let Ok(entries) = fs::read_dir(dir.join(ferry_files::PARTIALS_DIR)) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().metadata().unwrap().len())
        .collect()
}
