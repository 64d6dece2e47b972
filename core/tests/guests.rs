//! Raw-text guests in a hub's room, over the in-memory network: a guest
//! typing lines next to ferry clients, in every direction, with hostile
//! input, limits, and the promise that ferry clients are never delayed.

mod sim;

use ferry_core::guest::GUEST_LINE_MAX;
use ferry_core::transfer::Outcome;
use ferry_core::{ClientConfig, ClientId, Code, Connection, Event, Hub, HubConfig, HubEvent};
use sim::{splits, Net, Split};
use std::time::{Duration, Instant};

/// A guest: its id in the hub, and every byte the hub sent it.
struct Guest {
    id: ClientId,
    heard: Vec<u8>,
    split: Split,
}

impl Guest {
    fn connect(net: &mut Net, split: Split) -> Guest {
        let id = net.hub.connect(net.now);
        Guest {
            id,
            heard: Vec::new(),
            split,
        }
    }

    /// Types `bytes` (in the guest's split), then lets the network settle.
    fn type_in(&mut self, net: &mut Net, bytes: &[u8]) {
        let now = net.now;
        let pieces: Vec<&[u8]> = match self.split {
            Split::Whole => vec![bytes],
            Split::OneByte => bytes.chunks(1).collect(),
            Split::Random { seed, max } => {
                let mut rng = sim::Rng::new(seed ^ bytes.len() as u64);
                let mut pieces = Vec::new();
                let mut rest = bytes;
                while !rest.is_empty() {
                    let n = (1 + rng.below(max)).min(rest.len());
                    let (piece, tail) = rest.split_at(n);
                    pieces.push(piece);
                    rest = tail;
                }
                pieces
            }
        };
        for piece in pieces {
            net.hub.handle_input(self.id, now, piece);
            self.listen(net);
        }
        net.run();
        self.listen(net);
    }

    /// Takes in what the hub queued for the guest (before a closed guest
    /// is reaped by `net.run`).
    fn listen(&mut self, net: &mut Net) {
        while let Some(bytes) = net.hub.poll_transmit(self.id) {
            self.heard.extend_from_slice(&bytes);
        }
    }

    /// Everything heard, as text; it must be valid UTF-8 and free of
    /// control characters other than the CR LF that ends each line.
    fn text(&self) -> String {
        let text = String::from_utf8(self.heard.clone()).expect("a guest hears UTF-8");
        for line in text.split_terminator("\r\n") {
            assert!(
                !line.chars().any(char::is_control),
                "a raw control character reached a guest: {line:?}"
            );
        }
        text
    }

    fn lines(&self) -> Vec<String> {
        self.text()
            .split_terminator("\r\n")
            .map(str::to_string)
            .collect()
    }

    fn closed(net: &Net, id: ClientId) -> Option<Code> {
        net.hub_events.iter().find_map(|e| match e {
            HubEvent::Closed { client, code, .. } if *client == id => Some(*code),
            _ => None,
        })
    }
}

