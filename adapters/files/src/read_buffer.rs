//! A per-connection read buffer that costs little while a peer is quiet.

/// Starts at [`START`](Self::START) bytes and doubles, up to
/// [`MAX`](Self::MAX), each time a read fills it: a chatting or idle
/// connection keeps 4 KiB, a file upload soon reads 64 KiB at a time. With
/// a buffer per connection (a reader thread or task each), 64 KiB from the
/// start made 1,000 chat clients cost 64 MiB.
#[derive(Debug)]
pub struct ReadBuffer {
    buf: Vec<u8>,
}

impl Default for ReadBuffer {
    fn default() -> Self {
        ReadBuffer::new()
    }
}

impl ReadBuffer {
    /// Size to begin with.
    pub const START: usize = 4 * 1024;
    /// Size it grows to at most.
    pub const MAX: usize = 64 * 1024;

    /// A buffer of [`START`](Self::START) bytes.
    pub fn new() -> Self {
        ReadBuffer {
            buf: vec![0; Self::START],
        }
    }

    /// Where the next read goes.
    pub fn space(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// The first `n` bytes of the last read, recording whether it filled
    /// the buffer (then the next one gets twice the room).
    pub fn filled(&mut self, n: usize) -> &[u8] {
        let len = self.buf.len();
        if n == len && len < Self::MAX {
            // The bytes just read stay in place: the buffer only grows.
            self.buf.resize((len * 2).min(Self::MAX), 0);
        }
        &self.buf[..n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_while_reads_fill_it_and_keeps_the_data() {
        let mut b = ReadBuffer::new();
        assert_eq!(b.space().len(), ReadBuffer::START);
        b.space()[..3].copy_from_slice(b"abc");
        assert_eq!(b.filled(3), b"abc");
        assert_eq!(b.space().len(), ReadBuffer::START, "a short read");
        let full = b.space().len();
        b.space().fill(7);
        assert!(b.filled(full).iter().all(|&x| x == 7));
        assert_eq!(b.space().len(), 2 * ReadBuffer::START);
        for _ in 0..10 {
            let n = b.space().len();
            b.filled(n);
        }
        assert_eq!(b.space().len(), ReadBuffer::MAX);
    }
}
