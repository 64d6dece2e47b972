//! A file relayed between members on two servers of a cluster: the frames
//! the two hubs send each other over their direct link.
//!
//! The sender's server (the relay's *origin*) holds the sender's end, the
//! recipient's server the recipient's end; between them each hop holds at
//! most one credit window, as a relay on one server does, and the window is
//! the recipient's, end to end: the sender gets credit only for what the
//! recipient confirmed written. Redis carries none of this: only the
//! question of which server holds the recipient
//! ([`BusRequest::Locate`](super::BusRequest::Locate)).
//!
//! ```text
//! origin → recipient's server   OFFER, DATA, DONE
//! recipient's server → origin   ACCEPT, CREDIT
//! either way                    END
//! ```
//!
//! A folder (a tree, `docs/FOLDERS.md`) goes the same way with the tree's
//! frames: its manifest in parts after the offer, what the recipient
//! already holds in parts before its accept, and each file's start and
//! end around its data.
//!
//! ```text
//! origin → recipient's server   TREE_OFFER, TREE_MANIFEST…, TREE_FILE, DATA…, TREE_FILE_DONE, …, DONE
//! recipient's server → origin   TREE_HELD…, TREE_ACCEPT, CREDIT
//! ```
//!
//! A driver carries each [`RelayFrame`] as the bytes of [`encode`] to the
//! server named beside it ([`Hub::poll_relay`](crate::Hub::poll_relay)),
//! in order, and hands what arrives to
//! [`Hub::handle_bus`](crate::Hub::handle_bus) as
//! [`BusInput::Relay`](super::BusInput::Relay), decoded with [`decode`]; a
//! link that broke is [`BusInput::PeerLost`](super::BusInput::PeerLost),
//! which ends every relay with that server, so that both members learn it
//! and the transfer can be resumed.
//!
//! # Encoding
//!
//! ```text
//! version 0x01 | kind | origin: u64 | number: u64 | fields
//!   kind 0x01 OFFER:  room_key: str16, to_key: str16, to: str16, from: str16,
//!                     name: str16, size: u64, resume: 0x00 | 0x01 key[16]
//!   kind 0x02 ACCEPT: offset: u64, window: u32, prefix_hash: [32],
//!                     key: 0x00 | 0x01 key[16]
//!   kind 0x03 DATA:   offset: u64, data: the rest of the frame
//!   kind 0x04 CREDIT: confirmed: u64
//!   kind 0x05 DONE:   hash: [32]
//!   kind 0x06 END:    how: u8 (0 verified, 1 rejected, 2 failed,
//!                     3 cancelled by the peer, 4 cancelled by a server),
//!                     code: u16, reason: str16
//!   kind 0x07 TREE_OFFER:     room_key, to_key, to, from, name: str16,
//!                             total_size: u64, manifest_len: u32,
//!                             resume: 0x00 | 0x01 key[16]
//!   kind 0x08 TREE_MANIFEST:  part: the rest of the frame
//!   kind 0x09 TREE_HELD:      records (index: u32, offset: u64,
//!                             prefix_hash: [32]) to the end of the frame
//!   kind 0x0A TREE_ACCEPT:    window: u32, key: 0x00 | 0x01 key[16]
//!   kind 0x0B TREE_FILE:      index: u32, offset: u64
//!   kind 0x0C TREE_FILE_DONE: index: u32, hash: [32]
//! integers big-endian; str16 = length u16, then UTF-8
//! ```
//!
//! ```
//! use ferry_core::cluster::relay::{self, RelayFrame, RelayId};
//! use ferry_core::cluster::ServerId;
//!
//! let frame = RelayFrame::Credit { id: RelayId { origin: ServerId(1), number: 2 }, confirmed: 3 };
//! let bytes = relay::encode(&frame);
//! assert_eq!(
//!     bytes,
//!     b"\x01\x04\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x02\0\0\0\0\0\0\0\x03"
//! );
//! assert_eq!(relay::decode(&bytes), Ok(frame));
//! ```

use super::bus::ServerId;
use super::codec::{put_str, CodecError, Reader};
use crate::code::Code;
use crate::frame::{Hash, HeldFile};
use crate::secret::ResumeKey;
use crate::text::Text;
use crate::transfer::Outcome;
use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;

