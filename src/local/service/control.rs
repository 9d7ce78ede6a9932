//! Control operations on jobs and executions (what the HTTP control plane calls). Each
//! one that changes executions returns the notifications to publish, produced by the same
//! path as device requests: record → job status → notifications (reference §5.4).

use std::collections::BTreeSet;

use super::lifecycle::CancelReason;
use super::{validate, Changed, JobsService, ServiceError, Target};
use crate::jobs::execution::{self, ServiceAction};
use crate::jobs::wire::{ErrorCode, JobExecutionStatus, StatusDetails};
use crate::local::clock::Timestamp;
use crate::local::lifecycle::{Lifecycle, Phase};
use crate::local::store::{
    ExecutionRecord, JobConfigs, JobRecord, JobStatus, StatusCounts, StringMap, TargetSelection,
};

/// CreateJob input, after the control plane resolved templates and `documentSource`.
#[derive(Debug, Clone, Default)]
pub struct NewJob {
    pub job_id: String,
    /// Thing and thing-group ARNs.
    pub targets: Vec<String>,
    /// The final document (JSON object text), after `${aws:iot:parameter:...}` substitution.
    pub document: String,
    /// The document before substitution (jobs from managed templates).
    pub document_template: Option<String>,
    pub document_source: Option<String>,
    pub description: Option<String>,
    pub target_selection: TargetSelection,
    pub job_template_arn: Option<String>,
    pub document_parameters: Option<StringMap>,
    pub namespace_id: Option<String>,
    pub configs: JobConfigs,
}

/// UpdateJob input: only the fields that are `Some` change.
#[derive(Debug, Clone, Default)]
pub struct UpdateJob {
    pub description: Option<String>,
    pub configs: JobConfigs,
}

/// ListJobs filters.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub target_selection: Option<TargetSelection>,
    pub thing_group_name: Option<String>,
}

/// DescribeJob: the job and its `jobProcessDetails` counters.
#[derive(Debug, Clone)]
pub struct JobDetails {
    pub job: JobRecord,
    pub counts: StatusCounts,
    /// Targets still waiting in the rollout queue (`isConcurrent` while > 0).
    pub rollout_remaining: i64,
    /// The next maintenance-window starts (`scheduledJobRollouts`, at most 7); filled by
    /// [`JobsService::describe_job_at`].
    pub scheduled_rollouts: Vec<Timestamp>,
}

fn timeout_minutes(configs: &JobConfigs) -> Result<Option<i64>, ServiceError> {
    let Some(tc) = &configs.timeout_config else {
        return Ok(None);
    };
    match tc.get("inProgressTimeoutInMinutes") {
        None => Ok(None),
        Some(v) => match v.as_i64() {
            Some(m) if (1..=execution::MAX_TIMEOUT_MINUTES).contains(&m) => Ok(Some(m)),
            _ => Err(ServiceError::InvalidRequest(format!(
                "timeoutConfig.inProgressTimeoutInMinutes must be 1..{}",
                execution::MAX_TIMEOUT_MINUTES
            ))),
        },
    }
}

impl JobsService {
    pub(super) fn job_or_404(&self, job_id: &str) -> Result<JobRecord, ServiceError> {
        self.store
            .get_job(job_id)?
            .ok_or_else(|| ServiceError::not_found(format_args!("job {job_id}")))
    }

    /// After an execution of `job_id` became terminal (or was deleted): a SNAPSHOT job
    /// whose executions are all terminal and whose rollout queue is empty is COMPLETED.
    pub(super) fn settle_job(
        &self,
        now: Timestamp,
        job_id: &str,
    ) -> Result<(), crate::local::store::StoreError> {
        let Some(mut job) = self.store.get_job_without_targets(job_id)? else {
            return Ok(());
        };
        if job.target_selection == TargetSelection::Snapshot
            && job.status == JobStatus::InProgress
            && !self.store.job_has_pending(job_id)?
            && self.store.rollout_len(job_id)? == 0
        {
            job.status = JobStatus::Completed;
            job.completed_at = Some(now);
            job.last_updated_at = now;
            self.store.update_job(&job)?;
        }
        Ok(())
    }

    /// Things a list of target ARNs reaches now (group members, recursively when
    /// configured), sorted. Fails on a malformed ARN or a missing thing or group.
    pub(super) fn resolve_targets(&self, arns: &[String]) -> Result<Vec<String>, ServiceError> {
        let mut things = BTreeSet::new();
        for arn in arns {
            match self.cfg.account.parse_target(arn)? {
                Target::Thing(t) => {
                    if self.store.get_thing(&t)?.is_none() {
                        return Err(ServiceError::not_found(format_args!("thing {t}")));
                    }
                    things.insert(t);
                }
                Target::Group(g) => {
                    if self.store.get_group(&g)?.is_none() {
                        return Err(ServiceError::not_found(format_args!("thing group {g}")));
                    }
                    things.extend(
                        self.store
                            .things_in_group(&g, self.cfg.include_child_groups)?,
                    );
                }
            }
        }
        Ok(things.into_iter().collect())
    }

