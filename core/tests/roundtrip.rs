//! Property tests of the frame codec: every frame survives encode/decode,
//! streams decode the same however they are split, oversized headers are
//! refused before anything is buffered, and no input panics the decoder.

use bytes::{Bytes, BytesMut};
use ferry_core::code::Code;
use ferry_core::error::{DecodeError, LimitExceeded, Malformed};
use ferry_core::frame::{
    decode, encode_data_header, frame_type, Frame, Hash, HeldFile, Settings, HEADER_LEN,
};
use ferry_core::text::Text;
use ferry_core::{ResumeKey, SessionSecret};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::strategy::Union;

/// The limit frames are decoded with, unless a test says otherwise: 1 MiB.
const LIMIT: u32 = 1 << 20;

/// Up to 40 arbitrary Unicode scalar values.
fn text() -> impl Strategy<Value = Text> {
    vec(any::<char>(), 0..=40).prop_map(|chars| Text::from(chars.into_iter().collect::<String>()))
}

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

/// Any `u16`, often one of the defined codes.
fn code() -> impl Strategy<Value = Code> {
    prop_oneof![select(Code::ALL.to_vec()), any::<u16>().prop_map(Code),]
}

fn hash() -> impl Strategy<Value = Hash> {
    any::<Hash>()
}

fn settings() -> impl Strategy<Value = Settings> {
    any::<[u32; 5]>().prop_map(
        |[max_frame, max_message, chunk_size, window, idle_timeout_ms]| Settings {
            max_frame,
            max_message,
            chunk_size,
            window,
            idle_timeout_ms,
        },
    )
}

