//! The text of a benchmark chat message: who sent it, its number in that
//! sender's sequence and when it was sent, in fixed-width digits at fixed
//! places so that a receiver reads them back with no parsing to speak of,
//! padded to the message size asked for.

/// Bytes taken by the fields; the rest is padding.
pub const FIELDS: usize = 33;

/// One message's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// The sender's index.
    pub sender: u32,
    /// Its sequence number, from 0, per sender.
    pub seq: u64,
    /// When it was sent: nanoseconds since the bench's start.
    pub sent: u64,
}

impl Probe {
    /// Writes the message text of `size` bytes (at least [`FIELDS`]) into
    /// `out`, replacing what was there.
    pub fn write(&self, size: usize, out: &mut Vec<u8>) {
        out.clear();
        put_digits(out, u64::from(self.sender), 4);
        out.push(b':');
        put_digits(out, self.seq, 10);
        out.push(b':');
        put_digits(out, self.sent, 16);
        out.push(b':');
        out.resize(size.max(FIELDS), b'.');
    }

    /// Reads the fields back from a message text; `None` if it is not one.
    pub fn read(text: &[u8]) -> Option<Probe> {
        if text.len() < FIELDS || text[4] != b':' || text[15] != b':' || text[32] != b':' {
            return None;
        }
        Some(Probe {
            sender: u32::try_from(digits(&text[0..4])?).ok()?,
            seq: digits(&text[5..15])?,
            sent: digits(&text[16..32])?,
        })
    }
}

fn put_digits(out: &mut Vec<u8>, mut value: u64, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for place in out[start..].iter_mut().rev() {
        *place = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// The value of fixed-width decimal digits, eight at a time: every
/// delivery goes through here.
fn digits(text: &[u8]) -> Option<u64> {
    let mut chunks = text.chunks_exact(8);
    let mut value = 0u64;
    for chunk in &mut chunks {
        let chunk = chunk.try_into().expect("chunks_exact gives 8 bytes");
        value = value
            .wrapping_mul(100_000_000)
            .wrapping_add(eight_digits(chunk)?);
    }
    for &byte in chunks.remainder() {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        value = value.wrapping_mul(10).wrapping_add(u64::from(digit));
    }
    Some(value)
}

/// Eight ASCII digits read as one integer, the first digit in the lowest
/// byte, combined in pairs, then fours, then eights, with no loop.
fn eight_digits(chunk: [u8; 8]) -> Option<u64> {
    let values = u64::from_le_bytes(chunk).wrapping_sub(0x3030_3030_3030_3030);
    // A byte below '0' borrows and one above '9' reaches 0x10 once 6 is
    // added: either way a high nibble is set.
    if (values | values.wrapping_add(0x0606_0606_0606_0606)) & 0xF0F0_F0F0_F0F0_F0F0 != 0 {
        return None;
    }
    let pairs = (values * 10 + (values >> 8)) & 0x00FF_00FF_00FF_00FF;
    let fours = (pairs * 100 + (pairs >> 16)) & 0x0000_FFFF_0000_FFFF;
    Some((fours * 10_000 + (fours >> 32)) & 0xFFFF_FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_reads_back_from_its_text() {
        let probe = Probe {
            sender: 7,
            seq: 123_456,
            sent: 9_876_543_210,
        };
        let mut text = Vec::new();
        probe.write(64, &mut text);
        assert_eq!(text.len(), 64);
        assert!(text.starts_with(b"0007:0000123456:0000009876543210:...."));
        assert_eq!(Probe::read(&text), Some(probe));
        assert_eq!(Probe::read(b"hello"), None);
        text[20] = b'/';
        assert_eq!(Probe::read(&text), None);
        text[20] = b'0';
        text[3] = b'x';
        assert_eq!(Probe::read(&text), None);
    }

    #[test]
    fn digits_read_every_value_and_refuse_every_stray_byte() {
        for value in [0u64, 7, 12_345_678, 99_999_999, 1_234_567_890_123_456] {
            let text = format!("{value:016}");
            assert_eq!(digits(text.as_bytes()), Some(value), "{text}");
            assert_eq!(digits(&text.as_bytes()[6..]), Some(value % 10_000_000_000));
        }
        for stray in [b'/', b':', b'?', b'a', 0, 0xFF] {
            for at in 0..10 {
                let mut text = *b"0123456789";
                text[at] = stray;
                assert_eq!(digits(&text), None, "{text:?}");
            }
        }
    }
}
