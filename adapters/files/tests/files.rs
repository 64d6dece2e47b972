//! Real files through ferry-core, in memory: a client uploads into a hub's
//! inbox on disk, resumes, and never leaves a partial file under its final
//! name.

mod common;

use common::Answers;
use ferry_core::transfer::{Outcome, TransferEvent};
use ferry_core::ResumeKey;
use ferry_core::{ClientConfig, Code, Connection, Event, Hub, HubConfig, HubEvent};
use ferry_files::{
    free_name, FileTransfers, HubClient, Inbox, OfferPolicy, Report, Sending, PARTIALS_DIR,
};
use std::fs;
use std::path::Path;
use std::time::Instant;

fn contents(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A client and a hub with an inbox, joined by memory.
struct Session {
    now: Instant,
    hub: Hub,
    id: ferry_core::ClientId,
    client: Connection,
    client_files: FileTransfers,
    hub_files: FileTransfers,
    reports: Vec<Report>,
    /// Flip a bit of the client's stream at this position.
    corrupt_at: Option<usize>,
    sent: usize,
    /// Stop the stream after this many bytes (a dropped connection).
    cut_at: Option<usize>,
}

impl Session {
    fn new(inbox: &Path) -> Session {
        let now = Instant::now();
        let mut hub = Hub::new(HubConfig::default(), now);
        let id = hub.connect(now);
        let mut s = Session {
            now,
            hub,
            id,
            client: Connection::client(ClientConfig::new("alice"), now),
            client_files: FileTransfers::new(None, OfferPolicy::Reject),
            hub_files: FileTransfers::new(Some(Inbox::open(inbox).unwrap()), OfferPolicy::Accept),
            reports: Vec::new(),
            corrupt_at: None,
            sent: 0,
            cut_at: None,
        };
        s.pump();
        assert!(s.client.is_open());
        s
    }

    fn send(&mut self, path: &Path) -> u32 {
        self.send_resuming(path, None)
    }

    /// Offers the file, presenting `key` to resume an earlier attempt.
    fn send_resuming(&mut self, path: &Path, key: Option<ResumeKey>) -> u32 {
        let (file, name, size) = Sending::open(path).unwrap();
        let id = match key {
            Some(key) => self
                .client
                .offer_file_resuming(self.now, &name, size, "", key),
            None => self.client.offer_file(self.now, &name, size, ""),
        }
        .unwrap();
        self.client_files.register_send(id, file);
        id
    }

    /// The key the receiver handed out for transfer `id`.
    fn key_of(&self, id: u32) -> Option<ResumeKey> {
        self.reports.iter().find_map(|r| match r {
            Report::ResumeKey { id: i, key } if *i == id => Some(*key),
            _ => None,
        })
    }

    fn pump(&mut self) {
        let now = self.now;
        for _ in 0..1_000_000 {
            let mut moved = false;
            while let Some(bytes) = self.client.poll_transmit() {
                let mut bytes = bytes.to_vec();
                if let Some(at) = self.corrupt_at {
                    if (self.sent..self.sent + bytes.len()).contains(&at) {
                        bytes[at - self.sent] ^= 0x20;
                    }
                }
                if let Some(cut) = self.cut_at {
                    if self.sent + bytes.len() > cut {
                        bytes.truncate(cut.saturating_sub(self.sent));
                        self.hub.handle_input(self.id, now, &bytes);
                        self.hub.handle_eof(self.id, now);
                        self.client.handle_eof(now);
                        self.sent = cut;
                        self.drain_events();
                        while !(self.client_files.disk_idle() && self.hub_files.disk_idle()) {
                            std::thread::sleep(std::time::Duration::from_micros(200));
                            self.drain_events();
                        }
                        return;
                    }
                }
                self.sent += bytes.len();
                self.hub.handle_input(self.id, now, &bytes);
                moved = true;
            }
            while let Some(bytes) = self.hub.poll_transmit(self.id) {
                self.client.handle_input(now, &bytes);
                moved = true;
            }
            // Idle before the drain: then it took no finished disk work.
            let disk_idle = self.client_files.disk_idle() && self.hub_files.disk_idle();
            moved |= self.drain_events();
            if !moved {
                if disk_idle {
                    return;
                }
                // Received files are written on threads of their own.
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        }
        panic!("never settled");
    }

    fn drain_events(&mut self) -> bool {
        let mut any = false;
        let now = self.now;
        while let Some(event) = self.client.poll_event() {
            any = true;
            if let Event::Transfer(t) = event {
                if let Some(r) = self.client_files.handle(&mut self.client, now, t) {
                    self.reports.push(r);
                }
            }
        }
        while let Some(event) = self.hub.poll_event() {
            any = true;
            if let HubEvent::Transfer { client, event } = event {
                let mut ctl = HubClient {
                    hub: &mut self.hub,
                    client,
                };
                if let Some(r) = self.hub_files.handle(&mut ctl, now, event) {
                    self.reports.push(r);
                }
            }
        }
        let mut ctl = HubClient {
            hub: &mut self.hub,
            client: self.id,
        };
        let done = self.hub_files.poll_disk(&mut ctl, now);
        let mine = self.client_files.poll_disk(&mut self.client, now);
        any |= !done.is_empty() || !mine.is_empty();
        self.reports.extend(done.into_iter().chain(mine));
        any
    }

    fn outcome(&self, id: u32) -> Option<Outcome> {
        // The client's own report of how its transfer ended.
        self.reports.iter().rev().find_map(|r| match r {
            Report::Finished { id: i, outcome } if *i == id && id % 2 == 0 => Some(outcome.clone()),
            _ => None,
        })
    }
}

/// The files stored in `dir` (not its folder of partial files).
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name != PARTIALS_DIR)
        .collect();
    names.sort();
    names
}

