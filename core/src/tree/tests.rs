//! The manifest's rules and codec: hostile trees, round trips, garbage.

use super::*;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use proptest::prelude::*;

const AT: Mtime = Mtime::EPOCH;

fn folder(path: &str) -> Entry {
    Entry {
        path: TreePath::new(path, &TreeLimits::default()).unwrap(),
        kind: EntryKind::Folder,
        mtime: AT,
    }
}

fn file(path: &str, size: u64) -> Entry {
    Entry {
        path: TreePath::new(path, &TreeLimits::default()).unwrap(),
        kind: EntryKind::File {
            size,
            executable: false,
        },
        mtime: AT,
    }
}

fn build(entries: Vec<Entry>) -> Result<Manifest, ManifestError> {
    Manifest::new(AT, entries, &TreeLimits::default())
}

/// Encodes entries as they are, without the checks of `Manifest::new`, as
/// a hostile peer would.
fn raw(entries: &[(&str, u8, u8, u64)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    out.extend_from_slice(&[0; 12]);
    for &(path, kind, flags, size) in entries {
        out.extend_from_slice(&(path.len() as u16).to_be_bytes());
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&size.to_be_bytes());
        out.extend_from_slice(&[0; 12]);
    }
    out
}

fn decode(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    Manifest::decode(bytes, &TreeLimits::default())
}

#[test]
fn a_tree_with_nested_and_empty_folders_round_trips() {
    let manifest = build(vec![
        folder("src"),
        folder("src/bin"),
        file("src/bin/main.rs", 100),
        folder("empty"),
        file("README.md", 7),
        file("src/lib.rs", 0),
        Entry {
            kind: EntryKind::File {
                size: 3,
                executable: true,
            },
            mtime: Mtime::new(1_700_000_000, 999_999_999).unwrap(),
            ..file("run.sh", 0)
        },
    ])
    .unwrap();
    assert_eq!(manifest.total_size(), 110);
    assert_eq!(manifest.file_count(), 4);
    assert_eq!(
        manifest.parents(),
        [None, Some(0), Some(1), None, None, Some(0), None]
    );
    let bytes = manifest.encode();
    assert_eq!(decode(&bytes), Ok(manifest.clone()));
    assert_eq!(decode(&bytes).unwrap().encode(), bytes);
}

