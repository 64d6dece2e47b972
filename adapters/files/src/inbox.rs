//! The receiving folder: partial files, resume, and the final move; and
//! what the folder holds, counted as it changes.
//!
//! Everything an offer needs to be answered is decided in memory, in
//! O(1): the quota, the limit on unfinished files per sender, whether the
//! name is free. Whatever touches the disk or may wait (opening the partial
//! file, waiting for the writer of an earlier transfer of the same name)
//! is [`Reservation::open`], which runs on the file's writer thread, never
//! on the loop that drives the protocol.

use bytes::Bytes;
use ferry_core::filename::check_file_name;
use ferry_core::{Code, Source};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Appended to a file's name while it is being received.
pub const PART_SUFFIX: &str = ".part";

/// How many unfinished files (uploads under way and partial files kept for
/// a resume) one sender may have in an inbox by default.
pub const DEFAULT_MAX_PARTIALS: usize = 16;

/// The folder files are received into.
///
/// Cloning gives another handle on the same folder; the handles share the
/// set of partial files in use, so two transfers of the same name at once
/// never write into the same `.part` file, and they share the count of
/// bytes held that the quota is checked against.
#[derive(Debug, Clone)]
pub struct Inbox {
    dir: PathBuf,
    overwrite: bool,
    quota: Option<u64>,
    max_partials: usize,
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

/// Who an offer comes from, for the limit on unfinished files per sender.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Sender {
    /// A server's client, by its address group: reconnecting or opening
    /// more connections gives no fresh allowance.
    Source(Source),
    /// A user relaying files to this client, by lowercased name (empty:
    /// the server itself).
    User(String),
}

impl fmt::Display for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sender::Source(source) => write!(f, "{source}"),
            Sender::User(name) if name.is_empty() => f.write_str("the server"),
            Sender::User(name) => write!(f, "{name}"),
        }
    }
}

/// Why an offer is refused before anything touches the disk.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    /// The name is not safe to write.
    #[error("{0}")]
    BadName(String),
    /// Another transfer of the same name is under way (or already waits
    /// for the previous one to finish).
    #[error("{0:?} is already being received")]
    Busy(String),
    /// The quota has no room for the file.
    #[error(transparent)]
    Quota(#[from] QuotaExceeded),
    /// The sender already has as many unfinished files here as allowed.
    #[error(
        "too many unfinished files from {sender}: {held} uploads under way or partial \
         files kept (at most {max}); finish or resume one first"
    )]
    TooManyPartials {
        /// Who.
        sender: Sender,
        /// Its unfinished files.
        held: usize,
        /// The limit.
        max: usize,
    },
}

impl Refused {
    /// The protocol's code for this refusal.
    pub(crate) fn code(&self) -> Code {
        match self {
            Refused::BadName(_) => Code::BAD_FILE_NAME,
            Refused::Busy(_) => Code::FILE_REJECTED,
            Refused::Quota(_) => Code::INBOX_FULL,
            Refused::TooManyPartials { .. } => Code::TOO_MANY_TRANSFERS,
        }
    }
}

impl From<Refused> for io::Error {
    fn from(refused: Refused) -> io::Error {
        let kind = match &refused {
            Refused::BadName(_) => io::ErrorKind::InvalidInput,
            Refused::Busy(_) => io::ErrorKind::AlreadyExists,
            Refused::Quota(full) => {
                return io::Error::new(io::ErrorKind::StorageFull, full.clone())
            }
            Refused::TooManyPartials { .. } => io::ErrorKind::Other,
        };
        io::Error::new(kind, refused.to_string())
    }
}

/// The partial files being received, and what the folder holds.
#[derive(Debug, Default)]
struct InUse {
    ledger: Mutex<Ledger>,
    /// Signalled whenever a name is released or a waiter gives up.
    released: Condvar,
}

