//! The current job's lifecycle inside the engine: start, step results, terminal status,
//! revocation, and the confirmation round trip (describe) when a notification suggests the
//! job is no longer ours.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Action, Engine, LogLevel, Out, Request, Slot, StatusUpdate, StepStart, TimerKind};
use crate::jobs::runner::{self, Next, RunnerState, StepOutcome};
use crate::jobs::wire::{JobExecution, JobExecutionStatus};

use super::outbox::Outbox;
use super::RECENT_EXECUTIONS;

/// Identity of one execution: duplicates are recognised by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExecKey {
    pub job_id: String,
    pub execution_number: i64,
}

impl ExecKey {
    pub fn of(execution: &JobExecution) -> Self {
        ExecKey {
            job_id: execution.job_id.clone(),
            execution_number: execution.execution_number,
        }
    }
}

/// Where the current job stands locally.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobRun {
    /// Steps are being run; `step_running` says whether a `StartStep` awaits its result.
    Running {
        runner: RunnerState,
        step_running: bool,
    },
    /// Done locally; the terminal status waits in the outbox or is in flight.
    Finished,
    /// The service took the job away; its step was killed and we wait for it to end.
    Revoked,
}

/// The one job the engine handles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveJob {
    pub key: ExecKey,
    /// Last known `versionNumber`: the `expectedVersion` of the next update.
    pub version: i64,
    /// The job document as received (the plan is re-derived from it after a restore).
    pub document: Value,
    pub run: JobRun,
    pub outbox: Outbox,
    /// The service rejected an update with `VersionMismatch` but told us no version: hold
    /// updates until a describe reply gives it.
    pub awaiting_version: bool,
}

impl ActiveJob {
    pub fn is_revoked(&self) -> bool {
        self.run == JobRun::Revoked
    }

    pub fn accepts_updates(&self) -> bool {
        !self.is_revoked()
    }

    /// Done locally: only the answer to its terminal status is awaited, and that answer
    /// (not a notification or a start-next reply) decides how the job ends.
    pub fn is_finished(&self) -> bool {
        self.run == JobRun::Finished
    }

    /// The terminal status this job reports (queued or already sent), if it has one.
    fn terminal_status(&self, in_flight: Option<&StatusUpdate>) -> Option<JobExecutionStatus> {
        self.outbox
            .terminal
            .as_ref()
            .or(in_flight.filter(|u| u.is_terminal()))
            .map(|u| u.status)
    }
}

impl Engine {
    /// start-next handed us an execution: run it (or reject its document).
    pub(super) fn start_job(&mut self, execution: JobExecution, out: &mut Out) {
        let key = ExecKey::of(&execution);
        self.cancel_timer(TimerKind::Poll, out);
        let document = execution.job_document.unwrap_or(Value::Null);
        out.log(
            LogLevel::Info,
            Some(&key.job_id),
            format!(
                "starting job {} (execution {}, version {})",
                key.job_id, key.execution_number, execution.version_number
            ),
        );
        let mut job = ActiveJob {
            key,
            version: execution.version_number,
            document,
            run: JobRun::Finished,
            outbox: Outbox::default(),
            awaiting_version: false,
        };
        let plan = match runner::prepare(&job.document, &self.cfg.host) {
            Ok(plan) => plan,
            Err(reason) => {
                out.log(
                    LogLevel::Warn,
                    Some(&job.key.job_id),
                    format!("rejecting job {}: {reason}", job.key.job_id),
                );
                let details = runner::terminal_details([("reason", reason.as_str())]);
                job.outbox.push(StatusUpdate {
                    status: JobExecutionStatus::Rejected,
                    details,
                    step_timeout_minutes: None,
                });
                self.state.job = Some(job);
                self.plan = None;
                return;
            }
        };
        let (runner_state, next) = runner::start(&plan);
        job.run = JobRun::Running {
            runner: runner_state,
            step_running: false,
        };
        self.state.job = Some(job);
        self.plan = Some(plan);
        if let Some(interval) = self.cfg.heartbeat_interval() {
            self.arm_timer(TimerKind::Heartbeat, interval, out);
        }
        self.advance(next, out);
    }

