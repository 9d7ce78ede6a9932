//! The JSON payloads of the AWS IoT Jobs device API over MQTT, with AWS's exact field names:
//! requests, accepted replies, notifications, the error reply and its codes.
//!
//! Owns the serde shapes only. Rules about which values are allowed (state transitions,
//! statusDetails limits, step timeouts) live in `execution` and `status_details`; topics live
//! in `topics`. No I/O, no clock: callers pass `timestamp` (integer epoch seconds).
//!
//! Optional fields are omitted when `None` (AWS never sends `null`). On MQTT `jobDocument` is a
//! JSON object, never a string.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `statusDetails`: string keys to string values (limits in `status_details`).
pub type StatusDetails = BTreeMap<String, String>;

/// Status of one job execution (`JobExecutionStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobExecutionStatus {
    Queued,
    InProgress,
    Succeeded,
    Failed,
    TimedOut,
    Rejected,
    Removed,
    Canceled,
}

impl JobExecutionStatus {
    pub const ALL: [JobExecutionStatus; 8] = [
        Self::Queued,
        Self::InProgress,
        Self::Succeeded,
        Self::Failed,
        Self::TimedOut,
        Self::Rejected,
        Self::Removed,
        Self::Canceled,
    ];

    /// Terminal statuses never change again (a retry is a new execution).
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Queued | Self::InProgress)
    }

    /// QUEUED or IN_PROGRESS: the execution is in the thing's pending list.
    pub fn is_pending(self) -> bool {
        !self.is_terminal()
    }

    /// The wire string, e.g. `IN_PROGRESS`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::InProgress => "IN_PROGRESS",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::TimedOut => "TIMED_OUT",
            Self::Rejected => "REJECTED",
            Self::Removed => "REMOVED",
            Self::Canceled => "CANCELED",
        }
    }
}

impl fmt::Display for JobExecutionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobExecutionStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job execution status {0:?}")]
pub struct UnknownStatus(pub String);

/// `code` of an error reply on `.../rejected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    InvalidTopic,
    InvalidJson,
    InvalidRequest,
    InvalidStateTransition,
    ResourceNotFound,
    VersionMismatch,
    InternalError,
    RequestThrottled,
    TerminalStateReached,
    /// A code this build does not know (AWS may add some); kept so the reply still parses.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidTopic => "InvalidTopic",
            Self::InvalidJson => "InvalidJson",
            Self::InvalidRequest => "InvalidRequest",
            Self::InvalidStateTransition => "InvalidStateTransition",
            Self::ResourceNotFound => "ResourceNotFound",
            Self::VersionMismatch => "VersionMismatch",
            Self::InternalError => "InternalError",
            Self::RequestThrottled => "RequestThrottled",
            Self::TerminalStateReached => "TerminalStateReached",
            Self::Unknown => "Unknown",
        }
    }

    /// Clients retry these (with backoff); every other rejection is final.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::InternalError | Self::RequestThrottled)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn none_or_empty(d: &Option<StatusDetails>) -> bool {
    d.as_ref().is_none_or(|m| m.is_empty())
}

// ---------------------------------------------------------------- data types

/// `JobExecution` (the `execution` of describe, start-next and notify-next).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobExecution {
    pub job_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thing_name: Option<String>,
    /// The job document as a JSON object (MQTT form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_document: Option<Value>,
    pub status: JobExecutionStatus,
    #[serde(default, skip_serializing_if = "none_or_empty")]
    pub status_details: Option<StatusDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_at: Option<i64>,
    pub version_number: i64,
    pub execution_number: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approximate_seconds_before_timed_out: Option<i64>,
}

impl JobExecution {
    /// The `executionState` view of this execution.
    pub fn state(&self) -> JobExecutionState {
        JobExecutionState {
            status: self.status,
            status_details: self.status_details.clone(),
            version_number: self.version_number,
        }
    }
}

