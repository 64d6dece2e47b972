//! Raw-text guests: peers that speak plain lines of text (`nc`, `telnet`, a
//! bare TCP socket) instead of the ferry protocol, as the [`Hub`] serves
//! them. See "Raw-text guests" in `docs/PROTOCOL.md` (§2.3).
//!
//! This module turns a guest's bytes into clean lines and room frames into
//! clean lines for a guest; the hub decides what the lines mean for the room.
//!
//! [`Hub`]: crate::Hub

use crate::code::Code;
use crate::config::HubConfig;
use crate::frame::Frame;
use crate::text::Text;
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Longest line a guest may send, in bytes, before it is cut (the server's
/// `max_message` applies too, when it is smaller). Bytes past the cap are
/// dropped as they arrive, up to the end of the line: a guest never makes
/// the server buffer more than this.
pub const GUEST_LINE_MAX: usize = 1024;

/// What a guest sees for `/help`.
pub(crate) const HELP: &[&str] = &[
    "* Each line you type is a message to the room.",
    "* /who              who is in the room",
    "* /msg NAME TEXT    a message to NAME only",
    "* /quit             leave",
    "* /help             this help",
    "* //TEXT            a message that starts with /TEXT",
    "* Before your first message, /name NAME picks your name (otherwise you get guest-N).",
    "* Raw-text guests cannot send or receive files: use the ferry program for that.",
];

/// The guest's side of the conversation, for the hub to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GuestEvent {
    /// A complete line, decoded and sanitised; `cut` if it was longer than
    /// the cap and only its start is here.
    Line { text: String, cut: bool },
    /// The connection is over; like [`crate::Event::Closed`].
    Closed {
        code: Code,
        reason: String,
        by_peer: bool,
    },
}

/// What a guest's line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command<'a> {
    /// Nothing to do: an empty or blank line.
    Nothing,
    /// Say this to the room.
    Say(&'a str),
    /// `/name NAME`.
    Name(&'a str),
    /// `/msg NAME TEXT`.
    Direct { to: &'a str, text: &'a str },
    /// `/who`.
    Who,
    /// `/quit`.
    Quit,
    /// `/help`.
    Help,
    /// `/send` or `/file`: explained, never a transfer.
    Files,
    /// A command nobody knows, or one used wrongly.
    Unknown(&'a str),
}

/// Reads a sanitised line as a guest command.
pub(crate) fn parse(line: &str) -> Command<'_> {
    let line = line.trim();
    if line.is_empty() {
        return Command::Nothing;
    }
    let Some(command) = line.strip_prefix('/') else {
        return Command::Say(line);
    };
    if command.starts_with('/') {
        // `//text` says `/text`.
        return Command::Say(command);
    }
    let (verb, rest) = match command.split_once(' ') {
        Some((verb, rest)) => (verb, rest.trim()),
        None => (command, ""),
    };
    match verb.to_ascii_lowercase().as_str() {
        "name" | "nick" if !rest.is_empty() => Command::Name(rest),
        "msg" | "tell" => match rest.split_once(' ') {
            Some((to, text)) if !text.trim().is_empty() => Command::Direct {
                to,
                text: text.trim(),
            },
            _ => Command::Unknown(line),
        },
        "who" | "names" => Command::Who,
        "quit" | "exit" | "bye" => Command::Quit,
        "help" | "?" => Command::Help,
        "send" | "file" | "offer" => Command::Files,
        _ => Command::Unknown(line),
    }
}

/// Whether a guest's first line is an HTTP request line (`GET / HTTP/1.1`):
/// a web browser or crawler, not a person, which is turned away rather than
/// let into the room.
pub(crate) fn is_http_request(line: &str) -> bool {
    let mut words = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return false;
    };
    matches!(
        method,
        "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "OPTIONS" | "CONNECT" | "PATCH" | "TRACE"
    ) && !target.is_empty()
        && version.starts_with("HTTP/")
}

