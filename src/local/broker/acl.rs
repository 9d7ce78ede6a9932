//! Who a client is and what it may do: the local equivalent of an AWS IoT policy that
//! allows `iot:Connect` with client id = thing name and `iot:Publish`/`iot:Subscribe` only
//! under `$aws/things/${iot:Connection.Thing.ThingName}/`. Pure functions, no I/O: the
//! rmqtt hooks in `hooks.rs` call them and act on the answer.
//!
//! A device is identified in one of two ways:
//! - a certificate the service issued and recorded (CreateKeysAndCertificate): the
//!   client id must name a thing the certificate is attached to (AttachThingPrincipal) and
//!   the certificate must be ACTIVE, as on AWS. [`Principals`] is the broker's read-only
//!   view of those records; the service task is its only writer.
//! - any other certificate of the local CA (issued before certificates were recorded, or
//!   by `Pki` directly): its CN is the thing name and the client id must equal it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::local::pki::{is_valid_thing_name, SERVICE_IDENTITY, UNBOUND_DEVICE_CN};

use super::router::ESCAPE;

/// The authenticated identity behind a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The service itself (certificate CN = [`SERVICE_IDENTITY`]): may use every topic.
    Service,
    /// A device (certificate CN = thing name): confined to `$aws/things/<name>/`.
    Thing(String),
}

impl Identity {
    /// The identity a certificate common name stands for, if any.
    pub fn from_common_name(cn: &str) -> Option<Identity> {
        if cn == SERVICE_IDENTITY {
            Some(Identity::Service)
        } else if is_valid_thing_name(cn) {
            Some(Identity::Thing(cn.to_string()))
        } else {
            None
        }
    }

    /// The identity a client id claims. The service may open several connections, so it
    /// may use `iotjobs-local/service` or `iotjobs-local/service/<suffix>`; a device must use
    /// exactly its thing name (as AWS IoT policies usually require).
    pub fn from_client_id(client_id: &str) -> Option<Identity> {
        match client_id.strip_prefix(SERVICE_IDENTITY) {
            Some("") => Some(Identity::Service),
            Some(rest) => match rest.strip_prefix('/') {
                Some(suffix) if !suffix.is_empty() => Some(Identity::Service),
                _ => None,
            },
            None if is_valid_thing_name(client_id) => Some(Identity::Thing(client_id.to_string())),
            None => None,
        }
    }
}

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Mutual TLS: the identity is the client certificate's CN.
    MutualTls,
    /// Plain TCP (tests only): no certificate, the identity is the client id.
    PlainTcp,
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectDenied {
    #[error("no client certificate")]
    NoCertificate,
    #[error("client certificate has no common name")]
    NoCommonName,
    #[error("certificate common name {0:?} is neither a thing name nor the service identity")]
    BadCommonName(String),
    #[error("client id {client_id:?} does not match certificate common name {common_name:?}")]
    ClientIdMismatch {
        client_id: String,
        common_name: String,
    },
    #[error("client id {0:?} is not a thing name")]
    BadClientId(String),
    #[error("unbound certificate unknown to this service (issued by another data directory?)")]
    UnknownCertificate,
    #[error("certificate {0} is INACTIVE")]
    CertificateInactive(String),
    #[error("certificate {certificate_id} is not attached to thing {client_id:?}")]
    NotAttached {
        certificate_id: String,
        client_id: String,
    },
}

/// What the broker knows of a recorded certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundCert {
    pub certificate_id: String,
    pub active: bool,
    /// The things it is attached to.
    pub things: Vec<String>,
}

/// The recorded certificates by serial number (lowercase hex, how the broker reads it from
/// a connection; unique per CA like the certificate id, whose DER rmqtt does not expose).
/// Clones share one map: the service task writes it after each change it commits, the
/// broker's authentication hook reads it, so connecting needs no database access.
#[derive(Debug, Clone, Default)]
pub struct Principals {
    by_serial: Arc<RwLock<HashMap<String, BoundCert>>>,
}

