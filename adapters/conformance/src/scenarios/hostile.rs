//! A server facing peers that misbehave, driven by hand over plain
//! sockets: garbage, a last word sent with the hang-up, a client that
//! stops reading, a thousand clients at once.

use crate::fixtures::HandDriven;
use crate::wait::{
    finish, hears, hears_joined, hears_left, is_slow_reader, message_from, say, wait_for, WAIT,
};
use crate::Adapter;
use bytes::BytesMut;
use ferry_core::frame::{decode, Frame, PREAMBLE};
use ferry_core::{ClientConfig, Code, Event, HubConfig};
use ferry_files::{ClientNotice, ServerNotice};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Instant;

/// What a server answers to `bytes` on a new connection, read to the end
/// it must then make.
fn answer_to(addr: SocketAddr, bytes: &[u8], what: &str) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connecting to the server");
    stream.set_read_timeout(Some(WAIT)).expect("a read timeout");
    stream.write_all(bytes).expect("writing to the server");
    let mut answer = Vec::new();
    if let Err(e) = stream.read_to_end(&mut answer) {
        panic!("{what}: the server should answer and close the connection, but: {e}");
    }
    answer
}

/// The one ERROR frame after the preamble that `answer` must be.
fn error_frame(answer: &[u8], what: &str) -> Code {
    assert!(
        answer.starts_with(&PREAMBLE),
        "{what}: expected the preamble and an ERROR frame, saw {answer:?}"
    );
    let mut rest = BytesMut::from(&answer[PREAMBLE.len()..]);
    match decode(&mut rest, 1 << 20) {
        Ok(Some(Frame::Error { code, .. })) => {
            assert!(rest.is_empty(), "{what}: bytes after the ERROR: {rest:?}");
            code
        }
        other => panic!("{what}: expected an ERROR frame after the preamble, saw {other:?}"),
    }
}

/// An HTTP request is told in one line of text that this is no web
/// server; bytes that start like the preamble and then differ get the
/// preamble and an ERROR `NOT_FERRY`; a preamble followed by a frame of an
/// unknown type gets an ERROR `UNKNOWN_FRAME_TYPE`. Each is closed, the
/// server reports the first two as `NOT_FERRY`, and the room chats on.
pub fn garbage_is_answered_and_closed_while_the_room_chats_on(adapter: &Adapter) {
    let hub = adapter.serve(HubConfig::default(), None);
    let addr = hub.local_addr();
    let alice = adapter.join(addr, "alice", None);
    let bob = adapter.join(addr, "bob", None);

    let http = answer_to(
        addr,
        b"GET / HTTP/1.1\r\nHost: ferry\r\n\r\n",
        "an HTTP request",
    );
    assert_eq!(
        String::from_utf8_lossy(&http),
        "! closing: this is a ferry chat server, not a web server\r\n",
        "the answer to an HTTP request"
    );
    let code = wait_for(hub.notices(), "the HTTP client's end", |n| match n {
        ServerNotice::Disconnected { code, .. } => Some(*code),
        _ => None,
    });
    assert_eq!(
        code,
        Code::NOT_FERRY,
        "the server's code for the HTTP client"
    );

    let broken = answer_to(addr, b"\x89FERRIES\r\n", "a broken preamble");
    let code = error_frame(&broken, "a broken preamble");
    assert_eq!(code, Code::NOT_FERRY, "the ERROR for a broken preamble");
    let code = wait_for(hub.notices(), "the broken peer's end", |n| match n {
        ServerNotice::Disconnected { code, .. } => Some(*code),
        _ => None,
    });
    assert_eq!(
        code,
        Code::NOT_FERRY,
        "the server's code for the broken peer"
    );

    let unknown = answer_to(
        addr,
        b"\x89FERRY\r\n\x42\x00\x00\x00\x00",
        "a frame of unknown type",
    );
    let code = error_frame(&unknown, "a frame of unknown type");
    assert_eq!(
        code,
        Code::UNKNOWN_FRAME_TYPE,
        "the ERROR for a frame of unknown type"
    );

    say(&alice, "anyone there?");
    hears(&bob, "alice", "anyone there?");
    finish(hub, vec![alice, bob]);
}

