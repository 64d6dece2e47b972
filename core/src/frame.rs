//! Frames: the units of the wire protocol, and their codec.
//!
//! Every frame is a 5-byte header — type (`u8`) and body length (`u32`,
//! big-endian) — followed by the body. See `docs/PROTOCOL.md` for the field
//! layout of each type. Decoding is incremental ([`decode`]): it returns
//! `Ok(None)` and consumes nothing until a whole frame has arrived, refuses a
//! declared length over the limit from the header alone, and hands payloads
//! out as [`Bytes`] slices of the input with no copy.

use crate::code::Code;
use crate::error::{DecodeError, LimitExceeded, Malformed, Misuse};
use crate::text::Text;
use alloc::vec::Vec;
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The eight bytes each side sends before its first frame: `\x89FERRY\r\n`.
///
/// `0x89` never starts UTF-8 text, so a plain-text peer is told apart at the
/// first byte; the CR LF pair catches channels that rewrite line endings.
pub const PREAMBLE: [u8; 8] = *b"\x89FERRY\r\n";

/// Length of a frame header: type byte plus 32-bit body length.
pub const HEADER_LEN: usize = 5;

/// The protocol version this crate speaks.
pub const VERSION: u16 = 1;

/// Bytes of a `DATA` body before the payload: transfer id and offset.
pub const DATA_OVERHEAD: usize = 12;

/// The smallest `DATA` payload a receiver takes, unless the frame ends the
/// file, or the receiver's chunk size or granted window is smaller still
/// (`docs/PROTOCOL.md` §6.10.4). Every frame costs the receiver far more
/// than its bytes (a queue entry, a header, a system call): a floor on the
/// payload keeps a window's worth of frames within a small multiple of the
/// window, where 1-byte frames made 4 MiB of window cost 470 MiB.
pub const MIN_DATA: u32 = 1024;

/// Identifies one file transfer on one connection.
///
/// The lowest bit says who offered it: 0 for the client, 1 for the server, so
/// both sides allocate ids without colliding.
pub type TransferId = u32;

/// A BLAKE3 hash.
pub type Hash = [u8; 32];

/// Frame type bytes. Types `0x80..=0xFF` are extensions that a receiver
/// skips when it does not know them; an unknown type below `0x80` is fatal.
pub mod frame_type {
    #![allow(missing_docs)]
    pub const HELLO: u8 = 0x01;
    pub const WELCOME: u8 = 0x02;
    pub const REFUSE: u8 = 0x03;
    pub const PING: u8 = 0x04;
    pub const PONG: u8 = 0x05;
    pub const BYE: u8 = 0x06;
    pub const ERROR: u8 = 0x07;
    pub const SAY: u8 = 0x10;
    pub const MESSAGE: u8 = 0x11;
    pub const JOINED: u8 = 0x12;
    pub const LEFT: u8 = 0x13;
    pub const WHO: u8 = 0x14;
    pub const MEMBERS: u8 = 0x15;
    pub const DIRECT_TO: u8 = 0x16;
    pub const DIRECT_FROM: u8 = 0x17;
    pub const BOUNCE: u8 = 0x18;
    pub const OFFER: u8 = 0x20;
    pub const ACCEPT: u8 = 0x21;
    pub const REJECT: u8 = 0x22;
    pub const DATA: u8 = 0x23;
    pub const CREDIT: u8 = 0x24;
    pub const DONE: u8 = 0x25;
    pub const VERIFIED: u8 = 0x26;
    pub const FAILED: u8 = 0x27;
    pub const CANCEL: u8 = 0x28;
    /// Trees (`docs/PROTOCOL.md` §6.12): the sender offers a folder sent whole.
    pub const TREE_OFFER: u8 = 0x29;
    /// Trees: a part of the offered tree's manifest.
    pub const TREE_MANIFEST: u8 = 0x2A;
    /// Trees: what the receiver of a resumed tree already holds.
    pub const TREE_HELD: u8 = 0x2B;
    /// Trees: the receiver takes the tree.
    pub const TREE_ACCEPT: u8 = 0x2C;
    /// Trees: the next file's data follows, from an offset.
    pub const TREE_FILE: u8 = 0x2D;
    /// Trees: that file is complete; here is its hash.
    pub const TREE_FILE_DONE: u8 = 0x2E;
    /// First extension type: from here up, unknown types are skipped.
    pub const FIRST_EXTENSION: u8 = 0x80;
    /// Extension: the transfer receiver hands the sender a resume key.
    pub const RESUME_KEY: u8 = 0x80;
    /// Extension: the transfer sender presents a resume key with an offer.
    pub const RESUME: u8 = 0x81;
    /// Extension: the server hands a client the secret of its session.
    pub const SESSION: u8 = 0x82;
    /// Extension: a reconnecting client presents an earlier session's secret.
    pub const RECLAIM: u8 = 0x83;
    /// Extension: the optional features this side takes (trees: bit 0).
    pub const FEATURES: u8 = 0x84;
    /// Extension: the server replays a message said in the room before the
    /// client joined.
    pub const HISTORY: u8 = 0x85;

