//! Answering a connection's transfer events with file I/O.

use crate::disk::{DiskQueue, Done, IncomingFile, IncomingTree, Wake};
use crate::inbox::{Inbox, NameInUse, Reservation, Sender};
use crate::sending::Sending;
use bytes::Bytes;
use ferry_core::frame::{HeldFile, TransferId};
use ferry_core::transfer::{Outcome, TransferEvent};
use ferry_core::tree::Manifest;
use ferry_core::{ClientId, Code, Connection, Hub, Misuse, ResumeKey, Source, Text};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The transfer commands of a connection, whether it stands alone
/// ([`Connection`]) or belongs to a hub ([`HubClient`]).
pub trait TransferControl {
    /// See [`Connection::accept_resumable`]: accepts, handing the sender
    /// `key` to resume the transfer with if it is cut.
    fn accept(
        &mut self,
        now: Instant,
        id: TransferId,
        resume_from: u64,
        key: ResumeKey,
    ) -> Result<(), Misuse>;
    /// See [`Connection::reject`].
    fn reject(
        &mut self,
        now: Instant,
        id: TransferId,
        code: Code,
        reason: &str,
    ) -> Result<(), Misuse>;
    /// See [`Connection::cancel`].
    fn cancel(
        &mut self,
        now: Instant,
        id: TransferId,
        code: Code,
        reason: &str,
    ) -> Result<(), Misuse>;
    /// See [`Connection::supply_chunk`].
    fn supply_chunk(
        &mut self,
        now: Instant,
        id: TransferId,
        offset: u64,
        data: Bytes,
    ) -> Result<(), Misuse>;
    /// See [`Connection::confirm_written`].
    fn confirm_written(&mut self, now: Instant, id: TransferId, upto: u64) -> Result<(), Misuse>;
    /// See [`Connection::finish_receive`].
    fn finish_receive(
        &mut self,
        now: Instant,
        id: TransferId,
        result: Result<(), (Code, String)>,
    ) -> Result<(), Misuse>;
    /// See [`Connection::accept_tree_resumable`]: takes a tree, handing
    /// the sender `key` to resume it with if it is cut, and listing what
    /// is `held` of an earlier attempt.
    fn accept_tree(
        &mut self,
        now: Instant,
        id: TransferId,
        key: ResumeKey,
        held: &[HeldFile],
    ) -> Result<(), Misuse>;
    /// See [`Connection::supply_tree_chunk`].
    fn supply_tree_chunk(
        &mut self,
        now: Instant,
        id: TransferId,
        index: u32,
        offset: u64,
        data: Bytes,
    ) -> Result<(), Misuse>;
}

impl TransferControl for Connection {
    fn accept(
        &mut self,
        now: Instant,
        id: TransferId,
        resume_from: u64,
        key: ResumeKey,
    ) -> Result<(), Misuse> {
        Connection::accept_resumable(self, now, id, resume_from, key)
    }
    fn reject(
        &mut self,
        now: Instant,
        id: TransferId,
        code: Code,
        reason: &str,
    ) -> Result<(), Misuse> {
        Connection::reject(self, now, id, code, reason)
    }
    fn cancel(
        &mut self,
        now: Instant,
        id: TransferId,
        code: Code,
        reason: &str,
    ) -> Result<(), Misuse> {
        Connection::cancel(self, now, id, code, reason)
    }
    fn supply_chunk(
        &mut self,
        now: Instant,
        id: TransferId,
        offset: u64,
        data: Bytes,
    ) -> Result<(), Misuse> {
        Connection::supply_chunk(self, now, id, offset, data)
    }
    fn confirm_written(&mut self, now: Instant, id: TransferId, upto: u64) -> Result<(), Misuse> {
        Connection::confirm_written(self, now, id, upto)
    }
    fn finish_receive(
        &mut self,
        now: Instant,
        id: TransferId,
        result: Result<(), (Code, String)>,
    ) -> Result<(), Misuse> {
        Connection::finish_receive(self, now, id, result)
    }
    fn accept_tree(
        &mut self,
        now: Instant,
        id: TransferId,
        key: ResumeKey,
        held: &[HeldFile],
    ) -> Result<(), Misuse> {
        Connection::accept_tree_resumable(self, now, id, key, held)
    }
    fn supply_tree_chunk(
        &mut self,
        now: Instant,
        id: TransferId,
        index: u32,
        offset: u64,
        data: Bytes,
    ) -> Result<(), Misuse> {
        Connection::supply_tree_chunk(self, now, id, index, offset, data)
    }
}

/// One client of a [`Hub`], for the transfers between it and the hub itself.
#[derive(Debug)]
pub struct HubClient<'a> {
    /// The hub.
    pub hub: &'a mut Hub,
    /// The client.
    pub client: ClientId,
}

impl TransferControl for HubClient<'_> {
    fn accept(
        &mut self,
        now: Instant,
        id: TransferId,
        resume_from: u64,
        key: ResumeKey,
    ) -> Result<(), Misuse> {
        self.hub
            .accept_resumable(self.client, now, id, resume_from, key)
    }
    fn reject(
        &mut self,
        now: Instant,
        id: TransferId,
        code: Code,
        reason: &str,
    ) -> Result<(), Misuse> {
        self.hub.reject(self.client, now, id, code, reason)
    }
    fn cancel(
        &mut self,
        now: Instant,
        id: TransferId,
        code: Code,
        reason: &str,
    ) -> Result<(), Misuse> {
        self.hub.cancel(self.client, now, id, code, reason)
    }
    fn supply_chunk(
        &mut self,
        now: Instant,
        id: TransferId,
        offset: u64,
        data: Bytes,
    ) -> Result<(), Misuse> {
        self.hub.supply_chunk(self.client, now, id, offset, data)
    }
    fn confirm_written(&mut self, now: Instant, id: TransferId, upto: u64) -> Result<(), Misuse> {
        self.hub.confirm_written(self.client, now, id, upto)
    }
    fn finish_receive(
        &mut self,
        now: Instant,
        id: TransferId,
        result: Result<(), (Code, String)>,
    ) -> Result<(), Misuse> {
        self.hub.finish_receive(self.client, now, id, result)
    }
    fn accept_tree(
        &mut self,
        now: Instant,
        id: TransferId,
        key: ResumeKey,
        held: &[HeldFile],
    ) -> Result<(), Misuse> {
        self.hub
            .accept_tree_resumable(self.client, now, id, key, held)
    }
    fn supply_tree_chunk(
        &mut self,
        now: Instant,
        id: TransferId,
        index: u32,
        offset: u64,
        data: Bytes,
    ) -> Result<(), Misuse> {
        self.hub
            .supply_tree_chunk(self.client, now, id, index, offset, data)
    }
}

