//! Answering a connection's transfer events with file I/O.

use crate::disk::{DiskQueue, Done, IncomingFile, Wake};
use crate::inbox::{Inbox, Sending};
use bytes::Bytes;
use ferry_core::frame::TransferId;
use ferry_core::transfer::{Outcome, TransferEvent};
use ferry_core::{ClientId, Code, Connection, Hub, Misuse, Text};
use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::time::Instant;

/// The transfer commands of a connection, whether it stands alone
/// ([`Connection`]) or belongs to a hub ([`HubClient`]).
pub trait TransferControl {
    /// See [`Connection::accept`].
    fn accept(&mut self, now: Instant, id: TransferId, resume_from: u64) -> Result<(), Misuse>;
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
}

impl TransferControl for Connection {
    fn accept(&mut self, now: Instant, id: TransferId, resume_from: u64) -> Result<(), Misuse> {
        Connection::accept(self, now, id, resume_from)
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
    fn accept(&mut self, now: Instant, id: TransferId, resume_from: u64) -> Result<(), Misuse> {
        self.hub.accept(self.client, now, id, resume_from)
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
}

/// Whether incoming offers are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferPolicy {
    /// Accept every offer with a safe name into the inbox (resuming partials).
    Accept,
    /// Decline every offer.
    Reject,
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
        /// The partial file.
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
    sending: HashMap<TransferId, Sending>,
    disk: DiskQueue,
    /// Tags this connection's completions in a queue shared by a hub.
    owner: u64,
}

/// A file being received, and its size.
#[derive(Debug)]
struct Receiver {
    file: IncomingFile,
    size: u64,
}

impl FileTransfers {
    /// Receives into `inbox` (offers are declined without one) according to
    /// `policy`.
    pub fn new(inbox: Option<Inbox>, policy: OfferPolicy) -> Self {
        FileTransfers {
            inbox,
            policy,
            receiving: HashMap::new(),
            sending: HashMap::new(),
            disk: DiskQueue::unsignalled(),
            owner: 0,
        }
    }

    /// Calls `wake` (from a writer thread) whenever disk work finishes; the
    /// loop should then call [`poll_disk`](Self::poll_disk). Set it before
    /// any transfer starts.
    pub fn on_disk_done(mut self, wake: Wake) -> Self {
        self.disk = DiskQueue::new(wake);
        self
    }

    /// Shares a hub's queue of finished disk work, tagged with `owner`.
    pub(crate) fn with_disk(mut self, disk: DiskQueue, owner: u64) -> Self {
        self.disk = disk;
        self.owner = owner;
        self
    }

    /// Transfers with a file open.
    pub fn open_count(&self) -> usize {
        self.receiving.len() + self.sending.len()
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
            } => {
                let accepted = self.on_offer(ctl, now, id, &name, size);
                Some(Report::Offered {
                    id,
                    name,
                    size,
                    peer,
                    accepted,
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
            Done::Kept { id, path, held } => Some(Report::PartialKept { id, path, held }),
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

    fn on_offer(
        &mut self,
        ctl: &mut impl TransferControl,
        now: Instant,
        id: TransferId,
        name: &str,
        size: u64,
    ) -> Option<u64> {
        let inbox = match (&self.inbox, self.policy) {
            (Some(inbox), OfferPolicy::Accept) => inbox,
            _ => {
                let _ = ctl.reject(now, id, Code::FILE_REJECTED, "not accepting files");
                return None;
            }
        };
        let begun = inbox.begin(name, size).and_then(|rx| {
            let resume = rx.resume_from();
            IncomingFile::spawn(rx, id, self.owner, self.disk.clone()).map(|file| (file, resume))
        });
        match begun {
            Ok((file, resume)) => {
                self.receiving.insert(id, Receiver { file, size });
                ctl.accept(now, id, resume).ok().map(|()| resume)
            }
            Err(e) => {
                let code = if e.kind() == io::ErrorKind::AlreadyExists {
                    Code::FILE_REJECTED
                } else if crate::inbox::QuotaExceeded::is(&e) {
                    Code::INBOX_FULL
                } else {
                    Code::IO_ERROR
                };
                let _ = ctl.reject(now, id, code, &e.to_string());
                None
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
        Report::LocalError { id, error }
    }
}

/// Carries out a user's command on a client connection, registering the file
/// behind a `SendFile`. The error says what could not be done, for a
/// [`ClientNotice::Error`](crate::ClientNotice::Error).
pub fn run_command(
    conn: &mut Connection,
    files: &mut FileTransfers,
    now: Instant,
    command: crate::ClientCommand,
) -> Result<(), String> {
    use crate::ClientCommand;
    match command {
        ClientCommand::Say(text) => conn.say(now, &text).map_err(|e| e.to_string()),
        ClientCommand::Direct { to, text } => conn
            .direct(now, &to, &text)
            .map_err(|e| format!("direct message to {to:?}: {e}")),
        ClientCommand::Who => conn.who(now).map_err(|e| e.to_string()),
        ClientCommand::SendFile { path, to } => {
            // `Sending::open` names the path in its errors.
            let (file, name, size) =
                Sending::open(&path).map_err(|e| format!("cannot send {e}"))?;
            let id = conn
                .offer_file(now, &name, size, &to)
                .map_err(|e| format!("cannot send {}: {e}", path.display()))?;
            files.register_send(id, file);
            Ok(())
        }
        ClientCommand::Bye => {
            conn.bye(now);
            Ok(())
        }
    }
}