    /// Whether version 1 defines this type: a critical type it knows, or
    /// one of the extensions it defines (`RESUME_KEY`, `RESUME`, `SESSION`,
    /// `RECLAIM`, `FEATURES`, `HISTORY`).
    ///
    /// The tree frames (`TREE_OFFER` … `TREE_FILE_DONE`) are known to the
    /// codec; a [`Connection`](crate::Connection) that did not announce
    /// trees in `FEATURES` still answers them with `UNKNOWN_FRAME_TYPE`.
    pub const fn is_known(t: u8) -> bool {
        matches!(
            t,
            0x01..=0x07 | 0x10..=0x18 | 0x20..=0x2E | RESUME_KEY..=FEATURES | HISTORY
        )
    }

    /// Whether `t` is one of the tree frames, `TREE_OFFER` … `TREE_FILE_DONE`.
    pub const fn is_tree(t: u8) -> bool {
        matches!(t, TREE_OFFER..=TREE_FILE_DONE)
    }
}

/// The bits of `FEATURES` (`docs/PROTOCOL.md` §4.37). Unknown bits are
/// ignored by the receiver, so a later feature takes the next bit.
pub mod features {
    /// "I take trees": the peer may offer this side a folder with
    /// `TREE_OFFER` (`docs/PROTOCOL.md` §6.12).
    pub const TREES: u32 = 1 << 0;
}

/// Bytes of one `TREE_HELD` record: `index` (`u32`), `offset` (`u64`) and
/// `prefix_hash` (32 bytes).
pub const HELD_RECORD_LEN: usize = 44;

/// One file of a resumed tree that its receiver holds (a `TREE_HELD`
/// record, `docs/PROTOCOL.md` §6.12.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HeldFile {
    /// The file's index among the manifest's entries.
    pub index: u32,
    /// Bytes of it the receiver holds: the file's size if it was verified,
    /// else the length of the prefix it keeps.
    pub offset: u64,
    /// BLAKE3 of those `offset` bytes.
    pub prefix_hash: Hash,
}

pub use crate::secret::{ResumeKey, SessionSecret};

/// What a server tells a client about its limits in `WELCOME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Settings {
    /// Largest frame body the server accepts, in bytes.
    pub max_frame: u32,
    /// Largest chat message text, in bytes of UTF-8.
    pub max_message: u32,
    /// Largest `DATA` payload the server sends and wants to receive.
    pub chunk_size: u32,
    /// Flow-control window the server grants per transfer, in bytes.
    pub window: u32,
    /// The server closes a connection silent for this long; clients ping
    /// well before it. Milliseconds.
    pub idle_timeout_ms: u32,
}

