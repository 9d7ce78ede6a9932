//! Store records → device API wire shapes, and the job document as a device receives it:
//! a JSON object with presigned-S3 placeholders resolved (reference §7.2). Only MQTT
//! delivery resolves them; the control plane returns the stored document unchanged.

use serde_json::Value;

use super::JobsService;
use crate::jobs::wire::JobExecution;
use crate::local::clock::Timestamp;
use crate::local::store::{ExecutionRecord, JobRecord};

/// Lifetime of a presigned URL when `presignedUrlConfig.expiresInSec` is not set.
const DEFAULT_EXPIRES_SECS: i64 = 3600;

const PLACEHOLDERS: [&str; 2] = [
    "${aws:iot:s3-presigned-url-v2:",
    "${aws:iot:s3-presigned-url:",
];

/// The `execution` of describe, start-next and notify-next.
pub(super) fn execution(
    e: &ExecutionRecord,
    job_document: Option<Value>,
    now: Timestamp,
) -> JobExecution {
    e.exec
        .to_execution(&e.job_id, &e.thing_name, job_document, now.secs())
}

/// `(bucket, key)` of an S3 location in any of the placeholder forms: path-style URLs
/// (`https://s3[.<region>].amazonaws.com/<bucket>/<key>`) or plain `<bucket>/<key>`.
fn s3_location(loc: &str) -> Option<(&str, &str)> {
    let path = match loc.split_once("://") {
        Some((_, rest)) => rest.split_once('/')?.1,
        None => loc,
    };
    let (bucket, key) = path.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then_some((bucket, key))
}

/// Replaces every presigned placeholder in `s` with `<base>/<bucket>/<key>?X-Expires=<t>`.
/// A placeholder that cannot be read is left as is, so the device fails visibly on it.
fn presign(s: &str, base: &str, expires_at: i64) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    loop {
        let found = PLACEHOLDERS
            .iter()
            .filter_map(|p| rest.find(p).map(|i| (i, p.len())))
            .min();
        let Some((start, plen)) = found else { break };
        let inner_start = start + plen;
        let Some(end) = rest[inner_start..].find('}').map(|e| inner_start + e) else {
            break;
        };
        out.push_str(&rest[..start]);
        match s3_location(&rest[inner_start..end]) {
            Some((bucket, key)) => {
                out.push_str(&format!(
                    "{}/{bucket}/{key}?X-Expires={expires_at}",
                    base.trim_end_matches('/')
                ));
            }
            None => out.push_str(&rest[start..=end]),
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn presign_value(v: &mut Value, base: &str, expires_at: i64) {
    match v {
        Value::String(s) if s.contains("${aws:iot:s3-presigned-url") => {
            *s = presign(s, base, expires_at);
        }
        Value::Array(a) => a
            .iter_mut()
            .for_each(|x| presign_value(x, base, expires_at)),
        Value::Object(m) => m
            .values_mut()
            .for_each(|x| presign_value(x, base, expires_at)),
        _ => {}
    }
}

impl JobsService {
    /// The job document as MQTT carries it: a JSON object, presigned placeholders resolved
    /// against `presigned_url_base` when one is configured. Documents are validated as
    /// objects at creation; a row edited by hand into something else is passed as a string
    /// rather than dropped, so the device rejects it visibly.
    pub(super) fn device_document(&self, job: &JobRecord, now: Timestamp) -> Value {
        let mut doc = serde_json::from_str(&job.document)
            .unwrap_or_else(|_| Value::String(job.document.clone()));
        if let Some(base) = &self.cfg.presigned_url_base {
            let expires_in = job
                .configs
                .presigned_url_config
                .as_ref()
                .and_then(|c| c.get("expiresInSec"))
                .and_then(Value::as_i64)
                .unwrap_or(DEFAULT_EXPIRES_SECS);
            presign_value(&mut doc, base, now.secs() + expires_in);
        }
        doc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_in_every_documented_form() {
        let base = "http://127.0.0.1:9/s3/";
        for p in [
            "${aws:iot:s3-presigned-url:https://s3.us-east-1.amazonaws.com/b/dir/f.bin}",
            "${aws:iot:s3-presigned-url:https://s3.amazonaws.com/b/dir/f.bin}",
            "${aws:iot:s3-presigned-url:b/dir/f.bin}",
            "${aws:iot:s3-presigned-url-v2:https://s3.eu-west-1.amazonaws.com/b/dir/f.bin}",
        ] {
            assert_eq!(
                presign(&format!("get {p} now"), base, 77),
                "get http://127.0.0.1:9/s3/b/dir/f.bin?X-Expires=77 now",
                "{p}"
            );
        }
        assert_eq!(presign("plain", base, 1), "plain");
        let bad = "${aws:iot:s3-presigned-url:nokey}";
        assert_eq!(presign(bad, base, 1), bad);
        let unterminated = "${aws:iot:s3-presigned-url:b/k";
        assert_eq!(presign(unterminated, base, 1), unterminated);
    }
}
