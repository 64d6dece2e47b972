//! File transfers: what the application is told, and the per-transfer state
//! the connection keeps.

use crate::code::Code;
use crate::frame::{Hash, ResumeKey, TransferId};
use crate::text::Text;
use bytes::Bytes;
use std::collections::VecDeque;

/// BLAKE3 of the empty input: the `prefix_hash` of an `ACCEPT` at offset 0.
pub fn empty_hash() -> Hash {
    *blake3::hash(&[]).as_bytes()
}

/// Something about a file transfer that the application must see or act on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransferEvent {
    /// The peer offers a file (its name already passed
    /// [`check_file_name`](crate::filename::check_file_name)). Answer with
    /// `accept` or `accept_resumable`, or `reject`.
    ///
    /// Resume (accept at an offset above 0) only the partial data kept under
    /// the key in `resume`, and only if that key is the one this side issued
    /// for it: an offer without the right key is a new, separate transfer,
    /// and must learn nothing of another's partial data
    /// (`docs/PROTOCOL.md` §6.10.9).
    Offered {
        /// The transfer.
        id: TransferId,
        /// Safe file name.
        name: Text,
        /// Size in bytes.
        size: u64,
        /// To a client: the sending user, empty for the server. To a server:
        /// the recipient, empty for the server's inbox.
        peer: Text,
        /// The key the sender presented with `RESUME`, claiming the partial
        /// data this side keeps under it; `None` for a plain offer.
        resume: Option<ResumeKey>,
    },
    /// The receiver of our offer issued a key to resume it with, should it
    /// be cut (it comes before [`TransferEvent::Accepted`]). Keep it (on
    /// disk, to survive a crash) and pass it to
    /// [`offer_file_resuming`](crate::Connection::offer_file_resuming) when
    /// offering the same file to the same receiver again; forget it once
    /// the transfer ends verified, failed or rejected.
    ResumeKey {
        /// Our offer.
        id: TransferId,
        /// The secret.
        key: ResumeKey,
    },
    /// Our offer was accepted; data will flow from `offset` (or from 0 if
    /// the receiver's prefix turns out not to match our file).
    Accepted {
        /// The transfer.
        id: TransferId,
        /// Where the receiver wants to resume.
        offset: u64,
        /// The window the receiver granted.
        window: u32,
        /// BLAKE3 of the receiver's first `offset` bytes.
        prefix_hash: Hash,
    },
    /// Read `len` bytes at `offset` of the file behind `id` (the source file
    /// when sending, the partial file when resuming a receive) and hand them
    /// to `supply_chunk`. Requests are answered in the order they were made.
    NeedChunk {
        /// The transfer.
        id: TransferId,
        /// Where to read.
        offset: u64,
        /// How much (exactly).
        len: u32,
    },
    /// Read `len` bytes at `offset` of file `index` of the tree behind `id`
    /// (the manifest's entry `index`) and hand them to
    /// [`supply_tree_chunk`](crate::Connection::supply_tree_chunk).
    /// Requests come in manifest order and are answered in the order they
    /// were made.
    TreeNeedChunk {
        /// The transfer.
        id: TransferId,
        /// The file's index among the manifest's entries.
        index: u32,
        /// Where to read in that file.
        offset: u64,
        /// How much (exactly).
        len: u32,
    },
    /// File bytes arrived: write them at `offset`, then `confirm_written`.
    Chunk {
        /// The transfer.
        id: TransferId,
        /// Where they go.
        offset: u64,
        /// The bytes, sharing the receive buffer.
        data: Bytes,
    },
    /// Sending a resumed tree: its receiver already holds the first
    /// `offset` bytes of file `index` (the whole file if `offset` is its
    /// size), as the hash of this side's own first `offset` bytes showed;
    /// they are not sent again. A file the receiver listed whose bytes
    /// differ here goes whole, with no event.
    TreeFileHeld {
        /// The transfer.
        id: TransferId,
        /// The file's index among the manifest's entries.
        index: u32,
        /// Bytes of it the receiver holds.
        offset: u64,
    },
    /// A file of a tree being received starts (`TREE_FILE`): its bytes
    /// follow from `offset` (0, or the length listed as held on a resume;
    /// at its size, the file is held whole and only
    /// [`TreeFileDone`](TransferEvent::TreeFileDone) follows). Writers
    /// that take the offset from each [`TreeChunk`](TransferEvent::TreeChunk)
    /// can ignore it.
    TreeFileStarted {
        /// The transfer.
        id: TransferId,
        /// The file's index among the manifest's entries.
        index: u32,
        /// Where its bytes start.
        offset: u64,
    },
    /// The peer offers a tree (a folder sent whole) to this side: its top
    /// name passed the file-name check, its manifest's announced length and
    /// `total_size` the connection's [`TreeLimits`](crate::tree::TreeLimits).
    /// The manifest follows ([`TransferEvent::TreeManifest`]). Refuse now
    /// with `reject` what the application can tell from this (a quota):
    /// the rest of the manifest is then not kept.
    TreeOffered {
        /// The transfer.
        id: TransferId,
        /// Safe top-level name.
        name: Text,
        /// Bytes of all its files.
        total_size: u64,
        /// Bytes of the manifest to come.
        manifest_len: u32,
        /// As in [`TransferEvent::Offered`].
        peer: Text,
        /// As in [`TransferEvent::Offered`].
        resume: Option<ResumeKey>,
    },
    /// The whole manifest of an offered tree arrived and passed every rule
    /// and limit (`docs/PROTOCOL.md` §6.12.2). Answer with
    /// [`accept_tree`](crate::Connection::accept_tree) once ready to write
    /// it (its folders made), or `reject`.
    TreeManifest {
        /// The transfer.
        id: TransferId,
        /// The checked manifest.
        manifest: crate::tree::Manifest,
    },
    /// Bytes of file `index` of a tree arrived, at `offset` within that
    /// file (files come one at a time, in manifest order, each from its
    /// first byte to its last). Write them, then `confirm_written` with
    /// the total of the tree's bytes written so far, all files together.
    TreeChunk {
        /// The transfer.
        id: TransferId,
        /// The file's index among the manifest's entries.
        index: u32,
        /// Where they go in that file.
        offset: u64,
        /// The bytes.
        data: Bytes,
    },
    /// File `index` of a tree is complete (every byte of it was handed
    /// over); `hash` is the sender's BLAKE3 of it, for the application to
    /// compare with what it wrote. A mismatch is reported once the whole
    /// tree is [`Received`](TransferEvent::Received), with
    /// `finish_receive(Err(HASH_MISMATCH, ...))`.
    TreeFileDone {
        /// The transfer.
        id: TransferId,
        /// The file's index among the manifest's entries.
        index: u32,
        /// The sender's BLAKE3 of the whole file.
        hash: Hash,
    },
    /// The sender did not have the same first bytes as our partial file and
    /// starts again at offset 0: throw the partial data away.
    Restarted {
        /// The transfer.
        id: TransferId,
    },
    /// The receiver confirmed it holds bytes `0..confirmed` (sending side).
    Progress {
        /// The transfer.
        id: TransferId,
        /// Bytes confirmed.
        confirmed: u64,
        /// Size of the file.
        size: u64,
    },
    /// Every byte arrived and the hash matched: store the file under its
    /// final name, then call `finish_receive`. (On a relaying hub the hash
    /// is not checked here but end to end, and this carries the sender's.)
    /// For a tree: every file arrived and `hash` is the manifest's; store
    /// the tree under its final name if every file's hash matched, then
    /// call `finish_receive` (`Err` with [`Code::HASH_MISMATCH`] naming
    /// the first file that did not).
    Received {
        /// The transfer.
        id: TransferId,
        /// The sender's BLAKE3 of the whole file.
        hash: Hash,
    },
    /// The transfer is over; forget its state (and, unless it was
    /// [`Outcome::Verified`], keep a partial file only for a later resume).
    Ended {
        /// The transfer.
        id: TransferId,
        /// How it ended.
        outcome: Outcome,
    },
}