/// What the folder holds and has promised, kept up to date as transfers
/// start and end, so that no offer has to list the folder: one scan when
/// it is opened, then additions and subtractions.
///
/// Files changed behind ferry's back while it runs (an operator deleting
/// old uploads) are not seen until the inbox is opened again.
#[derive(Debug, Default)]
struct Ledger {
    /// Partial files (lowercased `NAME.part`) a transfer holds or waits for.
    names: HashMap<String, Slot>,
    /// Bytes of the files no transfer holds: finished files, and partial
    /// files kept for a resume.
    stored: u64,
    /// The full size of every transfer under way or about to start.
    reserved: u64,
    /// Partial files kept for a resume (counted in `stored`).
    kept: HashMap<String, KeptPart>,
    /// Unfinished files per sender: transfers under way and kept partials.
    partials: HashMap<Sender, usize>,
    /// Tells holders of the same name apart.
    next_serial: u64,
}

/// Who holds, and who waits for, one partial file's name.
#[derive(Debug, Default)]
struct Slot {
    holder: Option<Holder>,
    /// One transfer may wait for a closing holder (a resume right after a
    /// dropped link); a second is refused rather than queued.
    waiting: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Holder {
    serial: u64,
    /// The transfer is over, and its writer is finishing the last queued
    /// writes.
    closing: bool,
}

/// A partial file kept for a resume.
#[derive(Debug, Clone)]
struct KeptPart {
    len: u64,
    /// Who left it; `None` for files found when the inbox was opened, which
    /// count for nobody.
    sender: Option<Sender>,
}

impl Ledger {
    fn used(&self) -> u64 {
        self.stored.saturating_add(self.reserved)
    }

    fn count(&mut self, sender: &Option<Sender>, delta: isize) {
        let Some(sender) = sender else { return };
        let entry = self.partials.entry(sender.clone()).or_default();
        *entry = entry.saturating_add_signed(delta);
        if *entry == 0 {
            self.partials.remove(sender);
        }
    }

    /// The kept partial `key` becomes part of a transfer (counted whole in
    /// `reserved` from now on).
    fn take_kept(&mut self, key: &str) -> Option<KeptPart> {
        let kept = self.kept.remove(key)?;
        self.stored = self.stored.saturating_sub(kept.len);
        self.count(&kept.sender, -1);
        Some(kept)
    }

