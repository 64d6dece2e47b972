//! Access and limits, end to end against `ferry serve`: the shared token,
//! the per-address and client limits, file size and inbox quota, and names
//! that impersonate.

mod common;

use common::{contents, run, Proc, Raw, Serve};
use ferry_core::frame::Frame;
use ferry_core::Code;

const TOKEN: &str = "correct-horse-battery-staple";

#[test]
fn without_the_token_nobody_chats_or_sends() {
    let inbox = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    // The server takes its token from the environment.
    let mut server = Serve::start_with(inbox.path(), &[], |c| {
        c.env("FERRY_TOKEN", TOKEN);
    });
    server.expect(&["limits: token required"]);
    let addr = server.addr();
    let path = files.path().join("secret-plans.txt");
    std::fs::write(&path, b"nothing to see").unwrap();
    let path = path.to_str().unwrap();

    // No token, or a wrong one: refused, for chat and for send alike.
    let (ok, _, err) = run(&["chat", &addr, "--name", "eve"], &[]);
    assert!(!ok);
    assert!(err.contains("authentication failed"), "{err}");
    let (ok, _, err) = run(&["send", &addr, path, "--token", "guess"], &[]);
    assert!(!ok);
    assert!(err.contains("authentication failed"), "{err}");
    let (ok, _, err) = run(&["send", &addr, path], &[("FERRY_TOKEN", "Correct")]);
    assert!(!ok);
    assert!(err.contains("authentication failed"), "{err}");
    assert!(common::stored_in(inbox.path()).is_empty());
    assert!(common::partials_in(inbox.path()).is_empty());
    server.expect_count(&["authentication failed"], 3);

    // The right token, by flag (which wins over the environment) or by
    // environment: in.
    let (ok, out, err) = run(
        &["chat", &addr, "--name", "alice", "--token", TOKEN],
        &[("FERRY_TOKEN", "wrong")],
    );
    assert!(ok, "{out}{err}");
    let (ok, out, err) = run(&["send", &addr, path], &[("FERRY_TOKEN", TOKEN)]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        std::fs::read(inbox.path().join("secret-plans.txt")).unwrap(),
        b"nothing to see"
    );
    server.expect(&["secret-plans.txt", "verified"]);
    server.terminate();
    let output = String::from_utf8_lossy(&server.output()).into_owned();
    assert!(
        !output.contains(TOKEN),
        "the token reached the log:\n{output}"
    );
    assert!(!output.contains("Correct"), "a wrong token reached the log");
}

#[test]
fn a_raw_client_with_a_wrong_token_is_refused_auth_failed() {
    let inbox = tempfile::tempdir().unwrap();
    let server = Serve::start(inbox.path(), &["--token", TOKEN]);
    let mut raw = Raw::connect(server.addr);
    raw.hello("mallory", "", b"correct-horse-battery-stapl");
    let (code, reason) = raw.expect_end();
    assert_eq!(code, Code::AUTH_FAILED);
    assert!(!reason.contains("correct"), "{reason}");
}

#[test]
fn one_address_gets_max_per_ip_connections() {
    let inbox = tempfile::tempdir().unwrap();
    let mut server = Serve::start(inbox.path(), &["--max-per-ip", "3"]);
    let mut held: Vec<Raw> = (0..3).map(|_| Raw::connect(server.addr)).collect();
    server.expect_count(&["connected from 127.0.0.1"], 3);
    // The fourth is closed at once, saying why, before it says anything.
    let mut extra = Raw::connect(server.addr);
    let (code, reason) = extra.expect_end();
    assert_eq!(code, Code::SERVER_FULL);
    assert!(
        reason.contains("too many connections from 127.0.0.1"),
        "{reason}"
    );
    server.expect(&["too many connections from 127.0.0.1"]);
    // One leaves; its place is free again, and the newcomer joins.
    held.pop().unwrap().close();
    server.expect_count(&["disconnected"], 2);
    let mut alice = Raw::join(server.addr, "alice", "");
    alice.say_and_hear("in");
}