/// Text made safe for a terminal, in either direction: ANSI escape
/// sequences (CSI, OSC, DCS and other string sequences, two-byte escapes,
/// and their C1 forms) are removed whole, so `\x1b[31m` leaves no `[31m`
/// behind; every other control character (C0, DEL, C1) and the bidi
/// controls that reorder how a line displays are removed; a tab becomes a
/// space. What is left is printable.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                Some('[') => skip_csi(&mut chars),
                Some(']' | 'P' | 'X' | '^' | '_') => skip_string(&mut chars),
                // nF escapes: intermediates, then one final character.
                Some('\u{20}'..='\u{2f}') => {
                    while chars
                        .next_if(|c| ('\u{20}'..='\u{2f}').contains(c))
                        .is_some()
                    {}
                    chars.next();
                }
                // Two-character escapes (ESC 7, ESC c, ...) and a lone ESC.
                _ => {}
            },
            '\u{9b}' => skip_csi(&mut chars),
            '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => skip_string(&mut chars),
            '\t' => out.push(' '),
            c if c.is_control() || is_bidi_control(c) => {}
            c => out.push(c),
        }
    }
    out
}

/// Skips the rest of a CSI sequence: parameter and intermediate bytes, then
/// the final byte.
fn skip_csi(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while chars
        .next_if(|c| ('\u{20}'..='\u{3f}').contains(c))
        .is_some()
    {}
    chars.next_if(|c| ('\u{40}'..='\u{7e}').contains(c));
}

/// Skips a control string (OSC, DCS, SOS, PM, APC) up to and including its
/// terminator: BEL, ST (`ESC \`) or C1 ST; unterminated, to the end.
fn skip_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while let Some(c) = chars.next() {
        match c {
            '\u{7}' | '\u{9c}' => return,
            '\u{1b}' => {
                chars.next_if_eq(&'\\');
                return;
            }
            _ => {}
        }
    }
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// How a room frame reads for a guest: one or more lines, each ending in
/// CR LF, sanitised. `None` for frames a guest does not see.
pub(crate) fn render(frame: &Frame) -> Option<Bytes> {
    let mut out = String::new();
    match frame {
        Frame::Message { from, text, .. } if from.is_empty() => {
            lines_into(&mut out, "* server: ", text)
        }
        Frame::Message { from, text, .. } => {
            lines_into(&mut out, &format!("{}: ", sanitize(from)), text)
        }
        Frame::DirectFrom { from, text } if from.is_empty() => {
            lines_into(&mut out, "* server (to you): ", text)
        }
        Frame::DirectFrom { from, text } => {
            lines_into(&mut out, &format!("{} (to you): ", sanitize(from)), text)
        }
        Frame::History { from, text, .. } if from.is_empty() => {
            lines_into(&mut out, "(earlier) * server: ", text)
        }
        Frame::History { from, text, .. } => {
            lines_into(&mut out, &format!("(earlier) {}: ", sanitize(from)), text)
        }
        Frame::Joined { name, .. } => line_into(&mut out, &format!("* {name} joined")),
        Frame::Left { name, code, .. } => line_into(&mut out, &format!("* {name} left ({code})")),
        Frame::Members { names } => {
            let names: Vec<&str> = names.iter().map(Text::as_str).collect();
            line_into(&mut out, &format!("* in the room: {}", names.join(", ")))
        }
        Frame::Bounce { reason, .. } => line_into(&mut out, &format!("! {reason}")),
        _ => return None,
    }
    Some(Bytes::from(out))
}

/// Whether `frame` is the guest named `name` hearing itself: its own
/// message or its own arrival, which its terminal already shows.
pub(crate) fn is_own(frame: &Frame, name: &str) -> bool {
    match frame {
        Frame::Message { from, .. } => from == name,
        Frame::Joined { name: joined, .. } => joined == name,
        _ => false,
    }
}

/// Every line of `text` with `prefix` in front, so that a message with line
/// breaks cannot pass a line of its own off as someone else's.
fn lines_into(out: &mut String, prefix: &str, text: &str) {
    for line in text.split(['\n', '\r']) {
        line_into(out, &format!("{prefix}{line}"));
    }
}

fn line_into(out: &mut String, line: &str) {
    out.push_str(&sanitize(line));
    out.push_str("\r\n");
}

/// Telnet command bytes (RFC 854) that a telnet client may mix into the
/// stream; they are dropped, never answered.
const IAC: u8 = 0xff;
const SB: u8 = 0xfa;
const SE: u8 = 0xf0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Telnet {
    Data,
    /// After IAC.
    Command,
    /// After IAC WILL/WONT/DO/DONT: one option byte follows.
    Option,
    /// Inside IAC SB ... IAC SE.
    Sub,
    /// IAC inside a subnegotiation.
    SubIac,
}

