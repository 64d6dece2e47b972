//! The hub's access limits with a real hub and client connections in
//! memory: the per-address limit, the token, look-alike names.

use ferry_core::{ClientConfig, ClientId, Code, Connection, Event, Hub, HubConfig};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Runs the handshake of a client named `name` presenting `token` on
/// hub client `id`; returns the client's events.
fn hello(hub: &mut Hub, id: ClientId, now: Instant, name: &str, token: &[u8]) -> Vec<Event> {
    let mut client = Connection::client(ClientConfig::new(name).token(token.to_vec()), now);
    for _ in 0..4 {
        while let Some(bytes) = client.poll_transmit() {
            hub.handle_input(id, now, &bytes);
        }
        while let Some(bytes) = hub.poll_transmit(id) {
            client.handle_input(now, &bytes);
        }
    }
    std::iter::from_fn(|| client.poll_event()).collect()
}

fn closed_code(events: &[Event]) -> Option<(Code, String)> {
    events.iter().find_map(|e| match e {
        Event::Closed { code, reason, .. } => Some((*code, reason.clone())),
        _ => None,
    })
}

#[test]
fn per_address_limit_closes_the_extra_connection_and_frees_on_close() {
    let now = Instant::now();
    let mut config = HubConfig::default();
    config.max_per_ip = 2;
    let mut hub = Hub::new(config, now);
    let here: IpAddr = [10, 0, 0, 1].into();
    let there: IpAddr = [10, 0, 0, 2].into();
    let a = hub.connect_from(now, here);
    let b = hub.connect_from(now, here);
    let other = hub.connect_from(now, there);
    assert_eq!(hub.connections_from(here), 2);
    let extra = hub.connect_from(now, here);
    let events = hello(&mut hub, extra, now, "mallory", b"");
    let (code, reason) = closed_code(&events).expect("the extra connection is closed");
    assert_eq!(code, Code::SERVER_FULL);
    assert!(reason.contains("10.0.0.1"), "{reason}");
    assert_eq!(hub.connections_from(here), 2);
    // The others are unaffected and join normally.
    for (id, name) in [(a, "alice"), (b, "bob"), (other, "carol")] {
        let events = hello(&mut hub, id, now, name, b"");
        assert!(matches!(events[0], Event::Welcomed { .. }), "{events:?}");
    }
    // A closed connection frees its slot.
    hub.handle_eof(a, now + Duration::from_millis(1));
    assert_eq!(hub.connections_from(here), 1);
    let again = hub.connect_from(now, here);
    let events = hello(&mut hub, again, now, "dave", b"");
    assert!(matches!(events[0], Event::Welcomed { .. }), "{events:?}");
}

#[test]
fn an_ipv6_64_is_one_source_and_a_mapped_ipv4_is_its_address() {
    let now = Instant::now();
    let mut config = HubConfig::default();
    config.max_per_ip = 2;
    let mut hub = Hub::new(config, now);
    let first: IpAddr = "2001:db8:7:7::1".parse().unwrap();
    let second: IpAddr = "2001:db8:7:7:dead:beef::2".parse().unwrap();
    let third: IpAddr = "2001:db8:7:7:ffff::3".parse().unwrap();
    hub.connect_from(now, first);
    hub.connect_from(now, second);
    assert_eq!(hub.connections_from(third), 2);
    let extra = hub.connect_from(now, third);
    let events = hello(&mut hub, extra, now, "mallory", b"");
    let (code, reason) = closed_code(&events).expect("the third of one /64 is closed");
    assert_eq!(code, Code::SERVER_FULL);
    assert!(reason.contains("2001:db8:7:7::/64"), "{reason}");
    // Another /64 is another source.
    let elsewhere = hub.connect_from(now, "2001:db8:7:8::1".parse().unwrap());
    let events = hello(&mut hub, elsewhere, now, "alice", b"");
    assert!(matches!(events[0], Event::Welcomed { .. }), "{events:?}");
    // `::ffff:10.0.0.9` is 10.0.0.9, however the listener reports it.
    let v4: IpAddr = [10, 0, 0, 9].into();
    hub.connect_from(now, v4);
    hub.connect_from(now, "::ffff:10.0.0.9".parse().unwrap());
    assert_eq!(hub.connections_from(v4), 2);
    assert_eq!(
        hub.source_of(extra).unwrap().to_string(),
        "2001:db8:7:7::/64"
    );
}

