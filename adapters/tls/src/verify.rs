//! The client's check of the server: pin, else CA, else known servers.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};

use crate::{Error, Fingerprint, KnownServer};

/// How the client came to trust the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verified {
    /// Its certificate has the pinned fingerprint.
    Pinned,
    /// Its certificate chains to a trusted root and names the host.
    Ca,
    /// The known-servers file records its fingerprint.
    Known {
        /// The line of the file that records it.
        line: usize,
    },
    /// Neither pinned, nor CA-signed, nor known, and the client chose to
    /// trust new servers: record `fingerprint` with
    /// [`KnownServers::add`](crate::KnownServers::add).
    New {
        /// The fingerprint to record.
        fingerprint: Fingerprint,
    },
}

#[derive(Debug)]
pub(crate) struct Verifier {
    pub(crate) provider: Arc<CryptoProvider>,
    pub(crate) ca: Arc<WebPkiServerVerifier>,
    pub(crate) pin: Option<Fingerprint>,
    /// The known-servers file and this server's record in it, when the
    /// client keeps one.
    pub(crate) known: Option<(std::path::PathBuf, Vec<KnownServer>)>,
    pub(crate) trust_new: bool,
    pub(crate) server: String,
    pub(crate) outcome: Arc<Mutex<Option<Verified>>>,
}

/// Carries a ferry error through rustls, which the transport unwraps.
fn refuse(error: Error) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(error))))
}

impl Verifier {
    fn decide(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<Verified, rustls::Error> {
        let actual = Fingerprint::of(end_entity);
        if let Some(pinned) = self.pin {
            return match pinned == actual {
                true => Ok(Verified::Pinned),
                false => Err(refuse(Error::PinMismatch { pinned, actual })),
            };
        }
        let ca_error =
            match self
                .ca
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            {
                Ok(_) => return Ok(Verified::Ca),
                Err(e) => e,
            };
        let Some((path, records)) = &self.known else {
            return Err(ca_error);
        };
        if let Some(known) = records.iter().find(|k| k.fingerprint == actual) {
            return Ok(Verified::Known { line: known.line });
        }
        match records.first() {
            Some(known) => Err(refuse(Error::ChangedServer {
                server: self.server.clone(),
                old: known.fingerprint,
                new: actual,
                path: path.clone(),
                line: known.line,
            })),
            None if self.trust_new => Ok(Verified::New {
                fingerprint: actual,
            }),
            None => Err(refuse(Error::UnknownServer {
                server: self.server.clone(),
                fingerprint: actual,
                ca_reason: match crate::transport::describe(ca_error) {
                    Error::Handshake { reason } => reason.to_string(),
                    other => other.to_string(),
                },
            })),
        }
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.decide(end_entity, intermediates, server_name, ocsp, now)?;
        // A poisoned lock only means another thread panicked while holding
        // it; the value is a plain Option, still whole.
        *self.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(verified);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
