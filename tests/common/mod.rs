//! What the end-to-end reliability tests share: the built `ferry` program
//! run as a server or a client, a hand-driven raw protocol peer, and a TCP
//! proxy that can slow a stream down or flip one byte of it.
//!
//! Every wait is bounded, and waits for an event (a log line, a frame, a
//! file reaching a size) rather than for a guessed time.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use ferry_core::frame::{decode, Frame, PREAMBLE};
use ferry_core::{Code, SessionSecret};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const FERRY: &str = env!("CARGO_BIN_EXE_ferry");
/// The longest any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// The state folder (`ferry send`'s resume keys) of the programs this test
/// binary runs: one of its own, never the user's, so runs do not see each
/// other's keys. A test that sets `FERRY_STATE_DIR` itself overrides it.
///
/// Every `ferry serve` of the test binary serves the one TLS certificate
/// made here (in `tls/`) before any server starts: servers starting at
/// once would otherwise race to make it, and a port reused by a server with
/// another certificate would look like a changed server to the clients.
pub fn state_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        ferry_tls::Identity::load_or_create(&dir.path().join("tls"), std::time::SystemTime::now())
            .unwrap();
        dir
    })
    .path()
}

/// The arguments of a test's client command, with `--trust-new-server`
/// added to `chat`, `send` and `tui` unless the test chose how to trust the
/// server itself: test clients trust the test server on first contact, as
/// a user would once they checked its fingerprint.
pub fn client_args<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let chooses = [
        "--no-tls",
        "--fingerprint",
        "--trust-new-server",
        "--known-servers",
    ];
    let mut args = args.to_vec();
    if matches!(args.first(), Some(&("chat" | "send" | "tui")))
        && !args.iter().any(|a| chooses.contains(a))
    {
        args.insert(1, "--trust-new-server");
    }
    args
}

/// The files stored in a receiving folder, sorted: not its private folder
/// of partial files.
pub fn stored_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name != ferry_files::PARTIALS_DIR)
        .collect();
    names.sort();
    names
}

/// The partial files a receiving folder keeps, with their lengths, sorted
/// (none if it has no folder of partial files yet).
pub fn partials_in(dir: &Path) -> Vec<(String, u64)> {
    let Ok(entries) = std::fs::read_dir(dir.join(ferry_files::PARTIALS_DIR)) else {
        return Vec::new();
    };
    let mut parts: Vec<(String, u64)> = entries
        .map(|e| {
            let e = e.unwrap();
            let len = e.metadata().map_or(0, |m| m.len());
            (e.file_name().into_string().unwrap(), len)
        })
        .collect();
    parts.sort();
    parts
}

/// The one partial file a receiving folder keeps: its path and length.
pub fn the_partial_in(dir: &Path) -> Option<(std::path::PathBuf, u64)> {
    match &partials_in(dir)[..] {
        [(name, len)] => Some((dir.join(ferry_files::PARTIALS_DIR).join(name), *len)),
        _ => None,
    }
}

/// Deterministic pseudo-random contents (incompressible, no repeats).
pub fn contents(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(size);
    out
}

/// BLAKE3 of a file, hex.
pub fn hash_file(path: &Path) -> String {
    blake3::hash(&std::fs::read(path).unwrap())
        .to_hex()
        .to_string()
}