    /// Acts on the runner's decision: start the next step or finish the job.
    pub(super) fn advance(&mut self, next: Next, out: &mut Out) {
        match next {
            Next::Run(step) => {
                self.queue_progress();
                // IN_PROGRESS (with this step's progress) goes out before the step starts.
                self.pump_update(out);
                let Some(job) = &mut self.state.job else {
                    return;
                };
                if let JobRun::Running { step_running, .. } = &mut job.run {
                    *step_running = true;
                }
                out.push(Action::StartStep(StepStart {
                    job_id: job.key.job_id.clone(),
                    execution_number: job.key.execution_number,
                    step,
                }));
            }
            Next::Done(verdict) => {
                self.cancel_timer(TimerKind::Heartbeat, out);
                let Some(job) = &mut self.state.job else {
                    return;
                };
                out.log(
                    if verdict.status == JobExecutionStatus::Succeeded {
                        LogLevel::Info
                    } else {
                        LogLevel::Warn
                    },
                    Some(&job.key.job_id),
                    format!(
                        "job {} {}: {}",
                        job.key.job_id, verdict.status, verdict.summary
                    ),
                );
                job.run = JobRun::Finished;
                job.outbox.push(StatusUpdate {
                    status: verdict.status,
                    details: verdict.details,
                    step_timeout_minutes: None,
                });
            }
        }
    }

    /// Queues an IN_PROGRESS update with the runner's current progress.
    fn queue_progress(&mut self) {
        let step_timeout = self.cfg.step_timeout();
        let (Some(job), Some(plan)) = (&mut self.state.job, &self.plan) else {
            return;
        };
        if let JobRun::Running { runner, .. } = &job.run {
            job.outbox.push(StatusUpdate {
                status: JobExecutionStatus::InProgress,
                details: runner::progress(plan, runner),
                step_timeout_minutes: step_timeout,
            });
        }
    }

    pub(super) fn heartbeat(&mut self, out: &mut Out) {
        let running = matches!(
            self.state.job.as_ref().map(|job| &job.run),
            Some(JobRun::Running { .. })
        );
        if !running {
            return;
        }
        self.queue_progress();
        if let Some(interval) = self.cfg.heartbeat_interval() {
            self.arm_timer(TimerKind::Heartbeat, interval, out);
        }
    }

    pub(super) fn on_step_finished(&mut self, outcome: StepOutcome, out: &mut Out) {
        let Some(job) = &mut self.state.job else {
            out.log(
                LogLevel::Warn,
                None,
                "a step finished but no job is running",
            );
            return;
        };
        match &mut job.run {
            JobRun::Running {
                runner,
                step_running,
            } if *step_running => {
                *step_running = false;
                let Some(plan) = &self.plan else {
                    return;
                };
                let (report, next) = runner::step_finished(plan, runner, &outcome);
                out.log(report.level, Some(&job.key.job_id), report.message);
                self.advance(next, out);
            }
            JobRun::Revoked => {
                out.log(
                    LogLevel::Info,
                    Some(&job.key.job_id),
                    format!("the handler of revoked job {} has stopped", job.key.job_id),
                );
                self.clear_job(out);
            }
            _ => out.log(
                LogLevel::Warn,
                Some(&job.key.job_id),
                "a step finished but none was running",
            ),
        }
    }

    /// Our terminal status was applied: the job is over.
    pub(super) fn terminal_delivered(&mut self, out: &mut Out) {
        if let Some(job) = &self.state.job {
            out.log(
                LogLevel::Info,
                Some(&job.key.job_id),
                format!("final status of job {} delivered", job.key.job_id),
            );
        }
        self.clear_job(out);
    }

    /// The service shows our execution as no longer pending (`observed` is its status when
    /// known). If that is the terminal status we were reporting, it was delivered;
    /// otherwise the job was taken away from us.
    pub(super) fn execution_gone(
        &mut self,
        observed: Option<JobExecutionStatus>,
        cause: &str,
        out: &mut Out,
    ) {
        let Some(job) = &self.state.job else {
            return;
        };
        let ours = job.terminal_status(self.state.update.as_ref().map(|r| &r.body));
        match (ours, observed) {
            (Some(ours), Some(observed)) if ours == observed => self.terminal_delivered(out),
            (Some(ours), None) => {
                out.log(
                    LogLevel::Warn,
                    Some(&job.key.job_id),
                    format!(
                        "job {} is no longer pending on the service ({cause}); its final status {ours} may not have been recorded",
                        job.key.job_id
                    ),
                );
                self.clear_job(out);
            }
            _ => {
                let status = observed.map(|s| format!(" (now {s})")).unwrap_or_default();
                self.revoke(&format!("{cause}{status}"), out);
            }
        }
    }

