//! Faults, end to end with the real program: killed processes, a byte
//! flipped on the wire, a file-size limit hit while receiving, an unusable
//! inbox, and a client that stops reading. In each, nothing is lost: what
//! arrives is verified, and what could not be is resumed or refused.

mod common;

use common::{
    contents, hash_file, partials_in, rss_kib, run, the_partial_in, wait_until, Proc, Proxy,
    ProxyMode, Raw, Serve, WAIT,
};
use ferry_core::frame::Frame;
use ferry_core::Code;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Size of the files killed mid-transfer: small enough for CI, large
/// enough that the throttled transfer is well under way when killed.
const BIG: usize = 12 << 20;
/// Kill once the receiver holds this much.
const KILL_AT: u64 = 2 << 20;

/// About 6 MiB/s: 64 KiB, then a 10 ms pause.
fn slow() -> ProxyMode {
    ProxyMode {
        chunk: Some(64 * 1024),
        pause: Duration::from_millis(10),
        ..ProxyMode::default()
    }
}

/// Watches `path` on a thread until dropped; says whether it ever existed.
struct Watch {
    stop: Arc<AtomicBool>,
    seen: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watch {
    fn new(path: PathBuf) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicBool::new(false));
        let (s, f) = (stop.clone(), seen.clone());
        let thread = thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                if path.exists() {
                    f.store(true, Ordering::SeqCst);
                }
                thread::sleep(Duration::from_millis(2));
            }
        });
        Watch {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// Stops watching; whether the file ever appeared.
    fn appeared(mut self) -> bool {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        self.seen.load(Ordering::SeqCst)
    }
}

/// The offset in a "resumes NAME (SIZE) at N" log line, which must not be
/// "0 B".
fn resumed_at(line: &str) -> String {
    let at = line.rsplit(" at ").next().unwrap().to_string();
    assert_ne!(at, "0 B", "{line}");
    at
}

fn source(dir: &Path, name: &str, size: usize, seed: u64) -> (PathBuf, String) {
    let path = dir.join(name);
    std::fs::write(&path, contents(size, seed)).unwrap();
    let text = path.to_str().unwrap().to_string();
    (path, text)
}

#[test]
fn a_killed_sender_resumes_to_the_identical_file() {
    let inbox = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let (src, src_arg) = source(files.path(), "big.bin", BIG, 1);
    let mut server = Serve::start(inbox.path(), &["--runtime", "mio"]);
    let proxy = Proxy::start(server.addr, slow());
    let final_name = inbox.path().join("big.bin");
    let watch = Watch::new(final_name.clone());

    let mut sender = Proc::spawn(&["send", &proxy.addr(), &src_arg, "--name", "alice"]);
    wait_until("the partial file to grow", || {
        the_partial_in(inbox.path()).filter(|(_, len)| *len >= KILL_AT)
    });
    sender.kill9();
    let kept = server.expect(&["kept", "big.bin", "for a resume"]);
    assert!(!final_name.exists(), "{kept}");

    // The same command again: it presents the key it was handed, and
    // resumes where the partial file ends.
    assert!(!watch.appeared(), "big.bin appeared before it was resumed");
    let (ok, out, err) = run(&["send", &proxy.addr(), &src_arg], &[]);
    let resumes = server.expect(&["resumes \"big.bin\""]);
    assert!(ok, "{out}{err}");
    resumed_at(&resumes);
    server.expect(&["\"big.bin\" from", "verified"]);
    assert_eq!(hash_file(&final_name), hash_file(&src));
    assert!(std::fs::read(&final_name).unwrap() == std::fs::read(&src).unwrap());
    assert!(partials_in(inbox.path()).is_empty());
}

