//! The tree writer on a real disk: what lands, where, and what never does.

use super::*;
use ferry_core::tree::{Entry, EntryKind, Manifest, ManifestError, Mtime, TreeLimits, TreePath};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Instant;

/// What a tree holds, as a walk of the disk sees it (links not followed):
/// path → (folder?, size, BLAKE3, mode bits, mtime seconds and nanoseconds).
type Walked = BTreeMap<String, (bool, u64, [u8; 32], u32, i64, i64)>;

fn walk(root: &Path) -> Walked {
    fn visit(dir: &Path, prefix: &str, out: &mut Walked) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            assert!(!meta.file_type().is_symlink(), "{path} is a link");
            let hash = if meta.is_file() {
                *blake3::hash(&std::fs::read(entry.path()).unwrap()).as_bytes()
            } else {
                [0; 32]
            };
            let size = if meta.is_file() { meta.len() } else { 0 };
            out.insert(
                path.clone(),
                (
                    meta.is_dir(),
                    size,
                    hash,
                    meta.permissions().mode() & 0o777,
                    meta.mtime(),
                    meta.mtime_nsec(),
                ),
            );
            if meta.is_dir() {
                visit(&entry.path(), &path, out);
            }
        }
    }
    let mut out = Walked::new();
    visit(root, "", &mut out);
    out
}

/// Names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// A tree to send: each entry, with a file's contents.
struct Sample {
    manifest: Manifest,
    contents: Vec<Vec<u8>>,
}

fn sample(spec: &[(&str, Option<&[u8]>, bool, u64)]) -> Sample {
    let limits = TreeLimits::default();
    let mut entries = Vec::new();
    let mut contents = Vec::new();
    for (n, &(path, data, executable, secs)) in spec.iter().enumerate() {
        let kind = match data {
            None => EntryKind::Folder,
            Some(data) => EntryKind::File {
                size: data.len() as u64,
                executable,
            },
        };
        entries.push(Entry {
            path: TreePath::new(path, &limits).unwrap(),
            kind,
            mtime: Mtime::new(secs, n as u32 * 1000).unwrap(),
        });
        contents.push(data.unwrap_or_default().to_vec());
    }
    let root = Mtime::new(1_600_000_000, 5_000).unwrap();
    Sample {
        manifest: Manifest::new(root, entries, &limits).unwrap(),
        contents,
    }
}

/// Sends every file of `sample` through `writer`, in chunks of `chunk`.
fn send_all(writer: &mut TreeWriter, sample: &Sample, chunk: usize) {
    for (index, entry) in sample.manifest.entries().iter().enumerate() {
        if entry.is_folder() {
            continue;
        }
        let data = &sample.contents[index];
        for piece in data.chunks(chunk) {
            writer.write(index, piece).unwrap();
        }
        writer
            .finish_file(index, blake3::hash(data).as_bytes())
            .unwrap();
    }
}

fn project() -> Sample {
    sample(&[
        ("src", None, false, 1_700_000_000),
        ("src/bin", None, false, 1_700_000_100),
        (
            "src/bin/main.rs",
            Some(b"fn main() {}\n"),
            false,
            1_700_000_200,
        ),
        ("empty", None, false, 1_650_000_000),
        ("empty/deeper", None, false, 1_650_000_001),
        ("报告 2024", None, false, 1_700_000_300),
        (
            "报告 2024/café ☕.txt",
            Some("crème brûlée\n".as_bytes()),
            false,
            1_500_000_000,
        ),
        ("run.sh", Some(b"#!/bin/sh\necho hi\n"), true, 1_700_000_400),
        ("zero", Some(b""), false, 0),
        ("big.bin", Some(&[7u8; 300_000]), false, 1_700_000_500),
    ])
}

