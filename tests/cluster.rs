//! Two `ferry serve --cluster` processes on one `redis-server` (started by
//! the test on a free loopback port) are one chat service: ferry clients
//! and a raw-text guest on either server see each other join, talk in one
//! order with the same `seq`s, send direct messages across, cannot take a
//! name (or a look-alike) held on the other server, and when one server is
//! killed with `kill -9` its members are announced gone (`SERVER_GONE`)
//! within the lease and their names are free again.

mod common;

use common::{Proc, Raw, RedisServer, Serve, TextGuest, WAIT};
use ferry_core::frame::Frame;
use ferry_core::Code;
use std::time::{Duration, Instant};

/// Reads frames until `pick` accepts one, for at most `WAIT`.
fn wait_frame<T>(raw: &mut Raw, what: &str, pick: impl FnMut(&Frame) -> Option<T>) -> T {
    raw.wait_for(what, pick)
}

/// The `seq` of the message `text` from `from`, once it arrives.
fn message_seq(raw: &mut Raw, from: &str, text: &str) -> u64 {
    wait_frame(raw, &format!("{from}: {text}"), |f| match f {
        Frame::Message {
            seq,
            from: f,
            text: t,
        } if f == from && t == text => Some(*seq),
        _ => None,
    })
}

fn cluster_server(inbox: &std::path::Path, url: &str) -> Serve {
    cluster_server_on(inbox, url, "mio")
}

fn cluster_server_on(inbox: &std::path::Path, url: &str, runtime: &str) -> Serve {
    cluster_server_with(inbox, url, runtime, &[])
}

fn cluster_server_with(inbox: &std::path::Path, url: &str, runtime: &str, more: &[&str]) -> Serve {
    let mut args = vec![
        "--no-tls",
        "--cluster",
        url,
        "--cluster-lease",
        "2",
        "--runtime",
        runtime,
    ];
    args.extend_from_slice(more);
    let mut server = Serve::start(inbox, &args);
    server.expect(&["cluster: server", "lease 2 s"]);
    server
}

