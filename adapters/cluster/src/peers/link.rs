//! A link after its handshake: a reader and a writer thread sharing the
//! TLS transport, and the frames' decoder.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use ferry_core::cluster::ServerId;
use ferry_tls::Transport;

use super::state::{lock, spawn, Registered, Shared};
use super::wire::{Failure, Wire};
use super::{FRAME_OVERHEAD, MAX_FRAME};

/// Bytes of queued frames a writer takes out of the queue at once.
const BATCH_BYTES: usize = 256 * 1024;
/// Socket bytes a reader reads at once.
const READ_BYTES: usize = 64 * 1024;
/// How long a reader whose transport is full waits for its writer before
/// looking again (it is woken as soon as the writer took the output).
const FLUSH_WAIT: Duration = Duration::from_millis(100);

/// What the reader and the writer of one connection know of it.
struct Side {
    server: ServerId,
    generation: u64,
    conn: u64,
    wake: Arc<Condvar>,
    stream: TcpStream,
    transport: Arc<Mutex<Transport>>,
}

/// Runs a registered link: its reader on a new thread, its writer on
/// this one; returns why the writer stopped. The reader delivers the
/// `Lost` of its own failures.
pub(super) fn run(shared: &Arc<Shared>, link: Registered) -> Failure {
    let Registered {
        server,
        generation,
        conn,
        wake,
        wire,
    } = link;
    let Wire {
        stream,
        transport,
        unfed,
        ..
    } = wire;
    let reader_stream = match stream.try_clone() {
        Ok(stream) => stream,
        Err(e) => return Failure::Io(e),
    };
    let transport = Arc::new(Mutex::new(transport));
    let reader = Side {
        server,
        generation,
        conn,
        wake: wake.clone(),
        stream: reader_stream,
        transport: transport.clone(),
    };
    let started = spawn(shared, format!("ferry-peer-r-{server}"), move |shared| {
        let failure = read_loop(&shared, &reader, unfed);
        shared.lose(reader.server, reader.generation, failure.to_string());
    });
    if let Err(e) = started {
        return Failure::Thread(e);
    }
    let writer = Side {
        server,
        generation,
        conn,
        wake,
        stream,
        transport,
    };
    write_loop(shared, &writer)
}

/// What a writer does next.
enum Work {
    /// Frames to write (on the active connection), or none: only TLS
    /// output the reader left.
    Write(Vec<Vec<u8>>),
    /// The link is gone or failed.
    Stop(Failure),
}

