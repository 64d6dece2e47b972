//! [`Manifest`]: the entries of a tree, in the order they are created, and
//! the rules that make the whole tree safe to create.

use super::error::{ManifestError, TreeLimitExceeded, UnsafeTree};
use super::path::{clash_key, TreePath};
use super::TreeLimits;
use crate::filename::Escaped;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::hash::{BuildHasherDefault, Hasher};

/// A modification time: seconds and nanoseconds since the Unix epoch.
/// Times before 1970 are sent as 0 (the wire has no signed integers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mtime {
    secs: u64,
    nanos: u32,
}

impl Mtime {
    /// The epoch itself.
    pub const EPOCH: Mtime = Mtime { secs: 0, nanos: 0 };

    /// `secs` and `nanos` after the epoch; `None` if `nanos` is a billion
    /// or more (that would be another second).
    pub const fn new(secs: u64, nanos: u32) -> Option<Mtime> {
        if nanos >= 1_000_000_000 {
            return None;
        }
        Some(Mtime { secs, nanos })
    }

    /// Whole seconds since the epoch.
    pub const fn secs(self) -> u64 {
        self.secs
    }

    /// Nanoseconds past [`secs`](Self::secs), below a billion.
    pub const fn nanos(self) -> u32 {
        self.nanos
    }
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A folder, created empty; entries listed after it go inside.
    Folder,
    /// A regular file.
    File {
        /// Its length in bytes.
        size: u64,
        /// Whether it is executable (the only mode bit a tree carries).
        executable: bool,
    },
}

/// One folder or file of a tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Where it goes, below the top-level folder.
    pub path: TreePath,
    /// Folder or file.
    pub kind: EntryKind,
    /// When it was last modified, applied once it is written (a folder's
    /// once everything in it is).
    pub mtime: Mtime,
}

impl Entry {
    /// Whether it is a folder.
    pub fn is_folder(&self) -> bool {
        matches!(self.kind, EntryKind::Folder)
    }

    /// Its size: a file's length, 0 for a folder.
    pub fn size(&self) -> u64 {
        match self.kind {
            EntryKind::Folder => 0,
            EntryKind::File { size, .. } => size,
        }
    }
}

/// The entries of a tree, checked as a whole: safe to create, one after
/// the other, below a new top-level folder.
///
/// Every path passes [`TreePath`]'s rules and, across entries:
///
/// * **parents first**: an entry's folder is listed, as a folder, before
///   it (entries of the top-level folder have none). Folders are never
///   implied: an empty folder is listed like any other, and the order is
///   one a receiver can create in a single pass;
/// * **no path twice**: neither twice the same kind nor as a folder and a
///   file;
/// * **no clash**: no two names in one folder have the same [`clash_key`]
///   (they would be one entry on a file system that ignores case or
///   normalisation);
/// * within [`TreeLimits`]: entries, depth, path length, total size.
///
/// A `Manifest` cannot be built otherwise: [`Manifest::new`] and
/// [`Manifest::decode`](Manifest::decode) both check all of this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    root_mtime: Mtime,
    entries: Vec<Entry>,
    total_size: u64,
    files: usize,
}

impl Manifest {
    /// Checks `entries` (with the top-level folder's own `root_mtime`)
    /// against the rules above and `limits`. The first entry at fault, in
    /// order, is the one reported.
    pub fn new(
        root_mtime: Mtime,
        entries: Vec<Entry>,
        limits: &TreeLimits,
    ) -> Result<Manifest, ManifestError> {
        let max_entries = super::codec::max_entries(limits);
        if entries.len() > max_entries {
            return Err(TreeLimitExceeded::TooManyEntries {
                count: entries.len() as u64,
                max: max_entries,
            }
            .into());
        }
        let mut checker = Checker::new(limits);
        for (index, entry) in entries.iter().enumerate() {
            checker.admit(&entries[..index], entry)?;
        }
        Ok(Manifest {
            root_mtime,
            total_size: checker.total_size,
            files: checker.files,
            entries,
        })
    }

