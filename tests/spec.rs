//! The server does what `docs/PROTOCOL.md` says where an independent
//! implementation found the two disagreeing (issue 14), on every runtime.

mod common;

use bytes::Bytes;
use common::{Raw, Serve, WAIT};
use ferry_core::frame::Frame;
use ferry_core::{Code, ResumeKey};

const RUNTIMES: [&str; 4] = ["mio", "smol", "std", "tokio"];

fn offer(id: u32, size: u64, to: &str) -> Frame {
    Frame::Offer {
        id,
        size,
        name: "f.bin".into(),
        peer: to.into(),
    }
}

/// The first frame `pick` takes, skipping others.
fn find<T>(raw: &mut Raw, what: &str, mut pick: impl FnMut(&Frame) -> Option<T>) -> T {
    loop {
        match raw.recv(WAIT) {
            Ok(frame) => {
                if let Some(found) = pick(&frame) {
                    return found;
                }
            }
            Err(e) => panic!("{what} never came: {e:?}"),
        }
    }
}

/// Offers a 10,000-byte file to the inbox on `raw` as transfer 0 and sends
/// its first 4096 bytes (all `fill`); returns the resume key the inbox
/// handed out.
fn start_upload(raw: &mut Raw, fill: u8) -> ResumeKey {
    raw.send(&offer(0, 10_000, "")).unwrap();
    let key = find(raw, "the key", |f| match f {
        Frame::ResumeKey { id: 0, key } => Some(*key),
        _ => None,
    });
    find(raw, "the accept", |f| {
        matches!(f, Frame::Accept { id: 0, .. }).then_some(())
    });
    let data = Frame::Data {
        id: 0,
        offset: 0,
        data: Bytes::from(vec![fill; 4096]),
    };
    raw.send(&data).unwrap();
    key
}

/// Offers the upload again with `key` (`RESUME` then `OFFER`, ids from
/// `id` up in steps of 2) until it is accepted, as §6.10.9 says to when
/// told `TRY_AGAIN` (the only refusal allowed); returns the offset.
fn resume_until_accepted(raw: &mut Raw, key: ResumeKey, mut id: u32, runtime: &str) -> u64 {
    common::wait_until("the resume", || {
        raw.send(&Frame::Resume { id, key }).unwrap();
        raw.send(&offer(id, 10_000, "")).unwrap();
        let answer = find(raw, "the answer", |f| match f {
            Frame::Reject { id: got, code, .. } if *got == id => Some(Err(*code)),
            Frame::Accept {
                id: got, offset, ..
            } if *got == id => Some(Ok(*offset)),
            _ => None,
        });
        id += 2;
        match answer {
            Ok(offset) => Some(offset),
            Err(code) => {
                assert_eq!(code, Code::TRY_AGAIN, "{runtime}");
                std::thread::sleep(std::time::Duration::from_millis(20));
                None
            }
        }
    })
}

/// §6.10.1: a frame from the wrong party of a transfer is
/// `UNEXPECTED_FRAME`; `UNKNOWN_TRANSFER` is for ids never offered.
#[test]
fn a_frame_from_the_wrong_party_is_unexpected_not_unknown() {
    for runtime in RUNTIMES {
        let inbox = tempfile::tempdir().unwrap();
        let server = Serve::start(inbox.path(), &["--runtime", runtime]);
        // An uploader sends its receiver's frame about its own upload.
        let mut alice = Raw::join(server.addr, "alice", "");
        alice.send(&offer(0, 10_000, "")).unwrap();
        find(&mut alice, "the accept", |f| {
            matches!(f, Frame::Accept { id: 0, .. }).then_some(())
        });
        let credit = Frame::Credit { id: 0, written: 1 };
        alice.send(&credit).unwrap();
        let (code, reason) = alice.expect_end();
        assert_eq!(code, Code::UNEXPECTED_FRAME, "{runtime}: {reason}");
        assert!(reason.contains("from its sender"), "{runtime}: {reason}");

        // A relay's recipient sends DATA about the server's offer to it.
        let mut bob = Raw::join(server.addr, "bob", "");
        let mut carol = Raw::join(server.addr, "carol", "");
        carol.send(&offer(0, 10_000, "bob")).unwrap();
        let id = find(&mut bob, "the relayed offer", |f| match f {
            Frame::Offer { id, .. } => Some(*id),
            _ => None,
        });
        let data = Frame::Data {
            id,
            offset: 0,
            data: Bytes::from_static(b"x"),
        };
        bob.send(&data).unwrap();
        let (code, reason) = bob.expect_end();
        assert_eq!(code, Code::UNEXPECTED_FRAME, "{runtime}: {reason}");
        assert!(reason.contains("from its receiver"), "{runtime}: {reason}");

        // An id nobody offered: unknown.
        let mut dave = Raw::join(server.addr, "dave", "");
        dave.send(&Frame::Credit { id: 7, written: 1 }).unwrap();
        let (code, reason) = dave.expect_end();
        assert_eq!(code, Code::UNKNOWN_TRANSFER, "{runtime}: {reason}");
    }
}

