//! The attacks of issue 12, each a small function driving raw frames at
//! the server from its own loopback address until the attack's time is
//! up, then reporting how the server treated the attacker.

use super::honest::{self, Shared};
use super::wire::{code_name, encode, write_until, NoFrame, Wire};
use super::{Attack, ATTACKER_FROM};
use crate::bench::latency::Histogram;
use crate::bench::server::{FerryServer, Launch};
use bytes::BytesMut;
use ferry_core::frame::{encode_data_header, Frame};
use ferry_core::Code;
use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an attacker waits for one answer from the server.
const ANSWER: Duration = Duration::from_secs(5);

/// How long the server's last words to an attacker are waited for.
const LAST_WORDS: Duration = Duration::from_millis(500);

/// Bytes written to the socket at a time by the flooders.
const BATCH: usize = 64 * 1024;

/// The window the relay attacker's accomplice grants: the server's own.
const WINDOW: u32 = 4 << 20;

/// Size the relayed files claim: far more than the window, so that the
/// window, not the file, bounds what the sender may send.
const RELAY_SIZE: u64 = 1 << 30;

/// Size of the tiny-frame upload to the inbox.
const UPLOAD_SIZE: u64 = 8 << 20;

/// The smallest `DATA` payload a server will take in the middle of a file.
pub const MIN_DATA: usize = 1024;

/// How often the relay's receiver, which never reads, sends a frame so
/// that it is not dropped as idle.
const KEEPALIVE: Duration = Duration::from_secs(10);

/// Connections tried from each address by `per-ip`.
const PER_IP_TRIES: usize = 4;

/// What an attack is given.
pub struct Ctx<'a> {
    /// The server under attack.
    pub server: &'a FerryServer,
    /// The token honest clients (and attackers, unless guessing) present.
    pub token: &'a [u8],
    /// When the attack should end.
    pub until: Instant,
    /// Set by the bench to end the attack early (the server's memory went
    /// past the bench's cap).
    pub abort: &'a AtomicBool,
    /// The honest clients' shared state.
    pub shared: &'a Shared,
    /// Where the newcomer's result goes, for attacks that time it.
    pub newcomer: &'a Mutex<Option<Result<Duration, String>>>,
    /// Members of `large-room`.
    pub room_members: usize,
}

impl Ctx<'_> {
    /// Whether the attack should go on.
    pub(super) fn running(&self) -> bool {
        !self.abort.load(Ordering::SeqCst) && Instant::now() < self.until
    }

    /// Waits until the attack's time is up.
    fn hold(&self) {
        while self.running() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A joined attacker named `hostile-NAME` from the attackers' address.
    pub(super) fn attacker(&self, name: &str) -> Result<Wire, String> {
        let name = format!("hostile-{name}");
        Wire::join(self.server.addr, ATTACKER_FROM, &name, self.token, ANSWER)
            .map(|(wire, _)| wire)
            .map_err(|e| format!("{name} could not join: {e}"))
    }

    /// Joins the newcomer now and records the result.
    pub fn join_newcomer(&self) {
        let result = honest::newcomer(self.server.addr, self.token);
        *self.newcomer.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
    }

    /// Whether the newcomer has been timed.
    pub fn newcomer_done(&self) -> bool {
        self.newcomer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }
}

/// How an attack went.
#[derive(Default)]
pub struct Attacked {
    /// How the server ended the attackers' connections.
    pub outcome: String,
    /// What the attackers did, in figures.
    pub detail: String,
    /// Targets of this attack alone that were missed.
    pub misses: Vec<String>,
}

/// Runs `attack` until `ctx.until`.
pub fn run(attack: Attack, ctx: &Ctx) -> Result<Attacked, String> {
    match attack {
        Attack::RelayTiny => relay(ctx, 1, 1),
        Attack::RelayTiny1024 => relay(ctx, MIN_DATA, 1),
        Attack::RelayTiny8 => relay(ctx, 1, 8),
        Attack::InboxTiny => inbox_tiny(ctx),
        Attack::ExtensionFlood => extension_flood(ctx),
        Attack::PingFlood => ping_flood(ctx, false),
        Attack::PingFloodRead => ping_flood(ctx, true),
        Attack::OfferCancel => offer_cancel(ctx),
        Attack::ReofferSameName => reoffer_same_name(ctx),
        Attack::ReconnectFlood => reconnect_flood(ctx),
        Attack::TokenGuess => token_guess(ctx),
        Attack::PerIp => per_ip(ctx),
        Attack::LargeRoom => large_room(ctx),
        Attack::QuotaScan => quota_scan(ctx),
        Attack::TreeManifest => super::manifests::tree_manifest(ctx),
    }
}

