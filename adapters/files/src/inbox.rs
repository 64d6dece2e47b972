//! The receiving folder: partial files, resume, and the final move.

use bytes::Bytes;
use ferry_core::filename::check_file_name;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Appended to a file's name while it is being received.
pub const PART_SUFFIX: &str = ".part";

/// The folder files are received into.
///
/// Cloning gives another handle on the same folder; the handles share the
/// set of partial files in use, so two transfers of the same name at once
/// never write into the same `.part` file.
#[derive(Debug, Clone)]
pub struct Inbox {
    dir: PathBuf,
    overwrite: bool,
    quota: Option<u64>,
    /// Ask the user before accepting an offer, waiting this long at most.
    answer_within: Option<Duration>,
    in_use: Arc<InUse>,
}

/// An offer refused because the inbox's quota has no room for it; carried
/// inside the `io::Error` that [`Inbox::begin`] returns (of kind
/// [`StorageFull`](io::ErrorKind::StorageFull)). A limit, not a fault of
/// the disk: the file was never started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the inbox is full: {used} of its {quota}-byte quota in use, the file needs {wanted}")]
#[non_exhaustive]
pub struct QuotaExceeded {
    /// The quota in bytes.
    pub quota: u64,
    /// Bytes the inbox holds or has promised to uploads under way.
    pub used: u64,
    /// Bytes the offer needs.
    pub wanted: u64,
}

impl QuotaExceeded {
    /// Whether `error` is an inbox quota refusal.
    pub fn is(error: &io::Error) -> bool {
        error.get_ref().is_some_and(|e| e.is::<QuotaExceeded>())
    }
}

/// The partial files being received, by lowercased name.
#[derive(Debug, Default)]
struct InUse {
    names: Mutex<HashMap<String, Holder>>,
    released: Condvar,
}

/// Who holds a partial file's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Holder {
    /// Tells this holder from a later one of the same name.
    serial: u64,
    /// The size of the file being received, counted whole against a quota.
    size: u64,
    /// The transfer is over, and its writer is finishing the last queued
    /// writes.
    closing: bool,
}

impl InUse {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Holder>> {
        // A panic elsewhere while holding the lock leaves the map intact.
        self.names.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How long a new transfer of a name waits for the writer of the previous
/// transfer of that name to finish (a resume right after a dropped link).
const RELEASE_WAIT: Duration = Duration::from_secs(10);

impl Inbox {
    /// Opens `dir`, creating it if missing, and checks that files can be
    /// created in it. Errors name the folder and say what is wrong.
    pub fn open(dir: impl AsRef<Path>) -> io::Result<Inbox> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create inbox {}: {e}", dir.display()),
            )
        })?;
        let probe = dir.join(format!(".ferry-write-test-{}", std::process::id()));
        File::create(&probe).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("inbox {} is not writable: {e}", dir.display()),
            )
        })?;
        // Best effort: the probe is empty and named as ours.
        let _ = fs::remove_file(&probe);
        Ok(Inbox {
            dir,
            overwrite: false,
            quota: None,
            answer_within: None,
            in_use: Arc::default(),
        })
    }

    /// Caps the bytes the folder may hold: finished files, partial files,
    /// and the whole size of every file being received. An offer that would
    /// go over it is refused by [`begin`](Self::begin) before any byte is
    /// written. `None` (the default): no quota.
    pub fn quota(mut self, quota: Option<u64>) -> Self {
        self.quota = quota;
        self
    }

    /// Bytes counted against the quota: every file in the folder, except
    /// the partial files of transfers under way, which count at their full
    /// size instead, and `skip` (the partial file of the offer in question).
    fn usage(&self, names: &HashMap<String, Holder>, skip: &str) -> io::Result<u64> {
        let mut used: u64 = names.values().map(|h| h.size).sum();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let key = entry.file_name().to_string_lossy().to_lowercase();
            if key == skip || names.contains_key(&key) {
                continue;
            }
            let meta = entry.metadata()?;
            if meta.is_file() {
                used = used.saturating_add(meta.len());
            }
        }
        Ok(used)
    }

    /// Offers into this folder wait for the user's answer, for
    /// `answer_within` at most, instead of being accepted at once: a client
    /// receiving into it runs [`OfferPolicy::Ask`](crate::OfferPolicy::Ask).
    pub fn ask_first(mut self, answer_within: Duration) -> Self {
        self.answer_within = Some(answer_within);
        self
    }

    /// How long an offer waits for the user's answer, if offers are asked
    /// about first (see [`ask_first`](Self::ask_first)).
    pub fn answer_within(&self) -> Option<Duration> {
        self.answer_within
    }

    /// Replace existing files of the same name instead of picking a free name.
    pub fn overwrite(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts receiving `name` (already checked by the core; checked again
    /// here, as this is where it becomes a path). Reuses `NAME.part` from an
    /// earlier attempt if there is one no longer than `size`; its length is
    /// then the offset to resume from.
    pub fn begin(&self, name: &str, size: u64) -> io::Result<Receiving> {
        check_file_name(name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let part_name = format!("{name}{PART_SUFFIX}");
        let serial;
        {
            let key = part_name.to_lowercase();
            let mut names = self.in_use.lock();
            let deadline = Instant::now() + RELEASE_WAIT;
            // A transfer of this name that ended a moment ago may still be
            // writing its last chunks: wait for it rather than refuse the
            // resume that typically follows.
            while names.get(&key).is_some_and(|holder| holder.closing) {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                names = self
                    .in_use
                    .released
                    .wait_timeout(names, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            if names.contains_key(&key) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{name:?} is already being received"),
                ));
            }
            if let Some(quota) = self.quota {
                // Under the lock: two offers at once cannot both take the
                // last free bytes.
                let used = self.usage(&names, &key)?;
                if used.saturating_add(size) > quota {
                    let full = QuotaExceeded {
                        quota,
                        used,
                        wanted: size,
                    };
                    return Err(io::Error::new(io::ErrorKind::StorageFull, full));
                }
            }
            serial = names.values().map(|h| h.serial).max().unwrap_or(0) + 1;
            names.insert(
                key,
                Holder {
                    serial,
                    size,
                    closing: false,
                },
            );
        }
        let release = Release {
            in_use: self.in_use.clone(),
            key: part_name.to_lowercase(),
            serial,
        };
        let part = self.dir.join(&part_name);
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&part)
        {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                OpenOptions::new().read(true).write(true).open(&part)?
            }
            Err(e) => return Err(e),
        };
        let held = file.metadata()?.len();
        let resume_from = if held <= size {
            held
        } else {
            // Longer than the file on offer: not a prefix of it.
            file.set_len(0)?;
            0
        };
        Ok(Receiving {
            dir: self.dir.clone(),
            name: name.to_string(),
            part,
            file,
            size,
            resume_from,
            overwrite: self.overwrite,
            writeback: Writeback::default(),
            release,
        })
    }
}

