//! The job execution state machine of reference §3: which transitions a device may request and
//! which the service makes, the versionNumber and executionNumber rules, timers and the order of
//! pending executions. Pure functions over an [`ExecutionRecord`]; the local service stores the
//! records, calls these, and publishes what they decide.
//!
//! Must not do I/O or read the clock: every function takes `now` (epoch seconds).
//!
//! Rules (spec, with the reference's recommended choices where AWS is silent):
//! - a new execution is QUEUED with `versionNumber` 1; each new attempt of the same (job,
//!   thing) gets the next `executionNumber`, starting at 1;
//! - every accepted change, by the device or the service, adds 1 to `versionNumber` and sets
//!   `lastUpdatedAt`; entering IN_PROGRESS sets `startedAt` and starts the in-progress timer;
//! - a device may move QUEUED or IN_PROGRESS to IN_PROGRESS, SUCCEEDED, FAILED or REJECTED;
//!   other targets are `InvalidRequest`; nothing leaves a terminal state
//!   (`InvalidStateTransition`, with `executionState`);
//! - the service cancels QUEUED executions, and IN_PROGRESS ones only with force; times out
//!   IN_PROGRESS ones; removes pending ones.

use super::status_details::{self, StatusDetailsError};
use super::wire::{
    ErrorCode, ErrorResponse, GetPendingJobExecutionsResponse, JobExecution, JobExecutionState,
    JobExecutionStatus, JobExecutionSummary, JobExecutionsChangedEvent,
    StartNextPendingJobExecutionRequest, StatusDetails, UpdateJobExecutionRequest,
};
use serde_json::Value;
use std::collections::BTreeMap;

use JobExecutionStatus as S;

pub const INITIAL_VERSION_NUMBER: i64 = 1;
pub const FIRST_EXECUTION_NUMBER: i64 = 1;
/// Upper bound of `stepTimeoutInMinutes` and `inProgressTimeoutInMinutes` (7 days).
pub const MAX_TIMEOUT_MINUTES: i64 = 10080;
/// `stepTimeoutInMinutes: -1` on an update cancels the step timer.
pub const CANCEL_STEP_TIMER: i64 = -1;

/// The executionNumber of a new attempt, given the latest one of the same (job, thing).
pub fn next_execution_number(latest: Option<i64>) -> i64 {
    latest.map_or(FIRST_EXECUTION_NUMBER, |n| n + 1)
}

/// A refused request or action, ready to become an error reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Rejection {
    pub code: ErrorCode,
    pub message: String,
    /// Set for `InvalidStateTransition` and `VersionMismatch`, as AWS does.
    pub execution_state: Option<JobExecutionState>,
}

impl Rejection {
    fn invalid_request(message: impl Into<String>) -> Self {
        Rejection {
            code: ErrorCode::InvalidRequest,
            message: message.into(),
            execution_state: None,
        }
    }

    /// The `.../rejected` payload.
    pub fn to_response(&self, client_token: Option<String>, timestamp: i64) -> ErrorResponse {
        ErrorResponse {
            code: self.code,
            message: self.message.clone(),
            client_token,
            timestamp,
            execution_state: self.execution_state.clone(),
        }
    }
}

impl From<StatusDetailsError> for Rejection {
    fn from(e: StatusDetailsError) -> Self {
        Rejection::invalid_request(e.to_string())
    }
}

/// Statuses a device may set with UpdateJobExecution.
pub fn device_may_set(status: JobExecutionStatus) -> bool {
    matches!(
        status,
        S::InProgress | S::Succeeded | S::Failed | S::Rejected
    )
}

/// May a device move an execution from `from` to `to`? (reference §3.2, device table)
/// Error codes only; [`apply_update`] adds the execution state.
pub fn device_transition(
    from: JobExecutionStatus,
    to: JobExecutionStatus,
) -> Result<(), ErrorCode> {
    if from.is_terminal() {
        Err(ErrorCode::InvalidStateTransition)
    } else if !device_may_set(to) {
        Err(ErrorCode::InvalidRequest)
    } else {
        Ok(())
    }
}

/// What the service does to an execution on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceAction {
    /// CancelJob / CancelJobExecution / abort / end behaviour; `force` also cancels IN_PROGRESS.
    Cancel { force: bool },
    /// The in-progress or step timer expired.
    TimeOut,
    /// The thing is no longer a target (left a group of a continuous job, thing deleted).
    Remove,
}

