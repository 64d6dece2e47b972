//! One chat client of the load generator, whatever it speaks: bytes in,
//! message texts out; message texts in, bytes to write out. `ferry` is
//! driven through `ferry_core::Connection` itself, the client path a real
//! ferry client takes.

use ferry_core::{ClientConfig, Connection, Event};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A connected chat client of the load generator.
pub trait Peer {
    /// Takes bytes read from the socket: calls `message` with the text of
    /// every room message they complete, and appends any bytes the
    /// protocol must answer with to `out`.
    fn receive(
        &mut self,
        now: Instant,
        bytes: &[u8],
        out: &mut Vec<u8>,
        message: &mut dyn FnMut(&[u8]),
    ) -> Result<(), String>;

    /// Appends the bytes that say `text` to the room to `out`.
    fn publish(&mut self, now: Instant, text: &[u8], out: &mut Vec<u8>) -> Result<(), String>;

    /// Runs the protocol's timers (keepalive); called now and then.
    fn tick(&mut self, _now: Instant, _out: &mut Vec<u8>) {}
}

/// A ferry client: a [`Connection`] over the load generator's socket.
pub struct FerryPeer {
    conn: Connection,
}

impl FerryPeer {
    /// Connects to `addr` as `name` in `room` and returns once welcomed,
    /// with the socket still blocking.
    pub fn connect(
        addr: SocketAddr,
        name: &str,
        room: &str,
        timeout: Duration,
    ) -> Result<(TcpStream, FerryPeer), String> {
        let failed = |e: std::io::Error| format!("{name}: {e}");
        let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(failed)?;
        stream.set_nodelay(true).map_err(failed)?;
        stream.set_read_timeout(Some(timeout)).map_err(failed)?;
        let mut conn = Connection::client(ClientConfig::new(name).room(room), Instant::now());
        let mut buf = vec![0; 16 * 1024];
        loop {
            while let Some(bytes) = conn.poll_transmit() {
                stream.write_all(&bytes).map_err(failed)?;
            }
            while let Some(event) = conn.poll_event() {
                match event {
                    Event::Welcomed { .. } => return Ok((stream, FerryPeer { conn })),
                    Event::Closed { code, reason, .. } => {
                        return Err(format!("{name} was not let in: {code} ({reason})"))
                    }
                    _ => {}
                }
            }
            let n = stream.read(&mut buf).map_err(failed)?;
            if n == 0 {
                return Err(format!("{name}: the server closed the connection"));
            }
            conn.handle_input(Instant::now(), &buf[..n]);
        }
    }

    fn drain(&mut self, out: &mut Vec<u8>, message: &mut dyn FnMut(&[u8])) -> Result<(), String> {
        while let Some(event) = self.conn.poll_event() {
            match event {
                Event::Message { text, .. } => message(text.as_bytes()),
                Event::Closed { code, reason, .. } => {
                    return Err(format!(
                        "the server closed the connection: {code} ({reason})"
                    ))
                }
                _ => {}
            }
        }
        while let Some(bytes) = self.conn.poll_transmit() {
            out.extend_from_slice(&bytes);
        }
        Ok(())
    }
}

impl Peer for FerryPeer {
    fn receive(
        &mut self,
        now: Instant,
        bytes: &[u8],
        out: &mut Vec<u8>,
        message: &mut dyn FnMut(&[u8]),
    ) -> Result<(), String> {
        self.conn.handle_input(now, bytes);
        self.drain(out, message)
    }

    fn publish(&mut self, now: Instant, text: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let text = std::str::from_utf8(text).map_err(|e| e.to_string())?;
        self.conn.say(now, text).map_err(|e| e.to_string())?;
        self.drain(out, &mut |_| {})
    }

    fn tick(&mut self, now: Instant, out: &mut Vec<u8>) {
        if self.conn.poll_timeout().is_some_and(|at| at <= now) {
            self.conn.handle_timeout(now);
        }
        // A close shows up as an error at the next receive.
        while let Some(bytes) = self.conn.poll_transmit() {
            out.extend_from_slice(&bytes);
        }
    }
}