#[test]
fn token_is_required_and_compared_whole() {
    let now = Instant::now();
    let mut config = HubConfig::default();
    config.token = Some(b"s3cret".to_vec());
    let mut hub = Hub::new(config, now);
    for wrong in [&b""[..], b"s3cre", b"s3cret!", b"S3cret", b"x"] {
        let id = hub.connect(now);
        let events = hello(&mut hub, id, now, "alice", wrong);
        let (code, reason) = closed_code(&events).expect("refused");
        assert_eq!(code, Code::AUTH_FAILED, "{wrong:?}");
        assert!(!reason.contains("s3cret"), "{reason}");
    }
    let id = hub.connect(now);
    let events = hello(&mut hub, id, now, "alice", b"s3cret");
    assert!(matches!(events[0], Event::Welcomed { .. }), "{events:?}");
}

#[test]
fn a_look_alike_name_is_refused_with_the_reason() {
    let now = Instant::now();
    let mut hub = Hub::new(HubConfig::default(), now);
    let bob = hub.connect(now);
    hello(&mut hub, bob, now, "bob", b"");
    let fake = hub.connect(now);
    // Cyrillic о in the middle.
    let events = hello(&mut hub, fake, now, "b\u{43e}b", b"");
    let (code, reason) = closed_code(&events).expect("refused");
    assert_eq!(code, Code::NAME_TAKEN);
    assert!(reason.contains("looks like \"bob\""), "{reason}");
    assert_eq!(hub.members("lobby"), vec!["bob"]);
}

/// A client that sends PINGs and never reads its PONGs: its answers count
/// against `max_outgoing` like what the room sends it, and past that it is
/// dropped as a slow reader, instead of the hub queueing answers without
/// end. Someone who reads is not affected.
#[test]
fn answers_a_client_never_reads_are_bounded_like_the_rooms_messages() {
    let now = Instant::now();
    let mut hub = Hub::new(HubConfig::default(), now);
    let pinger = hub.connect(now);
    let events = hello(&mut hub, pinger, now, "pinger", b"");
    assert!(matches!(events[0], Event::Welcomed { .. }), "{events:?}");
    let mut pings = bytes::BytesMut::new();
    for nonce in 0..5000 {
        ferry_core::frame::Frame::Ping { nonce }
            .encode(&mut pings)
            .unwrap();
    }
    let limit = HubConfig::default().connection.max_outgoing;
    // Each round's PONGs take as many bytes as its PINGs: the limit is
    // passed within limit / 65,000 + 1 rounds, and the hub must say so.
    let mut closed = None;
    for _ in 0..limit / pings.len() + 2 {
        hub.handle_input(pinger, now, &pings);
        while let Some(event) = hub.poll_event() {
            if let ferry_core::HubEvent::Closed { client, code, .. } = event {
                if client == pinger {
                    closed = Some(code);
                }
            }
        }
        if closed.is_some() {
            break;
        }
    }
    assert_eq!(closed, Some(Code::SLOW_READER));
    // A reader of its answers is never dropped.
    let reader = hub.connect(now);
    let mut client = Connection::client(ClientConfig::new("reader"), now);
    for round in 0..(limit / pings.len() + 2) * 2 {
        while let Some(bytes) = client.poll_transmit() {
            hub.handle_input(reader, now, &bytes);
        }
        if round > 4 {
            hub.handle_input(reader, now, &pings);
        }
        while let Some(bytes) = hub.poll_transmit(reader) {
            client.handle_input(now, &bytes);
        }
    }
    let events: Vec<Event> = std::iter::from_fn(|| client.poll_event()).collect();
    assert!(closed_code(&events).is_none(), "{:?}", closed_code(&events));
    assert!(matches!(events[0], Event::Welcomed { .. }), "{events:?}");
    assert!(client.is_open());
}
