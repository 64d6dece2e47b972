//! The honest clients beside every attack: a bystander that pings every
//! 20 ms and counts what reaches it from the attackers, a member that
//! chats every 100 ms and checks it hears itself, and a newcomer that
//! joins while the attack goes on.

use super::wire::{code_name, NoFrame, Wire};
use super::{is_hostile, BYSTANDER_FROM, MEMBER_FROM, NEWCOMER_FROM};
use crate::bench::latency::Histogram;
use ferry_core::frame::Frame;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

/// How long an honest client may take to be welcomed before it counts as
/// kept out. Far above the 1 s target, so that a slow join is measured
/// rather than cut short.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The bystander's ping interval.
const PING_EVERY: Duration = Duration::from_millis(20);

/// The member's chat interval: 10 lines a second, within the server's
/// default flood rate of 10 a second (burst 20).
const SAY_EVERY: Duration = Duration::from_millis(100);

/// How long the member waits for its last lines after the attack.
const LAST_ECHO: Duration = Duration::from_secs(1);

/// What the honest clients share with the bench: when the attack runs and
/// when to stop.
pub struct Shared {
    /// Set while the attack runs: only pings sent then are measured.
    pub attacking: AtomicBool,
    /// Set when the honest clients should stop.
    pub stop: AtomicBool,
    /// `JOINED` frames of attackers the bystander has seen, for attacks
    /// that wait for their members to be in the room.
    pub hostile_joined: AtomicU64,
}

/// What the bystander saw.
#[derive(Default)]
pub struct Bystander {
    /// Round trips of the pings sent during the attack, the unanswered at
    /// their age when it stopped.
    pub pings: Histogram,
    /// Pings sent during the attack.
    pub sent: u64,
    /// Of them, never answered.
    pub unanswered: u64,
    /// How it lost its connection, if it did.
    pub dropped: Option<String>,
    /// `MESSAGE` frames from attackers received during the attack.
    pub hostile_messages: u64,
    /// `JOINED` and `LEFT` frames of attackers received during the attack.
    pub hostile_joins: u64,
}

/// Why the connection is over, if what `recv` returned says it is; `None`
/// for a frame to ignore or a timeout.
fn ended(received: Result<Frame, NoFrame>) -> Option<String> {
    match received {
        Ok(Frame::Error { code, reason }) => Some(format!("ERROR {} ({reason})", code_name(code))),
        Ok(_) | Err(NoFrame::Timeout) => None,
        Err(NoFrame::Closed) => Some("closed by the server".into()),
        Err(NoFrame::Garbled(what)) => Some(what),
    }
}

/// Joins as `name` from `from` and reports how it went on `joined`: the
/// time to `WELCOME`, or what kept it out.
fn join_and_report(
    server: SocketAddr,
    from: IpAddr,
    name: &str,
    token: &[u8],
    joined: &Sender<Result<Duration, String>>,
) -> Result<Wire, String> {
    let result = Wire::join(server, from, name, token, JOIN_TIMEOUT);
    let _ = joined.send(result.as_ref().map(|&(_, took)| took).map_err(Clone::clone));
    result.map(|(wire, _)| wire)
}