#[test]
fn max_clients_refuses_server_full() {
    let inbox = tempfile::tempdir().unwrap();
    let server = Serve::start(inbox.path(), &["--max-clients", "2"]);
    let _a = Raw::join(server.addr, "alice", "");
    let _b = Raw::join(server.addr, "bob", "");
    let mut carol = Raw::connect(server.addr);
    carol.hello("carol", "", b"");
    assert_eq!(carol.expect_end().0, Code::SERVER_FULL);
}

#[test]
fn file_size_limit_and_inbox_quota_refuse_before_writing() {
    let inbox = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let mut server = Serve::start(
        inbox.path(),
        &["--max-file-size", "1M", "--inbox-quota", "3M"],
    );
    let addr = server.addr();
    let write = |name: &str, size: usize| {
        let path = files.path().join(name);
        std::fs::write(&path, contents(size, size as u64)).unwrap();
        path.to_str().unwrap().to_string()
    };
    let big = write("big.bin", (1 << 20) + 1);
    let (ok, _, err) = run(&["send", &addr, &big], &[]);
    assert!(!ok);
    assert!(err.contains("file too large"), "{err}");
    for name in ["a.bin", "b.bin", "c.bin"] {
        let path = write(name, 1 << 20);
        let (ok, out, err) = run(&["send", &addr, &path], &[]);
        assert!(ok, "{name}: {out}{err}");
    }
    // 3 MiB held: the next byte does not fit.
    let one = write("one-more.bin", 1);
    let (ok, _, err) = run(&["send", &addr, &one], &[]);
    assert!(!ok);
    assert!(err.contains("inbox full") && err.contains("quota"), "{err}");
    server.expect(&["one-more.bin", "inbox full"]);
    assert_eq!(
        common::stored_in(inbox.path()),
        ["a.bin", "b.bin", "c.bin"],
        "nothing else written"
    );
    assert!(common::partials_in(inbox.path()).is_empty());
}

/// The look-alikes the adversarial review got into a room, against the
/// real server on every runtime: each refused with `NAME_TAKEN`, whom it
/// looks like named; a name that only mixes scripts is `NAME_INVALID`.
#[test]
fn the_reviews_look_alike_names_are_refused_on_every_runtime() {
    for runtime in ["mio", "smol", "std", "tokio"] {
        let inbox = tempfile::tempdir().unwrap();
        let server = Serve::start(inbox.path(), &["--runtime", runtime]);
        let members: Vec<Raw> = ["bob", "alice", "admin"]
            .into_iter()
            .map(|name| Raw::join(server.addr, name, ""))
            .collect();
        for (fake, member) in [
            ("b\u{585}b", "bob"),
            ("\u{1D5BB}\u{1D5C8}\u{1D5BB}", "bob"),
            ("b\u{1D0F}b", "bob"),
            ("a\u{217C}ice", "alice"),
            ("admi\u{578}", "admin"),
            ("\u{13AA}\u{13A0}\u{13B7}\u{13A5}\u{13C1}", "admin"),
        ] {
            let mut raw = Raw::connect(server.addr);
            raw.hello(fake, "", b"");
            let (code, reason) = raw.expect_end();
            assert_eq!(code, Code::NAME_TAKEN, "{runtime}: {fake:?}: {reason}");
            assert!(
                reason.contains(&format!("looks like {member:?}")),
                "{runtime}: {fake:?}: {reason}"
            );
        }
        let mut raw = Raw::connect(server.addr);
        raw.hello("Zo\u{435}", "", b""); // a Cyrillic е after Latin letters
        let (code, reason) = raw.expect_end();
        assert_eq!(code, Code::NAME_INVALID, "{runtime}: {reason}");
        assert!(reason.contains("Latin, Cyrillic"), "{runtime}: {reason}");
        drop(members);
    }
}

