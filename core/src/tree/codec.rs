//! The bytes of a [`Manifest`], and back.
//!
//! ```text
//! manifest = count u32, root_mtime_secs u64, root_mtime_nanos u32, entry × count
//! entry    = path str, kind u8, flags u8, size u64, mtime_secs u64, mtime_nanos u32
//! ```
//!
//! Integers are big-endian and `str` is a `u16` length then UTF-8, as
//! everywhere in the protocol. `kind` is 0 for a folder, 1 for a file;
//! `flags` bit 0 is "executable", every other bit 0; a folder has `flags`
//! 0 and `size` 0; nanoseconds are below a billion. Anything else is
//! malformed, so every manifest has exactly one encoding: what decodes
//! re-encodes to the same bytes.

use super::error::{ManifestError, ManifestMalformed, TreeLimitExceeded};
use super::manifest::{Checker, Entry, EntryKind, Manifest, Mtime};
use super::path::TreePath;
use super::TreeLimits;
use alloc::vec::Vec;

/// `kind` of a folder.
const KIND_FOLDER: u8 = 0;
/// `kind` of a file.
const KIND_FILE: u8 = 1;
/// `flags` bit of an executable file.
const FLAG_EXECUTABLE: u8 = 1;

/// Bytes of the manifest's header: count, root mtime.
pub const MANIFEST_HEADER_LEN: usize = 4 + 8 + 4;
/// Bytes of an entry besides its path's UTF-8: the path's length, kind,
/// flags, size, mtime.
pub const ENTRY_FIXED_LEN: usize = 2 + 1 + 1 + 8 + 8 + 4;

impl Manifest {
    /// The manifest's bytes (see the module's documentation).
    pub fn encode(&self) -> Vec<u8> {
        let paths: usize = self.entries().iter().map(|e| e.path.as_str().len()).sum();
        let mut out = Vec::with_capacity(
            MANIFEST_HEADER_LEN + self.entries().len() * ENTRY_FIXED_LEN + paths,
        );
        // Fits: `Manifest::new` and `decode` hold at most u32::MAX entries.
        let count = u32::try_from(self.entries().len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        put_mtime(&mut out, self.root_mtime());
        for entry in self.entries() {
            let path = entry.path.as_str().as_bytes();
            // Fits: a `TreePath` is at most `MAX_TREE_PATH_BYTES`.
            let len = u16::try_from(path.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(path);
            let (kind, flags, size) = match entry.kind {
                EntryKind::Folder => (KIND_FOLDER, 0, 0),
                EntryKind::File { size, executable } => (
                    KIND_FILE,
                    if executable { FLAG_EXECUTABLE } else { 0 },
                    size,
                ),
            };
            out.extend_from_slice(&[kind, flags]);
            out.extend_from_slice(&size.to_be_bytes());
            put_mtime(&mut out, entry.mtime);
        }
        out
    }

    /// Decodes and checks a manifest: malformed bytes, an unsafe tree and
    /// a tree over `limits` are all refused, the first entry at fault in
    /// order reported. The length and the entry count are checked before
    /// anything is allocated for them, and memory grows only with entries
    /// actually read.
    pub fn decode(bytes: &[u8], limits: &TreeLimits) -> Result<Manifest, ManifestError> {
        if bytes.len() > limits.max_manifest_bytes {
            return Err(TreeLimitExceeded::ManifestTooLong {
                len: bytes.len(),
                max: limits.max_manifest_bytes,
            }
            .into());
        }
        let mut reader = Reader { bytes, entry: 0 };
        let count = reader.u32("count")?;
        let max_entries = max_entries(limits);
        if count as usize > max_entries {
            return Err(TreeLimitExceeded::TooManyEntries {
                count: u64::from(count),
                max: max_entries,
            }
            .into());
        }
        let root_mtime = reader.mtime()?;
        // Never more than the bytes can hold: a count is only a claim.
        let room = reader.bytes.len() / (ENTRY_FIXED_LEN + 1);
        let mut entries = Vec::with_capacity((count as usize).min(room));
        let mut checker = Checker::new(limits);
        for index in 0..count as usize {
            reader.entry = index;
            let entry = reader.entry(limits)?;
            checker.admit(&entries, &entry)?;
            entries.push(entry);
        }
        if !reader.bytes.is_empty() {
            return Err(ManifestMalformed::TrailingBytes {
                extra: reader.bytes.len(),
            }
            .into());
        }
        Ok(Manifest::from_checked(root_mtime, entries, &checker))
    }
}

/// The most entries a manifest may have under `limits` (and the wire's
/// `u32` count).
pub(crate) fn max_entries(limits: &TreeLimits) -> usize {
    limits.max_entries.min(u32::MAX as usize)
}

fn put_mtime(out: &mut Vec<u8>, mtime: Mtime) {
    out.extend_from_slice(&mtime.secs().to_be_bytes());
    out.extend_from_slice(&mtime.nanos().to_be_bytes());
}

/// Reads fields off the front of the manifest's bytes.
struct Reader<'b> {
    bytes: &'b [u8],
    /// The entry being read, for errors.
    entry: usize,
}

impl<'b> Reader<'b> {
    fn take(&mut self, len: usize, field: &'static str) -> Result<&'b [u8], ManifestMalformed> {
        if self.bytes.len() < len {
            return Err(ManifestMalformed::Truncated {
                entry: self.entry,
                field,
            });
        }
        let (taken, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], ManifestMalformed> {
        let taken = self.take(N, field)?;
        let mut array = [0; N];
        array.copy_from_slice(taken);
        Ok(array)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, ManifestMalformed> {
        self.array(field).map(u32::from_be_bytes)
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, ManifestMalformed> {
        self.array(field).map(u64::from_be_bytes)
    }

    fn invalid(&self, field: &'static str, why: &'static str) -> ManifestMalformed {
        ManifestMalformed::InvalidValue {
            entry: self.entry,
            field,
            why,
        }
    }

    fn mtime(&mut self) -> Result<Mtime, ManifestMalformed> {
        let secs = self.u64("mtime_secs")?;
        let nanos = self.u32("mtime_nanos")?;
        Mtime::new(secs, nanos).ok_or_else(|| self.invalid("mtime_nanos", "a billion or more"))
    }

    fn entry(&mut self, limits: &TreeLimits) -> Result<Entry, ManifestError> {
        let len = u16::from_be_bytes(self.array("path")?);
        let raw = self.take(usize::from(len), "path")?;
        let path = core::str::from_utf8(raw)
            .map_err(|_| ManifestMalformed::InvalidUtf8 { entry: self.entry })?;
        let path = TreePath::new(path, limits).map_err(|e| ManifestError::path(self.entry, e))?;
        let [kind, flags] = self.array("kind")?;
        let size = self.u64("size")?;
        let mtime = self.mtime()?;
        let kind = match kind {
            KIND_FOLDER if flags != 0 => {
                return Err(self.invalid("flags", "set on a folder").into())
            }
            KIND_FOLDER if size != 0 => {
                return Err(self.invalid("size", "not 0 for a folder").into())
            }
            KIND_FOLDER => EntryKind::Folder,
            KIND_FILE if flags & !FLAG_EXECUTABLE != 0 => {
                return Err(self.invalid("flags", "a bit other than executable").into())
            }
            KIND_FILE => EntryKind::File {
                size,
                executable: flags & FLAG_EXECUTABLE != 0,
            },
            _ => {
                return Err(self
                    .invalid("kind", "neither folder (0) nor file (1)")
                    .into())
            }
        };
        Ok(Entry { path, kind, mtime })
    }
}
