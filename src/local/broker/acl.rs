//! Who a client is and what it may do: the local equivalent of an AWS IoT policy that
//! allows `iot:Connect` with client id = thing name and `iot:Publish`/`iot:Subscribe` only
//! under `$aws/things/${iot:Connection.Thing.ThingName}/`. Pure functions, no I/O: the
//! rmqtt hooks in `hooks.rs` call them and act on the answer.

use crate::local::pki::{is_valid_thing_name, SERVICE_IDENTITY};

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
