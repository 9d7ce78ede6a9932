//! What to do, at start, with the step a journal says was interrupted (pure: no I/O).
//!
//! - a reboot step (`reboot.sh`) is judged by the boot id, never by clocks: another boot
//!   id than the one journalled when it started means the device rebooted, so the step
//!   succeeded and is not run again; the same boot id after the handler had requested
//!   the reboot means the reboot did not happen: the step fails with that reason; the
//!   same boot id while the handler was still running (the daemon crashed) re-runs it;
//! - a step whose self-restart marker exists asked for iotjobsd's own restart: it
//!   completed, so it is not run again (no restart loop, AWS #365);
//! - any other interrupted step runs again (steps completed before it never do), and so
//!   does a step that was due but not started because of a shutdown;
//! - a job that was being revoked ends at once.
//!
//! Every decision but `Revoked` waits until the service confirmed the execution is still
//! ours and IN_PROGRESS.

use crate::jobs::engine::{EngineState, JobRun};
use crate::jobs::journal::{StepMark, StepPhase};
use crate::sandbox::{StepOutcome, Termination};

/// The decision for the interrupted step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// Nothing was interrupted (no job, or its terminal status only waits to be sent).
    Nothing,
    /// Run the interrupted step again.
    Rerun,
    /// End the interrupted step with this outcome instead of running it.
    Finish(StepOutcome),
    /// The job was being revoked when the daemon stopped: forget it.
    Revoked,
}

/// Decides from the journalled engine state (before `Engine::restore`), the step mark,
/// the current boot id and whether the step's self-restart marker exists.
pub fn decide(
    state: &EngineState,
    mark: Option<&StepMark>,
    boot_id: Option<&str>,
    self_restart_done: bool,
) -> Resume {
    let Some(job) = &state.job else {
        return Resume::Nothing;
    };
    let runner = match &job.run {
        JobRun::Finished => return Resume::Nothing,
        JobRun::Revoked => return Resume::Revoked,
        JobRun::Running { runner, .. } => runner,
    };
    // The mark must describe the engine's current step; anything else is stale.
    let Some(mark) = mark.filter(|m| {
        m.job_id == job.key.job_id
            && m.execution_number == job.key.execution_number
            && m.index == runner.current.index
            && m.rollback == runner.current.rollback
            && matches!(m.phase, StepPhase::Started | StepPhase::RebootRequested)
    }) else {
        return Resume::Rerun;
    };
    if mark.reboot {
        return reboot_step(mark, boot_id);
    }
    if self_restart_done {
        return Resume::Finish(succeeded("iotjobsd was restarted by this step\n"));
    }
    Resume::Rerun
}

fn reboot_step(mark: &StepMark, boot_id: Option<&str>) -> Resume {
    let (Some(now), false) = (boot_id, mark.boot_id.is_empty()) else {
        return Resume::Finish(decided(
            "is a reboot step but the boot id cannot be read, so whether the device rebooted is unknown",
        ));
    };
    if now != mark.boot_id {
        return Resume::Finish(succeeded(&format!(
            "the device rebooted (boot id {} -> {now})\n",
            mark.boot_id
        )));
    }
    match mark.phase {
        StepPhase::RebootRequested => Resume::Finish(decided(
            "requested a reboot but the device did not restart (boot id unchanged)",
        )),
        _ => Resume::Rerun,
    }
}

fn succeeded(stdout: &str) -> StepOutcome {
    outcome(Termination::Exited(0), stdout)
}

fn decided(what: &str) -> StepOutcome {
    outcome(Termination::Decided(what.to_string()), "")
}

