//! The receiving folder: private partial files, resume by secret, and the
//! final move; and what the folder holds, counted as it changes.
//!
//! A file being received is written into a private subfolder
//! ([`PARTIALS_DIR`], `0700`) under a name the receiver derives from a
//! random secret, the transfer's resume key: no name a sender chooses can
//! reach it, no stored file is ever taken for it, and only the sender who
//! was handed the key can resume it (anyone else offering the same name and
//! size starts a separate file and learns nothing about the first). Every
//! file operation goes through the folder's descriptor and never follows a
//! link (see [`crate::confined`]), and a verified file is moved to its final
//! name without ever replacing what is there (unless told to overwrite).
//!
//! Everything an offer needs to be answered is decided in memory, in O(1):
//! the quota, the limit on unfinished files per sender, whether the
//! presented key names a partial file. Whatever touches the disk or may
//! wait (opening the partial file, waiting for the writer of an earlier
//! attempt of the same transfer) is [`Reservation::open`], which runs on the
//! file's writer thread, never on the loop that drives the protocol. Stale
//! partial files are removed by a thread of the inbox's own after
//! [`Inbox::partial_ttl`].

use crate::confined::{ConfinedDir, EntryStat};
use crate::sending::{positioned, read_exact_at};
use crate::tree::{remove_staged, staged_tree_name, TreeWriteError, TreeWriter, TREE_SUFFIX};
use bytes::Bytes;
use ferry_core::filename::check_file_name;
use ferry_core::frame::HeldFile;
use ferry_core::tree::Manifest;
use ferry_core::{Code, ResumeKey, Source};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// The private subfolder of an inbox that holds the files being received
/// and those kept for a resume.
pub const PARTIALS_DIR: &str = ".ferry-partial";

/// Ends the name of every partial file in [`PARTIALS_DIR`].
pub const PART_SUFFIX: &str = ".part";

/// How many unfinished files (uploads under way and partial files kept for
/// a resume) one sender may have in an inbox by default.
pub const DEFAULT_MAX_PARTIALS: usize = 16;

/// How long a partial file is kept for a resume after its last write, by
/// default: a day.
pub const DEFAULT_PARTIAL_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The folder files are received into.
///
/// Cloning gives another handle on the same folder; the handles share the
/// partial files in use and the count of bytes held that the quota is
/// checked against.
#[derive(Debug, Clone)]
pub struct Inbox {
    dirs: Arc<Dirs>,
    overwrite: bool,
    quota: Option<u64>,
    max_partials: usize,
    /// Offers of larger files are refused.
    max_file_size: Option<u64>,
    /// Only these senders' files are taken (their name keys); empty: anyone's.
    only_from: Arc<HashSet<String>>,
    /// Ask the user before accepting an offer, waiting this long at most.
    answer_within: Option<Duration>,
    in_use: Arc<InUse>,
    /// Dropped with the last handle, which stops the expiry thread.
    _janitor: Arc<JanitorStop>,
}

/// The inbox and its private folder of partial files.
#[derive(Debug)]
struct Dirs {
    inbox: ConfinedDir,
    partials: ConfinedDir,
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
            Sender::User(name) => write!(f, "{name:?}"),
        }
    }
}

/// Why an offer is refused before anything touches the disk.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    /// The name is not safe to write.
    #[error("{0}")]
    BadName(String),
    /// The transfer this offer resumes is still open on another
    /// connection (the sender's earlier one, not yet known to be gone).
    #[error(
        "the earlier attempt at {0:?} is still open on another connection; \
         offer it again in a few seconds"
    )]
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
    /// The file is larger than this receiver takes.
    #[error("{size} bytes is over the {max}-byte limit of this receiver")]
    TooLarge {
        /// The size offered.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// This receiver takes files only from some users, not this one.
    #[error("not accepting files from {0:?}")]
    NotFrom(String),
    /// No secret could be drawn for the transfer.
    #[error("cannot draw a resume key: {0}")]
    NoEntropy(String),
}

impl Refused {
    /// The protocol's code for this refusal.
    pub(crate) fn code(&self) -> Code {
        match self {
            Refused::BadName(_) => Code::BAD_FILE_NAME,
            Refused::Busy(_) => Code::TRY_AGAIN,
            Refused::Quota(_) => Code::INBOX_FULL,
            Refused::TooManyPartials { .. } => Code::TOO_MANY_TRANSFERS,
            Refused::NoEntropy(_) => Code::IO_ERROR,
            Refused::TooLarge { .. } => Code::FILE_TOO_LARGE,
            Refused::NotFrom(_) => Code::FILE_REJECTED,
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
            Refused::TooLarge { .. } => io::ErrorKind::FileTooLarge,
            Refused::NotFrom(_) => io::ErrorKind::PermissionDenied,
            Refused::TooManyPartials { .. } | Refused::NoEntropy(_) => io::ErrorKind::Other,
        };
        io::Error::new(kind, refused.to_string())
    }
}

/// The partial files in use, and what the folder holds.
#[derive(Debug)]
struct InUse {
    ledger: Mutex<Ledger>,
    /// Signalled whenever a partial file is let go or kept, a waiter gives
    /// up, or the expiry thread is to look again (or stop).
    released: Condvar,
}

