//! The bytes of an [`EventKind`] as a broker stores them.
//!
//! A broker keeps each log entry's room key, `seq`, origin and operation
//! number in fields of its own (it assigns the `seq`); what happened is one
//! opaque value, this encoding, which a broker never looks into:
//!
//! ```text
//! version 0x01 | kind | fields
//!   kind 0x01 JOINED:  name: str16
//!   kind 0x02 LEFT:    name: str16, code: u16
//!   kind 0x03 MESSAGE: from: str16, text: str16
//! str16 = length: u16 big-endian, then that many bytes of UTF-8
//! ```
//!
//! Every server of a cluster reads every entry, so decoding is strict: a
//! value that is not exactly one event of this form is an error, never a
//! guess.
//!
//! A room's history (messages kept for joiners) is a list of entries of
//! its own, each `time: u64 big-endian (ms since the Unix epoch) | from:
//! str16 | text: str16` ([`encode_history`]).
//!
//! ```
//! use ferry_core::cluster::{codec, EventKind};
//!
//! let kind = EventKind::Message { from: "alice".into(), text: "hi".into() };
//! let bytes = codec::encode(&kind);
//! assert_eq!(bytes, b"\x01\x03\x00\x05alice\x00\x02hi");
//! assert_eq!(codec::decode(&bytes), Ok(kind));
//! ```

use super::bus::EventKind;
use crate::code::Code;
use crate::history::HistoryEntry;
use crate::text::Text;
use alloc::vec::Vec;
use bytes::Bytes;

/// The first byte of every encoded event.
pub const VERSION: u8 = 0x01;

const JOINED: u8 = 0x01;
const LEFT: u8 = 0x02;
const MESSAGE: u8 = 0x03;

/// Why a stored event could not be decoded: a broker holding values that
/// no ferry server wrote, or a newer server's format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The value ended inside a field.
    #[error("the event ends early")]
    Truncated,
    /// The first byte is not [`VERSION`].
    #[error("event format {0:#04x} is not one this server reads")]
    Version(u8),
    /// The kind byte names no event.
    #[error("unknown event kind {0:#04x}")]
    Kind(u8),
    /// A string is not UTF-8.
    #[error("a string of the event is not UTF-8")]
    NotUtf8,
    /// Bytes after the event's last field.
    #[error("{0} bytes after the event")]
    Trailing(usize),
}

/// `kind` as bytes. Strings longer than 65,535 bytes are cut at a
/// character boundary (no ferry frame carries longer ones).
pub fn encode(kind: &EventKind) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(VERSION);
    match kind {
        EventKind::Joined { name } => {
            out.push(JOINED);
            put_str(&mut out, name);
        }
        EventKind::Left { name, code } => {
            out.push(LEFT);
            put_str(&mut out, name);
            out.extend_from_slice(&code.0.to_be_bytes());
        }
        EventKind::Message { from, text } => {
            out.push(MESSAGE);
            put_str(&mut out, from);
            put_str(&mut out, text);
        }
    }
    out
}

/// The event `bytes` holds.
pub fn decode(bytes: &[u8]) -> Result<EventKind, CodecError> {
    let mut input = Reader(bytes);
    let kind = decode_one(&mut input)?;
    match input.0.len() {
        0 => Ok(kind),
        n => Err(CodecError::Trailing(n)),
    }
}

/// The events `bytes` holds one after the other (a broker's log entry for
/// a run of one room's events): at least one, each exactly as [`decode`]
/// reads it.
///
/// ```
/// use ferry_core::cluster::{codec, EventKind};
///
/// let one = EventKind::Message { from: "a".into(), text: "x".into() };
/// let two = EventKind::Message { from: "b".into(), text: "y".into() };
/// let run = [codec::encode(&one), codec::encode(&two)].concat();
/// assert_eq!(codec::decode_run(&run), Ok(vec![one, two]));
/// ```
pub fn decode_run(bytes: &[u8]) -> Result<Vec<EventKind>, CodecError> {
    let mut input = Reader(bytes);
    let mut kinds = vec![decode_one(&mut input)?];
    while !input.0.is_empty() {
        kinds.push(decode_one(&mut input)?);
    }
    Ok(kinds)
}

fn decode_one(input: &mut Reader<'_>) -> Result<EventKind, CodecError> {
    let version = input.u8()?;
    if version != VERSION {
        return Err(CodecError::Version(version));
    }
    let kind = match input.u8()? {
        JOINED => EventKind::Joined { name: input.str()? },
        LEFT => EventKind::Left {
            name: input.str()?,
            code: Code(input.u16()?),
        },
        MESSAGE => EventKind::Message {
            from: input.str()?,
            text: input.str()?,
        },
        other => return Err(CodecError::Kind(other)),
    };
    Ok(kind)
}