fn outcome(termination: Termination, stdout: &str) -> StepOutcome {
    StepOutcome {
        termination,
        stdout_tail: stdout.to_string(),
        stderr_tail: String::new(),
        stderr_seen: false,
        stderr_lines: 0,
        pgid: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::document::HostFacts;
    use crate::jobs::engine::{ActiveJob, Engine, EngineConfig, ExecKey, Outbox};
    use crate::jobs::runner::{self, StepRef};
    use serde_json::json;

    fn state(run: &str) -> EngineState {
        let document = json!({"version": "1.0", "steps": [
            {"action": {"name": "A", "type": "runCommand", "input": {"command": "true"}}},
            {"action": {"name": "Reboot", "type": "runHandler", "input": {"handler": "reboot.sh"}}}
        ]});
        let plan = runner::prepare(&document, &HostFacts::default()).unwrap();
        let (mut runner_state, _) = runner::start(&plan);
        runner_state.current = StepRef {
            index: 1,
            rollback: false,
        };
        let mut state = Engine::new(EngineConfig::new("t", HostFacts::default(), 1))
            .state()
            .clone();
        state.job = Some(ActiveJob {
            key: ExecKey {
                job_id: "j".into(),
                execution_number: 1,
            },
            version: 2,
            document,
            run: match run {
                "running" => JobRun::Running {
                    runner: runner_state,
                    step_running: true,
                },
                "finished" => JobRun::Finished,
                _ => JobRun::Revoked,
            },
            outbox: Outbox::default(),
            awaiting_version: false,
        });
        state
    }

    fn mark(reboot: bool, phase: StepPhase) -> StepMark {
        StepMark {
            job_id: "j".into(),
            execution_number: 1,
            version_number: 2,
            index: 1,
            rollback: false,
            name: "Reboot".into(),
            reboot,
            phase,
            boot_id: "boot-1".into(),
            started_at: 0,
        }
    }

    fn status_of(resume: Resume) -> String {
        match resume {
            Resume::Finish(outcome) if outcome.succeeded() => "succeeded".into(),
            Resume::Finish(outcome) => outcome.reason("Reboot"),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn a_reboot_step_succeeds_when_the_boot_id_changed_in_either_phase() {
        for phase in [StepPhase::Started, StepPhase::RebootRequested] {
            let m = mark(true, phase);
            let r = decide(&state("running"), Some(&m), Some("boot-2"), false);
            assert_eq!(status_of(r), "succeeded");
        }
    }

    #[test]
    fn a_requested_reboot_that_did_not_happen_fails_with_the_reason() {
        let m = mark(true, StepPhase::RebootRequested);
        let r = decide(&state("running"), Some(&m), Some("boot-1"), false);
        assert_eq!(
            status_of(r),
            "step 'Reboot' requested a reboot but the device did not restart (boot id unchanged)"
        );
    }

    #[test]
    fn a_reboot_step_interrupted_before_it_asked_runs_again() {
        let m = mark(true, StepPhase::Started);
        let r = decide(&state("running"), Some(&m), Some("boot-1"), false);
        assert_eq!(r, Resume::Rerun);
    }

    #[test]
    fn an_unreadable_boot_id_fails_a_reboot_step() {
        let m = mark(true, StepPhase::RebootRequested);
        let r = decide(&state("running"), Some(&m), None, false);
        assert!(status_of(r).contains("boot id cannot be read"));
    }

    #[test]
    fn a_self_restart_marker_completes_the_step_and_its_absence_reruns_it() {
        let m = mark(false, StepPhase::Started);
        assert_eq!(
            status_of(decide(&state("running"), Some(&m), Some("boot-1"), true)),
            "succeeded"
        );
        assert_eq!(
            decide(&state("running"), Some(&m), Some("boot-1"), false),
            Resume::Rerun
        );
    }

    #[test]
    fn a_reboot_step_never_started_runs_after_any_reboot() {
        let m = mark(true, StepPhase::NotStarted);
        let r = decide(&state("running"), Some(&m), Some("boot-2"), true);
        assert_eq!(r, Resume::Rerun);
    }

    #[test]
    fn a_stale_or_missing_mark_reruns_and_other_runs_need_no_step() {
        let mut stale = mark(true, StepPhase::RebootRequested);
        stale.index = 0;
        assert_eq!(
            decide(&state("running"), Some(&stale), Some("boot-2"), true),
            Resume::Rerun
        );
        assert_eq!(
            decide(&state("running"), None, Some("boot-2"), true),
            Resume::Rerun
        );
        let m = mark(true, StepPhase::RebootRequested);
        assert_eq!(
            decide(&state("finished"), Some(&m), Some("boot-2"), false),
            Resume::Nothing
        );
        assert_eq!(
            decide(&state("revoked"), Some(&m), Some("boot-2"), false),
            Resume::Revoked
        );
        let mut idle = state("running");
        idle.job = None;
        assert_eq!(decide(&idle, None, None, false), Resume::Nothing);
    }
}
