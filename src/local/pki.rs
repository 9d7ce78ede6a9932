//! The local certificate authority, modelled on AWS IoT's: one CA per data directory,
//! created on first use and reloaded afterwards, that issues
//! - the broker's server certificate (SANs, EKU serverAuth),
//! - device certificates (CN = thing name, EKU clientAuth, EC P-256 PKCS#8 key), returned
//!   in the shape of `CreateKeysAndCertificate` (certificate id = hex SHA-256 of the DER),
//! - unbound device certificates (CN [`UNBOUND_DEVICE_CN`]), bound to things later by
//!   AttachThingPrincipal,
//! - the service's own client certificate, whose CN ([`SERVICE_IDENTITY`]) can never be a
//!   thing name, so no device certificate can ever carry the service's privileges.
//!
//! Every integration test makes its certificates here ([`Pki::ephemeral`] needs no files).
//! This module only makes and stores key material; it must never log it, and it does not
//! decide who may do what on the broker (that is `local::broker::acl`).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Common name of the service's own client certificate. It contains `/`, which thing names
/// (`[a-zA-Z0-9:_-]+`) cannot, so it can never collide with a device identity.
pub const SERVICE_IDENTITY: &str = "iotjobs-local/service";

/// Common name of certificates issued unbound (AWS IoT uses the same). Its spaces make it
/// no thing name, so it never identifies a device by itself.
pub const UNBOUND_DEVICE_CN: &str = "AWS IoT Certificate";

/// Region and account used in the ARN-like ids of this local service.
pub const LOCAL_ARN_PREFIX: &str = "arn:aws:iot:local:000000000000";

/// The SANs of a broker that listens on the loopback interface.
pub const LOOPBACK_SANS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

const CA_CERT_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca.key";

/// Errors from the local CA.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("CA in {dir} is unusable: {reason}")]
    BadCa { dir: PathBuf, reason: String },
    #[error("invalid thing name {0:?}: must be 1-128 characters of [a-zA-Z0-9:_-]")]
    InvalidThingName(String),
    #[error("invalid PEM: {0}")]
    Pem(String),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// True if `name` is a valid AWS IoT thing name (`[a-zA-Z0-9:_-]+`, at most 128 characters).
pub fn is_valid_thing_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

/// The key pair of an issued certificate, named like `CreateKeysAndCertificate`'s `keyPair`.
#[derive(Clone)]
pub struct KeyPairPem {
    /// SubjectPublicKeyInfo PEM (`BEGIN PUBLIC KEY`).
    pub public_key: String,
    /// PKCS#8 PEM (`BEGIN PRIVATE KEY`).
    pub private_key: String,
}

impl std::fmt::Debug for KeyPairPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPairPem")
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

/// A certificate issued by the local CA, with its key: what `CreateKeysAndCertificate` returns.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// Hex SHA-256 of the certificate's DER (64 lowercase hex digits), like AWS's certificateId.
    pub certificate_id: String,
    /// `arn:aws:iot:local:000000000000:cert/<certificate_id>`.
    pub certificate_arn: String,
    pub certificate_pem: String,
    /// The serial number in lowercase hex without leading zeros: how the broker sees the
    /// certificate of a connection (it is unique per CA, as the certificate id is).
    pub serial: String,
    pub key_pair: KeyPairPem,
}

impl IssuedCert {
    fn new(cert: rcgen::Certificate, key: &KeyPair, serial: &SerialNumber) -> Self {
        let certificate_id = sha256_hex(cert.der());
        IssuedCert {
            certificate_arn: format!("{LOCAL_ARN_PREFIX}:cert/{certificate_id}"),
            certificate_id,
            serial: serial_hex(&serial.to_bytes()),
            certificate_pem: cert.pem(),
            key_pair: KeyPairPem {
                public_key: key.public_key_pem(),
                private_key: key.serialize_pem(),
            },
        }
    }
}

/// Files written by [`Pki::write_device_bundle`].
#[derive(Debug, Clone)]
pub struct DeviceBundle {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub root_ca_path: PathBuf,
    pub issued: IssuedCert,
}

