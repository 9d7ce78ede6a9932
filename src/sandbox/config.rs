//! The sandbox's view of the configuration, and the description of one step to run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{JobsConfig, PathsConfig};

/// The default of `jobs.handler_path`: the `PATH` every step gets, and where runCommand's
/// `argv[0]` is looked up.
pub const STEP_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Settings the sandbox applies to every step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// Where `path: "default"` (or an empty path) resolves handlers.
    pub handler_dir: PathBuf,
    /// Other directories a job document's `path` may name.
    pub allowed_handler_dirs: Vec<PathBuf>,
    /// Users `runAsUser` may name; empty means root and the daemon's own user.
    pub allowed_users: Vec<String>,
    /// AWS behaviour: run handlers as the daemon's user, the handler switches itself.
    pub handlers_switch_user: bool,
    /// SIGTERM → SIGKILL delay when a step's process group is stopped.
    pub kill_grace: Duration,
    /// RLIMIT_NOFILE for steps (soft and hard); 0 = inherit.
    pub max_open_files: u64,
    /// RLIMIT_NPROC for steps (soft and hard, counted per user); 0 = inherit.
    pub max_processes: u64,
    /// Per-job working directories are created under `<work_root>/<job_id>/`.
    pub work_root: PathBuf,
    /// The `PATH` steps get; runCommand's `argv[0]` is looked up in it (`jobs.handler_path`).
    pub step_path: String,
}

impl SandboxConfig {
    pub fn from_config(jobs: &JobsConfig, paths: &PathsConfig) -> Self {
        SandboxConfig {
            handler_dir: jobs.handler_dir.clone(),
            allowed_handler_dirs: jobs.allowed_handler_dirs.clone(),
            allowed_users: jobs.allowed_users.clone(),
            handlers_switch_user: jobs.handlers_switch_user,
            kill_grace: Duration::from_secs(jobs.kill_grace_secs),
            max_open_files: jobs.max_open_files,
            max_processes: jobs.max_processes,
            work_root: work_root(&paths.state_dir),
            step_path: jobs.handler_path.clone(),
        }
    }
}

/// `<state_dir>/jobs`: the parent of the per-job working directories.
pub fn work_root(state_dir: &Path) -> PathBuf {
    state_dir.join("jobs")
}

/// Which directory a handler is looked up in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerDir {
    /// The job document's `path` was "default" or empty: the configured handler directory.
    Default,
    /// Any other `path`; it must be listed in `allowed_handler_dirs`.
    Path(PathBuf),
}

/// What a step runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// runHandler: `<dir>/<name>`, called as `[handler, runAsUser, args...]`.
    Handler { name: String, dir: HandlerDir },
    /// runCommand: the parsed tokens; `argv[0]` is looked up in the step `PATH` unless it
    /// contains a '/'. Called as `tokens ++ args`.
    Command(Vec<String>),
}

/// One step of one job execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRequest {
    pub job_id: String,
    pub execution_number: i64,
    /// 0-based position in the document (exported as `IOTJOBS_STEP_INDEX`).
    pub step_index: usize,
    pub step_name: String,
    pub thing_name: String,
    pub program: Program,
    pub args: Vec<String>,
    /// The action's `runAsUser`; `None` or empty means the daemon's own user.
    pub run_as_user: Option<String>,
    pub timeout: Duration,
    /// More variables for the step's environment, set by the daemon (never by a job
    /// document): `IOTJOBS_BOOT_ID_FILE`, `IOTJOBS_SELF_RESTART_FILE`.
    pub extra_env: Vec<(String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_from_the_daemon_config() {
        let mut jobs = JobsConfig {
            allowed_users: vec!["alice".into()],
            kill_grace_secs: 3,
            max_open_files: 256,
            ..JobsConfig::default()
        };
        jobs.allowed_handler_dirs = vec![PathBuf::from("/opt/handlers")];
        let cfg = SandboxConfig::from_config(&jobs, &PathsConfig::default());
        assert_eq!(
            cfg.handler_dir,
            PathBuf::from("/usr/libexec/iotjobsd/handlers")
        );
        assert_eq!(cfg.allowed_handler_dirs, [PathBuf::from("/opt/handlers")]);
        assert_eq!(cfg.allowed_users, ["alice"]);
        assert!(!cfg.handlers_switch_user);
        assert_eq!(cfg.kill_grace, Duration::from_secs(3));
        assert_eq!((cfg.max_open_files, cfg.max_processes), (256, 0));
        assert_eq!(cfg.work_root, PathBuf::from("/var/lib/iotjobsd/jobs"));
        assert_eq!(cfg.step_path, STEP_PATH);
        jobs.handler_path = "/opt/shims:/bin".into();
        let cfg = SandboxConfig::from_config(&jobs, &PathsConfig::default());
        assert_eq!(cfg.step_path, "/opt/shims:/bin");
    }
}
