//! The ways a file is moved over loopback, each timed from the moment the
//! sending side starts until the file has arrived.

use super::memory::{Peaks, Sampler};
use super::process::Spawned;
use super::process::{
    all_succeeded, drain, free_port, last_line, sync, timed_out, wait_all, wait_listening,
};
use super::server::fingerprint_in;
use crate::runtime::Runtime;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// The buffer of the plain copy: what a simple program would pick.
const BUFFER: usize = 64 * 1024;

/// socat's transfer block (`-b`): 128 KiB rather than its default 8 KiB,
/// so that the TLS pipe moves full 16 KiB records and is not held back
/// by small reads.
const SOCAT_BUFFER: &str = "131072";

/// How long a listener may take to come up before the run fails.
const STARTUP: Duration = Duration::from_secs(10);

/// A copy timed twice: once all bytes are written and the file is closed,
/// and again once they are on disk.
pub struct CopyTimes {
    pub copied: Duration,
    pub durable: Duration,
}

/// A ferry upload: how long `ferry send` took, and the peak resident
/// memory of the server and of the sender.
pub struct FerryRun {
    pub elapsed: Duration,
    pub peaks: Peaks,
}

/// A receiver thread and a sender thread with std's blocking sockets and a
/// 64 KiB buffer: the least any program has to do to move the bytes.
pub fn std_copy(source: &Path, output: &Path, timeout: Duration) -> Result<CopyTimes, String> {
    enum Side {
        Sent(io::Result<()>),
        Received(io::Result<(Instant, Instant)>),
    }
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot listen: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot listen: {e}"))?;
    let input = File::open(source).map_err(|e| format!("cannot open the source: {e}"))?;
    let (report, reports) = mpsc::channel();
    let receiver_report = report.clone();
    let output = output.to_path_buf();
    std::thread::spawn(move || {
        let _ = receiver_report.send(Side::Received(receive(&listener, &output)));
    });
    sync()?;
    let start = Instant::now();
    std::thread::spawn(move || {
        let _ = report.send(Side::Sent(send(addr, input)));
    });
    let deadline = start + timeout;
    let (mut sent, mut received) = (false, None);
    while !sent || received.is_none() {
        match reports.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Side::Sent(Ok(()))) => sent = true,
            Ok(Side::Sent(Err(e))) => return Err(format!("sending: {e}")),
            Ok(Side::Received(Ok(times))) => received = Some(times),
            Ok(Side::Received(Err(e))) => return Err(format!("receiving: {e}")),
            Err(_) => return Err(timed_out(timeout)),
        }
    }
    let (closed, fsynced) = received.expect("the loop ends only once received");
    Ok(CopyTimes {
        copied: closed - start,
        durable: fsynced - start,
    })
}

fn send(addr: SocketAddr, mut input: File) -> io::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    let mut buffer = vec![0; BUFFER];
    loop {
        match input.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => stream.write_all(&buffer[..n])?,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    stream.shutdown(Shutdown::Write)
}

/// Returns when the file was closed and when it was on disk.
fn receive(listener: &TcpListener, output: &Path) -> io::Result<(Instant, Instant)> {
    let (mut stream, _) = listener.accept()?;
    let mut file = File::create(output)?;
    let mut buffer = vec![0; BUFFER];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => file.write_all(&buffer[..n])?,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    drop(file);
    let closed = Instant::now();
    fsync(output)?;
    Ok((closed, Instant::now()))
}

/// Flushes a closed file to disk, as `nc` cannot be asked to.
fn fsync(path: &Path) -> io::Result<()> {
    OpenOptions::new().write(true).open(path)?.sync_all()
}

/// Whether `nc` is on the PATH and can half-close (`-N`, OpenBSD netcat),
/// which the sender needs so that the listener sees the end of the file.
pub fn find_netcat() -> Result<(), String> {
    let help = Command::new("nc")
        .arg("-h")
        .stdin(Stdio::null())
        .output()
        .map_err(|_| "nc is not on the PATH".to_string())?;
    let text = String::from_utf8_lossy(&help.stdout) + String::from_utf8_lossy(&help.stderr);
    if text.contains("-N") {
        Ok(())
    } else {
        Err("nc has no -N option (OpenBSD netcat has)".into())
    }
}

/// Whether `b3sum` (the BLAKE3 command-line tool) is on the PATH.
pub fn find_b3sum() -> Result<(), String> {
    Command::new("b3sum")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map(drop)
        .map_err(|_| "b3sum is not on the PATH".to_string())
}

