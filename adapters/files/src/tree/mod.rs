//! Writing a received tree (a folder sent whole) to disk, safely.
//!
//! A [`TreeWriter`] takes a destination folder and a checked
//! [`Manifest`](ferry_core::tree::Manifest) (its paths are already safe:
//! relative, no `..`, no clashing names, within limits) and builds the tree
//! in a private staging folder of the destination,
//! `.ferry-partial/HEX.tree` (`0700`, beside the partial files of single
//! files, named after a random key). Only once every file is written and
//! verified against the sender's BLAKE3 is the tree made durable and moved,
//! whole, to its final name, `NAME` or the first free `NAME (n)`, with a
//! move that never replaces anything. A tree never appears half-made under
//! its final name, and never merges into or replaces a folder already
//! there. Dropping a writer leaves the staging folder as it is (for a
//! later resume) and nothing else.
//!
//! **Resumed by key.** The staging folder is named after a key, and a note
//! beside it (`HEX.tree.manifest`) holds the BLAKE3 of the manifest it was
//! made for. [`TreeWriter::open`] with that key and the same manifest
//! takes the staging folder up again and lists what it holds
//! ([`HeldFile`]s: each file's length and the BLAKE3 of its bytes, read
//! back from the disk, so that what is listed is what is there even after
//! a power cut lost writes never synced); the sender then sends only what
//! is missing, and a file it starts again from 0 replaces what was held.
//! No journal is kept: one would have to be synced before it could be
//! trusted, which is a sync on the write path, and reading the held bytes
//! back costs only on a resume.
//!
//! **Never through a path string.** The destination is opened once; every
//! folder of the tree is made with `mkdirat` in the descriptor of its
//! parent, opened with `O_NOFOLLOW | O_DIRECTORY`, and remembered by its
//! device and inode; every file is created with `openat(O_CREAT | O_EXCL |
//! O_NOFOLLOW)` in its folder's descriptor. A folder whose descriptor was
//! let go (at most [`OPEN_FOLDERS`] stay open) is opened again from its
//! parent's descriptor, one component at a time, and must be the very
//! folder made before. So a folder swapped for a link while the tree is
//! written cannot redirect a write: the link is refused, not followed, and
//! the writer reports [`TreeWriteError::Tampered`]; before the final move
//! every entry is checked to be the one the writer made.
//!
//! **Verified per file, durable per tree.** The writer hashes each file
//! as it writes it (files are written one at a time, from the first byte
//! to the last, as the protocol sends them) and
//! [`finish_file`](TreeWriter::finish_file) compares the sender's hash.
//! Nothing is flushed while files are written: [`commit`](TreeWriter::commit)
//! makes the whole tree durable in one `syncfs` (one journal commit
//! instead of one per file: [`Durability`]), moves it, and syncs the
//! destination folder so that the new name is durable too: two sync calls
//! for the whole tree, counted by [`sync_calls`](TreeWriter::sync_calls).
//!
//! Modes follow the inbox's: what ferry receives is its owner's only.
//! Files are `0600`, executable ones `0700`, folders `0700`.

mod error;
#[cfg(test)]
mod tests;

pub use error::{TreePeerFault, TreeWriteError, TreeWriterMisuse};

use crate::confined::{set_modified, ConfinedDir, Identity};
use crate::inbox::{free_folder_name_in, PARTIALS_DIR};
use ferry_core::filename::check_file_name;
use ferry_core::frame::HeldFile;
use ferry_core::tree::{EntryKind, Manifest};
use ferry_core::ResumeKey;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Ends the name of every tree's staging folder in [`PARTIALS_DIR`].
pub const TREE_SUFFIX: &str = ".tree";

/// Ends the name of the note beside a staging folder (`HEX.tree.manifest`)
/// that holds the BLAKE3, in hex, of the manifest the folder was made for.
pub const MANIFEST_NOTE_SUFFIX: &str = ".manifest";

/// Folder descriptors a writer keeps open at most. Past it they are all
/// let go and opened again from their parents when needed: a tree of many
/// folders never runs the process out of descriptors.
pub const OPEN_FOLDERS: usize = 64;

/// How [`TreeWriter::commit`] makes a tree durable before it moves it to
/// its final name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// One `syncfs` of the destination's file system (Linux): every file
    /// and folder of the tree in one writeback and one journal commit. It
    /// also flushes whatever else is waiting on that file system, which is
    /// written soon anyway; an `fsync` per file costs a journal commit and
    /// a device flush each (10,000 small files: seconds, against
    /// milliseconds). The default on Linux.
    #[cfg_attr(target_os = "linux", default)]
    FileSystem,
    /// An `fsync` of every file and folder of the tree, in one pass at the
    /// end (never on the write path). The default elsewhere, where
    /// `syncfs` does not exist.
    #[cfg_attr(not(target_os = "linux"), default)]
    EachEntry,
}