/// The status a service action leads to from `from`, or why it is refused.
pub fn service_transition(
    from: JobExecutionStatus,
    action: ServiceAction,
) -> Result<JobExecutionStatus, ErrorCode> {
    match (from, action) {
        (from, _) if from.is_terminal() => Err(ErrorCode::InvalidStateTransition),
        (_, ServiceAction::Cancel { force: true }) | (S::Queued, ServiceAction::Cancel { .. }) => {
            Ok(S::Canceled)
        }
        (_, ServiceAction::Cancel { force: false }) => Err(ErrorCode::InvalidStateTransition),
        (S::InProgress, ServiceAction::TimeOut) => Ok(S::TimedOut),
        // Timers only run while IN_PROGRESS.
        (_, ServiceAction::TimeOut) => Err(ErrorCode::InvalidStateTransition),
        (_, ServiceAction::Remove) => Ok(S::Removed),
    }
}

/// Check a `stepTimeoutInMinutes`: 1..=10080, and -1 (cancel) only when `allow_cancel`.
pub fn validate_step_timeout(minutes: i64, allow_cancel: bool) -> Result<(), Rejection> {
    if (1..=MAX_TIMEOUT_MINUTES).contains(&minutes)
        || (allow_cancel && minutes == CANCEL_STEP_TIMER)
    {
        Ok(())
    } else {
        let allowed = if allow_cancel {
            "1..10080 or -1"
        } else {
            "1..10080"
        };
        Err(Rejection::invalid_request(format!(
            "stepTimeoutInMinutes {minutes} is out of range ({allowed})"
        )))
    }
}

/// One execution of one job on one thing, as the service stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionRecord {
    pub status: JobExecutionStatus,
    pub status_details: StatusDetails,
    pub version_number: i64,
    pub execution_number: i64,
    pub queued_at: i64,
    pub started_at: Option<i64>,
    pub last_updated_at: i64,
    /// The job's `timeoutConfig.inProgressTimeoutInMinutes`, copied when queued (UpdateJob may
    /// change it only for executions that have not started).
    pub in_progress_timeout_minutes: Option<i64>,
    /// Absolute deadline of the in-progress timer, set when the execution starts.
    pub in_progress_deadline: Option<i64>,
    /// Absolute deadline of the current step timer.
    pub step_deadline: Option<i64>,
}

impl ExecutionRecord {
    /// A freshly queued execution.
    pub fn queued(
        execution_number: i64,
        in_progress_timeout_minutes: Option<i64>,
        now: i64,
    ) -> Self {
        ExecutionRecord {
            status: S::Queued,
            status_details: StatusDetails::new(),
            version_number: INITIAL_VERSION_NUMBER,
            execution_number,
            queued_at: now,
            started_at: None,
            last_updated_at: now,
            in_progress_timeout_minutes,
            in_progress_deadline: None,
            step_deadline: None,
        }
    }

    pub fn state(&self) -> JobExecutionState {
        JobExecutionState {
            status: self.status,
            status_details: (!self.status_details.is_empty()).then(|| self.status_details.clone()),
            version_number: self.version_number,
        }
    }