/// The first byte of every relay frame.
pub const VERSION: u8 = 0x01;

const OFFER: u8 = 0x01;
const ACCEPT: u8 = 0x02;
const DATA: u8 = 0x03;
const CREDIT: u8 = 0x04;
const DONE: u8 = 0x05;
const END: u8 = 0x06;
const TREE_OFFER: u8 = 0x07;
const TREE_MANIFEST: u8 = 0x08;
const TREE_HELD: u8 = 0x09;
const TREE_ACCEPT: u8 = 0x0A;
const TREE_FILE: u8 = 0x0B;
const TREE_FILE_DONE: u8 = 0x0C;

/// Bytes of one `TREE_HELD` record.
const HELD_RECORD_LEN: usize = 4 + 8 + 32;

/// One relay between two servers, named by the server of its sender and
/// that server's number for it: unique in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelayId {
    /// The sender's server.
    pub origin: ServerId,
    /// The origin's number for the relay (1, 2, ...).
    pub number: u64,
}

/// What one hub tells another about a relay ([module](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayFrame {
    /// A member of the origin offers a file to a member of the receiving
    /// server, in the room keyed `room_key`.
    Offer {
        /// The relay.
        id: RelayId,
        /// The room both are in.
        room_key: String,
        /// The recipient's name key.
        to_key: String,
        /// The recipient's name as the sender typed it (for a refusal).
        to: Text,
        /// The sender's name, as the recipient is told.
        from: Text,
        /// The file's name.
        name: Text,
        /// Its size in bytes.
        size: u64,
        /// The resume key the sender presented, if any.
        resume: Option<ResumeKey>,
    },
    /// The recipient took the file from `offset` (what it holds, its
    /// prefix hash), with its credit window and its resume key.
    Accept {
        /// The relay.
        id: RelayId,
        /// Where the data starts.
        offset: u64,
        /// Bytes the sender may send past what was confirmed.
        window: u32,
        /// The BLAKE3 hash of the file's first `offset` bytes.
        prefix_hash: Hash,
        /// The key the recipient issued, for the sender to resume with.
        key: Option<ResumeKey>,
    },
    /// File bytes at `offset`.
    Data {
        /// The relay.
        id: RelayId,
        /// Where they go in the file.
        offset: u64,
        /// The bytes.
        data: Bytes,
    },
    /// The recipient wrote every byte below `confirmed`.
    Credit {
        /// The relay.
        id: RelayId,
        /// Bytes written, from the file's start.
        confirmed: u64,
    },
    /// The sender sent every byte; the file's hash.
    Done {
        /// The relay.
        id: RelayId,
        /// BLAKE3 of the whole file.
        hash: Hash,
    },
    /// The relay ended on the sending server's side, as `outcome` says.
    End {
        /// The relay.
        id: RelayId,
        /// How it ended there; a cancel carries what the other member is
        /// told (who went, and why).
        outcome: Outcome,
    },
    /// A member of the origin offers a folder to a member of the receiving
    /// server; its manifest follows in [`TreeManifest`](Self::TreeManifest)
    /// parts, `manifest_len` bytes in all.
    TreeOffer {
        /// The relay.
        id: RelayId,
        /// The room both are in.
        room_key: String,
        /// The recipient's name key.
        to_key: String,
        /// The recipient's name as the sender typed it (for a refusal).
        to: Text,
        /// The sender's name, as the recipient is told.
        from: Text,
        /// The folder's name.
        name: Text,
        /// The bytes of all its files.
        total_size: u64,
        /// The bytes of its encoded manifest.
        manifest_len: u32,
        /// The resume key the sender presented, if any.
        resume: Option<ResumeKey>,
    },
    /// The next bytes of the folder's encoded manifest.
    TreeManifest {
        /// The relay.
        id: RelayId,
        /// The bytes.
        part: Bytes,
    },
    /// Files the recipient holds from an earlier attempt (its
    /// `TREE_HELD`), in parts before its [`TreeAccept`](Self::TreeAccept).
    TreeHeld {
        /// The relay.
        id: RelayId,
        /// The records, in increasing index order across the parts.
        held: Vec<HeldFile>,
    },
    /// The recipient took the folder, with its credit window and resume
    /// key.
    TreeAccept {
        /// The relay.
        id: RelayId,
        /// Payload bytes the sender may send past what was confirmed.
        window: u32,
        /// The key the recipient issued, for the sender to resume with.
        key: Option<ResumeKey>,
    },
    /// The folder's file `index` starts at `offset`; its bytes follow as
    /// [`Data`](Self::Data), at offsets within the file.
    TreeFile {
        /// The relay.
        id: RelayId,
        /// The file's index among the manifest's entries.
        index: u32,
        /// Where its data starts.
        offset: u64,
    },
    /// The folder's file `index` was sent whole; its hash.
    TreeFileDone {
        /// The relay.
        id: RelayId,
        /// The file's index.
        index: u32,
        /// BLAKE3 of the whole file.
        hash: Hash,
    },
}