/// Waits for work: frames if this is the connection frames go over, TLS
/// output the reader left, or the end.
fn next_work(shared: &Shared, side: &Side) -> Work {
    let mut state = lock(&shared.state);
    loop {
        if !shared.is_current(&state, side.server, side.generation) {
            return Work::Stop(Failure::Dropped);
        }
        let Some(peer) = state.peers.get_mut(&side.server) else {
            return Work::Stop(Failure::Dropped);
        };
        if peer.failed.is_some() {
            return Work::Stop(Failure::Dropped);
        }
        let Some(conn) = peer.conns.iter_mut().find(|c| c.id == side.conn) else {
            return Work::Stop(Failure::Dropped);
        };
        let flush = std::mem::take(&mut conn.flush);
        if flush {
            side.wake.notify_all();
        }
        if peer.active == Some(side.conn) && !peer.queue.is_empty() {
            let mut batch = Vec::new();
            let mut bytes = 0;
            while bytes < BATCH_BYTES {
                let Some(frame) = peer.queue.pop_front() else {
                    break;
                };
                bytes += frame.len();
                peer.queued = peer
                    .queued
                    .saturating_sub(frame.capacity() + FRAME_OVERHEAD);
                batch.push(frame);
            }
            return Work::Write(batch);
        }
        if flush {
            return Work::Write(Vec::new());
        }
        state = side
            .wake
            .wait(state)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
}

/// The writer thread: frames into the transport, its output to the socket.
fn write_loop(shared: &Shared, side: &Side) -> Failure {
    let timeout = shared.settings.timeout;
    let mut out = Vec::new();
    loop {
        let batch = match next_work(shared, side) {
            Work::Write(batch) => batch,
            Work::Stop(failure) => return failure,
        };
        if let Err(failure) = write_batch(side, &batch, &mut out, timeout) {
            return failure;
        }
    }
}

/// Writes each frame's header and bytes through the transport and its
/// output to the socket, a transport's fill at a time.
fn write_batch(
    side: &Side,
    batch: &[Vec<u8>],
    out: &mut Vec<u8>,
    timeout: Duration,
) -> Result<(), Failure> {
    let mut transport = lock(&side.transport);
    for frame in batch {
        // `send` refuses frames over MAX_FRAME, so the length fits.
        let header = u32::try_from(frame.len())
            .map_err(|_| Failure::FrameTooLong(frame.len() as u64))?
            .to_be_bytes();
        for part in [&header[..], &frame[..]] {
            let mut rest = part;
            while !rest.is_empty() {
                let n = transport.write_plaintext(rest).map_err(Failure::Tls)?;
                rest = &rest[n..];
                if n == 0 {
                    out.clear();
                    if transport.take_outgoing(out) == 0 {
                        // Full and nothing to send: cannot happen after
                        // the handshake, but must not spin if it does.
                        return Err(Failure::Tls(ferry_tls::Error::Misuse(
                            "the transport takes no plaintext",
                        )));
                    }
                    drop(transport);
                    write_socket(&side.stream, out, timeout)?;
                    transport = lock(&side.transport);
                }
            }
        }
    }
    out.clear();
    transport.take_outgoing(out);
    drop(transport);
    write_socket(&side.stream, out, timeout)
}

/// Writes `bytes` whole; each write call gives up after the socket's
/// write timeout (the settings' `timeout`).
fn write_socket(stream: &TcpStream, bytes: &[u8], timeout: Duration) -> Result<(), Failure> {
    let mut stream = stream;
    match stream.write_all(bytes) {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(Failure::WriteStalled(timeout))
        }
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(Failure::Closed),
        Err(e) => Err(Failure::Io(e)),
    }
}

/// Asks the writer to send the TLS output the reader's feed made; when
/// `wait`, until it took it (the transport takes no input meanwhile).
/// False when the link is gone.
fn hand_output(shared: &Shared, side: &Side, wait: bool) -> bool {
    let mut state = lock(&shared.state);
    loop {
        if !shared.is_current(&state, side.server, side.generation) {
            return false;
        }
        let Some(conn) = state
            .peers
            .get_mut(&side.server)
            .and_then(|peer| peer.conns.iter_mut().find(|c| c.id == side.conn))
        else {
            return false;
        };
        if !wait {
            conn.flush = true;
            side.wake.notify_all();
            return true;
        }
        if !conn.flush {
            if lock(&side.transport).wants_write() {
                conn.flush = true;
                side.wake.notify_all();
            } else {
                return true;
            }
        }
        state = side
            .wake
            .wait_timeout(state, FLUSH_WAIT)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0;
    }
}

/// The reader thread: socket bytes into the transport, plaintext into
/// frames, frames to `deliver`. Returns why it stopped.
fn read_loop(shared: &Shared, side: &Side, mut unfed: Vec<u8>) -> Failure {
    let mut decoder = Decoder::default();
    let mut buf = vec![0; READ_BYTES];
    let mut plain = vec![0; READ_BYTES];
    loop {
        let mut frames = Vec::new();
        let mut stalled = false;
        let (wants_write, closed) = {
            let mut transport = lock(&side.transport);
            loop {
                let mut got = 0;
                loop {
                    let n = match transport.read_plaintext(&mut plain) {
                        Ok(n) => n,
                        Err(e) => return Failure::Tls(e),
                    };
                    if n == 0 {
                        break;
                    }
                    got += n;
                    if let Err(failure) = decoder.push(&plain[..n], &mut frames) {
                        return failure;
                    }
                }
                if unfed.is_empty() {
                    break;
                }
                let n = match transport.feed(&unfed) {
                    Ok(n) => n,
                    Err(e) => return Failure::Tls(e),
                };
                unfed.drain(..n);
                if n == 0 && got == 0 {
                    // The transport's output is full: the writer must
                    // take it before more input fits.
                    stalled = true;
                    break;
                }
            }
            (transport.wants_write(), transport.peer_closed())
        };
        if !frames.is_empty() && !shared.deliver_frames(side.server, side.generation, frames) {
            return Failure::Dropped;
        }
        if (wants_write || stalled) && !hand_output(shared, side, stalled) {
            return Failure::Dropped;
        }
        if closed {
            return Failure::Closed;
        }
        if unfed.is_empty() {
            let mut stream = &side.stream;
            match stream.read(&mut buf) {
                Ok(0) => {
                    if let Err(e) = lock(&side.transport).feed_eof() {
                        return Failure::Tls(e);
                    }
                    return Failure::Closed;
                }
                Ok(n) => unfed.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Failure::Io(e),
            }
        }
    }
}

