//! Names in a room through a real hub: a look-alike of a member is refused
//! with `NAME_TAKEN`, a name mixing scripts with `NAME_INVALID`, and no two
//! members of a room ever share a `name_key`.

use ferry_core::names::name_key;
use ferry_core::{ClientConfig, ClientId, Code, Connection, Event, Hub, HubConfig};
use proptest::prelude::*;
use std::collections::HashSet;
use std::time::Instant;

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

/// Connects a client named `name` to the lobby: `Ok` if welcomed, else the
/// code and reason of the refusal.
fn join(hub: &mut Hub, now: Instant, name: &str) -> Result<(), (Code, String)> {
    let id = hub.connect(now);
    let mut client = Connection::client(ClientConfig::new(name), now);
    let events = pump(hub, id, &mut client, now);
    match events.first() {
        Some(Event::Welcomed { .. }) => Ok(()),
        _ => Err(events
            .iter()
            .find_map(|e| match e {
                Event::Closed { code, reason, .. } => Some((*code, reason.clone())),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{name:?}: neither welcomed nor refused: {events:?}"))),
    }
}

/// The look-alikes the adversarial review got into a room next to `bob`,
/// `alice` and `admin` (`ADMIN`): each is now refused as taken.
#[test]
fn the_reviews_look_alikes_are_refused_as_taken() {
    let now = Instant::now();
    for (member, look_alikes) in [
        ("bob", &["b\u{585}b", "𝖻𝗈𝖻", "b\u{1D0F}b", "BOB", "Bob"][..]),
        ("alice", &["a\u{217C}ice", "\u{410}lice"][..]),
        ("admin", &["admi\u{578}", "ᎪᎠᎷᎥᏁ", "ADMIN", "ADMlN"][..]),
        ("ADMIN", &["ᎪᎠᎷᎥᏁ", "admin"][..]),
    ] {
        let mut hub = Hub::new(HubConfig::default(), now);
        join(&mut hub, now, member).unwrap();
        for look_alike in look_alikes {
            let (code, reason) = join(&mut hub, now, look_alike).unwrap_err();
            assert_eq!(code, Code::NAME_TAKEN, "{look_alike:?} next to {member}");
            let told = format!("looks like {member:?}");
            assert!(
                reason.contains(&told) || reason.contains("is taken"),
                "{reason}"
            );
        }
        assert_eq!(hub.members("lobby"), vec![member]);
    }
}

/// A name mixing scripts is invalid on its own; one that is also a
/// look-alike of a member is told it is taken, which says more.
#[test]
fn a_name_mixing_scripts_is_invalid() {
    let now = Instant::now();
    let mut hub = Hub::new(HubConfig::default(), now);
    for name in ["b\u{585}b", "\u{410}lice", "Ꭺlice", "alpha α"] {
        let (code, reason) = join(&mut hub, now, name).unwrap_err();
        assert_eq!(code, Code::NAME_INVALID, "{name:?}");
        assert!(reason.contains("mixes letters of"), "{reason}");
    }
    for name in ["Zoë", "山田 Taro", "Мария", "ᎪᎠᎷᎥᏁ"] {
        join(&mut hub, now, name).unwrap();
    }
    // A room name is checked the same way.
    let id = hub.connect(now);
    let mut client = Connection::client(ClientConfig::new("carol").room("l\u{43e}bby"), now);
    let events = pump(&mut hub, id, &mut client, now);
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Closed {
                code: Code::ROOM_INVALID,
                ..
            }
        )),
        "{events:?}"
    );
}