    /// When the execution times out: the earlier of the in-progress and step deadlines (a step
    /// timer never extends past the in-progress deadline). `None` when no timer runs.
    pub fn deadline(&self) -> Option<i64> {
        if self.status != S::InProgress {
            return None;
        }
        match (self.in_progress_deadline, self.step_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Has a timer expired at `now`? The service then applies [`ServiceAction::TimeOut`].
    pub fn is_timed_out(&self, now: i64) -> bool {
        self.deadline().is_some_and(|d| d <= now)
    }

    /// `approximateSecondsBeforeTimedOut`, while a timer runs.
    pub fn seconds_before_timed_out(&self, now: i64) -> Option<i64> {
        self.deadline().map(|d| (d - now).max(0))
    }

    /// Sort key of the pending list (IN_PROGRESS first, then by queuedAt); `None` when terminal.
    /// Callers break ties by creation order.
    pub fn pending_order(&self) -> Option<(u8, i64)> {
        match self.status {
            S::InProgress => Some((0, self.queued_at)),
            S::Queued => Some((1, self.queued_at)),
            _ => None,
        }
    }

    /// The wire `JobExecution` for describe, start-next and notify-next.
    pub fn to_execution(
        &self,
        job_id: &str,
        thing_name: &str,
        job_document: Option<Value>,
        now: i64,
    ) -> JobExecution {
        JobExecution {
            job_id: job_id.to_owned(),
            thing_name: Some(thing_name.to_owned()),
            job_document,
            status: self.status,
            status_details: (!self.status_details.is_empty()).then(|| self.status_details.clone()),
            queued_at: Some(self.queued_at),
            started_at: self.started_at,
            last_updated_at: Some(self.last_updated_at),
            version_number: self.version_number,
            execution_number: self.execution_number,
            approximate_seconds_before_timed_out: self.seconds_before_timed_out(now),
        }
    }

    /// The wire `JobExecutionSummary` for `get` and `notify`.
    pub fn summary(&self, job_id: &str) -> JobExecutionSummary {
        JobExecutionSummary {
            job_id: job_id.to_owned(),
            queued_at: self.queued_at,
            started_at: self.started_at,
            last_updated_at: self.last_updated_at,
            version_number: self.version_number,
            execution_number: self.execution_number,
        }
    }

    fn rejection(&self, code: ErrorCode, message: String) -> Rejection {
        Rejection {
            code,
            message,
            execution_state: Some(self.state()),
        }
    }

    /// Move to `to` at `now`: version + 1, timestamps, timers.
    fn change(&mut self, to: JobExecutionStatus, now: i64) {
        if to == S::InProgress && self.status == S::Queued {
            self.started_at = Some(now);
            self.in_progress_deadline = self.in_progress_timeout_minutes.map(|m| now + m * 60);
        }
        if to.is_terminal() {
            self.in_progress_deadline = None;
            self.step_deadline = None;
        }
        self.status = to;
        self.version_number += 1;
        self.last_updated_at = now;
    }

    fn set_step_timer(&mut self, minutes: Option<i64>, now: i64) {
        match minutes {
            None => {}
            Some(CANCEL_STEP_TIMER) => self.step_deadline = None,
            Some(m) => self.step_deadline = Some(now + m * 60),
        }
    }
}

/// What an accepted change did, beyond the new record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub record: ExecutionRecord,
    /// The status before the change.
    pub previous: JobExecutionStatus,
}

impl Applied {
    /// The execution left the pending list (send `notify`, maybe `notify-next`, apply retries).
    pub fn became_terminal(&self) -> bool {
        !self.previous.is_terminal() && self.record.status.is_terminal()
    }

