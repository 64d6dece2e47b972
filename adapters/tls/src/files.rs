//! Opening files that hold secrets or trust decisions without following
//! links, and checking whose they are.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::error::SetupError;

pub(crate) fn io_error(path: &Path, source: io::Error) -> SetupError {
    SetupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn unsafe_(path: &Path, why: &'static str) -> SetupError {
    SetupError::Unsafe {
        path: path.to_path_buf(),
        why,
    }
}

fn check_owner(path: &Path, meta: &fs::Metadata) -> Result<(), SetupError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(unsafe_(path, "it belongs to another user"));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_(path, "it is writable by its group or by others"));
    }
    Ok(())
}

/// Creates `dir` (and its parents) owner-only if missing, then refuses it
/// if it is a link, not a folder, someone else's or writable by others.
pub(crate) fn private_dir(dir: &Path) -> Result<(), SetupError> {
    use std::os::unix::fs::DirBuilderExt;
    if fs::symlink_metadata(dir).is_err() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_error(dir, e))?;
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| io_error(dir, e))?;
    if meta.file_type().is_symlink() {
        return Err(unsafe_(dir, "it is a symbolic link"));
    }
    if !meta.is_dir() {
        return Err(unsafe_(dir, "it is not a folder"));
    }
    check_owner(dir, &meta)
}

/// Reads a file of ours: not through a link, ours, not writable by others.
/// `None` when it does not exist.
pub(crate) fn read_private(path: &Path) -> Result<Option<Vec<u8>>, SetupError> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(unsafe_(path, "it is a symbolic link"))
        }
        Err(e) => return Err(io_error(path, e)),
    };
    let meta = file.metadata().map_err(|e| io_error(path, e))?;
    if !meta.is_file() {
        return Err(unsafe_(path, "it is not a regular file"));
    }
    check_owner(path, &meta)?;
    read_all(file, path).map(Some)
}

fn read_all(mut file: File, path: &Path) -> Result<Vec<u8>, SetupError> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| io_error(path, e))?;
    Ok(bytes)
}

/// Opens `path` for appending, creating it `0600`; never through a link.
pub(crate) fn open_append(path: &Path) -> Result<File, SetupError> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => unsafe_(path, "it is a symbolic link"),
            _ => io_error(path, e),
        })?;
    let meta = file.metadata().map_err(|e| io_error(path, e))?;
    check_owner(path, &meta)?;
    Ok(file)
}

/// Writes a new file `0600` whole under a temporary name, then renames it
/// into place, so a crash leaves either no file or a complete one.
pub(crate) fn write_new(path: &Path, bytes: &[u8]) -> Result<(), SetupError> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = Path::new(&tmp);
    // A temporary file is ours to replace: an earlier start died mid-write.
    match fs::remove_file(tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(tmp, e)),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(tmp)
        .map_err(|e| io_error(tmp, e))?;
    file.write_all(bytes).map_err(|e| io_error(tmp, e))?;
    file.sync_all().map_err(|e| io_error(tmp, e))?;
    fs::rename(tmp, path).map_err(|e| io_error(path, e))
}

/// Holds an exclusive lock on `dir` (through `dir/.lock`) until dropped,
/// so that servers starting at once in one folder make one identity: each
/// would otherwise see no files, make its own, and fail on the other's.
pub(crate) fn lock_dir(dir: &Path) -> Result<File, SetupError> {
    use std::os::fd::AsRawFd;
    let path = dir.join(".lock");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| io_error(&path, e))?;
    loop {
        // SAFETY: flock takes a descriptor this function owns, open for
        // the whole call.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(file);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(io_error(&path, error));
        }
    }
}
