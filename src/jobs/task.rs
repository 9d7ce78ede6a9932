//! The jobs task: the thin tokio loop around the sans-I/O [`Engine`].
//!
//! It owns the engine, its timers and the running step. It feeds the engine connection
//! events and messages from the [`MqttHandle`], timer firings and step outcomes, and
//! performs the engine's actions: subscribe and publish through the handle, run steps
//! through the [`Sandbox`] (the only place processes are spawned), arm timers, log.
//! It makes no protocol decision of its own.
//!
//! Durability (issue 4, see `jobs::durable`): before performing a transition's side
//! effects it journals the engine's state; at start it rebuilds the engine from the
//! journal and, once the service confirmed the job is still ours, re-runs or completes
//! the interrupted step. A reboot step that exits 0 is held (nothing is reported) until
//! the system goes down or `reboot_timeout` passes. At shutdown the running step is
//! stopped or allowed to finish (`jobs.on_shutdown`); either way the journal says where
//! the next start resumes.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::ShutdownPolicy;
use crate::jobs::durable::Durability;
use crate::jobs::engine::JobRun;
use crate::jobs::engine::{
    Action, Engine, EngineConfig, Input, LogEvent, LogLevel, StepStart, TimerId, TimerKind,
};
use crate::jobs::resume::Resume;
use crate::jobs::runner;
use crate::mqtt::{Message, MqttError, MqttEvent, MqttHandle};
use crate::sandbox::{Sandbox, SandboxConfig, StepOutcome, Termination};

/// Test-only failpoints: `IOTJOBS_TEST_FAILPOINT=<name>` makes the daemon kill itself
/// (SIGKILL, as `kill -9`) at that boundary, so tests can crash it deterministically.
/// Not an `IOTJOBSD_` variable: those are configuration keys.
pub const FAILPOINT_ENV: &str = "IOTJOBS_TEST_FAILPOINT";

/// How long shutdown waits for a stopped step to report (the sandbox's own SIGTERM →
/// SIGKILL grace is shorter than this in any sane configuration).
const STEP_STOP_WAIT: Duration = Duration::from_secs(60);
/// Upper bound on waiting for the SUBACKs of a subscription refresh.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors that end the jobs task.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("cannot subscribe to the Jobs topics: {0}")]
    Subscribe(#[source] MqttError),
    #[error("the MQTT connection task has stopped")]
    MqttGone,
}

/// Settings of the task beyond the engine's own.
#[derive(Debug, Clone)]
pub struct TaskConfig {
    pub engine: EngineConfig,
    /// Step timeout when a step sets no `timeoutSeconds`.
    pub default_step_timeout: Duration,
    /// Where the journal lives.
    pub state_dir: PathBuf,
    pub boot_id_file: PathBuf,
    /// What SIGTERM does to a running step, and how long `Finish` waits for it.
    pub on_shutdown: ShutdownPolicy,
    pub stop_timeout: Duration,
    /// How long a reboot step that exited 0 waits for the system to go down.
    pub reboot_timeout: Duration,
}

/// Inputs produced by the task's helpers (timers, the step runner).
enum Internal {
    Timer(TimerId),
    Step(StepOutcome),
}

/// The running step.
struct RunningStep {
    cancel: CancellationToken,
    handle: JoinHandle<()>,
}

/// The jobs task's resources.
pub struct JobsTask {
    engine: Engine,
    cfg: TaskConfig,
    mqtt: MqttHandle,
    sandbox: Sandbox,
    events: broadcast::Receiver<MqttEvent>,
    internal_tx: mpsc::Sender<Internal>,
    internal_rx: mpsc::Receiver<Internal>,
    messages_tx: mpsc::Sender<Message>,
    messages_rx: mpsc::Receiver<Message>,
    subscribed: BTreeSet<String>,
    forwarders: Vec<JoinHandle<()>>,
    timers: HashMap<TimerKind, JoinHandle<()>>,
    /// Reply timers fired since the last message from the broker: the first refreshes
    /// the subscriptions, the second reconnects.
    unanswered: u32,
    step: Option<RunningStep>,
    durable: Durability,
    /// What to do with the step a restart interrupted, once the service confirms.
    resume: Resume,
    /// A reboot step exited 0: the deadline for the system to go down.
    reboot_wait: Option<Pin<Box<tokio::time::Sleep>>>,
    /// SIGTERM arrived: no new step starts.
    shutting_down: bool,
    failpoint: Option<String>,
}

