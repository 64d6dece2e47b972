//! The server's certificate chain and key.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::error::SetupError;
use crate::files::{self, io_error};
use crate::{der, provider, Fingerprint};

/// The certificate file [`Identity::load_or_create`] keeps in its folder.
pub const CERT_FILE: &str = "cert.pem";
/// The private key file [`Identity::load_or_create`] keeps in its folder.
pub const KEY_FILE: &str = "key.pem";

/// A server's certificate chain (leaf first) and the private key that
/// matches the leaf, checked when loaded. Make a
/// [`TlsServer`](crate::TlsServer) from it.
#[derive(Clone)]
pub struct Identity {
    key: Arc<CertifiedKey>,
    fingerprint: Fingerprint,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint)
            .field("chain_len", &self.key.cert.len())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// The self-signed identity kept in `dir`: made on first use (the
    /// folder created `0700`, [`CERT_FILE`] and [`KEY_FILE`] `0600`),
    /// loaded on later calls.
    ///
    /// Refuses a folder or file that is a symbolic link, belongs to
    /// another user or is writable by its group or others, and a folder
    /// holding only one of the two files. `now` checks the certificate's
    /// validity period.
    pub fn load_or_create(dir: &Path, now: SystemTime) -> Result<Identity, SetupError> {
        files::private_dir(dir)?;
        let _lock = files::lock_dir(dir)?;
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        match (
            files::read_private(&cert_path)?,
            files::read_private(&key_path)?,
        ) {
            (Some(cert), Some(key)) => {
                Identity::from_pem_named(&cert, &cert_path, &key, &key_path, now)
            }
            (None, None) => {
                let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
                let key_pem = made.key_pair.serialize_pem();
                let cert_pem = made.cert.pem();
                // The key first: a certificate alone on disk is refused
                // on the next start instead of being silently replaced.
                files::write_new(&key_path, key_pem.as_bytes())?;
                files::write_new(&cert_path, cert_pem.as_bytes())?;
                Identity::from_pem_named(
                    cert_pem.as_bytes(),
                    &cert_path,
                    key_pem.as_bytes(),
                    &key_path,
                    now,
                )
            }
            (Some(_), None) => Err(SetupError::Pem {
                path: key_path,
                why: format!(
                    "missing, but {CERT_FILE} is there; remove both to make a new identity"
                ),
            }),
            (None, Some(_)) => Err(SetupError::Pem {
                path: cert_path,
                why: format!(
                    "missing, but {KEY_FILE} is there; remove both to make a new identity"
                ),
            }),
        }
    }

    /// A certificate chain (leaf first, e.g. Let's Encrypt's
    /// `fullchain.pem`) and its private key (`privkey.pem`), PEM files.
    ///
    /// Refuses an unreadable or invalid file, a key that does not match
    /// the leaf certificate, and a leaf that is expired or not yet valid
    /// at `now`.
    pub fn from_pem_files(
        cert: &Path,
        key: &Path,
        now: SystemTime,
    ) -> Result<Identity, SetupError> {
        let cert_pem = std::fs::read(cert).map_err(|e| io_error(cert, e))?;
        let key_pem = std::fs::read(key).map_err(|e| io_error(key, e))?;
        Identity::from_pem_named(&cert_pem, cert, &key_pem, key, now)
    }

    /// [`from_pem_files`](Identity::from_pem_files) for PEM text already in memory.
    pub fn from_pem(cert: &[u8], key: &[u8], now: SystemTime) -> Result<Identity, SetupError> {
        let memory = Path::new("<memory>");
        Identity::from_pem_named(cert, memory, key, memory, now)
    }

    fn from_pem_named(
        cert: &[u8],
        cert_path: &Path,
        key: &[u8],
        key_path: &Path,
        now: SystemTime,
    ) -> Result<Identity, SetupError> {
        let pem_error = |path: &Path, e: rustls::pki_types::pem::Error| SetupError::Pem {
            path: path.to_path_buf(),
            why: e.to_string(),
        };
        let chain = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error(cert_path, e))?;
        let Some(leaf) = chain.first() else {
            return Err(SetupError::Pem {
                path: cert_path.to_path_buf(),
                why: "holds no certificate".to_string(),
            });
        };
        check_validity(leaf, cert_path, now)?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| pem_error(key_path, e))?;
        let fingerprint = Fingerprint::of(leaf);
        let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => SetupError::KeyMismatch {
                cert: cert_path.to_path_buf(),
                key: key_path.to_path_buf(),
            },
            e => SetupError::Rustls(e),
        })?;
        Ok(Identity {
            key: Arc::new(certified),
            fingerprint,
        })
    }

    /// The fingerprint of the leaf certificate, which clients pin.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The certificate chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.key.cert
    }

    pub(crate) fn certified_key(&self) -> Arc<CertifiedKey> {
        self.key.clone()
    }
}

fn check_validity(
    leaf: &CertificateDer<'_>,
    path: &Path,
    now: SystemTime,
) -> Result<(), SetupError> {
    let path: PathBuf = path.to_path_buf();
    let Some((not_before, not_after)) = der::validity(leaf) else {
        return Err(SetupError::Pem {
            path,
            why: "holds a certificate whose validity dates cannot be read".to_string(),
        });
    };
    let now = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    if now > not_after {
        return Err(SetupError::Validity {
            path,
            why: format!("expired at {}", der::show(not_after)),
        });
    }
    if now < not_before {
        return Err(SetupError::Validity {
            path,
            why: format!("is not valid before {}", der::show(not_before)),
        });
    }
    Ok(())
}
