//! A receiver's files belong to whoever sent them: partial files nobody else
//! can reach, resume only with the key the receiver handed out, no link
//! planted in the folder ever followed, and a quota counted exactly.

mod common;

use common::Answers;
use ferry_core::ResumeKey;
use ferry_files::{Inbox, PARTIALS_DIR, PART_SUFFIX};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

/// The names in `dir`, sorted, without the folder of partial files.
fn stored(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name != PARTIALS_DIR)
        .collect();
    names.sort();
    names
}

/// The partial files kept in `dir`.
fn partials(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir.join(PARTIALS_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn a_partial_file_resumes_only_with_its_key_and_nobody_learns_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(dir.path()).unwrap();
    let mut victim = inbox.begin("thesis.pdf", 100, None).unwrap();
    let key = victim.resume_key();
    victim.write_at(0, &[1; 60]).unwrap();
    assert_eq!(victim.close(), 60);
    assert_eq!(partials(dir.path()).len(), 1);
    assert!(partials(dir.path())[0].ends_with(PART_SUFFIX));
    assert!(
        stored(dir.path()).is_empty(),
        "never under a name of its own"
    );

    // Someone else, same name and size, no key or a made-up one: a new,
    // empty file of its own, and the victim's bytes untouched.
    let guesses = [None, Some([0; 16]), Some([0xff; 16])];
    for guess in guesses.map(|bytes| bytes.map(ResumeKey::from_bytes)) {
        let mut other = inbox.begin("thesis.pdf", 100, guess).unwrap();
        assert_eq!(other.resume_from(), 0);
        assert_ne!(other.resume_key(), key);
        other.write_at(0, &[2; 100]).unwrap();
        other.commit().unwrap();
    }
    assert_eq!(
        stored(dir.path()),
        ["thesis (1).pdf", "thesis (2).pdf", "thesis.pdf"]
    );
    // The key holder resumes after its 60 bytes, and finishes its file.
    let mut owner = inbox.begin("thesis.pdf", 100, Some(key)).unwrap();
    assert_eq!(owner.resume_from(), 60);
    assert_eq!(owner.read_at(0, 60).unwrap(), vec![1; 60]);
    owner.write_at(60, &[1; 40]).unwrap();
    let path = owner.commit().unwrap();
    assert_eq!(fs::read(path).unwrap(), vec![1; 100]);
    assert!(partials(dir.path()).is_empty());
}

#[test]
fn stored_files_named_like_partials_are_never_resumed_or_touched() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["report.part", "report (1).part", "report"] {
        fs::write(dir.path().join(name), name.as_bytes()).unwrap();
    }
    let inbox = Inbox::open(dir.path()).unwrap();
    for size in [1, 11, 1 << 30] {
        let rx = inbox.begin("report", size, None).unwrap();
        assert_eq!(rx.resume_from(), 0);
        rx.discard().unwrap();
    }
    let mut rx = inbox.begin("report.part", 3, None).unwrap();
    rx.write_at(0, b"new").unwrap();
    rx.commit().unwrap();
    for name in ["report.part", "report (1).part", "report"] {
        assert_eq!(fs::read(dir.path().join(name)).unwrap(), name.as_bytes());
    }
    assert_eq!(
        fs::read(dir.path().join("report (2).part")).unwrap(),
        b"new"
    );
}

#[test]
fn links_planted_in_the_inbox_are_never_followed() {
    let root = tempfile::tempdir().unwrap();
    let outside = root.path().join("outside");
    fs::write(&outside, b"hunter2\n").unwrap();
    let dir = root.path().join("inbox");
    let inbox = Inbox::open(&dir).unwrap();

    // A link at the final name, planted before the upload: the upload
    // lands beside it as a regular file.
    symlink(&outside, dir.join("x")).unwrap();
    fs::hard_link(&outside, dir.join("z")).unwrap();
    for name in ["x", "z"] {
        let mut rx = inbox.begin(name, 5, None).unwrap();
        rx.write_at(0, b"evil!").unwrap();
        let path = rx.commit().unwrap();
        assert_eq!(path, dir.join(format!("{name} (1)")));
        let meta = fs::symlink_metadata(&path).unwrap();
        assert!(meta.is_file() && std::os::unix::fs::MetadataExt::nlink(&meta) == 1);
    }
    // Planted during the upload, at the final name: the same.
    let mut rx = inbox.begin("late", 5, None).unwrap();
    rx.write_at(0, b"evil!").unwrap();
    symlink(&outside, dir.join("late")).unwrap();
    assert_eq!(rx.commit().unwrap(), dir.join("late (1)"));

    // The partial file of a kept upload swapped for a link (a symlink,
    // then a hard link) between two attempts: the resume reveals nothing,
    // writes nothing through it, and starts from zero in a file of its own.
    let mut rx = inbox.begin("y", 8, None).unwrap();
    let key = rx.resume_key();
    rx.write_at(0, b"mine").unwrap();
    rx.close();
    let kept = dir.join(PARTIALS_DIR).join(&partials(&dir)[0]);
    for plant in [
        |from: &Path, to: &Path| symlink(from, to),
        |from: &Path, to: &Path| fs::hard_link(from, to),
    ] {
        fs::remove_file(&kept).unwrap();
        plant(&outside, &kept).unwrap();
        let mut rx = inbox.begin("y", 8, Some(key)).unwrap();
        assert_eq!(rx.resume_from(), 0, "the secret's length leaked");
        rx.write_at(0, b"overwri").unwrap();
        rx.close();
        assert_eq!(fs::read(&outside).unwrap(), b"hunter2\n");
        let meta = fs::symlink_metadata(&kept).unwrap();
        assert!(meta.is_file() && std::os::unix::fs::MetadataExt::nlink(&meta) == 1);
    }
    assert_eq!(fs::read(&outside).unwrap(), b"hunter2\n");
    assert!(fs::symlink_metadata(dir.join("x")).unwrap().is_symlink());
}

