//! Store records → device API wire shapes.

use serde_json::Value;

use crate::jobs::wire::JobExecution;
use crate::local::clock::Timestamp;
use crate::local::store::{ExecutionRecord, JobRecord};

/// The job document as the JSON object MQTT carries. Documents are validated as JSON
/// objects at creation; a row edited by hand into something else is passed as a string
/// rather than dropped, so the device can reject it visibly.
pub(super) fn document(job: &JobRecord) -> Value {
    serde_json::from_str(&job.document).unwrap_or_else(|_| Value::String(job.document.clone()))
}

/// The `execution` of describe, start-next and notify-next.
pub(super) fn execution(
    e: &ExecutionRecord,
    job_document: Option<Value>,
    now: Timestamp,
) -> JobExecution {
    e.exec
        .to_execution(&e.job_id, &e.thing_name, job_document, now.secs())
}