/// Over TLS, a resume key belongs to the server the handshake proved, not
/// to the address typed: the same server reached at another address (here
/// another proxy; a DNS name, IPv6, or another server of a cluster that
/// shares the certificate) is handed the key and resumes. In clear text
/// the address is all a client knows, and a key never goes to another.
#[test]
fn a_killed_sender_resumes_through_another_address_of_the_same_server_only_over_tls() {
    let inbox = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let (src, src_arg) = source(files.path(), "moved.bin", BIG, 7);
    let (_, plain_arg) = source(files.path(), "plain.bin", BIG, 8);
    let mut server = Serve::start(inbox.path(), &["--runtime", "mio"]);
    let first = Proxy::start(server.addr, slow());
    let second = Proxy::start(server.addr, slow());

    let mut sender = Proc::spawn(&["send", &first.addr(), &src_arg]);
    wait_until("the partial file to grow", || {
        the_partial_in(inbox.path()).filter(|(_, len)| *len >= KILL_AT)
    });
    sender.kill9();
    server.expect(&["kept", "moved.bin", "for a resume"]);
    let (ok, out, err) = run(&["send", &second.addr(), &src_arg], &[]);
    let resumes = server.expect(&["resumes \"moved.bin\""]);
    assert!(ok, "{out}{err}");
    resumed_at(&resumes);
    server.expect(&["\"moved.bin\" from", "verified"]);
    assert_eq!(hash_file(&inbox.path().join("moved.bin")), hash_file(&src));

    let mut sender = Proc::spawn(&["send", "--no-tls", &first.addr(), &plain_arg]);
    wait_until("the partial file to grow", || {
        the_partial_in(inbox.path()).filter(|(_, len)| *len >= KILL_AT)
    });
    sender.kill9();
    server.expect(&["kept", "plain.bin", "for a resume"]);
    let (ok, out, err) = run(&["send", "--no-tls", &second.addr(), &plain_arg], &[]);
    assert!(ok, "{out}{err}");
    let again = server.expect(&["plain.bin", "uploads"]);
    assert!(!again.contains("resumes"), "{again}");
}

/// A sender killed on a link that died without a word: the server still
/// holds its connection, and with it the upload, until its idle timeout.
/// Run again, `ferry send` is told `TRY_AGAIN`, offers again on its own a
/// little later, and resumes once the server has let the old link go.
#[test]
fn a_resume_refused_while_the_old_link_lingers_is_retried_by_itself() {
    let inbox = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let (src, src_arg) = source(files.path(), "slow.bin", BIG, 5);
    let mut server = Serve::start(inbox.path(), &["--runtime", "mio", "--idle-timeout", "3"]);
    let proxy = Proxy::start(
        server.addr,
        ProxyMode {
            silent_drop: true,
            ..slow()
        },
    );
    let mut sender = Proc::spawn(&["send", &proxy.addr(), &src_arg]);
    wait_until("the partial file to grow", || {
        the_partial_in(inbox.path()).filter(|(_, len)| *len >= KILL_AT)
    });
    sender.kill9();

    let (ok, out, err) = run(&["send", &proxy.addr(), &src_arg], &[]);
    assert!(ok, "{out}{err}");
    server.expect(&["slow.bin", "try again"]);
    let resumes = server.expect(&["resumes \"slow.bin\""]);
    resumed_at(&resumes);
    assert_eq!(hash_file(&inbox.path().join("slow.bin")), hash_file(&src));
    assert!(partials_in(inbox.path()).is_empty());
}

#[test]
fn a_killed_server_resumes_on_the_same_inbox() {
    let inbox = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let (src, src_arg) = source(files.path(), "archive.tar", BIG, 2);
    let final_name = inbox.path().join("archive.tar");
    let watch = Watch::new(final_name.clone());
    let mut server = Serve::start(inbox.path(), &["--runtime", "smol"]);
    let proxy = Proxy::start(server.addr, slow());
    let sender = Proc::spawn(&["send", &proxy.addr(), &src_arg]);
    wait_until("the partial file to grow", || {
        the_partial_in(inbox.path()).filter(|(_, len)| *len >= KILL_AT)
    });
    server.kill9();
    // The sender learns the connection broke, and says so.
    let (ok, _, err) = sender.finish();
    assert!(!ok);
    assert!(err.starts_with("ferry: "), "{err}");
    assert!(!final_name.exists());

    // A new server on the same address and inbox finds the partial file,
    // and the same command resumes it.
    let listen = server.addr();
    let mut server = Serve::start(inbox.path(), &["--runtime", "smol", "--listen", &listen]);
    assert!(!watch.appeared(), "archive.tar appeared before the resume");
    let (ok, out, err) = run(&["send", &proxy.addr(), &src_arg], &[]);
    let resumes = server.expect(&["resumes \"archive.tar\""]);
    assert!(ok, "{out}{err}");
    resumed_at(&resumes);
    assert_eq!(hash_file(&final_name), hash_file(&src));
    assert!(partials_in(inbox.path()).is_empty());
}