#[test]
fn a_tree_lands_whole_with_its_folders_names_contents_modes_and_times() {
    let dest = tempfile::tempdir().unwrap();
    let tree = project();
    let mut writer = TreeWriter::create(dest.path(), "project", tree.manifest.clone()).unwrap();
    let staging = writer.staging_path().to_path_buf();
    assert!(staging.starts_with(dest.path().join(PARTIALS_DIR)));
    send_all(&mut writer, &tree, 64 * 1024);
    // Nothing under the final name before the commit.
    assert_eq!(names(dest.path()), [PARTIALS_DIR]);
    let landed = writer.commit().unwrap().path;
    assert_eq!(landed, dest.path().join("project"));
    assert!(!staging.exists());
    assert_eq!(names(&dest.path().join(PARTIALS_DIR)), Vec::<String>::new());

    let walked = walk(&landed);
    let mut expected = Walked::new();
    for (index, entry) in tree.manifest.entries().iter().enumerate() {
        let data = &tree.contents[index];
        let (folder, mode) = match entry.kind {
            EntryKind::Folder => (true, 0o700),
            EntryKind::File {
                executable: true, ..
            } => (false, 0o700),
            EntryKind::File { .. } => (false, 0o600),
        };
        let hash = if folder {
            [0; 32]
        } else {
            *blake3::hash(data).as_bytes()
        };
        expected.insert(
            entry.path.to_string(),
            (
                folder,
                data.len() as u64,
                hash,
                mode,
                entry.mtime.secs() as i64,
                i64::from(entry.mtime.nanos()),
            ),
        );
    }
    assert_eq!(walked, expected);
    let root = std::fs::metadata(&landed).unwrap();
    assert_eq!((root.mtime(), root.mtime_nsec()), (1_600_000_000, 5_000));
}

#[test]
fn a_second_tree_of_the_same_name_lands_beside_the_first() {
    let dest = tempfile::tempdir().unwrap();
    let tree = project();
    let mut landed = Vec::new();
    for _ in 0..3 {
        let mut writer =
            TreeWriter::create(dest.path(), "photos.2024", tree.manifest.clone()).unwrap();
        send_all(&mut writer, &tree, 1000);
        landed.push(writer.commit().unwrap().path);
    }
    assert_eq!(
        landed,
        [
            dest.path().join("photos.2024"),
            dest.path().join("photos.2024 (1)"),
            dest.path().join("photos.2024 (2)"),
        ]
    );
    assert_eq!(walk(&landed[0]), walk(&landed[2]));
    // A file of the name, in another case, is never replaced either.
    std::fs::write(dest.path().join("Notes"), b"mine").unwrap();
    let mut writer = TreeWriter::create(dest.path(), "notes", tree.manifest.clone()).unwrap();
    send_all(&mut writer, &tree, 1000);
    assert_eq!(writer.commit().unwrap().path, dest.path().join("notes (1)"));
    assert_eq!(std::fs::read(dest.path().join("Notes")).unwrap(), b"mine");
}

#[test]
fn a_folder_swapped_for_a_link_mid_tree_redirects_nothing() {
    let dest = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let tree = sample(&[
        ("sub", None, false, 1),
        ("sub/one", Some(b"first"), false, 1),
        ("sub/two", Some(b"second"), false, 1),
        ("sub/inner", None, false, 1),
        ("sub/inner/three", Some(b"third"), false, 1),
    ]);
    let mut writer = TreeWriter::create(dest.path(), "tree", tree.manifest.clone()).unwrap();
    writer.write(1, b"first").unwrap();
    writer
        .finish_file(1, blake3::hash(b"first").as_bytes())
        .unwrap();
    // Between two files: the folder is moved away and a link to a folder
    // outside the destination takes its place.
    let staged_sub = writer.staging_path().join("sub");
    std::fs::rename(&staged_sub, dest.path().join("moved")).unwrap();
    std::os::unix::fs::symlink(outside.path(), &staged_sub).unwrap();
    // Still held open, the folder the writer made takes the next file,
    // wherever it went; the link is never followed.
    writer.write(2, b"second").unwrap();
    writer
        .finish_file(2, blake3::hash(b"second").as_bytes())
        .unwrap();
    assert_eq!(
        std::fs::read(dest.path().join("moved/two")).unwrap(),
        b"second"
    );
    // Let go of every folder: the next file must reach its folder again,
    // by name, and finds the link.
    writer.folders.clear();
    let err = writer.write(4, b"third").unwrap_err();
    assert!(
        matches!(&err, TreeWriteError::Tampered { what, .. } if what.contains("link")),
        "{err}"
    );
    let err = writer.commit().unwrap_err();
    assert!(matches!(err, TreeWriteError::Tampered { .. }), "{err}");
    assert!(err.to_string().contains("sub"), "{err}");
    assert_eq!(names(outside.path()), Vec::<String>::new());
    // Nothing under the final name either.
    assert_eq!(names(dest.path()), [PARTIALS_DIR, "moved"]);
}

