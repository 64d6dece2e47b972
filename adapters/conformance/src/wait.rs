//! Bounded waits for what servers and clients report, and the small steps
//! every scenario takes (say, hear, finish). A wait that runs out panics
//! with what it waited for and the last notices it saw instead.

use ferry_core::transfer::Outcome;
use ferry_core::{Code, Event};
use ferry_files::{ClientCommand, ClientHandle, ClientNotice, Report, ServerHandle, ServerNotice};
use std::fmt::Debug;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The longest any single expectation may take. Generous, for loaded
/// machines; a passing scenario never waits this long.
pub const WAIT: Duration = Duration::from_secs(20);

/// How many of the notices passed over a failed wait shows.
const SHOWN: usize = 10;

/// Receives from `notices` until `pick` accepts one, for at most [`WAIT`].
///
/// # Panics
///
/// When the time runs out or the notices end first: the message says what
/// was awaited (`what`) and shows the last notices seen meanwhile.
pub fn wait_for<N: Debug, T>(
    notices: &Receiver<N>,
    what: &str,
    mut pick: impl FnMut(&N) -> Option<T>,
) -> T {
    let deadline = Instant::now() + WAIT;
    let mut recent = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match notices.recv_timeout(left) {
            Ok(notice) => {
                if let Some(found) = pick(&notice) {
                    return found;
                }
                if recent.len() == SHOWN {
                    recent.remove(0);
                }
                recent.push(notice);
            }
            Err(RecvTimeoutError::Timeout) => {
                panic!("waited {WAIT:?} for {what}; the last notices instead: {recent:#?}")
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("the notices ended before {what}; the last ones: {recent:#?}")
            }
        }
    }
}

/// Waits for `notices` to end, which they do once the loop that sent them
/// finished.
///
/// # Panics
///
/// If they still go on after [`WAIT`].
pub fn wait_for_end<N: Debug>(notices: &Receiver<N>, what: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match notices.recv_timeout(left) {
            Ok(_) => {}
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {
                panic!("{what} still running {WAIT:?} after it should have ended")
            }
        }
    }
}

/// Says `text` to the client's room.
pub fn say(client: &ClientHandle, text: &str) {
    client.send(ClientCommand::Say(text.into()));
}

/// Waits until `client` hears `text` from `from` in its room; returns the
/// message's room sequence number.
pub fn hears(client: &ClientHandle, from: &str, text: &str) -> u64 {
    wait_for(
        client.notices(),
        &format!("the message {from}: {text:?}"),
        |n| message_from(n, from, text),
    )
}

/// The next room message `client` hears: its sequence, sender and text.
pub fn next_message(client: &ClientHandle, what: &str) -> (u64, String, String) {
    wait_for(client.notices(), what, |n| match n {
        ClientNotice::Event(Event::Message { seq, from, text }) => {
            Some((*seq, from.to_string(), text.to_string()))
        }
        _ => None,
    })
}

/// The room sequence number of `notice` if it is `text` from `from`.
pub fn message_from(notice: &ClientNotice, from: &str, text: &str) -> Option<u64> {
    match notice {
        ClientNotice::Event(Event::Message {
            seq,
            from: f,
            text: t,
        }) if f == from && t == text => Some(*seq),
        _ => None,
    }
}

/// Waits until `client` hears that `name` joined its room.
pub fn hears_joined(client: &ClientHandle, name: &str) {
    wait_for(client.notices(), &format!("{name} joining"), |n| match n {
        ClientNotice::Event(Event::Joined { name: joined, .. }) if joined == name => Some(()),
        _ => None,
    });
}

/// Waits until `client` hears that `name` left its room; returns why.
pub fn hears_left(client: &ClientHandle, name: &str) -> Code {
    wait_for(client.notices(), &format!("{name} leaving"), |n| match n {
        ClientNotice::Event(Event::Left {
            name: left, code, ..
        }) if left == name => Some(*code),
        _ => None,
    })
}

/// Waits for the end of a transfer of `client`'s and returns how it
/// ended; an error notice meanwhile fails the wait.
pub fn transfer_outcome(client: &ClientHandle, what: &str) -> Outcome {
    wait_for(client.notices(), what, |n| match n {
        ClientNotice::File(Report::Finished { outcome, .. }) => Some(outcome.clone()),
        ClientNotice::Error(e) => panic!("{what}: the client reported an error instead: {e}"),
        _ => None,
    })
}

/// The reason of the next disconnection the server reports.
pub fn disconnected(server: &ServerHandle) -> String {
    wait_for(
        server.notices(),
        "the server reporting a disconnection",
        |n| match n {
            ServerNotice::Disconnected { reason, .. } => Some(reason.clone()),
            _ => None,
        },
    )
}

/// Whether `notice` is a connection dropped for not reading.
pub fn is_slow_reader(notice: &ServerNotice) -> bool {
    matches!(
        notice,
        ServerNotice::Disconnected {
            code: Code::SLOW_READER,
            ..
        }
    )
}

/// Shuts the server down and checks that it and every client end cleanly:
/// the server's `join` returns `Ok`, each client's notices end and its
/// `join` returns `Ok`.
///
/// # Panics
///
/// If the server's thread ends with an error, or a client goes on.
pub fn finish(server: ServerHandle, clients: Vec<ClientHandle>) {
    server.shutdown("test over");
    if let Err(e) = server.join() {
        panic!("the server's join after shutdown: expected Ok, saw {e}");
    }
    for client in clients {
        wait_for_end(client.notices(), "a client after the server's shutdown");
        // A shutdown by the server is the end of a session, no failure.
        if let Err(e) = client.join() {
            panic!("a client's join after the server's shutdown: expected Ok, saw {e}");
        }
    }
}
