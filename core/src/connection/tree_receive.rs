//! Receiving a tree (`docs/PROTOCOL.md` §6.12): the offer checked before
//! any of the manifest is kept, the manifest checked entry by entry as it
//! arrives (never decoded whole in one go), then the files in manifest
//! order with per-tree flow control. No disk here: the application writes what
//! [`TransferEvent::TreeChunk`] hands it, and confirms it.
//!
//! A resumed tree (§6.12.5): the application lists what it kept of an
//! earlier attempt ([`Connection::accept_tree_resumable`]), and each file
//! listed may then start at the offset held instead of 0.

use super::{Connection, Transfer};
use crate::code::Code;
use crate::error::{Error, Misuse, Violation};
use crate::filename::check_file_name;
use crate::frame::{
    Frame, Hash, HeldFile, ResumeKey, TransferId, DATA_OVERHEAD, HEADER_LEN, HELD_RECORD_LEN,
};
use crate::input::SHARED_BELOW;
use crate::text::Text;
use crate::transfer::TransferEvent;
use crate::tree::{ManifestDecoder, MANIFEST_HEADER_LEN, MAX_MANIFEST_PART};
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::Instant;

/// A tree being received.
#[derive(Debug)]
pub(crate) struct IncomingTree {
    /// Bytes of all files, as offered.
    total_size: u64,
    /// The offer presented a resume key (`RESUME` right before it): only
    /// then may this side list what it holds.
    resumed: bool,
    state: TreeIn,
}

#[derive(Debug)]
enum TreeIn {
    /// Parts of the manifest arrive, each checked as it comes; what is
    /// held grows only with what arrived.
    Manifest(Box<ManifestIn>),
    /// The manifest is whole and checked: waiting for the application's
    /// `accept_tree` or `reject`.
    Ready(Box<Files>),
    /// `TREE_ACCEPT` sent: files arrive.
    Receiving(Box<Files>),
    /// Only while the state is being replaced.
    Ended,
}

/// A manifest while it arrives.
#[derive(Debug)]
struct ManifestIn {
    decoder: ManifestDecoder,
    /// Of the bytes so far: `DONE` must carry the whole manifest's.
    hasher: blake3::Hasher,
}

/// What the receiving side keeps of a checked manifest: each entry's size
/// (`None` for a folder), and where the files have got to.
#[derive(Debug)]
struct Files {
    sizes: Vec<Option<u64>>,
    /// BLAKE3 of the manifest's bytes: `DONE` must carry it.
    hash: Hash,
    /// Entries before this are done with (files finished, folders passed).
    next: usize,
    /// The file whose data arrives: `(index, next offset, size)`.
    current: Option<(usize, u64, u64)>,
    /// Payload bytes of every `DATA` since `TREE_ACCEPT`.
    received: u64,
    /// Confirmed by the application.
    confirmed: u64,
    /// Last `written` sent in a `CREDIT`.
    credited: u64,
    window: u32,
    /// `DONE` arrived and matched: waiting for `finish_receive`.
    done: bool,
    /// `(index, offset)` of each file listed in `TREE_HELD` and not
    /// reached yet: its `TREE_FILE` may start at that offset.
    held: VecDeque<(u32, u64)>,
}

impl Files {
    /// The next file entry at or after `self.next`.
    fn next_file(&self) -> Option<usize> {
        (self.next..self.sizes.len()).find(|&i| self.sizes[i].is_some())
    }

    /// The offset listed in `TREE_HELD` for file `index`, if any; records
    /// of earlier files are dropped (files arrive in manifest order).
    fn held_offset(&mut self, index: usize) -> Option<u64> {
        while self
            .held
            .front()
            .is_some_and(|&(i, _)| (i as usize) < index)
        {
            self.held.pop_front();
        }
        match self.held.front() {
            Some(&(i, offset)) if i as usize == index => Some(offset),
            _ => None,
        }
    }
}

fn unexpected(frame: &'static str, state: &'static str) -> Error {
    Violation::UnexpectedFrame { frame, state }.into()
}

impl Connection {
    /// Whether `id` names a tree this side receives.
    pub(crate) fn is_incoming_tree(&self, id: TransferId) -> bool {
        matches!(self.transfers.get(&id), Some(Transfer::Tree(_)))
    }

