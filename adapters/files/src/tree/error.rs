//! Why a tree could not be written, split by whose fault it is.

use ferry_core::filename::FileNameError;
use std::io;
use std::path::PathBuf;

/// Why a [`TreeWriter`](super::TreeWriter) refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TreeWriteError {
    /// The tree's top-level name is not safe to create (the peer's fault;
    /// the protocol's `BAD_FILE_NAME`). Nothing was written.
    #[error("the folder's name is refused: {0}")]
    BadName(#[from] FileNameError),
    /// The bytes sent do not match the manifest or the hash (the peer's
    /// fault).
    #[error(transparent)]
    Peer(#[from] TreePeerFault),
    /// The writer was called wrongly (the caller's fault; never caused by
    /// what a peer sends, if the caller checks the protocol's rules first).
    #[error(transparent)]
    Misuse(#[from] TreeWriterMisuse),
    /// Something other than this writer changed the tree being staged: an
    /// entry it made is gone, or is something else now (a folder swapped
    /// for a link). Nothing was written through the change; the tree stays
    /// in its staging folder and is never moved to its final name.
    #[error("{path} was changed while the tree was written ({what}); the tree is left where it was staged")]
    Tampered {
        /// The entry, as a path for messages.
        path: PathBuf,
        /// What was found.
        what: &'static str,
    },
    /// The disk failed (full, permissions, …).
    #[error("{path}: {source}")]
    Io {
        /// What was being worked on.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// The peer sent a file that is not what its manifest or hash said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TreePeerFault {
    /// More bytes than the manifest's size for the file.
    #[error("{path}: data past its size of {size} bytes")]
    PastEnd {
        /// The file, as sent.
        path: String,
        /// Its size in the manifest.
        size: u64,
    },
    /// The file was finished with fewer bytes than its size.
    #[error("{path}: {written} of its {size} bytes arrived")]
    Short {
        /// The file, as sent.
        path: String,
        /// Its size in the manifest.
        size: u64,
        /// What arrived.
        written: u64,
    },
    /// The BLAKE3 of what arrived is not the sender's (the protocol's
    /// `HASH_MISMATCH`). The file is removed; the rest of the tree stays.
    #[error("{path}: the BLAKE3 hash of what arrived does not match the sender's")]
    HashMismatch {
        /// The file, as sent.
        path: String,
    },
}

/// The writer was called in a way its documentation rules out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TreeWriterMisuse {
    /// No entry has this index.
    #[error("the manifest has no entry {0}")]
    NoSuchEntry(usize),
    /// The entry is a folder.
    #[error("entry {0} is a folder, not a file")]
    NotAFile(usize),
    /// Another file is being written: files are written one at a time.
    #[error("entry {asked} was written to while entry {open} is not finished")]
    AnotherFileOpen {
        /// The file being written.
        open: usize,
        /// The one asked for.
        asked: usize,
    },
    /// The file was finished and verified already.
    #[error("entry {0} is already verified")]
    AlreadyVerified(usize),
    /// A file's first write was at neither 0 nor the length held of it,
    /// or a later write not where the last one ended.
    #[error("entry {index} written at {offset}, where {expected} was expected")]
    WrongOffset {
        /// The file.
        index: usize,
        /// Where the write was asked.
        offset: u64,
        /// Where it could go.
        expected: u64,
    },
    /// [`commit`](super::TreeWriter::commit) before every file was verified.
    #[error("{path} is not verified yet")]
    Unverified {
        /// The first such file, as sent.
        path: String,
    },
}
