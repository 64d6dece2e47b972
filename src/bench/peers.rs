//! One chat client of the load generator, whatever it speaks: whole
//! protocol units in, message texts out; message texts in, bytes to write
//! out. A ferry client's handshake, keepalive and every frame other than a
//! room message go through `ferry_core::Connection`, the path a real ferry
//! client takes; room messages, which are nearly all of the traffic, are
//! found in the byte stream by their length prefix and handed on without
//! being copied or decoded, so that the bench measures the server rather
//! than its own client.

use ferry_core::frame::{frame_type, HEADER_LEN, PREAMBLE};
use ferry_core::{ClientConfig, Connection, Event};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Largest frame body read while connecting: what comes then (WELCOME,
/// REFUSE, the room's members) is far smaller, and a garbled length must
/// not make the bench allocate much.
const HANDSHAKE_FRAME: usize = 64 * 1024;

/// A connected chat client of the load generator.
pub trait Peer {
    /// Takes the bytes read from the socket and not yet used: calls
    /// `message` with the text of every room message among the whole units
    /// (frames, replies) at their start, appends any bytes the protocol
    /// must answer with to `out`, and returns how many bytes those whole
    /// units took. The rest is an unfinished unit: it comes again at the
    /// next call, with what follows it.
    fn receive(
        &mut self,
        now: Instant,
        bytes: &[u8],
        out: &mut Vec<u8>,
        message: &mut impl FnMut(&[u8]),
    ) -> Result<usize, String>;

    /// Appends the bytes that say `text` to the room to `out`.
    fn publish(&mut self, now: Instant, text: &[u8], out: &mut Vec<u8>) -> Result<(), String>;

    /// Runs the protocol's timers (keepalive); called now and then.
    fn tick(&mut self, _now: Instant, _out: &mut Vec<u8>) {}

    /// Bytes read while connecting that come before anything
    /// [`receive`](Self::receive) is given.
    fn take_leftover(&mut self) -> Vec<u8> {
        Vec::new()
    }
}

/// A ferry client: a [`Connection`] over the load generator's socket.
pub struct FerryPeer {
    conn: Connection,
    /// The room's MEMBERS that follows the welcome has come.
    welcomed_members: bool,
}

impl FerryPeer {
    /// Connects to `addr` as `name` in `room` and returns once welcomed,
    /// with the socket still blocking. It reads the preamble and then one
    /// frame at a time, so that the socket holds whole frames from here on
    /// and the connection has nothing half read.
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
        let mut started = false;
        loop {
            while let Some(bytes) = conn.poll_transmit() {
                stream.write_all(&bytes).map_err(failed)?;
            }
            while let Some(event) = conn.poll_event() {
                match event {
                    Event::Welcomed { .. } => {
                        let peer = FerryPeer {
                            conn,
                            welcomed_members: false,
                        };
                        return Ok((stream, peer));
                    }
                    Event::Closed { code, reason, .. } => {
                        return Err(format!("{name} was not let in: {code} ({reason})"))
                    }
                    _ => {}
                }
            }
            // The preamble first, then one whole frame per turn.
            let unit = if started {
                let mut header = [0; HEADER_LEN];
                stream.read_exact(&mut header).map_err(failed)?;
                let body = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
                if body as usize > HANDSHAKE_FRAME {
                    return Err(format!("{name}: a frame of {body} bytes while connecting"));
                }
                let mut unit = header.to_vec();
                unit.resize(HEADER_LEN + body as usize, 0);
                stream.read_exact(&mut unit[HEADER_LEN..]).map_err(failed)?;
                unit
            } else {
                let mut preamble = vec![0; PREAMBLE.len()];
                stream.read_exact(&mut preamble).map_err(failed)?;
                started = true;
                preamble
            };
            conn.handle_input(Instant::now(), &unit);
        }
    }

    /// Hands over what the connection has to send; fails on what would
    /// make a message go missing with the server's reason, so that a run
    /// that fails says why rather than only which message did not come.
    fn drain(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        while let Some(event) = self.conn.poll_event() {
            match event {
                Event::Closed { code, reason, .. } => {
                    return Err(format!(
                        "the server closed the connection: {code} ({reason})"
                    ));
                }
                Event::Bounced { code, reason } => {
                    return Err(format!("the server bounced a message: {code} ({reason})"));
                }
                // Past the welcome's, a MEMBERS comes unasked only when a
                // cluster's server resynchronised a room: events were lost.
                Event::Members { names } if self.welcomed_members => {
                    return Err(format!(
                        "the server resent the room's members ({} names): it lost events of the room",
                        names.len()
                    ));
                }
                Event::Members { .. } => self.welcomed_members = true,
                _ => {}
            }
        }
        while let Some(bytes) = self.conn.poll_transmit() {
            out.extend_from_slice(&bytes);
        }
        Ok(())
    }
}

/// The text of a `MESSAGE` frame body (seq, sender, text), borrowed; `None`
/// if the body is not laid out as one.
fn message_text(body: &[u8]) -> Option<&[u8]> {
    let (_from, rest) = bytes16(body.get(8..)?)?;
    let (text, rest) = bytes16(rest)?;
    rest.is_empty().then_some(text)
}