    /// The top-level folder's modification time.
    pub fn root_mtime(&self) -> Mtime {
        self.root_mtime
    }

    /// The entries, parents before what they hold.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The bytes of all files together.
    pub fn total_size(&self) -> u64 {
        self.total_size
    }

    /// How many entries are files.
    pub fn file_count(&self) -> usize {
        self.files
    }

    /// For each entry, the index of the folder entry it is in (`None`:
    /// the top-level folder). Always an earlier index.
    pub fn parents(&self) -> Vec<Option<usize>> {
        let mut folders: BTreeMap<&str, usize> = BTreeMap::new();
        let mut parents = Vec::with_capacity(self.entries.len());
        for (index, entry) in self.entries.iter().enumerate() {
            // Listed before it: checked when the manifest was made.
            parents.push(entry.path.parent().and_then(|p| folders.get(p).copied()));
            if entry.is_folder() {
                folders.insert(entry.path.as_str(), index);
            }
        }
        parents
    }

    /// Takes the entries back.
    pub fn into_entries(self) -> Vec<Entry> {
        self.entries
    }
}

/// A path or clash key as the [`Checker`] remembers it: 16 bytes of its
/// BLAKE3, so that what a checker holds per entry is fixed whatever the
/// path (see [`DECODED_BYTES_PER_ENTRY`](super::DECODED_BYTES_PER_ENTRY)).
/// A hit is confirmed against the entry it names before it counts; finding
/// two paths with one digest is a 2^64 birthday search.
type Digest = [u8; 16];

/// Digests to entries. The digest is already uniform, so it is its own
/// hash (its first 8 bytes): no hashing twice, and nothing a peer could
/// aim at without breaking BLAKE3.
type Digests = hashbrown::HashMap<Digest, u32, BuildHasherDefault<DigestHasher>>;

/// Hashes a [`Digest`] as its first 8 bytes.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8).take(1) {
            let mut word = [0; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = u64::from_le_bytes(word);
        }
    }

    // The slice's length prefix: always 16.
    fn write_usize(&mut self, _: usize) {}
}

fn digest(bytes: &[u8]) -> Digest {
    let mut digest = [0; 16];
    digest.copy_from_slice(&blake3::hash(bytes).as_bytes()[..16]);
    digest
}

/// The key under which a name in a folder clashes: the name's
/// [`clash_key`], then the folder as its entry's index + 1 (0: the
/// top-level folder).
fn clash_digest(folder: usize, name: &str) -> Digest {
    let mut key = clash_key(name).into_bytes();
    key.extend_from_slice(&(folder as u64).to_be_bytes());
    digest(&key)
}

/// Checks entries one at a time, in order, so that a decoder can stop at
/// the first entry at fault without reading the rest.
#[derive(Debug)]
pub(crate) struct Checker {
    limits: TreeLimits,
    /// Every path so far, by digest: its entry.
    paths: Digests,
    /// Every `(folder, clash key)` so far, by digest: its entry.
    keys: Digests,
    total_size: u64,
    files: usize,
    /// The folder entry the last entry admitted was in: entries of one
    /// folder usually follow each other, and this spares looking it up.
    last_parent: Option<u32>,
}

impl Checker {
    pub(crate) fn new(limits: &TreeLimits) -> Self {
        Checker {
            limits: *limits,
            paths: Digests::default(),
            keys: Digests::default(),
            total_size: 0,
            files: 0,
            last_parent: None,
        }
    }

    /// Entries the checker has room for without growing.
    pub(crate) fn capacity(&self) -> usize {
        self.paths.capacity().max(self.keys.capacity())
    }

    /// Makes room for `entries` more, within what was reserved for them.
    pub(crate) fn reserve(&mut self, entries: usize) {
        self.paths.reserve(entries);
        self.keys.reserve(entries);
    }