/// Frames out of a link's plaintext: `length: u32 BE || bytes`. A length
/// over [`MAX_FRAME`] is refused from its header, before any of the body
/// is held; a body's buffer never holds more than arrived, rounded up to
/// at most its length.
#[derive(Debug, Default)]
pub(super) struct Decoder {
    header: [u8; 4],
    header_len: usize,
    /// The frame being received and its announced length.
    body: Option<(Vec<u8>, usize)>,
}

impl Decoder {
    /// Takes `bytes` and appends every frame they complete to `frames`.
    pub(super) fn push(
        &mut self,
        mut bytes: &[u8],
        frames: &mut Vec<Vec<u8>>,
    ) -> Result<(), Failure> {
        loop {
            match &mut self.body {
                None => {
                    if bytes.is_empty() {
                        return Ok(());
                    }
                    let take = (4 - self.header_len).min(bytes.len());
                    self.header[self.header_len..self.header_len + take]
                        .copy_from_slice(&bytes[..take]);
                    self.header_len += take;
                    bytes = &bytes[take..];
                    if self.header_len == 4 {
                        self.header_len = 0;
                        let announced = u32::from_be_bytes(self.header);
                        let len = usize::try_from(announced).unwrap_or(usize::MAX);
                        if len > MAX_FRAME {
                            return Err(Failure::FrameTooLong(announced.into()));
                        }
                        self.body = Some((Vec::new(), len));
                    }
                }
                Some((body, len)) => {
                    let take = (*len - body.len()).min(bytes.len());
                    if body.capacity() - body.len() < take {
                        // Doubling, but never past the frame's length.
                        let need = body.len() + take;
                        let grown = need.max(body.capacity() * 2).min(*len);
                        body.reserve_exact(grown - body.len());
                    }
                    body.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if body.len() < *len {
                        return Ok(());
                    }
                    if let Some((body, _)) = self.body.take() {
                        frames.push(body);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut wire = Vec::new();
        for frame in frames {
            wire.extend_from_slice(&(frame.len() as u32).to_be_bytes());
            wire.extend_from_slice(frame);
        }
        wire
    }

    fn sample() -> Vec<Vec<u8>> {
        vec![
            vec![],
            b"a".to_vec(),
            vec![],
            (0..70_000u32).map(|i| i as u8).collect(),
            b"last".to_vec(),
        ]
    }

    #[test]
    fn every_split_decodes_the_same_frames() {
        let frames = sample();
        let wire = encode(&frames);
        for chunk in [1, 2, 3, 5, 4096, wire.len()] {
            let mut decoder = Decoder::default();
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                decoder.push(piece, &mut got).unwrap();
            }
            assert_eq!(got, frames, "in pieces of {chunk}");
            assert!(got.iter().all(|f| f.capacity() == f.len()));
        }
    }

    #[test]
    fn a_length_over_the_limit_is_refused_from_its_header() {
        let mut decoder = Decoder::default();
        let mut got = Vec::new();
        let header = (MAX_FRAME as u32 + 1).to_be_bytes();
        decoder.push(&header[..3], &mut got).unwrap();
        let refused = decoder.push(&header[3..], &mut got);
        assert!(matches!(refused, Err(Failure::FrameTooLong(n)) if n == MAX_FRAME as u64 + 1));
        let mut exact = Decoder::default();
        exact
            .push(&(MAX_FRAME as u32).to_be_bytes(), &mut got)
            .unwrap();
        assert!(got.is_empty());
    }
}