/// Names that read like log syntax: the review's `alice (10.0.0.7:40000)
/// left` gave `alice (10.0.0.7:40000) left (127.0.0.1:50478) joined lobby`.
/// The server quotes names (and escapes quotes in them), so each is
/// visibly one name, on every runtime.
#[test]
fn the_log_quotes_names_so_none_forges_an_address_or_an_event() {
    for runtime in ["mio", "smol", "std", "tokio"] {
        let inbox = tempfile::tempdir().unwrap();
        let mut server = Serve::start(inbox.path(), &["--runtime", runtime]);
        let forged = "alice (10.0.0.7:40000) left";
        let quotes = r#"bob" (10.0.0.8:1) joined "x\"#;
        let mut first = Raw::join(server.addr, forged, "");
        let line = server.expect(&["joined"]);
        assert!(
            line.contains(r#""alice (10.0.0.7:40000) left" (127.0.0.1:"#)
                && line.ends_with(r#") joined "lobby""#),
            "{runtime}: {line}"
        );
        let second = Raw::join(server.addr, quotes, "room (10.0.0.9:2) left");
        let line = server.expect(&["joined", "10.0.0.8:1"]);
        assert!(
            line.contains(r#""bob\" (10.0.0.8:1) joined \"x\\" (127.0.0.1:"#)
                && line.ends_with(r#") joined "room (10.0.0.9:2) left""#),
            "{runtime}: {line}"
        );
        drop(second);
        first.close();
        let line = server.expect(&["alice (10.0.0.7:40000) left\" (127.0.0.1:", "disconnected"]);
        assert!(
            line.contains(r#"] "alice (10.0.0.7:40000) left" (127.0.0.1:"#),
            "{runtime}: {line}"
        );
    }
}

#[test]
fn names_that_impersonate_are_refused() {
    let inbox = tempfile::tempdir().unwrap();
    let mut server = Serve::start(inbox.path(), &[]);
    let addr = server.addr();
    let mut bob = Proc::spawn(&["chat", &addr, "--name", "bob"]);
    bob.expect(&["you are bob"]);
    // Cyrillic о, fullwidth letters, a zero for o, capitals.
    for fake in ["b\u{43e}b", "\u{FF42}\u{FF4F}\u{FF42}", "b0b", "BOB"] {
        let (ok, _, err) = run(&["chat", &addr, "--name", fake], &[]);
        assert!(!ok, "{fake:?} got in");
        assert!(err.contains("name taken"), "{fake:?}: {err}");
    }
    // A zero-width character is refused outright.
    let (ok, _, err) = run(&["chat", &addr, "--name", "b\u{200B}ob"], &[]);
    assert!(!ok);
    assert!(err.contains("name invalid"), "{err}");
    // The reason names whom the name looks like.
    let mut raw = Raw::connect(server.addr);
    raw.hello("b\u{43e}b", "", b"");
    let (code, reason) = raw.expect_end();
    assert_eq!(code, Code::NAME_TAKEN);
    assert!(reason.contains("looks like \"bob\""), "{reason}");
    server.expect(&["looks like"]);
    let (ok, out, _) = bob.finish();
    assert!(ok, "{out}");
    let frames = Raw::join(server.addr, "bobby", "").say_and_hear("still one bob");
    assert!(frames.iter().all(|f| !matches!(f, Frame::Error { .. })));
}

#[test]
fn the_std_runtime_warns_when_the_kernel_caps_its_threads_under_max_clients() {
    // Eight memory mappings per connection, 2,048 for the rest: what
    // `ferry serve` reckons with.
    let cap: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .expect("Linux")
        .trim()
        .parse()
        .unwrap();
    let fits = (cap - 2048) / 8;
    let inbox = tempfile::tempdir().unwrap();
    let over = (fits + 1).to_string();
    let mut server = Serve::start(inbox.path(), &["--runtime", "std", "--max-clients", &over]);
    let line = server.expect(&["warning", "vm.max_map_count"]);
    assert!(
        line.contains(&format!("about {fits} connections")),
        "{line}"
    );
    assert!(line.contains("--runtime mio"), "{line}");

    let under = fits.to_string();
    let mut server = Serve::start(inbox.path(), &["--runtime", "std", "--max-clients", &under]);
    server.expect(&["TLS on"]);
    server.catch_up();
    assert!(
        !server.seen.iter().any(|l| l.contains("vm.max_map_count")),
        "{:?}",
        server.seen
    );
}
