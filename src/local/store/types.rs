//! Records the store reads and writes. Plain data: no behaviour beyond small derived values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::jobs::execution::ExecutionRecord as Execution;
use crate::jobs::wire::JobExecutionStatus;
use crate::local::clock::Timestamp;

/// String attributes of things and groups, and execution `statusDetails`.
pub type StringMap = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThingRecord {
    pub name: String,
    pub thing_id: String,
    pub thing_type: Option<String>,
    pub attributes: StringMap,
    pub version: i64,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThingGroupRecord {
    pub name: String,
    pub group_id: String,
    pub parent: Option<String>,
    pub description: Option<String>,
    pub attributes: StringMap,
    pub version: i64,
    pub created_at: Timestamp,
}

/// `targetSelection` of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TargetSelection {
    #[default]
    Snapshot,
    Continuous,
}

/// Job-level status (control plane `JobStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Scheduled,
    InProgress,
    Canceled,
    Completed,
    DeletionInProgress,
}

/// Job configurations kept as the JSON the control plane received, so later features
/// (rollout, abort, retry, scheduling) can interpret them without a schema change.
/// Field names are AWS's, so a CreateJob body deserializes straight into this.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobConfigs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presigned_url_config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_executions_rollout_config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_executions_retry_config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling_config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_windows: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_package_versions: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Value>,
}

impl JobConfigs {
    /// `timeoutConfig.inProgressTimeoutInMinutes`, when set to a usable value.
    pub fn in_progress_timeout_minutes(&self) -> Option<i64> {
        self.timeout_config
            .as_ref()?
            .get("inProgressTimeoutInMinutes")?
            .as_i64()
            .filter(|m| *m > 0)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub job_id: String,
    pub target_selection: TargetSelection,
    pub status: JobStatus,
    pub force_canceled: bool,
    pub reason_code: Option<String>,
    pub comment: Option<String>,
    pub description: Option<String>,
    /// Target ARNs in the order given.
    pub targets: Vec<String>,
    /// The job document (JSON text) after template parameter substitution.
    pub document: String,
    /// The document before `${aws:iot:parameter:...}` substitution, for jobs made from a
    /// managed template (`beforeSubstitution=true`).
    pub document_template: Option<String>,
    pub document_source: Option<String>,
    pub job_template_arn: Option<String>,
    pub document_parameters: Option<StringMap>,
    pub namespace_id: Option<String>,
    pub configs: JobConfigs,
    pub created_at: Timestamp,
    pub last_updated_at: Timestamp,
    pub completed_at: Option<Timestamp>,
}

/// One execution of a job on a thing. `(job_id, thing_name, exec.execution_number)` is
/// unique; `seq` is the global creation order (the pending-list tie-breaker).
///
/// `exec` is the protocol's own record (status, details, versions, device-API times in
/// epoch seconds, timers), so the transition rules of `jobs::execution` apply to it as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionRecord {
    pub seq: i64,
    pub job_id: String,
    pub thing_name: String,
    pub force_canceled: bool,
    pub retry_attempt: i64,
    pub exec: Execution,
}

impl ExecutionRecord {
    pub fn status(&self) -> JobExecutionStatus {
        self.exec.status
    }
}

/// A job template (custom; the AWS managed ones are built in, not stored).
#[derive(Debug, Clone, PartialEq)]
pub struct JobTemplateRecord {
    pub template_id: String,
    pub description: String,
    pub document: Option<String>,
    pub document_source: Option<String>,
    pub configs: JobConfigs,
    pub created_at: Timestamp,
}

/// Per-status counts over the latest execution of each thing of a job
/// (DescribeJob `jobProcessDetails`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusCounts {
    pub number_of_queued_things: i64,
    pub number_of_in_progress_things: i64,
    pub number_of_succeeded_things: i64,
    pub number_of_failed_things: i64,
    pub number_of_rejected_things: i64,
    pub number_of_canceled_things: i64,
    pub number_of_removed_things: i64,
    pub number_of_timed_out_things: i64,
}
