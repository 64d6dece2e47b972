//! The claims of the driving contract (`ferry_core::driving`) that a driver
//! relies on: when a client counts as closed, what a removed client still
//! answers, that taking output can queue events (so a drain loops), and
//! that the configuration setters and checks say what they set.

use ferry_core::bytes::Bytes;
use ferry_core::transfer::TransferEvent;
use ferry_core::{
    ClientConfig, ClientId, Code, ConfigError, Connection, Event, Hub, HubConfig, HubEvent,
};
use std::time::{Duration, Instant};

/// Moves bytes both ways until neither side has any, handling nothing.
fn exchange(hub: &mut Hub, id: ClientId, client: &mut Connection, now: Instant) {
    loop {
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
            return;
        }
    }
}

fn hub_events(hub: &mut Hub) -> Vec<HubEvent> {
    std::iter::from_fn(|| hub.poll_event()).collect()
}

#[test]
fn a_client_is_closed_from_the_hubs_close_on_and_removal_keeps_it_so() {
    let now = Instant::now();
    let mut hub = Hub::new(HubConfig::default(), now);
    assert!(hub.is_closed(ClientId(12345)), "an id never handed out");

    let id = hub.connect(now);
    assert!(!hub.is_closed(id), "just connected");
    let mut alice = Connection::client(ClientConfig::new("alice"), now);
    exchange(&mut hub, id, &mut alice, now);
    assert!(alice.is_open());
    assert!(!hub.is_closed(id), "welcomed");

    // A frame of an unknown type 0x42 with no body: a protocol violation.
    hub.handle_input(id, now, &[0x42, 0, 0, 0, 0]);
    let closed: Vec<_> = hub_events(&mut hub)
        .into_iter()
        .filter_map(|e| e.closed_client())
        .collect();
    assert_eq!(closed, vec![id]);
    assert!(hub.is_closed(id), "closed, not yet removed");
    assert!(
        hub.poll_transmit(id).is_some(),
        "the final ERROR waits to be written after Closed"
    );
    assert_eq!(hub.client_count(), 1, "counted until removed");

    hub.remove(id, now);
    assert!(hub.is_closed(id), "removed");
    assert_eq!(hub.client_count(), 0);
    assert_eq!(hub.poll_transmit(id), None);
    hub.handle_input(id, now, b"anything");
    hub.handle_eof(id, now);
    assert!(
        hub_events(&mut hub).is_empty(),
        "a removed client is ignored"
    );
}

#[test]
fn a_slow_reader_is_closed_by_the_hub_not_by_the_driver() {
    let now = Instant::now();
    let config = HubConfig::default().connection(
        ferry_core::Config::default()
            .max_outgoing(64 * 1024)
            .idle_timeout(Duration::from_secs(3600)),
    );
    let mut hub = Hub::new(config, now);
    let reader = hub.connect(now);
    let mut stuck = Connection::client(ClientConfig::new("stuck"), now);
    exchange(&mut hub, reader, &mut stuck, now);
    let talker = hub.connect(now);
    let mut bob = Connection::client(ClientConfig::new("bob"), now);
    exchange(&mut hub, talker, &mut bob, now);
    hub_events(&mut hub);

    // `stuck`'s driver writes nothing more: its socket is full. Bob talks
    // within his flood budget, over and over, for a long time.
    let mut later = now;
    let mut closed = None;
    for _ in 0..2000 {
        later += Duration::from_millis(200);
        bob.say(later, &"x".repeat(1000)).unwrap();
        while let Some(bytes) = bob.poll_transmit() {
            hub.handle_input(talker, later, &bytes);
        }
        while hub.poll_transmit(talker).is_some() {}
        hub.handle_timeout(later);
        if let Some(HubEvent::Closed { code, .. }) = hub_events(&mut hub)
            .into_iter()
            .find(|e| e.closed_client() == Some(reader))
        {
            closed = Some(code);
            break;
        }
    }
    assert_eq!(closed, Some(Code::SLOW_READER));
    assert!(hub.is_closed(reader));
    assert!(!hub.is_closed(talker), "the talker carries on");
}