/// The partial files kept in `dir`, with their lengths.
fn partials_in(dir: &Path) -> Vec<(String, u64)> {
    let mut parts: Vec<(String, u64)> = fs::read_dir(dir.join(PARTIALS_DIR))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let len = e.metadata().unwrap().len();
            (e.file_name().into_string().unwrap(), len)
        })
        .collect();
    parts.sort();
    parts
}

#[test]
fn upload_lands_under_its_name_and_then_a_free_one() {
    let src = tempfile::tempdir().unwrap();
    let inbox = tempfile::tempdir().unwrap();
    let data = contents(1_000_003, 1);
    let path = src.path().join("report.pdf");
    fs::write(&path, &data).unwrap();
    let mut s = Session::new(inbox.path());
    let first = s.send(&path);
    s.pump();
    assert_eq!(s.outcome(first), Some(Outcome::Verified));
    let second = s.send(&path);
    s.pump();
    assert_eq!(s.outcome(second), Some(Outcome::Verified));
    assert_eq!(files_in(inbox.path()), vec!["report (1).pdf", "report.pdf"]);
    assert_eq!(fs::read(inbox.path().join("report.pdf")).unwrap(), data);
    assert_eq!(fs::read(inbox.path().join("report (1).pdf")).unwrap(), data);
    // The sender's progress came from the receiver and reached the end.
    assert!(s.reports.contains(&Report::Progress {
        id: first,
        done: data.len() as u64,
        size: data.len() as u64
    }));
}

#[test]
fn a_dropped_upload_resumes_from_the_partial_file() {
    let src = tempfile::tempdir().unwrap();
    let inbox = tempfile::tempdir().unwrap();
    let data = contents(3_000_000, 2);
    let path = src.path().join("movie.mkv");
    fs::write(&path, &data).unwrap();
    let mut s = Session::new(inbox.path());
    s.cut_at = Some(s.sent + 1_200_000);
    let first = s.send(&path);
    s.pump();
    // Only the partial file exists, never the final name.
    assert!(files_in(inbox.path()).is_empty());
    let [(_, held)] = partials_in(inbox.path())[..] else {
        panic!("{:?}", partials_in(inbox.path()));
    };
    assert!(held > 0 && held < data.len() as u64);
    let key = s.key_of(first).expect("the receiver handed out a key");

    // Someone else offering the same name and size starts a file of its
    // own, and is told nothing of the first.
    let mut other = Session::new(inbox.path());
    other.cut_at = Some(other.sent + 100_000);
    let id = other.send(&path);
    other.pump();
    assert!(other.reports.contains(&Report::Accepted { id, offset: 0 }));
    assert_eq!(partials_in(inbox.path()).len(), 2);

    // The key holder resumes after its own bytes.
    let mut s = Session::new(inbox.path());
    let id = s.send_resuming(&path, Some(key));
    s.pump();
    assert_eq!(s.outcome(id), Some(Outcome::Verified), "{:?}", s.reports);
    assert!(
        s.reports.contains(&Report::Accepted { id, offset: held }),
        "{:?}",
        &s.reports[..3]
    );
    assert_eq!(files_in(inbox.path()), vec!["movie.mkv"]);
    assert_eq!(fs::read(inbox.path().join("movie.mkv")).unwrap(), data);
    assert_eq!(partials_in(inbox.path()).len(), 1, "the other's stays");
}

