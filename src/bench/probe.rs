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

fn digits(text: &[u8]) -> Option<u64> {
    text.iter().try_fold(0u64, |value, &digit| {
        digit
            .is_ascii_digit()
            .then(|| value * 10 + u64::from(digit - b'0'))
    })
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
        text[3] = b'x';
        assert_eq!(Probe::read(&text), None);
    }
}
