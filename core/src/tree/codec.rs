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
use super::path::{TreePath, MAX_TREE_PATH_BYTES};
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
/// The most bytes of a manifest one `TREE_MANIFEST` part may carry: what a
/// receiver checks on the arrival of one frame stays small (at most about
/// 2,400 entries) whatever its largest frame.
pub const MAX_MANIFEST_PART: usize = 65_536;

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
    /// actually read. The same as a [`ManifestDecoder`] fed all the bytes
    /// at once.
    pub fn decode(bytes: &[u8], limits: &TreeLimits) -> Result<Manifest, ManifestError> {
        let mut decoder = ManifestDecoder::new(bytes.len(), limits)?;
        decoder.feed(bytes)?;
        decoder.finish()
    }
}

/// Decodes and checks a manifest as its bytes arrive, each entry as soon
/// as it is whole, so that a receiver never decodes a whole manifest in
/// one go: what a part of the manifest costs to check is in proportion to
/// its length, and the first entry at fault is refused as soon as it
/// arrives. What a decoder holds is the entries so far and at most one
/// incomplete entry's bytes, never the manifest's bytes as such
/// ([`held_bytes`](Self::held_bytes), within
/// [`decoded_bytes_bound`]).
///
/// Fed in any pieces, it accepts and refuses exactly what
/// [`Manifest::decode`] does, with the same errors. After an error the
/// decoder is spent: every later call returns that error again.
///
/// ```
/// use ferry_core::tree::{Entry, EntryKind, Manifest, ManifestDecoder, Mtime, TreeLimits, TreePath};
///
/// let limits = TreeLimits::default();
/// let at = Mtime::new(1_700_000_000, 0).unwrap();
/// let file = Entry {
///     path: TreePath::new("notes.txt", &limits).unwrap(),
///     kind: EntryKind::File { size: 5, executable: false },
///     mtime: at,
/// };
/// let manifest = Manifest::new(at, vec![file], &limits).unwrap();
/// let bytes = manifest.encode();
///
/// let mut decoder = ManifestDecoder::new(bytes.len(), &limits).unwrap();
/// for piece in bytes.chunks(7) {
///     decoder.feed(piece).unwrap();
/// }
/// assert_eq!(decoder.finish(), Ok(manifest));
/// ```
#[derive(Debug)]
pub struct ManifestDecoder {
    limits: TreeLimits,
    /// The manifest's length, as announced.
    len: usize,
    /// Bytes fed so far.
    fed: usize,
    /// The header's or an entry's bytes while they are not whole.
    pending: Vec<u8>,
    /// The entry count and the top-level folder's mtime, once read.
    header: Option<(usize, Mtime)>,
    entries: Vec<Entry>,
    checker: Checker,
    /// UTF-8 bytes of the entries' paths.
    path_bytes: usize,
    /// The error that spent this decoder.
    failed: Option<ManifestError>,
}

/// Heap bytes a decoded entry may make a receiver hold besides its path's
/// UTF-8, while the manifest is decoded and after: the entry itself (twice:
/// a growing vector may have room for as many again), the allocator's
/// overhead for its path, the receiving connection's note of its size, and
/// the decoder's two hash tables (a 16-byte digest, an index and a control
/// byte in each, 64 bytes allowed for the room a table just grown keeps
/// free).
pub const DECODED_BYTES_PER_ENTRY: usize = 2 * core::mem::size_of::<Entry>() + 16 + 16 + 2 * 64;

/// The most heap bytes decoding a manifest of `manifest_len` bytes under
/// `limits` can make a receiver hold, at any point and with the decoded
/// [`Manifest`] afterwards: its paths (never more than the bytes) and, for
/// as many entries as that length can hold, [`DECODED_BYTES_PER_ENTRY`].
/// What a server should reserve from the offer on, before a byte of the
/// manifest arrives.
pub fn decoded_bytes_bound(manifest_len: usize, limits: &TreeLimits) -> usize {
    let entries = entries_bound(manifest_len, limits);
    manifest_len
        .saturating_add(entries.saturating_mul(DECODED_BYTES_PER_ENTRY))
        // A growing vector's smallest room, and the two maps' smallest
        // tables (room for 7 entries each).
        .saturating_add(4 * core::mem::size_of::<Entry>() + 2 * 8 * 64)
        // One entry's bytes while they are not whole.
        .saturating_add((ENTRY_FIXED_LEN + MAX_TREE_PATH_BYTES).min(manifest_len))
}

/// The most entries a manifest of `manifest_len` bytes can hold under
/// `limits`: each takes at least [`ENTRY_FIXED_LEN`] + 1 bytes after the
/// header, and there are at most `limits`' `max_entries`. What checking it
/// can cost, known from the offer.
pub fn entries_bound(manifest_len: usize, limits: &TreeLimits) -> usize {
    (manifest_len.saturating_sub(MANIFEST_HEADER_LEN) / (ENTRY_FIXED_LEN + 1))
        .min(max_entries(limits))
}

