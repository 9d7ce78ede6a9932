//! Job semantics without processes: plans from real documents, outcomes built by hand.

use serde_json::json;

use super::*;
use crate::sandbox::SandboxError;

fn plan(doc: serde_json::Value) -> JobPlan {
    JobPlan::from_value(&doc).unwrap()
}

fn cmd(name: &str) -> serde_json::Value {
    json!({"action": {"name": name, "type": "runCommand", "input": {"command": "true"}}})
}

fn with(mut step: serde_json::Value, key: &str, value: serde_json::Value) -> serde_json::Value {
    step["action"][key] = value;
    step
}

fn with_rollback(mut step: serde_json::Value, undo: &str) -> serde_json::Value {
    step["rollback"] = cmd(undo);
    step
}

fn exited(code: i32) -> StepOutcome {
    StepOutcome {
        termination: Termination::Exited(code),
        stdout_tail: String::new(),
        stderr_tail: String::new(),
        stderr_seen: false,
        stderr_lines: 0,
        pgid: Some(1),
    }
}

fn output(code: i32, stdout: &str, stderr: &str) -> StepOutcome {
    StepOutcome {
        stdout_tail: stdout.into(),
        stderr_tail: stderr.into(),
        stderr_seen: !stderr.is_empty(),
        stderr_lines: stderr.lines().count() as u64,
        ..exited(code)
    }
}

/// Runs `plan` feeding outcomes in order; returns the labels run and the verdict.
fn drive(plan: &JobPlan, outcomes: Vec<StepOutcome>) -> (Vec<String>, Verdict) {
    let (mut state, mut next) = start(plan);
    let mut ran = Vec::new();
    let mut outcomes = outcomes.into_iter();
    loop {
        match next {
            Next::Run(req) => {
                ran.push(req.label.clone());
                let outcome = outcomes
                    .next()
                    .unwrap_or_else(|| panic!("no outcome for {}", req.label));
                next = step_finished(plan, &mut state, &outcome).1;
            }
            Next::Done(verdict) => {
                assert!(outcomes.next().is_none(), "outcomes left over");
                return (ran, verdict);
            }
        }
    }
}

#[test]
fn steps_run_in_order_and_final_step_last() {
    let p = plan(json!({"version": "1.0", "steps": [cmd("A"), cmd("B")], "finalStep": cmd("Z")}));
    let (ran, verdict) = drive(&p, vec![exited(0), exited(0), exited(0)]);
    assert_eq!(ran, ["1/3 A", "2/3 B", "3/3 Z"]);
    assert_eq!(verdict.status, JobExecutionStatus::Succeeded);
    assert_eq!(verdict.details["reason"], "all 3 steps succeeded");
}

#[test]
fn a_failing_step_skips_later_steps_and_the_final_step() {
    let p = plan(
        json!({"version": "1.0", "steps": [cmd("A"), cmd("B"), cmd("C")], "finalStep": cmd("Z")}),
    );
    let (ran, verdict) = drive(&p, vec![exited(0), output(2, "", "boom\n")]);
    assert_eq!(ran, ["1/4 A", "2/4 B"]);
    assert_eq!(verdict.status, JobExecutionStatus::Failed);
    assert_eq!(verdict.details["reason"], "step 'B' exited with status 2");
    assert_eq!(verdict.details["stderr"], "boom");
}

#[test]
fn a_failing_final_step_fails_the_job() {
    let p = plan(json!({"version": "1.0", "steps": [cmd("A")], "finalStep": cmd("Z")}));
    let (ran, verdict) = drive(&p, vec![exited(0), exited(1)]);
    assert_eq!(ran, ["1/2 A", "2/2 Z"]);
    assert_eq!(verdict.status, JobExecutionStatus::Failed);
    assert_eq!(verdict.details["reason"], "step 'Z' exited with status 1");
}

#[test]
fn ignore_step_failure_continues_and_succeeds() {
    let p = plan(json!({"version": "1.0",
        "steps": [with(cmd("A"), "ignoreStepFailure", json!("true")), cmd("B")],
        "finalStep": cmd("Z")}));
    let (ran, verdict) = drive(&p, vec![exited(3), exited(0), exited(0)]);
    assert_eq!(ran, ["1/3 A", "2/3 B", "3/3 Z"], "finalStep still runs");
    assert_eq!(verdict.status, JobExecutionStatus::Succeeded);
    assert_eq!(
        verdict.details["reason"],
        "3 steps ran; ignored failures: step 'A' exited with status 3"
    );
}

