//! Files belong to whoever sent them, on every runtime: another user's
//! offer of the same name and size neither resumes, reveals nor touches an
//! upload; stored files named like partial files are never taken for one;
//! links planted in the inbox are never followed; the quota is exact
//! whatever the case of names; and a chat receiver takes only what it
//! allows.

mod common;

use bytes::Bytes;
use common::{partials_in, stored_in, Proc, Raw, Serve, WAIT};
use ferry_core::frame::{Frame, Hash, MIN_DATA};
use ferry_core::transfer::empty_hash;
use ferry_core::{Code, ResumeKey};
use std::fs;
use std::os::unix::fs::symlink;

const RUNTIMES: [&str; 4] = ["mio", "smol", "std", "tokio"];

/// What an `ACCEPT` said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Accepted {
    offset: u64,
    prefix_hash: Hash,
    window: u32,
}

/// A member driving transfers frame by frame. Frames read while looking
/// for one are kept for whoever looks for them next.
struct Peer {
    raw: Raw,
    stash: Vec<Frame>,
    next_id: u32,
}

impl Peer {
    fn join(server: &Serve, name: &str) -> Peer {
        Peer {
            raw: Raw::join(server.addr, name, ""),
            stash: Vec::new(),
            next_id: 0,
        }
    }

    fn find<T>(&mut self, what: &str, mut pick: impl FnMut(&Frame) -> Option<T>) -> T {
        if let Some(at) = self.stash.iter().position(|f| pick(f).is_some()) {
            return pick(&self.stash.remove(at)).unwrap();
        }
        loop {
            match self.raw.recv(WAIT) {
                Ok(Frame::Error { code, reason }) => panic!("{what}: ERROR {code:?} {reason}"),
                Ok(frame) => match pick(&frame) {
                    Some(found) => return found,
                    None => self.stash.push(frame),
                },
                Err(e) => panic!("{what} never came: {e:?}"),
            }
        }
    }

    /// Offers `name` of `size` bytes to `to` (empty: the inbox), with `key`
    /// to resume; returns the transfer id and the answer.
    fn offer(
        &mut self,
        name: &str,
        size: u64,
        to: &str,
        key: Option<ResumeKey>,
    ) -> (u32, Result<Accepted, Code>) {
        let id = self.next_id;
        self.next_id += 2;
        if let Some(key) = key {
            self.raw.send(&Frame::Resume { id, key }).unwrap();
        }
        let offer = Frame::Offer {
            id,
            size,
            name: name.into(),
            peer: to.into(),
        };
        self.raw.send(&offer).unwrap();
        let answer = self.find(&format!("the answer to offer {id}"), |frame| match frame {
            Frame::Accept {
                id: got,
                offset,
                window,
                prefix_hash,
            } if *got == id => Some(Ok(Accepted {
                offset: *offset,
                prefix_hash: *prefix_hash,
                window: *window,
            })),
            Frame::Reject { id: got, code, .. } if *got == id => Some(Err(*code)),
            _ => None,
        });
        (id, answer)
    }

    /// The key handed out with the accept of `id` (it came before it).
    fn key(&mut self, id: u32) -> ResumeKey {
        self.find(&format!("the key of {id}"), |frame| match frame {
            Frame::ResumeKey { id: got, key } if *got == id => Some(*key),
            _ => None,
        })
    }

    /// Sends `data[from..]` as transfer `id`, within its window (waiting
    /// for credit when it is used up).
    fn upload(&mut self, id: u32, from: u64, window: u32, data: &[u8]) {
        let chunk = 64 * 1024;
        let mut confirmed = from;
        let mut sent = from as usize;
        while sent < data.len() {
            while sent < data.len() && (sent as u64) < confirmed + u64::from(window) {
                let end = (sent + chunk)
                    .min(data.len())
                    .min((confirmed + u64::from(window)) as usize);
                let frame = Frame::Data {
                    id,
                    offset: sent as u64,
                    data: Bytes::copy_from_slice(&data[sent..end]),
                };
                self.raw.send(&frame).unwrap();
                sent = end;
            }
            if sent < data.len() {
                confirmed = self.find(&format!("a credit for {id}"), |frame| match frame {
                    Frame::Credit { id: got, written } if *got == id => Some(*written),
                    _ => None,
                });
            }
        }
    }

    /// Sends `DONE` with the hash of `data`; returns whether it was
    /// verified.
    fn done(&mut self, id: u32, data: &[u8]) -> Result<(), Code> {
        let hash = *blake3::hash(data).as_bytes();
        self.raw.send(&Frame::Done { id, hash }).unwrap();
        self.find(&format!("the end of {id}"), |frame| match frame {
            Frame::Verified { id: got } if *got == id => Some(Ok(())),
            Frame::Failed { id: got, code, .. } if *got == id => Some(Err(*code)),
            _ => None,
        })
    }