impl ManifestDecoder {
    /// A decoder for a manifest of `len` bytes, refused at once if that is
    /// over `limits`' `max_manifest_bytes`.
    pub fn new(len: usize, limits: &TreeLimits) -> Result<Self, ManifestError> {
        if len > limits.max_manifest_bytes {
            return Err(TreeLimitExceeded::ManifestTooLong {
                len,
                max: limits.max_manifest_bytes,
            }
            .into());
        }
        Ok(ManifestDecoder {
            limits: *limits,
            len,
            fed: 0,
            pending: Vec::new(),
            header: None,
            entries: Vec::new(),
            checker: Checker::new(limits),
            path_bytes: 0,
            failed: None,
        })
    }

    /// Takes the next bytes and checks every entry they complete. More
    /// bytes than announced are refused as trailing bytes.
    pub fn feed(&mut self, part: &[u8]) -> Result<(), ManifestError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let fed = self.fed.saturating_add(part.len());
        if fed > self.len {
            let error = ManifestError::from(ManifestMalformed::TrailingBytes {
                extra: fed - self.len,
            });
            self.failed = Some(error.clone());
            return Err(error);
        }
        self.fed = fed;
        self.pending.extend_from_slice(part);
        let last = self.is_complete();
        let mut at = 0;
        let result = self.advance(&mut at, last);
        self.pending.drain(..at);
        // Keep the room of an incomplete entry, not of the part that
        // brought it.
        self.pending.shrink_to_fit();
        if let Err(error) = &result {
            self.failed = Some(error.clone());
        }
        result
    }

    /// Whether every announced byte was fed.
    pub fn is_complete(&self) -> bool {
        self.fed == self.len
    }

    /// The manifest's length, as announced to [`new`](Self::new).
    pub fn announced_len(&self) -> usize {
        self.len
    }

    /// Bytes fed so far.
    pub fn fed(&self) -> usize {
        self.fed
    }

    /// The checked manifest, once every announced byte was fed without an
    /// error; the error a truncated manifest gets otherwise.
    pub fn finish(mut self) -> Result<Manifest, ManifestError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        let read_all = self
            .header
            .is_some_and(|(count, _)| count == self.entries.len());
        if !read_all || !self.is_complete() {
            // Read what there is as if it were all: the error names the
            // field that has no bytes, as a whole decode would.
            let mut at = 0;
            self.advance(&mut at, true)?;
        }
        let (Some((count, root_mtime)), true) = (self.header, self.is_complete()) else {
            return Err(ManifestMalformed::Truncated {
                entry: self.entries.len(),
                field: "path",
            }
            .into());
        };
        debug_assert_eq!(count, self.entries.len());
        self.entries.shrink_to_fit();
        Ok(Manifest::from_checked(
            root_mtime,
            self.entries,
            &self.checker,
        ))
    }

    /// Heap bytes this decoder holds now (an estimate within a few bytes
    /// an entry; the hash tables counted by their room, as in
    /// [`DECODED_BYTES_PER_ENTRY`]).
    pub fn held_bytes(&self) -> usize {
        self.pending.capacity()
            + self.entries.capacity() * core::mem::size_of::<Entry>()
            + self.path_bytes
            + self.entries.len() * 16
            + self.checker.capacity().max(self.entries.len()) * 2 * 64
    }

    /// Reads the header and every whole entry from `pending[*at..]`,
    /// leaving `*at` past what was read. With `last`, what is there is all
    /// there will be.
    fn advance(&mut self, at: &mut usize, last: bool) -> Result<(), ManifestError> {
        loop {
            let rest = &self.pending[*at..];
            let Some((count, _)) = self.header else {
                if rest.len() < MANIFEST_HEADER_LEN && !last {
                    return Ok(());
                }
                let mut reader = Reader {
                    bytes: rest,
                    entry: 0,
                };
                let count = reader.u32("count")?;
                let max_entries = max_entries(&self.limits);
                if count as usize > max_entries {
                    return Err(TreeLimitExceeded::TooManyEntries {
                        count: u64::from(count),
                        max: max_entries,
                    }
                    .into());
                }
                let root_mtime = reader.mtime()?;
                *at += MANIFEST_HEADER_LEN;
                self.header = Some((count as usize, root_mtime));
                // The count is only a claim: room for no more entries than
                // the announced length can hold (within the reserved bound).
                self.checker
                    .reserve((count as usize).min(entries_bound(self.len, &self.limits)));
                continue;
            };
            if self.entries.len() == count {
                let read = self.fed - (self.pending.len() - *at);
                if read < self.len {
                    return Err(ManifestMalformed::TrailingBytes {
                        extra: self.len - read,
                    }
                    .into());
                }
                return Ok(());
            }
            let whole = match rest {
                [a, b, ..] => {
                    rest.len() >= ENTRY_FIXED_LEN + usize::from(u16::from_be_bytes([*a, *b]))
                }
                _ => false,
            };
            if !whole && !last {
                return Ok(());
            }
            let mut reader = Reader {
                bytes: rest,
                entry: self.entries.len(),
            };
            let entry = reader.entry(&self.limits)?;
            *at += rest.len() - reader.bytes.len();
            self.checker.admit_checked(&self.entries, &entry)?;
            self.path_bytes += entry.path.as_str().len();
            self.entries.push(entry);
        }
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
