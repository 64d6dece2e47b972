//! What scenarios prepare and inspect besides the adapter: file contents,
//! receiving folders, and clients driven by hand over a plain socket.

use ferry_core::{ClientConfig, Connection, Event};
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::wait::WAIT;

/// `size` bytes that are not periodic in any small power of two, different
/// for every `seed`: a misplaced or repeated chunk shows.
pub fn contents(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| ((i / 7) as u8).wrapping_mul(31) ^ (i as u8).wrapping_add(seed))
        .collect()
}

/// Writes `data` to a file `name` in `dir` and returns its path.
pub fn file_with(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, data).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

/// Whether the file at `path` holds exactly `data`; a short message saying
/// how it differs otherwise.
pub fn differs(path: &Path, data: &[u8]) -> Option<String> {
    let stored = match fs::read(path) {
        Ok(stored) => stored,
        Err(e) => return Some(format!("{} cannot be read: {e}", path.display())),
    };
    if stored == data {
        return None;
    }
    let first = stored
        .iter()
        .zip(data)
        .position(|(a, b)| a != b)
        .unwrap_or(stored.len().min(data.len()));
    Some(format!(
        "{} holds {} bytes where {} were sent, the first difference at byte {first}",
        path.display(),
        stored.len(),
        data.len()
    ))
}

/// The files stored in a receiving folder, sorted (not its folder of
/// partial files).
pub fn stored_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != ferry_files::PARTIALS_DIR)
        .collect();
    names.sort();
    names
}

/// The partial files a receiving folder keeps: paths and lengths, sorted.
pub fn partials_in(dir: &Path) -> Vec<(PathBuf, u64)> {
    let Ok(entries) = fs::read_dir(dir.join(ferry_files::PARTIALS_DIR)) else {
        return Vec::new();
    };
    let mut partials: Vec<(PathBuf, u64)> = entries
        .map(|e| {
            let e = e.unwrap();
            (e.path(), e.metadata().map_or(0, |m| m.len()))
        })
        .collect();
    partials.sort();
    partials
}

/// A ferry client run by hand: the core's [`Connection`] on a blocking
/// socket, so that a scenario can send, stop reading or hang up wherever it
/// likes.
pub struct HandDriven {
    /// The socket.
    pub stream: TcpStream,
    /// The client's protocol state.
    pub conn: Connection,
}

impl HandDriven {
    /// Connects to `addr` and sends the preamble and `HELLO`; reads nothing.
    pub fn hello(addr: SocketAddr, config: ClientConfig) -> HandDriven {
        let stream = TcpStream::connect(addr)
            .unwrap_or_else(|e| panic!("connecting a hand-driven client to {addr}: {e}"));
        stream.set_read_timeout(Some(WAIT)).expect("a read timeout");
        let mut client = HandDriven {
            stream,
            conn: Connection::client(config, Instant::now()),
        };
        client.transmit();
        client
    }

    /// Writes everything the connection has to send.
    pub fn transmit(&mut self) {
        while let Some(bytes) = self.conn.poll_transmit() {
            self.stream
                .write_all(&bytes)
                .unwrap_or_else(|e| panic!("a hand-driven client's write: {e}"));
        }
    }

    /// Reads into the connection until `want` picks one of its events.
    ///
    /// # Panics
    ///
    /// If the server closes the connection or says nothing for [`WAIT`].
    pub fn read_until(&mut self, what: &str, mut want: impl FnMut(&Event) -> bool) {
        let mut buf = vec![0; 64 * 1024];
        loop {
            if std::iter::from_fn(|| self.conn.poll_event()).any(|e| want(&e)) {
                return;
            }
            self.transmit();
            let n = match self.stream.read(&mut buf) {
                Ok(n) => n,
                Err(e) => panic!("a hand-driven client waiting for {what}: {e}"),
            };
            assert!(n > 0, "the server hung up on a client waiting for {what}");
            self.conn.handle_input(Instant::now(), &buf[..n]);
        }
    }

    /// Connects and reads until the server welcomed the client.
    pub fn welcomed(addr: SocketAddr, config: ClientConfig) -> HandDriven {
        let name = config.name.clone();
        let mut client = HandDriven::hello(addr, config);
        client.read_until(&format!("{name}'s welcome"), |e| {
            matches!(e, Event::Welcomed { .. })
        });
        client
    }
}
