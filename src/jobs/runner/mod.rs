//! The job runner: executes a validated [`JobPlan`] step by step, sans I/O.
//!
//! Given the plan and a serialisable [`RunnerState`], it says which step to run next and,
//! when a step's [`StepOutcome`] comes back, what follows. It owns the job semantics:
//! - steps run in order; a step succeeds when it exits 0 and, if `allowStdErr` is set,
//!   printed at most that many stderr lines;
//! - `ignoreStepFailure`: the step's failure is logged and reported but the job goes on;
//! - a failing step (not ignored) stops the job: later steps and `finalStep` are skipped;
//! - `finalStep` runs only when every step succeeded (or had its failure ignored), and its
//!   result is the job's;
//! - on failure, the `rollback` actions of the steps that ran (the failing one included)
//!   run in reverse order; their failures are reported but do not change the reason;
//! - the terminal `statusDetails` carry `reason`, the `stderr` tail and, with
//!   `includeStdOut`, the `stdout` tail (of the job's steps, rollback output excluded).
//!
//! It must not spawn processes, read clocks or touch the network: the engine (cloud) and
//! `run-job` (local) drive it, and the sandbox runs the steps.

#[cfg(test)]
mod tests;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::jobs::document::{HandlerPath, HostFacts, JobPlan, PlannedStep, StepKind};
use crate::jobs::engine::LogLevel;
use crate::jobs::status_details::{self, Builder};
use crate::jobs::wire::{JobExecutionStatus, StatusDetails};
use crate::sandbox::{self, HandlerDir, Program};

pub use crate::sandbox::{StepOutcome, Termination};

/// Characters of stdout/stderr kept across a job's steps for the terminal status.
pub const TAIL_CHARS: usize = status_details::MAX_VALUE_CHARS;

/// Which step: its position in execution order (`steps`, then `finalStep`), or the
/// rollback action of that step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRef {
    pub index: usize,
    pub rollback: bool,
}

/// A step the runner wants run.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRequest {
    pub at: StepRef,
    /// Progress label, e.g. "2/3 Install" or "rollback 1/2 Undo install".
    pub label: String,
    pub step: PlannedStep,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: JobExecutionStatus,
    /// Sanitised terminal `statusDetails`.
    pub details: StatusDetails,
    /// One line for the log.
    pub summary: String,
}

/// What the runner wants next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Run(StepRequest),
    Done(Verdict),
}

/// A log line about a finished step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    pub level: LogLevel,
    pub message: String,
}

/// Progress through one plan; serialisable so a journal can record it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerState {
    /// The step running (or about to run).
    pub current: StepRef,
    /// Rollbacks still to run, the next one last.
    pub rollbacks: Vec<usize>,
    /// How many rollbacks the failure triggered (for progress labels).
    pub rollback_total: usize,
    /// The reason of the failure that decided the job.
    pub failure: Option<String>,
    /// Failures tolerated by `ignoreStepFailure`.
    pub ignored: Vec<String>,
    /// Rollback actions that failed.
    pub rollback_failures: Vec<String>,
    pub stdout: String,
    pub stderr: String,
}

/// Parses and validates a job document and checks its conditions against this host.
/// The error is the REJECTED reason, naming the field at fault.
pub fn prepare(document: &Value, host: &HostFacts) -> Result<JobPlan, String> {
    let plan = JobPlan::from_value(document).map_err(|err| err.to_string())?;
    plan.check_conditions(host).map_err(|err| err.to_string())?;
    Ok(plan)
}

/// Starts a plan: its first step.
pub fn start(plan: &JobPlan) -> (RunnerState, Next) {
    let mut state = RunnerState {
        current: StepRef {
            index: 0,
            rollback: false,
        },
        rollbacks: Vec::new(),
        rollback_total: 0,
        failure: None,
        ignored: Vec::new(),
        rollback_failures: Vec::new(),
        stdout: String::new(),
        stderr: String::new(),
    };
    let next = next_forward(plan, &mut state, 0);
    (state, next)
}