/// How a transfer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The receiver stored the file and its hash matched.
    Verified,
    /// The receiver declined the offer.
    Rejected {
        /// Why.
        code: Code,
        /// Detail.
        reason: String,
    },
    /// The receiver could not store a correct file (hash mismatch, disk).
    Failed {
        /// Why.
        code: Code,
        /// Detail.
        reason: String,
    },
    /// One side cancelled, or the connection closed.
    Cancelled {
        /// Why.
        code: Code,
        /// Detail.
        reason: String,
        /// Whether the peer (not this side) ended it.
        by_peer: bool,
    },
}

/// Chunk requests made to the application and not yet answered.
#[derive(Debug, Default)]
pub(crate) struct Reads {
    /// Offset of the next chunk the application will supply.
    pub next: u64,
    /// Offset up to which chunks have been requested.
    pub requested: u64,
    /// Lengths of the outstanding requests, oldest first.
    pub pending: VecDeque<u32>,
}

impl Reads {
    pub(crate) fn starting_at(offset: u64) -> Self {
        Reads {
            next: offset,
            requested: offset,
            pending: VecDeque::new(),
        }
    }

    /// Records a request for `len` bytes at `self.requested`; returns its offset.
    pub(crate) fn request(&mut self, len: u32) -> u64 {
        let offset = self.requested;
        self.requested += u64::from(len);
        self.pending.push_back(len);
        offset
    }