/// `JobExecutionState` (`executionState` in update replies and error replies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobExecutionState {
    pub status: JobExecutionStatus,
    #[serde(default, skip_serializing_if = "none_or_empty")]
    pub status_details: Option<StatusDetails>,
    pub version_number: i64,
}

/// `JobExecutionSummary` (entries of pending lists; no status, no document).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobExecutionSummary {
    pub job_id: String,
    pub queued_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    pub last_updated_at: i64,
    pub version_number: i64,
    pub execution_number: i64,
}

// ---------------------------------------------------------------- requests

/// `$aws/things/T/jobs/get` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetPendingJobExecutionsRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// `$aws/things/T/jobs/start-next` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartNextPendingJobExecutionRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_details: Option<StatusDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_timeout_in_minutes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// `$aws/things/T/jobs/J/get` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeJobExecutionRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_number: Option<i64>,
    /// Default true when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_job_document: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// `$aws/things/T/jobs/J/update` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateJobExecutionRequest {
    pub status: JobExecutionStatus,
    /// Absent: details unchanged. Present: replaces the stored map.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_details: Option<StatusDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_number: Option<i64>,
    /// Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_job_execution_state: Option<bool>,
    /// Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_job_document: Option<bool>,
    /// 1..=10080, or -1 to cancel the step timer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_timeout_in_minutes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

impl UpdateJobExecutionRequest {
    /// An update to `status` with every optional field absent.
    pub fn new(status: JobExecutionStatus) -> Self {
        UpdateJobExecutionRequest {
            status,
            status_details: None,
            expected_version: None,
            execution_number: None,
            include_job_execution_state: None,
            include_job_document: None,
            step_timeout_in_minutes: None,
            client_token: None,
        }
    }
}

// ---------------------------------------------------------------- replies

/// `get/accepted`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetPendingJobExecutionsResponse {
    #[serde(default)]
    pub in_progress_jobs: Vec<JobExecutionSummary>,
    #[serde(default)]
    pub queued_jobs: Vec<JobExecutionSummary>,
    pub timestamp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// `start-next/accepted`. No `execution` when nothing is pending.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartNextPendingJobExecutionResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<JobExecution>,
    pub timestamp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// `{J}/get/accepted`. No `execution` for `$next` when nothing is pending.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeJobExecutionResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<JobExecution>,
    pub timestamp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// `{J}/update/accepted`. `executionState` and `jobDocument` only when requested.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateJobExecutionResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_state: Option<JobExecutionState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_document: Option<Value>,
    pub timestamp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// Any `.../rejected` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorResponse {
    pub code: ErrorCode,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    pub timestamp: i64,
    /// Only for `InvalidStateTransition` and `VersionMismatch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_state: Option<JobExecutionState>,
}

// ---------------------------------------------------------------- notifications

/// `notify` (JobExecutionsChanged): pending executions by status; `{}` when none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobExecutionsChangedEvent {
    #[serde(default)]
    pub jobs: BTreeMap<JobExecutionStatus, Vec<JobExecutionSummary>>,
    pub timestamp: i64,
}

impl JobExecutionsChangedEvent {
    /// Where `job_id` appears in the pending lists, if it does. A daemon whose running job is
    /// absent from a `notify` knows the job was cancelled, timed out or deleted.
    pub fn find(&self, job_id: &str) -> Option<(JobExecutionStatus, &JobExecutionSummary)> {
        self.jobs
            .iter()
            .find_map(|(st, list)| list.iter().find(|s| s.job_id == job_id).map(|s| (*st, s)))
    }
}

/// `notify-next` (NextJobExecutionChanged): the new head, or no `execution` when none is left.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NextJobExecutionChangedEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<JobExecution>,
    pub timestamp: i64,
}

// ---------------------------------------------------------------- decoding requests

/// A request payload the service cannot accept, already classified for the error reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RequestError {
    pub code: ErrorCode,
    pub message: String,
    /// The request's `clientToken` when it could be read, to echo in the reply.
    pub client_token: Option<String>,
}

