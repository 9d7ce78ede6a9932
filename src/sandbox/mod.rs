//! The sandbox: the only place in iotjobs that spawns processes.
//!
//! Owns: handler resolution and its permission checks, the choice of user and the
//! native user switch, the step's process (own session and process group, clean
//! environment, per-job working directory, umask, rlimits, no inherited descriptors),
//! bounded output capture, and stopping the whole process group on timeout or
//! cancellation.
//!
//! Must not: know about MQTT, job documents or job status. The engine turns a document
//! step into a [`StepRequest`] and a [`StepOutcome`] into a status update. Nothing here
//! uses a shell string or sudo, and nothing here panics on what a job asks for: every
//! refusal is a [`SandboxError`] whose text is the FAILED reason.
//!
//! ```text
//! let sandbox = Sandbox::new(SandboxConfig::from_config(&cfg.jobs, &cfg.paths));
//! let outcome = sandbox.run_step(&request, Some(sink), &cancel).await;
//! if !outcome.succeeded() { reason = outcome.reason(&request.step_name) }
//! ```

mod config;
mod error;
mod kill;
mod outcome;
mod output;
mod resolve;
mod spawn;
mod user;
mod workdir;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncRead;
use tokio::process::Child;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use config::{work_root, HandlerDir, Program, SandboxConfig, StepRequest, STEP_PATH};
pub use error::SandboxError;
pub use outcome::{signal_text, StepOutcome, Termination};
pub use output::{LineSink, OutputLine, Stream, MAX_LINE_BYTES, TAIL_CHARS};

use output::{Capture, LogContext};
use resolve::io_reason;
use spawn::ExecPlan;
use user::{Identity, Target};

/// Minimum time to wait for output after the step's processes are gone; only a
/// process that left the group (setsid) can hold the pipes open that long.
const MIN_DRAIN_WAIT: Duration = Duration::from_secs(2);
/// Upper bound on reaping the main process after SIGKILL.
const REAP_WAIT: Duration = Duration::from_secs(10);

/// Runs job steps. Cheap to clone; holds no process state between steps.
#[derive(Debug, Clone)]
pub struct Sandbox {
    config: Arc<SandboxConfig>,
    daemon: Arc<Identity>,
}

/// A step ready to spawn.
struct Prepared {
    plan: ExecPlan,
    program: PathBuf,
    user: String,
}