impl RelayFrame {
    /// The relay this frame is about.
    pub fn id(&self) -> RelayId {
        match self {
            RelayFrame::Offer { id, .. }
            | RelayFrame::Accept { id, .. }
            | RelayFrame::Data { id, .. }
            | RelayFrame::Credit { id, .. }
            | RelayFrame::Done { id, .. }
            | RelayFrame::End { id, .. }
            | RelayFrame::TreeOffer { id, .. }
            | RelayFrame::TreeManifest { id, .. }
            | RelayFrame::TreeHeld { id, .. }
            | RelayFrame::TreeAccept { id, .. }
            | RelayFrame::TreeFile { id, .. }
            | RelayFrame::TreeFileDone { id, .. } => *id,
        }
    }

    /// Bytes this frame holds while it waits to be sent.
    pub fn weight(&self) -> usize {
        const FIXED: usize = 64;
        FIXED
            + match self {
                RelayFrame::Offer {
                    room_key,
                    to_key,
                    to,
                    from,
                    name,
                    ..
                }
                | RelayFrame::TreeOffer {
                    room_key,
                    to_key,
                    to,
                    from,
                    name,
                    ..
                } => room_key.len() + to_key.len() + to.len() + from.len() + name.len(),
                RelayFrame::Data { data, .. } => data.len(),
                RelayFrame::TreeManifest { part, .. } => part.len(),
                RelayFrame::TreeHeld { held, .. } => held.len() * HELD_RECORD_LEN,
                RelayFrame::End { outcome, .. } => match outcome {
                    Outcome::Verified => 0,
                    Outcome::Rejected { reason, .. }
                    | Outcome::Failed { reason, .. }
                    | Outcome::Cancelled { reason, .. } => reason.len(),
                },
                _ => 0,
            }
    }
}