/// Whether incoming offers are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferPolicy {
    /// Accept every offer with a safe name into the inbox (resuming partials).
    Accept,
    /// Decline every offer.
    Reject,
    /// Hold every offer and ask the user (except one that presents the key
    /// of a partial file or folder the inbox keeps: the continuation of a
    /// transfer the user took already; a folder is asked about once its
    /// manifest has arrived, and booked only when taken): the offer is
    /// reported as
    /// [`Report::Asking`] and waits for
    /// [`answer_offer`](FileTransfers::answer_offer) (a client's
    /// `AcceptOffer` / `RejectOffer` command). An offer still unanswered
    /// after `answer_within` is declined, so that the sender is never left
    /// waiting: the protocol itself has no deadline for an answer.
    Ask {
        /// How long an offer waits for the user.
        answer_within: Duration,
    },
}

impl OfferPolicy {
    /// The policy of a client receiving into `inbox`: the inbox's own
    /// ([`Inbox::ask_first`] makes it [`Ask`](Self::Ask)), or
    /// [`Reject`](Self::Reject) without one.
    pub fn for_inbox(inbox: Option<&Inbox>) -> OfferPolicy {
        match inbox.and_then(Inbox::answer_within) {
            Some(answer_within) => OfferPolicy::Ask { answer_within },
            None if inbox.is_some() => OfferPolicy::Accept,
            None => OfferPolicy::Reject,
        }
    }
}

/// What happened to a transfer, for logs and progress bars.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Report {
    /// An offer arrived and was accepted (resuming at `resume_from`) or not.
    Offered {
        /// The transfer.
        id: TransferId,
        /// File name.
        name: Text,
        /// Size in bytes.
        size: u64,
        /// Who sends it (empty: the server).
        peer: Text,
        /// `Some(offset)` when accepted.
        accepted: Option<u64>,
    },
    /// An offer arrived and waits for the user's answer (policy
    /// [`OfferPolicy::Ask`]); it is declined by itself after `answer_within`.
    Asking {
        /// The transfer: the id to answer with.
        id: TransferId,
        /// File name.
        name: Text,
        /// Size in bytes.
        size: u64,
        /// Who sends it (empty: the server).
        peer: Text,
        /// For a folder (its name then ends in `/`): how many files it
        /// holds; `None` for a file.
        files: Option<u64>,
        /// How long the offer waits for an answer.
        answer_within: Duration,
    },
    /// A `SendFile` command became an offer: which transfer it is, so that
    /// a user interface can follow it (and offer it again after a
    /// reconnection, when the receiver resumes from what it holds).
    Offering {
        /// The transfer.
        id: TransferId,
        /// The file, as given in the command.
        path: PathBuf,
        /// The name offered.
        name: Text,
        /// Size in bytes.
        size: u64,
        /// Recipient (empty: the server's inbox).
        to: Text,
    },
    /// The receiver of our offer handed us the key that resumes it if it
    /// is cut (before [`Report::Accepted`]): keep it, durably, to offer
    /// the same file again with [`ClientCommand::ResumeFile`](crate::ClientCommand::ResumeFile)
    /// (a folder with [`ClientCommand::SendTree`](crate::ClientCommand::SendTree)'s
    /// `resume`); forget it once the transfer has ended other than
    /// cancelled.
    ResumeKey {
        /// Our offer.
        id: TransferId,
        /// The secret.
        key: ResumeKey,
    },
    /// Sending a resumed folder: the receiver already holds the first
    /// `bytes` bytes of the file at `path` in it (all of them if that is
    /// its size: it is not sent again), as the hash of our own bytes
    /// showed.
    TreeFileHeld {
        /// Our offer.
        id: TransferId,
        /// The file, relative to the folder.
        path: String,
        /// Bytes of it held.
        bytes: u64,
        /// Its size.
        size: u64,
    },
    /// Our offer was accepted; data flows from `offset`.
    Accepted {
        /// The transfer.
        id: TransferId,
        /// Resume offset the receiver asked for.
        offset: u64,
    },
    /// Bytes confirmed by the receiver (sending) or stored (receiving).
    Progress {
        /// The transfer.
        id: TransferId,
        /// Bytes done.
        done: u64,
        /// Of this many.
        size: u64,
    },
    /// A received file was verified and stored at `path`.
    Saved {
        /// The transfer.
        id: TransferId,
        /// Where it is.
        path: PathBuf,
    },
    /// A transfer into this side ended unfinished; its partial file stays
    /// for a resume (sent once the last queued writes are on disk).
    PartialKept {
        /// The transfer.
        id: TransferId,
        /// The file's name, as offered.
        name: Text,
        /// The partial file (in the receiving folder's private folder of
        /// partial files, under a name of the receiver's making).
        path: PathBuf,
        /// Bytes it holds: where a resume will start.
        held: u64,
    },
    /// Reading or writing a file failed here; the transfer was cancelled.
    LocalError {
        /// The transfer.
        id: TransferId,
        /// What went wrong.
        error: String,
    },
    /// The transfer is over.
    Finished {
        /// The transfer.
        id: TransferId,
        /// How it ended.
        outcome: Outcome,
    },
}

