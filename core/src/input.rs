//! Received bytes gathered into frames, each byte copied once.

use crate::error::DecodeError;
use crate::frame::{decode, Frame, HEADER_LEN};
use bytes::BytesMut;

/// A connection's received bytes not yet decoded.
///
/// Decoded payloads (a file chunk on its way to the disk) share this
/// buffer's memory, so once any is alive the buffer cannot be reused or
/// grown in place: growing it means copying what it holds into a new one.
/// Fed a whole read at a time, the start of the frame that read ends in
/// shared a buffer with the frames before it, and was copied again at the
/// next read: during an upload, a second copy of nearly every byte.
///
/// So bytes go in a piece at a time ([`take_piece`](Self::take_piece)):
/// short frames together, and each large frame in a buffer of its own,
/// sized for the whole frame once its header says how long it is. A peer
/// cannot make that buffer more than twice what it has sent. A payload
/// kept from a large frame therefore holds that frame's memory and nothing
/// else; one from a short frame would hold its neighbours too, so the
/// connection copies those ([`SHARED_BELOW`]).
#[derive(Debug, Default)]
pub(crate) struct InputBuffer {
    buf: BytesMut,
}

impl InputBuffer {
    /// Bytes held.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Memory held for a frame not yet complete: the buffer's room, not
    /// only the bytes in it (a large frame's buffer is sized for the frame
    /// as it arrives). Nothing once every frame is decoded: an idle
    /// connection holds no input, so it is never taken for one that began
    /// a frame and stopped.
    pub(crate) fn held(&self) -> usize {
        match self.buf.is_empty() {
            true => 0,
            false => self.buf.capacity(),
        }
    }

    /// Frees the buffer (the connection is closed).
    pub(crate) fn clear(&mut self) {
        self.buf = BytesMut::new();
    }

    /// Moves the next piece of `data` in, for [`decode`](Self::decode) to
    /// take apart, and returns how many bytes it took (at least one, unless
    /// `data` is empty). Frames whose body is declared over `max_body` are
    /// not sized for: `decode` rejects them.
    pub(crate) fn take_piece(&mut self, data: &[u8], max_body: u32) -> usize {
        let held = self.buf.len();
        let all = (data.len(), data.len());
        let (take, room) = if held > 0 {
            match frame_len(&self.buf, max_body) {
                // A large frame has begun: the rest of it, and not a byte
                // beyond, so that what follows starts a buffer of its own.
                Some(total) if total >= LARGE_FRAME => {
                    let take = (total - held).min(data.len());
                    // The whole rest of the frame, or twice what is held.
                    (take, (total - held).min(held + take))
                }
                // A small frame: its rest, and the small frames after it.
                Some(total) if data.len() > total - held => {
                    let rest = total - held;
                    let take = rest + small_frames(&data[rest..], max_body);
                    (take, take)
                }
                Some(_) => all,
                // Its header first, to know how long it is.
                None if held < HEADER_LEN => {
                    let take = (HEADER_LEN - held).min(data.len());
                    (take, take)
                }
                // Over the limit: `decode` says so.
                None => all,
            }
        } else {
            match small_frames(data, max_body) {
                // A large frame first: a buffer of its own, sized for it.
                0 => {
                    let total = frame_len(data, max_body).unwrap_or(data.len());
                    let take = data.len().min(total);
                    (take, total.min(2 * take))
                }
                small => (small, small),
            }
        };
        self.buf.reserve(room);
        self.buf.extend_from_slice(&data[..take]);
        take
    }

    /// The type byte of the next frame, once it has arrived.
    pub(crate) fn next_type(&self) -> Option<u8> {
        self.buf.first().copied()
    }

    /// Decodes the next frame held, as [`frame::decode`](decode) does.
    pub(crate) fn decode(&mut self, max_body: u32) -> Result<Option<Frame>, DecodeError> {
        decode(&mut self.buf, max_body)
    }
}

/// Frames this long get a buffer of their own. The start of a shorter one
/// is copied along when the buffer grows, which costs less than an
/// allocation of its own (a chat client reads hundreds of frames at once).
const LARGE_FRAME: usize = 16 * 1024;

/// Payloads of frames shorter than this share their buffer with other
/// frames: one kept past the frame's decoding (file data queued for a slow
/// reader or the disk) is copied, so that it does not keep the rest of the
/// buffer alive.
pub(crate) const SHARED_BELOW: usize = LARGE_FRAME;

/// Length, header included, of the frame at the start of `bytes`, once its
/// header is there and declares a body of at most `max_body` bytes.
fn frame_len(bytes: &[u8], max_body: u32) -> Option<usize> {
    let header = bytes.first_chunk::<HEADER_LEN>()?;
    let declared = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    (declared <= max_body).then(|| HEADER_LEN + declared as usize)
}