/// One protocol frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame {
    /// Client → server, first frame: who is joining where.
    Hello {
        /// Protocol versions the client speaks, in order of preference.
        versions: Vec<u16>,
        /// Requested user name.
        name: Text,
        /// Room to join.
        room: Text,
        /// Authentication token; empty when the client has none.
        token: Bytes,
    },
    /// Server → client: the handshake succeeded.
    Welcome {
        /// The version chosen from the client's list.
        version: u16,
        /// The name the client got (the server may normalise it).
        name: Text,
        /// The room joined.
        room: Text,
        /// The server's limits.
        settings: Settings,
    },
    /// Server → client: the handshake failed; the server closes after it.
    Refuse {
        /// Why.
        code: Code,
        /// Human-readable detail.
        reason: Text,
    },
    /// Either way: are you there? Answer with `PONG` and the same nonce.
    Ping {
        /// Echoed in the pong.
        nonce: u64,
    },
    /// Either way: the answer to `PING`.
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// Either way: a polite close. Nothing follows it.
    Bye,
    /// Either way: a fatal error; the sender closes after it.
    Error {
        /// Why.
        code: Code,
        /// Human-readable detail.
        reason: Text,
    },
    /// Client → server: say something to the room.
    Say {
        /// The message.
        text: Text,
    },
    /// Server → client: a message in the room.
    Message {
        /// Room sequence number, shared with `JOINED` and `LEFT`.
        seq: u64,
        /// Sender's name; empty for the server's own announcements.
        from: Text,
        /// The message.
        text: Text,
    },
    /// Server → client: someone entered the room.
    Joined {
        /// Room sequence number.
        seq: u64,
        /// Who.
        name: Text,
    },
    /// Server → client: someone left the room.
    Left {
        /// Room sequence number.
        seq: u64,
        /// Who.
        name: Text,
        /// Why: [`Code::QUIT`], [`Code::IDLE_TIMEOUT`], [`Code::FLOODING`], ...
        code: Code,
    },
    /// Client → server: who is in the room?
    Who,
    /// Server → client: the room's members, in the order they joined.
    Members {
        /// Names.
        names: Vec<Text>,
    },
    /// Client → server: a direct message to one user.
    DirectTo {
        /// Recipient.
        to: Text,
        /// The message.
        text: Text,
    },
    /// Server → client: a direct message from one user.
    DirectFrom {
        /// Sender.
        from: Text,
        /// The message.
        text: Text,
    },
    /// Server → client: a `SAY` or `DIRECT_TO` was not delivered. Not fatal.
    Bounce {
        /// Why.
        code: Code,
        /// Human-readable detail.
        reason: Text,
    },
    /// Either way: I have a file for you (or, to a server, for `peer`).
    Offer {
        /// Transfer id, allocated by the offering side.
        id: TransferId,
        /// Size in bytes.
        size: u64,
        /// File name, a single path component.
        name: Text,
        /// Client → server: recipient, empty for the server's inbox.
        /// Server → client: the sender, empty for the server itself.
        peer: Text,
    },
    /// Receiver → sender: send it, starting at `offset`.
    Accept {
        /// The transfer.
        id: TransferId,
        /// Bytes the receiver already holds (resume), else 0.
        offset: u64,
        /// Bytes the sender may have in flight past the confirmed offset.
        window: u32,
        /// BLAKE3 of the receiver's first `offset` bytes.
        prefix_hash: Hash,
    },
    /// Receiver → sender: no thanks.
    Reject {
        /// The transfer.
        id: TransferId,
        /// Why.
        code: Code,
        /// Human-readable detail.
        reason: Text,
    },
    /// Sender → receiver: file bytes at `offset`.
    Data {
        /// The transfer.
        id: TransferId,
        /// Offset of the first byte.
        offset: u64,
        /// The bytes (the rest of the body).
        data: Bytes,
    },
    /// Receiver → sender: bytes `0..written` are safely stored.
    Credit {
        /// The transfer.
        id: TransferId,
        /// Confirmed prefix length.
        written: u64,
    },
    /// Sender → receiver: that was all; here is the hash of the whole file.
    Done {
        /// The transfer.
        id: TransferId,
        /// BLAKE3 of the whole file.
        hash: Hash,
    },
    /// Receiver → sender: stored under its final name, hash matched.
    Verified {
        /// The transfer.
        id: TransferId,
    },
    /// Receiver → sender: not stored (hash mismatch, disk error, ...).
    Failed {
        /// The transfer.
        id: TransferId,
        /// Why.
        code: Code,
        /// Human-readable detail.
        reason: Text,
    },
    /// Either side: stop this transfer.
    Cancel {
        /// The transfer.
        id: TransferId,
        /// Why.
        code: Code,
        /// Human-readable detail.
        reason: Text,
    },
    /// Transfer receiver → sender, just before the `ACCEPT` of `id`: if
    /// this transfer is cut, offer the file again preceded by `RESUME` with
    /// this key to continue it. Extension type 0x80.
    ResumeKey {
        /// The transfer (one the sender offered).
        id: TransferId,
        /// The secret to present when resuming.
        key: ResumeKey,
    },
    /// Transfer sender → receiver, just before the `OFFER` of `id`: this
    /// offer continues the transfer whose partial data the receiver keeps
    /// under `key`. Extension type 0x81.
    Resume {
        /// The offer it goes with.
        id: TransferId,
        /// The key the receiver issued.
        key: ResumeKey,
    },
    /// Server → client, just after `WELCOME`: the secret that lets this
    /// client take its place back if its connection is lost. Extension
    /// type 0x82.
    Session {
        /// Present it in `RECLAIM` when reconnecting.
        secret: SessionSecret,
    },
    /// Client → server, before `HELLO`: the connection that was handed this
    /// secret is mine and dead; close it. Extension type 0x83.
    Reclaim {
        /// The secret of the earlier connection's `SESSION`.
        secret: SessionSecret,
    },
    /// Server → client, after `WELCOME` and before `MEMBERS`: a message said
    /// in the room before the client joined, oldest first. Extension type
    /// 0x85.
    History {
        /// When the server ordered it: milliseconds since the Unix epoch
        /// (UTC), 0 if the server did not know the time.
        time_ms: u64,
        /// Its sender; empty for the server's own announcements.
        from: Text,
        /// The message.
        text: Text,
    },
    /// Sender of a tree → receiver: I have a folder for you (or, to a
    /// server, for `peer`), whose manifest of `manifest_len` bytes follows in
    /// `TREE_MANIFEST` parts. Only to a peer that announced
    /// [`features::TREES`].
    TreeOffer {
        /// Transfer id, allocated by the offering side like an `OFFER`'s.
        id: TransferId,
        /// Bytes of all files of the tree together.
        total_size: u64,
        /// Bytes of the encoded manifest.
        manifest_len: u32,
        /// The tree's top-level name, a single path component.
        name: Text,
        /// As in `OFFER`: the recipient (client → server, empty for the
        /// inbox) or the sender (server → client, empty for the server).
        peer: Text,
    },
    /// Sender of a tree → receiver: the next bytes of its manifest.
    TreeManifest {
        /// The tree.
        id: TransferId,
        /// The bytes (the rest of the body).
        part: Bytes,
    },
    /// Receiver of a resumed tree → sender, before `TREE_ACCEPT`: the files
    /// it already holds.
    TreeHeld {
        /// The tree.
        id: TransferId,
        /// One record per file held.
        records: Vec<HeldFile>,
    },
    /// Receiver of a tree → sender: send the files.
    TreeAccept {
        /// The tree.
        id: TransferId,
        /// Bytes of `DATA` payload the sender may have in flight beyond the
        /// last `CREDIT`.
        window: u32,
    },
    /// Sender of a tree → receiver: the data of file `index` follows, from
    /// `offset`.
    TreeFile {
        /// The tree.
        id: TransferId,
        /// The file's index among the manifest's entries.
        index: u32,
        /// Where its first `DATA` starts.
        offset: u64,
    },
    /// Sender of a tree → receiver: file `index` is complete.
    TreeFileDone {
        /// The tree.
        id: TransferId,
        /// The file's index among the manifest's entries.
        index: u32,
        /// BLAKE3 of the whole file.
        hash: Hash,
    },
    /// Either way, after the handshake: the optional features this side
    /// takes (bits of [`features`]). Extension type 0x84.
    Features {
        /// The bits; unknown ones are ignored.
        bits: u32,
    },
    /// A frame of any other extension type (`0x86..=0xFF`); receivers skip
    /// those they do not know.
    Extension {
        /// Its type byte, at least 0x80.
        frame_type: u8,
        /// Its body, uninterpreted.
        body: Bytes,
    },
}