    /// The execution went from QUEUED to IN_PROGRESS (it may now head the pending list).
    pub fn started(&self) -> bool {
        self.previous == S::Queued && self.record.status == S::InProgress
    }
}

/// UpdateJobExecution on `record` (the execution the request addresses: the one with
/// `executionNumber`, else the latest). Checks, in order: field values (`InvalidRequest`),
/// terminal state (`InvalidStateTransition`), `expectedVersion` (`VersionMismatch`), then the
/// device transition table.
pub fn apply_update(
    record: &ExecutionRecord,
    req: &UpdateJobExecutionRequest,
    now: i64,
) -> Result<Applied, Rejection> {
    if let Some(details) = &req.status_details {
        status_details::validate(details)?;
    }
    if let Some(m) = req.step_timeout_in_minutes {
        validate_step_timeout(m, true)?;
    }
    if record.status.is_terminal() {
        return Err(record.rejection(
            ErrorCode::InvalidStateTransition,
            format!(
                "the execution is {} and can no longer be updated",
                record.status
            ),
        ));
    }
    if let Some(expected) = req.expected_version {
        if expected != record.version_number {
            return Err(record.rejection(
                ErrorCode::VersionMismatch,
                format!(
                    "expectedVersion {expected} does not match the current version {}",
                    record.version_number
                ),
            ));
        }
    }
    if let Err(code) = device_transition(record.status, req.status) {
        return Err(Rejection {
            code,
            message: format!("a device may not set the status {}", req.status),
            execution_state: None,
        });
    }
    let mut next = record.clone();
    next.change(req.status, now);
    if let Some(details) = &req.status_details {
        next.status_details = details.clone();
    }
    if !next.status.is_terminal() {
        next.set_step_timer(req.step_timeout_in_minutes, now);
    }
    Ok(Applied {
        record: next,
        previous: record.status,
    })
}

/// StartNextPendingJobExecution on the execution chosen by [`ExecutionRecord::pending_order`]:
/// QUEUED becomes IN_PROGRESS (version + 1, `startedAt`, timers, `statusDetails` replaced when
/// given); IN_PROGRESS is returned unchanged except for a given step timer.
pub fn apply_start_next(
    record: &ExecutionRecord,
    req: &StartNextPendingJobExecutionRequest,
    now: i64,
) -> Result<Applied, Rejection> {
    if let Some(details) = &req.status_details {
        status_details::validate(details)?;
    }
    if let Some(m) = req.step_timeout_in_minutes {
        validate_step_timeout(m, false)?;
    }
    let mut next = record.clone();
    match record.status {
        S::Queued => {
            next.change(S::InProgress, now);
            if let Some(details) = &req.status_details {
                next.status_details = details.clone();
            }
        }
        S::InProgress => {}
        other => {
            return Err(record.rejection(
                ErrorCode::InvalidStateTransition,
                format!("the execution is {other}, not pending"),
            ))
        }
    }
    next.set_step_timer(req.step_timeout_in_minutes, now);
    Ok(Applied {
        record: next,
        previous: record.status,
    })
}

/// A service-side change (cancel, timeout, removal). `status_details`, when given (cancel may
/// carry some), replace the stored map.
pub fn apply_service(
    record: &ExecutionRecord,
    action: ServiceAction,
    status_details: Option<&StatusDetails>,
    now: i64,
) -> Result<Applied, Rejection> {
    if let Some(details) = status_details {
        status_details::validate(details)?;
    }
    let to = service_transition(record.status, action).map_err(|code| {
        record.rejection(
            code,
            format!("cannot {action:?} an execution that is {}", record.status),
        )
    })?;
    let mut next = record.clone();
    next.change(to, now);
    if let Some(details) = status_details {
        next.status_details = details.clone();
    }
    Ok(Applied {
        record: next,
        previous: record.status,
    })
}

/// AWS's default cap on executions listed by `get` and `notify` (15 with scheduling).
pub const DEFAULT_PENDING_LIMIT: usize = 10;

/// The pending list in AWS's order: IN_PROGRESS first, then QUEUED, each by `queuedAt`, ties
/// kept in input order (give records in creation order), terminal ones dropped, at most
/// `limit`. Input: (job id, record).
pub fn pending_list<'a>(
    records: impl IntoIterator<Item = (&'a str, &'a ExecutionRecord)>,
    limit: usize,
) -> Vec<(&'a str, &'a ExecutionRecord)> {
    let mut pending: Vec<_> = records
        .into_iter()
        .filter_map(|(id, r)| r.pending_order().map(|k| (k, id, r)))
        .collect();
    pending.sort_by_key(|(k, _, _)| *k);
    pending
        .into_iter()
        .take(limit)
        .map(|(_, id, r)| (id, r))
        .collect()
}

/// The `get/accepted` payload from [`pending_list`] output.
pub fn get_pending_response(
    pending: &[(&str, &ExecutionRecord)],
    client_token: Option<String>,
    timestamp: i64,
) -> GetPendingJobExecutionsResponse {
    let of = |st: JobExecutionStatus| {
        pending
            .iter()
            .filter(|(_, r)| r.status == st)
            .map(|(id, r)| r.summary(id))
            .collect()
    };
    GetPendingJobExecutionsResponse {
        in_progress_jobs: of(S::InProgress),
        queued_jobs: of(S::Queued),
        timestamp,
        client_token,
    }
}

