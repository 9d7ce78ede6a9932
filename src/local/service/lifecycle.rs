//! The job lifecycle applied to the store (reference §3.7–§3.9, §5): [`JobsService::tick`]
//! (scheduled starts, end behaviours, rollout through the rollout queue, timers), and
//! what follows an execution's end (retry, completion, abort). Decisions come from the
//! pure `local::lifecycle`; every change goes through the same snapshot → change →
//! notifications path as device requests.
//!
//! Order inside one tick, for determinism: expired timers first (oldest execution
//! first, each followed by its retry and abort evaluation), then every SCHEDULED or
//! IN_PROGRESS job, oldest first: start, end behaviour, rollout, completion.

use super::{Changed, JobsService, Outbound, ServiceError};
use crate::jobs::execution::ServiceAction;
use crate::jobs::wire::JobExecutionStatus as S;
use crate::local::clock::Timestamp;
use crate::local::lifecycle::{abort, retry, rollout, EndBehavior, Lifecycle, Phase};
use crate::local::store::{ExecutionRecord, JobRecord, JobStatus, StoreError, TargetSelection};

/// What one tick did (for logs and tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Jobs that left SCHEDULED.
    pub started: Vec<String>,
    /// Jobs whose end time applied its end behaviour.
    pub ended: Vec<String>,
    /// Jobs cancelled by their abort criteria.
    pub aborted: Vec<String>,
    /// New executions created by rollout.
    pub rolled_out: usize,
    pub timed_out: usize,
    pub retried: usize,
}

impl TickReport {
    pub fn is_empty(&self) -> bool {
        *self == TickReport::default()
    }
}

/// The `reasonCode`/`comment` of a cancellation.
pub(super) struct CancelReason {
    pub reason_code: Option<String>,
    pub comment: Option<String>,
}

impl JobsService {
    /// Applies everything time-driven that is due at `now`. Idempotent: a second call
    /// with the same `now` changes nothing.
    pub fn tick(&mut self, now: Timestamp) -> Result<Changed<TickReport>, ServiceError> {
        self.store.atomic(|store| {
            let mut report = TickReport::default();
            let mut messages = Vec::new();
            for mut rec in store.expired_executions(now.secs())? {
                let before = self.snapshot([rec.thing_name.as_str()])?;
                self.apply_service_action(now, &mut rec, ServiceAction::TimeOut, None)?;
                report.timed_out += 1;
                let extra = self.after_terminal(now, &rec, &mut report)?;
                messages.extend(self.notifications(now, &before)?);
                messages.extend(extra);
            }
            for job in store.list_active_jobs()? {
                messages.extend(self.advance_job(now, job, &mut report)?);
            }
            Ok(Changed {
                value: report,
                messages,
            })
        })
    }

    fn advance_job(
        &self,
        now: Timestamp,
        mut job: JobRecord,
        report: &mut TickReport,
    ) -> Result<Vec<Outbound>, ServiceError> {
        let lc = Lifecycle::of_stored(&job.job_id, &job.configs);
        let mut messages = Vec::new();
        // Most jobs have nothing time-driven left: no schedule and nobody waiting.
        if job.status == JobStatus::InProgress
            && lc.schedule.is_none()
            && self.store.rollout_len(&job.job_id)? == 0
        {
            return Ok(messages);
        }
        let phase = lc.phase(now);
        if job.status == JobStatus::Scheduled {
            if phase == Phase::BeforeStart {
                return Ok(messages);
            }
            job.status = JobStatus::InProgress;
            job.last_updated_at = now;
            self.store.update_job(&job)?;
            if job.target_selection == TargetSelection::Continuous {
                self.refresh_continuous_queue(&job)?;
            }
            report.started.push(job.job_id.clone());
        }
        if phase == Phase::Ended {
            let behavior = lc
                .schedule
                .as_ref()
                .map_or(EndBehavior::StopRollout, |s| s.end_behavior);
            let dropped = self.store.clear_rollout(&job.job_id)?;
            match behavior {
                EndBehavior::StopRollout => {
                    if dropped > 0 {
                        job.last_updated_at = now;
                        self.store.update_job(&job)?;
                        report.ended.push(job.job_id.clone());
                    }
                }
                EndBehavior::Cancel | EndBehavior::ForceCancel => {
                    let force = behavior == EndBehavior::ForceCancel;
                    let reason = CancelReason {
                        reason_code: None,
                        comment: Some(format!(
                            "endTime reached (endBehavior {})",
                            if force { "FORCE_CANCEL" } else { "CANCEL" }
                        )),
                    };
                    messages.extend(self.cancel_records(now, &mut job, force, reason, None)?);
                    report.ended.push(job.job_id.clone());
                }
            }
        } else if phase == Phase::Open {
            let batch = self.rollout_batch(now, &job, &lc)?;
            let before = self.snapshot(&batch)?;
            report.rolled_out += self.create_executions(now, &job, &batch)?;
            messages.extend(self.notifications(now, &before)?);
        }
        self.settle_job(now, &job.job_id)?;
        Ok(messages)
    }

