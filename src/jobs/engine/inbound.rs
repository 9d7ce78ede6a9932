//! Incoming messages: replies (matched on client token) and notifications.
//!
//! Topics are parsed with `jobs::topics` (never `rumqttc::matches`, which refuses `$`
//! topics); messages for another thing and payloads that do not decode are logged and
//! dropped, never acted on.

use serde::de::DeserializeOwned;

use super::{Engine, JobRun, LogLevel, Out, Slot, TimerKind};
use crate::jobs::engine::ExecKey;
use crate::jobs::topics::{self, JobRef, Operation, TopicKind};
use crate::jobs::wire::{
    DescribeJobExecutionResponse, ErrorCode, ErrorResponse, JobExecutionStatus,
    JobExecutionsChangedEvent, NextJobExecutionChangedEvent, StartNextPendingJobExecutionResponse,
    UpdateJobExecutionResponse,
};

impl Engine {
    pub(super) fn on_message(&mut self, topic: &str, payload: &[u8], out: &mut Out) {
        let Some(parsed) = topics::parse(topic) else {
            out.log(
                LogLevel::Debug,
                None,
                format!("ignoring message on {topic}"),
            );
            return;
        };
        if parsed.thing_name != self.cfg.thing_name {
            out.log(
                LogLevel::Warn,
                None,
                format!("ignoring message for another thing on {topic}"),
            );
            return;
        }
        match parsed.kind {
            TopicKind::Accepted(Operation::StartNext) => {
                if let Some(reply) = decode(topic, payload, out) {
                    self.on_start_next_accepted(reply, out);
                }
            }
            TopicKind::Rejected(Operation::StartNext) => {
                if let Some(reply) = decode(topic, payload, out) {
                    self.on_start_next_rejected(reply, out);
                }
            }
            TopicKind::Accepted(Operation::Update(job_id)) => {
                if let Some(reply) = decode(topic, payload, out) {
                    self.on_update_accepted(&job_id, reply, out);
                }
            }
            TopicKind::Rejected(Operation::Update(job_id)) => {
                if let Some(reply) = decode(topic, payload, out) {
                    self.on_update_rejected(&job_id, reply, out);
                }
            }
            TopicKind::Accepted(Operation::Describe(JobRef::Id(job_id))) => {
                if let Some(reply) = decode(topic, payload, out) {
                    self.on_describe_accepted(&job_id, reply, out);
                }
            }
            TopicKind::Rejected(Operation::Describe(JobRef::Id(job_id))) => {
                if let Some(reply) = decode(topic, payload, out) {
                    self.on_describe_rejected(&job_id, reply, out);
                }
            }
            TopicKind::NotifyNext => {
                if let Some(event) = decode(topic, payload, out) {
                    self.on_notify_next(event, out);
                }
            }
            TopicKind::Notify => {
                if let Some(event) = decode(topic, payload, out) {
                    self.on_notify(event, out);
                }
            }
            // Requests (our own, echoed by a broker) and replies to requests we never make.
            _ => {}
        }
    }

    /// True when `token` answers the slot's in-flight request; the request's reply timer is
    /// then cancelled. Replies to other clients or to abandoned attempts are ignored.
    fn claim_reply(&mut self, slot: Slot, token: Option<&str>, out: &mut Out) -> bool {
        let matches = match slot {
            Slot::StartNext => self
                .state
                .start_next
                .as_ref()
                .is_some_and(|r| r.matches(token)),
            Slot::Update => self.state.update.as_ref().is_some_and(|r| r.matches(token)),
            Slot::Describe => self
                .state
                .describe
                .as_ref()
                .is_some_and(|r| r.matches(token)),
        };
        if matches {
            self.cancel_timer(TimerKind::Reply(slot), out);
        } else {
            out.log(
                LogLevel::Debug,
                None,
                format!("ignoring a reply with unknown client token {token:?}"),
            );
        }
        matches
    }

