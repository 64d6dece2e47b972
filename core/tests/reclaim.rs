//! Reconnect takeover (`SESSION`, `RECLAIM`, PROTOCOL.md §6.11) through a
//! real hub: a client whose connection was lost takes its name back at
//! once with the secret it was handed, and nobody else can.

use bytes::BytesMut;
use ferry_core::frame::{decode, Frame, PREAMBLE};
use ferry_core::{
    ClientConfig, ClientId, Code, Connection, Event, Hub, HubConfig, HubEvent, SessionSecret,
};
use std::time::Instant;

const KEY: [u8; 32] = [0x5e; 32];

fn hub_with_key(now: Instant) -> Hub {
    keyed_hub(now, KEY)
}

fn keyed_hub(now: Instant, key: [u8; 32]) -> Hub {
    let mut config = HubConfig::default();
    config.session_key = Some(key);
    config.token = Some(b"letmein".to_vec());
    Hub::new(config, now)
}

/// Moves bytes both ways until neither side has any; returns the client's
/// events.
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

/// Everything the hub has queued for `id`, decoded.
fn frames_to(hub: &mut Hub, id: ClientId) -> Vec<Frame> {
    let mut buf = BytesMut::new();
    while let Some(bytes) = hub.poll_transmit(id) {
        buf.extend_from_slice(&bytes);
    }
    if buf.starts_with(&PREAMBLE) {
        let _ = buf.split_to(PREAMBLE.len());
    }
    std::iter::from_fn(|| decode(&mut buf, 1 << 20).unwrap()).collect()
}

struct Joined {
    id: ClientId,
    conn: Connection,
    secret: Option<SessionSecret>,
    events: Vec<Event>,
}

fn join(hub: &mut Hub, now: Instant, config: ClientConfig) -> Joined {
    let id = hub.connect(now);
    let mut conn = Connection::client(config, now);
    let events = pump(hub, id, &mut conn, now);
    let secret = events.iter().find_map(|e| match e {
        Event::Session { secret } => Some(*secret),
        _ => None,
    });
    Joined {
        id,
        conn,
        secret,
        events,
    }
}

fn config(name: &str) -> ClientConfig {
    ClientConfig::new(name).token(b"letmein".to_vec())
}

fn closed(events: &[Event]) -> Option<(Code, String)> {
    events.iter().find_map(|e| match e {
        Event::Closed { code, reason, .. } => Some((*code, reason.clone())),
        _ => None,
    })
}

fn welcomed(events: &[Event]) -> bool {
    matches!(events.first(), Some(Event::Welcomed { .. }))
}

#[test]
fn a_hub_with_a_key_hands_each_client_its_own_secret_right_after_welcome() {
    let now = Instant::now();
    let mut hub = hub_with_key(now);
    let alice = join(&mut hub, now, config("alice"));
    let bob = join(&mut hub, now, config("bob"));
    assert!(
        matches!(alice.events[1], Event::Session { .. }),
        "{:?}",
        alice.events
    );
    assert_ne!(alice.secret.unwrap(), bob.secret.unwrap());
    // Without a key nothing is handed out, and a RECLAIM changes nothing.
    let mut plain = Hub::new(HubConfig::default(), now);
    let carol = join(&mut plain, now, ClientConfig::new("carol"));
    assert!(
        welcomed(&carol.events) && carol.secret.is_none(),
        "{:?}",
        carol.events
    );
    let again = join(
        &mut plain,
        now,
        ClientConfig::new("carol").reclaim(alice.secret.unwrap()),
    );
    assert_eq!(closed(&again.events).unwrap().0, Code::NAME_TAKEN);
}

#[test]
fn the_secret_takes_the_name_back_at_once_and_the_room_sees_why() {
    let now = Instant::now();
    let mut hub = hub_with_key(now);
    let mut alice = join(&mut hub, now, config("alice"));
    let mut bob = join(&mut hub, now, config("bob"));
    let _ = pump(&mut hub, alice.id, &mut alice.conn, now);
    let _ = pump(&mut hub, bob.id, &mut bob.conn, now);
    while hub.poll_event().is_some() {}

    // Alice's link went silent; her client comes back with the secret.
    let back = join(
        &mut hub,
        now,
        config("alice").reclaim(alice.secret.unwrap()),
    );
    assert!(welcomed(&back.events), "{:?}", back.events);
    assert!(back.secret.is_some() && back.secret != alice.secret);
    assert_eq!(hub.members("lobby"), vec!["bob", "alice"]);

    // The old connection was told why, and the room saw her leave and come
    // back, in that order.
    let to_old = frames_to(&mut hub, alice.id);
    assert!(
        to_old
            .iter()
            .any(|f| matches!(f, Frame::Error { code, .. } if *code == Code::REPLACED)),
        "{to_old:?}"
    );
    let to_bob: Vec<Frame> = frames_to(&mut hub, bob.id);
    let left = to_bob
        .iter()
        .position(|f| matches!(f, Frame::Left { name, code, .. } if name == "alice" && *code == Code::REPLACED));
    let joined = to_bob
        .iter()
        .position(|f| matches!(f, Frame::Joined { name, .. } if name == "alice"));
    assert!(left.is_some() && left < joined, "{to_bob:?}");

    let events: Vec<HubEvent> = std::iter::from_fn(|| hub.poll_event()).collect();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, HubEvent::Replaced { old, new, name }
            if *old == alice.id && *new == back.id && name == "alice")),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, HubEvent::Closed { client, code, .. }
            if *client == alice.id && *code == Code::REPLACED)),
        "{events:?}"
    );
}

