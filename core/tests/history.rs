//! Room history (`HISTORY`, PROTOCOL.md §4.31 and §6.3) through a real hub
//! on its own: a newcomer gets the room's last messages first, oldest
//! first and stamped with their time, within its outgoing queue, and the
//! hub holds no more than it is allowed.

use ferry_core::{ClientConfig, ClientId, Connection, Event, Hub, HubConfig};
use std::time::{Duration, Instant};

/// 2025-12-02T00:00:00Z.
const EPOCH_MS: u64 = 1_764_633_600_000;

fn hub(now: Instant, config: HubConfig) -> Hub {
    let mut hub = Hub::new(config, now);
    hub.set_unix_time(now, EPOCH_MS);
    hub
}

/// Moves bytes both ways until neither side has any; returns the client's
/// events.
fn pump(hub: &mut Hub, id: ClientId, client: &mut Connection, now: Instant) -> Vec<Event> {
    for _ in 0..64 {
        let mut moved = false;
        while let Some(bytes) = client.poll_transmit() {
            hub.handle_input(id, now, &bytes);
            moved = true;
        }
        while let Some(bytes) = hub.poll_transmit(id) {
            client.handle_input(now, &bytes);
            moved = true;
        }
        if !moved {
            break;
        }
    }
    std::iter::from_fn(|| client.poll_event()).collect()
}

fn join(hub: &mut Hub, now: Instant, name: &str) -> (ClientId, Connection, Vec<Event>) {
    let id = hub.connect(now);
    let mut conn = Connection::client(ClientConfig::new(name), now);
    let events = pump(hub, id, &mut conn, now);
    (id, conn, events)
}

fn say(hub: &mut Hub, id: ClientId, conn: &mut Connection, now: Instant, text: &str) {
    conn.say(now, text).unwrap();
    pump(hub, id, conn, now);
}

/// The history a newcomer got: (time, from, text), in order.
fn history(events: &[Event]) -> Vec<(u64, String, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::History {
                time_ms,
                from,
                text,
            } => Some((*time_ms, from.to_string(), text.to_string())),
            _ => None,
        })
        .collect()
}

fn position(events: &[Event], what: impl Fn(&Event) -> bool) -> usize {
    events.iter().position(what).expect("the event is there")
}

#[test]
fn a_newcomer_gets_the_last_messages_first_oldest_first_with_their_time() {
    let start = Instant::now();
    let mut hub = hub(start, HubConfig::default().history(3));
    let (alice, mut alice_conn, _) = join(&mut hub, start, "alice");
    for (i, text) in ["one", "two", "three"].into_iter().enumerate() {
        let at = start + Duration::from_secs(i as u64);
        say(&mut hub, alice, &mut alice_conn, at, text);
    }
    let later = start + Duration::from_secs(10);
    hub.announce(later, "", "the server says hi").unwrap();
    let (_, _, events) = join(&mut hub, later + Duration::from_secs(1), "bob");
    assert_eq!(
        history(&events),
        [
            (EPOCH_MS + 1000, "alice".into(), "two".into()),
            (EPOCH_MS + 2000, "alice".into(), "three".into()),
            (
                EPOCH_MS + 10_000,
                String::new(),
                "the server says hi".into()
            ),
        ]
    );
    // After the welcome, before MEMBERS and the newcomer's own JOINED.
    let welcome = position(&events, |e| matches!(e, Event::Welcomed { .. }));
    let first = position(&events, |e| matches!(e, Event::History { .. }));
    let members = position(&events, |e| matches!(e, Event::Members { .. }));
    assert!(welcome < first && first < members, "{events:?}");
    // History is not live: nothing was said since bob joined.
    assert!(!events.iter().any(|e| matches!(e, Event::Message { .. })));
}

#[test]
fn history_outlives_an_empty_room_and_is_off_by_default() {
    let now = Instant::now();
    let mut hub = hub(now, HubConfig::default().history(10));
    let (alice, mut conn, _) = join(&mut hub, now, "alice");
    say(&mut hub, alice, &mut conn, now, "anyone?");
    hub.remove(alice, now);
    let (_, _, events) = join(&mut hub, now, "bob");
    assert_eq!(
        history(&events),
        [(EPOCH_MS, "alice".into(), "anyone?".into())]
    );

    let mut off = self::hub(now, HubConfig::default());
    let (alice, mut conn, _) = join(&mut off, now, "alice");
    say(&mut off, alice, &mut conn, now, "hello");
    let (_, _, events) = join(&mut off, now, "bob");
    assert!(history(&events).is_empty());
    assert_eq!(off.history_bytes(), 0);
}

#[test]
fn a_newcomer_gets_only_the_newest_that_fit_a_quarter_of_its_queue() {
    let now = Instant::now();
    let mut config = HubConfig::default().history(1000).flood_burst(10_000);
    config.source_flood_burst = 10_000;
    config.connection.max_outgoing = 64 * 1024;
    let mut hub = hub(now, config);
    let (alice, mut conn, _) = join(&mut hub, now, "alice");
    let text = "x".repeat(4000);
    for i in 0..40 {
        say(&mut hub, alice, &mut conn, now, &format!("{i:02}{text}"));
    }
    let (_, _, events) = join(&mut hub, now, "bob");
    let got = history(&events);
    // 16 KiB at 4,071 bytes an entry (4,007 of text, 64 counted beside):
    // the last four.
    let firsts: Vec<&str> = got.iter().map(|(_, _, t)| &t[..2]).collect();
    assert_eq!(firsts, ["36", "37", "38", "39"]);
    assert!(
        !events.iter().any(|e| matches!(e, Event::Closed { .. })),
        "history never makes a newcomer a slow reader"
    );
}

#[test]
fn the_hub_holds_at_most_its_history_bytes_dropping_the_oldest_of_any_room() {
    let now = Instant::now();
    let mut config = HubConfig::default()
        .history(100)
        .max_history_bytes(10 * 1024)
        .flood_burst(10_000);
    config.source_flood_burst = 10_000;
    let mut hub = hub(now, config);
    let mut clients = Vec::new();
    for (name, room) in [("alice", "one"), ("bob", "two")] {
        let id = hub.connect(now);
        let mut conn = Connection::client(ClientConfig::new(name).room(room), now);
        pump(&mut hub, id, &mut conn, now);
        clients.push((id, conn));
    }
    for i in 0..20 {
        for (id, conn) in &mut clients {
            say(
                &mut hub,
                *id,
                conn,
                now,
                &format!("{i:02}{}", "y".repeat(500)),
            );
        }
    }
    assert!(hub.history_bytes() <= 10 * 1024, "{}", hub.history_bytes());
    assert!(hub.history_bytes() > 8 * 1024, "{}", hub.history_bytes());
    let id = hub.connect(now);
    let mut conn = Connection::client(ClientConfig::new("carol").room("one"), now);
    let events = pump(&mut hub, id, &mut conn, now);
    let got = history(&events);
    // Both rooms share the bytes: each keeps its newest ones.
    assert!(got.len() >= 8 && got.len() <= 10, "{}", got.len());
    assert_eq!(&got.last().unwrap().2[..2], "19");
}