    /// Applies a service action (cancel, remove) to one execution record and stores it.
    pub(super) fn apply_service_action(
        &self,
        now: Timestamp,
        rec: &mut ExecutionRecord,
        action: ServiceAction,
        details: Option<&StatusDetails>,
    ) -> Result<(), ServiceError> {
        let applied = execution::apply_service(&rec.exec, action, details, now.secs()).map_err(
            |r| match r.code {
                ErrorCode::InvalidStateTransition => {
                    ServiceError::InvalidStateTransition(r.message)
                }
                _ => ServiceError::InvalidRequest(r.message),
            },
        )?;
        if matches!(action, ServiceAction::Cancel { force: true })
            && applied.previous == JobExecutionStatus::InProgress
        {
            rec.force_canceled = true;
        }
        rec.exec = applied.record;
        self.store.update_execution(rec)?;
        Ok(())
    }

    /// CreateJob: stores the job (SCHEDULED when its startTime is ahead) with every thing
    /// the targets reach now in its rollout queue, and creates the executions its schedule
    /// and rollout rate allow at once (all of them without such configs). CONTINUOUS jobs
    /// also reach later group members.
    pub fn create_job(
        &mut self,
        now: Timestamp,
        new: NewJob,
    ) -> Result<Changed<JobRecord>, ServiceError> {
        validate::id("jobId", &new.job_id)?;
        validate::text("description", new.description.as_deref())?;
        validate::document(&new.document)?;
        if new.targets.is_empty() {
            return Err(ServiceError::InvalidRequest(
                "targets must name at least one thing or thing group".to_owned(),
            ));
        }
        timeout_minutes(&new.configs)?;
        let lc = Lifecycle::parse(&new.configs).map_err(|e| ServiceError::InvalidRequest(e.0))?;
        let warnings = lc
            .check_new_schedule(now, self.cfg.min_schedule_lead_minutes)
            .map_err(|e| ServiceError::InvalidRequest(e.0))?;
        for w in warnings {
            tracing::warn!(job_id = %new.job_id, "{w}");
        }
        // AWS managed template ARNs have an empty account: `arn:aws:iot:<region>::jobtemplate/..`.
        let managed = new
            .job_template_arn
            .as_deref()
            .is_some_and(|a| a.contains("::jobtemplate/"));
        if new.document_parameters.is_some() && !managed {
            return Err(ServiceError::InvalidRequest(
                "documentParameters need an AWS managed template jobTemplateArn".to_owned(),
            ));
        }
        if self.store.get_job(&new.job_id)?.is_some() {
            return Err(ServiceError::ResourceAlreadyExists {
                message: format!("job {} already exists", new.job_id),
                resource_id: new.job_id.clone(),
                resource_arn: Some(self.cfg.account.job_arn(&new.job_id)),
            });
        }
        let mut targets = Vec::new();
        for t in &new.targets {
            if !targets.contains(t) {
                targets.push(t.clone());
            }
        }
        let things = self.resolve_targets(&targets)?;
        self.store.atomic(|store| {
            let job = JobRecord {
                job_id: new.job_id.clone(),
                target_selection: new.target_selection,
                status: if lc.phase(now) == Phase::BeforeStart {
                    JobStatus::Scheduled
                } else {
                    JobStatus::InProgress
                },
                force_canceled: false,
                reason_code: None,
                comment: None,
                description: new.description,
                targets,
                document: new.document,
                document_template: new.document_template,
                document_source: new.document_source,
                job_template_arn: new.job_template_arn,
                document_parameters: new.document_parameters,
                namespace_id: new.namespace_id,
                configs: new.configs,
                created_at: now,
                last_updated_at: now,
                completed_at: None,
            };
            store.insert_job(&job)?;
            // Every target waits in the rollout queue; what the schedule, windows and
            // rate allow gets its execution now, the rest on later ticks.
            store.add_rollout(&job.job_id, &things)?;
            let batch = self.rollout_batch(now, &job, &lc)?;
            let before = self.snapshot(&batch)?;
            self.create_executions(now, &job, &batch)?;
            // A snapshot job with nobody to run it is done at once.
            self.settle_job(now, &job.job_id)?;
            let messages = self.notifications(now, &before)?;
            let value = self.job_or_404(&job.job_id)?;
            Ok(Changed { value, messages })
        })
    }