/// Splits a guest's byte stream into lines of at most `max` bytes, dropping
/// telnet commands. Holds at most `max` bytes.
#[derive(Debug)]
struct LineReader {
    telnet: Telnet,
    line: Vec<u8>,
    /// The current line went over `max`: the rest of it is being dropped.
    cut: bool,
    max: usize,
}

impl LineReader {
    fn feed(&mut self, data: &[u8], lines: &mut Vec<(Vec<u8>, bool)>) {
        for &byte in data {
            self.telnet = match (self.telnet, byte) {
                (Telnet::Data, IAC) => Telnet::Command,
                (Telnet::Data, _) => {
                    self.push(byte, lines);
                    Telnet::Data
                }
                // IAC IAC is a literal 0xFF byte (never valid UTF-8).
                (Telnet::Command, IAC) => {
                    self.push(byte, lines);
                    Telnet::Data
                }
                (Telnet::Command, 0xfb..=0xfe) => Telnet::Option,
                (Telnet::Command, SB) => Telnet::Sub,
                (Telnet::Command | Telnet::Option, _) => Telnet::Data,
                (Telnet::Sub, IAC) => Telnet::SubIac,
                (Telnet::Sub, _) => Telnet::Sub,
                (Telnet::SubIac, SE) => Telnet::Data,
                (Telnet::SubIac, _) => Telnet::Sub,
            };
        }
    }

    /// A line ends at LF or CR (so CR LF ends one line and an empty one,
    /// which is ignored).
    fn push(&mut self, byte: u8, lines: &mut Vec<(Vec<u8>, bool)>) {
        if byte == b'\n' || byte == b'\r' {
            if let Some(line) = self.take() {
                lines.push(line);
            }
        } else if self.line.len() < self.max {
            self.line.push(byte);
        } else {
            self.cut = true;
        }
    }

    /// The line held so far, if any, and whether it was cut.
    fn take(&mut self) -> Option<(Vec<u8>, bool)> {
        if self.line.is_empty() && !self.cut {
            return None;
        }
        let cut = std::mem::take(&mut self.cut);
        Some((std::mem::take(&mut self.line), cut))
    }

    fn has_partial(&self) -> bool {
        !self.line.is_empty() || self.cut
    }
}

/// Decodes a guest's line: invalid UTF-8 becomes U+FFFD, except that a
/// character cut in half by the line cap is dropped; then [`sanitize`].
fn decode(mut raw: &[u8], cut: bool) -> String {
    if cut {
        if let Err(e) = std::str::from_utf8(raw) {
            if e.error_len().is_none() {
                raw = &raw[..e.valid_up_to()];
            }
        }
    }
    sanitize(&String::from_utf8_lossy(raw))
}

/// One raw-text guest connection, with no I/O: bytes in, lines out to the
/// hub; text lines in from the hub, bytes out.
#[derive(Debug)]
pub(crate) struct Guest {
    reader: LineReader,
    events: VecDeque<GuestEvent>,
    outbox: VecDeque<Bytes>,
    queued: usize,
    max_outgoing: usize,
    last_recv: Instant,
    /// When the partial line held (no end of line yet) last grew.
    partial_since: Option<Instant>,
    idle_timeout: Duration,
    line_wait: Duration,
    name: Text,
    closed: bool,
}

impl Guest {
    pub(crate) fn new(config: &HubConfig, now: Instant) -> Guest {
        let max_message = config.connection.max_message as usize;
        Guest {
            reader: LineReader {
                telnet: Telnet::Data,
                line: Vec::new(),
                cut: false,
                max: GUEST_LINE_MAX.min(max_message).max(1),
            },
            events: VecDeque::new(),
            outbox: VecDeque::new(),
            queued: 0,
            max_outgoing: config.connection.max_outgoing,
            last_recv: now,
            partial_since: None,
            idle_timeout: config.guest_idle_timeout,
            line_wait: config.guest_line_wait,
            name: Text::new(),
            closed: false,
        }
    }

    pub(crate) fn name(&self) -> &Text {
        &self.name
    }

    pub(crate) fn set_name(&mut self, name: Text) {
        self.name = name;
    }