/// A tree moved to its final name by [`TreeWriter::commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Committed {
    /// Where it is.
    pub path: PathBuf,
    /// Calls that flushed data to disk for the whole tree (`syncfs`,
    /// `fsync`): 2 with [`Durability::FileSystem`].
    pub sync_calls: usize,
}

/// Builds one received tree; see the module's documentation.
#[derive(Debug)]
pub struct TreeWriter {
    dest: ConfinedDir,
    partials: ConfinedDir,
    /// The staging folder's name in [`PARTIALS_DIR`].
    staged: String,
    root: ConfinedDir,
    root_identity: Identity,
    key: ResumeKey,
    /// The top-level name the tree was sent under.
    name: String,
    manifest: Manifest,
    /// Each entry's folder, as an index (`None`: the top).
    parents: Vec<Option<usize>>,
    /// What the writer made for each entry: a folder, or a file created.
    made: Vec<Option<Identity>>,
    verified: Vec<bool>,
    /// Each verified file's BLAKE3, for [`held`](TreeWriter::held).
    hashes: HashMap<usize, [u8; 32]>,
    /// What the staging folder held when it was taken up again, for the
    /// files not reached yet, in index order.
    held: VecDeque<HeldFile>,
    open: Option<OpenFile>,
    /// Folder descriptors kept open, by entry index.
    folders: HashMap<usize, ConfinedDir>,
    durability: Durability,
    sync_calls: usize,
}

/// The file being written.
#[derive(Debug)]
struct OpenFile {
    index: usize,
    file: File,
    hasher: blake3::Hasher,
    written: u64,
}

impl TreeWriter {
    /// Starts writing the tree `name` (its top-level folder's name, checked
    /// here like any file name) of `manifest` into the folder `dest`:
    /// creates its staging folder and every folder of the tree in it. A
    /// refused name writes nothing at all; any later failure leaves only
    /// the staging folder.
    ///
    /// Blocking disk work: not for an event loop.
    pub fn create(
        dest: &Path,
        name: &str,
        manifest: Manifest,
    ) -> Result<TreeWriter, TreeWriteError> {
        check_file_name(name)?;
        let (dest_dir, partials) = open_partials(dest)?;
        let note = manifest_note(&manifest);
        let (key, staged, root) = loop {
            let key = crate::inbox::fresh_resume_key().map_err(io_error(partials.path()))?;
            let staged = staged_tree_name(&key);
            match partials.create_dir(&staged) {
                Ok(root) => break (key, staged, root),
                // A key drawn twice: draw again.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error(&partials.path().join(&staged))(e)),
            }
        };
        write_note(&partials, &staged, &note)?;
        let mut writer =
            TreeWriter::staged_in(dest_dir, partials, staged, root, key, name, manifest)?;
        writer.make_folders()?;
        Ok(writer)
    }

    /// Starts or takes up again the tree `name` of `manifest` staged under
    /// `key` in the folder `dest`: if a staging folder of that key was made
    /// for the same manifest (same bytes), it is taken up and what it holds
    /// is returned, to be listed to the sender (`TREE_HELD`); otherwise
    /// (none, another manifest's, or one that is no longer what a writer
    /// left there) it is removed and the tree starts afresh under `key`,
    /// holding nothing. Each held file's bytes are read back and hashed
    /// here.
    ///
    /// A held file then goes on at its held length or starts again at 0
    /// ([`write_at`](Self::write_at)); a file held whole needs only
    /// [`finish_file`](Self::finish_file). The caller must hold `key` for
    /// itself alone (the inbox's ledger does): two writers on one staging
    /// folder would spoil each other's files.
    ///
    /// `known` is what an earlier writer of this tree in this process said
    /// it left ([`held`](Self::held)), in index order: a file found with
    /// the length listed there is taken at that hash without being read
    /// (the staging folder is private to this process's user, and nothing
    /// but a writer touches it); any other is read back. Empty after a
    /// restart: then every byte held is read.
    ///
    /// Blocking disk work: not for an event loop.
    pub fn open(
        dest: &Path,
        name: &str,
        manifest: Manifest,
        key: ResumeKey,
        known: &[HeldFile],
    ) -> Result<(TreeWriter, Vec<HeldFile>), TreeWriteError> {
        check_file_name(name)?;
        let (dest_dir, partials) = open_partials(dest)?;
        let note = manifest_note(&manifest);
        let staged = staged_tree_name(&key);
        if read_note(&partials, &staged).as_deref() == Some(note.as_str()) {
            if let Ok(root) = partials.open_dir(&staged) {
                let mut writer =
                    TreeWriter::staged_in(dest_dir, partials, staged, root, key, name, manifest)?;
                return match writer.take_stock(known) {
                    Ok(held) => Ok((writer, held)),
                    // Not what a writer left: start afresh.
                    Err(TreeWriteError::Tampered { .. }) => {
                        let TreeWriter {
                            staged, manifest, ..
                        } = writer;
                        let (dest_dir, partials) = open_partials(dest)?;
                        TreeWriter::afresh(dest_dir, partials, staged, key, name, manifest, &note)
                    }
                    Err(e) => Err(e),
                };
            }
        }
        TreeWriter::afresh(dest_dir, partials, staged, key, name, manifest, &note)
    }

