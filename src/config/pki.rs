//! Reading the device certificate, its private key and the root CA for validation:
//! PEM decoding (rustls-pki-types), X.509 parsing (x509-parser) and the key/cert match
//! (ring through rustls). It reads files and never prints or logs their contents.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, X509Certificate};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("no PEM CERTIFICATE block found")]
    NoCertificate,
    #[error("PEM is malformed: {0}")]
    Pem(String),
    #[error("certificate #{index} does not parse as X.509: {reason}")]
    X509 { index: usize, reason: String },
    #[error("no private key found (expected a PEM RSA PRIVATE KEY, EC PRIVATE KEY or PRIVATE KEY block): {0}")]
    NoKey(String),
    #[error("the private key is not a usable RSA, ECDSA (P-256/P-384) or Ed25519 key: {0}")]
    UnsupportedKey(String),
}

pub fn read_file(path: &Path) -> Result<Vec<u8>, PkiError> {
    std::fs::read(path).map_err(|source| PkiError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in a PEM bundle, each checked to parse as X.509.
pub fn parse_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(PkiError::NoCertificate);
    }
    for (i, cert) in certs.iter().enumerate() {
        X509Certificate::from_der(cert.as_ref()).map_err(|e| PkiError::X509 {
            index: i + 1,
            reason: e.to_string(),
        })?;
    }
    Ok(certs)
}

pub fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| PkiError::NoKey(e.to_string()))
}

/// Why a certificate is outside its validity period, if it is.
pub fn validity_problem(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
    let validity = parsed.validity();
    let now = x509_parser::time::ASN1Time::now();
    if now < validity.not_before {
        Some(format!("is not valid before {}", validity.not_before))
    } else if now > validity.not_after {
        Some(format!("expired on {}", validity.not_after))
    } else {
        None
    }
}

/// Whether `key` is the private half of `cert`'s public key. RSA (PKCS#1 or PKCS#8),
/// EC (SEC1 or PKCS#8) and Ed25519 keys are understood, as the TLS stack understands them.
pub fn key_matches(cert: &CertificateDer<'_>, key: &PrivateKeyDer<'_>) -> Result<bool, PkiError> {
    let signing = rustls::crypto::ring::sign::any_supported_type(key)
        .map_err(|e| PkiError::UnsupportedKey(e.to_string()))?;
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).map_err(|e| PkiError::X509 {
        index: 1,
        reason: e.to_string(),
    })?;
    let cert_spki = parsed.tbs_certificate.subject_pki.raw;
    match signing.public_key() {
        Some(spki) => Ok(spki.as_ref() == cert_spki),
        None => Err(PkiError::UnsupportedKey(
            "its public key cannot be derived".to_string(),
        )),
    }
}