    fn put_kept(&mut self, key: String, kept: KeptPart) {
        self.stored = self.stored.saturating_add(kept.len);
        self.count(&kept.sender, 1);
        if let Some(old) = self.kept.insert(key, kept) {
            // Cannot happen while the name is held; stay consistent anyway.
            self.stored = self.stored.saturating_sub(old.len);
            self.count(&old.sender, -1);
        }
    }
}

impl InUse {
    fn lock(&self) -> MutexGuard<'_, Ledger> {
        // A panic elsewhere while holding the lock leaves the ledger
        // consistent: every change under it is a few plain assignments.
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How long a new transfer of a name waits for the writer of the previous
/// transfer of that name to finish (a resume right after a dropped link).
/// The wait happens on the new file's writer thread, never on a loop.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

impl Inbox {
    /// Opens `dir`, creating it if missing, and checks that files can be
    /// created in it. Errors name the folder and say what is wrong.
    ///
    /// Lists the folder once, to count what it holds for the quota (see
    /// [`quota`](Self::quota)); offers never list it again.
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
        let ledger = Ledger::scan(&dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot list inbox {}: {e}", dir.display()),
            )
        })?;
        Ok(Inbox {
            dir,
            overwrite: false,
            quota: None,
            max_partials: DEFAULT_MAX_PARTIALS,
            answer_within: None,
            in_use: Arc::new(InUse {
                ledger: Mutex::new(ledger),
                released: Condvar::new(),
            }),
        })
    }

    /// Caps the bytes the folder may hold: finished files, partial files,
    /// and the whole size of every file being received. An offer that would
    /// go over it is refused before any byte is written. `None` (the
    /// default): no quota.
    pub fn quota(mut self, quota: Option<u64>) -> Self {
        self.quota = quota;
        self
    }

    /// Caps the unfinished files one sender may have here: uploads under
    /// way plus partial files kept for a resume (default
    /// [`DEFAULT_MAX_PARTIALS`]). A server's clients are counted by source
    /// (address group), a client's senders by user name. Past it, a new
    /// file is refused with `TOO_MANY_TRANSFERS`; resuming one of its own
    /// partial files is not a new file. Partial files found when the inbox
    /// was opened count for nobody.
    pub fn max_partials_per_sender(mut self, max: usize) -> Self {
        self.max_partials = max;
        self
    }

    /// Bytes counted against the quota now: files in the folder (as last
    /// counted) and the full size of every transfer under way.
    pub fn used(&self) -> u64 {
        self.in_use.lock().used()
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
    ///
    /// Opens the file, and may wait (up to 10 s) for the writer of an
    /// earlier transfer of the same name to finish: not for an event loop.
    /// Servers and clients go through [`FileTransfers`](crate::FileTransfers),
    /// which does this on the file's writer thread.
    pub fn begin(&self, name: &str, size: u64) -> io::Result<Receiving> {
        self.reserve(name, size, None)?.open()
    }

    /// Books `name` for a transfer of `size` bytes from `sender`: checks
    /// the name, the quota and the sender's unfinished files, and holds (or
    /// queues for) the name. In memory only, O(1): fit for an event loop.
    /// [`Reservation::open`] then does the disk work.
    pub(crate) fn reserve(
        &self,
        name: &str,
        size: u64,
        sender: Option<Sender>,
    ) -> Result<Reservation, Refused> {
        check_file_name(name).map_err(|e| Refused::BadName(e.to_string()))?;
        let part_name = format!("{name}{PART_SUFFIX}");
        let key = part_name.to_lowercase();
        let mut ledger = self.in_use.lock();
        let closing = match ledger.names.get(&key) {
            None => false,
            Some(Slot {
                holder: Some(Holder { closing: true, .. }),
                waiting: None,
            }) => true,
            Some(_) => return Err(Refused::Busy(name.to_string())),
        };
        // A resume of a partial file already here is no new file.
        let resume = closing || ledger.kept.contains_key(&key);
        if let Some(sender) = sender.as_ref().filter(|_| !resume) {
            let held = ledger.partials.get(sender).copied().unwrap_or(0);
            if held >= self.max_partials {
                return Err(Refused::TooManyPartials {
                    sender: sender.clone(),
                    held,
                    max: self.max_partials,
                });
            }
        }
        if let Some(quota) = self.quota {
            // The partial file this offer resumes is part of its size. (A
            // name still closing is counted twice for the moment its writer
            // finishes: an overcount, never an overshoot.)
            let own = match closing {
                true => 0,
                false => ledger.kept.get(&key).map_or(0, |k| k.len),
            };
            let used = ledger.used().saturating_sub(own);
            if used.saturating_add(size) > quota {
                return Err(QuotaExceeded {
                    quota,
                    used,
                    wanted: size,
                }
                .into());
            }
        }
        ledger.next_serial += 1;
        let serial = ledger.next_serial;
        ledger.reserved = ledger.reserved.saturating_add(size);
        ledger.count(&sender, 1);
        let (holding, took) = if closing {
            if let Some(slot) = ledger.names.get_mut(&key) {
                slot.waiting = Some(serial);
            }
            (false, None)
        } else {
            let took = ledger.take_kept(&key);
            ledger.names.entry(key.clone()).or_default().holder = Some(Holder {
                serial,
                closing: false,
            });
            (true, took)
        };
        drop(ledger);
        Ok(Reservation {
            in_use: self.in_use.clone(),
            dir: self.dir.clone(),
            name: name.to_string(),
            part: self.dir.join(&part_name),
            key,
            size,
            overwrite: self.overwrite,
            serial,
            sender,
            holding,
            took,
            fate: Fate::Unopened,
            cancelled: Arc::default(),
        })
    }
}

impl Ledger {
    /// Counts what `dir` holds: the only listing of the folder.
    fn scan(dir: &Path) -> io::Result<Ledger> {
        let mut ledger = Ledger::default();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let Ok(meta) = entry.metadata() else {
                // Gone meanwhile.
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            ledger.stored = ledger.stored.saturating_add(meta.len());
            let key = entry.file_name().to_string_lossy().to_lowercase();
            if key.ends_with(PART_SUFFIX) {
                let kept = KeptPart {
                    len: meta.len(),
                    sender: None,
                };
                ledger.kept.insert(key, kept);
            }
        }
        Ok(ledger)
    }
}