    /// Removes whatever is staged under `key` and starts the tree there
    /// from nothing.
    fn afresh(
        dest: ConfinedDir,
        partials: ConfinedDir,
        staged: String,
        key: ResumeKey,
        name: &str,
        manifest: Manifest,
        note: &str,
    ) -> Result<(TreeWriter, Vec<HeldFile>), TreeWriteError> {
        remove_staged(&partials, &staged)?;
        let root = partials
            .create_dir(&staged)
            .map_err(io_error(&partials.path().join(&staged)))?;
        write_note(&partials, &staged, note)?;
        let mut writer = TreeWriter::staged_in(dest, partials, staged, root, key, name, manifest)?;
        writer.make_folders()?;
        Ok((writer, Vec::new()))
    }

    fn staged_in(
        dest: ConfinedDir,
        partials: ConfinedDir,
        staged: String,
        root: ConfinedDir,
        key: ResumeKey,
        name: &str,
        manifest: Manifest,
    ) -> Result<TreeWriter, TreeWriteError> {
        let root_identity = root.identity().map_err(io_error(root.path()))?;
        let entries = manifest.entries().len();
        Ok(TreeWriter {
            dest,
            partials,
            staged,
            root,
            root_identity,
            key,
            name: name.to_string(),
            parents: manifest.parents(),
            made: vec![None; entries],
            verified: vec![false; entries],
            hashes: HashMap::new(),
            held: VecDeque::new(),
            manifest,
            open: None,
            folders: HashMap::new(),
            durability: Durability::default(),
            sync_calls: 0,
        })
    }