/// The local CA. Cheap to share behind an `Arc`; issuing is synchronous and fast (EC P-256).
pub struct Pki {
    dir: Option<PathBuf>,
    ca_cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// Loads the CA from `dir` (`ca.pem`, `ca.key`), or creates it there on first use: the
    /// directory with mode 0700, the key with mode 0600.
    pub fn load_or_create(dir: impl AsRef<Path>) -> Result<Pki, PkiError> {
        let dir = dir.as_ref();
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => Self::load(dir, &cert_path, &key_path),
            (false, false) => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(io_err(dir))?;
                let pki = Self::generate(Some(dir.to_path_buf()))?;
                // Key first: a crash in between leaves no certificate without its key.
                write_atomic(
                    &key_path,
                    pki.issuer.key().serialize_pem().as_bytes(),
                    0o600,
                )?;
                write_atomic(&cert_path, pki.ca_cert_pem.as_bytes(), 0o644)?;
                Ok(pki)
            }
            (true, false) => Err(PkiError::BadCa {
                dir: dir.into(),
                reason: format!("{CA_KEY_FILE} is missing"),
            }),
            (false, true) => Err(PkiError::BadCa {
                dir: dir.into(),
                reason: format!("{CA_CERT_FILE} is missing"),
            }),
        }
    }

    /// A CA that lives only in memory: for tests, and to make "another CA" in tests.
    pub fn ephemeral() -> Result<Pki, PkiError> {
        Self::generate(None)
    }

    fn generate(dir: Option<PathBuf>) -> Result<Pki, PkiError> {
        let key = KeyPair::generate()?;
        // A random suffix makes two local CAs distinguishable in logs and error messages.
        let cn = format!("iotjobs-local CA {:08x}", fastrand::u32(..));
        let params = ca_params(&cn);
        let cert = params.self_signed(&key)?;
        Ok(Pki {
            dir,
            ca_cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    fn load(dir: &Path, cert_path: &Path, key_path: &Path) -> Result<Pki, PkiError> {
        let bad = |reason: String| PkiError::BadCa {
            dir: dir.into(),
            reason,
        };
        let ca_cert_pem = fs::read_to_string(cert_path).map_err(io_err(cert_path))?;
        let key_pem = fs::read_to_string(key_path).map_err(io_err(key_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| bad(format!("{CA_KEY_FILE}: {e}")))?;
        let der = CertificateDer::from_pem_slice(ca_cert_pem.as_bytes())
            .map_err(|e| bad(format!("{CA_CERT_FILE}: {e}")))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| bad(format!("{CA_CERT_FILE}: {e}")))?;
        if parsed.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(bad(format!(
                "{CA_KEY_FILE} does not belong to {CA_CERT_FILE}"
            )));
        }
        let cn = parsed
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .ok_or_else(|| bad(format!("{CA_CERT_FILE} has no common name")))?
            .to_string();
        // The issuer name in issued certificates must equal the CA's subject byte for byte;
        // `ca_params` builds the same single-CN name the CA was created with.
        Ok(Pki {
            dir: Some(dir.into()),
            ca_cert_pem,
            issuer: Issuer::new(ca_params(&cn), key),
        })
    }

    /// The directory the CA lives in (`None` for an ephemeral CA).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The CA certificate (the devices' `root-ca.pem`, the broker's client CA).
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    /// A server certificate for the broker with the given DNS names and/or IP addresses as
    /// SANs (rustls ignores the CN), EKU serverAuth.
    pub fn issue_server_cert<S: AsRef<str>>(&self, sans: &[S]) -> Result<IssuedCert, PkiError> {
        let sans: Vec<String> = sans.iter().map(|s| s.as_ref().to_string()).collect();
        let cn = sans
            .first()
            .cloned()
            .unwrap_or_else(|| "iotjobs-local broker".into());
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name = cn_name(&cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// [`Self::issue_server_cert`] for [`LOOPBACK_SANS`] (localhost, 127.0.0.1, ::1).
    pub fn issue_loopback_server_cert(&self) -> Result<IssuedCert, PkiError> {
        self.issue_server_cert(&LOOPBACK_SANS)
    }

    /// A device certificate for `thing_name` (CN = thing name, EKU clientAuth), like
    /// `CreateKeysAndCertificate` followed by attaching it to the thing.
    pub fn issue_device_cert(&self, thing_name: &str) -> Result<IssuedCert, PkiError> {
        if !is_valid_thing_name(thing_name) {
            return Err(PkiError::InvalidThingName(thing_name.to_string()));
        }
        self.issue_client_cert(thing_name)
    }

    /// A device certificate bound to no thing, as `CreateKeysAndCertificate` issues it:
    /// CN [`UNBOUND_DEVICE_CN`] (AWS's own), which is no thing name, so the certificate
    /// grants nothing until AttachThingPrincipal binds it to a thing.
    pub fn issue_unbound_device_cert(&self) -> Result<IssuedCert, PkiError> {
        self.issue_client_cert(UNBOUND_DEVICE_CN)
    }

    /// The service's own client certificate (CN = [`SERVICE_IDENTITY`]).
    pub fn issue_service_cert(&self) -> Result<IssuedCert, PkiError> {
        self.issue_client_cert(SERVICE_IDENTITY)
    }

    fn issue_client_cert(&self, cn: &str) -> Result<IssuedCert, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = cn_name(cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, mut params: CertificateParams) -> Result<IssuedCert, PkiError> {
        let serial = random_serial();
        params.serial_number = Some(serial.clone());
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params);
        // KeyPair::generate() is EC P-256; serialize_pem() writes PKCS#8.
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert::new(cert, &key, &serial))
    }

    /// Issues a device certificate for `thing_name` and writes `cert.pem`, `key.pem` (mode
    /// 0600) and `root-ca.pem` into `dir` (created if missing).
    pub fn write_device_bundle(
        &self,
        dir: impl AsRef<Path>,
        thing_name: &str,
    ) -> Result<DeviceBundle, PkiError> {
        let dir = dir.as_ref();
        let issued = self.issue_device_cert(thing_name)?;
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let bundle = DeviceBundle {
            cert_path: dir.join("cert.pem"),
            key_path: dir.join("key.pem"),
            root_ca_path: dir.join("root-ca.pem"),
            issued,
        };
        write_atomic(
            &bundle.key_path,
            bundle.issued.key_pair.private_key.as_bytes(),
            0o600,
        )?;
        write_atomic(
            &bundle.cert_path,
            bundle.issued.certificate_pem.as_bytes(),
            0o644,
        )?;
        write_atomic(&bundle.root_ca_path, self.ca_cert_pem.as_bytes(), 0o644)?;
        Ok(bundle)
    }

    /// A rustls client configuration (ring provider, TLS 1.2/1.3) that trusts this CA and
    /// authenticates with `cert`: what a test's rumqttc client needs
    /// (`Transport::tls_with_config(TlsConfiguration::Rustls(cfg))`).
    pub fn client_tls_config(
        &self,
        cert: &IssuedCert,
    ) -> Result<Arc<rustls::ClientConfig>, PkiError> {
        client_tls_config(
            &self.ca_cert_pem,
            Some((&cert.certificate_pem, &cert.key_pair.private_key)),
        )
    }
}

/// A rustls client configuration with the ring provider that trusts the CA(s) in `ca_pem`,
/// with an optional client certificate `(cert_pem, key_pem)`.
pub fn client_tls_config(
    ca_pem: &str,
    client_cert: Option<(&str, &str)>,
) -> Result<Arc<rustls::ClientConfig>, PkiError> {
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(der.map_err(|e| PkiError::Pem(e.to_string()))?)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    let cfg = match client_cert {
        Some((cert_pem, key_pem)) => {
            let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| PkiError::Pem(e.to_string()))?;
            let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                .map_err(|e| PkiError::Pem(e.to_string()))?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = cn_name(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params);
    params
}

fn cn_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// AWS IoT-issued certificates are valid until 2049-12-31; a start in the past tolerates
/// devices whose clocks are behind.
fn set_validity(params: &mut CertificateParams) {
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2049, 12, 31);
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    fastrand::fill(&mut bytes);
    bytes[0] &= 0x7f; // DER INTEGER must stay positive
    bytes[0] |= 0x01; // and non-zero-led, so the encoding keeps all 16 bytes
    SerialNumber::from_slice(&bytes)
}

/// A serial number as the broker reports it (x509-parser's `to_str_radix(16)`): lowercase
/// hex without leading zeros.
pub fn serial_hex(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    match hex.trim_start_matches('0') {
        "" => "0".to_owned(),
        s => s.to_owned(),
    }
}

fn sha256_hex(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `data` to `path` via a temporary file and a rename, with `mode` set at creation
/// (so a key is never readable by others, not even briefly).
fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), PkiError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // `mode` at creation is filtered by the umask and ignored for an existing file.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::{FromDer, X509Certificate};

    fn parse(pem: &str) -> (Vec<u8>, String, Vec<&'static str>) {
        let der = CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_string();
        let eku = cert.extended_key_usage().unwrap().map(|e| e.value.clone());
        let mut ekus = vec![];
        if let Some(e) = eku {
            if e.server_auth {
                ekus.push("serverAuth");
            }
            if e.client_auth {
                ekus.push("clientAuth");
            }
        }
        (der, cn, ekus)
    }

    /// What the broker's TLS listener does with a client certificate.
    fn verify_client_cert(ca_pem: &str, cert_pem: &str) -> Result<(), rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
        verifier
            .verify_client_cert(&cert, &[], rustls_pki_types::UnixTime::now())
            .map(|_| ())
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn thing_names() {
        for ok in ["t1", "a:b_c-D", &"x".repeat(128)] {
            assert!(is_valid_thing_name(ok), "{ok}");
        }
        for bad in [
            "",
            "a/b",
            "a b",
            "t+",
            "#",
            "é",
            SERVICE_IDENTITY,
            &"x".repeat(129),
        ] {
            assert!(!is_valid_thing_name(bad), "{bad}");
        }
    }

    #[test]
    fn ca_is_created_once_with_a_private_key_and_reloaded() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pki");
        let first = Pki::load_or_create(&dir).unwrap();
        assert_eq!(first.dir(), Some(dir.as_path()));
        assert_eq!(mode(&dir.join(CA_KEY_FILE)), 0o600);
        assert_eq!(mode(&dir), 0o700);
        let again = Pki::load_or_create(&dir).unwrap();
        assert_eq!(again.ca_cert_pem(), first.ca_cert_pem());
        // Certificates issued after the reload chain to the same CA.
        let cert = again.issue_device_cert("t1").unwrap();
        verify_client_cert(first.ca_cert_pem(), &cert.certificate_pem).unwrap();
        let stranger = Pki::ephemeral().unwrap();
        assert!(verify_client_cert(stranger.ca_cert_pem(), &cert.certificate_pem).is_err());
    }

    #[test]
    fn half_a_ca_is_an_error_not_a_new_ca() {
        let tmp = tempfile::tempdir().unwrap();
        Pki::load_or_create(tmp.path()).unwrap();
        fs::remove_file(tmp.path().join(CA_KEY_FILE)).unwrap();
        assert!(matches!(
            Pki::load_or_create(tmp.path()),
            Err(PkiError::BadCa { .. })
        ));
    }

    #[test]
    fn a_key_from_another_ca_is_detected() {
        let tmp = tempfile::tempdir().unwrap();
        Pki::load_or_create(tmp.path()).unwrap();
        let other = Pki::ephemeral().unwrap();
        fs::write(
            tmp.path().join(CA_KEY_FILE),
            other.issuer.key().serialize_pem(),
        )
        .unwrap();
        let err = Pki::load_or_create(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
    }

    #[test]
    fn device_certificate_looks_like_create_keys_and_certificate() {
        let pki = Pki::ephemeral().unwrap();
        let cert = pki.issue_device_cert("thing-1").unwrap();
        let (der, cn, ekus) = parse(&cert.certificate_pem);
        assert_eq!(cn, "thing-1");
        assert_eq!(ekus, ["clientAuth"]);
        assert_eq!(cert.certificate_id, sha256_hex(&der));
        assert_eq!(cert.certificate_id.len(), 64);
        assert!(cert
            .certificate_id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(
            cert.certificate_arn,
            format!(
                "arn:aws:iot:local:000000000000:cert/{}",
                cert.certificate_id
            )
        );
        assert!(cert
            .key_pair
            .private_key
            .starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(cert
            .key_pair
            .public_key
            .starts_with("-----BEGIN PUBLIC KEY-----"));
        let key = KeyPair::from_pem(&cert.key_pair.private_key).unwrap();
        assert_eq!(key.algorithm(), &rcgen::PKCS_ECDSA_P256_SHA256);
        // Two certificates for the same thing are distinct certificates.
        assert_ne!(
            pki.issue_device_cert("thing-1").unwrap().certificate_id,
            cert.certificate_id
        );
        // The private key never shows up in debug output.
        assert!(!format!("{cert:?}").contains("PRIVATE"));
    }

    #[test]
    fn serial_matches_what_the_broker_reads_and_unbound_cn_is_no_thing() {
        let pki = Pki::ephemeral().unwrap();
        for _ in 0..20 {
            let cert = pki.issue_unbound_device_cert().unwrap();
            let der = CertificateDer::from_pem_slice(cert.certificate_pem.as_bytes()).unwrap();
            let (_, parsed) = X509Certificate::from_der(&der).unwrap();
            assert_eq!(parsed.serial.to_str_radix(16), cert.serial);
            let (_, cn, ekus) = parse(&cert.certificate_pem);
            assert_eq!(cn, UNBOUND_DEVICE_CN);
            assert_eq!(ekus, ["clientAuth"]);
        }
        assert!(!is_valid_thing_name(UNBOUND_DEVICE_CN));
        assert_eq!(serial_hex(&[0x00, 0x0a, 0xff]), "aff");
        assert_eq!(serial_hex(&[0]), "0");
    }

    #[test]
    fn invalid_thing_names_get_no_certificate() {
        let pki = Pki::ephemeral().unwrap();
        for bad in ["", "a/b", SERVICE_IDENTITY] {
            assert!(
                matches!(
                    pki.issue_device_cert(bad),
                    Err(PkiError::InvalidThingName(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn server_and_service_certificates() {
        let pki = Pki::ephemeral().unwrap();
        let server = pki.issue_loopback_server_cert().unwrap();
        let (der, _, ekus) = parse(&server.certificate_pem);
        assert_eq!(ekus, ["serverAuth"]);
        let (_, parsed) = X509Certificate::from_der(&der).unwrap();
        let sans = parsed
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .len();
        assert_eq!(sans, 3);
        let (_, cn, ekus) = parse(&pki.issue_service_cert().unwrap().certificate_pem);
        assert_eq!(cn, SERVICE_IDENTITY);
        assert_eq!(ekus, ["clientAuth"]);
    }

    #[test]
    fn device_bundle_files() {
        let pki = Pki::ephemeral().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("certs");
        let bundle = pki.write_device_bundle(&out, "t1").unwrap();
        assert_eq!(
            fs::read_to_string(&bundle.cert_path).unwrap(),
            bundle.issued.certificate_pem
        );
        assert_eq!(
            fs::read_to_string(&bundle.key_path).unwrap(),
            bundle.issued.key_pair.private_key
        );
        assert_eq!(
            fs::read_to_string(&bundle.root_ca_path).unwrap(),
            pki.ca_cert_pem()
        );
        assert_eq!(mode(&bundle.key_path), 0o600);
        assert_eq!(bundle.cert_path, out.join("cert.pem"));
        assert_eq!(bundle.key_path, out.join("key.pem"));
        assert_eq!(bundle.root_ca_path, out.join("root-ca.pem"));
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(&out).unwrap().count(), 3);
    }
}