#[test]
fn ignore_step_failure_also_as_a_json_boolean() {
    let p = plan(json!({"version": "1.0",
        "steps": [with(cmd("A"), "ignoreStepFailure", json!(true)), cmd("B")]}));
    let (_, verdict) = drive(&p, vec![exited(1), exited(0)]);
    assert_eq!(verdict.status, JobExecutionStatus::Succeeded);
}

#[test]
fn stderr_does_not_fail_a_step_without_allow_std_err() {
    let p = plan(json!({"version": "1.0", "steps": [cmd("A")]}));
    let (_, verdict) = drive(&p, vec![output(0, "", "warning 1\nwarning 2\n")]);
    assert_eq!(verdict.status, JobExecutionStatus::Succeeded);
    assert_eq!(verdict.details["stderr"], "warning 1 warning 2");
}

#[test]
fn allow_std_err_bounds_the_stderr_lines_of_a_step() {
    let doc =
        |n: u32| json!({"version": "1.0", "steps": [with(cmd("A"), "allowStdErr", json!(n))]});
    let (_, within) = drive(&plan(doc(2)), vec![output(0, "", "a\nb\n")]);
    assert_eq!(within.status, JobExecutionStatus::Succeeded);
    let (_, over) = drive(&plan(doc(1)), vec![output(0, "", "a\nb\n")]);
    assert_eq!(over.status, JobExecutionStatus::Failed);
    assert_eq!(
        over.details["reason"],
        "step 'A' wrote 2 lines to stderr; allowStdErr is 1"
    );
    // allowStdErr never turns a non-zero exit into success (unlike AWS's client).
    let (_, failed) = drive(&plan(doc(5)), vec![output(1, "", "")]);
    assert_eq!(failed.status, JobExecutionStatus::Failed);
}

#[test]
fn rollbacks_of_the_steps_that_ran_run_in_reverse_order() {
    let p = plan(json!({"version": "1.0", "steps": [
        with_rollback(cmd("A"), "undo A"),
        cmd("B"),
        with_rollback(cmd("C"), "undo C"),
        with_rollback(cmd("D"), "undo D")
    ], "finalStep": cmd("Z")}));
    let (ran, verdict) = drive(
        &p,
        vec![exited(0), exited(0), exited(4), exited(0), exited(0)],
    );
    assert_eq!(
        ran,
        [
            "1/5 A",
            "2/5 B",
            "3/5 C",
            "rollback 1/2 undo C",
            "rollback 2/2 undo A"
        ]
    );
    assert_eq!(verdict.status, JobExecutionStatus::Failed);
    assert_eq!(verdict.details["reason"], "step 'C' exited with status 4");
    assert_eq!(verdict.details["rollback"], "2 rollback steps succeeded");
}

#[test]
fn a_failing_final_step_rolls_back_every_step() {
    let p = plan(json!({"version": "1.0",
        "steps": [with_rollback(cmd("A"), "undo A"), with_rollback(cmd("B"), "undo B")],
        "finalStep": with_rollback(cmd("Z"), "undo Z")}));
    let (ran, _) = drive(
        &p,
        vec![
            exited(0),
            exited(0),
            exited(1),
            exited(0),
            exited(0),
            exited(0),
        ],
    );
    assert_eq!(
        ran,
        [
            "1/3 A",
            "2/3 B",
            "3/3 Z",
            "rollback 1/3 undo Z",
            "rollback 2/3 undo B",
            "rollback 3/3 undo A"
        ]
    );
}

#[test]
fn a_failing_rollback_is_reported_and_the_others_still_run() {
    let p = plan(json!({"version": "1.0", "steps": [
        with_rollback(cmd("A"), "undo A"),
        with_rollback(cmd("B"), "undo B")
    ]}));
    let (ran, verdict) = drive(&p, vec![exited(0), exited(1), exited(7), exited(0)]);
    assert_eq!(ran.len(), 4);
    assert_eq!(verdict.details["reason"], "step 'B' exited with status 1");
    assert_eq!(
        verdict.details["rollback"],
        "1 of 2 rollback steps failed: step 'undo B' exited with status 7"
    );
}