/// Frees a partial file's name when the file is closed.
#[derive(Debug)]
struct Release {
    in_use: Arc<InUse>,
    key: String,
    serial: u64,
}

impl Drop for Release {
    fn drop(&mut self) {
        let mut names = self.in_use.lock();
        if names
            .get(&self.key)
            .is_some_and(|h| h.serial == self.serial)
        {
            names.remove(&self.key);
        }
        drop(names);
        self.in_use.released.notify_all();
    }
}

/// Held by whoever drives a [`Receiving`] from elsewhere: dropping it says
/// the transfer is over while the file may still be finishing writes, so a
/// new transfer of the name waits for it instead of being refused.
#[derive(Debug)]
pub(crate) struct NameInUse {
    in_use: Arc<InUse>,
    key: String,
    serial: u64,
}

impl Drop for NameInUse {
    fn drop(&mut self) {
        if let Some(holder) = self.in_use.lock().get_mut(&self.key) {
            if holder.serial == self.serial {
                holder.closing = true;
            }
        }
    }
}

/// A file being received into `NAME.part`.
#[derive(Debug)]
pub struct Receiving {
    dir: PathBuf,
    name: String,
    part: PathBuf,
    file: File,
    size: u64,
    resume_from: u64,
    overwrite: bool,
    writeback: Writeback,
    release: Release,
}

/// Asks a helper thread to flush a large incoming file to disk while it is
/// still arriving, so the final `fsync` before the rename finds little left
/// to do. Durability still rests on that final `fsync`; this only moves
/// most of its cost off the end of the transfer.
#[derive(Debug, Default)]
struct Writeback {
    since_flush: u64,
    flusher: Option<std::sync::mpsc::Sender<()>>,
}

impl Writeback {
    /// Flush every this many bytes written.
    const EVERY: u64 = 16 << 20;

    fn wrote(&mut self, file: &File, len: usize) {
        self.since_flush += len as u64;
        if self.since_flush < Self::EVERY {
            return;
        }
        self.since_flush = 0;
        if self.flusher.is_none() {
            let Ok(file) = file.try_clone() else { return };
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let spawned = std::thread::Builder::new()
                .name("ferry-writeback".into())
                .spawn(move || {
                    while rx.recv().is_ok() {
                        // Requests that piled up during a flush need one more.
                        while rx.try_recv().is_ok() {}
                        // Errors surface in the final sync before the rename.
                        let _ = file.sync_data();
                    }
                });
            if spawned.is_err() {
                return;
            }
            self.flusher = Some(tx);
        }
        if let Some(flusher) = &self.flusher {
            let _ = flusher.send(());
        }
    }
}

impl Receiving {
    /// Bytes already held from an earlier attempt.
    pub fn resume_from(&self) -> u64 {
        self.resume_from
    }

    /// The file's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The partial file's path.
    pub fn part_path(&self) -> &Path {
        &self.part
    }

    pub(crate) fn name_in_use(&self) -> NameInUse {
        NameInUse {
            in_use: self.release.in_use.clone(),
            key: self.release.key.clone(),
            serial: self.release.serial,
        }
    }

