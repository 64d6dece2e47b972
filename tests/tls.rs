//! TLS by default, as a user meets it: `ferry serve` shows its certificate's
//! fingerprint; clients refuse a server they cannot check unless told how
//! to trust it, remember it, and refuse it loudly when it changes; a man in
//! the middle learns nothing; `--require-tls` turns clear text away; and
//! `openssl s_client` joins as a raw-text guest over TLS.

mod common;

use common::{run, Proc, Serve, TextGuest, WAIT};
use ferry_tls::{Fingerprint, Identity, TlsServer, Transport};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The `SHA256:` line `ferry serve` printed.
fn fingerprint_of(server: &mut Serve) -> Fingerprint {
    let line = server.expect(&["SHA256:"]);
    assert!(
        line.starts_with("SHA256:"),
        "not on a line of its own: {line:?}"
    );
    line.parse().unwrap()
}

fn known_file(dir: &Path) -> String {
    dir.join("known_servers").display().to_string()
}

#[test]
fn serve_shows_its_fingerprint_and_keeps_its_certificate() {
    let inbox = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tls_dir = dir.path().join("server-tls");
    let tls_arg = tls_dir.display().to_string();
    let mut server = Serve::start(inbox.path(), &["--tls-dir", &tls_arg]);
    let first = fingerprint_of(&mut server);
    let identity = Identity::load_or_create(&tls_dir, SystemTime::now()).unwrap();
    assert_eq!(identity.fingerprint(), first);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&tls_dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    server.terminate();
    let mut again = Serve::start(inbox.path(), &["--tls-dir", &tls_arg]);
    assert_eq!(
        fingerprint_of(&mut again),
        first,
        "a new certificate at restart"
    );

    // A certificate and key that do not match: one line at start.
    let other = Identity::load_or_create(&dir.path().join("other"), SystemTime::now()).unwrap();
    let _ = other;
    let (ok, out, err) = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            &tls_dir.join(ferry_tls::CERT_FILE).display().to_string(),
            "--tls-key",
            &dir.path()
                .join("other")
                .join(ferry_tls::KEY_FILE)
                .display()
                .to_string(),
        ],
        &[],
    );
    assert!(!ok, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("ferry: cannot serve TLS"), "{err}");
}

#[test]
fn a_new_server_is_refused_without_a_terminal_then_pinned_trusted_and_remembered() {
    let inbox = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let client = tempfile::tempdir().unwrap();
    let known = known_file(client.path());
    let file = files.path().join("note.txt");
    std::fs::write(&file, b"hello over TLS\n").unwrap();
    let file = file.display().to_string();
    let mut server = Serve::start(inbox.path(), &[]);
    let fingerprint = fingerprint_of(&mut server);
    let addr = server.addr();

    // Nobody to ask: refused, with the exact flag that pins it.
    let (ok, _, err) = run(&["send", "--known-servers", &known, &addr, &file], &[]);
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("--fingerprint {fingerprint}")) && err.contains("--trust-new-server"),
        "{err}"
    );
    assert!(!inbox.path().join("note.txt").exists());

    // Pinned: accepted.
    let pin = fingerprint.to_string();
    let (ok, out, err) = run(
        &[
            "send",
            "--known-servers",
            &known,
            "--fingerprint",
            &pin,
            &addr,
            &file,
        ],
        &[],
    );
    assert!(ok, "{out}{err}");
    server.expect(&["note.txt", "verified"]);

    // Trusted on first use: remembered, then known without a flag.
    let (ok, out, err) = run(
        &[
            "send",
            "--known-servers",
            &known,
            "--trust-new-server",
            &addr,
            &file,
        ],
        &[],
    );
    assert!(ok, "{out}{err}");
    let recorded = std::fs::read_to_string(&known).unwrap();
    assert_eq!(recorded, format!("{addr} {fingerprint}\n"));
    let (ok, out, err) = run(&["send", "--known-servers", &known, &addr, &file], &[]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        std::fs::read_to_string(&known).unwrap(),
        recorded,
        "recorded twice"
    );
}

