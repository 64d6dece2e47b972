//! Whole sessions between a hub and its clients over an in-memory network
//! with a virtual clock. Every byte-stream scenario runs with the stream
//! delivered whole, one byte at a time, and in random splits.

mod sim;

use ferry_core::transfer::{Outcome, TransferEvent};
use ferry_core::{ClientConfig, Code, Event, HubConfig, HubEvent, ResumeKey};
use proptest::prelude::*;
use sim::{file_bytes, splits, Net, OfferPolicy, Split};
use std::time::Duration;

fn config() -> HubConfig {
    HubConfig::default()
}

fn handshake(split: Split) {
    let mut net = Net::new(config(), split);
    let alice = net.join("alice");
    let events = &net.peers[alice].events;
    assert!(
        matches!(&events[0], Event::Welcomed { name, room, settings }
        if name == "alice" && room == "lobby" && settings.max_frame == 1 << 20)
    );
    assert!(matches!(&events[1], Event::Members { names } if names == &["alice"]));
    assert!(matches!(&events[2], Event::Joined { seq: 1, name } if name == "alice"));
    assert!(matches!(&net.hub_events[0], HubEvent::Joined { name, .. } if name == "alice"));
}

fn refused_names(split: Split) {
    let mut net = Net::new(config(), split);
    net.join("Alice");
    for (name, code) in [
        ("alice", Code::NAME_TAKEN),
        ("ALICE", Code::NAME_TAKEN),
        // Look-alikes: Cyrillic А, fullwidth letters, a digit one for l.
        ("\u{410}lice", Code::NAME_TAKEN),
        ("\u{FF41}\u{FF4C}\u{FF49}\u{FF43}\u{FF45}", Code::NAME_TAKEN),
        ("A1ice", Code::NAME_TAKEN),
        ("al\u{200B}ice", Code::NAME_INVALID),
        ("", Code::NAME_INVALID),
        ("a\u{1b}[2Jb", Code::NAME_INVALID),
        ("evil\u{202e}", Code::NAME_INVALID),
        (&"x".repeat(33), Code::NAME_INVALID),
    ] {
        let i = net.connect(ClientConfig::new(name));
        net.run();
        let p = &net.peers[i];
        assert!(!p.conn.is_open());
        assert_eq!(p.closed(), Some((code, true)), "{name:?}: {:?}", p.events);
    }
    let bad_room = net.connect(ClientConfig::new("bob").room("no\nnewlines"));
    net.run();
    assert_eq!(
        net.peers[bad_room].closed(),
        Some((Code::ROOM_INVALID, true))
    );
    // Nobody else was disturbed, and the refused names are free of ghosts.
    assert_eq!(net.hub.members("lobby"), vec!["Alice"]);
    net.join("bob");
}

fn room_of_three(split: Split) {
    let mut net = Net::new(config(), split);
    let a = net.join("alice");
    let b = net.join("bob");
    let c = net.join("carol");
    net.say(a, "hi all");
    net.say(b, "hello alice");
    net.say(c, "hey");
    net.say(a, "ünïcödé 🦀");
    net.run();
    // Everyone sees the same messages with the same sequence numbers, each
    // sender's in the order sent.
    let seen = net.peers[a].messages();
    for i in [b, c] {
        assert_eq!(net.peers[i].messages(), seen, "peer {i}");
    }
    let seqs: Vec<u64> = seen.iter().map(|m| m.0).collect();
    assert_eq!(seqs, vec![4, 5, 6, 7]);
    let by = |who: &str| -> Vec<String> {
        seen.iter()
            .filter(|m| m.1 == who)
            .map(|m| m.2.clone())
            .collect()
    };
    assert_eq!(by("alice"), vec!["hi all", "ünïcödé 🦀"]);
    assert_eq!(by("bob"), vec!["hello alice"]);
    assert_eq!(by("carol"), vec!["hey"]);
    // Carol saw the room before her in MEMBERS.
    assert!(net.peers[c]
        .events
        .iter()
        .any(|e| matches!(e, Event::Members { names } if names == &["alice", "bob", "carol"])));
    // Bob leaves politely; the others are told why.
    let now = net.now;
    net.peers[b].conn.bye(now);
    net.run();
    assert_eq!(net.lefts(a), vec![("bob".to_string(), Code::QUIT)]);
    assert_eq!(net.lefts(c), vec![("bob".to_string(), Code::QUIT)]);
    assert_eq!(net.hub.members(""), vec!["alice", "carol"]);
    assert!(net
        .hub_events
        .iter()
        .any(|e| matches!(e, HubEvent::Left { name, code: Code::QUIT, .. } if name == "bob")));
}