/// §6.10.5: a `CREDIT` beyond the bytes received is `UNEXPECTED_FRAME` for
/// a relay's recipient too, and the sender is told what happened, not only
/// that its peer is gone.
#[test]
fn a_relay_recipient_crediting_bytes_never_sent_is_dropped_and_the_sender_told_why() {
    for runtime in RUNTIMES {
        let inbox = tempfile::tempdir().unwrap();
        let server = Serve::start(inbox.path(), &["--runtime", runtime]);
        let mut bob = Raw::join(server.addr, "bob", "");
        let mut alice = Raw::join(server.addr, "alice", "");
        alice.send(&offer(0, 100_000, "bob")).unwrap();
        let id = find(&mut bob, "the relayed offer", |f| match f {
            Frame::Offer { id, .. } => Some(*id),
            _ => None,
        });
        let accept = Frame::Accept {
            id,
            offset: 0,
            window: 1 << 20,
            prefix_hash: ferry_core::transfer::empty_hash(),
        };
        bob.send(&accept).unwrap();
        find(&mut alice, "the accept", |f| {
            matches!(f, Frame::Accept { id: 0, .. }).then_some(())
        });
        // Nothing was sent; bob claims 50,000 bytes stored.
        bob.send(&Frame::Credit {
            id,
            written: 50_000,
        })
        .unwrap();
        let (code, reason) = bob.expect_end();
        assert_eq!(code, Code::UNEXPECTED_FRAME, "{runtime}: {reason}");
        assert!(reason.contains("bytes sent"), "{runtime}: {reason}");
        let (code, reason) = find(&mut alice, "the cancel", |f| match f {
            Frame::Cancel {
                id: 0,
                code,
                reason,
            } => Some((*code, reason.to_string())),
            _ => None,
        });
        assert_eq!(code, Code::PEER_GONE, "{runtime}");
        assert!(
            reason.contains("bob was disconnected by the server")
                && reason.contains("unexpected frame"),
            "{runtime}: {reason}"
        );
    }
}

/// §4.2: `WELCOME` names the room as its creator spelled it.
#[test]
fn welcome_names_the_room_as_it_was_created() {
    for runtime in RUNTIMES {
        let inbox = tempfile::tempdir().unwrap();
        let server = Serve::start(inbox.path(), &["--runtime", runtime]);
        let _alice = Raw::join(server.addr, "alice", "Spec-Room");
        let mut bob = Raw::connect(server.addr);
        bob.hello("bob", "spec-room", b"");
        match bob.recv(WAIT) {
            Ok(Frame::Welcome { room, .. }) => assert_eq!(room, "Spec-Room", "{runtime}"),
            other => panic!("{runtime}: {other:?}"),
        }
    }
}

/// `ferry serve --addr-file FILE` writes the address it listens on, whole,
/// once it listens; and its first line says the same address as its fifth
/// word, after the time (the documented form scripts may rely on).
#[test]
fn serve_tells_scripts_its_address() {
    let inbox = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("addr");
    let file_arg = file.to_str().unwrap();
    let mut server = Serve::start(inbox.path(), &["--addr-file", file_arg]);
    let written = common::wait_until("the address file", || std::fs::read_to_string(&file).ok());
    assert!(written.ends_with('\n'), "{written:?}");
    let addr: std::net::SocketAddr = written.trim_end().parse().unwrap();
    assert_eq!(addr, server.addr);
    let first = server.expect(&["ferry serving on"]);
    let fifth = first.split_whitespace().nth(4).unwrap();
    assert_eq!(fifth, addr.to_string(), "{first}");
    // Nothing else was left beside it.
    assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 1);
    Raw::join(addr, "alice", "");
}