    /// The job is no longer ours: stop its step, send nothing more for it.
    pub(super) fn revoke(&mut self, why: &str, out: &mut Out) {
        self.drop_requests(out);
        self.cancel_timer(TimerKind::Heartbeat, out);
        let Some(job) = &mut self.state.job else {
            return;
        };
        job.outbox.clear();
        let step_running = matches!(
            job.run,
            JobRun::Running {
                step_running: true,
                ..
            }
        );
        if step_running {
            out.log(
                LogLevel::Warn,
                Some(&job.key.job_id),
                format!(
                    "job {} revoked by the service: {why}; stopping its handler",
                    job.key.job_id
                ),
            );
            job.run = JobRun::Revoked;
            out.push(Action::KillStep {
                reason: format!("job revoked: {why}"),
            });
        } else {
            out.log(
                LogLevel::Warn,
                Some(&job.key.job_id),
                format!("job {} revoked by the service: {why}", job.key.job_id),
            );
            self.clear_job(out);
        }
    }

    /// Asks the service about our execution (describe), unless a question is already out.
    pub(super) fn confirm(&mut self, why: &str, out: &mut Out) {
        let Some(job) = &self.state.job else {
            return;
        };
        if job.is_revoked() || self.state.describe.is_some() {
            return;
        }
        out.log(
            LogLevel::Info,
            Some(&job.key.job_id),
            format!("checking job {} with the service: {why}", job.key.job_id),
        );
        self.state.describe = Some(Request::new(job.key.clone()));
    }

    /// A pipelined start-next answered with the next execution while the current job's
    /// terminal status was unanswered: keep it until that job is over.
    pub(super) fn park(&mut self, execution: JobExecution, out: &mut Out) {
        out.log(
            LogLevel::Debug,
            Some(&execution.job_id),
            format!(
                "job {} (execution {}) is next; it starts once the final status of the current job is answered",
                execution.job_id, execution.execution_number
            ),
        );
        self.state.parked = Some(execution);
    }

    /// Starts the parked execution once no job is current. One that was handled since it
    /// was parked is dropped (the start-next reply was older than that job's end).
    pub(super) fn start_parked(&mut self, out: &mut Out) {
        if self.state.job.is_some() {
            return;
        }
        let Some(execution) = self.state.parked.take() else {
            return;
        };
        if self.state.recent.contains(&ExecKey::of(&execution)) {
            return;
        }
        self.start_job(execution, out);
    }

    /// Forgets the current job (remembering it as handled) and looks for the next one at
    /// once rather than wait for a notify-next, unless a start-next (pipelined behind the
    /// terminal status) is already outstanding: its answer is the next job, or none, or
    /// this job again if it overtook the status, which `on_start_next_accepted` re-asks.
    pub(super) fn clear_job(&mut self, out: &mut Out) {
        if self.state.start_next.is_none() {
            self.state.work_hinted = true;
        }
        self.drop_requests(out);
        self.cancel_timer(TimerKind::Heartbeat, out);
        self.cancel_timer(TimerKind::ProgressCooldown, out);
        if let Some(job) = self.state.job.take() {
            self.remember(job.key);
        }
        self.plan = None;
    }

    pub(super) fn remember(&mut self, key: ExecKey) {
        if self.state.recent.contains(&key) {
            return;
        }
        if self.state.recent.len() == RECENT_EXECUTIONS {
            self.state.recent.pop_front();
        }
        self.state.recent.push_back(key);
    }

    /// Drops the job's update and describe requests (their late replies will not match).
    fn drop_requests(&mut self, out: &mut Out) {
        self.state.update = None;
        self.state.describe = None;
        for slot in [Slot::Update, Slot::Describe] {
            self.cancel_timer(TimerKind::Reply(slot), out);
            self.cancel_timer(TimerKind::Backoff(slot), out);
        }
    }
}