#[test]
fn a_link_planted_at_the_final_name_is_neither_followed_nor_replaced() {
    let dest = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let tree = project();
    let mut writer = TreeWriter::create(dest.path(), "project", tree.manifest.clone()).unwrap();
    send_all(&mut writer, &tree, 4096);
    std::os::unix::fs::symlink(outside.path(), dest.path().join("project")).unwrap();
    assert_eq!(
        writer.commit().unwrap().path,
        dest.path().join("project (1)")
    );
    assert_eq!(names(outside.path()), Vec::<String>::new());
    let planted = std::fs::symlink_metadata(dest.path().join("project")).unwrap();
    assert!(planted.file_type().is_symlink());
}

#[test]
fn a_link_planted_where_a_file_goes_is_refused_not_followed() {
    let dest = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let tree = sample(&[("a", Some(b"data"), false, 1)]);
    let mut writer = TreeWriter::create(dest.path(), "t", tree.manifest.clone()).unwrap();
    std::os::unix::fs::symlink(outside.path().join("a"), writer.staging_path().join("a")).unwrap();
    let err = writer.write(0, b"data").unwrap_err();
    assert!(matches!(err, TreeWriteError::Tampered { .. }), "{err}");
    assert_eq!(names(outside.path()), Vec::<String>::new());
}

#[test]
fn hostile_trees_are_refused_before_anything_is_written() {
    let dest = tempfile::tempdir().unwrap();
    let limits = TreeLimits::default();
    // What a raw peer sends: entries unchecked.
    let raw = |entries: &[(&str, u8)]| {
        let mut out = (entries.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&[0; 12]);
        for &(path, kind) in entries {
            out.extend_from_slice(&(path.len() as u16).to_be_bytes());
            out.extend_from_slice(path.as_bytes());
            out.extend_from_slice(&[kind, 0]);
            out.extend_from_slice(&[0; 20]);
        }
        out
    };
    let deep: Vec<String> = (1..=40).map(|n| vec!["d"; n].join("/")).collect();
    let deep: Vec<(&str, u8)> = deep.iter().map(|p| (p.as_str(), 0)).collect();
    let unsafe_tree: fn(&ManifestError) -> bool = |e| matches!(e, ManifestError::Unsafe(_));
    let over_limit: fn(&ManifestError) -> bool = |e| matches!(e, ManifestError::Limit(_));
    let mut tight = limits;
    tight.max_entries = 1;
    for (what, bytes, limits, expected) in [
        ("parent", raw(&[("../escape", 1)]), limits, unsafe_tree),
        (
            "climb",
            raw(&[("a", 0), ("a/../../escape", 1)]),
            limits,
            unsafe_tree,
        ),
        ("absolute", raw(&[("/tmp/escape", 1)]), limits, unsafe_tree),
        (
            "separator",
            raw(&[("a\\..\\escape", 1)]),
            limits,
            unsafe_tree,
        ),
        (
            "case",
            raw(&[("README", 1), ("readme", 1)]),
            limits,
            unsafe_tree,
        ),
        (
            "folder and file",
            raw(&[("a", 0), ("a", 1)]),
            limits,
            unsafe_tree,
        ),
        ("too deep", raw(&deep), limits, over_limit),
        ("too many", raw(&[("a", 1), ("b", 1)]), tight, over_limit),
    ] {
        // What a receiver does: no manifest, no writer, nothing on disk.
        let refused = Manifest::decode(&bytes, &limits).expect_err(what);
        assert!(expected(&refused), "{what}: {refused}");
    }
    // A refused top-level name writes nothing at all.
    let tree = project();
    for name in ["..", ".", "a/b", "/abs", "con", ""] {
        let err = TreeWriter::create(dest.path(), name, tree.manifest.clone()).unwrap_err();
        assert!(matches!(err, TreeWriteError::BadName(_)), "{name:?}: {err}");
    }
    assert_eq!(names(dest.path()), Vec::<String>::new());
}