/// Records the outcome of the current step and decides what follows.
pub fn step_finished(
    plan: &JobPlan,
    state: &mut RunnerState,
    outcome: &StepOutcome,
) -> (StepReport, Next) {
    let at = state.current;
    let Some(step) = step_at(plan, at) else {
        // Only a corrupted restore can point past the plan; fail rather than guess.
        let reason = format!("internal error: no step at position {}", at.index);
        state.failure = Some(reason.clone());
        let report = StepReport {
            level: LogLevel::Error,
            message: reason,
        };
        return (report, Next::Done(verdict(plan, state)));
    };
    let label = label(plan, state, at, step);
    let failure = failure_reason(step, outcome);

    if at.rollback {
        let report = match &failure {
            None => StepReport {
                level: LogLevel::Info,
                message: format!("{label} succeeded"),
            },
            Some(reason) => {
                state.rollback_failures.push(reason.clone());
                StepReport {
                    level: LogLevel::Warn,
                    message: format!("rollback failed: {reason}"),
                }
            }
        };
        return (report, next_rollback(plan, state));
    }

    append_tail(&mut state.stdout, &outcome.stdout_tail);
    append_tail(&mut state.stderr, &outcome.stderr_tail);
    match failure {
        None => {
            let report = StepReport {
                level: LogLevel::Info,
                message: format!("step {label} succeeded"),
            };
            (report, next_forward(plan, state, at.index + 1))
        }
        Some(reason) if step.ignore_failure => {
            let report = StepReport {
                level: LogLevel::Warn,
                message: format!("{reason}; continuing (ignoreStepFailure)"),
            };
            state.ignored.push(reason);
            (report, next_forward(plan, state, at.index + 1))
        }
        Some(reason) => {
            let report = StepReport {
                level: LogLevel::Warn,
                message: format!("{reason}; the job fails"),
            };
            state.failure = Some(reason);
            // Every step that ran, the failing one included, may undo itself.
            state.rollbacks = (0..=at.index)
                .filter(|&i| step_at(plan, StepRef::main(i)).is_some_and(|s| s.rollback.is_some()))
                .collect();
            state.rollback_total = state.rollbacks.len();
            (report, next_rollback(plan, state))
        }
    }
}

/// The step at the current position again (to re-run it after a restart: the steps
/// before it are done and are not run again). `None` if the state points past the plan.
pub fn current(plan: &JobPlan, state: &RunnerState) -> Option<StepRequest> {
    let step = step_at(plan, state.current)?;
    Some(StepRequest {
        at: state.current,
        label: label(plan, state, state.current, step),
        step: step.clone(),
    })
}

/// The IN_PROGRESS `statusDetails` for the current position.
pub fn progress(plan: &JobPlan, state: &RunnerState) -> StatusDetails {
    let mut details = Builder::new();
    if let Some(step) = step_at(plan, state.current) {
        details = details.head("step", &label(plan, state, state.current, step));
    }
    if let Some(failure) = &state.failure {
        details = details.head("reason", failure);
    }
    details.build()
}

/// Sanitised `statusDetails` from pairs (keys and values cut to AWS's limits).
pub fn terminal_details<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> StatusDetails {
    pairs
        .into_iter()
        .fold(Builder::new(), |b, (k, v)| b.head(k, v))
        .build()
}

/// Builds the sandbox's request for a step of an execution.
pub fn sandbox_request(
    request: &StepRequest,
    job_id: &str,
    execution_number: i64,
    thing_name: &str,
    default_timeout: Duration,
) -> sandbox::StepRequest {
    let step = &request.step;
    let (program, args) = program(step);
    sandbox::StepRequest {
        job_id: job_id.to_owned(),
        execution_number,
        step_index: request.at.index,
        step_name: step.name.clone(),
        thing_name: thing_name.to_owned(),
        program,
        args,
        run_as_user: step.run_as_user.clone(),
        timeout: step.timeout.unwrap_or(default_timeout),
    }
}

/// What the sandbox runs for a step, and the arguments after the calling convention's.
pub fn program(step: &PlannedStep) -> (Program, Vec<String>) {
    match &step.kind {
        StepKind::Handler { name, path, args } => (
            Program::Handler {
                name: name.clone(),
                dir: match path {
                    HandlerPath::Default => HandlerDir::Default,
                    HandlerPath::Dir(dir) => HandlerDir::Path(dir.clone()),
                },
            },
            args.clone(),
        ),
        StepKind::Command { argv } => (Program::Command(argv.clone()), Vec::new()),
    }
}

impl StepRef {
    fn main(index: usize) -> Self {
        StepRef {
            index,
            rollback: false,
        }
    }
}

fn step_at(plan: &JobPlan, at: StepRef) -> Option<&PlannedStep> {
    let step = plan.all_steps().nth(at.index)?;
    if at.rollback {
        step.rollback.as_deref()
    } else {
        Some(step)
    }
}