/// The `notify` payload from [`pending_list`] output (`"jobs": {}` when nothing is pending).
pub fn jobs_changed_event(
    pending: &[(&str, &ExecutionRecord)],
    timestamp: i64,
) -> JobExecutionsChangedEvent {
    let mut jobs: BTreeMap<JobExecutionStatus, Vec<JobExecutionSummary>> = BTreeMap::new();
    for (id, r) in pending {
        jobs.entry(r.status).or_default().push(r.summary(id));
    }
    JobExecutionsChangedEvent { jobs, timestamp }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [JobExecutionStatus; 8] = JobExecutionStatus::ALL;

    fn rec(status: JobExecutionStatus) -> ExecutionRecord {
        let mut r = ExecutionRecord::queued(1, None, 100);
        r.status = status;
        if status != S::Queued {
            r.version_number = 2;
            r.started_at = Some(110);
        }
        r
    }

    fn update(to: JobExecutionStatus) -> UpdateJobExecutionRequest {
        UpdateJobExecutionRequest::new(to)
    }

    #[test]
    fn device_transition_matrix() {
        use ErrorCode::*;
        // (from, [(to, expected)]) for every pair of the 8 statuses.
        for from in ALL {
            for to in ALL {
                let expected = match (from, to) {
                    (f, _) if f.is_terminal() => Err(InvalidStateTransition),
                    (
                        S::Queued | S::InProgress,
                        S::InProgress | S::Succeeded | S::Failed | S::Rejected,
                    ) => Ok(()),
                    (S::Queued | S::InProgress, _) => Err(InvalidRequest),
                    _ => unreachable!(),
                };
                assert_eq!(device_transition(from, to), expected, "{from} -> {to}");
                let applied = apply_update(&rec(from), &update(to), 200);
                match expected {
                    Ok(()) => {
                        let a = applied.unwrap();
                        assert_eq!(a.record.status, to);
                        assert_eq!(a.record.version_number, rec(from).version_number + 1);
                        assert_eq!(a.record.last_updated_at, 200);
                    }
                    Err(code) => {
                        let e = applied.unwrap_err();
                        assert_eq!(e.code, code, "{from} -> {to}");
                        assert_eq!(e.execution_state.is_some(), code == InvalidStateTransition);
                    }
                }
            }
        }
    }

    #[test]
    fn service_transition_matrix() {
        use ErrorCode::InvalidStateTransition as IST;
        let actions = [
            ServiceAction::Cancel { force: false },
            ServiceAction::Cancel { force: true },
            ServiceAction::TimeOut,
            ServiceAction::Remove,
        ];
        for from in ALL {
            for action in actions {
                let expected = match (from, action) {
                    (f, _) if f.is_terminal() => Err(IST),
                    (S::Queued, ServiceAction::Cancel { .. }) => Ok(S::Canceled),
                    (S::InProgress, ServiceAction::Cancel { force: true }) => Ok(S::Canceled),
                    (S::InProgress, ServiceAction::Cancel { force: false }) => Err(IST),
                    (S::InProgress, ServiceAction::TimeOut) => Ok(S::TimedOut),
                    (S::Queued, ServiceAction::TimeOut) => Err(IST),
                    (_, ServiceAction::Remove) => Ok(S::Removed),
                    _ => unreachable!(),
                };
                assert_eq!(
                    service_transition(from, action),
                    expected,
                    "{from} {action:?}"
                );
                let applied = apply_service(&rec(from), action, None, 300);
                match expected {
                    Ok(to) => {
                        let a = applied.unwrap();
                        assert_eq!(a.record.status, to);
                        assert!(a.became_terminal());
                        assert_eq!(a.record.version_number, rec(from).version_number + 1);
                    }
                    Err(_) => {
                        let e = applied.unwrap_err();
                        assert_eq!(e.code, IST);
                        assert_eq!(e.execution_state.unwrap().status, from);
                    }
                }
            }
        }
    }

    #[test]
    fn version_mismatch_carries_state_and_changes_nothing() {
        let mut r = rec(S::InProgress);
        r.status_details.insert("step".into(), "2".into());
        let mut req = update(S::Succeeded);
        req.expected_version = Some(1);
        let e = apply_update(&r, &req, 5).unwrap_err();
        assert_eq!(e.code, ErrorCode::VersionMismatch);
        let st = e.execution_state.unwrap();
        assert_eq!(st.version_number, 2);
        assert_eq!(st.status, S::InProgress);
        assert_eq!(st.status_details.unwrap()["step"], "2");
        req.expected_version = Some(2);
        assert_eq!(apply_update(&r, &req, 5).unwrap().record.version_number, 3);
    }

    #[test]
    fn terminal_state_wins_over_version_mismatch() {
        let mut req = update(S::InProgress);
        req.expected_version = Some(99);
        let e = apply_update(&rec(S::Canceled), &req, 5).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidStateTransition);
        assert_eq!(e.execution_state.unwrap().status, S::Canceled);
    }

    #[test]
    fn update_field_checks_come_first() {
        let mut req = update(S::InProgress);
        req.step_timeout_in_minutes = Some(0);
        assert_eq!(
            apply_update(&rec(S::Succeeded), &req, 5).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        let mut req = update(S::InProgress);
        req.status_details = Some(StatusDetails::from([("bad key".into(), "v".into())]));
        assert_eq!(
            apply_update(&rec(S::InProgress), &req, 5).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn status_details_replace_or_stay() {
        let mut r = rec(S::InProgress);
        r.status_details.insert("old".into(), "1".into());
        let kept = apply_update(&r, &update(S::InProgress), 5).unwrap().record;
        assert_eq!(kept.status_details, r.status_details);
        let mut req = update(S::InProgress);
        req.status_details = Some(StatusDetails::from([("new".into(), "2".into())]));
        let replaced = apply_update(&r, &req, 5).unwrap().record;
        assert_eq!(replaced.status_details, req.status_details.unwrap());
    }

    #[test]
    fn update_from_queued_starts_and_arms_timers() {
        let r = ExecutionRecord::queued(3, Some(20), 1000);
        assert_eq!(r.version_number, 1);
        let mut req = update(S::InProgress);
        req.step_timeout_in_minutes = Some(5);
        let a = apply_update(&r, &req, 1060).unwrap();
        assert!(a.started());
        assert_eq!(a.record.started_at, Some(1060));
        assert_eq!(a.record.in_progress_deadline, Some(1060 + 1200));
        assert_eq!(a.record.deadline(), Some(1060 + 300));
        assert_eq!(a.record.seconds_before_timed_out(1100), Some(260));
        // A progress update does not restart startedAt.
        let b = apply_update(&a.record, &update(S::InProgress), 1200).unwrap();
        assert_eq!(b.record.started_at, Some(1060));
        assert!(!b.started());
    }

    #[test]
    fn step_timer_reference_example() {
        // In-progress 20 min from 12:00; step 7 at 12:05 -> 12:12; step 5 at 12:10 -> 12:15;
        // step 9 at 12:13 -> capped at 12:20; -1 cancels it.
        let min = |m: i64| m * 60;
        let mut r = ExecutionRecord::queued(1, Some(20), 0);
        r = apply_update(&r, &update(S::InProgress), min(0))
            .unwrap()
            .record;
        for (at, step, deadline) in [(5, 7, 12), (10, 5, 15), (13, 9, 20)] {
            let mut req = update(S::InProgress);
            req.step_timeout_in_minutes = Some(step);
            r = apply_update(&r, &req, min(at)).unwrap().record;
            assert_eq!(r.deadline(), Some(min(deadline)), "step {step} at {at}");
        }
        assert!(!r.is_timed_out(min(20) - 1));
        assert!(r.is_timed_out(min(20)));
        let mut req = update(S::InProgress);
        req.step_timeout_in_minutes = Some(CANCEL_STEP_TIMER);
        r = apply_update(&r, &req, min(14)).unwrap().record;
        assert_eq!(r.step_deadline, None);
        assert_eq!(r.deadline(), Some(min(20)));
        let done = apply_update(&r, &update(S::Succeeded), min(15))
            .unwrap()
            .record;
        assert_eq!(done.deadline(), None);
        assert!(!done.is_timed_out(min(100)));
    }

    #[test]
    fn start_next_starts_queued_and_leaves_in_progress() {
        let q = ExecutionRecord::queued(1, None, 10);
        let req = StartNextPendingJobExecutionRequest {
            status_details: Some(StatusDetails::from([("s".into(), "1".into())])),
            step_timeout_in_minutes: Some(10),
            client_token: None,
        };
        let a = apply_start_next(&q, &req, 20).unwrap();
        assert!(a.started());
        assert_eq!(a.record.version_number, 2);
        assert_eq!(a.record.status_details["s"], "1");
        assert_eq!(a.record.deadline(), Some(20 + 600));

        let again = apply_start_next(&a.record, &Default::default(), 30).unwrap();
        assert_eq!(again.record, a.record, "IN_PROGRESS is returned unchanged");
        let mut other = req.clone();
        other.status_details = Some(StatusDetails::from([("s".into(), "2".into())]));
        other.step_timeout_in_minutes = Some(1);
        let timer = apply_start_next(&a.record, &other, 40).unwrap().record;
        assert_eq!(timer.status_details["s"], "1", "details untouched");
        assert_eq!(timer.version_number, 2);
        assert_eq!(timer.deadline(), Some(100));

        let mut bad = req.clone();
        bad.step_timeout_in_minutes = Some(-1);
        assert_eq!(
            apply_start_next(&q, &bad, 1).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            apply_start_next(&rec(S::Succeeded), &Default::default(), 1)
                .unwrap_err()
                .code,
            ErrorCode::InvalidStateTransition
        );
    }

    #[test]
    fn step_timeout_bounds() {
        for (m, cancel, ok) in [
            (1, false, true),
            (10080, false, true),
            (10081, false, false),
            (0, true, false),
            (-1, true, true),
            (-1, false, false),
            (-2, true, false),
        ] {
            assert_eq!(validate_step_timeout(m, cancel).is_ok(), ok, "{m} {cancel}");
        }
    }

    #[test]
    fn numbering_and_order() {
        assert_eq!(next_execution_number(None), 1);
        assert_eq!(next_execution_number(Some(4)), 5);
        let q_old = ExecutionRecord::queued(1, None, 5);
        let q_new = ExecutionRecord::queued(1, None, 9);
        let mut ip = ExecutionRecord::queued(1, None, 50);
        ip.status = S::InProgress;
        let mut v = vec![&q_new, &ip, &q_old, &rec(S::Failed)]
            .into_iter()
            .filter_map(|r| r.pending_order().map(|k| (k, r.queued_at)))
            .collect::<Vec<_>>();
        v.sort();
        assert_eq!(v.iter().map(|(_, q)| *q).collect::<Vec<_>>(), [50, 5, 9]);
    }

    #[test]
    fn pending_lists_follow_aws_order_and_cap() {
        let mut recs: Vec<(String, ExecutionRecord)> = Vec::new();
        // Created in this order; queuedAt ties broken by creation order.
        for (id, queued_at, st) in [
            ("q-late", 30, S::Queued),
            ("done", 1, S::Succeeded),
            ("q-early", 10, S::Queued),
            ("q-tie", 30, S::Queued),
            ("ip", 50, S::InProgress),
        ] {
            let mut r = ExecutionRecord::queued(1, None, queued_at);
            r.status = st;
            recs.push((id.into(), r));
        }
        let view = || recs.iter().map(|(id, r)| (id.as_str(), r));
        let all = pending_list(view(), DEFAULT_PENDING_LIMIT);
        let ids: Vec<_> = all.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, ["ip", "q-early", "q-late", "q-tie"]);
        let capped = pending_list(view(), 2);
        assert_eq!(capped.len(), 2);

        let get = get_pending_response(&all, Some("t".into()), 99);
        assert_eq!(get.in_progress_jobs.len(), 1);
        let queued: Vec<_> = get.queued_jobs.iter().map(|s| s.job_id.as_str()).collect();
        assert_eq!(queued, ["q-early", "q-late", "q-tie"]);
        let ev = jobs_changed_event(&all, 99);
        assert_eq!(
            serde_json::to_value(&ev).unwrap()["jobs"]["QUEUED"][0]["jobId"],
            "q-early"
        );
        assert_eq!(
            serde_json::to_value(jobs_changed_event(&[], 5)).unwrap(),
            serde_json::json!({"jobs": {}, "timestamp": 5})
        );
    }

    #[test]
    fn wire_views() {
        let mut r = ExecutionRecord::queued(2, Some(1), 10);
        r = apply_update(&r, &update(S::InProgress), 20).unwrap().record;
        let ex = r.to_execution("j", "T", Some(serde_json::json!({"a":1})), 50);
        assert_eq!(ex.execution_number, 2);
        assert_eq!(ex.approximate_seconds_before_timed_out, Some(30));
        assert_eq!(ex.status_details, None);
        assert_eq!(ex.thing_name.as_deref(), Some("T"));
        let s = r.summary("j");
        assert_eq!(
            (s.queued_at, s.started_at, s.version_number),
            (10, Some(20), 2)
        );
        let e = Rejection {
            code: ErrorCode::VersionMismatch,
            message: "m".into(),
            execution_state: Some(r.state()),
        }
        .to_response(Some("t".into()), 60);
        assert_eq!(e.client_token.as_deref(), Some("t"));
        assert_eq!(e.execution_state.unwrap().version_number, 2);
    }

    #[test]
    fn service_cancel_stores_details() {
        let d = StatusDetails::from([("reason".into(), "operator".into())]);
        let a = apply_service(
            &rec(S::InProgress),
            ServiceAction::Cancel { force: true },
            Some(&d),
            7,
        )
        .unwrap();
        assert_eq!(a.record.status_details, d);
        assert_eq!(a.record.step_deadline, None);
    }
}