#[test]
fn files_that_are_not_what_was_announced_are_refused() {
    let dest = tempfile::tempdir().unwrap();
    let tree = sample(&[("a", Some(b"abc"), false, 1), ("b", Some(b"xyz"), false, 1)]);
    let mut writer = TreeWriter::create(dest.path(), "t", tree.manifest.clone()).unwrap();
    let err = writer.write(0, b"abcd").unwrap_err();
    assert!(matches!(
        err,
        TreeWriteError::Peer(TreePeerFault::PastEnd { size: 3, .. })
    ));
    writer.write(0, b"ab").unwrap();
    let err = writer.write(1, b"x").unwrap_err();
    assert!(matches!(
        err,
        TreeWriteError::Misuse(TreeWriterMisuse::AnotherFileOpen { open: 0, asked: 1 })
    ));
    let err = writer
        .finish_file(0, blake3::hash(b"abc").as_bytes())
        .unwrap_err();
    assert!(matches!(
        err,
        TreeWriteError::Peer(TreePeerFault::Short { written: 2, .. })
    ));
    writer.write(0, b"abX").unwrap();
    let err = writer
        .finish_file(0, blake3::hash(b"abc").as_bytes())
        .unwrap_err();
    assert!(matches!(
        err,
        TreeWriteError::Peer(TreePeerFault::HashMismatch { .. })
    ));
    // Sent again, right this time.
    writer.write(0, b"abc").unwrap();
    writer
        .finish_file(0, blake3::hash(b"abc").as_bytes())
        .unwrap();
    let err = writer.write(0, b"a").unwrap_err();
    assert!(matches!(
        err,
        TreeWriteError::Misuse(TreeWriterMisuse::AlreadyVerified(0))
    ));
    let staging = writer.staging_path().to_path_buf();
    let err = writer.commit().unwrap_err();
    assert!(matches!(
        err,
        TreeWriteError::Misuse(TreeWriterMisuse::Unverified { .. })
    ));
    // An abandoned tree is only its staging folder.
    assert_eq!(names(dest.path()), [PARTIALS_DIR]);
    assert_eq!(names(&staging), ["a"]);
}

fn many_small_files(count: usize) -> Sample {
    let limits = TreeLimits::default();
    let mut entries = Vec::new();
    let mut contents = Vec::new();
    let folders = 100;
    for folder in 0..folders {
        entries.push(Entry {
            path: TreePath::new(&format!("d{folder:03}"), &limits).unwrap(),
            kind: EntryKind::Folder,
            mtime: Mtime::new(1_700_000_000, 0).unwrap(),
        });
        contents.push(Vec::new());
        for n in 0..count / folders {
            let data = format!("file {n} of folder {folder}\n")
                .repeat(1 + n % 20)
                .into_bytes();
            entries.push(Entry {
                path: TreePath::new(&format!("d{folder:03}/f{n:04}.txt"), &limits).unwrap(),
                kind: EntryKind::File {
                    size: data.len() as u64,
                    executable: n % 7 == 0,
                },
                mtime: Mtime::new(1_700_000_000 + n as u64, 0).unwrap(),
            });
            contents.push(data);
        }
    }
    Sample {
        manifest: Manifest::new(Mtime::EPOCH, entries, &limits).unwrap(),
        contents,
    }
}

#[test]
fn ten_thousand_small_files_in_one_tree_take_two_syncs() {
    let dest = tempfile::tempdir().unwrap();
    let tree = many_small_files(10_000);
    assert_eq!(tree.manifest.file_count(), 10_000);
    let started = Instant::now();
    let mut writer = TreeWriter::create(dest.path(), "many", tree.manifest.clone()).unwrap();
    send_all(&mut writer, &tree, 64 * 1024);
    let written = started.elapsed();
    assert_eq!(
        writer.sync_calls(),
        0,
        "nothing is synced while files are written"
    );
    let committed = writer.commit().unwrap();
    let total = started.elapsed();
    println!(
        "10,000 files, {} bytes: written in {written:?}, committed in {:?} (total {total:?}), {} sync calls",
        tree.manifest.total_size(),
        total - written,
        committed.sync_calls,
    );
    if cfg!(target_os = "linux") {
        assert_eq!(
            committed.sync_calls, 2,
            "one syncfs, one fsync of the destination"
        );
    }
    assert_eq!(walk(&committed.path).len(), 10_100);
}

#[test]
#[ignore = "the cost of an fsync per entry, for comparison: run by hand"]
fn ten_thousand_small_files_with_an_fsync_each() {
    let dest = tempfile::tempdir().unwrap();
    let tree = many_small_files(10_000);
    let started = Instant::now();
    let mut writer = TreeWriter::create(dest.path(), "many", tree.manifest.clone())
        .unwrap()
        .durability(Durability::EachEntry);
    send_all(&mut writer, &tree, 64 * 1024);
    let written = started.elapsed();
    let committed = writer.commit().unwrap();
    println!(
        "10,000 files with an fsync each: written in {written:?}, total {:?}, {} sync calls",
        started.elapsed(),
        committed.sync_calls
    );
    // Every entry, the staging folder, the destination.
    assert_eq!(committed.sync_calls, 10_100 + 2);
}