/// Bytes of the trees staged (cut, kept for a resume) in the inbox or
/// download folder `dir`.
pub fn staged_tree_bytes(dir: &Path) -> u64 {
    fn bytes(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .map(|e| {
                        let e = e.unwrap();
                        let meta = std::fs::symlink_metadata(e.path()).unwrap();
                        if meta.is_dir() {
                            bytes(&e.path())
                        } else {
                            meta.len()
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    std::fs::read_dir(dir.join(".ferry-partial"))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.to_string_lossy().ends_with(".tree"))
                .map(|p| bytes(&p))
                .sum()
        })
        .unwrap_or(0)
}

/// Runs `body` until it returns `Some`, every few milliseconds, for at
/// most `WAIT`; `what` names what is awaited in the failure.
pub fn wait_until<T>(what: &str, mut body: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = body() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// The size of `path`, 0 if missing.
pub fn size_of(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// A running `ferry serve`, its log lines, and everything it printed.
pub struct Serve {
    pub child: Child,
    pub addr: SocketAddr,
    log: Receiver<String>,
    pub seen: Vec<String>,
    /// Raw bytes of stdout and stderr, for checks on what reaches a terminal.
    pub raw: Arc<Mutex<Vec<u8>>>,
}

impl Serve {
    /// `ferry serve` on a free port of 127.0.0.1 (or where `--listen` in
    /// `args` says) with `inbox` and `args`.
    pub fn start(inbox: &Path, args: &[&str]) -> Serve {
        Serve::start_with(inbox, args, |_| {})
    }

    /// Like [`start`](Self::start), letting `setup` adjust the command
    /// (environment, resource limits) first.
    pub fn start_with(inbox: &Path, args: &[&str], setup: impl FnOnce(&mut Command)) -> Serve {
        let mut command = Command::new(FERRY);
        command.arg("serve");
        // A free port unless the test names one (a server restarted on the
        // address of the one it replaces).
        if !args.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        command.arg("--inbox").arg(inbox).args(args);
        // Every test client comes from 127.0.0.1, one source, whose log
        // lines the server would otherwise summarise past a budget: tests
        // that wait for particular lines need them all. Tests of the budget
        // itself pass `--log-burst`.
        if !args.contains(&"--log-burst") {
            command.args(["--log-burst", "0"]);
        }
        command
            .env_remove("FERRY_TOKEN")
            .env("FERRY_STATE_DIR", state_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        setup(&mut command);
        let mut child = command.spawn().unwrap();
        let raw = Arc::new(Mutex::new(Vec::new()));
        let (tx, log) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        for (stream, tx) in [
            (Box::new(stdout) as Box<dyn Read + Send>, tx.clone()),
            (Box::new(stderr), tx),
        ] {
            let raw = raw.clone();
            thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut line = Vec::new();
                while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                    raw.lock().unwrap().extend_from_slice(&line);
                    let _ = tx.send(String::from_utf8_lossy(&line).trim_end().to_string());
                    line.clear();
                }
            });
        }
        let first = log.recv_timeout(WAIT).expect("serve printed nothing");
        let addr = first
            .split_whitespace()
            .find_map(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        Serve {
            child,
            addr,
            log,
            seen: vec![first],
            raw,
        }
    }

    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Waits for a log line (not yet returned by this method for an earlier
    /// call) containing every one of `parts`, and returns it.
    pub fn expect(&mut self, parts: &[&str]) -> String {
        self.expect_count(parts, 1).pop().unwrap()
    }

    /// Waits until `count` log lines contain every one of `parts`.
    pub fn expect_count(&mut self, parts: &[&str], count: usize) -> Vec<String> {
        let matches = |l: &String| parts.iter().all(|p| l.contains(p));
        let deadline = Instant::now() + WAIT;
        loop {
            let found: Vec<String> = self.seen.iter().filter(|l| matches(l)).cloned().collect();
            if found.len() >= count {
                return found;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "{count} log lines with {parts:?} never came; saw {} lines, the last:\n{:#?}",
                    self.seen.len(),
                    &self.seen[self.seen.len().saturating_sub(20)..]
                ),
            }
        }
    }

    /// Takes in the lines printed so far, without waiting.
    pub fn catch_up(&mut self) {
        while let Ok(line) = self.log.try_recv() {
            self.seen.push(line);
        }
    }

    /// Everything printed so far, stdout and stderr, as bytes.
    pub fn output(&self) -> Vec<u8> {
        self.raw.lock().unwrap().clone()
    }

    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, and wait for a clean stop.
    pub fn terminate(&mut self) -> ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        wait_exit(&mut self.child)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        // A failed test must not leave a server running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (bounded) for `child` to exit.
pub fn wait_exit(child: &mut Child) -> ExitStatus {
    wait_until("a process to exit", || child.try_wait().unwrap())
}

/// A `ferry` client process with piped stdin and captured output.
pub struct Proc {
    pub child: Child,
    out: Receiver<String>,
    pub lines: Vec<String>,
    stderr: Option<thread::JoinHandle<String>>,
}

impl Proc {
    pub fn spawn(args: &[&str]) -> Proc {
        Proc::spawn_env(args, &[])
    }

    /// Runs `ferry ARGS` in the folder `cwd`.
    pub fn spawn_in(cwd: &Path, args: &[&str]) -> Proc {
        Proc::spawn_with(args, &[], Some(cwd))
    }

    pub fn spawn_env(args: &[&str], env: &[(&str, &str)]) -> Proc {
        Proc::spawn_with(args, env, None)
    }

    fn spawn_with(args: &[&str], env: &[(&str, &str)], cwd: Option<&Path>) -> Proc {
        let mut command = Command::new(FERRY);
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        command
            .args(client_args(args))
            .env_remove("FERRY_TOKEN")
            .env("FERRY_STATE_DIR", state_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let (tx, out) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        });
        Proc {
            child,
            out,
            lines: Vec::new(),
            stderr: Some(stderr),
        }
    }

    /// Waits for a stdout line containing every one of `parts`.
    pub fn expect(&mut self, parts: &[&str]) -> String {
        let matches = |l: &String| parts.iter().all(|p| l.contains(p));
        if let Some(line) = self.lines.iter().find(|l| matches(l)) {
            return line.clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .out
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no line with {parts:?}; saw {:#?}", self.lines));
            self.lines.push(line.clone());
            if matches(&line) {
                return line;
            }
        }
    }

    /// Closes its stdin and waits for it to exit: (success, stdout, stderr).
    pub fn finish(mut self) -> (bool, String, String) {
        drop(self.child.stdin.take());
        let status = wait_exit(&mut self.child);
        // Both readers end once the process's pipes close.
        while let Ok(line) = self.out.recv_timeout(WAIT) {
            self.lines.push(line);
        }
        let stderr = self.stderr.take().unwrap().join().unwrap();
        (status.success(), self.lines.join("\n"), stderr)
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `ferry ARGS` with `env` to the end: (success, stdout, stderr).
pub fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    Proc::spawn_env(args, env).finish()
}

/// A hand-driven protocol peer on a raw socket: sends any bytes or frames,
/// reads frames. Answers `PING` by itself.
pub struct Raw {
    pub stream: TcpStream,
    buf: BytesMut,
    preamble_seen: bool,
    pub closed: bool,
}

/// Why [`Raw::recv`] returned no frame.
#[derive(Debug, PartialEq, Eq)]
pub enum NoFrame {
    Timeout,
    Closed,
}

impl Raw {
    /// Reads frames until `pick` accepts one (skipping the others), for
    /// at most [`WAIT`]; `what` names it if it never comes.
    pub fn wait_for<T>(&mut self, what: &str, mut pick: impl FnMut(&Frame) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left) {
                Ok(frame) => {
                    if let Some(found) = pick(&frame) {
                        return found;
                    }
                }
                Err(e) => panic!("waiting for {what}: {e:?}"),
            }
        }
    }

    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            buf: BytesMut::new(),
            preamble_seen: false,
            closed: false,
        }
    }

    /// Hands the reading side of an established connection to a new `Raw`
    /// (for a thread of its own), with every byte `raw` has read but not yet
    /// decoded: a frame half read by `raw` would otherwise be lost, and every
    /// frame after it misread. `raw` keeps the writing side.
    pub fn split_reader(raw: &mut Raw) -> Raw {
        assert!(raw.preamble_seen, "split before the preamble was read");
        Raw {
            stream: raw.stream.try_clone().unwrap(),
            buf: std::mem::take(&mut raw.buf),
            preamble_seen: true,
            closed: raw.closed,
        }
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    pub fn send(&mut self, frame: &Frame) -> io::Result<()> {
        let mut out = BytesMut::new();
        frame.encode(&mut out).unwrap();
        self.stream.write_all(&out)
    }

    /// Preamble and `HELLO`.
    pub fn hello(&mut self, name: &str, room: &str, token: &[u8]) {
        let mut out = BytesMut::from(&PREAMBLE[..]);
        Frame::Hello {
            versions: vec![1],
            name: name.into(),
            room: room.into(),
            token: Bytes::copy_from_slice(token),
        }
        .encode(&mut out)
        .unwrap();
        self.stream.write_all(&out).unwrap();
    }

    /// Preamble, `RECLAIM` with `secret`, and `HELLO` without a token.
    pub fn hello_reclaiming(&mut self, name: &str, room: &str, secret: SessionSecret) {
        let mut out = BytesMut::from(&PREAMBLE[..]);
        Frame::Reclaim { secret }.encode(&mut out).unwrap();
        Frame::Hello {
            versions: vec![1],
            name: name.into(),
            room: room.into(),
            token: Bytes::new(),
        }
        .encode(&mut out)
        .unwrap();
        self.stream.write_all(&out).unwrap();
    }

    /// Connects and joins; returns once its own `JOINED` arrived.
    pub fn join(addr: SocketAddr, name: &str, room: &str) -> Raw {
        Raw::join_session(addr, name, room, None).0
    }

    /// Connects and joins, first presenting `reclaim` in `RECLAIM` if
    /// given; returns once its own `JOINED` arrived, with the secret the
    /// server handed out in `SESSION`, if it did.
    pub fn join_session(
        addr: SocketAddr,
        name: &str,
        room: &str,
        reclaim: Option<SessionSecret>,
    ) -> (Raw, Option<SessionSecret>) {
        let mut raw = Raw::connect(addr);
        match reclaim {
            Some(secret) => raw.hello_reclaiming(name, room, secret),
            None => raw.hello(name, room, b""),
        }
        match raw.recv(WAIT) {
            Ok(Frame::Welcome { .. }) => {}
            other => panic!("{name} was not welcomed: {other:?}"),
        }
        let mut session = None;
        loop {
            match raw.recv(WAIT) {
                Ok(Frame::Joined { name: who, .. }) if who == name => return (raw, session),
                Ok(Frame::Session { secret }) => session = Some(secret),
                Ok(_) => {}
                Err(e) => panic!("{name} never saw itself join: {e:?}"),
            }
        }
    }

    /// The next frame within `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Result<Frame, NoFrame> {
        let deadline = Instant::now() + timeout;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if !self.preamble_seen && self.buf.len() >= PREAMBLE.len() {
                assert_eq!(
                    &self.buf[..PREAMBLE.len()],
                    &PREAMBLE,
                    "the server's preamble"
                );
                let _ = self.buf.split_to(PREAMBLE.len());
                self.preamble_seen = true;
            }
            if self.preamble_seen {
                match decode(&mut self.buf, u32::MAX) {
                    Ok(Some(Frame::Ping { nonce })) => {
                        let _ = self.send(&Frame::Pong { nonce });
                        continue;
                    }
                    Ok(Some(frame)) => return Ok(frame),
                    Ok(None) => {}
                    Err(e) => panic!("the server sent a bad frame: {e}"),
                }
            }
            if self.closed {
                return Err(NoFrame::Closed);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NoFrame::Timeout);
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut chunk) {
                Ok(0) => self.closed = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(NoFrame::Timeout)
                }
                Err(_) => self.closed = true,
            }
        }
    }

    /// Reads until the server ends the connection with `ERROR` or `REFUSE`;
    /// returns its code and reason. Checks the socket is closed after it.
    pub fn expect_end(&mut self) -> (Code, String) {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left) {
                Ok(Frame::Error { code, reason } | Frame::Refuse { code, reason }) => {
                    let after = self.recv(WAIT);
                    assert_eq!(after, Err(NoFrame::Closed), "not closed after {code:?}");
                    return (code, reason.to_string());
                }
                Ok(_) => {}
                Err(e) => panic!("no ERROR or REFUSE came: {e:?}"),
            }
        }
    }

    /// Says `text` and waits for its echo; returns the frames seen before.
    pub fn say_and_hear(&mut self, text: &str) -> Vec<Frame> {
        self.send(&Frame::Say { text: text.into() }).unwrap();
        let mut before = Vec::new();
        loop {
            match self.recv(WAIT) {
                Ok(Frame::Message { text: t, .. }) if t == text => return before,
                Ok(frame) => before.push(frame),
                Err(e) => panic!("no echo of {text:?}: {e:?}"),
            }
        }
    }

    pub fn close(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// What a [`Proxy`] does to the streams it carries.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProxyMode {
    /// Forward at most this many bytes per read, then pause (both ways).
    pub chunk: Option<usize>,
    /// The pause after each forwarded chunk.
    pub pause: Duration,
    /// Flip one byte in the middle of the payload of the client's n-th
    /// `DATA` frame (counting from 1).
    pub flip_data_frame: Option<usize>,
    /// When the client goes, keep its connection to the server open and
    /// silent (a link that died without a word): the server learns of it
    /// only from its idle timeout.
    pub silent_drop: bool,
}