fn direct_message(split: Split) {
    let mut net = Net::new(config(), split);
    let a = net.join("alice");
    let b = net.join("bob");
    let c = net.join("carol");
    let now = net.now;
    net.peers[a].conn.direct(now, "BOB", "psst").unwrap();
    net.peers[a].conn.direct(now, "dave", "anyone?").unwrap();
    net.run();
    let direct = |i: usize| -> Vec<(String, String)> {
        net.peers[i]
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Direct { from, text } => Some((from.to_string(), text.to_string())),
                _ => None,
            })
            .collect()
    };
    assert_eq!(direct(b), vec![("alice".to_string(), "psst".to_string())]);
    assert!(direct(c).is_empty());
    assert!(net.peers[a].events.iter().any(|e| matches!(
        e,
        Event::Bounced {
            code: Code::NO_SUCH_USER,
            ..
        }
    )));
    // Who is here.
    net.peers[c].conn.who(now).unwrap();
    net.run();
    assert!(
        matches!(net.peers[c].events.last(), Some(Event::Members { names }) if names == &["alice", "bob", "carol"])
    );
}

fn upload(split: Split, size: usize) {
    let mut net = Net::new(config(), split);
    let a = net.join("alice");
    let data = file_bytes(size, 7);
    let id = net.send_file(a, "report.pdf", &data, "");
    net.run();
    assert_eq!(net.peers[a].ended(), vec![(id, Outcome::Verified)]);
    assert_eq!(net.inbox.stored["report.pdf"], data);
    // Progress was driven by the receiver's confirmations and reached the end.
    let last = net.peers[a].events.iter().rev().find_map(|e| match e {
        Event::Transfer(TransferEvent::Progress {
            confirmed, size, ..
        }) => Some((*confirmed, *size)),
        _ => None,
    });
    if size > 0 {
        assert_eq!(last, Some((size as u64, size as u64)));
    }
}

fn relay(split: Split, size: usize) {
    let mut net = Net::new(config(), split);
    let a = net.join("alice");
    let b = net.join("bob");
    let data = file_bytes(size, 9);
    let id = net.send_file(a, "photo.jpg", &data, "Bob");
    net.run();
    assert_eq!(net.peers[a].ended(), vec![(id, Outcome::Verified)]);
    let offers = net.peers[b].offers();
    assert_eq!(offers.len(), 1);
    assert_eq!(
        (offers[0].1.as_str(), offers[0].2, offers[0].3.as_str()),
        ("photo.jpg", size as u64, "alice")
    );
    assert_eq!(net.peers[b].disk.stored["photo.jpg"], data);
    assert_eq!(net.peers[b].ended(), vec![(offers[0].0, Outcome::Verified)]);
    assert_eq!(net.hub.relay_count(), 0);
    assert!(net.inbox.stored.is_empty());
}

/// PROTOCOL.md §6.4 and §6.10.8: a member who names itself is a recipient
/// like any other. Its direct message comes back as its `DIRECT_FROM`, and
/// its file comes back on the same connection under the server's odd id,
/// both legs driven by the one client.
fn to_oneself(split: Split) {
    let mut net = Net::new(config(), split);
    let a = net.join("alice");
    let now = net.now;
    net.peers[a]
        .conn
        .direct(now, "ALICE", "note to self")
        .unwrap();
    let data = file_bytes(70_001, 4);
    let sent = net.send_file(a, "self.bin", &data, "alice");
    net.run();
    assert!(net.peers[a].events.iter().any(|e| matches!(
        e,
        Event::Direct { from, text } if from == "alice" && text == "note to self"
    )));
    let offers = net.peers[a].offers();
    assert_eq!(offers.len(), 1, "{split:?}");
    let (received, ref name, size, ref peer) = offers[0];
    assert_eq!(
        (name.as_str(), size, peer.as_str()),
        ("self.bin", 70_001, "alice")
    );
    assert_eq!(sent % 2, 0, "the client's own id is even");
    assert_eq!(received % 2, 1, "the server's id is odd");
    assert_eq!(net.peers[a].disk.stored["self.bin"], data);
    let ended = net.peers[a].ended();
    assert!(ended.contains(&(sent, Outcome::Verified)), "{ended:?}");
    assert!(ended.contains(&(received, Outcome::Verified)), "{ended:?}");
    assert_eq!(net.hub.relay_count(), 0);
    assert!(net.inbox.stored.is_empty());
}

#[test]
fn scenarios_in_every_split() {
    for split in splits() {
        handshake(split);
        refused_names(split);
        room_of_three(split);
        direct_message(split);
        upload(split, 0);
        upload(split, 1);
        upload(split, 200_000);
        relay(split, 150_001);
        to_oneself(split);
    }
}

#[test]
fn large_upload_and_relay() {
    let split = Split::Random {
        seed: 3,
        max: 70_000,
    };
    upload(split, 5 << 20);
    relay(split, 5 << 20);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn scenarios_in_random_splits(seed in any::<u64>(), max in 1usize..5000) {
        let split = Split::Random { seed, max };
        room_of_three(split);
        direct_message(split);
        upload(split, 100_003);
        relay(split, 70_000);
    }
}

