//! Sending a tree (`docs/PROTOCOL.md` §6.12): `TREE_OFFER` and the
//! manifest, then, once accepted, every file in manifest order as
//! `TREE_FILE`, `DATA`, `TREE_FILE_DONE` with no answer awaited between
//! files, within the receiver's window; `DONE` with the manifest's hash.
//! The application reads the bytes ([`TransferEvent::TreeNeedChunk`]); no
//! disk here.
//!
//! A resumed tree (§6.12.5): the receiver lists in `TREE_HELD` what it
//! holds of each file; before sending a file it lists, the sender reads
//! its own first `offset` bytes of it (the same chunk requests, hashed and
//! not sent) and skips what the hashes show the receiver has.

use super::{data_floor, Connection, Role, Transfer};
use crate::error::{Error, Malformed, Misuse, Violation};
use crate::filename::check_file_name;
use crate::frame::{features, Frame, Hash, HeldFile, ResumeKey, TransferId};
use crate::transfer::{empty_hash, Outcome, TransferEvent};
use crate::tree::Manifest;
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::Instant;

/// A tree this side sends.
#[derive(Debug)]
pub(crate) struct OutgoingTree {
    /// Each entry's size, `None` for a folder.
    sizes: Vec<Option<u64>>,
    /// BLAKE3 of the manifest's bytes, for `DONE`.
    hash: Hash,
    total: u64,
    /// This offer presented a resume key: the receiver may list what it
    /// holds (`TREE_HELD`), and only then.
    resuming: bool,
    /// `TREE_HELD` records so far, in increasing index order.
    held: Vec<HeldFile>,
    /// Relayed by a hub: its frames come from another connection's tree
    /// ([`Connection::relay_tree_frame`]), not from the application, and
    /// what the receiver holds is passed back to that sender unchecked.
    relay: bool,
    state: TreeOut,
}

impl OutgoingTree {
    /// Offered and not answered yet.
    pub(super) fn is_offered(&self) -> bool {
        matches!(self.state, TreeOut::Offered)
    }
}

/// One frame of a relayed tree's sender, to pass on to its recipient
/// ([`Connection::relay_tree_frame`]).
#[derive(Debug)]
pub(crate) enum RelayedTreeFrame {
    /// `TREE_FILE`.
    File { index: u32, offset: u64 },
    /// `DATA` of the current file.
    Data { offset: u64, data: Bytes },
    /// `TREE_FILE_DONE`.
    FileDone { index: u32, hash: Hash },
    /// `DONE`.
    Done { hash: Hash },
}