/// Every `Frame` variant, with arbitrary field values.
fn frame() -> impl Strategy<Value = Frame> {
    Union::new(vec![
        (vec(any::<u16>(), 1..=255), text(), text(), bytes(64))
            .prop_map(|(versions, name, room, token)| Frame::Hello {
                versions,
                name,
                room,
                token,
            })
            .boxed(),
        (any::<u16>(), text(), text(), settings())
            .prop_map(|(version, name, room, settings)| Frame::Welcome {
                version,
                name,
                room,
                settings,
            })
            .boxed(),
        (code(), text())
            .prop_map(|(code, reason)| Frame::Refuse { code, reason })
            .boxed(),
        any::<u64>().prop_map(|nonce| Frame::Ping { nonce }).boxed(),
        any::<u64>().prop_map(|nonce| Frame::Pong { nonce }).boxed(),
        Just(Frame::Bye).boxed(),
        (code(), text())
            .prop_map(|(code, reason)| Frame::Error { code, reason })
            .boxed(),
        text().prop_map(|text| Frame::Say { text }).boxed(),
        (any::<u64>(), text(), text())
            .prop_map(|(seq, from, text)| Frame::Message { seq, from, text })
            .boxed(),
        (any::<u64>(), text())
            .prop_map(|(seq, name)| Frame::Joined { seq, name })
            .boxed(),
        (any::<u64>(), text(), code())
            .prop_map(|(seq, name, code)| Frame::Left { seq, name, code })
            .boxed(),
        Just(Frame::Who).boxed(),
        vec(text(), 0..=12)
            .prop_map(|names| Frame::Members { names })
            .boxed(),
        (text(), text())
            .prop_map(|(to, text)| Frame::DirectTo { to, text })
            .boxed(),
        (text(), text())
            .prop_map(|(from, text)| Frame::DirectFrom { from, text })
            .boxed(),
        (code(), text())
            .prop_map(|(code, reason)| Frame::Bounce { code, reason })
            .boxed(),
        (any::<u32>(), any::<u64>(), text(), text())
            .prop_map(|(id, size, name, peer)| Frame::Offer {
                id,
                size,
                name,
                peer,
            })
            .boxed(),
        (any::<u32>(), any::<u64>(), any::<u32>(), hash())
            .prop_map(|(id, offset, window, prefix_hash)| Frame::Accept {
                id,
                offset,
                window,
                prefix_hash,
            })
            .boxed(),
        (any::<u32>(), code(), text())
            .prop_map(|(id, code, reason)| Frame::Reject { id, code, reason })
            .boxed(),
        (any::<u32>(), any::<u64>(), bytes(2048))
            .prop_map(|(id, offset, data)| Frame::Data { id, offset, data })
            .boxed(),
        (any::<u32>(), any::<u64>())
            .prop_map(|(id, written)| Frame::Credit { id, written })
            .boxed(),
        (any::<u32>(), hash())
            .prop_map(|(id, hash)| Frame::Done { id, hash })
            .boxed(),
        any::<u32>().prop_map(|id| Frame::Verified { id }).boxed(),
        (any::<u32>(), code(), text())
            .prop_map(|(id, code, reason)| Frame::Failed { id, code, reason })
            .boxed(),
        (any::<u32>(), code(), text())
            .prop_map(|(id, code, reason)| Frame::Cancel { id, code, reason })
            .boxed(),
        (any::<u32>(), any::<[u8; 16]>())
            .prop_map(|(id, key)| Frame::ResumeKey {
                id,
                key: ResumeKey::from_bytes(key),
            })
            .boxed(),
        (any::<u32>(), any::<[u8; 16]>())
            .prop_map(|(id, key)| Frame::Resume {
                id,
                key: ResumeKey::from_bytes(key),
            })
            .boxed(),
        any::<[u8; 24]>()
            .prop_map(|secret| Frame::Session {
                secret: SessionSecret::from_bytes(secret),
            })
            .boxed(),
        any::<[u8; 24]>()
            .prop_map(|secret| Frame::Reclaim {
                secret: SessionSecret::from_bytes(secret),
            })
            .boxed(),
        (any::<u64>(), text(), text())
            .prop_map(|(time_ms, from, text)| Frame::History {
                time_ms,
                from,
                text,
            })
            .boxed(),
        (any::<u32>(), any::<u64>(), any::<u32>(), text(), text())
            .prop_map(
                |(id, total_size, manifest_len, name, peer)| Frame::TreeOffer {
                    id,
                    total_size,
                    manifest_len,
                    name,
                    peer,
                },
            )
            .boxed(),
        (any::<u32>(), bytes(512))
            .prop_map(|(id, part)| Frame::TreeManifest { id, part })
            .boxed(),
        (
            any::<u32>(),
            vec((any::<u32>(), any::<u64>(), hash()), 0..=8),
        )
            .prop_map(|(id, records)| Frame::TreeHeld {
                id,
                records: records
                    .into_iter()
                    .map(|(index, offset, prefix_hash)| HeldFile {
                        index,
                        offset,
                        prefix_hash,
                    })
                    .collect(),
            })
            .boxed(),
        (any::<u32>(), any::<u32>())
            .prop_map(|(id, window)| Frame::TreeAccept { id, window })
            .boxed(),
        (any::<u32>(), any::<u32>(), any::<u64>())
            .prop_map(|(id, index, offset)| Frame::TreeFile { id, index, offset })
            .boxed(),
        (any::<u32>(), any::<u32>(), hash())
            .prop_map(|(id, index, hash)| Frame::TreeFileDone { id, index, hash })
            .boxed(),
        any::<u32>()
            .prop_map(|bits| Frame::Features { bits })
            .boxed(),
        // The extension types version 1 does not define.
        ((frame_type::RECLAIM + 1)..=u8::MAX, bytes(256))
            .prop_filter("not a defined extension", |(t, _)| {
                !frame_type::is_known(*t)
            })
            .prop_map(|(frame_type, body)| Frame::Extension { frame_type, body })
            .boxed(),
    ])
}

fn encode(frame: &Frame) -> BytesMut {
    let mut out = BytesMut::new();
    frame
        .encode(&mut out)
        .expect("generated frames are encodable");
    out
}

fn encode_all(frames: &[Frame]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for frame in frames {
        frame
            .encode(&mut out)
            .expect("generated frames are encodable");
    }
    out.to_vec()
}

/// Decodes every whole frame in `buf`, leaving an incomplete tail in it.
fn drain(buf: &mut BytesMut, out: &mut Vec<Frame>) -> Result<(), TestCaseError> {
    loop {
        let before = buf.len();
        match decode(buf, LIMIT) {
            Ok(Some(frame)) => out.push(frame),
            Ok(None) => {
                prop_assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(format!("decode failed: {e}"))),
        }
    }
}

