//! The fan-out load generator: subscribers and publishers of one room on
//! one thread with one `mio::Poll`, so that no cross-thread hand-off sits in
//! the measured path and the generator needs at most one core.
//!
//! Publishers pipeline: each keeps up to its share of `window` messages in
//! flight (sent, and not yet read by the average subscriber), written in
//! batches. Subscribers check that every message arrives exactly once and
//! in order per publisher, and record how long each took to arrive.

use super::latency::Histogram;
use super::peers::Peer;
use super::probe::Probe;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// One fan-out run's shape.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub publishers: usize,
    pub subscribers: usize,
    /// Messages sent in all, shared evenly among the publishers.
    pub messages: u64,
    /// Bytes of message text.
    pub size: usize,
    /// Messages in flight at most, shared evenly among the publishers.
    pub window: u64,
    /// Messages per second at most, all publishers together: a load below
    /// what the server carries, for latency without queues. `None`: as
    /// fast as the window allows.
    pub rate: Option<u64>,
    pub timeout: Duration,
}

/// What a run measured.
pub struct Outcome {
    /// Messages read by subscribers: messages × subscribers.
    pub deliveries: u64,
    /// From the first message sent to the last one read.
    pub elapsed: Duration,
    /// Time from sending to reading, per delivery.
    pub latency: Histogram,
}

impl Outcome {
    /// Deliveries per second.
    pub fn rate(&self) -> f64 {
        self.deliveries as f64 / self.elapsed.as_secs_f64()
    }
}

/// Which side of the room a client is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Subscriber,
    Publisher,
}

/// Bytes asked of the socket per read: large, so that a subscriber far
/// behind catches up in few system calls.
const READ: usize = 256 * 1024;

/// A client of the run: its socket, its protocol, its unwritten bytes and
/// the unfinished frame at the end of its last read.
struct Client<P> {
    stream: TcpStream,
    peer: P,
    out: Vec<u8>,
    written: usize,
    unfinished: Vec<u8>,
    /// A write met a full socket: wait for WRITABLE.
    blocked: bool,
}