/// A TCP proxy on a free port of 127.0.0.1 in front of `target`. Closes
/// each side when the other closes. Lives until dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Bytes flipped so far.
    pub flipped: Arc<AtomicBool>,
    /// Bytes carried from clients to the server so far.
    pub carried: Arc<AtomicU64>,
}

impl Proxy {
    pub fn start(target: SocketAddr, mode: ProxyMode) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flipped = Arc::new(AtomicBool::new(false));
        let carried = Arc::new(AtomicU64::new(0));
        let (stop2, flipped2, carried2) = (stop.clone(), flipped.clone(), carried.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let flipped = flipped2.clone();
                let carried = carried2.clone();
                thread::spawn(move || pump(client, server, mode, Some((flipped, carried))));
                thread::spawn(move || pump(s2, c2, mode, None));
            }
        });
        Proxy {
            addr,
            stop,
            flipped,
            carried,
        }
    }

    pub fn addr(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Unblocks the accept loop so that it sees the stop.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copies `from` into `to`, shaping and maybe corrupting the bytes, until
/// either side ends; then ends both.
/// `client_to_server` holds the flag of a flipped byte and the count of
/// bytes carried, for that direction.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    mode: ProxyMode,
    client_to_server: Option<(Arc<AtomicBool>, Arc<AtomicU64>)>,
) {
    let (flip, carried) = client_to_server.unzip();
    let mut buf = vec![0u8; mode.chunk.unwrap_or(64 * 1024)];
    let mut scanner = flip
        .as_ref()
        .and(mode.flip_data_frame)
        .map(FrameScanner::new);
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let (Some(scanner), Some(flag)) = (scanner.as_mut(), flip.as_ref()) {
            if scanner.scan(&mut buf[..n]) {
                flag.store(true, Ordering::SeqCst);
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        if let Some(carried) = &carried {
            carried.fetch_add(n as u64, Ordering::SeqCst);
        }
        if mode.chunk.is_some() {
            thread::sleep(mode.pause);
        }
    }
    let client_to_server = flip.is_some();
    if mode.silent_drop {
        if client_to_server {
            // The other direction's copy of the server socket keeps it
            // open: no FIN reaches the server.
            return;
        }
        // The client is gone: swallow what the server still says until it
        // closes the connection itself.
        while matches!(from.read(&mut buf), Ok(n) if n > 0) {}
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

/// Follows a client's byte stream frame by frame, to flip one byte in the
/// middle of one `DATA` frame's payload.
struct FrameScanner {
    preamble_left: usize,
    header: Vec<u8>,
    body_left: u64,
    body_index: u64,
    flip_at: Option<u64>,
    data_frames: usize,
    wanted: usize,
}

impl FrameScanner {
    fn new(wanted: usize) -> Self {
        FrameScanner {
            preamble_left: PREAMBLE.len(),
            header: Vec::new(),
            body_left: 0,
            body_index: 0,
            flip_at: None,
            data_frames: 0,
            wanted,
        }
    }

    /// Returns whether it flipped a byte in `buf`.
    fn scan(&mut self, buf: &mut [u8]) -> bool {
        let mut flipped = false;
        for byte in buf.iter_mut() {
            if self.preamble_left > 0 {
                self.preamble_left -= 1;
            } else if self.body_left > 0 {
                if self.flip_at == Some(self.body_index) {
                    *byte ^= 0x20;
                    flipped = true;
                    self.flip_at = None;
                }
                self.body_index += 1;
                self.body_left -= 1;
            } else {
                self.header.push(*byte);
                if self.header.len() == 5 {
                    let len = u32::from_be_bytes(self.header[1..5].try_into().unwrap());
                    if self.header[0] == 0x23 {
                        self.data_frames += 1;
                        // id (4) and offset (8) come before the payload.
                        if self.data_frames == self.wanted && len > 12 {
                            self.flip_at = Some(12 + u64::from(len - 12) / 2);
                        }
                    }
                    self.body_left = u64::from(len);
                    self.body_index = 0;
                    self.header.clear();
                }
            }
        }
        flipped
    }
}

/// Raises this process's open-file limit to its hard limit (children
/// inherit it): tests that hold a thousand sockets need it.
pub fn raise_fd_limit() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: getrlimit/setrlimit only read and write the struct given.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Whether `bytes` (a program's terminal output) hold a raw control
/// character other than newline and tab: ESC, C0, DEL or C1.
pub fn has_raw_control(bytes: &[u8]) -> Option<usize> {
    let text = String::from_utf8_lossy(bytes);
    text.char_indices()
        .find(|&(_, c)| c.is_control() && c != '\n' && c != '\t')
        .map(|(i, _)| i)
}

/// A raw-text guest on a plain socket, as `nc` would be: writes lines,
/// reads lines. Every read waits at most `WAIT`.
pub struct TextGuest {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
    /// Every line read so far, without its line ending.
    pub heard: Vec<String>,
}

impl TextGuest {
    pub fn connect(addr: SocketAddr) -> TextGuest {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        TextGuest {
            stream,
            reader,
            heard: Vec::new(),
        }
    }

    /// Sends `text` as it is (add the line ending yourself).
    pub fn write(&mut self, text: &[u8]) {
        self.stream.write_all(text).unwrap();
    }

    /// The next line, raw bytes (CR LF removed); `None` at end of stream.
    pub fn line(&mut self) -> Option<Vec<u8>> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) => None,
            Ok(_) => {
                while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    line.pop();
                }
                self.heard.push(String::from_utf8_lossy(&line).into_owned());
                Some(line)
            }
            Err(e) => panic!("reading a guest's line: {e} (heard {:#?})", self.heard),
        }
    }

    /// Reads lines until one contains `part`; returns it.
    pub fn expect(&mut self, part: &str) -> String {
        loop {
            match self.line() {
                Some(line) => {
                    let line = String::from_utf8_lossy(&line).into_owned();
                    if line.contains(part) {
                        return line;
                    }
                }
                None => panic!("the guest never heard {part:?}; heard {:#?}", self.heard),
            }
        }
    }

    /// Reads to the end of the stream; returns every byte that came.
    pub fn rest(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        match self.reader.read_to_end(&mut all) {
            Ok(_) => all,
            Err(e) => panic!("the server did not close: {e}"),
        }
    }
}