/// `b3sum PATH`: how long it took and the hash it printed, in hex.
pub fn b3sum(path: &Path, timeout: Duration) -> Result<(Duration, String), String> {
    let start = Instant::now();
    let mut hasher = Spawned::spawn(
        Command::new("b3sum")
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        "b3sum",
    )?;
    let output = drain(hasher.child().stdout.take());
    let errors = drain(hasher.child().stderr.take());
    let (end, statuses) = wait_all(&mut [&mut hasher], start, timeout)?;
    if !statuses[0].success() {
        let errors = errors.join().unwrap_or_default();
        return Err(format!(
            "b3sum failed ({}): {}",
            statuses[0],
            last_line(&errors)
        ));
    }
    let output = output.join().unwrap_or_default();
    let hash = output.split_whitespace().next().unwrap_or("").to_string();
    Ok((end - start, hash))
}

/// Times a pipe over loopback: `listener` is started and waited for on
/// `port`, the caches are flushed, then `sender` is started (both with
/// stderr piped, quoted if they fail). Returns when the sender started and
/// when both had exited, each successfully.
pub(super) fn listener_then_sender(
    port: u16,
    listener: (&mut Command, &str),
    sender: (&mut Command, &str),
    timeout: Duration,
) -> Result<(Instant, Instant), String> {
    let (listen_what, send_what) = (listener.1, sender.1);
    let mut listener = Spawned::spawn(listener.0.stderr(Stdio::piped()), listen_what)?;
    let listener_errors = drain(listener.child().stderr.take());
    wait_listening(port, &mut listener, STARTUP)?;
    sync()?;
    let start = Instant::now();
    let mut sender = Spawned::spawn(sender.0.stderr(Stdio::piped()), send_what)?;
    let sender_errors = drain(sender.child().stderr.take());
    let (end, statuses) = wait_all(&mut [&mut listener, &mut sender], start, timeout)?;
    all_succeeded(
        &statuses,
        vec![(listen_what, listener_errors), (send_what, sender_errors)],
    )?;
    Ok((start, end))
}

/// `nc -l` writing into the output file, fed by `nc -N` reading the source.
pub fn netcat(source: &Path, output: &Path, timeout: Duration) -> Result<CopyTimes, String> {
    let port = free_port()?;
    let port_text = port.to_string();
    let sink = File::create(output).map_err(|e| format!("cannot create the output: {e}"))?;
    let input = File::open(source).map_err(|e| format!("cannot open the source: {e}"))?;
    let (start, end) = listener_then_sender(
        port,
        (
            Command::new("nc")
                .args(["-l", "127.0.0.1", &port_text])
                .stdin(Stdio::null())
                .stdout(sink),
            "nc -l",
        ),
        (
            Command::new("nc")
                .args(["-N", "127.0.0.1", &port_text])
                .stdin(input)
                .stdout(Stdio::null()),
            "nc -N",
        ),
        timeout,
    )?;
    fsync(output).map_err(|e| format!("cannot fsync the output: {e}"))?;
    Ok(CopyTimes {
        copied: end - start,
        durable: start.elapsed(),
    })
}

/// `socat` listening with TLS (the certificate and key in `cert_dir`,
/// as `ferry serve` makes them) and writing into the output file, fed by
/// `socat` reading the source and connecting with TLS (no certificate
/// check: `verify=0`, as a quick pipe is set up in practice).
pub fn socat_tls(
    source: &Path,
    output: &Path,
    cert_dir: &Path,
    timeout: Duration,
) -> Result<CopyTimes, String> {
    let port = free_port()?;
    let sink = File::create(output).map_err(|e| format!("cannot create the output: {e}"))?;
    let cert = cert_dir.join(ferry_tls::CERT_FILE);
    let key = cert_dir.join(ferry_tls::KEY_FILE);
    let (start, end) = listener_then_sender(
        port,
        (
            Command::new("socat")
                .args(["-u", "-b", SOCAT_BUFFER])
                .arg(format!(
                    "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,cert={},key={},verify=0",
                    cert.display(),
                    key.display()
                ))
                .arg("STDOUT")
                .stdin(Stdio::null())
                .stdout(sink),
            "socat OPENSSL-LISTEN",
        ),
        (
            Command::new("socat")
                .args(["-u", "-b", SOCAT_BUFFER])
                .arg(format!("OPEN:{},rdonly", source.display()))
                .arg(format!("OPENSSL:127.0.0.1:{port},verify=0"))
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
            "socat OPENSSL",
        ),
        timeout,
    )?;
    fsync(output).map_err(|e| format!("cannot fsync the output: {e}"))?;
    Ok(CopyTimes {
        copied: end - start,
        durable: start.elapsed(),
    })
}

