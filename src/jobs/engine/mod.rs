//! The Jobs engine: a sans-I/O state machine that speaks the AWS IoT Jobs device protocol
//! for one thing and runs one job at a time through the [`runner`](crate::jobs::runner).
//!
//! Inputs ([`Input`]): connected, disconnected, a message on a subscribed topic, a timer
//! firing, a step finishing. Outputs ([`Action`]): subscribe, publish, start or kill a step,
//! arm or cancel a timer, log. The engine owns no clock, socket or process; its task
//! (`jobs::task`) performs the actions and feeds results back. Randomness (client tokens,
//! jitter) comes from a seed, so every transition is reproducible in unit tests.
//!
//! Protocol rules it keeps (issue 3, reference iot-jobs-protocol.md §9.1):
//! - every `Connected`: subscribe, then resynchronise with start-next;
//! - one request of each kind in flight, each with a fresh client token, replies matched on
//!   it; no reply in `reply_timeout` → resend with a new token; `RequestThrottled` or
//!   `InternalError` → exponential backoff with jitter;
//! - status updates serialised, each with `expectedVersion`; `VersionMismatch` reconciled
//!   from the rejection's `executionState`;
//! - a running job the service no longer considers ours (terminal, deleted, replaced) is
//!   revoked: its step is killed and nothing more is sent for it.
//!
//! All state lives in [`EngineState`] (serde), so the durability layer can persist it; every
//! status publish goes through `pump_update`, the one place an UpdateJobExecution is built.

mod inbound;
mod job;
mod outbox;
mod requests;
mod timers;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::jobs::document::HostFacts;
use crate::jobs::document::JobPlan;
use crate::jobs::runner::{StepOutcome, StepRequest};
use crate::jobs::topics;
use crate::jobs::wire::{
    DescribeJobExecutionRequest, StartNextPendingJobExecutionRequest, UpdateJobExecutionRequest,
};

pub use job::{ActiveJob, ExecKey, JobRun};
pub use outbox::{Outbox, StatusUpdate};
pub use requests::{Backoff, Entropy, Request, RequestState};
pub use timers::{Slot, TimerId, TimerKind, Timers};

/// How many finished executions are remembered to drop duplicate deliveries.
const RECENT_EXECUTIONS: usize = 32;

/// Fixed parameters of an engine.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    pub thing_name: String,
    /// `stepTimeoutInMinutes` sent with start-next and IN_PROGRESS updates; 0 = none.
    pub step_timeout_minutes: u64,
    /// Resend a request with a new token when no reply came within this time.
    pub reply_timeout: Duration,
    /// Retry delays after `RequestThrottled`/`InternalError`.
    pub backoff: Backoff,
    /// Minimum spacing of IN_PROGRESS progress updates (terminal updates never wait).
    pub progress_interval: Duration,
    /// While idle, ask start-next this often in case a notification was lost.
    pub poll_interval: Duration,
    /// Facts job document `conditions` are evaluated against.
    pub host: HostFacts,
    /// Seed of the token and jitter generator.
    pub seed: u64,
}

impl EngineConfig {
    /// The defaults of the daemon for `thing_name`.
    pub fn new(thing_name: impl Into<String>, host: HostFacts, seed: u64) -> Self {
        EngineConfig {
            thing_name: thing_name.into(),
            step_timeout_minutes: 0,
            reply_timeout: Duration::from_secs(10),
            backoff: Backoff {
                base: Duration::from_secs(2),
                cap: Duration::from_secs(300),
            },
            progress_interval: Duration::from_secs(2),
            poll_interval: Duration::from_secs(15 * 60),
            host,
            seed,
        }
    }

    fn step_timeout(&self) -> Option<i64> {
        (self.step_timeout_minutes > 0).then(|| self.step_timeout_minutes.min(10_080) as i64)
    }

    /// IN_PROGRESS heartbeats at half the step timeout keep the service's step timer from
    /// expiring while a long step is still running.
    fn heartbeat_interval(&self) -> Option<Duration> {
        self.step_timeout()
            .map(|minutes| Duration::from_secs((minutes as u64 * 60 / 2).max(30)))
    }
}

/// What happened, from the engine's point of view.
#[derive(Debug, Clone)]
pub enum Input {
    /// The MQTT session is up (first connect or reconnect).
    Connected,
    Disconnected,
    /// A message arrived on a subscribed topic.
    Message {
        topic: String,
        payload: Vec<u8>,
    },
    TimerFired(TimerId),
    /// The step started by the last `StartStep` ended (also after `KillStep`).
    StepFinished(StepOutcome),
}