impl JobsTask {
    /// `events` must have been subscribed before the connection task first ran, so the
    /// first `Connected` is not missed.
    pub fn new(
        cfg: TaskConfig,
        mqtt: MqttHandle,
        events: broadcast::Receiver<MqttEvent>,
        sandbox: Sandbox,
    ) -> Self {
        let (internal_tx, internal_rx) = mpsc::channel(16);
        let (messages_tx, messages_rx) = mpsc::channel(64);
        let mut durable = Durability::open(&cfg.state_dir, &cfg.boot_id_file);
        let (engine, resume) = durable.restore(cfg.engine.clone());
        JobsTask {
            engine,
            cfg,
            mqtt,
            sandbox,
            events,
            internal_tx,
            internal_rx,
            messages_tx,
            messages_rx,
            subscribed: BTreeSet::new(),
            forwarders: Vec::new(),
            timers: HashMap::new(),
            unanswered: 0,
            step: None,
            durable,
            resume,
            reboot_wait: None,
            shutting_down: false,
            failpoint: std::env::var(FAILPOINT_ENV).ok().filter(|f| !f.is_empty()),
        }
    }

    /// Runs until `shutdown` is cancelled (then stops the running step) or the MQTT task
    /// goes away.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), TaskError> {
        // Register the filters before looking at the connection: the connection task
        // subscribes registered filters before announcing Connected, so no reply to a
        // request sent after that can be missed.
        let filters = crate::jobs::topics::device_filters(&self.cfg.engine.thing_name);
        self.subscribe(filters).await?;
        if self.resume == Resume::Revoked {
            self.resume = Resume::Nothing;
            let before = self.current_job_id();
            let actions = self
                .engine
                .finish_interrupted_step(decided("was stopped with its job revoked"));
            self.apply(before, actions, false).await?;
        }
        if self.mqtt.is_connected() {
            self.feed(Input::Connected).await?;
        }
        let mut stop_deadline: Option<Pin<Box<tokio::time::Sleep>>> = None;
        let result = loop {
            if self.shutting_down && self.step.is_none() {
                break Ok(());
            }
            // Every branch is cancel-safe: a message not taken stays in its channel.
            let input = tokio::select! {
                _ = shutdown.cancelled(), if !self.shutting_down => {
                    self.shutting_down = true;
                    if let (Some(_), ShutdownPolicy::Finish) = (&self.step, self.cfg.on_shutdown) {
                        tracing::info!(
                            "shutting down: letting the running step finish (up to {} s)",
                            self.cfg.stop_timeout.as_secs()
                        );
                        stop_deadline = Some(Box::pin(tokio::time::sleep(self.cfg.stop_timeout)));
                        continue;
                    }
                    break Ok(());
                }
                _ = wait(&mut stop_deadline) => {
                    tracing::warn!(
                        "the running step did not finish within {} s of the shutdown; stopping it",
                        self.cfg.stop_timeout.as_secs()
                    );
                    break Ok(());
                }
                _ = wait(&mut self.reboot_wait) => {
                    self.reboot_wait = None;
                    Input::StepFinished(decided(&format!(
                        "requested a reboot but the device did not go down within {} s",
                        self.cfg.reboot_timeout.as_secs()
                    )))
                }
                event = self.events.recv() => match event {
                    Ok(MqttEvent::Connected { .. }) => Input::Connected,
                    Ok(MqttEvent::Disconnected { .. }) => Input::Disconnected,
                    // Events were missed: resynchronise as after a reconnect.
                    Err(broadcast::error::RecvError::Lagged(_)) if self.mqtt.is_connected() => {
                        Input::Connected
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => Input::Disconnected,
                    Err(broadcast::error::RecvError::Closed) => break Err(TaskError::MqttGone),
                },
                Some(message) = self.messages_rx.recv() => {
                    self.unanswered = 0;
                    Input::Message {
                        topic: message.topic,
                        payload: message.payload.to_vec(),
                    }
                }
                Some(internal) = self.internal_rx.recv() => match internal {
                    Internal::Timer(id) => {
                        self.timers.remove(&id.kind);
                        if matches!(id.kind, TimerKind::Reply(_)) {
                            self.unanswered += 1;
                            if self.unanswered >= 2 {
                                // Refreshing did not help: a new connection does.
                                self.unanswered = 0;
                                if self.mqtt.is_connected() {
                                    let _ = self.mqtt.reconnect().await;
                                }
                            } else {
                                self.refresh_subscriptions().await;
                            }
                        }
                        Input::TimerFired(id)
                    }
                    Internal::Step(outcome) => {
                        self.step = None;
                        if self.durable.is_reboot_step() && outcome.succeeded() {
                            self.hold_for_reboot();
                            continue;
                        }
                        Input::StepFinished(outcome)
                    }
                },
            };
            if let Err(err) = self.feed(input).await {
                break Err(err);
            }
        };
        self.stop().await;
        result
    }