/// A 2-byte length and that many bytes, and what follows them.
fn bytes16(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let (length, rest) = input.split_first_chunk::<2>()?;
    let length = usize::from(u16::from_be_bytes(*length));
    (rest.len() >= length).then(|| rest.split_at(length))
}

impl Peer for FerryPeer {
    fn receive(
        &mut self,
        now: Instant,
        bytes: &[u8],
        out: &mut Vec<u8>,
        message: &mut impl FnMut(&[u8]),
    ) -> Result<usize, String> {
        let limit = self.conn.settings().max_frame;
        let mut used = 0;
        while let Some(header) = bytes[used..].first_chunk::<HEADER_LEN>() {
            let body = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
            // Checked before the frame is waited for, so that the
            // unfinished tail the load generator keeps stays bounded.
            if body > limit {
                return Err(format!("a frame of {body} bytes, over {limit}"));
            }
            let body = body as usize;
            let end = used + HEADER_LEN + body;
            let Some(frame) = bytes.get(used..end) else {
                break;
            };
            if header[0] == frame_type::MESSAGE {
                let text = message_text(&frame[HEADER_LEN..])
                    .ok_or_else(|| "a malformed MESSAGE frame".to_string())?;
                message(text);
            } else {
                self.conn.handle_input(now, frame);
                self.drain(out)?;
            }
            used = end;
        }
        Ok(used)
    }

    fn publish(&mut self, now: Instant, text: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let text = std::str::from_utf8(text).map_err(|e| e.to_string())?;
        self.conn.say(now, text).map_err(|e| e.to_string())?;
        self.drain(out)
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use ferry_core::frame::Frame;
    use ferry_core::text::Text;

    #[test]
    fn message_texts_are_found_in_any_split() {
        let mut stream = BytesMut::new();
        for (seq, text) in ["hello", "", "a longer one"].into_iter().enumerate() {
            Frame::Message {
                seq: seq as u64,
                from: Text::from("pub0"),
                text: Text::from(text),
            }
            .encode(&mut stream)
            .unwrap();
        }
        for split in [1, 2, 7, stream.len()] {
            let mut peer = FerryPeer {
                conn: Connection::client(ClientConfig::new("sub0"), Instant::now()),
                welcomed_members: false,
            };
            let mut pending = Vec::new();
            let mut got = Vec::new();
            for piece in stream.chunks(split) {
                pending.extend_from_slice(piece);
                let used = peer
                    .receive(Instant::now(), &pending, &mut Vec::new(), &mut |m| {
                        got.push(m.to_vec())
                    })
                    .unwrap();
                pending.drain(..used);
            }
            assert_eq!(got, [&b"hello"[..], b"", b"a longer one"], "split {split}");
            assert!(pending.is_empty());
        }
        assert_eq!(message_text(&[0; 12]), Some(&b""[..]));
        assert_eq!(message_text(&[0; 13]), None);
        assert_eq!(message_text(&[0; 11]), None);
    }

    /// A client of the load generator, welcomed into `fanout`.
    fn welcomed() -> FerryPeer {
        let now = Instant::now();
        let mut conn = Connection::client(ClientConfig::new("pub0").room("fanout"), now);
        let mut input = BytesMut::from(&ferry_core::frame::PREAMBLE[..]);
        Frame::Welcome {
            version: 1,
            name: Text::from("pub0"),
            room: Text::from("fanout"),
            settings: ferry_core::Config::default().settings(),
        }
        .encode(&mut input)
        .unwrap();
        while conn.poll_transmit().is_some() {}
        conn.handle_input(now, &input);
        assert!(
            std::iter::from_fn(|| conn.poll_event()).any(|e| matches!(e, Event::Welcomed { .. })),
            "welcomed"
        );
        FerryPeer {
            conn,
            welcomed_members: false,
        }
    }

    fn receive(peer: &mut FerryPeer, frame: Frame) -> Result<usize, String> {
        let mut bytes = BytesMut::new();
        frame.encode(&mut bytes).unwrap();
        peer.receive(Instant::now(), &bytes, &mut Vec::new(), &mut |_| {})
    }

    #[test]
    fn a_bounce_or_a_second_members_fails_the_run_with_the_servers_reason() {
        let mut peer = welcomed();
        let members = Frame::Members {
            names: vec![Text::from("pub0")],
        };
        assert!(receive(&mut peer, members.clone()).is_ok(), "the welcome's");
        let again = receive(&mut peer, members).unwrap_err();
        assert!(again.contains("lost events"), "{again}");
        let bounced = receive(
            &mut welcomed(),
            Frame::Bounce {
                code: ferry_core::Code::CLUSTER_UNAVAILABLE,
                reason: Text::from("the servers of this cluster cannot reach each other now"),
            },
        )
        .unwrap_err();
        assert!(bounced.contains("cannot reach each other"), "{bounced}");
    }
}