/// `frame` as bytes. Strings longer than 65,535 bytes are cut at a
/// character boundary.
pub fn encode(frame: &RelayFrame) -> Vec<u8> {
    let mut out = Vec::with_capacity(match frame {
        RelayFrame::Data { data, .. } => 26 + data.len(),
        RelayFrame::TreeManifest { part, .. } => 18 + part.len(),
        RelayFrame::TreeHeld { held, .. } => 18 + held.len() * HELD_RECORD_LEN,
        _ => 128,
    });
    let id = frame.id();
    let kind = match frame {
        RelayFrame::Offer { .. } => OFFER,
        RelayFrame::Accept { .. } => ACCEPT,
        RelayFrame::Data { .. } => DATA,
        RelayFrame::Credit { .. } => CREDIT,
        RelayFrame::Done { .. } => DONE,
        RelayFrame::End { .. } => END,
        RelayFrame::TreeOffer { .. } => TREE_OFFER,
        RelayFrame::TreeManifest { .. } => TREE_MANIFEST,
        RelayFrame::TreeHeld { .. } => TREE_HELD,
        RelayFrame::TreeAccept { .. } => TREE_ACCEPT,
        RelayFrame::TreeFile { .. } => TREE_FILE,
        RelayFrame::TreeFileDone { .. } => TREE_FILE_DONE,
    };
    out.extend_from_slice(&[VERSION, kind]);
    out.extend_from_slice(&id.origin.0.to_be_bytes());
    out.extend_from_slice(&id.number.to_be_bytes());
    match frame {
        RelayFrame::Offer {
            room_key,
            to_key,
            to,
            from,
            name,
            size,
            resume,
            ..
        } => {
            for s in [room_key.as_str(), to_key, to, from, name] {
                put_str(&mut out, s);
            }
            out.extend_from_slice(&size.to_be_bytes());
            put_key(&mut out, resume.as_ref());
        }
        RelayFrame::Accept {
            offset,
            window,
            prefix_hash,
            key,
            ..
        } => {
            out.extend_from_slice(&offset.to_be_bytes());
            out.extend_from_slice(&window.to_be_bytes());
            out.extend_from_slice(prefix_hash);
            put_key(&mut out, key.as_ref());
        }
        RelayFrame::Data { offset, data, .. } => {
            out.extend_from_slice(&offset.to_be_bytes());
            out.extend_from_slice(data);
        }
        RelayFrame::Credit { confirmed, .. } => out.extend_from_slice(&confirmed.to_be_bytes()),
        RelayFrame::Done { hash, .. } => out.extend_from_slice(hash),
        RelayFrame::End { outcome, .. } => {
            let (how, code, reason) = match outcome {
                Outcome::Verified => (0, Code(0), ""),
                Outcome::Rejected { code, reason } => (1, *code, reason.as_str()),
                Outcome::Failed { code, reason } => (2, *code, reason.as_str()),
                Outcome::Cancelled {
                    code,
                    reason,
                    by_peer,
                } => (if *by_peer { 3 } else { 4 }, *code, reason.as_str()),
            };
            out.push(how);
            out.extend_from_slice(&code.0.to_be_bytes());
            put_str(&mut out, reason);
        }
        RelayFrame::TreeOffer {
            room_key,
            to_key,
            to,
            from,
            name,
            total_size,
            manifest_len,
            resume,
            ..
        } => {
            for s in [room_key.as_str(), to_key, to, from, name] {
                put_str(&mut out, s);
            }
            out.extend_from_slice(&total_size.to_be_bytes());
            out.extend_from_slice(&manifest_len.to_be_bytes());
            put_key(&mut out, resume.as_ref());
        }
        RelayFrame::TreeManifest { part, .. } => out.extend_from_slice(part),
        RelayFrame::TreeHeld { held, .. } => {
            for record in held {
                out.extend_from_slice(&record.index.to_be_bytes());
                out.extend_from_slice(&record.offset.to_be_bytes());
                out.extend_from_slice(&record.prefix_hash);
            }
        }
        RelayFrame::TreeAccept { window, key, .. } => {
            out.extend_from_slice(&window.to_be_bytes());
            put_key(&mut out, key.as_ref());
        }
        RelayFrame::TreeFile { index, offset, .. } => {
            out.extend_from_slice(&index.to_be_bytes());
            out.extend_from_slice(&offset.to_be_bytes());
        }
        RelayFrame::TreeFileDone { index, hash, .. } => {
            out.extend_from_slice(&index.to_be_bytes());
            out.extend_from_slice(hash);
        }
    }
    out
}