    /// Takes up a staging folder made for this manifest: finds every
    /// folder (making those missing) and every file, and returns what the
    /// files hold. An empty file, or one longer than its size, is removed.
    /// Anything that is not what a writer makes (a link, a file where a
    /// folder goes) is [`TreeWriteError::Tampered`].
    fn take_stock(&mut self, known: &[HeldFile]) -> Result<Vec<HeldFile>, TreeWriteError> {
        let mut held = Vec::new();
        for index in 0..self.made.len() {
            let entry = &self.manifest.entries()[index];
            let name = entry.path.name().to_string();
            let path = self.entry_path(index);
            let tampered = |what| TreeWriteError::Tampered {
                path: path.clone(),
                what,
            };
            match entry.kind {
                EntryKind::Folder => {
                    let parent = self.folder(self.parents[index])?;
                    let folder = match parent.open_dir(&name) {
                        Ok(folder) => folder,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {
                            parent.create_dir(&name).map_err(io_error(&path))?
                        }
                        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                            return Err(tampered("not a folder (a link?)"))
                        }
                        Err(e) => return Err(io_error(&path)(e)),
                    };
                    self.made[index] = Some(folder.identity().map_err(io_error(&path))?);
                    self.keep_open(index, folder);
                }
                EntryKind::File { size, .. } => {
                    let parent = self.folder(self.parents[index])?;
                    let mut file = match parent.open_own(&name) {
                        Ok(file) => file,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                            return Err(tampered("not a file of its own (a link?)"))
                        }
                        Err(e) => return Err(io_error(&path)(e)),
                    };
                    let len = file.metadata().map_err(io_error(&path))?.len();
                    if len == 0 || len > size {
                        drop(file);
                        parent.remove(&name).map_err(io_error(&path))?;
                        continue;
                    }
                    let listed = known
                        .binary_search_by_key(&(index as u32), |h| h.index)
                        .ok()
                        .map(|at| known[at])
                        .filter(|h| h.offset == len);
                    let prefix_hash = match listed {
                        Some(listed) => listed.prefix_hash,
                        None => hash_prefix(&mut file, len).map_err(io_error(&path))?,
                    };
                    self.made[index] = Some(Identity::of(&file).map_err(io_error(&path))?);
                    held.push(HeldFile {
                        index: index as u32,
                        offset: len,
                        prefix_hash,
                    });
                }
            }
        }
        self.held = held.iter().copied().collect();
        Ok(held)
    }

    /// How [`commit`](Self::commit) makes the tree durable (default:
    /// [`Durability::default`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The manifest being written.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The staging folder, for messages (the writer never reaches anything
    /// through this path).
    pub fn staging_path(&self) -> &Path {
        self.root.path()
    }

    /// The key the staging folder is named after, for a later resume of
    /// the tree by whoever holds it.
    pub fn resume_key(&self) -> ResumeKey {
        self.key
    }

    /// Calls that flushed data to disk so far (`syncfs`, `fsync`).
    pub fn sync_calls(&self) -> usize {
        self.sync_calls
    }

    /// Files not yet verified.
    pub fn unverified_files(&self) -> usize {
        self.manifest
            .entries()
            .iter()
            .zip(&self.verified)
            .filter(|(entry, verified)| !entry.is_folder() && !**verified)
            .count()
    }

    /// Appends `data` to file `index` of the manifest. Files are written one
    /// at a time: the first write to a file creates it (a file held from an
    /// earlier attempt starts again from nothing: see
    /// [`write_at`](Self::write_at)), and [`finish_file`](Self::finish_file)
    /// ends it before another is started. More bytes than the manifest's
    /// size for the file are refused ([`TreePeerFault::PastEnd`]) and not
    /// written.
    pub fn write(&mut self, index: usize, data: &[u8]) -> Result<(), TreeWriteError> {
        let offset = match &self.open {
            Some(open) if open.index == index => open.written,
            _ => 0,
        };
        self.write_at(index, offset, data)
    }

    /// Writes `data` at `offset` of file `index`: where the last write to
    /// it ended, or, for its first write, 0 (a file held from an earlier
    /// attempt is then started again: what it held is thrown away) or the
    /// length [`open`](Self::open) found held (the file goes on from
    /// there). Anything else is [`TreeWriterMisuse::WrongOffset`].
    pub fn write_at(
        &mut self,
        index: usize,
        offset: u64,
        data: &[u8],
    ) -> Result<(), TreeWriteError> {
        let size = self.unverified_file(index)?;
        self.open_file(index, offset)?;
        let path = self.entry_path(index);
        // Opened just above.
        let open = self.open.as_mut().expect("the file is open");
        if open.written != offset {
            return Err(TreeWriterMisuse::WrongOffset {
                index,
                offset,
                expected: open.written,
            }
            .into());
        }
        let end = open.written.saturating_add(data.len() as u64);
        if end > size {
            return Err(TreePeerFault::PastEnd {
                path: self.manifest.entries()[index].path.to_string(),
                size,
            }
            .into());
        }
        open.file.write_all(data).map_err(io_error(&path))?;
        open.hasher.update(data);
        open.written = end;
        Ok(())
    }

    /// Ends file `index`: all its bytes must have arrived and their BLAKE3
    /// must be `hash`, the sender's. Then it takes its executable bit and
    /// modification time and is closed, verified. A file of 0 bytes needs
    /// no [`write`](Self::write) before.
    ///
    /// A short file or a wrong hash is the peer's fault: the file is
    /// removed (so that it can be sent again) and the rest of the tree
    /// stays as it is.
    pub fn finish_file(&mut self, index: usize, hash: &[u8; 32]) -> Result<(), TreeWriteError> {
        let size = self.unverified_file(index)?;
        if self.open.is_none() {
            if let Some(held) = self.held_file(index).filter(|h| h.offset == size) {
                // Held whole from an earlier attempt: its hash was read
                // back when the tree was opened.
                self.held.pop_front();
                let open = self.open_held(index, held, false)?;
                let entry = self.manifest.entries()[index].clone();
                if held.prefix_hash != *hash {
                    self.remove_file(index, open)?;
                    return Err(TreePeerFault::HashMismatch {
                        path: entry.path.to_string(),
                    }
                    .into());
                }
                return self.settle(index, open, &entry, held.prefix_hash);
            }
        }
        self.open_file(index, 0)?;
        // Opened just above.
        let open = self.open.take().expect("the file is open");
        let entry = self.manifest.entries()[index].clone();
        if open.written != size {
            let written = open.written;
            self.remove_file(index, open)?;
            return Err(TreePeerFault::Short {
                path: entry.path.to_string(),
                size,
                written,
            }
            .into());
        }
        if open.hasher.finalize().as_bytes() != hash {
            self.remove_file(index, open)?;
            return Err(TreePeerFault::HashMismatch {
                path: entry.path.to_string(),
            }
            .into());
        }
        self.settle(index, open, &entry, *hash)
    }

    /// What the staging folder holds now, as [`open`](Self::open) would
    /// list it if the tree were taken up again: every file verified, what
    /// was held of files not reached in this attempt, and the bytes of the
    /// file being written. Known without reading the disk: handed to the
    /// next [`open`](Self::open) of the same process (`known`), it spares
    /// reading back every byte held.
    pub fn held(&self) -> Vec<HeldFile> {
        let mut held: Vec<HeldFile> = self
            .hashes
            .iter()
            .map(|(&index, hash)| HeldFile {
                index: index as u32,
                offset: self.manifest.entries()[index].size(),
                prefix_hash: *hash,
            })
            .chain(self.held.iter().copied())
            .chain(
                self.open
                    .iter()
                    .filter(|open| open.written > 0)
                    .map(|open| HeldFile {
                        index: open.index as u32,
                        offset: open.written,
                        prefix_hash: *open.hasher.finalize().as_bytes(),
                    }),
            )
            .collect();
        // Files of 0 bytes hold nothing to skip (and are made again).
        held.retain(|h| h.offset > 0);
        held.sort_unstable_by_key(|h| h.index);
        held.dedup_by_key(|h| h.index);
        held
    }

    /// Gives a verified file its executable bit and modification time, and
    /// marks it verified.
    fn settle(
        &mut self,
        index: usize,
        open: OpenFile,
        entry: &ferry_core::tree::Entry,
        hash: [u8; 32],
    ) -> Result<(), TreeWriteError> {
        let executable = matches!(
            entry.kind,
            EntryKind::File {
                executable: true,
                ..
            }
        );
        let settled = if executable {
            rustix::fs::fchmod(&open.file, rustix::fs::Mode::RWXU).map_err(io::Error::from)
        } else {
            Ok(())
        }
        .and_then(|()| set_modified(&open.file, entry.mtime.secs(), entry.mtime.nanos()));
        if let Err(e) = settled {
            let path = self.entry_path(index);
            // Removed, so that it can be sent again; the disk's error is
            // the one to report.
            let _ = self.remove_file(index, open);
            return Err(io_error(&path)(e));
        }
        self.verified[index] = true;
        self.hashes.insert(index, hash);
        Ok(())
    }

    /// Makes the tree durable and moves it to its final name in the
    /// destination: the name it was sent under or the first free `NAME
    /// (n)` (ignoring case), never replacing or merging into anything
    /// there, even an entry that appears at the same moment. Returns where
    /// it is, and what making it durable took.
    ///
    /// Every entry must still be what the writer made
    /// ([`TreeWriteError::Tampered`]), and every file must have been
    /// verified ([`TreeWriterMisuse::Unverified`]); otherwise nothing is
    /// moved and the tree stays in its staging folder.
    pub fn commit(mut self) -> Result<Committed, TreeWriteError> {
        // Tampering first: it says more than a file still missing.
        self.check_untouched()?;
        if let Some(index) = (0..self.verified.len())
            .find(|&i| !self.verified[i] && !self.manifest.entries()[i].is_folder())
        {
            return Err(TreeWriterMisuse::Unverified {
                path: self.manifest.entries()[index].path.to_string(),
            }
            .into());
        }
        // Making an entry changes its folder's time: folders last.
        for index in (0..self.made.len()).rev() {
            let entry = &self.manifest.entries()[index];
            if entry.is_folder() {
                let mtime = entry.mtime;
                let path = self.entry_path(index);
                self.folder(Some(index))?
                    .set_modified(mtime.secs(), mtime.nanos())
                    .map_err(io_error(&path))?;
            }
        }
        let root_mtime = self.manifest.root_mtime();
        self.root
            .set_modified(root_mtime.secs(), root_mtime.nanos())
            .map_err(io_error(self.root.path()))?;
        self.make_durable()?;
        self.folders.clear();
        let target = self.place()?;
        // Nothing is staged under the key any more: its note goes too (if
        // it stays, it is litter, not harm: it names no folder).
        let _ = self.partials.remove(&note_name(&self.staged));
        self.dest.sync();
        self.sync_calls += 1;
        Ok(Committed {
            path: self.dest.path().join(target),
            sync_calls: self.sync_calls,
        })
    }

    /// Moves the staging folder to a free name; returns the name.
    fn place(&self) -> Result<String, TreeWriteError> {
        let dest = self.dest.path();
        for _ in 0..1000 {
            let target = free_folder_name_in(&self.dest, &self.name).map_err(io_error(dest))?;
            match self.partials.move_dir_to(&self.staged, &self.dest, &target) {
                Ok(()) => return Ok(target),
                // Taken since it was found free: look again.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error(&dest.join(&target))(e)),
            }
        }
        Err(io_error(dest)(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("no free name for {:?}", self.name),
        )))
    }

    fn make_durable(&mut self) -> Result<(), TreeWriteError> {
        match self.durability {
            #[cfg(target_os = "linux")]
            Durability::FileSystem => {
                self.sync_calls += 1;
                self.root
                    .sync_file_system()
                    .map_err(io_error(self.root.path()))
            }
            #[cfg(not(target_os = "linux"))]
            Durability::FileSystem => self.sync_each_entry(),
            Durability::EachEntry => self.sync_each_entry(),
        }
    }

    fn sync_each_entry(&mut self) -> Result<(), TreeWriteError> {
        for index in 0..self.made.len() {
            let path = self.entry_path(index);
            let entry = &self.manifest.entries()[index];
            let name = entry.path.name().to_string();
            if entry.is_folder() {
                self.folder(Some(index))?.fsync().map_err(io_error(&path))?;
            } else {
                let file = self
                    .folder(self.parents[index])?
                    .open_own(&name)
                    .map_err(io_error(&path))?;
                file.sync_all().map_err(io_error(&path))?;
            }
            self.sync_calls += 1;
        }
        self.root.fsync().map_err(io_error(self.root.path()))?;
        self.sync_calls += 1;
        Ok(())
    }

    /// Checks that every entry, reached from its folder by name without
    /// following links, is what the writer made, and the staging folder
    /// too.
    fn check_untouched(&mut self) -> Result<(), TreeWriteError> {
        let root = self
            .partials
            .identity_at(&self.staged)
            .map_err(io_error(self.root.path()))?;
        if root != Some(self.root_identity) {
            return Err(TreeWriteError::Tampered {
                path: self.root.path().to_path_buf(),
                what: "the staging folder is not the one made",
            });
        }
        for index in 0..self.made.len() {
            let name = self.manifest.entries()[index].path.name().to_string();
            let path = self.entry_path(index);
            let found = self
                .folder(self.parents[index])?
                .identity_at(&name)
                .map_err(io_error(&path))?;
            if found != self.made[index] {
                return Err(TreeWriteError::Tampered {
                    path,
                    what: "not the entry the writer made",
                });
            }
        }
        Ok(())
    }

    /// The size of file `index`, if it is a file not verified yet.
    fn unverified_file(&self, index: usize) -> Result<u64, TreeWriteError> {
        let entry = self
            .manifest
            .entries()
            .get(index)
            .ok_or(TreeWriterMisuse::NoSuchEntry(index))?;
        let EntryKind::File { size, .. } = entry.kind else {
            return Err(TreeWriterMisuse::NotAFile(index).into());
        };
        if self.verified[index] {
            return Err(TreeWriterMisuse::AlreadyVerified(index).into());
        }
        if let Some(open) = self.open.as_ref().filter(|open| open.index != index) {
            return Err(TreeWriterMisuse::AnotherFileOpen {
                open: open.index,
                asked: index,
            }
            .into());
        }
        Ok(size)
    }

    /// The held record of file `index`, if the staging folder held some of
    /// it when it was taken up; records of earlier files are dropped
    /// (files are written in order).
    fn held_file(&mut self, index: usize) -> Option<HeldFile> {
        while self
            .held
            .front()
            .is_some_and(|h| (h.index as usize) < index)
        {
            self.held.pop_front();
        }
        self.held
            .front()
            .copied()
            .filter(|h| h.index as usize == index)
    }

    /// Opens file `index`, held from an earlier attempt, as the writer left
    /// it: the file it made, `held.offset` bytes long. With `rehash`, its
    /// bytes are hashed again, for the file to go on from there.
    fn open_held(
        &mut self,
        index: usize,
        held: HeldFile,
        rehash: bool,
    ) -> Result<OpenFile, TreeWriteError> {
        let path = self.entry_path(index);
        let name = self.manifest.entries()[index].path.name().to_string();
        let tampered = |what| TreeWriteError::Tampered {
            path: path.clone(),
            what,
        };
        let mut file = match self.folder(self.parents[index])?.open_own(&name) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(tampered("gone")),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(tampered("not a file of its own (a link?)"))
            }
            Err(e) => return Err(io_error(&path)(e)),
        };
        if Some(Identity::of(&file).map_err(io_error(&path))?) != self.made[index]
            || file.metadata().map_err(io_error(&path))?.len() != held.offset
        {
            return Err(tampered("not the file held"));
        }
        let mut hasher = blake3::Hasher::new();
        if rehash {
            let prefix_hash =
                hash_prefix_into(&mut file, held.offset, &mut hasher).map_err(io_error(&path))?;
            if prefix_hash != held.prefix_hash {
                return Err(tampered("its bytes changed since they were listed"));
            }
        }
        Ok(OpenFile {
            index,
            file,
            hasher,
            written: held.offset,
        })
    }

    /// Opens file `index` for its first write at `offset` unless it is the
    /// one open: a new file at 0 (replacing what was held of it), or the
    /// held file at its held length.
    fn open_file(&mut self, index: usize, offset: u64) -> Result<(), TreeWriteError> {
        if self.open.is_some() {
            return Ok(());
        }
        let held = self.held_file(index);
        if offset != 0 && held.is_none_or(|h| h.offset != offset) {
            return Err(TreeWriterMisuse::WrongOffset {
                index,
                offset,
                expected: 0,
            }
            .into());
        }
        if let Some(held) = held {
            self.held.pop_front();
            let open = self.open_held(index, held, offset != 0)?;
            if offset != 0 {
                self.open = Some(open);
                return Ok(());
            }
            // Sent again from its start: what was held goes.
            self.remove_file(index, open)?;
        }
        let path = self.entry_path(index);
        let name = self.manifest.entries()[index].path.name().to_string();
        let file = self
            .folder(self.parents[index])?
            .create_new(&name)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => TreeWriteError::Tampered {
                    path: path.clone(),
                    what: "something is already there",
                },
                _ => io_error(&path)(e),
            })?;
        self.made[index] = Some(Identity::of(&file).map_err(io_error(&path))?);
        self.open = Some(OpenFile {
            index,
            file,
            hasher: blake3::Hasher::new(),
            written: 0,
        });
        Ok(())
    }

    /// Removes file `index`, which `open` holds, for it to be sent again.
    fn remove_file(&mut self, index: usize, open: OpenFile) -> Result<(), TreeWriteError> {
        drop(open);
        let path = self.entry_path(index);
        let name = self.manifest.entries()[index].path.name().to_string();
        self.folder(self.parents[index])?
            .remove(&name)
            .map_err(io_error(&path))?;
        self.made[index] = None;
        Ok(())
    }

    /// Makes every folder of the manifest, parents first.
    fn make_folders(&mut self) -> Result<(), TreeWriteError> {
        for index in 0..self.made.len() {
            let entry = &self.manifest.entries()[index];
            if !entry.is_folder() {
                continue;
            }
            let name = entry.path.name().to_string();
            let path = self.entry_path(index);
            let made = self
                .folder(self.parents[index])?
                .create_dir(&name)
                .map_err(io_error(&path))?;
            self.made[index] = Some(made.identity().map_err(io_error(&path))?);
            self.keep_open(index, made);
        }
        Ok(())
    }

    /// The folder `index` (`None`: the top), from the descriptors kept
    /// open or opened again from its parent's, and checked to be the
    /// folder made for it.
    fn folder(&mut self, index: Option<usize>) -> Result<&ConfinedDir, TreeWriteError> {
        let Some(index) = index else {
            return Ok(&self.root);
        };
        if !self.folders.contains_key(&index) {
            let parent = self.parents[index];
            let name = self.manifest.entries()[index].path.name().to_string();
            let path = self.entry_path(index);
            let tampered = |what| TreeWriteError::Tampered {
                path: path.clone(),
                what,
            };
            let opened = match self.folder(parent)?.open_dir(&name) {
                Ok(opened) => opened,
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    return Err(tampered("not a folder (a link?)"))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(tampered("gone")),
                Err(e) => return Err(io_error(&path)(e)),
            };
            if Some(opened.identity().map_err(io_error(&path))?) != self.made[index] {
                return Err(tampered("not the folder the writer made"));
            }
            self.keep_open(index, opened);
        }
        Ok(&self.folders[&index])
    }

    fn keep_open(&mut self, index: usize, folder: ConfinedDir) {
        if self.folders.len() >= OPEN_FOLDERS {
            self.folders.clear();
        }
        self.folders.insert(index, folder);
    }

    /// Where entry `index` is staged, for messages.
    fn entry_path(&self, index: usize) -> PathBuf {
        self.root
            .path()
            .join(self.manifest.entries()[index].path.as_str())
    }
}

