//! The SHA-256 fingerprint of a certificate, as users see and type it.

use std::fmt;
use std::str::FromStr;

use rustls::pki_types::CertificateDer;

use crate::error::ParseFingerprintError;

/// The SHA-256 digest of a leaf certificate's DER encoding: what a client
/// pins and what the known-servers file records.
///
/// Displayed and parsed as `SHA256:` followed by 64 hexadecimal digits
/// (lower case when displayed, either case when parsed), the form
/// `ferry serve` prints at start and `--fingerprint` takes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Fingerprint {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut bytes = [0; 32];
        bytes.copy_from_slice(digest.as_ref());
        Fingerprint(bytes)
    }

    /// The fingerprint of a certificate.
    pub fn of(cert: &CertificateDer<'_>) -> Fingerprint {
        Fingerprint::of_der(cert.as_ref())
    }

    /// The 32 bytes of the digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SHA256:")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Fingerprint {
    type Err = ParseFingerprintError;

    fn from_str(text: &str) -> Result<Fingerprint, ParseFingerprintError> {
        let text = text.trim();
        let hex = match text.split_once(':') {
            Some((algorithm, hex)) if algorithm.eq_ignore_ascii_case("sha256") => hex,
            Some((algorithm, _)) => {
                return Err(ParseFingerprintError::Algorithm(algorithm.to_string()))
            }
            None => return Err(ParseFingerprintError::NoPrefix),
        };
        if hex.len() != 64 {
            return Err(ParseFingerprintError::Length(hex.len()));
        }
        let mut bytes = [0; 32];
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(hi), Some(lo)) => bytes[i] = (hi * 16 + lo) as u8,
                _ => return Err(ParseFingerprintError::NotHex),
            }
        }
        Ok(Fingerprint(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_and_parses_back_in_either_case() {
        let fp = Fingerprint::of_der(b"certificate");
        let shown = fp.to_string();
        assert!(shown.starts_with("SHA256:"));
        assert_eq!(shown.len(), 7 + 64);
        assert_eq!(shown.parse::<Fingerprint>().unwrap(), fp);
        assert_eq!(shown.to_uppercase().parse::<Fingerprint>().unwrap(), fp);
    }

    #[test]
    fn refuses_what_is_not_a_fingerprint() {
        let hex = "ab".repeat(32);
        assert_eq!(
            hex.parse::<Fingerprint>(),
            Err(ParseFingerprintError::NoPrefix)
        );
        assert_eq!(
            format!("MD5:{hex}").parse::<Fingerprint>(),
            Err(ParseFingerprintError::Algorithm("MD5".into()))
        );
        assert_eq!(
            "SHA256:abcd".parse::<Fingerprint>(),
            Err(ParseFingerprintError::Length(4))
        );
        let bad = format!("SHA256:{}zz", "ab".repeat(31));
        assert_eq!(
            bad.parse::<Fingerprint>(),
            Err(ParseFingerprintError::NotHex)
        );
        let err = "SHA256:abcd"
            .parse::<Fingerprint>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("64"), "{err}");
    }
}
