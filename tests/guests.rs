//! Raw-text guests against the real `ferry serve`, every server runtime, on
//! loopback: a plain std socket and a real `nc` join the room next to a
//! ferry client, chat both ways, and never see an escape sequence raw.

mod common;

use common::{has_raw_control, Raw, Serve, TextGuest, WAIT};
use ferry_core::frame::Frame;
use ferry_core::Code;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const RUNTIMES: [&str; 4] = ["mio", "smol", "std", "tokio"];

/// Reads frames until `pick` accepts one, for at most `WAIT`.
fn wait_frame<T>(raw: &mut Raw, what: &str, pick: impl FnMut(&Frame) -> Option<T>) -> T {
    raw.wait_for(what, pick)
}

fn hears(raw: &mut Raw, from: &str, text: &str) {
    wait_frame(raw, &format!("{from}: {text}"), |f| match f {
        Frame::Message {
            from: f, text: t, ..
        } if f == from && t == text => Some(()),
        _ => None,
    })
}

fn sees_left(raw: &mut Raw, name: &str) -> Code {
    wait_frame(raw, &format!("{name} leaving"), |f| match f {
        Frame::Left { name: n, code, .. } if n == name => Some(*code),
        _ => None,
    })
}

#[test]
fn a_plain_socket_guest_chats_with_a_ferry_client_on_every_runtime() {
    for runtime in RUNTIMES {
        let inbox = tempfile::tempdir().unwrap();
        let mut server = Serve::start(inbox.path(), &["--runtime", runtime]);
        server.expect(&["raw-text guests (idle 600s)"]);
        let mut alice = Raw::join(server.addr, "alice", "");

        let mut carol = TextGuest::connect(server.addr);
        let port = carol.stream.local_addr().unwrap().port();
        carol.write(b"/name carol\r\n");
        carol.expect("* welcome to ferry, carol");
        assert_eq!(carol.expect("in the room"), "* in the room: alice, carol");
        // The log names the guest with its address, like any client, and
        // says it is a guest.
        server.expect(&[&format!(
            "\"carol\" (127.0.0.1:{port}) joined \"lobby\" as a raw-text guest"
        )]);
        wait_frame(&mut alice, "carol joining", |f| match f {
            Frame::Joined { name, .. } if name == "carol" => Some(()),
            _ => None,
        });

        // Guest → ferry client, an escape sequence stripped on the way.
        carol.write(b"hi from a socket \x1b[31mred\x1b[0m\r\n");
        hears(&mut alice, "carol", "hi from a socket red");
        // Ferry client → guest, likewise.
        alice
            .send(&Frame::Say {
                text: "hello \u{1b}[2J\u{1b}]0;pwned\u{7}carol".into(),
            })
            .unwrap();
        assert_eq!(carol.expect("alice:"), "alice: hello carol");
        alice
            .send(&Frame::DirectTo {
                to: "carol".into(),
                text: "psst".into(),
            })
            .unwrap();
        assert_eq!(carol.expect("(to you)"), "alice (to you): psst");

        // A file offered to a guest is refused with a reason.
        alice
            .send(&Frame::Offer {
                id: 2,
                size: 5,
                name: "notes.txt".into(),
                peer: "carol".into(),
            })
            .unwrap();
        let reason = wait_frame(&mut alice, "the REJECT", |f| match f {
            Frame::Reject {
                id: 2,
                code: Code::FILE_REJECTED,
                reason,
            } => Some(reason.to_string()),
            _ => None,
        });
        assert!(reason.contains("raw-text guest"), "{reason}");

        carol.write(b"/quit\n");
        carol.expect("* bye");
        assert!(carol.rest().is_empty(), "{runtime}: more after bye");
        assert_eq!(sees_left(&mut alice, "carol"), Code::QUIT);
        server.expect(&["\"carol\" (127.0.0.1:", "disconnected: quit"]);
        let heard = carol.heard.join("\n");
        assert_eq!(has_raw_control(heard.as_bytes()), None, "{heard}");
        assert!(server.terminate().success(), "{runtime}");
    }
}

