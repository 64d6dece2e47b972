//! The terminal UI's state: everything on screen, changed only by what the
//! client reports ([`App::on_notice`]), by keys (`App::on_key`, in
//! `keys.rs`) and by time ([`App::on_tick`]). It does no I/O: what it wants
//! done comes back as [`Action`]s for the loop to carry out, so the loop
//! never waits on the network or the disk, and tests drive it directly.

use super::transfer::{Direction, Stage, TransferRow};
use crate::display::{bytes, earlier, offered, safe};
use ferry_core::transfer::Outcome;
use ferry_core::{Code, Event};
use ferry_files::{ClientCommand, ClientNotice, Report};
use ferry_tls::Fingerprint;
use std::time::{Duration, Instant};

/// Something the App wants done by the loop around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Hand this to the connected client.
    Command(ClientCommand),
    /// Start connecting, in the background.
    Connect,
    /// Record the server's certificate (the user trusted it on first
    /// contact) in the known-servers file, then connect again.
    TrustServer(Fingerprint),
    /// Leave: the loop ends.
    Exit,
}

/// The state of the link to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Attempt `attempt` is under way (0: the first connection).
    Connecting { attempt: u32 },
    /// In the room.
    Connected,
    /// Attempt `attempt` starts at `at`.
    Waiting { attempt: u32, at: Instant },
    /// We said goodbye; leaving by `by` at the latest.
    Leaving { by: Instant },
    /// A newer connection of ours took our place (`REPLACED`): not
    /// reconnecting, or the two would take turns pushing each other out.
    Replaced,
    /// The server is new to this computer: waiting for the user to trust
    /// its certificate (Ctrl-Y) or leave (Ctrl-N) before anything is sent.
    NewServer { fingerprint: Fingerprint },
    /// Gone for good.
    Closed,
}

/// How long to wait before each reconnection attempt: doubling from
/// `first`, never more than `cap`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Before the first attempt.
    pub first: Duration,
    /// The longest wait.
    pub cap: Duration,
}

impl Backoff {
    /// Before attempt `attempt` (1 for the first).
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(16);
        self.first.saturating_mul(1 << doublings).min(self.cap)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_secs(1),
            cap: Duration::from_secs(15),
        }
    }
}

/// What kind of line of the message log, for its style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// Something we said.
    Own,
    /// Someone else in the room.
    Chat,
    /// A direct message to us.
    Direct,
    /// Joins, leaves, transfers, the link: dimmed.
    Notice,
    /// Said in the room before we joined (`HISTORY`): dimmed and italic.
    History,
    /// Something went wrong.
    Error,
}

/// One line of the message log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Local time of day it arrived, `HH:MM:SS`.
    pub stamp: String,
    /// Its kind.
    pub kind: LineKind,
    /// The text, safe to show.
    pub text: String,
}

/// How long a goodbye may take before we leave anyway.
const LEAVE_WITHIN: Duration = Duration::from_secs(2);
/// How often to measure the round trip while connected.
const PING_EVERY: Duration = Duration::from_secs(5);
/// Lines kept in the message log.
const LOG_LINES: usize = 5000;

/// Everything the terminal UI shows.
#[derive(Debug)]
pub struct App {
    /// The server's address, as given.
    pub server: String,
    /// Our name (as the server has it once welcomed).
    pub name: String,
    /// Our room (as the server has it once welcomed).
    pub room: String,
    /// The link.
    pub link: Link,
    /// The last measured round trip to the server.
    pub rtt: Option<Duration>,
    /// The message log, oldest first.
    pub log: Vec<LogLine>,
    /// Lines scrolled up from the newest (0: following the log).
    pub scroll: usize,
    /// Who is in the room.
    pub members: Vec<String>,
    /// Every transfer of this session, oldest first.
    pub transfers: Vec<TransferRow>,
    /// The line being typed.
    pub input: String,
    /// Which waiting offer Ctrl-Y / Ctrl-N answer (an index among them).
    pub selected_offer: usize,
    /// The latest time seen, for countdowns on screen.
    pub now: Instant,
    backoff: Backoff,
    /// Counts connections: transfer ids are only unique within one.
    generation: u64,
    next_ping: Option<Instant>,
    /// Transfers ended by a cancel with this code and reason: if the
    /// connection then closes with the same, the link took them down and
    /// they resume after reconnecting.
    cancelled: Vec<(usize, Code, String)>,
    clock: fn() -> String,
}