/// Joins as `bystander`, reports the time to `WELCOME` on `joined`, then
/// pings every 20 ms until told to stop.
pub fn bystander(
    server: SocketAddr,
    token: &[u8],
    shared: &Shared,
    joined: Sender<Result<Duration, String>>,
) -> Bystander {
    let mut seen = Bystander::default();
    let mut wire = match join_and_report(server, BYSTANDER_FROM, "bystander", token, &joined) {
        Ok(wire) => wire,
        Err(e) => {
            seen.dropped = Some(e);
            return seen;
        }
    };
    // Nonce -> when it was sent, for the pings sent during the attack.
    let mut waiting: HashMap<u64, Instant> = HashMap::new();
    let mut nonce = 0u64;
    let mut next_ping = Instant::now();
    while !shared.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= next_ping {
            nonce += 1;
            if let Err(e) = wire.send(&Frame::Ping { nonce }) {
                seen.dropped = Some(format!("cannot ping: {e}"));
                break;
            }
            if shared.attacking.load(Ordering::SeqCst) {
                waiting.insert(nonce, now);
                seen.sent += 1;
            }
            // Late wake-ups do not make up for lost pings with a burst.
            next_ping = (next_ping + PING_EVERY).max(now);
        }
        match wire.recv(next_ping.saturating_duration_since(Instant::now())) {
            Ok(Frame::Pong { nonce }) => {
                if let Some(sent) = waiting.remove(&nonce) {
                    seen.pings.record(nanos(sent.elapsed()));
                }
            }
            Ok(Frame::Message { from, .. }) if is_hostile(&from) => {
                if shared.attacking.load(Ordering::SeqCst) {
                    seen.hostile_messages += 1;
                }
            }
            Ok(Frame::Joined { name, .. }) if is_hostile(&name) => {
                shared.hostile_joined.fetch_add(1, Ordering::SeqCst);
                if shared.attacking.load(Ordering::SeqCst) {
                    seen.hostile_joins += 1;
                }
            }
            Ok(Frame::Left { name, .. }) if is_hostile(&name) => {
                if shared.attacking.load(Ordering::SeqCst) {
                    seen.hostile_joins += 1;
                }
            }
            received => {
                if let Some(why) = ended(received) {
                    seen.dropped = Some(why);
                    break;
                }
            }
        }
    }
    // A ping sent just before the end still gets its answer, if it comes
    // within a second.
    let deadline = Instant::now() + LAST_ECHO;
    while !waiting.is_empty() && seen.dropped.is_none() {
        match wire.recv(deadline.saturating_duration_since(Instant::now())) {
            Ok(Frame::Pong { nonce }) => {
                if let Some(sent) = waiting.remove(&nonce) {
                    seen.pings.record(nanos(sent.elapsed()));
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    // Never silently skipped: a ping nobody answered counts at its age.
    seen.unanswered = waiting.len() as u64;
    for sent in waiting.into_values() {
        seen.pings.record(nanos(sent.elapsed()));
    }
    let _ = wire.send(&Frame::Bye);
    seen
}

/// What the chatting member saw of its own lines.
#[derive(Default)]
pub struct Member {
    /// Lines it said.
    pub said: u64,
    /// Of them, heard back in order.
    pub heard: u64,
    /// Lines heard back out of order (or twice).
    pub disordered: u64,
    /// How it lost its connection, if it did.
    pub dropped: Option<String>,
}

impl Member {
    /// What went wrong for it, if anything.
    pub fn trouble(&self) -> Option<String> {
        if let Some(dropped) = &self.dropped {
            return Some(format!("member dropped: {dropped}"));
        }
        if self.disordered > 0 {
            return Some(format!(
                "member heard {} lines out of order",
                self.disordered
            ));
        }
        (self.heard < self.said).then(|| {
            format!(
                "member missed {} of {} lines (not heard back within 1 s of the end)",
                self.said - self.heard,
                self.said
            )
        })
    }
}

/// Joins as `member`, reports the time to `WELCOME` on `joined`, then says
/// a numbered line every 100 ms until told to stop, checking each comes
/// back in order.
pub fn member(
    server: SocketAddr,
    token: &[u8],
    shared: &Shared,
    joined: Sender<Result<Duration, String>>,
) -> Member {
    let mut seen = Member::default();
    let mut wire = match join_and_report(server, MEMBER_FROM, "member", token, &joined) {
        Ok(wire) => wire,
        Err(e) => {
            seen.dropped = Some(e);
            return seen;
        }
    };
    let mut next_say = Instant::now();
    let mut last_echo = None;
    loop {
        let now = Instant::now();
        let stopping = shared.stop.load(Ordering::SeqCst);
        if stopping {
            let deadline = *last_echo.get_or_insert(now + LAST_ECHO);
            if seen.heard + seen.disordered >= seen.said || now >= deadline {
                break;
            }
        } else if now >= next_say {
            if let Err(e) = wire.send(&Frame::Say {
                text: format!("member line {}", seen.said).as_str().into(),
            }) {
                seen.dropped = Some(format!("cannot say: {e}"));
                break;
            }
            seen.said += 1;
            next_say = (next_say + SAY_EVERY).max(now);
        }
        let wait = if stopping {
            Duration::from_millis(20)
        } else {
            next_say.saturating_duration_since(Instant::now())
        };
        match wire.recv(wait) {
            Ok(Frame::Message { from, text, .. }) if from == "member" => {
                let number = text
                    .strip_prefix("member line ")
                    .and_then(|n| n.parse::<u64>().ok());
                if number == Some(seen.heard) {
                    seen.heard += 1;
                } else {
                    seen.disordered += 1;
                }
            }
            received => {
                if let Some(why) = ended(received) {
                    seen.dropped = Some(why);
                    break;
                }
            }
        }
    }
    let _ = wire.send(&Frame::Bye);
    seen
}

/// Joins as `newcomer`, waits until it has the room's members and sees
/// itself join, and leaves: the time to `WELCOME`, or what kept it out
/// (a welcome followed by an `ERROR`, as a newcomer to a huge room once
/// got, counts as kept out).
pub fn newcomer(server: SocketAddr, token: &[u8]) -> Result<Duration, String> {
    let start = Instant::now();
    let (mut wire, took) = Wire::join(server, NEWCOMER_FROM, "newcomer", token, JOIN_TIMEOUT)?;
    let deadline = start + JOIN_TIMEOUT;
    let mut members = false;
    loop {
        match wire.recv(deadline.saturating_duration_since(Instant::now())) {
            Ok(Frame::Members { .. }) => members = true,
            Ok(Frame::Joined { name, .. }) if name == "newcomer" && members => break,
            Ok(Frame::Error { code, reason }) => {
                return Err(format!(
                    "welcomed, then ERROR {} ({reason})",
                    code_name(code)
                ))
            }
            Ok(_) => {}
            Err(e) => return Err(format!("welcomed, then no MEMBERS and JOINED: {e:?}")),
        }
    }
    let _ = wire.send(&Frame::Bye);
    Ok(took)
}

/// A duration in nanoseconds, for the histogram.
pub fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