#[test]
fn a_wrong_stale_or_foreign_secret_takes_nothing() {
    let now = Instant::now();
    let mut hub = hub_with_key(now);
    let alice = join(&mut hub, now, config("alice"));
    let secret = alice.secret.unwrap();

    // One bit of the tag flipped.
    let mut bytes = *secret.as_bytes();
    bytes[20] ^= 1;
    let forged = join(
        &mut hub,
        now,
        config("alice").reclaim(SessionSecret::from_bytes(bytes)),
    );
    assert_eq!(closed(&forged.events).unwrap().0, Code::NAME_TAKEN);

    // Another client's number with alice's tag.
    let mut bytes = *secret.as_bytes();
    bytes[7] ^= 1;
    let moved = join(
        &mut hub,
        now,
        config("alice").reclaim(SessionSecret::from_bytes(bytes)),
    );
    assert_eq!(closed(&moved.events).unwrap().0, Code::NAME_TAKEN);

    // The same client on a hub with another key (a restarted server).
    let mut other = keyed_hub(now, [0x77; 32]);
    let _ = join(&mut other, now, config("alice"));
    let restarted = join(&mut other, now, config("alice").reclaim(secret));
    assert_eq!(closed(&restarted.events).unwrap().0, Code::NAME_TAKEN);

    assert_eq!(hub.members("lobby"), vec!["alice"]);
    assert!(!hub.poll_events_contain_replaced());
}

#[test]
fn the_right_secret_with_a_wrong_token_takes_nothing() {
    let now = Instant::now();
    let mut hub = hub_with_key(now);
    let alice = join(&mut hub, now, config("alice"));
    let id = hub.connect(now);
    let mut thief = Connection::client(
        ClientConfig::new("alice")
            .token(b"guess".to_vec())
            .reclaim(alice.secret.unwrap()),
        now,
    );
    let mut events = pump(&mut hub, id, &mut thief, now);
    // A wrong token may be answered late; the old connection is untouched.
    let later = now + std::time::Duration::from_secs(5);
    hub.handle_timeout(later);
    events.extend(pump(&mut hub, id, &mut thief, later));
    assert_eq!(closed(&events).unwrap().0, Code::AUTH_FAILED);
    assert_eq!(hub.members("lobby"), vec!["alice"]);
    assert!(!hub.poll_events_contain_replaced());
}

#[test]
fn reclaim_is_taken_once_and_only_before_hello() {
    let now = Instant::now();
    let mut hub = hub_with_key(now);
    let alice = join(&mut hub, now, config("alice"));
    let secret = alice.secret.unwrap();

    // Two RECLAIMs before HELLO: the second is unexpected.
    let id = hub.connect(now);
    let mut bytes = BytesMut::new();
    bytes.extend_from_slice(&PREAMBLE);
    for _ in 0..2 {
        Frame::Reclaim { secret }.encode(&mut bytes).unwrap();
    }
    hub.handle_input(id, now, &bytes);
    let frames = frames_to(&mut hub, id);
    assert!(
        frames
            .iter()
            .any(|f| matches!(f, Frame::Error { code, .. } if *code == Code::UNEXPECTED_FRAME)),
        "{frames:?}"
    );

    // After WELCOME a RECLAIM is skipped like an unknown extension.
    let mut bob = join(&mut hub, now, config("bob"));
    let mut bytes = BytesMut::new();
    Frame::Reclaim { secret }.encode(&mut bytes).unwrap();
    hub.handle_input(bob.id, now, &bytes);
    let events = pump(&mut hub, bob.id, &mut bob.conn, now);
    assert!(closed(&events).is_none(), "{events:?}");
    assert_eq!(hub.members("lobby"), vec!["alice", "bob"]);
    assert!(!hub.poll_events_contain_replaced());
}

#[test]
fn a_client_sends_reclaim_before_hello_and_skips_session_before_welcome() {
    let now = Instant::now();
    let secret = SessionSecret::from_bytes([9; 24]);
    let mut conn = Connection::client(ClientConfig::new("alice").reclaim(secret), now);
    let mut buf = BytesMut::new();
    while let Some(bytes) = conn.poll_transmit() {
        buf.extend_from_slice(&bytes);
    }
    assert!(buf.starts_with(&PREAMBLE));
    let _ = buf.split_to(PREAMBLE.len());
    let first = decode(&mut buf, 4096).unwrap().unwrap();
    let second = decode(&mut buf, 4096).unwrap().unwrap();
    assert_eq!(first, Frame::Reclaim { secret });
    assert!(matches!(second, Frame::Hello { .. }), "{second:?}");
}

/// A `Hub` helper for the tests above: whether any queued event says a
/// connection was replaced (draining them).
trait ReplacedEvents {
    fn poll_events_contain_replaced(&mut self) -> bool;
}

impl ReplacedEvents for Hub {
    fn poll_events_contain_replaced(&mut self) -> bool {
        std::iter::from_fn(|| self.poll_event()).any(|e| matches!(e, HubEvent::Replaced { .. }))
    }
}

/// PROTOCOL.md §6.11's last paragraph, computed here from its words: the
/// connection's number, big-endian, then 16 bytes of a keyed BLAKE3 of
/// `ferry session secret v1` and that number.
#[test]
fn the_secret_is_made_as_the_document_says() {
    let now = Instant::now();
    let mut hub = hub_with_key(now);
    let _first = join(&mut hub, now, config("alice"));
    let second = join(&mut hub, now, config("bob"));
    let number = second.id.0.to_be_bytes();
    let mut message = b"ferry session secret v1".to_vec();
    message.extend_from_slice(&number);
    let tag = blake3::keyed_hash(&KEY, &message);
    let mut expected = number.to_vec();
    expected.extend_from_slice(&tag.as_bytes()[..16]);
    assert_eq!(second.secret.unwrap().as_bytes().as_slice(), &expected[..]);
}