impl Frame {
    /// The type byte this frame is sent with.
    pub fn frame_type(&self) -> u8 {
        use frame_type::*;
        match self {
            Frame::Hello { .. } => HELLO,
            Frame::Welcome { .. } => WELCOME,
            Frame::Refuse { .. } => REFUSE,
            Frame::Ping { .. } => PING,
            Frame::Pong { .. } => PONG,
            Frame::Bye => BYE,
            Frame::Error { .. } => ERROR,
            Frame::Say { .. } => SAY,
            Frame::Message { .. } => MESSAGE,
            Frame::Joined { .. } => JOINED,
            Frame::Left { .. } => LEFT,
            Frame::Who => WHO,
            Frame::Members { .. } => MEMBERS,
            Frame::DirectTo { .. } => DIRECT_TO,
            Frame::DirectFrom { .. } => DIRECT_FROM,
            Frame::Bounce { .. } => BOUNCE,
            Frame::Offer { .. } => OFFER,
            Frame::Accept { .. } => ACCEPT,
            Frame::Reject { .. } => REJECT,
            Frame::Data { .. } => DATA,
            Frame::Credit { .. } => CREDIT,
            Frame::Done { .. } => DONE,
            Frame::Verified { .. } => VERIFIED,
            Frame::Failed { .. } => FAILED,
            Frame::Cancel { .. } => CANCEL,
            Frame::ResumeKey { .. } => RESUME_KEY,
            Frame::Resume { .. } => RESUME,
            Frame::Session { .. } => SESSION,
            Frame::Reclaim { .. } => RECLAIM,
            Frame::History { .. } => HISTORY,
            Frame::TreeOffer { .. } => TREE_OFFER,
            Frame::TreeManifest { .. } => TREE_MANIFEST,
            Frame::TreeHeld { .. } => TREE_HELD,
            Frame::TreeAccept { .. } => TREE_ACCEPT,
            Frame::TreeFile { .. } => TREE_FILE,
            Frame::TreeFileDone { .. } => TREE_FILE_DONE,
            Frame::Features { .. } => FEATURES,
            Frame::Extension { frame_type, .. } => *frame_type,
        }
    }

