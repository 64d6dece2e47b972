//! One hub call does a bounded amount of work: a whole room leaving at once
//! (its members timed out together, or dropped for the server's memory)
//! costs the square of the room's size, and a driver's loop must not be
//! held by it. The hub handles part, asks through `poll_timeout` to be
//! called again at once, and loses nothing on the way.

use ferry_core::{ClientConfig, ClientId, Connection, Event, Hub, HubConfig, HubEvent};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

/// Members who time out together: their leaves cost about 800^2 / 2
/// deliveries, several calls' worth.
const MEMBERS: usize = 800;

fn join(hub: &mut Hub, now: Instant, ip: IpAddr, name: &str) -> (ClientId, Connection) {
    let id = hub.connect_from(now, ip);
    let mut client = Connection::client(ClientConfig::new(name), now);
    for _ in 0..4 {
        while let Some(bytes) = client.poll_transmit() {
            hub.handle_input(id, now, &bytes);
        }
        while let Some(bytes) = hub.poll_transmit(id) {
            client.handle_input(now, &bytes);
        }
    }
    (id, client)
}

/// Moves what the hub holds for `id` into `client`; the names it heard
/// leave, with how often each.
fn heard_leave(
    hub: &mut Hub,
    id: ClientId,
    client: &mut Connection,
    now: Instant,
    left: &mut BTreeMap<String, usize>,
) {
    while let Some(bytes) = hub.poll_transmit(id) {
        client.handle_input(now, &bytes);
    }
    while let Some(event) = client.poll_event() {
        if let Event::Left { name, .. } = event {
            *left.entry(name.to_string()).or_default() += 1;
        }
    }
}

/// Adds the clients the hub reports closed to `closed`.
fn reported_closed(hub: &mut Hub, closed: &mut Vec<ClientId>) {
    while let Some(event) = hub.poll_event() {
        if let HubEvent::Closed { client, .. } = event {
            closed.push(client);
        }
    }
}

#[test]
fn a_room_timing_out_at_once_is_handled_over_several_calls_and_every_leave_is_told() {
    let start = Instant::now();
    let config = HubConfig::default();
    let idle = config.connection.idle_timeout;
    let mut hub = Hub::new(config, start);
    let (watcher, mut watcher_client) = join(&mut hub, start, [10, 0, 0, 1].into(), "watcher");
    // Each from an address of its own: one address may join only so often.
    let members: Vec<ClientId> = (0..MEMBERS)
        .map(|n| {
            let [_, _, high, low] = u32::try_from(n).unwrap().to_be_bytes();
            let ip: IpAddr = [10, 1, high, low].into();
            join(&mut hub, start, ip, &format!("member{n}")).0
        })
        .collect();
    let mut left = BTreeMap::new();
    heard_leave(&mut hub, watcher, &mut watcher_client, start, &mut left);
    assert!(left.is_empty());

    // The watcher stays alive past the members' idle deadline.
    let later = start + idle / 2;
    watcher_client.ping(later);
    while let Some(bytes) = watcher_client.poll_transmit() {
        hub.handle_input(watcher, later, &bytes);
    }

    let due = start + idle;
    assert!(hub.poll_timeout().is_some_and(|at| at <= due));
    hub.handle_timeout(due);
    let mut closed = Vec::new();
    reported_closed(&mut hub, &mut closed);
    heard_leave(&mut hub, watcher, &mut watcher_client, due, &mut left);
    // One call handled part of the room and asks for another at once.
    assert!(
        !left.is_empty() && left.len() < MEMBERS / 2,
        "{} of {MEMBERS} leaves in one call",
        left.len()
    );
    assert!(
        hub.poll_timeout().is_some_and(|at| at <= due),
        "work left, but the next call is asked for at {:?}",
        hub.poll_timeout()
            .map(|at| at.saturating_duration_since(due))
    );

    // A driver that learns of a socket's end on its own removes that
    // client before the hub reported it closed: its leave is told anyway.
    let early = *members.last().unwrap();
    hub.remove(early, due);
    assert!(hub.poll_timeout().is_some_and(|at| at <= due));

    let mut calls = 1;
    while hub.poll_timeout().is_some_and(|at| at <= due) {
        calls += 1;
        assert!(calls <= MEMBERS, "the backlog never ends");
        hub.handle_timeout(due);
        reported_closed(&mut hub, &mut closed);
        heard_leave(&mut hub, watcher, &mut watcher_client, due, &mut left);
    }
    assert_eq!(closed.len(), MEMBERS, "every member's close is reported");
    for id in closed {
        hub.remove(id, due);
    }
    assert_eq!(left.len(), MEMBERS, "every member's leave is told");
    assert!(left.values().all(|&n| n == 1), "a leave told twice");
    assert!(hub.poll_timeout().is_some_and(|at| at > due));
    assert!(watcher_client.is_open());
    assert_eq!(hub.client_count(), 1);
}
