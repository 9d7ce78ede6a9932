//! Device certificates (CreateKeysAndCertificate) and their attachments to things
//! (AttachThingPrincipal). Deleting a thing drops its attachments (foreign key cascade).

use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::{from_name, name_of, Store, StoreError};
use crate::local::clock::Timestamp;

/// The statuses iotjobs-local issues and accepts (AWS has more: REVOKED, PENDING_TRANSFER...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CertificateStatus {
    Active,
    Inactive,
}

/// One issued certificate (never its private key: AWS does not keep it either).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRecord {
    pub certificate_id: String,
    pub certificate_arn: String,
    /// Lowercase hex without leading zeros, as the broker reads it from a connection.
    pub serial: String,
    pub pem: String,
    pub status: CertificateStatus,
    pub created_at: Timestamp,
    pub last_modified_at: Timestamp,
}

const CERT_COLS: &str =
    "certificate_id, certificate_arn, serial, pem, status, created_at, last_modified_at";

fn cert_row(r: &Row<'_>) -> rusqlite::Result<CertificateRecord> {
    Ok(CertificateRecord {
        certificate_id: r.get(0)?,
        certificate_arn: r.get(1)?,
        serial: r.get(2)?,
        pem: r.get(3)?,
        status: from_name(4, r.get(4)?)?,
        created_at: Timestamp::from_millis(r.get(5)?),
        last_modified_at: Timestamp::from_millis(r.get(6)?),
    })
}

impl Store {
    pub fn insert_certificate(&self, c: &CertificateRecord) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO certificates
               (certificate_id, certificate_arn, serial, pem, status, created_at, last_modified_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                c.certificate_id,
                c.certificate_arn,
                c.serial,
                c.pem,
                name_of(&c.status),
                c.created_at.millis(),
                c.last_modified_at.millis()
            ],
        )?;
        Ok(())
    }

    pub fn get_certificate(&self, id: &str) -> Result<Option<CertificateRecord>, StoreError> {
        let sql = format!("SELECT {CERT_COLS} FROM certificates WHERE certificate_id = ?1");
        Ok(self.row(&sql, [id], cert_row).optional()?)
    }

    /// Every certificate, oldest first (to rebuild the broker's view at start).
    pub fn list_certificates(&self) -> Result<Vec<CertificateRecord>, StoreError> {
        let sql =
            format!("SELECT {CERT_COLS} FROM certificates ORDER BY created_at, certificate_id");
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map([], cert_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Sets a certificate's status; false if there is no such certificate.
    pub fn set_certificate_status(
        &self,
        id: &str,
        status: CertificateStatus,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let n = self.exec(
            "UPDATE certificates SET status = ?2, last_modified_at = ?3
             WHERE certificate_id = ?1",
            params![id, name_of(&status), now.millis()],
        )?;
        Ok(n > 0)
    }

    /// Attaches a certificate to a thing; false if it already was.
    pub fn attach_principal(
        &self,
        thing: &str,
        certificate_id: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let n = self.exec(
            "INSERT OR IGNORE INTO thing_principals (thing_name, certificate_id, attached_at)
             VALUES (?1, ?2, ?3)",
            params![thing, certificate_id, now.millis()],
        )?;
        Ok(n > 0)
    }

    /// Detaches a certificate from a thing; false if it was not attached.
    pub fn detach_principal(&self, thing: &str, certificate_id: &str) -> Result<bool, StoreError> {
        let n = self.exec(
            "DELETE FROM thing_principals WHERE thing_name = ?1 AND certificate_id = ?2",
            [thing, certificate_id],
        )?;
        Ok(n > 0)
    }

    /// The certificates attached to `thing`, in attachment order.
    pub fn certificates_of_thing(&self, thing: &str) -> Result<Vec<String>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT certificate_id FROM thing_principals WHERE thing_name = ?1
             ORDER BY attached_at, certificate_id",
        )?;
        let rows = st.query_map([thing], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The things `certificate_id` is attached to, by name.
    pub fn things_of_certificate(&self, certificate_id: &str) -> Result<Vec<String>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT thing_name FROM thing_principals WHERE certificate_id = ?1
             ORDER BY thing_name",
        )?;
        let rows = st.query_map([certificate_id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::store::ThingRecord;

    fn cert(id: &str) -> CertificateRecord {
        CertificateRecord {
            certificate_id: id.into(),
            certificate_arn: format!("arn:aws:iot:local:000000000000:cert/{id}"),
            serial: format!("serial-{id}"),
            pem: "-----BEGIN CERTIFICATE-----".into(),
            status: CertificateStatus::Active,
            created_at: Timestamp::from_millis(1),
            last_modified_at: Timestamp::from_millis(1),
        }
    }

    fn thing(name: &str) -> ThingRecord {
        ThingRecord {
            name: name.into(),
            thing_id: format!("id-{name}"),
            thing_type: None,
            attributes: Default::default(),
            version: 1,
            created_at: Timestamp::from_millis(1),
        }
    }

    #[test]
    fn certificates_status_and_attachments() {
        let s = Store::open_in_memory().unwrap();
        s.insert_certificate(&cert("c1")).unwrap();
        s.insert_certificate(&cert("c2")).unwrap();
        assert!(s.insert_certificate(&cert("c1")).is_err(), "duplicate id");
        assert_eq!(s.get_certificate("c1").unwrap(), Some(cert("c1")));
        assert_eq!(s.get_certificate("nope").unwrap(), None);
        let later = Timestamp::from_millis(5);
        assert!(s
            .set_certificate_status("c1", CertificateStatus::Inactive, later)
            .unwrap());
        let c1 = s.get_certificate("c1").unwrap().unwrap();
        assert_eq!(
            (c1.status, c1.last_modified_at),
            (CertificateStatus::Inactive, later)
        );
        assert!(!s
            .set_certificate_status("nope", CertificateStatus::Active, later)
            .unwrap());
        assert_eq!(s.list_certificates().unwrap().len(), 2);

        s.insert_thing(&thing("t1")).unwrap();
        s.insert_thing(&thing("t2")).unwrap();
        assert!(s.attach_principal("t1", "c1", later).unwrap());
        assert!(!s.attach_principal("t1", "c1", later).unwrap());
        assert!(s.attach_principal("t2", "c1", later).unwrap());
        assert!(s.attach_principal("t1", "c2", later).unwrap());
        assert!(s.attach_principal("ghost", "c1", later).is_err(), "FK");
        assert!(s.attach_principal("t1", "ghost", later).is_err(), "FK");
        assert_eq!(s.certificates_of_thing("t1").unwrap(), ["c1", "c2"]);
        assert_eq!(s.things_of_certificate("c1").unwrap(), ["t1", "t2"]);
        assert!(s.detach_principal("t2", "c1").unwrap());
        assert!(!s.detach_principal("t2", "c1").unwrap());
        // Deleting a thing drops its attachments, not the certificates.
        s.delete_thing("t1").unwrap();
        assert!(s.things_of_certificate("c1").unwrap().is_empty());
        assert!(s.get_certificate("c2").unwrap().is_some());
    }
}