#[test]
fn several_transfers_interleaved_with_chat() {
    let mut net = Net::new(config(), Split::Random { seed: 5, max: 9000 });
    let a = net.join("alice");
    let b = net.join("bob");
    let c = net.join("carol");
    let files: Vec<Vec<u8>> = (0..3).map(|i| file_bytes(8 << 20, 100 + i)).collect();
    let to_inbox = net.send_file(a, "one.bin", &files[0], "");
    let to_bob = net.send_file(a, "two.bin", &files[1], "bob");
    let from_carol = net.send_file(c, "three.bin", &files[2], "alice");
    // Let the transfers get going, then chat while they run.
    for _ in 0..4 {
        net.step();
    }
    net.say(b, "still there?");
    let mut chat_seen_at = None;
    for step in 0..10_000_000u64 {
        if !net.step() {
            break;
        }
        if chat_seen_at.is_none()
            && net.peers[a]
                .messages()
                .iter()
                .any(|m| m.2 == "still there?")
        {
            chat_seen_at = Some(step);
            // The message overtook the files: none of them is finished yet.
            assert!(net.peers[a].ended().is_empty(), "chat waited for the files");
            assert!(net.peers[c].ended().is_empty(), "chat waited for the files");
        }
    }
    // Each step moves at most one link's worth (256 KiB) per direction: the
    // chat line went past megabytes of queued file data.
    assert!(
        chat_seen_at.unwrap() <= 3,
        "chat took {chat_seen_at:?} steps"
    );
    net.run();
    assert!(chat_seen_at.is_some());
    let ended = net.peers[a].ended();
    assert!(ended.contains(&(to_inbox, Outcome::Verified)));
    assert!(ended.contains(&(to_bob, Outcome::Verified)));
    assert_eq!(net.peers[c].ended(), vec![(from_carol, Outcome::Verified)]);
    assert_eq!(net.inbox.stored["one.bin"], files[0]);
    assert_eq!(net.peers[b].disk.stored["two.bin"], files[1]);
    assert_eq!(net.peers[a].disk.stored["three.bin"], files[2]);
}

#[test]
fn cancel_by_sender_and_by_receiver() {
    for split in [
        Split::Whole,
        Split::Random {
            seed: 77,
            max: 20_000,
        },
    ] {
        cancel_by_sender_and_by_receiver_with(split);
    }
}

fn cancel_by_sender_and_by_receiver_with(split: Split) {
    let mut net = Net::new(config(), split);
    let a = net.join("alice");
    let b = net.join("bob");
    let data = file_bytes(8 << 20, 1);
    // Bob's disk is slow, so the relay cannot finish before the cancel.
    net.peers[b].disk.writing = false;
    let id = net.send_file(a, "big.iso", &data, "bob");
    net.run();
    let now = net.now;
    net.peers[a]
        .conn
        .cancel(now, id, Code::CANCELLED, "changed my mind")
        .unwrap();
    net.peers[b].disk.writing = true;
    net.run();
    assert!(
        matches!(&net.peers[a].ended()[..], [(i, Outcome::Cancelled { by_peer: false, .. })] if *i == id)
    );
    assert!(matches!(
        &net.peers[b].ended()[..],
        [(
            _,
            Outcome::Cancelled {
                code: Code::CANCELLED,
                by_peer: true,
                ..
            }
        )]
    ));
    assert!(!net.peers[b].disk.stored.contains_key("big.iso"));
    assert_eq!(net.hub.relay_count(), 0);

    // Now the receiver cancels an upload... to the inbox, from the hub side.
    let id = net.send_file(b, "other.iso", &data, "alice");
    net.peers[a].disk.writing = false;
    net.run();
    let (offer_id, ..) = net.peers[a].offers()[0].clone();
    let now = net.now;
    net.peers[a]
        .conn
        .cancel(now, offer_id, Code::CANCELLED, "not now")
        .unwrap();
    net.run();
    assert!(net.peers[b].ended().iter().any(|(i, o)| *i == id
        && matches!(
            o,
            Outcome::Cancelled {
                code: Code::CANCELLED,
                by_peer: true,
                ..
            }
        )));
    // Both still chat.
    net.say(a, "still friends?");
    net.run();
    assert_eq!(net.peers[b].messages().last().unwrap().2, "still friends?");
}

#[test]
fn rejected_offers() {
    for split in splits() {
        rejected_offers_with(split);
    }
}

fn rejected_offers_with(split: Split) {
    let mut net = Net::new(config(), split);
    let a = net.join("alice");
    let b = net.join("bob");
    net.peers[b].disk.policy = Some(OfferPolicy::Reject);
    let to_bob = net.send_file(a, "x.txt", b"hello", "bob");
    let to_nobody = net.send_file(a, "y.txt", b"hello", "nobody");
    net.inbox.policy = Some(OfferPolicy::Reject);
    let to_inbox = net.send_file(a, "z.txt", b"hello", "");
    net.run();
    let ended = net.peers[a].ended();
    let code_of = |id| {
        ended.iter().find_map(|(i, o)| match o {
            Outcome::Rejected { code, .. } if *i == id => Some(*code),
            _ => None,
        })
    };
    assert_eq!(code_of(to_bob), Some(Code::FILE_REJECTED));
    assert_eq!(code_of(to_nobody), Some(Code::NO_SUCH_USER));
    assert_eq!(code_of(to_inbox), Some(Code::FILE_REJECTED));
}

