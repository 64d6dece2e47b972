//! Harnesses for cargo-fuzz and the corpus regression test.
//!
//! Each target under `fuzz/fuzz_targets/` is a one-line shim that calls the
//! function of the same name here, and `core/tests/corpus.rs` runs every file
//! committed under `fuzz/corpus/<target>/` through it on stable Rust, so the
//! corpus is a regression suite even where there is no nightly toolchain.
//!
//! Not a stable API: it exists only with the `fuzzing` feature and changes
//! whenever the harnesses do. A harness panics when it finds a bug; it never
//! panics on input the code under test is right to reject.

use crate::error::{DecodeError, LimitExceeded, Malformed};
use crate::frame::{decode, Frame, HEADER_LEN};
use bytes::BytesMut;

/// What one call to [`decode`] gave, with the input bytes a frame came from.
#[derive(Debug, PartialEq)]
enum Step<'a> {
    Frame(Frame, &'a [u8]),
    NeedMore,
    Failed(DecodeError),
}

/// Frame decoder: a stream of frames under a body limit.
///
/// `data[0]` selects the limit, `1 << (data[0] % 21)` bytes (1 B to 1 MiB);
/// the rest is the stream. Checks, for every call to [`decode`]:
///
/// * the codec is canonical: a frame decoded from bytes `b` encodes to exactly
///   `b`, and decoding that again gives the same frame;
/// * a decoded body is within the limit;
/// * `Ok(None)`, and an error raised from the header alone (length over the
///   limit, unknown critical type), consume nothing and do not grow the
///   buffer: 5 bytes from a peer never make the decoder reserve memory;
/// * no call grows the buffer's capacity;
/// * the stream fed in small pieces, as TCP may deliver it, gives the same
///   frames and the same final outcome as the stream fed whole. The piece
///   size, 1 to 13 bytes, also comes from `data[0]`.
pub fn frame_decode(data: &[u8]) {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let limit = 1u32 << (selector % 21);
    let piece = 1 + usize::from(selector / 21);

    let whole = decode_whole(stream, limit);
    for step in &whole {
        if let Step::Frame(frame, bytes) = step {
            check_canonical(frame, bytes, limit);
        }
    }
    let pieces = decode_in_pieces(stream, limit, piece);
    assert_eq!(
        whole, pieces,
        "feeding the stream in {piece}-byte pieces changed what was decoded"
    );
}

/// Decodes `stream` from one buffer until `Ok(None)` or an error, checking
/// the buffer after each call. The last step is never a frame.
fn decode_whole(stream: &[u8], limit: u32) -> Vec<Step<'_>> {
    let mut buf = BytesMut::from(stream);
    let mut steps = Vec::new();
    loop {
        let step = decode_one(&mut buf, stream, limit);
        let done = !matches!(step, Step::Frame(..));
        steps.push(step);
        if done {
            return steps;
        }
    }
}

/// Feeds `stream` into a buffer `piece` bytes at a time, decoding all it can
/// after each piece. Stops at the first error, or at `Ok(None)` once all of
/// the stream is in, like [`decode_whole`].
fn decode_in_pieces(stream: &[u8], limit: u32, piece: usize) -> Vec<Step<'_>> {
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut steps = Vec::new();
    loop {
        let step = decode_one(&mut buf, &stream[..fed], limit);
        match step {
            Step::NeedMore if fed < stream.len() => {
                let next = (fed + piece).min(stream.len());
                buf.extend_from_slice(&stream[fed..next]);
                fed = next;
            }
            Step::Frame(..) => steps.push(step),
            Step::NeedMore | Step::Failed(_) => {
                steps.push(step);
                return steps;
            }
        }
    }
}

/// One call to [`decode`] on `buf`, which holds the tail of `fed` (all the
/// bytes given to the buffer so far). Checks what the call did to `buf`.
fn decode_one<'a>(buf: &mut BytesMut, fed: &'a [u8], limit: u32) -> Step<'a> {
    let start = fed.len() - buf.len();
    let (len, capacity) = (buf.len(), buf.capacity());
    let result = decode(buf, limit);
    assert!(
        buf.capacity() <= capacity,
        "decode grew the buffer from {capacity} to {} bytes",
        buf.capacity()
    );
    match result {
        Ok(Some(frame)) => {
            let end = fed.len() - buf.len();
            let bytes = &fed[start..end];
            assert!(
                bytes.len() >= HEADER_LEN && bytes.len() - HEADER_LEN <= limit as usize,
                "decoded a {}-byte frame under a {limit}-byte body limit",
                bytes.len()
            );
            Step::Frame(frame, bytes)
        }
        Ok(None) => {
            assert_eq!(buf.len(), len, "Ok(None) consumed input");
            assert_eq!(buf[..], fed[start..], "Ok(None) changed the buffer");
            Step::NeedMore
        }
        Err(error) => {
            let from_header = matches!(
                error,
                DecodeError::LimitExceeded(LimitExceeded::FrameTooLarge { .. })
                    | DecodeError::Malformed(Malformed::UnknownFrameType(_))
            );
            if from_header {
                assert_eq!(buf.len(), len, "{error} consumed input");
                assert_eq!(buf.capacity(), capacity, "{error} resized the buffer");
            }
            Step::Failed(error)
        }
    }
}

