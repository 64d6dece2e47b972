//! Redis pub/sub, the anchor of `ferry bench fanout`: a `redis-server` on a
//! free loopback port, and a client of the load generator speaking RESP
//! (`SUBSCRIBE`, `PUBLISH`) directly, with no client library.

use super::peers::Peer;
use super::process::{drain, free_port, wait_listening, Spawned};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The channel every subscriber listens on.
const CHANNEL: &[u8] = b"room";

/// The version line of `redis-server` on the PATH, or why it cannot run.
pub fn find() -> Result<String, String> {
    let output = Command::new("redis-server")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|_| "redis-server is not on the PATH".to_string())?;
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .lines()
        .next()
        .unwrap_or("redis-server")
        .trim()
        .to_string())
}

/// A `redis-server` with no persistence, killed when dropped.
pub struct RedisServer {
    process: Spawned,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl RedisServer {
    /// Starts one and waits until it listens.
    pub fn start(limit: Duration) -> Result<RedisServer, String> {
        let port = free_port()?;
        let mut process = Spawned::spawn(
            Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
            "redis-server",
        )?;
        drain(process.child().stderr.take());
        wait_listening(port, &mut process, limit)?;
        Ok(RedisServer {
            process,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        })
    }

    /// Its process id, for /proc.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }
}

/// A RESP client: a subscriber of [`CHANNEL`] or a publisher to it.
pub struct RedisPeer {
    /// Bytes read while subscribing that follow the confirmation.
    leftover: Vec<u8>,
}

impl RedisPeer {
    /// Connects; a subscriber returns once Redis confirmed the
    /// subscription, with the socket still blocking.
    pub fn connect(
        addr: SocketAddr,
        subscribe: bool,
        timeout: Duration,
    ) -> Result<(TcpStream, RedisPeer), String> {
        let failed = |e: std::io::Error| format!("redis: {e}");
        let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(failed)?;
        stream.set_nodelay(true).map_err(failed)?;
        stream.set_read_timeout(Some(timeout)).map_err(failed)?;
        if !subscribe {
            let peer = RedisPeer {
                leftover: Vec::new(),
            };
            return Ok((stream, peer));
        }
        let mut command = Vec::new();
        command_of(&mut command, &[b"SUBSCRIBE", CHANNEL]);
        stream.write_all(&command).map_err(failed)?;
        let mut buf = [0; 4096];
        let mut input = Vec::new();
        loop {
            let n = stream.read(&mut buf).map_err(failed)?;
            if n == 0 {
                return Err("redis closed the connection".into());
            }
            input.extend_from_slice(&buf[..n]);
            if let Some((reply, used)) = next_reply(&input)? {
                if reply.first(&input) == Some(&b"subscribe"[..]) {
                    input.drain(..used);
                    let peer = RedisPeer { leftover: input };
                    return Ok((stream, peer));
                }
                return Err("redis answered SUBSCRIBE with something else".into());
            }
        }
    }
}

/// Largest reply the load generator takes whole: a pushed message of the
/// largest text the bench sends, with room to spare.
const MAX_REPLY: usize = 64 * 1024;

/// How every pushed message of [`CHANNEL`] starts, up to its text's length.
const PUSHED: &[u8] = b"*3\r\n$7\r\nmessage\r\n$4\r\nroom\r\n$";

impl Peer for RedisPeer {
    fn receive(
        &mut self,
        _now: Instant,
        bytes: &[u8],
        _out: &mut Vec<u8>,
        message: &mut impl FnMut(&[u8]),
    ) -> Result<usize, String> {
        let mut used = 0;
        loop {
            let rest = &bytes[used..];
            // Nearly every reply is a pushed message: take it by its fixed
            // start, and parse anything else in full.
            if let Some(after) = rest.strip_prefix(PUSHED) {
                if let Some((length, next)) = line(after, 0) {
                    let end = next + number(length)?;
                    if after.len() < end + 2 {
                        break;
                    }
                    message(&after[next..end]);
                    used += PUSHED.len() + end + 2;
                    continue;
                }
            }
            let Some((reply, length)) = next_reply(rest)? else {
                break;
            };
            if reply.first(rest) == Some(&b"message"[..]) {
                if let Some((start, end)) = reply.parts[2] {
                    message(&rest[start..end]);
                }
            }
            used += length;
        }
        if bytes.len() - used > MAX_REPLY {
            return Err(format!("redis: a reply over {MAX_REPLY} bytes"));
        }
        Ok(used)
    }

