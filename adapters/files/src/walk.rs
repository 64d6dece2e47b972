//! Walking a folder to send it whole: its [`Manifest`], the files behind
//! it, and what is left out.
//!
//! Links inside the folder are never followed: a link, a device, a fifo or
//! a socket is skipped and reported ([`Skipped`]), and the rest goes on.
//! The walk applies the receiver's rules (`docs/PROTOCOL.md` §6.12.2) with
//! the [`TreeLimits`] given, and refuses a folder a receiver would refuse,
//! naming the entries at fault ([`WalkError::Refused`]), so that nothing
//! is offered that is sure to be rejected. Entries are listed parents
//! first, each folder's entries sorted by name: the same folder always
//! gives the same manifest.

use ferry_core::tree::{clash_key, Entry, EntryKind, Manifest, Mtime, TreeLimits, TreePath};
use std::collections::HashMap;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// At most this many entries are named when a folder is refused.
pub const REFUSED_NAMED: usize = 10;

/// A folder walked for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WalkedTree {
    /// The tree's top-level name (the folder's own name).
    pub name: String,
    /// The folder walked, as it was given.
    pub root: PathBuf,
    /// Its entries, checked with the limits the walk was given.
    pub manifest: Manifest,
    /// For each file of the manifest, in order: its index among the
    /// entries and where it is on disk.
    pub files: Vec<(u32, PathBuf)>,
    /// What was left out, in the order met.
    pub skipped: Vec<Skipped>,
}

/// An entry of the folder that is not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Skipped {
    /// Its path inside the folder, `/`-separated (not valid UTF-8 parts
    /// shown with U+FFFD).
    pub path: String,
    /// What it is: "a link", "a device", "a fifo", "a socket".
    pub what: &'static str,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "skipped {}: {}",
            ferry_core::filename::Escaped::new(&self.path),
            self.what
        )
    }
}

/// Why a folder cannot be sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalkError {
    /// What was given is not a folder.
    #[error("{0} is not a folder")]
    NotAFolder(PathBuf),
    /// Reading the folder failed.
    #[error("{path}: {source}")]
    Io {
        /// What was being read.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A receiver would refuse the folder: each line names an entry and
    /// why (at most [`REFUSED_NAMED`]; `more` counts the others).
    #[error("a receiver would refuse this folder: {}{}", .entries.join("; "), if *.more > 0 { format!(" (and {} more)", .more) } else { String::new() })]
    Refused {
        /// The entries at fault, each with why.
        entries: Vec<String>,
        /// Further entries at fault, not named.
        more: usize,
    },
}

/// Walks `root` (a folder; a link given as `root` itself is followed, as
/// the user named it, but none inside it) and builds the manifest a
/// receiver with `limits` takes. Blocking disk work: not for an event loop.
pub fn walk_tree(root: &Path, limits: &TreeLimits) -> Result<WalkedTree, WalkError> {
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WalkError::Io {
            path: path.clone(),
            source,
        }
    };
    let meta = fs::metadata(root).map_err(io_error(root))?;
    if !meta.is_dir() {
        return Err(WalkError::NotAFolder(root.to_path_buf()));
    }
    let name = root
        .canonicalize()
        .map_err(io_error(root))?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut walk = Walk {
        limits,
        entries: Vec::new(),
        files: Vec::new(),
        skipped: Vec::new(),
        faults: Vec::new(),
        more: 0,
    };
    if let Err(e) = ferry_core::filename::check_file_name(&name) {
        walk.fault(format!("the folder's own name: {e}"));
    }
    walk.visit(root, "")?;
    if !walk.faults.is_empty() {
        return Err(WalkError::Refused {
            entries: walk.faults,
            more: walk.more,
        });
    }
    let manifest =
        Manifest::new(mtime(&meta), walk.entries, limits).map_err(|e| WalkError::Refused {
            entries: vec![e.to_string()],
            more: 0,
        })?;
    Ok(WalkedTree {
        name,
        root: root.to_path_buf(),
        manifest,
        files: walk.files,
        skipped: walk.skipped,
    })
}