/// Severity of a [`LogEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// A line for the daemon's log, tagged with the job it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    pub level: LogLevel,
    pub job_id: Option<String>,
    pub message: String,
}

/// What the engine asks its task to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Subscribe to these filters (QoS 1) before performing the next action.
    Subscribe(Vec<String>),
    /// Publish at QoS 1.
    Publish {
        topic: String,
        payload: Vec<u8>,
    },
    /// Run one step in the sandbox; report `StepFinished` when it ends.
    StartStep(StepStart),
    /// Stop the running step's whole process group (it still reports `StepFinished`).
    KillStep {
        reason: String,
    },
    ArmTimer {
        id: TimerId,
        after: Duration,
    },
    CancelTimer(TimerId),
    Log(LogEvent),
}

/// A step to run, with the execution it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct StepStart {
    pub job_id: String,
    pub execution_number: i64,
    pub step: StepRequest,
}

/// Everything the engine knows; serialisable so it can be journalled.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineState {
    pub connected: bool,
    pub entropy: Entropy,
    pub timers: Timers,
    pub start_next: Option<Request<()>>,
    pub describe: Option<Request<ExecKey>>,
    pub update: Option<Request<StatusUpdate>>,
    pub job: Option<ActiveJob>,
    /// Executions already handled, newest last: deliveries of these are duplicates.
    pub recent: VecDeque<ExecKey>,
    /// A start-next is owed because we (re)connected.
    pub resync: bool,
    /// A notification suggested there is work; ask start-next when idle.
    pub work_hinted: bool,
}

/// The engine: configuration, state and the parsed plan of the current job.
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    state: EngineState,
    /// Parsed from `state.job.document`; not serialised (re-parsed on restore).
    plan: Option<JobPlan>,
}

/// Collects the actions of one transition.
#[derive(Debug, Default)]
pub(crate) struct Out {
    actions: Vec<Action>,
}

impl Out {
    fn push(&mut self, action: Action) {
        self.actions.push(action);
    }

    fn log(&mut self, level: LogLevel, job_id: Option<&str>, message: impl Into<String>) {
        self.actions.push(Action::Log(LogEvent {
            level,
            job_id: job_id.map(str::to_owned),
            message: message.into(),
        }));
    }
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Self {
        let state = EngineState {
            connected: false,
            entropy: Entropy::new(cfg.seed),
            timers: Timers::default(),
            start_next: None,
            describe: None,
            update: None,
            job: None,
            recent: VecDeque::new(),
            resync: false,
            work_hinted: false,
        };
        Engine {
            cfg,
            state,
            plan: None,
        }
    }

    /// Rebuilds an engine from a journalled [`EngineState`] (issue 4). Transient parts are
    /// reset to what is true after a restart: disconnected, no timer armed, every request
    /// unsent (its reply will never come), no step running. The job's plan is re-derived
    /// from its stored document. Call [`Engine::resume_step`] to run the interrupted step
    /// again once the service confirmed the job is still ours.
    pub fn restore(cfg: EngineConfig, mut state: EngineState) -> Self {
        state.connected = false;
        state.timers.clear();
        if let Some(req) = &mut state.start_next {
            req.state = RequestState::Unsent;
        }
        if let Some(req) = &mut state.update {
            req.state = RequestState::Unsent;
        }
        if let Some(req) = &mut state.describe {
            req.state = RequestState::Unsent;
        }
        let plan = match &mut state.job {
            Some(job) => {
                if let JobRun::Running { step_running, .. } = &mut job.run {
                    *step_running = false;
                }
                crate::jobs::runner::prepare(&job.document, &cfg.host).ok()
            }
            None => None,
        };
        Engine { cfg, state, plan }
    }