impl RequestError {
    /// The `.../rejected` payload for this error.
    pub fn to_response(&self, timestamp: i64) -> ErrorResponse {
        ErrorResponse {
            code: self.code,
            message: self.message.clone(),
            client_token: self.client_token.clone(),
            timestamp,
            execution_state: None,
        }
    }
}

/// Decode a request payload the way the service must: an empty payload is `{}`; bytes that are
/// not a UTF-8 JSON object give `InvalidJson`; a JSON object with wrong field types or values
/// gives `InvalidRequest` and keeps the `clientToken` so the rejection can echo it.
pub fn decode_request<T: DeserializeOwned>(payload: &[u8]) -> Result<T, RequestError> {
    let value: Value = if payload.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(payload).map_err(|e| RequestError {
            code: ErrorCode::InvalidJson,
            message: format!("payload is not valid JSON: {e}"),
            client_token: None,
        })?
    };
    let Value::Object(map) = &value else {
        return Err(RequestError {
            code: ErrorCode::InvalidJson,
            message: "payload must be a JSON object".to_owned(),
            client_token: None,
        });
    };
    let client_token = map
        .get("clientToken")
        .and_then(Value::as_str)
        .map(str::to_owned);
    T::deserialize(&value).map_err(|e| RequestError {
        code: ErrorCode::InvalidRequest,
        message: e.to_string(),
        client_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Deserialize `v`, serialize it back, and require the same JSON (field names, omissions).
    fn round_trip<T: Serialize + DeserializeOwned + fmt::Debug + PartialEq>(v: Value) -> T {
        let typed: T = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(&typed).unwrap(), v);
        typed
    }

    #[test]
    fn statuses_have_aws_strings_and_terminality() {
        let expected = [
            ("QUEUED", false),
            ("IN_PROGRESS", false),
            ("SUCCEEDED", true),
            ("FAILED", true),
            ("TIMED_OUT", true),
            ("REJECTED", true),
            ("REMOVED", true),
            ("CANCELED", true),
        ];
        for (st, (s, terminal)) in JobExecutionStatus::ALL.into_iter().zip(expected) {
            assert_eq!(serde_json::to_value(st).unwrap(), json!(s));
            assert_eq!(s.parse::<JobExecutionStatus>().unwrap(), st);
            assert_eq!(st.is_terminal(), terminal, "{s}");
        }
        assert!("CANCELLED".parse::<JobExecutionStatus>().is_err());
    }

    #[test]
    fn error_codes_have_aws_strings() {
        for (code, s) in [
            (ErrorCode::InvalidTopic, "InvalidTopic"),
            (ErrorCode::InvalidJson, "InvalidJson"),
            (ErrorCode::InvalidRequest, "InvalidRequest"),
            (ErrorCode::InvalidStateTransition, "InvalidStateTransition"),
            (ErrorCode::ResourceNotFound, "ResourceNotFound"),
            (ErrorCode::VersionMismatch, "VersionMismatch"),
            (ErrorCode::InternalError, "InternalError"),
            (ErrorCode::RequestThrottled, "RequestThrottled"),
            (ErrorCode::TerminalStateReached, "TerminalStateReached"),
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), json!(s));
            assert_eq!(serde_json::from_value::<ErrorCode>(json!(s)).unwrap(), code);
            assert_eq!(code.to_string(), s);
        }
        assert_eq!(
            serde_json::from_value::<ErrorCode>(json!("SomethingNew")).unwrap(),
            ErrorCode::Unknown
        );
        assert!(ErrorCode::RequestThrottled.is_retryable());
        assert!(ErrorCode::InternalError.is_retryable());
        assert!(!ErrorCode::VersionMismatch.is_retryable());
    }

    #[test]
    fn get_pending_reply_from_reference() {
        let r: GetPendingJobExecutionsResponse = round_trip(json!({
            "inProgressJobs":[{"jobId":"j0","queuedAt":1700000000,"startedAt":1700000100,
                "lastUpdatedAt":1700000100,"versionNumber":2,"executionNumber":1}],
            "queuedJobs":[{"jobId":"j1","queuedAt":1700000200,"lastUpdatedAt":1700000200,
                "versionNumber":1,"executionNumber":1}],
            "timestamp":1700000300,"clientToken":"opt"}));
        assert_eq!(r.in_progress_jobs[0].started_at, Some(1700000100));
        assert_eq!(r.queued_jobs[0].started_at, None);
        assert_eq!(r.client_token.as_deref(), Some("opt"));
    }

    #[test]
    fn notify_next_from_reference_and_empty() {
        let e: NextJobExecutionChangedEvent = round_trip(json!({"timestamp": 1517186269,
            "execution": {"jobId":"job2","status":"QUEUED","queuedAt":1517017191,
                "lastUpdatedAt":1517017191,"versionNumber":1,"executionNumber":1,
                "jobDocument":{"operation":"test"}}}));
        let ex = e.execution.unwrap();
        assert_eq!(ex.status, JobExecutionStatus::Queued);
        assert_eq!(ex.job_document, Some(json!({"operation":"test"})));
        let empty: NextJobExecutionChangedEvent = round_trip(json!({"timestamp": 5}));
        assert!(empty.execution.is_none());
    }

    #[test]
    fn notify_maps_status_to_summaries() {
        let e: JobExecutionsChangedEvent = round_trip(json!({"timestamp": 1517017906, "jobs": {
            "IN_PROGRESS": [{"jobId":"job1","queuedAt":1,"startedAt":2,"lastUpdatedAt":2,
                "versionNumber":2,"executionNumber":1}],
            "QUEUED": [{"jobId":"job2","queuedAt":3,"lastUpdatedAt":3,"versionNumber":1,
                "executionNumber":1}]}}));
        assert_eq!(e.jobs[&JobExecutionStatus::InProgress][0].job_id, "job1");
        assert_eq!(e.jobs[&JobExecutionStatus::Queued][0].job_id, "job2");
        let none: JobExecutionsChangedEvent = round_trip(json!({"timestamp": 9, "jobs": {}}));
        assert!(none.jobs.is_empty());
    }

    #[test]
    fn notify_find() {
        let e: JobExecutionsChangedEvent = serde_json::from_value(json!({"timestamp": 1,
            "jobs": {"QUEUED": [{"jobId":"a","queuedAt":1,"lastUpdatedAt":1,"versionNumber":1,
                "executionNumber":4}]}}))
        .unwrap();
        let (st, s) = e.find("a").unwrap();
        assert_eq!((st, s.execution_number), (JobExecutionStatus::Queued, 4));
        assert!(e.find("b").is_none());
    }

    #[test]
    fn error_reply_from_reference() {
        let e: ErrorResponse = round_trip(json!({"code":"VersionMismatch","message":"...",
            "clientToken":"abc","timestamp":1700000000,
            "executionState":{"status":"IN_PROGRESS","statusDetails":{"step":"2"},
                "versionNumber":3}}));
        assert_eq!(e.code, ErrorCode::VersionMismatch);
        let st = e.execution_state.unwrap();
        assert_eq!(st.version_number, 3);
        assert_eq!(st.status_details.unwrap()["step"], "2");
        round_trip::<ErrorResponse>(json!({"code":"InvalidJson","message":"bad","timestamp":1}));
    }

    #[test]
    fn start_next_and_describe_replies() {
        let full = json!({"execution": {"jobId":"j","thingName":"T","status":"IN_PROGRESS",
            "statusDetails":{"step":"1/2 Install"},"queuedAt":1,"startedAt":2,"lastUpdatedAt":3,
            "versionNumber":2,"executionNumber":7,"approximateSecondsBeforeTimedOut":50,
            "jobDocument":{"version":"1.0","steps":[]}},
            "timestamp":4,"clientToken":"c"});
        let s: StartNextPendingJobExecutionResponse = round_trip(full.clone());
        assert_eq!(s.execution.as_ref().unwrap().execution_number, 7);
        let d: DescribeJobExecutionResponse = round_trip(full);
        assert_eq!(d.execution.unwrap().state().version_number, 2);
        let nothing: StartNextPendingJobExecutionResponse =
            round_trip(json!({"timestamp":4,"clientToken":"c"}));
        assert!(nothing.execution.is_none());
    }

    #[test]
    fn update_request_and_reply() {
        let mut req = UpdateJobExecutionRequest::new(JobExecutionStatus::InProgress);
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            json!({"status":"IN_PROGRESS"})
        );
        req.status_details = Some(StatusDetails::from([("step".into(), "1/3".into())]));
        req.expected_version = Some(2);
        req.execution_number = Some(1);
        req.include_job_execution_state = Some(true);
        req.include_job_document = Some(false);
        req.step_timeout_in_minutes = Some(-1);
        req.client_token = Some("tok".into());
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(
            v,
            json!({"status":"IN_PROGRESS","statusDetails":{"step":"1/3"},"expectedVersion":2,
                "executionNumber":1,"includeJobExecutionState":true,"includeJobDocument":false,
                "stepTimeoutInMinutes":-1,"clientToken":"tok"})
        );
        assert_eq!(round_trip::<UpdateJobExecutionRequest>(v), req);
        round_trip::<UpdateJobExecutionResponse>(json!({
            "executionState":{"status":"SUCCEEDED","versionNumber":4},
            "jobDocument":{"operation":"x"},"timestamp":5,"clientToken":"tok"}));
        round_trip::<UpdateJobExecutionResponse>(json!({"timestamp":5}));
    }

    #[test]
    fn other_requests() {
        round_trip::<StartNextPendingJobExecutionRequest>(json!({}));
        round_trip::<StartNextPendingJobExecutionRequest>(
            json!({"statusDetails":{"a":"b"},"stepTimeoutInMinutes":10,"clientToken":"t"}),
        );
        round_trip::<DescribeJobExecutionRequest>(
            json!({"executionNumber":3,"includeJobDocument":false,"clientToken":"t"}),
        );
        round_trip::<GetPendingJobExecutionsRequest>(json!({"clientToken":"t"}));
    }

    #[test]
    fn empty_status_details_are_omitted() {
        let st = JobExecutionState {
            status: JobExecutionStatus::Queued,
            status_details: Some(StatusDetails::new()),
            version_number: 1,
        };
        assert_eq!(
            serde_json::to_value(st).unwrap(),
            json!({"status":"QUEUED","versionNumber":1})
        );
    }

    #[test]
    fn decode_request_classifies_errors() {
        let r: StartNextPendingJobExecutionRequest = decode_request(b"").unwrap();
        assert_eq!(r, Default::default());
        let e = decode_request::<GetPendingJobExecutionsRequest>(b"{nope").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidJson);
        let e = decode_request::<GetPendingJobExecutionsRequest>(b"[1]").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidJson);
        let e =
            decode_request::<UpdateJobExecutionRequest>(br#"{"status":"DONE","clientToken":"t1"}"#)
                .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert_eq!(e.client_token.as_deref(), Some("t1"));
        let resp = e.to_response(10);
        assert_eq!(resp.timestamp, 10);
        assert_eq!(resp.client_token.as_deref(), Some("t1"));
        let e =
            decode_request::<UpdateJobExecutionRequest>(br#"{"clientToken":"t2"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest, "status is required");
        let e = decode_request::<UpdateJobExecutionRequest>(
            br#"{"status":"FAILED","statusDetails":{"n":1}}"#,
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
    }
}