#[test]
fn unsafe_file_name_is_rejected_by_receiver() {
    use bytes::BytesMut;
    use ferry_core::frame::Frame;
    // A hand-made client that offers "../../etc/passwd".
    let mut net = Net::new(config(), Split::Whole);
    let a = net.join("alice");
    let mut raw = BytesMut::new();
    Frame::Offer {
        id: 0,
        size: 5,
        name: "../../etc/passwd".into(),
        peer: "".into(),
    }
    .encode(&mut raw)
    .unwrap();
    let client = net.peers[a].client;
    let now = net.now;
    net.hub.handle_input(client, now, &raw);
    let mut answer = BytesMut::new();
    while let Some(bytes) = net.hub.poll_transmit(client) {
        answer.extend_from_slice(&bytes);
    }
    let frame = ferry_core::frame::decode(&mut answer, 1 << 20)
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            frame,
            Frame::Reject {
                id: 0,
                code: Code::BAD_FILE_NAME,
                ..
            }
        ),
        "{frame:?}"
    );
    assert!(net
        .hub_events
        .iter()
        .all(|e| !matches!(e, HubEvent::Transfer { .. })));
}

#[test]
fn corrupted_chunk_is_detected_at_the_end() {
    for split in [
        Split::Whole,
        Split::Random {
            seed: 77,
            max: 20_000,
        },
    ] {
        corrupted_chunk_is_detected_at_the_end_with(split);
    }
}

fn corrupted_chunk_is_detected_at_the_end_with(split: Split) {
    let mut net = Net::new(config(), split);
    let a = net.join("alice");
    let data = file_bytes(1 << 20, 11);
    let start = net.peers[a].up.passed;
    // Flip a byte well inside the file data.
    net.peers[a].up.corrupt_at = Some(start + 500_000);
    let id = net.send_file(a, "data.bin", &data, "");
    net.run();
    assert!(
        matches!(&net.peers[a].ended()[..], [(i, Outcome::Failed { code: Code::HASH_MISMATCH, .. })] if *i == id),
        "{:?}",
        net.peers[a].ended()
    );
    assert!(
        !net.inbox.stored.contains_key("data.bin"),
        "a corrupt file was stored"
    );
    assert!(
        !net.inbox.partial.contains_key("data.bin"),
        "a corrupt partial was kept"
    );
    // A retry over a clean link succeeds.
    net.peers[a].up.corrupt_at = None;
    let retry = net.send_file(a, "data.bin", &data, "");
    net.run();
    assert!(net.peers[a].ended().contains(&(retry, Outcome::Verified)));
    assert_eq!(net.inbox.stored["data.bin"], data);
}

fn resume_after_drop(split: Split, tamper_partial: bool) {
    let mut net = Net::new(config(), split);
    let a = net.join("alice");
    let data = file_bytes(3 << 20, 21);
    net.send_file(a, "movie.mkv", &data, "");
    // Move part of the file, then cut the connection.
    while net.inbox.partial.get("movie.mkv").map_or(0, Vec::len) < 1 << 20 {
        assert!(net.step(), "transfer stalled");
    }
    net.peers[a].cut = true;
    let client = net.peers[a].client;
    let now = net.now;
    net.hub.handle_eof(client, now);
    net.run();
    let held = net.inbox.partial["movie.mkv"].len();
    assert!(
        held >= 1 << 20 && held < data.len(),
        "partial of {held} bytes"
    );
    assert!(!net.inbox.stored.contains_key("movie.mkv"));
    if tamper_partial {
        net.inbox.partial.get_mut("movie.mkv").unwrap()[1000] ^= 0xFF;
    }
    // The user reconnects and sends the same file again, with the key the
    // inbox issued for it.
    net.run_for(Duration::from_secs(1));
    let again = net.rejoin(a, "alice");
    let id = net.send_file(again, "movie.mkv", &data, "");
    net.run();
    assert_eq!(net.peers[again].ended(), vec![(id, Outcome::Verified)]);
    assert_eq!(net.inbox.stored["movie.mkv"], data);
    let accepted_at = net.peers[again].events.iter().find_map(|e| match e {
        Event::Transfer(TransferEvent::Accepted { offset, .. }) => Some(*offset),
        _ => None,
    });
    assert_eq!(
        accepted_at,
        Some(held as u64),
        "the receiver offered to resume"
    );
    // Only what was missing crossed the wire, unless the prefix was bad.
    let restarted = net.hub_events.iter().any(|e| {
        matches!(
            e,
            HubEvent::Transfer {
                event: TransferEvent::Restarted { .. },
                ..
            }
        )
    });
    assert_eq!(restarted, tamper_partial);
}