    /// A request went unanswered while connected: before it is resent, make sure the
    /// broker still holds our subscriptions (a broker can lose them while the connection
    /// stays up; without this the daemon would resend forever into the void). Bounded:
    /// a broker that does not answer the SUBSCRIBE is the reply timer's problem again.
    async fn refresh_subscriptions(&self) {
        if !self.mqtt.is_connected() {
            return;
        }
        match tokio::time::timeout(REFRESH_TIMEOUT, self.mqtt.refresh_subscriptions()).await {
            Ok(Ok(())) => tracing::info!("subscriptions refreshed after an unanswered request"),
            Ok(Err(err)) => tracing::warn!(error = %err, "cannot refresh the subscriptions"),
            Err(_) => tracing::warn!(
                "no SUBACK within {} s while refreshing the subscriptions",
                REFRESH_TIMEOUT.as_secs()
            ),
        }
    }

    /// Feeds one input to the engine and performs the resulting actions.
    async fn feed(&mut self, input: Input) -> Result<(), TaskError> {
        if self.failpoint_is("after-terminal-published") && self.terminal_acknowledged(&input) {
            die("after-terminal-published");
        }
        let after_step = if let Input::StepFinished(outcome) = &input {
            self.durable.step_finished(outcome);
            true
        } else {
            false
        };
        let before = self.current_job_id();
        let actions = self.engine.handle(input);
        self.apply(before, actions, after_step).await?;
        self.maybe_resume().await
    }

    /// The job the engine holds now (captured before a transition, so that `apply` can
    /// tell that the transition ended it).
    fn current_job_id(&self) -> Option<String> {
        self.engine.current_job().map(|key| key.job_id.clone())
    }

    /// Journals, then performs, one transition's actions. `before` is the job the engine
    /// held before the transition that produced them.
    async fn apply(
        &mut self,
        before: Option<String>,
        actions: Vec<Action>,
        after_step: bool,
    ) -> Result<(), TaskError> {
        self.durable.before(&self.engine, &actions, after_step);
        if after_step && self.failpoint_is("after-step-before-status") {
            die("after-step-before-status");
        }
        for action in actions {
            self.perform(action).await?;
        }
        let after = self.current_job_id();
        if let Some(job_id) = before.filter(|id| after.as_ref() != Some(id)) {
            // The job is over (reported or revoked). Journalled after the actions (the
            // next job's start-next is not held up): a crash before this write only
            // makes the next start resend a status the service already has.
            self.durable.write(&self.engine);
            // Its working directory and markers go too (only its own: with start-next
            // pipelined, the next job may already be running).
            self.durable.clear_self_restart_markers(&job_id);
            if let Err(err) = self.sandbox.remove_job_dir(&job_id) {
                tracing::warn!(job_id = %job_id, error = %err, "cannot remove the job's working directory");
            }
        }
        Ok(())
    }

    /// After a restart: once the service confirmed the job is still ours, re-run or
    /// complete the interrupted step.
    async fn maybe_resume(&mut self) -> Result<(), TaskError> {
        if matches!(self.resume, Resume::Nothing | Resume::Revoked) {
            return Ok(());
        }
        let running = matches!(
            self.engine.state().job.as_ref().map(|j| &j.run),
            Some(JobRun::Running { .. })
        );
        if !running {
            // Revoked or gone meanwhile (cancelled, timed out, deleted): nothing to resume.
            tracing::info!("the interrupted job is no longer ours; nothing to resume");
            self.resume = Resume::Nothing;
            self.durable.remove_self_restart_marker();
            return Ok(());
        }
        if self.engine.awaiting_confirmation() || self.shutting_down {
            return Ok(());
        }
        let before = self.current_job_id();
        let actions = match std::mem::replace(&mut self.resume, Resume::Nothing) {
            Resume::Rerun => self.engine.resume_step(),
            Resume::Finish(outcome) => {
                self.durable.remove_self_restart_marker();
                self.durable.step_finished(&outcome);
                let actions = self.engine.finish_interrupted_step(outcome);
                return self.apply(before, actions, true).await;
            }
            Resume::Nothing | Resume::Revoked => Vec::new(),
        };
        self.apply(before, actions, false).await
    }

