//! Real files through ferry-core, in memory: a client uploads into a hub's
//! inbox on disk, resumes, and never leaves a partial file under its final
//! name.

use ferry_core::transfer::{Outcome, TransferEvent};
use ferry_core::{ClientConfig, Code, Connection, Event, Hub, HubConfig, HubEvent};
use ferry_files::{free_name, FileTransfers, HubClient, Inbox, OfferPolicy, Report, Sending};
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
        let (file, name, size) = Sending::open(path).unwrap();
        let id = self.client.offer_file(self.now, &name, size, "").unwrap();
        self.client_files.register_send(id, file);
        id
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

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
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
    s.send(&path);
    s.pump();
    // Only the partial file exists, never the final name.
    assert_eq!(files_in(inbox.path()), vec!["movie.mkv.part"]);
    let held = fs::metadata(inbox.path().join("movie.mkv.part"))
        .unwrap()
        .len();
    assert!(held > 0 && held < data.len() as u64);

    let mut s = Session::new(inbox.path());
    let id = s.send(&path);
    s.pump();
    assert_eq!(s.outcome(id), Some(Outcome::Verified), "{:?}", s.reports);
    assert!(
        s.reports.contains(&Report::Accepted { id, offset: held }),
        "{:?}",
        &s.reports[..3]
    );
    assert_eq!(files_in(inbox.path()), vec!["movie.mkv"]);
    assert_eq!(fs::read(inbox.path().join("movie.mkv")).unwrap(), data);
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
    let mut rx = inbox.begin("a.txt", 3).unwrap();
    // A second transfer of the same name at once is refused, not interleaved.
    assert_eq!(
        inbox.begin("A.TXT", 3).unwrap_err().kind(),
        std::io::ErrorKind::AlreadyExists
    );
    rx.write_at(0, b"new").unwrap();
    assert!(rx.write_at(2, b"xx").is_err(), "past the size");
    rx.commit().unwrap();
    assert_eq!(fs::read(dir.path().join("a.txt")).unwrap(), b"new");
    assert!(inbox.begin("a.txt", 3).is_ok(), "the name is free again");
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
    let err = inbox.begin("big.bin", 50).unwrap_err();
    assert!(ferry_files::QuotaExceeded::is(&err), "{err}");
    assert_eq!(err.kind(), std::io::ErrorKind::StorageFull);
    assert!(err.to_string().contains("inbox is full"), "{err}");
    assert!(!dir.path().join("big.bin.part").exists());
    // 60 + 40 fits; while it is under way it counts whole.
    let receiving = inbox.begin("fits.bin", 40).unwrap();
    let err = inbox.begin("one.bin", 1).unwrap_err();
    assert!(ferry_files::QuotaExceeded::is(&err), "{err}");
    drop(receiving);
    // A partial file left for a resume counts at its length (0 here), and
    // its own resume is not counted twice.
    let again = inbox.begin("fits.bin", 40).unwrap();
    assert_eq!(again.resume_from(), 0);
    drop(again);
    // No quota: anything goes.
    let free = Inbox::open(dir.path()).unwrap();
    drop(free.begin("big.bin", 1 << 40).unwrap());
}
