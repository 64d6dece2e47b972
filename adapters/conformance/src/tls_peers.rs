//! Peers a TLS scenario runs beside the adapter: a blocking TLS text client
//! (what `openssl s_client -quiet` does), a relay that records what crosses
//! the wire, a real ClientHello to send by hand, and a stopwatch for the
//! server closing a connection.

use crate::wait::WAIT;
use ferry_tls::{Identity, TlsClient, Transport, Verify};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Whether `needle` occurs in `haystack`.
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A ClientHello, as a real TLS client sends it first.
pub(crate) fn client_hello() -> Vec<u8> {
    let mut t = Transport::client(&TlsClient::new(), "127.0.0.1", 1, &Verify::default()).unwrap();
    let mut hello = Vec::new();
    t.take_outgoing(&mut hello);
    assert_eq!(hello[0], 0x16);
    hello
}

/// Reads until the server closes the connection; how long that took.
pub(crate) fn time_to_close(stream: &mut TcpStream) -> Duration {
    let start = Instant::now();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return start.elapsed(),
            Err(e) => panic!("the server kept the connection open: {e}"),
        }
    }
}

/// A blocking TLS text client: what `openssl s_client -quiet` does.
pub(crate) struct TextOverTls {
    pub(crate) socket: TcpStream,
    pub(crate) transport: Transport,
    unfed: Vec<u8>,
    received: Vec<u8>,
}

impl TextOverTls {
    /// Connects to `addr` and starts a TLS handshake that pins `identity`.
    pub(crate) fn connect(addr: SocketAddr, identity: &Identity) -> TextOverTls {
        let socket = TcpStream::connect(addr).unwrap();
        socket.set_read_timeout(Some(WAIT)).unwrap();
        let verify = Verify::pinned(identity.fingerprint());
        let transport = Transport::client(&TlsClient::new(), "127.0.0.1", 1, &verify).unwrap();
        TextOverTls {
            socket,
            transport,
            unfed: Vec::new(),
            received: Vec::new(),
        }
    }

    fn flush(&mut self) {
        while self.transport.wants_write() {
            self.transport.write_to(&mut self.socket).unwrap();
        }
    }

    /// Reads the socket once and feeds the transport.
    fn pump(&mut self) {
        if self.unfed.is_empty() {
            let mut buf = [0; 4096];
            let n = self.socket.read(&mut buf).unwrap();
            assert!(n > 0, "the server closed the connection");
            self.unfed.extend_from_slice(&buf[..n]);
        }
        let n = self.transport.feed(&self.unfed).unwrap();
        self.unfed.drain(..n);
        let mut buf = [0; 4096];
        loop {
            let n = self.transport.read_plaintext(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            self.received.extend_from_slice(&buf[..n]);
        }
        self.flush();
    }

    pub(crate) fn write(&mut self, mut text: &[u8]) {
        while !text.is_empty() {
            let n = self.transport.write_plaintext(text).unwrap();
            text = &text[n..];
            self.flush();
            if n == 0 && !self.transport.wants_write() {
                self.pump();
            }
        }
    }

    /// The next received line containing `part`, skipping others.
    pub(crate) fn expect(&mut self, part: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            while let Some(end) = self.received.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.received.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line).trim_end().to_string();
                if line.contains(part) {
                    return line;
                }
            }
            assert!(Instant::now() < deadline, "no line with {part:?}");
            self.pump();
        }
    }
}

/// A relay between a client and `to` that keeps every byte it carries,
/// each direction apart: what someone watching the wire sees.
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    to_server: Arc<Mutex<Vec<u8>>>,
    to_client: Arc<Mutex<Vec<u8>>>,
}

impl Proxy {
    pub(crate) fn start(to: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let to_server = Arc::new(Mutex::new(Vec::new()));
        let to_client = Arc::new(Mutex::new(Vec::new()));
        let (up, down) = (to_server.clone(), to_client.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(to) else {
                    return;
                };
                let (c, s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let up = up.clone();
                thread::spawn(move || relay(client, server, &up));
                let down = down.clone();
                thread::spawn(move || relay(s, c, &down));
            }
        });
        Proxy {
            addr,
            to_server,
            to_client,
        }
    }

    pub(crate) fn seen(&self) -> (Vec<u8>, Vec<u8>) {
        (
            self.to_server.lock().unwrap().clone(),
            self.to_client.lock().unwrap().clone(),
        )
    }
}

fn relay(mut from: TcpStream, mut to: TcpStream, log: &Mutex<Vec<u8>>) {
    let mut buf = [0; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                log.lock().unwrap().extend_from_slice(&buf[..n]);
                if to.write_all(&buf[..n]).is_err() {
                    let _ = from.shutdown(Shutdown::Both);
                    return;
                }
            }
        }
    }
}