    /// The longest line kept.
    pub(crate) fn line_max(&self) -> usize {
        self.reader.max
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    pub(crate) fn is_drained(&self) -> bool {
        self.outbox.is_empty()
    }

    pub(crate) fn queued_bytes(&self) -> usize {
        self.queued
    }

    pub(crate) fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    pub(crate) fn handle_input(&mut self, now: Instant, data: &[u8]) {
        if self.closed || data.is_empty() {
            return;
        }
        self.last_recv = now;
        let mut lines = Vec::new();
        self.reader.feed(data, &mut lines);
        for (raw, cut) in lines {
            self.emit(&raw, cut);
        }
        self.partial_since = self.reader.has_partial().then_some(now);
    }

    /// The guest closed its side: its last line counts even without an end
    /// of line, and closing is how a guest leaves (it has no `BYE`).
    pub(crate) fn handle_eof(&mut self, _now: Instant) {
        if self.closed {
            return;
        }
        self.flush_partial();
        self.close(Code::QUIT, "the guest closed the connection".into(), true);
    }

    pub(crate) fn handle_broken(&mut self, _now: Instant, reason: &str) {
        if !self.closed {
            self.close(Code::CONNECTION_LOST, reason.to_string(), true);
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        if self
            .partial_since
            .is_some_and(|since| now >= since + self.line_wait)
        {
            self.flush_partial();
        }
        if now >= self.last_recv + self.idle_timeout {
            let secs = self.idle_timeout.as_secs_f64();
            self.close_with_error(
                now,
                Code::IDLE_TIMEOUT,
                &format!("nothing received for {secs} s"),
            );
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let idle = self.last_recv + self.idle_timeout;
        Some(
            self.partial_since
                .map_or(idle, |since| idle.min(since + self.line_wait)),
        )
    }

    pub(crate) fn poll_event(&mut self) -> Option<GuestEvent> {
        self.events.pop_front()
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Bytes> {
        let bytes = self.outbox.pop_front()?;
        self.queued -= held(&bytes);
        Some(bytes)
    }

    /// Queues text for the guest (already rendered: sanitised lines ending
    /// in CR LF). A guest whose queue would pass `max_outgoing` is dropped
    /// as a slow reader, like any client.
    pub(crate) fn send(&mut self, _now: Instant, text: Bytes) {
        if self.closed || text.is_empty() {
            return;
        }
        if self.queued + held(&text) > self.max_outgoing {
            let limit = self.max_outgoing;
            self.drop_slow_reader(format!("the outgoing queue passed {limit} bytes"));
            return;
        }
        self.queued += held(&text);
        self.outbox.push_back(text);
    }

    /// Sends one line (sanitised here).
    pub(crate) fn send_line(&mut self, now: Instant, line: &str) {
        let mut out = String::new();
        line_into(&mut out, line);
        self.send(now, Bytes::from(out));
    }

    /// Tells the guest why, then closes.
    pub(crate) fn close_with_error(&mut self, now: Instant, code: Code, reason: &str) {
        if self.closed {
            return;
        }
        self.send_line(now, &format!("! closing: {reason}"));
        self.drop_pending_lines();
        self.close(code, reason.to_string(), false);
    }

    /// Drops the guest as a slow reader because the server's queues
    /// together are over `limit` and this one is among the biggest, behind
    /// the longest.
    pub(crate) fn drop_for_outgoing_memory(&mut self, limit: usize) {
        if self.closed {
            return;
        }
        let queued = self.queued;
        self.drop_slow_reader(format!(
            "the server's queues for all clients passed {limit} bytes and this one \
             ({queued} bytes) was among the biggest, behind the longest"
        ));
    }

    /// Closes a guest that does not read, throwing away what it never took.
    fn drop_slow_reader(&mut self, reason: String) {
        self.outbox.clear();
        self.queued = 0;
        self.close(Code::SLOW_READER, reason, false);
    }

    /// Closes after a `/quit`.
    pub(crate) fn quit(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        self.send_line(now, "* bye");
        self.drop_pending_lines();
        self.close(Code::QUIT, "the guest said /quit".into(), true);
    }

    /// Forgets lines read (in the same input) after the one that closes
    /// the guest: an HTTP request's headers, text after `/quit`. They must
    /// not reach the room. (At the end of stream the last line does count.)
    fn drop_pending_lines(&mut self) {
        self.events
            .retain(|event| !matches!(event, GuestEvent::Line { .. }));
    }

    fn flush_partial(&mut self) {
        self.partial_since = None;
        if let Some((raw, cut)) = self.reader.take() {
            self.emit(&raw, cut);
        }
    }

    fn emit(&mut self, raw: &[u8], cut: bool) {
        self.events.push_back(GuestEvent::Line {
            text: decode(raw, cut),
            cut,
        });
    }

    fn close(&mut self, code: Code, reason: String, by_peer: bool) {
        self.closed = true;
        self.partial_since = None;
        self.reader.line = Vec::new();
        self.events.push_back(GuestEvent::Closed {
            code,
            reason,
            by_peer,
        });
    }
}

/// What a queued line costs the server: its text and its queue entry. A
/// guest's lines are short, so counting the text alone let a queue at its
/// byte limit hold several times that in entries.
fn held(line: &Bytes) -> usize {
    line.len() + std::mem::size_of::<Bytes>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_controls_are_removed_whole() {
        assert_eq!(sanitize("hi\u{1b}[2J\u{1b}[31mred\u{1b}[0m"), "hired");
        assert_eq!(sanitize("a\u{1b}]0;pwned\u{7}b"), "ab");
        assert_eq!(sanitize("a\u{1b}]8;;http://x\u{1b}\\link"), "alink");
        assert_eq!(sanitize("a\u{9b}1;2Hb"), "ab");
        assert_eq!(sanitize("bell\u{7}\u{0}nul\u{7f}del\u{85}"), "bellnuldel");
        assert_eq!(sanitize("tab\there"), "tab here");
        assert_eq!(sanitize("evil\u{202e}txt"), "eviltxt");
        assert_eq!(sanitize("\u{1b}7\u{1b}(Bok\u{1b}"), "ok");
        assert_eq!(sanitize("héllo 🦀"), "héllo 🦀");
    }

    #[test]
    fn lines_split_at_any_end_of_line_and_telnet_is_dropped() {
        let mut reader = LineReader {
            telnet: Telnet::Data,
            line: Vec::new(),
            cut: false,
            max: 8,
        };
        let mut lines = Vec::new();
        let input = b"one\r\ntwo\n\xff\xfb\x01th\xff\xfa\x18\x01\xff\xf0ree\rfour-is-long\nx";
        for byte in input {
            reader.feed(&[*byte], &mut lines);
        }
        let got: Vec<(String, bool)> = lines
            .into_iter()
            .map(|(l, cut)| (String::from_utf8(l).unwrap(), cut))
            .collect();
        assert_eq!(
            got,
            [
                ("one".to_string(), false),
                ("two".to_string(), false),
                ("three".to_string(), false),
                ("four-is-".to_string(), true),
            ]
        );
        assert_eq!(reader.take(), Some((b"x".to_vec(), false)));
    }

    #[test]
    fn a_cut_character_is_dropped_and_bad_utf8_replaced() {
        assert_eq!(decode("ab\u{e9}".as_bytes()[..3].as_ref(), true), "ab");
        assert_eq!(decode(b"a\xffb", false), "a\u{fffd}b");
    }

    #[test]
    fn commands() {
        assert_eq!(parse("  hello  "), Command::Say("hello"));
        assert_eq!(parse("//etc"), Command::Say("/etc"));
        assert_eq!(parse("/name  bob"), Command::Name("bob"));
        assert_eq!(
            parse("/msg bob hi there"),
            Command::Direct {
                to: "bob",
                text: "hi there"
            }
        );
        assert_eq!(parse("/msg bob"), Command::Unknown("/msg bob"));
        assert_eq!(parse("/WHO"), Command::Who);
        assert_eq!(parse("/frobnicate"), Command::Unknown("/frobnicate"));
        assert_eq!(parse("/send x"), Command::Files);
        assert_eq!(parse(" "), Command::Nothing);
        assert!(is_http_request("GET / HTTP/1.1"));
        assert!(!is_http_request("GET me a coffee"));
    }

    #[test]
    fn frames_render_as_clean_lines() {
        let msg = Frame::Message {
            seq: 1,
            from: "alice".into(),
            text: "hi\n\u{1b}[2Jbob: fake".into(),
        };
        assert_eq!(
            render(&msg).unwrap(),
            &b"alice: hi\r\nalice: bob: fake\r\n"[..]
        );
        let left = Frame::Left {
            seq: 2,
            name: "bob".into(),
            code: Code::FLOODING,
        };
        assert_eq!(render(&left).unwrap(), &b"* bob left (flooding)\r\n"[..]);
        assert!(render(&Frame::Bye).is_none());
    }
}
