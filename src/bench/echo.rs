//! `ferry bench echo` (hidden): a raw TCP echo server in a process of its
//! own, the baseline that has the shape of a ferry server (another process,
//! woken by the kernel for each message) without any of its work. It prints
//! `listening on ADDR` and writes back whatever each connection sends, on a
//! blocking thread per connection, until it is killed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

/// Serves until killed; only fails to start.
pub fn echo() -> Result<(), String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("echo: cannot listen: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("echo: cannot read the address: {e}"))?;
    println!("listening on {addr}");
    for stream in listener.incoming().map_while(Result::ok) {
        std::thread::spawn(move || echo_back(stream));
    }
    Ok(())
}

/// Writes back what arrives, as it arrives, until the peer hangs up.
fn echo_back(mut stream: TcpStream) {
    if stream.set_nodelay(true).is_err() {
        return;
    }
    let mut buf = vec![0; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}