    /// CancelJob: QUEUED executions → CANCELED; with `force` IN_PROGRESS ones too
    /// (`forceCanceled`). Terminal executions are left alone. Cancelling a cancelled job
    /// again is allowed (e.g. with force after a plain cancel).
    pub fn cancel_job(
        &mut self,
        now: Timestamp,
        job_id: &str,
        force: bool,
        reason_code: Option<String>,
        comment: Option<String>,
    ) -> Result<Changed<JobRecord>, ServiceError> {
        validate::reason_code(reason_code.as_deref())?;
        validate::text("comment", comment.as_deref())?;
        let mut job = self.job_or_404(job_id)?;
        if job.status == JobStatus::Completed {
            return Err(ServiceError::InvalidRequest(format!(
                "job {job_id} is COMPLETED and cannot be canceled"
            )));
        }
        self.store.atomic(|_| {
            let reason = CancelReason {
                reason_code,
                comment,
            };
            let messages = self.cancel_records(now, &mut job, force, reason, None)?;
            Ok(Changed {
                value: job,
                messages,
            })
        })
    }

    /// DeleteJob: without force only COMPLETED or CANCELED jobs. The job and all its
    /// executions disappear at once (no lingering DELETION_IN_PROGRESS locally); devices get
    /// `notify`/`notify-next` without it and `ResourceNotFound` afterwards.
    pub fn delete_job(
        &mut self,
        now: Timestamp,
        job_id: &str,
        force: bool,
    ) -> Result<Changed<()>, ServiceError> {
        let job = self.job_or_404(job_id)?;
        if !force && !matches!(job.status, JobStatus::Completed | JobStatus::Canceled) {
            return Err(ServiceError::InvalidStateTransition(format!(
                "job {job_id} is {}; delete it with force or cancel it first",
                crate::local::store::name_of(&job.status)
            )));
        }
        self.store.atomic(|store| {
            let before = self.snapshot(store.things_of_job(job_id)?)?;
            store.delete_job(job_id)?;
            let messages = self.notifications(now, &before)?;
            Ok(Changed {
                value: (),
                messages,
            })
        })
    }

    /// UpdateJob: description and configurations. A new `inProgressTimeoutInMinutes`
    /// applies only to executions that have not started.
    pub fn update_job(
        &mut self,
        now: Timestamp,
        job_id: &str,
        update: UpdateJob,
    ) -> Result<JobRecord, ServiceError> {
        validate::text("description", update.description.as_deref())?;
        let new_timeout = timeout_minutes(&update.configs)?;
        let mut job = self.job_or_404(job_id)?;
        let u = update.configs;
        let c = &mut job.configs;
        for (slot, v) in [
            (&mut c.presigned_url_config, u.presigned_url_config),
            (
                &mut c.job_executions_rollout_config,
                u.job_executions_rollout_config,
            ),
            (&mut c.abort_config, u.abort_config),
            (&mut c.timeout_config, u.timeout_config),
            (
                &mut c.job_executions_retry_config,
                u.job_executions_retry_config,
            ),
        ] {
            if v.is_some() {
                *slot = v;
            }
        }
        if update.description.is_some() {
            job.description = update.description;
        }
        Lifecycle::parse(&job.configs).map_err(|e| ServiceError::InvalidRequest(e.0))?;
        job.last_updated_at = now;
        self.store.atomic(|store| {
            store.update_job(&job)?;
            if let Some(m) = new_timeout {
                for mut rec in store.executions_for_job(job_id, Some(JobExecutionStatus::Queued))? {
                    rec.exec.in_progress_timeout_minutes = Some(m);
                    store.update_execution(&rec)?;
                }
            }
            Ok::<_, ServiceError>(())
        })?;
        Ok(job)
    }

    /// DescribeJob.
    pub fn describe_job(&self, job_id: &str) -> Result<JobDetails, ServiceError> {
        let job = self.job_or_404(job_id)?;
        let counts = self.store.status_counts(job_id)?;
        let rollout_remaining = self.store.rollout_len(job_id)?;
        Ok(JobDetails {
            job,
            counts,
            rollout_remaining,
            scheduled_rollouts: Vec::new(),
        })
    }

    /// DescribeJob at `now`: also the next 7 maintenance-window starts of a job that is
    /// still rolling out.
    pub fn describe_job_at(
        &self,
        now: Timestamp,
        job_id: &str,
    ) -> Result<JobDetails, ServiceError> {
        let mut d = self.describe_job(job_id)?;
        if matches!(d.job.status, JobStatus::Scheduled | JobStatus::InProgress) {
            if let Some(s) = Lifecycle::of_stored(job_id, &d.job.configs).schedule {
                d.scheduled_rollouts = s.next_window_starts(now, 7);
            }
        }
        Ok(d)
    }

    /// ListJobs, oldest first.
    pub fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, ServiceError> {
        let group_arn = filter
            .thing_group_name
            .as_deref()
            .map(|g| self.cfg.account.group_arn(g));
        Ok(self
            .store
            .list_jobs()?
            .into_iter()
            .filter(|j| filter.status.is_none_or(|s| j.status == s))
            .filter(|j| {
                filter
                    .target_selection
                    .is_none_or(|s| j.target_selection == s)
            })
            .filter(|j| group_arn.as_ref().is_none_or(|a| j.targets.contains(a)))
            .collect())
    }
}
