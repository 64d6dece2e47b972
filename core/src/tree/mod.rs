//! Trees: a folder sent whole, as a [`Manifest`] of its entries, and the
//! rules that make it safe to create on the receiver's disk.
//!
//! A tree arrives under a top-level name (checked like any file name,
//! [`check_file_name`](crate::filename::check_file_name)); the manifest
//! lists what goes below it: folders (empty ones too) and files, each with
//! a [`TreePath`] relative to the top, a size, the executable bit and a
//! modification time. A receiver decodes it with [`Manifest::decode`],
//! which refuses, before anything exists on disk:
//!
//! * bytes that do not parse ([`ManifestMalformed`]);
//! * paths that could land outside the tree or clash with each other
//!   ([`UnsafePath`], [`UnsafeTree`]): absolute paths, `.`/`..`, empty
//!   components, components the file-name rules refuse (a `\` inside one
//!   among them), the same path twice or as a folder and a file, entries
//!   whose folder is not listed before them or is a file, and names in one
//!   folder that are equal ignoring case and Unicode normalisation
//!   ([`clash_key`]);
//! * trees over the receiver's [`TreeLimits`] ([`TreeLimitExceeded`]):
//!   entries, depth, path length, total size, manifest length.
//!
//! What the protocol does with a manifest (the frames that carry it, how
//! the files follow it, resume) is proposed in `docs/FOLDERS.md`; this
//! module is its codec and its rules, with no I/O, and builds without
//! `std`.
//!
//! ```
//! use ferry_core::tree::{Entry, EntryKind, Manifest, Mtime, TreeLimits, TreePath};
//!
//! let limits = TreeLimits::default();
//! let at = Mtime::new(1_700_000_000, 0).unwrap();
//! let entry = |path: &str, kind| Entry { path: TreePath::new(path, &limits).unwrap(), kind, mtime: at };
//! let manifest = Manifest::new(at, vec![
//!     entry("src", EntryKind::Folder),
//!     entry("src/main.rs", EntryKind::File { size: 12, executable: false }),
//!     entry("run.sh", EntryKind::File { size: 30, executable: true }),
//! ], &limits).unwrap();
//! let bytes = manifest.encode();
//! assert_eq!(Manifest::decode(&bytes, &limits), Ok(manifest));
//!
//! // A name that clashes ignoring case is refused before anything is written.
//! let clash = Manifest::new(at, vec![
//!     entry("Makefile", EntryKind::File { size: 1, executable: false }),
//!     entry("makefile", EntryKind::File { size: 1, executable: false }),
//! ], &limits);
//! assert!(clash.is_err());
//! ```

mod codec;
mod error;
mod limits;
mod manifest;
mod path;
#[cfg(test)]
mod tests;

pub use codec::{
    decoded_bytes_bound, entries_bound, ManifestDecoder, DECODED_BYTES_PER_ENTRY, ENTRY_FIXED_LEN,
    MANIFEST_HEADER_LEN, MAX_MANIFEST_PART,
};
pub use error::{
    ManifestError, ManifestMalformed, PathError, TreeLimitExceeded, UnsafePath, UnsafeTree,
};
pub use limits::TreeLimits;
pub use manifest::{Entry, EntryKind, Manifest, Mtime};
pub use path::{clash_key, TreePath, MAX_TREE_PATH_BYTES};