/// Writes files of `tree` in order until `stop_at` (whole, and finished),
/// then the first `half` bytes of file `stop_at`, and drops the writer: a
/// transfer cut in the middle of a file.
fn cut_at(writer: &mut TreeWriter, tree: &Sample, stop_at: usize, half: usize) {
    for (index, entry) in tree.manifest.entries().iter().enumerate() {
        if entry.is_folder() {
            continue;
        }
        let data = &tree.contents[index];
        if index == stop_at {
            writer.write(index, &data[..half]).unwrap();
            return;
        }
        writer.write(index, data).unwrap();
        writer
            .finish_file(index, blake3::hash(data).as_bytes())
            .unwrap();
    }
}

#[test]
fn a_tree_taken_up_again_lists_what_it_holds_and_goes_on_from_there() {
    let dest = tempfile::tempdir().unwrap();
    let tree = project();
    let key = ResumeKey::from_bytes([5; ResumeKey::LEN]);
    let big = tree
        .manifest
        .entries()
        .iter()
        .position(|e| e.path.as_str() == "big.bin")
        .unwrap();
    let (mut writer, held) =
        TreeWriter::open(dest.path(), "project", tree.manifest.clone(), key, &[]).unwrap();
    assert!(held.is_empty(), "a new tree holds nothing");
    cut_at(&mut writer, &tree, big, 100_000);
    drop(writer);

    let (mut writer, held) =
        TreeWriter::open(dest.path(), "project", tree.manifest.clone(), key, &[]).unwrap();
    // Every file before big.bin with bytes, whole; big.bin's first 100,000.
    let mut expected = Vec::new();
    for (index, data) in tree.contents.iter().enumerate().take(big + 1) {
        if tree.manifest.entries()[index].is_folder() || data.is_empty() {
            continue;
        }
        let held_len = if index == big { 100_000 } else { data.len() };
        expected.push(HeldFile {
            index: index as u32,
            offset: held_len as u64,
            prefix_hash: *blake3::hash(&data[..held_len]).as_bytes(),
        });
    }
    assert_eq!(held, expected);
    // The sender confirms them: whole files are only finished, big.bin
    // goes on from 100,000; `zero` (0 bytes, not held) is sent as usual.
    for (index, entry) in tree.manifest.entries().iter().enumerate() {
        if entry.is_folder() {
            continue;
        }
        let data = &tree.contents[index];
        let from = held
            .iter()
            .find(|h| h.index as usize == index)
            .map_or(0, |h| h.offset as usize);
        if from < data.len() {
            writer.write_at(index, from as u64, &data[from..]).unwrap();
        }
        writer
            .finish_file(index, blake3::hash(data).as_bytes())
            .unwrap();
    }
    let landed = writer.commit().unwrap().path;
    // As a tree sent in one go lands.
    let other = tempfile::tempdir().unwrap();
    let mut whole = TreeWriter::create(other.path(), "project", tree.manifest.clone()).unwrap();
    send_all(&mut whole, &tree, 64 * 1024);
    assert_eq!(walk(&landed), walk(&whole.commit().unwrap().path));
    assert_eq!(names(&dest.path().join(PARTIALS_DIR)), Vec::<String>::new());
}

#[test]
fn a_held_file_sent_again_from_its_start_replaces_what_was_held() {
    let dest = tempfile::tempdir().unwrap();
    let tree = project();
    let key = ResumeKey::from_bytes([6; ResumeKey::LEN]);
    let (mut writer, _) =
        TreeWriter::open(dest.path(), "project", tree.manifest.clone(), key, &[]).unwrap();
    let main_rs = 2;
    assert_eq!(
        tree.manifest.entries()[main_rs].path.as_str(),
        "src/bin/main.rs"
    );
    cut_at(&mut writer, &tree, 7, 3);
    drop(writer);
    let (mut writer, held) =
        TreeWriter::open(dest.path(), "project", tree.manifest.clone(), key, &[]).unwrap();
    assert_eq!(held[0].index as usize, main_rs);
    // Neither 0 nor what is held: refused, nothing written.
    let err = writer.write_at(main_rs, 5, b"x").unwrap_err();
    assert!(
        matches!(
            err,
            TreeWriteError::Misuse(TreeWriterMisuse::WrongOffset { offset: 5, .. })
        ),
        "{err}"
    );
    // From 0 with other bytes (the sender's file changed, same size).
    let changed = b"fn main() {1}";
    assert_eq!(changed.len(), tree.contents[main_rs].len());
    writer.write_at(main_rs, 0, changed).unwrap();
    writer
        .finish_file(main_rs, blake3::hash(changed).as_bytes())
        .unwrap();
    let path = writer.staging_path().join("src/bin/main.rs");
    assert_eq!(std::fs::read(path).unwrap(), changed);
    // A file held whole whose hash the sender does not share is removed.
    let cafe = 6;
    let err = writer.finish_file(cafe, &[0; 32]).unwrap_err();
    assert!(
        matches!(
            err,
            TreeWriteError::Peer(TreePeerFault::HashMismatch { .. })
        ),
        "{err}"
    );
}