#[test]
fn a_corrupted_upload_is_never_stored() {
    let src = tempfile::tempdir().unwrap();
    let inbox = tempfile::tempdir().unwrap();
    let data = contents(500_000, 3);
    let path = src.path().join("data.bin");
    fs::write(&path, &data).unwrap();
    let mut s = Session::new(inbox.path());
    s.corrupt_at = Some(s.sent + 250_000);
    let id = s.send(&path);
    s.pump();
    assert!(matches!(
        s.outcome(id),
        Some(Outcome::Failed {
            code: Code::HASH_MISMATCH,
            ..
        })
    ));
    assert!(
        files_in(inbox.path()).is_empty(),
        "{:?}",
        files_in(inbox.path())
    );
    s.corrupt_at = None;
    let retry = s.send(&path);
    s.pump();
    assert_eq!(s.outcome(retry), Some(Outcome::Verified));
    assert_eq!(fs::read(inbox.path().join("data.bin")).unwrap(), data);
}

#[test]
fn free_names_ignore_case_and_keep_extensions() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["Report.PDF", "report (1).pdf", ".bashrc", "README"] {
        fs::write(dir.path().join(name), b"x").unwrap();
    }
    assert_eq!(
        free_name(dir.path(), "report.pdf").unwrap(),
        "report (2).pdf"
    );
    assert_eq!(free_name(dir.path(), ".bashrc").unwrap(), ".bashrc (1)");
    assert_eq!(free_name(dir.path(), "readme").unwrap(), "readme (1)");
    assert_eq!(free_name(dir.path(), "new.txt").unwrap(), "new.txt");
}

#[test]
fn overwrite_replaces_and_partials_are_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a.txt"), b"old").unwrap();
    let inbox = Inbox::open(dir.path()).unwrap().overwrite(true);
    let mut rx = inbox.begin("a.txt", 3, None).unwrap();
    // Another transfer of the same name has a partial file of its own.
    let other = inbox.begin("A.TXT", 3, None).unwrap();
    assert_ne!(other.resume_key(), rx.resume_key());
    // Resuming one that is under way is refused, not interleaved.
    assert_eq!(
        inbox
            .begin("a.txt", 3, Some(rx.resume_key()))
            .unwrap_err()
            .kind(),
        std::io::ErrorKind::AlreadyExists
    );
    rx.write_at(0, b"new").unwrap();
    assert!(rx.write_at(2, b"xx").is_err(), "past the size");
    rx.commit().unwrap();
    assert_eq!(fs::read(dir.path().join("a.txt")).unwrap(), b"new");
    drop(other);
    assert!(partials_in(dir.path()).is_empty());
}

#[test]
fn unusable_inbox_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    fs::write(&file, b"").unwrap();
    let err = Inbox::open(&file).unwrap_err().to_string();
    assert!(err.contains("not-a-dir"), "{err}");
}

#[test]
fn offers_are_declined_without_an_inbox() {
    let now = Instant::now();
    let mut files = FileTransfers::new(None, OfferPolicy::Accept);
    let mut conn = Connection::server(ferry_core::Config::default(), now);
    let report = files.handle(
        &mut conn,
        now,
        TransferEvent::Offered {
            id: 0,
            name: "x".into(),
            size: 1,
            peer: "".into(),
            resume: None,
        },
    );
    assert!(matches!(
        report,
        Some(Report::Offered { accepted: None, .. })
    ));
}

