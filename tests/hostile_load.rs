//! The hostile-load suite of issue 12: `ferry bench hostile --quick`
//! against the built program, once per runtime. Every attack runs against
//! a fresh server while a bystander pings, a member chats and a newcomer
//! joins; every figure the bench holds to a target (join times, the
//! bystander's p99 ping, the server's memory growth and return, files and
//! log lines left, what a reconnecting flooder delivers) must be met, and
//! a miss names its runtime, attack and figure.
//!
//! The runtimes take turns (one lock for the three tests), since the
//! figures are latencies and two attacks at once would disturb each other.
//!
//! Latencies are the one kind of figure this test does not hold to the
//! bench's target: a test cannot control the machine's load, and with two
//! CPU-bound processes beside it the large room's p99 once read 268 ms
//! against its 250 ms target (1 run in 3). The targets themselves are
//! held by the benchmark (`ferry bench hostile` exits non-zero on any
//! miss; BENCHMARKS.md). Here a latency may reach [`LOAD_FACTOR`] times
//! its target, which still fails a loop that freezes: the freezes of issue
//! 12 lasted 3 to 60 s. Every other figure must meet its target.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// Every attack of the suite, as the bench names them in its table.
const ATTACKS: [&str; 15] = [
    "relay-tiny",
    "relay-tiny-1024",
    "relay-tiny-8",
    "inbox-tiny",
    "extension-flood",
    "ping-flood",
    "ping-flood-read",
    "offer-cancel",
    "reoffer-same-name",
    "reconnect-flood",
    "token-guess",
    "per-ip",
    "large-room",
    "quota-scan",
    "tree-manifest",
];

/// How far over its target a latency may go in this test (see the
/// module's documentation).
const LOAD_FACTOR: f64 = 4.0;

/// The number right after `prefix` in `text`.
fn number_after(text: &str, prefix: &str) -> Option<f64> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// A latency miss's figure and target in ms ("bystander p99 ping 268 ms
/// (target under 250 ms)", "newcomer join 1200 ms (target 1000 ms)").
fn latency(miss: &str) -> Option<(f64, f64)> {
    let figure = ["p99 ping ", " join "]
        .iter()
        .find_map(|prefix| number_after(miss, prefix))?;
    let target = number_after(miss, "target under ").or_else(|| number_after(miss, "target "))?;
    Some((figure, target))
}

/// How long one runtime's suite may take before the test gives up (the
/// bench bounds every wait itself; this only catches a hung bench).
const SUITE_LIMIT: Duration = Duration::from_secs(600);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs every attack against `runtime` and fails with every missed target.
fn suite(runtime: &str) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut child = Command::new(FERRY)
        .args([
            "bench",
            "hostile",
            "--quick",
            "--no-fail",
            // The memory a large room held comes back once its members'
            // connections are removed (up to the close linger after they
            // leave) and the server trims, a second or two on a quiet
            // machine; under the load of a whole test run, removing 497
            // members took the quick bench's 3 s (it then read 17 MiB over
            // the start, against 16). The bench stops waiting as soon as
            // the memory is back, so only a server that keeps it waits
            // all of this.
            "--settle",
            "10",
            "--runtimes",
            runtime,
        ])
        .env_remove("FERRY_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferry bench hostile starts");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + SUITE_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the bench") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{runtime}: the bench took over {} s:\n{}",
                SUITE_LIMIT.as_secs(),
                err.join().unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(100));
    };
    let table = out.join().unwrap_or_default();
    let progress = err.join().unwrap_or_default();
    assert!(
        status.success(),
        "{runtime}: the bench could not run ({status}):\n{progress}\n{table}"
    );
    let rows: Vec<&str> = table
        .lines()
        .filter(|line| line.split_whitespace().next() == Some(runtime))
        .collect();
    for attack in ATTACKS {
        assert!(
            rows.iter()
                .any(|row| row.split_whitespace().nth(1) == Some(attack)),
            "{runtime} {attack}: no row in the table:\n{table}"
        );
    }
    let (under_load, misses): (Vec<&str>, Vec<&str>) = table
        .lines()
        .filter(|line| line.starts_with("FAIL "))
        .partition(|miss| {
            latency(miss).is_some_and(|(figure, target)| figure < target * LOAD_FACTOR)
        });
    if !under_load.is_empty() {
        eprintln!(
            "{runtime}: latency over target but within {LOAD_FACTOR}x (machine load?):\n{}",
            under_load.join("\n")
        );
    }
    assert!(
        misses.is_empty(),
        "{} targets missed:\n{}\n\n{table}",
        misses.len(),
        misses.join("\n")
    );
}

#[test]
fn hostile_load_on_mio() {
    suite("mio");
}

#[test]
fn hostile_load_on_smol() {
    suite("smol");
}

#[test]
fn hostile_load_on_std() {
    suite("std");
}

#[test]
fn hostile_load_on_tokio() {
    suite("tokio");
}

#[test]
fn latency_misses_are_read_from_the_bench_lines() {
    assert_eq!(
        latency("FAIL std large-room: bystander p99 ping 268 ms (target under 250 ms)"),
        Some((268.0, 250.0))
    );
    assert_eq!(
        latency("FAIL mio ping-flood: newcomer join 1200 ms (target 1000 ms)"),
        Some((1200.0, 1000.0))
    );
    assert_eq!(
        latency("FAIL mio x: bystander p99 ping n/a (target under 50 ms)"),
        None
    );
    assert_eq!(
        latency("FAIL mio x: 40 files left in the inbox (target at most 32)"),
        None
    );
}
