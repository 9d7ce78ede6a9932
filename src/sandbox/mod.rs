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
mod run;
mod spawn;
mod user;
mod vfork;
mod workdir;

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use config::{work_root, HandlerDir, Program, SandboxConfig, StepRequest, STEP_PATH};
pub use error::SandboxError;
pub(crate) use kill::parse_stat;
pub use outcome::{signal_text, StepOutcome, Termination};
pub use output::{LineSink, OutputLine, Stream, MAX_LINE_BYTES, TAIL_CHARS};

use user::Identity;

/// Runs job steps. Cheap to clone; holds no process state between steps.
#[derive(Debug, Clone)]
pub struct Sandbox {
    config: Arc<SandboxConfig>,
    daemon: Arc<Identity>,
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
                let argv0 = tokens.first().ok_or(SandboxError::EmptyCommand)?;
                resolve::resolve_command(argv0, &self.config.step_path)
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
}