    /// Uploads `data` whole as `name`: the answer must be an accept at 0.
    fn send_whole(&mut self, name: &str, data: &[u8]) -> Result<(), Code> {
        let (id, answer) = self.offer(name, data.len() as u64, "", None);
        let accepted = answer?;
        assert_eq!(accepted.offset, 0);
        self.upload(id, 0, accepted.window, data);
        self.done(id, data)
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn another_users_offer_of_the_same_name_and_size_learns_nothing_and_takes_nothing_over() {
    for runtime in RUNTIMES {
        let inbox = tempfile::tempdir().unwrap();
        let server = Serve::start(inbox.path(), &["--runtime", runtime]);
        let thesis = pattern(8 * MIN_DATA as usize, 1);
        let size = thesis.len() as u64;
        let held = 3 * MIN_DATA as usize;

        // The victim's upload stops with 3 KiB held.
        let mut victim = Peer::join(&server, "victim");
        let (id, answer) = victim.offer("thesis.pdf", size, "", None);
        let accepted = answer.unwrap();
        let key = victim.key(id);
        victim.upload(id, 0, accepted.window, &thesis[..held]);
        drop(victim);
        common::wait_until("the victim's partial file", || {
            common::the_partial_in(inbox.path()).filter(|(_, len)| *len == held as u64)
        });

        // Another user, same name and size, no key, a guessed key: a new
        // upload from 0, with the hash of nothing.
        let mut other = Peer::join(&server, "mallory");
        for guess in [None, Some(ResumeKey::from_bytes([0; 16]))] {
            let (id, answer) = other.offer("thesis.pdf", size, "", guess);
            let accepted = answer.unwrap();
            assert_eq!(accepted.offset, 0, "{runtime}");
            assert_eq!(accepted.prefix_hash, empty_hash(), "{runtime}");
            assert_ne!(other.key(id), key, "{runtime}");
            other
                .raw
                .send(&Frame::Cancel {
                    id,
                    code: Code::CANCELLED,
                    reason: "".into(),
                })
                .unwrap();
        }
        // ... and it completes a file of its own.
        let theirs = pattern(thesis.len(), 2);
        assert_eq!(other.send_whole("thesis.pdf", &theirs), Ok(()));
        assert_eq!(fs::read(inbox.path().join("thesis.pdf")).unwrap(), theirs);

        // The victim, with its key, resumes after its own bytes (their
        // hash, not anyone else's) and gets the identical file.
        let mut victim = Peer::join(&server, "victim");
        let (id, answer) = victim.offer("thesis.pdf", size, "", Some(key));
        let accepted = answer.unwrap();
        assert_eq!(accepted.offset, held as u64, "{runtime}");
        assert_eq!(
            accepted.prefix_hash,
            *blake3::hash(&thesis[..held]).as_bytes(),
            "{runtime}"
        );
        victim.upload(id, held as u64, accepted.window, &thesis);
        assert_eq!(victim.done(id, &thesis), Ok(()), "{runtime}");
        assert_eq!(
            fs::read(inbox.path().join("thesis (1).pdf")).unwrap(),
            thesis
        );
        assert!(partials_in(inbox.path()).is_empty(), "{runtime}");
    }
}

#[test]
fn stored_files_named_like_partial_files_survive_every_offer() {
    for runtime in RUNTIMES {
        let inbox = tempfile::tempdir().unwrap();
        let stored = [("report.part", 5000), ("report (1).part", 7000)];
        for (name, len) in stored {
            fs::write(inbox.path().join(name), pattern(len, 3)).unwrap();
        }
        let server = Serve::start(inbox.path(), &["--runtime", runtime]);
        let mut mallory = Peer::join(&server, "mallory");
        // Larger, smaller, the same size: never a resume, never a hash.
        for size in [1 << 30, 1, 5000, 7000] {
            let (id, answer) = mallory.offer("report", size, "", None);
            let accepted = answer.unwrap();
            assert_eq!(accepted.offset, 0, "{runtime}: {size}");
            assert_eq!(accepted.prefix_hash, empty_hash(), "{runtime}");
            if size == 1 {
                // A wrong DONE after the whole file: the upload fails,
                // nothing else does.
                mallory.upload(id, 0, accepted.window, &[9]);
                let wrong = mallory.done(id, &[8]);
                assert_eq!(wrong, Err(Code::HASH_MISMATCH), "{runtime}");
            } else {
                let cancel = Frame::Cancel {
                    id,
                    code: Code::CANCELLED,
                    reason: "".into(),
                };
                mallory.raw.send(&cancel).unwrap();
            }
        }
        mallory.raw.say_and_hear("done");
        for (name, len) in stored {
            let now = fs::read(inbox.path().join(name)).unwrap();
            assert_eq!(now, pattern(len, 3), "{runtime}: {name}");
        }
        assert_eq!(stored_in(inbox.path()), ["report (1).part", "report.part"]);
    }
}

#[test]
fn links_planted_in_the_inbox_are_never_followed() {
    for runtime in RUNTIMES {
        let root = tempfile::tempdir().unwrap();
        let secret = root.path().join("secret");
        fs::write(&secret, b"hunter2\n").unwrap();
        let inbox = root.path().join("inbox");
        fs::create_dir(&inbox).unwrap();
        // Planted before the server starts: a symlink and a hard link at
        // final names, links named like partial files of the old layout.
        symlink(&secret, inbox.join("x")).unwrap();
        fs::hard_link(&secret, inbox.join("z")).unwrap();
        symlink(&secret, inbox.join("y.part")).unwrap();
        fs::hard_link(&secret, inbox.join("w.part")).unwrap();
        let mut server = Serve::start(&inbox, &["--runtime", runtime]);
        let mut mallory = Peer::join(&server, "mallory");
        for name in ["x", "z", "y", "w"] {
            let data = pattern(2 * MIN_DATA as usize, 4);
            assert_eq!(mallory.send_whole(name, &data), Ok(()), "{runtime}");
        }
        for name in ["x (1)", "z (1)", "y", "w"] {
            let meta = fs::symlink_metadata(inbox.join(name)).unwrap();
            assert!(meta.is_file(), "{runtime}: {name} is not a regular file");
            assert_eq!(std::os::unix::fs::MetadataExt::nlink(&meta), 1, "{name}");
        }

        // Planted during an upload, at its final name.
        let data = pattern(4 * MIN_DATA as usize, 5);
        let (id, answer) = mallory.offer("late", data.len() as u64, "", None);
        let accepted = answer.unwrap();
        mallory.upload(id, 0, accepted.window, &data);
        symlink(&secret, inbox.join("late")).unwrap();
        assert_eq!(mallory.done(id, &data), Ok(()), "{runtime}");
        assert_eq!(fs::read(inbox.join("late (1)")).unwrap(), data);

        // A kept partial file swapped for a link to the secret between two
        // attempts: the resume learns nothing and writes nothing through
        // it.
        let (id, answer) = mallory.offer("kept", data.len() as u64, "", None);
        let accepted = answer.unwrap();
        let key = mallory.key(id);
        mallory.upload(id, 0, accepted.window, &data[..MIN_DATA as usize]);
        drop(mallory);
        let part = common::wait_until("the kept partial file", || {
            common::the_partial_in(&inbox).filter(|(_, len)| *len == u64::from(MIN_DATA))
        })
        .0;
        fs::remove_file(&part).unwrap();
        symlink(&secret, &part).unwrap();
        // The partial file grows as bytes arrive, before the server has
        // seen the connection end: mallory's name is free only once it has.
        server.expect(&["\"mallory\"", "disconnected"]);
        let mut mallory = Peer::join(&server, "mallory");
        let (id, answer) = mallory.offer("kept", data.len() as u64, "", Some(key));
        let accepted = answer.unwrap();
        assert_eq!(accepted.offset, 0, "{runtime}: the secret's length leaked");
        assert_eq!(accepted.prefix_hash, empty_hash(), "{runtime}");
        mallory.upload(id, 0, accepted.window, &data);
        assert_eq!(mallory.done(id, &data), Ok(()), "{runtime}");

        assert_eq!(fs::read(&secret).unwrap(), b"hunter2\n", "{runtime}");
        assert!(fs::symlink_metadata(inbox.join("x")).unwrap().is_symlink());
        let outside: Vec<_> = fs::read_dir(root.path()).unwrap().collect();
        assert_eq!(outside.len(), 2, "{runtime}: {outside:?}");
    }
}

#[test]
fn the_inbox_quota_is_exact_whatever_the_case_of_names() {
    for runtime in RUNTIMES {
        let inbox = tempfile::tempdir().unwrap();
        let quota = 100 * MIN_DATA as u64;
        let quota_arg = quota.to_string();
        let args = ["--runtime", runtime, "--inbox-quota", &quota_arg];
        let server = Serve::start(inbox.path(), &args);
        // Sees alice leave: her name is free only once the server has
        // handled her leaving, which her kept partial file does not show
        // (its bytes are on disk before the server reads her end).
        let mut watcher = Peer::join(&server, "watcher");
        let mut alice = Peer::join(&server, "alice");
        // `A` keeps 40 KiB of 50; then `a` may have the 60 KiB left, not a
        // byte more (before, a kept `A.part` was not counted for `a`).
        let big = pattern(50 * MIN_DATA as usize, 6);
        let (id, answer) = alice.offer("A", big.len() as u64, "", None);
        alice.upload(
            id,
            0,
            answer.unwrap().window,
            &big[..40 * MIN_DATA as usize],
        );
        drop(alice);
        common::wait_until("the kept partial file", || {
            common::the_partial_in(inbox.path()).filter(|(_, len)| *len == 40 * u64::from(MIN_DATA))
        });
        watcher.find("alice's LEFT", |frame| match frame {
            Frame::Left { name, .. } if name == "alice" => Some(()),
            _ => None,
        });
        let mut alice = Peer::join(&server, "alice");
        let (_, answer) = alice.offer("a", 60 * MIN_DATA as u64 + 1, "", None);
        assert_eq!(answer, Err(Code::INBOX_FULL), "{runtime}");
        let rest = pattern(60 * MIN_DATA as usize, 7);
        assert_eq!(alice.send_whole("a", &rest), Ok(()), "{runtime}");
        let (_, answer) = alice.offer("b", 1, "", None);
        assert_eq!(answer, Err(Code::INBOX_FULL), "{runtime}");
        let on_disk: u64 = stored_in(inbox.path())
            .iter()
            .map(|name| fs::metadata(inbox.path().join(name)).unwrap().len())
            .chain(partials_in(inbox.path()).iter().map(|(_, len)| *len))
            .sum();
        assert_eq!(on_disk, quota, "{runtime}");
    }
}

#[test]
fn a_chat_receiver_refuses_files_too_large_and_senders_it_does_not_allow() {
    for runtime in RUNTIMES {
        let inbox = tempfile::tempdir().unwrap();
        let downloads = tempfile::tempdir().unwrap();
        let server = Serve::start(inbox.path(), &[]);
        let addr = server.addr();
        let dir = downloads.path().to_str().unwrap();
        let mut bob = Proc::spawn(&[
            "chat",
            &addr,
            "--name",
            "bob",
            "--runtime",
            runtime,
            "--accept-files",
            dir,
            "--accept-max-size",
            "64K",
            "--accept-from",
            "Alice",
        ]);
        bob.expect(&["you are bob"]);
        let mut alice = Peer::join(&server, "alice");
        let mut mallory = Peer::join(&server, "mallory");
        let (_, answer) = mallory.offer("gift.exe", 1000, "bob", None);
        assert_eq!(answer, Err(Code::FILE_REJECTED), "{runtime}: a stranger");
        let (_, answer) = alice.offer("huge.iso", 1 << 40, "bob", None);
        assert_eq!(answer, Err(Code::FILE_TOO_LARGE), "{runtime}: 1 TiB");
        let (_, answer) = alice.offer("big.bin", 64 * 1024 + 1, "bob", None);
        assert_eq!(answer, Err(Code::FILE_TOO_LARGE), "{runtime}: a byte over");
        let note = pattern(64 * 1024, 8);
        let (id, answer) = alice.offer("note.txt", note.len() as u64, "bob", None);
        alice.upload(id, 0, answer.unwrap().window, &note);
        assert_eq!(alice.done(id, &note), Ok(()), "{runtime}");
        bob.expect(&["saved", "note.txt"]);
        assert_eq!(stored_in(downloads.path()), ["note.txt"], "{runtime}");
        assert!(partials_in(downloads.path()).is_empty(), "{runtime}");
        let (ok, out, _) = bob.finish();
        assert!(ok, "{runtime}");
        for refused in ["gift.exe", "huge.iso", "big.bin"] {
            assert!(out.contains(&format!("declined {refused}")), "{out}");
        }
    }
}

#[test]
fn a_chat_client_nobody_can_ask_takes_no_files_without_accept_files() {
    let inbox = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let server = Serve::start(inbox.path(), &[]);
    let addr = server.addr();
    // Its input is a pipe: there is nobody to ask, so nothing is taken and
    // no folder is made.
    let mut bob = Proc::spawn_in(cwd.path(), &["chat", &addr, "--name", "bob"]);
    bob.expect(&["you are bob"]);
    let mut alice = Peer::join(&server, "alice");
    let (_, answer) = alice.offer("note.txt", 10, "bob", None);
    assert_eq!(answer, Err(Code::FILE_REJECTED));
    assert_eq!(fs::read_dir(cwd.path()).unwrap().count(), 0);
    drop(bob);
}