    /// The frame's name as the protocol document spells it (`"HELLO"`).
    pub fn name(&self) -> &'static str {
        type_name(self.frame_type())
    }

    /// Appends the encoded frame (header and body) to `out`.
    ///
    /// Fails, leaving `out` as it was, if a field cannot be represented: a
    /// string or token over 65,535 bytes, no versions or more than 255, more
    /// than 65,535 names, a body over `u32::MAX`, or an [`Frame::Extension`]
    /// whose type is below 0x80 or one that version 1 defines (those have
    /// variants of their own, so that the encoding stays canonical).
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), Misuse> {
        let start = out.len();
        let result = self.encode_unchecked(out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn encode_unchecked(&self, out: &mut BytesMut) -> Result<(), Misuse> {
        let start = out.len();
        out.reserve(HEADER_LEN + 32);
        out.put_u8(self.frame_type());
        out.put_u32(0); // patched below once the body length is known
        match self {
            Frame::Hello {
                versions,
                name,
                room,
                token,
            } => {
                if versions.is_empty() {
                    // The decoder refuses a count of 0 as malformed.
                    return Err(Misuse::InvalidArgument("HELLO needs at least one version"));
                }
                let count = u8::try_from(versions.len())
                    .map_err(|_| Misuse::InvalidArgument("more than 255 versions"))?;
                out.put_u8(count);
                for v in versions {
                    out.put_u16(*v);
                }
                put_text(out, name)?;
                put_text(out, room)?;
                put_bytes16(out, token)?;
            }
            Frame::Welcome {
                version,
                name,
                room,
                settings,
            } => {
                out.put_u16(*version);
                put_text(out, name)?;
                put_text(out, room)?;
                out.put_u32(settings.max_frame);
                out.put_u32(settings.max_message);
                out.put_u32(settings.chunk_size);
                out.put_u32(settings.window);
                out.put_u32(settings.idle_timeout_ms);
            }
            Frame::Refuse { code, reason }
            | Frame::Error { code, reason }
            | Frame::Bounce { code, reason } => {
                out.put_u16(code.0);
                put_text(out, reason)?;
            }
            Frame::Ping { nonce } | Frame::Pong { nonce } => out.put_u64(*nonce),
            Frame::Bye | Frame::Who => {}
            Frame::Say { text } => put_text(out, text)?,
            Frame::Message { seq, from, text } => {
                out.put_u64(*seq);
                put_text(out, from)?;
                put_text(out, text)?;
            }
            Frame::Joined { seq, name } => {
                out.put_u64(*seq);
                put_text(out, name)?;
            }
            Frame::Left { seq, name, code } => {
                out.put_u64(*seq);
                put_text(out, name)?;
                out.put_u16(code.0);
            }
            Frame::Members { names } => {
                let count = u16::try_from(names.len())
                    .map_err(|_| Misuse::InvalidArgument("more than 65535 names"))?;
                out.put_u16(count);
                for name in names {
                    put_text(out, name)?;
                }
            }
            Frame::DirectTo { to: peer, text } | Frame::DirectFrom { from: peer, text } => {
                put_text(out, peer)?;
                put_text(out, text)?;
            }
            Frame::Offer {
                id,
                size,
                name,
                peer,
            } => {
                out.put_u32(*id);
                out.put_u64(*size);
                put_text(out, name)?;
                put_text(out, peer)?;
            }
            Frame::Accept {
                id,
                offset,
                window,
                prefix_hash,
            } => {
                out.put_u32(*id);
                out.put_u64(*offset);
                out.put_u32(*window);
                out.put_slice(prefix_hash);
            }
            Frame::Reject { id, code, reason }
            | Frame::Failed { id, code, reason }
            | Frame::Cancel { id, code, reason } => {
                out.put_u32(*id);
                out.put_u16(code.0);
                put_text(out, reason)?;
            }
            Frame::Data { id, offset, data } => {
                out.put_u32(*id);
                out.put_u64(*offset);
                out.extend_from_slice(data);
            }
            Frame::Credit { id, written } => {
                out.put_u32(*id);
                out.put_u64(*written);
            }
            Frame::Done { id, hash } => {
                out.put_u32(*id);
                out.put_slice(hash);
            }
            Frame::Verified { id } => out.put_u32(*id),
            Frame::ResumeKey { id, key } | Frame::Resume { id, key } => {
                out.put_u32(*id);
                out.put_slice(key.as_bytes());
            }
            Frame::Session { secret } | Frame::Reclaim { secret } => {
                out.put_slice(secret.as_bytes());
            }
            Frame::History {
                time_ms,
                from,
                text,
            } => {
                out.put_u64(*time_ms);
                put_text(out, from)?;
                put_text(out, text)?;
            }
            Frame::TreeOffer {
                id,
                total_size,
                manifest_len,
                name,
                peer,
            } => {
                out.put_u32(*id);
                out.put_u64(*total_size);
                out.put_u32(*manifest_len);
                put_text(out, name)?;
                put_text(out, peer)?;
            }
            Frame::TreeManifest { id, part } => {
                out.put_u32(*id);
                out.extend_from_slice(part);
            }
            Frame::TreeHeld { id, records } => {
                out.reserve(4 + records.len().saturating_mul(HELD_RECORD_LEN));
                out.put_u32(*id);
                for record in records {
                    out.put_u32(record.index);
                    out.put_u64(record.offset);
                    out.put_slice(&record.prefix_hash);
                }
            }
            Frame::TreeAccept { id, window } => {
                out.put_u32(*id);
                out.put_u32(*window);
            }
            Frame::TreeFile { id, index, offset } => {
                out.put_u32(*id);
                out.put_u32(*index);
                out.put_u64(*offset);
            }
            Frame::TreeFileDone { id, index, hash } => {
                out.put_u32(*id);
                out.put_u32(*index);
                out.put_slice(hash);
            }
            Frame::Features { bits } => out.put_u32(*bits),
            Frame::Extension { frame_type, body } => {
                if *frame_type < frame_type::FIRST_EXTENSION {
                    return Err(Misuse::InvalidArgument(
                        "extension frame type must be 0x80 or above",
                    ));
                }
                if frame_type::is_known(*frame_type) {
                    return Err(Misuse::InvalidArgument(
                        "the extensions version 1 defines are sent as their own variants",
                    ));
                }
                out.extend_from_slice(body);
            }
        }
        let body_len = u32::try_from(out.len() - start - HEADER_LEN)
            .map_err(|_| Misuse::InvalidArgument("frame body over 4 GiB"))?;
        out[start + 1..start + HEADER_LEN].copy_from_slice(&body_len.to_be_bytes());
        Ok(())
    }

    /// Decodes one frame body of type `frame_type`. `body` is the whole body
    /// (the header already removed); payloads in the result share its memory.
    pub fn decode_body(frame_type: u8, body: Bytes) -> Result<Frame, Malformed> {
        use frame_type::*;
        let mut r = Reader::new(type_name(frame_type), body);
        let frame = match frame_type {
            HELLO => {
                let count = r.u8("version count")?;
                if count == 0 {
                    return Err(r.invalid("version count", "must be at least 1"));
                }
                let mut versions = Vec::with_capacity(usize::from(count).min(r.remaining() / 2));
                for _ in 0..count {
                    versions.push(r.u16("versions")?);
                }
                Frame::Hello {
                    versions,
                    name: r.text("name")?,
                    room: r.text("room")?,
                    token: r.bytes16("token")?,
                }
            }
            WELCOME => Frame::Welcome {
                version: r.u16("version")?,
                name: r.text("name")?,
                room: r.text("room")?,
                settings: Settings {
                    max_frame: r.u32("max_frame")?,
                    max_message: r.u32("max_message")?,
                    chunk_size: r.u32("chunk_size")?,
                    window: r.u32("window")?,
                    idle_timeout_ms: r.u32("idle_timeout_ms")?,
                },
            },
            REFUSE => Frame::Refuse {
                code: r.code()?,
                reason: r.text("reason")?,
            },
            PING => Frame::Ping {
                nonce: r.u64("nonce")?,
            },
            PONG => Frame::Pong {
                nonce: r.u64("nonce")?,
            },
            BYE => Frame::Bye,
            ERROR => Frame::Error {
                code: r.code()?,
                reason: r.text("reason")?,
            },
            SAY => Frame::Say {
                text: r.text("text")?,
            },
            MESSAGE => Frame::Message {
                seq: r.u64("seq")?,
                from: r.text("from")?,
                text: r.text("text")?,
            },
            JOINED => Frame::Joined {
                seq: r.u64("seq")?,
                name: r.text("name")?,
            },
            LEFT => Frame::Left {
                seq: r.u64("seq")?,
                name: r.text("name")?,
                code: r.code()?,
            },
            WHO => Frame::Who,
            MEMBERS => {
                let count = r.u16("name count")?;
                // Each name takes at least its 2-byte length, which bounds the
                // allocation by what actually arrived.
                let mut names = Vec::with_capacity(usize::from(count).min(r.remaining() / 2));
                for _ in 0..count {
                    names.push(r.text("names")?);
                }
                Frame::Members { names }
            }
            DIRECT_TO => Frame::DirectTo {
                to: r.text("to")?,
                text: r.text("text")?,
            },
            DIRECT_FROM => Frame::DirectFrom {
                from: r.text("from")?,
                text: r.text("text")?,
            },
            BOUNCE => Frame::Bounce {
                code: r.code()?,
                reason: r.text("reason")?,
            },
            OFFER => Frame::Offer {
                id: r.u32("id")?,
                size: r.u64("size")?,
                name: r.text("name")?,
                peer: r.text("peer")?,
            },
            ACCEPT => Frame::Accept {
                id: r.u32("id")?,
                offset: r.u64("offset")?,
                window: r.u32("window")?,
                prefix_hash: r.hash("prefix_hash")?,
            },
            REJECT => Frame::Reject {
                id: r.u32("id")?,
                code: r.code()?,
                reason: r.text("reason")?,
            },
            DATA => Frame::Data {
                id: r.u32("id")?,
                offset: r.u64("offset")?,
                data: r.rest(),
            },
            CREDIT => Frame::Credit {
                id: r.u32("id")?,
                written: r.u64("written")?,
            },
            DONE => Frame::Done {
                id: r.u32("id")?,
                hash: r.hash("hash")?,
            },
            VERIFIED => Frame::Verified { id: r.u32("id")? },
            FAILED => Frame::Failed {
                id: r.u32("id")?,
                code: r.code()?,
                reason: r.text("reason")?,
            },
            CANCEL => Frame::Cancel {
                id: r.u32("id")?,
                code: r.code()?,
                reason: r.text("reason")?,
            },
            RESUME_KEY => Frame::ResumeKey {
                id: r.u32("id")?,
                key: r.resume_key("key")?,
            },
            RESUME => Frame::Resume {
                id: r.u32("id")?,
                key: r.resume_key("key")?,
            },
            SESSION => Frame::Session {
                secret: r.array("secret").map(SessionSecret::from_bytes)?,
            },
            RECLAIM => Frame::Reclaim {
                secret: r.array("secret").map(SessionSecret::from_bytes)?,
            },
            HISTORY => Frame::History {
                time_ms: r.u64("time")?,
                from: r.text("from")?,
                text: r.text("text")?,
            },
            TREE_OFFER => Frame::TreeOffer {
                id: r.u32("id")?,
                total_size: r.u64("total_size")?,
                manifest_len: r.u32("manifest_len")?,
                name: r.text("name")?,
                peer: r.text("peer")?,
            },
            TREE_MANIFEST => Frame::TreeManifest {
                id: r.u32("id")?,
                part: r.rest(),
            },
            TREE_HELD => {
                let id = r.u32("id")?;
                if r.remaining() % HELD_RECORD_LEN != 0 {
                    // A record cut short: its last field is incomplete.
                    return Err(Malformed::Truncated {
                        frame: r.frame,
                        field: "records",
                    });
                }
                // Sized by the bytes that arrived, not by a claimed count.
                let mut records = Vec::with_capacity(r.remaining() / HELD_RECORD_LEN);
                while r.remaining() > 0 {
                    records.push(HeldFile {
                        index: r.u32("index")?,
                        offset: r.u64("offset")?,
                        prefix_hash: r.hash("prefix_hash")?,
                    });
                }
                Frame::TreeHeld { id, records }
            }
            TREE_ACCEPT => Frame::TreeAccept {
                id: r.u32("id")?,
                window: r.u32("window")?,
            },
            TREE_FILE => Frame::TreeFile {
                id: r.u32("id")?,
                index: r.u32("index")?,
                offset: r.u64("offset")?,
            },
            TREE_FILE_DONE => Frame::TreeFileDone {
                id: r.u32("id")?,
                index: r.u32("index")?,
                hash: r.hash("hash")?,
            },
            FEATURES => Frame::Features {
                bits: r.u32("bits")?,
            },
            t if t >= FIRST_EXTENSION => Frame::Extension {
                frame_type: t,
                body: r.rest(),
            },
            t => return Err(Malformed::UnknownFrameType(t)),
        };
        r.finish()?;
        Ok(frame)
    }
}

/// The protocol document's name for a frame type.
pub fn type_name(t: u8) -> &'static str {
    use frame_type::*;
    match t {
        HELLO => "HELLO",
        WELCOME => "WELCOME",
        REFUSE => "REFUSE",
        PING => "PING",
        PONG => "PONG",
        BYE => "BYE",
        ERROR => "ERROR",
        SAY => "SAY",
        MESSAGE => "MESSAGE",
        JOINED => "JOINED",
        LEFT => "LEFT",
        WHO => "WHO",
        MEMBERS => "MEMBERS",
        DIRECT_TO => "DIRECT_TO",
        DIRECT_FROM => "DIRECT_FROM",
        BOUNCE => "BOUNCE",
        OFFER => "OFFER",
        ACCEPT => "ACCEPT",
        REJECT => "REJECT",
        DATA => "DATA",
        CREDIT => "CREDIT",
        DONE => "DONE",
        VERIFIED => "VERIFIED",
        FAILED => "FAILED",
        CANCEL => "CANCEL",
        RESUME_KEY => "RESUME_KEY",
        RESUME => "RESUME",
        SESSION => "SESSION",
        RECLAIM => "RECLAIM",
        HISTORY => "HISTORY",
        TREE_OFFER => "TREE_OFFER",
        TREE_MANIFEST => "TREE_MANIFEST",
        TREE_HELD => "TREE_HELD",
        TREE_ACCEPT => "TREE_ACCEPT",
        TREE_FILE => "TREE_FILE",
        TREE_FILE_DONE => "TREE_FILE_DONE",
        FEATURES => "FEATURES",
        t if t >= FIRST_EXTENSION => "EXTENSION",
        _ => "UNKNOWN",
    }
}

