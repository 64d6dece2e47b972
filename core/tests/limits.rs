//! The hub's access limits with a real hub and client connections in
//! memory: the per-address limit, the token, look-alike names.

use ferry_core::{ClientConfig, ClientId, Code, Connection, Event, Hub, HubConfig};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Runs the handshake of a client named `name` presenting `token` on
/// hub client `id`; returns the client's events.
fn hello(hub: &mut Hub, id: ClientId, now: Instant, name: &str, token: &[u8]) -> Vec<Event> {
    let mut client = Connection::client(ClientConfig::new(name).token(token.to_vec()), now);
    pump(hub, id, &mut client, now)
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
    let mut config = HubConfig::default();
    // The frame budget would stop this flood first (core/tests/costs.rs);
    // lifted, the queue's own bound still holds.
    config.connection.frame_burst = u32::MAX;
    let mut hub = Hub::new(config, now);
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

/// Drains what the hub sends `id` into `client`; returns the client's events.
fn pump(hub: &mut Hub, id: ClientId, client: &mut Connection, now: Instant) -> Vec<Event> {
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

/// Connects `name` from `ip` and runs its handshake.
fn join_from(
    hub: &mut Hub,
    ip: IpAddr,
    now: Instant,
    name: &str,
) -> (ClientId, Connection, Vec<Event>) {
    let id = hub.connect_from(now, ip);
    let mut client = Connection::client(ClientConfig::new(name), now);
    let events = pump(hub, id, &mut client, now);
    (id, client, events)
}

/// A flooder that reconnects gets a fresh per-connection bucket each time,
/// but not a fresh source budget: what reaches the room is bounded by the
/// source's burst and rate, however often it reconnects.
#[test]
fn a_reconnecting_flooder_delivers_no_more_than_its_source_budget() {
    let start = Instant::now();
    let config = HubConfig::default();
    let (burst, rate) = (config.source_flood_burst, config.source_flood_per_second);
    let mut hub = Hub::new(config, start);
    let (alice, mut alice_client, events) =
        join_from(&mut hub, [10, 0, 0, 2].into(), start, "alice");
    assert!(matches!(events[0], Event::Welcomed { .. }));
    let flooder: IpAddr = [10, 0, 0, 66].into();
    let mut now = start;
    let mut heard = 0;
    let mut refused_joins = 0;
    // Four seconds of reconnecting every 20 ms, 20 messages each time.
    for round in 0..200 {
        now += Duration::from_millis(20);
        let (id, mut client, events) = join_from(&mut hub, flooder, now, &format!("f{round}"));
        if !matches!(events.first(), Some(Event::Welcomed { .. })) {
            refused_joins += 1;
            let (code, _) = closed_code(&events).expect("refused");
            assert_eq!(code, Code::FLOODING, "{events:?}");
            hub.remove(id, now);
            continue;
        }
        for n in 0..20 {
            client.say(now, &format!("spam {n}")).unwrap();
        }
        pump(&mut hub, id, &mut client, now);
        client.bye(now);
        pump(&mut hub, id, &mut client, now);
        hub.remove(id, now);
        heard += pump(&mut hub, alice, &mut alice_client, now)
            .iter()
            .filter(|e| matches!(e, Event::Message { .. }))
            .count();
    }
    let elapsed = (now - start).as_secs_f64();
    let allowed = f64::from(burst) + f64::from(rate) * elapsed;
    // Joins spend the same budget as messages.
    assert!(
        heard as f64 <= allowed,
        "{heard} messages in {elapsed} s; the source allows {allowed}"
    );
    assert!(heard > 0, "some get through: it is a rate, not a ban");
    assert!(refused_joins > 0, "joins are priced too");
    assert!(hub.sources_remembered() >= 2);
    // Once the flooder stops, its record is forgotten when its budget is
    // full again: nothing is kept per address forever.
    hub.handle_timeout(now + Duration::from_secs(10));
    assert_eq!(hub.sources_remembered(), 1, "only alice's source is left");
}

/// Wrong tokens are answered later and later, then the source is banned,
/// even for the right token, until the ban ends.
#[test]
fn a_token_guesser_is_slowed_then_banned() {
    let start = Instant::now();
    let mut config = HubConfig::default();
    config.token = Some(b"s3cret".to_vec());
    let (ban_after, ban) = (config.auth_failures_before_ban, config.auth_ban);
    let mut hub = Hub::new(config, start);
    let guesser: IpAddr = [10, 0, 0, 99].into();
    let mut now = start;
    let mut delays = Vec::new();
    for guess in 0..ban_after {
        let id = hub.connect_from(now, guesser);
        let token = format!("guess{guess}");
        let mut client = Connection::client(ClientConfig::new("m").token(token.into_bytes()), now);
        assert!(
            pump(&mut hub, id, &mut client, now).is_empty(),
            "not answered at once"
        );
        let asked = now;
        let answered = loop {
            now = hub.poll_timeout().expect("a refusal is due");
            hub.handle_timeout(now);
            let events = pump(&mut hub, id, &mut client, now);
            if let Some((code, _)) = closed_code(&events) {
                assert_eq!(code, Code::AUTH_FAILED);
                break now;
            }
        };
        delays.push((answered - asked).as_millis());
        hub.remove(id, now);
    }
    // 250 ms, doubling, at most 4 s.
    assert_eq!(
        delays,
        [250, 500, 1000, 2000, 4000, 4000, 4000, 4000, 4000, 4000],
        "{delays:?}"
    );
    let banned = std::iter::from_fn(|| hub.poll_event())
        .find(|e| matches!(e, ferry_core::HubEvent::SourceBanned { .. }));
    assert!(banned.is_some(), "one event says the source is banned");
    // Banned: turned away at connect, the right token included.
    let id = hub.connect_from(now, guesser);
    let events = hello(&mut hub, id, now, "m", b"s3cret");
    let (code, reason) = closed_code(&events).expect("banned");
    assert_eq!(code, Code::AUTH_FAILED);
    assert!(reason.contains("try again in"), "{reason}");
    // Someone else is not affected; the guesser is let in after the ban.
    let id = hub.connect_from(now, [10, 0, 0, 1].into());
    let events = hello(&mut hub, id, now, "alice", b"s3cret");
    assert!(matches!(events[0], Event::Welcomed { .. }), "{events:?}");
    let later = now + ban;
    hub.handle_timeout(later);
    let id = hub.connect_from(later, guesser);
    let events = hello(&mut hub, id, later, "m", b"s3cret");
    assert!(matches!(events[0], Event::Welcomed { .. }), "{events:?}");
}

#[test]
fn a_full_room_refuses_the_next_member_and_the_limit_must_fit_a_frame() {
    let now = Instant::now();
    let mut config = HubConfig::default();
    config.max_room_members = 3;
    assert!(config.check().is_ok());
    let mut hub = Hub::new(config, now);
    for name in ["a", "b", "c"] {
        let id = hub.connect(now);
        let events = hello(&mut hub, id, now, name, b"");
        assert!(matches!(events[0], Event::Welcomed { .. }), "{events:?}");
    }
    let id = hub.connect(now);
    let (code, reason) = closed_code(&hello(&mut hub, id, now, "d", b"")).expect("full");
    assert_eq!(code, Code::SERVER_FULL);
    assert!(reason.contains("room is full"), "{reason}");
    // Another room still has room.
    let id = hub.connect(now);
    let mut client = Connection::client(ClientConfig::new("d").room("other"), now);
    let events = pump(&mut hub, id, &mut client, now);
    assert!(matches!(events[0], Event::Welcomed { .. }), "{events:?}");

    let mut config = HubConfig::default();
    config.max_room_members = 100_000;
    let err = config.check().unwrap_err().to_string();
    assert!(err.contains("at most"), "{err}");
    assert!(HubConfig::default().check().is_ok());
}

/// Offers are priced like messages: a burst of them is flooding.
#[test]
fn offers_spend_flood_tokens() {
    let now = Instant::now();
    let mut config = HubConfig::default();
    config.connection.max_transfers = 1000;
    let burst = config.flood_burst;
    let mut hub = Hub::new(config, now);
    let id = hub.connect(now);
    let mut client_config = ClientConfig::new("offerer");
    client_config.connection.max_transfers = 1000;
    let mut client = Connection::client(client_config, now);
    pump(&mut hub, id, &mut client, now);
    for n in 0..=burst {
        // Nobody answers them here: only their price stops the flood.
        client
            .offer_file(now, &format!("f{n}.bin"), 10, "")
            .unwrap();
    }
    let events = pump(&mut hub, id, &mut client, now);
    let (code, _) = closed_code(&events).expect("flooding");
    assert_eq!(code, Code::FLOODING);
}

/// Every relay reserves a window of server memory; past the ceiling, an
/// offer is rejected instead of letting stalled receivers pile data up.
#[test]
fn relays_past_the_memory_ceiling_are_rejected_until_one_ends() {
    let now = Instant::now();
    let mut config = HubConfig::default();
    config.max_relay_memory = 2 * u64::from(config.connection.window);
    let mut hub = Hub::new(config, now);
    let alice = hub.connect(now);
    let mut alice_client = Connection::client(ClientConfig::new("alice"), now);
    pump(&mut hub, alice, &mut alice_client, now);
    let bob = hub.connect(now);
    let mut bob_client = Connection::client(ClientConfig::new("bob"), now);
    pump(&mut hub, bob, &mut bob_client, now);
    let rejected = |events: &[Event]| {
        events.iter().find_map(|e| match e {
            Event::Transfer(ferry_core::transfer::TransferEvent::Ended {
                id,
                outcome: ferry_core::transfer::Outcome::Rejected { code, .. },
            }) => Some((*id, *code)),
            _ => None,
        })
    };
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(
            alice_client
                .offer_file(now, &format!("f{n}"), 1 << 30, "bob")
                .unwrap(),
        );
    }
    let events = pump(&mut hub, alice, &mut alice_client, now);
    assert_eq!(rejected(&events), Some((ids[2], Code::TOO_MANY_TRANSFERS)));
    assert_eq!(hub.relay_count(), 2);
    // One ends: its window is free for the next offer.
    alice_client
        .cancel(now, ids[0], Code::CANCELLED, "no")
        .unwrap();
    pump(&mut hub, alice, &mut alice_client, now);
    assert_eq!(hub.relay_count(), 1);
    alice_client.offer_file(now, "f3", 1 << 30, "bob").unwrap();
    let events = pump(&mut hub, alice, &mut alice_client, now);
    assert_eq!(rejected(&events), None, "{events:?}");
    assert_eq!(hub.relay_count(), 2);
    pump(&mut hub, bob, &mut bob_client, now);
}

/// Offering a tree spends, from its source, as many manifest entries as
/// its `manifest_len` could hold (what checking them could cost), before
/// any of the manifest arrives; the budget is shared by the source's
/// connections and outlives them, like the message budget.
#[test]
fn tree_offers_spend_their_sources_budget_of_manifest_entries() {
    use bytes::BytesMut;
    use ferry_core::frame::{decode, Frame};
    use ferry_core::tree::TreeLimits;

    let start = Instant::now();
    let mut config = HubConfig::default();
    config.connection.trees = Some(TreeLimits::default());
    config.source_tree_entries_burst = 200_000;
    config.source_tree_entries_per_second = 20_000;
    let mut hub = Hub::new(config, start);
    // 100,000 entries of 27 bytes each at most: half the burst.
    let manifest_len = 16 + 27 * 100_000;
    let source: IpAddr = [10, 0, 0, 9].into();
    // Each offer on a connection of its own: the budget is the source's.
    let offer_from = |hub: &mut Hub, source: IpAddr, now: Instant, n: usize| {
        let (id, _client, events) = join_from(hub, source, now, &format!("t{n}"));
        assert!(matches!(events[0], Event::Welcomed { .. }), "{events:?}");
        let mut bytes = BytesMut::new();
        // Tree frames are known once the client has asked for features.
        Frame::Features { bits: 0 }.encode(&mut bytes).unwrap();
        Frame::TreeOffer {
            id: 0,
            total_size: 0,
            manifest_len,
            name: "tree".into(),
            peer: "".into(),
        }
        .encode(&mut bytes)
        .unwrap();
        hub.handle_input(id, now, &bytes);
        let mut out = BytesMut::new();
        while let Some(b) = hub.poll_transmit(id) {
            out.extend_from_slice(&b);
        }
        let frames: Vec<Frame> =
            std::iter::from_fn(|| decode(&mut out, 1 << 20).unwrap()).collect();
        // Dropped, not closed: the budget must outlive the connection.
        hub.remove(id, now);
        assert!(
            frames.iter().any(|f| matches!(f, Frame::Features { .. })),
            "{frames:?}"
        );
        assert!(
            !frames.iter().any(|f| matches!(f, Frame::Error { .. })),
            "{frames:?}"
        );
        frames.into_iter().find_map(|f| match f {
            Frame::Reject { id: 0, code, .. } => Some(code),
            _ => None,
        })
    };
    let offer = |hub: &mut Hub, now: Instant, n: usize| offer_from(hub, source, now, n);
    assert_eq!(offer(&mut hub, start, 0), None, "within the burst");
    assert_eq!(offer(&mut hub, start, 1), None, "the rest of the burst");
    assert_eq!(
        offer(&mut hub, start, 2),
        Some(Code::FLOODING),
        "past it, on a third connection"
    );
    // 20,000 entries a second: 100,000 back after 5 s, not before.
    let later = start + Duration::from_millis(4_900);
    assert_eq!(offer(&mut hub, later, 3), Some(Code::FLOODING));
    let later = start + Duration::from_millis(5_100);
    assert_eq!(offer(&mut hub, later, 4), None, "refilled");
    // Another source has a budget of its own.
    assert_eq!(offer_from(&mut hub, [10, 0, 0, 10].into(), later, 5), None);
}

/// What happened to a room of one talker, one reader and eight clients that
/// never read, as the talker says `messages` lines of 4 KiB.
struct Stalled {
    /// The most the hub held queued for every client together.
    peak: usize,
    /// Why each silent client was dropped.
    reasons: Vec<String>,
    /// Messages the reader got.
    heard: usize,
    /// What the hub's queues still held at the end.
    left: usize,
}

fn stall_eight(max_outgoing_memory: usize, messages: usize) -> Stalled {
    let now = Instant::now();
    let mut config = HubConfig::default();
    // The flood limits would stop the talker first; this is about memory.
    config.flood_burst = 1_000_000;
    config.flood_per_second = 1_000_000;
    config.source_flood_burst = 1_000_000;
    config.source_flood_per_second = 1_000_000;
    config.max_outgoing_memory = max_outgoing_memory;
    let mut hub = Hub::new(config, now);
    let (talker, mut talker_client, _) = join_from(&mut hub, [10, 0, 0, 1].into(), now, "talker");
    let (reader, mut reader_client, _) = join_from(&mut hub, [10, 0, 0, 2].into(), now, "reader");
    let silent: Vec<ClientId> = (0..8u8)
        .map(|n| join_from(&mut hub, [10, 0, 1, n].into(), now, &format!("silent{n}")).0)
        .collect();
    let line = "x".repeat(4096);
    let mut stalled = Stalled {
        peak: 0,
        reasons: Vec::new(),
        heard: 0,
        left: 0,
    };
    for _ in 0..messages {
        talker_client.say(now, &line).unwrap();
        while let Some(bytes) = talker_client.poll_transmit() {
            hub.handle_input(talker, now, &bytes);
        }
        stalled.peak = stalled.peak.max(hub.queued_total());
        for (id, client) in [(talker, &mut talker_client), (reader, &mut reader_client)] {
            while let Some(bytes) = hub.poll_transmit(id) {
                client.handle_input(now, &bytes);
            }
        }
        while let Some(event) = reader_client.poll_event() {
            if let Event::Message { from, .. } = event {
                assert_eq!(from.as_str(), "talker");
                stalled.heard += 1;
            }
        }
        for (client, code, reason) in closed_since(&mut hub) {
            assert!(silent.contains(&client), "{client} closed: {reason}");
            assert_eq!(code, Code::SLOW_READER, "{reason}");
            stalled.reasons.push(reason);
        }
    }
    for &id in &silent {
        hub.remove(id, now);
    }
    stalled.left = hub.queued_total();
    stalled
}

/// The clients the hub closed since last asked: who, with what code, why.
fn closed_since(hub: &mut Hub) -> Vec<(ClientId, Code, String)> {
    std::iter::from_fn(|| hub.poll_event())
        .filter_map(|event| match event {
            ferry_core::HubEvent::Closed {
                client,
                code,
                reason,
                ..
            } => Some((client, code, reason)),
            _ => None,
        })
        .collect()
}

/// Eight clients that never read, each under its own queue limit, would
/// make the server hold up to that limit each: 8 MiB here, 10 GiB for
/// 10,000 clients. The server's total (`max_outgoing_memory`) drops the
/// biggest queue first, so the total stays within it plus a message per
/// client, while the reader hears every message.
#[test]
fn clients_that_never_read_are_held_to_the_servers_total_not_each_their_own() {
    let own_limit = HubConfig::default().connection.max_outgoing;
    let messages = 2 * own_limit / 4096;

    // Without a total, each is dropped only at its own limit.
    let alone = stall_eight(usize::MAX, messages);
    assert!(alone.peak >= 7 * own_limit, "peak {}", alone.peak);
    assert_eq!(alone.reasons.len(), 8);
    assert!(alone.reasons.iter().all(|r| r.contains("not reading")));

    let total = 2 << 20;
    let held = stall_eight(total, messages);
    // Within the total, but for the message each client got in the turn
    // that passed it.
    assert!(
        held.peak <= total + 10 * 4200,
        "peak {} over {total}",
        held.peak
    );
    // Seven go for the total, each well before its own limit; the last,
    // alone within the total, at its own limit.
    let for_total = |r: &String| r.contains("queues for all clients passed 2097152 bytes");
    assert_eq!(held.reasons.len(), 8, "{:?}", held.reasons);
    assert!(
        held.reasons[..7].iter().all(for_total),
        "{:?}",
        held.reasons
    );
    assert!(held.reasons[7].contains("outgoing queue over 1048576 bytes"));
    for stalled in [&alone, &held] {
        assert_eq!(stalled.heard, messages);
        // Nothing queued is left: the talker and the reader each keep at
        // most a small buffer (256 bytes) for their next frames, which the
        // total counts as the memory it is.
        assert!(stalled.left <= 2 * 256, "{} bytes held", stalled.left);
    }
}

/// The red team's attack: clients that each begin a frame of nearly
/// `max_frame` (1 MiB) and never finish it, trickling a byte now and then
/// to stay clear of the idle timeout. Each is within its own limit, so
/// without a total 2,000 of them made the server hold 2 GiB. The server's
/// total (`max_incoming_memory`) closes the biggest, oldest first, so what
/// the hub holds stays within the total and a floor per client, while an
/// honest member chats on.
#[test]
fn frames_begun_and_never_finished_are_held_to_the_servers_total() {
    let now = Instant::now();
    let total = 4 << 20;
    let mut config = HubConfig::default();
    config.max_incoming_memory = total;
    let mut hub = Hub::new(config, now);
    let (alice, mut alice_client, _) = join_from(&mut hub, [10, 0, 0, 1].into(), now, "alice");
    let body = 1 << 20;
    let mut begun = Vec::new();
    let mut peak = 0;
    let mut closed = Vec::new();
    for n in 0..24u8 {
        // A second a step: alice stays within her message budget.
        let now = now + Duration::from_secs(u64::from(n));
        let (id, _client, _) = join_from(&mut hub, [10, 0, 1, n].into(), now, &format!("m{n}"));
        // An extension type: any body is within the rules until it ends.
        let mut frame = vec![0x9a];
        frame.extend_from_slice(&(body as u32).to_be_bytes());
        frame.resize(5 + body - 64, 7);
        for piece in frame.chunks(64 * 1024) {
            hub.handle_input(id, now, piece);
            peak = peak.max(hub.incoming_total());
        }
        begun.push(id);
        closed.extend(closed_since(&mut hub));
        // Alice's message goes through at every step.
        alice_client.say(now, &format!("still here {n}")).unwrap();
        let events = pump(&mut hub, alice, &mut alice_client, now);
        assert!(
            events.iter().any(|e| matches!(e, Event::Message { text, .. } if text.as_str() == format!("still here {n}"))),
            "{events:?}"
        );
    }
    // Two frames' buffers (up to twice what arrived each) past the total
    // at most: the one that crossed it and the floor's worth of the rest.
    assert!(peak <= total + 2 * (body + 5), "peak {peak} over {total}");
    assert!(hub.incoming_total() <= total, "{}", hub.incoming_total());
    // The oldest go first, told why.
    assert!(closed.len() >= 24 - total / body, "{closed:?}");
    assert_eq!(closed[0].0, begun[0]);
    for (client, code, reason) in &closed {
        assert!(begun.contains(client));
        assert_eq!(*code, Code::FLOODING, "{reason}");
        assert!(
            reason.contains("unfinished frames from all clients passed 4194304 bytes"),
            "{reason}"
        );
    }
    for id in begun {
        hub.remove(id, now);
    }
    assert!(
        hub.incoming_total() <= 16 * 1024,
        "{}",
        hub.incoming_total()
    );
}