    fn on_start_next_accepted(
        &mut self,
        reply: StartNextPendingJobExecutionResponse,
        out: &mut Out,
    ) {
        if !self.claim_reply(Slot::StartNext, reply.client_token.as_deref(), out) {
            return;
        }
        let asked_during = self.state.start_next.take().and_then(|req| req.body);
        let current = self.state.job.as_ref().map(|job| job.key.clone());
        match (reply.execution, current) {
            (None, None) => {
                out.log(
                    LogLevel::Info,
                    None,
                    "no pending job; waiting for the next one",
                );
                self.arm_timer(TimerKind::Poll, self.cfg.poll_interval, out);
            }
            // Our terminal status was applied before the start-next (or the job was
            // taken away): the status reply tells which, and clearing the job asks again.
            (None, Some(_)) if self.current_finished() => {}
            (None, Some(_)) => self.confirm("start-next shows nothing pending", out),
            (Some(execution), None) => {
                let key = ExecKey::of(&execution);
                if asked_during.as_ref() == Some(&key) {
                    // Asked while this execution was ours and answered before its end
                    // was applied: it is over locally, so ask again (once: the new
                    // request is not tied to a job, so a repeat is taken as below).
                    out.log(
                        LogLevel::Debug,
                        Some(&key.job_id),
                        format!(
                            "start-next answered with job {} from before its final status was applied; asking again",
                            key.job_id
                        ),
                    );
                    self.state.work_hinted = true;
                } else if self.state.recent.contains(&key) {
                    out.log(
                        LogLevel::Info,
                        Some(&key.job_id),
                        format!(
                            "ignoring job {} execution {}: already handled",
                            key.job_id, key.execution_number
                        ),
                    );
                    self.arm_timer(TimerKind::Poll, self.cfg.poll_interval, out);
                } else if execution.status.is_terminal() {
                    out.log(
                        LogLevel::Warn,
                        Some(&key.job_id),
                        format!(
                            "start-next returned job {} as {}",
                            key.job_id, execution.status
                        ),
                    );
                } else {
                    self.start_job(execution, out);
                }
            }
            (Some(execution), Some(current)) if self.current_finished() => {
                if ExecKey::of(&execution) == current {
                    // The pipelined start-next overtook our terminal status: the service
                    // still has the execution IN_PROGRESS. Never run it again; clearing the
                    // job once the status is answered asks start-next again.
                    out.log(
                        LogLevel::Debug,
                        Some(&current.job_id),
                        format!(
                            "start-next answered before the final status of job {} was applied; asking again once it is answered",
                            current.job_id
                        ),
                    );
                } else if execution.status.is_terminal()
                    || self.state.recent.contains(&ExecKey::of(&execution))
                {
                    // Not work for us (and not a reason to doubt the current job).
                } else {
                    self.park(execution, out);
                }
            }
            (Some(execution), Some(current)) => {
                if ExecKey::of(&execution) == current
                    && execution.status == JobExecutionStatus::InProgress
                    && self.state.unconfirmed
                {
                    // After a restart: the execution is still ours and running.
                    self.still_ours(execution.version_number, out);
                } else if ExecKey::of(&execution) != current {
                    self.confirm(
                        &format!("start-next returned another job, {}", execution.job_id),
                        out,
                    );
                }
            }
        }
    }

    fn current_finished(&self) -> bool {
        self.state.job.as_ref().is_some_and(|job| job.is_finished())
    }

    /// The service confirmed a restored job is still ours and IN_PROGRESS.
    fn still_ours(&mut self, version: i64, out: &mut Out) {
        self.state.unconfirmed = false;
        let update_idle = self.state.update.is_none();
        if let Some(job) = &mut self.state.job {
            if update_idle {
                job.version = version;
            }
            out.log(
                LogLevel::Info,
                Some(&job.key.job_id),
                format!(
                    "job {} is still ours and IN_PROGRESS (version {version}); resuming it",
                    job.key.job_id
                ),
            );
        }
    }

