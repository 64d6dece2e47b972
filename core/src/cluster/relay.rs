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
use crate::frame::Hash;
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
            | RelayFrame::End { id, .. } => *id,
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
                } => room_key.len() + to_key.len() + to.len() + from.len() + name.len(),
                RelayFrame::Data { data, .. } => data.len(),
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
        unknown[1] = 0x09;
        assert_eq!(decode(&unknown), Err(CodecError::Kind(9)));
    }
}