#[test]
fn dropped_connection_resumes_to_the_same_verified_file() {
    for split in [
        Split::Whole,
        Split::Random {
            seed: 8,
            max: 20_000,
        },
    ] {
        resume_after_drop(split, false);
        resume_after_drop(split, true);
    }
}

#[test]
fn resume_of_a_relayed_transfer_checks_the_prefix() {
    for split in [
        Split::Whole,
        Split::Random {
            seed: 77,
            max: 20_000,
        },
    ] {
        resume_of_a_relayed_transfer_checks_the_prefix_with(split);
    }
}

fn resume_of_a_relayed_transfer_checks_the_prefix_with(split: Split) {
    let mut net = Net::new(config(), split);
    let a = net.join("alice");
    let b = net.join("bob");
    let data = file_bytes(2 << 20, 33);
    // Bob holds a partial copy from an earlier attempt of alice's, who kept
    // the key bob issued for it.
    let key = ResumeKey::from_bytes([7; 16]);
    net.peers[b]
        .disk
        .partial
        .insert("song.flac".into(), data[..700_000].to_vec());
    net.peers[b]
        .disk
        .keys_issued
        .insert("song.flac".into(), key);
    net.peers[a]
        .disk
        .resume_keys
        .insert("song.flac".into(), key);
    let id = net.send_file(a, "song.flac", &data, "bob");
    net.run();
    assert_eq!(net.peers[a].ended(), vec![(id, Outcome::Verified)]);
    assert_eq!(net.peers[b].disk.stored["song.flac"], data);
    assert!(net.peers[a].events.iter().any(|e| matches!(
        e,
        Event::Transfer(TransferEvent::Accepted {
            offset: 700_000,
            ..
        })
    )));
    // And a partial that does not match the sender's file starts over.
    let mut wrong = data[..500_000].to_vec();
    wrong[10] ^= 1;
    let key2 = ResumeKey::from_bytes([8; 16]);
    net.peers[b].disk.partial.insert("song2.flac".into(), wrong);
    net.peers[b]
        .disk
        .keys_issued
        .insert("song2.flac".into(), key2);
    net.peers[a]
        .disk
        .resume_keys
        .insert("song2.flac".into(), key2);
    let id = net.send_file(a, "song2.flac", &data, "bob");
    net.run();
    assert!(net.peers[a].ended().contains(&(id, Outcome::Verified)));
    assert_eq!(net.peers[b].disk.stored["song2.flac"], data);
    assert!(net.peers[b]
        .events
        .iter()
        .any(|e| matches!(e, Event::Transfer(TransferEvent::Restarted { .. }))));
}

#[test]
fn idle_client_is_kept_alive_by_pings() {
    for split in splits() {
        idle_client_is_kept_alive_by_pings_with(split);
    }
}

fn idle_client_is_kept_alive_by_pings_with(split: Split) {
    let mut net = Net::new(config(), split);
    let a = net.join("alice");
    net.run_for(Duration::from_secs(300));
    assert!(net.peers[a].conn.is_open());
    assert!(net.peers[a]
        .events
        .iter()
        .any(|e| matches!(e, Event::Pong { .. })));
    assert_eq!(net.hub.members(""), vec!["alice"]);
}

#[test]
fn silent_client_times_out() {
    for split in splits() {
        silent_client_times_out_with(split);
    }
}

fn silent_client_times_out_with(split: Split) {
    let mut net = Net::new(config(), split);
    let a = net.join("alice");
    let b = net.join("bob");
    // Alice's machine vanishes: nothing more arrives from her.
    net.peers[a].cut = true;
    net.run_for(Duration::from_secs(29));
    assert_eq!(net.hub.members(""), vec!["alice", "bob"]);
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.hub.members(""), vec!["bob"]);
    assert_eq!(
        net.lefts(b),
        vec![("alice".to_string(), Code::IDLE_TIMEOUT)]
    );
}

/// The hub registers a client's deadline only when it moves earlier, so
/// an active client's first registered deadline fires long before its real
/// one: it must be registered anew then, not taken as the timeout.
#[test]
fn an_active_client_that_falls_silent_times_out_from_its_last_frame() {
    for split in splits() {
        let mut net = Net::new(config(), split);
        let a = net.join("alice");
        let b = net.join("bob");
        for i in 0..12 {
            net.run_for(Duration::from_secs(5));
            net.say(a, &format!("still here {i}"));
        }
        net.run_for(Duration::from_millis(10));
        net.peers[a].cut = true;
        net.run_for(Duration::from_secs(29));
        assert_eq!(net.hub.members(""), vec!["alice", "bob"], "{split:?}");
        net.run_for(Duration::from_secs(2));
        assert_eq!(net.hub.members(""), vec!["bob"], "{split:?}");
        assert_eq!(
            net.lefts(b),
            vec![("alice".to_string(), Code::IDLE_TIMEOUT)]
        );
    }
}