    fn on_start_next_rejected(&mut self, reply: ErrorResponse, out: &mut Out) {
        if !self.claim_reply(Slot::StartNext, reply.client_token.as_deref(), out) {
            return;
        }
        out.log(
            LogLevel::Warn,
            None,
            format!("start-next rejected: {} {}", reply.code, reply.message),
        );
        // start-next changes nothing we hold, so any rejection may be retried, slowly.
        self.back_off(Slot::StartNext, out);
    }

    fn on_update_accepted(
        &mut self,
        job_id: &str,
        reply: UpdateJobExecutionResponse,
        out: &mut Out,
    ) {
        if !self.claim_reply(Slot::Update, reply.client_token.as_deref(), out) {
            return;
        }
        let Some(sent) = self.state.update.take() else {
            return;
        };
        let Some(job) = self
            .state
            .job
            .as_mut()
            .filter(|job| job.key.job_id == job_id)
        else {
            return;
        };
        job.version = reply
            .execution_state
            .map(|state| state.version_number)
            .unwrap_or(job.version + 1);
        out.log(
            LogLevel::Debug,
            Some(job_id),
            format!(
                "status {} accepted (version now {})",
                sent.body.status, job.version
            ),
        );
        if sent.body.is_terminal() {
            self.terminal_delivered(out);
        }
    }

    fn on_update_rejected(&mut self, job_id: &str, reply: ErrorResponse, out: &mut Out) {
        if !self.claim_reply(Slot::Update, reply.client_token.as_deref(), out) {
            return;
        }
        let Some(job) = self
            .state
            .job
            .as_mut()
            .filter(|job| job.key.job_id == job_id)
        else {
            self.state.update = None;
            return;
        };
        let observed = reply.execution_state.as_ref().map(|s| s.status);
        match reply.code {
            code if code.is_retryable() => self.back_off(Slot::Update, out),
            ErrorCode::VersionMismatch => match reply.execution_state {
                // A mismatch that names the version we sent cannot be fixed by resending at
                // once; slow down rather than spin.
                Some(state) if state.status.is_pending() && state.version_number == job.version => {
                    self.back_off(Slot::Update, out)
                }
                Some(state) if state.status.is_pending() => {
                    out.log(
                        LogLevel::Info,
                        Some(job_id),
                        format!(
                            "version mismatch: the service is at version {}, we expected {}; resending",
                            state.version_number, job.version
                        ),
                    );
                    job.version = state.version_number;
                    self.retry(Slot::Update);
                }
                Some(state) => self.execution_gone(
                    Some(state.status),
                    "update rejected (VersionMismatch)",
                    out,
                ),
                None => {
                    // No version to reconcile with: hold updates and ask the service.
                    job.awaiting_version = true;
                    let sent = self.state.update.take();
                    if let (Some(sent), Some(job)) = (sent, self.state.job.as_mut()) {
                        if !job.outbox.supersedes(&sent.body) {
                            job.outbox.push(sent.body);
                        }
                    }
                    self.confirm("update rejected with VersionMismatch and no state", out);
                }
            },
            ErrorCode::InvalidStateTransition
            | ErrorCode::TerminalStateReached
            | ErrorCode::ResourceNotFound => {
                self.execution_gone(observed, &format!("update rejected ({})", reply.code), out);
            }
            code => {
                let Some(sent) = self.state.update.take() else {
                    return;
                };
                out.log(
                    LogLevel::Error,
                    Some(job_id),
                    format!(
                        "the service refused status {} ({code}: {}); dropping it",
                        sent.body.status, reply.message
                    ),
                );
                // A refused terminal status cannot be fixed by resending it; the job is
                // over locally either way, so move on instead of getting stuck.
                if sent.body.is_terminal() {
                    self.clear_job(out);
                }
            }
        }
    }