/// Decodes the next frame from the front of `buf`.
///
/// * `Ok(None)`: not a whole frame yet; nothing was consumed. Read more and
///   call again.
/// * `Ok(Some(frame))`: the frame's bytes were removed from `buf`; payloads in
///   `frame` share `buf`'s allocation.
/// * `Err(_)`: fatal. A declared body length over `max_body`, or an unknown
///   critical type, is reported as soon as the 5-byte header is in, before any
///   of the body is buffered.
pub fn decode(buf: &mut BytesMut, max_body: u32) -> Result<Option<Frame>, DecodeError> {
    let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let frame_type = header[0];
    let declared = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    if frame_type < frame_type::FIRST_EXTENSION && !frame_type::is_known(frame_type) {
        return Err(Malformed::UnknownFrameType(frame_type).into());
    }
    if declared > max_body {
        return Err(LimitExceeded::FrameTooLarge {
            frame_type,
            declared,
            limit: max_body,
        }
        .into());
    }
    // `declared <= max_body: u32`, so this cannot overflow on any platform
    // where `usize` is at least 32 bits, which `bytes` requires.
    let total = HEADER_LEN + declared as usize;
    if buf.len() < total {
        return Ok(None);
    }
    let mut body = buf.split_to(total).freeze();
    body.advance(HEADER_LEN);
    Ok(Some(Frame::decode_body(frame_type, body)?))
}