#[test]
fn a_changed_server_and_a_wrong_pin_are_refused_naming_both_fingerprints() {
    let inbox = tempfile::tempdir().unwrap();
    let client = tempfile::tempdir().unwrap();
    let dirs = tempfile::tempdir().unwrap();
    let known = known_file(client.path());
    let first_dir = dirs.path().join("first").display().to_string();
    let mut server = Serve::start(inbox.path(), &["--tls-dir", &first_dir]);
    let old = fingerprint_of(&mut server);
    let addr = server.addr();
    let mut alice = Proc::spawn(&[
        "chat",
        "--known-servers",
        &known,
        "--trust-new-server",
        &addr,
        "--name",
        "alice",
    ]);
    alice.expect(&["alice"]);
    let (ok, _, _) = alice.finish();
    assert!(ok);

    // Another certificate on the same address: a new key, or someone in
    // the middle. Refused loudly, like SSH.
    server.terminate();
    let second_dir = dirs.path().join("second").display().to_string();
    let mut server = Serve::start(inbox.path(), &["--tls-dir", &second_dir, "--listen", &addr]);
    let new = fingerprint_of(&mut server);
    assert_ne!(old, new);
    let (ok, _, err) = run(
        &["chat", "--known-servers", &known, &addr, "--name", "alice"],
        &[],
    );
    assert!(!ok);
    assert!(
        err.contains(&old.to_string()) && err.contains(&new.to_string()),
        "{err}"
    );
    assert!(err.contains(&known) && err.contains("line 1"), "{err}");
    // Even --trust-new-server does not accept a changed server.
    let (ok, _, err) = run(
        &[
            "chat",
            "--known-servers",
            &known,
            "--trust-new-server",
            &addr,
            "--name",
            "alice",
        ],
        &[],
    );
    assert!(!ok, "{err}");

    // A wrong pin names both, too.
    let (ok, _, err) = run(
        &[
            "chat",
            "--fingerprint",
            &old.to_string(),
            &addr,
            "--name",
            "alice",
        ],
        &[],
    );
    assert!(!ok);
    assert!(
        err.contains(&old.to_string()) && err.contains(&new.to_string()),
        "{err}"
    );
    assert!(
        !server.seen.iter().any(|l| l.contains("joined")),
        "a refused client joined: {:#?}",
        server.seen
    );
}

/// A proxy that ends TLS with its own certificate and records the
/// plaintext it would pass on: a man in the middle.
struct MitmProxy {
    addr: String,
    heard: Arc<Mutex<Vec<u8>>>,
}

