//! The built `ferry` program, run as a user would.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");
const WAIT: Duration = Duration::from_secs(30);

/// `ferry` with this test binary's own state folder, whose TLS certificate
/// every server serves (made once, before any server starts), and whose
/// clients trust a new server as a user would once they checked it.
fn ferry(args: &[&str]) -> Command {
    static STATE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let state = STATE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        ferry_tls::Identity::load_or_create(&dir.path().join("tls"), std::time::SystemTime::now())
            .unwrap();
        dir
    });
    let mut command = Command::new(FERRY);
    command.env("FERRY_STATE_DIR", state.path());
    match args.split_first() {
        Some((first, rest)) if matches!(*first, "chat" | "send" | "tui") => {
            command.arg(first).arg("--trust-new-server").args(rest);
        }
        _ => {
            command.args(args);
        }
    }
    command
}

/// A `ferry serve` on a free port, with its log lines.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: Receiver<String>,
    seen: Vec<String>,
}

impl Server {
    fn start(inbox: &std::path::Path) -> Server {
        Server::start_on("mio", inbox)
    }

    fn start_on(runtime: &str, inbox: &std::path::Path) -> Server {
        let mut child = ferry(&["serve", "--listen", "127.0.0.1:0", "--runtime", runtime])
            .arg("--inbox")
            .arg(inbox)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, log) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let first = log.recv_timeout(WAIT).expect("serve printed nothing");
        let addr = first
            .split_whitespace()
            .find_map(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        Server {
            child,
            addr,
            log,
            seen: vec![first],
        }
    }

