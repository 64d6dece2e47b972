//! Server identities: made once and reused, loaded from PEM and checked.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use ferry_tls::{Identity, SetupError, CERT_FILE, KEY_FILE};

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn a_self_signed_identity_is_made_private_once_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("state/tls");
    let now = SystemTime::now();
    let first = Identity::load_or_create(&tls, now).unwrap();
    assert_eq!(mode(&tls), 0o700);
    assert_eq!(mode(&tls.join(CERT_FILE)), 0o600);
    assert_eq!(mode(&tls.join(KEY_FILE)), 0o600);
    let again = Identity::load_or_create(&tls, now).unwrap();
    assert_eq!(first.fingerprint(), again.fingerprint());
    assert!(first.fingerprint().to_string().starts_with("SHA256:"));
    let other = Identity::load_or_create(&dir.path().join("other"), now).unwrap();
    assert_ne!(first.fingerprint(), other.fingerprint());
}

#[test]
fn unsafe_folders_and_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let real = dir.path().join("real");
    Identity::load_or_create(&real, now).unwrap();

    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let error = Identity::load_or_create(&link, now).unwrap_err();
    assert!(error.to_string().contains("symbolic link"), "{error}");

    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o770)).unwrap();
    let error = Identity::load_or_create(&real, now).unwrap_err();
    assert!(error.to_string().contains("writable"), "{error}");
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();

    let key = real.join(KEY_FILE);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o666)).unwrap();
    let error = Identity::load_or_create(&real, now).unwrap_err();
    assert!(matches!(error, SetupError::Unsafe { .. }), "{error}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A key that is a link to elsewhere.
    let moved = dir.path().join("elsewhere.pem");
    std::fs::rename(&key, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &key).unwrap();
    let error = Identity::load_or_create(&real, now).unwrap_err();
    assert!(error.to_string().contains("symbolic link"), "{error}");

    // Half an identity is not silently replaced.
    std::fs::remove_file(&key).unwrap();
    let error = Identity::load_or_create(&real, now).unwrap_err();
    assert!(error.to_string().contains("missing"), "{error}");
}

#[test]
fn a_real_chain_loads_from_files_and_a_wrong_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_ca, chain, key) = common::ca_and_leaf(&["ferry.test"]);
    let (_ca2, _, other_key) = common::ca_and_leaf(&["ferry.test"]);
    let cert_path = dir.path().join("fullchain.pem");
    let key_path = dir.path().join("privkey.pem");
    let other_path = dir.path().join("other.pem");
    std::fs::write(&cert_path, &chain).unwrap();
    std::fs::write(&key_path, &key).unwrap();
    std::fs::write(&other_path, &other_key).unwrap();
    let now = SystemTime::now();
    let identity = Identity::from_pem_files(&cert_path, &key_path, now).unwrap();
    assert_eq!(identity.chain().len(), 2);

    let error = Identity::from_pem_files(&cert_path, &other_path, now).unwrap_err();
    assert!(matches!(error, SetupError::KeyMismatch { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        format!(
            "the key in {} does not match the certificate in {}",
            other_path.display(),
            cert_path.display()
        )
    );

    let missing = dir.path().join("missing.pem");
    let error = Identity::from_pem_files(&missing, &key_path, now).unwrap_err();
    assert!(matches!(error, SetupError::Io { .. }), "{error}");
    assert!(error
        .to_string()
        .starts_with(&missing.display().to_string()));

    std::fs::write(&other_path, "not a certificate\n").unwrap();
    let error = Identity::from_pem_files(&other_path, &key_path, now).unwrap_err();
    assert!(
        error.to_string().contains("holds no certificate"),
        "{error}"
    );
    let error = Identity::from_pem_files(&cert_path, &other_path, now).unwrap_err();
    assert!(matches!(error, SetupError::Pem { .. }), "{error}");
}

#[test]
fn an_expired_or_not_yet_valid_certificate_is_refused_at_load() {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["ferry.test".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    let (cert, key) = (cert.pem(), key.serialize_pem());
    let at = |year: u64| SystemTime::UNIX_EPOCH + Duration::from_secs((year - 1970) * 365 * 86_400);

    Identity::from_pem(
        cert.as_bytes(),
        key.as_bytes(),
        at(2020) + Duration::from_secs(30 * 86_400),
    )
    .unwrap();
    let error = Identity::from_pem(cert.as_bytes(), key.as_bytes(), at(2026)).unwrap_err();
    assert!(matches!(error, SetupError::Validity { .. }), "{error}");
    assert!(
        error
            .to_string()
            .ends_with("expired at 2021-01-01 00:00:00 UTC"),
        "{error}"
    );
    let error = Identity::from_pem(cert.as_bytes(), key.as_bytes(), at(2019)).unwrap_err();
    assert!(
        error
            .to_string()
            .ends_with("is not valid before 2020-01-01 00:00:00 UTC"),
        "{error}"
    );
}

/// Servers starting at once in one empty folder make one identity and all
/// serve it (before the lock, all but one failed on the others' files).
#[test]
fn identities_made_at_once_in_one_folder_are_one() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let made: Vec<_> = (0..8)
        .map(|_| {
            let tls = tls.clone();
            std::thread::spawn(move || {
                ferry_tls::Identity::load_or_create(&tls, std::time::SystemTime::now())
                    .map(|identity| identity.fingerprint())
            })
        })
        .collect();
    let fingerprints: Vec<_> = made
        .into_iter()
        .map(|t| t.join().unwrap().unwrap())
        .collect();
    assert!(
        fingerprints.windows(2).all(|w| w[0] == w[1]),
        "{fingerprints:?}"
    );
}
