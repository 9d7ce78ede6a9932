//! Turns a failed connection attempt into one line an operator can act on, naming the
//! broker and, for TLS failures, the setting to check. There is never a plaintext
//! fallback: the transport is always TLS.

use std::error::Error as StdError;

use rumqttc::{ConnectReturnCode, ConnectionError};
use rustls::{AlertDescription, CertificateError};

/// One line describing why an attempt to reach `host:port` failed or the link dropped.
pub fn describe(err: &ConnectionError, host: &str, port: u16) -> String {
    if let ConnectionError::ConnectionRefused(code) = err {
        return refused(*code, host, port);
    }
    if let Some(tls) = find_rustls_error(err) {
        let hint = tls_hint(tls);
        return match hint {
            Some(hint) => format!("TLS handshake with {host}:{port} failed: {tls} — {hint}"),
            None => format!("TLS handshake with {host}:{port} failed: {tls}"),
        };
    }
    match err {
        ConnectionError::NetworkTimeout => {
            format!("no answer from {host}:{port} within the connection timeout")
        }
        ConnectionError::Tls(e) => format!("TLS connection to {host}:{port} failed: {e}"),
        ConnectionError::Io(e) => format!("connection to {host}:{port} failed: {e}"),
        other => format!("connection to {host}:{port} lost: {other}"),
    }
}

fn refused(code: ConnectReturnCode, host: &str, port: u16) -> String {
    let hint = match code {
        ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNamePassword => {
            " — check that the certificate is active and its policy allows iot:Connect for this client id"
        }
        ConnectReturnCode::BadClientId => " — check mqtt.client_id",
        _ => "",
    };
    format!("broker {host}:{port} refused the connection: {code:?}{hint}")
}

/// rustls errors arrive wrapped in `io::Error`s, at various depths of the chain.
fn find_rustls_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                    return Some(tls);
                }
            }
        }
        current = e.source();
    }
    None
}

fn tls_hint(err: &rustls::Error) -> Option<&'static str> {
    use CertificateError as C;
    Some(match err {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::UnknownIssuer | C::BadSignature => {
                "the broker's certificate is not signed by a trusted CA; check mqtt.root_ca"
            }
            C::Expired | C::ExpiredContext { .. } => {
                "the broker's certificate has expired (or this system's clock is wrong)"
            }
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "the broker's certificate is not valid yet; check this system's clock"
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "the broker's certificate does not name this host; check mqtt.endpoint"
            }
            _ => return None,
        },
        rustls::Error::AlertReceived(alert) => match alert {
            AlertDescription::CertificateExpired => {
                "the broker says our certificate has expired; renew mqtt.cert"
            }
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateRequired
            | AlertDescription::CertificateRevoked
            | AlertDescription::AccessDenied
            | AlertDescription::DecryptError => {
                "the broker rejected our client certificate; check mqtt.cert and mqtt.key and that the broker trusts their CA"
            }
            _ => return None,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io_wrapping(tls: rustls::Error) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, tls)
    }

    #[test]
    fn unknown_issuer_names_root_ca() {
        let err = ConnectionError::Tls(rumqttc::TlsError::Io(io_wrapping(
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        )));
        let line = describe(&err, "broker.example", 8883);
        assert_eq!(
            line,
            "TLS handshake with broker.example:8883 failed: invalid peer certificate: UnknownIssuer — the broker's certificate is not signed by a trusted CA; check mqtt.root_ca"
        );
    }

    #[test]
    fn rejected_client_cert_names_cert_and_key() {
        let err = ConnectionError::Io(io_wrapping(rustls::Error::AlertReceived(
            AlertDescription::UnknownCA,
        )));
        let line = describe(&err, "h", 443);
        assert!(
            line.starts_with("TLS handshake with h:443 failed: received fatal alert"),
            "{line}"
        );
        assert!(line.contains("check mqtt.cert and mqtt.key"), "{line}");
    }

    #[test]
    fn plain_io_errors_name_the_broker() {
        let err = ConnectionError::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused",
        ));
        assert_eq!(
            describe(&err, "h", 8883),
            "connection to h:8883 failed: Connection refused"
        );
    }

    #[test]
    fn refused_connack_has_hint() {
        let err = ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized);
        let line = describe(&err, "h", 8883);
        assert!(
            line.starts_with("broker h:8883 refused the connection: NotAuthorized"),
            "{line}"
        );
    }
}
