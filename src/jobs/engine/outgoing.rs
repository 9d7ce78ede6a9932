//! Outgoing requests: when each slot's request is (re)sent, the payloads, retry timers and
//! backoff. `pump_update` is the one place an UpdateJobExecution is built, so a durable
//! outbox (issue 4) hooks in here.

use std::time::Duration;

use serde::Serialize;

use super::{Action, Engine, LogLevel, Out, Request, RequestState, Slot, TimerKind};
use crate::jobs::topics;
use crate::jobs::wire::{
    DescribeJobExecutionRequest, StartNextPendingJobExecutionRequest, UpdateJobExecutionRequest,
};

impl Engine {
    /// Puts a slot's request back to be sent again (with a new token) by `pump`.
    pub(super) fn retry(&mut self, slot: Slot) {
        match slot {
            Slot::StartNext => {
                if let Some(req) = &mut self.state.start_next {
                    req.state = RequestState::Unsent;
                }
            }
            Slot::Describe => {
                if let Some(req) = &mut self.state.describe {
                    req.state = RequestState::Unsent;
                }
            }
            Slot::Update => {
                let superseded = match (&self.state.update, &self.state.job) {
                    (Some(req), Some(job)) => job.outbox.supersedes(&req.body),
                    _ => false,
                };
                if superseded {
                    self.state.update = None;
                } else if let Some(req) = &mut self.state.update {
                    req.state = RequestState::Unsent;
                }
            }
        }
    }

    /// Sends whatever is due, in protocol order: status updates (the outbox is flushed
    /// before new work is taken), confirmations, then start-next.
    pub(super) fn pump(&mut self, out: &mut Out) {
        if !self.state.connected {
            return;
        }
        self.pump_update(out);
        self.pump_describe(out);
        self.pump_start_next(out);
    }

    /// The one place an UpdateJobExecution is published.
    pub(super) fn pump_update(&mut self, out: &mut Out) {
        if !self.state.connected {
            return;
        }
        let progress_allowed = !self.state.timers.is_armed(TimerKind::ProgressCooldown);
        let Some(job) = &mut self.state.job else {
            return;
        };
        if !job.accepts_updates() || job.awaiting_version {
            return;
        }
        // An unsent progress update is pointless once a newer status waits behind it.
        if self.state.update.as_ref().is_some_and(|req| {
            req.state == RequestState::Unsent && job.outbox.supersedes(&req.body)
        }) {
            self.state.update = None;
        }
        if self.state.update.is_none() {
            match job.outbox.take_next(progress_allowed) {
                Some(update) => self.state.update = Some(Request::new(update)),
                None => return,
            }
        }
        let Some(req) = &mut self.state.update else {
            return;
        };
        if req.state != RequestState::Unsent {
            return;
        }
        let token = self.state.entropy.token();
        let body = UpdateJobExecutionRequest {
            status: req.body.status,
            status_details: Some(req.body.details.clone()),
            expected_version: Some(job.version),
            execution_number: Some(job.key.execution_number),
            include_job_execution_state: Some(true),
            include_job_document: None,
            step_timeout_in_minutes: req.body.step_timeout_minutes,
            client_token: Some(token.clone()),
        };
        let topic = topics::update(&self.cfg.thing_name, &job.key.job_id);
        let is_progress = !req.body.is_terminal();
        req.state = RequestState::InFlight { token };
        publish(out, topic, &body);
        self.arm_timer(TimerKind::Reply(Slot::Update), self.cfg.reply_timeout, out);
        if is_progress {
            self.arm_timer(TimerKind::ProgressCooldown, self.cfg.progress_interval, out);
        } else if self.state.start_next.is_none() {
            // Pipelining: ask for the next job right behind the terminal status instead of
            // after its reply, saving a round trip per job. The service may answer it
            // before applying the status (requests on different topics are not ordered),
            // i.e. with this very execution: `on_start_next_accepted` recognises that.
            self.state.start_next = Some(Request::new(None));
        }
    }

