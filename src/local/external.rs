//! The external-broker mode of `iotjobs-local serve --broker mqtts://HOST:PORT`: where the
//! broker is and how the Jobs service authenticates to it.
//!
//! Owns: parsing the broker URL, loading the service's client certificate/key and the
//! broker's CA (defaults: the local CA and a fresh service-identity certificate), and so
//! what devices are told to trust. Must not: start anything or talk to the network; the
//! service task connects with the [`BrokerConnection`] made here.

use std::path::{Path, PathBuf};

use crate::local::pki::{self, Pki, PkiError, SERVICE_IDENTITY};
use crate::local::service::task::BrokerConnection;

/// Port of `mqtts://HOST` without one: the MQTT-over-TLS port AWS IoT uses too.
pub const DEFAULT_PORT: u16 = 8883;

/// Errors setting up the external-broker mode.
#[derive(Debug, thiserror::Error)]
pub enum ExternalBrokerError {
    #[error("--broker {url}: {reason} (expected mqtts://HOST:PORT, e.g. mqtts://localhost:8883)")]
    BadUrl { url: String, reason: &'static str },
    #[error("--broker-cert and --broker-key go together: give both or neither")]
    CertWithoutKey,
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS set-up for the broker: {0}")]
    Tls(#[from] PkiError),
}

/// An external MQTT broker (mutual TLS) the service uses instead of the embedded one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalBroker {
    /// Host name or IP address, as devices and the service reach it (and as the broker's
    /// certificate names it: the TLS server name is checked against it).
    pub host: String,
    pub port: u16,
    /// PEM CA(s) that sign the broker's certificate (default: the local CA).
    pub ca: Option<PathBuf>,
    /// The service's client certificate and key (default: issued by the local CA for
    /// [`SERVICE_IDENTITY`] at each start).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl ExternalBroker {
    /// Parses `mqtts://HOST[:PORT]` (an IPv6 address in brackets). Plain `mqtt://` is
    /// refused: devices authenticate with their certificates, so the broker must be TLS.
    pub fn parse(url: &str) -> Result<ExternalBroker, ExternalBrokerError> {
        let bad = |reason| ExternalBrokerError::BadUrl {
            url: url.to_owned(),
            reason,
        };
        let rest = match url.split_once("://") {
            Some(("mqtts" | "ssl" | "tls", rest)) => rest,
            Some(("mqtt" | "tcp", _)) => {
                return Err(bad(
                    "the broker must use TLS (devices authenticate with certificates)",
                ))
            }
            Some(_) => return Err(bad("unknown scheme")),
            None => return Err(bad("no scheme")),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(bad("only a host and a port are allowed"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            match after {
                "" => (host, None),
                p => (
                    host,
                    Some(p.strip_prefix(':').ok_or_else(|| bad("bad port"))?),
                ),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, _)) if h.contains(':') => {
                    return Err(bad("an IPv6 address needs brackets: mqtts://[::1]:8883"))
                }
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p != 0 => p,
                _ => return Err(bad("the port must be 1-65535")),
            },
        };
        Ok(ExternalBroker {
            host: host.to_owned(),
            port,
            ca: None,
            cert: None,
            key: None,
        })
    }

    /// `mqtts://HOST:PORT`.
    pub fn url(&self) -> String {
        if self.host.contains(':') {
            format!("mqtts://[{}]:{}", self.host, self.port)
        } else {
            format!("mqtts://{}:{}", self.host, self.port)
        }
    }

    /// The service's connection to the broker and the CA PEM devices must trust for it.
    pub fn connection(&self, pki: &Pki) -> Result<(BrokerConnection, String), ExternalBrokerError> {
        let ca_pem = match &self.ca {
            Some(path) => read(path)?,
            None => pki.ca_cert_pem().to_owned(),
        };
        let (cert_pem, key_pem) = match (&self.cert, &self.key) {
            (Some(c), Some(k)) => (read(c)?, read(k)?),
            (None, None) => {
                let issued = pki.issue_service_cert()?;
                (issued.certificate_pem, issued.key_pair.private_key)
            }
            _ => return Err(ExternalBrokerError::CertWithoutKey),
        };
        let tls = pki::client_tls_config(&ca_pem, Some((&cert_pem, &key_pem)))?;
        let conn = BrokerConnection {
            host: self.host.clone(),
            port: self.port,
            client_id: SERVICE_IDENTITY.to_owned(),
            tls: Some(tls),
        };
        Ok((conn, ca_pem))
    }
}

fn read(path: &Path) -> Result<String, ExternalBrokerError> {
    std::fs::read_to_string(path).map_err(|source| ExternalBrokerError::Read {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> (String, u16) {
        let b = ExternalBroker::parse(url).unwrap();
        (b.host, b.port)
    }

    fn err(url: &str) -> String {
        ExternalBroker::parse(url).unwrap_err().to_string()
    }

    #[test]
    fn parses_hosts_ports_and_ipv6() {
        assert_eq!(ok("mqtts://localhost:18883"), ("localhost".into(), 18883));
        assert_eq!(ok("mqtts://broker.lan"), ("broker.lan".into(), 8883));
        assert_eq!(ok("mqtts://127.0.0.1:8883/"), ("127.0.0.1".into(), 8883));
        assert_eq!(ok("ssl://10.0.0.2:443"), ("10.0.0.2".into(), 443));
        assert_eq!(ok("mqtts://[::1]:9000"), ("::1".into(), 9000));
        assert_eq!(ok("mqtts://[fe80::1]"), ("fe80::1".into(), 8883));
    }

    #[test]
    fn refuses_what_it_cannot_use_with_the_reason() {
        assert!(err("mqtt://localhost:1883").contains("must use TLS"));
        assert!(err("localhost:8883").contains("no scheme"));
        assert!(err("https://localhost").contains("unknown scheme"));
        assert!(err("mqtts://:8883").contains("no host"));
        assert!(err("mqtts://localhost:0").contains("1-65535"));
        assert!(err("mqtts://localhost:x").contains("1-65535"));
        assert!(err("mqtts://localhost:70000").contains("1-65535"));
        assert!(err("mqtts://::1:8883").contains("brackets"));
        assert!(err("mqtts://[::1").contains("unclosed"));
        assert!(err("mqtts://u:p@host:8883").contains("only a host"));
        assert!(err("mqtts://host:8883/x").contains("only a host"));
    }

    #[test]
    fn url_round_trips() {
        for url in ["mqtts://localhost:8883", "mqtts://[::1]:18883"] {
            assert_eq!(ExternalBroker::parse(url).unwrap().url(), url);
        }
    }

    #[test]
    fn default_identity_is_the_service_with_the_local_ca() {
        let pki = Pki::ephemeral().unwrap();
        let b = ExternalBroker::parse("mqtts://localhost:8883").unwrap();
        let (conn, ca) = b.connection(&pki).unwrap();
        assert_eq!(ca, pki.ca_cert_pem());
        assert_eq!(conn.client_id, SERVICE_IDENTITY);
        assert_eq!((conn.host.as_str(), conn.port), ("localhost", 8883));
        assert!(conn.tls.is_some());
    }

    #[test]
    fn explicit_files_are_used_and_must_come_in_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::ephemeral().unwrap();
        let other = Pki::ephemeral().unwrap();
        let ca = dir.path().join("broker-ca.pem");
        std::fs::write(&ca, other.ca_cert_pem()).unwrap();
        let issued = pki.issue_service_cert().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, &issued.certificate_pem).unwrap();
        std::fs::write(&key, &issued.key_pair.private_key).unwrap();

        let mut b = ExternalBroker::parse("mqtts://localhost").unwrap();
        b.ca = Some(ca);
        b.cert = Some(cert.clone());
        b.key = Some(key);
        let (_, ca_pem) = b.connection(&pki).unwrap();
        assert_eq!(ca_pem, other.ca_cert_pem(), "devices trust the broker's CA");

        b.key = None;
        assert!(matches!(
            b.connection(&pki),
            Err(ExternalBrokerError::CertWithoutKey)
        ));
        b.key = Some(dir.path().join("missing.pem"));
        let e = b.connection(&pki).unwrap_err().to_string();
        assert!(e.contains("missing.pem"), "{e}");
    }
}
