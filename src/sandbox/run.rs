//! Running one step: spawn, supervise (exit, timeout, cancellation), stop the process
//! group, collect the output. The policy decisions are made in `prepare` from the
//! other modules; this file only sequences them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncRead;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::config::{Program, StepRequest};
use super::error::SandboxError;
use super::kill;
use super::outcome::{StepOutcome, Termination};
use super::output::{self, Capture, LineSink, LogContext, Stream};
use super::resolve::io_reason;
use super::spawn::{ExecPlan, StepChild};
use super::user::{self, Target};
use super::workdir;
use super::Sandbox;

/// Minimum time to wait for output after the step's processes are gone; only a
/// process that left the group (setsid) can hold the pipes open that long.
const MIN_DRAIN_WAIT: Duration = Duration::from_secs(2);
/// Upper bound on reaping the main process after SIGKILL.
const REAP_WAIT: Duration = Duration::from_secs(10);

/// A step ready to spawn.
struct Prepared {
    plan: ExecPlan,
    program: PathBuf,
    user: String,
}

impl Sandbox {
    pub(super) async fn run_step_inner(
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
        // The child has not been reaped yet, so this is its pid (= its group).
        let pgid = child.id();
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
            child.take_stdout(),
            Stream::Stdout,
            &ctx,
            &sink,
            &stop_readers,
        );
        let err_task = spawn_reader(
            child.take_stderr(),
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
            pgid: (pgid > 0).then_some(pgid),
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
        let env = step_env(req, &target, &cfg.step_path);
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
        child: &mut StepChild,
        pgid: i32,
        req: &StepRequest,
        cancel: &CancellationToken,
        program: &Path,
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
fn step_env(req: &StepRequest, target: &Target, path: &str) -> Vec<(String, String)> {
    let id = &target.identity;
    let mut env = vec![
        ("PATH".into(), path.into()),
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
    ];
    env.extend(req.extra_env.iter().cloned());
    env
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