    /// After [`Engine::restore`]: starts the step that was running when the state was
    /// saved (completed steps are not run again). Nothing happens unless a job is running
    /// with no step in progress.
    pub fn resume_step(&mut self) -> Vec<Action> {
        let mut out = Out::default();
        let (Some(job), Some(plan)) = (&mut self.state.job, &self.plan) else {
            return out.actions;
        };
        let JobRun::Running {
            runner,
            step_running: false,
        } = &job.run
        else {
            return out.actions;
        };
        if let Some(step) = crate::jobs::runner::current(plan, runner) {
            self.advance(crate::jobs::runner::Next::Run(step), &mut out);
        }
        self.pump(&mut out);
        out.actions
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// The engine's state, e.g. to journal it.
    pub fn state(&self) -> &EngineState {
        &self.state
    }

    /// The current job's id and execution number, if any.
    pub fn current_job(&self) -> Option<&ExecKey> {
        self.state.job.as_ref().map(|job| &job.key)
    }

    /// Feeds one input; returns the actions to perform, in order.
    pub fn handle(&mut self, input: Input) -> Vec<Action> {
        let mut out = Out::default();
        match input {
            Input::Connected => self.on_connected(&mut out),
            Input::Disconnected => self.on_disconnected(&mut out),
            Input::Message { topic, payload } => self.on_message(&topic, &payload, &mut out),
            Input::TimerFired(id) => self.on_timer(id, &mut out),
            Input::StepFinished(outcome) => self.on_step_finished(outcome, &mut out),
        }
        self.pump(&mut out);
        out.actions
    }

    fn on_connected(&mut self, out: &mut Out) {
        self.state.connected = true;
        self.state.resync = true;
        out.push(Action::Subscribe(topics::device_filters(
            &self.cfg.thing_name,
        )));
    }

    fn on_disconnected(&mut self, out: &mut Out) {
        self.state.connected = false;
        // Replies to in-flight requests may never come; resend them all after reconnecting.
        for slot in [Slot::StartNext, Slot::Update, Slot::Describe] {
            let in_flight = match slot {
                Slot::StartNext => self.state.start_next.as_mut().map(|r| &mut r.state),
                Slot::Update => self.state.update.as_mut().map(|r| &mut r.state),
                Slot::Describe => self.state.describe.as_mut().map(|r| &mut r.state),
            };
            if let Some(state @ RequestState::InFlight { .. }) = in_flight {
                *state = RequestState::Unsent;
                self.cancel_timer(TimerKind::Reply(slot), out);
            }
        }
    }

    fn on_timer(&mut self, id: TimerId, out: &mut Out) {
        if !self.state.timers.fire(id) {
            return;
        }
        match id.kind {
            TimerKind::Reply(slot) => {
                out.log(
                    LogLevel::Warn,
                    self.job_id(),
                    format!(
                        "no reply to {} within {} s; resending with a new client token",
                        slot_name(slot),
                        self.cfg.reply_timeout.as_secs()
                    ),
                );
                self.retry(slot);
            }
            TimerKind::Backoff(slot) => self.retry(slot),
            TimerKind::Heartbeat => self.heartbeat(out),
            TimerKind::ProgressCooldown => {}
            TimerKind::Poll => {
                if self.state.job.is_none() {
                    self.state.work_hinted = true;
                }
            }
        }
    }

    /// Puts a slot's request back to be sent again (with a new token) by `pump`.
    fn retry(&mut self, slot: Slot) {
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
    fn pump(&mut self, out: &mut Out) {
        if !self.state.connected {
            return;
        }
        self.pump_update(out);
        self.pump_describe(out);
        self.pump_start_next(out);
    }

    /// The one place an UpdateJobExecution is published.
    fn pump_update(&mut self, out: &mut Out) {
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
            self.state.start_next = Some(Request::new(()));
        }
        let Some(req) = &mut self.state.start_next else {
            return;
        };
        if req.state != RequestState::Unsent {
            return;
        }
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

    fn arm_timer(&mut self, kind: TimerKind, after: Duration, out: &mut Out) {
        let id = self.state.timers.arm(kind);
        out.push(Action::ArmTimer { id, after });
    }

    fn cancel_timer(&mut self, kind: TimerKind, out: &mut Out) {
        if let Some(id) = self.state.timers.disarm(kind) {
            out.push(Action::CancelTimer(id));
        }
    }

    /// After a retryable rejection: back off before resending the slot's request.
    fn back_off(&mut self, slot: Slot, out: &mut Out) {
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

    fn job_id(&self) -> Option<&str> {
        self.state.job.as_ref().map(|job| job.key.job_id.as_str())
    }
}

fn set_backing_off<T>(req: &mut Option<Request<T>>) {
    if let Some(req) = req {
        req.state = RequestState::BackingOff;
    }
}

fn slot_name(slot: Slot) -> &'static str {
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
