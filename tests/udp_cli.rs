//! `ferry udp`: two built binaries chat over loopback datagrams.

use std::io::Write;
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn two_udp_peers_chat_and_leave_once_acknowledged() {
    let (a, b) = (free_port(), free_port());
    let spawn = |bind: u16, peer: u16, name: &str, runtime: &str| {
        Command::new(FERRY)
            .args(["udp", "--name", name, "--runtime", runtime])
            .args(["--bind", &format!("127.0.0.1:{bind}")])
            .args(["--peer", &format!("127.0.0.1:{peer}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Two runtimes at once: the wire is the same.
    let mut alice = spawn(a, b, "alice", "mio");
    let mut bob = spawn(b, a, "bob", "smol");
    // Both bound before anyone speaks: an early datagram would only be
    // retransmitted, but the test should not depend on it.
    std::thread::sleep(Duration::from_millis(300));
    writeln!(
        alice.stdin.as_mut().unwrap(),
        "hello bob\n/quit-not-a-command"
    )
    .unwrap();
    writeln!(bob.stdin.as_mut().unwrap(), "hello alice\n\x1b[31mred?").unwrap();
    // Input ends; each leaves once its messages are acknowledged, and stays
    // long enough to acknowledge the other's (both closed at once here).
    let deadline = Instant::now() + Duration::from_secs(20);
    drop(alice.stdin.take());
    drop(bob.stdin.take());
    let alice = alice.wait_with_output().unwrap();
    let bob = bob.wait_with_output().unwrap();
    assert!(Instant::now() < deadline, "took too long");
    let (alice_out, bob_out) = (
        String::from_utf8_lossy(&alice.stdout),
        String::from_utf8_lossy(&bob.stdout),
    );
    assert!(
        alice.status.success(),
        "alice: {alice_out} {:?}",
        alice.stderr
    );
    assert!(bob.status.success(), "bob: {bob_out} {:?}", bob.stderr);
    assert!(alice_out.contains("bob: hello alice"), "{alice_out}");
    assert!(bob_out.contains("alice: hello bob"), "{bob_out}");
    assert!(bob_out.contains("alice: /quit-not-a-command"), "{bob_out}");
    // The escape sequence is shown escaped, never sent to the terminal raw.
    assert!(!alice_out.contains('\x1b'), "{alice_out:?}");
    // Without a secret, each says at start that the chat is in clear text.
    for out in [&alice_out, &bob_out] {
        assert!(out.contains("* clear text: anyone on the path"), "{out}");
        assert!(!out.contains("encrypted"), "{out}");
    }
}

/// `--secret` on one side and `FERRY_UDP_SECRET` on the other: the chat is
/// encrypted, each says so at start and once the handshake completes, and
/// the messages arrive.
#[test]
fn two_udp_peers_with_the_same_secret_chat_encrypted() {
    let (a, b) = (free_port(), free_port());
    let secret = "a long shared secret for this test";
    let spawn = |bind: u16, peer: u16, name: &str, runtime: &str, by_env: bool| {
        let mut command = Command::new(FERRY);
        command
            .args(["udp", "--name", name, "--runtime", runtime])
            .args(["--bind", &format!("127.0.0.1:{bind}")])
            .args(["--peer", &format!("127.0.0.1:{peer}")])
            .env_remove("FERRY_UDP_SECRET");
        if by_env {
            command.env("FERRY_UDP_SECRET", secret);
        } else {
            command.args(["--secret", secret]);
        }
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut alice = spawn(a, b, "alice", "std", false);
    let mut bob = spawn(b, a, "bob", "smol", true);
    // Typed at once: the messages wait for the handshake.
    writeln!(alice.stdin.as_mut().unwrap(), "hello encrypted bob").unwrap();
    writeln!(bob.stdin.as_mut().unwrap(), "hello encrypted alice").unwrap();
    drop(alice.stdin.take());
    drop(bob.stdin.take());
    let alice = alice.wait_with_output().unwrap();
    let bob = bob.wait_with_output().unwrap();
    let (alice_out, bob_out) = (
        String::from_utf8_lossy(&alice.stdout),
        String::from_utf8_lossy(&bob.stdout),
    );
    assert!(
        alice.status.success(),
        "alice: {alice_out} {:?}",
        alice.stderr
    );
    assert!(bob.status.success(), "bob: {bob_out} {:?}", bob.stderr);
    assert!(
        alice_out.contains("bob: hello encrypted alice"),
        "{alice_out}"
    );
    assert!(bob_out.contains("alice: hello encrypted bob"), "{bob_out}");
    for out in [&alice_out, &bob_out] {
        assert!(
            out.contains("* encrypted with the shared secret (Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s); handshake with"),
            "{out}"
        );
        assert!(out.contains("not yet complete"), "{out}");
        assert_eq!(
            out.matches("* encrypted: handshake with").count(),
            1,
            "{out}"
        );
        assert!(!out.contains("clear text"), "{out}");
        assert!(!out.contains("secret is short"), "{out}");
        assert_eq!(unexpected_drops(out), Vec::<String>::new(), "{out}");
    }
}

/// What a peer's "dropped datagrams" line counts besides duplicates and
/// stale acknowledgements: those two are retransmission's doing, when a
/// loaded machine answers after the sender's timer fired, and are dropped
/// by design. Anything else (unauthenticated, malformed, ...) is a fault.
fn unexpected_drops(out: &str) -> Vec<String> {
    let Some(line) = out.lines().find(|l| l.contains("dropped datagrams: ")) else {
        return Vec::new();
    };
    let counts = &line[line.find("dropped datagrams: ").unwrap() + "dropped datagrams: ".len()..];
    counts
        .split(", ")
        .filter(|count| {
            let (n, what) = count.split_once(' ').expect("COUNT WHAT");
            n != "0" && what != "duplicates" && what != "stale acknowledgements"
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn raw_mode_and_a_secret_are_refused_together() {
    let out = Command::new(FERRY)
        .args(["udp", "--name", "x", "--peer", "127.0.0.1:9", "--raw"])
        .args(["--secret", "s"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--secret"), "{err}");
    let out = Command::new(FERRY)
        .args([
            "udp",
            "--name",
            "x",
            "--peer",
            "127.0.0.1:9",
            "--secret",
            "",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--secret is empty"), "{err}");
}

#[test]
fn an_address_in_use_is_a_one_line_error() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new(FERRY)
        .args(["udp", "--name", "x", "--peer", "127.0.0.1:9"])
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("ferry: cannot bind"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

/// The review's replay, against the built program on every runtime: a
/// message, a datagram of another session, then the first datagram again.
/// The receiver shows the message once (it used to show it twice).
#[test]
fn a_message_replayed_after_another_session_is_shown_once() {
    for runtime in ["mio", "smol", "std", "tokio"] {
        replayed_once(runtime);
        println!("{runtime}: ok");
    }
}

fn replayed_once(runtime: &str) {
    use bytes::BytesMut;
    use ferry_core::datagram::{Datagram, MAX_DATAGRAM};

    let mallory = UdpSocket::bind("127.0.0.1:0").unwrap();
    mallory
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let bob_port = free_port();
    let mut bob = Command::new(FERRY)
        .args(["udp", "--name", "bob", "--runtime", runtime])
        .args(["--bind", &format!("127.0.0.1:{bob_port}")])
        .args(["--peer", &mallory.local_addr().unwrap().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let chat = |session: u64, seq: u64, text: &str| {
        let mut out = BytesMut::new();
        Datagram::Chat {
            session,
            seq,
            from: "alice".into(),
            text: text.into(),
        }
        .encode(&mut out)
        .unwrap();
        out
    };
    let pay = chat(0x1111, 0, "pay 10 EUR");
    let datagrams = [
        pay.clone(),
        chat(0x2222, 0, "another session"),
        pay,
        chat(0x2222, 1, "done"),
    ];
    // Bob may not be bound yet: send each until its ACK comes back, which
    // also says bob has taken it.
    let mut buf = [0u8; MAX_DATAGRAM];
    for datagram in &datagrams {
        let deadline = Instant::now() + Duration::from_secs(10);
        'acked: loop {
            assert!(Instant::now() < deadline, "{runtime}: no ACK from bob");
            mallory.send_to(datagram, ("127.0.0.1", bob_port)).unwrap();
            while let Ok(n) = mallory.recv(&mut buf) {
                if buf[0] == 0x41 && buf[5..n] == datagram[5..21] {
                    break 'acked;
                }
            }
        }
    }
    drop(bob.stdin.take());
    let out = bob.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{runtime}: {stdout} {:?}", out.stderr);
    assert_eq!(
        stdout.matches("alice: pay 10 EUR").count(),
        1,
        "{runtime}: {stdout}"
    );
    assert!(stdout.contains("alice: done"), "{runtime}: {stdout}");
    assert!(stdout.contains("1 duplicates"), "{runtime}: {stdout}");
}

/// A raw-text peer like the Qt UDP chat ferry grew from: a plain socket
/// sending and receiving bare UTF-8 lines, one a datagram.
struct RawPeer {
    socket: UdpSocket,
    ferry: std::process::Child,
    /// Ferry's stdout, a line at a time.
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl RawPeer {
    fn start(runtime: &str, raw: bool) -> RawPeer {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut command = Command::new(FERRY);
        command
            .args(["udp", "--name", "bob", "--runtime", runtime])
            .args(["--peer", &socket.local_addr().unwrap().to_string()]);
        if raw {
            command.arg("--raw");
        }
        let mut ferry = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = ferry.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut peer = RawPeer {
            socket,
            ferry,
            lines,
            seen: Vec::new(),
        };
        // Ferry says where it is bound once it is.
        let started = peer.wait_for("chatting on");
        let local = started.split_whitespace().nth(3).unwrap().to_string();
        peer.socket.connect(&local).unwrap();
        peer
    }

    /// Waits for a line of ferry's output containing `what`.
    fn wait_for(&mut self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(what) {
                        return line;
                    }
                }
                Err(_) => panic!("no {what:?} in {:#?}", self.seen),
            }
        }
    }

    fn type_line(&mut self, line: &str) {
        writeln!(self.ferry.stdin.as_mut().unwrap(), "{line}").unwrap();
    }

    fn receive(&self) -> Vec<u8> {
        let mut buf = [0u8; 2048];
        let n = self.socket.recv(&mut buf).expect("a datagram from ferry");
        buf[..n].to_vec()
    }

    /// Ends ferry's input; returns all it printed.
    fn finish(mut self) -> String {
        drop(self.ferry.stdin.take());
        let status = self.ferry.wait().unwrap();
        self.seen.extend(self.lines.iter());
        let out = self.seen.join("\n");
        assert!(status.success(), "{out}");
        out
    }
}

#[test]
fn a_raw_text_peer_and_ferry_udp_talk_both_ways() {
    for runtime in ["mio", "smol", "std", "tokio"] {
        let mut qt = RawPeer::start(runtime, false);
        qt.socket.send(b"raw qt udp line").unwrap();
        qt.wait_for("the peer speaks raw text");
        qt.wait_for("* raw mode: lines go out as bare UTF-8 datagrams");
        let shown = qt.wait_for("raw qt udp line");
        assert!(shown.ends_with("(raw): raw qt udp line"), "{shown}");
        qt.socket.send(b"\x1b[31mred\x1b[0m \xff").unwrap();
        let shown = qt.wait_for("red");
        assert!(shown.ends_with("(raw): red \u{fffd}"), "{runtime}: {shown}");
        qt.type_line("hello qt peer");
        assert_eq!(qt.receive(), b"hello qt peer", "{runtime}");
        let out = qt.finish();
        assert_eq!(out.matches("raw qt udp line").count(), 1, "{out}");
        assert_eq!(out.matches("the peer speaks raw text").count(), 1);
        assert!(!out.contains('\x1b'), "{runtime}: {out:?}");
        assert!(!out.contains("dropped"), "{runtime}: {out}");
        println!("{runtime}: ok");
    }
}

#[test]
fn ferry_udp_raw_talks_to_a_raw_text_peer_from_the_start() {
    for runtime in ["mio", "smol", "std", "tokio"] {
        let mut qt = RawPeer::start(runtime, true);
        qt.wait_for("* raw mode: lines go out as bare UTF-8 datagrams");
        qt.type_line("@qt first words");
        assert_eq!(qt.receive(), b"@qt first words", "{runtime}");
        qt.socket.send(b"raw qt udp line").unwrap();
        qt.wait_for("(raw): raw qt udp line");
        qt.type_line("bye");
        assert_eq!(qt.receive(), b"bye", "{runtime}");
        let out = qt.finish();
        assert_eq!(out.matches("raw qt udp line").count(), 1, "{out}");
        assert!(!out.contains("the peer speaks raw text"), "{out}");
        assert_eq!(out.matches("* raw mode").count(), 1, "{out}");
        println!("{runtime}: ok");
    }
}

/// Different secrets: nothing the other peer says is shown, each says once
/// that datagrams failed authentication, and the summary counts them.
#[test]
fn udp_peers_with_different_secrets_show_nothing_of_each_other() {
    let (a, b) = (free_port(), free_port());
    let spawn = |bind: u16, peer: u16, name: &str, secret: &str| {
        Command::new(FERRY)
            .args(["udp", "--name", name, "--runtime", "mio"])
            .args(["--bind", &format!("127.0.0.1:{bind}")])
            .args(["--peer", &format!("127.0.0.1:{peer}")])
            .args(["--secret", secret])
            .env_remove("FERRY_UDP_SECRET")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut alice = spawn(a, b, "alice", "the first long secret");
    let mut bob = spawn(b, a, "bob", "a second long secret!");
    writeln!(alice.stdin.as_mut().unwrap(), "only for the right bob").unwrap();
    writeln!(bob.stdin.as_mut().unwrap(), "only for the right alice").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    for peer in [&mut alice, &mut bob] {
        writeln!(peer.stdin.as_mut().unwrap(), "/quit").unwrap();
    }
    for (peer, other) in [(alice, "bob"), (bob, "alice")] {
        let out = peer.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.contains(&format!("{other}:")), "{stdout}");
        assert!(!stdout.contains("only for the right"), "{stdout}");
        assert_eq!(
            stdout.matches("failed authentication").count(),
            1,
            "{stdout}"
        );
        assert!(!stdout.contains("* encrypted: handshake"), "{stdout}");
        assert!(stdout.contains(" unauthenticated"), "{stdout}");
    }
}

#[test]
fn the_drop_check_tells_retransmission_from_faults() {
    let line =
        |counts: &str| format!("[11:57:01] bob: hi\n[11:57:01] dropped datagrams: {counts}\n");
    assert!(unexpected_drops("[11:57:01] bob: hi\n").is_empty());
    assert!(unexpected_drops(&line(
        "0 oversize, 0 malformed, 0 frames of other types, 3 duplicates, 1 stale acknowledgements, 0 unauthenticated"
    ))
    .is_empty());
    assert_eq!(
        unexpected_drops(&line(
            "0 oversize, 2 malformed, 0 frames of other types, 1 duplicates, 0 stale acknowledgements, 1 unauthenticated"
        )),
        ["2 malformed", "1 unauthenticated"]
    );
}