#[test]
fn the_inbox_quota_counts_files_partials_and_uploads_under_way() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("old.bin"), vec![0u8; 60]).unwrap();
    let inbox = Inbox::open(dir.path()).unwrap().quota(Some(100));
    // 60 held + 50 wanted > 100: refused, and nothing is created.
    let err = inbox.begin("big.bin", 50, None).unwrap_err();
    assert!(ferry_files::QuotaExceeded::is(&err), "{err}");
    assert_eq!(err.kind(), std::io::ErrorKind::StorageFull);
    assert!(err.to_string().contains("inbox is full"), "{err}");
    assert!(partials_in(dir.path()).is_empty());
    // 60 + 40 fits; while it is under way it counts whole.
    let receiving = inbox.begin("fits.bin", 40, None).unwrap();
    let err = inbox.begin("one.bin", 1, None).unwrap_err();
    assert!(ferry_files::QuotaExceeded::is(&err), "{err}");
    drop(receiving);
    // A partial file left for a resume counts at its length (0 here), and
    // its own resume is not counted twice.
    let again = inbox.begin("fits.bin", 40, None).unwrap();
    assert_eq!(again.resume_from(), 0);
    drop(again);
    // No quota: anything goes.
    let free = Inbox::open(dir.path()).unwrap();
    drop(free.begin("big.bin", 1 << 40, None).unwrap());
}

/// Hands `files` what its writers finished until they are all idle.
fn settle(files: &mut FileTransfers, ctl: &mut Answers) {
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let idle = files.disk_idle();
        files.poll_disk(ctl, Instant::now());
        if idle {
            return;
        }
        assert!(Instant::now() < deadline, "the disk never settled");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn offered(id: u32, name: &str, size: u64, peer: &str) -> TransferEvent {
    resumed(id, name, size, peer, None)
}

fn resumed(id: u32, name: &str, size: u64, peer: &str, key: Option<ResumeKey>) -> TransferEvent {
    TransferEvent::Offered {
        id,
        name: name.into(),
        size,
        peer: peer.into(),
        resume: key,
    }
}

fn ended(id: u32) -> TransferEvent {
    TransferEvent::Ended {
        id,
        outcome: Outcome::Cancelled {
            code: Code::CANCELLED,
            reason: "gone".into(),
            by_peer: true,
        },
    }
}

#[test]
fn stored_folders_count_against_the_quota_when_the_inbox_is_opened_again() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("top.bin"), [0u8; 10]).unwrap();
    // A folder stored by an earlier run: files at several depths count.
    let tree = dir.path().join("projekt");
    fs::create_dir_all(tree.join("a/b/c")).unwrap();
    fs::write(tree.join("one.txt"), [0u8; 100]).unwrap();
    fs::write(tree.join("a/two.txt"), [0u8; 200]).unwrap();
    fs::write(tree.join("a/b/c/three.txt"), [0u8; 300]).unwrap();
    // Links are not followed, to a file or to a folder outside.
    fs::write(outside.path().join("big.bin"), vec![0u8; 5000]).unwrap();
    std::os::unix::fs::symlink(outside.path().join("big.bin"), tree.join("a/link")).unwrap();
    std::os::unix::fs::symlink(outside.path(), tree.join("dirlink")).unwrap();
    let inbox = Inbox::open(dir.path()).unwrap().quota(Some(1000));
    // The folder's files and folders (one.txt, a, two.txt, b, c,
    // three.txt) and the folder itself cost ENTRY_COST each besides their
    // bytes, as the tree was booked when it came.
    let entries = 7 * ferry_files::ENTRY_COST;
    assert_eq!(inbox.used(), 10 + 100 + 200 + 300 + entries);
}