impl Principals {
    /// The record of the certificate with `serial`, if the service issued it.
    pub fn lookup(&self, serial: &str) -> Option<BoundCert> {
        // A writer that panicked left a complete map (each write is one insert/remove).
        let map = self.by_serial.read().unwrap_or_else(|e| e.into_inner());
        map.get(serial).cloned()
    }

    /// Records (`Some`) or forgets (`None`) the certificate with `serial`.
    pub fn set(&self, serial: &str, cert: Option<BoundCert>) {
        let mut map = self.by_serial.write().unwrap_or_else(|e| e.into_inner());
        match cert {
            Some(c) => map.insert(serial.to_owned(), c),
            None => map.remove(serial),
        };
    }
}

/// Authenticates a connection from its client id and, on TLS, its certificate's CN
/// (`cert` is `Some(cn)` when a certificate was presented; `Some(None)` if it has no CN).
pub fn authenticate(
    transport: Transport,
    client_id: &str,
    cert: Option<Option<&str>>,
) -> Result<Identity, ConnectDenied> {
    match transport {
        Transport::PlainTcp => Identity::from_client_id(client_id)
            .ok_or_else(|| ConnectDenied::BadClientId(client_id.into())),
        Transport::MutualTls => {
            let cn = cert
                .ok_or(ConnectDenied::NoCertificate)?
                .ok_or(ConnectDenied::NoCommonName)?;
            let identity = Identity::from_common_name(cn)
                .ok_or_else(|| ConnectDenied::BadCommonName(cn.into()))?;
            if Identity::from_client_id(client_id).as_ref() != Some(&identity) {
                return Err(ConnectDenied::ClientIdMismatch {
                    client_id: client_id.into(),
                    common_name: cn.into(),
                });
            }
            Ok(identity)
        }
    }
}

/// [`authenticate`] for a TLS connection whose certificate the service recorded (`bound`):
/// the client id must be a thing the certificate is attached to, and it must be ACTIVE.
/// Without a record, the CN rules of [`authenticate`] apply.
pub fn authenticate_bound(
    transport: Transport,
    client_id: &str,
    cert: Option<Option<&str>>,
    bound: Option<&BoundCert>,
) -> Result<Identity, ConnectDenied> {
    let bound = match (transport, bound) {
        (Transport::MutualTls, Some(b)) => b,
        (Transport::MutualTls, None) if cert == Some(Some(UNBOUND_DEVICE_CN)) => {
            return Err(ConnectDenied::UnknownCertificate)
        }
        _ => return authenticate(transport, client_id, cert),
    };
    if !bound.active {
        return Err(ConnectDenied::CertificateInactive(
            bound.certificate_id.clone(),
        ));
    }
    match Identity::from_client_id(client_id) {
        Some(Identity::Thing(name)) if bound.things.contains(&name) => Ok(Identity::Thing(name)),
        _ => Err(ConnectDenied::NotAttached {
            certificate_id: bound.certificate_id.clone(),
            client_id: client_id.into(),
        }),
    }
}

/// May `identity` subscribe to `filter`? A device only to filters whose matches all lie
/// under its own `$aws/things/<name>/` (so its first three levels must be literal).
pub fn may_subscribe(identity: &Identity, filter: &str) -> bool {
    allowed(identity, filter)
}

/// May `identity` publish to `topic`?
pub fn may_publish(identity: &Identity, topic: &str) -> bool {
    allowed(identity, topic)
}