    fn on_describe_accepted(
        &mut self,
        job_id: &str,
        reply: DescribeJobExecutionResponse,
        out: &mut Out,
    ) {
        if !self.claim_reply(Slot::Describe, reply.client_token.as_deref(), out) {
            return;
        }
        let Some(asked) = self.state.describe.take() else {
            return;
        };
        let Some(job) = self.state.job.as_mut().filter(|job| job.key == asked.body) else {
            return;
        };
        let update_idle = self.state.update.is_none();
        match reply.execution {
            Some(execution)
                if execution.execution_number == job.key.execution_number
                    && execution.status == JobExecutionStatus::InProgress =>
            {
                out.log(
                    LogLevel::Debug,
                    Some(job_id),
                    format!(
                        "job {job_id} is still ours (version {})",
                        execution.version_number
                    ),
                );
                if update_idle || job.awaiting_version {
                    job.version = execution.version_number;
                }
                job.awaiting_version = false;
                self.state.unconfirmed = false;
            }
            Some(execution) if execution.execution_number != job.key.execution_number => self
                .execution_gone(
                    None,
                    &format!(
                        "the service now has execution {} of it",
                        execution.execution_number
                    ),
                    out,
                ),
            Some(execution) => self.execution_gone(Some(execution.status), "describe", out),
            None => self.execution_gone(None, "the service has no such execution", out),
        }
    }

    fn on_describe_rejected(&mut self, job_id: &str, reply: ErrorResponse, out: &mut Out) {
        if !self.claim_reply(Slot::Describe, reply.client_token.as_deref(), out) {
            return;
        }
        match reply.code {
            code if code.is_retryable() => self.back_off(Slot::Describe, out),
            ErrorCode::TerminalStateReached | ErrorCode::ResourceNotFound => {
                self.state.describe = None;
                self.execution_gone(None, &format!("describe rejected ({})", reply.code), out);
            }
            code => {
                self.state.describe = None;
                out.log(
                    LogLevel::Warn,
                    Some(job_id),
                    format!("describe rejected ({code}: {})", reply.message),
                );
                if let Some(job) = &mut self.state.job {
                    job.awaiting_version = false;
                }
            }
        }
    }

    fn on_notify_next(&mut self, event: NextJobExecutionChangedEvent, out: &mut Out) {
        let current = self.state.job.as_ref().map(|job| job.key.clone());
        match (current, event.execution) {
            (None, Some(execution)) => {
                let key = ExecKey::of(&execution);
                if execution.status.is_pending() && !self.state.recent.contains(&key) {
                    self.state.work_hinted = true;
                }
            }
            (None, None) => {}
            (Some(current), Some(execution)) if ExecKey::of(&execution) == current => {}
            // Once our terminal status is out, the next job (or none) showing up is what
            // its application looks like; the status reply decides how the job ends.
            (Some(_), _) if self.current_finished() => {}
            (Some(_), Some(execution)) => self.confirm(
                &format!("notify-next names another job, {}", execution.job_id),
                out,
            ),
            (Some(_), None) => self.confirm("notify-next shows nothing pending", out),
        }
    }

    fn on_notify(&mut self, event: JobExecutionsChangedEvent, out: &mut Out) {
        let mut listed = event
            .jobs
            .iter()
            .filter(|(status, _)| status.is_pending())
            .flat_map(|(_, summaries)| summaries.iter())
            .map(|s| ExecKey {
                job_id: s.job_id.clone(),
                execution_number: s.execution_number,
            });
        match self
            .state
            .job
            .as_ref()
            .map(|job| (job.key.clone(), &job.run))
        {
            None => {
                if listed.any(|key| !self.state.recent.contains(&key)) {
                    self.state.work_hinted = true;
                }
            }
            Some((_, JobRun::Revoked | JobRun::Finished)) => {}
            Some((current, _)) => {
                if !listed.any(|key| key == current) {
                    self.confirm("notify no longer lists it", out);
                }
            }
        }
    }
}

fn decode<T: DeserializeOwned>(topic: &str, payload: &[u8], out: &mut Out) -> Option<T> {
    match serde_json::from_slice(payload) {
        Ok(value) => Some(value),
        Err(err) => {
            out.log(
                LogLevel::Warn,
                None,
                format!("ignoring undecodable message on {topic}: {err}"),
            );
            None
        }
    }
}