#[test]
fn a_staging_folder_of_another_manifest_or_changed_behind_its_back_starts_afresh() {
    let dest = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"not yours").unwrap();
    let tree = project();
    let key = ResumeKey::from_bytes([8; ResumeKey::LEN]);
    let (mut writer, _) =
        TreeWriter::open(dest.path(), "project", tree.manifest.clone(), key, &[]).unwrap();
    let staging = writer.staging_path().to_path_buf();
    cut_at(&mut writer, &tree, 9, 10);
    drop(writer);
    // Another manifest under the same key: nothing is held, nothing of
    // the first tree stays.
    let other = sample(&[("only", Some(b"one file"), false, 1)]);
    let (writer, held) =
        TreeWriter::open(dest.path(), "project", other.manifest.clone(), key, &[]).unwrap();
    assert!(held.is_empty());
    assert_eq!(names(&staging), Vec::<String>::new());
    drop(writer);
    // A held file swapped for a link to a file outside: the link is not
    // followed, nothing outside is read or changed, the tree starts again.
    let (mut writer, _) =
        TreeWriter::open(dest.path(), "project", tree.manifest.clone(), key, &[]).unwrap();
    cut_at(&mut writer, &tree, 9, 10);
    drop(writer);
    let run_sh = staging.join("run.sh");
    std::fs::remove_file(&run_sh).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), &run_sh).unwrap();
    let (mut writer, held) =
        TreeWriter::open(dest.path(), "project", tree.manifest.clone(), key, &[]).unwrap();
    assert!(held.is_empty(), "{held:?}");
    send_all(&mut writer, &tree, 1000);
    writer.commit().unwrap();
    assert_eq!(
        std::fs::read(outside.path().join("secret")).unwrap(),
        b"not yours"
    );
    assert_eq!(names(outside.path()), ["secret"]);
}

#[test]
fn what_a_writer_leaves_is_what_opening_again_lists_and_spares_reading_it() {
    let dest = tempfile::tempdir().unwrap();
    let tree = project();
    let key = ResumeKey::from_bytes([9; ResumeKey::LEN]);
    let (mut writer, _) =
        TreeWriter::open(dest.path(), "project", tree.manifest.clone(), key, &[]).unwrap();
    cut_at(&mut writer, &tree, 9, 100_000);
    let left = writer.held();
    let staging = writer.staging_path().to_path_buf();
    drop(writer);
    // Read back from the disk, the same.
    let (writer, read_back) =
        TreeWriter::open(dest.path(), "project", tree.manifest.clone(), key, &[]).unwrap();
    assert_eq!(read_back, left);
    drop(writer);
    // Given what was left, a file found at the length listed is taken at
    // the listed hash, unread: here its bytes were changed (same length)
    // behind the writer's back, which only a writer of this process does.
    std::fs::write(staging.join("run.sh"), b"#!/bin/sh\necho ho\n").unwrap();
    let (_, known) =
        TreeWriter::open(dest.path(), "project", tree.manifest.clone(), key, &left).unwrap();
    assert_eq!(known, left, "nothing read back");
    // A file at another length than listed is read back.
    std::fs::write(staging.join("run.sh"), b"#!/bin").unwrap();
    let (_, partly) =
        TreeWriter::open(dest.path(), "project", tree.manifest.clone(), key, &left).unwrap();
    let run_sh = partly.iter().find(|h| h.index == 7).unwrap();
    assert_eq!(
        (run_sh.offset, run_sh.prefix_hash),
        (6, *blake3::hash(b"#!/bin").as_bytes())
    );
}