#[test]
fn handshake_timeout() {
    let mut net = Net::new(config(), Split::Whole);
    let b = net.join("bob");
    // A socket that connects and says nothing.
    let mute = net.hub.connect(net.now);
    net.run_for(Duration::from_secs(9));
    assert!(net
        .hub_events
        .iter()
        .all(|e| !matches!(e, HubEvent::Closed { client, .. } if *client == mute)));
    net.run_for(Duration::from_secs(2));
    assert!(net.hub_events.iter().any(|e| matches!(e,
        HubEvent::Closed { client, code: Code::HANDSHAKE_TIMEOUT, .. } if *client == mute)));
    assert!(net.peers[b].conn.is_open());
    // A client that sends its preamble and then stalls is timed out too.
    let mut slow = ferry_core::Connection::client(ClientConfig::new("slowpoke"), net.now);
    let hello: Vec<u8> = std::iter::from_fn(|| slow.poll_transmit())
        .flatten()
        .collect();
    let id = net.hub.connect(net.now);
    let now = net.now;
    net.hub.handle_input(id, now, &hello[..9]);
    net.run_for(Duration::from_secs(11));
    assert!(net.hub_events.iter().any(|e| matches!(e,
        HubEvent::Closed { client, code: Code::HANDSHAKE_TIMEOUT, .. } if *client == id)));
}

#[test]
fn client_notices_a_dead_server() {
    let mut net = Net::new(config(), Split::Whole);
    let a = net.join("alice");
    net.peers[a].cut = true;
    // The client's own timers run; the cut link delivers nothing.
    let mut now = net.now;
    for _ in 0..100 {
        let Some(at) = net.peers[a].conn.poll_timeout() else {
            break;
        };
        now = at;
        net.peers[a].conn.handle_timeout(now);
        while net.peers[a].conn.poll_transmit().is_some() {}
    }
    assert!(now - net.now <= Duration::from_secs(31));
    assert!(net.peers[a].conn.is_closed());
    let events: Vec<Event> = std::iter::from_fn(|| net.peers[a].conn.poll_event()).collect();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Closed {
            code: Code::IDLE_TIMEOUT,
            by_peer: false,
            ..
        }
    )));
}

#[test]
fn slow_reader_is_dropped_while_the_others_carry_on() {
    for split in [
        Split::Whole,
        Split::Random {
            seed: 77,
            max: 20_000,
        },
    ] {
        slow_reader_is_dropped_while_the_others_carry_on_with(split);
    }
}

fn slow_reader_is_dropped_while_the_others_carry_on_with(split: Split) {
    let mut net = Net::new(config(), split);
    let a = net.join("alice");
    let b = net.join("bob");
    let c = net.join("carol");
    net.peers[c].down.reading = false;
    net.peers[c].down.capacity = 64 * 1024;
    let line = "x".repeat(4000);
    let mut sent = 0;
    while net.hub.members("").len() == 3 {
        // Within the flood limit: a burst, then a pause.
        for _ in 0..10 {
            net.say(a, &line);
            sent += 1;
        }
        net.run_for(Duration::from_secs(1));
        assert!(sent < 2000, "carol was never dropped");
    }
    assert_eq!(net.lefts(a), vec![("carol".to_string(), Code::SLOW_READER)]);
    assert_eq!(net.lefts(b), vec![("carol".to_string(), Code::SLOW_READER)]);
    // The hub never held much more than the limit for her.
    assert!(
        net.peak_queued.0 <= (1 << 20) + 8192,
        "peak {}",
        net.peak_queued.0
    );
    // Bob got every message, in order.
    assert_eq!(net.peers[b].messages().len(), sent);
    net.say(b, "carol left?");
    net.run();
    assert_eq!(net.peers[a].messages().last().unwrap().2, "carol left?");
}

#[test]
fn relay_holds_at_most_a_window_while_the_receiver_is_slow() {
    for split in [
        Split::Whole,
        Split::Random {
            seed: 77,
            max: 20_000,
        },
    ] {
        relay_holds_at_most_a_window_while_the_receiver_is_slow_with(split);
    }
}

fn relay_holds_at_most_a_window_while_the_receiver_is_slow_with(split: Split) {
    let mut net = Net::new(config(), split);
    let a = net.join("alice");
    let b = net.join("bob");
    let window = config().connection.window as usize;
    let data = file_bytes(24 << 20, 5);
    // Bob reads, but his disk confirms slowly: one chunk every 10 ms.
    net.peers[b].disk.writing = false;
    let id = net.send_file(a, "slow.bin", &data, "bob");
    let mut rounds = 0;
    while !net.peers[a].ended().iter().any(|(i, _)| *i == id) {
        net.run();
        let p = &mut net.peers[b];
        if let Some((tid, upto)) = p.disk.unconfirmed.pop_front() {
            let now = net.now;
            let _ = p.conn.confirm_written(now, tid, upto);
        }
        net.run_for(Duration::from_millis(10));
        rounds += 1;
        assert!(rounds < 100_000);
    }
    assert_eq!(net.peers[a].ended(), vec![(id, Outcome::Verified)]);
    assert_eq!(net.peers[b].disk.stored["slow.bin"], data);
    // What the hub held for bob never exceeded one window plus framing.
    assert!(
        net.peak_queued.1 <= window + 64 * 1024,
        "peak {} > window {window}",
        net.peak_queued.1
    );
}