    /// A reboot step exited 0: journal that the reboot is requested and report nothing
    /// until the system goes down (or the wait ends).
    fn hold_for_reboot(&mut self) {
        self.durable.reboot_requested();
        self.durable.write(&self.engine);
        tracing::info!(
            "reboot requested; waiting up to {} s for the system to go down (the step completes after the reboot)",
            self.cfg.reboot_timeout.as_secs()
        );
        self.reboot_wait = Some(Box::pin(tokio::time::sleep(self.cfg.reboot_timeout)));
    }

    fn failpoint_is(&self, name: &str) -> bool {
        self.failpoint.as_deref() == Some(name)
    }

    /// True when `input` is the service accepting our terminal status.
    fn terminal_acknowledged(&self, input: &Input) -> bool {
        let Input::Message { topic, .. } = input else {
            return false;
        };
        topic.ends_with("/update/accepted")
            && self
                .engine
                .state()
                .update
                .as_ref()
                .is_some_and(|u| u.body.is_terminal())
    }

    async fn perform(&mut self, action: Action) -> Result<(), TaskError> {
        match action {
            Action::Subscribe(filters) => self.subscribe(filters).await?,
            Action::Publish { topic, payload } => self.publish(topic, payload).await?,
            Action::StartStep(start) => {
                if self.shutting_down {
                    tracing::info!(step = %start.step.label, "shutting down: the next step runs after the restart");
                    self.durable.step_not_started(&self.engine);
                } else {
                    if self.failpoint_is("before-step") {
                        die("before-step");
                    }
                    self.start_step(start);
                }
            }
            Action::KillStep { reason } => {
                if let Some(step) = &self.step {
                    tracing::warn!(%reason, "stopping the running step");
                    step.cancel.cancel();
                } else if self.reboot_wait.take().is_some() {
                    // The reboot step already ended; report it stopped.
                    let _ = self
                        .internal_tx
                        .send(Internal::Step(decided(
                            "was stopped while waiting for the reboot",
                        )))
                        .await;
                }
            }
            Action::ArmTimer { id, after } => {
                if id.kind == TimerKind::Poll {
                    // Armed only when no job is pending: idle until the next one.
                    crate::app::release_free_heap();
                }
                let tx = self.internal_tx.clone();
                let timer = tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    // The loop may be gone at shutdown; nothing to do then.
                    let _ = tx.send(Internal::Timer(id)).await;
                });
                if let Some(old) = self.timers.insert(id.kind, timer) {
                    old.abort();
                }
            }
            Action::CancelTimer(id) => {
                if let Some(timer) = self.timers.remove(&id.kind) {
                    timer.abort();
                }
            }
            Action::Log(event) => log(event),
        }
        Ok(())
    }

    /// Registers the filters not registered yet (the connection task re-subscribes
    /// registered filters on every reconnect by itself).
    async fn subscribe(&mut self, filters: Vec<String>) -> Result<(), TaskError> {
        let new: Vec<String> = filters
            .into_iter()
            .filter(|f| !self.subscribed.contains(f))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let mut subscription = self
            .mqtt
            .subscribe(new.clone())
            .await
            .map_err(TaskError::Subscribe)?;
        self.subscribed.extend(new);
        let tx = self.messages_tx.clone();
        self.forwarders.push(tokio::spawn(async move {
            while let Some(message) = subscription.recv().await {
                if tx.send(message).await.is_err() {
                    break;
                }
            }
        }));
        Ok(())
    }

    /// Queues a QoS 1 publish without waiting for its PUBACK: the engine's reply timeout
    /// covers a publish that never arrives.
    async fn publish(&mut self, topic: String, payload: Vec<u8>) -> Result<(), TaskError> {
        match self.mqtt.enqueue(topic.clone(), payload).await {
            Ok(acked) => {
                tokio::spawn(async move {
                    if let Err(err) = acked.await {
                        tracing::debug!(%topic, error = %err, "publish not acknowledged");
                    }
                });
                Ok(())
            }
            Err(MqttError::Shutdown) => Err(TaskError::MqttGone),
            Err(err) => {
                tracing::error!(%topic, error = %err, "cannot publish");
                Ok(())
            }
        }
    }

    fn start_step(&mut self, start: StepStart) {
        let mut request = runner::sandbox_request(
            &start.step,
            &start.job_id,
            start.execution_number,
            &self.cfg.engine.thing_name,
            self.cfg.default_step_timeout,
        );
        request.extra_env = self.durable.step_env(&start);
        tracing::info!(
            job_id = %start.job_id,
            execution_number = start.execution_number,
            step = %start.step.label,
            "starting step"
        );
        let cancel = CancellationToken::new();
        let sandbox = self.sandbox.clone();
        let tx = self.internal_tx.clone();
        let token = cancel.clone();
        let handle = tokio::spawn(async move {
            let outcome = sandbox.run_step(&request, None, &token).await;
            let _ = tx.send(Internal::Step(outcome)).await;
        });
        if let Some(previous) = self.step.replace(RunningStep { cancel, handle }) {
            // The engine runs one step at a time; this would be a bug. Do not leave an
            // orphan running.
            tracing::error!("a step was started while another was running; stopping the old one");
            previous.cancel.cancel();
        }
    }

    /// Shutdown: stop the running step and wait for its process group to be gone.
    async fn stop(&mut self) {
        for (_, timer) in self.timers.drain() {
            timer.abort();
        }
        for forwarder in self.forwarders.drain(..) {
            forwarder.abort();
        }
        // What happened since the last side effect (e.g. a delivered status) is saved too.
        self.durable.write(&self.engine);
        if let Some(step) = self.step.take() {
            tracing::info!(
                "stopping the running step for shutdown; it runs again at the next start"
            );
            step.cancel.cancel();
            if tokio::time::timeout(STEP_STOP_WAIT, step.handle)
                .await
                .is_err()
            {
                tracing::error!("the running step did not stop in time");
            }
        }
    }
}