/// The files of one connection's transfers, in both directions.
///
/// Files being sent are read on the caller's thread, a chunk at a time.
/// Files being received are written by a thread per file (see
/// [`on_disk_done`](Self::on_disk_done) and [`poll_disk`](Self::poll_disk)),
/// so the caller's loop never waits for the disk.
#[derive(Debug)]
pub struct FileTransfers {
    inbox: Option<Inbox>,
    policy: OfferPolicy,
    receiving: HashMap<TransferId, Receiver>,
    /// Trees being received into the inbox.
    trees: HashMap<TransferId, TreeReceiver>,
    /// Trees being sent: each file's path and size, by manifest index.
    tree_sources: HashMap<TransferId, TreeSource>,
    sending: HashMap<TransferId, Sending>,
    /// Offers waiting for the user's answer (policy `Ask`).
    held: BTreeMap<TransferId, HeldOffer>,
    disk: DiskQueue,
    /// Tags this connection's completions in a queue shared by a hub.
    owner: u64,
    /// Where a hub's client connects from: its offers count against the
    /// inbox's limits for that source. `None` on a client, where offers are
    /// counted by the user who sends them.
    source: Option<Source>,
}

/// An offer as it arrived.
#[derive(Debug)]
struct Offer {
    name: Text,
    size: u64,
    peer: Text,
    /// The key the sender presented to resume an earlier attempt.
    resume: Option<ResumeKey>,
}

/// An offer waiting for the user's answer.
#[derive(Debug)]
struct HeldOffer {
    offer: Held,
    /// Declined by itself then.
    deadline: Instant,
}

/// What an offer waiting for the user holds until the answer.
#[derive(Debug)]
enum Held {
    /// A file's offer.
    File(Offer),
    /// A folder's checked manifest (the rest of the offer is its entry in
    /// `trees`): it is not written anywhere before the user says yes.
    Tree(Box<Manifest>),
}

/// A file being received, and its size.
#[derive(Debug)]
struct Receiver {
    file: IncomingFile,
    size: u64,
    /// The offer, until its writer has opened the file and it is answered.
    unanswered: Option<Unanswered>,
}

/// A tree being sent: where its files are, and the one open now.
#[derive(Debug)]
struct TreeSource {
    /// Each file by index: where it is, its size, and its path in the
    /// tree (for reports).
    files: HashMap<u32, (PathBuf, u64, String)>,
    /// The file read last (files are read in order, each to its end).
    open: Option<(u32, std::fs::File)>,
}

impl TreeSource {
    /// Reads `len` bytes at `offset` of file `index`, opened without
    /// following a link; a file whose size changed since the walk is an
    /// error naming it.
    fn read(&mut self, index: u32, offset: u64, len: u32) -> io::Result<Bytes> {
        use std::os::unix::fs::{FileExt, OpenOptionsExt};
        let (path, size, _) = self
            .files
            .get(&index)
            .ok_or_else(|| io::Error::other(format!("no file {index} in this folder")))?;
        let changed = || io::Error::other(format!("{} changed while it was sent", path.display()));
        if self.open.as_ref().is_none_or(|(i, _)| *i != index) {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(path)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            let meta = file.metadata()?;
            if !meta.is_file() || meta.len() != *size {
                return Err(changed());
            }
            self.open = Some((index, file));
        }
        // Set just above.
        let (_, file) = self.open.as_ref().expect("opened above");
        let mut buf = vec![0; len as usize];
        let mut filled = 0;
        while filled < buf.len() {
            match file.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => return Err(changed()),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if offset + u64::from(len) == *size {
            self.open = None;
        }
        Ok(Bytes::from(buf))
    }
}

/// A tree being received into the inbox.
#[derive(Debug)]
struct TreeReceiver {
    name: Text,
    total_size: u64,
    peer: Text,
    /// Its writer, once the manifest is in.
    writer: Option<IncomingTree>,
    /// Its booking in the inbox (quota, staging folder), until its writer
    /// takes it; `None` before that while the user is asked about it.
    room: Option<Reservation>,
    /// The key its sender presented to resume an earlier attempt.
    resume: Option<ResumeKey>,
    /// Says to the inbox, when the transfer ends, that its staging folder
    /// is being let go (a resume then waits for the writer to finish).
    in_use: Option<NameInUse>,
}

/// An offer whose file is being opened: what its report needs.
#[derive(Debug)]
struct Unanswered {
    name: Text,
    peer: Text,
}

impl FileTransfers {
    /// Receives into `inbox` (offers are declined without one) according to
    /// `policy`.
    pub fn new(inbox: Option<Inbox>, policy: OfferPolicy) -> Self {
        FileTransfers {
            inbox,
            policy,
            receiving: HashMap::new(),
            trees: HashMap::new(),
            tree_sources: HashMap::new(),
            sending: HashMap::new(),
            held: BTreeMap::new(),
            disk: DiskQueue::unsignalled(),
            owner: 0,
            source: None,
        }
    }

    /// Calls `wake` (from a writer thread) whenever disk work finishes; the
    /// loop should then call [`poll_disk`](Self::poll_disk). Set it before
    /// any transfer starts.
    pub fn on_disk_done(mut self, wake: Wake) -> Self {
        self.disk = DiskQueue::new(wake);
        self
    }

    /// Shares a hub's queue of finished disk work, tagged with `owner`, for
    /// a client connected from `source`.
    pub(crate) fn with_disk(mut self, disk: DiskQueue, owner: u64, source: Option<Source>) -> Self {
        self.disk = disk;
        self.owner = owner;
        self.source = source;
        self
    }

    /// Transfers with a file open.
    pub fn open_count(&self) -> usize {
        self.receiving.len() + self.trees.len() + self.sending.len() + self.tree_sources.len()
    }

    /// No disk work queued, running, or finished and not yet polled.
    pub fn disk_idle(&self) -> bool {
        self.disk.is_idle()
    }

    /// Registers the file behind an offer just made with `offer_file`.
    pub fn register_send(&mut self, id: TransferId, file: Sending) {
        self.sending.insert(id, file);
    }