    /// `TREE_OFFER`: refused from the offer alone when it can be (nothing
    /// of the manifest is buffered then), else the manifest is expected.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_tree_offer(
        &mut self,
        now: Instant,
        id: TransferId,
        total_size: u64,
        manifest_len: u32,
        name: Text,
        peer: Text,
        resume: Option<(TransferId, ResumeKey)>,
    ) -> Result<(), Error> {
        // A side that only sends trees knows their frames but takes none.
        let Some(limits) = self.config.trees else {
            return Err(unexpected(
                "TREE_OFFER",
                "to a side that did not announce trees",
            ));
        };
        let fresh = self.is_peer_id(id) && self.highest_peer_id.is_none_or(|h| id > h);
        if !fresh {
            return Err(Violation::BadTransferId { id }.into());
        }
        self.highest_peer_id = Some(id);
        let decoder = ManifestDecoder::new(manifest_len as usize, &limits);
        let refusal =
            if let Err(e) = check_file_name(&name) {
                Some((Code::BAD_FILE_NAME, e.to_string()))
            } else if (manifest_len as usize) < MANIFEST_HEADER_LEN {
                Some((
                    Code::BAD_MANIFEST,
                    format!("a manifest of {manifest_len} bytes is shorter than its header"),
                ))
            } else if let Err(e) = &decoder {
                Some((e.code(), e.to_string()))
            } else if total_size > limits.max_total_bytes {
                Some((
                    Code::FILE_TOO_LARGE,
                    format!(
                        "the files add up to {total_size} bytes; at most {} are allowed",
                        limits.max_total_bytes
                    ),
                ))
            } else if self.transfers.len() >= self.config.max_transfers {
                Some((
                    Code::TOO_MANY_TRANSFERS,
                    format!("at most {} transfers at once", self.config.max_transfers),
                ))
            } else if self.transfers.values().any(
                |t| matches!(t, Transfer::Tree(tree) if matches!(tree.state, TreeIn::Manifest(_))),
            ) {
                // What a connection makes this side hold for manifests: one at
                // a time, at most `max_manifest_bytes`.
                Some((
                    Code::TOO_MANY_TRANSFERS,
                    "one folder's manifest at a time: offer it again once the first is answered"
                        .to_string(),
                ))
            } else {
                None
            };
        if let Some((code, reason)) = refusal {
            self.queue(
                &Frame::Reject {
                    id,
                    code,
                    reason: super::truncated(&reason),
                },
                now,
            );
            return Ok(());
        }
        // Refused just above otherwise.
        let Ok(decoder) = decoder else {
            return Ok(());
        };
        self.transfers.insert(
            id,
            Transfer::Tree(Box::new(IncomingTree {
                total_size,
                resumed: resume.is_some_and(|(of, _)| of == id),
                state: TreeIn::Manifest(Box::new(ManifestIn {
                    decoder,
                    hasher: blake3::Hasher::new(),
                })),
            })),
        );
        let resume = resume.filter(|&(of, _)| of == id).map(|(_, key)| key);
        self.emit(TransferEvent::TreeOffered {
            id,
            name,
            total_size,
            manifest_len,
            peer,
            resume,
        });
        Ok(())
    }

    /// `TREE_MANIFEST`: the next part; with the last one, the manifest is
    /// checked and handed to the application, or refused.
    pub(super) fn on_tree_manifest(
        &mut self,
        now: Instant,
        id: TransferId,
        part: Bytes,
    ) -> Result<(), Error> {
        const NAME: &str = "TREE_MANIFEST";
        let window = self.config.window;
        let Some(transfer) = self.named(NAME, id, true)? else {
            return Ok(());
        };
        let Transfer::Tree(tree) = transfer else {
            return Err(unexpected(NAME, "for a transfer that is not a folder"));
        };
        let total_size = tree.total_size;
        let TreeIn::Manifest(arriving) = &mut tree.state else {
            return Err(unexpected(NAME, "after the whole manifest"));
        };
        let decoder = &mut arriving.decoder;
        if part.is_empty()
            || part.len() > MAX_MANIFEST_PART
            || decoder.fed() + part.len() > decoder.announced_len()
        {
            return Err(unexpected(
                NAME,
                "empty, over 65,536 bytes, or past the manifest's length",
            ));
        }
        arriving.hasher.update(&part);
        let checked = match decoder.feed(&part) {
            Ok(()) if !decoder.is_complete() => return Ok(()),
            Ok(()) => {
                let TreeIn::Manifest(arriving) = std::mem::replace(&mut tree.state, TreeIn::Ended)
                else {
                    unreachable!("matched just above");
                };
                let hash = *arriving.hasher.finalize().as_bytes();
                arriving
                    .decoder
                    .finish()
                    .map(|manifest| (manifest, hash))
                    .map_err(|e| (e.code(), e.to_string()))
                    .and_then(|(manifest, hash)| {
                        if manifest.total_size() == total_size {
                            Ok((manifest, hash))
                        } else {
                            Err((
                                Code::BAD_MANIFEST,
                                format!(
                                    "the manifest's files add up to {} bytes, the offer said {total_size}",
                                    manifest.total_size()
                                ),
                            ))
                        }
                    })
            }
            Err(e) => Err((e.code(), e.to_string())),
        };
        let (manifest, hash) = match checked {
            Ok(checked) => checked,
            Err((code, reason)) => {
                self.transfers.remove(&id);
                self.queue(
                    &Frame::Reject {
                        id,
                        code,
                        reason: super::truncated(&reason),
                    },
                    now,
                );
                self.end(id, crate::transfer::Outcome::Rejected { code, reason });
                return Ok(());
            }
        };
        let files = Files {
            sizes: manifest
                .entries()
                .iter()
                .map(|e| (!e.is_folder()).then(|| e.size()))
                .collect(),
            hash,
            next: 0,
            current: None,
            received: 0,
            confirmed: 0,
            credited: 0,
            window,
            done: false,
            held: VecDeque::new(),
        };
        tree.state = TreeIn::Ready(Box::new(files));
        self.emit(TransferEvent::TreeManifest { id, manifest });
        Ok(())
    }

    /// The frames of a tree after its manifest: `TREE_FILE`, `DATA`,
    /// `TREE_FILE_DONE`, `DONE`. `Ok(false)`: `frame` is not about a tree
    /// this side receives (handled as before).
    pub(super) fn on_tree_frame(&mut self, now: Instant, frame: &Frame) -> Result<bool, Error> {
        let id = match frame {
            Frame::TreeFile { id, .. }
            | Frame::TreeFileDone { id, .. }
            | Frame::Data { id, .. }
            | Frame::Done { id, .. } => *id,
            _ => return Ok(false),
        };
        let is_tree_frame = matches!(frame, Frame::TreeFile { .. } | Frame::TreeFileDone { .. });
        if !is_tree_frame && !self.is_incoming_tree(id) {
            return Ok(false);
        }
        let name = frame.name();
        let max_chunk = self.settings.chunk_size as usize;
        let Some(transfer) = self.named(name, id, true)? else {
            return Ok(true);
        };
        let Transfer::Tree(tree) = transfer else {
            return Err(unexpected(name, "for a transfer that is not a folder"));
        };
        let files = match &mut tree.state {
            TreeIn::Receiving(files) if !files.done => files,
            TreeIn::Receiving(_) => return Err(unexpected(name, "after DONE")),
            _ => return Err(unexpected(name, "before TREE_ACCEPT")),
        };
        match frame {
            Frame::TreeFile { index, offset, .. } => {
                let index = *index as usize;
                let from_held = *offset > 0 && files.held_offset(index) == Some(*offset);
                if files.current.is_some()
                    || files.next_file() != Some(index)
                    || (*offset != 0 && !from_held)
                {
                    return Err(unexpected(
                        name,
                        "out of manifest order, for a folder, inside another file, or not from 0 or the offset held",
                    ));
                }
                // Checked just above: `index` is a file.
                let size = files.sizes[index].unwrap_or(0);
                files.current = Some((index, *offset, size));
                self.emit(TransferEvent::TreeFileStarted {
                    id,
                    index: index as u32,
                    offset: *offset,
                });
                Ok(true)
            }
            Frame::Data { offset, data, .. } => {
                let Some((index, expected, size)) = files.current.as_mut() else {
                    return Err(unexpected(name, "outside a file of the folder"));
                };
                let len = data.len();
                let end = offset.saturating_add(len as u64);
                if *offset != *expected || len == 0 || len > max_chunk || end > *size {
                    return Err(Violation::DataOutOfOrder {
                        id,
                        offset: *offset,
                        len,
                        expected: *expected,
                        size: *size,
                    }
                    .into());
                }
                let received = files.received + len as u64;
                let limit = files.credited.saturating_add(u64::from(files.window));
                if received > limit {
                    return Err(Violation::FlowControl {
                        id,
                        end: received,
                        limit,
                    }
                    .into());
                }
                let min = super::data_floor(max_chunk, files.window);
                if (len as u64) < min && end != *size {
                    return Err(Violation::DataTooSmall { id, len, min }.into());
                }
                *expected = end;
                files.received = received;
                let index = *index as u32;
                let data = if HEADER_LEN + DATA_OVERHEAD + len < SHARED_BELOW {
                    Bytes::copy_from_slice(data)
                } else {
                    data.clone()
                };
                self.emit(TransferEvent::TreeChunk {
                    id,
                    index,
                    offset: *offset,
                    data,
                });
                Ok(true)
            }
            Frame::TreeFileDone { index, hash, .. } => {
                match files.current {
                    Some((current, expected, size))
                        if current == *index as usize && expected == size =>
                    {
                        files.current = None;
                        files.next = current + 1;
                    }
                    _ => {
                        return Err(unexpected(
                            name,
                            "for a file not being sent, or before its last byte",
                        ))
                    }
                }
                self.emit(TransferEvent::TreeFileDone {
                    id,
                    index: *index,
                    hash: *hash,
                });
                Ok(true)
            }
            Frame::Done { hash, .. } => {
                if files.current.is_some() || files.next_file().is_some() {
                    return Err(unexpected(name, "before every file of the folder"));
                }
                if files.hash != *hash {
                    self.transfers.remove(&id);
                    let reason =
                        "DONE's hash is not the BLAKE3 of the manifest received".to_string();
                    self.queue(
                        &Frame::Failed {
                            id,
                            code: Code::HASH_MISMATCH,
                            reason: super::truncated(&reason),
                        },
                        now,
                    );
                    self.end(
                        id,
                        crate::transfer::Outcome::Failed {
                            code: Code::HASH_MISMATCH,
                            reason,
                        },
                    );
                    return Ok(true);
                }
                files.done = true;
                let hash = *hash;
                self.emit(TransferEvent::Received { id, hash });
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Takes a tree whose manifest was handed over in
    /// [`TransferEvent::TreeManifest`]: sends `TREE_ACCEPT` with this
    /// side's window. Its files then arrive as
    /// [`TransferEvent::TreeChunk`] and [`TransferEvent::TreeFileDone`],
    /// and the whole as [`TransferEvent::Received`].
    pub fn accept_tree(&mut self, now: Instant, id: TransferId) -> Result<(), Misuse> {
        self.accept_tree_with(now, id, None, &[], None)
    }

    /// Hub: accepts a tree on behalf of the recipient it is relayed to,
    /// with that recipient's window (if smaller than this side's), key and
    /// records.
    pub(crate) fn accept_tree_relayed(
        &mut self,
        now: Instant,
        id: TransferId,
        window: u32,
        key: Option<ResumeKey>,
        held: &[HeldFile],
    ) -> Result<(), Misuse> {
        self.accept_tree_with(now, id, key, held, Some(window))
    }

    /// Like [`accept_tree`](Self::accept_tree), and issues `key` (from a
    /// [`SessionSecret`](crate::frame::SessionSecret)) with which the
    /// sender can resume the tree if its transfer is cut; `held` lists, in
    /// increasing `index` order, each file this side kept from an earlier
    /// attempt (the whole file once verified, else the prefix it holds,
    /// with the BLAKE3 of those bytes). `held` must be empty unless the
    /// offer presented a key ([`TransferEvent::TreeOffered`]'s `resume`)
    /// that names what this side kept. Sends `RESUME_KEY`, the records in
    /// `TREE_HELD` frames, then `TREE_ACCEPT`; a file listed then starts at
    /// its `offset` (whole: no [`TransferEvent::TreeChunk`] at all) or, if
    /// the sender's bytes differ, at 0, and what was held of it must be
    /// thrown away.
    pub fn accept_tree_resumable(
        &mut self,
        now: Instant,
        id: TransferId,
        key: ResumeKey,
        held: &[HeldFile],
    ) -> Result<(), Misuse> {
        self.accept_tree_with(now, id, Some(key), held, None)
    }

    fn accept_tree_with(
        &mut self,
        now: Instant,
        id: TransferId,
        key: Option<ResumeKey>,
        held: &[HeldFile],
        window: Option<u32>,
    ) -> Result<(), Misuse> {
        self.ensure_open()?;
        let max_frame = self.settings.max_frame as usize;
        let Some(Transfer::Tree(tree)) = self.transfers.get_mut(&id) else {
            return Err(Misuse::NoSuchTransfer(id));
        };
        let TreeIn::Ready(files) = &mut tree.state else {
            return Err(Misuse::NoSuchTransfer(id));
        };
        if !held.is_empty() && !tree.resumed {
            return Err(Misuse::InvalidArgument(
                "files listed as held for an offer that presented no resume key",
            ));
        }
        let mut last = None;
        for record in held {
            let in_order = last.is_none_or(|last| record.index > last);
            match files.sizes.get(record.index as usize).copied().flatten() {
                Some(size) if in_order && record.offset <= size => last = Some(record.index),
                _ => return Err(Misuse::InvalidArgument(
                    "a held file that is a folder, past the manifest, out of order or past its end",
                )),
            }
        }
        files.held = held.iter().map(|r| (r.index, r.offset)).collect();
        if let Some(window) = window {
            files.window = files.window.min(window).max(1);
        }
        let window = files.window;
        let TreeIn::Ready(files) = std::mem::replace(&mut tree.state, TreeIn::Ended) else {
            unreachable!("matched just above");
        };
        tree.state = TreeIn::Receiving(files);
        // All in the data lane, in this order: none may overtake the
        // others, and what a large tree lists (44 bytes a file, within what
        // its manifest is counted at) is paced like file data.
        if let Some(key) = key {
            self.outbox
                .push_after_data(id, &Frame::ResumeKey { id, key });
        }
        // The frame's body is the id (4 bytes) and whole records.
        let per_frame = (max_frame.saturating_sub(4) / HELD_RECORD_LEN).max(1);
        for records in held.chunks(per_frame) {
            let records = records.to_vec();
            self.outbox
                .push_after_data(id, &Frame::TreeHeld { id, records });
        }
        self.outbox
            .push_after_data(id, &Frame::TreeAccept { id, window });
        self.last_send = now;
        Ok(())
    }

    /// Heap bytes of tree manifests this connection holds while they
    /// arrive ([`ManifestDecoder::held_bytes`]): at most one manifest at a
    /// time, within [`decoded_bytes_bound`](crate::tree::decoded_bytes_bound)
    /// of its announced length, growing only with the parts received, and
    /// handed to the application once it is whole (or freed when the tree
    /// is refused).
    pub fn manifest_bytes_held(&self) -> usize {
        self.transfers
            .values()
            .map(|t| match t {
                Transfer::Tree(tree) => match &tree.state {
                    TreeIn::Manifest(arriving) => arriving.decoder.held_bytes(),
                    _ => 0,
                },
                _ => 0,
            })
            .sum()
    }

    /// A tree the application may still refuse: offered, its manifest
    /// arriving or whole, not yet accepted.
    pub(super) fn is_unanswered_tree(&self, id: TransferId) -> bool {
        matches!(
            self.transfers.get(&id),
            Some(Transfer::Tree(tree))
                if matches!(tree.state, TreeIn::Manifest(_) | TreeIn::Ready(_))
        )
    }

    /// `confirm_written` for a tree: `upto` counts the payload bytes of
    /// every `TreeChunk` stored so far, all files together.
    pub(super) fn confirm_tree_written(
        &mut self,
        now: Instant,
        id: TransferId,
        upto: u64,
    ) -> Result<(), Misuse> {
        let Some(Transfer::Tree(tree)) = self.transfers.get_mut(&id) else {
            return Err(Misuse::NoSuchTransfer(id));
        };
        let total = tree.total_size;
        let TreeIn::Receiving(files) = &mut tree.state else {
            return Err(Misuse::NoSuchTransfer(id));
        };
        if upto > files.received {
            return Err(Misuse::OverConfirmed {
                id,
                confirmed: upto,
                delivered: files.received,
            });
        }
        if upto <= files.confirmed {
            return Ok(());
        }
        files.confirmed = upto;
        let step = u64::from(files.window / 4).max(1);
        if upto - files.credited >= step || upto == total {
            files.credited = upto;
            self.queue(&Frame::Credit { id, written: upto }, now);
        }
        Ok(())
    }

    /// `finish_receive` for a tree: whether it was DONE and waits for it;
    /// the `CREDIT` to send first if the sender has not seen every byte
    /// confirmed.
    pub(super) fn finish_tree(&mut self, id: TransferId) -> Option<Option<u64>> {
        match self.transfers.get(&id) {
            Some(Transfer::Tree(tree)) => match &tree.state {
                TreeIn::Receiving(files) if files.done => {
                    Some((files.credited < files.received).then_some(files.received))
                }
                _ => None,
            },
            _ => None,
        }
    }
}