/// Feeds `bytes` to a decoder in pieces ending at `cuts` (sorted, deduplicated
/// by the caller or not), decoding after each piece.
fn decode_in_pieces(bytes: &[u8], cuts: &[usize]) -> Result<Vec<Frame>, TestCaseError> {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain([bytes.len()].iter()) {
        let end = end.clamp(start, bytes.len());
        buf.extend_from_slice(&bytes[start..end]);
        start = end;
        drain(&mut buf, &mut frames)?;
    }
    prop_assert!(buf.is_empty(), "{} bytes left undecoded", buf.len());
    Ok(frames)
}

/// A frame type whose unknown-ness is not an error: defined critical types
/// and the extension range.
fn acceptable_type() -> impl Strategy<Value = u8> {
    prop_oneof![
        (0..=u8::MAX).prop_filter("a defined critical type", |&t| frame_type::is_known(t)),
        frame_type::FIRST_EXTENSION..=u8::MAX,
    ]
}

/// Decodes everything it can from `bytes` and checks the decoder's contract
/// along the way. Returns normally on any outcome; fails only on a broken
/// contract (a panic inside `decode` fails the test by itself).
fn decode_anything(bytes: &[u8], limit: u32) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::from(bytes);
    loop {
        let before = buf.clone();
        match decode(&mut buf, limit) {
            Ok(Some(frame)) => {
                let consumed = before.len() - buf.len();
                prop_assert!(consumed >= HEADER_LEN);
                let declared = u32::from_be_bytes([before[1], before[2], before[3], before[4]]);
                prop_assert!(declared <= limit);
                prop_assert_eq!(consumed, HEADER_LEN + declared as usize);
                // The encoding is canonical: what decoded re-encodes to the
                // very bytes it came from.
                prop_assert_eq!(&encode(&frame)[..], &before[..consumed]);
            }
            Ok(None) => {
                prop_assert_eq!(&buf[..], &before[..], "Ok(None) consumed bytes");
                return Ok(());
            }
            Err(_) => return Ok(()),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// (1) decode(encode(f)) == f, consuming exactly the encoding.
    #[test]
    fn encode_then_decode_is_identity(frame in frame()) {
        let encoded = encode(&frame);
        let declared = u32::from_be_bytes([encoded[1], encoded[2], encoded[3], encoded[4]]);
        prop_assert_eq!(encoded[0], frame.frame_type());
        prop_assert_eq!(declared as usize, encoded.len() - HEADER_LEN);

        let mut buf = encoded.clone();
        let decoded = decode(&mut buf, LIMIT);
        prop_assert_eq!(decoded, Ok(Some(frame.clone())));
        prop_assert!(buf.is_empty(), "{} bytes left", buf.len());

        // The zero-copy DATA path writes the same bytes as the frame.
        if let Frame::Data { id, offset, data } = &frame {
            let mut split = BytesMut::new();
            encode_data_header(&mut split, *id, *offset, data.len());
            split.extend_from_slice(data);
            prop_assert_eq!(&split[..], &encoded[..]);
        }
    }

    /// (2) A stream of frames split at arbitrary points decodes to the same frames.
    #[test]
    fn split_stream_decodes_the_same(
        frames in vec(frame(), 1..8),
        cuts in vec(any::<Index>(), 0..12),
    ) {
        let bytes = encode_all(&frames);
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cuts.sort_unstable();
        prop_assert_eq!(decode_in_pieces(&bytes, &cuts)?, frames);
    }

    /// (2) ... including one byte at a time.
    #[test]
    fn byte_by_byte_stream_decodes_the_same(frames in vec(frame(), 1..4)) {
        let bytes = encode_all(&frames);
        let cuts: Vec<usize> = (1..bytes.len()).collect();
        prop_assert_eq!(decode_in_pieces(&bytes, &cuts)?, frames);
    }

    /// (3) A header over the limit is refused as soon as its 5 bytes are in,
    /// before the buffer grows toward the declared length.
    #[test]
    fn oversized_header_is_refused_from_the_header_alone(
        frame_type in acceptable_type(),
        limit in prop_oneof![0..=8192u32, any::<u32>()],
        excess in 1..=u32::MAX,
        body_prefix in vec(any::<u8>(), 0..16),
    ) {
        prop_assume!(limit < u32::MAX);
        let declared = limit.saturating_add(excess);
        let mut stream = vec![frame_type];
        stream.extend_from_slice(&declared.to_be_bytes());
        stream.extend_from_slice(&body_prefix);

        let mut buf = BytesMut::new();
        for (i, &byte) in stream.iter().enumerate() {
            buf.extend_from_slice(&[byte]);
            let pushed = i + 1;
            let result = decode(&mut buf, limit);
            prop_assert!(
                buf.capacity() < pushed + 64,
                "capacity {} after {} bytes", buf.capacity(), pushed
            );
            if pushed < HEADER_LEN {
                prop_assert_eq!(result, Ok(None));
                prop_assert_eq!(buf.len(), pushed);
            } else {
                prop_assert_eq!(
                    result,
                    Err(DecodeError::LimitExceeded(LimitExceeded::FrameTooLarge {
                        frame_type,
                        declared,
                        limit,
                    }))
                );
                break;
            }
        }
    }

    /// (3) An unknown critical type is refused from the header alone too,
    /// whatever length it declares.
    #[test]
    fn unknown_critical_type_is_refused_from_the_header_alone(
        frame_type in (0..frame_type::FIRST_EXTENSION)
            .prop_filter("an undefined critical type", |&t| !frame_type::is_known(t)),
        declared in any::<u32>(),
        limit in any::<u32>(),
    ) {
        let mut header = vec![frame_type];
        header.extend_from_slice(&declared.to_be_bytes());
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&header);
        prop_assert_eq!(
            decode(&mut buf, limit),
            Err(DecodeError::Malformed(Malformed::UnknownFrameType(frame_type)))
        );
        prop_assert!(buf.capacity() < HEADER_LEN + 64);
    }

    /// (4) Arbitrary bytes never panic the decoder, and whatever decodes is
    /// canonical.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in vec(any::<u8>(), 0..600),
        limit in prop_oneof![Just(LIMIT), 0..=64u32, any::<u32>()],
    ) {
        decode_anything(&bytes, limit)?;
    }

    /// (4) ... nor do plausible headers followed by arbitrary bodies.
    #[test]
    fn arbitrary_bodies_never_panic(
        frame_type in acceptable_type(),
        body in vec(any::<u8>(), 0..300),
        extra in vec(any::<u8>(), 0..8),
    ) {
        let mut bytes = vec![frame_type];
        bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&body);
        bytes.extend_from_slice(&extra);
        decode_anything(&bytes, LIMIT)?;
    }

    /// (4) ... nor do valid streams with a few bytes corrupted.
    #[test]
    fn corrupted_frames_never_panic(
        frames in vec(frame(), 1..4),
        mutations in vec((any::<Index>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = encode_all(&frames);
        for (at, value) in mutations {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        decode_anything(&bytes, LIMIT)?;
    }
}

/// The decoder refuses a `HELLO` with no versions, so the encoder must not
/// produce one.
#[test]
fn hello_without_versions_is_not_encodable() {
    let mut out = BytesMut::from(&b"kept"[..]);
    let hello = Frame::Hello {
        versions: vec![],
        name: Text::from("alice"),
        room: Text::new(),
        token: Bytes::new(),
    };
    assert!(hello.encode(&mut out).is_err());
    assert_eq!(
        &out[..],
        b"kept",
        "a failed encode leaves the buffer as it was"
    );
}

/// An extension frame needs an extension type.
#[test]
fn extension_below_0x80_is_not_encodable() {
    let mut out = BytesMut::new();
    let frame = Frame::Extension {
        frame_type: 0x7f,
        body: Bytes::new(),
    };
    assert!(frame.encode(&mut out).is_err());
    assert!(out.is_empty());
}

/// `RESUME_KEY` and `RESUME` have variants of their own: as opaque
/// extensions they could encode bodies that decode as something else, or
/// not at all.
#[test]
fn defined_extensions_are_not_encodable_as_opaque_ones() {
    for frame_type in [frame_type::RESUME_KEY, frame_type::RESUME] {
        let mut out = BytesMut::new();
        let frame = Frame::Extension {
            frame_type,
            body: Bytes::from_static(&[0; 20]),
        };
        assert!(frame.encode(&mut out).is_err(), "{frame_type:#04x}");
        assert!(out.is_empty());
    }
}

/// A resume key's body is exactly 20 bytes; anything else is malformed
/// (as any known frame's would be), never skipped.
#[test]
fn resume_frames_of_the_wrong_length_are_malformed() {
    for frame_type in [frame_type::RESUME_KEY, frame_type::RESUME] {
        for len in [0usize, 4, 19, 21, 36] {
            let mut buf = BytesMut::new();
            buf.extend_from_slice(&[frame_type]);
            buf.extend_from_slice(&(len as u32).to_be_bytes());
            buf.extend_from_slice(&vec![0xab; len]);
            let result = decode(&mut buf, LIMIT);
            let expected = if len < 20 {
                matches!(
                    result,
                    Err(DecodeError::Malformed(Malformed::Truncated { .. }))
                )
            } else {
                matches!(
                    result,
                    Err(DecodeError::Malformed(Malformed::TrailingBytes { .. }))
                )
            };
            assert!(expected, "type {frame_type:#04x}, {len} bytes: {result:?}");
        }
    }
}

/// The tree frames of a fixed size, and `FEATURES`, refuse any other
/// length; `TREE_HELD` takes only whole records of 44 bytes after its id.
#[test]
fn tree_frames_of_the_wrong_length_are_malformed() {
    let fixed = [
        (frame_type::TREE_ACCEPT, 8),
        (frame_type::TREE_FILE, 16),
        (frame_type::TREE_FILE_DONE, 40),
        (frame_type::FEATURES, 4),
    ];
    for (frame_type, size) in fixed {
        for len in [0usize, 1, size - 1, size, size + 1, size + 44] {
            let mut buf = BytesMut::new();
            buf.extend_from_slice(&[frame_type]);
            buf.extend_from_slice(&(len as u32).to_be_bytes());
            buf.extend_from_slice(&vec![0xab; len]);
            let result = decode(&mut buf, LIMIT);
            let ok = match len.cmp(&size) {
                std::cmp::Ordering::Less => matches!(
                    result,
                    Err(DecodeError::Malformed(Malformed::Truncated { .. }))
                ),
                std::cmp::Ordering::Equal => matches!(result, Ok(Some(_))),
                std::cmp::Ordering::Greater => matches!(
                    result,
                    Err(DecodeError::Malformed(Malformed::TrailingBytes { .. }))
                ),
            };
            assert!(ok, "type {frame_type:#04x}, {len} bytes: {result:?}");
        }
    }
    for len in 0usize..=4 + 2 * 44 + 1 {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[frame_type::TREE_HELD]);
        buf.extend_from_slice(&(len as u32).to_be_bytes());
        buf.extend_from_slice(&vec![0xab; len]);
        let result = decode(&mut buf, LIMIT);
        if len >= 4 && (len - 4) % 44 == 0 {
            match result {
                Ok(Some(Frame::TreeHeld { records, .. })) => {
                    assert_eq!(records.len(), (len - 4) / 44)
                }
                other => panic!("TREE_HELD of {len} bytes: {other:?}"),
            }
        } else {
            assert!(
                matches!(
                    result,
                    Err(DecodeError::Malformed(Malformed::Truncated { .. }))
                ),
                "TREE_HELD of {len} bytes: {result:?}"
            );
        }
    }
}

/// The key is a secret: neither the key nor a frame carrying it prints it.
#[test]
fn resume_keys_do_not_print() {
    let key = ResumeKey::from_bytes([0x5a; 16]);
    assert_eq!(format!("{key:?}"), "ResumeKey(..)");
    let frame = Frame::Resume { id: 2, key };
    assert_eq!(format!("{frame:?}"), "Resume { id: 2, key: ResumeKey(..) }");
    assert!(!format!("{frame:?}").contains("90"));
    assert_eq!(key, ResumeKey::from_bytes([0x5a; 16]));
    assert_ne!(key, ResumeKey::from_bytes([0x5b; 16]));
    assert_eq!(key.as_bytes(), &[0x5a; 16]);
}