impl<P: Peer> Client<P> {
    /// Writes what waits until done or the socket is full.
    fn flush(&mut self) -> io::Result<()> {
        while !self.blocked && self.written < self.out.len() {
            match self.stream.write(&self.out[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.blocked = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.written == self.out.len() {
            self.out.clear();
            self.written = 0;
        }
        Ok(())
    }
}

/// Connects the subscribers, then the publishers, with `connect` (which
/// returns once the client is in the room), then runs the scenario and
/// fails at the first message lost, duplicated or out of order. `started`
/// is called once everyone is connected, just before the first message.
pub fn run<P: Peer>(
    scenario: Scenario,
    mut connect: impl FnMut(Side, usize) -> Result<(std::net::TcpStream, P), String>,
    started: impl FnOnce(),
) -> Result<Outcome, String> {
    let Scenario {
        publishers,
        subscribers,
        messages,
        size,
        window,
        rate,
        timeout,
    } = scenario;
    let mut poll = Poll::new().map_err(|e| format!("cannot poll: {e}"))?;
    let mut clients = Vec::with_capacity(subscribers + publishers);
    let sides = (0..subscribers)
        .map(|i| (Side::Subscriber, i))
        .chain((0..publishers).map(|i| (Side::Publisher, i)));
    for (side, index) in sides {
        let (stream, mut peer) = connect(side, index)?;
        let failed = |e: io::Error| format!("cannot set up a client socket: {e}");
        stream.set_nonblocking(true).map_err(failed)?;
        stream.set_read_timeout(None).map_err(failed)?;
        let unfinished = peer.take_leftover();
        let mut stream = TcpStream::from_std(stream);
        poll.registry()
            .register(
                &mut stream,
                Token(clients.len()),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(failed)?;
        clients.push(Client {
            stream,
            peer,
            out: Vec::new(),
            written: 0,
            unfinished,
            blocked: false,
        });
    }

    // Publisher `p` is client `subscribers + p`; its quota is its share of
    // the messages, the first ones taking the remainder.
    let quota: Vec<u64> = (0..publishers as u64)
        .map(|p| messages / publishers as u64 + u64::from(p < messages % publishers as u64))
        .collect();
    let share = (window / publishers as u64).max(1);
    let mut sent = vec![0u64; publishers];
    // Deliveries of each publisher's messages, summed over subscribers.
    let mut delivered = vec![0u64; publishers];
    // Per subscriber, the sequence number due next from each publisher.
    let mut due = vec![vec![0u64; publishers]; subscribers];
    let expected = messages * subscribers as u64;
    let mut deliveries = 0u64;
    let mut latency = Histogram::default();
    let mut text = Vec::with_capacity(size);
    // One read buffer for every client: each read lands behind the
    // client's unfinished frame, and only that (less than a frame) is
    // copied again afterwards.
    let mut buf = vec![0u8; READ];
    let mut events = Events::with_capacity(1024);

    started();
    let epoch = Instant::now();
    let deadline = epoch + timeout;
    let mut last_delivery = epoch;
    let mut next_tick = epoch;
    while deliveries < expected {
        let now = Instant::now();
        if now >= deadline {
            return Err(format!(
                "took longer than --timeout {} s: {deliveries} of {expected} deliveries",
                timeout.as_secs()
            ));
        }
        // What each publisher may have sent by now at the rate (evenly
        // spread: every publisher its share of each second).
        let paced = rate.map(|rate| {
            let total = (epoch.elapsed().as_secs_f64() * rate as f64) as u64;
            total / publishers as u64 + 1
        });
        // Top up every publisher's window, one batch per write.
        for p in 0..publishers {
            let client = &mut clients[subscribers + p];
            let acknowledged = delivered[p] / subscribers as u64;
            let mut queued = false;
            while sent[p] < quota[p]
                && sent[p] - acknowledged < share
                && paced.is_none_or(|allowed| sent[p] < allowed)
            {
                let stamp = epoch.elapsed().as_nanos() as u64;
                Probe {
                    sender: p as u32,
                    seq: sent[p],
                    sent: stamp,
                }
                .write(size, &mut text);
                client.peer.publish(now, &text, &mut client.out)?;
                sent[p] += 1;
                queued = true;
            }
            if queued {
                client
                    .flush()
                    .map_err(|e| format!("publisher {p}: cannot write: {e}"))?;
            }
        }
        if now >= next_tick {
            next_tick = now + Duration::from_millis(100);
            for client in &mut clients {
                client.peer.tick(now, &mut client.out);
                client.flush().map_err(|e| format!("cannot write: {e}"))?;
            }
        }

        // Paced, it wakes every millisecond to send what is due.
        let wait = Duration::from_millis(if rate.is_some() { 1 } else { 50 });
        match poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("cannot poll: {e}")),
        }
        for event in events.iter() {
            let index = event.token().0;
            let client = &mut clients[index];
            if event.is_writable() {
                client.blocked = false;
                client.flush().map_err(|e| format!("cannot write: {e}"))?;
            }
            if !(event.is_readable() || event.is_read_closed() || event.is_error()) {
                continue;
            }
            // Edge-triggered: read until the socket is empty.
            loop {
                let kept = client.unfinished.len();
                if buf.len() < kept + READ {
                    buf.resize(kept + READ, 0);
                }
                buf[..kept].copy_from_slice(&client.unfinished);
                let n = match client.stream.read(&mut buf[kept..]) {
                    Ok(0) => return Err(format!("client {index}: the server hung up")),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(format!("client {index}: cannot read: {e}")),
                };
                let bytes = &buf[..kept + n];
                let now = Instant::now();
                let used = if index >= subscribers {
                    // A publisher hears the room too (ferry echoes a
                    // message to its sender): read, and otherwise ignore.
                    client
                        .peer
                        .receive(now, bytes, &mut client.out, &mut |_| {})?
                } else {
                    let arrived = now.duration_since(epoch).as_nanos() as u64;
                    let next_due = &mut due[index];
                    let mut failure = None;
                    let mut count = 0u64;
                    let used = client
                        .peer
                        .receive(now, bytes, &mut client.out, &mut |message| {
                            if failure.is_some() {
                                return;
                            }
                            let Some(probe) = Probe::read(message) else {
                                failure = Some("a message the bench did not send".to_string());
                                return;
                            };
                            let p = probe.sender as usize;
                            match next_due.get_mut(p) {
                                Some(next) if *next == probe.seq => {
                                    *next += 1;
                                    delivered[p] += 1;
                                    count += 1;
                                    latency.record(arrived.saturating_sub(probe.sent));
                                }
                                Some(next) => {
                                    failure = Some(format!(
                                        "message {} of publisher {p} where {next} was due: \
                                         lost, duplicated or out of order",
                                        probe.seq
                                    ))
                                }
                                None => failure = Some(format!("a message from publisher {p}")),
                            }
                        })
                        .map_err(|e| format!("subscriber {index}: {e}"))?;
                    if let Some(failure) = failure {
                        return Err(format!("subscriber {index} got {failure}"));
                    }
                    if count > 0 {
                        deliveries += count;
                        last_delivery = now;
                    }
                    used
                };
                client.unfinished.clear();
                client.unfinished.extend_from_slice(&bytes[used..]);
                // A short read emptied the socket: the next bytes raise a
                // new edge, so the read that would only say so is skipped.
                // (A hang-up that came with the last bytes then shows as
                // the run's timeout, unless the server said why in a frame.)
                if n < buf.len() - kept {
                    break;
                }
            }
            client.flush().map_err(|e| format!("cannot write: {e}"))?;
        }
    }
    Ok(Outcome {
        deliveries,
        elapsed: last_delivery.duration_since(epoch),
        latency,
    })
}