struct Walk<'a> {
    limits: &'a TreeLimits,
    entries: Vec<Entry>,
    files: Vec<(u32, PathBuf)>,
    skipped: Vec<Skipped>,
    faults: Vec<String>,
    more: usize,
}

impl Walk<'_> {
    fn fault(&mut self, fault: String) {
        if self.faults.len() < REFUSED_NAMED {
            self.faults.push(fault);
        } else {
            self.more += 1;
        }
    }

    fn visit(&mut self, dir: &Path, prefix: &str) -> Result<(), WalkError> {
        let io_error = |source| WalkError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut names: Vec<_> = fs::read_dir(dir)
            .map_err(io_error)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io_error)?;
        names.sort();
        // Clash keys of this folder's names, to the name first seen.
        let mut keys: HashMap<String, String> = HashMap::new();
        for os_name in names {
            let on_disk = dir.join(&os_name);
            let shown = os_name.to_string_lossy().into_owned();
            let path = format!("{prefix}{shown}");
            let meta = fs::symlink_metadata(&on_disk).map_err(|source| WalkError::Io {
                path: on_disk.clone(),
                source,
            })?;
            let kind = meta.file_type();
            let what = if kind.is_symlink() {
                Some("a link")
            } else if kind.is_block_device() || kind.is_char_device() {
                Some("a device")
            } else if kind.is_fifo() {
                Some("a fifo")
            } else if kind.is_socket() {
                Some("a socket")
            } else {
                None
            };
            if let Some(what) = what {
                self.skipped.push(Skipped { path, what });
                continue;
            }
            if self.entries.len() >= self.limits.max_entries {
                self.fault(format!(
                    "more than {} entries (the receiver's limit)",
                    self.limits.max_entries
                ));
                return Ok(());
            }
            if os_name.to_str().is_none() {
                self.fault(format!(
                    "{}: the name is not valid UTF-8",
                    ferry_core::filename::Escaped::new(&path)
                ));
                continue;
            }
            let tree_path = match TreePath::new(&path, self.limits) {
                Ok(p) => p,
                Err(e) => {
                    self.fault(e.to_string());
                    continue;
                }
            };
            if let Some(other) = keys.insert(clash_key(&shown), path.clone()) {
                self.fault(format!(
                    "{} and {} are one name where case is ignored",
                    ferry_core::filename::Escaped::new(&other),
                    ferry_core::filename::Escaped::new(&path)
                ));
                continue;
            }
            let index = self.entries.len() as u32;
            if meta.is_dir() {
                self.entries.push(Entry {
                    path: tree_path,
                    kind: EntryKind::Folder,
                    mtime: mtime(&meta),
                });
                self.visit(&on_disk, &format!("{path}/"))?;
            } else {
                self.entries.push(Entry {
                    path: tree_path,
                    kind: EntryKind::File {
                        size: meta.len(),
                        executable: meta.permissions().mode() & 0o100 != 0,
                    },
                    mtime: mtime(&meta),
                });
                self.files.push((index, on_disk));
            }
        }
        Ok(())
    }
}