/// Stops the expiry thread when the last handle on the inbox is dropped.
#[derive(Debug)]
struct JanitorStop(Arc<InUse>);

impl Drop for JanitorStop {
    fn drop(&mut self) {
        self.0.lock().stopped = true;
        self.0.released.notify_all();
    }
}

/// What the folder holds and has promised, kept up to date as transfers
/// start and end, so that no offer has to list the folder: one scan when
/// it is opened, then additions and subtractions.
///
/// Files changed behind ferry's back while it runs (an operator deleting
/// old uploads) are not seen until the inbox is opened again.
#[derive(Debug)]
struct Ledger {
    /// Partial files (their names in [`PARTIALS_DIR`]) a transfer holds or
    /// waits for.
    slots: HashMap<String, Slot>,
    /// Bytes of the files no transfer holds: finished files, and partial
    /// files kept for a resume.
    stored: u64,
    /// The full size of every transfer under way or about to start.
    reserved: u64,
    /// Partial files kept for a resume (counted in `stored`).
    kept: HashMap<String, KeptPart>,
    /// The kept partial files by when they were last written, oldest first.
    by_age: BTreeSet<(SystemTime, String)>,
    /// How long a kept partial file stays.
    ttl: Duration,
    /// Unfinished files per sender: transfers under way and kept partials.
    partials: HashMap<Sender, usize>,
    /// Tells holders of the same partial file apart.
    next_serial: u64,
    /// No handle on the inbox is left: the expiry thread ends.
    stopped: bool,
}

/// Who holds, and who waits for, one partial file.
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
    /// For a tree left by a writer of this process: what it held
    /// ([`TreeWriter::held`]), so that a resume need not read it back.
    held: Option<Arc<[HeldFile]>>,
    /// Who left it; `None` for files found when the inbox was opened, which
    /// count for nobody.
    sender: Option<Sender>,
    /// When it was last written.
    since: SystemTime,
}

impl Ledger {
    fn new() -> Ledger {
        Ledger {
            slots: HashMap::new(),
            stored: 0,
            reserved: 0,
            kept: HashMap::new(),
            by_age: BTreeSet::new(),
            ttl: DEFAULT_PARTIAL_TTL,
            partials: HashMap::new(),
            next_serial: 0,
            stopped: false,
        }
    }

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

    /// The kept partial `staged` becomes part of a transfer (counted whole
    /// in `reserved` from now on).
    fn take_kept(&mut self, staged: &str) -> Option<KeptPart> {
        let kept = self.kept.remove(staged)?;
        self.by_age.remove(&(kept.since, staged.to_string()));
        self.stored = self.stored.saturating_sub(kept.len);
        self.count(&kept.sender, -1);
        Some(kept)
    }

    fn put_kept(&mut self, staged: String, kept: KeptPart) {
        self.stored = self.stored.saturating_add(kept.len);
        self.count(&kept.sender, 1);
        self.by_age.insert((kept.since, staged.clone()));
        if let Some(old) = self.kept.insert(staged.clone(), kept) {
            // Cannot happen while the file is held; stay consistent anyway.
            self.by_age.remove(&(old.since, staged));
            self.stored = self.stored.saturating_sub(old.len);
            self.count(&old.sender, -1);
        }
    }

    /// Forgets the kept partial files last written before `now - ttl` and
    /// returns their names, for the caller to remove outside the lock.
    fn expire(&mut self, now: SystemTime) -> Vec<String> {
        let mut expired = Vec::new();
        while let Some((since, staged)) = self.by_age.first().cloned() {
            if since + self.ttl > now {
                break;
            }
            self.take_kept(&staged);
            expired.push(staged);
        }
        expired
    }

    /// How long until the oldest kept partial file expires.
    fn next_expiry(&self, now: SystemTime) -> Option<Duration> {
        let (since, _) = self.by_age.first()?;
        Some(
            (*since + self.ttl)
                .duration_since(now)
                .unwrap_or(Duration::ZERO),
        )
    }
}