    /// Admits `entry`, the one after `earlier`, or says why not. Its path
    /// is checked again against this checker's limits: it was checked
    /// against the limits it was built with, which may be looser.
    pub(crate) fn admit(&mut self, earlier: &[Entry], entry: &Entry) -> Result<(), ManifestError> {
        TreePath::new(entry.path.as_str(), &self.limits)
            .map_err(|e| ManifestError::path(earlier.len(), e))?;
        self.admit_checked(earlier, entry)
    }

    /// [`admit`](Self::admit) for an entry whose path was built with this
    /// checker's limits.
    pub(crate) fn admit_checked(
        &mut self,
        earlier: &[Entry],
        entry: &Entry,
    ) -> Result<(), ManifestError> {
        let index = earlier.len();
        let path = entry.path.as_str();
        let escaped = || Escaped::new(path);
        // The index of the entry at `path` (by its digest), if one was
        // admitted.
        let find = |paths: &Digests, path: &str, digest: &Digest| {
            paths
                .get(digest)
                .map(|&i| i as usize)
                .filter(|&i| earlier[i].path.as_str() == path)
        };
        let own = digest(path.as_bytes());
        if let Some(other) = find(&self.paths, path, &own) {
            return Err(if earlier[other].is_folder() == entry.is_folder() {
                UnsafeTree::Duplicate {
                    entry: index,
                    path: escaped(),
                }
            } else {
                UnsafeTree::FileAndFolder {
                    entry: index,
                    path: escaped(),
                }
            }
            .into());
        }
        let cached = self
            .last_parent
            .map(|at| at as usize)
            .filter(|&at| Some(earlier[at].path.as_str()) == entry.path.parent());
        let folder = match (entry.path.parent(), cached) {
            (None, _) => 0,
            (Some(_), Some(at)) => at + 1,
            (Some(parent), None) => match find(&self.paths, parent, &digest(parent.as_bytes())) {
                Some(parent) if earlier[parent].is_folder() => parent + 1,
                Some(_) => {
                    return Err(UnsafeTree::ParentIsFile {
                        entry: index,
                        path: escaped(),
                    }
                    .into())
                }
                None => {
                    return Err(UnsafeTree::MissingParent {
                        entry: index,
                        path: escaped(),
                    }
                    .into())
                }
            },
        };
        let key = clash_digest(folder, entry.path.name());
        let clashes = self.keys.get(&key).map(|&i| i as usize).filter(|&other| {
            let other = &earlier[other].path;
            other.parent() == entry.path.parent()
                && clash_key(other.name()) == clash_key(entry.path.name())
        });
        if let Some(other) = clashes {
            return Err(UnsafeTree::NameClash {
                entry: index,
                path: escaped(),
                other: Escaped::new(earlier[other].path.as_str()),
            }
            .into());
        }
        if let EntryKind::File { size, .. } = entry.kind {
            self.total_size = self
                .total_size
                .checked_add(size)
                .filter(|&total| total <= self.limits.max_total_bytes)
                .ok_or(TreeLimitExceeded::TooLarge {
                    max: self.limits.max_total_bytes,
                })?;
            self.files += 1;
        }
        // Fits: at most `max_entries(limits)` entries, itself at most
        // u32::MAX.
        let at = index as u32;
        self.keys.insert(key, at);
        self.paths.insert(own, at);
        // Fits like `at`.
        self.last_parent = folder.checked_sub(1).map(|f| f as u32);
        Ok(())
    }
}

impl Manifest {
    /// A manifest from entries a [`Checker`] admitted one by one.
    pub(crate) fn from_checked(root_mtime: Mtime, entries: Vec<Entry>, checker: &Checker) -> Self {
        Manifest {
            root_mtime,
            entries,
            total_size: checker.total_size,
            files: checker.files,
        }
    }
}