/// §6.10.9: a resume racing the earlier attempt, still open on a connection
/// the server does not know is gone, is told to try again (`TRY_AGAIN`),
/// not that the file was declined; once that connection is gone, the same
/// offer resumes.
#[test]
fn a_resume_racing_its_earlier_attempt_is_told_to_try_again() {
    for runtime in RUNTIMES {
        let inbox = tempfile::tempdir().unwrap();
        let server = Serve::start(inbox.path(), &["--runtime", runtime]);
        let mut old = Raw::join(server.addr, "alice", "");
        let key = start_upload(&mut old, 1);
        // The link "drops" silently: the old connection is still open.
        let mut new = Raw::join(server.addr, "alice2", "");
        new.send(&Frame::Resume { id: 0, key }).unwrap();
        new.send(&offer(0, 10_000, "")).unwrap();
        let code = find(&mut new, "the answer", |f| match f {
            Frame::Reject { id: 0, code, .. } => Some(*code),
            Frame::Accept { id: 0, .. } => panic!("{runtime}: resumed beside the old attempt"),
            _ => None,
        });
        assert_eq!(code, Code::TRY_AGAIN, "{runtime}");
        // Once the old connection is gone, the same offer resumes. The
        // server may not have seen it go yet: as told, offer again a little
        // later, with a fresh id each time.
        old.close();
        let offset = resume_until_accepted(&mut new, key, 2, runtime);
        assert_eq!(offset, 4096, "{runtime}");
    }
}

/// §6.11: a client whose link died without a word comes back with the
/// secret of its `SESSION` and gets its name at once (not `NAME_TAKEN` for
/// the 30 s of the idle timeout); the room sees it leave `REPLACED` and
/// join again; its upload resumes on the new connection without waiting
/// for the old one to time out.
#[test]
fn a_client_that_lost_its_link_takes_its_name_and_its_upload_back_at_once() {
    for runtime in RUNTIMES {
        let inbox = tempfile::tempdir().unwrap();
        let server = Serve::start(inbox.path(), &["--runtime", runtime]);
        let (mut old, secret) = Raw::join_session(server.addr, "alice", "", None);
        let secret = secret.unwrap_or_else(|| panic!("{runtime}: no SESSION after WELCOME"));
        let mut bob = Raw::join(server.addr, "bob", "");
        let key = start_upload(&mut old, 7);
        common::wait_until("the data stored", || {
            common::the_partial_in(inbox.path()).filter(|(_, len)| *len == 4096)
        });

        // The link dies silently (the old socket stays open); the client
        // comes back at once with its secret.
        let started = std::time::Instant::now();
        let (mut new, next) = Raw::join_session(server.addr, "alice", "", Some(secret));
        assert!(next.is_some_and(|next| next != secret), "{runtime}");
        let (code, reason) = old.expect_end();
        assert_eq!(code, Code::REPLACED, "{runtime}: {reason}");
        let left = find(&mut bob, "alice leaving", |f| match f {
            Frame::Left { name, code, .. } if name == "alice" => Some(*code),
            Frame::Joined { name, .. } if name == "alice" => {
                panic!("{runtime}: alice joined again before she left")
            }
            _ => None,
        });
        assert_eq!(left, Code::REPLACED, "{runtime}");
        find(&mut bob, "alice back", |f| {
            matches!(f, Frame::Joined { name, .. } if name == "alice").then_some(())
        });

        // The upload resumes where the old connection stopped. The inbox may
        // still be storing the old connection's last writes for a moment
        // (TRY_AGAIN), never for the idle timeout's 30 s.
        let offset = resume_until_accepted(&mut new, key, 0, runtime);
        assert_eq!(offset, 4096, "{runtime}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{runtime}: took {:?}, as if waiting for the idle timeout",
            started.elapsed()
        );

        // A stale secret (this one was used up) is ignored: the name is
        // taken, as without RECLAIM.
        let mut again = Raw::connect(server.addr);
        again.hello_reclaiming("alice", "", secret);
        let refused = find(&mut again, "the refusal", |f| match f {
            Frame::Refuse { code, .. } => Some(*code),
            _ => None,
        });
        assert_eq!(refused, Code::NAME_TAKEN, "{runtime}");
    }
}