impl InUse {
    fn lock(&self) -> MutexGuard<'_, Ledger> {
        // A panic elsewhere while holding the lock leaves the ledger
        // consistent: every change under it is a few plain assignments.
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How long a resumed transfer waits for the writer of its previous attempt
/// to finish (a resume right after a dropped link). The wait happens on the
/// new file's writer thread, never on a loop.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// How often the expiry thread looks at least, so that a changed TTL or a
/// clock that jumped is seen.
const EXPIRY_CHECK: Duration = Duration::from_secs(60);

/// The name in [`PARTIALS_DIR`] of the partial file a key resumes: derived
/// from the key, so that listing the folder reveals no key, and it is a
/// name no sender can choose.
fn staged_name(key: &ResumeKey) -> String {
    let derived = blake3::derive_key("ferry 2026-12 inbox partial file name", key.as_bytes());
    let hex = blake3::Hash::from(derived).to_hex();
    format!("{}{PART_SUFFIX}", &hex[..32])
}

/// Whether `name` is one [`staged_name`] makes.
fn is_staged_name(name: &str) -> bool {
    name.strip_suffix(PART_SUFFIX).is_some_and(|hex| {
        hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Whether `name` is one [`staged_tree_name`] makes.
fn is_staged_tree_name(name: &str) -> bool {
    name.strip_suffix(TREE_SUFFIX).is_some_and(|hex| {
        hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// A new key for something other than a single file (a tree's staging
/// folder), from the operating system's secure random source.
pub(crate) fn fresh_resume_key() -> io::Result<ResumeKey> {
    fresh_key().map_err(io::Error::from)
}

/// A new key, from the operating system's secure random source.
fn fresh_key() -> Result<ResumeKey, Refused> {
    let mut key = [0; ResumeKey::LEN];
    getrandom::fill(&mut key).map_err(|e| Refused::NoEntropy(e.to_string()))?;
    Ok(ResumeKey::from_bytes(key))
}

impl Inbox {
    /// Opens `dir`, creating it and its private folder of partial files
    /// ([`PARTIALS_DIR`]) if missing, and checks that files can be created
    /// there. Errors name the folder and say what is wrong.
    ///
    /// Lists the folder once, to count what it holds for the quota (see
    /// [`quota`](Self::quota)); offers never list it again. Starts a thread
    /// that removes partial files older than [`partial_ttl`](Self::partial_ttl);
    /// it ends with the last handle on the inbox.
    pub fn open(dir: impl AsRef<Path>) -> io::Result<Inbox> {
        let dir = dir.as_ref();
        let context = |what: &str| {
            let dir = dir.display().to_string();
            let what = what.to_string();
            move |e: io::Error| io::Error::new(e.kind(), format!("{what} {dir}: {e}"))
        };
        std::fs::create_dir_all(dir).map_err(context("cannot create inbox"))?;
        let inbox = ConfinedDir::open(dir).map_err(context("cannot open inbox"))?;
        let partials = inbox
            .private_subdir(PARTIALS_DIR)
            .map_err(context("cannot make the partial-file folder of inbox"))?;
        let probe = format!(".write-test-{}", std::process::id());
        partials
            .create_new(&probe)
            .and_then(|_| partials.remove(&probe))
            .map_err(context("cannot write into inbox"))?;
        let dirs = Arc::new(Dirs { inbox, partials });
        let ledger = Ledger::scan(&dirs).map_err(context("cannot list inbox"))?;
        let in_use = Arc::new(InUse {
            ledger: Mutex::new(ledger),
            released: Condvar::new(),
        });
        spawn_janitor(in_use.clone(), dirs.clone())
            .map_err(context("cannot start the expiry thread of inbox"))?;
        let janitor = JanitorStop(in_use.clone());
        Ok(Inbox {
            dirs,
            overwrite: false,
            quota: None,
            max_partials: DEFAULT_MAX_PARTIALS,
            max_file_size: None,
            only_from: Arc::default(),
            answer_within: None,
            in_use,
            _janitor: Arc::new(janitor),
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

    /// Removes a partial file kept for a resume once it has not been
    /// written for `ttl` (default [`DEFAULT_PARTIAL_TTL`]), for every handle
    /// on this folder. Files found when the inbox was opened are aged from
    /// their modification time.
    pub fn partial_ttl(self, ttl: Duration) -> Self {
        self.in_use.lock().ttl = ttl;
        // Wakes the expiry thread to look again with the new TTL.
        self.in_use.released.notify_all();
        self
    }

    /// Refuses offers of files larger than `max` bytes (`FILE_TOO_LARGE`)
    /// before anyone is asked. `None` (the default): no limit beyond the
    /// quota.
    pub fn max_file_size(mut self, max: Option<u64>) -> Self {
        self.max_file_size = max;
        self
    }

    /// Takes files only from these users (a client receiving relayed
    /// files), compared as the server compares names: ignoring case and
    /// look-alikes. Offers from anyone else are refused (`FILE_REJECTED`)
    /// before anyone is asked. Empty (the default): from anyone.
    pub fn only_from<S: AsRef<str>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.only_from = Arc::new(
            names
                .into_iter()
                .map(|name| ferry_core::names::name_key(name.as_ref()))
                .collect(),
        );
        self
    }

    /// Whether an offer of `size` bytes from `peer` may be taken at all
    /// (its size, its sender): what is checked before a user is asked.
    pub(crate) fn admits(&self, peer: &str, size: u64) -> Result<(), Refused> {
        if let Some(max) = self.max_file_size.filter(|&max| size > max) {
            return Err(Refused::TooLarge { size, max });
        }
        if !self.only_from.is_empty()
            && !self.only_from.contains(&ferry_core::names::name_key(peer))
        {
            return Err(Refused::NotFrom(peer.to_string()));
        }
        Ok(())
    }

    /// Whether `key` names a partial file kept here (or one whose transfer
    /// is just ending): an offer presenting it continues a transfer this
    /// receiver already took.
    pub(crate) fn keeps(&self, key: &ResumeKey) -> bool {
        let ledger = self.in_use.lock();
        [Staged::File, Staged::Tree].iter().any(|kind| {
            let staged = kind.name(key);
            ledger.kept.contains_key(&staged) || ledger.slots.contains_key(&staged)
        })
    }

    /// Books a tree (a folder sent whole) `name` of `size` bytes from
    /// `sender`, taking up the staging folder of `resume` if one is kept:
    /// as [`reserve`](Self::reserve) does for a file, with the tree's
    /// staging folder (`HEX.tree`, see [`TreeWriter`]) in place of a
    /// partial file. Its full size counts against the quota until the
    /// reservation is dropped, or for good once the tree is stored. In
    /// memory only, O(1): fit for an event loop.
    /// [`Reservation::open_tree`] then does the disk work.
    pub(crate) fn reserve_tree(
        &self,
        name: &str,
        size: u64,
        sender: Option<Sender>,
        resume: Option<ResumeKey>,
    ) -> Result<Reservation, Refused> {
        self.book(name, size, sender, resume, Staged::Tree)
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
        self.dirs.inbox.path()
    }

    /// Starts receiving a new file `name` of `size` bytes (the name already
    /// checked by the core; checked again here, as this is where it becomes
    /// a file), or, with `resume` the key an earlier attempt was given,
    /// continues that attempt's partial file: its length is then the offset
    /// to resume from. A key that names no partial file here starts a new
    /// file, as without one.
    ///
    /// Opens the file, and may wait (up to 10 s) for the writer of the
    /// earlier attempt to finish: not for an event loop. Servers and clients
    /// go through [`FileTransfers`](crate::FileTransfers), which does this
    /// on the file's writer thread.
    pub fn begin(&self, name: &str, size: u64, resume: Option<ResumeKey>) -> io::Result<Receiving> {
        self.reserve(name, size, None, resume)?.open()
    }

    /// Books a file `name` of `size` bytes from `sender`, resuming the
    /// partial file of `resume` if there is one: checks the name, the quota
    /// and the sender's unfinished files, and holds (or queues for) the
    /// partial file. In memory only, O(1): fit for an event loop.
    /// [`Reservation::open`] then does the disk work.
    pub(crate) fn reserve(
        &self,
        name: &str,
        size: u64,
        sender: Option<Sender>,
        resume: Option<ResumeKey>,
    ) -> Result<Reservation, Refused> {
        check_file_name(name).map_err(|e| Refused::BadName(e.to_string()))?;
        self.book(name, size, sender, resume, Staged::File)
    }

    /// [`reserve`](Self::reserve) and [`reserve_tree`](Self::reserve_tree):
    /// what is staged for `staged` is named after the key.
    fn book(
        &self,
        name: &str,
        size: u64,
        sender: Option<Sender>,
        resume: Option<ResumeKey>,
        kind: Staged,
    ) -> Result<Reservation, Refused> {
        if let Some(max) = self.max_file_size.filter(|&max| size > max) {
            return Err(Refused::TooLarge { size, max });
        }
        let mut ledger = self.in_use.lock();
        // What the key resumes: a kept partial file, or one whose writer is
        // still closing. A key that names nothing starts a new file.
        let mut resumed = None;
        if let Some(key) = resume {
            let staged = kind.name(&key);
            match ledger.slots.get(&staged) {
                None if ledger.kept.contains_key(&staged) => resumed = Some((key, staged, false)),
                None => {}
                Some(Slot {
                    holder: Some(Holder { closing: true, .. }),
                    waiting: None,
                }) => resumed = Some((key, staged, true)),
                Some(_) => return Err(Refused::Busy(name.to_string())),
            }
        }
        let resuming = resumed.is_some();
        let (key, staged, closing) = match resumed {
            Some(resumed) => resumed,
            None => loop {
                let key = fresh_key()?;
                let staged = kind.name(&key);
                if !ledger.slots.contains_key(&staged) && !ledger.kept.contains_key(&staged) {
                    break (key, staged, false);
                }
            },
        };
        // A resume of a partial file already here is no new file.
        if let Some(sender) = sender.as_ref().filter(|_| !resuming) {
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
            // file still closing is counted twice for the moment its writer
            // finishes: an overcount, never an overshoot.)
            let own = match closing {
                true => 0,
                false => ledger.kept.get(&staged).map_or(0, |k| k.len),
            };
            fits(quota, ledger.used().saturating_sub(own), size)?;
        }
        ledger.next_serial += 1;
        let serial = ledger.next_serial;
        ledger.reserved = ledger.reserved.saturating_add(size);
        ledger.count(&sender, 1);
        let (holding, took) = if closing {
            if let Some(slot) = ledger.slots.get_mut(&staged) {
                slot.waiting = Some(serial);
            }
            (false, None)
        } else {
            let took = ledger.take_kept(&staged);
            ledger.slots.entry(staged.clone()).or_default().holder = Some(Holder {
                serial,
                closing: false,
            });
            (true, took)
        };
        drop(ledger);
        Ok(Reservation {
            in_use: self.in_use.clone(),
            dirs: self.dirs.clone(),
            kind,
            tree_held: None,
            name: name.to_string(),
            staged,
            key,
            size,
            quota: self.quota,
            entries_charge: 0,
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
    /// Counts what the inbox holds: the only listing of the folder. Regular
    /// files count, and so do the regular files inside its folders (stored
    /// trees), listed through descriptors and never through a link; links
    /// themselves do not. The partial files found are kept for a resume,
    /// aged from when they were last written.
    fn scan(dirs: &Dirs) -> io::Result<Ledger> {
        let mut ledger = Ledger::new();
        for (name, stat) in dirs.inbox.entries()? {
            if stat.regular {
                ledger.stored = ledger.stored.saturating_add(stat.len);
            } else if stat.directory && name != PARTIALS_DIR {
                if let Some(folder) = name.to_str().and_then(|n| dirs.inbox.open_dir(n).ok()) {
                    let usage = folder_usage(&folder, 1).quota_bytes();
                    ledger.stored = ledger.stored.saturating_add(usage);
                }
            }
        }
        for (name, stat) in dirs.partials.entries()? {
            let Some(name) = name.to_str() else {
                continue;
            };
            let len = if is_staged_name(name) && stat.regular && stat.links == 1 {
                stat.len
            } else if is_staged_tree_name(name) && stat.directory {
                // A tree's staging folder: the bytes of its files, and
                // its files and folders at their cost.
                dirs.partials
                    .open_dir(name)
                    .map_or(0, |folder| folder_usage(&folder, 1).quota_bytes())
            } else {
                continue;
            };
            let since = SystemTime::UNIX_EPOCH
                + Duration::from_secs(u64::try_from(stat.modified).unwrap_or(0));
            let kept = KeptPart {
                len,
                held: None,
                sender: None,
                since,
            };
            ledger.put_kept(name.to_string(), kept);
        }
        Ok(ledger)
    }
}

/// Whether `wanted` more bytes fit in `quota` with `used` taken.
fn fits(quota: u64, used: u64, wanted: u64) -> Result<(), Refused> {
    match used.saturating_add(wanted) > quota {
        true => Err(QuotaExceeded {
            quota,
            used,
            wanted,
        }
        .into()),
        false => Ok(()),
    }
}

/// What each file and folder of a tree counts against the quota beyond
/// its bytes: a folder or an empty file costs the disk an inode and a
/// block however little it holds, so a tree of 100,000 empty folders is
/// not free (it held 412 MB of a 1 MB quota before it was counted).
pub const ENTRY_COST: u64 = 4096;

/// What a folder holds, as the quota counts it.
#[derive(Debug, Clone, Copy, Default)]
struct FolderUsage {
    /// Bytes of its regular files, at every depth.
    bytes: u64,
    /// Its files and folders, at every depth.
    entries: u64,
}

impl FolderUsage {
    /// Its bytes, and [`ENTRY_COST`] for each entry and for the folder
    /// itself: what the tree it is was booked at.
    fn quota_bytes(self) -> u64 {
        self.entries
            .saturating_add(1)
            .saturating_mul(ENTRY_COST)
            .saturating_add(self.bytes)
    }
}

/// The regular files and folders in `folder` and the folders below it, to
/// [`SCAN_DEPTH`] levels (deeper ones are not counted), each opened from
/// its parent's descriptor without following a link. Depth first, so that
/// only the folders on the way down are open at once. A folder that
/// cannot be read (another user's, say) counts as empty: it must not keep
/// the inbox from opening.
fn folder_usage(folder: &ConfinedDir, depth: usize) -> FolderUsage {
    let Ok(entries) = folder.entries() else {
        return FolderUsage::default();
    };
    let mut usage = FolderUsage::default();
    for (name, stat) in entries {
        if stat.regular {
            usage.bytes = usage.bytes.saturating_add(stat.len);
            usage.entries = usage.entries.saturating_add(1);
        } else if stat.directory {
            usage.entries = usage.entries.saturating_add(1);
            if depth < SCAN_DEPTH {
                if let Some(below) = name.to_str().and_then(|n| folder.open_dir(n).ok()) {
                    let inner = folder_usage(&below, depth + 1);
                    usage.bytes = usage.bytes.saturating_add(inner.bytes);
                    usage.entries = usage.entries.saturating_add(inner.entries);
                }
            }
        }
    }
    usage
}

/// How deep [`folder_usage`] goes: deeper than any tree a receiver takes
/// ([`TreeLimits::max_depth`](ferry_core::tree::TreeLimits::max_depth),
/// 32 by default, and the top-level folder).
const SCAN_DEPTH: usize = 64;

/// Starts the thread that removes expired partial files. It sleeps until
/// the oldest kept file is due (or a file is kept or let go, or the TTL
/// changes, all of which signal `released`), and ends once the last handle
/// on the inbox is dropped ([`JanitorStop`]).
fn spawn_janitor(in_use: Arc<InUse>, dirs: Arc<Dirs>) -> io::Result<()> {
    std::thread::Builder::new()
        .name("ferry-inbox-expiry".into())
        .spawn(move || {
            let mut ledger = in_use.lock();
            while !ledger.stopped {
                let now = SystemTime::now();
                let expired = ledger.expire(now);
                if !expired.is_empty() {
                    drop(ledger);
                    for staged in &expired {
                        // Gone already is as good as removed.
                        if is_staged_tree_name(staged) {
                            let _ = remove_staged(&dirs.partials, staged);
                        } else {
                            let _ = dirs.partials.remove(staged);
                        }
                    }
                    ledger = in_use.lock();
                    continue;
                }
                let wait = ledger
                    .next_expiry(now)
                    .map_or(EXPIRY_CHECK, |left| left.min(EXPIRY_CHECK))
                    .max(Duration::from_millis(10));
                ledger = in_use
                    .released
                    .wait_timeout(ledger, wait)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        })?;
    Ok(())
}

/// What became of a reserved file, for the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Never opened: given up before, or opening failed.
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
/// quota, its partial file held (or waited for). Dropping it gives
/// everything back and tells the ledger what stayed on disk.
#[derive(Debug)]
pub(crate) struct Reservation {
    in_use: Arc<InUse>,
    dirs: Arc<Dirs>,
    /// A file's partial file, or a tree's staging folder.
    kind: Staged,
    /// What a tree's writer left in its staging folder, once it is done.
    tree_held: Option<Arc<[HeldFile]>>,
    name: String,
    /// The partial file's name in [`PARTIALS_DIR`].
    staged: String,
    key: ResumeKey,
    size: u64,
    quota: Option<u64>,
    /// What a tree's files and folders count beyond their bytes
    /// ([`ENTRY_COST`] each), booked once its manifest is known.
    entries_charge: u64,
    overwrite: bool,
    serial: u64,
    sender: Option<Sender>,
    /// Holds the partial file; else waits for a closing holder to let go.
    holding: bool,
    /// The kept partial file this transfer took over: back to the kept
    /// ones if the transfer never opens it.
    took: Option<KeptPart>,
    fate: Fate,
    /// The transfer no longer wants the file: stop waiting for it.
    cancelled: Arc<AtomicBool>,
}

impl Reservation {
    /// Books a tree's `entries` (its files and folders, the top-level one
    /// included) at [`ENTRY_COST`] each, on top of its bytes, or refuses
    /// with the quota if they do not fit. In memory only, O(1).
    pub(crate) fn charge_entries(&mut self, entries: u64) -> Result<(), Refused> {
        let charge = entries.saturating_mul(ENTRY_COST);
        let mut ledger = self.in_use.lock();
        if let Some(quota) = self.quota {
            fits(quota, ledger.used(), charge)?;
        }
        ledger.reserved = ledger.reserved.saturating_add(charge);
        self.entries_charge = self.entries_charge.saturating_add(charge);
        Ok(())
    }

    /// A handle for the loop, to say the transfer is over (see
    /// [`NameInUse`]).
    pub(crate) fn name_in_use(&self) -> NameInUse {
        NameInUse {
            in_use: self.in_use.clone(),
            staged: self.staged.clone(),
            serial: self.serial,
            cancelled: self.cancelled.clone(),
        }
    }

    /// Waits, if need be, for the writer of the earlier attempt to finish,
    /// then opens the partial file it kept, or creates a new one. A kept
    /// file that is no longer what ferry left there (replaced by a link, or
    /// given a second name) is removed, never opened, and the transfer
    /// starts from nothing. Blocking: call it off the loop (a writer thread
    /// does).
    pub(crate) fn open(mut self) -> io::Result<Receiving> {
        if !self.holding {
            self.wait_for_release()?;
        }
        let partials = &self.dirs.partials;
        let opened = match partials.create_new(&self.staged) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                match partials.open_own(&self.staged) {
                    Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                        partials.remove(&self.staged)?;
                        partials.create_new(&self.staged)
                    }
                    opened => opened,
                }
            }
            created => created,
        };
        let file = opened?;
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

    fn wait_for_release(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + RELEASE_WAIT;
        let mut ledger = self.in_use.lock();
        loop {
            if self.cancelled.load(Ordering::Acquire) {
                return Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "the transfer ended before its file was opened",
                ));
            }
            let slot = ledger.slots.entry(self.staged.clone()).or_default();
            if slot.holder.is_none() {
                slot.holder = Some(Holder {
                    serial: self.serial,
                    closing: false,
                });
                if slot.waiting == Some(self.serial) {
                    slot.waiting = None;
                }
                self.holding = true;
                self.took = ledger.take_kept(&self.staged);
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("the previous attempt at {:?} is still finishing", self.name),
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
            let partials = &self.dirs.partials;
            self.fate = Fate::Kept(match self.kind {
                Staged::File => keep_or_remove(partials, &self.staged),
                Staged::Tree => keep_or_remove_tree(partials, &self.staged),
            });
        }
        let mut ledger = self.in_use.lock();
        let booked = self.size.saturating_add(self.entries_charge);
        ledger.reserved = ledger.reserved.saturating_sub(booked);
        ledger.count(&self.sender, -1);
        if self.holding {
            match self.fate {
                Fate::Unopened | Fate::Open => {
                    if let Some(took) = self.took.take() {
                        ledger.put_kept(self.staged.clone(), took);
                    }
                }
                Fate::Kept(0) | Fate::Discarded => {}
                Fate::Kept(len) => {
                    let kept = KeptPart {
                        len,
                        held: self.tree_held.take(),
                        sender: self.sender.clone(),
                        since: SystemTime::now(),
                    };
                    ledger.put_kept(self.staged.clone(), kept);
                }
                Fate::Committed { replaced } => {
                    ledger.stored = ledger
                        .stored
                        .saturating_add(booked)
                        .saturating_sub(replaced);
                }
            }
        }
        if let Some(slot) = ledger.slots.get_mut(&self.staged) {
            if slot.holder.is_some_and(|h| h.serial == self.serial) {
                slot.holder = None;
            }
            if slot.waiting == Some(self.serial) {
                slot.waiting = None;
            }
            if slot.holder.is_none() && slot.waiting.is_none() {
                ledger.slots.remove(&self.staged);
            }
        }
        drop(ledger);
        self.in_use.released.notify_all();
    }
}

/// The length of the partial file `staged`, now that its transfer is over;
/// an empty one is removed (it holds nothing to resume from, and offers
/// that never sent a byte must not leave litter), and counts as 0.
///
/// Anything but a regular file with a single link there is not ours (it was
/// put in place of the file): the name is removed, never what it points to.
fn keep_or_remove(partials: &ConfinedDir, staged: &str) -> u64 {
    match partials.stat(staged) {
        Ok(Some(EntryStat {
            regular: true,
            links: 1,
            len: len @ 1..,
            ..
        })) => len,
        Ok(Some(_)) => {
            // If it cannot be removed it holds no bytes of ours anyway.
            let _ = partials.remove(staged);
            0
        }
        Ok(None) | Err(_) => 0,
    }
}

/// The bytes of the files in the staging folder `staged`, now that its
/// tree's transfer is over; one that holds none is removed, with its note
/// (nothing to resume from), and counts as 0.
fn keep_or_remove_tree(partials: &ConfinedDir, staged: &str) -> u64 {
    let usage = match partials.stat(staged) {
        Ok(Some(stat)) if stat.directory => partials
            .open_dir(staged)
            .map_or(FolderUsage::default(), |folder| folder_usage(&folder, 1)),
        _ => FolderUsage::default(),
    };
    // Kept only for bytes worth resuming; counted with its entries.
    let held = match usage.bytes {
        0 => 0,
        _ => usage.quota_bytes(),
    };
    if held == 0 {
        // If it cannot be removed it holds no bytes of ours anyway.
        let _ = remove_staged(partials, staged);
    }
    held
}

/// What a reservation stages, named after its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Staged {
    /// A single file's partial file, `HEX.part`.
    File,
    /// A tree's staging folder, `HEX.tree` (and its note).
    Tree,
}

impl Staged {
    /// The name in [`PARTIALS_DIR`] of what `key` resumes.
    fn name(self, key: &ResumeKey) -> String {
        match self {
            Staged::File => staged_name(key),
            Staged::Tree => staged_tree_name(key),
        }
    }
}

/// A tree being received into its staging folder: the writer, and the
/// reservation that books it (dropped after the writer, to count what the
/// folder then holds).
#[derive(Debug)]
pub(crate) struct ReceivingTree {
    /// Writes the tree (until it is committed).
    writer: Option<TreeWriter>,
    reservation: Reservation,
}

impl Drop for ReceivingTree {
    fn drop(&mut self) {
        // What it leaves, for a resume; the writer lets go of the folder
        // before the reservation looks at what stays on disk.
        if let Some(writer) = self.writer.take() {
            self.reservation.tree_held = Some(writer.held().into());
        }
    }
}

impl ReceivingTree {
    /// The tree's writer.
    pub(crate) fn writer(&mut self) -> &mut TreeWriter {
        // Taken only by `commit`, which consumes `self`.
        self.writer
            .as_mut()
            .expect("a tree being received has its writer")
    }

    /// Makes the tree durable and moves it to its final name
    /// ([`TreeWriter::commit`]); from then on its bytes are the inbox's.
    pub(crate) fn commit(self) -> Result<crate::tree::Committed, TreeWriteError> {
        let mut this = self;
        let writer = this
            .writer
            .take()
            .expect("a tree being received has its writer");
        let committed = writer.commit()?;
        this.reservation.fate = Fate::Committed { replaced: 0 };
        Ok(committed)
    }
}

impl Reservation {
    /// Waits, if need be, for the writer of the tree's earlier attempt to
    /// finish, then takes up the staging folder its key names (if it was
    /// made for the same manifest) or starts one
    /// ([`TreeWriter::open`]): the writer, and what the folder holds for
    /// the sender to skip. Blocking, reading back every byte held: call it
    /// off the loop (a tree's writer thread does).
    pub(crate) fn open_tree(
        mut self,
        manifest: Manifest,
    ) -> Result<(ReceivingTree, Vec<HeldFile>), TreeWriteError> {
        debug_assert_eq!(self.kind, Staged::Tree);
        let dest = self.dirs.inbox.path().to_path_buf();
        if !self.holding {
            self.wait_for_release()
                .map_err(|source| TreeWriteError::Io {
                    path: dest.join(PARTIALS_DIR).join(&self.staged),
                    source,
                })?;
        }
        // From here, whatever is on disk is the ledger's to count.
        self.fate = Fate::Open;
        // What the writer of the earlier attempt left, if it was this
        // process's: spares reading it all back.
        let known = self
            .took
            .as_ref()
            .and_then(|kept| kept.held.clone())
            .unwrap_or_default();
        let (writer, held) = TreeWriter::open(&dest, &self.name, manifest, self.key, &known)?;
        Ok((
            ReceivingTree {
                writer: Some(writer),
                reservation: self,
            },
            held,
        ))
    }
}

/// Held by whoever drives a [`Receiving`] from elsewhere: dropping it says
/// the transfer is over. The file may still be finishing writes, so it is
/// marked as closing (a resume of it waits instead of being refused), and a
/// writer still waiting to open the file gives up.
#[derive(Debug)]
pub(crate) struct NameInUse {
    in_use: Arc<InUse>,
    staged: String,
    serial: u64,
    cancelled: Arc<AtomicBool>,
}

impl Drop for NameInUse {
    fn drop(&mut self) {
        self.cancelled.store(true, Ordering::Release);
        let mut ledger = self.in_use.lock();
        if let Some(holder) = ledger
            .slots
            .get_mut(&self.staged)
            .and_then(|slot| slot.holder.as_mut())
        {
            if holder.serial == self.serial {
                holder.closing = true;
            }
        }
        drop(ledger);
        // Wakes a writer waiting for this file, to see it is cancelled.
        self.in_use.released.notify_all();
    }
}

/// A file being received into its private partial file.
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

    /// The file's name, as offered.
    pub fn name(&self) -> &str {
        &self.reservation.name
    }

    /// The key that resumes this file if the transfer is cut: the sender
    /// must be given it, and nobody else.
    pub fn resume_key(&self) -> ResumeKey {
        self.reservation.key
    }

    /// Where the partial file is (for messages; the inbox never reaches it
    /// through this path).
    pub fn part_path(&self) -> PathBuf {
        self.reservation
            .dirs
            .partials
            .path()
            .join(&self.reservation.staged)
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
    /// the first free `NAME (n).EXT`, never replacing anything (a file, a
    /// link, a folder) unless overwriting, when whatever has the name is
    /// replaced itself, never followed. Returns the path.
    pub fn commit(self) -> io::Result<PathBuf> {
        let Receiving {
            file,
            mut reservation,
            ..
        } = self;
        let r = &mut reservation;
        file.set_len(r.size)?;
        file.sync_all()?;
        let Dirs { inbox, partials } = &*r.dirs;
        // What is moved is a name: it must still be the file written, not
        // something put in its place meanwhile (a link would land in the
        // inbox as the "file").
        if !partials.holds(&r.staged, &file)? {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the partial file was replaced while it was being received",
            ));
        }
        drop(file);
        let (target, replaced) = if r.overwrite {
            let replaced = inbox
                .stat(&r.name)?
                .filter(|stat| stat.regular)
                .map_or(0, |stat| stat.len);
            partials.move_to(&r.staged, inbox, &r.name, true)?;
            (r.name.clone(), replaced)
        } else {
            (place_without_clobbering(r)?, 0)
        };
        r.fate = Fate::Committed { replaced };
        inbox.sync();
        Ok(inbox.path().join(target))
    }

    /// Deletes the partial file (its contents are known to be wrong).
    pub fn discard(self) -> io::Result<()> {
        let Receiving {
            file,
            mut reservation,
            ..
        } = self;
        drop(file);
        let removed = reservation.dirs.partials.remove(&reservation.staged);
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
        let held = keep_or_remove(&reservation.dirs.partials, &reservation.staged);
        reservation.fate = Fate::Kept(held);
        held
    }
}

/// `NAME`, or the first `NAME (n).EXT` that no entry in `dir` has, ignoring
/// case (so that case-insensitive file systems and users see no clash).
pub fn free_name(dir: &Path, name: &str) -> io::Result<String> {
    free_name_in(&ConfinedDir::open(dir)?, name)
}

fn free_name_in(dir: &ConfinedDir, name: &str) -> io::Result<String> {
    free_name_shaped(dir, name, true)
}

/// `NAME`, or the first `NAME (n)` that no entry in `dir` has, ignoring
/// case: [`free_name`] for a folder, whose name has no extension to keep
/// (`photos.2024 (1)`, not `photos (1).2024`).
pub(crate) fn free_folder_name_in(dir: &ConfinedDir, name: &str) -> io::Result<String> {
    free_name_shaped(dir, name, false)
}

fn free_name_shaped(dir: &ConfinedDir, name: &str, keep_extension: bool) -> io::Result<String> {
    let taken: HashSet<String> = dir
        .entries()?
        .into_iter()
        .map(|(entry, _)| entry.to_string_lossy().to_lowercase())
        .collect();
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if dot > 0 && keep_extension => name.split_at(dot),
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

/// Moves the reservation's partial file to a free name in the inbox
/// without ever replacing anything, even an entry created at the same
/// moment by someone else; returns the name.
fn place_without_clobbering(r: &Reservation) -> io::Result<String> {
    let Dirs { inbox, partials } = &*r.dirs;
    for _ in 0..1000 {
        let target = free_name_in(inbox, &r.name)?;
        match partials.move_to(&r.staged, inbox, &target, false) {
            Ok(()) => return Ok(target),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free name for {:?}", r.name),
    ))
}