/// The name in [`PARTIALS_DIR`] of the staging folder of the tree `key`
/// resumes: derived from the key, as partial files' names are, so that a
/// listing reveals no key.
pub(crate) fn staged_tree_name(key: &ResumeKey) -> String {
    let derived = blake3::derive_key("ferry 2026-12 inbox partial tree name", key.as_bytes());
    let hex = blake3::Hash::from(derived).to_hex();
    format!("{}{TREE_SUFFIX}", &hex[..32])
}

/// Opens `dest` and its private [`PARTIALS_DIR`].
fn open_partials(dest: &Path) -> Result<(ConfinedDir, ConfinedDir), TreeWriteError> {
    let dest_dir = ConfinedDir::open(dest).map_err(io_error(dest))?;
    let partials = dest_dir
        .private_subdir(PARTIALS_DIR)
        .map_err(io_error(&dest.join(PARTIALS_DIR)))?;
    Ok((dest_dir, partials))
}

/// What the note beside a staging folder says of `manifest`: its BLAKE3.
fn manifest_note(manifest: &Manifest) -> String {
    blake3::hash(&manifest.encode()).to_hex().to_string()
}

/// The name of the note beside the staging folder `staged`.
fn note_name(staged: &str) -> String {
    format!("{staged}{MANIFEST_NOTE_SUFFIX}")
}