/// The frame `bytes` holds. Strict: anything but exactly one frame of this
/// form is an error.
pub fn decode(bytes: &[u8]) -> Result<RelayFrame, CodecError> {
    let mut input = Reader(bytes);
    let version = input.u8()?;
    if version != VERSION {
        return Err(CodecError::Version(version));
    }
    let kind = input.u8()?;
    let id = RelayId {
        origin: ServerId(input.u64()?),
        number: input.u64()?,
    };
    let frame = match kind {
        OFFER => RelayFrame::Offer {
            id,
            room_key: input.str()?.to_string(),
            to_key: input.str()?.to_string(),
            to: input.str()?,
            from: input.str()?,
            name: input.str()?,
            size: input.u64()?,
            resume: input.key()?,
        },
        ACCEPT => RelayFrame::Accept {
            id,
            offset: input.u64()?,
            window: input.u32()?,
            prefix_hash: input.hash()?,
            key: input.key()?,
        },
        DATA => RelayFrame::Data {
            id,
            offset: input.u64()?,
            data: Bytes::copy_from_slice(core::mem::take(&mut input.0)),
        },
        CREDIT => RelayFrame::Credit {
            id,
            confirmed: input.u64()?,
        },
        DONE => RelayFrame::Done {
            id,
            hash: input.hash()?,
        },
        END => {
            let how = input.u8()?;
            let code = Code(input.u16()?);
            let reason = input.str()?.to_string();
            let outcome = match how {
                0 => Outcome::Verified,
                1 => Outcome::Rejected { code, reason },
                2 => Outcome::Failed { code, reason },
                3 | 4 => Outcome::Cancelled {
                    code,
                    reason,
                    by_peer: how == 3,
                },
                other => return Err(CodecError::Kind(other)),
            };
            RelayFrame::End { id, outcome }
        }
        TREE_OFFER => RelayFrame::TreeOffer {
            id,
            room_key: input.str()?.to_string(),
            to_key: input.str()?.to_string(),
            to: input.str()?,
            from: input.str()?,
            name: input.str()?,
            total_size: input.u64()?,
            manifest_len: input.u32()?,
            resume: input.key()?,
        },
        TREE_MANIFEST => RelayFrame::TreeManifest {
            id,
            part: Bytes::copy_from_slice(core::mem::take(&mut input.0)),
        },
        TREE_HELD => {
            if input.0.len() % HELD_RECORD_LEN != 0 {
                return Err(CodecError::Truncated);
            }
            let mut held = Vec::with_capacity(input.0.len() / HELD_RECORD_LEN);
            while !input.0.is_empty() {
                held.push(HeldFile {
                    index: input.u32()?,
                    offset: input.u64()?,
                    prefix_hash: input.hash()?,
                });
            }
            RelayFrame::TreeHeld { id, held }
        }
        TREE_ACCEPT => RelayFrame::TreeAccept {
            id,
            window: input.u32()?,
            key: input.key()?,
        },
        TREE_FILE => RelayFrame::TreeFile {
            id,
            index: input.u32()?,
            offset: input.u64()?,
        },
        TREE_FILE_DONE => RelayFrame::TreeFileDone {
            id,
            index: input.u32()?,
            hash: input.hash()?,
        },
        other => return Err(CodecError::Kind(other)),
    };
    match input.0.len() {
        0 => Ok(frame),
        n => Err(CodecError::Trailing(n)),
    }
}

fn put_key(out: &mut Vec<u8>, key: Option<&ResumeKey>) {
    match key {
        Some(key) => {
            out.push(1);
            out.extend_from_slice(key.as_bytes());
        }
        None => out.push(0),
    }
}