/// A `redis-server` of the test's own on a free loopback port, with nothing
/// saved to disk; killed on drop (`kill9` to kill it mid-test).
pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    /// On a free port. Tests run in parallel, and a port found free can be
    /// taken by another test's server before this one binds it: the server
    /// that answers must be this one (its `process_id`), else another port
    /// is tried.
    pub fn start() -> RedisServer {
        for _ in 0..20 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap()
                .port();
            if let Some(server) = RedisServer::try_start_on(port) {
                return server;
            }
        }
        panic!("no redis-server of this test's own could start");
    }

    /// On `port` (a restart on the port of one killed before).
    pub fn start_on(port: u16) -> RedisServer {
        RedisServer::try_start_on(port).expect("redis-server on its port")
    }

    fn try_start_on(port: u16) -> Option<RedisServer> {
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is needed (apt-get install redis-server)");
        let deadline = Instant::now() + WAIT;
        loop {
            if child.try_wait().ok().flatten().is_some() {
                // It could not bind: the port was taken meanwhile.
                return None;
            }
            if redis_process_id(port) == Some(child.id()) {
                return Some(RedisServer { child, port });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Bytes of memory Redis says it uses (`used_memory`).
    pub fn used_memory(&self) -> u64 {
        redis_info(self.port, "memory", "used_memory")
            .and_then(|v| v.parse().ok())
            .expect("INFO memory from the test's redis-server")
    }

    /// SIGKILL, and reap: everything it held is gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The process id of the Redis answering on `port`, if one does.
fn redis_process_id(port: u16) -> Option<u32> {
    redis_info(port, "server", "process_id")?.parse().ok()
}

/// The value of `field` in the `section` of `INFO` of the Redis on `port`.
fn redis_info(port: u16, section: &str, field: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(format!("INFO {section}\r\n").as_bytes())
        .ok()?;
    // A bulk string: `$LEN\r\n`, LEN bytes, `\r\n`.
    let mut reply = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        if let Some(header_end) = reply.windows(2).position(|w| w == b"\r\n") {
            let len: usize = std::str::from_utf8(reply.get(1..header_end)?)
                .ok()?
                .parse()
                .ok()?;
            if reply.len() >= header_end + 2 + len {
                break;
            }
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        reply.extend_from_slice(&chunk[..n]);
    }
    let prefix = format!("{field}:");
    String::from_utf8_lossy(&reply)
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(|v| v.trim().to_string()))
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