impl MitmProxy {
    fn start(dir: &Path) -> MitmProxy {
        let identity = Identity::load_or_create(dir, SystemTime::now()).unwrap();
        let tls = Arc::new(TlsServer::new(&identity).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let heard2 = heard.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let tls = tls.clone();
                let heard = heard2.clone();
                std::thread::spawn(move || {
                    stream.set_read_timeout(Some(WAIT)).unwrap();
                    let mut transport = Transport::server(&tls);
                    let mut buf = vec![0; 16 << 10];
                    let mut plain = vec![0; 16 << 10];
                    loop {
                        let Ok(n) = stream.read(&mut buf) else { return };
                        if n == 0 || transport.feed(&buf[..n]).is_err() {
                            return;
                        }
                        while let Ok(m) = transport.read_plaintext(&mut plain) {
                            if m == 0 {
                                break;
                            }
                            heard.lock().unwrap().extend_from_slice(&plain[..m]);
                        }
                        while transport.wants_write() {
                            if transport.write_to(&mut stream).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        MitmProxy { addr, heard }
    }
}

#[test]
fn a_man_in_the_middle_with_its_own_certificate_learns_nothing() {
    let inbox = tempfile::tempdir().unwrap();
    let dirs = tempfile::tempdir().unwrap();
    let client = tempfile::tempdir().unwrap();
    let known = known_file(client.path());
    let mut server = Serve::start(inbox.path(), &[]);
    let real = fingerprint_of(&mut server);
    let mitm = MitmProxy::start(&dirs.path().join("mitm"));
    let env = [("FERRY_TOKEN", "correct-horse")];

    // Pinned to the real server: refused.
    let (ok, _, err) = run_env(
        &[
            "chat",
            "--fingerprint",
            &real.to_string(),
            &mitm.addr,
            "--name",
            "alice",
        ],
        &env,
    );
    assert!(!ok);
    assert!(err.contains(&real.to_string()), "{err}");
    // Unknown to a client that nobody can ask: refused too.
    let (ok, _, err) = run_env(
        &[
            "chat",
            "--known-servers",
            &known,
            &mitm.addr,
            "--name",
            "alice",
        ],
        &env,
    );
    assert!(!ok, "{err}");
    let heard = mitm.heard.lock().unwrap().clone();
    assert!(
        heard.is_empty(),
        "the proxy heard {} bytes: {:?}",
        heard.len(),
        String::from_utf8_lossy(&heard)
    );
}

#[test]
fn a_tls_client_turned_away_before_tls_hears_why() {
    let inbox = tempfile::tempdir().unwrap();
    let mut server = Serve::start(inbox.path(), &["--max-per-ip", "1"]);
    let addr = server.addr();
    let _held = common::Raw::connect(server.addr);
    server.expect(&["connected from 127.0.0.1"]);
    // The server refuses before the ClientHello is read, in clear ferry
    // framing: the client says what the server said, not "no TLS".
    for runtime in ["mio", "smol", "std"] {
        let args = ["chat", &addr, "--name", "bob", "--runtime", runtime];
        let (ok, _, err) = run(&args, &[]);
        assert!(!ok, "{runtime}");
        // In clear before TLS (mio writes the refusal before it reads
        // the ClientHello), or through TLS: why, never "no TLS".
        let said = err.contains("too many connections from 127.0.0.1") && !err.contains("no TLS");
        assert!(said, "{runtime}: {err}");
    }
}

/// Like [`run`], with `FERRY_TOKEN` and friends set (common's `run`
/// clears the token).
fn run_env(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut command = Command::new(common::FERRY);
    command
        .args(args)
        .env("FERRY_STATE_DIR", common::state_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn require_tls_turns_clear_text_away_with_a_line_and_a_token_alone_warns() {
    let inbox = tempfile::tempdir().unwrap();
    let mut server = Serve::start(inbox.path(), &["--require-tls"]);
    let addr = server.addr();
    server.expect(&["TLS on", "clear text turned away"]);

    let (ok, _, err) = run(&["chat", "--no-tls", &addr, "--name", "bob"], &[]);
    assert!(!ok);
    assert!(err.contains("clear text (--no-tls)"), "{err}");
    assert!(err.contains("TLS required"), "{err}");

    let mut guest = TextGuest::connect(server.addr);
    guest.write(b"/name mallory\nhello\n");
    let line = guest.expect("TLS");
    assert!(line.contains("only encrypted (TLS)"), "{line}");
    server.expect(&["TLS required"]);

    // A TLS client is served.
    let mut alice = Proc::spawn(&["chat", &addr, "--name", "alice"]);
    alice.expect(&["alice"]);
    server.expect(&["\"alice\"", "joined"]);
    drop(alice);

    // --token without --require-tls: a warning at start.
    let inbox = tempfile::tempdir().unwrap();
    let mut server = Serve::start_with(inbox.path(), &[], |c| {
        c.env("FERRY_TOKEN", "correct-horse");
    });
    server.expect(&["warning", "--token without --require-tls"]);
}

#[test]
fn openssl_s_client_joins_as_a_raw_text_guest_over_tls() {
    if Command::new("openssl").arg("version").output().is_err() {
        println!("SKIP: openssl is not installed (.ci/run installs it)");
        return;
    }
    let inbox = tempfile::tempdir().unwrap();
    let mut server = Serve::start(inbox.path(), &["--require-tls"]);
    let addr = server.addr();
    let mut alice = Proc::spawn(&["chat", &addr, "--name", "alice"]);
    alice.expect(&["alice"]);

    let mut guest = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = guest.stdin.take().unwrap();
    input.write_all(b"/name carol\nhi from openssl\n").unwrap();
    input.flush().unwrap();
    alice.expect(&["carol", "hi from openssl"]);
    server.expect(&["\"carol\"", "raw-text guest"]);

    // And back: what alice says reaches carol inside TLS.
    writeln!(alice.child.stdin.as_mut().unwrap(), "hello carol").unwrap();
    let mut output = std::io::BufReader::new(guest.stdout.take().unwrap());
    let deadline = std::time::Instant::now() + WAIT;
    let mut line = String::new();
    loop {
        line.clear();
        use std::io::BufRead;
        if output.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("openssl's output ended before alice's line");
        }
        if line.contains("alice: hello carol") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no line from alice");
    }
    let _ = guest.kill();
    let _ = guest.wait();
}

#[test]
fn no_chat_line_or_file_byte_crosses_the_wire_in_clear() {
    let inbox = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let server = Serve::start(inbox.path(), &[]);
    let proxy = RecordingProxy::start(server.addr);
    let secret_text = "the-launch-code-is-4711";
    let file = files.path().join("plans.txt");
    let body = "FILE-BODY-".repeat(50_000);
    std::fs::write(&file, &body).unwrap();
    let file = file.display().to_string();
    let mut alice = Proc::spawn(&["chat", &proxy.addr, "--name", "alice"]);
    alice.expect(&["alice"]);
    writeln!(alice.child.stdin.as_mut().unwrap(), "{secret_text}").unwrap();
    alice.expect(&[secret_text]);
    let (ok, out, err) = run(&["send", &proxy.addr, &file], &[]);
    assert!(ok, "{out}{err}");
    drop(alice);
    let wire = proxy.wire.lock().unwrap().clone();
    assert!(wire.len() > body.len(), "the file never crossed the proxy");
    for needle in [secret_text.as_bytes(), b"FILE-BODY-FILE-BODY", b"alice"] {
        assert!(
            !wire.windows(needle.len()).any(|w| w == needle),
            "{:?} crossed the wire in clear",
            String::from_utf8_lossy(needle)
        );
    }
}

/// A TCP relay that records every byte both ways.
struct RecordingProxy {
    addr: String,
    wire: Arc<Mutex<Vec<u8>>>,
}

impl RecordingProxy {
    fn start(target: std::net::SocketAddr) -> RecordingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let wire = Arc::new(Mutex::new(Vec::new()));
        let wire2 = wire.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let wire = wire2.clone();
                    std::thread::spawn(move || {
                        let mut buf = vec![0; 64 << 10];
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            wire.lock().unwrap().extend_from_slice(&buf[..n]);
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        RecordingProxy { addr, wire }
    }
}

/// Every runtime as server and as client, over TLS: chat, a 64 MiB upload
/// verified into the inbox, and a 64 MiB file relayed to a member who takes
/// files (each hop its own TLS connection).
#[test]
fn every_runtime_serves_and_speaks_tls_chat_uploads_and_relays() {
    const RUNTIMES: [&str; 4] = ["mio", "smol", "std", "tokio"];
    let files = tempfile::tempdir().unwrap();
    let big = files.path().join("big.bin");
    std::fs::write(&big, common::contents(64 << 20, 7)).unwrap();
    let small = files.path().join("photo.raw");
    std::fs::write(&small, common::contents(64 << 20, 8)).unwrap();
    let (big_arg, small_arg) = (big.display().to_string(), small.display().to_string());
    for (i, server_runtime) in RUNTIMES.iter().enumerate() {
        let (sender, receiver) = (
            RUNTIMES[(i + 1) % RUNTIMES.len()],
            RUNTIMES[(i + 2) % RUNTIMES.len()],
        );
        let inbox = tempfile::tempdir().unwrap();
        let received = tempfile::tempdir().unwrap();
        let dir = received.path().display().to_string();
        let mut server = Serve::start(
            inbox.path(),
            &["--runtime", server_runtime, "--require-tls"],
        );
        let addr = server.addr();
        let mut bob = Proc::spawn(&[
            "chat",
            &addr,
            "--name",
            "bob",
            "--runtime",
            receiver,
            "--accept-files",
            &dir,
        ]);
        bob.expect(&["you are bob"]);
        let (ok, out, err) = run(&["send", &addr, &big_arg, "--runtime", sender], &[]);
        assert!(ok, "{server_runtime}/{sender}: {out}{err}");
        assert_eq!(
            common::hash_file(&inbox.path().join("big.bin")),
            common::hash_file(&big),
            "{server_runtime}/{sender}"
        );
        let (ok, out, err) = run(
            &[
                "send",
                &addr,
                &small_arg,
                "--to",
                "bob",
                "--name",
                "alice",
                "--runtime",
                sender,
            ],
            &[],
        );
        assert!(ok, "{server_runtime}/{sender}->{receiver}: {out}{err}");
        bob.expect(&["saved", "photo.raw"]);
        assert_eq!(
            common::hash_file(&received.path().join("photo.raw")),
            common::hash_file(&small)
        );
        writeln!(
            bob.child.stdin.as_mut().unwrap(),
            "done on {server_runtime}"
        )
        .unwrap();
        bob.expect(&["done on"]);
        server.expect(&["\"bob\"", "joined"]);
    }
}