#[test]
fn guests_are_numbered_limited_and_can_be_turned_off() {
    for runtime in RUNTIMES {
        let inbox = tempfile::tempdir().unwrap();
        let mut server = Serve::start(inbox.path(), &["--runtime", runtime]);
        let mut alice = Raw::join(server.addr, "alice", "");

        // No /name: guest-N. A line past the cap is cut, and said.
        let mut g = TextGuest::connect(server.addr);
        let mut long = vec![b'x'; 5000];
        long.push(b'\n');
        g.write(&long);
        g.expect("only its start was kept");
        hears(&mut alice, "guest-1", &"x".repeat(1024));
        // A flood drops the guest, the room carries on.
        let spam: String = (0..100).map(|i| format!("spam {i}\n")).collect();
        g.write(spam.as_bytes());
        g.expect("! closing: more than 20 messages in a burst");
        assert_eq!(sees_left(&mut alice, "guest-1"), Code::FLOODING);
        alice.say_and_hear("still here");
        assert!(server.terminate().success(), "{runtime}");

        // --no-guests: text is not a ferry peer.
        let mut server = Serve::start(inbox.path(), &["--runtime", runtime, "--no-guests"]);
        server.expect(&["no raw-text guests"]);
        let mut raw = Raw::connect(server.addr);
        raw.send_bytes(b"hello\n").unwrap();
        assert_eq!(raw.expect_end().0, Code::NOT_FERRY, "{runtime}");
        assert!(server.terminate().success(), "{runtime}");
    }
}

/// `nc 127.0.0.1 PORT` with its stdin piped: what it prints comes back
/// line by line through a channel.
struct Netcat {
    child: std::process::Child,
    lines: mpsc::Receiver<Vec<u8>>,
    heard: Vec<Vec<u8>>,
}

impl Netcat {
    fn start(addr: std::net::SocketAddr) -> Netcat {
        let mut child = Command::new("nc")
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("nc starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                let _ = tx.send(std::mem::take(&mut line));
            }
        });
        Netcat {
            child,
            lines,
            heard: Vec::new(),
        }
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for a printed line containing `part`.
    fn expect(&mut self, part: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.heard.push(line.clone());
                    let text = String::from_utf8_lossy(&line).trim_end().to_string();
                    if text.contains(part) {
                        return text;
                    }
                }
                Err(e) => panic!(
                    "nc never printed {part:?} ({e}); it printed {:#?}",
                    self.heard
                        .iter()
                        .map(|l| String::from_utf8_lossy(l).into_owned())
                        .collect::<Vec<_>>()
                ),
            }
        }
    }
}

impl Drop for Netcat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn have_nc() -> bool {
    Command::new("sh")
        .args(["-c", "command -v nc"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_real_nc_joins_the_room_on_every_runtime() {
    if !have_nc() {
        println!("SKIP a_real_nc_joins_the_room_on_every_runtime: nc is not installed");
        return;
    }
    for runtime in RUNTIMES {
        let inbox = tempfile::tempdir().unwrap();
        let mut server = Serve::start(inbox.path(), &["--runtime", runtime]);
        let mut alice = Raw::join(server.addr, "alice", "");
        let mut nc = Netcat::start(server.addr);
        nc.type_line("/name netcat");
        nc.expect("* in the room: alice, netcat");
        server.expect(&[
            "\"netcat\" (127.0.0.1:",
            "joined \"lobby\" as a raw-text guest",
        ]);
        nc.type_line("hello from \u{1b}[1mnc\u{1b}[0m, caf\u{e9}");
        hears(&mut alice, "netcat", "hello from nc, café");
        alice
            .send(&Frame::Say {
                text: "\u{1b}[2J\u{1b}[31mwelcome\u{7}, netcat".into(),
            })
            .unwrap();
        assert_eq!(nc.expect("alice:"), "alice: welcome, netcat");
        nc.type_line("/who");
        nc.expect("* in the room: alice, netcat");
        nc.type_line("/frobnicate");
        nc.expect("unknown command");
        // A ferry client arriving meanwhile is not kept waiting by the
        // detection, and the guest sees it come and go.
        let start = Instant::now();
        let mut bob = Raw::join(server.addr, "bob", "");
        assert!(start.elapsed() < Duration::from_secs(5), "{runtime}");
        nc.expect("* bob joined");
        bob.close();
        nc.expect("* bob left");
        nc.type_line("/quit");
        nc.expect("* bye");
        assert_eq!(sees_left(&mut alice, "netcat"), Code::QUIT);
        let printed: Vec<u8> = nc.heard.concat();
        let text = String::from_utf8(printed.clone()).expect("nc printed UTF-8");
        assert_eq!(
            has_raw_control(text.replace('\r', "").as_bytes()),
            None,
            "{runtime}: {text}"
        );
        drop(nc);
        assert!(server.terminate().success(), "{runtime}");
    }
}