    /// Waits for a log line containing `text`.
    fn expect(&mut self, text: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(text)) {
            return line.clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .log
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no log line with {text:?}; saw {:#?}", self.seen));
            self.seen.push(line.clone());
            if line.contains(text) {
                return line;
            }
        }
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A failed test must not leave a server running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = ferry(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "ferry {args:?} did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn demo_runs_and_verifies() {
    let (ok, out, err) = run(&["demo"], "");
    assert!(ok, "{out}{err}");
    assert!(out.contains("<alice> hi bob"), "{out}");
    assert!(out.contains("BLAKE3"), "{out}");
    assert!(out.contains("demo ok"), "{out}");
}

#[test]
fn serve_chat_send_and_stop() {
    let inbox = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let mut server = Server::start(inbox.path());
    let addr = server.addr.to_string();

    // A chat client with piped input says its lines, then leaves.
    let (ok, out, err) = run(&["chat", &addr, "--name", "alice"], "hello room\n/who\n");
    assert!(ok, "{out}{err}");
    assert!(out.contains("<alice> hello room"), "{out}");
    assert!(out.contains("here: alice"), "{out}");
    server.expect("\"alice\" (127.0.0.1");
    server.expect("left: quit");

    // Upload a file; it lands in the inbox intact.
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let path = files.path().join("notes.bin");
    std::fs::write(&path, &data).unwrap();
    let (ok, out, err) = run(&["send", &addr, path.to_str().unwrap()], "");
    assert!(ok, "{out}{err}");
    assert_eq!(std::fs::read(inbox.path().join("notes.bin")).unwrap(), data);
    server.expect("\"notes.bin\" from");

    // Failures are one clear line and a non-zero status.
    let (ok, _, err) = run(&["send", &addr, "/no/such/file"], "");
    assert!(!ok);
    assert!(
        err.starts_with("ferry: cannot send") && err.lines().count() == 1,
        "{err}"
    );
    let (ok, _, err) = run(&["chat", "127.0.0.1:1", "--name", "x"], "");
    assert!(!ok);
    assert!(err.contains("refused"), "{err}");

    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

/// The program waits for the server's notices with nothing else to wake
/// it: a server that stopped must end them even while a client that never
/// hangs up (here a silent raw socket) still holds a connection.
#[test]
fn serve_stops_on_sigterm_with_a_client_connected_on_every_runtime() {
    for runtime in ["mio", "smol", "std", "tokio"] {
        let inbox = tempfile::tempdir().unwrap();
        let mut server = Server::start_on(runtime, inbox.path());
        let mut stubborn = std::net::TcpStream::connect(server.addr).unwrap();
        stubborn.write_all(b"/name stubborn\n").unwrap();
        server.expect("stubborn");
        let started = Instant::now();
        let status = server.terminate();
        assert!(status.success(), "{runtime}: {status:?}");
        server.expect("shutting down");
        println!("{runtime}: stopped in {:?}", started.elapsed());
        drop(stubborn);
    }
}

#[test]
fn a_taken_name_is_refused() {
    let inbox = tempfile::tempdir().unwrap();
    let mut server = Server::start(inbox.path());
    let addr = server.addr.to_string();
    let mut first = ferry(&["chat", &addr, "--name", "bob"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until bob is in.
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    let welcome = lines.next().unwrap().unwrap();
    assert!(welcome.contains("you are bob"), "{welcome}");
    let (ok, _, err) = run(&["chat", &addr, "--name", "BOB"], "");
    assert!(!ok);
    assert!(err.contains("name taken"), "{err}");
    drop(first.stdin.take());
    let _ = first.wait();
    server.terminate();
}

#[test]
fn bench_transfer_tree_moves_a_folder_beside_tar_over_nc_and_cleans_up() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("bench");
    let (ok, out, err) = run(
        &[
            "bench",
            "transfer",
            "--tree",
            "small",
            "--rounds",
            "1",
            "--runtimes",
            "mio",
            "--dir",
            dir.to_str().unwrap(),
        ],
        "",
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("10000 files of 4.0 KiB in 100 folders"),
        "{out}"
    );
    assert!(!dir.exists(), "the bench left {} behind", dir.display());
    for label in ["tar | nc  ", "tar | nc + sync  ", "ferry (mio)  "] {
        assert!(
            out.lines().any(|line| line.starts_with(label)),
            "no row for {label:?} in\n{out}"
        );
    }
    // The ratio against the durable baseline, with issue 18's target.
    let ratio = out
        .lines()
        .find_map(|line| line.strip_prefix("ferry (mio): "))
        .unwrap_or_else(|| panic!("no ratio line in\n{out}"));
    let value: f64 = ratio
        .split('x')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{ratio:?}"));
    assert!(value > 0.0 && ratio.contains("(target 0.8x)"), "{ratio}");
}

#[test]
fn bench_transfer_reports_every_contender_and_cleans_up() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("bench");
    let (ok, out, err) = run(
        &[
            "bench",
            "transfer",
            "--size",
            "4M",
            "--rounds",
            "1",
            "--runtimes",
            "mio,smol,std",
            "--dir",
            dir.to_str().unwrap(),
        ],
        "",
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("command: ferry bench transfer --size 4M"),
        "{out}"
    );
    assert!(!dir.exists(), "the bench left {} behind", dir.display());

    let mut labels = vec!["std copy", "std copy + fsync"];
    // The bench runs nc only where it is installed, and says so otherwise.
    if !err.contains("skipping the nc contender") {
        labels.extend(["nc", "nc + fsync"]);
        if !err.contains("skipping the nc + b3sum contender") {
            labels.push("nc + b3sum");
        }
    }
    let ferries = ["ferry (mio)", "ferry (smol)", "ferry (std)"];
    labels.extend(ferries);
    for label in labels {
        // Labels are padded to one column width, so "std copy" does not
        // also match the row "std copy + fsync".
        let figures = out
            .lines()
            .find_map(|line| {
                line.strip_prefix(label)
                    .filter(|rest| rest.starts_with("  "))
            })
            .unwrap_or_else(|| panic!("no row for {label:?} in\n{out}"));
        let figures: Vec<&str> = figures.split_whitespace().collect();
        let (times_and_ratios, memory) = figures.split_at(figures.len() - 2);
        // Median s, min s, MiB/s, then one ratio per baseline.
        assert!(times_and_ratios.len() >= 5, "{label}: {figures:?}");
        for figure in times_and_ratios {
            // A ratio reads "0.52x".
            let value: f64 = figure
                .trim_end_matches('x')
                .parse()
                .unwrap_or_else(|_| panic!("{label}: {figure:?} is not a number in\n{out}"));
            assert!(value > 0.0, "{label}: {figure} in\n{out}");
        }
        for figure in memory {
            if ferries.contains(&label) {
                let known = figure.parse::<f64>().is_ok_and(|mib| mib > 0.0);
                assert!(known || *figure == "n/a", "{label}: {figure:?} in\n{out}");
            } else {
                assert_eq!(*figure, "-", "{label}: {out}");
            }
        }
    }
}

/// The rows of a bench table whose first cells read `label`, each as its
/// remaining whitespace-separated cells.
fn table_rows<'a>(out: &'a str, label: &str) -> Vec<Vec<&'a str>> {
    out.lines()
        .filter_map(|line| line.strip_prefix(label))
        .filter(|rest| rest.starts_with("  "))
        .map(|rest| rest.split_whitespace().collect())
        .collect()
}

/// A figure such as `123.4`, `1.05x` or `97 %` as a number.
fn figure(cell: &str) -> f64 {
    cell.trim_end_matches('x')
        .parse()
        .unwrap_or_else(|_| panic!("{cell:?} is not a number"))
}

#[test]
fn bench_fanout_delivers_every_message_on_every_runtime() {
    let (ok, out, err) = run(
        &[
            "bench",
            "fanout",
            "--subscribers",
            "3",
            "--publishers",
            "1,2",
            "--messages",
            "50",
            "--rounds",
            "1",
            "--runtimes",
            "mio,smol,std",
        ],
        "",
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("command:  ferry bench fanout"), "{out}");
    let mut contenders = vec!["ferry (mio)", "ferry (smol)", "ferry (std)"];
    // Redis runs only where it is installed, and the bench says so otherwise.
    if !err.contains("skipping the Redis contender") {
        contenders.push("redis pub/sub");
    }
    for scenario in ["1 -> 3", "2 -> 3"] {
        for contender in &contenders {
            let rows = table_rows(&out, &format!("{scenario}  "));
            let row = rows
                .iter()
                .find(|cells| cells.join(" ").starts_with(contender))
                .unwrap_or_else(|| panic!("no row for {scenario} {contender} in\n{out}"));
            // After the two words of the contender: deliveries/s, the ratio
            // to Redis (or "-"), p50 and p99.
            let numbers = &row[2..];
            assert!(figure(numbers[0]) > 0.0, "{scenario} {contender}: {out}");
            for cell in &numbers[2..4] {
                assert!(figure(cell) > 0.0, "{scenario} {contender}: {out}");
            }
        }
    }
}

#[test]
fn bench_clients_measures_memory_per_client() {
    let (ok, out, err) = run(&["bench", "clients", "--clients", "50"], "");
    assert!(ok, "{out}{err}");
    let rows = table_rows(&out, "ferry (mio)");
    assert_eq!(rows.len(), 1, "{out}");
    let cells = &rows[0];
    assert_eq!(cells[0], "50", "{out}");
    // Connect time and the resident memory before and after are positive.
    for cell in &cells[1..4] {
        assert!(figure(cell) > 0.0, "{out}");
    }
}

#[test]
fn bench_rtt_compares_ferry_with_raw_tcp() {
    let (ok, out, err) = run(
        &[
            "bench",
            "rtt",
            "--pings",
            "100",
            "--rounds",
            "1",
            "--runtimes",
            "mio,smol",
        ],
        "",
    );
    assert!(ok, "{out}{err}");
    // Every contender shares the client's CPU unless told otherwise.
    assert!(
        out.contains("placed:  client and servers pinned to CPU"),
        "{out}"
    );
    let raw = [
        "raw tcp, echo thread",
        "raw tcp, echo process",
        "raw tcp, echo loop (mio)",
        "raw tcp, echo tasks (smol)",
    ];
    let ferry = [
        "ferry ping (mio)",
        "ferry say echo (mio)",
        "ferry ping (smol)",
        "ferry say echo (smol)",
    ];
    for label in raw.iter().chain(&ferry) {
        let rows = table_rows(&out, label);
        // The comparison, then the tail: p95 to p99.99, never decreasing.
        assert_eq!(rows.len(), 2, "{label} in\n{out}");
        let tail: Vec<f64> = rows[1].iter().map(|cell| figure(cell)).collect();
        assert_eq!(tail.len(), 6, "{label} in\n{out}");
        assert!(tail[0] > 0.0, "{label} in\n{out}");
        assert!(tail.windows(2).all(|w| w[0] <= w[1]), "{label} in\n{out}");
        let cells = &rows[0];
        // p50, p99, both against each raw echo, then against the echo on
        // the server's own stack, which only ferry rows have.
        assert_eq!(cells.len(), 8, "{label} in\n{out}");
        let (figures, own_stack) = cells.split_at(6);
        for cell in figures {
            assert!(figure(cell) > 0.0, "{label}: {cell} in\n{out}");
        }
        for cell in own_stack {
            if raw.contains(label) {
                assert_eq!(*cell, "-", "{label} in\n{out}");
            } else {
                assert!(figure(cell) > 0.0, "{label}: {cell} in\n{out}");
            }
        }
    }
}
