//! The known-servers file: trust on first use, like SSH's known_hosts.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::SetupError;
use crate::files::{self, io_error};
use crate::Fingerprint;

/// One server recorded in a [`KnownServers`] file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownServer {
    /// `HOST:PORT` (`[v6addr]:PORT` for IPv6), host in lower case.
    pub server: String,
    /// The certificate fingerprint recorded for it.
    pub fingerprint: Fingerprint,
    /// The line (from 1) of the file that records it.
    pub line: usize,
}

/// The servers a client has trusted before, loaded from a file of lines
/// `HOST:PORT SHA256:<hex>`; `#` starts a comment, blank and unreadable
/// lines are ignored.
///
/// Loaded once into memory (a handshake never reads the disk);
/// [`add`](KnownServers::add) appends to the file and to the memory copy.
#[derive(Debug, Clone)]
pub struct KnownServers {
    path: PathBuf,
    entries: Vec<KnownServer>,
    lines: usize,
}

/// ferry's state folder, where a user's server identity, known servers
/// and resume keys live: `$FERRY_STATE_DIR`, else `$XDG_STATE_HOME/ferry`,
/// else `$HOME/.local/state/ferry`; `None` when none of these is set.
pub fn state_dir() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    var("FERRY_STATE_DIR")
        .map(PathBuf::from)
        .or_else(|| var("XDG_STATE_HOME").map(|d| PathBuf::from(d).join("ferry")))
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".local/state/ferry")))
}

impl KnownServers {
    /// `$FERRY_STATE_DIR/known_servers`, else
    /// `$XDG_STATE_HOME/ferry/known_servers`, else
    /// `$HOME/.local/state/ferry/known_servers` (the folders ferry keeps
    /// its resume keys under); `None` when none of these is set.
    pub fn default_path() -> Option<PathBuf> {
        state_dir().map(|state| state.join("known_servers"))
    }

    /// Reads `path`; a missing file is an empty list. Refuses a file that
    /// is a symbolic link, someone else's, or writable by others (anyone
    /// who can write it can make a client trust their server).
    pub fn load(path: &Path) -> Result<KnownServers, SetupError> {
        let bytes = files::read_private(path)?.unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        let mut entries = Vec::new();
        let mut lines = 0;
        for (i, line) in text.lines().enumerate() {
            lines = i + 1;
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let (Some(server), Some(fingerprint)) = (words.next(), words.next()) else {
                continue;
            };
            if let Ok(fingerprint) = fingerprint.parse() {
                entries.push(KnownServer {
                    server: server.to_ascii_lowercase(),
                    fingerprint,
                    line: i + 1,
                });
            }
        }
        Ok(KnownServers {
            path: path.to_path_buf(),
            entries,
            lines,
        })
    }

    /// The file this list is kept in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every server recorded, in file order.
    pub fn entries(&self) -> &[KnownServer] {
        &self.entries
    }

    /// The first record for `host` and `port`.
    pub fn lookup(&self, host: &str, port: u16) -> Option<&KnownServer> {
        let server = server_key(host, port);
        self.entries.iter().find(|e| e.server == server)
    }

    /// Every record for `host` and `port` (a server may have several,
    /// e.g. after a planned key change), in file order.
    pub fn lookup_all(&self, host: &str, port: u16) -> Vec<KnownServer> {
        let server = server_key(host, port);
        self.entries
            .iter()
            .filter(|e| e.server == server)
            .cloned()
            .collect()
    }

    /// Records `fingerprint` for `host` and `port`: one line appended
    /// with a single write (`O_APPEND`), so clients adding servers at the
    /// same time do not mix their lines. Creates the file `0600` and its
    /// folder `0700` if missing.
    pub fn add(
        &mut self,
        host: &str,
        port: u16,
        fingerprint: Fingerprint,
    ) -> Result<(), SetupError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            files::private_dir(dir)?;
        }
        let server = server_key(host, port);
        let mut file = files::open_append(&self.path)?;
        let line = format!("{server} {fingerprint}\n");
        file.write_all(line.as_bytes())
            .map_err(|e| io_error(&self.path, e))?;
        self.lines += 1;
        self.entries.push(KnownServer {
            server,
            fingerprint,
            line: self.lines,
        });
        Ok(())
    }
}

/// `host:port` as the file writes it: IPv6 addresses in brackets, host in lower case.
pub(crate) fn server_key(host: &str, port: u16) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.contains(':') {
        format!("[{}]:{port}", host.to_ascii_lowercase())
    } else {
        format!("{}:{port}", host.to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_bracket_ipv6_and_ignore_case() {
        assert_eq!(server_key("Example.COM", 7), "example.com:7");
        assert_eq!(server_key("::1", 7), "[::1]:7");
        assert_eq!(server_key("[::1]", 7), "[::1]:7");
    }

    #[test]
    fn comments_and_damaged_lines_are_skipped_and_lines_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_servers");
        let a = Fingerprint::of_der(b"a");
        let text = format!("# header\n\nbroken line\nhost:1 {a} # note\nhost:2 SHA256:zz\n");
        std::fs::write(&path, text).unwrap();
        let mut known = KnownServers::load(&path).unwrap();
        assert_eq!(known.entries().len(), 1);
        assert_eq!(known.lookup("HOST", 1).unwrap().line, 4);
        assert!(known.lookup("host", 2).is_none());
        let b = Fingerprint::of_der(b"b");
        known.add("host", 2, b).unwrap();
        assert_eq!(known.lookup("host", 2).unwrap().line, 6);
        let again = KnownServers::load(&path).unwrap();
        assert_eq!(again.lookup("host", 2).unwrap().line, 6);
        assert_eq!(again.lookup("host", 2).unwrap().fingerprint, b);
    }
}
