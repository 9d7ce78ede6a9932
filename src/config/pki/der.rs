//! The few fields of an X.509 certificate that configuration checks need (validity
//! period, subject public key), read with a minimal DER reader. It checks the
//! certificate's outer structure (RFC 5280 §4.1) and decodes nothing else: a full X.509
//! parser would add ~200 KB to the device binary for two fields. It never verifies
//! signatures or trust (the TLS stack does that when connecting).

/// What was read from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFields<'a> {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub not_before: i64,
    pub not_after: i64,
    /// The DER of the SubjectPublicKeyInfo, tag and length included.
    pub spki: &'a [u8],
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
/// `[0] EXPLICIT Version`
const VERSION_TAG: u8 = 0xa0;

/// Reads `der` as a Certificate: SEQUENCE { tbsCertificate, signatureAlgorithm,
/// signatureValue } with nothing after it.
pub fn parse(der: &[u8]) -> Result<CertFields<'_>, String> {
    let mut outer = Reader(der);
    let mut cert = Reader(outer.expect(SEQUENCE, "Certificate")?);
    outer.end("Certificate")?;
    let mut tbs = Reader(cert.expect(SEQUENCE, "tbsCertificate")?);
    cert.expect(SEQUENCE, "signatureAlgorithm")?;
    cert.expect(BIT_STRING, "signatureValue")?;
    cert.end("Certificate")?;

    if tbs.peek() == Some(VERSION_TAG) {
        tbs.expect(VERSION_TAG, "version")?;
    }
    tbs.expect(INTEGER, "serialNumber")?;
    tbs.expect(SEQUENCE, "signature")?;
    tbs.expect(SEQUENCE, "issuer")?;
    let mut validity = Reader(tbs.expect(SEQUENCE, "validity")?);
    let not_before = validity.time("notBefore")?;
    let not_after = validity.time("notAfter")?;
    validity.end("validity")?;
    tbs.expect(SEQUENCE, "subject")?;
    let spki = tbs.raw(SEQUENCE, "subjectPublicKeyInfo")?;
    Ok(CertFields {
        not_before,
        not_after,
        spki,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.0.first().copied()
    }

    fn end(&self, what: &str) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(format!("{} unexpected bytes after {what}", self.0.len()))
        }
    }

    /// The next element (tag, length and value) if it has tag `tag`; returns (whole
    /// element, value).
    fn element(&mut self, tag: u8, what: &str) -> Result<(&'a [u8], &'a [u8]), String> {
        let bad = || format!("malformed {what}");
        let all = self.0;
        match all.first() {
            Some(&t) if t == tag => {}
            Some(&t) => {
                return Err(format!(
                    "expected {what} (tag {tag:#04x}), found tag {t:#04x}"
                ))
            }
            None => return Err(format!("missing {what}")),
        }
        let first = *all.get(1).ok_or_else(bad)?;
        let (len, header) = if first < 0x80 {
            (usize::from(first), 2)
        } else {
            // Long form, at most 4 length bytes; 0x80 (indefinite) is not DER.
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return Err(bad());
            }
            let bytes = all.get(2..2 + n).ok_or_else(bad)?;
            let len = bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, 2 + n)
        };
        let end = header.checked_add(len).ok_or_else(bad)?;
        let whole = all.get(..end).ok_or_else(bad)?;
        self.0 = &all[end..];
        Ok((whole, &whole[header..]))
    }

    fn expect(&mut self, tag: u8, what: &str) -> Result<&'a [u8], String> {
        self.element(tag, what).map(|(_, value)| value)
    }

    fn raw(&mut self, tag: u8, what: &str) -> Result<&'a [u8], String> {
        self.element(tag, what).map(|(whole, _)| whole)
    }

    /// A Time: UTCTime `YYMMDDHHMMSSZ` (years 1950-2049) or GeneralizedTime
    /// `YYYYMMDDHHMMSSZ`, the only forms RFC 5280 allows.
    fn time(&mut self, what: &str) -> Result<i64, String> {
        let bad = || format!("malformed {what} time");
        let (year, rest) = match self.peek() {
            Some(UTC_TIME) => {
                let v = self.expect(UTC_TIME, what)?;
                let yy = digits(v.get(..2).ok_or_else(bad)?).ok_or_else(bad)?;
                (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &v[2..])
            }
            Some(GENERALIZED_TIME) => {
                let v = self.expect(GENERALIZED_TIME, what)?;
                (
                    digits(v.get(..4).ok_or_else(bad)?).ok_or_else(bad)?,
                    &v[4..],
                )
            }
            _ => return Err(format!("expected {what} as UTCTime or GeneralizedTime")),
        };
        if rest.len() != 11 || rest[10] != b'Z' {
            return Err(bad());
        }
        let field = |i: usize| digits(&rest[i..i + 2]).ok_or_else(bad);
        let (month, day) = (field(0)?, field(2)?);
        let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
        if !(1..=12).contains(&month)
            || !(1..=31).contains(&day)
            || hour > 23
            || minute > 59
            || second > 60
        {
            return Err(bad());
        }
        let days = days_from_civil(year, month, day);
        Ok(days * 86_400 + hour * 3_600 + minute * 60 + second)
    }
}

fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD HH:MM:SS UTC` for a time read from a certificate.
pub fn format_time(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let s = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        s / 3_600,
        s % 3_600 / 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::PublicKeyData;

    struct Issued {
        cert: rcgen::Certificate,
        signing_key: rcgen::KeyPair,
    }

    fn cert(not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> Issued {
        let mut params = rcgen::CertificateParams::new(vec!["gw1".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let signing_key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&signing_key).unwrap();
        Issued { cert, signing_key }
    }

    #[test]
    fn reads_validity_and_public_key_of_utc_and_generalized_times() {
        // rcgen writes UTCTime up to 2049 and GeneralizedTime from 2050 (RFC 5280).
        let ck = cert((2026, 11, 22), (2051, 3, 1));
        let fields = parse(ck.cert.der()).unwrap();
        assert_eq!(fields.not_before, 1_795_305_600);
        assert_eq!(format_time(fields.not_before), "2026-11-22 00:00:00 UTC");
        assert_eq!(format_time(fields.not_after), "2051-03-01 00:00:00 UTC");
        assert_eq!(
            fields.spki,
            ck.signing_key.subject_public_key_info().as_slice()
        );
    }

    #[test]
    fn utc_time_years_before_1950_are_not_representable() {
        let ck = cert((1950, 1, 1), (2049, 12, 31));
        let fields = parse(ck.cert.der()).unwrap();
        assert_eq!(format_time(fields.not_before), "1950-01-01 00:00:00 UTC");
        assert_eq!(format_time(fields.not_after), "2049-12-31 00:00:00 UTC");
    }

    #[test]
    fn truncated_extended_or_foreign_der_is_refused() {
        let ck = cert((2026, 1, 1), (2027, 1, 1));
        let der = ck.cert.der().to_vec();
        for cut in [0, 1, 4, der.len() / 2, der.len() - 1] {
            assert!(parse(&der[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(parse(&trailing).unwrap_err().contains("unexpected bytes"));
        // A private key is DER too, but not a certificate.
        assert!(parse(ck.signing_key.serialized_der()).is_err());
        assert!(parse(b"-----BEGIN CERTIFICATE-----").is_err());
    }

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
        assert_eq!(days_from_civil(2026, 11, 23), 20_780);
        assert_eq!(format_time(-1), "1969-12-31 23:59:59 UTC");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}