/// What became of a reserved file, for the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Never opened: the name was given up before, or opening failed.
    Unopened,
    /// Open; whatever is on disk when it closes stays.
    Open,
    /// Closed with a partial file of this length kept (0: removed).
    Kept(u64),
    /// Stored under its final name, replacing a file of this length.
    Committed { replaced: u64 },
    /// Deleted.
    Discarded,
}

/// A file booked in an inbox by an offer: its bytes counted against the
/// quota, its name held (or waited for). Dropping it gives everything back
/// and tells the ledger what stayed on disk.
#[derive(Debug)]
pub(crate) struct Reservation {
    in_use: Arc<InUse>,
    dir: PathBuf,
    name: String,
    part: PathBuf,
    key: String,
    size: u64,
    overwrite: bool,
    serial: u64,
    sender: Option<Sender>,
    /// Holds the name; else waits for a closing holder to release it.
    holding: bool,
    /// The kept partial file this transfer took over: back to the kept
    /// ones if the transfer never opens it.
    took: Option<KeptPart>,
    fate: Fate,
    /// The transfer no longer wants the file: stop waiting for the name.
    cancelled: Arc<AtomicBool>,
}

impl Reservation {
    /// A handle for the loop, to say the transfer is over (see
    /// [`NameInUse`]).
    pub(crate) fn name_in_use(&self) -> NameInUse {
        NameInUse {
            in_use: self.in_use.clone(),
            key: self.key.clone(),
            serial: self.serial,
            cancelled: self.cancelled.clone(),
        }
    }

    /// Waits, if need be, for the writer of an earlier transfer of the name
    /// to finish, then opens (or creates) `NAME.part`. Blocking: call it
    /// off the loop (a writer thread does).
    pub(crate) fn open(mut self) -> io::Result<Receiving> {
        if !self.holding {
            self.wait_for_name()?;
        }
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&self.part)
        {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                OpenOptions::new().read(true).write(true).open(&self.part)?
            }
            Err(e) => return Err(e),
        };
        // From here, whatever is on disk is the ledger's to count.
        self.fate = Fate::Open;
        let held = file.metadata()?.len();
        let resume_from = if held <= self.size {
            held
        } else {
            // Longer than the file on offer: not a prefix of it.
            file.set_len(0)?;
            0
        };
        Ok(Receiving {
            file,
            resume_from,
            writeback: Writeback::default(),
            reservation: self,
        })
    }

    fn wait_for_name(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + RELEASE_WAIT;
        let mut ledger = self.in_use.lock();
        loop {
            if self.cancelled.load(Ordering::Acquire) {
                return Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "the transfer ended before its file was opened",
                ));
            }
            let slot = ledger.names.entry(self.key.clone()).or_default();
            if slot.holder.is_none() {
                slot.holder = Some(Holder {
                    serial: self.serial,
                    closing: false,
                });
                if slot.waiting == Some(self.serial) {
                    slot.waiting = None;
                }
                self.holding = true;
                self.took = ledger.take_kept(&self.key);
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "the previous transfer of {:?} is still finishing",
                        self.name
                    ),
                ));
            }
            ledger = self
                .in_use
                .released
                .wait_timeout(ledger, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.fate == Fate::Open {
            self.fate = Fate::Kept(keep_or_remove(&self.part));
        }
        let mut ledger = self.in_use.lock();
        ledger.reserved = ledger.reserved.saturating_sub(self.size);
        ledger.count(&self.sender, -1);
        if self.holding {
            match self.fate {
                Fate::Unopened | Fate::Open => {
                    if let Some(took) = self.took.take() {
                        ledger.put_kept(self.key.clone(), took);
                    }
                }
                Fate::Kept(0) | Fate::Discarded => {}
                Fate::Kept(len) => {
                    let kept = KeptPart {
                        len,
                        sender: self.sender.clone(),
                    };
                    ledger.put_kept(self.key.clone(), kept);
                }
                Fate::Committed { replaced } => {
                    ledger.stored = ledger
                        .stored
                        .saturating_add(self.size)
                        .saturating_sub(replaced);
                }
            }
        }
        if let Some(slot) = ledger.names.get_mut(&self.key) {
            if slot.holder.is_some_and(|h| h.serial == self.serial) {
                slot.holder = None;
            }
            if slot.waiting == Some(self.serial) {
                slot.waiting = None;
            }
            if slot.holder.is_none() && slot.waiting.is_none() {
                ledger.names.remove(&self.key);
            }
        }
        drop(ledger);
        self.in_use.released.notify_all();
    }
}