/// Characters that look like (or are a case of) each test letter, for
/// making look-alikes. Used only to generate inputs: the key under test
/// comes from UTS #39's data, not from this table.
fn look_alikes(c: char) -> Vec<String> {
    let index = c as u32 - 'a' as u32;
    let mut out = vec![
        c.to_string(),
        c.to_ascii_uppercase().to_string(),
        // Fullwidth, small and capital.
        char::from_u32(0xFF41 + index).unwrap().to_string(),
        char::from_u32(0xFF21 + index).unwrap().to_string(),
        // Mathematical sans-serif, small and capital.
        char::from_u32(0x1D5BA + index).unwrap().to_string(),
        char::from_u32(0x1D5A0 + index).unwrap().to_string(),
    ];
    let others: &[&str] = match c {
        'a' => &["\u{430}", "\u{251}", "\u{410}", "\u{391}"],
        'b' => &["\u{412}", "\u{392}", "\u{13F4}"],
        'c' => &["\u{441}", "\u{3F2}", "\u{421}", "\u{1D04}"],
        'd' => &["\u{501}", "\u{13A0}"],
        'e' => &["\u{435}", "\u{415}", "\u{395}", "\u{13AC}"],
        'h' => &["\u{4BB}", "\u{41D}", "\u{397}", "\u{13BB}"],
        'i' => &["\u{456}", "\u{131}", "\u{13A5}", "1", "l", "|", "\u{406}"],
        'j' => &["\u{458}", "\u{408}"],
        'l' => &["1", "I", "|", "\u{217C}", "\u{406}", "\u{399}", "\u{4C0}"],
        'm' => &["rn", "\u{41C}", "\u{39C}", "\u{13B7}"],
        'n' => &["\u{578}", "\u{39D}", "\u{13C1}"],
        'o' => &[
            "0", "\u{43E}", "\u{3BF}", "\u{585}", "\u{1D0F}", "\u{41E}", "\u{39F}",
        ],
        'p' => &["\u{440}", "\u{3C1}", "\u{420}", "\u{3A1}", "\u{13E2}"],
        's' => &["\u{455}", "\u{405}", "\u{13DA}"],
        'x' => &["\u{445}", "\u{425}", "\u{3A7}", "\u{D7}"],
        'y' => &["\u{443}", "\u{3A5}", "\u{4AE}", "\u{13A9}"],
        _ => &[],
    };
    out.extend(others.iter().map(|s| s.to_string()));
    out
}

const LETTERS: &[char] = &[
    'a', 'b', 'c', 'd', 'e', 'h', 'i', 'j', 'l', 'm', 'n', 'o', 'p', 's', 'x', 'y',
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// A name and its look-alikes (each letter replaced by a confusable, in
    /// either case) join a room in any order: the first that is valid is
    /// let in, every later one is refused as taken, and the room never holds
    /// two members with one key. A look-alike refused before the first
    /// admitted can only be one that mixes scripts.
    #[test]
    fn look_alikes_never_share_a_room(
        base in prop::collection::vec(prop::sample::select(LETTERS), 2..8),
        picks in prop::collection::vec(prop::collection::vec(any::<prop::sample::Index>(), 8), 1..8),
        at in any::<prop::sample::Index>(),
    ) {
        let base: String = base.into_iter().collect();
        let mut names: Vec<String> = picks
            .iter()
            .map(|pick| {
                base.chars()
                    .zip(pick)
                    .map(|(c, i)| i.get(&look_alikes(c)).clone())
                    .collect()
            })
            .collect();
        names.insert(at.index(names.len() + 1), base.clone());
        let now = Instant::now();
        let mut hub = Hub::new(HubConfig::default(), now);
        let mut admitted: Option<&str> = None;
        for name in &names {
            prop_assert_eq!(name_key(name), name_key(&base), "{:?} vs {:?}", name, base);
            match (join(&mut hub, now, name), admitted) {
                (Ok(()), None) => admitted = Some(name),
                (Ok(()), Some(first)) => {
                    prop_assert!(false, "{:?} let in beside {:?}", name, first);
                }
                (Err((code, _)), Some(_)) => prop_assert_eq!(code, Code::NAME_TAKEN, "{:?}", name),
                (Err((code, reason)), None) => {
                    prop_assert_eq!(code, Code::NAME_INVALID, "{:?}: {}", name, reason);
                    prop_assert!(reason.contains("mixes letters of"), "{}", reason);
                }
            }
            let members = hub.members("lobby");
            let keys: HashSet<String> = members.iter().map(|m| name_key(m)).collect();
            prop_assert_eq!(keys.len(), members.len(), "{:?}", members);
        }
        prop_assert!(admitted.is_some(), "the plain name {:?} is always valid", base);
        prop_assert_eq!(hub.members("lobby").len(), 1);
    }
}

/// WELCOME names the room as it was created, whatever spelling a later
/// member asked for, so a client learns the room's one name.
#[test]
fn welcome_names_the_room_as_its_first_member_spelled_it() {
    let now = Instant::now();
    let mut hub = Hub::new(HubConfig::default(), now);
    let mut welcomed_in = |name: &str, room: &str| {
        let id = hub.connect(now);
        let mut client = Connection::client(ClientConfig::new(name).room(room), now);
        let events = pump(&mut hub, id, &mut client, now);
        match events.first() {
            Some(Event::Welcomed { room, .. }) => room.to_string(),
            other => panic!("{name}: {other:?}"),
        }
    };
    assert_eq!(welcomed_in("alice", "Spec-Room"), "Spec-Room");
    assert_eq!(welcomed_in("bob", "spec-room"), "Spec-Room");
    assert_eq!(welcomed_in("carol", "SPEC-ROOM"), "Spec-Room");
    // A new room is called what its creator asked for.
    assert_eq!(welcomed_in("dave", "Other"), "Other");
}