/// `ferry send` to a fresh `ferry serve` with `inbox`, both this program
/// and both with `runtime`, the server's certificate in `tls_dir`. With
/// `tls` the sender pins the fingerprint the server printed
/// (`--fingerprint`); without, it sends in clear text (`--no-tls`). The
/// send returns only once the server has checked the BLAKE3 hash and
/// stored the file (fsync, rename).
pub fn ferry(
    runtime: Runtime,
    source: &Path,
    inbox: &Path,
    tls_dir: &Path,
    tls: bool,
    timeout: Duration,
) -> Result<FerryRun, String> {
    let program = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let (server, addr, output) = spawn_logging(
        Command::new(&program)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--runtime",
                runtime.name(),
            ])
            .arg("--inbox")
            .arg(inbox)
            .arg("--tls-dir")
            .arg(tls_dir),
        "ferry serve",
        STARTUP,
    )?;
    let check = if tls {
        match fingerprint_in(&output, STARTUP) {
            Ok(fingerprint) => vec!["--fingerprint".to_string(), fingerprint.to_string()],
            Err(e) => {
                server.kill();
                return Err(e);
            }
        }
    } else {
        vec!["--no-tls".to_string()]
    };
    sync()?;
    let start = Instant::now();
    let mut sender = Spawned::spawn(
        Command::new(&program)
            .arg("send")
            .args(&check)
            .arg(addr.to_string())
            .arg(source)
            .args(["--runtime", runtime.name()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
        "ferry send",
    )?;
    let sender_errors = drain(sender.child().stderr.take());
    let sampler = Sampler::start(vec![server.id(), sender.id()]);
    let waited = wait_all(&mut [&mut sender], start, timeout);
    let peaks = sampler.finish();
    server.kill();
    let (end, statuses) = waited?;
    if !statuses[0].success() {
        let errors = sender_errors.join().unwrap_or_default();
        return Err(format!(
            "ferry send failed ({}): {}",
            statuses[0],
            last_line(&errors)
        ));
    }
    Ok(FerryRun {
        elapsed: end - start,
        peaks: Peaks {
            server: peaks[0],
            sender: peaks[1].max(sender.peak_resident()),
        },
    })
}

/// Starts `command` (a server that prints the address it listens on as
/// its first line), with stdin closed and stdout and stderr piped, and
/// waits up to `limit` for that address. If none comes, the process is
/// killed and the error quotes the last line of its stderr.
pub(super) fn spawn_listening(
    command: &mut Command,
    what: &str,
    limit: Duration,
) -> Result<(Spawned, SocketAddr), String> {
    spawn_logging(command, what, limit).map(|(process, addr, _)| (process, addr))
}

/// [`spawn_listening`], also keeping what the server prints on stdout
/// after its address (its log), for benches that count or read it.
pub(super) fn spawn_logging(
    command: &mut Command,
    what: &str,
    limit: Duration,
) -> Result<(Spawned, SocketAddr, Arc<Output>), String> {
    let mut process = Spawned::spawn(
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        what,
    )?;
    let errors = drain(process.child().stderr.take());
    let output = Arc::new(Output::default());
    match announced_address(process.child().stdout.take(), limit, output.clone()) {
        Some(addr) => Ok((process, addr, output)),
        None => {
            process.kill();
            let errors = errors.join().unwrap_or_default();
            Err(format!("{what} printed no address: {}", last_line(&errors)))
        }
    }
}

/// The lines a server printed on stdout after its first: all of them
/// counted, the first [`Output::KEPT`] kept, so that a server flooding its
/// log costs the bench bounded memory.
#[derive(Default)]
pub struct Output {
    count: AtomicU64,
    kept: Mutex<Vec<String>>,
}

impl Output {
    /// Lines kept for reading; later ones are only counted.
    pub const KEPT: usize = 20_000;

    /// Lines printed so far, the address line included.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// The kept lines that contain `part`.
    pub fn lines_with(&self, part: &str) -> Vec<String> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.iter().filter(|l| l.contains(part)).cloned().collect()
    }

    pub(super) fn push(&self, line: String) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < Self::KEPT {
            kept.push(line);
        }
        self.count.fetch_add(1, Ordering::SeqCst);
    }
}

/// The address in the first line a server prints. The rest of its output
/// is read in the background into `output`, so that logging never blocks
/// it.
fn announced_address(
    stdout: Option<ChildStdout>,
    limit: Duration,
    output: Arc<Output>,
) -> Option<SocketAddr> {
    let (first_line, first) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout?).lines();
        let line = lines.next()?.ok()?;
        output.push(line.clone());
        let _ = first_line.send(line);
        lines
            .map_while(Result::ok)
            .for_each(|line| output.push(line));
        Some(())
    });
    let line = first.recv_timeout(limit).ok()?;
    line.split_whitespace().find_map(|word| word.parse().ok())
}