#[test]
fn two_servers_on_one_redis_are_one_room() {
    let redis = RedisServer::start();
    let (inbox_a, inbox_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = cluster_server(inbox_a.path(), &redis.url());
    let mut b = cluster_server(inbox_b.path(), &redis.url());

    let mut alice = Raw::join(a.addr, "alice", "");
    let mut bob = Raw::connect(b.addr);
    bob.hello("bob", "", b"");
    let members = wait_frame(&mut bob, "bob's MEMBERS", |f| match f {
        Frame::Members { names } => Some(names.clone()),
        _ => None,
    });
    assert_eq!(members, vec!["alice", "bob"], "MEMBERS spans both servers");
    wait_frame(&mut alice, "bob joining", |f| match f {
        Frame::Joined { name, .. } if name == "bob" => Some(()),
        _ => None,
    });

    // One order: both see the same seq for each message, in the order
    // they were said, whichever server each sender is on.
    alice.send(&Frame::Say { text: "one".into() }).unwrap();
    bob.send(&Frame::Say { text: "two".into() }).unwrap();
    let seqs = |raw: &mut Raw| {
        let mut seqs = [None, None];
        while seqs.iter().any(Option::is_none) {
            let (k, seq) = wait_frame(raw, "one and two", |f| match f {
                Frame::Message { seq, text, .. } if text == "one" => Some((0, *seq)),
                Frame::Message { seq, text, .. } if text == "two" => Some((1, *seq)),
                _ => None,
            });
            seqs[k] = Some(seq);
        }
        seqs
    };
    let (at_alice, at_bob) = (seqs(&mut alice), seqs(&mut bob));
    assert_eq!(
        at_alice, at_bob,
        "the same seq for each message on both servers"
    );
    assert_ne!(at_alice[0], at_alice[1]);

    // A direct message across servers, and one to nobody.
    bob.send(&Frame::DirectTo {
        to: "Alice".into(),
        text: "psst".into(),
    })
    .unwrap();
    wait_frame(&mut alice, "bob's direct message", |f| match f {
        Frame::DirectFrom { from, text } if from == "bob" && text == "psst" => Some(()),
        _ => None,
    });
    bob.send(&Frame::DirectTo {
        to: "zed".into(),
        text: "hello?".into(),
    })
    .unwrap();
    let code = wait_frame(&mut bob, "the BOUNCE", |f| match f {
        Frame::Bounce { code, .. } => Some(*code),
        _ => None,
    });
    assert_eq!(code, Code::NO_SUCH_USER);

    // alice's name, and a look-alike of it, cannot be taken on server b.
    let mut impostor = Raw::connect(b.addr);
    impostor.hello("aIice", "", b"");
    let (code, reason) = wait_frame(&mut impostor, "the REFUSE", |f| match f {
        Frame::Refuse { code, reason } => Some((*code, reason.to_string())),
        _ => None,
    });
    assert_eq!(code, Code::NAME_TAKEN, "{reason}");
    assert!(reason.contains("looks like \"alice\""), "{reason}");
    let mut twin = Raw::connect(b.addr);
    twin.hello("Alice", "", b"");
    let (code, reason) = wait_frame(&mut twin, "the REFUSE", |f| match f {
        Frame::Refuse { code, reason } => Some((*code, reason.to_string())),
        _ => None,
    });
    assert_eq!(code, Code::NAME_TAKEN, "{reason}");
    assert!(reason.contains("taken"), "{reason}");

    // A raw-text guest on server b is in the same room.
    let mut carol = TextGuest::connect(b.addr);
    carol.write(b"/name carol\r\n");
    assert_eq!(
        carol.expect("in the room"),
        "* in the room: alice, bob, carol"
    );
    carol.write(b"hi all\r\n");
    message_seq(&mut alice, "carol", "hi all");

    // Server a dies: within the lease (2 s) and a heartbeat, the others
    // hear alice leave with SERVER_GONE, and her name is free again.
    let killed = Instant::now();
    a.kill9();
    let code = wait_frame(&mut bob, "alice leaving", |f| match f {
        Frame::Left { name, code, .. } if name == "alice" => Some(*code),
        _ => None,
    });
    assert_eq!(code, Code::SERVER_GONE);
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "alice was announced gone after {took:?}"
    );
    assert_eq!(carol.expect("alice left"), "* alice left (server gone)");
    let again = Raw::join(b.addr, "alice", "");
    drop(again);
    assert!(b.terminate().success());
}

