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
mod outgoing;
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
use crate::jobs::wire::JobExecution;
use outgoing::slot_name;

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
    /// Carries the execution that was current when it was sent (if any): an answer
    /// naming that execution may predate its end and is not taken as the service's last
    /// word once the job is over. (Journals written with `()` here read back as `None`.)
    pub start_next: Option<Request<Option<ExecKey>>>,
    pub describe: Option<Request<ExecKey>>,
    pub update: Option<Request<StatusUpdate>>,
    pub job: Option<ActiveJob>,
    /// Executions already handled, newest last: deliveries of these are duplicates.
    pub recent: VecDeque<ExecKey>,
    /// A start-next is owed because we (re)connected.
    pub resync: bool,
    /// A notification suggested there is work; ask start-next when idle.
    pub work_hinted: bool,
    /// Restored with a job whose step was interrupted: the service has not yet confirmed
    /// (start-next or describe) that the execution is still ours and IN_PROGRESS, so the
    /// step must not run again yet.
    #[serde(default)]
    pub unconfirmed: bool,
    /// An execution a pipelined start-next handed us while the current job's terminal
    /// status was still unanswered: the service has already started it, so it runs as
    /// soon as the current job is over. Not journalled: after a restart the resync
    /// start-next returns it again (it is IN_PROGRESS for us).
    #[serde(skip)]
    pub parked: Option<JobExecution>,
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
            unconfirmed: false,
            parked: None,
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
        state.unconfirmed = false;
        state.parked = None;
        let plan = match &mut state.job {
            Some(job) => {
                if let JobRun::Running { step_running, .. } = &mut job.run {
                    *step_running = false;
                    state.unconfirmed = true;
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
            self.rearm_heartbeat(&mut out);
            self.advance(crate::jobs::runner::Next::Run(step), &mut out);
        }
        self.pump(&mut out);
        out.actions
    }

    /// After [`Engine::restore`]: ends the interrupted step with `outcome` instead of
    /// running it again (a reboot step judged by the boot id, a step that restarted the
    /// daemon, a step stopped by a reboot that did not happen). The job then goes on as
    /// if the step had reported `outcome`.
    pub fn finish_interrupted_step(&mut self, outcome: StepOutcome) -> Vec<Action> {
        match self.state.job.as_mut().map(|job| &mut job.run) {
            Some(JobRun::Running { step_running, .. }) => *step_running = true,
            Some(JobRun::Revoked) => {}
            _ => return Vec::new(),
        }
        let mut out = Out::default();
        self.rearm_heartbeat(&mut out);
        out.actions
            .extend(self.handle(Input::StepFinished(outcome)));
        out.actions
    }

    /// Timers do not survive a restart: a resumed job's heartbeats start again.
    fn rearm_heartbeat(&mut self, out: &mut Out) {
        let running = matches!(
            self.state.job.as_ref().map(|job| &job.run),
            Some(JobRun::Running { .. })
        );
        if let (true, Some(interval)) = (running, self.cfg.heartbeat_interval()) {
            self.arm_timer(TimerKind::Heartbeat, interval, out);
        }
    }

    /// True while a restored job waits for the service to confirm it is still ours.
    pub fn awaiting_confirmation(&self) -> bool {
        self.state.unconfirmed && self.state.job.is_some()
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
        self.start_parked(&mut out);
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
            if let Some(RequestState::InFlight { .. }) = in_flight {
                self.cancel_timer(TimerKind::Reply(slot), out);
                // Resend after reconnecting; a progress update already superseded by a
                // newer status is dropped instead.
                self.retry(slot);
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

    pub(super) fn job_id(&self) -> Option<&str> {
        self.state.job.as_ref().map(|job| job.key.job_id.as_str())
    }
}