#[test]
fn stdout_is_reported_only_with_include_std_out() {
    let doc = |include: serde_json::Value| json!({"version": "1.0", "includeStdOut": include, "steps": [cmd("A"), cmd("B")]});
    let outcomes = || vec![output(0, "one\n", ""), output(0, "two\n", "")];
    let (_, with_out) = drive(&plan(doc(json!("true"))), outcomes());
    assert_eq!(with_out.details["stdout"], "one two");
    let (_, bool_out) = drive(&plan(doc(json!(true))), outcomes());
    assert_eq!(bool_out.details["stdout"], "one two");
    let (_, without) = drive(&plan(doc(json!(false))), outcomes());
    assert!(!without.details.contains_key("stdout"));
    assert!(
        !without.details.contains_key("stderr"),
        "empty values are never sent"
    );
}

#[test]
fn tails_are_bounded_and_keep_the_end() {
    let p = plan(json!({"version": "1.0", "includeStdOut": "true", "steps": [cmd("A"), cmd("B")]}));
    let big = "x".repeat(1000);
    let (_, verdict) = drive(
        &p,
        vec![output(0, &big, ""), output(0, &format!("{big}END"), "")],
    );
    let stdout = &verdict.details["stdout"];
    assert_eq!(stdout.chars().count(), TAIL_CHARS);
    assert!(stdout.ends_with("END"));
}

#[test]
fn signals_timeouts_and_refusals_fail_with_their_reason() {
    let p = plan(json!({"version": "1.0", "steps": [cmd("A")]}));
    let cases = [
        (
            Termination::Signaled(9),
            "step 'A' killed by signal 9 (SIGKILL)",
        ),
        (
            Termination::TimedOut(std::time::Duration::from_secs(300)),
            "step 'A' timed out after 300 s",
        ),
        (
            Termination::SpawnFailed(SandboxError::EmptyCommand),
            "step 'A' could not be started: command is empty",
        ),
    ];
    for (termination, reason) in cases {
        let (_, verdict) = drive(
            &p,
            vec![StepOutcome {
                termination,
                ..exited(0)
            }],
        );
        assert_eq!(verdict.status, JobExecutionStatus::Failed);
        assert_eq!(verdict.details["reason"], reason);
    }
}

#[test]
fn progress_names_the_step_and_the_failure_during_rollback() {
    let p = plan(json!({"version": "1.0", "steps": [with_rollback(cmd("A"), "undo A"), cmd("B")]}));
    let (mut state, _) = start(&p);
    assert_eq!(
        progress(&p, &state),
        [("step".to_string(), "1/2 A".to_string())].into()
    );
    step_finished(&p, &mut state, &exited(0));
    let (_, next) = step_finished(&p, &mut state, &exited(1));
    assert!(matches!(next, Next::Run(ref r) if r.at == StepRef { index: 0, rollback: true }));
    let details = progress(&p, &state);
    assert_eq!(details["step"], "rollback 1/1 undo A");
    assert_eq!(details["reason"], "step 'B' exited with status 1");
}

#[test]
fn runner_state_round_trips_through_json() {
    let p = plan(json!({"version": "1.0", "steps": [cmd("A"), cmd("B")]}));
    let (mut state, _) = start(&p);
    step_finished(&p, &mut state, &output(0, "hello\n", ""));
    let back: RunnerState = serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
    assert_eq!(back, state);
}

#[test]
fn sandbox_requests_keep_the_aws_calling_convention_inputs() {
    let p = plan(
        json!({"version": "1.0", "steps": [{"action": {"name": "Install",
        "type": "runHandler", "runAsUser": "nobody",
        "input": {"handler": "install.sh", "args": ["wget", "curl"], "path": "default"}}}]}),
    );
    let (_, next) = start(&p);
    let Next::Run(req) = next else { panic!() };
    let sb = sandbox_request(&req, "j1", 3, "dev-1", std::time::Duration::from_secs(60));
    assert_eq!(
        sb.program,
        Program::Handler {
            name: "install.sh".into(),
            dir: HandlerDir::Default
        }
    );
    assert_eq!(sb.args, ["wget", "curl"]);
    assert_eq!(sb.run_as_user.as_deref(), Some("nobody"));
    assert_eq!(
        (sb.job_id.as_str(), sb.execution_number, sb.step_index),
        ("j1", 3, 0)
    );
    assert_eq!(
        sb.timeout,
        std::time::Duration::from_secs(60),
        "the default applies"
    );
}