    /// Answers `event` with file I/O and commands to `ctl`. Returns what a
    /// user may want to see. Writes to received files are queued, not done:
    /// their confirmations come from [`poll_disk`](Self::poll_disk).
    ///
    /// An offer is refused at once when it cannot be taken (no inbox, an
    /// unsafe name, the quota, too many unfinished files from its sender,
    /// the same name being received); otherwise its file is opened on its
    /// writer thread, and the answer (`ACCEPT`, or `REJECT` if the file
    /// cannot be opened) is given, and reported as [`Report::Offered`], by
    /// a later [`poll_disk`](Self::poll_disk). Nothing here waits for the
    /// disk.
    pub fn handle(
        &mut self,
        ctl: &mut impl TransferControl,
        now: Instant,
        event: TransferEvent,
    ) -> Option<Report> {
        match event {
            TransferEvent::Offered {
                id,
                name,
                size,
                peer,
                resume,
            } => {
                if let Some(Err(refused)) = self.inbox.as_ref().map(|i| i.admits(&peer, size)) {
                    let _ = ctl.reject(now, id, refused.code(), &refused.to_string());
                    return Some(Report::Offered {
                        id,
                        name,
                        size,
                        peer,
                        accepted: None,
                    });
                }
                let offer = Offer {
                    name,
                    size,
                    peer,
                    resume,
                };
                // A transfer the user already took, continued by the one
                // who holds its key, is not asked about again.
                let continued = match (&self.inbox, &offer.resume) {
                    (Some(inbox), Some(key)) => inbox.keeps(key),
                    _ => false,
                };
                if let (Some(_), OfferPolicy::Ask { answer_within }, false) =
                    (&self.inbox, self.policy, continued)
                {
                    let report = Report::Asking {
                        id,
                        name: offer.name.clone(),
                        size,
                        peer: offer.peer.clone(),
                        files: None,
                        answer_within,
                    };
                    let offer = Held::File(offer);
                    let deadline = now + answer_within;
                    self.held.insert(id, HeldOffer { offer, deadline });
                    return Some(report);
                }
                self.on_offer(ctl, now, id, offer)
            }
            TransferEvent::TreeOffered {
                id,
                name,
                total_size,
                peer,
                resume,
                ..
            } => self.on_tree_offer(ctl, now, id, name, total_size, peer, resume),
            TransferEvent::TreeManifest { id, manifest } => {
                let tree = self.trees.get_mut(&id)?;
                if tree.writer.is_some() {
                    return None;
                }
                match (tree.room.take(), self.policy) {
                    (Some(room), _) => self.open_tree(ctl, now, id, room, manifest),
                    (None, OfferPolicy::Ask { answer_within }) => {
                        let report = Report::Asking {
                            id,
                            name: Text::from(format!("{}/", tree.name)),
                            size: tree.total_size,
                            peer: tree.peer.clone(),
                            files: Some(manifest.file_count() as u64),
                            answer_within,
                        };
                        let offer = Held::Tree(Box::new(manifest));
                        let deadline = now + answer_within;
                        self.held.insert(id, HeldOffer { offer, deadline });
                        Some(report)
                    }
                    // Refused at the offer otherwise.
                    (None, _) => None,
                }
            }
            TransferEvent::TreeNeedChunk {
                id,
                index,
                offset,
                len,
            } => {
                let source = self.tree_sources.get_mut(&id)?;
                match source.read(index, offset, len) {
                    Ok(data) => {
                        // Fails only if the transfer already ended.
                        let _ = ctl.supply_tree_chunk(now, id, index, offset, data);
                        None
                    }
                    Err(e) => Some(self.fail(ctl, now, id, e)),
                }
            }
            TransferEvent::TreeChunk {
                id,
                index,
                offset,
                data,
            } => {
                let writer = self.trees.get(&id)?.writer.as_ref()?;
                writer.write(index, offset, data);
                None
            }
            TransferEvent::TreeFileDone { id, index, hash } => {
                self.trees.get(&id)?.writer.as_ref()?.finish(index, hash);
                None
            }
            TransferEvent::Received { id, .. } if self.trees.contains_key(&id) => {
                // Verified, made durable and moved by the writer after its
                // last writes; `poll_disk` reports the outcome.
                self.trees.get(&id)?.writer.as_ref()?.commit();
                None
            }
            TransferEvent::ResumeKey { id, key } => Some(Report::ResumeKey { id, key }),
            TransferEvent::TreeFileHeld { id, index, offset } => {
                let (_, size, path) = self.tree_sources.get(&id)?.files.get(&index)?;
                Some(Report::TreeFileHeld {
                    id,
                    path: path.clone(),
                    bytes: offset,
                    size: *size,
                })
            }
            TransferEvent::Accepted { id, offset, .. } => Some(Report::Accepted { id, offset }),
            TransferEvent::NeedChunk { id, offset, len } => {
                if let Some(rx) = self.receiving.get(&id) {
                    // A prefix to hash before resuming: read by the writer,
                    // which owns the file.
                    rx.file.read(offset, len);
                    return None;
                }
                let file = self.sending.get_mut(&id)?;
                match file.read_at(offset, len) {
                    Ok(data) => {
                        // Fails only if the transfer already ended, when the
                        // chunk is moot.
                        let _ = ctl.supply_chunk(now, id, offset, data);
                        None
                    }
                    Err(e) => Some(self.fail(ctl, now, id, e)),
                }
            }
            TransferEvent::Chunk { id, offset, data } => {
                self.receiving.get(&id)?.file.write(offset, data);
                None
            }
            TransferEvent::Restarted { id } => {
                self.receiving.get(&id)?.file.restart();
                None
            }
            TransferEvent::Progress {
                id,
                confirmed,
                size,
            } => Some(Report::Progress {
                id,
                done: confirmed,
                size,
            }),
            TransferEvent::Received { id, .. } => {
                // Synced and renamed by the writer after its last writes;
                // `poll_disk` reports the outcome to the core.
                self.receiving.get(&id)?.file.commit();
                None
            }
            TransferEvent::Ended { id, outcome } => {
                // The sender gave up, or the link dropped, before an answer.
                // A tree's staging folder stays as its writer left it.
                self.trees.remove(&id);
                self.tree_sources.remove(&id);
                self.held.remove(&id);
                self.sending.remove(&id);
                if let Some(rx) = self.receiving.remove(&id) {
                    // Wrong bytes are no base for a resume; anything else
                    // (a cancel, a dropped link) keeps the partial file.
                    if matches!(
                        outcome,
                        Outcome::Failed {
                            code: Code::HASH_MISMATCH,
                            ..
                        }
                    ) {
                        rx.file.discard();
                    }
                }
                Some(Report::Finished { id, outcome })
            }
            _ => None,
        }
    }

