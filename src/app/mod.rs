//! The daemon supervisor: owns process lifecycle (signals, systemd notify, watchdog,
//! single-instance lock) and wires the long-lived tasks together over channels.
//! It must not speak MQTT or run handlers itself.
//!
//! Start-up: configuration (every problem printed, exit 78 = EX_CONFIG when invalid) → one
//! re-execution with glibc's per-thread malloc cache off (see `allocator`) → logging →
//! lock → tokio runtime (current_thread: one device agent needs no thread pool) → MQTT
//! connection task → services → `READY=1` (without waiting for the network, so boot
//! is not held up by a missing uplink). Shutdown on SIGTERM/SIGINT: `STOPPING=1`,
//! services cancelled and drained (the jobs service stops or finishes its running step
//! per `jobs.on_shutdown`, see [`service_stop_grace`]), MQTT DISCONNECT, logs flushed,
//! exit 0.
//!
//! Services (the jobs engine) plug in as [`Service`]s: each gets a [`ServiceContext`]
//! with the MQTT handle, an event receiver created before the first connection, and a
//! shutdown token.

mod allocator;
mod lock;
mod notify;

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use allocator::release_free_heap;
pub use lock::{InstanceLock, LockError, LOCK_FILE};
pub use notify::{status_line, watchdog_interval, Notifier};

use crate::cli::GlobalArgs;
use crate::config::Config;
use crate::mqtt::{self, MqttEvent, MqttHandle, MqttSettings};

/// Margin services get beyond stopping a step (journal write, process-group reaping).
pub const SERVICE_STOP_GRACE: Duration = Duration::from_secs(1);
/// Upper bound for the MQTT DISCONNECT at shutdown; with the grace above, the daemon
/// exits well within the 5 s systemd allows by default.
pub const DISCONNECT_GRACE: Duration = Duration::from_secs(3);

/// Errors that end the daemon.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The single-instance lock is held or unusable.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The MQTT settings are unusable (certificate, key, CA, ...).
    #[error("MQTT set-up failed: {0}")]
    Mqtt(#[from] mqtt::MqttError),
    /// The runtime or signal handlers could not be set up.
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// What a service task receives.
#[derive(Debug)]
pub struct ServiceContext {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The MQTT connection.
    pub mqtt: MqttHandle,
    /// Connection events, subscribed before the connection task first ran, so the
    /// first `Connected` is never missed.
    pub events: broadcast::Receiver<MqttEvent>,
    /// Cancelled at shutdown; the service should checkpoint and return promptly.
    pub shutdown: CancellationToken,
}

/// A long-lived task started by the supervisor (e.g. the jobs engine).
pub type Service = Box<dyn FnOnce(ServiceContext) -> Pin<Box<dyn Future<Output = ()>>>>;

/// Exit status for a configuration that cannot be loaded or is invalid: EX_CONFIG from
/// sysexits.h. The unit lists it in `RestartPreventExitStatus=`, because restarting cannot
/// fix a bad configuration: an enabled but unconfigured service fails once, not five times.
pub const EXIT_CONFIG: u8 = 78;

/// `iotjobsd run`: load configuration, start the daemon, return its exit code.
pub fn run_command(global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let config = match crate::config::load(global) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("iotjobsd: {err}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let problems = crate::config::validate(&config);
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("{problem}");
        }
        eprintln!(
            "iotjobsd: the configuration has {} problem(s); fix them and check with `iotjobsd check-config`",
            problems.len()
        );
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    // Before the log writer thread or anything else exists: the image is replaced.
    allocator::reexec_without_tcache();
    let logging = crate::logging::init(&config.log, global.verbose)?;
    let services = if config.jobs.enabled {
        vec![crate::jobs::task::service()]
    } else {
        Vec::new()
    };
    let result = run(config, services);
    // Dropping the guard flushes the non-blocking log writer.
    drop(logging);
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Runs the daemon with the given services until SIGTERM/SIGINT.
pub fn run(config: Config, services: Vec<Service>) -> Result<(), AppError> {
    let _lock = InstanceLock::acquire(&config.paths.runtime_dir)?;
    let settings = MqttSettings::from_config(&config.mqtt)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AppError::Runtime)?;
    let local = tokio::task::LocalSet::new();
    runtime.block_on(local.run_until(supervise(Arc::new(config), settings, services)))
}

async fn supervise(
    config: Arc<Config>,
    settings: MqttSettings,
    services: Vec<Service>,
) -> Result<(), AppError> {
    let mut sigterm = signal(SignalKind::terminate()).map_err(AppError::Runtime)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(AppError::Runtime)?;
    let notifier = Notifier;

    let (mqtt, mqtt_task) = mqtt::spawn(settings.clone());
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    for service in services {
        let context = ServiceContext {
            config: config.clone(),
            mqtt: mqtt.clone(),
            // Subscribed before our first await, i.e. before the connection task ran.
            events: mqtt.events(),
            shutdown: shutdown.child_token(),
        };
        tracker.spawn_local(service(context));
    }
    tracker.close();

    let mut state = mqtt.state();
    let status = status_line(&state.borrow_and_update(), &settings);
    notifier.ready(&status);
    info!(thing = %settings.thing_name, "iotjobsd {} started: {status}", env!("CARGO_PKG_VERSION"));

    let mut watchdog = notifier.watchdog_interval().map(|period| {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    });
    let signal_name = loop {
        tokio::select! {
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
            changed = state.changed() => {
                if changed.is_err() {
                    // The connection task ended on its own: nothing left to supervise.
                    warn!("the MQTT connection task stopped unexpectedly");
                    break "connection task exit";
                }
                notifier.status(&status_line(&state.borrow_and_update(), &settings));
            }
            _ = tick(&mut watchdog), if watchdog.is_some() => notifier.watchdog(),
        }
    };

    info!("{signal_name}: shutting down");
    notifier.stopping();
    shutdown.cancel();
    let grace = service_stop_grace(&config.jobs);
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        warn!("services did not stop within {grace:?}; continuing shutdown");
    }
    if tokio::time::timeout(DISCONNECT_GRACE, mqtt.disconnect())
        .await
        .is_err()
    {
        warn!("MQTT disconnect did not finish within {DISCONNECT_GRACE:?}");
    }
    mqtt_task.abort();
    info!("iotjobsd stopped");
    Ok(())
}

/// How long shutdown waits for the services: a running step is stopped (SIGTERM, the
/// kill grace, SIGKILL) or, with `on_shutdown = "finish"`, may first run for up to
/// `stop_timeout_secs`. systemd's `TimeoutStopSec` must exceed this.
pub fn service_stop_grace(jobs: &crate::config::JobsConfig) -> Duration {
    let stop = Duration::from_secs(jobs.kill_grace_secs) + SERVICE_STOP_GRACE;
    match jobs.on_shutdown {
        crate::config::ShutdownPolicy::Stop => stop,
        crate::config::ShutdownPolicy::Finish => stop + Duration::from_secs(jobs.stop_timeout_secs),
    }
}

async fn tick(watchdog: &mut Option<tokio::time::Interval>) {
    match watchdog {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}