#[test]
fn a_killed_receiving_chat_client_resumes_from_a_new_one() {
    let inbox = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let received = tempfile::tempdir().unwrap();
    let dir = received.path().to_str().unwrap();
    let (src, src_arg) = source(files.path(), "photo.raw", BIG, 3);
    let final_name = received.path().join("photo.raw");
    let watch = Watch::new(final_name.clone());
    let mut server = Serve::start(inbox.path(), &["--runtime", "std"]);
    let addr = server.addr();
    // bob reaches the server through a slow link.
    let proxy = Proxy::start(server.addr, slow());
    let mut bob = Proc::spawn(&[
        "chat",
        &proxy.addr(),
        "--name",
        "bob",
        "--accept-files",
        dir,
    ]);
    bob.expect(&["you are bob"]);
    let alice = Proc::spawn(&["send", &addr, &src_arg, "--to", "bob", "--name", "alice"]);
    wait_until("bob's partial file to grow", || {
        the_partial_in(received.path()).filter(|(_, len)| *len >= KILL_AT)
    });
    bob.kill9();
    server.expect(&["\"bob\" (", "left"]);
    let (ok, _, err) = alice.finish();
    assert!(!ok, "the send cannot have succeeded");
    assert!(err.contains("photo.raw"), "{err}");
    assert!(!final_name.exists());

    // A new bob on the same folder; alice sends again.
    let mut bob = Proc::spawn(&["chat", &addr, "--name", "bob", "--accept-files", dir]);
    bob.expect(&["you are bob"]);
    assert!(!watch.appeared(), "photo.raw appeared before the resume");
    let (ok, out, err) = run(
        &["send", &addr, &src_arg, "--to", "bob", "--name", "alice"],
        &[],
    );
    let resuming = bob.expect(&["resuming photo.raw", "from alice at "]);
    assert!(ok, "{out}{err}");
    let at: u64 = resuming.rsplit(" at ").next().unwrap().parse().unwrap();
    assert!(at > 0, "{resuming}");
    bob.expect(&["saved", "photo.raw"]);
    assert_eq!(hash_file(&final_name), hash_file(&src));
    assert!(partials_in(received.path()).is_empty());
    let (ok, _, _) = bob.finish();
    assert!(ok);
}

#[test]
fn a_flipped_byte_is_caught_reported_to_both_ends_and_a_retry_succeeds() {
    let inbox = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let (src, src_arg) = source(files.path(), "ledger.db", 3 << 20, 4);
    let mut server = Serve::start(inbox.path(), &["--runtime", "mio"]);
    let final_name = inbox.path().join("ledger.db");
    let watch = Watch::new(final_name.clone());
    // The 20th chunk (about 1.2 MiB in) gets one byte flipped. In clear
    // text, so that the byte reaches ferry's own check: through TLS the
    // record would fail its authentication first (see tests/tls.rs).
    let proxy = Proxy::start(
        server.addr,
        ProxyMode {
            flip_data_frame: Some(20),
            ..ProxyMode::default()
        },
    );
    let (ok, _, err) = run(&["send", "--no-tls", &proxy.addr(), &src_arg], &[]);
    assert!(
        proxy.flipped.load(Ordering::SeqCst),
        "the proxy flipped nothing"
    );
    assert!(!ok, "a corrupted transfer succeeded");
    assert!(err.contains("hash mismatch"), "sender: {err}");
    server.expect(&["\"ledger.db\" from", "hash mismatch"]);
    // Wrong bytes are no base for a resume: the partial file is gone too.
    wait_until("the partial file to go", || {
        partials_in(inbox.path()).is_empty().then_some(())
    });
    assert!(!watch.appeared(), "the corrupt file was stored");
    let (ok, out, err) = run(&["send", &server.addr(), &src_arg], &[]);
    assert!(ok, "{out}{err}");
    assert_eq!(hash_file(&final_name), hash_file(&src));
}