/// Writes the note beside `staged` (replacing any).
fn write_note(partials: &ConfinedDir, staged: &str, note: &str) -> Result<(), TreeWriteError> {
    let name = note_name(staged);
    let path = partials.path().join(&name);
    match partials.remove(&name) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_error(&path)(e)),
        _ => {}
    }
    let mut file = partials.create_new(&name).map_err(io_error(&path))?;
    file.write_all(note.as_bytes()).map_err(io_error(&path))
}

/// The note beside `staged`, if there is one that a writer could have left.
fn read_note(partials: &ConfinedDir, staged: &str) -> Option<String> {
    let mut file = partials.open_own(&note_name(staged)).ok()?;
    let mut note = String::new();
    (&mut file).take(128).read_to_string(&mut note).ok()?;
    Some(note)
}

/// Removes the staging folder `staged` and its note, whatever they are
/// (a link is removed, never followed); nothing there is fine.
pub(crate) fn remove_staged(partials: &ConfinedDir, staged: &str) -> Result<(), TreeWriteError> {
    let path = partials.path().join(staged);
    match partials.stat(staged).map_err(io_error(&path))? {
        // `remove_dir_all` follows no link inside.
        Some(stat) if stat.directory => std::fs::remove_dir_all(&path).map_err(io_error(&path))?,
        Some(_) => partials.remove(staged).map_err(io_error(&path))?,
        None => {}
    }
    match partials.remove(&note_name(staged)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(io_error(&partials.path().join(note_name(staged)))(e))
        }
        _ => Ok(()),
    }
}

/// The BLAKE3 of the first `len` bytes of `file`, read from its start.
fn hash_prefix(file: &mut File, len: u64) -> io::Result<[u8; 32]> {
    hash_prefix_into(file, len, &mut blake3::Hasher::new())
}

/// Feeds the first `len` bytes of `file` to `hasher` and returns its hash
/// so far; the file's position is then `len`.
fn hash_prefix_into(
    file: &mut File,
    len: u64,
    hasher: &mut blake3::Hasher,
) -> io::Result<[u8; 32]> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(0))?;
    let copied = io::copy(&mut (&mut *file).take(len), hasher)?;
    if copied != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file is shorter than it was",
        ));
    }
    Ok(*hasher.finalize().as_bytes())
}

/// Wraps an I/O error with the path it was about.
fn io_error(path: &Path) -> impl FnOnce(io::Error) -> TreeWriteError {
    let path = path.to_path_buf();
    move |source| TreeWriteError::Io { path, source }
}