#[test]
fn flooding_client_is_dropped() {
    for split in splits() {
        flooding_client_is_dropped_with(split);
    }
}

fn flooding_client_is_dropped_with(split: Split) {
    let mut net = Net::new(config(), split);
    let a = net.join("alice");
    let b = net.join("bob");
    for i in 0..30 {
        net.say(a, &format!("spam {i}"));
    }
    net.run();
    assert_eq!(net.peers[a].closed(), Some((Code::FLOODING, true)));
    assert_eq!(net.lefts(b), vec![("alice".to_string(), Code::FLOODING)]);
    assert_eq!(net.peers[b].messages().len(), 20);
    // Paced messages are fine.
    let c = net.join("carol");
    for i in 0..40 {
        net.say(c, &format!("calm {i}"));
        net.run_for(Duration::from_millis(150));
    }
    assert!(net.peers[c].conn.is_open());
}

#[test]
fn garbage_is_told_why_and_others_carry_on() {
    // Without raw-text guests, as version 1 servers first did: a peer that
    // is not ferry is told so in a frame. (With guests, text is a guest:
    // core/tests/guests.rs.)
    let mut config = config();
    config.guests = false;
    let mut net = Net::new(config, Split::Whole);
    let a = net.join("alice");
    let cases: Vec<(&[u8], Code)> = vec![
        (b"GET / HTTP/1.1\r\n\r\n", Code::NOT_FERRY),
        (b"\x89FERRY\r\n\x01\xff\xff\xff\xff", Code::FRAME_TOO_LARGE),
        (
            b"\x89FERRY\r\n\x30\x00\x00\x00\x00",
            Code::UNKNOWN_FRAME_TYPE,
        ),
        (
            b"\x89FERRY\r\n\x10\x00\x00\x00\x02\x00\x00",
            Code::UNEXPECTED_FRAME,
        ),
        (b"\x89FERRY\r\n\x01\x00\x00\x00\x01\x00", Code::MALFORMED),
    ];
    for (bytes, code) in cases {
        let now = net.now;
        let id = net.hub.connect(now);
        net.hub.handle_input(id, now, bytes);
        let mut reply = bytes::BytesMut::new();
        while let Some(b) = net.hub.poll_transmit(id) {
            reply.extend_from_slice(&b);
        }
        let closed = std::iter::from_fn(|| net.hub.poll_event()).find_map(|e| match e {
            HubEvent::Closed { client, code, .. } if client == id => Some(code),
            _ => None,
        });
        assert_eq!(closed, Some(code), "{bytes:?}");
        // The peer was told, in a frame it can parse after the preamble.
        assert!(reply.starts_with(b"\x89FERRY\r\n"), "{reply:?}");
        let _ = reply.split_to(8);
        let frame = ferry_core::frame::decode(&mut reply, 4096)
            .unwrap()
            .unwrap();
        assert!(matches!(frame, ferry_core::frame::Frame::Error { code: c, .. } if c == code));
        net.hub.remove(id, now);
    }
    net.say(a, "unbothered");
    net.run();
    assert_eq!(net.peers[a].messages().last().unwrap().2, "unbothered");
}

#[test]
fn server_announcement_and_shutdown() {
    for split in splits() {
        server_announcement_and_shutdown_with(split);
    }
}

fn server_announcement_and_shutdown_with(split: Split) {
    let mut net = Net::new(config(), split);
    let a = net.join("alice");
    let now = net.now;
    net.hub.announce(now, "", "maintenance at noon").unwrap();
    net.run();
    assert_eq!(net.peers[a].messages().last().unwrap().1, "");
    net.hub.shutdown(now, "bye for now");
    net.run();
    assert_eq!(net.peers[a].closed(), Some((Code::SHUTDOWN, true)));
}

#[test]
fn rooms_are_separate() {
    for split in splits() {
        rooms_are_separate_with(split);
    }
}