/// Appends a `DATA` frame header and the id/offset fields for a payload of
/// `len` bytes. The payload itself is sent after it, so a file chunk can go to
/// the socket without being copied into the frame (vectored write).
pub fn encode_data_header(out: &mut BytesMut, id: TransferId, offset: u64, len: usize) {
    let body_len = u32::try_from(DATA_OVERHEAD + len).unwrap_or(u32::MAX);
    out.reserve(HEADER_LEN + DATA_OVERHEAD);
    out.put_u8(frame_type::DATA);
    out.put_u32(body_len);
    out.put_u32(id);
    out.put_u64(offset);
}

pub(crate) fn put_text(out: &mut BytesMut, text: &Text) -> Result<(), Misuse> {
    put_bytes16(out, text.as_bytes())
}

fn put_bytes16(out: &mut BytesMut, bytes: &[u8]) -> Result<(), Misuse> {
    let len = u16::try_from(bytes.len())
        .map_err(|_| Misuse::InvalidArgument("string or token over 65535 bytes"))?;
    out.put_u16(len);
    out.extend_from_slice(bytes);
    Ok(())
}

/// Reads fields from one frame body, naming the frame and field in errors.
pub(crate) struct Reader {
    frame: &'static str,
    body: Bytes,
    pos: usize,
}