#[test]
fn room_history_in_redis_reaches_a_late_joiner_on_another_server() {
    let redis = RedisServer::start();
    let (inbox_a, inbox_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let history = ["--history", "3"];
    let mut a = cluster_server_with(inbox_a.path(), &redis.url(), "mio", &history);
    let mut b = cluster_server_with(inbox_b.path(), &redis.url(), "std", &history);
    a.expect(&["room history of 3 messages"]);

    let mut alice = Raw::join(a.addr, "alice", "");
    for text in ["one", "two", "three", "four"] {
        alice.send(&Frame::Say { text: text.into() }).unwrap();
        message_seq(&mut alice, "alice", text);
    }
    let mut bob = Raw::connect(b.addr);
    bob.hello("bob", "", b"");
    let mut history = Vec::new();
    let members = wait_frame(&mut bob, "bob's MEMBERS", |f| match f {
        Frame::History {
            time_ms,
            from,
            text,
        } => {
            history.push((*time_ms, from.to_string(), text.to_string()));
            None
        }
        Frame::Members { names } => Some(names.clone()),
        _ => None,
    });
    assert_eq!(members, vec!["alice", "bob"]);
    let texts: Vec<&str> = history.iter().map(|(_, _, t)| t.as_str()).collect();
    assert_eq!(
        texts,
        ["two", "three", "four"],
        "the last three, oldest first"
    );
    assert!(history.iter().all(|(_, from, _)| from == "alice"));
    // Stamped by Redis' clock: within a minute of this machine's.
    let now_ms = ferry_files::unix_ms_now();
    assert!(
        history.iter().all(|(t, _, _)| t.abs_diff(now_ms) < 60_000),
        "{history:?} vs {now_ms}"
    );

    // `ferry chat` shows it apart from live messages.
    let mut carol = Proc::spawn(&["chat", &b.addr(), "--name", "carol", "--no-tls"]);
    let line = carol.expect(&["<alice> four"]);
    assert!(
        line.contains("(earlier, ") && line.contains(" UTC)"),
        "{line}"
    );
    carol.expect(&["you are carol"]);
    drop(carol);
    drop(bob);
    drop(alice);
    assert!(a.terminate().success());
    assert!(b.terminate().success());
}

#[test]
fn one_room_across_every_runtime() {
    let redis = RedisServer::start();
    let runtimes = ["mio", "smol", "std", "tokio"];
    let inboxes: Vec<_> = runtimes
        .iter()
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let mut servers: Vec<Serve> = runtimes
        .iter()
        .zip(&inboxes)
        .map(|(runtime, inbox)| cluster_server_on(inbox.path(), &redis.url(), runtime))
        .collect();
    let mut members: Vec<Raw> = runtimes
        .iter()
        .zip(&servers)
        .map(|(runtime, server)| Raw::join(server.addr, &format!("on-{runtime}"), ""))
        .collect();
    for (k, runtime) in runtimes.iter().enumerate() {
        members[k]
            .send(&Frame::Say {
                text: format!("hello from {runtime}").into(),
            })
            .unwrap();
    }
    // Every member hears every runtime's member, each message with one seq
    // everywhere.
    let mut seen: Vec<Vec<(u64, String)>> = Vec::new();
    for (k, member) in members.iter_mut().enumerate() {
        let mut heard = Vec::new();
        while heard.len() < runtimes.len() {
            heard.push(wait_frame(member, "every hello", |f| match f {
                Frame::Message { seq, text, .. } if text.starts_with("hello from") => {
                    Some((*seq, text.to_string()))
                }
                _ => None,
            }));
        }
        heard.sort();
        assert!(
            heard.windows(2).all(|w| w[0].0 < w[1].0),
            "{}: {heard:?}",
            runtimes[k]
        );
        seen.push(heard);
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
    // The smol server dies: the others announce its member gone.
    servers[1].kill9();
    for k in [0, 2, 3] {
        let code = wait_frame(&mut members[k], "on-smol leaving", |f| match f {
            Frame::Left { name, code, .. } if name == "on-smol" => Some(*code),
            _ => None,
        });
        assert_eq!(code, Code::SERVER_GONE, "{}", runtimes[k]);
    }
    for k in [0, 2, 3] {
        assert!(servers[k].terminate().success(), "{}", runtimes[k]);
    }
}

#[test]
fn redis_killed_and_restarted_empty_the_servers_carry_on() {
    let mut redis = RedisServer::start();
    let port = redis.port;
    let (inbox_a, inbox_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = cluster_server(inbox_a.path(), &redis.url());
    let mut b = cluster_server(inbox_b.path(), &redis.url());
    let mut alice = Raw::join(a.addr, "alice", "");
    let mut bob = Raw::join(b.addr, "bob", "");
    alice
        .send(&Frame::Say {
            text: "before".into(),
        })
        .unwrap();
    let before = message_seq(&mut bob, "alice", "before");

    redis.kill9();
    // Messages while Redis is away: refused at once, never lost in
    // silence (the one in flight when the link fails is sent again later).
    let deadline = Instant::now() + WAIT;
    let mut said = 0;
    let bounced = loop {
        assert!(
            Instant::now() < deadline,
            "no message was refused while Redis was away"
        );
        said += 1;
        alice
            .send(&Frame::Say {
                text: format!("during {said}").into(),
            })
            .unwrap();
        match alice.recv(Duration::from_millis(200)) {
            Ok(Frame::Bounce { code, reason }) => break (code, reason.to_string()),
            _ => continue,
        }
    };
    assert_eq!(bounced.0, Code::CLUSTER_UNAVAILABLE, "{}", bounced.1);
    a.expect(&["cluster: Redis cannot be reached"]);
    // bob, who said nothing, hears of it from his server.
    let server_says = |raw: &mut Raw, what: &str| {
        wait_frame(raw, what, |f| match f {
            Frame::DirectFrom { from, text } if from.is_empty() && text.contains(what) => Some(()),
            _ => None,
        })
    };
    server_says(&mut bob, "cannot reach the rest of the cluster");

    // Redis comes back empty: both servers notice, claim their members'
    // names again and tell them who is there.
    let _redis = RedisServer::start_on(port);
    server_says(&mut bob, "the cluster is back");
    // (Messages retried from before, for a member not back yet, bounce.)
    for (raw, who) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        let mut view: Option<Vec<String>> = None;
        while view.as_ref().map(|v| v.len()) != Some(2) {
            wait_frame(raw, "the room anew", |f| {
                match f {
                    Frame::Members { names } => {
                        view = Some(names.iter().map(|n| n.to_string()).collect())
                    }
                    Frame::Joined { name, .. } => {
                        if let Some(v) = view.as_mut() {
                            v.push(name.to_string());
                        }
                    }
                    _ => return None,
                }
                Some(())
            });
        }
        let mut names = view.unwrap();
        names.sort();
        assert_eq!(names, ["alice", "bob"], "{who}");
    }
    a.expect(&["cluster: Redis is back but restarted empty"]);
    // Delivery resumes, numbered past everything said before.
    alice
        .send(&Frame::Say {
            text: "after".into(),
        })
        .unwrap();
    let after = message_seq(&mut bob, "alice", "after");
    assert!(after > before, "{after} after {before}");
    // Nothing arrives twice, and alice's name is still hers.
    bob.send(&Frame::Say {
        text: "bob after".into(),
    })
    .unwrap();
    message_seq(&mut bob, "bob", "bob after");
    let mut twin = Raw::connect(b.addr);
    twin.hello("alice", "", b"");
    let code = wait_frame(&mut twin, "the REFUSE", |f| match f {
        Frame::Refuse { code, .. } => Some(*code),
        _ => None,
    });
    assert_eq!(code, Code::NAME_TAKEN);
    assert!(a.terminate().success());
    assert!(b.terminate().success());
}

#[test]
fn a_server_paused_past_its_lease_tells_its_clients_to_come_back() {
    let redis = RedisServer::start();
    let (inbox_a, inbox_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = cluster_server(inbox_a.path(), &redis.url());
    let b = cluster_server(inbox_b.path(), &redis.url());
    let mut alice = Raw::join(a.addr, "alice", "");
    let mut bob = Raw::join(b.addr, "bob", "");
    let signal = |sig: &str| {
        let status = std::process::Command::new("kill")
            .args([sig, &a.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal("-STOP");
    let code = wait_frame(&mut bob, "alice leaving", |f| match f {
        Frame::Left { name, code, .. } if name == "alice" => Some(*code),
        _ => None,
    });
    assert_eq!(code, Code::SERVER_GONE);
    signal("-CONT");
    // Awake, server a learns it was taken for gone and closes alice, who
    // can come back at once.
    let code = wait_frame(&mut alice, "alice's ERROR", |f| match f {
        Frame::Error { code, .. } => Some(*code),
        _ => None,
    });
    assert_eq!(code, Code::SERVER_GONE);
    a.expect(&["cluster: this server missed its lease"]);
    drop(alice);
    let _alice = Raw::join(a.addr, "alice", "");
    wait_frame(&mut bob, "alice back", |f| match f {
        Frame::Joined { name, .. } if name == "alice" => Some(()),
        _ => None,
    });
    assert!(a.terminate().success());
}

#[test]
fn an_address_spread_over_two_servers_gets_one_allowance() {
    let redis = RedisServer::start();
    let (inbox_a, inbox_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let limit = ["--max-per-ip", "2"];
    let a = cluster_server_with(inbox_a.path(), &redis.url(), "mio", &limit);
    let b = cluster_server_with(inbox_b.path(), &redis.url(), "smol", &limit);
    // Every client of this test comes from 127.0.0.1: two members on
    // server a use its allowance, which server b counts too.
    let mut alice = Raw::join(a.addr, "alice", "");
    let mut bob = Raw::join(a.addr, "bob", "");
    let refused = |name: &str| {
        let mut raw = Raw::connect(b.addr);
        raw.hello(name, "", b"");
        wait_frame(&mut raw, "the REFUSE", |f| match f {
            Frame::Refuse { code, reason } => Some((*code, reason.to_string())),
            Frame::Welcome { .. } => Some((Code::UNSPECIFIED, "welcomed".to_string())),
            _ => None,
        })
    };
    let (code, reason) = refused("carol");
    assert_eq!(code, Code::SERVER_FULL, "{reason}");
    assert!(
        reason.contains("2 connections across this cluster's servers"),
        "{reason}"
    );
    // alice leaves: her place is free on every server.
    alice.send(&Frame::Bye).unwrap();
    wait_frame(&mut bob, "alice leaving", |f| match f {
        Frame::Left { name, .. } if name == "alice" => Some(()),
        _ => None,
    });
    let mut carol = Raw::connect(b.addr);
    carol.hello("carol", "", b"");
    wait_frame(&mut carol, "carol's WELCOME", |f| match f {
        Frame::Welcome { .. } => Some(()),
        Frame::Refuse { reason, .. } => panic!("carol refused: {reason}"),
        _ => None,
    });
}

/// A file sent from alice, through a slowed link to her server, to bob on
/// another server, who takes files into a folder of his own.
struct CrossFile {
    name: &'static str,
    _files: tempfile::TempDir,
    received: tempfile::TempDir,
    src: std::path::PathBuf,
    /// Between alice and her server: about 25 MiB/s, so that she or a
    /// server can be killed partway. Both her runs go through it (her
    /// resume keys are kept per server address).
    _proxy: common::Proxy,
    send: Vec<String>,
}

impl CrossFile {
    /// `size` bytes named `name`, sent to the member of alice's server at
    /// `alice_server`.
    fn new(name: &'static str, size: usize, seed: u64, alice_server: std::net::SocketAddr) -> Self {
        let files = tempfile::tempdir().unwrap();
        let src = files.path().join(name);
        std::fs::write(&src, common::contents(size, seed)).unwrap();
        let proxy = common::Proxy::start(
            alice_server,
            common::ProxyMode {
                chunk: Some(256 * 1024),
                pause: Duration::from_millis(10),
                ..common::ProxyMode::default()
            },
        );
        let send = [
            "send",
            "--no-tls",
            &proxy.addr(),
            src.to_str().unwrap(),
            "--to",
            "bob",
            "--name",
            "alice",
        ]
        .map(String::from)
        .to_vec();
        CrossFile {
            name,
            _files: files,
            received: tempfile::tempdir().unwrap(),
            src,
            _proxy: proxy,
            send,
        }
    }

    fn send_args(&self) -> Vec<&str> {
        self.send.iter().map(String::as_str).collect()
    }

    /// bob, on `server`, taking files.
    fn bob_on(&self, server: &Serve) -> Proc {
        let mut bob = Proc::spawn(&[
            "chat",
            "--no-tls",
            &server.addr(),
            "--name",
            "bob",
            "--accept-files",
            self.received.path().to_str().unwrap(),
        ]);
        bob.expect(&["you are bob"]);
        bob
    }

    /// Waits until bob holds 8 MiB of the file, not yet under its name.
    fn wait_partway(&self) {
        common::wait_until("bob's partial file to grow past 8 MiB", || {
            common::the_partial_in(self.received.path()).filter(|(_, len)| *len >= 8 << 20)
        });
    }

    fn final_name(&self) -> std::path::PathBuf {
        self.received.path().join(self.name)
    }

    /// alice sends again: bob resumes past the 8 MiB he held, and the file
    /// arrives whole and verified, with nothing partial left.
    fn resend_and_expect_resumed(&self, bob: &mut Proc) {
        let (ok, out, err) = common::run(&self.send_args(), &[]);
        let resuming = bob.expect(&[&format!("resuming {}", self.name), "from alice at "]);
        assert!(ok, "{out}{err}");
        let at: u64 = resuming.rsplit(" at ").next().unwrap().parse().unwrap();
        assert!(at >= 8 << 20, "{resuming}");
        bob.expect(&["saved", self.name]);
        assert_eq!(
            common::hash_file(&self.final_name()),
            common::hash_file(&self.src)
        );
        assert!(common::partials_in(self.received.path()).is_empty());
    }
}

/// A 64 MiB file from a member of one server to a member of another goes
/// over the servers' direct link (never through Redis), arrives verified,
/// and resumes where the recipient stopped after the sender is killed.
#[test]
fn a_file_between_members_on_two_servers_arrives_verified_and_resumes() {
    let redis = RedisServer::start();
    let (inbox_a, inbox_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = cluster_server_on(inbox_a.path(), &redis.url(), "mio");
    let mut b = cluster_server_on(inbox_b.path(), &redis.url(), "std");
    let file = CrossFile::new("film.raw", 64 << 20, 17, a.addr);

    let mut bob = file.bob_on(&b);
    let mut alice = Proc::spawn(&file.send_args());
    file.wait_partway();
    a.expect(&[
        "relaying \"film.raw\" (64.0 MiB) from \"alice\" (",
        "to \"bob\" on server",
    ]);
    b.expect(&[
        "relaying \"film.raw\" (64.0 MiB) from \"alice\" on server",
        "to \"bob\" (",
    ]);
    alice.kill9();
    a.expect(&["\"alice\" (", "left"]);
    assert!(
        !file.final_name().exists(),
        "a partial file under its final name"
    );
    // bob's server passed on why, and bob keeps what he has.
    bob.expect(&["cancelled by the peer", "alice's connection was lost"]);
    bob.expect(&["kept film.raw", "for a resume"]);

    file.resend_and_expect_resumed(&mut bob);
    // Nothing of the file went through Redis: its memory stays far below
    // the file's size.
    let used = redis.used_memory();
    assert!(used < 16 << 20, "Redis holds {used} bytes");
    drop(bob);
    assert!(a.terminate().success());
    assert!(b.terminate().success());
}

/// The recipient's server killed (`kill -9`) in the middle of a file
/// between two servers: the sender is told at once, the recipient joins
/// another server once the dead one's lease ran out, and the file
/// resumes there where the recipient stopped.
#[test]
fn a_file_between_servers_resumes_after_the_recipients_server_is_killed() {
    let redis = RedisServer::start();
    let inboxes = [(); 3].map(|_| tempfile::tempdir().unwrap());
    let mut a = cluster_server_on(inboxes[0].path(), &redis.url(), "mio");
    let mut b = cluster_server_on(inboxes[1].path(), &redis.url(), "smol");
    let c = cluster_server_on(inboxes[2].path(), &redis.url(), "std");
    let file = CrossFile::new("album.raw", 48 << 20, 23, a.addr);

    let bob = file.bob_on(&b);
    // Someone on a who sees the room.
    let mut carol = Raw::join(a.addr, "carol", "");
    let alice = Proc::spawn(&file.send_args());
    file.wait_partway();
    b.kill9();
    // alice's server loses its link to bob's: she is told at once, not
    // after the lease.
    let (ok, _, err) = alice.finish();
    assert!(!ok, "the send cannot have succeeded");
    assert!(
        err.contains("link to the other member's server was lost"),
        "{err}"
    );
    assert!(!file.final_name().exists());
    drop(bob);

    a.expect(&["relay from \"alice\"", "peer gone"]);
    a.expect(&["cluster: the direct link with server", "is gone"]);
    // bob's name is free once b's lease ran out; he joins c.
    wait_frame(&mut carol, "bob leaving with his server", |f| match f {
        Frame::Left { name, code, .. } if name == "bob" => Some(*code),
        _ => None,
    });
    let mut bob = file.bob_on(&c);
    file.resend_and_expect_resumed(&mut bob);
    drop(bob);
    assert!(a.terminate().success());
}

/// Every file under `root`, by its path from `root`, with its BLAKE3 hash.
fn files_under(root: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    let mut found = std::collections::BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let name = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                found.insert(name, common::hash_file(&path));
            }
        }
    }
    found
}

/// `ferry send DIR --to bob` from a member of one server to a member of
/// another: the folder crosses the servers' direct link and arrives whole
/// in bob's folder, every file verified; nothing lands in either server's
/// inbox.
#[test]
fn a_folder_between_members_on_two_servers_arrives_whole() {
    use std::io::Write;
    let redis = RedisServer::start();
    let (inbox_a, inbox_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = cluster_server_on(inbox_a.path(), &redis.url(), "smol");
    let b = cluster_server_on(inbox_b.path(), &redis.url(), "tokio");
    let source = tempfile::tempdir().unwrap();
    let root = source.path().join("album");
    std::fs::create_dir_all(root.join("tracks/empty")).unwrap();
    std::fs::write(root.join("cover.raw"), common::contents(5 << 20, 3)).unwrap();
    std::fs::write(root.join("notes"), b"").unwrap();
    for n in 0..200 {
        let bytes = common::contents(100 + n * 37, n as u64);
        std::fs::write(root.join(format!("tracks/{n:03}.txt")), bytes).unwrap();
    }
    let received = tempfile::tempdir().unwrap();
    let mut bob = Proc::spawn(&[
        "chat",
        "--no-tls",
        &b.addr(),
        "--name",
        "bob",
        "--accept-files",
        received.path().to_str().unwrap(),
    ]);
    bob.expect(&["you are bob"]);
    // His own line echoed back: his server has read that he takes folders.
    writeln!(bob.child.stdin.as_mut().unwrap(), "ready").unwrap();
    bob.expect(&["<bob> ready"]);
    let (ok, out, err) = common::run(
        &[
            "send",
            "--no-tls",
            &a.addr(),
            root.to_str().unwrap(),
            "--to",
            "bob",
            "--name",
            "alice",
        ],
        &[],
    );
    assert!(ok, "{out}{err}");
    bob.expect(&["saved", "album"]);
    assert_eq!(
        files_under(&received.path().join("album")),
        files_under(&root)
    );
    assert!(received.path().join("album/tracks/empty").is_dir());
    for inbox in [&inbox_a, &inbox_b] {
        assert!(common::stored_in(inbox.path()).is_empty());
    }
    drop(bob);
}

/// A folder's manifest entries are charged to its sender's address across
/// the cluster: with a budget of 5 entries (refilled at 1 a second), a
/// folder of 20 files into server a's inbox spends it, and the same
/// address's folder into server b's inbox is refused, though b's own
/// budget for it is untouched.
#[test]
fn an_address_spread_over_two_servers_shares_one_folder_budget() {
    let redis = RedisServer::start();
    let (inbox_a, inbox_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let budget = [
        "--source-tree-entries-burst",
        "5",
        "--source-tree-entries-rate",
        "1",
    ];
    let a = cluster_server_with(inbox_a.path(), &redis.url(), "mio", &budget);
    let b = cluster_server_with(inbox_b.path(), &redis.url(), "std", &budget);
    let source = tempfile::tempdir().unwrap();
    let root = source.path().join("notes");
    std::fs::create_dir_all(&root).unwrap();
    for n in 0..20 {
        std::fs::write(root.join(format!("{n:02}.txt")), format!("note {n}\n")).unwrap();
    }
    let send_to = |server: &Serve| {
        common::run(
            &[
                "send",
                "--no-tls",
                &server.addr(),
                root.to_str().unwrap(),
                "--name",
                "alice",
            ],
            &[],
        )
    };
    let (ok, out, err) = send_to(&a);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = send_to(&b);
    assert!(!ok, "the second folder went: {out}");
    assert!(err.contains("cluster's folder budget"), "{err}");
    assert!(!inbox_b.path().join("notes").exists());
}

/// A folder between members on two servers, its sender killed partway:
/// bob keeps what arrived, and the same command run again sends only what
/// he lacks (his `TREE_HELD` crosses back over the servers' link), the
/// folder arriving whole.
#[test]
fn a_folder_between_servers_resumes_after_the_sender_is_killed() {
    use std::io::Write;
    use std::sync::atomic::Ordering;
    let redis = RedisServer::start();
    let (inbox_a, inbox_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = cluster_server_on(inbox_a.path(), &redis.url(), "mio");
    let b = cluster_server_on(inbox_b.path(), &redis.url(), "smol");
    let source = tempfile::tempdir().unwrap();
    let root = source.path().join("scans");
    std::fs::create_dir_all(&root).unwrap();
    let mut total = 0;
    for n in 0..16u64 {
        let data = common::contents(2 << 20, n);
        total += data.len() as u64;
        std::fs::write(root.join(format!("page{n:02}.raw")), data).unwrap();
    }
    // About 25 MiB/s between alice and her server.
    let proxy = common::Proxy::start(
        a.addr,
        common::ProxyMode {
            chunk: Some(256 * 1024),
            pause: Duration::from_millis(10),
            ..common::ProxyMode::default()
        },
    );
    let received = tempfile::tempdir().unwrap();
    let mut bob = Proc::spawn(&[
        "chat",
        "--no-tls",
        &b.addr(),
        "--name",
        "bob",
        "--accept-files",
        received.path().to_str().unwrap(),
    ]);
    bob.expect(&["you are bob"]);
    writeln!(bob.child.stdin.as_mut().unwrap(), "ready").unwrap();
    bob.expect(&["<bob> ready"]);
    let args = [
        "send",
        "--no-tls",
        &proxy.addr(),
        root.to_str().unwrap(),
        "--to",
        "bob",
        "--name",
        "alice",
    ];
    let mut alice = Proc::spawn(&args);
    let staged = common::wait_until("bob to hold 8 MiB of the folder", || {
        let staged = common::staged_tree_bytes(received.path());
        (staged >= 8 << 20).then_some(staged)
    });
    alice.kill9();
    assert!(!received.path().join("scans").exists());
    bob.expect(&["alice's connection was lost"]);
    let carried_before = proxy.carried.load(Ordering::SeqCst);
    let (ok, out, err) = common::run(&args, &[]);
    assert!(ok, "{out}{err}");
    bob.expect(&["saved", "scans"]);
    assert_eq!(
        files_under(&received.path().join("scans")),
        files_under(&root)
    );
    let carried = proxy.carried.load(Ordering::SeqCst) - carried_before;
    // What bob held did not cross again (the manifest and frame heads
    // are well under 1 MiB).
    assert!(
        carried < total - staged + (1 << 20),
        "{carried} bytes crossed; bob held {staged} of {total}"
    );
    assert_eq!(common::staged_tree_bytes(received.path()), 0);
    drop(bob);
}

/// Wrong tokens from one address on two servers count toward one ban:
/// with 4 allowed, 2 on each server ban it, on the server of the fourth at
/// once and on the other at its next guess, where each alone would have
/// let it guess on. Even the right token is turned away then.
#[test]
fn an_address_guessing_tokens_on_two_servers_is_banned_once_for_both() {
    let redis = RedisServer::start();
    let (inbox_a, inbox_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let auth = ["--token", "sesame", "--auth-ban-after", "4"];
    let mut a = cluster_server_with(inbox_a.path(), &redis.url(), "mio", &auth);
    let mut b = cluster_server_with(inbox_b.path(), &redis.url(), "smol", &auth);
    let answer = |server: &Serve, token: &[u8]| {
        let mut raw = Raw::connect(server.addr);
        raw.hello("mallory", "", token);
        raw.expect_end()
    };
    for server in [&a, &b, &a, &b] {
        let (code, reason) = answer(server, b"guess");
        assert_eq!(code, Code::AUTH_FAILED, "{reason}");
        assert!(reason.contains("wrong or missing token"), "{reason}");
    }
    // The fourth, on b, banned the address there, and a heard of it from
    // the broker: the right token is turned away on both, with no further
    // guess on a.
    b.expect(&["banned for", "after 4 wrong tokens"]);
    a.expect(&["banned for", "after 4 wrong tokens"]);
    for server in [&b, &a] {
        let (code, reason) = answer(server, b"sesame");
        assert_eq!(code, Code::AUTH_FAILED, "{reason}");
        assert!(reason.contains("too many wrong tokens"), "{reason}");
    }
}
