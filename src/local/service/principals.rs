//! Certificates and their attachments to things: recording what CreateKeysAndCertificate
//! issued, AttachThingPrincipal / DetachThingPrincipal, the principal lists,
//! DescribeCertificate and UpdateCertificate.
//!
//! After each change it commits, the service refreshes the broker's [`Principals`] view of
//! the certificate concerned: the service task is its only writer, and the broker decides
//! connections from it without touching the database. Connections already open when a
//! certificate is detached or deactivated stay open (AWS does not drop them at once
//! either); the next connect is refused.

use super::{validate, JobsService, ServiceError};
use crate::local::broker::acl::{BoundCert, Principals};
use crate::local::clock::Timestamp;
use crate::local::pki::IssuedCert;
use crate::local::store::{CertificateRecord, CertificateStatus, Store, StoreError};

/// Rebuilds the view from the store (at start): every recorded certificate.
pub(super) fn load_view(store: &Store, view: &Principals) -> Result<(), StoreError> {
    for c in store.list_certificates()? {
        refresh(store, view, &c)?;
    }
    Ok(())
}

fn refresh(store: &Store, view: &Principals, c: &CertificateRecord) -> Result<(), StoreError> {
    let things = store.things_of_certificate(&c.certificate_id)?;
    view.set(
        &c.serial,
        Some(BoundCert {
            certificate_id: c.certificate_id.clone(),
            active: c.status == CertificateStatus::Active,
            things,
        }),
    );
    Ok(())
}

/// A certificate id as AWS makes them: 64 lowercase hex digits.
fn check_certificate_id(id: &str) -> Result<(), ServiceError> {
    if id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(ServiceError::InvalidRequest(format!(
            "certificateId {id:?} is not 64 lowercase hexadecimal digits"
        )))
    }
}

/// The certificate id in a principal ARN (`arn:aws:iot:<region>:<account>:cert/<id>`).
/// Other principals (Cognito identities) are not supported locally.
fn certificate_of_principal(principal: &str) -> Result<String, ServiceError> {
    let id = principal
        .strip_prefix("arn:")
        .and_then(|rest| rest.split_once(":iot:"))
        .filter(|(partition, _)| partition.starts_with("aws"))
        .and_then(|(_, rest)| rest.split_once(":cert/"))
        .map(|(_, id)| id)
        .ok_or_else(|| {
            ServiceError::InvalidRequest(format!(
                "principal {principal:?} is not a certificate ARN \
                 (arn:aws:iot:REGION:ACCOUNT:cert/ID); iotjobs-local supports only certificates"
            ))
        })?;
    check_certificate_id(id)?;
    Ok(id.to_owned())
}

impl JobsService {
    /// A read-only handle on the certificate view, for the embedded broker.
    pub fn principals(&self) -> Principals {
        self.principals.clone()
    }

    fn refresh_certificate(&self, id: &str) -> Result<(), ServiceError> {
        if let Some(c) = self.store.get_certificate(id)? {
            refresh(&self.store, &self.principals, &c)?;
        }
        Ok(())
    }

    fn certificate(&self, id: &str) -> Result<CertificateRecord, ServiceError> {
        self.store
            .get_certificate(id)?
            .ok_or_else(|| ServiceError::not_found(format_args!("certificate {id}")))
    }

    fn require_thing(&self, thing: &str) -> Result<(), ServiceError> {
        match self.store.get_thing(thing)? {
            Some(_) => Ok(()),
            None => Err(ServiceError::not_found(format_args!("thing {thing}"))),
        }
    }

    /// Records a certificate CreateKeysAndCertificate issued, attached to `thing` if given
    /// (the local `thingName` extension; the thing must exist).
    pub fn record_certificate(
        &mut self,
        now: Timestamp,
        issued: &IssuedCert,
        active: bool,
        thing: Option<&str>,
    ) -> Result<CertificateRecord, ServiceError> {
        if let Some(t) = thing {
            self.require_thing(t)?;
        }
        let c = CertificateRecord {
            certificate_id: issued.certificate_id.clone(),
            certificate_arn: self.cfg.account.cert_arn(&issued.certificate_id),
            serial: issued.serial.clone(),
            pem: issued.certificate_pem.clone(),
            status: if active {
                CertificateStatus::Active
            } else {
                CertificateStatus::Inactive
            },
            created_at: now,
            last_modified_at: now,
        };
        self.store.atomic(|store| {
            store.insert_certificate(&c)?;
            if let Some(t) = thing {
                store.attach_principal(t, &c.certificate_id, now)?;
            }
            Ok::<_, ServiceError>(())
        })?;
        self.refresh_certificate(&c.certificate_id)?;
        Ok(c)
    }