impl Reader {
    pub(crate) fn new(frame: &'static str, body: Bytes) -> Self {
        Reader {
            frame,
            body,
            pos: 0,
        }
    }

    fn remaining(&self) -> usize {
        self.body.len() - self.pos
    }

    fn invalid(&self, field: &'static str, why: &'static str) -> Malformed {
        Malformed::InvalidValue {
            frame: self.frame,
            field,
            why,
        }
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], Malformed> {
        let bytes = self.body[self.pos..]
            .first_chunk::<N>()
            .ok_or(Malformed::Truncated {
                frame: self.frame,
                field,
            })?;
        self.pos += N;
        Ok(*bytes)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, Malformed> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, Malformed> {
        self.array(field).map(u16::from_be_bytes)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, Malformed> {
        self.array(field).map(u32::from_be_bytes)
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, Malformed> {
        self.array(field).map(u64::from_be_bytes)
    }

    fn code(&mut self) -> Result<Code, Malformed> {
        self.u16("code").map(Code)
    }

    fn hash(&mut self, field: &'static str) -> Result<Hash, Malformed> {
        self.array(field)
    }

    fn resume_key(&mut self, field: &'static str) -> Result<ResumeKey, Malformed> {
        self.array(field).map(ResumeKey::from_bytes)
    }

    fn bytes16(&mut self, field: &'static str) -> Result<Bytes, Malformed> {
        let len = usize::from(self.u16(field)?);
        if self.remaining() < len {
            return Err(Malformed::Truncated {
                frame: self.frame,
                field,
            });
        }
        let bytes = self.body.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(bytes)
    }

    pub(crate) fn text(&mut self, field: &'static str) -> Result<Text, Malformed> {
        let frame = self.frame;
        Text::from_utf8(self.bytes16(field)?).map_err(|_| Malformed::InvalidUtf8 { frame, field })
    }

    fn rest(&mut self) -> Bytes {
        let rest = self.body.slice(self.pos..);
        self.pos = self.body.len();
        rest
    }

    pub(crate) fn finish(self) -> Result<(), Malformed> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(Malformed::TrailingBytes {
                frame: self.frame,
                extra,
            }),
        }
    }
}