/// A modification time as the manifest carries it (before 1970: 0).
fn mtime(meta: &Metadata) -> Mtime {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| Mtime::new(d.as_secs(), d.subsec_nanos()))
        .unwrap_or(Mtime::EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::TreeWriter;
    use std::os::unix::net::UnixListener;

    fn hash(path: &Path) -> [u8; 32] {
        *blake3::hash(&fs::read(path).unwrap()).as_bytes()
    }

    #[test]
    fn a_folder_walks_to_a_manifest_that_writes_back_identical() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("src ☕");
        fs::create_dir_all(root.join("a/b/c")).unwrap();
        fs::create_dir_all(root.join("empty")).unwrap();
        fs::write(root.join("a/b/one.txt"), "one\n").unwrap();
        fs::write(root.join("zero"), b"").unwrap();
        fs::write(root.join("run.sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("a/link")).unwrap();
        let _socket = UnixListener::bind(root.join("sock")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
            0,
        )
        .unwrap();

        let walked = walk_tree(&root, &TreeLimits::default()).unwrap();
        assert_eq!(walked.name, "src ☕");
        let paths: Vec<&str> = walked
            .manifest
            .entries()
            .iter()
            .map(|e| e.path.as_str())
            .collect();
        assert_eq!(
            paths,
            [
                "a",
                "a/b",
                "a/b/c",
                "a/b/one.txt",
                "empty",
                "run.sh",
                "zero"
            ]
        );
        let skipped: Vec<String> = walked.skipped.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            skipped,
            [
                "skipped \"a/link\": a link",
                "skipped \"fifo\": a fifo",
                "skipped \"sock\": a socket"
            ]
        );
        assert_eq!(walked.files.len(), 3);
        let run = &walked.manifest.entries()[5];
        assert_eq!(
            run.kind,
            EntryKind::File {
                size: 10,
                executable: true
            }
        );

        // Written back with the tree writer: the same files.
        let dest = tempfile::tempdir().unwrap();
        let mut writer =
            TreeWriter::create(dest.path(), &walked.name, walked.manifest.clone()).unwrap();
        for (index, path) in &walked.files {
            let data = fs::read(path).unwrap();
            if !data.is_empty() {
                writer.write(*index as usize, &data).unwrap();
            }
            writer.finish_file(*index as usize, &hash(path)).unwrap();
        }
        let committed = writer.commit().unwrap();
        let again = walk_tree(&committed.path, &TreeLimits::default()).unwrap();
        assert_eq!(again.manifest, walked.manifest);
        assert!(again.skipped.is_empty());
    }

    #[test]
    fn a_folder_a_receiver_would_refuse_is_refused_naming_its_entries() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("bad");
        fs::create_dir_all(root.join("sub")).unwrap();
        for name in ["Makefile", "makefile", "aux.txt", "dot.", "sub/ok"] {
            fs::write(root.join(name), "x").unwrap();
        }
        let Err(WalkError::Refused { entries, more }) = walk_tree(&root, &TreeLimits::default())
        else {
            panic!("not refused");
        };
        assert_eq!(more, 0);
        let all = entries.join("\n");
        assert_eq!(entries.len(), 3, "{all}");
        assert!(
            all.contains("Makefile") && all.contains("makefile"),
            "{all}"
        );
        assert!(all.contains("aux.txt"), "{all}");
        assert!(all.contains("dot."), "{all}");

        // Past the limits: depth, and the count, named without walking on.
        let deep = dir.path().join("deep");
        fs::create_dir_all(deep.join("1/2/3")).unwrap();
        let mut limits = TreeLimits::default();
        limits.max_depth = 2;
        assert!(matches!(
            walk_tree(&deep, &limits),
            Err(WalkError::Refused { .. })
        ));
        let mut limits = TreeLimits::default();
        limits.max_entries = 2;
        let Err(WalkError::Refused { entries, .. }) = walk_tree(&deep, &limits) else {
            panic!("not refused");
        };
        assert!(entries[0].contains("more than 2 entries"), "{entries:?}");

        // More than ten faults: ten named, the rest counted.
        let many = dir.path().join("many");
        fs::create_dir_all(&many).unwrap();
        for n in 0..12 {
            fs::write(many.join(format!("f{n:02}.")), "x").unwrap();
        }
        let Err(WalkError::Refused { entries, more }) = walk_tree(&many, &TreeLimits::default())
        else {
            panic!("not refused");
        };
        assert_eq!((entries.len(), more), (REFUSED_NAMED, 2));

        // A file is not a folder.
        assert!(matches!(
            walk_tree(&root.join("sub/ok"), &TreeLimits::default()),
            Err(WalkError::NotAFolder(_))
        ));
    }
}