#[test]
fn the_quota_is_counted_as_files_come_and_go_and_concurrent_offers_cannot_overshoot_it() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..20 {
        fs::write(dir.path().join(format!("old{i}.bin")), [0u8; 10]).unwrap();
    }
    let inbox = Inbox::open(dir.path()).unwrap().quota(Some(1000));
    assert_eq!(inbox.used(), 200, "counted once, when opened");
    let now = Instant::now();
    let mut files = FileTransfers::new(Some(inbox.clone()), OfferPolicy::Accept);
    let mut ctl = Answers::default();
    // Ten offers of 100 at once, none of them written yet: the first eight
    // take the 800 bytes left, whole; the others are refused at once.
    for i in 0..10 {
        files.handle(
            &mut ctl,
            now,
            offered(i * 2 + 1, &format!("new{i}"), 100, "bob"),
        );
    }
    let refused: Vec<_> = ctl.0.clone();
    assert_eq!(
        refused,
        vec![(17, Err(Code::INBOX_FULL)), (19, Err(Code::INBOX_FULL))]
    );
    settle(&mut files, &mut ctl);
    assert_eq!(inbox.used(), 1000);
    for i in 0..8 {
        assert_eq!(ctl.of(i * 2 + 1), Some(Ok(0)), "{i}");
    }
    // One gives up having written nothing: its empty partial goes, its
    // bytes are free again.
    files.handle(&mut ctl, now, ended(1));
    settle(&mut files, &mut ctl);
    assert_eq!(partials_in(dir.path()).len(), 7, "the 7 others are open");
    assert_eq!(inbox.used(), 900);
    // One writes 30 bytes and gives up: the partial stays, at its length.
    files.handle(
        &mut ctl,
        now,
        TransferEvent::Chunk {
            id: 3,
            offset: 0,
            data: bytes::Bytes::from_static(&[7; 30]),
        },
    );
    files.handle(&mut ctl, now, ended(3));
    settle(&mut files, &mut ctl);
    let lengths: Vec<u64> = partials_in(dir.path()).iter().map(|p| p.1).collect();
    assert_eq!(lengths.iter().sum::<u64>(), 30, "{lengths:?}");
    assert_eq!(inbox.used(), 830);
    // Its resume counts it whole again, not twice.
    let key = ctl.key(3);
    files.handle(&mut ctl, now, resumed(21, "new1", 100, "bob", Some(key)));
    settle(&mut files, &mut ctl);
    assert_eq!(ctl.of(21), Some(Ok(30)));
    assert_eq!(inbox.used(), 900);
    // Files stored, replaced and thrown away outside a hub count too.
    // (Dropping the transfers lets their writers close the files, on
    // their own threads.)
    drop(files);
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while inbox.used() != 200 + 30 {
        assert!(Instant::now() < deadline, "used: {}", inbox.used());
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let mut rx = inbox
        .clone()
        .overwrite(true)
        .begin("old0.bin", 50, None)
        .unwrap();
    rx.write_at(0, &[1; 50]).unwrap();
    rx.commit().unwrap();
    assert_eq!(inbox.used(), 200 - 10 + 50 + 30);
    let rx = inbox.begin("bad.bin", 40, None).unwrap();
    rx.discard().unwrap();
    assert_eq!(inbox.used(), 270);
    // What the ledger says is what a fresh count of the folder says.
    assert_eq!(Inbox::open(dir.path()).unwrap().used(), 270);
}

#[test]
fn a_sender_may_keep_only_so_many_unfinished_files() {
    let dir = tempfile::tempdir().unwrap();
    // Partial files from before count for nobody.
    let inbox = Inbox::open(dir.path()).unwrap();
    for i in 0..5 {
        let mut rx = inbox.begin(&format!("older{i}"), 4, None).unwrap();
        rx.write_at(0, &[1; 4]).unwrap();
        rx.close();
    }
    drop(inbox);
    let inbox = Inbox::open(dir.path()).unwrap().max_partials_per_sender(3);
    let now = Instant::now();
    let mut files = FileTransfers::new(Some(inbox), OfferPolicy::Accept);
    let mut ctl = Answers::default();
    for (id, name) in [(1, "a"), (3, "b"), (5, "c")] {
        files.handle(&mut ctl, now, offered(id, name, 100, "Mallory"));
        files.handle(
            &mut ctl,
            now,
            TransferEvent::Chunk {
                id,
                offset: 0,
                data: bytes::Bytes::from_static(b"x"),
            },
        );
    }
    settle(&mut files, &mut ctl);
    // Three under way: a fourth file is refused, from any of her names'
    // spellings; bob is not affected.
    let report = files.handle(&mut ctl, now, offered(7, "d", 100, "mallory"));
    assert!(matches!(
        report,
        Some(Report::Offered { accepted: None, .. })
    ));
    assert_eq!(ctl.of(7), Some(Err(Code::TOO_MANY_TRANSFERS)));
    files.handle(&mut ctl, now, offered(9, "e", 100, "bob"));
    // Abandoned, they are kept (a byte each), and still count.
    for id in [1, 3, 5] {
        files.handle(&mut ctl, now, ended(id));
    }
    settle(&mut files, &mut ctl);
    assert_eq!(ctl.of(9), Some(Ok(0)));
    files.handle(&mut ctl, now, offered(11, "f", 100, "MALLORY"));
    assert_eq!(ctl.of(11), Some(Err(Code::TOO_MANY_TRANSFERS)));
    // Resuming one of them is no new file.
    let key = ctl.key(1);
    files.handle(&mut ctl, now, resumed(13, "a", 100, "mallory", Some(key)));
    settle(&mut files, &mut ctl);
    assert_eq!(ctl.of(13), Some(Ok(1)));
}