/// Checks `encode(frame) == bytes` and `decode(bytes) == frame`.
fn check_canonical(frame: &Frame, bytes: &[u8], limit: u32) {
    let mut encoded = BytesMut::new();
    frame
        .encode(&mut encoded)
        .unwrap_or_else(|e| panic!("a decoded {} frame does not encode: {e}", frame.name()));
    assert_eq!(
        encoded[..],
        bytes[..],
        "{} frame re-encodes to other bytes than it was decoded from",
        frame.name()
    );
    match decode(&mut encoded, limit) {
        Ok(Some(again)) => assert_eq!(&again, frame, "re-encoded frame decodes differently"),
        other => panic!(
            "re-encoded {} frame does not decode: {other:?}",
            frame.name()
        ),
    }
    assert!(encoded.is_empty(), "re-encoded frame left bytes behind");
}

/// Feeds a [`Hub`] with what fuzzer input says arrives from up to four
/// clients, in arbitrary splits and interleavings, with time passing. The hub
/// must never panic, and what it buffers for any client stays bounded.
///
/// Input: one byte of options, then operations: `[op, client, len, bytes…]`.
/// Clients may first complete a real handshake (option bit 0), so that the
/// bytes exercise the chat and transfer states too. `start` is any instant:
/// the core reads no clock, so the caller provides one.
pub fn hub_session(data: &[u8], start: std::time::Instant) {
    use crate::transfer::TransferEvent;
    use crate::{ClientConfig, Connection, Hub, HubConfig, HubEvent};
    use std::time::Duration;

    let Some((&options, mut ops)) = data.split_first() else {
        return;
    };
    let mut now = start;
    let config = HubConfig::default();
    let max_frame = config.connection.max_frame as usize;
    let max_outgoing = config.connection.max_outgoing;
    let window = config.connection.window as usize;
    let mut hub = Hub::new(config, now);
    let clients: Vec<_> = (0..4).map(|_| hub.connect(now)).collect();
    if options & 1 == 1 {
        for (i, &id) in clients.iter().enumerate() {
            let mut conn = Connection::client(ClientConfig::new(format!("user{i}")), now);
            while let Some(bytes) = conn.poll_transmit() {
                hub.handle_input(id, now, &bytes);
            }
        }
    }
    while let [op, who, len, rest @ ..] = ops {
        let id = clients[usize::from(*who) % clients.len()];
        let len = usize::from(*len).min(rest.len());
        let (bytes, tail) = rest.split_at(len);
        ops = tail;
        match op % 4 {
            0 | 1 => hub.handle_input(id, now, bytes),
            2 => {
                let ms = bytes
                    .iter()
                    .take(4)
                    .fold(0u64, |acc, &b| acc << 8 | u64::from(b))
                    % 100_000;
                now += Duration::from_millis(ms);
                hub.handle_timeout(now);
            }
            _ => hub.handle_eof(id, now),
        }
        // Act like an adapter: drain output and answer what asks for it.
        while let Some(client) = hub.poll_writable() {
            while hub.poll_transmit(client).is_some() {}
        }
        while let Some(event) = hub.poll_event() {
            let HubEvent::Transfer { client, event } = event else {
                continue;
            };
            let _ = match event {
                TransferEvent::Offered { id, .. } => hub.accept(client, now, id, 0),
                TransferEvent::NeedChunk { id, offset, len } => {
                    let chunk = bytes::Bytes::from(vec![0u8; len as usize]);
                    hub.supply_chunk(client, now, id, offset, chunk)
                }
                TransferEvent::Chunk { id, offset, data } => {
                    hub.confirm_written(client, now, id, offset + data.len() as u64)
                }
                TransferEvent::Received { id, .. } => hub.finish_receive(client, now, id, Ok(())),
                _ => Ok(()),
            };
        }
        for &client in &clients {
            if let Some((control, data)) = hub.queued_bytes(client) {
                assert!(
                    control <= max_outgoing + max_frame,
                    "control queue {control}"
                );
                assert!(data <= window + 8 * max_frame, "data queue {data}");
            }
        }
    }
}

/// Checks the file-name rule against itself: an accepted name is a single,
/// plain path component.
pub fn file_name(data: &[u8]) {
    let Ok(name) = std::str::from_utf8(data) else {
        return;
    };
    if crate::filename::check_file_name(name).is_ok() {
        assert!(!name.is_empty() && name.len() <= crate::filename::MAX_FILE_NAME_BYTES);
        assert!(!name.contains(['/', '\\', ':', '\0']));
        assert!(name != "." && name != "..");
        assert!(!name.chars().any(char::is_control));
    }
}
