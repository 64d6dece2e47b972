//! A directory reached through its open descriptor, whose entries are
//! created, opened, moved and removed relative to it and never through a
//! link.
//!
//! A receiver writes only where it decided to write: whoever can put
//! entries into its folder (a shared or group-writable inbox) must not be
//! able to turn it into a writer or reader of other files. Paths are
//! therefore never joined into strings and resolved again: the folder is
//! opened once, every name used is a single component, and each call says
//! what it must find there (`O_NOFOLLOW`, exclusive create, a move that
//! never replaces). A symlink, a hard link or anything but a regular file
//! where ferry keeps its own data is an error, not something to follow.

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// An open directory (see the module's documentation).
#[derive(Debug)]
pub(crate) struct ConfinedDir {
    fd: OwnedFd,
    /// For messages only; never used to reach a file.
    path: PathBuf,
}

/// An entry of a [`ConfinedDir`], as `lstat` sees it (links not followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryStat {
    /// A regular file (not a link, directory, fifo, …).
    pub regular: bool,
    /// A directory (not a link to one).
    pub directory: bool,
    /// Its length in bytes.
    pub len: u64,
    /// Its hard links.
    pub links: u64,
    /// Last modification, seconds since the Unix epoch.
    pub modified: i64,
}

const DIR_FLAGS: OFlags = OFlags::DIRECTORY
    .union(OFlags::RDONLY)
    .union(OFlags::CLOEXEC);