fn members(net: &Net) -> Vec<String> {
    net.hub
        .members("")
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn a_room_with_a_guest(split: Split) {
    let mut net = Net::new(HubConfig::default(), split);
    let a = net.join("alice");
    let b = net.join("bob");
    let mut carol = Guest::connect(&mut net, split);
    carol.type_in(&mut net, b"/name carol\r\n");
    assert!(net.hub.is_guest(carol.id));
    assert_eq!(members(&net), ["alice", "bob", "carol"]);
    // Ferry clients see the guest come in like anyone else.
    for p in [a, b] {
        assert!(net.peers[p]
            .events
            .iter()
            .any(|e| matches!(e, Event::Joined { name, .. } if name == "carol")));
    }
    let lines = carol.lines();
    assert!(
        lines[0].starts_with("* welcome to ferry, carol"),
        "{lines:?}"
    );
    assert_eq!(lines[1], "* in the room: alice, bob, carol");

    // Guest → room: an ordinary MESSAGE; the guest hears no echo.
    carol.type_in(&mut net, b"hello, ferry people\n");
    for p in [a, b] {
        assert_eq!(
            net.peers[p]
                .messages()
                .last()
                .map(|m| (m.1.clone(), m.2.clone())),
            Some(("carol".into(), "hello, ferry people".into()))
        );
    }
    // Room → guest.
    net.say(a, "hi carol");
    net.run();
    carol.listen(&mut net);
    // Direct messages both ways, and /who.
    carol.type_in(&mut net, b"/msg alice psst\n/who\n");
    assert!(net.peers[a]
        .events
        .iter()
        .any(|e| matches!(e, Event::Direct { from, text } if from == "carol" && text == "psst")));
    let now = net.now;
    net.peers[b].conn.direct(now, "carol", "just you").unwrap();
    net.run();
    carol.listen(&mut net);
    // Unknown commands are explained, never said.
    carol.type_in(&mut net, b"/frobnicate now\n");
    assert!(net.peers[a]
        .messages()
        .iter()
        .all(|m| !m.2.contains("frobnicate")));
    // bob leaves.
    let now = net.now;
    net.peers[b].conn.bye(now);
    net.run();
    carol.listen(&mut net);
    let lines = carol.lines();
    for expected in [
        "alice: hi carol",
        "* in the room: alice, bob, carol",
        "bob (to you): just you",
        "! unknown command \"/frobnicate now\": /help lists the commands",
        "* bob left (quit)",
    ] {
        assert!(
            lines.iter().any(|l| l == expected),
            "{expected:?} in {lines:#?}"
        );
    }
    assert!(!lines.iter().any(|l| l.contains("hello, ferry people")));

    // /quit: the room sees LEFT QUIT.
    carol.type_in(&mut net, b"/quit\n");
    assert!(carol.text().ends_with("* bye\r\n"));
    assert_eq!(Guest::closed(&net, carol.id), Some(Code::QUIT));
    assert_eq!(
        net.lefts(a).last(),
        Some(&("carol".to_string(), Code::QUIT))
    );
    assert_eq!(members(&net), ["alice"]);
}

#[test]
fn a_guest_chats_with_ferry_clients_in_every_split() {
    for split in splits() {
        a_room_with_a_guest(split);
    }
}

#[test]
fn guests_get_numbered_names_and_the_same_name_rules_as_everyone() {
    let mut net = Net::new(HubConfig::default(), Split::Whole);
    let a = net.join("Alice");
    // A ferry client already called guest-1: the numbering skips it.
    net.join("guest-1");
    let mut first = Guest::connect(&mut net, Split::Whole);
    first.type_in(&mut net, b"hi\n");
    assert_eq!(net.hub.name_of(first.id).unwrap(), "guest-2");
    assert!(net.peers[a]
        .messages()
        .iter()
        .any(|m| m.1 == "guest-2" && m.2 == "hi"));

    // Taken, look-alike and invalid names are refused with a reason; the
    // guest stays outside and may try again.
    let mut g = Guest::connect(&mut net, Split::Whole);
    g.type_in(&mut net, b"/name alice\n");
    g.type_in(&mut net, b"/name \xd0\x90lice\n");
    g.type_in(
        &mut net,
        b"/name this-name-is-much-longer-than-thirty-two\n",
    );
    assert_eq!(net.hub.name_of(g.id), None);
    let lines = g.lines();
    assert!(lines[0].contains("taken"), "{lines:?}");
    assert!(lines[1].contains("looks like \"Alice\""), "{lines:?}");
    assert!(lines[2].contains("at most 32"), "{lines:?}");
    g.type_in(&mut net, b"/name dave\n");
    assert_eq!(net.hub.name_of(g.id).unwrap(), "dave");
    // A name is chosen once.
    g.type_in(&mut net, b"/name eve\n");
    assert!(g.lines().last().unwrap().contains("you are dave"));
    // And a ferry client cannot take a guest's name.
    let i = net.connect(ClientConfig::new("DAVE"));
    net.run();
    assert_eq!(net.peers[i].closed(), Some((Code::NAME_TAKEN, true)));
}

#[test]
fn escapes_and_controls_are_stripped_both_ways() {
    let mut net = Net::new(HubConfig::default(), Split::Whole);
    let a = net.join("alice");
    let mut g = Guest::connect(&mut net, Split::OneByte);
    // Telnet negotiation, colour, a title change, a bell, a cursor move,
    // a NUL, a C1 CSI, invalid UTF-8.
    g.type_in(
        &mut net,
        b"\xff\xfb\x01\xff\xfd\x03\x1b[31mred\x1b[0m \x1b]0;pwned\x07text\x07\x1b[2J\0\xc2\x9b5Aend \xc3(\r\n",
    );
    let said = net.peers[a].messages().last().unwrap().2.clone();
    assert_eq!(said, "red textend \u{fffd}(");
    // What a ferry client sends reaches the guest clean.
    net.say(
        a,
        "\u{1b}[2J\u{1b}]0;owned\u{7}cleared? \u{9b}1m no\tand\u{202e}txt\nbob: fake",
    );
    net.run();
    g.listen(&mut net);
    let lines = g.lines();
    assert_eq!(
        &lines[lines.len() - 2..],
        ["alice: cleared?  no andtxt", "alice: bob: fake"]
    );
}

#[test]
fn long_lines_are_cut_and_never_buffered_whole() {
    let mut net = Net::new(HubConfig::default(), Split::Whole);
    let a = net.join("alice");
    let mut g = Guest::connect(&mut net, Split::Whole);
    // A megabyte with no end of line: the hub holds at most the cap.
    let long = vec![b'x'; 1 << 20];
    g.type_in(&mut net, &long);
    assert!(net.hub.members("").len() == 1, "nothing said yet");
    g.type_in(&mut net, b"\n");
    let said = net.peers[a].messages().last().unwrap().2.clone();
    assert_eq!(said.len(), GUEST_LINE_MAX);
    assert!(g
        .lines()
        .iter()
        .any(|l| l.contains("only its start was kept")));
    // A multi-byte character cut by the cap is dropped whole.
    let mut line = vec![b'y'; GUEST_LINE_MAX - 1];
    line.extend_from_slice("é and more\n".as_bytes());
    g.type_in(&mut net, &line);
    let said = net.peers[a].messages().last().unwrap().2.clone();
    assert_eq!(said, "y".repeat(GUEST_LINE_MAX - 1));
}

#[test]
fn a_guest_that_floods_is_dropped_like_anyone() {
    let mut net = Net::new(HubConfig::default(), Split::Whole);
    let a = net.join("alice");
    let mut g = Guest::connect(&mut net, Split::Whole);
    let spam: String = (0..50).map(|i| format!("spam {i}\n")).collect();
    g.type_in(&mut net, spam.as_bytes());
    assert_eq!(Guest::closed(&net, g.id), Some(Code::FLOODING));
    assert!(g
        .text()
        .contains("! closing: more than 20 messages in a burst"));
    // The first 20 lines went out (the first also joined); then the cut.
    assert_eq!(net.peers[a].messages().len(), 20);
    assert_eq!(net.lefts(a), [("guest-1".to_string(), Code::FLOODING)]);
    assert!(net.peers[a].conn.is_open());
}

#[test]
fn a_guest_that_stops_reading_is_dropped_and_nobody_waits() {
    let mut config = HubConfig::default();
    config.connection.max_outgoing = 64 * 1024;
    config.flood_burst = 10_000;
    let mut net = Net::new(config, Split::Whole);
    let a = net.join("alice");
    let g = net.hub.connect(net.now);
    let now = net.now;
    net.hub.handle_input(g, now, b"/name reader\n");
    // alice talks; the guest never reads.
    for i in 0..2000 {
        net.say(a, &format!("line {i} {}", "z".repeat(40)));
        if i % 100 == 99 {
            net.run();
        }
    }
    assert!(net.hub_events.iter().any(
        |e| matches!(e, HubEvent::Closed { client, code: Code::SLOW_READER, .. } if *client == g)
    ));
    assert_eq!(
        net.peers[a].messages().len(),
        2000,
        "{:?}",
        net.peers[a].closed()
    );
    assert!(net
        .lefts(a)
        .contains(&("reader".to_string(), Code::SLOW_READER)));
}

#[test]
fn files_offered_to_a_guest_are_rejected() {
    let mut net = Net::new(HubConfig::default(), Split::Whole);
    let a = net.join("alice");
    let mut g = Guest::connect(&mut net, Split::Whole);
    g.type_in(&mut net, b"/name carol\n/send notes.txt\n");
    let id = net.send_file(a, "notes.txt", b"hello", "carol");
    net.run();
    let ended = net.peers[a].ended();
    assert!(
        matches!(&ended[..], [(got, Outcome::Rejected { code: Code::FILE_REJECTED, reason })]
            if *got == id && reason.contains("raw-text guest")),
        "{ended:?}"
    );
    assert_eq!(net.hub.relay_count(), 0);
    g.listen(&mut net);
    assert!(g.text().contains("cannot send or receive files"));
    assert!(!g.text().contains("notes.txt"));
}

/// The bytes a hub sends a ferry client in answer to its opening, fed in
/// one read: preamble and WELCOME come out of that same call.
fn opening_answer(config: HubConfig) -> Vec<u8> {
    let now = Instant::now();
    let mut hub = Hub::new(config, now);
    let id = hub.connect(now);
    // Nothing at all before the client's first byte.
    assert_eq!(hub.poll_transmit(id), None);
    let mut client = Connection::client(ClientConfig::new("alice"), now);
    let opening: Vec<u8> = std::iter::from_fn(|| client.poll_transmit())
        .flatten()
        .collect();
    hub.handle_input(id, now, &opening);
    let answer: Vec<u8> = std::iter::from_fn(|| hub.poll_transmit(id))
        .flatten()
        .collect();
    client.handle_input(now, &answer);
    assert!(client.is_open());
    assert!(!hub.is_guest(id));
    answer
}

#[test]
fn a_ferry_client_is_never_kept_waiting() {
    let mut off = HubConfig::default();
    off.guests = false;
    let with_guests = opening_answer(HubConfig::default());
    assert!(with_guests.starts_with(b"\x89FERRY\r\n\x02"));
    assert_eq!(with_guests, opening_answer(off));
}

#[test]
fn a_line_without_an_end_counts_after_a_pause_or_at_the_end() {
    let mut net = Net::new(HubConfig::default(), Split::Whole);
    let a = net.join("alice");
    let mut g = Guest::connect(&mut net, Split::Whole);
    // A QTcpSocket-style write with no newline.
    g.type_in(&mut net, b"no newline");
    net.run_for(Duration::from_millis(900));
    assert!(net.peers[a].messages().is_empty());
    net.run_for(Duration::from_millis(200));
    assert_eq!(net.peers[a].messages().last().unwrap().2, "no newline");
    // The last line before end of file counts too.
    g.type_in(&mut net, b"last words");
    let now = net.now;
    net.hub.handle_eof(g.id, now);
    net.run();
    assert_eq!(net.peers[a].messages().last().unwrap().2, "last words");
    assert_eq!(net.lefts(a), [("guest-1".to_string(), Code::QUIT)]);
}

#[test]
fn idle_guests_have_a_long_timeout_and_silent_sockets_a_short_one() {
    let mut net = Net::new(HubConfig::default(), Split::Whole);
    let a = net.join("alice");
    let mut g = Guest::connect(&mut net, Split::Whole);
    g.type_in(&mut net, b"/name lurker\n");
    // Well past the ferry idle timeout: a guest only reading stays.
    net.run_for(Duration::from_secs(300));
    assert!(members(&net).contains(&"lurker".to_string()));
    net.run_for(Duration::from_secs(301));
    assert!(!members(&net).contains(&"lurker".to_string()));
    assert!(net
        .lefts(a)
        .contains(&("lurker".to_string(), Code::IDLE_TIMEOUT)));
    // A socket that sends nothing at all is closed at the handshake
    // timeout without a byte: it may be a person at nc yet to type.
    let mute = net.hub.connect(net.now);
    net.run_for(Duration::from_secs(9));
    assert_eq!(Guest::closed(&net, mute), None);
    net.hub.handle_timeout(net.now + Duration::from_secs(2));
    assert_eq!(net.hub.poll_transmit(mute), None);
    net.run();
    assert_eq!(Guest::closed(&net, mute), Some(Code::HANDSHAKE_TIMEOUT));
}

#[test]
fn guests_can_be_turned_off_and_are_turned_away_by_a_token_or_as_http() {
    let mut off = HubConfig::default();
    off.guests = false;
    let mut net = Net::new(off, Split::Whole);
    let mut g = Guest::connect(&mut net, Split::Whole);
    g.type_in(&mut net, b"hello\n");
    assert_eq!(Guest::closed(&net, g.id), Some(Code::NOT_FERRY));
    assert!(g.heard.starts_with(b"\x89FERRY\r\n"));

    let mut locked = HubConfig::default();
    locked.token = Some(b"secret".to_vec());
    let mut net = Net::new(locked, Split::Whole);
    let mut g = Guest::connect(&mut net, Split::Whole);
    g.type_in(&mut net, b"/name sneaky\n");
    assert_eq!(Guest::closed(&net, g.id), Some(Code::AUTH_FAILED));
    assert!(g
        .text()
        .starts_with("! closing: this server requires a token"));

    let mut net = Net::new(HubConfig::default(), Split::Whole);
    let a = net.join("alice");
    let mut g = Guest::connect(&mut net, Split::Whole);
    g.type_in(&mut net, b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(Guest::closed(&net, g.id), Some(Code::NOT_FERRY));
    assert_eq!(members(&net), ["alice"], "{:?}", net.peers[a].events);
    // The request's headers, in the same read, never reach the room.
    assert!(
        !net.peers[a]
            .events
            .iter()
            .any(|e| matches!(e, Event::Message { .. })
                || matches!(e, Event::Joined { name, .. } if name != "alice")),
        "{:?}",
        net.peers[a].events
    );
}

#[test]
fn nothing_after_quit_reaches_the_room() {
    for split in splits() {
        let mut net = Net::new(HubConfig::default(), split);
        let a = net.join("alice");
        let mut g = Guest::connect(&mut net, split);
        g.type_in(
            &mut net,
            b"/name dana
hello
/quit
after the quit
",
        );
        assert_eq!(Guest::closed(&net, g.id), Some(Code::QUIT), "{split:?}");
        let said: Vec<String> = net.peers[a]
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Message { text, .. } => Some(text.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(said, ["hello"], "{split:?}");
    }
}

/// PROTOCOL.md §2.3: a name refused for itself leaves the guest outside to
/// try another; a join refused because the room is full closes the guest,
/// whether it asked for a name or took `guest-N`.
#[test]
fn a_full_room_turns_a_guest_away_whichever_way_it_joins() {
    let mut config = HubConfig::default();
    config.max_room_members = 1;
    let mut net = Net::new(config, Split::Whole);
    let a = net.join("alice");
    for typed in [&b"/name bob\n"[..], b"hi\n"] {
        let mut g = Guest::connect(&mut net, Split::Whole);
        g.type_in(&mut net, typed);
        assert_eq!(
            Guest::closed(&net, g.id),
            Some(Code::SERVER_FULL),
            "{typed:?}"
        );
        assert_eq!(g.text(), "! closing: this room is full (1 member)\r\n");
    }
    assert_eq!(members(&net), ["alice"]);
    assert!(net.peers[a].messages().is_empty());
}

#[test]
fn a_full_server_turns_a_guest_away() {
    let mut config = HubConfig::default();
    config.max_clients = 1;
    let mut net = Net::new(config, Split::Whole);
    net.join("alice");
    let mut g = Guest::connect(&mut net, Split::Whole);
    g.type_in(&mut net, b"hi\n");
    assert_eq!(Guest::closed(&net, g.id), Some(Code::SERVER_FULL));
    assert_eq!(g.text(), "! closing: the server is full\r\n");
}
