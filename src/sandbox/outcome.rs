//! How a step ended, and the status `reason` sentence for it.

use std::time::Duration;

use super::error::SandboxError;

/// How a step's process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Termination {
    /// The main process exited with this status.
    Exited(i32),
    /// The main process was killed by this signal (not by the sandbox).
    Signaled(i32),
    /// The step ran longer than its timeout; its process group was stopped.
    TimedOut(Duration),
    /// The caller cancelled the step; its process group was stopped.
    Cancelled,
    /// The step was refused or could not be started; nothing ran.
    SpawnFailed(SandboxError),
}

/// Everything the engine needs to report a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutcome {
    pub termination: Termination,
    /// Last 1024 characters of stdout (newlines included, invalid UTF-8 replaced).
    pub stdout_tail: String,
    /// Last 1024 characters of stderr.
    pub stderr_tail: String,
    /// Whether the step wrote anything at all to stderr.
    pub stderr_seen: bool,
    /// Lines written to stderr (a line longer than 4096 bytes counts as several), for
    /// `allowStdErr`.
    pub stderr_lines: u64,
    /// The step's process group id (= pid of its main process), if it started.
    pub pgid: Option<i32>,
}

impl StepOutcome {
    pub(crate) fn not_started(err: SandboxError) -> Self {
        StepOutcome {
            termination: Termination::SpawnFailed(err),
            stdout_tail: String::new(),
            stderr_tail: String::new(),
            stderr_seen: false,
            stderr_lines: 0,
            pgid: None,
        }
    }

    /// True only for exit status 0.
    pub fn succeeded(&self) -> bool {
        self.termination == Termination::Exited(0)
    }

    /// The status reason, e.g. "step 'Install' exited with status 2".
    pub fn reason(&self, step_name: &str) -> String {
        self.termination.reason(step_name)
    }
}

impl Termination {
    /// "step 'Install' exited with status 2", "step 'Install' killed by signal 9
    /// (SIGKILL)", "step 'Install' timed out after 300 s", "step 'Install' was
    /// cancelled", "step 'Install' could not be started: <why>".
    pub fn reason(&self, step_name: &str) -> String {
        let what = match self {
            Termination::Exited(code) => format!("exited with status {code}"),
            Termination::Signaled(sig) => format!("killed by signal {}", signal_text(*sig)),
            Termination::TimedOut(after) => format!("timed out after {}", seconds(*after)),
            Termination::Cancelled => "was cancelled".to_string(),
            Termination::SpawnFailed(err) => format!("could not be started: {err}"),
        };
        format!("step '{step_name}' {what}")
    }
}

/// "9 (SIGKILL)", or just the number for a signal without a name.
pub fn signal_text(sig: i32) -> String {
    match nix::sys::signal::Signal::try_from(sig) {
        Ok(s) => format!("{sig} ({})", s.as_str()),
        Err(_) => sig.to_string(),
    }
}

/// "300 s", "1.5 s", "0.25 s".
fn seconds(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} s", d.as_millis() as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_strings() {
        let r = |t: Termination| t.reason("Install");
        assert_eq!(
            r(Termination::Exited(2)),
            "step 'Install' exited with status 2"
        );
        assert_eq!(
            r(Termination::Exited(0)),
            "step 'Install' exited with status 0"
        );
        assert_eq!(
            r(Termination::Signaled(9)),
            "step 'Install' killed by signal 9 (SIGKILL)"
        );
        assert_eq!(
            r(Termination::Signaled(15)),
            "step 'Install' killed by signal 15 (SIGTERM)"
        );
        assert_eq!(
            r(Termination::Signaled(40)),
            "step 'Install' killed by signal 40"
        );
        assert_eq!(
            r(Termination::TimedOut(Duration::from_secs(300))),
            "step 'Install' timed out after 300 s"
        );
        assert_eq!(
            r(Termination::TimedOut(Duration::from_millis(1500))),
            "step 'Install' timed out after 1.5 s"
        );
        assert_eq!(r(Termination::Cancelled), "step 'Install' was cancelled");
        assert_eq!(
            r(Termination::SpawnFailed(SandboxError::EmptyCommand)),
            "step 'Install' could not be started: command is empty"
        );
    }

    #[test]
    fn only_exit_zero_succeeds() {
        let mut o = StepOutcome::not_started(SandboxError::EmptyCommand);
        assert!(!o.succeeded());
        o.termination = Termination::Exited(0);
        assert!(o.succeeded());
        o.termination = Termination::Signaled(0);
        assert!(!o.succeeded());
    }
}