    /// AttachThingPrincipal; attaching twice is no error.
    pub fn attach_thing_principal(
        &mut self,
        now: Timestamp,
        thing: &str,
        principal: &str,
    ) -> Result<(), ServiceError> {
        validate::name("thingName", thing)?;
        let id = certificate_of_principal(principal)?;
        self.require_thing(thing)?;
        self.certificate(&id)?;
        self.store.attach_principal(thing, &id, now)?;
        self.refresh_certificate(&id)
    }

    /// DetachThingPrincipal; detaching what is not attached is no error (as on AWS).
    pub fn detach_thing_principal(
        &mut self,
        thing: &str,
        principal: &str,
    ) -> Result<(), ServiceError> {
        let id = certificate_of_principal(principal)?;
        self.require_thing(thing)?;
        self.certificate(&id)?;
        self.store.detach_principal(thing, &id)?;
        self.refresh_certificate(&id)
    }

    /// ListThingPrincipals: the ARNs of the certificates attached to `thing`.
    pub fn list_thing_principals(&self, thing: &str) -> Result<Vec<String>, ServiceError> {
        self.require_thing(thing)?;
        let ids = self.store.certificates_of_thing(thing)?;
        Ok(ids.iter().map(|id| self.cfg.account.cert_arn(id)).collect())
    }

    /// ListPrincipalThings: the things `principal` is attached to.
    pub fn list_principal_things(&self, principal: &str) -> Result<Vec<String>, ServiceError> {
        let id = certificate_of_principal(principal)?;
        self.certificate(&id)?;
        Ok(self.store.things_of_certificate(&id)?)
    }

    /// DescribeCertificate.
    pub fn describe_certificate(&self, id: &str) -> Result<CertificateRecord, ServiceError> {
        check_certificate_id(id)?;
        self.certificate(id)
    }

    /// UpdateCertificate (ACTIVE or INACTIVE).
    pub fn update_certificate(
        &mut self,
        now: Timestamp,
        id: &str,
        status: CertificateStatus,
    ) -> Result<(), ServiceError> {
        check_certificate_id(id)?;
        if !self.store.set_certificate_status(id, status, now)? {
            return Err(ServiceError::not_found(format_args!("certificate {id}")));
        }
        self.refresh_certificate(id)
    }

    /// The certificates attached to `thing`, to refresh after the thing is deleted.
    pub(super) fn certificates_of_thing(&self, thing: &str) -> Result<Vec<String>, ServiceError> {
        Ok(self.store.certificates_of_thing(thing)?)
    }

