//! The jobs task: the thin tokio loop around the sans-I/O [`Engine`].
//!
//! It owns the engine, its timers and the running step. It feeds the engine connection
//! events and messages from the [`MqttHandle`], timer firings and step outcomes, and
//! performs the engine's actions: subscribe and publish through the handle, run steps
//! through the [`Sandbox`] (the only place processes are spawned), arm timers, log.
//! It makes no protocol decision of its own.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::jobs::engine::{
    Action, Engine, EngineConfig, Input, LogEvent, LogLevel, StepStart, TimerId, TimerKind,
};
use crate::jobs::runner;
use crate::mqtt::{Message, MqttError, MqttEvent, MqttHandle};
use crate::sandbox::{Sandbox, SandboxConfig, StepOutcome};

/// How long shutdown waits for a stopped step to report (the sandbox's own SIGTERM →
/// SIGKILL grace is shorter than this in any sane configuration).
const STEP_STOP_WAIT: Duration = Duration::from_secs(60);

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
    step: Option<RunningStep>,
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
        JobsTask {
            engine: Engine::new(cfg.engine.clone()),
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
            step: None,
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
        if self.mqtt.is_connected() {
            self.feed(Input::Connected).await?;
        }
        let result = loop {
            // Every branch is cancel-safe: a message not taken stays in its channel.
            let input = tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
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
                Some(message) = self.messages_rx.recv() => Input::Message {
                    topic: message.topic,
                    payload: message.payload.to_vec(),
                },
                Some(internal) = self.internal_rx.recv() => match internal {
                    Internal::Timer(id) => {
                        self.timers.remove(&id.kind);
                        Input::TimerFired(id)
                    }
                    Internal::Step(outcome) => {
                        self.step = None;
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

    /// Feeds one input to the engine and performs the resulting actions.
    async fn feed(&mut self, input: Input) -> Result<(), TaskError> {
        let before = self.engine.current_job().map(|key| key.job_id.clone());
        let actions = self.engine.handle(input);
        for action in actions {
            self.perform(action).await?;
        }
        let after = self.engine.current_job().map(|key| key.job_id.clone());
        if let Some(job_id) = before.filter(|id| after.as_ref() != Some(id)) {
            // The job is over (reported or revoked): its working directory goes too.
            if let Err(err) = self.sandbox.remove_job_dir(&job_id) {
                tracing::warn!(job_id = %job_id, error = %err, "cannot remove the job's working directory");
            }
        }
        Ok(())
    }

    async fn perform(&mut self, action: Action) -> Result<(), TaskError> {
        match action {
            Action::Subscribe(filters) => self.subscribe(filters).await?,
            Action::Publish { topic, payload } => self.publish(topic, payload).await?,
            Action::StartStep(start) => self.start_step(start),
            Action::KillStep { reason } => {
                if let Some(step) = &self.step {
                    tracing::warn!(%reason, "stopping the running step");
                    step.cancel.cancel();
                }
            }
            Action::ArmTimer { id, after } => {
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
        let request = runner::sandbox_request(
            &start.step,
            &start.job_id,
            start.execution_number,
            &self.cfg.engine.thing_name,
            self.cfg.default_step_timeout,
        );
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
        if let Some(step) = self.step.take() {
            tracing::info!("stopping the running step for shutdown");
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