    /// Reads `len` bytes at `offset` of the partial file (to hash the prefix
    /// before resuming).
    pub fn read_at(&mut self, offset: u64, len: u32) -> io::Result<Bytes> {
        read_exact_at(&self.file, offset, len)
    }

    /// Writes received bytes at `offset`.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if offset + data.len() as u64 > self.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "data past the announced size",
            ));
        }
        positioned::write_all_at(&self.file, data, offset)?;
        self.writeback.wrote(&self.file, data.len());
        Ok(())
    }

    /// The sender starts over: forget what was held.
    pub fn restart(&mut self) -> io::Result<()> {
        self.file.set_len(0)
    }

    /// Syncs the file and moves it to its final name: the name offered, or
    /// the first free `NAME (n).EXT`, unless overwriting. Returns the path.
    pub fn commit(self) -> io::Result<PathBuf> {
        self.file.set_len(self.size)?;
        self.file.sync_all()?;
        drop(self.file);
        let target = if self.overwrite {
            let target = self.dir.join(&self.name);
            fs::rename(&self.part, &target)?;
            target
        } else {
            place_without_clobbering(&self.dir, &self.name, &self.part)?
        };
        sync_dir(&self.dir);
        Ok(target)
    }

    /// Deletes the partial file (its contents are known to be wrong).
    pub fn discard(self) -> io::Result<()> {
        drop(self.file);
        fs::remove_file(&self.part)
    }
}

/// A file being sent.
#[derive(Debug)]
pub struct Sending {
    file: File,
    size: u64,
}

impl Sending {
    /// Opens `path` for sending; returns it with its file name and size.
    pub fn open(path: impl AsRef<Path>) -> io::Result<(Sending, String, u64)> {
        let path = path.as_ref();
        let file = File::open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", path.display()),
            ));
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} has no UTF-8 file name", path.display()),
                )
            })?
            .to_string();
        let size = meta.len();
        Ok((Sending { file, size }, name, size))
    }

    /// Size when opened.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Reads exactly `len` bytes at `offset`; a file that shrank meanwhile is
    /// an error.
    pub fn read_at(&mut self, offset: u64, len: u32) -> io::Result<Bytes> {
        read_exact_at(&self.file, offset, len)
    }
}

fn read_exact_at(file: &File, offset: u64, len: u32) -> io::Result<Bytes> {
    // Zeroed first, then one positioned read: a memset costs less than the
    // three extra `read` calls `read_to_end` makes growing its reads from
    // 8 KiB, and no `lseek` is needed.
    let mut buf = vec![0; len as usize];
    match positioned::read_exact_at(file, &mut buf, offset) {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file got shorter while being sent",
        )),
        result => result.map(|()| Bytes::from(buf)),
    }
}

/// Reads and writes at an offset, without moving a shared file position:
/// one system call where seeking first takes two.
mod positioned {
    use std::fs::File;
    use std::io;

    #[cfg(unix)]
    pub(super) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }

    #[cfg(unix)]
    pub(super) fn write_all_at(file: &File, data: &[u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(file, data, offset)
    }

    #[cfg(not(unix))]
    pub(super) fn read_exact_at(mut file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(buf)
    }

    #[cfg(not(unix))]
    pub(super) fn write_all_at(mut file: &File, data: &[u8], offset: u64) -> io::Result<()> {
        use std::io::{Seek, SeekFrom, Write};
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(data)
    }
}

/// `NAME`, or the first `NAME (n).EXT` that no file in `dir` has, ignoring
/// case (so that case-insensitive file systems and users see no clash).
pub fn free_name(dir: &Path, name: &str) -> io::Result<String> {
    let taken: HashSet<String> = fs::read_dir(dir)?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .map(|n| n.to_lowercase())
        .collect();
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if dot > 0 => name.split_at(dot),
        _ => (name, ""),
    };
    (0..100_000u32)
        .map(|n| match n {
            0 => name.to_string(),
            n => format!("{stem} ({n}){ext}"),
        })
        .find(|candidate| !taken.contains(&candidate.to_lowercase()))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("no free name for {name:?}"),
            )
        })
}

/// Moves `part` to a free name in `dir` without ever replacing a file,
/// even one created at the same moment by someone else.
fn place_without_clobbering(dir: &Path, name: &str, part: &Path) -> io::Result<PathBuf> {
    for _ in 0..1000 {
        let target = dir.join(free_name(dir, name)?);
        // A hard link fails if the target exists: the move cannot clobber.
        match fs::hard_link(part, &target) {
            Ok(()) => {
                fs::remove_file(part)?;
                return Ok(target);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(_) if !target.exists() => {
                // File systems without hard links: a plain rename, checked.
                fs::rename(part, &target)?;
                return Ok(target);
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free name for {name:?}"),
    ))
}

fn sync_dir(dir: &Path) {
    // Makes the rename durable on Unix; elsewhere directories cannot be
    // opened this way, and the rename is as durable as it gets.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}