impl ConfinedDir {
    /// Opens the directory at `path`. The path itself may go through links:
    /// it is the operator's choice, not a peer's.
    pub(crate) fn open(path: &Path) -> io::Result<ConfinedDir> {
        let fd = rustix::fs::open(path, DIR_FLAGS, Mode::empty())?;
        Ok(ConfinedDir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Opens (creating it if missing) the subdirectory `name`, which must be
    /// a real directory owned by this process's user, and makes it private
    /// (`0700`): what is kept there is reachable by nobody else.
    pub(crate) fn private_subdir(&self, name: &str) -> io::Result<ConfinedDir> {
        let path = self.path.join(name);
        let private = Mode::RWXU;
        match rustix::fs::mkdirat(&self.fd, name, private) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let fd = rustix::fs::openat(&self.fd, name, DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty())
            .map_err(|e| match e {
                Errno::LOOP | Errno::NOTDIR => io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not a directory (a link?)", path.display()),
                ),
                e => e.into(),
            })?;
        let stat = rustix::fs::fstat(&fd)?;
        if stat.st_uid != rustix::process::geteuid().as_raw() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} belongs to another user", path.display()),
            ));
        }
        if Mode::from_raw_mode(stat.st_mode) & !private != Mode::empty() {
            rustix::fs::fchmod(&fd, private)?;
        }
        Ok(ConfinedDir { fd, path })
    }

    /// The directory's path, for messages.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Creates `name` as a new, empty, private file, open for reading and
    /// writing. Fails if anything is there already, a dangling link too.
    pub(crate) fn create_new(&self, name: &str) -> io::Result<File> {
        let flags =
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.fd, name, flags, Mode::RUSR | Mode::WUSR)?;
        Ok(File::from(fd))
    }

    /// Opens `name` for reading and writing if it is a regular file with a
    /// single link: one this directory alone holds. A link, a second name
    /// for a file elsewhere, a fifo or a device is
    /// [`io::ErrorKind::InvalidData`], and is not opened in a way that
    /// could block or change it.
    pub(crate) fn open_own(&self, name: &str) -> io::Result<File> {
        // NONBLOCK: opening a fifo planted here must not wait for a writer.
        let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.fd, name, flags, Mode::empty()).map_err(|e| match e {
            Errno::LOOP => not_own(name, "a symbolic link"),
            e => e.into(),
        })?;
        let stat = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(not_own(name, "not a regular file"));
        }
        if stat.st_nlink != 1 {
            return Err(not_own(name, "a file with another name (a hard link)"));
        }
        // Regular files ignore NONBLOCK; clear it all the same.
        rustix::fs::fcntl_setfl(&fd, OFlags::RDWR)?;
        Ok(File::from(fd))
    }

    /// What `name` is, links not followed; `None` if nothing is there.
    // `st_nlink` is a `u64` on some targets and narrower on others.
    #[allow(clippy::useless_conversion)]
    pub(crate) fn stat(&self, name: &str) -> io::Result<Option<EntryStat>> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(EntryStat {
                regular: FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile,
                directory: FileType::from_raw_mode(stat.st_mode) == FileType::Directory,
                len: u64::try_from(stat.st_size).unwrap_or(0),
                links: u64::from(stat.st_nlink),
                modified: stat.st_mtime,
            })),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `name` (links not followed) is the very file `file` is open
    /// on: nothing swapped it for something else since it was opened.
    pub(crate) fn holds(&self, name: &str, file: &File) -> io::Result<bool> {
        let open = rustix::fs::fstat(file)?;
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(named) => Ok(named.st_dev == open.st_dev && named.st_ino == open.st_ino),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the file (or link) `name`; never a directory.
    pub(crate) fn remove(&self, name: &str) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(&self.fd, name, AtFlags::empty())?)
    }

    /// Moves `name` to `to_name` in `to` (on the same file system). Unless
    /// `replace`, it never replaces anything already at `to_name` (a file,
    /// a link, a directory): that is [`io::ErrorKind::AlreadyExists`]. With
    /// `replace`, an entry at `to_name` is replaced itself, never followed.
    pub(crate) fn move_to(
        &self,
        name: &str,
        to: &ConfinedDir,
        to_name: &str,
        replace: bool,
    ) -> io::Result<()> {
        if replace {
            return Ok(rustix::fs::renameat(&self.fd, name, &to.fd, to_name)?);
        }
        match rustix::fs::renameat_with(&self.fd, name, &to.fd, to_name, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(()),
            // File systems without `renameat2`: a hard link cannot replace
            // either, then the old name goes.
            Err(Errno::INVAL | Errno::NOSYS | Errno::NOTSUP) => {
                rustix::fs::linkat(&self.fd, name, &to.fd, to_name, AtFlags::empty())?;
                Ok(rustix::fs::unlinkat(&self.fd, name, AtFlags::empty())?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The names in the directory (not `.` and `..`), each with what it is.
    /// Entries that vanish while being listed are left out.
    pub(crate) fn entries(&self) -> io::Result<Vec<(OsString, EntryStat)>> {
        let mut entries = Vec::new();
        for entry in rustix::fs::Dir::read_from(&self.fd)? {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let name = OsString::from_vec(name.to_vec());
            let Some(name_str) = name.to_str() else {
                // Not a name ferry could have written; still listed, as a
                // name others may hold.
                entries.push((
                    name,
                    EntryStat {
                        regular: false,
                        directory: false,
                        len: 0,
                        links: 0,
                        modified: 0,
                    },
                ));
                continue;
            };
            if let Some(stat) = self.stat(name_str)? {
                entries.push((name, stat));
            }
        }
        Ok(entries)
    }

    /// Creates the subdirectory `name` (private, `0700`), failing if
    /// anything is there already, and opens it without following a link.
    pub(crate) fn create_dir(&self, name: &str) -> io::Result<ConfinedDir> {
        rustix::fs::mkdirat(&self.fd, name, Mode::RWXU)?;
        self.open_dir(name)
    }

    /// Opens the subdirectory `name`, never through a link (a link there
    /// is [`io::ErrorKind::InvalidData`]).
    pub(crate) fn open_dir(&self, name: &str) -> io::Result<ConfinedDir> {
        let path = self.path.join(name);
        let fd = rustix::fs::openat(&self.fd, name, DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty())
            .map_err(|e| match e {
                Errno::LOOP | Errno::NOTDIR => io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not a directory (a link?)", path.display()),
                ),
                e => e.into(),
            })?;
        Ok(ConfinedDir { fd, path })
    }

    /// Which directory this is: its device and inode, to tell whether a
    /// name still leads to it.
    pub(crate) fn identity(&self) -> io::Result<Identity> {
        Identity::of(&self.fd)
    }

    /// Which file or directory `name` is (links not followed, a link being
    /// itself); `None` if nothing is there.
    pub(crate) fn identity_at(&self, name: &str) -> io::Result<Option<Identity>> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            #[allow(clippy::useless_conversion)]
            Ok(stat) => Ok(Some(Identity {
                dev: u64::from(stat.st_dev),
                ino: u64::from(stat.st_ino),
            })),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Sets the directory's modification time.
    pub(crate) fn set_modified(&self, secs: u64, nanos: u32) -> io::Result<()> {
        set_modified(&self.fd, secs, nanos)
    }

    /// Flushes everything written to the file system this directory is
    /// on, in one call (`syncfs`).
    #[cfg(target_os = "linux")]
    pub(crate) fn sync_file_system(&self) -> io::Result<()> {
        Ok(rustix::fs::syncfs(&self.fd)?)
    }

    /// Moves the directory `name` to `to_name` in `to`, never replacing
    /// anything there (that is [`io::ErrorKind::AlreadyExists`]).
    pub(crate) fn move_dir_to(
        &self,
        name: &str,
        to: &ConfinedDir,
        to_name: &str,
    ) -> io::Result<()> {
        match rustix::fs::renameat_with(&self.fd, name, &to.fd, to_name, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => Err(io::ErrorKind::AlreadyExists.into()),
            // File systems without `renameat2`: a directory cannot be hard
            // linked, but an empty one of our own can be replaced; making
            // it fails if the name is taken.
            Err(Errno::INVAL | Errno::NOSYS | Errno::NOTSUP) => {
                rustix::fs::mkdirat(&to.fd, to_name, Mode::RWXU)?;
                Ok(rustix::fs::renameat(&self.fd, name, &to.fd, to_name)?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Makes the directory's entries durable, or says why not.
    pub(crate) fn fsync(&self) -> io::Result<()> {
        Ok(rustix::fs::fsync(&self.fd)?)
    }

    /// Makes the directory's entries durable (after a move into it).
    pub(crate) fn sync(&self) {
        // Some file systems refuse to sync a directory; the move is then as
        // durable as they make it.
        let _ = rustix::fs::fsync(self.fd.as_fd());
    }
}

/// A file or directory, as the file system knows it: it stays the same
/// whatever name leads to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    dev: u64,
    ino: u64,
}

impl Identity {
    /// The identity of what `fd` is open on.
    // `st_dev` and `st_ino` are `u64` on some targets and narrower on others.
    #[allow(clippy::useless_conversion)]
    pub(crate) fn of(fd: impl AsFd) -> io::Result<Identity> {
        let stat = rustix::fs::fstat(fd)?;
        Ok(Identity {
            dev: u64::from(stat.st_dev),
            ino: u64::from(stat.st_ino),
        })
    }
}

/// Sets the modification time of what `fd` is open on, leaving its access
/// time as it is.
pub(crate) fn set_modified(fd: impl AsFd, secs: u64, nanos: u32) -> io::Result<()> {
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: rustix::fs::Timespec {
            // Past the year 292 billion: not a time to keep exactly.
            tv_sec: i64::try_from(secs).unwrap_or(i64::MAX),
            tv_nsec: nanos.into(),
        },
    };
    Ok(rustix::fs::futimens(fd, &times)?)
}

fn not_own(name: &str, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{name:?} is {what}: not a file ferry wrote, left alone"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn never_follows_or_replaces_what_someone_planted() {
        let root = tempfile::tempdir().unwrap();
        let outside = root.path().join("outside");
        std::fs::write(&outside, b"secret").unwrap();
        let inside = root.path().join("inside");
        std::fs::create_dir(&inside).unwrap();
        std::os::unix::fs::symlink(&outside, inside.join("link")).unwrap();
        std::fs::hard_link(&outside, inside.join("hard")).unwrap();
        let dir = ConfinedDir::open(&inside).unwrap();

        let err = dir.create_new("link").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(
            dir.open_own("link").unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        assert_eq!(
            dir.open_own("hard").unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );

        let mut file = dir.create_new("new").unwrap();
        file.write_all(b"mine").unwrap();
        let err = dir.move_to("new", &dir, "link", false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        dir.move_to("new", &dir, "link", true).unwrap();
        assert_eq!(std::fs::read(&outside).unwrap(), b"secret");
        assert_eq!(std::fs::read(inside.join("link")).unwrap(), b"mine");
        assert!(dir.stat("link").unwrap().unwrap().regular);
    }

    #[test]
    fn a_private_subdir_is_private_and_never_a_link() {
        let root = tempfile::tempdir().unwrap();
        let dir = ConfinedDir::open(root.path()).unwrap();
        let sub = dir.private_subdir("p").unwrap();
        let mode = std::fs::metadata(sub.path()).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o700
        );
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), root.path().join("q")).unwrap();
        assert!(dir.private_subdir("q").is_err());
    }
}