    /// Whether `(offset, len)` answers the oldest request; if so, consumes it.
    pub(crate) fn answer(&mut self, offset: u64, len: usize) -> bool {
        match self.pending.front() {
            Some(&want) if offset == self.next && len == want as usize => {
                self.pending.pop_front();
                self.next += u64::from(want);
                true
            }
            _ => false,
        }
    }

    pub(crate) fn unsupplied(&self) -> u64 {
        self.requested - self.next
    }
}

/// A file we send.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub size: u64,
    /// Relayed by a hub: data is pushed in, not read through `NeedChunk`.
    pub relay: bool,
    pub state: OutState,
    pub hasher: blake3::Hasher,
}

#[derive(Debug)]
pub(crate) enum OutState {
    Offered,
    /// Hashing our first `target` bytes to compare with the receiver's.
    VerifyingPrefix {
        target: u64,
        theirs: Hash,
        window: u32,
        reads: Reads,
    },
    Sending {
        confirmed: u64,
        window: u32,
        reads: Reads,
    },
    /// `DONE` queued; waiting for `VERIFIED` or `FAILED`.
    DoneSent {
        confirmed: u64,
    },
}

/// A file we receive.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub size: u64,
    /// `None` on a relaying hub, which checks nothing itself.
    pub hasher: Option<blake3::Hasher>,
    pub state: InState,
    /// The key to send in `RESUME_KEY` just before our `ACCEPT` (which may
    /// wait for the prefix to be hashed).
    pub issue_key: Option<ResumeKey>,
}

#[derive(Debug)]
pub(crate) enum InState {
    Offered,
    /// Hashing our partial file's first `target` bytes before accepting.
    HashingPrefix {
        target: u64,
        reads: Reads,
    },
    Receiving {
        /// Offset accepted at; data may also restart at 0.
        accepted: u64,
        /// Any data seen since accepting.
        started: bool,
        /// Next offset expected.
        expected: u64,
        /// Confirmed by the application.
        confirmed: u64,
        /// Last confirmed offset sent in a `CREDIT` (or the accept offset).
        credited: u64,
        window: u32,
        /// `DONE` arrived and matched; waiting for the application to store
        /// the file (confirmations still count until then).
        done: bool,
    },
}

#[derive(Debug)]
pub(crate) enum Transfer {
    Outgoing(Outgoing),
    Incoming(Incoming),
    /// A tree this side receives (`docs/PROTOCOL.md` §6.12).
    Tree(Box<crate::connection::tree_receive::IncomingTree>),
    /// A tree this side sends.
    OutTree(Box<crate::connection::tree_send::OutgoingTree>),
}