/// Waits for an optional deadline (never, when there is none).
async fn wait(deadline: &mut Option<Pin<Box<tokio::time::Sleep>>>) {
    match deadline {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

/// A step outcome the daemon decided without the step's process.
fn decided(what: &str) -> StepOutcome {
    StepOutcome {
        termination: Termination::Decided(what.to_string()),
        stdout_tail: String::new(),
        stderr_tail: String::new(),
        stderr_seen: false,
        stderr_lines: 0,
        pgid: None,
    }
}

/// A test failpoint was reached: die as abruptly as `kill -9`.
fn die(failpoint: &str) -> ! {
    tracing::warn!("{FAILPOINT_ENV}={failpoint}: killing iotjobsd");
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    std::process::abort()
}

fn log(event: LogEvent) {
    let job_id = event.job_id.as_deref().unwrap_or("");
    match event.level {
        LogLevel::Debug => tracing::debug!(job_id, "{}", event.message),
        LogLevel::Info => tracing::info!(job_id, "{}", event.message),
        LogLevel::Warn => tracing::warn!(job_id, "{}", event.message),
        LogLevel::Error => tracing::error!(job_id, "{}", event.message),
    }
}

/// The task's configuration from the daemon's.
pub fn task_config(config: &crate::config::Config, thing_name: &str) -> TaskConfig {
    let host = crate::jobs::document::HostFacts::read();
    let mut engine = EngineConfig::new(thing_name, host, fastrand::u64(..));
    engine.step_timeout_minutes = config.jobs.step_timeout_minutes;
    TaskConfig {
        engine,
        default_step_timeout: Duration::from_secs(config.jobs.default_step_timeout_secs),
        state_dir: config.paths.state_dir.clone(),
        boot_id_file: config.paths.boot_id_file.clone(),
        on_shutdown: config.jobs.on_shutdown,
        stop_timeout: Duration::from_secs(config.jobs.stop_timeout_secs),
        reboot_timeout: Duration::from_secs(config.jobs.reboot_timeout_secs),
    }
}

/// The jobs engine as a supervisor service (see `app::Service`).
pub fn service() -> crate::app::Service {
    Box::new(|ctx: crate::app::ServiceContext| {
        Box::pin(async move {
            let Some(thing) = ctx.config.mqtt.thing_name.clone() else {
                tracing::error!("jobs: no mqtt.thing_name configured; the Jobs feature is off");
                return;
            };
            let sandbox = Sandbox::new(SandboxConfig::from_config(
                &ctx.config.jobs,
                &ctx.config.paths,
            ));
            let cfg = task_config(&ctx.config, &thing);
            let task = JobsTask::new(cfg, ctx.mqtt, ctx.events, sandbox);
            if let Err(err) = task.run(ctx.shutdown).await {
                tracing::error!(error = %err, "the jobs task stopped");
            }
        })
    })
}
