//! A hand-driven ferry peer on a raw socket, for honest clients and
//! attackers alike: it sends whatever frames it is told to, in whatever
//! order, from a loopback address of its choosing, and reads frames with
//! a deadline on every wait.

use bytes::{Bytes, BytesMut};
use ferry_core::frame::{decode, Frame, PREAMBLE};
use ferry_core::Code;
use socket2::{Domain, Socket, Type};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a connect may take.
const CONNECT: Duration = Duration::from_secs(5);

/// How often a blocked write looks at its stop flag.
const WRITE_SLICE: Duration = Duration::from_millis(50);

/// Why [`Wire::recv`] returned no frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoFrame {
    /// Nothing whole came in time.
    Timeout,
    /// The server closed the connection (or it broke).
    Closed,
    /// The server sent something that is not ferry.
    Garbled(String),
}

/// One TCP connection to the server, spoken to in raw frames.
pub struct Wire {
    stream: TcpStream,
    buf: BytesMut,
    preamble_seen: bool,
    closed: bool,
    /// Answer the server's `PING`s (honest clients do; attackers that
    /// never read cannot).
    pub answer_pings: bool,
}

impl Wire {
    /// Connects to `server` from the loopback address `from` (any port).
    pub fn connect(server: SocketAddr, from: IpAddr) -> io::Result<Wire> {
        let socket = Socket::new(Domain::for_address(server), Type::STREAM, None)?;
        socket.bind(&SocketAddr::new(from, 0).into())?;
        // Closing resets the connection instead of leaving it in
        // TIME_WAIT: the flooders open tens of thousands of connections
        // from one address, which would otherwise run out of ports.
        socket.set_linger(Some(Duration::ZERO))?;
        socket.connect_timeout(&server.into(), CONNECT)?;
        let stream: TcpStream = socket.into();
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(WRITE_SLICE))?;
        Ok(Wire {
            stream,
            buf: BytesMut::new(),
            preamble_seen: false,
            closed: false,
            answer_pings: true,
        })
    }

    /// A second handle on the same connection for a reader thread, with
    /// every byte this one read but did not decode yet (a frame half read
    /// here would otherwise be lost, and every frame after it misread).
    /// This one keeps writing.
    pub fn split_reader(&mut self) -> io::Result<Wire> {
        Ok(Wire {
            stream: self.stream.try_clone()?,
            buf: std::mem::take(&mut self.buf),
            preamble_seen: self.preamble_seen,
            closed: self.closed,
            answer_pings: false,
        })
    }

    /// The socket, for writers that batch frames themselves.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sends one frame (blocking; a full socket counts as an error only
    /// once it has stayed full for the whole write timeout).
    pub fn send(&mut self, frame: &Frame) -> io::Result<()> {
        let mut out = BytesMut::new();
        encode(frame, &mut out);
        self.send_bytes(&out)
    }

    /// Sends bytes as they are, waiting for the socket for at most a few
    /// seconds in all.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        let give_up = AtomicBool::new(false);
        let deadline = Instant::now() + CONNECT;
        write_until(&self.stream, bytes, &give_up, deadline)
    }

    /// Sends the preamble and a `HELLO`.
    pub fn hello(&mut self, name: &str, token: &[u8]) -> io::Result<()> {
        let mut out = BytesMut::from(&PREAMBLE[..]);
        encode(
            &Frame::Hello {
                versions: vec![1],
                name: name.into(),
                room: "".into(),
                token: Bytes::copy_from_slice(token),
            },
            &mut out,
        );
        self.send_bytes(&out)
    }

    /// Connects from `from`, says `HELLO` as `name` with `token`, and waits
    /// up to `timeout` for `WELCOME`. Returns the connection and the time
    /// from connecting to `WELCOME`, or what kept it out.
    pub fn join(
        server: SocketAddr,
        from: IpAddr,
        name: &str,
        token: &[u8],
        timeout: Duration,
    ) -> Result<(Wire, Duration), String> {
        let start = Instant::now();
        let mut wire = Wire::connect(server, from).map_err(|e| format!("connect: {e}"))?;
        wire.hello(name, token)
            .map_err(|e| format!("sending HELLO: {e}"))?;
        let deadline = start + timeout;
        loop {
            match wire.recv(deadline.saturating_duration_since(Instant::now())) {
                Ok(Frame::Welcome { .. }) => return Ok((wire, start.elapsed())),
                Ok(Frame::Refuse { code, reason } | Frame::Error { code, reason }) => {
                    return Err(format!("{} ({reason})", code_name(code)))
                }
                Ok(_) => {}
                Err(NoFrame::Timeout) => {
                    return Err(format!("no WELCOME within {} ms", timeout.as_millis()))
                }
                Err(NoFrame::Closed) => return Err("closed before WELCOME".into()),
                Err(NoFrame::Garbled(what)) => return Err(what),
            }
        }
    }

    /// The next frame within `timeout`. Answers the server's `PING`s when
    /// [`answer_pings`](Self::answer_pings) is set.
    pub fn recv(&mut self, timeout: Duration) -> Result<Frame, NoFrame> {
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 64 * 1024];
        loop {
            if let Some(frame) = self.decoded()? {
                return Ok(frame);
            }
            if self.closed {
                return Err(NoFrame::Closed);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NoFrame::Timeout);
            }
            // A zero read timeout means "block forever" to std.
            let _ = self
                .stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))));
            match self.stream.read(&mut chunk) {
                Ok(0) => self.closed = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => self.closed = true,
            }
        }
    }

    /// A frame already buffered, if whole.
    fn decoded(&mut self) -> Result<Option<Frame>, NoFrame> {
        loop {
            if !self.preamble_seen {
                if self.buf.len() < PREAMBLE.len() {
                    return Ok(None);
                }
                if self.buf[..PREAMBLE.len()] != PREAMBLE {
                    return Err(NoFrame::Garbled("the server sent no preamble".into()));
                }
                let _ = self.buf.split_to(PREAMBLE.len());
                self.preamble_seen = true;
            }
            match decode(&mut self.buf, u32::MAX) {
                Ok(Some(Frame::Ping { nonce })) if self.answer_pings => {
                    // A failed answer shows up as a closed connection at
                    // the next read.
                    let _ = self.send(&Frame::Pong { nonce });
                }
                Ok(frame) => return Ok(frame),
                Err(e) => return Err(NoFrame::Garbled(format!("a bad frame: {e}"))),
            }
        }
    }

    /// After an attack: how the server ended this connection, read from
    /// what it sent within `timeout`. "ERROR CODE" (or "REFUSE CODE") for
    /// the last such frame, "closed" for a close without one, "still
    /// connected" if it stays open.
    pub fn outcome(&mut self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            match self.recv(deadline.saturating_duration_since(Instant::now())) {
                Ok(Frame::Error { code, .. }) => last = Some(format!("ERROR {}", code_name(code))),
                Ok(Frame::Refuse { code, .. }) => {
                    last = Some(format!("REFUSE {}", code_name(code)))
                }
                Ok(_) => {}
                Err(NoFrame::Closed) => return last.unwrap_or_else(|| "closed".into()),
                Err(NoFrame::Garbled(what)) => return what,
                Err(NoFrame::Timeout) => return last.unwrap_or_else(|| "still connected".into()),
            }
        }
    }
}

/// Appends `frame` to `out`. Every frame the bench builds is within the
/// codec's limits, so a failure is a bug in the bench.
pub fn encode(frame: &Frame, out: &mut BytesMut) {
    frame
        .encode(out)
        .expect("the bench only builds encodable frames");
}

/// Writes all of `bytes` to `stream`, waiting while it is full, until
/// written, `stop` is set or `deadline` passes (then `TimedOut`).
pub fn write_until(
    mut stream: &TcpStream,
    bytes: &[u8],
    stop: &AtomicBool,
    deadline: Instant,
) -> io::Result<()> {
    let mut written = 0;
    while written < bytes.len() {
        match stream.write(&bytes[written..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if stop.load(Ordering::SeqCst) || Instant::now() >= deadline {
                    return Err(ErrorKind::TimedOut.into());
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A code's constant name (`FLOODING`), or its number.
pub fn code_name(code: Code) -> String {
    code.name()
        .map_or_else(|| format!("{:#06x}", code.0), str::to_string)
}
