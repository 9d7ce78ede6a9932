//! The rustls client configuration: device certificate chain and key (PEM: PKCS#1,
//! SEC1 or PKCS#8), trust anchors (the configured root CA, or the system roots), the
//! ring provider, and ALPN `x-amzn-mqtt-ca` on port 443 (AWS IoT's rule for MQTT on
//! 443). Never logs or returns key material; errors name files only.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use super::MqttError;

/// ALPN protocol AWS IoT Core requires for MQTT over port 443.
pub const AWS_MQTT_ALPN: &[u8] = b"x-amzn-mqtt-ca";

/// Where to find the TLS material.
#[derive(Debug, Clone, Copy)]
pub struct TlsFiles<'a> {
    /// Device certificate chain (PEM).
    pub cert: &'a Path,
    /// Device private key (PEM).
    pub key: &'a Path,
    /// Root CA bundle (PEM); `None` uses the operating system's trust store.
    pub root_ca: Option<&'a Path>,
}

/// Builds the client configuration. Only the ring provider is used: rmqtt links
/// aws-lc-rs too, and rustls' implicit default provider would panic with two.
pub fn client_config(files: TlsFiles<'_>, port: u16) -> Result<ClientConfig, MqttError> {
    let chain = read_certs("mqtt.cert", files.cert)?;
    let key = read_key(files.key)?;
    let roots = match files.root_ca {
        Some(path) => roots_from_file(path)?,
        None => system_roots()?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(MqttError::Tls)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(MqttError::Tls)?;
    if port == 443 {
        config.alpn_protocols = vec![AWS_MQTT_ALPN.to_vec()];
    }
    Ok(config)
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, MqttError> {
    std::fs::read(path).map_err(|source| MqttError::ReadFile {
        key,
        path: path.to_path_buf(),
        source,
    })
}

fn bad_pem(key: &'static str, path: &Path, reason: impl Into<String>) -> MqttError {
    MqttError::BadPem {
        key,
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn read_certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, MqttError> {
    let pem = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(key, path, format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(bad_pem(key, path, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, MqttError> {
    let pem = read("mqtt.key", path)?;
    // The pki-types error never includes key bytes, only the PEM section kind.
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        bad_pem(
            "mqtt.key",
            path,
            format!("no usable private key (PKCS#1, SEC1 or PKCS#8 PEM expected): {e}"),
        )
    })
}

fn roots_from_file(path: &Path) -> Result<RootCertStore, MqttError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs("mqtt.root_ca", path)? {
        roots.add(cert).map_err(|e| {
            bad_pem(
                "mqtt.root_ca",
                path,
                format!("not a usable CA certificate: {e}"),
            )
        })?;
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, MqttError> {
    let found = rustls_native_certs::load_native_certs();
    for err in &found.errors {
        tracing::warn!("while loading system root certificates: {err}");
    }
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(MqttError::NoSystemRoots);
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    struct Files {
        _dir: tempfile::TempDir,
        cert: std::path::PathBuf,
        key: std::path::PathBuf,
        other_key: std::path::PathBuf,
        ca: std::path::PathBuf,
    }

    fn files() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["device".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        Files {
            cert: write("cert.pem", &cert.pem()),
            key: write("key.pem", &key.serialize_pem()),
            other_key: write("other.pem", &KeyPair::generate().unwrap().serialize_pem()),
            ca: write("ca.pem", &cert.pem()),
            _dir: dir,
        }
    }

    fn tls(f: &Files, key: &Path, port: u16) -> Result<ClientConfig, MqttError> {
        client_config(
            TlsFiles {
                cert: &f.cert,
                key,
                root_ca: Some(&f.ca),
            },
            port,
        )
    }

    #[test]
    fn alpn_only_on_port_443() {
        let f = files();
        let on_443 = tls(&f, &f.key, 443).unwrap();
        assert_eq!(on_443.alpn_protocols, vec![b"x-amzn-mqtt-ca".to_vec()]);
        let on_8883 = tls(&f, &f.key, 8883).unwrap();
        assert!(on_8883.alpn_protocols.is_empty());
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let f = files();
        let err = tls(&f, &f.other_key, 8883).unwrap_err();
        assert_eq!(err.kind(), "tls", "{err}");
        assert!(err.to_string().contains("mqtt.key"), "{err}");
    }

    #[test]
    fn unreadable_and_unparsable_files_name_the_setting_and_path() {
        let f = files();
        let missing = f.cert.with_file_name("nope.pem");
        let err = tls(&f, &missing, 8883).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("cannot read mqtt.key file {}", missing.display())),
            "{err}"
        );
        // A certificate where the key should be: no key material to find.
        let err = tls(&f, &f.cert, 8883).unwrap_err();
        assert_eq!(err.kind(), "bad_pem", "{err}");
        assert!(err.to_string().starts_with("mqtt.key file"), "{err}");
        // A key where the CA should be: no certificate in it.
        let err = client_config(
            TlsFiles {
                cert: &f.cert,
                key: &f.key,
                root_ca: Some(&f.key),
            },
            8883,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "mqtt.root_ca file {} is not usable: no CERTIFICATE block found",
                f.key.display()
            )
        );
    }

    #[test]
    fn errors_never_contain_key_material() {
        let f = files();
        let key_text = std::fs::read_to_string(&f.key).unwrap();
        let body: String = key_text.lines().nth(1).unwrap().to_string();
        for err in [
            tls(&f, &f.other_key, 8883).unwrap_err(),
            client_config(
                TlsFiles {
                    cert: &f.key,
                    key: &f.key,
                    root_ca: None,
                },
                8883,
            )
            .unwrap_err(),
        ] {
            assert!(!format!("{err} {err:?}").contains(&body), "{err}");
        }
    }
}
