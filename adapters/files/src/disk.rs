//! Incoming files are written on threads of their own.
//!
//! Each file being received gets a writer thread that owns its partial
//! file: it first opens the file (waiting, if need be, for the writer of an
//! earlier attempt at the same transfer to let go of it), then writes the
//! chunks, reads back prefixes to hash for a resume, and in the end syncs
//! and renames the file, or closes it (removing it if it is empty). The
//! loop that drives the protocol only queues jobs and later collects what
//! finished, so a slow disk (or the `fsync` of a 4 GiB file, or an earlier
//! writer of the same name still finishing) delays that one file, never
//! the chat or the other clients, and the socket keeps being read while
//! the disk writes.
//! Memory stays bounded by the protocol's flow-control window: data is
//! confirmed to the sender only once written, so no more than a window can
//! wait in a writer's queue.

use crate::inbox::{NameInUse, Receiving, Reservation};
use crate::tree::{TreePeerFault, TreeWriteError};
use bytes::Bytes;
use ferry_core::frame::{Hash, HeldFile, TransferId};
use ferry_core::tree::Manifest;
use ferry_core::{Code, ResumeKey};
use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;

/// Wakes the loop that owns a [`FileTransfers`](crate::FileTransfers) or
/// [`HubFiles`](crate::HubFiles) when disk work it handed out has finished;
/// the loop then calls their `poll_disk`. Called from writer threads, so it
/// must only signal (a `mio::Waker`, a channel send), never block.
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// What a writer thread is asked to do, in order.
#[derive(Debug)]
enum Job {
    Write { offset: u64, data: Bytes },
    Read { offset: u64, len: u32 },
    Restart,
    Commit,
    Discard,
}

/// What a writer thread finished.
#[derive(Debug)]
pub(crate) enum Done {
    /// The file is open: the offer can be accepted, resuming at
    /// `resume_from`, and the sender handed `key` to resume it later.
    Opened {
        id: TransferId,
        resume_from: u64,
        key: ResumeKey,
    },
    /// The file could not be opened (nor waited for): the offer is to be
    /// declined.
    NotOpened { id: TransferId, error: io::Error },
    /// Everything up to `upto` is written.
    Written { id: TransferId, upto: u64 },
    /// A prefix read for a resume.
    Read {
        id: TransferId,
        offset: u64,
        data: Bytes,
    },
    /// The file is synced and under its final name.
    Committed { id: TransferId, path: PathBuf },
    /// The transfer ended without the file being stored: the partial file
    /// stays, holding `held` bytes (never 0: an empty one is removed), for
    /// a later resume.
    Kept {
        id: TransferId,
        name: String,
        path: PathBuf,
        held: u64,
    },
    /// A tree's staging folder and all its folders are made: the tree can
    /// be accepted.
    TreeOpened {
        id: TransferId,
        /// The key its staging folder is named after, for the sender to
        /// resume with.
        key: ResumeKey,
        /// What the staging folder held from an earlier attempt, for the
        /// sender to skip (empty for a new tree).
        held: Vec<HeldFile>,
    },
    /// A tree could not be started: the offer is to be declined.
    TreeNotOpened {
        id: TransferId,
        code: Code,
        reason: String,
    },
    /// `upto` payload bytes of a tree (all files together) are written.
    TreeWritten { id: TransferId, upto: u64 },
    /// The tree is durable and under its final name.
    TreeCommitted { id: TransferId, path: PathBuf },
    /// A tree failed: at its end (`committing`: a file's hash differed, or
    /// storing it failed; answer `FAILED`), or while it was written (the
    /// disk failed: cancel it). The staging folder stays.
    TreeFailed {
        id: TransferId,
        code: Code,
        reason: String,
        committing: bool,
    },
    /// A job failed; the writer does nothing more for this file.
    Failed {
        id: TransferId,
        error: io::Error,
        /// It was the final sync and rename.
        committing: bool,
    },
}

/// Finished disk work of one loop, shared with its writer threads.
#[derive(Clone)]
pub(crate) struct DiskQueue {
    shared: Arc<Shared>,
}

struct Shared {
    /// `(owner, done)`: owner tells a hub's clients apart.
    done: Mutex<VecDeque<(u64, Done)>>,
    /// A wake-up is under way; more completions need not send another.
    signalled: AtomicBool,
    /// Jobs queued or running, for [`DiskQueue::is_idle`].
    busy: AtomicUsize,
    wake: Wake,
}