impl Reader<'_> {
    fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn hash(&mut self) -> Result<Hash, CodecError> {
        self.array()
    }

    fn key(&mut self) -> Result<Option<ResumeKey>, CodecError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(ResumeKey::from_bytes(self.array()?))),
            other => Err(CodecError::Kind(other)),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        self.take(N)?.try_into().map_err(|_| CodecError::Truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids() -> impl Strategy<Value = RelayId> {
        (any::<u64>(), any::<u64>()).prop_map(|(origin, number)| RelayId {
            origin: ServerId(origin),
            number,
        })
    }

    fn keys() -> impl Strategy<Value = Option<ResumeKey>> {
        proptest::option::of(any::<[u8; 16]>().prop_map(ResumeKey::from_bytes))
    }

    fn outcomes() -> impl Strategy<Value = Outcome> {
        (0u8..5, any::<u16>(), ".{0,30}").prop_map(|(how, code, reason): (u8, u16, String)| {
            let code = Code(code);
            match how {
                0 => Outcome::Verified,
                1 => Outcome::Rejected { code, reason },
                2 => Outcome::Failed { code, reason },
                _ => Outcome::Cancelled {
                    code,
                    reason,
                    by_peer: how == 3,
                },
            }
        })
    }

    fn frames() -> impl Strategy<Value = RelayFrame> {
        prop_oneof![
            (
                ids(),
                (".{0,8}", ".{0,8}", ".{0,8}", ".{0,8}", ".{0,8}"),
                any::<u64>(),
                keys()
            )
                .prop_map(|(id, (room_key, to_key, to, from, name), size, resume)| {
                    RelayFrame::Offer {
                        id,
                        room_key,
                        to_key,
                        to: to.into(),
                        from: from.into(),
                        name: name.into(),
                        size,
                        resume,
                    }
                }),
            (ids(), any::<u64>(), any::<u32>(), any::<[u8; 32]>(), keys()).prop_map(
                |(id, offset, window, prefix_hash, key)| {
                    RelayFrame::Accept {
                        id,
                        offset,
                        window,
                        prefix_hash,
                        key,
                    }
                }
            ),
            (
                ids(),
                any::<u64>(),
                proptest::collection::vec(any::<u8>(), 0..64)
            )
                .prop_map(|(id, offset, data)| RelayFrame::Data {
                    id,
                    offset,
                    data: data.into(),
                }),
            (ids(), any::<u64>()).prop_map(|(id, confirmed)| RelayFrame::Credit { id, confirmed }),
            (ids(), any::<[u8; 32]>()).prop_map(|(id, hash)| RelayFrame::Done { id, hash }),
            (ids(), outcomes()).prop_map(|(id, outcome)| RelayFrame::End { id, outcome }),
            (
                ids(),
                (".{0,8}", ".{0,8}", ".{0,8}", ".{0,8}", ".{0,8}"),
                (any::<u64>(), any::<u32>()),
                keys()
            )
                .prop_map(
                    |(
                        id,
                        (room_key, to_key, to, from, name),
                        (total_size, manifest_len),
                        resume,
                    )| {
                        RelayFrame::TreeOffer {
                            id,
                            room_key,
                            to_key,
                            to: to.into(),
                            from: from.into(),
                            name: name.into(),
                            total_size,
                            manifest_len,
                            resume,
                        }
                    }
                ),
            (ids(), proptest::collection::vec(any::<u8>(), 0..64)).prop_map(|(id, part)| {
                RelayFrame::TreeManifest {
                    id,
                    part: part.into(),
                }
            }),
            (
                ids(),
                proptest::collection::vec(
                    (any::<u32>(), any::<u64>(), any::<[u8; 32]>()).prop_map(
                        |(index, offset, prefix_hash)| HeldFile {
                            index,
                            offset,
                            prefix_hash,
                        }
                    ),
                    0..4
                )
            )
                .prop_map(|(id, held)| RelayFrame::TreeHeld { id, held }),
            (ids(), any::<u32>(), keys()).prop_map(|(id, window, key)| RelayFrame::TreeAccept {
                id,
                window,
                key
            }),
            (ids(), any::<u32>(), any::<u64>())
                .prop_map(|(id, index, offset)| RelayFrame::TreeFile { id, index, offset }),
            (ids(), any::<u32>(), any::<[u8; 32]>())
                .prop_map(|(id, index, hash)| RelayFrame::TreeFileDone { id, index, hash }),
        ]
    }

    proptest! {
        #[test]
        fn every_frame_comes_back_as_itself(frame in frames()) {
            prop_assert_eq!(decode(&encode(&frame)), Ok(frame));
        }

        #[test]
        fn garbage_is_an_error_or_a_frame_that_encodes_back(
            bytes in proptest::collection::vec(any::<u8>(), 0..96),
        ) {
            if let Ok(frame) = decode(&bytes) {
                prop_assert_eq!(encode(&frame), bytes);
            }
        }
    }

    #[test]
    fn strict_about_what_it_does_not_know() {
        let credit = encode(&RelayFrame::Credit {
            id: RelayId {
                origin: ServerId(7),
                number: 1,
            },
            confirmed: 9,
        });
        assert_eq!(
            decode(&credit[..credit.len() - 1]),
            Err(CodecError::Truncated)
        );
        let mut extra = credit.clone();
        extra.push(0);
        assert_eq!(decode(&extra), Err(CodecError::Trailing(1)));
        let mut newer = credit.clone();
        newer[0] = 2;
        assert_eq!(decode(&newer), Err(CodecError::Version(2)));
        let mut unknown = credit;
        unknown[1] = 0x0D;
        assert_eq!(decode(&unknown), Err(CodecError::Kind(0x0D)));
    }
}
