//! A blocking client on `Connection` alone (see `ferry_core::driving`): joins, chats, uploads
//! FILE to the inbox, leaves once verified. `cargo run --example std_client -- ADDR FILE`
use ferry_core::transfer::{Outcome, TransferEvent};
use ferry_core::{bytes::Bytes, ClientConfig, Connection, Event, CLOSE_LINGER};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};
use std::{env, fs::File, os::unix::fs::FileExt};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = env::args().collect();
    let [_, addr, path] = &args[..] else {
        return Err("usage: std_client ADDR FILE".into());
    };
    let name = path.rsplit('/').next().unwrap_or(path);
    let (file, mut socket) = (File::open(path)?, TcpStream::connect(addr)?);
    let size = file.metadata()?.len();
    let mut conn = Connection::client(ClientConfig::new("std-example"), Instant::now());
    let (mut buf, mut verified, mut closed) = (vec![0; 64 * 1024], false, false);
    loop {
        // Drain until nothing moves: taking output can ask for the next chunk.
        let mut moved = true;
        while moved {
            moved = false;
            while let Some(bytes) = conn.poll_transmit() {
                socket.write_all(&bytes)?;
                moved = true;
            }
            while let Some(event) = conn.poll_event() {
                let now = Instant::now();
                moved = true;
                match event {
                    Event::Welcomed { name: me, .. } => {
                        conn.say(now, &format!("{me} here, sending {name}"))?;
                        conn.offer_file(now, name, size, "")?;
                    }
                    Event::Message { from, text, .. } => println!("<{from}> {text}"),
                    Event::Transfer(TransferEvent::NeedChunk { id, offset, len }) => {
                        let mut chunk = vec![0; len as usize];
                        file.read_exact_at(&mut chunk, offset)?;
                        conn.supply_chunk(now, id, offset, Bytes::from(chunk))?;
                    }
                    Event::Transfer(TransferEvent::Ended { outcome, .. }) => {
                        println!("upload of {name} ({size} bytes): {outcome:?}");
                        verified = outcome == Outcome::Verified;
                        conn.bye(now);
                    }
                    Event::Closed { code, reason, .. } => {
                        println!("closed: {code} {reason}");
                        closed = true; // its last frame goes out in this drain
                    }
                    _ => {}
                }
            }
        }
        if closed {
            // FIN, then the server's FIN, so a reset loses no last frame (§6.9).
            socket.shutdown(Shutdown::Write)?;
            socket.set_read_timeout(Some(CLOSE_LINGER))?;
            while matches!(socket.read(&mut buf), Ok(n) if n > 0) {}
            return verified.then_some(()).ok_or_else(|| "not verified".into());
        }
        // Sleep until the next timeout or input, then feed what happened.
        let wait = conn.poll_timeout().map(|at| at - Instant::now()); // saturates at 0
        socket.set_read_timeout(wait.map(|d| d.max(Duration::from_millis(1))))?;
        let now = Instant::now();
        match socket.read(&mut buf) {
            Ok(0) => conn.handle_eof(now),
            Ok(n) => conn.handle_input(now, &buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                conn.handle_timeout(now)
            }
            Err(e) => conn.handle_broken(now, &e.to_string()),
        }
    }
}
