//! Why a tree path or a manifest was refused, split by whose fault it is:
//! bytes that do not parse ([`ManifestMalformed`]), a tree that would be
//! unsafe to create ([`UnsafeTree`], [`UnsafePath`]), and a tree over the
//! receiver's limits ([`TreeLimitExceeded`]).
//!
//! Every message quotes the peer's text escaped (see
//! [`Escaped`](crate::filename::Escaped)), so it is safe to print.

use crate::code::Code;
use crate::filename::{Escaped, FileNameError};
use thiserror::Error;

/// Why a path inside a tree is not safe to create.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum UnsafePath {
    /// The path is empty: it names the top-level folder itself.
    #[error("the path is empty")]
    Empty,
    /// The path starts with `/`: it names something outside the tree.
    #[error("{0} is an absolute path")]
    Absolute(Escaped),
    /// Two `/` in a row, or one at the end: a component is empty.
    #[error("{0} has an empty component (\"//\" or a trailing \"/\")")]
    EmptyComponent(Escaped),
    /// A `.` or `..` component: it would name the same folder or leave it.
    #[error("{0} has a \".\" or \"..\" component")]
    DotComponent(Escaped),
    /// A component the file-name rules refuse (a `\`, a `:`, a control
    /// character, a Windows device name, …).
    #[error("{path}: {error}")]
    BadComponent {
        /// The whole path, escaped.
        path: Escaped,
        /// Why its component was refused.
        error: FileNameError,
    },
}

/// A tree over one of the receiver's [`TreeLimits`](super::TreeLimits).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TreeLimitExceeded {
    /// A path longer than `max_path_bytes`.
    #[error("{path} is {len} bytes long; at most {max} are allowed")]
    PathTooLong {
        /// The path, escaped (and cut short).
        path: Escaped,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A path deeper than `max_depth`.
    #[error("{path} is {depth} folders deep; at most {max} are allowed")]
    TooDeep {
        /// The path, escaped (and cut short).
        path: Escaped,
        /// Its components.
        depth: usize,
        /// The limit.
        max: usize,
    },
    /// More entries than `max_entries`.
    #[error("the tree has {count} entries; at most {max} are allowed")]
    TooManyEntries {
        /// The entries announced or given.
        count: u64,
        /// The limit.
        max: usize,
    },
    /// Files larger together than `max_total_bytes`.
    #[error("the files add up to more than {max} bytes")]
    TooLarge {
        /// The limit.
        max: u64,
    },
    /// An encoded manifest longer than `max_manifest_bytes`.
    #[error("the manifest is {len} bytes long; at most {max} are allowed")]
    ManifestTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl TreeLimitExceeded {
    /// The code a receiver refuses the tree with: [`Code::FILE_TOO_LARGE`]
    /// for [`TooLarge`](Self::TooLarge) (as for one file over the size
    /// limit), else [`Code::TREE_TOO_LARGE`].
    pub fn code(&self) -> Code {
        match self {
            TreeLimitExceeded::TooLarge { .. } => Code::FILE_TOO_LARGE,
            _ => Code::TREE_TOO_LARGE,
        }
    }
}

/// Why a single tree path was refused ([`TreePath::new`](super::TreePath::new)).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PathError {
    /// It breaks a rule: refused whatever the limits.
    #[error(transparent)]
    Unsafe(#[from] UnsafePath),
    /// It is over a limit.
    #[error(transparent)]
    Limit(#[from] TreeLimitExceeded),
}

/// The bytes of a manifest do not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ManifestMalformed {
    /// The bytes end before a field is complete.
    #[error("manifest truncated: {field} of entry {entry} needs more bytes")]
    Truncated {
        /// The entry being read (0 for the header).
        entry: usize,
        /// The field being read.
        field: &'static str,
    },
    /// Bytes are left over after the last entry.
    #[error("manifest has {extra} bytes after its last entry")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// A path is not valid UTF-8.
    #[error("manifest entry {entry}: the path is not valid UTF-8")]
    InvalidUtf8 {
        /// The entry.
        entry: usize,
    },
    /// A field holds a value the format does not allow (an unknown kind, a
    /// mode bit other than "executable", a size or mode on a directory,
    /// nanoseconds of a billion or more).
    #[error("manifest entry {entry}: {field} is invalid: {why}")]
    InvalidValue {
        /// The entry (0 for the header).
        entry: usize,
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// A well-formed manifest whose tree is not safe to create.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum UnsafeTree {
    /// An entry's path breaks the path rules.
    #[error("manifest entry {entry}: {error}")]
    Path {
        /// The entry.
        entry: usize,
        /// Why.
        error: UnsafePath,
    },
    /// The same path twice, both folders or both files.
    #[error("manifest entry {entry}: {path} is listed twice")]
    Duplicate {
        /// The second entry.
        entry: usize,
        /// The path, escaped.
        path: Escaped,
    },
    /// The same path as a folder and as a file.
    #[error("manifest entry {entry}: {path} is listed both as a folder and as a file")]
    FileAndFolder {
        /// The second entry.
        entry: usize,
        /// The path, escaped.
        path: Escaped,
    },
    /// Two names in one folder that are one name to a file system that
    /// ignores case or Unicode normalisation (`Makefile` and `makefile`,
    /// `é` composed and decomposed).
    #[error("manifest entry {entry}: {path} and {other} are one name where case is ignored")]
    NameClash {
        /// The second entry.
        entry: usize,
        /// Its path, escaped.
        path: Escaped,
        /// The earlier path it clashes with, escaped.
        other: Escaped,
    },
    /// An entry whose folder is not listed before it.
    #[error("manifest entry {entry}: the folder of {path} is not listed before it")]
    MissingParent {
        /// The entry.
        entry: usize,
        /// Its path, escaped.
        path: Escaped,
    },
    /// An entry inside something listed as a file.
    #[error("manifest entry {entry}: {path} is inside a file")]
    ParentIsFile {
        /// The entry.
        entry: usize,
        /// Its path, escaped.
        path: Escaped,
    },
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The bytes do not parse.
    #[error(transparent)]
    Malformed(#[from] ManifestMalformed),
    /// The tree would be unsafe to create.
    #[error(transparent)]
    Unsafe(#[from] UnsafeTree),
    /// The tree is over a limit.
    #[error(transparent)]
    Limit(#[from] TreeLimitExceeded),
}

impl ManifestError {
    /// The code a receiver refuses the tree with (`REJECT`,
    /// `docs/PROTOCOL.md` §5): [`Code::BAD_MANIFEST`] for bytes that do not
    /// parse, [`Code::BAD_FILE_NAME`] for an unsafe path or tree,
    /// [`Code::FILE_TOO_LARGE`] for files over `max_total_bytes`, and
    /// [`Code::TREE_TOO_LARGE`] for any other limit.
    pub fn code(&self) -> Code {
        match self {
            ManifestError::Malformed(_) => Code::BAD_MANIFEST,
            ManifestError::Unsafe(_) => Code::BAD_FILE_NAME,
            ManifestError::Limit(limit) => limit.code(),
        }
    }

    /// The error for entry `entry` whose path was refused.
    pub(crate) fn path(entry: usize, error: PathError) -> ManifestError {
        match error {
            PathError::Unsafe(error) => UnsafeTree::Path { entry, error }.into(),
            PathError::Limit(limit) => limit.into(),
        }
    }
}