/// A history entry as a broker stores it in a room's history list.
///
/// ```
/// use ferry_core::cluster::codec;
/// use ferry_core::history::HistoryEntry;
///
/// let entry = HistoryEntry::new(1_764_633_600_000, "alice", "hi");
/// let bytes = codec::encode_history(&entry);
/// assert_eq!(bytes, b"\x00\x00\x01\x9a\xdc\x5b\xe0\x00\x00\x05alice\x00\x02hi");
/// assert_eq!(codec::decode_history(&bytes), Ok(entry));
/// ```
pub fn encode_history(entry: &HistoryEntry) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + entry.from.len() + entry.text.len());
    out.extend_from_slice(&entry.time_ms.to_be_bytes());
    put_str(&mut out, &entry.from);
    put_str(&mut out, &entry.text);
    out
}

/// The history entry `bytes` holds.
pub fn decode_history(bytes: &[u8]) -> Result<HistoryEntry, CodecError> {
    let mut input = Reader(bytes);
    let time = input.take(8)?;
    let time_ms = u64::from_be_bytes(time.try_into().map_err(|_| CodecError::Truncated)?);
    let entry = HistoryEntry {
        time_ms,
        from: input.str()?,
        text: input.str()?,
    };
    match input.0.len() {
        0 => Ok(entry),
        n => Err(CodecError::Trailing(n)),
    }
}

/// Writes `s` as a `str16`, cut at a character boundary past 65,535 bytes.
pub(super) fn put_str(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

/// Reads the fields of an encoded value, front to back.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl Reader<'_> {
    pub(super) fn take(&mut self, n: usize) -> Result<&[u8], CodecError> {
        if self.0.len() < n {
            return Err(CodecError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    pub(super) fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    pub(super) fn u16(&mut self) -> Result<u16, CodecError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(super) fn str(&mut self) -> Result<Text, CodecError> {
        let len = usize::from(self.u16()?);
        let bytes = Bytes::copy_from_slice(self.take(len)?);
        Text::from_utf8(bytes).map_err(|_| CodecError::NotUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kinds() -> impl Strategy<Value = EventKind> {
        prop_oneof![
            ".{0,20}".prop_map(|name: String| EventKind::Joined { name: name.into() }),
            (".{0,20}", any::<u16>()).prop_map(|(name, code): (String, u16)| EventKind::Left {
                name: name.into(),
                code: Code(code)
            }),
            (".{0,20}", ".{0,200}").prop_map(|(from, text): (String, String)| {
                EventKind::Message {
                    from: from.into(),
                    text: text.into(),
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn every_event_comes_back_as_itself(kind in kinds()) {
            prop_assert_eq!(decode(&encode(&kind)), Ok(kind));
        }

        #[test]
        fn every_run_of_events_comes_back_as_itself(run in proptest::collection::vec(kinds(), 1..8)) {
            let bytes: Vec<u8> = run.iter().flat_map(encode).collect();
            prop_assert_eq!(decode_run(&bytes), Ok(run));
        }

        #[test]
        fn every_history_entry_comes_back_as_itself(
            time_ms in any::<u64>(), from in ".{0,20}", text in ".{0,200}",
        ) {
            let entry = HistoryEntry::new(time_ms, &from, &text);
            prop_assert_eq!(decode_history(&encode_history(&entry)), Ok(entry));
        }

        #[test]
        fn history_garbage_is_an_error_or_an_entry_that_encodes_back(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(entry) = decode_history(&bytes) {
                prop_assert_eq!(encode_history(&entry), bytes);
            }
        }

        #[test]
        fn garbage_is_an_error_or_an_event_that_encodes_back(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(kind) = decode(&bytes) {
                prop_assert_eq!(encode(&kind), bytes);
            }
        }
    }

    #[test]
    fn strict_about_what_it_does_not_know() {
        assert_eq!(decode(b""), Err(CodecError::Truncated));
        assert_eq!(decode(b"\x02\x01"), Err(CodecError::Version(2)));
        assert_eq!(decode(b"\x01\x09"), Err(CodecError::Kind(9)));
        assert_eq!(decode(b"\x01\x01\x00\x03ab"), Err(CodecError::Truncated));
        assert_eq!(decode(b"\x01\x01\x00\x01\xff"), Err(CodecError::NotUtf8));
        assert_eq!(decode(b"\x01\x01\x00\x00!"), Err(CodecError::Trailing(1)));
        let left = EventKind::Left {
            name: "bob".into(),
            code: Code::SERVER_GONE,
        };
        assert_eq!(encode(&left), b"\x01\x02\x00\x03bob\x03\x06");
    }
}