#[test]
fn hostile_trees_are_refused_with_the_entry_at_fault() {
    use ManifestError::{Limit, Malformed, Unsafe};
    type Expect = fn(&ManifestError) -> bool;
    let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        ("parent", raw(&[("..", 0, 0, 0)]), |e| {
            matches!(
                e,
                Unsafe(UnsafeTree::Path {
                    entry: 0,
                    error: UnsafePath::DotComponent(_)
                })
            )
        }),
        (
            "climb",
            raw(&[("a", 0, 0, 0), ("a/../../x", 1, 0, 1)]),
            |e| {
                matches!(
                    e,
                    Unsafe(UnsafeTree::Path {
                        entry: 1,
                        error: UnsafePath::DotComponent(_)
                    })
                )
            },
        ),
        ("absolute", raw(&[("/etc/passwd", 1, 0, 1)]), |e| {
            matches!(
                e,
                Unsafe(UnsafeTree::Path {
                    error: UnsafePath::Absolute(_),
                    ..
                })
            )
        }),
        ("backslash", raw(&[("a\\..\\..\\x", 1, 0, 1)]), |e| {
            matches!(
                e,
                Unsafe(UnsafeTree::Path {
                    error: UnsafePath::BadComponent { .. },
                    ..
                })
            )
        }),
        (
            "case",
            raw(&[("Makefile", 1, 0, 1), ("makefile", 1, 0, 1)]),
            |e| matches!(e, Unsafe(UnsafeTree::NameClash { entry: 1, .. })),
        ),
        (
            "case-folder",
            raw(&[("Docs", 0, 0, 0), ("docs", 1, 0, 0)]),
            |e| matches!(e, Unsafe(UnsafeTree::NameClash { entry: 1, .. })),
        ),
        (
            "normalisation",
            raw(&[("caf\u{e9}", 1, 0, 1), ("cafe\u{301}", 1, 0, 1)]),
            |e| matches!(e, Unsafe(UnsafeTree::NameClash { .. })),
        ),
        ("duplicate", raw(&[("a", 1, 0, 1), ("a", 1, 0, 1)]), |e| {
            matches!(e, Unsafe(UnsafeTree::Duplicate { entry: 1, .. }))
        }),
        (
            "file-and-folder",
            raw(&[("a", 0, 0, 0), ("a", 1, 0, 1)]),
            |e| matches!(e, Unsafe(UnsafeTree::FileAndFolder { entry: 1, .. })),
        ),
        (
            "folder-after-file",
            raw(&[("a", 1, 0, 1), ("a", 0, 0, 0)]),
            |e| matches!(e, Unsafe(UnsafeTree::FileAndFolder { entry: 1, .. })),
        ),
        ("missing-parent", raw(&[("a/b", 1, 0, 1)]), |e| {
            matches!(e, Unsafe(UnsafeTree::MissingParent { entry: 0, .. }))
        }),
        (
            "parent-listed-after",
            raw(&[("a/b", 1, 0, 1), ("a", 0, 0, 0)]),
            |e| matches!(e, Unsafe(UnsafeTree::MissingParent { entry: 0, .. })),
        ),
        (
            "inside-a-file",
            raw(&[("a", 1, 0, 1), ("a/b", 1, 0, 1)]),
            |e| matches!(e, Unsafe(UnsafeTree::ParentIsFile { entry: 1, .. })),
        ),
        (
            "too-large",
            raw(&[("a", 1, 0, u64::MAX), ("b", 1, 0, 2)]),
            |e| matches!(e, Limit(TreeLimitExceeded::TooLarge { .. })),
        ),
        (
            "overflow",
            raw(&[("a", 1, 0, 1 << 39), ("b", 1, 0, 1 << 39), ("c", 1, 0, 1)]),
            |e| matches!(e, Limit(TreeLimitExceeded::TooLarge { .. })),
        ),
        ("kind", raw(&[("a", 2, 0, 0)]), |e| {
            matches!(
                e,
                Malformed(ManifestMalformed::InvalidValue { field: "kind", .. })
            )
        }),
        ("mode-bits", raw(&[("a", 1, 0o2, 0)]), |e| {
            matches!(
                e,
                Malformed(ManifestMalformed::InvalidValue { field: "flags", .. })
            )
        }),
        ("executable-folder", raw(&[("a", 0, 1, 0)]), |e| {
            matches!(
                e,
                Malformed(ManifestMalformed::InvalidValue { field: "flags", .. })
            )
        }),
        ("sized-folder", raw(&[("a", 0, 0, 5)]), |e| {
            matches!(
                e,
                Malformed(ManifestMalformed::InvalidValue { field: "size", .. })
            )
        }),
        (
            "count-claims-more",
            {
                let mut bytes = raw(&[("a", 1, 0, 0)]);
                bytes[3] = 2;
                bytes
            },
            |e| matches!(e, Malformed(ManifestMalformed::Truncated { entry: 1, .. })),
        ),
        (
            "trailing",
            [raw(&[("a", 1, 0, 0)]), vec![0]].concat(),
            |e| matches!(e, Malformed(ManifestMalformed::TrailingBytes { extra: 1 })),
        ),
        (
            "huge-count",
            [&u32::MAX.to_be_bytes()[..], &[0; 12]].concat(),
            |e| matches!(e, Limit(TreeLimitExceeded::TooManyEntries { .. })),
        ),
        (
            "invalid-utf8",
            {
                let mut bytes = raw(&[("ab", 1, 0, 0)]);
                bytes[18] = 0xff;
                bytes
            },
            |e| matches!(e, Malformed(ManifestMalformed::InvalidUtf8 { entry: 0 })),
        ),
        (
            "nanos",
            {
                let mut bytes = raw(&[]);
                bytes[12..16].copy_from_slice(&1_000_000_000u32.to_be_bytes());
                bytes
            },
            |e| {
                matches!(
                    e,
                    Malformed(ManifestMalformed::InvalidValue {
                        field: "mtime_nanos",
                        ..
                    })
                )
            },
        ),
        ("empty-input", Vec::new(), |e| {
            matches!(
                e,
                Malformed(ManifestMalformed::Truncated {
                    entry: 0,
                    field: "count"
                })
            )
        }),
    ];
    for (name, bytes, expected) in cases {
        let err = decode(&bytes).expect_err(name);
        assert!(expected(&err), "{name}: {err:?}");
        let message = format!("{err}");
        assert!(!message.chars().any(char::is_control), "{message:?}");
    }
}