fn allowed(identity: &Identity, topic: &str) -> bool {
    // The router escapes `$` levels to ESCAPE; a client topic containing it could alias an
    // escaped key, so nobody may use it.
    if topic.contains(ESCAPE) {
        return false;
    }
    match identity {
        Identity::Service => true,
        Identity::Thing(name) => topic
            .strip_prefix("$aws/things/")
            .and_then(|rest| rest.strip_prefix(name.as_str()))
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|rest| !rest.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thing(name: &str) -> Identity {
        Identity::Thing(name.into())
    }

    #[test]
    fn identity_from_client_id() {
        assert_eq!(Identity::from_client_id("t1"), Some(thing("t1")));
        assert_eq!(
            Identity::from_client_id("a:b_c-D9"),
            Some(thing("a:b_c-D9"))
        );
        assert_eq!(
            Identity::from_client_id(SERVICE_IDENTITY),
            Some(Identity::Service)
        );
        assert_eq!(
            Identity::from_client_id("iotjobs-local/service/engine"),
            Some(Identity::Service)
        );
        for bad in [
            "",
            "iotjobs-local/service/",
            "iotjobs-local/servicex",
            "iotjobs-local/serv",
            "a/b",
            "a b",
            "t+",
            "#",
        ] {
            assert_eq!(Identity::from_client_id(bad), None, "{bad:?}");
        }
        assert_eq!(Identity::from_client_id(&"x".repeat(129)), None);
    }

    #[test]
    fn identity_from_common_name() {
        assert_eq!(Identity::from_common_name("t1"), Some(thing("t1")));
        assert_eq!(
            Identity::from_common_name(SERVICE_IDENTITY),
            Some(Identity::Service)
        );
        // A suffixed service client id is not a certificate identity.
        assert_eq!(Identity::from_common_name("iotjobs-local/service/x"), None);
        assert_eq!(Identity::from_common_name("Test Root CA"), None);
    }

    #[test]
    fn tls_authentication() {
        let tls = Transport::MutualTls;
        assert_eq!(authenticate(tls, "t1", Some(Some("t1"))), Ok(thing("t1")));
        assert_eq!(
            authenticate(tls, SERVICE_IDENTITY, Some(Some(SERVICE_IDENTITY))),
            Ok(Identity::Service)
        );
        assert_eq!(
            authenticate(
                tls,
                "iotjobs-local/service/observer",
                Some(Some(SERVICE_IDENTITY))
            ),
            Ok(Identity::Service)
        );
        assert_eq!(
            authenticate(tls, "t2", Some(Some("t1"))),
            Err(ConnectDenied::ClientIdMismatch {
                client_id: "t2".into(),
                common_name: "t1".into()
            })
        );
        // A device may not claim the service's client id, nor the service a thing's.
        assert!(matches!(
            authenticate(tls, SERVICE_IDENTITY, Some(Some("t1"))),
            Err(ConnectDenied::ClientIdMismatch { .. })
        ));
        assert!(matches!(
            authenticate(tls, "t1", Some(Some(SERVICE_IDENTITY))),
            Err(ConnectDenied::ClientIdMismatch { .. })
        ));
        assert_eq!(
            authenticate(tls, "t1", None),
            Err(ConnectDenied::NoCertificate)
        );
        assert_eq!(
            authenticate(tls, "t1", Some(None)),
            Err(ConnectDenied::NoCommonName)
        );
        assert_eq!(
            authenticate(tls, "a/b", Some(Some("a/b"))),
            Err(ConnectDenied::BadCommonName("a/b".into()))
        );
    }

    #[test]
    fn recorded_certificates_need_an_attachment_and_active() {
        let tls = Transport::MutualTls;
        let cert = |active, things: &[&str]| BoundCert {
            certificate_id: "c1".into(),
            active,
            things: things.iter().map(|t| t.to_string()).collect(),
        };
        let cn = Some(Some("AWS IoT Certificate"));
        let attached = cert(true, &["t1", "t2"]);
        assert_eq!(
            authenticate_bound(tls, "t1", cn, Some(&attached)),
            Ok(thing("t1"))
        );
        assert_eq!(
            authenticate_bound(tls, "t2", cn, Some(&attached)),
            Ok(thing("t2"))
        );
        for client_id in ["t3", SERVICE_IDENTITY, "a/b"] {
            assert_eq!(
                authenticate_bound(tls, client_id, cn, Some(&attached)),
                Err(ConnectDenied::NotAttached {
                    certificate_id: "c1".into(),
                    client_id: client_id.into()
                })
            );
        }
        assert_eq!(
            authenticate_bound(tls, "t1", cn, Some(&cert(true, &[]))),
            Err(ConnectDenied::NotAttached {
                certificate_id: "c1".into(),
                client_id: "t1".into()
            })
        );
        assert_eq!(
            authenticate_bound(tls, "t1", cn, Some(&cert(false, &["t1"]))),
            Err(ConnectDenied::CertificateInactive("c1".into()))
        );
        // A recorded certificate whose CN is a thing name follows its record, not its CN.
        assert!(authenticate_bound(tls, "t1", Some(Some("t1")), Some(&cert(true, &[]))).is_err());
        // Without a record: the CN rules; an unrecorded unbound certificate is refused.
        assert_eq!(
            authenticate_bound(tls, "t1", Some(Some("t1")), None),
            Ok(thing("t1"))
        );
        assert_eq!(
            authenticate_bound(tls, "t1", cn, None),
            Err(ConnectDenied::UnknownCertificate)
        );
    }

    #[test]
    fn principals_view_is_shared_by_clones() {
        let writer = Principals::default();
        let reader = writer.clone();
        assert_eq!(reader.lookup("ab"), None);
        let c = BoundCert {
            certificate_id: "c1".into(),
            active: true,
            things: vec!["t1".into()],
        };
        writer.set("ab", Some(c.clone()));
        assert_eq!(reader.lookup("ab"), Some(c));
        writer.set("ab", None);
        assert_eq!(reader.lookup("ab"), None);
    }

    #[test]
    fn tcp_authentication_uses_client_id() {
        let tcp = Transport::PlainTcp;
        assert_eq!(authenticate(tcp, "t1", None), Ok(thing("t1")));
        assert_eq!(
            authenticate(tcp, SERVICE_IDENTITY, None),
            Ok(Identity::Service)
        );
        assert_eq!(
            authenticate(tcp, "", None),
            Err(ConnectDenied::BadClientId(String::new()))
        );
    }

    #[test]
    fn device_topics() {
        let t1 = thing("t1");
        for ok in [
            "$aws/things/t1/jobs/notify-next",
            "$aws/things/t1/jobs/$next/get/accepted",
            "$aws/things/t1/jobs/+/update/accepted",
            "$aws/things/t1/jobs/#",
            "$aws/things/t1/#",
            "$aws/things/t1/shadow/update",
        ] {
            assert!(may_subscribe(&t1, ok), "{ok}");
            assert!(may_publish(&t1, ok), "{ok}");
        }
        for denied in [
            "$aws/things/t2/jobs/notify-next",
            "$aws/things/t1",
            "$aws/things/t1/",
            "$aws/things/t10/jobs/notify-next",
            "$aws/things/t/jobs/notify-next",
            "$aws/things/+/jobs/notify-next",
            "$aws/things/#",
            "$aws/+/t1/jobs/notify-next",
            "+/things/t1/jobs/notify-next",
            "#",
            "$aws/things/t1\u{E000}/jobs",
            "$aws/things/t1/jobs/\u{E000}next/get",
            "aws/things/t1/jobs/notify-next",
            "$AWS/things/t1/jobs/notify-next",
        ] {
            assert!(!may_subscribe(&t1, denied), "{denied}");
            assert!(!may_publish(&t1, denied), "{denied}");
        }
    }

    #[test]
    fn service_may_use_everything_but_the_escape_char() {
        let s = Identity::Service;
        for ok in [
            "$aws/things/+/jobs/#",
            "#",
            "$aws/things/t1/jobs/$next/get/accepted",
            "other/topic",
        ] {
            assert!(may_subscribe(&s, ok) && may_publish(&s, ok), "{ok}");
        }
        assert!(!may_subscribe(&s, "$aws/things/t1/jobs/\u{E000}next/get"));
        assert!(!may_publish(&s, "\u{E000}"));
    }
}
