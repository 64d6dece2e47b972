//! Files being sent, and positioned reads and writes shared with the
//! receiving side.

use bytes::Bytes;
use std::fs::File;
use std::io;
use std::path::Path;

/// A file being sent.
#[derive(Debug)]
pub struct Sending {
    file: File,
    size: u64,
}

impl Sending {
    /// Opens `path` for sending; returns it with its file name and size.
    pub fn open(path: impl AsRef<Path>) -> io::Result<(Sending, String, u64)> {
        let path = path.as_ref();
        let file = File::open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", path.display()),
            ));
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} has no UTF-8 file name", path.display()),
                )
            })?
            .to_string();
        let size = meta.len();
        Ok((Sending { file, size }, name, size))
    }

    /// Size when opened.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Reads exactly `len` bytes at `offset`; a file that shrank meanwhile is
    /// an error.
    pub fn read_at(&mut self, offset: u64, len: u32) -> io::Result<Bytes> {
        read_exact_at(&self.file, offset, len)
    }
}

pub(crate) fn read_exact_at(file: &File, offset: u64, len: u32) -> io::Result<Bytes> {
    // Zeroed first, then one positioned read: a memset costs less than the
    // three extra `read` calls `read_to_end` makes growing its reads from
    // 8 KiB, and no `lseek` is needed.
    let mut buf = vec![0; len as usize];
    match positioned::read_exact_at(file, &mut buf, offset) {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file got shorter while being sent",
        )),
        result => result.map(|()| Bytes::from(buf)),
    }
}

/// Reads and writes at an offset, without moving a shared file position:
/// one system call where seeking first takes two.
pub(crate) mod positioned {
    use std::fs::File;
    use std::io;

    #[cfg(unix)]
    pub(crate) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }

    #[cfg(unix)]
    pub(crate) fn write_all_at(file: &File, data: &[u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(file, data, offset)
    }

    #[cfg(not(unix))]
    pub(crate) fn read_exact_at(mut file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(buf)
    }

    #[cfg(not(unix))]
    pub(crate) fn write_all_at(mut file: &File, data: &[u8], offset: u64) -> io::Result<()> {
        use std::io::{Seek, SeekFrom, Write};
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(data)
    }
}