impl Sandbox {
    /// Reads the daemon's own identity (euid, passwd entry) once.
    pub fn new(config: SandboxConfig) -> Self {
        Sandbox {
            config: Arc::new(config),
            daemon: Arc::new(Identity::current()),
        }
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// Resolves what a step would run, with all permission checks, without running it
    /// (for `validate-job`-style checks). Returns the program path.
    pub fn resolve(&self, program: &Program) -> Result<PathBuf, SandboxError> {
        match program {
            Program::Handler { name, dir } => {
                resolve::resolve_handler(&self.config, self.daemon.uid, name, dir)
            }
            Program::Command(tokens) => {
                resolve::resolve_command(tokens.first().ok_or(SandboxError::EmptyCommand)?)
            }
        }
    }

    /// `<state_dir>/jobs/<job_id>`: the working directory of the job's steps.
    pub fn job_dir(&self, job_id: &str) -> Result<PathBuf, SandboxError> {
        workdir::job_dir(&self.config.work_root, job_id)
    }

    /// Deletes a job's working directory; the engine calls it when the job is over.
    pub fn remove_job_dir(&self, job_id: &str) -> Result<(), SandboxError> {
        workdir::remove(&self.config.work_root, job_id)
    }

    /// Runs one step to its end and reports how it ended. Never fails: a refusal or a
    /// failed start is [`Termination::SpawnFailed`].
    ///
    /// Timeout or `cancel`: SIGTERM to the step's process group, `kill_grace`, SIGKILL.
    /// When the main process exits on its own, processes it left in its group are
    /// stopped the same way. Dropping the returned future SIGKILLs the group at once.
    pub async fn run_step(
        &self,
        req: &StepRequest,
        sink: Option<LineSink>,
        cancel: &CancellationToken,
    ) -> StepOutcome {
        let span = tracing::info_span!(
            "step",
            job_id = %req.job_id,
            execution_number = req.execution_number,
            step = %req.step_name,
            step_index = req.step_index,
        );
        self.run_step_inner(req, sink, cancel)
            .instrument(span)
            .await
    }

    async fn run_step_inner(
        &self,
        req: &StepRequest,
        sink: Option<LineSink>,
        cancel: &CancellationToken,
    ) -> StepOutcome {
        let prepared = match self.prepare(req) {
            Ok(p) => p,
            Err(err) => {
                tracing::warn!(reason = %err, "step refused");
                return StepOutcome::not_started(err);
            }
        };
        let Prepared {
            plan,
            program,
            user,
        } = prepared;
        let mut child = match plan.spawn() {
            Ok(child) => child,
            Err(e) => {
                let err = SandboxError::Exec {
                    program,
                    user,
                    reason: io_reason(&e),
                };
                tracing::warn!(reason = %err, "step could not be started");
                return StepOutcome::not_started(err);
            }
        };
        // The id is only None after the child was reaped, which cannot have happened yet.
        let pgid = child.id().map(|id| id as i32).unwrap_or_default();
        tracing::info!(pgid, program = %program.display(), user = %user, timeout_s = req.timeout.as_secs_f64(), "step started");

        let stop_readers = CancellationToken::new();
        let guard = GroupGuard {
            pgid,
            stop_readers: stop_readers.clone(),
            armed: true,
        };
        let ctx = Arc::new(LogContext {
            job_id: req.job_id.clone(),
            step: req.step_name.clone(),
            step_index: req.step_index,
        });
        let out_task = spawn_reader(
            child.stdout.take(),
            Stream::Stdout,
            &ctx,
            &sink,
            &stop_readers,
        );
        let err_task = spawn_reader(
            child.stderr.take(),
            Stream::Stderr,
            &ctx,
            &sink,
            &stop_readers,
        );

        let termination = self
            .supervise(&mut child, pgid, req, cancel, &program, &user)
            .await;
        let (stdout, stderr) = self.collect_output(out_task, err_task, &stop_readers).await;
        guard.disarm();

        tracing::info!(
            outcome = %termination.reason(&req.step_name),
            stderr_lines = stderr.lines,
            "step finished"
        );
        StepOutcome {
            termination,
            stdout_tail: stdout.tail,
            stderr_tail: stderr.tail,
            stderr_seen: stderr.bytes > 0,
            stderr_lines: stderr.lines,
            pgid: Some(pgid),
        }
    }

    fn prepare(&self, req: &StepRequest) -> Result<Prepared, SandboxError> {
        let cfg = &self.config;
        let is_handler = matches!(req.program, Program::Handler { .. });
        let run_as = user::decide(
            &self.daemon,
            &cfg.allowed_users,
            cfg.handlers_switch_user,
            is_handler,
            req.run_as_user.as_deref(),
        )?;
        let program = self.resolve(&req.program)?;
        let mut argv = match &req.program {
            // AWS calling convention: runAsUser is always argv[1], empty when unset.
            Program::Handler { .. } => vec![
                program.to_string_lossy().into_owned(),
                req.run_as_user.clone().unwrap_or_default(),
            ],
            Program::Command(tokens) => tokens.clone(),
        };
        argv.extend(req.args.iter().cloned());
        let target: Target = user::lookup(&self.daemon, &run_as)?;
        let cwd = workdir::prepare(
            &cfg.work_root,
            &req.job_id,
            &target,
            cfg.handlers_switch_user,
        )?;
        let env = step_env(req, &target);
        let plan = ExecPlan::new(
            &program,
            &argv,
            &env,
            &cwd,
            &target,
            cfg.max_open_files,
            cfg.max_processes,
        )?;
        Ok(Prepared {
            plan,
            program,
            user: target.identity.name,
        })
    }

    /// Waits for the main process, the timeout or cancellation, and leaves no live
    /// process in the step's group behind.
    async fn supervise(
        &self,
        child: &mut Child,
        pgid: i32,
        req: &StepRequest,
        cancel: &CancellationToken,
        program: &std::path::Path,
        user: &str,
    ) -> Termination {
        let grace = self.config.kill_grace;
        // All three branches are cancel-safe: losing the race drops nothing.
        let ended = tokio::select! {
            status = child.wait() => Ok(status),
            _ = tokio::time::sleep(req.timeout) => Err(Termination::TimedOut(req.timeout)),
            _ = cancel.cancelled() => Err(Termination::Cancelled),
        };
        match ended {
            Ok(status) => {
                let stop = kill::stop_group(pgid, grace).await;
                if stop != kill::GroupStop::AlreadyGone {
                    tracing::warn!(
                        ?stop,
                        "the step's main process exited but left processes in its group; they were stopped"
                    );
                }
                match status {
                    Ok(status) => termination_of(status),
                    Err(e) => Termination::SpawnFailed(SandboxError::Exec {
                        program: program.to_path_buf(),
                        user: user.to_string(),
                        reason: format!("waiting for it failed: {}", io_reason(&e)),
                    }),
                }
            }
            Err(termination) => {
                tracing::warn!(
                    reason = %termination.reason(&req.step_name),
                    "stopping the step's process group"
                );
                let stop = kill::stop_group(pgid, grace).await;
                tracing::info!(?stop, "step's process group stopped");
                if timeout(REAP_WAIT, child.wait()).await.is_err() {
                    tracing::error!(pgid, "the step's main process could not be reaped");
                }
                termination
            }
        }
    }

    /// Joins the reader tasks. Normally they hit EOF at once; if a process that left
    /// the group still holds a pipe, they are stopped after a bounded wait.
    async fn collect_output(
        &self,
        out_task: Option<JoinHandle<Capture>>,
        err_task: Option<JoinHandle<Capture>>,
        stop_readers: &CancellationToken,
    ) -> (Capture, Capture) {
        let drain = self.config.kill_grace.max(MIN_DRAIN_WAIT);
        let join = |task: Option<JoinHandle<Capture>>| async move {
            match task {
                Some(handle) => handle.await.unwrap_or_default(),
                None => Capture::default(),
            }
        };
        let both = async { tokio::join!(join(out_task), join(err_task)) };
        tokio::pin!(both);
        match timeout(drain, &mut both).await {
            Ok(captures) => captures,
            Err(_) => {
                tracing::warn!(
                    "a process outside the step's process group (it called setsid?) still holds the step's output open; output after this point is not captured"
                );
                stop_readers.cancel();
                both.await
            }
        }
    }
}

/// Starts the task that reads one of the step's pipes.
fn spawn_reader<R: AsyncRead + Unpin + Send + 'static>(
    pipe: Option<R>,
    stream: Stream,
    ctx: &Arc<LogContext>,
    sink: &Option<LineSink>,
    stop: &CancellationToken,
) -> Option<JoinHandle<Capture>> {
    let (ctx, sink, stop) = (ctx.clone(), sink.clone(), stop.clone());
    pipe.map(|p| tokio::spawn(output::read_stream(p, stream, ctx, sink, stop)))
}