    /// A CONTINUOUS job that starts: its queue becomes the things its targets reach now.
    fn refresh_continuous_queue(&self, job: &JobRecord) -> Result<(), ServiceError> {
        let mut things = Vec::new();
        for arn in &self.store.job_targets(&job.job_id)? {
            // A group deleted while the job waited reaches nobody.
            if let Ok(t) = self.resolve_targets(std::slice::from_ref(arn)) {
                things.extend(t);
            }
        }
        for queued in self.store.rollout_queue(&job.job_id, None)? {
            if !things.contains(&queued) {
                self.store.remove_rollout(&job.job_id, &queued)?;
            }
        }
        self.store.add_rollout(&job.job_id, &things)?;
        Ok(())
    }

    /// The head of the job's rollout queue that may get executions now: nothing unless
    /// the job is IN_PROGRESS inside its schedule and windows, and no more than the
    /// rollout rate leaves for the last 60 seconds.
    pub(super) fn rollout_batch(
        &self,
        now: Timestamp,
        job: &JobRecord,
        lc: &Lifecycle,
    ) -> Result<Vec<String>, StoreError> {
        if job.status != JobStatus::InProgress || lc.phase(now) != Phase::Open {
            return Ok(Vec::new());
        }
        let notified = self.store.first_executions_since(&job.job_id, None)?;
        let succeeded = if lc.rollout.exponential.is_some() {
            self.store
                .status_counts(&job.job_id)?
                .number_of_succeeded_things
        } else {
            0
        };
        let rate = lc.rollout.rate(notified, succeeded);
        let recent = match rate {
            Some(_) => self
                .store
                .first_executions_since(&job.job_id, Some(now.secs() - 60))?,
            None => 0,
        };
        match rollout::allowance(rate, recent) {
            Some(0) => Ok(Vec::new()),
            limit => self.store.rollout_queue(&job.job_id, limit),
        }
    }

    /// Takes `things` off the job's rollout queue and queues their first execution
    /// (skipping things deleted meanwhile or already running this job). Returns how many
    /// executions were created.
    pub(super) fn create_executions(
        &self,
        now: Timestamp,
        job: &JobRecord,
        things: &[String],
    ) -> Result<usize, StoreError> {
        let timeout = job.configs.in_progress_timeout_minutes();
        let mut created = 0;
        for t in things {
            self.store.remove_rollout(&job.job_id, t)?;
            if self.store.get_thing(t)?.is_none() {
                continue;
            }
            let pending = self
                .store
                .get_execution(&job.job_id, t, None)?
                .is_some_and(|e| e.exec.status.is_pending());
            if !pending {
                self.store
                    .insert_execution(&job.job_id, t, 0, timeout, now.secs())?;
                created += 1;
            }
        }
        Ok(created)
    }