impl App {
    /// The UI of `name` joining `room` on `server`, not yet connected;
    /// [`start`](Self::start) says to connect. `clock` gives the log's
    /// timestamps.
    pub fn new(
        server: String,
        name: String,
        room: String,
        backoff: Backoff,
        clock: fn() -> String,
        now: Instant,
    ) -> Self {
        App {
            server,
            name,
            room,
            link: Link::Connecting { attempt: 0 },
            rtt: None,
            log: Vec::new(),
            scroll: 0,
            members: Vec::new(),
            transfers: Vec::new(),
            input: String::new(),
            selected_offer: 0,
            now,
            backoff,
            generation: 0,
            next_ping: None,
            cancelled: Vec::new(),
            clock,
        }
    }

    /// The first connection.
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        self.now = now;
        self.link = Link::Connecting { attempt: 0 };
        self.notice(format!("connecting to {}", self.server));
        vec![Action::Connect]
    }

    /// Whether the loop should end.
    pub fn is_finished(&self) -> bool {
        self.link == Link::Closed
    }

    /// Rows waiting for the user's answer, in order.
    pub fn waiting_offers(&self) -> impl Iterator<Item = (usize, &TransferRow)> {
        self.transfers
            .iter()
            .enumerate()
            .filter(|(_, row)| matches!(row.stage, Stage::Asking { .. }))
    }

    /// The offer Ctrl-Y / Ctrl-N would answer: its row index.
    pub fn selected_offer_row(&self) -> Option<usize> {
        let waiting: Vec<usize> = self.waiting_offers().map(|(i, _)| i).collect();
        if waiting.is_empty() {
            return None;
        }
        Some(waiting[self.selected_offer % waiting.len()])
    }

    /// Time passes: reconnect when due, measure the round trip, leave when
    /// a goodbye takes too long.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        self.now = now;
        match self.link {
            Link::Waiting { attempt, at } if now >= at => {
                self.link = Link::Connecting { attempt };
                vec![Action::Connect]
            }
            Link::Connected if self.next_ping.is_some_and(|at| now >= at) => {
                self.next_ping = Some(now + PING_EVERY);
                vec![Action::Command(ClientCommand::Ping)]
            }
            Link::Leaving { by } if now >= by => {
                self.link = Link::Closed;
                vec![Action::Exit]
            }
            _ => Vec::new(),
        }
    }

    /// The server is not pinned, not certified for its name and not in
    /// the known-servers file: nothing was sent to it. The user is shown
    /// its fingerprint and asked; no attempt is made meanwhile.
    pub fn on_new_server(&mut self, fingerprint: Fingerprint, now: Instant) -> Vec<Action> {
        self.now = now;
        if matches!(self.link, Link::Leaving { .. } | Link::Closed) {
            return Vec::new();
        }
        self.notice(format!(
            "the server at {} is new to this computer; its certificate's fingerprint is",
            self.server
        ));
        self.notice(format!("    {fingerprint}"));
        self.notice(
            "compare it with the one `ferry serve` printed there: Ctrl-Y trusts it and \
             remembers it, Ctrl-N leaves"
                .into(),
        );
        self.link = Link::NewServer { fingerprint };
        Vec::new()
    }

    /// The user's answer about a new server.
    pub fn answer_new_server(&mut self, trust: bool) -> Vec<Action> {
        let Link::NewServer { fingerprint } = self.link else {
            return Vec::new();
        };
        if !trust {
            self.notice("not trusted: nothing was sent to it".into());
            self.link = Link::Closed;
            return vec![Action::Exit];
        }
        self.notice(format!("trusted {fingerprint}; connecting"));
        self.link = Link::Connecting { attempt: 0 };
        vec![Action::TrustServer(fingerprint)]
    }

    /// A connection attempt failed: try again after the backoff.
    pub fn on_connect_failed(&mut self, error: &str, now: Instant) -> Vec<Action> {
        self.now = now;
        let attempt = match self.link {
            Link::Connecting { attempt } => attempt + 1,
            // Leaving or gone: no more attempts.
            _ => return Vec::new(),
        };
        let delay = self.backoff.delay(attempt);
        self.error(format!(
            "cannot connect to {}: {}; again in {}",
            self.server,
            safe(error),
            seconds(delay)
        ));
        self.link = Link::Waiting {
            attempt,
            at: now + delay,
        };
        Vec::new()
    }

    /// Leaves: a goodbye when connected, at once otherwise.
    pub fn quit(&mut self) -> Vec<Action> {
        if self.link == Link::Connected {
            self.link = Link::Leaving {
                by: self.now + LEAVE_WITHIN,
            };
            vec![Action::Command(ClientCommand::Bye)]
        } else {
            self.link = Link::Closed;
            vec![Action::Exit]
        }
    }

    /// Something the client reported.
    pub fn on_notice(&mut self, notice: ClientNotice, now: Instant) -> Vec<Action> {
        self.now = now;
        match notice {
            ClientNotice::Event(event) => self.on_event(event, now),
            ClientNotice::File(report) => self.on_report(report, now),
            ClientNotice::Error(error) => {
                self.error(safe(&error));
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn on_event(&mut self, event: Event, now: Instant) -> Vec<Action> {
        match event {
            Event::Welcomed { name, room, .. } => return self.on_welcomed(&name, &room, now),
            Event::History {
                time_ms,
                from,
                text,
            } => {
                let from = if from.is_empty() {
                    "**".to_string()
                } else {
                    format!("<{}>", safe(&from))
                };
                let line = format!("({}) {from} {}", earlier(time_ms), safe(&text));
                self.push(LineKind::History, line);
            }
            Event::Message { from, text, .. } if from.is_empty() => {
                self.push(LineKind::Chat, format!("** {}", safe(&text)));
            }
            Event::Message { from, text, .. } => {
                let kind = if *from == *self.name {
                    LineKind::Own
                } else {
                    LineKind::Chat
                };
                self.push(kind, format!("<{}> {}", safe(&from), safe(&text)));
            }
            Event::Joined { name, .. } => {
                let name = name.to_string();
                // Our own arrival is announced as "connected" already.
                if name != self.name {
                    self.notice(format!("{} joined", safe(&name)));
                }
                if !self.members.contains(&name) {
                    self.members.push(name);
                }
            }
            Event::Left { name, code, .. } => {
                self.notice(format!("{} left ({code})", safe(&name)));
                self.members.retain(|m| **m != *name);
            }
            Event::Members { names } => {
                self.members = names.iter().map(|n| n.to_string()).collect();
                let list: Vec<String> = self.members.iter().map(|n| safe(n)).collect();
                self.notice(format!("here: {}", list.join(", ")));
            }
            Event::Direct { from, text } if from.is_empty() => {
                self.notice(format!("server (to you): {}", safe(&text)));
            }
            Event::Direct { from, text } => {
                self.push(
                    LineKind::Direct,
                    format!("[from {}] {}", safe(&from), safe(&text)),
                );
            }
            Event::Bounced { code, reason } => {
                self.error(format!("not delivered: {code} ({})", safe(&reason)));
            }
            Event::Pong { rtt } => self.rtt = Some(rtt),
            Event::Closed {
                code,
                reason,
                by_peer,
            } => return self.on_closed(code, &reason, by_peer, now),
            _ => {}
        }
        Vec::new()
    }

    fn on_welcomed(&mut self, name: &str, room: &str, now: Instant) -> Vec<Action> {
        self.name = name.to_string();
        self.room = room.to_string();
        let again = self.generation > 0;
        self.generation += 1;
        self.link = Link::Connected;
        self.next_ping = Some(now + PING_EVERY);
        self.notice(format!(
            "{} {} as {} in {}",
            if again {
                "reconnected to"
            } else {
                "connected to"
            },
            self.server,
            safe(name),
            safe(room)
        ));
        // A first round trip at once, then every few seconds.
        let mut actions = vec![Action::Command(ClientCommand::Ping)];
        // Every file we were sending goes again, with the key its receiver
        // handed out: the receiver resumes from what it holds.
        for row in &mut self.transfers {
            if row.direction == Direction::Sending && row.stage == Stage::Interrupted {
                if let Some(path) = &row.path {
                    row.stage = Stage::Waiting;
                    row.id = None;
                    let (path, to) = (path.clone(), row.peer.clone());
                    actions.push(Action::Command(match row.resume_key {
                        Some(key) => ClientCommand::ResumeFile { path, to, key },
                        None => ClientCommand::SendFile { path, to },
                    }));
                }
            }
        }
        actions
    }

    fn on_closed(&mut self, code: Code, reason: &str, by_peer: bool, now: Instant) -> Vec<Action> {
        self.rtt = None;
        self.next_ping = None;
        // Transfers the closing took down resume after reconnecting.
        for (index, cancel_code, cancel_reason) in std::mem::take(&mut self.cancelled) {
            if cancel_code == code && cancel_reason == reason {
                if let Some(row) = self.transfers.get_mut(index) {
                    row.stage = Stage::Interrupted;
                }
            }
        }
        if matches!(self.link, Link::Leaving { .. } | Link::Closed) {
            self.link = Link::Closed;
            return vec![Action::Exit];
        }
        self.members.clear();
        if code == Code::REPLACED && by_peer {
            self.error(format!(
                "a newer connection with this name took our place ({}); \
                 not reconnecting. /quit to leave",
                safe(reason)
            ));
            self.link = Link::Replaced;
            return Vec::new();
        }
        let attempt = 1;
        let delay = self.backoff.delay(attempt);
        let who = if by_peer {
            "the server closed"
        } else {
            "closed"
        };
        self.error(format!(
            "{who} the connection: {code} ({}); reconnecting in {}",
            safe(reason),
            seconds(delay)
        ));
        self.link = Link::Waiting {
            attempt,
            at: now + delay,
        };
        Vec::new()
    }

    fn on_report(&mut self, report: Report, now: Instant) -> Vec<Action> {
        let generation = self.generation;
        match report {
            Report::Offering {
                id,
                path,
                name,
                size,
                to,
            } => {
                let name = safe(&name);
                // A re-offer after a reconnection takes its old row.
                let found = self.transfers.iter().position(|row| {
                    row.id.is_none()
                        && row.path.as_ref() == Some(&path)
                        && row.is_same_file(Direction::Sending, &name, &to, size)
                });
                let index = found.unwrap_or_else(|| {
                    let mut row =
                        TransferRow::new(Direction::Sending, name.clone(), to.to_string(), size);
                    row.path = Some(path);
                    self.transfers.push(row);
                    self.transfers.len() - 1
                });
                let row = &mut self.transfers[index];
                row.generation = generation;
                row.id = Some(id);
                row.stage = Stage::Waiting;
                let target = if to.is_empty() {
                    "the server".to_string()
                } else {
                    safe(&to)
                };
                let again = if found.is_some() { "again " } else { "" };
                self.notice(format!(
                    "offering {name} ({}) {again}to {target}",
                    bytes(size)
                ));
            }
            Report::Asking {
                id,
                name,
                size,
                peer,
                files,
                answer_within,
            } => {
                // A transfer continued with its resume key is taken without
                // asking by the client itself (it arrives as `Offered`);
                // anything asked about is a new file, whoever sends it.
                let name = safe(&name);
                let index = self.incoming_row(id, &name, &peer, size);
                let from = sender(&peer);
                self.transfers[index].stage = Stage::Asking {
                    deadline: now + answer_within,
                };
                self.notice(format!(
                    "{from} offers {name} ({}): Ctrl-Y accepts, Ctrl-N refuses",
                    offered(size, files)
                ));
            }
            Report::Offered {
                id,
                name,
                size,
                peer,
                accepted,
            } => {
                let name = safe(&name);
                let index = self.incoming_row(id, &name, &peer, size);
                let from = sender(&peer);
                match accepted {
                    Some(at) => {
                        self.transfers[index].start(at, now);
                        let resume = if at > 0 {
                            format!(", resuming at {}", bytes(at))
                        } else {
                            String::new()
                        };
                        self.notice(format!("receiving {name} from {from}{resume}"));
                    }
                    None => {
                        self.transfers[index].stage = Stage::Declined("declined".into());
                        self.notice(format!("declined {name} from {from}"));
                    }
                }
            }
            Report::ResumeKey { id, key } => {
                if let Some(row) = self.row(id) {
                    row.resume_key = Some(key);
                }
            }
            Report::Accepted { id, offset } => {
                if let Some(row) = self.row(id) {
                    row.start(offset, now);
                }
            }
            Report::Progress { id, done, .. } => {
                if let Some(row) = self.row(id) {
                    row.progress(done, now);
                }
            }
            Report::Saved { id, path } => {
                let shown = path.display().to_string();
                if let Some(row) = self.row(id) {
                    row.path = Some(path);
                }
                self.notice(format!("saved {}", safe(&shown)));
            }
            Report::PartialKept { name, held, .. } => {
                self.notice(format!(
                    "kept {} ({}) for a resume",
                    safe(&name),
                    bytes(held)
                ));
            }
            Report::LocalError { id, error } => {
                if let Some(row) = self.row(id) {
                    row.stage = Stage::Failed(safe(&error));
                }
                self.error(safe(&error));
            }
            Report::Finished { id, outcome } => self.on_finished(id, outcome),
            _ => {}
        }
        Vec::new()
    }

    fn on_finished(&mut self, id: u32, outcome: Outcome) {
        let generation = self.generation;
        let Some(index) = self
            .transfers
            .iter()
            .position(|row| row.generation == generation && row.id == Some(id))
        else {
            return;
        };
        let row = &mut self.transfers[index];
        let line = match outcome {
            Outcome::Verified => {
                row.done = row.size;
                row.stage = Stage::Verified;
                format!("{} verified ({})", row.name, bytes(row.size))
            }
            Outcome::Rejected { reason, .. } => {
                let why = safe(&reason);
                row.stage = Stage::Declined(why.clone());
                format!("{} declined: {why}", row.name)
            }
            Outcome::Failed { code, reason } => {
                let why = format!("{code} ({})", safe(&reason));
                row.stage = Stage::Failed(why.clone());
                format!("{} failed: {why}", row.name)
            }
            Outcome::Cancelled { code, reason, .. } => {
                let why = format!("cancelled: {code} ({})", safe(&reason));
                row.stage = Stage::Failed(why.clone());
                self.cancelled.push((index, code, reason));
                format!("{} {why}", row.name)
            }
            other => {
                let why = format!("{other:?}");
                row.stage = Stage::Failed(why.clone());
                format!("{} ended: {why}", row.name)
            }
        };
        self.notice(line);
    }

    /// The row of incoming transfer `id` on this connection: the one the
    /// offer already has, else an interrupted one of the same file (the
    /// sender offers it again after a reconnection, ours or theirs), else a
    /// new one.
    fn incoming_row(&mut self, id: u32, name: &str, peer: &str, size: u64) -> usize {
        let generation = self.generation;
        let index = self
            .transfers
            .iter()
            .position(|row| row.generation == generation && row.id == Some(id))
            .or_else(|| {
                self.transfers.iter().position(|row| {
                    matches!(row.stage, Stage::Interrupted | Stage::Failed(_))
                        && row.is_same_file(Direction::Receiving, name, peer, size)
                })
            });
        let index = index.unwrap_or_else(|| {
            self.transfers.push(TransferRow::new(
                Direction::Receiving,
                name.to_string(),
                peer.to_string(),
                size,
            ));
            self.transfers.len() - 1
        });
        let row = &mut self.transfers[index];
        row.generation = generation;
        row.id = Some(id);
        index
    }

    fn row(&mut self, id: u32) -> Option<&mut TransferRow> {
        let generation = self.generation;
        self.transfers
            .iter_mut()
            .find(|row| row.generation == generation && row.id == Some(id))
    }

    /// Adds a line to the log (staying put if scrolled up).
    pub fn push(&mut self, kind: LineKind, text: String) {
        if self.log.len() >= LOG_LINES {
            self.log.remove(0);
        }
        self.log.push(LogLine {
            stamp: (self.clock)(),
            kind,
            text,
        });
        if self.scroll > 0 {
            self.scroll += 1;
        }
    }

    /// A dimmed line about what happened.
    pub fn notice(&mut self, text: String) {
        self.push(LineKind::Notice, text);
    }

    /// A line about what went wrong.
    pub fn error(&mut self, text: String) {
        self.push(LineKind::Error, text);
    }
}

/// `the server` for an empty name, else the name, safe to show.
fn sender(peer: &str) -> String {
    if peer.is_empty() {
        "the server".into()
    } else {
        safe(peer)
    }
}

/// `3s`, `0.5s`.
pub fn seconds(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}