    fn publish(&mut self, _now: Instant, text: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        command_of(out, &[b"PUBLISH", CHANNEL, text]);
        Ok(())
    }

    fn take_leftover(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.leftover)
    }
}

/// Appends a command as a RESP array of bulk strings.
fn command_of(out: &mut Vec<u8>, words: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", words.len()).as_bytes());
    for word in words {
        out.extend_from_slice(format!("${}\r\n", word.len()).as_bytes());
        out.extend_from_slice(word);
        out.extend_from_slice(b"\r\n");
    }
}

/// One reply: for an array, where its first three bulk strings lie (a
/// pushed message is `message`, the channel, the text); anything else
/// (an integer, a simple string) has none.
#[derive(Debug, Default)]
struct Reply {
    parts: [Option<(usize, usize)>; 3],
}

impl Reply {
    fn first<'a>(&self, input: &'a [u8]) -> Option<&'a [u8]> {
        self.parts[0].map(|(start, end)| &input[start..end])
    }
}

/// The reply at the start of `input` and its length, or `None` until it
/// has arrived whole. Errors from Redis (`-ERR ...`) fail the run.
fn next_reply(input: &[u8]) -> Result<Option<(Reply, usize)>, String> {
    let Some((head, mut at)) = line(input, 0) else {
        return Ok(None);
    };
    let mut reply = Reply::default();
    match head.first() {
        Some(b':' | b'+') => {}
        Some(b'-') => {
            return Err(format!("redis: {}", String::from_utf8_lossy(&head[1..])));
        }
        Some(b'*') => {
            for index in 0..number(&head[1..])? {
                let Some((element, next)) = line(input, at) else {
                    return Ok(None);
                };
                match element.first() {
                    Some(b'$') => {
                        let end = next + number(&element[1..])?;
                        if input.len() < end + 2 {
                            return Ok(None);
                        }
                        if let Some(part) = reply.parts.get_mut(index) {
                            *part = Some((next, end));
                        }
                        at = end + 2;
                    }
                    Some(b':') => at = next,
                    _ => return Err("redis: unexpected reply".into()),
                }
            }
        }
        _ => return Err("redis: unexpected reply".into()),
    }
    Ok(Some((reply, at)))
}

/// The line starting at `from` without its CR LF, and where the next
/// begins.
fn line(input: &[u8], from: usize) -> Option<(&[u8], usize)> {
    let mut end = from;
    loop {
        end += input.get(end..)?.iter().position(|&b| b == b'\r')?;
        if *input.get(end + 1)? == b'\n' {
            return Some((&input[from..end], end + 2));
        }
        end += 1;
    }
}

/// A length in a reply: decimal digits, a handful of them.
fn number(text: &[u8]) -> Result<usize, String> {
    let bad = || "redis: bad length in a reply".to_string();
    if text.is_empty() || text.len() > 9 {
        return Err(bad());
    }
    text.iter().try_fold(0, |value, &digit| {
        digit
            .is_ascii_digit()
            .then(|| value * 10 + usize::from(digit - b'0'))
            .ok_or_else(bad)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_messages_are_parsed_in_any_split() {
        let mut stream = Vec::new();
        stream.extend_from_slice(b":3\r\n");
        for text in [&b"hello"[..], b"", b"a\r\nb"] {
            command_of(&mut stream, &[b"message", CHANNEL, text]);
        }
        for split in [1, 2, 7, stream.len()] {
            let mut peer = RedisPeer {
                leftover: Vec::new(),
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
            assert_eq!(got, [&b"hello"[..], b"", b"a\r\nb"], "split {split}");
            assert!(pending.is_empty());
        }
        assert!(next_reply(b"-ERR nope\r\n").is_err());
    }
}