/// `ferry serve` in a child whose files may not grow past `limit` bytes
/// (RLIMIT_FSIZE), with SIGXFSZ ignored so that writes fail with EFBIG.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn serve_with_file_size_limit(inbox: &Path, limit: u64) -> Serve {
    use std::os::unix::process::CommandExt;
    Serve::start_with(inbox, &["--runtime", "mio"], |command| {
        // SAFETY: between fork and exec, only async-signal-safe calls:
        // signal and setrlimit on a struct on the stack.
        unsafe {
            command.pre_exec(move || {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let lim = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    })
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn a_full_disk_fails_the_upload_clearly_and_the_server_serves_on() {
    let inbox = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let mut server = serve_with_file_size_limit(inbox.path(), 2 << 20);
    let addr = server.addr();
    let (_, big) = source(files.path(), "too-big.iso", 6 << 20, 5);
    let (ok, _, err) = run(&["send", &addr, &big], &[]);
    assert!(!ok, "an upload past the limit succeeded");
    assert!(
        err.contains("too-big.iso") && err.contains("i/o error"),
        "sender: {err}"
    );
    assert!(err.contains("File too large"), "sender: {err}");
    server.expect(&["File too large"]);
    assert!(!inbox.path().join("too-big.iso").exists());

    // Everyone else carries on: chat, and an upload that fits.
    let (ok, out, err) = run(&["chat", &addr, "--name", "carol"], &[]);
    assert!(ok, "{out}{err}");
    let mut dave = Raw::join(server.addr, "dave", "");
    dave.say_and_hear("still serving");
    let (small, small_arg) = source(files.path(), "small.txt", 100_000, 6);
    let (ok, out, err) = run(&["send", &addr, &small_arg], &[]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        hash_file(&inbox.path().join("small.txt")),
        hash_file(&small)
    );
    assert!(server.terminate().success());
}

#[test]
fn an_unusable_inbox_is_one_line_and_a_failure() {
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("a-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let under_a_file = file.join("inbox");
    for inbox in [&file, &under_a_file] {
        let (ok, out, err) = run(
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--inbox",
                inbox.to_str().unwrap(),
            ],
            &[],
        );
        assert!(!ok, "{} was accepted as an inbox", inbox.display());
        assert_eq!(out, "", "nothing on stdout");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("ferry: ") && err.contains("inbox"), "{err}");
    }
}

#[test]
fn a_client_that_stops_reading_is_dropped_and_memory_stays_bounded() {
    let inbox = tempfile::tempdir().unwrap();
    let mut server = Serve::start(
        inbox.path(),
        &[
            "--runtime",
            "mio",
            "--flood-burst",
            "1000000",
            "--flood-rate",
            "1000000",
            // All the chatters come from 127.0.0.1, one source.
            "--source-flood-burst",
            "1000000",
            "--source-flood-rate",
            "1000000",
        ],
    );
    let start_rss = server.rss_kib();
    let mut reader = Raw::join(server.addr, "reader", "");
    // Joins, then never reads again.
    let slow = Raw::join(server.addr, "slow", "");
    const CHATTERS: usize = 2;
    const MESSAGES: usize = 2500;
    let text = "x".repeat(4000);
    // Each chatter writes only as fast as every listener keeps up: at most
    // WINDOW of its messages ahead of the slowest of the reader and the
    // chatters' own drains (each reads, and drops, on a thread of its own).
    // None of them is a slow reader however the threads are scheduled; only
    // `slow` is.
    const WINDOW: usize = 50;
    const READER: usize = CHATTERS;
    // heard[listener][sender]: messages of `sender` that `listener` has read.
    let heard: Arc<Vec<Vec<AtomicUsize>>> = Arc::new(
        (0..=CHATTERS)
            .map(|_| (0..CHATTERS).map(|_| AtomicUsize::new(0)).collect())
            .collect(),
    );
    // Everyone joins before anyone speaks: a join that read past its own
    // JOINED would swallow the first messages.
    let joined: Vec<Raw> = (0..CHATTERS)
        .map(|c| Raw::join(server.addr, &format!("chatter{c}"), ""))
        .collect();
    let chatters: Vec<_> = joined
        .into_iter()
        .enumerate()
        .map(|(c, mut raw)| {
            let heard = heard.clone();
            let mut drain = Raw::split_reader(&mut raw);
            let text = text.clone();
            thread::spawn(move || {
                let drain_heard = heard.clone();
                let drainer = thread::spawn(move || {
                    let mut total = 0;
                    let mut last_other = None;
                    while total < CHATTERS * MESSAGES {
                        match drain.recv(WAIT) {
                            Ok(Frame::Message { from, .. }) => {
                                total += 1;
                                let sender = chatter_number(&from);
                                drain_heard[c][sender].fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(other) => last_other = Some(other),
                            Err(e) => panic!(
                                "chatter{c}: {e:?} after {total} messages; last other frame: {last_other:?}"
                            ),
                        }
                    }
                });
                for i in 0..MESSAGES {
                    wait_until("every listener to catch up", || {
                        let slowest = heard
                            .iter()
                            .map(|listener| listener[c].load(Ordering::SeqCst))
                            .min()
                            .unwrap_or(0);
                        (slowest + WINDOW > i).then_some(())
                    });
                    raw.send(&Frame::Say {
                        text: format!("{i} {text}").into(),
                    })
                    .unwrap();
                }
                drainer.join().unwrap();
                raw
            })
        })
        .collect();
    // The server's memory, sampled while the room floods.
    let pid = server.child.id();
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        thread::spawn(move || {
            let mut peak = 0;
            while sampling.load(Ordering::SeqCst) {
                peak = peak.max(rss_kib(pid));
                thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    // The reader gets every message, each chatter's in order, and sees the
    // slow one dropped as a slow reader.
    let mut next: HashMap<String, usize> = HashMap::new();
    let mut slow_left = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    while next.values().sum::<usize>() < CHATTERS * MESSAGES {
        let left = deadline.saturating_duration_since(Instant::now());
        match reader.recv(left) {
            Ok(Frame::Message { from, text, .. }) => {
                let n: usize = text.split(' ').next().unwrap().parse().unwrap();
                let expected = next.entry(from.to_string()).or_insert(0);
                assert_eq!(n, *expected, "from {from}");
                *expected += 1;
                heard[READER][chatter_number(&from)].store(*expected, Ordering::SeqCst);
            }
            Ok(Frame::Left { name, code, .. }) if name == "slow" => slow_left = Some(code),
            Ok(_) => {}
            Err(e) => panic!("reader: {e:?} after {next:?}"),
        }
    }
    for chatter in chatters {
        chatter.join().unwrap();
    }
    sampling.store(false, Ordering::SeqCst);
    let peak = sampler.join().unwrap();
    let slow_left = slow_left.or_else(|| {
        std::iter::from_fn(|| reader.recv(Duration::from_secs(5)).ok()).find_map(|f| match f {
            Frame::Left { name, code, .. } if name == "slow" => Some(code),
            _ => None,
        })
    });
    assert_eq!(slow_left, Some(Code::SLOW_READER));
    server.expect(&["\"slow\" (", "disconnected: not reading"]);
    let sent_mib = (CHATTERS * MESSAGES * 4000 * 4) >> 20;
    eprintln!("server RSS: {start_rss} KiB at start, {peak} KiB at peak; {sent_mib} MiB relayed");
    assert!(
        peak < start_rss + 32 * 1024,
        "server RSS grew from {start_rss} KiB to {peak} KiB"
    );
    drop(slow);
}

/// `n` of a message from `chatter{n}`.
fn chatter_number(from: &str) -> usize {
    from.strip_prefix("chatter")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a message from {from:?}"))
}

/// A client that sends PINGs as fast as it can and never reads a PONG.
/// Every runtime keeps reading it rather than wait on its full socket (the
/// std server's readers write their own client's answers, but never
/// blocking), drops it as a slow reader, and serves another client all
/// along.
#[test]
fn a_client_that_pings_without_reading_is_dropped_and_others_are_served() {
    for runtime in ["mio", "smol", "std", "tokio"] {
        eprintln!("{runtime}");
        let inbox = tempfile::tempdir().unwrap();
        let mut server = Serve::start(inbox.path(), &["--runtime", runtime]);
        let mut other = Raw::join(server.addr, "other", "");
        let mut pinger = Raw::join(server.addr, "pinger", "");
        let unblock = pinger.stream.try_clone().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mut pings = bytes::BytesMut::new();
        for nonce in 0..5000 {
            Frame::Ping { nonce }.encode(&mut pings).unwrap();
        }
        let stopped = stop.clone();
        let flood = thread::spawn(move || {
            let mut rounds = 0u64;
            while !stopped.load(Ordering::SeqCst) && pinger.send_bytes(&pings).is_ok() {
                rounds += 1;
            }
            rounds
        });
        // Fewer than the flood limit's burst (20).
        for i in 0..10 {
            other.say_and_hear(&format!("still served {i}"));
        }
        server.expect(&["\"pinger\" (", "left"]);
        for i in 10..15 {
            other.say_and_hear(&format!("still served {i}"));
        }
        stop.store(true, Ordering::SeqCst);
        // A write blocked on the dropped connection ends here.
        let _ = unblock.shutdown(std::net::Shutdown::Both);
        let rounds = flood.join().unwrap();
        eprintln!("{runtime}: the pinger sent {rounds} rounds of 5000 PINGs before it stopped");
        assert!(rounds > 0, "{runtime}");
    }
}