#[test]
fn a_partial_file_swapped_for_a_link_during_the_transfer_is_never_stored() {
    let root = tempfile::tempdir().unwrap();
    let outside = root.path().join("outside");
    fs::write(&outside, b"hunter2\n").unwrap();
    let dir = root.path().join("inbox");
    let inbox = Inbox::open(&dir).unwrap();
    let mut rx = inbox.begin("doc", 5, None).unwrap();
    rx.write_at(0, b"12345").unwrap();
    // Swapped under the writer (only the server's own user could: the
    // folder is private), for a symlink and then a hard link.
    let part = rx.part_path();
    fs::remove_file(&part).unwrap();
    symlink(&outside, &part).unwrap();
    let err = rx.commit().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    assert!(stored(&dir).is_empty(), "{:?}", stored(&dir));

    let mut rx = inbox.begin("doc", 5, None).unwrap();
    rx.write_at(0, b"12345").unwrap();
    let part = rx.part_path();
    fs::remove_file(&part).unwrap();
    fs::hard_link(&outside, &part).unwrap();
    assert!(rx.commit().is_err());
    assert!(stored(&dir).is_empty(), "{:?}", stored(&dir));
    assert_eq!(fs::read(&outside).unwrap(), b"hunter2\n");
    // The names put in place are gone, what they pointed to is not.
    assert!(partials(&dir).is_empty(), "{:?}", partials(&dir));
    assert_eq!(inbox.used(), 0);
}

#[test]
fn the_folder_of_partials_cannot_be_a_link() {
    let root = tempfile::tempdir().unwrap();
    let elsewhere = root.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    let dir = root.path().join("inbox");
    fs::create_dir(&dir).unwrap();
    symlink(&elsewhere, dir.join(PARTIALS_DIR)).unwrap();
    let err = Inbox::open(&dir).unwrap_err().to_string();
    assert!(err.contains(PARTIALS_DIR), "{err}");
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
}

#[test]
fn the_quota_is_exact_whatever_the_case_of_names() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(dir.path()).unwrap().quota(Some(1_000_000));
    // A kept partial of `A` and an offer of `a`: both count.
    let mut upper = inbox.begin("A", 500_000, None).unwrap();
    upper.write_at(0, &[1; 400_000]).unwrap();
    upper.close();
    assert_eq!(inbox.used(), 400_000);
    let lower = inbox.begin("a", 600_000, None).unwrap();
    assert_eq!(inbox.used(), 1_000_000);
    assert!(inbox.begin("b", 1, None).is_err());
    drop(lower);
    assert!(inbox.begin("a", 600_001, None).is_err());
    // What a fresh count of the folder finds is the same.
    assert_eq!(Inbox::open(dir.path()).unwrap().used(), 400_000);
}

#[test]
fn stale_partial_files_expire() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(dir.path())
        .unwrap()
        .partial_ttl(Duration::from_millis(300));
    // The expiry thread is asleep by now, with nothing to expire: keeping a
    // file must wake it.
    std::thread::sleep(Duration::from_millis(50));
    let mut rx = inbox.begin("old", 10, None).unwrap();
    let key = rx.resume_key();
    rx.write_at(0, b"12345").unwrap();
    rx.close();
    assert_eq!(inbox.used(), 5);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !partials(dir.path()).is_empty() {
        assert!(Instant::now() < deadline, "never expired");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(inbox.used(), 0);
    let rx = inbox.begin("old", 10, Some(key)).unwrap();
    assert_eq!(rx.resume_from(), 0);
}