#[test]
fn limits_on_depth_count_and_length_are_checked_while_decoding() {
    let deep: Vec<String> = (1..=5)
        .map(|n| "d/".repeat(n).trim_end_matches('/').into())
        .collect();
    let entries: Vec<(&str, u8, u8, u64)> = deep.iter().map(|p| (p.as_str(), 0, 0, 0)).collect();
    let bytes = raw(&entries);
    let mut limits = TreeLimits::default();
    assert!(Manifest::decode(&bytes, &limits).is_ok());
    limits.max_depth = 4;
    assert!(matches!(
        Manifest::decode(&bytes, &limits),
        Err(ManifestError::Limit(TreeLimitExceeded::TooDeep {
            depth: 5,
            max: 4,
            ..
        }))
    ));
    limits = TreeLimits::default();
    limits.max_entries = 4;
    assert!(matches!(
        Manifest::decode(&bytes, &limits),
        Err(ManifestError::Limit(TreeLimitExceeded::TooManyEntries {
            count: 5,
            max: 4
        }))
    ));
    limits = TreeLimits::default();
    limits.max_path_bytes = 8;
    assert!(matches!(
        Manifest::decode(&bytes, &limits),
        Err(ManifestError::Limit(TreeLimitExceeded::PathTooLong {
            len: 9,
            max: 8,
            ..
        }))
    ));
    limits = TreeLimits::default();
    limits.max_manifest_bytes = bytes.len() - 1;
    assert!(matches!(
        Manifest::decode(&bytes, &limits),
        Err(ManifestError::Limit(
            TreeLimitExceeded::ManifestTooLong { .. }
        ))
    ));
    // `new` applies the same limits as `decode`.
    limits = TreeLimits::default();
    limits.max_depth = 4;
    let entries = Manifest::decode(&bytes, &TreeLimits::default())
        .unwrap()
        .into_entries();
    assert!(Manifest::new(AT, entries, &limits).is_err());
}

#[test]
fn each_refusal_has_the_code_of_its_row() {
    use crate::code::Code;
    let code =
        |bytes: &[u8], limits: &TreeLimits| Manifest::decode(bytes, limits).unwrap_err().code();
    let defaults = TreeLimits::default();
    // Bytes that do not parse.
    assert_eq!(code(&[0, 0, 0, 1], &defaults), Code::BAD_MANIFEST);
    assert_eq!(code(&raw(&[("a", 7, 0, 0)]), &defaults), Code::BAD_MANIFEST);
    // Unsafe paths and trees.
    assert_eq!(
        code(&raw(&[("..", 0, 0, 0)]), &defaults),
        Code::BAD_FILE_NAME
    );
    assert_eq!(
        code(&raw(&[("/etc", 0, 0, 0)]), &defaults),
        Code::BAD_FILE_NAME
    );
    assert_eq!(
        code(&raw(&[("A", 1, 0, 1), ("a", 1, 0, 1)]), &defaults),
        Code::BAD_FILE_NAME
    );
    // Limits: the total size is FILE_TOO_LARGE, the others TREE_TOO_LARGE.
    let mut limits = defaults;
    limits.max_total_bytes = 1;
    assert_eq!(code(&raw(&[("a", 1, 0, 2)]), &limits), Code::FILE_TOO_LARGE);
    limits = defaults;
    limits.max_entries = 1;
    assert_eq!(
        code(&raw(&[("a", 0, 0, 0), ("b", 0, 0, 0)]), &limits),
        Code::TREE_TOO_LARGE
    );
    limits = defaults;
    limits.max_depth = 1;
    assert_eq!(
        code(&raw(&[("a", 0, 0, 0), ("a/b", 0, 0, 0)]), &limits),
        Code::TREE_TOO_LARGE
    );
}

/// Folder names and file names, few enough that generated trees clash.
fn name() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "a", "B", "b", "c.txt", "Ünï", "报告", "x y", ".hidden",
    ])
    .prop_map(String::from)
}

/// A valid tree: each entry is a folder or a file inside one of the
/// folders made before it (or the top).
fn tree() -> impl Strategy<Value = Manifest> {
    let steps = prop::collection::vec(
        (
            any::<prop::sample::Index>(),
            name(),
            any::<bool>(),
            0u64..1 << 40,
            any::<bool>(),
            any::<u64>(),
            0u32..1_000_000_000,
        ),
        0..40,
    );
    (steps, any::<u64>()).prop_map(|(steps, root)| {
        let limits = TreeLimits::default();
        let mut entries: Vec<Entry> = Vec::new();
        for (at, name, is_folder, size, executable, secs, nanos) in steps {
            let folders: Vec<&str> = entries
                .iter()
                .filter(|e| e.is_folder())
                .map(|e| e.path.as_str())
                .collect();
            // One past the folders: the top-level folder.
            let parent = folders.get(at.index(folders.len() + 1)).copied();
            let path = match parent {
                Some(parent) => format!("{parent}/{name}"),
                None => name,
            };
            let Ok(path) = TreePath::new(&path, &limits) else {
                continue;
            };
            let kind = if is_folder {
                EntryKind::Folder
            } else {
                EntryKind::File { size, executable }
            };
            let entry = Entry {
                path,
                kind,
                mtime: Mtime::new(secs, nanos).unwrap(),
            };
            let mut candidate = entries.clone();
            candidate.push(entry);
            if Manifest::new(AT, candidate.clone(), &limits).is_ok() {
                entries = candidate;
            }
        }
        Manifest::new(Mtime::new(root, 0).unwrap(), entries, &limits).unwrap()
    })
}

