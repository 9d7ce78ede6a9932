//! Reading the device certificate, its private key and the root CA for validation:
//! PEM decoding (rustls-pki-types), the certificate fields the checks need (`der`) and
//! the key/cert match (ring through rustls). It reads files and never prints or logs
//! their contents.

mod der;

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

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
    #[error("certificate #{index} is not an X.509 certificate: {reason}")]
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

/// Every certificate in a PEM bundle, each checked to have an X.509 certificate's
/// structure.
pub fn parse_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(PkiError::NoCertificate);
    }
    for (i, cert) in certs.iter().enumerate() {
        der::parse(cert.as_ref()).map_err(|reason| PkiError::X509 {
            index: i + 1,
            reason,
        })?;
    }
    Ok(certs)
}

pub fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| PkiError::NoKey(e.to_string()))
}

/// Why a certificate is outside its validity period, if it is.
pub fn validity_problem(cert: &CertificateDer<'_>) -> Option<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    validity_problem_at(cert, now)
}

fn validity_problem_at(cert: &CertificateDer<'_>, now: i64) -> Option<String> {
    let fields = der::parse(cert.as_ref()).ok()?;
    if now < fields.not_before {
        Some(format!(
            "is not valid before {}",
            der::format_time(fields.not_before)
        ))
    } else if now > fields.not_after {
        Some(format!("expired on {}", der::format_time(fields.not_after)))
    } else {
        None
    }
}

/// Whether `key` is the private half of `cert`'s public key. RSA (PKCS#1 or PKCS#8),
/// EC (SEC1 or PKCS#8) and Ed25519 keys are understood, as the TLS stack understands them.
pub fn key_matches(cert: &CertificateDer<'_>, key: &PrivateKeyDer<'_>) -> Result<bool, PkiError> {
    let signing = rustls::crypto::ring::sign::any_supported_type(key)
        .map_err(|e| PkiError::UnsupportedKey(e.to_string()))?;
    let fields = der::parse(cert.as_ref()).map_err(|reason| PkiError::X509 { index: 1, reason })?;
    match signing.public_key() {
        Some(spki) => Ok(spki.as_ref() == fields.spki),
        None => Err(PkiError::UnsupportedKey(
            "its public key cannot be derived".to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem(cert: &rcgen::Certificate) -> Vec<u8> {
        cert.pem().into_bytes()
    }

    fn issue(
        not_before: (i32, u8, u8),
        not_after: (i32, u8, u8),
    ) -> (rcgen::Certificate, rcgen::KeyPair) {
        let mut params = rcgen::CertificateParams::new(vec!["gw1".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key = rcgen::KeyPair::generate().unwrap();
        (params.self_signed(&key).unwrap(), key)
    }

    #[test]
    fn validity_is_checked_against_the_clock() {
        let (cert, _) = issue((2026, 1, 1), (2027, 1, 1));
        let der = cert.der();
        let jan_1_2026 = 1_767_225_600;
        assert_eq!(validity_problem_at(der, jan_1_2026 + 86_400), None);
        assert_eq!(
            validity_problem_at(der, jan_1_2026 - 1).as_deref(),
            Some("is not valid before 2026-01-01 00:00:00 UTC")
        );
        assert_eq!(
            validity_problem_at(der, jan_1_2026 + 366 * 86_400).as_deref(),
            Some("expired on 2027-01-01 00:00:00 UTC")
        );
    }

    #[test]
    fn bundles_parse_certificate_by_certificate() {
        let (a, _) = issue((2026, 1, 1), (2027, 1, 1));
        let (b, _) = issue((2026, 1, 1), (2027, 1, 1));
        let mut bundle = pem(&a);
        bundle.extend(pem(&b));
        assert_eq!(parse_certs(&bundle).unwrap().len(), 2);
        assert!(matches!(
            parse_certs(b"no pem here"),
            Err(PkiError::NoCertificate)
        ));
        // A CERTIFICATE block whose content is not a certificate names its position.
        let mut bad = pem(&a);
        bad.extend_from_slice(
            b"-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n",
        );
        let err = parse_certs(&bad).unwrap_err();
        assert!(matches!(err, PkiError::X509 { index: 2, .. }), "{err}");
    }

    #[test]
    fn key_matches_only_its_own_certificate() {
        let (cert, key) = issue((2026, 1, 1), (2027, 1, 1));
        let (_, other) = issue((2026, 1, 1), (2027, 1, 1));
        let key_der = |k: &rcgen::KeyPair| {
            PrivateKeyDer::from_pem_slice(k.serialize_pem().as_bytes()).unwrap()
        };
        assert!(key_matches(cert.der(), &key_der(&key)).unwrap());
        assert!(!key_matches(cert.der(), &key_der(&other)).unwrap());
    }
}