/// The complete environment of a step; nothing is inherited from the daemon.
fn step_env(req: &StepRequest, target: &Target) -> Vec<(String, String)> {
    let id = &target.identity;
    vec![
        ("PATH".into(), STEP_PATH.into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("HOME".into(), id.home.to_string_lossy().into_owned()),
        ("USER".into(), id.name.clone()),
        ("LOGNAME".into(), id.name.clone()),
        ("IOTJOBS_JOB_ID".into(), req.job_id.clone()),
        (
            "IOTJOBS_EXECUTION_NUMBER".into(),
            req.execution_number.to_string(),
        ),
        ("IOTJOBS_STEP".into(), req.step_name.clone()),
        ("IOTJOBS_STEP_INDEX".into(), req.step_index.to_string()),
        ("IOTJOBS_THING_NAME".into(), req.thing_name.clone()),
    ]
}

fn termination_of(status: std::process::ExitStatus) -> Termination {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Termination::Exited(code),
        (None, Some(sig)) => Termination::Signaled(sig),
        // Stopped/continued statuses are not returned by wait(); keep a sane fallback.
        (None, None) => Termination::Exited(status.into_raw()),
    }
}

/// SIGKILLs the step's group if `run_step` is abandoned before the step is over.
struct GroupGuard {
    pgid: i32,
    stop_readers: CancellationToken,
    armed: bool,
}

impl GroupGuard {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed && self.pgid > 0 {
            kill::kill_group_now(self.pgid);
            self.stop_readers.cancel();
        }
    }
}