fn step_count(plan: &JobPlan) -> usize {
    plan.steps.len() + usize::from(plan.final_step.is_some())
}

fn label(plan: &JobPlan, state: &RunnerState, at: StepRef, step: &PlannedStep) -> String {
    if at.rollback {
        let done = state.rollback_total - state.rollbacks.len();
        format!("rollback {done}/{} {}", state.rollback_total, step.name)
    } else {
        format!("{}/{} {}", at.index + 1, step_count(plan), step.name)
    }
}

/// None when the step succeeded; otherwise the reason it failed.
fn failure_reason(step: &PlannedStep, outcome: &StepOutcome) -> Option<String> {
    if !outcome.succeeded() {
        return Some(outcome.reason(&step.name));
    }
    match step.allow_stderr {
        Some(allowed) if outcome.stderr_lines > u64::from(allowed) => Some(format!(
            "step '{}' wrote {} lines to stderr; allowStdErr is {allowed}",
            step.name, outcome.stderr_lines
        )),
        _ => None,
    }
}

/// The step at `index` in execution order, or the verdict when none is left.
fn next_forward(plan: &JobPlan, state: &mut RunnerState, index: usize) -> Next {
    state.current = StepRef::main(index);
    match step_at(plan, state.current) {
        Some(step) => Next::Run(StepRequest {
            at: state.current,
            label: label(plan, state, state.current, step),
            step: step.clone(),
        }),
        None => Next::Done(verdict(plan, state)),
    }
}

fn next_rollback(plan: &JobPlan, state: &mut RunnerState) -> Next {
    while let Some(index) = state.rollbacks.pop() {
        state.current = StepRef {
            index,
            rollback: true,
        };
        if let Some(step) = step_at(plan, state.current) {
            // Count this rollback as started for its label.
            let done = state.rollback_total - state.rollbacks.len();
            return Next::Run(StepRequest {
                at: state.current,
                label: format!("rollback {done}/{} {}", state.rollback_total, step.name),
                step: step.clone(),
            });
        }
    }
    Next::Done(verdict(plan, state))
}

fn verdict(plan: &JobPlan, state: &RunnerState) -> Verdict {
    let total = step_count(plan);
    let (status, reason) = match &state.failure {
        Some(failure) => (JobExecutionStatus::Failed, failure.clone()),
        None if state.ignored.is_empty() && total == 1 => {
            (JobExecutionStatus::Succeeded, "1 step succeeded".into())
        }
        None if state.ignored.is_empty() => (
            JobExecutionStatus::Succeeded,
            format!("all {total} steps succeeded"),
        ),
        None => (
            JobExecutionStatus::Succeeded,
            format!(
                "{} ran; ignored failures: {}",
                steps(total),
                state.ignored.join("; ")
            ),
        ),
    };
    let mut details = Builder::new().head("reason", &reason);
    if state.rollback_total > 0 {
        let rollback = if state.rollback_failures.is_empty() {
            format!("{} succeeded", rollback_steps(state.rollback_total))
        } else {
            format!(
                "{} of {} failed: {}",
                state.rollback_failures.len(),
                rollback_steps(state.rollback_total),
                state.rollback_failures.join("; ")
            )
        };
        details = details.head("rollback", &rollback);
    }
    details = details.tail("stderr", &state.stderr);
    if plan.include_stdout {
        details = details.tail("stdout", &state.stdout);
    }
    let summary = match state.rollback_total {
        0 => reason,
        n => format!("{reason} ({} run)", rollback_steps(n)),
    };
    Verdict {
        status,
        details: details.build(),
        summary,
    }
}

fn steps(n: usize) -> String {
    if n == 1 {
        "1 step".into()
    } else {
        format!("{n} steps")
    }
}

fn rollback_steps(n: usize) -> String {
    if n == 1 {
        "1 rollback step".into()
    } else {
        format!("{n} rollback steps")
    }
}

/// Appends `more` to a job-wide tail, keeping its last [`TAIL_CHARS`] characters.
fn append_tail(tail: &mut String, more: &str) {
    tail.push_str(more);
    let chars = tail.chars().count();
    if chars > TAIL_CHARS {
        let cut = tail
            .char_indices()
            .nth(chars - TAIL_CHARS)
            .map_or(0, |(i, _)| i);
        tail.drain(..cut);
    }
}