fn rooms_are_separate_with(split: Split) {
    let mut net = Net::new(config(), split);
    let a = net.join("alice");
    let b = net.connect(ClientConfig::new("bob").room("Kitchen"));
    let alice_too = net.connect(ClientConfig::new("ALICE").room("kitchen"));
    net.run();
    assert!(net.peers[b].conn.is_open());
    assert!(
        net.peers[alice_too].conn.is_open(),
        "names are unique per room"
    );
    assert_eq!(net.peers[b].conn.room(), "Kitchen");
    net.say(a, "lobby only");
    net.say(b, "kitchen only");
    let now = net.now;
    net.peers[b].conn.direct(now, "carol", "hm").unwrap();
    net.run();
    let texts =
        |i: usize| -> Vec<String> { net.peers[i].messages().into_iter().map(|m| m.2).collect() };
    assert_eq!(texts(a), vec!["lobby only"]);
    assert_eq!(texts(b), vec!["kitchen only"]);
    assert_eq!(texts(alice_too), vec!["kitchen only"]);
    assert_eq!(net.hub.members("KITCHEN"), vec!["bob", "ALICE"]);
    // A user in another room cannot be reached directly.
    let c = net.join("carol");
    net.peers[b]
        .conn
        .direct(now, "carol", "over here?")
        .unwrap();
    net.run();
    assert!(net.peers[c]
        .events
        .iter()
        .all(|e| !matches!(e, Event::Direct { .. })));
    assert!(
        net.peers[b]
            .events
            .iter()
            .filter(|e| matches!(
                e,
                Event::Bounced {
                    code: Code::NO_SUCH_USER,
                    ..
                }
            ))
            .count()
            == 2
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// However the stream is split and wherever the connection drops, the
    /// user who keeps retrying ends up with the identical, verified file,
    /// and the inbox never holds it under its final name before then.
    #[test]
    fn drops_and_resumes_end_with_the_same_verified_file(
        seed in any::<u64>(),
        max in 1usize..40_000,
        cuts in proptest::collection::vec(1_000usize..1_500_000, 0..4),
        to_user in any::<bool>(),
    ) {
        let mut net = Net::new(config(), Split::Random { seed, max });
        let receiver = to_user.then(|| net.join("bob"));
        let data = file_bytes(1_600_000, seed);
        let stored = |net: &Net| match receiver {
            Some(b) => net.peers[b].disk.stored.get("f.bin").cloned(),
            None => net.inbox.stored.get("f.bin").cloned(),
        };
        let mut cuts = cuts;
        cuts.sort_unstable();
        let mut attempt = 0;
        let mut previous = None;
        loop {
            attempt += 1;
            prop_assert!(attempt <= 6);
            // Each attempt presents the resume key the last one was given.
            let a = match previous {
                Some(old) => net.rejoin(old, "alice"),
                None => net.join("alice"),
            };
            previous = Some(a);
            let id = net.send_file(a, "f.bin", &data, if to_user { "bob" } else { "" });
            let cut_at = cuts.first().copied();
            let start = net.peers[a].up.passed as usize;
            let mut cut = false;
            while net.step() {
                if let Some(at) = cut_at {
                    if net.peers[a].up.passed as usize - start >= at {
                        cut = true;
                        break;
                    }
                }
            }
            if cut {
                cuts.remove(0);
                // A file under its final name is always the whole file.
                if let Some(file) = stored(&net) {
                    prop_assert!(file == data, "a partial file was stored under its final name");
                }
                net.peers[a].cut = true;
                let client = net.peers[a].client;
                let now = net.now;
                net.hub.handle_eof(client, now);
                net.run();
                continue;
            }
            net.run();
            prop_assert_eq!(net.peers[a].ended(), vec![(id, Outcome::Verified)]);
            break;
        }
        prop_assert_eq!(stored(&net), Some(data));
    }
}

#[test]
fn the_server_offers_a_file_of_its_own() {
    for split in splits() {
        let mut net = Net::new(config(), split);
        let a = net.join("alice");
        let data = file_bytes(300_000, 4);
        let client = net.peers[a].client;
        let now = net.now;
        let id = net
            .hub
            .offer_file(client, now, "motd.txt", data.len() as u64)
            .unwrap();
        net.hub_sending
            .insert((client, id), bytes::Bytes::from(data.clone()));
        net.run();
        let offers = net.peers[a].offers();
        assert_eq!(
            offers,
            vec![(id, "motd.txt".to_string(), 300_000, String::new())]
        );
        assert_eq!(net.peers[a].disk.stored["motd.txt"], data);
        assert!(net.hub_events.iter().any(|e| matches!(
            e,
            HubEvent::Transfer {
                event: TransferEvent::Ended {
                    outcome: Outcome::Verified,
                    ..
                },
                ..
            }
        )));
    }
}

#[test]
fn a_broken_transport_is_reported_with_its_reason() {
    let mut net = Net::new(config(), Split::Whole);
    let a = net.join("alice");
    let b = net.join("bob");
    net.peers[a].cut = true;
    let client = net.peers[a].client;
    let now = net.now;
    net.hub
        .handle_broken(client, now, "read failed: Connection reset by peer");
    net.run();
    let closed = net.hub_events.iter().find_map(|e| match e {
        HubEvent::Closed {
            client: c,
            code,
            reason,
            ..
        } if *c == client => Some((*code, reason.clone())),
        _ => None,
    });
    assert_eq!(
        closed,
        Some((
            Code::CONNECTION_LOST,
            "read failed: Connection reset by peer".to_string()
        ))
    );
    // The others hear that alice left, for the same cause.
    assert!(net.peers[b].events.iter().any(|e| matches!(
        e,
        Event::Left {
            code: Code::CONNECTION_LOST,
            ..
        }
    )));
}