    /// Hands finished disk work to `ctl` (confirmations, prefix reads, the
    /// final store) and says what happened, in order.
    pub fn poll_disk(&mut self, ctl: &mut impl TransferControl, now: Instant) -> Vec<Report> {
        self.disk
            .take()
            .into_iter()
            .filter_map(|(_, done)| self.on_disk_done_item(ctl, now, done))
            .collect()
    }

    /// One finished job. Work for a transfer that ended meanwhile is moot.
    pub(crate) fn on_disk_done_item(
        &mut self,
        ctl: &mut impl TransferControl,
        now: Instant,
        done: Done,
    ) -> Option<Report> {
        match done {
            Done::Opened {
                id,
                resume_from,
                key,
            } => {
                let rx = self.receiving.get_mut(&id)?;
                let offer = rx.unanswered.take()?;
                let size = rx.size;
                if ctl.accept(now, id, resume_from, key).is_err() {
                    // Ended meanwhile (its `Ended` drops it too).
                    self.receiving.remove(&id);
                    return None;
                }
                Some(Report::Offered {
                    id,
                    name: offer.name,
                    size,
                    peer: offer.peer,
                    accepted: Some(resume_from),
                })
            }
            Done::NotOpened { id, error } => {
                let rx = self.receiving.remove(&id)?;
                let offer = rx.unanswered?;
                let code = match error.kind() {
                    // The earlier attempt's writer is still finishing.
                    io::ErrorKind::AlreadyExists => Code::TRY_AGAIN,
                    _ => Code::IO_ERROR,
                };
                let _ = ctl.reject(now, id, code, &error.to_string());
                Some(Report::Offered {
                    id,
                    name: offer.name,
                    size: rx.size,
                    peer: offer.peer,
                    accepted: None,
                })
            }
            Done::Written { id, upto } => {
                let size = self.receiving.get(&id)?.size;
                ctl.confirm_written(now, id, upto).ok()?;
                Some(Report::Progress {
                    id,
                    done: upto,
                    size,
                })
            }
            Done::Read { id, offset, data } => {
                self.receiving.get(&id)?;
                let _ = ctl.supply_chunk(now, id, offset, data);
                None
            }
            Done::Committed { id, path } => {
                self.receiving.remove(&id)?;
                let _ = ctl.finish_receive(now, id, Ok(()));
                Some(Report::Saved { id, path })
            }
            Done::Kept {
                id,
                name,
                path,
                held,
            } => Some(Report::PartialKept {
                id,
                name: name.as_str().into(),
                path,
                held,
            }),
            Done::TreeOpened { id, key, held } => {
                let tree = self.trees.get(&id)?;
                let report = Report::Offered {
                    id,
                    name: Text::from(format!("{}/", tree.name)),
                    size: tree.total_size,
                    peer: tree.peer.clone(),
                    accepted: Some(held.iter().map(|h| h.offset).sum()),
                };
                if ctl.accept_tree(now, id, key, &held).is_err() {
                    // Ended meanwhile (its `Ended` drops it too).
                    self.trees.remove(&id);
                    return None;
                }
                Some(report)
            }
            Done::TreeNotOpened { id, code, reason } => {
                let tree = self.trees.remove(&id)?;
                let _ = ctl.reject(now, id, code, &reason);
                Some(tree_report(id, tree, None))
            }
            Done::TreeWritten { id, upto } => {
                let size = self.trees.get(&id)?.total_size;
                ctl.confirm_written(now, id, upto).ok()?;
                Some(Report::Progress {
                    id,
                    done: upto,
                    size,
                })
            }
            Done::TreeCommitted { id, path } => {
                self.trees.remove(&id)?;
                let _ = ctl.finish_receive(now, id, Ok(()));
                Some(Report::Saved { id, path })
            }
            Done::TreeFailed {
                id,
                code,
                reason,
                committing,
            } => {
                self.trees.remove(&id)?;
                if committing {
                    let _ = ctl.finish_receive(now, id, Err((code, reason.clone())));
                } else {
                    let _ = ctl.cancel(now, id, code, &reason);
                }
                Some(Report::LocalError { id, error: reason })
            }
            Done::Failed {
                id,
                error,
                committing: true,
            } => {
                self.receiving.remove(&id)?;
                let error = format!("cannot store the file: {error}");
                let _ = ctl.finish_receive(now, id, Err((Code::IO_ERROR, error.clone())));
                Some(Report::LocalError { id, error })
            }
            Done::Failed { id, error, .. } => {
                self.receiving.get(&id)?;
                Some(self.fail(ctl, now, id, error))
            }
        }
    }

    /// Answers an offer held for the user (policy [`OfferPolicy::Ask`]):
    /// accepts it into the inbox (resuming a partial file) or declines it.
    /// Says what became of it when that is known at once (declined, or
    /// refused by the inbox); an accepted offer's file is opened off this
    /// thread and its [`Report::Offered`] comes from
    /// [`poll_disk`](Self::poll_disk). An error when no such offer waits
    /// (already answered, expired, or withdrawn by the sender).
    pub fn answer_offer(
        &mut self,
        ctl: &mut impl TransferControl,
        now: Instant,
        id: TransferId,
        accept: bool,
    ) -> Result<Option<Report>, String> {
        let offer = self
            .held
            .remove(&id)
            .ok_or_else(|| format!("no offer {id} is waiting for an answer"))?
            .offer;
        Ok(match (offer, accept) {
            (Held::File(offer), true) => self.on_offer(ctl, now, id, offer),
            (Held::Tree(manifest), true) => self.on_tree_accepted(ctl, now, id, *manifest),
            (offer, false) => self.decline(ctl, now, id, offer, "declined by the user"),
        })
    }

