//! Chat in a room: messages with one sequence, direct messages, arrivals
//! and departures, announcements and the server's shutdown.

use crate::wait::{
    finish, hears, hears_joined, hears_left, message_from, next_message, say, wait_for,
    wait_for_end,
};
use crate::Adapter;
use ferry_core::{Code, Event, HubConfig, Text};
use ferry_files::{ClientCommand, ClientNotice, ServerNotice};

/// Three clients in a room each say something: every one of them hears
/// all three messages, in the same order, with the same room sequence
/// numbers, one apart.
pub fn a_room_of_three_hears_every_message_with_one_sequence(server: &Adapter, client: &Adapter) {
    let hub = server.serve(HubConfig::default(), None);
    let names = ["alice", "bob", "carol"];
    let clients: Vec<_> = names
        .iter()
        .map(|name| client.join(hub.local_addr(), name, None))
        .collect();
    // Talk only once carol is in everyone's room.
    for c in &clients[..2] {
        hears_joined(c, "carol");
    }
    for (name, c) in names.iter().zip(&clients) {
        say(c, &format!("hello from {name}"));
    }
    let heard: Vec<Vec<(u64, String, String)>> = names
        .iter()
        .zip(&clients)
        .map(|(name, c)| {
            (0..names.len())
                .map(|i| next_message(c, &format!("message {} of 3 to {name}", i + 1)))
                .collect()
        })
        .collect();
    for (name, seen) in names.iter().zip(&heard).skip(1) {
        assert_eq!(
            seen, &heard[0],
            "{name} heard the room differently from alice (sequence, sender, text)"
        );
    }
    let seqs: Vec<u64> = heard[0].iter().map(|m| m.0).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "room sequence numbers: expected consecutive, saw {seqs:?}"
    );
    for name in names {
        let text = format!("hello from {name}");
        assert!(
            heard[0].iter().any(|m| m.1 == name && m.2 == text),
            "{text:?} from {name} is missing from {:?}",
            heard[0]
        );
    }
    finish(hub, clients);
}

/// A direct message (its recipient named in other letter case) reaches its
/// recipient and nobody else; one to an absent user bounces with
/// `NO_SUCH_USER`.
pub fn a_direct_message_reaches_only_its_recipient(server: &Adapter, client: &Adapter) {
    let hub = server.serve(HubConfig::default(), None);
    let addr = hub.local_addr();
    let alice = client.join(addr, "alice", None);
    let bob = client.join(addr, "bob", None);
    let carol = client.join(addr, "carol", None);
    hears_joined(&alice, "carol");
    alice.send(ClientCommand::Direct {
        to: "BOB".into(),
        text: "psst".into(),
    });
    // Said after the direct message: once carol hears it, she would have
    // had the direct message too.
    say(&alice, "after");
    let direct = wait_for(bob.notices(), "bob's direct message", |n| match n {
        ClientNotice::Event(Event::Direct { from, text }) => Some((from.clone(), text.clone())),
        _ => None,
    });
    assert_eq!(
        direct,
        (Text::from("alice"), Text::from("psst")),
        "bob's direct message (from, text)"
    );
    wait_for(
        carol.notices(),
        "alice's room message after the direct one",
        |n| {
            assert!(
                !matches!(n, ClientNotice::Event(Event::Direct { .. })),
                "carol got a direct message meant for bob: {n:?}"
            );
            message_from(n, "alice", "after")
        },
    );
    alice.send(ClientCommand::Direct {
        to: "nobody".into(),
        text: "hello?".into(),
    });
    let code = wait_for(
        alice.notices(),
        "the bounce of a direct message to nobody",
        |n| match n {
            ClientNotice::Event(Event::Bounced { code, .. }) => Some(*code),
            _ => None,
        },
    );
    assert_eq!(code, Code::NO_SUCH_USER, "the bounce's code");
    finish(hub, vec![alice, bob, carol]);
}

/// Bob joins alice's room and leaves with `BYE`: alice hears both (and
/// both names when she asks who is there), bob's connection closes with
/// `QUIT` and his notices end, and the server reports his join, his leave
/// with `QUIT` and his disconnection.
pub fn joins_and_leaves_are_announced(server: &Adapter, client: &Adapter) {
    let hub = server.serve(HubConfig::default(), None);
    let alice = client.join(hub.local_addr(), "alice", None);
    let bob = client.join(hub.local_addr(), "bob", None);
    hears_joined(&alice, "bob");
    alice.send(ClientCommand::Who);
    let names = wait_for(alice.notices(), "the answer to who", |n| match n {
        ClientNotice::Event(Event::Members { names }) => Some(names.clone()),
        _ => None,
    });
    assert_eq!(
        names,
        [Text::from("alice"), Text::from("bob")],
        "the members alice was told of"
    );
    bob.send(ClientCommand::Bye);
    assert_eq!(hears_left(&alice, "bob"), Code::QUIT, "bob's leave code");
    wait_for(bob.notices(), "bob's own close after BYE", |n| match n {
        ClientNotice::Event(Event::Closed { code, by_peer, .. }) => {
            assert_eq!(
                (*code, *by_peer),
                (Code::QUIT, false),
                "bob's close (code, by the server)"
            );
            Some(())
        }
        _ => None,
    });
    wait_for_end(bob.notices(), "bob's client after BYE");
    if let Err(e) = bob.join() {
        panic!("bob's join after BYE: expected Ok, saw {e}");
    }
    let bob_id = wait_for(
        hub.notices(),
        "the server reporting bob's join",
        |n| match n {
            ServerNotice::Joined { client, name, .. } if name == "bob" => Some(*client),
            _ => None,
        },
    );
    let code = wait_for(
        hub.notices(),
        "the server reporting bob's leave",
        |n| match n {
            ServerNotice::Left { client, code, .. } if *client == bob_id => Some(*code),
            _ => None,
        },
    );
    assert_eq!(code, Code::QUIT, "the server's leave code for bob");
    wait_for(
        hub.notices(),
        "the server reporting bob's disconnection",
        |n| match n {
            ServerNotice::Disconnected { client, .. } if *client == bob_id => Some(()),
            _ => None,
        },
    );
    finish(hub, vec![alice]);
}

/// The operator's announcement reaches every client as a message from no
/// one; the shutdown closes every client with `SHUTDOWN`, after which its
/// notices end.
pub fn a_shutdown_tells_every_client(server: &Adapter, client: &Adapter) {
    let hub = server.serve(HubConfig::default(), None);
    let alice = client.join(hub.local_addr(), "alice", None);
    let bob = client.join(hub.local_addr(), "bob", None);
    hub.announce("closing soon");
    for c in [&alice, &bob] {
        hears(c, "", "closing soon");
    }
    hub.shutdown("maintenance");
    if let Err(e) = hub.join() {
        panic!("the server's join after shutdown: expected Ok, saw {e}");
    }
    for (name, c) in [("alice", alice), ("bob", bob)] {
        let code = wait_for(c.notices(), &format!("{name}'s close"), |n| match n {
            ClientNotice::Event(Event::Closed { code, .. }) => Some(*code),
            _ => None,
        });
        assert_eq!(code, Code::SHUTDOWN, "{name}'s close code");
        wait_for_end(c.notices(), &format!("{name}'s client after the shutdown"));
    }
}