impl std::fmt::Debug for DiskQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskQueue")
            .field("busy", &self.shared.busy.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl DiskQueue {
    pub(crate) fn new(wake: Wake) -> Self {
        DiskQueue {
            shared: Arc::new(Shared {
                done: Mutex::default(),
                signalled: AtomicBool::new(false),
                busy: AtomicUsize::new(0),
                wake,
            }),
        }
    }

    /// A queue nobody is woken for: its owner polls it.
    pub(crate) fn unsignalled() -> Self {
        DiskQueue::new(Arc::new(|| {}))
    }

    fn push(&self, owner: u64, done: Done) {
        self.lock().push_back((owner, done));
        if !self.shared.signalled.swap(true, Ordering::AcqRel) {
            (self.shared.wake)();
        }
    }

    /// Takes everything finished so far.
    pub(crate) fn take(&self) -> VecDeque<(u64, Done)> {
        // Cleared before taking: a completion pushed after this point
        // signals again, so none is left unnoticed.
        self.shared.signalled.store(false, Ordering::Release);
        std::mem::take(&mut *self.lock())
    }

    /// Nothing queued, running or waiting to be taken.
    pub(crate) fn is_idle(&self) -> bool {
        self.shared.busy.load(Ordering::Acquire) == 0 && self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, Done)>> {
        // Pushing and taking cannot leave the queue half-changed.
        self.shared.done.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The loop's end of one file being received on its writer thread.
/// Dropping it lets the writer finish the queued writes and stop; the
/// partial file stays for a resume.
#[derive(Debug)]
pub(crate) struct IncomingFile {
    /// Marks the partial file's name as closing once dropped, so that a
    /// resume arriving meanwhile waits for the writer instead of being
    /// refused. Declared first: it must be marked before `jobs` goes and
    /// the writer may release the name.
    _name: NameInUse,
    jobs: Sender<Job>,
    queue: DiskQueue,
}

impl IncomingFile {
    /// Starts a writer thread for the file `reserved`: it opens the file
    /// and reports [`Done::Opened`] (or [`Done::NotOpened`]), then does the
    /// jobs it is given. What it finishes goes to `queue` tagged with
    /// `owner` and `id`.
    pub(crate) fn spawn(
        reserved: Reservation,
        id: TransferId,
        owner: u64,
        queue: DiskQueue,
    ) -> io::Result<IncomingFile> {
        let name = reserved.name_in_use();
        let (jobs, inbox) = mpsc::channel();
        let writer = Writer {
            file: None,
            id,
            owner,
            queue: queue.clone(),
        };
        // Opening is disk work like any job: the queue is not idle until
        // its outcome is reported.
        queue.shared.busy.fetch_add(1, Ordering::AcqRel);
        let spawned = thread::Builder::new()
            .name("ferry-file-writer".into())
            .spawn(move || writer.run(reserved, inbox));
        if let Err(e) = spawned {
            queue.shared.busy.fetch_sub(1, Ordering::AcqRel);
            return Err(e);
        }
        Ok(IncomingFile {
            _name: name,
            jobs,
            queue,
        })
    }

    fn submit(&self, job: Job) {
        self.queue.shared.busy.fetch_add(1, Ordering::AcqRel);
        if self.jobs.send(job).is_err() {
            // The writer is gone (it failed and said so): nothing to wait for.
            self.queue.shared.busy.fetch_sub(1, Ordering::AcqRel);
        }
    }

    pub(crate) fn write(&self, offset: u64, data: Bytes) {
        self.submit(Job::Write { offset, data });
    }

    pub(crate) fn read(&self, offset: u64, len: u32) {
        self.submit(Job::Read { offset, len });
    }

    pub(crate) fn restart(&self) {
        self.submit(Job::Restart);
    }

    pub(crate) fn commit(&self) {
        self.submit(Job::Commit);
    }

    pub(crate) fn discard(&self) {
        self.submit(Job::Discard);
    }
}

impl Drop for IncomingFile {
    fn drop(&mut self) {
        // Closing the file is disk work too (an empty partial is removed):
        // the queue is not idle until the writer has done it. The writer
        // sees the end of its jobs only after this, as `jobs` goes after.
        self.queue.shared.busy.fetch_add(1, Ordering::AcqRel);
    }
}

struct Writer {
    /// `None` once committed, discarded or failed.
    file: Option<Receiving>,
    id: TransferId,
    owner: u64,
    queue: DiskQueue,
}

impl Writer {
    fn run(mut self, reserved: Reservation, jobs: Receiver<Job>) {
        let done = match reserved.open() {
            Ok(file) => {
                let resume_from = file.resume_from();
                let key = file.resume_key();
                self.file = Some(file);
                Done::Opened {
                    id: self.id,
                    resume_from,
                    key,
                }
            }
            Err(error) => Done::NotOpened { id: self.id, error },
        };
        let opened = matches!(done, Done::Opened { .. });
        self.queue.push(self.owner, done);
        self.queue.shared.busy.fetch_sub(1, Ordering::AcqRel);
        if !opened {
            // Jobs for a file never opened are moot; the loop drops its end
            // on hearing so, which ends the loop below at once.
            while jobs.recv().is_ok() {
                self.queue.shared.busy.fetch_sub(1, Ordering::AcqRel);
            }
            // The closing the loop counted when it let go.
            self.queue.shared.busy.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        while let Ok(first) = jobs.recv() {
            // Take what else is queued before reporting: one confirmation
            // for a run of writes, not one per chunk.
            let mut handled = 0;
            let mut written = None;
            let mut next = Some(first);
            while let Some(job) = next.take() {
                handled += 1;
                self.handle(job, &mut written);
                next = jobs.try_recv().ok();
            }
            if let Some(upto) = written {
                self.queue
                    .push(self.owner, Done::Written { id: self.id, upto });
            }
            self.queue.shared.busy.fetch_sub(handled, Ordering::AcqRel);
        }
        // The transfer is over. A file neither stored nor thrown away stays
        // for a resume, unless it is empty; say so once its last writes are
        // in.
        if let Some(file) = self.file.take() {
            let path = file.part_path();
            let name = file.name().to_string();
            let held = file.close();
            if held > 0 {
                self.queue.push(
                    self.owner,
                    Done::Kept {
                        id: self.id,
                        name,
                        path,
                        held,
                    },
                );
            }
        }
        // The closing the loop counted when it let go: only now is what
        // stays on disk settled.
        self.queue.shared.busy.fetch_sub(1, Ordering::AcqRel);
    }

    fn handle(&mut self, job: Job, written: &mut Option<u64>) {
        let id = self.id;
        let Some(file) = self.file.as_mut() else {
            // Failed or finished: later jobs are moot.
            return;
        };
        let done = match job {
            Job::Write { offset, data } => match file.write_at(offset, &data) {
                Ok(()) => {
                    *written = Some(offset + data.len() as u64);
                    return;
                }
                Err(error) => Done::Failed {
                    id,
                    error,
                    committing: false,
                },
            },
            Job::Read { offset, len } => match file.read_at(offset, len) {
                Ok(data) => Done::Read { id, offset, data },
                Err(error) => Done::Failed {
                    id,
                    error,
                    committing: false,
                },
            },
            Job::Restart => match file.restart() {
                Ok(()) => return,
                Err(error) => Done::Failed {
                    id,
                    error,
                    committing: false,
                },
            },
            Job::Commit => {
                self.report_written(written);
                let file = self.file.take().expect("checked above");
                match file.commit() {
                    Ok(path) => Done::Committed { id, path },
                    Err(error) => Done::Failed {
                        id,
                        error,
                        committing: true,
                    },
                }
            }
            Job::Discard => {
                // Wrong bytes: no base for a resume. Best effort.
                let _ = self.file.take().map(Receiving::discard);
                *written = None;
                return;
            }
        };
        if matches!(done, Done::Failed { .. }) {
            self.file = None;
            *written = None;
        } else {
            self.report_written(written);
        }
        self.queue.push(self.owner, done);
    }

    /// Confirms the writes so far before another completion, keeping the
    /// loop's view in order.
    fn report_written(&self, written: &mut Option<u64>) {
        if let Some(upto) = written.take() {
            self.queue
                .push(self.owner, Done::Written { id: self.id, upto });
        }
    }
}

/// What a tree's writer thread is asked to do, in order.
#[derive(Debug)]
enum TreeJob {
    Write {
        index: u32,
        offset: u64,
        data: Bytes,
    },
    Finish {
        index: u32,
        hash: Hash,
    },
    Commit,
}

/// The loop's end of one tree being received on its writer thread (a
/// [`TreeWriter`] owned by that thread: making folders, writing, hashing,
/// the final `syncfs` and move all happen there, never on the loop).
/// Dropping it lets the writer finish what is queued and stop; the staging
/// folder stays.
#[derive(Debug)]
pub(crate) struct IncomingTree {
    jobs: Sender<TreeJob>,
    queue: DiskQueue,
}

impl IncomingTree {
    /// Starts a writer thread that makes the staging folder of tree `name`
    /// in `dest` with every folder of `manifest`, reports
    /// [`Done::TreeOpened`] (or [`Done::TreeNotOpened`]), then does the
    /// jobs it is given.
    pub(crate) fn spawn(
        reservation: Reservation,
        manifest: Manifest,
        id: TransferId,
        owner: u64,
        queue: DiskQueue,
    ) -> io::Result<IncomingTree> {
        let (jobs, inbox) = mpsc::channel();
        let worker = queue.clone();
        queue.shared.busy.fetch_add(1, Ordering::AcqRel);
        let spawned = thread::Builder::new()
            .name("ferry-tree-writer".into())
            .spawn(move || run_tree(reservation, manifest, id, owner, worker, inbox));
        if let Err(e) = spawned {
            queue.shared.busy.fetch_sub(1, Ordering::AcqRel);
            return Err(e);
        }
        Ok(IncomingTree { jobs, queue })
    }

    fn submit(&self, job: TreeJob) {
        self.queue.shared.busy.fetch_add(1, Ordering::AcqRel);
        if self.jobs.send(job).is_err() {
            self.queue.shared.busy.fetch_sub(1, Ordering::AcqRel);
        }
    }

    pub(crate) fn write(&self, index: u32, offset: u64, data: Bytes) {
        self.submit(TreeJob::Write {
            index,
            offset,
            data,
        });
    }

    pub(crate) fn finish(&self, index: u32, hash: Hash) {
        self.submit(TreeJob::Finish { index, hash });
    }

    pub(crate) fn commit(&self) {
        self.submit(TreeJob::Commit);
    }
}

impl Drop for IncomingTree {
    fn drop(&mut self) {
        // The writer's last act (letting go of its folders) is disk work
        // too: counted until it is done.
        self.queue.shared.busy.fetch_add(1, Ordering::AcqRel);
    }
}

/// A tree's writer thread.
fn run_tree(
    reservation: Reservation,
    manifest: Manifest,
    id: TransferId,
    owner: u64,
    queue: DiskQueue,
    jobs: Receiver<TreeJob>,
) {
    // What stays of a tree not stored (cut, cancelled, a file's hash
    // wrong, the disk failing) is the reservation's to keep for a resume,
    // or remove if it holds nothing, when the writer is dropped.
    let mut writer = match reservation.open_tree(manifest) {
        Ok((mut writer, held)) => {
            let key = writer.writer().resume_key();
            queue.push(owner, Done::TreeOpened { id, key, held });
            Some(writer)
        }
        Err(error) => {
            let code = match error {
                TreeWriteError::BadName(_) => Code::BAD_FILE_NAME,
                _ => Code::IO_ERROR,
            };
            let reason = error.to_string();
            queue.push(owner, Done::TreeNotOpened { id, code, reason });
            None
        }
    };
    queue.shared.busy.fetch_sub(1, Ordering::AcqRel);
    // The first file whose hash differed: the tree fails at its end.
    let mut mismatch: Option<String> = None;
    let mut written = 0u64;
    while let Ok(first) = jobs.recv() {
        let mut handled = 0;
        let mut wrote = false;
        let mut next = Some(first);
        while let Some(job) = next.take() {
            handled += 1;
            let Some(w) = writer.as_mut() else {
                // Failed or finished: later jobs are moot.
                next = jobs.try_recv().ok();
                continue;
            };
            let failed = match job {
                TreeJob::Write {
                    index,
                    offset,
                    data,
                } => match w.writer().write_at(index as usize, offset, &data) {
                    Ok(()) => {
                        written += data.len() as u64;
                        wrote = true;
                        None
                    }
                    Err(e) => Some(e),
                },
                TreeJob::Finish { index, hash } => {
                    match w.writer().finish_file(index as usize, &hash) {
                        Ok(()) => None,
                        Err(TreeWriteError::Peer(TreePeerFault::HashMismatch { path })) => {
                            mismatch.get_or_insert(path);
                            None
                        }
                        Err(e) => Some(e),
                    }
                }
                TreeJob::Commit => {
                    if wrote {
                        queue.push(owner, Done::TreeWritten { id, upto: written });
                        wrote = false;
                    }
                    // Taken: whatever happens, nothing more is written.
                    let w = writer.take().expect("checked above");
                    let done = match (&mismatch, w) {
                        (Some(path), _) => Done::TreeFailed {
                            id,
                            code: Code::HASH_MISMATCH,
                            reason: format!(
                                "{path}: the BLAKE3 hash of what arrived does not match the sender's"
                            ),
                            committing: true,
                        },
                        (None, w) => match w.commit() {
                            Ok(committed) => {
                                Done::TreeCommitted {
                                    id,
                                    path: committed.path,
                                }
                            }
                            Err(e) => Done::TreeFailed {
                                id,
                                code: Code::IO_ERROR,
                                reason: format!("cannot store the folder: {e}"),
                                committing: true,
                            },
                        },
                    };
                    queue.push(owner, done);
                    None
                }
            };
            if let Some(error) = failed {
                writer = None;
                wrote = false;
                queue.push(
                    owner,
                    Done::TreeFailed {
                        id,
                        code: Code::IO_ERROR,
                        reason: error.to_string(),
                        committing: false,
                    },
                );
            }
            next = jobs.try_recv().ok();
        }
        if wrote {
            queue.push(owner, Done::TreeWritten { id, upto: written });
        }
        queue.shared.busy.fetch_sub(handled, Ordering::AcqRel);
    }
    drop(writer);
    // The closing the loop counted when it let go.
    queue.shared.busy.fetch_sub(1, Ordering::AcqRel);
}