#[test]
fn taking_output_can_ask_for_the_next_chunk_so_a_drain_loops() {
    let now = Instant::now();
    let mut hub = Hub::new(HubConfig::default(), now);
    let id = hub.connect(now);
    let mut alice = Connection::client(ClientConfig::new("alice"), now);
    exchange(&mut hub, id, &mut alice, now);
    while alice.poll_event().is_some() {}

    let size = 1 << 20;
    let transfer = alice.offer_file(now, "f.bin", size, "").unwrap();
    exchange(&mut hub, id, &mut alice, now);
    let offered = hub_events(&mut hub).into_iter().find_map(|e| match e {
        HubEvent::Transfer {
            event: TransferEvent::Offered { id: t, .. },
            ..
        } => Some(t),
        _ => None,
    });
    hub.accept(id, now, offered.expect("the offer reached the hub"), 0)
        .unwrap();
    exchange(&mut hub, id, &mut alice, now);

    let mut asked = 0;
    let mut asked_while_taking_output = 0;
    for _ in 0..64 {
        // Handle events; then take output; then look at events again.
        while let Some(event) = alice.poll_event() {
            if let Event::Transfer(TransferEvent::NeedChunk { id: t, offset, len }) = event {
                assert_eq!(t, transfer);
                asked += 1;
                let data = Bytes::from(vec![7u8; len as usize]);
                alice.supply_chunk(now, t, offset, data).unwrap();
            }
        }
        let mut took = false;
        while let Some(bytes) = alice.poll_transmit() {
            took = true;
            hub.handle_input(id, now, &bytes);
        }
        let asked_now = std::iter::from_fn(|| alice.poll_event()).collect::<Vec<_>>();
        if took
            && asked_now
                .iter()
                .any(|e| matches!(e, Event::Transfer(TransferEvent::NeedChunk { .. })))
        {
            asked_while_taking_output += 1;
        }
        for event in asked_now {
            if let Event::Transfer(TransferEvent::NeedChunk { id: t, offset, len }) = event {
                asked += 1;
                let data = Bytes::from(vec![7u8; len as usize]);
                alice.supply_chunk(now, t, offset, data).unwrap();
            }
        }
    }
    assert!(asked > 1, "chunks were asked for: {asked}");
    assert!(
        asked_while_taking_output > 0,
        "a NeedChunk appeared after taking output, with no input in between"
    );
}

#[test]
fn setters_build_a_configuration_and_check_names_what_cannot_hold() {
    let config = HubConfig::default()
        .max_clients(500)
        .max_per_ip(4)
        .guests(false)
        .token("s3cret")
        .session_key([9; 32])
        .connection(ferry_core::Config::default().idle_timeout(Duration::from_secs(5)));
    assert_eq!(config.max_clients, 500);
    assert_eq!(config.max_per_ip, 4);
    assert!(!config.guests);
    assert_eq!(config.token.as_deref(), Some(&b"s3cret"[..]));
    assert_eq!(config.session_key, Some([9; 32]));
    assert_eq!(config.connection.idle_timeout, Duration::from_secs(5));
    assert_eq!(config.check(), Ok(()));

    assert_eq!(
        HubConfig::default().max_per_ip(0).check(),
        Err(ConfigError::TurnsEveryoneAway {
            limit: "max_per_ip"
        })
    );
    assert!(matches!(
        HubConfig::default().source_prefix_v6(129).check(),
        Err(ConfigError::PrefixTooLong { bits: 129, .. })
    ));
    let err = HubConfig::default().max_room_members(100_000).check();
    assert!(
        matches!(err, Err(ConfigError::RoomTooLarge { members: 100_000, most, .. }) if most > 0),
        "{err:?}"
    );
}