/// A message and the end of the stream arriving together (one readiness
/// event for both): the message is heard and the leave announced. A server
/// that stops reading after a short read must not miss the end of stream
/// the same event already reported.
pub fn a_last_word_and_a_hang_up_together_are_both_heard(adapter: &Adapter) {
    let hub = adapter.serve(HubConfig::default(), None);
    let alice = adapter.join(hub.local_addr(), "alice", None);
    let mut bob = HandDriven::welcomed(hub.local_addr(), ClientConfig::new("bob"));
    hears_joined(&alice, "bob");
    bob.conn
        .say(Instant::now(), "bye for now")
        .expect("bob saying his last word");
    let mut last = Vec::new();
    while let Some(bytes) = bob.conn.poll_transmit() {
        last.extend_from_slice(&bytes);
    }
    bob.stream.write_all(&last).expect("bob's last word");
    bob.stream
        .shutdown(Shutdown::Write)
        .expect("bob hanging up");
    hears(&alice, "bob", "bye for now");
    hears_left(&alice, "bob");
    finish(hub, vec![alice]);
}

/// A client that joins and then never reads: alice talks far more than its
/// socket buffers and outgoing queue hold, in rounds bob keeps up with.
/// The server drops the reader as `SLOW_READER`, alice hears it leave for
/// that reason, and bob hears every round meanwhile.
pub fn a_client_that_stops_reading_is_dropped_and_holds_nobody_up(adapter: &Adapter) {
    let mut config = HubConfig::default();
    // Let alice talk as fast as she can: the point is the reader. Every
    // client is on 127.0.0.1, one source with one shared budget.
    config.flood_burst = 1_000_000;
    config.flood_per_second = 1_000_000;
    config.source_flood_burst = 1_000_000;
    config.source_flood_per_second = 1_000_000;
    config.connection.max_outgoing = 256 * 1024;
    let hub = adapter.serve(config, None);
    let alice = adapter.join(hub.local_addr(), "alice", None);
    let bob = adapter.join(hub.local_addr(), "bob", None);
    // Joins, then never reads again.
    let slow = HandDriven::welcomed(hub.local_addr(), ClientConfig::new("slow"));
    hears_joined(&alice, "slow");
    let text = "x".repeat(4000);
    let mut dropped = false;
    let mut slow_left = None;
    // 10 MB in all: far more than the kernel buffers and the queue.
    for round in 0..125 {
        for i in 0..20 {
            say(&alice, &format!("{round}.{i} {text}"));
        }
        let last = format!("{round}.19 {text}");
        hears(&bob, "alice", &last);
        // Alice takes her own echoes a round at a time too: on a loaded
        // machine her client could otherwise fall a few rounds behind and
        // be the slow reader herself (her queue holds 64 of these).
        wait_for(alice.notices(), "alice's own last line of the round", |n| {
            if let ClientNotice::Event(Event::Left { name, code, .. }) = n {
                if name == "slow" {
                    slow_left = Some(*code);
                }
            }
            message_from(n, "alice", &last)
        });
        dropped |= hub.notices().try_iter().any(|n| is_slow_reader(&n));
        if dropped {
            break;
        }
    }
    if !dropped {
        wait_for(
            hub.notices(),
            "the reader that stopped dropped as SLOW_READER",
            |n| is_slow_reader(n).then_some(()),
        );
    }
    let code = slow_left.unwrap_or_else(|| hears_left(&alice, "slow"));
    assert_eq!(
        code,
        Code::SLOW_READER,
        "the leave alice heard for the slow reader"
    );
    say(&bob, "still here");
    hears(&alice, "bob", "still here");
    drop(slow);
    finish(hub, vec![alice, bob]);
}

/// A thousand clients in ten rooms, in waves of a hundred that each say
/// HELLO before any reads the answer: each is welcomed, and an
/// announcement reaches every one of them.
pub fn a_thousand_clients_are_served_at_once(adapter: &Adapter) {
    // All of them come from 127.0.0.1: lift the per-source limits.
    let mut config = HubConfig::default();
    config.max_per_ip = 2_000;
    config.source_flood_burst = 1_000_000;
    config.source_flood_per_second = 1_000_000;
    let hub = adapter.serve(config, None);
    let mut users = Vec::new();
    // (All at once would overflow the kernel's accept backlog and test SYN
    // retransmits instead. Ten rooms keep JOINED frames to everyone from
    // taking the test's time.)
    for wave in 0..10 {
        let start = users.len();
        for i in 0..100 {
            let n = wave * 100 + i;
            let config = ClientConfig::new(format!("user{n}")).room(format!("room{}", n % 10));
            users.push(HandDriven::hello(hub.local_addr(), config));
        }
        for (i, user) in users[start..].iter_mut().enumerate() {
            user.read_until(&format!("user{}'s welcome", start + i), |e| {
                matches!(e, Event::Welcomed { .. })
            });
        }
    }
    hub.announce("hello, everyone");
    for (i, user) in users.iter_mut().enumerate() {
        user.read_until(&format!("the announcement to user{i}"), |e| {
            matches!(e, Event::Message { from, text, .. }
                if from.is_empty() && text == "hello, everyone")
        });
    }
    drop(users);
    finish(hub, Vec::new());
}