#[test]
fn a_receiver_that_asks_asks_again_unless_the_offer_holds_the_key() {
    use ferry_core::transfer::TransferEvent;
    use ferry_files::{FileTransfers, OfferPolicy, Report};
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(dir.path())
        .unwrap()
        .ask_first(Duration::from_secs(60));
    // A transfer the user took, cut with 4 bytes kept.
    let mut rx = inbox.begin("film.mkv", 10, None).unwrap();
    let key = rx.resume_key();
    rx.write_at(0, b"1234").unwrap();
    rx.close();
    let policy = OfferPolicy::for_inbox(Some(&inbox));
    let mut files = FileTransfers::new(Some(inbox), policy);
    let mut ctl = Answers::default();
    let now = Instant::now();
    let offer = |id, resume| TransferEvent::Offered {
        id,
        name: "film.mkv".into(),
        size: 10,
        peer: "bob".into(),
        resume,
    };
    // The same name and size without the key, or with a made-up one: asked.
    for (id, resume) in [(1, None), (3, Some(ResumeKey::from_bytes([1; 16])))] {
        let report = files.handle(&mut ctl, now, offer(id, resume));
        assert!(matches!(report, Some(Report::Asking { .. })), "{report:?}");
    }
    // With the key: taken at once, resuming after the 4 bytes.
    assert_eq!(files.handle(&mut ctl, now, offer(5, Some(key))), None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while ctl.0.is_empty() {
        assert!(Instant::now() < deadline, "never answered");
        std::thread::sleep(Duration::from_millis(2));
        files.poll_disk(&mut ctl, now);
    }
    assert_eq!(ctl.0, [(5, Ok(4))]);
}

#[test]
fn a_receiver_that_asks_asks_about_a_folder_and_books_it_only_once_taken() {
    use ferry_core::transfer::TransferEvent;
    use ferry_core::tree::{Entry, EntryKind, Manifest, Mtime, TreeLimits, TreePath};
    use ferry_core::Code;
    use ferry_files::{FileTransfers, OfferPolicy, Report};
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(dir.path())
        .unwrap()
        .ask_first(Duration::from_secs(60));
    let mut files = FileTransfers::new(Some(inbox.clone()), OfferPolicy::for_inbox(Some(&inbox)));
    let mut ctl = Answers::default();
    let now = Instant::now();
    let limits = TreeLimits::default();
    let entry = |path: &str, kind| Entry {
        path: TreePath::new(path, &limits).unwrap(),
        kind,
        mtime: Mtime::EPOCH,
    };
    let file = |size| EntryKind::File {
        size,
        executable: false,
    };
    let manifest = Manifest::new(
        Mtime::EPOCH,
        vec![
            entry("a.txt", file(4)),
            entry("sub", EntryKind::Folder),
            entry("sub/b.txt", file(6)),
        ],
        &limits,
    )
    .unwrap();
    let mut offer = |files: &mut FileTransfers, id| {
        let offered = TransferEvent::TreeOffered {
            id,
            name: "album".into(),
            total_size: 10,
            manifest_len: manifest.encode().len() as u32,
            peer: "bob".into(),
            resume: None,
        };
        assert_eq!(files.handle(&mut ctl, now, offered), None);
        let whole = TransferEvent::TreeManifest {
            id,
            manifest: manifest.clone(),
        };
        files.handle(&mut ctl, now, whole)
    };
    let asked = offer(&mut files, 1);
    assert_eq!(
        asked,
        Some(Report::Asking {
            id: 1,
            name: "album/".into(),
            size: 10,
            peer: "bob".into(),
            files: Some(2),
            answer_within: Duration::from_secs(60),
        })
    );
    // Asked about, nothing is booked or written.
    assert_eq!(inbox.used(), 0);
    assert!(partials(dir.path()).is_empty());
    assert!(offer(&mut files, 3).is_some());
    assert!(offer(&mut files, 5).is_some());

    // Declined: refused, and reported as such.
    let declined = files.answer_offer(&mut ctl, now, 3, false).unwrap();
    assert!(
        matches!(&declined, Some(Report::Offered { id: 3, name, accepted: None, .. }) if &**name == "album/"),
        "{declined:?}"
    );
    assert_eq!(ctl.of(3), Some(Err(Code::FILE_REJECTED)));
    // Taken: booked against the quota (its bytes, and its two files, one
    // folder and own folder at ENTRY_COST each), its writer started, then
    // accepted.
    assert_eq!(files.answer_offer(&mut ctl, now, 1, true).unwrap(), None);
    let booked = 10 + 4 * ferry_files::ENTRY_COST;
    assert_eq!(inbox.used(), booked);
    let deadline = Instant::now() + Duration::from_secs(30);
    while ctl.of(1).is_none() {
        assert!(Instant::now() < deadline, "never answered");
        std::thread::sleep(Duration::from_millis(2));
        files.poll_disk(&mut ctl, now);
    }
    assert_eq!(ctl.of(1), Some(Ok(0)));
    // Not answered in time: refused by itself.
    assert_eq!(files.poll_timeout(), Some(now + Duration::from_secs(60)));
    let expired = files.handle_timeout(&mut ctl, now + Duration::from_secs(60));
    assert!(
        matches!(
            expired[..],
            [Report::Offered {
                id: 5,
                accepted: None,
                ..
            }]
        ),
        "{expired:?}"
    );
    assert_eq!(ctl.of(5), Some(Err(Code::FILE_REJECTED)));
    assert!(files.answer_offer(&mut ctl, now, 5, true).is_err());
    assert_eq!(inbox.used(), booked, "only the folder taken is booked");
}