    pub(super) fn refresh_certificates(&self, ids: &[String]) -> Result<(), ServiceError> {
        ids.iter().try_for_each(|id| self.refresh_certificate(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::pki::Pki;
    use crate::local::service::{NewThing, ServiceConfig};
    use crate::local::store::Store;

    fn svc() -> JobsService {
        JobsService::new(Store::open_in_memory().unwrap(), ServiceConfig::default())
    }

    fn thing(name: &str) -> NewThing {
        NewThing {
            name: name.into(),
            thing_type: None,
            attributes: Default::default(),
        }
    }

    #[test]
    fn principal_arns() {
        let id = "a".repeat(64);
        assert_eq!(
            certificate_of_principal(&format!("arn:aws:iot:us-east-1:1:cert/{id}")).unwrap(),
            id
        );
        for bad in [
            "us-east-1:1234:abcd".to_owned(),
            format!("arn:aws:iam::1:cert/{id}"),
            format!("arn:aws:iot:r:a:thing/{id}"),
            "arn:aws:iot:r:a:cert/ABC".to_owned(),
            format!("arn:aws:iot:r:a:cert/{}", "A".repeat(64)),
        ] {
            assert!(
                matches!(
                    certificate_of_principal(&bad),
                    Err(ServiceError::InvalidRequest(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_view_follows_every_change_and_survives_a_restart() {
        let pki = Pki::ephemeral().unwrap();
        let mut s = svc();
        let view = s.principals();
        let now = Timestamp::from_secs(10);
        s.create_thing(now, thing("t1")).unwrap();
        s.create_thing(now, thing("t2")).unwrap();
        let issued = pki.issue_unbound_device_cert().unwrap();
        let c = s.record_certificate(now, &issued, false, None).unwrap();
        assert_eq!(
            c.certificate_arn,
            format!(
                "arn:aws:iot:us-east-1:123456789012:cert/{}",
                issued.certificate_id
            )
        );
        let seen = |active, things: &[&str]| {
            Some(BoundCert {
                certificate_id: issued.certificate_id.clone(),
                active,
                things: things.iter().map(|t| t.to_string()).collect(),
            })
        };
        assert_eq!(view.lookup(&issued.serial), seen(false, &[]));
        s.attach_thing_principal(now, "t1", &c.certificate_arn)
            .unwrap();
        s.attach_thing_principal(now, "t1", &c.certificate_arn)
            .unwrap();
        s.update_certificate(now, &c.certificate_id, CertificateStatus::Active)
            .unwrap();
        assert_eq!(view.lookup(&issued.serial), seen(true, &["t1"]));
        assert_eq!(
            s.list_thing_principals("t1").unwrap(),
            std::slice::from_ref(&c.certificate_arn)
        );
        assert_eq!(s.list_principal_things(&c.certificate_arn).unwrap(), ["t1"]);
        s.detach_thing_principal("t1", &c.certificate_arn).unwrap();
        s.detach_thing_principal("t1", &c.certificate_arn).unwrap();
        assert_eq!(view.lookup(&issued.serial), seen(true, &[]));

        // Deleting a thing detaches its certificates from the view too.
        s.attach_thing_principal(now, "t2", &c.certificate_arn)
            .unwrap();
        s.delete_thing(now, "t2").unwrap();
        assert_eq!(view.lookup(&issued.serial), seen(true, &[]));

        // The thingName path records the certificate attached.
        let old = pki.issue_device_cert("t1").unwrap();
        s.record_certificate(now, &old, true, Some("t1")).unwrap();
        assert_eq!(
            view.lookup(&old.serial).map(|b| b.things),
            Some(vec!["t1".to_owned()])
        );

        // A new service on the same store starts with the same view.
        let again = JobsService::new(s.into_store(), ServiceConfig::default());
        assert_eq!(
            again.principals().lookup(&old.serial).map(|b| b.things),
            Some(vec!["t1".to_owned()])
        );
        assert!(again.principals().lookup(&issued.serial).is_some());
    }

    #[test]
    fn errors() {
        let pki = Pki::ephemeral().unwrap();
        let mut s = svc();
        let now = Timestamp::from_secs(10);
        s.create_thing(now, thing("t1")).unwrap();
        let issued = pki.issue_unbound_device_cert().unwrap();
        let unknown = format!("arn:aws:iot:us-east-1:123456789012:cert/{}", "0".repeat(64));
        assert!(matches!(
            s.record_certificate(now, &issued, true, Some("ghost")),
            Err(ServiceError::ResourceNotFound(_))
        ));
        assert!(
            s.describe_certificate(&issued.certificate_id).is_err(),
            "nothing recorded"
        );
        let c = s.record_certificate(now, &issued, true, None).unwrap();
        for r in [
            s.attach_thing_principal(now, "ghost", &c.certificate_arn),
            s.attach_thing_principal(now, "t1", &unknown),
            s.detach_thing_principal("ghost", &c.certificate_arn),
            s.update_certificate(now, &"0".repeat(64), CertificateStatus::Active),
        ] {
            assert!(matches!(r, Err(ServiceError::ResourceNotFound(_))), "{r:?}");
        }
        assert!(matches!(
            s.list_thing_principals("ghost"),
            Err(ServiceError::ResourceNotFound(_))
        ));
        assert!(matches!(
            s.list_principal_things(&unknown),
            Err(ServiceError::ResourceNotFound(_))
        ));
        assert!(matches!(
            s.describe_certificate("nothex"),
            Err(ServiceError::InvalidRequest(_))
        ));
        assert!(matches!(
            s.attach_thing_principal(now, "t1", "not-an-arn"),
            Err(ServiceError::InvalidRequest(_))
        ));
    }
}