    fn pump_describe(&mut self, out: &mut Out) {
        let Some(req) = &mut self.state.describe else {
            return;
        };
        if req.state != RequestState::Unsent {
            return;
        }
        let token = self.state.entropy.token();
        let body = DescribeJobExecutionRequest {
            execution_number: Some(req.body.execution_number),
            include_job_document: Some(false),
            client_token: Some(token.clone()),
        };
        let topic = topics::describe(&self.cfg.thing_name, &req.body.job_id);
        req.state = RequestState::InFlight { token };
        publish(out, topic, &body);
        self.arm_timer(
            TimerKind::Reply(Slot::Describe),
            self.cfg.reply_timeout,
            out,
        );
    }

    fn pump_start_next(&mut self, out: &mut Out) {
        let wanted = match &self.state.job {
            None => self.state.resync || self.state.work_hinted,
            Some(job) => self.state.resync && !job.is_revoked(),
        };
        if self.state.start_next.is_none() && wanted {
            self.state.start_next = Some(Request::new(None));
        }
        let current = self.state.job.as_ref().map(|job| job.key.clone());
        let Some(req) = &mut self.state.start_next else {
            return;
        };
        if req.state != RequestState::Unsent {
            return;
        }
        req.body = current;
        self.state.resync = false;
        self.state.work_hinted = false;
        let token = self.state.entropy.token();
        let body = StartNextPendingJobExecutionRequest {
            status_details: None,
            step_timeout_in_minutes: self.cfg.step_timeout(),
            client_token: Some(token.clone()),
        };
        req.state = RequestState::InFlight { token };
        publish(out, topics::start_next(&self.cfg.thing_name), &body);
        self.cancel_timer(TimerKind::Poll, out);
        self.arm_timer(
            TimerKind::Reply(Slot::StartNext),
            self.cfg.reply_timeout,
            out,
        );
    }

    pub(super) fn arm_timer(&mut self, kind: TimerKind, after: Duration, out: &mut Out) {
        let id = self.state.timers.arm(kind);
        out.push(Action::ArmTimer { id, after });
    }

    pub(super) fn cancel_timer(&mut self, kind: TimerKind, out: &mut Out) {
        if let Some(id) = self.state.timers.disarm(kind) {
            out.push(Action::CancelTimer(id));
        }
    }

    /// After a retryable rejection: back off before resending the slot's request.
    pub(super) fn back_off(&mut self, slot: Slot, out: &mut Out) {
        let jitter = self.state.entropy.jitter();
        let attempt = match slot {
            Slot::StartNext => self.state.start_next.as_mut().map(|r| &mut r.attempt),
            Slot::Update => self.state.update.as_mut().map(|r| &mut r.attempt),
            Slot::Describe => self.state.describe.as_mut().map(|r| &mut r.attempt),
        };
        let Some(attempt) = attempt else {
            return;
        };
        *attempt = attempt.saturating_add(1);
        let delay = self.cfg.backoff.delay(*attempt, jitter);
        match slot {
            Slot::StartNext => set_backing_off(&mut self.state.start_next),
            Slot::Update => set_backing_off(&mut self.state.update),
            Slot::Describe => set_backing_off(&mut self.state.describe),
        }
        out.log(
            LogLevel::Warn,
            self.job_id(),
            format!(
                "{} will be retried in {} ms",
                slot_name(slot),
                delay.as_millis()
            ),
        );
        self.arm_timer(TimerKind::Backoff(slot), delay, out);
    }
}

fn set_backing_off<T>(req: &mut Option<Request<T>>) {
    if let Some(req) = req {
        req.state = RequestState::BackingOff;
    }
}

pub(super) fn slot_name(slot: Slot) -> &'static str {
    match slot {
        Slot::StartNext => "start-next",
        Slot::Update => "the status update",
        Slot::Describe => "describe",
    }
}

fn publish<T: Serialize>(out: &mut Out, topic: String, body: &T) {
    match serde_json::to_vec(body) {
        Ok(payload) => out.push(Action::Publish { topic, payload }),
        // Our own request types always serialise; say so loudly if that ever changes.
        Err(err) => out.log(
            LogLevel::Error,
            None,
            format!("cannot encode request for {topic}: {err}"),
        ),
    }
}