/// The length of the partial file at `part`, now that its transfer is
/// over; an empty one is removed (it holds nothing to resume from, and
/// offers that never sent a byte must not leave litter), and counts as 0.
fn keep_or_remove(part: &Path) -> u64 {
    match fs::metadata(part) {
        Ok(meta) if meta.len() > 0 => meta.len(),
        Ok(_) => {
            // If it cannot be removed it holds no bytes anyway.
            let _ = fs::remove_file(part);
            0
        }
        Err(_) => 0,
    }
}

/// Held by whoever drives a [`Receiving`] from elsewhere: dropping it says
/// the transfer is over. The file may still be finishing writes, so the
/// name is marked as closing (a new transfer of it waits instead of being
/// refused), and a writer still waiting to open the file gives up.
#[derive(Debug)]
pub(crate) struct NameInUse {
    in_use: Arc<InUse>,
    key: String,
    serial: u64,
    cancelled: Arc<AtomicBool>,
}

impl Drop for NameInUse {
    fn drop(&mut self) {
        self.cancelled.store(true, Ordering::Release);
        let mut ledger = self.in_use.lock();
        if let Some(holder) = ledger
            .names
            .get_mut(&self.key)
            .and_then(|slot| slot.holder.as_mut())
        {
            if holder.serial == self.serial {
                holder.closing = true;
            }
        }
        drop(ledger);
        // Wakes a writer waiting for this name, to see it is cancelled.
        self.in_use.released.notify_all();
    }
}

/// A file being received into `NAME.part`.
#[derive(Debug)]
pub struct Receiving {
    file: File,
    resume_from: u64,
    writeback: Writeback,
    /// Last: the file is closed before the reservation looks at what it
    /// left on disk.
    reservation: Reservation,
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
        &self.reservation.name
    }

    /// The partial file's path.
    pub fn part_path(&self) -> &Path {
        &self.reservation.part
    }

    /// Reads `len` bytes at `offset` of the partial file (to hash the prefix
    /// before resuming).
    pub fn read_at(&mut self, offset: u64, len: u32) -> io::Result<Bytes> {
        read_exact_at(&self.file, offset, len)
    }

    /// Writes received bytes at `offset`.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if offset + data.len() as u64 > self.reservation.size {
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
        let Receiving {
            file,
            mut reservation,
            ..
        } = self;
        let r = &mut reservation;
        file.set_len(r.size)?;
        file.sync_all()?;
        drop(file);
        let (target, replaced) = if r.overwrite {
            let target = r.dir.join(&r.name);
            let replaced = fs::symlink_metadata(&target)
                .ok()
                .filter(|m| m.is_file())
                .map_or(0, |m| m.len());
            fs::rename(&r.part, &target)?;
            (target, replaced)
        } else {
            (place_without_clobbering(&r.dir, &r.name, &r.part)?, 0)
        };
        r.fate = Fate::Committed { replaced };
        sync_dir(&r.dir);
        Ok(target)
    }

    /// Deletes the partial file (its contents are known to be wrong).
    pub fn discard(self) -> io::Result<()> {
        let Receiving {
            file,
            mut reservation,
            ..
        } = self;
        drop(file);
        let removed = fs::remove_file(&reservation.part);
        if removed.is_ok() {
            reservation.fate = Fate::Discarded;
        }
        removed
    }

    /// Closes the file, the transfer over unfinished: the partial file
    /// stays for a resume, unless it is empty, when it is removed. Returns
    /// the bytes it holds (0: removed). Dropping a `Receiving` does the
    /// same.
    pub fn close(self) -> u64 {
        let Receiving {
            file,
            mut reservation,
            ..
        } = self;
        drop(file);
        let held = keep_or_remove(&reservation.part);
        reservation.fate = Fate::Kept(held);
        held
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