    /// After `rec` became terminal (device update or timeout), in the reference's order
    /// (§5.4): retry, job completion, abort. The caller's snapshot covers `rec`'s thing;
    /// the returned notifications cover the other things an abort changed.
    pub(super) fn after_terminal(
        &self,
        now: Timestamp,
        rec: &ExecutionRecord,
        report: &mut TickReport,
    ) -> Result<Vec<Outbound>, ServiceError> {
        let Some(job) = self.store.get_job_without_targets(&rec.job_id)? else {
            return Ok(Vec::new());
        };
        let lc = Lifecycle::of_stored(&job.job_id, &job.configs);
        if job.status == JobStatus::InProgress
            && matches!(rec.exec.status, S::Failed | S::TimedOut)
            && !lc.retry.is_empty()
        {
            let attempts =
                self.store
                    .executions_for_thing(&rec.thing_name, None, Some(&rec.job_id))?;
            // The current run starts at the last first attempt (a thing that left and
            // rejoined a continuous job starts counting again).
            let start = attempts
                .iter()
                .rposition(|e| e.retry_attempt == 0)
                .unwrap_or(0);
            let run: Vec<S> = attempts[start..].iter().map(|e| e.exec.status).collect();
            if retry::should_retry(&lc.retry, &run) {
                self.store.insert_execution(
                    &rec.job_id,
                    &rec.thing_name,
                    rec.retry_attempt + 1,
                    job.configs.in_progress_timeout_minutes(),
                    now.secs(),
                )?;
                report.retried += 1;
            }
        }
        self.settle_job(now, &rec.job_id)?;
        let mut messages = Vec::new();
        if !lc.abort.is_empty() {
            if let Some(mut job) = self.store.get_job_without_targets(&rec.job_id)? {
                if job.status == JobStatus::InProgress {
                    let counts = self.store.finished_counts(&job.job_id)?;
                    if let Some(a) = abort::evaluate(&lc.abort, &counts) {
                        tracing::info!(job_id = %job.job_id, "{}", a.comment());
                        let reason = CancelReason {
                            reason_code: Some(abort::ABORT_REASON_CODE.to_owned()),
                            comment: Some(a.comment()),
                        };
                        messages.extend(self.cancel_records(
                            now,
                            &mut job,
                            false,
                            reason,
                            Some(&rec.thing_name),
                        )?);
                        report.aborted.push(job.job_id.clone());
                    }
                }
            }
        }
        Ok(messages)
    }

    /// Cancels a job: its rollout queue is dropped, QUEUED executions (and with `force`
    /// IN_PROGRESS ones) become CANCELED, the job CANCELED. Returns the notifications of
    /// every affected thing but `exclude` (whose caller holds its own snapshot).
    pub(super) fn cancel_records(
        &self,
        now: Timestamp,
        job: &mut JobRecord,
        force: bool,
        reason: CancelReason,
        exclude: Option<&str>,
    ) -> Result<Vec<Outbound>, ServiceError> {
        let things: Vec<String> = self
            .store
            .things_of_job(&job.job_id)?
            .into_iter()
            .filter(|t| Some(t.as_str()) != exclude)
            .collect();
        let before = self.snapshot(&things)?;
        self.store.clear_rollout(&job.job_id)?;
        for mut rec in self.store.executions_for_job(&job.job_id, None)? {
            let cancel = match rec.exec.status {
                S::Queued => true,
                S::InProgress => force,
                _ => false,
            };
            if cancel {
                self.apply_service_action(now, &mut rec, ServiceAction::Cancel { force }, None)?;
            }
        }
        job.status = JobStatus::Canceled;
        job.force_canceled |= force;
        if reason.reason_code.is_some() {
            job.reason_code = reason.reason_code;
        }
        if reason.comment.is_some() {
            job.comment = reason.comment;
        }
        job.last_updated_at = now;
        self.store.update_job(job)?;
        Ok(self.notifications(now, &before)?)
    }
}
