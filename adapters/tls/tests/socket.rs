//! A blocking driver over a real socket pair: what a std adapter does.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use ferry_tls::{TlsClient, TlsServer, Transport, Verify};

/// Bytes read from the socket that the transport has not taken yet.
struct Driver<S> {
    socket: S,
    transport: Transport,
    unfed: Vec<u8>,
}

impl<S: Read + Write> Driver<S> {
    fn flush(&mut self) -> std::io::Result<()> {
        while self.transport.wants_write() {
            self.transport.write_to(&mut self.socket)?;
        }
        Ok(())
    }

    /// Reads plaintext until `want` bytes came or the peer closed.
    fn read(&mut self, want: usize) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        let mut got = Vec::new();
        let mut buf = [0; 4096];
        loop {
            self.flush()?;
            loop {
                let n = self.transport.read_plaintext(&mut buf)?;
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            if got.len() >= want || self.transport.peer_closed() {
                return Ok(got);
            }
            self.pump_input()?;
        }
    }

    /// Reads the socket once (blocking) and feeds what came.
    fn pump_input(&mut self) -> Result<(), Box<dyn std::error::Error>> {
        let mut buf = [0; 4096];
        if self.unfed.is_empty() {
            let n = self.socket.read(&mut buf)?;
            if n == 0 {
                return Ok(self.transport.feed_eof()?);
            }
            self.unfed.extend_from_slice(&buf[..n]);
        }
        let n = self.transport.feed(&self.unfed)?;
        self.unfed.drain(..n);
        Ok(())
    }

    fn write(&mut self, mut data: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
        while !data.is_empty() {
            let n = self.transport.write_plaintext(data)?;
            data = &data[n..];
            self.flush()?;
            // Full with nothing to send: the handshake is waiting for the
            // peer, so a blocking driver must read now.
            if n == 0 && !self.transport.wants_write() {
                self.pump_input()?;
            }
        }
        Ok(())
    }
}

#[test]
fn a_blocking_echo_over_a_socket_pair() {
    let (_dir, identity) = common::self_signed();
    let tls = TlsServer::new(&identity).unwrap();
    let (client_socket, mut server_socket) = UnixStream::pair().unwrap();
    let server = std::thread::spawn(move || {
        let mut first = [0; 4096];
        let n = server_socket.read(&mut first).unwrap();
        let transport = Transport::accept(&first[..n], Some(&tls)).unwrap();
        assert!(transport.is_tls());
        let mut driver = Driver {
            socket: server_socket,
            transport,
            unfed: first[..n].to_vec(),
        };
        let message = driver.read(1 << 20).unwrap();
        let upper = message.to_ascii_uppercase();
        driver.write(&upper).unwrap();
        driver.transport.close();
        driver.flush().unwrap();
    });
    let verify = Verify::pinned(identity.fingerprint());
    let transport = Transport::client(&TlsClient::new(), "localhost", 1, &verify).unwrap();
    let mut client = Driver {
        socket: client_socket,
        transport,
        unfed: Vec::new(),
    };
    let message: Vec<u8> = (0..1 << 20).map(|i| b'a' + (i % 26) as u8).collect();
    client.write(&message).unwrap();
    let echoed = client.read(1 << 20).unwrap();
    assert!(echoed == message.to_ascii_uppercase());
    assert!(client.read(1).unwrap().is_empty());
    assert!(client.transport.peer_closed());
    server.join().unwrap();
}