/// What a reader thread on an attacker's connection learns: credit the
/// receiver gave, and the server's last word.
#[derive(Default)]
struct Heard {
    /// Transfer id -> bytes confirmed written (`CREDIT`).
    written: Mutex<HashMap<u32, u64>>,
    /// The `ERROR` that ended the connection, or "closed".
    end: Mutex<Option<String>>,
    /// Set once a transfer was `VERIFIED`.
    verified: AtomicBool,
}

impl Heard {
    fn written(&self, id: u32) -> u64 {
        let written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        written.get(&id).copied().unwrap_or(0)
    }

    fn ended(&self) -> bool {
        self.end.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    fn end(&self) -> String {
        let end = self.end.lock().unwrap_or_else(|e| e.into_inner());
        end.clone().unwrap_or_else(|| "still connected".into())
    }
}

/// Reads `reader` until the connection ends or `ctx` stops, noting credit
/// and the server's last word in `heard`; with `discard`, only that (a
/// reading flooder).
fn listen(reader: &mut Wire, heard: &Heard, ctx: &Ctx) {
    let deadline = ctx.until + LAST_WORDS;
    while !ctx.abort.load(Ordering::SeqCst) && Instant::now() < deadline {
        let end = match reader.recv(Duration::from_millis(50)) {
            Ok(Frame::Credit { id, written }) => {
                let mut all = heard.written.lock().unwrap_or_else(|e| e.into_inner());
                let seen = all.entry(id).or_default();
                *seen = (*seen).max(written);
                continue;
            }
            Ok(Frame::Verified { .. }) => {
                heard.verified.store(true, Ordering::SeqCst);
                continue;
            }
            Ok(Frame::Error { code, .. }) => format!("ERROR {}", code_name(code)),
            Ok(_) | Err(NoFrame::Timeout) => continue,
            Err(NoFrame::Closed) => "closed".to_string(),
            Err(NoFrame::Garbled(what)) => what,
        };
        let mut last = heard.end.lock().unwrap_or_else(|e| e.into_inner());
        // An ERROR says more than the close that follows it.
        if last.is_none() || end.starts_with("ERROR") {
            *last = Some(end.clone());
        }
        if end == "closed" || end.starts_with("ERROR") {
            return;
        }
    }
}

/// One transfer the flooder sends: its id and how far it got.
struct Outgoing {
    id: u32,
    offset: u64,
    size: u64,
    window: u64,
}

/// Sends `DATA` frames of `chunk` bytes for `transfers` round-robin, as
/// fast as the socket takes them and the window allows, until the files
/// are sent, the connection ends or the attack's time is up. Returns the
/// frames sent.
fn pump_data(
    wire: &Wire,
    transfers: &mut [Outgoing],
    chunk: usize,
    heard: &Heard,
    ctx: &Ctx,
) -> u64 {
    let payload = vec![0u8; chunk];
    let mut out = BytesMut::with_capacity(BATCH + chunk + 32);
    let mut frames = 0;
    while ctx.running() && !heard.ended() {
        out.clear();
        let mut progress = true;
        while out.len() < BATCH && progress {
            progress = false;
            for transfer in transfers.iter_mut() {
                let allowed = (heard.written(transfer.id) + transfer.window).min(transfer.size);
                if transfer.offset >= allowed {
                    continue;
                }
                let len = chunk.min((allowed - transfer.offset) as usize);
                encode_data_header(&mut out, transfer.id, transfer.offset, len);
                out.extend_from_slice(&payload[..len]);
                transfer.offset += len as u64;
                frames += 1;
                progress = true;
            }
        }
        if out.is_empty() {
            if transfers.iter().all(|t| t.offset >= t.size) {
                break;
            }
            // Out of window: wait for credit.
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        if write_until(wire.stream(), &out, ctx.abort, ctx.until).is_err() {
            break;
        }
    }
    frames
}

/// `relay-tiny*`: A relays files to B, who accepted and stopped reading,
/// in `DATA` frames of `chunk` bytes, `transfers` files at once.
fn relay(ctx: &Ctx, chunk: usize, transfers: usize) -> Result<Attacked, String> {
    let mut a = ctx.attacker("a")?;
    let mut b = ctx.attacker("b")?;
    for i in 0..transfers as u32 {
        a.send(&Frame::Offer {
            id: 2 * i,
            size: RELAY_SIZE,
            name: format!("tiny-{i}.bin").as_str().into(),
            peer: "hostile-b".into(),
        })
        .map_err(|e| format!("offering: {e}"))?;
    }
    // B accepts every offer, then reads nothing more.
    let deadline = Instant::now() + ANSWER;
    let mut accepted = 0;
    while accepted < transfers {
        match b.recv(deadline.saturating_duration_since(Instant::now())) {
            Ok(Frame::Offer { id, .. }) => {
                b.send(&Frame::Accept {
                    id,
                    offset: 0,
                    window: WINDOW,
                    prefix_hash: *blake3::hash(b"").as_bytes(),
                })
                .map_err(|e| format!("accepting: {e}"))?;
                accepted += 1;
            }
            Ok(_) => {}
            Err(e) => return Err(format!("B got {accepted} of {transfers} offers: {e:?}")),
        }
    }
    let mut outgoing = Vec::new();
    while outgoing.len() < transfers {
        match a.recv(deadline.saturating_duration_since(Instant::now())) {
            Ok(Frame::Accept { id, window, .. }) => outgoing.push(Outgoing {
                id,
                offset: 0,
                size: RELAY_SIZE,
                window: u64::from(window),
            }),
            Ok(Frame::Reject { code, .. } | Frame::Cancel { code, .. }) => {
                return Ok(Attacked {
                    outcome: format!("offer refused: {}", code_name(code)),
                    ..Attacked::default()
                })
            }
            Ok(_) => {}
            Err(e) => return Err(format!("A got {} accepts: {e:?}", outgoing.len())),
        }
    }
    let heard = Heard::default();
    let mut reader = a.split_reader().map_err(|e| e.to_string())?;
    let frames = std::thread::scope(|s| {
        s.spawn(|| listen(&mut reader, &heard, ctx));
        s.spawn(|| keepalive(&mut b, ctx));
        pump_data(&a, &mut outgoing, chunk, &heard, ctx)
    });
    ctx.hold();
    let sent: u64 = outgoing.iter().map(|t| t.offset).sum();
    Ok(Attacked {
        outcome: format!(
            "A {}, B {}",
            heard.end(),
            // B never read: what the server said to it is in its buffer.
            b.outcome(LAST_WORDS)
        ),
        detail: format!(
            "{frames} DATA frames of {chunk} B, {} sent",
            mib(sent as f64)
        ),
        misses: Vec::new(),
    })
}

/// The relay receiver's only sign of life: a `PING` now and every 10 s.
fn keepalive(b: &mut Wire, ctx: &Ctx) {
    let mut next = Instant::now();
    while ctx.running() {
        if Instant::now() >= next {
            if b.send(&Frame::Ping { nonce: 1 }).is_err() {
                return;
            }
            next += KEEPALIVE;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `inbox-tiny`: an 8 MiB upload to the inbox in 1-byte `DATA` frames,
/// and in 1024-byte ones if 1 byte is refused.
fn inbox_tiny(ctx: &Ctx) -> Result<Attacked, String> {
    let mut outcomes = Vec::new();
    let mut details = Vec::new();
    for (round, chunk) in [1, MIN_DATA].into_iter().enumerate() {
        let started = Instant::now();
        let mut a = ctx.attacker(&format!("up{chunk}"))?;
        a.send(&Frame::Offer {
            id: 0,
            size: UPLOAD_SIZE,
            name: format!("tiny-upload-{chunk}.bin").as_str().into(),
            peer: "".into(),
        })
        .map_err(|e| format!("offering: {e}"))?;
        let window = loop {
            match a.recv(ANSWER) {
                Ok(Frame::Accept { window, .. }) => break u64::from(window),
                Ok(Frame::Reject { code, .. }) => {
                    return Ok(Attacked {
                        outcome: format!("offer refused: {}", code_name(code)),
                        ..Attacked::default()
                    })
                }
                Ok(_) => {}
                Err(e) => return Err(format!("no answer to the upload's offer: {e:?}")),
            }
        };
        let heard = Heard::default();
        let mut reader = a.split_reader().map_err(|e| e.to_string())?;
        let mut upload = [Outgoing {
            id: 0,
            offset: 0,
            size: UPLOAD_SIZE,
            window,
        }];
        let frames = std::thread::scope(|s| {
            s.spawn(|| listen(&mut reader, &heard, ctx));
            let frames = pump_data(&a, &mut upload, chunk, &heard, ctx);
            if upload[0].offset >= UPLOAD_SIZE {
                let hash = *blake3::hash(&vec![0u8; UPLOAD_SIZE as usize]).as_bytes();
                let _ = a.send(&Frame::Done { id: 0, hash });
                // The verdict comes once the file is stored.
                while ctx.running() && !heard.verified.load(Ordering::SeqCst) && !heard.ended() {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            frames
        });
        let done = if heard.verified.load(Ordering::SeqCst) {
            format!("stored in {:.1} s", started.elapsed().as_secs_f64())
        } else {
            heard.end()
        };
        outcomes.push(format!("{chunk} B: {done}"));
        details.push(format!(
            "{frames} frames of {chunk} B, {}",
            mib(upload[0].offset as f64)
        ));
        // The tiny frames were refused: try the smallest allowed size.
        let refused = round == 0 && heard.end().starts_with("ERROR");
        if !refused || !ctx.running() {
            break;
        }
    }
    ctx.hold();
    Ok(Attacked {
        outcome: outcomes.join(", "),
        detail: details.join(", "),
        misses: Vec::new(),
    })
}

/// Writes `batch` over and over on `wire` until the attack's time is up
/// or the connection ends; returns the batches written.
fn flood(wire: &Wire, batch: &[u8], ctx: &Ctx, heard: &Heard) -> u64 {
    let mut batches = 0;
    while ctx.running() && !heard.ended() {
        if write_until(wire.stream(), batch, ctx.abort, ctx.until).is_err() {
            break;
        }
        batches += 1;
    }
    batches
}

/// Frames of `frame` filling about [`BATCH`] bytes, and how many.
fn batch_of(frame: &Frame) -> (BytesMut, u64) {
    let mut out = BytesMut::with_capacity(BATCH + 64);
    let mut count = 0;
    while out.len() < BATCH {
        encode(frame, &mut out);
        count += 1;
    }
    (out, count)
}

/// `extension-flood`: a joined client keeps its socket full of empty
/// extension frames and never reads.
fn extension_flood(ctx: &Ctx) -> Result<Attacked, String> {
    let mut wire = ctx.attacker("ext")?;
    let (batch, per_batch) = batch_of(&Frame::Extension {
        frame_type: 0x9a,
        body: bytes::Bytes::new(),
    });
    let batches = flood(&wire, &batch, ctx, &Heard::default());
    ctx.hold();
    Ok(Attacked {
        outcome: wire.outcome(LAST_WORDS),
        detail: format!("{} empty extension frames", batches * per_batch),
        misses: Vec::new(),
    })
}

/// `ping-flood`: PINGs as fast as the socket takes them, reading the
/// answers (`read`) or never.
fn ping_flood(ctx: &Ctx, read: bool) -> Result<Attacked, String> {
    let mut wire = ctx.attacker(if read { "pingr" } else { "ping" })?;
    let (batch, per_batch) = batch_of(&Frame::Ping { nonce: 7 });
    let heard = Heard::default();
    let batches = if read {
        let mut reader = wire.split_reader().map_err(|e| e.to_string())?;
        std::thread::scope(|s| {
            s.spawn(|| listen(&mut reader, &heard, ctx));
            flood(&wire, &batch, ctx, &heard)
        })
    } else {
        flood(&wire, &batch, ctx, &heard)
    };
    ctx.hold();
    let outcome = if read {
        heard.end()
    } else {
        wire.outcome(LAST_WORDS)
    };
    Ok(Attacked {
        outcome,
        detail: format!("{} PINGs", batches * per_batch),
        misses: Vec::new(),
    })
}

/// `offer-cancel`: an upload offered and cancelled at once, with a fresh
/// name each time, as fast as the socket takes them.
fn offer_cancel(ctx: &Ctx) -> Result<Attacked, String> {
    let mut wire = ctx.attacker("oc")?;
    let heard = Heard::default();
    let mut reader = wire.split_reader().map_err(|e| e.to_string())?;
    let mut pairs = 0u64;
    std::thread::scope(|s| {
        s.spawn(|| listen(&mut reader, &heard, ctx));
        let mut out = BytesMut::with_capacity(BATCH + 256);
        while ctx.running() && !heard.ended() {
            out.clear();
            while out.len() < BATCH {
                let id = (pairs as u32).wrapping_mul(2);
                encode(
                    &Frame::Offer {
                        id,
                        size: 1024,
                        name: format!("oc-{pairs}.bin").as_str().into(),
                        peer: "".into(),
                    },
                    &mut out,
                );
                encode(
                    &Frame::Cancel {
                        id,
                        code: Code::CANCELLED,
                        reason: "".into(),
                    },
                    &mut out,
                );
                pairs += 1;
            }
            if write_until(wire.stream(), &out, ctx.abort, ctx.until).is_err() {
                break;
            }
        }
    });
    ctx.hold();
    Ok(Attacked {
        outcome: heard.end(),
        detail: format!("{pairs} offers + cancels written"),
        misses: Vec::new(),
    })
}

/// Offers `name` to the inbox as transfer `id` and waits for the answer:
/// how long it took and whether it was accepted, or why not.
fn offer_and_wait(
    wire: &mut Wire,
    id: u32,
    name: &str,
    size: u64,
) -> Result<(Duration, Result<(), String>), String> {
    let start = Instant::now();
    wire.send(&Frame::Offer {
        id,
        size,
        name: name.into(),
        peer: "".into(),
    })
    .map_err(|e| format!("offering: {e}"))?;
    loop {
        match wire.recv(ANSWER.saturating_sub(start.elapsed())) {
            Ok(Frame::Accept { id: answered, .. }) if answered == id => {
                return Ok((start.elapsed(), Ok(())))
            }
            Ok(Frame::Reject {
                id: answered, code, ..
            }) if answered == id => return Ok((start.elapsed(), Err(code_name(code)))),
            Ok(Frame::Error { code, .. }) => return Err(format!("ERROR {}", code_name(code))),
            Ok(_) => {}
            Err(NoFrame::Timeout) => {
                return Err(format!("no answer within {} s", ANSWER.as_secs()))
            }
            Err(e) => return Err(format!("{e:?}")),
        }
    }
}

/// Offers files of `size` named `name(n)`, sends `data_bytes` of each and
/// cancels it, until the attack's time is up: `(offers answered, answer
/// times, how it ended)`.
fn offers_with(
    ctx: &Ctx,
    wire: &mut Wire,
    size: u64,
    data_bytes: u64,
    name: impl Fn(u64) -> String,
) -> (u64, Histogram, String) {
    let mut times = Histogram::default();
    let mut answered = 0u64;
    let mut refusals: HashMap<String, u64> = HashMap::new();
    let end = loop {
        if !ctx.running() {
            break None;
        }
        let id = (answered as u32).wrapping_mul(2);
        match offer_and_wait(wire, id, &name(answered), size) {
            Ok((took, verdict)) => {
                times.record(honest::nanos(took));
                answered += 1;
                if let Err(code) = verdict {
                    *refusals.entry(code).or_default() += 1;
                    continue;
                }
            }
            Err(e) => break Some(e),
        }
        // Some data, so that the transfer has a writer busy with it when
        // the cancel comes.
        let mut data = BytesMut::with_capacity(BATCH + 32);
        let mut offset = 0;
        while offset < data_bytes {
            data.clear();
            encode_data_header(&mut data, id, offset, BATCH);
            data.extend_from_slice(&[0u8; BATCH]);
            if let Err(e) = wire.send_bytes(&data) {
                return (answered, times, format!("sending data: {e}"));
            }
            offset += BATCH as u64;
        }
        let cancel = Frame::Cancel {
            id,
            code: Code::CANCELLED,
            reason: "".into(),
        };
        if let Err(e) = wire.send(&cancel) {
            break Some(format!("cancelling: {e}"));
        }
    };
    let mut outcome = end.unwrap_or_else(|| wire.outcome(LAST_WORDS));
    for (code, count) in refusals {
        outcome.push_str(&format!(", {count} REJECT {code}"));
    }
    (answered, times, outcome)
}

/// `reoffer-same-name`: offer a name, send a window of data, cancel, offer
/// the same name again, over and over, each offer waiting for its answer
/// (the writer of the cancelled transfer may still be busy with its data).
fn reoffer_same_name(ctx: &Ctx) -> Result<Attacked, String> {
    let mut wire = ctx.attacker("same")?;
    let (answered, times, outcome) =
        offers_with(ctx, &mut wire, 64 << 20, u64::from(WINDOW), |_| {
            "same.bin".into()
        });
    ctx.hold();
    Ok(Attacked {
        outcome,
        detail: format!("{answered} offers answered, {}", answer_times(&times)),
        misses: Vec::new(),
    })
}

/// `quota-scan`: offers to an inbox with a quota and many files in it.
fn quota_scan(ctx: &Ctx) -> Result<Attacked, String> {
    let mut wire = ctx.attacker("quota")?;
    let (answered, times, outcome) = offers_with(ctx, &mut wire, 1 << 20, BATCH as u64, |n| {
        format!("quota-{n}.bin")
    });
    ctx.hold();
    Ok(Attacked {
        outcome,
        detail: format!("{answered} offers answered, {}", answer_times(&times)),
        misses: Vec::new(),
    })
}

/// "answers p50 X ms, max Y ms".
fn answer_times(times: &Histogram) -> String {
    format!(
        "answer p50 {} max {}",
        millis(times.quantile(0.5)),
        millis(times.quantile(1.0))
    )
}

/// `reconnect-flood`: connect, join under a fresh name, say 20 lines (the
/// per-connection burst), leave, again and again from one address.
fn reconnect_flood(ctx: &Ctx) -> Result<Attacked, String> {
    const SAYS: usize = 20;
    let start = Instant::now();
    let mut joins = 0u64;
    let mut kept_out: HashMap<String, u64> = HashMap::new();
    let mut n = 0u64;
    while ctx.running() {
        n += 1;
        let name = format!("hostile-rf{n}");
        let mut wire = match Wire::join(ctx.server.addr, ATTACKER_FROM, &name, ctx.token, ANSWER) {
            Ok((wire, _)) => wire,
            Err(e) => {
                // "SERVER_FULL (reason)" -> "SERVER_FULL".
                let code = e.split(" (").next().unwrap_or(&e).to_string();
                *kept_out.entry(code).or_default() += 1;
                continue;
            }
        };
        joins += 1;
        let mut out = BytesMut::new();
        for i in 0..SAYS {
            encode(
                &Frame::Say {
                    text: format!("flood {n}.{i}").as_str().into(),
                },
                &mut out,
            );
        }
        encode(&Frame::Bye, &mut out);
        if wire.send_bytes(&out).is_err() {
            continue;
        }
        // Reading to the end (the server closes after BYE) before the
        // reset that closing sends, so that it throws away no line the
        // server has not read yet.
        let _ = wire.outcome(ANSWER);
    }
    let seconds = start.elapsed().as_secs_f64();
    let mut outcome = format!("{joins} joined");
    for (code, count) in &kept_out {
        outcome.push_str(&format!(", {count} kept out: {code}"));
    }
    Ok(Attacked {
        outcome,
        detail: format!(
            "{:.0} joins/s, {} lines said",
            joins as f64 / seconds,
            joins as usize * SAYS
        ),
        misses: Vec::new(),
    })
}

/// `token-guess`: connect and present a wrong token, as fast as the
/// server answers, from one address.
fn token_guess(ctx: &Ctx) -> Result<Attacked, String> {
    let start = Instant::now();
    let mut times = Histogram::default();
    let mut answers: HashMap<String, u64> = HashMap::new();
    let mut n = 0u64;
    while ctx.running() {
        n += 1;
        let asked = Instant::now();
        let result = Wire::join(
            ctx.server.addr,
            ATTACKER_FROM,
            &format!("hostile-g{n}"),
            format!("guess-{n}").as_bytes(),
            ANSWER,
        );
        let answer = match result {
            Ok(_) => "WELCOME (a guess was right!)".to_string(),
            Err(e) => e.split(" (").next().unwrap_or(&e).to_string(),
        };
        if answer.starts_with("AUTH_FAILED") {
            times.record(honest::nanos(asked.elapsed()));
        }
        *answers.entry(answer).or_default() += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    let refused = answers.get("AUTH_FAILED").copied().unwrap_or(0);
    let mut outcome: Vec<String> = answers
        .iter()
        .map(|(answer, count)| format!("{count} {answer}"))
        .collect();
    outcome.sort();
    let mut misses = Vec::new();
    if answers.keys().any(|a| a.starts_with("WELCOME")) {
        misses.push("a wrong token was let in".into());
    }
    Ok(Attacked {
        outcome: outcome.join(", "),
        detail: format!(
            "{:.0} guesses/s answered, answer p50 {} max {}",
            refused as f64 / seconds,
            millis(times.quantile(0.5)),
            millis(times.quantile(1.0))
        ),
        misses,
    })
}

/// `per-ip`: with `--max-per-ip 2`, connections from several loopback
/// addresses (and from ::1, on a second server listening there); how many
/// each gets in.
fn per_ip(ctx: &Ctx) -> Result<Attacked, String> {
    const LIMIT: usize = 2;
    let mut held = Vec::new();
    let mut counts = Vec::new();
    let mut misses = Vec::new();
    let mut try_from = |server: SocketAddr, from: IpAddr, honest: usize, counts: &mut Vec<_>| {
        let mut welcomed = 0;
        let mut kept_out = HashMap::<String, u64>::new();
        for i in 0..PER_IP_TRIES {
            let name = format!("hostile-ip{}-{i}", counts.len());
            match Wire::join(server, from, &name, ctx.token, ANSWER) {
                Ok((wire, _)) => {
                    welcomed += 1;
                    held.push(wire);
                }
                Err(e) => {
                    let code = e.split(" (").next().unwrap_or(&e).to_string();
                    *kept_out.entry(code).or_default() += 1;
                }
            }
        }
        let honest_note = if honest > 0 {
            format!(" (+{honest} honest)")
        } else {
            String::new()
        };
        counts.push(format!("{from} {welcomed}/{PER_IP_TRIES}{honest_note}"));
        if welcomed + honest > LIMIT {
            misses.push(format!(
                "{} connections from {from} let in, limit {LIMIT}",
                welcomed + honest
            ));
        }
        kept_out
    };
    let mut refusals = HashMap::<String, u64>::new();
    // The bystander and the member hold 127.0.0.1's two places already.
    for (from, honest) in [
        (IpAddr::V4(Ipv4Addr::LOCALHOST), 2),
        (ATTACKER_FROM, 0),
        (IpAddr::V4(Ipv4Addr::new(127, 1, 2, 3)), 0),
    ] {
        for (code, count) in try_from(ctx.server.addr, from, honest, &mut counts) {
            *refusals.entry(code).or_default() += count;
        }
    }
    // ::1 needs a server listening on IPv6: the same runtime and limit.
    let v6 = FerryServer::launch(
        ctx.server.runtime(),
        &Launch {
            args: &["--max-per-ip".into(), LIMIT.to_string()],
            listen: "[::1]:0",
            ..Launch::default()
        },
    );
    match v6 {
        Ok(v6) => {
            let from = IpAddr::V6(Ipv6Addr::LOCALHOST);
            for (code, count) in try_from(v6.addr, from, 0, &mut counts) {
                *refusals.entry(code).or_default() += count;
            }
            // Its connections go before it does.
            ctx.hold();
            held.clear();
        }
        Err(e) => counts.push(format!("::1 not tried: {e}")),
    }
    ctx.hold();
    let mut outcome: Vec<String> = refusals
        .iter()
        .map(|(code, count)| format!("{count} kept out: {code}"))
        .collect();
    outcome.sort();
    Ok(Attacked {
        outcome: if outcome.is_empty() {
            "all let in".into()
        } else {
            outcome.join(", ")
        },
        detail: format!(
            "let in: {} (other IPv6 /64 addresses: not on loopback)",
            counts.join(", ")
        ),
        misses,
    })
}

/// `large-room`: members with 128-byte names fill one room, each from a
/// loopback address of its own (so that no per-address limit applies),
/// reading everything the server sends them; then the newcomer joins.
fn large_room(ctx: &Ctx) -> Result<Attacked, String> {
    let count = ctx.room_members;
    let start = Instant::now();
    let room = Room::start().map_err(|e| format!("cannot poll the members: {e}"))?;
    let mut failures = HashMap::<String, u64>::new();
    let mut last_ping = Instant::now();
    for i in 0..count {
        if ctx.abort.load(Ordering::SeqCst) {
            break;
        }
        match member_of_large_room(ctx.server.addr, i) {
            Ok(wire) => room.add(wire),
            Err(e) => *failures.entry(e).or_default() += 1,
        }
        // The members say nothing else: a ping now and then keeps them
        // from being dropped as idle while the room fills.
        if last_ping.elapsed() > KEEPALIVE {
            room.ping_all();
            last_ping = Instant::now();
        }
    }
    // Every member is in once the bystander has seen them all join; the
    // room stops filling if no join comes for a few seconds.
    let mut seen = ctx.shared.hostile_joined.load(Ordering::SeqCst);
    let mut progress = Instant::now();
    while seen < count as u64 && progress.elapsed() < ANSWER && !ctx.abort.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
        let now = ctx.shared.hostile_joined.load(Ordering::SeqCst);
        if now > seen {
            seen = now;
            progress = Instant::now();
        }
    }
    let filled = start.elapsed();
    room.ping_all();
    ctx.join_newcomer();
    let in_room = room.alive();
    room.stop();
    let mut outcome = format!("{seen} joined, {in_room} still connected");
    for (why, n) in failures {
        outcome.push_str(&format!(", {n} kept out: {why}"));
    }
    Ok(Attacked {
        outcome,
        detail: format!(
            "{count} members of 128-byte names in {:.1} s",
            filled.as_secs_f64()
        ),
        misses: Vec::new(),
    })
}

/// A name of 32 characters of 4 bytes each, unique to member `i`.
fn long_name(i: usize) -> String {
    let mut name = String::with_capacity(128);
    // The marker that tells the bystander an attacker joined.
    name.push(super::LARGE_ROOM_MARK);
    for shift in [24, 16, 8, 0] {
        let digit = (i >> shift) & 0xff;
        name.push(char::from_u32(0x20000 + digit as u32).unwrap_or('\u{20000}'));
    }
    while name.chars().count() < 32 {
        name.push('\u{20100}');
    }
    name
}

/// Member `i` of the large room, connected from 127.1.X.Y and its `HELLO`
/// sent; the room's poller reads its welcome.
fn member_of_large_room(server: SocketAddr, i: usize) -> Result<Wire, String> {
    let from = IpAddr::V4(Ipv4Addr::new(
        127,
        1 + (i / 62_500) as u8,
        ((i / 250) % 250) as u8,
        (i % 250) as u8 + 1,
    ));
    let mut wire = Wire::connect(server, from).map_err(|e| e.kind().to_string())?;
    wire.hello(&long_name(i), b"")
        .map_err(|e| e.kind().to_string())?;
    Ok(wire)
}

/// The large room's members: sockets read (and thrown away) by one thread
/// on a mio poll, so that thousands of members keep up with what the
/// server sends them.
struct Room {
    registry: mio::Registry,
    members: Arc<Mutex<Vec<mio::net::TcpStream>>>,
    stop: Arc<AtomicBool>,
    closed: Arc<AtomicU64>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Room {
    fn start() -> std::io::Result<Room> {
        let mut poll = mio::Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let members: Arc<Mutex<Vec<mio::net::TcpStream>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let closed = Arc::new(AtomicU64::new(0));
        let (m, s, c) = (members.clone(), stop.clone(), closed.clone());
        let reader = std::thread::spawn(move || {
            let mut events = mio::Events::with_capacity(1024);
            let mut buf = vec![0u8; 256 * 1024];
            while !s.load(Ordering::SeqCst) {
                if poll
                    .poll(&mut events, Some(Duration::from_millis(50)))
                    .is_err()
                {
                    continue;
                }
                let mut members = m.lock().unwrap_or_else(|e| e.into_inner());
                for event in &events {
                    let Some(stream) = members.get_mut(event.token().0) else {
                        continue;
                    };
                    // Edge-triggered: read until there is nothing left.
                    loop {
                        match stream.read(&mut buf) {
                            Ok(0) => {
                                c.fetch_add(1, Ordering::SeqCst);
                                let _ = poll.registry().deregister(stream);
                                break;
                            }
                            Ok(_) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(_) => {
                                c.fetch_add(1, Ordering::SeqCst);
                                let _ = poll.registry().deregister(stream);
                                break;
                            }
                        }
                    }
                }
            }
        });
        Ok(Room {
            registry,
            members,
            stop,
            closed,
            reader: Some(reader),
        })
    }

    fn add(&self, wire: Wire) {
        let Ok(stream) = wire.stream().try_clone() else {
            return;
        };
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let mut stream = mio::net::TcpStream::from_std(stream);
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        let token = mio::Token(members.len());
        if self
            .registry
            .register(&mut stream, token, mio::Interest::READABLE)
            .is_ok()
        {
            members.push(stream);
        }
    }

    /// A `PING` from every member (never blocking: one that cannot take
    /// it is a member the server has stopped reading anyway).
    fn ping_all(&self) {
        let mut ping = BytesMut::new();
        encode(&Frame::Ping { nonce: 1 }, &mut ping);
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        for stream in members.iter_mut() {
            let _ = std::io::Write::write(stream, &ping);
        }
    }

    fn alive(&self) -> u64 {
        let members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        members.len() as u64 - self.closed.load(Ordering::SeqCst)
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// Bytes as "12.3 MiB".
fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / f64::from(1 << 20))
}

/// A duration in nanoseconds as "12 ms", or "-".
pub fn millis(nanos: Option<u64>) -> String {
    nanos.map_or("-".into(), |n| format!("{:.0} ms", n as f64 / 1e6))
}