/// Bytes at the start of `data` that share one buffer: whole frames
/// shorter than [`LARGE_FRAME`], then the rest of `data` if it is the start
/// of another short frame (or of a header, or of a frame over the limit,
/// which `decode` rejects). Stops before a large frame, complete or not.
fn small_frames(data: &[u8], max_body: u32) -> usize {
    let mut end = 0;
    loop {
        match frame_len(&data[end..], max_body) {
            Some(total) if total >= LARGE_FRAME => return end,
            Some(total) if total <= data.len() - end => end += total,
            _ => return data.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Frame;

    fn frame(body: usize) -> Vec<u8> {
        // An extension type version 1 does not define: any body is fine.
        let mut bytes = vec![0x9a];
        bytes.extend_from_slice(&(body as u32).to_be_bytes());
        bytes.resize(HEADER_LEN + body, 7);
        bytes
    }

    #[test]
    fn short_frames_share_and_a_large_one_stands_alone() {
        let mut data = frame(3);
        data.extend(frame(0));
        let short = data.len();
        data.extend(frame(LARGE_FRAME));
        data.extend(frame(4));
        assert_eq!(
            small_frames(&data, 1 << 20),
            short,
            "stops at the large one"
        );
        assert_eq!(small_frames(&data[short..], 1 << 20), 0);
        let mut partial = frame(3);
        partial.extend(&frame(100)[..50]);
        assert_eq!(
            small_frames(&partial, 1000),
            partial.len(),
            "a short partial one joins"
        );
        assert_eq!(
            small_frames(&frame(2000), 1000),
            5 + 2000,
            "over the limit: decode says so"
        );

        // Fed in one read, the large frame gets a buffer of exactly its size.
        let mut input = InputBuffer::default();
        let mut rest = &data[..];
        let first = input.take_piece(rest, 1 << 20);
        assert_eq!(first, short);
        while input.decode(1 << 20).unwrap().is_some() {}
        rest = &rest[first..];
        let second = input.take_piece(rest, 1 << 20);
        assert_eq!(second, HEADER_LEN + LARGE_FRAME);
        assert_eq!(input.buf.capacity(), HEADER_LEN + LARGE_FRAME);
        assert!(input.decode(1 << 20).unwrap().is_some());
        assert_eq!(input.take_piece(&rest[second..], 1 << 20), 9);
    }

    #[test]
    fn only_a_frame_begun_is_held() {
        let mut input = InputBuffer::default();
        let big = frame(40_000);
        assert_eq!(input.take_piece(&big[..30_000], 100_000), 30_000);
        assert!(input.held() >= 30_000, "a frame begun: {}", input.held());
        assert!(input.decode(100_000).unwrap().is_none());
        input.take_piece(&big[30_000..], 100_000);
        assert!(input.decode(100_000).unwrap().is_some());
        assert_eq!(input.held(), 0, "nothing begun");
    }

    #[test]
    fn a_partial_frame_gets_a_buffer_of_its_own_sized_for_it() {
        let big = frame(60_000);
        let mut data = frame(8);
        data.extend(&big[..40_000]);
        let mut input = InputBuffer::default();
        let first = input.take_piece(&data, 100_000);
        assert_eq!(first, 13, "the whole frame alone");
        assert!(matches!(input.decode(100_000), Ok(Some(_))));
        let second = input.take_piece(&data[first..], 100_000);
        assert_eq!(second, 40_000);
        assert!(input.buf.capacity() >= big.len(), "room for the rest");
        let before = input.buf.as_ptr();
        let rest = input.take_piece(&big[40_000..], 100_000);
        assert_eq!(rest, 20_005);
        assert_eq!(input.buf.as_ptr(), before, "never moved");
        assert!(input.decode(100_000).unwrap().is_some());
        assert_eq!(input.len(), 0);
    }

    #[test]
    fn a_small_start_of_a_large_frame_reserves_only_twice_itself() {
        let mut input = InputBuffer::default();
        let big = frame(1 << 20);
        assert_eq!(input.take_piece(&big[..100], 2 << 20), 100);
        assert!(input.buf.capacity() < 4096, "{}", input.buf.capacity());
    }

    #[test]
    fn a_header_split_anywhere_is_completed_first() {
        let data = frame(10);
        for split in 1..HEADER_LEN {
            let mut input = InputBuffer::default();
            assert_eq!(input.take_piece(&data[..split], 100), split);
            let mut rest = &data[split..];
            while !rest.is_empty() {
                let n = input.take_piece(rest, 100);
                assert!(n > 0);
                rest = &rest[n..];
            }
            assert!(matches!(
                input.decode(100),
                Ok(Some(Frame::Extension { .. }))
            ));
        }
    }
}
