//! Where `ferry send` keeps the resume keys receivers hand it, so that
//! running the same command again after it was killed (or its connection
//! dropped) continues the cut transfer instead of starting over.
//!
//! One small file per transfer, in a private folder (`0700`, files
//! `0600`): `$FERRY_STATE_DIR`, else `$XDG_STATE_HOME/ferry`, else
//! `~/.local/state/ferry`, then `resume/`. A file is named after a hash of
//! what identifies the transfer (server, recipient, the file's absolute
//! path, size and modification time; for a folder, its absolute path and
//! its manifest, which holds every entry's name, size and time), so a
//! changed file or folder is a new transfer, and it holds the key in hex.
//! Over TLS the server is who it proved to be in the handshake (its
//! certificate's host name or fingerprint), so the same server reached at
//! another address, or another server of a cluster sharing its
//! certificate, is handed the key; in clear text it is the address, and a
//! key never goes to a server at another one. Each is written to a
//! temporary name and renamed, so a kill at any moment leaves either the
//! old key or the new one. Keys are forgotten once their transfer ends
//! (stored, failed or refused), and any left behind after [`MAX_AGE`] are
//! removed.

use ferry_core::ResumeKey;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Keys untouched this long are removed: no receiver keeps a partial file
/// that long by default.
pub const MAX_AGE: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// The folder of resume keys.
#[derive(Debug)]
pub struct ResumeStore {
    dir: PathBuf,
}

/// What identifies one transfer to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferKey {
    entry: String,
}

impl TransferKey {
    /// The transfer of the file at `path` (as it is now) to `to` (empty:
    /// the inbox) on `server`: who the server proved to be over TLS
    /// (`ClientHandle::server_identity`), else its address.
    pub fn new(server: &str, to: &str, path: &Path) -> io::Result<TransferKey> {
        let absolute = fs::canonicalize(path)?;
        let meta = fs::metadata(&absolute)?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Ok(TransferKey::of(
            "ferry 2026-12 send resume store entry",
            &[
                server.as_bytes(),
                to.to_lowercase().as_bytes(),
                absolute.as_os_str().as_encoded_bytes(),
                &meta.len().to_be_bytes(),
                &modified.to_be_bytes(),
            ],
        ))
    }

    /// The transfer of the folder at `path`, walked as `manifest`, to `to`
    /// on `server` (as for [`new`](TransferKey::new)): the same folder with
    /// any entry added, removed, resized or touched is another transfer
    /// (the receiver resumes a tree only with the manifest it was first
    /// sent).
    pub fn for_tree(
        server: &str,
        to: &str,
        path: &Path,
        manifest: &ferry_core::tree::Manifest,
    ) -> io::Result<TransferKey> {
        let absolute = fs::canonicalize(path)?;
        Ok(TransferKey::of(
            "ferry 2026-12 send resume store tree entry",
            &[
                server.as_bytes(),
                to.to_lowercase().as_bytes(),
                absolute.as_os_str().as_encoded_bytes(),
                blake3::hash(&manifest.encode()).as_bytes(),
            ],
        ))
    }

    /// The entry named by hashing `parts` (each with its length) under
    /// `context`.
    fn of(context: &str, parts: &[&[u8]]) -> TransferKey {
        let mut hasher = blake3::Hasher::new_derive_key(context);
        for part in parts {
            hasher.update(&(part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        TransferKey {
            entry: hasher.finalize().to_hex()[..32].to_string(),
        }
    }
}

impl ResumeStore {
    /// The folder `FERRY_STATE_DIR`, `XDG_STATE_HOME` or `HOME` names
    /// (see the module's documentation); `None` when none is set.
    pub fn default_dir() -> Option<PathBuf> {
        crate::tls::state_dir().map(|state| state.join("resume"))
    }

    /// Opens (creating it, private) the folder `dir`, and removes the keys
    /// older than [`MAX_AGE`].
    pub fn open(dir: PathBuf) -> io::Result<ResumeStore> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        let store = ResumeStore { dir };
        store.remove_old();
        Ok(store)
    }

    /// The key kept for `transfer`, if any (a damaged file is none).
    pub fn get(&self, transfer: &TransferKey) -> Option<ResumeKey> {
        let text = fs::read_to_string(self.path(transfer)).ok()?;
        parse_hex_key(text.trim())
    }

    /// Keeps `key` for `transfer`, replacing any earlier one. Safe from a
    /// killed process once this returns (the page cache outlives it). Not
    /// synced to the disk: that would cost every transfer an `fsync`, and
    /// after a power cut an entry lost or left empty only means the file
    /// starts over.
    pub fn put(&self, transfer: &TransferKey, key: &ResumeKey) -> io::Result<()> {
        let path = self.path(transfer);
        let temporary = self
            .dir
            .join(format!(".{}.{}", transfer.entry, std::process::id()));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        let hex: String = key.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        file.write_all(format!("{hex}\n").as_bytes())?;
        drop(file);
        fs::rename(&temporary, &path)
    }

    /// Forgets the key of `transfer`: it ended.
    pub fn forget(&self, transfer: &TransferKey) {
        // Nothing kept is as good as forgotten.
        let _ = fs::remove_file(self.path(transfer));
    }

    fn path(&self, transfer: &TransferKey) -> PathBuf {
        self.dir.join(&transfer.entry)
    }

    fn remove_old(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| now.duration_since(modified).unwrap_or_default() > MAX_AGE);
            if old {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

fn parse_hex_key(text: &str) -> Option<ResumeKey> {
    if text.len() != 32 {
        return None;
    }
    let mut key = [0u8; 16];
    for (byte, pair) in key.iter_mut().zip(text.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(ResumeKey::from_bytes(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_a_new_process_and_go_when_the_file_changes() {
        let state = tempfile::tempdir().unwrap();
        let files = tempfile::tempdir().unwrap();
        let path = files.path().join("movie.mkv");
        fs::write(&path, b"first").unwrap();
        let addr = "127.0.0.1:7878";
        let transfer = TransferKey::new(addr, "", &path).unwrap();
        let key = ResumeKey::from_bytes([7; 16]);

        let store = ResumeStore::open(state.path().join("resume")).unwrap();
        assert_eq!(store.get(&transfer), None);
        store.put(&transfer, &key).unwrap();
        let again = ResumeStore::open(state.path().join("resume")).unwrap();
        assert_eq!(again.get(&transfer), Some(key));
        // Another recipient or server is another transfer.
        assert_ne!(TransferKey::new(addr, "bob", &path).unwrap(), transfer);
        assert_ne!(
            TransferKey::new("127.0.0.1:7879", "", &path).unwrap(),
            transfer
        );
        // So is the same path with other contents.
        fs::write(&path, b"second, longer").unwrap();
        assert_ne!(TransferKey::new(addr, "", &path).unwrap(), transfer);

        again.forget(&transfer);
        assert_eq!(again.get(&transfer), None);
        let mode = fs::metadata(state.path().join("resume")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o700
        );
    }

    #[test]
    fn a_damaged_entry_is_no_key() {
        assert_eq!(parse_hex_key("zz"), None);
        assert_eq!(parse_hex_key(&"g".repeat(32)), None);
        assert_eq!(
            parse_hex_key(&"0f".repeat(16)),
            Some(ResumeKey::from_bytes([15; 16]))
        );
    }
}