/// Manifests as a hostile peer might send them: generated paths and
/// kinds, unchecked (clashes, duplicates, missing parents, bad kinds and
/// flags), sometimes with a byte changed or cut short.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    let entry = (
        prop::collection::vec(name(), 1..4),
        0u8..3,
        0u8..3,
        0u64..100,
    );
    (
        prop::collection::vec(entry, 0..12),
        any::<prop::sample::Index>(),
        any::<u8>(),
        0u8..3,
    )
        .prop_map(|(entries, at, byte, how)| {
            let owned: Vec<(String, u8, u8, u64)> = entries
                .into_iter()
                .map(|(parts, kind, flags, size)| {
                    let size = if kind == 0 { 0 } else { size };
                    (parts.join("/"), kind, flags, size)
                })
                .collect();
            let entries: Vec<(&str, u8, u8, u64)> = owned
                .iter()
                .map(|(path, kind, flags, size)| (path.as_str(), *kind, *flags, *size))
                .collect();
            let mut bytes = raw(&entries);
            match how {
                1 => {
                    let i = at.index(bytes.len());
                    bytes[i] = byte;
                }
                2 => bytes.truncate(at.index(bytes.len() + 1)),
                _ => {}
            }
            bytes
        })
}

proptest! {
    /// The decoder fed in any pieces refuses and accepts what a whole
    /// decode does, with the same error, and never holds more than the
    /// bound a server reserves from the offer.
    #[test]
    fn any_split_decodes_as_the_whole(
        bytes in prop_oneof![tree().prop_map(|m| m.encode()), hostile_bytes()],
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        tight in any::<bool>(),
    ) {
        let mut limits = TreeLimits::default();
        if tight {
            limits.max_entries = 6;
            limits.max_depth = 2;
            limits.max_path_bytes = 9;
        }
        let whole = Manifest::decode(&bytes, &limits);
        let bound = decoded_bytes_bound(bytes.len(), &limits);
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.push(bytes.len());
        points.sort_unstable();
        let mut decoder = ManifestDecoder::new(bytes.len(), &limits).unwrap();
        let mut from = 0;
        let mut fed = Ok(());
        for point in points {
            if point == from {
                continue;
            }
            fed = decoder.feed(&bytes[from..point]);
            from = point;
            prop_assert!(decoder.held_bytes() <= bound, "{} > {}", decoder.held_bytes(), bound);
            if fed.is_err() {
                break;
            }
        }
        let split = match fed {
            Ok(()) => decoder.finish(),
            Err(error) => Err(error),
        };
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn what_is_encoded_decodes_to_the_same_manifest(manifest in tree()) {
        let bytes = manifest.encode();
        let decoded = decode(&bytes).unwrap();
        prop_assert_eq!(&decoded, &manifest);
        prop_assert_eq!(decoded.encode(), bytes);
    }

    #[test]
    fn garbage_never_panics_and_what_decodes_re_encodes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(manifest) = decode(&bytes) {
            prop_assert_eq!(manifest.encode(), bytes);
        }
    }

    #[test]
    fn a_changed_byte_never_yields_an_unsafe_tree(manifest in tree(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = manifest.encode();
        if bytes.is_empty() { return Ok(()); }
        let i = at.index(bytes.len());
        bytes[i] = byte;
        if let Ok(changed) = decode(&bytes) {
            prop_assert_eq!(changed.encode(), bytes);
            // Still a valid tree: building it again from its entries passes.
            let again = Manifest::new(changed.root_mtime(), changed.entries().to_vec(), &TreeLimits::default());
            prop_assert_eq!(again, Ok(changed));
        }
    }

    #[test]
    fn every_prefix_of_a_manifest_is_refused_or_shorter(manifest in tree(), cut in any::<prop::sample::Index>()) {
        let bytes = manifest.encode();
        let cut = cut.index(bytes.len() + 1);
        if cut < bytes.len() {
            prop_assert!(decode(&bytes[..cut]).is_err());
        }
    }
}