    /// Refuses a held offer with `FILE_REJECTED`, saying why.
    fn decline(
        &mut self,
        ctl: &mut impl TransferControl,
        now: Instant,
        id: TransferId,
        offer: Held,
        reason: &str,
    ) -> Option<Report> {
        let _ = ctl.reject(now, id, Code::FILE_REJECTED, reason);
        match offer {
            Held::File(offer) => Some(Report::Offered {
                id,
                name: offer.name,
                size: offer.size,
                peer: offer.peer,
                accepted: None,
            }),
            Held::Tree(_) => Some(tree_report(id, self.trees.remove(&id)?, None)),
        }
    }

    /// When an offer held for the user expires: call
    /// [`handle_timeout`](Self::handle_timeout) then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.held.values().map(|offer| offer.deadline).min()
    }

    /// Declines the held offers whose time to answer is over, saying so.
    pub fn handle_timeout(&mut self, ctl: &mut impl TransferControl, now: Instant) -> Vec<Report> {
        let expired: Vec<TransferId> = self
            .held
            .iter()
            .filter(|(_, offer)| offer.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        expired
            .into_iter()
            .filter_map(|id| {
                let offer = self.held.remove(&id)?.offer;
                self.decline(ctl, now, id, offer, "no answer in time")
            })
            .collect()
    }

    /// Takes an offer: refuses it at once if it cannot be taken (reported
    /// here), or books its file and starts its writer, which opens the file
    /// and leads to the answer in [`poll_disk`](Self::poll_disk) (`None`
    /// here).
    fn on_offer(
        &mut self,
        ctl: &mut impl TransferControl,
        now: Instant,
        id: TransferId,
        offer: Offer,
    ) -> Option<Report> {
        let Offer {
            name,
            size,
            peer,
            resume,
        } = offer;
        // `Ask` reaches here only once the user said yes.
        let begun = match (&self.inbox, self.policy) {
            (Some(inbox), OfferPolicy::Accept | OfferPolicy::Ask { .. }) => {
                let sender = self.sender(&peer);
                inbox
                    .reserve(&name, size, Some(sender), resume)
                    .map_err(|refused| (refused.code(), refused.to_string()))
                    .and_then(|reserved| {
                        IncomingFile::spawn(reserved, id, self.owner, self.disk.clone())
                            .map_err(|e| (Code::IO_ERROR, format!("cannot start a writer: {e}")))
                    })
            }
            _ => Err((Code::FILE_REJECTED, "not accepting files".to_string())),
        };
        match begun {
            Ok(file) => {
                let unanswered = Some(Unanswered { name, peer });
                self.receiving.insert(
                    id,
                    Receiver {
                        file,
                        size,
                        unanswered,
                    },
                );
                None
            }
            Err((code, reason)) => {
                let _ = ctl.reject(now, id, code, &reason);
                Some(Report::Offered {
                    id,
                    name,
                    size,
                    peer,
                    accepted: None,
                })
            }
        }
    }

    /// A tree offered to the inbox: refused at once if the inbox cannot
    /// take it (none, its quota, its sender's limits), else its manifest is
    /// awaited ([`TransferEvent::TreeManifest`]), booked in the inbox now
    /// or, when the user is to be asked, once the user says yes.
    #[allow(clippy::too_many_arguments)]
    fn on_tree_offer(
        &mut self,
        ctl: &mut impl TransferControl,
        now: Instant,
        id: TransferId,
        name: Text,
        total_size: u64,
        peer: Text,
        resume: Option<ResumeKey>,
    ) -> Option<Report> {
        let mut tree = TreeReceiver {
            name,
            total_size,
            peer,
            writer: None,
            room: None,
            resume,
            in_use: None,
        };
        // A tree the user already took, continued by the one who holds its
        // key, is not asked about again.
        let continued = match (&self.inbox, &tree.resume) {
            (Some(inbox), Some(key)) => inbox.keeps(key),
            _ => false,
        };
        let admitted = match (&self.inbox, self.policy) {
            (Some(inbox), OfferPolicy::Ask { .. }) if !continued => inbox
                .admits(&tree.peer, total_size)
                .map(|()| None)
                .map_err(|refused| (refused.code(), refused.to_string())),
            (Some(_), OfferPolicy::Accept | OfferPolicy::Ask { .. }) => {
                self.reserve_tree(&tree).map(Some)
            }
            _ => Err((Code::FILE_REJECTED, "not accepting folders".to_string())),
        };
        match admitted {
            // Booked now, or (asked about) once the user says yes.
            Ok(room) => tree.room = room,
            Err((code, reason)) => {
                let _ = ctl.reject(now, id, code, &reason);
                return Some(tree_report(id, tree, None));
            }
        }
        self.trees.insert(id, tree);
        None
    }

    /// Who an offer from the user `peer` counts against in the inbox: the
    /// address of a hub's client, or the user on a client.
    fn sender(&self, peer: &str) -> Sender {
        match self.source {
            Some(source) => Sender::Source(source),
            None => Sender::User(peer.to_lowercase()),
        }
    }

    /// Books `tree` in the inbox: its size against the quota and its
    /// sender's limits, its staging folder.
    fn reserve_tree(&self, tree: &TreeReceiver) -> Result<Reservation, (Code, String)> {
        let Some(inbox) = &self.inbox else {
            return Err((Code::FILE_REJECTED, "not accepting folders".to_string()));
        };
        let sender = self.sender(&tree.peer);
        inbox
            .admits(&tree.peer, tree.total_size)
            .and_then(|()| {
                inbox.reserve_tree(&tree.name, tree.total_size, Some(sender), tree.resume)
            })
            .map_err(|refused| (refused.code(), refused.to_string()))
    }

    /// The user said yes to a folder: it is booked in the inbox (or
    /// refused if it no longer fits) and its writer started.
    fn on_tree_accepted(
        &mut self,
        ctl: &mut impl TransferControl,
        now: Instant,
        id: TransferId,
        manifest: Manifest,
    ) -> Option<Report> {
        match self.reserve_tree(self.trees.get(&id)?) {
            Ok(room) => self.open_tree(ctl, now, id, room, manifest),
            Err((code, reason)) => {
                let _ = ctl.reject(now, id, code, &reason);
                Some(tree_report(id, self.trees.remove(&id)?, None))
            }
        }
    }

    /// Starts the writer of a booked tree, which makes its folders and
    /// leads to the answer in [`poll_disk`](Self::poll_disk) (`None` here),
    /// or refuses the tree if it cannot start.
    fn open_tree(
        &mut self,
        ctl: &mut impl TransferControl,
        now: Instant,
        id: TransferId,
        mut room: Reservation,
        manifest: Manifest,
    ) -> Option<Report> {
        // Its files and folders count too, not only their bytes: a tree of
        // empty folders is not free. The top-level folder is one more.
        let entries = manifest.entries().len() as u64 + 1;
        if let Err(refused) = room.charge_entries(entries) {
            let tree = self.trees.remove(&id)?;
            let _ = ctl.reject(now, id, refused.code(), &refused.to_string());
            return Some(tree_report(id, tree, None));
        }
        let in_use = room.name_in_use();
        match IncomingTree::spawn(room, manifest, id, self.owner, self.disk.clone()) {
            Ok(writer) => {
                let tree = self.trees.get_mut(&id)?;
                tree.writer = Some(writer);
                tree.in_use = Some(in_use);
                None
            }
            Err(e) => {
                let tree = self.trees.remove(&id)?;
                let reason = format!("cannot start a writer: {e}");
                let _ = ctl.reject(now, id, Code::IO_ERROR, &reason);
                Some(tree_report(id, tree, None))
            }
        }
    }

    /// A local read or write failed: cancel, keep any partial file.
    fn fail(
        &mut self,
        ctl: &mut impl TransferControl,
        now: Instant,
        id: TransferId,
        e: io::Error,
    ) -> Report {
        let error = e.to_string();
        let _ = ctl.cancel(now, id, Code::IO_ERROR, &error);
        self.sending.remove(&id);
        self.receiving.remove(&id);
        self.tree_sources.remove(&id);
        Report::LocalError { id, error }
    }
}

/// What became of a tree offer, for [`Report::Offered`] (its name ends in
/// `/`, so that a log tells a folder from a file).
fn tree_report(id: TransferId, tree: TreeReceiver, accepted: Option<u64>) -> Report {
    Report::Offered {
        id,
        name: Text::from(format!("{}/", tree.name)),
        size: tree.total_size,
        peer: tree.peer,
        accepted,
    }
}

/// Carries out a user's command on a client connection, registering the file
/// behind a `SendFile`. Returns what a user may want to see (the fate of an
/// answered offer); the error says what could not be done, for a
/// [`ClientNotice::Error`](crate::ClientNotice::Error).
pub fn run_command(
    conn: &mut Connection,
    files: &mut FileTransfers,
    now: Instant,
    command: crate::ClientCommand,
) -> Result<Option<Report>, String> {
    use crate::ClientCommand;
    match command {
        ClientCommand::Say(text) => conn.say(now, &text).map_err(|e| e.to_string())?,
        ClientCommand::Direct { to, text } => conn
            .direct(now, &to, &text)
            .map_err(|e| format!("direct message to {to:?}: {e}"))?,
        ClientCommand::Who => conn.who(now).map_err(|e| e.to_string())?,
        ClientCommand::SendFile { path, to } => return send_file(conn, files, now, path, to, None),
        ClientCommand::ResumeFile { path, to, key } => {
            return send_file(conn, files, now, path, to, Some(key))
        }
        ClientCommand::AnnounceFeatures(bits) => conn
            .announce_features(now, bits)
            .map_err(|e| e.to_string())?,
        ClientCommand::SendTree { tree, to, resume } => {
            let offered = match resume {
                Some(key) => conn.offer_tree_resuming(now, &tree.name, &tree.manifest, &to, key),
                None => conn.offer_tree(now, &tree.name, &tree.manifest, &to),
            };
            let id = offered.map_err(|e| format!("cannot send the folder {}: {e}", tree.name))?;
            let entries = tree.manifest.entries();
            let source = TreeSource {
                files: tree
                    .files
                    .iter()
                    .map(|(index, path)| {
                        let entry = &entries[*index as usize];
                        let relative = entry.path.as_str().to_string();
                        (*index, (path.clone(), entry.size(), relative))
                    })
                    .collect(),
                open: None,
            };
            files.tree_sources.insert(id, source);
            return Ok(Some(Report::Offering {
                id,
                path: tree.root.clone(),
                name: Text::from(format!("{}/", tree.name)),
                size: tree.manifest.total_size(),
                to: to.as_str().into(),
            }));
        }
        ClientCommand::AcceptOffer { id } => return files.answer_offer(conn, now, id, true),
        ClientCommand::RejectOffer { id } => return files.answer_offer(conn, now, id, false),
        ClientCommand::Ping => conn.ping(now),
        ClientCommand::Bye => conn.bye(now),
    }
    Ok(None)
}

/// Offers the file at `path` to `to`, presenting `resume` to continue an
/// earlier, cut transfer of it.
fn send_file(
    conn: &mut Connection,
    files: &mut FileTransfers,
    now: Instant,
    path: PathBuf,
    to: String,
    resume: Option<ResumeKey>,
) -> Result<Option<Report>, String> {
    // `Sending::open` names the path in its errors.
    let (file, name, size) = Sending::open(&path).map_err(|e| format!("cannot send {e}"))?;
    let offered = match resume {
        Some(key) => conn.offer_file_resuming(now, &name, size, &to, key),
        None => conn.offer_file(now, &name, size, &to),
    };
    let id = offered.map_err(|e| format!("cannot send {}: {e}", path.display()))?;
    files.register_send(id, file);
    Ok(Some(Report::Offering {
        id,
        path,
        name: name.as_str().into(),
        size,
        to: to.as_str().into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Records the answers given to offers.
    #[derive(Default)]
    struct Answers(Vec<(TransferId, Result<u64, Code>)>);

    impl TransferControl for Answers {
        fn accept(
            &mut self,
            _: Instant,
            id: TransferId,
            resume: u64,
            _: ResumeKey,
        ) -> Result<(), Misuse> {
            self.0.push((id, Ok(resume)));
            Ok(())
        }
        fn reject(
            &mut self,
            _: Instant,
            id: TransferId,
            code: Code,
            _: &str,
        ) -> Result<(), Misuse> {
            self.0.push((id, Err(code)));
            Ok(())
        }
        fn cancel(&mut self, _: Instant, _: TransferId, _: Code, _: &str) -> Result<(), Misuse> {
            Ok(())
        }
        fn supply_chunk(
            &mut self,
            _: Instant,
            _: TransferId,
            _: u64,
            _: Bytes,
        ) -> Result<(), Misuse> {
            Ok(())
        }
        fn confirm_written(&mut self, _: Instant, _: TransferId, _: u64) -> Result<(), Misuse> {
            Ok(())
        }
        fn finish_receive(
            &mut self,
            _: Instant,
            _: TransferId,
            _: Result<(), (Code, String)>,
        ) -> Result<(), Misuse> {
            Ok(())
        }
        fn accept_tree(
            &mut self,
            _: Instant,
            id: TransferId,
            _: ResumeKey,
            _: &[HeldFile],
        ) -> Result<(), Misuse> {
            self.0.push((id, Ok(0)));
            Ok(())
        }
        fn supply_tree_chunk(
            &mut self,
            _: Instant,
            _: TransferId,
            _: u32,
            _: u64,
            _: Bytes,
        ) -> Result<(), Misuse> {
            Ok(())
        }
    }

    #[test]
    fn a_resume_never_waits_on_the_loop_for_the_busy_writer_of_its_earlier_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::open(dir.path()).unwrap();
        // An earlier attempt has ended, and its writer is still finishing:
        // its partial file is closing, not free.
        let reserved = inbox.reserve("a.bin", 10, None, None).unwrap();
        let ended = reserved.name_in_use();
        let mut earlier = reserved.open().unwrap();
        let key = earlier.resume_key();
        drop(ended);

        let now = Instant::now();
        let mut files = FileTransfers::new(Some(inbox), OfferPolicy::Accept);
        let mut ctl = Answers::default();
        let offered = TransferEvent::Offered {
            id: 1,
            name: "a.bin".into(),
            size: 10,
            peer: "bob".into(),
            resume: Some(key),
        };
        let started = Instant::now();
        // Before: this waited (up to 10 s) for the earlier writer, on the
        // loop that called it.
        assert_eq!(files.handle(&mut ctl, now, offered), None);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(ctl.0.is_empty(), "answered before the file was free");
        thread_sleep_then_poll(&mut files, &mut ctl);
        assert!(
            ctl.0.is_empty(),
            "answered while the earlier writer is busy"
        );

        // The earlier writer finishes its last write and lets go: the
        // offer is accepted, resuming after what it wrote.
        earlier.write_at(0, b"abc").unwrap();
        drop(earlier);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut reports = Vec::new();
        while ctl.0.is_empty() {
            assert!(Instant::now() < deadline, "never answered");
            std::thread::sleep(Duration::from_millis(2));
            reports.extend(files.poll_disk(&mut ctl, now));
        }
        assert_eq!(ctl.0, vec![(1, Ok(3))]);
        assert!(matches!(
            &reports[..],
            [Report::Offered {
                id: 1,
                accepted: Some(3),
                ..
            }]
        ));
    }

    #[test]
    fn a_cancelled_offer_stops_waiting_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::open(dir.path()).unwrap();
        let reserved = inbox.reserve("a.bin", 10, None, None).unwrap();
        let ended = reserved.name_in_use();
        let earlier = reserved.open().unwrap();
        let key = earlier.resume_key();
        drop(ended);

        let now = Instant::now();
        let mut files = FileTransfers::new(Some(inbox.clone()), OfferPolicy::Accept);
        let mut ctl = Answers::default();
        let offered = |id| TransferEvent::Offered {
            id,
            name: "a.bin".into(),
            size: 10,
            peer: "bob".into(),
            resume: Some(key),
        };
        assert_eq!(files.handle(&mut ctl, now, offered(1)), None);
        // Only one offer may wait for a partial file.
        let second = files.handle(&mut ctl, now, offered(3));
        assert!(matches!(
            second,
            Some(Report::Offered { accepted: None, .. })
        ));
        assert_eq!(ctl.0, vec![(3, Err(Code::TRY_AGAIN))]);
        // The sender gives up on the first before its file was opened: its
        // writer stops waiting at once, with the earlier one still busy.
        let cancelled = Outcome::Cancelled {
            code: Code::CANCELLED,
            reason: "no".into(),
            by_peer: true,
        };
        let ended = TransferEvent::Ended {
            id: 1,
            outcome: cancelled,
        };
        files.handle(&mut ctl, now, ended);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !files.disk_idle() {
            assert!(
                Instant::now() < deadline,
                "the waiting writer never gave up"
            );
            std::thread::sleep(Duration::from_millis(2));
            // Its word that it gave up concerns an offer no longer open.
            assert!(files.poll_disk(&mut ctl, now).is_empty());
        }
        assert_eq!(ctl.0.len(), 1, "{:?}", ctl.0);
        // The earlier transfer wrote nothing: its empty partial goes too.
        drop(earlier);
        let partials = dir.path().join(crate::PARTIALS_DIR);
        assert_eq!(std::fs::read_dir(partials).unwrap().count(), 0);
        assert_eq!(inbox.used(), 0);
    }

    fn thread_sleep_then_poll(files: &mut FileTransfers, ctl: &mut Answers) {
        std::thread::sleep(Duration::from_millis(100));
        assert!(files.poll_disk(ctl, Instant::now()).is_empty());
    }
}