impl Connection {
    /// Hub: what the recipient of relayed tree `id` said it holds
    /// (`TREE_HELD`), taken once it accepted, to pass to the sender.
    pub(crate) fn take_relayed_held(&mut self, id: TransferId) -> Vec<HeldFile> {
        match self.transfers.get_mut(&id) {
            Some(Transfer::OutTree(tree)) if tree.relay => match &mut tree.state {
                TreeOut::Sending(s) => std::mem::take(&mut s.held).into(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    /// Hub: passes one frame of a relayed tree's sender on to this
    /// recipient. The sender's side checked it (order, sizes, window); the
    /// window here is the same or larger, so it fits.
    pub(crate) fn relay_tree_frame(
        &mut self,
        now: Instant,
        id: TransferId,
        frame: RelayedTreeFrame,
    ) -> Result<(), Misuse> {
        let Some(Transfer::OutTree(tree)) = self.transfers.get_mut(&id) else {
            return Err(Misuse::NoSuchTransfer(id));
        };
        let TreeOut::Sending(s) = &mut tree.state else {
            return Err(Misuse::NoSuchTransfer(id));
        };
        if !tree.relay {
            return Err(Misuse::NoSuchTransfer(id));
        }
        match frame {
            RelayedTreeFrame::File { index, offset } => {
                self.outbox
                    .push_after_data(id, &Frame::TreeFile { id, index, offset });
            }
            RelayedTreeFrame::Data { offset, data } => {
                s.supplied += data.len() as u64;
                self.outbox.push_data(id, offset, data);
            }
            RelayedTreeFrame::FileDone { index, hash } => {
                self.outbox
                    .push_after_data(id, &Frame::TreeFileDone { id, index, hash });
            }
            RelayedTreeFrame::Done { hash } => {
                let credited = s.credited;
                tree.state = TreeOut::DoneSent {
                    credited,
                    skipped: 0,
                };
                self.outbox.push_after_data(id, &Frame::Done { id, hash });
            }
        }
        self.last_send = now;
        Ok(())
    }
}

#[derive(Debug)]
enum TreeOut {
    /// Not offered yet: an earlier tree of ours waits for its answer (a
    /// receiver takes one manifest at a time per connection, §6.12.3).
    Queued(Box<QueuedOffer>),
    Offered,
    Sending(Box<Sending>),
    /// `DONE` queued; waiting for `VERIFIED` or `FAILED`.
    DoneSent {
        credited: u64,
        /// Bytes the receiver held from an earlier attempt.
        skipped: u64,
    },
}

#[derive(Debug)]
struct Sending {
    window: u32,
    /// The receiver's last `CREDIT`: payload bytes of the tree stored.
    credited: u64,
    /// Payload bytes asked of the application so far.
    requested: u64,
    /// Payload bytes supplied and queued so far.
    supplied: u64,
    /// Where the next request starts: an entry and an offset in it.
    req_entry: usize,
    req_offset: u64,
    /// Requests not yet answered, oldest first.
    pending: VecDeque<Request>,
    /// Entries before this one have all their frames queued.
    framed: usize,
    /// The file whose `TREE_FILE` is queued and whose bytes are being
    /// supplied.
    opened: Option<usize>,
    /// BLAKE3 of the file being supplied, so far.
    hasher: blake3::Hasher,
    /// What the receiver said it holds, for the files not reached yet.
    held: VecDeque<HeldFile>,
    /// A held prefix being read back to compare with the receiver's hash.
    checking: Option<Check>,
    /// Bytes of files the receiver held and that were not sent again.
    skipped: u64,
}

/// The frames of a tree offer held back until the tree before it is
/// answered.
#[derive(Debug)]
struct QueuedOffer {
    offer: Frame,
    resume: Option<ResumeKey>,
    manifest: Bytes,
}

/// One chunk asked of the application.
#[derive(Debug, Clone, Copy)]
struct Request {
    index: u32,
    offset: u64,
    len: u32,
    /// Read to compare with a `TREE_HELD` record, not to send.
    check: bool,
}

/// Reading back the first `record.offset` bytes of a file the receiver
/// holds: no `DATA` is sent for the file until the hashes are compared.
#[derive(Debug)]
struct Check {
    record: HeldFile,
    /// Bytes asked for so far, and hashed so far.
    requested: u64,
    hashed: u64,
    hasher: blake3::Hasher,
}

impl Connection {
    /// Offers `manifest` as the tree `name` (a folder sent whole) to the
    /// peer: to a server, `to` names the recipient, or is empty for its
    /// inbox. The peer must have announced trees in `FEATURES`
    /// ([`peer_features`](Self::peer_features)): a client asks with
    /// [`announce_features`](Self::announce_features) and waits for
    /// [`Event::Features`](super::Event::Features). Queues `TREE_OFFER` and
    /// the manifest in parts; once the receiver accepts, its files are
    /// asked for in order with [`TransferEvent::TreeNeedChunk`], answered
    /// with [`supply_tree_chunk`](Self::supply_tree_chunk).
    pub fn offer_tree(
        &mut self,
        now: Instant,
        name: &str,
        manifest: &Manifest,
        to: &str,
    ) -> Result<TransferId, Misuse> {
        self.offer_tree_with(now, name, manifest, to, None, false)
    }

    /// Hub: offers a tree another client sends to this one (`from` names
    /// it), passing on the key that client presented, if any; its frames
    /// are then pushed with [`relay_tree_frame`](Self::relay_tree_frame).
    pub(crate) fn offer_tree_relayed(
        &mut self,
        now: Instant,
        name: &str,
        manifest: &Manifest,
        from: &str,
        resume: Option<ResumeKey>,
    ) -> Result<TransferId, Misuse> {
        self.offer_tree_with(now, name, manifest, from, resume, true)
    }

    /// Like [`offer_tree`](Self::offer_tree), to continue a tree whose
    /// transfer was cut: `key` is the one its receiver issued
    /// ([`TransferEvent::ResumeKey`]), and `manifest` must be the one
    /// offered then (same bytes: a changed folder is a new tree). Queues
    /// `RESUME` with the key, then the offer. A receiver that kept what
    /// arrived lists it (`TREE_HELD`); each file it holds is read back
    /// through [`TransferEvent::TreeNeedChunk`] to compare hashes, and
    /// only what it lacks is sent ([`TransferEvent::TreeFileHeld`]
    /// reports each file found there, whole or in part).
    pub fn offer_tree_resuming(
        &mut self,
        now: Instant,
        name: &str,
        manifest: &Manifest,
        to: &str,
        key: ResumeKey,
    ) -> Result<TransferId, Misuse> {
        self.offer_tree_with(now, name, manifest, to, Some(key), false)
    }

    fn offer_tree_with(
        &mut self,
        now: Instant,
        name: &str,
        manifest: &Manifest,
        to: &str,
        resume: Option<ResumeKey>,
        relay: bool,
    ) -> Result<TransferId, Misuse> {
        self.ensure_open()?;
        if self.peer_features & features::TREES == 0 {
            return Err(Misuse::InvalidArgument("the peer does not take folders"));
        }
        check_file_name(name).map_err(|_| Misuse::InvalidArgument("unsafe folder name"))?;
        if to.len() > usize::from(u16::MAX) {
            return Err(Misuse::InvalidArgument("peer name too long"));
        }
        if self.transfers.len() >= self.config.max_transfers {
            return Err(Misuse::InvalidArgument("too many transfers open"));
        }
        let bytes = Bytes::from(manifest.encode());
        let manifest_len = u32::try_from(bytes.len())
            .map_err(|_| Misuse::InvalidArgument("a manifest over 4 GiB"))?;
        let id = self.next_local_id;
        self.next_local_id = id
            .checked_add(2)
            .ok_or(Misuse::InvalidArgument("transfer ids exhausted"))?;
        // Its answers are tree frames: known from now on.
        self.speaks_trees = true;
        // Before this tree is one of ours.
        let wait = self.tree_awaiting_answer();
        self.transfers.insert(
            id,
            Transfer::OutTree(Box::new(OutgoingTree {
                sizes: manifest
                    .entries()
                    .iter()
                    .map(|e| (!e.is_folder()).then(|| e.size()))
                    .collect(),
                hash: *blake3::hash(&bytes).as_bytes(),
                total: manifest.total_size(),
                resuming: resume.is_some(),
                held: Vec::new(),
                relay,
                state: TreeOut::Offered,
            })),
        );
        let queued = QueuedOffer {
            offer: Frame::TreeOffer {
                id,
                total_size: manifest.total_size(),
                manifest_len,
                name: name.into(),
                peer: to.into(),
            },
            resume,
            manifest: bytes,
        };
        if wait {
            if let Some(Transfer::OutTree(tree)) = self.transfers.get_mut(&id) {
                tree.state = TreeOut::Queued(Box::new(queued));
            }
        } else {
            self.send_tree_offer(now, id, queued);
        }
        Ok(id)
    }

    /// Whether a tree of ours is offered and not answered yet: the next
    /// waits for that answer.
    fn tree_awaiting_answer(&self) -> bool {
        self.transfers
            .values()
            .any(|t| matches!(t, Transfer::OutTree(tree) if tree.is_offered()))
    }

    /// Queues `RESUME` (if any), `TREE_OFFER` and the manifest in parts.
    fn send_tree_offer(&mut self, now: Instant, id: TransferId, queued: QueuedOffer) {
        let QueuedOffer {
            offer,
            resume,
            manifest,
        } = queued;
        if let Some(key) = resume {
            // Immediately before its TREE_OFFER: nothing else goes between.
            self.queue(&Frame::Resume { id, key }, now);
        }
        self.queue(&offer, now);
        // The parts go in the data lane: a large manifest is paced like
        // file data, not held against the control lane's limit.
        let part = (self.settings.max_frame as usize)
            .saturating_sub(4)
            .clamp(1, crate::tree::MAX_MANIFEST_PART);
        let mut at = 0;
        while at < manifest.len() {
            let end = (at + part).min(manifest.len());
            self.outbox.push_after_data(
                id,
                &Frame::TreeManifest {
                    id,
                    part: manifest.slice(at..end),
                },
            );
            at = end;
        }
        self.last_send = now;
    }

    /// Offers the oldest queued tree of ours once none awaits an answer.
    pub(super) fn release_queued_tree(&mut self, now: Instant) {
        if self.tree_awaiting_answer() {
            return;
        }
        let next = self
            .transfers
            .iter()
            .filter(|(_, t)| {
                matches!(t, Transfer::OutTree(tree) if matches!(tree.state, TreeOut::Queued(_)))
            })
            .map(|(&id, _)| id)
            .min();
        let Some(id) = next else {
            return;
        };
        let Some(Transfer::OutTree(tree)) = self.transfers.get_mut(&id) else {
            return;
        };
        let TreeOut::Queued(queued) = std::mem::replace(&mut tree.state, TreeOut::Offered) else {
            return;
        };
        self.send_tree_offer(now, id, *queued);
    }

    /// Whether `id` is a tree of ours not offered yet (the peer has not
    /// heard of it: a cancel is not sent).
    pub(super) fn is_queued_tree(&self, id: TransferId) -> bool {
        matches!(self.transfers.get(&id), Some(Transfer::OutTree(tree)) if matches!(tree.state, TreeOut::Queued(_)))
    }

    /// Client role: tells the server which optional features this side
    /// takes (`FEATURES`, once, after `WELCOME`); the server answers with
    /// its own, reported as [`Event::Features`](super::Event::Features).
    /// Announce [`features::TREES`] only if the application handles
    /// [`TransferEvent::TreeManifest`]; a client that only sends trees
    /// announces 0.
    pub fn announce_features(&mut self, now: Instant, bits: u32) -> Result<(), Misuse> {
        self.ensure_open()?;
        if self.role != Role::Client {
            return Err(Misuse::InvalidArgument(
                "a server answers FEATURES, it does not announce them",
            ));
        }
        if self.features_answered {
            return Err(Misuse::InvalidArgument("FEATURES already sent"));
        }
        if bits & features::TREES != 0 && self.config.trees.is_none() {
            return Err(Misuse::InvalidArgument(
                "trees announced without limits for them (Config::trees)",
            ));
        }
        self.features_answered = true;
        if bits & features::TREES != 0 {
            self.speaks_trees = true;
        }
        self.queue(&Frame::Features { bits }, now);
        Ok(())
    }

    /// Answers the oldest [`TransferEvent::TreeNeedChunk`] of tree `id`
    /// with exactly the bytes it asked for.
    pub fn supply_tree_chunk(
        &mut self,
        now: Instant,
        id: TransferId,
        index: u32,
        offset: u64,
        data: Bytes,
    ) -> Result<(), Misuse> {
        let unrequested = Misuse::UnrequestedChunk {
            id,
            offset,
            len: data.len(),
        };
        let Some(Transfer::OutTree(tree)) = self.transfers.get_mut(&id) else {
            return Err(Misuse::NoSuchTransfer(id));
        };
        let TreeOut::Sending(s) = &mut tree.state else {
            return Err(unrequested);
        };
        let request = match s.pending.front() {
            Some(&r) if r.index == index && r.offset == offset && r.len as usize == data.len() => {
                s.pending.pop_front();
                r
            }
            _ => return Err(unrequested),
        };
        let index = index as usize;
        // Requested: a file of the manifest.
        let size = tree.sizes[index].unwrap_or(0);
        if request.check {
            // Check requests are made only while checking, for its file.
            let Some(check) = s.checking.as_mut() else {
                return Err(unrequested);
            };
            check.hasher.update(&data);
            check.hashed += data.len() as u64;
            if check.hashed == check.record.offset {
                let check = s.checking.take().expect("checked just above");
                let held = Self::conclude_check(&mut self.outbox, id, &tree.sizes, s, check, size);
                if let Some(offset) = held {
                    let index = index as u32;
                    self.emit(TransferEvent::TreeFileHeld { id, index, offset });
                }
            }
        } else {
            if s.opened != Some(index) {
                Self::frame_empty_files(&mut self.outbox, id, &tree.sizes, s, index);
                let index = index as u32;
                self.outbox
                    .push_after_data(id, &Frame::TreeFile { id, index, offset });
                s.opened = Some(index as usize);
            }
            s.hasher.update(&data);
            s.supplied += data.len() as u64;
            let end = offset + data.len() as u64;
            self.outbox.push_data(id, offset, data);
            if end == size {
                let hash = *s.hasher.finalize().as_bytes();
                Self::close_file(&mut self.outbox, id, s, index, hash);
            }
        }
        self.last_send = now;
        self.maybe_tree_done(id);
        self.fill_requests();
        Ok(())
    }

    /// Queues `TREE_FILE_DONE` for the file being supplied, `index`.
    fn close_file(
        outbox: &mut crate::outbox::Outbox,
        id: TransferId,
        s: &mut Sending,
        index: usize,
        hash: Hash,
    ) {
        s.hasher.reset();
        s.framed = index + 1;
        s.opened = None;
        let index = index as u32;
        outbox.push_after_data(id, &Frame::TreeFileDone { id, index, hash });
    }

    /// The first `check.record.offset` bytes of a file the receiver holds
    /// were read back: if their hash is the receiver's, the file goes on
    /// from there (`TREE_FILE` at that offset, and at once `TREE_FILE_DONE`
    /// if that is its end) and `Some(offset)` says so; if not, it goes from
    /// its first byte, as if nothing were held.
    fn conclude_check(
        outbox: &mut crate::outbox::Outbox,
        id: TransferId,
        sizes: &[Option<u64>],
        s: &mut Sending,
        check: Check,
        size: u64,
    ) -> Option<u64> {
        let HeldFile {
            index,
            offset,
            prefix_hash,
        } = check.record;
        if *check.hasher.finalize().as_bytes() != prefix_hash {
            // The file changed, or the receiver holds other bytes: from 0
            // (its requests start there: `req_offset` is still 0).
            return None;
        }
        let at = index as usize;
        Self::frame_empty_files(outbox, id, sizes, s, at);
        outbox.push_after_data(id, &Frame::TreeFile { id, index, offset });
        s.skipped += offset;
        if offset == size {
            Self::close_file(outbox, id, s, at, prefix_hash);
            s.req_entry = at + 1;
            s.req_offset = 0;
        } else {
            s.opened = Some(at);
            s.hasher = check.hasher;
            s.req_offset = offset;
        }
        Some(offset)
    }

    /// Queues `TREE_FILE` and `TREE_FILE_DONE` for the files of 0 bytes
    /// from the last one framed up to `until`.
    fn frame_empty_files(
        outbox: &mut crate::outbox::Outbox,
        id: TransferId,
        sizes: &[Option<u64>],
        s: &mut Sending,
        until: usize,
    ) {
        for (index, size) in sizes.iter().enumerate().take(until).skip(s.framed) {
            if *size == Some(0) {
                let index = index as u32;
                outbox.push_after_data(
                    id,
                    &Frame::TreeFile {
                        id,
                        index,
                        offset: 0,
                    },
                );
                let hash = empty_hash();
                outbox.push_after_data(id, &Frame::TreeFileDone { id, index, hash });
            }
        }
        s.framed = s.framed.max(until);
    }

    /// Queues `DONE` once every file's frames are queued.
    fn maybe_tree_done(&mut self, id: TransferId) {
        let Some(Transfer::OutTree(tree)) = self.transfers.get_mut(&id) else {
            return;
        };
        let TreeOut::Sending(s) = &mut tree.state else {
            return;
        };
        if s.req_entry < tree.sizes.len() || !s.pending.is_empty() || s.checking.is_some() {
            return;
        }
        let len = tree.sizes.len();
        Self::frame_empty_files(&mut self.outbox, id, &tree.sizes, s, len);
        let (credited, skipped) = (s.credited, s.skipped);
        let hash = tree.hash;
        tree.state = TreeOut::DoneSent { credited, skipped };
        self.outbox.push_after_data(id, &Frame::Done { id, hash });
    }

    /// The next chunks of the trees being sent, within each one's window
    /// and the connection's `budget` of bytes asked for and not yet
    /// written; returns the requests.
    pub(super) fn tree_requests(&mut self, chunk: u32, budget: u64) -> Vec<TransferEvent> {
        let mut in_flight = self.outbox.data_len() as u64
            + self
                .transfers
                .values()
                .map(|t| match t {
                    // A relayed tree's bytes are in the outbox already.
                    Transfer::OutTree(tree) if tree.relay => 0,
                    Transfer::OutTree(tree) => match &tree.state {
                        TreeOut::Sending(s) => {
                            s.requested - s.supplied
                                + s.checking.as_ref().map_or(0, |c| c.requested - c.hashed)
                        }
                        _ => 0,
                    },
                    _ => 0,
                })
                .sum::<u64>();
        let mut requests = Vec::new();
        let ids: Vec<TransferId> = self
            .transfers
            .iter()
            .filter(|(_, t)| matches!(t, Transfer::OutTree(_)))
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            let Some(Transfer::OutTree(tree)) = self.transfers.get_mut(&id) else {
                continue;
            };
            let TreeOut::Sending(s) = &mut tree.state else {
                continue;
            };
            if tree.relay {
                // Its bytes come from the relayed sender.
                continue;
            }
            while in_flight < budget {
                if let Some(check) = &mut s.checking {
                    let left = check.record.offset - check.requested;
                    if left == 0 {
                        // Nothing of this tree is asked for until the
                        // hashes are compared.
                        break;
                    }
                    let HeldFile { index, .. } = check.record;
                    let offset = check.requested;
                    let len = left.min(u64::from(chunk)) as u32;
                    check.requested += u64::from(len);
                    in_flight += u64::from(len);
                    s.pending.push_back(Request {
                        index,
                        offset,
                        len,
                        check: true,
                    });
                    requests.push(TransferEvent::TreeNeedChunk {
                        id,
                        index,
                        offset,
                        len,
                    });
                    continue;
                }
                // Past folders, files of 0 bytes and files fully asked for.
                while s.req_entry < tree.sizes.len() {
                    match tree.sizes[s.req_entry] {
                        Some(size) if s.req_offset < size => break,
                        _ => {
                            s.req_entry += 1;
                            s.req_offset = 0;
                        }
                    }
                }
                let Some(Some(size)) = tree.sizes.get(s.req_entry).copied() else {
                    break;
                };
                if s.req_offset == 0 {
                    // Records of files passed (of 0 bytes) or of nothing held.
                    while s
                        .held
                        .front()
                        .is_some_and(|r| (r.index as usize) < s.req_entry || r.offset == 0)
                    {
                        s.held.pop_front();
                    }
                    if let Some(record) = s.held.front().copied() {
                        if record.index as usize == s.req_entry {
                            s.held.pop_front();
                            s.checking = Some(Check {
                                record,
                                requested: 0,
                                hashed: 0,
                                hasher: blake3::Hasher::new(),
                            });
                            continue;
                        }
                    }
                }
                let room = (s.credited + u64::from(s.window)).saturating_sub(s.requested);
                let len = (size - s.req_offset).min(u64::from(chunk)).min(room);
                let ends_file = s.req_offset + len == size;
                if len == 0 || (len < data_floor(chunk as usize, s.window) && !ends_file) {
                    break;
                }
                let index = s.req_entry as u32;
                let offset = s.req_offset;
                let len = len as u32;
                s.pending.push_back(Request {
                    index,
                    offset,
                    len,
                    check: false,
                });
                s.req_offset += u64::from(len);
                s.requested += u64::from(len);
                in_flight += u64::from(len);
                requests.push(TransferEvent::TreeNeedChunk {
                    id,
                    index,
                    offset,
                    len,
                });
            }
        }
        // Trees with nothing left to ask for (only empty files, or none).
        let done: Vec<TransferId> = self
            .transfers
            .iter()
            .filter(|(_, t)| matches!(t, Transfer::OutTree(tree) if !tree.relay && matches!(tree.state, TreeOut::Sending(_))))
            .map(|(&id, _)| id)
            .collect();
        for id in done {
            self.maybe_tree_done(id);
        }
        requests
    }

    /// The frames a tree's receiver sends: `TREE_ACCEPT`, `REJECT`,
    /// `CREDIT`, `VERIFIED`, `FAILED`, `TREE_HELD`. `Ok(false)`: not about
    /// a tree this side sends.
    pub(super) fn on_tree_answer(&mut self, now: Instant, frame: &Frame) -> Result<bool, Error> {
        let answered = self.on_tree_answer_inner(frame)?;
        if answered && matches!(frame, Frame::TreeAccept { .. } | Frame::Reject { .. }) {
            self.release_queued_tree(now);
        }
        Ok(answered)
    }

    fn on_tree_answer_inner(&mut self, frame: &Frame) -> Result<bool, Error> {
        let id = match frame {
            Frame::TreeAccept { id, .. } | Frame::TreeHeld { id, .. } => *id,
            Frame::Reject { id, .. }
            | Frame::Credit { id, .. }
            | Frame::Verified { id }
            | Frame::Failed { id, .. } => *id,
            _ => return Ok(false),
        };
        let is_tree_frame = matches!(frame, Frame::TreeAccept { .. } | Frame::TreeHeld { .. });
        if !is_tree_frame && !matches!(self.transfers.get(&id), Some(Transfer::OutTree(_))) {
            return Ok(false);
        }
        let name = frame.name();
        let unexpected =
            |state| -> Error { Violation::UnexpectedFrame { frame: name, state }.into() };
        let Some(transfer) = self.named(name, id, false)? else {
            return Ok(true);
        };
        let Transfer::OutTree(tree) = transfer else {
            return Err(unexpected("for a transfer that is not a folder"));
        };
        match (frame, &mut tree.state) {
            (Frame::TreeAccept { window, .. }, TreeOut::Offered) => {
                if *window == 0 {
                    return Err(Malformed::InvalidValue {
                        frame: "TREE_ACCEPT",
                        field: "window",
                        why: "must be at least 1",
                    }
                    .into());
                }
                tree.state = TreeOut::Sending(Box::new(Sending {
                    window: *window,
                    credited: 0,
                    requested: 0,
                    supplied: 0,
                    req_entry: 0,
                    req_offset: 0,
                    pending: VecDeque::new(),
                    framed: 0,
                    opened: None,
                    hasher: blake3::Hasher::new(),
                    held: std::mem::take(&mut tree.held).into(),
                    checking: None,
                    skipped: 0,
                }));
                self.emit(TransferEvent::Accepted {
                    id,
                    offset: 0,
                    window: *window,
                    prefix_hash: empty_hash(),
                });
                Ok(true)
            }
            (Frame::Reject { code, reason, .. }, TreeOut::Offered) => {
                let outcome = Outcome::Rejected {
                    code: *code,
                    reason: reason.to_string(),
                };
                self.transfers.remove(&id);
                self.outbox.discard_data(id);
                self.end(id, outcome);
                Ok(true)
            }
            (Frame::TreeHeld { records, .. }, TreeOut::Offered) => {
                if !tree.resuming {
                    return Err(unexpected("for a folder offered without RESUME"));
                }
                for record in records {
                    let in_order = tree
                        .held
                        .last()
                        .is_none_or(|last| record.index > last.index);
                    let size = tree.sizes.get(record.index as usize).copied().flatten();
                    match size {
                        Some(size) if in_order && record.offset <= size => tree.held.push(*record),
                        _ => return Err(unexpected(
                            "for a folder, past the manifest, out of order, or past a file's end",
                        )),
                    }
                }
                Ok(true)
            }
            (Frame::Credit { written, .. }, TreeOut::Sending(s)) => {
                if *written < s.credited || *written > s.supplied {
                    return Err(unexpected("going back, or past the bytes sent"));
                }
                s.credited = *written;
                let (confirmed, size) = (*written + s.skipped, tree.total);
                self.emit(TransferEvent::Progress {
                    id,
                    confirmed,
                    size,
                });
                Ok(true)
            }
            (Frame::Credit { written, .. }, TreeOut::DoneSent { credited, skipped }) => {
                if *written < *credited || *written + *skipped > tree.total {
                    return Err(unexpected("going back, or past the bytes sent"));
                }
                *credited = *written;
                let (confirmed, size) = (*written + *skipped, tree.total);
                self.emit(TransferEvent::Progress {
                    id,
                    confirmed,
                    size,
                });
                Ok(true)
            }
            (Frame::Verified { .. }, TreeOut::DoneSent { .. }) => {
                self.transfers.remove(&id);
                self.end(id, Outcome::Verified);
                Ok(true)
            }
            (Frame::Failed { code, reason, .. }, TreeOut::DoneSent { .. }) => {
                let outcome = Outcome::Failed {
                    code: *code,
                    reason: reason.to_string(),
                };
                self.transfers.remove(&id);
                self.end(id, outcome);
                Ok(true)
            }
            _ => Err(unexpected("at this point of the folder's transfer")),
        }
    }
}
