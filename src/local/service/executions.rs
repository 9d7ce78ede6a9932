//! Control operations on single job executions: CancelJobExecution, DeleteJobExecution,
//! DescribeJobExecution and the two listings. Changes return their notifications, made by
//! the same path as every other change (reference §5.4).

use super::{Changed, JobsService, ServiceError};
use crate::jobs::execution::ServiceAction;
use crate::jobs::wire::{JobExecutionStatus, StatusDetails};
use crate::local::clock::Timestamp;
use crate::local::store::ExecutionRecord;

impl JobsService {
    /// CancelJobExecution of the latest execution of `job_id` on `thing`.
    pub fn cancel_job_execution(
        &mut self,
        now: Timestamp,
        job_id: &str,
        thing: &str,
        force: bool,
        expected_version: Option<i64>,
        status_details: Option<StatusDetails>,
    ) -> Result<Changed<ExecutionRecord>, ServiceError> {
        let mut rec = self
            .store
            .get_execution(job_id, thing, None)?
            .ok_or_else(|| {
                ServiceError::not_found(format_args!("execution of job {job_id} on {thing}"))
            })?;
        if rec.exec.status.is_terminal() {
            return Err(ServiceError::InvalidStateTransition(format!(
                "the execution is {} (terminal)",
                rec.exec.status
            )));
        }
        if rec.exec.status == JobExecutionStatus::InProgress && !force {
            return Err(ServiceError::InvalidStateTransition(
                "the execution is IN_PROGRESS; cancelling it needs force".to_owned(),
            ));
        }
        if let Some(v) = expected_version {
            if v != rec.exec.version_number {
                return Err(ServiceError::VersionConflict(format!(
                    "expectedVersion {v} does not match the current version {}",
                    rec.exec.version_number
                )));
            }
        }
        self.store.atomic(|_| {
            let before = self.snapshot([thing])?;
            self.apply_service_action(
                now,
                &mut rec,
                ServiceAction::Cancel { force },
                status_details.as_ref(),
            )?;
            self.settle_job(now, job_id)?;
            let messages = self.notifications(now, &before)?;
            Ok(Changed {
                value: rec,
                messages,
            })
        })
    }

    /// DeleteJobExecution: without force only terminal executions.
    pub fn delete_job_execution(
        &mut self,
        now: Timestamp,
        job_id: &str,
        thing: &str,
        execution_number: i64,
        force: bool,
    ) -> Result<Changed<()>, ServiceError> {
        let rec = self
            .store
            .get_execution(job_id, thing, Some(execution_number))?
            .ok_or_else(|| {
                ServiceError::not_found(format_args!(
                    "execution {execution_number} of job {job_id} on {thing}"
                ))
            })?;
        if !force && !rec.exec.status.is_terminal() {
            return Err(ServiceError::InvalidStateTransition(format!(
                "the execution is {}; deleting it needs force",
                rec.exec.status
            )));
        }
        self.store.atomic(|store| {
            let before = self.snapshot([thing])?;
            store.delete_execution(rec.seq)?;
            self.settle_job(now, job_id)?;
            let messages = self.notifications(now, &before)?;
            Ok(Changed {
                value: (),
                messages,
            })
        })
    }

    /// DescribeJobExecution (control plane): `execution_number` or the latest.
    pub fn describe_job_execution(
        &self,
        job_id: &str,
        thing: &str,
        execution_number: Option<i64>,
    ) -> Result<ExecutionRecord, ServiceError> {
        self.store
            .get_execution(job_id, thing, execution_number)?
            .ok_or_else(|| {
                ServiceError::not_found(format_args!("execution of job {job_id} on {thing}"))
            })
    }

    /// ListJobExecutionsForJob: every attempt, by thing then execution number.
    pub fn list_job_executions_for_job(
        &self,
        job_id: &str,
        status: Option<JobExecutionStatus>,
    ) -> Result<Vec<ExecutionRecord>, ServiceError> {
        self.job_or_404(job_id)?;
        Ok(self.store.executions_for_job(job_id, status)?)
    }

    /// ListJobExecutionsForThing: every attempt, oldest first.
    pub fn list_job_executions_for_thing(
        &self,
        thing: &str,
        status: Option<JobExecutionStatus>,
        job_id: Option<&str>,
    ) -> Result<Vec<ExecutionRecord>, ServiceError> {
        Ok(self.store.executions_for_thing(thing, status, job_id)?)
    }
}
